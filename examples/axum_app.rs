//! axum on shardnet: every worker serves an axum `Router` on the ports the
//! configuration's rules give the async TCP service `"app"`.
//!
//! ```text
//! cargo run --release --example axum_app -- --config FILE
//! ```
//!
//! with a rule such as
//!
//! ```toml
//! [[rule]]
//! name = "web"
//! protocol = "tcp"
//! ports = [8080]
//! service = "app"
//! ```
//!
//! Each worker's main task binds a [`TcpListener`] per port and spawns a
//! task per connection, which serves HTTP/1.1 with hyper on the worker's
//! executor: hyper-util's `TokioIo` adapts the stream, and
//! [`ShardnetTimer`] gives hyper the timer `header_read_timeout` needs.
//!
//! The router is in `examples/shared/axum_router.rs` (shared with the
//! benchmarks):
//!
//! - `GET /` answers `hello from shardnet`;
//! - `GET /users/{id}` answers the JSON `{"id": <id>}`;
//! - `POST /echo` answers with the request body.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use shardnet::config::Protocol;
use shardnet::rt::{spawn_local, ShardnetTimer, TcpListener};
use shardnet::service::WorkerInfo;
use shardnet::Runtime;

#[path = "shared/axum_router.rs"]
mod axum_router;

/// The service's name in the rules.
const SERVICE: &str = "app";

#[derive(Parser)]
struct Cli {
    /// The shardnet configuration file.
    #[arg(long)]
    config: PathBuf,
}

/// One worker's main task: a listener per port, a task per connection.
async fn serve(port: u16) {
    let listener = match TcpListener::bind(port) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("axum_app: cannot listen on {port}: {e}");
            return;
        }
    };
    // Built once per listener; a clone per connection shares the routes.
    let app = axum_router::router();
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::error!("axum_app: accept on {port}: {e}");
                return;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        drop(spawn_local(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(ShardnetTimer)
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("axum_app: connection: {e}");
            }
        }));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match Runtime::from_config(&cli.config) {
        Ok(runtime) => runtime.async_service(SERVICE, |worker: &WorkerInfo<'_>| {
            let ports = worker.ports(Protocol::Tcp, SERVICE);
            async move {
                for port in ports {
                    drop(spawn_local(serve(port)));
                }
            }
        }),
        Err(e) => {
            eprintln!("axum_app: {e:#}");
            return ExitCode::from(1);
        }
    };
    // Refuse a config that gives the app nothing to serve.
    match runtime.config() {
        Ok(config) if config.service_ports(Protocol::Tcp, SERVICE).is_empty() => {
            eprintln!("axum_app: no TCP rule gives a port to the service \"{SERVICE}\"");
            return ExitCode::from(1);
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("axum_app: {e:#}");
            return ExitCode::from(1);
        }
    }
    match runtime.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_app: {e:#}");
            ExitCode::from(1)
        }
    }
}
