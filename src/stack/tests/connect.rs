//! Active opens from async tasks ([`crate::rt::TcpStream::connect`]): a
//! peer that answers, one that resets, one that never answers, a next hop
//! that needs ARP first, a source port that hashes home, an attempt
//! abandoned by `rt::timeout`, and futures-io on the stream.

use std::future::poll_fn;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::rss::{HomePorts, RssModel};
use crate::rt::TcpStream;
use crate::service::{Registry, WorkerInfo};
use crate::testing::{parse_tcp_frame, stack_with_registry, tcp_frame, tcp_header};
use crate::wire::TcpFlags;

const SERVER_PORT: u16 = 80;
const FIRST: u16 = 61000;
const LAST: u16 = 61999;
const MS: u64 = 1_000_000;

/// What the client task saw: the connect's error, or the bytes it read
/// back after writing "ping" and shutting down its side.
type Outcome = Arc<Mutex<Option<io::Result<Vec<u8>>>>>;

/// How the client task talks over its stream.
#[derive(Clone, Copy)]
enum Style {
    /// `poll_read_into` / `poll_write_from` directly.
    Poll,
    /// futures-io's `AsyncReadExt` / `AsyncWriteExt`.
    #[cfg(feature = "futures-io")]
    FuturesIo,
}

async fn client(remote: SocketAddrV4, style: Style) -> io::Result<Vec<u8>> {
    let stream = crate::rt::timeout(Duration::from_secs(600), TcpStream::connect(remote))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    assert_eq!(stream.peer_addr(), remote);
    let mut got = Vec::new();
    match style {
        Style::Poll => {
            let n = poll_fn(|cx| stream.poll_write_from(cx, b"ping")).await?;
            assert_eq!(n, 4);
            stream.shutdown_write();
            let mut buf = [0u8; 64];
            loop {
                let n = poll_fn(|cx| stream.poll_read_into(cx, &mut buf)).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        #[cfg(feature = "futures-io")]
        Style::FuturesIo => {
            use futures_util::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = stream;
            stream.write_all(b"ping").await?;
            stream.close().await?;
            stream.read_to_end(&mut got).await?;
        }
    }
    Ok(got)
}

/// A stack whose async service "client" connects once to the peer's
/// `SERVER_PORT` from worker 0 of 2 (software RSS) and records the outcome.
fn client_stack(style: Style, wait_for: Option<Duration>) -> (Stack, Outcome, Arc<HomePorts>) {
    client_stack_with(style, wait_for, TcpSetup::default())
}

/// [`client_stack`] with the given TCP setup.
fn client_stack_with(
    style: Style,
    wait_for: Option<Duration>,
    tcp: TcpSetup,
) -> (Stack, Outcome, Arc<HomePorts>) {
    let outcome: Outcome = Arc::new(Mutex::new(None));
    let mut registry = Registry::new();
    let recorded = outcome.clone();
    registry
        .add_async("client", move |_: &WorkerInfo<'_>| {
            let recorded = recorded.clone();
            async move {
                let remote = SocketAddrV4::new(PEER_IP, SERVER_PORT);
                let result = match wait_for {
                    Some(limit) => crate::rt::timeout(limit, client(remote, style))
                        .await
                        .unwrap_or_else(|_| Err(io::Error::other("the test's timeout"))),
                    None => client(remote, style).await,
                };
                *recorded.lock().unwrap() = Some(result);
            }
        })
        .expect("a new name");
    let (mut stack, _) =
        stack_with_registry(OUR_IFACE, &[], DefaultAction::Drop, tcp, &registry, 2);
    let ports = Arc::new(HomePorts::new(RssModel::software(2), FIRST, LAST));
    stack.set_local_ports(ports.picker(0));
    (stack, outcome, ports)
}

type Segments = Vec<(TcpHeader, Vec<u8>)>;

/// Run the tasks at `now` for a few rounds: the TCP segments sent.
fn rounds(stack: &mut Stack, now: u64) -> Segments {
    let mut egress = CollectEgress::default();
    for _ in 0..4 {
        stack.poll(now, &mut egress);
        stack.run_tasks(now, &mut egress);
    }
    egress
        .frames
        .iter()
        .filter_map(|f| parse_tcp_frame(f.data()))
        .collect()
}

/// The peer's segment to our `port`, then a few rounds.
fn from_peer(
    stack: &mut Stack,
    port: u16,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    payload: &[u8],
    now: u64,
) -> Segments {
    let mut header = tcp_header(SERVER_PORT, port, flags, seq, ack);
    if flags.contains(TcpFlags::SYN) {
        header.options.mss = Some(1460);
    }
    let frame = tcp_frame(ENDS, &header, payload);
    let mut egress = CollectEgress::default();
    stack.process(HeapBuf::from_slice(&frame), now, &mut egress);
    let mut out: Segments = egress
        .frames
        .iter()
        .filter_map(|f| parse_tcp_frame(f.data()))
        .collect();
    out.extend(rounds(stack, now));
    out
}

fn outcome_of(outcome: &Outcome) -> Option<io::Result<Vec<u8>>> {
    outcome.lock().unwrap().take()
}

/// The SYN the first rounds send; checks its source port steers home.
fn expect_syn(stack: &mut Stack, ports: &HomePorts, now: u64) -> TcpHeader {
    let out = rounds(stack, now);
    assert_eq!(out.len(), 1, "one SYN: {out:?}");
    let syn = out[0].0;
    assert_eq!(syn.flags, TcpFlags::SYN);
    assert_eq!(syn.dst_port, SERVER_PORT);
    assert!((FIRST..=LAST).contains(&syn.src_port), "{}", syn.src_port);
    // The peer's replies hash to this worker (0 of 2) in the RSS model.
    let reply = tcp_frame(
        ENDS,
        &tcp_header(
            SERVER_PORT,
            syn.src_port,
            TcpFlags::SYN | TcpFlags::ACK,
            1,
            1,
        ),
        b"",
    );
    assert_eq!(ports.model().worker_of_frame(&reply), Some(0));
    syn
}

/// Handshake, "ping" in, "pong" and a FIN out; the task reads "pong".
fn talk(style: Style) {
    let (mut stack, outcome, ports) = client_stack(style, None);
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let syn = expect_syn(&mut stack, &ports, 0);
    let port = syn.src_port;
    let ours = syn.seq.wrapping_add(1);
    assert_eq!(stack.tcp().len(), 1);

    let out = from_peer(
        &mut stack,
        port,
        TcpFlags::SYN | TcpFlags::ACK,
        5000,
        ours,
        b"",
        MS,
    );
    let data: Vec<u8> = out.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(data, b"ping", "{out:?}");
    assert!(
        out.iter().any(|(h, _)| h.flags.contains(TcpFlags::FIN)),
        "our FIN after the request: {out:?}"
    );
    assert!(outcome_of(&outcome).is_none(), "still reading");

    let out = from_peer(
        &mut stack,
        port,
        TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN,
        5001,
        // Our FIN too: the connection ends (TIME-WAIT) before the task
        // reads, and the bytes are still there for it.
        ours.wrapping_add(5),
        b"pong",
        2 * MS,
    );
    assert!(out.iter().all(|(h, _)| h.dst_port == SERVER_PORT));
    let got = outcome_of(&outcome).expect("done").expect("a reply");
    assert_eq!(got, b"pong");
    assert_eq!(stack.tcp().time_wait_len(), 1, "ended, in TIME-WAIT");
    assert_eq!(stack.counters.tcp_opened_active.get(), 1);
}

#[test]
fn a_connect_to_a_peer_that_answers_carries_bytes_both_ways() {
    talk(Style::Poll);
}

#[cfg(feature = "futures-io")]
#[test]
fn futures_io_traits_read_and_write_a_connected_stream() {
    talk(Style::FuturesIo);
}

#[test]
fn a_reset_answering_the_syn_is_connection_refused() {
    let (mut stack, outcome, ports) = client_stack(Style::Poll, None);
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let syn = expect_syn(&mut stack, &ports, 0);
    let out = from_peer(
        &mut stack,
        syn.src_port,
        TcpFlags::RST | TcpFlags::ACK,
        0,
        syn.seq.wrapping_add(1),
        b"",
        MS,
    );
    assert!(out.is_empty(), "{out:?}");
    let error = outcome_of(&outcome).expect("done").expect_err("refused");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(stack.tcp().len(), 0);
    assert_eq!(stack.net().unwrap().reactor().borrow().sockets(), 0);
}

#[test]
fn a_syn_never_answered_times_out() {
    let (mut stack, outcome, ports) = client_stack(Style::Poll, None);
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let syn = expect_syn(&mut stack, &ports, 0);
    let mut now = 0;
    let mut retransmits = 0;
    while outcome.lock().unwrap().is_none() {
        now += 500 * MS;
        assert!(now < 600_000 * MS, "the connect gave up by now");
        // The neighbour stays known; the SYN goes out again with backoff.
        stack.neighbours().learn(PEER_IP, PEER_MAC, now);
        retransmits += rounds(&mut stack, now)
            .iter()
            .filter(|(h, _)| h.flags == TcpFlags::SYN && h.seq == syn.seq)
            .count();
    }
    let error = outcome_of(&outcome).unwrap().expect_err("timed out");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(retransmits, 6, "Linux's tcp_syn_retries");
    assert_eq!(stack.tcp().len(), 0);
}

#[test]
fn the_next_hop_is_resolved_by_arp_first() {
    let (mut stack, outcome, ports) = client_stack(Style::Poll, None);
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    stack.run_tasks(50 * MS, &mut egress);
    let arp_requests = |egress: &CollectEgress| {
        egress
            .frames
            .iter()
            .filter(|f| EthernetFrame::new_unchecked(f.data()).ethertype() == EtherType::Arp)
            .count()
    };
    assert_eq!(arp_requests(&egress), 1, "one request per 100 ms");
    assert_eq!(stack.tcp().len(), 0, "no SYN without the MAC");
    let mut egress = CollectEgress::default();
    stack.run_tasks(150 * MS, &mut egress);
    assert_eq!(arp_requests(&egress), 1, "asked again");
    stack.neighbours().learn(PEER_IP, PEER_MAC, 200 * MS);
    let syn = expect_syn(&mut stack, &ports, 200 * MS);
    assert_eq!(stack.tcp().len(), 1);
    assert_ne!(syn.src_port, 0);
    assert!(outcome_of(&outcome).is_none());
}

#[test]
fn an_unanswered_arp_is_host_unreachable_after_the_connect_timeout() {
    let (mut stack, outcome, _) = client_stack(Style::Poll, None);
    let mut now = 0;
    while outcome.lock().unwrap().is_none() {
        assert!(now < 600_000 * MS, "the connect gave up by now");
        rounds(&mut stack, now);
        now += 1000 * MS;
    }
    let error = outcome_of(&outcome).unwrap().expect_err("unreachable");
    assert_eq!(error.kind(), io::ErrorKind::HostUnreachable);
    assert!(
        now >= 127_000 * MS,
        "it kept asking for the whole SYN timeout"
    );
}

#[test]
fn a_destination_off_the_subnet_without_gateway_is_network_unreachable() {
    // 203.0.113.9 is off 198.18.0.0/24, and no gateway is set.
    let outcome: Outcome = Arc::new(Mutex::new(None));
    let recorded = outcome.clone();
    let mut registry = Registry::new();
    registry
        .add_async("client", move |_: &WorkerInfo<'_>| {
            let recorded = recorded.clone();
            async move {
                let remote = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 9), 80);
                let result = TcpStream::connect(remote).await.map(|_| Vec::new());
                *recorded.lock().unwrap() = Some(result);
            }
        })
        .expect("a new name");
    let (mut stack, _) = stack_with_registry(
        OUR_IFACE,
        &[],
        DefaultAction::Drop,
        TcpSetup::default(),
        &registry,
        1,
    );
    let ports = Arc::new(HomePorts::new(RssModel::software(1), FIRST, LAST));
    stack.set_local_ports(ports.picker(0));
    rounds(&mut stack, 0);
    let error = outcome_of(&outcome).unwrap().expect_err("no route");
    assert_eq!(error.kind(), io::ErrorKind::NetworkUnreachable);
}

#[test]
fn a_timeout_abandons_the_half_open_connection() {
    let (mut stack, outcome, ports) = client_stack(Style::Poll, Some(Duration::from_millis(300)));
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    expect_syn(&mut stack, &ports, 0);
    assert_eq!(stack.tcp().len(), 1);
    rounds(&mut stack, 400 * MS);
    let error = outcome_of(&outcome).expect("done").expect_err("timed out");
    assert_eq!(error.to_string(), "the test's timeout");
    assert_eq!(stack.tcp().len(), 0, "the half-open connection is gone");
    assert_eq!(stack.net().unwrap().reactor().borrow().sockets(), 0);
}

#[test]
fn connect_without_a_port_range_is_addr_not_available() {
    let (mut stack, outcome, _) = client_stack(Style::Poll, None);
    stack.dialer = None;
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    rounds(&mut stack, 0);
    let error = outcome_of(&outcome).unwrap().expect_err("no ports");
    assert_eq!(error.kind(), io::ErrorKind::AddrNotAvailable);
}

#[test]
fn a_full_table_fails_the_connect_and_is_counted() {
    let mut tcp = TcpSetup::default();
    tcp.table.max_connections = 0;
    let (mut stack, outcome, _) = client_stack_with(Style::Poll, None, tcp);
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let out = rounds(&mut stack, 0);
    assert!(out.is_empty(), "no SYN: {out:?}");
    let error = outcome_of(&outcome).unwrap().expect_err("table full");
    assert_eq!(error.kind(), io::ErrorKind::Other);
    assert!(error.to_string().contains("table is full"), "{error}");
    assert_eq!(stack.counters.drops_of(DropReason::ConnectionLimit), 1);
}

#[test]
fn a_read_on_a_connection_whose_peer_went_silent_reports_timed_out() {
    let (mut stack, outcome, ports) = client_stack(Style::Poll, None);
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let syn = expect_syn(&mut stack, &ports, 0);
    let ours = syn.seq.wrapping_add(1);
    // Established; then "ping" and our FIN are never acknowledged.
    let out = from_peer(
        &mut stack,
        syn.src_port,
        TcpFlags::SYN | TcpFlags::ACK,
        5000,
        ours,
        b"",
        MS,
    );
    assert!(out.iter().any(|(_, p)| p == b"ping"), "{out:?}");
    let mut now = MS;
    while outcome.lock().unwrap().is_none() {
        now += 1000 * MS;
        assert!(now < 3_600_000 * MS, "the retransmissions ran out by now");
        stack.neighbours().learn(PEER_IP, PEER_MAC, now);
        rounds(&mut stack, now);
    }
    // Linux's read gives ETIMEDOUT here, not ECONNRESET.
    let error = outcome_of(&outcome).unwrap().expect_err("timed out");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(stack.tcp().len(), 0);
}
