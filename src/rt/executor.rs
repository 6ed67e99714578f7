//! The executor: tasks, the run queue, wakers and panic isolation (see the
//! [module documentation](super) for the design).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use async_task::{FallibleTask, Runnable};
use crossbeam_queue::SegQueue;

use super::time::Timers;

/// Names a task, unique within its executor (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(u64);

impl TaskId {
    /// The id as a number (tasks are numbered from 1 in spawn order).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// Why a [`JoinHandle`] has no output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The task panicked; the panic's message (or a placeholder when the
    /// payload was not a string).
    #[error("task panicked: {0}")]
    Panicked(String),
    /// The task was aborted ([`JoinHandle::abort`]) or its executor was
    /// dropped before it finished.
    #[error("task was cancelled")]
    Cancelled,
}

/// An executor's counters (see [`Executor::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Tasks alive now: spawned, and neither finished nor dropped.
    pub tasks: usize,
    /// Tasks spawned since the executor was made.
    pub spawned: u64,
    /// Task polls made by [`Executor::run`].
    pub polls: u64,
    /// Tasks ended by a panic.
    pub panics: u64,
    /// Timers pending on the executor's wheel.
    pub timers: usize,
}

/// Counters and panic reports, shared with every task's future (which
/// decrements `live` when dropped, wherever that happens).
#[derive(Default)]
struct TaskStats {
    /// Tasks alive.
    live: Cell<usize>,
    /// Tasks spawned.
    spawned: Cell<u64>,
    /// Polls made by `run`.
    polls: Cell<u64>,
    /// Panics caught.
    panics: Cell<u64>,
    /// Tasks that panicked and were not yet reported.
    panicked: RefCell<Vec<TaskId>>,
}

/// Source of executor ids, unique in the process.
static NEXT_EXECUTOR: AtomicU64 = AtomicU64::new(1);

/// The part of an executor that wakers hold: reachable from any thread.
struct Shared {
    /// The executor's id, the key of its entry in the thread's registry.
    id: u64,
    /// The executor's thread.
    owner: ThreadId,
    /// Tasks woken where the run queue was out of reach (another thread).
    remote: SegQueue<Runnable>,
    /// Raised after a push onto `remote`; lowered by `run` before it drains.
    remote_pending: AtomicBool,
    /// Set when the executor is dropped: nothing will drain `remote` again.
    closed: AtomicBool,
}

impl Shared {
    /// The schedule function of every task: onto the run queue when the
    /// executor is alive on this thread, otherwise onto `remote`.
    fn schedule(&self, runnable: Runnable) {
        if let Some(local) = registered(self.id) {
            local.queue.borrow_mut().push_back(runnable);
            return;
        }
        self.remote.push(runnable);
        self.remote_pending.store(true, Ordering::SeqCst);
        // Either this load sees `closed`, or the executor's final drain
        // (which follows its store of `closed`) sees the push.
        if self.closed.load(Ordering::SeqCst) {
            self.discard_remote();
        }
    }

    /// Empties `remote` once the executor is gone: a local task's future
    /// may be dropped on its own thread only, so elsewhere it is leaked.
    fn discard_remote(&self) {
        let here = std::thread::current().id() == self.owner;
        while let Some(runnable) = self.remote.pop() {
            if here {
                drop(runnable);
            } else {
                std::mem::forget(runnable);
            }
        }
    }
}

/// The executor's state on its own thread.
pub(super) struct Local {
    /// Same as `shared.id`.
    id: u64,
    /// What wakers hold.
    shared: Arc<Shared>,
    /// Tasks woken and not yet polled, in wake order.
    queue: RefCell<VecDeque<Runnable>>,
    /// The executor's timers.
    pub(super) timers: RefCell<Timers>,
    /// Wakers of fired timers, between the wheel and waking them (kept to
    /// reuse its allocation).
    fired: RefCell<Vec<Waker>>,
    /// The clock: the latest `now_ns` given to `new` or `run`.
    now_ns: Cell<u64>,
    /// An `Instant` and the clock reading it corresponds to.
    base: (Instant, u64),
    /// Counters and panic reports.
    stats: Rc<TaskStats>,
    /// The next task id.
    next_task: Cell<u64>,
    /// Where panicked task ids go, if set.
    on_panic: RefCell<Option<PanicCallback>>,
}

/// What [`Executor::on_panic`] sets.
type PanicCallback = Box<dyn FnMut(TaskId)>;

impl Local {
    /// The executor's clock, in nanoseconds.
    pub(super) fn now_ns(&self) -> u64 {
        self.now_ns.get()
    }

    /// The clock reading `ns` as an `Instant`.
    pub(super) fn instant_of(&self, ns: u64) -> Instant {
        let (base, base_ns) = self.base;
        if ns >= base_ns {
            base + Duration::from_nanos(ns - base_ns)
        } else {
            base.checked_sub(Duration::from_nanos(base_ns - ns))
                .unwrap_or(base)
        }
    }

    /// The clock reading at `instant` (saturating at 0).
    pub(super) fn ns_of(&self, instant: Instant) -> u64 {
        let (base, base_ns) = self.base;
        if instant >= base {
            let after = instant.duration_since(base).as_nanos();
            base_ns.saturating_add(u64::try_from(after).unwrap_or(u64::MAX))
        } else {
            let before = base.duration_since(instant).as_nanos();
            base_ns.saturating_sub(u64::try_from(before).unwrap_or(u64::MAX))
        }
    }

    /// Spawns `future` as a task queued to run.
    fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let id = TaskId(self.next_task.get());
        self.next_task.set(id.0 + 1);
        let stats = &self.stats;
        stats.spawned.set(stats.spawned.get() + 1);
        stats.live.set(stats.live.get() + 1);
        let future = TaskFuture {
            id,
            future: Some(future),
            stats: Live(stats.clone()),
        };
        let shared = self.shared.clone();
        let (runnable, task) =
            async_task::spawn_local(future, move |runnable| shared.schedule(runnable));
        self.queue.borrow_mut().push_back(runnable);
        JoinHandle {
            id,
            state: RefCell::new(HandleState::Running(task.fallible())),
        }
    }

    /// One round: timers, foreign wakes, then the tasks queued now.
    fn run(&self, now_ns: u64) -> usize {
        if now_ns > self.now_ns.get() {
            self.now_ns.set(now_ns);
        }
        let mut fired = std::mem::take(&mut *self.fired.borrow_mut());
        self.timers
            .borrow_mut()
            .advance(self.now_ns.get(), &mut fired);
        // Woken with no borrow held: a waker may run any code.
        for waker in fired.drain(..) {
            waker.wake();
        }
        *self.fired.borrow_mut() = fired;

        let shared = &self.shared;
        if shared.remote_pending.load(Ordering::Relaxed)
            && shared.remote_pending.swap(false, Ordering::SeqCst)
        {
            let mut queue = self.queue.borrow_mut();
            while let Some(runnable) = shared.remote.pop() {
                queue.push_back(runnable);
            }
        }

        let budget = self.queue.borrow().len();
        let mut polled = 0;
        while polled < budget {
            let Some(runnable) = self.queue.borrow_mut().pop_front() else {
                break;
            };
            runnable.run();
            polled += 1;
            self.report_panics();
        }
        let stats = &self.stats;
        stats.polls.set(stats.polls.get() + polled as u64);
        polled
    }

    /// Hands panicked task ids to the `on_panic` callback, if one is set.
    fn report_panics(&self) {
        if self.stats.panicked.borrow().is_empty() {
            return;
        }
        // Taken out while it runs, so that it may call `on_panic` itself.
        let Some(mut callback) = self.on_panic.borrow_mut().take() else {
            return;
        };
        let ids = std::mem::take(&mut *self.stats.panicked.borrow_mut());
        for id in ids {
            callback(id);
        }
        let mut slot = self.on_panic.borrow_mut();
        if slot.is_none() {
            *slot = Some(callback);
        }
    }
}

thread_local! {
    /// The executors alive on this thread (normally one), for wakers.
    static REGISTRY: RefCell<Vec<Rc<Local>>> = const { RefCell::new(Vec::new()) };
    /// The executor entered on this thread, if any.
    static CURRENT: RefCell<Option<Rc<Local>>> = const { RefCell::new(None) };
    /// The task being polled on this thread, if any.
    static CURRENT_TASK: Cell<Option<TaskId>> = const { Cell::new(None) };
}

/// The executor `id`, if it is alive on this thread.
pub(super) fn registered(id: u64) -> Option<Rc<Local>> {
    REGISTRY
        .try_with(|registry| registry.borrow().iter().find(|l| l.id == id).cloned())
        .ok()
        .flatten()
}

/// The entered executor, if any.
pub(super) fn current() -> Option<Rc<Local>> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// The entered executor.
///
/// # Panics
/// If there is none; `what` names the caller in the message.
pub(super) fn expect_current(what: &str) -> Rc<Local> {
    current().unwrap_or_else(|| {
        panic!(
            "shardnet::rt::{what} called outside a shardnet executor: call it from a task, \
             or inside Executor::enter or Executor::run"
        )
    })
}

/// The id of the executor `local`.
pub(super) fn id_of(local: &Local) -> u64 {
    local.id
}

/// A per-worker executor of `!Send` futures (see the
/// [module documentation](super)).
pub struct Executor {
    /// The state, also in the thread's registry and in `CURRENT` while
    /// entered.
    local: Rc<Local>,
}

impl Executor {
    /// An executor whose clock reads `now_ns` now: later readings (given to
    /// [`run`](Self::run)) map to `Instant`s by the same offset, so they
    /// should come from a monotonic clock that advances with `Instant` (the
    /// worker's `Clock`), or be a test's fake clock.
    pub fn new(now_ns: u64) -> Self {
        let id = NEXT_EXECUTOR.fetch_add(1, Ordering::Relaxed);
        let local = Rc::new(Local {
            id,
            shared: Arc::new(Shared {
                id,
                owner: std::thread::current().id(),
                remote: SegQueue::new(),
                remote_pending: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
            queue: RefCell::new(VecDeque::new()),
            timers: RefCell::new(Timers::new(now_ns)),
            fired: RefCell::new(Vec::new()),
            now_ns: Cell::new(now_ns),
            base: (Instant::now(), now_ns),
            stats: Rc::new(TaskStats::default()),
            next_task: Cell::new(1),
            on_panic: RefCell::new(None),
        });
        REGISTRY.with(|registry| registry.borrow_mut().push(local.clone()));
        Executor { local }
    }

    /// Runs `f` with this executor as the thread's current one, for
    /// [`spawn_local`], [`sleep`](super::sleep) and the like; the previous
    /// one (if any) is current again afterwards, also if `f` panics.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Puts the previous executor back.
        struct Restore(Option<Rc<Local>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                let _ = CURRENT.try_with(|c| c.replace(previous));
            }
        }
        let previous = CURRENT.with(|c| c.replace(Some(self.local.clone())));
        let _restore = Restore(previous);
        f()
    }

    /// Spawns a task on this executor (as [`spawn_local`] does from inside
    /// it). It runs at the next [`run`](Self::run).
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.local.spawn(future)
    }

    /// One round, at clock reading `now_ns` (a reading earlier than the
    /// last one counts as the last one): fires the timers due, takes in
    /// tasks woken from other threads, then polls the tasks queued at that
    /// point, once each, in wake order. Tasks woken meanwhile wait for the
    /// next round. Returns how many tasks were polled.
    pub fn run(&self, now_ns: u64) -> usize {
        self.enter(|| self.local.run(now_ns))
    }

    /// A time at or before the earliest pending timer's deadline (exact
    /// within the current 1 ms tick), or `None` without timers.
    pub fn next_deadline(&self) -> Option<u64> {
        self.local.timers.borrow().next_deadline()
    }

    /// Whether a task is queued to run (or was woken from another thread).
    pub fn has_ready(&self) -> bool {
        !self.local.queue.borrow().is_empty()
            || self.local.shared.remote_pending.load(Ordering::Relaxed)
    }

    /// Tasks alive: spawned, and neither finished nor dropped.
    pub fn tasks(&self) -> usize {
        self.local.stats.live.get()
    }

    /// The executor's counters.
    pub fn stats(&self) -> ExecutorStats {
        let stats = &self.local.stats;
        ExecutorStats {
            tasks: stats.live.get(),
            spawned: stats.spawned.get(),
            polls: stats.polls.get(),
            panics: stats.panics.get(),
            timers: self.local.timers.borrow().len(),
        }
    }

    /// The executor's clock: the latest reading given to `new` or `run`.
    pub fn now_ns(&self) -> u64 {
        self.local.now_ns()
    }

    /// The tasks that panicked since the last call, in order. Without an
    /// [`on_panic`](Self::on_panic) callback, ids accumulate here until
    /// taken.
    pub fn take_panicked(&self) -> Vec<TaskId> {
        std::mem::take(&mut *self.local.stats.panicked.borrow_mut())
    }

    /// Calls `callback` with the id of each task that panics, from
    /// [`run`](Self::run) right after the poll that panicked (not from
    /// inside the task), and with any ids not yet taken. Replaces an earlier
    /// callback.
    pub fn on_panic(&self, callback: Box<dyn FnMut(TaskId)>) {
        *self.local.on_panic.borrow_mut() = Some(callback);
        self.local.report_panics();
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("id", &self.local.id)
            .field("now_ns", &self.now_ns())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let local = &self.local;
        local.shared.closed.store(true, Ordering::SeqCst);
        let _ = REGISTRY.try_with(|registry| registry.borrow_mut().retain(|l| l.id != local.id));
        // Dropping a task's future may wake others: they reach `remote`,
        // which sees `closed` and drops them here too.
        let queued = std::mem::take(&mut *local.queue.borrow_mut());
        drop(queued);
        local.shared.discard_remote();
        let timers = std::mem::replace(&mut *local.timers.borrow_mut(), Timers::new(0));
        drop(timers);
    }
}

/// Spawns a task on the current executor; it runs at the executor's next
/// round. Dropping the returned handle detaches the task.
///
/// A task costs one allocation, holding the future (or its output) and
/// about 40 bytes of task state (see `tests/rt_task_memory.rs`).
///
/// # Panics
/// Outside an executor (a task, [`Executor::enter`] or [`Executor::run`]).
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    expect_current("spawn_local").spawn(future)
}

/// The task being polled on this thread right now, if any.
pub fn current_task() -> Option<TaskId> {
    CURRENT_TASK.try_with(Cell::get).ok().flatten()
}

/// Lets the other queued tasks run: pending once (waking itself, so the
/// task runs again next round), then ready.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    /// Whether it returned pending once already.
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Decrements the live task count when the task's future is dropped.
struct Live(Rc<TaskStats>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.set(self.0.live.get() - 1);
    }
}

pin_project_lite::pin_project! {
    /// A task's future: the user's, polled under `catch_unwind` with the
    /// task's id current.
    struct TaskFuture<F> {
        id: TaskId,
        #[pin]
        future: Option<F>,
        stats: Live,
    }
}

impl<F: Future> Future for TaskFuture<F> {
    type Output = Result<F::Output, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            // async-task never polls a finished task again.
            return Poll::Pending;
        };
        let id = *this.id;
        let previous = CURRENT_TASK.replace(Some(id));
        let result = catch_unwind(AssertUnwindSafe(|| future.poll(cx)));
        CURRENT_TASK.set(previous);
        match result {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                this.future.set(None);
                Poll::Ready(Ok(output))
            }
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                // The future's destructor may panic too; that is the same
                // task's panic, already being handled.
                let _ = catch_unwind(AssertUnwindSafe(|| this.future.set(None)));
                let stats = &this.stats.0;
                stats.panics.set(stats.panics.get() + 1);
                stats.panicked.borrow_mut().push(id);
                tracing::error!(task = id.0, panic = %message, "task panicked; it was dropped");
                Poll::Ready(Err(JoinError::Panicked(message)))
            }
        }
    }
}

/// The message of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Where a [`JoinHandle`] stands.
enum HandleState<T> {
    /// The task may still produce its output.
    Running(FallibleTask<Result<T, JoinError>>),
    /// Aborted before it finished.
    Aborted,
    /// The output was returned.
    Done,
}

/// Awaits a task's output: `Ok(output)`, or why there is none. Dropping it
/// detaches the task, which keeps running.
#[must_use = "dropping a JoinHandle detaches the task"]
pub struct JoinHandle<T> {
    /// The task's id.
    id: TaskId,
    /// The task, until aborted or joined.
    state: RefCell<HandleState<T>>,
}

impl<T> JoinHandle<T> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// Cancels the task unless it has finished: its future is dropped at
    /// the executor's next round (or now, if it is not queued and nothing
    /// else holds it), and awaiting the handle gives
    /// [`JoinError::Cancelled`]. A task that already finished keeps its
    /// output for the handle.
    pub fn abort(&self) {
        let mut state = self.state.borrow_mut();
        if matches!(&*state, HandleState::Running(task) if !task.is_finished()) {
            let task = std::mem::replace(&mut *state, HandleState::Aborted);
            drop(state);
            // Dropping the task handle cancels it.
            drop(task);
        }
    }

    /// Whether the task has finished (completed, panicked or cancelled).
    pub fn is_finished(&self) -> bool {
        match &*self.state.borrow() {
            HandleState::Running(task) => task.is_finished(),
            HandleState::Aborted | HandleState::Done => true,
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let state = self.get_mut().state.get_mut();
        let output = match state {
            HandleState::Running(task) => match Pin::new(task).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(output)) => output,
                // Cancelled by the executor's drop.
                Poll::Ready(None) => Err(JoinError::Cancelled),
            },
            HandleState::Aborted => Err(JoinError::Cancelled),
            HandleState::Done => panic!("JoinHandle polled after completion"),
        };
        *state = HandleState::Done;
        Poll::Ready(output)
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let HandleState::Running(task) =
            std::mem::replace(self.state.get_mut(), HandleState::Done)
        {
            task.detach();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
