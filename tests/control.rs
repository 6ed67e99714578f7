//! The control endpoint against real tools: a Prometheus server (Debian's
//! `prometheus`) scrapes a running shardnet with two workers, loads the alert
//! rules of `deploy/`, and its query API must return per-worker series that
//! agree with the traffic the test sent from a Linux peer; `promtool check
//! metrics` must pass on the live output; a worker stalled on purpose must
//! turn `/healthz` to 503 within a second and fire the stuck-worker alert;
//! reloads (HTTP and SIGHUP) must apply good rules and refuse bad ones.
//!
//! Needs root (network namespaces); fails, never skips, when it cannot set
//! up. Everything runs inside the lab's namespaces: the control endpoint and
//! Prometheus listen on the DUT namespace's own loopback.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{peer_script, wait_for, Lab, DUT_IP};
use serde_json::Value;

const METRICS: &str = "127.0.0.1:9464";
const PROMETHEUS: &str = "127.0.0.1:9090";

fn config(lab: &Lab, backend: &str, echo_service: &str) -> String {
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
service = "{echo_service}"

[[rule]]
name = "web"
protocol = "tcp"
ports = [80]
service = "http"

[default]
action = "drop"

[debug]
stall_endpoint = true
"#
    )
}

/// An HTTP request from the DUT namespace: (status, body).
fn http(lab: &Lab, method: &str, url: &str) -> (u16, String) {
    http_with(lab, &[], method, url)
}

/// The same with more curl options (`--unix-socket PATH`).
fn http_with(lab: &Lab, options: &[&str], method: &str, url: &str) -> (u16, String) {
    let mut args = vec!["curl", "-s", "--max-time", "5"];
    args.extend_from_slice(options);
    args.extend_from_slice(&["-X", method, "-w", "\n%{http_code}", url]);
    let out = lab.dut(&args);
    assert!(
        out.status.success(),
        "curl {method} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

fn control(lab: &Lab, method: &str, path: &str) -> (u16, String) {
    http(lab, method, &format!("http://{METRICS}{path}"))
}

fn control_json(lab: &Lab, method: &str, path: &str) -> (u16, Value) {
    let (status, body) = control(lab, method, path);
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body}"));
    (status, json)
}

/// A request on the admin socket (state changes are only taken there).
fn admin_json(lab: &Lab, method: &str, path: &str) -> (u16, Value) {
    let socket = lab.path("admin.sock").display().to_string();
    let (status, body) = http_with(
        lab,
        &["--unix-socket", &socket],
        method,
        &format!("http://localhost{path}"),
    );
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("admin {method} {path}: not JSON ({e}): {body}"));
    (status, json)
}

/// UDP flows from the peer; returns the datagrams sent (all must come back
/// when `echo`, none otherwise).
fn udp_flows(lab: &Lab, flows: usize, packets: usize, echo: bool) -> u64 {
    let script = peer_script("udp_flows.py");
    let flows = flows.to_string();
    let packets = packets.to_string();
    let out = lab.peer(&[
        "/usr/bin/python3",
        &script,
        "--dst",
        DUT_IP,
        "--flows",
        &flows,
        "--packets",
        &packets,
        "--max-size",
        "200",
        "--timeout",
        if echo { "10" } else { "1" },
        "--expect-echo",
        if echo { "1" } else { "0" },
    ]);
    assert!(
        out.status.success(),
        "udp_flows.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = result["sent"].as_u64().unwrap();
    let expected = if echo { sent } else { 0 };
    assert_eq!(result["received"].as_u64().unwrap(), expected, "{result}");
    assert_eq!(result["mismatched"], 0, "{result}");
    sent
}

/// A Prometheus server in the DUT namespace scraping shardnet every second,
/// with `deploy/alerts.yml` loaded. Killed on drop.
struct Prometheus {
    child: Child,
}

impl Prometheus {
    fn start(lab: &Lab) -> Prometheus {
        let alerts = format!("{}/deploy/alerts.yml", env!("CARGO_MANIFEST_DIR"));
        let config = lab.path("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [\"{alerts}\"]\n\
                 scrape_configs:\n  - job_name: shardnet\n    static_configs:\n\
                 \x20     - targets: [\"{METRICS}\"]\n"
            ),
        )
        .unwrap();
        let data = lab.path("tsdb");
        let log = std::fs::File::create(lab.path("prometheus.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.dut_ns, "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start prometheus (Debian package `prometheus`)");
        let mut prometheus = Prometheus { child };
        let start = Instant::now();
        loop {
            if let Some(status) = prometheus.child.try_wait().unwrap() {
                panic!(
                    "prometheus exited ({status}): {}",
                    std::fs::read_to_string(lab.path("prometheus.log")).unwrap_or_default()
                );
            }
            let out = lab.dut(&[
                "curl",
                "-sf",
                "--max-time",
                "1",
                &format!("http://{PROMETHEUS}/-/ready"),
            ]);
            if out.status.success() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus not ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// An instant query: the result vector.
    fn query(&self, lab: &Lab, query: &str) -> Vec<Value> {
        let out = lab.dut(&[
            "curl",
            "-sf",
            "--max-time",
            "5",
            &format!("http://{PROMETHEUS}/api/v1/query"),
            "--data-urlencode",
            &format!("query={query}"),
        ]);
        assert!(out.status.success(), "query {query} failed");
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["status"], "success", "{json}");
        json["data"]["result"].as_array().unwrap().clone()
    }

    /// A query's single scalar value, if it has one series.
    fn value(&self, lab: &Lab, query: &str) -> Option<f64> {
        let result = self.query(lab, query);
        (result.len() == 1).then(|| sample_value(&result[0]))
    }

    fn api(&self, lab: &Lab, path: &str) -> Value {
        let out = lab.dut(&[
            "curl",
            "-sf",
            "--max-time",
            "5",
            &format!("http://{PROMETHEUS}{path}"),
        ]);
        assert!(out.status.success(), "GET {path} failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample_value(series: &Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

/// Per-worker values of an instant query, by the `worker` label.
fn per_worker(series: &[Value]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = series
        .iter()
        .map(|s| {
            (
                s["metric"]["worker"].as_str().unwrap().to_owned(),
                sample_value(s),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `promtool check metrics` on the live output: exit 0 and no lint finding.
fn promtool_check_metrics(lab: &Lab) -> String {
    let (status, body) = control(lab, "GET", "/metrics");
    assert_eq!(status, 200);
    let file = lab.path("metrics.txt");
    std::fs::write(&file, &body).unwrap();
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
    body
}

#[test]
fn prometheus_sees_per_worker_series_that_match_the_traffic() {
    let lab = Lab::new();
    let mut shardnet = lab.start_shardnet(&config(&lab, "af_packet", "echo"));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));
    wait_for("healthz 200", Duration::from_secs(5), || {
        control(&lab, "GET", "/healthz").0 == 200
    });
    let prometheus = Prometheus::start(&lab);

    // Traffic: UDP echo over 64 flows, 20 separate HTTP connections.
    let udp_sent = udp_flows(&lab, 64, 8, true);
    let out = lab.peer(&[
        "sh",
        "-c",
        &format!(
            "for i in $(seq 20); do curl -s -o /dev/null --max-time 5 -w '%{{http_code}}\\n' \
             http://{DUT_IP}/; done"
        ),
    ]);
    let codes = String::from_utf8(out.stdout).unwrap();
    assert_eq!(codes.lines().filter(|c| *c == "200").count(), 20, "{codes}");

    // Prometheus catches up within a few scrapes.
    wait_for(
        "Prometheus to see the traffic",
        Duration::from_secs(20),
        || {
            prometheus.value(
                &lab,
                "sum(shardnet_udp_datagrams_total{job=\"shardnet\",direction=\"rx\"})",
            ) == Some(udp_sent as f64)
                && prometheus.value(
                    &lab,
                    "sum(shardnet_tcp_connections_opened_total{side=\"passive\"})",
                ) == Some(20.0)
        },
    );
    let udp_rx =
        per_worker(&prometheus.query(&lab, "shardnet_udp_datagrams_total{direction=\"rx\"}"));
    let udp_tx =
        per_worker(&prometheus.query(&lab, "shardnet_udp_datagrams_total{direction=\"tx\"}"));
    assert_eq!(udp_rx.len(), 2, "{udp_rx:?}");
    assert_eq!((udp_rx[0].0.as_str(), udp_rx[1].0.as_str()), ("0", "1"));
    assert!(
        udp_rx.iter().all(|(_, v)| *v > 0.0),
        "both workers carry load: {udp_rx:?}"
    );
    assert_eq!(
        udp_rx, udp_tx,
        "every datagram was echoed by the worker that got it"
    );
    let opened = per_worker(&prometheus.query(
        &lab,
        "shardnet_tcp_connections_opened_total{side=\"passive\"}",
    ));
    assert_eq!(opened.len(), 2, "{opened:?}");
    assert_eq!(opened.iter().map(|(_, v)| v).sum::<f64>(), 20.0);
    let rx = per_worker(&prometheus.query(&lab, "shardnet_rx_packets_total"));
    for ((worker, packets), (_, datagrams)) in rx.iter().zip(&udp_rx) {
        assert!(
            packets >= datagrams,
            "worker {worker}: {packets} < {datagrams}"
        );
    }
    assert_eq!(
        prometheus.value(&lab, "shardnet_rule_hits_total{rule=\"echo\"}"),
        Some(udp_sent as f64)
    );
    // curl closed first: no connection is left on our side (no TIME-WAIT).
    wait_for("no active connection", Duration::from_secs(5), || {
        prometheus.value(&lab, "sum(shardnet_tcp_connections_active)") == Some(0.0)
    });
    assert_eq!(
        prometheus.value(&lab, "count(shardnet_worker_up == 1)"),
        Some(2.0)
    );

    // The live output is clean for promtool, and Prometheus evaluates every
    // alert rule of deploy/ against it without an error.
    let live = promtool_check_metrics(&lab);
    assert!(live.contains("# TYPE shardnet_tcp_rtt_seconds histogram"));
    wait_for(
        "the alert rules to be evaluated",
        Duration::from_secs(10),
        || {
            let rules = prometheus.api(&lab, "/api/v1/rules");
            let all: Vec<&Value> = rules["data"]["groups"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["rules"].as_array().unwrap())
                .collect();
            assert!(all.len() >= 5, "{rules}");
            for rule in &all {
                assert_ne!(rule["health"], "err", "{rule}");
            }
            all.iter().all(|r| r["health"] == "ok")
        },
    );

    // A stuck worker: /healthz says so within a second and names it; the
    // metric and the alert follow.
    let (status, refused) = control_json(&lab, "POST", "/debug/stall?worker=1&ms=5000");
    assert_eq!(status, 403, "not on the TCP listener: {refused}");
    let (status, _) = admin_json(&lab, "POST", "/debug/stall?worker=1&ms=5000");
    assert_eq!(status, 200);
    let stalled = Instant::now();
    let mut body = Value::Null;
    wait_for("healthz 503", Duration::from_secs(1), || {
        let (status, json) = control_json(&lab, "GET", "/healthz");
        body = json;
        status == 503
    });
    assert!(stalled.elapsed() < Duration::from_secs(1));
    assert_eq!(body["stuck_workers"], serde_json::json!([1]), "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("worker 1"),
        "{body}"
    );
    wait_for("worker_up 0 in Prometheus", Duration::from_secs(4), || {
        prometheus.value(&lab, "shardnet_worker_up{worker=\"1\"}") == Some(0.0)
    });
    wait_for(
        "ShardnetWorkerStuck pending",
        Duration::from_secs(4),
        || {
            let alerts = prometheus.api(&lab, "/api/v1/alerts");
            alerts["data"]["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| {
                    a["labels"]["alertname"] == "ShardnetWorkerStuck"
                        && a["labels"]["worker"] == "1"
                })
        },
    );
    assert_eq!(
        prometheus.value(&lab, "shardnet_worker_up{worker=\"0\"}"),
        Some(1.0),
        "the other worker went on"
    );
    wait_for("healthz 200 again", Duration::from_secs(8), || {
        control(&lab, "GET", "/healthz").0 == 200
    });

    // Reload over HTTP: port 7 moves from echo to discard.
    let config_path = lab.path("shardnet.toml");
    std::fs::write(&config_path, config(&lab, "af_packet", "discard")).unwrap();
    let (status, refused) = control_json(&lab, "POST", "/reload");
    assert_eq!(status, 403, "{refused}");
    let socket = lab.path("admin.sock").display().to_string();
    assert!(
        refused["error"].as_str().unwrap().contains(&socket),
        "the answer names the admin socket: {refused}"
    );
    let (status, done) = admin_json(&lab, "POST", "/reload");
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["generation"], 2, "{done}");
    assert_eq!(done["pending_workers"], serde_json::json!([]), "{done}");
    let (_, rules) = control_json(&lab, "GET", "/rules");
    assert_eq!(rules["rules"][0]["service"], "discard", "{rules}");
    let discarded = udp_flows(&lab, 16, 2, false);
    // A bad file is refused with its place, and changes nothing.
    std::fs::write(
        &config_path,
        config(&lab, "af_packet", "echo").replace("ports = [80]", "ports = [80"),
    )
    .unwrap();
    let (status, refused) = admin_json(&lab, "POST", "/reload");
    assert_eq!(status, 400, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("shardnet.toml:"), "{error}");
    let (_, rules) = control_json(&lab, "GET", "/rules");
    assert_eq!(rules["generation"], 2, "{rules}");
    assert_eq!(rules["rules"][0]["service"], "discard");
    // SIGHUP brings echo back.
    std::fs::write(&config_path, config(&lab, "af_packet", "echo")).unwrap();
    shardnet.signal("HUP");
    wait_for("the SIGHUP reload", Duration::from_secs(5), || {
        control_json(&lab, "GET", "/rules").1["generation"] == 3
    });
    let echoed = udp_flows(&lab, 16, 2, true);
    // The hits followed the rule name across the reloads.
    let (_, rules) = control_json(&lab, "GET", "/rules");
    assert_eq!(
        rules["rules"][0]["hits"].as_u64().unwrap(),
        udp_sent + discarded + echoed,
        "{rules}"
    );
    let live = promtool_check_metrics(&lab);
    for line in [
        "shardnet_rules_reloads_total{result=\"ok\"} 2\n",
        "shardnet_rules_reloads_total{result=\"error\"} 1\n",
        "shardnet_rules_generation 3\n",
    ] {
        assert!(live.contains(line), "no {line:?} in\n{live}");
    }

    // The endpoint's own errors.
    assert_eq!(control(&lab, "GET", "/nope").0, 404);
    assert_eq!(control(&lab, "GET", "/reload").0, 405);
    assert_eq!(control(&lab, "POST", "/metrics").0, 405);

    drop(prometheus);
    let log = shardnet.stop();
    assert!(log.contains("worker 1 has not polled"), "{log}");
    assert!(log.contains("rules reloaded on SIGHUP"), "{log}");
    assert!(
        !lab.path("admin.sock").exists(),
        "the admin socket is removed at stop"
    );
}

#[test]
fn dpdk_port_and_pool_metrics_are_served_and_lint_clean() {
    let lab = Lab::new();
    let mut shardnet = lab.start_shardnet(&config(&lab, "dpdk", "echo"));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(30));
    let sent = udp_flows(&lab, 64, 4, true);
    let live = promtool_check_metrics(&lab);
    // Every name the deploy/ kit uses is in the live output.
    let file = lab.path("metrics.txt");
    let out = Command::new("/usr/bin/python3")
        .arg(format!(
            "{}/deploy/check_names.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy/ uses names /metrics lacks:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |prefix: &str| -> f64 {
        live.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{live}"))
            .trim()
            .parse()
            .unwrap()
    };
    let rx: f64 = ["0", "1"]
        .iter()
        .map(|w| {
            value(&format!(
                "shardnet_udp_datagrams_total{{worker=\"{w}\",direction=\"rx\"}} "
            ))
        })
        .sum();
    assert_eq!(rx, sent as f64);
    for w in ["0", "1"] {
        // net_af_packet fills no RX ring ahead: idle, its pool may be all free.
        assert!(value(&format!("shardnet_mempool_in_use{{worker=\"{w}\"}} ")) <= 4095.0);
        assert_eq!(
            value(&format!("shardnet_mempool_capacity{{worker=\"{w}\"}} ")),
            4095.0
        );
        assert!(
            value(&format!(
                "shardnet_port_queue_packets_total{{queue=\"{w}\",direction=\"rx\"}} "
            )) > 0.0
        );
    }
    assert!(value("shardnet_port_rx_packets_total ") >= sent as f64);
    assert!(
        live.contains("shardnet_port_xstat{name=\"rx_good_packets\"}"),
        "{live}"
    );
    assert!(live.contains("shardnet_build_info{version=\"") && live.contains("backend=\"dpdk\""));
    let (status, health) = control_json(&lab, "GET", "/healthz");
    assert_eq!(status, 200, "{health}");
    shardnet.stop();
}

#[test]
fn a_taken_listen_address_fails_the_start_with_one_sentence() {
    let lab = Lab::new();
    // Something else holds the control endpoint's address in the namespace.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &lab.dut_ns, "/usr/bin/python3", "-c"])
        .arg(
            "import socket, time\n\
             s = socket.socket(); s.bind(('127.0.0.1', 9464)); s.listen()\n\
             print('listening', flush=True); time.sleep(60)",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "listening");
    let path = lab.path("shardnet.toml");
    std::fs::write(&path, config(&lab, "af_packet", "echo")).unwrap();
    let out = lab.run_shardnet(&path);
    let _ = holder.kill();
    let _ = holder.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("shardnet: cannot listen on 127.0.0.1:9464 for the control endpoint"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
