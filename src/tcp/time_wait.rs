//! TIME-WAIT as a compact record (RFC 9293 3.10.7.4 in TIME-WAIT, RFC 7323
//! 5.3 PAWS, RFC 6191 reuse with timestamps), in place of the connection.
//!
//! A connection that enters TIME-WAIT has nothing left to send or to receive:
//! it only answers the peer's retransmitted FIN (or any other stray segment)
//! with the ACK that ends the peer's LAST-ACK, dies on a RST at `RCV.NXT`, and
//! lets a newer SYN open a new incarnation of its 4-tuple. Linux keeps an
//! `inet_timewait_sock` of about 200 bytes for this instead of the socket;
//! the table here likewise gives the whole [`Connection`] slot and its buffers
//! back and keeps a [`TimeWait`] of 44 bytes, made by
//! [`Connection::time_wait`], which answers segments exactly as the
//! connection in TIME-WAIT did (a test replays random segments to both).
//!
//! What it keeps: the 4-tuple, `SND.NXT` and `RCV.NXT` for the ACK, the
//! lower edge of believable ACKs (RFC 5961 5.2), the receive window and the
//! window field as they were at entry, and the timestamp state
//! (`TS.Recent` and our clock's offset) for PAWS and RFC 6191, and when it last
//! answered a refused segment (the same ACK limits as a connection). The expiry
//! lives in the table's timer wheel. What it drops: buffers (their unread
//! bytes, which no callback could reach in TIME-WAIT anyway), the
//! retransmission and congestion state, SACK (nothing is kept out of
//! order), and the service's state word.
//!
//! Two things stay as they were at entry where the connection would have
//! moved them: the lower edge of believable ACKs (a peer that widens its
//! window in TIME-WAIT no longer lowers it: an ACK older than the edge of
//! entry is answered with an ACK rather than taken), and the window field
//! (which only unread bytes, now dropped, kept below the buffer size).
//!
//! PAWS's 24-day idle rule (RFC 7323 5.5) never applies here: TIME-WAIT
//! lasts at most 240 s after the last FIN (`time_wait_ms`).
//!
//! [`Connection`]: super::connection::Connection
//! [`Connection::time_wait`]: super::connection::Connection::time_wait

use crate::wire::{TcpFlags, TcpHeader, TcpOptions};

use super::connection::TcpConfig;
use super::ratelimit::{answer_refused, AckLimiter, Refusal};
use super::{FourTuple, Seq};

/// What a connection in TIME-WAIT still needs to answer for its 4-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWait {
    /// The connection's addresses and ports.
    pub(super) tuple: FourTuple,
    /// SND.NXT: our FIN is acknowledged, so SND.UNA = SND.NXT = SND.MAX; the
    /// sequence number of our ACKs.
    pub(super) snd_nxt: Seq,
    /// RCV.NXT, one past the peer's FIN: what our ACKs acknowledge. Every
    /// ACK sent carries it (RFC 7323's Last.ACK.sent equals it).
    pub(super) rcv_nxt: Seq,
    /// ACKs below this are too old to be believed (RFC 5961 5.2:
    /// `SND.UNA - MAX.SND.WND`).
    pub(super) ack_floor: Seq,
    /// The receive window segments are checked against, from `RCV.NXT`.
    pub(super) rcv_wnd: u32,
    /// The peer's latest timestamp (RFC 7323 TS.Recent).
    pub(super) ts_recent: u32,
    /// Our timestamp clock's offset for this address pair.
    pub(super) ts_offset: u32,
    /// When the last ACK to a refused segment went out (milliseconds plus
    /// one, 0 for none), carried over from the connection: the same
    /// per-connection limit ([`super::ratelimit`]) holds in TIME-WAIT, so a
    /// record cannot be made to answer a flood segment for segment (Linux's
    /// `tcp_timewait_check_oow_rate_limit`).
    pub(super) last_refusal_ack_ms: u32,
    /// The window field of our ACKs (already scaled down).
    pub(super) window: u16,
    /// Timestamps were negotiated.
    pub(super) timestamps: bool,
}

/// What to do about a segment that reached a [`TimeWait`] record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWaitAnswer {
    /// Send [`TimeWait::ack`].
    pub ack: bool,
    /// Start the 2*MSL wait again: the peer resent its FIN (RFC 9293).
    pub restart: bool,
    /// A RST at `RCV.NXT` ended TIME-WAIT (RFC 5961 3.2).
    pub reset: bool,
}

impl TimeWait {
    /// The connection's addresses and ports.
    pub fn tuple(&self) -> &FourTuple {
        &self.tuple
    }

    /// The next sequence number the peer may send (one past its FIN).
    pub fn rcv_nxt(&self) -> Seq {
        self.rcv_nxt
    }

    /// Whether a SYN may open a new incarnation of this 4-tuple (RFC 6191):
    /// with timestamps, if its timestamp is newer than the last one seen;
    /// without, if its sequence number is beyond `RCV.NXT` (RFC 9293).
    pub fn accepts_syn(&self, segment: &TcpHeader) -> bool {
        if !segment.flags.contains(TcpFlags::SYN)
            || segment.flags.intersects(TcpFlags::ACK | TcpFlags::RST)
        {
            return false;
        }
        match (self.timestamps, segment.options.timestamps) {
            (true, Some((tsval, _))) => (tsval.wrapping_sub(self.ts_recent) as i32) > 0,
            _ => Seq(segment.seq) > self.rcv_nxt,
        }
    }

    /// A segment of this 4-tuple arrived (checksum checked; a SYN that
    /// [`TimeWait::accepts_syn`] is the listener's, not this). The steps of
    /// RFC 9293 3.10.7.4 as a connection in TIME-WAIT takes them, with the
    /// same limits on ACKs to refused segments (`limits`: the worker's).
    pub fn handle_segment(
        &mut self,
        seg: &TcpHeader,
        payload_len: usize,
        limits: &mut AckLimiter,
        config: &TcpConfig,
        now: u64,
    ) -> TimeWaitAnswer {
        let mut refused = |this: &mut TimeWait, why: Refusal| -> bool {
            answer_refused(
                &mut this.last_refusal_ack_ms,
                why,
                seg,
                payload_len,
                limits,
                config.invalid_ack_interval_ns,
                now,
            )
        };
        let flags = seg.flags;
        let seq = Seq(seg.seq);
        let rst = flags.contains(TcpFlags::RST);

        // RFC 7323 5.3: PAWS. An old duplicate is acknowledged and dropped.
        if self.timestamps && !rst {
            if let Some((tsval, _)) = seg.options.timestamps {
                if (tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    return TimeWaitAnswer {
                        ack: refused(self, Refusal::OutOfWindow),
                        ..TimeWaitAnswer::default()
                    };
                }
            }
        }

        // First: is the segment in the window?
        let mut seg_len = payload_len as u32;
        if flags.contains(TcpFlags::SYN) {
            seg_len += 1;
        }
        if flags.contains(TcpFlags::FIN) {
            seg_len += 1;
        }
        let (start, window) = (self.rcv_nxt, self.rcv_wnd);
        let acceptable = match (seg_len, window) {
            (0, 0) => seq == start,
            (0, _) => seq.in_range(start, start + window),
            (_, 0) => false,
            (_, _) => {
                seq.in_range(start, start + window)
                    || (seq + (seg_len - 1)).in_range(start, start + window)
            }
        };
        if !acceptable {
            // An old duplicate, most often the peer's FIN again because our
            // last ACK was lost: acknowledge it and wait 2*MSL anew.
            return TimeWaitAnswer {
                ack: !rst && refused(self, Refusal::OutOfWindow),
                restart: flags.contains(TcpFlags::FIN),
                reset: false,
            };
        }

        // Second: RST, only at exactly RCV.NXT; elsewhere a challenge ACK.
        if rst {
            return if seq == self.rcv_nxt {
                TimeWaitAnswer {
                    reset: true,
                    ..TimeWaitAnswer::default()
                }
            } else {
                TimeWaitAnswer {
                    ack: refused(self, Refusal::Challenge),
                    ..TimeWaitAnswer::default()
                }
            };
        }

        // Timestamps: remember the peer's latest (RFC 7323 4.3).
        if self.timestamps {
            if let Some((tsval, _)) = seg.options.timestamps {
                if seq <= self.rcv_nxt && (tsval.wrapping_sub(self.ts_recent) as i32) >= 0 {
                    self.ts_recent = tsval;
                }
            }
        }

        // Fourth: a SYN in a synchronized state: challenge ACK (RFC 5961 4.2).
        if flags.contains(TcpFlags::SYN) {
            return TimeWaitAnswer {
                ack: refused(self, Refusal::Challenge),
                ..TimeWaitAnswer::default()
            };
        }

        // Fifth: ACK. Nothing of ours is unacknowledged; an ACK beyond what
        // we sent or too old is answered and dropped.
        if !flags.contains(TcpFlags::ACK) {
            return TimeWaitAnswer::default();
        }
        let ack = Seq(seg.ack);
        if ack > self.snd_nxt || ack < self.ack_floor {
            return TimeWaitAnswer {
                ack: refused(self, Refusal::Challenge),
                ..TimeWaitAnswer::default()
            };
        }

        // Seventh: text after the peer's FIN is acknowledged, not kept.
        let mut answer = TimeWaitAnswer {
            ack: payload_len > 0,
            ..TimeWaitAnswer::default()
        };
        // Eighth: FIN. One at RCV.NXT is taken as the connection took it
        // (RCV.NXT moves past it); a retransmitted one restarts the wait.
        if flags.contains(TcpFlags::FIN) {
            answer.ack = true;
            if seq + payload_len as u32 == self.rcv_nxt {
                self.rcv_nxt += 1;
            } else {
                answer.restart = true;
            }
        }
        answer
    }

    /// Our ACK at `now`: `<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>`, with our
    /// timestamp and the peer's latest if timestamps were negotiated.
    pub fn ack(&self, now: u64) -> TcpHeader {
        let mut options = TcpOptions::default();
        if self.timestamps {
            options.timestamps = Some((
                super::connection::timestamp_clock(now, self.ts_offset),
                self.ts_recent,
            ));
        }
        TcpHeader {
            src_port: self.tuple.local_port,
            dst_port: self.tuple.remote_port,
            seq: self.snd_nxt.0,
            ack: self.rcv_nxt.0,
            flags: TcpFlags::ACK,
            window: self.window,
            urgent: 0,
            options,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The record in the table: a connection that enters TIME-WAIT gives its
    //! slot and buffers back, and the record answers for it.

    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::ServiceId;
    use crate::counters::WorkerCounters;
    use crate::service::Services;
    use crate::tcp::connection::{Connection, State, TcpConfig};
    use crate::tcp::cookie::Secrets;
    use crate::tcp::table::{random_hasher, Input, Outgoing, TableConfig, TcpTable};
    use crate::wire::EthernetAddress;

    const MS: u64 = 1_000_000;
    const SECOND: u64 = 1_000 * MS;
    const TIME_WAIT: u64 = 60 * SECOND;
    /// The peer's ISN, near the wrap.
    const IRS: u32 = u32::MAX - 10;
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local_ip: Ipv4Addr::new(198, 18, 0, 2),
            local_port: 80,
            remote_ip: Ipv4Addr::new(198, 18, 0, 1),
            remote_port: port,
        }
    }

    /// A peer's segment with timestamp `tsval` (none if 0).
    fn segment(port: u16, flags: TcpFlags, seq: u32, ack: u32, tsval: u32) -> TcpHeader {
        TcpHeader {
            src_port: port,
            dst_port: 80,
            seq,
            ack,
            flags,
            window: 1024,
            urgent: 0,
            options: TcpOptions {
                timestamps: (tsval != 0).then_some((tsval, 0)),
                ..TcpOptions::default()
            },
        }
    }

    struct Bench {
        table: TcpTable,
        services: Services,
        counters: WorkerCounters,
        now: u64,
    }

    /// What one peer's connection looks like once it is in TIME-WAIT.
    struct Closed {
        port: u16,
        /// Our SND.NXT (past our FIN).
        our_next: u32,
        /// The peer's next sequence number (past its FIN).
        peer_next: u32,
    }

    impl Bench {
        fn new(max_time_wait: usize) -> Bench {
            let config = TableConfig {
                tcp: TcpConfig {
                    buffer_size: 64 * 1024,
                    time_wait_ns: TIME_WAIT,
                    ..TcpConfig::default()
                },
                max_time_wait,
                ..TableConfig::default()
            };
            Bench {
                table: TcpTable::new(config, Secrets::from_key([7; 32]), random_hasher(), 0),
                services: Services::builtin(crate::service::http::DEFAULT_BODY),
                counters: WorkerCounters::default(),
                now: 0,
            }
        }

        /// Hand `header` to the table (to the http listener if no
        /// connection has it); returns what the table sent.
        fn send(&mut self, header: TcpHeader, payload: &[u8]) -> Vec<TcpHeader> {
            self.send_sized(header, payload)
                .into_iter()
                .map(|(h, _)| h)
                .collect()
        }

        /// As [`Bench::send`], with each segment's payload length.
        fn send_sized(&mut self, header: TcpHeader, payload: &[u8]) -> Vec<(TcpHeader, usize)> {
            let t = tuple(header.src_port);
            let mut sent = Vec::new();
            let mut out = |o: Outgoing<'_>| {
                assert_eq!(*o.tuple, t);
                assert_eq!(o.peer_mac, PEER_MAC);
                sent.push((*o.header, o.payload.0.len() + o.payload.1.len()));
            };
            let (services, counters) = (&mut self.services, &self.counters);
            let taken = self
                .table
                .input(&t, &header, payload, services, counters, self.now, &mut out);
            if taken == Input::NoConnection {
                self.table.listen(
                    &t,
                    PEER_MAC,
                    &header,
                    payload,
                    ServiceId::HTTP,
                    services,
                    counters,
                    self.now,
                    &mut out,
                );
            }
            sent
        }

        fn poll(&mut self, at: u64) -> Vec<TcpHeader> {
            self.now = at;
            let mut sent = Vec::new();
            self.table.poll(
                &mut self.services,
                &self.counters,
                at,
                &mut |o: Outgoing<'_>| sent.push(*o.header),
            );
            sent
        }

        /// A connection from `port` with timestamps from `ts`: the request
        /// asks the server to close, so ours is the active close and the
        /// server's side ends in TIME-WAIT.
        fn close_in_time_wait(&mut self, port: u16, ts: u32) -> Closed {
            // The peer's k-th timestamp (none at all if `ts` is 0).
            let ts = |k: u32| if ts == 0 { 0 } else { ts + k };
            let mut syn = segment(port, TcpFlags::SYN, IRS, 0, ts(0));
            syn.options.window_scale = Some(7);
            let syn_ack = self.send(syn, b"");
            assert_eq!(syn_ack.len(), 1);
            let iss = syn_ack[0].seq;
            let data = TcpFlags::ACK | TcpFlags::PSH;
            let request = segment(port, data, IRS.wrapping_add(1), iss.wrapping_add(1), ts(1));
            let mut our_next = iss.wrapping_add(1);
            for (h, len) in self.send_sized(request, REQUEST) {
                // The response, then (or with it) our FIN.
                if h.flags.contains(TcpFlags::FIN) {
                    our_next = h.seq.wrapping_add(len as u32 + 1);
                }
            }
            assert_ne!(our_next, iss.wrapping_add(1), "the server closed");
            let peer_fin = IRS.wrapping_add(1).wrapping_add(REQUEST.len() as u32);
            let fin = segment(
                port,
                TcpFlags::FIN | TcpFlags::ACK,
                peer_fin,
                our_next,
                ts(2),
            );
            let last_ack = self.send(fin, b"");
            assert_eq!(last_ack.len(), 1, "{last_ack:?}");
            assert_eq!(last_ack[0].ack, peer_fin.wrapping_add(1));
            Closed {
                port,
                our_next,
                peer_next: peer_fin.wrapping_add(1),
            }
        }
    }

    #[test]
    fn a_time_wait_record_is_small() {
        let record = std::mem::size_of::<TimeWait>();
        let slot = TcpTable::TIME_WAIT_SLOT_BYTES;
        let connection = std::mem::size_of::<Connection>();
        assert!(record <= 44, "TimeWait is {record} bytes");
        assert!(slot <= 64, "a TIME-WAIT slot is {slot} bytes");
        assert!(
            slot * 5 <= connection,
            "a TIME-WAIT slot ({slot} bytes) is not a fifth of a connection ({connection})"
        );
    }

    #[test]
    fn entering_time_wait_gives_back_the_connection_slot_and_its_buffers() {
        let mut b = Bench::new(1024);
        let c = b.close_in_time_wait(40000, 100);
        let t = tuple(c.port);
        assert_eq!(b.table.state_of(&t), Some(State::TimeWait));
        assert!(
            b.table.connection(&t).is_none(),
            "the connection left its slot"
        );
        let record = b.table.time_wait_of(&t).expect("a TIME-WAIT record");
        assert_eq!(record.rcv_nxt(), Seq(c.peer_next));
        assert_eq!(
            b.table.pool().in_use_bytes(),
            0,
            "no buffer held in TIME-WAIT"
        );
        assert_eq!((b.table.len(), b.table.time_wait_len()), (1, 1));
        // TIME-WAIT counts as an active connection, as it did.
        assert_eq!(b.counters.tcp_active.get(), 1);
        assert_eq!(b.counters.tcp_time_wait.get(), 1);
        assert_eq!(
            b.counters.tcp_closed.get(),
            1,
            "closed for its service as it enters TIME-WAIT, as a Linux socket"
        );
    }

    #[test]
    fn a_retransmitted_fin_is_acknowledged_again_and_restarts_the_wait() {
        let mut b = Bench::new(1024);
        let c = b.close_in_time_wait(40000, 100);
        let t = tuple(c.port);
        assert!(b.table.time_wait_of(&t).is_some(), "a compact record");
        b.now = 30 * SECOND;
        let fin = segment(
            c.port,
            TcpFlags::FIN | TcpFlags::ACK,
            c.peer_next.wrapping_sub(1),
            c.our_next,
            103,
        );
        let sent = b.send(fin, b"");
        assert_eq!(sent.len(), 1, "{sent:?}");
        let ack = sent[0];
        assert_eq!(ack.flags, TcpFlags::ACK);
        assert_eq!((ack.seq, ack.ack), (c.our_next, c.peer_next));
        assert_eq!(ack.options.timestamps.map(|t| t.1), Some(102), "TS.Recent");
        assert!(ack.window > 0);
        // The first expiry passes: the wait started again at 30 s.
        assert!(b.poll(TIME_WAIT + SECOND).is_empty());
        assert_eq!(b.table.state_of(&t), Some(State::TimeWait));
        assert!(b.poll(30 * SECOND + TIME_WAIT).is_empty());
        assert_eq!(b.table.state_of(&t), None, "expired");
        assert_eq!(b.table.len(), 0);
        assert_eq!(b.counters.tcp_closed.get(), 1);
        assert_eq!(b.counters.tcp_active.get(), 0);
        assert_eq!(b.counters.tcp_time_wait.get(), 0);
        // Gone: the listener's RST answers now.
        let sent = b.send(fin, b"");
        assert_eq!(sent.len(), 1);
        assert!(sent[0].flags.contains(TcpFlags::RST));
    }

    #[test]
    fn expiry_ends_time_wait_after_time_wait_ms() {
        let mut b = Bench::new(1024);
        let c = b.close_in_time_wait(40000, 100);
        let t = tuple(c.port);
        assert!(b.table.time_wait_of(&t).is_some(), "a compact record");
        b.poll(TIME_WAIT - MS);
        assert_eq!(b.table.state_of(&t), Some(State::TimeWait));
        b.poll(TIME_WAIT);
        assert_eq!(b.table.state_of(&t), None);
        assert_eq!(b.counters.tcp_closed.get(), 1);
    }

    #[test]
    fn paws_refuses_an_old_syn_and_rfc_6191_takes_a_newer_one() {
        let mut b = Bench::new(1024);
        let c = b.close_in_time_wait(40000, 100);
        let t = tuple(c.port);
        assert!(b.table.time_wait_of(&t).is_some(), "a compact record");
        b.now = SECOND;
        // An old duplicate (older timestamp, higher sequence number): PAWS
        // drops it with an ACK.
        let old = segment(c.port, TcpFlags::SYN, c.peer_next.wrapping_add(1000), 0, 90);
        let sent = b.send(old, b"");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].flags, TcpFlags::ACK);
        assert_eq!((sent[0].seq, sent[0].ack), (c.our_next, c.peer_next));
        assert_eq!(b.table.state_of(&t), Some(State::TimeWait));
        // A new incarnation with a newer timestamp, even at a lower sequence
        // number: the record ends and the listener answers.
        let new = segment(c.port, TcpFlags::SYN, 5, 0, 500);
        let sent = b.send(new, b"");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(sent[0].ack, 6);
        assert_eq!(b.table.state_of(&t), Some(State::SynReceived));
        assert_eq!(b.table.time_wait_len(), 0);
        assert_eq!(
            b.counters.tcp_closed.get(),
            1,
            "the old incarnation ended in order"
        );
        assert_eq!(b.counters.tcp_active.get(), 1);
    }

    #[test]
    fn without_timestamps_a_syn_must_be_beyond_rcv_nxt() {
        let mut b = Bench::new(1024);
        let c = b.close_in_time_wait(40000, 0);
        let t = tuple(c.port);
        assert!(b.table.time_wait_of(&t).is_some(), "a compact record");
        let below = segment(c.port, TcpFlags::SYN, c.peer_next.wrapping_sub(5), 0, 0);
        let sent = b.send(below, b"");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].flags, TcpFlags::ACK);
        assert_eq!(sent[0].options.timestamps, None);
        assert_eq!(b.table.state_of(&t), Some(State::TimeWait));
        let beyond = segment(
            c.port,
            TcpFlags::SYN,
            c.peer_next.wrapping_add(70_000),
            0,
            0,
        );
        let sent = b.send(beyond, b"");
        assert_eq!(sent[0].flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(b.table.state_of(&t), Some(State::SynReceived));
    }

    #[test]
    fn a_rst_at_rcv_nxt_ends_time_wait_and_one_elsewhere_is_challenged() {
        let mut b = Bench::new(1024);
        let c = b.close_in_time_wait(40000, 100);
        let t = tuple(c.port);
        assert!(b.table.time_wait_of(&t).is_some(), "a compact record");
        let off = segment(c.port, TcpFlags::RST, c.peer_next.wrapping_add(10), 0, 0);
        let sent = b.send(off, b"");
        assert_eq!(sent.len(), 1, "a challenge ACK");
        assert_eq!((sent[0].flags, sent[0].ack), (TcpFlags::ACK, c.peer_next));
        assert_eq!(b.table.state_of(&t), Some(State::TimeWait));
        let exact = segment(c.port, TcpFlags::RST, c.peer_next, 0, 0);
        assert!(b.send(exact, b"").is_empty());
        assert_eq!(b.table.state_of(&t), None);
        assert_eq!(b.counters.tcp_resets_rx.get(), 1);
        // Closed (in order) when it entered TIME-WAIT, not again.
        assert_eq!(b.counters.tcp_closed.get(), 1);
        assert_eq!(b.counters.tcp_active.get(), 0);
        // Its timer went with it: nothing fires later.
        assert!(b.poll(2 * TIME_WAIT).is_empty());
        assert_eq!(b.counters.tcp_closed.get(), 1);
    }

    #[test]
    fn beyond_max_time_wait_a_connection_skips_time_wait_counted() {
        let mut b = Bench::new(2);
        for port in 40000..40005 {
            b.close_in_time_wait(port, 100);
        }
        assert_eq!(b.table.time_wait_len(), 2);
        assert_eq!(b.table.len(), 2);
        assert_eq!(b.counters.tcp_time_wait_overflow.get(), 3);
        assert_eq!(b.counters.tcp_closed.get(), 5, "they all ended in order");
        assert_eq!(b.counters.tcp_active.get(), 2);
        assert_eq!(b.table.state_of(&tuple(40000)), Some(State::TimeWait));
        assert_eq!(b.table.state_of(&tuple(40004)), None);
        assert_eq!(b.table.pool().in_use_bytes(), 0);
        // Room again once they expire.
        b.poll(TIME_WAIT);
        assert_eq!(b.table.len(), 0);
        b.close_in_time_wait(40009, 100);
        assert_eq!(b.table.time_wait_len(), 1);
    }

    #[test]
    fn time_wait_records_do_not_count_against_max_connections() {
        let mut b = Bench::new(1024);
        b.table = TcpTable::new(
            TableConfig {
                max_connections: 1,
                max_time_wait: 8,
                ..TableConfig::default()
            },
            Secrets::from_key([7; 32]),
            random_hasher(),
            0,
        );
        for port in 40000..40004 {
            b.close_in_time_wait(port, 100);
        }
        assert_eq!(b.table.time_wait_len(), 4);
        assert_eq!(
            b.counters
                .drops_of(crate::counters::DropReason::ConnectionLimit),
            0
        );
    }
}
