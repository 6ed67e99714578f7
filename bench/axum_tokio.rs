//! The axum application of `examples/axum_app.rs` (the same router,
//! `examples/shared/axum_router.rs`) on tokio and the kernel's TCP: the
//! baseline of `bench/axum-vs-tokio.sh`.
//!
//! ```text
//! cargo run --release --example axum_tokio -- --listen 198.18.0.2:80 --core 1
//! ```
//!
//! One thread: a current-thread tokio runtime, pinned to `--core`, accepting
//! on `--listen` and serving each connection with hyper's HTTP/1.1 server as
//! `axum_app` does on shardnet (hyper-util's `TokioIo`, a 10 s
//! `header_read_timeout` on hyper-util's `TokioTimer`). Prints `listening on
//! ADDR` on stderr once it accepts, and the count of connections accepted at
//! SIGINT or SIGTERM, when it exits.

use std::cell::Cell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

#[path = "../examples/shared/axum_router.rs"]
mod axum_router;

#[derive(Parser)]
struct Cli {
    /// The address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// The core to pin the (only) thread to.
    #[arg(long)]
    core: usize,
}

async fn serve(listener: tokio::net::TcpListener, accepted: Rc<Cell<u64>>) {
    let app = axum_router::router();
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: go on, as a server would.
                eprintln!("axum_tokio: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        accepted.set(accepted.get() + 1);
        // As the kernel contenders of http-vs-kernel (nginx: tcp_nodelay on).
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        drop(tokio::task::spawn_local(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let core = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.id == cli.core);
    let Some(core) = core else {
        eprintln!("axum_tokio: no core {}", cli.core);
        return ExitCode::from(2);
    };
    if !core_affinity::set_for_current(core) {
        eprintln!("axum_tokio: cannot pin to core {}", cli.core);
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("axum_tokio: {e}");
            return ExitCode::from(1);
        }
    };
    let local = tokio::task::LocalSet::new();
    let accepted = Rc::new(Cell::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("axum_tokio: {e}");
            return ExitCode::from(1);
        }
    }
    let result = local.block_on(&runtime, async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(cli.listen)?;
        // The backlog of nginx's `listen` in bench/axum-vs-tokio.sh.
        let listener = socket.listen(4096)?;
        eprintln!(
            "axum_tokio: listening on {} (core {})",
            cli.listen, cli.core
        );
        let stopped = async {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            () = serve(listener, accepted.clone()) => {}
            () = stopped => {}
        }
        Ok::<(), std::io::Error>(())
    });
    match result {
        Ok(()) => {
            eprintln!("axum_tokio: accepted {} connections", accepted.get());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("axum_tokio: {e}");
            ExitCode::from(1)
        }
    }
}
