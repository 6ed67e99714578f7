//! Cross-core messages through `shardnet::Runtime` (`examples/smp_count.rs`):
//! two workers, each key's count kept on its owning worker, reached from
//! connections on either worker by an async service (`invoke_on`) and a
//! callback service (`invoke_on_then`). A Linux peer bumps 8 keys once per
//! connection over 64 connections: every key's answers must be exactly the
//! counts 1..=64 (each increment ran once, on one owner), and the smp
//! counters must account for every message. Over AF_PACKET and DPDK.
//! Needs root.

mod common;

use std::time::Duration;

use common::{assert_client_ok, example, metric_sum, scrape, smp_messages, Lab, DUT_IP};

const METRICS: &str = "127.0.0.1:9466";

/// 64 connections (from distinct source ports, so both workers get some),
/// alternating between the async (7080) and the callback (7081) service,
/// each sending the 8 keys one line at a time and reading each answer.
/// Prints `{key: [(owner, count), ...]}` as JSON.
const CLIENT: &str = r#"
import json, socket, sys
dst = sys.argv[1]
seen = {}
for i in range(64):
    s = socket.create_connection((dst, 7080 + i % 2), timeout=10)
    f = s.makefile("rwb")
    for k in range(8):
        key = "key%d" % k
        f.write((key + "\n").encode())
        f.flush()
        line = f.readline().decode().split()
        seen.setdefault(key, []).append(line)
    s.close()
print(json.dumps(seen))
"#;

fn run(backend: &str) {
    let lab = Lab::with_prefix("snm");
    let text = format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n\
         [[rule]]\nname = \"count\"\nprotocol = \"tcp\"\nports = [7080]\nservice = \"count\"\n\n\
         [[rule]]\nname = \"tally\"\nprotocol = \"tcp\"\nports = [7081]\nservice = \"tally\"\n",
        lab.dataplane(backend, 4096)
    );
    let mut app = lab.start_program(&example("smp_count"), "smp_count", &text);
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let out = lab.peer(&["/usr/bin/python3", "-c", CLIENT, DUT_IP]);
    let metrics = scrape(&lab, METRICS);
    let log = app.stop();
    assert_client_ok("the peer's client", &out, &log);
    let seen: std::collections::BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_slice(&out.stdout).expect("the client's JSON");
    assert_eq!(seen.len(), 8, "{seen:?}");
    let mut owners = std::collections::BTreeSet::new();
    for (key, answers) in &seen {
        assert_eq!(answers.len(), 64, "{key}: {answers:?}");
        let owner = &answers[0][0];
        owners.insert(owner.clone());
        let mut counts: Vec<u64> = answers
            .iter()
            .map(|a| {
                assert_eq!(a.len(), 2, "{key}: an error answer {a:?}\nlog:\n{log}");
                assert_eq!(&a[0], owner, "{key}: one owner");
                a[1].parse().expect("a count")
            })
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=64).collect::<Vec<u64>>(), "{key}");
    }
    assert_eq!(owners.len(), 2, "the keys spread over both workers");
    // 512 requests; the callback service's 256 also send their result back.
    let (sent, received, full) = smp_messages(&metrics);
    assert_eq!((sent, received, full), (768.0, 768.0, 0.0), "{metrics}");
    for worker in ["worker=\"0\"", "worker=\"1\""] {
        assert!(
            metric_sum(
                &metrics,
                "shardnet_smp_messages_total",
                &[worker, "direction=\"received\""]
            ) > 0.0,
            "{worker} ran messages: {metrics}"
        );
    }
}

#[test]
fn sharded_counts_are_kept_by_their_owner_over_af_packet() {
    run("af_packet");
}

#[test]
fn sharded_counts_are_kept_by_their_owner_over_dpdk() {
    run("dpdk");
}
