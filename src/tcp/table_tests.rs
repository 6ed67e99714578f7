//! Tests of the table's service-facing parts: the service timer, buffer
//! exhaustion (counted drops, the gauge, waking the connections that were
//! refused storage) and a slowloris against the `http` service, with a
//! scripted peer feeding segments straight to the table.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use super::*;
use crate::app::{App, AppIo};
use crate::service::{Services, TcpService};
use crate::wire::TcpOptions;

const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const MS: u64 = 1_000_000;

/// A table with its services and counters, and what it sent.
struct Harness {
    table: TcpTable,
    services: Services,
    counters: WorkerCounters,
    sent: Vec<(FourTuple, TcpHeader, Vec<u8>)>,
}

impl Harness {
    fn new(buffer_size: u32, max_buffers: usize) -> Harness {
        let config = TableConfig {
            tcp: TcpConfig {
                buffer_size,
                ..TcpConfig::default()
            },
            max_buffers,
            ..TableConfig::default()
        };
        Harness {
            table: TcpTable::new(
                config,
                Secrets::from_key([7; 32]),
                ahash::RandomState::new(),
                0,
            ),
            services: Services::builtin(crate::service::http::DEFAULT_BODY),
            counters: WorkerCounters::default(),
            sent: Vec::new(),
        }
    }

    fn tuple(port: u16, peer_port: u16) -> FourTuple {
        FourTuple {
            local_ip: OUR_IP,
            local_port: port,
            remote_ip: PEER_IP,
            remote_port: peer_port,
        }
    }

    /// A segment from the peer; returns what the table sent in answer.
    #[allow(clippy::too_many_arguments)]
    fn segment(
        &mut self,
        tuple: &FourTuple,
        flags: TcpFlags,
        seq: u32,
        ack: u32,
        payload: &[u8],
        service: ServiceId,
        now: u64,
    ) -> Vec<(TcpHeader, Vec<u8>)> {
        let header = TcpHeader {
            src_port: tuple.remote_port,
            dst_port: tuple.local_port,
            seq,
            ack,
            flags,
            window: 65535,
            urgent: 0,
            options: TcpOptions {
                mss: flags.contains(TcpFlags::SYN).then_some(1460),
                ..TcpOptions::default()
            },
        };
        self.run(|table, services, counters, mut out| {
            let input = table.input(tuple, &header, payload, services, counters, now, &mut out);
            if input == Input::NoConnection {
                table.listen(
                    tuple,
                    EthernetAddress([2, 0, 0, 0, 0, 1]),
                    &header,
                    payload,
                    service,
                    services,
                    counters,
                    now,
                    &mut out,
                );
            }
        })
        .into_iter()
        .map(|(_, h, p)| (h, p))
        .collect()
    }

    /// Run `f` on the table with an output that records what it sends;
    /// returns what was sent, with its tuple.
    fn run(
        &mut self,
        f: impl FnOnce(&mut TcpTable, &mut Services, &WorkerCounters, &mut dyn FnMut(Outgoing<'_>)),
    ) -> Vec<(FourTuple, TcpHeader, Vec<u8>)> {
        let before = self.sent.len();
        let sent = &mut self.sent;
        let mut out = |o: Outgoing<'_>| {
            let mut payload = o.payload.0.to_vec();
            payload.extend_from_slice(o.payload.1);
            sent.push((*o.tuple, *o.header, payload));
        };
        f(
            &mut self.table,
            &mut self.services,
            &self.counters,
            &mut out,
        );
        self.sent[before..].to_vec()
    }

    /// Handshake from `peer_port` to `port`; the peer's next sequence
    /// number is 1001, ours is returned.
    fn establish(&mut self, port: u16, peer_port: u16, service: ServiceId, now: u64) -> u32 {
        let tuple = Harness::tuple(port, peer_port);
        let out = self.segment(&tuple, TcpFlags::SYN, 1000, 0, b"", service, now);
        assert_eq!(out.len(), 1, "a SYN-ACK");
        let ours = out[0].0.seq.wrapping_add(1);
        self.segment(&tuple, TcpFlags::ACK, 1001, ours, b"", service, now);
        assert_eq!(
            self.table.state_of(&tuple),
            Some(State::Established),
            "{port} from {peer_port}"
        );
        ours
    }

    /// Run the timers due at `now`; returns what was sent, with its tuple.
    fn poll(&mut self, now: u64) -> Vec<(FourTuple, TcpHeader, Vec<u8>)> {
        self.run(|table, services, counters, mut out| table.poll(services, counters, now, &mut out))
    }
}

/// What the test app saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// `on_timer` calls: (local port, now).
    timers: Vec<(u16, u64)>,
    /// `on_writable` calls, by local port.
    writable: Vec<u16>,
}

/// A test app: on accept, arms its timer `timer_after` ahead (if set) and
/// sends `message` bytes (as many as the buffers take, the rest when
/// writable; progress kept in the state word); on its timer, records it
/// and, the first time, re-arms it `timer_after` ahead. Reads nothing.
struct TestApp {
    seen: Arc<Mutex<Seen>>,
    timer_after: Option<u64>,
    message: usize,
}

impl TestApp {
    fn pump(&mut self, io: &mut dyn TcpIo) {
        let done = *io.app_state() as usize;
        if done < self.message {
            let chunk = vec![b'x'; self.message - done];
            let n = io.send(&chunk);
            *io.app_state() += n as u64;
        }
    }
}

impl TcpService for TestApp {
    fn on_accepted(&mut self, io: &mut dyn TcpIo) {
        if let Some(after) = self.timer_after {
            io.set_timer(Some(io.now() + after));
        }
        self.pump(io);
    }

    fn on_readable(&mut self, _io: &mut dyn TcpIo) {}

    fn on_writable(&mut self, io: &mut dyn TcpIo) {
        self.seen.lock().unwrap().writable.push(io.local_port());
        self.pump(io);
    }

    fn on_timer(&mut self, io: &mut dyn TcpIo) {
        let mut seen = self.seen.lock().unwrap();
        seen.timers.push((io.local_port(), io.now()));
        if seen.timers.len() == 1 {
            if let Some(after) = self.timer_after {
                io.set_timer(Some(io.now() + after));
            }
        }
    }
}

impl App for TestApp {
    fn poll(&mut self, _now_ns: u64, _io: &mut dyn AppIo) {}
}

fn with_app(h: &mut Harness, timer_after: Option<u64>, message: usize) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    h.services.set_app(Box::new(TestApp {
        seen: seen.clone(),
        timer_after,
        message,
    }));
    seen
}

#[test]
fn the_service_timer_fires_at_its_deadline_once_and_can_be_rearmed() {
    let mut h = Harness::new(64 * 1024, 64);
    let seen = with_app(&mut h, Some(30 * MS), 0);
    h.establish(8000, 40000, ServiceId::APP, 5 * MS);
    // Nothing before the deadline (the connection has no TCP timer of its
    // own running: the wheel entry is the service's).
    for now in (6..35).map(|ms| ms * MS) {
        h.poll(now);
    }
    assert!(seen.lock().unwrap().timers.is_empty(), "fired early");
    h.poll(35 * MS);
    h.poll(36 * MS);
    assert_eq!(seen.lock().unwrap().timers, vec![(8000, 35 * MS)]);
    // Re-armed in the callback: once more, 30 ms later, and then no more.
    for now in (37..200).map(|ms| ms * MS) {
        h.poll(now);
    }
    assert_eq!(
        seen.lock().unwrap().timers,
        vec![(8000, 35 * MS), (8000, 65 * MS)]
    );
    assert_eq!(h.table.len(), 1, "a timer is not a close");
}

#[test]
fn a_sender_refused_a_buffer_is_woken_when_one_comes_back() {
    // 8 KiB of buffers: two connections of 4 KiB each fill the pool.
    let mut h = Harness::new(4096, 2);
    let seen = with_app(&mut h, None, 4096);
    let ours1 = h.establish(8001, 40001, ServiceId::APP, 0);
    h.establish(8002, 40002, ServiceId::APP, 0);
    // Each sent its 4096 bytes and holds them until acknowledged.
    let data = |port: u16, sent: &[(FourTuple, TcpHeader, Vec<u8>)]| -> usize {
        sent.iter()
            .filter(|(t, _, p)| t.local_port == port && !p.is_empty())
            .map(|(_, _, p)| p.len())
            .sum()
    };
    assert_eq!(data(8001, &h.sent), 4096);
    assert_eq!(data(8002, &h.sent), 4096);
    assert_eq!(h.table.pool().in_use_bytes(), 8192);
    // The third is refused any storage: it sends nothing, and waits.
    h.establish(8003, 40003, ServiceId::APP, 0);
    assert_eq!(data(8003, &h.sent), 0);
    // The first one's data is acknowledged: its buffer goes back, and the
    // third is woken at once (no segment of its own arrived).
    let before = h.sent.len();
    let tuple1 = Harness::tuple(8001, 40001);
    h.segment(
        &tuple1,
        TcpFlags::ACK,
        1001,
        ours1.wrapping_add(4096),
        b"",
        ServiceId::APP,
        MS,
    );
    assert_eq!(data(8003, &h.sent[before..]), 4096, "woken and sent");
    assert!(seen.lock().unwrap().writable.contains(&8003));
    assert_eq!(h.table.pool().in_use_bytes(), 8192);
}

#[test]
fn data_without_buffer_room_is_dropped_and_counted_and_the_gauge_shows_the_use() {
    let mut h = Harness::new(4096, 2);
    with_app(&mut h, None, 0);
    for (port, peer) in [(8001, 40001), (8002, 40002), (8003, 40003)] {
        let ours = h.establish(port, peer, ServiceId::APP, 0);
        // The app reads nothing: each byte received stays buffered.
        let out = h.segment(
            &Harness::tuple(port, peer),
            TcpFlags::ACK | TcpFlags::PSH,
            1001,
            ours,
            b"one byte is enough to hold a buffer",
            ServiceId::APP,
            MS,
        );
        if port == 8003 {
            // Dropped unacknowledged: no ACK covers it.
            assert!(out.iter().all(|(hd, _)| hd.ack == 1001), "{out:?}");
        }
    }
    assert_eq!(h.counters.drops_of(DropReason::TcpNoBuffer), 1);
    assert_eq!(h.counters.tcp_buffer_bytes.get(), 8192);
    h.poll(2 * MS);
    assert_eq!(h.counters.tcp_buffer_bytes_limit.get(), 8192);
}

#[test]
fn slowloris_holds_small_buffers_and_is_reset_at_the_header_timeout() {
    // The case: 16 buffers of 256 KiB, 40 slow requests.
    let mut h = Harness::new(256 * 1024, 16);
    let mut http = crate::service::Http::new(crate::service::http::DEFAULT_BODY);
    http.set_timeouts(2_000 * MS, 75_000 * MS);
    h.services.set_tcp(ServiceId::HTTP, Box::new(http));
    let slow = b"GET / HTTP/1.1\r\nX-slow: ";
    for i in 0..40 {
        let ours = h.establish(80, 41000 + i, ServiceId::HTTP, 0);
        let out = h.segment(
            &Harness::tuple(80, 41000 + i),
            TcpFlags::ACK | TcpFlags::PSH,
            1001,
            ours,
            slow,
            ServiceId::HTTP,
            MS,
        );
        assert!(out
            .iter()
            .all(|(hd, p)| p.is_empty() && !hd.flags.contains(TcpFlags::RST)));
    }
    assert_eq!(h.counters.drops_of(DropReason::TcpNoBuffer), 0);
    assert_eq!(
        h.counters.tcp_buffer_bytes.get(),
        40 * 4096,
        "a small buffer each"
    );
    // A real client still gets its answer at once.
    let ours = h.establish(80, 50000, ServiceId::HTTP, MS);
    let out = h.segment(
        &Harness::tuple(80, 50000),
        TcpFlags::ACK | TcpFlags::PSH,
        1001,
        ours,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ServiceId::HTTP,
        2 * MS,
    );
    assert!(out
        .iter()
        .any(|(_, p)| p.starts_with(b"HTTP/1.1 200 OK\r\n")));
    // The header timeout (2 s from the accept at 0): every slow one is
    // reset, counted, and its buffer is back.
    let sent = h.poll(1_999 * MS);
    assert!(
        sent.iter()
            .all(|(_, hd, _)| !hd.flags.contains(TcpFlags::RST)),
        "reset early: {sent:?}"
    );
    assert_eq!(
        h.services
            .tcp_as::<crate::service::Http>(ServiceId::HTTP)
            .unwrap()
            .header_timeouts,
        0
    );
    let sent = h.poll(2_001 * MS);
    let resets = sent
        .iter()
        .filter(|(_, hd, _)| hd.flags.contains(TcpFlags::RST))
        .count();
    assert_eq!(resets, 40);
    assert_eq!(
        h.services
            .tcp_as::<crate::service::Http>(ServiceId::HTTP)
            .unwrap()
            .header_timeouts,
        40
    );
    assert_eq!(h.table.len(), 1, "the kept-alive client stays");
    assert_eq!(
        h.counters.tcp_buffer_bytes.get(),
        4096,
        "only the client's response, not yet acknowledged"
    );
}

/// A `Connection: close` exchange as wrk and curl-like clients make it
/// (issue 20, item 4: the client's work per connection): the server's side
/// is the fewest segments TCP allows. The request draws one segment, the
/// whole response with our FIN on it (no pure ACK of the request before
/// it, no separate FIN after it); the client's FIN draws one ACK; TIME-WAIT
/// lands on the server, which closed first. `ack_first`: the client
/// acknowledges the response on its own before its FIN (a client slower to
/// close than wrk), which must draw nothing.
fn close_exchange(ack_first: bool) {
    let mut h = Harness::new(256 * 1024, 64);
    let tuple = Harness::tuple(80, 40000);
    let syn_ack = h.segment(&tuple, TcpFlags::SYN, 1000, 0, b"", ServiceId::HTTP, 0);
    assert_eq!(syn_ack.len(), 1);
    assert_eq!(syn_ack[0].0.flags, TcpFlags::SYN | TcpFlags::ACK);
    let ours = syn_ack[0].0.seq.wrapping_add(1);
    let out = h.segment(&tuple, TcpFlags::ACK, 1001, ours, b"", ServiceId::HTTP, MS);
    assert!(out.is_empty(), "the handshake's ACK draws nothing: {out:?}");
    let request = b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nConnection: close\r\n\r\n";
    let out = h.segment(
        &tuple,
        TcpFlags::ACK | TcpFlags::PSH,
        1001,
        ours,
        request,
        ServiceId::HTTP,
        2 * MS,
    );
    assert_eq!(out.len(), 1, "one segment for the whole answer: {out:?}");
    let (resp, body) = &out[0];
    assert_eq!(
        resp.flags,
        TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN,
        "the FIN rides on the response"
    );
    let after_request = 1001 + request.len() as u32;
    assert_eq!(resp.ack, after_request, "the request acknowledged with it");
    assert!(body.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(body.windows(19).any(|w| w == b"Connection: close\r\n"));
    let our_fin = ours.wrapping_add(body.len() as u32);
    let their_fin_ack = our_fin.wrapping_add(1);
    // The delayed-ACK and retransmission timers have nothing to send while
    // the client takes its time (well under the RTO).
    assert!(
        h.poll(50 * MS).is_empty(),
        "nothing more before the client's FIN"
    );
    if ack_first {
        let out = h.segment(
            &tuple,
            TcpFlags::ACK,
            after_request,
            their_fin_ack,
            b"",
            ServiceId::HTTP,
            60 * MS,
        );
        assert!(out.is_empty(), "a pure ACK draws nothing: {out:?}");
        assert_eq!(h.table.state_of(&tuple), Some(State::FinWait2));
    }
    let out = h.segment(
        &tuple,
        TcpFlags::ACK | TcpFlags::FIN,
        after_request,
        their_fin_ack,
        b"",
        ServiceId::HTTP,
        70 * MS,
    );
    assert_eq!(out.len(), 1, "one ACK for the client's FIN: {out:?}");
    assert_eq!(out[0].0.flags, TcpFlags::ACK);
    assert_eq!(out[0].0.seq, their_fin_ack);
    assert_eq!(out[0].0.ack, after_request + 1);
    assert!(out[0].1.is_empty());
    assert_eq!(
        h.table.state_of(&tuple),
        Some(State::TimeWait),
        "TIME-WAIT on the server, which closed first"
    );
    assert!(h.poll(500 * MS).is_empty(), "and nothing after it");
}

#[test]
fn connection_close_is_one_segment_with_the_fin_and_one_ack_for_the_clients_fin() {
    close_exchange(false);
}

#[test]
fn connection_close_with_the_response_acknowledged_before_the_clients_fin() {
    close_exchange(true);
}

/// What a [`Reader`] heard, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Heard {
    /// `on_readable` with this many bytes to read (all consumed).
    Readable(usize),
    PeerClosed,
}

/// A test app that reads and consumes everything, logging each call.
struct Reader(Arc<Mutex<Vec<Heard>>>);

impl TcpService for Reader {
    fn on_readable(&mut self, io: &mut dyn TcpIo) {
        let (a, b) = io.recv_data();
        let n = a.len() + b.len();
        io.consume(n);
        self.0.lock().unwrap().push(Heard::Readable(n));
    }

    fn on_peer_closed(&mut self, _io: &mut dyn TcpIo) {
        self.0.lock().unwrap().push(Heard::PeerClosed);
    }
}

impl App for Reader {
    fn poll(&mut self, _now_ns: u64, _io: &mut dyn AppIo) {}
}

impl Harness {
    fn end_batch(&mut self, now: u64) -> Vec<(TcpHeader, Vec<u8>)> {
        self.run(|table, services, counters, mut out| {
            table.end_batch(services, counters, now, &mut out)
        })
        .into_iter()
        .map(|(_, h, p)| (h, p))
        .collect()
    }
}

#[test]
fn in_a_batch_the_service_hears_of_data_once_at_its_end_and_a_fin_after_the_data() {
    let mut h = Harness::new(64 * 1024, 64);
    let heard = Arc::new(Mutex::new(Vec::new()));
    h.services.set_app(Box::new(Reader(heard.clone())));
    let ours = h.establish(8000, 40000, ServiceId::APP, 0);
    let tuple = Harness::tuple(8000, 40000);
    let mut seq = 1001u32;
    let mut data = |h: &mut Harness, flags: TcpFlags, len: usize| {
        let out = h.segment(&tuple, flags, seq, ours, &vec![7; len], ServiceId::APP, MS);
        seq += len as u32;
        out
    };

    // Three full segments in a batch: one call at the end for all of
    // them, then one ACK.
    h.table.begin_batch();
    for _ in 0..3 {
        assert!(data(&mut h, TcpFlags::ACK, 1460).is_empty());
    }
    assert!(heard.lock().unwrap().is_empty(), "nothing heard mid-batch");
    let acks = h.end_batch(MS);
    assert_eq!(*heard.lock().unwrap(), vec![Heard::Readable(3 * 1460)]);
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].0.ack, 1001 + 3 * 1460);

    // Two segments, then the FIN: the FIN is heard at once, after the
    // data that waited, which is read first.
    heard.lock().unwrap().clear();
    h.table.begin_batch();
    data(&mut h, TcpFlags::ACK, 100);
    data(&mut h, TcpFlags::ACK, 100);
    data(&mut h, TcpFlags::ACK | TcpFlags::FIN, 0);
    assert_eq!(
        *heard.lock().unwrap(),
        vec![Heard::Readable(200), Heard::PeerClosed]
    );
    h.end_batch(MS);
    assert_eq!(heard.lock().unwrap().len(), 2, "nothing heard twice");

    // Outside a batch each segment is heard at once.
    let mut h = Harness::new(64 * 1024, 64);
    let heard = Arc::new(Mutex::new(Vec::new()));
    h.services.set_app(Box::new(Reader(heard.clone())));
    let ours = h.establish(8000, 40000, ServiceId::APP, 0);
    for i in 0..3u32 {
        h.segment(
            &tuple,
            TcpFlags::ACK,
            1001 + 100 * i,
            ours,
            &[7; 100],
            ServiceId::APP,
            MS,
        );
    }
    assert_eq!(*heard.lock().unwrap(), vec![Heard::Readable(100); 3]);
}
