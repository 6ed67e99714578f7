//! Cross-core messages between workers, after Seastar's `smp::submit_to`
//! and `sharded<T>::invoke_on`.
//!
//! A program declares per-worker state with
//! [`Runtime::sharded`](crate::Runtime::sharded): each worker builds its own
//! instance of `S` on its own thread (so `S` need not be `Send`), and the
//! [`Sharded<S>`] handle (`Clone + Send + Sync`) reaches any worker's
//! instance:
//!
//! - [`Sharded::invoke_on`]`(k, f)` runs `f(&mut S)` on worker `k`, between
//!   two of its poll rounds, and returns a [`Reply`]: a future (for async
//!   tasks on any worker; it resolves through a foreign wake of the
//!   waiting task) that also has a blocking [`Reply::wait`] for ordinary
//!   threads (park/unpark; refused on a worker thread, whose loop it
//!   would stall).
//! - [`Sharded::invoke_on_then`]`(k, f, then)` is for callback services,
//!   which cannot await: `f` runs on worker `k`, and its result comes back
//!   as a message to the calling (origin) worker, where `then(result)` runs
//!   between poll rounds. `then` stays on the origin worker and is never
//!   sent anywhere, so it need not be `Send`: it may hold the service's
//!   `Rc` state.
//! - [`Sharded::with_local`] reaches the calling worker's own instance,
//!   with no message.
//!
//! The names follow Seastar's (`sharded`, `invoke_on`); its plain
//! `submit_to(shard, func)` is `invoke_on` on a `Sharded<()>`
//! (`runtime.sharded(|_| ())`), whose closure ignores its `&mut ()`.
//!
//! # Transport
//!
//! Requests travel in bounded rings, one per ordered pair of workers (a
//! worker also has one to itself), plus one bounded inbox per worker for
//! requests from non-worker threads. The rings are
//! `crossbeam_queue::ArrayQueue`s, a dependency already (the executor uses
//! its `SegQueue`): used single-producer single-consumer here, but being
//! multi-consumer lets a sender that finds the target stopped take its own
//! message back (see below). A full ring or inbox fails the request at once
//! with [`SmpError::Full`] (the `Reply` is ready with it) and counts it in
//! `smp_queue_full` (the sender's counters; the target's for an inbox):
//! a worker's poll loop never blocks on another. The results of
//! `invoke_on_then` come back through an unbounded lock-free queue into the
//! origin (`crossbeam_queue::SegQueue`): a result must not be dropped and
//! the answering worker must not wait, and there are never more of them
//! than requests the origin has made and not seen answered.
//!
//! Each worker drains what came for it once per poll round ([`Endpoint::drain`]),
//! before running its async tasks: one relaxed load of a per-worker flag
//! when nothing came (senders raise it after a push), and at most
//! [`DRAIN_BUDGET`] messages a round, so a flood of requests cannot starve
//! the network; what is left waits for the next round. Messages run on the
//! worker's thread; a panic in one is a panic in the worker's loop (under
//! the [`Runtime`](crate::Runtime), the process aborts, as for a panic in a
//! callback service).
//!
//! # Stopping
//!
//! A stopping worker marks itself stopped and takes out what is queued for
//! it: each request resolves its `Reply` (or the origin's `then`) with
//! [`SmpError::Stopped`], so nothing waits forever. A sender checks the
//! mark before and again after its push; a push that raced with the stop
//! is taken back by the sender and resolved the same way. Requests to a
//! stopped worker fail at once with `Stopped`.
//!
//! # Cost
//!
//! A round trip is two queue operations (a CAS each), a boxed closure (one
//! allocation), the reply cell (one allocation, a mutex taken twice) and a
//! foreign wake of the waiting task (or an unpark). A micro-measurement in
//! the unit tests (`smp::tests::two_workers_pump_thousands_of_messages`,
//! printed with `--nocapture`) gives the order of magnitude on the machine
//! it runs on; it is not a benchmark.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;

use crossbeam_queue::{ArrayQueue, SegQueue};
use slab::Slab;

use crate::counters::WorkerCounters;
use crate::service::WorkerInfo;

/// Slots of each ring between two workers, and of each worker's inbox.
pub const DEFAULT_RING_SIZE: usize = 1024;

/// The most messages a worker runs per poll round.
pub const DRAIN_BUDGET: usize = 256;

/// Why a cross-core request has no result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmpError {
    /// The ring towards the worker (or its inbox) was full: the request was
    /// not sent (counted in `shardnet_smp_queue_full_total`).
    #[error("the queue towards the worker is full")]
    Full,
    /// The worker has stopped (or stopped before running the request).
    #[error("the worker has stopped")]
    Stopped,
    /// No worker has this number.
    #[error("no such worker")]
    NoSuchWorker,
    /// The runtime has not started its workers yet.
    #[error("the workers have not started")]
    NotStarted,
    /// The call needs a worker thread ([`Sharded::with_local`],
    /// [`Sharded::invoke_on_then`]) and this is not one.
    #[error("not called on a worker thread")]
    NotOnWorker,
    /// A blocking [`Reply::wait`] on a worker thread, which would stall its
    /// poll loop (and deadlock if the reply needs that worker): await the
    /// reply in a task, or use [`Sharded::invoke_on_then`].
    #[error("a blocking wait on a worker thread would stall its poll loop")]
    WouldBlockWorker,
}

impl From<SmpError> for io::Error {
    fn from(e: SmpError) -> io::Error {
        let kind = match e {
            SmpError::Full => io::ErrorKind::WouldBlock,
            SmpError::Stopped => io::ErrorKind::BrokenPipe,
            SmpError::NoSuchWorker => io::ErrorKind::InvalidInput,
            SmpError::NotStarted => io::ErrorKind::NotConnected,
            SmpError::NotOnWorker | SmpError::WouldBlockWorker => io::ErrorKind::Unsupported,
        };
        io::Error::new(kind, e)
    }
}

/// What a message is called with.
enum Mode<'a> {
    /// Run it, on its target worker.
    Run(&'a Ctx),
    /// The target stopped: resolve with [`SmpError::Stopped`].
    Cancel,
    /// It was never sent: drop it quietly (the sender reports the error).
    Discard,
}

/// A message: always called exactly once, in one of the modes.
type Msg = Box<dyn for<'a> FnOnce(Mode<'a>) + Send>;

/// A flag alone on its cache line(s).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicBool);

/// What all workers share.
struct MeshInner {
    workers: usize,
    /// `rings[from * workers + to]`.
    rings: Vec<ArrayQueue<Msg>>,
    /// Requests from non-worker threads, per target.
    inboxes: Vec<ArrayQueue<Msg>>,
    /// Results for `invoke_on_then`, per origin.
    replies: Vec<SegQueue<Msg>>,
    /// Raised after a push towards the worker.
    pending: Vec<Padded>,
    /// Set when the worker stops.
    stopped: Vec<AtomicBool>,
    counters: Vec<Arc<WorkerCounters>>,
}

impl MeshInner {
    /// Sends `msg` to worker `to`, from the calling thread (a worker of
    /// this mesh, or not). On failure the message is discarded.
    fn send(self: &Arc<Self>, to: usize, msg: Msg) -> Result<(), SmpError> {
        if to >= self.workers {
            msg(Mode::Discard);
            return Err(SmpError::NoSuchWorker);
        }
        if self.stopped[to].load(Ordering::SeqCst) {
            msg(Mode::Discard);
            return Err(SmpError::Stopped);
        }
        let (queue, counters) = match local_worker(self) {
            Some(from) => (&self.rings[from * self.workers + to], &self.counters[from]),
            None => (&self.inboxes[to], &self.counters[to]),
        };
        if let Err(msg) = queue.push(msg) {
            counters.smp_queue_full.inc();
            msg(Mode::Discard);
            return Err(SmpError::Full);
        }
        counters.smp_sent.inc();
        self.pending[to].0.store(true, Ordering::SeqCst);
        if self.stopped[to].load(Ordering::SeqCst) {
            // Raced with the stop: the worker's final sweep or this one
            // takes it (each message once), and it resolves as stopped.
            while let Some(msg) = queue.pop() {
                msg(Mode::Cancel);
            }
        }
        Ok(())
    }

    /// Hands the result of an `invoke_on_then` to its origin.
    fn send_result(&self, origin: usize, msg: Msg) {
        self.replies[origin].push(msg);
        self.pending[origin].0.store(true, Ordering::SeqCst);
        if self.stopped[origin].load(Ordering::SeqCst) {
            while let Some(msg) = self.replies[origin].pop() {
                msg(Mode::Discard);
            }
        }
    }
}

/// The rings between a program's workers: made by the runtime when the
/// program declared [`Sharded`] state, one [`Endpoint`] per worker.
#[derive(Clone)]
pub struct Mesh(Arc<MeshInner>);

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("workers", &self.0.workers)
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// A mesh of `counters.len()` workers, `ring_size` slots per ring and
    /// per inbox; each worker counts its messages in its counters.
    ///
    /// # Panics
    /// If `ring_size` is 0.
    pub fn new(counters: Vec<Arc<WorkerCounters>>, ring_size: usize) -> Mesh {
        let n = counters.len();
        Mesh(Arc::new(MeshInner {
            workers: n,
            rings: (0..n * n).map(|_| ArrayQueue::new(ring_size)).collect(),
            inboxes: (0..n).map(|_| ArrayQueue::new(ring_size)).collect(),
            replies: (0..n).map(|_| SegQueue::new()).collect(),
            pending: (0..n).map(|_| Padded::default()).collect(),
            stopped: (0..n).map(|_| AtomicBool::new(false)).collect(),
            counters,
        }))
    }

    /// How many workers it links.
    pub fn workers(&self) -> usize {
        self.0.workers
    }

    /// Worker `id`'s end, to [`attach`](Endpoint::attach) on its thread.
    ///
    /// # Panics
    /// If `id` is not a worker of the mesh.
    pub fn endpoint(&self, id: usize) -> Endpoint {
        assert!(id < self.0.workers, "no worker {id}");
        Endpoint {
            mesh: self.0.clone(),
            id,
            attached: false,
            first: Cell::new(0),
        }
    }
}

/// A worker's state on its own thread.
struct Ctx {
    mesh: Arc<MeshInner>,
    id: usize,
    /// The worker's instance of each `Sharded`, by slot.
    shards: Vec<RefCell<Box<dyn Any>>>,
    /// The `then`s of this worker's `invoke_on_then`s, awaiting results.
    thens: RefCell<Slab<Box<dyn Any>>>,
}

thread_local! {
    /// The worker attached on this thread, if any.
    static CTX: RefCell<Option<Rc<Ctx>>> = const { RefCell::new(None) };
}

/// This thread's worker context, if any.
fn ctx() -> Option<Rc<Ctx>> {
    CTX.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// This thread's worker number in `mesh`, if it is one of its workers.
fn local_worker(mesh: &Arc<MeshInner>) -> Option<usize> {
    CTX.try_with(|c| {
        c.borrow()
            .as_ref()
            .filter(|ctx| Arc::ptr_eq(&ctx.mesh, mesh))
            .map(|ctx| ctx.id)
    })
    .ok()
    .flatten()
}

/// Whether this thread is a worker (of any mesh).
fn on_worker() -> bool {
    CTX.try_with(|c| c.borrow().is_some()).unwrap_or(false)
}

/// A worker's end of the [`Mesh`]: attached on the worker's thread, drained
/// once per poll round, and dropped when the worker stops (which resolves
/// what is still queued for it with [`SmpError::Stopped`]).
pub struct Endpoint {
    mesh: Arc<MeshInner>,
    id: usize,
    attached: bool,
    /// The queue the next drain starts with (after the results), turning
    /// round so that a flood in one cannot starve the others.
    first: Cell<usize>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("attached", &self.attached)
            .finish()
    }
}

impl Endpoint {
    /// The worker's number.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Makes the calling thread this worker, with `shards` its instances of
    /// the program's [`Sharded`] state in declaration order (what
    /// [`Shards::build`] makes).
    ///
    /// # Panics
    /// If the thread is a worker already, or the endpoint was attached.
    pub fn attach(&mut self, shards: Vec<Box<dyn Any>>) {
        assert!(!self.attached, "endpoint attached twice");
        CTX.with(|c| {
            let mut c = c.borrow_mut();
            assert!(c.is_none(), "this thread is a worker already");
            *c = Some(Rc::new(Ctx {
                mesh: self.mesh.clone(),
                id: self.id,
                shards: shards.into_iter().map(RefCell::new).collect(),
                thens: RefCell::new(Slab::new()),
            }));
        });
        self.attached = true;
    }

    /// Runs up to `budget` messages that came for this worker, in the
    /// calling thread (which must be the one it is attached to); returns
    /// how many ran. One relaxed load when nothing came.
    ///
    /// # Panics
    /// If the endpoint is not attached on this thread.
    pub fn drain(&self, budget: usize) -> usize {
        let mesh = &*self.mesh;
        let flag = &mesh.pending[self.id].0;
        if !flag.load(Ordering::Relaxed) || !flag.swap(false, Ordering::SeqCst) {
            return 0;
        }
        let ctx = ctx()
            .filter(|c| Arc::ptr_eq(&c.mesh, &self.mesh) && c.id == self.id)
            .expect("Endpoint::drain on a thread it is not attached to");
        let n = mesh.workers;
        let mut ran = 0;
        // Results first: they finish work this worker started.
        while ran < budget {
            let Some(msg) = mesh.replies[self.id].pop() else {
                break;
            };
            msg(Mode::Run(&ctx));
            ran += 1;
        }
        // The rings from each worker, then the inbox, from a starting point
        // that turns each round.
        let first = self.first.get();
        self.first.set((first + 1) % (n + 1));
        for i in 0..=n {
            let q = (first + i) % (n + 1);
            let queue = if q < n {
                &mesh.rings[q * n + self.id]
            } else {
                &mesh.inboxes[self.id]
            };
            while ran < budget {
                let Some(msg) = queue.pop() else { break };
                msg(Mode::Run(&ctx));
                ran += 1;
            }
        }
        if ran == budget {
            // Perhaps more: look again next round.
            flag.store(true, Ordering::SeqCst);
        }
        mesh.counters[self.id].smp_received.add(ran as u64);
        ran
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let mesh = &*self.mesh;
        mesh.stopped[self.id].store(true, Ordering::SeqCst);
        let n = mesh.workers;
        for from in 0..n {
            while let Some(msg) = mesh.rings[from * n + self.id].pop() {
                msg(Mode::Cancel);
            }
        }
        while let Some(msg) = mesh.inboxes[self.id].pop() {
            msg(Mode::Cancel);
        }
        while let Some(msg) = mesh.replies[self.id].pop() {
            msg(Mode::Discard);
        }
        if self.attached {
            let _ = CTX.try_with(|c| {
                let mut c = c.borrow_mut();
                if c.as_ref()
                    .is_some_and(|ctx| Arc::ptr_eq(&ctx.mesh, &self.mesh))
                {
                    *c = None;
                }
            });
        }
    }
}

/// Makes a worker's instance of one `Sharded` state.
type ShardFactory = Arc<dyn Fn(&WorkerInfo<'_>) -> Box<dyn Any> + Send + Sync>;

/// A program's [`Sharded`] declarations: what the runtime builds on each
/// worker, and the mesh their handles reach once it runs.
#[derive(Clone, Default)]
pub struct Shards {
    factories: Vec<ShardFactory>,
    mesh: Arc<OnceLock<Mesh>>,
}

impl fmt::Debug for Shards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shards")
            .field("declared", &self.factories.len())
            .field("started", &self.mesh.get().is_some())
            .finish()
    }
}

impl Shards {
    /// No declarations.
    pub fn new() -> Shards {
        Shards::default()
    }

    /// Declares per-worker state made by `factory` on each worker's thread.
    pub fn add<S, F>(&mut self, factory: F) -> Sharded<S>
    where
        S: 'static,
        F: Fn(&WorkerInfo<'_>) -> S + Send + Sync + 'static,
    {
        let slot = self.factories.len();
        self.factories
            .push(Arc::new(move |worker: &WorkerInfo<'_>| {
                Box::new(factory(worker))
            }));
        Sharded {
            slot,
            mesh: self.mesh.clone(),
            _state: PhantomData,
        }
    }

    /// Whether nothing was declared.
    pub fn is_empty(&self) -> bool {
        self.factories.is_empty()
    }

    /// Makes the mesh the handles reach (once; later calls return the
    /// first one).
    pub fn start(&self, counters: Vec<Arc<WorkerCounters>>, ring_size: usize) -> Mesh {
        self.mesh
            .get_or_init(|| Mesh::new(counters, ring_size))
            .clone()
    }

    /// The instances for `worker`, in declaration order (for
    /// [`Endpoint::attach`]).
    pub fn build(&self, worker: &WorkerInfo<'_>) -> Vec<Box<dyn Any>> {
        self.factories.iter().map(|f| f(worker)).collect()
    }
}

/// A handle on per-worker state `S`: each worker has its own instance,
/// and the handle reaches any of them (see the [module docs](self)).
/// Declared with [`Runtime::sharded`](crate::Runtime::sharded).
pub struct Sharded<S> {
    slot: usize,
    mesh: Arc<OnceLock<Mesh>>,
    _state: PhantomData<fn(&mut S)>,
}

impl<S> Clone for Sharded<S> {
    fn clone(&self) -> Self {
        Sharded {
            slot: self.slot,
            mesh: self.mesh.clone(),
            _state: PhantomData,
        }
    }
}

impl<S> fmt::Debug for Sharded<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sharded")
            .field("slot", &self.slot)
            .field("workers", &self.workers())
            .finish()
    }
}

impl<S> Sharded<S> {
    /// How many workers (instances) there are; 0 until the runtime starts.
    pub fn workers(&self) -> usize {
        self.mesh.get().map_or(0, Mesh::workers)
    }

    /// The calling thread's worker number, if it is one of this runtime's
    /// workers.
    pub fn local_worker(&self) -> Option<usize> {
        local_worker(&self.mesh.get()?.0)
    }

    fn inner(&self) -> Result<&Arc<MeshInner>, SmpError> {
        self.mesh.get().map(|m| &m.0).ok_or(SmpError::NotStarted)
    }
}

impl<S: 'static> Sharded<S> {
    /// Runs `f` on worker `worker` against its instance, between two of
    /// its poll rounds; the [`Reply`] resolves with `f`'s result. A full
    /// ring, a stopped or unknown worker, or a runtime not started yet
    /// make a reply that is ready with the error at once (nothing is
    /// sent). From any thread.
    pub fn invoke_on<R, F>(&self, worker: usize, f: F) -> Reply<R>
    where
        F: FnOnce(&mut S) -> R + Send + 'static,
        R: Send + 'static,
    {
        let mesh = match self.inner() {
            Ok(mesh) => mesh,
            Err(e) => return Reply::ready(Err(e)),
        };
        let cell = Arc::new(ReplyCell::default());
        let sender = CellSender(Some(cell.clone()));
        let slot = self.slot;
        let msg: Msg = Box::new(move |mode: Mode<'_>| match mode {
            Mode::Run(ctx) => {
                let result = run_on::<S, R>(ctx, slot, f);
                sender.complete(result);
            }
            Mode::Cancel => sender.complete(Err(SmpError::Stopped)),
            Mode::Discard => sender.forget(),
        });
        match mesh.send(worker, msg) {
            Ok(()) => Reply { cell },
            Err(e) => Reply::ready(Err(e)),
        }
    }

    /// For callback services, which cannot await: runs `f` on worker
    /// `worker` as [`invoke_on`](Self::invoke_on) does, then `then(result)`
    /// on the calling worker, between two of its poll rounds (never inside
    /// this call, even when `worker` is the caller). `then` stays on the
    /// calling worker, so it need not be `Send`. If `worker` stops first,
    /// `then` gets [`SmpError::Stopped`]; if the caller stops first, `then`
    /// is dropped without being called.
    ///
    /// # Errors
    /// [`SmpError::NotOnWorker`] off a worker thread; `Full`, `Stopped`,
    /// `NoSuchWorker` or `NotStarted` when nothing could be sent (`then`
    /// is then dropped without being called).
    pub fn invoke_on_then<R, F, T>(&self, worker: usize, f: F, then: T) -> Result<(), SmpError>
    where
        F: FnOnce(&mut S) -> R + Send + 'static,
        R: Send + 'static,
        T: FnOnce(Result<R, SmpError>) + 'static,
    {
        let mesh = self.inner()?;
        let origin = ctx()
            .filter(|c| Arc::ptr_eq(&c.mesh, mesh))
            .ok_or(SmpError::NotOnWorker)?;
        let then: Box<dyn FnOnce(Result<R, SmpError>)> = Box::new(then);
        let token = origin.thens.borrow_mut().insert(Box::new(then));
        let back = ThenSender {
            mesh: Arc::downgrade(mesh),
            origin: origin.id,
            token,
            armed: true,
            _result: PhantomData,
        };
        let slot = self.slot;
        let msg: Msg = Box::new(move |mode: Mode<'_>| match mode {
            Mode::Run(ctx) => {
                let result = run_on::<S, R>(ctx, slot, f);
                back.complete(result);
            }
            Mode::Cancel => back.complete(Err(SmpError::Stopped)),
            Mode::Discard => back.disarm(),
        });
        let sent = mesh.send(worker, msg);
        if sent.is_err() {
            drop(origin.thens.borrow_mut().try_remove(token));
        }
        sent
    }

    /// Runs `f` on the calling worker's own instance, now, with no message.
    ///
    /// # Errors
    /// [`SmpError::NotOnWorker`] off this runtime's worker threads (or
    /// [`SmpError::NotStarted`] before it runs).
    ///
    /// # Panics
    /// If called from inside `f` (or from a message running on the same
    /// instance): the instance is borrowed.
    pub fn with_local<R>(&self, f: impl FnOnce(&mut S) -> R) -> Result<R, SmpError> {
        let mesh = self.inner()?;
        let ctx = ctx()
            .filter(|c| Arc::ptr_eq(&c.mesh, mesh))
            .ok_or(SmpError::NotOnWorker)?;
        run_on::<S, R>(&ctx, self.slot, f)
    }
}

/// Runs `f` against the worker's instance in `slot`.
fn run_on<S: 'static, R>(
    ctx: &Ctx,
    slot: usize,
    f: impl FnOnce(&mut S) -> R,
) -> Result<R, SmpError> {
    let mut instance = ctx
        .shards
        .get(slot)
        .expect("a Sharded slot the worker has no instance for")
        .borrow_mut();
    let state = instance
        .downcast_mut::<S>()
        .expect("a Sharded slot of another type");
    Ok(f(state))
}

/// The result of an `invoke_on_then` on its way to the origin.
struct ThenSender<R: Send + 'static> {
    /// Weak: the sender waits in the mesh's own queues (and has nothing
    /// to deliver to once the mesh is gone).
    mesh: Weak<MeshInner>,
    origin: usize,
    token: usize,
    armed: bool,
    _result: PhantomData<fn(R)>,
}

impl<R: Send + 'static> ThenSender<R> {
    fn complete(mut self, result: Result<R, SmpError>) {
        self.armed = false;
        let token = self.token;
        let msg: Msg = Box::new(move |mode: Mode<'_>| {
            if let Mode::Run(ctx) = mode {
                let then = ctx.thens.borrow_mut().try_remove(token);
                if let Some(then) = then {
                    let then = then
                        .downcast::<Box<dyn FnOnce(Result<R, SmpError>)>>()
                        .expect("a then of the result's type");
                    then(result);
                }
            }
        });
        let Some(mesh) = self.mesh.upgrade() else {
            return;
        };
        if let Some(from) = local_worker(&mesh) {
            mesh.counters[from].smp_sent.inc();
        }
        mesh.send_result(self.origin, msg);
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl<R: Send + 'static> Drop for ThenSender<R> {
    fn drop(&mut self) {
        if self.armed {
            // Dropped unrun (a panic in `f`, say): the origin's then gets
            // `Stopped` rather than waiting forever.
            let token = self.token;
            let msg: Msg = Box::new(move |mode: Mode<'_>| {
                if let Mode::Run(ctx) = mode {
                    let then = ctx.thens.borrow_mut().try_remove(token);
                    if let Some(then) = then {
                        if let Ok(then) = then.downcast::<Box<dyn FnOnce(Result<R, SmpError>)>>() {
                            then(Err(SmpError::Stopped));
                        }
                    }
                }
            });
            if let Some(mesh) = self.mesh.upgrade() {
                mesh.send_result(self.origin, msg);
            }
        }
    }
}

/// Where a reply meets its waiter.
struct ReplyCell<R> {
    state: Mutex<CellState<R>>,
}

impl<R> Default for ReplyCell<R> {
    fn default() -> Self {
        ReplyCell {
            state: Mutex::new(CellState {
                value: None,
                waker: None,
                thread: None,
            }),
        }
    }
}

struct CellState<R> {
    value: Option<Result<R, SmpError>>,
    waker: Option<Waker>,
    thread: Option<Thread>,
}

/// The answering side of a [`ReplyCell`]; dropped unused, it resolves the
/// reply with [`SmpError::Stopped`].
struct CellSender<R>(Option<Arc<ReplyCell<R>>>);

impl<R> CellSender<R> {
    fn complete(mut self, result: Result<R, SmpError>) {
        if let Some(cell) = self.0.take() {
            resolve(&cell, result);
        }
    }

    fn forget(mut self) {
        self.0 = None;
    }
}

impl<R> Drop for CellSender<R> {
    fn drop(&mut self) {
        if let Some(cell) = self.0.take() {
            resolve(&cell, Err(SmpError::Stopped));
        }
    }
}

fn resolve<R>(cell: &ReplyCell<R>, result: Result<R, SmpError>) {
    let (waker, thread) = {
        let mut state = cell.state.lock().unwrap_or_else(|p| p.into_inner());
        state.value = Some(result);
        (state.waker.take(), state.thread.take())
    };
    if let Some(waker) = waker {
        waker.wake();
    }
    if let Some(thread) = thread {
        thread.unpark();
    }
}

/// The result of [`Sharded::invoke_on`]: await it (from a task on any
/// worker) or [`wait`](Reply::wait) for it (from an ordinary thread).
#[must_use = "a reply does nothing unless awaited or waited for (the request runs all the same)"]
pub struct Reply<R> {
    cell: Arc<ReplyCell<R>>,
}

impl<R> fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<R> Reply<R> {
    fn ready(result: Result<R, SmpError>) -> Reply<R> {
        let cell = Arc::new(ReplyCell::default());
        cell.state.lock().expect("a new cell").value = Some(result);
        Reply { cell }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CellState<R>> {
        self.cell.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the result (or error) is there.
    pub fn is_ready(&self) -> bool {
        self.lock().value.is_some()
    }

    /// Takes the result if it is there (for a callback that looks again
    /// later); `None` while the request is under way.
    pub fn try_take(&mut self) -> Option<Result<R, SmpError>> {
        self.lock().value.take()
    }

    /// Blocks the calling thread (parked, not spinning) until the result
    /// comes.
    ///
    /// # Errors
    /// The request's error, or [`SmpError::WouldBlockWorker`] at once on a
    /// worker thread.
    pub fn wait(self) -> Result<R, SmpError> {
        if on_worker() {
            return Err(SmpError::WouldBlockWorker);
        }
        loop {
            {
                let mut state = self.lock();
                if let Some(value) = state.value.take() {
                    return value;
                }
                state.thread = Some(std::thread::current());
            }
            std::thread::park();
        }
    }
}

impl<R> Future for Reply<R> {
    type Output = Result<R, SmpError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.lock();
        if let Some(value) = state.value.take() {
            return Poll::Ready(value);
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
#[path = "smp_tests.rs"]
mod tests;
