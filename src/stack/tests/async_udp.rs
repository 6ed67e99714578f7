//! Async UDP sockets on the stack: an echo task, truncation, a full receive
//! queue and an unbound port (both counted), a send that waits for ARP, a
//! full send queue that parks the sender rather than dropping, and loop
//! protection.

use std::future::Future;
use std::io;
use std::time::Duration;

use super::*;
use crate::rt::udp::{MAX_PAYLOAD, RECV_QUEUE, RESOLVE_WAIT_NS, SEND_BYTES, SEND_QUEUE};
use crate::rt::{sleep, UdpSocket};
use crate::service::{Registry, WorkerInfo};
use crate::testing::stack_with_registry;

const PORT: u16 = 5353;
/// A port the rules give the async service too, where no socket is bound.
const UNBOUND: u16 = 5354;
const PEER_PORT: u16 = 40000;
const MS: u64 = 1_000_000;

/// A stack whose async service "app" gets UDP ports `PORT` and `UNBOUND`
/// and runs `main` on the worker.
fn async_udp_stack<F, Fut>(main: F) -> (Stack, Arc<WorkerCounters>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let mut registry = Registry::new();
    let id = registry
        .add_async("app", move |_: &WorkerInfo<'_>| main())
        .expect("a new name");
    let rules = [
        udp_rule("app", PORT, Action::Service(id)),
        udp_rule("app2", UNBOUND, Action::Service(id)),
    ];
    stack_with_registry(
        OUR_IFACE,
        &rules,
        DefaultAction::Drop,
        TcpSetup::default(),
        &registry,
        1,
    )
}

/// Bind `PORT` (and check a second bind is refused), wait until `start_ns`
/// on the worker's clock, then echo each datagram, read into a buffer of
/// `buf_len` bytes, back to its sender.
async fn echo(buf_len: usize, start_ns: u64) {
    let socket = UdpSocket::bind(PORT).expect("the port is free");
    assert_eq!(
        UdpSocket::bind(PORT)
            .expect_err("bound once per worker")
            .kind(),
        io::ErrorKind::AddrInUse
    );
    assert_eq!(socket.local_addr(), SocketAddrV4::new(OUR_IP, PORT));
    if start_ns > 0 {
        sleep(Duration::from_nanos(start_ns)).await;
    }
    let mut buf = vec![0; buf_len];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await.expect("a datagram");
        let sent = socket.send_to(&buf[..n], from).await.expect("queued");
        assert_eq!(sent, n);
    }
}

/// The datagram `payload` from the peer's `src_port` to our `dst_port`.
fn datagram(src_port: u16, dst_port: u16, payload: &[u8]) -> HeapBuf {
    HeapBuf::from_slice(&udp_frame(ENDS, src_port, dst_port, payload))
}

/// The UDP datagrams among `frames`: (destination, source port, payload).
fn udp_sent(frames: &[HeapBuf]) -> Vec<(SocketAddrV4, u16, Vec<u8>)> {
    frames
        .iter()
        .filter_map(|f| {
            let eth = EthernetFrame::new_checked(f.data()).ok()?;
            if eth.ethertype() != EtherType::Ipv4 {
                return None;
            }
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("an IPv4 packet");
            assert_eq!(ip.src_addr(), OUR_IP);
            assert_eq!(eth.src_addr(), OUR_MAC);
            assert_eq!(eth.dst_addr(), PEER_MAC, "to the next hop's MAC");
            let udp = UdpPacket::new_checked(ip.payload()).expect("a UDP datagram");
            assert!(udp.verify_checksum(ip.src_addr(), ip.dst_addr()));
            Some((
                SocketAddrV4::new(ip.dst_addr(), udp.dst_port()),
                udp.src_port(),
                udp.payload().to_vec(),
            ))
        })
        .collect()
}

/// The ARP requests among `frames`, by target.
fn arp_requests(frames: &[HeapBuf]) -> Vec<Ipv4Addr> {
    frames
        .iter()
        .filter_map(|f| {
            let eth = EthernetFrame::new_checked(f.data()).ok()?;
            if eth.ethertype() != EtherType::Arp {
                return None;
            }
            let repr = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()?;
            (repr.operation == ArpOperation::Request).then_some(repr.target_protocol_addr)
        })
        .collect()
}

fn peer() -> SocketAddrV4 {
    SocketAddrV4::new(PEER_IP, PEER_PORT)
}

#[test]
fn an_async_udp_task_echoes_datagrams() {
    let (mut stack, counters) = async_udp_stack(|| echo(2048, 0));
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    for payload in [&b"hello"[..], b"", &[7u8; 1472]] {
        stack.process(datagram(PEER_PORT, PORT, payload), MS, &mut egress);
    }
    // Delivered inside RX processing: nothing answered before the round.
    assert!(egress.frames.is_empty());
    stack.run_tasks(MS, &mut egress);
    let sent = udp_sent(&egress.frames);
    assert_eq!(
        sent,
        vec![
            (peer(), PORT, b"hello".to_vec()),
            (peer(), PORT, Vec::new()),
            (peer(), PORT, vec![7u8; 1472]),
        ]
    );
    assert_eq!(counters.udp_rx.get(), 3);
    assert_eq!(counters.udp_tx.get(), 3);
    assert!(counters.drops.iter().all(|d| d.get() == 0));
}

#[test]
fn a_short_buffer_truncates_and_the_rest_of_the_datagram_is_discarded() {
    let (mut stack, counters) = async_udp_stack(|| echo(4, 0));
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    stack.process(datagram(PEER_PORT, PORT, b"hello world"), MS, &mut egress);
    stack.process(datagram(PEER_PORT, PORT, b"ab"), MS, &mut egress);
    stack.run_tasks(MS, &mut egress);
    let payloads: Vec<Vec<u8>> = udp_sent(&egress.frames)
        .into_iter()
        .map(|(_, _, p)| p)
        .collect();
    assert_eq!(payloads, [b"hell".to_vec(), b"ab".to_vec()]);
    assert!(counters.drops.iter().all(|d| d.get() == 0));
}

#[test]
fn a_full_receive_queue_and_an_unbound_port_drop_and_count() {
    // The task binds at once but reads only from 1 s on.
    let (mut stack, counters) = async_udp_stack(|| echo(2048, 1_000 * MS));
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    let sent = RECV_QUEUE + 44;
    for i in 0..sent {
        let payload = (i as u32).to_be_bytes();
        stack.process(datagram(PEER_PORT, PORT, &payload), MS, &mut egress);
        stack.run_tasks(MS, &mut egress);
    }
    for _ in 0..3 {
        stack.process(datagram(PEER_PORT, UNBOUND, b"x"), MS, &mut egress);
    }
    stack.run_tasks(MS, &mut egress);
    assert!(udp_sent(&egress.frames).is_empty());
    assert_eq!(
        counters.drops_of(DropReason::UdpSocketOverflow),
        (sent - RECV_QUEUE) as u64
    );
    assert_eq!(counters.drops_of(DropReason::UdpNoSocket), 3);
    // From 1 s the queue is read, oldest first: every datagram either
    // answered or counted.
    for round in 0..4 {
        stack.run_tasks(1_000 * MS + round * MS, &mut egress);
    }
    let answered = udp_sent(&egress.frames);
    assert_eq!(answered.len(), RECV_QUEUE);
    for (i, (_, _, payload)) in answered.iter().enumerate() {
        assert_eq!(payload[..], (i as u32).to_be_bytes());
    }
    assert_eq!(
        answered.len() as u64 + counters.drops_of(DropReason::UdpSocketOverflow),
        sent as u64
    );
}

#[test]
fn a_send_to_an_unknown_neighbour_waits_for_arp() {
    let (mut stack, counters) = async_udp_stack(|| echo(2048, 0));
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    stack.process(datagram(PEER_PORT, PORT, b"first"), MS, &mut egress);
    stack.run_tasks(MS, &mut egress);
    // An ARP request for the peer; the answer waits.
    assert_eq!(arp_requests(&egress.frames), [PEER_IP]);
    assert!(udp_sent(&egress.frames).is_empty());
    // More rounds before the retry time ask no more.
    stack.process(datagram(PEER_PORT, PORT, b"second"), 2 * MS, &mut egress);
    for t in 2..10 {
        stack.run_tasks(t * MS, &mut egress);
    }
    assert_eq!(arp_requests(&egress.frames), [PEER_IP]);
    assert!(udp_sent(&egress.frames).is_empty());
    // The peer answers: both leave, in order.
    let reply = arp(ArpOperation::Reply, OUR_IP);
    stack.process(HeapBuf::from_slice(&reply), 10 * MS, &mut egress);
    stack.run_tasks(10 * MS, &mut egress);
    let payloads: Vec<Vec<u8>> = udp_sent(&egress.frames)
        .into_iter()
        .map(|(_, _, p)| p)
        .collect();
    assert_eq!(payloads, [b"first".to_vec(), b"second".to_vec()]);
    assert!(counters.drops.iter().all(|d| d.get() == 0));
}

#[test]
fn a_neighbour_that_never_answers_drops_and_counts_after_the_wait() {
    let silent = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 77), 9999);
    let (mut stack, counters) = async_udp_stack(move || async move {
        let socket = UdpSocket::bind(PORT).expect("the port is free");
        socket.send_to(b"lost", silent).await.expect("queued");
    });
    let mut egress = CollectEgress::default();
    let mut t = 0;
    while t <= RESOLVE_WAIT_NS + 100 * MS {
        stack.run_tasks(t, &mut egress);
        t += 100 * MS;
    }
    // About one request a second, then the datagram is given up on.
    let asked = arp_requests(&egress.frames);
    assert!((3..=4).contains(&asked.len()), "{asked:?}");
    assert!(asked.iter().all(|ip| ip == silent.ip()));
    assert!(udp_sent(&egress.frames).is_empty());
    assert_eq!(counters.drops_of(DropReason::UdpUnresolved), 1);
    assert!(!stack.net().unwrap().reactor().borrow().udp().has_sends());
}

#[test]
fn a_full_send_queue_parks_the_sender_and_loses_nothing() {
    let total = SEND_QUEUE * 2 + 10;
    let (mut stack, counters) = async_udp_stack(move || async move {
        let socket = UdpSocket::bind(PORT).expect("the port is free");
        for i in 0..total {
            let payload = (i as u32).to_be_bytes();
            socket.send_to(&payload, peer()).await.expect("queued");
        }
        let too_long = [0u8; 1473];
        let error = socket.send_to(&too_long, peer()).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    });
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    assert_eq!(udp_sent(&egress.frames).len(), SEND_QUEUE);
    for round in 1..5 {
        stack.run_tasks(round * MS, &mut egress);
    }
    let sent = udp_sent(&egress.frames);
    assert_eq!(sent.len(), total);
    for (i, (to, port, payload)) in sent.iter().enumerate() {
        assert_eq!((*to, *port), (peer(), PORT));
        assert_eq!(payload[..], (i as u32).to_be_bytes());
    }
    assert!(counters.drops.iter().all(|d| d.get() == 0));
}

#[test]
fn the_send_queue_byte_cap_parks_the_sender_too() {
    let total = 400;
    let (mut stack, counters) = async_udp_stack(move || async move {
        let socket = UdpSocket::bind(PORT).expect("the port is free");
        for i in 0..total {
            let mut payload = [0u8; MAX_PAYLOAD];
            payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
            socket.send_to(&payload, peer()).await.expect("queued");
        }
    });
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    assert_eq!(udp_sent(&egress.frames).len(), SEND_BYTES / MAX_PAYLOAD);
    for round in 1..5 {
        stack.run_tasks(round * MS, &mut egress);
    }
    let sent = udp_sent(&egress.frames);
    assert_eq!(sent.len(), total);
    for (i, (_, _, payload)) in sent.iter().enumerate() {
        assert_eq!(payload.len(), MAX_PAYLOAD);
        assert_eq!(payload[..4], (i as u32).to_be_bytes());
    }
    assert!(counters.drops.iter().all(|d| d.get() == 0));
}

#[test]
fn a_connected_socket_talks_to_its_peer_only() {
    let other = SocketAddrV4::new(PEER_IP, PEER_PORT + 1);
    let (mut stack, counters) = async_udp_stack(|| async {
        let socket = UdpSocket::bind(PORT).expect("the port is free");
        let error = socket.send(b"nowhere").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotConnected);
        assert_eq!(
            socket.peer_addr().unwrap_err().kind(),
            io::ErrorKind::NotConnected
        );
        socket.connect(peer()).expect("a peer");
        assert_eq!(socket.peer_addr().unwrap(), peer());
        let mut buf = [0u8; 64];
        loop {
            let n = socket.recv(&mut buf).await.expect("a datagram");
            socket.send(&buf[..n]).await.expect("queued");
        }
    });
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    stack.process(datagram(other.port(), PORT, b"stranger"), MS, &mut egress);
    stack.process(datagram(PEER_PORT, PORT, b"friend"), MS, &mut egress);
    stack.run_tasks(MS, &mut egress);
    assert_eq!(
        udp_sent(&egress.frames),
        [(peer(), PORT, b"friend".to_vec())]
    );
    assert_eq!(counters.drops_of(DropReason::UdpNoSocket), 1);
}

#[test]
fn loop_protection_applies_to_async_sockets() {
    let (mut stack, counters) = async_udp_stack(|| echo(2048, 0));
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    // From a well-known port, from port 0, and from a port the rules give
    // the async service (another shardnet with the same rules).
    stack.process(datagram(53, PORT, b"a"), MS, &mut egress);
    stack.process(datagram(0, PORT, b"b"), MS, &mut egress);
    stack.process(datagram(UNBOUND, PORT, b"c"), MS, &mut egress);
    stack.run_tasks(MS, &mut egress);
    assert!(udp_sent(&egress.frames).is_empty());
    assert_eq!(counters.drops_of(DropReason::LoopProtection), 2);
    assert_eq!(counters.drops_of(DropReason::SourcePortZero), 1);
    assert_eq!(counters.udp_rx.get(), 0);
}

/// A client socket ([`UdpSocket::bind_ephemeral`]) gets a port of the
/// worker's range whose replies steer home, receives its peer's replies
/// though no rule routes the port, and frees the port when dropped;
/// [`UdpSocket::bind_local_port`] takes a given port of the range only.
#[test]
fn a_client_socket_gets_a_home_port_and_its_replies_whatever_the_rules() {
    use crate::rss::{HomePorts, RssModel};
    use std::sync::Mutex;
    const FIRST: u16 = 61000;
    const LAST: u16 = 61999;
    let picked = Arc::new(Mutex::new(None));
    let seen = picked.clone();
    let (mut stack, counters) = async_udp_stack(move || {
        let seen = seen.clone();
        async move {
            let socket = UdpSocket::bind_ephemeral(peer()).expect("a free port");
            let port = socket.local_addr().port();
            *seen.lock().unwrap() = Some(port);
            assert_eq!(socket.peer_addr().unwrap(), peer());
            let error = UdpSocket::bind_local_port(port).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
            let error = UdpSocket::bind_local_port(FIRST - 1).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::AddrNotAvailable);
            let error = UdpSocket::bind_ephemeral(SocketAddrV4::new(PEER_IP, 0)).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            socket.send(b"question").await.expect("queued");
            let mut buf = [0u8; 64];
            let n = socket.recv(&mut buf).await.expect("the reply");
            assert_eq!(&buf[..n], b"answer");
            drop(socket);
            let again = UdpSocket::bind_local_port(port).expect("freed on drop");
            drop(again);
            std::future::pending::<()>().await;
        }
    });
    let ports = Arc::new(HomePorts::new(RssModel::software(2), FIRST, LAST));
    stack.set_local_ports(ports.picker(0));
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    let port = picked.lock().unwrap().expect("bound in the first round");
    assert!((FIRST..=LAST).contains(&port), "{port}");
    assert_eq!(
        udp_sent(&egress.frames),
        [(peer(), port, b"question".to_vec())]
    );
    let reply = datagram(PEER_PORT, port, b"answer");
    assert_eq!(ports.model().worker_of_frame(reply.data()), Some(0));
    // The rules drop everything (`DefaultAction::Drop`), but the client
    // port is looked at first.
    stack.process(reply, MS, &mut egress);
    stack.run_tasks(MS, &mut egress);
    assert!(counters.drops.iter().all(|d| d.get() == 0));
    // Freed: the rules again, which drop it.
    stack.process(datagram(PEER_PORT, port, b"late"), 2 * MS, &mut egress);
    assert_eq!(counters.drops_of(DropReason::Rule), 1);
}
