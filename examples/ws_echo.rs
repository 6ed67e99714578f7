//! A thread-per-connection WebSocket echo server: the `tungstenite` crate,
//! unmodified, over shardnet's blocking sockets
//! ([`shardnet::net::blocking`]). tungstenite takes any `Read + Write`
//! stream, so shardnet's [`TcpStream`] goes where a `std::net::TcpStream`
//! would.
//!
//! ```text
//! cargo run --release --example ws_echo -- --config FILE
//! ```
//!
//! The rules must give TCP port 7010 to the service `"ws"`. Each
//! connection gets a thread that completes the opening handshake
//! (`tungstenite::accept`), then sends every text and binary message back
//! as it came; tungstenite answers pings with pongs and a close frame with
//! the same close frame (the close handshake), after which the thread drops
//! the stream (the server closes the TCP connection first, as RFC 6455
//! asks).

use std::path::PathBuf;

use shardnet::net::blocking::{self, TcpListener, TcpStream};
use shardnet::Runtime;
use tungstenite::{Error, Message};

/// The service's name in the rules.
const SERVICE: &str = "ws";
/// The WebSocket port.
const PORT: u16 = 7010;

/// One connection: the handshake, then echo until the close handshake.
fn serve(stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    let mut ws = match tungstenite::accept(stream) {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("ws_echo: handshake with {peer:?}: {e}");
            return;
        }
    };
    loop {
        match ws.read() {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                if let Err(e) = ws.send(message) {
                    eprintln!("ws_echo: send to {peer:?}: {e}");
                    return;
                }
            }
            // Pongs to pings and the reply to a close are queued by
            // tungstenite and written by the next `read`.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => {}
            Err(Error::ConnectionClosed) => return,
            Err(e) => {
                eprintln!("ws_echo: {peer:?}: {e}");
                return;
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let config = match (args.next().as_deref(), args.next()) {
        (Some("--config"), Some(path)) => PathBuf::from(path),
        _ => anyhow::bail!("usage: ws_echo --config FILE"),
    };
    let runtime = blocking::register(Runtime::from_config(&config)?, SERVICE)?;
    std::thread::spawn(|| {
        let listener = TcpListener::bind(("0.0.0.0", PORT)).unwrap_or_else(|e| {
            eprintln!("ws_echo: cannot bind {PORT}: {e}");
            std::process::exit(1)
        });
        eprintln!("ws_echo: listening on {}", listener.local_addr().unwrap());
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => drop(std::thread::spawn(move || serve(stream))),
                Err(e) => {
                    eprintln!("ws_echo: accept: {e}");
                    return;
                }
            }
        }
    });
    runtime.run()
}
