//! Async TCP on the worker's executor: [`TcpListener`] and [`TcpStream`],
//! backed by the worker's own TCP table.
//!
//! Three parts meet here, all on the worker's thread:
//!
//! - The **reactor** ([`Reactor`]): a slab of sockets (per connection its
//!   [`ConnId`], a read waker, a write waker and a few flags) and the
//!   listeners by local port (an accept queue of sockets and the acceptor's
//!   waker). It holds no bytes: data stays in the connection's buffers in
//!   the table.
//! - The **bridge** ([`AsyncBridge`]): a [`TcpService`] registered like any
//!   other (see `service::Registry::add_async`). The table calls it on a
//!   connection's events, and all it does is bookkeeping and waking: a new
//!   connection becomes a socket in its listener's accept queue (or is reset
//!   and counted when nothing listens on its port on this worker), readable
//!   and peer-closed events wake the reader, writable the writer, closed
//!   both. It never touches the table (the table is calling it).
//! - The **tasks**: [`TcpStream`] reads and writes through
//!   [`TcpTable::with_connection`] on the table shared with the stack
//!   (`Rc<RefCell<TcpTable>>`). Tasks run only in `Stack::run_tasks`,
//!   between RX bursts, when the stack holds no borrow of the table; what
//!   they queue leaves at the `end_batch` that follows the executor's
//!   round. A read copies from the receive buffer into the caller's buffer
//!   and consumes; a write copies into the send buffer (a full buffer
//!   parks the writer until `on_writable`).
//!
//! The context ([`Net`]: the table, the reactor and the round's clock) is a
//! thread-local set by [`Net::enter`] while the worker runs its tasks, which
//! is how [`TcpListener::bind`] finds its worker. Streams and listeners keep
//! an `Rc` to it, so dropping one outside a round (when the executor is
//! dropped) still closes its connection.
//!
//! Panics: each socket records the task that last polled it (or accepted
//! it). When a task panics, [`Net::abort_owned_by`] resets the connections
//! it owned, so the peer sees a reset rather than a clean end of a
//! response cut short.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use super::executor::{current_task, TaskId};
use crate::counters::WorkerCounters;
use crate::tcp::service::{Closed, ConnId, TcpIo, TcpService};
use crate::tcp::table::TcpTable;

/// One connection as the async side sees it.
#[derive(Debug)]
struct Socket {
    id: ConnId,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    read: Option<Waker>,
    write: Option<Waker>,
    /// The connection is gone for its service (`on_closed`).
    closed: bool,
    /// It ended abruptly.
    reset: bool,
    /// It ended because the peer stopped answering.
    timed_out: bool,
    /// It reached ESTABLISHED (an active open starts without).
    established: bool,
    /// The bytes that were still unread when the peer's FIN came, moved
    /// out of the connection: it may close entirely (both FINs) before
    /// the task reads them.
    tail: VecDeque<u8>,
    /// We closed our sending side.
    shut: bool,
    /// An accept queue or a [`TcpStream`] holds the socket.
    held: bool,
    /// The task that last used it.
    owner: Option<TaskId>,
}

/// A listening port of one worker.
#[derive(Debug, Default)]
struct Listener {
    queue: VecDeque<usize>,
    waker: Option<Waker>,
}

/// An active open asked for by [`TcpStream::connect`], until the stack
/// starts it (or fails it) after the executor's round.
#[derive(Debug)]
struct Dial {
    remote: SocketAddrV4,
    /// When it was asked for.
    since: u64,
    waker: Option<Waker>,
    /// The stack's answer: the socket of the connection it opened, or why
    /// it could not.
    outcome: Option<io::Result<usize>>,
}

/// An active open the stack has still to start: see [`Net::dials`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialRequest {
    /// Names it in [`Net::dial_opened`] and [`Net::dial_failed`].
    pub key: usize,
    /// Where to.
    pub remote: SocketAddrV4,
    /// When the task asked for it (the worker's clock, ns).
    pub since: u64,
}

/// The async side's per-worker state: sockets and listeners (see the
/// [module documentation](self)).
#[derive(Debug, Default)]
pub struct Reactor {
    sockets: Slab<Socket>,
    listeners: HashMap<u16, Listener>,
    dials: Slab<Dial>,
    refused: u64,
    /// The worker's counters, where refusals are published.
    counters: Option<Arc<WorkerCounters>>,
    udp: super::udp::UdpReactor,
}

impl Reactor {
    /// A reactor with no sockets and no listeners.
    pub fn new() -> Reactor {
        Reactor::default()
    }

    /// A reactor that also counts its refusals in the worker's `counters`
    /// (`async_refused`).
    pub fn with_counters(counters: Arc<WorkerCounters>) -> Reactor {
        Reactor {
            counters: Some(counters),
            ..Reactor::default()
        }
    }

    /// Connections reset at accept because nothing listened on their port.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The UDP sockets' side ([`super::udp`]).
    pub fn udp(&self) -> &super::udp::UdpReactor {
        &self.udp
    }

    /// The UDP sockets' side, mutably.
    pub fn udp_mut(&mut self) -> &mut super::udp::UdpReactor {
        &mut self.udp
    }

    /// Sockets alive (held by a stream or an accept queue, or not yet
    /// closed).
    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }

    fn wake_read(&mut self, index: usize) {
        if let Some(waker) = self.sockets.get_mut(index).and_then(|s| s.read.take()) {
            waker.wake();
        }
    }

    fn wake_write(&mut self, index: usize) {
        if let Some(waker) = self.sockets.get_mut(index).and_then(|s| s.write.take()) {
            waker.wake();
        }
    }

    /// Forget the socket once nothing refers to it.
    fn release(&mut self, index: usize) {
        if self
            .sockets
            .get(index)
            .is_some_and(|socket| socket.closed && !socket.held)
        {
            self.sockets.remove(index);
        }
    }

    /// The socket of `io`'s connection, if the bridge gave it one.
    fn socket_of(&self, io: &mut dyn TcpIo) -> Option<usize> {
        let index = usize::try_from(*io.app_state()).ok()?.checked_sub(1)?;
        let id = io.id();
        self.sockets
            .get(index)
            .is_some_and(|s| s.id == id)
            .then_some(index)
    }
}

/// The [`TcpService`] that hands a worker's connections to its async tasks
/// (see the [module documentation](self)). Every async service of a worker
/// has one, sharing the worker's [`Reactor`].
#[derive(Debug)]
pub struct AsyncBridge {
    reactor: Rc<RefCell<Reactor>>,
}

impl AsyncBridge {
    /// A bridge into `reactor`.
    pub fn new(reactor: Rc<RefCell<Reactor>>) -> AsyncBridge {
        AsyncBridge { reactor }
    }
}

impl TcpService for AsyncBridge {
    fn on_accepted(&mut self, io: &mut dyn TcpIo) {
        let mut reactor = self.reactor.borrow_mut();
        let reactor = &mut *reactor;
        // An active open of ours reached ESTABLISHED: its socket exists
        // already, and [`Connect`] waits on it as a writer.
        if let Some(index) = reactor.socket_of(io) {
            reactor.sockets[index].established = true;
            reactor.wake_write(index);
            return;
        }
        let Some(listener) = reactor.listeners.get_mut(&io.local_port()) else {
            reactor.refused += 1;
            if let Some(counters) = &reactor.counters {
                counters.async_refused.inc();
            }
            io.abort();
            return;
        };
        let index = reactor.sockets.insert(Socket {
            id: io.id(),
            local: io.local_addr(),
            peer: io.peer_addr(),
            read: None,
            write: None,
            closed: false,
            reset: false,
            timed_out: false,
            established: true,
            tail: VecDeque::new(),
            shut: false,
            held: true,
            owner: None,
        });
        *io.app_state() = index as u64 + 1;
        listener.queue.push_back(index);
        if let Some(waker) = listener.waker.take() {
            waker.wake();
        }
    }

    fn on_readable(&mut self, io: &mut dyn TcpIo) {
        let mut reactor = self.reactor.borrow_mut();
        match reactor.socket_of(io) {
            Some(index) if reactor.sockets[index].held => reactor.wake_read(index),
            // Nobody will read: drop what comes (the stream was dropped).
            _ => {
                let (a, b) = io.recv_data();
                let n = a.len() + b.len();
                io.consume(n);
            }
        }
    }

    fn on_writable(&mut self, io: &mut dyn TcpIo) {
        let mut reactor = self.reactor.borrow_mut();
        if let Some(index) = reactor.socket_of(io) {
            reactor.wake_write(index);
        }
    }

    /// The reader hears the end of the stream; our side stays open until
    /// the task shuts it down or drops the stream. No byte follows a FIN,
    /// so what is unread moves to the socket: the connection may close
    /// entirely (our FIN was sent already) before the task reads it.
    fn on_peer_closed(&mut self, io: &mut dyn TcpIo) {
        let mut reactor = self.reactor.borrow_mut();
        match reactor.socket_of(io) {
            Some(index) if reactor.sockets[index].held => {
                let (a, b) = io.recv_data();
                let n = a.len() + b.len();
                let tail = &mut reactor.sockets[index].tail;
                tail.extend(a);
                tail.extend(b);
                io.consume(n);
                reactor.wake_read(index);
            }
            _ => io.close(),
        }
    }

    fn on_closed(&mut self, closed: &Closed) {
        let mut reactor = self.reactor.borrow_mut();
        let Some(index) = usize::try_from(closed.app_state)
            .ok()
            .and_then(|i| i.checked_sub(1))
        else {
            return;
        };
        match reactor.sockets.get_mut(index) {
            Some(socket) if socket.id == closed.id => {
                socket.closed = true;
                socket.reset = closed.reset;
                socket.timed_out = closed.timed_out;
            }
            _ => return,
        }
        reactor.wake_read(index);
        reactor.wake_write(index);
        reactor.release(index);
    }
}

/// A worker's async networking context: its TCP table, its reactor and the
/// clock of the current round (see the [module documentation](self)).
#[derive(Debug)]
pub struct Net {
    table: Rc<RefCell<TcpTable>>,
    reactor: Rc<RefCell<Reactor>>,
    now: Cell<u64>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Net>>> = const { RefCell::new(None) };
}

impl Net {
    /// The context of a worker whose stack owns `table` and whose bridges
    /// share `reactor`.
    pub fn new(table: Rc<RefCell<TcpTable>>, reactor: Rc<RefCell<Reactor>>) -> Rc<Net> {
        Rc::new(Net {
            table,
            reactor,
            now: Cell::new(0),
        })
    }

    /// Runs `f` (the executor's round) with this context current at clock
    /// reading `now_ns`; the previous context is current again afterwards.
    pub fn enter<R>(self: &Rc<Self>, now_ns: u64, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Rc<Net>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                let _ = CURRENT.try_with(|c| c.replace(previous));
            }
        }
        self.now.set(now_ns);
        let previous = CURRENT.with(|c| c.replace(Some(self.clone())));
        let _restore = Restore(previous);
        f()
    }

    /// The worker's reactor.
    pub fn reactor(&self) -> &Rc<RefCell<Reactor>> {
        &self.reactor
    }

    /// Reset the connections whose sockets `task` owned (it panicked).
    pub fn abort_owned_by(&self, task: TaskId) {
        let owned: Vec<ConnId> = self
            .reactor
            .borrow()
            .sockets
            .iter()
            .filter(|(_, s)| s.owner == Some(task) && !s.closed)
            .map(|(_, s)| s.id)
            .collect();
        let now = self.now.get();
        let mut table = self.table.borrow_mut();
        for id in owned {
            table.with_connection(id, now, |io| io.abort());
        }
    }

    /// The clock reading of the current round.
    pub(super) fn now_ns(&self) -> u64 {
        self.now.get()
    }

    /// Whether tasks asked for active opens that the stack has still to
    /// start.
    pub fn has_dials(&self) -> bool {
        self.reactor
            .borrow()
            .dials
            .iter()
            .any(|(_, d)| d.outcome.is_none())
    }

    /// The active opens the stack has still to start, oldest first. The
    /// stack answers each with [`Net::dial_opened`] or
    /// [`Net::dial_failed`], or leaves it for a later round (its next hop
    /// is being resolved).
    pub fn dials(&self) -> Vec<DialRequest> {
        let mut dials: Vec<DialRequest> = self
            .reactor
            .borrow()
            .dials
            .iter()
            .filter(|(_, d)| d.outcome.is_none())
            .map(|(key, d)| DialRequest {
                key,
                remote: d.remote,
                since: d.since,
            })
            .collect();
        dials.sort_by_key(|d| d.since);
        dials
    }

    /// The stack could not start dial `key`: its task hears `error`.
    pub fn dial_failed(&self, key: usize, error: io::Error) {
        let mut reactor = self.reactor.borrow_mut();
        if let Some(dial) = reactor.dials.get_mut(key) {
            dial.outcome = Some(Err(error));
            if let Some(waker) = dial.waker.take() {
                waker.wake();
            }
        }
    }

    /// The stack opened connection `id` (in SYN-SENT, our end `local`) for
    /// dial `key`: its task waits for ESTABLISHED on the socket made here.
    /// The table must not be borrowed.
    pub fn dial_opened(&self, key: usize, id: ConnId, local: SocketAddrV4) {
        let index = {
            let mut reactor = self.reactor.borrow_mut();
            let reactor = &mut *reactor;
            let Some(dial) = reactor.dials.get_mut(key) else {
                return;
            };
            let index = reactor.sockets.insert(Socket {
                id,
                local,
                peer: dial.remote,
                read: None,
                write: None,
                closed: false,
                reset: false,
                timed_out: false,
                established: false,
                tail: VecDeque::new(),
                shut: false,
                held: true,
                owner: None,
            });
            dial.outcome = Some(Ok(index));
            if let Some(waker) = dial.waker.take() {
                waker.wake();
            }
            index
        };
        self.with_connection(id, |io| *io.app_state() = index as u64 + 1);
    }

    pub(super) fn current() -> io::Result<Rc<Net>> {
        CURRENT
            .try_with(|c| c.borrow().clone())
            .ok()
            .flatten()
            .ok_or_else(|| {
                io::Error::other("shardnet::rt::net used outside a shardnet worker's task")
            })
    }

    /// `f` on connection `id`, if it is still open.
    fn with_connection<R>(&self, id: ConnId, f: impl FnOnce(&mut dyn TcpIo) -> R) -> Option<R> {
        let mut table = self.table.try_borrow_mut().ok()?;
        table.with_connection(id, self.now.get(), f)
    }
}

/// A listening TCP port on this worker: it accepts the connections that
/// the rules give an async service on that port and RSS (or steering)
/// gives this worker, as each `SO_REUSEPORT` socket does on Linux. Every
/// worker binds its own.
#[derive(Debug)]
pub struct TcpListener {
    net: Rc<Net>,
    port: u16,
}

impl TcpListener {
    /// Listen on `port` on this worker.
    ///
    /// # Errors
    /// `AddrInUse` when this worker listens there already; `Other` outside
    /// a worker's task.
    pub fn bind(port: u16) -> io::Result<TcpListener> {
        let net = Net::current()?;
        {
            let mut reactor = net.reactor.borrow_mut();
            if reactor.listeners.contains_key(&port) {
                return Err(io::ErrorKind::AddrInUse.into());
            }
            reactor.listeners.insert(port, Listener::default());
        }
        Ok(TcpListener { net, port })
    }

    /// The port.
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// The next connection and its peer's address.
    ///
    /// # Errors
    /// None today (the signature is `std`'s and tokio's).
    pub fn accept(&self) -> Accept<'_> {
        Accept { listener: self }
    }

    /// [`accept`](Self::accept) as a poll function.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddrV4)>> {
        let mut reactor = self.net.reactor.borrow_mut();
        let reactor = &mut *reactor;
        let Some(listener) = reactor.listeners.get_mut(&self.port) else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        let Some(index) = listener.queue.pop_front() else {
            listener.waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        let socket = &mut reactor.sockets[index];
        socket.owner = current_task();
        let stream = TcpStream {
            net: self.net.clone(),
            index,
            id: socket.id,
        };
        Poll::Ready(Ok((stream, socket.peer)))
    }
}

impl Drop for TcpListener {
    /// Stop listening; connections accepted but not yet taken are reset.
    fn drop(&mut self) {
        let Some(listener) = self.net.reactor.borrow_mut().listeners.remove(&self.port) else {
            return;
        };
        for index in listener.queue {
            let id = {
                let mut reactor = self.net.reactor.borrow_mut();
                let Some(socket) = reactor.sockets.get_mut(index) else {
                    continue;
                };
                socket.held = false;
                let id = socket.id;
                reactor.release(index);
                id
            };
            self.net.with_connection(id, |io| io.abort());
        }
    }
}

/// The future of [`TcpListener::accept`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Accept<'a> {
    listener: &'a TcpListener,
}

impl Future for Accept<'_> {
    type Output = io::Result<(TcpStream, SocketAddrV4)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.listener.poll_accept(cx)
    }
}

/// A TCP connection of this worker, for its tasks. Reads and writes go
/// straight to the connection's buffers in the worker's table; what is
/// written leaves at the end of the executor's round. Dropping the stream
/// closes our side (a FIN after the queued bytes) and discards what the
/// peer still sends.
#[derive(Debug)]
pub struct TcpStream {
    net: Rc<Net>,
    index: usize,
    id: ConnId,
}

impl TcpStream {
    /// Open a connection to `remote` from this worker.
    ///
    /// The stack starts it after the current round of the executor, from a
    /// source port of the worker's range (`[interface] local_ports`) whose
    /// replies RSS or steering brings back to this worker, through the
    /// subnet or the gateway, resolving the next hop by ARP first if need
    /// be. The future is ready once the handshake completes. Dropping it
    /// before then abandons the attempt (a half-open connection is reset),
    /// so [`timeout`](crate::rt::timeout) bounds it.
    ///
    /// # Errors
    /// `ConnectionRefused` when the peer answers with a reset; `TimedOut`
    /// when it never answers the SYN (after the SYN retransmissions);
    /// `NetworkUnreachable` when `remote` is off the subnet and no gateway
    /// is configured; `HostUnreachable` when the next hop's MAC could not
    /// be resolved in that time; `AddrNotAvailable` when no source port is
    /// free; `Other` when the worker's connection table is full (counted
    /// as a `connection_limit` drop) or outside a worker's task.
    pub fn connect(remote: SocketAddrV4) -> Connect {
        Connect {
            remote,
            net: None,
            state: ConnectState::Start,
        }
    }

    /// Our address and port.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.net.reactor.borrow().sockets[self.index].local
    }

    /// The peer's address and port.
    pub fn peer_addr(&self) -> SocketAddrV4 {
        self.net.reactor.borrow().sockets[self.index].peer
    }

    /// Read into `buf`: how many bytes were read, 0 at the end of the
    /// stream.
    ///
    /// # Errors
    /// `ConnectionReset` when the connection was reset, `TimedOut` when
    /// the peer stopped answering (the retransmissions ran out).
    pub fn poll_read_into(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut filled = 0;
        self.poll_read_with(cx, buf.len(), |chunk| {
            buf[filled..filled + chunk.len()].copy_from_slice(chunk);
            filled += chunk.len();
        })
    }

    /// The read path of [`poll_read_into`](Self::poll_read_into) and of
    /// the `AsyncRead` impls: hands `put` at most `room` bytes, in order,
    /// straight from the receive buffer (so tokio's `ReadBuf` is filled
    /// without first being zeroed); how many it handed.
    fn poll_read_with(
        &self,
        cx: &mut Context<'_>,
        room: usize,
        mut put: impl FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        let (closed, aborted) = self.touch();
        if let Some(kind) = aborted {
            return Poll::Ready(Err(kind.into()));
        }
        {
            let mut reactor = self.net.reactor.borrow_mut();
            let tail = &mut reactor.sockets[self.index].tail;
            if !tail.is_empty() {
                let (a, b) = tail.as_slices();
                let n = a.len().min(room);
                let m = b.len().min(room - n);
                put(&a[..n]);
                put(&b[..m]);
                tail.drain(..n + m);
                return Poll::Ready(Ok(n + m));
            }
        }
        if closed || room == 0 {
            return Poll::Ready(Ok(0));
        }
        let read = self.net.with_connection(self.id, |io| {
            let (a, b) = io.recv_data();
            if a.is_empty() {
                return io.peer_closed().then_some(0);
            }
            let n = a.len().min(room);
            let m = b.len().min(room - n);
            put(&a[..n]);
            put(&b[..m]);
            io.consume(n + m);
            Some(n + m)
        });
        match read {
            Some(Some(n)) => Poll::Ready(Ok(n)),
            Some(None) => {
                self.net.reactor.borrow_mut().sockets[self.index].read = Some(cx.waker().clone());
                Poll::Pending
            }
            // Gone (its `on_closed` comes at the end of the round).
            None => Poll::Ready(Ok(0)),
        }
    }

    /// Write from `data`: how many bytes the send buffer took.
    ///
    /// # Errors
    /// `BrokenPipe` after a shutdown or once the connection is closed,
    /// `ConnectionReset` when it was reset, `TimedOut` when the peer
    /// stopped answering.
    pub fn poll_write_from(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let (closed, aborted) = self.touch();
        if let Some(kind) = aborted {
            return Poll::Ready(Err(kind.into()));
        }
        let shut = self.net.reactor.borrow().sockets[self.index].shut;
        if closed || shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.net.with_connection(self.id, |io| io.send(data)) {
            Some(0) => {
                self.net.reactor.borrow_mut().sockets[self.index].write = Some(cx.waker().clone());
                Poll::Pending
            }
            Some(n) => Poll::Ready(Ok(n)),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    /// The error that ended the connection, once it ended abruptly:
    /// `TimedOut` when the peer stopped answering (the retransmissions ran
    /// out), `ConnectionReset` when it was reset. Pending while it has
    /// not, and for good after a clean close. Pending registers `cx` as the
    /// stream's reader (as [`poll_read_into`](Self::poll_read_into) does),
    /// so it is for the task that reads the stream, between reads.
    pub fn poll_error(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let mut reactor = self.net.reactor.borrow_mut();
        let socket = &mut reactor.sockets[self.index];
        if let Some(kind) = socket.abort_kind() {
            return Poll::Ready(kind.into());
        }
        if !socket.closed {
            socket.read = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Close our sending side after the queued bytes (a FIN follows them).
    pub fn shutdown_write(&self) {
        let mut reactor = self.net.reactor.borrow_mut();
        let socket = &mut reactor.sockets[self.index];
        if socket.shut || socket.closed {
            return;
        }
        socket.shut = true;
        drop(reactor);
        self.net.with_connection(self.id, |io| io.close());
    }

    /// Reset the connection now.
    pub fn abort(&self) {
        self.net.with_connection(self.id, |io| io.abort());
    }

    /// Record the current task as the owner; the (closed, reset) flags.
    fn touch(&self) -> (bool, Option<io::ErrorKind>) {
        let mut reactor = self.net.reactor.borrow_mut();
        let socket = &mut reactor.sockets[self.index];
        if let Some(task) = current_task() {
            socket.owner = Some(task);
        }
        (socket.closed, socket.abort_kind())
    }
}

impl Socket {
    /// The error an abrupt end reports: `TimedOut` when the peer stopped
    /// answering (Linux's `ETIMEDOUT`), `ConnectionReset` otherwise.
    fn abort_kind(&self) -> Option<io::ErrorKind> {
        self.reset.then_some(if self.timed_out {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::ConnectionReset
        })
    }
}

/// Where a [`Connect`] stands.
#[derive(Debug, Clone, Copy)]
enum ConnectState {
    /// Not polled yet.
    Start,
    /// Waiting for the stack to start it: the dial's key.
    Dialing(usize),
    /// In SYN-SENT: the socket's index.
    Opening(usize),
    /// The stream or the error was handed out.
    Done,
}

/// The future of [`TcpStream::connect`]. Dropping it before it is ready
/// abandons the connection attempt.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Connect {
    remote: SocketAddrV4,
    net: Option<Rc<Net>>,
    state: ConnectState,
}

impl Future for Connect {
    type Output = io::Result<TcpStream>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let net = match &this.net {
            Some(net) => net.clone(),
            None => {
                let net = Net::current()?;
                this.net = Some(net.clone());
                net
            }
        };
        let mut reactor = net.reactor.borrow_mut();
        let reactor = &mut *reactor;
        if let ConnectState::Start = this.state {
            let key = reactor.dials.insert(Dial {
                remote: this.remote,
                since: net.now.get(),
                waker: Some(cx.waker().clone()),
                outcome: None,
            });
            this.state = ConnectState::Dialing(key);
            return Poll::Pending;
        }
        if let ConnectState::Dialing(key) = this.state {
            let dial = &mut reactor.dials[key];
            match dial.outcome.take() {
                None => {
                    dial.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Some(outcome) => {
                    reactor.dials.remove(key);
                    match outcome {
                        Ok(index) => this.state = ConnectState::Opening(index),
                        Err(error) => {
                            this.state = ConnectState::Done;
                            return Poll::Ready(Err(error));
                        }
                    }
                }
            }
        }
        let ConnectState::Opening(index) = this.state else {
            return Poll::Ready(Err(io::Error::other("Connect polled after completion")));
        };
        let socket = &mut reactor.sockets[index];
        if socket.established {
            socket.owner = current_task();
            this.state = ConnectState::Done;
            return Poll::Ready(Ok(TcpStream {
                net: net.clone(),
                index,
                id: socket.id,
            }));
        }
        if socket.closed {
            let kind = if socket.timed_out {
                io::ErrorKind::TimedOut
            } else {
                io::ErrorKind::ConnectionRefused
            };
            socket.held = false;
            reactor.release(index);
            this.state = ConnectState::Done;
            return Poll::Ready(Err(kind.into()));
        }
        socket.write = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Connect {
    /// Abandon an attempt under way: forget the dial, or reset the
    /// half-open connection.
    fn drop(&mut self) {
        let Some(net) = &self.net else {
            return;
        };
        let index = match self.state {
            ConnectState::Start | ConnectState::Done => return,
            ConnectState::Dialing(key) => {
                let dial = net.reactor.borrow_mut().dials.try_remove(key);
                match dial.and_then(|d| d.outcome) {
                    Some(Ok(index)) => index,
                    _ => return,
                }
            }
            ConnectState::Opening(index) => index,
        };
        let id = {
            let mut reactor = net.reactor.borrow_mut();
            let Some(socket) = reactor.sockets.get_mut(index) else {
                return;
            };
            socket.held = false;
            socket.write = None;
            let id = socket.id;
            reactor.release(index);
            id
        };
        net.with_connection(id, |io| io.abort());
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.shutdown_write();
        let mut reactor = self.net.reactor.borrow_mut();
        if let Some(socket) = reactor.sockets.get_mut(self.index) {
            socket.held = false;
            socket.read = None;
            socket.write = None;
        }
        reactor.release(self.index);
        drop(reactor);
        // Bytes that arrived unread are dropped, as no one will read them.
        self.net.with_connection(self.id, |io| {
            let (a, b) = io.recv_data();
            let n = a.len() + b.len();
            io.consume(n);
        });
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Copied straight into the unfilled part: no zeroing first (hyper
        // hands over uninitialised read buffers of 8 KiB and more).
        let room = buf.remaining();
        self.poll_read_with(cx, room, |chunk| buf.put_slice(chunk))
            .map_ok(|_| ())
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_from(cx, buf)
    }

    /// Nothing to do: written bytes leave at the end of the round.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdown_write();
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "futures-io")]
impl futures_io::AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_into(cx, buf)
    }
}

#[cfg(feature = "futures-io")]
impl futures_io::AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_from(cx, buf)
    }

    /// Nothing to do: written bytes leave at the end of the round.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Close our sending side (a FIN after the queued bytes), as
    /// [`TcpStream::shutdown_write`].
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdown_write();
        Poll::Ready(Ok(()))
    }
}
