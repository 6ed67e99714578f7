//! A program's own services on shardnet, on the callback layer: a TCP
//! service that answers every byte upper-cased, and a UDP service that
//! answers every datagram reversed, sent with `UdpIo::send_to`.
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
//! ```

use std::path::PathBuf;

use shardnet::service::{Datagram, TcpIo, TcpService, UdpAction, UdpIo, UdpService};

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

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let config = match (args.next().as_deref(), args.next()) {
        (Some("--config"), Some(path)) => PathBuf::from(path),
        _ => anyhow::bail!("usage: user_services --config FILE"),
    };
    shardnet::Runtime::from_config(&config)?
        .tcp_service("upper", |_worker| Upper::default())
        .udp_service("reverse", |_worker| Reverse::default())
        .run()
}
