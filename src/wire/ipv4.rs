//! IPv4 headers (RFC 791).
//!
//! `Ipv4Packet::new_checked` validates the version, header length and total
//! length against the buffer; after it, no getter and neither `payload()` nor
//! `options()` can panic. The buffer may be longer than the total length
//! (Ethernet pads short frames to 60 bytes): `payload()` stops at the total
//! length. With `new_unchecked`, accessors panic on a buffer shorter than the
//! field they touch, and `payload()` panics if the length fields exceed it.

use super::checksum;
use super::{read_ipv4, read_u16, write_ipv4, write_u16, ChecksumMode, Result, WireError};
use core::fmt;
use std::net::Ipv4Addr;

/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;

/// The IPv4 protocol field: what the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// ICMP, 1.
    Icmp,
    /// TCP, 6.
    Tcp,
    /// UDP, 17.
    Udp,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> IpProtocol {
        match value {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> u8 {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(other) => other,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::Icmp => f.write_str("ICMP"),
            IpProtocol::Tcp => f.write_str("TCP"),
            IpProtocol::Udp => f.write_str("UDP"),
            IpProtocol::Unknown(p) => write!(f, "protocol {p}"),
        }
    }
}

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: usize = 12;
    pub const DST_ADDR: usize = 16;
}

const FLAG_DONT_FRAG: u16 = 0x4000;
const FLAG_MORE_FRAGS: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet over a byte buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Validates the header against the buffer, in this order: at least 20
    /// bytes (`Truncated`); version 4 (`Version`); header length at least 20
    /// and within the buffer (`HeaderLength`); total length at least the
    /// header length and within the buffer (`TotalLength`). The checksum is
    /// not checked here: see [`verify_checksum`](Self::verify_checksum).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < IPV4_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::Version);
        }
        let header_len = usize::from(self.header_len());
        if header_len < IPV4_HEADER_LEN || header_len > len {
            return Err(WireError::HeaderLength);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len || total_len > len {
            return Err(WireError::TotalLength);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL * 4), options included.
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP and ECN byte (formerly type of service).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// The total length of header and payload, in bytes.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DONT_FRAG != 0
    }

    /// The More Fragments flag.
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MORE_FRAGS != 0
    }

    /// The fragment offset in bytes (the field times 8).
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True for any fragment of a fragmented datagram: More Fragments set or
    /// a nonzero offset.
    pub fn is_fragment(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MORE_FRAGS | OFFSET_MASK) != 0
    }

    /// The time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The time to live (the IPv6 name, as smoltcp spells it).
    pub fn hop_limit(&self) -> u8 {
        self.ttl()
    }

    /// The protocol of the payload.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::SRC_ADDR)
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// True when the header checksum verifies (over `header_len()` bytes).
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..usize::from(self.header_len())];
        // Options are rare: the 20-byte header has a fixed-size sum.
        let sum = match <&[u8; IPV4_HEADER_LEN]>::try_from(header) {
            Ok(fixed) => checksum::ipv4_header(fixed),
            Err(_) => checksum::data(header),
        };
        sum == 0xffff
    }

    /// The options, bytes 20 to `header_len()` (empty without options).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[IPV4_HEADER_LEN..usize::from(self.header_len())]
    }

    /// The payload: bytes `header_len()..total_len()`, so without any
    /// Ethernet padding that follows.
    pub fn payload(&self) -> &[u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &self.buffer.as_ref()[range]
    }
}

impl<'a> Ipv4Packet<&'a [u8]> {
    /// The payload (`header_len()..total_len()`), borrowed for as long as the
    /// underlying buffer rather than the packet.
    pub fn into_payload(self) -> &'a [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &self.buffer[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version field.
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, 20 to 60).
    pub fn set_header_len(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((value / 4) & 0x0f);
    }

    /// Sets the DSCP and ECN byte.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value)
    }

    /// Sets the identification field.
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, value)
    }

    /// Clears the flags and the fragment offset.
    pub fn clear_flags(&mut self) {
        write_u16(self.buffer.as_mut(), field::FLG_OFF, 0)
    }

    /// Sets or clears Don't Fragment.
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flag(FLAG_DONT_FRAG, value)
    }

    /// Sets or clears More Fragments.
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flag(FLAG_MORE_FRAGS, value)
    }

    /// Sets the fragment offset in bytes (a multiple of 8).
    pub fn set_frag_offset(&mut self, value: u16) {
        let old = read_u16(self.buffer.as_ref(), field::FLG_OFF);
        let new = (old & !OFFSET_MASK) | ((value >> 3) & OFFSET_MASK);
        write_u16(self.buffer.as_mut(), field::FLG_OFF, new)
    }

    fn set_flag(&mut self, flag: u16, value: bool) {
        let old = read_u16(self.buffer.as_ref(), field::FLG_OFF);
        let new = if value { old | flag } else { old & !flag };
        write_u16(self.buffer.as_mut(), field::FLG_OFF, new)
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value
    }

    /// Sets the time to live (the IPv6 name).
    pub fn set_hop_limit(&mut self, value: u8) {
        self.set_ttl(value)
    }

    /// Sets the protocol field.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into()
    }

    /// Sets the header checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Sets the checksum field to zero (what DPDK's IP checksum offload wants).
    pub fn clear_checksum(&mut self) {
        self.set_checksum(0)
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        write_ipv4(self.buffer.as_mut(), field::SRC_ADDR, addr)
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        write_ipv4(self.buffer.as_mut(), field::DST_ADDR, addr)
    }

    /// Computes the header checksum over `header_len()` bytes and writes it.
    pub fn fill_checksum(&mut self) {
        self.clear_checksum();
        let header_len = usize::from(self.header_len());
        let sum = checksum::data(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(!sum)
    }

    /// The payload (`header_len()..total_len()`), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The fields of an IPv4 header that this stack sets or acts on.
///
/// Parsing ignores options (the payload starts after them) and the DSCP/ECN
/// byte; emitting writes a 20-byte header with no options, DSCP/ECN 0,
/// identification 0 and Don't Fragment set (RFC 6864 allows a zero
/// identification on atomic datagrams). To send another identification,
/// `set_ident` after `emit` and then `fill_checksum` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub next_header: IpProtocol,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Reads a packet: validates lengths as `new_checked` does, verifies the
    /// header checksum when `checksum` is [`ChecksumMode::Software`]
    /// (`Err(Checksum)`), and rejects fragments (`Err(Fragmented)`: check
    /// [`Ipv4Packet::is_fragment`] first to treat them otherwise).
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Ipv4Packet<T>,
        checksum: ChecksumMode,
    ) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if checksum.is_software() && !packet.verify_checksum() {
            return Err(WireError::Checksum);
        }
        if packet.is_fragment() {
            return Err(WireError::Fragmented);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len()) - usize::from(packet.header_len()),
            ttl: packet.ttl(),
        })
    }

    /// The emitted header length, 20.
    pub const fn buffer_len(&self) -> usize {
        IPV4_HEADER_LEN
    }

    /// Writes a 20-byte header. With [`ChecksumMode::Software`] the checksum
    /// is computed; with [`ChecksumMode::Offload`] it is left zero for the NIC.
    ///
    /// # Panics
    /// If the packet's buffer is shorter than 20 bytes, or `payload_len`
    /// exceeds 65515 (the total length would not fit in 16 bits).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
        checksum: ChecksumMode,
    ) {
        let total_len = u16::try_from(IPV4_HEADER_LEN + self.payload_len)
            .expect("IPv4 payload_len exceeds 65515 bytes");
        packet.set_version(4);
        packet.set_header_len(IPV4_HEADER_LEN as u8);
        packet.set_dscp_ecn(0);
        packet.set_total_len(total_len);
        packet.set_ident(0);
        packet.clear_flags();
        packet.set_dont_frag(true);
        packet.set_ttl(self.ttl);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        match checksum {
            ChecksumMode::Software => packet.fill_checksum(),
            ChecksumMode::Offload => packet.clear_checksum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::captures::{PING_REQUEST_FRAME, UDP_FRAME};
    use super::super::{EtherType, EthernetFrame};
    use super::*;
    use proptest::prelude::*;

    const IP1: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    #[test]
    fn parse_captured_ping() {
        let frame = EthernetFrame::new_checked(&PING_REQUEST_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        let ip = Ipv4Packet::new_checked(frame.payload()).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.header_len(), 20);
        assert_eq!(ip.dscp_ecn(), 0);
        assert_eq!(ip.total_len(), 84);
        assert_eq!(ip.ident(), 0x0b98);
        assert!(ip.dont_frag());
        assert!(!ip.more_frags());
        assert_eq!(ip.frag_offset(), 0);
        assert!(!ip.is_fragment());
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.next_header(), IpProtocol::Icmp);
        assert_eq!(ip.checksum(), 0x1a49);
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), IP1);
        assert_eq!(ip.dst_addr(), IP2);
        assert!(ip.options().is_empty());
        assert_eq!(ip.payload(), &PING_REQUEST_FRAME[34..]);
        let repr = Ipv4Repr::parse(&ip, ChecksumMode::Software).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                src_addr: IP1,
                dst_addr: IP2,
                next_header: IpProtocol::Icmp,
                payload_len: 64,
                ttl: 64
            }
        );
    }

    #[test]
    fn emit_then_set_ident_reproduces_captured_udp_header() {
        let repr = Ipv4Repr {
            src_addr: IP1,
            dst_addr: IP2,
            next_header: IpProtocol::Udp,
            payload_len: 22,
            ttl: 64,
        };
        let mut buf = [0u8; 42];
        buf[20..].copy_from_slice(&UDP_FRAME[34..]);
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut ip, ChecksumMode::Software);
        assert!(ip.verify_checksum());
        ip.set_ident(0x15a4);
        ip.fill_checksum();
        assert_eq!(ip.checksum(), 0x1057);
        assert_eq!(&buf[..], &UDP_FRAME[14..]);
        let parsed = Ipv4Repr::parse(
            &Ipv4Packet::new_checked(&buf[..]).unwrap(),
            ChecksumMode::Software,
        );
        assert_eq!(parsed, Ok(repr));
    }

    #[test]
    fn emit_with_offload_leaves_checksum_zero() {
        let repr = Ipv4Repr {
            src_addr: IP1,
            dst_addr: IP2,
            next_header: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 1,
        };
        let mut buf = [0xffu8; 20];
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut ip, ChecksumMode::Offload);
        assert_eq!(ip.checksum(), 0);
        assert!(!ip.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&ip, ChecksumMode::Offload), Ok(repr));
        assert_eq!(
            Ipv4Repr::parse(&ip, ChecksumMode::Software),
            Err(WireError::Checksum)
        );
    }

    #[test]
    fn payload_ignores_ethernet_padding() {
        let mut padded = [0u8; 46];
        padded[..42].copy_from_slice(&UDP_FRAME[14..]);
        let ip = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(ip.payload(), &UDP_FRAME[34..]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let packet = &PING_REQUEST_FRAME[14..];
        for len in 0..packet.len() {
            let expected = if len < 20 {
                WireError::Truncated
            } else {
                WireError::TotalLength
            };
            assert_eq!(
                Ipv4Packet::new_checked(&packet[..len]),
                Err(expected),
                "len {len}"
            );
            let unchecked = Ipv4Packet::new_unchecked(&packet[..len]);
            assert!(Ipv4Repr::parse(&unchecked, ChecksumMode::Offload).is_err());
        }
    }

    #[test]
    fn bad_headers_are_rejected_by_reason() {
        let good = &PING_REQUEST_FRAME[14..];
        let with = |offset: usize, value: u8| {
            let mut b = good.to_vec();
            b[offset] = value;
            b
        };
        assert_eq!(
            Ipv4Packet::new_checked(&with(0, 0x65)[..]),
            Err(WireError::Version)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&with(0, 0x44)[..]),
            Err(WireError::HeaderLength)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&with(0, 0x40)[..]),
            Err(WireError::HeaderLength)
        );
        // IHL 15 (60 bytes) is within this 84-byte buffer; past a short one it is not.
        assert!(Ipv4Packet::new_checked(&with(0, 0x4f)[..]).is_ok());
        assert_eq!(
            Ipv4Packet::new_checked(&with(0, 0x4f)[..40]),
            Err(WireError::HeaderLength)
        );
        // Total length 19 < header, and 85 > buffer.
        assert_eq!(
            Ipv4Packet::new_checked(&with(3, 19)[..]),
            Err(WireError::TotalLength)
        );
        assert_eq!(
            Ipv4Packet::new_checked(&with(3, 85)[..]),
            Err(WireError::TotalLength)
        );
        // A flipped bit anywhere in the header fails the checksum.
        for offset in 0..20 {
            let mut b = good.to_vec();
            b[offset] ^= 0x01;
            if let Ok(ip) = Ipv4Packet::new_checked(&b[..]) {
                assert!(!ip.verify_checksum(), "offset {offset}");
                assert_eq!(
                    Ipv4Repr::parse(&ip, ChecksumMode::Software),
                    Err(WireError::Checksum)
                );
            }
        }
    }

    #[test]
    fn options_are_skipped() {
        // The ping header with a 4-byte option (NOP NOP NOP EOL).
        let mut b = [0u8; 88];
        b[..20].copy_from_slice(&PING_REQUEST_FRAME[14..34]);
        b[20..24].copy_from_slice(&[1, 1, 1, 0]);
        b[24..].copy_from_slice(&PING_REQUEST_FRAME[34..]);
        let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
        ip.set_header_len(24);
        ip.set_total_len(88);
        ip.fill_checksum();
        let ip = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.options(), &[1, 1, 1, 0]);
        assert_eq!(ip.payload(), &PING_REQUEST_FRAME[34..]);
        assert!(ip.verify_checksum());
        assert_eq!(
            Ipv4Repr::parse(&ip, ChecksumMode::Software)
                .unwrap()
                .payload_len,
            64
        );
    }

    #[test]
    fn fragments() {
        let mut b = PING_REQUEST_FRAME[14..].to_vec();
        let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
        ip.set_dont_frag(false);
        ip.set_more_frags(true);
        ip.fill_checksum();
        assert!(ip.is_fragment() && ip.more_frags() && !ip.dont_frag());
        assert_eq!(
            Ipv4Repr::parse(&ip, ChecksumMode::Software),
            Err(WireError::Fragmented)
        );
        ip.set_more_frags(false);
        ip.set_frag_offset(1480);
        ip.fill_checksum();
        assert_eq!(ip.frag_offset(), 1480);
        assert_eq!(read_u16(&b, 6), 1480 / 8);
        let ip = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(ip.is_fragment());
        assert_eq!(
            Ipv4Repr::parse(&ip, ChecksumMode::Software),
            Err(WireError::Fragmented)
        );
    }

    #[test]
    fn incremental_ttl_update_matches_recompute() {
        // What a forwarder does: decrement TTL and patch the checksum (RFC 1624).
        let mut b = PING_REQUEST_FRAME[14..].to_vec();
        let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
        let old_word = u16::from_be_bytes([ip.ttl(), 1]);
        ip.set_ttl(ip.ttl() - 1);
        let new_word = u16::from_be_bytes([ip.ttl(), 1]);
        let patched = checksum::update(ip.checksum(), old_word, new_word);
        ip.fill_checksum();
        assert_eq!(ip.checksum(), patched);
    }

    #[test]
    fn setters_round_trip() {
        let mut b = [0u8; 20];
        let mut ip = Ipv4Packet::new_unchecked(&mut b[..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_dscp_ecn(0xb8);
        ip.set_total_len(20);
        ip.set_ident(0xbeef);
        ip.set_hop_limit(7);
        ip.set_next_header(IpProtocol::Unknown(99));
        ip.set_src_addr(IP2);
        ip.set_dst_addr(IP1);
        ip.fill_checksum();
        let ip = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(ip.dscp_ecn(), 0xb8);
        assert_eq!(ip.ident(), 0xbeef);
        assert_eq!(ip.ttl(), 7);
        assert_eq!(ip.next_header(), IpProtocol::Unknown(99));
        assert_eq!((ip.src_addr(), ip.dst_addr()), (IP2, IP1));
        assert!(ip.verify_checksum());
        assert!(ip.payload().is_empty());
    }

    proptest! {
        #[test]
        fn new_checked_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(ip) = Ipv4Packet::new_checked(&bytes[..]) {
                let _ = (ip.version(), ip.header_len(), ip.total_len(), ip.ident(), ip.frag_offset());
                let _ = (ip.src_addr(), ip.dst_addr(), ip.next_header(), ip.checksum());
                let _ = (ip.verify_checksum(), ip.options(), ip.payload(), ip.is_fragment());
                let _ = Ipv4Repr::parse(&ip, ChecksumMode::Software);
            }
            let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&bytes[..]), ChecksumMode::Offload);
        }

        #[test]
        fn mostly_valid_headers_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 20..128), ihl in 0u8..16, total in any::<u16>()) {
            // Steer the fuzzing towards the length checks.
            bytes[0] = 0x40 | ihl;
            bytes[2..4].copy_from_slice(&(total % 140).to_be_bytes());
            if let Ok(ip) = Ipv4Packet::new_checked(&bytes[..]) {
                prop_assert!(ip.payload().len() <= bytes.len());
                let _ = (ip.verify_checksum(), ip.options());
                let _ = Ipv4Repr::parse(&ip, ChecksumMode::Software);
            }
        }

        #[test]
        fn repr_round_trips(src in any::<u32>(), dst in any::<u32>(), proto in any::<u8>(), len in 0usize..100, ttl in any::<u8>()) {
            let repr = Ipv4Repr {
                src_addr: Ipv4Addr::from(src),
                dst_addr: Ipv4Addr::from(dst),
                next_header: IpProtocol::from(proto),
                payload_len: len,
                ttl,
            };
            let mut buf = vec![0u8; 20 + len];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), ChecksumMode::Software);
            let ip = Ipv4Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(ip.verify_checksum());
            prop_assert_eq!(Ipv4Repr::parse(&ip, ChecksumMode::Software), Ok(repr));
        }
    }
}
