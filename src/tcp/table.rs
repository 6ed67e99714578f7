//! One worker's TCP connections: the table, the listeners' side of the
//! handshake (SYN cookies included), the timer wheel and the service calls.
//!
//! - Connections live in a slab (`slab::Slab`), addressed by a `u32` key;
//!   the 4-tuple index ([`super::index::TupleIndex`]: cache-line buckets of
//!   signatures and slab keys, as DPDK's `rte_hash`) is keyed with `ahash`
//!   seeded at random per process, since peers choose the keys (quinn's
//!   `endpoint.rs` does the same for connection IDs). A large table's RX
//!   burst is looked up ahead in two passes ([`TcpTable::prefetch`]).
//! - Each connection has at most one entry in the [`TimerWheel`], at its
//!   [`Connection::poll_timeout`]; it is moved (O(1) cancel and insert) only
//!   when that deadline changes. No tick scans all connections.
//! - Half-open connections (SYN-RECEIVED) are counted; once `syn_backlog`
//!   are pending, SYNs are answered statelessly with SYN cookies (RFC 4987),
//!   so a SYN flood cannot fill the table and established connections keep
//!   being served.
//! - A full table (`max_connections`) refuses new SYNs, counted as
//!   `connection_limit` drops; the peer's SYN retries or fails as with a full
//!   Linux accept queue.
//! - A connection that enters TIME-WAIT gives its slot and buffers back and
//!   leaves a compact [`TimeWait`] record in a slab of its own (indexed by a
//!   `hashbrown` table of slab keys under the same seed, expiring on a wheel
//!   of its own), as Linux leaves an `inet_timewait_sock`. At most
//!   `max_time_wait` are kept (Linux's `tcp_max_tw_buckets`); beyond that a
//!   connection ends without TIME-WAIT, counted in `tcp_time_wait_overflow`.
//!   The service hears [`crate::service::TcpService::on_closed`] when the
//!   record ends (expiry, RST, or a new SYN reusing the 4-tuple), as it did
//!   when the whole connection waited; records count in `len` and in the
//!   `tcp_active` gauge (every state but CLOSED, TIME-WAIT included), not
//!   against `max_connections`.
//!
//! - Services may arm one timer per connection ([`TcpIo::set_timer`]); it
//!   shares the connection's wheel entry (the earlier of the two deadlines)
//!   and is delivered as [`TcpService::on_timer`](crate::service::TcpService::on_timer).
//! - A connection whose [`TcpIo::send`] fell short for want of buffer
//!   storage (the pool's byte limit) waits in a list, one entry at most per
//!   connection; when storage comes back to the pool, waiters are woken in
//!   order with a WRITABLE event (`on_writable`) while there is room.
//! - Received data that the pool has no storage for is dropped
//!   unacknowledged and counted as `tcp_no_buffer`; the peer retransmits.
//!
//! Segments to send are handed to an output callback with the peer's MAC (the
//! one its SYN came from), so that the stack builds the frames; this module
//! knows nothing of buffers, ports or Ethernet beyond that address.

use std::collections::VecDeque;

use hashbrown::HashTable;
use slab::Slab;

use crate::config::ServiceId;
use crate::counters::{DropReason, WorkerCounters};
use crate::wire::{EthernetAddress, TcpFlags, TcpHeader};

use super::buffer::BufferPool;
use super::connection::{Connection, Events, Segment, State, TcpConfig};
use super::cookie::{CookieOptions, Secrets};
use super::index::TupleIndex;
use super::ratelimit::{AckCounts, AckLimiter, DEFAULT_CHALLENGE_ACK_LIMIT};
use super::service::{Closed, ConnId, ServiceSet, TcpIo};
use super::time_wait::TimeWait;
use super::timer_wheel::{TimerId, TimerWheel};
use super::{FourTuple, Seq};

/// Timer wheel granularity.
pub const TIMER_TICK_NS: u64 = 1_000_000;

/// How long after the last SYN cookie was sent an ACK is checked against one.
const COOKIE_WINDOW_NS: u64 = 128_000_000_000;

/// Limits and parameters of a worker's table.
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// Per-connection parameters.
    pub tcp: TcpConfig,
    /// Most connections (any state but CLOSED and TIME-WAIT) at once.
    pub max_connections: usize,
    /// Most TIME-WAIT records at once (Linux's `tcp_max_tw_buckets`); a
    /// connection that would exceed it ends without TIME-WAIT.
    pub max_time_wait: usize,
    /// Half-open connections kept before SYN cookies take over.
    pub syn_backlog: usize,
    /// The buffer pool's limit, in full-size buffers: at most
    /// `max_buffers * tcp.buffer_size` bytes of send and receive buffers are
    /// lent at once, in any mix of sizes.
    pub max_buffers: usize,
    /// Challenge ACKs (RFC 5961 section 7) the worker sends per second, on
    /// average: each second's budget is drawn at random around it
    /// ([`super::ratelimit`]). `u32::MAX`: no limit.
    pub challenge_ack_limit: u32,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            tcp: TcpConfig::default(),
            max_connections: 262_144,
            max_time_wait: 262_144,
            syn_backlog: 1024,
            max_buffers: 4096,
            challenge_ack_limit: DEFAULT_CHALLENGE_ACK_LIMIT,
        }
    }
}

/// A segment ready to be framed and sent.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The connection's addresses.
    pub tuple: &'a FourTuple,
    /// The peer's (or the next hop's) MAC.
    pub peer_mac: EthernetAddress,
    /// The TCP header.
    pub header: &'a TcpHeader,
    /// The payload, in two parts (the send buffer is a ring).
    pub payload: (&'a [u8], &'a [u8]),
    /// The payload of each frame when the payload is larger than one frame
    /// may carry ([`Segment::segment_size`]): the port's TSO or the stack
    /// cuts it there. 0 for a segment that is one frame whatever its size.
    pub segment_size: u16,
}

/// What became of a segment handed to [`TcpTable::input`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A connection took it.
    Handled,
    /// No connection has this 4-tuple: the rules decide (a listener, the
    /// kernel, or a drop) through [`TcpTable::listen`].
    NoConnection,
}

struct Slot {
    conn: Connection,
    /// Its service, as an index into `TcpTable::service_ids`: a [`ServiceId`]
    /// is 24 bytes (it carries its name), this 2, which keeps the slot at
    /// 440 bytes instead of 464 (about 24 bytes less per connection).
    service: u16,
    peer_mac: EthernetAddress,
    app: u64,
    timer: Option<TimerId>,
    timer_at: u64,
    /// Counted in `half_open` (SYN-RECEIVED, not yet established).
    half_open: bool,
    /// Opened by us (active open).
    active: bool,
    /// It gave up after unanswered retransmissions or probes.
    timed_out: bool,
    /// Its output waits for the end of the batch (in `TcpTable::deferred`).
    deferred: bool,
    /// Listed in `TcpTable::buffer_waiters`.
    buffer_wait: bool,
    /// The service's timer ([`TcpIo::set_timer`]); `u64::MAX` when unset.
    app_timer_at: u64,
    /// Which occupant of its slab slot it is ([`ConnId`]).
    serial: u32,
}

impl Slot {
    /// What its service hears when it ends.
    fn closed(&self, key: u32, reset: bool) -> Closed {
        let t = self.conn.tuple();
        Closed {
            id: ConnId {
                key,
                serial: self.serial,
            },
            app_state: self.app,
            local: std::net::SocketAddrV4::new(t.local_ip, t.local_port),
            peer: std::net::SocketAddrV4::new(t.remote_ip, t.remote_port),
            reset,
            timed_out: self.timed_out,
        }
    }
}

/// A connection in TIME-WAIT: what the table needs besides the record.
struct TimeWaitSlot {
    record: TimeWait,
    peer_mac: EthernetAddress,
    /// Its expiry in `TcpTable::time_wait_wheel`.
    timer: TimerId,
}

/// One worker's TCP table.
pub struct TcpTable {
    config: TableConfig,
    secrets: Secrets,
    slots: Slab<Slot>,
    /// The connections' 4-tuple index (slab keys).
    by_tuple: TupleIndex,
    /// The seeded hash of both indexes.
    hasher: ahash::RandomState,
    wheel: TimerWheel<u32>,
    pool: BufferPool,
    half_open: usize,
    last_cookie_ns: Option<u64>,
    fired: Vec<u32>,
    /// Inside [`TcpTable::begin_batch`] .. [`TcpTable::end_batch`].
    batching: bool,
    /// Connections whose output waits for [`TcpTable::end_batch`].
    deferred: Vec<u32>,
    /// The worker's limits on ACKs to refused segments, and their counts.
    ack_limits: AckLimiter,
    /// `ack_limits`' counts as last copied to the worker's counters.
    ack_counts: AckCounts,
    /// Connections refused send-buffer storage, to wake when some comes
    /// back; each at most once (`Slot::buffer_wait`), so no longer than the
    /// table.
    buffer_waiters: VecDeque<u32>,
    /// The pool's bytes in use when a waiter was last refused: waiters are
    /// woken once use falls below it (storage came back), so a pool that
    /// stays full costs no wake-up round per segment.
    wait_level: usize,
    /// Inside [`TcpTable::wake_buffer_waiters`].
    waking: bool,
    /// Connections in TIME-WAIT, as compact records.
    time_wait: Slab<TimeWaitSlot>,
    /// The serial of the next connection ([`ConnId`]).
    next_serial: u32,
    /// Their 4-tuple index: keys of `time_wait`, hashed with `hasher`
    /// seed (the tuple is stored once, in the record).
    time_wait_index: HashTable<u32>,
    /// Their expiries (one timer each, moved when a FIN restarts the wait).
    time_wait_wheel: TimerWheel<u32>,
    /// The services connections have had, each once: `Slot::service`
    /// indexes it. A worker has a handful (at most one per rule).
    service_ids: Vec<ServiceId>,
}

impl std::fmt::Debug for TcpTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTable")
            .field("connections", &self.slots.len())
            .field("half_open", &self.half_open)
            .field("time_wait", &self.time_wait.len())
            .finish()
    }
}

/// The handle a service gets on one connection during a callback.
struct Io<'a> {
    id: ConnId,
    conn: &'a mut Connection,
    pool: &'a mut BufferPool,
    config: &'a TcpConfig,
    app: &'a mut u64,
    app_timer_at: &'a mut u64,
    now: u64,
    /// A send fell short of the space promised: the pool refused storage.
    wants_buffer: bool,
}

impl<'a> Io<'a> {
    /// The handle on connection `key` (its `slot`) that callbacks and
    /// [`TcpTable::with_connection`] get.
    fn new(
        key: u32,
        slot: &'a mut Slot,
        pool: &'a mut BufferPool,
        config: &'a TcpConfig,
        now: u64,
    ) -> Io<'a> {
        Io {
            id: ConnId {
                key,
                serial: slot.serial,
            },
            conn: &mut slot.conn,
            pool,
            config,
            app: &mut slot.app,
            app_timer_at: &mut slot.app_timer_at,
            now,
            wants_buffer: false,
        }
    }
}

impl TcpIo for Io<'_> {
    fn recv_data(&self) -> (&[u8], &[u8]) {
        self.conn.recv_data()
    }

    fn consume(&mut self, count: usize) {
        self.conn.consume(count, self.config);
    }

    fn send(&mut self, data: &[u8]) -> usize {
        let promised = data.len().min(self.conn.send_space(self.config));
        let sent = self.conn.send(data, self.pool).unwrap_or(0);
        if sent < promised {
            self.wants_buffer = true;
        }
        sent
    }

    fn send_space(&self) -> usize {
        self.conn.send_space(self.config)
    }

    fn close(&mut self) {
        self.conn.close();
    }

    fn abort(&mut self) {
        self.conn.abort();
    }

    fn peer_closed(&self) -> bool {
        matches!(
            self.conn.state(),
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
        )
    }

    fn app_state(&mut self) -> &mut u64 {
        self.app
    }

    fn id(&self) -> ConnId {
        self.id
    }

    fn local_addr(&self) -> std::net::SocketAddrV4 {
        let t = self.conn.tuple();
        std::net::SocketAddrV4::new(t.local_ip, t.local_port)
    }

    fn peer_addr(&self) -> std::net::SocketAddrV4 {
        let t = self.conn.tuple();
        std::net::SocketAddrV4::new(t.remote_ip, t.remote_port)
    }

    fn now(&self) -> u64 {
        self.now
    }

    fn set_timer(&mut self, deadline: Option<u64>) {
        *self.app_timer_at = deadline.unwrap_or(u64::MAX);
    }
}

impl TcpTable {
    /// An empty table. `secrets` keys SYN cookies and initial sequence
    /// numbers (the same for every worker of a process); `hasher` seeds the
    /// 4-tuple index and, with a count of the tables made, the key of the
    /// challenge-ACK budgets (different for each worker).
    pub fn new(
        config: TableConfig,
        secrets: Secrets,
        hasher: ahash::RandomState,
        now: u64,
    ) -> Self {
        static TABLES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nonce = TABLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&hasher.hash_one((nonce, 0u8)).to_le_bytes());
        key[8..].copy_from_slice(&hasher.hash_one((nonce, 1u8)).to_le_bytes());
        let pool = BufferPool::new(config.tcp.buffer_size as usize, config.max_buffers);
        TcpTable {
            ack_limits: AckLimiter::new(config.challenge_ack_limit, key),
            ack_counts: AckCounts::default(),
            by_tuple: TupleIndex::new(),
            hasher,
            slots: Slab::new(),
            wheel: TimerWheel::new(now, TIMER_TICK_NS),
            pool,
            half_open: 0,
            last_cookie_ns: None,
            fired: Vec::new(),
            batching: false,
            deferred: Vec::new(),
            buffer_waiters: VecDeque::new(),
            wait_level: 0,
            waking: false,
            time_wait: Slab::new(),
            next_serial: 0,
            time_wait_index: HashTable::new(),
            time_wait_wheel: TimerWheel::new(now, TIMER_TICK_NS),
            service_ids: Vec::new(),
            secrets,
            config,
        }
    }

    /// Connections in the table (any state but CLOSED, TIME-WAIT records
    /// included).
    pub fn len(&self) -> usize {
        self.slots.len() + self.time_wait.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections in TIME-WAIT (compact records).
    pub fn time_wait_len(&self) -> usize {
        self.time_wait.len()
    }

    /// The TIME-WAIT record of `tuple`, if any (tests and diagnostics).
    pub fn time_wait_of(&self, tuple: &FourTuple) -> Option<&TimeWait> {
        let key = self.find_time_wait(tuple)?;
        Some(&self.time_wait[key as usize].record)
    }

    /// Heap bytes one TIME-WAIT record takes in its slab (the index and
    /// the wheel add theirs).
    pub const TIME_WAIT_SLOT_BYTES: usize = std::mem::size_of::<TimeWaitSlot>();

    /// Half-open connections (SYN-RECEIVED).
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    /// The state of the connection with `tuple`, if any (TIME-WAIT for a
    /// record).
    pub fn state_of(&self, tuple: &FourTuple) -> Option<State> {
        match self.key_of(tuple) {
            Some(key) => Some(self.slots[key as usize].conn.state()),
            None => self.find_time_wait(tuple).map(|_| State::TimeWait),
        }
    }

    /// The connection with `tuple`, if any (tests and diagnostics); one in
    /// TIME-WAIT is a record ([`TcpTable::time_wait_of`]) once its last
    /// output has gone.
    pub fn connection(&self, tuple: &FourTuple) -> Option<&Connection> {
        let key = self.key_of(tuple)?;
        Some(&self.slots[key as usize].conn)
    }

    /// The buffer pool (its use is a gauge).
    pub fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// The per-connection parameters.
    pub fn tcp_config(&self) -> &TcpConfig {
        &self.config.tcp
    }

    /// Whether a burst's lookups are worth doing ahead ([`TcpTable::prefetch`]):
    /// once the table holds [`PREFETCH_MIN_CONNECTIONS`]; below that it
    /// stays in the caches and the extra pass would only cost.
    #[inline]
    pub fn wants_prefetch(&self) -> bool {
        self.slots.len() >= PREFETCH_MIN_CONNECTIONS
    }

    /// Start loading what [`TcpTable::input`] will read for each of a
    /// burst's `tuples`, in two passes as `rte_hash_lookup_bulk` does: the
    /// index buckets of all of them first, then the connections their
    /// signatures name. Called before the burst is processed, the burst's
    /// cache and TLB misses overlap each other instead of each stalling
    /// its segment in turn. Changes nothing; a tuple with no connection
    /// costs its hash and a bucket line.
    pub fn prefetch(&self, tuples: &[FourTuple]) {
        const CHUNK: usize = 32;
        let mut hashes = [0u64; CHUNK];
        for chunk in tuples.chunks(CHUNK) {
            for (hash, tuple) in hashes.iter_mut().zip(chunk) {
                *hash = self.hasher.hash_one(tuple);
                crate::port::prefetch(self.by_tuple.bucket(*hash));
            }
            for &hash in &hashes[..chunk.len()] {
                self.by_tuple.candidates(hash, |key| {
                    if let Some(slot) = self.slots.get(key as usize) {
                        crate::port::prefetch(slot);
                    }
                });
            }
        }
    }

    /// The slab key of `tuple`'s connection.
    #[inline]
    fn key_of(&self, tuple: &FourTuple) -> Option<u32> {
        let slots = &self.slots;
        self.by_tuple.find(self.hasher.hash_one(tuple), |key| {
            slots
                .get(key as usize)
                .is_some_and(|slot| slot.conn.tuple() == tuple)
        })
    }

    /// A segment arrived for `tuple` (checksum checked, header parsed).
    #[allow(clippy::too_many_arguments)]
    pub fn input<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        tuple: &FourTuple,
        header: &TcpHeader,
        payload: &[u8],
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) -> Input {
        let Some(key) = self.key_of(tuple) else {
            return match self.find_time_wait(tuple) {
                Some(key) => self.time_wait_input(key, header, payload, counters, now, out),
                None => Input::NoConnection,
            };
        };
        counters.tcp_rx_segments.inc();
        let slot = &mut self.slots[key as usize];
        if slot.conn.state() == State::TimeWait && slot.conn.accepts_syn_in_time_wait(header) {
            // RFC 6191: a new incarnation may reuse the 4-tuple; the old one
            // is forgotten (it ended in order) and the SYN goes to the listener.
            services
                .tcp(self.service_ids[usize::from(slot.service)])
                .on_closed(&slot.closed(key, false));
            counters.tcp_closed.inc();
            self.remove(key, counters);
            return Input::NoConnection;
        }
        let bad_ack = slot.conn.is_bad_ack_in_handshake(header);
        let open_before = slot.conn.state() != State::Closed;
        self.feed(key, header, payload, counters, now);
        let slot = &mut self.slots[key as usize];
        if open_before && header.flags.contains(TcpFlags::RST) && slot.conn.state() == State::Closed
        {
            counters.tcp_resets_rx.inc();
        }
        if bad_ack {
            // An ACK that is not for our SYN: RST <SEQ=SEG.ACK> (RFC 9293).
            if let Some(reset) = Connection::reset_for(header, payload.len()) {
                counters.tcp_resets_tx.inc();
                counters.tcp_tx_segments.inc();
                out(Outgoing {
                    tuple,
                    peer_mac: slot.peer_mac,
                    header: &reset,
                    payload: (&[], &[]),
                    segment_size: 0,
                });
            }
        }
        self.drive(key, services, counters, now, out);
        Input::Handled
    }

    /// A segment that no connection has, for a port whose rule names
    /// `service`: the listener's part of RFC 9293 3.10.7.2 (LISTEN), with SYN
    /// cookies when the half-open backlog is full.
    #[allow(clippy::too_many_arguments)]
    pub fn listen<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        tuple: &FourTuple,
        peer_mac: EthernetAddress,
        header: &TcpHeader,
        payload: &[u8],
        service: ServiceId,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) {
        counters.tcp_rx_segments.inc();
        let flags = header.flags;
        let mut reset = |counters: &WorkerCounters| {
            counters.count_drop(DropReason::NoConnection);
            if let Some(reset) = Connection::reset_for(header, payload.len()) {
                counters.tcp_resets_tx.inc();
                counters.tcp_tx_segments.inc();
                out(Outgoing {
                    tuple,
                    peer_mac,
                    header: &reset,
                    payload: (&[], &[]),
                    segment_size: 0,
                });
            }
        };
        if flags.contains(TcpFlags::RST) {
            // First: an incoming RST is ignored.
            counters.count_drop(DropReason::NoConnection);
            return;
        }
        if flags.contains(TcpFlags::ACK) {
            // Second: an ACK. A SYN cookie's return, or bad: RST.
            if !flags.contains(TcpFlags::SYN) && self.cookies_recent(now) {
                let peer_isn = Seq(header.seq) - 1;
                let cookie = Seq(header.ack) - 1;
                if let Some(options) = self.secrets.check_cookie(tuple, peer_isn, cookie, now) {
                    if self.slots.len() >= self.config.max_connections {
                        counters.count_drop(DropReason::ConnectionLimit);
                        return;
                    }
                    counters.tcp_syn_cookies_accepted.inc();
                    let conn =
                        Connection::accept_cookie(*tuple, header, options, &self.config.tcp, now);
                    let key = self.insert(conn, service, peer_mac, false, counters);
                    // The ACK may carry data already.
                    if !payload.is_empty() || flags.contains(TcpFlags::FIN) {
                        self.feed(key, header, payload, counters, now);
                    }
                    self.drive(key, services, counters, now, out);
                    return;
                }
            }
            reset(counters);
            return;
        }
        if !flags.contains(TcpFlags::SYN) {
            // Neither SYN nor ACK nor RST: drop.
            counters.count_drop(DropReason::NoConnection);
            return;
        }
        // Third: a SYN.
        if self.slots.len() >= self.config.max_connections {
            counters.count_drop(DropReason::ConnectionLimit);
            return;
        }
        if self.half_open >= self.config.syn_backlog {
            let options = CookieOptions {
                mss: header.options.mss.unwrap_or(536),
                window_scale: header.options.window_scale,
                sack_permitted: header.options.sack_permitted,
            };
            let cookie = self
                .secrets
                .syn_cookie(tuple, Seq(header.seq), now, options);
            // The cookie encodes an MSS from a table: announce what it decodes to.
            let encoded = options.as_encoded();
            let ts_offset = self.secrets.timestamp_offset(tuple);
            let syn_ack = Connection::cookie_syn_ack(
                header,
                cookie,
                encoded,
                ts_offset,
                &self.config.tcp,
                now,
            );
            self.last_cookie_ns = Some(now);
            counters.tcp_syn_cookies_sent.inc();
            counters.tcp_tx_segments.inc();
            out(Outgoing {
                tuple,
                peer_mac,
                header: &syn_ack,
                payload: (&[], &[]),
                segment_size: 0,
            });
            return;
        }
        let iss = self.secrets.initial_sequence(tuple, now);
        let conn = Connection::accept(*tuple, header, iss, &self.config.tcp, now);
        let key = self.insert(conn, service, peer_mac, false, counters);
        self.slots[key as usize].half_open = true;
        self.half_open += 1;
        self.drive(key, services, counters, now, out);
    }

    /// Open a connection to `tuple`'s remote end (an active open), with the
    /// given service driving it. The caller picked `tuple.local_port` so that
    /// the replies come to this worker.
    #[allow(clippy::too_many_arguments)]
    pub fn connect<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        tuple: FourTuple,
        peer_mac: EthernetAddress,
        service: ServiceId,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) -> Result<ConnId, DropReason> {
        if self.state_of(&tuple).is_some() {
            return Err(DropReason::ConnectionLimit);
        }
        if self.slots.len() >= self.config.max_connections {
            return Err(DropReason::ConnectionLimit);
        }
        let iss = self.secrets.initial_sequence(&tuple, now);
        let conn = Connection::connect(tuple, iss, &self.config.tcp, now);
        let key = self.insert(conn, service, peer_mac, true, counters);
        let id = ConnId {
            key,
            serial: self.slots[key as usize].serial,
        };
        self.drive(key, services, counters, now, out);
        Ok(id)
    }

    /// Run `f` on connection `id` outside of any callback, with the handle
    /// callbacks get: how an async task reads and writes between poll
    /// rounds. `None` if the connection is gone (or closed).
    ///
    /// Nothing is sent from here: the connection is listed as in a batch,
    /// and what `f` caused (data, a FIN, a window update, a reset) leaves
    /// at the next [`TcpTable::end_batch`], which the worker calls once its
    /// tasks have run. A send that fell short for want of pool storage
    /// wakes the connection's service with `on_writable` when it comes back,
    /// as from a callback.
    pub fn with_connection<R>(
        &mut self,
        id: ConnId,
        now: u64,
        f: impl FnOnce(&mut dyn TcpIo) -> R,
    ) -> Option<R> {
        let slot = self
            .slots
            .get_mut(id.key as usize)
            .filter(|slot| slot.serial == id.serial && slot.conn.state() != State::Closed)?;
        let mut io = Io::new(id.key, slot, &mut self.pool, &self.config.tcp, now);
        let result = f(&mut io);
        let wants_buffer = io.wants_buffer;
        // What `f` did is settled at the end of the batch; its own events
        // (a reset it asked for) are not news to it.
        let _ = slot.conn.take_events();
        if !slot.deferred {
            slot.deferred = true;
            self.deferred.push(id.key);
        }
        if wants_buffer {
            self.wait_for_buffer(id.key);
        }
        Some(result)
    }

    /// Whether `id` is still a connection of this table (any state but
    /// CLOSED; a TIME-WAIT record is not).
    pub fn is_open(&self, id: ConnId) -> bool {
        self.slots
            .get(id.key as usize)
            .is_some_and(|slot| slot.serial == id.serial && slot.conn.state() != State::Closed)
    }

    /// An ICMP "fragmentation needed" (RFC 1191) for `tuple`, quoting our
    /// segment's sequence number `seq`, with next-hop MTU `mtu`. Returns
    /// whether a connection took it.
    #[allow(clippy::too_many_arguments)]
    pub fn path_mtu<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        tuple: &FourTuple,
        seq: u32,
        mtu: u16,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) -> bool {
        let Some(key) = self.key_of(tuple) else {
            return false;
        };
        let slot = &mut self.slots[key as usize];
        if !slot.conn.on_path_mtu(Seq(seq), mtu) {
            return false;
        }
        self.drive(key, services, counters, now, out);
        true
    }

    /// Offer `tuple`'s connection to the app as writable
    /// ([`crate::service::TcpService::on_writable`]) and send what that
    /// queues: how an application that paces itself (a fixed request rate)
    /// sends outside of any input. Returns false if there is no such
    /// connection of the app's (a built-in service's is not poked), or our
    /// side of it can no longer send.
    pub fn wake<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        tuple: &FourTuple,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) -> bool {
        let Some(key) = self.key_of(tuple) else {
            return false;
        };
        let slot = &mut self.slots[key as usize];
        if self.service_ids[usize::from(slot.service)] != ServiceId::APP || !slot.conn.wake() {
            return false;
        }
        self.drive(key, services, counters, now, out);
        true
    }

    /// Run the timers due at `now`.
    pub fn poll<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) {
        let mut fired = std::mem::take(&mut self.fired);
        self.time_wait_wheel.advance(now, &mut fired);
        for key in fired.drain(..) {
            // 2*MSL passed (its service heard `on_closed` when it began).
            self.remove_time_wait(key, counters);
        }
        self.wheel.advance(now, &mut fired);
        for key in fired.drain(..) {
            let Some(slot) = self.slots.get_mut(key as usize) else {
                continue;
            };
            slot.timer = None;
            slot.timer_at = u64::MAX;
            slot.conn.handle_timeout(&self.config.tcp, now);
            if slot.app_timer_at <= now {
                slot.app_timer_at = u64::MAX;
                if slot.conn.state() != State::Closed {
                    let service = services.tcp(self.service_ids[usize::from(slot.service)]);
                    let mut io = Io::new(key, slot, &mut self.pool, &self.config.tcp, now);
                    service.on_timer(&mut io);
                    if io.wants_buffer {
                        self.wait_for_buffer(key);
                    }
                }
            }
            self.drive(key, services, counters, now, out);
        }
        self.fired = fired;
        counters
            .tcp_buffer_bytes_limit
            .set(self.pool.max_bytes() as u64);
    }

    /// List `key` among the connections to wake when buffer storage comes
    /// back (once).
    fn wait_for_buffer(&mut self, key: u32) {
        self.wait_level = self.pool.in_use_bytes();
        let slot = &mut self.slots[key as usize];
        if !slot.buffer_wait {
            slot.buffer_wait = true;
            self.buffer_waiters.push_back(key);
        }
    }

    /// Storage came back to the pool: wake the connections that were
    /// refused some, oldest first, while the pool has room (each woken one
    /// may take it; one that is refused again queues at the back). Each
    /// waiter is visited at most once per call.
    fn wake_buffer_waiters<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) {
        self.waking = true;
        let mut visits = self.buffer_waiters.len();
        while visits > 0 && self.pool.has_room() {
            visits -= 1;
            let Some(key) = self.buffer_waiters.pop_front() else {
                break;
            };
            let slot = &mut self.slots[key as usize];
            slot.buffer_wait = false;
            if slot.conn.wake() {
                self.drive(key, services, counters, now, out);
            }
        }
        self.waking = false;
    }

    /// Reset every connection (graceful shutdown of the worker: peers learn
    /// at once instead of timing out).
    pub fn abort_all<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) {
        let keys: Vec<u32> = self.slots.iter().map(|(key, _)| key as u32).collect();
        for key in keys {
            self.slots[key as usize].conn.abort();
            self.drive(key, services, counters, now, out);
        }
    }

    /// Hand a segment to connection `key`: the worker's ACK limits apply and
    /// their counts are published; data its buffer pool had no room for is
    /// counted as `tcp_no_buffer`.
    fn feed(
        &mut self,
        key: u32,
        header: &TcpHeader,
        payload: &[u8],
        counters: &WorkerCounters,
        now: u64,
    ) {
        let refused = self.pool.refused();
        self.slots[key as usize].conn.handle_segment(
            header,
            payload,
            &self.config.tcp,
            &mut self.pool,
            &mut self.ack_limits,
            now,
        );
        self.publish_ack_counts(counters);
        if self.pool.refused() != refused {
            counters.count_drop(DropReason::TcpNoBuffer);
        }
    }

    /// Copy the ACK limiter's counts to the worker's counters, if they moved.
    fn publish_ack_counts(&mut self, counters: &WorkerCounters) {
        let counts = self.ack_limits.counts();
        if counts != self.ack_counts {
            self.ack_counts = counts;
            counters.tcp_challenge_acks_sent.set(counts.challenge_sent);
            counters
                .tcp_challenge_acks_limited
                .set(counts.challenge_limited);
            counters
                .tcp_out_of_window_acks_sent
                .set(counts.out_of_window_sent);
            counters
                .tcp_out_of_window_acks_limited
                .set(counts.out_of_window_limited);
        }
    }

    fn cookies_recent(&self, now: u64) -> bool {
        self.last_cookie_ns
            .is_some_and(|at| now.saturating_sub(at) <= COOKIE_WINDOW_NS)
    }

    fn insert(
        &mut self,
        mut conn: Connection,
        service: ServiceId,
        peer_mac: EthernetAddress,
        active: bool,
        counters: &WorkerCounters,
    ) -> u32 {
        let tuple = *conn.tuple();
        // Every connection, however made, runs its address pair's timestamp
        // clock (the one a cookie's SYN-ACK used too); it has sent nothing yet.
        conn.set_timestamp_offset(self.secrets.timestamp_offset(&tuple));
        let service = self.service_index(service);
        let key = self.slots.insert(Slot {
            conn,
            service,
            peer_mac,
            app: 0,
            timer: None,
            timer_at: u64::MAX,
            half_open: false,
            active,
            timed_out: false,
            deferred: false,
            buffer_wait: false,
            app_timer_at: u64::MAX,
            serial: self.next_serial,
        }) as u32;
        self.next_serial = self.next_serial.wrapping_add(1);
        self.by_tuple.insert(self.hasher.hash_one(tuple), key);
        self.set_gauges(counters);
        key
    }

    /// `service`'s index in `service_ids`, added if it is new.
    fn service_index(&mut self, service: ServiceId) -> u16 {
        let at = match self.service_ids.iter().position(|s| *s == service) {
            Some(at) => at,
            None => {
                self.service_ids.push(service);
                self.service_ids.len() - 1
            }
        };
        // Service ids are u16 indexes themselves, so there are never more.
        u16::try_from(at).expect("at most 65536 services")
    }

    fn set_gauges(&self, counters: &WorkerCounters) {
        counters.tcp_active.set(self.len() as u64);
        counters.tcp_time_wait.set(self.time_wait.len() as u64);
    }

    fn find_time_wait(&self, tuple: &FourTuple) -> Option<u32> {
        let hash = self.hasher.hash_one(tuple);
        self.time_wait_index
            .find(hash, |&key| {
                self.time_wait[key as usize].record.tuple() == tuple
            })
            .copied()
    }

    /// The connection `key` is in TIME-WAIT and its last output went: keep
    /// a record instead, or none if `max_time_wait` are kept already.
    fn enter_time_wait<S: ServiceSet + ?Sized>(
        &mut self,
        key: u32,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
    ) {
        let slot = &mut self.slots[key as usize];
        let (service, peer_mac) = (self.service_ids[usize::from(slot.service)], slot.peer_mac);
        // Closed for its service now, as a Linux socket is: what is left is
        // the engine's record.
        services.tcp(service).on_closed(&slot.closed(key, false));
        counters.tcp_closed.inc();
        let record = slot.conn.time_wait(&self.config.tcp);
        self.remove(key, counters);
        let Some(record) = record else { return };
        if self.time_wait.len() >= self.config.max_time_wait {
            // Linux's "time wait bucket table overflow": no TIME-WAIT.
            counters.tcp_time_wait_overflow.inc();
            return;
        }
        let expiry = now.saturating_add(self.config.tcp.time_wait_ns);
        let entry = self.time_wait.vacant_entry();
        let key = entry.key() as u32;
        let timer = self.time_wait_wheel.insert(expiry, key);
        let hash = self.hasher.hash_one(record.tuple());
        entry.insert(TimeWaitSlot {
            record,
            peer_mac,
            timer,
        });
        let (slab, hasher) = (&self.time_wait, &self.hasher);
        self.time_wait_index.insert_unique(hash, key, |&k| {
            hasher.hash_one(slab[k as usize].record.tuple())
        });
        self.set_gauges(counters);
    }

    fn remove_time_wait(&mut self, key: u32, counters: &WorkerCounters) {
        let slot = self.time_wait.remove(key as usize);
        self.time_wait_wheel.cancel(slot.timer);
        let hash = self.hasher.hash_one(slot.record.tuple());
        if let Ok(entry) = self.time_wait_index.find_entry(hash, |&k| k == key) {
            entry.remove();
        }
        self.set_gauges(counters);
    }

    /// A segment for a TIME-WAIT record: a new incarnation's SYN goes to the
    /// listener (RFC 6191); anything else is answered as the connection
    /// in TIME-WAIT would have.
    #[allow(clippy::too_many_arguments)]
    fn time_wait_input<F: FnMut(Outgoing<'_>)>(
        &mut self,
        key: u32,
        header: &TcpHeader,
        payload: &[u8],
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) -> Input {
        counters.tcp_rx_segments.inc();
        let slot = &mut self.time_wait[key as usize];
        if slot.record.accepts_syn(header) {
            self.remove_time_wait(key, counters);
            return Input::NoConnection;
        }
        let answer = slot.record.handle_segment(
            header,
            payload.len(),
            &mut self.ack_limits,
            &self.config.tcp,
            now,
        );
        if answer.ack {
            let ack = slot.record.ack(now);
            counters.tcp_tx_segments.inc();
            out(Outgoing {
                tuple: slot.record.tuple(),
                peer_mac: slot.peer_mac,
                header: &ack,
                payload: (&[], &[]),
                segment_size: 0,
            });
        }
        if answer.reset {
            counters.tcp_resets_rx.inc();
            self.remove_time_wait(key, counters);
        } else if answer.restart {
            self.time_wait_wheel.cancel(slot.timer);
            let expiry = now.saturating_add(self.config.tcp.time_wait_ns);
            slot.timer = self.time_wait_wheel.insert(expiry, key);
        }
        self.publish_ack_counts(counters);
        Input::Handled
    }

    fn remove(&mut self, key: u32, counters: &WorkerCounters) {
        let mut slot = self.slots.remove(key as usize);
        if let Some(timer) = slot.timer {
            self.wheel.cancel(timer);
        }
        if slot.half_open {
            self.half_open -= 1;
        }
        if slot.buffer_wait {
            self.buffer_waiters.retain(|&k| k != key);
        }
        slot.conn.release_buffers(&mut self.pool);
        let removed = self
            .by_tuple
            .remove(self.hasher.hash_one(slot.conn.tuple()), key);
        debug_assert!(removed, "an indexed connection");
        self.set_gauges(counters);
    }

    /// After any input: tell the service, send what is due, re-arm the timer,
    /// forget the connection if it closed.
    fn drive<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        key: u32,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) {
        let config = &self.config.tcp;
        let slot = &mut self.slots[key as usize];
        // Service callbacks may queue data or close, which adds no events;
        // one pass over the events suffices.
        let events = slot.conn.take_events();
        if events.contains(Events::RTT_SAMPLED) {
            if let Some(rtt) = slot.conn.last_rtt_sample_ns() {
                counters.record_rtt(rtt);
            }
        }
        if events.contains(Events::RETRANSMISSION_TIMEOUT) {
            counters.tcp_rto_expired.inc();
        }
        if events.contains(Events::TAIL_LOSS_PROBE) {
            counters.tcp_tail_loss_probes.inc();
        }
        if events.contains(Events::ESTABLISHED) {
            if slot.half_open {
                slot.half_open = false;
                self.half_open -= 1;
            }
            if slot.active {
                counters.tcp_opened_active.inc();
            } else {
                counters.tcp_opened_passive.inc();
            }
        }
        if self.batching
            && events.is_within(BATCHED_EVENTS)
            && slot.conn.state() != State::Closed
            && !slot.conn.has_out_of_order_data()
        {
            // Receive coalescing: in a batch, that there is data to read or
            // room to write waits for the end of the batch, where the service
            // hears it once for all of the batch's segments (as a reader does
            // for a GRO-merged segment). The metrics events were counted
            // above; anything else (open, FIN, close) is heard now, after what
            // waited, in order.
            slot.conn
                .defer_events(events.intersection(Events::READABLE | Events::WRITABLE));
            self.defer(key);
            return;
        }
        let mut closed = None;
        let mut wants_buffer = false;
        if !events.is_empty() {
            let service = services.tcp(self.service_ids[usize::from(slot.service)]);
            let half_open = slot.half_open;
            if events.contains(Events::RESET) && events.contains(Events::TIMED_OUT) {
                slot.timed_out = true;
            }
            let mut io = Io::new(key, slot, &mut self.pool, config, now);
            if events.contains(Events::ESTABLISHED) {
                service.on_accepted(&mut io);
            }
            if events.contains(Events::READABLE) && io.conn.recv_len() > 0 {
                service.on_readable(&mut io);
            }
            if events.contains(Events::WRITABLE) && io.conn.state() != State::Closed {
                service.on_writable(&mut io);
            }
            if events.contains(Events::PEER_CLOSED) {
                service.on_peer_closed(&mut io);
            }
            if events.contains(Events::RESET) {
                closed = Some(true);
                if events.contains(Events::TIMED_OUT) {
                    if half_open {
                        // SYN-ACK retransmissions exhausted: dropped silently.
                        counters.tcp_half_open_expired.inc();
                    } else {
                        counters.tcp_timeouts.inc();
                    }
                }
            } else if events.contains(Events::CLOSED) {
                closed = Some(false);
                counters.tcp_closed.inc();
            }
            // Callbacks may have closed or aborted: report what that caused.
            let after = io.conn.take_events();
            if after.contains(Events::RESET) {
                closed = Some(true);
            } else if after.contains(Events::CLOSED) && closed.is_none() {
                closed = Some(false);
                counters.tcp_closed.inc();
            }
            wants_buffer = io.wants_buffer;
        }
        if wants_buffer {
            self.wait_for_buffer(key);
        }
        let slot = &mut self.slots[key as usize];
        if self.batching && slot.conn.state() != State::Closed && !slot.conn.has_out_of_order_data()
        {
            // What the connection sends waits for the end of the batch: the
            // other segments of the batch for it are then answered by one
            // ACK (as Linux answers a GRO-merged segment), and its replies
            // leave together. Not a connection that closed (it goes now) nor
            // one holding data beyond a hole (its duplicate ACKs tell the
            // peer which segments are missing: one per segment, at once).
            self.defer(key);
            return;
        }
        self.settle(key, services, closed, counters, now, out);
    }

    /// List a connection for the end of the batch, once.
    #[inline]
    fn defer(&mut self, key: u32) {
        let slot = &mut self.slots[key as usize];
        if !slot.deferred {
            slot.deferred = true;
            self.deferred.push(key);
        }
    }

    /// Start a batch of input (an RX burst): until [`TcpTable::end_batch`],
    /// what connections send in answer to it is held back and sent once per
    /// connection at the end. Outside a batch every input is answered at once.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// End the batch: tell the services what waited (data to read, room to
    /// write: once per connection for the whole batch), send what each
    /// connection that had input owes, and re-arm its timers.
    pub fn end_batch<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) {
        self.batching = false;
        let mut deferred = std::mem::take(&mut self.deferred);
        for key in deferred.drain(..) {
            // A connection removed in the batch left its slot (maybe to a new
            // one, which is listed again if it was deferred too).
            match self.slots.get_mut(key as usize) {
                Some(slot) if slot.deferred => slot.deferred = false,
                _ => continue,
            }
            // The service hears what waited, then the connection sends.
            self.drive(key, services, counters, now, out);
        }
        self.deferred = deferred;
    }

    /// Send what is due, then forget the connection if it closed, or give
    /// back its idle buffers and re-arm its timer.
    fn settle<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        key: u32,
        services: &mut S,
        closed: Option<bool>,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) {
        self.transmit(key, counters, now, out);
        let slot = &mut self.slots[key as usize];
        if slot.conn.state() == State::Closed {
            // Closed without a close event: only an abort does that.
            let closed = slot.closed(key, closed.unwrap_or(true));
            services
                .tcp(self.service_ids[usize::from(slot.service)])
                .on_closed(&closed);
            self.remove(key, counters);
            self.buffers_returned(services, counters, now, out);
            return;
        }
        if slot.conn.state() == State::TimeWait {
            self.enter_time_wait(key, services, counters, now);
            return;
        }
        slot.conn.release_idle_buffers(&mut self.pool);
        let deadline = slot
            .conn
            .poll_timeout()
            .unwrap_or(u64::MAX)
            .min(slot.app_timer_at);
        if deadline != slot.timer_at {
            if let Some(timer) = slot.timer.take() {
                self.wheel.cancel(timer);
            }
            if deadline != u64::MAX {
                slot.timer = Some(self.wheel.insert(deadline, key));
            }
            slot.timer_at = deadline;
        }
        self.buffers_returned(services, counters, now, out);
    }

    /// After buffers may have gone back to the pool: update the gauge, and
    /// wake the connections waiting for storage if there is room now.
    #[inline]
    fn buffers_returned<S: ServiceSet + ?Sized, F: FnMut(Outgoing<'_>)>(
        &mut self,
        services: &mut S,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) {
        counters
            .tcp_buffer_bytes
            .set(self.pool.in_use_bytes() as u64);
        if !self.buffer_waiters.is_empty()
            && !self.waking
            && self.pool.in_use_bytes() < self.wait_level
            && self.pool.has_room()
        {
            self.wake_buffer_waiters(services, counters, now, out);
        }
    }

    fn transmit<F: FnMut(Outgoing<'_>)>(
        &mut self,
        key: u32,
        counters: &WorkerCounters,
        now: u64,
        out: &mut F,
    ) {
        let config = &self.config.tcp;
        let slot = &mut self.slots[key as usize];
        while let Some(segment) = slot.conn.poll_transmit(config, now) {
            let Segment {
                header,
                retransmission,
                ..
            } = segment;
            // Segments on the wire: an offloaded one is cut into this many.
            let frames = match segment.segment_size {
                0 => 1,
                size => segment.payload_len.div_ceil(u32::from(size)).max(1),
            };
            counters.tcp_tx_segments.add(u64::from(frames));
            if retransmission {
                // Each frame, as the retransmission ratio compares them
                // with the frames sent (go-back-N after a timeout may resend
                // several MSS in one segment).
                counters.tcp_retransmits.add(u64::from(frames));
            }
            if header.flags.contains(TcpFlags::RST) {
                counters.tcp_resets_tx.inc();
            }
            out(Outgoing {
                tuple: slot.conn.tuple(),
                peer_mac: slot.peer_mac,
                header: &header,
                payload: slot.conn.segment_payload(&segment),
                segment_size: segment.segment_size,
            });
        }
    }
}

/// The events that may wait for the end of a batch (receive coalescing, see
/// [`TcpTable::drive`]): data to read, room to write, and the metrics-only
/// ones, which are counted at once.
const BATCHED_EVENTS: Events = Events::READABLE
    .union(Events::WRITABLE)
    .union(Events::RTT_SAMPLED)
    .union(Events::RETRANSMISSION_TIMEOUT)
    .union(Events::TAIL_LOSS_PROBE);

/// Table size from which [`TcpTable::wants_prefetch`]: about 5 MB of
/// slots, past the share of a last-level cache a worker can count on.
pub const PREFETCH_MIN_CONNECTIONS: usize = 8192;

/// A random state for the 4-tuple index, drawn once per process.
pub fn random_hasher() -> ahash::RandomState {
    ahash::RandomState::new()
}

/// The hash of a 4-tuple under `hasher` (tests: the index is keyed).
pub fn tuple_hash(hasher: &ahash::RandomState, tuple: &FourTuple) -> u64 {
    hasher.hash_one(tuple)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
