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
//! **The shard seam**: every keyed operation goes through
//! [`Shards::run`]`(shard, op)`. For now [`LocalShards`] has one shard, the
//! worker's own store (so with several workers each worker holds its own
//! keyspace: it refuses to start with more than one worker); the
//! cross-core version (each worker
//! owns the keys of its shard, `run` sends the op to the owning worker and
//! awaits its answer) replaces `LocalShards` only.

use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use futures_util::future::join_all;
use shardnet::config::Protocol;
use shardnet::rt::{self, spawn_local, TcpListener, TcpStream};
use shardnet::service::WorkerInfo;
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

/// One shard: the worker's own store, run in place.
///
/// SEAM: replaced by the cross-core version once `shardnet::smp` exists
/// (`count()` = workers, `run` = `invoke_on(shard, |store| store.apply(op,
/// now_ms()))`, the local shard via `with_local`).
#[derive(Clone)]
struct LocalShards {
    store: Rc<RefCell<Store>>,
}

impl Shards for LocalShards {
    fn count(&self) -> usize {
        1
    }

    fn run(&self, _shard: usize, op: ShardOp) -> impl Future<Output = ShardReply> {
        let answer = self.store.borrow_mut().apply(op, now_ms());
        std::future::ready(answer)
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
async fn serve(port: u16, shards: LocalShards) {
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

/// Removes expired keys a bounded number at a time, forever.
async fn sweep(store: Rc<RefCell<Store>>) {
    loop {
        rt::sleep(SWEEP_EVERY).await;
        let mut store = store.borrow_mut();
        let removed = store.sweep(now_ms(), SWEEP_BUDGET);
        if removed > 0 {
            tracing::debug!(
                removed,
                keys = store.len(),
                expiring = store.expiring(),
                "kv: expiry sweep"
            );
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match Runtime::from_config(&cli.config) {
        Ok(runtime) => runtime.async_service(SERVICE, |worker: &WorkerInfo<'_>| {
            let ports = worker.ports(Protocol::Tcp, SERVICE);
            async move {
                let store = Rc::new(RefCell::new(Store::new()));
                drop(spawn_local(sweep(Rc::clone(&store))));
                let shards = LocalShards { store };
                for port in ports {
                    drop(spawn_local(serve(port, shards.clone())));
                }
            }
        }),
        Err(e) => {
            eprintln!("kv: {e:#}");
            return ExitCode::from(1);
        }
    };
    match runtime.config() {
        Ok(config) if config.service_ports(Protocol::Tcp, SERVICE).is_empty() => {
            eprintln!("kv: no TCP rule gives a port to the service \"{SERVICE}\"");
            return ExitCode::from(1);
        }
        // SEAM: until a key's commands can run on its owning worker, each
        // worker would hold its own keyspace, and a client would see the
        // keys of whichever worker its connection landed on.
        Ok(config) if config.dataplane.workers.len() > 1 => {
            eprintln!(
                "kv: {} workers configured; this version serves one (its keyspace is not yet \
                 sharded across workers)",
                config.dataplane.workers.len()
            );
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
