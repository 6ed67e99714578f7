//! The 4-tuple index of a worker's connections: slab keys in buckets of one
//! cache line each, as DPDK's `rte_hash` keeps them, so that a lookup costs
//! one bucket line and the connection it names, and a burst's lookups can be
//! split in steps that overlap their cache misses ([`TupleIndex::bucket`],
//! [`TupleIndex::candidates`]), as `rte_hash_lookup_bulk` does.
//!
//! Why not `hashbrown`, which the TIME-WAIT records keep using: its lookup
//! reads a control group and then a bucket, two dependent misses at a
//! million connections, and it offers no way to start either early. The
//! table's hash is keyed (`ahash`, seeded at random per process), so peers
//! cannot aim at a bucket.
//!
//! - A bucket holds 7 entries: a 32-bit signature (the hash's top half)
//!   and the slab key. An entry lives in its home bucket (the signature's
//!   top bits, as many as the buckets need) or, when that is full, in the
//!   next bucket with room (linear probing over buckets). Each bucket counts the entries that had to pass it
//!   (`overflow`, as folly's F14 does), so a lookup stops at the first
//!   bucket that no entry passed, and a removal needs no tombstone.
//! - The index doubles when it is three quarters full; the signatures hold every bit a
//!   home needs up to 2^32 buckets, so growing reads the index only, never
//!   the connections (a scan of 16 bytes per connection).
//! - The index never compares tuples itself: the caller's `eq` decides
//!   whether a key whose signature matches is the one sought.

/// Entries per bucket.
const WAYS: usize = 7;
/// An entry with no key.
const EMPTY: u32 = u32::MAX;
/// Buckets of a new index.
const INITIAL_BUCKETS: usize = 16;

/// One cache line of entries.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Bucket {
    sig: [u32; WAYS],
    key: [u32; WAYS],
    /// Entries whose home is at or before this bucket that live after it.
    overflow: u32,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        sig: [0; WAYS],
        key: [EMPTY; WAYS],
        overflow: 0,
    };

    /// A bit per way whose signature is `sig` (empty ways included: their
    /// key tells). Written so that the compiler compares all eight at once.
    #[inline]
    fn matches(&self, sig: u32) -> u32 {
        let mut bits = 0;
        for (way, &s) in self.sig.iter().enumerate() {
            bits |= u32::from(s == sig) << way;
        }
        bits
    }
}

/// Slab keys by 4-tuple hash.
pub struct TupleIndex {
    buckets: Vec<Bucket>,
    /// 32 less log2 of the bucket count: a signature shifted right by it
    /// is its home.
    shift: u32,
    len: usize,
}

impl Default for TupleIndex {
    fn default() -> Self {
        TupleIndex::new()
    }
}

#[inline]
fn signature(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl TupleIndex {
    /// An empty index.
    pub fn new() -> TupleIndex {
        TupleIndex {
            buckets: vec![Bucket::EMPTY; INITIAL_BUCKETS],
            shift: 32 - INITIAL_BUCKETS.trailing_zeros(),
            len: 0,
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    #[inline]
    fn home(&self, sig: u32) -> usize {
        (sig >> self.shift) as usize
    }

    /// The home bucket of `hash`: what a lookup reads first (to prefetch).
    #[inline]
    pub fn bucket(&self, hash: u64) -> &Bucket {
        &self.buckets[self.home(signature(hash))]
    }

    /// The keys in `hash`'s home bucket whose signature matches: those a
    /// lookup of `hash` will compare (to prefetch what `eq` reads). Keys
    /// that overflowed to later buckets are not named.
    #[inline]
    pub fn candidates(&self, hash: u64, mut f: impl FnMut(u32)) {
        let bucket = self.bucket(hash);
        let mut matches = bucket.matches(signature(hash));
        while matches != 0 {
            let key = bucket.key[matches.trailing_zeros() as usize];
            matches &= matches - 1;
            if key != EMPTY {
                f(key);
            }
        }
    }

    /// The key under `hash` for which `eq` holds.
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let sig = signature(hash);
        let mask = self.mask();
        let mut at = self.home(sig);
        // Bounded by the bucket count: a lookup ends even if every bucket
        // were passed by some entry (never seen at three quarters full).
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[at];
            let mut matches = bucket.matches(sig);
            while matches != 0 {
                let key = bucket.key[matches.trailing_zeros() as usize];
                matches &= matches - 1;
                if key != EMPTY && eq(key) {
                    return Some(key);
                }
            }
            if bucket.overflow == 0 {
                return None;
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Add `key` under `hash` (the caller knows it is not there yet).
    pub fn insert(&mut self, hash: u64, key: u32) {
        debug_assert_ne!(key, EMPTY, "the empty marker is not a key");
        if (self.len + 1) * 4 > self.buckets.len() * WAYS * 3 {
            self.grow();
        }
        self.place(signature(hash), key);
        self.len += 1;
    }

    fn place(&mut self, sig: u32, key: u32) {
        let mask = self.mask();
        let mut at = self.home(sig);
        // At most three quarters full: a bucket with room comes.
        loop {
            let bucket = &mut self.buckets[at];
            if let Some(way) = bucket.key.iter().position(|&k| k == EMPTY) {
                bucket.key[way] = key;
                bucket.sig[way] = sig;
                return;
            }
            bucket.overflow += 1;
            at = (at + 1) & mask;
        }
    }

    fn grow(&mut self) {
        assert!(self.shift > 0, "2^32 buckets");
        let doubled = vec![Bucket::EMPTY; self.buckets.len() * 2];
        let old = std::mem::replace(&mut self.buckets, doubled);
        self.shift -= 1;
        for bucket in &old {
            for way in (0..WAYS).filter(|&w| bucket.key[w] != EMPTY) {
                self.place(bucket.sig[way], bucket.key[way]);
            }
        }
    }

    /// Remove `key`, held under `hash`. Returns whether it was there.
    pub fn remove(&mut self, hash: u64, key: u32) -> bool {
        let sig = signature(hash);
        let mask = self.mask();
        let home = self.home(sig);
        let mut at = home;
        for _ in 0..self.buckets.len() {
            let bucket = &mut self.buckets[at];
            if let Some(way) = (0..WAYS).find(|&w| bucket.key[w] == key && bucket.sig[w] == sig) {
                bucket.key[way] = EMPTY;
                self.len -= 1;
                // The buckets it passed on its way in no longer overflow for it.
                let mut passed = home;
                while passed != at {
                    self.buckets[passed].overflow -= 1;
                    passed = (passed + 1) & mask;
                }
                return true;
            }
            if bucket.overflow == 0 {
                return false;
            }
            at = (at + 1) & mask;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Keys map to their hashes through this table (a model of the slab).
    fn check(index: &TupleIndex, model: &HashMap<u32, u64>) {
        assert_eq!(index.len(), model.len());
        for (&key, &hash) in model {
            assert_eq!(index.find(hash, |k| k == key), Some(key), "key {key}");
        }
        let overflow: u32 = index.buckets.iter().map(|b| b.overflow).sum();
        // Every overflow count is owed to an entry away from home.
        let mut owed = 0u32;
        for (at, bucket) in index.buckets.iter().enumerate() {
            for &key in bucket.key.iter().filter(|&&k| k != EMPTY) {
                let home = index.home(signature(model[&key]));
                owed += ((at + index.buckets.len() - home) & index.mask()) as u32;
            }
        }
        assert_eq!(overflow, owed);
    }

    #[test]
    fn colliding_keys_overflow_and_come_back() {
        let mut index = TupleIndex::new();
        let mut model = HashMap::new();
        // 40 keys with one signature (so one home at every size): more
        // than five buckets' worth, past the index's growth from 16 buckets.
        let hash = 0x3000_0000_0000_0000u64;
        for key in 0..40u32 {
            model.insert(key, hash);
            index.insert(hash, key);
        }
        check(&index, &model);
        let home = index.home(signature(hash));
        assert!(index.buckets[home].overflow > 0);
        // A missing key with the same home is not found, and ends.
        assert_eq!(index.find(hash, |_| false), None);
        for key in (0..40u32).step_by(3) {
            assert!(index.remove(model[&key], key));
            model.remove(&key);
            check(&index, &model);
        }
        assert!(!index.remove(hash, 0), "removed already");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Remove(u16),
    }

    proptest! {
        #[test]
        fn agrees_with_a_hash_map(
            ops in proptest::collection::vec(
                prop_oneof![any::<u16>().prop_map(Op::Insert), any::<u16>().prop_map(Op::Remove)],
                0..600,
            ),
            narrow in any::<bool>(),
        ) {
            // A narrow hash piles keys into few homes and signatures; a wide
            // one spreads them.
            let hash_of = move |key: u32| -> u64 {
                let h = u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if narrow { h & 0xe000_0003_0000_0000 } else { h }
            };
            let mut index = TupleIndex::new();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k) => {
                        let key = u32::from(k % 512);
                        if let std::collections::hash_map::Entry::Vacant(e) = model.entry(key) {
                            e.insert(hash_of(key));
                            index.insert(hash_of(key), key);
                        }
                    }
                    Op::Remove(k) => {
                        let key = u32::from(k % 512);
                        prop_assert_eq!(index.remove(hash_of(key), key), model.remove(&key).is_some());
                    }
                }
            }
            check(&index, &model);
            for key in 512..530u32 {
                prop_assert_eq!(index.find(hash_of(key), |k| k == key), None);
            }
        }
    }
}
