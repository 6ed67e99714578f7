//! The callback interface between the TCP engine and the services that
//! terminate its connections: what a service sees of one connection
//! ([`TcpIo`]), what the engine tells it ([`TcpService`]), and how the
//! engine finds the service a connection belongs to ([`ServiceSet`]).
//!
//! It lives at the TCP layer, below every service: the engine knows services
//! only through these traits, and the built-in ones (echo, discard, http)
//! implement them exactly as a program's own do.
//!
//! Each worker holds one instance of each service; a connection is bound to
//! the service its listener's rule named when it was accepted, and keeps it
//! for its whole life (a rules reload only affects new connections). The
//! worker's TCP table calls the service after every input that produced
//! events, through a [`TcpIo`] handle on that one connection:
//!
//! - [`TcpService::on_accepted`]: the handshake completed (for an active
//!   open, the connection is established);
//! - [`TcpService::on_readable`]: bytes are waiting in the receive buffer;
//! - [`TcpService::on_writable`]: send-buffer space (or pool storage, after
//!   a send fell short for want of it) came back. Backpressure: a service
//!   that could not write everything resumes here;
//! - [`TcpService::on_peer_closed`]: the peer's FIN arrived, after its last
//!   byte was made readable (a half-close: we may still send);
//! - [`TcpService::on_timer`]: the deadline set with [`TcpIo::set_timer`]
//!   passed;
//! - [`TcpService::on_closed`]: the connection is gone for the service
//!   (closed in order, reset by the peer, aborted, or timed out: see
//!   [`Closed::reset`]); nothing may be written any more. A connection
//!   that ends in TIME-WAIT is closed for its service when it enters it, as
//!   a Linux socket is.
//!
//! Received bytes are read in place from the connection's receive buffer
//! ([`TcpIo::recv_data`], then [`TcpIo::consume`]); [`TcpIo::send`] copies
//! into the send buffer, which keeps them until they are acknowledged. A
//! service keeps per-connection state in one `u64` word
//! ([`TcpIo::app_state`]; an index into its own slab when it needs more),
//! so that connections cost no allocation beyond the table's slot.
//!
//! Timers: each connection has one service timer, a deadline in the
//! worker's clock ([`TcpIo::now`] is the time of the current callback).
//! Setting it replaces the previous deadline; `None` cancels it; it fires
//! once (at the first 1 ms timer tick at or after the deadline) and is then
//! unset. It shares the connection's entry on the worker's timer wheel, so
//! it costs no allocation and no scan.

use std::net::SocketAddrV4;

use crate::config::ServiceId;

/// A connection's identity in its worker's table: stable for the life of
/// the connection, never reused by a later one on the same worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// The table slot.
    pub(crate) key: u32,
    /// Which occupant of the slot.
    pub(crate) serial: u32,
}

/// How a connection ended, as [`TcpService::on_closed`] is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The connection.
    pub id: ConnId,
    /// Its per-connection state word ([`TcpIo::app_state`]) at the end.
    pub app_state: u64,
    /// Our address and port.
    pub local: SocketAddrV4,
    /// The peer's address and port.
    pub peer: SocketAddrV4,
    /// It ended abruptly (a reset sent or received, an abort, or a
    /// retransmission timeout) rather than by both FINs.
    pub reset: bool,
    /// It ended because retransmissions or probes went unanswered (a
    /// SYN never answered, for an active open), not by a reset.
    pub timed_out: bool,
}

/// One connection, as its service sees it during a callback.
pub trait TcpIo {
    /// The received bytes not yet consumed, as two slices (the buffer is a
    /// ring; the second slice is empty unless the bytes wrap).
    fn recv_data(&self) -> (&[u8], &[u8]);
    /// Mark the first `count` received bytes as read; the window reopens.
    fn consume(&mut self, count: usize);
    /// Queue bytes for sending; returns how many were taken (fewer when the
    /// send buffer or the worker's buffer pool is full: the service hears
    /// [`TcpService::on_writable`] when there is room again; 0 once our side
    /// is closed).
    fn send(&mut self, data: &[u8]) -> usize;
    /// Bytes [`TcpIo::send`] would take now.
    fn send_space(&self) -> usize;
    /// Half-close: close our sending side after the queued bytes (a FIN
    /// follows them). The peer may go on sending; its bytes still arrive.
    fn close(&mut self);
    /// Reset the connection at once; queued bytes are dropped.
    fn abort(&mut self);
    /// Whether the peer has closed its side (no more bytes will arrive).
    fn peer_closed(&self) -> bool;
    /// The service's per-connection state word, zero at accept.
    fn app_state(&mut self) -> &mut u64;
    /// The connection's identity.
    fn id(&self) -> ConnId;
    /// Our address and port.
    fn local_addr(&self) -> SocketAddrV4;
    /// The peer's address and port.
    fn peer_addr(&self) -> SocketAddrV4;
    /// Our port ([`TcpIo::local_addr`]'s).
    fn local_port(&self) -> u16 {
        self.local_addr().port()
    }
    /// The worker's clock at this callback, in nanoseconds (the clock
    /// [`TcpIo::set_timer`] deadlines are in).
    fn now(&self) -> u64;
    /// Arm the connection's service timer for `deadline` (nanoseconds, see
    /// [`TcpIo::now`]), replacing any earlier one, or cancel it with `None`.
    /// [`TcpService::on_timer`] is called once it passes.
    fn set_timer(&mut self, deadline: Option<u64>);
}

/// A service that terminates TCP connections inside the stack: one instance
/// per worker, called on the worker's thread only.
pub trait TcpService: std::any::Any {
    /// The handshake completed.
    fn on_accepted(&mut self, _io: &mut dyn TcpIo) {}
    /// Bytes are waiting in the receive buffer. Called once per connection
    /// for all the segments of one RX burst, at the burst's end (before a
    /// FIN or reset of the same burst is reported): what is waiting may be
    /// many segments' worth.
    fn on_readable(&mut self, io: &mut dyn TcpIo);
    /// Send-buffer space or pool storage came back (as `on_readable`: once
    /// per connection and RX burst).
    fn on_writable(&mut self, _io: &mut dyn TcpIo) {}
    /// The peer closed its side. By default: close ours too.
    fn on_peer_closed(&mut self, io: &mut dyn TcpIo) {
        io.close();
    }
    /// The deadline set with [`TcpIo::set_timer`] passed (the timer is now
    /// unset). By default nothing happens.
    fn on_timer(&mut self, _io: &mut dyn TcpIo) {}
    /// The connection is gone; see [`Closed`].
    fn on_closed(&mut self, _closed: &Closed) {}
}

/// The services of one worker, as the TCP engine reaches them: the engine
/// keeps a [`ServiceId`] per connection and asks for its instance at each
/// event.
pub trait ServiceSet {
    /// The instance serving connections bound to `id`. An id with no TCP
    /// instance (which validation prevents) gets a discarding stand-in.
    fn tcp(&mut self, id: ServiceId) -> &mut dyn TcpService;
}

/// A service that reads and drops everything and closes with the peer: the
/// stand-in for an id a [`ServiceSet`] has no instance for.
#[derive(Debug, Default)]
pub struct NullService;

impl TcpService for NullService {
    fn on_readable(&mut self, io: &mut dyn TcpIo) {
        let (a, b) = io.recv_data();
        let n = a.len() + b.len();
        io.consume(n);
    }
}
