//! The control HTTP endpoint (`[metrics] listen`), on `tiny_http`: a small,
//! synchronous server. It runs on its own thread, started from the control
//! thread and so pinned to the same core (threads inherit their creator's
//! affinity); `tiny_http` reads requests on its own helper threads, which
//! inherit it too. A slow client delays other scrapes, never a worker, nor
//! the control thread's signal handling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tiny_http::{Header, Method, Request, Response, Server};

use super::metrics;
use super::ControlPlane;

/// The longest stall `POST /debug/stall` accepts.
const MAX_STALL: Duration = Duration::from_secs(60);

/// A running control HTTP server.
pub struct HttpServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Bind `addr` and serve `plane` on a new thread. `stall_endpoint`
    /// enables `POST /debug/stall`.
    pub fn start(
        addr: SocketAddr,
        plane: Arc<ControlPlane>,
        stall_endpoint: bool,
    ) -> anyhow::Result<HttpServer> {
        let server = Server::http(addr)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot listen on {addr} for the control endpoint"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .context("the control endpoint is not on an IP socket")?;
        let server = Arc::new(server);
        let registry = metrics::registry(plane.clone());
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("shardnet-http".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    handle(request, &plane, &registry, stall_endpoint);
                }
            })
            .context("cannot spawn the control HTTP thread")?;
        tracing::info!("control endpoint on http://{addr}/metrics");
        Ok(HttpServer {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The address it listens on (the port is known once bound: `:0` works).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving and wait for the thread (a request being answered
    /// finishes first).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the control HTTP thread panicked");
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

fn json_response(status: u16, body: &serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut text = serde_json::to_vec_pretty(body).expect("JSON values serialize");
    text.push(b'\n');
    Response::from_data(text)
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
}

fn handle(
    request: Request,
    plane: &ControlPlane,
    registry: &prometheus::Registry,
    stall_endpoint: bool,
) {
    let method = request.method().clone();
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let response = match (path, &method) {
        ("/metrics", Method::Get) => {
            let (body, content_type) = metrics::render(registry);
            Response::from_data(body).with_header(header("Content-Type", &content_type))
        }
        ("/healthz", Method::Get) => healthz(plane),
        ("/rules", Method::Get) => json_response(200, &plane.rules_json()),
        ("/reload", Method::Post) => reload(plane),
        ("/debug/stall", Method::Post) if stall_endpoint => stall(plane, query),
        ("/metrics" | "/healthz" | "/rules", _) => not_allowed("GET"),
        ("/reload", _) => not_allowed("POST"),
        _ => json_response(
            404,
            &json!({"error": format!("no {path} here: try /metrics, /healthz, /rules or POST /reload")}),
        ),
    };
    let status = response.status_code().0;
    tracing::debug!("{method} {url} -> {status}");
    if let Err(e) = request.respond(response) {
        tracing::debug!("{method} {url}: the client went away: {e}");
    }
}

fn not_allowed(allow: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    json_response(
        405,
        &json!({"error": format!("method not allowed; use {allow}")}),
    )
    .with_header(header("Allow", allow))
}

fn healthz(plane: &ControlPlane) -> Response<std::io::Cursor<Vec<u8>>> {
    let health = plane.health();
    let stuck: Vec<usize> = health
        .iter()
        .filter(|h| !h.polling)
        .map(|h| h.worker)
        .collect();
    let workers: Vec<_> = health
        .iter()
        .map(|h| {
            json!({
                "worker": h.worker,
                "polling": h.polling,
                "heartbeat_age_ms": h.heartbeat_age.as_secs_f64() * 1e3,
            })
        })
        .collect();
    if stuck.is_empty() {
        json_response(200, &json!({"status": "ok", "workers": workers}))
    } else {
        let names: Vec<String> = stuck.iter().map(|w| format!("worker {w}")).collect();
        json_response(
            503,
            &json!({
                "status": "stuck",
                "stuck_workers": stuck,
                "error": format!("{} not polling", names.join(", ")),
                "workers": workers,
            }),
        )
    }
}

fn reload(plane: &ControlPlane) -> Response<std::io::Cursor<Vec<u8>>> {
    match plane.reload("HTTP") {
        Ok(done) => json_response(
            200,
            &json!({
                "status": "ok",
                "rules": done.rules,
                "generation": done.generation,
                "pending_workers": done.pending_workers,
                "needs_restart": done.needs_restart,
            }),
        ),
        Err(e) => json_response(400, &json!({"status": "error", "error": e})),
    }
}

fn stall(plane: &ControlPlane, query: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut worker = None;
    let mut ms = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("worker", v)) => worker = v.parse::<usize>().ok(),
            Some(("ms", v)) => ms = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    let (Some(worker), Some(ms)) = (worker, ms) else {
        return json_response(400, &json!({"error": "use /debug/stall?worker=N&ms=M"}));
    };
    let how_long = Duration::from_millis(ms).min(MAX_STALL);
    match plane.stall(worker, how_long) {
        Ok(()) => json_response(
            200,
            &json!({"status": "ok", "worker": worker, "ms": how_long.as_millis() as u64}),
        ),
        Err(e) => json_response(400, &json!({"error": e})),
    }
}
