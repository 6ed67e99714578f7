//! Slowloris against the real binary (issue 16, defect 5): with a small TCP
//! buffer pool (`max_buffers_per_worker = 16`, 256 KiB buffers, two
//! workers), 64 connections from the peer namespace each send
//! `GET / HTTP/1.1\r\nX-slow: ` and hold. Then:
//! - curl gets `200` at once, while they are all still held (each holds a
//!   4 KiB buffer, not a 256 KiB one: the pool's limit counts bytes);
//! - at the header timeout every slow connection is reset, counted in
//!   `shardnet_http_timeouts_total{kind="header"}`;
//! - the buffer gauge shows the slow connections' bytes while they are held
//!   and none afterwards, within the limit it reports; nothing was dropped
//!   for want of a buffer (`tcp_no_buffer`), since nothing had to be.
//!
//! Needs root (network namespaces); fails, never skips, when it cannot set
//! up. AF_PACKET backend. Every load is bounded in time and count.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{metric_sum, peer_script, scrape, wait_for, Lab, DUT_IP};

const METRICS: &str = "127.0.0.1:9464";
/// Slow connections: with 2 workers and 16 buffers of 256 KiB each, enough
/// that each worker gets well over 16 (it would take them all without the
/// fix).
const SLOW: usize = 64;
/// `[http] header_timeout_ms`.
const HEADER_TIMEOUT_MS: u64 = 6000;
const BUFFER_SIZE: u64 = 256 * 1024;
const MAX_BUFFERS: u64 = 16;

fn config(lab: &Lab) -> String {
    let dataplane = lab.dataplane("af_packet", 8191);
    format!(
        r#"{dataplane}
[interface]
address = "{DUT_IP}/24"
mac = "auto"

[metrics]
listen = "{METRICS}"

[[rule]]
name = "web"
protocol = "tcp"
ports = [80]
service = "http"

[default]
action = "drop"

[tcp]
buffer_size = {BUFFER_SIZE}
max_buffers_per_worker = {MAX_BUFFERS}
time_wait_ms = 1000

[http]
header_timeout_ms = {HEADER_TIMEOUT_MS}
"#
    )
}

/// The sum over workers of metric `name`'s samples whose labels include
/// every one of `labels`.
fn metric(lab: &Lab, name: &str, labels: &[&str]) -> f64 {
    metric_sum(&scrape(lab, METRICS), name, labels)
}

/// The slowloris peer, killed on drop.
struct Slowloris {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Slowloris {
    fn start(lab: &Lab, hold_s: u64) -> Slowloris {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.peer_ns, "timeout", "60", "python3"])
            .arg(peer_script("slowloris.py"))
            .args([DUT_IP, "80", &SLOW.to_string(), &hold_s.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start slowloris.py");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Slowloris { child, stdout }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }
}

#[test]
fn slowloris_with_a_small_pool_neither_stalls_curl_nor_holds_for_ever() {
    let lab = Lab::new();
    let mut shardnet = lab.start_shardnet(&config(&lab));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(30));
    let limit = metric(&lab, "shardnet_tcp_buffer_limit_bytes", &[]);
    assert_eq!(limit, 2.0 * (MAX_BUFFERS * BUFFER_SIZE) as f64);

    let mut slow = Slowloris::start(&lab, 40);
    let ready = slow.line();
    assert_eq!(
        ready.trim(),
        format!("ready {SLOW}"),
        "slowloris.py: {ready}"
    );
    let held_at = Instant::now();

    // The stack holds every slow head: a small buffer each.
    wait_for("the slow heads buffered", Duration::from_secs(3), || {
        metric(&lab, "shardnet_tcp_buffer_bytes", &[]) >= (SLOW * 4096) as f64
    });
    let in_use = metric(&lab, "shardnet_tcp_buffer_bytes", &[]);
    assert!(
        in_use <= (SLOW * 4096 + 4 * 4096) as f64,
        "{in_use} bytes for {SLOW} one-line heads"
    );

    // A real client is answered at once, while they are all held.
    let out = lab.peer(&[
        "curl",
        "-sS",
        "--http1.1",
        "--max-time",
        "4",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{DUT_IP}/"),
    ]);
    let answered_in = held_at.elapsed();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "curl during the slowloris: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        shardnet.log_text()
    );
    assert!(
        answered_in < Duration::from_millis(HEADER_TIMEOUT_MS),
        "answered only after {answered_in:?}"
    );

    // Every slow connection is reset at the header timeout, not before.
    let result: serde_json::Value =
        serde_json::from_str(&slow.line()).expect("slowloris.py's JSON line");
    println!("slowloris: {result}");
    assert_eq!(result["opened"], SLOW);
    assert_eq!(result["reset"], SLOW, "{result}");
    assert_eq!(result["open"], 0, "{result}");
    let first = result["first_end_s"].as_f64().unwrap();
    let last = result["last_end_s"].as_f64().unwrap();
    let timeout_s = HEADER_TIMEOUT_MS as f64 / 1000.0;
    assert!(first >= timeout_s - 0.5, "reset early: {result}");
    assert!(last <= timeout_s + 10.0, "reset late: {result}");

    wait_for("the timeouts counted", Duration::from_secs(5), || {
        metric(&lab, "shardnet_http_timeouts_total", &["kind=\"header\""]) == SLOW as f64
    });
    wait_for("the buffers back", Duration::from_secs(5), || {
        metric(&lab, "shardnet_tcp_buffer_bytes", &[]) == 0.0
    });
    assert!(metric(&lab, "shardnet_tcp_resets_total", &["direction=\"tx\""]) >= SLOW as f64);
    assert_eq!(
        metric(&lab, "shardnet_drops_total", &["reason=\"tcp_no_buffer\""]),
        0.0
    );
    shardnet.stop();
}
