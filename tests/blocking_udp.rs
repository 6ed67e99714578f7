//! `examples/blocking_udp.rs`: the standard library's UDP tests
//! (rust-lang/rust `library/std/src/net/udp/tests.rs`) ported to shardnet's
//! blocking `UdpSocket`, and its client sockets (bound to port 0), against
//! Linux sockets in the peer namespace, with two workers over AF_PACKET and
//! DPDK (`net_af_packet`). Needs root.
//!
//! Ported (std's names): `bind_error`, `socket_smoke_test_ip4`,
//! `socket_and_peer_name`, `udp_clone_smoke`, `udp_clone_two_read`,
//! `udp_clone_two_write`, `debug`, `timeouts`, `test_read_timeout`,
//! `test_read_with_timeout`, `test_timeout_zero_duration`,
//! `connect_send_recv`, `connect_send_peek_recv`, `peek_from`,
//! `set_nonblocking`,
//! `send_datagram_larger_than_c_int_max` (larger than one frame here).
//! std's second loopback socket is a Linux socket of the peer (an echo, a
//! "whoami", a "sender"); `each_ip` runs each case with a client socket
//! (port 0) and with a socket on a port of the rules.
//!
//! Left out: `ttl` (no per-socket TTL), `hop_limit` (IPv6). Added: `client_port_any_destination`
//! (replies from four destinations, spread over both workers by the
//! steering, all reach one client socket), `client_port_freed_on_drop`
//! (a 4-port `local_ports` range: the fifth bind is `AddrInUse`, a drop
//! frees a port at once).
//!
//! UDP may lose a datagram on a loaded machine: the example retries every
//! exchange (each receive bounded by a read timeout) rather than assume no
//! loss.

mod common;

use std::time::Duration;

use common::{assert_client_ok, example, Lab, DUT_IP, PEER_IP};

/// The peer: UDP echo servers on 9003 and 9006-9008, a whoami on 9004 and
/// a sender on 9005 (see the example), then the `stdudp` command on the
/// example's control port. Exits non-zero unless it answers `stdudp ok`.
const CLIENT: &str = r#"
import socket, sys, threading
dut, peer = sys.argv[1], sys.argv[2]
def serve(port, answer):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    def loop():
        while True:
            data, src = s.recvfrom(65536)
            try:
                answer(s, data, src)
            except (OSError, ValueError) as e:
                print("peer", port, repr(e), flush=True)
    threading.Thread(target=loop, daemon=True).start()
def echo(s, data, src):
    s.sendto(data, src)
def whoami(s, data, src):
    s.sendto(("%s:%d" % src).encode(), src)
def sender(s, data, src):
    ip, port, text = data.decode().split(" ", 2)
    s.sendto(text.encode(), (ip, int(port)))
for port in (9003, 9006, 9007, 9008):
    serve(port, echo)
serve(9004, whoami)
serve(9005, sender)
c = socket.create_connection((dut, 7001), timeout=240)
c.sendall(("stdudp %s\n" % peer).encode())
data = b""
while not data.endswith(b"\n"):
    b = c.recv(4096)
    if not b:
        break
    data += b
r = data.decode().strip()
print(r)
sys.exit(0 if r.startswith("stdudp ok 18") else 1)
"#;

fn run(backend: &str) {
    let lab = Lab::with_prefix("snu");
    let text = format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\nlocal_ports = \"61000-61003\"\n\n\
         [[rule]]\nname = \"control\"\nprotocol = \"tcp\"\nports = [7001]\nservice = \"blocking\"\n\n\
         [[rule]]\nname = \"udp\"\nprotocol = \"udp\"\nports = [7003]\nservice = \"blocking\"\n",
        lab.dataplane(backend, 8192)
    );
    let mut app = lab.start_program(&example("blocking_udp"), "blocking_udp", &text);
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let out = lab.peer(&[
        "timeout",
        "300",
        "/usr/bin/python3",
        "-c",
        CLIENT,
        DUT_IP,
        PEER_IP,
    ]);
    let log = app.stop();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert_client_ok("the peer's client", &out, &log);
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn std_udp_cases_and_client_sockets_over_af_packet() {
    run("af_packet");
}

#[test]
fn std_udp_cases_and_client_sockets_over_dpdk() {
    run("dpdk");
}
