//! Async UDP on the worker's executor: [`UdpSocket`].
//!
//! As with TCP ([`super::net`]), three parts meet, all on the worker's
//! thread:
//!
//! - The **UDP reactor** ([`UdpReactor`], a part of the worker's
//!   [`Reactor`](super::net::Reactor)): the bound ports of this worker, each
//!   with a bounded receive queue ([`RECV_QUEUE`] datagrams) and its
//!   reader's waker, and one bounded send queue for the worker
//!   ([`SEND_QUEUE`] datagrams, [`SEND_BYTES`] payload bytes) with the
//!   wakers of the tasks that found it full.
//! - The **bridge** (`service::AsyncUdpBridge`): the UDP service the rules
//!   name for an async service. The stack calls it inside its RX processing,
//!   where no task runs; it copies the payload once into the receive queue
//!   of its port ([`UdpReactor::deliver`]) and wakes the reader. A full queue
//!   or a port no socket of this worker is bound to drops the datagram, and
//!   the bridge counts it (`udp_socket_overflow`, `udp_no_socket`).
//! - The **tasks**: [`UdpSocket::recv_from`] takes from the queue;
//!   [`UdpSocket::send_to`] copies into the send queue, which the stack
//!   drains after the executor's round ([`UdpReactor::drain_sends`]): it
//!   resolves each next hop in the worker's neighbour cache and frames the
//!   datagram into the egress of that round. A datagram whose next hop has
//!   no MAC yet waits in the queue while ARP asks for it, up to
//!   [`RESOLVE_WAIT_NS`], and is then dropped and counted
//!   (`udp_unresolved`), as is one with no route.
//!
//! **Client ports.** [`UdpSocket::bind`] binds a port the rules give the
//! service; [`UdpSocket::bind_ephemeral`] binds a free source port of
//! `[interface] local_ports` that steers the replies of one destination
//! home (the port picker of TCP's active opens), and
//! [`UdpSocket::bind_local_port`] a given port of that range. Datagrams to
//! such a *client port* reach its socket whatever the rules say: the stack
//! looks for one before the rules, as it looks for a TCP connection before
//! them.
//!
//! `send_to` never drops silently: a full send queue parks the task until
//! the stack has drained the queue (the end of the round), the async
//! counterpart of a blocking socket's full send buffer, so a task that
//! sends faster than the egress takes is slowed down rather than losing
//! datagrams. Its `Ok(n)` means "queued", as the kernel's does.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use hashbrown::HashMap;

use super::net::Net;
use crate::rss::PortPicker;

/// Most datagrams waiting in one socket's receive queue; more are dropped
/// and counted as `udp_socket_overflow`.
pub const RECV_QUEUE: usize = 256;

/// Most datagrams waiting in a worker's send queue; a task that finds it
/// full waits for the end of the round.
pub const SEND_QUEUE: usize = 256;

/// Most payload bytes waiting in a worker's send queue.
pub const SEND_BYTES: usize = 256 * 1024;

/// The longest payload one datagram may carry: one 1500-byte frame, as
/// shardnet does not fragment.
pub const MAX_PAYLOAD: usize = 1500 - 20 - 8;

/// How long a datagram waits for its next hop's MAC (ARP) before it is
/// dropped and counted (`udp_unresolved`): about Linux's three ARP probes.
pub const RESOLVE_WAIT_NS: u64 = 3_000_000_000;

/// One bound port of this worker.
#[derive(Debug, Default)]
struct Bound {
    /// The only sender accepted, once connected.
    peer: Option<SocketAddrV4>,
    queue: VecDeque<(SocketAddrV4, Vec<u8>)>,
    reader: Option<Waker>,
    /// Buffers of datagrams already read, reused by the next ones.
    spare: Vec<Vec<u8>>,
    /// A client port (of `[interface] local_ports`): delivered before the
    /// rules are looked at.
    client: bool,
}

/// A datagram a task sent, waiting for the stack.
#[derive(Debug)]
struct Outgoing {
    local_port: u16,
    to: SocketAddrV4,
    payload: Vec<u8>,
    /// When the task sent it.
    queued_ns: u64,
}

/// What [`UdpReactor::deliver`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the socket bound to its port.
    Queued,
    /// Dropped: the socket's receive queue was full.
    Overflow,
    /// Dropped: no socket of this worker is bound to its port, or the
    /// one bound there is connected to another peer.
    NoSocket,
}

/// What the stack did with a datagram of the send queue
/// ([`UdpReactor::drain_sends`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Framed, or queued for this round's egress: forget it.
    Sent,
    /// Not yet (its next hop is being resolved, or the egress is full for
    /// this round): keep it for the next round.
    Retry,
    /// Dropped and counted by the stack: forget it.
    Dropped,
}

/// The UDP side of a worker's async services (see the [module
/// documentation](self)).
#[derive(Debug, Default)]
pub struct UdpReactor {
    local_ip: Option<Ipv4Addr>,
    bound: HashMap<u16, Bound>,
    sends: VecDeque<Outgoing>,
    send_bytes: usize,
    /// Tasks that found the send queue full.
    senders: Vec<Waker>,
    /// The worker's source-port picker, shared with TCP's active opens.
    ports: Option<Rc<RefCell<PortPicker>>>,
}

impl UdpReactor {
    /// Set the worker's address (what [`UdpSocket::local_addr`] reports).
    pub fn set_local_ip(&mut self, ip: Ipv4Addr) {
        self.local_ip = Some(ip);
    }

    /// Give the worker's source-port picker (`[interface] local_ports`,
    /// shared with TCP's active opens) to [`UdpSocket::bind_ephemeral`] and
    /// [`UdpSocket::bind_local_port`].
    pub fn set_port_picker(&mut self, ports: Rc<RefCell<PortPicker>>) {
        self.ports = Some(ports);
    }

    /// Whether a socket of this worker is bound to `port`.
    pub fn is_bound(&self, port: u16) -> bool {
        self.bound.contains_key(&port)
    }

    /// Whether a socket of this worker is bound to `port` as a client port
    /// ([`UdpSocket::bind_ephemeral`], [`UdpSocket::bind_local_port`]):
    /// its datagrams go to that socket whatever the rules say.
    pub fn is_client_port(&self, port: u16) -> bool {
        self.bound.get(&port).is_some_and(|b| b.client)
    }

    /// Queue a datagram from `from` for the socket bound to `port`, copying
    /// `payload`, and wake its reader.
    pub fn deliver(&mut self, port: u16, from: SocketAddrV4, payload: &[u8]) -> Delivery {
        let Some(bound) = self.bound.get_mut(&port) else {
            return Delivery::NoSocket;
        };
        if bound.peer.is_some_and(|peer| peer != from) {
            return Delivery::NoSocket;
        }
        if bound.queue.len() >= RECV_QUEUE {
            return Delivery::Overflow;
        }
        let mut buf = bound.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        bound.queue.push_back((from, buf));
        if let Some(waker) = bound.reader.take() {
            waker.wake();
        }
        Delivery::Queued
    }

    /// Whether datagrams wait in the send queue.
    pub fn has_sends(&self) -> bool {
        !self.sends.is_empty()
    }

    /// Hand each waiting datagram, in order, to `send` (with its local
    /// port, destination, payload and the time it was queued); keep those
    /// it answers [`SendOutcome::Retry`] for, and wake the tasks that found
    /// the queue full once there is room.
    pub fn drain_sends(
        &mut self,
        mut send: impl FnMut(u16, SocketAddrV4, &[u8], u64) -> SendOutcome,
    ) {
        let mut bytes = self.send_bytes;
        self.sends.retain(
            |d| match send(d.local_port, d.to, &d.payload, d.queued_ns) {
                SendOutcome::Retry => true,
                SendOutcome::Sent | SendOutcome::Dropped => {
                    bytes -= d.payload.len();
                    false
                }
            },
        );
        self.send_bytes = bytes;
        if self.sends.len() < SEND_QUEUE && self.send_bytes < SEND_BYTES {
            for waker in self.senders.drain(..) {
                waker.wake();
            }
        }
    }
}

/// A UDP socket of this worker, for its tasks: it receives the datagrams
/// that the rules give an async service on its port and RSS (or steering)
/// gives this worker, as each `SO_REUSEPORT` socket does on Linux; every
/// worker binds its own. Like tokio's, each send names its destination,
/// unless [`connect`](UdpSocket::connect) set a peer for
/// [`send`](UdpSocket::send) and [`recv`](UdpSocket::recv). Dropping it
/// unbinds the port; datagrams it had not read are discarded, those it
/// sent still leave.
#[derive(Debug)]
pub struct UdpSocket {
    net: Rc<Net>,
    port: u16,
}

impl UdpSocket {
    /// Bind `port` on this worker.
    ///
    /// # Errors
    /// `AddrInUse` when a socket of this worker is bound there already;
    /// `InvalidInput` for port 0 (a client socket is
    /// [`bind_ephemeral`](Self::bind_ephemeral)'s); `Other` outside a
    /// worker's task.
    pub fn bind(port: u16) -> io::Result<UdpSocket> {
        if port == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shardnet::rt::UdpSocket::bind takes a port the rules give its service, not port 0 \
                 (bind_ephemeral binds a client port)",
            ));
        }
        let net = Net::current()?;
        {
            let mut reactor = net.reactor().borrow_mut();
            let udp = reactor.udp_mut();
            if udp.is_bound(port) {
                return Err(io::ErrorKind::AddrInUse.into());
            }
            udp.bound.insert(port, Bound::default());
        }
        Ok(UdpSocket { net, port })
    }

    /// Bind a free source port of `[interface] local_ports` whose replies
    /// from `remote` come to this worker (under RSS or software steering:
    /// the port picker of TCP's active opens), and connect to `remote`, as
    /// `bind("0.0.0.0:0")` then `connect(remote)` do on Linux. Datagrams to
    /// the port reach this socket whatever the rules say. Dropping it frees
    /// the port.
    ///
    /// # Errors
    /// `InvalidInput` for a destination with address or port 0;
    /// `AddrNotAvailable` when every port of the range that comes home from
    /// `remote` is bound already, when the replies from `remote` land on
    /// another worker whatever the port (a NIC that hashes addresses only:
    /// the message names that worker), or when the worker has no port
    /// range; `Other` outside a worker's task.
    pub fn bind_ephemeral(remote: SocketAddrV4) -> io::Result<UdpSocket> {
        check_destination(remote)?;
        let net = Net::current()?;
        let port = {
            let mut reactor = net.reactor().borrow_mut();
            let udp = reactor.udp_mut();
            let ports = udp.ports.clone().ok_or_else(no_port_range)?;
            let local = udp.local_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let port = ports
                .borrow_mut()
                .pick(17, local, *remote.ip(), remote.port(), |port| {
                    udp.bound.contains_key(&port)
                })
                .map_err(|e| io::Error::new(io::ErrorKind::AddrNotAvailable, e.to_string()))?;
            udp.bound.insert(
                port,
                Bound {
                    client: true,
                    peer: Some(remote),
                    ..Bound::default()
                },
            );
            port
        };
        Ok(UdpSocket { net, port })
    }

    /// Bind `port` of `[interface] local_ports` on this worker as a client
    /// port: datagrams to it reach this socket whatever the rules say. Its
    /// replies come to this worker only from the destinations it steers
    /// home; a socket for any destination binds the same port on every
    /// worker (as [`crate::net::blocking::UdpSocket`] does for port 0).
    ///
    /// # Errors
    /// `AddrInUse` when a socket of this worker is bound there already;
    /// `AddrNotAvailable` for a port outside the range, or when the worker
    /// has no range; `Other` outside a worker's task.
    pub fn bind_local_port(port: u16) -> io::Result<UdpSocket> {
        let net = Net::current()?;
        {
            let mut reactor = net.reactor().borrow_mut();
            let udp = reactor.udp_mut();
            let (first, last) = udp
                .ports
                .as_ref()
                .ok_or_else(no_port_range)?
                .borrow()
                .range();
            if !(first..=last).contains(&port) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("port {port} is not in [interface] local_ports ({first}-{last})"),
                ));
            }
            if udp.is_bound(port) {
                return Err(io::ErrorKind::AddrInUse.into());
            }
            udp.bound.insert(
                port,
                Bound {
                    client: true,
                    ..Bound::default()
                },
            );
        }
        Ok(UdpSocket { net, port })
    }

    /// Our address (the worker's interface address) and port.
    pub fn local_addr(&self) -> SocketAddrV4 {
        let ip = self.net.reactor().borrow().udp().local_ip;
        SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), self.port)
    }

    /// Talk to `peer` only, as `connect` does on a kernel UDP socket: from
    /// now on [`send`](Self::send) goes there and datagrams from any other
    /// sender are dropped (counted as `udp_no_socket`, as the kernel would
    /// find no socket for them). As on Linux, datagrams already queued stay.
    /// Connecting again changes the peer.
    ///
    /// # Errors
    /// `InvalidInput` for an address or port 0.
    pub fn connect(&self, peer: SocketAddrV4) -> io::Result<()> {
        check_destination(peer)?;
        let mut reactor = self.net.reactor().borrow_mut();
        if let Some(bound) = reactor.udp_mut().bound.get_mut(&self.port) {
            bound.peer = Some(peer);
        }
        Ok(())
    }

    /// The peer set by [`connect`](Self::connect).
    ///
    /// # Errors
    /// `NotConnected` when there is none.
    pub fn peer_addr(&self) -> io::Result<SocketAddrV4> {
        self.peer()
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }

    fn peer(&self) -> Option<SocketAddrV4> {
        let reactor = self.net.reactor().borrow();
        reactor.udp().bound.get(&self.port).and_then(|b| b.peer)
    }

    /// The next datagram from the connected peer: as
    /// [`recv_from`](Self::recv_from), without the sender.
    ///
    /// # Errors
    /// None today (the signature is `std`'s and tokio's).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, _) = self.recv_from(buf).await?;
        Ok(n)
    }

    /// Send `payload` to the connected peer: as [`send_to`](Self::send_to).
    ///
    /// # Errors
    /// `NotConnected` without [`connect`](Self::connect); as
    /// [`send_to`](Self::send_to) otherwise.
    pub async fn send(&self, payload: &[u8]) -> io::Result<usize> {
        let peer = self.peer_addr()?;
        self.send_to(payload, peer).await
    }

    /// The next datagram: copies what fits of its payload into `buf` (the
    /// rest is discarded, as `std`'s `recv_from` does) and returns the
    /// length copied and the sender.
    ///
    /// # Errors
    /// None today (the signature is `std`'s and tokio's).
    pub fn recv_from<'a>(&'a self, buf: &'a mut [u8]) -> RecvFrom<'a> {
        RecvFrom { socket: self, buf }
    }

    /// [`recv_from`](Self::recv_from) as a poll function.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddrV4)>> {
        let mut reactor = self.net.reactor().borrow_mut();
        let Some(bound) = reactor.udp_mut().bound.get_mut(&self.port) else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let Some((from, payload)) = bound.queue.pop_front() else {
            bound.reader = Some(cx.waker().clone());
            return Poll::Pending;
        };
        let n = payload.len().min(buf.len());
        buf[..n].copy_from_slice(&payload[..n]);
        if bound.spare.len() < RECV_QUEUE {
            bound.spare.push(payload);
        }
        Poll::Ready(Ok((n, from)))
    }

    /// Send `payload` to `to` from this socket's port. The datagram is
    /// queued and leaves at the end of the executor's round (after an ARP
    /// exchange if its next hop is not known yet); when the worker's send
    /// queue is full, this waits for the end of the round. Returns the
    /// payload's length.
    ///
    /// # Errors
    /// `InvalidInput` for a payload longer than [`MAX_PAYLOAD`] (shardnet
    /// does not fragment) or a destination with address or port 0.
    pub fn send_to<'a>(&'a self, payload: &'a [u8], to: SocketAddrV4) -> SendTo<'a> {
        SendTo {
            socket: self,
            payload,
            to,
        }
    }

    /// [`send_to`](Self::send_to) as a poll function.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        payload: &[u8],
        to: SocketAddrV4,
    ) -> Poll<io::Result<usize>> {
        if payload.len() > MAX_PAYLOAD {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {}-byte datagram does not fit one frame ({MAX_PAYLOAD} bytes of payload)",
                    payload.len()
                ),
            )));
        }
        if let Err(e) = check_destination(to) {
            return Poll::Ready(Err(e));
        }
        let now = self.net.now_ns();
        let mut reactor = self.net.reactor().borrow_mut();
        let udp = reactor.udp_mut();
        if udp.sends.len() >= SEND_QUEUE || udp.send_bytes + payload.len() > SEND_BYTES {
            udp.senders.push(cx.waker().clone());
            return Poll::Pending;
        }
        udp.send_bytes += payload.len();
        udp.sends.push_back(Outgoing {
            local_port: self.port,
            to,
            payload: payload.to_vec(),
            queued_ns: now,
        });
        Poll::Ready(Ok(payload.len()))
    }
}

/// The error of a client bind on a worker with no source port range.
fn no_port_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::AddrNotAvailable,
        "this worker has no source port range ([interface] local_ports)",
    )
}

/// `InvalidInput` for a destination with address or port 0.
fn check_destination(to: SocketAddrV4) -> io::Result<()> {
    if to.ip().is_unspecified() || to.port() == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot send to {to}"),
        ));
    }
    Ok(())
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.net
            .reactor()
            .borrow_mut()
            .udp_mut()
            .bound
            .remove(&self.port);
    }
}

/// The future of [`UdpSocket::recv_from`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct RecvFrom<'a> {
    socket: &'a UdpSocket,
    buf: &'a mut [u8],
}

impl Future for RecvFrom<'_> {
    type Output = io::Result<(usize, SocketAddrV4)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.socket.poll_recv_from(cx, this.buf)
    }
}

/// The future of [`UdpSocket::send_to`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct SendTo<'a> {
    socket: &'a UdpSocket,
    payload: &'a [u8],
    to: SocketAddrV4,
}

impl Future for SendTo<'_> {
    type Output = io::Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.socket.poll_send_to(cx, self.payload, self.to)
    }
}
