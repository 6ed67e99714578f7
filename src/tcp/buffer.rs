//! Byte rings for a connection's send and receive data, with storage lent by a
//! per-worker [`BufferPool`].
//!
//! The idea is smoltcp's `storage::RingBuffer` with the storage made optional
//! and sized to what is in flight: a [`RingBuffer`] holds a `Box<[u8]>` only
//! while it has data (or is about to receive some), starting with the pool's
//! smallest size ([`MIN_BUFFER`], 4 KiB) and doubling as more bytes are queued
//! ([`RingBuffer::reserve`]), up to the configured buffer size; it gives the
//! storage back when it drains, so an idle connection costs 24 bytes per ring
//! and no buffer memory, and a connection that sent one byte holds 4 KiB, not
//! the whole buffer size. Storage is allocated lazily, the first time the pool
//! has no free buffer of a size, and is reused from then on.
//!
//! The pool's limit counts bytes: `max_buffers` buffers of the full size, in
//! any mix of sizes. It keeps at most that many bytes allocated (lent plus
//! free): when a size has no free buffer and a new one would go over, free
//! buffers of other sizes are released to the allocator first.
//!
//! The receive side also holds out-of-order data: bytes written past the
//! ring's length with [`RingBuffer::write_unallocated`] and made part of it
//! later with [`RingBuffer::enqueue_unallocated`]. The protocol that keeps those
//! bytes consistent is described in [`super::assembler`]; growing a ring
//! keeps them (the whole storage is copied, from the head).
//!
//! Allocation: [`BufferPool::take`] (and [`RingBuffer::reserve`] through it)
//! allocates one buffer when the pool has no free one of the size asked and
//! the byte limit allows; [`BufferPool::give`] may grow a free list's `Vec`
//! (amortised, up to the peak number of buffers of that size). No other
//! function here allocates. In a steady state (the same sizes taken and given
//! back) nothing is allocated.
//!
//! Buffers are not zeroed when reused. A ring only ever exposes bytes inside
//! its length, and those were all written by this connection, provided the
//! receive protocol of [`super::assembler`] is followed (`enqueue_unallocated`
//! only over bytes already written).
//!
//! Panics: [`BufferPool::new`] with a buffer size of 0 or above `u32::MAX`;
//! [`RingBuffer::enqueue_unallocated`] past the capacity (a caller bug).
//! [`BufferPool::give`] checks the buffer's size only in debug builds.

use core::fmt;

/// The smallest buffer a pool lends (or the buffer size, if that is smaller).
pub const MIN_BUFFER: usize = 4096;

/// A per-worker free list of byte buffers in sizes that double from
/// [`MIN_BUFFER`] up to the buffer size, under a limit in bytes.
///
/// Nothing is allocated up front: [`take`](Self::take) allocates a new buffer
/// only when there is no free one of the size and the limit allows it.
pub struct BufferPool {
    /// Free buffers by size class: class `i` holds buffers of
    /// `class_size(i)` bytes.
    free: Vec<Vec<Box<[u8]>>>,
    /// The largest buffer (the configured buffer size). In `1..=u32::MAX`.
    buffer_size: usize,
    /// The smallest buffer: `min(MIN_BUFFER, buffer_size)`.
    min_size: usize,
    /// The most bytes lent at once; also what is kept allocated (lent plus
    /// free), give or take the buffer a growing ring is about to give back.
    max_bytes: usize,
    /// Bytes lent by `take` and not yet given back; `<= max_bytes` except
    /// for the moment a ring grows (old and new storage both lent).
    in_use: usize,
    /// Bytes in the free lists.
    free_bytes: usize,
    /// Requests refused for want of room, ever.
    refused: u64,
}

impl BufferPool {
    /// A pool of buffers of up to `buffer_size` bytes, lending at most
    /// `max_buffers * buffer_size` bytes at once. Allocates nothing.
    ///
    /// # Panics
    /// If `buffer_size` is 0 or does not fit in a `u32` (ring offsets are
    /// 32-bit).
    pub fn new(buffer_size: usize, max_buffers: usize) -> Self {
        assert!(buffer_size > 0, "buffer size must be positive");
        assert!(
            u32::try_from(buffer_size).is_ok(),
            "buffer size {buffer_size} does not fit in u32"
        );
        let min_size = MIN_BUFFER.min(buffer_size);
        let mut classes = 1;
        while (min_size << (classes - 1)) < buffer_size {
            classes += 1;
        }
        BufferPool {
            free: (0..classes).map(|_| Vec::new()).collect(),
            buffer_size,
            min_size,
            max_bytes: max_buffers.saturating_mul(buffer_size),
            in_use: 0,
            free_bytes: 0,
            refused: 0,
        }
    }

    /// The largest buffer of this pool (the configured buffer size).
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// The smallest buffer of this pool.
    pub fn min_size(&self) -> usize {
        self.min_size
    }

    /// The size of class `i`.
    fn class_size(&self, i: usize) -> usize {
        (self.min_size << i).min(self.buffer_size)
    }

    /// The smallest class holding `len` bytes (`len` is clipped to the
    /// buffer size).
    fn class_for(&self, len: usize) -> usize {
        let mut i = 0;
        while self.class_size(i) < len && i + 1 < self.free.len() {
            i += 1;
        }
        i
    }

    /// The size [`take`](Self::take) lends for a request of `len` bytes:
    /// the smallest size of the pool that holds them (at most the buffer
    /// size).
    pub fn size_for(&self, len: usize) -> usize {
        self.class_size(self.class_for(len))
    }

    /// Lends a buffer of at least `len` bytes (at most the buffer size): a
    /// free one if there is one, else a newly allocated one. `None` (and
    /// counted as refused) when it would take the bytes lent past the limit.
    pub fn take(&mut self, len: usize) -> Option<Box<[u8]>> {
        self.take_replacing(len, 0)
    }

    /// As [`take`](Self::take), for a ring that gives back `old` bytes once
    /// it has copied them: the limit is checked as if they were back.
    fn take_replacing(&mut self, len: usize, old: usize) -> Option<Box<[u8]>> {
        let class = self.class_for(len);
        let size = self.class_size(class);
        if self.in_use - old + size > self.max_bytes {
            self.refused += 1;
            return None;
        }
        let storage = match self.free[class].pop() {
            Some(storage) => {
                self.free_bytes -= size;
                storage
            }
            None => {
                // Keep what is allocated within the limit: release free
                // buffers of other sizes, the largest first.
                let mut i = self.free.len();
                while self.in_use + self.free_bytes + size > self.max_bytes && i > 0 {
                    match self.free[i - 1].pop() {
                        Some(b) => self.free_bytes -= b.len(),
                        None => i -= 1,
                    }
                }
                vec![0u8; size].into_boxed_slice()
            }
        };
        self.in_use += size;
        Some(storage)
    }

    /// Takes back a buffer lent by [`take`](Self::take).
    ///
    /// Debug builds assert that it has one of this pool's sizes and that
    /// that many bytes are out.
    pub fn give(&mut self, storage: Box<[u8]>) {
        let size = storage.len();
        let class = self.class_for(size);
        debug_assert_eq!(size, self.class_size(class), "buffer of another pool");
        debug_assert!(self.in_use >= size, "more given back than taken");
        self.in_use = self.in_use.saturating_sub(size);
        self.free_bytes += size;
        self.free[class].push(storage);
    }

    /// Bytes lent and not yet given back.
    pub fn in_use_bytes(&self) -> usize {
        self.in_use
    }

    /// The most bytes lent at once (`max_buffers * buffer_size`).
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Bytes this pool allocated and still accounts for: free plus lent.
    /// (A buffer dropped by its borrower instead of given back stays counted.)
    pub fn allocated_bytes(&self) -> usize {
        self.free_bytes + self.in_use
    }

    /// Whether a request for the smallest buffer would be granted now.
    pub fn has_room(&self) -> bool {
        self.in_use + self.min_size <= self.max_bytes
    }

    /// Requests refused for want of room since the pool was made (a ring
    /// that could not get or grow its storage).
    pub fn refused(&self) -> u64 {
        self.refused
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("buffer_size", &self.buffer_size)
            .field("max_bytes", &self.max_bytes)
            .field("in_use", &self.in_use)
            .field("free_bytes", &self.free_bytes)
            .field("refused", &self.refused)
            .finish()
    }
}

/// A ring of bytes: `len` bytes starting at `head` in optional storage,
/// wrapping at its end.
///
/// Without storage the ring has capacity 0: it holds nothing and accepts
/// nothing. `size_of::<RingBuffer>()` is 24 bytes.
///
/// Dropping a ring that has storage frees the storage instead of returning it
/// to its pool; call [`release`](Self::release) first.
pub struct RingBuffer {
    /// The bytes, lent by a [`BufferPool`]; `None` while the ring holds
    /// nothing. Its length fits in a `u32`.
    storage: Option<Box<[u8]>>,
    /// Index of the first byte. `head < capacity`, or 0 when there is no
    /// storage.
    head: u32,
    /// Number of bytes held. `len <= capacity`, and 0 without storage.
    len: u32,
}

impl RingBuffer {
    /// An empty ring without storage.
    pub const fn new() -> Self {
        RingBuffer {
            storage: None,
            head: 0,
            len: 0,
        }
    }

    /// Whether the ring holds storage from a pool.
    pub fn has_storage(&self) -> bool {
        self.storage.is_some()
    }

    /// The storage's length, or 0 without storage.
    pub fn capacity(&self) -> usize {
        self.storage.as_ref().map_or(0, |s| s.len())
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the ring holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that can still be enqueued: `capacity - len`.
    pub fn free(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Takes storage (of the pool's smallest size) from `pool` if the ring
    /// has none. Returns whether the ring has storage afterwards (false: the
    /// pool is exhausted).
    pub fn ensure_storage(&mut self, pool: &mut BufferPool) -> bool {
        if self.storage.is_none() {
            self.storage = pool.take(pool.min_size());
            self.head = 0;
            self.len = 0;
        }
        self.storage.is_some()
    }

    /// Makes the capacity at least `want` bytes (clipped to the pool's
    /// buffer size), taking storage or moving to a larger buffer (the
    /// smallest of the pool's sizes that holds `want`: at least double).
    /// Every byte of the old storage is kept, out-of-order bytes past the
    /// length included. Returns whether the capacity is now enough; when the
    /// pool refuses, the ring keeps what it had.
    pub fn reserve(&mut self, want: usize, pool: &mut BufferPool) -> bool {
        let want = want.min(pool.buffer_size());
        let capacity = self.capacity();
        if capacity >= want {
            return self.storage.is_some() || want == 0;
        }
        let Some(old) = self.storage.take() else {
            self.storage = pool.take(want);
            self.head = 0;
            self.len = 0;
            return self.storage.is_some();
        };
        let Some(mut grown) = pool.take_replacing(want.max(2 * capacity), capacity) else {
            self.storage = Some(old);
            return false;
        };
        // Unwrap the ring into the new storage: head at 0.
        let head = self.head as usize;
        grown[..capacity - head].copy_from_slice(&old[head..]);
        grown[capacity - head..capacity].copy_from_slice(&old[..head]);
        pool.give(old);
        self.storage = Some(grown);
        self.head = 0;
        true
    }

    /// Gives the storage back to `pool` if the ring holds no bytes.
    ///
    /// Bytes written past the length with
    /// [`write_unallocated`](Self::write_unallocated) are lost with it: the
    /// receive side must release only when its assembler is empty too.
    pub fn release_if_empty(&mut self, pool: &mut BufferPool) {
        if self.len == 0 {
            self.release(pool);
        }
    }

    /// Gives the storage back to `pool` whatever it holds; the ring becomes
    /// empty, without storage.
    pub fn release(&mut self, pool: &mut BufferPool) {
        if let Some(storage) = self.storage.take() {
            pool.give(storage);
        }
        self.head = 0;
        self.len = 0;
    }

    /// Index in storage of the byte `offset` bytes after the head. `capacity`
    /// must be positive and `offset <= capacity`.
    #[inline]
    fn index(&self, offset: usize, capacity: usize) -> usize {
        let i = self.head as usize + offset;
        if i >= capacity {
            i - capacity
        } else {
            i
        }
    }

    /// Copies `data` into storage starting `offset` bytes after the head,
    /// wrapping. The caller checked that `offset + data.len() <= capacity`.
    fn write_at(&mut self, offset: usize, data: &[u8]) {
        let Some(capacity) = self.storage.as_ref().map(|s| s.len()) else {
            return;
        };
        if data.is_empty() {
            return;
        }
        let start = self.index(offset, capacity);
        let storage = self.storage.as_mut().expect("checked above");
        let first = data.len().min(capacity - start);
        storage[start..start + first].copy_from_slice(&data[..first]);
        storage[..data.len() - first].copy_from_slice(&data[first..]);
    }

    /// Appends as much of `data` as fits; returns the bytes appended.
    pub fn enqueue_slice(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        self.write_at(self.len(), &data[..n]);
        self.len += n as u32;
        n
    }

    /// Writes `data` at `len + offset` without changing the length (for
    /// out-of-order receive). Writes only what fits in the capacity, and
    /// nothing if `len + offset` is at or past it; returns the bytes written.
    pub fn write_unallocated(&mut self, offset: usize, data: &[u8]) -> usize {
        let start = self.len().saturating_add(offset);
        let capacity = self.capacity();
        if start >= capacity {
            return 0;
        }
        let n = data.len().min(capacity - start);
        self.write_at(start, &data[..n]);
        n
    }

    /// Extends the length by `count` bytes, which must already have been
    /// written with [`write_unallocated`](Self::write_unallocated).
    ///
    /// # Panics
    /// If `len + count` exceeds the capacity.
    pub fn enqueue_unallocated(&mut self, count: usize) {
        assert!(
            count <= self.free(),
            "enqueue_unallocated({count}) with only {} free",
            self.free()
        );
        self.len += count as u32;
    }

    /// Drops up to `count` bytes from the front; returns the bytes dropped.
    ///
    /// The head is not reset when the ring empties, since out-of-order bytes
    /// may lie past it; [`release_if_empty`](Self::release_if_empty) resets it.
    pub fn dequeue_allocated(&mut self, count: usize) -> usize {
        let n = count.min(self.len());
        if n > 0 {
            let capacity = self.capacity();
            self.head = self.index(n, capacity) as u32;
            self.len -= n as u32;
        }
        n
    }

    /// Up to `len` bytes starting `offset` bytes after the front, as two
    /// slices (the second non-empty only when the range wraps), clipped to
    /// the bytes held.
    pub fn get_allocated(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let Some(storage) = self.storage.as_deref() else {
            return (&[], &[]);
        };
        if offset >= self.len() {
            return (&[], &[]);
        }
        let n = len.min(self.len() - offset);
        let capacity = storage.len();
        let start = self.index(offset, capacity);
        let first = n.min(capacity - start);
        (&storage[start..start + first], &storage[..n - first])
    }

    /// Copies bytes from the front into `dst` and drops them; returns the
    /// bytes copied (at most `dst.len()` and `len`).
    pub fn dequeue_slice(&mut self, dst: &mut [u8]) -> usize {
        let (a, b) = self.get_allocated(0, dst.len());
        let (na, nb) = (a.len(), b.len());
        dst[..na].copy_from_slice(a);
        dst[na..na + nb].copy_from_slice(b);
        self.dequeue_allocated(na + nb)
    }
}

impl Default for RingBuffer {
    fn default() -> Self {
        RingBuffer::new()
    }
}

impl fmt::Debug for RingBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuffer")
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn ring_is_small() {
        assert!(core::mem::size_of::<RingBuffer>() <= 24);
    }

    #[test]
    fn pool_allocates_lazily_and_reuses() {
        let mut pool = BufferPool::new(16, 2);
        assert_eq!((pool.in_use_bytes(), pool.allocated_bytes()), (0, 0));
        let a = pool.take(16).unwrap();
        let b = pool.take(1).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(
            b.len(),
            16,
            "a buffer size below MIN_BUFFER is the only size"
        );
        assert!(pool.take(1).is_none());
        assert_eq!(pool.refused(), 1);
        assert_eq!((pool.in_use_bytes(), pool.allocated_bytes()), (32, 32));
        pool.give(a);
        assert_eq!((pool.in_use_bytes(), pool.allocated_bytes()), (16, 32));
        let c = pool.take(16).unwrap();
        assert_eq!(
            (pool.in_use_bytes(), pool.allocated_bytes()),
            (32, 32),
            "reused, not allocated"
        );
        pool.give(b);
        pool.give(c);
        assert_eq!((pool.in_use_bytes(), pool.allocated_bytes()), (0, 32));
    }

    #[test]
    fn pool_sizes_double_and_the_limit_counts_bytes() {
        // 2 buffers of 64 KiB: 32 connections of 4 KiB fit.
        let mut pool = BufferPool::new(64 * 1024, 2);
        assert_eq!(pool.min_size(), MIN_BUFFER);
        assert_eq!(pool.size_for(1), 4096);
        assert_eq!(pool.size_for(4097), 8192);
        assert_eq!(pool.size_for(40_000), 65536);
        assert_eq!(pool.size_for(1 << 30), 65536, "clipped to the buffer size");
        let small: Vec<_> = (0..32).map(|_| pool.take(1).unwrap()).collect();
        assert!(small.iter().all(|b| b.len() == 4096));
        assert_eq!(pool.in_use_bytes(), pool.max_bytes());
        assert!(!pool.has_room());
        assert!(pool.take(1).is_none());
        for b in small {
            pool.give(b);
        }
        // A full-size buffer now: free small ones are released to stay
        // within the limit.
        let big = pool.take(65536).unwrap();
        let big2 = pool.take(65536).unwrap();
        assert_eq!(pool.allocated_bytes(), 2 * 65536);
        pool.give(big);
        pool.give(big2);
        // A buffer size that is not a power of two: the last size is it.
        let pool = BufferPool::new(100_000, 1);
        assert_eq!(pool.size_for(70_000), 100_000);
        assert_eq!(pool.size_for(60_000), 65536);
    }

    #[test]
    fn reserve_grows_by_doubling_and_keeps_every_byte() {
        let mut pool = BufferPool::new(64 * 1024, 1);
        let mut ring = RingBuffer::new();
        assert!(ring.reserve(10, &mut pool));
        assert_eq!(ring.capacity(), 4096);
        // Wrap the ring, with out-of-order bytes past its length.
        let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        assert_eq!(ring.enqueue_slice(&data), 4000);
        assert_eq!(ring.dequeue_allocated(3000), 3000);
        assert_eq!(ring.enqueue_slice(&data[..2000]), 2000); // wraps
        assert_eq!(ring.write_unallocated(10, b"ooo"), 3);
        assert!(ring.reserve(4097, &mut pool));
        assert_eq!(ring.capacity(), 8192);
        assert_eq!(pool.in_use_bytes(), 8192, "the old storage went back");
        let (a, b) = ring.get_allocated(0, usize::MAX);
        let all: Vec<u8> = a.iter().chain(b).copied().collect();
        let mut expect = data[3000..].to_vec();
        expect.extend_from_slice(&data[..2000]);
        assert_eq!(all, expect);
        ring.enqueue_unallocated(13);
        let (a, b) = ring.get_allocated(3010, 3);
        assert_eq!((a, b), (&b"ooo"[..], &b""[..]));
        // At most the buffer size; past it, reserve says no but keeps it.
        assert!(ring.reserve(1 << 20, &mut pool));
        assert_eq!(ring.capacity(), 65536);
        let mut other = RingBuffer::new();
        assert!(!other.reserve(1, &mut pool), "the limit is reached");
        assert!(!other.has_storage());
        ring.release(&mut pool);
        assert!(other.reserve(9000, &mut pool));
        assert_eq!(other.capacity(), 16384);
        assert!(!other.reserve(65536, &mut pool) || pool.in_use_bytes() == 65536);
        other.release(&mut pool);
        assert_eq!(pool.in_use_bytes(), 0);
    }

    #[test]
    fn reserve_refused_keeps_the_old_storage() {
        let mut pool = BufferPool::new(16 * 1024, 1);
        let mut a = RingBuffer::new();
        let mut b = RingBuffer::new();
        assert!(a.reserve(1, &mut pool));
        assert!(b.reserve(8192, &mut pool));
        a.enqueue_slice(b"keep");
        // 4 KiB + 8 KiB lent of 16 KiB: growing `a` to 8 KiB fits (its
        // 4 KiB go back), to 16 KiB does not.
        assert!(!a.reserve(16 * 1024, &mut pool));
        assert_eq!(a.capacity(), 4096);
        assert_eq!(a.get_allocated(0, 4), (&b"keep"[..], &b""[..]));
        assert!(a.reserve(5000, &mut pool));
        assert_eq!(a.capacity(), 8192);
        assert_eq!(pool.in_use_bytes(), 16 * 1024);
        a.release(&mut pool);
        b.release(&mut pool);
    }

    #[test]
    fn ring_without_storage_holds_nothing() {
        let mut ring = RingBuffer::new();
        assert!(!ring.has_storage());
        assert_eq!(ring.capacity(), 0);
        assert_eq!(ring.free(), 0);
        assert_eq!(ring.enqueue_slice(b"abc"), 0);
        assert_eq!(ring.write_unallocated(0, b"abc"), 0);
        assert_eq!(ring.get_allocated(0, 10), (&[][..], &[][..]));
        assert_eq!(ring.dequeue_slice(&mut [0; 4]), 0);
        ring.enqueue_unallocated(0);
    }

    #[test]
    fn storage_comes_and_goes() {
        let mut pool = BufferPool::new(8, 1);
        let mut ring = RingBuffer::new();
        let mut other = RingBuffer::new();
        assert!(ring.ensure_storage(&mut pool));
        assert!(ring.ensure_storage(&mut pool), "idempotent");
        assert_eq!(pool.in_use_bytes(), 8);
        assert!(!other.ensure_storage(&mut pool), "pool exhausted");
        assert_eq!(ring.enqueue_slice(b"0123456789"), 8);
        ring.release_if_empty(&mut pool);
        assert!(ring.has_storage(), "not empty: kept");
        assert_eq!(ring.dequeue_allocated(5), 5);
        assert_eq!(ring.enqueue_slice(b"abc"), 3);
        assert_eq!(ring.get_allocated(0, 100), (&b"567"[..], &b"abc"[..]));
        let mut out = [0u8; 16];
        assert_eq!(ring.dequeue_slice(&mut out), 6);
        assert_eq!(&out[..6], b"567abc");
        ring.release_if_empty(&mut pool);
        assert!(!ring.has_storage());
        assert_eq!((pool.in_use_bytes(), pool.allocated_bytes()), (0, 8));
        assert!(other.ensure_storage(&mut pool));
        other.enqueue_slice(b"x");
        other.release(&mut pool);
        assert!(!other.has_storage());
        assert!(other.is_empty());
        assert_eq!(pool.in_use_bytes(), 0);
    }

    #[test]
    fn unallocated_writes_wrap_and_clip() {
        let mut pool = BufferPool::new(8, 1);
        let mut ring = RingBuffer::new();
        ring.ensure_storage(&mut pool);
        ring.enqueue_slice(b"012345");
        ring.dequeue_allocated(5); // head 5, len 1
        assert_eq!(ring.write_unallocated(2, b"abcdefgh"), 5); // len+2 = 3, room for 5
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.write_unallocated(0, b"XY"), 2);
        ring.enqueue_unallocated(7);
        assert_eq!(ring.len(), 8);
        assert_eq!(ring.get_allocated(0, 8), (&b"5XY"[..], &b"abcde"[..]));
        assert_eq!(ring.get_allocated(4, 2), (&b"bc"[..], &b""[..]));
        assert_eq!(ring.write_unallocated(0, b"z"), 0, "full");
        assert_eq!(ring.get_allocated(8, 1), (&b""[..], &b""[..]));
    }

    #[test]
    #[should_panic(expected = "enqueue_unallocated")]
    fn enqueue_unallocated_past_capacity_panics() {
        let mut pool = BufferPool::new(4, 1);
        let mut ring = RingBuffer::new();
        ring.ensure_storage(&mut pool);
        ring.enqueue_unallocated(5);
    }

    /// One step of the ring model test.
    #[derive(Debug, Clone)]
    enum Op {
        Enqueue(Vec<u8>),
        Dequeue(usize),
        DequeueSlice(usize),
        Get(usize, usize),
        /// write_unallocated at offset, then enqueue_unallocated of all
        /// written bytes if `commit`.
        Unallocated(usize, Vec<u8>, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            bytes.clone().prop_map(Op::Enqueue),
            (0usize..40).prop_map(Op::Dequeue),
            (0usize..40).prop_map(Op::DequeueSlice),
            (0usize..40, 0usize..40).prop_map(|(o, l)| Op::Get(o, l)),
            (0usize..12, bytes, any::<bool>()).prop_map(|(o, b, c)| Op::Unallocated(o, b, c)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// The ring behaves as a bounded VecDeque.
        #[test]
        fn ring_matches_vecdeque(capacity in 1usize..33, ops in proptest::collection::vec(op(), 0..60)) {
            let mut pool = BufferPool::new(capacity, 1);
            let mut ring = RingBuffer::new();
            prop_assert!(ring.ensure_storage(&mut pool));
            let mut model: VecDeque<u8> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Enqueue(data) => {
                        let n = ring.enqueue_slice(&data);
                        let expected = data.len().min(capacity - model.len());
                        prop_assert_eq!(n, expected);
                        model.extend(&data[..n]);
                    }
                    Op::Dequeue(count) => {
                        let n = ring.dequeue_allocated(count);
                        prop_assert_eq!(n, count.min(model.len()));
                        model.drain(..n);
                    }
                    Op::DequeueSlice(size) => {
                        let mut dst = vec![0u8; size];
                        let n = ring.dequeue_slice(&mut dst);
                        let expected: Vec<u8> = model.drain(..size.min(model.len())).collect();
                        prop_assert_eq!(&dst[..n], &expected[..]);
                    }
                    Op::Get(offset, len) => {
                        let (a, b) = ring.get_allocated(offset, len);
                        let got: Vec<u8> = a.iter().chain(b).copied().collect();
                        let expected: Vec<u8> = model.iter().skip(offset).take(len).copied().collect();
                        prop_assert_eq!(got, expected);
                    }
                    Op::Unallocated(offset, data, commit) => {
                        let n = ring.write_unallocated(offset, &data);
                        let room = capacity.saturating_sub(model.len() + offset);
                        prop_assert_eq!(n, data.len().min(room));
                        if commit && n > 0 {
                            // Fill the gap before the written bytes, then commit both.
                            let gap: Vec<u8> = (0..offset).map(|i| i as u8).collect();
                            prop_assert_eq!(ring.write_unallocated(0, &gap), offset);
                            ring.enqueue_unallocated(offset + n);
                            model.extend(&gap);
                            model.extend(&data[..n]);
                        }
                    }
                }
                prop_assert_eq!(ring.len(), model.len());
                prop_assert_eq!(ring.free(), capacity - model.len());
                let (a, b) = ring.get_allocated(0, usize::MAX);
                let all: Vec<u8> = a.iter().chain(b).copied().collect();
                prop_assert_eq!(all, model.iter().copied().collect::<Vec<u8>>());
            }
            ring.release(&mut pool);
            prop_assert_eq!(pool.in_use_bytes(), 0);
        }

        /// A ring that grows (reserve before each write, as the connection
        /// does) behaves as an unbounded VecDeque up to the buffer size, its
        /// out-of-order bytes kept across each move; the pool gets every
        /// byte back.
        #[test]
        fn growing_ring_matches_vecdeque(
            ops in proptest::collection::vec(
                (0u8..3, 0usize..6000, 0usize..3000, any::<u8>()), 0..40),
        ) {
            let size = 32 * 1024;
            let mut pool = BufferPool::new(size, 1);
            let mut ring = RingBuffer::new();
            let mut model: VecDeque<u8> = VecDeque::new();
            for (kind, len, offset, byte) in ops {
                match kind {
                    0 => {
                        let data = vec![byte; len];
                        ring.reserve(ring.len() + len, &mut pool);
                        let n = ring.enqueue_slice(&data);
                        prop_assert_eq!(n, len.min(size - model.len()));
                        model.extend(&data[..n]);
                    }
                    1 => {
                        let n = ring.dequeue_allocated(len);
                        model.drain(..n);
                    }
                    _ => {
                        // Out of order at `offset`, then the gap, then commit.
                        let data = vec![byte; len.min(500)];
                        ring.reserve(ring.len() + offset + data.len(), &mut pool);
                        let n = ring.write_unallocated(offset, &data);
                        if n == data.len() && n > 0 {
                            // Grow again with the bytes past the length held.
                            ring.reserve(2 * ring.capacity(), &mut pool);
                            let gap = vec![byte.wrapping_add(1); offset];
                            prop_assert_eq!(ring.write_unallocated(0, &gap), offset);
                            ring.enqueue_unallocated(offset + n);
                            model.extend(&gap);
                            model.extend(&data);
                        }
                    }
                }
                prop_assert!(ring.capacity() <= size);
                prop_assert!(ring.capacity() >= model.len());
                let (a, b) = ring.get_allocated(0, usize::MAX);
                let all: Vec<u8> = a.iter().chain(b).copied().collect();
                prop_assert_eq!(all, model.iter().copied().collect::<Vec<u8>>());
                prop_assert_eq!(pool.in_use_bytes(), ring.capacity());
            }
            ring.release(&mut pool);
            prop_assert_eq!(pool.in_use_bytes(), 0);
            prop_assert!(pool.allocated_bytes() <= size + size / 2);
        }

        /// Pool accounting: never more than max out, allocated never exceeds
        /// the peak in use.
        #[test]
        fn pool_accounting(max in 0usize..6, takes in proptest::collection::vec(any::<bool>(), 0..40)) {
            let mut pool = BufferPool::new(4, max);
            let mut out = Vec::new();
            let mut peak = 0;
            for take in takes {
                if take {
                    match pool.take(4) {
                        Some(b) => out.push(b),
                        None => prop_assert_eq!(out.len(), max),
                    }
                } else if let Some(b) = out.pop() {
                    pool.give(b);
                }
                peak = peak.max(out.len());
                prop_assert_eq!(pool.in_use_bytes(), 4 * out.len());
                prop_assert_eq!(pool.allocated_bytes(), 4 * peak);
            }
        }
    }
}
