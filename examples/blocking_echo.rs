//! A thread-per-connection echo server on shardnet's blocking sockets
//! ([`shardnet::net::blocking`]), written as on `std::net`.
//!
//! ```text
//! cargo run --release --example blocking_echo -- --config FILE
//! cargo run --release --example blocking_echo -- --std ADDR
//! ```
//!
//! With `--std ADDR` it runs only the echo server, on `std::net` on the
//! kernel, listening on ADDR (`0.0.0.0:7000`): the same source (a macro
//! instantiates it once per socket type), for `bench/blocking-vs-std.sh`.
//!
//! The rules must give the TCP ports 7000 to 7002 and the UDP ports 7003
//! and 7004 to the service `"blocking"`:
//!
//! - **7003/udp**: echo, each datagram back to its sender (one thread).
//! - **7000**: echo. Each connection gets a thread that writes back what it
//!   reads; at the peer's end of stream it shuts its own side down.
//! - **7001**: control, for tests. One command line per connection, one
//!   answer line:
//!   - `connect ADDR LEN`: connect to ADDR (an echo server), send LEN bytes,
//!     shut down writing, read everything back: `ok RECEIVED EQUAL` or
//!     `err KIND`;
//!   - `timeout MS`: read from this connection with a read timeout of MS:
//!     `timeout KIND ELAPSED_MS`;
//!   - `writetimeout ADDR`: connect to ADDR (a server that never reads) and
//!     write with a 300 ms write timeout until one times out:
//!     `writetimeout KIND WRITTEN`;
//!   - `listener`: std's listener cases on port 7002: a non-blocking accept
//!     with nothing there (`WouldBlock`), then `ready`; the peer connects
//!     twice and two clones of the listener accept one each
//!     (`clone_accept_concurrent`); then the port is bound again at once
//!     after the listener is dropped: `listener ok` or `listener fail WHY`;
//!   - `backlog N`: bind port 7002, say `ready`, accept nothing while the
//!     peer opens N connections (more than [`blocking::ACCEPT_BACKLOG`]),
//!     until the overflow is counted; then take what waits:
//!     `backlog ACCEPTED OVERFLOWED`;
//!   - `udp ADDR N`: from UDP port 7004, send N datagrams to ADDR (a UDP
//!     echo server), each retried up to 5 times, half of them through a
//!     connected socket: `udp N ANSWERED`;
//!   - `takeerror ADDR`: connect to ADDR (a server that reads a byte, then
//!     resets the connection) twice: the first time write a byte and wait
//!     (up to 30 s) for `take_error` to return the reset with no call in
//!     flight, then take it again; the second time write a byte and read,
//!     then take the error: `takeerror FIRST SECOND READ AFTER` (error
//!     kinds, `None` for none);
//!   - `bind PORT`: bind PORT (kept by a reload or not): `bind err KIND`, or
//!     `bound`, then accept one connection (up to 30 s), write `hi\n` on it:
//!     `bind ok` or `bind fail WHY`;
//!   - `hold PORT`: bind PORT and keep the listener (accepting nothing) to
//!     the end: `held` or `hold err KIND`;
//!   - `stdtests ECHO_ADDR CLOSED_PORT`: run the cases of the standard
//!     library's `net/tcp/tests.rs` ported here against an echo server at
//!     ECHO_ADDR (and a closed port of its host): `stdtests ok N RTT_US`
//!     (N cases passed; RTT_US the mean of 1-byte round trips through the
//!     blocking sockets, microseconds) or `stdtests fail NAME: WHY`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shardnet::net::blocking::{self, TcpListener, TcpStream, UdpSocket};
use shardnet::Runtime;

/// The service's name in the rules.
const SERVICE: &str = "blocking";
/// The echo port.
const ECHO: u16 = 7000;
/// The control port.
const CONTROL: u16 = 7001;
/// The port of the `listener` command.
const LISTEN: u16 = 7002;
/// The UDP echo port.
const UDP_ECHO: u16 = 7003;
/// The UDP port of the `udp` command.
const UDP_CLIENT: u16 = 7004;

fn udp_echo() {
    let socket = UdpSocket::bind(("0.0.0.0", UDP_ECHO)).unwrap_or_else(|e| {
        eprintln!("blocking_echo: cannot bind udp {UDP_ECHO}: {e}");
        std::process::exit(1)
    });
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to(&buf[..n], from) {
                    eprintln!("blocking_echo: udp send to {from}: {e}");
                }
            }
            Err(e) => {
                eprintln!("blocking_echo: udp receive: {e}");
                return;
            }
        }
    }
}

/// Sends `n` datagrams to `addr` and counts the echoed ones.
fn udp_client(addr: &str, n: usize) -> String {
    let socket = match UdpSocket::bind(("0.0.0.0", UDP_CLIENT)) {
        Ok(socket) => socket,
        Err(e) => return format!("err {:?}", e.kind()),
    };
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut answered = 0;
    let mut buf = [0u8; 2048];
    for i in 0..n {
        let msg = format!("datagram {i} {}", "x".repeat(i % 1000));
        if i == n / 2 {
            socket.connect(addr).expect("connect");
        }
        for _ in 0..5 {
            let sent = if i >= n / 2 {
                socket.send(msg.as_bytes())
            } else {
                socket.send_to(msg.as_bytes(), addr)
            };
            if sent.is_err() {
                continue;
            }
            match socket.recv_from(&mut buf) {
                Ok((len, from)) if &buf[..len] == msg.as_bytes() && from.to_string() == addr => {
                    answered += 1;
                    break;
                }
                _ => {}
            }
        }
    }
    format!("udp {n} {answered}")
}

/// The thread-per-connection echo server, one source for both socket
/// types: `echo_server!(module, path::of::net)` instantiates it in `module`
/// over `path::of::net::{TcpListener, TcpStream}`.
macro_rules! echo_server {
    ($module:ident, $($net:ident)::+) => {
        mod $module {
            use std::io::{Read, Write};
            use std::net::Shutdown;

            use $($net)::+::{TcpListener, TcpStream};

            /// Writes back what it reads; at the end of stream shuts its side.
            pub fn echo(mut stream: TcpStream) {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                let _ = stream.shutdown(Shutdown::Write);
            }

            /// Listens on `addr`, a thread per connection running `handler`.
            pub fn serve(addr: &str, handler: fn(TcpStream)) {
                let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
                    eprintln!("blocking_echo: cannot bind {addr}: {e}");
                    std::process::exit(1)
                });
                eprintln!(
                    "blocking_echo: listening on {}",
                    listener.local_addr().unwrap()
                );
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => drop(std::thread::spawn(move || handler(stream))),
                        Err(e) => {
                            eprintln!("blocking_echo: accept on {addr}: {e}");
                            return;
                        }
                    }
                }
            }
        }
    };
}

echo_server!(on_shardnet, shardnet::net::blocking);
echo_server!(on_std, std::net);

/// Waits (bounded) until `stream`'s task has seen an error, with no call
/// in flight; its kind, or `None`.
fn wait_for_error(stream: &TcpStream) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    // A test tool polling a flag: a sleep loop is fine here.
    while Instant::now() < deadline {
        match stream.take_error() {
            Ok(Some(e)) => return format!("{:?}", e.kind()),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return format!("take_error:{:?}", e.kind()),
        }
    }
    "None".into()
}

/// The `takeerror` command (see the module documentation).
fn take_error_cases(addr: &str) -> String {
    let kind = |r: std::io::Result<Option<std::io::Error>>| match r {
        Ok(Some(e)) => format!("{:?}", e.kind()),
        Ok(None) => "None".into(),
        Err(e) => format!("take_error:{:?}", e.kind()),
    };
    let open = || -> Result<TcpStream, String> {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect:{:?}", e.kind()))?;
        match stream.take_error() {
            Ok(None) => {}
            other => return Err(format!("fresh:{}", kind(other))),
        }
        stream
            .write_all(b"x")
            .map_err(|e| format!("write:{:?}", e.kind()))?;
        Ok(stream)
    };
    let first = match open() {
        Ok(stream) => stream,
        Err(why) => return format!("takeerror {why}"),
    };
    let seen = wait_for_error(&first);
    let again = kind(first.take_error());
    let mut second = match open() {
        Ok(stream) => stream,
        Err(why) => return format!("takeerror {why}"),
    };
    let read = match second.read(&mut [0u8; 16]) {
        Ok(n) => format!("read{n}"),
        Err(e) => format!("{:?}", e.kind()),
    };
    // Give the task a few rounds: it must not keep what the read reported.
    std::thread::sleep(Duration::from_millis(100));
    let after = kind(second.take_error());
    format!("takeerror {seen} {again} {read} {after}")
}

/// The listeners of the `hold` command.
static HELD: std::sync::Mutex<Vec<TcpListener>> = std::sync::Mutex::new(Vec::new());

/// The `bind` command (see the module documentation).
fn bind_and_greet(mut control: &TcpStream, port: u16) -> String {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(listener) => listener,
        Err(e) => return format!("bind err {:?}", e.kind()),
    };
    if control.write_all(b"bound\n").is_err() {
        return "bind fail ready".into();
    }
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                return match stream.write_all(b"hi\n") {
                    Ok(()) => {
                        let _ = stream.shutdown(Shutdown::Write);
                        let _ = stream.read_to_end(&mut Vec::new());
                        "bind ok".into()
                    }
                    Err(e) => format!("bind fail write {:?}", e.kind()),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return format!("bind fail accept {:?}", e.kind()),
        }
    }
    "bind fail no connection".into()
}

/// Connects to `addr`, sends `len` bytes, reads them back.
fn connect_and_echo(addr: &str, len: usize) -> String {
    let mut stream = match TcpStream::connect(addr) {
        Ok(stream) => stream,
        Err(e) => return format!("err {:?}", e.kind()),
    };
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        let data = data.clone();
        std::thread::spawn(move || {
            let written = stream.write_all(&data);
            let _ = stream.shutdown(Shutdown::Write);
            written
        })
    };
    let mut back = Vec::new();
    let read = stream.read_to_end(&mut back);
    match (writer.join().expect("writer"), read) {
        (Ok(()), Ok(_)) => format!("ok {} {}", back.len(), back == data),
        (Err(e), _) | (_, Err(e)) => format!("err {:?}", e.kind()),
    }
}

/// Connects to `addr` (a server that never reads) and writes with a
/// write timeout until a write times out: `writetimeout KIND WRITTEN`.
fn write_until_timeout(addr: &str) -> String {
    let mut stream = match TcpStream::connect(addr) {
        Ok(stream) => stream,
        Err(e) => return format!("err {:?}", e.kind()),
    };
    stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    while written < 256 << 20 {
        match stream.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => return format!("writetimeout {:?} {written}", e.kind()),
        }
    }
    format!("writetimeout none {written}")
}

/// The `listener` command (see the module documentation).
fn listener_cases(mut control: &TcpStream) -> Result<(), String> {
    let e = |what: &str, e: std::io::Error| format!("{what}: {e} ({:?})", e.kind());
    let a = TcpListener::bind(("0.0.0.0", LISTEN)).map_err(|x| e("bind", x))?;
    if a.local_addr().map_err(|x| e("addr", x))?.port() != LISTEN {
        return Err("local_addr".into());
    }
    a.set_nonblocking(true).map_err(|x| e("nonblocking", x))?;
    match a.accept() {
        Err(x) if x.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(x) => return Err(e("non-blocking accept", x)),
        Ok(_) => return Err("a non-blocking accept took a connection from nowhere".into()),
    }
    a.set_nonblocking(false).map_err(|x| e("blocking", x))?;
    let a2 = a.try_clone().map_err(|x| e("clone", x))?;
    let accepters: Vec<_> = [a, a2]
        .into_iter()
        .map(|l| std::thread::spawn(move || l.accept().map(|(_, peer)| peer)))
        .collect();
    control.write_all(b"ready\n").map_err(|x| e("ready", x))?;
    for accepter in accepters {
        accepter
            .join()
            .map_err(|_| "accepter panicked")?
            .map_err(|x| e("accept", x))?;
    }
    // Both clones are gone: the port is free again at once.
    drop(TcpListener::bind(("0.0.0.0", LISTEN)).map_err(|x| e("bind again", x))?);
    Ok(())
}

/// The `backlog` command (see the module documentation).
fn backlog(mut control: &TcpStream, n: u64) -> String {
    let listener = match TcpListener::bind(("0.0.0.0", LISTEN)) {
        Ok(listener) => listener,
        Err(e) => return format!("err {:?}", e.kind()),
    };
    if control.write_all(b"ready\n").is_err() {
        return "err ready".into();
    }
    let backlog = blocking::ACCEPT_BACKLOG as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Waiting on a counter in a test tool: a sleep loop is fine here.
    while listener.overflowed() < n.saturating_sub(backlog) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    listener.set_nonblocking(true).expect("nonblocking");
    let mut accepted = 0;
    while accepted + listener.overflowed() < n && Instant::now() < deadline {
        match listener.accept() {
            Ok(_) => accepted += 1,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    format!("backlog {accepted} {}", listener.overflowed())
}

fn control(stream: TcpStream) {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let answer = match words.as_slice() {
        ["connect", addr, len] => connect_and_echo(addr, len.parse().unwrap_or(0)),
        ["timeout", ms] => {
            let ms: u64 = ms.parse().unwrap_or(100);
            stream
                .set_read_timeout(Some(Duration::from_millis(ms)))
                .expect("timeout");
            let start = Instant::now();
            let got = (&stream).read(&mut [0u8; 16]);
            let elapsed = start.elapsed().as_millis();
            stream.set_read_timeout(None).expect("no timeout");
            match got {
                Ok(n) => format!("timeout read {n} {elapsed}"),
                Err(e) => format!("timeout {:?} {elapsed}", e.kind()),
            }
        }
        ["writetimeout", addr] => write_until_timeout(addr),
        ["listener"] => match listener_cases(&stream) {
            Ok(()) => "listener ok".to_owned(),
            Err(why) => format!("listener fail {why}"),
        },
        ["backlog", n] => backlog(&stream, n.parse().unwrap_or(0)),
        ["udp", addr, n] => udp_client(addr, n.parse().unwrap_or(0)),
        ["takeerror", addr] => take_error_cases(addr),
        ["hold", port] => match TcpListener::bind(("0.0.0.0", port.parse().unwrap_or(0))) {
            Ok(listener) => {
                HELD.lock().expect("held").push(listener);
                "held".to_owned()
            }
            Err(e) => format!("hold err {:?}", e.kind()),
        },
        ["bind", port] => bind_and_greet(&stream, port.parse().unwrap_or(0)),
        ["stdtests", addr, closed] => match std_tests::run(addr, closed.parse().unwrap_or(1)) {
            Ok((n, rtt)) => format!("stdtests ok {n} {rtt:.1}"),
            Err(why) => format!("stdtests fail {why}"),
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
        (Some("--std"), Some(addr)) => {
            on_std::serve(&addr, on_std::echo);
            return Ok(());
        }
        _ => anyhow::bail!("usage: blocking_echo --config FILE | --std ADDR"),
    };
    let runtime = blocking::register(Runtime::from_config(&config)?, SERVICE)?;
    std::thread::spawn(|| on_shardnet::serve(&format!("0.0.0.0:{ECHO}"), on_shardnet::echo));
    std::thread::spawn(|| on_shardnet::serve(&format!("0.0.0.0:{CONTROL}"), control));
    std::thread::spawn(udp_echo);
    runtime.run()
}

/// Cases of rust-lang/rust `library/std/src/net/tcp/tests.rs`, adapted:
/// the far end is a Linux echo server (no loopback on shardnet), so each
/// case keeps its checks but talks to that server.
mod std_tests {
    use std::io::{ErrorKind, IoSlice, IoSliceMut, Read, Write};
    use std::net::{Shutdown, SocketAddr};
    use std::time::{Duration, Instant};

    use shardnet::net::blocking::{TcpListener, TcpStream};

    type Case = fn(&str, u16) -> Result<(), String>;

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

    fn connect_error(addr: &str, closed: u16) -> Result<(), String> {
        let ip = addr.split(':').next().unwrap_or(addr);
        match TcpStream::connect((ip, closed)) {
            Ok(_) => Err("connected to a closed port".into()),
            Err(e) => {
                check!(e.kind() == ErrorKind::ConnectionRefused);
                Ok(())
            }
        }
    }

    fn smoke_test(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        t(s.write_all(&[99]), "write")?;
        let mut b = [0];
        t(s.read_exact(&mut b), "read")?;
        check!(b[0] == 99);
        check!(s.peer_addr().map(|a| a.to_string()).ok().as_deref() == Some(addr));
        check!(s.local_addr().is_ok_and(|a| a.port() != 0));
        Ok(())
    }

    fn read_eof(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        t(s.shutdown(Shutdown::Write), "shutdown")?;
        let mut b = [0; 16];
        check!(t(s.read(&mut b), "read")? == 0);
        check!(t(s.read(&mut b), "read again")? == 0);
        Ok(())
    }

    fn write_close(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        t(s.shutdown(Shutdown::Write), "shutdown")?;
        let mut b = [0; 16];
        check!(t(s.read(&mut b), "read")? == 0);
        // The server closed: writing fails (a reset comes back), as in
        // std's case, within a bounded number of tries.
        for _ in 0..500 {
            match s.write_all(b"ping") {
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    check!(matches!(
                        e.kind(),
                        ErrorKind::BrokenPipe
                            | ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                    ));
                    return Ok(());
                }
            }
        }
        Err("writes after shutdown kept succeeding".into())
    }

    fn multiple_connect_serial(addr: &str, _: u16) -> Result<(), String> {
        for i in 0..10u8 {
            let mut s = t(TcpStream::connect(addr), "connect")?;
            t(s.write_all(&[i]), "write")?;
            let mut b = [0];
            t(s.read_exact(&mut b), "read")?;
            check!(b[0] == i);
        }
        Ok(())
    }

    fn multiple_connect_interleaved_greedy_schedule(addr: &str, _: u16) -> Result<(), String> {
        let threads: Vec<_> = (0..10u8)
            .map(|i| {
                let addr = addr.to_owned();
                std::thread::spawn(move || -> Result<(), String> {
                    let mut s = t(TcpStream::connect(&*addr), "connect")?;
                    t(s.write_all(&[i]), "write")?;
                    let mut b = [0];
                    t(s.read_exact(&mut b), "read")?;
                    check!(b[0] == i);
                    Ok(())
                })
            })
            .collect();
        for thread in threads {
            thread.join().map_err(|_| "thread panicked")??;
        }
        Ok(())
    }

    fn multiple_connect_interleaved_lazy_schedule(addr: &str, _: u16) -> Result<(), String> {
        // Each thread connects, then starts the next before writing.
        fn connect(i: u8, addr: String) -> Result<(), String> {
            if i == 10 {
                return Ok(());
            }
            let mut s = t(TcpStream::connect(&*addr), "connect")?;
            let next = addr.clone();
            std::thread::spawn(move || connect(i + 1, next))
                .join()
                .map_err(|_| "thread panicked")??;
            t(s.write_all(&[99]), "write")?;
            let mut b = [0];
            t(s.read_exact(&mut b), "read")?;
            check!(b[0] == 99);
            Ok(())
        }
        connect(0, addr.to_owned())
    }

    fn socket_and_peer_name(addr: &str, _: u16) -> Result<(), String> {
        let s = t(TcpStream::connect(addr), "connect")?;
        let a: SocketAddr = addr.parse().map_err(|_| "addr")?;
        check!(t(s.peer_addr(), "peer")? == a);
        Ok(())
    }

    fn partial_read(addr: &str, _: u16) -> Result<(), String> {
        let mut c = t(TcpStream::connect(addr), "connect")?;
        t(c.write_all(&[10]), "write")?;
        let mut b = [0; 10];
        check!(t(c.read(&mut b), "read")? == 1);
        check!(b[0] == 10);
        Ok(())
    }

    fn read_vectored(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        check!(t(s.write(&[10, 11, 12]), "write")? == 3);
        std::thread::sleep(Duration::from_millis(50));
        let (mut a, mut b, mut c) = ([0u8; 0], [0u8; 1], [0u8; 3]);
        let len = t(
            s.read_vectored(&mut [
                IoSliceMut::new(&mut a),
                IoSliceMut::new(&mut b),
                IoSliceMut::new(&mut c),
            ]),
            "read",
        )?;
        check!(len > 0);
        check!(b == [10]);
        check!(len == 1 || c == [11, 12, 0]);
        Ok(())
    }

    fn write_vectored(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        let (a, b, c) = ([0u8; 0], [10u8], [11u8, 12]);
        let n = t(
            s.write_vectored(&[IoSlice::new(&a), IoSlice::new(&b), IoSlice::new(&c)]),
            "write",
        )?;
        let mut buf = [0; 4];
        t(s.read_exact(&mut buf[..n]), "read")?;
        if n == 1 {
            check!(buf == [10, 0, 0, 0]);
        } else {
            check!(n == 3 && buf == [10, 11, 12, 0]);
        }
        Ok(())
    }

    fn close_read_wakes_up(addr: &str, _: u16) -> Result<(), String> {
        let s = t(TcpStream::connect(addr), "connect")?;
        let mut s2 = t(s.try_clone(), "clone")?;
        let reader = std::thread::spawn(move || s2.read(&mut [0]));
        std::thread::sleep(Duration::from_millis(50));
        // This wakes the reader; the case never ends if it does not.
        t(s.shutdown(Shutdown::Read), "shutdown")?;
        let got = reader.join().map_err(|_| "reader panicked")?;
        check!(t(got, "read")? == 0);
        Ok(())
    }

    fn clone_while_reading(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        let mut s2 = t(s.try_clone(), "clone")?;
        let reader = std::thread::spawn(move || s2.read(&mut [0]));
        std::thread::sleep(Duration::from_millis(20));
        let _ = t(s.try_clone(), "clone again")?;
        t(s.write_all(&[0]), "write")?;
        check!(t(reader.join().map_err(|_| "reader panicked")?, "read")? == 1);
        Ok(())
    }

    fn tcp_clone_smoke(addr: &str, _: u16) -> Result<(), String> {
        let mut s1 = t(TcpStream::connect(addr), "connect")?;
        let mut s2 = t(s1.try_clone(), "clone")?;
        let reader = std::thread::spawn(move || {
            let mut b = [0; 2];
            s2.read_exact(&mut b).map(|_| b)
        });
        t(s1.write_all(&[1]), "write")?;
        std::thread::sleep(Duration::from_millis(20));
        t(s1.write_all(&[2]), "write")?;
        let got = reader.join().map_err(|_| "reader panicked")?;
        check!(t(got, "read")? == [1, 2]);
        Ok(())
    }

    fn tcp_clone_two_read(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let mut c = s.try_clone().expect("clone");
                std::thread::spawn(move || {
                    let mut b = [0];
                    c.read_exact(&mut b).map(|_| b[0])
                })
            })
            .collect();
        t(s.write_all(&[1]), "write")?;
        std::thread::sleep(Duration::from_millis(20));
        t(s.write_all(&[2]), "write")?;
        let mut got: Vec<u8> = Vec::new();
        for r in readers {
            got.push(t(r.join().map_err(|_| "reader panicked")?, "read")?);
        }
        got.sort();
        check!(got == [1, 2]);
        Ok(())
    }

    fn tcp_clone_two_write(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        let writers: Vec<_> = (1..=2u8)
            .map(|i| {
                let mut c = s.try_clone().expect("clone");
                std::thread::spawn(move || c.write_all(&[i]))
            })
            .collect();
        for w in writers {
            t(w.join().map_err(|_| "writer panicked")?, "write")?;
        }
        let mut b = [0; 2];
        t(s.read_exact(&mut b), "read")?;
        b.sort();
        check!(b == [1, 2]);
        Ok(())
    }

    fn shutdown_smoke(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        t(s.write_all(&[1]), "write")?;
        t(s.shutdown(Shutdown::Write), "shutdown")?;
        check!(s.write(&[1]).is_err());
        let mut b = [0; 2];
        check!(t(s.read(&mut b), "read")? == 1);
        check!(t(s.read(&mut b), "read")? == 0);
        Ok(())
    }

    fn close_readwrite_smoke(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        let mut b = [0];
        t(s.shutdown(Shutdown::Read), "shutdown read")?;
        check!(t(s.read(&mut b), "read")? == 0);
        check!(t(s.read(&mut b), "read")? == 0);
        t(s.shutdown(Shutdown::Write), "shutdown write")?;
        check!(s.write(&[0]).is_err());
        t(s.shutdown(Shutdown::Both), "shutdown both")?;
        check!(t(s.read(&mut b), "read")? == 0);
        Ok(())
    }

    fn timeouts(addr: &str, _: u16) -> Result<(), String> {
        let s = t(TcpStream::connect(addr), "connect")?;
        let d = Duration::new(1, 7);
        check!(t(s.read_timeout(), "get")?.is_none());
        check!(t(s.write_timeout(), "get")?.is_none());
        t(s.set_read_timeout(Some(d)), "set")?;
        check!(t(s.read_timeout(), "get")? == Some(d));
        t(s.set_write_timeout(Some(d)), "set")?;
        check!(t(s.write_timeout(), "get")? == Some(d));
        t(s.set_read_timeout(None), "set")?;
        check!(t(s.read_timeout(), "get")?.is_none());
        Ok(())
    }

    fn test_read_timeout(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        t(s.set_read_timeout(Some(Duration::from_millis(300))), "set")?;
        let start = Instant::now();
        let e = s.read(&mut [0; 8]).err().ok_or("a read returned data")?;
        check!(matches!(
            e.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        check!(start.elapsed() >= Duration::from_millis(300));
        Ok(())
    }

    fn test_read_with_timeout(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        t(s.set_read_timeout(Some(Duration::from_millis(300))), "set")?;
        t(s.write_all(b"hello"), "write")?;
        let mut b = [0; 5];
        t(s.read_exact(&mut b), "read")?;
        check!(&b == b"hello");
        let e = s.read(&mut b).err().ok_or("a read returned data")?;
        check!(matches!(
            e.kind(),
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ));
        // Nothing was lost to the timeout: the next bytes arrive whole.
        t(s.write_all(b"again"), "write")?;
        t(s.read_exact(&mut b), "read")?;
        check!(&b == b"again");
        Ok(())
    }

    fn test_timeout_zero_duration(addr: &str, _: u16) -> Result<(), String> {
        let s = t(TcpStream::connect(addr), "connect")?;
        let e = s.set_write_timeout(Some(Duration::ZERO)).err();
        check!(e.is_some_and(|e| e.kind() == ErrorKind::InvalidInput));
        let e = s.set_read_timeout(Some(Duration::ZERO)).err();
        check!(e.is_some_and(|e| e.kind() == ErrorKind::InvalidInput));
        let a: SocketAddr = addr.parse().map_err(|_| "addr")?;
        let e = TcpStream::connect_timeout(&a, Duration::ZERO).err();
        check!(e.is_some_and(|e| e.kind() == ErrorKind::InvalidInput));
        Ok(())
    }

    fn connect_timeout_valid(addr: &str, _: u16) -> Result<(), String> {
        let a: SocketAddr = addr.parse().map_err(|_| "addr")?;
        t(
            TcpStream::connect_timeout(&a, Duration::from_secs(5)),
            "connect",
        )?;
        Ok(())
    }

    fn nodelay(addr: &str, _: u16) -> Result<(), String> {
        let s = t(TcpStream::connect(addr), "connect")?;
        t(s.set_nodelay(true), "set")?;
        check!(t(s.nodelay(), "get")?);
        t(s.set_nodelay(false), "set")?;
        check!(!t(s.nodelay(), "get")?);
        Ok(())
    }

    fn set_nonblocking(addr: &str, _: u16) -> Result<(), String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        t(s.set_nonblocking(true), "set")?;
        let mut b = [0];
        match s.read(&mut b) {
            Ok(n) => return Err(format!("read {n} bytes from nothing")),
            Err(e) => check!(e.kind() == ErrorKind::WouldBlock),
        }
        Ok(())
    }

    fn debug(addr: &str, _: u16) -> Result<(), String> {
        let s = t(TcpStream::connect(addr), "connect")?;
        let text = format!("{s:?}");
        check!(text.contains(addr));
        Ok(())
    }

    /// std's `bind_error`, and binding a port twice (std's `double_bind`).
    fn bind_errors(_: &str, _: u16) -> Result<(), String> {
        let e = TcpListener::bind("1.1.1.1:7000").err();
        check!(e.is_some_and(|e| e.kind() == ErrorKind::AddrNotAvailable));
        let e = TcpListener::bind("0.0.0.0:7000").err();
        check!(e.is_some_and(|e| e.kind() == ErrorKind::AddrInUse));
        Ok(())
    }

    /// The mean round trip of one byte through the blocking sockets, in
    /// microseconds (a write and a read, each a request to the worker).
    fn round_trip_us(addr: &str) -> Result<f64, String> {
        let mut s = t(TcpStream::connect(addr), "connect")?;
        let mut b = [0];
        let n = 2000;
        let start = Instant::now();
        for i in 0..n {
            t(s.write_all(&[i as u8]), "write")?;
            t(s.read_exact(&mut b), "read")?;
            check!(b[0] == i as u8);
        }
        Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(n))
    }

    pub fn run(addr: &str, closed: u16) -> Result<(usize, f64), String> {
        let cases: &[(&str, Case)] = &[
            ("connect_error", connect_error),
            ("smoke_test", smoke_test),
            ("read_eof", read_eof),
            ("write_close", write_close),
            ("multiple_connect_serial", multiple_connect_serial),
            (
                "multiple_connect_interleaved_greedy_schedule",
                multiple_connect_interleaved_greedy_schedule,
            ),
            (
                "multiple_connect_interleaved_lazy_schedule",
                multiple_connect_interleaved_lazy_schedule,
            ),
            ("socket_and_peer_name", socket_and_peer_name),
            ("partial_read", partial_read),
            ("read_vectored", read_vectored),
            ("write_vectored", write_vectored),
            ("close_read_wakes_up", close_read_wakes_up),
            ("clone_while_reading", clone_while_reading),
            ("tcp_clone_smoke", tcp_clone_smoke),
            ("tcp_clone_two_read", tcp_clone_two_read),
            ("tcp_clone_two_write", tcp_clone_two_write),
            ("shutdown_smoke", shutdown_smoke),
            ("close_readwrite_smoke", close_readwrite_smoke),
            ("timeouts", timeouts),
            ("test_read_timeout", test_read_timeout),
            ("test_read_with_timeout", test_read_with_timeout),
            ("test_timeout_zero_duration", test_timeout_zero_duration),
            ("connect_timeout_valid", connect_timeout_valid),
            ("nodelay", nodelay),
            ("set_nonblocking", set_nonblocking),
            ("debug", debug),
            ("bind_errors", bind_errors),
        ];
        for (name, case) in cases {
            case(addr, closed).map_err(|why| format!("{name}: {why}"))?;
        }
        let rtt = round_trip_us(addr).map_err(|why| format!("round_trip: {why}"))?;
        Ok((cases.len(), rtt))
    }
}
