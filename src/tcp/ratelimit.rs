//! Limits on the ACKs sent in answer to segments a connection refuses.
//!
//! Two limits, as Linux has them (`net/ipv4/tcp_input.c`):
//!
//! - Per connection, Linux's `tcp_invalid_ratelimit` (`tcp_oow_rate_limited`):
//!   at most one ACK per [`TcpConfig::invalid_ack_interval_ns`] (500 ms) in
//!   answer to refused segments: out of window, failing PAWS, a retransmitted
//!   SYN in SYN-RECEIVED, and every challenge ACK. A segment that carries data
//!   or a FIN and no SYN is always answered (it cannot be half of an ACK loop,
//!   and a zero-window probe, or a retransmission whose ACK was lost, needs
//!   its ACK); the connection keeps the time in
//!   [`Connection`](super::connection::Connection) itself.
//! - Per worker, RFC 5961 section 7's challenge-ACK limit (Linux's
//!   `tcp_challenge_ack_limit`, `tcp_send_challenge_ack`): [`AckLimiter`]
//!   lets a worker send about `limit` challenge ACKs a second. The budget of
//!   each second is drawn at random in `[limit/2, limit*3/2)`: with a fixed,
//!   shared count an off-path attacker counts the challenge ACKs it gets on
//!   its own connection and learns whether its spoofed segment hit another
//!   connection (CVE-2016-5696, "Off-Path TCP Exploits", USENIX Security
//!   2016). The draw is SipHash-2-4 of the second under a key given at
//!   construction (the protocol core reads no random source), so no two
//!   workers and no two seconds can be predicted from one another.
//!
//! [`TcpConfig::invalid_ack_interval_ns`]: super::connection::TcpConfig::invalid_ack_interval_ns

use siphasher::sip::SipHasher24;

use crate::wire::{TcpFlags, TcpHeader};

/// Linux's default `tcp_challenge_ack_limit`: challenge ACKs per second.
pub const DEFAULT_CHALLENGE_ACK_LIMIT: u32 = 1000;

const SECOND_NS: u64 = 1_000_000_000;

/// What became of the ACKs that refused segments called for, since the
/// limiter was made. Totals: they only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckCounts {
    /// Challenge ACKs sent (RFC 5961: a RST or SYN in the window, an ACK
    /// of data never sent or too old to be believed).
    pub challenge_sent: u64,
    /// Challenge ACKs not sent: the connection's or the worker's limit.
    pub challenge_limited: u64,
    /// ACKs sent in answer to an out-of-window segment (or one failing PAWS,
    /// or a repeated SYN in SYN-RECEIVED, answered with the SYN-ACK).
    pub out_of_window_sent: u64,
    /// Such ACKs not sent: the connection's limit.
    pub out_of_window_limited: u64,
}

/// Why a refused segment calls for an ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not acceptable (RFC 9293 3.10.7.4 "first"), or PAWS (RFC 7323 5.3):
    /// the ACK tells the peer where we are.
    OutOfWindow,
    /// RFC 5961's challenge ACK (sections 3.2, 4.2, 5.2): the peer must prove
    /// it sees our sequence space.
    Challenge,
}

/// A worker's challenge-ACK budget (RFC 5961 section 7), and the counts of
/// answered and suppressed ACKs of all its connections.
#[derive(Clone, Debug)]
pub struct AckLimiter {
    /// The mean budget per second; `u32::MAX` for no limit.
    limit: u32,
    /// Keys the draw of each second's budget.
    key: SipHasher24,
    /// The second (of `now`) whose budget `left` is; `u64::MAX` before any.
    second: u64,
    /// Challenge ACKs left this second.
    left: u32,
    counts: AckCounts,
}

impl AckLimiter {
    /// A limiter for `limit` challenge ACKs per second on average
    /// (`u32::MAX`: no limit; 0: none at all), drawing budgets under `key`
    /// (random, and different for each worker).
    pub fn new(limit: u32, key: [u8; 16]) -> Self {
        AckLimiter {
            limit,
            key: SipHasher24::new_with_key(&key),
            second: u64::MAX,
            left: 0,
            counts: AckCounts::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> AckCounts {
        self.counts
    }

    /// Whether the worker may send one more challenge ACK at `now`; if so,
    /// it is taken from this second's budget.
    pub fn take_challenge(&mut self, now: u64) -> bool {
        if self.limit == u32::MAX {
            return true;
        }
        let second = now / SECOND_NS;
        if second != self.second {
            self.second = second;
            self.left = self.budget(second);
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }

    /// The budget of `second`: uniform in `[half, half + limit)`, where
    /// `half = ceil(limit / 2)` (Linux: `get_random_u32_inclusive(half,
    /// ack_limit + half - 1)`).
    fn budget(&self, second: u64) -> u32 {
        if self.limit == 0 {
            return 0;
        }
        let half = self.limit.div_ceil(2);
        let draw = self.key.hash(&second.to_le_bytes()) % u64::from(self.limit);
        half.saturating_add(draw as u32)
    }

    /// Count the fate of one ACK that a refused segment called for.
    pub(crate) fn count(&mut self, why: Refusal, sent: bool) {
        let counter = match (why, sent) {
            (Refusal::Challenge, true) => &mut self.counts.challenge_sent,
            (Refusal::Challenge, false) => &mut self.counts.challenge_limited,
            (Refusal::OutOfWindow, true) => &mut self.counts.out_of_window_sent,
            (Refusal::OutOfWindow, false) => &mut self.counts.out_of_window_limited,
        };
        *counter += 1;
    }
}

/// Whether to send the ACK a refused segment calls for (`why`), on a
/// connection (or TIME-WAIT record) whose last such ACK went out at
/// `last_ms` (milliseconds, wrapping, plus one; 0 for none): counted in
/// `limits` either way, and `last_ms` moved when an ACK goes out under the
/// connection's limit. Data or a FIN without a SYN is always answered out of
/// window: it cannot be half of an ACK loop (Linux's `tcp_oow_rate_limited`);
/// anything else gets at most one ACK per `interval_ns` per connection
/// (Linux's `__tcp_oow_rate_limited`), and a challenge ACK also needs the
/// worker's budget.
pub(crate) fn answer_refused(
    last_ms: &mut u32,
    why: Refusal,
    seg: &TcpHeader,
    payload_len: usize,
    limits: &mut AckLimiter,
    interval_ns: u64,
    now: u64,
) -> bool {
    let occupies = payload_len > 0 || seg.flags.contains(TcpFlags::FIN);
    let sent = if why == Refusal::OutOfWindow && occupies && !seg.flags.contains(TcpFlags::SYN) {
        true
    } else if connection_limited(last_ms, interval_ns, now) {
        false
    } else {
        why == Refusal::OutOfWindow || limits.take_challenge(now)
    };
    limits.count(why, sent);
    sent
}

/// The per-connection limit: whether an ACK to a refused segment went out
/// less than `interval_ns` before `now`; if not, `now` becomes the time of
/// the last one.
fn connection_limited(last_ms: &mut u32, interval_ns: u64, now: u64) -> bool {
    // Kept plus one, so that 0 means "none yet" even at time 0.
    let stamp = ((now / 1_000_000) as u32).wrapping_add(1);
    let interval_ms = interval_ns / 1_000_000;
    if *last_ms != 0 {
        let elapsed = stamp.wrapping_sub(*last_ms) as i32;
        if elapsed >= 0 && (elapsed as u64) < interval_ms {
            return true;
        }
    }
    *last_ms = stamp;
    false
}

impl Default for AckLimiter {
    /// Linux's limit with a fixed key: for tests and simulation.
    fn default() -> Self {
        AckLimiter::new(DEFAULT_CHALLENGE_ACK_LIMIT, [0x5a; 16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_random_around_the_limit_and_reset_each_second() {
        let mut budgets = Vec::new();
        for key in 0..4u8 {
            let mut limiter = AckLimiter::new(1000, [key; 16]);
            for second in 0..50u64 {
                let now = second * SECOND_NS + 123;
                let mut n = 0;
                while limiter.take_challenge(now + n) {
                    n += 1;
                    assert!(n < 2000, "no end to the budget");
                }
                assert!((500..1500).contains(&n), "budget {n}");
                budgets.push(n);
            }
        }
        let mean = budgets.iter().sum::<u64>() / budgets.len() as u64;
        assert!((800..1200).contains(&mean), "mean budget {mean}");
        let mut distinct = budgets.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > budgets.len() / 2, "{budgets:?}");
        // Two workers (keys) draw different budgets for the same second.
        assert_ne!(budgets[..50], budgets[50..100]);
    }

    #[test]
    fn zero_allows_none_and_max_allows_all() {
        let mut none = AckLimiter::new(0, [1; 16]);
        assert!(!none.take_challenge(0));
        let mut all = AckLimiter::new(u32::MAX, [1; 16]);
        assert!((0..100_000).all(|_| all.take_challenge(5)));
    }
}
