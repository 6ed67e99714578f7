//! The memory of a minimal task on the `rt` executor, measured with a
//! counting allocator (its own test binary, so no other test pays for it):
//! `cargo test --test rt_task_memory -- --nocapture` prints it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use shardnet::rt::Executor;

/// The system allocator, counting the bytes requested and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the same arguments; the
// counter is only arithmetic on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System::dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A oneshot-like receiver: pending until a waker wakes it, holding the
/// waker as a oneshot channel's receiver would.
struct Receiver {
    waker: Option<Waker>,
}

impl Future for Receiver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn a_minimal_task_costs_one_small_allocation() {
    const TASKS: usize = 10_000;
    let executor = Executor::new(0);
    // Warm up: the run queue grows to its peak once.
    for _ in 0..TASKS {
        drop(executor.spawn(async {
            Receiver { waker: None }.await;
        }));
    }
    executor.run(0);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for _ in 0..TASKS {
        drop(executor.spawn(async {
            Receiver { waker: None }.await;
        }));
    }
    executor.run(0);
    let per_task = (LIVE_BYTES.load(Ordering::Relaxed) - before) / TASKS;
    let future = std::mem::size_of_val(&async {
        Receiver { waker: None }.await;
    });
    println!(
        "a task awaiting a oneshot-like future: {per_task} bytes allocated \
         ({future} of them the async block's state), idle and detached"
    );
    assert_eq!(executor.tasks(), 2 * TASKS);
    assert!(per_task >= future, "{per_task} < {future}");
    assert!(per_task <= 256, "a minimal task takes {per_task} bytes");
}
