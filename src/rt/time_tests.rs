use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::*;
use crate::rt::Executor;

const MS: u64 = 1_000_000;

fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn sleep_wakes_at_its_deadline_on_the_fake_clock() {
    let executor = Executor::new(5 * MS);
    let woke_at = Rc::new(Cell::new(None));
    let seen = woke_at.clone();
    let mut handle = executor.spawn(async move {
        sleep(Duration::from_millis(10)).await;
        seen.set(Some(now_ns()));
    });
    assert_eq!(executor.run(5 * MS), 1);
    assert_eq!(executor.stats().timers, 1);
    let next = executor.next_deadline().unwrap();
    assert!(next <= 15 * MS, "next deadline {next}");
    assert_eq!(executor.run(15 * MS - 1), 0, "not early");
    assert_eq!(woke_at.get(), None);
    assert_eq!(executor.run(15 * MS), 1);
    assert_eq!(woke_at.get(), Some(15 * MS));
    assert_eq!(poll_once(&mut handle), Poll::Ready(Ok(())));
    assert_eq!(executor.stats().timers, 0, "a fired sleep frees its entry");
    assert_eq!(executor.next_deadline(), None);
}

#[test]
fn a_late_round_fires_every_timer_due() {
    let executor = Executor::new(0);
    let fired = Rc::new(Cell::new(0));
    for ms in [1, 2, 3, 500, 70_000] {
        let fired = fired.clone();
        drop(executor.spawn(async move {
            sleep(Duration::from_millis(ms)).await;
            fired.set(fired.get() + 1);
        }));
    }
    executor.run(0);
    assert_eq!(executor.run(600 * MS), 4);
    assert_eq!(fired.get(), 4);
    assert_eq!(executor.run(70_000 * MS), 1);
    assert_eq!(executor.tasks(), 0);
}

#[test]
fn a_past_deadline_is_ready_at_once() {
    let executor = Executor::new(10 * MS);
    let mut handle = executor.spawn(async {
        sleep(Duration::ZERO).await;
        sleep_until(now() - Duration::from_millis(3)).await;
    });
    assert_eq!(executor.run(10 * MS), 1);
    assert_eq!(poll_once(&mut handle), Poll::Ready(Ok(())));
    assert_eq!(executor.stats().timers, 0, "never registered");
}

#[test]
fn timeout_gives_output_or_elapsed() {
    let executor = Executor::new(0);
    let mut fast = executor
        .spawn(async { timeout(Duration::from_millis(5), sleep(Duration::from_millis(1))).await });
    let mut slow = executor
        .spawn(async { timeout(Duration::from_millis(5), std::future::pending::<()>()).await });
    executor.run(0);
    assert_eq!(executor.stats().timers, 3);
    executor.run(MS);
    assert_eq!(poll_once(&mut fast), Poll::Ready(Ok(Ok(()))));
    assert_eq!(
        executor.stats().timers,
        1,
        "the finished timeout's sleep left the wheel"
    );
    executor.run(4 * MS);
    assert_eq!(poll_once(&mut slow), Poll::Pending);
    executor.run(5 * MS);
    assert_eq!(poll_once(&mut slow), Poll::Ready(Ok(Err(Elapsed(())))));
    assert_eq!(executor.stats().timers, 0);
}

#[test]
fn a_dropped_sleep_cancels_its_timer() {
    let executor = Executor::new(0);
    let handle = executor.spawn(async { sleep(Duration::from_secs(60)).await });
    executor.run(0);
    assert_eq!(executor.stats().timers, 1);
    handle.abort();
    executor.run(0);
    assert_eq!(executor.stats().timers, 0);
    assert_eq!(executor.next_deadline(), None);
}

#[test]
fn reset_moves_a_registered_sleep_without_a_poll() {
    let executor = Executor::new(0);
    let mut sleep = executor.enter(|| sleep(Duration::from_millis(50)));
    let mut handle = executor.spawn(std::future::poll_fn({
        let polls = Rc::new(Cell::new(0));
        move |cx| {
            polls.set(polls.get() + 1);
            if polls.get() == 1 {
                assert_eq!(Pin::new(&mut sleep).poll(cx), Poll::Pending);
                sleep.reset_ns(2 * MS);
                Poll::Pending
            } else {
                Pin::new(&mut sleep).poll(cx).map(|()| now_ns())
            }
        }
    }));
    executor.run(0);
    assert_eq!(executor.run(MS), 0);
    assert_eq!(executor.run(2 * MS), 1, "woken at the new deadline");
    assert_eq!(poll_once(&mut handle), Poll::Ready(Ok(2 * MS)));
}

#[test]
fn instants_map_to_the_executor_clock() {
    let executor = Executor::new(1_000 * MS);
    executor.enter(|| {
        let start = now();
        assert_eq!(now_ns(), 1_000 * MS);
        assert_eq!(
            sleep_until(start + Duration::from_millis(7)).deadline_ns(),
            1_007 * MS
        );
        assert_eq!(sleep(Duration::from_millis(7)).deadline_ns(), 1_007 * MS);
    });
    executor.run(1_250 * MS);
    let later = executor.enter(now);
    let earlier = executor.enter(|| sleep_until(later - Duration::from_millis(250)).deadline_ns());
    assert_eq!(earlier, 1_000 * MS);
}

#[test]
#[should_panic(expected = "sleep called outside a shardnet executor")]
fn sleep_outside_an_executor_panics() {
    drop(sleep(Duration::from_secs(1)));
}

#[test]
fn a_sleep_reset_after_firing_wakes_again() {
    let executor = Executor::new(0);
    let mut sleep = executor.enter(|| sleep(Duration::from_millis(1)));
    let polls = Rc::new(Cell::new(0));
    let counted = polls.clone();
    let mut handle = executor.spawn(std::future::poll_fn(move |cx| {
        counted.set(counted.get() + 1);
        match counted.get() {
            1 => {
                assert_eq!(Pin::new(&mut sleep).poll(cx), Poll::Pending);
                Poll::Pending
            }
            // Woken by the timer; re-armed without polling the sleep.
            2 => {
                sleep.reset_ns(3 * MS);
                Poll::Pending
            }
            _ => Pin::new(&mut sleep).poll(cx).map(|()| now_ns()),
        }
    }));
    executor.run(0);
    assert_eq!(executor.run(MS), 1);
    assert_eq!(executor.run(2 * MS), 0);
    assert_eq!(executor.run(3 * MS), 1);
    assert_eq!(polls.get(), 3);
    assert_eq!(poll_once(&mut handle), Poll::Ready(Ok(3 * MS)));
}
