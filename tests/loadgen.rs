//! `shardnet-load` at a fixed rate, against the Linux kernel: keep-alive
//! HTTP requests (`--mode rps --rate`) and a bulk transfer (`--mode bulk
//! --rate`), paced through the app's wakes (`AppIo::wake`), from a
//! two-worker shardnet on AF_PACKET on one end of a veth pair to a kernel
//! TCP server on the other (`tests/peers/counting_server.py`), which counts
//! the requests it answered and the bytes it took.
//!
//! Checked: the load generator keeps its rate (within a few percent, and
//! not above it: closed loop, the same connections run several times
//! faster), with no error or reset, and its counts agree with the server's.
//!
//! And Redis requests (`--proto redis-get|redis-set`, with and without
//! `--pipeline`) against a redis-server on the kernel: every reply counted,
//! the keys within `--keyspace`, the values `--size` bytes, and error
//! replies counted apart from completed requests.
//!
//! Needs root (and redis-server, redis-cli); fails loudly when the lab
//! cannot be set up.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use common::{peer_script, run_load, Lab, DUT_IP};
use serde_json::Value;

/// The load generator's address (the peer kernel holds 198.18.0.1 and
/// ignores this one).
const CLIENT_IP: &str = "198.18.0.3";
const HTTP_PORT: u16 = 8080;
const DISCARD_PORT: u16 = 9009;

/// The kernel server in the DUT namespace, which owns `DUT_IP` there.
struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(lab: &Lab) -> Server {
        let out = lab.dut(&[
            "ip",
            "addr",
            "add",
            &format!("{DUT_IP}/24"),
            "dev",
            &lab.dut_if,
        ]);
        assert!(out.status.success(), "{out:?}");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.dut_ns, "python3"])
            .arg(peer_script("counting_server.py"))
            .args([DUT_IP, &HTTP_PORT.to_string(), &DISCARD_PORT.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the kernel server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "listening", "the kernel server did not start");
        Server { child, stdout }
    }

    /// Stop it; what it counted.
    fn stop(mut self) -> Value {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(self.child.wait().unwrap().success());
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `shardnet-load` with `args` in the peer namespace; its JSON results.
fn load(lab: &Lab, name: &str, args: &[&str]) -> Value {
    let config = format!(
        "{}\n[interface]\naddress = \"{CLIENT_IP}/24\"\n\n[default]\naction = \"drop\"\n",
        lab.peer_dataplane("af_packet", 8191)
    );
    run_load(lab, name, &config, args)
}

fn get(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

fn assert_clean(results: &Value) {
    for key in ["errors", "resets", "timeouts"] {
        assert_eq!(get(results, key), 0.0, "{key}: {results}");
    }
}

#[test]
fn af_packet_fixed_rates_against_the_kernel() {
    let lab = Lab::new();
    let server = Server::start(&lab);
    let target_http = format!("{DUT_IP}:{HTTP_PORT}");
    let target_discard = format!("{DUT_IP}:{DISCARD_PORT}");

    // Closed loop first: how fast these connections go unpaced.
    let free = load(
        &lab,
        "free",
        &[
            "--mode",
            "rps",
            "--target",
            &target_http,
            "--connections",
            "16",
            "--duration",
            "2",
        ],
    );
    assert_clean(&free);

    // Then 2000 requests/s over the same 16 connections.
    const RATE: f64 = 2000.0;
    let paced = load(
        &lab,
        "paced",
        &[
            "--mode",
            "rps",
            "--target",
            &target_http,
            "--connections",
            "16",
            "--duration",
            "3",
            "--rate",
            "2000",
        ],
    );
    assert_clean(&paced);
    let per_second = get(&paced, "per_second");
    assert!(
        per_second > RATE * 0.95 && per_second < RATE * 1.02,
        "{per_second} requests/s at a rate of {RATE}: {paced}"
    );
    let free_per_second = get(&free, "per_second");
    assert!(
        free_per_second > 1.25 * RATE,
        "the rate must be below what the connections do unpaced ({free_per_second}/s) \
         for the check to mean anything"
    );

    // 200 Mbit/s of payload over 2 connections.
    const BITS: f64 = 200e6;
    let bulk = load(
        &lab,
        "bulk",
        &[
            "--mode",
            "bulk",
            "--target",
            &target_discard,
            "--connections",
            "2",
            "--duration",
            "3",
            "--rate",
            "200000000",
        ],
    );
    assert_clean(&bulk);
    let gbit = get(&bulk, "gbit_per_second");
    assert!(
        gbit * 1e9 > BITS * 0.95 && gbit * 1e9 < BITS * 1.02,
        "{gbit} Gbit/s at a rate of {BITS} bit/s: {bulk}"
    );

    // The server's counts agree: every request it answered was sent, and
    // every one answered was received but those in flight at the stop (a
    // stop resets its connections); the bytes it took were sent, short of
    // what was still in flight at the stop.
    let counted = server.stop();
    let answered = get(&counted, "requests");
    let sent = get(&free, "sent") + get(&paced, "sent");
    let completed = get(&free, "completed") + get(&paced, "completed");
    assert!(
        completed <= answered && answered <= sent,
        "client sent {sent} requests and got {completed} responses; the server answered \
         {answered}"
    );
    let (taken, handed) = (get(&counted, "bytes"), get(&bulk, "bytes_tx"));
    assert!(
        taken <= handed && taken > handed * 0.97,
        "the server took {taken} bytes of the {handed} sent"
    );
}

/// A redis-server on the DUT namespace's kernel, killed on drop.
struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const REDIS_PORT: &str = "6379";

fn redis_cli(lab: &Lab, args: &[&str]) -> String {
    let mut cmd = vec!["redis-cli", "-h", DUT_IP, "-p", REDIS_PORT];
    cmd.extend_from_slice(args);
    let out = lab.peer(&cmd);
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn af_packet_redis_requests_against_redis_server() {
    let lab = Lab::with_prefix("snrl");
    let out = lab.dut(&[
        "ip",
        "addr",
        "add",
        &format!("{DUT_IP}/24"),
        "dev",
        &lab.dut_if,
    ]);
    assert!(out.status.success(), "{out:?}");
    let _redis = Redis(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.dut_ns,
                "redis-server",
                "--bind",
                DUT_IP,
            ])
            .args(["--port", REDIS_PORT, "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-deps.sh installs it)"),
    );
    common::wait_for(
        "redis-server answering",
        std::time::Duration::from_secs(20),
        || {
            let out = lab.peer(&["redis-cli", "-h", DUT_IP, "-p", REDIS_PORT, "PING"]);
            out.stdout.starts_with(b"PONG")
        },
    );
    let target = format!("{DUT_IP}:{REDIS_PORT}");
    let run = |name: &str, proto: &str, pipeline: &str| {
        load(
            &lab,
            name,
            &[
                "--mode",
                "rps",
                "--target",
                &target,
                "--connections",
                "8",
                "--duration",
                "1",
                "--min-completed",
                "2000",
                "--proto",
                proto,
                "--pipeline",
                pipeline,
                "--keyspace",
                "1000",
                "--size",
                "8",
            ],
        )
    };
    for (name, proto, pipeline) in [
        ("set1", "redis-set", 1.0),
        ("get1", "redis-get", 1.0),
        ("set16", "redis-set", 16.0),
        ("get16", "redis-get", 16.0),
    ] {
        let r = run(name, proto, &pipeline.to_string());
        assert_clean(&r);
        assert_eq!(get(&r, "error_replies"), 0.0, "{name}: {r}");
        assert_eq!(get(&r, "pipeline"), pipeline, "{name}: {r}");
        let (sent, completed) = (get(&r, "sent"), get(&r, "completed"));
        assert!(completed >= 2000.0, "{name}: {r}");
        // Only what was in flight when the load stopped went unanswered.
        assert!(
            sent >= completed && sent - completed <= 8.0 * pipeline,
            "{name}: {r}"
        );
        assert_eq!(get(&r["latency_us"], "count"), completed, "{name}: {r}");
    }
    // The keys are key:000000 .. key:000999, the values 8 bytes.
    let keys: u64 = redis_cli(&lab, &["DBSIZE"]).parse().unwrap();
    assert!((1..=1000).contains(&keys), "{keys} keys");
    for _ in 0..10 {
        let key = redis_cli(&lab, &["RANDOMKEY"]);
        let digits = key
            .strip_prefix("key:")
            .unwrap_or_else(|| panic!("{key:?}"));
        assert!(
            digits.len() == 6 && digits.parse::<u64>().unwrap() < 1000,
            "{key:?}"
        );
        assert_eq!(redis_cli(&lab, &["GET", &key]), "abcdefgh");
    }
    // Every command refused: error replies, counted, none completed.
    assert_eq!(
        redis_cli(&lab, &["CONFIG", "SET", "requirepass", "secret"]),
        "OK"
    );
    let refused = load(
        &lab,
        "refused",
        &[
            "--mode",
            "rps",
            "--target",
            &target,
            "--connections",
            "4",
            "--duration",
            "1",
            "--proto",
            "redis-get",
            "--pipeline",
            "4",
        ],
    );
    assert_clean(&refused);
    assert_eq!(get(&refused, "completed"), 0.0, "{refused}");
    assert!(get(&refused, "error_replies") >= 100.0, "{refused}");
    let last = refused["last_errors"].to_string();
    assert!(last.contains("NOAUTH"), "{refused}");
}
