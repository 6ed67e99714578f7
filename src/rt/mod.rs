//! The per-worker async runtime: a local executor and timers, polled inside
//! the worker's poll round.
//!
//! Each worker owns one [`Executor`]. It is `!Send`, runs only on its
//! worker's thread and is never locked: the worker calls [`Executor::run`]
//! once per poll round, between draining the NIC and flushing the TX burst.
//! There are no executor threads, no work stealing and no cross-core traffic
//! on the fast path.
//!
//! - **Tasks** are allocated by the `async-task` crate (one allocation per
//!   task holding the future, its output and the waker's state; see
//!   [`spawn_local`]). A task is identified by a [`TaskId`], a small number
//!   unique within its executor; [`current_task`] names the task being
//!   polled right now, so that the network layer can note which task owns a
//!   connection.
//! - **Only woken tasks are polled.** Wakers push a task's `Runnable` onto
//!   the executor's run queue (a `VecDeque`), and `run` polls from that
//!   queue only; idle tasks cost nothing per round, so a round costs the
//!   same with 100 or 100,000 idle tasks. A waker finds its executor's queue
//!   through a thread-local registry of the thread's executors (normally
//!   one), by the executor's id: a short scan, no atomics.
//! - **Foreign wakes.** A waker is `Send` and may be woken from another
//!   thread (a blocking helper, a channel from the control thread). Such a
//!   wake cannot touch the worker's queue, and `async-task` forbids polling
//!   or dropping a local task on another thread, so the `Runnable` goes to a
//!   lock-free `crossbeam_queue::SegQueue` shared with the executor, and a
//!   flag is raised; `run` checks the flag (one relaxed atomic load when no
//!   foreign wake came) and moves what arrived onto the run queue. Workers
//!   busy-poll, so nothing needs to be unparked. Foreign wakes are
//!   supported, not the fast path: they cost a few atomic operations and a
//!   cache line moving between cores.
//! - **Budget.** `run` polls at most as many tasks as were queued when it
//!   started (after firing timers and taking in foreign wakes). A task woken
//!   during the round, itself included (see [`yield_now`]), waits for the
//!   next round, so a task that always wakes itself cannot starve the
//!   network.
//! - **Panics.** Each poll of a task's future runs under
//!   `std::panic::catch_unwind`. A panic ends that task only: its future is
//!   dropped, its [`JoinHandle`] yields [`JoinError::Panicked`], the panic
//!   is counted and logged (`tracing::error!` with the task id and message),
//!   and its id is handed to the callback set by [`Executor::on_panic`] or
//!   kept for [`Executor::take_panicked`], so the network layer can reset
//!   the connections the task owned. This needs `panic = "unwind"`, which is
//!   why the release profile no longer aborts on panic.
//! - **Timers** ([`sleep`], [`sleep_until`], [`timeout`]) live on the
//!   executor's own [`TimerWheel`](crate::tcp::timer_wheel::TimerWheel)
//!   (1 ms ticks, O(1) insert and cancel). The executor's clock is the
//!   worker's: the `now_ns` given to [`Executor::new`] and to each `run`,
//!   mapped to [`std::time::Instant`] for APIs that speak `Instant` (hyper's
//!   timer). `run` fires the expired timers before polling, so a sleep
//!   resolves in the first round at or after its deadline. A [`Sleep`]
//!   registers with the wheel on its first pending poll and leaves it when
//!   dropped.
//!
//! [`net`] puts TCP on the executor: [`TcpListener`] and [`TcpStream`] (with
//! tokio's `AsyncRead`/`AsyncWrite` behind the `tokio-io` feature, on by
//! default, and futures' behind `futures-io`, off by default), served from
//! the worker's own TCP table; [`TcpStream::connect`] opens connections
//! from source ports whose replies come back to the worker. [`udp`] puts
//! UDP there: [`UdpSocket`], fed with the datagrams the rules give an async
//! service.
//!
//! With the `hyper` feature, [`ShardnetTimer`] and [`ShardnetExecutor`] let
//! hyper's connections run on this executor (`Builder::timer`, which
//! `header_read_timeout` needs, and `Builder::new(executor)` for HTTP/2).
//!
//! Dropping an [`Executor`] drops the futures of its queued tasks and its
//! timers; a task that is idle then is dropped when the last waker for it
//! goes (on the executor's thread), or leaked if that happens on another
//! thread, since `async-task` must not drop a local future there.

mod executor;
#[cfg(feature = "hyper")]
mod hyper;
pub mod net;
mod time;
pub mod udp;

pub use executor::{
    current_task, spawn_local, yield_now, Executor, ExecutorStats, JoinError, JoinHandle, TaskId,
    YieldNow,
};
#[cfg(feature = "hyper")]
pub use hyper::{ShardnetExecutor, ShardnetTimer};
pub use net::{Connect, TcpListener, TcpStream};
pub use time::{
    now, now_ns, sleep, sleep_until, timeout, timeout_at, Elapsed, Sleep, Timeout, TIMER_TICK_NS,
};
pub use udp::UdpSocket;
