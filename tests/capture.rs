//! `shardnet capture` against real tools, on AF_PACKET and on DPDK
//! (`net_af_packet` vdev, `--no-pci`): a Linux peer makes a known exchange
//! with the stack (3 UDP echo datagrams with distinct payloads, one ping,
//! one TCP connection to the echo rule) while `shardnet capture --filter`
//! runs; tshark and scapy must read back exactly those frames, both ways.
//! `--count` stops by itself; a filter that matches nothing leaves an empty
//! valid pcap; a bad filter is a one-sentence error.
//!
//! Needs root (network namespaces); fails, never skips, when it cannot set up.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{wait_for, Lab, DUT_IP, PEER_IP};

fn config(lab: &Lab, backend: &str) -> String {
    let dataplane = lab.dataplane(backend, 4095);
    let admin = lab.path("admin.sock").display().to_string();
    format!(
        r#"{dataplane}
[interface]
address = "{DUT_IP}/24"
mac = "auto"

[metrics]
listen = "127.0.0.1:9464"
admin_socket = "{admin}"

[[rule]]
name = "udp-echo"
protocol = "udp"
ports = "7"
service = "echo"

[[rule]]
name = "tcp-echo"
protocol = "tcp"
ports = [7]
service = "echo"

[default]
action = "drop"
"#
    )
}

fn shardnet_bin() -> &'static str {
    env!("CARGO_BIN_EXE_shardnet")
}

/// Start `shardnet capture` with `args`; wait until its file holds the pcap
/// header (the capture is on).
fn start_capture(lab: &Lab, file: &Path, args: &[&str]) -> Child {
    let admin = lab.path("admin.sock");
    let child = Command::new(shardnet_bin())
        .arg("capture")
        .arg("--control")
        .arg(&admin)
        .args(args)
        .arg("-w")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start shardnet capture");
    wait_for("the capture's pcap header", Duration::from_secs(10), || {
        std::fs::metadata(file).is_ok_and(|m| m.len() >= 24)
    });
    child
}

/// Wait (bounded) for the capture to exit; its output.
fn finish(child: Child, interrupt: bool) -> Output {
    if interrupt {
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success());
    }
    let start = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("shardnet capture did not exit within 15 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const EXCHANGE: &str = r#"
import socket, sys
dut = sys.argv[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
for i in range(3):
    msg = b"capture-udp-%d" % i
    u.sendto(msg, (dut, 7))
    data, _ = u.recvfrom(2048)
    assert data == msg, data
t = socket.create_connection((dut, 7), timeout=5)
t.sendall(b"capture-tcp")
got = b""
while len(got) < 11:
    chunk = t.recv(100)
    if not chunk:
        break
    got += chunk
assert got == b"capture-tcp", got
t.close()
"#;

/// What a pcap holds, as tshark reads it: one line per frame,
/// `ip.src ip.dst ip.proto`.
fn tshark(file: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(file)
        .args([
            "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto",
        ])
        .output()
        .expect("cannot run tshark (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "tshark cannot read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

const SCAPY: &str = r#"
import sys
from scapy.all import rdpcap, IP, UDP, TCP, ICMP, Raw
frames = rdpcap(sys.argv[1])
peer, dut = sys.argv[2], sys.argv[3]
udp_in = sorted(bytes(p[Raw].load) for p in frames if UDP in p and p[IP].src == peer)
udp_out = sorted(bytes(p[Raw].load) for p in frames if UDP in p and p[IP].src == dut)
want = [b"capture-udp-%d" % i for i in range(3)]
assert udp_in == want, udp_in
assert udp_out == want, udp_out
icmp = [(p[IP].src, p[ICMP].type) for p in frames if ICMP in p]
assert sorted(icmp) == sorted([(peer, 8), (dut, 0)]), icmp
tcp = [p for p in frames if TCP in p]
flags = [(p[IP].src, str(p[TCP].flags)) for p in tcp]
assert (peer, "S") in flags and (dut, "SA") in flags, flags
data_in = b"".join(bytes(p[Raw].load) for p in tcp if Raw in p and p[IP].src == peer)
data_out = b"".join(bytes(p[Raw].load) for p in tcp if Raw in p and p[IP].src == dut)
assert data_in == b"capture-tcp" and data_out == b"capture-tcp", (data_in, data_out)
assert all(p[IP].src in (peer, dut) and p[IP].dst in (peer, dut) for p in frames)
print(len(frames))
"#;

fn capture_on(backend: &str) {
    let lab = Lab::with_prefix("cap");
    let mut shardnet = lab.start_shardnet(&config(&lab, backend));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(60));

    // A bad filter: one sentence, exit 1, nothing started.
    let bad = Command::new(shardnet_bin())
        .args(["capture", "--control"])
        .arg(lab.path("admin.sock"))
        .args(["--filter", "udp and", "-w"])
        .arg(lab.path("bad.pcap"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("capture filter") && err.trim().lines().count() == 1,
        "{err}"
    );

    // No such worker: one sentence too.
    let bad = Command::new(shardnet_bin())
        .args(["capture", "--worker", "9", "--control"])
        .arg(lab.path("admin.sock"))
        .args(["-w"])
        .arg(lab.path("bad.pcap"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no worker 9") && err.trim().lines().count() == 1,
        "{err}"
    );

    // A capture is a state change: not on the TCP listener.
    let out = lab.dut(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
        "-X",
        "POST",
        "http://127.0.0.1:9464/capture",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");

    // The known exchange, captured.
    let file = lab.path("exchange.pcap");
    let filter = format!("host {PEER_IP} and (udp and port 7 or icmp or tcp and port 7)");
    let capture = start_capture(&lab, &file, &["--filter", &filter]);
    let ping = lab.peer(&["ping", "-c", "1", "-W", "2", DUT_IP]);
    assert!(ping.status.success(), "ping failed");
    let script = lab.path("exchange.py");
    std::fs::write(&script, EXCHANGE).unwrap();
    let out = lab.peer(&["/usr/bin/python3", script.to_str().unwrap(), DUT_IP]);
    assert!(
        out.status.success(),
        "exchange failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The last frames (the FIN's ACK) reach the capture within a drain or two.
    std::thread::sleep(Duration::from_millis(500));
    let out = finish(capture, true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "capture failed: {err}\n{}",
        shardnet.log_text()
    );
    let lines = tshark(&file);
    let udp = |src: &str| {
        lines
            .iter()
            .filter(|l| {
                **l == format!("{src} {} 17", if src == PEER_IP { DUT_IP } else { PEER_IP })
            })
            .count()
    };
    assert_eq!(udp(PEER_IP), 3, "{lines:?}");
    assert_eq!(udp(DUT_IP), 3, "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(" 1")).count(),
        2,
        "{lines:?}"
    );
    // A TCP connection is at least SYN, SYN-ACK, ACK, data both ways, FINs.
    assert!(
        lines.iter().filter(|l| l.ends_with(" 6")).count() >= 7,
        "{lines:?}"
    );
    assert!(
        err.contains(&format!("{} frames written, 0 dropped", lines.len())),
        "{err}"
    );
    let scapy = lab.path("check.py");
    std::fs::write(&scapy, SCAPY).unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg(&scapy)
        .arg(&file)
        .args([PEER_IP, DUT_IP])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scapy: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // --count stops by itself.
    let file = lab.path("count.pcap");
    let capture = start_capture(&lab, &file, &["--count", "2", "--filter", "icmp"]);
    let start = Instant::now();
    let mut capture = Some(capture);
    let mut output = None;
    while output.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "--count 2 never stopped"
        );
        // One ping is 2 ICMP frames (request and reply); more if one is lost.
        lab.peer(&["ping", "-c", "1", "-W", "1", DUT_IP]);
        let child = capture.as_mut().unwrap();
        if child.try_wait().unwrap().is_some() {
            output = Some(capture.take().unwrap().wait_with_output().unwrap());
        }
    }
    let out = output.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tshark(&file).len(), 2);

    // A filter that matches nothing: an empty valid pcap.
    let file = lab.path("empty.pcap");
    let capture = start_capture(&lab, &file, &["--filter", "port 9999"]);
    lab.peer(&["ping", "-c", "1", "-W", "2", DUT_IP]);
    let out = finish(capture, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tshark(&file).is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 frames written"));

    shardnet.stop();
}

#[test]
fn capture_af_packet() {
    capture_on("af_packet");
}

#[test]
fn capture_dpdk() {
    capture_on("dpdk");
}
