//! The client of `shardnet capture`: asks a running instance's admin socket
//! for `POST /capture` and writes the pcap stream to a file or stdout, whole
//! records only, until the server ends it (`--count` reached) or SIGINT.

use std::io::{self, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::PcapError;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// What `shardnet capture` was asked.
#[derive(Debug)]
pub struct CaptureArgs {
    /// The admin socket's path.
    pub control: PathBuf,
    /// One worker, or all.
    pub worker: Option<usize>,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// The filter expression (see `shardnet::capture`).
    pub filter: Option<String>,
    /// The output file; `-` for stdout.
    pub write: PathBuf,
}

/// What a capture wrote.
#[derive(Debug, Clone, Copy)]
pub struct CaptureOutcome {
    /// Frames written.
    pub written: u64,
    /// Copies the workers dropped meanwhile (`shardnet_capture_dropped_total`).
    pub dropped: u64,
}

/// How often a read wakes up to look at the stop flag.
const POLL: Duration = Duration::from_millis(200);

/// Run the capture until the stream ends or `stop` is set.
pub fn capture(args: &CaptureArgs, stop: &Arc<AtomicBool>) -> anyhow::Result<CaptureOutcome> {
    let dropped_before = dropped_total(&args.control)?;
    let mut query = Vec::new();
    if let Some(w) = args.worker {
        query.push(format!("worker={w}"));
    }
    if let Some(c) = args.count {
        query.push(format!("count={c}"));
    }
    if let Some(f) = &args.filter {
        query.push(format!(
            "filter={}",
            utf8_percent_encode(f, NON_ALPHANUMERIC)
        ));
    }
    let mut stream = request(
        &args.control,
        "POST",
        &format!("/capture?{}", query.join("&")),
    )?;
    stream.set_read_timeout(Some(POLL))?;
    let (status, mut buffer) = read_head(&mut stream, &args.control)?;
    if status != 200 {
        read_to_end_bounded(&mut stream, &mut buffer);
        bail!("{}", error_of(&buffer));
    }
    let out: Box<dyn Write> = if args.write == Path::new("-") {
        Box::new(io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&args.write)
                .with_context(|| format!("cannot create {}", args.write.display()))?,
        )
    };
    let mut out = BufWriter::new(out);
    // Whole records only, flushed as they come: the file is a valid pcap at
    // every point. The parser finds the records' bounds and checks them;
    // their bytes go out as the server wrote them.
    let mut parser: Option<PcapParser> = None;
    let mut written = 0u64;
    let mut chunk = [0u8; 64 * 1024];
    let mut ended = false;
    while !ended && !stop.load(Relaxed) {
        let mut at = 0;
        if parser.is_none() {
            match PcapParser::new(&buffer) {
                Ok((rest, p)) => {
                    at = buffer.len() - rest.len();
                    parser = Some(p);
                }
                Err(PcapError::IncompleteBuffer) => {}
                Err(e) => bail!("the server sent no pcap: {e}"),
            }
        }
        if let Some(p) = &parser {
            loop {
                match p.next_raw_packet(&buffer[at..]) {
                    Ok((rest, _)) => {
                        written += 1;
                        at = buffer.len() - rest.len();
                    }
                    Err(PcapError::IncompleteBuffer) => break,
                    Err(e) => bail!("the capture stream is corrupt: {e}"),
                }
            }
        }
        if at > 0 {
            out.write_all(&buffer[..at])
                .and_then(|()| out.flush())
                .context("cannot write the capture")?;
            buffer.drain(..at);
        }
        ended =
            !read_some(&mut stream, &mut chunk, &mut buffer).context("the capture stream broke")?;
    }
    if parser.is_none() {
        // Stopped before the header came: still a valid, empty file.
        let header = PcapHeader {
            snaplen: crate::capture::SNAPLEN as u32,
            ..PcapHeader::default()
        };
        header
            .write_to(&mut out)
            .map_err(|e| anyhow::anyhow!("cannot write the capture: {e}"))?;
    }
    out.flush().context("cannot write the capture")?;
    if !ended {
        // Interrupted: the server would notice only at the next frame.
        let mut stop = request(&args.control, "POST", "/capture/stop")?;
        stop.set_read_timeout(Some(Duration::from_secs(5)))?;
        read_to_end_bounded(&mut stop, &mut Vec::new());
    }
    let dropped = dropped_total(&args.control)?.saturating_sub(dropped_before);
    Ok(CaptureOutcome { written, dropped })
}

fn request(socket: &Path, method: &str, target: &str) -> anyhow::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to the admin socket {} ([metrics] admin_socket of the running shardnet)",
            socket.display()
        )
    })?;
    // HTTP/1.0: the server closes the connection at the end of the answer.
    write!(
        stream,
        "{method} {target} HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )?;
    Ok(stream)
}

/// The status and whatever of the body came with the head.
fn read_head(stream: &mut UnixStream, socket: &Path) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..600 {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]);
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok((status, buffer[end + 4..].to_vec()));
        }
        if buffer.len() > 64 * 1024 {
            break;
        }
        if !read_some(stream, &mut chunk, &mut buffer).context("cannot read the answer")? {
            break;
        }
    }
    bail!("{} gave no HTTP answer", socket.display())
}

/// One read of `stream` into `buffer`, through `chunk`: `false` at the end
/// of the stream; a read that timed out or was interrupted adds nothing and
/// is not an error.
fn read_some(stream: &mut UnixStream, chunk: &mut [u8], buffer: &mut Vec<u8>) -> io::Result<bool> {
    match stream.read(chunk) {
        Ok(0) => Ok(false),
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

fn read_to_end_bounded(stream: &mut UnixStream, buffer: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    for _ in 0..50 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

fn error_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

/// The sum of `shardnet_capture_dropped_total` over the workers.
fn dropped_total(socket: &Path) -> anyhow::Result<u64> {
    let stream = request(socket, "GET", "/metrics")?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    stream
        .take(16 << 20)
        .read_to_string(&mut text)
        .context("cannot read /metrics")?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("shardnet_capture_dropped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}
