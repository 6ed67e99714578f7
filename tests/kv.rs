//! `examples/kv` (a Redis-protocol key-value server on the async layer)
//! against redis-cli and the Python `redis` package in a namespace, over
//! AF_PACKET and DPDK, with one worker (until cross-core messages exist,
//! each worker holds its own keyspace): the commands, their redis-server 7
//! errors, expiry, pipelining, binary and large values, and a malformed
//! request answered `-ERR Protocol error: ...` then closed; and the
//! redis-cli cases' expected answers against a real redis-server. Needs
//! root, redis-tools, redis-server and python3-redis
//! (`scripts/install-deps.sh`).
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

use common::{assert_client_ok, example, Lab, DUT_IP};

const PORT: &str = "6379";

/// A one-worker config: `Lab::dataplane` gives two workers (and DPDK two
/// queue pairs); this takes the second core only.
fn config(lab: &Lab, backend: &str) -> String {
    let two = lab.dataplane(backend, 4096);
    let one = two
        .replace("workers = [0, 1]", "workers = [1]")
        .replace("qpairs=2", "qpairs=1");
    assert!(one.contains("workers = [1]"), "no workers line in {two}");
    assert!(backend != "dpdk" || one.contains("qpairs=1"), "{two}");
    format!(
        "{one}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n\
         [[rule]]\nname = \"kv\"\nprotocol = \"tcp\"\nports = [{PORT}]\nservice = \"kv\"\n"
    )
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
    let lab = Lab::with_prefix("snk");
    let mut app = lab.start_program(&example("kv"), "kv", &config(&lab, backend));
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let failures = cli_failures(&lab, DUT_IP, PORT);
    let out = lab.peer(&["/usr/bin/python3", "-c", PYTHON, DUT_IP, PORT]);
    let log = app.stop();
    assert!(
        failures.is_empty(),
        "redis-cli:\n{}\nlog:\n{log}",
        failures.join("\n")
    );
    assert_client_ok("python", &out, &log);
}

#[test]
fn kv_answers_redis_cli_and_python_redis_over_af_packet() {
    serve("af_packet");
}

#[test]
fn kv_answers_redis_cli_and_python_redis_over_dpdk() {
    serve("dpdk");
}

#[test]
fn kv_refuses_more_than_one_worker_until_its_keyspace_is_sharded() {
    let lab = Lab::with_prefix("snk");
    let text = format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n\
         [[rule]]\nname = \"kv\"\nprotocol = \"tcp\"\nports = [{PORT}]\nservice = \"kv\"\n",
        lab.dataplane("af_packet", 4096)
    );
    let path = lab.path("two.toml");
    std::fs::write(&path, text).unwrap();
    let out = lab.run_program(&example("kv"), &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {stderr}");
    assert!(stderr.contains("kv: 2 workers configured"), "{stderr}");
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
