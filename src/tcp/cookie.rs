//! SYN cookies (RFC 4987 section 3.6) and initial sequence numbers
//! (RFC 6528), keyed with SipHash-2-4.
//!
//! # Initial sequence numbers
//!
//! RFC 6528: `ISN = M + F(localip, localport, remoteip, remoteport, secret)`,
//! where `M` is a clock ticking every 4 microseconds (`now_ns / 4000`,
//! wrapping) and `F` is SipHash-2-4 of the four-tuple under the first half of
//! the key, truncated to 32 bits. Connections of one four-tuple get
//! increasing ISNs; an off-path attacker cannot guess another tuple's.
//!
//! # SYN cookies
//!
//! Under a SYN flood a listener answers SYNs statelessly: the ISN of its
//! SYN-ACK, the cookie, encodes what it must remember, and the returning ACK
//! (`ack = cookie + 1`) brings it back. The 32 bits, most significant first:
//!
//! ```text
//!  31      27 26 25 24     21  20  19                                    0
//! +----------+-----+---------+----+---------------------------------------+
//! | t (5)    | mss | wscale  |sack|  SipHash-2-4 (20 bits)                |
//! +----------+-----+---------+----+---------------------------------------+
//! ```
//!
//! - `t`: the counter `now_ns / 64 s`, modulo 32.
//! - `mss`: index into [`MSS_TABLE`] of the largest entry not above the
//!   peer's MSS (0 if the peer's is below 536, which then decodes as 536, as
//!   Linux does).
//! - `wscale`: the peer's window scale, 0 to 14 (larger values are taken as
//!   14, RFC 7323 section 2.3), or 15 for none.
//! - `sack`: the peer sent SACK-permitted.
//! - the low 20 bits of SipHash-2-4, under the second half of the key, of the
//!   four-tuple, the peer's ISN, the full (unreduced) counter and the option
//!   bits.
//!
//! A cookie is accepted while the counter is the one it was made with or the
//! next one: between 64 and 128 seconds. Hashing the full counter rather than
//! `t` keeps a cookie from coming back to life when `t` wraps (every 34
//! minutes). A forged cookie passes with probability 2^-20 per try.
//!
//! Timestamps are not encoded: our SYN-ACK's clock is the address pair's
//! ([`Secrets::timestamp_offset`]), which the ACK's connection finds again.
//!
//! Panics: only [`Secrets::random`], if the operating system cannot supply
//! random bytes. Nothing here allocates.

use core::fmt;

use siphasher::sip::SipHasher24;

use super::{FourTuple, Seq};

/// The MSS values a cookie can encode, by index.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

/// Length of one cookie counter period: 64 seconds.
const COUNTER_PERIOD_NS: u64 = 64_000_000_000;
/// Length of one step of the RFC 6528 ISN clock: 4 microseconds.
const ISN_CLOCK_NS: u64 = 4_000;
/// The cookie's hash bits.
const HASH_MASK: u32 = (1 << 20) - 1;
/// The window scale field value for "no window scaling".
const NO_WSCALE: u32 = 15;

/// The peer's SYN options a SYN cookie carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieOptions {
    /// The peer's MSS. A checked cookie gives back an entry of
    /// [`MSS_TABLE`]: the largest not above the MSS it was made with.
    pub mss: u16,
    /// The peer's window scale shift, if it sent one (0 to 14; more is
    /// taken as 14).
    pub window_scale: Option<u8>,
    /// Whether the peer sent SACK-permitted.
    pub sack_permitted: bool,
}

impl CookieOptions {
    /// The options as a cookie carries them back: the MSS rounded down to
    /// [`MSS_TABLE`] (536 at least), the window scale at most 14.
    pub fn as_encoded(self) -> CookieOptions {
        let mss = MSS_TABLE
            .iter()
            .rev()
            .copied()
            .find(|&m| m <= self.mss)
            .unwrap_or(MSS_TABLE[0]);
        CookieOptions {
            mss,
            window_scale: self.window_scale.map(|w| w.min(14)),
            sack_permitted: self.sack_permitted,
        }
    }
}

impl CookieOptions {
    /// The 7 option bits: MSS index, window scale field, SACK flag.
    fn encode(&self) -> u32 {
        let mss_index = MSS_TABLE.iter().rposition(|&m| m <= self.mss).unwrap_or(0) as u32;
        let wscale = match self.window_scale {
            Some(shift) => u32::from(shift.min(14)),
            None => NO_WSCALE,
        };
        (mss_index << 5) | (wscale << 1) | u32::from(self.sack_permitted)
    }

    /// The options from 7 option bits.
    fn decode(bits: u32) -> Self {
        let wscale = (bits >> 1) & 0xf;
        CookieOptions {
            mss: MSS_TABLE[(bits >> 5) as usize & 3],
            window_scale: (wscale != NO_WSCALE).then_some(wscale as u8),
            sack_permitted: bits & 1 != 0,
        }
    }
}

/// The per-process secret keys for ISNs and SYN cookies.
///
/// Every worker must use the same `Secrets` (they are `Clone`), since the
/// ACK answering a cookie may be steered to another worker than the SYN.
#[derive(Clone)]
pub struct Secrets {
    /// SipHash-2-4 keyed with the first 16 bytes of the key: RFC 6528's `F`.
    isn: SipHasher24,
    /// SipHash-2-4 keyed with the last 16 bytes of the key: the cookie MAC.
    cookie: SipHasher24,
    /// The timestamp clock: SipHash-2-4 keyed per boot, of the address pair.
    timestamps: SipHasher24,
    /// The timestamp clock's reading (ms) when the worker clock read 0.
    timestamp_base_ms: u32,
}

impl Secrets {
    /// Keys from the operating system's random source.
    ///
    /// # Panics
    /// If the operating system has no randomness to give (`getrandom`
    /// fails), which on Linux means a kernel without `getrandom(2)` and
    /// without `/dev/urandom`.
    pub fn random() -> Self {
        Self::from_key(Self::random_key())
    }

    /// A fresh random key, to build the same `Secrets` on every worker.
    ///
    /// # Panics
    /// As [`Secrets::random`].
    pub fn random_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system gave no random bytes");
        key
    }

    /// Keys from `key`, deterministically: for tests and simulation.
    pub fn from_key(key: [u8; 32]) -> Self {
        let mut isn = [0u8; 16];
        let mut cookie = [0u8; 16];
        isn.copy_from_slice(&key[..16]);
        cookie.copy_from_slice(&key[16..]);
        Secrets {
            isn: SipHasher24::new_with_key(&isn),
            cookie: SipHasher24::new_with_key(&cookie),
            timestamps: SipHasher24::new_with_key(&isn),
            timestamp_base_ms: 0,
        }
    }

    /// Key the TCP timestamp clock with `key` and start it at `base_ms` (its
    /// value when the workers' clock reads 0).
    ///
    /// A peer keeps a closed connection in TIME-WAIT for a minute and takes a
    /// new SYN on the same 4-tuple only if its timestamp is newer (PAWS,
    /// RFC 7323 5; Linux's `tcp_timewait_state_process`). The timestamps of a
    /// restarted shardnet must therefore go on from where the last one's
    /// stopped: like Linux since 4.13, the clock is the machine's uptime plus
    /// an offset per address pair under a key that lasts as long as the boot
    /// (the runtime keys it with the kernel's `boot_id`), so a peer sees no
    /// uptime and every pair a clock that only goes forward.
    pub fn with_timestamp_clock(mut self, key: [u8; 16], base_ms: u32) -> Self {
        self.timestamps = SipHasher24::new_with_key(&key);
        self.timestamp_base_ms = base_ms;
        self
    }

    /// The offset of `tuple`'s timestamp clock from the workers' clock in
    /// milliseconds: the same for every connection between two addresses.
    pub fn timestamp_offset(&self, tuple: &FourTuple) -> u32 {
        let mut pair = [0u8; 8];
        pair[..4].copy_from_slice(&tuple.local_ip.octets());
        pair[4..].copy_from_slice(&tuple.remote_ip.octets());
        self.timestamp_base_ms
            .wrapping_add(self.timestamps.hash(&pair) as u32)
    }

    /// The ISN for a new connection of `tuple` at `now_ns` (RFC 6528).
    pub fn initial_sequence(&self, tuple: &FourTuple, now_ns: u64) -> Seq {
        let f = self.isn.hash(&tuple_bytes(tuple)) as u32;
        let m = (now_ns / ISN_CLOCK_NS) as u32;
        Seq(m.wrapping_add(f))
    }

    /// The cookie to send as our ISN in a SYN-ACK answering, statelessly, a
    /// SYN of `tuple` with sequence number `peer_isn` and `options`.
    pub fn syn_cookie(
        &self,
        tuple: &FourTuple,
        peer_isn: Seq,
        now_ns: u64,
        options: CookieOptions,
    ) -> Seq {
        let counter = now_ns / COUNTER_PERIOD_NS;
        let bits = options.encode();
        let mac = self.cookie_mac(tuple, peer_isn, counter, bits);
        Seq(((counter as u32 & 31) << 27) | (bits << 20) | mac)
    }

    /// Checks the cookie an ACK brings back (`peer_isn = seq - 1`,
    /// `cookie = ack - 1`) and returns the options it carries, or `None` if
    /// it was not made for this tuple and ISN within the last 64 to 128
    /// seconds.
    pub fn check_cookie(
        &self,
        tuple: &FourTuple,
        peer_isn: Seq,
        cookie: Seq,
        now_ns: u64,
    ) -> Option<CookieOptions> {
        let now = now_ns / COUNTER_PERIOD_NS;
        let t = u64::from(cookie.0 >> 27);
        let counter = if t == now % 32 {
            now
        } else if now > 0 && t == (now - 1) % 32 {
            now - 1
        } else {
            return None;
        };
        let bits = (cookie.0 >> 20) & 0x7f;
        if self.cookie_mac(tuple, peer_isn, counter, bits) != cookie.0 & HASH_MASK {
            return None;
        }
        Some(CookieOptions::decode(bits))
    }

    /// The cookie's 20 hash bits.
    fn cookie_mac(&self, tuple: &FourTuple, peer_isn: Seq, counter: u64, bits: u32) -> u32 {
        let mut input = [0u8; 25];
        input[..12].copy_from_slice(&tuple_bytes(tuple));
        input[12..16].copy_from_slice(&peer_isn.0.to_be_bytes());
        input[16..24].copy_from_slice(&counter.to_be_bytes());
        input[24] = bits as u8;
        self.cookie.hash(&input) as u32 & HASH_MASK
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// The four-tuple as 12 bytes, in network order.
fn tuple_bytes(tuple: &FourTuple) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&tuple.local_ip.octets());
    out[4..6].copy_from_slice(&tuple.local_port.to_be_bytes());
    out[6..10].copy_from_slice(&tuple.remote_ip.octets());
    out[10..12].copy_from_slice(&tuple.remote_port.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const SECOND: u64 = 1_000_000_000;

    fn secrets() -> Secrets {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        Secrets::from_key(key)
    }

    fn tuple(n: u32) -> FourTuple {
        FourTuple {
            local_ip: Ipv4Addr::new(10, 0, 0, 1),
            local_port: 80,
            remote_ip: Ipv4Addr::from(0xc0a8_0000 | (n & 0xffff)),
            remote_port: 40_000u16.wrapping_add(n as u16),
        }
    }

    #[test]
    fn the_timestamp_clock_is_per_address_pair_and_goes_on_across_restarts() {
        let key = [9u8; 16];
        let first = secrets().with_timestamp_clock(key, 1_000);
        // Every port between the same two addresses: one offset.
        let mut other_port = tuple(1);
        other_port.remote_port ^= 0x5555;
        other_port.local_port = 8080;
        assert_eq!(
            first.timestamp_offset(&tuple(1)),
            first.timestamp_offset(&other_port)
        );
        assert_ne!(
            first.timestamp_offset(&tuple(1)),
            first.timestamp_offset(&tuple(2))
        );
        // A restart 5 s later has a new process key but the same boot key: the
        // offset is the old one moved on by the 5 s, whatever the secrets.
        let restarted = Secrets::from_key([1; 32]).with_timestamp_clock(key, 6_000);
        assert_eq!(
            restarted.timestamp_offset(&tuple(1)),
            first.timestamp_offset(&tuple(1)).wrapping_add(5_000)
        );
        // Another boot: unrelated.
        let reboot = secrets().with_timestamp_clock([8; 16], 1_000);
        assert_ne!(
            reboot.timestamp_offset(&tuple(1)),
            first.timestamp_offset(&tuple(1))
        );
    }

    /// Every option combination, with the MSS as the table gives it back.
    fn all_options() -> Vec<CookieOptions> {
        let mut out = Vec::new();
        for mss in MSS_TABLE {
            for ws in (0..=14).map(Some).chain([None]) {
                for sack in [false, true] {
                    out.push(CookieOptions {
                        mss,
                        window_scale: ws,
                        sack_permitted: sack,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn round_trip_all_options() {
        let s = secrets();
        let t = tuple(1);
        let now = 1_000 * SECOND;
        for options in all_options() {
            let cookie = s.syn_cookie(&t, Seq(12345), now, options);
            assert_eq!(s.check_cookie(&t, Seq(12345), cookie, now), Some(options));
            assert_eq!(
                s.check_cookie(&t, Seq(12345), cookie, now + 64 * SECOND),
                Some(options),
                "previous counter"
            );
        }
    }

    #[test]
    fn mss_rounds_down_to_the_table() {
        let s = secrets();
        let t = tuple(1);
        for (mss, expected) in [
            (0, 536),
            (100, 536),
            (536, 536),
            (1299, 536),
            (1300, 1300),
            (1439, 1300),
            (1440, 1440),
            (1460, 1460),
            (9000, 1460),
            (u16::MAX, 1460),
        ] {
            let options = CookieOptions {
                mss,
                window_scale: Some(20),
                sack_permitted: false,
            };
            let cookie = s.syn_cookie(&t, Seq(1), 0, options);
            let got = s.check_cookie(&t, Seq(1), cookie, 0).unwrap();
            assert_eq!(got.mss, expected, "mss {mss}");
            assert_eq!(got.window_scale, Some(14), "clamped");
        }
    }

    #[test]
    fn layout() {
        let s = secrets();
        let now = 35 * 64 * SECOND + 5; // counter 35: t = 3
        let options = CookieOptions {
            mss: 1440,
            window_scale: None,
            sack_permitted: true,
        };
        let cookie = s.syn_cookie(&tuple(1), Seq(9), now, options).0;
        assert_eq!(cookie >> 27, 3);
        assert_eq!((cookie >> 25) & 3, 2);
        assert_eq!((cookie >> 21) & 0xf, 15);
        assert_eq!((cookie >> 20) & 1, 1);
    }

    #[test]
    fn rejects_wrong_tuple_isn_bits_and_age() {
        let s = secrets();
        let now = 7_777 * SECOND;
        let options = CookieOptions {
            mss: 1460,
            window_scale: Some(7),
            sack_permitted: true,
        };
        for n in 0..200 {
            let t = tuple(n);
            let isn = Seq(n.wrapping_mul(0x9E37_79B9));
            let cookie = s.syn_cookie(&t, isn, now, options);
            assert!(s.check_cookie(&t, isn, cookie, now).is_some());
            let mut other = t;
            other.remote_port ^= 1;
            assert_eq!(s.check_cookie(&other, isn, cookie, now), None);
            let mut other = t;
            other.local_ip = Ipv4Addr::new(10, 0, 0, 2);
            assert_eq!(s.check_cookie(&other, isn, cookie, now), None);
            assert_eq!(s.check_cookie(&t, isn + 1, cookie, now), None);
            for bit in 0..32 {
                let flipped = Seq(cookie.0 ^ (1 << bit));
                assert_eq!(s.check_cookie(&t, isn, flipped, now), None, "bit {bit}");
            }
            assert_eq!(s.check_cookie(&t, isn, cookie, now + 200 * SECOND), None);
            assert_eq!(s.check_cookie(&t, isn, cookie, now + 128 * SECOND), None);
            // When t has wrapped all the way round, the full counter differs.
            assert_eq!(
                s.check_cookie(&t, isn, cookie, now + 32 * 64 * SECOND),
                None
            );
            // A cookie from the future (a clock gone back) is refused too.
            assert_eq!(s.check_cookie(&t, isn, cookie, now - 64 * SECOND), None);
            // Another key refuses it.
            assert_eq!(
                Secrets::from_key([n as u8; 32]).check_cookie(&t, isn, cookie, now),
                None
            );
        }
    }

    #[test]
    fn counter_wraparound_accepts_previous() {
        let s = secrets();
        let t = tuple(3);
        let issued = (31 * 64 + 63) * SECOND; // counter 31, t = 31
        let options = CookieOptions {
            mss: 536,
            window_scale: Some(0),
            sack_permitted: false,
        };
        let cookie = s.syn_cookie(&t, Seq(u32::MAX), issued, options);
        assert_eq!(cookie.0 >> 27, 31);
        let later = 32 * 64 * SECOND + 1; // counter 32, t = 0
        assert_eq!(
            s.check_cookie(&t, Seq(u32::MAX), cookie, later),
            Some(options)
        );
        assert_eq!(
            s.check_cookie(&t, Seq(u32::MAX), cookie, later + 64 * SECOND),
            None
        );
        // Counter 0 has no previous counter.
        let early = s.syn_cookie(&t, Seq(1), 0, options);
        assert_eq!(
            s.check_cookie(&t, Seq(1), early, 63 * SECOND),
            Some(options)
        );
        assert_eq!(
            s.check_cookie(&t, Seq(1), early, 64 * SECOND),
            Some(options)
        );
    }

    #[test]
    fn isns_differ_per_tuple_and_advance_with_time() {
        let s = secrets();
        let now = 123 * SECOND;
        let a = s.initial_sequence(&tuple(1), now);
        let b = s.initial_sequence(&tuple(2), now);
        assert_ne!(a, b);
        let mut reversed = tuple(1);
        core::mem::swap(&mut reversed.local_port, &mut reversed.remote_port);
        assert_ne!(a, s.initial_sequence(&reversed, now));
        // 4 microseconds per step.
        assert_eq!(s.initial_sequence(&tuple(1), now + 4_000), a + 1);
        assert_eq!(s.initial_sequence(&tuple(1), now + 3_999), a);
        assert_eq!(s.initial_sequence(&tuple(1), now + SECOND), a + 250_000);
        assert!(s.initial_sequence(&tuple(1), now + SECOND) > a);
    }

    #[test]
    fn from_key_is_deterministic_and_random_is_not() {
        let t = tuple(5);
        let x = secrets().initial_sequence(&t, 99);
        assert_eq!(secrets().initial_sequence(&t, 99), x);
        let options = CookieOptions {
            mss: 1300,
            window_scale: None,
            sack_permitted: false,
        };
        assert_eq!(
            secrets().syn_cookie(&t, Seq(4), 99, options),
            secrets().syn_cookie(&t, Seq(4), 99, options)
        );
        let r1 = Secrets::random();
        let r2 = Secrets::random();
        // Equal with probability 2^-32 (twice over).
        assert!(
            r1.initial_sequence(&t, 99) != r2.initial_sequence(&t, 99)
                || r1.initial_sequence(&tuple(6), 99) != r2.initial_sequence(&tuple(6), 99)
        );
        assert_eq!(format!("{r1:?}"), "Secrets { .. }");
    }

    fn any_tuple() -> impl Strategy<Value = FourTuple> {
        (any::<u32>(), any::<u16>(), any::<u32>(), any::<u16>()).prop_map(|(a, p, b, q)| {
            FourTuple {
                local_ip: Ipv4Addr::from(a),
                local_port: p,
                remote_ip: Ipv4Addr::from(b),
                remote_port: q,
            }
        })
    }

    fn any_options() -> impl Strategy<Value = CookieOptions> {
        (any::<u16>(), proptest::option::of(0u8..20), any::<bool>()).prop_map(|(mss, ws, sack)| {
            CookieOptions {
                mss,
                window_scale: ws,
                sack_permitted: sack,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A cookie checks within 64 s of the counter it was made in and
        /// gives back the options (MSS rounded down, scale clamped); a flip
        /// of any of its hash bits is always refused.
        #[test]
        fn cookie_round_trip(
            key: [u8; 32],
            t in any_tuple(),
            isn: u32,
            now in 0u64..1 << 50,
            delay in 0u64..64 * SECOND,
            options in any_options(),
            bit in 0u32..20,
        ) {
            let s = Secrets::from_key(key);
            let cookie = s.syn_cookie(&t, Seq(isn), now, options);
            let expected = CookieOptions {
                mss: *MSS_TABLE.iter().rev().find(|&&m| m <= options.mss).unwrap_or(&536),
                window_scale: options.window_scale.map(|w| w.min(14)),
                sack_permitted: options.sack_permitted,
            };
            prop_assert_eq!(s.check_cookie(&t, Seq(isn), cookie, now + delay), Some(expected));
            prop_assert_eq!(s.check_cookie(&t, Seq(isn), Seq(cookie.0 ^ (1 << bit)), now + delay), None);
        }
    }

    #[test]
    fn as_encoded_is_what_a_cookie_gives_back() {
        let secrets = Secrets::from_key([5; 32]);
        let tuple = FourTuple {
            local_ip: std::net::Ipv4Addr::new(198, 18, 0, 2),
            local_port: 80,
            remote_ip: std::net::Ipv4Addr::new(198, 18, 0, 1),
            remote_port: 40000,
        };
        for mss in [0, 100, 536, 537, 1299, 1300, 1439, 1440, 1459, 1460, 9000] {
            for window_scale in [None, Some(0), Some(14), Some(15), Some(255)] {
                for sack_permitted in [false, true] {
                    let options = CookieOptions {
                        mss,
                        window_scale,
                        sack_permitted,
                    };
                    let cookie = secrets.syn_cookie(&tuple, Seq(1), 0, options);
                    let back = secrets.check_cookie(&tuple, Seq(1), cookie, 0).unwrap();
                    assert_eq!(options.as_encoded(), back, "{options:?}");
                }
            }
        }
    }
}
