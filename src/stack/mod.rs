//! One worker's protocol processing: Ethernet, ARP, IPv4, ICMP, UDP and TCP.
//!
//! Sans-IO: [`Stack::process`] takes a received frame and the time, and says
//! what becomes of the frame — transmitted (a reply built in place, in the same
//! buffer), handed to the kernel, or consumed. Frames the stack originates (TCP
//! segments) go to an [`Egress`], which lends empty buffers from the worker's
//! pool and queues frames for transmission; [`Stack::poll`] runs the TCP
//! timers. The stack never reads a clock, a socket or a device. Every frame
//! that is not answered or delivered is counted under a [`DropReason`].
//!
//! Replies are built in place: an ICMP echo or a UDP echo swaps addresses and
//! ports in the request's buffer. Swapping source and destination leaves the
//! one's-complement sums of the IPv4 header and of the UDP pseudo-header
//! unchanged, so a UDP echo needs only an incremental (RFC 1624) update of the
//! IPv4 checksum for the new TTL.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::app::{App, AppIo, ConnectError};
use crate::config::{prefix_mask, Action, Protocol, ServiceKind};
use crate::counters::{DropReason, WorkerCounters};
use crate::kernel::flows::{opens_a_flow, KernelFlows};
use crate::neighbour::NeighbourCache;
use crate::port::{PacketBuf, RxChecksum};
use crate::rss::PortPicker;
use crate::rules::RuleTable;
use crate::service::tcp::TcpServices;
use crate::service::{UdpAction, UdpServices};
use crate::tcp::cookie::Secrets;
use crate::tcp::table::{Input, Outgoing, TableConfig, TcpTable};
use crate::tcp::FourTuple;
use crate::wire::{
    checksum, ArpOperation, ArpPacket, ArpRepr, ChecksumMode, EtherType, EthernetAddress,
    EthernetFrame, Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet,
    Ipv4Repr, TcpHeader, TcpPacket, UdpPacket, WireError, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN,
};

/// The TTL of packets the stack sends (the Linux default).
pub const DEFAULT_TTL: u8 = 64;

/// Where the stack sends the frames it originates (TCP segments), as opposed
/// to replies it builds in place in a received buffer.
pub trait Egress {
    /// The buffer type of the port.
    type Buf: PacketBuf;
    /// An empty buffer from the worker's pool, or `None` if it is exhausted.
    fn alloc(&mut self) -> Option<Self::Buf>;
    /// Queue a finished frame for transmission.
    fn send(&mut self, frame: Self::Buf);
}

/// What a worker's TCP needs besides the stack's own parts.
#[derive(Clone, Debug)]
pub struct TcpSetup {
    /// Table limits and per-connection parameters.
    pub table: TableConfig,
    /// The process's key for SYN cookies and initial sequence numbers.
    pub secret_key: [u8; 32],
    /// The key and start (ms) of the TCP timestamp clock
    /// ([`Secrets::with_timestamp_clock`]): per boot, so that the clock goes
    /// on across restarts ([`boot_timestamp_clock`]).
    pub timestamp_clock: ([u8; 16], u32),
    /// The process's seed for the 4-tuple index.
    pub hasher: ahash::RandomState,
    /// The body the `http` service answers with.
    pub http_body: Arc<[u8]>,
    /// The `http` service's header timeout and idle timeout, in
    /// nanoseconds (0: none).
    pub http_timeouts_ns: (u64, u64),
}

impl Default for TcpSetup {
    fn default() -> Self {
        TcpSetup {
            table: TableConfig::default(),
            secret_key: Secrets::random_key(),
            timestamp_clock: boot_timestamp_clock(),
            hasher: ahash::RandomState::new(),
            http_body: Arc::from(&b"shardnet\n"[..]),
            http_timeouts_ns: (
                crate::service::http::DEFAULT_HEADER_TIMEOUT_MS * 1_000_000,
                crate::service::http::DEFAULT_IDLE_TIMEOUT_MS * 1_000_000,
            ),
        }
    }
}

/// The TCP timestamp clock of this boot: keyed with the kernel's `boot_id`,
/// starting at the uptime in milliseconds (`/proc/uptime`, which counts
/// suspended time too, so it never goes back). Where either cannot be read
/// (no `/proc`), a random key and 0, with a warning: the clock then starts
/// over with each run, and a peer may refuse our SYNs for a minute on
/// 4-tuples it still holds in TIME-WAIT.
pub fn boot_timestamp_clock() -> ([u8; 16], u32) {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
    let key = boot_id.and_then(|id| {
        let hex: Vec<u8> = id
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| (c as char).to_digit(16).unwrap_or(0) as u8)
            .collect();
        let mut key = [0u8; 16];
        (hex.len() == 32).then(|| {
            for (i, pair) in hex.chunks(2).enumerate() {
                key[i] = pair[0] << 4 | pair[1];
            }
            key
        })
    });
    let uptime_ms = std::fs::read_to_string("/proc/uptime").ok().and_then(|u| {
        let seconds: f64 = u.split_whitespace().next()?.parse().ok()?;
        Some((seconds * 1000.0) as u64 as u32)
    });
    match (key, uptime_ms) {
        (Some(key), Some(ms)) => (key, ms),
        _ => {
            tracing::warn!(
                "cannot read /proc/sys/kernel/random/boot_id or /proc/uptime: TCP timestamps \
                 start over with this run"
            );
            let random = Secrets::random_key();
            let mut key = [0u8; 16];
            key.copy_from_slice(&random[..16]);
            (key, 0)
        }
    }
}

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

    /// Whether `addr` cannot be the source of a datagram that reaches us
    /// from the link: a "martian" (RFC 1812 5.3.7), as Linux decides for a
    /// unicast datagram to a local address (`ip_route_input_slow` and
    /// `fib_validate_source`, with `route_localnet` and `accept_local` off):
    /// "this network" 0.0.0.0/8, loopback 127.0.0.0/8, multicast
    /// 224.0.0.0/4, the limited broadcast 255.255.255.255, our subnet's
    /// broadcast address, and our own address. Like Linux, the rest of
    /// 240.0.0.0/4 and the subnet's lowest address are not martians.
    fn is_martian_source(&self, addr: Ipv4Addr) -> bool {
        addr.octets()[0] == 0
            || addr.is_loopback()
            || addr.is_multicast()
            || addr.is_broadcast()
            || self.is_subnet_broadcast(addr)
            || addr == self.ip
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
    tcp: TcpTable,
    tcp_services: TcpServices,
    /// TCP flows the rules gave the kernel: they stay the kernel's across
    /// reloads.
    kernel_flows: KernelFlows,
    /// Whether kernel TCP flows are pinned: only with an exception port.
    kernel_port: bool,
    flow_record: Option<FlowRecord>,
    /// The client side, when an application runs in this worker.
    client: Option<Box<Client>>,
}

/// What the stack keeps for an embedded application ([`crate::app`]).
struct Client {
    /// Source ports whose replies come to this worker.
    ports: PortPicker,
    /// The default route, for destinations off our subnet.
    gateway: Option<Ipv4Addr>,
    /// UDP ports the app bound, one bit each.
    udp_bound: Box<[u64; 1024]>,
    /// Active opens asked for in this round, started after the app's poll.
    pending: Vec<(FourTuple, EthernetAddress)>,
    /// Connections the app woke in this round, offered to it as writable
    /// after its poll.
    wakes: Vec<FourTuple>,
    /// When an ARP request was last sent for an address (one per 100 ms).
    arp_sent: HashMap<Ipv4Addr, u64>,
}

/// Most ARP requests per address: one per this many nanoseconds.
const ARP_REQUEST_INTERVAL_NS: u64 = 100_000_000;

impl Client {
    fn udp_is_bound(&self, port: u16) -> bool {
        self.udp_bound[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }
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
        tcp: TcpSetup,
    ) -> Self {
        Stack {
            iface,
            rules,
            neighbours,
            counters,
            services: UdpServices::default(),
            kernel_flows: KernelFlows::new(tcp.hasher.clone()),
            kernel_port: true,
            tcp: TcpTable::new(
                tcp.table,
                Secrets::from_key(tcp.secret_key)
                    .with_timestamp_clock(tcp.timestamp_clock.0, tcp.timestamp_clock.1),
                tcp.hasher,
                0,
            ),
            tcp_services: {
                let mut services = TcpServices::new(tcp.http_body);
                let (header, idle) = tcp.http_timeouts_ns;
                services.http.set_timeouts(header, idle);
                services
            },
            flow_record: record_flows.then(FlowRecord::new),
            client: None,
        }
    }

    /// Run `app` in this worker: it opens connections and sends datagrams
    /// from source ports `ports` picks (so that replies come here), to
    /// destinations on our subnet or through `gateway`.
    pub fn set_app(&mut self, app: Box<dyn App>, ports: PortPicker, gateway: Option<Ipv4Addr>) {
        self.tcp_services.app = Some(app);
        self.client = Some(Box::new(Client {
            ports,
            gateway,
            udp_bound: Box::new([0; 1024]),
            pending: Vec::new(),
            wakes: Vec::new(),
            arp_sent: HashMap::new(),
        }));
    }

    /// The application running in this worker, if any.
    pub fn app(&self) -> Option<&dyn App> {
        self.tcp_services.app.as_deref()
    }

    /// Give the application its poll round at `now_ns`; the connections it
    /// opens send their SYNs to `egress`.
    pub fn poll_app<E: Egress>(&mut self, now_ns: u64, egress: &mut E) {
        let (Some(client), Some(mut app)) = (self.client.as_mut(), self.tcp_services.app.take())
        else {
            return;
        };
        let mut io = ClientIo {
            iface: &self.iface,
            client,
            tcp: &self.tcp,
            neighbours: &mut self.neighbours,
            counters: &self.counters,
            egress: &mut *egress,
            now_ns,
        };
        app.poll(now_ns, &mut io);
        self.tcp_services.app = Some(app);
        let Some(client) = self.client.as_mut() else {
            return;
        };
        if !client.wakes.is_empty() {
            let mut wakes = std::mem::take(&mut client.wakes);
            for tuple in wakes.drain(..) {
                let (tcp, services, counters, mut out) = self.tcp_parts(egress);
                tcp.wake(&tuple, services, counters, now_ns, &mut out);
            }
            if let Some(client) = self.client.as_mut() {
                client.wakes = wakes;
            }
        }
        let Some(client) = self.client.as_mut() else {
            return;
        };
        if client.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut client.pending);
        for (tuple, mac) in pending.drain(..) {
            let (tcp, services, counters, mut out) = self.tcp_parts(egress);
            if tcp
                .connect(
                    tuple,
                    mac,
                    ServiceKind::App,
                    services,
                    counters,
                    now_ns,
                    &mut out,
                )
                .is_err()
            {
                if let Some(app) = &mut services.app {
                    app.on_connect_error(
                        SocketAddrV4::new(tuple.remote_ip, tuple.remote_port),
                        ConnectError::TableFull,
                    );
                }
            }
        }
        if let Some(client) = self.client.as_mut() {
            client.pending = pending;
        }
    }

    /// Tell the application the worker stops (before connections are reset).
    pub fn stop_app(&mut self) {
        if let Some(app) = &mut self.tcp_services.app {
            app.on_stop();
        }
    }

    /// Whether there is a kernel exception port (the default: yes). With
    /// one, the kernel's TCP flows are pinned across reloads, and ARP
    /// replies to our address go to the kernel too (it may have asked).
    /// Without one, the kernel's share is dropped: a pin would only keep a
    /// retransmitted SYN away from a service a reload just gave its port
    /// to, and an ARP reply that answered our own request is ours alone.
    pub fn set_kernel_port(&mut self, present: bool) {
        self.kernel_port = present;
    }

    /// This worker's TCP table.
    pub fn tcp(&self) -> &TcpTable {
        &self.tcp
    }

    /// This worker's TCP services.
    pub fn tcp_services(&self) -> &TcpServices {
        &self.tcp_services
    }

    /// The TCP table, its services, the counters, and the output that
    /// frames the table's segments into `egress`: what every call into the
    /// table needs, borrowed apart.
    fn tcp_parts<'a, E: Egress>(
        &'a mut self,
        egress: &'a mut E,
    ) -> (
        &'a mut TcpTable,
        &'a mut TcpServices,
        &'a WorkerCounters,
        impl FnMut(Outgoing<'_>) + 'a,
    ) {
        let Stack {
            iface,
            counters,
            tcp,
            tcp_services,
            ..
        } = self;
        let iface = &*iface;
        let counters = &**counters;
        let out = move |o: Outgoing<'_>| emit_tcp(iface, counters, egress, o);
        (tcp, tcp_services, counters, out)
    }

    /// Run the TCP timers due at `now_ns`; segments they cause go to `egress`.
    pub fn poll<E: Egress>(&mut self, now_ns: u64, egress: &mut E) {
        let (tcp, services, counters, mut out) = self.tcp_parts(egress);
        tcp.poll(services, counters, now_ns, &mut out);
        let http = &services.http;
        counters.http_header_timeouts.set(http.header_timeouts);
        counters.http_idle_timeouts.set(http.idle_timeouts);
        counters.http_send_timeouts.set(http.send_timeouts);
    }

    /// Start an RX burst: until [`Stack::end_burst`], the TCP connections'
    /// answers to the burst's segments wait, and each connection then sends
    /// once (one ACK for all its segments, as for a GRO-merged segment).
    /// Without it, [`Stack::process`] answers every segment at once.
    pub fn begin_burst(&mut self) {
        self.tcp.begin_batch();
    }

    /// End the RX burst begun by [`Stack::begin_burst`]: send what the
    /// connections owe.
    pub fn end_burst<E: Egress>(&mut self, now_ns: u64, egress: &mut E) {
        let (tcp, services, counters, mut out) = self.tcp_parts(egress);
        tcp.end_batch(services, counters, now_ns, &mut out);
    }

    /// Reset every TCP connection (the worker is stopping).
    pub fn abort_connections<E: Egress>(&mut self, now_ns: u64, egress: &mut E) {
        let (tcp, services, counters, mut out) = self.tcp_parts(egress);
        tcp.abort_all(services, counters, now_ns, &mut out);
    }

    /// Switch to a new rule table; flows from now on follow it. Flows
    /// already under way keep going where they went: the stack's own TCP
    /// connections stay in its table, and the TCP flows the kernel took stay
    /// pinned to it (see [`crate::kernel::flows`]).
    pub fn set_rules(&mut self, rules: Arc<RuleTable>) {
        self.rules = rules;
    }

    /// The TCP flows pinned to the kernel.
    pub fn kernel_flows(&self) -> &KernelFlows {
        &self.kernel_flows
    }

    /// Forget the kernel flows expired at `now_ns`, and publish the table's
    /// size and untracked count. For the worker's housekeeping, about once a
    /// second: it costs one pass over the table when something may have
    /// expired, nothing otherwise. Returns how many flows were forgotten.
    pub fn expire_kernel_flows(&mut self, now_ns: u64) -> usize {
        let expired = self.kernel_flows.expire(now_ns);
        self.publish_kernel_flows();
        expired
    }

    /// Set the `kernel_flows` gauge and the `kernel_flows_untracked` counter
    /// from the table. Called whenever the table changes size (a flow pinned
    /// or refused, a stale entry dropped on lookup, a sweep): two stores, so
    /// the gauge is current without waiting for the next sweep.
    #[inline]
    fn publish_kernel_flows(&self) {
        self.counters
            .kernel_flows
            .set(self.kernel_flows.len() as u64);
        self.counters
            .kernel_flows_untracked
            .set(self.kernel_flows.untracked());
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
    pub fn process<B: PacketBuf, E: Egress<Buf = B>>(
        &mut self,
        mut pkt: B,
        now_ns: u64,
        egress: &mut E,
    ) -> Disposition<B> {
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
                self.process_ipv4(pkt, info, l4_checksum, now_ns, egress)
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
        let sender = repr.source_protocol_addr;
        if sender == iface.ip {
            // Another host claims our address (RFC 5227 calls it a
            // conflict): believing it would send our own traffic to it. Our
            // own frames (or the kernel's, same MAC) looped back are simply
            // not ours to handle.
            if repr.source_hardware_addr == iface.mac {
                return self.dropped(DropReason::NotForUs);
            }
            return self.dropped(DropReason::AddressConflict);
        }
        // 0.0.0.0 is an RFC 5227 probe: answered below, never learnt. Other
        // martian senders (broadcast, multicast, loopback) are neither.
        if !sender.is_unspecified() && iface.is_martian_source(sender) {
            return self.dropped(DropReason::MartianSource);
        }
        let for_us = repr.target_protocol_addr == iface.ip;
        // RFC 826: learn the sender if it asks us, or refresh it if we know it.
        let learn = repr.source_hardware_addr.is_unicast()
            && !sender.is_unspecified()
            && iface.in_subnet(sender)
            && (for_us
                || self
                    .neighbours
                    .lookup(repr.source_protocol_addr, now_ns)
                    .is_some());
        if learn {
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
            // Replies for us are the kernel's business too (it shares our
            // address and may have asked); without a kernel, one that
            // answered our own request was all ours. Others' requests are
            // not ours.
            ArpOperation::Reply if for_us && (self.kernel_port || !learn) => {
                Disposition::Kernel(pkt)
            }
            ArpOperation::Reply if for_us => Disposition::Consumed,
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
        // No service, ICMP echo or TCP reset ever answers a martian: a
        // reply would go to a broadcast, to ourselves, or to a victim whose
        // address was spoofed. Linux drops these too before any socket sees
        // them, so those the rules would give the kernel are dropped here
        // (and counted) as well. Broadcast and multicast destinations go to
        // the kernel above, which applies its own checks (and lets a DHCP
        // client's 0.0.0.0 through, as it must).
        let src = ip.src_addr();
        if self.iface.is_martian_source(src) {
            return Err(DropReason::MartianSource);
        }
        Ok(Some(Ipv4Info {
            header_len: usize::from(ip.header_len()),
            total_len: usize::from(ip.total_len()),
            protocol: ip.next_header(),
            src,
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

    fn process_ipv4<B: PacketBuf, E: Egress<Buf = B>>(
        &mut self,
        mut pkt: B,
        info: Ipv4Info,
        l4_checksum: RxChecksum,
        now_ns: u64,
        egress: &mut E,
    ) -> Disposition<B> {
        let l4_start = ETHERNET_HEADER_LEN + info.header_len;
        let l4_end = ETHERNET_HEADER_LEN + info.total_len;
        match info.protocol {
            IpProtocol::Icmp => {
                let data = pkt.data_mut();
                let Ok(icmp) = Icmpv4Packet::new_checked(&mut data[l4_start..l4_end]) else {
                    return self.dropped(DropReason::Malformed);
                };
                if !icmp.verify_checksum() {
                    return self.dropped(DropReason::BadL4Checksum);
                }
                if icmp.msg_type() == Icmpv4Message::DstUnreachable
                    && icmp.msg_code() == u8::from(Icmpv4DstUnreachable::FragRequired)
                    && self.path_mtu(&data[l4_start..l4_end], now_ns, egress)
                {
                    return Disposition::Consumed;
                }
                let data = pkt.data_mut();
                let mut icmp = Icmpv4Packet::new_unchecked(&mut data[l4_start..l4_end]);
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
                if let Some(client) = &self.client {
                    if client.udp_is_bound(dst_port) {
                        if let Some(app) = &mut self.tcp_services.app {
                            self.counters.udp_rx.inc();
                            app.on_datagram(
                                SocketAddrV4::new(info.src, src_port),
                                dst_port,
                                udp.payload(),
                            );
                            return Disposition::Consumed;
                        }
                    }
                }
                let verdict = self.rules.classify(Protocol::Udp, dst_port);
                self.count_rule_hit(verdict.rule);
                let kind = match verdict.action {
                    Action::Service(kind) => kind,
                    Action::Kernel => return Disposition::Kernel(pkt),
                    Action::Drop => return self.dropped(DropReason::Rule),
                };
                if UdpServices::answers(kind) {
                    if let Some(reason) = self.refuses_to_answer(src_port) {
                        return self.dropped(reason);
                    }
                }
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
            IpProtocol::Tcp => self.process_tcp(pkt, info, l4_checksum, now_ns, egress),
            _ => Disposition::Kernel(pkt),
        }
    }

    fn process_tcp<B: PacketBuf, E: Egress<Buf = B>>(
        &mut self,
        pkt: B,
        info: Ipv4Info,
        l4_checksum: RxChecksum,
        now_ns: u64,
        egress: &mut E,
    ) -> Disposition<B> {
        let l4_start = ETHERNET_HEADER_LEN + info.header_len;
        let l4_end = ETHERNET_HEADER_LEN + info.total_len;
        let data = pkt.data();
        let segment = match TcpPacket::new_checked(&data[l4_start..l4_end]) {
            Ok(segment) => segment,
            // A data offset below 5 words: a malformed TCP header
            // (`bad_header_length` is the IPv4 header's length field).
            Err(WireError::HeaderLength) => return self.dropped(DropReason::Malformed),
            Err(error) => return self.dropped(drop_reason(error)),
        };
        let checksum_ok = match l4_checksum {
            RxChecksum::Good | RxChecksum::Partial => true,
            RxChecksum::Bad => false,
            RxChecksum::Unknown => segment.verify_checksum(info.src, info.dst),
        };
        if !checksum_ok {
            return self.dropped(DropReason::BadL4Checksum);
        }
        let Ok(header) = TcpHeader::parse(&segment) else {
            return self.dropped(DropReason::Malformed);
        };
        let tuple = FourTuple {
            local_ip: info.dst,
            local_port: header.dst_port,
            remote_ip: info.src,
            remote_port: header.src_port,
        };
        self.record(FlowKey {
            protocol: 6,
            src: info.src,
            src_port: header.src_port,
            dst: info.dst,
            dst_port: header.dst_port,
        });
        let peer_mac = EthernetFrame::new_unchecked(data).src_addr();
        let payload = segment.payload();
        let handled = {
            let (tcp, services, counters, mut out) = self.tcp_parts(egress);
            tcp.input(
                &tuple, &header, payload, services, counters, now_ns, &mut out,
            )
        };
        if handled == Input::Handled {
            return Disposition::Consumed;
        }
        // A flow the kernel took stays the kernel's, whatever the rules say
        // now (its rule hit was counted when it was new).
        if !self.kernel_flows.is_empty() {
            let before = self.kernel_flows.len();
            if self.kernel_flows.track(&tuple, header.flags, now_ns) {
                return Disposition::Kernel(pkt);
            }
            if self.kernel_flows.len() != before {
                self.publish_kernel_flows();
            }
        }
        // A new flow: the rules decide.
        let verdict = self.rules.classify(Protocol::Tcp, header.dst_port);
        self.count_rule_hit(verdict.rule);
        match verdict.action {
            Action::Service(kind) if kind.supports(Protocol::Tcp) => {
                let (tcp, services, counters, mut out) = self.tcp_parts(egress);
                tcp.listen(
                    &tuple, peer_mac, &header, payload, kind, services, counters, now_ns, &mut out,
                );
                Disposition::Consumed
            }
            Action::Kernel => {
                // Its SYN pins it: the peer's SYN for the kernel's servers,
                // the peer's SYN-ACK for the kernel's own connections. Later
                // segments of flows not pinned (older than the process, or
                // refused by a full table) still go to the kernel by the rules.
                if self.kernel_port && opens_a_flow(header.flags) {
                    self.kernel_flows.pin(&tuple, now_ns);
                    self.publish_kernel_flows();
                }
                Disposition::Kernel(pkt)
            }
            Action::Service(_) | Action::Drop => self.dropped(DropReason::Rule),
        }
    }

    /// An ICMP "fragmentation needed" quoting one of our TCP segments: the
    /// connection lowers its MSS. `message` is the ICMP message, already
    /// checked (at least its 8-byte header). Returns whether a connection
    /// took it (if not, the message is the kernel's).
    fn path_mtu<E: Egress>(&mut self, message: &[u8], now_ns: u64, egress: &mut E) -> bool {
        // RFC 1191: the next-hop MTU is the low half of the second word.
        let mtu = u16::from_be_bytes([message[6], message[7]]);
        // The quote: an IPv4 header (IHL from its first byte) and at least
        // the first 8 bytes of the TCP header: ports and sequence number.
        let quote = &message[8..];
        let Some(&first) = quote.first() else {
            return false;
        };
        let ihl = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || ihl < IPV4_HEADER_LEN || quote.len() < ihl + 8 || quote[9] != 6 {
            return false;
        }
        let src = std::net::Ipv4Addr::new(quote[12], quote[13], quote[14], quote[15]);
        let dst = std::net::Ipv4Addr::new(quote[16], quote[17], quote[18], quote[19]);
        // Only a quote of one of our own segments is believed; the sender of
        // the ICMP message is a router on the path, not necessarily the peer.
        if src != self.iface.ip {
            return false;
        }
        let tcp = &quote[ihl..];
        let tuple = FourTuple {
            local_ip: src,
            local_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            remote_ip: dst,
            remote_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        };
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let (table, services, counters, mut out) = self.tcp_parts(egress);
        table.path_mtu(&tuple, seq, mtu, services, counters, now_ns, &mut out)
    }

    /// Why a service that answers (echo) must not answer a datagram from
    /// `src_port`, if it must not. Source port 0 means "no reply" (RFC 768).
    /// The rest is inetd's loop protection, both halves: OpenBSD's
    /// `dg_badinput` refuses ports below 1024, where the services that
    /// answer anything live (echo, daytime, chargen, time, DNS, NTP...);
    /// FreeBSD's `check_loop` refuses the ports of its own datagram
    /// services, which here are the ports our rules give to a service that
    /// answers, so that two shardnet nodes with the same rules on any port
    /// cannot be made to echo to each other forever. (OpenBSD also refuses
    /// 2049, NFS; not here: client port ranges that start at 1024, as
    /// `shardnet-load`'s does, would lose their echoes from it.)
    fn refuses_to_answer(&self, src_port: u16) -> Option<DropReason> {
        if src_port == 0 {
            return Some(DropReason::SourcePortZero);
        }
        let service_port = src_port < 1024
            || matches!(
                self.rules.classify(Protocol::Udp, src_port).action,
                Action::Service(kind) if UdpServices::answers(kind)
            );
        service_port.then_some(DropReason::LoopProtection)
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

/// The application's handle on the stack during [`Stack::poll_app`].
struct ClientIo<'a, E: Egress> {
    iface: &'a Interface,
    client: &'a mut Client,
    tcp: &'a TcpTable,
    neighbours: &'a mut NeighbourCache,
    counters: &'a WorkerCounters,
    egress: &'a mut E,
    now_ns: u64,
}

impl<E: Egress> ClientIo<'_, E> {
    /// The MAC of the next hop towards `ip`; without it, an ARP request
    /// (at most one per address per 100 ms) and `Resolving`.
    fn next_hop_mac(&mut self, ip: Ipv4Addr) -> Result<EthernetAddress, ConnectError> {
        let hop = if self.iface.in_subnet(ip) {
            ip
        } else {
            self.client.gateway.ok_or(ConnectError::NoRoute(ip))?
        };
        if let Some(mac) = self.neighbours.lookup(hop, self.now_ns) {
            return Ok(mac);
        }
        let last = self.client.arp_sent.get(&hop).copied();
        if last.is_none_or(|at| self.now_ns.saturating_sub(at) >= ARP_REQUEST_INTERVAL_NS) {
            self.client.arp_sent.insert(hop, self.now_ns);
            self.send_arp_request(hop);
        }
        Err(ConnectError::Resolving(hop))
    }

    fn send_arp_request(&mut self, target: Ipv4Addr) {
        let Some(mut buf) = self.egress.alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        };
        // 14 + 28 bytes, padded to the 60-byte minimum.
        if !buf.set_len(60) {
            self.counters.count_drop(DropReason::NoBuffer);
            return;
        }
        let frame = buf.data_mut();
        frame.fill(0);
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(EthernetAddress::BROADCAST);
        eth.set_src_addr(self.iface.mac);
        eth.set_ethertype(EtherType::Arp);
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: self.iface.mac,
            source_protocol_addr: self.iface.ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        }
        .emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
        self.egress.send(buf);
    }
}

impl<E: Egress> AppIo for ClientIo<'_, E> {
    fn local_ip(&self) -> Ipv4Addr {
        self.iface.ip
    }

    fn connect(&mut self, remote: SocketAddrV4) -> Result<u16, ConnectError> {
        let mac = self.next_hop_mac(*remote.ip())?;
        let local_ip = self.iface.ip;
        let (tcp, pending) = (self.tcp, &self.client.pending);
        let port = self.client.ports.pick(
            u8::from(IpProtocol::Tcp),
            local_ip,
            *remote.ip(),
            remote.port(),
            |port| {
                let tuple = FourTuple {
                    local_ip,
                    local_port: port,
                    remote_ip: *remote.ip(),
                    remote_port: remote.port(),
                };
                tcp.state_of(&tuple).is_some() || pending.iter().any(|(t, _)| *t == tuple)
            },
        )?;
        let tuple = FourTuple {
            local_ip,
            local_port: port,
            remote_ip: *remote.ip(),
            remote_port: remote.port(),
        };
        self.client.pending.push((tuple, mac));
        Ok(port)
    }

    fn wake(&mut self, local_port: u16, remote: SocketAddrV4) {
        self.client.wakes.push(FourTuple {
            local_ip: self.iface.ip,
            local_port,
            remote_ip: *remote.ip(),
            remote_port: remote.port(),
        });
    }

    fn bind_udp(&mut self, remote: SocketAddrV4) -> Result<u16, ConnectError> {
        let client = &mut *self.client;
        let bound = &client.udp_bound;
        let port = client.ports.pick(
            u8::from(IpProtocol::Udp),
            self.iface.ip,
            *remote.ip(),
            remote.port(),
            |port| bound[usize::from(port / 64)] & (1 << (port % 64)) != 0,
        )?;
        client.udp_bound[usize::from(port / 64)] |= 1 << (port % 64);
        Ok(port)
    }

    fn send_udp(
        &mut self,
        local_port: u16,
        remote: SocketAddrV4,
        payload: &[u8],
    ) -> Result<(), ConnectError> {
        let mac = self.next_hop_mac(*remote.ip())?;
        let udp_len = 8 + payload.len();
        let frame_len = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + udp_len;
        let Some(mut buf) = self.egress.alloc() else {
            self.counters.count_drop(DropReason::NoBuffer);
            return Err(ConnectError::NoBuffer);
        };
        if udp_len > usize::from(u16::MAX) - IPV4_HEADER_LEN || !buf.set_len(frame_len.max(60)) {
            return Err(ConnectError::TooLong(payload.len()));
        }
        let frame = buf.data_mut();
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(mac);
        eth.set_src_addr(self.iface.mac);
        eth.set_ethertype(EtherType::Ipv4);
        let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
        Ipv4Repr {
            src_addr: self.iface.ip,
            dst_addr: *remote.ip(),
            next_header: IpProtocol::Udp,
            payload_len: udp_len,
            ttl: DEFAULT_TTL,
        }
        .emit(
            &mut Ipv4Packet::new_unchecked(&mut *ip_bytes),
            ChecksumMode::Software,
        );
        let udp_bytes = &mut ip_bytes[IPV4_HEADER_LEN..IPV4_HEADER_LEN + udp_len];
        let mut udp = UdpPacket::new_unchecked(&mut *udp_bytes);
        udp.set_src_port(local_port);
        udp.set_dst_port(remote.port());
        udp.set_len(udp_len as u16);
        udp.payload_mut()[..payload.len()].copy_from_slice(payload);
        udp.fill_checksum(self.iface.ip, *remote.ip());
        // Frames shorter than the Ethernet minimum carry zero padding.
        frame[frame_len..].fill(0);
        self.counters.udp_tx.inc();
        self.egress.send(buf);
        Ok(())
    }
}

/// Frame a TCP segment and hand it to `egress`: Ethernet to the peer's MAC,
/// IPv4 with DF set (path MTU discovery), the TCP header and payload, and
/// the checksums in software.
fn emit_tcp<E: Egress>(
    iface: &Interface,
    counters: &WorkerCounters,
    egress: &mut E,
    segment: Outgoing<'_>,
) {
    let Some(mut buf) = egress.alloc() else {
        counters.count_drop(DropReason::NoBuffer);
        return;
    };
    let header_len = segment.header.header_len();
    let (first, second) = segment.payload;
    let tcp_len = header_len + first.len() + second.len();
    let frame_len = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + tcp_len;
    if !buf.set_len(frame_len) {
        counters.count_drop(DropReason::NoBuffer);
        return;
    }
    let frame = buf.data_mut();
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst_addr(segment.peer_mac);
    eth.set_src_addr(iface.mac);
    eth.set_ethertype(EtherType::Ipv4);
    let ip_repr = Ipv4Repr {
        src_addr: segment.tuple.local_ip,
        dst_addr: segment.tuple.remote_ip,
        next_header: IpProtocol::Tcp,
        payload_len: tcp_len,
        ttl: DEFAULT_TTL,
    };
    let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
    ip_repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut *ip_bytes),
        ChecksumMode::Software,
    );
    let tcp_bytes = &mut ip_bytes[IPV4_HEADER_LEN..];
    segment.header.emit(tcp_bytes);
    tcp_bytes[header_len..header_len + first.len()].copy_from_slice(first);
    tcp_bytes[header_len + first.len()..].copy_from_slice(second);
    TcpPacket::new_unchecked(&mut *tcp_bytes)
        .fill_checksum(segment.tuple.local_ip, segment.tuple.remote_ip);
    egress.send(buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DefaultAction, ServiceKind};
    use crate::port::heap::HeapBuf;
    use crate::testing::{ipv4_frame, lone_stack, udp_frame, udp_rule, CollectEgress, Endpoints};
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
            let reply = transmitted(stack.process(
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
        let reply = transmitted(stack.process(buf, 0, &mut CollectEgress::default()));
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
        let reply = transmitted(stack.process(
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
            stack.process(
                HeapBuf::from_slice(&udp(1, 9, b"gone")),
                0,
                &mut CollectEgress::default()
            ),
            Disposition::Consumed
        ));
        assert_eq!(stack.services().discard.bytes, 4);
        assert!(matches!(
            stack.process(
                HeapBuf::from_slice(&udp(1, 5000, b"sunk")),
                0,
                &mut CollectEgress::default()
            ),
            Disposition::Consumed
        ));
        assert_eq!(counters.drops_of(DropReason::Rule), 1);
        let unclaimed = udp(1, 53, b"dns?");
        match stack.process(
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

    #[test]
    fn icmp_echo_request_is_answered() {
        let (mut stack, counters) = stack();
        let data: Vec<u8> = (0..56).collect();
        let reply = transmitted(stack.process(
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
        let reply = transmitted(stack.process(
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
            stack.process(
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
        let d = stack.process(reply(), 5, &mut CollectEgress::default());
        assert!(matches!(d, Disposition::Kernel(_)), "{d:?}");
        assert_eq!(stack.neighbours().lookup(PEER_IP, 10), Some(PEER_MAC));
        // Without a kernel port it answered our own request: ours alone,
        // learnt, and no drop to count.
        stack.set_kernel_port(false);
        let d = stack.process(reply(), 6, &mut CollectEgress::default());
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
                    stack.process(HeapBuf::from_slice(frame), 0, &mut CollectEgress::default()),
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
        let d = stack.process(HeapBuf::from_slice(frame), 0, &mut egress);
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
            let d = stack.process(
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
            udp_rule("echo", 7, Action::Service(ServiceKind::Echo)),
            udp_rule("discard", 9, Action::Service(ServiceKind::Discard)),
            udp_rule("sink", 5000, Action::Drop),
        ];
        rules.push(crate::config::Rule {
            ports: vec![7000..=7010],
            ..udp_rule("echo-high", 7000, Action::Service(ServiceKind::Echo))
        });
        let iface = Interface {
            mac: OUR_MAC,
            ip: OUR_IP,
            prefix_len: 24,
        };
        let (mut stack, counters) = lone_stack(iface, &rules, DefaultAction::Kernel, false);
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
        assert_eq!(stack.services().echo.bytes, 0);
        // Ports that answer nothing here, and ordinary client ports, get
        // their echo.
        for src_port in [1024, 2049, 5000, 6999, 7011, 40000, 65535] {
            transmitted(stack.process(
                HeapBuf::from_slice(&udp(src_port, 7, b"x")),
                0,
                &mut CollectEgress::default(),
            ));
        }
        assert_eq!(counters.udp_tx.get(), 7);
        // A service that never answers cannot loop: discard takes all.
        let d = stack.process(
            HeapBuf::from_slice(&udp(0, 9, b"x")),
            0,
            &mut CollectEgress::default(),
        );
        assert!(matches!(d, Disposition::Consumed), "{d:?}");
        assert_eq!(stack.services().discard.bytes, 1);
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
        transmitted(stack.process(
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
            let accounted = match stack.process(HeapBuf::from_slice(&frame), 0, &mut CollectEgress::default()) {
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
            let reply = transmitted(stack.process(HeapBuf::from_slice(&udp(src_port, 7, &payload)), 0, &mut CollectEgress::default()));
            let l4 = check_reply_ip(reply.data(), IpProtocol::Udp);
            let udp = UdpPacket::new_checked(&l4[..]).unwrap();
            prop_assert!(udp.verify_checksum(OUR_IP, PEER_IP));
            prop_assert_eq!(udp.dst_port(), src_port);
            prop_assert_eq!(udp.payload(), &payload[..]);
        }
    }

    mod tcp {
        use super::*;
        use crate::tcp::table::TableConfig;
        use crate::testing::{parse_tcp_frame, tcp_frame, tcp_rule};
        use crate::wire::{TcpFlags, TcpOptions};

        fn tcp_stack() -> (Stack, Arc<WorkerCounters>) {
            let rules = [
                tcp_rule("web", 80, Action::Service(ServiceKind::Http)),
                tcp_rule("echo", 7, Action::Service(ServiceKind::Echo)),
                tcp_rule("blocked", 23, Action::Drop),
            ];
            let iface = Interface {
                mac: OUR_MAC,
                ip: OUR_IP,
                prefix_len: 24,
            };
            lone_stack(iface, &rules, DefaultAction::Kernel, false)
        }

        fn segment(port: u16, flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
            TcpHeader {
                src_port: 40000,
                dst_port: port,
                seq,
                ack,
                flags,
                window: 65535,
                urgent: 0,
                options: TcpOptions::default(),
            }
        }

        fn send(stack: &mut Stack, header: TcpHeader, payload: &[u8]) -> Vec<(TcpHeader, Vec<u8>)> {
            let mut egress = CollectEgress::default();
            let frame = tcp_frame(ENDS, &header, payload);
            let d = stack.process(HeapBuf::from_slice(&frame), 0, &mut egress);
            assert!(matches!(d, Disposition::Consumed), "{d:?}");
            egress
                .frames
                .iter()
                .map(|f| {
                    check_reply_ip(f.data(), IpProtocol::Tcp);
                    parse_tcp_frame(f.data()).expect("a valid TCP frame")
                })
                .collect()
        }

        /// A stack whose only rule sends TCP port 8080 to `action`.
        fn port_8080(action: Action) -> (Stack, Arc<WorkerCounters>) {
            let iface = Interface {
                mac: OUR_MAC,
                ip: OUR_IP,
                prefix_len: 24,
            };
            lone_stack(
                iface,
                &[tcp_rule("alt", 8080, action)],
                DefaultAction::Drop,
                false,
            )
        }

        /// Reload: port 8080 now goes to `action`.
        fn reload_8080(stack: &mut Stack, action: Action) {
            let rules = [tcp_rule("alt", 8080, action)];
            stack.set_rules(Arc::new(RuleTable::compile(&rules, DefaultAction::Drop)));
        }

        /// A segment from the peer's `src_port` to 8080.
        fn from(src_port: u16, flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
            TcpHeader {
                src_port,
                ..segment(8080, flags, seq, ack)
            }
        }

        fn tuple_of(src_port: u16) -> FourTuple {
            FourTuple {
                local_ip: OUR_IP,
                local_port: 8080,
                remote_ip: PEER_IP,
                remote_port: src_port,
            }
        }

        /// Process one segment at `now`: what became of it, and the segments
        /// the stack sent.
        fn deliver(
            stack: &mut Stack,
            header: TcpHeader,
            payload: &[u8],
            now: u64,
        ) -> (Disposition<HeapBuf>, Vec<(TcpHeader, Vec<u8>)>) {
            let mut egress = CollectEgress::default();
            let frame = tcp_frame(ENDS, &header, payload);
            let d = stack.process(HeapBuf::from_slice(&frame), now, &mut egress);
            let sent = egress
                .frames
                .iter()
                .map(|f| parse_tcp_frame(f.data()).expect("a valid TCP frame"))
                .collect();
            (d, sent)
        }

        /// The segment goes to the kernel byte for byte, and the stack sends
        /// nothing.
        fn to_kernel(stack: &mut Stack, header: TcpHeader, payload: &[u8], now: u64) {
            let frame = tcp_frame(ENDS, &header, payload);
            let mut egress = CollectEgress::default();
            match stack.process(HeapBuf::from_slice(&frame), now, &mut egress) {
                Disposition::Kernel(buf) => assert_eq!(buf.data(), &frame[..], "unchanged"),
                other => panic!(
                    "{} {header:?}: expected the kernel, got {other:?}",
                    header.flags
                ),
            }
            assert!(egress.frames.is_empty(), "the stack sent nothing");
        }

        const SECOND: u64 = 1_000_000_000;

        #[test]
        fn a_kernel_flow_survives_a_reload_that_gives_its_port_to_a_service() {
            use crate::kernel::flows::{FlowState, RESET_TIMEOUT_NS};
            let (mut stack, counters) = port_8080(Action::Kernel);
            // A segment of a flow the kernel had before: the kernel's, not pinned.
            to_kernel(&mut stack, from(40009, TcpFlags::ACK, 1, 1), b"", 0);
            assert!(stack.kernel_flows().is_empty());
            // The kernel's new flow: its SYN pins it.
            to_kernel(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", 0);
            assert_eq!(stack.kernel_flows().len(), 1);
            assert_eq!(counters.kernel_flows.get(), 1, "the gauge follows inserts");
            // The handshake completes (the kernel's SYN-ACK goes out its own way).
            to_kernel(
                &mut stack,
                from(40000, TcpFlags::ACK, 1001, 5001),
                b"",
                SECOND,
            );
            let pinned = stack.kernel_flows().get(&tuple_of(40000)).unwrap();
            assert_eq!(pinned.state, FlowState::Established);
            assert_eq!(
                counters.rule_hits[0].get(),
                2,
                "the SYN and the old flow's ACK"
            );

            // The port goes to http.
            reload_8080(&mut stack, Action::Service(ServiceKind::Http));
            let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            let flags = TcpFlags::ACK | TcpFlags::PSH;
            to_kernel(
                &mut stack,
                from(40000, flags, 1001, 5001),
                request,
                2 * SECOND,
            );
            to_kernel(
                &mut stack,
                from(40000, TcpFlags::ACK, 1001, 5500),
                b"",
                2 * SECOND,
            );
            assert_eq!(counters.tcp_resets_tx.get(), 0);
            assert_eq!(stack.tcp().len(), 0);
            assert_eq!(counters.rule_hits[0].get(), 2, "no hits for a pinned flow");

            // A new flow follows the new rules: the http listener answers.
            let (d, sent) = deliver(
                &mut stack,
                from(40001, TcpFlags::SYN, 7000, 0),
                b"",
                2 * SECOND,
            );
            assert!(matches!(d, Disposition::Consumed), "{d:?}");
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].0.flags, TcpFlags::SYN | TcpFlags::ACK);
            assert_eq!((sent[0].0.dst_port, sent[0].0.ack), (40001, 7001));
            assert_eq!(stack.tcp().half_open(), 1);
            assert_eq!(
                stack.kernel_flows().len(),
                1,
                "a service's flow is not pinned"
            );

            // Without a pin, the same kind of segment draws the listener's RST:
            // the pin is what keeps the kernel's connection alive.
            let (d, sent) = deliver(
                &mut stack,
                from(40002, TcpFlags::ACK, 1001, 5500),
                b"",
                2 * SECOND,
            );
            assert!(matches!(d, Disposition::Consumed), "{d:?}");
            assert_eq!(sent.len(), 1);
            assert_eq!((sent[0].0.flags, sent[0].0.seq), (TcpFlags::RST, 5500));
            assert_eq!(counters.drops_of(DropReason::NoConnection), 1);

            // The peer resets the kernel's connection: segments still in
            // flight go to the kernel for a few seconds, then the pin is gone.
            let seq = 1001 + request.len() as u32;
            let reset_at = 3 * SECOND;
            to_kernel(
                &mut stack,
                from(40000, TcpFlags::RST, seq, 0),
                b"",
                reset_at,
            );
            let late = reset_at + RESET_TIMEOUT_NS - 1;
            to_kernel(&mut stack, from(40000, TcpFlags::ACK, seq, 5500), b"", late);
            assert_eq!(stack.expire_kernel_flows(late), 0);
            assert_eq!(stack.expire_kernel_flows(reset_at + RESET_TIMEOUT_NS), 1);
            assert!(stack.kernel_flows().is_empty());
            assert_eq!(counters.kernel_flows.get(), 0, "the sweep sets the gauge");
            assert_eq!(counters.kernel_flows_untracked.get(), 0);
            let (_, sent) = deliver(
                &mut stack,
                from(40000, TcpFlags::ACK, seq, 5500),
                b"",
                reset_at + RESET_TIMEOUT_NS,
            );
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].0.flags, TcpFlags::RST);
        }

        #[test]
        fn the_kernels_own_connection_is_pinned_by_the_peers_syn_ack() {
            // The kernel connected from local port 8080 to the peer's 443:
            // the peer's SYN-ACK is the first segment the stack sees.
            let (mut stack, counters) = port_8080(Action::Kernel);
            let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
            to_kernel(&mut stack, from(443, syn_ack, 9000, 1001), b"", 0);
            assert_eq!(stack.kernel_flows().len(), 1);
            to_kernel(
                &mut stack,
                from(443, TcpFlags::ACK, 9001, 1001),
                b"",
                SECOND,
            );
            reload_8080(&mut stack, Action::Service(ServiceKind::Http));
            let data = TcpFlags::ACK | TcpFlags::PSH;
            to_kernel(
                &mut stack,
                from(443, data, 9001, 1001),
                b"reply",
                2 * SECOND,
            );
            assert_eq!(counters.tcp_resets_tx.get(), 0);
        }

        #[test]
        fn without_an_exception_port_nothing_is_pinned() {
            let (mut stack, _counters) = port_8080(Action::Kernel);
            stack.set_kernel_port(false);
            to_kernel(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", 0);
            assert!(stack.kernel_flows().is_empty());
            // After a reload the retransmitted SYN reaches the new service.
            reload_8080(&mut stack, Action::Service(ServiceKind::Http));
            let (d, sent) = deliver(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", SECOND);
            assert!(matches!(d, Disposition::Consumed), "{d:?}");
            assert_eq!(sent[0].0.flags, TcpFlags::SYN | TcpFlags::ACK);
        }

        #[test]
        fn a_new_syn_on_a_closed_pinned_tuple_follows_the_rules() {
            let (mut stack, counters) = port_8080(Action::Kernel);
            to_kernel(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", 0);
            to_kernel(&mut stack, from(40000, TcpFlags::ACK, 1001, 1), b"", 0);
            let fin = TcpFlags::FIN | TcpFlags::ACK;
            to_kernel(&mut stack, from(40000, fin, 1001, 1), b"", SECOND);
            reload_8080(&mut stack, Action::Service(ServiceKind::Echo));
            // The last ACK of the closing connection is still the kernel's...
            to_kernel(&mut stack, from(40000, TcpFlags::ACK, 1002, 2), b"", SECOND);
            // ...but a new incarnation of the 4-tuple is a new flow, the echo
            // service's now, and the stale pin is dropped.
            let (d, sent) = deliver(
                &mut stack,
                from(40000, TcpFlags::SYN, 9000, 0),
                b"",
                2 * SECOND,
            );
            assert!(matches!(d, Disposition::Consumed), "{d:?}");
            assert_eq!(sent[0].0.flags, TcpFlags::SYN | TcpFlags::ACK);
            assert!(stack.kernel_flows().is_empty());
            assert_eq!(counters.kernel_flows.get(), 0);
        }

        #[test]
        fn a_service_connection_survives_a_reload_that_gives_its_port_to_the_kernel() {
            let (mut stack, counters) = port_8080(Action::Service(ServiceKind::Http));
            let (_, sent) = deliver(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", 0);
            let our = sent[0].0.seq.wrapping_add(1);
            let (_, sent) = deliver(&mut stack, from(40000, TcpFlags::ACK, 1001, our), b"", 0);
            assert!(sent.is_empty());
            assert_eq!(counters.tcp_opened_passive.get(), 1);

            reload_8080(&mut stack, Action::Kernel);
            let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            let flags = TcpFlags::ACK | TcpFlags::PSH;
            let (d, sent) = deliver(&mut stack, from(40000, flags, 1001, our), request, SECOND);
            assert!(matches!(d, Disposition::Consumed), "{d:?}");
            assert_eq!(sent.len(), 1);
            assert!(sent[0].1.starts_with(b"HTTP/1.1 200 OK\r\n"));
            assert!(
                stack.kernel_flows().is_empty(),
                "the stack's flow is not pinned"
            );
            assert_eq!(
                counters.rule_hits[0].get(),
                1,
                "only the SYN was classified"
            );
            // A new flow is the kernel's, and pinned.
            to_kernel(&mut stack, from(40001, TcpFlags::SYN, 5000, 0), b"", SECOND);
            assert!(stack.kernel_flows().get(&tuple_of(40001)).is_some());
            assert_eq!(stack.tcp().len(), 1);
        }

        #[test]
        fn http_over_a_handshake_in_frames() {
            let (mut stack, counters) = tcp_stack();
            let mut syn = segment(80, TcpFlags::SYN, 1000, 0);
            syn.options.mss = Some(1460);
            let out = send(&mut stack, syn, b"");
            assert_eq!(out.len(), 1);
            let (syn_ack, _) = out[0];
            assert_eq!(syn_ack.flags, TcpFlags::SYN | TcpFlags::ACK);
            assert_eq!(syn_ack.ack, 1001);
            assert_eq!((syn_ack.src_port, syn_ack.dst_port), (80, 40000));
            let our = syn_ack.seq.wrapping_add(1);
            let ack = segment(80, TcpFlags::ACK, 1001, our);
            assert!(send(&mut stack, ack, b"").is_empty());
            assert_eq!(counters.tcp_opened_passive.get(), 1);
            // The SYN-ACK was timed: its ACK is one round-trip sample.
            let samples: u64 = counters.tcp_rtt.iter().map(|c| c.get()).sum();
            assert_eq!(samples, 1);
            let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            let out = send(
                &mut stack,
                segment(80, TcpFlags::ACK | TcpFlags::PSH, 1001, our),
                request,
            );
            assert_eq!(out.len(), 1, "the response carries the ACK");
            let (header, body) = &out[0];
            assert_eq!(header.ack, 1001 + request.len() as u32);
            assert!(
                body.starts_with(b"HTTP/1.1 200 OK\r\n"),
                "{:?}",
                String::from_utf8_lossy(body)
            );
            assert!(body.ends_with(b"shardnet\n"));
            assert_eq!(counters.tcp_active.get(), 1);
            assert_eq!(stack.tcp().len(), 1);
        }

        /// Establish a connection from `peer_port` to `port` (the peer's
        /// next sequence number is 1001, ours is returned).
        fn established(stack: &mut Stack, peer_port: u16, port: u16) -> u32 {
            let mut syn = TcpHeader {
                src_port: peer_port,
                ..segment(port, TcpFlags::SYN, 1000, 0)
            };
            // Window scaling, as Linux: the whole buffer is advertised, so
            // reading opens no window worth an update of its own.
            syn.options.mss = Some(1460);
            syn.options.window_scale = Some(7);
            let out = send(stack, syn, b"");
            assert_eq!(out.len(), 1, "a SYN-ACK");
            let our = out[0].0.seq.wrapping_add(1);
            let ack = TcpHeader {
                src_port: peer_port,
                ..segment(port, TcpFlags::ACK, 1001, our)
            };
            assert!(send(stack, ack, b"").is_empty());
            our
        }

        /// A stack with discard on port 9 and echo on port 7.
        fn discard_and_echo() -> (Stack, Arc<WorkerCounters>) {
            let rules = [
                tcp_rule("discard", 9, Action::Service(ServiceKind::Discard)),
                tcp_rule("echo", 7, Action::Service(ServiceKind::Echo)),
            ];
            let iface = Interface {
                mac: OUR_MAC,
                ip: OUR_IP,
                prefix_len: 24,
            };
            lone_stack(iface, &rules, DefaultAction::Drop, false)
        }

        /// Hand `segments` (from port 40000) to the stack as one RX burst, or
        /// one by one without `begin_burst`. Returns the segments sent while
        /// the burst was processed, and those sent at its end.
        fn burst(
            stack: &mut Stack,
            segments: &[(TcpHeader, Vec<u8>)],
            batched: bool,
        ) -> (Vec<TcpHeader>, Vec<(TcpHeader, Vec<u8>)>) {
            let mut egress = CollectEgress::default();
            if batched {
                stack.begin_burst();
            }
            for (header, payload) in segments {
                let frame = tcp_frame(ENDS, header, payload);
                stack.process(HeapBuf::from_slice(&frame), 0, &mut egress);
            }
            let during = egress
                .frames
                .drain(..)
                .map(|f| parse_tcp_frame(f.data()).unwrap().0);
            let during = during.collect();
            if batched {
                stack.end_burst(0, &mut egress);
            }
            let after = egress
                .frames
                .iter()
                .map(|f| parse_tcp_frame(f.data()).unwrap());
            (during, after.collect())
        }

        /// An app that opens one connection to `PEER_IP:80`, sends nothing
        /// on its own, and sends `ping` each time it is offered the
        /// connection as writable after the test asked for a wake.
        struct Pacer {
            target: SocketAddrV4,
            port: Arc<std::sync::Mutex<Option<u16>>>,
            /// Wakes the test asks for, done in the app's next poll round.
            wake: Arc<std::sync::atomic::AtomicUsize>,
            /// Pings owed: one per wake done.
            owed: usize,
            writable_calls: Arc<std::sync::atomic::AtomicUsize>,
        }

        impl crate::service::TcpService for Pacer {
            fn on_readable(&mut self, io: &mut dyn crate::service::TcpIo) {
                let (a, b) = io.recv_data();
                let n = a.len() + b.len();
                io.consume(n);
            }
            fn on_writable(&mut self, io: &mut dyn crate::service::TcpIo) {
                use std::sync::atomic::Ordering::Relaxed;
                self.writable_calls.fetch_add(1, Relaxed);
                while self.owed > 0 && io.send_space() >= 4 {
                    io.send(b"ping");
                    self.owed -= 1;
                }
            }
        }

        impl App for Pacer {
            fn poll(&mut self, _now_ns: u64, io: &mut dyn AppIo) {
                use std::sync::atomic::Ordering::Relaxed;
                let mut port = self.port.lock().unwrap();
                match *port {
                    None => *port = Some(io.connect(self.target).expect("connect")),
                    Some(p) => {
                        for _ in 0..self.wake.swap(0, Relaxed) {
                            self.owed += 1;
                            io.wake(p, self.target);
                        }
                        // A port with no connection: nothing happens.
                        io.wake(p.wrapping_add(1), self.target);
                    }
                }
            }
        }

        #[test]
        fn an_app_woken_in_its_poll_round_sends_then() {
            use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
            let iface = Interface {
                mac: OUR_MAC,
                ip: OUR_IP,
                prefix_len: 24,
            };
            let (mut stack, _) = lone_stack(iface, &[], DefaultAction::Drop, false);
            let port = Arc::new(std::sync::Mutex::new(None));
            let wake = Arc::new(AtomicUsize::new(0));
            let writable_calls = Arc::new(AtomicUsize::new(0));
            let ports = Arc::new(crate::rss::HomePorts::new(
                crate::rss::RssModel::software(1),
                50000,
                50099,
            ));
            stack.set_app(
                Box::new(Pacer {
                    target: SocketAddrV4::new(PEER_IP, 80),
                    port: port.clone(),
                    wake: wake.clone(),
                    owed: 0,
                    writable_calls: writable_calls.clone(),
                }),
                ports.picker(0),
                None,
            );
            stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
            let poll = |stack: &mut Stack| {
                let mut egress = CollectEgress::default();
                stack.poll_app(0, &mut egress);
                egress
                    .frames
                    .iter()
                    .map(|f| parse_tcp_frame(f.data()).expect("a TCP frame"))
                    .collect::<Vec<_>>()
            };
            let sent = poll(&mut stack);
            assert_eq!(sent.len(), 1);
            let syn = &sent[0].0;
            assert_eq!(syn.flags, TcpFlags::SYN);
            let ours = port.lock().unwrap().expect("connected");
            assert_eq!(syn.src_port, ours);

            // The peer's SYN-ACK establishes it; the app sends nothing.
            let mut syn_ack = segment(ours, TcpFlags::SYN | TcpFlags::ACK, 7000, syn.seq + 1);
            syn_ack.src_port = 80;
            let replies = send(&mut stack, syn_ack, b"");
            assert!(replies.iter().all(|(_, p)| p.is_empty()), "{replies:?}");
            assert!(poll(&mut stack).is_empty(), "no wake, nothing sent");

            // A wake: the app is offered the connection and its ping leaves
            // at the end of the round, with nothing from the peer.
            let calls = writable_calls.load(Relaxed);
            wake.store(1, Relaxed);
            let sent = poll(&mut stack);
            assert_eq!(writable_calls.load(Relaxed), calls + 1);
            assert_eq!(sent.len(), 1, "{sent:?}");
            assert_eq!(sent[0].1, b"ping");
            assert_eq!(sent[0].0.seq, syn.seq + 1);

            // Two wakes in one round: two pings.
            wake.store(2, Relaxed);
            let sent = poll(&mut stack);
            let payload: Vec<u8> = sent.iter().flat_map(|(_, p)| p.clone()).collect();
            assert_eq!(payload, b"pingping");

            // Once our side is closed, a wake offers nothing.
            let mut rst = segment(ours, TcpFlags::RST, 7001, 0);
            rst.src_port = 80;
            send(&mut stack, rst, b"");
            let calls = writable_calls.load(Relaxed);
            wake.store(1, Relaxed);
            assert!(poll(&mut stack).is_empty());
            assert_eq!(writable_calls.load(Relaxed), calls);
        }

        /// Ten full-sized segments in order from port 40000 to `port`.
        fn full_segments(port: u16, our: u32) -> Vec<(TcpHeader, Vec<u8>)> {
            (0..10u32)
                .map(|i| {
                    let seq = 1001 + i * 1460;
                    (segment(port, TcpFlags::ACK, seq, our), vec![i as u8; 1460])
                })
                .collect()
        }

        #[test]
        fn a_burst_of_segments_is_acknowledged_once_at_its_end() {
            let (mut stack, counters) = discard_and_echo();
            let our = established(&mut stack, 40000, 9);
            let (during, after) = burst(&mut stack, &full_segments(9, our), true);
            assert!(
                during.is_empty(),
                "nothing sent before the burst ends: {during:?}"
            );
            assert_eq!(after.len(), 1, "one ACK for the burst: {after:?}");
            assert_eq!(after[0].0.ack, 1001 + 10 * 1460);
            assert!(after[0].1.is_empty());
            assert_eq!(stack.tcp_services().discard.bytes_in, 10 * 1460);
            // Without a burst: the first segment is answered at once (a window
            // update: the SYN-ACK's window is never scaled, so the peer knew
            // only 64 KiB of the buffer), then every second full-sized one;
            // the tenth waits for the delayed-ACK timer.
            let (mut stack, _) = discard_and_echo();
            let our = established(&mut stack, 40000, 9);
            let (during, after) = burst(&mut stack, &full_segments(9, our), false);
            assert!(after.is_empty());
            let acks: Vec<u32> = during.iter().map(|h| h.ack).collect();
            let every_second: Vec<u32> = [1, 3, 5, 7, 9].map(|i| 1001 + i * 1460).to_vec();
            assert_eq!(acks, every_second);
            assert_eq!(counters.drops_of(DropReason::NoConnection), 0);
        }

        #[test]
        fn in_a_burst_data_beyond_a_hole_is_acknowledged_at_once() {
            let (mut stack, _) = discard_and_echo();
            let our = established(&mut stack, 40000, 9);
            let mut segments = full_segments(9, our);
            let lost = segments.remove(3);
            let (during, after) = burst(&mut stack, &segments, true);
            // Segments 0-2 wait for the burst's end; 4..9 arrive beyond the
            // hole and each gets its duplicate ACK at once, with SACK.
            assert_eq!(during.len(), 6, "{during:?}");
            assert!(during.iter().all(|h| h.ack == 1001 + 3 * 1460));
            assert!(after.len() <= 1, "{after:?}");
            // The missing segment fills the hole: one ACK for everything.
            let (during, after) = burst(&mut stack, &[lost], true);
            assert!(during.is_empty());
            assert_eq!(after.len(), 1);
            assert_eq!(after[0].0.ack, 1001 + 10 * 1460);
        }

        #[test]
        fn in_a_burst_replies_wait_for_its_end_and_closed_connections_go_at_once() {
            let (mut stack, counters) = discard_and_echo();
            let our_a = established(&mut stack, 40000, 7);
            let our_b = established(&mut stack, 40001, 7);
            let ping = |port: u16, our: u32, what: &[u8]| {
                let header = TcpHeader {
                    src_port: port,
                    ..segment(7, TcpFlags::ACK | TcpFlags::PSH, 1001, our)
                };
                (header, what.to_vec())
            };
            // A's request, then a reset of A; B's request; then a new
            // connection from A's port (maybe in A's freed slot).
            let rst = TcpHeader {
                src_port: 40000,
                ..segment(7, TcpFlags::RST, 1005, 0)
            };
            let syn = TcpHeader {
                src_port: 40000,
                ..segment(7, TcpFlags::SYN, 5000, 0)
            };
            let batch = [
                ping(40000, our_a, b"ping"),
                (rst, Vec::new()),
                ping(40001, our_b, b"pong"),
                (syn, Vec::new()),
            ];
            let (during, after) = burst(&mut stack, &batch, true);
            assert!(during.is_empty(), "{during:?}");
            let mut sent: Vec<(u16, TcpFlags, Vec<u8>)> = after
                .into_iter()
                .map(|(h, p)| (h.dst_port, h.flags, p))
                .collect();
            sent.sort_by_key(|s| s.0);
            assert_eq!(
                sent,
                vec![
                    (40000, TcpFlags::SYN | TcpFlags::ACK, Vec::new()),
                    (40001, TcpFlags::ACK | TcpFlags::PSH, b"pong".to_vec()),
                ],
                "A's echo died with A; B's echo and the new SYN-ACK, once each"
            );
            assert_eq!(counters.tcp_resets_rx.get(), 1);
            assert_eq!(stack.tcp().len(), 2);
        }

        #[test]
        fn syn_ack_timestamps_follow_the_boot_clock_across_restarts() {
            // The SYN-ACK's TSval, from a stack whose timestamp clock started
            // at `base_ms`, `at_ms` after the stack's own clock started.
            let syn_ack_tsval = |base_ms: u32, at_ms: u64, secret: u8| {
                let counters = Arc::new(WorkerCounters::default());
                let rules = [tcp_rule("web", 80, Action::Service(ServiceKind::Http))];
                let iface = Interface {
                    mac: OUR_MAC,
                    ip: OUR_IP,
                    prefix_len: 24,
                };
                let mut stack = Stack::new(
                    iface,
                    Arc::new(RuleTable::compile(&rules, DefaultAction::Drop)),
                    crate::neighbour::NeighbourMailboxes::new(1).cache_for(0),
                    counters,
                    false,
                    TcpSetup {
                        secret_key: [secret; 32],
                        timestamp_clock: ([5; 16], base_ms),
                        ..TcpSetup::default()
                    },
                );
                let mut syn = segment(80, TcpFlags::SYN, 1000, 0);
                syn.options.timestamps = Some((77, 0));
                let (_, out) = deliver(&mut stack, syn, b"", at_ms * 1_000_000);
                let (tsval, tsecr) = out[0].0.options.timestamps.expect("timestamps");
                assert_eq!(tsecr, 77);
                tsval
            };
            let before = syn_ack_tsval(10_000, 60_000, 1);
            // Restarted 2 s after that SYN-ACK, with new process secrets.
            let after = syn_ack_tsval(72_000, 0, 2);
            assert_eq!(after.wrapping_sub(before), 2_000);
        }

        /// Issue 16: junk aimed at a half-open connection is answered with
        /// a RST (a bad ACK) or at most one SYN-ACK per 500 ms, every such
        /// segment is counted, and the half-open expires silently, counted.
        #[test]
        fn junk_to_a_half_open_is_limited_and_its_expiry_counted() {
            const MS: u64 = 1_000_000;
            let (mut stack, counters) = tcp_stack();
            let (_, out) = deliver(&mut stack, segment(7, TcpFlags::SYN, 1000, 0), b"", 0);
            assert_eq!(out[0].0.flags, TcpFlags::SYN | TcpFlags::ACK);
            let iss = out[0].0.seq;
            // An ACK of something never sent: RST <SEQ=SEG.ACK>.
            let bad = segment(7, TcpFlags::ACK, 1001, iss.wrapping_add(5000));
            let (_, out) = deliver(&mut stack, bad, b"", MS);
            assert_eq!(out.len(), 1);
            assert_eq!(
                (out[0].0.flags, out[0].0.seq),
                (TcpFlags::RST, iss.wrapping_add(5000))
            );
            // 100 segments far outside the window in 400 ms: one SYN-ACK.
            let mut syn_acks = 0;
            for i in 0..100 {
                let junk = segment(7, TcpFlags::ACK, 1001 + 1_000_000, iss.wrapping_add(1));
                let (_, out) = deliver(&mut stack, junk, b"", 2 * MS + i * 4 * MS);
                syn_acks += out.len();
            }
            assert_eq!(syn_acks, 1);
            assert_eq!(counters.tcp_out_of_window_acks_sent.get(), 1);
            assert_eq!(counters.tcp_out_of_window_acks_limited.get(), 99);
            assert_eq!(stack.tcp.half_open(), 1, "junk closes nothing");
            // The SYN-ACK retransmissions run out: dropped without a RST.
            let resets_before = counters.tcp_resets_tx.get();
            let mut egress = CollectEgress::default();
            let mut now = 0;
            while stack.tcp.half_open() > 0 && now < 600 * SECOND {
                now += 100 * MS;
                stack.poll(now, &mut egress);
            }
            assert_eq!(stack.tcp.half_open(), 0);
            for frame in &egress.frames {
                let (header, _) = parse_tcp_frame(frame.data()).unwrap();
                assert_eq!(header.flags, TcpFlags::SYN | TcpFlags::ACK);
            }
            assert_eq!(counters.tcp_resets_tx.get(), resets_before);
            assert_eq!(counters.tcp_half_open_expired.get(), 1);
            assert_eq!(counters.tcp_timeouts.get(), 0);
        }

        /// RFC 5961 challenge ACKs are counted, sent and limited.
        #[test]
        fn challenge_acks_are_counted() {
            let (mut stack, counters) = tcp_stack();
            let (_, out) = deliver(&mut stack, segment(7, TcpFlags::SYN, 1000, 0), b"", 0);
            let iss = out[0].0.seq;
            let ack = segment(7, TcpFlags::ACK, 1001, iss.wrapping_add(1));
            deliver(&mut stack, ack, b"", 0);
            for i in 0..10 {
                // In the window but not at RCV.NXT: a challenge ACK at most
                // once per 500 ms on this connection.
                let rst = segment(7, TcpFlags::RST, 1101, 0);
                deliver(&mut stack, rst, b"", 1_000_000 + i * 1_000_000);
            }
            assert_eq!(counters.tcp_challenge_acks_sent.get(), 1);
            assert_eq!(counters.tcp_challenge_acks_limited.get(), 9);
            assert_eq!(stack.tcp.len(), 1, "still open");
        }

        #[test]
        fn segments_without_a_connection_get_a_reset_and_rules_still_apply() {
            let (mut stack, counters) = tcp_stack();
            let out = send(&mut stack, segment(7, TcpFlags::ACK, 5, 77), b"x");
            assert_eq!(out.len(), 1);
            assert_eq!((out[0].0.flags, out[0].0.seq), (TcpFlags::RST, 77));
            assert_eq!(counters.drops_of(DropReason::NoConnection), 1);
            assert_eq!(counters.tcp_resets_tx.get(), 1);
            // A drop rule drops; an unclaimed port goes to the kernel.
            let frame = tcp_frame(ENDS, &segment(23, TcpFlags::SYN, 1, 0), b"");
            let mut egress = CollectEgress::default();
            assert!(matches!(
                stack.process(HeapBuf::from_slice(&frame), 0, &mut egress),
                Disposition::Consumed
            ));
            assert_eq!(counters.drops_of(DropReason::Rule), 1);
            let frame = tcp_frame(ENDS, &segment(22, TcpFlags::SYN, 1, 0), b"");
            assert!(matches!(
                stack.process(HeapBuf::from_slice(&frame), 0, &mut egress),
                Disposition::Kernel(_)
            ));
            assert!(egress.frames.is_empty());
            assert_eq!(stack.tcp().len(), 0);
        }

        #[test]
        fn a_tcp_data_offset_below_five_is_malformed_whatever_the_port() {
            let (mut stack, counters) = tcp_stack();
            // A service's port, a port the rules give the kernel, a dropped one.
            for port in [7, 22, 23] {
                let mut frame = tcp_frame(ENDS, &segment(port, TcpFlags::SYN, 1, 0), b"");
                let offset_at = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + 12;
                for words in [0u8, 4] {
                    frame[offset_at] = words << 4;
                    dropped_as(&mut stack, &counters, &frame, DropReason::Malformed);
                }
            }
            assert_eq!(counters.drops_of(DropReason::BadHeaderLength), 0);
            assert_eq!(stack.tcp().len(), 0);
        }

        #[test]
        fn syns_from_martians_get_no_syn_ack_and_no_reset() {
            let (mut stack, counters) = tcp_stack();
            for src in MARTIANS {
                // A service's port, the kernel's, and a segment that would
                // get a RST.
                for (port, flags) in [(7, TcpFlags::SYN), (22, TcpFlags::SYN), (7, TcpFlags::ACK)] {
                    let frame = tcp_frame(from_ip(src), &segment(port, flags, 1, 1), b"");
                    dropped_as(&mut stack, &counters, &frame, DropReason::MartianSource);
                }
            }
            assert_eq!(stack.tcp().len(), 0);
            assert_eq!(counters.tcp_resets_tx.get(), 0);
        }

        #[test]
        fn a_bad_tcp_checksum_is_dropped_and_counted() {
            let (mut stack, counters) = tcp_stack();
            let mut frame = tcp_frame(ENDS, &segment(80, TcpFlags::SYN, 1, 0), b"");
            let last = frame.len() - 1;
            frame[last - 4] ^= 0x40; // inside the TCP header (window)
            let mut egress = CollectEgress::default();
            stack.process(HeapBuf::from_slice(&frame), 0, &mut egress);
            assert_eq!(counters.drops_of(DropReason::BadL4Checksum), 1);
            assert!(egress.frames.is_empty());
        }

        #[test]
        fn echo_connection_times_out_and_resets_when_the_peer_vanishes() {
            let (mut stack, counters) = tcp_stack();
            let out = send(&mut stack, segment(7, TcpFlags::SYN, 1000, 0), b"");
            let our = out[0].0.seq.wrapping_add(1);
            send(&mut stack, segment(7, TcpFlags::ACK, 1001, our), b"");
            let out = send(&mut stack, segment(7, TcpFlags::ACK, 1001, our), b"ping");
            assert_eq!(out[0].1, b"ping");
            // The peer never acknowledges: retransmissions with backoff, then
            // a reset, all driven by Stack::poll.
            let mut egress = CollectEgress::default();
            let mut now = 0;
            while !stack.tcp().is_empty() && now < 3_600_000_000_000 {
                now += 50_000_000;
                stack.poll(now, &mut egress);
            }
            assert_eq!(stack.tcp().len(), 0, "gone within the hour");
            assert!(counters.tcp_retransmits.get() >= 10);
            assert_eq!(counters.tcp_timeouts.get(), 1);
            let last = parse_tcp_frame(egress.frames.last().unwrap().data()).unwrap();
            assert!(last.0.flags.contains(TcpFlags::RST));
            assert_eq!(counters.tcp_active.get(), 0);
        }
        #[test]
        fn syn_flood_falls_back_to_cookies_and_established_connections_go_on() {
            let counters = Arc::new(WorkerCounters::default());
            let rules = [tcp_rule("echo", 7, Action::Service(ServiceKind::Echo))];
            let mut stack = Stack::new(
                Interface {
                    mac: OUR_MAC,
                    ip: OUR_IP,
                    prefix_len: 24,
                },
                Arc::new(RuleTable::compile(&rules, DefaultAction::Drop)),
                crate::neighbour::NeighbourMailboxes::new(1).cache_for(0),
                counters.clone(),
                false,
                TcpSetup {
                    table: TableConfig {
                        syn_backlog: 4,
                        ..TableConfig::default()
                    },
                    secret_key: [3; 32],
                    ..TcpSetup::default()
                },
            );
            // An established connection first.
            let out = send(&mut stack, segment(7, TcpFlags::SYN, 1000, 0), b"");
            let our = out[0].0.seq.wrapping_add(1);
            send(&mut stack, segment(7, TcpFlags::ACK, 1001, our), b"");
            // The flood: 200 SYNs from other ports, never completed.
            let mut cookie_replies = Vec::new();
            for port in 0..200u16 {
                let mut syn = segment(7, TcpFlags::SYN, 5000, 0);
                syn.src_port = 10_000 + port;
                syn.options.mss = Some(1460);
                syn.options.sack_permitted = true;
                let out = send(&mut stack, syn, b"");
                assert_eq!(out.len(), 1, "every SYN is answered");
                cookie_replies.push((syn.src_port, out[0].0));
            }
            assert_eq!(stack.tcp().half_open(), 4, "the backlog is bounded");
            assert_eq!(stack.tcp().len(), 5);
            assert_eq!(counters.tcp_syn_cookies_sent.get(), 196);
            // The established connection is still served.
            let out = send(
                &mut stack,
                segment(7, TcpFlags::ACK | TcpFlags::PSH, 1001, our),
                b"still here",
            );
            assert_eq!(out[0].1, b"still here");
            // A cookie's ACK completes a connection with the SYN's options.
            let (port, syn_ack) = cookie_replies[150];
            assert_eq!(syn_ack.options.mss, Some(1460));
            assert!(syn_ack.options.sack_permitted);
            let mut ack = segment(7, TcpFlags::ACK, 5001, syn_ack.seq.wrapping_add(1));
            ack.src_port = port;
            let out = send(&mut stack, ack, b"hi");
            assert_eq!(counters.tcp_syn_cookies_accepted.get(), 1);
            assert_eq!(
                out.last().unwrap().1,
                b"hi",
                "data on the cookie's ACK is served"
            );
            assert_eq!(stack.tcp().len(), 6);
            // A forged cookie gets a RST, no connection.
            let mut forged = segment(7, TcpFlags::ACK, 5001, syn_ack.seq.wrapping_add(2));
            forged.src_port = cookie_replies[151].0;
            let out = send(&mut stack, forged, b"");
            assert!(out[0].0.flags.contains(TcpFlags::RST));
            assert_eq!(stack.tcp().len(), 6);
        }
    }
}
