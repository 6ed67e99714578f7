//! A real worker loop (thread, poll loop, TX drain, stop) over the in-memory
//! link, with loss, duplication, reordering and corruption injected in both
//! directions. Whatever the link does, every echo that arrives must be an
//! intact copy of a request, and every frame the worker received must be
//! accounted for: answered, or dropped under a reason.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shardnet::config::{Action, DefaultAction, IdleMode, ServiceId};
use shardnet::counters::{DropReason, WorkerCounters};
use shardnet::kernel::{self, KernelLink, Relay, RelayCounters};
use shardnet::port::heap::HeapBuf;
use shardnet::port::memlink::{LinkConfig, MemLink, MemQueue};
use shardnet::port::{Burst, PacketBuf, Queue};
use shardnet::rss::RssModel;
use shardnet::rules::{RuleTable, SharedRules};
use shardnet::stack::Interface;
use shardnet::steer::{self, SteerLinks, MIN_STEER_QUEUE_SIZE};
use shardnet::testing::{lone_stack, udp_frame, udp_rule, Endpoints};
use shardnet::wire::{EthernetAddress, EthernetFrame, Ipv4Packet, UdpPacket};
use shardnet::worker::{self, Clock, WorkerReport, WorkerSetup};

const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

struct Outcome {
    sent: usize,
    intact_echoes: usize,
    counters: Arc<WorkerCounters>,
    delivered_to_worker: u64,
}

/// A worker thread on `worker_end`: UDP echo on port 7, `default` for the
/// rest, `kernel` as its exception path. Its counters, stop flag and thread.
fn echo_worker(
    worker_end: MemQueue,
    default: DefaultAction,
    kernel: Option<KernelLink<HeapBuf>>,
) -> (
    Arc<WorkerCounters>,
    Arc<AtomicBool>,
    JoinHandle<WorkerReport>,
) {
    echo_worker_with(0, worker_end, default, kernel, None)
}

/// [`echo_worker`] as worker `id`, with `steer` as its steering rings.
fn echo_worker_with<Q: Queue<Buf = HeapBuf> + Send + 'static>(
    id: usize,
    worker_end: Q,
    default: DefaultAction,
    kernel: Option<KernelLink<HeapBuf>>,
    steer: Option<SteerLinks<HeapBuf>>,
) -> (
    Arc<WorkerCounters>,
    Arc<AtomicBool>,
    JoinHandle<WorkerReport>,
) {
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 24,
    };
    let echo = udp_rule("echo", 7, Action::Service(ServiceId::ECHO));
    let rules = Arc::new(SharedRules::new(Arc::new(RuleTable::compile(
        std::slice::from_ref(&echo),
        default,
    ))));
    let stop = Arc::new(AtomicBool::new(false));
    // The sender is dropped: no control message ever comes.
    let (_, control_rx) = crossbeam_channel::bounded(1);
    let (counters_tx, counters_rx) = std::sync::mpsc::channel();
    let worker_stop = stop.clone();
    // The stack is built on the worker's thread, as the runtime does: its
    // service instances need not be `Send`.
    let worker = std::thread::spawn(move || {
        let (stack, counters) = lone_stack(iface, &[echo], default, false);
        counters_tx.send(counters.clone()).expect("the test waits");
        let setup = WorkerSetup {
            id,
            idle: IdleMode::Adaptive,
            stop: worker_stop,
            control: control_rx,
            rules,
            counters,
            clock: Clock::start(),
            capture: Default::default(),
        };
        worker::run(
            worker_end,
            stack,
            setup,
            worker::WorkerLinks {
                kernel,
                steer,
                smp: None,
            },
        )
    });
    let counters = counters_rx.recv().expect("the worker built its stack");
    (counters, stop, worker)
}

fn run(config: LinkConfig, requests: usize) -> Outcome {
    let (worker_end, mut peer_end) = MemLink::pair(config);
    let (counters, stop, worker) = echo_worker(worker_end, DefaultAction::Drop, None);

    let ends = Endpoints {
        src_mac: PEER_MAC,
        dst_mac: OUR_MAC,
        src_ip: PEER_IP,
        dst_ip: OUR_IP,
    };
    let mut payloads = HashMap::new();
    let mut burst = Burst::new();
    for i in 0..requests {
        let src_port = 20_000 + (i % 512) as u16;
        let payload: Vec<u8> = format!("request {i} ")
            .bytes()
            .cycle()
            .take(20 + i % 900)
            .collect();
        let mut buf = peer_end.alloc().unwrap();
        let frame = udp_frame(ends, src_port, 7, &payload);
        assert!(buf.set_len(frame.len()));
        buf.data_mut().copy_from_slice(&frame);
        burst.push(buf);
        payloads.insert(payload, src_port);
        if burst.is_full() || i + 1 == requests {
            while !burst.is_empty() {
                peer_end.tx_burst(&mut burst);
            }
        }
    }

    // Collect echoes until none has come for a while (bounded).
    let mut intact = 0;
    let start = Instant::now();
    let mut last_rx = Instant::now();
    let mut rx = Burst::new();
    while start.elapsed() < Duration::from_secs(20)
        && last_rx.elapsed() < Duration::from_millis(500)
    {
        if peer_end.rx_burst(&mut rx) == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        last_rx = Instant::now();
        for buf in rx.drain(..) {
            // A corrupted reply is the link's doing: check it like a receiver.
            let Ok(eth) = EthernetFrame::new_checked(buf.data()) else {
                continue;
            };
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                continue;
            };
            if !ip.verify_checksum() || ip.src_addr() != OUR_IP || ip.dst_addr() != PEER_IP {
                continue;
            }
            let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
                continue;
            };
            if !udp.verify_checksum(OUR_IP, PEER_IP) {
                continue;
            }
            // A reply that passes its checksums must be an exact echo.
            let port = payloads.get(udp.payload());
            assert_eq!(
                port,
                Some(&udp.dst_port()),
                "an echo that matches no request"
            );
            assert_eq!(udp.src_port(), 7);
            intact += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker thread");
    let delivered_to_worker = peer_end.counters().delivered;
    Outcome {
        sent: requests,
        intact_echoes: intact,
        counters,
        delivered_to_worker,
    }
}

/// Every frame the worker received was answered or dropped under a reason.
fn assert_accounted(outcome: &Outcome) {
    let c = &outcome.counters;
    assert_eq!(c.rx_packets.get(), outcome.delivered_to_worker);
    assert_eq!(
        c.udp_tx.get() + c.total_drops() + c.to_kernel.get(),
        c.rx_packets.get(),
        "answered + dropped + kernel-bound = received"
    );
    assert_eq!(c.tx_packets.get(), c.udp_tx.get(), "every answer was sent");
}

#[test]
fn perfect_link_echoes_everything() {
    let outcome = run(LinkConfig::default(), 3000);
    assert_eq!(outcome.intact_echoes, outcome.sent);
    assert_eq!(outcome.counters.total_drops(), 0);
    assert_accounted(&outcome);
}

#[test]
fn faulty_link_never_yields_a_wrong_echo() {
    let config = LinkConfig {
        loss: 0.05,
        duplicate: 0.05,
        reorder: 0.05,
        corrupt: 0.05,
        seed: 0x5eed_0002,
        ..LinkConfig::default()
    };
    let outcome = run(config, 3000);
    // Roughly 5% lost and 5% corrupted each way: most come back, not all.
    assert!(
        outcome.intact_echoes > outcome.sent * 3 / 4,
        "{}",
        outcome.intact_echoes
    );
    assert!(outcome.intact_echoes < outcome.sent + outcome.sent / 10);
    // Corruption the checksums catch is counted, not echoed.
    assert!(outcome.counters.total_drops() > 0);
    assert_accounted(&outcome);
}

/// Receive at `end` until `expected` frames came (at most 10 s), then 100 ms
/// more to catch any extra one.
fn receive_all(end: &mut MemQueue, expected: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rx = Burst::new();
    let start = Instant::now();
    let mut done_at = None;
    loop {
        if out.len() >= expected && done_at.is_none() {
            done_at = Some(Instant::now());
        }
        if done_at.is_some_and(|t| t.elapsed() > Duration::from_millis(100))
            || start.elapsed() > Duration::from_secs(10)
        {
            return out;
        }
        if end.rx_burst(&mut rx) == 0 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        out.extend(rx.drain(..).map(|b| b.data().to_vec()));
    }
}

fn send_all(end: &mut MemQueue, frames: &[Vec<u8>]) {
    for chunk in frames.chunks(16) {
        let mut burst = Burst::new();
        for f in chunk {
            let mut buf = end.alloc().unwrap();
            assert!(buf.set_len(f.len()));
            buf.data_mut().copy_from_slice(f);
            burst.push(buf);
        }
        while !burst.is_empty() {
            end.tx_burst(&mut burst);
        }
    }
}

/// The exception path through a real worker loop: frames no rule claims go to
/// the kernel unchanged; while the kernel does not read, the worker's ring
/// fills and the rest is dropped and counted, and the stack's own service
/// keeps answering; the kernel's frames go out unchanged.
#[test]
fn kernel_path_is_bounded_and_accounted() {
    const RING: usize = 64;
    let (worker_end, mut peer_end) = MemLink::pair(LinkConfig::default());
    let (kernel_device, mut kernel_side) = MemQueue::loopback_pair();
    let (mut links, ends) = kernel::rings(1, RING);
    let relay_counters = Arc::new(RelayCounters::default());
    let mut relay = Relay::new(kernel_device, ends, relay_counters.clone());
    let (counters, stop, worker) = echo_worker(worker_end, DefaultAction::Kernel, links.pop());

    let ends = Endpoints {
        src_mac: PEER_MAC,
        dst_mac: OUR_MAC,
        src_ip: PEER_IP,
        dst_ip: OUR_IP,
    };
    // 300 datagrams for the kernel (port 5353, no rule), 100 echo requests.
    let for_kernel: Vec<Vec<u8>> = (0..300)
        .map(|i| udp_frame(ends, 30_000 + i, 5353, format!("kernel {i}").as_bytes()))
        .collect();
    let echo_requests: Vec<Vec<u8>> = (0..100)
        .map(|i| udp_frame(ends, 40_000 + i, 7, format!("echo {i}").as_bytes()))
        .collect();
    let mut mixed = Vec::new();
    for (i, f) in for_kernel.iter().enumerate() {
        mixed.push(f.clone());
        if i % 3 == 0 {
            mixed.push(echo_requests[i / 3].clone());
        }
    }
    send_all(&mut peer_end, &mixed);
    let echoes = receive_all(&mut peer_end, 100);
    assert_eq!(
        echoes.len(),
        100,
        "the service answers while the kernel is stuck"
    );

    // Nobody read the ring: it holds RING frames, the rest were counted.
    assert_eq!(counters.to_kernel.get(), RING as u64);
    assert_eq!(
        counters.drops_of(DropReason::KernelQueueFull),
        300 - RING as u64
    );
    // The relay hands the queued ones over, unchanged and in order.
    while relay.poll() > 0 {}
    let delivered = receive_all(&mut kernel_side, RING);
    assert_eq!(delivered, for_kernel[..RING].to_vec());
    assert_eq!(relay_counters.to_kernel.get(), RING as u64);

    // The kernel's own frames leave through the worker, unchanged.
    let kernel_ends = Endpoints {
        src_mac: OUR_MAC,
        dst_mac: PEER_MAC,
        src_ip: OUR_IP,
        dst_ip: PEER_IP,
    };
    let from_kernel: Vec<Vec<u8>> = (0..50)
        .map(|i| udp_frame(kernel_ends, 50_000 + i, 53, b"lookup"))
        .collect();
    send_all(&mut kernel_side, &from_kernel);
    while relay.poll() > 0 {}
    let out = receive_all(&mut peer_end, 50);
    assert_eq!(out, from_kernel);
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker thread");
    assert_eq!(counters.from_kernel.get(), 50);
    assert_eq!(relay_counters.from_kernel.get(), 50);
    assert_eq!(relay_counters.from_kernel_queue_full.get(), 0);
}

/// Software steering with backpressure, through two real worker loops, each
/// on its own link (as AF_PACKET fanout gives each worker its share, with
/// no regard for who owns the flow). Worker 1, the owner of about half the
/// flows, is not running yet (the longest stall there is) while requests
/// flood both links. Worker 0 hands worker 1's packets over until the ring
/// between them cannot take a burst, then leaves its link alone: the link
/// fills and refuses the rest (the port's RX ring drop, counted by the
/// link), and nothing is dropped between the workers. Once worker 1 runs,
/// the rings drain both ways (each worker empties the rings into it every
/// round, whatever the state of its own), and every request the links took
/// is answered.
#[test]
fn a_stalled_owner_backs_up_into_the_port_not_the_steering_ring() {
    const LINK_CAPACITY: usize = 512;
    const PER_LINK: usize = 2000;
    let link = LinkConfig {
        capacity: LINK_CAPACITY,
        ..LinkConfig::default()
    };
    let (w0_end, mut peer0) = MemLink::pair(link.clone());
    let (w1_end, mut peer1) = MemLink::pair(link);
    let model = Arc::new(RssModel::software(2));
    let mut rings = steer::links(2, MIN_STEER_QUEUE_SIZE, model.clone()).into_iter();
    let (ring0, ring1) = (rings.next(), rings.next());

    let ends = Endpoints {
        src_mac: PEER_MAC,
        dst_mac: OUR_MAC,
        src_ip: PEER_IP,
        dst_ip: OUR_IP,
    };
    // Distinct flows (a source port each), both owners on both links.
    let requests = |first_port: u16| -> Vec<Vec<u8>> {
        (0..PER_LINK as u16)
            .map(|i| udp_frame(ends, first_port + i, 7, format!("flow {i}").as_bytes()))
            .collect()
    };
    let (to_w0, to_w1) = (requests(10_000), requests(20_000));
    let owned_by = |frames: &[Vec<u8>], w: usize| {
        frames
            .iter()
            .filter(|f| model.worker_of_frame(f) == Some(w))
            .count()
    };
    assert!(owned_by(&to_w0, 1) > PER_LINK / 3 && owned_by(&to_w1, 0) > PER_LINK / 3);

    let (c0, stop0, worker0) = echo_worker_with(0, w0_end, DefaultAction::Drop, None, ring0);
    // Each frame is offered once; what a full link refuses is its drop.
    let offer = |end: &mut MemQueue, frames: &[Vec<u8>]| {
        for chunk in frames.chunks(32) {
            let mut burst = Burst::new();
            for f in chunk {
                let mut buf = end.alloc().unwrap();
                assert!(buf.set_len(f.len()));
                buf.data_mut().copy_from_slice(f);
                burst.push(buf);
            }
            end.tx_burst(&mut burst);
        }
    };
    offer(&mut peer0, &to_w0);
    offer(&mut peer1, &to_w1);
    // Worker 0 fills the ring towards the idle worker 1, then waits (where
    // it used to go on pulling, dropping worker 1's packets).
    let start = Instant::now();
    while c0.steer_backpressure_rounds.get() == 0 && c0.drops_of(DropReason::SteerQueueFull) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "worker 0 neither waited for worker 1 nor dropped"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let it run on a while: it must stay waiting.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        c0.drops_of(DropReason::SteerQueueFull),
        0,
        "worker 0 dropped packets for worker 1 instead of leaving them in its port"
    );
    assert!(c0.steered_out.get() <= MIN_STEER_QUEUE_SIZE as u64);

    let (c1, stop1, worker1) = echo_worker_with(1, w1_end, DefaultAction::Drop, None, ring1);
    let (sent0, sent1) = (peer0.counters(), peer1.counters());
    let accepted = (sent0.sent + sent1.sent) as usize;
    let refused = (sent0.refused + sent1.refused) as usize;
    assert_eq!(accepted + refused, 2 * PER_LINK, "each frame offered once");
    assert!(
        sent0.refused > 0 && sent1.refused > 0,
        "the links (the ports' RX rings) held the backlog: {sent0:?} {sent1:?}"
    );
    // Replies leave through the owner's link: collect from both.
    let mut echoes = 0;
    let mut rx = Burst::new();
    let start = Instant::now();
    // (A reply the link cannot take, while this thread does not read, is
    // the worker's counted tx_full drop.)
    let tx_full = || c0.drops_of(DropReason::TxFull) + c1.drops_of(DropReason::TxFull);
    while echoes + (tx_full() as usize) < accepted && start.elapsed() < Duration::from_secs(30) {
        let got = peer0.rx_burst(&mut rx) + peer1.rx_burst(&mut rx);
        for buf in rx.drain(..) {
            let eth = EthernetFrame::new_checked(buf.data()).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(udp.src_port(), 7);
            echoes += 1;
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // A little longer: nothing more may come.
    std::thread::sleep(Duration::from_millis(50));
    echoes += peer0.rx_burst(&mut rx) + peer1.rx_burst(&mut rx);
    for stop in [&stop0, &stop1] {
        stop.store(true, Ordering::Relaxed);
    }
    worker0.join().expect("worker 0");
    worker1.join().expect("worker 1");

    let context = format!(
        "accepted {accepted}, refused {refused}, echoes {echoes}, \
         worker 0: out {} in {} waits {}, worker 1: out {} in {} waits {}",
        c0.steered_out.get(),
        c0.steered_in.get(),
        c0.steer_backpressure_rounds.get(),
        c1.steered_out.get(),
        c1.steered_in.get(),
        c1.steer_backpressure_rounds.get()
    );
    // Nothing lost between the workers: every frame the links took was
    // answered (or its answer counted as tx_full), the rest counted by the
    // links.
    for c in [&c0, &c1] {
        assert_eq!(c.drops_of(DropReason::SteerQueueFull), 0, "{context}");
        assert_eq!(c.total_drops(), c.drops_of(DropReason::TxFull), "{context}");
    }
    assert_eq!(echoes + tx_full() as usize, accepted, "{context}");
    assert_eq!(c0.steered_out.get(), c1.steered_in.get(), "{context}");
    assert_eq!(c1.steered_out.get(), c0.steered_in.get(), "{context}");
    assert!(c1.steered_out.get() > 0, "steering both ways: {context}");
    assert_eq!(
        c0.rx_packets.get() + c1.rx_packets.get(),
        accepted as u64,
        "{context}"
    );
}

/// A queue that drops some packets on its own as chained, as DPDK's queue
/// does with a multi-segment mbuf: here every frame whose UDP payload starts
/// with `chained`.
struct ChainDropping {
    inner: MemQueue,
    dropped: u64,
}

impl Queue for ChainDropping {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>) -> usize {
        let mut burst = Burst::new();
        self.inner.rx_burst(&mut burst);
        for buf in burst.drain(..) {
            // Ethernet 14, IPv4 20, UDP 8.
            if buf.data().get(42..49) == Some(&b"chained"[..]) {
                self.dropped += 1;
            } else {
                out.push(buf);
            }
        }
        out.len()
    }

    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        self.inner.tx_burst(pkts)
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        self.inner.alloc()
    }

    fn rx_dropped(&self) -> u64 {
        self.dropped
    }

    fn rx_multi_segment_drops(&self) -> u64 {
        self.dropped
    }
}

/// What a queue drops on its own as chained is counted by the worker, under
/// its reason; the rest is served.
#[test]
fn chained_packets_the_queue_drops_are_counted() {
    let (worker_end, mut peer_end) = MemLink::pair(LinkConfig::default());
    let queue = ChainDropping {
        inner: worker_end,
        dropped: 0,
    };
    let (counters, stop, worker) = echo_worker_with(0, queue, DefaultAction::Drop, None, None);
    let ends = Endpoints {
        src_mac: PEER_MAC,
        dst_mac: OUR_MAC,
        src_ip: PEER_IP,
        dst_ip: OUR_IP,
    };
    let frames: Vec<Vec<u8>> = (0..100u16)
        .map(|i| {
            let payload = if i % 4 == 0 {
                format!("chained {i}")
            } else {
                format!("single {i}")
            };
            udp_frame(ends, 20_000 + i, 7, payload.as_bytes())
        })
        .collect();
    send_all(&mut peer_end, &frames);
    let echoes = receive_all(&mut peer_end, 75);
    // The counter follows the queue's total; wait for it (bounded).
    let start = Instant::now();
    while counters.drops_of(DropReason::MultiSegment) < 25
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker thread");
    assert_eq!(echoes.len(), 75, "the single-segment requests are echoed");
    assert_eq!(counters.drops_of(DropReason::MultiSegment), 25);
    assert_eq!(counters.total_drops(), 25);
}
