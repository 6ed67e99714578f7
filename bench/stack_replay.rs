//! Drive one worker's stack with UDP echo requests over 1024 flows, with no I/O
//! at all: each request is copied into a buffer (as a PMD copies a frame into
//! an mbuf), processed, and the reply's buffer is reused for the next request.
//!
//! Used by `bench/udp-echo.sh` under `valgrind --tool=callgrind` to count the
//! instructions the stack spends per packet: run it for two packet counts and
//! divide the difference in instructions by the difference in packets, which
//! cancels the start-up cost.
//!
//!     stack_replay PACKETS

use std::net::Ipv4Addr;
use std::sync::Arc;

use shardnet::config::{Action, DefaultAction, Protocol, Rule, ServiceKind};
use shardnet::counters::WorkerCounters;
use shardnet::neighbour::NeighbourMailboxes;
use shardnet::port::heap::HeapBuf;
use shardnet::port::PacketBuf;
use shardnet::rules::RuleTable;
use shardnet::stack::{Disposition, Interface, Stack};
use shardnet::wire::{
    ChecksumMode, EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr,
    UdpPacket, UdpRepr, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, UDP_HEADER_LEN,
};

const FLOWS: u16 = 1024;
const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// A 60-byte UDP echo request (18 bytes of payload) from flow `i`.
fn request(i: u16) -> Vec<u8> {
    let payload = [0x5a; 18];
    let src = Ipv4Addr::new(198, 18, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
    let mut frame = vec![0; ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + 18];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(OUR_MAC);
    eth.set_src_addr(EthernetAddress([2, 0, 0, 0, 1, 1]));
    eth.set_ethertype(EtherType::Ipv4);
    let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
    ip_bytes[IPV4_HEADER_LEN + UDP_HEADER_LEN..].copy_from_slice(&payload);
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: OUR_IP,
        next_header: IpProtocol::Udp,
        payload_len: UDP_HEADER_LEN + payload.len(),
        ttl: 64,
    };
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut *ip_bytes),
        ChecksumMode::Software,
    );
    let udp = &mut ip_bytes[IPV4_HEADER_LEN..];
    UdpRepr {
        src_port: 10_000 + i,
        dst_port: 7,
    }
    .emit(
        &mut UdpPacket::new_unchecked(udp),
        src,
        OUR_IP,
        payload.len(),
        ChecksumMode::Software,
    );
    frame
}

fn main() {
    let packets: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: stack_replay PACKETS");
    let requests: Vec<Vec<u8>> = (0..FLOWS).map(request).collect();
    let rules = [Rule {
        name: "echo".into(),
        protocol: Protocol::Udp,
        ports: vec![7..=7],
        action: Action::Service(ServiceKind::Echo),
    }];
    let counters = Arc::new(WorkerCounters::default());
    let mut stack = Stack::new(
        Interface {
            mac: OUR_MAC,
            ip: OUR_IP,
            prefix_len: 16,
        },
        Arc::new(RuleTable::compile(&rules, DefaultAction::Drop)),
        NeighbourMailboxes::new(1).cache_for(0),
        counters.clone(),
        false,
    );
    let mut buf = HeapBuf::with_room(2048);
    let mut fold = 0u64;
    let start = std::time::Instant::now();
    for n in 0..packets {
        let frame = &requests[(n % u64::from(FLOWS)) as usize];
        buf.set_len(frame.len());
        buf.data_mut().copy_from_slice(frame);
        buf = match stack.process(buf, n) {
            Disposition::Transmit(reply) => reply,
            _ => panic!("request {n} was not answered"),
        };
        fold = fold.wrapping_add(u64::from(buf.data()[ETHERNET_HEADER_LEN + 10]));
    }
    let elapsed = start.elapsed();
    assert_eq!(counters.udp_tx.get(), packets);
    println!(
        "{{\"packets\": {packets}, \"seconds\": {:.6}, \"fold\": {fold}}}",
        elapsed.as_secs_f64()
    );
}
