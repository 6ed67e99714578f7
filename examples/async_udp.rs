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
use std::process::ExitCode;

use shardnet::config::{Action, Config, CoreSet, Protocol};
use shardnet::rt::{spawn_local, UdpSocket};
use shardnet::runtime::{self, Signals};
use shardnet::service::{Registry, WorkerInfo};

/// The service's name in the rules.
const SERVICE: &str = "reverse";

/// Every port of the UDP rules that name the service.
fn ports(config: &Config) -> Vec<u16> {
    config
        .rules
        .iter()
        .filter(|rule| rule.protocol == Protocol::Udp)
        .filter(|rule| matches!(rule.action, Action::Service(id) if id.as_str() == SERVICE))
        .flat_map(|rule| rule.ports.iter().flat_map(|range| range.clone()))
        .collect()
}

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

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let config_path = match (args.next().as_deref(), args.next()) {
        (Some("--config"), Some(path)) => PathBuf::from(path),
        _ => {
            eprintln!("usage: async_udp --config FILE");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHARDNET_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut registry = Registry::new();
    let added = registry.add_async(SERVICE, |worker: &WorkerInfo<'_>| {
        let ports = ports(worker.config);
        async move {
            for port in ports {
                drop(spawn_local(serve(port)));
            }
        }
    });
    if let Err(e) = added {
        eprintln!("async_udp: {e}");
        return ExitCode::from(1);
    }
    let config = match Config::load_for(&config_path, &CoreSet::online(), registry.catalog()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    if ports(&config).is_empty() {
        eprintln!("async_udp: no UDP rule names the service \"{SERVICE}\"");
        return ExitCode::from(1);
    }
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("async_udp: {e:#}");
            return ExitCode::from(1);
        }
    };
    match runtime::run_with_services(config, &signals, registry) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("async_udp: {e:#}");
            ExitCode::from(1)
        }
    }
}
