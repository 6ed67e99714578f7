//! TCP segments (RFC 9293) over IPv4, and the options codec (RFC 9293 MSS,
//! RFC 7323 window scale and timestamps, RFC 2018 SACK).
//!
//! Build a `TcpPacket` over exactly the IPv4 payload (`Ipv4Packet::payload()`):
//! TCP has no length field of its own, so the payload runs from the end of the
//! header to the end of the buffer and the checksum covers the whole buffer.
//! Sequence and acknowledgment numbers are plain `u32` here; the engine wraps
//! them in its own modular type.
//!
//! # Panics
//!
//! - `TcpPacket::new_checked` never panics; after it no getter, `options()`,
//!   `payload()` or checksum call can panic.
//! - With `new_unchecked`, getters and setters panic on a buffer shorter than
//!   20 bytes, and `options()`, `payload()` and their `_mut` forms panic if the
//!   data offset exceeds the buffer (`options()` also if it is below 5 words).
//! - `set_header_len` can make later `options()`/`payload()` calls panic if the
//!   new length exceeds the buffer.
//! - [`TcpOptions::parse`] and [`TcpHeader::parse`] never panic, whatever the
//!   bytes.
//! - [`TcpOptions::emit`] panics if the buffer is shorter than
//!   [`TcpOptions::buffer_len`], and [`TcpHeader::emit`] if it is shorter than
//!   [`TcpHeader::header_len`].

use super::checksum;
use super::{read_u16, read_u32, write_u16, write_u32, IpProtocol, Result, WireError};
use core::fmt;
use core::ops::{BitOr, BitOrAssign};
use std::net::Ipv4Addr;

/// Length of a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;

/// Length of the longest TCP header (data offset 15), options included.
pub const TCP_MAX_HEADER_LEN: usize = 60;

/// Most option bytes a header can carry.
pub const TCP_MAX_OPTIONS_LEN: usize = TCP_MAX_HEADER_LEN - TCP_HEADER_LEN;

/// Most SACK blocks one SACK option can carry (2 + 8 * 4 = 34 bytes).
pub const TCP_MAX_SACK_BLOCKS: usize = 4;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Option kinds (IANA "TCP Option Kind Numbers").
mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// TCP flag bits: the low 8 bits of the flags field (the reserved bits and
/// the historic NS bit are not represented).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// No flag set.
    pub const fn empty() -> Self {
        TcpFlags(0)
    }

    /// True when every bit of `other` is set in `self` (so always true for an
    /// empty `other`).
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when at least one bit of `other` is set in `self`.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// The bits of both.
    pub const fn union(self, other: TcpFlags) -> Self {
        TcpFlags(self.0 | other.0)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, other: TcpFlags) -> TcpFlags {
        self.union(other)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, other: TcpFlags) {
        *self = self.union(other)
    }
}

/// Prints the set flags from the lowest bit up, as `SYN|ACK`; no flag
/// prints as `(none)`.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        if self.0 == 0 {
            return f.write_str("(none)");
        }
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The same as `Display` (`SYN|ACK`), so that assertions on flags read well.
impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A view of a TCP segment over a byte buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Validates the header against the buffer, in this order: at least 20
    /// bytes (`Truncated`); data offset at least 5 words (`HeaderLength`);
    /// header length within the buffer (`Truncated`). Neither the checksum nor
    /// the options are checked here.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < TCP_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < TCP_HEADER_LEN {
            return Err(WireError::HeaderLength);
        }
        if header_len > len {
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

    /// The sequence number.
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// The acknowledgment number (meaningful only with ACK set).
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// The header length in bytes (data offset * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flags: the low 8 bits of the flags field; the reserved bits and
    /// NS are ignored.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The window field, not scaled.
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The urgent pointer (meaningful only with URG set).
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options, bytes 20 to `header_len()` (empty without options).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[TCP_HEADER_LEN..self.header_len()]
    }

    /// The payload: from `header_len()` to the end of the buffer.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// True when the checksum verifies against the IPv4 pseudo-header of
    /// `src` and `dst`, over the whole buffer (RFC 9293 section 3.1).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let segment = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::Tcp, segment.len() as u32),
            checksum::data(segment),
        ]);
        sum == 0xffff
    }
}

impl<'a> TcpPacket<&'a [u8]> {
    /// The payload (`header_len()..`), borrowed for as long as the underlying
    /// buffer rather than the packet.
    pub fn into_payload(self) -> &'a [u8] {
        let header_len = self.header_len();
        &self.buffer[header_len..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value)
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value)
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM, value)
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM, value)
    }

    /// Sets the header length in bytes (a multiple of 4, 20 to 60); keeps the
    /// other bits of its byte.
    pub fn set_header_len(&mut self, value: usize) {
        debug_assert!(
            value % 4 == 0 && (TCP_HEADER_LEN..=TCP_MAX_HEADER_LEN).contains(&value),
            "TCP header length {value}"
        );
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | ((((value / 4) as u8) & 0x0f) << 4);
    }

    /// Sets the flags and clears the reserved bits and NS.
    pub fn set_flags(&mut self, value: TcpFlags) {
        let buf = self.buffer.as_mut();
        buf[field::DATA_OFF] &= 0xf0;
        buf[field::FLAGS] = value.0;
    }

    /// Sets the window field.
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE, value)
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value)
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value)
    }

    /// The options (`20..header_len()`), mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[TCP_HEADER_LEN..header_len]
    }

    /// The payload (`header_len()..`), mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[header_len..]
    }

    /// Computes the checksum over the pseudo-header and the whole buffer and
    /// writes it.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let segment = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header(src, dst, IpProtocol::Tcp, segment.len() as u32),
            checksum::data(segment),
        ]);
        self.set_checksum(!sum)
    }

    /// Writes the non-complemented pseudo-header sum (with the buffer length
    /// as the length) into the checksum field, which is what a NIC's TCP
    /// checksum offload expects (DPDK's `rte_ipv4_phdr_cksum`).
    pub fn fill_pseudo_header_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = self.buffer.as_ref().len() as u32;
        self.set_checksum(checksum::pseudo_header(src, dst, IpProtocol::Tcp, len))
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The options of one segment that this stack understands.
///
/// `parse` skips unknown options and stops at End of Option List; it returns
/// `Err(Malformed)` for a length byte of 0 or 1, an option running past the
/// end, or a known option with the wrong length. If an option appears twice
/// the last one wins.
///
/// `PartialEq` compares all four `sack_blocks`, valid or not: `parse` leaves
/// the unused ones zero, so build values the same way (`..Default::default()`)
/// when comparing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOptions {
    /// Maximum segment size (kind 2, length 4).
    pub mss: Option<u16>,
    /// Window scale shift (kind 3, length 3), as received: the engine clamps
    /// it to 14 (RFC 7323 section 2.3).
    pub window_scale: Option<u8>,
    /// SACK permitted (kind 4, length 2).
    pub sack_permitted: bool,
    /// Timestamps (kind 8, length 10): (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks (kind 5, length 2 + 8n): (left edge, right edge); only the
    /// first `sack_count` are valid.
    pub sack_blocks: [(u32, u32); TCP_MAX_SACK_BLOCKS],
    /// How many of `sack_blocks` are valid (0 to 4).
    pub sack_count: u8,
}

impl TcpOptions {
    /// Reads an option list (`TcpPacket::options()`). Never panics.
    pub fn parse(bytes: &[u8]) -> Result<TcpOptions> {
        let mut options = TcpOptions::default();
        let mut at = 0;
        while at < bytes.len() {
            let kind = bytes[at];
            match kind {
                kind::END => break,
                kind::NOP => {
                    at += 1;
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*bytes.get(at + 1).ok_or(WireError::Malformed)?);
            if len < 2 {
                return Err(WireError::Malformed);
            }
            let body = bytes.get(at + 2..at + len).ok_or(WireError::Malformed)?;
            match (kind, len) {
                (kind::MSS, 4) => options.mss = Some(read_u16(body, 0)),
                (kind::WINDOW_SCALE, 3) => options.window_scale = Some(body[0]),
                (kind::SACK_PERMITTED, 2) => options.sack_permitted = true,
                (kind::TIMESTAMPS, 10) => {
                    options.timestamps = Some((read_u32(body, 0), read_u32(body, 4)))
                }
                (kind::SACK, _)
                    if len >= 10 && (len - 2) % 8 == 0 && (len - 2) / 8 <= TCP_MAX_SACK_BLOCKS =>
                {
                    let count = (len - 2) / 8;
                    options.sack_blocks = [(0, 0); TCP_MAX_SACK_BLOCKS];
                    for (i, block) in options.sack_blocks[..count].iter_mut().enumerate() {
                        *block = (read_u32(body, 8 * i), read_u32(body, 8 * i + 4));
                    }
                    options.sack_count = count as u8;
                }
                (
                    kind::MSS
                    | kind::WINDOW_SCALE
                    | kind::SACK_PERMITTED
                    | kind::TIMESTAMPS
                    | kind::SACK,
                    _,
                ) => return Err(WireError::Malformed),
                _ => {}
            }
            at += len;
        }
        Ok(options)
    }

    /// The valid SACK blocks.
    pub fn sack(&self) -> &[(u32, u32)] {
        &self.sack_blocks[..usize::from(self.sack_count).min(TCP_MAX_SACK_BLOCKS)]
    }

    /// Bytes of every option except the SACK blocks, as `emit` lays them out.
    fn len_without_sack(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += 4;
        }
        if self.timestamps.is_some() {
            // With SACK permitted folded in, or NOP-padded.
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// How many SACK blocks `emit` writes: the valid ones, less those from the
    /// end that would not fit in 40 bytes.
    fn sack_blocks_emitted(&self) -> usize {
        // Two NOPs, kind and length, then 8 bytes a block.
        let room = (TCP_MAX_OPTIONS_LEN - self.len_without_sack()).saturating_sub(4) / 8;
        self.sack().len().min(room)
    }

    /// The bytes `emit` writes: a multiple of 4, at most 40.
    pub fn buffer_len(&self) -> usize {
        match self.sack_blocks_emitted() {
            0 => self.len_without_sack(),
            n => self.len_without_sack() + 4 + 8 * n,
        }
    }

    /// Writes the options into `buffer[..buffer_len()]` and returns
    /// `buffer_len()`, laid out as Linux does so that every 32-bit field is
    /// aligned: MSS; then timestamps, with SACK permitted folded into their
    /// padding (`4,2,8,10,..`) or NOP-padded (`1,1,8,10,..`); SACK permitted
    /// alone (`1,1,4,2`); window scale (`1,3,3,ws`); SACK blocks
    /// (`1,1,5,2+8n,..`). SACK blocks that would take the options past 40
    /// bytes are dropped from the end (with timestamps at most 3 fit, with
    /// MSS, timestamps and window scale 2).
    ///
    /// # Panics
    /// If `buffer` is shorter than `buffer_len()`.
    pub fn emit(&self, buffer: &mut [u8]) -> usize {
        let len = self.buffer_len();
        debug_assert!(
            buffer.len() >= len,
            "TCP options need {len} bytes, buffer has {}",
            buffer.len()
        );
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buffer[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            put(&[kind::MSS, 4, hi, lo]);
        }
        if let Some((tsval, tsecr)) = self.timestamps {
            if self.sack_permitted {
                put(&[kind::SACK_PERMITTED, 2, kind::TIMESTAMPS, 10]);
            } else {
                put(&[kind::NOP, kind::NOP, kind::TIMESTAMPS, 10]);
            }
            put(&tsval.to_be_bytes());
            put(&tsecr.to_be_bytes());
        } else if self.sack_permitted {
            put(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]);
        }
        if let Some(shift) = self.window_scale {
            put(&[kind::NOP, kind::WINDOW_SCALE, 3, shift]);
        }
        let blocks = self.sack_blocks_emitted();
        if blocks > 0 {
            put(&[kind::NOP, kind::NOP, kind::SACK, (2 + 8 * blocks) as u8]);
            for &(left, right) in &self.sack_blocks[..blocks] {
                put(&left.to_be_bytes());
                put(&right.to_be_bytes());
            }
        }
        debug_assert_eq!(at, len);
        len
    }
}

/// A TCP header as the engine sees it; the payload stays in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window field, not scaled.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: TcpOptions,
}

impl TcpHeader {
    /// Reads a header: validates lengths as `new_checked` does, then parses
    /// the options ([`TcpOptions::parse`]). The checksum is not checked here:
    /// see [`TcpPacket::verify_checksum`]. The payload is `packet.payload()`.
    /// Never panics, even on a packet built by `new_unchecked`.
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> Result<TcpHeader> {
        packet.check_len()?;
        Ok(TcpHeader {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq_number(),
            ack: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window_len(),
            urgent: packet.urgent_at(),
            options: TcpOptions::parse(packet.options())?,
        })
    }

    /// The emitted header length: 20 plus the options' `buffer_len()`.
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options.buffer_len()
    }

    /// Writes the header and options into `buffer[..header_len()]` with a
    /// zero checksum field, and returns `header_len()`. Put the payload after
    /// it, then build a `TcpPacket` over header and payload and call
    /// `fill_checksum` (or `fill_pseudo_header_checksum` for offload).
    ///
    /// # Panics
    /// If `buffer` is shorter than `header_len()`.
    pub fn emit(&self, buffer: &mut [u8]) -> usize {
        let header_len = self.header_len();
        let mut packet = TcpPacket::new_unchecked(&mut buffer[..header_len]);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq);
        packet.set_ack_number(self.ack);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window);
        packet.set_checksum(0);
        packet.set_urgent_at(self.urgent);
        self.options.emit(packet.options_mut());
        header_len
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ChecksumMode, Ipv4Packet, Ipv4Repr};
    use super::*;
    use proptest::prelude::*;

    const IP1: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    /// IPv4 + TCP SYN from 10.99.0.1:40002 to 10.99.0.2:5001, built by hand in
    /// the shape of a Linux 6.x SYN on a 1500-byte-MTU link: window 64240 and
    /// options `02 04 05 b4 04 02 08 0a TSval TSecr 01 03 03 07` (MSS 1460,
    /// SACK permitted, timestamps, NOP, window scale 7). Not a capture: the
    /// checksums (IP 0xbaa5, TCP 0x44ae) were computed with a separate
    /// python3 implementation of RFC 1071, not with this crate.
    const SYN_PACKET: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x6b, 0x4e, 0x40, 0x00, 0x40, 0x06, 0xba, 0xa5, 0x0a, 0x63, 0x00,
        0x01, 0x0a, 0x63, 0x00, 0x02, 0x9c, 0x42, 0x13, 0x89, 0x5e, 0x3c, 0x1a, 0x27, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x44, 0xae, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0x9c, 0x1b, 0x2f, 0x4e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    /// The next segment of that connection, built the same way: PSH|ACK,
    /// window 502, options `01 01 08 0a TSval TSecr`, the 9-byte (odd) payload
    /// "hello tcp". IP checksum 0xbaa3, TCP checksum 0x2754.
    const DATA_PACKET: [u8; 61] = [
        0x45, 0x00, 0x00, 0x3d, 0x6b, 0x4f, 0x40, 0x00, 0x40, 0x06, 0xba, 0xa3, 0x0a, 0x63, 0x00,
        0x01, 0x0a, 0x63, 0x00, 0x02, 0x9c, 0x42, 0x13, 0x89, 0x5e, 0x3c, 0x1a, 0x28, 0x1f, 0x2e,
        0x3d, 0x4c, 0x80, 0x18, 0x01, 0xf6, 0x27, 0x54, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x9c,
        0x1b, 0x2f, 0x9a, 0x41, 0xd0, 0x7e, 0x13, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x74, 0x63,
        0x70,
    ];

    fn syn_header() -> TcpHeader {
        TcpHeader {
            src_port: 40002,
            dst_port: 5001,
            seq: 0x5e3c_1a27,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 64240,
            urgent: 0,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some((0x9c1b_2f4e, 0)),
                ..Default::default()
            },
        }
    }

    fn with_sack(mut options: TcpOptions, blocks: &[(u32, u32)]) -> TcpOptions {
        options.sack_blocks = [(0, 0); TCP_MAX_SACK_BLOCKS];
        options.sack_blocks[..blocks.len()].copy_from_slice(blocks);
        options.sack_count = blocks.len() as u8;
        options
    }

    #[test]
    fn parse_linux_syn_through_ipv4() {
        let ip = Ipv4Packet::new_checked(&SYN_PACKET[..]).unwrap();
        let ip_repr = Ipv4Repr::parse(&ip, ChecksumMode::Software).unwrap();
        assert_eq!(ip_repr.next_header, IpProtocol::Tcp);
        assert_eq!(ip_repr.payload_len, 40);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.src_port(), 40002);
        assert_eq!(tcp.dst_port(), 5001);
        assert_eq!(tcp.seq_number(), 0x5e3c_1a27);
        assert_eq!(tcp.ack_number(), 0);
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.flags(), TcpFlags::SYN);
        assert_eq!(tcp.window_len(), 64240);
        assert_eq!(tcp.checksum(), 0x44ae);
        assert_eq!(tcp.urgent_at(), 0);
        assert_eq!(tcp.options(), &SYN_PACKET[40..60]);
        assert!(tcp.payload().is_empty());
        assert!(tcp.verify_checksum(IP1, IP2));
        // The pseudo-header matters.
        assert!(!tcp.verify_checksum(IP2, Ipv4Addr::new(10, 99, 0, 3)));
        let options = TcpOptions::parse(tcp.options()).unwrap();
        assert_eq!(options.mss, Some(1460));
        assert!(options.sack_permitted);
        assert_eq!(options.timestamps, Some((0x9c1b_2f4e, 0)));
        assert_eq!(options.window_scale, Some(7));
        assert!(options.sack().is_empty());
        assert_eq!(TcpHeader::parse(&tcp), Ok(syn_header()));
    }

    #[test]
    fn emit_reproduces_linux_syn() {
        let header = syn_header();
        assert_eq!(header.options.buffer_len(), 20);
        assert_eq!(header.header_len(), 40);
        let mut buf = [0xaau8; 40];
        assert_eq!(header.emit(&mut buf), 40);
        let mut expected = SYN_PACKET[20..].to_vec();
        expected[16..18].copy_from_slice(&[0, 0]);
        assert_eq!(&buf[..], &expected[..]);
        let mut tcp = TcpPacket::new_checked(&mut buf[..]).unwrap();
        tcp.fill_checksum(IP1, IP2);
        assert_eq!(&buf[..], &SYN_PACKET[20..]);
    }

    #[test]
    fn data_segment_with_odd_payload() {
        let ip = Ipv4Packet::new_checked(&DATA_PACKET[..]).unwrap();
        Ipv4Repr::parse(&ip, ChecksumMode::Software).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.header_len(), 32);
        assert_eq!(tcp.flags(), TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(tcp.payload(), b"hello tcp");
        assert!(tcp.verify_checksum(IP1, IP2));
        let header = TcpHeader::parse(&tcp).unwrap();
        assert_eq!(
            header,
            TcpHeader {
                src_port: 40002,
                dst_port: 5001,
                seq: 0x5e3c_1a28,
                ack: 0x1f2e_3d4c,
                flags: TcpFlags::PSH | TcpFlags::ACK,
                window: 502,
                urgent: 0,
                options: TcpOptions {
                    timestamps: Some((0x9c1b_2f9a, 0x41d0_7e13)),
                    ..Default::default()
                },
            }
        );
        assert_eq!(
            TcpPacket::new_unchecked(&DATA_PACKET[20..]).into_payload(),
            b"hello tcp"
        );

        // Emit header, copy the payload, checksum: the same bytes.
        let mut buf = [0u8; 41];
        let n = header.emit(&mut buf);
        assert_eq!(n, 32);
        let mut tcp = TcpPacket::new_checked(&mut buf[..]).unwrap();
        tcp.payload_mut().copy_from_slice(b"hello tcp");
        tcp.fill_checksum(IP1, IP2);
        assert_eq!(tcp.checksum(), 0x2754);
        assert_eq!(&buf[..], &DATA_PACKET[20..]);
    }

    #[test]
    fn offload_writes_pseudo_header_sum() {
        let mut buf = SYN_PACKET[20..].to_vec();
        let mut tcp = TcpPacket::new_checked(&mut buf[..]).unwrap();
        tcp.fill_pseudo_header_checksum(IP1, IP2);
        // 0a63 + 0001 + 0a63 + 0002 + 0006 + 0028 = 14f7, by hand.
        assert_eq!(tcp.checksum(), 0x14f7);
        // What the NIC then does: sum from the TCP header on, complement.
        assert_eq!(!checksum::data(&buf), 0x44ae);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for packet in [&SYN_PACKET[20..], &DATA_PACKET[20..52]] {
            for len in 0..packet.len() {
                assert_eq!(
                    TcpPacket::new_checked(&packet[..len]),
                    Err(WireError::Truncated),
                    "len {len}"
                );
                let unchecked = TcpPacket::new_unchecked(&packet[..len]);
                assert_eq!(TcpHeader::parse(&unchecked), Err(WireError::Truncated));
            }
        }
    }

    #[test]
    fn truncated_option_lists() {
        // The SYN's options end options at these offsets; a cut anywhere else
        // splits an option.
        let options = &SYN_PACKET[40..];
        let boundaries = [0, 4, 6, 16, 17, 20];
        for len in 0..=options.len() {
            let result = TcpOptions::parse(&options[..len]);
            if boundaries.contains(&len) {
                assert!(result.is_ok(), "len {len}");
            } else {
                assert_eq!(result, Err(WireError::Malformed), "len {len}");
            }
        }
    }

    #[test]
    fn data_offset_below_five_words() {
        let mut buf = SYN_PACKET[20..].to_vec();
        for words in 0..5u8 {
            buf[12] = words << 4;
            assert_eq!(
                TcpPacket::new_checked(&buf[..]),
                Err(WireError::HeaderLength)
            );
            assert_eq!(
                TcpHeader::parse(&TcpPacket::new_unchecked(&buf[..])),
                Err(WireError::HeaderLength)
            );
        }
        buf[12] = 5 << 4;
        let tcp = TcpPacket::new_checked(&buf[..]).unwrap();
        assert!(tcp.options().is_empty());
        assert_eq!(tcp.payload(), &SYN_PACKET[40..]);
    }

    #[test]
    fn malformed_options() {
        let cases: &[(&str, &[u8])] = &[
            ("length 0", &[30, 0, 0, 0]),
            ("length 1", &[30, 1, 0, 0]),
            ("MSS length 0", &[2, 0]),
            ("MSS length 1", &[2, 1, 1, 1]),
            ("kind without length", &[1, 1, 1, 30]),
            ("MSS without length", &[2]),
            ("past the end", &[30, 5, 0, 0]),
            ("MSS past the end", &[2, 4, 5]),
            (
                "timestamps past the end",
                &[1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0],
            ),
            ("MSS length 3", &[2, 3, 5, 0]),
            ("MSS length 5", &[2, 5, 5, 0xb4, 0]),
            ("window scale length 2", &[3, 2, 1, 1]),
            ("window scale length 4", &[3, 4, 7, 0]),
            ("SACK permitted length 3", &[4, 3, 0, 0]),
            ("timestamps length 8", &[8, 8, 0, 0, 0, 0, 0, 0]),
            (
                "timestamps length 12",
                &[8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            ("SACK length 2", &[1, 1, 5, 2]),
            ("SACK length 9", &[5, 9, 0, 0, 0, 0, 0, 0, 0, 0]),
            ("SACK length 11", &[5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (name, bytes) in cases {
            assert_eq!(
                TcpOptions::parse(bytes),
                Err(WireError::Malformed),
                "{name}"
            );
        }
        // Five SACK blocks do not fit in a real header; reject them too.
        let mut five = vec![5u8, 42];
        five.extend_from_slice(&[0; 40]);
        assert_eq!(TcpOptions::parse(&five), Err(WireError::Malformed));
        // A malformed option list makes the header malformed.
        let mut buf = SYN_PACKET[20..].to_vec();
        buf[21] = 3; // MSS length 3
        let tcp = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(TcpHeader::parse(&tcp), Err(WireError::Malformed));
    }

    #[test]
    fn unknown_options_and_end_of_list() {
        // An experimental option (kind 254), MPTCP-like kind 30, then MSS.
        let bytes = [254, 4, 0xf9, 0x89, 30, 3, 0, 2, 4, 0x23, 0x28];
        let options = TcpOptions::parse(&bytes).unwrap();
        assert_eq!(
            options,
            TcpOptions {
                mss: Some(9000),
                ..Default::default()
            }
        );
        // Anything after End of Option List is ignored, even garbage.
        let bytes = [2, 4, 5, 0xb4, 0, 2, 1, 0xff];
        assert_eq!(TcpOptions::parse(&bytes).unwrap().mss, Some(1460));
        assert_eq!(TcpOptions::parse(&[]), Ok(TcpOptions::default()));
        assert_eq!(TcpOptions::parse(&[1, 1, 1, 0]), Ok(TcpOptions::default()));
        // The last of two options wins.
        let bytes = [2, 4, 0, 100, 2, 4, 0, 200];
        assert_eq!(TcpOptions::parse(&bytes).unwrap().mss, Some(200));
    }

    #[test]
    fn parse_sack_blocks() {
        let bytes = [
            1, 1, 5, 26, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff, 0,
            0, 0, 5,
        ];
        let options = TcpOptions::parse(&bytes).unwrap();
        assert_eq!(options.sack_count, 3);
        assert_eq!(options.sack(), &[(1, 2), (3, 4), (u32::MAX, 5)]);
        assert_eq!(options.sack_blocks[3], (0, 0));
        // A later SACK option replaces an earlier one, unused blocks cleared.
        let mut two = bytes.to_vec();
        two.extend_from_slice(&[1, 1, 5, 10, 0, 0, 0, 9, 0, 0, 0, 10]);
        let options = TcpOptions::parse(&two).unwrap();
        assert_eq!(options.sack(), &[(9, 10)]);
        assert_eq!(options, with_sack(TcpOptions::default(), &[(9, 10)]));
    }

    #[test]
    fn emit_layouts() {
        let cases: &[(TcpOptions, &[u8])] = &[
            (TcpOptions::default(), &[]),
            (
                TcpOptions {
                    mss: Some(1460),
                    ..Default::default()
                },
                &[2, 4, 5, 0xb4],
            ),
            (
                TcpOptions {
                    timestamps: Some((1, 2)),
                    ..Default::default()
                },
                &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ),
            (
                TcpOptions {
                    sack_permitted: true,
                    ..Default::default()
                },
                &[1, 1, 4, 2],
            ),
            (
                TcpOptions {
                    window_scale: Some(14),
                    ..Default::default()
                },
                &[1, 3, 3, 14],
            ),
            (
                TcpOptions {
                    mss: Some(536),
                    sack_permitted: true,
                    window_scale: Some(0),
                    ..Default::default()
                },
                &[2, 4, 2, 0x18, 1, 1, 4, 2, 1, 3, 3, 0],
            ),
            (
                with_sack(TcpOptions::default(), &[(0x0102_0304, 0x0506_0708)]),
                &[1, 1, 5, 10, 1, 2, 3, 4, 5, 6, 7, 8],
            ),
        ];
        for (options, expected) in cases {
            assert_eq!(options.buffer_len(), expected.len(), "{options:?}");
            let mut buf = [0xaau8; 40];
            assert_eq!(options.emit(&mut buf), expected.len());
            assert_eq!(&buf[..expected.len()], *expected, "{options:?}");
            assert!(buf[expected.len()..].iter().all(|&b| b == 0xaa));
            assert_eq!(TcpOptions::parse(expected), Ok(*options));
        }
    }

    #[test]
    fn emit_drops_sack_blocks_that_do_not_fit() {
        let blocks = [(1, 2), (3, 4), (5, 6), (7, 8)];
        // Alone: all four, 4 + 32 = 36 bytes.
        let options = with_sack(TcpOptions::default(), &blocks);
        assert_eq!(options.buffer_len(), 36);
        // With timestamps: 12 + 4 + 24 = 40, three blocks.
        let ts = with_sack(
            TcpOptions {
                timestamps: Some((10, 20)),
                ..Default::default()
            },
            &blocks,
        );
        assert_eq!(ts.buffer_len(), 40);
        let mut buf = [0u8; 40];
        assert_eq!(ts.emit(&mut buf), 40);
        assert_eq!(&buf[12..16], &[1, 1, 5, 26]);
        assert_eq!(TcpOptions::parse(&buf).unwrap().sack(), &blocks[..3]);
        // With MSS, timestamps and window scale: 20 + 4 + 16 = 40, two blocks.
        let full = TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            ..ts
        };
        assert_eq!(full.buffer_len(), 40);
        full.emit(&mut buf);
        assert_eq!(TcpOptions::parse(&buf).unwrap().sack(), &blocks[..2]);
        // A sack_count beyond 4 is read as 4.
        let over = TcpOptions {
            sack_count: 200,
            ..options
        };
        assert_eq!(over.sack(), &blocks[..]);
        assert_eq!(over.buffer_len(), 36);
    }

    #[test]
    fn flags() {
        let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
        assert_eq!(syn_ack, TcpFlags(0x12));
        assert_eq!(syn_ack.to_string(), "SYN|ACK");
        assert_eq!(format!("{syn_ack:?}"), "SYN|ACK");
        assert_eq!(
            TcpFlags(0xff).to_string(),
            "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR"
        );
        assert_eq!(TcpFlags::empty().to_string(), "(none)");
        assert!(syn_ack.contains(TcpFlags::SYN));
        assert!(syn_ack.contains(syn_ack));
        assert!(syn_ack.contains(TcpFlags::empty()));
        assert!(!syn_ack.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(syn_ack.intersects(TcpFlags::SYN | TcpFlags::FIN));
        assert!(!syn_ack.intersects(TcpFlags::RST | TcpFlags::FIN));
        assert!(!syn_ack.intersects(TcpFlags::empty()));
        let mut flags = TcpFlags::default();
        assert_eq!(flags, TcpFlags::empty());
        flags |= TcpFlags::FIN;
        flags |= TcpFlags::ACK;
        assert_eq!(flags, TcpFlags::FIN.union(TcpFlags::ACK));
        let all = [
            TcpFlags::FIN,
            TcpFlags::SYN,
            TcpFlags::RST,
            TcpFlags::PSH,
            TcpFlags::ACK,
            TcpFlags::URG,
            TcpFlags::ECE,
            TcpFlags::CWR,
        ];
        for (bit, flag) in all.iter().enumerate() {
            assert_eq!(flag.0, 1 << bit);
        }
    }

    #[test]
    fn reserved_bits_are_ignored_and_cleared() {
        let mut buf = SYN_PACKET[20..].to_vec();
        buf[12] |= 0x0f; // reserved bits and NS
        let tcp = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(tcp.flags(), TcpFlags::SYN);
        assert_eq!(tcp.header_len(), 40);
        let mut tcp = TcpPacket::new_checked(&mut buf[..]).unwrap();
        tcp.set_flags(TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR);
        assert_eq!(buf[12], 0xa0);
        assert_eq!(buf[13], 0xc2);
        // set_header_len keeps the low nibble.
        buf[12] = 0x0f;
        TcpPacket::new_unchecked(&mut buf[..]).set_header_len(24);
        assert_eq!(buf[12], 0x6f);
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 28];
        let mut tcp = TcpPacket::new_unchecked(&mut buf[..]);
        tcp.set_src_port(80);
        tcp.set_dst_port(40000);
        tcp.set_seq_number(0xdead_beef);
        tcp.set_ack_number(0x0102_0304);
        tcp.set_header_len(24);
        tcp.set_flags(TcpFlags::ACK | TcpFlags::URG);
        tcp.set_window_len(0xfffe);
        tcp.set_urgent_at(3);
        tcp.options_mut().copy_from_slice(&[1, 3, 3, 2]);
        tcp.payload_mut().copy_from_slice(b"ping");
        tcp.fill_checksum(IP2, IP1);
        let tcp = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 40000));
        assert_eq!(
            (tcp.seq_number(), tcp.ack_number()),
            (0xdead_beef, 0x0102_0304)
        );
        assert_eq!(tcp.header_len(), 24);
        assert_eq!(tcp.flags(), TcpFlags::ACK | TcpFlags::URG);
        assert_eq!((tcp.window_len(), tcp.urgent_at()), (0xfffe, 3));
        assert_eq!(tcp.options(), &[1, 3, 3, 2]);
        assert_eq!(tcp.payload(), b"ping");
        assert!(tcp.verify_checksum(IP2, IP1));
        assert!(!tcp.verify_checksum(IP2, Ipv4Addr::new(10, 99, 0, 3)));
        assert_eq!(
            TcpHeader::parse(&tcp).unwrap().options,
            TcpOptions {
                window_scale: Some(2),
                ..Default::default()
            }
        );
        assert_eq!(tcp.into_inner().len(), 28);
    }

    fn arb_options() -> impl Strategy<Value = TcpOptions> {
        (
            any::<Option<u16>>(),
            any::<Option<u8>>(),
            any::<bool>(),
            any::<Option<(u32, u32)>>(),
            proptest::collection::vec(any::<(u32, u32)>(), 0..=TCP_MAX_SACK_BLOCKS),
        )
            .prop_map(|(mss, window_scale, sack_permitted, timestamps, sack)| {
                with_sack(
                    TcpOptions {
                        mss,
                        window_scale,
                        sack_permitted,
                        timestamps,
                        ..Default::default()
                    },
                    &sack,
                )
            })
    }

    proptest! {
        #[test]
        fn options_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(options) = TcpOptions::parse(&bytes) {
                prop_assert!(options.sack().len() <= TCP_MAX_SACK_BLOCKS);
            }
        }

        #[test]
        fn options_parse_never_panics_on_plausible_lists(
            parts in proptest::collection::vec((0u8..10, 0u8..12, any::<[u8; 10]>()), 0..8),
        ) {
            // Small kinds and lengths, so that known options are often hit.
            let bytes: Vec<u8> = parts
                .iter()
                .flat_map(|(k, l, body)| [&[*k, *l][..], &body[..usize::from(*l).min(10)]].concat())
                .collect();
            let _ = TcpOptions::parse(&bytes);
        }

        #[test]
        fn packet_accessors_never_panic(header_len_words in 0u8..16, bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut bytes = bytes;
            if bytes.len() > 12 {
                bytes[12] = (bytes[12] & 0x0f) | (header_len_words << 4);
            }
            if let Ok(p) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number());
                let _ = (p.flags(), p.window_len(), p.checksum(), p.urgent_at());
                let _ = (p.options(), p.payload(), p.verify_checksum(IP1, IP2));
                prop_assert!(p.header_len() + p.payload().len() == bytes.len());
            }
            let _ = TcpHeader::parse(&TcpPacket::new_unchecked(&bytes[..]));
        }

        #[test]
        fn options_emit_parse_round_trip(options in arb_options()) {
            let len = options.buffer_len();
            prop_assert!(len <= TCP_MAX_OPTIONS_LEN);
            prop_assert_eq!(len % 4, 0);
            let mut buf = [0u8; TCP_MAX_OPTIONS_LEN];
            prop_assert_eq!(options.emit(&mut buf), len);
            let parsed = TcpOptions::parse(&buf[..len]).unwrap();
            // Only SACK blocks may be lost, from the end, and only when one
            // more would not have fit.
            let kept = parsed.sack().len();
            prop_assert_eq!(parsed.sack(), &options.sack()[..kept]);
            if kept < options.sack().len() {
                prop_assert!(len + 8 > TCP_MAX_OPTIONS_LEN);
            }
            let truncated = with_sack(options, &options.sack()[..kept]);
            prop_assert_eq!(parsed, truncated);
            // What comes back re-emits to the same bytes.
            let mut again = [0u8; TCP_MAX_OPTIONS_LEN];
            prop_assert_eq!(parsed.emit(&mut again), len);
            prop_assert_eq!(&again[..len], &buf[..len]);
        }

        #[test]
        fn header_emit_parse_round_trip(
            ports in any::<(u16, u16)>(),
            seq in any::<u32>(),
            ack in any::<u32>(),
            flags in any::<u8>(),
            window in any::<u16>(),
            urgent in any::<u16>(),
            options in arb_options(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            addrs in any::<(u32, u32)>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(addrs.0), Ipv4Addr::from(addrs.1));
            let fitted = {
                let mut buf = [0u8; TCP_MAX_OPTIONS_LEN];
                let n = options.emit(&mut buf);
                TcpOptions::parse(&buf[..n]).unwrap()
            };
            let header = TcpHeader {
                src_port: ports.0,
                dst_port: ports.1,
                seq,
                ack,
                flags: TcpFlags(flags),
                window,
                urgent,
                options: fitted,
            };
            let header_len = header.header_len();
            prop_assert!(header_len <= TCP_MAX_HEADER_LEN);
            let mut buf = vec![0xaau8; header_len + payload.len()];
            buf[header_len..].copy_from_slice(&payload);
            prop_assert_eq!(header.emit(&mut buf), header_len);
            let mut tcp = TcpPacket::new_checked(&mut buf[..]).unwrap();
            prop_assert_eq!(tcp.checksum(), 0);
            tcp.fill_checksum(src, dst);
            let tcp = TcpPacket::new_checked(&buf[..]).unwrap();
            prop_assert!(tcp.verify_checksum(src, dst));
            prop_assert_eq!(tcp.header_len(), header_len);
            prop_assert_eq!(tcp.payload(), &payload[..]);
            prop_assert_eq!(TcpHeader::parse(&tcp), Ok(header));
        }
    }
}
