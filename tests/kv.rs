//! `examples/kv` (a Redis-protocol key-value server on the async layer)
//! against redis-cli and the Python `redis` package in a namespace, over
//! AF_PACKET and DPDK, with two workers, the keyspace sharded over them
//! (`shardnet::smp`): the commands, their redis-server 7 errors, expiry,
//! pipelining, binary and large values, multi-key commands and DBSIZE over
//! keys of both shards, and a malformed request answered
//! `-ERR Protocol error: ...` then closed; 64 connections (so on both
//! workers) each writing keys of both shards and reading every other
//! connection's; the smp counters (parts sent to the other worker, every
//! full ring answered with a busy error); and the redis-cli cases'
//! expected answers against a real redis-server. Needs root, redis-tools,
//! redis-server and python3-redis (`scripts/install-deps.sh`).
//!
//! The example's protocol, store and command modules are compiled here too,
//! so that their unit tests run with `cargo test` (an example's own tests
//! run only with `cargo test --example kv`).

mod common;

#[allow(dead_code)]
#[path = "../examples/kv/command.rs"]
mod command;
#[allow(dead_code)]
#[path = "../examples/kv/resp.rs"]
mod resp;
#[allow(dead_code)]
#[path = "../examples/kv/store.rs"]
mod store;

use std::time::Duration;

use common::{assert_client_ok, example, metric_sum, scrape, smp_messages, Lab, DUT_IP};

const PORT: &str = "6379";

/// Where the program serves `/metrics` (in the DUT's namespace).
const METRICS: &str = "127.0.0.1:9467";

/// A two-worker config (`Lab::dataplane`: workers 0 and 1, and two queue
/// pairs for DPDK) with the kv rule and a metrics listener.
fn config(lab: &Lab, backend: &str) -> String {
    let two = lab.dataplane(backend, 4096);
    assert!(two.contains("workers = [0, 1]"), "not two workers: {two}");
    format!(
        "{two}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n\
         [[rule]]\nname = \"kv\"\nprotocol = \"tcp\"\nports = [{PORT}]\nservice = \"kv\"\n"
    )
}

/// The shards of 2 that `keys` fall on.
fn shards_of<'a>(keys: impl IntoIterator<Item = &'a str>) -> std::collections::BTreeSet<usize> {
    keys.into_iter()
        .map(|k| store::shard_of(k.as_bytes(), 2))
        .collect()
}

/// `redis-cli` command lines and their exact output (redis-cli prints
/// errors as `ERR ...` and nil as an empty line when not on a terminal);
/// `a|b` accepts either (a TTL read a loaded second later).
const CLI_CASES: &[(&[&str], &str)] = &[
    (&["FLUSHALL"], "OK"),
    (&["PING"], "PONG"),
    (&["PING", "hello there"], "hello there"),
    (&["ECHO", "x y"], "x y"),
    (&["SET", "greeting", "hi"], "OK"),
    (&["GET", "greeting"], "hi"),
    (&["SET", "greeting", "no", "NX"], ""),
    (&["GET", "missing"], ""),
    (&["INCR", "counter"], "1"),
    (&["INCR", "counter"], "2"),
    (
        &["INCR", "greeting"],
        "ERR value is not an integer or out of range",
    ),
    (&["SET", "big", "9223372036854775807"], "OK"),
    (
        &["INCR", "big"],
        "ERR increment or decrement would overflow",
    ),
    (&["SET", "k", "v", "NX", "XX"], "ERR syntax error"),
    (
        &["SET", "k", "v", "EX", "0"],
        "ERR invalid expire time in 'set' command",
    ),
    (
        &["SET", "k", "v", "EX", "-5"],
        "ERR invalid expire time in 'set' command",
    ),
    (
        &["SET", "k", "v", "EX", "soon"],
        "ERR value is not an integer or out of range",
    ),
    (
        &["SET", "k"],
        "ERR wrong number of arguments for 'set' command",
    ),
    (&["GET"], "ERR wrong number of arguments for 'get' command"),
    (
        &["MSET", "a", "1", "b"],
        "ERR wrong number of arguments for 'mset' command",
    ),
    (&["MSET", "a", "1", "b", "2"], "OK"),
    (&["MGET", "a", "nope", "b"], "1\n\n2"),
    (&["EXISTS", "a", "a", "nope"], "2"),
    (&["SET", "t", "v", "EX", "100"], "OK"),
    (&["TTL", "t"], "100|99"),
    (&["TTL", "a"], "-1"),
    (&["TTL", "nope"], "-2"),
    (&["EXPIRE", "a", "50"], "1"),
    (&["EXPIRE", "nope", "50"], "0"),
    (&["DBSIZE"], "6"),
    (&["DEL", "a", "b", "nope"], "2"),
    (&["DBSIZE"], "4"),
    (
        &["FOO", "bar", "baz"],
        "ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' ",
    ),
    (&["FLUSHALL"], "OK"),
    (&["DBSIZE"], "0"),
];

/// The Python client: the `redis` package (commands, errors, a pipeline of
/// 2000 commands, binary and 512 KiB values, expiry), then raw sockets
/// (pipelined requests cut into small writes, inline commands, QUIT, and a
/// malformed request). Exits non-zero with what failed.
const PYTHON: &str = r#"
import socket, sys, time
import redis
dst, port = sys.argv[1], int(sys.argv[2])
bad = []
def check(what, got, want):
    if got != want:
        bad.append((what, got, want))
r = redis.Redis(host=dst, port=port, socket_timeout=10)
check("ping", r.ping(), True)
check("set", r.set("a", "1"), True)
check("get", r.get("a"), b"1")
check("set nx", r.set("a", "2", nx=True), None)
check("set xx", r.set("new", "2", xx=True), None)
check("incr", r.execute_command("INCR", "a"), 2)
r.set("s", "text")
try:
    r.execute_command("INCR", "s")
    bad.append("incr on text answered")
except redis.ResponseError as e:
    check("incr error", str(e), "value is not an integer or out of range")
try:
    r.execute_command("NOSUCH", "x")
    bad.append("unknown command answered")
except redis.ResponseError as e:
    check("unknown", str(e), "unknown command 'NOSUCH', with args beginning with: 'x' ")
binary = bytes(range(256)) * 4
check("binary set", r.set(binary[:300], binary), True)
check("binary get", r.get(binary[:300]), binary)
large = b"v" * (512 << 10)
check("large set", r.set("large", large), True)
check("large get", r.get("large"), large)
p = r.pipeline(transaction=False)
for i in range(20):
    p.get("large")
check("pipelined large gets", p.execute() == [large] * 20, True)
check("mset", r.mset({"m%d" % i: str(i) for i in range(50)}), True)
check("mget", r.mget(["m%d" % i for i in range(50)] + ["none"]), [str(i).encode() for i in range(50)] + [None])
check("exists", r.exists("m1", "m2", "none"), 2)
check("delete", r.delete("m1", "m2", "none"), 2)
p = r.pipeline(transaction=False)
for i in range(1000):
    p.set("p%d" % i, i)
    p.get("p%d" % i)
out = p.execute()
check("pipeline", out, [x for i in range(1000) for x in (True, str(i).encode())])
check("dbsize", r.dbsize(), 4 + 48 + 1000)
check("px", r.set("short", "x", px=300), True)
check("ttl", r.ttl("short") in (0, 1), True)
deadline = time.time() + 10
while r.exists("short") and time.time() < deadline:
    time.sleep(0.05)
check("expired", r.get("short"), None)
check("expire", r.expire("p1", 100), True)
check("ttl 100", r.ttl("p1") in (99, 100), True)
check("flushall", r.flushall(), True)
check("dbsize 0", r.dbsize(), 0)

def raw(chunks, pause=0.0):
    s = socket.create_connection((dst, port), timeout=10)
    for c in chunks:
        s.sendall(c)
        if pause:
            time.sleep(pause)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    return got
req = (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n" + b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" * 3
       + b"ECHO \"in line\"\r\n" + b"*1\r\n$4\r\nQUIT\r\n")
want = b"+OK\r\n" + b"$5\r\nhello\r\n" * 3 + b"$7\r\nin line\r\n+OK\r\n"
# What follows QUIT in the same read is ignored.
check("pipelined at once", raw([req + b"PING\r\n"]), want)
check("pipelined in pieces", raw([req[i:i + 7] for i in range(0, len(req), 7)], 0.01), want)
check("malformed", raw([b"PING\r\n*1\r\nGET\r\nPING\r\n"]), b"+PONG\r\n-ERR Protocol error: expected '$', got 'G'\r\n")
check("too big bulk", raw([b"*2\r\n$3\r\nGET\r\n$1048577\r\n"]), b"-ERR Protocol error: invalid bulk length\r\n")
check("unbalanced", raw([b"GET \"k\r\n"]), b"-ERR Protocol error: unbalanced quotes in request\r\n")
print("bad:", bad)
sys.exit(1 if bad else 0)
"#;

/// 64 connections from the peer (distinct source ports, so both workers
/// get some), each setting its own key `c<i>` (the keys fall on both
/// shards); then each reads every connection's key with one MGET, and
/// increments one shared counter. Every connection on one worker thus
/// reads keys set through the other worker's connections, and the other
/// way round. A busy reply (a full ring) is counted and the command sent
/// again (at most 100 times). Prints `{"busy": N, "bad": [...]}`; exits
/// non-zero if anything differed.
const CROSS: &str = r#"
import json, sys, time
import redis
dst, port = sys.argv[1], int(sys.argv[2])
n = 64
busy = 0
bad = []
def call(r, *args):
    global busy
    for _ in range(100):
        try:
            return r.execute_command(*args)
        except redis.ResponseError as e:
            if not str(e).startswith("busy"):
                raise
            busy += 1
            time.sleep(0.01)
    raise RuntimeError("busy 100 times: %r" % (args,))
conns = [redis.Redis(host=dst, port=port, socket_timeout=10) for _ in range(n)]
call(conns[0], "FLUSHALL")
for i, r in enumerate(conns):
    if call(r, "SET", "c%d" % i, "v%d" % i) is not True:
        bad.append(("set", i))
keys = ["c%d" % i for i in range(n)]
want = [b"v%d" % i for i in range(n)]
for j, r in enumerate(conns):
    got = call(r, "MGET", *keys)
    if got != want:
        bad.append(("mget on connection %d" % j, got))
counts = sorted(call(r, "INCR", "shared") for r in conns)
if counts != list(range(1, n + 1)):
    bad.append(("incr", counts))
if call(conns[0], "DBSIZE") != n + 1:
    bad.append(("dbsize", call(conns[0], "DBSIZE")))
if call(conns[-1], "DEL", "shared", *keys) != n + 1:
    bad.append("del")
if call(conns[1], "EXISTS", *keys) != 0:
    bad.append("exists after del")
for r in conns:
    r.close()
print(json.dumps({"busy": busy, "bad": [repr(b) for b in bad]}))
sys.exit(1 if bad else 0)
"#;

/// Runs [`CLI_CASES`] with redis-cli from the peer against `host:port`;
/// returns what differed.
fn cli_failures(lab: &Lab, host: &str, port: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for (args, want) in CLI_CASES {
        let mut all = vec!["redis-cli", "-h", host, "-p", port];
        all.extend_from_slice(args);
        let out = lab.peer(&all);
        let got = String::from_utf8_lossy(&out.stdout);
        let got_line = got.trim_end_matches('\n');
        if !out.status.success() || !want.split('|').any(|w| w == got_line) {
            failures.push(format!(
                "redis-cli {args:?}: got {got:?} (status {}, {}), want {want:?}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    failures
}

fn serve(backend: &str) {
    // The keys the clients use fall on both shards of 2.
    assert_eq!(shards_of(["a", "b"]).len(), 2, "CLI_CASES' MSET keys");
    let m: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let p: Vec<String> = (0..1000).map(|i| format!("p{i}")).collect();
    let c: Vec<String> = (0..64).map(|i| format!("c{i}")).collect();
    for keys in [&m, &p, &c] {
        assert_eq!(shards_of(keys.iter().map(String::as_str)).len(), 2);
    }
    assert_eq!(shards_of(["m1", "m2"]).len(), 2, "PYTHON's delete");

    let lab = Lab::with_prefix("snk");
    let mut app = lab.start_program(&example("kv"), "kv", &config(&lab, backend));
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let failures = cli_failures(&lab, DUT_IP, PORT);
    let python = lab.peer(&["/usr/bin/python3", "-c", PYTHON, DUT_IP, PORT]);
    let cross = lab.peer(&["/usr/bin/python3", "-c", CROSS, DUT_IP, PORT]);
    let metrics = scrape(&lab, METRICS);
    let log = app.stop();
    assert!(
        failures.is_empty(),
        "redis-cli:\n{}\nlog:\n{log}",
        failures.join("\n")
    );
    assert_client_ok("python", &python, &log);
    assert_client_ok("the 64 connections' client", &cross, &log);
    let report: serde_json::Value =
        serde_json::from_slice(&cross.stdout).expect("the client's JSON");
    let busy = report["busy"].as_f64().expect("a busy count");

    for worker in ["worker=\"0\"", "worker=\"1\""] {
        // Connections landed on both workers ...
        assert!(
            metric_sum(
                &metrics,
                "shardnet_tcp_connections_opened_total",
                &[worker, "side=\"passive\""]
            ) > 0.0,
            "{worker} accepted none: {metrics}"
        );
        // ... and each worker ran parts for the other's connections.
        assert!(
            metric_sum(
                &metrics,
                "shardnet_smp_messages_total",
                &[worker, "direction=\"received\""]
            ) > 0.0,
            "{worker} ran no part for the other: {metrics}"
        );
    }
    let (sent, received, full) = smp_messages(&metrics);
    assert!(sent > 0.0, "{metrics}");
    // Every part sent ran on its owner; every full ring was answered with
    // a busy error (the redis-cli and PYTHON clients, which do not retry,
    // would have failed on one; with two workers a command has at most one
    // part for the other worker, so one full ring is one busy reply).
    assert_eq!(sent, received, "{metrics}");
    assert_eq!(full, busy, "full rings against busy replies: {metrics}");
}

#[test]
fn kv_answers_redis_cli_and_python_redis_over_af_packet() {
    serve("af_packet");
}

#[test]
fn kv_answers_redis_cli_and_python_redis_over_dpdk() {
    serve("dpdk");
}

/// A process started by a test, killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The expected outputs of [`CLI_CASES`] are redis-server's own: a real
/// redis-server (on the peer's kernel) gives the same answers.
#[test]
fn the_cli_cases_are_what_redis_server_answers() {
    let lab = Lab::with_prefix("snk");
    let port = "6380";
    let _server = Killed(
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.peer_ns,
                "redis-server",
                "--bind",
                "127.0.0.1",
            ])
            .args(["--port", port, "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-deps.sh installs it)"),
    );
    common::wait_for("redis-server answering", Duration::from_secs(20), || {
        let out = lab.peer(&["redis-cli", "-h", "127.0.0.1", "-p", port, "PING"]);
        out.stdout.starts_with(b"PONG")
    });
    let failures = cli_failures(&lab, "127.0.0.1", port);
    assert!(
        failures.is_empty(),
        "redis-server:\n{}",
        failures.join("\n")
    );
}
