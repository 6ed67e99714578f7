use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::rt::Timer;

use super::*;
use crate::rt::{now, Executor};

const MS: u64 = 1_000_000;

fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn timer_sleep_completes_at_the_deadline() {
    let executor = Executor::new(0);
    let mut handle = executor.spawn(async {
        ShardnetTimer.sleep(Duration::from_millis(5)).await;
        let mut again = ShardnetTimer.sleep_until(now() + Duration::from_millis(100));
        // Moved in place to 3 ms from now.
        ShardnetTimer.reset(&mut again, ShardnetTimer.now() + Duration::from_millis(3));
        again.await;
        crate::rt::now_ns()
    });
    executor.run(0);
    assert_eq!(executor.run(4 * MS), 0);
    assert_eq!(executor.run(5 * MS), 1);
    assert_eq!(executor.run(7 * MS), 0);
    assert_eq!(executor.run(8 * MS), 1);
    assert_eq!(poll_once(&mut handle), Poll::Ready(Ok(8 * MS)));
}

#[test]
fn executor_spawns_on_the_current_executor() {
    let executor = Executor::new(0);
    let ran = Rc::new(Cell::new(false));
    let flag = ran.clone();
    executor
        .enter(|| hyper::rt::Executor::execute(&ShardnetExecutor, async move { flag.set(true) }));
    executor.run(0);
    assert!(ran.get());
}

/// A connection whose peer never sends anything.
struct Silent;

impl hyper::rt::Read for Silent {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl hyper::rt::Write for Silent {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn header_read_timeout_fires_on_the_executor_clock() {
    let executor = Executor::new(0);
    let mut connection = executor.spawn(async {
        let service = hyper::service::service_fn(|_request| async {
            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
        });
        hyper::server::conn::http1::Builder::new()
            .timer(ShardnetTimer)
            .header_read_timeout(Duration::from_secs(2))
            .serve_connection(Silent, service)
            .await
    });
    executor.run(0);
    assert_eq!(executor.stats().timers, 1);
    assert_eq!(executor.run(1_999 * MS), 0);
    assert_eq!(executor.run(2_000 * MS), 1);
    match poll_once(&mut connection) {
        Poll::Ready(Ok(Err(error))) => assert!(error.is_timeout(), "{error}"),
        other => panic!("connection not timed out: {other:?}"),
    }
}
