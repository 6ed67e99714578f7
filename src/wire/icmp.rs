//! ICMPv4 (RFC 792): echo, and the error messages this stack sends or reads.
//!
//! ICMP has no length field: an `Icmpv4Packet` covers its whole buffer, so
//! build it over exactly the IPv4 payload (`Ipv4Packet::payload()`), or the
//! checksum will cover the wrong bytes. `new_checked` (at least 8 bytes) and
//! every getter on a checked packet never panic; with `new_unchecked`,
//! accessors panic on a buffer shorter than 8 bytes.

use super::checksum;
use super::{read_u16, write_u16, Result, WireError};

/// Length of the ICMPv4 header: type, code, checksum and the 4-byte
/// rest-of-header (identifier and sequence number for echo).
pub const ICMPV4_HEADER_LEN: usize = 8;

/// The most bytes of an offending datagram that an ICMP error quotes, so that
/// the whole error datagram stays within 576 bytes (RFC 1812 section
/// 4.3.2.3): 576 - 20 (IPv4 header) - 8 (ICMP header).
pub const ICMPV4_ERROR_QUOTE_MAX: usize = 548;

/// The ICMPv4 message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Message {
    /// 0: echo reply.
    EchoReply,
    /// 3: destination unreachable.
    DstUnreachable,
    /// 8: echo request.
    EchoRequest,
    /// 11: time exceeded.
    TimeExceeded,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Icmpv4Message {
    fn from(value: u8) -> Icmpv4Message {
        match value {
            0 => Icmpv4Message::EchoReply,
            3 => Icmpv4Message::DstUnreachable,
            8 => Icmpv4Message::EchoRequest,
            11 => Icmpv4Message::TimeExceeded,
            other => Icmpv4Message::Unknown(other),
        }
    }
}

impl From<Icmpv4Message> for u8 {
    fn from(value: Icmpv4Message) -> u8 {
        match value {
            Icmpv4Message::EchoReply => 0,
            Icmpv4Message::DstUnreachable => 3,
            Icmpv4Message::EchoRequest => 8,
            Icmpv4Message::TimeExceeded => 11,
            Icmpv4Message::Unknown(other) => other,
        }
    }
}

/// The code of a Destination Unreachable message (RFC 792, RFC 1122, RFC 1812).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4DstUnreachable {
    /// 0: net unreachable.
    NetUnreachable,
    /// 1: host unreachable.
    HostUnreachable,
    /// 2: protocol unreachable (what a host sends for a protocol it lacks).
    ProtoUnreachable,
    /// 3: port unreachable (what a host sends for a closed UDP port).
    PortUnreachable,
    /// 4: fragmentation needed and Don't Fragment set.
    FragRequired,
    /// 13: communication administratively prohibited (a rule dropped it).
    AdminProhibited,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for Icmpv4DstUnreachable {
    fn from(value: u8) -> Icmpv4DstUnreachable {
        match value {
            0 => Icmpv4DstUnreachable::NetUnreachable,
            1 => Icmpv4DstUnreachable::HostUnreachable,
            2 => Icmpv4DstUnreachable::ProtoUnreachable,
            3 => Icmpv4DstUnreachable::PortUnreachable,
            4 => Icmpv4DstUnreachable::FragRequired,
            13 => Icmpv4DstUnreachable::AdminProhibited,
            other => Icmpv4DstUnreachable::Unknown(other),
        }
    }
}

impl From<Icmpv4DstUnreachable> for u8 {
    fn from(value: Icmpv4DstUnreachable) -> u8 {
        match value {
            Icmpv4DstUnreachable::NetUnreachable => 0,
            Icmpv4DstUnreachable::HostUnreachable => 1,
            Icmpv4DstUnreachable::ProtoUnreachable => 2,
            Icmpv4DstUnreachable::PortUnreachable => 3,
            Icmpv4DstUnreachable::FragRequired => 4,
            Icmpv4DstUnreachable::AdminProhibited => 13,
            Icmpv4DstUnreachable::Unknown(other) => other,
        }
    }
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const REST_OF_HEADER: core::ops::Range<usize> = 4..8;
    pub const DATA: core::ops::RangeFrom<usize> = 8..;
}

/// A view of an ICMPv4 message over a byte buffer (exactly the IPv4 payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer after checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than 8 bytes.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < ICMPV4_HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type.
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The message code (for Destination Unreachable, see
    /// [`Icmpv4DstUnreachable`]).
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The echo identifier (meaningful for echo request and reply).
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// The echo sequence number (meaningful for echo request and reply).
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Everything after the 8-byte header: echo data, or the quoted datagram
    /// of an error message.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// True when the checksum over the whole buffer verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = value.into()
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value)
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQNO, value)
    }

    /// Everything after the 8-byte header, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes the checksum over the whole buffer and writes it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum)
    }

    /// Turns an echo request into the matching echo reply in place: the type
    /// becomes 0 and the checksum is patched incrementally (RFC 1624), so the
    /// data is not read again. A request whose checksum was wrong gives a
    /// reply whose checksum is wrong; verify before replying.
    pub fn echo_request_to_reply(&mut self) {
        let code = self.msg_code();
        let old = u16::from_be_bytes([self.buffer.as_ref()[field::TYPE], code]);
        let new = u16::from_be_bytes([Icmpv4Message::EchoReply.into(), code]);
        let patched = checksum::update(self.checksum(), old, new);
        self.set_msg_type(Icmpv4Message::EchoReply);
        if patched == 0 {
            // The incremental result 0x0000 is wrong when the reply's bytes
            // are all zero (identifier, sequence and data 0): then the right
            // checksum is 0xffff. Rare enough to settle by recomputing.
            self.fill_checksum()
        } else {
            self.set_checksum(patched)
        }
    }

    /// Writes a Destination Unreachable message with `code` that quotes the
    /// start of `offending`, the datagram that caused it (its IPv4 header
    /// first). Quotes `min(offending.len(), ICMPV4_ERROR_QUOTE_MAX, buffer
    /// length - 8)` bytes, fills the checksum over what it wrote, and returns
    /// the message length: size the IPv4 payload to it.
    ///
    /// Returns `Err(Truncated)` if the buffer cannot hold the 8-byte header
    /// plus the offending IPv4 header and 8 bytes of its payload (RFC 792's
    /// minimum), or all of `offending` if that is shorter.
    pub fn emit_dst_unreachable(
        &mut self,
        code: Icmpv4DstUnreachable,
        offending: &[u8],
    ) -> Result<usize> {
        let room = self.buffer.as_ref().len().saturating_sub(ICMPV4_HEADER_LEN);
        let offending_header_len = offending.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
        let minimum = (offending_header_len + 8).min(offending.len());
        if self.buffer.as_ref().len() < ICMPV4_HEADER_LEN || room < minimum {
            return Err(WireError::Truncated);
        }
        let quote = offending.len().min(ICMPV4_ERROR_QUOTE_MAX).min(room);
        let len = ICMPV4_HEADER_LEN + quote;
        let buf = &mut self.buffer.as_mut()[..len];
        buf[field::TYPE] = Icmpv4Message::DstUnreachable.into();
        buf[field::CODE] = code.into();
        buf[field::REST_OF_HEADER].fill(0);
        buf[ICMPV4_HEADER_LEN..].copy_from_slice(&offending[..quote]);
        write_u16(buf, field::CHECKSUM, 0);
        let sum = checksum::data(buf);
        write_u16(buf, field::CHECKSUM, !sum);
        Ok(len)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::super::captures::{
        PING_REPLY_FRAME, PING_REQUEST_FRAME, PORT_UNREACHABLE_FRAME, UDP_TO_CLOSED_PORT_FRAME,
    };
    use super::super::{ChecksumMode, IpProtocol, Ipv4Packet, Ipv4Repr};
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn icmp_of(frame: &[u8]) -> &[u8] {
        Ipv4Packet::new_checked(&frame[14..])
            .unwrap()
            .into_payload()
    }

    #[test]
    fn parse_captured_echo_request_and_reply() {
        let req = Icmpv4Packet::new_checked(icmp_of(&PING_REQUEST_FRAME)).unwrap();
        assert_eq!(req.msg_type(), Icmpv4Message::EchoRequest);
        assert_eq!(req.msg_code(), 0);
        assert_eq!(req.checksum(), 0xcf80);
        assert_eq!(req.echo_ident(), 0x3150);
        assert_eq!(req.echo_seq_no(), 1);
        assert_eq!(req.data().len(), 56);
        // A 16-byte timestamp, then the -p pattern (which ping starts mid-way).
        assert_eq!(&req.data()[20..25], &[1, 2, 3, 4, 5]);
        assert!(req.verify_checksum());

        let rep = Icmpv4Packet::new_checked(icmp_of(&PING_REPLY_FRAME)).unwrap();
        assert_eq!(rep.msg_type(), Icmpv4Message::EchoReply);
        assert_eq!(rep.checksum(), 0xd780);
        assert_eq!((rep.echo_ident(), rep.echo_seq_no()), (0x3150, 1));
        assert_eq!(rep.data(), req.data());
        assert!(rep.verify_checksum());
    }

    #[test]
    fn echo_reply_in_place_matches_linux() {
        let mut buf = icmp_of(&PING_REQUEST_FRAME).to_vec();
        let mut icmp = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        icmp.echo_request_to_reply();
        assert_eq!(&buf[..], icmp_of(&PING_REPLY_FRAME));
    }

    #[test]
    fn echo_built_from_scratch_matches_linux() {
        let req = Icmpv4Packet::new_checked(icmp_of(&PING_REQUEST_FRAME)).unwrap();
        let mut buf = [0u8; 64];
        let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[..]);
        icmp.set_msg_type(Icmpv4Message::EchoReply);
        icmp.set_msg_code(0);
        icmp.set_echo_ident(req.echo_ident());
        icmp.set_echo_seq_no(req.echo_seq_no());
        icmp.data_mut().copy_from_slice(req.data());
        icmp.fill_checksum();
        assert_eq!(icmp.checksum(), 0xd780);
        assert_eq!(&buf[..], icmp_of(&PING_REPLY_FRAME));
    }

    #[test]
    fn port_unreachable_matches_linux() {
        let offending = &UDP_TO_CLOSED_PORT_FRAME[14..];
        let mut reply = [0u8; 20 + 8 + 39];
        let (ip_buf, icmp_buf) = reply.split_at_mut(20);
        let mut icmp = Icmpv4Packet::new_unchecked(&mut icmp_buf[..]);
        let len = icmp
            .emit_dst_unreachable(Icmpv4DstUnreachable::PortUnreachable, offending)
            .unwrap();
        assert_eq!(len, 47);
        assert_eq!(icmp.checksum(), 0x11ea);
        assert_eq!(&icmp_buf[..], icmp_of(&PORT_UNREACHABLE_FRAME));
        // And the IPv4 header around it, as Linux sent it (TOS 0xc0, ident 0x9ed4).
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 99, 0, 2),
            dst_addr: Ipv4Addr::new(10, 99, 0, 1),
            next_header: IpProtocol::Icmp,
            payload_len: len,
            ttl: 64,
        };
        let mut ip = Ipv4Packet::new_unchecked(&mut ip_buf[..]);
        repr.emit(&mut ip, ChecksumMode::Software);
        ip.set_dscp_ecn(0xc0);
        ip.set_ident(0x9ed4);
        ip.set_dont_frag(false);
        ip.fill_checksum();
        assert_eq!(&reply[..], &PORT_UNREACHABLE_FRAME[14..]);
        let parsed = Icmpv4Packet::new_checked(icmp_of(&PORT_UNREACHABLE_FRAME)).unwrap();
        assert_eq!(parsed.msg_type(), Icmpv4Message::DstUnreachable);
        assert_eq!(
            Icmpv4DstUnreachable::from(parsed.msg_code()),
            Icmpv4DstUnreachable::PortUnreachable
        );
        assert_eq!(parsed.data(), offending);
    }

    #[test]
    fn dst_unreachable_quotes_at_most_what_fits() {
        let big = {
            let mut b = vec![0x45u8; 1500];
            b[1..].fill(0xab);
            b
        };
        let mut buf = vec![0u8; 2000];
        let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[..]);
        let len = icmp
            .emit_dst_unreachable(Icmpv4DstUnreachable::AdminProhibited, &big)
            .unwrap();
        assert_eq!(len, 8 + ICMPV4_ERROR_QUOTE_MAX);
        assert!(Icmpv4Packet::new_checked(&buf[..len])
            .unwrap()
            .verify_checksum());
        // A smaller buffer quotes less, down to header + 8 bytes.
        let mut small = [0u8; 8 + 28];
        let len = Icmpv4Packet::new_unchecked(&mut small[..])
            .emit_dst_unreachable(Icmpv4DstUnreachable::PortUnreachable, &big)
            .unwrap();
        assert_eq!(len, 36);
        assert!(Icmpv4Packet::new_checked(&small[..])
            .unwrap()
            .verify_checksum());
        let mut too_small = [0u8; 8 + 27];
        assert_eq!(
            Icmpv4Packet::new_unchecked(&mut too_small[..])
                .emit_dst_unreachable(Icmpv4DstUnreachable::PortUnreachable, &big),
            Err(WireError::Truncated)
        );
        let mut tiny = [0u8; 4];
        assert_eq!(
            Icmpv4Packet::new_unchecked(&mut tiny[..])
                .emit_dst_unreachable(Icmpv4DstUnreachable::PortUnreachable, &[]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let icmp = icmp_of(&PING_REQUEST_FRAME);
        for len in 0..ICMPV4_HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&icmp[..len]),
                Err(WireError::Truncated)
            );
        }
        // Beyond the header, a cut changes the bytes the checksum covers.
        for len in ICMPV4_HEADER_LEN..icmp.len() {
            assert!(!Icmpv4Packet::new_checked(&icmp[..len])
                .unwrap()
                .verify_checksum());
        }
    }

    #[test]
    fn echo_reply_of_all_zero_request() {
        // Identifier 0, sequence 0, no data: the reply's bytes are all zero,
        // so its checksum must be 0xffff, which plain RFC 1624 gets wrong.
        let mut buf = [8u8, 0, 0, 0, 0, 0, 0, 0];
        let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum();
        assert_eq!(p.checksum(), 0xf7ff);
        assert_eq!(checksum::update(0xf7ff, 0x0800, 0x0000), 0x0000);
        p.echo_request_to_reply();
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum());
    }

    #[test]
    fn corrupted_data_fails_checksum() {
        let mut buf = icmp_of(&PING_REQUEST_FRAME).to_vec();
        buf[40] ^= 0x80;
        assert!(!Icmpv4Packet::new_checked(&buf[..])
            .unwrap()
            .verify_checksum());
        let mut icmp = Icmpv4Packet::new_checked(&mut buf[..]).unwrap();
        icmp.fill_checksum();
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn type_and_code_conversions() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(Icmpv4Message::from(v)), v);
            assert_eq!(u8::from(Icmpv4DstUnreachable::from(v)), v);
        }
    }

    proptest! {
        #[test]
        fn new_checked_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Icmpv4Packet::new_checked(&bytes[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident(), p.echo_seq_no());
                let _ = (p.data(), p.verify_checksum());
            }
        }

        #[test]
        fn fill_then_verify(mut bytes in proptest::collection::vec(any::<u8>(), 8..200)) {
            let mut p = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
            p.fill_checksum();
            prop_assert!(p.verify_checksum());
        }

        #[test]
        fn echo_reply_patch_matches_fill(mut data in proptest::collection::vec(any::<u8>(), 0..100), ident in any::<u16>(), seq in any::<u16>()) {
            let mut buf = vec![0u8; 8];
            buf.append(&mut data);
            let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
            p.set_msg_type(Icmpv4Message::EchoRequest);
            p.set_echo_ident(ident);
            p.set_echo_seq_no(seq);
            p.fill_checksum();
            p.echo_request_to_reply();
            let patched = p.checksum();
            p.fill_checksum();
            prop_assert_eq!(patched, p.checksum());
            prop_assert!(p.verify_checksum());
        }
    }
}
