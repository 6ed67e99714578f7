//! ARP: requests for our address are answered in place, senders learnt
//! into the neighbour cache (RFC 826), conflicts and martians dropped.

use super::{Disposition, Stack};
use crate::counters::DropReason;
use crate::port::PacketBuf;
use crate::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetFrame};

impl Stack {
    pub(super) fn process_arp<B: PacketBuf>(&mut self, pkt: &mut B, now_ns: u64) -> Disposition {
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
                Disposition::Transmit
            }
            // Replies for us are the kernel's business too (it shares our
            // address and may have asked); without a kernel, one that
            // answered our own request was all ours. Others' requests are
            // not ours.
            ArpOperation::Reply if for_us && (self.kernel_port || !learn) => Disposition::Kernel,
            ArpOperation::Reply if for_us => Disposition::Consumed,
            _ => self.dropped(DropReason::NotForUs),
        }
    }
}
