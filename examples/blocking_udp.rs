//! The standard library's UDP tests over shardnet's blocking
//! [`UdpSocket`](shardnet::net::blocking::UdpSocket), against Linux
//! sockets in a peer host, and client sockets (bound to port 0).
//!
//! ```text
//! cargo run --release --example blocking_udp -- --config FILE
//! ```
//!
//! The rules must give the TCP port 7001 and the UDP port 7003 to the
//! service `"blocking"`; `[interface] local_ports` should be small (the
//! test uses 4 ports) for the `exhaust` case. Port 7001 takes one command
//! line per connection and answers one line:
//!
//! - `stdudp PEER_IP`: run the cases of rust-lang/rust
//!   `library/std/src/net/udp/tests.rs` ported here (see [`std_udp`]) and
//!   shardnet's own client-socket cases, with the peer's Linux sockets as
//!   the other end: UDP echo servers on ports 9003 and 9006-9008 (each
//!   datagram back to its sender), a "whoami" on 9004 (answers with the
//!   sender's `ip:port` as text) and a "sender" on 9005 (a datagram
//!   `IP PORT TEXT` makes it send `TEXT` to `IP:PORT`). Answers
//!   `stdudp ok N` (N cases passed) or `stdudp fail NAME: WHY`.
//!
//! UDP may lose a datagram on a loaded machine: every exchange retries a
//! few times (each receive with a read timeout, so nothing waits for ever).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;

use shardnet::net::blocking::{self, TcpListener, TcpStream};
use shardnet::Runtime;

/// The service's name in the rules.
const SERVICE: &str = "blocking";
/// The control port.
const CONTROL: u16 = 7001;

fn control(stream: TcpStream) {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let answer = match words.as_slice() {
        ["stdudp", peer] => match peer.parse() {
            Ok(peer) => match std_udp::run(peer) {
                Ok(n) => format!("stdudp ok {n}"),
                Err(why) => format!("stdudp fail {why}"),
            },
            Err(e) => format!("stdudp fail bad address {peer:?}: {e}"),
        },
        _ => format!("unknown command {line:?}"),
    };
    let _ = (&stream).write_all(format!("{answer}\n").as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
    // Let the peer read before the stream goes.
    let _ = reader.read_to_end(&mut Vec::new());
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let config = match (args.next().as_deref(), args.next()) {
        (Some("--config"), Some(path)) => PathBuf::from(path),
        _ => anyhow::bail!("usage: blocking_udp --config FILE"),
    };
    let runtime = blocking::register(Runtime::from_config(&config)?, SERVICE)?;
    std::thread::spawn(|| {
        let listener = TcpListener::bind(("0.0.0.0", CONTROL)).unwrap_or_else(|e| {
            eprintln!("blocking_udp: cannot bind {CONTROL}: {e}");
            std::process::exit(1)
        });
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => drop(std::thread::spawn(move || control(stream))),
                Err(e) => {
                    eprintln!("blocking_udp: accept: {e}");
                    return;
                }
            }
        }
    });
    runtime.run()
}

/// Cases of rust-lang/rust `library/std/src/net/udp/tests.rs`, adapted to
/// IPv4 and to shardnet, std's names kept.
///
/// std's cases pair two sockets on loopback; shardnet has no loopback (a
/// datagram to our own address would leave on the wire), so the second
/// socket is a Linux socket of the peer: its echo server where std's
/// second socket answers, its "sender" where std's second socket sends
/// first, its "whoami" where std checks the address the other end saw.
/// std's `each_ip` (IPv4 then IPv6) becomes: a client socket (port 0),
/// then a socket on a port of the rules (7003).
///
/// Ported: `bind_error`, `socket_smoke_test_ip4`, `socket_and_peer_name`,
/// `udp_clone_smoke`, `udp_clone_two_read`, `udp_clone_two_write`,
/// `debug` (our `Debug` shows the local address, no fd), `timeouts`,
/// `test_read_timeout`, `test_read_with_timeout`,
/// `test_timeout_zero_duration`, `connect_send_recv`,
/// `connect_send_peek_recv`, `peek_from`, `set_nonblocking`,
/// `send_datagram_larger_than_c_int_max` (here: larger than one frame,
/// which shardnet does not fragment; `InvalidInput`).
///
/// Left out: `ttl` (no per-socket TTL: every datagram leaves with the
/// stack's TTL 64), `hop_limit` (IPv6).
///
/// Added (shardnet's own): `client_port_any_destination` (a client
/// socket's replies from four destinations, which the steering spreads
/// over both workers, all arrive), `client_port_freed_on_drop` (the
/// 4-port range is exhausted with `AddrInUse`, then a drop frees a port).
pub mod std_udp {
    use std::io::ErrorKind;
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::sync::mpsc::channel;
    use std::thread;
    use std::time::{Duration, Instant};

    use shardnet::net::blocking::UdpSocket;

    type Case = fn(Ipv4Addr) -> Result<(), String>;

    /// Tries per exchange (each waits `WAIT` for its answer).
    const TRIES: usize = 8;
    const WAIT: Duration = Duration::from_millis(1000);
    /// The peer's echo server, whoami and sender.
    const ECHO: u16 = 9003;
    const WHOAMI: u16 = 9004;
    const SENDER: u16 = 9005;
    /// More echo servers (other destination ports: other workers).
    const ECHOES: [u16; 4] = [9003, 9006, 9007, 9008];

    macro_rules! check {
        ($cond:expr) => {
            if !$cond {
                return Err(format!("line {}: {}", line!(), stringify!($cond)));
            }
        };
    }

    fn t<T>(r: std::io::Result<T>, what: &str) -> Result<T, String> {
        r.map_err(|e| format!("{what}: {e} ({:?})", e.kind()))
    }

    fn at(ip: Ipv4Addr, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(ip, port))
    }

    /// std's `each_ip`: a client socket (port 0), then one on a port of the
    /// rules; `f` gets the socket (the peer's Linux sockets are the other).
    fn each_ip(f: &mut dyn FnMut(UdpSocket) -> Result<(), String>) -> Result<(), String> {
        f(t(UdpSocket::bind("0.0.0.0:0"), "bind 0")?).map_err(|e| format!("port 0: {e}"))?;
        f(t(UdpSocket::bind("0.0.0.0:7003"), "bind 7003")?).map_err(|e| format!("7003: {e}"))
    }

    /// Calls `send` until a datagram from `from` comes back (read within
    /// [`WAIT`]; others are skipped) or [`TRIES`] tries are spent. When it
    /// sent more than once, waits [`WAIT`] more and drains the late
    /// duplicates, so that the next check does not meet them.
    fn until_answered(
        socket: &UdpSocket,
        from: SocketAddr,
        mut send: impl FnMut() -> std::io::Result<usize>,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), String> {
        let before = t(socket.read_timeout(), "read_timeout")?;
        t(socket.set_read_timeout(Some(WAIT)), "set_read_timeout")?;
        let mut result = Err("no answer".to_owned());
        let mut tries = 0;
        'tries: while tries < TRIES {
            tries += 1;
            t(send(), "send")?;
            loop {
                match socket.recv_from(buf) {
                    Ok(got) if got.1 == from => {
                        result = Ok(got);
                        break 'tries;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue 'tries,
                    Err(e) => return Err(format!("recv_from: {e}")),
                }
            }
        }
        if tries > 1 {
            thread::sleep(WAIT);
            drain(socket)?;
        }
        t(socket.set_read_timeout(before), "set_read_timeout")?;
        result
    }

    /// Drains what is queued (late duplicates of retried exchanges).
    fn drain(socket: &UdpSocket) -> Result<(), String> {
        t(socket.set_nonblocking(true), "set_nonblocking")?;
        while socket.recv_from(&mut [0u8; 2048]).is_ok() {}
        t(socket.set_nonblocking(false), "set_nonblocking")
    }

    fn bind_error(_: Ipv4Addr) -> Result<(), String> {
        match UdpSocket::bind("1.1.1.1:9999") {
            Ok(..) => Err("bound 1.1.1.1".into()),
            Err(e) => {
                check!(e.kind() == ErrorKind::AddrNotAvailable);
                Ok(())
            }
        }
    }

    fn socket_smoke_test_ip4(peer: Ipv4Addr) -> Result<(), String> {
        each_ip(&mut |server| {
            let server_ip = t(server.local_addr(), "local_addr")?;
            // The peer's sender plays std's client: asked from another
            // thread (std's client thread), it sends `c` to our server.
            let client = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
            let request = format!("{} {} c", server_ip.ip(), server_ip.port());
            let (tx1, rx1) = channel();
            let (tx2, rx2) = channel();
            let _t = thread::spawn(move || {
                let _ = rx1.recv();
                let _ = tx2.send(
                    client
                        .send_to(request.as_bytes(), at(peer, SENDER))
                        .map(|_| client),
                );
            });
            tx1.send(()).unwrap();
            let client = t(rx2.recv().map_err(|_| "the client thread died")?, "send_to")?;
            let mut buf = [0];
            // Asked again (from this thread) if the first was lost.
            let mut first = true;
            let (nread, src) = until_answered(
                &server,
                at(peer, SENDER),
                || {
                    if std::mem::take(&mut first) {
                        return Ok(0);
                    }
                    let request = format!("{} {} c", server_ip.ip(), server_ip.port());
                    client.send_to(request.as_bytes(), at(peer, SENDER))
                },
                &mut buf,
            )?;
            check!(nread == 1);
            check!(buf[0] == b'c');
            check!(src == at(peer, SENDER));
            // And our socket as std's client, to the peer's whoami: the
            // source it saw is our local_addr.
            let mut buf = [0u8; 64];
            let (n, _) = until_answered(
                &server,
                at(peer, WHOAMI),
                || server.send_to(&[99], at(peer, WHOAMI)),
                &mut buf,
            )?;
            let seen = String::from_utf8_lossy(&buf[..n]).to_string();
            check!(seen == server_ip.to_string());
            drain(&server)
        })
    }

    fn socket_and_peer_name(peer: Ipv4Addr) -> Result<(), String> {
        each_ip(&mut |sock1| {
            let addr1 = t(sock1.local_addr(), "local_addr")?;
            let addr2 = at(peer, ECHO);
            check!(sock1.peer_addr().unwrap_err().kind() == ErrorKind::NotConnected);
            // The interface's address, not 0.0.0.0.
            check!(!addr1.ip().is_unspecified());
            t(sock1.connect(addr2), "connect")?;
            check!(addr2 == t(sock1.peer_addr(), "peer_addr")?);
            Ok(())
        })
    }

    fn udp_clone_smoke(peer: Ipv4Addr) -> Result<(), String> {
        each_ip(&mut |sock1| {
            let addr2 = at(peer, ECHO);
            let sock3 = t(sock1.try_clone(), "try_clone")?;
            // The clone sends from another thread (again after each WAIT
            // until told to stop); sock1 gets the echo.
            let (stop, stopped) = channel::<()>();
            let sender = thread::spawn(move || -> Result<(), String> {
                for _ in 0..TRIES {
                    t(sock3.send_to(&[1], addr2), "send_to")?;
                    if stopped.recv_timeout(WAIT).is_ok() {
                        break;
                    }
                }
                Ok(())
            });
            t(
                sock1.set_read_timeout(Some(WAIT * (TRIES as u32 + 1))),
                "set_read_timeout",
            )?;
            let mut buf = [0, 0];
            let res = sock1.recv_from(&mut buf);
            let _ = stop.send(());
            sender.join().map_err(|_| "the sender panicked")??;
            let res = t(res, "recv_from")?;
            t(sock1.set_read_timeout(None), "set_read_timeout")?;
            thread::sleep(WAIT);
            check!(res.0 == 1);
            check!(res.1 == addr2);
            check!(buf[0] == 1);
            drain(&sock1)
        })
    }

    fn udp_clone_two_read(peer: Ipv4Addr) -> Result<(), String> {
        each_ip(&mut |sock1| {
            let addr1 = t(sock1.local_addr(), "local_addr")?;
            t(sock1.set_read_timeout(Some(WAIT * 4)), "set_read_timeout")?;
            for _ in 0..TRIES {
                // The peer's sender sends two datagrams; two handles read
                // one each, on two threads.
                for text in ["1", "2"] {
                    let request = format!("{} {} {text}", addr1.ip(), addr1.port());
                    t(
                        sock1.send_to(request.as_bytes(), at(peer, SENDER)),
                        "send_to",
                    )?;
                }
                let sock3 = t(sock1.try_clone(), "try_clone")?;
                let (done, rx) = channel();
                let _t = thread::spawn(move || {
                    let mut buf = [0, 0];
                    let _ = done.send(sock3.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec()));
                });
                let mut buf = [0, 0];
                let mine = sock1.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec());
                let theirs = rx.recv().map_err(|_| "the reader died")?;
                if let (Ok(a), Ok(b)) = (mine, theirs) {
                    // One each (a late duplicate of a retry may be either).
                    check!([a, b].iter().all(|d| d[..] == *b"1" || d[..] == *b"2"));
                    t(sock1.set_read_timeout(None), "set_read_timeout")?;
                    return drain(&sock1);
                }
                drain(&sock1)?;
            }
            Err("two reads never both answered".into())
        })
    }

    fn udp_clone_two_write(peer: Ipv4Addr) -> Result<(), String> {
        each_ip(&mut |sock1| {
            let addr2 = at(peer, ECHO);
            t(sock1.set_read_timeout(Some(WAIT * 2)), "set_read_timeout")?;
            let mut got = Vec::new();
            for _ in 0..TRIES {
                // Two handles send at once from two threads: the echo
                // (std's second socket) receives both.
                let sock3 = t(sock1.try_clone(), "try_clone")?;
                let (done, rx) = channel();
                let _t = thread::spawn(move || {
                    let _ = done.send(sock3.send_to(&[1], addr2).is_ok());
                });
                let ok = sock1.send_to(&[2], addr2).is_ok();
                check!(ok && rx.recv().map_err(|_| "the writer died")?);
                let mut buf = [0];
                while let Ok((1, _)) = sock1.recv_from(&mut buf) {
                    if !got.contains(&buf[0]) {
                        got.push(buf[0]);
                    }
                    if got.len() == 2 {
                        t(sock1.set_read_timeout(None), "set_read_timeout")?;
                        return drain(&sock1);
                    }
                }
            }
            Err(format!("echoed only {got:?}"))
        })
    }

    fn debug(_: Ipv4Addr) -> Result<(), String> {
        let udpsock = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
        let socket_addr = t(udpsock.local_addr(), "local_addr")?;
        let text = format!("{udpsock:?}");
        check!(text.starts_with("UdpSocket"));
        check!(text.contains(&socket_addr.to_string()));
        Ok(())
    }

    fn timeouts(_: Ipv4Addr) -> Result<(), String> {
        let stream = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
        let dur = Duration::new(15410, 0);
        check!(t(stream.read_timeout(), "read_timeout")?.is_none());
        t(stream.set_read_timeout(Some(dur)), "set_read_timeout")?;
        check!(Some(dur) == t(stream.read_timeout(), "read_timeout")?);
        check!(t(stream.write_timeout(), "write_timeout")?.is_none());
        t(stream.set_write_timeout(Some(dur)), "set_write_timeout")?;
        check!(Some(dur) == t(stream.write_timeout(), "write_timeout")?);
        t(stream.set_read_timeout(None), "set_read_timeout")?;
        check!(t(stream.read_timeout(), "read_timeout")?.is_none());
        t(stream.set_write_timeout(None), "set_write_timeout")?;
        check!(t(stream.write_timeout(), "write_timeout")?.is_none());
        Ok(())
    }

    /// std's check: the receive fails with `WouldBlock` or `TimedOut`
    /// after more than 400 ms of a 1000 ms timeout.
    fn times_out(stream: &UdpSocket) -> Result<(), String> {
        let mut buf = [0; 11];
        let start = Instant::now();
        loop {
            let kind = match stream.recv_from(&mut buf) {
                Ok(_) => return Err("expected error".into()),
                Err(e) => e.kind(),
            };
            if kind != ErrorKind::Interrupted {
                check!(kind == ErrorKind::WouldBlock || kind == ErrorKind::TimedOut);
                break;
            }
        }
        check!(start.elapsed() > Duration::from_millis(400));
        Ok(())
    }

    fn test_read_timeout(_: Ipv4Addr) -> Result<(), String> {
        let stream = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
        t(
            stream.set_read_timeout(Some(Duration::from_millis(1000))),
            "set_read_timeout",
        )?;
        times_out(&stream)
    }

    fn test_read_with_timeout(peer: Ipv4Addr) -> Result<(), String> {
        let stream = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
        // To the peer's echo rather than to itself.
        let addr = at(peer, ECHO);
        let mut buf = [0; 11];
        until_answered(
            &stream,
            addr,
            || stream.send_to(b"hello world", addr),
            &mut buf,
        )?;
        check!(b"hello world" == &buf[..]);
        drain(&stream)?;
        t(
            stream.set_read_timeout(Some(Duration::from_millis(1000))),
            "set_read_timeout",
        )?;
        times_out(&stream)
    }

    fn test_timeout_zero_duration(_: Ipv4Addr) -> Result<(), String> {
        let socket = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
        let err = socket
            .set_write_timeout(Some(Duration::new(0, 0)))
            .unwrap_err();
        check!(err.kind() == ErrorKind::InvalidInput);
        let err = socket
            .set_read_timeout(Some(Duration::new(0, 0)))
            .unwrap_err();
        check!(err.kind() == ErrorKind::InvalidInput);
        Ok(())
    }

    fn connect_send_recv(peer: Ipv4Addr) -> Result<(), String> {
        let socket = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
        t(socket.connect(at(peer, ECHO)), "connect")?;
        let mut buf = [0; 11];
        until_answered(
            &socket,
            at(peer, ECHO),
            || socket.send(b"hello world"),
            &mut buf,
        )?;
        check!(b"hello world" == &buf[..]);
        // A connected socket takes its peer's datagrams only: the whoami's
        // answer to a send_to is not received.
        t(socket.send_to(b"?", at(peer, WHOAMI)), "send_to")?;
        t(socket.set_read_timeout(Some(WAIT)), "set_read_timeout")?;
        loop {
            match socket.recv(&mut buf) {
                // Late duplicates of the echo only.
                Ok(n) => check!(&buf[..n] == b"hello world"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(format!("recv: {e}")),
            }
        }
    }

    /// Sends `data` with `send` until a peek finds a datagram (within
    /// [`WAIT`]), [`TRIES`] times at most; then waits [`WAIT`] if it
    /// resent, so that the duplicates (the same bytes) are there too.
    fn until_peeked(
        socket: &UdpSocket,
        mut send: impl FnMut() -> std::io::Result<usize>,
    ) -> Result<(), String> {
        t(socket.set_read_timeout(Some(WAIT)), "set_read_timeout")?;
        for tries in 1..=TRIES {
            t(send(), "send")?;
            match socket.peek_from(&mut [0u8; 64]) {
                Ok(_) => {
                    if tries > 1 {
                        thread::sleep(WAIT);
                    }
                    return t(socket.set_read_timeout(None), "set_read_timeout");
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(format!("peek_from: {e}")),
            }
        }
        Err("no answer".into())
    }

    fn connect_send_peek_recv(peer: Ipv4Addr) -> Result<(), String> {
        each_ip(&mut |socket| {
            // The peer's echo rather than itself.
            t(socket.connect(at(peer, ECHO)), "connect")?;
            until_peeked(&socket, || socket.send(b"hello world"))?;
            for _ in 1..3 {
                let mut buf = [0; 11];
                let size = t(socket.peek(&mut buf), "peek")?;
                check!(b"hello world" == &buf[..]);
                check!(size == 11);
            }
            let mut buf = [0; 11];
            let size = t(socket.recv(&mut buf), "recv")?;
            check!(b"hello world" == &buf[..]);
            check!(size == 11);
            drain(&socket)
        })
    }

    fn peek_from(peer: Ipv4Addr) -> Result<(), String> {
        each_ip(&mut |socket| {
            let addr = at(peer, ECHO);
            until_peeked(&socket, || socket.send_to(b"hello world", addr))?;
            for _ in 1..3 {
                let mut buf = [0; 11];
                let (size, from) = t(socket.peek_from(&mut buf), "peek_from")?;
                check!(b"hello world" == &buf[..]);
                check!(size == 11);
                check!(from == addr);
            }
            let mut buf = [0; 11];
            let (size, _) = t(socket.recv_from(&mut buf), "recv_from")?;
            check!(b"hello world" == &buf[..]);
            check!(size == 11);
            drain(&socket)
        })
    }

    fn set_nonblocking(peer: Ipv4Addr) -> Result<(), String> {
        each_ip(&mut |socket| {
            t(socket.set_nonblocking(true), "set_nonblocking")?;
            t(socket.set_nonblocking(false), "set_nonblocking")?;
            // To the peer's echo, which sends nothing unasked.
            t(socket.connect(at(peer, ECHO)), "connect")?;
            t(socket.set_nonblocking(false), "set_nonblocking")?;
            t(socket.set_nonblocking(true), "set_nonblocking")?;
            let mut buf = [0];
            match socket.recv(&mut buf) {
                Ok(_) => Err("expected error".into()),
                Err(ref e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
                Err(e) => Err(format!("unexpected error {e}")),
            }
        })
    }

    fn send_datagram_larger_than_c_int_max(peer: Ipv4Addr) -> Result<(), String> {
        // Larger than one frame: shardnet does not fragment.
        let data = vec![0u8; shardnet::rt::udp::MAX_PAYLOAD + 1];
        let socket = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
        let addr = at(peer, ECHO);
        let err = socket.send_to(&data, addr).unwrap_err();
        check!(err.kind() == ErrorKind::InvalidInput);
        t(socket.connect(addr), "connect")?;
        check!(socket.send(&data).is_err());
        Ok(())
    }

    /// A client socket talks to four destinations (the steering spreads
    /// their replies over the workers): every datagram is answered, with
    /// retries for the lost ones.
    fn client_port_any_destination(peer: Ipv4Addr) -> Result<(), String> {
        let socket = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
        t(socket.set_read_timeout(Some(WAIT)), "set_read_timeout")?;
        let mut missing: Vec<(u16, u16)> = ECHOES
            .iter()
            .flat_map(|&port| (0..25u16).map(move |i| (port, i)))
            .collect();
        for _ in 0..TRIES {
            for &(port, i) in &missing {
                t(socket.send_to(&i.to_be_bytes(), at(peer, port)), "send_to")?;
            }
            let mut buf = [0u8; 2];
            while let Ok((2, SocketAddr::V4(from))) = socket.recv_from(&mut buf) {
                check!(*from.ip() == peer);
                let i = u16::from_be_bytes(buf);
                missing.retain(|&m| m != (from.port(), i));
                if missing.is_empty() {
                    return Ok(());
                }
            }
        }
        Err(format!("{} never answered: {missing:?}", missing.len()))
    }

    /// With a 4-port `local_ports`, a fifth client socket finds no port
    /// (`AddrInUse`); a dropped one frees its port at once.
    fn client_port_freed_on_drop(_: Ipv4Addr) -> Result<(), String> {
        let mut sockets = Vec::new();
        for _ in 0..4 {
            sockets.push(t(UdpSocket::bind("0.0.0.0:0"), "bind")?);
        }
        let mut ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        ports.sort_unstable();
        ports.dedup();
        check!(ports.len() == 4);
        let err = UdpSocket::bind("0.0.0.0:0").unwrap_err();
        check!(err.kind() == ErrorKind::AddrInUse);
        let freed = t(sockets.remove(1).local_addr(), "local_addr")?;
        let again = t(UdpSocket::bind("0.0.0.0:0"), "bind")?;
        check!(t(again.local_addr(), "local_addr")? == freed);
        Ok(())
    }

    pub fn run(peer: Ipv4Addr) -> Result<usize, String> {
        let cases: &[(&str, Case)] = &[
            ("bind_error", bind_error),
            ("socket_smoke_test_ip4", socket_smoke_test_ip4),
            ("socket_and_peer_name", socket_and_peer_name),
            ("udp_clone_smoke", udp_clone_smoke),
            ("udp_clone_two_read", udp_clone_two_read),
            ("udp_clone_two_write", udp_clone_two_write),
            ("debug", debug),
            ("timeouts", timeouts),
            ("test_read_timeout", test_read_timeout),
            ("test_read_with_timeout", test_read_with_timeout),
            ("test_timeout_zero_duration", test_timeout_zero_duration),
            ("connect_send_recv", connect_send_recv),
            ("connect_send_peek_recv", connect_send_peek_recv),
            ("peek_from", peek_from),
            ("set_nonblocking", set_nonblocking),
            (
                "send_datagram_larger_than_c_int_max",
                send_datagram_larger_than_c_int_max,
            ),
            ("client_port_any_destination", client_port_any_destination),
            ("client_port_freed_on_drop", client_port_freed_on_drop),
        ];
        for (name, case) in cases {
            case(peer).map_err(|why| format!("{name}: {why}"))?;
        }
        Ok(cases.len())
    }
}
