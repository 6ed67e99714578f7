//! UDP: datagrams to the embedded app's bound ports, then to the async
//! tasks' client ports ([`crate::rt::UdpSocket::bind_ephemeral`]), then to
//! the rules' services; an echo is answered in place (ports swapped), with inetd's loop
//! protection.

use std::net::SocketAddrV4;

use super::ipv4::Ipv4Info;
use super::outbox::OutboxIo;
use super::{Disposition, FlowKey, Stack};
use crate::config::ServiceId;
use crate::config::{Action, Protocol};
use crate::counters::DropReason;
use crate::port::{PacketBuf, RxChecksum};
use crate::rt::udp::{Delivery, SendOutcome, RESOLVE_WAIT_NS};
use crate::service::{Datagram, UdpAction};
use crate::wire::{UdpPacket, ETHERNET_HEADER_LEN};

impl Stack {
    /// A UDP datagram for us: the app's bound ports first, then the tasks'
    /// client ports (whatever the rules say, as TCP looks for a connection
    /// before them), then the rules and the UDP services; an echo is answered in place.
    pub(super) fn process_udp<B: PacketBuf>(
        &mut self,
        pkt: &mut B,
        info: Ipv4Info,
        l4_checksum: RxChecksum,
        now_ns: u64,
    ) -> Disposition {
        let l4_start = ETHERNET_HEADER_LEN + info.header_len;
        let l4_end = ETHERNET_HEADER_LEN + info.total_len;
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
                if let Some(app) = self.services.app_mut() {
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
        if let Some(tasks) = &self.tasks {
            let mut reactor = tasks.net.reactor().borrow_mut();
            let sockets = reactor.udp_mut();
            if sockets.is_client_port(dst_port) {
                self.counters.udp_rx.inc();
                let from = SocketAddrV4::new(info.src, src_port);
                match sockets.deliver(dst_port, from, udp.payload()) {
                    Delivery::Queued => {}
                    Delivery::Overflow => self.counters.count_drop(DropReason::UdpSocketOverflow),
                    Delivery::NoSocket => self.counters.count_drop(DropReason::UdpNoSocket),
                }
                return Disposition::Consumed;
            }
        }
        let verdict = self.rules.classify(Protocol::Udp, dst_port);
        self.count_rule_hit(verdict.rule);
        let kind = match verdict.action {
            Action::Service(kind) => kind,
            Action::Kernel => return Disposition::Kernel,
            Action::Drop => return self.dropped(DropReason::Rule),
        };
        if answers(kind) {
            if let Some(reason) = self.refuses_to_answer(src_port) {
                return self.dropped(reason);
            }
        }
        let Stack {
            services,
            outbox,
            iface,
            gateway,
            neighbours,
            ..
        } = self;
        let payload = udp.payload();
        let action = services.on_datagram(kind, || {
            let datagram = Datagram {
                from: SocketAddrV4::new(info.src, src_port),
                to: SocketAddrV4::new(info.dst, dst_port),
                payload,
            };
            let io = OutboxIo {
                outbox,
                iface,
                gateway: *gateway,
                neighbours,
                now_ns,
            };
            (datagram, io)
        });
        let Some(action) = action else {
            return self.dropped(DropReason::Rule);
        };
        self.counters.udp_rx.inc();
        match action {
            UdpAction::EchoBack => {
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
                Disposition::Transmit
            }
            UdpAction::Consume => Disposition::Consumed,
        }
    }

    /// Move the datagrams the async tasks' sockets sent into the outbox
    /// ([`crate::rt::udp`]): each whose next hop has a MAC; the others wait
    /// for ARP (a request per next hop every [`ARP_RETRY_NS`]) up to
    /// [`RESOLVE_WAIT_NS`], then are dropped and counted, as are those with
    /// no route. A full outbox keeps them for the next round.
    pub(super) fn send_task_datagrams(&mut self, now_ns: u64) {
        let Stack {
            tasks: Some(tasks),
            outbox,
            iface,
            gateway,
            neighbours,
            counters,
            ..
        } = self
        else {
            return;
        };
        let mut reactor = tasks.net.reactor().borrow_mut();
        if !reactor.udp().has_sends() {
            tasks.arp_asked.clear();
            return;
        }
        let asked = &mut tasks.arp_asked;
        asked.retain(|_, at| now_ns.saturating_sub(*at) < RESOLVE_WAIT_NS);
        reactor
            .udp_mut()
            .drain_sends(|local_port, to, payload, queued_ns| {
                let Some(hop) = iface.next_hop(*gateway, *to.ip()) else {
                    counters.count_drop(DropReason::UdpUnresolved);
                    return SendOutcome::Dropped;
                };
                if let Some(mac) = neighbours.lookup(hop, now_ns) {
                    return if outbox.queue(mac, local_port, to, payload) {
                        SendOutcome::Sent
                    } else {
                        SendOutcome::Retry
                    };
                }
                if now_ns.saturating_sub(queued_ns) >= RESOLVE_WAIT_NS {
                    counters.count_drop(DropReason::UdpUnresolved);
                    return SendOutcome::Dropped;
                }
                let due = asked
                    .get(&hop)
                    .is_none_or(|at| now_ns.saturating_sub(*at) >= ARP_RETRY_NS);
                if due && !outbox.resolve.contains(&hop) {
                    outbox.resolve.push(hop);
                    asked.insert(hop, now_ns);
                }
                SendOutcome::Retry
            });
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
    #[inline]
    fn refuses_to_answer(&self, src_port: u16) -> Option<DropReason> {
        if src_port == 0 {
            return Some(DropReason::SourcePortZero);
        }
        let service_port = src_port < 1024
            || matches!(
                self.rules.classify(Protocol::Udp, src_port).action,
                Action::Service(kind) if answers(kind)
            );
        service_port.then_some(DropReason::LoopProtection)
    }
}

/// How often an async socket's datagram waiting for its next hop asks
/// again (Linux's `retrans_time`).
const ARP_RETRY_NS: u64 = 1_000_000_000;

/// Whether datagrams to a port ruled to `service` may be answered: every
/// UDP service but discard is assumed to (echo does; a program's own may),
/// which is what loop protection needs to know.
#[inline]
fn answers(service: ServiceId) -> bool {
    service.supports(Protocol::Udp) && service != ServiceId::DISCARD
}
