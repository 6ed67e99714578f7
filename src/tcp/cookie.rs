//! SYN cookies (RFC 4987 section 3.6) and initial sequence numbers
//! (RFC 6528), both keyed with SipHash-2-4 and one per-process secret.
//!
//! A SYN cookie is the ISN of a SYN-ACK sent without keeping any state; the
//! peer's ACK returns it as `ack - 1`, and the connection is rebuilt from it.
//! Layout, high bits first:
//!
//! ```text
//!  31      27 26  25 24    21 20  19                                0
//! +----------+------+--------+----+-----------------------------------+
//! | t mod 32 | mss  | wscale |sack|      MAC (20 bits of SipHash)     |
//! +----------+------+--------+----+-----------------------------------+
//! ```
//!
//! - `t` counts 64-second periods; a cookie is honoured in the period it was
//!   made and the next one (64 to 128 s), so replaying an old one fails.
//! - `mss` indexes [`MSS_TABLE`]: the largest entry not above the peer's MSS.
//! - `wscale` is the peer's window scale (0 to 14), 15 when it sent none.
//! - `sack` is the peer's SACK-permitted.
//! - The MAC covers the 4-tuple, the peer's ISN, `t` and the option bits, so
//!   neither the options nor the period can be changed by a forger, who has
//!   one chance in 2^20 per guess (RFC 4987 accepts 24 bits spread over
//!   similar fields; Linux uses about as many).
//!
//! Timestamps are not encoded: a SYN-ACK built from a cookie offers them only
//! when the SYN did, so the ACK's own timestamp option says whether they were
//! agreed (Linux encodes the same choice the same way).

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

use super::{FourTuple, Seq};

/// The MSS values a cookie can carry (Linux's `msstab` for IPv4).
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// The length of a cookie period.
const PERIOD_NS: u64 = 64_000_000_000;

/// Bits of MAC in a cookie.
const MAC_BITS: u32 = 20;

/// What the peer's SYN offered, as far as a cookie can remember it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOptions {
    /// The peer's MSS (rounded down to an entry of [`MSS_TABLE`] once encoded).
    pub mss: u16,
    /// The peer's window scale, if it offered one.
    pub window_scale: Option<u8>,
    /// The peer offered SACK.
    pub sack_permitted: bool,
}

/// The per-process secrets: one key for sequence numbers, one for cookies.
#[derive(Clone)]
pub struct Secrets {
    isn_key: [u8; 16],
    cookie_key: [u8; 16],
}

impl core::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    /// A fresh random key from the operating system.
    ///
    /// # Panics
    /// If the operating system has no randomness to give (`getrandom` fails),
    /// which a Linux with a booted kernel does not do.
    pub fn random_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random number generator failed");
        key
    }

    /// Secrets from a fresh random key.
    pub fn random() -> Secrets {
        Secrets::from_key(Secrets::random_key())
    }

    /// Secrets from `key` (deterministic: tests and simulations).
    pub fn from_key(key: [u8; 32]) -> Secrets {
        let mut isn_key = [0u8; 16];
        let mut cookie_key = [0u8; 16];
        isn_key.copy_from_slice(&key[..16]);
        cookie_key.copy_from_slice(&key[16..]);
        Secrets {
            isn_key,
            cookie_key,
        }
    }

    fn hash_tuple(key: &[u8; 16], tuple: &FourTuple) -> SipHasher24 {
        let mut h = SipHasher24::new_with_key(key);
        h.write(&tuple.local_ip.octets());
        h.write(&tuple.remote_ip.octets());
        h.write_u16(tuple.local_port);
        h.write_u16(tuple.remote_port);
        h
    }

    /// RFC 6528: ISN = M + F(4-tuple, secret), with M a clock ticking every
    /// 4 microseconds, so that the sequence space of successive incarnations
    /// of a 4-tuple moves forward and nobody can guess it.
    pub fn initial_sequence(&self, tuple: &FourTuple, now_ns: u64) -> Seq {
        let f = Secrets::hash_tuple(&self.isn_key, tuple).finish() as u32;
        Seq(((now_ns / 4_000) as u32).wrapping_add(f))
    }

    fn mac(&self, tuple: &FourTuple, peer_isn: Seq, period: u32, bits: u32) -> u32 {
        let mut h = Secrets::hash_tuple(&self.cookie_key, tuple);
        h.write_u32(peer_isn.0);
        h.write_u32(period);
        h.write_u32(bits);
        (h.finish() as u32) & ((1 << MAC_BITS) - 1)
    }

    /// The ISN of a stateless SYN-ACK answering a SYN from `tuple`'s peer
    /// with sequence number `peer_isn` and `options`.
    pub fn syn_cookie(
        &self,
        tuple: &FourTuple,
        peer_isn: Seq,
        now_ns: u64,
        options: CookieOptions,
    ) -> Seq {
        let period = ((now_ns / PERIOD_NS) % 32) as u32;
        let mss_index = MSS_TABLE
            .iter()
            .rposition(|&m| m <= options.mss)
            .unwrap_or(0) as u32;
        let wscale = options.window_scale.map_or(15, |w| u32::from(w.min(14)));
        let bits = (mss_index << 5) | (wscale << 1) | u32::from(options.sack_permitted);
        let mac = self.mac(tuple, peer_isn, period, bits);
        Seq((period << 27) | (bits << MAC_BITS) | mac)
    }

    /// Check the cookie an ACK returns: `peer_isn` is its `seq - 1`, `cookie`
    /// its `ack - 1`. The options the SYN offered, or `None` if the cookie is
    /// forged, for another connection, or older than two periods.
    pub fn check_cookie(
        &self,
        tuple: &FourTuple,
        peer_isn: Seq,
        cookie: Seq,
        now_ns: u64,
    ) -> Option<CookieOptions> {
        let value = cookie.0;
        let period = value >> 27;
        let bits = (value >> MAC_BITS) & 0x7f;
        let mac = value & ((1 << MAC_BITS) - 1);
        let current = ((now_ns / PERIOD_NS) % 32) as u32;
        let previous = (current + 31) % 32;
        if period != current && period != previous {
            return None;
        }
        if self.mac(tuple, peer_isn, period, bits) != mac {
            return None;
        }
        let wscale = (bits >> 1) & 0xf;
        Some(CookieOptions {
            mss: MSS_TABLE[(bits >> 5) as usize],
            window_scale: (wscale != 15).then_some(wscale as u8),
            sack_permitted: bits & 1 == 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const TUPLE: FourTuple = FourTuple {
        local_ip: Ipv4Addr::new(198, 18, 0, 2),
        local_port: 80,
        remote_ip: Ipv4Addr::new(198, 18, 0, 1),
        remote_port: 40000,
    };
    const S: u64 = 1_000_000_000;

    fn secrets() -> Secrets {
        Secrets::from_key([42; 32])
    }

    #[test]
    fn every_option_combination_round_trips() {
        let s = secrets();
        for (mss, expect) in [
            (536, 536),
            (1000, 536),
            (1300, 1300),
            (1459, 1440),
            (9000, 1460),
            (100, 536),
        ] {
            for window_scale in [None, Some(0), Some(7), Some(14), Some(20)] {
                for sack_permitted in [false, true] {
                    let options = CookieOptions {
                        mss,
                        window_scale,
                        sack_permitted,
                    };
                    let now = 1000 * S;
                    let cookie = s.syn_cookie(&TUPLE, Seq(77), now, options);
                    let back = s.check_cookie(&TUPLE, Seq(77), cookie, now + S).unwrap();
                    assert_eq!(back.mss, expect);
                    assert_eq!(back.window_scale, window_scale.map(|w| w.min(14)));
                    assert_eq!(back.sack_permitted, sack_permitted);
                }
            }
        }
    }

    #[test]
    fn forged_stale_or_misdirected_cookies_are_refused() {
        let s = secrets();
        let options = CookieOptions {
            mss: 1460,
            window_scale: Some(7),
            sack_permitted: true,
        };
        let now = 5000 * S;
        let cookie = s.syn_cookie(&TUPLE, Seq(1), now, options);
        assert!(s.check_cookie(&TUPLE, Seq(1), cookie, now).is_some());
        let other = FourTuple {
            remote_port: 40001,
            ..TUPLE
        };
        assert!(s.check_cookie(&other, Seq(1), cookie, now).is_none());
        assert!(s.check_cookie(&TUPLE, Seq(2), cookie, now).is_none());
        for bit in 0..32 {
            let flipped = Seq(cookie.0 ^ (1 << bit));
            assert!(
                s.check_cookie(&TUPLE, Seq(1), flipped, now).is_none(),
                "bit {bit}"
            );
        }
        assert!(s
            .check_cookie(&TUPLE, Seq(1), cookie, now + 200 * S)
            .is_none());
        let other_key = Secrets::from_key([43; 32]);
        assert!(other_key
            .check_cookie(&TUPLE, Seq(1), cookie, now)
            .is_none());
    }

    #[test]
    fn the_previous_period_is_honoured_across_the_counter_wrap() {
        let s = secrets();
        let options = CookieOptions {
            mss: 1460,
            window_scale: None,
            sack_permitted: false,
        };
        // Period 31, then period 32 = 0 (mod 32).
        let made = 31 * 64 * S + 10 * S;
        let cookie = s.syn_cookie(&TUPLE, Seq(9), made, options);
        assert_eq!(cookie.0 >> 27, 31);
        assert!(s
            .check_cookie(&TUPLE, Seq(9), cookie, 32 * 64 * S + S)
            .is_some());
        assert!(s
            .check_cookie(&TUPLE, Seq(9), cookie, 33 * 64 * S + S)
            .is_none());
    }

    #[test]
    fn sequence_numbers_differ_per_tuple_and_move_with_time() {
        let s = secrets();
        let other = FourTuple {
            remote_port: 40001,
            ..TUPLE
        };
        assert_ne!(s.initial_sequence(&TUPLE, 0), s.initial_sequence(&other, 0));
        let a = s.initial_sequence(&TUPLE, 0);
        let b = s.initial_sequence(&TUPLE, 4_000_000);
        assert_eq!(b - a, 1000, "one tick per 4 microseconds");
        assert_eq!(
            Secrets::from_key([42; 32]).initial_sequence(&TUPLE, 0),
            a,
            "deterministic from the key"
        );
        assert_ne!(Secrets::random().initial_sequence(&TUPLE, 0), a);
    }
}
