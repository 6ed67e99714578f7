//! One worker's protocol processing: Ethernet, ARP, IPv4, ICMP and UDP.
//!
//! Sans-IO: [`Stack::process`] takes a received frame and the time, and says
//! what becomes of the frame — transmitted (a reply built in place, in the same
//! buffer), handed to the kernel, or consumed. It never reads a clock, a socket
//! or a device. Every frame that is not answered or delivered is counted under a
//! [`DropReason`].
//!
//! Replies are built in place: an ICMP echo or a UDP echo swaps addresses and
//! ports in the request's buffer. Swapping source and destination leaves the
//! one's-complement sums of the IPv4 header and of the UDP pseudo-header
//! unchanged, so a UDP echo needs only an incremental (RFC 1624) update of the
//! IPv4 checksum for the new TTL.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::config::{prefix_mask, Action, Protocol};
use crate::counters::{DropReason, WorkerCounters};
use crate::neighbour::NeighbourCache;
use crate::port::{PacketBuf, RxChecksum};
use crate::rules::RuleTable;
use crate::service::{UdpAction, UdpServices};
use crate::wire::{
    checksum, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame,
    Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, UdpPacket, WireError, ETHERNET_HEADER_LEN,
};

/// The TTL of packets the stack sends (the Linux default).
pub const DEFAULT_TTL: u8 = 64;

/// What became of a received frame.
#[derive(Debug)]
pub enum Disposition<B> {
    /// A reply, built in the same buffer: transmit it.
    Transmit(B),
    /// Not the stack's: hand it to the kernel's exception port, unchanged.
    Kernel(B),
    /// Delivered to a service or dropped (and counted); the buffer is freed.
    Consumed,
}

/// The stack's identity on the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Our hardware address.
    pub mac: EthernetAddress,
    /// Our IPv4 address (shared with the kernel).
    pub ip: Ipv4Addr,
    /// The prefix length of our subnet.
    pub prefix_len: u8,
}

impl Interface {
    fn in_subnet(&self, addr: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix_len);
        u32::from(addr) & mask == u32::from(self.ip) & mask
    }

    fn is_subnet_broadcast(&self, addr: Ipv4Addr) -> bool {
        let host_mask = !prefix_mask(self.prefix_len);
        self.prefix_len < 31 && self.in_subnet(addr) && u32::from(addr) & host_mask == host_mask
    }
}

/// A flow as the stack saw it arrive: protocol, source and destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// IP protocol number.
    pub protocol: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port (ICMP: the echo identifier).
    pub src_port: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port (ICMP: 0).
    pub dst_port: u16,
}

/// Packets per flow seen by one worker: a test and debugging aid (`[debug]
/// flow_record`), off by default. It allocates per new flow, so it is not for
/// production traffic.
pub type FlowRecord = HashMap<FlowKey, u64>;

/// One worker's stack.
pub struct Stack {
    iface: Interface,
    rules: Arc<RuleTable>,
    neighbours: NeighbourCache,
    counters: Arc<WorkerCounters>,
    services: UdpServices,
    flow_record: Option<FlowRecord>,
}

fn drop_reason(error: WireError) -> DropReason {
    match error {
        WireError::Truncated => DropReason::Truncated,
        WireError::Version => DropReason::BadVersion,
        WireError::HeaderLength => DropReason::BadHeaderLength,
        WireError::TotalLength => DropReason::BadTotalLength,
        WireError::Checksum => DropReason::BadL4Checksum,
        _ => DropReason::Malformed,
    }
}

/// What the IPv4 layer learnt of a valid datagram for us.
#[derive(Clone, Copy)]
struct Ipv4Info {
    header_len: usize,
    total_len: usize,
    protocol: IpProtocol,
    src: Ipv4Addr,
    dst: Ipv4Addr,
}

impl Stack {
    /// A stack for one worker.
    pub fn new(
        iface: Interface,
        rules: Arc<RuleTable>,
        neighbours: NeighbourCache,
        counters: Arc<WorkerCounters>,
        record_flows: bool,
    ) -> Self {
        Stack {
            iface,
            rules,
            neighbours,
            counters,
            services: UdpServices::default(),
            flow_record: record_flows.then(FlowRecord::new),
        }
    }

    /// Switch to a new rule table; flows from now on follow it.
    pub fn set_rules(&mut self, rules: Arc<RuleTable>) {
        self.rules = rules;
    }

    /// The rule table in force.
    pub fn rules(&self) -> &Arc<RuleTable> {
        &self.rules
    }

    /// The neighbour cache of this worker.
    pub fn neighbours(&mut self) -> &mut NeighbourCache {
        &mut self.neighbours
    }

    /// The flows this worker processed, when recording is on.
    pub fn flow_record(&self) -> Option<&FlowRecord> {
        self.flow_record.as_ref()
    }

    /// The services of this worker.
    pub fn services(&self) -> &UdpServices {
        &self.services
    }

    #[inline]
    fn dropped<B>(&self, reason: DropReason) -> Disposition<B> {
        self.counters.count_drop(reason);
        Disposition::Consumed
    }

    /// Process one received frame at monotonic time `now_ns`.
    pub fn process<B: PacketBuf>(&mut self, mut pkt: B, now_ns: u64) -> Disposition<B> {
        self.counters.rx_packets.inc();
        self.counters.rx_bytes.add(pkt.len() as u64);
        let (ethertype, dst_mac) = match EthernetFrame::new_checked(pkt.data()) {
            Ok(frame) => (frame.ethertype(), frame.dst_addr()),
            Err(_) => return self.dropped(DropReason::Truncated),
        };
        if dst_mac != self.iface.mac && !dst_mac.is_broadcast() {
            if dst_mac.is_multicast() {
                return Disposition::Kernel(pkt);
            }
            return self.dropped(DropReason::NotForUs);
        }
        match ethertype {
            EtherType::Arp => self.process_arp(pkt, now_ns),
            EtherType::Ipv4 => {
                let (ip_checksum, l4_checksum) = (pkt.rx_ip_checksum(), pkt.rx_l4_checksum());
                let info = match self.check_ipv4(pkt.data(), ip_checksum) {
                    Ok(Some(info)) => info,
                    Ok(None) => return Disposition::Kernel(pkt),
                    Err(reason) => return self.dropped(reason),
                };
                // Drop Ethernet padding: replies are exactly as long as the datagram.
                let frame_len = ETHERNET_HEADER_LEN + info.total_len;
                if pkt.len() > frame_len {
                    pkt.set_len(frame_len);
                }
                self.process_ipv4(pkt, info, l4_checksum)
            }
            _ => Disposition::Kernel(pkt),
        }
    }

    fn process_arp<B: PacketBuf>(&mut self, mut pkt: B, now_ns: u64) -> Disposition<B> {
        let iface = self.iface;
        let mut frame = EthernetFrame::new_unchecked(pkt.data_mut());
        let repr = match ArpPacket::new_checked(frame.payload_mut())
            .and_then(|arp| ArpRepr::parse(&arp))
        {
            Ok(repr) => repr,
            Err(_) => return self.dropped(DropReason::Malformed),
        };
        let for_us = repr.target_protocol_addr == iface.ip;
        // RFC 826: learn the sender if it asks us, or refresh it if we know it.
        if repr.source_hardware_addr.is_unicast()
            && iface.in_subnet(repr.source_protocol_addr)
            && (for_us
                || self
                    .neighbours
                    .lookup(repr.source_protocol_addr, now_ns)
                    .is_some())
        {
            self.neighbours
                .learn(repr.source_protocol_addr, repr.source_hardware_addr, now_ns);
            self.counters.arp_learnt.inc();
        }
        match repr.operation {
            ArpOperation::Request if for_us => {
                let reply = ArpRepr {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: iface.mac,
                    source_protocol_addr: iface.ip,
                    target_hardware_addr: repr.source_hardware_addr,
                    target_protocol_addr: repr.source_protocol_addr,
                };
                reply.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
                frame.set_dst_addr(repr.source_hardware_addr);
                frame.set_src_addr(iface.mac);
                self.counters.arp_replies_sent.inc();
                Disposition::Transmit(pkt)
            }
            // Replies and requests for us that we did not answer are the kernel's
            // business too (it shares our address); others' requests are not ours.
            ArpOperation::Reply if for_us => Disposition::Kernel(pkt),
            _ => self.dropped(DropReason::NotForUs),
        }
    }

    /// Validate the IPv4 header. `Ok(None)`: valid, but for the kernel (broadcast
    /// or multicast destination).
    fn check_ipv4(
        &self,
        frame: &[u8],
        ip_checksum: RxChecksum,
    ) -> Result<Option<Ipv4Info>, DropReason> {
        let ip = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).map_err(drop_reason)?;
        let checksum_ok = match ip_checksum {
            RxChecksum::Good => true,
            RxChecksum::Bad => false,
            RxChecksum::Unknown | RxChecksum::Partial => ip.verify_checksum(),
        };
        if !checksum_ok {
            return Err(DropReason::BadIpChecksum);
        }
        if ip.is_fragment() {
            return Err(DropReason::Fragment);
        }
        let dst = ip.dst_addr();
        if dst != self.iface.ip {
            if dst.is_broadcast() || dst.is_multicast() || self.iface.is_subnet_broadcast(dst) {
                return Ok(None);
            }
            return Err(DropReason::NotForUs);
        }
        Ok(Some(Ipv4Info {
            header_len: usize::from(ip.header_len()),
            total_len: usize::from(ip.total_len()),
            protocol: ip.next_header(),
            src: ip.src_addr(),
            dst,
        }))
    }

    /// Count a packet of `key` in the flow record, when recording is on. Inlined
    /// so that, off, it costs one branch.
    #[inline(always)]
    fn record(&mut self, key: FlowKey) {
        if let Some(record) = &mut self.flow_record {
            *record.entry(key).or_insert(0) += 1;
        }
    }

    fn process_ipv4<B: PacketBuf>(
        &mut self,
        mut pkt: B,
        info: Ipv4Info,
        l4_checksum: RxChecksum,
    ) -> Disposition<B> {
        let l4_start = ETHERNET_HEADER_LEN + info.header_len;
        let l4_end = ETHERNET_HEADER_LEN + info.total_len;
        match info.protocol {
            IpProtocol::Icmp => {
                let data = pkt.data_mut();
                let Ok(mut icmp) = Icmpv4Packet::new_checked(&mut data[l4_start..l4_end]) else {
                    return self.dropped(DropReason::Malformed);
                };
                if !icmp.verify_checksum() {
                    return self.dropped(DropReason::BadL4Checksum);
                }
                if icmp.msg_type() != Icmpv4Message::EchoRequest {
                    return Disposition::Kernel(pkt);
                }
                let ident = icmp.echo_ident();
                icmp.set_msg_type(Icmpv4Message::EchoReply);
                icmp.fill_checksum();
                self.turn_around_ipv4(pkt.data_mut(), info);
                self.counters.icmp_echo_replies.inc();
                self.record(FlowKey {
                    protocol: 1,
                    src: info.src,
                    src_port: ident,
                    dst: info.dst,
                    dst_port: 0,
                });
                Disposition::Transmit(pkt)
            }
            IpProtocol::Udp => {
                let data = pkt.data_mut();
                // The IPv4 layer checked the lengths: a UDP header that does not
                // fit its datagram is malformed.
                let Ok(udp) = UdpPacket::new_checked(&data[l4_start..l4_end]) else {
                    return self.dropped(DropReason::Malformed);
                };
                let checksum_ok = match l4_checksum {
                    RxChecksum::Good | RxChecksum::Partial => true,
                    RxChecksum::Bad => false,
                    RxChecksum::Unknown => udp.verify_checksum(info.src, info.dst),
                };
                if !checksum_ok {
                    return self.dropped(DropReason::BadL4Checksum);
                }
                let (src_port, dst_port) = (udp.src_port(), udp.dst_port());
                self.record(FlowKey {
                    protocol: 17,
                    src: info.src,
                    src_port,
                    dst: info.dst,
                    dst_port,
                });
                let verdict = self.rules.classify(Protocol::Udp, dst_port);
                self.count_rule_hit(verdict.rule);
                let kind = match verdict.action {
                    Action::Service(kind) => kind,
                    Action::Kernel => return Disposition::Kernel(pkt),
                    Action::Drop => return self.dropped(DropReason::Rule),
                };
                self.counters.udp_rx.inc();
                match self.services.dispatch(kind, udp.payload()) {
                    Some(UdpAction::EchoBack) => {
                        let mut udp = UdpPacket::new_unchecked(&mut data[l4_start..l4_end]);
                        udp.set_src_port(dst_port);
                        udp.set_dst_port(src_port);
                        if l4_checksum == RxChecksum::Partial {
                            // A local sender left the checksum to offload: the
                            // peer gets a complete one.
                            udp.fill_checksum(info.dst, info.src);
                        }
                        self.turn_around_ipv4(data, info);
                        self.counters.udp_tx.inc();
                        Disposition::Transmit(pkt)
                    }
                    Some(UdpAction::Consume) => Disposition::Consumed,
                    None => self.dropped(DropReason::Rule),
                }
            }
            IpProtocol::Tcp => {
                let Some(ports) = pkt.data().get(l4_start..l4_start + 4) else {
                    return self.dropped(DropReason::Truncated);
                };
                let dst_port = u16::from_be_bytes([ports[2], ports[3]]);
                let verdict = self.rules.classify(Protocol::Tcp, dst_port);
                self.count_rule_hit(verdict.rule);
                match verdict.action {
                    Action::Drop => self.dropped(DropReason::Rule),
                    // The TCP engine is not in this build: TCP goes to the kernel
                    // (`Config::check_supported` refuses TCP service rules).
                    Action::Kernel | Action::Service(_) => Disposition::Kernel(pkt),
                }
            }
            _ => Disposition::Kernel(pkt),
        }
    }

    #[inline]
    fn count_rule_hit(&self, rule: Option<u8>) {
        match rule {
            Some(index) => self.counters.rule_hits[usize::from(index)].inc(),
            None => self.counters.default_hits.inc(),
        }
    }

    /// Turn a received frame around: swap MACs and IPv4 addresses, reset the TTL
    /// and patch the header checksum incrementally.
    fn turn_around_ipv4(&self, frame: &mut [u8], info: Ipv4Info) {
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        let peer_mac = eth.src_addr();
        eth.set_dst_addr(peer_mac);
        eth.set_src_addr(self.iface.mac);
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]);
        ip.set_src_addr(info.dst);
        ip.set_dst_addr(info.src);
        let protocol = u8::from(info.protocol);
        let old_word = u16::from_be_bytes([ip.ttl(), protocol]);
        let new_word = u16::from_be_bytes([DEFAULT_TTL, protocol]);
        ip.set_ttl(DEFAULT_TTL);
        ip.set_checksum(checksum::update(ip.checksum(), old_word, new_word));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DefaultAction, ServiceKind};
    use crate::port::heap::HeapBuf;
    use crate::testing::{ipv4_frame, lone_stack, udp_frame, udp_rule, Endpoints};
    use crate::wire::IPV4_HEADER_LEN;
    use proptest::prelude::*;

    const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
    const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn stack() -> (Stack, Arc<WorkerCounters>) {
        let rules = [
            udp_rule("echo", 7, Action::Service(ServiceKind::Echo)),
            udp_rule("discard", 9, Action::Service(ServiceKind::Discard)),
            udp_rule("sink", 5000, Action::Drop),
        ];
        let iface = Interface {
            mac: OUR_MAC,
            ip: OUR_IP,
            prefix_len: 24,
        };
        lone_stack(iface, &rules, DefaultAction::Kernel, true)
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
            let reply = transmitted(stack.process(HeapBuf::from_slice(&udp(40000, 7, payload)), 0));
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
        let reply = transmitted(stack.process(buf, 0));
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
        let reply = transmitted(stack.process(HeapBuf::from_slice(&frame), 0));
        assert_eq!(reply.len(), unpadded);
    }

    #[test]
    fn discard_drop_and_default_rules() {
        let (mut stack, counters) = stack();
        assert!(matches!(
            stack.process(HeapBuf::from_slice(&udp(1, 9, b"gone")), 0),
            Disposition::Consumed
        ));
        assert_eq!(stack.services().discard.bytes, 4);
        assert!(matches!(
            stack.process(HeapBuf::from_slice(&udp(1, 5000, b"sunk")), 0),
            Disposition::Consumed
        ));
        assert_eq!(counters.drops_of(DropReason::Rule), 1);
        let unclaimed = udp(1, 53, b"dns?");
        match stack.process(HeapBuf::from_slice(&unclaimed), 0) {
            Disposition::Kernel(buf) => assert_eq!(buf.data(), &unclaimed[..], "unchanged"),
            other => panic!("expected kernel, got {other:?}"),
        }
        assert_eq!(counters.default_hits.get(), 1);
        assert_eq!(counters.rule_hits[1].get(), 1);
        assert_eq!(counters.rule_hits[2].get(), 1);
    }

    #[test]
    fn icmp_echo_request_is_answered() {
        let (mut stack, counters) = stack();
        let data: Vec<u8> = (0..56).collect();
        let reply =
            transmitted(stack.process(HeapBuf::from_slice(&icmp_echo_request(77, &data)), 0));
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
        let reply =
            transmitted(stack.process(HeapBuf::from_slice(&arp(ArpOperation::Request, OUR_IP)), 5));
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
            stack.process(HeapBuf::from_slice(&arp(ArpOperation::Request, other)), 5),
            Disposition::Consumed
        ));
        assert_eq!(counters.drops_of(DropReason::NotForUs), 1);
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
                    stack.process(HeapBuf::from_slice(frame), 0),
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
            let accounted = match stack.process(HeapBuf::from_slice(&frame), 0) {
                Disposition::Transmit(_) | Disposition::Kernel(_) => true,
                Disposition::Consumed => counters.total_drops() == 1 || counters.udp_rx.get() == 1,
            };
            prop_assert!(accounted);
        }

        /// Valid UDP datagrams to the echo port come back intact, whatever
        /// their ports and payload.
        #[test]
        fn any_udp_echo_is_intact(
            src_port in 1u16..,
            payload in proptest::collection::vec(any::<u8>(), 0..1472),
        ) {
            let (mut stack, _) = stack();
            let reply = transmitted(stack.process(HeapBuf::from_slice(&udp(src_port, 7, &payload)), 0));
            let l4 = check_reply_ip(reply.data(), IpProtocol::Udp);
            let udp = UdpPacket::new_checked(&l4[..]).unwrap();
            prop_assert!(udp.verify_checksum(OUR_IP, PEER_IP));
            prop_assert_eq!(udp.dst_port(), src_port);
            prop_assert_eq!(udp.payload(), &payload[..]);
        }
    }
}
