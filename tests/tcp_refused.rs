//! Issue 16: a peer that injects thousands of segments a connection must
//! refuse (out of window, RSTs off the mark) gets the few ACKs Linux would
//! send, not one per segment; each refused segment is counted. Runs the real
//! binary (AF_PACKET backend, one worker) against a scapy peer over veth.
//! Needs root; fails, never skips, when it cannot set up.

mod common;

use std::time::Duration;

use common::{peer_script, Lab, DUT_IP, PEER_IP};

/// Segments injected per phase.
const COUNT: u64 = 2000;

#[test]
fn injected_refused_segments_draw_rate_limited_acks() {
    let lab = Lab::new();
    let config = format!(
        r#"
[dataplane]
backend = "af_packet"
workers = [0]
control_core = 0
idle = "adaptive"

[af_packet]
interface = "{}"

[interface]
address = "{DUT_IP}/24"
mac = "auto"

[[rule]]
name = "echo"
protocol = "tcp"
ports = "7"
service = "echo"

[default]
action = "drop"

[debug]
flow_record = "{}"
"#,
        lab.dut_if,
        lab.path("rec").display()
    );
    let mut shardnet = lab.start_shardnet(&config);
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));
    // The peer's kernel knows nothing of the hand-made connection: keep its
    // RSTs from closing it.
    let rules = "table inet refused { chain out { type filter hook output priority 0; \
                 tcp flags & rst == rst drop; }; }";
    let out = lab.peer(&["nft", rules]);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (dut_mac, count) = (lab.dut_mac(), COUNT.to_string());
    let script = peer_script("refused_acks.py");
    let out = lab.peer(&[
        "timeout",
        "120",
        "/usr/bin/python3",
        &script,
        "--iface",
        &lab.peer_if,
        "--dst-mac",
        &dut_mac,
        "--src-ip",
        PEER_IP,
        "--dst-ip",
        DUT_IP,
        "--count",
        &count,
    ]);
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "refused_acks.py ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    println!("refused segments: {result}");
    assert!(out.status.success(), "{result}");

    let log = shardnet.stop();
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.path("rec.stats.json")).unwrap()).unwrap();
    let tcp = &stats["workers"][0]["tcp"];
    let get = |name: &str| {
        tcp[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {tcp}\n{log}"))
    };
    println!("tcp counters: {tcp}");

    for (phase, sent, limited) in [
        (
            "stale",
            "out_of_window_acks_sent",
            "out_of_window_acks_limited",
        ),
        ("rst", "challenge_acks_sent", "challenge_acks_limited"),
    ] {
        let answers = result[phase]["answers"].as_u64().unwrap();
        let seconds = result[phase]["seconds"].as_f64().unwrap();
        // One ACK per 500 ms on the connection, at most (plus one for a
        // phase that straddles a boundary).
        let bound = (seconds / 0.5).ceil() as u64 + 1;
        assert!(
            answers <= bound,
            "{phase}: {answers} ACKs for {COUNT} segments in {seconds:.2} s (at most {bound})"
        );
        // Every refused segment that reached the connection is counted, as
        // answered or limited; a frame lost on the way is not answered at all.
        let counted = get(sent) + get(limited);
        assert!(
            (COUNT / 2..=COUNT).contains(&counted),
            "{phase}: {counted} counted: {tcp}"
        );
        assert!(get(sent) >= 1, "{phase}: the first one is answered: {tcp}");
    }
    assert_eq!(get("resets_rx"), 0, "no RST closed the connection: {tcp}");
}
