//! Deterministic simulation: two [`Connection`]s talk through a simulated
//! link with loss, duplication, reordering, delay and bit corruption, in
//! simulated time, moving bytes both ways and closing. Every segment is
//! encoded to wire bytes with its checksum, and the receiver verifies and
//! parses it, so corruption is caught the way a real stack catches it.
//!
//! A run is a pure function of its seed: a failure message names the seed,
//! and `SHARDNET_SIM_SEED=<seed> cargo test tcp::sim` replays it.

use std::collections::BinaryHeap;
use std::net::Ipv4Addr;

use super::buffer::BufferPool;
use super::connection::{Connection, Events, State, TcpConfig};
use super::ratelimit::AckLimiter;
use super::{FourTuple, Seq};
use crate::wire::{TcpFlags, TcpHeader, TcpPacket};

const A_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const MS: u64 = 1_000_000;

fn trace() -> bool {
    std::env::var_os("SHARDNET_SIM_TRACE").is_some()
}

/// Link faults, each a probability per segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    /// One-way delay, and up to this much extra (reordering).
    pub delay_ns: u64,
    pub jitter_ns: u64,
    /// A's segments carrying any of the last `tail_drop` bytes of its
    /// stream are lost the first time they are sent: a lost tail.
    pub tail_drop: usize,
}

/// xorshift64*: small, seedable, good enough for fault injection.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 >= 1.0 - p
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

struct Endpoint {
    conn: Connection,
    pool: BufferPool,
    limits: AckLimiter,
    /// The stream this side sends.
    outgoing: Vec<u8>,
    /// How much of it was handed to the connection.
    queued: usize,
    /// What arrived from the other side.
    received: Vec<u8>,
    closed_sending: bool,
    ended: Option<Events>,
    local_ip: Ipv4Addr,
    remote_ip: Ipv4Addr,
}

#[derive(PartialEq, Eq)]
struct InFlight {
    at: u64,
    order: u64,
    to_b: bool,
    bytes: Vec<u8>,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Earliest first from a max-heap.
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A segment for a connection that no longer exists gets a RST, as the
/// table answers one (RFC 9293 3.10.7.1).
fn answer_closed(
    link: &mut BinaryHeap<InFlight>,
    order: &mut u64,
    now: u64,
    header: &TcpHeader,
    payload: &[u8],
    to_b: bool,
    faults: &Faults,
) {
    let Some(reset) = Connection::reset_for(header, payload.len()) else {
        return;
    };
    let (src, dst) = if to_b { (A_IP, B_IP) } else { (B_IP, A_IP) };
    *order += 1;
    link.push(InFlight {
        at: now + faults.delay_ns,
        order: *order,
        to_b,
        bytes: encode(&reset, (&[], &[]), src, dst),
    });
}

/// What a run produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub sim_time_ns: u64,
    pub segments: u64,
    pub dropped: u64,
    /// Retransmission timeouts of both ends.
    pub timeouts: u64,
    /// Tail loss probes of both ends.
    pub probes: u64,
    /// Segments of several frames (segmentation offload).
    pub cut_segments: u64,
}

fn encode(header: &TcpHeader, payload: (&[u8], &[u8]), src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let header_len = header.header_len();
    let mut bytes = vec![0; header_len + payload.0.len() + payload.1.len()];
    header.emit(&mut bytes);
    bytes[header_len..header_len + payload.0.len()].copy_from_slice(payload.0);
    bytes[header_len + payload.0.len()..].copy_from_slice(payload.1);
    TcpPacket::new_unchecked(&mut bytes[..]).fill_checksum(src, dst);
    bytes
}

/// Run one connection from A (client) to B (server) that moves `a_bytes`
/// one way and `b_bytes` the other, then closes from both sides. Panics with
/// the seed on any wrong byte or on a run that does not end in time.
pub(crate) fn run(
    seed: u64,
    faults: Faults,
    config: TcpConfig,
    a_bytes: usize,
    b_bytes: usize,
) -> Outcome {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let a_iss = Seq(rng.next() as u32);
    let stream = |len: usize, salt: u64| -> Vec<u8> {
        let mut r = Rng(seed ^ salt | 1);
        (0..len).map(|_| r.next() as u8).collect()
    };
    let a_tuple = FourTuple {
        local_ip: A_IP,
        local_port: 40000,
        remote_ip: B_IP,
        remote_port: 7,
    };
    let mut a = Endpoint {
        conn: Connection::connect(a_tuple, a_iss, &config, 0),
        pool: BufferPool::new(config.buffer_size as usize, 8),
        limits: AckLimiter::default(),
        outgoing: stream(a_bytes, 0xa),
        queued: 0,
        received: Vec::new(),
        closed_sending: false,
        ended: None,
        local_ip: A_IP,
        remote_ip: B_IP,
    };
    let mut b: Option<Endpoint> = None;
    let b_outgoing = stream(b_bytes, 0xb);
    let mut link: BinaryHeap<InFlight> = BinaryHeap::new();
    let mut now = 0u64;
    let mut order = 0u64;
    let mut outcome = Outcome {
        sim_time_ns: 0,
        segments: 0,
        dropped: 0,
        timeouts: 0,
        probes: 0,
        cut_segments: 0,
    };
    let limit_ns = 3_600_000 * MS; // one simulated hour
    let fail = |why: String| -> ! {
        panic!("simulation seed {seed}: {why}");
    };

    loop {
        // Applications: queue what fits, read what came, close when done.
        for end in [Some(&mut a), b.as_mut()].into_iter().flatten() {
            if end.ended.is_some() {
                continue;
            }
            let state = end.conn.state();
            if matches!(state, State::Established | State::CloseWait) && !end.closed_sending {
                if end.queued < end.outgoing.len() {
                    if let Ok(n) = end.conn.send(&end.outgoing[end.queued..], &mut end.pool) {
                        end.queued += n;
                    }
                }
                if end.queued == end.outgoing.len() {
                    end.conn.close();
                    end.closed_sending = true;
                }
            }
            let (x, y) = end.conn.recv_data();
            let n = x.len() + y.len();
            end.received.extend_from_slice(x);
            end.received.extend_from_slice(y);
            end.conn.consume(n, &config);
            let events = end.conn.take_events();
            if events.contains(Events::RETRANSMISSION_TIMEOUT) {
                outcome.timeouts += 1;
            }
            if events.contains(Events::TAIL_LOSS_PROBE) {
                outcome.probes += 1;
            }
            if events.contains(Events::RESET) {
                // Legitimate only at the very end: a peer that forgot the
                // connection (TIME-WAIT over) answers a late FIN with a RST.
                // Whether every byte arrived is checked below.
                end.ended = Some(events);
                continue;
            }
            if events.contains(Events::CLOSED) || end.conn.state() == State::TimeWait {
                end.ended = Some(events);
            }
            end.conn.release_idle_buffers(&mut end.pool);
        }
        // Segments onto the link.
        for end in [Some(&mut a), b.as_mut()].into_iter().flatten() {
            let to_b = end.local_ip == A_IP;
            while let Some(segment) = end.conn.poll_transmit(&config, now) {
                if trace() {
                    let h = &segment.header;
                    eprintln!(
                        "{:>10.3} ms {} {} seq {} ack {} len {} win {} sack {:?}",
                        now as f64 / 1e6,
                        if to_b { "A->B" } else { "B->A" },
                        h.flags,
                        h.seq,
                        h.ack,
                        segment.payload_len,
                        h.window,
                        h.options.sack()
                    );
                }
                // A segment larger than one frame (segmentation offload)
                // goes as the frames a NIC would cut it into, each on its
                // own through the faults below.
                let (first, second) = end.conn.segment_payload(&segment);
                let payload = [first, second].concat();
                let size = match usize::from(segment.segment_size) {
                    0 => payload.len().max(1),
                    size => size,
                };
                let frames: Vec<(TcpHeader, &[u8])> = if payload.len() <= size {
                    vec![(segment.header, &payload[..])]
                } else {
                    outcome.cut_segments += 1;
                    let count = payload.len().div_ceil(size);
                    payload
                        .chunks(size)
                        .enumerate()
                        .map(|(i, chunk)| {
                            let mut h = segment.header;
                            h.seq = h.seq.wrapping_add((i * size) as u32);
                            if i + 1 < count {
                                h.flags =
                                    TcpFlags(h.flags.0 & !(TcpFlags::FIN.0 | TcpFlags::PSH.0));
                            }
                            (h, chunk)
                        })
                        .collect()
                };
                for (header, chunk) in frames {
                    let bytes = encode(&header, (chunk, &[]), end.local_ip, end.remote_ip);
                    outcome.segments += 1;
                    let tail_start = a_bytes.saturating_sub(faults.tail_drop) as u32;
                    let offset = header.seq.wrapping_sub((a_iss + 1).0);
                    let in_tail = to_b
                        && faults.tail_drop > 0
                        && !chunk.is_empty()
                        && !segment.retransmission
                        && offset.wrapping_add(chunk.len() as u32) > tail_start
                        && offset < a_bytes as u32;
                    if in_tail || rng.chance(faults.loss) {
                        outcome.dropped += 1;
                        continue;
                    }
                    let copies = if rng.chance(faults.duplicate) { 2 } else { 1 };
                    for _ in 0..copies {
                        let mut bytes = bytes.clone();
                        if rng.chance(faults.corrupt) {
                            let bit = rng.below(bytes.len() as u64 * 8);
                            bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
                        }
                        order += 1;
                        link.push(InFlight {
                            at: now + faults.delay_ns + rng.below(faults.jitter_ns + 1),
                            order,
                            to_b,
                            bytes,
                        });
                    }
                }
            }
        }
        let done = |end: &Endpoint| {
            end.ended.is_some() || matches!(end.conn.state(), State::TimeWait | State::Closed)
        };
        if done(&a) && b.as_ref().is_some_and(done) {
            break;
        }
        // Next event: a delivery or a timer.
        let mut next = link.peek().map(|f| f.at).unwrap_or(u64::MAX);
        for end in [Some(&a), b.as_ref()].into_iter().flatten() {
            if let Some(t) = end.conn.poll_timeout() {
                next = next.min(t);
            }
        }
        if next == u64::MAX {
            fail(format!(
                "stalled at {} ms: nothing in flight, no timer",
                now / MS
            ));
        }
        now = next.max(now);
        if now > limit_ns {
            fail(format!(
                "not finished after {} s: A {} B {:?}",
                limit_ns / 1_000_000_000,
                a.conn.state(),
                b.as_ref().map(|e| e.conn.state())
            ));
        }
        while link.peek().is_some_and(|f| f.at <= now) {
            let InFlight { to_b, bytes, .. } = link.pop().unwrap();
            let (src, dst) = if to_b { (A_IP, B_IP) } else { (B_IP, A_IP) };
            let Ok(packet) = TcpPacket::new_checked(&bytes[..]) else {
                continue;
            };
            if !packet.verify_checksum(src, dst) {
                continue;
            }
            let Ok(header) = TcpHeader::parse(&packet) else {
                continue;
            };
            let payload = packet.payload();
            if to_b {
                if b.is_none() {
                    if header.flags.contains(crate::wire::TcpFlags::SYN)
                        && !header.flags.contains(crate::wire::TcpFlags::ACK)
                    {
                        let b_tuple = FourTuple {
                            local_ip: B_IP,
                            local_port: 7,
                            remote_ip: A_IP,
                            remote_port: 40000,
                        };
                        b = Some(Endpoint {
                            conn: Connection::accept(
                                b_tuple,
                                &header,
                                Seq(rng.next() as u32),
                                &config,
                                now,
                            ),
                            pool: BufferPool::new(config.buffer_size as usize, 8),
                            limits: AckLimiter::default(),
                            outgoing: b_outgoing.clone(),
                            queued: 0,
                            received: Vec::new(),
                            closed_sending: false,
                            ended: None,
                            local_ip: B_IP,
                            remote_ip: A_IP,
                        });
                    }
                    continue;
                }
                let end = b.as_mut().unwrap();
                let closed = end.conn.state() == State::Closed;
                end.conn.handle_segment(
                    &header,
                    payload,
                    &config,
                    &mut end.pool,
                    &mut end.limits,
                    now,
                );
                if closed {
                    answer_closed(&mut link, &mut order, now, &header, payload, false, &faults);
                }
            } else {
                let closed = a.conn.state() == State::Closed;
                a.conn
                    .handle_segment(&header, payload, &config, &mut a.pool, &mut a.limits, now);
                if closed {
                    answer_closed(&mut link, &mut order, now, &header, payload, true, &faults);
                }
            }
        }
        for end in [Some(&mut a), b.as_mut()].into_iter().flatten() {
            if end.conn.poll_timeout().is_some_and(|t| t <= now) {
                end.conn.handle_timeout(&config, now);
            }
        }
    }
    let b = b.expect("B accepted");
    if a.received != b.outgoing {
        fail(format!(
            "A received {} bytes, B sent {}; first difference at {:?}; \
             at {} ms A ended {:?} in {}, B ended {:?} in {}",
            a.received.len(),
            b.outgoing.len(),
            a.received.iter().zip(&b.outgoing).position(|(x, y)| x != y),
            now / MS,
            a.ended,
            a.conn.state(),
            b.ended,
            b.conn.state()
        ));
    }
    if b.received != a.outgoing {
        fail(format!(
            "B received {} bytes, A sent {}; first difference at {:?}",
            b.received.len(),
            a.outgoing.len(),
            b.received.iter().zip(&a.outgoing).position(|(x, y)| x != y)
        ));
    }
    outcome.sim_time_ns = now;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::congestion::Algorithm;

    fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
        match std::env::var("SHARDNET_SIM_SEED") {
            Ok(seed) => vec![seed.parse().expect("SHARDNET_SIM_SEED is a number")],
            Err(_) => default.collect(),
        }
    }

    fn small_buffers() -> TcpConfig {
        TcpConfig {
            buffer_size: 32 * 1024,
            ..TcpConfig::default()
        }
    }

    /// A link with 1 ms of delay and no fault.
    const CLEAN: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        corrupt: 0.0,
        delay_ns: MS,
        jitter_ns: 0,
        tail_drop: 0,
    };

    #[test]
    fn clean_link_moves_megabytes_both_ways() {
        let out = run(1, CLEAN, TcpConfig::default(), 4 << 20, 2 << 20);
        assert!(out.sim_time_ns < 30_000 * MS, "{out:?}");
    }

    /// 300 kB one way and 200 kB the other over a link with 5% loss, 2%
    /// duplication, 1% corruption and reordering, `config` varied by
    /// `seed`: NewReno on odd seeds, no SACK on every third, no timestamps
    /// on every fifth.
    fn lossy_run(seed: u64, mut config: TcpConfig) -> Outcome {
        let faults = Faults {
            loss: 0.05,
            duplicate: 0.02,
            corrupt: 0.01,
            delay_ns: 2 * MS,
            jitter_ns: 3 * MS,
            tail_drop: 0,
        };
        if seed % 2 == 1 {
            config.congestion = Algorithm::NewReno;
        }
        if seed % 3 == 1 {
            config.sack = false;
        }
        if seed % 5 == 1 {
            config.timestamps = false;
        }
        let out = run(seed, faults, config, 300_000, 200_000);
        assert!(out.dropped > 0);
        out
    }

    #[test]
    fn lossy_reordering_duplicating_corrupting_link() {
        for seed in seeds(0..24) {
            lossy_run(seed, small_buffers());
        }
    }

    /// Segmentation offload (segments of up to 64 KiB, cut into MSS frames
    /// as a NIC cuts them, each frame lost, duplicated, corrupted or
    /// reordered on its own): the same bytes arrive, both ways, over a
    /// clean link and a faulty one, with each congestion control and
    /// without SACK or timestamps.
    #[test]
    fn segmentation_offload_over_clean_and_lossy_links() {
        let gso = TcpConfig {
            gso_max: crate::tcp::connection::GSO_MAX_BYTES,
            ..TcpConfig::default()
        };
        let out = run(1, CLEAN, gso, 4 << 20, 2 << 20);
        assert!(out.sim_time_ns < 30_000 * MS, "{out:?}");
        assert!(out.cut_segments > 100, "{out:?}");
        let one_mss = run(1, CLEAN, TcpConfig::default(), 4 << 20, 2 << 20);
        assert_eq!(one_mss.cut_segments, 0);
        assert!(
            out.segments.abs_diff(one_mss.segments) < one_mss.segments / 10,
            "about as many frames either way: {out:?} {one_mss:?}"
        );
        for seed in seeds(100..116) {
            let config = TcpConfig {
                gso_max: crate::tcp::connection::GSO_MAX_BYTES,
                ..small_buffers()
            };
            let out = lossy_run(seed, config);
            assert!(out.cut_segments > 0, "seed {seed}: {out:?}");
        }
    }

    /// RFC 8985 section 7: a lost tail is repaired by a probe and SACK
    /// recovery within a few round trips, not by a retransmission timeout.
    #[test]
    fn a_lost_tail_is_repaired_by_a_probe_not_a_timeout() {
        let faults = Faults {
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            delay_ns: 10 * MS,
            jitter_ns: 0,
            tail_drop: 3 * 1448,
        };
        let run_with = |tlp: bool| {
            let config = TcpConfig {
                tail_loss_probe: tlp,
                ..TcpConfig::default()
            };
            run(7, faults, config, 200_000, 1_000)
        };
        let with = run_with(true);
        let without = run_with(false);
        assert!(
            without.timeouts >= 1,
            "the lost tail costs an RTO: {without:?}"
        );
        assert_eq!(without.probes, 0);
        assert_eq!(with.timeouts, 0, "no RTO with a probe: {with:?}");
        assert!(with.probes >= 1, "{with:?}");
        assert!(
            with.sim_time_ns + 100 * MS < without.sim_time_ns,
            "sooner: {with:?} against {without:?}"
        );
    }

    /// The same over a lossy link, where tails and single segments are lost
    /// at random: across seeds, fewer timeouts and less time with probes.
    #[test]
    fn probes_save_timeouts_on_a_lossy_link() {
        let (mut with, mut without) = ((0, 0, 0), (0, 0, 0));
        for seed in seeds(200..216) {
            let faults = Faults {
                loss: 0.03,
                duplicate: 0.0,
                corrupt: 0.0,
                delay_ns: 5 * MS,
                jitter_ns: MS,
                tail_drop: if seed % 2 == 0 { 2 * 1448 } else { 0 },
            };
            for (tlp, total) in [(true, &mut with), (false, &mut without)] {
                let config = TcpConfig {
                    tail_loss_probe: tlp,
                    ..small_buffers()
                };
                let out = run(seed, faults, config, 100_000, 20_000);
                total.0 += out.timeouts;
                total.1 += out.probes;
                total.2 += out.sim_time_ns;
            }
        }
        eprintln!("with probes (timeouts, probes, ns): {with:?}; without: {without:?}");
        assert!(with.1 > 0 && without.1 == 0);
        assert!(with.0 < without.0, "timeouts: {with:?} against {without:?}");
        assert!(with.2 < without.2, "time: {with:?} against {without:?}");
    }

    #[test]
    fn heavy_loss_still_ends_closed_in_bounded_time() {
        for seed in seeds(100..106) {
            let faults = Faults {
                loss: 0.25,
                duplicate: 0.05,
                corrupt: 0.02,
                delay_ns: 5 * MS,
                jitter_ns: 10 * MS,
                tail_drop: 0,
            };
            // The client half-closes and keeps reading, which Linux never
            // times out in FIN-WAIT-2 (its limit is for orphaned sockets);
            // under this much loss the server's backed-off retransmissions
            // can be a minute apart.
            let config = TcpConfig {
                fin_wait2_ns: 600_000 * MS,
                ..small_buffers()
            };
            run(seed, faults, config, 50_000, 50_000);
        }
    }
}
