//! UDP datagrams (RFC 768) over IPv4.
//!
//! `UdpPacket::new_checked` checks the 8-byte header and that the length field
//! is at least 8 and within the buffer (which may be longer: build it over
//! `Ipv4Packet::payload()`); after it no getter, `payload()` or checksum call
//! can panic. With `new_unchecked`, accessors panic on a buffer shorter than 8
//! bytes, and `payload()` and the checksum calls panic if the length field
//! exceeds the buffer (or is below 8).

use super::checksum;
use super::{read_u16, write_u16, ChecksumMode, IpProtocol, Result, WireError};
use std::net::Ipv4Addr;

/// Length of the UDP header.
pub const UDP_HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram over a byte buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than 8 bytes or than the
    /// length field; `Err(Malformed)` if the length field is below 8.
    pub fn check_len(&self) -> Result<()> {
        let buffer_len = self.buffer.as_ref().len();
        if buffer_len < UDP_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(self.len());
        if len < UDP_HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len > buffer_len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload, in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The checksum field (0 means the sender computed none).
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload: bytes `8..len()`.
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[UDP_HEADER_LEN..usize::from(self.len())]
    }

    /// True when the checksum verifies against the IPv4 pseudo-header of
    /// `src` and `dst`, or is 0 ("no checksum", which IPv4 allows).
    /// Always inlined: with a plain `#[inline]` the `shardnet` binary kept
    /// it out of line, 10 instructions a 60-byte datagram more (callgrind,
    /// `bench/udp-echo.sh`'s whole-process count: 771 against 761).
    #[inline(always)]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let datagram = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::pseudo_header_and_data(src, dst, IpProtocol::Udp, datagram) == 0xffff
    }
}

impl<'a> UdpPacket<&'a [u8]> {
    /// The payload (`8..len()`), borrowed for as long as the underlying
    /// buffer rather than the packet.
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[UDP_HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value)
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value)
    }

    /// Sets the length field.
    pub fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value)
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Computes the checksum over the pseudo-header and bytes `0..len()` and
    /// writes it; a computed 0 is sent as 0xffff, since 0 means "none".
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let sum = checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::Udp, u32::from(len)),
            checksum::data(&self.buffer.as_ref()[..usize::from(len)]),
        ]);
        let cks = !sum;
        self.set_checksum(if cks == 0 { 0xffff } else { cks })
    }

    /// Writes the non-complemented pseudo-header sum (with the length field as
    /// the length) into the checksum field, which is what a NIC's UDP checksum
    /// offload expects (DPDK's `rte_ipv4_phdr_cksum`).
    pub fn fill_pseudo_header_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = self.len();
        self.set_checksum(checksum::pseudo_header(
            src,
            dst,
            IpProtocol::Udp,
            u32::from(len),
        ))
    }

    /// The payload (`8..len()`), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        &mut self.buffer.as_mut()[UDP_HEADER_LEN..len]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The header fields of a UDP datagram; the payload stays in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Reads a datagram: validates lengths as `new_checked` does and, when
    /// `checksum` is [`ChecksumMode::Software`], verifies the checksum
    /// (`Err(Checksum)`; a zero checksum is accepted). The payload is
    /// `packet.payload()`.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        checksum: ChecksumMode,
    ) -> Result<UdpRepr> {
        packet.check_len()?;
        if checksum.is_software() && !packet.verify_checksum(src, dst) {
            return Err(WireError::Checksum);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// The datagram length for a payload of `payload_len` bytes.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        UDP_HEADER_LEN + payload_len
    }

    /// Writes the header of a datagram whose `payload_len` payload bytes are
    /// already in place after it (write them first, through
    /// `payload_mut()` or directly into the buffer: zero-copy). Then sets the
    /// checksum: computed with [`ChecksumMode::Software`], the pseudo-header
    /// sum for the NIC with [`ChecksumMode::Offload`].
    ///
    /// # Panics
    /// If the buffer is shorter than `8 + payload_len` bytes, or
    /// `payload_len` exceeds 65527 (the length would not fit in 16 bits).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload_len: usize,
        checksum: ChecksumMode,
    ) {
        let len = u16::try_from(UDP_HEADER_LEN + payload_len)
            .expect("UDP payload_len exceeds 65527 bytes");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        match checksum {
            ChecksumMode::Software => packet.fill_checksum(src, dst),
            ChecksumMode::Offload => packet.fill_pseudo_header_checksum(src, dst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::captures::{UDP_FRAME, UDP_TO_CLOSED_PORT_FRAME as UDP_ODD_FRAME};
    use super::super::{EtherType, EthernetFrame, Ipv4Packet, Ipv4Repr};
    use super::*;
    use proptest::prelude::*;

    const IP1: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    #[test]
    fn parse_captured_datagram_through_all_layers() {
        let frame = EthernetFrame::new_checked(&UDP_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip, ChecksumMode::Software).unwrap();
        assert_eq!(ip_repr.next_header, IpProtocol::Udp);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.src_port(), 40000);
        assert_eq!(udp.dst_port(), 5353);
        assert_eq!(udp.len(), 22);
        assert_eq!(udp.checksum(), 0x5720);
        assert_eq!(udp.payload(), b"hello shardnet");
        assert!(udp.verify_checksum(IP1, IP2));
        // The pseudo-header matters: swapped or other addresses fail.
        assert!(!udp.verify_checksum(IP1, Ipv4Addr::new(10, 99, 0, 3)));
        let repr = UdpRepr::parse(&udp, IP1, IP2, ChecksumMode::Software).unwrap();
        assert_eq!(
            repr,
            UdpRepr {
                src_port: 40000,
                dst_port: 5353
            }
        );
    }

    #[test]
    fn odd_length_datagram() {
        let udp = UdpPacket::new_checked(&UDP_ODD_FRAME[34..]).unwrap();
        assert_eq!(udp.len(), 19);
        assert_eq!(udp.payload(), b"nobody home");
        assert_eq!(udp.checksum(), 0x2487);
        assert!(udp.verify_checksum(IP1, IP2));
        let mut buf = UDP_ODD_FRAME[34..].to_vec();
        let mut udp = UdpPacket::new_checked(&mut buf[..]).unwrap();
        udp.fill_checksum(IP1, IP2);
        assert_eq!(udp.checksum(), 0x2487);
    }

    #[test]
    fn emit_reproduces_captured_datagram() {
        let mut buf = [0u8; 22];
        buf[8..].copy_from_slice(b"hello shardnet");
        let repr = UdpRepr {
            src_port: 40000,
            dst_port: 5353,
        };
        assert_eq!(repr.buffer_len(14), 22);
        repr.emit(
            &mut UdpPacket::new_unchecked(&mut buf[..]),
            IP1,
            IP2,
            14,
            ChecksumMode::Software,
        );
        assert_eq!(&buf[..], &UDP_FRAME[34..]);
    }

    #[test]
    fn offload_writes_pseudo_header_sum() {
        let mut buf = UDP_FRAME[34..].to_vec();
        let mut udp = UdpPacket::new_unchecked(&mut buf[..]);
        UdpRepr {
            src_port: 40000,
            dst_port: 5353,
        }
        .emit(&mut udp, IP1, IP2, 14, ChecksumMode::Offload);
        // 0a63 + 0001 + 0a63 + 0002 + 0011 + 0016 = 14f0, by hand.
        assert_eq!(udp.checksum(), 0x14f0);
        // What the NIC then does: sum from the transport header on, complement.
        let sum = checksum::data(&buf);
        assert_eq!(!sum, 0x5720);
    }

    #[test]
    fn zero_checksum_means_none() {
        let mut buf = UDP_FRAME[34..].to_vec();
        buf[20] ^= 0xff; // corrupt the payload
        let mut udp = UdpPacket::new_checked(&mut buf[..]).unwrap();
        assert!(!udp.verify_checksum(IP1, IP2));
        assert_eq!(
            UdpRepr::parse(&udp, IP1, IP2, ChecksumMode::Software),
            Err(WireError::Checksum)
        );
        assert!(UdpRepr::parse(&udp, IP1, IP2, ChecksumMode::Offload).is_ok());
        udp.set_checksum(0);
        assert!(udp.verify_checksum(IP1, IP2));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the last payload word so the sum over everything is 0xffff:
        // the checksum would be 0 and must go out as 0xffff instead.
        let mut buf = [0u8; 10];
        let mut udp = UdpPacket::new_unchecked(&mut buf[..]);
        udp.set_src_port(1);
        udp.set_dst_port(2);
        udp.set_len(10);
        let partial = checksum::combine(&[
            checksum::pseudo_header(IP1, IP2, IpProtocol::Udp, 10),
            checksum::data(&buf),
        ]);
        buf[8..].copy_from_slice(&(!partial).to_be_bytes());
        let mut udp = UdpPacket::new_checked(&mut buf[..]).unwrap();
        udp.fill_checksum(IP1, IP2);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(IP1, IP2));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let datagram = &UDP_FRAME[34..];
        for len in 0..datagram.len() {
            assert_eq!(
                UdpPacket::new_checked(&datagram[..len]),
                Err(WireError::Truncated),
                "len {len}"
            );
            let unchecked = UdpPacket::new_unchecked(&datagram[..len]);
            assert!(UdpRepr::parse(&unchecked, IP1, IP2, ChecksumMode::Software).is_err());
        }
    }

    #[test]
    fn length_field_is_validated() {
        let mut buf = UDP_FRAME[34..].to_vec();
        for bad in [0u16, 7] {
            buf[4..6].copy_from_slice(&bad.to_be_bytes());
            assert_eq!(UdpPacket::new_checked(&buf[..]), Err(WireError::Malformed));
        }
        buf[4..6].copy_from_slice(&23u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&buf[..]), Err(WireError::Truncated));
        // A longer buffer (padding) is fine; the payload stops at the length.
        buf[4..6].copy_from_slice(&22u16.to_be_bytes());
        buf.extend_from_slice(&[0; 6]);
        let udp = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(udp.payload(), b"hello shardnet");
        assert!(udp.verify_checksum(IP1, IP2));
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 12];
        let mut udp = UdpPacket::new_unchecked(&mut buf[..]);
        udp.set_src_port(53);
        udp.set_dst_port(40000);
        udp.set_len(12);
        udp.payload_mut().copy_from_slice(b"ping");
        udp.fill_checksum(IP2, IP1);
        let udp = UdpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (53, 40000, 12));
        assert_eq!(udp.payload(), b"ping");
        assert!(udp.verify_checksum(IP2, IP1));
    }

    proptest! {
        #[test]
        fn new_checked_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload());
                let _ = p.verify_checksum(IP1, IP2);
            }
            let _ = UdpRepr::parse(&UdpPacket::new_unchecked(&bytes[..]), IP1, IP2, ChecksumMode::Software);
        }

        #[test]
        fn emit_parse_round_trip(src in any::<u32>(), dst in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let repr = UdpRepr { src_port: sport, dst_port: dport };
            let mut buf = vec![0u8; repr.buffer_len(payload.len())];
            buf[8..].copy_from_slice(&payload);
            repr.emit(&mut UdpPacket::new_unchecked(&mut buf[..]), src, dst, payload.len(), ChecksumMode::Software);
            let udp = UdpPacket::new_checked(&buf[..]).unwrap();
            prop_assert_ne!(udp.checksum(), 0);
            prop_assert_eq!(UdpRepr::parse(&udp, src, dst, ChecksumMode::Software), Ok(repr));
            prop_assert_eq!(udp.payload(), &payload[..]);
        }
    }
}
