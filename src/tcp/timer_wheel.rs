//! A hierarchical timing wheel (Varghese and Lauck, "Hashed and Hierarchical
//! Timing Wheels", SOSP 1987), one per worker, for connection deadlines in
//! nanoseconds.
//!
//! Time is cut into ticks of `tick_ns` counted from the wheel's creation. A
//! timer due in tick `k` sits in a slot chosen by the highest bit group in
//! which `k` differs from the current tick: level 0 has 256 slots of one tick,
//! levels 1 to 4 have 64 slots each, of 2^8, 2^14, 2^20 and 2^26 ticks, so the
//! wheel spans 2^32 ticks (about 49 days at 1 ms). Timers further away wait in
//! an overflow list, re-examined when the current tick enters the 2^32-tick
//! block of the earliest of them. When the current tick enters a slot of a
//! higher level, that slot's timers cascade down to the level that now fits
//! them; each timer cascades at most four times, so `advance` is amortised
//! O(1) per timer.
//!
//! Timers live in a slab (a `Vec` plus a free list); each slot is an intrusive
//! doubly linked list through the slab, so [`TimerWheel::insert`] and
//! [`TimerWheel::cancel`] are O(1). A [`TimerId`] carries the slot's
//! generation, so an id kept after its timer fired or was cancelled is
//! harmless.
//!
//! Firing is exact: [`TimerWheel::advance`] fires precisely the timers whose
//! deadline is at or before `now`, never early and never later than the
//! `advance` call that passes their deadline. The tick only decides
//! bucketing: the current tick's slot is re-scanned on each `advance` that
//! reaches a timer's deadline (skipped while `now` is below a lower bound on its
//! deadlines). Timers due in one `advance` fire in tick order, in no
//! particular order within a tick. `advance` jumps over empty stretches using
//! per-level occupancy bitmaps, so its loop runs once per non-empty slot
//! fired or cascaded, never once per tick.
//!
//! Allocation: the slab grows to the peak number of pending timers and never
//! shrinks ([`TimerWheel::with_capacity`] reserves it up front); `advance`
//! pushes onto the caller's `Vec`. Nothing else allocates.
//!
//! Panics: [`TimerWheel::new`] with `tick_ns == 0`; [`TimerWheel::insert`]
//! when 2^32 - 1 timers are pending.

use core::fmt;

/// Bits of the tick number covered by level 0 (256 slots).
const LEVEL0_BITS: u32 = 8;
/// Bits covered by each higher level (64 slots).
const LEVEL_BITS: u32 = 6;
/// Number of levels.
const LEVELS: usize = 5;
/// First bit of the tick number each level indexes by; `SHIFT[LEVELS]` is
/// the span of the whole wheel.
const SHIFT: [u32; LEVELS + 1] = [0, 8, 14, 20, 26, 32];
/// List id of each level's first slot: slots are numbered level 0 first.
const SLOT_BASE: [usize; LEVELS] = [0, 256, 320, 384, 448];
/// Number of wheel slots.
const SLOTS: usize = 512;
/// List id of the overflow list.
const OVERFLOW: usize = SLOTS;
/// Number of lists: the slots and the overflow list.
const LISTS: usize = SLOTS + 1;
/// No entry.
const NIL: u32 = u32::MAX;
/// `Entry::list` of a free entry.
const FREE: u16 = u16::MAX;

/// Names a pending timer, for [`TimerWheel::cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    /// The timer's slab index.
    index: u32,
    /// The slab entry's generation when the timer was inserted.
    generation: u32,
}

/// One slab entry: a pending timer or a free entry.
#[derive(Clone, Copy)]
struct Entry<T> {
    /// The deadline in nanoseconds.
    deadline: u64,
    /// The item; `None` exactly when the entry is free.
    item: Option<T>,
    /// Previous entry in the same list, or `NIL` at the head.
    prev: u32,
    /// Next entry in the same list (or in the free list), or `NIL`.
    next: u32,
    /// Bumped each time the entry is freed, so stale [`TimerId`]s miss.
    generation: u32,
    /// The list the entry is on (a slot, `OVERFLOW`), or `FREE`.
    list: u16,
}

/// A hierarchical timer wheel holding items of type `T` until their
/// deadline.
pub struct TimerWheel<T: Copy> {
    /// The slab. Pending entries are on exactly one list in `heads`; free
    /// ones are on the free list.
    entries: Vec<Entry<T>>,
    /// Head of the free list (linked through `Entry::next`), or `NIL`.
    free_head: u32,
    /// Head entry of each slot list and of the overflow list, or `NIL`.
    heads: [u32; LISTS],
    /// Bit `i % 64` of word `i / 64` is set exactly when slot `i` is
    /// non-empty: words 0..4 are level 0, word 3 + l is level l.
    occupied: [u64; SLOTS / 64],
    /// The time of tick 0.
    origin_ns: u64,
    /// Length of a tick, positive.
    tick_ns: u64,
    /// The current tick. A pending timer due in tick `k` is in the level 0
    /// slot `current % 256` if `k <= current`; otherwise in the slot of the
    /// level of the highest bit group where `k` and `current` differ (below
    /// bit 32), indexed by `k`'s bits of that group, or in the overflow list.
    /// So the level 0 slots below `current % 256` and the slots of higher
    /// levels at or below `current`'s index are empty.
    current: u64,
    /// A lower bound on the deadlines in the current tick's slot
    /// (`u64::MAX` when it is known empty).
    current_min: u64,
    /// A lower bound on the ticks of the overflow list's timers; `u64::MAX`
    /// exactly when the list is empty. Its 2^32-tick block is after
    /// `current`'s.
    overflow_min: u64,
    /// Pending timers.
    len: usize,
    /// Iterations of `advance`'s loop, to check it skips empty stretches.
    #[cfg(test)]
    steps: u64,
}

impl<T: Copy> TimerWheel<T> {
    /// An empty wheel whose tick 0 starts at `now_ns`, with ticks of
    /// `tick_ns` (1 ms is a good choice for TCP).
    ///
    /// # Panics
    /// If `tick_ns` is 0.
    pub fn new(now_ns: u64, tick_ns: u64) -> Self {
        Self::with_capacity(now_ns, tick_ns, 0)
    }

    /// Like [`new`](Self::new), with room for `capacity` timers reserved.
    pub fn with_capacity(now_ns: u64, tick_ns: u64, capacity: usize) -> Self {
        assert!(tick_ns > 0, "tick must be positive");
        TimerWheel {
            entries: Vec::with_capacity(capacity),
            free_head: NIL,
            heads: [NIL; LISTS],
            occupied: [0; SLOTS / 64],
            origin_ns: now_ns,
            tick_ns,
            current: 0,
            current_min: u64::MAX,
            overflow_min: u64::MAX,
            len: 0,
            #[cfg(test)]
            steps: 0,
        }
    }

    /// Pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `item` for `deadline_ns`. O(1). A deadline at or before the
    /// last `advance`'s time fires at the next `advance`.
    ///
    /// # Panics
    /// If 2^32 - 1 timers are pending.
    pub fn insert(&mut self, deadline_ns: u64, item: T) -> TimerId {
        let index = if self.free_head != NIL {
            let index = self.free_head;
            self.free_head = self.entries[index as usize].next;
            index
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("too many timers");
            self.entries.push(Entry {
                deadline: 0,
                item: None,
                prev: NIL,
                next: NIL,
                generation: 0,
                list: FREE,
            });
            index
        };
        let entry = &mut self.entries[index as usize];
        entry.deadline = deadline_ns;
        entry.item = Some(item);
        let generation = entry.generation;
        self.place(index);
        self.len += 1;
        TimerId { index, generation }
    }

    /// Cancels a pending timer and returns its item. O(1). `None` if the
    /// timer already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let entry = self.entries.get(id.index as usize)?;
        if entry.generation != id.generation || entry.list == FREE {
            return None;
        }
        self.unlink(id.index);
        Some(self.free(id.index))
    }

    /// Fires every timer whose deadline is at or before `now_ns`, pushing
    /// their items onto `fired`. Amortised O(1) per timer plus O(levels) per
    /// non-empty slot passed; a `now_ns` at or before the last one only
    /// re-checks the current tick's slot.
    pub fn advance(&mut self, now_ns: u64, fired: &mut Vec<T>) {
        let target = self.tick_of(now_ns);
        if target <= self.current {
            if now_ns >= self.current_min {
                self.scan_current(now_ns, fired);
            }
            return;
        }
        loop {
            #[cfg(test)]
            {
                self.steps += 1;
            }
            // Every timer of the current tick is due: target is later.
            self.fire_list(self.current_slot(), fired);
            let next = self.next_event().map_or(target, |e| e.min(target));
            debug_assert!(next > self.current, "timer wheel stuck at {next}");
            self.current = next;
            self.cascade(next);
            if next == target {
                self.scan_current(now_ns, fired);
                return;
            }
        }
    }

    /// A time at or before the earliest pending deadline, good to sleep
    /// until: exact for the current tick's timers (up to cancellations),
    /// otherwise the start of the earliest non-empty slot or overflow block.
    /// `None` if no timer is pending. O(levels).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        if self.heads[self.current_slot()] != NIL {
            return Some(self.current_min);
        }
        self.next_event().map(|tick| {
            self.origin_ns
                .saturating_add(tick.saturating_mul(self.tick_ns))
        })
    }

    /// The tick that `time_ns` falls in (0 for times before the origin).
    fn tick_of(&self, time_ns: u64) -> u64 {
        time_ns.saturating_sub(self.origin_ns) / self.tick_ns
    }

    /// The level 0 slot of the current tick.
    fn current_slot(&self) -> usize {
        (self.current & 0xff) as usize
    }

    /// The list a timer due in `tick` belongs on, given `current`.
    fn list_for(&self, tick: u64) -> usize {
        if tick <= self.current {
            return self.current_slot();
        }
        let diff = tick ^ self.current;
        if diff < 1 << LEVEL0_BITS {
            return (tick & 0xff) as usize;
        }
        let bit = 63 - diff.leading_zeros();
        if bit >= SHIFT[LEVELS] {
            return OVERFLOW;
        }
        let level = 1 + ((bit - LEVEL0_BITS) / LEVEL_BITS) as usize;
        SLOT_BASE[level] + ((tick >> SHIFT[level]) & 63) as usize
    }

    /// Puts the (unlinked, pending) entry `index` on its list.
    fn place(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let tick = self.tick_of(deadline);
        let list = self.list_for(tick);
        if list == self.current_slot() {
            self.current_min = self.current_min.min(deadline);
        } else if list == OVERFLOW {
            self.overflow_min = self.overflow_min.min(tick);
        }
        let head = self.heads[list];
        let entry = &mut self.entries[index as usize];
        entry.prev = NIL;
        entry.next = head;
        entry.list = list as u16;
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.heads[list] = index;
        if list < SLOTS {
            self.occupied[list / 64] |= 1 << (list % 64);
        }
    }

    /// Takes the pending entry `index` off its list.
    fn unlink(&mut self, index: u32) {
        let Entry {
            prev, next, list, ..
        } = self.entries[index as usize];
        let list = list as usize;
        if prev == NIL {
            self.heads[list] = next;
            if next == NIL {
                if list < SLOTS {
                    self.occupied[list / 64] &= !(1 << (list % 64));
                } else {
                    // An empty overflow list's bound must not stay behind
                    // `current`, which moves on without it.
                    self.overflow_min = u64::MAX;
                }
            }
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    /// Frees the unlinked entry `index` and returns its item.
    fn free(&mut self, index: u32) -> T {
        let entry = &mut self.entries[index as usize];
        let item = entry.item.take().expect("freeing a free timer entry");
        entry.generation = entry.generation.wrapping_add(1);
        entry.list = FREE;
        entry.next = self.free_head;
        self.free_head = index;
        self.len -= 1;
        item
    }

    /// Empties `list`, returning its first entry (the rest follow through
    /// `next`).
    fn detach(&mut self, list: usize) -> u32 {
        let head = self.heads[list];
        self.heads[list] = NIL;
        if list < SLOTS {
            self.occupied[list / 64] &= !(1 << (list % 64));
        }
        head
    }

    /// Fires every timer on `list`.
    fn fire_list(&mut self, list: usize, fired: &mut Vec<T>) {
        let mut index = self.detach(list);
        while index != NIL {
            let next = self.entries[index as usize].next;
            fired.push(self.free(index));
            index = next;
        }
    }

    /// Fires the current slot's timers due at `now_ns` and recomputes
    /// `current_min` from the others.
    fn scan_current(&mut self, now_ns: u64, fired: &mut Vec<T>) {
        let mut min = u64::MAX;
        let mut index = self.heads[self.current_slot()];
        while index != NIL {
            let entry = &self.entries[index as usize];
            let (next, deadline) = (entry.next, entry.deadline);
            if deadline <= now_ns {
                self.unlink(index);
                fired.push(self.free(index));
            } else {
                min = min.min(deadline);
            }
            index = next;
        }
        self.current_min = min;
    }

    /// Re-places the timers of every list whose span starts at tick `tick`
    /// (the current tick, just entered).
    fn cascade(&mut self, tick: u64) {
        if tick & ((1 << SHIFT[LEVELS]) - 1) == 0 && self.overflow_min >> 32 <= tick >> 32 {
            self.overflow_min = u64::MAX;
            self.relist(OVERFLOW);
        }
        for level in (1..LEVELS).rev() {
            if tick & ((1 << SHIFT[level]) - 1) == 0 {
                let slot = SLOT_BASE[level] + ((tick >> SHIFT[level]) & 63) as usize;
                self.relist(slot);
            }
        }
    }

    /// Moves every timer of `list` to the list it belongs on now.
    fn relist(&mut self, list: usize) {
        let mut index = self.detach(list);
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.place(index);
            index = next;
        }
    }

    /// The first tick after `current` at which a non-empty slot starts
    /// (level 0) or is entered (higher levels), or at which the overflow list
    /// must be re-examined.
    fn next_event(&self) -> Option<u64> {
        // Level 0: the rest of the current 256-tick block.
        let from = self.current_slot() + 1;
        for word in from / 64..4 {
            let mut bits = self.occupied[word];
            if word == from / 64 {
                bits &= u64::MAX << (from % 64);
            }
            if bits != 0 {
                let slot = (word * 64) as u64 + u64::from(bits.trailing_zeros());
                return Some((self.current & !0xff) | slot);
            }
        }
        // Higher levels: the rest of the current block of the level above.
        for level in 1..LEVELS {
            let index = (self.current >> SHIFT[level]) & 63;
            let bits = if index == 63 {
                0
            } else {
                self.occupied[3 + level] & (u64::MAX << (index + 1))
            };
            if bits != 0 {
                let block = self.current >> SHIFT[level + 1] << SHIFT[level + 1];
                return Some(block | (u64::from(bits.trailing_zeros()) << SHIFT[level]));
            }
        }
        if self.heads[OVERFLOW] != NIL {
            return Some(self.overflow_min >> 32 << 32);
        }
        None
    }
}

impl<T: Copy> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("origin_ns", &self.origin_ns)
            .field("tick_ns", &self.tick_ns)
            .field("current", &self.current)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const MS: u64 = 1_000_000;

    fn advance(wheel: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut fired = Vec::new();
        wheel.advance(now, &mut fired);
        fired.sort_unstable();
        fired
    }

    #[test]
    fn fires_exactly_at_deadline() {
        let mut wheel = TimerWheel::new(1_000, MS);
        assert_eq!(wheel.next_deadline(), None);
        wheel.insert(1_000 + 5 * MS + 10, 1);
        wheel.insert(1_000 + 5 * MS + 20, 2);
        wheel.insert(1_000 + 300 * MS, 3);
        assert_eq!(wheel.len(), 3);
        assert_eq!(wheel.next_deadline(), Some(1_000 + 5 * MS), "slot start");
        assert!(advance(&mut wheel, 1_000 + 5 * MS).is_empty());
        assert_eq!(wheel.next_deadline(), Some(1_000 + 5 * MS + 10), "exact");
        assert_eq!(advance(&mut wheel, 1_000 + 5 * MS + 10), [1]);
        assert_eq!(advance(&mut wheel, 1_000 + 5 * MS + 19), [] as [u32; 0]);
        assert_eq!(advance(&mut wheel, 1_000 + 5 * MS + 25), [2]);
        assert!(advance(&mut wheel, 1_000 + 300 * MS - 1).is_empty());
        assert_eq!(advance(&mut wheel, 1_000 + 300 * MS), [3]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn past_deadline_fires_at_next_advance() {
        let mut wheel = TimerWheel::new(0, MS);
        advance(&mut wheel, 10 * MS + 500);
        wheel.insert(3, 7);
        wheel.insert(10 * MS + 400, 8);
        assert_eq!(wheel.next_deadline(), Some(3));
        assert_eq!(advance(&mut wheel, 10 * MS + 500), [7, 8]);
    }

    #[test]
    fn cancel_and_stale_ids() {
        let mut wheel = TimerWheel::new(0, MS);
        let a = wheel.insert(50 * MS, 1);
        let b = wheel.insert(70_000 * MS, 2);
        assert_eq!(wheel.cancel(a), Some(1));
        assert_eq!(wheel.cancel(a), None);
        let c = wheel.insert(50 * MS, 3); // reuses a's entry
        assert_eq!(wheel.cancel(a), None, "stale id misses the new timer");
        assert_eq!(advance(&mut wheel, 60 * MS), [3]);
        assert_eq!(wheel.cancel(c), None, "fired");
        assert_eq!(wheel.cancel(b), Some(2));
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn far_timers_cascade_and_overflow() {
        let mut wheel = TimerWheel::new(0, 1);
        let deadlines = [
            255,
            256,
            257,
            (1 << 14) + 3,
            (1 << 20) - 1,
            (1 << 26) + 5,
            (1 << 32) - 1,
            1 << 32,
            (5 << 32) + 77,
            u64::MAX,
        ];
        for (i, &d) in deadlines.iter().enumerate() {
            wheel.insert(d, i as u32);
        }
        for (i, &d) in deadlines.iter().enumerate() {
            let next = wheel.next_deadline().unwrap();
            assert!(next <= d, "{next} > {d}");
            assert!(advance(&mut wheel, d - 1).is_empty(), "early at {d}");
            assert_eq!(advance(&mut wheel, d), [i as u32]);
        }
        assert!(wheel.steps < 200, "{} steps", wheel.steps);
    }

    #[test]
    fn overflow_emptied_by_cancel_then_refilled() {
        // Found by the model test: the overflow bound outlived its last timer.
        let mut wheel = TimerWheel::new(0, 7);
        let far = wheel.insert(7 << 32, 1);
        assert_eq!(wheel.cancel(far), Some(1));
        assert!(advance(&mut wheel, (7 << 32) + 7).is_empty());
        wheel.insert(14 << 32, 2);
        assert!(advance(&mut wheel, (7 << 32) + 14).is_empty());
        assert_eq!(advance(&mut wheel, 14 << 32), [2]);
    }

    #[test]
    fn long_jump_takes_few_steps() {
        let mut wheel = TimerWheel::new(0, MS);
        wheel.insert(10 * 3600 * 1000 * MS, 1);
        wheel.insert(100 * 24 * 3600 * 1000 * MS, 2);
        assert!(advance(&mut wheel, 10 * 3600 * 1000 * MS - 1).is_empty());
        assert_eq!(advance(&mut wheel, 1000 * 24 * 3600 * 1000 * MS), [1, 2]);
        assert!(wheel.steps < 20, "{} steps", wheel.steps);
    }

    /// A deterministic generator for the big test.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn million_timers_over_hours() {
        const N: usize = 1_000_000;
        const SPAN: u64 = 4 * 3600 * 1000 * MS; // four hours
        let origin = 12_345;
        let mut wheel = TimerWheel::with_capacity(origin, MS, N);
        let mut rng = 0x9E37_79B9_7F4A_7C15;
        let mut deadlines: Vec<u64> = Vec::with_capacity(N);
        for i in 0..N {
            let d = origin + xorshift(&mut rng) % SPAN;
            wheel.insert(d, i as u32);
            deadlines.push(d);
        }
        let mut sorted = deadlines.clone();
        sorted.sort_unstable();
        let mut fired = Vec::new();
        let mut due = 0;
        // 1 ms steps over the first 20 s.
        let mut now = origin;
        for _ in 0..20_000 {
            now += MS;
            wheel.advance(now, &mut fired);
            while due < N && sorted[due] <= now {
                due += 1;
            }
            assert_eq!(fired.len(), due, "at {now}");
        }
        assert!(fired.iter().all(|&i| deadlines[i as usize] <= now));
        // Then a long jump to the end.
        let steps = wheel.steps;
        wheel.advance(origin + SPAN, &mut fired);
        assert_eq!(fired.len(), N);
        assert!(wheel.is_empty());
        // At most one step per tick that has a timer, plus one per cascade:
        // far fewer than the 14.4M ticks of the span.
        assert!(
            wheel.steps - steps <= (N as u64) + SPAN / MS / 256 + 1000,
            "{} steps",
            wheel.steps - steps
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Insert at now + delta (delta may be negative: in the past).
        Insert(i64),
        /// Cancel the timer inserted `n` inserts ago (modulo).
        Cancel(usize),
        /// Advance by this many nanoseconds.
        Advance(u64),
    }

    /// A delta spread over all levels: `bits` random bits.
    fn spread() -> impl Strategy<Value = u64> {
        (0u32..48, any::<u64>()).prop_map(|(bits, r)| if bits == 0 { 0 } else { r >> (64 - bits) })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (spread(), any::<bool>()).prop_map(|(d, past)| Op::Insert(if past { -((d >> 8) as i64) } else { d as i64 })),
            1 => any::<usize>().prop_map(Op::Cancel),
            3 => spread().prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Against a BTreeMap of pending deadlines: every advance fires
        /// exactly the timers due (none early, none late), cancel returns
        /// the item iff pending, and next_deadline is never late.
        #[test]
        fn wheel_matches_btreemap(
            origin in 0u64..1 << 40,
            tick in prop_oneof![Just(1u64), Just(7), Just(1000), Just(MS)],
            ops in proptest::collection::vec(op(), 0..80),
        ) {
            let mut wheel: TimerWheel<u32> = TimerWheel::new(origin, tick);
            let mut model: BTreeMap<(u64, u32), ()> = BTreeMap::new();
            let mut ids: Vec<(TimerId, u64, u32)> = Vec::new();
            let mut now = origin;
            let mut next_item = 0u32;
            for op in ops {
                match op {
                    Op::Insert(delta) => {
                        let d = now.saturating_add_signed(delta);
                        let id = wheel.insert(d, next_item);
                        model.insert((d, next_item), ());
                        ids.push((id, d, next_item));
                        next_item += 1;
                    }
                    Op::Cancel(n) => {
                        if !ids.is_empty() {
                            let (id, d, item) = ids[ids.len() - 1 - n % ids.len()];
                            let expected = model.remove(&(d, item)).map(|()| item);
                            prop_assert_eq!(wheel.cancel(id), expected);
                        }
                    }
                    Op::Advance(step) => {
                        if let Some(next) = wheel.next_deadline() {
                            let earliest = model.keys().next().unwrap().0;
                            prop_assert!(next <= earliest, "next_deadline {} late for {}", next, earliest);
                        }
                        now = now.saturating_add(step);
                        let mut fired = Vec::new();
                        wheel.advance(now, &mut fired);
                        fired.sort_unstable();
                        let mut due: Vec<u32> = Vec::new();
                        while let Some((&(d, item), ())) = model.first_key_value() {
                            if d > now {
                                break;
                            }
                            due.push(item);
                            model.remove(&(d, item));
                        }
                        due.sort_unstable();
                        prop_assert_eq!(fired, due);
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
                prop_assert_eq!(wheel.next_deadline().is_some(), !model.is_empty());
            }
        }

        /// Calling advance at every tick boundary with random timers: each
        /// timer fires in the first advance at or after its deadline, so no
        /// later than one tick after it.
        #[test]
        fn per_tick_advance_is_at_most_one_tick_late(
            deadlines in proptest::collection::vec(0u64..5_000, 1..50),
        ) {
            let tick = 10;
            let mut wheel = TimerWheel::new(0, tick);
            for (i, &d) in deadlines.iter().enumerate() {
                wheel.insert(d, i as u32);
            }
            let mut fired = Vec::new();
            let mut now = 0;
            while !wheel.is_empty() {
                fired.clear();
                wheel.advance(now, &mut fired);
                for &i in &fired {
                    let d = deadlines[i as usize];
                    prop_assert!(d <= now && now < d + tick, "deadline {} fired at {}", d, now);
                }
                now += tick;
            }
        }
    }
}
