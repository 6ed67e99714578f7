//! The retransmission timer: RFC 6298, "Computing TCP's Retransmission Timer".
//!
//! Implemented:
//! - section 2.1: before any RTT sample the RTO is [`RtoConfig::initial_ns`];
//! - section 2.2: the first sample `R` sets `SRTT = R`, `RTTVAR = R/2`;
//! - section 2.3: later samples `R'` set
//!   `RTTVAR = (1 - beta) * RTTVAR + beta * |SRTT - R'|` (with the old SRTT)
//!   and then `SRTT = (1 - alpha) * SRTT + alpha * R'`, alpha = 1/8,
//!   beta = 1/4;
//! - sections 2.2-2.5: `RTO = SRTT + max(G, K * RTTVAR)`, K = 4, G =
//!   [`CLOCK_GRANULARITY_NS`] (1 ms), clamped to the `min_ns..=max_ns` of
//!   [`RtoConfig`];
//! - section 5.5: each expiry of the timer doubles the RTO ("back off"), never
//!   past the maximum; section 5.7's "keep the backed-off RTO until a new
//!   sample" holds because only [`RttEstimator::on_sample`] resets the backoff.
//!
//! Not here, and the caller's job:
//! - Karn's algorithm (section 3): feed only unambiguous samples, that is RTTs
//!   measured with the timestamp option (RFC 7323 section 4) or from segments
//!   that were never retransmitted. A sample from a retransmitted segment
//!   without timestamps may belong to either transmission and must be dropped.
//! - Section 5.7: after the SYN (or SYN-ACK) timed out, RTO should be reset to
//!   3 s when data transmission begins; the caller can do that with a fresh
//!   estimator and a config whose `initial_ns` is 3 s.
//! - Section 5: starting, restarting and stopping the timer itself.
//!
//! All times are nanoseconds supplied by the caller; nothing reads a clock.
//! The estimator stores microseconds in `u32` (samples above about 71 minutes
//! saturate), so sub-microsecond parts of samples are dropped.
//!
//! Nothing here panics: arithmetic saturates, and a config with
//! `min_ns > max_ns` gives `max_ns` (the maximum wins).

/// The clock granularity `G` of RFC 6298 section 2: 1 ms. The RTO is never
/// less than `SRTT + G`, which keeps it above the RTT on paths whose RTT
/// variance is tiny (RFC 6298 section 4).
pub const CLOCK_GRANULARITY_NS: u64 = 1_000_000;

/// `K` of RFC 6298 section 2: the weight of RTTVAR in the RTO.
const K: u64 = 4;

/// Nanoseconds in a microsecond, the unit of the stored estimates.
const NS_PER_US: u64 = 1_000;

/// Bounds and starting value of the retransmission timeout. One config is
/// normally shared by every connection of a stack.
#[derive(Clone, Copy, Debug)]
pub struct RtoConfig {
    /// The RTO before the first RTT sample (RFC 6298 section 2.1: 1 s).
    pub initial_ns: u64,
    /// The lower bound of the RTO. RFC 6298 section 2.4 says 1 s; the default
    /// is 200 ms, Linux's `TCP_RTO_MIN`. The 1 s floor dates from coarse
    /// (500 ms) timers and guards against spurious timeouts; with a
    /// fine-grained clock and `SRTT + 4 * RTTVAR`, 1 s makes every timeout on a
    /// short path (LAN, data center) cost hundreds of RTTs. 200 ms still sits
    /// at the usual delayed-ACK ceiling (RFC 1122 allows 500 ms, Linux peers
    /// use at most 200 ms), so a lone delayed ACK rarely fires the timer.
    /// RFC 8961 allows such a choice.
    pub min_ns: u64,
    /// The upper bound of the RTO, also the cap of the exponential backoff
    /// (RFC 6298 section 2.5 allows a maximum of at least 60 s; Linux's
    /// `TCP_RTO_MAX` is 120 s).
    pub max_ns: u64,
}

impl Default for RtoConfig {
    /// 1 s initial, 200 ms minimum, 120 s maximum.
    fn default() -> Self {
        RtoConfig {
            initial_ns: 1_000_000_000,
            min_ns: 200_000_000,
            max_ns: 120_000_000_000,
        }
    }
}

/// RFC 6298 state of one connection: smoothed RTT, RTT variance, the smallest
/// sample, the latest sample and the backoff count. 20 bytes.
#[derive(Clone, Copy, Debug)]
pub struct RttEstimator {
    /// SRTT in microseconds; meaningless while `sampled` is false.
    srtt_us: u32,
    /// RTTVAR in microseconds; meaningless while `sampled` is false.
    rttvar_us: u32,
    /// The smallest sample seen, in microseconds; `u32::MAX` before the first.
    min_rtt_us: u32,
    /// The latest sample, in microseconds (for metrics).
    last_us: u32,
    /// Timeouts since the last sample (each doubles the RTO); saturates at
    /// 255, and the RTO stops growing at [`RtoConfig::max_ns`] well before.
    backoff: u8,
    /// Whether a sample has been taken (RFC 6298 section 2.1 vs 2.2).
    sampled: bool,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl RttEstimator {
    /// An estimator with no sample: the RTO is the configured initial value.
    pub const fn new() -> Self {
        RttEstimator {
            srtt_us: 0,
            rttvar_us: 0,
            min_rtt_us: u32::MAX,
            last_us: 0,
            backoff: 0,
            sampled: false,
        }
    }

    /// Takes one RTT measurement (RFC 6298 sections 2.2 and 2.3) and resets
    /// the backoff (section 5.7: the backed-off RTO is kept only until a new
    /// sample arrives).
    ///
    /// The sample must be unambiguous (Karn's algorithm, the caller's job: see
    /// the module documentation). `config` is not needed by the estimate
    /// itself; it is taken so the signature does not change if clamping of
    /// samples is ever wanted.
    pub fn on_sample(&mut self, rtt_ns: u64, config: &RtoConfig) {
        let _ = config;
        let r = u32::try_from(rtt_ns / NS_PER_US).unwrap_or(u32::MAX);
        if self.sampled {
            // Section 2.3, RTTVAR first, with the SRTT from before this
            // sample. Integer arithmetic, rounded to the nearest microsecond.
            let srtt = u64::from(self.srtt_us);
            let r64 = u64::from(r);
            let delta = srtt.abs_diff(r64);
            let rttvar = (3 * u64::from(self.rttvar_us) + delta + 2) / 4;
            let srtt = (7 * srtt + r64 + 4) / 8;
            // Both are weighted means of u32 values, so they fit.
            self.rttvar_us = rttvar as u32;
            self.srtt_us = srtt as u32;
        } else {
            // Section 2.2.
            self.srtt_us = r;
            self.rttvar_us = r.div_ceil(2);
            self.sampled = true;
        }
        self.min_rtt_us = self.min_rtt_us.min(r);
        self.last_us = r;
        self.backoff = 0;
    }

    /// The current RTO in nanoseconds: `SRTT + max(G, 4 * RTTVAR)` (or the
    /// initial RTO before any sample) clamped to `[min_ns, max_ns]`, doubled
    /// once per backoff, and never above `max_ns`.
    pub fn rto_ns(&self, config: &RtoConfig) -> u64 {
        let base = if self.sampled {
            let srtt = u64::from(self.srtt_us) * NS_PER_US;
            let var = K * u64::from(self.rttvar_us) * NS_PER_US;
            srtt + var.max(CLOCK_GRANULARITY_NS)
        } else {
            config.initial_ns
        };
        // Not `clamp`, which panics when min > max.
        let base = base.max(config.min_ns).min(config.max_ns);
        let backed_off = if self.backoff >= 64 {
            u64::MAX
        } else {
            base.saturating_mul(1u64 << self.backoff)
        };
        backed_off.min(config.max_ns)
    }

    /// The retransmission timer expired (RFC 6298 section 5.5): doubles the
    /// RTO. [`Self::rto_ns`] never exceeds the configured maximum however
    /// often this is called; the count itself saturates at 255, so the caller
    /// can also use [`Self::backoff`] to give up after R2 retries (RFC 9293
    /// section 3.8.3).
    pub fn on_timeout(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// The number of timeouts since the last RTT sample.
    pub fn backoff(&self) -> u8 {
        self.backoff
    }

    /// SRTT in nanoseconds, or `None` before the first sample.
    pub fn srtt_ns(&self) -> Option<u64> {
        self.sampled.then(|| u64::from(self.srtt_us) * NS_PER_US)
    }

    /// The latest sample in nanoseconds (truncated to microseconds), or
    /// `None` before the first.
    pub fn last_sample_ns(&self) -> Option<u64> {
        self.sampled.then(|| u64::from(self.last_us) * NS_PER_US)
    }

    /// RTTVAR in nanoseconds, or `None` before the first sample.
    pub fn rttvar_ns(&self) -> Option<u64> {
        self.sampled.then(|| u64::from(self.rttvar_us) * NS_PER_US)
    }

    /// The smallest RTT sample seen in the connection's life, in nanoseconds
    /// (truncated to microseconds), or `None` before the first sample. It is
    /// not windowed: a route change that lengthens the path does not raise
    /// it.
    pub fn min_rtt_ns(&self) -> Option<u64> {
        self.sampled.then(|| u64::from(self.min_rtt_us) * NS_PER_US)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;

    #[test]
    fn fits_in_twenty_bytes() {
        assert!(core::mem::size_of::<RttEstimator>() <= 20);
    }

    #[test]
    fn the_latest_sample_is_kept_for_metrics() {
        let config = RtoConfig::default();
        let mut e = RttEstimator::new();
        assert_eq!(e.last_sample_ns(), None);
        e.on_sample(30 * MS, &config);
        e.on_sample(10 * MS, &config);
        assert_eq!(e.last_sample_ns(), Some(10 * MS));
        assert_ne!(e.srtt_ns(), Some(10 * MS), "the smoothed value differs");
    }

    #[test]
    fn initial_rto_and_backoff_before_samples() {
        let config = RtoConfig::default();
        let mut rtt = RttEstimator::new();
        assert_eq!(rtt.srtt_ns(), None);
        assert_eq!(rtt.rttvar_ns(), None);
        assert_eq!(rtt.min_rtt_ns(), None);
        assert_eq!(rtt.rto_ns(&config), S);
        rtt.on_timeout();
        assert_eq!(rtt.backoff(), 1);
        assert_eq!(rtt.rto_ns(&config), 2 * S);
        rtt.on_timeout();
        assert_eq!(rtt.rto_ns(&config), 4 * S);
    }

    #[test]
    fn first_sample_follows_section_2_2() {
        let config = RtoConfig::default();
        let mut rtt = RttEstimator::new();
        rtt.on_sample(100 * MS, &config);
        assert_eq!(rtt.srtt_ns(), Some(100 * MS));
        assert_eq!(rtt.rttvar_ns(), Some(50 * MS));
        // 100 + 4 * 50 = 300 ms.
        assert_eq!(rtt.rto_ns(&config), 300 * MS);
        assert_eq!(rtt.min_rtt_ns(), Some(100 * MS));
    }

    #[test]
    fn later_samples_follow_section_2_3() {
        let config = RtoConfig::default();
        let mut rtt = RttEstimator::new();
        rtt.on_sample(100 * MS, &config);
        // RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 37.5 + 25 = 62.5 ms,
        // SRTT = 7/8 * 100 + 1/8 * 200 = 112.5 ms (RTTVAR uses the old SRTT).
        rtt.on_sample(200 * MS, &config);
        assert_eq!(rtt.rttvar_ns(), Some(62_500_000));
        assert_eq!(rtt.srtt_ns(), Some(112_500_000));
        // RTO = 112.5 + 4 * 62.5 = 362.5 ms.
        assert_eq!(rtt.rto_ns(&config), 362_500_000);
        // RTTVAR = 3/4 * 62.5 + 1/4 * |112.5 - 50| = 46.875 + 15.625 = 62.5,
        // SRTT = 7/8 * 112.5 + 1/8 * 50 = 104.6875 ms.
        rtt.on_sample(50 * MS, &config);
        assert_eq!(rtt.rttvar_ns(), Some(62_500_000));
        assert_eq!(rtt.srtt_ns(), Some(104_688_000)); // rounded to the µs
        assert_eq!(rtt.min_rtt_ns(), Some(50 * MS));
    }

    #[test]
    fn granularity_and_minimum_apply() {
        let config = RtoConfig::default();
        let mut rtt = RttEstimator::new();
        // A steady 10 µs path: RTTVAR decays to ~0, so G dominates the
        // variance term, then the 200 ms floor dominates everything.
        for _ in 0..100 {
            rtt.on_sample(10_000, &config);
        }
        assert_eq!(rtt.srtt_ns(), Some(10_000));
        assert_eq!(rtt.rto_ns(&config), 200 * MS);
        let no_floor = RtoConfig {
            min_ns: 0,
            ..config
        };
        // SRTT + G, since 4 * RTTVAR < 1 ms.
        assert_eq!(rtt.rto_ns(&no_floor), 10_000 + MS);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_a_sample_resets_it() {
        let config = RtoConfig::default();
        let mut rtt = RttEstimator::new();
        rtt.on_sample(100 * MS, &config);
        let mut expected = 300 * MS;
        for _ in 0..20 {
            assert_eq!(rtt.rto_ns(&config), expected.min(120 * S));
            rtt.on_timeout();
            expected *= 2;
        }
        assert_eq!(rtt.rto_ns(&config), 120 * S);
        for _ in 0..300 {
            rtt.on_timeout();
        }
        assert_eq!(rtt.backoff(), u8::MAX);
        assert_eq!(rtt.rto_ns(&config), 120 * S);
        rtt.on_sample(100 * MS, &config);
        assert_eq!(rtt.backoff(), 0);
        assert!(rtt.rto_ns(&config) < S);
    }

    #[test]
    fn inverted_bounds_do_not_panic() {
        let config = RtoConfig {
            initial_ns: S,
            min_ns: 10 * S,
            max_ns: 5 * S,
        };
        let mut rtt = RttEstimator::new();
        assert_eq!(rtt.rto_ns(&config), 5 * S);
        rtt.on_sample(u64::MAX, &config);
        assert_eq!(rtt.rto_ns(&config), 5 * S);
    }

    /// The RFC formulas in exact rational (f64) arithmetic, for comparison.
    fn reference(samples_us: &[u32]) -> (f64, f64) {
        let mut srtt = f64::from(samples_us[0]);
        let mut rttvar = srtt / 2.0;
        for &r in &samples_us[1..] {
            let r = f64::from(r);
            rttvar = 0.75 * rttvar + 0.25 * (srtt - r).abs();
            srtt = 0.875 * srtt + 0.125 * r;
        }
        (srtt, rttvar)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn tracks_the_rfc_formulas(samples in proptest::collection::vec(1u32..5_000_000, 1..60)) {
            let config = RtoConfig { initial_ns: S, min_ns: 0, max_ns: u64::MAX };
            let mut rtt = RttEstimator::new();
            for &r in &samples {
                rtt.on_sample(u64::from(r) * 1_000, &config);
            }
            let (srtt, rttvar) = reference(&samples);
            let got_srtt = rtt.srtt_ns().unwrap() as f64 / 1e3;
            let got_rttvar = rtt.rttvar_ns().unwrap() as f64 / 1e3;
            // Rounding to the microsecond: errors of at most 1/2 µs per step
            // decay geometrically (7/8 and 3/4), so they stay within a few µs.
            prop_assert!((got_srtt - srtt).abs() <= 4.0, "srtt {} vs {}", got_srtt, srtt);
            prop_assert!((got_rttvar - rttvar).abs() <= 6.0, "rttvar {} vs {}", got_rttvar, rttvar);
            let rto = rtt.rto_ns(&config) as f64 / 1e3;
            let expected = srtt + (4.0 * rttvar).max(1_000.0);
            prop_assert!((rto - expected).abs() <= 30.0, "rto {} vs {}", rto, expected);
            prop_assert_eq!(rtt.min_rtt_ns(), Some(u64::from(*samples.iter().min().unwrap()) * 1_000));
        }

        #[test]
        fn rto_stays_within_bounds(
            samples in proptest::collection::vec(any::<u64>(), 0..10),
            timeouts in 0usize..80,
            min_ms in 0u64..2_000,
            span_ms in 0u64..200_000,
        ) {
            let config = RtoConfig {
                initial_ns: S,
                min_ns: min_ms * MS,
                max_ns: (min_ms + span_ms) * MS,
            };
            let mut rtt = RttEstimator::new();
            for &r in &samples {
                rtt.on_sample(r, &config);
            }
            let mut last = rtt.rto_ns(&config);
            for _ in 0..timeouts {
                rtt.on_timeout();
                let rto = rtt.rto_ns(&config);
                prop_assert!(rto >= last, "backoff must not shrink the RTO");
                last = rto;
            }
            prop_assert!(last >= config.min_ns && last <= config.max_ns);
        }
    }
}
