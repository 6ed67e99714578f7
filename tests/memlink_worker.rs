//! A real worker loop (thread, poll loop, TX drain, stop) over the in-memory
//! link, with loss, duplication, reordering and corruption injected in both
//! directions. Whatever the link does, every echo that arrives must be an
//! intact copy of a request, and every frame the worker received must be
//! accounted for: answered, or dropped under a reason.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardnet::config::{Action, DefaultAction, IdleMode, ServiceKind};
use shardnet::counters::WorkerCounters;
use shardnet::port::memlink::{LinkConfig, MemLink};
use shardnet::port::{Burst, PacketBuf, Queue};
use shardnet::rules::{RuleTable, SharedRules};
use shardnet::stack::Interface;
use shardnet::testing::{lone_stack, udp_frame, udp_rule, Endpoints};
use shardnet::wire::{EthernetAddress, EthernetFrame, Ipv4Packet, UdpPacket};
use shardnet::worker::{self, Clock, WorkerSetup};

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

fn run(config: LinkConfig, requests: usize) -> Outcome {
    let (worker_end, mut peer_end) = MemLink::pair(config);
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 24,
    };
    let echo = udp_rule("echo", 7, Action::Service(ServiceKind::Echo));
    let rules = Arc::new(SharedRules::new(Arc::new(RuleTable::compile(
        std::slice::from_ref(&echo),
        DefaultAction::Drop,
    ))));
    let (stack, counters) = lone_stack(iface, &[echo], DefaultAction::Drop, false);
    let stop = Arc::new(AtomicBool::new(false));
    let (_control_tx, control_rx) = crossbeam_channel::bounded(1);
    let setup = WorkerSetup {
        id: 0,
        idle: IdleMode::Adaptive,
        stop: stop.clone(),
        control: control_rx,
        rules,
        counters: counters.clone(),
        clock: Clock::start(),
    };
    let worker = std::thread::spawn(move || worker::run(worker_end, stack, setup));

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
