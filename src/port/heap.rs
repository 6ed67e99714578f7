//! A heap-backed packet buffer for the backends that copy frames (AF_PACKET, the
//! in-memory link). DPDK has its own, [`crate::dpdk::Mbuf`].

use super::{PacketBuf, RxChecksum};

/// Room of every heap buffer: a standard 1500-byte-MTU frame plus slack, or a
/// GRO-merged frame from a kernel interface up to 64 KiB.
pub const HEAP_BUF_ROOM: usize = 2048;

/// An owned frame on the heap.
#[derive(Clone, Debug, PartialEq, Eq)]
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
        HeapBuf {
            bytes: vec![0; room],
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
}
