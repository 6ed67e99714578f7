//! A program's own services, registered with `shardnet::Runtime`
//! (`examples/user_services.rs`, `examples/axum_app.rs`,
//! `examples/async_udp.rs`), served in a namespace to Linux peers over
//! AF_PACKET and DPDK with two workers: a TCP and a UDP service on the
//! callback layer; axum on the async layer; an async task that panics,
//! resetting its own connection only; an async UDP service (`UdpSocket` on
//! each worker's executor), every datagram answered or counted; and a rule
//! naming an unregistered service, refused at start with its position.
//! Needs root.

mod common;

use std::time::Duration;

use common::{assert_client_ok, example, metric_sum, scrape, Lab, DUT_IP};

/// The peer's client: 64 TCP connections (distinct source ports, so both
/// workers serve some), each sending 3 chunks and half-closing, expecting
/// them upper-cased and a FIN; then 32 UDP sockets x 8 datagrams expecting
/// them reversed (each retried up to 5 times: a 2-core machine may drop
/// one). Prints what failed and exits non-zero on any failure.
const CLIENT: &str = r#"
import os, socket, sys
dst = sys.argv[1]
bad = []
for i in range(64):
    s = socket.create_connection((dst, 7070), timeout=10)
    sent = b""
    for j in range(3):
        chunk = os.urandom(200 + 50 * j).hex().encode()
        s.sendall(chunk)
        sent += chunk
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    if got != sent.upper():
        bad.append(("tcp", i, len(sent), len(got)))
for i in range(32):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1)
    for j in range(8):
        msg = ("flow %d datagram %d " % (i, j)).encode() + os.urandom(16).hex().encode()
        for attempt in range(5):
            u.sendto(msg, (dst, 7071))
            try:
                data, src = u.recvfrom(2048)
            except socket.timeout:
                continue
            if data != msg[::-1] or src != (dst, 7071):
                bad.append(("udp", i, j, data[:20], src))
            break
        else:
            bad.append(("udp lost", i, j))
    u.close()
print("bad:", bad)
sys.exit(1 if bad else 0)
"#;

fn config(lab: &Lab, backend: &str, extra_rule: &str) -> String {
    format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n\
         [[rule]]\nname = \"upper\"\nprotocol = \"tcp\"\nports = [7070]\nservice = \"upper\"\n\n\
         [[rule]]\nname = \"reverse\"\nprotocol = \"udp\"\nports = [7071]\nservice = \"reverse\"\n\
         {extra_rule}",
        lab.dataplane(backend, 4096)
    )
}

fn serve(backend: &str) {
    let lab = Lab::new();
    let program = example("user_services");
    let mut app = lab.start_program(&program, "user_services", &config(&lab, backend, ""));
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let out = lab.peer(&["/usr/bin/python3", "-c", CLIENT, DUT_IP]);
    let log = app.stop();
    assert_client_ok("the peer's client", &out, &log);
}

#[test]
fn user_tcp_and_udp_services_answer_linux_peers_over_af_packet() {
    serve("af_packet");
}

#[test]
fn user_tcp_and_udp_services_answer_linux_peers_over_dpdk() {
    serve("dpdk");
}

#[test]
fn a_rule_naming_an_unregistered_service_is_refused_at_start_with_its_position() {
    let lab = Lab::new();
    let rule =
        "\n[[rule]]\nname = \"ghost\"\nprotocol = \"tcp\"\nports = [9999]\nservice = \"nope\"\n";
    let text = config(&lab, "af_packet", rule);
    let path = lab.path("ghost.toml");
    std::fs::write(&path, &text).unwrap();
    let out = lab.run_program(&example("user_services"), &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {stderr}");
    let line = text
        .lines()
        .position(|l| l.starts_with("service = \"nope\""))
        .expect("the rule's line")
        + 1;
    assert!(
        stderr.contains(&format!("ghost.toml:{line}:11"))
            && stderr.contains(
                "unknown service \"nope\"; expected one of echo, discard, http, upper, reverse"
            ),
        "{stderr}"
    );
}

/// curl and Python against `examples/axum_app` (async service "app": axum
/// on hyper on the worker's executor), on connections from many source
/// ports: both workers must serve some.
fn axum_on_shardnet_answers_curl_and_python_on_every_route(backend: &str) {
    let lab = Lab::new();
    let text = format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n\
         [[rule]]\nname = \"web\"\nprotocol = \"tcp\"\nports = [8080]\nservice = \"app\"\n",
        lab.dataplane(backend, 4096)
    );
    let mut app = lab.start_program(&example("axum_app"), "axum_app", &text);
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let url = format!("http://{DUT_IP}:8080");
    let curl = |args: &[&str]| {
        let mut all = vec!["curl", "-sS", "--max-time", "10"];
        all.extend_from_slice(args);
        let out = lab.peer(&all);
        assert!(out.status.success(), "curl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for _ in 0..8 {
        assert_eq!(curl(&[&format!("{url}/")]), "hello from shardnet");
    }
    assert_eq!(curl(&[&format!("{url}/users/42")]), "{\"id\":42}");
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            "--data-binary",
            "ping pong",
            &format!("{url}/echo")
        ]),
        "ping pong"
    );
    let python = r#"
import http.client, json, os, sys
dst = sys.argv[1]
bad = []
for i in range(40):
    c = http.client.HTTPConnection(dst, 8080, timeout=10)
    for j in range(3):
        body = os.urandom(1000 * (i % 5) + j).hex()
        c.request("POST", "/echo", body=body)
        r = c.getresponse()
        got = r.read().decode()
        if r.status != 200 or got != body:
            bad.append(("echo", i, j, r.status))
    c.request("GET", "/users/%d" % i)
    r = c.getresponse()
    if json.loads(r.read()) != {"id": i}:
        bad.append(("users", i))
    c.close()
print("bad:", bad)
sys.exit(1 if bad else 0)
"#;
    let out = lab.peer(&["/usr/bin/python3", "-c", python, DUT_IP]);
    let metrics = scrape(&lab, METRICS);
    let log = app.stop();
    assert_client_ok("python", &out, &log);
    for worker in ["0", "1"] {
        let label = format!("worker=\"{worker}\"");
        let accepted = metric_sum(
            &metrics,
            "shardnet_tcp_connections_opened_total",
            &[&label, "passive"],
        );
        assert!(accepted >= 1.0, "worker {worker} served none:\n{metrics}");
    }
    assert_eq!(
        metric_sum(&metrics, "shardnet_async_refused_total", &[]),
        0.0,
        "{metrics}"
    );
}

#[test]
fn axum_on_shardnet_answers_curl_and_python_on_every_route_over_af_packet() {
    axum_on_shardnet_answers_curl_and_python_on_every_route("af_packet");
}

#[test]
fn axum_on_shardnet_answers_curl_and_python_on_every_route_over_dpdk() {
    axum_on_shardnet_answers_curl_and_python_on_every_route("dpdk");
}

/// The peer's client for the async `lines` service: connections until each
/// worker serves at least 3 (from the worker number in the replies), then
/// the line `panic` on one: its task panics, so that connection must be
/// reset while every other one, on its worker too, keeps answering.
const LINES_CLIENT: &str = r#"
import socket, sys
dst = sys.argv[1]
def ask(s, text):
    s.sendall(text.encode() + b"\n")
    got = b""
    while not got.endswith(b"\n"):
        b = s.recv(4096)
        if not b:
            raise EOFError("closed after %r" % got)
        got += b
    return got.decode()
conns, per_worker = [], {}
for i in range(64):
    s = socket.create_connection((dst, 7072), timeout=10)
    worker, rest = ask(s, "hello %d" % i).split(" ", 1)
    if rest != "hello %d\n" % i:
        sys.exit("bad reply %r" % rest)
    conns.append((s, worker))
    per_worker[worker] = per_worker.get(worker, 0) + 1
    if len(per_worker) == 2 and min(per_worker.values()) >= 3:
        break
print("connections per worker:", per_worker)
if len(per_worker) != 2 or min(per_worker.values()) < 3:
    sys.exit("64 connections did not give each worker 3")
victim, victim_worker = conns[0]
victim.sendall(b"panic\n")
try:
    got = victim.recv(4096)
    sys.exit("the panicking task's connection was not reset: read %r" % got)
except ConnectionResetError:
    pass
bad = []
for i, (s, worker) in enumerate(conns[1:]):
    got = ask(s, "again %d" % i)
    if got != "%s again %d\n" % (worker, i):
        bad.append((i, worker, got))
    s.close()
same = sum(1 for _, w in conns[1:] if w == victim_worker)
print("victim on", victim_worker, "with", same, "others there; bad:", bad)
sys.exit(1 if bad or same < 2 else 0)
"#;

/// Where the tests' shardnet serves its metrics (inside its namespace).
const METRICS: &str = "127.0.0.1:9464";

/// A panicking async task (the `lines` service of
/// `examples/user_services.rs`) gets its own connection reset while the
/// other connections on the same worker keep being served; the panic is
/// counted in `/metrics`.
fn a_panicking_task_resets_only_its_connection(backend: &str) {
    let lab = Lab::new();
    let extra = format!(
        "\n[metrics]\nlisten = \"{METRICS}\"\n\n\
         [[rule]]\nname = \"lines\"\nprotocol = \"tcp\"\nports = [7072]\nservice = \"lines\"\n"
    );
    let mut app = lab.start_program(
        &example("user_services"),
        "user_services",
        &config(&lab, backend, &extra),
    );
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let out = lab.peer(&["/usr/bin/python3", "-c", LINES_CLIENT, DUT_IP]);
    let metrics = scrape(&lab, METRICS);
    let log = app.stop();
    assert_client_ok("the peer's client", &out, &log);
    assert_eq!(
        metric_sum(&metrics, "shardnet_async_task_panics_total", &[]),
        1.0,
        "{metrics}"
    );
    assert!(
        log.contains("the peer asked this task to panic"),
        "the panic is logged:\n{log}"
    );
}

#[test]
fn a_panicking_task_resets_only_its_connection_over_af_packet() {
    a_panicking_task_resets_only_its_connection("af_packet");
}

#[test]
fn a_panicking_task_resets_only_its_connection_over_dpdk() {
    a_panicking_task_resets_only_its_connection("dpdk");
}

/// The peer's client for `examples/async_udp`: 64 sockets (distinct source
/// ports, so both workers serve some) send 4 rounds of 8 datagrams each,
/// no retries; a reply must be a datagram it sent, reversed, from the
/// service's address. Prints `sent answered bad` as JSON.
const ASYNC_UDP_CLIENT: &str = r#"
import json, os, socket, sys, time
dst, port = sys.argv[1], int(sys.argv[2])
socks = []
for i in range(64):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    u.bind(("0.0.0.0", 0))
    socks.append(u)
outstanding = [set() for _ in socks]
sent = answered = 0
bad = []
def drain(seconds):
    global answered
    deadline = time.monotonic() + seconds
    for i, u in enumerate(socks):
        while outstanding[i]:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            u.settimeout(left)
            try:
                data, src = u.recvfrom(4096)
            except socket.timeout:
                return
            if src != (dst, port) or data not in outstanding[i]:
                bad.append((i, data[:24].hex(), src))
            else:
                outstanding[i].discard(data)
                answered += 1
for rnd in range(4):
    for i, u in enumerate(socks):
        for j in range(8):
            msg = ("r%d s%d d%d " % (rnd, i, j)).encode() + os.urandom(8 + 40 * j).hex().encode()
            u.sendto(msg, (dst, port))
            outstanding[i].add(msg[::-1])
            sent += 1
    drain(2)
drain(3)
print(json.dumps({"sent": sent, "answered": answered, "bad": bad[:8]}))
"#;

const ASYNC_UDP_PORT: u16 = 7072;
const ASYNC_UDP_METRICS: &str = "127.0.0.1:19491";

fn serve_async_udp(backend: &str) {
    let lab = Lab::with_prefix("snu");
    let text = format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n\
         [metrics]\nlisten = \"{ASYNC_UDP_METRICS}\"\n\n\
         [[rule]]\nname = \"reverse\"\nprotocol = \"udp\"\nports = [{ASYNC_UDP_PORT}]\n\
         service = \"reverse\"\n",
        lab.dataplane(backend, 4096)
    );
    let mut app = lab.start_program(&example("async_udp"), "async_udp", &text);
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let out = lab.peer(&[
        "timeout",
        "60",
        "/usr/bin/python3",
        "-c",
        ASYNC_UDP_CLIENT,
        DUT_IP,
        &ASYNC_UDP_PORT.to_string(),
    ]);
    let metrics = scrape(&lab, ASYNC_UDP_METRICS);
    let log = app.stop();
    assert_client_ok("the peer's client", &out, &log);
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the client's JSON report");
    let sent = report["sent"].as_u64().unwrap();
    let answered = report["answered"].as_u64().unwrap();
    assert_eq!(report["bad"], serde_json::json!([]), "{report}");
    let m = |name: &str, labels: &[&str]| metric_sum(&metrics, name, labels) as u64;
    let drop = |reason: &str| m("shardnet_drops_total", &[&format!("reason=\"{reason}\"")]);
    let udp_rx = m("shardnet_udp_datagrams_total", &["direction=\"rx\""]);
    let udp_tx = m("shardnet_udp_datagrams_total", &["direction=\"tx\""]);
    let context = format!("{report}\nmetrics:\n{metrics}\nlog:\n{log}");
    println!("{backend}: sent {sent}, answered {answered}, udp rx {udp_rx}, tx {udp_tx}");
    // Inside the stack, exactly: each datagram handed to the service was
    // answered (framed) or dropped under a counted reason.
    assert_eq!(
        udp_rx,
        udp_tx
            + drop("udp_socket_overflow")
            + drop("udp_no_socket")
            + drop("udp_unresolved")
            + drop("no_buffer"),
        "{context}"
    );
    // Before the service: what never reached it was missed by the port or
    // dropped (and counted) by the stack.
    let before = m("shardnet_port_rx_missed_total", &[])
        + m("shardnet_port_rx_nombuf_total", &[])
        + m("shardnet_port_rx_errors_total", &[])
        + m("shardnet_drops_total", &[]);
    assert!(sent >= udp_rx && sent - udp_rx <= before, "{context}");
    // After it: an answer framed but not received was refused by the port.
    let after = drop("tx_full") + m("shardnet_port_tx_errors_total", &[]);
    assert!(
        answered <= udp_tx && udp_tx - answered <= after,
        "{context}"
    );
    // Both workers answered, and loss is the exception, not the rule.
    for worker in ["worker=\"0\"", "worker=\"1\""] {
        assert!(
            m(
                "shardnet_udp_datagrams_total",
                &["direction=\"tx\"", worker]
            ) > 0,
            "{worker} answered nothing: {context}"
        );
    }
    assert!(answered * 2 >= sent, "{context}");
}

#[test]
fn an_async_udp_service_answers_a_linux_peer_on_every_worker_over_af_packet() {
    serve_async_udp("af_packet");
}

#[test]
fn an_async_udp_service_answers_a_linux_peer_on_every_worker_over_dpdk() {
    serve_async_udp("dpdk");
}
