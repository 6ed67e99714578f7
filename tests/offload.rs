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

fn config(tap: &str, tx_checksum: &str) -> String {
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
"#
    )
}

/// The peer's exchange: a 64 KiB TCP echo, 20 UDP echoes and 20 reversed
/// datagrams, each compared byte for byte; prints "ok".
const PEER: &str = r#"
import os, socket, sys
dut = sys.argv[1]
data = os.urandom(65536)
s = socket.create_connection((dut, 7), timeout=10)
s.sendall(data)
back = b""
while len(back) < len(data):
    chunk = s.recv(65536)
    if not chunk:
        break
    back += chunk
s.close()
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

fn run(tx_checksum: &str, log_says: &str) {
    let lab = Lab::with_prefix("ofl");
    let tap = format!("{}t", lab.dut_if);
    let kernel_cidr = format!("{KERNEL_IP}/24");
    let program = example("async_udp");
    let mut app = lab.start_program(&program, "async_udp", &config(&tap, tx_checksum));
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
fn the_kernel_accepts_what_shardnet_sends_with_tx_checksum_offload_on_net_tap() {
    run("auto", "ipv4 udp tcp");
}

#[test]
fn the_kernel_accepts_what_shardnet_sends_with_software_checksums_on_net_tap() {
    run("software", "none (software)");
}
