//! Cross-core messages (`shardnet::smp`): a count per key, the keys sharded
//! over the workers by hash, each key's count kept and incremented on its
//! owning worker only, whichever worker the connection landed on. Each
//! line a client sends is a key; the answer is `<owner> <count>`.
//!
//! Two services share the same per-worker state (`Runtime::sharded`):
//! - `count`, async: a task per connection awaits `Sharded::invoke_on`;
//! - `tally`, callbacks: `Sharded::invoke_on_then` hands the result back to
//!   this worker, where `then` files it for the connection, and the
//!   connection's service timer (`TcpIo::set_timer`) writes it out.
//!
//! ```text
//! cargo run --release --example smp_count -- --config FILE
//! ```
//!
//! with rules such as
//!
//! ```toml
//! [[rule]]
//! name = "count"
//! protocol = "tcp"
//! ports = [7080]
//! service = "count"
//!
//! [[rule]]
//! name = "tally"
//! protocol = "tcp"
//! ports = [7081]
//! service = "tally"
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use shardnet::config::Protocol;
use shardnet::rt::{spawn_local, TcpListener, TcpStream};
use shardnet::service::{Closed, ConnId, TcpIo, TcpService, WorkerInfo};
use shardnet::smp::{Sharded, SmpError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A worker's share of the counts.
type Counts = HashMap<String, u64>;

/// The worker that owns `key` (FNV-1a: the same in every process).
fn owner(key: &str, workers: usize) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % workers as u64) as usize
}

/// Counts `key` once more on its owner: what runs there.
fn bump(key: String) -> impl FnOnce(&mut Counts) -> u64 + Send + 'static {
    move |counts| {
        let n = counts.entry(key).or_default();
        *n += 1;
        *n
    }
}

/// The answer line.
fn answer(owner: usize, result: Result<u64, SmpError>) -> String {
    match result {
        Ok(n) => format!("{owner} {n}\n"),
        Err(e) => format!("error {e}\n"),
    }
}

/// The async service on one port: a task per connection.
async fn count(port: u16, counts: Sharded<Counts>) {
    let listener = match TcpListener::bind(port) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("count: cannot listen on {port}: {e}");
            return;
        }
    };
    while let Ok((stream, _peer)) = listener.accept().await {
        drop(spawn_local(count_lines(stream, counts.clone())));
    }
}

async fn count_lines(stream: TcpStream, counts: Sharded<Counts>) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let key = line.trim().to_owned();
        let k = owner(&key, counts.workers());
        let result = counts.invoke_on(k, bump(key)).await;
        if stream
            .get_mut()
            .write_all(answer(k, result).as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// How long `tally` waits before looking again for an answer not there yet.
const RECHECK_NS: u64 = 200_000;

/// The callback service: one request per connection at a time (its
/// `app_state` is 1 while one is under way).
struct Tally {
    counts: Sharded<Counts>,
    /// Answers that came back, by connection, until its timer writes them.
    ready: Rc<RefCell<HashMap<ConnId, String>>>,
}

impl Tally {
    /// Starts the next request if a whole line is there and none is under
    /// way.
    fn next(&mut self, io: &mut dyn TcpIo) {
        if *io.app_state() != 0 {
            return;
        }
        let (first, second) = io.recv_data();
        let data: Vec<u8> = first.iter().chain(second).copied().collect();
        let Some(end) = data.iter().position(|&b| b == b'\n') else {
            if io.peer_closed() {
                io.close();
            }
            return;
        };
        io.consume(end + 1);
        let key = String::from_utf8_lossy(&data[..end]).trim().to_owned();
        let k = owner(&key, self.counts.workers());
        let (ready, id) = (self.ready.clone(), io.id());
        let then = move |result| {
            ready.borrow_mut().insert(id, answer(k, result));
        };
        match self.counts.invoke_on_then(k, bump(key), then) {
            Ok(()) => {
                *io.app_state() = 1;
                // The answer comes in a later round: look then.
                let now = io.now();
                io.set_timer(Some(now));
            }
            Err(e) => {
                io.send(answer(k, Err(e)).as_bytes());
            }
        }
    }
}

impl TcpService for Tally {
    fn on_readable(&mut self, io: &mut dyn TcpIo) {
        self.next(io);
    }

    fn on_peer_closed(&mut self, io: &mut dyn TcpIo) {
        // Closed once the requests before the FIN are answered.
        self.next(io);
    }

    fn on_timer(&mut self, io: &mut dyn TcpIo) {
        let Some(line) = self.ready.borrow_mut().remove(&io.id()) else {
            let now = io.now();
            io.set_timer(Some(now + RECHECK_NS));
            return;
        };
        // Answers are short: a fresh connection's send buffer takes them.
        io.send(line.as_bytes());
        *io.app_state() = 0;
        self.next(io);
    }

    fn on_closed(&mut self, closed: &Closed) {
        self.ready.borrow_mut().remove(&closed.id);
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let config = match (args.next().as_deref(), args.next()) {
        (Some("--config"), Some(path)) => PathBuf::from(path),
        _ => anyhow::bail!("usage: smp_count --config FILE"),
    };
    let mut runtime = shardnet::Runtime::from_config(&config)?;
    let counts = runtime.sharded(|_worker: &WorkerInfo<'_>| Counts::new());
    let for_tally = counts.clone();
    runtime
        .tcp_service("tally", move |_worker| Tally {
            counts: for_tally.clone(),
            ready: Rc::default(),
        })
        .async_service("count", move |worker: &WorkerInfo<'_>| {
            let ports = worker.ports(Protocol::Tcp, "count");
            let counts = counts.clone();
            async move {
                for port in ports {
                    drop(spawn_local(count(port, counts.clone())));
                }
            }
        })
        .run()
}
