//! Zero-copy views over packet bytes: Ethernet II, ARP, IPv4, ICMPv4, UDP and
//! TCP, and the Internet checksum.
//!
//! The shape follows smoltcp's `wire` module. Each protocol has a packet type
//! (`EthernetFrame<T>`, `Ipv4Packet<T>`, ...) that wraps a buffer
//! `T: AsRef<[u8]>`; getters need `AsRef<[u8]>`, setters need `AsMut<[u8]>`.
//! Most protocols also have a `Repr`, an owned high-level description that
//! `parse`s a packet (validating it) and `emit`s itself into a buffer of
//! exactly `buffer_len()` bytes.
//!
//! This module depends on nothing else in the crate, performs no I/O and never
//! allocates. It contains no `unsafe` code.
//!
//! # Panics
//!
//! - `new_checked` never panics, whatever the bytes: it returns a
//!   [`WireError`] for a buffer too short or a header that contradicts itself.
//!   Every getter and `payload()` of a packet built by `new_checked` then cannot
//!   panic either, nor can the `Repr::parse` functions.
//! - `new_unchecked` does no validation; a getter or setter that reaches past
//!   the end of the buffer panics (a slice index out of range). Use it only on
//!   buffers you are about to fill with `Repr::emit`, which need at least
//!   `buffer_len()` bytes.
//! - Setters on a packet built by `new_checked` do not panic, but a setter that
//!   changes a length field (`set_header_len`, `set_total_len`, `set_len`) can
//!   make later `payload()` calls panic if the new length exceeds the buffer.
//!
//! # Checksums
//!
//! Whether a checksum is computed in software or by the NIC is a capability the
//! caller passes in ([`ChecksumMode`], [`ChecksumCapabilities`]); nothing here
//! reads global state.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checksum;

mod arp;
#[cfg(test)]
mod captures;
mod ethernet;
mod icmp;
mod ipv4;
mod tcp;
mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr, ARP_PACKET_LEN};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr, ETHERNET_HEADER_LEN};
pub use icmp::{
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, ICMPV4_ERROR_QUOTE_MAX, ICMPV4_HEADER_LEN,
};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr, IPV4_HEADER_LEN};
pub use tcp::{
    TcpFlags, TcpHeader, TcpOptions, TcpPacket, TCP_HEADER_LEN, TCP_MAX_HEADER_LEN,
    TCP_MAX_OPTIONS_LEN, TCP_MAX_SACK_BLOCKS,
};
pub use udp::{UdpPacket, UdpRepr, UDP_HEADER_LEN};

/// IPv4 addresses are the standard library's type; `wire` adds no new one.
pub use std::net::Ipv4Addr as Ipv4Address;

use core::fmt;

/// Why a buffer was rejected as a packet.
///
/// Small and `Copy` so that the fast path can count drops by reason without
/// allocating; [`WireError::as_str`] gives a stable label for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than the header, or than a length field says.
    Truncated,
    /// The IP version field is not the expected one.
    Version,
    /// The IPv4 header length field is below 5 words or beyond the buffer.
    HeaderLength,
    /// The IPv4 total length is shorter than the header or longer than the buffer.
    TotalLength,
    /// A checksum did not verify.
    Checksum,
    /// A field has a value that the protocol does not allow.
    Malformed,
    /// A well-formed packet of a kind this stack does not handle (for example
    /// ARP for a hardware type other than Ethernet).
    Unsupported,
    /// An IPv4 fragment; this stack does not reassemble.
    Fragmented,
}

impl WireError {
    /// Every variant, in declaration order: for registering one metric series
    /// per reason up front.
    pub const ALL: [WireError; 8] = [
        WireError::Truncated,
        WireError::Version,
        WireError::HeaderLength,
        WireError::TotalLength,
        WireError::Checksum,
        WireError::Malformed,
        WireError::Unsupported,
        WireError::Fragmented,
    ];

    /// A stable, lower-case reason name, usable as a metric label value.
    /// These strings are part of the metrics interface: do not rename them.
    pub const fn as_str(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::Version => "bad_version",
            WireError::HeaderLength => "bad_header_length",
            WireError::TotalLength => "bad_total_length",
            WireError::Checksum => "bad_checksum",
            WireError::Malformed => "malformed",
            WireError::Unsupported => "unsupported",
            WireError::Fragmented => "fragmented",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for WireError {}

/// The result type of every fallible `wire` function.
pub type Result<T> = core::result::Result<T, WireError>;

/// Who computes (on transmit) and verifies (on receive) one kind of checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumMode {
    /// Computed by `emit` and verified by `parse`, in software.
    #[default]
    Software,
    /// The NIC does it. On transmit, `emit` leaves the field as the NIC
    /// expects it (zero for the IPv4 header checksum, the non-complemented
    /// pseudo-header sum for UDP and TCP, as DPDK's offload flags require). On
    /// receive, `parse` does not verify: the NIC already did, and the caller
    /// drops packets it flagged as bad.
    Offload,
}

impl ChecksumMode {
    /// True when software must compute (transmit) or verify (receive).
    pub const fn is_software(self) -> bool {
        matches!(self, ChecksumMode::Software)
    }
}

/// The checksum mode of each protocol for one direction of one port, as
/// smoltcp's `ChecksumCapabilities`: build it from what the port reports and
/// pass the relevant field to `parse`/`emit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChecksumCapabilities {
    /// The IPv4 header checksum.
    pub ipv4: ChecksumMode,
    /// The UDP checksum.
    pub udp: ChecksumMode,
    /// The TCP checksum.
    pub tcp: ChecksumMode,
    /// The ICMPv4 checksum (no common NIC offloads it).
    pub icmpv4: ChecksumMode,
}

impl ChecksumCapabilities {
    /// Everything in software: the right choice for ports without offloads.
    pub const fn software() -> Self {
        ChecksumCapabilities {
            ipv4: ChecksumMode::Software,
            udp: ChecksumMode::Software,
            tcp: ChecksumMode::Software,
            icmpv4: ChecksumMode::Software,
        }
    }

    /// IPv4, UDP and TCP offloaded to the NIC, ICMPv4 in software.
    pub const fn offload() -> Self {
        ChecksumCapabilities {
            ipv4: ChecksumMode::Offload,
            udp: ChecksumMode::Offload,
            tcp: ChecksumMode::Offload,
            icmpv4: ChecksumMode::Software,
        }
    }
}

/// Reads a big-endian `u16` at `offset`. Panics if out of range.
#[inline]
pub(crate) fn read_u16(buf: &[u8], offset: usize) -> u16 {
    u16::from_be_bytes([buf[offset], buf[offset + 1]])
}

/// Writes a big-endian `u16` at `offset`. Panics if out of range.
#[inline]
pub(crate) fn write_u16(buf: &mut [u8], offset: usize, value: u16) {
    buf[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
}

/// Reads a big-endian `u32` at `offset`. Panics if out of range.
#[inline]
pub(crate) fn read_u32(buf: &[u8], offset: usize) -> u32 {
    u32::from_be_bytes([
        buf[offset],
        buf[offset + 1],
        buf[offset + 2],
        buf[offset + 3],
    ])
}

/// Writes a big-endian `u32` at `offset`. Panics if out of range.
#[inline]
pub(crate) fn write_u32(buf: &mut [u8], offset: usize, value: u32) {
    buf[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
}

/// Reads an IPv4 address at `offset`. Panics if out of range.
#[inline]
pub(crate) fn read_ipv4(buf: &[u8], offset: usize) -> Ipv4Address {
    Ipv4Address::new(
        buf[offset],
        buf[offset + 1],
        buf[offset + 2],
        buf[offset + 3],
    )
}

/// Writes an IPv4 address at `offset`. Panics if out of range.
#[inline]
pub(crate) fn write_ipv4(buf: &mut [u8], offset: usize, addr: Ipv4Address) {
    buf[offset..offset + 4].copy_from_slice(&addr.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_labels_are_stable_and_distinct() {
        let labels: Vec<&str> = WireError::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            labels,
            [
                "truncated",
                "bad_version",
                "bad_header_length",
                "bad_total_length",
                "bad_checksum",
                "malformed",
                "unsupported",
                "fragmented"
            ]
        );
        assert_eq!(WireError::Checksum.to_string(), "bad_checksum");
    }
}
