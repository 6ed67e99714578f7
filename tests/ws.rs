//! `examples/ws_echo.rs`, the `tungstenite` crate unmodified over
//! shardnet's blocking sockets, against two Python WebSocket clients in the
//! peer namespace (`websockets`, asyncio, and `websocket-client`), with two
//! workers over AF_PACKET and DPDK: many connections at once (both workers
//! serve some), text and binary messages of several sizes (7-bit, 16-bit
//! and 64-bit frame lengths, up to 1 MiB), a fragmented message, messages
//! pipelined, pings answered with pongs, and the close handshake (code
//! 1000 and its reason echoed, then the server closes the connection).
//! Bytes compared. Needs root.

mod common;

use std::time::Duration;

use common::{assert_client_ok, example, metric_sum, scrape, Lab, DUT_IP};

/// Where the test's shardnet serves its metrics (inside its namespace).
const METRICS: &str = "127.0.0.1:9464";

/// WebSocket connections the asyncio client opens at once.
const ASYNC_CONNECTIONS: usize = 48;
/// Connections of the websocket-client library, one after the other.
const SYNC_CONNECTIONS: usize = 4;

/// The clients: argv is the example's address and the numbers of
/// asyncio and websocket-client connections. Prints what failed and exits non-zero on any failure.
const CLIENT: &str = r#"
import asyncio, os, socket, struct, sys
import websockets
import websocket

dut, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
uri = "ws://%s:7010/echo" % dut
bad = []
# 7-bit lengths (up to 125), 16-bit (126..65535) and 64-bit (65536 and up).
SIZES = [0, 1, 125, 126, 127, 1000, 65535, 65536, 65537]
LARGE = [70000, 300000, 1 << 20]

def text_of(size, seed):
    alphabet = "shardnet é ✓ %d " % seed
    return (alphabet * (size // len(alphabet) + 1))[:size]

async def one(i):
    try:
        ws = await websockets.connect(uri, max_size=None, ping_interval=None,
                                      open_timeout=60, close_timeout=60)
        sizes = SIZES + (LARGE if i % 8 == 0 else [])
        for size in sizes:
            for msg in (text_of(size, i), os.urandom(size)):
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 120)
                if type(got) != type(msg) or got != msg:
                    bad.append(("echo", i, size, type(msg).__name__, len(got)))
        # A fragmented message (three frames) comes back whole.
        parts = [os.urandom(1000), os.urandom(70000), os.urandom(5)]
        await ws.send(parts)
        got = await asyncio.wait_for(ws.recv(), 120)
        if got != b"".join(parts):
            bad.append(("fragmented", i, len(got)))
        # Pipelined: ten messages out before any comes back, in order.
        msgs = [os.urandom(100 + k * 1000) for k in range(10)]
        for m in msgs:
            await ws.send(m)
        for k, m in enumerate(msgs):
            got = await asyncio.wait_for(ws.recv(), 120)
            if got != m:
                bad.append(("pipelined", i, k, len(got)))
        # A ping: the waiter resolves on a pong with the same payload.
        pong = await ws.ping(b"ping %d" % i)
        await asyncio.wait_for(pong, 60)
        await ws.close(1000, "bye %d" % i)
        if ws.close_code != 1000 or ws.close_reason != "bye %d" % i:
            bad.append(("close", i, ws.close_code, ws.close_reason))
    except Exception as e:
        bad.append(("conn", i, repr(e)))

async def main():
    await asyncio.gather(*(one(i) for i in range(n)))

asyncio.run(main())

# websocket-client: the frames themselves, and the TCP close after the
# close handshake.
for i in range(m):
    try:
        ws = websocket.create_connection(uri, timeout=60)
        for msg in ("hello %d ✓" % i, os.urandom(100000 + i)):
            if isinstance(msg, str):
                ws.send(msg)
            else:
                ws.send_binary(msg)
            got = ws.recv()
            if got != msg:
                bad.append(("wsc echo", i, len(got)))
        ws.ping(b"wsc %d" % i)
        f = ws.recv_frame()
        if f.opcode != websocket.ABNF.OPCODE_PONG or f.data != b"wsc %d" % i:
            bad.append(("wsc pong", i, f.opcode, f.data))
        ws.send_close(1000, b"done")
        f = ws.recv_frame()
        if f.opcode != websocket.ABNF.OPCODE_CLOSE or f.data != struct.pack("!H", 1000) + b"done":
            bad.append(("wsc close", i, f.opcode, f.data))
        # The server closes the TCP connection after the handshake.
        if ws.sock.recv(1) != b"":
            bad.append(("wsc eof", i))
        ws.sock.close()
    except Exception as e:
        bad.append(("wsc", i, repr(e)))

print("bad:", bad)
sys.exit(1 if bad else 0)
"#;

fn ws_echo(backend: &str) {
    let lab = Lab::with_prefix("snw");
    let text = format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n[metrics]\nlisten = \"{METRICS}\"\n\n\
         [[rule]]\nname = \"websocket\"\nprotocol = \"tcp\"\nports = [7010]\nservice = \"ws\"\n",
        lab.dataplane(backend, 8192)
    );
    let mut app = lab.start_program(&example("ws_echo"), "ws_echo", &text);
    lab.wait_until_answering(&mut app, Duration::from_secs(30));
    let out = lab.peer(&[
        "timeout",
        "300",
        "/usr/bin/python3",
        "-c",
        CLIENT,
        DUT_IP,
        &ASYNC_CONNECTIONS.to_string(),
        &SYNC_CONNECTIONS.to_string(),
    ]);
    let metrics = scrape(&lab, METRICS);
    let log = app.stop();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert_client_ok("the peer's WebSocket clients", &out, &log);
    let mut opened = 0.0;
    for worker in ["0", "1"] {
        let label = format!("worker=\"{worker}\"");
        let accepted = metric_sum(
            &metrics,
            "shardnet_tcp_connections_opened_total",
            &[&label, "passive"],
        );
        println!("worker {worker}: {accepted} WebSocket connections");
        assert!(accepted >= 1.0, "worker {worker} served none:\n{metrics}");
        opened += accepted;
    }
    assert!(
        opened >= (ASYNC_CONNECTIONS + SYNC_CONNECTIONS) as f64,
        "{opened} connections opened:\n{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "shardnet_async_refused_total", &[]),
        0.0,
        "{metrics}"
    );
    // The example logs nothing but its start: no failed handshake, no
    // protocol error, no panic.
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ws_echo: ") && !l.contains("ws_echo: listening"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:?}\nlog:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn tungstenite_echoes_websocket_clients_over_af_packet() {
    ws_echo("af_packet");
}

#[test]
fn tungstenite_echoes_websocket_clients_over_dpdk() {
    ws_echo("dpdk");
}
