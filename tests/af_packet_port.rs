//! The AF_PACKET port against the real kernel, over a veth pair.
//!
//! Privileged: run as root (`sudo -E cargo test --no-default-features --test
//! af_packet_port`). Every test makes its own network namespace
//! (`snt-<pid>-<n>`) holding a veth pair with no addresses, opens ports in it
//! from a thread that entered it, and deletes the namespace when done, also on
//! panic. Nothing touches the host's interfaces. A test that cannot set up
//! fails with the reason; none is skipped.

#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shardnet::port::af_packet::{
    disable_offloads, AfPacketError, AfPacketOptions, AfPacketPort, AfPacketQueue,
};
use shardnet::port::heap::HeapBuf;
use shardnet::port::{Burst, PacketBuf, Queue, RxChecksum, BURST};
use shardnet::rss::RssModel;

/// Run `ip` with `args`; panic with its error output if it fails.
fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `ip {}`: {e}; these tests need iproute2",
            args.join(" ")
        )
    });
    assert!(
        output.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A network namespace with a veth pair `a` <-> `b`, both up, no addresses, no
/// IPv6 link-local addresses (so the kernel stays quiet on them). Deleted on drop.
struct Veth {
    netns: String,
    a: String,
    b: String,
}

impl Veth {
    fn new() -> Veth {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the AF_PACKET tests create network namespaces and veth pairs: run them as root \
             (sudo -E cargo test --no-default-features --test af_packet_port)"
        );
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let pid = std::process::id();
        let netns = format!("snt-{pid}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &netns]);
        // From here on, the guard deletes the namespace whatever happens.
        let veth = Veth {
            netns,
            a: format!("snt-a-{pid}"),
            b: format!("snt-b-{pid}"),
        };
        veth.ip(&[
            "link", "add", &veth.a, "type", "veth", "peer", "name", &veth.b,
        ]);
        for dev in [&veth.a, &veth.b] {
            veth.ip(&["link", "set", "dev", dev, "addrgenmode", "none"]);
            veth.ip(&["link", "set", "dev", dev, "up"]);
        }
        veth
    }

    /// `ip -n <netns> args...`
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.netns];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Run `f` on a thread inside the namespace (sockets it opens belong there).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.netns);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
                    // SAFETY: setns on a valid namespace fd; it changes only this
                    // thread's network namespace, and the thread ends with `f`.
                    let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(
                        ret,
                        0,
                        "entering {path}: {}",
                        std::io::Error::last_os_error()
                    );
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `ip link show` of one end, one line.
    fn link(&self, dev: &str) -> String {
        self.ip(&["-o", "link", "show", "dev", dev])
    }

    fn open(&self, dev: &str, queues: usize, opts: AfPacketOptions) -> AfPacketPort {
        self.run(|| AfPacketPort::open(dev, queues, opts))
            .unwrap_or_else(|e| panic!("opening the port on {dev}: {e}"))
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        match Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "cleanup: `ip netns del {}` failed: {}",
                self.netns,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("cleanup: cannot run `ip netns del {}`: {e}", self.netns),
        }
    }
}

/// The MAC address `ip` reports for a link line.
fn mac_of(link_line: &str) -> [u8; 6] {
    let text = link_line
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no link/ether in {link_line:?}"));
    let mut mac = [0u8; 6];
    for (byte, hex) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(hex, 16).unwrap();
    }
    mac
}

/// The internet checksum of `chunks` taken as one byte string.
fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = chunks.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One UDP flow between the two ends, as seen from `a`.
#[derive(Clone, Copy, Debug)]
struct Flow {
    id: u16,
    a_ip: [u8; 4],
    b_ip: [u8; 4],
    a_port: u16,
    b_port: u16,
}

impl Flow {
    fn new(id: u16) -> Flow {
        Flow {
            id,
            a_ip: [198, 18, 0, 1 + (id % 7) as u8],
            b_ip: [198, 18, 1, 1 + (id % 200) as u8],
            a_port: 10_000 + id,
            b_port: 20_000 + 3 * id,
        }
    }
}

/// Marks our payloads, so stray frames are told apart.
const MAGIC: &[u8; 4] = b"SNTF";

/// An Ethernet/IPv4/UDP frame with correct checksums, carrying the flow, the
/// direction (0: a to b) and a sequence number, padded to `len` bytes.
fn udp_frame(
    macs: ([u8; 6], [u8; 6]),
    flow: &Flow,
    direction: u8,
    seq: u32,
    len: usize,
) -> Vec<u8> {
    let (src_mac, dst_mac) = macs;
    let ((src_ip, src_port), (dst_ip, dst_port)) = if direction == 0 {
        ((flow.a_ip, flow.a_port), (flow.b_ip, flow.b_port))
    } else {
        ((flow.b_ip, flow.b_port), (flow.a_ip, flow.a_port))
    };
    let mut payload = MAGIC.to_vec();
    payload.extend_from_slice(&flow.id.to_be_bytes());
    payload.push(direction);
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.resize(len - 42, 0);
    for (i, b) in payload.iter_mut().enumerate().skip(11) {
        *b = (i as u32 ^ seq) as u8;
    }
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&src_port.to_be_bytes());
    udp.extend_from_slice(&dst_port.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&payload);
    let pseudo = [&src_ip[..], &dst_ip[..], &[0, 17], &udp_len.to_be_bytes()].concat();
    let checksum = match internet_checksum(&[&pseudo, &udp]) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    let mut ipv4 = vec![0x45, 0];
    ipv4.extend_from_slice(&(20 + udp_len).to_be_bytes());
    ipv4.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ipv4.extend_from_slice(&src_ip);
    ipv4.extend_from_slice(&dst_ip);
    let header_checksum = internet_checksum(&[&ipv4]);
    ipv4[10..12].copy_from_slice(&header_checksum.to_be_bytes());
    let mut frame = dst_mac.to_vec();
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&ipv4);
    frame.extend_from_slice(&udp);
    assert_eq!(frame.len(), len);
    frame
}

/// (flow, direction, seq) of one of our frames; `None` for anything else.
fn tag_of(frame: &[u8]) -> Option<(u16, u8, u32)> {
    if frame.len() < 53
        || frame[12..14] != [0x08, 0x00]
        || frame[23] != 17
        || &frame[42..46] != MAGIC
    {
        return None;
    }
    Some((
        u16::from_be_bytes([frame[46], frame[47]]),
        frame[48],
        u32::from_be_bytes(frame[49..53].try_into().unwrap()),
    ))
}

/// A frame received on queue `queue`.
struct Arrival {
    queue: usize,
    frame: Vec<u8>,
    checksum: RxChecksum,
}

/// Send `outgoing` (queue index, frame) on the `senders`, retrying what a full
/// ring refuses, while polling the `receivers`; stop once `expect` of our frames
/// arrived (plus a short grace time to catch extra copies) or after 10 s.
fn exchange(
    senders: &mut [AfPacketQueue],
    outgoing: Vec<(usize, Vec<u8>)>,
    receivers: &mut [AfPacketQueue],
    expect: usize,
) -> Vec<Arrival> {
    let mut pending: Vec<VecDeque<Vec<u8>>> = vec![VecDeque::new(); senders.len()];
    for (queue, frame) in outgoing {
        pending[queue].push_back(frame);
    }
    let mut arrivals = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut done_at: Option<Instant> = None;
    for _ in 0..10_000_000 {
        let now = Instant::now();
        if now > deadline || done_at.is_some_and(|t| now > t + Duration::from_millis(100)) {
            break;
        }
        let mut progress = false;
        for (queue, frames) in senders.iter_mut().zip(&mut pending) {
            let mut burst: Burst<HeapBuf> = Burst::new();
            while burst.len() < BURST {
                let Some(frame) = frames.pop_front() else {
                    break;
                };
                burst.push(HeapBuf::from_slice(&frame));
            }
            progress |= queue.tx_burst(&mut burst) > 0;
            for refused in burst.into_iter().rev() {
                frames.push_front(refused.data().to_vec());
            }
        }
        for (index, queue) in receivers.iter_mut().enumerate() {
            let mut burst = Burst::new();
            if queue.rx_burst(&mut burst) > 0 {
                progress = true;
            }
            for buf in burst {
                if tag_of(buf.data()).is_some() {
                    arrivals.push(Arrival {
                        queue: index,
                        frame: buf.data().to_vec(),
                        checksum: buf.rx_l4_checksum(),
                    });
                }
            }
        }
        if done_at.is_none() && arrivals.len() >= expect && pending.iter().all(VecDeque::is_empty) {
            done_at = Some(now);
        }
        if !progress {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    assert!(
        pending.iter().all(VecDeque::is_empty),
        "frames still unsent after 10 s"
    );
    arrivals
}

/// Poll `queue` for up to 5 s until `want` frames that `keep` accepts arrived.
fn receive(queue: &mut AfPacketQueue, want: usize, keep: impl Fn(&[u8]) -> bool) -> Vec<HeapBuf> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut kept = Vec::new();
    while kept.len() < want && Instant::now() < deadline {
        let mut out = Burst::new();
        if queue.rx_burst(&mut out) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        kept.extend(out.into_iter().filter(|f| keep(f.data())));
    }
    assert_eq!(kept.len(), want, "waited 5 s for {want} frames");
    kept
}

/// Check that `arrivals` are exactly `sent`, byte for byte, each flow on one
/// queue and in order; return each flow's queue.
fn check_delivery(
    sent: &BTreeMap<(u16, u8, u32), Vec<u8>>,
    arrivals: &[Arrival],
    what: &str,
) -> BTreeMap<u16, usize> {
    let mut seen = BTreeSet::new();
    let mut flow_queue = BTreeMap::new();
    let mut last_seq: BTreeMap<u16, u32> = BTreeMap::new();
    for arrival in arrivals {
        let tag = tag_of(&arrival.frame).unwrap();
        let want = sent
            .get(&tag)
            .unwrap_or_else(|| panic!("{what}: received a frame never sent: {tag:?}"));
        assert_eq!(
            &arrival.frame, want,
            "{what}: frame {tag:?} changed on the way"
        );
        assert!(seen.insert(tag), "{what}: frame {tag:?} arrived twice");
        assert_eq!(
            arrival.checksum,
            RxChecksum::Unknown,
            "{what}: nothing checked a packet socket's frame"
        );
        let queue = *flow_queue.entry(tag.0).or_insert(arrival.queue);
        assert_eq!(
            queue, arrival.queue,
            "{what}: flow {} arrived on queues {queue} and {}",
            tag.0, arrival.queue
        );
        if let Some(previous) = last_seq.insert(tag.0, tag.2) {
            assert!(
                previous < tag.2,
                "{what}: flow {} reordered ({previous} then {})",
                tag.0,
                tag.2
            );
        }
    }
    assert_eq!(
        seen.len(),
        sent.len(),
        "{what}: {} of {} frames arrived",
        seen.len(),
        sent.len()
    );
    flow_queue
}

#[test]
fn two_queues_carry_every_frame_both_ways_and_keep_each_flow_on_one_queue() {
    let veth = Veth::new();
    let mut a = veth.open(&veth.a, 2, AfPacketOptions::default());
    let mut b = veth.open(&veth.b, 2, AfPacketOptions::default());
    assert!(a.fanout_follows_model() && b.fanout_follows_model());

    // What the port reports matches what `ip` says.
    assert_eq!(a.mac(), mac_of(&veth.link(&veth.a)));
    assert_eq!(b.mac(), mac_of(&veth.link(&veth.b)));
    assert_eq!((a.mtu(), b.mtu()), (1500, 1500));
    let index_of = |line: String| {
        line.split(':')
            .next()
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
    };
    assert_eq!(a.ifindex(), index_of(veth.link(&veth.a)));
    assert_eq!(b.ifindex(), index_of(veth.link(&veth.b)));
    assert_eq!(a.interface(), veth.a);
    // Opening turned the offloads off: a second pass finds nothing to do.
    for dev in [&veth.a, &veth.b] {
        let again = veth
            .run(|| disable_offloads(dev))
            .expect("reading offloads");
        assert!(
            again.turned_off.is_empty() && again.stuck_on.is_empty(),
            "{dev}: {again:?}"
        );
    }

    let mut a_queues = a.queues();
    let mut b_queues = b.queues();
    assert_eq!((a_queues.len(), b_queues.len()), (2, 2));
    assert!(a.queues().is_empty(), "queues are taken once");
    // Queues are Send: use them from another thread than the one that opened them.
    let worker = std::thread::spawn(move || {
        let flows: Vec<Flow> = (0..64).map(Flow::new).collect();
        let mut results = Vec::new();
        for direction in 0..2usize {
            let (senders, receivers, macs) = if direction == 0 {
                (&mut a_queues, &mut b_queues, (a.mac(), b.mac()))
            } else {
                (&mut b_queues, &mut a_queues, (b.mac(), a.mac()))
            };
            let mut sent = BTreeMap::new();
            let mut outgoing = Vec::new();
            for flow in &flows {
                for seq in 0..20u32 {
                    let len = 60 + ((usize::from(flow.id) * 97 + seq as usize * 131) % 1455);
                    let frame = udp_frame(macs, flow, direction as u8, seq, len);
                    sent.insert((flow.id, direction as u8, seq), frame.clone());
                    // One TX queue per flow keeps its frames in order.
                    outgoing.push((usize::from(flow.id) % 2, frame));
                }
            }
            let arrivals = exchange(senders, outgoing, receivers, sent.len());
            let flow_queue = check_delivery(&sent, &arrivals, &format!("direction {direction}"));
            // The kernel's fanout put each flow on the RSS model's queue.
            let model = RssModel::software(2);
            for arrival in &arrivals {
                assert_eq!(
                    Some(arrival.queue),
                    model.worker_of_frame(&arrival.frame),
                    "direction {direction}: {:?}",
                    tag_of(&arrival.frame)
                );
            }
            let total_bytes: u64 = sent.values().map(|f| f.len() as u64).sum();
            results.push((flow_queue, sent.len() as u64, total_bytes));
        }
        (a, b, results)
    });
    let (a, b, results) = worker
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));

    let (b_side, a_side) = (&results[0].0, &results[1].0);
    let used: BTreeSet<usize> = b_side.values().copied().collect();
    assert_eq!(
        used.len(),
        2,
        "64 flows all hashed to one queue: {b_side:?}"
    );
    assert_eq!(
        a_side, b_side,
        "a flow's two directions landed on different queues"
    );

    let (frames, bytes) = (results[0].1, results[0].2);
    for (port, name) in [(&a, "a"), (&b, "b")] {
        let stats = port.stats();
        assert_eq!(stats.tx_packets, frames, "{name}: {stats:?}");
        assert_eq!(stats.tx_bytes, bytes, "{name}: {stats:?}");
        assert!(stats.rx_packets >= frames, "{name}: {stats:?}");
        assert!(stats.rx_bytes >= bytes, "{name}: {stats:?}");
        assert_eq!(
            (stats.rx_missed, stats.rx_errors, stats.tx_errors),
            (0, 0, 0),
            "{name}: {stats:?}"
        );
        assert!(
            stats
                .extended
                .iter()
                .any(|(k, v)| k == "q1_tx_packets" && *v > 0),
            "{name}: {stats:?}"
        );
        assert_eq!(
            stats
                .extended
                .iter()
                .find(|(k, _)| k == "q0_tx_ring_full")
                .map(|(_, v)| *v),
            Some(port.queue_counters()[0].tx_ring_full)
        );
        // The kernel's counters are read once and accumulated, not lost.
        assert_eq!(port.stats().rx_packets, stats.rx_packets);
    }
}

/// Mark `frame` (from [`udp_frame`]) a fragment: more-fragments and/or
/// `offset` (in 8-byte units), header checksum fixed.
fn make_fragment(frame: &mut [u8], more: bool, offset: u16) {
    let flags = if more { 0x2000 } else { 0 } | offset;
    frame[20..22].copy_from_slice(&flags.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let checksum = internet_checksum(&[&frame[14..34]]);
    frame[24..26].copy_from_slice(&checksum.to_be_bytes());
}

#[test]
fn the_fanout_puts_every_ipv4_packet_on_the_rss_models_queue() {
    for queues in [3, 4] {
        let veth = Veth::new();
        let mut a = veth.open(&veth.a, 1, AfPacketOptions::default());
        let mut b = veth.open(&veth.b, queues, AfPacketOptions::default());
        assert!(!a.fanout_follows_model(), "one queue: no fanout group");
        assert!(b.fanout_follows_model(), "the kernel refused the program");
        let macs = (a.mac(), b.mac());
        let mut senders = a.queues();
        let mut receivers = b.queues();
        let mut sent = BTreeMap::new();
        let mut outgoing = Vec::new();
        for id in 0..600u16 {
            let flow = Flow::new(id);
            let mut frame = udp_frame(macs, &flow, 0, 0, 60 + usize::from(id % 64));
            // One flow in 3 sends a fragment (first, middle, last in turn):
            // hashed on the addresses alone, as the model says.
            if id % 3 == 0 {
                let (more, offset) =
                    [(true, 0), (true, 185), (false, 370)][usize::from(id / 3 % 3)];
                make_fragment(&mut frame, more, offset);
            }
            sent.insert((id, 0, 0), frame.clone());
            outgoing.push((0, frame));
        }
        let arrivals = exchange(&mut senders, outgoing, &mut receivers, sent.len());
        check_delivery(&sent, &arrivals, &format!("{queues} queues"));
        let model = RssModel::software(queues as u16);
        let mut used = BTreeSet::new();
        for arrival in &arrivals {
            used.insert(arrival.queue);
            assert_eq!(
                Some(arrival.queue),
                model.worker_of_frame(&arrival.frame),
                "{queues} queues: {:?}",
                tag_of(&arrival.frame)
            );
        }
        assert_eq!(used.len(), queues, "{queues} queues: {used:?}");
    }
}

#[test]
fn oversize_and_runt_frames_are_dropped_and_counted_vlan_frames_get_four_more_bytes() {
    let veth = Veth::new();
    let mut a = veth.open(&veth.a, 1, AfPacketOptions::default());
    let mut b = veth.open(&veth.b, 1, AfPacketOptions::default());
    let mut a_queues = a.queues();
    let mut b_queues = b.queues();
    assert_eq!(a_queues[0].max_tx_frame(), 1514);
    let macs = (a.mac(), b.mac());
    let flow = Flow::new(1);
    let untagged_max = udp_frame(macs, &flow, 0, 0, 1514);
    let untagged_over = udp_frame(macs, &flow, 0, 1, 1515);
    let vlan =
        |frame: Vec<u8>, tpid: [u8; 2]| [&frame[..12], &tpid, &[0x00, 0x2a], &frame[12..]].concat();
    let tagged_max = vlan(udp_frame(macs, &flow, 0, 2, 1514), [0x81, 0x00]);
    let tagged_over = vlan(udp_frame(macs, &flow, 0, 3, 1515), [0x81, 0x00]);
    let small = udp_frame(macs, &flow, 0, 4, 60);
    let runt = vec![0xff; 13];
    let mut burst: Burst<HeapBuf> = [
        &untagged_max,
        &untagged_over,
        &tagged_max,
        &runt,
        &tagged_over,
        &small,
    ]
    .into_iter()
    .map(|f| HeapBuf::from_slice(f))
    .collect();
    assert_eq!(a_queues[0].tx_burst(&mut burst), 3);
    assert!(
        burst.is_empty(),
        "dropped frames leave the burst, nothing was refused"
    );
    let counters = a_queues[0].counters();
    assert_eq!(
        (counters.tx_packets, counters.tx_oversize, counters.tx_runt),
        (3, 2, 1)
    );
    assert_eq!(counters.tx_bytes as usize, 1514 + 1518 + 60);

    // What was sent arrives intact; the VLAN tag the receiving kernel strips is
    // put back.
    let expected = [&untagged_max, &tagged_max, &small];
    let frames = receive(&mut b_queues[0], 3, |f| {
        expected.iter().any(|e| e.as_slice() == f)
    });
    let frames: Vec<&[u8]> = frames.iter().map(|f| f.data()).collect();
    assert_eq!(
        frames,
        expected.map(|f| f.as_slice()),
        "the frames arrive in order, unchanged"
    );
    assert_eq!(a.stats().tx_errors, 3);
}

#[test]
fn a_full_tx_ring_refuses_frames_and_sends_them_once_the_link_is_up() {
    let veth = Veth::new();
    let opts = AfPacketOptions {
        tx_ring_frames: 1, // rounded up to one block: 32 frames of 2 KiB
        ..AfPacketOptions::default()
    };
    let mut a = veth.open(&veth.a, 1, opts);
    let mut b = veth.open(&veth.b, 1, AfPacketOptions::default());
    let (mut a_queues, mut b_queues) = (a.queues(), b.queues());
    let macs = (a.mac(), b.mac());
    let flow = Flow::new(3);
    let mut sent = BTreeMap::new();
    let mut burst_of = |first: u32| -> Burst<HeapBuf> {
        (first..first + 32)
            .map(|seq| {
                let frame = udp_frame(macs, &flow, 0, seq, 100);
                sent.insert((flow.id, 0, seq), frame.clone());
                HeapBuf::from_slice(&frame)
            })
            .collect()
    };
    let (mut first, mut second) = (burst_of(0), burst_of(32));

    // With the link down the kernel sends nothing: the ring fills.
    veth.ip(&["link", "set", "dev", &veth.a, "down"]);
    assert_eq!(a_queues[0].tx_burst(&mut first), 32);
    assert_eq!(a_queues[0].tx_burst(&mut second), 0);
    assert_eq!(second.len(), 32, "refused frames stay with the caller");
    let counters = a_queues[0].counters();
    assert_eq!(counters.tx_ring_full, 32);
    assert!(counters.tx_kick_errors >= 1, "{counters:?}");

    // Up again: the next call kicks the ring even with nothing new to send.
    veth.ip(&["link", "set", "dev", &veth.a, "up"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut first_lap = Vec::new();
    while first_lap.len() < 32 && Instant::now() < deadline {
        assert_eq!(a_queues[0].tx_burst(&mut Burst::new()), 0);
        let mut out = Burst::new();
        b_queues[0].rx_burst(&mut out);
        first_lap.extend(out.into_iter().filter(|f| tag_of(f.data()).is_some()));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        first_lap.len(),
        32,
        "the frames waiting on the ring went out"
    );
    let outgoing = second.iter().map(|f| (0, f.data().to_vec())).collect();
    let mut arrivals = exchange(&mut a_queues, outgoing, &mut b_queues, 32);
    arrivals.splice(
        0..0,
        first_lap.into_iter().map(|f| Arrival {
            queue: 0,
            frame: f.data().to_vec(),
            checksum: f.rx_l4_checksum(),
        }),
    );
    check_delivery(&sent, &arrivals, "after the ring filled");
}

#[test]
fn promiscuous_mode_lasts_as_long_as_the_port() {
    let veth = Veth::new();
    // A packet socket's promiscuous membership shows in the device's
    // promiscuity count, not in the flags `ip link` prints.
    let promiscuity = || {
        let details = veth.ip(&["-d", "-o", "link", "show", "dev", &veth.a]);
        let count = details
            .split_whitespace()
            .skip_while(|w| *w != "promiscuity")
            .nth(1)
            .unwrap_or_else(|| panic!("no promiscuity in {details:?}"));
        count.parse::<u32>().unwrap()
    };
    assert_eq!(promiscuity(), 0);
    let plain = veth.open(&veth.a, 2, AfPacketOptions::default());
    assert_eq!(promiscuity(), 0, "promiscuous mode is off by default");
    drop(plain);
    let mut port = veth.open(
        &veth.a,
        2,
        AfPacketOptions {
            promiscuous: true,
            ..AfPacketOptions::default()
        },
    );
    assert_eq!(promiscuity(), 1);
    let queues = port.queues();
    drop(port);
    assert_eq!(promiscuity(), 1, "the queues still hold the sockets open");
    drop(queues);
    assert_eq!(promiscuity(), 0);
}

#[test]
fn frames_a_local_sender_left_for_checksum_offload_arrive_partial() {
    let veth = Veth::new();
    let mut a = veth.open(&veth.a, 1, AfPacketOptions::default());
    let mut a_queues = a.queues();
    // The kernel side at b sends UDP to a's MAC, with b's TX checksum offload on.
    veth.ip(&["addr", "add", "198.18.0.2/24", "dev", &veth.b]);
    let a_mac = a
        .mac()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    veth.ip(&[
        "neigh",
        "replace",
        "198.18.0.1",
        "lladdr",
        &a_mac,
        "dev",
        &veth.b,
        "nud",
        "permanent",
    ]);
    let send = |payload: &'static [u8]| {
        veth.run(|| {
            let socket =
                std::net::UdpSocket::bind("198.18.0.2:0").expect("binding in the namespace");
            socket.send_to(payload, "198.18.0.1:9999").expect("sending");
        })
    };
    let to_port_9999 = |f: &[u8]| {
        f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[36..38] == [0x27, 0x0f]
    };
    send(b"offloaded");
    let partial = receive(&mut a_queues[0], 1, to_port_9999).remove(0);
    assert_eq!(partial.rx_l4_checksum(), RxChecksum::Partial);
    assert_eq!(&partial.data()[42..], b"offloaded");

    let changes = veth
        .run(|| disable_offloads(&veth.b))
        .expect("turning b's offloads off");
    assert!(
        changes.turned_off.contains(&"tx-checksumming"),
        "{changes:?}"
    );
    send(b"software");
    let full = receive(&mut a_queues[0], 1, to_port_9999).remove(0);
    assert_eq!(full.rx_l4_checksum(), RxChecksum::Unknown);
    assert_eq!(&full.data()[42..], b"software");
}

#[test]
fn setup_errors_name_the_interface_and_the_cause() {
    let veth = Veth::new();
    let missing = format!("snt-no-{}", std::process::id());
    let error = veth
        .run(|| AfPacketPort::open(&missing, 1, AfPacketOptions::default()))
        .unwrap_err();
    assert!(matches!(error, AfPacketError::NotFound { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("interface {missing} not found")),
        "{error}"
    );

    let error =
        AfPacketPort::open("a-name-far-too-long", 1, AfPacketOptions::default()).unwrap_err();
    assert!(
        matches!(error, AfPacketError::InvalidName { .. }),
        "{error}"
    );
    let error = veth
        .run(|| AfPacketPort::open(&veth.a, 0, AfPacketOptions::default()))
        .unwrap_err();
    assert!(
        error.to_string().contains(&veth.a) && error.to_string().contains("0 queues"),
        "{error}"
    );

    // Without privileges (this thread only: a raw setresuid changes one thread).
    let unprivileged = |opts: AfPacketOptions| {
        veth.run(|| {
            // SAFETY: the raw syscall changes only this short-lived thread's ids;
            // glibc's setresuid would change every thread's.
            let ret = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
            assert_eq!(
                ret,
                0,
                "dropping privileges: {}",
                std::io::Error::last_os_error()
            );
            AfPacketPort::open(&veth.a, 1, opts)
                .unwrap_err()
                .to_string()
        })
    };
    let message = unprivileged(AfPacketOptions {
        disable_offloads: false,
        ..AfPacketOptions::default()
    });
    assert_eq!(
        message,
        format!(
            "opening AF_PACKET socket on interface {} needs root (CAP_NET_RAW): Operation not permitted (os error 1)",
            veth.a
        )
    );
    // A fresh veth has GRO or TX checksumming on: changing them needs CAP_NET_ADMIN.
    let message = unprivileged(AfPacketOptions::default());
    assert!(
        message.contains("needs root (CAP_NET_ADMIN)") && message.contains(&veth.a),
        "{message}"
    );
}
