//! Datagrams UDP services send ([`crate::service::UdpIo::send_to`]) while
//! they handle one: the next hop is resolved at once (so the service hears
//! `Resolving` or `NoRoute` at the call), the datagram waits here, and the
//! stack frames it into the egress at the end of the RX burst or timer
//! round. Bounded: a service that sends more in one round than
//! [`MAX_DATAGRAMS`] or [`MAX_BYTES`] is told `NoBuffer`.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{Egress, Interface, DEFAULT_TTL};
use crate::app::ConnectError;
use crate::counters::{DropReason, WorkerCounters};
use crate::neighbour::NeighbourCache;
use crate::port::{L4Offload, PacketBuf, TxChecksum};
use crate::service::UdpIo;
use crate::wire::{
    EtherType, EthernetAddress, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket,
    ETHERNET_HEADER_LEN, IPV4_HEADER_LEN,
};

/// Most datagrams waiting at once.
pub const MAX_DATAGRAMS: usize = 256;

/// Most payload bytes waiting at once.
pub const MAX_BYTES: usize = 256 * 1024;

/// The longest UDP payload one frame carries (1500-byte MTU).
pub const MAX_PAYLOAD: usize = 1500 - IPV4_HEADER_LEN - 8;

// The async sockets check their payloads against their own copy.
const _: () = assert!(MAX_PAYLOAD == crate::rt::udp::MAX_PAYLOAD);

struct Pending {
    mac: EthernetAddress,
    local_port: u16,
    to: SocketAddrV4,
    start: usize,
    len: usize,
}

/// The waiting datagrams, their payloads in one reused arena.
#[derive(Default)]
pub(super) struct Outbox {
    pending: Vec<Pending>,
    bytes: Vec<u8>,
    /// Next hops to send an ARP request for.
    pub(super) resolve: Vec<Ipv4Addr>,
}

impl Outbox {
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.resolve.is_empty()
    }

    /// Queue a datagram from our `local_port` to `to` through next hop
    /// `mac`; false when the outbox is full.
    pub(super) fn queue(
        &mut self,
        mac: EthernetAddress,
        local_port: u16,
        to: SocketAddrV4,
        payload: &[u8],
    ) -> bool {
        if self.pending.len() >= MAX_DATAGRAMS || self.bytes.len() + payload.len() > MAX_BYTES {
            return false;
        }
        self.pending.push(Pending {
            mac,
            local_port,
            to,
            start: self.bytes.len(),
            len: payload.len(),
        });
        self.bytes.extend_from_slice(payload);
        true
    }

    /// Frame every waiting datagram into `egress` (from `iface`).
    pub(super) fn flush<E: Egress>(
        &mut self,
        iface: &Interface,
        counters: &WorkerCounters,
        egress: &mut E,
    ) {
        for p in self.pending.drain(..) {
            let payload = &self.bytes[p.start..p.start + p.len];
            let udp_len = 8 + payload.len();
            let frame_len = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + udp_len;
            let Some(mut buf) = egress.alloc() else {
                counters.count_drop(DropReason::NoBuffer);
                continue;
            };
            if !buf.set_len(frame_len.max(60)) {
                counters.count_drop(DropReason::NoBuffer);
                continue;
            }
            let mode = egress.tx_checksum();
            write_udp_frame(
                buf.data_mut(),
                mode,
                iface,
                p.mac,
                p.local_port,
                p.to,
                payload,
            );
            if let Some(request) = mode.request(L4Offload::Udp) {
                buf.request_tx_offload(request);
            }
            counters.udp_tx.inc();
            egress.send(buf);
        }
        self.bytes.clear();
    }
}

/// Write a UDP datagram from our `local_port` to `to`, through next hop
/// `mac`, into `frame` (its length already set to the frame's, at least the
/// 60-byte Ethernet minimum; the bytes past the datagram are zeroed). With
/// an offloading `mode`, the checksum fields are left as the NIC wants them:
/// the caller then asks for the offload on the buffer.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_udp_frame(
    frame: &mut [u8],
    mode: TxChecksum,
    iface: &Interface,
    mac: EthernetAddress,
    local_port: u16,
    to: SocketAddrV4,
    payload: &[u8],
) {
    let udp_len = 8 + payload.len();
    let frame_len = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + udp_len;
    let mut eth = EthernetFrame::new_unchecked(&mut *frame);
    eth.set_dst_addr(mac);
    eth.set_src_addr(iface.mac);
    eth.set_ethertype(EtherType::Ipv4);
    let ip_bytes = &mut frame[ETHERNET_HEADER_LEN..];
    Ipv4Repr {
        src_addr: iface.ip,
        dst_addr: *to.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        ttl: DEFAULT_TTL,
    }
    .emit(
        &mut Ipv4Packet::new_unchecked(&mut *ip_bytes),
        super::ipv4::ip_checksum_mode(mode),
    );
    let udp_bytes = &mut ip_bytes[IPV4_HEADER_LEN..IPV4_HEADER_LEN + udp_len];
    let mut udp = UdpPacket::new_unchecked(&mut *udp_bytes);
    udp.set_src_port(local_port);
    udp.set_dst_port(to.port());
    udp.set_len(udp_len as u16);
    udp.payload_mut()[..payload.len()].copy_from_slice(payload);
    if mode.l4_offloaded() {
        udp.fill_pseudo_header_checksum(iface.ip, *to.ip());
    } else {
        udp.fill_checksum(iface.ip, *to.ip());
    }
    // Frames shorter than the Ethernet minimum carry zero padding.
    frame[frame_len..].fill(0);
}

/// A UDP service's handle during a datagram: resolves next hops in the
/// worker's neighbour cache and queues into the outbox.
pub(super) struct OutboxIo<'a> {
    pub(super) outbox: &'a mut Outbox,
    pub(super) iface: &'a Interface,
    pub(super) gateway: Option<Ipv4Addr>,
    pub(super) neighbours: &'a mut NeighbourCache,
    pub(super) now_ns: u64,
}

impl UdpIo for OutboxIo<'_> {
    fn send_to(
        &mut self,
        local_port: u16,
        to: SocketAddrV4,
        payload: &[u8],
    ) -> Result<(), ConnectError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(ConnectError::TooLong(payload.len()));
        }
        let hop = (self.iface)
            .next_hop(self.gateway, *to.ip())
            .ok_or(ConnectError::NoRoute(*to.ip()))?;
        let Some(mac) = self.neighbours.lookup(hop, self.now_ns) else {
            if !self.outbox.resolve.contains(&hop) && self.outbox.resolve.len() < MAX_DATAGRAMS {
                self.outbox.resolve.push(hop);
            }
            return Err(ConnectError::Resolving(hop));
        };
        if !self.outbox.queue(mac, local_port, to, payload) {
            return Err(ConnectError::NoBuffer);
        }
        Ok(())
    }

    fn now(&self) -> u64 {
        self.now_ns
    }
}
