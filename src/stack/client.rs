//! The client side of the stack: active opens from source ports that steer
//! the replies home, for an application embedded in the worker
//! ([`crate::app`]) and for the async services' tasks
//! ([`crate::rt::TcpStream::connect`]), which share the [`Dialer`] (source
//! ports, next hops, rate-limited ARP requests); and the app's UDP sockets
//! and poll round.

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;

use hashbrown::HashMap;

use super::{Egress, Interface, Stack};
use crate::app::{App, AppIo, ConnectError};
use crate::config::ServiceId;
use crate::counters::{DropReason, WorkerCounters};
use crate::neighbour::NeighbourCache;
use crate::port::PacketBuf;
use crate::rss::PortPicker;
use crate::tcp::connection::TcpConfig;
use crate::tcp::table::TcpTable;
use crate::tcp::FourTuple;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, IpProtocol,
    ETHERNET_HEADER_LEN, IPV4_HEADER_LEN,
};

/// What every active open of a worker needs: source ports whose replies
/// come to this worker, and the pace of ARP requests for next hops.
pub(super) struct Dialer {
    /// Source ports whose replies come to this worker (shared with the
    /// async tasks' UDP client sockets, [`crate::rt::UdpSocket::bind_ephemeral`]).
    ports: Rc<RefCell<PortPicker>>,
    /// When an ARP request was last sent for an address (one per 100 ms).
    arp_sent: HashMap<Ipv4Addr, u64>,
}

/// What the stack keeps for an embedded application ([`crate::app`]).
pub(super) struct Client {
    /// UDP ports the app bound, one bit each.
    udp_bound: Box<[u64; 1024]>,
    /// Active opens asked for in this round, started after the app's poll.
    pending: Vec<(FourTuple, EthernetAddress)>,
    /// Connections the app woke in this round, offered to it as writable
    /// after its poll.
    wakes: Vec<FourTuple>,
}

/// Most ARP requests per address: one per this many nanoseconds.
const ARP_REQUEST_INTERVAL_NS: u64 = 100_000_000;

/// The MAC of the next hop towards `ip` (`ip` itself on our subnet, else
/// the gateway); without it, an ARP request (at most one per address per
/// 100 ms) and `Resolving`.
#[allow(clippy::too_many_arguments)]
fn next_hop_mac<E: Egress>(
    iface: &Interface,
    gateway: Option<Ipv4Addr>,
    neighbours: &mut NeighbourCache,
    arp_sent: &mut HashMap<Ipv4Addr, u64>,
    counters: &WorkerCounters,
    egress: &mut E,
    ip: Ipv4Addr,
    now_ns: u64,
) -> Result<EthernetAddress, ConnectError> {
    let hop = iface
        .next_hop(gateway, ip)
        .ok_or(ConnectError::NoRoute(ip))?;
    if let Some(mac) = neighbours.lookup(hop, now_ns) {
        return Ok(mac);
    }
    let last = arp_sent.get(&hop).copied();
    if last.is_none_or(|at| now_ns.saturating_sub(at) >= ARP_REQUEST_INTERVAL_NS) {
        arp_sent.insert(hop, now_ns);
        send_arp_request(iface, counters, egress, hop);
    }
    Err(ConnectError::Resolving(hop))
}

/// How long an active open may take: the SYN and its retransmissions,
/// with the backoff (about 127 s with Linux's defaults). A task's connect
/// waits this long for ARP too before `HostUnreachable`.
pub(super) fn connect_timeout_ns(config: &TcpConfig) -> u64 {
    let mut rto = config.rto.initial_ns;
    let mut total = 0u64;
    for _ in 0..=config.max_syn_retransmits {
        total = total.saturating_add(rto);
        rto = rto.saturating_mul(2).min(config.rto.max_ns);
    }
    total
}

impl Client {
    pub(super) fn udp_is_bound(&self, port: u16) -> bool {
        self.udp_bound[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }
}

impl Stack {
    /// The source ports of this worker's active opens (the app's and the
    /// async tasks'), and of the tasks' UDP client sockets: `ports` picks
    /// those whose replies come here.
    pub fn set_local_ports(&mut self, ports: PortPicker) {
        let ports = Rc::new(RefCell::new(ports));
        if let Some(tasks) = &self.tasks {
            tasks
                .net
                .reactor()
                .borrow_mut()
                .udp_mut()
                .set_port_picker(ports.clone());
        }
        self.dialer = Some(Box::new(Dialer {
            ports,
            arp_sent: HashMap::new(),
        }));
    }

    /// Run `app` in this worker: it opens connections and sends datagrams
    /// from the source ports [`Stack::set_local_ports`] gave (so that
    /// replies come here), to destinations on our subnet or through the
    /// gateway ([`Stack::set_gateway`]).
    pub fn set_app(&mut self, app: Box<dyn App>) {
        self.services.set_app(app);
        self.client = Some(Box::new(Client {
            udp_bound: Box::new([0; 1024]),
            pending: Vec::new(),
            wakes: Vec::new(),
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
            dialer: self.dialer.as_deref_mut(),
            gateway: self.gateway,
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

impl Stack {
    /// Start the active opens the async tasks asked for in the round that
    /// just ran (and those still waiting for ARP): each gets a source port
    /// that steers home and a connection in SYN-SENT, whose SYN leaves at
    /// the end of the batch, or its error.
    pub(super) fn start_dials<E: Egress>(
        &mut self,
        net: &crate::rt::net::Net,
        service: ServiceId,
        now_ns: u64,
        egress: &mut E,
    ) {
        let timeout = connect_timeout_ns(self.tcp.borrow().tcp_config());
        for dial in net.dials() {
            let remote = dial.remote;
            let Some(dialer) = self.dialer.as_deref_mut() else {
                net.dial_failed(
                    dial.key,
                    io::Error::new(
                        io::ErrorKind::AddrNotAvailable,
                        "this worker has no source port range for active opens",
                    ),
                );
                continue;
            };
            let mac = match next_hop_mac(
                &self.iface,
                self.gateway,
                &mut self.neighbours,
                &mut dialer.arp_sent,
                &self.counters,
                egress,
                *remote.ip(),
                now_ns,
            ) {
                Ok(mac) => mac,
                Err(ConnectError::Resolving(_)) if now_ns.saturating_sub(dial.since) < timeout => {
                    continue
                }
                Err(ConnectError::Resolving(hop)) => {
                    net.dial_failed(
                        dial.key,
                        io::Error::new(
                            io::ErrorKind::HostUnreachable,
                            format!("no ARP reply from {hop}"),
                        ),
                    );
                    continue;
                }
                Err(error) => {
                    net.dial_failed(
                        dial.key,
                        io::Error::new(io::ErrorKind::NetworkUnreachable, error.to_string()),
                    );
                    continue;
                }
            };
            let local_ip = self.iface.ip;
            let picked = {
                let table = self.tcp.borrow();
                dialer.ports.borrow_mut().pick(
                    u8::from(IpProtocol::Tcp),
                    local_ip,
                    *remote.ip(),
                    remote.port(),
                    |port| {
                        table
                            .state_of(&FourTuple {
                                local_ip,
                                local_port: port,
                                remote_ip: *remote.ip(),
                                remote_port: remote.port(),
                            })
                            .is_some()
                    },
                )
            };
            let port = match picked {
                Ok(port) => port,
                Err(error) => {
                    net.dial_failed(
                        dial.key,
                        io::Error::new(io::ErrorKind::AddrNotAvailable, error.to_string()),
                    );
                    continue;
                }
            };
            let tuple = FourTuple {
                local_ip,
                local_port: port,
                remote_ip: *remote.ip(),
                remote_port: remote.port(),
            };
            let opened = {
                let (mut tcp, services, counters, mut out) = self.tcp_parts(egress);
                tcp.connect(tuple, mac, service, services, counters, now_ns, &mut out)
            };
            match opened {
                Ok(id) => net.dial_opened(dial.key, id, SocketAddrV4::new(local_ip, port)),
                Err(reason) => {
                    self.counters.count_drop(reason);
                    net.dial_failed(
                        dial.key,
                        io::Error::other(ConnectError::TableFull.to_string()),
                    );
                }
            }
        }
    }
}

/// The application's handle on the stack during [`Stack::poll_app`].
struct ClientIo<'a, E: Egress> {
    iface: &'a Interface,
    client: &'a mut Client,
    dialer: Option<&'a mut Dialer>,
    gateway: Option<Ipv4Addr>,
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
        let dialer = self
            .dialer
            .as_deref_mut()
            .ok_or(ConnectError::NoPortRange)?;
        next_hop_mac(
            self.iface,
            self.gateway,
            self.neighbours,
            &mut dialer.arp_sent,
            self.counters,
            &mut *self.egress,
            ip,
            self.now_ns,
        )
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
        let dialer = self
            .dialer
            .as_deref_mut()
            .ok_or(ConnectError::NoPortRange)?;
        let port = dialer.ports.borrow_mut().pick(
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
        let dialer = self
            .dialer
            .as_deref_mut()
            .ok_or(ConnectError::NoPortRange)?;
        let port = dialer.ports.borrow_mut().pick(
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
        let mode = self.egress.tx_checksum();
        super::outbox::write_udp_frame(
            buf.data_mut(),
            mode,
            self.iface,
            mac,
            local_port,
            remote,
            payload,
        );
        if let Some(request) = mode.request(crate::port::L4Offload::Udp) {
            buf.request_tx_offload(request);
        }
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
