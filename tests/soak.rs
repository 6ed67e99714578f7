//! A soak: a two-worker shardnet (AF_PACKET) under a mixed load from a Linux
//! peer for a while: HTTP connections opening and closing, UDP echo over many
//! flows, a share of slowloris connections, and a rules reload every few
//! seconds. What must hold:
//! - the process's resident memory is flat after warm-up: it grows by at most
//!   [`RSS_GROWTH_BOUND`] between the end of warm-up (a third of the run) and
//!   the end, whatever the run's length;
//! - no thread growth: the thread count never changes after start-up;
//! - every HTTP request got its answer; every UDP echo that did not come back
//!   is covered by a counted drop (shardnet's drop counters, its port's
//!   missed frames, the peer's UDP receive errors);
//! - the counters agree at the end: every frame the peer's kernel sent to
//!   shardnet's interface was received by a port queue or counted as missed;
//!   every frame a queue received was processed by a worker or counted as a
//!   steering drop; every datagram the echo service took was answered;
//! - every reload applied, and the connections are all gone once the load
//!   stops.
//!
//! The run lasts `SHARDNET_SOAK_SECS` seconds: 60 by default (CI), 600 for
//! the long form (`SHARDNET_SOAK_SECS=600 cargo test --release --test soak`).
//!
//! Needs root; fails loudly when the lab cannot be set up.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{metric_sum, peer_script, scrape, wait_for, Lab, DUT_IP};
use serde_json::Value;

const METRICS: &str = "127.0.0.1:19480";

/// How much the resident set may grow after warm-up. Everything that
/// scales with the load (connection slab and map, buffer pool, timer wheel,
/// steering and kernel rings) reaches its size during warm-up; what is left
/// is the allocator's slack.
const RSS_GROWTH_BOUND: u64 = 8 << 20;

/// Slow connections held open, reopened when the server closes them.
const SLOW_CONNECTIONS: &str = "8";

fn config(lab: &Lab, generation: u32) -> String {
    // Each reload changes something real: a rule for a port the load does
    // not use flips between `drop` and `discard`.
    let extra = if generation % 2 == 0 {
        "drop"
    } else {
        "discard"
    };
    format!(
        r#"{}
[interface]
address = "{DUT_IP}/24"

[metrics]
listen = "{METRICS}"

[tcp]
max_buffers_per_worker = 512
time_wait_ms = 2000

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[[rule]]
name = "web"
protocol = "tcp"
ports = "80"
service = "http"

[[rule]]
name = "flip"
protocol = "udp"
ports = "9999"
service = "{extra}"

[default]
action = "drop"
"#,
        lab.dataplane("af_packet", 8191)
    )
}

/// (resident bytes, threads) of a process, from /proc.
fn rss_and_threads(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("shardnet is gone: {e}"));
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

/// A counter of an interface in a namespace, from sysfs.
fn if_stat(lab: &Lab, peer_side: bool, name: &str) -> u64 {
    let ifname = if peer_side { &lab.peer_if } else { &lab.dut_if };
    let path = format!("/sys/class/net/{ifname}/statistics/{name}");
    let out = if peer_side {
        lab.peer(&["cat", &path])
    } else {
        lab.dut(&["cat", &path])
    };
    assert!(out.status.success(), "no {name} on {ifname}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The peer namespace's UDP receive errors (datagrams its kernel dropped).
fn peer_udp_receive_errors(lab: &Lab) -> u64 {
    let out = lab.peer(&["cat", "/proc/net/snmp"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, _)| *n == "InErrors")
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn soak_mixed_load_with_reloads() {
    let seconds: u64 = std::env::var("SHARDNET_SOAK_SECS")
        .ok()
        .map(|v| v.parse().expect("SHARDNET_SOAK_SECS: a number of seconds"))
        .unwrap_or(60);
    assert!(seconds >= 15, "a soak shorter than 15 s proves nothing");
    let lab = Lab::new();
    let config_path = lab.path("shardnet.toml");
    let mut shardnet = lab.start_shardnet(&config(&lab, 0));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));
    let pid = shardnet.pid();
    let (_, threads_at_start) = rss_and_threads(pid);

    // Baselines, taken while nothing but the pings above has been sent.
    let before = scrape(&lab, METRICS);
    let peer_tx_before = if_stat(&lab, true, "tx_packets");
    let dut_rx_dropped_before = if_stat(&lab, false, "rx_dropped");
    let peer_udp_errors_before = peer_udp_receive_errors(&lab);

    let load = Command::new("ip")
        .args(["netns", "exec", &lab.peer_ns, "timeout"])
        .arg((seconds + 60).to_string())
        .args(["python3", &peer_script("soak_load.py"), DUT_IP])
        .arg(seconds.to_string())
        .args(["--slow", SLOW_CONNECTIONS])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the load");

    let started = Instant::now();
    let warm_up = Duration::from_secs(seconds / 3);
    let mut rss_at_warm_up = None;
    let mut rss_max_after = 0u64;
    let mut reloads = 0u32;
    let mut next_reload = Instant::now() + Duration::from_secs(3);
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        let (rss, threads) = rss_and_threads(pid);
        assert_eq!(
            threads,
            threads_at_start,
            "thread count changed after {:?}\n{}",
            started.elapsed(),
            shardnet.log_text()
        );
        if started.elapsed() >= warm_up {
            match rss_at_warm_up {
                None => rss_at_warm_up = Some(rss),
                Some(_) => rss_max_after = rss_max_after.max(rss),
            }
        }
        if Instant::now() >= next_reload {
            reloads += 1;
            std::fs::write(&config_path, config(&lab, reloads)).unwrap();
            shardnet.signal("HUP");
            next_reload = Instant::now() + Duration::from_secs(3);
        }
    }
    let out = load.wait_with_output().expect("the load");
    assert!(
        out.status.success(),
        "the load failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "load output ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    // Quiet now: the last reload applied.
    let expected_generation = f64::from(reloads + 1);
    wait_for(
        "every worker on the last rules",
        Duration::from_secs(10),
        || {
            let text = scrape(&lab, METRICS);
            metric_sum(&text, "shardnet_rules_generation", &[]) == expected_generation
        },
    );
    let after = scrape(&lab, METRICS);
    let (rss_end, threads_end) = rss_and_threads(pid);
    rss_max_after = rss_max_after.max(rss_end);
    let peer_tx = if_stat(&lab, true, "tx_packets") - peer_tx_before;
    let dut_rx_dropped = if_stat(&lab, false, "rx_dropped") - dut_rx_dropped_before;
    let peer_udp_errors = peer_udp_receive_errors(&lab) - peer_udp_errors_before;
    let delta = |name: &str, labels: &[&str]| -> u64 {
        (metric_sum(&after, name, labels) - metric_sum(&before, name, labels)) as u64
    };
    let context = format!(
        "load: {result}\nrss at warm-up {rss_at_warm_up:?}, max after {rss_max_after}, \
         threads {threads_at_start} -> {threads_end}, reloads {reloads}\n\
         peer tx {peer_tx}, dut rx_dropped {dut_rx_dropped}, peer udp errors {peer_udp_errors}\n\
         metrics at the end:\n{after}"
    );
    let get = |path: &[&str]| -> u64 {
        let mut v = &result;
        for key in path {
            v = &v[*key];
        }
        v.as_u64()
            .unwrap_or_else(|| panic!("{path:?} in the load's output\n{context}"))
    };

    // The load ran: every part of it did real work.
    assert!(get(&["http", "requests"]) > 100, "{context}");
    assert!(get(&["udp", "sent"]) > 1000, "{context}");
    assert!(get(&["slow", "opened"]) > 0, "{context}");
    assert!(reloads >= 3, "{context}");

    eprintln!(
        "soak {seconds} s: {} HTTP requests, {} of {} echoes, {} slow connections, {reloads} \
         reloads; RSS {} KiB at warm-up, at most {} KiB after; {threads_end} threads",
        get(&["http", "requests"]),
        get(&["udp", "received"]),
        get(&["udp", "sent"]),
        get(&["slow", "opened"]),
        rss_at_warm_up.unwrap_or(0) / 1024,
        rss_max_after / 1024,
    );
    // Memory flat and no thread growth.
    let rss_at_warm_up = rss_at_warm_up.expect("a sample after warm-up");
    assert!(
        rss_max_after <= rss_at_warm_up + RSS_GROWTH_BOUND,
        "resident memory grew by {} KiB after warm-up\n{context}",
        (rss_max_after - rss_at_warm_up) / 1024
    );
    assert_eq!(threads_end, threads_at_start, "{context}");

    // Every HTTP request answered; every lost echo a counted drop.
    assert_eq!(get(&["http", "errors"]), 0, "{context}");
    assert_eq!(get(&["udp", "mismatched"]), 0, "{context}");
    assert_eq!(get(&["udp", "send_errors"]), 0, "{context}");
    let lost = get(&["udp", "sent"]) - get(&["udp", "received"]);
    let counted = delta("shardnet_drops_total", &[])
        + delta("shardnet_port_rx_missed_total", &[])
        + dut_rx_dropped
        + peer_udp_errors;
    assert!(
        lost <= counted,
        "{lost} echoes lost, only {counted} drops counted\n{context}"
    );
    assert_eq!(
        delta("shardnet_udp_datagrams_total", &[r#"direction="rx""#]),
        delta("shardnet_udp_datagrams_total", &[r#"direction="tx""#]),
        "the echo service answers every datagram it takes\n{context}"
    );

    // The counters agree: what the peer sent arrived or was counted missed,
    // and what arrived was processed or counted as a steering drop.
    let port_rx = delta("shardnet_port_rx_packets_total", &[]);
    assert_eq!(
        peer_tx,
        port_rx + delta("shardnet_port_rx_missed_total", &[]) + dut_rx_dropped,
        "frames the peer sent vs frames shardnet received or missed\n{context}"
    );
    assert_eq!(
        port_rx,
        delta("shardnet_rx_packets_total", &[])
            + delta("shardnet_drops_total", &[r#"reason="steer_queue_full""#]),
        "frames received vs frames processed or counted\n{context}"
    );

    // The load is over: no connection is left, TIME-WAIT included (2 s here).
    wait_for("the connections closed", Duration::from_secs(30), || {
        let text = scrape(&lab, METRICS);
        metric_sum(&text, "shardnet_tcp_connections_active", &[]) == 0.0
    });
    shardnet.stop();
}
