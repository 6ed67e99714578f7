//! The client side of the stack, for an application embedded in the worker
//! ([`crate::app`]): active opens from source ports that steer the replies
//! home, UDP sockets, ARP requests for next hops, and the app's poll round.

use std::net::{Ipv4Addr, SocketAddrV4};

use hashbrown::HashMap;

use super::{Egress, Interface, Stack};
use crate::app::{App, AppIo, ConnectError};
use crate::config::ServiceId;
use crate::counters::{DropReason, WorkerCounters};
use crate::neighbour::NeighbourCache;
use crate::port::PacketBuf;
use crate::rss::PortPicker;
use crate::tcp::table::TcpTable;
use crate::tcp::FourTuple;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, IpProtocol,
    ETHERNET_HEADER_LEN, IPV4_HEADER_LEN,
};

/// What the stack keeps for an embedded application ([`crate::app`]).
pub(super) struct Client {
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
    pub(super) fn udp_is_bound(&self, port: u16) -> bool {
        self.udp_bound[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }
}

impl Stack {
    /// Run `app` in this worker: it opens connections and sends datagrams
    /// from source ports `ports` picks (so that replies come here), to
    /// destinations on our subnet or through `gateway`.
    pub fn set_app(&mut self, app: Box<dyn App>, ports: PortPicker, gateway: Option<Ipv4Addr>) {
        self.services.set_app(app);
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
        self.services.app()
    }

    /// Give the application its poll round at `now_ns`; the connections it
    /// opens send their SYNs to `egress`.
    pub fn poll_app<E: Egress>(&mut self, now_ns: u64, egress: &mut E) {
        let (Some(client), Some(mut app)) = (self.client.as_mut(), self.services.take_app()) else {
            return;
        };
        let table = self.tcp.borrow();
        let mut io = ClientIo {
            iface: &self.iface,
            client,
            tcp: &table,
            neighbours: &mut self.neighbours,
            counters: &self.counters,
            egress: &mut *egress,
            now_ns,
        };
        app.poll(now_ns, &mut io);
        drop(table);
        self.services.set_app(app);
        let Some(client) = self.client.as_mut() else {
            return;
        };
        if !client.wakes.is_empty() {
            let mut wakes = std::mem::take(&mut client.wakes);
            for tuple in wakes.drain(..) {
                let (mut tcp, services, counters, mut out) = self.tcp_parts(egress);
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
            let (mut tcp, services, counters, mut out) = self.tcp_parts(egress);
            if tcp
                .connect(
                    tuple,
                    mac,
                    ServiceId::APP,
                    services,
                    counters,
                    now_ns,
                    &mut out,
                )
                .is_err()
            {
                if let Some(app) = services.app_mut() {
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
        if let Some(app) = self.services.app_mut() {
            app.on_stop();
        }
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
        send_arp_request(self.iface, self.counters, &mut *self.egress, target);
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
        super::outbox::write_udp_frame(
            buf.data_mut(),
            self.iface,
            mac,
            local_port,
            remote,
            payload,
        );
        self.counters.udp_tx.inc();
        self.egress.send(buf);
        Ok(())
    }
}

/// Send an ARP request for `target` from `iface`.
pub(super) fn send_arp_request<E: Egress>(
    iface: &Interface,
    counters: &WorkerCounters,
    egress: &mut E,
    target: Ipv4Addr,
) {
    let Some(mut buf) = egress.alloc() else {
        counters.count_drop(DropReason::NoBuffer);
        return;
    };
    // 14 + 28 bytes, padded to the 60-byte minimum.
    if !buf.set_len(60) {
        counters.count_drop(DropReason::NoBuffer);
        return;
    }
    let frame = buf.data_mut();
    frame.fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst_addr(EthernetAddress::BROADCAST);
    eth.set_src_addr(iface.mac);
    eth.set_ethertype(EtherType::Arp);
    ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: iface.mac,
        source_protocol_addr: iface.ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
    .emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    egress.send(buf);
}
