use std::net::SocketAddrV4;

use super::*;
use crate::app::{App, AppIo};
use crate::config::{Action, DefaultAction, ServiceId};
use crate::port::heap::HeapBuf;
use crate::port::{RxChecksum, TxChecksum};
use crate::tcp::FourTuple;
use crate::testing::{ipv4_frame, lone_stack, udp_frame, udp_rule, CollectEgress, Endpoints};
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet,
    TcpHeader, UdpPacket, IPV4_HEADER_LEN,
};
use proptest::prelude::*;

const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Our interface: `OUR_MAC`, `OUR_IP` on a /24.
const OUR_IFACE: Interface = Interface {
    mac: OUR_MAC,
    ip: OUR_IP,
    prefix_len: 24,
};

fn stack() -> (Stack, Arc<WorkerCounters>) {
    let rules = [
        udp_rule("echo", 7, Action::Service(ServiceId::ECHO)),
        udp_rule("discard", 9, Action::Service(ServiceId::DISCARD)),
        udp_rule("sink", 5000, Action::Drop),
    ];
    lone_stack(OUR_IFACE, &rules, DefaultAction::Kernel, true)
}

fn ethernet(ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0; ETHERNET_HEADER_LEN + payload.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(OUR_MAC);
    eth.set_src_addr(PEER_MAC);
    eth.set_ethertype(ethertype);
    eth.payload_mut().copy_from_slice(payload);
    frame
}

const ENDS: Endpoints = Endpoints {
    src_mac: PEER_MAC,
    dst_mac: OUR_MAC,
    src_ip: PEER_IP,
    dst_ip: OUR_IP,
};

fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    udp_frame(ENDS, src_port, dst_port, payload)
}

fn icmp_echo_request(ident: u16, data: &[u8]) -> Vec<u8> {
    let mut message = vec![0; 8 + data.len()];
    let mut icmp = Icmpv4Packet::new_unchecked(&mut message[..]);
    icmp.set_msg_type(Icmpv4Message::EchoRequest);
    icmp.set_msg_code(0);
    icmp.set_echo_ident(ident);
    icmp.set_echo_seq_no(1);
    icmp.data_mut().copy_from_slice(data);
    icmp.fill_checksum();
    ipv4_frame(ENDS, IpProtocol::Icmp, &message)
}

/// What [`Stack::process`] does with a frame, the buffer included.
#[derive(Debug)]
enum Disposition<B> {
    Transmit(B),
    Kernel(B),
    Consumed,
}

impl Stack {
    /// [`Stack::process`] without the hand-off to the egress: the verdict
    /// with the buffer, for the tests to look at.
    fn dispose_of<E: Egress<Buf = HeapBuf>>(
        &mut self,
        mut pkt: HeapBuf,
        now_ns: u64,
        egress: &mut E,
    ) -> Disposition<HeapBuf> {
        match self.handle(&mut pkt, now_ns, egress) {
            super::Disposition::Transmit => Disposition::Transmit(pkt),
            super::Disposition::Kernel => Disposition::Kernel(pkt),
            super::Disposition::Consumed => Disposition::Consumed,
        }
    }
}

fn transmitted(d: Disposition<HeapBuf>) -> HeapBuf {
    match d {
        Disposition::Transmit(buf) => buf,
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// Check a reply's Ethernet and IPv4 headers and return its L4 bytes.
fn check_reply_ip(frame: &[u8], protocol: IpProtocol) -> Vec<u8> {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.dst_addr(), PEER_MAC);
    assert_eq!(eth.src_addr(), OUR_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum(), "IPv4 checksum of the reply");
    assert_eq!(ip.src_addr(), OUR_IP);
    assert_eq!(ip.dst_addr(), PEER_IP);
    assert_eq!(ip.ttl(), DEFAULT_TTL);
    assert_eq!(ip.next_header(), protocol);
    assert_eq!(
        usize::from(ip.total_len()),
        frame.len() - ETHERNET_HEADER_LEN
    );
    ip.payload().to_vec()
}

#[test]
fn udp_echo_replies_in_place_byte_for_byte() {
    let (mut stack, counters) = stack();
    for payload in [&b""[..], b"x", b"hello shardnet", &[0xa5; 1472]] {
        let reply = transmitted(stack.dispose_of(
            HeapBuf::from_slice(&udp(40000, 7, payload)),
            0,
            &mut CollectEgress::default(),
        ));
        let l4 = check_reply_ip(reply.data(), IpProtocol::Udp);
        let udp = UdpPacket::new_checked(&l4[..]).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (7, 40000));
        assert!(udp.verify_checksum(OUR_IP, PEER_IP));
        assert_ne!(udp.checksum(), 0);
        assert_eq!(udp.payload(), payload);
    }
    assert_eq!(counters.udp_rx.get(), 4);
    assert_eq!(counters.udp_tx.get(), 4);
    assert_eq!(counters.rule_hits[0].get(), 4);
    assert_eq!(counters.total_drops(), 0);
}

#[test]
fn udp_echo_of_partial_checksum_sends_a_complete_one() {
    let (mut stack, _) = stack();
    let mut frame = udp(40000, 7, b"offloaded");
    // Put a partial checksum (the pseudo-header sum) where the real one was.
    let udp_at = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;
    let mut packet = UdpPacket::new_unchecked(&mut frame[udp_at..]);
    packet.fill_pseudo_header_checksum(PEER_IP, OUR_IP);
    let mut buf = HeapBuf::from_slice(&frame);
    buf.l4_checksum = RxChecksum::Partial;
    let reply = transmitted(stack.dispose_of(buf, 0, &mut CollectEgress::default()));
    let l4 = check_reply_ip(reply.data(), IpProtocol::Udp);
    assert!(UdpPacket::new_checked(&l4[..])
        .unwrap()
        .verify_checksum(OUR_IP, PEER_IP));
}

#[test]
fn ethernet_padding_is_not_echoed() {
    let (mut stack, _) = stack();
    let mut frame = udp(40000, 7, b"ab");
    let unpadded = frame.len();
    frame.resize(60, 0xee); // minimum Ethernet frame, padded by the sender
    let reply = transmitted(stack.dispose_of(
        HeapBuf::from_slice(&frame),
        0,
        &mut CollectEgress::default(),
    ));
    assert_eq!(reply.len(), unpadded);
}

#[test]
fn discard_drop_and_default_rules() {
    let (mut stack, counters) = stack();
    assert!(matches!(
        stack.dispose_of(
            HeapBuf::from_slice(&udp(1, 9, b"gone")),
            0,
            &mut CollectEgress::default()
        ),
        Disposition::Consumed
    ));
    assert_eq!(
        stack
            .services()
            .udp_as::<crate::service::Discard>(ServiceId::DISCARD)
            .unwrap()
            .bytes,
        4
    );
    assert!(matches!(
        stack.dispose_of(
            HeapBuf::from_slice(&udp(1, 5000, b"sunk")),
            0,
            &mut CollectEgress::default()
        ),
        Disposition::Consumed
    ));
    assert_eq!(counters.drops_of(DropReason::Rule), 1);
    let unclaimed = udp(1, 53, b"dns?");
    match stack.dispose_of(
        HeapBuf::from_slice(&unclaimed),
        0,
        &mut CollectEgress::default(),
    ) {
        Disposition::Kernel(buf) => assert_eq!(buf.data(), &unclaimed[..], "unchanged"),
        other => panic!("expected kernel, got {other:?}"),
    }
    assert_eq!(counters.default_hits.get(), 1);
    assert_eq!(counters.rule_hits[1].get(), 1);
    assert_eq!(counters.rule_hits[2].get(), 1);
}

/// `process` is `dispose_of` with the hand-off: every frame leaves through
/// the egress, in place replies and the kernel's frames as the received
/// buffer itself.
#[test]
fn process_sends_every_frame_through_the_egress() {
    let (mut stack, counters) = stack();
    let mut egress = CollectEgress::default();
    stack.process(HeapBuf::from_slice(&udp(40000, 7, b"ping")), 0, &mut egress);
    assert_eq!((egress.frames.len(), egress.kernel.len()), (1, 0));
    let l4 = check_reply_ip(egress.frames[0].data(), IpProtocol::Udp);
    let reply = UdpPacket::new_checked(&l4[..]).unwrap();
    assert_eq!((reply.src_port(), reply.dst_port()), (7, 40000));
    assert_eq!(reply.payload(), b"ping");
    let unclaimed = udp(40000, 53, b"dns?");
    stack.process(HeapBuf::from_slice(&unclaimed), 0, &mut egress);
    assert_eq!((egress.frames.len(), egress.kernel.len()), (1, 1));
    assert_eq!(egress.kernel[0].data(), &unclaimed[..], "unchanged");
    stack.process(HeapBuf::from_slice(&udp(40000, 9, b"gone")), 0, &mut egress);
    stack.process(
        HeapBuf::from_slice(&udp(40000, 5000, b"sunk")),
        0,
        &mut egress,
    );
    assert_eq!((egress.frames.len(), egress.kernel.len()), (1, 1));
    assert_eq!(
        stack
            .services()
            .udp_as::<crate::service::Discard>(ServiceId::DISCARD)
            .unwrap()
            .bytes,
        4
    );
    assert_eq!(counters.drops_of(DropReason::Rule), 1);
}

#[test]
fn icmp_echo_request_is_answered() {
    let (mut stack, counters) = stack();
    let data: Vec<u8> = (0..56).collect();
    let reply = transmitted(stack.dispose_of(
        HeapBuf::from_slice(&icmp_echo_request(77, &data)),
        0,
        &mut CollectEgress::default(),
    ));
    let l4 = check_reply_ip(reply.data(), IpProtocol::Icmp);
    let icmp = Icmpv4Packet::new_checked(&l4[..]).unwrap();
    assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.echo_ident(), 77);
    assert_eq!(icmp.data(), &data[..]);
    assert_eq!(counters.icmp_echo_replies.get(), 1);
    let record = stack.flow_record().unwrap();
    assert_eq!(record.len(), 1);
}

fn arp(operation: ArpOperation, target: Ipv4Addr) -> Vec<u8> {
    let mut body = [0u8; 28];
    ArpRepr {
        operation,
        source_hardware_addr: PEER_MAC,
        source_protocol_addr: PEER_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut body[..]));
    let mut frame = ethernet(EtherType::Arp, &body);
    EthernetFrame::new_unchecked(&mut frame[..]).set_dst_addr(EthernetAddress::BROADCAST);
    frame
}

#[test]
fn arp_request_for_us_is_answered_and_the_sender_learnt() {
    let (mut stack, counters) = stack();
    let reply = transmitted(stack.dispose_of(
        HeapBuf::from_slice(&arp(ArpOperation::Request, OUR_IP)),
        5,
        &mut CollectEgress::default(),
    ));
    let eth = EthernetFrame::new_checked(reply.data()).unwrap();
    assert_eq!(eth.dst_addr(), PEER_MAC);
    assert_eq!(eth.src_addr(), OUR_MAC);
    let repr = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    assert_eq!(
        repr,
        ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: OUR_MAC,
            source_protocol_addr: OUR_IP,
            target_hardware_addr: PEER_MAC,
            target_protocol_addr: PEER_IP,
        }
    );
    assert_eq!(stack.neighbours().lookup(PEER_IP, 10), Some(PEER_MAC));
    assert_eq!(counters.arp_replies_sent.get(), 1);
    // Someone else's request: not ours to answer.
    let other = Ipv4Addr::new(198, 18, 0, 99);
    assert!(matches!(
        stack.dispose_of(
            HeapBuf::from_slice(&arp(ArpOperation::Request, other)),
            5,
            &mut CollectEgress::default()
        ),
        Disposition::Consumed
    ));
    assert_eq!(counters.drops_of(DropReason::NotForUs), 1);
}

#[test]
fn arp_reply_for_us_goes_to_the_kernel_too_unless_there_is_none() {
    let (mut stack, counters) = stack();
    let reply = || HeapBuf::from_slice(&arp(ArpOperation::Reply, OUR_IP));
    // The kernel shares our address and may have asked.
    let d = stack.dispose_of(reply(), 5, &mut CollectEgress::default());
    assert!(matches!(d, Disposition::Kernel(_)), "{d:?}");
    assert_eq!(stack.neighbours().lookup(PEER_IP, 10), Some(PEER_MAC));
    // Without a kernel port it answered our own request: ours alone,
    // learnt, and no drop to count.
    stack.set_kernel_port(false);
    let d = stack.dispose_of(reply(), 6, &mut CollectEgress::default());
    assert!(matches!(d, Disposition::Consumed), "{d:?}");
    assert_eq!(counters.arp_learnt.get(), 2);
    assert_eq!(counters.drops_of(DropReason::NotForUs), 0);
}

#[test]
fn malformed_packets_are_counted_by_reason() {
    let (mut stack, counters) = stack();
    let good = udp(40000, 7, b"0123456789");
    let ip_at = ETHERNET_HEADER_LEN;
    let mut cases: Vec<(Vec<u8>, DropReason)> = Vec::new();
    cases.push((good[..10].to_vec(), DropReason::Truncated));
    cases.push((good[..ip_at + 12].to_vec(), DropReason::Truncated));
    let mut f = good.clone();
    f[ip_at] = 0x65;
    cases.push((f, DropReason::BadVersion));
    let mut f = good.clone();
    f[ip_at] = 0x44;
    cases.push((f, DropReason::BadHeaderLength));
    let mut f = good.clone();
    f[ip_at + 2..ip_at + 4].copy_from_slice(&1400u16.to_be_bytes());
    cases.push((f, DropReason::BadTotalLength));
    let mut f = good.clone();
    f[ip_at + 10] ^= 0xff;
    cases.push((f, DropReason::BadIpChecksum));
    let mut f = good.clone();
    let last = f.len() - 1;
    f[last] ^= 0x01;
    cases.push((f, DropReason::BadL4Checksum));
    let mut f = good.clone();
    Ipv4Packet::new_unchecked(&mut f[ip_at..]).set_more_frags(true);
    Ipv4Packet::new_unchecked(&mut f[ip_at..]).fill_checksum();
    cases.push((f, DropReason::Fragment));
    let mut f = good.clone();
    Ipv4Packet::new_unchecked(&mut f[ip_at..]).set_dst_addr(Ipv4Addr::new(198, 18, 0, 7));
    Ipv4Packet::new_unchecked(&mut f[ip_at..]).fill_checksum();
    cases.push((f, DropReason::NotForUs));
    let mut f = good.clone();
    EthernetFrame::new_unchecked(&mut f[..]).set_dst_addr(EthernetAddress([2, 9, 9, 9, 9, 9]));
    cases.push((f, DropReason::NotForUs));
    for (i, (frame, reason)) in cases.iter().enumerate() {
        let before = counters.drops_of(*reason);
        assert!(
            matches!(
                stack.dispose_of(HeapBuf::from_slice(frame), 0, &mut CollectEgress::default()),
                Disposition::Consumed
            ),
            "case {i} ({reason:?})"
        );
        assert_eq!(
            counters.drops_of(*reason),
            before + 1,
            "case {i} ({reason:?})"
        );
    }
    assert_eq!(counters.udp_rx.get(), 0);
}

/// Sources no host can have: Linux's `martian_source` list for a unicast
/// datagram to us (with our /24).
const MARTIANS: [Ipv4Addr; 9] = [
    Ipv4Addr::new(0, 0, 0, 0),
    Ipv4Addr::new(0, 1, 2, 3),
    Ipv4Addr::new(127, 0, 0, 1),
    Ipv4Addr::new(127, 255, 0, 9),
    Ipv4Addr::new(224, 0, 0, 1),
    Ipv4Addr::new(239, 255, 255, 250),
    Ipv4Addr::new(255, 255, 255, 255),
    Ipv4Addr::new(198, 18, 0, 255), // our subnet's broadcast address
    OUR_IP,
];

fn from_ip(src_ip: Ipv4Addr) -> Endpoints {
    Endpoints { src_ip, ..ENDS }
}

/// The frame is dropped, nothing is sent, and `reason` counts one more.
fn dropped_as(stack: &mut Stack, counters: &WorkerCounters, frame: &[u8], reason: DropReason) {
    let before = counters.drops_of(reason);
    let mut egress = CollectEgress::default();
    let d = stack.dispose_of(HeapBuf::from_slice(frame), 0, &mut egress);
    assert!(matches!(d, Disposition::Consumed), "{reason:?}: {d:?}");
    assert!(egress.frames.is_empty(), "{reason:?}: nothing sent");
    assert_eq!(counters.drops_of(reason), before + 1, "{reason:?}");
}

#[test]
fn martian_sources_are_dropped_counted_and_never_answered() {
    let (mut stack, counters) = stack();
    let ping = icmp_echo_request(1, b"ping");
    let ping_message = &ping[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..];
    for src in MARTIANS {
        let ends = from_ip(src);
        // UDP echo, a port the rules give the kernel, and ICMP echo.
        for frame in [
            udp_frame(ends, 40000, 7, b"loop?"),
            udp_frame(ends, 40000, 5353, b"kernel's"),
            ipv4_frame(ends, IpProtocol::Icmp, ping_message),
        ] {
            dropped_as(&mut stack, &counters, &frame, DropReason::MartianSource);
        }
    }
    assert_eq!(counters.udp_rx.get() + counters.udp_tx.get(), 0);
    assert_eq!(counters.icmp_echo_replies.get(), 0);
    assert_eq!(counters.drops_of(DropReason::MartianSource), 27);
    // Not martians, as in Linux: the rest of 240.0.0.0/4 and the
    // subnet's lowest address.
    for src in [Ipv4Addr::new(240, 0, 0, 1), Ipv4Addr::new(198, 18, 0, 0)] {
        let d = stack.dispose_of(
            HeapBuf::from_slice(&udp_frame(from_ip(src), 40000, 7, b"ok")),
            0,
            &mut CollectEgress::default(),
        );
        assert!(matches!(d, Disposition::Transmit(_)), "{src}: {d:?}");
    }
    assert_eq!(counters.drops_of(DropReason::MartianSource), 27);
}

#[test]
fn udp_echo_refuses_source_port_zero_and_ports_that_could_answer_back() {
    // Echo on 7 and on 7000-7010 (as both nodes of a pair might have it).
    let mut rules = vec![
        udp_rule("echo", 7, Action::Service(ServiceId::ECHO)),
        udp_rule("discard", 9, Action::Service(ServiceId::DISCARD)),
        udp_rule("sink", 5000, Action::Drop),
    ];
    rules.push(crate::config::Rule {
        ports: vec![7000..=7010],
        ..udp_rule("echo-high", 7000, Action::Service(ServiceId::ECHO))
    });
    let (mut stack, counters) = lone_stack(OUR_IFACE, &rules, DefaultAction::Kernel, false);
    dropped_as(
        &mut stack,
        &counters,
        &udp(0, 7, b"x"),
        DropReason::SourcePortZero,
    );
    dropped_as(
        &mut stack,
        &counters,
        &udp(0, 7005, b"x"),
        DropReason::SourcePortZero,
    );
    // echo, discard, daytime, chargen, time, DNS, NTP, the last
    // privileged port, and our own echo ports.
    for src_port in [7, 9, 13, 19, 37, 53, 123, 1023, 7000, 7005, 7010] {
        for dst_port in [7, 7003] {
            dropped_as(
                &mut stack,
                &counters,
                &udp(src_port, dst_port, b"x"),
                DropReason::LoopProtection,
            );
        }
    }
    assert_eq!(counters.udp_rx.get() + counters.udp_tx.get(), 0);
    assert_eq!(
        stack
            .services()
            .udp_as::<crate::service::Echo>(ServiceId::ECHO)
            .unwrap()
            .bytes,
        0
    );
    // Ports that answer nothing here, and ordinary client ports, get
    // their echo.
    for src_port in [1024, 2049, 5000, 6999, 7011, 40000, 65535] {
        transmitted(stack.dispose_of(
            HeapBuf::from_slice(&udp(src_port, 7, b"x")),
            0,
            &mut CollectEgress::default(),
        ));
    }
    assert_eq!(counters.udp_tx.get(), 7);
    // A service that never answers cannot loop: discard takes all.
    let d = stack.dispose_of(
        HeapBuf::from_slice(&udp(0, 9, b"x")),
        0,
        &mut CollectEgress::default(),
    );
    assert!(matches!(d, Disposition::Consumed), "{d:?}");
    assert_eq!(
        stack
            .services()
            .udp_as::<crate::service::Discard>(ServiceId::DISCARD)
            .unwrap()
            .bytes,
        1
    );
}

#[test]
fn arp_claiming_our_address_is_not_learnt_nor_answered() {
    let (mut stack, counters) = stack();
    let attacker = EthernetAddress([0x02, 0xba, 0xd0, 0, 0, 1]);
    let claim = |operation, sender_mac, sender_ip, target| {
        let mut body = [0u8; 28];
        ArpRepr {
            operation,
            source_hardware_addr: sender_mac,
            source_protocol_addr: sender_ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        }
        .emit(&mut ArpPacket::new_unchecked(&mut body[..]));
        let mut frame = ethernet(EtherType::Arp, &body);
        EthernetFrame::new_unchecked(&mut frame[..]).set_src_addr(sender_mac);
        frame
    };
    // A reply or a gratuitous request from another MAC claiming our
    // address: a conflict.
    for (operation, target) in [
        (ArpOperation::Reply, OUR_IP),
        (ArpOperation::Reply, PEER_IP),
        (ArpOperation::Request, OUR_IP),
    ] {
        let frame = claim(operation, attacker, OUR_IP, target);
        dropped_as(&mut stack, &counters, &frame, DropReason::AddressConflict);
    }
    assert_eq!(stack.neighbours().lookup(OUR_IP, 10), None);
    // Our own (or the kernel's) frame come back: not a conflict.
    let frame = claim(ArpOperation::Request, OUR_MAC, OUR_IP, PEER_IP);
    dropped_as(&mut stack, &counters, &frame, DropReason::NotForUs);
    // A martian sender (the subnet's broadcast address) is not learnt.
    let broadcast = Ipv4Addr::new(198, 18, 0, 255);
    let frame = claim(ArpOperation::Request, attacker, broadcast, OUR_IP);
    dropped_as(&mut stack, &counters, &frame, DropReason::MartianSource);
    assert_eq!(stack.neighbours().lookup(broadcast, 10), None);
    // An RFC 5227 probe (sender 0.0.0.0) is still answered, not learnt.
    let frame = claim(
        ArpOperation::Request,
        attacker,
        Ipv4Addr::UNSPECIFIED,
        OUR_IP,
    );
    transmitted(stack.dispose_of(
        HeapBuf::from_slice(&frame),
        5,
        &mut CollectEgress::default(),
    ));
    assert_eq!(counters.arp_learnt.get(), 0);
    assert_eq!(counters.arp_replies_sent.get(), 1);
}

proptest! {
    /// Arbitrary bytes after a valid Ethernet header addressed to us, as IPv4
    /// or ARP, never panic, and every frame is either answered, handed to
    /// the kernel, delivered or counted as a drop.
    #[test]
    fn any_frame_is_handled_without_panic(
        arp_frame in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let (mut stack, counters) = stack();
        let ethertype = if arp_frame { EtherType::Arp } else { EtherType::Ipv4 };
        let frame = ethernet(ethertype, &body);
        let accounted = match stack.dispose_of(HeapBuf::from_slice(&frame), 0, &mut CollectEgress::default()) {
            Disposition::Transmit(_) | Disposition::Kernel(_) => true,
            Disposition::Consumed => counters.total_drops() == 1 || counters.udp_rx.get() == 1,
        };
        prop_assert!(accounted);
    }

    /// Valid UDP datagrams to the echo port come back intact, whatever
    /// their payload and (unprivileged) source port.
    #[test]
    fn any_udp_echo_is_intact(
        src_port in 1024u16..,
        payload in proptest::collection::vec(any::<u8>(), 0..1472),
    ) {
        let (mut stack, _) = stack();
        let reply = transmitted(stack.dispose_of(HeapBuf::from_slice(&udp(src_port, 7, &payload)), 0, &mut CollectEgress::default()));
        let l4 = check_reply_ip(reply.data(), IpProtocol::Udp);
        let udp = UdpPacket::new_checked(&l4[..]).unwrap();
        prop_assert!(udp.verify_checksum(OUR_IP, PEER_IP));
        prop_assert_eq!(udp.dst_port(), src_port);
        prop_assert_eq!(udp.payload(), &payload[..]);
    }
}

mod async_udp;
mod asyncio;
mod connect;
mod tcp;

#[test]
fn built_udp_datagrams_with_checksum_offload_carry_the_pseudo_header_sum() {
    let to = SocketAddrV4::new(PEER_IP, 4242);
    let payload = b"offloaded datagram";
    let frame_len = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + 8 + payload.len();
    let mut software = vec![0xee; frame_len.max(60)];
    let mut offload = software.clone();
    let build = |frame: &mut [u8], mode| {
        outbox::write_udp_frame(frame, mode, &OUR_IFACE, PEER_MAC, 5353, to, payload)
    };
    build(&mut software, TxChecksum::Software);
    build(&mut offload, TxChecksum::Full);
    let ip = Ipv4Packet::new_unchecked(&offload[ETHERNET_HEADER_LEN..]);
    assert_eq!(ip.checksum(), 0, "left to the NIC");
    let udp = UdpPacket::new_unchecked(ip.payload());
    let udp_len = 8 + payload.len();
    assert_eq!(
        udp.checksum(),
        crate::wire::checksum::pseudo_header(OUR_IP, PEER_IP, IpProtocol::Udp, udp_len as u32)
    );
    // What the NIC does; then the frame is the software one, byte for byte.
    Ipv4Packet::new_unchecked(&mut offload[ETHERNET_HEADER_LEN..]).fill_checksum();
    let l4_at = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;
    let sum = !crate::wire::checksum::data(&offload[l4_at..l4_at + udp_len]);
    offload[l4_at + 6..l4_at + 8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(offload, software);
    check_reply_ip(&software[..frame_len], IpProtocol::Udp);
}

proptest! {
    /// The martian test decided at set-up agrees with the interface's own,
    /// for every prefix length and for addresses near the interesting ones.
    #[test]
    fn set_up_martians_agree_with_the_interface(ip in any::<u32>(), prefix_len in 0u8..=32, addr in any::<u32>(), near in 0usize..8) {
        let iface = Interface { mac: EthernetAddress([2, 0, 0, 0, 0, 1]), ip: Ipv4Addr::from(ip), prefix_len };
        let martians = Martians::new(&iface);
        let host_mask = !crate::config::prefix_mask(prefix_len);
        let candidates = [addr, ip, ip | host_mask, ip & !host_mask, u32::MAX, 0x7f00_0001, 0xe000_0001, 0xf000_0001];
        let addr = Ipv4Addr::from(candidates[near]);
        prop_assert_eq!(martians.is_source(addr), iface.is_martian_source(addr));
    }
}
