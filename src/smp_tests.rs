use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::counters::WorkerCounters;
use crate::rt::Executor;

/// A worker's state in these tests: how many requests ran on it.
#[derive(Default)]
struct Tally {
    ran: u64,
}

/// `n` workers' counters and a handle on `Tally` state over a mesh of
/// `ring` slots per ring.
fn mesh(n: usize, ring: usize) -> (Vec<Arc<WorkerCounters>>, Sharded<Tally>, Mesh) {
    let counters: Vec<_> = (0..n)
        .map(|_| Arc::new(WorkerCounters::default()))
        .collect();
    let mut shards = Shards::new();
    let tally = shards.add(|_: &WorkerInfo<'_>| Tally::default());
    let mesh = shards.start(counters.clone(), ring);
    (counters, tally, mesh)
}

/// Worker `id` on its own thread, draining until `stop` is set.
fn drain_thread(mesh: &Mesh, id: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let mut endpoint = mesh.endpoint(id);
    std::thread::spawn(move || {
        endpoint.attach(vec![Box::new(Tally::default())]);
        while !stop.load(Ordering::Relaxed) {
            if endpoint.drain(DRAIN_BUDGET) == 0 {
                std::thread::yield_now();
            }
        }
    })
}

#[test]
fn handles_are_send_and_sync_whatever_the_state() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn sendable<T: Send>() {}
    // A state that is not Send (it never leaves its worker).
    shareable::<Sharded<Rc<Cell<u64>>>>();
    sendable::<Reply<u64>>();
    sendable::<Endpoint>();
}

#[test]
fn before_the_runtime_starts_requests_fail_with_not_started() {
    let mut shards = Shards::new();
    let tally: Sharded<Tally> = shards.add(|_: &WorkerInfo<'_>| Tally::default());
    assert_eq!(tally.workers(), 0);
    assert_eq!(
        tally.invoke_on(0, |t| t.ran).wait(),
        Err(SmpError::NotStarted)
    );
    assert_eq!(tally.with_local(|t| t.ran), Err(SmpError::NotStarted));
}

#[test]
fn a_plain_thread_waits_for_a_reply_from_a_worker_thread() {
    let (counters, tally, mesh) = mesh(2, 8);
    assert_eq!(tally.workers(), 2);
    let stop = Arc::new(AtomicBool::new(false));
    let worker = drain_thread(&mesh, 1, stop.clone());
    for i in 1..=100u64 {
        let reply = tally.invoke_on(1, move |t| {
            t.ran += 1;
            (t.ran, std::thread::current().id())
        });
        let (ran, thread) = reply.wait().expect("worker 1 answers");
        assert_eq!(ran, i);
        assert_eq!(thread, worker.thread().id(), "ran on the worker's thread");
    }
    // Off a worker thread, there is no local instance.
    assert_eq!(tally.with_local(|t| t.ran), Err(SmpError::NotOnWorker));
    assert_eq!(tally.local_worker(), None);
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("worker thread");
    // From a plain thread: through worker 1's inbox, counted at worker 1.
    assert_eq!(counters[1].smp_sent.get(), 100);
    assert_eq!(counters[1].smp_received.get(), 100);
    assert_eq!(counters[0].smp_sent.get(), 0);
}

#[test]
fn a_full_ring_fails_at_once_and_is_counted() {
    let (counters, tally, mesh) = mesh(2, 2);
    // Nothing drains worker 1: its inbox takes two requests, not three.
    let first = tally.invoke_on(1, |t| t.ran);
    let second = tally.invoke_on(1, |t| t.ran);
    let third = tally.invoke_on(1, |t| t.ran);
    assert!(!first.is_ready() && !second.is_ready());
    assert!(third.is_ready());
    assert_eq!(third.wait(), Err(SmpError::Full));
    assert_eq!(counters[1].smp_queue_full.get(), 1);
    // From worker 0's thread: its own ring towards 1, counted at 0.
    let mut endpoint = mesh.endpoint(0);
    let tally0 = tally.clone();
    std::thread::spawn(move || {
        endpoint.attach(vec![Box::new(Tally::default())]);
        assert_eq!(tally0.local_worker(), Some(0));
        let replies: Vec<_> = (0..3).map(|_| tally0.invoke_on(1, |t| t.ran)).collect();
        assert!(!replies[0].is_ready() && !replies[1].is_ready());
        let mut full = replies.into_iter().nth(2).expect("three");
        assert_eq!(full.try_take(), Some(Err(SmpError::Full)));
        let full = tally0.invoke_on_then(1, |t| t.ran, |_| panic!("never called"));
        assert_eq!(full, Err(SmpError::Full));
        assert_eq!(
            tally0.invoke_on(7, |t| t.ran).wait(),
            Err(SmpError::WouldBlockWorker)
        );
    })
    .join()
    .expect("worker 0's thread");
    assert_eq!(counters[0].smp_queue_full.get(), 2);
    assert_eq!(counters[0].smp_sent.get(), 2);
    assert_eq!(
        tally.invoke_on(7, |t| t.ran).wait(),
        Err(SmpError::NoSuchWorker)
    );
}

#[test]
fn a_blocking_wait_on_a_worker_thread_is_refused() {
    let (_counters, tally, mesh) = mesh(2, 8);
    let stop = Arc::new(AtomicBool::new(false));
    let worker1 = drain_thread(&mesh, 1, stop.clone());
    let mut endpoint = mesh.endpoint(0);
    let tally0 = tally.clone();
    std::thread::spawn(move || {
        endpoint.attach(vec![Box::new(Tally::default())]);
        let reply = tally0.invoke_on(1, |t| t.ran);
        assert_eq!(reply.wait(), Err(SmpError::WouldBlockWorker));
    })
    .join()
    .expect("worker 0's thread");
    stop.store(true, Ordering::Relaxed);
    worker1.join().expect("worker 1");
}

#[test]
fn a_stopping_worker_resolves_what_waits_for_it_as_stopped() {
    let (_counters, tally, mesh) = mesh(2, 8);
    let endpoint = mesh.endpoint(1);
    let pending: Vec<_> = (0..3).map(|_| tally.invoke_on(1, |t| t.ran)).collect();
    // A plain thread blocked on one of them is woken too.
    let mut pending = pending.into_iter();
    let blocked = pending.next().expect("three");
    let waiter = std::thread::spawn(move || blocked.wait());
    std::thread::sleep(Duration::from_millis(20));
    drop(endpoint);
    assert_eq!(waiter.join().expect("waiter"), Err(SmpError::Stopped));
    for reply in pending {
        assert_eq!(reply.wait(), Err(SmpError::Stopped));
    }
    // Later requests fail at once.
    let late = tally.invoke_on(1, |t| t.ran);
    assert!(late.is_ready());
    assert_eq!(late.wait(), Err(SmpError::Stopped));
}

#[test]
fn a_task_awaits_a_reply_and_a_callback_gets_its_result_on_the_origin() {
    let (counters, tally, mesh) = mesh(2, 8);
    let stop = Arc::new(AtomicBool::new(false));
    let worker1 = drain_thread(&mesh, 1, stop.clone());
    let mut endpoint = mesh.endpoint(0);
    let tally0 = tally.clone();
    std::thread::spawn(move || {
        endpoint.attach(vec![Box::new(Tally::default())]);
        let executor = Executor::new(0);
        let k = tally0.clone();
        let task = executor.spawn(async move {
            let mut sum = 0;
            for _ in 0..10 {
                sum += k
                    .invoke_on(1, |t| {
                        t.ran += 1;
                        t.ran
                    })
                    .await
                    .expect("worker 1 answers");
            }
            sum
        });
        // `then` holds an Rc: it never leaves this thread.
        let got = Rc::new(Cell::new(None));
        let seen = got.clone();
        let origin = std::thread::current().id();
        tally0
            .invoke_on_then(
                1,
                |t| t.ran,
                move |r: Result<u64, SmpError>| {
                    assert_eq!(std::thread::current().id(), origin);
                    seen.set(Some(r));
                },
            )
            .expect("sent");
        // To itself too: `then` runs at a later drain, not inside the call.
        let mine = Rc::new(Cell::new(0));
        let m = mine.clone();
        tally0
            .invoke_on_then(
                0,
                |t| {
                    t.ran += 5;
                    t.ran
                },
                move |r| m.set(r.expect("ran here")),
            )
            .expect("sent");
        assert_eq!(mine.get(), 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !task.is_finished() || got.get().is_none() || mine.get() == 0 {
            assert!(Instant::now() < deadline, "replies did not come");
            endpoint.drain(DRAIN_BUDGET);
            executor.run(0);
            std::thread::yield_now();
        }
        assert!(got.get().expect("then ran").is_ok());
        assert_eq!(mine.get(), 5);
        assert_eq!(tally0.with_local(|t| t.ran), Ok(5));
        let mut task = std::pin::pin!(task);
        let waker = std::task::Waker::noop();
        match task.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(Ok(sum)) => assert_eq!(sum, (1..=10).sum::<u64>()),
            other => panic!("task: {other:?}"),
        }
    })
    .join()
    .expect("worker 0's thread");
    stop.store(true, Ordering::Relaxed);
    worker1.join().expect("worker 1");
    // 10 awaited + 1 then towards 1; 1 to itself and its result to
    // itself; 1 result back from 1.
    assert_eq!(counters[0].smp_sent.get(), 13);
    assert_eq!(counters[1].smp_sent.get(), 1);
}

#[test]
fn a_then_whose_target_stops_gets_stopped() {
    let (_counters, tally, mesh) = mesh(2, 8);
    let endpoint1 = mesh.endpoint(1);
    let mut endpoint0 = mesh.endpoint(0);
    let tally0 = tally.clone();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    let origin = std::thread::spawn(move || {
        endpoint0.attach(vec![Box::new(Tally::default())]);
        let got = Rc::new(Cell::new(None));
        let seen = got.clone();
        tally0
            .invoke_on_then(1, |t| t.ran, move |r| seen.set(Some(r)))
            .expect("sent");
        sent_tx.send(()).expect("test waits");
        stopped_rx.recv().expect("worker 1 stopped");
        endpoint0.drain(DRAIN_BUDGET);
        got.get()
    });
    sent_rx.recv().expect("sent");
    drop(endpoint1);
    stopped_tx.send(()).expect("origin waits");
    assert_eq!(origin.join().expect("origin"), Some(Err(SmpError::Stopped)));
}

#[test]
fn a_flood_from_one_worker_does_not_starve_the_others() {
    let (counters, tally, mesh) = mesh(3, 8);
    // Workers 0 and 1 each fill their ring towards worker 2, tagging the
    // requests with their number.
    let mut replies = Vec::new();
    for from in 0..2usize {
        let mut endpoint = mesh.endpoint(from);
        let tally = tally.clone();
        let (sent, kept) = std::thread::spawn(move || {
            endpoint.attach(vec![Box::new(Tally::default())]);
            let replies: Vec<_> = (0..9).map(|_| tally.invoke_on(2, move |_| from)).collect();
            (
                replies.iter().filter(|r| !r.is_ready()).count(),
                (replies, endpoint),
            )
        })
        .join()
        .expect("sender");
        assert_eq!(sent, 8, "the ring holds 8");
        replies.push(kept);
    }
    assert_eq!(counters[0].smp_queue_full.get(), 1);
    let mut endpoint = mesh.endpoint(2);
    let order = std::thread::spawn(move || {
        endpoint.attach(vec![Box::new(Tally::default())]);
        // Two small rounds: each ring gets a turn.
        let first = endpoint.drain(4);
        let second = endpoint.drain(4);
        (first, second, endpoint)
    })
    .join()
    .expect("worker 2");
    assert_eq!((order.0, order.1), (4, 4));
    let ran_from = |from: usize| replies[from].0.iter().filter(|r| r.is_ready()).count();
    assert_eq!(
        (ran_from(0), ran_from(1)),
        (4 + 1, 4 + 1),
        "4 ran from each ring (plus the one refused as full)"
    );
}

/// Two workers, each sending thousands of requests to the other and to
/// itself while draining its own: every request is answered (its `then`
/// runs on the origin) or refused as full and counted; nothing is lost.
#[test]
fn two_workers_pump_thousands_of_messages() {
    const PER_WORKER: u64 = 20_000;
    let (counters, tally, mesh) = mesh(2, 64);
    let done = Arc::new(AtomicU64::new(0));
    // Requests sent and not yet answered, over both workers.
    let outstanding = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|id| {
            let mut endpoint = mesh.endpoint(id);
            let tally = tally.clone();
            let done = done.clone();
            let outstanding = outstanding.clone();
            std::thread::spawn(move || {
                endpoint.attach(vec![Box::new(Tally::default())]);
                let answered = Rc::new(Cell::new(0u64));
                let (mut sent, mut full) = (0u64, 0u64);
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut i = 0u64;
                while i < PER_WORKER {
                    // Mostly to the other worker, every fourth to itself.
                    let to = if i % 4 == 3 { id } else { 1 - id };
                    let a = answered.clone();
                    let o = outstanding.clone();
                    // Counted before the send: its answer may come first.
                    outstanding.fetch_add(1, Ordering::SeqCst);
                    match tally.invoke_on_then(
                        to,
                        move |t| {
                            t.ran += 1;
                            i
                        },
                        move |r| {
                            assert_eq!(r, Ok(i));
                            a.set(a.get() + 1);
                            o.fetch_sub(1, Ordering::SeqCst);
                        },
                    ) {
                        Ok(()) => sent += 1,
                        Err(SmpError::Full) => {
                            outstanding.fetch_sub(1, Ordering::SeqCst);
                            full += 1;
                        }
                        Err(e) => panic!("{e}"),
                    }
                    i += 1;
                    if i % 32 == 0 {
                        endpoint.drain(DRAIN_BUDGET);
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
                // Keep answering the other worker until both are done and
                // every request of both has been answered.
                while done.load(Ordering::SeqCst) < 2 || outstanding.load(Ordering::SeqCst) > 0 {
                    assert!(Instant::now() < deadline, "worker {id} stuck");
                    if endpoint.drain(DRAIN_BUDGET) == 0 {
                        std::thread::yield_now();
                    }
                }
                let ran = tally.with_local(|t| t.ran).expect("on a worker");
                (sent, full, answered.get(), ran, endpoint)
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("worker thread"))
        .collect();
    let elapsed = started.elapsed();
    let mut total_sent = 0;
    let mut total_ran = 0;
    for (id, (sent, full, answered, ran, _endpoint)) in results.iter().enumerate() {
        assert_eq!(
            sent + full,
            PER_WORKER,
            "worker {id}: every attempt counted"
        );
        assert_eq!(*answered, *sent, "worker {id}: every sent request answered");
        assert_eq!(counters[id].smp_queue_full.get(), *full);
        assert!(*sent > 0);
        total_sent += sent;
        total_ran += ran;
    }
    assert_eq!(total_ran, total_sent, "every request ran exactly once");
    // Requests plus the results that came back.
    let sent_counted: u64 = counters.iter().map(|c| c.smp_sent.get()).sum();
    let received: u64 = counters.iter().map(|c| c.smp_received.get()).sum();
    assert_eq!(sent_counted, 2 * total_sent);
    assert_eq!(received, 2 * total_sent);
    // Not a benchmark: an order of magnitude on whatever ran the test.
    println!(
        "smp: {total_sent} round trips ({} refused as full) in {elapsed:?}: {:?} per round trip \
         (two messages, both workers on their own threads; not a benchmark)",
        2 * PER_WORKER - total_sent,
        elapsed / total_sent.max(1) as u32,
    );
}
