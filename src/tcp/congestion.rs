//! Congestion control: NewReno (RFC 5681, RFC 6582) and CUBIC (RFC 9438).
//!
//! Implemented:
//! - RFC 6928 / RFC 5681 section 3.1: the initial window
//!   `min(10 * SMSS, max(2 * SMSS, 14600))` and an "arbitrarily high" initial
//!   ssthresh (`u32::MAX`);
//! - RFC 5681 section 3.1 slow start with appropriate byte counting (RFC 3465,
//!   L = 2 * SMSS): each ACK adds `min(acked, 2 * SMSS)`, never past ssthresh;
//! - RFC 5681 section 3.1 congestion avoidance for NewReno, by byte counting:
//!   every cwnd's worth of acknowledged bytes adds one SMSS (the per-ACK
//!   `SMSS * SMSS / cwnd` of equation 3, without its rounding errors);
//! - RFC 5681 equation 4, `ssthresh = max(FlightSize / 2, 2 * SMSS)`, on
//!   fast retransmit and on a retransmission timeout, and the rule that a
//!   second timeout of the same data keeps ssthresh unchanged;
//! - RFC 5681 section 3.1: after a timeout cwnd is the loss window, 1 SMSS;
//! - RFC 5681 section 4.1: after an idle period longer than the RTO, cwnd is at
//!   most the restart window, the initial window;
//! - RFC 9438 sections 4.2-4.5: CUBIC's window `W_cubic(t) = C * (t - K)^3 +
//!   W_max` (C = 0.4) with `K = cbrt((W_max - cwnd_epoch) / C)`, the target
//!   `W_cubic(t + SRTT)` clamped to `[cwnd, 1.5 * cwnd]`, growth of
//!   `(target - cwnd) / cwnd` per acknowledged SMSS in the concave and convex
//!   regions, and the Reno-friendly region: `W_est += alpha_cubic *
//!   segments_acked / cwnd`, `alpha_cubic = 3 * (1 - beta) / (1 + beta)` until
//!   `W_est >= cwnd_prior`, then 1; cwnd follows W_est whenever `W_cubic(t) <
//!   W_est`;
//! - RFC 9438 section 4.6: `ssthresh = max(FlightSize * beta_cubic, 2 *
//!   SMSS)`, beta_cubic = 0.7, `cwnd = ssthresh`; section 4.7 fast
//!   convergence (`W_max = cwnd * (1 + beta) / 2` when the window did not get
//!   back to the previous W_max); section 4.8 timeouts (ssthresh from
//!   beta_cubic, and in the next congestion avoidance stage `K = 0`, `W_max =
//!   cwnd_epoch`, `W_est = cwnd_epoch`).
//!
//! The epoch, and with it `t`, starts at the first ACK of each congestion
//! avoidance stage (RFC 9438 section 4.2, "the beginning of the current
//! congestion avoidance stage"), so the recovery period after a loss is not
//! counted. An idle period shorter than the RTO is taken out of `t` by
//! [`Congestion::on_idle_restart`] (RFC 9438 section 5.8).
//!
//! Not here, and the connection's job:
//! - loss recovery itself (RFC 6675 with [`super::scoreboard`]): during
//!   recovery the connection sends by `pipe` against cwnd, calls
//!   [`Congestion::on_ack`] only outside recovery, and enters recovery at most
//!   once per window of data (RFC 6675 section 5, RFC 6582 section 3.2);
//! - the fast-recovery cwnd inflation of RFC 5681 section 3.2 steps 4 and 5
//!   and its deflation on partial ACKs (RFC 6582 section 3.2 step 5): the
//!   pipe-based recovery of RFC 6675 replaces both, so
//!   [`Congestion::on_recovery_ack`] does nothing;
//! - limiting cwnd growth while the application, not cwnd, limits the flight
//!   (RFC 7661; RFC 9438 section 5.8).
//!
//! CUBIC uses `f64`: IEEE 754 arithmetic plus `cbrt`, the same results for
//! the same inputs on a given platform. Conversions back to `u32` saturate.
//! Nothing here panics or allocates; a segment size of 0 is taken as 1.

/// Which congestion control algorithm a connection runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// RFC 5681 / RFC 6582: additive increase of one SMSS per RTT, halving on
    /// loss.
    NewReno,
    /// RFC 9438, the Linux default: a cubic function of the time since the
    /// last congestion event, reducing by 30% on loss.
    #[default]
    Cubic,
}

/// `C` of RFC 9438 section 4.2, in segments per second cubed.
const CUBIC_C: f64 = 0.4;
/// `beta_cubic` of RFC 9438 section 4.6 as a fraction, 7/10.
const BETA_NUM: u64 = 7;
/// The denominator of `beta_cubic`.
const BETA_DEN: u64 = 10;
/// `(1 + beta_cubic) / 2` of RFC 9438 section 4.7 as a fraction, 17/20.
const FAST_CONVERGENCE_NUM: u64 = 17;
/// The denominator of the fast-convergence factor.
const FAST_CONVERGENCE_DEN: u64 = 20;
/// `alpha_cubic = 3 * (1 - beta_cubic) / (1 + beta_cubic)` of RFC 9438
/// section 4.3: 0.9 / 1.7.
const ALPHA_CUBIC: f64 = 3.0 * (1.0 - 0.7) / (1.0 + 0.7);
/// Nanoseconds per second, for CUBIC's `t`.
const NS_PER_S: f64 = 1e9;

/// One connection's congestion window and the state of its algorithm.
/// 56 bytes.
#[derive(Clone, Copy, Debug)]
pub struct Congestion {
    /// CUBIC: when the current congestion avoidance epoch started (RFC 9438
    /// `t_epoch`), in the caller's nanoseconds; meaningful while `in_epoch`.
    epoch_start_ns: u64,
    /// CUBIC: `K` of the current epoch in seconds (RFC 9438 figure 2);
    /// meaningful while `in_epoch`. Never negative: an epoch that starts at
    /// or above W_max uses `K = 0` and `W_max = cwnd_epoch`.
    k_s: f64,
    /// CUBIC: `W_est` of RFC 9438 section 4.3 in bytes; meaningful while
    /// `in_epoch`. Kept fractional because each ACK adds far less than a
    /// byte on large windows.
    w_est: f64,
    /// SMSS in bytes; at least 1.
    mss: u32,
    /// The congestion window in bytes; at least `mss`, and at least `2 * mss`
    /// right after a congestion event (unless `u32::MAX` caps both).
    cwnd: u32,
    /// The slow-start threshold in bytes; `u32::MAX` until the first
    /// congestion event, then at least `2 * mss`.
    ssthresh: u32,
    /// Bytes acknowledged in congestion avoidance that have not yet produced
    /// an SMSS of growth (NewReno: less than cwnd; CUBIC: less than the bytes
    /// per SMSS of growth at the last ACK).
    ca_acked: u32,
    /// CUBIC: `W_max` in bytes, the window just before the last reduction
    /// (after fast convergence); 0 when unknown (never reduced, or forgotten
    /// at a timeout per RFC 9438 section 4.8).
    w_max: u32,
    /// CUBIC: `cwnd_prior` in bytes, the window just before ssthresh was last
    /// set; switches alpha_cubic to 1 once W_est reaches it.
    cwnd_prior: u32,
    /// The algorithm; never changes.
    algorithm: Algorithm,
    /// CUBIC: whether a congestion avoidance epoch is running; false in slow
    /// start, in recovery, and until the first ACK of congestion avoidance.
    in_epoch: bool,
    /// Whether the retransmission timer fired and no new data has been
    /// acknowledged since: a second timeout then keeps ssthresh (RFC 5681
    /// section 3.1, "the value of ssthresh is held constant").
    after_timeout: bool,
    /// Whether [`Congestion::on_congestion_event`] was called and neither a
    /// recovery exit nor a timeout has ended that recovery since.
    in_recovery: bool,
}

impl Congestion {
    /// A new connection's state: cwnd is the initial window
    /// ([`Self::initial_window`]) and ssthresh is `u32::MAX`, "arbitrarily
    /// high" (RFC 5681 section 3.1). An `mss` of 0 is taken as 1.
    pub fn new(algorithm: Algorithm, mss: u32) -> Self {
        let mss = mss.max(1);
        Congestion {
            epoch_start_ns: 0,
            k_s: 0.0,
            w_est: 0.0,
            mss,
            cwnd: Self::initial_window(mss),
            ssthresh: u32::MAX,
            ca_acked: 0,
            w_max: 0,
            cwnd_prior: 0,
            algorithm,
            in_epoch: false,
            after_timeout: false,
            in_recovery: false,
        }
    }

    /// The initial window of RFC 6928, `min(10 * mss, max(2 * mss, 14600))`
    /// bytes: 10 segments at the usual Ethernet MSS (Linux always uses 10
    /// segments), fewer for jumbo frames. Also the restart window of RFC 5681
    /// section 4.1.
    pub fn initial_window(mss: u32) -> u32 {
        let mss = u64::from(mss.max(1));
        let iw = (10 * mss).min((2 * mss).max(14_600));
        saturate(iw)
    }

    /// The algorithm this connection runs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// The slow-start threshold in bytes (`u32::MAX` before any congestion).
    pub fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    /// The sender maximum segment size the windows are counted in.
    pub fn mss(&self) -> u32 {
        self.mss
    }

    /// Whether the next ACK grows cwnd by slow start (`cwnd < ssthresh`).
    pub fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// The segment size changed (path MTU discovery, RFC 8201 / RFC 4821):
    /// cwnd, ssthresh and CUBIC's windows keep their size in segments. An
    /// `mss` of 0 is taken as 1.
    pub fn set_mss(&mut self, mss: u32) {
        let new = mss.max(1);
        let old = self.mss;
        if new == old {
            return;
        }
        let scale = |bytes: u32| saturate(u64::from(bytes) * u64::from(new) / u64::from(old));
        self.cwnd = scale(self.cwnd).max(new);
        if self.ssthresh != u32::MAX {
            self.ssthresh = scale(self.ssthresh).max(new.saturating_mul(2));
        }
        self.ca_acked = scale(self.ca_acked);
        self.w_max = scale(self.w_max);
        self.cwnd_prior = scale(self.cwnd_prior);
        self.w_est = self.w_est * f64::from(new) / f64::from(old);
        self.mss = new;
    }

    /// `acked` bytes of new data were cumulatively acknowledged outside loss
    /// recovery, at `now_ns`, with the current smoothed RTT `srtt_ns` (0 if
    /// there is none yet). Grows cwnd by slow start below ssthresh and by the
    /// algorithm's congestion avoidance at or above it. Never shrinks cwnd.
    pub fn on_ack(&mut self, acked: u32, now_ns: u64, srtt_ns: u64) {
        if acked == 0 {
            return;
        }
        self.after_timeout = false;
        if self.cwnd < self.ssthresh {
            // RFC 5681 section 3.1 with RFC 3465's L = 2 * SMSS. Stopping at
            // ssthresh means the next ACK starts congestion avoidance; the
            // rest of this ACK's bytes are not counted for it.
            let increase = acked.min(self.mss.saturating_mul(2));
            self.cwnd = self.cwnd.saturating_add(increase).min(self.ssthresh);
            return;
        }
        match self.algorithm {
            Algorithm::NewReno => self.reno_avoidance(acked),
            Algorithm::Cubic => self.cubic_avoidance(acked, now_ns, srtt_ns),
        }
    }

    /// RFC 5681 congestion avoidance by byte counting: one SMSS per cwnd of
    /// acknowledged bytes.
    fn reno_avoidance(&mut self, acked: u32) {
        self.ca_acked = self.ca_acked.saturating_add(acked);
        if self.ca_acked >= self.cwnd {
            let steps = self.ca_acked / self.cwnd;
            self.ca_acked -= steps * self.cwnd;
            let increase = u64::from(steps) * u64::from(self.mss);
            self.cwnd = saturate(u64::from(self.cwnd) + increase);
        }
    }

    /// RFC 9438 sections 4.2-4.5 for one ACK.
    fn cubic_avoidance(&mut self, acked: u32, now_ns: u64, srtt_ns: u64) {
        let mss = f64::from(self.mss);
        if !self.in_epoch {
            self.start_epoch(now_ns);
        }
        let cwnd = f64::from(self.cwnd);

        // Section 4.3: the Reno estimate, in bytes (segments * mss):
        // W_est += alpha * (acked / mss) / (cwnd / mss) segments.
        let alpha = if self.w_est >= f64::from(self.cwnd_prior) {
            1.0
        } else {
            ALPHA_CUBIC
        };
        self.w_est += alpha * f64::from(acked) * mss / cwnd;

        let t = now_ns.saturating_sub(self.epoch_start_ns) as f64 / NS_PER_S;
        if self.w_cubic(t) < self.w_est {
            // Reno-friendly region: cwnd = W_est (never a decrease).
            self.cwnd = self.cwnd.max(self.w_est as u32);
            return;
        }

        // Sections 4.4 and 4.5 (concave below W_max, convex above): grow by
        // (target - cwnd) / cwnd per acknowledged SMSS, counted in bytes until
        // they add up to whole segments.
        let rtt = srtt_ns as f64 / NS_PER_S;
        let target = self.w_cubic(t + rtt).min(1.5 * cwnd);
        if target <= cwnd {
            return;
        }
        // Bytes to acknowledge for one SMSS of growth: cwnd * mss / (target -
        // cwnd), at least 2 * mss because target <= 1.5 * cwnd.
        let per_mss = cwnd * mss / (target - cwnd);
        self.ca_acked = self.ca_acked.saturating_add(acked);
        let steps = (f64::from(self.ca_acked) / per_mss).floor();
        if steps >= 1.0 {
            self.ca_acked = (f64::from(self.ca_acked) - steps * per_mss) as u32;
            let increase = steps * mss;
            self.cwnd = (cwnd + increase).min(f64::from(u32::MAX)) as u32;
        }
    }

    /// Starts a CUBIC congestion avoidance epoch at `now_ns` with the current
    /// cwnd as `cwnd_epoch` (RFC 9438 section 4.2 figure 2, section 4.3, and
    /// for a window at or above W_max sections 4.8 and 4.10).
    fn start_epoch(&mut self, now_ns: u64) {
        self.in_epoch = true;
        self.epoch_start_ns = now_ns;
        self.ca_acked = 0;
        self.w_est = f64::from(self.cwnd);
        if self.w_max <= self.cwnd {
            self.w_max = self.cwnd;
            self.k_s = 0.0;
        } else {
            let segments = f64::from(self.w_max - self.cwnd) / f64::from(self.mss);
            self.k_s = (segments / CUBIC_C).cbrt();
        }
    }

    /// `W_cubic(t)` of RFC 9438 figure 1, in bytes: `C * (t - K)^3` segments
    /// plus W_max.
    fn w_cubic(&self, t: f64) -> f64 {
        let d = t - self.k_s;
        CUBIC_C * d * d * d * f64::from(self.mss) + f64::from(self.w_max)
    }

    /// Loss detected by fast retransmit or SACK (RFC 6675 section 5), with
    /// `flight` bytes outstanding: entering recovery. NewReno: `ssthresh =
    /// max(flight / 2, 2 * SMSS)` (RFC 5681 equation 4). CUBIC: `ssthresh =
    /// max(flight * 0.7, 2 * SMSS)` (RFC 9438 section 4.6), W_max from the
    /// current cwnd with fast convergence (section 4.7), and the epoch ends.
    /// Both: `cwnd = ssthresh`, no inflation (see the module documentation).
    ///
    /// Call at most once per recovery episode. `now_ns` is unused: the next
    /// epoch starts at the first ACK after recovery.
    pub fn on_congestion_event(&mut self, flight: u32, now_ns: u64) {
        let _ = now_ns;
        self.after_timeout = false;
        self.in_recovery = true;
        self.reduce(flight);
        self.cwnd = self.ssthresh;
    }

    /// Sets ssthresh from `flight` and, for CUBIC, `cwnd_prior` and W_max
    /// (RFC 5681 equation 4; RFC 9438 sections 4.6 and 4.7); ends the epoch.
    fn reduce(&mut self, flight: u32) {
        let flight = u64::from(flight);
        let floor = u64::from(self.mss) * 2;
        let ssthresh = match self.algorithm {
            Algorithm::NewReno => flight / 2,
            Algorithm::Cubic => {
                self.cwnd_prior = self.cwnd;
                self.w_max = if self.cwnd < self.w_max {
                    saturate(u64::from(self.cwnd) * FAST_CONVERGENCE_NUM / FAST_CONVERGENCE_DEN)
                } else {
                    self.cwnd
                };
                flight * BETA_NUM / BETA_DEN
            }
        };
        self.ssthresh = saturate(ssthresh.max(floor));
        self.in_epoch = false;
        self.ca_acked = 0;
    }

    /// An ACK of new data during recovery. Does nothing: with RFC 6675's
    /// pipe-based recovery cwnd stays at ssthresh, and the sending decision
    /// is `pipe < cwnd`, so there is no inflated window for RFC 6582's
    /// partial-ACK deflation (section 3.2 step 5) to undo. The connection
    /// still retransmits after a partial ACK, as RFC 6582 asks.
    pub fn on_recovery_ack(&mut self, acked: u32) {
        let _ = acked;
    }

    /// Recovery ended: the cumulative ACK passed the recovery point (RFC 6582
    /// section 3.2 step 3, "full acknowledgment"). Sets `cwnd = ssthresh`,
    /// option 2 of that step. Option 1,
    /// `min(ssthresh, max(FlightSize, SMSS) + SMSS)`, avoids a burst when
    /// little is in flight; the connection gets the same effect by pacing or
    /// by limiting the burst it sends. Does
    /// nothing if no recovery is under way (for example when a timeout ended
    /// it: the loss window stands).
    pub fn on_recovery_exit(&mut self) {
        if self.in_recovery {
            self.in_recovery = false;
            self.cwnd = self.ssthresh;
        }
    }

    /// The retransmission timer fired with `flight` bytes outstanding (before
    /// the timeout marks them lost). ssthresh as for a congestion event (RFC
    /// 5681 equation 4, or beta_cubic per RFC 9438 section 4.8) unless the
    /// timer already fired with no data acknowledged since, in which case
    /// ssthresh is kept (RFC 5681 section 3.1); cwnd becomes the loss window,
    /// one SMSS. CUBIC forgets W_max: the next congestion avoidance stage
    /// starts with `K = 0` and `W_max = cwnd_epoch` (RFC 9438 section 4.8).
    /// Ends any recovery. `now_ns` is unused.
    pub fn on_retransmit_timeout(&mut self, flight: u32, now_ns: u64) {
        let _ = now_ns;
        if !self.after_timeout {
            self.reduce(flight);
        }
        self.w_max = 0;
        self.in_epoch = false;
        self.ca_acked = 0;
        self.cwnd = self.mss;
        self.after_timeout = true;
        self.in_recovery = false;
    }

    /// The connection is about to send after `idle_ns` without sending, with
    /// the current RTO `rto_ns`. If the idle time exceeds the RTO, cwnd is cut
    /// to the restart window, `min(IW, cwnd)` (RFC 5681 section 4.1); if that
    /// returns the connection to slow start, CUBIC's epoch ends, and
    /// otherwise the idle time is taken out of CUBIC's `t` (RFC 9438
    /// section 5.8).
    pub fn on_idle_restart(&mut self, idle_ns: u64, rto_ns: u64) {
        self.cwnd = self.cwnd_after_idle(idle_ns, rto_ns);
        if self.cwnd < self.ssthresh {
            self.in_epoch = false;
            self.ca_acked = 0;
        } else if self.in_epoch {
            self.epoch_start_ns = self.epoch_start_ns.saturating_add(idle_ns);
        }
    }

    /// The window [`Congestion::on_idle_restart`] would leave after `idle_ns`
    /// with nothing in flight (RFC 5681 4.1: the restart window past an
    /// RTO), without changing anything: what a sender sizes its first
    /// segment by before it sends.
    pub fn cwnd_after_idle(&self, idle_ns: u64, rto_ns: u64) -> u32 {
        if idle_ns > rto_ns {
            self.cwnd.min(Self::initial_window(self.mss))
        } else {
            self.cwnd
        }
    }
}

/// `x` as `u32`, or `u32::MAX` if it does not fit.
fn saturate(x: u64) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSS: u32 = 1_000;
    const MS: u64 = 1_000_000;

    #[test]
    fn fits_in_sixty_four_bytes() {
        assert!(core::mem::size_of::<Congestion>() <= 64);
    }

    #[test]
    fn initial_window_follows_rfc_6928() {
        assert_eq!(Congestion::initial_window(1460), 14_600);
        assert_eq!(Congestion::initial_window(1448), 14_480);
        assert_eq!(Congestion::initial_window(536), 5_360);
        // Jumbo frames: max(2 * 9000, 14600) = 18000 < 90000.
        assert_eq!(Congestion::initial_window(9_000), 18_000);
        assert_eq!(Congestion::initial_window(u32::MAX), u32::MAX);
        let c = Congestion::new(Algorithm::default(), 1460);
        assert_eq!(c.algorithm(), Algorithm::Cubic);
        assert_eq!(c.cwnd(), 14_600);
        assert_eq!(c.ssthresh(), u32::MAX);
        assert!(c.in_slow_start());
    }

    /// Acknowledges one window, one SMSS per ACK, all at `now`; returns the
    /// number of ACKs.
    fn ack_window(c: &mut Congestion, now: u64, srtt: u64) -> u32 {
        let segments = c.cwnd() / c.mss();
        for _ in 0..segments {
            c.on_ack(c.mss(), now, srtt);
        }
        segments
    }

    #[test]
    fn slow_start_doubles_per_round_trip() {
        for algorithm in [Algorithm::NewReno, Algorithm::Cubic] {
            let mut c = Congestion::new(algorithm, MSS);
            assert_eq!(c.cwnd(), 10 * MSS);
            for round in 1..=5 {
                ack_window(&mut c, round * 100 * MS, 100 * MS);
                assert_eq!(c.cwnd(), (10 * MSS) << round, "{algorithm:?}");
            }
        }
    }

    #[test]
    fn slow_start_counts_at_most_two_segments_per_ack() {
        let mut c = Congestion::new(Algorithm::NewReno, MSS);
        // A stretch ACK of 8 segments adds 2 (RFC 3465, L = 2 * SMSS).
        c.on_ack(8 * MSS, 0, 0);
        assert_eq!(c.cwnd(), 12 * MSS);
        // Small ACKs add what they acknowledge.
        c.on_ack(100, 0, 0);
        assert_eq!(c.cwnd(), 12 * MSS + 100);
    }

    #[test]
    fn slow_start_stops_at_ssthresh() {
        let mut c = Congestion::new(Algorithm::NewReno, MSS);
        c.on_retransmit_timeout(9 * MSS, 0);
        assert_eq!(c.ssthresh(), 4_500);
        assert_eq!(c.cwnd(), MSS);
        c.on_ack(MSS, 0, 0);
        c.on_ack(MSS, 0, 0);
        c.on_ack(MSS, 0, 0);
        c.on_ack(MSS, 0, 0);
        assert_eq!(c.cwnd(), 4_500);
        assert!(!c.in_slow_start());
    }

    #[test]
    fn newreno_halves_and_adds_one_segment_per_round_trip() {
        let mut c = Congestion::new(Algorithm::NewReno, MSS);
        c.on_congestion_event(100 * MSS, 0);
        assert_eq!(c.ssthresh(), 50 * MSS);
        assert_eq!(c.cwnd(), 50 * MSS);
        for round in 1..=20u32 {
            ack_window(&mut c, u64::from(round) * 100 * MS, 100 * MS);
            assert_eq!(c.cwnd(), (50 + round) * MSS);
        }
        // Equation 4's floor.
        c.on_congestion_event(MSS, 0);
        assert_eq!(c.ssthresh(), 2 * MSS);
        assert_eq!(c.cwnd(), 2 * MSS);
    }

    #[test]
    fn newreno_growth_with_small_acks_is_one_segment_per_window() {
        let mut c = Congestion::new(Algorithm::NewReno, MSS);
        c.on_congestion_event(20 * MSS, 0);
        assert_eq!(c.cwnd(), 10 * MSS);
        // 10_000 bytes in 100-byte ACKs: one SMSS, reached exactly at the end.
        for i in 0..100 {
            assert_eq!(c.cwnd(), 10 * MSS, "ack {i}");
            c.on_ack(100, 0, 0);
        }
        assert_eq!(c.cwnd(), 11 * MSS);
    }

    #[test]
    fn recovery_exit_sets_cwnd_to_ssthresh_once() {
        let mut c = Congestion::new(Algorithm::NewReno, MSS);
        c.on_congestion_event(40 * MSS, 0);
        c.on_recovery_ack(5 * MSS);
        assert_eq!(c.cwnd(), 20 * MSS);
        c.on_recovery_exit();
        assert_eq!(c.cwnd(), 20 * MSS);
        // A timeout during recovery ends it; the loss window stands.
        c.on_congestion_event(40 * MSS, 0);
        c.on_retransmit_timeout(40 * MSS, 0);
        c.on_recovery_exit();
        assert_eq!(c.cwnd(), MSS);
    }

    #[test]
    fn timeout_collapses_to_one_segment_and_holds_ssthresh_when_repeated() {
        for (algorithm, ssthresh) in [(Algorithm::NewReno, 30 * MSS), (Algorithm::Cubic, 42 * MSS)]
        {
            let mut c = Congestion::new(algorithm, MSS);
            c.on_retransmit_timeout(60 * MSS, 0);
            assert_eq!(c.cwnd(), MSS, "{algorithm:?}");
            assert_eq!(c.ssthresh(), ssthresh, "{algorithm:?}");
            // The retransmission times out again: 1 segment in flight would
            // give the 2-segment floor, but ssthresh is held.
            c.on_retransmit_timeout(MSS, 0);
            assert_eq!(c.cwnd(), MSS);
            assert_eq!(c.ssthresh(), ssthresh);
            // New data acknowledged: the next timeout computes it afresh.
            c.on_ack(MSS, 0, 0);
            c.on_retransmit_timeout(MSS, 0);
            assert_eq!(c.ssthresh(), 2 * MSS);
        }
    }

    /// `W_cubic(t)` in segments, straight from RFC 9438 figures 1 and 2.
    fn rfc_w_cubic(t: f64, w_max: f64, cwnd_epoch: f64) -> f64 {
        let k = ((w_max - cwnd_epoch) / 0.4).cbrt();
        0.4 * (t - k).powi(3) + w_max
    }

    /// A CUBIC connection that has just lost at a window of 100 segments.
    fn cubic_after_loss_at_100() -> Congestion {
        let mut c = Congestion::new(Algorithm::Cubic, MSS);
        c.on_ack(90 * MSS, 0, 0); // 10 + 2
        while c.cwnd() < 100 * MSS {
            c.on_ack(MSS, 0, 0);
        }
        assert_eq!(c.cwnd(), 100 * MSS);
        c.on_congestion_event(100 * MSS, 0);
        c
    }

    #[test]
    fn cubic_reduces_by_beta_and_records_w_max() {
        let c = cubic_after_loss_at_100();
        assert_eq!(c.ssthresh(), 70 * MSS);
        assert_eq!(c.cwnd(), 70 * MSS);
        assert_eq!(c.w_max, 100 * MSS);
        assert_eq!(c.cwnd_prior, 100 * MSS);
        // The floor: 0.7 * 2 segments < 2 segments.
        let mut c = Congestion::new(Algorithm::Cubic, MSS);
        c.on_congestion_event(2 * MSS, 0);
        assert_eq!(c.ssthresh(), 2 * MSS);
        assert_eq!(c.cwnd(), 2 * MSS);
    }

    #[test]
    fn cubic_follows_w_cubic_after_a_loss() {
        let mut c = cubic_after_loss_at_100();
        let rtt = 100 * MS;
        let start = 10_000 * MS;
        // The epoch starts at the first ACK after recovery; K = cbrt(30 / 0.4).
        ack_window(&mut c, start, rtt);
        assert!((c.k_s - 75f64.cbrt()).abs() < 1e-12, "K = {}", c.k_s);
        assert!((c.k_s - 4.217_163).abs() < 1e-6);
        let mut checked = 0;
        for round in 1..=60u64 {
            let t = (round * rtt) as f64 / 1e9;
            let expected = rfc_w_cubic(t, 100.0, 70.0);
            let cwnd = f64::from(c.cwnd()) / f64::from(MSS);
            // One round of ACKs moves cwnd to the target W_cubic(t + RTT), so
            // at the start of each round cwnd is W_cubic(t), give or take the
            // whole-segment steps and the curvature within a round.
            if round % 10 == 0 {
                assert!(
                    (cwnd - expected).abs() <= 1.0,
                    "t = {t}: cwnd {cwnd} segments, W_cubic {expected}"
                );
                checked += 1;
            }
            ack_window(&mut c, start + round * rtt, rtt);
        }
        assert_eq!(checked, 6);
        // Concave then convex: flat around K (4.2 s), rising after.
        // W_cubic(1) = 86.7, W_cubic(4) = 100.0, W_cubic(6) = 102.3.
        assert!(c.cwnd() > 100 * MSS);
    }

    #[test]
    fn cubic_fast_convergence_lowers_w_max() {
        let mut c = cubic_after_loss_at_100();
        // A second loss before getting back to W_max = 100 segments.
        c.on_congestion_event(70 * MSS, 0);
        // W_max = 70 * (1 + 0.7) / 2 = 59.5 segments; ssthresh 49 segments.
        assert_eq!(c.w_max, 59_500);
        assert_eq!(c.ssthresh(), 49 * MSS);
        assert_eq!(c.cwnd_prior, 70 * MSS);
        c.on_ack(MSS, 1_000 * MS, 100 * MS);
        assert!((c.k_s - (10.5f64 / 0.4).cbrt()).abs() < 1e-12);
        // Without fast convergence's condition (cwnd >= W_max), W_max = cwnd.
        let mut c = cubic_after_loss_at_100();
        c.w_max = 60 * MSS;
        c.on_congestion_event(70 * MSS, 0);
        assert_eq!(c.w_max, 70 * MSS);
    }

    #[test]
    fn cubic_is_reno_friendly_on_short_round_trips() {
        let mut c = cubic_after_loss_at_100();
        let rtt = MS;
        let start = 1_000 * MS;
        let mut segments = vec![];
        for round in 0..150u64 {
            segments.push(f64::from(c.cwnd()) / f64::from(MSS));
            ack_window(&mut c, start + round * rtt, rtt);
            let t = (round * rtt) as f64 / 1e9;
            // Deep in the concave region W_cubic(t) is near 70 segments:
            assert!(rfc_w_cubic(t, 100.0, 70.0) < 75.0);
        }
        // W_est grows by alpha_cubic = 0.9 / 1.7 = 0.529 segments per round
        // (cwnd = W_est) until it reaches cwnd_prior = 100 segments ...
        let alpha = 0.9 / 1.7;
        for round in [10, 20, 40] {
            let expected = 70.0 + alpha * round as f64;
            assert!(
                (segments[round] - expected).abs() < 0.3,
                "round {round}: {} segments, W_est {expected}",
                segments[round]
            );
        }
        // ... and then by 1 per round, like Reno (100 is reached at round 57).
        let late = (segments[140] - segments[80]) / 60.0;
        assert!((late - 1.0).abs() < 0.03, "{late} segments per round");
        let early = (segments[50] - segments[10]) / 40.0;
        assert!((early - alpha).abs() < 0.02, "{early} segments per round");
    }

    #[test]
    fn cubic_after_timeout_starts_with_k_zero() {
        let mut c = cubic_after_loss_at_100();
        c.on_retransmit_timeout(70 * MSS, 0);
        assert_eq!(c.cwnd(), MSS);
        assert_eq!(c.ssthresh(), 49 * MSS);
        // Slow start back to ssthresh, then the epoch starts with W_max =
        // cwnd_epoch and K = 0, so W_cubic(t) = cwnd_epoch + C t^3 segments.
        while c.in_slow_start() {
            c.on_ack(MSS, 0, 100 * MS);
        }
        assert_eq!(c.cwnd(), 49 * MSS);
        c.on_ack(MSS, 0, 100 * MS);
        assert_eq!(c.k_s, 0.0);
        assert_eq!(c.w_max, 49 * MSS);
        assert_eq!(c.w_est as u32 / MSS, 49);
    }

    #[test]
    fn idle_restart_limits_cwnd_to_the_initial_window() {
        let mut c = Congestion::new(Algorithm::NewReno, MSS);
        c.on_ack(MSS, 0, 0);
        for _ in 0..3 {
            ack_window(&mut c, 0, 0);
        }
        let big = c.cwnd();
        assert!(big > 10 * MSS);
        c.on_idle_restart(200 * MS, 200 * MS);
        assert_eq!(c.cwnd(), big, "idle not longer than the RTO");
        c.on_idle_restart(201 * MS, 200 * MS);
        assert_eq!(c.cwnd(), 10 * MSS);
        c.on_retransmit_timeout(10 * MSS, 0);
        c.on_idle_restart(u64::MAX, 200 * MS);
        assert_eq!(c.cwnd(), MSS, "the restart window never raises cwnd");
    }

    #[test]
    fn cubic_idle_time_is_not_counted_in_t() {
        let mut c = cubic_after_loss_at_100();
        ack_window(&mut c, 0, 100 * MS);
        let (before, cwnd) = (c.epoch_start_ns, c.cwnd());
        assert!(cwnd > 70 * MSS);
        c.on_idle_restart(50 * MS, 300 * MS);
        assert_eq!(c.epoch_start_ns, before + 50 * MS);
        assert_eq!(c.cwnd(), cwnd);
        // Longer than the RTO: back to slow start, the epoch is over.
        c.on_idle_restart(500 * MS, 300 * MS);
        assert_eq!(c.cwnd(), 10 * MSS);
        assert!(!c.in_epoch);
    }

    #[test]
    fn set_mss_keeps_windows_in_segments() {
        let mut c = cubic_after_loss_at_100();
        c.set_mss(500);
        assert_eq!(c.mss(), 500);
        assert_eq!(c.cwnd(), 70 * 500);
        assert_eq!(c.ssthresh(), 70 * 500);
        assert_eq!(c.w_max, 100 * 500);
        let mut fresh = Congestion::new(Algorithm::NewReno, 1460);
        fresh.set_mss(0);
        assert_eq!(fresh.mss(), 1);
        assert_eq!(fresh.ssthresh(), u32::MAX);
        assert_eq!(fresh.cwnd(), 10);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Ack(u32, u64, u64),
        Loss(u32),
        RecoveryExit,
        Timeout(u32),
        Idle(u64, u64),
        Mss(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<u32>(), 0u64..5_000_000_000, 0u64..2_000_000_000)
                .prop_map(|(a, dt, srtt)| Op::Ack(a, dt, srtt)),
            6 => (1u32..200_000, 0u64..5_000_000_000, 0u64..500_000_000)
                .prop_map(|(a, dt, srtt)| Op::Ack(a, dt, srtt)),
            1 => any::<u32>().prop_map(Op::Loss),
            1 => Just(Op::RecoveryExit),
            1 => any::<u32>().prop_map(Op::Timeout),
            1 => (any::<u64>(), any::<u64>()).prop_map(|(i, r)| Op::Idle(i, r)),
            1 => prop_oneof![1u32..10_000, any::<u32>()].prop_map(Op::Mss),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn windows_stay_within_bounds(
            reno in any::<bool>(),
            mss in prop_oneof![1u32..10_000, any::<u32>()],
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let algorithm = if reno { Algorithm::NewReno } else { Algorithm::Cubic };
            let mut c = Congestion::new(algorithm, mss);
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Ack(acked, dt, srtt) => {
                        now = now.saturating_add(dt);
                        let before = c.cwnd();
                        c.on_ack(acked, now, srtt);
                        prop_assert!(c.cwnd() >= before, "an ACK shrank cwnd");
                    }
                    Op::Loss(flight) => {
                        c.on_congestion_event(flight, now);
                        let floor = c.mss().saturating_mul(2);
                        prop_assert!(c.ssthresh() >= floor);
                        prop_assert!(c.cwnd() >= floor);
                        prop_assert_eq!(c.cwnd(), c.ssthresh());
                    }
                    Op::RecoveryExit => c.on_recovery_exit(),
                    Op::Timeout(flight) => {
                        c.on_retransmit_timeout(flight, now);
                        prop_assert_eq!(c.cwnd(), c.mss());
                        prop_assert!(c.ssthresh() >= c.mss().saturating_mul(2));
                    }
                    Op::Idle(idle, rto) => c.on_idle_restart(idle, rto),
                    Op::Mss(m) => c.set_mss(m),
                }
                prop_assert!(c.cwnd() >= c.mss());
                prop_assert!(c.mss() >= 1);
                prop_assert!(c.w_est.is_finite() && c.k_s.is_finite());
            }
        }
    }
}
