//! The sender's SACK scoreboard: RFC 6675, "A Conservative Loss Recovery
//! Algorithm Based on Selective Acknowledgment (SACK) for TCP".
//!
//! The scoreboard records which sequence space above `snd_una` the peer has
//! selectively acknowledged (RFC 2018 SACK blocks), as at most
//! [`MAX_SACKED`] sorted, disjoint, non-adjacent ranges. Implemented:
//! - section 3, the scoreboard update on each ACK (with the cumulative ACK
//!   discarding what it covers);
//! - section 4, `IsLost(SeqNum)` ([`Scoreboard::is_lost`]), `SetPipe()`
//!   ([`Scoreboard::pipe`]) and rules 1 and 3 of `NextSeg()`
//!   ([`Scoreboard::next_seg`]).
//!
//! Approximations, because the scoreboard keeps byte ranges and not segment
//! boundaries:
//! - `IsLost` counts "DupThresh discontiguous SACKed sequences" as segments,
//!   and a SACKed range of `n` bytes as `ceil(n / SMSS)` segments: the fewest
//!   full-sized segments that carry it, and one segment for a short one. A run
//!   of small segments that arrived contiguously therefore counts for less
//!   than its real number of segments, which only delays the loss verdict.
//!   The byte rule, "more than (DupThresh - 1) * SMSS bytes", is exact.
//! - With that `IsLost`, every octet of a hole (an unSACKed span between two
//!   SACKed ranges) has the same verdict, since the same ranges lie above
//!   each of them. `SetPipe` is therefore computed octet for octet, exactly
//!   as the RFC words it, one hole at a time.
//!
//! One addition from RFC 8985 (RACK): the connection may mark every unSACKed
//! byte below a point lost ([`Scoreboard::mark_lost_below`]), when the SACK
//! of its tail loss probe shows that a segment sent later arrived.
//!
//! When a new SACK block would need a ninth range, the highest range is
//! dropped (or the new block, if it is the highest): the lowest holes are the
//! ones recovery retransmits first, and the SACK information below them is
//! what `IsLost` needs. Forgetting a high range only makes the sender count
//! those bytes as in flight and perhaps retransmit them (RFC 6675 rule 3),
//! never declare data delivered that is not.
//!
//! Not here, and the connection's job: counting duplicate ACKs and deciding
//! to enter recovery (section 5, with [`DUP_THRESH`]), `HighRxt`, `RecoveryPoint`
//! and the recovery loop, rule 2 (new data) and rule 4 (rescue
//! retransmission) of `NextSeg()`, D-SACK (RFC 2883), and discarding the
//! scoreboard after a retransmission timeout (section 5.1, [`Scoreboard::clear`])
//! in case the receiver reneged.
//!
//! Sequence numbers are compared modulo 2^32 ([`Seq`]): every `Seq` passed in
//! must lie within 2^31 of `snd_una`, which the window limits guarantee.
//! Nothing here panics or allocates.

use super::seq::Seq;

/// The most SACKed ranges the scoreboard holds. A SACK option carries at most
/// 4 blocks (3 with timestamps), so 8 ranges remember at least two ACKs'
/// worth of holes.
pub const MAX_SACKED: usize = 8;

/// `DupThresh` of RFC 6675 section 2 (and RFC 5681's three duplicate ACKs).
pub const DUP_THRESH: u32 = 3;

/// The SACKed sequence space above `snd_una` of one connection. 72 bytes.
#[derive(Clone, Copy, Debug)]
pub struct Scoreboard {
    /// `[start, end)` ranges; the first `len` are in use: each non-empty,
    /// sorted, with a gap of at least one byte between neighbours, and all
    /// within `[snd_una, snd_nxt]` as of the last [`Scoreboard::on_ack`].
    ranges: [(Seq, Seq); MAX_SACKED],
    /// With `lost_mark`: every unSACKed byte below this is lost
    /// ([`Scoreboard::mark_lost_below`]); above `snd_una` while set.
    lost_below: Seq,
    /// The number of ranges in use, at most [`MAX_SACKED`].
    len: u8,
    /// Whether `lost_below` holds.
    lost_mark: bool,
}

impl Default for Scoreboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Scoreboard {
    /// An empty scoreboard.
    pub const fn new() -> Self {
        Scoreboard {
            ranges: [(Seq(0), Seq(0)); MAX_SACKED],
            lost_below: Seq(0),
            len: 0,
            lost_mark: false,
        }
    }

    /// Forgets all SACK information (after a retransmission timeout, RFC 6675
    /// section 5.1, or when SACK is not in use).
    pub fn clear(&mut self) {
        self.len = 0;
        self.lost_mark = false;
    }

    /// Deem every unSACKed byte below `end` lost, whatever `IsLost` would
    /// say: RACK's verdict (RFC 8985 6.2) once a segment sent after them
    /// ending at `end`, the connection's tail loss probe, is SACKed. Holds
    /// until the cumulative ACK passes `end` or [`Scoreboard::clear`].
    pub fn mark_lost_below(&mut self, end: Seq) {
        if self.lost_mark {
            self.lost_below = self.lost_below.max(end);
        } else {
            self.lost_below = end;
            self.lost_mark = true;
        }
    }

    /// Whether nothing above `snd_una` is SACKed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SACKed ranges, `[start, end)`, lowest first.
    pub fn ranges(&self) -> &[(Seq, Seq)] {
        &self.ranges[..usize::from(self.len)]
    }

    /// Processes an ACK: `snd_una` is the new cumulative ACK, `snd_nxt` the
    /// next sequence number to send, and `blocks` the ACK's SACK blocks as
    /// `(left edge, right edge)`, right edge exclusive (RFC 2018 section 3).
    ///
    /// Ranges at or below `snd_una` are discarded, and any above `snd_nxt`
    /// (if the caller pulled `snd_nxt` back). A block is used only if
    /// `snd_una < left < right <= snd_nxt`; others are ignored: D-SACK blocks
    /// (RFC 2883) at or below the cumulative ACK, blocks covering unsent data,
    /// and empty or inverted ones. A left edge equal to `snd_una` is ignored
    /// too: a receiver holding that byte would have acknowledged it.
    ///
    /// Returns the bytes that this ACK newly SACKed and that the scoreboard
    /// kept (a block dropped because the scoreboard is full counts 0).
    pub fn on_ack(&mut self, snd_una: Seq, snd_nxt: Seq, blocks: &[(Seq, Seq)]) -> u32 {
        self.trim(snd_una, snd_nxt);
        let mut newly = 0u32;
        for &(left, right) in blocks {
            if snd_una < left && left < right && right <= snd_nxt {
                newly = newly.saturating_add(self.insert(left, right));
            }
        }
        newly
    }

    /// Drops what lies outside `[snd_una, snd_nxt)` and shortens ranges that
    /// straddle either bound.
    fn trim(&mut self, snd_una: Seq, snd_nxt: Seq) {
        if self.lost_mark && self.lost_below <= snd_una {
            self.lost_mark = false;
        }
        let mut kept = 0;
        for i in 0..usize::from(self.len) {
            let (start, end) = self.ranges[i];
            let (start, end) = (start.max(snd_una), end.min(snd_nxt));
            if start < end {
                self.ranges[kept] = (start, end);
                kept += 1;
            }
        }
        self.len = kept as u8;
    }

    /// Adds `[start, end)` (non-empty), merging with the ranges it overlaps or
    /// touches. Returns the bytes it added, 0 if it was dropped.
    fn insert(&mut self, start: Seq, end: Seq) -> u32 {
        let n = usize::from(self.len);
        // The ranges i..j overlap or touch the block.
        let mut i = 0;
        while i < n && self.ranges[i].1 < start {
            i += 1;
        }
        let mut j = i;
        while j < n && self.ranges[j].0 <= end {
            j += 1;
        }
        if i == j {
            // Disjoint: a new range at i, dropping the highest when full.
            let mut n = n;
            if n == MAX_SACKED {
                if i == n {
                    return 0;
                }
                n -= 1;
            }
            self.ranges.copy_within(i..n, i + 1);
            self.ranges[i] = (start, end);
            self.len = (n + 1) as u8;
            return end - start;
        }
        let covered: u32 = self.ranges[i..j].iter().map(|&(s, e)| e - s).sum();
        let merged = (start.min(self.ranges[i].0), end.max(self.ranges[j - 1].1));
        self.ranges[i] = merged;
        self.ranges.copy_within(j..n, i + 1);
        self.len = (n - (j - i - 1)) as u8;
        (merged.1 - merged.0) - covered
    }

    /// The number of SACKed bytes.
    pub fn sacked_bytes(&self) -> u32 {
        self.ranges().iter().map(|&(s, e)| e - s).sum()
    }

    /// Whether the byte `seq` is SACKed.
    pub fn is_sacked(&self, seq: Seq) -> bool {
        self.ranges().iter().any(|&(s, e)| seq.in_range(s, e))
    }

    /// The end (exclusive) of the highest SACKed range: one past the highest
    /// SACKed byte. `None` when nothing is SACKed.
    pub fn highest_sacked(&self) -> Option<Seq> {
        self.ranges().last().map(|&(_, e)| e)
    }

    /// RFC 6675 `IsLost(SeqNum)`: whether the unSACKed byte `seq` is deemed
    /// lost, that is whether [`DUP_THRESH`] segments, or more than
    /// `(DUP_THRESH - 1) * mss` bytes, above it are SACKed. Segments are
    /// counted as the module documentation says. A SACKed byte is not lost;
    /// an unSACKed one below a [`Scoreboard::mark_lost_below`] mark is. An
    /// `mss` of 0 is taken as 1.
    pub fn is_lost(&self, seq: Seq, mss: u32) -> bool {
        if self.is_sacked(seq) {
            return false;
        }
        if self.lost_mark && seq < self.lost_below {
            return true;
        }
        let mss = mss.max(1);
        let (mut segments, mut bytes) = (0u32, 0u32);
        // seq is in no range, so each range is wholly above or below it.
        for &(s, e) in self.ranges().iter().filter(|&&(s, _)| s > seq) {
            let len = e - s;
            bytes = bytes.saturating_add(len);
            segments = segments.saturating_add(len.div_ceil(mss));
        }
        segments >= DUP_THRESH || bytes > (DUP_THRESH - 1).saturating_mul(mss)
    }

    /// RFC 6675 `SetPipe()`: the bytes deemed in flight. For each unSACKed
    /// byte in `[snd_una, snd_nxt)`, one if it is not lost ([`Self::is_lost`])
    /// plus one if it was retransmitted, i.e. lies below `high_rxt`.
    ///
    /// `high_rxt` is one past the highest retransmitted byte (the RFC's
    /// `HighRxt` + 1); pass `snd_una` when nothing was retransmitted.
    pub fn pipe(&self, snd_una: Seq, snd_nxt: Seq, high_rxt: Seq, mss: u32) -> u32 {
        let mut pipe = 0u32;
        for (a, b) in self.holes(snd_una, snd_nxt) {
            if !self.is_lost(a, mss) {
                pipe = pipe.saturating_add(b - a);
            }
            if a < high_rxt {
                pipe = pipe.saturating_add(b.min(high_rxt) - a);
            }
        }
        pipe
    }

    /// RFC 6675 `NextSeg()`, rules 1 and 3: the lowest unSACKed byte at or
    /// above `high_rxt` and below [`Self::highest_sacked`], and the length
    /// to retransmit from it: at most `mss`, not into a SACKed range. `None`
    /// when there is no such byte.
    ///
    /// If the segment is lost ([`Self::is_lost`] on its start), this is
    /// rule 1. Otherwise it is rule 3 (no unSACKed byte above `high_rxt` is lost,
    /// since a lower hole has more SACKed data above it): the RFC wants new
    /// data (rule 2, the caller's) sent before it, if the windows allow.
    /// `high_rxt` is as for [`Self::pipe`]. An `mss` of 0 is taken as 1.
    pub fn next_seg(
        &self,
        snd_una: Seq,
        snd_nxt: Seq,
        high_rxt: Seq,
        mss: u32,
    ) -> Option<(Seq, u32)> {
        let limit = self.highest_sacked()?.min(snd_nxt);
        self.holes(snd_una, limit).find_map(|(a, b)| {
            let start = a.max(high_rxt);
            (start < b).then(|| (start, (b - start).min(mss.max(1))))
        })
    }

    /// The unSACKed spans of `[from, to)`, lowest first.
    fn holes(&self, from: Seq, to: Seq) -> Holes<'_> {
        Holes {
            ranges: self.ranges(),
            cursor: from,
            end: to,
        }
    }
}

/// Iterator over the unSACKed `[start, end)` spans of a sequence interval.
struct Holes<'a> {
    /// The SACKed ranges not yet passed, sorted.
    ranges: &'a [(Seq, Seq)],
    /// The start of the interval not yet reported.
    cursor: Seq,
    /// The end of the interval.
    end: Seq,
}

impl Iterator for Holes<'_> {
    type Item = (Seq, Seq);

    fn next(&mut self) -> Option<(Seq, Seq)> {
        while self.cursor < self.end {
            let Some((&(start, end), rest)) = self.ranges.split_first() else {
                let hole = (self.cursor, self.end);
                self.cursor = self.end;
                return Some(hole);
            };
            self.ranges = rest;
            if end <= self.cursor {
                continue;
            }
            let hole_end = start.min(self.end);
            let hole = (self.cursor, hole_end);
            self.cursor = end;
            if hole.0 < hole.1 {
                return Some(hole);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSS: u32 = 1_000;

    #[test]
    fn fits_in_eighty_bytes() {
        assert!(core::mem::size_of::<Scoreboard>() <= 80);
    }

    /// Segment `k` (1-based) of a flight starting at `base`.
    fn seg(base: Seq, k: u32) -> (Seq, Seq) {
        (base + (k - 1) * MSS, base + k * MSS)
    }

    /// Ten segments sent, segment 1 acknowledged, segment 2 lost, and SACKs
    /// for 3..=10 arriving one per ACK (each ACK repeating the block, as a
    /// receiver does: RFC 2018 section 4).
    fn segment_two_lost(base: Seq) {
        let mut sb = Scoreboard::new();
        let una = seg(base, 2).0;
        let nxt = seg(base, 10).1;
        let s2 = una;
        // No SACK yet: everything in flight, nothing to retransmit.
        assert_eq!(sb.on_ack(una, nxt, &[]), 0);
        assert_eq!(sb.pipe(una, nxt, una, MSS), 9 * MSS);
        assert_eq!(sb.next_seg(una, nxt, una, MSS), None);
        assert!(!sb.is_lost(s2, MSS));

        let mut expected_pipe = [0; 11];
        let mut lost = [false; 11];
        for k in 3..=10 {
            let block = (seg(base, 3).0, seg(base, k).1);
            assert_eq!(sb.on_ack(una, nxt, &[block]), MSS, "SACK of segment {k}");
            assert_eq!(sb.sacked_bytes(), (k - 2) * MSS);
            assert_eq!(sb.highest_sacked(), Some(seg(base, k).1));
            assert!(sb.is_sacked(seg(base, k).0) && !sb.is_sacked(s2));
            lost[k as usize] = sb.is_lost(s2, MSS);
            expected_pipe[k as usize] = sb.pipe(una, nxt, una, MSS);
        }
        // IsLost(segment 2) once DupThresh = 3 segments above it are SACKed.
        assert_eq!(
            lost[3..=10],
            [false, false, true, true, true, true, true, true]
        );
        // SetPipe without retransmissions: segment 2 counts until it is lost,
        // then the unSACKed segments above the highest SACK.
        assert_eq!(expected_pipe[3], 8 * MSS); // 2 and 4..=10
        assert_eq!(expected_pipe[4], 7 * MSS); // 2 and 5..=10
        assert_eq!(expected_pipe[5], 5 * MSS); // 6..=10; 2 is lost
        assert_eq!(expected_pipe[10], 0);

        // Back to the state after the SACK of 3..=5: NextSeg rule 1 gives
        // segment 2, which is then retransmitted (HighRxt = its end).
        let mut sb = Scoreboard::new();
        sb.on_ack(una, nxt, &[(seg(base, 3).0, seg(base, 5).1)]);
        assert_eq!(sb.next_seg(una, nxt, una, MSS), Some((s2, MSS)));
        // A smaller SMSS splits it.
        assert_eq!(sb.next_seg(una, nxt, una, 400), Some((s2, 400)));
        let high_rxt = seg(base, 2).1;
        assert_eq!(sb.next_seg(una, nxt, high_rxt, MSS), None);
        // Retransmitted and lost: 0 + 1 per byte; 6..=10 in flight.
        assert_eq!(sb.pipe(una, nxt, high_rxt, MSS), 6 * MSS);
        // Half of it retransmitted: the other half is next.
        let half = s2 + MSS / 2;
        assert_eq!(sb.next_seg(una, nxt, half, MSS), Some((half, MSS / 2)));
        assert_eq!(sb.pipe(una, nxt, half, MSS), 5 * MSS + MSS / 2);

        // The retransmission arrives: the cumulative ACK jumps past 5.
        let una = seg(base, 6).0;
        assert_eq!(sb.on_ack(una, nxt, &[]), 0);
        assert!(sb.is_empty());
        assert_eq!(sb.pipe(una, nxt, high_rxt, MSS), 5 * MSS);
    }

    #[test]
    fn rfc_6675_single_loss() {
        segment_two_lost(Seq(1_000_000));
    }

    #[test]
    fn rfc_6675_single_loss_across_wraparound() {
        // Segment 3 straddles zero; then segment 2 does.
        segment_two_lost(Seq(u32::MAX - 2_499));
        segment_two_lost(Seq(u32::MAX - 4_000));
    }

    #[test]
    fn rule_3_retransmits_holes_that_are_not_lost() {
        let base = Seq(u32::MAX - 3_000);
        let mut sb = Scoreboard::new();
        let una = seg(base, 2).0;
        let nxt = seg(base, 10).1;
        // Segments 2 and 4 lost; 3, 5 and 6 SACKed.
        sb.on_ack(una, nxt, &[seg(base, 3), (seg(base, 5).0, seg(base, 6).1)]);
        assert!(sb.is_lost(seg(base, 2).0, MSS)); // 3 segments above
        assert!(!sb.is_lost(seg(base, 4).0, MSS)); // 2 segments, 2000 bytes
        assert!(!sb.is_lost(seg(base, 7).0, MSS));
        // Pipe: 2 lost (0), 4 not lost (1000), 7..=10 (4000).
        assert_eq!(sb.pipe(una, nxt, una, MSS), 5 * MSS);
        // Rule 1: segment 2.
        let first = sb.next_seg(una, nxt, una, MSS).unwrap();
        assert_eq!(first, (seg(base, 2).0, MSS));
        assert!(sb.is_lost(first.0, MSS));
        // Rule 3: segment 4, not lost; nothing after it (7..=10 lie above the
        // highest SACK).
        let high_rxt = seg(base, 2).1;
        let second = sb.next_seg(una, nxt, high_rxt, MSS).unwrap();
        assert_eq!(second, (seg(base, 4).0, MSS));
        assert!(!sb.is_lost(second.0, MSS));
        assert_eq!(sb.pipe(una, nxt, high_rxt, MSS), 6 * MSS);
        assert_eq!(sb.next_seg(una, nxt, seg(base, 4).1, MSS), None);
        // A third segment SACKed above segment 4 makes it lost too.
        sb.on_ack(una, nxt, &[seg(base, 8)]);
        assert!(sb.is_lost(seg(base, 4).0, MSS));
    }

    #[test]
    fn short_ranges_count_as_one_segment_each() {
        let base = Seq(5_000);
        let mut sb = Scoreboard::new();
        let blocks = [
            (base + 10, base + 11),
            (base + 20, base + 21),
            (base + 30, base + 31),
        ];
        assert_eq!(sb.on_ack(base, base + 100, &blocks), 3);
        // Three discontiguous SACKed pieces above: lost, though 3 bytes.
        assert!(sb.is_lost(base, MSS));
        assert!(!sb.is_lost(base + 15, MSS));
    }

    #[test]
    fn invalid_blocks_are_ignored() {
        let una = Seq(u32::MAX - 100);
        let nxt = una + 5_000;
        let mut sb = Scoreboard::new();
        let blocks = [
            (una - 500, una),                     // D-SACK below the cumulative ACK
            (una - 100, una + 100),               // straddles snd_una
            (una, una + 100),                     // starts at snd_una
            (nxt - 100, nxt + 1),                 // beyond snd_nxt
            (una + 300, una + 200),               // inverted
            (una + 400, una + 400),               // empty
            (Seq(0x7000_0000), Seq(0x7000_0010)), // far away
        ];
        assert_eq!(sb.on_ack(una, nxt, &blocks), 0);
        assert!(sb.is_empty());
        assert_eq!(sb.highest_sacked(), None);
        assert_eq!(sb.next_seg(una, nxt, una, MSS), None);
        // The edges themselves are fine.
        assert_eq!(
            sb.on_ack(una, nxt, &[(una + 1, una + 2), (nxt - 1, nxt)]),
            2
        );
    }

    #[test]
    fn blocks_merge_and_overlaps_count_once() {
        let una = Seq(0);
        let nxt = Seq(10_000);
        let mut sb = Scoreboard::new();
        assert_eq!(sb.on_ack(una, nxt, &[(Seq(1_000), Seq(2_000))]), 1_000);
        assert_eq!(sb.on_ack(una, nxt, &[(Seq(3_000), Seq(4_000))]), 1_000);
        // Repeated: nothing new.
        assert_eq!(sb.on_ack(una, nxt, &[(Seq(1_000), Seq(2_000))]), 0);
        // Bridging both, and touching at 4000: one range.
        assert_eq!(
            sb.on_ack(
                una,
                nxt,
                &[(Seq(1_500), Seq(3_500)), (Seq(4_000), Seq(4_100))]
            ),
            1_100
        );
        assert_eq!(sb.ranges(), &[(Seq(1_000), Seq(4_100))]);
        // The cumulative ACK moves into the range.
        assert_eq!(sb.on_ack(Seq(2_000), nxt, &[]), 0);
        assert_eq!(sb.ranges(), &[(Seq(2_000), Seq(4_100))]);
        assert_eq!(sb.sacked_bytes(), 2_100);
        sb.clear();
        assert!(sb.is_empty());
        assert_eq!(sb.sacked_bytes(), 0);
    }

    #[test]
    fn a_full_scoreboard_keeps_the_lowest_ranges() {
        let una = Seq(0);
        let nxt = Seq(100_000);
        let mut sb = Scoreboard::new();
        for k in 1..=8u32 {
            let start = Seq(k * 10_000);
            assert_eq!(sb.on_ack(una, nxt, &[(start, start + 100)]), 100);
        }
        assert_eq!(sb.ranges().len(), MAX_SACKED);
        // A ninth above all: dropped.
        assert_eq!(sb.on_ack(una, nxt, &[(Seq(95_000), Seq(95_100))]), 0);
        assert_eq!(sb.highest_sacked(), Some(Seq(80_100)));
        // A ninth below: the highest goes.
        assert_eq!(sb.on_ack(una, nxt, &[(Seq(5_000), Seq(5_100))]), 100);
        assert_eq!(sb.ranges().len(), MAX_SACKED);
        assert_eq!(sb.ranges()[0], (Seq(5_000), Seq(5_100)));
        assert_eq!(sb.highest_sacked(), Some(Seq(70_100)));
        // Merging needs no room.
        assert_eq!(sb.on_ack(una, nxt, &[(Seq(70_100), Seq(70_200))]), 100);
        assert_eq!(sb.highest_sacked(), Some(Seq(70_200)));
    }

    // A per-byte model of RFC 6675 over a small window, for the proptest.

    /// Bytes in the model's window.
    const WINDOW: u32 = 400;

    /// The model: one flag per byte offset from `base`.
    struct Model {
        sacked: Vec<bool>,
    }

    impl Model {
        /// Maximal runs of SACKed offsets, `[start, end)`.
        fn runs(&self) -> Vec<(u32, u32)> {
            let mut runs = vec![];
            let mut i = 0;
            while i < self.sacked.len() {
                if self.sacked[i] {
                    let start = i;
                    while i < self.sacked.len() && self.sacked[i] {
                        i += 1;
                    }
                    runs.push((start as u32, i as u32));
                } else {
                    i += 1;
                }
            }
            runs
        }

        fn on_ack(&mut self, una: u32, nxt: u32, blocks: &[(u32, u32)]) -> u32 {
            for (i, s) in self.sacked.iter_mut().enumerate() {
                if (i as u32) < una || (i as u32) >= nxt {
                    *s = false;
                }
            }
            let mut newly = 0;
            for &(l, r) in blocks {
                if !(una < l && l < r && r <= nxt) {
                    continue;
                }
                let mut added = 0;
                for s in &mut self.sacked[l as usize..r as usize] {
                    added += u32::from(!*s);
                    *s = true;
                }
                let runs = self.runs();
                if runs.len() > MAX_SACKED {
                    let (hs, he) = *runs.last().unwrap();
                    self.sacked[hs as usize..he as usize].fill(false);
                    if (hs, he) == (l, r) {
                        added = 0;
                    }
                }
                newly += added;
            }
            newly
        }

        fn is_lost(&self, off: u32, mss: u32) -> bool {
            if self.sacked[off as usize] {
                return false;
            }
            let above: Vec<_> = self.runs().into_iter().filter(|&(s, _)| s > off).collect();
            let segments: u32 = above.iter().map(|&(s, e)| (e - s).div_ceil(mss)).sum();
            let bytes: u32 = above.iter().map(|&(s, e)| e - s).sum();
            segments >= 3 || bytes > 2 * mss
        }

        /// SetPipe() octet by octet, as RFC 6675 section 4 words it.
        fn pipe(&self, una: u32, nxt: u32, high_rxt: u32, mss: u32) -> u32 {
            let mut pipe = 0;
            for off in una..nxt {
                if self.sacked[off as usize] {
                    continue;
                }
                if !self.is_lost(off, mss) {
                    pipe += 1;
                }
                if off < high_rxt {
                    pipe += 1;
                }
            }
            pipe
        }

        /// NextSeg() rules 1 and 3 octet by octet.
        fn next_seg(&self, una: u32, high_rxt: u32, mss: u32) -> Option<(u32, u32)> {
            let highest = self.runs().last()?.1;
            let from = una.max(high_rxt);
            let start = (from..highest).find(|&o| !self.sacked[o as usize])?;
            let len = (start..highest)
                .take_while(|&o| !self.sacked[o as usize])
                .take(mss as usize)
                .count();
            Some((start, len as u32))
        }
    }

    #[derive(Clone, Debug)]
    struct Step {
        una_advance: u32,
        nxt_advance: u32,
        blocks: Vec<(u32, u32)>,
        high_rxt: u32,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            prop_oneof![3 => Just(0u32), 1 => 0u32..40],
            0u32..120,
            // Short blocks often, so that the scoreboard fills up.
            proptest::collection::vec(
                (0u32..WINDOW + 20, prop_oneof![3 => 0u32..8, 1 => 0u32..90]),
                0..6,
            ),
            0u32..WINDOW + 20,
        )
            .prop_map(|(una_advance, nxt_advance, blocks, high_rxt)| Step {
                una_advance,
                nxt_advance,
                blocks: blocks.into_iter().map(|(s, l)| (s, s + l)).collect(),
                high_rxt,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn agrees_with_a_per_byte_model(
            base in prop_oneof![any::<u32>(), u32::MAX - 600..=u32::MAX],
            mss in 1u32..60,
            steps in proptest::collection::vec(step(), 1..25),
        ) {
            let base = Seq(base);
            let mut sb = Scoreboard::new();
            let mut model = Model { sacked: vec![false; (WINDOW + 120) as usize] };
            let (mut una, mut nxt) = (0u32, 0u32);
            for step in steps {
                nxt = (nxt + step.nxt_advance).min(WINDOW);
                una = (una + step.una_advance).min(nxt);
                let blocks: Vec<(Seq, Seq)> =
                    step.blocks.iter().map(|&(l, r)| (base + l, base + r)).collect();
                let newly = sb.on_ack(base + una, base + nxt, &blocks);
                prop_assert_eq!(newly, model.on_ack(una, nxt, &step.blocks));

                let runs: Vec<(Seq, Seq)> =
                    model.runs().iter().map(|&(s, e)| (base + s, base + e)).collect();
                prop_assert_eq!(sb.ranges(), &runs[..]);
                prop_assert_eq!(sb.is_empty(), runs.is_empty());
                prop_assert_eq!(sb.sacked_bytes(), model.sacked.iter().filter(|&&s| s).count() as u32);
                prop_assert_eq!(sb.highest_sacked(), runs.last().map(|r| r.1));
                for off in una.saturating_sub(3)..nxt + 3 {
                    prop_assert_eq!(sb.is_sacked(base + off), model.sacked[off as usize], "is_sacked({})", off);
                }
                for off in una..nxt {
                    prop_assert_eq!(sb.is_lost(base + off, mss), model.is_lost(off, mss), "is_lost({})", off);
                }
                let high_rxt = step.high_rxt.clamp(una, nxt);
                prop_assert_eq!(
                    sb.pipe(base + una, base + nxt, base + high_rxt, mss),
                    model.pipe(una, nxt, high_rxt, mss)
                );
                prop_assert_eq!(
                    sb.next_seg(base + una, base + nxt, base + high_rxt, mss),
                    model.next_seg(una, high_rxt, mss).map(|(s, l)| (base + s, l))
                );
            }
        }
    }
}
