//! TX checksum offload on DPDK against the Linux kernel: shardnet (the
//! `async_udp` example, which also serves the built-in echo) runs on a
//! `net_tap` port, which reports the IPv4, UDP and TCP TX checksum offloads;
//! the kernel of the same namespace, on the TAP's other end, is the peer. A
//! TCP echo, a UDP echo (turned around in place) and the async UDP service's
//! replies (built afresh, so offloaded) must complete, with no checksum
//! errors in the kernel's counters (`nstat`: `TcpInCsumErrors`,
//! `UdpInCsumErrors`, `InCsumErrors`), under `[dpdk] tx_checksum = "auto"`
//! (the start log says "TX checksum offload: ipv4 udp tcp") and
//! `"software"` (it says "none (software)").
//!
//! TCP segmentation offload goes with the first: net_tap reports TSO, so
//! the 4 MiB echo leaves in segments of up to 64 KiB that the PMD cuts
//! (`shardnet_tcp_tso_segments_total` > 0); under `"software"` the stack
//! cuts them itself (0 there). The kernel's TCP checksum and in-order
//! delivery of the cut frames are what is checked.
//!
//! `net_tap` has no hardware: its TX path fills the requested checksums in
//! software (`tap_tx_l4_cksum`), so this checks that shardnet asks
//! correctly (flags, header lengths, pseudo-header sums), not any speed-up.
//!
//! Needs root (network namespaces); fails, never skips, when it cannot set
//! up. `--no-pci`, no hugepages.
#![cfg(feature = "dpdk")]

mod common;

use std::time::{Duration, Instant};

use common::{example, Lab};

/// The kernel's address on the TAP (the peer).
const KERNEL_IP: &str = "198.18.43.1";
/// The stack's address.
const STACK_IP: &str = "198.18.43.2";

fn config(tap: &str, tx_checksum: &str, mss: u16) -> String {
    format!(
        r#"[dataplane]
backend = "dpdk"
workers = [1]
control_core = 0
idle = "adaptive"

[dpdk]
eal_args = ["--no-pci", "--no-huge", "--no-shconf", "-m", "512", "--vdev=net_tap0,iface={tap}"]
port = 0
mbufs_per_worker = 4095
tx_checksum = "{tx_checksum}"

[interface]
address = "{STACK_IP}/24"
mac = "auto"

[tcp]
mss = {mss}

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[[rule]]
name = "tcp-echo"
protocol = "tcp"
ports = [7]
service = "echo"

[[rule]]
name = "reverse"
protocol = "udp"
ports = [7072]
service = "reverse"

[default]
action = "drop"

[metrics]
listen = "127.0.0.1:{METRICS_PORT}"
"#
    )
}

/// The control endpoint, in the DUT's namespace.
const METRICS_PORT: u16 = 19493;

/// The peer's exchange: a 4 MiB TCP echo (written by a thread while the
/// main one reads), 20 UDP echoes and 20 reversed datagrams, each compared
/// byte for byte; prints "ok".
const PEER: &str = r#"
import os, socket, sys, threading
dut = sys.argv[1]
data = os.urandom(4 << 20)
s = socket.create_connection((dut, 7), timeout=10)
writer = threading.Thread(target=s.sendall, args=(data,))
writer.start()
back = bytearray()
while len(back) < len(data):
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    back += chunk
writer.join()
s.close()
back = bytes(back)
assert back == data, f"TCP echo: {len(back)} of {len(data)} bytes, equal={back == data[:len(back)]}"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
for i in range(20):
    for port, want in ((7, None), (7072, "reverse")):
        payload = os.urandom(100 + 37 * i)
        for attempt in range(5):
            u.sendto(payload, (dut, port))
            try:
                got, frm = u.recvfrom(4096)
                break
            except socket.timeout:
                continue
        else:
            raise SystemExit(f"no reply from UDP port {port}")
        expect = payload[::-1] if want else payload
        assert got == expect, f"UDP {port}: wrong reply"
print("ok")
"#;

/// The kernel's absolute counters `names` in the DUT namespace.
fn nstat(lab: &Lab, names: &[&str]) -> Vec<(String, u64)> {
    let mut args = vec!["nstat", "-a", "-z", "-s"];
    args.extend_from_slice(names);
    let out = lab.dut(&args);
    assert!(
        out.status.success(),
        "nstat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    names
        .iter()
        .map(|name| {
            let value = text
                .lines()
                .find_map(|l| {
                    let mut f = l.split_whitespace();
                    (f.next() == Some(name)).then(|| f.next()?.parse().ok())?
                })
                .unwrap_or_else(|| panic!("nstat has no {name}:\n{text}"));
            (name.to_string(), value)
        })
        .collect()
}

/// What becomes of TSO in a run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tso {
    /// Off: the stack cuts every segment.
    Off,
    /// On, and the PMD cuts the segments.
    Works,
    /// On, but the PMD refuses the segments (DPDK 22.11's net_tap compares
    /// each cut frame, Ethernet header included, with the MTU, so a full
    /// 1460-byte MSS fails): the queue gives TSO up after a few and the
    /// stack cuts.
    GivesUp,
}

/// Run the exchange with `[dpdk] tx_checksum = tx_checksum` and `[tcp] mss
/// = mss`; the start log must say `log_says` of the checksums; `tso` says
/// what TSO must do.
fn run(tx_checksum: &str, log_says: &str, mss: u16, tso: Tso) {
    let lab = Lab::with_prefix("ofl");
    let tap = format!("{}t", lab.dut_if);
    let kernel_cidr = format!("{KERNEL_IP}/24");
    let program = example("async_udp");
    let mut app = lab.start_program(&program, "async_udp", &config(&tap, tx_checksum, mss));
    // Wait (bounded) for the TAP, then give the kernel its end.
    let start = Instant::now();
    loop {
        if let Some(status) = app.has_exited() {
            panic!("async_udp exited early ({status}):\n{}", app.log_text());
        }
        if lab.dut(&["ip", "link", "show", &tap]).status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no TAP {tap} after 60 s:\n{}",
            app.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for args in [
        vec!["ip", "addr", "add", &kernel_cidr, "dev", &tap],
        vec!["ip", "link", "set", &tap, "up"],
    ] {
        let out = lab.dut(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The stack answers once its worker runs: ping, bounded.
    let start = Instant::now();
    while !lab
        .dut(&["ping", "-c", "1", "-W", "1", STACK_IP])
        .status
        .success()
    {
        if let Some(status) = app.has_exited() {
            panic!("async_udp exited early ({status}):\n{}", app.log_text());
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the stack did not answer ping within 60 s:\n{}",
            app.log_text()
        );
    }
    let out = lab.dut(&["python3", "-c", PEER, STACK_IP]);
    let log = app.log_text();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "peer failed: {}{}\nlog:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log.contains(&format!("TX checksum offload: {log_says}")),
        "the start log should say \"TX checksum offload: {log_says}\":\n{log}"
    );
    assert_eq!(
        log.contains("TCP segmentation offload (TSO): on"),
        tso != Tso::Off,
        "TSO on exactly when the checksums are offloaded (net_tap has it):\n{log}"
    );
    assert_eq!(
        log.contains("TSO off on this queue"),
        tso == Tso::GivesUp,
        "the queue gives TSO up only where the PMD refuses it:\n{log}"
    );
    let url = format!("http://127.0.0.1:{METRICS_PORT}/metrics");
    let scrape = lab.dut(&["curl", "-sf", "--max-time", "5", &url]);
    assert!(scrape.status.success(), "cannot scrape {url}");
    let text = String::from_utf8_lossy(&scrape.stdout).into_owned();
    let tso_segments = common::metric_sum(&text, "shardnet_tcp_tso_segments_total", &[]);
    let tx_segments =
        common::metric_sum(&text, "shardnet_tcp_segments_total", &["direction=\"tx\""]);
    let retransmits = common::metric_sum(&text, "shardnet_tcp_retransmits_total", &[]);
    let tx_full = common::metric_sum(&text, "shardnet_drops_total", &["reason=\"tx_full\""]);
    eprintln!(
        "{tx_checksum}, mss {mss}: {tso_segments} TSO segments, {tx_segments} segments sent, \
         {retransmits} retransmitted, {tx_full} tx_full drops"
    );
    // 4 MiB in frames of at most `mss` bytes, each counted once.
    let frames = f64::from((4u32 << 20).div_ceil(u32::from(mss) - 12));
    assert!(tx_segments >= frames, "{tx_segments} frames counted");
    match tso {
        Tso::Off => assert_eq!(tso_segments, 0.0),
        Tso::Works => {
            // Segments of up to 64 KiB: most of 4 MiB offloaded, none
            // refused, so nothing resent.
            assert!(tso_segments >= 16.0, "{tso_segments} TSO segments");
            assert_eq!(tx_full, 0.0);
            assert!(retransmits < frames / 10.0, "{retransmits} retransmissions");
        }
        Tso::GivesUp => {
            // The refused segments were counted and resent; then the stack cut.
            assert!((1.0..=4.0).contains(&tso_segments), "{tso_segments}");
            assert!(tx_full >= tso_segments, "{tx_full} tx_full drops");
        }
    }
    let counters = nstat(
        &lab,
        &[
            "IpInReceives",
            "IpInHdrErrors",
            "TcpInSegs",
            "TcpInCsumErrors",
            "UdpInDatagrams",
            "UdpInCsumErrors",
            "UdpInErrors",
        ],
    );
    for (name, value) in &counters {
        let want_traffic = matches!(
            name.as_str(),
            "IpInReceives" | "TcpInSegs" | "UdpInDatagrams"
        );
        if want_traffic {
            assert!(*value > 0, "{name} is 0: {counters:?}");
        } else {
            assert_eq!(*value, 0, "{name}: {counters:?}");
        }
    }
    let link = lab.dut(&["ip", "-s", "link", "show", &tap]);
    eprintln!(
        "{tx_checksum}: {counters:?}\n{}",
        String::from_utf8_lossy(&link.stdout)
    );
    app.stop();
}

#[test]
fn the_kernel_accepts_what_shardnet_sends_with_tx_checksum_offload_and_tso_on_net_tap() {
    // net_tap takes TSO frames of at most the MTU with their headers: an
    // MSS of 1400 leaves room for them.
    run("auto", "ipv4 udp tcp", 1400, Tso::Works);
}

#[test]
fn a_queue_whose_pmd_refuses_tso_segments_gives_it_up_and_the_stack_cuts() {
    run("auto", "ipv4 udp tcp", 1460, Tso::GivesUp);
}

#[test]
fn the_kernel_accepts_what_shardnet_sends_with_software_checksums_on_net_tap() {
    run("software", "none (software)", 1460, Tso::Off);
}
