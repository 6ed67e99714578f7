//! Link state and `shardnet status` against real peers: on AF_PACKET the
//! link metric and `/healthz` follow the veth peer going down and up
//! (`ip link set`); on DPDK (`net_af_packet` vdev, `--no-pci`) the link
//! metric is there; `shardnet status` prints its table once (`--once`, a
//! plain pipe) and refreshes it in a terminal (tmux).
//!
//! Needs root (network namespaces); fails, never skips, when it cannot set
//! up. The control endpoint listens on the DUT namespace's own loopback.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{metric_sum, scrape, wait_for, Lab, DUT_IP};

const METRICS: &str = "127.0.0.1:9464";

/// Namespace and interface prefix of this file's labs.
const PREFIX: &str = "lnk";

fn config(lab: &Lab, backend: &str) -> String {
    let dataplane = lab.dataplane(backend, 4095);
    let admin = lab.path("admin.sock").display().to_string();
    format!(
        r#"{dataplane}
[interface]
address = "{DUT_IP}/24"
mac = "auto"

[metrics]
listen = "{METRICS}"
admin_socket = "{admin}"

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[default]
action = "drop"
"#
    )
}

/// `GET /healthz` from the DUT namespace: (status, JSON body).
fn healthz(lab: &Lab) -> (u16, serde_json::Value) {
    let out = lab.dut(&[
        "curl",
        "-s",
        "--max-time",
        "5",
        "-w",
        "\n%{http_code}",
        &format!("http://{METRICS}/healthz"),
    ]);
    assert!(out.status.success(), "curl /healthz failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (code.parse().unwrap(), json)
}

fn link_up(lab: &Lab, port: &str) -> Option<f64> {
    let text = scrape(lab, METRICS);
    let label = format!("port=\"{port}\"");
    text.lines()
        .any(|l| l.starts_with("shardnet_link_up{"))
        .then(|| metric_sum(&text, "shardnet_link_up", &[&label]))
}

/// `shardnet status ARGS` in the DUT namespace, at most 30 s.
fn status(lab: &Lab, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &lab.dut_ns, "timeout", "30"])
        .arg(env!("CARGO_BIN_EXE_shardnet"))
        .arg("status")
        .args(args)
        .output()
        .expect("cannot run shardnet status")
}

fn promtool_check(lab: &Lab) {
    let file = lab.path("metrics.txt");
    std::fs::write(&file, scrape(lab, METRICS)).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .expect("cannot run promtool (Debian package `prometheus`)");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn af_packet_link_follows_the_peer_and_status_prints_a_table() {
    let lab = Lab::with_prefix(PREFIX);
    let mut shardnet = lab.start_shardnet(&config(&lab, "af_packet"));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));
    let port = lab.dut_if.as_str();
    wait_for("shardnet_link_up 1", Duration::from_secs(10), || {
        link_up(&lab, port) == Some(1.0)
    });
    // A veth says 10 Gbit/s full duplex.
    let text = scrape(&lab, METRICS);
    let speed = metric_sum(
        &text,
        "shardnet_link_speed_bytes_per_second",
        &[&format!("port=\"{port}\"")],
    );
    assert_eq!(speed, 1.25e9, "{text}");
    promtool_check(&lab);
    assert!(
        shardnet
            .log_text()
            .contains("link up 10 Gbit/s full-duplex"),
        "{}",
        shardnet.log_text()
    );
    let (code, health) = healthz(&lab);
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["link"]["up"], true);

    // `--once` on a pipe: plain lines, one row per worker, and the link.
    // Pings for (at least) 10 s meanwhile: the table's rx rate is not 0.
    let mut ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.peer_ns,
            "ping",
            "-q",
            "-c",
            "200",
            "-i",
            "0.05",
            DUT_IP,
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cannot run ping");
    let out = status(&lab, &["--control", METRICS, "--once"]);
    let _ = ping.kill();
    let _ = ping.wait();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !table.contains('\x1b'),
        "no escape codes on a pipe: {table:?}"
    );
    assert!(
        table.contains(&format!("port {port}: link up 10 Gbit/s")),
        "{table}"
    );
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let all = rows
        .iter()
        .find(|r| r.first() == Some(&"all"))
        .unwrap_or_else(|| panic!("no totals row:\n{table}"));
    let rx_pps: f64 = all[1].parse().unwrap();
    assert!(rx_pps > 0.0, "pings were received meanwhile:\n{table}");
    for worker in ["0", "1"] {
        assert!(
            rows.iter()
                .any(|r| r.len() == 7 && r[0] == worker && r[1] == "polling"),
            "worker {worker} row missing:\n{table}"
        );
    }
    // The admin Unix socket answers the same.
    let admin = lab.path("admin.sock").display().to_string();
    let out = status(&lab, &["--control", &admin, "--once", "--interval", "0.2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An address nobody answers on: one sentence, exit 1.
    let out = status(&lab, &["--control", "127.0.0.1:9", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8_lossy(&out.stderr);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.starts_with("shardnet: shardnet's control endpoint 127.0.0.1:9 does not answer: "),
        "{error}"
    );

    // The peer goes down: the DUT's veth loses its carrier.
    let down = Command::new("ip")
        .args(["-n", &lab.peer_ns, "link", "set", &lab.peer_if, "down"])
        .status()
        .unwrap();
    assert!(down.success());
    wait_for("shardnet_link_up 0", Duration::from_secs(10), || {
        link_up(&lab, port) == Some(0.0)
    });
    wait_for("healthz 503", Duration::from_secs(5), || {
        healthz(&lab).0 == 503
    });
    let (_, health) = healthz(&lab);
    assert_eq!(health["status"], "link_down", "{health}");
    assert_eq!(
        health["error"],
        format!("link down on port {port}"),
        "{health}"
    );
    assert_eq!(health["workers"].as_array().unwrap().len(), 2, "{health}");
    assert!(
        !scrape(&lab, METRICS).contains("shardnet_link_speed_bytes_per_second{"),
        "no speed while down"
    );

    let up = Command::new("ip")
        .args(["-n", &lab.peer_ns, "link", "set", &lab.peer_if, "up"])
        .status()
        .unwrap();
    assert!(up.success());
    wait_for("shardnet_link_up 1 again", Duration::from_secs(10), || {
        link_up(&lab, port) == Some(1.0)
    });
    wait_for("healthz 200 again", Duration::from_secs(5), || {
        healthz(&lab).0 == 200
    });
    let log = shardnet.stop();
    let down_at = log.find("link down").expect("link down logged");
    assert!(
        log[down_at..].contains("link up 10 Gbit/s full-duplex"),
        "link up logged after link down:\n{log}"
    );
}

#[test]
fn dpdk_link_metric_is_there() {
    let lab = Lab::with_prefix(PREFIX);
    let mut shardnet = lab.start_shardnet(&config(&lab, "dpdk"));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(30));
    // The DPDK port's label is its number.
    wait_for("shardnet_link_up 1", Duration::from_secs(10), || {
        link_up(&lab, "0") == Some(1.0)
    });
    promtool_check(&lab);
    // net_af_packet reports its link up whatever the kernel interface does
    // (its link_update does not read the carrier), so a peer going down
    // leaves the metric at 1. Pinned here: if a DPDK release changes it,
    // this test says so and the README's note must change.
    let down = Command::new("ip")
        .args(["-n", &lab.peer_ns, "link", "set", &lab.peer_if, "down"])
        .status()
        .unwrap();
    assert!(down.success());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(link_up(&lab, "0"), Some(1.0));
    assert_eq!(healthz(&lab).0, 200);
    let log = shardnet.stop();
    assert!(log.contains("link up"), "{log}");
}

/// Kills the tmux session on drop.
struct Tmux(String);

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn status_refreshes_in_a_terminal() {
    let lab = Lab::with_prefix(PREFIX);
    let mut shardnet = lab.start_shardnet(&config(&lab, "af_packet"));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));
    wait_for("shardnet_link_up 1", Duration::from_secs(10), || {
        link_up(&lab, &lab.dut_if) == Some(1.0)
    });
    let session = Tmux(format!("{}-status", lab.dut_ns));
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "-s",
            &session.0,
        ])
        .status()
        .expect("cannot run tmux (Debian package `tmux`)");
    assert!(started.success(), "tmux new-session failed");
    let command = format!(
        "ip netns exec {} {} status --control {METRICS}",
        lab.dut_ns,
        env!("CARGO_BIN_EXE_shardnet")
    );
    let sent = Command::new("tmux")
        .args(["send-keys", "-t", &session.0, &command, "Enter"])
        .status()
        .unwrap();
    assert!(sent.success());
    let pane = || {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let has_rows = |text: &str| {
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        ["0", "1"].iter().all(|w| {
            rows.iter()
                .any(|r| r.len() == 7 && r[0] == *w && r[1] == "polling")
        })
    };
    wait_for("worker rows in the pane", Duration::from_secs(15), || {
        has_rows(&pane())
    });
    let first = pane();
    assert!(first.contains("shardnet status 127.0.0.1:9464"), "{first}");
    // The screen is cleared each second: the header stays once, not scrolled.
    std::thread::sleep(Duration::from_secs(3));
    let later = pane();
    assert_eq!(
        later.matches("shardnet status 127.0.0.1:9464").count(),
        1,
        "{later}"
    );
    assert!(has_rows(&later), "{later}");
    drop(session);
    shardnet.stop();
}
