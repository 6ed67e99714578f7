//! hyper on the executor: [`ShardnetTimer`] for `Builder::timer` (which
//! hyper's `header_read_timeout` and keep-alive timers need) and
//! [`ShardnetExecutor`] for builders that spawn tasks (HTTP/2).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use super::executor::{current, spawn_local};
use super::time::{sleep, sleep_until, Sleep};

impl hyper::rt::Sleep for Sleep {}

/// hyper's timer on the current executor's wheel and clock. Its methods
/// are called while hyper's connection is polled, inside a task.
///
/// ```ignore
/// hyper::server::conn::http1::Builder::new()
///     .timer(shardnet::rt::ShardnetTimer)
///     .header_read_timeout(Duration::from_secs(10))
///     .serve_connection(io, service)
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardnetTimer;

impl hyper::rt::Timer for ShardnetTimer {
    /// # Panics
    /// Outside an executor.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(sleep(duration))
    }

    /// # Panics
    /// Outside an executor.
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(sleep_until(deadline))
    }

    /// The executor's clock (the time of its current round), or
    /// `Instant::now()` outside an executor.
    fn now(&self) -> Instant {
        match current() {
            Some(local) => local.instant_of(local.now_ns()),
            None => Instant::now(),
        }
    }

    /// Moves a [`Sleep`] made by this timer in place (no allocation);
    /// replaces any other.
    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Sleep>() {
            Some(ours) => ours.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// hyper's executor: [`spawn_local`] on the current executor, detached.
/// The futures need not be `Send`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShardnetExecutor;

impl<F> hyper::rt::Executor<F> for ShardnetExecutor
where
    F: Future + 'static,
    F::Output: 'static,
{
    /// # Panics
    /// Outside an executor.
    fn execute(&self, future: F) {
        drop(spawn_local(future));
    }
}

#[cfg(test)]
#[path = "hyper_tests.rs"]
mod tests;
