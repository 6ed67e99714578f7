//! `examples/blocking_echo.rs` against a Linux peer in a namespace, with two
//! workers over AF_PACKET and DPDK: `TcpStream::take_error` returns a reset
//! that the stream's task saw with no call in flight, once, and nothing
//! after a read reported it; `TcpListener::bind` follows rule reloads (a
//! port added by a SIGHUP reload can be bound and accepts connections, a
//! port removed cannot be bound: `AddrNotAvailable`, and a listener held
//! there gets no new connections). Needs root.

mod common;

use std::time::Duration;

use common::{assert_client_ok, example, wait_for, Lab, DUT_IP, PEER_IP};

/// The peer's helpers: `control` (one command to the example's control
/// port, 7001) and `bind_cmd` (the example's `bind PORT`, connecting to
/// PORT when it is bound and reading its greeting).
const HELPERS: &str = r#"
import socket, struct, sys, threading
dut, peer = sys.argv[1], sys.argv[2]
bad = []
def control(cmd):
    s = socket.create_connection((dut, 7001), timeout=120)
    s.sendall((cmd + "\n").encode())
    data = b""
    while not data.endswith(b"\n"):
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    return data.decode().strip()
def bind_cmd(port):
    s = socket.create_connection((dut, 7001), timeout=120)
    s.sendall(b"bind %d\n" % port)
    f = s.makefile("rb")
    r = f.readline().decode().strip()
    if r != "bound":
        s.close()
        return r
    c = socket.create_connection((dut, port), timeout=30)
    got = b""
    while True:
        b = c.recv(16)
        if not b:
            break
        got += b
    c.close()
    r = f.readline().decode().strip()
    s.close()
    return "%s %r" % (r, got)
"#;

/// Before the reload: a server on 9004 that reads a byte, then resets the
/// connection (SO_LINGER 0), for `takeerror`; binding 7002 works, 7005 not.
const BEFORE: &str = r#"
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 9004))
srv.listen(8)
def reset_loop():
    while True:
        c, _ = srv.accept()
        c.settimeout(30)
        try:
            c.recv(1)
        except OSError:
            pass
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
threading.Thread(target=reset_loop, daemon=True).start()
r = control("takeerror %s:9004" % peer)
print(r)
if r != "takeerror ConnectionReset None ConnectionReset None":
    bad.append(("takeerror", r))
r = bind_cmd(7002)
if r != "bind ok b'hi\\n'":
    bad.append(("bind 7002 before", r))
r = bind_cmd(7005)
if r != "bind err AddrNotAvailable":
    bad.append(("bind 7005 before", r))
# A listener held on 7002 across the reload that takes 7002 away.
r = control("hold 7002")
if r != "held":
    bad.append(("hold 7002", r))
print("bad:", bad)
sys.exit(1 if bad else 0)
"#;

/// After the reload (7005 given to the service, 7002 taken away).
const AFTER: &str = r#"
r = bind_cmd(7005)
if r != "bind ok b'hi\\n'":
    bad.append(("bind 7005 after", r))
r = bind_cmd(7002)
if r != "bind err AddrNotAvailable":
    bad.append(("bind 7002 after", r))
# The held listener stays, but the rules no longer route 7002 to the
# service: the connection goes to the default action (the kernel, with no
# listener there: refused), never to the held listener.
try:
    c = socket.create_connection((dut, 7002), timeout=3)
    bad.append(("connect 7002 after", "connected"))
    c.close()
except (ConnectionRefusedError, socket.timeout):
    pass
print("bad:", bad)
sys.exit(1 if bad else 0)
"#;

fn config(lab: &Lab, backend: &str, tcp_ports: &str) -> String {
    format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n\
         [[rule]]\nname = \"blocking\"\nprotocol = \"tcp\"\nports = [{tcp_ports}]\nservice = \"blocking\"\n\n\
         [[rule]]\nname = \"blocking-udp\"\nprotocol = \"udp\"\nports = [7003, 7004]\nservice = \"blocking\"\n",
        lab.dataplane(backend, 8192)
    )
}

fn take_error_and_reload(backend: &str) {
    let lab = Lab::with_prefix("snc");
    let mut app = lab.start_program(
        &example("blocking_echo"),
        "blocking_echo",
        &config(&lab, backend, "7000, 7001, 7002"),
    );
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let run = |script: &str| {
        lab.peer(&[
            "timeout",
            "200",
            "/usr/bin/python3",
            "-c",
            &format!("{HELPERS}{script}"),
            DUT_IP,
            PEER_IP,
        ])
    };
    let before = run(BEFORE);
    println!("{}", String::from_utf8_lossy(&before.stdout));
    assert_client_ok("the peer before the reload", &before, &app.log_text());

    std::fs::write(
        lab.path("blocking_echo.toml"),
        config(&lab, backend, "7000, 7001, 7005"),
    )
    .unwrap();
    app.signal("HUP");
    wait_for("the SIGHUP reload", Duration::from_secs(30), || {
        app.log_text().contains("rules reloaded on SIGHUP")
    });

    let after = run(AFTER);
    println!("{}", String::from_utf8_lossy(&after.stdout));
    assert_client_ok("the peer after the reload", &after, &app.log_text());
    let log = app.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn take_error_reports_a_reset_once_and_bind_follows_reloads_over_af_packet() {
    take_error_and_reload("af_packet");
}

#[test]
fn take_error_reports_a_reset_once_and_bind_follows_reloads_over_dpdk() {
    take_error_and_reload("dpdk");
}
