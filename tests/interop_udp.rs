//! Interop: real Linux tools (ping, a Python UDP client, scapy) against
//! shardnet over a veth pair between two network namespaces, with two
//! workers, on the AF_PACKET backend and on the DPDK backend (`net_af_packet`
//! vdev, `--no-pci`). Needs root; fails, never skips, when it cannot set up.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{metric_sum, peer_script, read_flow_records, wait_for, Lab, DUT_IP, PEER_IP};

const FLOWS: usize = 256;
const PACKETS_PER_FLOW: u64 = 6;
const MALFORMED_EACH: u64 = 5;

fn rules_and_debug(lab: &Lab) -> String {
    format!(
        r#"
[interface]
address = "{DUT_IP}/24"
mac = "auto"

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[[rule]]
name = "discard"
protocol = "udp"
ports = [9]
service = "discard"

[[rule]]
name = "blackhole"
protocol = "udp"
ports = "5000-5010"
service = "drop"

[default]
action = "kernel"

[debug]
flow_record = "{}"
"#,
        lab.path("rec").display()
    )
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "peer command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON from peer ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The whole scenario on one running stack.
/// Datagrams too long for the MTU that the peer's kernel sends in fragments.
const FRAGMENTED_DATAGRAMS: u64 = 4;
/// Fragments of each: 3000 bytes of UDP over a 1500-byte MTU.
const FRAGMENTS_EACH: u64 = 3;

/// `model_fanout`: the port puts each IPv4 packet on the worker that owns its
/// flow (AF_PACKET's fanout program), so no packet is steered in software.
fn exercise(lab: &Lab, config: &str, skip_malformed: &[&str], model_fanout: bool) {
    let mut shardnet = lab.start_shardnet(config);
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));

    // ping: 40 echoes of 3 sizes; ping itself checks every reply's payload.
    // With `-w` (a deadline) ping waits up to 20 s for all 40 replies;
    // without it, once some reply came, ping waits only two round trips
    // (at least the interval, 2 ms) after its last request (see `-W` in
    // ping(8)), and on a loaded 2-core machine the last reply can take
    // longer than that: it was counted lost although it came.
    for size in ["0", "56", "1400"] {
        let out = lab.peer(&[
            "ping", "-c", "40", "-i", "0.002", "-w", "20", "-s", size, DUT_IP,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ping -s {size} failed:\n{text}");
        assert!(text.contains("40 received"), "ping -s {size}:\n{text}");
        assert!(!text.contains("wrong data"), "ping -s {size}:\n{text}");
    }

    // UDP echo: many flows, byte for byte.
    let flows = FLOWS.to_string();
    let per_flow = PACKETS_PER_FLOW.to_string();
    let echo = json_of(&lab.peer(&[
        "/usr/bin/python3",
        &peer_script("udp_flows.py"),
        "--dst",
        DUT_IP,
        "--port",
        "7",
        "--flows",
        &flows,
        "--packets",
        &per_flow,
    ]));
    assert_eq!(echo["mismatched"], 0, "{echo}");
    assert_eq!(echo["duplicates"], 0, "{echo}");
    assert_eq!(echo["unexpected_source"], 0, "{echo}");
    assert_eq!(
        echo["received"], echo["sent"],
        "every datagram echoed: {echo}"
    );

    // discard and a drop rule: nothing comes back.
    for port in ["9", "5005"] {
        let quiet = json_of(&lab.peer(&[
            "/usr/bin/python3",
            &peer_script("udp_flows.py"),
            "--dst",
            DUT_IP,
            "--port",
            port,
            "--flows",
            "8",
            "--packets",
            "4",
            "--expect-echo",
            "0",
        ]));
        assert_eq!(quiet["received"], 0, "port {port}: {quiet}");
    }

    // Malformed frames: each counted under its reason, none answered, no crash.
    let (dut_mac, count) = (lab.dut_mac(), MALFORMED_EACH.to_string());
    let mut args = vec![
        "/usr/bin/python3".to_string(),
        peer_script("malformed.py"),
        "--iface".into(),
        lab.peer_if.clone(),
        "--dst-mac".into(),
        dut_mac,
        "--src-ip".into(),
        PEER_IP.into(),
        "--dst-ip".into(),
        DUT_IP.into(),
        "--count".into(),
        count,
    ];
    for kind in skip_malformed {
        args.extend(["--skip".to_string(), kind.to_string()]);
    }
    let malformed = json_of(&lab.peer(&args.iter().map(String::as_str).collect::<Vec<_>>()));
    // Still alive and answering after the bad input.
    let out = lab.peer(&["ping", "-c", "3", "-i", "0.01", "-W", "2", DUT_IP]);
    assert!(out.status.success(), "no ping after malformed input");
    // Whole datagrams in fragments, from the peer's kernel: shardnet does not
    // reassemble, every fragment is a counted drop. Sent to discard (port 9):
    // nothing comes back either way.
    let fragmented = if skip_malformed.contains(&"fragment") {
        0
    } else {
        let script = format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range({FRAGMENTED_DATAGRAMS}):\n\
             \x20   s.sendto(bytes([i]) * 3000, ('{DUT_IP}', 9))\n"
        );
        let out = lab.peer(&["/usr/bin/python3", "-c", &script]);
        assert!(
            out.status.success(),
            "sending fragmented datagrams: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        FRAGMENTED_DATAGRAMS * FRAGMENTS_EACH
    };
    let out = lab.peer(&["ping", "-c", "3", "-i", "0.01", "-W", "2", DUT_IP]);
    assert!(out.status.success(), "no ping after fragmented datagrams");

    let log = shardnet.stop();
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.path("rec.stats.json")).unwrap()).unwrap();
    let workers = stats["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{log}");

    let sum = |f: &dyn Fn(&serde_json::Value) -> u64| -> u64 { workers.iter().map(f).sum() };
    for (reason, sent) in malformed.as_object().unwrap() {
        let counted = sum(&|w| w["drops"][reason].as_u64().unwrap());
        let extra = if reason == "fragment" { fragmented } else { 0 };
        assert_eq!(
            counted,
            sent.as_u64().unwrap() + extra,
            "drops of {reason}: {stats}"
        );
    }
    // With the fanout program, every packet arrived at its owner: nothing
    // handed between workers, fragments included (they hash on addresses).
    if model_fanout {
        assert_eq!(sum(&|w| w["steered_out"].as_u64().unwrap()), 0, "{stats}");
    }
    assert_eq!(
        sum(&|w| w["rule_hits"]["blackhole"].as_u64().unwrap()),
        32,
        "{stats}"
    );
    assert_eq!(
        sum(&|w| w["drops"]["rule"].as_u64().unwrap()),
        32,
        "{stats}"
    );
    assert_eq!(
        sum(&|w| w["rule_hits"]["discard"].as_u64().unwrap()),
        32,
        "{stats}"
    );
    let echoed = FLOWS as u64 * PACKETS_PER_FLOW;
    assert_eq!(
        sum(&|w| w["rule_hits"]["echo"].as_u64().unwrap()),
        echoed,
        "{stats}"
    );
    assert_eq!(sum(&|w| w["udp_tx"].as_u64().unwrap()), echoed, "{stats}");
    assert!(
        sum(&|w| w["icmp_echo_replies"].as_u64().unwrap()) >= 123,
        "{stats}"
    );
    assert!(
        sum(&|w| w["arp_replies_sent"].as_u64().unwrap()) >= 1,
        "{stats}"
    );
    assert_eq!(
        sum(&|w| w["drops"]["tx_full"].as_u64().unwrap()),
        0,
        "{stats}"
    );

    // Every flow's packets were handled by exactly one worker, and both
    // workers carried some of the echo flows.
    let records = read_flow_records(&lab.path("rec"), 2);
    let mut owner: HashMap<&str, usize> = HashMap::new();
    let mut echo_flows_per_worker = [0usize; 2];
    for (worker, flows) in records.iter().enumerate() {
        for (flow, packets) in flows {
            if let Some(other) = owner.insert(flow, worker) {
                panic!("flow {flow} seen by workers {other} and {worker}");
            }
            let is_echo_flow = flow.starts_with(&format!("17 {PEER_IP}:"))
                && flow.contains(&format!("{DUT_IP}:7"));
            if is_echo_flow {
                assert_eq!(*packets, PACKETS_PER_FLOW, "flow {flow}");
                echo_flows_per_worker[worker] += 1;
            }
        }
    }
    assert_eq!(echo_flows_per_worker.iter().sum::<usize>(), FLOWS);
    assert!(
        echo_flows_per_worker.iter().all(|&n| n > 0),
        "both workers must carry flows: {echo_flows_per_worker:?}"
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
{}"#,
        lab.dut_if,
        rules_and_debug(&lab)
    );
    exercise(&lab, &config, &[], true);
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
        rules_and_debug(&lab)
    );
    // DPDK's net_af_packet joins its queues' sockets with
    // PACKET_FANOUT_FLAG_DEFRAG: the kernel holds a lone fragment for reassembly
    // and it never reaches the stack, so there is no fragment to count.
    exercise(&lab, &config, &["fragment"], false);
}

/// The second echo node's address, on the peer's interface (the peer kernel
/// keeps 198.18.0.1 there and, not forwarding, ignores this one).
const NODE_A_IP: &str = "198.18.0.3";
const NODE_A_METRICS: u16 = 19482;
const NODE_B_METRICS: u16 = 19481;

/// A node with UDP and TCP echo on port 7 and a control endpoint.
fn echo_node(dataplane: &str, address: &str, metrics_port: u16) -> String {
    format!(
        r#"{dataplane}
[interface]
address = "{address}/24"

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[[rule]]
name = "tcp-echo"
protocol = "tcp"
ports = "7"
service = "echo"

[default]
action = "kernel"

[metrics]
listen = "127.0.0.1:{metrics_port}"
"#
    )
}

/// The sum over workers of `name`'s samples whose labels hold `label`, from
/// the node whose control endpoint is `port` (node A in the peer namespace,
/// node B in the DUT's).
fn node_metric(lab: &Lab, port: u16, name: &str, label: &str) -> u64 {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let args = ["curl", "-sf", "--max-time", "5", url.as_str()];
    let out = if port == NODE_A_METRICS {
        lab.peer(&args)
    } else {
        lab.dut(&args)
    };
    assert!(out.status.success(), "cannot scrape {url}");
    metric_sum(&String::from_utf8(out.stdout).unwrap(), name, &[label]) as u64
}

fn drops(lab: &Lab, port: u16, reason: &str) -> u64 {
    node_metric(
        lab,
        port,
        "shardnet_drops_total",
        &format!("reason=\"{reason}\""),
    )
}

fn udp(lab: &Lab, port: u16, direction: &str) -> u64 {
    node_metric(
        lab,
        port,
        "shardnet_udp_datagrams_total",
        &format!("direction=\"{direction}\""),
    )
}

/// Issue 16: two shardnet nodes with UDP echo on port 7 (B in the DUT
/// namespace, A on the peer's interface), and one spoofed datagram from A's
/// address and port 7 to B's echo port. Before loop protection they bounced
/// it to each other some 14k times a second until killed; now B refuses it
/// (`loop_protection`) and neither node sends anything. Then martian sources,
/// source port 0, a TCP data offset below 5 and an ARP reply claiming B's
/// address, from the peer namespace: none gets an answer (a sniffer on the
/// peer's interface sees nothing from B), and each is counted under its
/// drop reason.
#[test]
fn af_packet_no_echo_loop_and_no_answer_to_martians() {
    let lab = Lab::new();
    let node_b = echo_node(&lab.dataplane("af_packet", 8191), DUT_IP, NODE_B_METRICS);
    let mut b = lab.start_shardnet(&node_b);
    lab.wait_until_answering(&mut b, Duration::from_secs(20));
    let node_a = echo_node(
        &lab.peer_dataplane("af_packet", 8191),
        NODE_A_IP,
        NODE_A_METRICS,
    );
    let a = lab.start_peer_shardnet(&node_a);
    let health = format!("http://127.0.0.1:{NODE_A_METRICS}/healthz");
    wait_for("node A polling", Duration::from_secs(20), || {
        lab.peer(&["curl", "-sf", "--max-time", "2", &health])
            .status
            .success()
    });
    let b_mac = lab.dut_mac();
    let a_mac = String::from_utf8(
        lab.peer(&["cat", &format!("/sys/class/net/{}/address", lab.peer_if)])
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();

    // One datagram "from" A's echo port to B's.
    json_of(&lab.peer(&[
        "/usr/bin/python3",
        &peer_script("martians.py"),
        "loop",
        "--iface",
        &lab.peer_if,
        "--src-mac",
        &a_mac,
        "--src-ip",
        NODE_A_IP,
        "--dst-mac",
        &b_mac,
        "--dst-ip",
        DUT_IP,
    ]));
    wait_for(
        "node B to take the datagram",
        Duration::from_secs(15),
        || udp(&lab, NODE_B_METRICS, "rx") + drops(&lab, NODE_B_METRICS, "loop_protection") >= 1,
    );
    // A loop runs at thousands of datagrams a second: 2 s shows it.
    std::thread::sleep(Duration::from_secs(2));
    let (a_tx, b_tx) = (
        udp(&lab, NODE_A_METRICS, "tx"),
        udp(&lab, NODE_B_METRICS, "tx"),
    );
    assert_eq!(
        (a_tx, b_tx),
        (0, 0),
        "the spoofed datagram bounced: node A sent {a_tx} datagrams, node B {b_tx}"
    );
    assert_eq!(drops(&lab, NODE_B_METRICS, "loop_protection"), 1);
    assert_eq!(udp(&lab, NODE_A_METRICS, "rx"), 0);

    // Martians and the rest: no answer, each counted.
    let icmp_before = node_metric(&lab, NODE_B_METRICS, "shardnet_icmp_echo_replies_total", "");
    let report = json_of(&lab.peer(&[
        "/usr/bin/python3",
        &peer_script("martians.py"),
        "martians",
        "--iface",
        &lab.peer_if,
        "--dst-mac",
        &b_mac,
        "--dst-ip",
        DUT_IP,
        "--peer-ip",
        PEER_IP,
        "--wait",
        "2",
    ]));
    assert_eq!(report["answers"], serde_json::json!([]), "{report}");
    // Already counted once: the spoofed datagram above.
    let earlier: HashMap<&str, u64> = HashMap::from([("loop_protection", 1)]);
    let sent = report["sent"].as_object().unwrap();
    let expected =
        |reason: &str| sent[reason].as_u64().unwrap() + earlier.get(reason).unwrap_or(&0);
    wait_for("every frame counted", Duration::from_secs(10), || {
        sent.keys()
            .all(|r| drops(&lab, NODE_B_METRICS, r) >= expected(r))
    });
    for reason in sent.keys() {
        assert_eq!(
            drops(&lab, NODE_B_METRICS, reason),
            expected(reason),
            "drops of {reason}: {report}"
        );
    }
    assert_eq!(udp(&lab, NODE_B_METRICS, "tx"), 0);
    assert_eq!(
        node_metric(&lab, NODE_B_METRICS, "shardnet_icmp_echo_replies_total", ""),
        icmp_before
    );
    assert_eq!(
        node_metric(
            &lab,
            NODE_B_METRICS,
            "shardnet_tcp_resets_total",
            "direction=\"tx\""
        ),
        0
    );
    a.stop();
    b.stop();
}
