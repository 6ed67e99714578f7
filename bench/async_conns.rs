//! What an idle async connection costs one worker, measured in one run on
//! an in-memory worker `Stack` (no I/O: crafted frames in, frames collected
//! in memory):
//!
//! - **memory per idle async connection**, beyond the TCP connection: heap
//!   bytes (a counting global allocator) held after N connections, each of
//!   which sent one `GET /` and got its answer and is now idle (keep-alive),
//!   minus the same for the built-in callback `http` service, over N.
//!   Contenders: the axum router of `examples/axum_app.rs` under hyper's
//!   HTTP/1.1 server, as `axum_app` serves it (hyper's defaults, and again
//!   with `max_buf_size` at hyper's minimum, 8 KiB); and a minimal
//!   accept-and-read task without hyper (reads into a 64-byte array, answers
//!   each read with a fixed response), to separate shardnet's own cost (the
//!   task, the stream, the reactor's slot) from hyper's;
//! - **the cost of one poll round** with 100 and with N idle async
//!   connections on the worker: a round with one request (an RX burst that
//!   wakes one random connection, then the next round, whose `run_tasks`
//!   runs its task and sends the response) and an empty round (nothing
//!   received, no task ready); the median over many rounds, the two sizes
//!   interleaved, and the ratio N / 100 (target: within 10%).
//!
//! `cargo run --release --example async_conns [N] [ROUNDS]` (N defaults to
//! 100,000, ROUNDS to 20,000). Prints a table and a JSON line; exits with a
//! panic if any connection is not answered.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::poll_fn;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use shardnet::config::{Action, DefaultAction, ServiceId};
use shardnet::port::heap::HeapBuf;
use shardnet::port::PacketBuf;
use shardnet::rt::{spawn_local, ShardnetTimer, TcpListener};
use shardnet::service::{Registry, WorkerInfo};
use shardnet::stack::{Interface, Stack, TcpSetup};
use shardnet::tcp::table::TableConfig;
use shardnet::testing::{
    parse_tcp_frame, stack_with_registry, tcp_frame, tcp_header, tcp_rule, CollectEgress, Endpoints,
};
use shardnet::wire::{EthernetAddress, TcpFlags};

#[path = "../examples/shared/axum_router.rs"]
mod axum_router;

struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);
/// The part of `HEAP` in allocations of `BIG` bytes or more (buffers).
static HEAP_BIG: AtomicIsize = AtomicIsize::new(0);
const BIG: usize = 4096;

fn count(size: usize, sign: isize) {
    HEAP.fetch_add(sign * size as isize, Relaxed);
    if size >= BIG {
        HEAP_BIG.fetch_add(sign * size as isize, Relaxed);
    }
}

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 80;
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
/// The minimal task's answer.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\nhello from shardnet";
/// Connections set up per batch (their handshakes, then their requests).
const BATCH: u32 = 256;
/// The clock advances this much per round (the whole run stays far below
/// hyper's 10 s `header_read_timeout` and TCP's timers).
const ROUND_NS: u64 = 1_000;

/// The services compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// The built-in callback `discard` service: the TCP connection alone
    /// (no state of its own; it reads the request and answers nothing),
    /// the baseline.
    Discard,
    /// The built-in callback `http` service (its state is one word in the
    /// connection; its idle timeout is a timer in the table's wheel).
    Callback,
    /// A task per connection reading into 64 bytes, no hyper.
    Minimal,
    /// The axum router under hyper, as `examples/axum_app.rs`.
    Hyper,
    /// The same with `max_buf_size(8192)`, hyper's minimum.
    HyperMinBuf,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Discard => "callback discard (baseline)",
            Kind::Callback => "callback http",
            Kind::Minimal => "minimal accept-and-read task",
            Kind::Hyper => "axum on hyper (defaults)",
            Kind::HyperMinBuf => "axum on hyper, max_buf_size 8 KiB",
        }
    }
}

async fn minimal_main() {
    let listener = TcpListener::bind(PORT).expect("the port is free");
    loop {
        let (stream, _peer) = listener.accept().await.expect("a connection");
        drop(spawn_local(async move {
            let mut buf = [0u8; 64];
            loop {
                match poll_fn(|cx| stream.poll_read_into(cx, &mut buf)).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let mut written = 0;
                while written < RESPONSE.len() {
                    match poll_fn(|cx| stream.poll_write_from(cx, &RESPONSE[written..])).await {
                        Ok(n) => written += n,
                        Err(_) => return,
                    }
                }
            }
        }));
    }
}

async fn hyper_main(max_buf_size: Option<usize>) {
    let listener = TcpListener::bind(PORT).expect("the port is free");
    let app = axum_router::router();
    loop {
        let (stream, _peer) = listener.accept().await.expect("a connection");
        let service = TowerToHyperService::new(app.clone());
        drop(spawn_local(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(ShardnetTimer)
                .header_read_timeout(Duration::from_secs(10));
            if let Some(max) = max_buf_size {
                builder.max_buf_size(max);
            }
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }));
    }
}

/// The peer of connection `index`: a /16 of addresses, 16384 ports each.
fn peer(index: u32) -> (Ipv4Addr, u16) {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) | (index >> 14));
    (ip, 1024 + (index & 0x3fff) as u16)
}

fn index_of(ip: Ipv4Addr, port: u16) -> usize {
    (((u32::from(ip) & 0xffff) << 14) | u32::from(port - 1024)) as usize
}

fn ends(ip: Ipv4Addr) -> Endpoints {
    Endpoints {
        src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_mac: OUR_MAC,
        src_ip: ip,
        dst_ip: OUR_IP,
    }
}

/// The peer's view of one connection.
#[derive(Clone, Copy, Default)]
struct Peer {
    /// The peer's next sequence number.
    seq: u32,
    /// Ours, as far as the peer has received.
    ack: u32,
    /// Responses received (segments with payload).
    answered: u32,
}

/// One worker's stack serving `kind` on port 80, and the peers of its
/// connections.
struct Bench {
    stack: Stack,
    egress: CollectEgress,
    now: u64,
    peers: Vec<Peer>,
    /// Whether the service answers the request (all but `discard`).
    answers: bool,
}

impl Bench {
    fn new(kind: Kind, max: usize) -> Bench {
        let mut registry = Registry::new();
        let id = match kind {
            Kind::Discard => Ok(ServiceId::DISCARD),
            Kind::Callback => Ok(ServiceId::HTTP),
            Kind::Minimal => registry.add_async("app", |_: &WorkerInfo<'_>| minimal_main()),
            Kind::Hyper => registry.add_async("app", |_: &WorkerInfo<'_>| hyper_main(None)),
            Kind::HyperMinBuf => {
                registry.add_async("app", |_: &WorkerInfo<'_>| hyper_main(Some(8192)))
            }
        }
        .expect("a new name");
        let iface = Interface {
            mac: OUR_MAC,
            ip: OUR_IP,
            prefix_len: 16,
        };
        let rules = [tcp_rule("web", PORT, Action::Service(id))];
        let tcp = TcpSetup {
            table: TableConfig {
                max_connections: max,
                max_time_wait: max,
                syn_backlog: max,
                ..TableConfig::default()
            },
            secret_key: [9; 32],
            ..TcpSetup::default()
        };
        let (stack, _) = stack_with_registry(iface, &rules, DefaultAction::Drop, tcp, &registry, 1);
        let mut bench = Bench {
            stack,
            egress: CollectEgress::default(),
            now: 1_000_000,
            peers: Vec::new(),
            answers: kind != Kind::Discard,
        };
        // The first rounds create the executor and run the main task to
        // its first accept.
        bench.round(&[]);
        bench.round(&[]);
        bench.absorb();
        bench
    }

    /// One poll round of a worker (src/worker.rs): timers, the tasks woken
    /// by the last round, then an RX burst of `frames`.
    fn round(&mut self, frames: &[Vec<u8>]) {
        self.now += ROUND_NS;
        let (now, egress) = (self.now, &mut self.egress);
        self.stack.poll(now, egress);
        self.stack.run_tasks(now, egress);
        self.stack.begin_burst();
        for frame in frames {
            self.stack.process(HeapBuf::from_slice(frame), now, egress);
        }
        self.stack.end_burst(now, egress);
    }

    /// Take what the stack sent into the peers' view.
    fn absorb(&mut self) {
        for frame in self.egress.frames.drain(..) {
            let (h, payload) = parse_tcp_frame(frame.data()).expect("a TCP frame");
            // The IPv4 destination (an option-less header after Ethernet).
            let d = &frame.data()[30..34];
            let ip = Ipv4Addr::new(d[0], d[1], d[2], d[3]);
            let peer = &mut self.peers[index_of(ip, h.dst_port)];
            assert!(
                !h.flags.contains(TcpFlags::RST),
                "connection {} was reset",
                index_of(ip, h.dst_port)
            );
            let syn_fin = u32::from(h.flags.contains(TcpFlags::SYN))
                + u32::from(h.flags.contains(TcpFlags::FIN));
            let end = h.seq.wrapping_add(payload.len() as u32 + syn_fin);
            if (end.wrapping_sub(peer.ack) as i32) > 0 || h.flags.contains(TcpFlags::SYN) {
                peer.ack = end;
            }
            if !payload.is_empty() {
                assert!(payload.starts_with(b"HTTP/1.1 200"), "{payload:?}");
                peer.answered += 1;
            }
        }
        self.egress.kernel.clear();
    }

    fn segment(&self, index: u32, flags: TcpFlags, payload: &[u8]) -> Vec<u8> {
        let (ip, port) = peer(index);
        let p = self.peers[index as usize];
        tcp_frame(
            ends(ip),
            &tcp_header(port, PORT, flags, p.seq, p.ack),
            payload,
        )
    }

    /// Open connections `from..to`, one request each, answered and acked.
    fn open(&mut self, from: u32, to: u32) {
        self.peers.resize(to as usize, Peer::default());
        for start in (from..to).step_by(BATCH as usize) {
            let end = (start + BATCH).min(to);
            let syns: Vec<Vec<u8>> = (start..end)
                .map(|i| {
                    self.peers[i as usize].seq = i.wrapping_mul(7919);
                    let mut f = self.segment(i, TcpFlags::SYN, b"");
                    self.peers[i as usize].seq = self.peers[i as usize].seq.wrapping_add(1);
                    f.shrink_to_fit();
                    f
                })
                .collect();
            self.round(&syns);
            self.absorb();
            let mut frames = Vec::new();
            for i in start..end {
                frames.push(self.segment(i, TcpFlags::ACK, b""));
                frames.push(self.segment(i, TcpFlags::ACK | TcpFlags::PSH, REQUEST));
                self.peers[i as usize].seq = self.peers[i as usize]
                    .seq
                    .wrapping_add(REQUEST.len() as u32);
            }
            self.round(&frames);
            self.absorb();
            for _ in 0..50 {
                let want = u32::from(self.answers);
                if (start..end).all(|i| self.peers[i as usize].answered == want) {
                    break;
                }
                self.round(&[]);
                self.absorb();
            }
            for i in start..end {
                let want = u32::from(self.answers);
                assert_eq!(
                    self.peers[i as usize].answered, want,
                    "connection {i}'s answers"
                );
            }
            let acks: Vec<Vec<u8>> = (start..end)
                .map(|i| self.segment(i, TcpFlags::ACK, b""))
                .collect();
            self.round(&acks);
            self.round(&[]);
            self.absorb();
        }
    }
}

/// Heap bytes held by `n` idle connections of `kind`: (total, the part of
/// it in allocations of `BIG` bytes or more, the stack holding them).
fn idle_heap(kind: Kind, n: u32) -> (i64, i64, Bench) {
    let mut bench = Bench::new(kind, n as usize + 16);
    let before = HEAP.load(Relaxed);
    let big_before = HEAP_BIG.load(Relaxed);
    let peers_before = bench.peers.capacity() * std::mem::size_of::<Peer>();
    bench.open(0, n);
    bench.absorb();
    let peers_after = bench.peers.capacity() * std::mem::size_of::<Peer>();
    // The harness's own view of the peers is not the worker's.
    let held = HEAP.load(Relaxed) - before - (peers_after - peers_before) as isize;
    let big = HEAP_BIG.load(Relaxed) - big_before;
    if !matches!(kind, Kind::Discard | Kind::Callback) {
        let tasks = bench.stack.executor().expect("created").tasks();
        assert_eq!(
            tasks,
            n as usize + 1,
            "the main task and one per connection"
        );
    }
    (held as i64, big as i64, bench)
}

struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as u32
    }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Time one request on connection `i` of `bench`: its RX burst, then the
/// round that runs its task (which writes the response); then, outside the
/// timing, the peer takes the response and acks it.
fn request_ns(bench: &mut Bench, i: u32) -> u64 {
    let request = [bench.segment(i, TcpFlags::ACK | TcpFlags::PSH, REQUEST)];
    let answered = bench.peers[i as usize].answered;
    let start = Instant::now();
    bench.round(&request);
    bench.round(&[]);
    let ns = start.elapsed().as_nanos() as u64;
    let peer = &mut bench.peers[i as usize];
    peer.seq = peer.seq.wrapping_add(REQUEST.len() as u32);
    bench.absorb();
    assert_eq!(bench.peers[i as usize].answered, answered + 1, "answered");
    let ack = [bench.segment(i, TcpFlags::ACK, b"")];
    bench.round(&ack);
    bench.absorb();
    ns
}

/// Median ns per bench of: a request on a random connection, an empty
/// round, a request on the same connection every time (its memory stays in
/// the caches: the cost of the executor and the table alone). The benches
/// take turns, round by round.
fn poll_costs(benches: &mut [Bench], rounds: usize) -> Vec<[u64; 3]> {
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    let mut samples: Vec<[Vec<u64>; 3]> = (0..benches.len())
        .map(|_| std::array::from_fn(|_| Vec::with_capacity(rounds)))
        .collect();
    for _ in 0..rounds {
        for (bench, samples) in benches.iter_mut().zip(samples.iter_mut()) {
            let i = rng.below(bench.peers.len());
            samples[0].push(request_ns(bench, i));
            let start = Instant::now();
            bench.round(&[]);
            samples[1].push(start.elapsed().as_nanos() as u64);
            assert!(
                bench.egress.frames.is_empty(),
                "an empty round sends nothing"
            );
            samples[2].push(request_ns(bench, 0));
        }
    }
    samples
        .iter_mut()
        .map(|s| [median(&mut s[0]), median(&mut s[1]), median(&mut s[2])])
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().map_or(100_000, |a| a.parse().expect("N"));
    let rounds: usize = args.next().map_or(20_000, |a| a.parse().expect("ROUNDS"));
    assert!((1000..=1 << 24).contains(&n), "N between 1000 and 16M");
    let small = 100u32;
    let t0 = Instant::now();

    println!(
        "== memory: {n} idle keep-alive connections, one GET / answered on each (discard: read)"
    );
    println!(
        "{:<36} {:>12} {:>10} {:>14} {:>16}",
        "service", "heap total", "per conn", "beyond discard", "of it >=4KiB"
    );
    let mut memory = Vec::new();
    let (mut base, mut base_big) = (0, 0);
    let mut hyper_large = None;
    // `Hyper` last: its stack is kept for the poll rounds.
    for kind in [
        Kind::Discard,
        Kind::Callback,
        Kind::Minimal,
        Kind::HyperMinBuf,
        Kind::Hyper,
    ] {
        let (total, big, bench) = idle_heap(kind, n);
        if kind == Kind::Discard {
            (base, base_big) = (total, big);
        }
        let beyond = (total - base) / i64::from(n);
        println!(
            "{:<36} {:>12} {:>10} {:>14} {:>16}",
            kind.name(),
            total,
            total / i64::from(n),
            beyond,
            (big - base_big) / i64::from(n)
        );
        memory.push((kind, total, beyond, (big - base_big) / i64::from(n)));
        if kind == Kind::Hyper {
            hyper_large = Some(bench);
        }
    }
    let hyper_beyond = memory
        .iter()
        .find(|m| m.0 == Kind::Hyper)
        .expect("measured")
        .2;
    println!(
        "target: <= 2048 bytes per idle async connection beyond the TCP connection: {}",
        if hyper_beyond <= 2048 {
            "met"
        } else {
            "MISSED by axum on hyper"
        }
    );

    println!("== one poll round, {small} vs {n} idle connections, median of {rounds} rounds each");
    let mut results = Vec::new();
    for kind in [Kind::Minimal, Kind::Hyper] {
        let large = match (kind, hyper_large.take()) {
            (Kind::Hyper, Some(bench)) => bench,
            _ => idle_heap(kind, n).2,
        };
        let (_, _, small_bench) = idle_heap(kind, small);
        let mut benches = [small_bench, large];
        let costs = poll_costs(&mut benches, rounds);
        results.push((kind, costs[0], costs[1]));
    }
    println!(
        "{:<30} {:>21} {:>21} {:>21}",
        "", "request, random conn", "empty round", "request, same conn"
    );
    println!(
        "{:<30} {:>7} {:>7} {:>5} {:>7} {:>7} {:>5} {:>7} {:>7} {:>5}",
        "service", "@100", "@N", "N/100", "@100", "@N", "N/100", "@100", "@N", "N/100"
    );
    for (kind, s, l) in &results {
        print!("{:<30}", kind.name());
        for m in 0..3 {
            print!(
                " {:>5}ns {:>5}ns {:>5.2}",
                s[m],
                l[m],
                l[m] as f64 / s[m] as f64
            );
        }
        println!();
    }
    println!(
        "target: a round at N within 10% of one at 100 (ratio <= 1.10); a random connection's \
         memory is out of the caches at N, the same connection's is not"
    );
    let json = serde_json::json!({
        "connections": n,
        "rounds": rounds,
        "memory": memory.iter().map(|(k, total, beyond, big)| serde_json::json!({
            "service": k.name(), "heap_bytes": total, "per_connection_beyond_discard": beyond,
            "per_connection_beyond_discard_in_allocations_of_4k_or_more": big,
        })).collect::<Vec<_>>(),
        "poll_round_ns": results.iter().map(|(k, s, l)| serde_json::json!({
            "service": k.name(),
            "small": small,
            "request_random_connection": {"small": s[0], "large": l[0], "ratio": l[0] as f64 / s[0] as f64},
            "empty_round": {"small": s[1], "large": l[1], "ratio": l[1] as f64 / s[1] as f64},
            "request_same_connection": {"small": s[2], "large": l[2], "ratio": l[2] as f64 / s[2] as f64},
        })).collect::<Vec<_>>(),
        "seconds": t0.elapsed().as_secs_f64(),
    });
    println!("{json}");
}
