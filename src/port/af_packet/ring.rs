//! The TPACKET_V2 rings: frame geometry and the per-frame handover protocol with
//! the kernel.
//!
//! A ring is an array of fixed-size frames in memory shared with the kernel.
//! Each frame starts with a `tpacket2_hdr` whose `tp_status` word says who owns
//! it. RX: the kernel fills frames in ring order and sets `TP_STATUS_USER`; we
//! read them in the same order (acquire) and give each back with
//! `TP_STATUS_KERNEL` (release). TX: we fill free frames (`TP_STATUS_AVAILABLE`)
//! in ring order, mark them `TP_STATUS_SEND_REQUEST` (release), and a `sendto`
//! makes the kernel send every requested frame from where it stopped last; it
//! sets them back to available once the device is done with them.
//!
//! An RX ring that lends (the data-plane queues') does not copy frames out:
//! it hands the stack a [`RingFrame`], the frame in place, and marks it
//! [`TP_STATUS_LENT`] so that neither side takes it meanwhile. Dropping the
//! `RingFrame` gives it back (`TP_STATUS_KERNEL`, release). The kernel fills
//! frames strictly in ring order and never skips one it does not own, so a
//! frame held long stalls the ring only once the kernel has come all the way
//! round to it (it then drops what arrives, counted in `tp_drops`, until the
//! frame is back). The stack holds frames for the length of a burst, replies
//! built in place until their TX burst is sent (at most a burst more); what
//! it keeps longer (steering, the exception port) it copies first
//! ([`PacketBuf::detach`](crate::port::PacketBuf::detach)).
//!
//! Nothing here makes a system call, so the handover logic is tested against a
//! ring in ordinary memory playing the kernel's part.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::port::heap::HeapBuf;
use crate::port::RxChecksum;

/// Bytes of Ethernet header.
pub(super) const ETH_HLEN: usize = 14;
/// Bytes of one 802.1Q/802.1ad tag.
pub(super) const VLAN_HLEN: usize = 4;
/// Where the kernel puts a received frame's Ethernet header at most: it aligns
/// the network header to `TPACKET_ALIGN(TPACKET2_HDRLEN + 16)` = 80 bytes from
/// the frame start (the MAC header sits just before it).
const RX_HEADROOM: usize = 80;
/// Where a transmitted frame's bytes start: right after the `tpacket2_hdr`
/// (`TPACKET2_HDRLEN - sizeof(sockaddr_ll)`, the kernel's offset without
/// `PACKET_TX_HAS_OFF`).
pub(super) const TX_DATA_OFFSET: usize =
    libc::TPACKET2_HDRLEN - std::mem::size_of::<libc::sockaddr_ll>();
/// Smallest frame size: a 1500-byte MTU frame fits with room to spare.
const MIN_FRAME_SIZE: usize = 2048;
/// Block size floor: 64 KiB is a multiple of every page size Linux uses, and
/// large blocks mean fewer kernel allocations.
const MIN_BLOCK_SIZE: usize = 1 << 16;

/// The shape of a socket's two rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    /// Bytes per frame, the same for RX and TX: a power of two that holds a
    /// frame of the interface's MTU plus a VLAN tag and the ring header.
    pub frame_size: usize,
    /// Bytes per block (a power of two, at least 64 KiB, frames never cross one).
    pub block_size: usize,
    /// Blocks of the RX ring.
    pub rx_blocks: usize,
    /// Blocks of the TX ring.
    pub tx_blocks: usize,
}

impl Geometry {
    /// Rings for an interface with `mtu`, with at least `rx_frames` and
    /// `tx_frames` frames (rounded up to whole blocks; at least one block each).
    ///
    /// Frames are sized for the MTU, not for 64 KiB GRO/LRO merges: merged
    /// frames arrive truncated and are dropped and counted. Turn those offloads
    /// off ([`super::disable_offloads`]) rather than spend 32 times the memory
    /// on every frame.
    pub fn for_mtu(mtu: u32, rx_frames: usize, tx_frames: usize) -> Geometry {
        let frame_size = (mtu as usize + ETH_HLEN + VLAN_HLEN + RX_HEADROOM)
            .next_power_of_two()
            .max(MIN_FRAME_SIZE);
        let block_size = frame_size.max(MIN_BLOCK_SIZE);
        let per_block = block_size / frame_size;
        Geometry {
            frame_size,
            block_size,
            rx_blocks: rx_frames.div_ceil(per_block).max(1),
            tx_blocks: tx_frames.div_ceil(per_block).max(1),
        }
    }

    /// Frames per block.
    pub fn frames_per_block(&self) -> usize {
        self.block_size / self.frame_size
    }

    /// Frames of the RX ring.
    pub fn rx_frames(&self) -> usize {
        self.rx_blocks * self.frames_per_block()
    }

    /// Frames of the TX ring.
    pub fn tx_frames(&self) -> usize {
        self.tx_blocks * self.frames_per_block()
    }

    /// Bytes of the RX ring (the TX ring follows it in the mapping).
    pub fn rx_bytes(&self) -> usize {
        self.rx_blocks * self.block_size
    }

    /// Bytes of both rings: the length to map.
    pub fn total_bytes(&self) -> usize {
        (self.rx_blocks + self.tx_blocks) * self.block_size
    }

    /// The `PACKET_RX_RING` request.
    pub fn rx_request(&self) -> libc::tpacket_req {
        self.request(self.rx_blocks)
    }

    /// The `PACKET_TX_RING` request.
    pub fn tx_request(&self) -> libc::tpacket_req {
        self.request(self.tx_blocks)
    }

    fn request(&self, blocks: usize) -> libc::tpacket_req {
        libc::tpacket_req {
            tp_block_size: self.block_size as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: self.frame_size as u32,
            tp_frame_nr: (blocks * self.frames_per_block()) as u32,
        }
    }
}

/// What one received ring frame held.
#[derive(Debug)]
pub(super) enum Received {
    /// A whole frame: lent in place, or copied out.
    Frame(HeapBuf),
    /// A frame longer than the ring frame (a GRO/LRO merge): the kernel kept only
    /// its start, so it was dropped.
    Truncated,
}

/// The status of an RX frame lent to the stack: not `TP_STATUS_KERNEL`, so
/// the kernel does not fill it (it compares with exactly that), and without
/// `TP_STATUS_USER`, so [`Ring::receive`] does not take it a second time when
/// it comes round to it. The kernel sets `TP_STATUS_COPY` only together with
/// `TP_STATUS_USER`, so this value is never one of its own.
pub(super) const TP_STATUS_LENT: u32 = libc::TP_STATUS_COPY;

/// Keeps a ring's memory mapped while frames of it are lent.
pub(super) type RingOwner = Arc<dyn Send + Sync>;

/// A received frame lent to the stack in place, from its first byte (the
/// Ethernet header) to the end of its ring frame. Dropping it hands the ring
/// frame back to the kernel.
pub struct RingFrame {
    data: NonNull<u8>,
    room: usize,
    status: NonNull<AtomicU32>,
    /// Keeps the mapping alive as long as the frame is.
    _owner: RingOwner,
}

// SAFETY: a RingFrame is the only handle to its ring frame: the kernel does not
// touch the frame until the release store in `drop`, and the ring does not hand
// it out again (TP_STATUS_LENT). The memory stays mapped while `_owner` lives.
// So moving it to another thread (software steering) moves sole ownership of
// plain bytes, and the release store is an atomic; shared references only read.
unsafe impl Send for RingFrame {}
// SAFETY: as above: `&RingFrame` gives only reads of bytes nobody else writes.
unsafe impl Sync for RingFrame {}

impl RingFrame {
    /// The frame's bytes and the rest of its ring frame (the room).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `data..data + room` lies inside one ring frame of the live
        // mapping (checked in `Ring::receive`), owned by this RingFrame alone.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.room) }
    }

    /// As [`bytes`](Self::bytes), writable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.room) }
    }
}

impl Drop for RingFrame {
    fn drop(&mut self) {
        // SAFETY: the status word of this frame's header, in the live mapping.
        let status = unsafe { self.status.as_ref() };
        // Release: our reads and writes of the frame happen before the kernel
        // may fill it again.
        status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}

impl std::fmt::Debug for RingFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingFrame")
            .field("data", &self.data)
            .field("room", &self.room)
            .finish()
    }
}

/// One ring of frames inside the mapping, and our position in it.
pub(super) struct Ring {
    base: NonNull<u8>,
    frame_size: usize,
    frame_count: usize,
    /// The frame we look at next; the kernel walks the ring in the same order.
    next: usize,
    /// RX: lend frames, keeping the memory alive with this; `None`: copy them.
    lend: Option<RingOwner>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("base", &self.base)
            .field("frame_size", &self.frame_size)
            .field("frame_count", &self.frame_count)
            .field("next", &self.next)
            .field("lends", &self.lend.is_some())
            .finish()
    }
}

impl Ring {
    /// A ring of `frame_count` frames of `frame_size` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `base` must point to `frame_size * frame_count` bytes, 16-byte aligned
    /// (`frame_size` a multiple of 16 and at least `TPACKET2_HDRLEN`), valid for
    /// reads and writes for as long as the ring is used, and shared with no one
    /// but the kernel (or a test playing it), which follows the `tp_status`
    /// protocol described in the module documentation.
    pub unsafe fn new(base: NonNull<u8>, frame_size: usize, frame_count: usize) -> Ring {
        debug_assert!(
            frame_size % libc::TPACKET_ALIGNMENT == 0 && frame_size >= libc::TPACKET2_HDRLEN
        );
        debug_assert!(base.as_ptr() as usize % libc::TPACKET_ALIGNMENT == 0);
        Ring {
            base,
            frame_size,
            frame_count,
            next: 0,
            lend: None,
        }
    }

    /// Make [`receive`](Self::receive) lend frames instead of copying them.
    ///
    /// # Safety
    ///
    /// The ring's memory must stay valid (as in [`Ring::new`]) for as long as
    /// `owner` is alive, not only as long as the ring: lent frames outlive it.
    pub unsafe fn lend_frames(&mut self, owner: RingOwner) {
        self.lend = Some(owner);
    }

    /// The header of frame `index`.
    fn header(&self, index: usize) -> *mut libc::tpacket2_hdr {
        debug_assert!(index < self.frame_count);
        // SAFETY: index < frame_count, so the offset stays inside the ring that
        // `new`'s contract says is valid.
        unsafe { self.base.as_ptr().add(index * self.frame_size).cast() }
    }

    /// The status word of frame `index`, shared with the kernel.
    fn status(&self, index: usize) -> &AtomicU32 {
        // SAFETY: tp_status is the first field of a 16-byte-aligned header, so it
        // is an aligned u32 in valid memory for the ring's lifetime; the kernel
        // reads and writes it concurrently, which is what AtomicU32 is for (the
        // kernel's side uses barriers matching acquire/release).
        unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*self.header(index)).tp_status)) }
    }

    fn advance(&mut self) {
        self.next = if self.next + 1 == self.frame_count {
            0
        } else {
            self.next + 1
        };
    }

    /// The next frame the kernel handed over: lent (a lending ring; it goes
    /// back to the kernel when the buffer is dropped), or copied out, when the
    /// ring copies or the frame must change (a VLAN tag to put back), and the
    /// ring frame handed back at once. `None` if the kernel has not filled it
    /// yet.
    pub fn receive(&mut self) -> Option<Received> {
        let index = self.next;
        let status = self.status(index).load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: TP_STATUS_USER, read with acquire ordering, means the kernel is
        // done writing this frame and will not touch it until we hand it back.
        let header = unsafe { std::ptr::read(self.header(index)) };
        let start = usize::from(header.tp_mac);
        let snap = header.tp_snaplen as usize;
        // A frame that does not lie after its header and inside its ring frame
        // (never, from a sane kernel) is dropped as truncated too.
        let received = if snap < header.tp_len as usize
            || start < std::mem::size_of::<libc::tpacket2_hdr>()
            || start + snap > self.frame_size
        {
            Received::Truncated
        } else if let (Some(owner), 0) = (&self.lend, status & libc::TP_STATUS_VLAN_VALID) {
            // SAFETY: header_size <= start and start + snap <= frame_size were
            // just checked, so data..data + room (room = frame_size - start) is
            // the rest of this frame after its header (perhaps empty), inside
            // the ring; the pointer is not null.
            let data =
                unsafe { NonNull::new_unchecked(self.header(index).cast::<u8>().add(start)) };
            let frame = RingFrame {
                data,
                room: self.frame_size - start,
                status: NonNull::from(self.status(index)),
                _owner: Arc::clone(owner),
            };
            // Ours until the RingFrame is dropped; neither side takes it meanwhile.
            self.status(index).store(TP_STATUS_LENT, Ordering::Relaxed);
            self.advance();
            return Some(Received::Frame(HeapBuf::lent(
                frame,
                snap,
                l4_checksum(status),
            )));
        } else {
            // SAFETY: start + snap <= frame_size was just checked, so the bytes lie
            // inside this frame, which we own until it is handed back below.
            let bytes = unsafe {
                std::slice::from_raw_parts(self.header(index).cast::<u8>().add(start), snap)
            };
            Received::Frame(copy_out(bytes, &header))
        };
        self.status(index)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.advance();
        Some(received)
    }

    /// Put `frame` into the next TX ring frame and request its transmission.
    /// Returns false, changing nothing, if that ring frame is still the kernel's
    /// (the ring is full). The caller checked that `frame` fits
    /// ([`Ring::tx_room`]).
    pub fn stage(&mut self, frame: &[u8]) -> bool {
        debug_assert!(frame.len() <= self.tx_room());
        let index = self.next;
        if self.status(index).load(Ordering::Acquire) != libc::TP_STATUS_AVAILABLE {
            return false;
        }
        let header = self.header(index);
        // SAFETY: TP_STATUS_AVAILABLE (acquire) means the kernel is done with the
        // frame; the data fits (tx_room), so the writes stay inside it. The kernel
        // reads them only after the release store of SEND_REQUEST below.
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                header.cast::<u8>().add(TX_DATA_OFFSET),
                frame.len(),
            );
            std::ptr::addr_of_mut!((*header).tp_len).write(frame.len() as u32);
            std::ptr::addr_of_mut!((*header).tp_snaplen).write(frame.len() as u32);
        }
        self.status(index)
            .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.advance();
        true
    }

    /// The longest frame a TX ring frame holds.
    pub fn tx_room(&self) -> usize {
        self.frame_size - TX_DATA_OFFSET
    }

    /// Hand every frame the kernel has filled back to it, unread: what arrived
    /// before a fanout group was complete went to whichever socket was ready.
    /// Returns the number discarded (at most one ring's worth).
    pub fn discard_received(&mut self) -> usize {
        let mut discarded = 0;
        while discarded < self.frame_count && self.receive().is_some() {
            discarded += 1;
        }
        discarded
    }
}

/// A copy of a received frame with the kernel's metadata applied: the VLAN tag
/// the kernel moved out of the frame (hardware or `skb_vlan_untag`) is put back
/// where it was, and the checksum status becomes [`RxChecksum`].
fn copy_out(bytes: &[u8], header: &libc::tpacket2_hdr) -> HeapBuf {
    let status = header.tp_status;
    let mut buf = if status & libc::TP_STATUS_VLAN_VALID != 0 && bytes.len() >= 2 * 6 {
        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && header.tp_vlan_tpid != 0 {
            header.tp_vlan_tpid
        } else {
            0x8100
        };
        let mut tagged = Vec::with_capacity(bytes.len() + VLAN_HLEN);
        tagged.extend_from_slice(&bytes[..12]);
        tagged.extend_from_slice(&tpid.to_be_bytes());
        tagged.extend_from_slice(&header.tp_vlan_tci.to_be_bytes());
        tagged.extend_from_slice(&bytes[12..]);
        HeapBuf::from_slice(&tagged)
    } else {
        HeapBuf::from_slice(bytes)
    };
    buf.l4_checksum = l4_checksum(status);
    buf
}

/// The kernel's checksum verdict in a frame's `tp_status`.
fn l4_checksum(status: u32) -> RxChecksum {
    if status & libc::TP_STATUS_CSUMNOTREADY != 0 {
        RxChecksum::Partial
    } else if status & libc::TP_STATUS_CSUM_VALID != 0 {
        RxChecksum::Good
    } else {
        RxChecksum::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::PacketBuf;

    const FRAME: usize = 2048;
    const FRAMES: usize = 4;

    /// Ring memory in ordinary, 16-byte-aligned heap memory.
    struct FakeRing {
        memory: Vec<u128>,
    }

    impl FakeRing {
        fn new() -> Self {
            FakeRing {
                memory: vec![0; FRAME * FRAMES / 16],
            }
        }

        fn ring(&mut self) -> Ring {
            let base = NonNull::new(self.memory.as_mut_ptr().cast::<u8>()).unwrap();
            // SAFETY: the memory is FRAME * FRAMES bytes, 16-aligned, outlives the
            // ring in every test, and only the test touches it.
            unsafe { Ring::new(base, FRAME, FRAMES) }
        }

        fn header(&mut self, index: usize) -> &mut libc::tpacket2_hdr {
            // SAFETY: inside the memory, aligned, and tpacket2_hdr is plain data.
            unsafe {
                &mut *self
                    .memory
                    .as_mut_ptr()
                    .cast::<u8>()
                    .add(index * FRAME)
                    .cast()
            }
        }

        fn bytes(&mut self, index: usize) -> &mut [u8] {
            // SAFETY: frame `index` lies inside the memory.
            unsafe {
                std::slice::from_raw_parts_mut(
                    self.memory.as_mut_ptr().cast::<u8>().add(index * FRAME),
                    FRAME,
                )
            }
        }

        /// Play the kernel delivering `frame` into ring frame `index`.
        fn deliver(&mut self, index: usize, frame: &[u8], len: usize, status: u32) {
            let mac = 66;
            self.bytes(index)[mac..mac + frame.len()].copy_from_slice(frame);
            let header = self.header(index);
            header.tp_mac = mac as u16;
            header.tp_net = (mac + ETH_HLEN) as u16;
            header.tp_snaplen = frame.len() as u32;
            header.tp_len = len as u32;
            header.tp_status = libc::TP_STATUS_USER | status;
        }
    }

    fn frame(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| n.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn geometry_fits_an_mtu_frame_and_whole_blocks() {
        let g = Geometry::for_mtu(1500, 4096, 1000);
        assert_eq!(g.frame_size, 2048);
        assert_eq!(g.block_size, 65536);
        assert_eq!((g.rx_frames(), g.tx_frames()), (4096, 1024));
        assert_eq!(g.total_bytes(), (4096 + 1024) * 2048);
        assert!(1500 + ETH_HLEN + VLAN_HLEN + RX_HEADROOM <= g.frame_size);
        assert!(1500 + ETH_HLEN + VLAN_HLEN <= g.frame_size - TX_DATA_OFFSET);
        let req = g.rx_request();
        assert_eq!(
            (
                req.tp_block_size,
                req.tp_block_nr,
                req.tp_frame_size,
                req.tp_frame_nr
            ),
            (65536, 128, 2048, 4096)
        );
        let jumbo = Geometry::for_mtu(9000, 1, 1);
        assert_eq!(jumbo.frame_size, 16384);
        assert_eq!((jumbo.rx_frames(), jumbo.tx_frames()), (4, 4));
        let loopback = Geometry::for_mtu(65536, 8, 8);
        assert_eq!(
            (loopback.frame_size, loopback.block_size, loopback.rx_blocks),
            (131072, 131072, 8)
        );
        assert_eq!(TX_DATA_OFFSET, 32);
    }

    #[test]
    fn receive_takes_user_frames_in_order_and_hands_them_back() {
        let mut fake = FakeRing::new();
        let mut ring = fake.ring();
        assert!(ring.receive().is_none());
        for i in 0..FRAMES {
            fake.deliver(i, &frame(i as u8, 60 + i), 60 + i, 0);
        }
        for round in 0..2 {
            for i in 0..FRAMES {
                let Some(Received::Frame(buf)) = ring.receive() else {
                    panic!("frame {i}")
                };
                assert_eq!(buf.data(), frame(i as u8, 60 + i).as_slice());
                assert_eq!(buf.l4_checksum, RxChecksum::Unknown);
                assert_eq!(fake.header(i).tp_status, libc::TP_STATUS_KERNEL);
                if round == 0 {
                    // The kernel refills it for the second lap.
                    fake.deliver(i, &frame(i as u8, 60 + i), 60 + i, 0);
                }
            }
        }
        assert!(
            ring.receive().is_none(),
            "the ring wrapped around to a kernel frame"
        );
    }

    /// A ring over `fake` that lends its frames.
    fn lending(fake: &mut FakeRing) -> Ring {
        let mut ring = fake.ring();
        // SAFETY: every test drops its frames before `fake`, declared first.
        unsafe { ring.lend_frames(Arc::new(())) };
        ring
    }

    #[test]
    fn lent_frames_stay_out_of_both_sides_hands_until_dropped() {
        let mut fake = FakeRing::new();
        let mut ring = lending(&mut fake);
        for i in 0..FRAMES {
            fake.deliver(
                i,
                &frame(i as u8, 100 + i),
                100 + i,
                libc::TP_STATUS_CSUM_VALID,
            );
        }
        let mut held = Vec::new();
        for i in 0..FRAMES {
            let Some(Received::Frame(buf)) = ring.receive() else {
                panic!("frame {i}")
            };
            assert!(buf.is_lent());
            assert_eq!(buf.data(), frame(i as u8, 100 + i).as_slice());
            assert_eq!(buf.l4_checksum, RxChecksum::Good);
            // The room is the rest of the ring frame.
            assert_eq!(buf.capacity(), FRAME - 66);
            assert_eq!(fake.header(i).tp_status, TP_STATUS_LENT);
            held.push(buf);
        }
        // Round again: frame 0 is still lent, so it is not taken twice.
        assert!(ring.receive().is_none());
        // Writes go to the ring frame; growing zero-fills; the room is the limit.
        let mut first = held.remove(0);
        first.data_mut()[0] = 0xee;
        assert!(first.set_len(200));
        assert!(first.data()[100..].iter().all(|&b| b == 0));
        assert!(!first.set_len(FRAME - 65));
        assert_eq!(fake.bytes(0)[66], 0xee);
        // A clone is a heap copy; the frame stays lent until the original goes.
        let copy = first.clone();
        assert!(!copy.is_lent());
        assert_eq!(copy, first);
        assert_eq!(fake.header(0).tp_status, TP_STATUS_LENT);
        drop(first);
        assert_eq!(fake.header(0).tp_status, libc::TP_STATUS_KERNEL);
        assert_eq!(copy.data()[0], 0xee);
        // The kernel refills frame 0; the ring takes it, then stops at frame 1,
        // which is still lent.
        fake.deliver(0, &frame(9, 60), 60, 0);
        let Some(Received::Frame(again)) = ring.receive() else {
            panic!("frame 0, second lap")
        };
        assert_eq!(again.data(), frame(9, 60).as_slice());
        assert!(ring.receive().is_none());
        drop(held);
        for i in 1..FRAMES {
            assert_eq!(
                fake.header(i).tp_status,
                libc::TP_STATUS_KERNEL,
                "frame {i}"
            );
        }
        // Detached (to be kept beyond the burst): a heap copy, the frame back.
        let kept = again.detach();
        assert!(!kept.is_lent());
        assert_eq!(kept.data(), frame(9, 60).as_slice());
        assert_eq!(fake.header(0).tp_status, libc::TP_STATUS_KERNEL);
    }

    #[test]
    fn a_lending_ring_still_copies_what_it_must_change_and_drops_truncated_frames() {
        let mut fake = FakeRing::new();
        let mut ring = lending(&mut fake);
        fake.deliver(0, &frame(1, 64), 64, libc::TP_STATUS_VLAN_VALID);
        fake.header(0).tp_vlan_tci = 5;
        fake.deliver(1, &frame(2, 1900), 9000, 0);
        let Some(Received::Frame(tagged)) = ring.receive() else {
            panic!()
        };
        assert!(!tagged.is_lent(), "a VLAN tag to put back means a copy");
        assert_eq!(tagged.len(), 68);
        assert_eq!(fake.header(0).tp_status, libc::TP_STATUS_KERNEL);
        assert!(matches!(ring.receive(), Some(Received::Truncated)));
        assert_eq!(fake.header(1).tp_status, libc::TP_STATUS_KERNEL);
    }

    #[test]
    fn a_frame_that_overlaps_its_header_is_neither_lent_nor_read() {
        let mut fake = FakeRing::new();
        let mut ring = lending(&mut fake);
        fake.deliver(0, &frame(5, 60), 60, 0);
        fake.header(0).tp_mac = 8;
        assert!(matches!(ring.receive(), Some(Received::Truncated)));
        assert_eq!(fake.header(0).tp_status, libc::TP_STATUS_KERNEL);
    }

    #[test]
    fn lent_frames_go_back_from_another_thread() {
        let mut fake = FakeRing::new();
        let mut ring = lending(&mut fake);
        fake.deliver(0, &frame(3, 80), 80, 0);
        let Some(Received::Frame(buf)) = ring.receive() else {
            panic!()
        };
        let sum = std::thread::spawn(move || buf.data().iter().map(|&b| u32::from(b)).sum::<u32>())
            .join()
            .unwrap();
        assert_eq!(sum, frame(3, 80).iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(fake.header(0).tp_status, libc::TP_STATUS_KERNEL);
    }

    #[test]
    fn receive_drops_truncated_frames_and_reports_checksum_status() {
        let mut fake = FakeRing::new();
        let mut ring = fake.ring();
        fake.deliver(0, &frame(1, 1900), 9000, 0);
        fake.deliver(1, &frame(2, 100), 100, libc::TP_STATUS_CSUMNOTREADY);
        fake.deliver(2, &frame(3, 100), 100, libc::TP_STATUS_CSUM_VALID);
        // A header pointing outside its frame is treated as truncated, not read.
        fake.deliver(3, &frame(4, 10), 10, 0);
        fake.header(3).tp_snaplen = FRAME as u32;
        fake.header(3).tp_len = FRAME as u32;
        assert!(matches!(ring.receive(), Some(Received::Truncated)));
        assert_eq!(fake.header(0).tp_status, libc::TP_STATUS_KERNEL);
        let Some(Received::Frame(partial)) = ring.receive() else {
            panic!()
        };
        assert_eq!(partial.l4_checksum, RxChecksum::Partial);
        let Some(Received::Frame(good)) = ring.receive() else {
            panic!()
        };
        assert_eq!(good.l4_checksum, RxChecksum::Good);
        assert!(matches!(ring.receive(), Some(Received::Truncated)));
    }

    #[test]
    fn receive_puts_a_stripped_vlan_tag_back() {
        let mut fake = FakeRing::new();
        let mut ring = fake.ring();
        let untagged = frame(7, 64);
        fake.deliver(
            0,
            &untagged,
            64,
            libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_VLAN_TPID_VALID,
        );
        fake.header(0).tp_vlan_tci = 0x2064;
        fake.header(0).tp_vlan_tpid = 0x88a8;
        fake.deliver(1, &untagged, 64, libc::TP_STATUS_VLAN_VALID);
        fake.header(1).tp_vlan_tci = 5;
        let Some(Received::Frame(stag)) = ring.receive() else {
            panic!()
        };
        let mut want = untagged[..12].to_vec();
        want.extend_from_slice(&[0x88, 0xa8, 0x20, 0x64]);
        want.extend_from_slice(&untagged[12..]);
        assert_eq!(stag.data(), want.as_slice());
        let Some(Received::Frame(ctag)) = ring.receive() else {
            panic!()
        };
        assert_eq!(&ctag.data()[12..16], &[0x81, 0x00, 0x00, 0x05]);
        assert_eq!(ctag.len(), 68);
    }

    #[test]
    fn stage_fills_available_frames_in_order_until_the_ring_is_full() {
        let mut fake = FakeRing::new();
        let mut ring = fake.ring();
        for i in 0..FRAMES {
            assert!(ring.stage(&frame(i as u8, 100 + i)));
        }
        assert!(!ring.stage(&frame(9, 10)), "every frame awaits the kernel");
        for i in 0..FRAMES {
            let header = *fake.header(i);
            assert_eq!(header.tp_status, libc::TP_STATUS_SEND_REQUEST);
            assert_eq!(header.tp_len as usize, 100 + i);
            let data = &fake.bytes(i)[TX_DATA_OFFSET..TX_DATA_OFFSET + 100 + i];
            assert_eq!(data, frame(i as u8, 100 + i).as_slice());
        }
        // The kernel sent frame 0 and is still sending frame 1.
        fake.header(0).tp_status = libc::TP_STATUS_AVAILABLE;
        fake.header(1).tp_status = libc::TP_STATUS_SENDING;
        assert!(ring.stage(&frame(9, 10)));
        assert!(!ring.stage(&frame(9, 10)));
        assert_eq!(ring.tx_room(), FRAME - 32);
    }

    #[test]
    fn discard_received_empties_what_the_kernel_filled() {
        let mut fake = FakeRing::new();
        let mut ring = fake.ring();
        fake.deliver(0, &frame(0, 60), 60, 0);
        fake.deliver(1, &frame(1, 60), 60, 0);
        assert_eq!(ring.discard_received(), 2);
        assert_eq!(ring.discard_received(), 0);
        fake.deliver(2, &frame(2, 60), 60, 0);
        let Some(Received::Frame(buf)) = ring.receive() else {
            panic!()
        };
        assert_eq!(buf.data()[0], 2);
    }
}
