//! IPv4 and ICMP: the header checks (checksum, fragments, destination,
//! martian sources), the dispatch to ICMP, UDP and TCP, the ICMP echo
//! answered in place, and the turn-around of a received frame into a reply.
//!
//! Swapping source and destination leaves the one's-complement sums of the
//! IPv4 header and of the UDP pseudo-header unchanged, so a reply built in
//! place needs only an incremental (RFC 1624) update of the IPv4 checksum
//! for the new TTL.

use std::net::Ipv4Addr;

use super::{Disposition, Egress, FlowKey, Stack, DEFAULT_TTL};
use crate::counters::DropReason;
use crate::port::{PacketBuf, RxChecksum};
use crate::wire::{
    checksum, ChecksumMode, EthernetFrame, Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet,
    IpProtocol, Ipv4Packet, WireError, ETHERNET_HEADER_LEN, IPV4_HEADER_LEN,
};

pub(super) fn drop_reason(error: WireError) -> DropReason {
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
pub(super) struct Ipv4Info {
    pub(super) header_len: usize,
    pub(super) total_len: usize,
    pub(super) protocol: IpProtocol,
    pub(super) src: Ipv4Addr,
    pub(super) dst: Ipv4Addr,
}

impl Stack {
    /// Validate the IPv4 header. `Ok(None)`: valid, but for the kernel (broadcast
    /// or multicast destination). Inlined into its one caller: the verdict
    /// then travels in registers, not through memory.
    #[inline]
    pub(super) fn check_ipv4(
        &self,
        frame: &[u8],
        ip_checksum: RxChecksum,
    ) -> Result<Option<Ipv4Info>, DropReason> {
        let bytes = frame.get(ETHERNET_HEADER_LEN..).unwrap_or_default();
        let checked = Ipv4Packet::new_checked(bytes).map_err(drop_reason)?;
        // The fixed part of the header read through a fixed-size view: the
        // field accessors then need no bounds checks. `new_checked` made sure
        // of the 20 bytes.
        let Some(head) = bytes.first_chunk::<IPV4_HEADER_LEN>() else {
            return Err(DropReason::Truncated);
        };
        let ip = Ipv4Packet::new_unchecked(head);
        let checksum_ok = match ip_checksum {
            RxChecksum::Good => true,
            RxChecksum::Bad => false,
            RxChecksum::Unknown | RxChecksum::Partial if ip.header_len() == 20 => {
                checksum::ipv4_header(head) == 0xffff
            }
            RxChecksum::Unknown | RxChecksum::Partial => checked.verify_checksum(),
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
        if self.martians.is_source(src) {
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

    pub(super) fn process_ipv4<B: PacketBuf, E: Egress<Buf = B>>(
        &mut self,
        pkt: &mut B,
        info: Ipv4Info,
        l4_checksum: RxChecksum,
        now_ns: u64,
        egress: &mut E,
    ) -> Disposition {
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
                    return Disposition::Kernel;
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
                Disposition::Transmit
            }
            IpProtocol::Udp => self.process_udp(pkt, info, l4_checksum, now_ns),
            IpProtocol::Tcp => self.process_tcp(pkt, info, l4_checksum, now_ns, egress),
            _ => Disposition::Kernel,
        }
    }

    /// Turn a received frame around: swap MACs and IPv4 addresses, reset the TTL
    /// and patch the header checksum incrementally.
    ///
    /// The headers are written through fixed-size array views, so the field
    /// setters need no bounds checks. Every caller's frame passed
    /// [`Stack::check_ipv4`], so it holds both; a shorter one is left alone.
    #[inline(always)]
    pub(super) fn turn_around_ipv4(&self, frame: &mut [u8], info: Ipv4Info) {
        let Some((eth, rest)) = frame.split_first_chunk_mut::<ETHERNET_HEADER_LEN>() else {
            return;
        };
        let Some(ip) = rest.first_chunk_mut::<IPV4_HEADER_LEN>() else {
            return;
        };
        // The protocol byte as received (offset 9), rather than converted
        // back from `info.protocol` through a jump table.
        let protocol = ip[9];
        let mut eth = EthernetFrame::new_unchecked(eth);
        let peer_mac = eth.src_addr();
        eth.set_dst_addr(peer_mac);
        eth.set_src_addr(self.iface.mac);
        let mut ip = Ipv4Packet::new_unchecked(ip);
        ip.set_src_addr(info.dst);
        ip.set_dst_addr(info.src);
        let old_word = u16::from_be_bytes([ip.ttl(), protocol]);
        let new_word = u16::from_be_bytes([DEFAULT_TTL, protocol]);
        ip.set_ttl(DEFAULT_TTL);
        ip.set_checksum(checksum::update(ip.checksum(), old_word, new_word));
    }
}

/// The IPv4 header's [`ChecksumMode`] on transmit under `mode`.
#[inline]
pub(super) fn ip_checksum_mode(mode: crate::port::TxChecksum) -> ChecksumMode {
    if mode.ipv4_offloaded() {
        ChecksumMode::Offload
    } else {
        ChecksumMode::Software
    }
}
