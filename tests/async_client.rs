//! Active opens from an async service (`examples/tcp_proxy.rs`): each
//! connection a Linux client makes to shardnet makes shardnet connect out
//! to a Linux server in the peer namespace (`TcpStream::connect`), relay
//! the request and the answer. Two workers, so the source ports must steer
//! the server's replies home; a closed upstream port surfaces as
//! `ConnectionRefused`. Over AF_PACKET and DPDK's `net_af_packet`. Needs
//! root.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{assert_client_ok, example, metric_sum, scrape, wait_for, Lab, DUT_IP, PEER_IP};

const METRICS: &str = "127.0.0.1:9464";

/// The Linux server: on 9090, reads to EOF, answers "REPLY:" and the
/// request upper-cased, closes.
const SERVER: &str = r#"
import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        data = self.rfile.read()
        self.wfile.write(b"REPLY:" + data.upper())
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 9090), H).serve_forever()
"#;

/// The Linux client: 60 requests through the proxy to 9090, then 3 to the
/// closed port 9 upstream. Prints what failed and exits non-zero on any.
const CLIENT: &str = r#"
import socket, sys
dst = sys.argv[1]
def ask(port, body):
    s = socket.create_connection((dst, 7080), timeout=20)
    s.sendall(b"%d\n" % port + body)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    return got
bad = []
for i in range(60):
    body = b"hello %d " % i + b"x" * (i * 37)
    got = ask(9090, body)
    if got != b"REPLY:" + body.upper():
        bad.append(("relay", i, got[:40]))
for i in range(3):
    got = ask(9, b"nobody")
    if got != b"error: ConnectionRefused":
        bad.append(("refused", i, got[:40]))
print("bad:", bad)
sys.exit(1 if bad else 0)
"#;

/// Kills the Linux server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proxy(backend: &str) {
    let lab = Lab::new();
    let server = Server(
        Command::new("ip")
            .args(["netns", "exec", &lab.peer_ns, "python3", "-c", SERVER])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the Linux server"),
    );
    wait_for(
        "the Linux server to listen",
        Duration::from_secs(10),
        || {
            let out = lab.peer(&["ss", "-Htln", "sport = :9090"]);
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        },
    );
    let text = format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n\
         [[rule]]\nname = \"proxy\"\nprotocol = \"tcp\"\nports = [7080]\nservice = \"proxy\"\n",
        lab.dataplane(backend, 4096)
    );
    let mut app = lab.start_program_with(
        &example("tcp_proxy"),
        "tcp_proxy",
        &text,
        &["--upstream", PEER_IP],
    );
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let out = lab.peer(&["/usr/bin/python3", "-c", CLIENT, DUT_IP]);
    // Replies come home: whatever worker the port handed a frame to,
    // steering delivered it to the worker whose table holds the
    // connection, and none was lost on the way (the workers publish their
    // counters in turn, so wait until both sides agree).
    let mut metrics = String::new();
    let mut steered = (0.0, 0.0);
    wait_for("steered out = steered in", Duration::from_secs(10), || {
        metrics = scrape(&lab, METRICS);
        steered = (
            metric_sum(
                &metrics,
                "shardnet_steered_packets_total",
                &["direction=\"out\""],
            ),
            metric_sum(
                &metrics,
                "shardnet_steered_packets_total",
                &["direction=\"in\""],
            ),
        );
        steered.0 == steered.1
    });
    let log = app.stop();
    drop(server);
    assert_client_ok("the peer's client", &out, &log);
    // Every relayed request made one active open that completed.
    let active = metric_sum(
        &metrics,
        "shardnet_tcp_connections_opened_total",
        &["=\"active\""],
    );
    assert!(active >= 60.0, "active opens: {active}\n{metrics}");
    eprintln!("steered (out, in): {steered:?}");
}

#[test]
fn an_async_proxy_connects_out_to_a_linux_server_over_af_packet() {
    proxy("af_packet");
}

#[test]
fn an_async_proxy_connects_out_to_a_linux_server_over_dpdk() {
    proxy("dpdk");
}
