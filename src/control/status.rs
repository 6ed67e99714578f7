//! `shardnet status --control ADDR`: a terminal table of a running instance,
//! like F-Stack's `ff_top`.
//!
//! It scrapes the control endpoint's `GET /metrics` (TCP `[metrics] listen`,
//! or the admin Unix socket when ADDR is a path) twice, an interval apart,
//! and prints per worker: received and sent packets per second (the counters'
//! difference over the time between the scrapes), TCP connections, buffers of
//! the pool in use, drops per second, and below them the drops by reason and
//! the port's link. Without `--once` it repeats every interval until
//! interrupted, clearing the screen first when stdout is a terminal (plain
//! ANSI `ESC[H ESC[2J`, no terminal library needed for that).
//!
//! The text is parsed with the `prometheus-parse` crate. The HTTP request is
//! one `GET` with `Connection: close` written by hand on a std socket, its
//! answer's head parsed with `httparse` (already a dependency): a client
//! crate and an async runtime would be far more than one request a second
//! needs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// How long one scrape may take (connect, send, answer).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest `/metrics` answer read (a many-worker scrape is a few
/// hundred KiB).
const MAX_ANSWER: u64 = 32 << 20;

/// One worker's series in one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerSample {
    /// `shardnet_rx_packets_total`.
    pub rx_packets: f64,
    /// `shardnet_tx_packets_total`.
    pub tx_packets: f64,
    /// `shardnet_tcp_connections_active`.
    pub connections: f64,
    /// `shardnet_drops_total` by reason.
    pub drops: BTreeMap<String, f64>,
    /// `shardnet_mempool_in_use` (DPDK only).
    pub pool_in_use: Option<f64>,
    /// `shardnet_mempool_capacity` (DPDK only).
    pub pool_capacity: Option<f64>,
    /// `shardnet_worker_up`.
    pub up: Option<bool>,
}

/// One port's link in one scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSample {
    /// The `port` label.
    pub port: String,
    /// `shardnet_link_up`.
    pub up: bool,
    /// `shardnet_link_speed_bytes_per_second`, where reported.
    pub speed_bytes_per_second: Option<f64>,
}

/// What one scrape says.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// When it was taken.
    pub at: Instant,
    /// The workers by number.
    pub workers: BTreeMap<usize, WorkerSample>,
    /// The ports' links, by port label.
    pub links: Vec<LinkSample>,
}

/// Parse a `/metrics` text taken at `at`. Fails when it holds no worker
/// series (not shardnet's endpoint).
pub fn parse(text: &str, at: Instant) -> Result<Snapshot, String> {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines)
        .map_err(|e| format!("the metrics text does not parse: {e}"))?;
    let mut workers: BTreeMap<usize, WorkerSample> = BTreeMap::new();
    let mut links: BTreeMap<String, LinkSample> = BTreeMap::new();
    let mut seen_rx = false;
    for sample in &scrape.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        if let Some(port) = sample.labels.get("port") {
            let link = links.entry(port.to_owned()).or_insert_with(|| LinkSample {
                port: port.to_owned(),
                up: false,
                speed_bytes_per_second: None,
            });
            match sample.metric.as_str() {
                "shardnet_link_up" => link.up = value == 1.0,
                "shardnet_link_speed_bytes_per_second" => link.speed_bytes_per_second = Some(value),
                _ => {}
            }
            continue;
        }
        let Some(worker) = sample
            .labels
            .get("worker")
            .and_then(|w| w.parse::<usize>().ok())
        else {
            continue;
        };
        const WORKER_SERIES: &[&str] = &[
            "shardnet_rx_packets_total",
            "shardnet_tx_packets_total",
            "shardnet_tcp_connections_active",
            "shardnet_mempool_in_use",
            "shardnet_mempool_capacity",
            "shardnet_worker_up",
            "shardnet_drops_total",
        ];
        if !WORKER_SERIES.contains(&sample.metric.as_str()) {
            continue;
        }
        let w = workers.entry(worker).or_default();
        match sample.metric.as_str() {
            "shardnet_rx_packets_total" => {
                w.rx_packets = value;
                seen_rx = true;
            }
            "shardnet_tx_packets_total" => w.tx_packets = value,
            "shardnet_tcp_connections_active" => w.connections = value,
            "shardnet_mempool_in_use" => w.pool_in_use = Some(value),
            "shardnet_mempool_capacity" => w.pool_capacity = Some(value),
            "shardnet_worker_up" => w.up = Some(value == 1.0),
            "shardnet_drops_total" => {
                if let Some(reason) = sample.labels.get("reason") {
                    w.drops.insert(reason.to_owned(), value);
                }
            }
            _ => {}
        }
    }
    if !seen_rx {
        return Err("the answer holds no shardnet worker metrics (is this shardnet's [metrics] listen address?)".into());
    }
    Ok(Snapshot {
        at,
        workers,
        links: links.into_values().collect(),
    })
}

/// Per second between two totals; a total that went down (a restart) counts
/// from zero.
fn rate(before: f64, now: f64, seconds: f64) -> f64 {
    let delta = if now >= before { now - before } else { now };
    if seconds > 0.0 {
        delta / seconds
    } else {
        0.0
    }
}

/// `1.25e9` bytes per second as `10 Gbit/s`.
fn speed(bytes_per_second: f64) -> String {
    let mbps = bytes_per_second * 8.0 / 1e6;
    if mbps >= 1000.0 {
        format!("{} Gbit/s", trim(mbps / 1000.0))
    } else {
        format!("{} Mbit/s", trim(mbps))
    }
}

fn trim(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The table for the interval from `before` to `now`, scraped from `addr`.
pub fn render(addr: &str, before: &Snapshot, now: &Snapshot) -> String {
    let seconds = now.at.duration_since(before.at).as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "shardnet status {addr}: {} worker(s), rates over {seconds:.1} s",
        now.workers.len()
    );
    if now.links.is_empty() {
        let _ = writeln!(out, "link: not reported yet");
    }
    for link in &now.links {
        let state = match (link.up, link.speed_bytes_per_second) {
            (true, Some(bytes)) => format!("link up {}", speed(bytes)),
            (true, None) => "link up (speed unknown)".to_owned(),
            (false, _) => "link down".to_owned(),
        };
        let _ = writeln!(out, "port {}: {state}", link.port);
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<8} {:>12} {:>12} {:>8} {:>15} {:>10}",
        "worker", "state", "rx pps", "tx pps", "conns", "pool in use", "drops/s"
    );
    let empty = WorkerSample::default();
    let mut totals = [0.0f64; 4];
    for (id, w) in &now.workers {
        let b = before.workers.get(id).unwrap_or(&empty);
        let rx = rate(b.rx_packets, w.rx_packets, seconds);
        let tx = rate(b.tx_packets, w.tx_packets, seconds);
        let drops: f64 = w
            .drops
            .iter()
            .map(|(reason, v)| rate(b.drops.get(reason).copied().unwrap_or(0.0), *v, seconds))
            .sum();
        let pool = match (w.pool_in_use, w.pool_capacity) {
            (Some(used), Some(cap)) => format!("{used:.0}/{cap:.0}"),
            (Some(used), None) => format!("{used:.0}"),
            _ => "-".to_owned(),
        };
        let state = match w.up {
            Some(true) => "polling",
            Some(false) => "STUCK",
            None => "?",
        };
        let _ = writeln!(
            out,
            "{id:>6}  {state:<8} {rx:>12.0} {tx:>12.0} {:>8.0} {pool:>15} {drops:>10.0}",
            w.connections
        );
        for (total, value) in totals.iter_mut().zip([rx, tx, w.connections, drops]) {
            *total += value;
        }
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<8} {:>12.0} {:>12.0} {:>8.0} {:>15} {:>10.0}",
        "all", "", totals[0], totals[1], totals[2], "", totals[3]
    );
    // Every reason with a drop since start: per second now, and in total.
    let mut reasons: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (id, w) in &now.workers {
        let b = before.workers.get(id).unwrap_or(&empty);
        for (reason, total) in &w.drops {
            if *total > 0.0 {
                let per = rate(b.drops.get(reason).copied().unwrap_or(0.0), *total, seconds);
                let entry = reasons.entry(reason).or_default();
                entry.0 += per;
                entry.1 += total;
            }
        }
    }
    if reasons.is_empty() {
        let _ = writeln!(out, "drops by reason: none since start");
    } else {
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>14}",
            "drops by reason", "per s", "since start"
        );
        for (reason, (per, total)) in reasons {
            let _ = writeln!(out, "  {reason:<22} {per:>10.0} {total:>14.0}");
        }
    }
    out
}

/// `GET /metrics` from `addr`: `HOST:PORT` (an `http://` prefix and a
/// trailing `/` are allowed) or the path of the admin Unix socket.
pub fn fetch(addr: &str) -> Result<String, String> {
    let unreachable = |e: &dyn std::fmt::Display| {
        format!("shardnet's control endpoint {addr} does not answer: {e} (is shardnet running with [metrics] listen or admin_socket at this address?)")
    };
    let answer = if addr.starts_with('/') || addr.starts_with('.') {
        let mut stream = UnixStream::connect(addr).map_err(|e| unreachable(&e))?;
        stream
            .set_read_timeout(Some(SCRAPE_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(SCRAPE_TIMEOUT)))
            .map_err(|e| unreachable(&e))?;
        exchange(&mut stream, "localhost").map_err(|e| unreachable(&e))?
    } else {
        let host = addr.trim_start_matches("http://").trim_end_matches('/');
        let target = host
            .to_socket_addrs()
            .map_err(|e| unreachable(&e))?
            .next()
            .ok_or_else(|| unreachable(&"the name has no address"))?;
        let mut stream =
            TcpStream::connect_timeout(&target, SCRAPE_TIMEOUT).map_err(|e| unreachable(&e))?;
        stream
            .set_read_timeout(Some(SCRAPE_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(SCRAPE_TIMEOUT)))
            .map_err(|e| unreachable(&e))?;
        exchange(&mut stream, host).map_err(|e| unreachable(&e))?
    };
    body_of(&answer).map_err(|e| format!("shardnet's control endpoint {addr}: {e}"))
}

fn exchange<S: Read + Write>(stream: &mut S, host: &str) -> io::Result<Vec<u8>> {
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {host}\r\nUser-Agent: shardnet-status\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer)?;
    Ok(answer)
}

/// The body of a complete HTTP/1.1 answer, if it is a 200.
fn body_of(answer: &[u8]) -> Result<String, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(answer) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Err("the answer ended within its head".into()),
        Err(e) => return Err(format!("the answer is not HTTP: {e}")),
    };
    if response.code != Some(200) {
        return Err(format!(
            "GET /metrics answered {} {}",
            response.code.unwrap_or(0),
            response.reason.unwrap_or("")
        ));
    }
    let mut body = &answer[head..];
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("the answer is chunked, which this client does not read".into());
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("the answer's Content-Length is not a number")?;
            body = body
                .get(..length)
                .ok_or("the answer ended before its Content-Length")?;
        }
    }
    String::from_utf8(body.to_vec()).map_err(|_| "the metrics text is not UTF-8".into())
}

fn scrape(addr: &str) -> Result<Snapshot, String> {
    let text = fetch(addr)?;
    parse(&text, Instant::now()).map_err(|e| format!("shardnet's control endpoint {addr}: {e}"))
}

/// Run `shardnet status`: with `once`, two scrapes `interval` apart and one
/// table; otherwise a table every `interval` until interrupted (a scrape
/// that fails after the first is shown and retried). `clear` clears the
/// screen before each table (stdout is a terminal).
pub fn run(
    addr: &str,
    once: bool,
    interval: Duration,
    clear: bool,
    out: &mut dyn Write,
) -> Result<(), String> {
    let mut before = scrape(addr)?;
    loop {
        std::thread::sleep(interval);
        let text = match scrape(addr) {
            Ok(now) => {
                let table = render(addr, &before, &now);
                before = now;
                table
            }
            Err(e) if once => return Err(e),
            Err(e) => format!("{e}; retrying every {:.1} s\n", interval.as_secs_f64()),
        };
        let written = if clear {
            write!(out, "\x1b[H\x1b[2J{text}")
        } else {
            writeln!(out, "{text}")
        };
        written
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write the table: {e}"))?;
        if once {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = r#"# HELP shardnet_rx_packets_total Frames received by the worker.
# TYPE shardnet_rx_packets_total counter
shardnet_rx_packets_total{worker="0"} 100
shardnet_rx_packets_total{worker="1"} 50
# TYPE shardnet_tx_packets_total counter
shardnet_tx_packets_total{worker="0"} 90
shardnet_tx_packets_total{worker="1"} 40
# TYPE shardnet_drops_total counter
shardnet_drops_total{reason="no_connection",worker="0"} 3
shardnet_drops_total{reason="bad_checksum",worker="1"} 0
# TYPE shardnet_tcp_connections_active gauge
shardnet_tcp_connections_active{worker="0"} 7
# TYPE shardnet_mempool_in_use gauge
shardnet_mempool_in_use{worker="0"} 12
# TYPE shardnet_mempool_capacity gauge
shardnet_mempool_capacity{worker="0"} 8191
# TYPE shardnet_worker_up gauge
shardnet_worker_up{worker="0"} 1
shardnet_worker_up{worker="1"} 0
# TYPE shardnet_tcp_rtt_seconds histogram
shardnet_tcp_rtt_seconds_bucket{worker="0",le="0.001"} 1
shardnet_tcp_rtt_seconds_bucket{worker="0",le="+Inf"} 1
shardnet_tcp_rtt_seconds_sum{worker="0"} 0.0005
shardnet_tcp_rtt_seconds_count{worker="0"} 1
# TYPE shardnet_link_up gauge
shardnet_link_up{port="0"} 1
# TYPE shardnet_link_speed_bytes_per_second gauge
shardnet_link_speed_bytes_per_second{port="0"} 1250000000
"#;

    #[test]
    fn a_table_of_rates_between_two_scrapes() {
        let start = Instant::now();
        let before = parse(FIRST, start).unwrap();
        assert_eq!(before.workers[&0].connections, 7.0);
        assert_eq!(before.workers[&1].up, Some(false));
        assert_eq!(
            before.links,
            [LinkSample {
                port: "0".into(),
                up: true,
                speed_bytes_per_second: Some(1.25e9)
            }]
        );
        let second = FIRST
            .replace("{worker=\"0\"} 100", "{worker=\"0\"} 300")
            .replace(
                "{reason=\"no_connection\",worker=\"0\"} 3",
                "{reason=\"no_connection\",worker=\"0\"} 7",
            );
        let now = parse(&second, start + Duration::from_secs(2)).unwrap();
        let table = render("127.0.0.1:9464", &before, &now);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(
            rows[0],
            "shardnet status 127.0.0.1:9464: 2 worker(s), rates over 2.0 s"
        );
        assert_eq!(rows[1], "port 0: link up 10 Gbit/s");
        let worker0: Vec<&str> = rows[3].split_whitespace().collect();
        assert_eq!(worker0, ["0", "polling", "100", "0", "7", "12/8191", "2"]);
        let worker1: Vec<&str> = rows[4].split_whitespace().collect();
        assert_eq!(worker1, ["1", "STUCK", "0", "0", "0", "-", "0"]);
        assert!(rows[5].starts_with("   all"), "{table}");
        assert!(
            table.contains("  no_connection                   2              7"),
            "{table}"
        );
        assert!(!table.contains("bad_checksum"), "{table}");
    }

    proptest::proptest! {
        /// Whatever an endpoint answers, parsing and rendering never panic.
        #[test]
        fn any_text_parses_or_is_refused_without_a_panic(
            lines in proptest::collection::vec(
                "(# (HELP|TYPE) shardnet_[a-z_]{0,12} [a-z ]{0,10}|shardnet_(rx_packets_total|drops_total|link_up|worker_up)[{]?([a-z]{1,6}=\"[0-9a-z]{0,4}\",?){0,3}[}]? [-+0-9.eEnaNIf]{0,8}|.{0,30})",
                0..12,
            )
        ) {
            let text = lines.join("\n");
            let start = Instant::now();
            if let Ok(before) = parse(&text, start) {
                let _ = render("x", &before, &before);
            }
            let _ = body_of(text.as_bytes());
        }
    }

    #[test]
    fn what_is_not_shardnet_is_refused() {
        let error = parse("# TYPE up gauge\nup 1\n", Instant::now()).unwrap_err();
        assert!(error.contains("no shardnet worker metrics"), "{error}");
        assert!(parse("", Instant::now()).is_err());
    }

    #[test]
    fn answers_are_read_by_their_length_and_status() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello world";
        assert_eq!(body_of(ok).unwrap(), "hello");
        let short = b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nhello";
        assert!(body_of(short).unwrap_err().contains("Content-Length"));
        let refused = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            body_of(refused).unwrap_err(),
            "GET /metrics answered 404 Not Found"
        );
        assert!(body_of(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(body_of(b"").is_err());
    }

    #[test]
    fn an_address_that_does_not_answer_is_one_sentence() {
        // A port nobody listens on: bind one, learn its number, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let error = fetch(&addr).unwrap_err();
        assert!(
            error.starts_with(&format!(
                "shardnet's control endpoint {addr} does not answer: "
            )),
            "{error}"
        );
        assert!(!error.contains('\n'));
        assert!(fetch("/nonexistent/shardnet.sock").is_err());
    }
}
