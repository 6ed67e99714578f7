//! An owned mbuf as a [`PacketBuf`].

use std::ptr::NonNull;

use dpdk_sys::{rte_mbuf, MbufFields};

use crate::port::{L4Offload, PacketBuf, RxChecksum, TxOffloadRequest};

/// One packet buffer in DPDK memory: an owned `rte_mbuf`, freed to its pool on
/// drop.
///
/// `#[repr(transparent)]` over the mbuf pointer, so a slice of `Mbuf` is an
/// array of `struct rte_mbuf *` that burst calls take as is. Single-segment: the
/// frame is the first segment's data (see [`Mbuf::segments`]).
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an Mbuf is the only owner of its mbuf. Freeing it from another thread
// is sound: the pool's default ops are multi-producer, and a thread that is not
// an EAL lcore bypasses the per-lcore caches.
unsafe impl Send for Mbuf {}
// SAFETY: shared references give only reads of the mbuf.
unsafe impl Sync for Mbuf {}

/// The verdict of the RX checksum flags of `ol_flags`, for the field `mask`
/// covers (`RTE_MBUF_F_RX_IP_CKSUM_MASK` or `RTE_MBUF_F_RX_L4_CKSUM_MASK`;
/// each has the same four states: UNKNOWN 0, BAD, GOOD, NONE = both bits).
fn rx_checksum(ol_flags: u64, mask: u64, good: u64, bad: u64) -> RxChecksum {
    match ol_flags & mask {
        x if x == good => RxChecksum::Good,
        x if x == bad => RxChecksum::Bad,
        // NONE: the field in the packet is not valid but the data's integrity
        // is verified (a virtio peer left it for offload).
        x if x == mask => RxChecksum::Partial,
        _ => RxChecksum::Unknown,
    }
}

/// The IPv4 header checksum verdict carried in `ol_flags`.
pub(crate) fn rx_ip_checksum(ol_flags: u64) -> RxChecksum {
    use dpdk_sys::*;
    rx_checksum(
        ol_flags,
        RTE_MBUF_F_RX_IP_CKSUM_MASK,
        RTE_MBUF_F_RX_IP_CKSUM_GOOD,
        RTE_MBUF_F_RX_IP_CKSUM_BAD,
    )
}

/// The L4 checksum verdict carried in `ol_flags`.
pub(crate) fn rx_l4_checksum(ol_flags: u64) -> RxChecksum {
    use dpdk_sys::*;
    rx_checksum(
        ol_flags,
        RTE_MBUF_F_RX_L4_CKSUM_MASK,
        RTE_MBUF_F_RX_L4_CKSUM_GOOD,
        RTE_MBUF_F_RX_L4_CKSUM_BAD,
    )
}

/// `ol_flags` with the TX checksum request of `request` (earlier requests
/// replaced).
pub(crate) fn tx_flags(ol_flags: u64, request: &TxOffloadRequest) -> u64 {
    use dpdk_sys::*;
    let mut flags = ol_flags
        & !(RTE_MBUF_F_TX_L4_MASK
            | RTE_MBUF_F_TX_IP_CKSUM
            | RTE_MBUF_F_TX_IPV4
            | RTE_MBUF_F_TX_TCP_SEG);
    if request.ipv4_checksum || request.l4.is_some() {
        flags |= RTE_MBUF_F_TX_IPV4;
    }
    if request.ipv4_checksum {
        flags |= RTE_MBUF_F_TX_IP_CKSUM;
    }
    match request.l4 {
        Some(L4Offload::Udp) => flags |= RTE_MBUF_F_TX_UDP_CKSUM,
        Some(L4Offload::Tcp) => flags |= RTE_MBUF_F_TX_TCP_CKSUM,
        None => {}
    }
    if request.tcp_segment_size != 0 {
        // TSO implies the TCP checksum (set above) and, for IPv4, the
        // header checksum (DPDK's rte_mbuf_core.h).
        flags |= RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM;
    }
    flags
}

impl Mbuf {
    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `m` is a valid mbuf that nothing else owns or frees (fresh from an
    /// allocation or an RX burst), from a pool that outlives it.
    #[inline]
    pub unsafe fn from_raw(m: NonNull<rte_mbuf>) -> Mbuf {
        Mbuf(m)
    }

    /// Give up ownership without freeing (to hand the mbuf to C code that
    /// takes it, like a TX burst).
    #[inline]
    pub fn into_raw(self) -> NonNull<rte_mbuf> {
        let m = self.0;
        std::mem::forget(self);
        m
    }

    /// The raw mbuf, still owned by this `Mbuf`.
    #[inline]
    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn raw(&self) -> &rte_mbuf {
        // SAFETY: we own a valid mbuf for our whole life.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn raw_mut(&mut self) -> &mut rte_mbuf {
        // SAFETY: we own a valid mbuf, and &mut self makes this access unique.
        unsafe { self.0.as_mut() }
    }

    /// The number of segments. Always 1 for what shardnet's ports deliver (RX
    /// scatter is off); a larger value means a chained packet whose
    /// [`data`](PacketBuf::data) shows only the first segment: drop it.
    #[inline]
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs()
    }

    /// Whether this is a chained (multi-segment) packet.
    #[inline]
    pub fn is_multi_segment(&self) -> bool {
        self.segments() > 1
    }

    /// The offload flags (`ol_flags`: `RTE_MBUF_F_RX_*` on receive,
    /// `RTE_MBUF_F_TX_*` requests on transmit).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }

    /// Bytes free in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off())
    }

    /// The TX offload header lengths `(l2_len, l3_len)` last set.
    pub fn tx_header_lengths(&self) -> (u8, u16) {
        // SAFETY: reads bitfields of our valid mbuf; they are 7 and 9 bits wide.
        unsafe {
            (
                dpdk_sys::mbuf_l2_len(self.as_ptr()) as u8,
                dpdk_sys::mbuf_l3_len(self.as_ptr()) as u16,
            )
        }
    }

    /// The TSO fields `(l4_len, tso_segsz)` last set.
    pub fn tso_lengths(&self) -> (u8, u16) {
        // SAFETY: reads bitfields of our valid mbuf; they are 8 and 16 bits wide.
        let (l4_len, segsz) = unsafe { dpdk_sys::mbuf_tso(self.as_ptr()) };
        (l4_len as u8, segsz as u16)
    }

    /// The ethdev port the packet arrived on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port()
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nothing uses it after this.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: the first segment's data are data_len bytes at buf_addr +
        // data_off, inside the mbuf's buffer (DPDK keeps data_off + data_len <=
        // buf_len); the buffer lives as long as the mbuf, which we own.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off())),
                usize::from(m.data_len()),
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw_mut();
        // SAFETY: as in data(); &mut self makes the access unique, and an owned
        // mbuf has reference count 1 (shardnet never clones or attaches mbufs),
        // so no one else reads the buffer.
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off())),
                usize::from(m.data_len()),
            )
        }
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        let m = self.raw_mut();
        // Fits: capacity() is at most buf_len, a u16.
        let len = len as u16;
        // pkt_len is the sum over segments; only the first segment changes.
        m.set_pkt_len(m.pkt_len() - u32::from(m.data_len()) + u32::from(len));
        m.set_data_len(len);
        true
    }

    #[inline]
    fn capacity(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len() - m.data_off())
    }

    #[inline]
    fn rx_ip_checksum(&self) -> RxChecksum {
        rx_ip_checksum(self.ol_flags())
    }

    #[inline]
    fn rx_l4_checksum(&self) -> RxChecksum {
        rx_l4_checksum(self.ol_flags())
    }

    #[inline]
    fn rss_hash(&self) -> Option<u32> {
        if self.ol_flags() & dpdk_sys::RTE_MBUF_F_RX_RSS_HASH == 0 {
            return None;
        }
        // SAFETY: reads a field of our valid mbuf.
        Some(unsafe { dpdk_sys::mbuf_hash_rss(self.as_ptr()) })
    }

    #[inline]
    fn request_tx_offload(&mut self, request: TxOffloadRequest) {
        let flags = tx_flags(self.ol_flags(), &request);
        self.raw_mut().ol_flags = flags;
        // SAFETY: writes bitfields of our mbuf; l2_len is 7 bits and l3_len
        // 9 bits wide and the u8 values are masked to fit; l4_len (8 bits)
        // and tso_segsz (16 bits) take a u8 and a u16.
        unsafe {
            dpdk_sys::mbuf_set_tx_lens(
                self.as_ptr(),
                u64::from(request.l2_len & 0x7f),
                u64::from(request.l3_len),
            );
            if request.tcp_segment_size != 0 {
                dpdk_sys::mbuf_set_tso(
                    self.as_ptr(),
                    u64::from(request.l4_len),
                    u64::from(request.tcp_segment_size),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpdk_sys::*;

    #[test]
    fn rx_flags_map_to_verdicts() {
        assert_eq!(rx_ip_checksum(0), RxChecksum::Unknown);
        assert_eq!(
            rx_ip_checksum(RTE_MBUF_F_RX_IP_CKSUM_GOOD),
            RxChecksum::Good
        );
        assert_eq!(rx_ip_checksum(RTE_MBUF_F_RX_IP_CKSUM_BAD), RxChecksum::Bad);
        assert_eq!(
            rx_ip_checksum(RTE_MBUF_F_RX_IP_CKSUM_NONE),
            RxChecksum::Partial
        );
        assert_eq!(
            rx_l4_checksum(RTE_MBUF_F_RX_L4_CKSUM_GOOD),
            RxChecksum::Good
        );
        assert_eq!(rx_l4_checksum(RTE_MBUF_F_RX_L4_CKSUM_BAD), RxChecksum::Bad);
        assert_eq!(
            rx_l4_checksum(RTE_MBUF_F_RX_L4_CKSUM_NONE),
            RxChecksum::Partial
        );
        // The two fields are independent.
        let flags = RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_BAD;
        assert_eq!(rx_ip_checksum(flags), RxChecksum::Good);
        assert_eq!(rx_l4_checksum(flags), RxChecksum::Bad);
        assert_eq!(
            rx_l4_checksum(RTE_MBUF_F_RX_IP_CKSUM_GOOD),
            RxChecksum::Unknown
        );
    }

    #[test]
    fn tx_requests_set_the_right_flags() {
        let udp = TxOffloadRequest {
            l2_len: 14,
            l3_len: 20,
            ipv4_checksum: true,
            l4: Some(L4Offload::Udp),
            ..TxOffloadRequest::default()
        };
        let flags = tx_flags(0, &udp);
        assert_eq!(
            flags,
            RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_UDP_CKSUM
        );
        assert_eq!(flags & RTE_MBUF_F_TX_L4_MASK, RTE_MBUF_F_TX_UDP_CKSUM);

        let tcp = TxOffloadRequest {
            ipv4_checksum: false,
            l4: Some(L4Offload::Tcp),
            ..udp
        };
        // A later request replaces the earlier one (UDP's bits include TCP's).
        let flags = tx_flags(flags, &tcp);
        assert_eq!(flags, RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_TCP_CKSUM);

        // TSO: the segmentation flag with both checksums, and a plain
        // request after it clears the flag again.
        let tso = tx_flags(flags, &TxOffloadRequest::tcp_segmentation(32, 1448));
        assert_eq!(
            tso,
            RTE_MBUF_F_TX_IPV4
                | RTE_MBUF_F_TX_IP_CKSUM
                | RTE_MBUF_F_TX_TCP_CKSUM
                | RTE_MBUF_F_TX_TCP_SEG
        );
        assert_eq!(
            tx_flags(tso, &tcp),
            RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_TCP_CKSUM
        );

        let none = TxOffloadRequest::default();
        assert_eq!(
            tx_flags(flags | RTE_MBUF_F_RX_RSS_HASH, &none),
            RTE_MBUF_F_RX_RSS_HASH
        );
    }
}
