//! A heap-backed packet buffer for the backends without DPDK (AF_PACKET, the
//! in-memory link, the exception port). DPDK has its own, [`crate::dpdk::Mbuf`].
//!
//! An AF_PACKET RX queue lends its ring frames instead of copying them: such a
//! buffer holds a `RingFrame` (the frame in place, handed back to the kernel
//! when the buffer is dropped) rather than heap bytes. It behaves the same,
//! with the room the ring frame has; cloning one copies it to the heap.
//!
//! Buffers of the standard size are recycled through a small per-thread cache
//! instead of going back to the allocator: a worker frees and takes one per
//! packet, and `calloc`, `memset` and `free` of 2 KiB each time cost about 4%
//! of an AF_PACKET worker's core at 500k frames/s. A recycled buffer is not
//! zeroed; instead the bytes past a frame's length are never shown: growing a
//! frame with [`PacketBuf::set_len`] zero-fills the new part, so no byte of an
//! earlier packet can reach the wire or a reader.

use std::cell::RefCell;

use super::af_packet::RingFrame;
use super::{PacketBuf, RxChecksum};

/// Room of every heap buffer: a standard 1500-byte-MTU frame plus slack, or a
/// GRO-merged frame from a kernel interface up to 64 KiB.
pub const HEAP_BUF_ROOM: usize = 2048;

/// Standard-size buffers each thread keeps for reuse (2 MiB).
const SPARE_BUFFERS: usize = 1024;

/// Jumbo-frame buffers (more room than [`HEAP_BUF_ROOM`], at most
/// [`MAX_SPARE_JUMBO_ROOM`]) each thread keeps for reuse, all of one room:
/// an AF_PACKET queue on an interface with a jumbo MTU takes one per frame it
/// sends (2.3 MiB at a 9000-byte MTU).
const SPARE_JUMBO_BUFFERS: usize = 256;

/// The largest buffer the jumbo spares keep (a 9000-byte MTU needs 9022).
const MAX_SPARE_JUMBO_ROOM: usize = 16 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static SPARE_JUMBO: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Whether buffers of `room` go to the jumbo spares.
fn jumbo_spare_room(room: usize) -> bool {
    room > HEAP_BUF_ROOM && room <= MAX_SPARE_JUMBO_ROOM
}

/// An owned frame on the heap, or a ring frame lent by an AF_PACKET queue.
/// Two buffers are equal when their frames and checksum verdicts are (the
/// bytes past the frame do not count).
#[derive(Debug)]
pub struct HeapBuf {
    bytes: Storage,
    len: usize,
    /// The receiver's verdict on the L4 checksum (AF_PACKET reports partial
    /// checksums from local senders).
    pub l4_checksum: RxChecksum,
}

/// Where a [`HeapBuf`]'s bytes are.
#[derive(Debug)]
enum Storage {
    Heap(Vec<u8>),
    Ring(RingFrame),
}

impl Storage {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Heap(v) => v,
            Storage::Ring(f) => f.bytes(),
        }
    }

    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Storage::Heap(v) => v,
            Storage::Ring(f) => f.bytes_mut(),
        }
    }
}

impl Clone for HeapBuf {
    /// A copy on the heap (a lent ring frame is not duplicated).
    fn clone(&self) -> Self {
        match &self.bytes {
            Storage::Heap(v) => HeapBuf {
                bytes: Storage::Heap(v.clone()),
                len: self.len,
                l4_checksum: self.l4_checksum,
            },
            Storage::Ring(_) => {
                // A standard-size buffer (from the spares), with the frame only.
                let mut copy = HeapBuf::from_slice(self.data());
                copy.l4_checksum = self.l4_checksum;
                copy
            }
        }
    }
}

impl HeapBuf {
    /// An empty buffer with room for `room` bytes.
    pub fn with_room(room: usize) -> Self {
        let bytes = if room == HEAP_BUF_ROOM {
            SPARE
                .with(|spare| spare.borrow_mut().pop())
                .unwrap_or_else(|| vec![0; room])
        } else if jumbo_spare_room(room) {
            SPARE_JUMBO
                .with(|spare| {
                    // All spares have one room (the first dropped into an
                    // empty cache): other rooms come from the allocator.
                    let mut spare = spare.borrow_mut();
                    if spare.last().is_some_and(|b| b.len() == room) {
                        spare.pop()
                    } else {
                        None
                    }
                })
                .unwrap_or_else(|| vec![0; room])
        } else {
            vec![0; room]
        };
        HeapBuf {
            bytes: Storage::Heap(bytes),
            len: 0,
            l4_checksum: RxChecksum::Unknown,
        }
    }

    /// A buffer over a lent ring frame holding a frame of `len` bytes.
    pub(crate) fn lent(frame: RingFrame, len: usize, l4_checksum: RxChecksum) -> Self {
        debug_assert!(len <= frame.bytes().len());
        HeapBuf {
            bytes: Storage::Ring(frame),
            len,
            l4_checksum,
        }
    }

    /// Whether the bytes are a lent ring frame (not on the heap).
    pub fn is_lent(&self) -> bool {
        matches!(self.bytes, Storage::Ring(_))
    }

    /// A buffer holding a copy of `frame`, with at least [`HEAP_BUF_ROOM`] of room.
    pub fn from_slice(frame: &[u8]) -> Self {
        let mut buf = HeapBuf::with_room(frame.len().max(HEAP_BUF_ROOM));
        buf.bytes.bytes_mut()[..frame.len()].copy_from_slice(frame);
        buf.len = frame.len();
        buf
    }
}

impl PartialEq for HeapBuf {
    fn eq(&self, other: &Self) -> bool {
        self.data() == other.data() && self.l4_checksum == other.l4_checksum
    }
}

impl Eq for HeapBuf {}

impl Drop for HeapBuf {
    /// A standard-size or jumbo heap buffer goes to this thread's spares; a
    /// lent ring frame goes back to the kernel (`RingFrame`'s own drop).
    fn drop(&mut self) {
        let Storage::Heap(bytes) = &mut self.bytes else {
            return;
        };
        if jumbo_spare_room(bytes.len()) {
            let bytes = std::mem::take(bytes);
            let _ = SPARE_JUMBO.try_with(|spare| {
                let mut spare = spare.borrow_mut();
                let same_room = spare.last().is_none_or(|b| b.len() == bytes.len());
                if same_room && spare.len() < SPARE_JUMBO_BUFFERS {
                    spare.push(bytes);
                }
            });
            return;
        }
        if bytes.len() != HEAP_BUF_ROOM {
            return;
        }
        let bytes = std::mem::take(bytes);
        // During thread teardown the cache may be gone: then just free.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_BUFFERS {
                spare.push(bytes);
            }
        });
    }
}

impl PacketBuf for HeapBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.bytes.bytes()[..self.len]
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes.bytes_mut()[..self.len]
    }

    fn set_len(&mut self, len: usize) -> bool {
        let bytes = self.bytes.bytes_mut();
        if len > bytes.len() {
            return false;
        }
        if len > self.len {
            // Never show what an earlier frame left in a recycled buffer.
            bytes[self.len..len].fill(0);
        }
        self.len = len;
        true
    }

    fn capacity(&self) -> usize {
        self.bytes.bytes().len()
    }

    fn rx_l4_checksum(&self) -> RxChecksum {
        self.l4_checksum
    }

    fn detach(self) -> Self {
        if self.is_lent() {
            self.clone()
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_len_within_room_only() {
        let mut buf = HeapBuf::from_slice(&[1, 2, 3]);
        assert_eq!(buf.data(), &[1, 2, 3]);
        assert!(buf.set_len(2));
        assert_eq!(buf.data(), &[1, 2]);
        assert!(buf.set_len(HEAP_BUF_ROOM));
        assert!(!buf.set_len(HEAP_BUF_ROOM + 1));
        assert_eq!(buf.len(), HEAP_BUF_ROOM);
    }

    #[test]
    fn a_recycled_buffer_shows_nothing_of_its_last_frame() {
        let secret = [0xa5u8; HEAP_BUF_ROOM];
        let buf = HeapBuf::from_slice(&secret);
        drop(buf);
        // The next buffer of this thread is the same storage, length 0; grown,
        // it reads zeros.
        let mut buf = HeapBuf::with_room(HEAP_BUF_ROOM);
        assert!(buf.is_empty());
        assert!(buf.set_len(HEAP_BUF_ROOM));
        assert!(buf.data().iter().all(|&b| b == 0));
        // Shrinking and growing again zero-fills what was cut off.
        buf.data_mut()[..10].copy_from_slice(&secret[..10]);
        assert!(buf.set_len(4));
        assert!(buf.set_len(10));
        assert_eq!(buf.data(), &[0xa5, 0xa5, 0xa5, 0xa5, 0, 0, 0, 0, 0, 0]);
        let big = HeapBuf::from_slice(&[7; 4000]);
        assert_eq!(big.capacity(), 4000, "other sizes come from the allocator");
    }

    #[test]
    fn jumbo_buffers_are_recycled_per_room_and_show_nothing_old() {
        let room = 9022;
        let mut buf = HeapBuf::with_room(room);
        assert!(buf.set_len(room));
        buf.data_mut().fill(0xa5);
        let at = buf.data().as_ptr();
        drop(buf);
        let mut again = HeapBuf::with_room(room);
        assert_eq!(again.data().as_ptr().cast::<u8>(), at, "recycled");
        assert!(again.is_empty());
        assert!(again.set_len(room));
        assert!(again.data().iter().all(|&b| b == 0));
        // Another room is not served from these spares.
        let other = HeapBuf::with_room(5000);
        assert_eq!(other.capacity(), 5000);
        drop(other);
        drop(again);
        assert_eq!(HeapBuf::with_room(room).capacity(), room);
    }
}
