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
//!   nothing may be written any more;
//! - [`TcpService::on_timer`]: the deadline the service set with
//!   [`TcpIo::set_timer`] passed.
//!
//! Timers: each connection has one service timer, a deadline in the
//! worker's clock ([`TcpIo::now`] is the time of the current callback).
//! Setting it replaces the previous deadline; `None` cancels it; it fires
//! once (at the first timer tick at or after the deadline, 1 ms
//! granularity) and is then unset. It is kept on the worker's timer wheel
//! with the connection's own TCP timers, so it costs no allocation and no
//! scan. (A stopgap until the service API is redesigned, issue 8: kept to
//! this one deadline per connection.)
//!
//! Received bytes are read in place from the connection's receive buffer
//! ([`TcpIo::recv_data`], then [`TcpIo::consume`]); [`TcpIo::send`] copies into
//! the send buffer, which keeps them until they are acknowledged. A service
//! keeps per-connection state in one `u64` word ([`TcpIo::app_state`]), so
//! that connections cost no allocation beyond the table's slot.

use std::fmt;

use super::http::Http;
use crate::config::ServiceKind;

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
    /// Our port of this connection (for an app's active opens, the source
    /// port [`crate::app::AppIo::connect`] returned).
    fn local_port(&self) -> u16 {
        0
    }
    /// The worker's clock at this callback, in nanoseconds (the clock
    /// [`TcpIo::set_timer`] deadlines are in).
    fn now(&self) -> u64;
    /// Arm the connection's service timer for `deadline` (nanoseconds, see
    /// [`TcpIo::now`]), replacing any earlier one, or cancel it with `None`.
    /// [`TcpService::on_timer`] is called once it passes.
    fn set_timer(&mut self, deadline: Option<u64>);
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
    /// The deadline set with [`TcpIo::set_timer`] passed (the timer is now
    /// unset). By default nothing happens.
    fn on_timer(&mut self, _io: &mut dyn TcpIo) {}
}

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

/// The TCP service instances of one worker.
#[derive(Default)]
pub struct TcpServices {
    /// The echo instance.
    pub echo: TcpEcho,
    /// The discard instance.
    pub discard: TcpDiscard,
    /// The HTTP responder.
    pub http: Http,
    /// The embedding application, driving the connections it opened.
    pub app: Option<Box<dyn crate::app::App>>,
}

impl fmt::Debug for TcpServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServices")
            .field("echo", &self.echo)
            .field("discard", &self.discard)
            .field("http", &self.http)
            .field("app", &self.app.is_some())
            .finish()
    }
}

impl TcpServices {
    /// The services of one worker, the HTTP responder answering `GET` with
    /// `http_body` (with the default timeouts).
    pub fn new(http_body: impl AsRef<[u8]>) -> Self {
        TcpServices {
            echo: TcpEcho::default(),
            discard: TcpDiscard::default(),
            http: Http::new(http_body),
            app: None,
        }
    }

    /// The instance that serves connections bound to `kind`.
    #[inline]
    pub fn service(&mut self, kind: ServiceKind) -> &mut dyn TcpService {
        match kind {
            ServiceKind::Echo => &mut self.echo,
            ServiceKind::Discard => &mut self.discard,
            ServiceKind::Http => &mut self.http,
            // Only the app opens App connections; while it is away (its
            // own poll, which never drives connections) nothing can be
            // bound to it, but discard is the harmless answer.
            ServiceKind::App => match &mut self.app {
                Some(app) => &mut **app,
                None => &mut self.discard,
            },
        }
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

    #[test]
    fn dispatch_by_kind() {
        let mut services = TcpServices::new(b"hi\n");
        let mut io = MockIo::default();
        services.service(ServiceKind::Echo).on_readable(&mut {
            let mut m = MockIo::default();
            m.rx.extend_from_slice(b"x");
            m
        });
        assert_eq!(services.echo.bytes_out, 1);
        io.rx.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        services.service(ServiceKind::Http).on_readable(&mut io);
        assert!(io.tx.ends_with(b"\r\n\r\nhi\n"));
        assert_eq!(services.http.responses_200, 1);
        let mut io = MockIo::default();
        io.rx.extend_from_slice(b"zzz");
        services.service(ServiceKind::Discard).on_readable(&mut io);
        assert_eq!(services.discard.bytes_in, 3);
        assert_eq!(TcpServices::default().http.body_len(), 9);
    }
}
