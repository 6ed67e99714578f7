//! A heap-backed packet buffer for the backends that copy frames (AF_PACKET, the
//! in-memory link). DPDK has its own, [`crate::dpdk::Mbuf`].
//!
//! Buffers of the standard size are recycled through a small per-thread cache
//! instead of going back to the allocator: a worker frees and takes one per
//! packet, and `calloc`, `memset` and `free` of 2 KiB each time cost about 4%
//! of an AF_PACKET worker's core at 500k frames/s. A recycled buffer is not
//! zeroed; instead the bytes past a frame's length are never shown: growing a
//! frame with [`PacketBuf::set_len`] zero-fills the new part, so no byte of an
//! earlier packet can reach the wire or a reader.

use std::cell::RefCell;

use super::{PacketBuf, RxChecksum};

/// Room of every heap buffer: a standard 1500-byte-MTU frame plus slack, or a
/// GRO-merged frame from a kernel interface up to 64 KiB.
pub const HEAP_BUF_ROOM: usize = 2048;

/// Standard-size buffers each thread keeps for reuse (2 MiB).
const SPARE_BUFFERS: usize = 1024;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An owned frame on the heap. Two buffers are equal when their frames and
/// checksum verdicts are (the bytes past the frame do not count).
#[derive(Clone, Debug)]
pub struct HeapBuf {
    bytes: Vec<u8>,
    len: usize,
    /// The receiver's verdict on the L4 checksum (AF_PACKET reports partial
    /// checksums from local senders).
    pub l4_checksum: RxChecksum,
}

impl HeapBuf {
    /// An empty buffer with room for `room` bytes.
    pub fn with_room(room: usize) -> Self {
        let bytes = if room == HEAP_BUF_ROOM {
            SPARE
                .with(|spare| spare.borrow_mut().pop())
                .unwrap_or_else(|| vec![0; room])
        } else {
            vec![0; room]
        };
        HeapBuf {
            bytes,
            len: 0,
            l4_checksum: RxChecksum::Unknown,
        }
    }

    /// A buffer holding a copy of `frame`, with at least [`HEAP_BUF_ROOM`] of room.
    pub fn from_slice(frame: &[u8]) -> Self {
        let mut buf = HeapBuf::with_room(frame.len().max(HEAP_BUF_ROOM));
        buf.bytes[..frame.len()].copy_from_slice(frame);
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
    fn drop(&mut self) {
        if self.bytes.len() != HEAP_BUF_ROOM {
            return;
        }
        let bytes = std::mem::take(&mut self.bytes);
        // At thread exit the cache may be gone already: the buffer is freed.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_BUFFERS {
                spare.push(bytes);
            }
        });
    }
}

impl PacketBuf for HeapBuf {
    fn data(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }

    fn set_len(&mut self, len: usize) -> bool {
        if len > self.bytes.len() {
            return false;
        }
        if len > self.len {
            // Never show what an earlier packet left in a recycled buffer.
            self.bytes[self.len..len].fill(0);
        }
        self.len = len;
        true
    }

    fn capacity(&self) -> usize {
        self.bytes.len()
    }

    fn rx_l4_checksum(&self) -> RxChecksum {
        self.l4_checksum
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
}
