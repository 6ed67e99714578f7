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

use shardnet::config::{Action, DefaultAction, ServiceId};
use shardnet::port::heap::HeapBuf;
use shardnet::port::PacketBuf;
use shardnet::stack::Interface;
use shardnet::testing::{lone_stack, udp_frame, udp_rule, CollectEgress, Endpoints};
use shardnet::wire::{EthernetAddress, ETHERNET_HEADER_LEN};

const FLOWS: u16 = 1024;
const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// A 60-byte UDP echo request (18 bytes of payload) from flow `i`.
fn request(i: u16) -> Vec<u8> {
    let ends = Endpoints {
        src_mac: EthernetAddress([2, 0, 0, 0, 1, 1]),
        dst_mac: OUR_MAC,
        src_ip: Ipv4Addr::new(198, 18, 1 + (i / 250) as u8, 1 + (i % 250) as u8),
        dst_ip: OUR_IP,
    };
    udp_frame(ends, 10_000 + i, 7, &[0x5a; 18])
}

fn main() {
    let packets: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: stack_replay PACKETS");
    let requests: Vec<Vec<u8>> = (0..FLOWS).map(request).collect();
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 16,
    };
    let echo = udp_rule("echo", 7, Action::Service(ServiceId::ECHO));
    let (mut stack, counters) = lone_stack(iface, &[echo], DefaultAction::Drop, false);
    let mut buf = HeapBuf::with_room(2048);
    let mut fold = 0u64;
    // UDP echo replies in place: the reply is the request's buffer, sent
    // through the egress.
    let mut egress = CollectEgress::default();
    let start = std::time::Instant::now();
    for n in 0..packets {
        let frame = &requests[(n % u64::from(FLOWS)) as usize];
        buf.set_len(frame.len());
        buf.data_mut().copy_from_slice(frame);
        stack.process(buf, n, &mut egress);
        buf = match egress.frames.pop() {
            Some(reply) if egress.frames.is_empty() => reply,
            _ => panic!("request {n} was not answered with one frame"),
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
