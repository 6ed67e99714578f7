//! The stack's glue to the TCP table ([`crate::tcp`]): segments in (checked,
//! then to their connection, to a pinned kernel flow, or to the rules for a
//! new flow), segments out (framed into Ethernet and IPv4 by [`emit_tcp`]),
//! the timers, RX bursts, and ICMP "fragmentation needed" for path MTU
//! discovery.

use super::ipv4::{drop_reason, ip_checksum_mode, Ipv4Info};
use super::kernel_pins::opens_a_flow;
use super::{Disposition, Egress, FlowKey, Interface, Stack, DEFAULT_TTL};
use crate::config::{Action, Protocol};
use crate::counters::{DropReason, WorkerCounters};
use crate::port::{L4Offload, PacketBuf, RxChecksum, TxChecksum, TxOffloadRequest, BURST};
use crate::rss::tcp_flow_of_frame;
use crate::service::Services;
use crate::tcp::table::{Input, Outgoing, TcpTable};
use crate::tcp::FourTuple;
use crate::wire::{
    checksum, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpHeader,
    TcpPacket, WireError, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN,
};
use arrayvec::ArrayVec;

impl Stack {
    /// The TCP table, its services, the counters, and the output that
    /// frames the table's segments into `egress`: what every call into the
    /// table needs, borrowed apart.
    pub(super) fn tcp_parts<'a, E: Egress>(
        &'a mut self,
        egress: &'a mut E,
    ) -> (
        std::cell::RefMut<'a, TcpTable>,
        &'a mut Services,
        &'a WorkerCounters,
        impl FnMut(Outgoing<'_>) + 'a,
    ) {
        let Stack {
            iface,
            counters,
            tcp,
            services,
            ..
        } = self;
        let iface = &*iface;
        let counters = &**counters;
        let out = move |o: Outgoing<'_>| emit_tcp(iface, counters, egress, o);
        (tcp.borrow_mut(), services, counters, out)
    }

    /// Run the TCP timers due at `now_ns`; segments they cause go to `egress`.
    pub fn poll<E: Egress>(&mut self, now_ns: u64, egress: &mut E) {
        {
            let (mut tcp, services, counters, mut out) = self.tcp_parts(egress);
            tcp.poll(services, counters, now_ns, &mut out);
        }
        self.flush_outbox(egress);
    }

    /// Start an RX burst: until [`Stack::end_burst`], the TCP connections'
    /// answers to the burst's segments wait, and each connection then sends
    /// once (one ACK for all its segments, as for a GRO-merged segment).
    /// Without it, [`Stack::process`] answers every segment at once.
    pub fn begin_burst(&mut self) {
        self.tcp.borrow_mut().begin_batch();
    }

    /// Before an RX burst is processed: once the TCP table has outgrown the
    /// caches ([`TcpTable::wants_prefetch`]), look up every segment's
    /// connection now and prefetch it, so that the burst's cache and TLB
    /// misses overlap instead of stalling each segment in turn. Frames that
    /// are not unfragmented IPv4 TCP are passed over; nothing is changed or
    /// counted. With a small table this is one branch per burst.
    #[inline]
    pub fn prefetch_burst<B: PacketBuf>(&self, burst: &[B]) {
        if self.tcp.borrow().wants_prefetch() {
            self.look_ahead(burst);
        }
    }

    /// [`Stack::prefetch_burst`]'s work, kept out of line so that the RX
    /// loop of a worker with a small table carries only the check.
    #[inline(never)]
    fn look_ahead<B: PacketBuf>(&self, burst: &[B]) {
        let tcp = self.tcp.borrow();
        let tuples: ArrayVec<FourTuple, BURST> = burst
            .iter()
            .filter_map(|pkt| tcp_flow_of_frame(pkt.data()))
            .map(|(src, sport, dst, dport)| FourTuple {
                local_ip: dst,
                local_port: dport,
                remote_ip: src,
                remote_port: sport,
            })
            .take(BURST)
            .collect();
        tcp.prefetch(&tuples);
    }

    /// End the RX burst begun by [`Stack::begin_burst`]: send what the
    /// connections owe.
    pub fn end_burst<E: Egress>(&mut self, now_ns: u64, egress: &mut E) {
        {
            let (mut tcp, services, counters, mut out) = self.tcp_parts(egress);
            tcp.end_batch(services, counters, now_ns, &mut out);
        }
        self.flush_outbox(egress);
    }

    /// Reset every TCP connection (the worker is stopping).
    pub fn abort_connections<E: Egress>(&mut self, now_ns: u64, egress: &mut E) {
        let (mut tcp, services, counters, mut out) = self.tcp_parts(egress);
        tcp.abort_all(services, counters, now_ns, &mut out);
    }

    pub(super) fn process_tcp<B: PacketBuf, E: Egress<Buf = B>>(
        &mut self,
        pkt: &mut B,
        info: Ipv4Info,
        l4_checksum: RxChecksum,
        now_ns: u64,
        egress: &mut E,
    ) -> Disposition {
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
            let (mut tcp, services, counters, mut out) = self.tcp_parts(egress);
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
                return Disposition::Kernel;
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
                let (mut tcp, services, counters, mut out) = self.tcp_parts(egress);
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
                Disposition::Kernel
            }
            Action::Service(_) | Action::Drop => self.dropped(DropReason::Rule),
        }
    }

    /// An ICMP "fragmentation needed" quoting one of our TCP segments: the
    /// connection lowers its MSS. `message` is the ICMP message, already
    /// checked (at least its 8-byte header). Returns whether a connection
    /// took it (if not, the message is the kernel's).
    pub(super) fn path_mtu<E: Egress>(
        &mut self,
        message: &[u8],
        now_ns: u64,
        egress: &mut E,
    ) -> bool {
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
        let (mut table, services, counters, mut out) = self.tcp_parts(egress);
        table.path_mtu(&tuple, seq, mtu, services, counters, now_ns, &mut out)
    }
}

/// Frame a TCP segment and hand it to `egress`: Ethernet to the peer's MAC,
/// IPv4 with DF set (path MTU discovery), the TCP header and payload, and
/// the checksums in software or, where the queue offloads them
/// ([`Egress::tx_checksum`]), the pseudo-header sum and the mbuf's request.
///
/// A segment larger than one frame ([`Outgoing::segment_size`]) goes as
/// one frame that the NIC cuts (TSO) where the queue has a buffer for it
/// ([`Egress::alloc_large`]); otherwise the stack cuts it here, each frame
/// with the same header but its own sequence number, FIN and PSH on the
/// last only: what the connection did per MSS before, less its per-segment
/// work.
fn emit_tcp<E: Egress>(
    iface: &Interface,
    counters: &WorkerCounters,
    egress: &mut E,
    segment: Outgoing<'_>,
) {
    let (first, second) = segment.payload;
    let payload_len = first.len() + second.len();
    let size = usize::from(segment.segment_size);
    if size == 0 || payload_len <= size {
        let Some(buf) = egress.alloc() else {
            counters.count_drop(DropReason::NoBuffer);
            return;
        };
        emit_frame(
            iface,
            counters,
            egress,
            buf,
            &segment,
            segment.header,
            0..payload_len,
            0,
        );
        return;
    }
    if let Some(buf) = egress.alloc_large() {
        counters.tcp_tso_segments.inc();
        emit_frame(
            iface,
            counters,
            egress,
            buf,
            &segment,
            segment.header,
            0..payload_len,
            segment.segment_size,
        );
        return;
    }
    let last_flags = segment.header.flags;
    let mut header = *segment.header;
    header.flags = TcpFlags(last_flags.0 & !(TcpFlags::FIN.0 | TcpFlags::PSH.0));
    let mut offset = 0;
    while offset < payload_len {
        let end = (offset + size).min(payload_len);
        if end == payload_len {
            header.flags = last_flags;
        }
        let Some(buf) = egress.alloc() else {
            // This frame and the rest of the segment (the connection
            // resends them), each a drop.
            let lost = (payload_len - offset).div_ceil(size) as u64;
            counters.drops[DropReason::NoBuffer as usize].add(lost);
            return;
        };
        emit_frame(
            iface,
            counters,
            egress,
            buf,
            &segment,
            &header,
            offset..end,
            0,
        );
        header.seq = header.seq.wrapping_add((end - offset) as u32);
        offset = end;
    }
}

/// One frame of `segment` in `buf`: `header` and the payload bytes `range`
/// (offsets into the segment's payload); `tso` non-zero asks the NIC to cut
/// it into frames of that many payload bytes.
#[allow(clippy::too_many_arguments)]
fn emit_frame<E: Egress>(
    iface: &Interface,
    counters: &WorkerCounters,
    egress: &mut E,
    mut buf: E::Buf,
    segment: &Outgoing<'_>,
    header: &TcpHeader,
    range: std::ops::Range<usize>,
    tso: u16,
) {
    let header_len = header.header_len();
    let tcp_len = header_len + range.len();
    let frame_len = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + tcp_len;
    if !buf.set_len(frame_len) {
        counters.count_drop(DropReason::NoBuffer);
        return;
    }
    let mode = egress.tx_checksum();
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
    let ip_mode = if tso != 0 { TxChecksum::Full } else { mode };
    ip_repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut *ip_bytes),
        ip_checksum_mode(ip_mode),
    );
    let tcp_bytes = &mut ip_bytes[IPV4_HEADER_LEN..];
    header.emit(tcp_bytes);
    copy_payload(segment.payload, range, &mut tcp_bytes[header_len..]);
    let mut tcp = TcpPacket::new_unchecked(&mut *tcp_bytes);
    if tso != 0 {
        // The NIC writes each frame's length into its pseudo-header sum.
        tcp.set_checksum(checksum::pseudo_header(
            segment.tuple.local_ip,
            segment.tuple.remote_ip,
            IpProtocol::Tcp,
            0,
        ));
        buf.request_tx_offload(TxOffloadRequest::tcp_segmentation(header_len as u8, tso));
    } else {
        if mode.l4_offloaded() {
            tcp.fill_pseudo_header_checksum(segment.tuple.local_ip, segment.tuple.remote_ip);
        } else {
            tcp.fill_checksum(segment.tuple.local_ip, segment.tuple.remote_ip);
        }
        if let Some(request) = mode.request(L4Offload::Tcp) {
            buf.request_tx_offload(request);
        }
    }
    egress.send(buf);
}

/// Copy the bytes `range` of a payload held in two parts (the send buffer
/// is a ring) into `out`, which is exactly as long as the range.
fn copy_payload((first, second): (&[u8], &[u8]), range: std::ops::Range<usize>, out: &mut [u8]) {
    let split = first.len();
    if range.end <= split {
        out.copy_from_slice(&first[range]);
    } else if range.start >= split {
        out.copy_from_slice(&second[range.start - split..range.end - split]);
    } else {
        let head = split - range.start;
        out[..head].copy_from_slice(&first[range.start..]);
        out[head..].copy_from_slice(&second[..range.end - split]);
    }
}
