//! An async UDP service on shardnet: every worker answers each datagram on
//! the ports the configuration's UDP rules give the async service
//! `"reverse"` with its bytes in reverse order, from a task per port on the
//! worker's executor.
//!
//! ```text
//! cargo run --release --example async_udp -- --config FILE
//! ```
//!
//! with a rule such as
//!
//! ```toml
//! [[rule]]
//! name = "reverse"
//! protocol = "udp"
//! ports = [7072]
//! service = "reverse"
//! ```
//!
//! Each worker binds its own [`UdpSocket`] per port, as each
//! `SO_REUSEPORT` socket does on Linux: it gets the datagrams that RSS
//! gives its worker.

use std::path::PathBuf;

use shardnet::config::Protocol;
use shardnet::rt::{spawn_local, UdpSocket};
use shardnet::service::WorkerInfo;
use shardnet::Runtime;

/// The service's name in the rules.
const SERVICE: &str = "reverse";

/// One port of one worker: answer each datagram reversed.
async fn serve(port: u16) {
    let socket = match UdpSocket::bind(port) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!("async_udp: cannot bind {port}: {e}");
            return;
        }
    };
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                tracing::error!("async_udp: receive on {port}: {e}");
                return;
            }
        };
        buf[..n].reverse();
        if let Err(e) = socket.send_to(&buf[..n], from).await {
            tracing::debug!("async_udp: no answer to {from}: {e}");
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let config = match (args.next().as_deref(), args.next()) {
        (Some("--config"), Some(path)) => PathBuf::from(path),
        _ => anyhow::bail!("usage: async_udp --config FILE"),
    };
    let runtime =
        Runtime::from_config(&config)?.async_service(SERVICE, |worker: &WorkerInfo<'_>| {
            let ports = worker.ports(Protocol::Udp, SERVICE);
            async move {
                for port in ports {
                    drop(spawn_local(serve(port)));
                }
            }
        });
    if runtime
        .config()?
        .service_ports(Protocol::Udp, SERVICE)
        .is_empty()
    {
        anyhow::bail!("no UDP rule gives a port to the service \"{SERVICE}\"");
    }
    runtime.run()
}
