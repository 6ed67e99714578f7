//! ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses only.
//!
//! `ArpPacket::new_checked` accepts only hardware type 1 (Ethernet) with
//! protocol type 0x0800 (IPv4), 6-byte and 4-byte addresses; it and every
//! getter on a checked packet never panic. With `new_unchecked`, accessors
//! panic on a buffer shorter than [`ARP_PACKET_LEN`].

use super::{read_ipv4, read_u16, write_ipv4, write_u16, EthernetAddress, Result, WireError};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_PACKET_LEN: usize = 28;

const HARDWARE_ETHERNET: u16 = 1;
const PROTOCOL_IPV4: u16 = 0x0800;

mod field {
    use core::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: usize = 14;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: usize = 24;
}

/// The ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// 1: who has the target protocol address?
    Request,
    /// 2: the sender protocol address is at the sender hardware address.
    Reply,
    /// Any other code (RARP and friends).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> ArpOperation {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> u16 {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// A view of an Ethernet/IPv4 ARP packet over a byte buffer (the Ethernet
/// payload; the buffer may be longer, as with padded minimum-size frames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after checking its length and that it is Ethernet/IPv4
    /// ARP: `Truncated` below 28 bytes, `Unsupported` for another hardware or
    /// protocol type, `Malformed` for address lengths other than 6 and 4.
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        if packet.hardware_type() != HARDWARE_ETHERNET || packet.protocol_type() != PROTOCOL_IPV4 {
            return Err(WireError::Unsupported);
        }
        if packet.hardware_len() != 6 || packet.protocol_len() != 4 {
            return Err(WireError::Malformed);
        }
        Ok(packet)
    }

    /// `Err(Truncated)` if the buffer is shorter than 28 bytes.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < ARP_PACKET_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE)
    }

    /// The protocol type (0x0800 for IPv4).
    pub fn protocol_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PTYPE)
    }

    /// The hardware address length (6 for Ethernet).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// The protocol address length (4 for IPv4).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The operation.
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(read_u16(self.buffer.as_ref(), field::OPER))
    }

    /// The sender's MAC address.
    pub fn source_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    /// The sender's IPv4 address.
    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::SPA)
    }

    /// The target's MAC address (zero in a request).
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    /// The target's IPv4 address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::HTYPE, value)
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::PTYPE, value)
    }

    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value
    }

    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, value: ArpOperation) {
        write_u16(self.buffer.as_mut(), field::OPER, value.into())
    }

    /// Sets the sender's MAC address.
    pub fn set_source_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0)
    }

    /// Sets the sender's IPv4 address.
    pub fn set_source_protocol_addr(&mut self, addr: Ipv4Addr) {
        write_ipv4(self.buffer.as_mut(), field::SPA, addr)
    }

    /// Sets the target's MAC address.
    pub fn set_target_hardware_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0)
    }

    /// Sets the target's IPv4 address.
    pub fn set_target_protocol_addr(&mut self, addr: Ipv4Addr) {
        write_ipv4(self.buffer.as_mut(), field::TPA, addr)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for ArpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The content of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request, reply, or another code.
    pub operation: ArpOperation,
    /// The sender's MAC address.
    pub source_hardware_addr: EthernetAddress,
    /// The sender's IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// The target's MAC address (zero in a request).
    pub target_hardware_addr: EthernetAddress,
    /// The target's IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Reads an ARP packet, validating it as `new_checked` does (so it is
    /// safe on a packet built with `new_unchecked`). Unknown operations are
    /// returned as [`ArpOperation::Unknown`], not rejected.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        let packet = ArpPacket::new_checked(packet.buffer.as_ref())?;
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// The emitted length, 28.
    pub const fn buffer_len(&self) -> usize {
        ARP_PACKET_LEN
    }

    /// Writes all 28 bytes, the fixed Ethernet/IPv4 fields included.
    ///
    /// # Panics
    /// If the packet's buffer is shorter than 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HARDWARE_ETHERNET);
        packet.set_protocol_type(PROTOCOL_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(self.source_hardware_addr);
        packet.set_source_protocol_addr(self.source_protocol_addr);
        packet.set_target_hardware_addr(self.target_hardware_addr);
        packet.set_target_protocol_addr(self.target_protocol_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::super::captures::{
        ARP_REPLY_FRAME as REPLY_FRAME, ARP_REQUEST_FRAME as REQUEST_FRAME,
    };
    use super::super::{EtherType, EthernetFrame};
    use super::*;
    use proptest::prelude::*;

    const MAC1: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const MAC2: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
    const IP1: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    fn request_repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: MAC1,
            source_protocol_addr: IP1,
            target_hardware_addr: EthernetAddress::UNSPECIFIED,
            target_protocol_addr: IP2,
        }
    }

    #[test]
    fn parse_captured_request() {
        let frame = EthernetFrame::new_checked(&REQUEST_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Arp);
        let packet = ArpPacket::new_checked(frame.payload()).unwrap();
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(packet.source_hardware_addr(), MAC1);
        assert_eq!(packet.source_protocol_addr(), IP1);
        assert_eq!(packet.target_hardware_addr(), EthernetAddress::UNSPECIFIED);
        assert_eq!(packet.target_protocol_addr(), IP2);
        assert_eq!(ArpRepr::parse(&packet), Ok(request_repr()));
    }

    #[test]
    fn emit_reproduces_captured_reply() {
        let repr = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: MAC2,
            source_protocol_addr: IP2,
            target_hardware_addr: MAC1,
            target_protocol_addr: IP1,
        };
        assert_eq!(repr.buffer_len(), 28);
        let mut buf = [0xeeu8; 28];
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &REPLY_FRAME[14..]);
        let parsed = ArpRepr::parse(&ArpPacket::new_checked(&REPLY_FRAME[14..]).unwrap());
        assert_eq!(parsed, Ok(repr));
    }

    #[test]
    fn request_round_trips() {
        let mut buf = [0u8; 28];
        request_repr().emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &REQUEST_FRAME[14..]);
    }

    #[test]
    fn padded_frame_is_accepted() {
        // Minimum-size Ethernet frames carry 18 bytes of padding after ARP.
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&REQUEST_FRAME[14..]);
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&padded[..]).unwrap()),
            Ok(request_repr())
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let payload = &REQUEST_FRAME[14..];
        for len in 0..payload.len() {
            assert_eq!(
                ArpPacket::new_checked(&payload[..len]),
                Err(WireError::Truncated),
                "len {len}"
            );
            assert!(ArpRepr::parse(&ArpPacket::new_unchecked(&payload[..len])).is_err());
        }
    }

    #[test]
    fn other_hardware_protocol_or_lengths_are_rejected() {
        let cases: [(usize, u8, WireError); 4] = [
            (1, 6, WireError::Unsupported),    // hardware type 6 (IEEE 802)
            (2, 0x86, WireError::Unsupported), // protocol type 0x86dd-ish
            (4, 8, WireError::Malformed),      // hardware length 8
            (5, 16, WireError::Malformed),     // protocol length 16
        ];
        for (offset, value, err) in cases {
            let mut buf = REQUEST_FRAME;
            buf[14 + offset] = value;
            assert_eq!(ArpPacket::new_checked(&buf[14..]), Err(err));
            assert_eq!(
                ArpRepr::parse(&ArpPacket::new_unchecked(&buf[14..])),
                Err(err)
            );
        }
    }

    #[test]
    fn unknown_operation_is_reported() {
        let mut buf = REQUEST_FRAME;
        buf[21] = 3; // RARP request
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&buf[14..]).unwrap()).unwrap();
        assert_eq!(repr.operation, ArpOperation::Unknown(3));
        assert_eq!(u16::from(repr.operation), 3);
    }

    proptest! {
        #[test]
        fn new_checked_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = ArpPacket::new_checked(&bytes[..]) {
                let _ = (p.operation(), p.source_hardware_addr(), p.source_protocol_addr());
                let _ = (p.target_hardware_addr(), p.target_protocol_addr());
                prop_assert!(ArpRepr::parse(&p).is_ok());
            }
            let _ = ArpRepr::parse(&ArpPacket::new_unchecked(&bytes[..]));
        }

        #[test]
        fn valid_header_with_any_fields_parses(fields in any::<[u8; 20]>()) {
            let mut buf = [0u8; 28];
            buf[..8].copy_from_slice(&REQUEST_FRAME[14..22]);
            buf[8..].copy_from_slice(&fields);
            let repr = ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()).unwrap();
            let mut out = [0u8; 28];
            repr.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
            prop_assert_eq!(out, buf);
        }
    }
}
