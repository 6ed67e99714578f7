//! Drive one worker's stack with UDP echo requests over 1024 flows, with no I/O
//! at all: each request is copied into a buffer (as a PMD copies a frame into
//! an mbuf), processed, and the reply's buffer is reused for the next request.
//!
//! Used by `bench/udp-echo.sh` under `valgrind --tool=callgrind` to count the
//! instructions the stack spends per packet: run it for two packet counts and
//! divide the difference in instructions by the difference in packets, which
//! cancels the start-up cost.
//!
//!     stack_replay PACKETS [udp|tcp] [software|offload]
//!
//! `tcp` replays 1000-byte segments to the TCP echo service over one
//! established connection instead (each answered with the echoed data,
//! which carries the ACK): the path where the stack builds frames and so
//! computes full checksums. `offload` makes the egress report
//! [`TxChecksum::Full`], as a DPDK queue with the offloads does: the stack
//! then writes only the pseudo-header sums (the heap buffers ignore the
//! per-mbuf request, a few stores on DPDK). The UDP echo turns the request
//! around in place with an incremental checksum update, so the mode does not
//! change it.

use std::net::Ipv4Addr;
use std::sync::Arc;

use shardnet::config::{Action, DefaultAction, ServiceId};
use shardnet::counters::WorkerCounters;
use shardnet::port::heap::HeapBuf;
use shardnet::port::{PacketBuf, TxChecksum};
use shardnet::stack::{Interface, Stack, TcpSetup};
use shardnet::tcp::connection::GSO_MAX_BYTES;
use shardnet::testing::{
    lone_stack, lone_stack_with_tcp, tcp_frame, tcp_rule, udp_frame, udp_rule, CollectEgress,
    Endpoints,
};
use shardnet::wire::{
    EthernetAddress, Ipv4Packet, TcpFlags, TcpHeader, TcpOptions, TcpPacket, ETHERNET_HEADER_LEN,
};

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

const USAGE: &str =
    "usage: stack_replay PACKETS [udp|tcp] [software|offload] | stack_replay ROUNDS bulk [mss|gso|tso]";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let packets: u64 = args.get(1).and_then(|a| a.parse().ok()).expect(USAGE);
    if args.get(2).map(String::as_str) == Some("bulk") {
        let sending = match args.get(3).map(String::as_str) {
            None | Some("mss") => Sending::Mss,
            Some("gso") => Sending::Gso,
            Some("tso") => Sending::Tso,
            Some(_) => panic!("{USAGE}"),
        };
        return bulk(packets, sending);
    }
    let tx_checksum = match args.get(3).map(String::as_str) {
        None | Some("software") => TxChecksum::Software,
        Some("offload") => TxChecksum::Full,
        Some(_) => panic!("{USAGE}"),
    };
    match args.get(2).map(String::as_str) {
        None | Some("udp") => udp(packets, tx_checksum),
        Some("tcp") => tcp(packets, tx_checksum),
        Some(_) => panic!("{USAGE}"),
    }
}

/// The peer's segment to the echo service.
fn segment(flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
    TcpHeader {
        src_port: 40000,
        dst_port: 7,
        seq,
        ack,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
    }
}

/// The end of the stack's sequence space in `frame` (a TCP segment, its
/// checksum not checked: with offload it is not final) and its data length.
fn stack_end(frame: &[u8]) -> (u32, usize) {
    let ip_len = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]).total_len();
    let end = ETHERNET_HEADER_LEN + usize::from(ip_len);
    let ip = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..end]);
    let tcp = TcpPacket::new_unchecked(ip.payload());
    let header = TcpHeader::parse(&tcp).expect("a TCP segment from the stack");
    let len = tcp.payload().len();
    let syn_fin = usize::from(header.flags.contains(TcpFlags::SYN))
        + usize::from(header.flags.contains(TcpFlags::FIN));
    (header.seq.wrapping_add((len + syn_fin) as u32), len)
}

/// The TCP peer: one flow to the stack.
const PEER: Endpoints = Endpoints {
    src_mac: EthernetAddress([2, 0, 0, 0, 1, 1]),
    dst_mac: OUR_MAC,
    src_ip: Ipv4Addr::new(198, 18, 1, 1),
    dst_ip: OUR_IP,
};

/// A stack with the TCP echo service on port 7, set up with `tcp`.
fn echo_stack(tcp: TcpSetup) -> (Stack, Arc<WorkerCounters>) {
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 16,
    };
    let echo = tcp_rule("echo", 7, Action::Service(ServiceId::ECHO));
    lone_stack_with_tcp(iface, &[echo], DefaultAction::Drop, false, tcp)
}

/// The peer's SYN (MSS 1460, and window scale 7 where `scaled`) to the
/// echo service; returns the stack's next sequence number from its SYN-ACK.
fn open(stack: &mut Stack, egress: &mut CollectEgress, scaled: bool) -> u32 {
    let mut syn = segment(TcpFlags::SYN, 1000, 0);
    syn.options.mss = Some(1460);
    if scaled {
        syn.options.window_scale = Some(7);
    }
    stack.process(HeapBuf::from_slice(&tcp_frame(PEER, &syn, b"")), 0, egress);
    let syn_ack = egress.frames.pop().expect("a SYN-ACK");
    stack_end(syn_ack.data()).0
}

fn tcp(packets: u64, tx_checksum: TxChecksum) {
    let ends = PEER;
    let (mut stack, counters) = echo_stack(TcpSetup {
        secret_key: [7; 32],
        ..TcpSetup::default()
    });
    let mut egress = CollectEgress {
        tx_checksum,
        ..CollectEgress::default()
    };
    let mut ours = open(&mut stack, &mut egress, false);
    let mut seq = 1001u32;
    let ack = segment(TcpFlags::ACK, seq, ours);
    stack.process(
        HeapBuf::from_slice(&tcp_frame(ends, &ack, b"")),
        0,
        &mut egress,
    );
    egress.frames.clear();
    let payload = [0x5au8; 1000];
    let mut echoed = 0u64;
    let start = std::time::Instant::now();
    for n in 0..packets {
        let frame = tcp_frame(
            ends,
            &segment(TcpFlags::ACK | TcpFlags::PSH, seq, ours),
            &payload,
        );
        seq = seq.wrapping_add(payload.len() as u32);
        stack.process(HeapBuf::from_slice(&frame), n, &mut egress);
        for f in egress.frames.drain(..) {
            let (end, len) = stack_end(f.data());
            ours = end;
            echoed += len as u64;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(echoed, packets * payload.len() as u64, "every byte echoed");
    assert_eq!(counters.tcp_active.get(), 1);
    println!(
        "{{\"packets\": {packets}, \"seconds\": {:.6}, \"echoed\": {echoed}}}",
        elapsed.as_secs_f64()
    );
}

/// How the stack's segments leave in `bulk`.
#[derive(Clone, Copy, PartialEq)]
enum Sending {
    /// One MSS a segment (`gso_max` 0), software checksums.
    Mss,
    /// Up to 64 KiB a segment, cut by the stack, software checksums: the
    /// runtime's setting on a port without TSO.
    Gso,
    /// Up to 64 KiB a segment in one large buffer with the checksums and
    /// the cutting left to the NIC (TSO).
    Tso,
}

/// Bulk echo over one connection: each round the peer sends 64,240 bytes
/// (44 segments of 1460, one RX burst), the echo service sends them back,
/// and the peer acknowledges all it got in one ACK (a burst of its own).
/// Counts the stack's instructions per byte both ways; what `Sending`
/// changes is the sending half.
fn bulk(rounds: u64, sending: Sending) {
    const MSS: usize = 1460;
    const PER_ROUND: usize = 44;
    let ends = PEER;
    let mut tcp = TcpSetup::default();
    if sending != Sending::Mss {
        tcp.table.tcp.gso_max = GSO_MAX_BYTES;
    }
    let (mut stack, counters) = echo_stack(tcp);
    let mut egress = CollectEgress {
        tx_checksum: if sending == Sending::Tso {
            TxChecksum::Full
        } else {
            TxChecksum::Software
        },
        large: sending == Sending::Tso,
        ..CollectEgress::default()
    };
    // Window scaling: the peer's 65535 means 8 MiB, never the limit.
    let mut ours = open(&mut stack, &mut egress, true);
    let mut seq = 1001u32;
    let payload = [0x5au8; MSS];
    let frames: Vec<Vec<u8>> = (0..PER_ROUND)
        .map(|_| tcp_frame(ends, &segment(TcpFlags::ACK, 0, 0), &payload))
        .collect();
    let mut echoed = 0u64;
    let mut now = 0u64;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        // The peer's data: the same frames with this round's numbers (as a
        // NIC writes a frame into an mbuf), one burst.
        stack.begin_burst();
        for frame in &frames {
            let mut buf = HeapBuf::from_slice(frame);
            let tcp_at = ETHERNET_HEADER_LEN + 20;
            let data = buf.data_mut();
            data[tcp_at + 4..tcp_at + 8].copy_from_slice(&seq.to_be_bytes());
            data[tcp_at + 8..tcp_at + 12].copy_from_slice(&ours.to_be_bytes());
            let mut tcp = TcpPacket::new_unchecked(&mut data[tcp_at..]);
            tcp.fill_checksum(ends.src_ip, OUR_IP);
            seq = seq.wrapping_add(MSS as u32);
            stack.process(buf, now, &mut egress);
        }
        stack.end_burst(now, &mut egress);
        // Then its ACK of all that came back, until the round is echoed.
        for _ in 0..64 {
            if egress.frames.is_empty() {
                break;
            }
            let out = std::mem::take(&mut egress.frames);
            for f in out {
                let (end, len) = stack_end(f.data());
                if end.wrapping_sub(ours) as i32 > 0 {
                    ours = end;
                }
                echoed += len as u64;
                egress.recycle(f);
            }
            now += 100_000;
            stack.begin_burst();
            stack.process(
                HeapBuf::from_slice(&tcp_frame(ends, &segment(TcpFlags::ACK, seq, ours), b"")),
                now,
                &mut egress,
            );
            stack.end_burst(now, &mut egress);
        }
        now += 100_000;
    }
    let elapsed = start.elapsed();
    assert_eq!(
        echoed,
        rounds * (PER_ROUND * MSS) as u64,
        "every byte echoed"
    );
    assert_eq!(counters.tcp_retransmits.get(), 0);
    println!(
        "{{\"rounds\": {rounds}, \"seconds\": {:.6}, \"echoed\": {echoed}, \"frames_out\": {}, \"tso_segments\": {}}}",
        elapsed.as_secs_f64(),
        counters.tcp_tx_segments.get(),
        counters.tcp_tso_segments.get()
    );
}

fn udp(packets: u64, tx_checksum: TxChecksum) {
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
    let mut egress = CollectEgress {
        tx_checksum,
        ..CollectEgress::default()
    };
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
