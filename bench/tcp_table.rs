//! TCP table costs of one worker, measured on this machine in one run:
//!
//! - connection setup: SYN in, SYN-ACK out, ACK in, through the whole stack
//!   (frame parsing, checksums, the table, the service's accept), per second;
//! - memory per idle established connection: heap bytes held by the table
//!   after N handshakes, divided by N (a counting allocator);
//! - memory per connection in TIME-WAIT: the same after N connections that
//!   the server closed first (`Connection: close`) and the peer then closed,
//!   divided by N;
//! - lookup cost at 1K and at 1M connections: the 4-tuple index and the slot,
//!   in random order, reported as a ratio;
//! - a segment through the stack at 1K and at 1M, one at a time and in RX
//!   bursts of 32 as a worker takes them (looked up ahead once the table is
//!   large), each reported as a ratio (target for bursts: within 1.5x).
//!
//! `cargo run --release --no-default-features --example tcp_table [N]`
//! (N defaults to 1,000,000). Prints a table and a JSON line.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Instant;

use shardnet::config::{Action, DefaultAction, ServiceId};
use shardnet::port::heap::HeapBuf;
use shardnet::port::PacketBuf;
use shardnet::stack::{Interface, Stack, TcpSetup};
use shardnet::tcp::table::TableConfig;
use shardnet::tcp::FourTuple;
use shardnet::testing::{
    parse_tcp_frame, tcp_frame, tcp_header, tcp_rule, CollectEgress, Endpoints,
};
use shardnet::wire::{EthernetAddress, TcpFlags, TcpHeader, TcpOptions};

struct Counting;

static HEAP: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn peer(index: u32) -> (Ipv4Addr, u16) {
    // Spread over a /16 of peers and their ports.
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) | (index >> 14));
    (ip, 1024 + (index & 0x3fff) as u16)
}

fn ends(ip: Ipv4Addr) -> Endpoints {
    Endpoints {
        src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
        dst_mac: OUR_MAC,
        src_ip: ip,
        dst_ip: OUR_IP,
    }
}

fn header(port: u16, flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
    tcp_header(port, 80, flags, seq, ack)
}

fn stack(max: usize) -> Stack {
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 16,
    };
    let rules = [tcp_rule("web", 80, Action::Service(ServiceId::HTTP))];
    Stack::new(
        iface,
        std::sync::Arc::new(shardnet::rules::RuleTable::compile(
            &rules,
            DefaultAction::Drop,
        )),
        shardnet::neighbour::NeighbourMailboxes::new(1).cache_for(0),
        std::sync::Arc::new(shardnet::counters::WorkerCounters::default()),
        false,
        TcpSetup {
            table: TableConfig {
                max_connections: max,
                max_time_wait: max,
                syn_backlog: max,
                ..TableConfig::default()
            },
            secret_key: [9; 32],
            ..TcpSetup::default()
        },
    )
}

/// Establish `n` connections; returns (seconds, frames prebuilt outside the
/// timed part).
fn establish(stack: &mut Stack, n: u32) -> f64 {
    let mut egress = CollectEgress::default();
    let syns: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let (ip, port) = peer(i);
            tcp_frame(ends(ip), &header(port, TcpFlags::SYN, i, 0), b"")
        })
        .collect();
    let start = Instant::now();
    let mut acks = Vec::with_capacity(n as usize);
    for (i, syn) in syns.iter().enumerate() {
        stack.process(HeapBuf::from_slice(syn), 1, &mut egress);
        let reply = egress.frames.pop().expect("SYN-ACK");
        let (syn_ack, _) = parse_tcp_frame(reply.data()).expect("valid");
        let (ip, port) = peer(i as u32);
        acks.push(tcp_frame(
            ends(ip),
            &header(
                port,
                TcpFlags::ACK,
                (i as u32).wrapping_add(1),
                syn_ack.seq.wrapping_add(1),
            ),
            b"",
        ));
    }
    for ack in &acks {
        stack.process(HeapBuf::from_slice(ack), 2, &mut egress);
    }
    start.elapsed().as_secs_f64()
}

/// Take `n` connections to TIME-WAIT on our side: handshake, a request that
/// asks the server to close, the peer's ACK of the response and FIN, then
/// its own FIN. Nothing is kept outside the stack between connections.
fn time_wait(stack: &mut Stack, n: u32) {
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut egress = CollectEgress::default();
    for i in 0..n {
        let (ip, port) = peer(i);
        let syn = tcp_frame(ends(ip), &header(port, TcpFlags::SYN, i, 0), b"");
        stack.process(HeapBuf::from_slice(&syn), 1, &mut egress);
        let reply = egress.frames.pop().expect("SYN-ACK");
        let (syn_ack, _) = parse_tcp_frame(reply.data()).expect("valid");
        let mut ours = syn_ack.seq.wrapping_add(1);
        let flags = TcpFlags::ACK | TcpFlags::PSH;
        let request = tcp_frame(
            ends(ip),
            &header(port, flags, i.wrapping_add(1), ours),
            REQUEST,
        );
        stack.process(HeapBuf::from_slice(&request), 2, &mut egress);
        for frame in egress.frames.drain(..) {
            let (h, payload) = parse_tcp_frame(frame.data()).expect("valid");
            let end = h.seq.wrapping_add(payload.len() as u32);
            ours = end.wrapping_add(u32::from(h.flags.contains(TcpFlags::FIN)));
        }
        let seq = i.wrapping_add(1).wrapping_add(REQUEST.len() as u32);
        let fin = header(port, TcpFlags::FIN | TcpFlags::ACK, seq, ours);
        let fin = tcp_frame(ends(ip), &fin, b"");
        stack.process(HeapBuf::from_slice(&fin), 3, &mut egress);
        egress.frames.clear();
    }
}

/// Nanoseconds per lookup of a random established 4-tuple.
fn lookup_ns(stack: &Stack, n: u32, lookups: u32) -> f64 {
    let mut x = 0x2545_f491u64;
    let tuples: Vec<FourTuple> = (0..lookups)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (ip, port) = peer((x % u64::from(n)) as u32);
            FourTuple {
                local_ip: OUR_IP,
                local_port: 80,
                remote_ip: ip,
                remote_port: port,
            }
        })
        .collect();
    let start = Instant::now();
    let mut found = 0usize;
    for tuple in &tuples {
        found += usize::from(stack.tcp().state_of(tuple).is_some());
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(lookups);
    assert_eq!(found, lookups as usize, "every tuple is established");
    ns
}

/// Nanoseconds per pure-ACK segment through the whole stack, each for a
/// random established connection (buffers prebuilt outside the timing).
fn segment_ns(stack: &mut Stack, n: u32, segments: u32) -> f64 {
    let frames = old_acks(n, segments);
    let mut egress = CollectEgress::default();
    let start = Instant::now();
    for frame in frames {
        stack.process(frame, 3, &mut egress);
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(segments);
    std::hint::black_box(&egress);
    ns
}

/// The same segments in RX bursts of 32 as a worker takes them:
/// `Stack::prefetch_burst` (which looks ahead only once the table is large),
/// then each segment, then the burst's end.
fn burst_segment_ns(stack: &mut Stack, n: u32, segments: u32) -> f64 {
    let mut frames = old_acks(n, segments).into_iter();
    let bursts: Vec<Vec<HeapBuf>> = std::iter::from_fn(|| {
        let burst: Vec<HeapBuf> = frames.by_ref().take(32).collect();
        (!burst.is_empty()).then_some(burst)
    })
    .collect();
    let mut egress = CollectEgress::default();
    let start = Instant::now();
    for burst in bursts {
        stack.prefetch_burst(&burst);
        stack.begin_burst();
        for frame in burst {
            stack.process(frame, 3, &mut egress);
        }
        stack.end_burst(3, &mut egress);
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(segments);
    std::hint::black_box(&egress);
    ns
}

/// `segments` old pure ACKs, each for a random one of `n` established
/// connections.
fn old_acks(n: u32, segments: u32) -> Vec<HeapBuf> {
    let mut x = 0x9e37_79b9u64;
    (0..segments)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % u64::from(n)) as u32;
            let (ip, port) = peer(i);
            let mut h = header(port, TcpFlags::ACK, i.wrapping_add(1), 0);
            // An old ACK: acceptable, changes nothing, answers nothing.
            h.ack = 0;
            h.options = TcpOptions::default();
            HeapBuf::from_slice(&tcp_frame(ends(ip), &h, b""))
        })
        .collect()
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N is a number"))
        .unwrap_or(1_000_000);
    let small = 1_000u32;

    let mut big_stack = stack(n as usize);
    let before = HEAP.load(Relaxed);
    let setup_s = establish(&mut big_stack, n);
    let held = HEAP.load(Relaxed) - before;
    assert_eq!(big_stack.tcp().len(), n as usize);
    let per_conn = held as f64 / f64::from(n);

    let mut tw_stack = stack(n as usize);
    let before = HEAP.load(Relaxed);
    time_wait(&mut tw_stack, n);
    let tw_held = HEAP.load(Relaxed) - before;
    assert_eq!(tw_stack.tcp().len(), n as usize);
    let (ip, port) = peer(n - 1);
    let last = FourTuple {
        local_ip: OUR_IP,
        local_port: 80,
        remote_ip: ip,
        remote_port: port,
    };
    assert_eq!(
        tw_stack.tcp().state_of(&last),
        Some(shardnet::tcp::connection::State::TimeWait)
    );
    let per_time_wait = tw_held as f64 / f64::from(n);
    drop(tw_stack);

    let mut small_stack = stack(small as usize);
    establish(&mut small_stack, small);

    let lookups = 2_000_000;
    // Interleave the two sizes so that machine noise hits both alike.
    let mut small_ns = Vec::new();
    let mut big_ns = Vec::new();
    for _ in 0..3 {
        small_ns.push(lookup_ns(&small_stack, small, lookups));
        big_ns.push(lookup_ns(&big_stack, n, lookups));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (small_ns, big_ns) = (median(&mut small_ns), median(&mut big_ns));
    let mut small_seg = Vec::new();
    let mut big_seg = Vec::new();
    for _ in 0..3 {
        small_seg.push(segment_ns(&mut small_stack, small, 300_000));
        big_seg.push(segment_ns(&mut big_stack, n, 300_000));
    }
    let (small_seg, big_seg) = (median(&mut small_seg), median(&mut big_seg));
    let mut small_burst = Vec::new();
    let mut big_burst = Vec::new();
    for _ in 0..3 {
        small_burst.push(burst_segment_ns(&mut small_stack, small, 300_000));
        big_burst.push(burst_segment_ns(&mut big_stack, n, 300_000));
    }
    let (small_burst, big_burst) = (median(&mut small_burst), median(&mut big_burst));
    let conn_struct = std::mem::size_of::<shardnet::tcp::connection::Connection>();

    println!("TCP table, one worker, {n} connections");
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| connection setup (SYN, SYN-ACK, ACK through the stack) | {:.0} connections/s ({:.0} ns each) |",
        f64::from(n) / setup_s,
        setup_s * 1e9 / f64::from(n)
    );
    println!("| heap per idle established connection | {per_conn:.0} bytes (Connection struct {conn_struct}) |");
    println!("| heap per connection in TIME-WAIT | {per_time_wait:.0} bytes |");
    println!("| lookup at {small} connections | {small_ns:.1} ns |");
    println!("| lookup at {n} connections | {big_ns:.1} ns |");
    println!("| lookup ratio | {:.2} |", big_ns / small_ns);
    println!("| segment through the stack at {small} connections | {small_seg:.1} ns |");
    println!("| segment through the stack at {n} connections | {big_seg:.1} ns |");
    println!(
        "| segment ratio (target <= 2.0) | {:.2} |",
        big_seg / small_seg
    );
    println!("| segment in bursts of 32 at {small} connections | {small_burst:.1} ns |");
    println!(
        "| segment in bursts of 32 at {n} connections (looked up ahead) | {big_burst:.1} ns |"
    );
    println!(
        "| burst segment ratio (target <= 1.5) | {:.2} |",
        big_burst / small_burst
    );
    println!(
        "{}",
        serde_json::json!({
            "connections": n,
            "setup_per_s": f64::from(n) / setup_s,
            "bytes_per_idle_connection": per_conn,
            "connection_struct_bytes": conn_struct,
            "bytes_per_time_wait": per_time_wait,
            "lookup_ns_small": small_ns,
            "lookup_ns_large": big_ns,
            "lookup_ratio": big_ns / small_ns,
            "segment_ns_small": small_seg,
            "segment_ns_large": big_seg,
            "segment_ratio": big_seg / small_seg,
            "burst_segment_ns_small": small_burst,
            "burst_segment_ns_large": big_burst,
            "burst_segment_ratio": big_burst / small_burst,
        })
    );
}
