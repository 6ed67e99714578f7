//! Frame builders for tests, benchmarks and simulations. They allocate, so they
//! have no place on a fast path.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::config::{Action, DefaultAction, Protocol, Rule};
use crate::counters::WorkerCounters;
use crate::neighbour::NeighbourMailboxes;
use crate::port::heap::HeapBuf;
use crate::rules::RuleTable;
use crate::service::{Registry, WorkerInfo};
use crate::stack::{Egress, Interface, Stack, TcpSetup};
use crate::wire::{
    ChecksumMode, EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr,
    TcpFlags, TcpHeader, TcpOptions, TcpPacket, UdpPacket, UdpRepr, ETHERNET_HEADER_LEN,
    IPV4_HEADER_LEN, UDP_HEADER_LEN,
};

/// Both ends of a frame: link and network addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Source hardware address.
    pub src_mac: EthernetAddress,
    /// Destination hardware address.
    pub dst_mac: EthernetAddress,
    /// Source IPv4 address.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4 address.
    pub dst_ip: Ipv4Addr,
}

/// An Ethernet frame around an IPv4 datagram (TTL 64, checksum filled).
pub fn ipv4_frame(ends: Endpoints, protocol: IpProtocol, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0; ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + payload.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(ends.dst_mac);
    eth.set_src_addr(ends.src_mac);
    eth.set_ethertype(EtherType::Ipv4);
    let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
    ip_bytes[IPV4_HEADER_LEN..].copy_from_slice(payload);
    let repr = Ipv4Repr {
        src_addr: ends.src_ip,
        dst_addr: ends.dst_ip,
        next_header: protocol,
        payload_len: payload.len(),
        ttl: 64,
    };
    repr.emit(
        &mut Ipv4Packet::new_unchecked(ip_bytes),
        ChecksumMode::Software,
    );
    frame
}

/// An Ethernet frame holding one UDP datagram with a correct checksum.
pub fn udp_frame(ends: Endpoints, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0; UDP_HEADER_LEN + payload.len()];
    datagram[UDP_HEADER_LEN..].copy_from_slice(payload);
    UdpRepr { src_port, dst_port }.emit(
        &mut UdpPacket::new_unchecked(&mut datagram[..]),
        ends.src_ip,
        ends.dst_ip,
        payload.len(),
        ChecksumMode::Software,
    );
    ipv4_frame(ends, IpProtocol::Udp, &datagram)
}

/// A TCP header with the options a Linux SYN carries (MSS 1460, window
/// scale 7, SACK-permitted, timestamps) and a 64 KiB window.
pub fn tcp_header(src_port: u16, dst_port: u16, flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
    TcpHeader {
        src_port,
        dst_port,
        seq,
        ack,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 0)),
            ..TcpOptions::default()
        },
    }
}

/// An Ethernet frame holding one TCP segment with a correct checksum.
pub fn tcp_frame(ends: Endpoints, header: &TcpHeader, payload: &[u8]) -> Vec<u8> {
    let header_len = header.header_len();
    let mut segment = vec![0; header_len + payload.len()];
    header.emit(&mut segment);
    segment[header_len..].copy_from_slice(payload);
    TcpPacket::new_unchecked(&mut segment[..]).fill_checksum(ends.src_ip, ends.dst_ip);
    ipv4_frame(ends, IpProtocol::Tcp, &segment)
}

/// The TCP header and payload of a frame built by the stack, if it holds a
/// TCP segment with valid checksums.
pub fn parse_tcp_frame(frame: &[u8]) -> Option<(TcpHeader, Vec<u8>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if !ip.verify_checksum() || ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    if !tcp.verify_checksum(ip.src_addr(), ip.dst_addr()) {
        return None;
    }
    Some((TcpHeader::parse(&tcp).ok()?, tcp.payload().to_vec()))
}

/// A UDP rule for one port.
pub fn udp_rule(name: &str, port: u16, action: Action) -> Rule {
    Rule {
        name: name.into(),
        protocol: Protocol::Udp,
        ports: vec![port..=port],
        action,
    }
}

/// The stack of a lone worker (no peers to share neighbours with), with `rules`
/// compiled and fresh counters, which are returned beside it.
pub fn lone_stack(
    iface: Interface,
    rules: &[Rule],
    default: DefaultAction,
    record_flows: bool,
) -> (Stack, Arc<WorkerCounters>) {
    let tcp = TcpSetup {
        secret_key: [7; 32],
        ..TcpSetup::default()
    };
    lone_stack_with_tcp(iface, rules, default, record_flows, tcp)
}

/// As [`lone_stack`], with the TCP setup `tcp`.
pub fn lone_stack_with_tcp(
    iface: Interface,
    rules: &[Rule],
    default: DefaultAction,
    record_flows: bool,
    tcp: TcpSetup,
) -> (Stack, Arc<WorkerCounters>) {
    let counters = Arc::new(WorkerCounters::default());
    let stack = Stack::new(
        iface,
        Arc::new(RuleTable::compile(rules, default)),
        NeighbourMailboxes::new(1).cache_for(0),
        counters.clone(),
        record_flows,
        tcp,
    );
    (stack, counters)
}

/// The stack of worker 0 of `workers`, with no peers to share neighbours
/// with, running the services of `registry` (built for that worker against
/// [`lone_config`]), with `rules` compiled, the TCP setup `tcp` and fresh
/// counters, which are returned beside it. It records no flows; local ports
/// for active opens and a gateway, where a caller needs them, are set on the
/// stack afterwards.
pub fn stack_with_registry(
    iface: Interface,
    rules: &[Rule],
    default: DefaultAction,
    tcp: TcpSetup,
    registry: &Registry,
    workers: usize,
) -> (Stack, Arc<WorkerCounters>) {
    let config = lone_config();
    let counters = Arc::new(WorkerCounters::default());
    let services = registry.build(&WorkerInfo {
        id: 0,
        workers,
        config: &config,
        counters: &counters,
        rules: None,
    });
    let stack = Stack::with_services(
        iface,
        Arc::new(RuleTable::compile(rules, default)),
        NeighbourMailboxes::new(1).cache_for(0),
        counters.clone(),
        false,
        tcp,
        services,
    );
    (stack, counters)
}

/// A TCP rule for one port.
pub fn tcp_rule(name: &str, port: u16, action: Action) -> Rule {
    Rule {
        name: name.into(),
        protocol: Protocol::Tcp,
        ports: vec![port..=port],
        action,
    }
}

/// An [`Egress`] that keeps every frame the stack outputs, in heap buffers:
/// for tests and benchmarks without a port.
#[derive(Debug, Default)]
pub struct CollectEgress {
    /// The frames sent (originated or replies built in place), oldest first.
    pub frames: Vec<HeapBuf>,
    /// The frames handed to the kernel, oldest first.
    pub kernel: Vec<HeapBuf>,
    /// What [`Egress::tx_checksum`] reports (software by default; heap
    /// buffers ignore the offload request, so frames built with offload keep
    /// the fields as the NIC would get them).
    pub tx_checksum: crate::port::TxChecksum,
    /// Whether [`Egress::alloc_large`] gives buffers, as a queue with TSO
    /// does (the heap buffers ignore the segmentation request: the frame
    /// stays as the NIC would get it).
    pub large: bool,
    /// Buffers to hand out again before allocating (a benchmark gives the
    /// frames it read back, as a port's pool gets its mbufs back): with
    /// room for 2048 bytes, or 65,407 for [`Egress::alloc_large`].
    pub spare: Vec<HeapBuf>,
    /// Refuse [`Egress::alloc`] once this many frames were sent, as an
    /// exhausted pool does (`None`: never).
    pub frames_limit: Option<usize>,
}

impl CollectEgress {
    /// Keep `frame`'s buffer for a later allocation.
    pub fn recycle(&mut self, frame: HeapBuf) {
        self.spare.push(frame);
    }

    fn take_spare(&mut self, room: usize) -> Option<HeapBuf> {
        use crate::port::PacketBuf;
        let at = self.spare.iter().rposition(|b| b.capacity() == room)?;
        let mut buf = self.spare.swap_remove(at);
        buf.set_len(0);
        Some(buf)
    }
}

impl Egress for CollectEgress {
    type Buf = HeapBuf;

    fn alloc(&mut self) -> Option<HeapBuf> {
        if self
            .frames_limit
            .is_some_and(|limit| self.frames.len() >= limit)
        {
            return None;
        }
        Some(
            self.take_spare(2048)
                .unwrap_or_else(|| HeapBuf::with_room(2048)),
        )
    }

    fn send(&mut self, frame: HeapBuf) {
        self.frames.push(frame);
    }

    fn to_kernel(&mut self, frame: HeapBuf) {
        self.kernel.push(frame);
    }

    fn tx_checksum(&self) -> crate::port::TxChecksum {
        self.tx_checksum
    }

    fn alloc_large(&mut self) -> Option<HeapBuf> {
        if !self.large {
            return None;
        }
        Some(
            self.take_spare(65_407)
                .unwrap_or_else(|| HeapBuf::with_room(65_407)),
        )
    }
}

/// A small valid configuration (AF_PACKET on `veth-dut`, one worker on
/// core 1, 198.18.0.2/24), validated against cores 0-3 whatever this
/// machine has.
pub fn lone_config() -> crate::config::Config {
    let text = "[dataplane]\nbackend = \"af_packet\"\nworkers = [1]\n\n[af_packet]\n\
                interface = \"veth-dut\"\n\n[interface]\naddress = \"198.18.0.2/24\"\n";
    let cores = crate::config::CoreSet::parse_list("0-3").expect("a core list");
    crate::config::Config::parse_with(text, std::path::Path::new("lone.toml"), &cores)
        .expect("the lone config is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_parses_back() {
        let ends = Endpoints {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 18, 0, 2),
        };
        let frame = udp_frame(ends, 1234, 7, b"abc");
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.src_addr(), ends.src_mac);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.ttl(), 64);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum(ends.src_ip, ends.dst_ip));
        assert_eq!(
            (udp.src_port(), udp.dst_port(), udp.payload()),
            (1234, 7, &b"abc"[..])
        );
    }
}
