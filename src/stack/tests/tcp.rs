use super::*;
use crate::port::TxChecksum;
use crate::tcp::table::TableConfig;
use crate::testing::{parse_tcp_frame, tcp_frame, tcp_rule};
use crate::wire::{checksum, TcpFlags, TcpOptions, TcpPacket};

fn tcp_stack() -> (Stack, Arc<WorkerCounters>) {
    let rules = [
        tcp_rule("web", 80, Action::Service(ServiceId::HTTP)),
        tcp_rule("echo", 7, Action::Service(ServiceId::ECHO)),
        tcp_rule("blocked", 23, Action::Drop),
    ];
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 24,
    };
    lone_stack(iface, &rules, DefaultAction::Kernel, false)
}

fn segment(port: u16, flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
    TcpHeader {
        src_port: 40000,
        dst_port: port,
        seq,
        ack,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
    }
}

fn send(stack: &mut Stack, header: TcpHeader, payload: &[u8]) -> Vec<(TcpHeader, Vec<u8>)> {
    let mut egress = CollectEgress::default();
    let frame = tcp_frame(ENDS, &header, payload);
    let d = stack.dispose_of(HeapBuf::from_slice(&frame), 0, &mut egress);
    assert!(matches!(d, Disposition::Consumed), "{d:?}");
    egress
        .frames
        .iter()
        .map(|f| {
            check_reply_ip(f.data(), IpProtocol::Tcp);
            parse_tcp_frame(f.data()).expect("a valid TCP frame")
        })
        .collect()
}

/// A stack whose only rule sends TCP port 8080 to `action`.
fn port_8080(action: Action) -> (Stack, Arc<WorkerCounters>) {
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 24,
    };
    lone_stack(
        iface,
        &[tcp_rule("alt", 8080, action)],
        DefaultAction::Drop,
        false,
    )
}

/// Reload: port 8080 now goes to `action`.
fn reload_8080(stack: &mut Stack, action: Action) {
    let rules = [tcp_rule("alt", 8080, action)];
    stack.set_rules(Arc::new(RuleTable::compile(&rules, DefaultAction::Drop)));
}

/// A segment from the peer's `src_port` to 8080.
fn from(src_port: u16, flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
    TcpHeader {
        src_port,
        ..segment(8080, flags, seq, ack)
    }
}

fn tuple_of(src_port: u16) -> FourTuple {
    FourTuple {
        local_ip: OUR_IP,
        local_port: 8080,
        remote_ip: PEER_IP,
        remote_port: src_port,
    }
}

/// Process one segment at `now`: what became of it, and the segments
/// the stack sent.
fn deliver(
    stack: &mut Stack,
    header: TcpHeader,
    payload: &[u8],
    now: u64,
) -> (Disposition<HeapBuf>, Vec<(TcpHeader, Vec<u8>)>) {
    let mut egress = CollectEgress::default();
    let frame = tcp_frame(ENDS, &header, payload);
    let d = stack.dispose_of(HeapBuf::from_slice(&frame), now, &mut egress);
    let sent = egress
        .frames
        .iter()
        .map(|f| parse_tcp_frame(f.data()).expect("a valid TCP frame"))
        .collect();
    (d, sent)
}

/// The segment goes to the kernel byte for byte, and the stack sends
/// nothing.
fn to_kernel(stack: &mut Stack, header: TcpHeader, payload: &[u8], now: u64) {
    let frame = tcp_frame(ENDS, &header, payload);
    let mut egress = CollectEgress::default();
    match stack.dispose_of(HeapBuf::from_slice(&frame), now, &mut egress) {
        Disposition::Kernel(buf) => assert_eq!(buf.data(), &frame[..], "unchanged"),
        other => panic!(
            "{} {header:?}: expected the kernel, got {other:?}",
            header.flags
        ),
    }
    assert!(egress.frames.is_empty(), "the stack sent nothing");
}

const SECOND: u64 = 1_000_000_000;

#[test]
fn a_kernel_flow_survives_a_reload_that_gives_its_port_to_a_service() {
    use crate::stack::kernel_pins::{FlowState, RESET_TIMEOUT_NS};
    let (mut stack, counters) = port_8080(Action::Kernel);
    // A segment of a flow the kernel had before: the kernel's, not pinned.
    to_kernel(&mut stack, from(40009, TcpFlags::ACK, 1, 1), b"", 0);
    assert!(stack.kernel_flows().is_empty());
    // The kernel's new flow: its SYN pins it.
    to_kernel(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", 0);
    assert_eq!(stack.kernel_flows().len(), 1);
    assert_eq!(counters.kernel_flows.get(), 1, "the gauge follows inserts");
    // The handshake completes (the kernel's SYN-ACK goes out its own way).
    to_kernel(
        &mut stack,
        from(40000, TcpFlags::ACK, 1001, 5001),
        b"",
        SECOND,
    );
    let pinned = stack.kernel_flows().get(&tuple_of(40000)).unwrap();
    assert_eq!(pinned.state, FlowState::Established);
    assert_eq!(
        counters.rule_hits[0].get(),
        2,
        "the SYN and the old flow's ACK"
    );

    // The port goes to http.
    reload_8080(&mut stack, Action::Service(ServiceId::HTTP));
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let flags = TcpFlags::ACK | TcpFlags::PSH;
    to_kernel(
        &mut stack,
        from(40000, flags, 1001, 5001),
        request,
        2 * SECOND,
    );
    to_kernel(
        &mut stack,
        from(40000, TcpFlags::ACK, 1001, 5500),
        b"",
        2 * SECOND,
    );
    assert_eq!(counters.tcp_resets_tx.get(), 0);
    assert_eq!(stack.tcp().len(), 0);
    assert_eq!(counters.rule_hits[0].get(), 2, "no hits for a pinned flow");

    // A new flow follows the new rules: the http listener answers.
    let (d, sent) = deliver(
        &mut stack,
        from(40001, TcpFlags::SYN, 7000, 0),
        b"",
        2 * SECOND,
    );
    assert!(matches!(d, Disposition::Consumed), "{d:?}");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!((sent[0].0.dst_port, sent[0].0.ack), (40001, 7001));
    assert_eq!(stack.tcp().half_open(), 1);
    assert_eq!(
        stack.kernel_flows().len(),
        1,
        "a service's flow is not pinned"
    );

    // Without a pin, the same kind of segment draws the listener's RST:
    // the pin is what keeps the kernel's connection alive.
    let (d, sent) = deliver(
        &mut stack,
        from(40002, TcpFlags::ACK, 1001, 5500),
        b"",
        2 * SECOND,
    );
    assert!(matches!(d, Disposition::Consumed), "{d:?}");
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0.flags, sent[0].0.seq), (TcpFlags::RST, 5500));
    assert_eq!(counters.drops_of(DropReason::NoConnection), 1);

    // The peer resets the kernel's connection: segments still in
    // flight go to the kernel for a few seconds, then the pin is gone.
    let seq = 1001 + request.len() as u32;
    let reset_at = 3 * SECOND;
    to_kernel(
        &mut stack,
        from(40000, TcpFlags::RST, seq, 0),
        b"",
        reset_at,
    );
    let late = reset_at + RESET_TIMEOUT_NS - 1;
    to_kernel(&mut stack, from(40000, TcpFlags::ACK, seq, 5500), b"", late);
    assert_eq!(stack.expire_kernel_flows(late), 0);
    assert_eq!(stack.expire_kernel_flows(reset_at + RESET_TIMEOUT_NS), 1);
    assert!(stack.kernel_flows().is_empty());
    assert_eq!(counters.kernel_flows.get(), 0, "the sweep sets the gauge");
    assert_eq!(counters.kernel_flows_untracked.get(), 0);
    let (_, sent) = deliver(
        &mut stack,
        from(40000, TcpFlags::ACK, seq, 5500),
        b"",
        reset_at + RESET_TIMEOUT_NS,
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.flags, TcpFlags::RST);
}

#[test]
fn the_kernels_own_connection_is_pinned_by_the_peers_syn_ack() {
    // The kernel connected from local port 8080 to the peer's 443:
    // the peer's SYN-ACK is the first segment the stack sees.
    let (mut stack, counters) = port_8080(Action::Kernel);
    let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
    to_kernel(&mut stack, from(443, syn_ack, 9000, 1001), b"", 0);
    assert_eq!(stack.kernel_flows().len(), 1);
    to_kernel(
        &mut stack,
        from(443, TcpFlags::ACK, 9001, 1001),
        b"",
        SECOND,
    );
    reload_8080(&mut stack, Action::Service(ServiceId::HTTP));
    let data = TcpFlags::ACK | TcpFlags::PSH;
    to_kernel(
        &mut stack,
        from(443, data, 9001, 1001),
        b"reply",
        2 * SECOND,
    );
    assert_eq!(counters.tcp_resets_tx.get(), 0);
}

#[test]
fn without_an_exception_port_nothing_is_pinned() {
    let (mut stack, _counters) = port_8080(Action::Kernel);
    stack.set_kernel_port(false);
    to_kernel(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", 0);
    assert!(stack.kernel_flows().is_empty());
    // After a reload the retransmitted SYN reaches the new service.
    reload_8080(&mut stack, Action::Service(ServiceId::HTTP));
    let (d, sent) = deliver(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", SECOND);
    assert!(matches!(d, Disposition::Consumed), "{d:?}");
    assert_eq!(sent[0].0.flags, TcpFlags::SYN | TcpFlags::ACK);
}

#[test]
fn a_new_syn_on_a_closed_pinned_tuple_follows_the_rules() {
    let (mut stack, counters) = port_8080(Action::Kernel);
    to_kernel(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", 0);
    to_kernel(&mut stack, from(40000, TcpFlags::ACK, 1001, 1), b"", 0);
    let fin = TcpFlags::FIN | TcpFlags::ACK;
    to_kernel(&mut stack, from(40000, fin, 1001, 1), b"", SECOND);
    reload_8080(&mut stack, Action::Service(ServiceId::ECHO));
    // The last ACK of the closing connection is still the kernel's...
    to_kernel(&mut stack, from(40000, TcpFlags::ACK, 1002, 2), b"", SECOND);
    // ...but a new incarnation of the 4-tuple is a new flow, the echo
    // service's now, and the stale pin is dropped.
    let (d, sent) = deliver(
        &mut stack,
        from(40000, TcpFlags::SYN, 9000, 0),
        b"",
        2 * SECOND,
    );
    assert!(matches!(d, Disposition::Consumed), "{d:?}");
    assert_eq!(sent[0].0.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert!(stack.kernel_flows().is_empty());
    assert_eq!(counters.kernel_flows.get(), 0);
}

#[test]
fn a_service_connection_survives_a_reload_that_gives_its_port_to_the_kernel() {
    let (mut stack, counters) = port_8080(Action::Service(ServiceId::HTTP));
    let (_, sent) = deliver(&mut stack, from(40000, TcpFlags::SYN, 1000, 0), b"", 0);
    let our = sent[0].0.seq.wrapping_add(1);
    let (_, sent) = deliver(&mut stack, from(40000, TcpFlags::ACK, 1001, our), b"", 0);
    assert!(sent.is_empty());
    assert_eq!(counters.tcp_opened_passive.get(), 1);

    reload_8080(&mut stack, Action::Kernel);
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let flags = TcpFlags::ACK | TcpFlags::PSH;
    let (d, sent) = deliver(&mut stack, from(40000, flags, 1001, our), request, SECOND);
    assert!(matches!(d, Disposition::Consumed), "{d:?}");
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(
        stack.kernel_flows().is_empty(),
        "the stack's flow is not pinned"
    );
    assert_eq!(
        counters.rule_hits[0].get(),
        1,
        "only the SYN was classified"
    );
    // A new flow is the kernel's, and pinned.
    to_kernel(&mut stack, from(40001, TcpFlags::SYN, 5000, 0), b"", SECOND);
    assert!(stack.kernel_flows().get(&tuple_of(40001)).is_some());
    assert_eq!(stack.tcp().len(), 1);
}

#[test]
fn http_over_a_handshake_in_frames() {
    let (mut stack, counters) = tcp_stack();
    let mut syn = segment(80, TcpFlags::SYN, 1000, 0);
    syn.options.mss = Some(1460);
    let out = send(&mut stack, syn, b"");
    assert_eq!(out.len(), 1);
    let (syn_ack, _) = out[0];
    assert_eq!(syn_ack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(syn_ack.ack, 1001);
    assert_eq!((syn_ack.src_port, syn_ack.dst_port), (80, 40000));
    let our = syn_ack.seq.wrapping_add(1);
    let ack = segment(80, TcpFlags::ACK, 1001, our);
    assert!(send(&mut stack, ack, b"").is_empty());
    assert_eq!(counters.tcp_opened_passive.get(), 1);
    // The SYN-ACK was timed: its ACK is one round-trip sample.
    let samples: u64 = counters.tcp_rtt.iter().map(|c| c.get()).sum();
    assert_eq!(samples, 1);
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let out = send(
        &mut stack,
        segment(80, TcpFlags::ACK | TcpFlags::PSH, 1001, our),
        request,
    );
    assert_eq!(out.len(), 1, "the response carries the ACK");
    let (header, body) = &out[0];
    assert_eq!(header.ack, 1001 + request.len() as u32);
    assert!(
        body.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(body)
    );
    assert!(body.ends_with(b"shardnet\n"));
    assert_eq!(counters.tcp_active.get(), 1);
    assert_eq!(stack.tcp().len(), 1);
}

/// Establish a connection from `peer_port` to `port` (the peer's
/// next sequence number is 1001, ours is returned).
fn established(stack: &mut Stack, peer_port: u16, port: u16) -> u32 {
    let mut syn = TcpHeader {
        src_port: peer_port,
        ..segment(port, TcpFlags::SYN, 1000, 0)
    };
    // Window scaling, as Linux: the whole buffer is advertised, so
    // reading opens no window worth an update of its own.
    syn.options.mss = Some(1460);
    syn.options.window_scale = Some(7);
    let out = send(stack, syn, b"");
    assert_eq!(out.len(), 1, "a SYN-ACK");
    let our = out[0].0.seq.wrapping_add(1);
    let ack = TcpHeader {
        src_port: peer_port,
        ..segment(port, TcpFlags::ACK, 1001, our)
    };
    assert!(send(stack, ack, b"").is_empty());
    our
}

/// A stack with discard on port 9 and echo on port 7.
fn discard_and_echo() -> (Stack, Arc<WorkerCounters>) {
    let rules = [
        tcp_rule("discard", 9, Action::Service(ServiceId::DISCARD)),
        tcp_rule("echo", 7, Action::Service(ServiceId::ECHO)),
    ];
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 24,
    };
    lone_stack(iface, &rules, DefaultAction::Drop, false)
}

/// Hand `segments` (from port 40000) to the stack as one RX burst, or
/// one by one without `begin_burst`. Returns the segments sent while
/// the burst was processed, and those sent at its end.
fn burst(
    stack: &mut Stack,
    segments: &[(TcpHeader, Vec<u8>)],
    batched: bool,
) -> (Vec<TcpHeader>, Vec<(TcpHeader, Vec<u8>)>) {
    let mut egress = CollectEgress::default();
    if batched {
        stack.begin_burst();
    }
    for (header, payload) in segments {
        let frame = tcp_frame(ENDS, header, payload);
        stack.dispose_of(HeapBuf::from_slice(&frame), 0, &mut egress);
    }
    let during = egress
        .frames
        .drain(..)
        .map(|f| parse_tcp_frame(f.data()).unwrap().0);
    let during = during.collect();
    if batched {
        stack.end_burst(0, &mut egress);
    }
    let after = egress
        .frames
        .iter()
        .map(|f| parse_tcp_frame(f.data()).unwrap());
    (during, after.collect())
}

/// An app that opens one connection to `PEER_IP:80`, sends nothing
/// on its own, and sends `ping` each time it is offered the
/// connection as writable after the test asked for a wake.
struct Pacer {
    target: SocketAddrV4,
    port: Arc<std::sync::Mutex<Option<u16>>>,
    /// Wakes the test asks for, done in the app's next poll round.
    wake: Arc<std::sync::atomic::AtomicUsize>,
    /// Pings owed: one per wake done.
    owed: usize,
    writable_calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl crate::service::TcpService for Pacer {
    fn on_readable(&mut self, io: &mut dyn crate::service::TcpIo) {
        let (a, b) = io.recv_data();
        let n = a.len() + b.len();
        io.consume(n);
    }
    fn on_writable(&mut self, io: &mut dyn crate::service::TcpIo) {
        use std::sync::atomic::Ordering::Relaxed;
        self.writable_calls.fetch_add(1, Relaxed);
        while self.owed > 0 && io.send_space() >= 4 {
            io.send(b"ping");
            self.owed -= 1;
        }
    }
}

impl App for Pacer {
    fn poll(&mut self, _now_ns: u64, io: &mut dyn AppIo) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut port = self.port.lock().unwrap();
        match *port {
            None => *port = Some(io.connect(self.target).expect("connect")),
            Some(p) => {
                for _ in 0..self.wake.swap(0, Relaxed) {
                    self.owed += 1;
                    io.wake(p, self.target);
                }
                // A port with no connection: nothing happens.
                io.wake(p.wrapping_add(1), self.target);
            }
        }
    }
}

#[test]
fn an_app_woken_in_its_poll_round_sends_then() {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let iface = Interface {
        mac: OUR_MAC,
        ip: OUR_IP,
        prefix_len: 24,
    };
    let (mut stack, _) = lone_stack(iface, &[], DefaultAction::Drop, false);
    let port = Arc::new(std::sync::Mutex::new(None));
    let wake = Arc::new(AtomicUsize::new(0));
    let writable_calls = Arc::new(AtomicUsize::new(0));
    let ports = Arc::new(crate::rss::HomePorts::new(
        crate::rss::RssModel::software(1),
        50000,
        50099,
    ));
    stack.set_app(Box::new(Pacer {
        target: SocketAddrV4::new(PEER_IP, 80),
        port: port.clone(),
        wake: wake.clone(),
        owed: 0,
        writable_calls: writable_calls.clone(),
    }));
    stack.set_local_ports(ports.picker(0));
    stack.neighbours().learn(PEER_IP, PEER_MAC, 0);
    let poll = |stack: &mut Stack| {
        let mut egress = CollectEgress::default();
        stack.poll_app(0, &mut egress);
        egress
            .frames
            .iter()
            .map(|f| parse_tcp_frame(f.data()).expect("a TCP frame"))
            .collect::<Vec<_>>()
    };
    let sent = poll(&mut stack);
    assert_eq!(sent.len(), 1);
    let syn = &sent[0].0;
    assert_eq!(syn.flags, TcpFlags::SYN);
    let ours = port.lock().unwrap().expect("connected");
    assert_eq!(syn.src_port, ours);

    // The peer's SYN-ACK establishes it; the app sends nothing.
    let mut syn_ack = segment(ours, TcpFlags::SYN | TcpFlags::ACK, 7000, syn.seq + 1);
    syn_ack.src_port = 80;
    let replies = send(&mut stack, syn_ack, b"");
    assert!(replies.iter().all(|(_, p)| p.is_empty()), "{replies:?}");
    assert!(poll(&mut stack).is_empty(), "no wake, nothing sent");

    // A wake: the app is offered the connection and its ping leaves
    // at the end of the round, with nothing from the peer.
    let calls = writable_calls.load(Relaxed);
    wake.store(1, Relaxed);
    let sent = poll(&mut stack);
    assert_eq!(writable_calls.load(Relaxed), calls + 1);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, b"ping");
    assert_eq!(sent[0].0.seq, syn.seq + 1);

    // Two wakes in one round: two pings.
    wake.store(2, Relaxed);
    let sent = poll(&mut stack);
    let payload: Vec<u8> = sent.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(payload, b"pingping");

    // Once our side is closed, a wake offers nothing.
    let mut rst = segment(ours, TcpFlags::RST, 7001, 0);
    rst.src_port = 80;
    send(&mut stack, rst, b"");
    let calls = writable_calls.load(Relaxed);
    wake.store(1, Relaxed);
    assert!(poll(&mut stack).is_empty());
    assert_eq!(writable_calls.load(Relaxed), calls);
}

/// Ten full-sized segments in order from port 40000 to `port`.
fn full_segments(port: u16, our: u32) -> Vec<(TcpHeader, Vec<u8>)> {
    (0..10u32)
        .map(|i| {
            let seq = 1001 + i * 1460;
            (segment(port, TcpFlags::ACK, seq, our), vec![i as u8; 1460])
        })
        .collect()
}

#[test]
fn a_burst_of_segments_is_acknowledged_once_at_its_end() {
    let (mut stack, counters) = discard_and_echo();
    let our = established(&mut stack, 40000, 9);
    let (during, after) = burst(&mut stack, &full_segments(9, our), true);
    assert!(
        during.is_empty(),
        "nothing sent before the burst ends: {during:?}"
    );
    assert_eq!(after.len(), 1, "one ACK for the burst: {after:?}");
    assert_eq!(after[0].0.ack, 1001 + 10 * 1460);
    assert!(after[0].1.is_empty());
    assert_eq!(
        stack
            .services()
            .tcp_as::<crate::service::TcpDiscard>(ServiceId::DISCARD)
            .unwrap()
            .bytes_in,
        10 * 1460
    );
    // Without a burst: the first segment is answered at once (a window
    // update: the SYN-ACK's window is never scaled, so the peer knew
    // only 64 KiB of the buffer), then every second full-sized one;
    // the tenth waits for the delayed-ACK timer.
    let (mut stack, _) = discard_and_echo();
    let our = established(&mut stack, 40000, 9);
    let (during, after) = burst(&mut stack, &full_segments(9, our), false);
    assert!(after.is_empty());
    let acks: Vec<u32> = during.iter().map(|h| h.ack).collect();
    let every_second: Vec<u32> = [1, 3, 5, 7, 9].map(|i| 1001 + i * 1460).to_vec();
    assert_eq!(acks, every_second);
    assert_eq!(counters.drops_of(DropReason::NoConnection), 0);
}

#[test]
fn in_a_burst_data_beyond_a_hole_is_acknowledged_at_once() {
    let (mut stack, _) = discard_and_echo();
    let our = established(&mut stack, 40000, 9);
    let mut segments = full_segments(9, our);
    let lost = segments.remove(3);
    let (during, after) = burst(&mut stack, &segments, true);
    // Segments 0-2 wait for the burst's end; 4..9 arrive beyond the
    // hole and each gets its duplicate ACK at once, with SACK.
    assert_eq!(during.len(), 6, "{during:?}");
    assert!(during.iter().all(|h| h.ack == 1001 + 3 * 1460));
    assert!(after.len() <= 1, "{after:?}");
    // The missing segment fills the hole: one ACK for everything.
    let (during, after) = burst(&mut stack, &[lost], true);
    assert!(during.is_empty());
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].0.ack, 1001 + 10 * 1460);
}

#[test]
fn in_a_burst_replies_wait_for_its_end_and_closed_connections_go_at_once() {
    let (mut stack, counters) = discard_and_echo();
    let our_a = established(&mut stack, 40000, 7);
    let our_b = established(&mut stack, 40001, 7);
    let ping = |port: u16, our: u32, what: &[u8]| {
        let header = TcpHeader {
            src_port: port,
            ..segment(7, TcpFlags::ACK | TcpFlags::PSH, 1001, our)
        };
        (header, what.to_vec())
    };
    // A's request, then a reset of A; B's request; then a new
    // connection from A's port (maybe in A's freed slot).
    let rst = TcpHeader {
        src_port: 40000,
        ..segment(7, TcpFlags::RST, 1005, 0)
    };
    let syn = TcpHeader {
        src_port: 40000,
        ..segment(7, TcpFlags::SYN, 5000, 0)
    };
    let batch = [
        ping(40000, our_a, b"ping"),
        (rst, Vec::new()),
        ping(40001, our_b, b"pong"),
        (syn, Vec::new()),
    ];
    let (during, after) = burst(&mut stack, &batch, true);
    assert!(during.is_empty(), "{during:?}");
    let mut sent: Vec<(u16, TcpFlags, Vec<u8>)> = after
        .into_iter()
        .map(|(h, p)| (h.dst_port, h.flags, p))
        .collect();
    sent.sort_by_key(|s| s.0);
    assert_eq!(
        sent,
        vec![
            (40000, TcpFlags::SYN | TcpFlags::ACK, Vec::new()),
            (40001, TcpFlags::ACK | TcpFlags::PSH, b"pong".to_vec()),
        ],
        "A's echo died with A; B's echo and the new SYN-ACK, once each"
    );
    assert_eq!(counters.tcp_resets_rx.get(), 1);
    assert_eq!(stack.tcp().len(), 2);
}

#[test]
fn syn_ack_timestamps_follow_the_boot_clock_across_restarts() {
    // The SYN-ACK's TSval, from a stack whose timestamp clock started
    // at `base_ms`, `at_ms` after the stack's own clock started.
    let syn_ack_tsval = |base_ms: u32, at_ms: u64, secret: u8| {
        let counters = Arc::new(WorkerCounters::default());
        let rules = [tcp_rule("web", 80, Action::Service(ServiceId::HTTP))];
        let iface = Interface {
            mac: OUR_MAC,
            ip: OUR_IP,
            prefix_len: 24,
        };
        let mut stack = Stack::new(
            iface,
            Arc::new(RuleTable::compile(&rules, DefaultAction::Drop)),
            crate::neighbour::NeighbourMailboxes::new(1).cache_for(0),
            counters,
            false,
            TcpSetup {
                secret_key: [secret; 32],
                timestamp_clock: ([5; 16], base_ms),
                ..TcpSetup::default()
            },
        );
        let mut syn = segment(80, TcpFlags::SYN, 1000, 0);
        syn.options.timestamps = Some((77, 0));
        let (_, out) = deliver(&mut stack, syn, b"", at_ms * 1_000_000);
        let (tsval, tsecr) = out[0].0.options.timestamps.expect("timestamps");
        assert_eq!(tsecr, 77);
        tsval
    };
    let before = syn_ack_tsval(10_000, 60_000, 1);
    // Restarted 2 s after that SYN-ACK, with new process secrets.
    let after = syn_ack_tsval(72_000, 0, 2);
    assert_eq!(after.wrapping_sub(before), 2_000);
}

/// Issue 16: junk aimed at a half-open connection is answered with
/// a RST (a bad ACK) or at most one SYN-ACK per 500 ms, every such
/// segment is counted, and the half-open expires silently, counted.
#[test]
fn junk_to_a_half_open_is_limited_and_its_expiry_counted() {
    const MS: u64 = 1_000_000;
    let (mut stack, counters) = tcp_stack();
    let (_, out) = deliver(&mut stack, segment(7, TcpFlags::SYN, 1000, 0), b"", 0);
    assert_eq!(out[0].0.flags, TcpFlags::SYN | TcpFlags::ACK);
    let iss = out[0].0.seq;
    // An ACK of something never sent: RST <SEQ=SEG.ACK>.
    let bad = segment(7, TcpFlags::ACK, 1001, iss.wrapping_add(5000));
    let (_, out) = deliver(&mut stack, bad, b"", MS);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].0.flags, out[0].0.seq),
        (TcpFlags::RST, iss.wrapping_add(5000))
    );
    // 100 segments far outside the window in 400 ms: one SYN-ACK.
    let mut syn_acks = 0;
    for i in 0..100 {
        let junk = segment(7, TcpFlags::ACK, 1001 + 1_000_000, iss.wrapping_add(1));
        let (_, out) = deliver(&mut stack, junk, b"", 2 * MS + i * 4 * MS);
        syn_acks += out.len();
    }
    assert_eq!(syn_acks, 1);
    assert_eq!(counters.tcp_out_of_window_acks_sent.get(), 1);
    assert_eq!(counters.tcp_out_of_window_acks_limited.get(), 99);
    assert_eq!(stack.tcp().half_open(), 1, "junk closes nothing");
    // The SYN-ACK retransmissions run out: dropped without a RST.
    let resets_before = counters.tcp_resets_tx.get();
    let mut egress = CollectEgress::default();
    let mut now = 0;
    while stack.tcp().half_open() > 0 && now < 600 * SECOND {
        now += 100 * MS;
        stack.poll(now, &mut egress);
    }
    assert_eq!(stack.tcp().half_open(), 0);
    for frame in &egress.frames {
        let (header, _) = parse_tcp_frame(frame.data()).unwrap();
        assert_eq!(header.flags, TcpFlags::SYN | TcpFlags::ACK);
    }
    assert_eq!(counters.tcp_resets_tx.get(), resets_before);
    assert_eq!(counters.tcp_half_open_expired.get(), 1);
    assert_eq!(counters.tcp_timeouts.get(), 0);
}

/// RFC 5961 challenge ACKs are counted, sent and limited.
#[test]
fn challenge_acks_are_counted() {
    let (mut stack, counters) = tcp_stack();
    let (_, out) = deliver(&mut stack, segment(7, TcpFlags::SYN, 1000, 0), b"", 0);
    let iss = out[0].0.seq;
    let ack = segment(7, TcpFlags::ACK, 1001, iss.wrapping_add(1));
    deliver(&mut stack, ack, b"", 0);
    for i in 0..10 {
        // In the window but not at RCV.NXT: a challenge ACK at most
        // once per 500 ms on this connection.
        let rst = segment(7, TcpFlags::RST, 1101, 0);
        deliver(&mut stack, rst, b"", 1_000_000 + i * 1_000_000);
    }
    assert_eq!(counters.tcp_challenge_acks_sent.get(), 1);
    assert_eq!(counters.tcp_challenge_acks_limited.get(), 9);
    assert_eq!(stack.tcp().len(), 1, "still open");
}

#[test]
fn segments_without_a_connection_get_a_reset_and_rules_still_apply() {
    let (mut stack, counters) = tcp_stack();
    let out = send(&mut stack, segment(7, TcpFlags::ACK, 5, 77), b"x");
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0.flags, out[0].0.seq), (TcpFlags::RST, 77));
    assert_eq!(counters.drops_of(DropReason::NoConnection), 1);
    assert_eq!(counters.tcp_resets_tx.get(), 1);
    // A drop rule drops; an unclaimed port goes to the kernel.
    let frame = tcp_frame(ENDS, &segment(23, TcpFlags::SYN, 1, 0), b"");
    let mut egress = CollectEgress::default();
    assert!(matches!(
        stack.dispose_of(HeapBuf::from_slice(&frame), 0, &mut egress),
        Disposition::Consumed
    ));
    assert_eq!(counters.drops_of(DropReason::Rule), 1);
    let frame = tcp_frame(ENDS, &segment(22, TcpFlags::SYN, 1, 0), b"");
    assert!(matches!(
        stack.dispose_of(HeapBuf::from_slice(&frame), 0, &mut egress),
        Disposition::Kernel(_)
    ));
    assert!(egress.frames.is_empty());
    assert_eq!(stack.tcp().len(), 0);
}

#[test]
fn a_tcp_data_offset_below_five_is_malformed_whatever_the_port() {
    let (mut stack, counters) = tcp_stack();
    // A service's port, a port the rules give the kernel, a dropped one.
    for port in [7, 22, 23] {
        let mut frame = tcp_frame(ENDS, &segment(port, TcpFlags::SYN, 1, 0), b"");
        let offset_at = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + 12;
        for words in [0u8, 4] {
            frame[offset_at] = words << 4;
            dropped_as(&mut stack, &counters, &frame, DropReason::Malformed);
        }
    }
    assert_eq!(counters.drops_of(DropReason::BadHeaderLength), 0);
    assert_eq!(stack.tcp().len(), 0);
}

#[test]
fn syns_from_martians_get_no_syn_ack_and_no_reset() {
    let (mut stack, counters) = tcp_stack();
    for src in MARTIANS {
        // A service's port, the kernel's, and a segment that would
        // get a RST.
        for (port, flags) in [(7, TcpFlags::SYN), (22, TcpFlags::SYN), (7, TcpFlags::ACK)] {
            let frame = tcp_frame(from_ip(src), &segment(port, flags, 1, 1), b"");
            dropped_as(&mut stack, &counters, &frame, DropReason::MartianSource);
        }
    }
    assert_eq!(stack.tcp().len(), 0);
    assert_eq!(counters.tcp_resets_tx.get(), 0);
}

#[test]
fn a_bad_tcp_checksum_is_dropped_and_counted() {
    let (mut stack, counters) = tcp_stack();
    let mut frame = tcp_frame(ENDS, &segment(80, TcpFlags::SYN, 1, 0), b"");
    let last = frame.len() - 1;
    frame[last - 4] ^= 0x40; // inside the TCP header (window)
    let mut egress = CollectEgress::default();
    stack.dispose_of(HeapBuf::from_slice(&frame), 0, &mut egress);
    assert_eq!(counters.drops_of(DropReason::BadL4Checksum), 1);
    assert!(egress.frames.is_empty());
}

#[test]
fn echo_connection_times_out_and_resets_when_the_peer_vanishes() {
    let (mut stack, counters) = tcp_stack();
    let out = send(&mut stack, segment(7, TcpFlags::SYN, 1000, 0), b"");
    let our = out[0].0.seq.wrapping_add(1);
    send(&mut stack, segment(7, TcpFlags::ACK, 1001, our), b"");
    let out = send(&mut stack, segment(7, TcpFlags::ACK, 1001, our), b"ping");
    assert_eq!(out[0].1, b"ping");
    // The peer never acknowledges: retransmissions with backoff, then
    // a reset, all driven by Stack::poll.
    let mut egress = CollectEgress::default();
    let mut now = 0;
    while !stack.tcp().is_empty() && now < 3_600_000_000_000 {
        now += 50_000_000;
        stack.poll(now, &mut egress);
    }
    assert_eq!(stack.tcp().len(), 0, "gone within the hour");
    assert!(counters.tcp_retransmits.get() >= 10);
    assert_eq!(counters.tcp_timeouts.get(), 1);
    let last = parse_tcp_frame(egress.frames.last().unwrap().data()).unwrap();
    assert!(last.0.flags.contains(TcpFlags::RST));
    assert_eq!(counters.tcp_active.get(), 0);
}
#[test]
fn syn_flood_falls_back_to_cookies_and_established_connections_go_on() {
    let counters = Arc::new(WorkerCounters::default());
    let rules = [tcp_rule("echo", 7, Action::Service(ServiceId::ECHO))];
    let mut stack = Stack::new(
        Interface {
            mac: OUR_MAC,
            ip: OUR_IP,
            prefix_len: 24,
        },
        Arc::new(RuleTable::compile(&rules, DefaultAction::Drop)),
        crate::neighbour::NeighbourMailboxes::new(1).cache_for(0),
        counters.clone(),
        false,
        TcpSetup {
            table: TableConfig {
                syn_backlog: 4,
                ..TableConfig::default()
            },
            secret_key: [3; 32],
            ..TcpSetup::default()
        },
    );
    // An established connection first.
    let out = send(&mut stack, segment(7, TcpFlags::SYN, 1000, 0), b"");
    let our = out[0].0.seq.wrapping_add(1);
    send(&mut stack, segment(7, TcpFlags::ACK, 1001, our), b"");
    // The flood: 200 SYNs from other ports, never completed.
    let mut cookie_replies = Vec::new();
    for port in 0..200u16 {
        let mut syn = segment(7, TcpFlags::SYN, 5000, 0);
        syn.src_port = 10_000 + port;
        syn.options.mss = Some(1460);
        syn.options.sack_permitted = true;
        let out = send(&mut stack, syn, b"");
        assert_eq!(out.len(), 1, "every SYN is answered");
        cookie_replies.push((syn.src_port, out[0].0));
    }
    assert_eq!(stack.tcp().half_open(), 4, "the backlog is bounded");
    assert_eq!(stack.tcp().len(), 5);
    assert_eq!(counters.tcp_syn_cookies_sent.get(), 196);
    // The established connection is still served.
    let out = send(
        &mut stack,
        segment(7, TcpFlags::ACK | TcpFlags::PSH, 1001, our),
        b"still here",
    );
    assert_eq!(out[0].1, b"still here");
    // A cookie's ACK completes a connection with the SYN's options.
    let (port, syn_ack) = cookie_replies[150];
    assert_eq!(syn_ack.options.mss, Some(1460));
    assert!(syn_ack.options.sack_permitted);
    let mut ack = segment(7, TcpFlags::ACK, 5001, syn_ack.seq.wrapping_add(1));
    ack.src_port = port;
    let out = send(&mut stack, ack, b"hi");
    assert_eq!(counters.tcp_syn_cookies_accepted.get(), 1);
    assert_eq!(
        out.last().unwrap().1,
        b"hi",
        "data on the cookie's ACK is served"
    );
    assert_eq!(stack.tcp().len(), 6);
    // A forged cookie gets a RST, no connection.
    let mut forged = segment(7, TcpFlags::ACK, 5001, syn_ack.seq.wrapping_add(2));
    forged.src_port = cookie_replies[151].0;
    let out = send(&mut stack, forged, b"");
    assert!(out[0].0.flags.contains(TcpFlags::RST));
    assert_eq!(stack.tcp().len(), 6);
}

/// What a NIC does with an offload request: the IPv4 header checksum (when
/// asked) and the complement of the sum over the L4 bytes, whose checksum
/// field holds the pseudo-header sum.
fn nic_fills_checksums(frame: &mut [u8], ipv4: bool, checksum_at: usize) {
    let ip_at = ETHERNET_HEADER_LEN;
    let l4_at = ip_at + IPV4_HEADER_LEN;
    let total = usize::from(Ipv4Packet::new_unchecked(&frame[ip_at..]).total_len());
    if ipv4 {
        Ipv4Packet::new_unchecked(&mut frame[ip_at..]).fill_checksum();
    }
    let sum = !checksum::data(&frame[l4_at..ip_at + total]);
    frame[l4_at + checksum_at..l4_at + checksum_at + 2].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn with_checksum_offload_segments_carry_the_pseudo_header_sum() {
    for mode in [TxChecksum::Full, TxChecksum::L4] {
        let (mut stack, _) = tcp_stack();
        let mut egress = CollectEgress {
            tx_checksum: mode,
            ..CollectEgress::default()
        };
        let mut syn = segment(80, TcpFlags::SYN, 1000, 0);
        syn.options.mss = Some(1460);
        let frame = tcp_frame(ENDS, &syn, b"");
        stack.dispose_of(HeapBuf::from_slice(&frame), 0, &mut egress);
        assert_eq!(egress.frames.len(), 1, "{mode:?}: a SYN-ACK");
        let mut f = egress.frames[0].data().to_vec();
        let ip = Ipv4Packet::new_unchecked(&f[ETHERNET_HEADER_LEN..]);
        let tcp_len = usize::from(ip.total_len()) - IPV4_HEADER_LEN;
        assert_eq!(
            ip.checksum() == 0,
            mode == TxChecksum::Full,
            "{mode:?}: the IPv4 checksum is left zero only for the NIC"
        );
        assert_eq!(ip.verify_checksum(), mode == TxChecksum::L4);
        let tcp = TcpPacket::new_unchecked(ip.payload());
        assert_eq!(
            tcp.checksum(),
            checksum::pseudo_header(OUR_IP, PEER_IP, IpProtocol::Tcp, tcp_len as u32),
            "{mode:?}: the field holds the pseudo-header sum (rte_ipv4_phdr_cksum)"
        );
        assert!(parse_tcp_frame(&f).is_none(), "not valid before the NIC");
        nic_fills_checksums(&mut f, mode == TxChecksum::Full, 16);
        check_reply_ip(&f, IpProtocol::Tcp);
        let (header, _) = parse_tcp_frame(&f).expect("valid once the NIC did its part");
        assert_eq!(header.flags, TcpFlags::SYN | TcpFlags::ACK);
    }
}

#[test]
fn a_large_tables_burst_is_looked_up_ahead_and_then_served_unchanged() {
    use crate::tcp::table::PREFETCH_MIN_CONNECTIONS;
    let (mut stack, counters) = discard_and_echo();
    let first_port = 10_000u16;
    let ours: Vec<u32> = (0..PREFETCH_MIN_CONNECTIONS as u16)
        .map(|i| established(&mut stack, first_port + i, 7))
        .collect();
    assert!(stack.tcp().wants_prefetch(), "the table is large enough");
    // A burst of data for connections across the table, with frames that
    // are not TCP, not whole, or for no connection among them.
    let picks = [0usize, 1, 4096, 8000, PREFETCH_MIN_CONNECTIONS - 1];
    let mut frames: Vec<HeapBuf> = picks
        .iter()
        .map(|&i| {
            let header = TcpHeader {
                src_port: first_port + i as u16,
                ..segment(7, TcpFlags::ACK | TcpFlags::PSH, 1001, ours[i])
            };
            HeapBuf::from_slice(&tcp_frame(ENDS, &header, b"ping"))
        })
        .collect();
    let stranger = TcpHeader {
        src_port: 9,
        ..segment(7, TcpFlags::ACK, 1, 1)
    };
    let stranger = tcp_frame(ENDS, &stranger, b"");
    frames.push(HeapBuf::from_slice(&stranger[..ETHERNET_HEADER_LEN + 22]));
    frames.push(HeapBuf::from_slice(&udp(40000, 7, b"udp")));
    frames.push(HeapBuf::from_slice(&[0u8; 10]));
    let rx_before = counters.rx_packets.get();
    let drops_before = counters.total_drops();
    stack.prefetch_burst(&frames);
    assert_eq!(
        counters.rx_packets.get(),
        rx_before,
        "looking ahead counts nothing"
    );
    assert_eq!(counters.total_drops(), drops_before);

    let mut egress = CollectEgress::default();
    stack.begin_burst();
    for frame in frames {
        stack.process(frame, 0, &mut egress);
    }
    stack.end_burst(0, &mut egress);
    let echoes: Vec<(u16, Vec<u8>)> = egress
        .frames
        .iter()
        .filter_map(|f| parse_tcp_frame(f.data()))
        .filter(|(h, payload)| h.src_port == 7 && !payload.is_empty())
        .map(|(h, payload)| (h.dst_port, payload))
        .collect();
    let expected: Vec<(u16, Vec<u8>)> = picks
        .iter()
        .map(|&i| (first_port + i as u16, b"ping".to_vec()))
        .collect();
    assert_eq!(echoes, expected, "each connection echoed, in order");
}

/// A stack with echo on port 7 whose connections send segments of up to
/// 64 KiB (as the runtime sets them up).
fn echo_with_gso() -> (Stack, Arc<WorkerCounters>) {
    let tcp = TcpSetup {
        table: TableConfig {
            tcp: crate::tcp::connection::TcpConfig {
                gso_max: crate::tcp::connection::GSO_MAX_BYTES,
                ..crate::tcp::connection::TcpConfig::default()
            },
            ..TableConfig::default()
        },
        secret_key: [7; 32],
        ..TcpSetup::default()
    };
    let rules = [tcp_rule("echo", 7, Action::Service(ServiceId::ECHO))];
    crate::testing::lone_stack_with_tcp(OUR_IFACE, &rules, DefaultAction::Drop, false, tcp)
}

/// What a NIC's TSO makes of `frame` (IPv4 with a 20-byte header, TCP
/// whose checksum field holds the pseudo-header sum without the length):
/// frames of `size` payload bytes with the headers copied, the sequence
/// number advanced, FIN and PSH kept for the last only, IPv4 length and
/// both checksums filled in. Written from DPDK's and the datasheets'
/// description, independently of the stack's own cutting.
fn nic_segments(frame: &[u8], size: usize) -> Vec<Vec<u8>> {
    let ip_at = ETHERNET_HEADER_LEN;
    let tcp_at = ip_at + IPV4_HEADER_LEN;
    let tcp_header_len = usize::from(frame[tcp_at + 12] >> 4) * 4;
    let data_at = tcp_at + tcp_header_len;
    let payload = &frame[data_at..];
    let seq = u32::from_be_bytes(frame[tcp_at + 4..tcp_at + 8].try_into().unwrap());
    let chunks: Vec<&[u8]> = payload.chunks(size).collect();
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut f = frame[..data_at].to_vec();
        f.extend_from_slice(chunk);
        let total = (IPV4_HEADER_LEN + tcp_header_len + chunk.len()) as u16;
        f[ip_at + 2..ip_at + 4].copy_from_slice(&total.to_be_bytes());
        let s = seq.wrapping_add((i * size) as u32);
        f[tcp_at + 4..tcp_at + 8].copy_from_slice(&s.to_be_bytes());
        if i + 1 < chunks.len() {
            f[tcp_at + 13] &= !(TcpFlags::FIN.0 | TcpFlags::PSH.0);
        }
        let tcp_len = u32::from(total) - IPV4_HEADER_LEN as u32;
        let sum = checksum::pseudo_header(OUR_IP, PEER_IP, IpProtocol::Tcp, tcp_len);
        f[tcp_at + 16..tcp_at + 18].copy_from_slice(&sum.to_be_bytes());
        nic_fills_checksums(&mut f, true, 16);
        out.push(f);
    }
    out
}

#[test]
fn a_large_segment_goes_as_one_tso_frame_or_as_the_same_frames_cut_by_the_stack() {
    let request: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut runs = Vec::new();
    for tso in [false, true] {
        let (mut stack, counters) = echo_with_gso();
        let our = established(&mut stack, 40000, 7);
        let mut egress = CollectEgress {
            tx_checksum: if tso {
                TxChecksum::Full
            } else {
                TxChecksum::Software
            },
            large: tso,
            ..CollectEgress::default()
        };
        let header = segment(7, TcpFlags::ACK | TcpFlags::PSH, 1001, our);
        let frame = tcp_frame(ENDS, &header, &request);
        let before = counters.tcp_tx_segments.get();
        stack.dispose_of(HeapBuf::from_slice(&frame), 0, &mut egress);
        stack.end_burst(0, &mut egress);
        let frames: Vec<Vec<u8>> = egress.frames.iter().map(|f| f.data().to_vec()).collect();
        let wire = if tso {
            // The initial window, 10 MSS of 1460 (no timestamps on this
            // connection), in one frame the NIC cuts.
            assert_eq!(frames.len(), 1, "one TSO frame");
            let f = &frames[0];
            let ip = Ipv4Packet::new_unchecked(&f[ETHERNET_HEADER_LEN..]);
            assert_eq!(usize::from(ip.total_len()), 40 + 10 * 1460);
            assert_eq!(ip.checksum(), 0, "left to the NIC");
            let tcp = TcpPacket::new_unchecked(ip.payload());
            assert_eq!(
                tcp.checksum(),
                checksum::pseudo_header(OUR_IP, PEER_IP, IpProtocol::Tcp, 0),
                "the pseudo-header sum without the length, as TSO wants it"
            );
            nic_segments(f, 1460)
        } else {
            frames
        };
        assert_eq!(wire.len(), 10, "the initial window, 10 MSS");
        assert_eq!(
            counters.tcp_tx_segments.get() - before,
            10,
            "segments counted as they go on the wire"
        );
        assert_eq!(counters.tcp_tso_segments.get(), u64::from(tso));
        let mut echoed = Vec::new();
        for (i, f) in wire.iter().enumerate() {
            check_reply_ip(f, IpProtocol::Tcp);
            let (h, payload) = parse_tcp_frame(f).expect("a valid frame");
            assert_eq!(h.seq, our.wrapping_add(echoed.len() as u32));
            assert_eq!(payload.len(), 1460, "frame {i}");
            assert!(!h.flags.contains(TcpFlags::PSH), "more data follows");
            echoed.extend_from_slice(&payload);
        }
        assert_eq!(echoed[..], request[..echoed.len()]);
        runs.push(wire);
    }
    assert_eq!(
        runs[0], runs[1],
        "the stack's cutting and the NIC's make the same frames"
    );
}

#[test]
fn frames_a_segment_cut_by_the_stack_cannot_get_are_each_a_counted_drop() {
    let (mut stack, counters) = echo_with_gso();
    let our = established(&mut stack, 40000, 7);
    let mut egress = CollectEgress {
        frames_limit: Some(3),
        ..CollectEgress::default()
    };
    let request = vec![9u8; 20_000];
    let header = segment(7, TcpFlags::ACK | TcpFlags::PSH, 1001, our);
    let frame = tcp_frame(ENDS, &header, &request);
    stack.dispose_of(HeapBuf::from_slice(&frame), 0, &mut egress);
    stack.end_burst(0, &mut egress);
    // The initial window, 10 MSS, in one segment: 3 frames got a buffer,
    // the other 7 are drops (the connection resends them on its timer).
    assert_eq!(egress.frames.len(), 3);
    assert_eq!(counters.drops_of(DropReason::NoBuffer), 7);
    for (i, f) in egress.frames.iter().enumerate() {
        let (h, payload) = parse_tcp_frame(f.data()).expect("a valid frame");
        assert_eq!(h.seq, our.wrapping_add(1460 * i as u32));
        assert_eq!(payload.len(), 1460);
    }
}
