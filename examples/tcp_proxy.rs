//! A tiny TCP proxy on shardnet's async layer: every worker accepts on the
//! ports the rules give the async service `"proxy"`, and for each
//! connection opens one of its own ([`TcpStream::connect`], from a source
//! port whose replies come back to the worker) to the upstream host.
//!
//! ```text
//! cargo run --release --example tcp_proxy -- --config FILE --upstream 198.18.0.1
//! ```
//!
//! The protocol, for tests: the client sends a first line naming the
//! upstream port (`"9090\n"`), then its request, and half-closes. The proxy
//! connects to that port upstream, forwards the request, half-closes, and
//! sends back what upstream answers until its FIN; when the connect fails
//! it answers `error: <kind>` (such as `error: ConnectionRefused`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shardnet::config::Protocol;
use shardnet::rt::{spawn_local, timeout, TcpListener, TcpStream};
use shardnet::service::WorkerInfo;
use shardnet::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The service's name in the rules.
const SERVICE: &str = "proxy";

#[derive(Parser)]
struct Cli {
    /// The shardnet configuration file.
    #[arg(long)]
    config: PathBuf,
    /// The upstream host.
    #[arg(long)]
    upstream: Ipv4Addr,
}

/// One client: read its request, relay it upstream, relay the answer.
async fn relay(mut client: TcpStream, upstream: Ipv4Addr) -> std::io::Result<()> {
    let mut request = Vec::new();
    client.read_to_end(&mut request).await?;
    let Some(newline) = request.iter().position(|&b| b == b'\n') else {
        return client.write_all(b"error: no port line").await;
    };
    let port: u16 = match std::str::from_utf8(&request[..newline])
        .ok()
        .and_then(|line| line.trim().parse().ok())
    {
        Some(port) => port,
        None => return client.write_all(b"error: bad port line").await,
    };
    let remote = SocketAddrV4::new(upstream, port);
    let connected = match timeout(Duration::from_secs(10), TcpStream::connect(remote)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    };
    let mut server = match connected {
        Ok(server) => server,
        Err(e) => {
            return client
                .write_all(format!("error: {:?}", e.kind()).as_bytes())
                .await
        }
    };
    server.write_all(&request[newline + 1..]).await?;
    server.shutdown().await?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await?;
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// One worker's main task for one port: accept, a task per connection.
async fn serve(port: u16, upstream: Ipv4Addr) {
    let listener = match TcpListener::bind(port) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("tcp_proxy: cannot listen on {port}: {e}");
            return;
        }
    };
    loop {
        let (client, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::error!("tcp_proxy: accept on {port}: {e}");
                return;
            }
        };
        drop(spawn_local(async move {
            if let Err(e) = relay(client, upstream).await {
                tracing::warn!("tcp_proxy: {e}");
            }
        }));
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let upstream = cli.upstream;
    let runtime = Runtime::from_config(&cli.config)?.async_service(
        SERVICE,
        move |worker: &WorkerInfo<'_>| {
            let ports = worker.ports(Protocol::Tcp, SERVICE);
            async move {
                for port in ports {
                    drop(spawn_local(serve(port, upstream)));
                }
            }
        },
    );
    if runtime
        .config()?
        .service_ports(Protocol::Tcp, SERVICE)
        .is_empty()
    {
        anyhow::bail!("no TCP rule gives a port to the service \"{SERVICE}\"");
    }
    runtime.run()
}
