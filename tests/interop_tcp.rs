//! Interop: real Linux TCP peers (curl, wrk, socat, Python clients) against
//! shardnet's TCP engine and its `http`, `echo` and `discard` services, over a
//! veth pair between two network namespaces, with two workers, on the
//! AF_PACKET backend and on the DPDK backend (`net_af_packet` vdev,
//! `--no-pci`). Needs root; fails, never skips, when it cannot set up.
//!
//! One `exercise` per backend, in this order on one running stack:
//! 1. HTTP with curl: GET (exact body), HEAD (no body), three requests on one
//!    kept-alive connection; a raw pipelined HEAD + GET proving that HEAD's
//!    response carries no body.
//! 2. `wrk -t1 -c64 -d3s`: no error of any kind, a sane request count.
//! 3. Large transfers: echo (random bytes, concurrent read, half-close, SHA-256
//!    of both directions), discard (no byte back, clean EOF), a file through
//!    echo with `socat`.
//! 4. 500 concurrent echo connections, each checked byte for byte and closed
//!    cleanly.
//! 5. Loss: nftables in the peer namespace drops 3% of the TCP segments to and
//!    from port 7 at random; an echo transfer still arrives intact.
//! 6. A client that resets (SO_LINGER {1, 0}) with data in flight both ways;
//!    the stack goes on serving.
//! 7. The kernel's side: with `[af_packet] kernel_ingress = "drop"` (the
//!    AF_PACKET run) the kernel's IPv4 stack sees none of the traffic, the
//!    nftables chain counted it, and the table is gone after the stop; with
//!    the default (the DPDK run, `net_af_packet`) the kernel sees it all.
//! 8. After the stop: per-worker TCP counters (both workers carried
//!    connections, retransmits under loss, the reset counted, nothing open,
//!    no TX drop).
//!
//! Every load is bounded in time and in count; the measured numbers are
//! printed (`--nocapture` shows them).

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{peer_script, Lab, DUT_IP};

/// Short TIME-WAIT, so that the stack's table empties before the stop.
const TIME_WAIT_MS: u64 = 1000;
/// The configured `[http] body`.
const BODY: &str = "hello from shardnet interop\n";
/// Concurrent connections of scenario 4.
const MANY: usize = 500;
/// MiB per echo transfer without loss, and for discard.
const ECHO_MIB: &str = "16";
const DISCARD_MIB: &str = "20";
/// MiB per echo transfer under loss.
const LOSSY_MIB: &str = "4";
/// Bytes of the file sent through echo with socat.
const SOCAT_BYTES: usize = 4 << 20;

fn config_rest(lab: &Lab) -> String {
    format!(
        r#"
[interface]
address = "{DUT_IP}/24"
mac = "auto"

[[rule]]
name = "http"
protocol = "tcp"
ports = "80"
service = "http"

[[rule]]
name = "echo"
protocol = "tcp"
ports = "7"
service = "echo"

[[rule]]
name = "discard"
protocol = "tcp"
ports = "9"
service = "discard"

[default]
action = "kernel"

[tcp]
time_wait_ms = {TIME_WAIT_MS}

[http]
body = {BODY:?}

[debug]
flow_record = "{}"
"#,
        lab.path("rec").display()
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run in the peer namespace; panic with its output unless it succeeded.
fn peer_ok(lab: &Lab, args: &[&str]) -> Output {
    let out = lab.peer(args);
    assert!(
        out.status.success(),
        "{args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// One run of `tests/peers/tcp_peer.py`; its JSON result.
fn tcp_peer(lab: &Lab, mode: &str, port: u16, extra: &[&str]) -> serde_json::Value {
    let port = port.to_string();
    let script = peer_script("tcp_peer.py");
    // `timeout`: a backstop; the script bounds itself with --timeout.
    let mut args = vec![
        "timeout",
        "60",
        "/usr/bin/python3",
        &script,
        mode,
        "--dst",
        DUT_IP,
        "--port",
        &port,
    ];
    args.extend_from_slice(extra);
    let out = peer_ok(lab, &args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON from tcp_peer.py {mode} ({e}): {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// A curl in the peer namespace, bounded; its stdout.
fn curl(lab: &Lab, args: &[&str]) -> String {
    let mut all = vec!["curl", "-sS", "--http1.1", "--max-time", "10"];
    all.extend_from_slice(args);
    text(&peer_ok(lab, &all).stdout)
}

/// Scenario 1: HTTP with curl and a raw pipelined HEAD + GET.
fn http_with_curl(lab: &Lab) {
    let url = format!("http://{DUT_IP}/");
    // GET: status and exact body.
    let got = curl(lab, &["-w", "%{http_code}", &url]);
    assert_eq!(got, format!("{BODY}200"), "GET body and status");

    // HEAD: status, Content-Length of the GET body, and no body read.
    let got = curl(lab, &["-I", "-w", "[%{http_code} %{size_download}]", &url]);
    assert!(got.starts_with("HTTP/1.1 200 "), "HEAD: {got:?}");
    assert!(
        got.contains(&format!("\r\nContent-Length: {}\r\n", BODY.len())),
        "HEAD: {got:?}"
    );
    assert!(got.ends_with("\r\n\r\n[200 0]"), "HEAD: {got:?}");

    // Keep-alive: three requests, one connection (num_connects is 1, then 0).
    let got = curl(
        lab,
        &["-w", "%{http_code} %{num_connects}\n", &url, &url, &url],
    );
    assert_eq!(
        got,
        format!("{BODY}200 1\n{BODY}200 0\n{BODY}200 0\n"),
        "three GETs on one kept-alive connection"
    );

    // HEAD then GET pipelined on one connection: if HEAD's response had a
    // body, the GET's response would not follow its header section at once.
    let raw = tcp_peer(lab, "http", 80, &["--timeout", "10"]);
    assert_eq!(raw["eof"], true, "Connection: close must close: {raw}");
    let response = raw["response"].as_str().unwrap();
    let (head, rest) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HEAD response: {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200 "), "{response:?}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", BODY.len())),
        "{response:?}"
    );
    let (get_head, get_body) = rest
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no GET response right after HEAD's: {response:?}"));
    assert!(get_head.starts_with("HTTP/1.1 200 "), "{response:?}");
    assert!(get_head.contains("\r\nConnection: close"), "{response:?}");
    assert_eq!(get_body, BODY, "{response:?}");
}

/// The counts in wrk's report.
#[derive(Debug)]
struct WrkReport {
    requests: u64,
    per_second: f64,
}

fn parse_wrk(report: &str) -> WrkReport {
    // "  12345 requests in 3.00s, 1.51MB read"
    let requests = report
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no request count in wrk's report:\n{report}"));
    let per_second = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's report:\n{report}"));
    // wrk prints these lines only when there is something to report.
    assert!(
        !report.contains("Non-2xx or 3xx responses"),
        "wrk: non-2xx responses:\n{report}"
    );
    if let Some(line) = report.lines().find(|l| l.contains("Socket errors:")) {
        // "  Socket errors: connect 0, read 0, write 0, timeout 0"
        let counts: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(
            counts.len() == 4 && counts.iter().all(|&n| n == 0),
            "wrk: socket errors (connect, read, write, timeout):\n{report}"
        );
    }
    WrkReport {
        requests,
        per_second,
    }
}

/// Scenario 2: wrk, 64 connections for 3 s.
fn http_with_wrk(lab: &Lab) -> WrkReport {
    let url = format!("http://{DUT_IP}/");
    let out = peer_ok(
        lab,
        &[
            "timeout",
            "20",
            "wrk",
            "-t1",
            "-c64",
            "-d3s",
            "--timeout",
            "2s",
            &url,
        ],
    );
    let report = text(&out.stdout);
    let wrk = parse_wrk(&report);
    // A debug build on a shared 2-core machine: the floor only catches a
    // stack that stalls (a lost segment waiting for an RTO, say).
    assert!(wrk.requests >= 1000, "wrk: too few requests:\n{report}");
    println!("wrk: {wrk:?}");
    wrk
}

fn assert_echo_intact(result: &serde_json::Value, what: &str) {
    assert_eq!(result["timed_out"], false, "{what}: timed out: {result}");
    assert_eq!(result["reset"], false, "{what}: reset: {result}");
    assert_eq!(result["eof"], true, "{what}: no clean EOF: {result}");
    assert_eq!(result["sent"], result["received"], "{what}: {result}");
    assert_eq!(
        result["sha256_sent"], result["sha256_received"],
        "{what}: {result}"
    );
    assert_eq!(result["match"], true, "{what}: {result}");
}

/// Scenario 3: large transfers through echo and into discard, then a file
/// through echo with socat. Returns the echo's and discard's MiB/s.
fn large_transfers(lab: &Lab) -> (f64, f64) {
    let echo = tcp_peer(lab, "echo", 7, &["--mib", ECHO_MIB, "--timeout", "25"]);
    assert_echo_intact(&echo, "echo");
    println!("echo {ECHO_MIB} MiB: {echo}");

    let discard = tcp_peer(
        lab,
        "discard",
        9,
        &["--mib", DISCARD_MIB, "--timeout", "25"],
    );
    assert_eq!(discard["timed_out"], false, "discard: {discard}");
    assert_eq!(discard["reset"], false, "discard: {discard}");
    assert_eq!(discard["eof"], true, "discard: no clean EOF: {discard}");
    assert_eq!(discard["received"], 0, "discard sent bytes back: {discard}");
    assert_eq!(
        discard["sent"].as_u64().unwrap(),
        DISCARD_MIB.parse::<u64>().unwrap() << 20,
        "{discard}"
    );
    println!("discard {DISCARD_MIB} MiB: {discard}");

    // socat: stdin to the connection, the connection to stdout; at stdin's
    // EOF it half-closes and waits (-t) for the echo's EOF.
    let input = lab.path("socat.in");
    let output = lab.path("socat.out");
    peer_ok(
        lab,
        &[
            "sh",
            "-c",
            &format!(
                "head -c {SOCAT_BYTES} /dev/urandom > {in_} && \
                 timeout 30 socat -t 20 -T 20 - TCP:{DUT_IP}:7 < {in_} > {out}",
                in_ = input.display(),
                out = output.display()
            ),
        ],
    );
    let sent = std::fs::read(&input).unwrap();
    let back = std::fs::read(&output).unwrap();
    assert_eq!(sent.len(), SOCAT_BYTES);
    assert_eq!(back.len(), sent.len(), "socat through echo: length");
    if let Some(at) = sent.iter().zip(&back).position(|(a, b)| a != b) {
        panic!("socat through echo: first difference at byte {at}");
    }

    (
        echo["mib_per_s"].as_f64().unwrap(),
        discard["mib_per_s"].as_f64().unwrap(),
    )
}

/// Scenario 4: many concurrent echo connections.
fn many_connections(lab: &Lab) {
    let conns = MANY.to_string();
    let many = tcp_peer(lab, "many", 7, &["--conns", &conns, "--timeout", "20"]);
    println!("{MANY} connections: {many}");
    assert_eq!(
        many["ok"], MANY,
        "every connection echoed and closed: {many}"
    );
    for field in ["refused", "mismatched", "errors", "unclean", "unfinished"] {
        assert_eq!(many[field], 0, "{field}: {many}");
    }
}

/// The nftables counters of the lossy table: (dropped out, dropped in).
fn lossy_counters(lab: &Lab) -> (u64, u64) {
    let listing = text(&peer_ok(lab, &["nft", "list", "table", "inet", "lossy"]).stdout);
    let packets = |chain: &str| -> u64 {
        let body = listing
            .split(&format!("chain {chain} {{"))
            .nth(1)
            .unwrap_or_else(|| panic!("no chain {chain}:\n{listing}"));
        let after = body
            .split("counter packets ")
            .nth(1)
            .unwrap_or_else(|| panic!("no counter in chain {chain}:\n{listing}"));
        after.split_whitespace().next().unwrap().parse().unwrap()
    };
    (packets("out"), packets("in"))
}

/// Scenario 5: 3% random loss both ways on port 7, in the peer namespace.
fn echo_under_loss(lab: &Lab) -> f64 {
    let rules = lab.path("lossy.nft");
    std::fs::write(
        &rules,
        "table inet lossy {\n\
         \tchain out {\n\
         \t\ttype filter hook output priority 0; policy accept;\n\
         \t\ttcp dport 7 numgen random mod 100 < 3 counter drop\n\
         \t}\n\
         \tchain in {\n\
         \t\ttype filter hook input priority 0; policy accept;\n\
         \t\ttcp sport 7 numgen random mod 100 < 3 counter drop\n\
         \t}\n\
         }\n",
    )
    .unwrap();
    peer_ok(lab, &["nft", "-f", &rules.display().to_string()]);
    let lossy = tcp_peer(lab, "echo", 7, &["--mib", LOSSY_MIB, "--timeout", "30"]);
    let (dropped_out, dropped_in) = lossy_counters(lab);
    peer_ok(lab, &["nft", "delete", "table", "inet", "lossy"]);
    println!(
        "echo {LOSSY_MIB} MiB under 3% loss: {lossy}; nft dropped {dropped_out} out, {dropped_in} in"
    );
    assert_echo_intact(&lossy, "echo under loss");
    assert!(
        dropped_out > 0 && dropped_in > 0,
        "the loss rules dropped nothing: {dropped_out} out, {dropped_in} in"
    );
    lossy["mib_per_s"].as_f64().unwrap()
}

/// Scenario 6: a client resets with data in flight; the stack goes on.
fn client_reset(lab: &Lab) {
    // Count the RSTs the peer sends to the echo port, to know that the close
    // with SO_LINGER {1, 0} really put one on the wire.
    peer_ok(lab, &["nft", "add", "table", "inet", "watch"]);
    peer_ok(
        lab,
        &[
            "nft",
            "add chain inet watch out { type filter hook output priority 0; policy accept; }",
        ],
    );
    peer_ok(
        lab,
        &[
            "nft",
            "add rule inet watch out tcp dport 7 tcp flags & rst == rst counter",
        ],
    );
    let reset = tcp_peer(lab, "reset", 7, &["--timeout", "15"]);
    let listing = text(&peer_ok(lab, &["nft", "list", "table", "inet", "watch"]).stdout);
    peer_ok(lab, &["nft", "delete", "table", "inet", "watch"]);
    let resets_sent: u64 = listing
        .split("counter packets ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no RST counter:\n{listing}"));
    println!("reset mid-transfer: {reset}; RSTs sent by the peer: {resets_sent}");
    assert!(resets_sent >= 1, "the peer sent no RST: {reset}");
    assert!(
        reset["sent_before_reset"].as_u64().unwrap() > 0,
        "nothing in flight: {reset}"
    );
    assert_eq!(
        reset["echo_after_reset"], true,
        "no echo after a client's reset: {reset}"
    );
}

/// Wait (bounded) until the peer has no TCP connection to the stack but in
/// TIME-WAIT, then for the stack's own TIME-WAITs to expire.
fn wait_for_quiet(lab: &Lab) {
    let start = Instant::now();
    loop {
        let out = peer_ok(lab, &["ss", "-Htn", "state", "connected", "dst", DUT_IP]);
        let open: Vec<String> = text(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("TIME-WAIT"))
            .map(str::to_string)
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "peer connections still open after 10 s:\n{}",
            open.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(TIME_WAIT_MS + 700));
}

/// The whole scenario on one running stack.
/// The DUT kernel's `IpInAddrErrors`: IPv4 packets its own stack received
/// for an address it does not have (here: every one of shardnet's).
fn kernel_in_addr_errors(lab: &Lab) -> u64 {
    let snmp = text(&lab.dut(&["cat", "/proc/net/snmp"]).stdout);
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip: "));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "InAddrErrors")
        .unwrap_or_else(|| panic!("no InAddrErrors in /proc/net/snmp:\n{snmp}"));
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// `nft list table netdev TABLE` in the DUT namespace: the packets its
/// counter rule dropped, or `None` when there is no such table.
fn nft_dropped(lab: &Lab, table: &str) -> Option<u64> {
    let out = lab.dut(&["nft", "list", "table", "netdev", table]);
    if !out.status.success() {
        return None;
    }
    let listing = text(&out.stdout);
    let count = listing
        .split("counter packets ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    Some(count.unwrap_or_else(|| panic!("no counter in table {table}:\n{listing}")))
}

/// Runs every scenario against `config`. `ingress_table`: the nftables table
/// of `[af_packet] kernel_ingress = "drop"` if the config has it; then the
/// kernel's IP stack must see none of the traffic, and the table must be gone
/// after the stop. Without it the kernel's IP stack sees (and drops) the
/// frames as usual, which the same counter shows.
fn exercise(lab: &Lab, config: &str, backend: &str, ingress_table: Option<&str>) {
    let started = Instant::now();
    if let Some(table) = ingress_table {
        assert_eq!(
            nft_dropped(lab, table),
            None,
            "{table} exists before the start"
        );
    }
    let addr_errors_before = kernel_in_addr_errors(lab);
    let mut shardnet = lab.start_shardnet(config);
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));

    http_with_curl(lab);
    let wrk = http_with_wrk(lab);
    let (echo_mib_s, discard_mib_s) = large_transfers(lab);
    many_connections(lab);
    let lossy_mib_s = echo_under_loss(lab);
    client_reset(lab);
    wait_for_quiet(lab);

    let kernel_saw = kernel_in_addr_errors(lab) - addr_errors_before;
    let nft_dropped_frames = ingress_table.map(|table| {
        nft_dropped(lab, table)
            .unwrap_or_else(|| panic!("no nftables table {table} while shardnet runs"))
    });
    let log = shardnet.stop();
    match (ingress_table, nft_dropped_frames) {
        (Some(table), Some(dropped)) => {
            assert_eq!(
                kernel_saw, 0,
                "kernel_ingress = \"drop\", yet the kernel's IPv4 stack saw {kernel_saw} packets"
            );
            // The transfers alone are tens of thousands of frames.
            assert!(dropped > 10_000, "the drop chain counted {dropped} frames");
            assert_eq!(
                nft_dropped(lab, table),
                None,
                "the nftables table {table} outlived shardnet:\n{log}"
            );
        }
        _ => assert!(
            kernel_saw > 10_000,
            "the kernel's IPv4 stack saw {kernel_saw} of shardnet's packets, \
             expected all of them"
        ),
    }
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.path("rec.stats.json")).unwrap()).unwrap();
    let workers = stats["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{log}");
    let tcp = |w: &serde_json::Value, key: &str| -> u64 {
        w["tcp"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no tcp.{key}: {stats}"))
    };
    let sum = |key: &str| -> u64 { workers.iter().map(|w| tcp(w, key)).sum() };

    for w in workers {
        assert!(
            tcp(w, "opened_passive") > 0,
            "worker {} carried no TCP connection: {stats}",
            w["worker"]
        );
        assert_eq!(
            tcp(w, "active"),
            0,
            "worker {} still holds connections after TIME-WAIT and the stop: {stats}",
            w["worker"]
        );
        assert_eq!(
            w["drops"]["tx_full"].as_u64().unwrap(),
            0,
            "worker {} TX drops: {stats}",
            w["worker"]
        );
    }
    // curl 3, the raw HEAD+GET 1, wrk 64, transfers 3, many, loss 1, reset 2.
    let least = (3 + 1 + 64 + 3 + MANY + 1 + 2) as u64;
    assert!(
        sum("opened_passive") >= least,
        "fewer connections than the clients opened ({least}): {stats}"
    );
    // The stop resets what is still open (TIME-WAITs stay, and `active`
    // counts them). Every peer here closes in order or resets itself, so
    // every RST the stack sent must answer a segment that found no
    // connection (RFC 9293): a late duplicate, such as the peer's second
    // ACK of a FIN that a tail loss probe or an RTO resent under loss, which
    // arrives after the first one closed the connection (Linux answers it
    // the same way). More RSTs than such segments would mean connections
    // open at the stop, or reset while in use.
    for w in workers {
        let no_connection = w["drops"]["no_connection"].as_u64().unwrap();
        assert!(
            tcp(w, "resets_tx") <= no_connection,
            "worker {} sent {} RSTs for {no_connection} segments without a connection \
             (connections open at the stop?): {stats}",
            w["worker"],
            tcp(w, "resets_tx")
        );
    }
    // syn_backlog (1024 per worker) is never reached: no SYN cookies.
    assert_eq!(sum("syn_cookies_sent"), 0, "{stats}");
    assert!(sum("retransmits") > 0, "no retransmit under loss: {stats}");
    assert!(sum("resets_rx") >= 1, "the client's RST: {stats}");

    println!(
        "{backend}: wrk {:.0} requests/s ({} requests); echo {echo_mib_s} MiB/s (each way), \
         discard {discard_mib_s} MiB/s, echo under 3% loss {lossy_mib_s} MiB/s; \
         retransmits {}, resets_rx {}, resets_tx {}, opened_passive {:?}; \
         the kernel's IPv4 stack saw {kernel_saw} packets, nftables dropped {nft_dropped_frames:?}; \
         {:.1} s",
        wrk.per_second,
        wrk.requests,
        sum("retransmits"),
        sum("resets_rx"),
        sum("resets_tx"),
        workers
            .iter()
            .map(|w| tcp(w, "opened_passive"))
            .collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn af_packet_backend_two_workers() {
    let lab = Lab::new();
    let config = format!(
        r#"
[dataplane]
backend = "af_packet"
workers = [0, 1]
control_core = 0
idle = "adaptive"

[af_packet]
interface = "{}"
kernel_ingress = "drop"
{}"#,
        lab.dut_if,
        config_rest(&lab)
    );
    let table = format!("shardnet_{}", lab.dut_if);
    exercise(&lab, &config, "af_packet", Some(&table));
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_backend_two_workers() {
    let lab = Lab::new();
    let config = format!(
        r#"
[dataplane]
backend = "dpdk"
workers = [0, 1]
control_core = 0
idle = "adaptive"

[dpdk]
eal_args = ["--no-pci", "--no-huge", "--no-shconf", "-m", "512", "--vdev=net_af_packet0,iface={},qpairs=2"]
port = 0
mbufs_per_worker = 4095
{}"#,
        lab.dut_if,
        config_rest(&lab)
    );
    exercise(&lab, &config, "dpdk", None);
}
