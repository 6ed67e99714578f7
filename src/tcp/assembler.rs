//! Out-of-order receive tracking and SACK block generation.
//!
//! An [`Assembler`] records which byte ranges beyond the in-order point
//! (`RCV.NXT`) have arrived, as offsets from that point, like smoltcp's
//! `storage::Assembler`. It holds at most [`MAX_RANGES`] disjoint ranges; a
//! segment that would need more is refused ([`AssemblerFull`]) and the peer
//! retransmits it later. It also produces the SACK blocks of RFC 2018
//! section 4: the block containing the most recently received segment first,
//! then the others (here in ascending order rather than most-recent-first).
//!
//! # The receive protocol
//!
//! The payload lives in the connection's receive [`RingBuffer`]; the assembler
//! only says which bytes past its length are valid. With `rx` the receive
//! ring, `asm` the assembler and a segment `data` starting at `seq`, already
//! trimmed so that `seq >= rcv_nxt`:
//!
//! ```
//! # use shardnet::tcp::{assembler::Assembler, buffer::{BufferPool, RingBuffer}, Seq};
//! # let mut pool = BufferPool::new(64, 1);
//! # let (mut rx, mut asm, mut rcv_nxt) = (RingBuffer::new(), Assembler::new(), Seq(1000));
//! # rx.ensure_storage(&mut pool);
//! # let (seq, data) = (Seq(1000), &b"hello"[..]);
//! let offset = (seq - rcv_nxt) as usize;
//! // Clipped to the ring's capacity, i.e. to the window we offered.
//! let written = rx.write_unallocated(offset, data);
//! if offset == 0 {
//!     // In order: the in-order point moves past this segment, and past any
//!     // out-of-order range it now reaches.
//!     asm.advance(written as u32);
//!     let total = written as u32 + asm.remove_front();
//!     rx.enqueue_unallocated(total as usize);
//!     rcv_nxt += total;
//! } else if asm.add(offset as u32, written as u32).is_err() {
//!     // Too many holes: the bytes stay unrecorded and are never enqueued;
//!     // later writes overwrite them. The peer will retransmit.
//! }
//! # assert_eq!(rx.len(), 5);
//! ```
//!
//! Why this is sound: every byte that `enqueue_unallocated` makes part of the
//! ring was written, either by the in-order segment just now or by an
//! out-of-order segment whose range the assembler recorded. Reading from the
//! ring (`dequeue_*`) moves its head and shrinks its length by the same
//! amount, so `len + offset` keeps naming the same storage byte. The ring must
//! not give its storage back (`release_if_empty`) while the assembler is not
//! empty, or the recorded bytes are lost.
//!
//! Offsets are `u32`: a window is at most 2^30 bytes (RFC 7323).
//!
//! Panics: [`Assembler::add`] if `offset + len` overflows a `u32`. Nothing
//! here allocates.
//!
//! [`RingBuffer`]: super::buffer::RingBuffer

use arrayvec::ArrayVec;

/// The most disjoint out-of-order ranges an [`Assembler`] tracks. Also the
/// most SACK blocks it reports (a TCP header with timestamps has room for 3).
pub const MAX_RANGES: usize = 4;

/// [`Assembler::add`] would need more than [`MAX_RANGES`] ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerFull;

impl core::fmt::Display for AssemblerFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "more than {MAX_RANGES} out-of-order ranges")
    }
}

impl std::error::Error for AssemblerFull {}

/// Marks `recent` as naming no range.
const NO_RECENT: u8 = u8::MAX;

/// Byte ranges received beyond the in-order point, as offsets from it.
///
/// 36 bytes: four `(start, end)` pairs and two bytes of bookkeeping.
#[derive(Clone, PartialEq, Eq)]
pub struct Assembler {
    /// `ranges[..count]` are the ranges as half-open `(start, end)` offsets,
    /// ascending, each non-empty (`start < end`), with a gap of at least one
    /// byte between neighbours (`ranges[i].1 < ranges[i + 1].0`: adjacent
    /// ranges are merged). Entries past `count` are meaningless.
    ranges: [(u32, u32); MAX_RANGES],
    /// Number of ranges in use, `<= MAX_RANGES`.
    count: u8,
    /// Index in `ranges[..count]` of the range holding the most recent
    /// successful non-empty `add`, or `NO_RECENT` once that range is removed
    /// (by `remove_front` or `advance`) or `clear`ed.
    recent: u8,
}

impl Assembler {
    /// An assembler with no ranges.
    pub const fn new() -> Self {
        Assembler {
            ranges: [(0, 0); MAX_RANGES],
            count: 0,
            recent: NO_RECENT,
        }
    }

    /// Whether no range is recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forgets every range.
    pub fn clear(&mut self) {
        self.count = 0;
        self.recent = NO_RECENT;
    }

    /// Records that bytes `offset..offset + len` arrived, merging with
    /// overlapping and adjacent ranges. `len == 0` changes nothing.
    ///
    /// # Errors
    /// [`AssemblerFull`], changing nothing, if the result would need more
    /// than [`MAX_RANGES`] ranges.
    ///
    /// # Panics
    /// If `offset + len` overflows a `u32`.
    pub fn add(&mut self, offset: u32, len: u32) -> Result<(), AssemblerFull> {
        if len == 0 {
            return Ok(());
        }
        let end = offset
            .checked_add(len)
            .expect("assembler range end overflows u32");
        let n = self.count as usize;
        // First range that touches or follows the new one...
        let first = self.ranges[..n]
            .iter()
            .position(|&(_, e)| e >= offset)
            .unwrap_or(n);
        // ...and one past the last range that touches or precedes it.
        let last = self.ranges[..n]
            .iter()
            .rposition(|&(s, _)| s <= end)
            .map_or(0, |i| i + 1);
        if first >= last {
            // Touches nothing: insert at `first`.
            if n == MAX_RANGES {
                return Err(AssemblerFull);
            }
            self.ranges.copy_within(first..n, first + 1);
            self.ranges[first] = (offset, end);
            self.count += 1;
        } else {
            // Ranges first..last merge into one.
            let merged = (
                self.ranges[first].0.min(offset),
                self.ranges[last - 1].1.max(end),
            );
            self.ranges[first] = merged;
            self.ranges.copy_within(last..n, first + 1);
            self.count -= (last - first - 1) as u8;
        }
        self.recent = first as u8;
        Ok(())
    }

    /// If a range starts at offset 0, removes it, shifts every other range
    /// down by its length and returns that length; otherwise returns 0.
    pub fn remove_front(&mut self) -> u32 {
        let n = self.count as usize;
        if n == 0 || self.ranges[0].0 != 0 {
            return 0;
        }
        let len = self.ranges[0].1;
        for i in 1..n {
            let (s, e) = self.ranges[i];
            self.ranges[i - 1] = (s - len, e - len);
        }
        self.count -= 1;
        self.recent = match self.recent {
            0 | NO_RECENT => NO_RECENT,
            r => r - 1,
        };
        len
    }

    /// The in-order point moved forward by `count` bytes: shifts every range
    /// down by `count`, trimming ranges that start below it and dropping
    /// those that end at or below it.
    pub fn advance(&mut self, count: u32) {
        if count == 0 {
            return;
        }
        let n = self.count as usize;
        let mut kept = 0;
        let mut recent = NO_RECENT;
        for i in 0..n {
            let (s, e) = self.ranges[i];
            if e <= count {
                continue;
            }
            if i == self.recent as usize {
                recent = kept as u8;
            }
            self.ranges[kept] = (s.saturating_sub(count), e - count);
            kept += 1;
        }
        self.count = kept as u8;
        self.recent = recent;
    }

    /// The ranges as half-open `(start, end)` offsets, ascending.
    pub fn ranges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.ranges[..self.count as usize].iter().copied()
    }

    /// The ranges in SACK order: the one containing the most recent `add`
    /// first (if it is still there), then the others ascending.
    pub fn sack_ranges(&self) -> ArrayVec<(u32, u32), MAX_RANGES> {
        let mut out = ArrayVec::new();
        let recent = self.recent as usize;
        if recent < self.count as usize {
            out.push(self.ranges[recent]);
        }
        for (i, &r) in self.ranges[..self.count as usize].iter().enumerate() {
            if i != recent {
                out.push(r);
            }
        }
        out
    }

    /// The highest end offset, or 0 when empty.
    pub fn end(&self) -> u32 {
        match self.count {
            0 => 0,
            n => self.ranges[n as usize - 1].1,
        }
    }
}

impl Default for Assembler {
    fn default() -> Self {
        Assembler::new()
    }
}

impl core::fmt::Debug for Assembler {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.ranges().map(|(s, e)| s..e))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::buffer::{BufferPool, RingBuffer};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn ranges(asm: &Assembler) -> Vec<(u32, u32)> {
        asm.ranges().collect()
    }

    #[test]
    fn assembler_is_small() {
        assert!(core::mem::size_of::<Assembler>() <= 40);
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let mut asm = Assembler::new();
        assert!(asm.is_empty());
        asm.add(10, 5).unwrap();
        asm.add(20, 5).unwrap();
        assert_eq!(ranges(&asm), [(10, 15), (20, 25)]);
        asm.add(15, 2).unwrap(); // adjacent to the first
        assert_eq!(ranges(&asm), [(10, 17), (20, 25)]);
        asm.add(17, 3).unwrap(); // fills the gap exactly
        assert_eq!(ranges(&asm), [(10, 25)]);
        asm.add(5, 30).unwrap(); // covers everything
        assert_eq!(ranges(&asm), [(5, 35)]);
        asm.add(7, 0).unwrap();
        assert_eq!(ranges(&asm), [(5, 35)]);
        assert_eq!(asm.end(), 35);
    }

    #[test]
    fn full_refuses_without_change() {
        let mut asm = Assembler::new();
        for i in 0..4 {
            asm.add(10 * i + 1, 2).unwrap();
        }
        let before = asm.clone();
        assert_eq!(asm.add(100, 1), Err(AssemblerFull));
        assert_eq!(asm.add(5, 1), Err(AssemblerFull));
        assert_eq!(asm, before);
        assert_eq!(asm.sack_ranges()[0], (31, 33), "recent unchanged");
        asm.add(3, 8).unwrap(); // joins the first two
        assert_eq!(ranges(&asm), [(1, 13), (21, 23), (31, 33)]);
    }

    #[test]
    fn remove_front_and_advance() {
        let mut asm = Assembler::new();
        asm.add(5, 5).unwrap();
        asm.add(20, 5).unwrap();
        assert_eq!(asm.remove_front(), 0);
        asm.advance(7);
        assert_eq!(ranges(&asm), [(0, 3), (13, 18)]);
        assert_eq!(asm.remove_front(), 3);
        assert_eq!(ranges(&asm), [(10, 15)]);
        asm.advance(15);
        assert!(asm.is_empty());
        assert_eq!(asm.end(), 0);
        asm.add(1, 1).unwrap();
        asm.clear();
        assert!(asm.is_empty());
        assert!(asm.sack_ranges().is_empty());
    }

    #[test]
    fn sack_order() {
        let mut asm = Assembler::new();
        asm.add(30, 5).unwrap();
        asm.add(10, 5).unwrap();
        asm.add(50, 5).unwrap();
        assert_eq!(asm.sack_ranges().as_slice(), [(50, 55), (10, 15), (30, 35)]);
        asm.add(14, 4).unwrap();
        assert_eq!(asm.sack_ranges().as_slice(), [(10, 18), (30, 35), (50, 55)]);
        asm.advance(12);
        assert_eq!(asm.sack_ranges().as_slice(), [(0, 6), (18, 23), (38, 43)]);
        assert_eq!(asm.remove_front(), 6);
        assert_eq!(asm.sack_ranges().as_slice(), [(12, 17), (32, 37)]);
    }

    /// Maximal runs of consecutive offsets in `set`, as (start, end).
    fn runs(set: &BTreeSet<u32>) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        for &x in set {
            match out.last_mut() {
                Some(last) if last.1 == x => last.1 += 1,
                _ => out.push((x, x + 1)),
            }
        }
        out
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u32, u32),
        Advance(u32),
        RemoveFront,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..64, 0u32..12).prop_map(|(o, l)| Op::Add(o, l)),
            1 => (0u32..20).prop_map(Op::Advance),
            1 => Just(Op::RemoveFront),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The assembler against a set of received offsets, plus a point in
        /// the most recently added block for the SACK order.
        #[test]
        fn assembler_matches_set(ops in proptest::collection::vec(op(), 0..40)) {
            let mut asm = Assembler::new();
            let mut model: BTreeSet<u32> = BTreeSet::new();
            let mut recent: Option<u32> = None;
            for op in ops {
                match op {
                    Op::Add(o, l) => {
                        let mut next = model.clone();
                        next.extend(o..o + l);
                        let result = asm.add(o, l);
                        if runs(&next).len() > MAX_RANGES {
                            prop_assert_eq!(result, Err(AssemblerFull));
                        } else {
                            prop_assert_eq!(result, Ok(()));
                            model = next;
                            if l > 0 {
                                recent = Some(o);
                            }
                        }
                    }
                    Op::Advance(c) => {
                        asm.advance(c);
                        let old = runs(&model);
                        recent = recent.and_then(|p| {
                            let run = old.iter().find(|r| r.0 <= p && p < r.1).unwrap();
                            (run.1 > c).then(|| p.saturating_sub(c))
                        });
                        model = model.iter().filter(|&&x| x >= c).map(|&x| x - c).collect();
                    }
                    Op::RemoveFront => {
                        let got = asm.remove_front();
                        let expected = match runs(&model).first() {
                            Some(&(0, e)) => e,
                            _ => 0,
                        };
                        prop_assert_eq!(got, expected);
                        if let Some(p) = recent {
                            recent = (p >= expected).then(|| p - expected);
                        }
                        model = model.iter().filter(|&&x| x >= expected).map(|&x| x - expected).collect();
                    }
                }
                let expected = runs(&model);
                prop_assert_eq!(ranges(&asm), expected.clone());
                prop_assert_eq!(asm.is_empty(), model.is_empty());
                prop_assert_eq!(asm.end(), model.last().map_or(0, |&x| x + 1));
                let mut sack = expected.clone();
                if let Some(p) = recent {
                    let i = sack.iter().position(|r| r.0 <= p && p < r.1).unwrap();
                    let r = sack.remove(i);
                    sack.insert(0, r);
                }
                prop_assert_eq!(asm.sack_ranges().to_vec(), sack);
            }
        }
    }

    /// A random stream, cut into segments (a covering chop plus arbitrary
    /// extra pieces), shuffled.
    fn delivery() -> impl Strategy<Value = (Vec<u8>, Vec<(usize, usize)>)> {
        (1usize..400).prop_flat_map(|len| {
            let stream = proptest::collection::vec(any::<u8>(), len);
            let chop = proptest::collection::vec(1usize..40, 1..40);
            let extra = proptest::collection::vec((0..len, 1usize..50), 0..30);
            (stream, chop, extra).prop_flat_map(move |(stream, chop, extra)| {
                let mut segments = Vec::new();
                let mut at = 0;
                for size in chop.iter().cycle() {
                    if at >= len {
                        break;
                    }
                    segments.push((at, (at + size).min(len)));
                    at += size;
                }
                segments.extend(extra.iter().map(|&(s, l)| (s, (s + l).min(len))));
                (Just(stream), Just(segments).prop_shuffle())
            })
        })
    }

    /// The receiver of the module doc's protocol.
    struct Receiver {
        rx: RingBuffer,
        asm: Assembler,
        /// Absolute stream offset of the ring's end (RCV.NXT).
        rcv_nxt: usize,
        /// Bytes read out of the ring by the "application".
        out: Vec<u8>,
    }

    impl Receiver {
        fn segment(&mut self, stream: &[u8], start: usize, end: usize) {
            if end <= self.rcv_nxt {
                return; // old duplicate
            }
            let start = start.max(self.rcv_nxt);
            let offset = start - self.rcv_nxt;
            let written = self.rx.write_unallocated(offset, &stream[start..end]);
            if offset == 0 {
                self.asm.advance(written as u32);
                let total = written as u32 + self.asm.remove_front();
                self.rx.enqueue_unallocated(total as usize);
                self.rcv_nxt += total as usize;
            } else {
                let _ = self.asm.add(offset as u32, written as u32);
            }
            assert!(self.asm.end() as usize <= self.rx.free());
        }

        fn read(&mut self, max: usize) {
            let mut buf = vec![0u8; max];
            let n = self.rx.dequeue_slice(&mut buf);
            self.out.extend(&buf[..n]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Segments delivered in random order with duplicates through
        /// RingBuffer + Assembler, then retransmitted in order until done,
        /// yield exactly the stream.
        #[test]
        fn ring_and_assembler_reassemble(
            (stream, segments) in delivery(),
            capacity in 1usize..128,
            reads in proptest::collection::vec(0usize..64, 1..16),
        ) {
            let mut pool = BufferPool::new(capacity, 1);
            let mut r = Receiver { rx: RingBuffer::new(), asm: Assembler::new(), rcv_nxt: 0, out: Vec::new() };
            prop_assert!(r.rx.ensure_storage(&mut pool));
            for (i, &(start, end)) in segments.iter().enumerate() {
                r.segment(&stream, start, end);
                r.read(reads[i % reads.len()]);
                prop_assert_eq!(&r.out[..], &stream[..r.out.len()]);
            }
            // The sender retransmits from RCV.NXT, in order, 7 bytes a time.
            while r.rcv_nxt < stream.len() {
                let start = r.rcv_nxt;
                r.segment(&stream, start, (start + 7).min(stream.len()));
                r.read(capacity);
            }
            r.read(capacity);
            prop_assert_eq!(&r.out[..], &stream[..]);
            prop_assert!(r.asm.is_empty());
            r.rx.release_if_empty(&mut pool);
            prop_assert_eq!(pool.in_use_bytes(), 0);
        }
    }
}
