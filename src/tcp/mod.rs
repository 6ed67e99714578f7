//! The TCP engine: a per-worker, sans-IO implementation of RFC 9293 with the
//! extensions a Linux peer expects.
//!
//! Read alongside:
//! - RFC 9293 (TCP), RFC 5961 (blind in-window attacks: challenge ACKs),
//! - RFC 7323 (window scaling, timestamps), RFC 2018 (SACK), RFC 6675 (SACK
//!   loss recovery), RFC 6298 (retransmission timer), RFC 5681 and RFC 6582
//!   (congestion control, NewReno), RFC 9438 (CUBIC), RFC 4987 (SYN cookies),
//!   RFC 6528 (initial sequence numbers), RFC 1122 (delayed ACK, keepalive),
//!   RFC 8985 section 7 (tail loss probes).
//!
//! Layers, lowest first:
//! - [`seq`]: sequence-number arithmetic.
//! - [`assembler`], [`buffer`]: receive reassembly and the byte rings of a
//!   connection, whose storage comes from a per-worker [`buffer::BufferPool`]
//!   and goes back to it when empty (an idle connection holds no buffer).
//! - [`rtt`], [`congestion`], [`scoreboard`]: the retransmission timer,
//!   NewReno/CUBIC, and the RFC 6675 SACK scoreboard.
//! - [`connection`]: one connection's state machine. It takes `(segment, now)`
//!   and yields segments to send and its next deadline; it reads no clock and
//!   touches no socket or device.
//! - [`cookie`]: SYN cookies and initial sequence numbers.
//! - [`ratelimit`]: the limits on ACKs to refused segments (RFC 5961
//!   section 7 challenge ACKs, per worker and randomised).
//! - [`time_wait`]: the compact record a connection leaves in TIME-WAIT.
//! - [`timer_wheel`]: a hierarchical timer wheel with O(1) insert and cancel.
#![forbid(unsafe_code)]

pub mod assembler;
pub mod buffer;
pub mod congestion;
pub mod connection;
pub mod cookie;
pub mod index;
pub mod ratelimit;
pub mod rtt;
pub mod scoreboard;
pub mod seq;
pub mod service;
pub mod table;
pub mod time_wait;
pub mod timer_wheel;

use std::net::Ipv4Addr;

pub use seq::Seq;

/// A connection's addresses and ports, from our side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FourTuple {
    /// Our address.
    pub local_ip: Ipv4Addr,
    /// Our port.
    pub local_port: u16,
    /// The peer's address.
    pub remote_ip: Ipv4Addr,
    /// The peer's port.
    pub remote_port: u16,
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
