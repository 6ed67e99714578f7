//! The TCP side of the service API.
//!
//! Each worker holds one instance of each service; a connection is bound to
//! the service its listener's rule named when it was accepted, and keeps it for
//! its whole life (a rules reload only affects new connections). The worker's
//! TCP table calls the service after every input that produced events, through
//! a [`TcpIo`] handle on that one connection:
//!
//! - [`TcpService::on_accepted`]: the handshake completed;
//! - [`TcpService::on_readable`]: bytes are waiting in the receive buffer;
//! - [`TcpService::on_writable`]: send-buffer space was freed (backpressure:
//!   a service that could not write everything resumes here);
//! - [`TcpService::on_peer_closed`]: the peer's FIN arrived, after its last
//!   byte was made readable;
//! - [`TcpService::on_closed`]: the connection is gone (in order or reset);
//!   nothing may be written any more.
//!
//! Received bytes are read in place from the connection's receive buffer
//! ([`TcpIo::recv_data`], then [`TcpIo::consume`]); [`TcpIo::send`] copies into
//! the send buffer, which keeps them until they are acknowledged. A service
//! keeps per-connection state in one `u64` word ([`TcpIo::app_state`]), so
//! that connections cost no allocation beyond the table's slot.

/// One connection, as its service sees it during a callback.
pub trait TcpIo {
    /// The received bytes not yet consumed, as two slices (the buffer is a
    /// ring; the second slice is empty unless the bytes wrap).
    fn recv_data(&self) -> (&[u8], &[u8]);
    /// Mark the first `count` received bytes as read; the window reopens.
    fn consume(&mut self, count: usize);
    /// Queue bytes for sending; returns how many were taken (fewer when the
    /// send buffer is full, 0 once the connection is closed for sending).
    fn send(&mut self, data: &[u8]) -> usize;
    /// Bytes [`TcpIo::send`] would take now.
    fn send_space(&self) -> usize;
    /// Close for sending after the queued bytes (a FIN follows them).
    fn close(&mut self);
    /// Reset the connection at once; queued bytes are dropped.
    fn abort(&mut self);
    /// Whether the peer has closed its side (no more bytes will arrive).
    fn peer_closed(&self) -> bool;
    /// The service's per-connection state word, zero at accept.
    fn app_state(&mut self) -> &mut u64;
}

/// A service that terminates TCP connections inside the stack.
pub trait TcpService {
    /// The handshake completed.
    fn on_accepted(&mut self, _io: &mut dyn TcpIo) {}
    /// Bytes are waiting in the receive buffer.
    fn on_readable(&mut self, io: &mut dyn TcpIo);
    /// Send-buffer space was freed.
    fn on_writable(&mut self, _io: &mut dyn TcpIo) {}
    /// The peer closed its side. By default: close ours too.
    fn on_peer_closed(&mut self, io: &mut dyn TcpIo) {
        io.close();
    }
    /// The connection is gone; `reset` if it ended abruptly.
    fn on_closed(&mut self, _reset: bool) {}
}
