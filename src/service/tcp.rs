//! The built-in TCP services echo and discard, on the callback interface of
//! [`crate::tcp::service`] (re-exported here), as a program's own services
//! are.

use std::fmt;

pub use crate::tcp::service::{Closed, ConnId, NullService, ServiceSet, TcpIo, TcpService};

/// Bytes [`TcpEcho`] copies per step from the receive buffer to the send
/// buffer (the two cannot be borrowed at once through [`TcpIo`]).
pub const ECHO_CHUNK: usize = 16 * 1024;

/// `app_state` bit of echo and discard: our side was closed.
const SHUT: u64 = 1;

/// Consume everything received; returns how many bytes that was.
fn drain(io: &mut dyn TcpIo) -> usize {
    let (a, b) = io.recv_data();
    let n = a.len() + b.len();
    if n > 0 {
        io.consume(n);
    }
    n
}

/// Close our side once, remembering it in the state word.
fn shut_once(io: &mut dyn TcpIo) {
    if *io.app_state() & SHUT == 0 {
        *io.app_state() |= SHUT;
        io.close();
    }
}

/// RFC 862 echo over TCP: every byte comes back, byte for byte, in order.
///
/// Backpressure: bytes are consumed only as the send buffer takes them; the
/// rest wait in the receive buffer (its window closes) until
/// [`TcpService::on_writable`]. Our side closes after the peer's, once every
/// byte it sent has been queued back.
pub struct TcpEcho {
    /// Bytes read from connections.
    pub bytes_in: u64,
    /// Bytes written back.
    pub bytes_out: u64,
    /// Staging between the receive and the send buffer, allocated once.
    scratch: Box<[u8]>,
}

impl fmt::Debug for TcpEcho {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpEcho")
            .field("bytes_in", &self.bytes_in)
            .field("bytes_out", &self.bytes_out)
            .finish_non_exhaustive()
    }
}

impl Default for TcpEcho {
    fn default() -> Self {
        TcpEcho {
            bytes_in: 0,
            bytes_out: 0,
            scratch: vec![0; ECHO_CHUNK].into_boxed_slice(),
        }
    }
}

impl TcpEcho {
    /// Echo what the send space allows; close once the peer closed and
    /// everything was echoed.
    fn pump(&mut self, io: &mut dyn TcpIo) {
        if *io.app_state() & SHUT != 0 {
            // Nothing can be sent any more; whatever still arrives is dropped.
            self.bytes_in += drain(io) as u64;
            return;
        }
        loop {
            let (first, _) = io.recv_data();
            let n = first.len().min(self.scratch.len()).min(io.send_space());
            if n == 0 {
                break;
            }
            self.scratch[..n].copy_from_slice(&first[..n]);
            let sent = io.send(&self.scratch[..n]);
            if sent > 0 {
                io.consume(sent);
                self.bytes_in += sent as u64;
                self.bytes_out += sent as u64;
            }
            if sent < n {
                break;
            }
        }
        if io.peer_closed() {
            let (a, b) = io.recv_data();
            if a.is_empty() && b.is_empty() {
                shut_once(io);
            }
        }
    }
}

impl TcpService for TcpEcho {
    fn on_readable(&mut self, io: &mut dyn TcpIo) {
        self.pump(io);
    }

    fn on_writable(&mut self, io: &mut dyn TcpIo) {
        self.pump(io);
    }

    fn on_peer_closed(&mut self, io: &mut dyn TcpIo) {
        self.pump(io);
    }
}

/// RFC 863 discard over TCP: everything is read and dropped; our side
/// closes when the peer's does.
#[derive(Debug, Default)]
pub struct TcpDiscard {
    /// Bytes read and dropped.
    pub bytes_in: u64,
    /// Bytes written (always 0: discard never answers).
    pub bytes_out: u64,
}

impl TcpService for TcpDiscard {
    fn on_readable(&mut self, io: &mut dyn TcpIo) {
        self.bytes_in += drain(io) as u64;
    }

    fn on_peer_closed(&mut self, io: &mut dyn TcpIo) {
        self.bytes_in += drain(io) as u64;
        shut_once(io);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::mock::MockIo;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn echo_backpressure_and_close_after_last_byte() {
        let mut echo = TcpEcho::default();
        let mut io = MockIo::with_space(1000);
        let data = pattern(5000);
        io.deliver(&mut echo, &data[..3000]);
        // Only what the send buffer took was consumed.
        assert_eq!(io.tx, data[..1000]);
        assert_eq!(io.rx.len(), 2000);
        io.deliver(&mut echo, &data[3000..]);
        io.fin(&mut echo);
        assert!(!io.closed(), "closed with bytes still to echo");
        let mut rounds = 0;
        while !io.rx.is_empty() {
            io.grant(&mut echo, 700);
            rounds += 1;
            if !io.rx.is_empty() {
                assert!(!io.closed());
            }
        }
        assert!(rounds >= 5);
        assert_eq!(io.tx, data);
        assert_eq!(io.closes, 1);
        // A later wake-up does not close twice.
        io.grant(&mut echo, 10);
        assert_eq!(io.closes, 1);
        assert_eq!(echo.bytes_in, 5000);
        assert_eq!(echo.bytes_out, 5000);
    }

    #[test]
    fn echo_across_the_wrap_and_big_segments() {
        let mut echo = TcpEcho::default();
        let mut io = MockIo::default();
        let data = pattern(3 * ECHO_CHUNK + 17);
        io.rx.extend_from_slice(&data);
        io.wrap_at = ECHO_CHUNK + 5;
        echo.on_readable(&mut io);
        assert_eq!(io.tx, data);
        assert!(io.rx.is_empty());
        assert!(!io.closed());
        io.fin(&mut echo);
        assert_eq!(io.closes, 1);
    }

    #[test]
    fn echo_closes_at_once_when_nothing_is_pending() {
        let mut echo = TcpEcho::default();
        let mut io = MockIo::default();
        io.deliver(&mut echo, b"abc");
        assert_eq!(io.tx, b"abc");
        io.fin(&mut echo);
        assert_eq!(io.closes, 1);
    }

    #[test]
    fn discard_reads_everything_and_closes_with_the_peer() {
        let mut discard = TcpDiscard::default();
        let mut io = MockIo::with_space(0);
        io.rx.extend_from_slice(&pattern(300));
        io.wrap_at = 100;
        discard.on_readable(&mut io);
        assert!(io.rx.is_empty());
        io.deliver(&mut discard, b"more");
        assert!(!io.closed());
        io.fin(&mut discard);
        assert_eq!(io.closes, 1);
        assert!(io.tx.is_empty());
        assert_eq!(discard.bytes_in, 304);
        assert_eq!(discard.bytes_out, 0);
    }
}
