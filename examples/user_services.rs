//! A program's own services on shardnet. On the callback layer: a TCP
//! service that answers every byte upper-cased, and a UDP service that
//! answers every datagram reversed, sent with `UdpIo::send_to`. On the
//! async layer: a TCP service, a task per connection, that answers every
//! line with the worker's number before it, and whose task panics on the
//! line `panic`, to show that a task's panic ends that task only: its
//! connection is reset, and the worker goes on serving the others.
//!
//! ```text
//! cargo run --release --example user_services -- --config FILE
//! ```
//!
//! with rules such as
//!
//! ```toml
//! [[rule]]
//! name = "upper"
//! protocol = "tcp"
//! ports = [7070]
//! service = "upper"
//!
//! [[rule]]
//! name = "reverse"
//! protocol = "udp"
//! ports = [7071]
//! service = "reverse"
//!
//! [[rule]]
//! name = "lines"
//! protocol = "tcp"
//! ports = [7072]
//! service = "lines"
//! ```

use std::path::PathBuf;

use shardnet::config::Protocol;
use shardnet::rt::{spawn_local, TcpListener, TcpStream};
use shardnet::service::{Datagram, TcpIo, TcpService, UdpAction, UdpIo, UdpService, WorkerInfo};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Upper-cases what it reads, as send space allows (the rest waits in the
/// receive buffer: backpressure), and closes after the peer once all is
/// answered.
#[derive(Default)]
struct Upper {
    scratch: Vec<u8>,
}

impl Upper {
    fn pump(&mut self, io: &mut dyn TcpIo) {
        loop {
            let (first, _) = io.recv_data();
            let n = first.len().min(io.send_space()).min(16 * 1024);
            if n == 0 {
                break;
            }
            self.scratch.clear();
            self.scratch
                .extend(first[..n].iter().map(u8::to_ascii_uppercase));
            let sent = io.send(&self.scratch);
            io.consume(sent);
            if sent < n {
                break;
            }
        }
        let (a, b) = io.recv_data();
        if io.peer_closed() && a.is_empty() && b.is_empty() && *io.app_state() == 0 {
            *io.app_state() = 1;
            io.close();
        }
    }
}

impl TcpService for Upper {
    fn on_readable(&mut self, io: &mut dyn TcpIo) {
        self.pump(io);
    }

    fn on_writable(&mut self, io: &mut dyn TcpIo) {
        self.pump(io);
    }

    fn on_peer_closed(&mut self, io: &mut dyn TcpIo) {
        self.pump(io);
    }
}

/// Answers each datagram with its bytes in reverse order.
#[derive(Default)]
struct Reverse {
    scratch: Vec<u8>,
}

impl UdpService for Reverse {
    fn on_datagram(&mut self, datagram: &Datagram<'_>, io: &mut dyn UdpIo) -> UdpAction {
        self.scratch.clear();
        self.scratch.extend(datagram.payload.iter().rev());
        if let Err(e) = io.send_to(datagram.to.port(), datagram.from, &self.scratch) {
            tracing::debug!("no answer to {}: {e}", datagram.from);
        }
        UdpAction::Consume
    }
}

/// The async service `lines` on one port of worker `worker`: a task per
/// connection.
async fn lines(port: u16, worker: usize) {
    let listener = match TcpListener::bind(port) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("lines: cannot listen on {port}: {e}");
            return;
        }
    };
    while let Ok((stream, _peer)) = listener.accept().await {
        drop(spawn_local(answer_lines(stream, worker)));
    }
}

/// Answers each line with `w<worker> <line>` until the peer closes; panics
/// on the line `panic`.
async fn answer_lines(stream: TcpStream, worker: usize) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.trim_end() == "panic" {
            panic!("the peer asked this task to panic");
        }
        let reply = format!("w{worker} {line}");
        if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let config = match (args.next().as_deref(), args.next()) {
        (Some("--config"), Some(path)) => PathBuf::from(path),
        _ => anyhow::bail!("usage: user_services --config FILE"),
    };
    shardnet::Runtime::from_config(&config)?
        .tcp_service("upper", |_worker| Upper::default())
        .udp_service("reverse", |_worker| Reverse::default())
        .async_service("lines", |worker: &WorkerInfo<'_>| {
            let (ports, id) = (worker.ports(Protocol::Tcp, "lines"), worker.id);
            async move {
                for port in ports {
                    drop(spawn_local(lines(port, id)));
                }
            }
        })
        .run()
}
