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

use shardnet::config::{Action, DefaultAction, IdleMode, ServiceKind};
use shardnet::counters::{DropReason, WorkerCounters};
use shardnet::kernel::{self, KernelLink, Relay, RelayCounters};
use shardnet::port::heap::HeapBuf;
use shardnet::port::memlink::{LinkConfig, MemLink, MemQueue};
use shardnet::port::{Burst, PacketBuf, Queue};
use shardnet::rules::{RuleTable, SharedRules};
use shardnet::stack::Interface;
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
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 24,
    };
    let echo = udp_rule("echo", 7, Action::Service(ServiceKind::Echo));
    let rules = Arc::new(SharedRules::new(Arc::new(RuleTable::compile(
        std::slice::from_ref(&echo),
        default,
    ))));
    let (stack, counters) = lone_stack(iface, &[echo], default, false);
    let stop = Arc::new(AtomicBool::new(false));
    // The sender is dropped: no control message ever comes.
    let (_, control_rx) = crossbeam_channel::bounded(1);
    let setup = WorkerSetup {
        id: 0,
        idle: IdleMode::Adaptive,
        stop: stop.clone(),
        control: control_rx,
        rules,
        counters: counters.clone(),
        clock: Clock::start(),
    };
    let worker = std::thread::spawn(move || {
        worker::run(
            worker_end,
            stack,
            setup,
            worker::WorkerLinks {
                kernel,
                steer: None,
            },
        )
    });
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
