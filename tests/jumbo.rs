//! Jumbo frames end to end: `[interface] mtu = 9000` on a veth whose Linux
//! peer has MTU 9000 too. A multi-megabyte TCP echo with 8960-byte segments
//! must come back intact (SHA-256 compared), with segments larger than a
//! 1500-byte MTU allows seen both ways (the peer's `tcp_info`: `snd_mss` is
//! what it sends shardnet, `rcv_mss` the largest segment shardnet sent it).
//! On AF_PACKET and on DPDK (a `net_af_packet` vdev, `--no-pci`).
//!
//! Also `shardnet check` on the MTU and MSS keys, and `run` refusing an
//! AF_PACKET interface whose MTU is below `[interface] mtu`.
//!
//! Needs root (namespaces, veth); fails rather than skips without it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{peer_script, Lab, DUT_IP};

/// Namespace and interface names start with this (other test files run
/// beside this one).
const PREFIX: &str = "mtu";
/// MiB echoed per connection.
const ECHO_MIB: &str = "6";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn set_mtu(lab: &Lab, ns: &str, interface: &str, mtu: u32) {
    let out = Command::new("ip")
        .args(["-n", ns, "link", "set", "dev", interface, "mtu"])
        .arg(mtu.to_string())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "cannot set MTU {mtu} on {interface} in {ns}: {}",
        text(&out.stderr)
    );
    let _ = lab;
}

/// The config after `[dataplane]` and the backend's section.
const REST: &str = r#"
[interface]
address = "198.18.0.2/24"
mtu = 9000

[kernel]
enabled = false

[[rule]]
name = "echo"
protocol = "tcp"
ports = "7"
service = "echo"

[[rule]]
name = "udp-echo"
protocol = "udp"
ports = "7"
service = "echo"

[default]
action = "drop"
"#;

/// A TCP echo of `ECHO_MIB` MiB from the Linux peer; asserts the bytes and
/// the segment sizes.
fn jumbo_echo(lab: &Lab, what: &str, log: impl Fn() -> String) {
    let script = peer_script("tcp_peer.py");
    let out = lab.peer(&[
        "timeout",
        "90",
        "/usr/bin/python3",
        &script,
        "echo",
        "--dst",
        DUT_IP,
        "--port",
        "7",
        "--mib",
        ECHO_MIB,
        "--timeout",
        "60",
    ]);
    assert!(
        out.status.success(),
        "{what}: tcp_peer.py failed: {}\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        log()
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: bad JSON ({e}): {}", text(&out.stdout)));
    assert_eq!(result["timed_out"], false, "{what}: {result}\n{}", log());
    assert_eq!(result["eof"], true, "{what}: {result}\n{}", log());
    assert_eq!(
        result["sha256_received"],
        result["sha256_sent"],
        "{what}: echo differs: {result}\n{}",
        log()
    );
    assert_eq!(result["match"], true, "{what}: {result}");
    // 8960 minus 12 bytes of timestamps option.
    let snd_mss = result["snd_mss"].as_u64().unwrap_or(0);
    let rcv_mss = result["rcv_mss"].as_u64().unwrap_or(0);
    assert!(
        snd_mss > 1460,
        "{what}: the peer sent segments of at most {snd_mss} bytes: {result}"
    );
    assert!(
        rcv_mss > 1460,
        "{what}: shardnet's largest segment was {rcv_mss} bytes: {result}"
    );
    eprintln!("{what}: {result}");
    udp_jumbo_echo(lab, what);
}

/// One UDP datagram of the largest payload a 9000-byte MTU carries (8972
/// bytes) echoed back whole by the UDP echo service (it answers in place);
/// a few tries, as UDP may lose the first before ARP settles.
fn udp_jumbo_echo(lab: &Lab, what: &str) {
    let script = format!(
        "import os, socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.settimeout(2)\n\
         data = os.urandom(8972)\n\
         for _ in range(5):\n\
         \x20   s.sendto(data, ('{DUT_IP}', 7))\n\
         \x20   try:\n\
         \x20       back = s.recv(65536)\n\
         \x20   except socket.timeout:\n\
         \x20       continue\n\
         \x20   print('match' if back == data else 'differs %d' % len(back))\n\
         \x20   break\n\
         else:\n\
         \x20   print('no reply')\n"
    );
    let out = lab.peer(&["timeout", "30", "/usr/bin/python3", "-c", &script]);
    assert_eq!(
        text(&out.stdout).trim(),
        "match",
        "{what}: UDP echo of 8972 bytes: {}",
        text(&out.stderr)
    );
}

#[test]
fn af_packet_tcp_echo_with_jumbo_frames() {
    let lab = Lab::with_prefix(PREFIX);
    set_mtu(&lab, &lab.peer_ns, &lab.peer_if, 9000);
    set_mtu(&lab, &lab.dut_ns, &lab.dut_if, 9000);
    let config = format!("{}{REST}", lab.dataplane("af_packet", 0));
    let mut shardnet = lab.start_shardnet(&config);
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(30));
    jumbo_echo(&lab, "af_packet", || shardnet.log_text());
    let log = shardnet.stop();
    assert!(log.contains("mtu=9000"), "{log}");
}

#[test]
fn af_packet_refuses_an_interface_mtu_below_the_configured_one() {
    let lab = Lab::with_prefix(PREFIX);
    // The DUT's veth stays at 1500.
    let config = format!("{}{REST}", lab.dataplane("af_packet", 0));
    let path = lab.path("low.toml");
    std::fs::write(&path, config).unwrap();
    let out = lab.run_shardnet(&path);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let expected = format!(
        "interface {dut} has MTU 1500, less than [interface] mtu 9000: raise it \
         (ip link set dev {dut} mtu 9000) or lower [interface] mtu",
        dut = lab.dut_if
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The `[dataplane]` and `[dpdk]` sections of a DPDK config with `vdev`.
#[cfg(feature = "dpdk")]
fn dpdk_dataplane(workers: &str, vdev: &str) -> String {
    format!(
        r#"
[dataplane]
backend = "dpdk"
workers = {workers}
control_core = 0
idle = "adaptive"

[dpdk]
eal_args = ["--no-pci", "--no-huge", "--no-shconf", "-m", "512", "--vdev={vdev}"]
port = 0
mbufs_per_worker = 4095
rx_descriptors = 512
tx_descriptors = 512
"#
    )
}

/// DPDK 22.11's net_af_packet and net_tap take frames of at most 1518 and
/// 1522 bytes (`max_rx_pktlen`), whatever the interface's MTU: net_pcap on
/// the veth is the vdev here that takes jumbo frames (one queue pair, so
/// one worker). Its receive side sees only incoming frames (`rx_iface_in`).
#[cfg(feature = "dpdk")]
#[test]
fn dpdk_tcp_echo_with_jumbo_frames() {
    let lab = Lab::with_prefix(PREFIX);
    set_mtu(&lab, &lab.peer_ns, &lab.peer_if, 9000);
    set_mtu(&lab, &lab.dut_ns, &lab.dut_if, 9000);
    let vdev = format!(
        "net_pcap0,rx_iface_in={dut},tx_iface={dut}",
        dut = lab.dut_if
    );
    let config = format!("{}{REST}", dpdk_dataplane("[1]", &vdev));
    let mut shardnet = lab.start_shardnet(&config);
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(60));
    jumbo_echo(&lab, "dpdk", || shardnet.log_text());
    let log = shardnet.stop();
    assert!(log.contains("mtu=Some(9000)"), "{log}");
}

/// A device that cannot take the MTU is refused at start in one sentence
/// (22.11's net_af_packet with 2048-byte ring frames).
#[cfg(feature = "dpdk")]
#[test]
fn dpdk_refuses_an_mtu_the_device_cannot_take() {
    let lab = Lab::with_prefix(PREFIX);
    let vdev = format!("net_af_packet0,iface={},qpairs=2", lab.dut_if);
    let config = format!("{}{REST}", dpdk_dataplane("[0, 1]", &vdev));
    let path = lab.path("af.toml");
    std::fs::write(&path, config).unwrap();
    let out = lab.run_shardnet(&path);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    // 22.11 refuses it by max_rx_pktlen (1518), before configuring;
    // a release whose net_af_packet reports more refuses it at set_mtu
    // (2048-byte ring frames).
    assert!(
        last.starts_with("shardnet: DPDK port 0 (net_af_packet): ")
            && last.contains("[interface] mtu 9000"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A device whose own MTU call refuses the MTU is refused in one sentence
/// (net_af_packet with 1024-byte ring frames, at MTU 1500).
#[cfg(feature = "dpdk")]
#[test]
fn dpdk_refuses_an_mtu_the_driver_will_not_set() {
    let lab = Lab::with_prefix(PREFIX);
    let vdev = format!("net_af_packet0,iface={},qpairs=1,framesz=1024", lab.dut_if);
    let config = format!(
        "{}{}",
        dpdk_dataplane("[1]", &vdev),
        REST.replace("mtu = 9000", "mtu = 1500")
    );
    let path = lab.path("small.toml");
    std::fs::write(&path, config).unwrap();
    let out = lab.run_shardnet(&path);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "shardnet: DPDK port 0 (net_af_packet): the device refuses [interface] mtu 1500 \
             (rte_eth_dev_set_mtu: "
        ),
        "{stderr}"
    );
}

fn shardnet_check(path: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardnet"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .expect("run shardnet check");
    (
        out.status.code().expect("exit code"),
        text(&out.stdout) + &text(&out.stderr),
    )
}

#[test]
fn check_refuses_an_mss_the_mtu_cannot_carry_and_an_mtu_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let base = "[dataplane]\nbackend = \"af_packet\"\nworkers = [0]\n\n[af_packet]\n\
                interface = \"mtu-none\"\n\n[interface]\naddress = \"198.18.0.2/24\"\n\
                {MTU}\n[tcp]\nmss = 8960\n\n[[rule]]\nname = \"e\"\nprotocol = \"tcp\"\n\
                ports = 7\nservice = \"echo\"\n";
    let p = path.display().to_string();
    let cases: [(&str, i32, String); 4] = [
        (
            "",
            1,
            format!(
                "{p}:12:7: mss 8960 is larger than [interface] mtu 1500 minus 40 bytes of IPv4 \
                 and TCP headers (1460); raise mtu"
            ),
        ),
        ("mtu = 9000", 0, format!("{p}: OK")),
        (
            "mtu = 9001",
            1,
            format!("{p}:10:7: mtu 9001 is out of range 576-9000 bytes"),
        ),
        (
            "mtu = 575",
            1,
            format!("{p}:10:7: mtu 575 is out of range 576-9000 bytes"),
        ),
    ];
    for (mtu, code, expected) in cases {
        std::fs::write(&path, base.replace("{MTU}", mtu)).unwrap();
        let (got, output) = shardnet_check(&path);
        assert_eq!(got, code, "{mtu:?}: {output}");
        assert!(
            output.contains(&expected),
            "{mtu:?}: {expected:?} not in:\n{output}"
        );
        assert!(!output.contains("panicked"), "{output}");
    }
}
