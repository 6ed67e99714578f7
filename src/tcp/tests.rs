//! Per-state fixtures for [`Connection`]: a scripted peer sends byte-exact
//! headers and the test checks every segment that comes back (the shape of
//! smoltcp's `socket/tcp.rs` tests).

use std::net::Ipv4Addr;

use super::buffer::BufferPool;
use super::connection::{Connection, Events, Segment, State, TcpConfig};
use super::ratelimit::AckLimiter;
use super::{FourTuple, Seq};
use crate::wire::{TcpFlags, TcpHeader, TcpOptions};

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const TUPLE: FourTuple = FourTuple {
    local_ip: LOCAL,
    local_port: 80,
    remote_ip: REMOTE,
    remote_port: 40000,
};
/// Our ISN and the peer's, chosen near the wrap to exercise it everywhere.
const ISS: u32 = u32::MAX - 100;
const IRS: u32 = 1_000_000;
const MS: u64 = 1_000_000;

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;
const RST: TcpFlags = TcpFlags::RST;

struct Fixture {
    conn: Connection,
    pool: BufferPool,
    limits: AckLimiter,
    config: TcpConfig,
    now: u64,
}

fn config() -> TcpConfig {
    TcpConfig {
        buffer_size: 64 * 1024,
        ..TcpConfig::default()
    }
}

fn peer(flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
    TcpHeader {
        src_port: TUPLE.remote_port,
        dst_port: TUPLE.local_port,
        seq,
        ack,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
    }
}

fn peer_syn() -> TcpHeader {
    let mut syn = peer(SYN, IRS, 0);
    syn.options = TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some((5000, 0)),
        ..TcpOptions::default()
    };
    syn.window = 64240;
    syn
}

impl Fixture {
    /// A connection accepted from `syn`, in SYN-RECEIVED.
    fn accepted_with(syn: TcpHeader, config: TcpConfig) -> Fixture {
        let conn = Connection::accept(TUPLE, &syn, Seq(ISS), &config, 0);
        Fixture {
            conn,
            pool: BufferPool::new(config.buffer_size as usize, 64),
            limits: AckLimiter::default(),
            config,
            now: 0,
        }
    }

    /// An ESTABLISHED connection, its SYN-ACK consumed; the peer offers a
    /// 64 KiB window (scale 7) and timestamps.
    fn established() -> Fixture {
        let mut f = Fixture::accepted_with(peer_syn(), config());
        let syn_ack = f.transmit_one();
        assert_eq!(syn_ack.header.flags, SYN | ACK);
        f.input(f.ack_from_peer(0, 0), b"");
        assert_eq!(f.conn.state(), State::Established);
        assert!(f.conn.take_events().contains(Events::ESTABLISHED));
        f
    }

    /// A plain peer segment at peer offset `rel_seq` (from IRS+1) acking our
    /// offset `rel_ack` (from ISS+1), with a current timestamp.
    fn ack_from_peer(&self, rel_seq: u32, rel_ack: u32) -> TcpHeader {
        let mut h = peer(
            ACK,
            IRS.wrapping_add(1).wrapping_add(rel_seq),
            ISS.wrapping_add(1).wrapping_add(rel_ack),
        );
        h.window = 512; // << 7 = 64 KiB
        h.options.timestamps = Some((5000 + (self.now / MS) as u32, 0));
        h
    }

    fn input(&mut self, header: TcpHeader, payload: &[u8]) {
        self.conn.handle_segment(
            &header,
            payload,
            &self.config,
            &mut self.pool,
            &mut self.limits,
            self.now,
        );
    }

    fn transmit(&mut self) -> Vec<(Segment, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(segment) = self.conn.poll_transmit(&self.config, self.now) {
            let (a, b) = self.conn.segment_payload(&segment);
            let mut payload = a.to_vec();
            payload.extend_from_slice(b);
            assert_eq!(payload.len(), segment.payload_len as usize);
            out.push((segment, payload));
            assert!(out.len() < 10_000, "poll_transmit never ends");
        }
        out
    }

    fn transmit_one(&mut self) -> Segment {
        let mut out = self.transmit();
        assert_eq!(out.len(), 1, "expected one segment, got {out:?}");
        out.remove(0).0
    }

    fn advance_to(&mut self, at: u64) {
        self.now = at;
        if let Some(deadline) = self.conn.poll_timeout() {
            if deadline <= at {
                self.conn.handle_timeout(&self.config, at);
            }
        }
    }

    /// Run timers until the next deadline; returns it.
    fn fire_next_timer(&mut self) -> u64 {
        let deadline = self.conn.poll_timeout().expect("a timer is armed");
        self.advance_to(deadline);
        deadline
    }

    fn read_all(&mut self) -> Vec<u8> {
        let mut out = vec![0; self.conn.recv_len()];
        let n = self.conn.recv_slice(&mut out, &self.config);
        out.truncate(n);
        out
    }
}

fn rel_ack(segment: &Segment) -> u32 {
    segment.header.ack.wrapping_sub(IRS.wrapping_add(1))
}

fn rel_seq(segment: &Segment) -> u32 {
    segment.header.seq.wrapping_sub(ISS.wrapping_add(1))
}

#[test]
fn passive_open_answers_with_our_options_and_establishes_on_ack() {
    let mut f = Fixture::accepted_with(peer_syn(), config());
    assert_eq!(f.conn.state(), State::SynReceived);
    let syn_ack = f.transmit_one();
    let h = syn_ack.header;
    assert_eq!(h.flags, SYN | ACK);
    assert_eq!(h.seq, ISS);
    assert_eq!(h.ack, IRS + 1);
    assert_eq!(h.options.mss, Some(1460));
    assert_eq!(
        h.options.window_scale,
        Some(1),
        "65536 bytes need one shift"
    );
    assert!(h.options.sack_permitted);
    assert_eq!(
        h.options.timestamps.map(|t| t.1),
        Some(5000),
        "TSecr echoes"
    );
    assert_eq!(h.window, 65535);
    assert!(f.conn.take_events().is_empty());
    f.input(f.ack_from_peer(0, 0), b"");
    assert_eq!(f.conn.state(), State::Established);
    assert!(f.conn.take_events().contains(Events::ESTABLISHED));
    assert!(
        f.transmit().is_empty(),
        "nothing to say after the handshake"
    );
}

#[test]
fn syn_without_options_gets_none_and_mss_536() {
    let mut syn = peer(SYN, IRS, 0);
    syn.window = 8192;
    let mut f = Fixture::accepted_with(syn, config());
    let h = f.transmit_one().header;
    assert_eq!(h.options.window_scale, None);
    assert!(!h.options.sack_permitted);
    assert_eq!(h.options.timestamps, None);
    assert_eq!(f.conn.mss(), 536);
}

#[test]
fn lost_syn_ack_is_resent_on_timeout_and_on_a_repeated_syn() {
    let mut f = Fixture::accepted_with(peer_syn(), config());
    f.transmit_one();
    let at = f.fire_next_timer();
    assert_eq!(at, 1000 * MS, "initial RTO of one second");
    let again = f.transmit_one();
    assert_eq!(again.header.flags, SYN | ACK);
    assert!(again.retransmission);
    f.input(peer_syn(), b"");
    assert_eq!(f.transmit_one().header.flags, SYN | ACK);
}

#[test]
fn in_order_data_is_delivered_and_the_ack_delayed() {
    let mut f = Fixture::established();
    f.input(f.ack_from_peer(0, 0), b"hello");
    assert!(f.conn.take_events().contains(Events::READABLE));
    assert_eq!(f.read_all(), b"hello");
    assert!(f.transmit().is_empty(), "one small segment: delayed ACK");
    let deadline = f.conn.poll_timeout().unwrap();
    assert_eq!(deadline, 40 * MS);
    f.advance_to(deadline);
    let ack = f.transmit_one();
    assert_eq!(ack.header.flags, ACK);
    assert_eq!(rel_ack(&ack), 5);
}

#[test]
fn every_second_full_segment_is_acked_at_once() {
    let mut f = Fixture::established();
    let full = vec![7u8; usize::from(f.conn.mss()) - 12];
    f.input(f.ack_from_peer(0, 0), &full);
    assert!(f.transmit().is_empty());
    let len = full.len() as u32;
    f.input(f.ack_from_peer(len, 0), &full);
    // Two segments of MSS minus timestamps: at least 2*MSS bytes?
    let out = f.transmit();
    let total = 2 * len;
    if total >= 2 * u32::from(f.conn.mss()) {
        assert_eq!(out.len(), 1);
    }
    f.advance_to(40 * MS);
    let out2 = f.transmit();
    let last = out.iter().chain(out2.iter()).last().expect("an ACK");
    assert_eq!(rel_ack(&last.0), total);
}

#[test]
fn out_of_order_data_gets_a_sack_and_the_hole_fill_an_ack_of_all() {
    let mut f = Fixture::established();
    f.input(f.ack_from_peer(10, 0), b"0123456789");
    let dup = f.transmit_one();
    assert_eq!(rel_ack(&dup), 0, "duplicate ACK");
    let sack = dup.header.options.sack();
    assert_eq!(sack.len(), 1);
    let base = IRS.wrapping_add(1);
    assert_eq!(sack[0], (base + 10, base + 20));
    assert_eq!(f.conn.recv_len(), 0, "nothing readable yet");
    f.input(f.ack_from_peer(0, 0), b"abcdefghij");
    let ack = f.transmit_one();
    assert_eq!(rel_ack(&ack), 20, "the hole filled: ACK at once");
    assert_eq!(ack.header.options.sack_count, 0);
    assert_eq!(f.read_all(), b"abcdefghij0123456789");
}

#[test]
fn overlapping_and_old_duplicate_data_is_trimmed() {
    let mut f = Fixture::established();
    f.input(f.ack_from_peer(0, 0), b"abcdef");
    f.input(f.ack_from_peer(3, 0), b"defghi");
    f.input(f.ack_from_peer(0, 0), b"abc");
    assert_eq!(f.read_all(), b"abcdefghi");
}

#[test]
fn data_beyond_the_window_is_cut_at_its_edge() {
    let mut f = Fixture::established();
    let big = vec![1u8; 70 * 1024];
    f.input(f.ack_from_peer(0, 0), &big);
    assert_eq!(f.conn.recv_len(), 64 * 1024);
}

#[test]
fn rst_exactly_at_rcv_nxt_resets() {
    let mut f = Fixture::established();
    f.input(peer(RST, IRS + 1, 0), b"");
    assert_eq!(f.conn.state(), State::Closed);
    assert!(f.conn.take_events().contains(Events::RESET));
    assert!(f.transmit().is_empty(), "no answer to a RST");
}

#[test]
fn rst_in_window_but_not_exact_gets_a_challenge_ack() {
    let mut f = Fixture::established();
    f.input(peer(RST, IRS + 100, 0), b"");
    assert_eq!(f.conn.state(), State::Established);
    let challenge = f.transmit_one();
    assert_eq!(challenge.header.flags, ACK);
    assert_eq!(rel_ack(&challenge), 0);
}

#[test]
fn rst_outside_the_window_is_ignored() {
    let mut f = Fixture::established();
    f.input(peer(RST, IRS.wrapping_sub(1000), 0), b"");
    assert_eq!(f.conn.state(), State::Established);
    assert!(f.transmit().is_empty());
}

#[test]
fn syn_on_an_established_connection_gets_a_challenge_ack() {
    let mut f = Fixture::established();
    let mut syn = peer_syn();
    syn.seq = IRS + 1;
    f.input(syn, b"");
    assert_eq!(f.conn.state(), State::Established);
    assert_eq!(f.transmit_one().header.flags, ACK);
}

#[test]
fn ack_of_unsent_data_is_answered_and_dropped() {
    let mut f = Fixture::established();
    f.input(f.ack_from_peer(0, 5000), b"data");
    assert_eq!(f.conn.recv_len(), 0, "the segment is dropped");
    assert_eq!(f.transmit_one().header.flags, ACK);
}

#[test]
fn paws_drops_an_old_timestamp() {
    let mut f = Fixture::established();
    let mut old = f.ack_from_peer(0, 0);
    old.options.timestamps = Some((100, 0));
    f.input(old, b"stale");
    assert_eq!(f.conn.recv_len(), 0);
    assert_eq!(f.transmit_one().header.flags, ACK);
}

#[test]
fn sending_respects_mss_and_the_initial_window_and_grows_on_acks() {
    let mut f = Fixture::established();
    let data = vec![0x5a; 100_000];
    let taken = f.conn.send(&data, &mut f.pool).unwrap();
    assert_eq!(taken, 64 * 1024);
    let burst = f.transmit();
    let mss = usize::from(f.conn.mss()) - 12;
    assert_eq!(burst.len(), 10, "initial window of 10 segments");
    for (segment, payload) in &burst {
        assert_eq!(payload.len(), mss);
        assert!(segment.header.flags.contains(ACK));
        assert!(!segment.retransmission);
    }
    assert_eq!(rel_seq(&burst[3].0), 3 * mss as u32);
    // Acknowledge the first five: slow start adds five more segments' worth.
    f.now = 10 * MS;
    f.input(f.ack_from_peer(0, 5 * mss as u32), b"");
    let more = f.transmit();
    // RFC 3465: one ACK grows the window by at most 2 SMSS in slow start,
    // so 12 segments' worth with 5 in flight: 7 go.
    assert_eq!(more.len(), 7, "{more:?}");
    assert!(f.conn.srtt_ns().is_some(), "an RTT sample was taken");
}

/// An ESTABLISHED connection as [`Fixture::established`], with segmentation
/// offload of up to `gso_max` bytes a segment.
fn established_with_gso(gso_max: u32) -> Fixture {
    let config = TcpConfig {
        gso_max,
        ..config()
    };
    let mut f = Fixture::accepted_with(peer_syn(), config);
    f.transmit_one();
    f.input(f.ack_from_peer(0, 0), b"");
    assert_eq!(f.conn.state(), State::Established);
    f
}

#[test]
fn with_segmentation_offload_the_window_leaves_as_one_segment_of_whole_msses() {
    let mut f = established_with_gso(crate::tcp::connection::GSO_MAX_BYTES);
    // The first timer is then the RTO, not a tail loss probe.
    f.config.tail_loss_probe = false;
    let data = vec![0x5a; 100_000];
    assert_eq!(f.conn.send(&data, &mut f.pool).unwrap(), 64 * 1024);
    let mss = u32::from(f.conn.mss()) - 12;
    // The initial window (10 MSS) in one segment cut at the MSS.
    let burst = f.transmit();
    assert_eq!(burst.len(), 1, "{burst:?}");
    let (segment, payload) = &burst[0];
    assert_eq!(segment.payload_len, 10 * mss);
    assert_eq!(payload.len(), 10 * mss as usize);
    assert_eq!(u32::from(segment.segment_size), mss);
    assert_eq!(rel_seq(segment), 0);
    assert!(
        !segment.header.flags.contains(TcpFlags::PSH),
        "more data waits"
    );
    // One ACK for five MSS: slow start opens 7 more (as one MSS at a time,
    // above): one segment of 7 MSS.
    f.now = 10 * MS;
    f.input(f.ack_from_peer(0, 5 * mss), b"");
    let more = f.transmit();
    assert_eq!(more.len(), 1, "{more:?}");
    assert_eq!(more[0].0.payload_len, 7 * mss);
    assert_eq!(rel_seq(&more[0].0), 10 * mss);

    // The retransmission after a timeout is one MSS (the window is one).
    let at = f.conn.poll_timeout().expect("the RTO is armed");
    f.advance_to(at);
    let resent = f.transmit();
    assert!(!resent.is_empty());
    assert!(resent[0].0.retransmission);
    assert_eq!(resent[0].0.payload_len, mss);
    assert_eq!(rel_seq(&resent[0].0), 5 * mss);
}

#[test]
fn with_segmentation_offload_a_runt_goes_only_at_the_end_of_the_data() {
    let mut f = established_with_gso(crate::tcp::connection::GSO_MAX_BYTES);
    let mss = u32::from(f.conn.mss()) - 12;
    // 3.5 MSS queued: all of it at once, the last frame short, with PSH.
    let data = vec![7u8; (3 * mss + mss / 2) as usize];
    f.conn.send(&data, &mut f.pool).unwrap();
    let out = f.transmit();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0.payload_len, 3 * mss + mss / 2);
    assert!(out[0].0.header.flags.contains(TcpFlags::PSH));
    // A window that ends mid-MSS: whole MSSes only while more data waits.
    let mut f = established_with_gso(crate::tcp::connection::GSO_MAX_BYTES);
    f.input(
        TcpHeader {
            window: ((2 * mss + mss / 2) >> 7) as u16 + 1,
            ..f.ack_from_peer(0, 0)
        },
        b"",
    );
    let data = vec![7u8; 10 * mss as usize];
    f.conn.send(&data, &mut f.pool).unwrap();
    let out = f.transmit();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        out[0].0.payload_len,
        2 * mss,
        "cut at the MSS below the window"
    );
    // Without the offload, the same connection sends one MSS a segment.
    let mut f = established_with_gso(0);
    f.conn.send(&data, &mut f.pool).unwrap();
    let out = f.transmit();
    assert!(out.iter().all(|(s, _)| s.payload_len == mss), "{out:?}");
}

#[test]
fn with_segmentation_offload_sack_recovery_still_sends_one_mss_at_a_time() {
    let mut f = established_with_gso(crate::tcp::connection::GSO_MAX_BYTES);
    let mss = u32::from(f.conn.mss()) - 12;
    let data = vec![2u8; 40 * mss as usize];
    f.conn.send(&data, &mut f.pool).unwrap();
    let first = f.transmit();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0.payload_len, 10 * mss);
    f.now = 5 * MS;
    // The second MSS is lost; the other eight arrive, SACKed: recovery
    // (RFC 6675), where each segment is sent while cwnd - pipe >= 1 SMSS.
    let base = ISS.wrapping_add(1);
    for k in 2..10u32 {
        let mut ack = f.ack_from_peer(0, mss);
        ack.options.sack_blocks[0] = (base.wrapping_add(2 * mss), base.wrapping_add((k + 1) * mss));
        ack.options.sack_count = 1;
        f.input(ack, b"");
    }
    let out = f.transmit();
    assert!(!out.is_empty());
    assert_eq!(rel_seq(&out[0].0), mss, "the hole first: {out:?}");
    for (segment, _) in &out {
        assert!(
            segment.payload_len <= mss,
            "one MSS a segment in recovery, not {}: {out:?}",
            segment.payload_len
        );
    }
}

#[test]
fn with_segmentation_offload_the_first_segment_after_idle_fits_the_restart_window() {
    let mut f = established_with_gso(crate::tcp::connection::GSO_MAX_BYTES);
    let mss = u32::from(f.conn.mss()) - 12;
    // Two rounds of slow start take the window past the initial 10 MSS.
    let mut acked = 0;
    for round in 0..2u64 {
        f.conn
            .send(&vec![1u8; 12 * mss as usize], &mut f.pool)
            .unwrap();
        let out = f.transmit();
        acked += out.iter().map(|(s, _)| s.payload_len).sum::<u32>();
        f.now = (round + 1) * 10 * MS;
        f.input(f.ack_from_peer(0, acked), b"");
    }
    // What the window held back goes, and is acknowledged: nothing in
    // flight.
    acked += f.transmit().iter().map(|(s, _)| s.payload_len).sum::<u32>();
    f.now += 10 * MS;
    f.input(f.ack_from_peer(0, acked), b"");
    assert!(f.transmit().is_empty());
    assert_eq!(acked, 24 * mss);
    assert!(
        f.conn.cwnd() > 10 * mss,
        "cwnd {} grew past IW",
        f.conn.cwnd()
    );
    // Idle for longer than the RTO: the next segment is the restart window.
    f.now += 5_000 * MS;
    f.conn
        .send(&vec![1u8; 40 * mss as usize], &mut f.pool)
        .unwrap();
    let out = f.transmit();
    assert_eq!(out[0].0.payload_len, 10 * mss, "{out:?}");
    assert!(out.iter().map(|(s, _)| s.payload_len).sum::<u32>() <= 10 * mss);
}

#[test]
fn unacknowledged_data_is_retransmitted_with_backoff_then_reset() {
    let mut cfg = config();
    cfg.max_retransmits = 3;
    cfg.tail_loss_probe = false;
    let mut f = Fixture::accepted_with(peer_syn(), cfg);
    f.transmit_one();
    f.input(f.ack_from_peer(0, 0), b"");
    f.conn.take_events();
    f.conn.send(b"lost", &mut f.pool).unwrap();
    let first = f.transmit_one();
    assert_eq!(first.payload_len, 4);
    let mut last = 0;
    let mut gaps = Vec::new();
    f.conn.take_events();
    for _ in 0..3 {
        let at = f.fire_next_timer();
        gaps.push(at - last);
        last = at;
        assert!(f
            .conn
            .take_events()
            .contains(Events::RETRANSMISSION_TIMEOUT));
        let again = f.transmit_one();
        assert!(again.retransmission);
        assert_eq!(rel_seq(&again), 0);
        assert_eq!(again.payload_len, 4);
    }
    assert!(
        gaps[1] >= 2 * gaps[0] - MS && gaps[2] >= 2 * gaps[1] - MS,
        "backoff {gaps:?}"
    );
    f.fire_next_timer();
    let reset = f.transmit_one();
    assert!(reset.header.flags.contains(RST));
    assert_eq!(f.conn.state(), State::Closed);
    let events = f.conn.take_events();
    assert!(events.contains(Events::RESET) && events.contains(Events::TIMED_OUT));
}

#[test]
fn three_duplicate_acks_trigger_fast_retransmit_before_the_timer() {
    let mut f = Fixture::established();
    let data = vec![1u8; 10 * 1400];
    f.conn.send(&data, &mut f.pool).unwrap();
    let burst = f.transmit();
    assert!(burst.len() >= 5);
    f.now = 5 * MS;
    let mut dup = f.ack_from_peer(0, 0);
    dup.window = 512;
    for _ in 0..3 {
        f.input(dup, b"");
    }
    let out = f.transmit();
    let rtx = &out[0].0;
    assert!(rtx.retransmission, "fast retransmit: {out:?}");
    assert_eq!(rel_seq(rtx), 0);
    assert!(f.conn.cwnd() < 10 * 1448, "window reduced");
}

#[test]
fn sack_recovery_resends_only_the_holes() {
    let mut f = Fixture::established();
    let mss = usize::from(f.conn.mss()) - 12;
    let data = vec![2u8; 10 * mss];
    f.conn.send(&data, &mut f.pool).unwrap();
    assert_eq!(f.transmit().len(), 10);
    f.now = 5 * MS;
    // Segment 1 (the second) is lost; 2..=9 arrive, SACKed.
    let base = ISS.wrapping_add(1);
    for k in 2..10u32 {
        let mut ack = f.ack_from_peer(0, mss as u32);
        ack.options.sack_blocks[0] = (
            base.wrapping_add(2 * mss as u32),
            base.wrapping_add((k + 1) * mss as u32),
        );
        ack.options.sack_count = 1;
        f.input(ack, b"");
    }
    let out = f.transmit();
    let retransmitted: Vec<u32> = out
        .iter()
        .filter(|(s, _)| s.retransmission)
        .map(|(s, _)| rel_seq(s))
        .collect();
    assert_eq!(retransmitted, vec![mss as u32], "only the hole: {out:?}");
}

#[test]
fn orderly_close_sends_all_data_then_fin_and_lingers_in_time_wait() {
    let mut f = Fixture::established();
    f.conn.send(b"last words", &mut f.pool).unwrap();
    f.conn.close();
    assert_eq!(f.conn.state(), State::FinWait1);
    let seg = f.transmit_one();
    assert_eq!(seg.payload_len, 10);
    assert!(seg.header.flags.contains(FIN), "FIN rides on the last data");
    f.input(f.ack_from_peer(0, 11), b"");
    assert_eq!(f.conn.state(), State::FinWait2);
    let mut fin = f.ack_from_peer(0, 11);
    fin.flags = FIN | ACK;
    f.input(fin, b"");
    assert_eq!(f.conn.state(), State::TimeWait);
    assert_eq!(rel_ack(&f.transmit_one()), 1);
    let expiry = f.conn.poll_timeout().unwrap();
    assert_eq!(expiry, f.now + f.config.time_wait_ns);
    f.advance_to(expiry);
    assert_eq!(f.conn.state(), State::Closed);
    assert!(f.conn.take_events().contains(Events::CLOSED));
}

#[test]
fn passive_close_goes_through_close_wait_and_last_ack() {
    let mut f = Fixture::established();
    let mut fin = f.ack_from_peer(0, 0);
    fin.flags = FIN | ACK;
    f.input(fin, b"bye");
    assert_eq!(f.conn.state(), State::CloseWait);
    let events = f.conn.take_events();
    assert!(events.contains(Events::READABLE) && events.contains(Events::PEER_CLOSED));
    assert_eq!(f.read_all(), b"bye");
    f.conn.send(b"ok", &mut f.pool).unwrap();
    f.conn.close();
    assert_eq!(f.conn.state(), State::LastAck);
    let out = f.transmit();
    let last = &out.last().unwrap().0;
    assert!(last.header.flags.contains(FIN));
    assert_eq!(rel_ack(last), 4, "3 bytes and the FIN");
    f.input(f.ack_from_peer(4, 3), b"");
    assert_eq!(f.conn.state(), State::Closed);
    assert!(f.conn.take_events().contains(Events::CLOSED));
}

#[test]
fn simultaneous_close_passes_through_closing() {
    let mut f = Fixture::established();
    f.conn.close();
    let our_fin = f.transmit_one();
    assert!(our_fin.header.flags.contains(FIN));
    let mut fin = f.ack_from_peer(0, 0); // does not ack our FIN
    fin.flags = FIN | ACK;
    f.input(fin, b"");
    assert_eq!(f.conn.state(), State::Closing);
    f.transmit();
    f.input(f.ack_from_peer(1, 1), b"");
    assert_eq!(f.conn.state(), State::TimeWait);
}

#[test]
fn out_of_order_fin_is_taken_once_the_hole_fills() {
    let mut f = Fixture::established();
    let mut fin = f.ack_from_peer(3, 0);
    fin.flags = FIN | ACK;
    f.input(fin, b"def");
    assert_eq!(f.conn.state(), State::Established);
    f.input(f.ack_from_peer(0, 0), b"abc");
    assert_eq!(f.conn.state(), State::CloseWait);
    assert_eq!(f.read_all(), b"abcdef");
}

#[test]
fn active_open_and_simultaneous_open() {
    let config = config();
    let mut pool = BufferPool::new(config.buffer_size as usize, 4);
    let mut conn = Connection::connect(TUPLE, Seq(ISS), &config, 0);
    let syn = conn.poll_transmit(&config, 0).unwrap();
    assert_eq!(syn.header.flags, SYN);
    assert_eq!(syn.header.options.mss, Some(1460));
    assert!(syn.header.options.sack_permitted);
    // Simultaneous open: the peer's SYN crosses ours.
    let mut their_syn = peer_syn();
    their_syn.ack = 0;
    conn.handle_segment(
        &their_syn,
        b"",
        &config,
        &mut pool,
        &mut AckLimiter::default(),
        1,
    );
    assert_eq!(conn.state(), State::SynReceived);
    let syn_ack = conn.poll_transmit(&config, 1).unwrap();
    assert_eq!(syn_ack.header.flags, SYN | ACK);
    assert_eq!(syn_ack.header.seq, ISS, "the same ISN");
    let mut ack = peer(SYN | ACK, IRS, ISS.wrapping_add(1));
    ack.options = their_syn.options;
    ack.flags = ACK;
    ack.seq = IRS + 1;
    conn.handle_segment(&ack, b"", &config, &mut pool, &mut AckLimiter::default(), 2);
    assert_eq!(conn.state(), State::Established);

    // A plain active open: SYN, SYN-ACK, ACK.
    let mut conn = Connection::connect(TUPLE, Seq(ISS), &config, 0);
    conn.poll_transmit(&config, 0).unwrap();
    let mut syn_ack = peer_syn();
    syn_ack.flags = SYN | ACK;
    syn_ack.ack = ISS.wrapping_add(1);
    conn.handle_segment(
        &syn_ack,
        b"",
        &config,
        &mut pool,
        &mut AckLimiter::default(),
        3 * MS,
    );
    assert_eq!(conn.state(), State::Established);
    assert!(conn.take_events().contains(Events::ESTABLISHED));
    let ack = conn.poll_transmit(&config, 3 * MS).unwrap();
    assert_eq!(ack.header.flags, ACK);
    assert_eq!(ack.header.ack, IRS + 1);
    assert_eq!(conn.srtt_ns(), Some(3 * MS));
}

#[test]
fn refused_active_open_reports_reset() {
    let config = config();
    let mut pool = BufferPool::new(config.buffer_size as usize, 4);
    let mut conn = Connection::connect(TUPLE, Seq(ISS), &config, 0);
    conn.poll_transmit(&config, 0).unwrap();
    let rst = peer(RST | ACK, 0, ISS.wrapping_add(1));
    conn.handle_segment(&rst, b"", &config, &mut pool, &mut AckLimiter::default(), 1);
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.take_events().contains(Events::RESET));
}

#[test]
fn zero_window_is_probed_and_sending_resumes_when_it_opens() {
    let mut f = Fixture::established();
    let mut shut = f.ack_from_peer(0, 0);
    shut.window = 0;
    f.input(shut, b"");
    f.conn.send(b"waiting", &mut f.pool).unwrap();
    assert!(f.transmit().is_empty(), "window is zero");
    f.fire_next_timer();
    let probe = f.transmit_one();
    assert_eq!(probe.payload_len, 1, "one byte beyond the window");
    let mut open = f.ack_from_peer(0, 0);
    open.window = 512;
    f.now += MS;
    f.input(open, b"");
    let out = f.transmit();
    let sent: u32 = out.iter().map(|(s, _)| s.payload_len).sum();
    assert!(sent >= 6, "the rest goes: {out:?}");
}

#[test]
fn keepalive_probes_then_resets_an_unresponsive_peer() {
    let mut cfg = config();
    cfg.keepalive = Some(super::connection::Keepalive {
        idle_ns: 10_000 * MS,
        interval_ns: 1_000 * MS,
        probes: 2,
    });
    let mut f = Fixture::accepted_with(peer_syn(), cfg);
    f.transmit_one();
    f.input(f.ack_from_peer(0, 0), b"");
    let at = f.fire_next_timer();
    assert_eq!(at, 10_000 * MS);
    let probe = f.transmit_one();
    assert_eq!(probe.header.seq, ISS, "SND.NXT - 1");
    f.fire_next_timer();
    f.transmit_one();
    f.fire_next_timer();
    let reset = f.transmit_one();
    assert!(reset.header.flags.contains(RST));
    assert!(f.conn.take_events().contains(Events::TIMED_OUT));
}

#[test]
fn time_wait_accepts_a_new_syn_only_if_newer() {
    let mut f = Fixture::established();
    f.conn.close();
    f.transmit();
    let mut fin = f.ack_from_peer(0, 1);
    fin.flags = FIN | ACK;
    f.input(fin, b"");
    assert_eq!(f.conn.state(), State::TimeWait);
    let mut old = peer_syn();
    old.options.timestamps = Some((4000, 0));
    assert!(!f.conn.accepts_syn_in_time_wait(&old));
    let mut newer = peer_syn();
    newer.options.timestamps = Some((9_999_999, 0));
    assert!(f.conn.accepts_syn_in_time_wait(&newer));
}

#[test]
fn nagle_holds_small_segments_while_data_is_unacknowledged() {
    let mut cfg = config();
    cfg.nagle = true;
    let mut f = Fixture::accepted_with(peer_syn(), cfg);
    f.transmit_one();
    f.input(f.ack_from_peer(0, 0), b"");
    f.conn.send(b"a", &mut f.pool).unwrap();
    assert_eq!(f.transmit().len(), 1);
    f.conn.send(b"b", &mut f.pool).unwrap();
    assert!(f.transmit().is_empty(), "held by Nagle");
    f.input(f.ack_from_peer(0, 1), b"");
    assert_eq!(f.transmit_one().payload_len, 1);
}

#[test]
fn path_mtu_shrinks_segments() {
    let mut f = Fixture::established();
    f.conn.send(&vec![3u8; 4000], &mut f.pool).unwrap();
    let first = f.transmit();
    assert!(first[0].1.len() > 1000);
    assert!(f.conn.on_path_mtu(Seq(ISS.wrapping_add(1)), 1000));
    let again = f.transmit();
    assert!(again.iter().all(|(s, _)| s.payload_len <= 960 - 12));
    assert!(
        !f.conn.on_path_mtu(Seq(ISS.wrapping_sub(5000)), 800),
        "not in flight"
    );
}

#[test]
fn reset_for_follows_rfc_9293() {
    let with_ack = peer(ACK, 10, 777);
    let rst = Connection::reset_for(&with_ack, 5).unwrap();
    assert_eq!((rst.flags, rst.seq), (RST, 777));
    let syn = peer(SYN, 10, 0);
    let rst = Connection::reset_for(&syn, 0).unwrap();
    assert_eq!((rst.flags, rst.seq, rst.ack), (RST | ACK, 0, 11));
    assert!(Connection::reset_for(&peer(RST, 1, 0), 0).is_none());
}

#[test]
fn connection_state_fits_the_memory_budget() {
    // The target: at most 512 bytes of state per idle connection,
    // buffered data excluded. The table adds its slot fields and index entry;
    // `bench/tcp_table.rs` measures the whole.
    let size = std::mem::size_of::<Connection>();
    assert!(size <= 384, "Connection is {size} bytes");
}

#[test]
fn zero_window_probes_go_on_with_backoff_until_the_window_opens() {
    let mut f = Fixture::established();
    let mut shut = f.ack_from_peer(0, 0);
    shut.window = 0;
    f.input(shut, b"");
    f.conn.send(b"waiting", &mut f.pool).unwrap();
    assert!(f.transmit().is_empty());
    let mut probes = Vec::new();
    for _ in 0..5 {
        let at = f.fire_next_timer();
        let out = f.transmit();
        assert_eq!(out.len(), 1, "one probe per interval: {out:?}");
        assert_eq!(out[0].0.payload_len, 1);
        assert_eq!(rel_seq(&out[0].0), 0, "the same first byte");
        probes.push(at);
        // The peer answers each probe: still a zero window, nothing acked.
        f.input(shut, b"");
        assert!(
            f.transmit().is_empty(),
            "no fast retransmit from probe answers"
        );
    }
    let gaps: Vec<u64> = probes.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "backing off: {gaps:?}"
    );
    assert_eq!(
        f.conn.state(),
        State::Established,
        "answered probes never time out"
    );
    let mut open = f.ack_from_peer(0, 0);
    open.window = 512;
    f.now += MS;
    f.input(open, b"");
    let out = f.transmit();
    let last = &out.last().expect("data once the window opens").0;
    assert_eq!(
        rel_seq(last) + last.payload_len,
        7,
        "everything up to the last byte goes (the probe byte is in flight): {out:?}"
    );
}

#[test]
fn close_in_syn_received_sends_the_fin_only_after_the_handshake() {
    let mut f = Fixture::accepted_with(peer_syn(), config());
    f.transmit_one();
    f.conn.close();
    assert_eq!(f.conn.state(), State::SynReceived);
    // The SYN-ACK is lost: what is resent is a SYN-ACK, not a FIN.
    f.fire_next_timer();
    assert_eq!(f.transmit_one().header.flags, SYN | ACK);
    f.input(f.ack_from_peer(0, 0), b"");
    assert_eq!(f.conn.state(), State::FinWait1);
    let fin = f.transmit_one();
    assert_eq!(fin.header.flags, FIN | ACK);
    assert_eq!(rel_seq(&fin), 0);
}

#[test]
fn syn_sent_ignores_a_reset_whose_ack_is_not_for_our_syn() {
    let config = config();
    let mut pool = BufferPool::new(config.buffer_size as usize, 4);
    let mut conn = Connection::connect(TUPLE, Seq(ISS), &config, 0);
    conn.poll_transmit(&config, 0).unwrap();
    let blind = peer(RST | ACK, 0, ISS.wrapping_add(5000));
    conn.handle_segment(
        &blind,
        b"",
        &config,
        &mut pool,
        &mut AckLimiter::default(),
        1,
    );
    assert_eq!(conn.state(), State::SynSent, "a blind RST must not close");
    assert!(conn.is_bad_ack_in_handshake(&peer(ACK, 0, ISS.wrapping_add(5000))));
}

#[test]
fn fin_wait_2_limit_counts_silence_not_duplicates() {
    let mut f = Fixture::established();
    f.input(f.ack_from_peer(0, 0), b"abc");
    f.conn.close();
    f.transmit();
    f.input(f.ack_from_peer(3, 1), b"");
    assert_eq!(f.conn.state(), State::FinWait2);
    // Half-way through the limit the peer resends data we already have.
    f.now = f.config.fin_wait2_ns / 2;
    f.input(f.ack_from_peer(0, 1), b"abc");
    assert_eq!(f.conn.poll_timeout(), Some(f.now + f.config.fin_wait2_ns));
    f.advance_to(f.config.fin_wait2_ns + MS);
    assert_eq!(f.conn.state(), State::FinWait2, "the peer is alive");
    let silent_until = f.conn.poll_timeout().unwrap();
    f.advance_to(silent_until);
    assert_eq!(f.conn.state(), State::Closed, "silence ends it");
}

/// An established connection whose handshake took `rtt`, so that SRTT is
/// `rtt` (the probe timeout depends on it).
fn established_after(rtt: u64) -> Fixture {
    let mut f = Fixture::accepted_with(peer_syn(), config());
    f.transmit_one();
    f.now = rtt;
    f.input(f.ack_from_peer(0, 0), b"");
    assert_eq!(f.conn.state(), State::Established);
    assert_eq!(f.conn.srtt_ns(), Some(rtt));
    f.conn.take_events();
    f
}

/// A connection closed by us first, in TIME-WAIT, its last ACK sent: through
/// FIN-WAIT-2 (`closing` false) or CLOSING, with or without timestamps.
fn in_time_wait(closing: bool, timestamps: bool) -> Fixture {
    let mut syn = peer_syn();
    if !timestamps {
        syn.options.timestamps = None;
    }
    let mut f = Fixture::accepted_with(syn, config());
    f.transmit_one();
    f.input(f.ack_from_peer(0, 0), b"");
    assert_eq!(f.conn.state(), State::Established);
    f.now = 10 * MS;
    f.conn.close();
    f.transmit();
    let mut fin = f.ack_from_peer(0, if closing { 0 } else { 1 });
    fin.flags = FIN | ACK;
    f.input(fin, b"");
    f.transmit();
    if closing {
        assert_eq!(f.conn.state(), State::Closing);
        f.input(f.ack_from_peer(1, 1), b"");
        f.transmit();
    }
    assert_eq!(f.conn.state(), State::TimeWait);
    f.conn.take_events();
    f
}

#[test]
fn out_of_window_segments_get_one_ack_per_half_second_but_data_is_always_answered() {
    let mut f = Fixture::established();
    let mut acks = 0;
    // 2,000 pure ACKs far below the window within one second: an ACK loop
    // or a blind attacker. Linux answers one per tcp_invalid_ratelimit.
    for i in 0..2000u64 {
        f.now = i * MS / 2;
        let mut stale = f.ack_from_peer(0, 0);
        stale.seq = IRS.wrapping_sub(100_000);
        f.input(stale, b"");
        acks += f.transmit().len();
    }
    assert_eq!(acks, 2, "one at 0 ms, one at 500 ms");
    let counts = f.limits.counts();
    assert_eq!(counts.out_of_window_sent, 2);
    assert_eq!(counts.out_of_window_limited, 1998);
    // An old duplicate carrying data (a retransmission whose ACK was lost)
    // still gets its ACK: data cannot be half of an ACK loop.
    let mut old_data = f.ack_from_peer(0, 0);
    old_data.seq = IRS.wrapping_sub(100);
    f.input(old_data, b"old");
    assert_eq!(rel_ack(&f.transmit_one()), 0);
    // So does an in-window segment: the limit is for refused ones only.
    f.input(f.ack_from_peer(0, 0), b"new");
    f.advance_to(f.now + 40 * MS);
    assert_eq!(rel_ack(&f.transmit_one()), 3);
}

#[test]
fn challenge_acks_are_limited_per_connection_and_by_a_random_worker_budget() {
    // RFC 5961 section 7: 3,000 connections of one worker each get two
    // in-window RSTs within one second.
    let mut worker = AckLimiter::new(1000, [7; 16]);
    let mut sent = 0u64;
    for _ in 0..3000 {
        let mut f = Fixture::established();
        std::mem::swap(&mut f.limits, &mut worker);
        f.now = 100 * MS;
        f.input(peer(RST, IRS + 100, 0), b"");
        f.input(peer(RST, IRS + 200, 0), b"");
        let out = f.transmit();
        assert!(out.len() <= 1);
        sent += out.len() as u64;
        assert_eq!(f.conn.state(), State::Established);
        std::mem::swap(&mut f.limits, &mut worker);
    }
    // Each second's budget is drawn in [500, 1500): never all 3,000, never
    // a fixed count an attacker could subtract from.
    assert!((500..1500).contains(&sent), "{sent} challenge ACKs");
    let counts = worker.counts();
    assert_eq!(counts.challenge_sent, sent);
    assert_eq!(counts.challenge_sent + counts.challenge_limited, 6000);
    // The next second brings a new budget.
    let mut f = Fixture::established();
    std::mem::swap(&mut f.limits, &mut worker);
    f.now = 1_100 * MS;
    f.input(peer(RST, IRS + 100, 0), b"");
    assert_eq!(f.transmit_one().header.flags, ACK);
}

#[test]
fn junk_in_syn_received_draws_few_syn_acks_and_does_not_prolong_the_half_open() {
    let mut cfg = config();
    cfg.max_syn_retransmits = 2;
    let mut f = Fixture::accepted_with(peer_syn(), cfg);
    f.transmit_one();
    let (mut syn_acks, mut resets, mut junk, mut bad_acks) = (0, 0, 0, 0);
    let mut t = 0;
    // Junk every 10 ms: segments out of the window, ACKs of nothing we
    // sent, repeated SYNs, RSTs off the mark.
    while f.conn.state() == State::SynReceived && t < 20_000 * MS {
        t += 10 * MS;
        f.advance_to(t);
        if f.conn.state() == State::Closed {
            break;
        }
        let segment = match junk % 4 {
            0 => peer(ACK, IRS.wrapping_add(1_000_000), ISS.wrapping_add(1)),
            1 => peer(ACK, IRS + 1, ISS.wrapping_add(5000)),
            2 => peer_syn(),
            _ => peer(RST, IRS + 100, 0),
        };
        assert_eq!(
            f.conn.is_bad_ack_in_handshake(&segment),
            junk % 4 == 1,
            "the table answers only the bad ACK, with a RST"
        );
        if f.conn.is_bad_ack_in_handshake(&segment) {
            bad_acks += 1;
        }
        f.input(segment, b"");
        junk += 1;
        for (segment, _) in f.transmit() {
            if segment.header.flags.contains(RST) {
                resets += 1;
            } else {
                assert_eq!(segment.header.flags, SYN | ACK);
                syn_acks += 1;
            }
        }
    }
    // The SYN-ACK timer alone decides: resent at 1 s and 3 s, given up at
    // 7 s, whatever the junk.
    assert_eq!(f.conn.state(), State::Closed, "still half-open at {t}");
    assert!(t <= 7_000 * MS + 10 * MS, "lived until {} ms", t / MS);
    assert!(f.conn.take_events().contains(Events::TIMED_OUT));
    assert_eq!(resets, 0, "an expired half-open sends no RST");
    // Two retransmissions plus at most one answer per 500 ms.
    assert!(
        syn_acks <= 2 + 15,
        "{syn_acks} SYN-ACKs for {junk} junk segments"
    );
    let counts = f.limits.counts();
    assert_eq!(
        counts.out_of_window_sent
            + counts.out_of_window_limited
            + counts.challenge_sent
            + counts.challenge_limited,
        junk - bad_acks,
        "every junk segment but the bad ACKs (the table's RSTs) is counted: {counts:?}"
    );
}

#[test]
fn an_expired_half_open_connection_ends_silently() {
    let mut f = Fixture::accepted_with(peer_syn(), config());
    f.transmit_one();
    let mut sent = Vec::new();
    while f.conn.state() != State::Closed {
        f.fire_next_timer();
        sent.extend(f.transmit().into_iter().map(|(s, _)| s.header.flags));
    }
    assert_eq!(sent, vec![SYN | ACK; 6], "six retransmissions, no RST");
    let events = f.conn.take_events();
    assert!(events.contains(Events::RESET | Events::TIMED_OUT));
}

#[test]
fn a_lost_tail_gets_one_probe_after_two_rtts_and_its_sack_starts_recovery() {
    let mut f = established_after(20 * MS);
    let mss = u32::from(f.conn.mss()) - 12;
    let data = vec![9u8; 3 * mss as usize];
    f.conn.send(&data, &mut f.pool).unwrap();
    let sent_at = f.now;
    assert_eq!(f.transmit().len(), 3);
    // The whole flight is lost. PTO = 2*SRTT + 2 ms, long before the RTO.
    assert_eq!(f.conn.poll_timeout(), Some(sent_at + 42 * MS));
    f.fire_next_timer();
    assert!(f.conn.take_events().contains(Events::TAIL_LOSS_PROBE));
    let probe = f.transmit_one();
    assert!(probe.retransmission, "no new data: the last segment again");
    assert_eq!(rel_seq(&probe), 2 * mss);
    assert_eq!(probe.payload_len, mss);
    // The probe arrives and is SACKed: what was sent before it is lost,
    // and recovery resends it at once.
    f.now += 20 * MS;
    let base = ISS.wrapping_add(1);
    let mut sack = f.ack_from_peer(0, 0);
    sack.options.sack_blocks[0] = (base.wrapping_add(2 * mss), base.wrapping_add(3 * mss));
    sack.options.sack_count = 1;
    f.input(sack, b"");
    let resent: Vec<u32> = f.transmit().iter().map(|(s, _)| rel_seq(s)).collect();
    assert_eq!(resent, vec![0, mss], "both holes, before any RTO");
    assert!(!f
        .conn
        .take_events()
        .contains(Events::RETRANSMISSION_TIMEOUT));
}

#[test]
fn one_probe_per_tail_then_the_rto() {
    let mut f = established_after(20 * MS);
    f.conn.send(b"lonely", &mut f.pool).unwrap();
    let sent_at = f.now;
    f.transmit_one();
    // One segment in flight: the peer may delay its ACK, PTO waits for it
    // (2*SRTT + 200 ms), but never longer than the RTO (200 ms here).
    assert_eq!(f.conn.poll_timeout(), Some(sent_at + 200 * MS));
    f.fire_next_timer();
    assert!(f.conn.take_events().contains(Events::TAIL_LOSS_PROBE));
    assert_eq!(f.transmit_one().payload_len, 6);
    // The probe is lost too: the next timer is the RTO, not a second probe.
    f.fire_next_timer();
    let events = f.conn.take_events();
    assert!(events.contains(Events::RETRANSMISSION_TIMEOUT));
    assert!(!events.contains(Events::TAIL_LOSS_PROBE));
    assert_eq!(f.transmit_one().payload_len, 6);
}

#[test]
fn no_probe_without_sack_or_when_turned_off() {
    for (sack, tlp) in [(false, true), (true, false)] {
        let mut cfg = config();
        cfg.sack = sack;
        cfg.tail_loss_probe = tlp;
        let mut f = Fixture::accepted_with(peer_syn(), cfg);
        f.transmit_one();
        f.now = 20 * MS;
        f.input(f.ack_from_peer(0, 0), b"");
        f.conn.send(b"data", &mut f.pool).unwrap();
        f.transmit_one();
        f.fire_next_timer();
        let events = f.conn.take_events();
        assert!(
            events.contains(Events::RETRANSMISSION_TIMEOUT),
            "sack {sack} tlp {tlp}"
        );
    }
}

/// The compact TIME-WAIT record answers every segment as the connection in
/// TIME-WAIT does: the same ACK byte for byte, the same restarts of the
/// wait, the same end on a RST, the same verdict on a new SYN (RFC 6191).
/// Random segments around both sequence spaces and the timestamp.
#[test]
fn the_time_wait_record_answers_every_segment_as_the_connection_did() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut compared = 0;
    for round in 0..400 {
        let mut f = in_time_wait(round % 2 == 1, round % 3 != 2);
        let mut record = f.conn.time_wait(&f.config).expect("in TIME-WAIT");
        // The worker's limiter as the connection's, from here on fed the
        // same refusals: both must answer alike.
        let mut record_limits = f.limits.clone();
        let mut expiry = f.conn.poll_timeout().expect("the 2*MSL timer");
        for _ in 0..100 {
            f.now += next(40) * MS;
            let mut flags = TcpFlags::empty();
            for (bit, odds) in [
                (ACK, 85),
                (FIN, 30),
                (SYN, 8),
                (RST, 12),
                (TcpFlags::PSH, 20),
            ] {
                if next(100) < odds {
                    flags |= bit;
                }
            }
            let near = |d: u64, base: u32| -> u32 {
                match d {
                    0 => base,
                    1 => base.wrapping_sub(1),
                    2 => base.wrapping_add(1),
                    3 => base.wrapping_sub(2),
                    _ => 0,
                }
            };
            let rcv_nxt = record.rcv_nxt.0;
            let seq = match next(8) {
                d @ 0..=3 => near(d, rcv_nxt),
                4 => rcv_nxt.wrapping_add(next(70_000) as u32),
                5 => rcv_nxt.wrapping_sub(next(70_000) as u32),
                _ => next(1 << 32) as u32,
            };
            let snd_nxt = record.snd_nxt.0;
            let ack = match next(7) {
                d @ 0..=3 => near(d, snd_nxt),
                4 => snd_nxt.wrapping_sub(next(200_000) as u32),
                _ => next(1 << 32) as u32,
            };
            let mut seg = peer(flags, seq, ack);
            // No wider than the peer's window so far: the record keeps the
            // RFC 5961 ACK floor of its entry, where the connection would
            // lower it for a window the peer widens in TIME-WAIT.
            seg.window = next(513) as u16;
            let recent = record.ts_recent;
            seg.options.timestamps = match next(6) {
                0 => None,
                1 => Some((recent.wrapping_sub(1), 0)),
                2 => Some((recent, 0)),
                3 => Some((recent.wrapping_sub(next(1 << 31) as u32), 0)),
                _ => Some((recent.wrapping_add(next(1000) as u32), 0)),
            };
            let payload = vec![7u8; next(3) as usize];

            let syn_ok = f.conn.accepts_syn_in_time_wait(&seg);
            assert_eq!(record.accepts_syn(&seg), syn_ok, "{seg:?}");
            if syn_ok {
                // The table hands such a SYN to the listener.
                continue;
            }
            f.input(seg, &payload);
            let sent = f.transmit();
            let answer =
                record.handle_segment(&seg, payload.len(), &mut record_limits, &f.config, f.now);
            compared += 1;
            if answer.ack {
                assert_eq!(sent.len(), 1, "{seg:?}: {sent:?}");
                assert_eq!(sent[0].0.header, record.ack(f.now), "{seg:?}");
            } else {
                assert!(sent.is_empty(), "{seg:?}: {sent:?} but {answer:?}");
            }
            if answer.reset {
                assert_eq!(f.conn.state(), State::Closed, "{seg:?}");
                break;
            }
            assert_eq!(f.conn.state(), State::TimeWait, "{seg:?}");
            if answer.restart {
                expiry = f.now + f.config.time_wait_ns;
            }
            assert_eq!(f.conn.poll_timeout(), Some(expiry), "{seg:?}");
            assert_eq!(record.rcv_nxt, f.conn.time_wait(&f.config).unwrap().rcv_nxt);
        }
    }
    assert!(compared > 20_000, "{compared}");
}
