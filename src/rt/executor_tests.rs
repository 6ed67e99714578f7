use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::*;

/// A future pending until its gate opens; it keeps its latest waker.
#[derive(Clone, Default)]
struct Gate(Rc<GateState>);

#[derive(Default)]
struct GateState {
    open: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.0.open.set(true);
        if let Some(waker) = self.0.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn wait(&self) -> GateWait {
        GateWait(self.clone())
    }
}

struct GateWait(Gate);

impl Future for GateWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let state = &(self.0).0;
        if state.open.get() {
            return Poll::Ready(());
        }
        *state.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Polls `future` once with a no-op waker.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn join_handle_gives_the_output() {
    let executor = Executor::new(0);
    let mut handle = executor.spawn(async { 6 * 7 });
    assert!(executor.has_ready());
    assert_eq!(poll_once(&mut handle), Poll::Pending);
    assert_eq!(executor.run(0), 1);
    assert!(handle.is_finished());
    assert_eq!(poll_once(&mut handle), Poll::Ready(Ok(42)));
    assert_eq!(executor.tasks(), 0);
    let stats = executor.stats();
    assert_eq!((stats.spawned, stats.polls, stats.panics), (1, 1, 0));
}

#[test]
fn tasks_spawn_tasks_and_await_them() {
    let executor = Executor::new(0);
    let mut outer = executor.spawn(async {
        let inner = spawn_local(async { current_task() });
        let inner_id = inner.id();
        let seen = inner.await.unwrap();
        (seen == Some(inner_id), current_task())
    });
    let outer_id = outer.id();
    assert_eq!(current_task(), None);
    // Round 1 polls the outer task, which spawns the inner one; round 2 the
    // inner one, which wakes the outer; round 3 the outer again.
    assert_eq!(executor.run(0), 1);
    assert_eq!(executor.run(0), 1);
    assert_eq!(executor.run(0), 1);
    assert_eq!(
        poll_once(&mut outer),
        Poll::Ready(Ok((true, Some(outer_id))))
    );
    assert_eq!(executor.stats().spawned, 2);
}

#[test]
fn only_woken_tasks_are_polled() {
    let executor = Executor::new(0);
    let gates: Vec<Gate> = (0..10_000).map(|_| Gate::default()).collect();
    let done = Rc::new(Cell::new(0));
    for gate in &gates {
        let (wait, done) = (gate.wait(), done.clone());
        drop(executor.spawn(async move {
            wait.await;
            done.set(done.get() + 1);
        }));
    }
    assert_eq!(executor.run(0), 10_000, "each new task runs once");
    assert_eq!(executor.run(1), 0, "then none is woken");
    assert!(!executor.has_ready());
    gates[1234].open();
    assert!(executor.has_ready());
    assert_eq!(executor.run(2), 1);
    assert_eq!(done.get(), 1);
    assert_eq!(executor.tasks(), 9_999);
}

/// The round's work does not grow with idle tasks: with 100 or 100,000
/// idle ones, waking one polls one. (Times are printed with --nocapture,
/// not asserted: the machine may be loaded.)
#[test]
fn idle_tasks_cost_nothing_per_round() {
    const ROUNDS: usize = 100;
    for idle in [100, 100_000] {
        let executor = Executor::new(0);
        let gates: Vec<Gate> = (0..idle + ROUNDS).map(|_| Gate::default()).collect();
        for gate in &gates {
            drop(executor.spawn(gate.wait()));
        }
        executor.run(0);
        let start = std::time::Instant::now();
        for (round, gate) in gates[idle..].iter().enumerate() {
            gate.open();
            assert_eq!(executor.run(round as u64), 1, "with {idle} idle tasks");
        }
        let woken_round = start.elapsed() / ROUNDS as u32;
        let start = std::time::Instant::now();
        for round in 0..ROUNDS {
            assert_eq!(executor.run((ROUNDS + round) as u64), 0);
        }
        let empty_round = start.elapsed() / ROUNDS as u32;
        println!(
            "{idle} idle tasks: a round with one woken task {woken_round:?}, an empty round {empty_round:?}"
        );
        assert_eq!(executor.tasks(), idle);
        assert_eq!(executor.stats().polls, (idle + 2 * ROUNDS) as u64);
    }
}

#[test]
fn a_task_that_wakes_itself_runs_once_per_round() {
    let executor = Executor::new(0);
    let polls = Rc::new(Cell::new(0));
    let counted = polls.clone();
    drop(executor.spawn(async move {
        loop {
            counted.set(counted.get() + 1);
            yield_now().await;
        }
    }));
    let gate = Gate::default();
    let mut other = executor.spawn(gate.wait());
    for round in 1..=5 {
        assert_eq!(executor.run(0), if round == 1 { 2 } else { 1 });
        assert_eq!(polls.get(), round);
    }
    gate.open();
    assert_eq!(executor.run(0), 2, "the woken task shares the round");
    assert_eq!(poll_once(&mut other), Poll::Ready(Ok(())));
}

#[test]
fn abort_cancels_and_dropping_detaches() {
    let executor = Executor::new(0);
    let gate = Gate::default();
    let dropped = Rc::new(Cell::new(false));
    struct SetOnDrop(Rc<Cell<bool>>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let (wait, guard) = (gate.wait(), SetOnDrop(dropped.clone()));
    let mut aborted = executor.spawn(async move {
        let _guard = guard;
        wait.await;
    });
    let finished = Rc::new(Cell::new(false));
    let (wait, flag) = (gate.wait(), finished.clone());
    let detached = executor.spawn(async move {
        wait.await;
        flag.set(true);
    });
    executor.run(0);
    assert_eq!(executor.tasks(), 2);
    aborted.abort();
    assert!(aborted.is_finished());
    executor.run(0);
    assert!(dropped.get(), "the aborted task's future is dropped");
    assert_eq!(executor.tasks(), 1);
    assert_eq!(
        poll_once(&mut aborted),
        Poll::Ready(Err(JoinError::Cancelled))
    );

    drop(detached);
    gate.open();
    executor.run(0);
    assert!(finished.get(), "a detached task runs to the end");
    assert_eq!(executor.tasks(), 0);

    // Aborting a finished task keeps its output.
    let mut done = executor.spawn(async { 7 });
    executor.run(0);
    done.abort();
    assert_eq!(poll_once(&mut done), Poll::Ready(Ok(7)));
}

#[test]
fn a_panicking_task_is_isolated() {
    let executor = Executor::new(0);
    let gate = Gate::default();
    let survivor_done = Rc::new(Cell::new(false));
    let (wait, flag) = (gate.wait(), survivor_done.clone());
    let mut survivor = executor.spawn(async move {
        wait.await;
        flag.set(true);
        "ok"
    });
    let mut bad = executor.spawn(async {
        yield_now().await;
        panic!("handler bug {}", 17);
    });
    let bad_id = bad.id();
    assert_eq!(executor.run(0), 2);
    assert_eq!(executor.run(0), 1, "the panicking poll returns normally");
    assert_eq!(executor.stats().panics, 1);
    assert_eq!(executor.tasks(), 1);
    assert_eq!(
        poll_once(&mut bad),
        Poll::Ready(Err(JoinError::Panicked("handler bug 17".into())))
    );
    assert_eq!(executor.take_panicked(), [bad_id]);
    assert!(executor.take_panicked().is_empty());
    gate.open();
    assert_eq!(executor.run(0), 1);
    assert!(survivor_done.get());
    assert_eq!(poll_once(&mut survivor), Poll::Ready(Ok("ok")));
}

#[test]
fn on_panic_hears_each_panicked_task() {
    let executor = Executor::new(0);
    let early = executor.spawn(async { panic!("before the callback") });
    executor.run(0);
    let heard = Rc::new(RefCell::new(Vec::new()));
    let sink = heard.clone();
    executor.on_panic(Box::new(move |id| sink.borrow_mut().push(id)));
    assert_eq!(*heard.borrow(), [early.id()], "pending ids are delivered");
    let late = executor.spawn(async {
        let payload: Box<dyn std::any::Any + Send> = Box::new(5_u8);
        std::panic::resume_unwind(payload)
    });
    let late_id = late.id();
    drop(late);
    executor.run(0);
    assert_eq!(*heard.borrow(), [early.id(), late_id]);
    assert!(executor.take_panicked().is_empty());
    assert_eq!(executor.stats().panics, 2);
}

#[test]
fn a_wake_from_another_thread_runs_the_task_here() {
    let executor = Executor::new(0);
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let flag = Arc::new(AtomicBool::new(false));
    let (task_slot, task_flag) = (slot.clone(), flag.clone());
    let mut handle = executor.spawn(std::future::poll_fn(move |cx| {
        if task_flag.load(Ordering::SeqCst) {
            Poll::Ready(std::thread::current().id())
        } else {
            *task_slot.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }));
    assert_eq!(executor.run(0), 1);
    assert!(!executor.has_ready());
    let waker = slot.lock().unwrap().take().unwrap();
    std::thread::spawn(move || {
        flag.store(true, Ordering::SeqCst);
        waker.wake();
    })
    .join()
    .unwrap();
    assert!(executor.has_ready());
    assert_eq!(executor.run(0), 1);
    assert_eq!(
        poll_once(&mut handle),
        Poll::Ready(Ok(std::thread::current().id()))
    );
}

#[test]
fn dropping_the_executor_cancels_its_tasks() {
    struct SetOnDrop(Rc<Cell<bool>>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let executor = Executor::new(0);
    let gate = Gate::default();
    let dropped = Rc::new(Cell::new(false));
    let (wait, guard) = (gate.wait(), SetOnDrop(dropped.clone()));
    drop(executor.spawn(async move {
        let _guard = guard;
        wait.await;
    }));
    executor.run(0);
    let mut queued = executor.spawn(async { 1 });
    drop(executor);
    assert_eq!(
        poll_once(&mut queued),
        Poll::Ready(Err(JoinError::Cancelled))
    );
    // An idle detached task's future goes with the last waker for it (here,
    // on this thread).
    assert!(!dropped.get());
    gate.0.waker.borrow_mut().take();
    assert!(dropped.get());
}

#[test]
fn enter_nests_and_restores() {
    let a = Executor::new(0);
    let b = Executor::new(0);
    a.enter(|| {
        drop(spawn_local(async {}));
        b.enter(|| drop(spawn_local(async {})));
        a.enter(|| drop(spawn_local(async {})));
        drop(spawn_local(async {}));
    });
    assert_eq!((a.tasks(), b.tasks()), (3, 1));
}

#[test]
#[should_panic(expected = "spawn_local called outside a shardnet executor")]
fn spawn_local_outside_an_executor_panics() {
    drop(spawn_local(async {}));
}

#[test]
fn a_foreign_wake_after_the_executor_is_gone_is_harmless() {
    let executor = Executor::new(0);
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let task_slot = slot.clone();
    drop(executor.spawn(std::future::poll_fn(move |cx| {
        *task_slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::<()>::Pending
    })));
    executor.run(0);
    drop(executor);
    let waker = slot.lock().unwrap().take().unwrap();
    // The task can be neither run nor dropped there: it is leaked.
    let woken = std::thread::spawn(move || waker.wake()).join();
    assert!(woken.is_ok(), "a late foreign wake panicked");
}
