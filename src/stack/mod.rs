//! One worker's protocol processing: Ethernet, ARP, IPv4, ICMP, UDP and TCP.
//!
//! Sans-IO: [`Stack::process`] takes a received frame and the time. Every
//! frame leaves through one channel, an [`Egress`]: a reply built in place
//! (in the same buffer) and the frames the stack originates (TCP segments,
//! in empty buffers the egress lends from the worker's pool) are queued for
//! transmission, a frame that is not the stack's is handed to the kernel
//! unchanged, and the rest is consumed. [`Stack::poll`] runs the TCP
//! timers. The stack never reads a clock, a socket or a device. Every frame
//! that is not answered or delivered is counted under a [`DropReason`].
//!
//! Replies are built in place: an ICMP echo or a UDP echo swaps addresses and
//! ports in the request's buffer (see `ipv4.rs` for why that needs only an
//! incremental checksum update).
//!
//! One file per concern, each an `impl Stack` block over the fields declared
//! here:
//!
//! | file             | concern                                                   |
//! |------------------|-----------------------------------------------------------|
//! | `mod.rs`         | the [`Stack`], its setup, the L2 dispatch, accessors      |
//! | `arp.rs`         | ARP: answers, learning, conflicts                         |
//! | `ipv4.rs`        | IPv4 checks and dispatch, ICMP echo, in-place turn-around |
//! | `udp.rs`         | UDP: the app's sockets, the services, loop protection     |
//! | `tcp.rs`         | TCP glue: segments in and out, timers, bursts, path MTU   |
//! | `kernel_pins.rs` | TCP flows pinned to the kernel across reloads             |
//! | `tasks.rs`       | the async services' executor, run between RX bursts      |
//! | `client.rs`      | active opens (app and tasks), the app's client side       |
//! | `boot_clock.rs`  | the TCP timestamp clock of this boot (`/proc`)            |

use std::cell::{Ref, RefCell};
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::config::prefix_mask;
use crate::counters::{DropReason, WorkerCounters};
use crate::neighbour::NeighbourCache;
use crate::port::{PacketBuf, TxChecksum};
use crate::rules::RuleTable;
use crate::service::Services;
use crate::tcp::cookie::Secrets;
use crate::tcp::table::{TableConfig, TcpTable};
use crate::wire::{EtherType, EthernetAddress, EthernetFrame, ETHERNET_HEADER_LEN};

mod arp;
mod boot_clock;
mod client;
mod ipv4;
pub mod kernel_pins;
mod outbox;
mod tasks;
mod tcp;
#[cfg(test)]
mod tests;
mod udp;

pub use boot_clock::{boot_timestamp_clock, random_timestamp_clock};
use client::{Client, Dialer};
use kernel_pins::KernelFlows;

/// The TTL of packets the stack sends (the Linux default).
pub const DEFAULT_TTL: u8 = 64;

/// The stack's one output channel: every frame leaves through it. Frames the
/// stack originates (TCP segments, ARP requests, the app's datagrams) are
/// built in buffers it lends; replies built in place (ARP, ICMP and UDP
/// echo) and frames for the kernel are the received buffers themselves, so
/// the hot path copies nothing.
pub trait Egress {
    /// The buffer type of the port.
    type Buf: PacketBuf;
    /// An empty buffer from the worker's pool, or `None` if it is exhausted.
    fn alloc(&mut self) -> Option<Self::Buf>;
    /// Queue a finished frame for transmission: one built in a buffer from
    /// [`Egress::alloc`], or a reply built in place in a received buffer.
    fn send(&mut self, frame: Self::Buf);
    /// Hand a received frame that is not the stack's, unchanged, to the
    /// kernel's exception port (or drop and count it where there is none, or
    /// no room).
    fn to_kernel(&mut self, frame: Self::Buf);
    /// How the frames the stack builds get their checksums: decided once
    /// per queue, read per frame (software unless the port offloads them).
    #[inline]
    fn tx_checksum(&self) -> TxChecksum {
        TxChecksum::Software
    }
    /// A buffer for one large TCP segment the port cuts into frames (TSO),
    /// where the queue does that and has one free; otherwise `None`, and the
    /// stack cuts the segment into frames itself.
    #[inline]
    fn alloc_large(&mut self) -> Option<Self::Buf> {
        None
    }
}

/// What a worker's TCP needs besides the stack's own parts.
#[derive(Clone, Debug)]
pub struct TcpSetup {
    /// Table limits and per-connection parameters.
    pub table: TableConfig,
    /// The process's key for SYN cookies and initial sequence numbers.
    pub secret_key: [u8; 32],
    /// The key and start (ms) of the TCP timestamp clock
    /// ([`Secrets::with_timestamp_clock`]). The runtime injects the boot's
    /// ([`boot_timestamp_clock`], read from `/proc` once), so that the clock
    /// goes on across restarts; the default is [`random_timestamp_clock`],
    /// for this run only, and reads nothing.
    pub timestamp_clock: ([u8; 16], u32),
    /// The process's seed for the 4-tuple index.
    pub hasher: ahash::RandomState,
}

/// The defaults of the configuration, with fresh random keys and a
/// timestamp clock of this run only ([`random_timestamp_clock`]): no file is
/// read. The runtime builds its own from the configuration.
impl Default for TcpSetup {
    fn default() -> Self {
        TcpSetup {
            table: TableConfig::default(),
            secret_key: Secrets::random_key(),
            timestamp_clock: random_timestamp_clock(),
            hasher: ahash::RandomState::new(),
        }
    }
}

/// What becomes of a received frame, inside the stack: [`Stack::process`]
/// hands the buffer to the [`Egress`] accordingly. The layers work on the
/// buffer in place through `&mut B` and return only this verdict, so the
/// buffer (a pointer for DPDK, a frame descriptor of several words for the
/// heap buffers) is not moved through every layer's return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    /// A reply, built in the same buffer: transmit it.
    Transmit,
    /// Not the stack's: hand it to the kernel's exception port, unchanged.
    Kernel,
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

    /// The next hop towards `to`: `to` itself on our subnet, else the
    /// `gateway`; `None` without a route. Every sender the stack starts
    /// frames for (the app, the tasks, the UDP services) routes by this.
    fn next_hop(&self, gateway: Option<Ipv4Addr>, to: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.in_subnet(to) {
            Some(to)
        } else {
            gateway
        }
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

/// [`Interface::is_martian_source`] with the interface's part decided once,
/// at set-up: our address and our subnet's broadcast address as integers.
/// Without a subnet broadcast (prefixes /31 and /32) the latter is
/// 255.255.255.255, a martian anyway, so the test is the same.
#[derive(Clone, Copy, Debug)]
struct Martians {
    ip: u32,
    subnet_broadcast: u32,
}

impl Martians {
    fn new(iface: &Interface) -> Self {
        let host_mask = !prefix_mask(iface.prefix_len);
        let ip = u32::from(iface.ip);
        let subnet_broadcast = if iface.prefix_len < 31 {
            ip | host_mask
        } else {
            u32::MAX
        };
        Martians {
            ip,
            subnet_broadcast,
        }
    }

    /// Whether `addr` is a martian source: 0.0.0.0/8, 127.0.0.0/8,
    /// 224.0.0.0/4, 255.255.255.255, our subnet's broadcast, our address.
    #[inline]
    fn is_source(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        let first = a >> 24;
        first == 0
            || first == 127
            || a >> 28 == 0xe
            || a == u32::MAX
            || a == self.subnet_broadcast
            || a == self.ip
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
    /// The martian-source test for `iface`, decided at set-up.
    martians: Martians,
    rules: Arc<RuleTable>,
    neighbours: NeighbourCache,
    counters: Arc<WorkerCounters>,
    /// The TCP table, shared with the async tasks' [`crate::rt::net`]
    /// context; the stack borrows it per call, never across a task's poll.
    tcp: Rc<RefCell<TcpTable>>,
    /// The async services' executor and context, if there are any.
    tasks: Option<tasks::Tasks>,
    /// The worker's service instances (and the app's).
    services: Services,
    /// Datagrams UDP services sent, framed at the end of the round.
    outbox: outbox::Outbox,
    /// The default route, for what services send off our subnet.
    gateway: Option<std::net::Ipv4Addr>,
    /// TCP flows the rules gave the kernel: they stay the kernel's across
    /// reloads.
    kernel_flows: KernelFlows,
    /// Whether kernel TCP flows are pinned: only with an exception port.
    kernel_port: bool,
    flow_record: Option<FlowRecord>,
    /// The client side, when an application runs in this worker.
    client: Option<Box<Client>>,
    /// Source ports and ARP pacing for active opens (the app's and the
    /// async tasks'), once [`Stack::set_local_ports`] gave a range.
    dialer: Option<Box<Dialer>>,
}

impl Stack {
    /// A stack for one worker, with the built-in services and their
    /// defaults (tests, benchmarks).
    pub fn new(
        iface: Interface,
        rules: Arc<RuleTable>,
        neighbours: NeighbourCache,
        counters: Arc<WorkerCounters>,
        record_flows: bool,
        tcp: TcpSetup,
    ) -> Self {
        let services = Services::builtin(crate::service::http::DEFAULT_BODY);
        Stack::with_services(
            iface,
            rules,
            neighbours,
            counters,
            record_flows,
            tcp,
            services,
        )
    }

    /// A stack for one worker, serving with `services` (built by the
    /// process's [`crate::service::Registry`] on the worker's thread).
    pub fn with_services(
        iface: Interface,
        rules: Arc<RuleTable>,
        neighbours: NeighbourCache,
        counters: Arc<WorkerCounters>,
        record_flows: bool,
        tcp: TcpSetup,
        mut services: Services,
    ) -> Self {
        let table = Rc::new(RefCell::new(TcpTable::new(
            tcp.table,
            Secrets::from_key(tcp.secret_key)
                .with_timestamp_clock(tcp.timestamp_clock.0, tcp.timestamp_clock.1),
            tcp.hasher.clone(),
            0,
        )));
        let tasks = services.take_async().map(|parts| {
            parts.reactor.borrow_mut().udp_mut().set_local_ip(iface.ip);
            tasks::Tasks::new(table.clone(), parts)
        });
        Stack {
            martians: Martians::new(&iface),
            iface,
            rules,
            neighbours,
            counters,
            services,
            outbox: outbox::Outbox::default(),
            gateway: None,
            kernel_flows: KernelFlows::new(tcp.hasher.clone()),
            kernel_port: true,
            tcp: table,
            tasks,
            flow_record: record_flows.then(FlowRecord::new),
            client: None,
            dialer: None,
        }
    }

    /// This worker's TCP table.
    ///
    /// # Panics
    /// While an async task of this worker holds it (never between calls
    /// into the stack).
    pub fn tcp(&self) -> Ref<'_, TcpTable> {
        self.tcp.borrow()
    }

    /// Switch to a new rule table; flows from now on follow it. Flows
    /// already under way keep going where they went: the stack's own TCP
    /// connections stay in its table, and the TCP flows the kernel took stay
    /// pinned to it (see [`kernel_pins`]).
    pub fn set_rules(&mut self, rules: Arc<RuleTable>) {
        self.rules = rules;
    }

    /// The default route for what services send off our subnet.
    pub fn set_gateway(&mut self, gateway: Option<std::net::Ipv4Addr>) {
        self.gateway = gateway;
    }

    /// Frame what UDP services sent, and the ARP requests their sends
    /// needed.
    pub(super) fn flush_outbox<E: Egress>(&mut self, egress: &mut E) {
        if self.outbox.is_empty() {
            return;
        }
        self.outbox.flush(&self.iface, &self.counters, egress);
        for target in std::mem::take(&mut self.outbox.resolve) {
            client::send_arp_request(&self.iface, &self.counters, egress, target);
        }
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

    /// The service instances of this worker.
    pub fn services(&self) -> &Services {
        &self.services
    }

    #[inline]
    fn dropped(&self, reason: DropReason) -> Disposition {
        self.counters.count_drop(reason);
        Disposition::Consumed
    }

    /// Process one received frame at monotonic time `now_ns`. A reply built
    /// in place goes to [`Egress::send`], a frame that is the kernel's to
    /// [`Egress::to_kernel`] (both the same buffer), and the segments the
    /// frame causes to [`Egress::send`] as well; anything else is delivered
    /// to a service or dropped and counted.
    pub fn process<E: Egress>(&mut self, mut pkt: E::Buf, now_ns: u64, egress: &mut E) {
        match self.handle(&mut pkt, now_ns, egress) {
            Disposition::Transmit => egress.send(pkt),
            Disposition::Kernel => egress.to_kernel(pkt),
            Disposition::Consumed => {}
        }
    }

    /// What becomes of a received frame: [`Stack::process`] without the
    /// hand-off to the egress.
    fn handle<B: PacketBuf, E: Egress<Buf = B>>(
        &mut self,
        pkt: &mut B,
        now_ns: u64,
        egress: &mut E,
    ) -> Disposition {
        self.counters.rx_packets.inc();
        self.counters.rx_bytes.add(pkt.len() as u64);
        let (ethertype, dst_mac) = match EthernetFrame::new_checked(pkt.data()) {
            Ok(frame) => (frame.ethertype(), frame.dst_addr()),
            Err(_) => return self.dropped(DropReason::Truncated),
        };
        if dst_mac != self.iface.mac && !dst_mac.is_broadcast() {
            if dst_mac.is_multicast() {
                return Disposition::Kernel;
            }
            return self.dropped(DropReason::NotForUs);
        }
        match ethertype {
            EtherType::Arp => self.process_arp(pkt, now_ns),
            EtherType::Ipv4 => {
                let (ip_checksum, l4_checksum) = (pkt.rx_ip_checksum(), pkt.rx_l4_checksum());
                let info = match self.check_ipv4(pkt.data(), ip_checksum) {
                    Ok(Some(info)) => info,
                    Ok(None) => return Disposition::Kernel,
                    Err(reason) => return self.dropped(reason),
                };
                // Drop Ethernet padding: replies are exactly as long as the datagram.
                let frame_len = ETHERNET_HEADER_LEN + info.total_len;
                if pkt.len() > frame_len {
                    pkt.set_len(frame_len);
                }
                self.process_ipv4(pkt, info, l4_checksum, now_ns, egress)
            }
            _ => Disposition::Kernel,
        }
    }

    /// Count a packet of `key` in the flow record, when recording is on. Inlined
    /// so that, off, it costs one branch.
    #[inline(always)]
    fn record(&mut self, key: FlowKey) {
        if let Some(record) = &mut self.flow_record {
            *record.entry(key).or_insert(0) += 1;
        }
    }

    #[inline]
    fn count_rule_hit(&self, rule: Option<u8>) {
        match rule {
            Some(index) => self.counters.rule_hits[usize::from(index)].inc(),
            None => self.counters.default_hits.inc(),
        }
    }
}
