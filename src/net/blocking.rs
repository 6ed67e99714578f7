//! `std::net`-like blocking sockets for ordinary threads of a program that
//! runs a [`Runtime`]: [`TcpListener`], [`TcpStream`] and [`UdpSocket`],
//! with std's method names, signatures and `io::ErrorKind`s, so that
//! thread-per-connection code ports by changing its imports.
//!
//! # Setting up
//!
//! The program registers the async service that owns the blocking sockets
//! with [`register`], names it in its rules, and spawns its threads before
//! [`Runtime::run`] (which blocks the main thread until SIGINT/SIGTERM):
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use std::io::{Read, Write};
//! use shardnet::net::blocking::{self, TcpListener};
//!
//! let runtime = blocking::register(shardnet::Runtime::from_config("shardnet.toml")?, "echo")?;
//! std::thread::spawn(|| {
//!     // Parks until the workers run; port 7 must be a TCP port of "echo".
//!     let listener = TcpListener::bind("0.0.0.0:7").expect("bind");
//!     for stream in listener.incoming() {
//!         let mut stream = stream.expect("accept");
//!         std::thread::spawn(move || {
//!             let mut buf = [0u8; 4096];
//!             while let Ok(n @ 1..) = stream.read(&mut buf) {
//!                 if stream.write_all(&buf[..n]).is_err() {
//!                     break;
//!                 }
//!             }
//!         });
//!     }
//! });
//! runtime.run()
//! # }
//! ```
//!
//! **Ports.** The rules give ports to services, so a blocking listener can
//! only listen where the rules route to the registered service:
//! [`TcpListener::bind`] takes the interface's address or `0.0.0.0` and a
//! TCP port of one of that service's rules (`AddrNotAvailable` otherwise,
//! port 0 included: there are no ephemeral listening ports). `bind` checks
//! the rules in force, so it follows reloads (`shardnet reload`, `POST
//! /reload`, SIGHUP): a port a reload gives the service can be bound once
//! the reload is done, a port it takes away cannot (`AddrNotAvailable`).
//! A listener already bound on a port taken away stays open, as a socket
//! does on Linux when a firewall rule changes, but no new connection is
//! routed to it; its accepted streams are untouched. Connections
//! opened with [`TcpStream::connect`] use the workers' source ports
//! (`[interface] local_ports`), as the async layer's do, and so does a
//! [`UdpSocket`] bound to port 0 (a client socket).
//!
//! # Design
//!
//! Each socket is backed by a task on the worker that owns its flow; the
//! task owns the async [`rt::TcpStream`] or [`rt::TcpListener`], and
//! application threads talk to it; workers never block:
//!
//! - **Startup and commands.** [`register`] registers an async service
//!   whose main task on each worker (the *hub*) waits on a bounded
//!   lock-free command queue (`crossbeam_queue::ArrayQueue`, 256 slots).
//!   `bind` sends "listen on this port" to every worker (a listener per
//!   worker, as `SO_REUSEPORT` sockets on Linux); `connect` sends "connect
//!   to this address" to one worker, round-robin. The hub spawns a task for
//!   each. A full command queue fails the call with `WouldBlock` (it is
//!   never silently lost). Calls made before the workers run park until
//!   every hub runs once.
//! - **Requests.** A stream has, per direction, a one-slot request queue
//!   (an `ArrayQueue` of one) to its task and a one-slot reply channel
//!   (`std::sync::mpsc::sync_channel(1)`) back. A mutex per direction on
//!   the application side keeps at most one request in flight per direction
//!   (reads from clones serialise, as concurrent reads do on one socket),
//!   so the worker's `try_send` of a reply never finds the channel full,
//!   and a read and a write may be in flight at once (a reader thread and
//!   a writer thread on clones of one stream). The thread pushes its
//!   request, wakes the task (the `atomic-waker` crate: a foreign
//!   wake of the executor) and parks in `recv`; no spinning.
//! - **Timeouts and non-blocking mode.** A read or write that times out
//!   raises a cancel flag and waits for the task's definitive answer (the
//!   worker answers in its next round): either the data it got in the
//!   meantime (returned, never lost) or "cancelled" (`WouldBlock`, as
//!   Linux's `EAGAIN` for `SO_RCVTIMEO`). In non-blocking mode the task
//!   tries once and answers `WouldBlock` when it would wait.
//! - **Accept.** Each worker's listener task hands accepted streams (with
//!   their task already spawned) to the application through a bounded
//!   channel ([`ACCEPT_BACKLOG`] entries); when it is full the connection
//!   is reset and counted ([`TcpListener::overflowed`]), like a full
//!   accept queue on Linux drops a handshake.
//! - **Closing.** Dropping the last handle of a stream (clones share it)
//!   ends its task, which closes the connection (a FIN after what was
//!   written; unread bytes are discarded). Dropping a listener ends its
//!   tasks, and waits for them (a poll round), so the port is free again
//!   when it returns; connections accepted but not taken are closed. When the
//!   runtime stops, pending and later calls fail with `ConnectionAborted`.
//! - **UDP.** [`UdpSocket::bind`] binds a UDP port of the service's rules
//!   on every worker; each worker's task hands what arrives there to one
//!   bounded channel ([`UDP_RECV_QUEUE`]; more are dropped and counted,
//!   [`UdpSocket::dropped`], as a full receive buffer on Linux), and one
//!   worker per socket sends, one datagram per request, so a thread's
//!   datagrams leave in order. Binding port 0 (a client socket) binds one
//!   free port of `[interface] local_ports` on every worker
//!   ([`rt::UdpSocket::bind_local_port`]): replies from any destination
//!   reach it whichever worker RSS or the steering gives them to, whatever
//!   the rules say, and dropping the socket frees the port on every
//!   worker.
//! - **Pending errors.** Between reads, a stream's task watches for the
//!   end of its connection; a reset (or a time-out) it sees while no call
//!   is there to report it is kept for [`TcpStream::take_error`] (as
//!   `SO_ERROR`), returned once; a read or write that reports it clears it.
//!   Watching registers the task as the reader, so while no read is in
//!   flight each segment that arrives polls the task once.
//!
//! # Cost
//!
//! Each `read`, `write` and `accept` is a round trip to the worker: a
//! queue push, a foreign wake, at most one worker poll round of latency,
//! the task's poll, a reply through a channel and an unpark; a read also
//! copies the bytes twice (receive buffer to the task's buffer, then to
//! the caller's) and allocates once, a write copies up to
//! [`MAX_CHUNK`] bytes once into a request and once into the send buffer.
//! See the README's "Blocking sockets" for a figure measured by the tests,
//! and `bench/blocking-vs-std.sh` for the cost against `std::net`.

use std::future::Future as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use crate::config::{Action, Protocol};
use crate::rt;
use crate::rules::SharedRules;
use crate::service::WorkerInfo;
use crate::Runtime;

/// Connections accepted by a listener's workers and not yet taken by
/// [`TcpListener::accept`]; more are reset and counted.
pub const ACCEPT_BACKLOG: usize = 128;

/// The most bytes one `write` hands to the worker (a larger write is
/// partial, as std's may be; `write_all` loops).
pub const MAX_CHUNK: usize = 256 * 1024;

/// Slots of each worker's command queue.
const COMMAND_SLOTS: usize = 256;

/// The blocking sockets' state, shared by the application threads and the
/// hubs (one process-wide: see [`register`]).
struct Hub {
    service: String,
    /// One per worker, made by the first worker to start.
    slots: OnceLock<Vec<Slot>>,
    /// The service's ports and the interface's address.
    setup: OnceLock<Setup>,
    /// Hubs that ran once.
    started: Mutex<usize>,
    ready: Condvar,
    /// Round-robin for connects.
    next: AtomicUsize,
    /// Where the next UDP port 0 bind starts looking in the range.
    next_udp_port: AtomicUsize,
}

/// What the rules give the service.
struct Setup {
    /// The ports at start, where no control plane runs (no reloads).
    tcp: Vec<u16>,
    udp: Vec<u16>,
    /// The rules in force, reloads included.
    rules: Option<Arc<SharedRules>>,
    address: Ipv4Addr,
    /// `[interface] local_ports`: the ports of UDP sockets bound to port 0.
    local_ports: (u16, u16),
}

impl Setup {
    /// Whether the rules in force route `protocol` flows to `port` to
    /// `service` (the first rule that matches names it, as the stack
    /// classifies them).
    fn serves(&self, service: &str, protocol: Protocol, port: u16) -> bool {
        match &self.rules {
            Some(rules) => rules
                .table()
                .rules()
                .iter()
                .find(|rule| rule.matches(protocol, port))
                .is_some_and(
                    |rule| matches!(&rule.action, Action::Service(id) if id.as_str() == service),
                ),
            None => match protocol {
                Protocol::Tcp => self.tcp.contains(&port),
                Protocol::Udp => self.udp.contains(&port),
            },
        }
    }
}

/// One worker's command queue.
struct Slot {
    commands: ArrayQueue<Command>,
    waker: AtomicWaker,
    stopped: AtomicBool,
}

/// What the application asks a worker's hub for.
enum Command {
    Listen {
        port: u16,
        listener: Arc<ListenShared>,
        accepted: SyncSender<StreamParts>,
        reply: SyncSender<io::Result<()>>,
        alive: Alive,
    },
    Connect {
        remote: SocketAddrV4,
        task: StreamTaskParts,
        reply: SyncSender<io::Result<(SocketAddrV4, SocketAddrV4)>>,
    },
    UdpBind {
        port: u16,
        /// A port of `local_ports` (bound to port 0), not of the rules.
        client: bool,
        shared: Arc<UdpShared>,
        datagrams: SyncSender<Datagram>,
        /// The send worker's reply channel.
        sent: Option<SyncSender<io::Result<usize>>>,
        reply: SyncSender<io::Result<()>>,
        alive: Alive,
    },
}

static HUB: OnceLock<Arc<Hub>> = OnceLock::new();

/// Registers the async service `service` on `runtime` as the owner of the
/// process's blocking sockets: listeners bind its TCP ports, UDP sockets
/// its UDP ports, as the rules in force give them (see the
/// [module documentation](self)). Once per process. Blocking calls are for
/// ordinary threads: from a worker's task they fail with `Unsupported`
/// (and from a callback service they would stall its worker).
///
/// # Errors
/// Blocking sockets were registered already (for this or another runtime).
pub fn register(runtime: Runtime, service: &str) -> anyhow::Result<Runtime> {
    let hub = Arc::new(Hub {
        service: service.to_owned(),
        slots: OnceLock::new(),
        setup: OnceLock::new(),
        started: Mutex::new(0),
        ready: Condvar::new(),
        next: AtomicUsize::new(0),
        next_udp_port: AtomicUsize::new(0),
    });
    if HUB.set(hub.clone()).is_err() {
        anyhow::bail!("blocking sockets are registered already in this process");
    }
    Ok(
        runtime.async_service(service, move |worker: &WorkerInfo<'_>| {
            let hub = hub.clone();
            hub.slots.get_or_init(|| {
                (0..worker.workers)
                    .map(|_| Slot {
                        commands: ArrayQueue::new(COMMAND_SLOTS),
                        waker: AtomicWaker::new(),
                        stopped: AtomicBool::new(false),
                    })
                    .collect()
            });
            hub.setup.get_or_init(|| Setup {
                tcp: worker.ports(Protocol::Tcp, &hub.service),
                udp: worker.ports(Protocol::Udp, &hub.service),
                rules: worker.rules.cloned(),
                address: worker.config.interface.address,
                local_ports: worker.config.interface.local_ports,
            });
            hub_main(hub, worker.id)
        }),
    )
}

/// Marks the worker's hub stopped when its task goes (the runtime stops),
/// failing what is queued for it.
struct StopGuard {
    hub: Arc<Hub>,
    worker: usize,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.hub.slots.get().and_then(|s| s.get(self.worker)) {
            slot.stopped.store(true, Ordering::SeqCst);
            while slot.commands.pop().is_some() {}
        }
    }
}

/// A worker's hub: runs the commands sent to it.
async fn hub_main(hub: Arc<Hub>, worker: usize) {
    let _guard = StopGuard {
        hub: hub.clone(),
        worker,
    };
    {
        let mut started = hub.started.lock().unwrap_or_else(|p| p.into_inner());
        *started += 1;
        hub.ready.notify_all();
    }
    let slot = &hub.slots.get().expect("slots made before the hub")[worker];
    loop {
        let command = std::future::poll_fn(|cx| {
            if let Some(c) = slot.commands.pop() {
                return Poll::Ready(c);
            }
            slot.waker.register(cx.waker());
            match slot.commands.pop() {
                Some(c) => Poll::Ready(c),
                None => Poll::Pending,
            }
        })
        .await;
        match command {
            Command::Listen {
                port,
                listener,
                accepted,
                reply,
                alive,
            } => drop(rt::spawn_local(async move {
                let _alive = alive;
                listen_task(port, listener, worker, accepted, reply).await;
            })),
            Command::Connect {
                remote,
                task,
                reply,
            } => drop(rt::spawn_local(connect_task(remote, task, reply))),
            Command::UdpBind {
                port,
                client,
                shared,
                datagrams,
                sent,
                reply,
                alive,
            } => drop(rt::spawn_local(async move {
                let _alive = alive;
                let socket = if client {
                    rt::UdpSocket::bind_local_port(port)
                } else {
                    rt::UdpSocket::bind(port)
                };
                udp_task(socket, shared, worker, datagrams, sent, reply).await;
            })),
        }
    }
}

impl Hub {
    /// The hub, once the workers run (parks until then).
    fn get() -> io::Result<&'static Arc<Hub>> {
        not_in_a_task()?;
        let hub = HUB.get().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "shardnet::net::blocking::register was not called",
            )
        })?;
        let mut started = hub.started.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(slots) = hub.slots.get() {
                if *started >= slots.len() {
                    return Ok(hub);
                }
            }
            started = hub.ready.wait(started).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn setup(&self) -> &Setup {
        self.setup.get().expect("set by the workers")
    }

    /// Whether `ip` may be bound: the interface's address or `0.0.0.0`; the
    /// interface's address.
    fn check_address(&self, ip: Ipv4Addr) -> io::Result<Ipv4Addr> {
        let setup = self.setup();
        if !(ip.is_unspecified() || ip == setup.address) {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{ip} is not the interface's address {}", setup.address),
            ));
        }
        Ok(setup.address)
    }

    /// Whether `addr` may be bound for `protocol`: the interface's address
    /// (or `0.0.0.0`) and a port the rules give the service; the address.
    fn check_bind(&self, addr: SocketAddrV4, protocol: Protocol) -> io::Result<Ipv4Addr> {
        self.check_address(*addr.ip())?;
        let setup = self.setup();
        if addr.port() == 0 || !setup.serves(&self.service, protocol, addr.port()) {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "no {protocol:?} rule gives port {} to the service {:?}",
                    addr.port(),
                    self.service
                ),
            ));
        }
        Ok(setup.address)
    }

    fn slots(&self) -> &[Slot] {
        self.slots.get().expect("started")
    }

    /// Queues `command` for `worker`'s hub.
    fn send(&self, worker: usize, command: Command) -> io::Result<()> {
        let slot = &self.slots()[worker];
        if slot.stopped.load(Ordering::SeqCst) {
            return Err(aborted());
        }
        if slot.commands.push(command).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the worker's command queue is full",
            ));
        }
        if slot.stopped.load(Ordering::SeqCst) {
            // Raced with the stop: drop what is left (its repliers go).
            while slot.commands.pop().is_some() {}
            return Err(aborted());
        }
        slot.waker.wake();
        Ok(())
    }
}

/// Refuses a blocking call from a worker's task, which would stall the
/// worker (and wait for itself).
fn not_in_a_task() -> io::Result<()> {
    if rt::current_task().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a blocking socket call on a worker's task would stall its worker",
        ));
    }
    Ok(())
}

/// Held by each task of a listener or UDP socket: the handle's drop waits
/// until every one is gone, so that the port is free again when it returns
/// (as closing a socket frees it at once on Linux).
type Alive = SyncSender<()>;

/// Waits until the tasks holding `alive`'s senders are gone (not from a
/// worker's task, which would wait for itself).
fn wait_gone(alive: &Mutex<Receiver<()>>) {
    if rt::current_task().is_none() {
        let _ = lock(alive).recv();
    }
}

/// The error of a call whose worker stopped.
fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the shardnet runtime stopped",
    )
}

/// The first IPv4 address of `addr`.
fn v4(addr: impl ToSocketAddrs) -> io::Result<SocketAddrV4> {
    addr.to_socket_addrs()?
        .find_map(|a| match a {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "no IPv4 address (shardnet speaks IPv4 only)",
            )
        })
}

/// Waits for a reply on `rx`, bounded by `timeout`; on time out raises
/// `cancel`, wakes the task and takes its definitive answer.
fn await_reply<T>(
    rx: &Receiver<io::Result<T>>,
    timeout: Option<Duration>,
    shared: &StreamShared,
    cancel: &AtomicBool,
) -> io::Result<T> {
    match timeout {
        None => rx.recv().map_err(|_| aborted())?,
        Some(limit) => match rx.recv_timeout(limit) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Disconnected) => Err(aborted()),
            Err(RecvTimeoutError::Timeout) => {
                cancel.store(true, Ordering::SeqCst);
                shared.waker.wake();
                let reply = rx.recv().map_err(|_| aborted());
                cancel.store(false, Ordering::SeqCst);
                reply?
            }
        },
    }
}

/// What a stream's task and its handles share.
struct StreamShared {
    waker: AtomicWaker,
    reads: ArrayQueue<ReadRequest>,
    writes: ArrayQueue<WriteRequest>,
    cancel_read: AtomicBool,
    cancel_write: AtomicBool,
    shut_write: AtomicBool,
    /// Every handle is gone: close.
    dropped: AtomicBool,
    /// Reset rather than close.
    abort: AtomicBool,
    /// The error that ended the connection, seen by the task while no call
    /// was there to report it ([`TcpStream::take_error`]).
    error: Mutex<Option<io::ErrorKind>>,
}

impl StreamShared {
    fn new() -> Arc<StreamShared> {
        Arc::new(StreamShared {
            waker: AtomicWaker::new(),
            reads: ArrayQueue::new(1),
            writes: ArrayQueue::new(1),
            cancel_read: AtomicBool::new(false),
            cancel_write: AtomicBool::new(false),
            shut_write: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            error: Mutex::new(None),
        })
    }
}

struct ReadRequest {
    max: usize,
    nonblocking: bool,
}

struct WriteRequest {
    data: Vec<u8>,
    nonblocking: bool,
}

/// Marks its stream dropped (its task closes it) when the last handle goes.
struct HandleGuard(Arc<StreamShared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
        self.0.waker.wake();
    }
}

/// The application's side of a stream before it is a [`TcpStream`].
struct StreamParts {
    guard: HandleGuard,
    reads: Receiver<io::Result<Vec<u8>>>,
    writes: Receiver<io::Result<usize>>,
    local: SocketAddrV4,
    peer: SocketAddrV4,
}

/// The worker's side of a stream before its task runs.
struct StreamTaskParts {
    shared: Arc<StreamShared>,
    reads: SyncSender<io::Result<Vec<u8>>>,
    writes: SyncSender<io::Result<usize>>,
}

/// A new stream's two sides (addresses filled in later for a connect).
fn stream_pair() -> (StreamTaskParts, StreamParts) {
    let shared = StreamShared::new();
    let (read_tx, read_rx) = mpsc::sync_channel(1);
    let (write_tx, write_rx) = mpsc::sync_channel(1);
    let unspecified = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    (
        StreamTaskParts {
            shared: shared.clone(),
            reads: read_tx,
            writes: write_tx,
        },
        StreamParts {
            guard: HandleGuard(shared),
            reads: read_rx,
            writes: write_rx,
            local: unspecified,
            peer: unspecified,
        },
    )
}

/// A stream's task: serves its handles' requests on the worker.
struct StreamTask {
    stream: rt::TcpStream,
    parts: StreamTaskParts,
    read: Option<ReadRequest>,
    buf: Vec<u8>,
    write: Option<(WriteRequest, usize)>,
    shut: bool,
    /// The error that ended the connection was seen (reported by a call,
    /// or kept for `take_error`).
    error_seen: bool,
}

impl StreamTask {
    fn new(stream: rt::TcpStream, parts: StreamTaskParts) -> StreamTask {
        StreamTask {
            stream,
            parts,
            read: None,
            buf: Vec::new(),
            write: None,
            shut: false,
            error_seen: false,
        }
    }

    /// A reply of `result` reports the error that ended the connection
    /// (if it is that): nothing is pending any more, as a failed `read`
    /// clears `SO_ERROR` on Linux.
    fn reporting<T>(&mut self, result: &io::Result<T>) {
        if let Err(e) = result {
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::TimedOut
            ) {
                self.error_seen = true;
                lock(&self.parts.shared.error).take();
            }
        }
    }

    /// Between reads, watches for the error that ends the connection and
    /// keeps it for `take_error`.
    fn poll_error(&mut self, cx: &mut Context<'_>) {
        if self.error_seen || self.read.is_some() {
            return;
        }
        if let Poll::Ready(e) = self.stream.poll_error(cx) {
            self.error_seen = true;
            *lock(&self.parts.shared.error) = Some(e.kind());
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) {
        let shared = &*self.parts.shared;
        if self.read.is_none() {
            self.read = shared.reads.pop();
        }
        let Some(request) = &self.read else {
            return;
        };
        if shared.cancel_read.swap(false, Ordering::SeqCst) {
            self.read = None;
            let _ = self
                .parts
                .reads
                .try_send(Err(io::ErrorKind::WouldBlock.into()));
            return;
        }
        self.buf.resize(request.max, 0);
        let reply = match self.stream.poll_read_into(cx, &mut self.buf) {
            Poll::Ready(result) => result.map(|n| self.buf[..n].to_vec()),
            Poll::Pending if request.nonblocking => Err(io::ErrorKind::WouldBlock.into()),
            Poll::Pending => return,
        };
        self.read = None;
        self.reporting(&reply);
        let _ = self.parts.reads.try_send(reply);
    }

    fn poll_shutdown(&mut self) {
        if !self.shut && self.write.is_none() && self.parts.shared.shut_write.load(Ordering::SeqCst)
        {
            self.shut = true;
            self.stream.shutdown_write();
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) {
        let shared = &*self.parts.shared;
        if self.write.is_none() {
            self.write = shared.writes.pop().map(|w| (w, 0));
        }
        let Some((request, done)) = &mut self.write else {
            return;
        };
        let reply = loop {
            if *done == request.data.len() {
                break Ok(*done);
            }
            match self.stream.poll_write_from(cx, &request.data[*done..]) {
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) if *done == 0 => break Err(e),
                Poll::Ready(Err(_)) => break Ok(*done),
                Poll::Pending if *done > 0 => break Ok(*done),
                Poll::Pending if request.nonblocking => break Err(io::ErrorKind::WouldBlock.into()),
                Poll::Pending => {
                    if shared.cancel_write.swap(false, Ordering::SeqCst) {
                        break Err(io::ErrorKind::WouldBlock.into());
                    }
                    return;
                }
            }
        };
        // A cancel that came too late is moot: the answer is the count.
        shared.cancel_write.store(false, Ordering::SeqCst);
        self.write = None;
        self.reporting(&reply);
        let _ = self.parts.writes.try_send(reply);
    }
}

impl std::future::Future for StreamTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let shared = this.parts.shared.clone();
        shared.waker.register(cx.waker());
        if shared.abort.load(Ordering::SeqCst) {
            this.stream.abort();
            return Poll::Ready(());
        }
        if shared.dropped.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        this.poll_read(cx);
        // A shutdown comes after the write in progress, before later ones
        // (which then fail with `BrokenPipe`).
        this.poll_shutdown();
        this.poll_write(cx);
        this.poll_shutdown();
        this.poll_error(cx);
        Poll::Pending
    }
}

/// Opens a connection to `remote` from this worker, then serves it.
async fn connect_task(
    remote: SocketAddrV4,
    parts: StreamTaskParts,
    reply: SyncSender<io::Result<(SocketAddrV4, SocketAddrV4)>>,
) {
    let shared = parts.shared.clone();
    let mut connect = rt::TcpStream::connect(remote);
    let outcome = std::future::poll_fn(|cx| {
        shared.waker.register(cx.waker());
        if shared.dropped.load(Ordering::SeqCst) {
            return Poll::Ready(None);
        }
        Pin::new(&mut connect).poll(cx).map(Some)
    })
    .await;
    match outcome {
        // Given up (connect_timeout): dropping the attempt resets it.
        None => {}
        Some(Err(e)) => drop(reply.try_send(Err(e))),
        // (Sent in vain when the caller gave up meanwhile: `parts` are
        // marked dropped, and the task ends at once, closing.)
        Some(Ok(stream)) => match reply.try_send(Ok((stream.local_addr(), stream.peer_addr()))) {
            Ok(()) => StreamTask::new(stream, parts).await,
            Err(_) => drop(stream),
        },
    }
}

/// What a listener's tasks and its handle share.
struct ListenShared {
    closed: AtomicBool,
    wakers: Vec<AtomicWaker>,
    overflowed: AtomicU64,
}

/// Listens on `port` on this worker and hands what it accepts over.
async fn listen_task(
    port: u16,
    shared: Arc<ListenShared>,
    worker: usize,
    accepted: SyncSender<StreamParts>,
    reply: SyncSender<io::Result<()>>,
) {
    let listener = match rt::TcpListener::bind(port) {
        Ok(listener) => listener,
        Err(e) => {
            let _ = reply.try_send(Err(e));
            return;
        }
    };
    let _ = reply.try_send(Ok(()));
    loop {
        let next = std::future::poll_fn(|cx| {
            shared.wakers[worker].register(cx.waker());
            if shared.closed.load(Ordering::SeqCst) {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        let (stream, peer) = match next {
            None => return,
            Some(Ok(accepted)) => accepted,
            Some(Err(e)) => {
                tracing::warn!("blocking listener on port {port}: {e}");
                return;
            }
        };
        let (task, mut parts) = stream_pair();
        parts.local = stream.local_addr();
        parts.peer = peer;
        drop(rt::spawn_local(StreamTask::new(stream, task)));
        match accepted.try_send(parts) {
            Ok(()) => {}
            Err(TrySendError::Full(parts)) => {
                shared.overflowed.fetch_add(1, Ordering::Relaxed);
                parts.guard.0.abort.store(true, Ordering::SeqCst);
                tracing::debug!("blocking listener on port {port}: backlog full, reset {peer}");
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Locks `m`, whatever a panicking holder left.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error std gives for a zero timeout.
fn zero_timeout() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "cannot set a 0 duration timeout",
    )
}

/// std's per-socket settings of a [`TcpStream`] or a [`UdpSocket`], shared
/// by its clones: the read and write timeouts and non-blocking mode.
#[derive(Default)]
struct Settings {
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
    nonblocking: AtomicBool,
}

impl Settings {
    /// Sets one of the timeouts; a zero duration is `InvalidInput`, as std.
    fn set(slot: &Mutex<Option<Duration>>, timeout: Option<Duration>) -> io::Result<()> {
        if timeout.is_some_and(|t| t.is_zero()) {
            return Err(zero_timeout());
        }
        *lock(slot) = timeout;
        Ok(())
    }
}

/// A TCP listener on every worker, for ordinary threads: `std::net`'s
/// `TcpListener` over shardnet (see the [module documentation](self)).
/// Clones made with [`try_clone`](Self::try_clone) share it.
pub struct TcpListener {
    inner: Arc<ListenerInner>,
}

/// A listener's handle state, shared by its clones.
struct ListenerInner {
    alive: Mutex<Receiver<()>>,
    shared: Arc<ListenShared>,
    accepted: Mutex<Receiver<StreamParts>>,
    local: SocketAddrV4,
    nonblocking: AtomicBool,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

impl TcpListener {
    /// Listens on `addr` on every worker; parks until the workers run.
    ///
    /// # Errors
    /// `AddrNotAvailable` when the address is neither `0.0.0.0` nor the
    /// interface's, or the port is not a TCP port of the registered
    /// service in the rules in force (reloads included); `AddrInUse` when a blocking listener has it;
    /// `InvalidInput` for an address with no IPv4 form; `NotConnected`
    /// when [`register`] was not called; `ConnectionAborted` when the
    /// runtime stopped.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let addr = v4(addr)?;
        let hub = Hub::get()?;
        let address = hub.check_bind(addr, Protocol::Tcp)?;
        let workers = hub.slots().len();
        let shared = Arc::new(ListenShared {
            closed: AtomicBool::new(false),
            wakers: (0..workers).map(|_| AtomicWaker::new()).collect(),
            overflowed: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::sync_channel(ACCEPT_BACKLOG);
        let (alive, gone) = mpsc::sync_channel(0);
        let listener = TcpListener {
            inner: Arc::new(ListenerInner {
                alive: Mutex::new(gone),
                shared: shared.clone(),
                accepted: Mutex::new(rx),
                local: SocketAddrV4::new(address, addr.port()),
                nonblocking: AtomicBool::new(false),
            }),
        };
        let mut replies = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (reply, answer) = mpsc::sync_channel(1);
            let sent = hub.send(
                worker,
                Command::Listen {
                    port: addr.port(),
                    listener: shared.clone(),
                    accepted: tx.clone(),
                    reply,
                    alive: alive.clone(),
                },
            );
            if let Err(e) = sent {
                // Before `listener`'s drop waits for the tasks' senders.
                drop(alive);
                return Err(e);
            }
            replies.push(answer);
        }
        drop((tx, alive));
        for answer in replies {
            answer.recv().map_err(|_| aborted())??;
        }
        Ok(listener)
    }

    /// The next connection and its peer's address; parks until one comes
    /// (or `WouldBlock` in non-blocking mode).
    ///
    /// # Errors
    /// `WouldBlock` in non-blocking mode when none is there;
    /// `ConnectionAborted` when the runtime stopped.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        not_in_a_task()?;
        let rx = lock(&self.inner.accepted);
        let parts = if self.inner.nonblocking.load(Ordering::Relaxed) {
            match rx.try_recv() {
                Ok(parts) => parts,
                Err(mpsc::TryRecvError::Empty) => return Err(io::ErrorKind::WouldBlock.into()),
                Err(mpsc::TryRecvError::Disconnected) => return Err(aborted()),
            }
        } else {
            rx.recv().map_err(|_| aborted())?
        };
        let peer = parts.peer;
        Ok((TcpStream::from_parts(parts), SocketAddr::V4(peer)))
    }

    /// An endless iterator over [`accept`](Self::accept)'s streams.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address it listens on (the interface's, not `0.0.0.0`).
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.inner.local))
    }

    /// Whether [`accept`](Self::accept) returns `WouldBlock` rather than
    /// parking when no connection is there.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.nonblocking.store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    /// The pending error: always none (a listener has no asynchronous
    /// errors here; errors come with the calls).
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(None)
    }

    /// Another handle on the same listener (and settings); accepts on
    /// clones take turns, each connection going to one of them.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: self.inner.clone(),
        })
    }

    /// Connections reset because the accept backlog ([`ACCEPT_BACKLOG`])
    /// was full.
    pub fn overflowed(&self) -> u64 {
        self.inner.shared.overflowed.load(Ordering::Relaxed)
    }
}

impl Drop for ListenerInner {
    /// Stops the workers' listeners and waits until they are gone (a poll
    /// round), so the port can be bound again at once.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        for waker in &self.shared.wakers {
            waker.wake();
        }
        wait_gone(&self.alive);
    }
}

/// The iterator of [`TcpListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(stream, _)| stream))
    }
}

/// A stream's handle state, shared by its clones.
struct StreamInner {
    guard: HandleGuard,
    reads: Mutex<Receiver<io::Result<Vec<u8>>>>,
    writes: Mutex<Receiver<io::Result<usize>>>,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    settings: Settings,
    nodelay: AtomicBool,
    read_shut: AtomicBool,
}

/// A TCP connection for ordinary threads: `std::net`'s `TcpStream` over
/// shardnet (see the [module documentation](self)). Clones made with
/// [`try_clone`](Self::try_clone) share the connection and its settings.
pub struct TcpStream {
    inner: Arc<StreamInner>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.inner.local)
            .field("peer", &self.inner.peer)
            .finish_non_exhaustive()
    }
}

impl TcpStream {
    fn from_parts(parts: StreamParts) -> TcpStream {
        TcpStream {
            inner: Arc::new(StreamInner {
                guard: parts.guard,
                reads: Mutex::new(parts.reads),
                writes: Mutex::new(parts.writes),
                local: parts.local,
                peer: parts.peer,
                settings: Settings::default(),
                nodelay: AtomicBool::new(false),
                read_shut: AtomicBool::new(false),
            }),
        }
    }

    /// Opens a connection to `addr` (its first IPv4 address) from one of
    /// the workers, in turn; parks until the handshake ends.
    ///
    /// # Errors
    /// As [`rt::TcpStream::connect`]: `ConnectionRefused`, `TimedOut`
    /// (after the SYN retransmissions), `NetworkUnreachable`,
    /// `HostUnreachable`, `AddrNotAvailable`; `NotConnected` when
    /// [`register`] was not called; `ConnectionAborted` when the runtime
    /// stopped.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        TcpStream::open(v4(addr)?, None)
    }

    /// [`connect`](Self::connect) to `addr`, giving up after `timeout`
    /// (`TimedOut`; the half-open attempt is reset).
    ///
    /// # Errors
    /// As `connect`; `InvalidInput` for a zero `timeout` (as std).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(zero_timeout());
        }
        TcpStream::open(v4(addr)?, Some(timeout))
    }

    fn open(remote: SocketAddrV4, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let hub = Hub::get()?;
        let worker = hub.next.fetch_add(1, Ordering::Relaxed) % hub.slots().len();
        let (task, mut parts) = stream_pair();
        let (reply, answer) = mpsc::sync_channel(1);
        hub.send(
            worker,
            Command::Connect {
                remote,
                task,
                reply,
            },
        )?;
        let (local, peer) = match timeout {
            None => answer.recv().map_err(|_| aborted())??,
            Some(limit) => match answer.recv_timeout(limit) {
                Ok(reply) => reply?,
                // Dropping `parts` abandons the attempt.
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
                Err(RecvTimeoutError::Disconnected) => return Err(aborted()),
            },
        };
        parts.local = local;
        parts.peer = peer;
        Ok(TcpStream::from_parts(parts))
    }

    /// The peer's address.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.inner.peer))
    }

    /// Our address.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.inner.local))
    }

    /// Shuts down reading (a read in flight on a clone and later reads
    /// return 0, locally, as on Linux), writing (a FIN after what was written) or both.
    ///
    /// # Errors
    /// None today; the signature is std's.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let shared = &self.inner.guard.0;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.inner.read_shut.store(true, Ordering::SeqCst);
            // Wake a read in flight on a clone: it returns 0 (as on Linux).
            shared.cancel_read.store(true, Ordering::SeqCst);
            shared.waker.wake();
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            shared.shut_write.store(true, Ordering::SeqCst);
            shared.waker.wake();
        }
        Ok(())
    }

    /// Another handle on the same connection (and settings).
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: self.inner.clone(),
        })
    }

    /// Bounds each read's wait; `None` waits for ever. A read that times
    /// out fails with `WouldBlock` (as on Linux) and loses nothing.
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration (as std).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Settings::set(&self.inner.settings.read_timeout, timeout)
    }

    /// Bounds each write's wait for room in the send buffer; a write that
    /// times out having sent nothing fails with `WouldBlock`.
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration (as std).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Settings::set(&self.inner.settings.write_timeout, timeout)
    }

    /// The read timeout.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*lock(&self.inner.settings.read_timeout))
    }

    /// The write timeout.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*lock(&self.inner.settings.write_timeout))
    }

    /// Recorded only: shardnet sends what was written at the end of each
    /// poll round, never holding small segments back (Nagle's algorithm is
    /// not implemented), so every stream behaves as with `TCP_NODELAY`.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.nodelay.store(nodelay, Ordering::Relaxed);
        Ok(())
    }

    /// What [`set_nodelay`](Self::set_nodelay) recorded.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.inner.nodelay.load(Ordering::Relaxed))
    }

    /// Whether reads and writes return `WouldBlock` rather than wait.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner
            .settings
            .nonblocking
            .store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    /// The pending error, as `SO_ERROR`: the error that ended the
    /// connection (`ConnectionReset` when the peer reset it, `TimedOut`
    /// when it stopped answering) if the stream's task saw it while no
    /// `read` or `write` was there to report it; returned once, then
    /// `None`. A call that reports the error clears it too (as on Linux).
    /// The task sees it in the worker's round after the event, so a reset
    /// that just came may not be there yet.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(lock(&self.inner.guard.0.error).take().map(io::Error::from))
    }

    fn read_inner(&self, buf: &mut [u8]) -> io::Result<usize> {
        not_in_a_task()?;
        let inner = &*self.inner;
        if buf.is_empty() || inner.read_shut.load(Ordering::SeqCst) {
            return Ok(0);
        }
        let shared = &*inner.guard.0;
        let rx = lock(&inner.reads);
        let request = ReadRequest {
            max: buf.len().min(MAX_CHUNK),
            nonblocking: inner.settings.nonblocking.load(Ordering::Relaxed),
        };
        if shared.reads.push(request).is_err() {
            return Err(io::Error::other("a read request is in flight already"));
        }
        shared.waker.wake();
        let timeout = *lock(&inner.settings.read_timeout);
        let data = match await_reply(&rx, timeout, shared, &shared.cancel_read) {
            // Cancelled by a shutdown of reading.
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && inner.read_shut.load(Ordering::SeqCst) =>
            {
                return Ok(0)
            }
            reply => reply?,
        };
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    fn write_inner(&self, buf: &[u8]) -> io::Result<usize> {
        not_in_a_task()?;
        let inner = &*self.inner;
        if buf.is_empty() {
            return Ok(0);
        }
        let shared = &*inner.guard.0;
        let rx = lock(&inner.writes);
        let request = WriteRequest {
            data: buf[..buf.len().min(MAX_CHUNK)].to_vec(),
            nonblocking: inner.settings.nonblocking.load(Ordering::Relaxed),
        };
        if shared.writes.push(request).is_err() {
            return Err(io::Error::other("a write request is in flight already"));
        }
        shared.waker.wake();
        let timeout = *lock(&inner.settings.write_timeout);
        await_reply(&rx, timeout, shared, &shared.cancel_write)
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }

    /// Nothing to do: written bytes leave at the end of the worker's round.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_inner(buf)
    }

    /// Nothing to do: written bytes leave at the end of the worker's round.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A datagram and its sender.
type Datagram = (Vec<u8>, SocketAddrV4);

/// What a UDP socket's tasks and its handles share.
struct UdpShared {
    closed: AtomicBool,
    wakers: Vec<AtomicWaker>,
    /// The datagram to send (one at a time), for the send worker's task.
    sends: ArrayQueue<Datagram>,
    send_worker: usize,
    /// Datagrams dropped because the receive queue was full.
    dropped: AtomicU64,
}

/// A UDP socket's task on one worker: hands what its port receives there
/// to the application; on the send worker, also sends.
async fn udp_task(
    socket: io::Result<rt::UdpSocket>,
    shared: Arc<UdpShared>,
    worker: usize,
    datagrams: SyncSender<Datagram>,
    sent: Option<SyncSender<io::Result<usize>>>,
    reply: SyncSender<io::Result<()>>,
) {
    let socket = match socket {
        Ok(socket) => socket,
        Err(e) => {
            let _ = reply.try_send(Err(e));
            return;
        }
    };
    let _ = reply.try_send(Ok(()));
    let mut buf = vec![0u8; 64 * 1024];
    let mut sending: Option<Datagram> = None;
    std::future::poll_fn(|cx| {
        shared.wakers[worker].register(cx.waker());
        if shared.closed.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        loop {
            match socket.poll_recv_from(cx, &mut buf) {
                Poll::Ready(Ok((n, from))) => match datagrams.try_send((buf[..n].to_vec(), from)) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        shared.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return Poll::Ready(()),
                },
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        if let Some(sent) = &sent {
            if sending.is_none() {
                sending = shared.sends.pop();
            }
            if let Some((data, to)) = &sending {
                if let Poll::Ready(result) = socket.poll_send_to(cx, data, *to) {
                    sending = None;
                    let _ = sent.try_send(result);
                }
            }
        }
        Poll::Pending
    })
    .await;
}

/// Ports of `[interface] local_ports` a UDP bind to port 0 tries at most.
const EPHEMERAL_TRIES: usize = 64;

/// Datagrams received and not yet taken by the application, per socket;
/// more are dropped and counted ([`UdpSocket::dropped`]), as a full receive
/// buffer drops them on Linux.
pub const UDP_RECV_QUEUE: usize = 1024;

/// A UDP socket on every worker, for ordinary threads: `std::net`'s
/// `UdpSocket` over shardnet (see the [module documentation](self)). It
/// receives what its port (a port of the rules, or a client port when
/// bound to port 0) gets on every worker and sends through one.
pub struct UdpSocket {
    inner: Arc<UdpInner>,
}

struct UdpInner {
    alive: Mutex<Receiver<()>>,
    shared: Arc<UdpShared>,
    datagrams: Mutex<Receiver<Datagram>>,
    /// The datagram a peek took from `datagrams`: the next receive's (kept
    /// under `datagrams`'s lock).
    peeked: Mutex<Option<Datagram>>,
    sent: Mutex<Receiver<io::Result<usize>>>,
    local: SocketAddrV4,
    peer: Mutex<Option<SocketAddrV4>>,
    settings: Settings,
}

impl Drop for UdpInner {
    /// Closes the workers' sockets and waits until they are gone.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        for waker in &self.shared.wakers {
            waker.wake();
        }
        wait_gone(&self.alive);
    }
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

impl UdpSocket {
    /// Binds `addr` on every worker; parks until the workers run. Port 0
    /// binds a free port of `[interface] local_ports` (a client socket, as
    /// `bind("0.0.0.0:0")` on Linux): the same port on every worker, so
    /// that the replies from any destination reach it whichever worker the
    /// NIC or the steering gives them to, and whatever the rules say.
    /// [`local_addr`](Self::local_addr) tells the port.
    ///
    /// # Errors
    /// As [`TcpListener::bind`], for a UDP port of the service's rules or 0;
    /// `AddrInUse` when no port of the range is free on every worker.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let addr = v4(addr)?;
        let hub = Hub::get()?;
        if addr.port() != 0 {
            let address = hub.check_bind(addr, Protocol::Udp)?;
            return UdpSocket::bind_port(hub, SocketAddrV4::new(address, addr.port()), false);
        }
        let address = hub.check_address(*addr.ip())?;
        let (first, last) = hub.setup().local_ports;
        let span = usize::from(last - first) + 1;
        // Ports taken on some worker (by another socket of this process or
        // by an async task's client socket) are skipped; a bounded search.
        for _ in 0..span.min(EPHEMERAL_TRIES) {
            let offset = hub.next_udp_port.fetch_add(1, Ordering::Relaxed) % span;
            let port = first + offset as u16;
            match UdpSocket::bind_port(hub, SocketAddrV4::new(address, port), true) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                other => return other,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no port of [interface] local_ports ({first}-{last}) is free on every worker"),
        ))
    }

    /// Binds `local` on every worker: a port of the rules, or of
    /// `local_ports` when `client`.
    fn bind_port(hub: &Hub, local: SocketAddrV4, client: bool) -> io::Result<UdpSocket> {
        let workers = hub.slots().len();
        let send_worker = hub.next.fetch_add(1, Ordering::Relaxed) % workers;
        let shared = Arc::new(UdpShared {
            closed: AtomicBool::new(false),
            wakers: (0..workers).map(|_| AtomicWaker::new()).collect(),
            sends: ArrayQueue::new(1),
            send_worker,
            dropped: AtomicU64::new(0),
        });
        let (datagrams_tx, datagrams) = mpsc::sync_channel(UDP_RECV_QUEUE);
        let (sent_tx, sent) = mpsc::sync_channel(1);
        let (alive, gone) = mpsc::sync_channel(0);
        let socket = UdpSocket {
            inner: Arc::new(UdpInner {
                alive: Mutex::new(gone),
                shared: shared.clone(),
                datagrams: Mutex::new(datagrams),
                peeked: Mutex::new(None),
                sent: Mutex::new(sent),
                local,
                peer: Mutex::new(None),
                settings: Settings::default(),
            }),
        };
        let mut replies = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (reply, answer) = mpsc::sync_channel(1);
            let sent = hub.send(
                worker,
                Command::UdpBind {
                    port: local.port(),
                    client,
                    shared: shared.clone(),
                    datagrams: datagrams_tx.clone(),
                    sent: (worker == send_worker).then(|| sent_tx.clone()),
                    reply,
                    alive: alive.clone(),
                },
            );
            if let Err(e) = sent {
                // Before `socket`'s drop waits for the tasks' senders.
                drop(alive);
                return Err(e);
            }
            replies.push(answer);
        }
        drop((datagrams_tx, sent_tx, alive));
        // Every answer, so that a failed bind's drop (which frees the
        // port on the workers that bound it) follows them all.
        let mut result = Ok(());
        for answer in replies {
            let answer = answer.recv().map_err(|_| aborted()).and_then(|r| r);
            if result.is_ok() {
                result = answer;
            }
        }
        result.map(|()| socket)
    }

    /// Receives a datagram: how many bytes were copied into `buf` (the
    /// rest of a longer datagram is discarded, as on Linux) and its
    /// sender. Parks until one comes, within the read timeout.
    ///
    /// # Errors
    /// `WouldBlock` when the read timeout passes or, in non-blocking mode,
    /// when none is there; `ConnectionAborted` when the runtime stopped.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.receive(buf, false)
    }

    /// As [`recv_from`](Self::recv_from), but the datagram stays: the next
    /// receive (or peek) gets it again.
    ///
    /// # Errors
    /// As [`recv_from`](Self::recv_from).
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.receive(buf, true)
    }

    /// As [`recv`](Self::recv), but the datagram stays (see
    /// [`peek_from`](Self::peek_from)).
    ///
    /// # Errors
    /// As [`recv_from`](Self::recv_from).
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peek_from(buf).map(|(n, _)| n)
    }

    /// The next datagram (from the connected peer, if any), taken or left
    /// for the next receive when `peek`.
    fn receive(&self, buf: &mut [u8], peek: bool) -> io::Result<(usize, SocketAddr)> {
        not_in_a_task()?;
        let inner = &*self.inner;
        let deadline = lock(&inner.settings.read_timeout).map(|t| std::time::Instant::now() + t);
        let rx = lock(&inner.datagrams);
        loop {
            let held = lock(&inner.peeked).take();
            let (data, from) = if let Some(d) = held {
                d
            } else if inner.settings.nonblocking.load(Ordering::Relaxed) {
                match rx.try_recv() {
                    Ok(d) => d,
                    Err(mpsc::TryRecvError::Empty) => return Err(io::ErrorKind::WouldBlock.into()),
                    Err(mpsc::TryRecvError::Disconnected) => return Err(aborted()),
                }
            } else if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(d) => d,
                    Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::WouldBlock.into()),
                    Err(RecvTimeoutError::Disconnected) => return Err(aborted()),
                }
            } else {
                rx.recv().map_err(|_| aborted())?
            };
            // A connected socket takes datagrams from its peer only.
            if lock(&inner.peer).is_some_and(|peer| peer != from) {
                continue;
            }
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            if peek {
                *lock(&inner.peeked) = Some((data, from));
            }
            return Ok((n, SocketAddr::V4(from)));
        }
    }

    /// Sends `buf` as one datagram to `addr` (its first IPv4 address);
    /// returns its length once the worker queued it.
    ///
    /// # Errors
    /// `InvalidInput` for a datagram larger than one frame or a
    /// destination with address or port 0; `ConnectionAborted` when the
    /// runtime stopped.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        not_in_a_task()?;
        let to = v4(addr)?;
        let inner = &*self.inner;
        let rx = lock(&inner.sent);
        let shared = &*inner.shared;
        if shared.sends.push((buf.to_vec(), to)).is_err() {
            return Err(io::Error::other("a send is in flight already"));
        }
        shared.wakers[shared.send_worker].wake();
        rx.recv().map_err(|_| aborted())?
    }

    /// Sets the only peer [`send`](Self::send) sends to and
    /// [`recv`](Self::recv) receives from.
    ///
    /// # Errors
    /// `InvalidInput` for an address with no IPv4 form.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        *lock(&self.inner.peer) = Some(v4(addr)?);
        Ok(())
    }

    /// Sends to the connected peer.
    ///
    /// # Errors
    /// `NotConnected` before [`connect`](Self::connect); as
    /// [`send_to`](Self::send_to).
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let peer = (*lock(&self.inner.peer)).ok_or(io::ErrorKind::NotConnected)?;
        self.send_to(buf, peer)
    }

    /// Receives from the connected peer (others' datagrams are dropped).
    ///
    /// # Errors
    /// As [`recv_from`](Self::recv_from).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// The connected peer.
    ///
    /// # Errors
    /// `NotConnected` before [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        (*lock(&self.inner.peer))
            .map(SocketAddr::V4)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }

    /// The bound address (the interface's, not `0.0.0.0`).
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.inner.local))
    }

    /// Bounds each receive's wait; `None` waits for ever.
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration (as std).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Settings::set(&self.inner.settings.read_timeout, timeout)
    }

    /// Recorded: a send waits at most for the end of the worker's round.
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration (as std).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        Settings::set(&self.inner.settings.write_timeout, timeout)
    }

    /// The read timeout.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*lock(&self.inner.settings.read_timeout))
    }

    /// The write timeout.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*lock(&self.inner.settings.write_timeout))
    }

    /// Whether receives return `WouldBlock` rather than wait.
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner
            .settings
            .nonblocking
            .store(nonblocking, Ordering::Relaxed);
        Ok(())
    }

    /// Another handle on the same socket (and settings).
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            inner: self.inner.clone(),
        })
    }

    /// The pending error: always none (errors come with the calls).
    ///
    /// # Errors
    /// None; the signature is std's.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(None)
    }

    /// Datagrams dropped because [`UDP_RECV_QUEUE`] were waiting.
    pub fn dropped(&self) -> u64 {
        self.inner.shared.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Duration;

    use super::{v4, TcpListener, TcpStream};

    /// A blocking call from a worker's task would stall the worker: it
    /// is refused at once.
    #[test]
    fn calls_from_a_workers_task_are_refused_as_unsupported() {
        let executor = crate::rt::Executor::new(0);
        let kinds = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = kinds.clone();
        drop(executor.spawn(async move {
            let mut seen = seen.borrow_mut();
            seen.push(TcpStream::connect("198.18.0.1:9000").unwrap_err().kind());
            seen.push(TcpListener::bind("0.0.0.0:7000").unwrap_err().kind());
            seen.push(super::UdpSocket::bind("0.0.0.0:7003").unwrap_err().kind());
        }));
        executor.run(0);
        assert_eq!(*kinds.borrow(), vec![ErrorKind::Unsupported; 3]);
    }

    #[test]
    fn addresses_resolve_to_their_first_ipv4_form_or_fail_as_invalid_input() {
        assert_eq!(
            v4("198.18.0.1:9000").unwrap(),
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 9000)
        );
        assert_eq!(
            v4(("0.0.0.0", 7)).unwrap(),
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7)
        );
        assert_eq!(v4("[::1]:80").unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    /// No test of this binary calls `register`: every call says so, as
    /// `NotConnected`, rather than waiting for workers that never come.
    #[test]
    fn calls_without_a_registered_runtime_fail_as_not_connected() {
        let e = TcpStream::connect("198.18.0.1:9000").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected);
        assert!(e.to_string().contains("register"), "{e}");
        let e = TcpListener::bind("0.0.0.0:7000").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected);
        let e = super::UdpSocket::bind("0.0.0.0:0").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected);
        let addr = "198.18.0.1:9000".parse().unwrap();
        let e = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected);
        // std's check comes first: a zero timeout is invalid input.
        let e = TcpStream::connect_timeout(&addr, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
