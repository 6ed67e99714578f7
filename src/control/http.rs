//! The control HTTP endpoint: `[metrics] listen` (TCP, read-only calls) and
//! `[metrics] admin_socket` (a Unix socket, every call).
//!
//! One thread runs an event loop (a current-thread tokio runtime) and serves
//! both listeners with hyper's HTTP/1 connections. It is started from the
//! control thread and so pinned to the same core (threads inherit their
//! creator's affinity). Whatever the clients do, it holds:
//!
//! - **one thread**, whatever the number of connections (plus the reload
//!   thread of [`super::reload`]): nothing here spawns per connection;
//! - at most [`MAX_CONNECTIONS`] TCP connections and [`MAX_ADMIN_CONNECTIONS`]
//!   admin ones. A new connection on a full listener sheds the idle one
//!   (accepted or answered, and not inside a request now) that has been
//!   idle longest. Refusing new connections instead would let a few idle
//!   ones lock every scrape out until they time out; shedding the oldest
//!   lets a fresh scrape in, and an attacker must then outpace it with new
//!   connections between its connect and its request, every time;
//! - a request head of at most [`MAX_HEAD_BYTES`] (`431` otherwise), sent
//!   within [`HEADER_READ_TIMEOUT`] of the connection's start or of the
//!   previous answer (else the connection is closed: this is also the idle
//!   keep-alive timeout);
//! - no request body over [`MAX_BODY_BYTES`] (`413`, and the connection is
//!   closed); no endpoint reads a body at all;
//! - accept errors (out of descriptors, of memory) are logged and retried
//!   after a pause, never fatal.
//!
//! State changes (`POST /reload`, `POST /capture`, `POST /debug/stall`) are taken only on the
//! admin socket, whose file mode (0600, the process' user) decides who may
//! make them; the TCP listener answers them `403`, naming the socket.
//! Reloads run on the reload thread: a slow config file never holds up
//! `/metrics` or `/healthz`.
//!
//! Nothing here may panic on input or on resource exhaustion (release builds
//! abort on panic, which would take the dataplane down): no `unwrap` on
//! anything a client or the system decides.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use http_body_util::channel::Channel;
use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{oneshot, Notify};

use byteorder::NativeEndian;
use pcap_file::pcap::{PcapHeader, PcapPacket};
use pcap_file::{Endianness, TsResolution};

use super::metrics;
use super::reload::{ReloadBusy, ReloadQueue};
use super::ControlPlane;
use crate::capture::{self, Filter};

/// The most TCP connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// The most admin-socket connections served at once.
pub const MAX_ADMIN_CONNECTIONS: usize = 8;

/// The longest a client may take to send a request head, counted from the
/// connection's start or from the previous answer on it (so also the idle
/// keep-alive timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request head (request line and headers), in bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The most header lines in a request.
const MAX_HEADERS: usize = 32;

/// hyper's read buffer (its minimum is 8 KiB): a head fits, a body is never
/// read into it.
const MAX_BUF_BYTES: usize = 16 * 1024;

/// The largest request body accepted (none of the endpoints reads one).
pub const MAX_BODY_BYTES: u64 = 1024;

/// How long `POST /reload` waits for its outcome before answering `503`
/// (the reload goes on, and is logged).
const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// The longest stall `POST /debug/stall` accepts.
const MAX_STALL: Duration = Duration::from_secs(60);

/// The listen backlog of both listeners.
const BACKLOG: u32 = 1024;

/// After a failed accept (no descriptor, no memory), wait this long.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A running control HTTP server.
pub struct HttpServer {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    addr: Option<SocketAddr>,
    admin: Option<AdminSocket>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .field("admin", &self.admin.as_ref().map(|a| &a.path))
            .finish_non_exhaustive()
    }
}

/// The admin socket's file, removed at stop if it is still ours.
#[derive(Debug)]
struct AdminSocket {
    path: PathBuf,
    /// (device, inode) of the socket we bound.
    id: (u64, u64),
}

impl AdminSocket {
    fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.id => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(
                        "cannot remove the admin socket {}: {e}",
                        self.path.display()
                    );
                }
            }
            // Replaced by someone else, or already gone: not ours to remove.
            _ => {}
        }
    }
}

/// What the server is told at start.
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    /// `[metrics] listen`: the read-only TCP listener.
    pub listen: Option<SocketAddr>,
    /// `[metrics] admin_socket`: the Unix socket for every call.
    pub admin_socket: Option<PathBuf>,
    /// `[debug] stall_endpoint`: serve `POST /debug/stall` (admin only).
    pub stall_endpoint: bool,
}

impl HttpServer {
    /// Bind the listeners of `settings` and serve `plane` on a new thread;
    /// reloads go to `reloads`.
    ///
    /// # Errors
    /// A listener that cannot be bound (the address taken, the admin socket
    /// held by a live process or its path taken by another kind of file),
    /// or no thread.
    pub fn start(
        settings: &EndpointSettings,
        plane: Arc<ControlPlane>,
        reloads: ReloadQueue,
    ) -> anyhow::Result<HttpServer> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("cannot start the control endpoint's event loop")?;
        // Listeners register with the runtime's reactor.
        let entered = runtime.enter();
        let tcp = settings
            .listen
            .map(|addr| {
                bind_tcp(addr)
                    .with_context(|| format!("cannot listen on {addr} for the control endpoint"))
            })
            .transpose()?;
        let addr = match &tcp {
            Some(listener) => Some(
                listener
                    .local_addr()
                    .context("the control endpoint has no local address")?,
            ),
            None => None,
        };
        let admin = settings
            .admin_socket
            .as_deref()
            .map(|path| {
                bind_admin(path)
                    .with_context(|| format!("cannot serve the admin socket {}", path.display()))
            })
            .transpose()?;
        drop(entered);
        let (admin_listener, admin) = match admin {
            Some((listener, socket)) => (Some(listener), Some(socket)),
            None => (None, None),
        };
        let context = Arc::new(Shared {
            registry: metrics::registry(plane.clone()),
            plane,
            stall_endpoint: settings.stall_endpoint,
            reloads,
            admin_path: admin.as_ref().map(|a| a.path.display().to_string()),
        });
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("shardnet-http".into())
            .spawn(move || {
                runtime.block_on(serve(tcp, admin_listener, context, stop));
                // Dropping the runtime drops every connection.
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                if let Some(admin) = &admin {
                    admin.remove();
                }
                return Err(e).context("cannot spawn the control HTTP thread");
            }
        };
        if let Some(addr) = addr {
            tracing::info!("control endpoint on http://{addr}/metrics");
        }
        if let Some(admin) = &admin {
            tracing::info!(
                "admin socket on {} (POST /reload; mode 0600)",
                admin.path.display()
            );
        }
        Ok(HttpServer {
            shutdown: Some(shutdown),
            thread: Some(thread),
            addr,
            admin,
        })
    }

    /// The TCP address it listens on, if any (the port is known once bound:
    /// `:0` works).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Stop serving (open connections are closed, a reload in progress goes
    /// on) and remove the admin socket.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the control HTTP thread panicked");
            }
        }
        if let Some(admin) = self.admin.take() {
            admin.remove();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Bind the admin socket at `path`: its directory made if missing; a stale
/// socket (nobody answers on it) replaced; a live one, or another kind of
/// file, refused. The file is made 0600 before the socket listens, so no
/// other user can connect in between.
fn bind_admin(path: &Path) -> anyhow::Result<(UnixListener, AdminSocket)> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => bail!(
                    "another process (a running shardnet?) answers on it; stop it or choose \
                     another [metrics] admin_socket"
                ),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).context("cannot remove the stale socket")?;
                    tracing::info!("removed a stale admin socket at {}", path.display());
                }
                Err(e) => return Err(e).context("cannot tell whether it is in use"),
            }
        }
        Ok(_) => bail!("a file that is not a socket is there; remove it or choose another path"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let socket = tokio::net::UnixSocket::new_stream()?;
    socket.bind(path)?;
    let made = (|| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let meta = std::fs::symlink_metadata(path)?;
        let listener = socket.listen(BACKLOG)?;
        Ok::<_, io::Error>((listener, (meta.dev(), meta.ino())))
    })();
    match made {
        Ok((listener, id)) => Ok((
            listener,
            AdminSocket {
                path: path.to_owned(),
                id,
            },
        )),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e.into())
        }
    }
}

/// What every request handler needs.
struct Shared {
    plane: Arc<ControlPlane>,
    registry: prometheus::Registry,
    stall_endpoint: bool,
    reloads: ReloadQueue,
    /// The admin socket's path, to name it in `403` answers.
    admin_path: Option<String>,
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listener {
    Tcp,
    Admin,
}

/// The connections of one listener, for the cap.
struct Connections {
    limit: usize,
    next_id: u64,
    open: HashMap<u64, Connection>,
}

struct Connection {
    /// When it was accepted or last answered, or began its current request.
    since: Instant,
    /// Inside a request (a handler runs): never shed.
    busy: bool,
    /// Notified to close it.
    shed: Arc<Notify>,
}

type Table = Arc<Mutex<Connections>>;

fn lock(table: &Table) -> std::sync::MutexGuard<'_, Connections> {
    // Poisoned only by a panic, which aborts a release build.
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connections {
    fn new(limit: usize) -> Table {
        Arc::new(Mutex::new(Connections {
            limit,
            next_id: 0,
            open: HashMap::with_capacity(limit),
        }))
    }

    /// Make room for one more, shedding the longest-idle connection if full.
    /// Returns the new connection's id and close signal, or `None` when every
    /// connection is inside a request (the new one is then refused).
    fn admit(&mut self) -> Option<(u64, Arc<Notify>)> {
        if self.open.len() >= self.limit {
            let victim = self
                .open
                .iter()
                .filter(|(_, c)| !c.busy)
                .min_by_key(|(_, c)| c.since)
                .map(|(&id, _)| id)?;
            if let Some(shed) = self.open.remove(&victim) {
                shed.shed.notify_one();
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let shed = Arc::new(Notify::new());
        self.open.insert(
            id,
            Connection {
                since: Instant::now(),
                busy: false,
                shed: shed.clone(),
            },
        );
        Some((id, shed))
    }

    fn set_busy(&mut self, id: u64, busy: bool) {
        if let Some(c) = self.open.get_mut(&id) {
            c.busy = busy;
            c.since = Instant::now();
        }
    }
}

/// Removes a connection from its table when its task ends, however it ends.
struct Registered {
    table: Table,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.table).open.remove(&self.id);
    }
}

/// Serve both listeners until `stop`.
async fn serve(
    tcp: Option<TcpListener>,
    admin: Option<UnixListener>,
    context: Arc<Shared>,
    stop: oneshot::Receiver<()>,
) {
    let tcp_loop = async {
        match tcp {
            Some(listener) => {
                let table = Connections::new(MAX_CONNECTIONS);
                loop {
                    let accepted = listener.accept().await.map(|(stream, _)| stream);
                    if let Some(stream) = accepted_or_pause(accepted, Listener::Tcp).await {
                        spawn_connection(stream, &table, &context, Listener::Tcp);
                    }
                    // Let the new connection read its request before the
                    // next accept may shed it.
                    tokio::task::yield_now().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    let admin_loop = async {
        match admin {
            Some(listener) => {
                let table = Connections::new(MAX_ADMIN_CONNECTIONS);
                loop {
                    let accepted = listener.accept().await.map(|(stream, _)| stream);
                    if let Some(stream) = accepted_or_pause(accepted, Listener::Admin).await {
                        spawn_connection(stream, &table, &context, Listener::Admin);
                    }
                    tokio::task::yield_now().await;
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop => {}
        () = tcp_loop => {}
        () = admin_loop => {}
    }
}

/// The accepted stream, or `None` after logging the error and pausing (out
/// of descriptors or memory: retrying at once would spin).
async fn accepted_or_pause<S>(accepted: io::Result<S>, listener: Listener) -> Option<S> {
    match accepted {
        Ok(stream) => Some(stream),
        Err(e) => {
            // A connection reset before it was accepted is no news.
            if e.kind() != io::ErrorKind::ConnectionAborted {
                tracing::warn!("control endpoint ({listener:?}): cannot accept: {e}");
                tokio::time::sleep(ACCEPT_PAUSE).await;
            }
            None
        }
    }
}

fn spawn_connection<S>(stream: S, table: &Table, context: &Arc<Shared>, listener: Listener)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let Some((id, shed)) = lock(table).admit() else {
        // Every connection is inside a request: refuse this one (dropped,
        // so closed).
        tracing::debug!("control endpoint ({listener:?}): full, a connection refused");
        return;
    };
    let registered = Registered {
        table: table.clone(),
        id,
    };
    let context = context.clone();
    tokio::spawn(async move {
        let table = registered.table.clone();
        let service = hyper::service::service_fn(move |request| {
            let context = context.clone();
            let table = table.clone();
            async move {
                lock(&table).set_busy(id, true);
                let response = answer(&context, request, listener).await;
                lock(&table).set_busy(id, false);
                Ok::<_, Infallible>(response)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_BUF_BYTES)
            .max_header_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS);
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::select! {
            done = connection => {
                if let Err(e) = done {
                    tracing::debug!("control endpoint ({listener:?}): connection ended: {e}");
                }
            }
            () = shed.notified() => {
                tracing::debug!("control endpoint ({listener:?}): full, the longest-idle connection shed");
            }
        }
        drop(registered);
    });
}

/// A whole answer, or a stream (`POST /capture`).
type Answer = Response<Either<Full<Bytes>, Channel<Bytes>>>;

fn respond(status: StatusCode, content_type: HeaderValue, body: Vec<u8>) -> Answer {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Answer {
    // A `Value` always serializes; an empty object if it ever did not.
    let mut text = serde_json::to_vec_pretty(body).unwrap_or_else(|_| b"{}".to_vec());
    text.push(b'\n');
    respond(status, HeaderValue::from_static("application/json"), text)
}

/// Whether the request carries (or announces) a body over the limit.
fn body_too_large(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    match headers.get(header::CONTENT_LENGTH) {
        None => false,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_none_or(|length| length > MAX_BODY_BYTES),
    }
}

async fn answer(context: &Shared, request: Request<Incoming>, listener: Listener) -> Answer {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let response = if body_too_large(&request) {
        let mut response = json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"error": format!("the control endpoint takes no request body over {MAX_BODY_BYTES} bytes")}),
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    } else {
        route(context, &method, &path, &query, listener).await
    };
    tracing::debug!("{listener:?} {method} {path} -> {}", response.status());
    response
}

async fn route(
    context: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    listener: Listener,
) -> Answer {
    let state_changing = matches!(
        (path, method),
        ("/reload" | "/capture" | "/capture/stop", &Method::POST) | ("/debug/stall", &Method::POST)
    ) && (path != "/debug/stall" || context.stall_endpoint);
    if state_changing && listener == Listener::Tcp {
        return forbidden(context, method, path);
    }
    match (path, method) {
        ("/metrics", &Method::GET) => {
            let (body, content_type) = metrics::render(&context.registry);
            let content_type = HeaderValue::from_str(&content_type).unwrap_or_else(|_| {
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8")
            });
            respond(StatusCode::OK, content_type, body)
        }
        ("/healthz", &Method::GET) => healthz(&context.plane),
        ("/rules", &Method::GET) => json_response(StatusCode::OK, &context.plane.rules_json()),
        ("/reload", &Method::POST) => reload(&context.reloads).await,
        ("/capture", &Method::POST) => capture(&context.plane, query),
        ("/capture/stop", &Method::POST) => {
            let running = context.plane.stop_capture();
            json_response(
                StatusCode::OK,
                &json!({"status": "ok", "was_running": running}),
            )
        }
        ("/capture" | "/capture/stop", _) => not_allowed("POST"),
        ("/debug/stall", &Method::POST) if context.stall_endpoint => stall(&context.plane, query),
        ("/metrics" | "/healthz" | "/rules", _) => not_allowed("GET"),
        ("/reload", _) => not_allowed("POST"),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no {path} here: try /metrics, /healthz, /rules, POST /reload or POST /capture")}),
        ),
    }
}

fn forbidden(context: &Shared, method: &Method, path: &str) -> Answer {
    let error = match &context.admin_path {
        Some(socket) => format!(
            "{method} {path} is only taken on the admin socket {socket} \
             (curl --unix-socket {socket} -X {method} http://localhost{path}); SIGHUP also reloads"
        ),
        None => format!(
            "{method} {path} is only taken on the admin socket, and none is configured \
             ([metrics] admin_socket); SIGHUP reloads"
        ),
    };
    json_response(
        StatusCode::FORBIDDEN,
        &json!({"status": "error", "error": error}),
    )
}

fn not_allowed(allow: &'static str) -> Answer {
    let mut response = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": format!("method not allowed; use {allow}")}),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn healthz(plane: &ControlPlane) -> Answer {
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
    // Until the control thread's first read the link is not known: not a
    // reason to answer 503.
    let link = plane.link();
    let link_down = link.is_some_and(|(_, link)| !link.up);
    let mut body = json!({"status": "ok", "workers": workers});
    if let Some((port, link)) = link {
        body["link"] = json!({
            "port": port,
            "up": link.up,
            "speed_mbps": link.speed_mbps,
            "full_duplex": link.full_duplex,
        });
    }
    if stuck.is_empty() && !link_down {
        return json_response(StatusCode::OK, &body);
    }
    let mut errors = Vec::new();
    if !stuck.is_empty() {
        let names: Vec<String> = stuck.iter().map(|w| format!("worker {w}")).collect();
        errors.push(format!("{} not polling", names.join(", ")));
        body["status"] = json!("stuck");
        body["stuck_workers"] = json!(stuck);
    } else {
        body["status"] = json!("link_down");
    }
    if let Some((port, _)) = link.filter(|_| link_down) {
        errors.push(format!("link down on port {port}"));
    }
    body["error"] = json!(errors.join("; "));
    json_response(StatusCode::SERVICE_UNAVAILABLE, &body)
}

async fn reload(reloads: &ReloadQueue) -> Answer {
    let busy = |error: &str| {
        let mut response = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "error": error}),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    };
    let outcome = match reloads.request_with_reply("HTTP") {
        Ok(outcome) => outcome,
        Err(ReloadBusy) => {
            return busy("a reload is already waiting to run; try again in a second")
        }
    };
    match tokio::time::timeout(RELOAD_WAIT, outcome).await {
        Ok(Ok(Ok(done))) => json_response(
            StatusCode::OK,
            &json!({
                "status": "ok",
                "rules": done.rules,
                "generation": done.generation,
                "pending_workers": done.pending_workers,
                "needs_restart": done.needs_restart,
            }),
        ),
        Ok(Ok(Err(e))) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"status": "error", "error": e}),
        ),
        Ok(Err(_)) => busy("shardnet is stopping; the reload did not run"),
        Err(_) => busy("the reload is still running; its outcome will be in the log"),
    }
}

/// How often a running capture drains the workers' rings.
const CAPTURE_DRAIN: Duration = Duration::from_millis(5);

/// `POST /capture?worker=N&count=N&filter=EXPR` (every parameter optional;
/// the filter percent-encoded): a classic pcap stream (LINKTYPE_ETHERNET,
/// microsecond timestamps, snaplen [`capture::SNAPLEN`]) of the frames the
/// workers receive and send, until `count` frames or the client hangs up.
fn capture(plane: &Arc<ControlPlane>, query: &str) -> Answer {
    let bad = |error: String| {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({"status": "error", "error": error}),
        )
    };
    let mut worker = None;
    let mut count = None;
    let mut filter = String::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Ok(value) = percent_encoding::percent_decode_str(value).decode_utf8() else {
            return bad(format!("the {key} parameter is not UTF-8"));
        };
        match key {
            "worker" => match value.parse::<usize>() {
                Ok(w) => worker = Some(w),
                Err(_) => return bad(format!("worker={value} is not a worker number")),
            },
            "count" => match value.parse::<u64>() {
                Ok(c) if c > 0 => count = Some(c),
                _ => return bad(format!("count={value} is not a positive number")),
            },
            "filter" => filter = value.into_owned(),
            _ => {
                return bad(format!(
                    "unknown parameter {key:?}: use worker, count, filter"
                ))
            }
        }
    }
    let filter = match Filter::parse(&filter) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let guard = match plane.start_capture(worker, filter) {
        Ok(g) => g,
        Err(e) => {
            return json_response(
                StatusCode::CONFLICT,
                &json!({"status": "error", "error": e}),
            )
        }
    };
    tracing::info!(?worker, ?count, "capture started");
    let (mut sender, body) = Channel::new(4);
    tokio::spawn(async move {
        let header = PcapHeader {
            snaplen: capture::SNAPLEN as u32,
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        let mut chunk = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = header.write_to(&mut chunk);
        let mut written = 0u64;
        let mut frames = Vec::new();
        loop {
            for session in guard.sessions() {
                while let Some(frame) = session.pop() {
                    frames.push(frame);
                }
            }
            // Workers interleave: in time order within a drain.
            frames.sort_by_key(|f| f.time);
            let mut done = false;
            for frame in frames.drain(..) {
                if count.is_some_and(|c| written >= c) {
                    done = true;
                    break;
                }
                let packet = PcapPacket::new(frame.time, frame.wire_len, &frame.data);
                let _ = packet.write_to::<_, NativeEndian>(
                    &mut chunk,
                    TsResolution::MicroSecond,
                    capture::SNAPLEN as u32,
                );
                written += 1;
            }
            done |= count.is_some_and(|c| written >= c);
            if !chunk.is_empty()
                && sender
                    .send_data(Bytes::from(std::mem::take(&mut chunk)))
                    .await
                    .is_err()
            {
                break;
            }
            if done || guard.stop_requested() {
                break;
            }
            tokio::time::sleep(CAPTURE_DRAIN).await;
        }
        tracing::info!(written, "capture stopped");
        drop(guard);
    });
    let mut response = Response::new(Either::Right(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.tcpdump.pcap"),
    );
    response
}

fn stall(plane: &ControlPlane, query: &str) -> Answer {
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
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "use /debug/stall?worker=N&ms=M"}),
        );
    };
    let how_long = Duration::from_millis(ms).min(MAX_STALL);
    match plane.stall(worker, how_long) {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"status": "ok", "worker": worker, "ms": how_long.as_millis() as u64}),
        ),
        Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"error": e})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_sheds_the_longest_idle_and_never_a_busy_one() {
        let table = Connections::new(3);
        let mut t = lock(&table);
        let (a, a_shed) = t.admit().unwrap();
        let (b, _) = t.admit().unwrap();
        let (c, _) = t.admit().unwrap();
        // a is inside a request, c answered last: b is the longest idle.
        t.set_busy(a, true);
        std::thread::sleep(Duration::from_millis(2));
        t.set_busy(c, false);
        let (d, _) = t.admit().unwrap();
        assert_eq!(t.open.len(), 3);
        assert!(!t.open.contains_key(&b), "b was shed");
        assert!(t.open.contains_key(&a) && t.open.contains_key(&c) && t.open.contains_key(&d));
        // a's signal was not used.
        drop(a_shed);
        // All busy: a new one is refused rather than shedding a request.
        for id in [a, c, d] {
            t.set_busy(id, true);
        }
        assert!(t.admit().is_none());
        assert_eq!(t.open.len(), 3);
    }

    fn health_of(plane: &ControlPlane) -> (StatusCode, serde_json::Value) {
        use http_body_util::BodyExt;
        let answer = healthz(plane);
        let status = answer.status();
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(answer.into_body().collect())
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn healthz_says_the_link_is_down_and_which_workers_are_stuck() {
        use crate::port::Link;
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        let (_file, plane) = crate::control::tests::plane_for(crate::control::tests::BASE, 1);
        plane.counters()[0].heartbeat_ns.set(plane.clock().now_ns());
        // No link read yet: not a reason for 503.
        assert_eq!(health_of(&plane).0, StatusCode::OK);
        let up = Arc::new(AtomicBool::new(true));
        let reads = up.clone();
        plane.set_link_reader(
            "eth1".into(),
            Box::new(move || {
                Ok(Link {
                    up: reads.load(Relaxed),
                    ..Link::VIRTUAL
                })
            }),
        );
        plane.poll_link();
        let (status, body) = health_of(&plane);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["link"]["up"], true);
        up.store(false, Relaxed);
        plane.poll_link();
        let (status, body) = health_of(&plane);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "link_down");
        assert_eq!(body["error"], "link down on port eth1");
        // Both: the stuck workers first, as before, then the link.
        std::thread::sleep(crate::control::STUCK_AFTER + Duration::from_millis(50));
        let (status, body) = health_of(&plane);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "stuck");
        assert_eq!(body["stuck_workers"], json!([0]));
        assert_eq!(
            body["error"],
            "worker 0 not polling; link down on port eth1"
        );
    }
}
