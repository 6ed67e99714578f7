//! Timers on the executor's wheel: [`sleep`], [`sleep_until`], [`timeout`]
//! (see the [module documentation](super)).
//!
//! A [`Sleep`] holds only its deadline and, once registered, its
//! executor's id and the key of its entry in the executor's [`Timers`]: it
//! is `Send + Sync` (as hyper's timer requires) and finds its executor
//! through the thread's registry. The entry (a waker and a fired flag) sits
//! in a slab; the wheel holds the key. Firing marks the entry and wakes
//! (a clone of) the waker; the next poll of the `Sleep` frees the entry, as does its
//! drop (cancelling the wheel timer), so an entry lives exactly as long as
//! its registered `Sleep`. A `Sleep` dropped on another thread than its
//! executor's cannot reach the entry, which then stays until the executor
//! is dropped.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::tcp::timer_wheel::{TimerId, TimerWheel};

use super::executor::{current, expect_current, id_of, registered};

/// The wheel's tick: timers fire in the first round at or after their
/// deadline; the tick only decides bucketing.
pub const TIMER_TICK_NS: u64 = 1_000_000;

/// One registered timer.
struct Entry {
    /// Whom to wake when it fires (kept after firing: a reset re-arms it).
    waker: Option<Waker>,
    /// Whether the deadline passed.
    fired: bool,
    /// Its wheel timer (stale once fired).
    timer: TimerId,
}

/// An executor's timers: the wheel and the entries it points to.
pub(super) struct Timers {
    /// Deadlines, holding entry keys.
    wheel: TimerWheel<u32>,
    /// Registered timers.
    entries: Slab<Entry>,
    /// Keys fired by the last advance (kept to reuse its allocation).
    fired: Vec<u32>,
}

impl Timers {
    /// No timers; the wheel's tick 0 starts at `now_ns`.
    pub(super) fn new(now_ns: u64) -> Self {
        Timers {
            wheel: TimerWheel::new(now_ns, TIMER_TICK_NS),
            entries: Slab::new(),
            fired: Vec::new(),
        }
    }

    /// Registered timers.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// See [`TimerWheel::next_deadline`].
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.wheel.next_deadline()
    }

    /// Registers a timer; returns its key.
    fn insert(&mut self, deadline_ns: u64, waker: Waker) -> u32 {
        let entry = self.entries.vacant_entry();
        let key = u32::try_from(entry.key()).expect("too many timers");
        let timer = self.wheel.insert(deadline_ns, key);
        entry.insert(Entry {
            waker: Some(waker),
            fired: false,
            timer,
        });
        key
    }

    /// Whether timer `key` fired; if so it is freed, otherwise `waker`
    /// replaces its waker. The replaced or freed waker is handed back, to
    /// be dropped by the caller with no borrow held.
    fn poll(&mut self, key: u32, waker: &Waker) -> (bool, Option<Waker>) {
        let entry = &mut self.entries[key as usize];
        if entry.fired {
            return (true, self.entries.remove(key as usize).waker);
        }
        match &mut entry.waker {
            Some(old) if old.will_wake(waker) => (false, None),
            slot => (false, slot.replace(waker.clone())),
        }
    }

    /// Moves timer `key` to `deadline_ns`, unfired.
    fn reset(&mut self, key: u32, deadline_ns: u64) {
        let entry = &mut self.entries[key as usize];
        self.wheel.cancel(entry.timer);
        entry.timer = self.wheel.insert(deadline_ns, key);
        entry.fired = false;
    }

    /// Frees timer `key`, cancelling it on the wheel. Returns its waker, to
    /// be dropped by the caller with no borrow held.
    fn remove(&mut self, key: u32) -> Option<Waker> {
        let entry = self.entries.try_remove(key as usize)?;
        self.wheel.cancel(entry.timer);
        entry.waker
    }

    /// Fires the timers due at `now_ns`, pushing their wakers.
    pub(super) fn advance(&mut self, now_ns: u64, wakers: &mut Vec<Waker>) {
        self.wheel.advance(now_ns, &mut self.fired);
        for key in self.fired.drain(..) {
            let entry = &mut self.entries[key as usize];
            entry.fired = true;
            wakers.extend(entry.waker.clone());
        }
    }
}

/// Where a registered [`Sleep`]'s entry is.
#[derive(Clone, Copy, Debug)]
struct Registration {
    /// The executor's id.
    executor: u64,
    /// The entry's key in its `Timers`.
    key: u32,
}

/// A future that completes at a deadline of the executor's clock (see
/// [`sleep`]). It is `Send + Sync` but must be polled on its executor's
/// thread.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    /// The deadline, in the executor's nanoseconds.
    deadline_ns: u64,
    /// The wheel entry, after a pending poll.
    registration: Option<Registration>,
}

impl Sleep {
    /// A sleep until clock reading `deadline_ns` (of the executor it will be
    /// polled on).
    pub fn until_ns(deadline_ns: u64) -> Self {
        Sleep {
            deadline_ns,
            registration: None,
        }
    }

    /// The deadline, in the executor's nanoseconds.
    pub fn deadline_ns(&self) -> u64 {
        self.deadline_ns
    }

    /// Whether the deadline passed, by the current executor's clock (false
    /// outside an executor).
    pub fn is_elapsed(&self) -> bool {
        current().is_some_and(|local| local.now_ns() >= self.deadline_ns)
    }

    /// Moves the deadline to `deadline_ns`, keeping the registration (and
    /// so the waker) if there is one: the task is woken at the new deadline
    /// even if it does not poll in between.
    pub fn reset_ns(&mut self, deadline_ns: u64) {
        self.deadline_ns = deadline_ns;
        if let Some(r) = self.registration {
            match registered(r.executor) {
                Some(local) => local.timers.borrow_mut().reset(r.key, deadline_ns),
                None => self.registration = None,
            }
        }
    }

    /// Moves the deadline to `deadline` (see [`reset_ns`](Self::reset_ns)).
    ///
    /// # Panics
    /// Outside an executor, if the sleep is not registered yet.
    pub fn reset(&mut self, deadline: Instant) {
        let local = self
            .registration
            .and_then(|r| registered(r.executor))
            .unwrap_or_else(|| expect_current("Sleep::reset"));
        self.reset_ns(local.ns_of(deadline));
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match this.registration {
            None => {
                let local = expect_current("Sleep::poll");
                if local.now_ns() >= this.deadline_ns {
                    return Poll::Ready(());
                }
                let key = local
                    .timers
                    .borrow_mut()
                    .insert(this.deadline_ns, cx.waker().clone());
                this.registration = Some(Registration {
                    executor: id_of(&local),
                    key,
                });
                Poll::Pending
            }
            Some(r) => {
                let local = registered(r.executor).expect(
                    "shardnet::rt::Sleep polled on a thread without its executor \
                     (a Sleep must stay on the worker that first polled it)",
                );
                let (fired, old_waker) = local.timers.borrow_mut().poll(r.key, cx.waker());
                drop(old_waker);
                if fired {
                    this.registration = None;
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(r) = self.registration.take() {
            if let Some(local) = registered(r.executor) {
                let waker = local.timers.borrow_mut().remove(r.key);
                drop(waker);
            }
        }
    }
}

/// A future that completes `duration` after now (the current executor's
/// clock).
///
/// # Panics
/// Outside an executor.
pub fn sleep(duration: Duration) -> Sleep {
    let now = expect_current("sleep").now_ns();
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Sleep::until_ns(now.saturating_add(nanos))
}

/// A future that completes at `deadline` (mapped to the current executor's
/// clock; a deadline in the past completes at once).
///
/// # Panics
/// Outside an executor.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::until_ns(expect_current("sleep_until").ns_of(deadline))
}

/// The current executor's clock as an `Instant`: the time of its current
/// round, not a fresh reading.
///
/// # Panics
/// Outside an executor.
pub fn now() -> Instant {
    let local = expect_current("now");
    local.instant_of(local.now_ns())
}

/// The current executor's clock in nanoseconds (see [`now`]).
///
/// # Panics
/// Outside an executor.
pub fn now_ns() -> u64 {
    expect_current("now_ns").now_ns()
}

/// The error of a [`Timeout`] whose deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed(());

pin_project_lite::pin_project! {
    /// A future with a deadline (see [`timeout`]).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

impl<F> Timeout<F> {
    /// The wrapped future.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs `future` for at most `duration`: its output, or [`Elapsed`] if the
/// deadline comes first (checked after polling the future, so a future
/// ready at the deadline wins).
///
/// # Panics
/// Outside an executor.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

/// Like [`timeout`], with a deadline.
///
/// # Panics
/// Outside an executor.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep_until(deadline),
    }
}

#[cfg(test)]
#[path = "time_tests.rs"]
mod tests;
