//! A Redis-protocol key-value server on shardnet's async layer: every worker
//! serves RESP2 on the ports the rules give the async TCP service `"kv"`.
//!
//! ```text
//! cargo run --release --example kv -- --config FILE
//! ```
//!
//! with a rule such as
//!
//! ```toml
//! [[rule]]
//! name = "kv"
//! protocol = "tcp"
//! ports = [6379]
//! service = "kv"
//! ```
//!
//! Commands: PING, ECHO, GET, SET (EX, PX, NX, XX, KEEPTTL, GET), DEL,
//! EXISTS, INCR, MGET, MSET, EXPIRE, TTL, DBSIZE, FLUSHALL, QUIT, with
//! redis-server 7's errors; anything else is `-ERR unknown command`.
//! Requests are pipelined: every complete request in the read buffer runs
//! in order, and their replies leave in one write (or every 256 KiB).
//! Keys and values are byte strings. A malformed request is
//! answered `-ERR Protocol error: ...` and the connection closes (limits:
//! [`resp::Limits`]: 1 MiB per key or value, 64 Ki arguments, 64 KiB inline
//! lines, 8 MiB per request).
//!
//! Layers: `kv/resp.rs` (the protocol), `kv/store.rs` (one shard's keys,
//! sans-IO, the clock passed in), `kv/command.rs` (checking a request and
//! splitting it into per-shard parts, merging their answers). The keyspace
//! is placed on shards by Redis Cluster's hash slot ([`store::shard_of`]).
//!
//! **Sharding**: every keyed operation goes through
//! [`Shards::run`]`(shard, op)`, and [`WorkerShards`] places shard `k` on
//! worker `k` (a [`Store`] per worker, declared with
//! [`shardnet::Runtime::sharded`]). A key's commands run on the worker that
//! owns it, whichever worker the client's connection landed on: the calling
//! worker's own keys in place (`with_local`, no message), another worker's
//! through `shardnet::smp` (`invoke_on`: the op travels to its owner, runs
//! there between two of its poll rounds, and the answer wakes the
//! connection's task). A multi-key command (MGET, MSET, DEL, EXISTS, and
//! DBSIZE and FLUSHALL over every shard) sends its per-shard parts at once
//! and merges their answers in key order.
//!
//! **Busy owners**: the ring towards a worker is bounded (1024 requests). A
//! part that finds it full is not sent (`shardnet_smp_queue_full_total`
//! counts it) and the command is answered `-ERR busy (the owning worker's
//! queue is full), try again` at once, never dropped or queued without bound.
//! Retrying is safe: a single-key command that got the error did not run;
//! a multi-key one may have run on its other shards (MSET set those keys,
//! DEL removed them), and running it again gives the same keyspace.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use futures_util::future::{join_all, Either};
use futures_util::FutureExt;
use shardnet::config::Protocol;
use shardnet::rt::{self, spawn_local, TcpListener, TcpStream};
use shardnet::service::WorkerInfo;
use shardnet::smp::{Sharded, SmpError};
use shardnet::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "kv/command.rs"]
mod command;
#[path = "kv/resp.rs"]
mod resp;
#[path = "kv/store.rs"]
mod store;

use command::{Command, Plan};
use resp::{Limits, Reply};
use store::{ShardOp, ShardReply, Store};

/// The service's name in the rules.
const SERVICE: &str = "kv";

/// How often the expiry sweep runs, and how many keys it may remove each
/// time (more wait for the next sweep, or go when touched).
const SWEEP_EVERY: Duration = Duration::from_millis(100);
const SWEEP_BUDGET: usize = 1000;

/// Bytes read per call.
const READ_CHUNK: usize = 16 << 10;

/// Replies are written once the batch's requests have run, or earlier once
/// this many bytes wait (so that small requests for large values cannot
/// pile up unbounded replies).
const WRITE_AT: usize = 256 << 10;

#[derive(Parser)]
struct Cli {
    /// The shardnet configuration file.
    #[arg(long)]
    config: PathBuf,
}

/// The seam between the commands and where the keys live: run one shard's
/// part of a command on the shard that owns it and await its answer.
trait Shards {
    /// How many shards the keyspace is split over.
    fn count(&self) -> usize;
    /// Runs `op` on `shard` (below [`Shards::count`]).
    fn run(&self, shard: usize, op: ShardOp) -> impl Future<Output = ShardReply>;
}

/// This worker's clock in milliseconds (the executor's round time).
fn now_ms() -> i64 {
    i64::try_from(rt::now_ns() / 1_000_000).unwrap_or(i64::MAX)
}

/// The keyspace over the workers: shard `k` is worker `k`'s [`Store`].
#[derive(Clone)]
struct WorkerShards {
    stores: Sharded<Store>,
    /// The calling worker's number (its own shard).
    local: usize,
    /// How many workers (shards).
    count: usize,
}

impl Shards for WorkerShards {
    fn count(&self) -> usize {
        self.count
    }

    fn run(&self, shard: usize, op: ShardOp) -> impl Future<Output = ShardReply> {
        // The calling worker's clock travels with the op: a message runs
        // between poll rounds, outside the owner's executor. Workers share
        // one monotonic clock, so the readings agree to within a round.
        let now = now_ms();
        if shard == self.local {
            let answer = self.stores.with_local(|store| store.apply(op, now));
            Either::Left(std::future::ready(shard_answer(answer)))
        } else {
            let reply = self
                .stores
                .invoke_on(shard, move |store: &mut Store| store.apply(op, now));
            Either::Right(reply.map(shard_answer))
        }
    }
}

/// The error reply's text for a part that found its owner's queue full.
const BUSY: &str = "busy (the owning worker's queue is full), try again";

/// A shard's answer, or the error reply for a part that could not run
/// there (see "Busy owners" in the module docs).
fn shard_answer(answer: Result<ShardReply, SmpError>) -> ShardReply {
    match answer {
        Ok(answer) => answer,
        Err(SmpError::Full) => ShardReply::Error(BUSY),
        // Only while the process stops.
        Err(SmpError::Stopped) => ShardReply::Error("the owning worker has stopped"),
        Err(_) => ShardReply::Error("internal error: the shards are not reachable"),
    }
}

/// Runs one request; `true` when the connection should close after its
/// reply (QUIT).
async fn execute(shards: &impl Shards, args: Vec<Vec<u8>>, out: &mut Vec<u8>) -> bool {
    let command = command::parse(args);
    let reply = match command {
        Command::Reply(reply) => reply,
        Command::Quit => {
            Reply::OK.encode(out);
            return true;
        }
        command => match Plan::new(command, shards.count()) {
            None => Reply::err("internal error"),
            Some(plan) => {
                // The parts run on their shards at once; their answers
                // come back in the parts' order.
                let answers = join_all(
                    plan.parts
                        .into_iter()
                        .map(|(shard, op)| shards.run(shard, op)),
                )
                .await;
                Plan::merge(plan.merge, answers)
            }
        },
    };
    reply.encode(out);
    false
}

/// One connection: read, run every complete request, answer in one write.
async fn serve_connection(mut stream: TcpStream, shards: impl Shards) -> std::io::Result<()> {
    let limits = Limits::default();
    let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        let mut close = false;
        loop {
            match resp::parse(&input[used..], &limits) {
                Ok(Some((args, len))) => {
                    used += len;
                    if !args.is_empty() && execute(&shards, args, &mut out).await {
                        close = true;
                        break;
                    }
                    if out.len() >= WRITE_AT {
                        stream.write_all(&out).await?;
                        out.clear();
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    Reply::err(error).encode(&mut out);
                    close = true;
                    break;
                }
            }
        }
        input.drain(..used);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            return stream.shutdown().await;
        }
    }
}

/// One worker's main task for one port: accept, a task per connection.
async fn serve(port: u16, shards: WorkerShards) {
    let listener = match TcpListener::bind(port) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("kv: cannot listen on {port}: {e}");
            return;
        }
    };
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::error!("kv: accept on {port}: {e}");
                return;
            }
        };
        let shards = shards.clone();
        drop(spawn_local(async move {
            if let Err(e) = serve_connection(stream, shards).await {
                tracing::debug!("kv: connection: {e}");
            }
        }));
    }
}

/// Removes expired keys of this worker's shard a bounded number at a
/// time, forever.
async fn sweep(stores: Sharded<Store>) {
    loop {
        rt::sleep(SWEEP_EVERY).await;
        let swept = stores.with_local(|store| {
            let removed = store.sweep(now_ms(), SWEEP_BUDGET);
            (removed, store.len(), store.expiring())
        });
        match swept {
            Ok((0, _, _)) => {}
            Ok((removed, keys, expiring)) => {
                tracing::debug!(removed, keys, expiring, "kv: expiry sweep");
            }
            Err(e) => {
                tracing::error!("kv: expiry sweep: {e}");
                return;
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = match Runtime::from_config(&cli.config) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kv: {e:#}");
            return ExitCode::from(1);
        }
    };
    let stores = runtime.sharded(|_worker: &WorkerInfo<'_>| Store::new());
    let runtime = runtime.async_service(SERVICE, move |worker: &WorkerInfo<'_>| {
        let ports = worker.ports(Protocol::Tcp, SERVICE);
        let shards = WorkerShards {
            stores: stores.clone(),
            local: worker.id,
            count: worker.workers,
        };
        async move {
            drop(spawn_local(sweep(shards.stores.clone())));
            for port in ports {
                drop(spawn_local(serve(port, shards.clone())));
            }
        }
    });
    match runtime.config() {
        Ok(config) if config.service_ports(Protocol::Tcp, SERVICE).is_empty() => {
            eprintln!("kv: no TCP rule gives a port to the service \"{SERVICE}\"");
            return ExitCode::from(1);
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("kv: {e:#}");
            return ExitCode::from(1);
        }
    }
    match runtime.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use shardnet::counters::WorkerCounters;
    use shardnet::rt::Executor;
    use shardnet::smp;

    use super::*;

    /// Wakes a thread parked in [`block_on`].
    struct Unpark(std::thread::Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Polls `future` on this thread until it is ready, parked in between.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }

    /// The `n`-th key (`k0`, `k1`, ...) that `shard` of 2 owns.
    fn key_on(shard: usize, n: usize) -> String {
        (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| store::shard_of(k.as_bytes(), 2) == shard)
            .nth(n)
            .expect("keys on every shard")
    }

    /// Runs `line` to completion; its encoded reply.
    fn run(shards: &WorkerShards, line: &str) -> String {
        let mut out = Vec::new();
        let args = resp::split_args(line.as_bytes()).expect("a command line");
        let close = block_on(execute(shards, args, &mut out));
        assert!(!close, "{line}");
        String::from_utf8(out).expect("text")
    }

    /// Two workers over rings of one slot, served from this thread as
    /// worker 0 (worker 1's endpoint comes back unattached): the full ring
    /// answers busy at once and is counted, the local shard takes no
    /// message, and the commands run across both shards.
    #[test]
    fn parts_for_other_workers_travel_and_a_full_ring_answers_busy() {
        let counters: Vec<Arc<WorkerCounters>> = (0..2).map(|_| Arc::default()).collect();
        let mut declared = smp::Shards::new();
        let stores = declared.add(|_: &WorkerInfo<'_>| Store::new());
        let mesh = declared.start(counters.clone(), 1);
        let mut here = mesh.endpoint(0);
        here.attach(vec![Box::new(Store::new())]);
        let there = mesh.endpoint(1);
        let shards = WorkerShards {
            stores,
            local: 0,
            count: 2,
        };
        let (mine, mine2) = (key_on(0, 0), key_on(0, 1));
        let (theirs, theirs2) = (key_on(1, 0), key_on(1, 1));
        let executor = Executor::new(0);
        executor.enter(|| {
            // The local shard: in place, no message.
            assert_eq!(run(&shards, &format!("SET {mine} 1")), "+OK\r\n");
            assert_eq!(counters[0].smp_sent.get(), 0);

            // Worker 1 does not drain yet: the first part waits in the
            // ring's one slot, the next finds it full.
            let mut first_out = Vec::new();
            let args = resp::split_args(format!("SET {theirs} 2").as_bytes()).unwrap();
            let mut first = Box::pin(execute(&shards, args, &mut first_out));
            assert!(first.as_mut().now_or_never().is_none(), "it waits");
            assert_eq!(counters[0].smp_sent.get(), 1);
            let busy = format!("-ERR {BUSY}\r\n");
            assert_eq!(run(&shards, &format!("GET {theirs2}")), busy);
            // A multi-key command: its local part ran (see "Busy owners").
            assert_eq!(run(&shards, &format!("MSET {mine2} x {theirs2} y")), busy);
            assert_eq!(run(&shards, &format!("GET {mine2}")), "$1\r\nx\r\n");
            assert_eq!(counters[0].smp_queue_full.get(), 2);
            assert_eq!(counters[0].smp_sent.get(), 1);

            // Worker 1 drains on its own thread from now on.
            let stop = Arc::new(AtomicBool::new(false));
            let worker1 = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut there = there;
                    there.attach(vec![Box::new(Store::new())]);
                    while !stop.load(Ordering::Relaxed) {
                        if there.drain(smp::DRAIN_BUDGET) == 0 {
                            std::thread::yield_now();
                        }
                    }
                })
            };
            assert!(!block_on(first.as_mut()));
            drop(first);
            assert_eq!(first_out, b"+OK\r\n");
            assert_eq!(run(&shards, &format!("GET {theirs}")), "$1\r\n2\r\n");
            assert_eq!(
                run(&shards, &format!("MSET {mine2} x {theirs2} y")),
                "+OK\r\n"
            );
            assert_eq!(
                run(&shards, &format!("MGET {theirs2} nope {mine} {theirs}")),
                "*4\r\n$1\r\ny\r\n$-1\r\n$1\r\n1\r\n$1\r\n2\r\n"
            );
            assert_eq!(
                run(&shards, &format!("EXISTS {mine} {theirs} {theirs} nope")),
                ":3\r\n"
            );
            assert_eq!(run(&shards, "DBSIZE"), ":4\r\n");
            assert_eq!(run(&shards, &format!("DEL {theirs} {mine} nope")), ":2\r\n");
            assert_eq!(run(&shards, "DBSIZE"), ":2\r\n");
            assert_eq!(run(&shards, "FLUSHALL"), "+OK\r\n");
            assert_eq!(run(&shards, "DBSIZE"), ":0\r\n");
            stop.store(true, Ordering::Relaxed);
            worker1.join().expect("worker 1");
        });
        // Every part sent was run by worker 1; none was lost.
        let sent = counters[0].smp_sent.get();
        assert!(sent >= 10, "{sent}");
        assert_eq!(counters[1].smp_received.get(), sent);
        assert_eq!(counters[0].smp_queue_full.get(), 2);
    }

    #[test]
    fn unreachable_shards_answer_errors() {
        assert_eq!(shard_answer(Err(SmpError::Full)), ShardReply::Error(BUSY));
        assert_eq!(
            shard_answer(Ok(ShardReply::Integer(3))),
            ShardReply::Integer(3)
        );
        assert!(matches!(
            shard_answer(Err(SmpError::Stopped)),
            ShardReply::Error(_)
        ));
    }
}
