//! `shardnet-load`: a load generator built on shardnet's own active opens,
//! as Seastar's seawreck is built on Seastar.
//!
//! It runs the shardnet data plane of a config file (any backend: DPDK with
//! `net_memif` towards a shardnet in another process, AF_PACKET or a DPDK
//! port towards any host) with one [`LoadApp`] per worker. Every worker
//! opens its own connections and flows from source ports whose replies hash
//! back to it, and keeps its own counters and latency histogram.
//!
//! Modes:
//! - `udp`: request/response datagrams over N flows; closed loop (one
//!   request in flight per flow) or open loop at a fixed rate (`--rate`).
//! - `rps`: C keep-alive TCP connections, one request in flight each; as
//!   fast as responses come, or at a fixed rate (`--rate`): requests are
//!   due on a schedule and go out on the next idle connection, and their
//!   latency counts from when they were due, not when a connection was free
//!   (as wrk2 corrects for coordinated omission).
//! - `cps`: connect, one request, response, close; C in flight at most, at
//!   a fixed rate or as fast as they complete.
//! - `bulk`: C TCP connections sending as fast as the peer takes, or at a
//!   fixed bit rate (`--rate`).
//!
//! Requests are HTTP/1.1 GETs (`--proto http`, responses parsed with
//! `httparse`), `--size` bytes echoed back (`--proto echo`), or Redis
//! commands in RESP2 (`--proto redis-get`: `GET key:NNNNNN`; `--proto
//! redis-set`: `SET key:NNNNNN <--size bytes>`), the key drawn at random
//! out of `--keyspace` for each request; a RESP reply is complete when one
//! whole reply value has been received, and an error reply (`-ERR ...`)
//! counts in `error_replies`, not in `completed`. In rps mode,
//! `--pipeline P` keeps P requests in flight on each connection (replies
//! come in order; each is timed from its own request). Latencies go
//! into HDR histograms (`hdrhistogram`); progress is printed every second;
//! the results are printed as a table and written as JSON (`--json`).

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;

use shardnet::app::{App, AppIo, ConnectError};
use shardnet::config::Config;
use shardnet::counters::Counter;
use shardnet::runtime::{self, AppSetup, Signals};
use shardnet::service::{TcpIo, TcpService};

/// What the load is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// UDP request/response over N flows.
    Udp,
    /// TCP keep-alive requests per second over C connections.
    Rps,
    /// TCP connections per second: connect, request, response, close.
    Cps,
    /// TCP bulk transfer over C connections (client sends).
    Bulk,
}

/// What a TCP request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Proto {
    /// An HTTP/1.1 GET; the response is complete after its Content-Length.
    Http,
    /// `--size` bytes, complete when as many came back.
    Echo,
    /// Redis (RESP2) `GET key:NNNNNN`, a random key out of `--keyspace`;
    /// complete after one whole RESP reply.
    RedisGet,
    /// Redis (RESP2) `SET key:NNNNNN VALUE`, VALUE `--size` bytes, a random
    /// key out of `--keyspace`; complete after one whole RESP reply.
    RedisSet,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Http => "http",
            Proto::Echo => "echo",
            Proto::RedisGet => "redis-get",
            Proto::RedisSet => "redis-set",
        }
    }

    fn is_redis(self) -> bool {
        matches!(self, Proto::RedisGet | Proto::RedisSet)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "shardnet-load",
    version,
    about = "A load generator on shardnet's own stack (UDP req/resp, TCP RPS, CPS, bulk)"
)]
struct Args {
    /// The shardnet config of the client side: backend, port, cores, address.
    #[arg(long)]
    config: PathBuf,
    /// What to generate.
    #[arg(long, value_enum)]
    mode: Mode,
    /// The server, as IP:PORT.
    #[arg(long)]
    target: SocketAddrV4,
    /// TCP connections (rps, bulk: open at once; cps: in flight at most).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// UDP flows (each its own source port).
    #[arg(long, default_value_t = 64)]
    flows: usize,
    /// Fixed rate, per second over all workers (udp: datagrams, rps:
    /// requests, cps: connections, bulk: bits of payload); 0 = as fast as
    /// responses allow (closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Go on past `--duration` until this many responses completed (udp,
    /// rps: replies; cps: connections), at most 20 times as long: for
    /// tests that need so much load on a machine of any speed.
    #[arg(long, default_value_t = 0)]
    min_completed: u64,
    /// Request size in bytes (udp, and tcp with --proto echo); the value's
    /// size with --proto redis-set.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// What a TCP request is: an HTTP GET, bytes echoed, or a Redis (RESP2)
    /// GET or SET of a random key `key:NNNNNN` (an error reply counts in
    /// `error_replies`, not as completed).
    #[arg(long, value_enum, default_value_t = Proto::Http)]
    proto: Proto,
    /// Redis keys: `key:0` .. `key:N-1`, zero-padded to 6 digits at least.
    #[arg(long, default_value_t = 100_000)]
    keyspace: u64,
    /// rps: requests in flight per connection, 1 to 64 (replies come in
    /// order); not with --rate.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Source ports for the client's flows, FIRST-LAST. The kernel must not
    /// use them on this interface.
    #[arg(long, default_value = "1024-65535")]
    local_ports: String,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

/// Payload bytes of a UDP request that carry its flow and send time.
const UDP_HEADER: usize = 16;
/// A UDP request without a reply for this long is counted lost and resent.
const UDP_TIMEOUT_NS: u64 = 1_000_000_000;
/// UDP closed loop: how long the load waits, sending nothing new, before
/// it stops, so that every request lost has timed out (1 s) and every
/// reply delayed less than this came.
const UDP_DRAIN: Duration = Duration::from_secs(2);
/// How long the load may take to start (the data plane up, the target
/// resolved) before it gives up.
const NOTHING_SENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Histogram range: 1 ns to 60 s, 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;
/// At most this many new connections or datagrams per worker per poll round.
const PER_ROUND: u64 = 64;
/// Bulk at a fixed rate: payload bytes a worker may send ahead of its
/// schedule (one burst of a 64 KiB window).
const BULK_BURST: u64 = 64 * 1024;
/// Bulk at a fixed rate: the least a connection sends at a time (a few
/// full segments).
const BULK_CHUNK: u64 = 16 * 1024;
/// The most requests in flight per connection (`--pipeline`): each
/// worker keeps a send time per request in flight, for every source port
/// (8 B * 65536 * P: 32 MiB at 64).
const MAX_PIPELINE: usize = 64;
/// RESP: arrays nested deeper than this are taken as malformed.
const RESP_MAX_DEPTH: u32 = 8;
/// RESP: the longest header line of a bulk string or an array, and the
/// largest bulk string, taken as well formed.
const RESP_MAX_LINE: usize = 32;
const RESP_MAX_BULK: usize = 512 * 1024 * 1024;

/// Where a connection stands with a paced sender (`--rate` in rps and bulk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    /// Nothing to do with it now (a request in flight, or not ours).
    Busy,
    /// rps: no request in flight; queued for the next one due.
    Idle,
    /// Woken for the next request due (rps) or for the bytes the rate now
    /// allows (bulk): its next `on_writable` sends.
    Woken,
    /// bulk: it wanted to send more than the rate allowed; queued for a wake.
    Throttled,
}

/// Settings every worker's app reads.
#[derive(Debug)]
struct LoadConfig {
    mode: Mode,
    proto: Proto,
    target: SocketAddrV4,
    size: usize,
    workers: usize,
    /// Per worker.
    connections: Vec<usize>,
    flows: Vec<usize>,
    rate_per_worker: f64,
    epoch: Instant,
    /// UDP closed loop, past the run's end: no new requests, so that what
    /// is in flight is answered or times out before the stop.
    draining: std::sync::atomic::AtomicBool,
    /// The request; for Redis a template whose key digits each request
    /// overwrites.
    request: Vec<u8>,
    /// Redis: where the key's digits start in `request`, how many there
    /// are, and how many keys.
    key_at: usize,
    key_digits: usize,
    keyspace: u64,
    /// Requests in flight per connection (rps).
    pipeline: usize,
}

impl LoadConfig {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// One worker's results, written by that worker only.
#[derive(Default)]
struct Stats {
    /// Requests or datagrams sent, connections started.
    sent: Counter,
    /// Responses complete (rps, udp: replies; cps: connections answered).
    completed: Counter,
    /// Connections established.
    established: Counter,
    /// Connections closed in order / reset.
    closed: Counter,
    resets: Counter,
    /// Connections in flight when the load stopped (reset by us).
    aborted_at_stop: Counter,
    /// Connect or send errors (other than waiting for ARP).
    errors: Counter,
    /// UDP requests that got no reply in time.
    timeouts: Counter,
    /// Redis error replies (`-ERR ...`): answered, not completed.
    error_replies: Counter,
    /// UDP replies that came after their request had timed out (counted in
    /// `completed` too): `timeouts - late` requests or replies were lost.
    late: Counter,
    /// Payload bytes handed to TCP or UDP, and received.
    bytes_tx: Counter,
    bytes_rx: Counter,
    /// First send and last event, in ns since the epoch.
    first_ns: Counter,
    last_ns: Counter,
}

struct WorkerShared {
    stats: Stats,
    histogram: Mutex<Histogram<u64>>,
    last_error: Mutex<Option<String>>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

struct UdpFlow {
    port: u16,
    /// When the request in flight was sent (0: none).
    since: u64,
}

/// The per-worker load generator.
struct LoadApp {
    config: Arc<LoadConfig>,
    shared: Arc<WorkerShared>,
    id: usize,
    histogram: Histogram<u64>,
    /// TCP connections alive (or being opened).
    live: usize,
    /// UDP flows, and which are ready to send (closed loop).
    flows: Vec<UdpFlow>,
    flow_of_port: Vec<u32>,
    ready: VecDeque<u32>,
    next_flow: usize,
    /// Connect time by source port (cps latency).
    started_at: Vec<u64>,
    scratch: Vec<u8>,
    last_sweep_ns: u64,
    zeros: Vec<u8>,
    /// The worker is stopping: its own resets of what is in flight are not
    /// the peer's doing.
    stopping: bool,
    /// Paced senders (rps and bulk with `--rate`): each connection's state
    /// by source port, those waiting for their turn, and when the schedule
    /// started (0: not yet).
    pace: Vec<Pace>,
    waiting: VecDeque<u16>,
    schedule_start: u64,
    /// rps at a fixed rate: the index of the next request (the schedule
    /// has request k due at `schedule_start + k / rate`).
    next_request: u64,
    /// This worker's copy of the request (Redis: its key rewritten for
    /// each request, in place).
    request: Vec<u8>,
    /// Redis keys: xorshift64* state.
    rng: u64,
    /// `--pipeline` over 1: when each request in flight was sent, P slots
    /// per source port. The connection's `app_state` holds the slot of the
    /// next request to send (low 32 bits) and of the next reply (high 32).
    sent_at: Vec<u64>,
}

impl LoadApp {
    fn new(config: Arc<LoadConfig>, shared: Arc<WorkerShared>, id: usize) -> LoadApp {
        LoadApp {
            zeros: vec![0; 64 * 1024],
            shared,
            id,
            histogram: histogram(),
            live: 0,
            flows: Vec::new(),
            flow_of_port: vec![u32::MAX; 65536],
            ready: VecDeque::new(),
            next_flow: 0,
            started_at: vec![0; 65536],
            scratch: Vec::new(),
            last_sweep_ns: 0,
            stopping: false,
            pace: vec![Pace::Busy; 65536],
            waiting: VecDeque::new(),
            schedule_start: 0,
            next_request: 0,
            request: config.request.clone(),
            rng: 0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            sent_at: match config.pipeline {
                1 => Vec::new(),
                p => vec![0; 65536 * p],
            },
            config,
        }
    }

    fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    fn mark_start(&self, now: u64) {
        if self.stats().first_ns.get() == 0 {
            self.stats().first_ns.set(now.max(1));
        }
    }

    fn error(&self, error: &ConnectError) {
        match error {
            ConnectError::Resolving(_) => {}
            other => {
                self.stats().errors.inc();
                self.note(other.to_string());
            }
        }
    }

    /// Keep `what` as the worker's last error (reported at the end).
    fn note(&self, what: String) {
        if let Ok(mut last) = self.shared.last_error.try_lock() {
            *last = Some(what);
        }
    }

    /// The datagrams or connections the fixed rate allows now. (On the
    /// app's own clock, `LoadConfig::now_ns`, as every time it keeps: not
    /// the worker's, which started later.)
    fn budget(&self) -> u64 {
        if self.config.rate_per_worker <= 0.0 {
            return PER_ROUND;
        }
        let first = self.stats().first_ns.get();
        let elapsed = if first == 0 {
            0
        } else {
            self.config.now_ns().saturating_sub(first)
        };
        let due = (self.config.rate_per_worker * elapsed as f64 / 1e9) as u64 + 1;
        due.saturating_sub(self.stats().sent.get()).min(PER_ROUND)
    }

    fn record(&mut self, latency_ns: u64) {
        let _ = self.histogram.record(latency_ns.clamp(1, HIST_MAX_NS));
    }

    fn poll_udp(&mut self, now: u64, io: &mut dyn AppIo) {
        let target = self.config.target;
        while self.flows.len() < self.config.flows[self.id] {
            match io.bind_udp(target) {
                Ok(port) => {
                    self.flow_of_port[usize::from(port)] = self.flows.len() as u32;
                    self.ready.push_back(self.flows.len() as u32);
                    self.flows.push(UdpFlow { port, since: 0 });
                }
                Err(e) => {
                    self.error(&e);
                    return;
                }
            }
        }
        if self.flows.is_empty() {
            return;
        }
        let open_loop = self.config.rate_per_worker > 0.0;
        let mut budget = match self.config.draining.load(Relaxed) {
            true => 0,
            false => self.budget(),
        };
        let mut payload = [0u8; 2048];
        let size = self.config.size.clamp(UDP_HEADER, payload.len());
        while budget > 0 {
            let flow = if open_loop {
                self.next_flow = (self.next_flow + 1) % self.flows.len();
                self.next_flow as u32
            } else {
                match self.ready.pop_front() {
                    Some(flow) => flow,
                    None => break,
                }
            };
            let sent_at = self.config.now_ns();
            payload[..8].copy_from_slice(&u64::from(flow).to_be_bytes());
            payload[8..16].copy_from_slice(&sent_at.to_be_bytes());
            let port = self.flows[flow as usize].port;
            match io.send_udp(port, target, &payload[..size]) {
                Ok(()) => {
                    self.mark_start(sent_at);
                    self.flows[flow as usize].since = sent_at;
                    self.stats().sent.inc();
                    self.stats().bytes_tx.add(size as u64);
                    budget -= 1;
                }
                Err(e) => {
                    self.error(&e);
                    if !open_loop {
                        self.ready.push_front(flow);
                    }
                    break;
                }
            }
        }
        // Closed loop: a lost request or reply must not stall its flow.
        if !open_loop && now.saturating_sub(self.last_sweep_ns) > UDP_TIMEOUT_NS / 10 {
            self.last_sweep_ns = now;
            let now = self.config.now_ns();
            for (i, flow) in self.flows.iter_mut().enumerate() {
                if flow.since != 0 && now.saturating_sub(flow.since) > UDP_TIMEOUT_NS {
                    flow.since = 0;
                    self.shared.stats.timeouts.inc();
                    self.ready.push_back(i as u32);
                }
            }
        }
    }

    fn poll_tcp(&mut self, io: &mut dyn AppIo) {
        let want = self.config.connections[self.id];
        let mut budget = match self.config.mode {
            Mode::Cps => self.budget(),
            _ => PER_ROUND,
        };
        while self.live < want && budget > 0 {
            match io.connect(self.config.target) {
                Ok(port) => {
                    let at = self.config.now_ns();
                    self.mark_start(at);
                    self.started_at[usize::from(port)] = at;
                    self.live += 1;
                    budget -= 1;
                    if self.config.mode == Mode::Cps {
                        self.stats().sent.inc();
                    }
                }
                Err(e) => {
                    self.error(&e);
                    break;
                }
            }
        }
        if self.paced() && self.schedule_start != 0 {
            self.wake_paced(io);
        }
    }

    /// rps or bulk at a fixed rate.
    fn paced(&self) -> bool {
        self.config.rate_per_worker > 0.0 && matches!(self.config.mode, Mode::Rps | Mode::Bulk)
    }

    /// What the schedule allows by `now` (on the app's clock): requests due
    /// (rps), or payload bytes (bulk), since it started.
    fn due(&self, now: u64) -> u64 {
        let elapsed = now.saturating_sub(self.schedule_start) as f64 / 1e9;
        match self.config.mode {
            Mode::Bulk => (self.config.rate_per_worker / 8.0 * elapsed) as u64 + BULK_BURST,
            _ => (self.config.rate_per_worker * elapsed) as u64 + 1,
        }
    }

    /// Wake the waiting connections the schedule has work for: they send
    /// from their `on_writable` at the end of this round. (A connection
    /// closed while waiting is woken for nothing; what it would have sent
    /// is left for the next round.) Bulk waits until a chunk is due, so
    /// that a low rate sends full segments, not a few bytes per round.
    fn wake_paced(&mut self, io: &mut dyn AppIo) {
        let due = self.due(self.config.now_ns());
        let mut wakes = match self.config.mode {
            Mode::Bulk if due >= self.stats().bytes_tx.get() + BULK_CHUNK => {
                self.waiting.len() as u64
            }
            Mode::Bulk => 0,
            _ => due.saturating_sub(self.next_request).min(PER_ROUND),
        };
        let (want, from) = match self.config.mode {
            Mode::Bulk => (Pace::Throttled, Pace::Woken),
            _ => (Pace::Idle, Pace::Woken),
        };
        while wakes > 0 {
            let Some(port) = self.waiting.pop_front() else {
                break;
            };
            // A port queued twice (closed while waiting, then reused) is
            // woken once.
            if self.pace[usize::from(port)] != want {
                continue;
            }
            self.pace[usize::from(port)] = from;
            io.wake(port, self.config.target);
            wakes -= 1;
        }
    }

    /// The connection of `io` waits for its turn.
    fn queue_paced(&mut self, io: &dyn TcpIo, state: Pace) {
        let port = io.local_port();
        if self.pace[usize::from(port)] != state {
            self.pace[usize::from(port)] = state;
            self.waiting.push_back(port);
        }
    }

    /// Send a request on `io`'s connection and note when; false if the
    /// connection did not take it all (then it is aborted).
    fn send_request(&mut self, io: &mut dyn TcpIo) -> bool {
        if self.config.key_digits > 0 {
            let key = next_random(&mut self.rng) % self.config.keyspace;
            let at = self.config.key_at;
            write_digits(&mut self.request[at..at + self.config.key_digits], key);
        }
        let n = io.send(&self.request);
        if n < self.request.len() {
            // A fresh or idle connection has the room (and one with
            // `--pipeline` requests in flight, as long as they fit its send
            // buffer): only a closed one refuses.
            self.stats().errors.inc();
            io.abort();
            return false;
        }
        self.stats().bytes_tx.add(n as u64);
        if self.config.mode == Mode::Rps {
            self.stats().sent.inc();
        }
        let now = self.config.now_ns();
        if self.sent_at.is_empty() {
            *io.app_state() = now;
        } else {
            let (port, p) = (usize::from(io.local_port()), self.config.pipeline);
            let state = io.app_state();
            let slot = (*state & 0xffff_ffff) as usize;
            self.sent_at[port * p + slot] = now;
            *state = (*state & !0xffff_ffff) | ((slot + 1) % p) as u64;
        }
        true
    }

    /// When the request the reply just received answers was sent (or, in
    /// cps, its connection started).
    fn request_sent_at(&mut self, io: &mut dyn TcpIo) -> u64 {
        let port = usize::from(io.local_port());
        if self.config.mode == Mode::Cps {
            return self.started_at[port];
        }
        if self.sent_at.is_empty() {
            return *io.app_state();
        }
        let p = self.config.pipeline;
        let state = io.app_state();
        let slot = (*state >> 32) as usize;
        *state = (*state & 0xffff_ffff) | ((((slot + 1) % p) as u64) << 32);
        self.sent_at[port * p + slot]
    }

    /// What the received bytes start with: a complete response (its
    /// length), not yet one, or bytes that cannot be one.
    fn complete_response(&mut self, io: &dyn TcpIo) -> Reply {
        let (a, b) = io.recv_data();
        let data: &[u8] = if b.is_empty() {
            a
        } else {
            self.scratch.clear();
            self.scratch.extend_from_slice(a);
            self.scratch.extend_from_slice(b);
            &self.scratch
        };
        let whole = |len: usize| Reply::Complete { len, error: false };
        match self.config.proto {
            Proto::RedisGet | Proto::RedisSet => resp_reply(data),
            Proto::Echo if data.len() >= self.config.size => whole(self.config.size),
            Proto::Echo => Reply::Incomplete,
            Proto::Http => {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut response = httparse::Response::new(&mut headers);
                let header_len = match response.parse(data) {
                    Ok(httparse::Status::Complete(n)) => n,
                    _ => return Reply::Incomplete,
                };
                let body = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                match data.len() >= header_len + body {
                    true => whole(header_len + body),
                    false => Reply::Incomplete,
                }
            }
        }
    }
}

impl TcpService for LoadApp {
    fn on_accepted(&mut self, io: &mut dyn TcpIo) {
        self.stats().established.inc();
        if self.paced() {
            // The schedule starts with the first connection up (the
            // reported rate counts from the first connect, a handshake
            // earlier).
            if self.schedule_start == 0 {
                self.schedule_start = self.config.now_ns().max(1);
            }
            // (A port used before may have a state left from a connection
            // that closed while it waited.)
            self.pace[usize::from(io.local_port())] = Pace::Busy;
            if self.config.mode == Mode::Rps {
                self.queue_paced(io, Pace::Idle);
                return;
            }
        }
        match self.config.mode {
            Mode::Bulk => self.on_writable(io),
            _ => {
                *io.app_state() = 0;
                for _ in 0..self.config.pipeline {
                    if !self.send_request(io) {
                        break;
                    }
                }
            }
        }
    }

    fn on_readable(&mut self, io: &mut dyn TcpIo) {
        if self.config.mode == Mode::Bulk {
            let (a, b) = io.recv_data();
            let n = a.len() + b.len();
            io.consume(n);
            return;
        }
        loop {
            let (len, error) = match self.complete_response(io) {
                Reply::Incomplete => break,
                Reply::Complete { len, error } => (len, error),
                Reply::Malformed => {
                    self.stats().errors.inc();
                    self.note(format!(
                        "malformed {} reply; connection aborted",
                        self.config.proto.name()
                    ));
                    io.abort();
                    return;
                }
            };
            if error && self.stats().error_replies.get() == 0 {
                // The first error reply, for the report (once: no
                // allocation per reply).
                let (a, _) = io.recv_data();
                let text = if a.len() >= len { &a[..len] } else { a };
                self.note(format!(
                    "error reply: {}",
                    String::from_utf8_lossy(text).trim_end()
                ));
            }
            io.consume(len);
            self.stats().bytes_rx.add(len as u64);
            let now = self.config.now_ns();
            let since = self.request_sent_at(io);
            if error {
                self.stats().error_replies.inc();
            } else {
                self.record(now.saturating_sub(since));
                self.stats().completed.inc();
            }
            self.stats().last_ns.set(now);
            match self.config.mode {
                Mode::Rps if self.paced() => self.queue_paced(io, Pace::Idle),
                Mode::Rps => {
                    if !self.send_request(io) {
                        break;
                    }
                }
                // HTTP: the server closes ("Connection: close") and we
                // follow; echo and Redis: we close first.
                _ => {
                    if self.config.proto != Proto::Http {
                        io.close();
                    }
                    break;
                }
            }
        }
    }

    fn on_writable(&mut self, io: &mut dyn TcpIo) {
        let port = usize::from(io.local_port());
        match self.config.mode {
            Mode::Rps if self.paced() && self.pace[port] == Pace::Woken => {
                // Its turn: the next request due, timed from when it was due.
                self.pace[port] = Pace::Busy;
                let due_at = self.schedule_start
                    + (self.next_request as f64 * 1e9 / self.config.rate_per_worker) as u64;
                self.next_request += 1;
                self.send_request(io);
                *io.app_state() = due_at;
                return;
            }
            Mode::Bulk => {}
            _ => return,
        }
        let paced = self.paced();
        if paced && self.pace[port] == Pace::Throttled {
            // Waiting for its wake: the schedule decides, not the peer's ACK.
            return;
        }
        loop {
            let mut room = io.send_space().min(self.zeros.len());
            let mut throttled = false;
            if paced {
                let allowed = self
                    .due(self.config.now_ns())
                    .saturating_sub(self.stats().bytes_tx.get());
                if (allowed as usize) < room {
                    // Less than a chunk waits for the next wake.
                    room = if allowed >= BULK_CHUNK {
                        allowed as usize
                    } else {
                        0
                    };
                    throttled = true;
                }
            }
            if throttled {
                self.queue_paced(io, Pace::Throttled);
            }
            if room == 0 {
                break;
            }
            let n = io.send(&self.zeros[..room]);
            self.shared.stats.bytes_tx.add(n as u64);
            if n < room || throttled {
                break;
            }
        }
        self.stats().last_ns.set(self.config.now_ns());
    }

    fn on_closed(&mut self, closed: &shardnet::service::Closed) {
        let reset = closed.reset;
        self.live = self.live.saturating_sub(1);
        if self.stopping {
            self.stats().aborted_at_stop.inc();
        } else if reset {
            self.stats().resets.inc();
        } else {
            self.stats().closed.inc();
        }
    }
}

impl App for LoadApp {
    fn poll(&mut self, now_ns: u64, io: &mut dyn AppIo) {
        match self.config.mode {
            Mode::Udp => self.poll_udp(now_ns, io),
            _ => self.poll_tcp(io),
        }
    }

    fn on_datagram(&mut self, _from: SocketAddrV4, local_port: u16, payload: &[u8]) {
        if payload.len() < UDP_HEADER {
            return;
        }
        let flow = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
        let sent_at = u64::from_be_bytes(payload[8..16].try_into().unwrap_or_default());
        let now = self.config.now_ns();
        self.record(now.saturating_sub(sent_at));
        self.stats().completed.inc();
        self.stats().bytes_rx.add(payload.len() as u64);
        self.stats().last_ns.set(now);
        let index = self.flow_of_port[usize::from(local_port)];
        if self.config.rate_per_worker <= 0.0 && u64::from(index) == flow {
            if let Some(f) = self.flows.get_mut(index as usize) {
                // A reply after its timeout already made the flow ready.
                if f.since == sent_at {
                    f.since = 0;
                    self.ready.push_back(index);
                } else {
                    self.shared.stats.late.inc();
                }
            }
        }
    }

    fn on_connect_error(&mut self, _remote: SocketAddrV4, error: ConnectError) {
        self.live = self.live.saturating_sub(1);
        self.error(&error);
    }

    fn on_stop(&mut self) {
        self.stopping = true;
        if let Ok(mut shared) = self.shared.histogram.lock() {
            let _ = shared.add(&self.histogram);
        }
    }
}

/// `n` split over `workers` as evenly as possible.
fn split(n: usize, workers: usize) -> Vec<usize> {
    (0..workers)
        .map(|w| n / workers + usize::from(w < n % workers))
        .collect()
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let (a, b) = text.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b && a > 0).then_some((a, b))
}

/// What the received bytes of a TCP connection start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// Not a whole response yet.
    Incomplete,
    /// A whole response of `len` bytes; `error`: a Redis error reply (or
    /// an array holding one).
    Complete { len: usize, error: bool },
    /// Bytes no response starts with.
    Malformed,
}

/// The RESP2 reply at the start of `data`: simple string, error, integer,
/// bulk string (or null), array (or null) of these.
fn resp_reply(data: &[u8]) -> Reply {
    match resp_value(data, 0, 0) {
        Ok(Some((len, error))) => Reply::Complete { len, error },
        Ok(None) => Reply::Incomplete,
        Err(()) => Reply::Malformed,
    }
}

/// The RESP value at `data[at..]`: where it ends and whether it is (or
/// holds) an error; `Ok(None)` if it is not all there.
fn resp_value(data: &[u8], at: usize, depth: u32) -> Result<Option<(usize, bool)>, ()> {
    let Some(&kind) = data.get(at) else {
        return Ok(None);
    };
    let counted = matches!(kind, b'$' | b'*');
    let Some(cr) = resp_line(data, at + 1)? else {
        if counted && data.len() - at > RESP_MAX_LINE {
            return Err(());
        }
        return Ok(None);
    };
    let (line, next) = (&data[at + 1..cr], cr + 2);
    match kind {
        b'+' | b':' => Ok(Some((next, false))),
        b'-' => Ok(Some((next, true))),
        b'$' => match resp_length(line)? {
            None => Ok(Some((next, false))),
            Some(n) if n > RESP_MAX_BULK => Err(()),
            Some(n) => {
                let end = next + n + 2;
                if data.len() < end {
                    Ok(None)
                } else if &data[end - 2..end] == b"\r\n" {
                    Ok(Some((end, false)))
                } else {
                    Err(())
                }
            }
        },
        b'*' => match resp_length(line)? {
            None => Ok(Some((next, false))),
            Some(_) if depth >= RESP_MAX_DEPTH => Err(()),
            Some(n) => {
                let (mut end, mut error) = (next, false);
                for _ in 0..n {
                    match resp_value(data, end, depth + 1)? {
                        None => return Ok(None),
                        Some((e, err)) => (end, error) = (e, error | err),
                    }
                }
                Ok(Some((end, error)))
            }
        },
        _ => Err(()),
    }
}

/// Where the line from `from` ends (its `\r`), if it is all there; a `\r`
/// not followed by `\n` is malformed.
fn resp_line(data: &[u8], from: usize) -> Result<Option<usize>, ()> {
    let Some(i) = data
        .get(from..)
        .and_then(|d| d.iter().position(|&b| b == b'\r'))
    else {
        return Ok(None);
    };
    match data.get(from + i + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(from + i)),
        Some(_) => Err(()),
    }
}

/// The length of a bulk string or an array: a number, or -1 (null: None).
fn resp_length(text: &[u8]) -> Result<Option<usize>, ()> {
    if text == b"-1" {
        return Ok(None);
    }
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    Ok(Some(
        text.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')),
    ))
}

/// xorshift64*: the next pseudo-random number (Redis keys).
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// `value` in decimal, zero-padded to fill `digits` (its high digits
/// dropped if it does not fit).
fn write_digits(digits: &mut [u8], mut value: u64) {
    for d in digits.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// A Redis command in RESP2: GET or SET of `key:` and `digits` zeros (a
/// value of `size` bytes for SET), and where the digits start.
fn redis_request(proto: Proto, digits: usize, size: usize) -> (Vec<u8>, usize) {
    let key = 4 + digits;
    let mut request = match proto {
        Proto::RedisSet => format!("*3\r\n$3\r\nSET\r\n${key}\r\nkey:"),
        _ => format!("*2\r\n$3\r\nGET\r\n${key}\r\nkey:"),
    }
    .into_bytes();
    let at = request.len();
    request.resize(at + digits, b'0');
    request.extend_from_slice(b"\r\n");
    if proto == Proto::RedisSet {
        request.extend_from_slice(format!("${size}\r\n").as_bytes());
        request.extend((0..size).map(|i| b'a' + (i % 26) as u8));
        request.extend_from_slice(b"\r\n");
    }
    (request, at)
}

/// The digits of a Redis key: enough for `keyspace - 1`, 6 at least.
fn key_digits(keyspace: u64) -> usize {
    keyspace.saturating_sub(1).to_string().len().max(6)
}

fn request_bytes(args: &Args) -> Vec<u8> {
    match args.proto {
        Proto::RedisGet | Proto::RedisSet => {
            redis_request(args.proto, key_digits(args.keyspace), args.size).0
        }
        Proto::Echo => (0..args.size).map(|i| b'a' + (i % 26) as u8).collect(),
        Proto::Http => {
            let connection = if args.mode == Mode::Cps {
                "close"
            } else {
                "keep-alive"
            };
            format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nConnection: {connection}\r\n\r\n",
                args.target
            )
            .into_bytes()
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARDNET_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardnet-load: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(local_ports) = parse_range(&args.local_ports) else {
        anyhow::bail!(
            "--local-ports {:?}: expected FIRST-LAST, 1-65535",
            args.local_ports
        );
    };
    if args.mode == Mode::Udp && args.size < UDP_HEADER {
        anyhow::bail!(
            "--size {} is too small for udp: at least {UDP_HEADER}",
            args.size
        );
    }
    if args.duration <= 0.0 || !args.duration.is_finite() {
        anyhow::bail!("--duration must be positive");
    }
    if args.pipeline == 0 || args.pipeline > MAX_PIPELINE {
        anyhow::bail!("--pipeline must be 1 to {MAX_PIPELINE}");
    }
    if args.pipeline > 1 && (args.mode != Mode::Rps || args.rate != 0) {
        anyhow::bail!("--pipeline over 1 is for --mode rps without --rate");
    }
    if args.proto.is_redis() && args.keyspace == 0 {
        anyhow::bail!("--keyspace must be at least 1");
    }
    let redis = args.proto.is_redis() && args.mode != Mode::Udp && args.mode != Mode::Bulk;
    let (key_at, key_digits) = match redis {
        true => {
            let digits = key_digits(args.keyspace);
            (redis_request(args.proto, digits, args.size).1, digits)
        }
        false => (0, 0),
    };
    let workers = config.dataplane.workers.len();
    let load = Arc::new(LoadConfig {
        mode: args.mode,
        proto: args.proto,
        target: args.target,
        size: args.size,
        workers,
        connections: split(args.connections, workers),
        flows: split(args.flows, workers),
        rate_per_worker: args.rate as f64 / workers as f64,
        epoch: Instant::now(),
        draining: std::sync::atomic::AtomicBool::new(false),
        request: request_bytes(&args),
        key_at,
        key_digits,
        keyspace: args.keyspace,
        pipeline: args.pipeline,
    });
    let shared: Vec<Arc<WorkerShared>> = (0..workers)
        .map(|_| {
            Arc::new(WorkerShared {
                stats: Stats::default(),
                histogram: Mutex::new(histogram()),
                last_error: Mutex::new(None),
            })
        })
        .collect();
    let factory_shared = shared.clone();
    let factory_load = load.clone();
    let setup = AppSetup {
        factory: Box::new(move |id| {
            Box::new(LoadApp::new(
                factory_load.clone(),
                factory_shared[id].clone(),
                id,
            ))
        }),
        local_ports,
    };
    let signals = Signals::install()?;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (signals, shared, done, quiet, load) = (
            signals.clone(),
            shared.clone(),
            done.clone(),
            args.quiet,
            load.clone(),
        );
        let duration = Duration::from_secs_f64(args.duration);
        let (min_completed, longest) = (args.min_completed, duration * 20);
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut last = (Instant::now(), 0u64);
            let mut drain_start = None;
            while !done.load(Relaxed) && !signals.stop.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                // The clock starts at the first request.
                if shared.iter().all(|s| s.stats.first_ns.get() == 0) {
                    // Generous: a loaded machine may take seconds to start
                    // the data plane and resolve the target.
                    if start.elapsed() > NOTHING_SENT_TIMEOUT {
                        eprintln!(
                            "shardnet-load: nothing sent after {} s (see the errors below)",
                            NOTHING_SENT_TIMEOUT.as_secs()
                        );
                        signals.stop.store(true, Relaxed);
                    }
                    continue;
                }
                let completed: u64 = shared.iter().map(|s| s.stats.completed.get()).sum();
                let first = shared
                    .iter()
                    .map(|s| s.stats.first_ns.get())
                    .filter(|&t| t != 0)
                    .min()
                    .unwrap_or(0);
                let running = Duration::from_nanos(load.now_ns().saturating_sub(first));
                if last.0.elapsed() >= Duration::from_secs(1) && !quiet {
                    let rate = (completed - last.1) as f64 / last.0.elapsed().as_secs_f64();
                    let errors: u64 = shared.iter().map(|s| s.stats.errors.get()).sum();
                    let bytes: u64 = shared.iter().map(|s| s.stats.bytes_tx.get()).sum();
                    eprintln!(
                        "[{:5.1}s] completed {completed} ({rate:.0}/s), sent {} B, errors {errors}",
                        running.as_secs_f64(),
                        bytes
                    );
                    last = (Instant::now(), completed);
                }
                if running >= duration && (completed >= min_completed || running >= longest) {
                    let closed_loop_udp = load.mode == Mode::Udp && load.rate_per_worker <= 0.0;
                    match drain_start {
                        None if closed_loop_udp => {
                            load.draining.store(true, Relaxed);
                            drain_start = Some(Instant::now());
                        }
                        Some(at) if at.elapsed() < UDP_DRAIN => {}
                        _ => signals.stop.store(true, Relaxed),
                    }
                }
            }
        })
    };
    let result = runtime::run_with_app(config, &signals, Some(setup));
    done.store(true, Relaxed);
    let _ = watcher.join();
    result?;
    report(&args, &load, &shared)
}

fn report(args: &Args, load: &LoadConfig, shared: &[Arc<WorkerShared>]) -> anyhow::Result<()> {
    let mut histogram = histogram();
    for s in shared {
        if let Ok(h) = s.histogram.lock() {
            let _ = histogram.add(&*h);
        }
    }
    let sum = |f: fn(&Stats) -> &Counter| -> u64 { shared.iter().map(|s| f(&s.stats).get()).sum() };
    let first = shared
        .iter()
        .map(|s| s.stats.first_ns.get())
        .filter(|&t| t != 0)
        .min()
        .unwrap_or(0);
    let last = shared
        .iter()
        .map(|s| s.stats.last_ns.get())
        .max()
        .unwrap_or(0);
    let seconds = (last.saturating_sub(first)) as f64 / 1e9;
    let completed = sum(|s| &s.completed);
    let bytes_tx = sum(|s| &s.bytes_tx);
    let per_second = if seconds > 0.0 {
        completed as f64 / seconds
    } else {
        0.0
    };
    let gbps = if seconds > 0.0 {
        bytes_tx as f64 * 8.0 / seconds / 1e9
    } else {
        0.0
    };
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    let errors: Vec<String> = shared
        .iter()
        .filter_map(|s| s.last_error.lock().ok().and_then(|e| e.clone()))
        .collect();
    let result = json!({
        "mode": format!("{:?}", load.mode).to_lowercase(),
        "proto": load.proto.name(),
        "target": load.target.to_string(),
        "workers": load.workers,
        "connections": args.connections,
        "flows": args.flows,
        "rate": args.rate,
        "size": args.size,
        "pipeline": load.pipeline,
        "keyspace": load.keyspace,
        "seconds": seconds,
        "sent": sum(|s| &s.sent),
        "completed": completed,
        "per_second": per_second,
        "established": sum(|s| &s.established),
        "closed": sum(|s| &s.closed),
        "resets": sum(|s| &s.resets),
        "aborted_at_stop": sum(|s| &s.aborted_at_stop),
        "errors": sum(|s| &s.errors),
        "timeouts": sum(|s| &s.timeouts),
        "late": sum(|s| &s.late),
        "error_replies": sum(|s| &s.error_replies),
        "bytes_tx": bytes_tx,
        "bytes_rx": sum(|s| &s.bytes_rx),
        "gbit_per_second": gbps,
        "latency_us": {
            "count": histogram.len(),
            "p50": us(0.5),
            "p90": us(0.9),
            "p99": us(0.99),
            "p999": us(0.999),
            "max": histogram.max() as f64 / 1e3,
            "mean": histogram.mean() / 1e3,
        },
        "histogram_us": histogram
            .iter_log(1000, 2.0)
            .filter(|v| v.count_since_last_iteration() > 0)
            .map(|v| json!([v.value_iterated_to() as f64 / 1e3, v.count_since_last_iteration()]))
            .collect::<Vec<_>>(),
        "per_worker": shared.iter().map(|s| json!({
            "sent": s.stats.sent.get(),
            "completed": s.stats.completed.get(),
            "established": s.stats.established.get(),
            "resets": s.stats.resets.get(),
            "errors": s.stats.errors.get(),
            "error_replies": s.stats.error_replies.get(),
            "bytes_tx": s.stats.bytes_tx.get(),
        })).collect::<Vec<_>>(),
        "last_errors": errors,
    });
    println!(
        "{:?} against {} for {seconds:.2} s over {} workers",
        load.mode, load.target, load.workers
    );
    println!(
        "  completed {completed} ({per_second:.0}/s), sent {}, errors {}, resets {}, timeouts {}",
        result["sent"], result["errors"], result["resets"], result["timeouts"]
    );
    if load.proto.is_redis() {
        println!("  error replies {}", result["error_replies"]);
    }
    if load.mode == Mode::Bulk {
        println!("  {bytes_tx} bytes sent, {gbps:.3} Gbit/s");
    } else {
        println!(
            "  latency us: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            us(0.5),
            us(0.99),
            us(0.999),
            histogram.max() as f64 / 1e3
        );
    }
    for e in &errors {
        println!("  last error: {e}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies a Redis server sends, each whole, and whether it is an error.
    const REPLIES: &[(&[u8], bool)] = &[
        (b"+OK\r\n", false),
        (b"$-1\r\n", false),
        (b"$3\r\nabc\r\n", false),
        (b"$0\r\n\r\n", false),
        (b"$4\r\na\r\nb\r\n", false),
        (b"-ERR unknown command 'FOO'\r\n", true),
        (b":42\r\n", false),
        (b"*-1\r\n", false),
        (b"*0\r\n", false),
        (b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n", false),
        (b"*2\r\n*1\r\n+x\r\n-WRONGTYPE no\r\n", true),
    ];

    #[test]
    fn every_reply_is_complete_only_when_all_there() {
        for &(reply, error) in REPLIES {
            for cut in 0..reply.len() {
                assert_eq!(
                    resp_reply(&reply[..cut]),
                    Reply::Incomplete,
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(reply)
                );
            }
            let complete = Reply::Complete {
                len: reply.len(),
                error,
            };
            assert_eq!(resp_reply(reply), complete);
            // Followed by the start of the next reply.
            let mut more = reply.to_vec();
            more.extend_from_slice(b"$5\r\nhel");
            assert_eq!(resp_reply(&more), complete);
        }
    }

    /// The replies back to back, arriving in pieces of every size: parsed
    /// as a receive buffer is (what is complete consumed, the rest kept),
    /// each comes out once, in order, whole.
    #[test]
    fn a_stream_split_at_any_byte_parses_in_order() {
        let stream: Vec<u8> = REPLIES
            .iter()
            .flat_map(|(r, _)| r.iter().copied())
            .collect();
        for piece in 1..=stream.len() {
            let mut buffer = Vec::new();
            let mut seen = Vec::new();
            for chunk in stream.chunks(piece) {
                buffer.extend_from_slice(chunk);
                loop {
                    match resp_reply(&buffer) {
                        Reply::Incomplete => break,
                        Reply::Complete { len, error } => {
                            seen.push((buffer[..len].to_vec(), error));
                            buffer.drain(..len);
                        }
                        Reply::Malformed => panic!("malformed at piece size {piece}: {buffer:?}"),
                    }
                }
            }
            assert!(buffer.is_empty(), "piece size {piece}: left {buffer:?}");
            let want: Vec<(Vec<u8>, bool)> =
                REPLIES.iter().map(|(r, e)| (r.to_vec(), *e)).collect();
            assert_eq!(seen, want, "piece size {piece}");
        }
    }

    #[test]
    fn malformed_replies_are_told_apart() {
        for bad in [
            &b"OK\r\n"[..],
            b"+OK\rX",
            b"$abc\r\n",
            b"$-2\r\n",
            b"$\r\n",
            b"$3\r\nabcXY",
            b"*x\r\n",
            b"$12345678901\r\n",
            b"$1234567890123456789012345678901234567890",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n+x\r\n",
            b"*2\r\n+a\r\n?\r\n",
        ] {
            assert_eq!(
                resp_reply(bad),
                Reply::Malformed,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Nested as deep as allowed is fine.
        let deep = b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n+x\r\n";
        assert_eq!(
            resp_reply(deep),
            Reply::Complete {
                len: deep.len(),
                error: false
            }
        );
    }

    #[test]
    fn redis_requests_are_resp_commands_with_their_key_in_place() {
        let (mut get, at) = redis_request(Proto::RedisGet, 6, 0);
        assert_eq!(get, b"*2\r\n$3\r\nGET\r\n$10\r\nkey:000000\r\n");
        write_digits(&mut get[at..at + 6], 4217);
        assert_eq!(get, b"*2\r\n$3\r\nGET\r\n$10\r\nkey:004217\r\n");
        let (mut set, at) = redis_request(Proto::RedisSet, 7, 3);
        write_digits(&mut set[at..at + 7], 1_234_567);
        assert_eq!(
            set,
            b"*3\r\n$3\r\nSET\r\n$11\r\nkey:1234567\r\n$3\r\nabc\r\n"
        );
        assert_eq!(key_digits(1), 6);
        assert_eq!(key_digits(100_000), 6);
        assert_eq!(key_digits(1_000_000), 6);
        assert_eq!(key_digits(1_000_001), 7);
    }

    #[test]
    fn random_keys_cover_the_keyspace() {
        let mut rng = 0x9e37_79b9_7f4a_7c15;
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            hits[(next_random(&mut rng) % 10) as usize] += 1;
        }
        assert!(hits.iter().all(|&h| h > 800), "{hits:?}");
    }
}
