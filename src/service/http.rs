//! The `http` service: a fixed HTTP/1.1 responder.
//!
//! Any `GET` or `HEAD` gets `200 OK` with one configured body; every other
//! method gets `405 Method Not Allowed`; a malformed request gets
//! `400 Bad Request` and the connection is closed. Requests are parsed with
//! `httparse`, in place in the receive buffer (a request split across the two
//! slices of the ring is first copied into a per-worker scratch buffer).
//!
//! Every response the service can send is built once, at construction, for
//! each (status, connection mode) pair, so answering a request is one
//! [`TcpIo::send`] of a prebuilt slice. Pipelined requests are answered in
//! order, each only when the send buffer has room for its whole response;
//! the rest wait for [`TcpService::on_writable`]. The exception is a response
//! larger than [`ATOMIC_MAX`] (a big configured body), which a small send
//! buffer might never hold at once: it is written in pieces as space frees.
//!
//! The per-connection state is one `u64` ([`TcpIo::app_state`]): request-body
//! bytes still to skip, the response being written and how far, which timer
//! runs, and the closing flags.
//!
//! Timeouts (the connection's service timer, [`TcpIo::set_timer`]), so that
//! a peer cannot hold a connection and its buffers by sending slowly or not
//! at all (slowloris):
//! - header: from the accept, or from the first byte of a later request,
//!   the request (head, and any body, which is skipped) must have arrived
//!   within `header_timeout` (nginx `client_header_timeout`, Apache
//!   `RequestReadTimeout header=`); it is not restarted by more bytes;
//! - idle: a kept-alive connection with no request in progress is closed
//!   after `idle_timeout` (nginx `keepalive_timeout`);
//! - send: a response the peer does not read (no progress for
//!   `idle_timeout`; nginx `send_timeout`).
//!
//! As nginx, no `408` is sent: a header or send timeout resets the
//! connection (nginx with `reset_timedout_connection on`, which frees its
//! state at once rather than leaving it in FIN-WAIT), an idle timeout
//! closes it in order. Each is counted ([`Http::header_timeouts`] and the
//! others).

use std::fmt;
use std::mem::MaybeUninit;

use crate::tcp::service::{TcpIo, TcpService};

/// The body `GET` gets when none is configured.
pub const DEFAULT_BODY: &[u8] = b"shardnet\n";

/// The longest request header section accepted, in bytes; a longer one (or
/// one still unfinished at this length) is answered with `400`.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header fields a request may carry; more is answered with `400`.
pub const MAX_HEADERS: usize = 64;

/// Responses up to this many bytes are only ever written whole; longer ones
/// are written in pieces when the send buffer cannot take them at once.
pub const ATOMIC_MAX: usize = 4096;

/// The longest body [`Http::new`] accepts (the in-progress offset of a
/// response must fit in the connection's state word).
pub const MAX_BODY: usize = (1 << OFFSET_BITS) - 1024;

/// The default header timeout, in milliseconds (see the module's doc).
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = crate::config::DEFAULT_HTTP_HEADER_TIMEOUT_MS;

/// The default idle (and send) timeout, in milliseconds.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = crate::config::DEFAULT_HTTP_IDLE_TIMEOUT_MS;

// ---------------------------------------------------------------------------
// Per-connection state, packed into the u64 app-state word.
//
// bits 0..32   request-body bytes still to skip
// bits 32..56  bytes of the pending response already written
// bits 56..58  the timer armed: a `Phase`
// bits 58..62  pending response: 0 = none, else its index + 1
// bit  62      closing: ignore input; close once the pending response is out
// bit  63      shut: `close()` was called

const SKIP_BITS: u32 = 32;
const OFFSET_SHIFT: u32 = 32;
const OFFSET_BITS: u32 = 24;
const PHASE_SHIFT: u32 = 56;
const PENDING_SHIFT: u32 = 58;
const CLOSING: u64 = 1 << 62;
const SHUT: u64 = 1 << 63;

/// Which service timer runs, and so what its expiry means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// None (closing: TCP's own timers end the connection).
    #[default]
    Off = 0,
    /// A request is awaited or in progress: header timeout.
    Request = 1,
    /// Kept alive with nothing in progress: idle timeout.
    Idle = 2,
    /// Waiting for the peer to read a response: send timeout.
    Send = 3,
}

impl Phase {
    fn from_bits(bits: u64) -> Phase {
        match bits & 3 {
            1 => Phase::Request,
            2 => Phase::Idle,
            3 => Phase::Send,
            _ => Phase::Off,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ConnState {
    skip: u32,
    offset: u32,
    phase: Phase,
    pending: u8,
    closing: bool,
    shut: bool,
}

impl ConnState {
    fn load(word: u64) -> Self {
        ConnState {
            skip: (word & ((1 << SKIP_BITS) - 1)) as u32,
            offset: ((word >> OFFSET_SHIFT) & ((1 << OFFSET_BITS) - 1)) as u32,
            phase: Phase::from_bits(word >> PHASE_SHIFT),
            pending: ((word >> PENDING_SHIFT) & 0xf) as u8,
            closing: word & CLOSING != 0,
            shut: word & SHUT != 0,
        }
    }

    fn store(self) -> u64 {
        debug_assert!(u64::from(self.offset) < 1 << OFFSET_BITS);
        debug_assert!(self.pending < 16);
        u64::from(self.skip)
            | (u64::from(self.offset) << OFFSET_SHIFT)
            | ((self.phase as u64) << PHASE_SHIFT)
            | (u64::from(self.pending) << PENDING_SHIFT)
            | if self.closing { CLOSING } else { 0 }
            | if self.shut { SHUT } else { 0 }
    }
}

// ---------------------------------------------------------------------------
// Prebuilt responses.

/// What a well-formed request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Head,
    Other,
}

/// How the connection goes on after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnMode {
    /// HTTP/1.1 default: stays open, no `Connection` header.
    KeepDefault,
    /// HTTP/1.0 with `Connection: keep-alive`: stays open, and says so.
    KeepExplicit,
    /// Closes after the response (`Connection: close`).
    Close,
}

const MODES: [ConnMode; 3] = [
    ConnMode::KeepDefault,
    ConnMode::KeepExplicit,
    ConnMode::Close,
];
const METHODS: [Method; 3] = [Method::Get, Method::Head, Method::Other];
/// Index of the `400` response; `0..9` are `METHODS x MODES`.
const BAD_REQUEST: usize = 9;
const RESPONSES: usize = 10;

fn response_index(method: Method, mode: ConnMode) -> usize {
    let m = METHODS.iter().position(|&x| x == method).unwrap_or(0);
    let c = MODES.iter().position(|&x| x == mode).unwrap_or(0);
    m * MODES.len() + c
}

const NOT_ALLOWED_BODY: &[u8] = b"method not allowed\n";
const BAD_REQUEST_BODY: &[u8] = b"bad request\n";

fn build_response(
    status: &str,
    extra: &str,
    mode: ConnMode,
    content_length: usize,
    body: &[u8],
) -> Box<[u8]> {
    let connection = match mode {
        ConnMode::KeepDefault => "",
        ConnMode::KeepExplicit => "Connection: keep-alive\r\n",
        ConnMode::Close => "Connection: close\r\n",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nServer: shardnet\r\n{extra}Content-Type: text/plain\r\n\
         Content-Length: {content_length}\r\n{connection}\r\n"
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out.into_boxed_slice()
}

// ---------------------------------------------------------------------------
// Request parsing.

/// The outcome of parsing the start of the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parsed {
    /// No complete header section yet.
    Partial,
    /// Malformed, too long, or unsupported (`Transfer-Encoding`): `400`.
    Bad,
    /// A complete request head.
    Request {
        /// Bytes of the request line and header section.
        head_len: usize,
        method: Method,
        mode: ConnMode,
        /// `Content-Length` of the request body.
        body: u32,
    },
}

/// Whether the comma-separated header value `value` lists `token`.
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn parse_content_length(value: &[u8]) -> Option<u32> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    u32::try_from(n).ok()
}

/// Parse the request head at the start of `buf`.
fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Parsed::Bad
            } else {
                Parsed::Partial
            };
        }
        Err(_) => return Parsed::Bad,
    };
    if head_len > MAX_HEAD {
        return Parsed::Bad;
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let mut close = false;
    let mut keep_alive = false;
    let mut body: Option<u32> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            close |= has_token(h.value, b"close");
            keep_alive |= has_token(h.value, b"keep-alive");
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match (parse_content_length(h.value), body) {
                (None, _) => return Parsed::Bad,
                (Some(n), Some(m)) if n != m => return Parsed::Bad,
                (Some(n), _) => body = Some(n),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad;
        }
    }
    let mode = match req.version {
        Some(1) if close => ConnMode::Close,
        Some(1) => ConnMode::KeepDefault,
        Some(0) if keep_alive && !close => ConnMode::KeepExplicit,
        Some(0) => ConnMode::Close,
        _ => return Parsed::Bad,
    };
    Parsed::Request {
        head_len,
        method,
        mode,
        body: body.unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------
// The service.

/// Why [`Http::pump`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Waiting for more request bytes.
    NeedInput,
    /// Waiting for send-buffer space.
    Blocked,
    /// Closing: nothing more to do.
    Done,
}

/// The HTTP/1.1 responder; one instance per worker serves all its
/// connections.
pub struct Http {
    /// Request heads answered (well-formed or not).
    pub requests: u64,
    /// `200 OK` responses started.
    pub responses_200: u64,
    /// `400 Bad Request` responses started.
    pub responses_400: u64,
    /// `405 Method Not Allowed` responses started.
    pub responses_405: u64,
    /// Bytes read from connections (request heads, bodies, ignored input).
    pub bytes_in: u64,
    /// Response bytes written.
    pub bytes_out: u64,
    /// Connections reset because a request did not arrive in time.
    pub header_timeouts: u64,
    /// Kept-alive connections closed after the idle timeout.
    pub idle_timeouts: u64,
    /// Connections reset because the peer did not read a response.
    pub send_timeouts: u64,
    /// The header timeout in nanoseconds; 0: none.
    header_timeout_ns: u64,
    /// The idle and send timeout in nanoseconds; 0: none.
    idle_timeout_ns: u64,
    body_len: usize,
    responses: [Box<[u8]>; RESPONSES],
    /// Where a request head split across the ring's two slices is gathered.
    scratch: Vec<u8>,
    /// The worker's counters, where the timeouts are published.
    counters: Option<std::sync::Arc<crate::counters::WorkerCounters>>,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("requests", &self.requests)
            .field("responses_200", &self.responses_200)
            .field("responses_400", &self.responses_400)
            .field("responses_405", &self.responses_405)
            .field("bytes_in", &self.bytes_in)
            .field("bytes_out", &self.bytes_out)
            .field("header_timeouts", &self.header_timeouts)
            .field("idle_timeouts", &self.idle_timeouts)
            .field("send_timeouts", &self.send_timeouts)
            .field("body_len", &self.body_len)
            .finish_non_exhaustive()
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new(DEFAULT_BODY)
    }
}

impl Http {
    /// The responder `[http]` describes: its body and timeouts.
    pub fn from_settings(settings: &crate::config::HttpSettings) -> Self {
        let mut http = Http::new(settings.body.as_bytes());
        http.set_timeouts(
            settings.header_timeout_ms.saturating_mul(1_000_000),
            settings.idle_timeout_ms.saturating_mul(1_000_000),
        );
        http
    }

    /// Publish the timeout counts in `counters` (the worker's) as they
    /// change.
    pub fn set_counters(&mut self, counters: std::sync::Arc<crate::counters::WorkerCounters>) {
        self.counters = Some(counters);
    }

    /// A responder whose `200 OK` carries `body`, with the default timeouts
    /// ([`DEFAULT_HEADER_TIMEOUT_MS`], [`DEFAULT_IDLE_TIMEOUT_MS`]).
    ///
    /// # Panics
    /// If `body` is longer than [`MAX_BODY`].
    pub fn new(body: impl AsRef<[u8]>) -> Self {
        let body = body.as_ref();
        assert!(
            body.len() <= MAX_BODY,
            "http body of {} bytes is over the {MAX_BODY}-byte limit",
            body.len()
        );
        let responses = std::array::from_fn(|i| {
            if i == BAD_REQUEST {
                return build_response(
                    "400 Bad Request",
                    "",
                    ConnMode::Close,
                    BAD_REQUEST_BODY.len(),
                    BAD_REQUEST_BODY,
                );
            }
            let mode = MODES[i % MODES.len()];
            match METHODS[i / MODES.len()] {
                Method::Get => build_response("200 OK", "", mode, body.len(), body),
                Method::Head => build_response("200 OK", "", mode, body.len(), &[]),
                Method::Other => build_response(
                    "405 Method Not Allowed",
                    "Allow: GET, HEAD\r\n",
                    mode,
                    NOT_ALLOWED_BODY.len(),
                    NOT_ALLOWED_BODY,
                ),
            }
        });
        Http {
            requests: 0,
            responses_200: 0,
            responses_400: 0,
            responses_405: 0,
            bytes_in: 0,
            bytes_out: 0,
            header_timeouts: 0,
            idle_timeouts: 0,
            send_timeouts: 0,
            header_timeout_ns: DEFAULT_HEADER_TIMEOUT_MS * 1_000_000,
            idle_timeout_ns: DEFAULT_IDLE_TIMEOUT_MS * 1_000_000,
            body_len: body.len(),
            responses,
            scratch: Vec::with_capacity(MAX_HEAD),
            counters: None,
        }
    }

    /// The configured `200 OK` body's length.
    pub fn body_len(&self) -> usize {
        self.body_len
    }

    /// Set the header timeout and the idle (and send) timeout, in
    /// nanoseconds; 0 turns one off. Applies to timers armed from now on.
    pub fn set_timeouts(&mut self, header_ns: u64, idle_ns: u64) {
        self.header_timeout_ns = header_ns;
        self.idle_timeout_ns = idle_ns;
    }

    /// Arm the timer of `phase` unless it already runs (or, with `restart`,
    /// in any case).
    fn arm(&self, io: &mut dyn TcpIo, st: &mut ConnState, phase: Phase, restart: bool) {
        if st.phase == phase && !restart {
            return;
        }
        let timeout = match phase {
            Phase::Off => 0,
            Phase::Request => self.header_timeout_ns,
            Phase::Idle | Phase::Send => self.idle_timeout_ns,
        };
        if timeout == 0 {
            if st.phase != Phase::Off {
                io.set_timer(None);
            }
        } else {
            io.set_timer(Some(io.now().saturating_add(timeout)));
        }
        st.phase = phase;
    }

    /// Parse the request head at the start of the receive buffer, gathering
    /// it into the scratch buffer when it spans the ring's wrap.
    fn next_head(&mut self, io: &dyn TcpIo) -> Parsed {
        let (first, second) = io.recv_data();
        match parse_head(first) {
            Parsed::Partial if !second.is_empty() => {
                let more = second.len().min(MAX_HEAD - first.len());
                self.scratch.clear();
                self.scratch.extend_from_slice(first);
                self.scratch.extend_from_slice(&second[..more]);
                parse_head(&self.scratch)
            }
            parsed => parsed,
        }
    }

    /// Consume everything received, counting it.
    fn drain(&mut self, io: &mut dyn TcpIo) {
        let (a, b) = io.recv_data();
        let n = a.len() + b.len();
        if n > 0 {
            io.consume(n);
            self.bytes_in += n as u64;
        }
    }

    /// Make all the progress the receive buffer and the send space allow.
    fn pump(&mut self, io: &mut dyn TcpIo) {
        let mut st = ConnState::load(*io.app_state());
        let mut wrote = false;
        let stop = loop {
            // Finish the response in progress.
            if st.pending != 0 {
                let resp = &self.responses[usize::from(st.pending) - 1];
                let rest = &resp[st.offset as usize..];
                let n = io.send(rest);
                self.bytes_out += n as u64;
                wrote |= n > 0;
                if n < rest.len() {
                    st.offset += n as u32;
                    break Stop::Blocked;
                }
                st.pending = 0;
                st.offset = 0;
            }
            if st.closing {
                if !st.shut {
                    io.close();
                    st.shut = true;
                }
                self.drain(io);
                break Stop::Done;
            }
            // Skip the previous request's body.
            if st.skip > 0 {
                let (a, b) = io.recv_data();
                let n = (a.len() + b.len()).min(st.skip as usize);
                if n > 0 {
                    io.consume(n);
                    self.bytes_in += n as u64;
                    st.skip -= n as u32;
                }
                if st.skip > 0 {
                    break Stop::NeedInput;
                }
            }
            let (index, head_len, body, close) = match self.next_head(io) {
                Parsed::Partial => break Stop::NeedInput,
                Parsed::Bad => (BAD_REQUEST, 0, 0, true),
                Parsed::Request {
                    head_len,
                    method,
                    mode,
                    body,
                } => (
                    response_index(method, mode),
                    head_len,
                    body,
                    mode == ConnMode::Close,
                ),
            };
            let len = self.responses[index].len();
            let space = io.send_space();
            if space < len && (len <= ATOMIC_MAX || space == 0) {
                break Stop::Blocked;
            }
            // Commit: the response goes out (whole now, or in pieces).
            self.requests += 1;
            match index {
                BAD_REQUEST => self.responses_400 += 1,
                i if METHODS[i / MODES.len()] == Method::Other => self.responses_405 += 1,
                _ => self.responses_200 += 1,
            }
            if head_len > 0 {
                io.consume(head_len);
                self.bytes_in += head_len as u64;
            }
            st.pending = index as u8 + 1;
            st.offset = 0;
            st.skip = body;
            st.closing = close;
        };
        // The peer is done and no complete request is waiting: close.
        if stop == Stop::NeedInput && io.peer_closed() && !st.shut {
            io.close();
            st.shut = true;
            st.closing = true;
            st.skip = 0;
            self.drain(io);
        }
        // The timer for what the connection waits for now.
        let phase = if st.shut {
            Phase::Off
        } else if stop == Stop::Blocked {
            Phase::Send
        } else if st.skip > 0 || !io.recv_data().0.is_empty() {
            Phase::Request
        } else {
            Phase::Idle
        };
        self.arm(io, &mut st, phase, phase == Phase::Send && wrote);
        *io.app_state() = st.store();
    }
}

impl TcpService for Http {
    fn on_accepted(&mut self, io: &mut dyn TcpIo) {
        // The first request's head is due within the header timeout.
        let mut st = ConnState::load(*io.app_state());
        self.arm(io, &mut st, Phase::Request, true);
        *io.app_state() = st.store();
    }

    fn on_readable(&mut self, io: &mut dyn TcpIo) {
        self.pump(io);
    }

    fn on_timer(&mut self, io: &mut dyn TcpIo) {
        let mut st = ConnState::load(*io.app_state());
        match st.phase {
            Phase::Off => return,
            Phase::Request => {
                self.header_timeouts += 1;
                if let Some(c) = &self.counters {
                    c.http_header_timeouts.set(self.header_timeouts);
                }
                io.abort();
            }
            Phase::Send => {
                self.send_timeouts += 1;
                if let Some(c) = &self.counters {
                    c.http_send_timeouts.set(self.send_timeouts);
                }
                io.abort();
            }
            Phase::Idle => {
                self.idle_timeouts += 1;
                if let Some(c) = &self.counters {
                    c.http_idle_timeouts.set(self.idle_timeouts);
                }
                if !st.shut {
                    io.close();
                }
                st.shut = true;
                st.closing = true;
            }
        }
        st.phase = Phase::Off;
        *io.app_state() = st.store();
    }

    fn on_writable(&mut self, io: &mut dyn TcpIo) {
        self.pump(io);
    }

    fn on_peer_closed(&mut self, io: &mut dyn TcpIo) {
        self.pump(io);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::mock::MockIo;
    use proptest::prelude::*;

    /// One parsed response.
    #[derive(Debug)]
    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Parse every response in `tx`; `is_head[i]` says response `i` answers a
    /// HEAD (no body follows its head). All of `tx` must be used.
    fn responses(mut tx: &[u8], is_head: &[bool]) -> Vec<Resp> {
        let mut out = Vec::new();
        while !tx.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            let n = match resp.parse(tx) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!(
                    "bad response {other:?} in {:?}",
                    String::from_utf8_lossy(tx)
                ),
            };
            assert_eq!(resp.version, Some(1));
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8(h.value.to_vec()).unwrap(),
                    )
                })
                .collect();
            let status = resp.code.unwrap();
            let len: usize = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .expect("Content-Length")
                .1
                .parse()
                .unwrap();
            let body_len = if is_head.get(out.len()).copied().unwrap_or(false) {
                0
            } else {
                len
            };
            assert!(tx.len() >= n + body_len, "truncated response");
            out.push(Resp {
                status,
                headers,
                body: tx[n..n + body_len].to_vec(),
            });
            tx = &tx[n + body_len..];
        }
        out
    }

    fn get_all(tx: &[u8]) -> Vec<Resp> {
        responses(tx, &[])
    }

    fn assert_200(r: &Resp, body: &[u8]) {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Server"), Some("shardnet"));
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
        assert_eq!(
            r.header("Content-Length"),
            Some(DEFAULT_BODY.len().to_string().as_str())
        );
        assert_eq!(r.body, body);
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn get() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        io.deliver(&mut http, GET);
        let r = get_all(&io.tx);
        assert_eq!(r.len(), 1);
        assert_200(&r[0], DEFAULT_BODY);
        assert_eq!(r[0].header("Connection"), None);
        assert!(!io.closed());
        assert!(io.rx.is_empty());
        assert_eq!((http.requests, http.responses_200), (1, 1));
        assert_eq!(http.bytes_in, GET.len() as u64);
        assert_eq!(http.bytes_out, io.tx.len() as u64);
    }

    #[test]
    fn configured_body() {
        let body: std::sync::Arc<[u8]> = std::sync::Arc::from(&b"<h1>hello</h1>"[..]);
        let mut http = Http::new(body.clone());
        let mut io = MockIo::default();
        io.deliver(&mut http, GET);
        let r = get_all(&io.tx);
        assert_eq!(r[0].body, &body[..]);
        assert_eq!(r[0].header("Content-Length"), Some("14"));
    }

    #[test]
    fn head_has_no_body() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        io.deliver(&mut http, b"HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        io.deliver(&mut http, GET);
        let r = responses(&io.tx, &[true, false]);
        assert_eq!(r.len(), 2);
        assert_200(&r[0], b"");
        assert_200(&r[1], DEFAULT_BODY);
        assert!(!io.closed());
    }

    #[test]
    fn http10_closes_by_default() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        io.deliver(&mut http, b"GET / HTTP/1.0\r\n\r\n");
        let r = get_all(&io.tx);
        assert_eq!(r.len(), 1);
        assert_200(&r[0], DEFAULT_BODY);
        assert_eq!(r[0].header("Connection"), Some("close"));
        assert_eq!(io.closes, 1);
    }

    #[test]
    fn http10_keep_alive() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        let req = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        io.deliver(&mut http, req);
        io.deliver(&mut http, req);
        let r = get_all(&io.tx);
        assert_eq!(r.len(), 2);
        for r in &r {
            assert_200(r, DEFAULT_BODY);
            assert_eq!(r.header("Connection"), Some("keep-alive"));
        }
        assert!(!io.closed());
    }

    #[test]
    fn connection_close_then_input_is_ignored() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        let req = b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n";
        let mut stream = req.to_vec();
        stream.extend_from_slice(GET);
        io.deliver(&mut http, &stream);
        let r = get_all(&io.tx);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].header("Connection"), Some("close"));
        assert_eq!(io.closes, 1);
        assert!(io.rx.is_empty());
        io.deliver(&mut http, GET);
        io.fin(&mut http);
        assert_eq!(get_all(&io.tx).len(), 1);
        assert!(io.rx.is_empty());
        assert_eq!(io.closes, 1);
        assert_eq!(http.bytes_in, (stream.len() + GET.len()) as u64);
    }

    #[test]
    fn pipelined_three() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        let stream =
            b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nX: y\r\n\r\n";
        io.deliver(&mut http, stream);
        let r = responses(&io.tx, &[false, true, false]);
        assert_eq!(r.len(), 3);
        assert_200(&r[0], DEFAULT_BODY);
        assert_200(&r[1], b"");
        assert_200(&r[2], DEFAULT_BODY);
        assert!(io.rx.is_empty());
        assert_eq!(http.requests, 3);
    }

    #[test]
    fn byte_by_byte() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        let mut stream = GET.to_vec();
        stream.extend_from_slice(b"HEAD / HTTP/1.1\r\nUser-Agent: t\r\n\r\n");
        for (i, b) in stream.iter().enumerate() {
            io.deliver(&mut http, &[*b]);
            let expect = if i + 1 < GET.len() {
                0
            } else if i + 1 < stream.len() {
                1
            } else {
                2
            };
            assert_eq!(
                responses(&io.tx, &[false, true]).len(),
                expect,
                "after byte {i}"
            );
        }
        assert!(io.rx.is_empty());
        assert!(!io.closed());
    }

    #[test]
    fn request_wrapped_across_the_ring() {
        for wrap in 1..GET.len() {
            let mut http = Http::default();
            let mut io = MockIo::default();
            io.rx.extend_from_slice(GET);
            io.rx.extend_from_slice(GET);
            io.wrap_at = wrap;
            http.on_readable(&mut io);
            let r = get_all(&io.tx);
            assert_eq!(r.len(), 2, "wrap at {wrap}");
            assert!(io.rx.is_empty());
        }
        // The wrap inside the second request.
        let mut http = Http::default();
        let mut io = MockIo::default();
        io.rx.extend_from_slice(GET);
        io.rx.extend_from_slice(GET);
        io.wrap_at = GET.len() + 7;
        http.on_readable(&mut io);
        assert_eq!(get_all(&io.tx).len(), 2);
    }

    #[test]
    fn post_with_body_in_pieces_is_405_and_keeps_the_connection() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        // The body looks like a request: it must be skipped, not answered.
        let body = b"GET /evil HTTP/1.1\r\n\r\nxx";
        let head = format!(
            "POST /form HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        io.deliver(&mut http, head.as_bytes());
        io.deliver(&mut http, &body[..5]);
        io.deliver(&mut http, &body[5..20]);
        let r = get_all(&io.tx);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 405);
        assert_eq!(r[0].header("Allow"), Some("GET, HEAD"));
        assert_eq!(r[0].header("Connection"), None);
        let mut rest = body[20..].to_vec();
        rest.extend_from_slice(GET);
        io.deliver(&mut http, &rest);
        let r = get_all(&io.tx);
        assert_eq!(r.len(), 2);
        assert_200(&r[1], DEFAULT_BODY);
        assert!(!io.closed());
        assert_eq!((http.responses_405, http.responses_200), (1, 1));
    }

    #[test]
    fn get_with_body_skips_it() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        io.deliver(
            &mut http,
            b"GET / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcdGET / HTTP/1.1\r\n\r\n",
        );
        assert_eq!(get_all(&io.tx).len(), 2);
        assert!(io.rx.is_empty());
    }

    fn assert_bad(request: &[u8]) {
        let mut http = Http::default();
        let mut io = MockIo::default();
        io.deliver(&mut http, request);
        let r = get_all(&io.tx);
        assert_eq!(r.len(), 1, "{:?}", String::from_utf8_lossy(request));
        assert_eq!(r[0].status, 400);
        assert_eq!(r[0].header("Connection"), Some("close"));
        assert_eq!(io.closes, 1);
        assert!(io.rx.is_empty());
        io.deliver(&mut http, GET);
        assert_eq!(get_all(&io.tx).len(), 1, "input after the 400 was answered");
        assert!(io.rx.is_empty());
        assert_eq!((http.requests, http.responses_400), (1, 1));
    }

    #[test]
    fn chunked_is_400() {
        assert_bad(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    }

    #[test]
    fn garbage_is_400() {
        assert_bad(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
        assert_bad(b"GET / HTTP/2.0\r\n\r\n");
        assert_bad(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n");
        assert_bad(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        assert_bad(b"GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n");
        assert_bad(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n");
    }

    #[test]
    fn oversize_head_is_400() {
        let mut req = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        req.resize(MAX_HEAD + 100, b'a');
        // Unfinished at the limit.
        assert_bad(&req);
        // Complete, but over the limit.
        req.extend_from_slice(b"\r\n\r\n");
        assert_bad(&req);
        // Just under the limit is fine.
        let mut ok = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        ok.resize(MAX_HEAD - 4, b'a');
        ok.extend_from_slice(b"\r\n\r\n");
        let mut http = Http::default();
        let mut io = MockIo::default();
        io.deliver(&mut http, &ok);
        assert_eq!(get_all(&io.tx)[0].status, 200);
    }

    #[test]
    fn oversize_head_across_the_wrap_is_400() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        io.rx.extend_from_slice(b"GET / HTTP/1.1\r\nX-Long: ");
        io.rx.resize(MAX_HEAD * 2, b'a');
        io.wrap_at = 100;
        http.on_readable(&mut io);
        assert_eq!(get_all(&io.tx)[0].status, 400);
        assert_eq!(io.closes, 1);
    }

    #[test]
    fn too_many_headers_is_400() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        assert_bad(&req);
    }

    #[test]
    fn waits_for_send_space() {
        let mut http = Http::default();
        let mut io = MockIo::with_space(10);
        let mut stream = GET.to_vec();
        stream.extend_from_slice(GET);
        io.deliver(&mut http, &stream);
        assert!(io.tx.is_empty(), "half a response was written");
        assert_eq!(io.rx.len(), stream.len());
        let one = http.responses[response_index(Method::Get, ConnMode::KeepDefault)].len();
        // Room for one response and a bit: exactly one goes out.
        io.grant(&mut http, one + 5 - 10);
        assert_eq!(io.tx.len(), one);
        assert_eq!(io.rx.len(), GET.len());
        io.grant(&mut http, one);
        let r = get_all(&io.tx);
        assert_eq!(r.len(), 2);
        assert!(io.rx.is_empty());
    }

    #[test]
    fn bad_request_also_waits_for_space() {
        let mut http = Http::default();
        let mut io = MockIo::with_space(0);
        io.deliver(&mut http, b"garbage garbage\r\n\r\n");
        io.fin(&mut http);
        assert!(io.tx.is_empty());
        assert!(!io.closed());
        io.grant(&mut http, 1000);
        assert_eq!(get_all(&io.tx)[0].status, 400);
        assert_eq!(io.closes, 1);
    }

    #[test]
    fn peer_close_with_partial_request_closes() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        io.deliver(&mut http, b"GET / HT");
        io.fin(&mut http);
        assert!(io.tx.is_empty());
        assert_eq!(io.closes, 1);
        assert!(io.rx.is_empty());
    }

    #[test]
    fn peer_close_answers_what_is_pending_first() {
        let mut http = Http::default();
        let mut io = MockIo::with_space(0);
        io.deliver(&mut http, GET);
        io.fin(&mut http);
        assert!(!io.closed());
        io.grant(&mut http, 10_000);
        assert_eq!(get_all(&io.tx).len(), 1);
        assert_eq!(io.closes, 1);
        // A body still to skip when the peer closes: close.
        let mut io = MockIo::default();
        io.deliver(
            &mut http,
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        );
        io.fin(&mut http);
        assert_eq!(get_all(&io.tx)[0].status, 405);
        assert_eq!(io.closes, 1);
    }

    #[test]
    fn large_body_is_streamed() {
        let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut http = Http::new(body.clone());
        let mut io = MockIo::with_space(3000);
        let mut stream = GET.to_vec();
        stream.extend_from_slice(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        io.deliver(&mut http, &stream);
        assert_eq!(io.tx.len(), 3000);
        while !io.closed() {
            io.grant(&mut http, 3000);
        }
        let r = get_all(&io.tx);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].body, body);
        assert_eq!(r[1].body, body);
        assert_eq!(r[1].header("Connection"), Some("close"));
        assert_eq!(http.bytes_out, io.tx.len() as u64);
    }

    const SEC: u64 = 1_000_000_000;

    /// An `Http` with a 2 s header timeout and a 10 s idle timeout.
    fn timed() -> Http {
        let mut http = Http::default();
        http.set_timeouts(2 * SEC, 10 * SEC);
        http
    }

    #[test]
    fn header_timeout_runs_from_the_accept_and_more_bytes_do_not_restart_it() {
        let mut http = timed();
        let mut io = MockIo {
            now: 5 * SEC,
            ..MockIo::default()
        };
        http.on_accepted(&mut io);
        assert_eq!(io.timer, Some(7 * SEC));
        // A slowloris: a byte now and then.
        for (i, b) in b"GET / HTTP/1.1\r\nX-slow: ".iter().enumerate() {
            io.now = 5 * SEC + i as u64 * 50_000_000;
            io.deliver(&mut http, &[*b]);
            assert_eq!(io.timer, Some(7 * SEC), "restarted by byte {i}");
        }
        assert!(!io.advance(&mut http, 7 * SEC - 1));
        assert!(io.advance(&mut http, 7 * SEC));
        assert!(io.aborted, "reset, as nginx with reset_timedout_connection");
        assert!(io.tx.is_empty(), "no 408 is sent");
        assert_eq!(http.header_timeouts, 1);
        assert_eq!((http.idle_timeouts, http.send_timeouts), (0, 0));
    }

    #[test]
    fn idle_timeout_between_requests_then_header_timeout_from_the_next_first_byte() {
        let mut http = timed();
        let mut io = MockIo::default();
        http.on_accepted(&mut io);
        io.now = SEC;
        io.deliver(&mut http, GET);
        assert_eq!(get_all(&io.tx).len(), 1);
        assert_eq!(io.timer, Some(11 * SEC), "idle: 10 s after the answer");
        // The next request starts: the header timeout, from its first byte.
        io.now = 4 * SEC;
        io.deliver(&mut http, b"GET /2 HT");
        assert_eq!(io.timer, Some(6 * SEC));
        io.now = 5 * SEC;
        io.deliver(&mut http, b"TP/1.1\r\n\r\n");
        assert_eq!(get_all(&io.tx).len(), 2);
        assert_eq!(io.timer, Some(15 * SEC));
        assert!(io.advance(&mut http, 15 * SEC));
        assert_eq!(io.closes, 1, "closed in order");
        assert!(!io.aborted);
        assert_eq!(http.idle_timeouts, 1);
        // Whatever still arrives is read and dropped; no timer is left.
        io.deliver(&mut http, GET);
        assert_eq!(get_all(&io.tx).len(), 2);
        assert_eq!(io.timer, None);
        assert_eq!(io.closes, 1);
    }

    #[test]
    fn send_timeout_restarts_with_progress() {
        let mut http = timed();
        let mut io = MockIo::with_space(10);
        http.on_accepted(&mut io);
        io.now = SEC;
        io.deliver(&mut http, GET);
        assert_eq!(io.timer, Some(11 * SEC), "blocked: the send timeout");
        // Room for part of nothing: a whole response needs more, no progress.
        io.now = 2 * SEC;
        io.grant(&mut http, 1);
        assert_eq!(io.timer, Some(11 * SEC));
        assert!(io.advance(&mut http, 11 * SEC));
        assert!(io.aborted);
        assert_eq!(http.send_timeouts, 1);
        // A large body written in pieces: each piece restarts it.
        let mut http = Http::new(vec![b'a'; 20_000]);
        http.set_timeouts(2 * SEC, 10 * SEC);
        let mut io = MockIo::with_space(3000);
        io.deliver(&mut http, GET);
        assert_eq!(io.timer, Some(10 * SEC));
        io.now = 3 * SEC;
        io.grant(&mut http, 3000);
        assert_eq!(io.timer, Some(13 * SEC));
    }

    #[test]
    fn zero_timeouts_arm_nothing() {
        let mut http = Http::default();
        http.set_timeouts(0, 0);
        let mut io = MockIo::default();
        http.on_accepted(&mut io);
        io.deliver(&mut http, b"GET / HT");
        assert_eq!(io.timer, None);
        io.deliver(&mut http, b"TP/1.1\r\n\r\n");
        assert_eq!(io.timer, None);
        assert_eq!(get_all(&io.tx).len(), 1);
    }

    #[test]
    fn default_timeouts_are_armed() {
        let mut http = Http::default();
        let mut io = MockIo::default();
        http.on_accepted(&mut io);
        assert_eq!(io.timer, Some(DEFAULT_HEADER_TIMEOUT_MS * 1_000_000));
    }

    #[test]
    fn state_word_round_trips() {
        let st = ConnState {
            skip: u32::MAX,
            offset: (1 << OFFSET_BITS) - 1,
            phase: Phase::Send,
            pending: 10,
            closing: true,
            shut: false,
        };
        assert_eq!(ConnState::load(st.store()), st);
        assert_eq!(ConnState::load(0), ConnState::default());
    }

    /// A request of a few shapes; returns its bytes and whether it is a HEAD.
    fn request(kind: u8, body: usize) -> (Vec<u8>, bool, u16) {
        match kind % 4 {
            0 => (GET.to_vec(), false, 200),
            1 => (
                b"HEAD /h HTTP/1.1\r\nAccept: */*\r\n\r\n".to_vec(),
                true,
                200,
            ),
            2 => (
                b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
                false,
                200,
            ),
            _ => {
                let mut r =
                    format!("PUT /p HTTP/1.1\r\nContent-Length: {body}\r\n\r\n").into_bytes();
                r.extend(std::iter::repeat_n(b'G', body));
                (r, false, 405)
            }
        }
    }

    proptest! {
        #[test]
        fn any_split_yields_every_response(
            reqs in prop::collection::vec((0u8..4, 0usize..40), 1..8),
            cuts in prop::collection::vec(1usize..60, 0..40),
            wraps in prop::collection::vec(0usize..80, 40),
            spaces in prop::collection::vec(0usize..400, 40),
        ) {
            let mut stream = Vec::new();
            let mut is_head = Vec::new();
            let mut statuses = Vec::new();
            for &(kind, body) in &reqs {
                let (bytes, head, status) = request(kind, body);
                stream.extend_from_slice(&bytes);
                is_head.push(head);
                statuses.push(status);
            }
            let mut http = Http::default();
            let mut io = MockIo::with_space(0);
            let mut at = 0;
            let mut step = 0;
            while at < stream.len() {
                let len = cuts.get(step).copied().unwrap_or(usize::MAX).min(stream.len() - at);
                io.rx.extend_from_slice(&stream[at..at + len]);
                at += len;
                // Anywhere in what is buffered: the ring's wrap.
                io.wrap_at = if wraps[step % wraps.len()] == 0 {
                    usize::MAX
                } else {
                    wraps[step % wraps.len()]
                };
                http.on_readable(&mut io);
                io.grant(&mut http, spaces[step % spaces.len()]);
                step += 1;
            }
            io.fin(&mut http);
            while !io.closed() {
                io.grant(&mut http, 100);
            }
            let r = responses(&io.tx, &is_head);
            prop_assert_eq!(r.len(), reqs.len());
            for (r, &status) in r.iter().zip(&statuses) {
                prop_assert_eq!(r.status, status);
            }
            prop_assert!(io.rx.is_empty());
            prop_assert_eq!(io.closes, 1);
            prop_assert_eq!(http.requests, reqs.len() as u64);
        }
    }

    /// bench/trex's ASTF profiles wait for exactly the bytes this service
    /// sends (TRex's `recv` counts bytes: one too many and a connection hangs,
    /// one too few and the next request goes early). The profiles' requests
    /// and expected lengths come from tests/trex/check_profiles.py.
    #[test]
    fn trex_profiles_expect_exactly_what_http_sends() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let out = std::process::Command::new("/usr/bin/python3")
            .arg(format!("{dir}/tests/trex/check_profiles.py"))
            .arg("--emit-http")
            .output()
            .expect("run /usr/bin/python3 (apt-get install python3-scapy)");
        assert!(
            out.status.success(),
            "check_profiles.py --emit-http: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cases = 0;
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let name = case["case"].as_str().unwrap();
            let request = case["request"].as_str().unwrap().as_bytes();
            let recv_len = case["recv_len"].as_u64().unwrap() as usize;
            let requests = case["requests"].as_u64().unwrap();
            let server_close = case["server_close"].as_bool().unwrap();
            let mut http = Http::new(case["body"].as_str().unwrap());
            let mut io = MockIo::default();
            http.on_accepted(&mut io);
            // The client's requests one at a time, each after its response.
            for i in 0..requests {
                let before = io.tx.len();
                io.deliver(&mut http, request);
                assert_eq!(io.tx.len() - before, recv_len, "{name}: request {i}");
                let r = responses(&io.tx[before..], &[false]);
                assert_eq!(r[0].status, 200, "{name}");
                if i + 1 < requests {
                    assert!(!io.closed(), "{name}: closed after request {i}");
                }
            }
            assert_eq!(io.closed(), server_close, "{name}: who closes first");
            assert!(!io.aborted, "{name}");
            cases += 1;
        }
        assert_eq!(cases, 6, "every ASTF case of check_profiles.py");
    }
}
