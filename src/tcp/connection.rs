//! One TCP connection: the RFC 9293 state machine, sans-IO.
//!
//! A [`Connection`] is driven by three calls and read through two:
//!
//! - [`Connection::handle_segment`]`(header, payload, now)`: a segment of this
//!   connection arrived (the table matched its 4-tuple and checked its checksum);
//! - [`Connection::handle_timeout`]`(now)`: the deadline of
//!   [`Connection::poll_timeout`] passed;
//! - the application calls: [`Connection::send`], [`Connection::consume`],
//!   [`Connection::close`], [`Connection::abort`];
//! - [`Connection::poll_transmit`]`(now)` yields the next segment to send, until
//!   `None`; its payload bytes are read with [`Connection::segment_payload`];
//! - [`Connection::take_events`] reports what the application should hear about.
//!
//! It never reads a clock, a socket or a device: time is a `u64` of nanoseconds
//! passed in, and buffer storage comes from the caller's [`BufferPool`].
//!
//! What is implemented, by RFC:
//! - RFC 9293: the states (simultaneous open and close included), segment
//!   acceptability, the receive and send windows with SWS avoidance on both
//!   sides (3.8.6.2), Nagle (off by default), zero-window probing (3.8.6.1),
//!   TIME-WAIT with a configurable duration, keepalive (3.8.4).
//! - RFC 5961: RST only at exactly `RCV.NXT`, otherwise a challenge ACK; a SYN
//!   in a synchronized state gets a challenge ACK; ACKs outside
//!   `[SND.UNA - MAX.SND.WND, SND.NXT]` are dropped with an ACK.
//! - RFC 7323: window scaling, timestamps with PAWS.
//! - RFC 2018 / RFC 6675: SACK blocks on our ACKs; SACK-based loss recovery.
//! - RFC 6298 with Karn's rule (one timed segment per round trip, none while
//!   retransmitting); exponential backoff.
//! - RFC 5681 / RFC 6582: fast retransmit and NewReno fast recovery when the
//!   peer does not do SACK; NewReno or CUBIC (RFC 9438) congestion avoidance.
//! - RFC 1122 4.2.3.2: delayed ACKs, at least every second full-sized segment.
//! - RFC 8985 section 7: tail loss probes (TLP), for connections with SACK,
//!   as Linux sends them; of RACK (section 6) only the verdict a probe's
//!   SACK gives: what was sent before it and is not SACKed is lost.
//! - RFC 5961 section 7 and Linux's `tcp_invalid_ratelimit`: the ACKs that
//!   refused segments call for are rate-limited ([`super::ratelimit`]).
//!
//! Sequence space of our side: `iss` is our SYN; data byte `i` of the send
//! buffer is at `snd_una + i` once the SYN is acknowledged (data is only sent
//! in synchronized states); our FIN, once queued by [`Connection::close`], sits
//! at `snd_una + send_buffer.len()`.

use crate::wire::{TcpFlags, TcpHeader, TcpOptions};

use super::assembler::Assembler;
use super::buffer::{BufferPool, RingBuffer};
use super::congestion::{Algorithm, Congestion};
use super::ratelimit::{answer_refused, AckLimiter, Refusal};
use super::rtt::{RtoConfig, RttEstimator};
use super::scoreboard::Scoreboard;
use super::time_wait::TimeWait;
use super::{FourTuple, Seq};

/// The connection states of RFC 9293 section 3.3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection (also: after a reset or a timeout).
    Closed,
    /// Waiting for a connection request (listeners are kept by the table; a
    /// connection is never in this state).
    Listen,
    /// Our SYN is sent; waiting for the peer's SYN.
    SynSent,
    /// Both SYNs seen; waiting for the ACK of ours.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We closed; our FIN is queued or sent, not yet acknowledged.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's.
    FinWait2,
    /// The peer closed; waiting for our application to close.
    CloseWait,
    /// Both closed at once; waiting for the ACK of our FIN.
    Closing,
    /// The peer closed first, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both FINs acknowledged; lingering so that stray segments die.
    TimeWait,
}

impl State {
    /// The RFC's name of the state.
    pub const fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }

    /// Whether the three-way handshake completed (RFC 9293: "synchronized").
    pub const fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// Whether the peer may still send us data.
    const fn can_receive(self) -> bool {
        matches!(
            self,
            State::SynReceived | State::Established | State::FinWait1 | State::FinWait2
        )
    }
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Keepalive probing (RFC 9293 3.8.4), off unless configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle_ns: u64,
    /// Time between unanswered probes.
    pub interval_ns: u64,
    /// Unanswered probes after which the connection is reset.
    pub probes: u8,
}

/// The parameters of every connection of a worker.
#[derive(Clone, Copy, Debug)]
pub struct TcpConfig {
    /// The MSS we announce: the largest payload we accept, MTU minus 40.
    pub mss: u16,
    /// Bytes of each send and receive buffer (the pool's buffer size).
    pub buffer_size: u32,
    /// Congestion control.
    pub congestion: Algorithm,
    /// Nagle's algorithm (RFC 9293 3.7.4): hold small segments while data is
    /// unacknowledged. Off by default, as services write whole messages.
    pub nagle: bool,
    /// How long an ACK may be delayed (RFC 1122 allows up to 500 ms; Linux's
    /// floor is 40 ms).
    pub delayed_ack_ns: u64,
    /// How long a connection stays in TIME-WAIT (2*MSL; Linux uses 60 s).
    pub time_wait_ns: u64,
    /// How long FIN-WAIT-2 waits for the peer's FIN once our application has
    /// closed (Linux's `tcp_fin_timeout`, 60 s).
    pub fin_wait2_ns: u64,
    /// The retransmission timer's bounds.
    pub rto: RtoConfig,
    /// Retransmissions of data before the connection is reset (Linux's
    /// `tcp_retries2`, 15).
    pub max_retransmits: u8,
    /// Retransmissions of a SYN or SYN-ACK before giving up (Linux: 6 and 5).
    pub max_syn_retransmits: u8,
    /// Keepalive probing, if any.
    pub keepalive: Option<Keepalive>,
    /// Offer and accept RFC 7323 timestamps.
    pub timestamps: bool,
    /// Offer and accept SACK.
    pub sack: bool,
    /// Offer and accept window scaling.
    pub window_scaling: bool,
    /// Send tail loss probes (RFC 8985 section 7) on connections with SACK.
    pub tail_loss_probe: bool,
    /// At most one ACK per this interval answers refused segments (out of
    /// window, failing PAWS, challenge ACKs) without data (Linux's
    /// `tcp_invalid_ratelimit`, 500 ms).
    pub invalid_ack_interval_ns: u64,
    /// Payload bytes that one outgoing data segment may carry beyond one
    /// MSS (segmentation offload): a segment of up to this many bytes, cut
    /// at MSS multiples, leaves the connection as one [`Segment`] whose
    /// [`Segment::segment_size`] says how the port (TSO) or the stack
    /// splits it into frames. 0 (the default) sends one MSS at a time; the
    /// runtime sets [`GSO_MAX_BYTES`]. Retransmissions stay one MSS.
    pub gso_max: u32,
}

/// The largest payload of one offloaded segment: the frame (14 + 20 + at
/// most 60 bytes of headers and the payload) fits a DPDK mbuf of 65,535
/// bytes less its 128-byte headroom, and so the IPv4 total length too.
pub const GSO_MAX_BYTES: u32 = 65_535 - 128 - 14 - 20 - 60;

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            mss: 1460,
            buffer_size: 256 * 1024,
            congestion: Algorithm::Cubic,
            nagle: false,
            delayed_ack_ns: 40_000_000,
            time_wait_ns: 60_000_000_000,
            fin_wait2_ns: 60_000_000_000,
            rto: RtoConfig::default(),
            max_retransmits: 15,
            max_syn_retransmits: 6,
            keepalive: None,
            timestamps: true,
            sack: true,
            window_scaling: true,
            tail_loss_probe: true,
            invalid_ack_interval_ns: 500_000_000,
            gso_max: 0,
        }
    }
}

impl TcpConfig {
    /// The window scale we announce: the smallest shift that lets the whole
    /// receive buffer be advertised (RFC 7323 2.3, at most 14).
    pub fn window_scale(&self) -> u8 {
        let mut shift = 0u8;
        while shift < 14 && (self.buffer_size >> shift) > u32::from(u16::MAX) {
            shift += 1;
        }
        shift
    }
}

/// What happened on a connection that its application should hear about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events(u16);

impl Events {
    /// The handshake completed.
    pub const ESTABLISHED: Events = Events(0x01);
    /// New bytes are in the receive buffer.
    pub const READABLE: Events = Events(0x02);
    /// Send buffer space was freed.
    pub const WRITABLE: Events = Events(0x04);
    /// The peer sent its FIN: no more bytes will come.
    pub const PEER_CLOSED: Events = Events(0x08);
    /// The connection ended in order (both FINs acknowledged, or TIME-WAIT
    /// expired): it may be forgotten.
    pub const CLOSED: Events = Events(0x10);
    /// The connection ended abruptly: reset by the peer, aborted, or timed out.
    pub const RESET: Events = Events(0x20);
    /// The connection gave up after too many retransmissions or probes.
    pub const TIMED_OUT: Events = Events(0x40);
    /// An RTT sample was taken ([`Connection::last_rtt_sample_ns`]): for
    /// metrics only, no application needs it.
    pub const RTT_SAMPLED: Events = Events(0x80);
    /// The retransmission timer expired and the RTO backed off: for metrics
    /// only.
    pub const RETRANSMISSION_TIMEOUT: Events = Events(0x100);
    /// The probe timeout fired and a tail loss probe goes out (RFC 8985
    /// section 7.3): for metrics only.
    pub const TAIL_LOSS_PROBE: Events = Events(0x200);

    /// No event.
    pub const fn empty() -> Events {
        Events(0)
    }

    /// Whether any event is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every event of `other` is set.
    pub const fn contains(self, other: Events) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether every event set here is also set in `other`.
    pub const fn is_within(self, other: Events) -> bool {
        self.0 & !other.0 == 0
    }

    /// The events set here or in `other`.
    pub const fn union(self, other: Events) -> Events {
        Events(self.0 | other.0)
    }

    /// The events set both here and in `other`.
    pub const fn intersection(self, other: Events) -> Events {
        Events(self.0 & other.0)
    }

    fn insert(&mut self, other: Events) {
        self.0 |= other.0;
    }
}

impl core::ops::BitOr for Events {
    type Output = Events;
    fn bitor(self, other: Events) -> Events {
        Events(self.0 | other.0)
    }
}

/// A segment to send. Its payload is `payload_len` bytes of the send buffer
/// from `payload_offset`, read with [`Connection::segment_payload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The TCP header, options included (checksum left to the caller).
    pub header: TcpHeader,
    /// Offset of the payload in the send buffer.
    pub payload_offset: u32,
    /// Payload length.
    pub payload_len: u32,
    /// The payload of each frame on the wire: the segment is one frame
    /// unless `payload_len` is larger (segmentation offload, see
    /// [`TcpConfig::gso_max`]); then every frame but the last carries this
    /// many bytes, and FIN and PSH go on the last one only.
    pub segment_size: u16,
    /// Whether this segment resends sequence space sent before.
    pub retransmission: bool,
}

/// Why a call from the application was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The connection was closed for sending (by [`Connection::close`]) or is
    /// not open.
    Closed,
    /// No buffer storage: the worker's buffer pool is exhausted.
    NoBuffer,
}

/// "Off" for a deadline.
const NEVER: u64 = u64::MAX;

/// Duplicate ACKs that trigger fast retransmit (RFC 5681 3.2, DupThresh).
const DUP_THRESH: u8 = 3;

/// The MSS assumed when the peer announces none (RFC 9293 3.7.1).
const DEFAULT_PEER_MSS: u16 = 536;

/// PAWS: timestamps older than this are not trusted (RFC 7323 5.5: 24 days).
const PAWS_IDLE_NS: u64 = 24 * 24 * 3600 * 1_000_000_000;

/// The longest a peer delays its ACK of a lone segment, which the probe
/// timeout waits out when one segment is in flight (RFC 8985 7.2,
/// `WCDelAckT`; Linux adds its minimum RTO, also 200 ms).
const MAX_ACK_DELAY_NS: u64 = 200_000_000;

/// What the probe timeout adds to 2*SRTT otherwise (Linux's
/// `TCP_TIMEOUT_MIN`, two ticks).
const PROBE_SLACK_NS: u64 = 2_000_000;

/// Boolean facts about a connection, packed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flags(u32);

impl Flags {
    /// An ACK must go out now.
    const ACK_NOW: u32 = 1 << 0;
    /// Our SYN (or SYN-ACK) must be (re)sent.
    const SEND_SYN: u32 = 1 << 1;
    /// The application closed: a FIN follows the queued data.
    const FIN_QUEUED: u32 = 1 << 2;
    /// Our FIN was acknowledged.
    const FIN_ACKED: u32 = 1 << 3;
    /// A RST must be sent (abort), then the connection is closed.
    const SEND_RST: u32 = 1 << 4;
    /// In loss recovery (fast recovery, SACK-based or NewReno).
    const IN_RECOVERY: u32 = 1 << 5;
    /// Retransmit the first unacknowledged segment next.
    const RETRANSMIT_UNA: u32 = 1 << 6;
    /// Timestamps were negotiated.
    const TIMESTAMPS: u32 = 1 << 7;
    /// SACK was negotiated.
    const SACK: u32 = 1 << 8;
    /// The peer's FIN arrived out of order and waits at `remote_fin`.
    const REMOTE_FIN_PENDING: u32 = 1 << 9;
    /// The persist timer fired: send one byte beyond the zero window.
    const PROBE_WINDOW: u32 = 1 << 10;
    /// Send a keepalive probe.
    const PROBE_KEEPALIVE: u32 = 1 << 11;
    /// An acceptable ACK arrived since the last retransmission timeout.
    const ACKED_SINCE_RTO: u32 = 1 << 12;
    /// Window scaling was negotiated.
    const WINDOW_SCALING: u32 = 1 << 13;
    /// `rto_at` is the probe timeout (RFC 8985 7.2), not the RTO.
    const PTO_ARMED: u32 = 1 << 14;
    /// A tail loss probe is unacknowledged, up to `tlp_end` (RFC 8985:
    /// `TLP.end_seq` is not None).
    const TLP_OUTSTANDING: u32 = 1 << 15;
    /// That probe resent data (RFC 8985 `TLP.is_retrans`).
    const TLP_RETRANS: u32 = 1 << 16;
    /// The probe timeout fired: send the probe.
    const SEND_PROBE: u32 = 1 << 17;
    /// A segment is timed for an RTT sample: `rtt_seq`, `rtt_sent_us`.
    const RTT_TIMED: u32 = 1 << 18;

    fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    fn set(&mut self, bit: u32) {
        self.0 |= bit;
    }

    fn clear(&mut self, bit: u32) {
        self.0 &= !bit;
    }

    fn put(&mut self, bit: u32, on: bool) {
        if on {
            self.set(bit)
        } else {
            self.clear(bit)
        }
    }
}

/// One TCP connection.
///
/// Invariants (checked by `debug_check`):
/// - `snd_una <= snd_nxt <= snd_max`; `snd_max - snd_una` bytes are in flight.
/// - Once our SYN is acknowledged, byte `i` of `send_buffer` is at sequence
///   `snd_una + i`: an ACK of `snd_una + n` removes `n` bytes from it (less
///   one for a FIN it covers).
/// - `rcv_nxt` is the next byte the application will read after every byte of
///   `recv_buffer`; `assembler` holds out-of-order ranges as offsets from it,
///   whose bytes sit in `recv_buffer` beyond its length.
/// - `rcv_adv` (the right edge we advertised) never moves left.
#[derive(Debug)]
pub struct Connection {
    tuple: FourTuple,
    state: State,
    flags: Flags,
    events: Events,
    /// Consecutive retransmission timeouts (or unanswered keepalives).
    retransmits: u8,
    /// Duplicate ACKs in a row.
    dupacks: u8,
    /// Keepalive probes sent without an answer.
    keepalive_probes: u8,
    /// The peer's window scale (shift applied to its window field).
    snd_wscale: u8,
    /// Our window scale.
    rcv_wscale: u8,
    /// Largest payload per segment before options: min(peer's MSS, ours).
    mss: u16,
    /// The receive buffer's size (the configured buffer size).
    recv_limit: u32,

    /// Our initial sequence number.
    iss: Seq,
    /// Oldest unacknowledged sequence number.
    snd_una: Seq,
    /// Next sequence number to send (moves back to `snd_una` after a timeout).
    snd_nxt: Seq,
    /// One past the highest sequence number ever sent.
    snd_max: Seq,
    /// The peer's receive window, in bytes (scaled).
    snd_wnd: u32,
    /// The largest window the peer ever offered (RFC 5961 5.2).
    max_snd_wnd: u32,
    /// Segment sequence number of the last window update (RFC 9293 SND.WL1).
    snd_wl1: Seq,
    /// Segment acknowledgment number of the last window update (SND.WL2).
    snd_wl2: Seq,
    /// End of the loss-recovery episode (RFC 6582 `recover`).
    recover: Seq,
    /// Highest sequence number retransmitted in recovery (RFC 6675 HighRxt).
    high_rxt: Seq,
    /// NewReno fast-recovery inflation (RFC 5681 3.2 step 4): bytes added to
    /// the congestion window for each duplicate ACK in recovery.
    inflation: u32,
    /// `SND.MAX` once the tail loss probe was sent (RFC 8985 `TLP.end_seq`),
    /// valid with `TLP_OUTSTANDING`.
    tlp_end: Seq,
    /// Milliseconds (wrapping) plus one of the last ACK sent in answer to a
    /// refused segment, 0 for none (Linux's `last_oow_ack_time`).
    last_refusal_ack_ms: u32,

    /// The peer's initial sequence number.
    irs: Seq,
    /// Next sequence number expected from the peer.
    rcv_nxt: Seq,
    /// Right edge of the last window we advertised.
    rcv_adv: Seq,
    /// `rcv_nxt` when we last sent an ACK (RFC 7323 Last.ACK.sent).
    last_ack_sent: Seq,
    /// Where the peer's out-of-order FIN sits (valid with REMOTE_FIN_PENDING).
    remote_fin: Seq,
    /// The peer's most recent timestamp (RFC 7323 TS.Recent).
    ts_recent: u32,
    /// Offset added to our timestamp clock (per connection, from the ISS).
    ts_offset: u32,

    /// The timed segment, with `RTT_TIMED`: when the ACK passes this, the
    /// time since `rtt_sent_us` is an RTT sample (Karn: any retransmission
    /// clears `RTT_TIMED`).
    rtt_seq: Seq,
    /// Microseconds (wrapping) of `now` when the timed segment was sent.
    rtt_sent_us: u32,
    rtt: RttEstimator,
    congestion: Congestion,
    scoreboard: Scoreboard,
    assembler: Assembler,
    send_buffer: RingBuffer,
    recv_buffer: RingBuffer,

    /// Retransmission timer (also the SYN timer).
    rto_at: u64,
    /// Delayed-ACK timer.
    delack_at: u64,
    /// TIME-WAIT or FIN-WAIT-2 expiry, the persist timer, or the keepalive
    /// timer, depending on the state.
    aux_at: u64,
    /// When the last segment arrived (keepalive) or was sent (idle restart).
    /// Milliseconds (wrapping) of the last segment received: keepalive,
    /// and PAWS's 24-day rule (RFC 7323 5.5, "idle").
    last_rx_ms: u32,
    /// Milliseconds (wrapping) of the last segment sent: the idle restart.
    last_tx_ms: u32,
}

impl Connection {
    fn blank(tuple: FourTuple, iss: Seq, config: &TcpConfig, now: u64) -> Connection {
        Connection {
            tuple,
            state: State::Closed,
            flags: Flags::default(),
            events: Events::empty(),
            retransmits: 0,
            dupacks: 0,
            keepalive_probes: 0,
            snd_wscale: 0,
            rcv_wscale: 0,
            mss: DEFAULT_PEER_MSS.min(config.mss),
            recv_limit: config.buffer_size,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: Seq(0),
            snd_wl2: iss,
            recover: iss,
            high_rxt: iss,
            inflation: 0,
            tlp_end: iss,
            last_refusal_ack_ms: 0,
            irs: Seq(0),
            rcv_nxt: Seq(0),
            rcv_adv: Seq(0),
            last_ack_sent: Seq(0),
            remote_fin: Seq(0),
            ts_recent: 0,
            ts_offset: iss.0,
            rtt_seq: iss,
            rtt_sent_us: 0,
            rtt: RttEstimator::new(),
            congestion: Congestion::new(config.congestion, u32::from(DEFAULT_PEER_MSS)),
            scoreboard: Scoreboard::new(),
            assembler: Assembler::new(),
            send_buffer: RingBuffer::new(),
            recv_buffer: RingBuffer::new(),
            rto_at: NEVER,
            delack_at: NEVER,
            aux_at: NEVER,
            last_rx_ms: millis(now),
            last_tx_ms: millis(now),
        }
    }

    /// A connection for a SYN that a listener accepted: SYN-RECEIVED, with
    /// our SYN-ACK ready to send. `iss` comes from
    /// [`Secrets::initial_sequence`](super::cookie::Secrets::initial_sequence).
    pub fn accept(
        tuple: FourTuple,
        syn: &TcpHeader,
        iss: Seq,
        config: &TcpConfig,
        now: u64,
    ) -> Connection {
        let mut conn = Connection::blank(tuple, iss, config, now);
        conn.state = State::SynReceived;
        conn.take_peer_syn(syn, config);
        conn.flags.set(Flags::SEND_SYN);
        conn
    }

    /// A connection completed statelessly by a SYN cookie: the ACK `ack`
    /// carried a valid cookie for `options` (decoded by the table), so the
    /// connection starts ESTABLISHED. Timestamps were offered in our SYN-ACK
    /// only if the peer's SYN had them, so their presence on this ACK tells.
    pub fn accept_cookie(
        tuple: FourTuple,
        ack: &TcpHeader,
        options: super::cookie::CookieOptions,
        config: &TcpConfig,
        now: u64,
    ) -> Connection {
        let iss = Seq(ack.ack) - 1u32;
        let mut conn = Connection::blank(tuple, iss, config, now);
        // The SYN as the cookie remembers it, timestamps as the ACK shows.
        let syn = TcpHeader {
            seq: ack.seq.wrapping_sub(1),
            flags: TcpFlags::SYN,
            options: TcpOptions {
                mss: Some(options.mss),
                window_scale: options.window_scale,
                sack_permitted: options.sack_permitted,
                timestamps: ack.options.timestamps,
                ..TcpOptions::default()
            },
            ..*ack
        };
        conn.take_peer_syn(&syn, config);
        conn.snd_max = iss + 1;
        conn.recover = iss + 1;
        conn.high_rxt = iss + 1;
        // This ACK's window is scaled, unlike a SYN's.
        conn.snd_wnd = u32::from(ack.window) << conn.snd_wscale;
        conn.max_snd_wnd = conn.snd_wnd;
        conn.snd_wl1 = Seq(ack.seq);
        conn.establish(Seq(ack.ack), config, now);
        conn
    }

    /// An active open: SYN-SENT, with our SYN ready to send.
    pub fn connect(tuple: FourTuple, iss: Seq, config: &TcpConfig, now: u64) -> Connection {
        let mut conn = Connection::blank(tuple, iss, config, now);
        conn.state = State::SynSent;
        conn.flags.set(Flags::SEND_SYN);
        conn
    }

    /// The SYN-ACK a listener sends statelessly with a SYN cookie `cookie` as
    /// its sequence number, answering `syn`: options mirror what the peer
    /// offered and we allow (timestamps with the address pair's offset
    /// `ts_offset`, which the connection made from the cookie gets again).
    pub fn cookie_syn_ack(
        syn: &TcpHeader,
        cookie: Seq,
        options: super::cookie::CookieOptions,
        ts_offset: u32,
        config: &TcpConfig,
        now: u64,
    ) -> TcpHeader {
        let mut opts = TcpOptions {
            mss: Some(config.mss),
            ..TcpOptions::default()
        };
        if options.window_scale.is_some() && config.window_scaling {
            opts.window_scale = Some(config.window_scale());
        }
        opts.sack_permitted = options.sack_permitted && config.sack;
        if let (Some((tsval, _)), true) = (syn.options.timestamps, config.timestamps) {
            opts.timestamps = Some((timestamp_clock(now, ts_offset), tsval));
        }
        TcpHeader {
            src_port: syn.dst_port,
            dst_port: syn.src_port,
            seq: cookie.0,
            ack: syn.seq.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window: config.buffer_size.min(u32::from(u16::MAX)) as u16,
            urgent: 0,
            options: opts,
        }
    }

    /// The RST that answers a segment no connection wants (RFC 9293 3.10.7.1):
    /// `None` for a segment that is itself a RST.
    pub fn reset_for(segment: &TcpHeader, payload_len: usize) -> Option<TcpHeader> {
        if segment.flags.contains(TcpFlags::RST) {
            return None;
        }
        let mut reset = TcpHeader {
            src_port: segment.dst_port,
            dst_port: segment.src_port,
            seq: 0,
            ack: 0,
            flags: TcpFlags::RST,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
        };
        if segment.flags.contains(TcpFlags::ACK) {
            reset.seq = segment.ack;
        } else {
            let mut len = payload_len as u32;
            if segment.flags.contains(TcpFlags::SYN) {
                len += 1;
            }
            if segment.flags.contains(TcpFlags::FIN) {
                len += 1;
            }
            reset.ack = segment.seq.wrapping_add(len);
            reset.flags |= TcpFlags::ACK;
        }
        Some(reset)
    }

    /// The connection's addresses and ports.
    pub fn tuple(&self) -> &FourTuple {
        &self.tuple
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Take the events since the last call.
    pub fn take_events(&mut self) -> Events {
        core::mem::take(&mut self.events)
    }

    /// Put back events taken with [`Connection::take_events`] that are to be
    /// handled later: the next `take_events` returns them together with
    /// whatever happens in between.
    pub fn defer_events(&mut self, events: Events) {
        self.events.insert(events);
    }

    /// Set the offset of this connection's timestamp clock from `now` (ms),
    /// before it sends anything
    /// ([`Secrets::timestamp_offset`](super::cookie::Secrets::timestamp_offset)).
    /// Until then it is the ISS, as RFC 7323 5.4 allows.
    pub fn set_timestamp_offset(&mut self, offset: u32) {
        self.ts_offset = offset;
    }

    /// Whether received data are waiting beyond a hole (each segment then
    /// gets its duplicate ACK at once, for the peer's loss detection).
    pub fn has_out_of_order_data(&self) -> bool {
        !self.assembler.is_empty()
    }

    /// Bytes waiting to be read.
    pub fn recv_len(&self) -> usize {
        self.recv_buffer.len()
    }

    /// The bytes waiting to be read, as two slices (the ring may wrap).
    pub fn recv_data(&self) -> (&[u8], &[u8]) {
        self.recv_buffer.get_allocated(0, self.recv_buffer.len())
    }

    /// Bytes that [`Connection::send`] would accept now.
    pub fn send_space(&self, config: &TcpConfig) -> usize {
        if !self.can_send() {
            return 0;
        }
        config.buffer_size as usize - self.send_buffer.len()
    }

    /// Bytes queued for sending and not yet acknowledged.
    pub fn send_queued(&self) -> usize {
        self.send_buffer.len()
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt_ns(&self) -> Option<u64> {
        self.rtt.srtt_ns()
    }

    /// The latest round-trip sample (reported by [`Events::RTT_SAMPLED`]).
    pub fn last_rtt_sample_ns(&self) -> Option<u64> {
        self.rtt.last_sample_ns()
    }

    /// The congestion window, in bytes.
    pub fn cwnd(&self) -> u32 {
        self.congestion.cwnd()
    }

    /// The largest payload of a segment: min(peer's MSS, ours).
    pub fn mss(&self) -> u16 {
        self.mss
    }

    /// One past the highest sequence number we sent.
    pub fn snd_max(&self) -> Seq {
        self.snd_max
    }

    /// The payload bytes of a segment from [`Connection::poll_transmit`], as
    /// two slices (the send buffer is a ring). Valid until the next call that
    /// changes the connection.
    pub fn segment_payload(&self, segment: &Segment) -> (&[u8], &[u8]) {
        self.send_buffer.get_allocated(
            segment.payload_offset as usize,
            segment.payload_len as usize,
        )
    }

    /// In SYN-SENT or SYN-RECEIVED, whether `segment` carries an ACK that is
    /// not for our SYN: the caller answers it with a RST <SEQ=SEG.ACK>
    /// (RFC 9293 3.10.7.3 and 3.10.7.4 "fifth"; Linux's `tcp_check_req`
    /// hands such a segment back to the listener, which resets it), and the
    /// connection ignores it: junk neither closes a half-open connection nor
    /// draws a SYN-ACK from it.
    pub fn is_bad_ack_in_handshake(&self, segment: &TcpHeader) -> bool {
        let ack = Seq(segment.ack);
        matches!(self.state, State::SynSent | State::SynReceived)
            && segment.flags.contains(TcpFlags::ACK)
            && !segment.flags.contains(TcpFlags::RST)
            && (ack <= self.iss || ack > self.snd_max)
    }

    /// In TIME-WAIT, whether a SYN may open a new incarnation of this
    /// 4-tuple (RFC 6191 with timestamps, RFC 9293 3.6.1 otherwise): its
    /// timestamp is newer than the last one seen, or, without timestamps,
    /// its sequence number is beyond what the old connection used.
    pub fn accepts_syn_in_time_wait(&self, segment: &TcpHeader) -> bool {
        if self.state != State::TimeWait
            || !segment.flags.contains(TcpFlags::SYN)
            || segment.flags.intersects(TcpFlags::ACK | TcpFlags::RST)
        {
            return false;
        }
        match (
            self.flags.has(Flags::TIMESTAMPS),
            segment.options.timestamps,
        ) {
            (true, Some((tsval, _))) => (tsval.wrapping_sub(self.ts_recent) as i32) > 0,
            _ => Seq(segment.seq) > self.rcv_nxt,
        }
    }

    /// In TIME-WAIT, the compact record that answers for this connection
    /// from now on ([`TimeWait`]): the table keeps it and gives back the
    /// connection and its buffers. `None` in any other state. Call after
    /// [`Connection::poll_transmit`] returned `None` (our last ACK is out).
    pub fn time_wait(&mut self, config: &TcpConfig) -> Option<TimeWait> {
        if self.state != State::TimeWait {
            return None;
        }
        debug_assert_eq!(self.last_ack_sent, self.rcv_nxt, "an ACK is pending");
        // The window field stays as the last ACK carried it.
        let window = self.advertise_window();
        let advertised = self.rcv_adv.distance(self.rcv_nxt).max(0) as u32;
        Some(TimeWait {
            tuple: self.tuple,
            snd_nxt: self.snd_max,
            rcv_nxt: self.rcv_nxt,
            ack_floor: self.snd_una - self.max_snd_wnd.max(1),
            rcv_wnd: advertised.max(self.recv_free(config)),
            ts_recent: self.ts_recent,
            ts_offset: self.ts_offset,
            last_refusal_ack_ms: self.last_refusal_ack_ms,
            window,
            timestamps: self.flags.has(Flags::TIMESTAMPS),
        })
    }

    /// An ICMP "fragmentation needed" quoting our segment at `seq` says the
    /// path carries at most `mtu` bytes (RFC 1191, validated per RFC 5927:
    /// `seq` must be in flight). Returns whether it was taken: the MSS
    /// shrinks and what is in flight is resent in smaller segments.
    pub fn on_path_mtu(&mut self, seq: Seq, mtu: u16) -> bool {
        if !self.state.is_synchronized() || !seq.in_range(self.snd_una, self.snd_max) {
            return false;
        }
        // IPv4 and TCP headers without options; 576 is the least IPv4 MTU
        // every host must take (RFC 791), so no MSS below 536 is asked for.
        let mss = mtu.max(576) - 40;
        if mss >= self.mss {
            return false;
        }
        self.mss = mss;
        self.congestion.set_mss(self.congestion_mss());
        // Resend what is in flight at the new size; not a congestion signal.
        self.snd_nxt = self.snd_una;
        self.flags.clear(Flags::RTT_TIMED);
        true
    }

    fn can_send(&self) -> bool {
        matches!(
            self.state,
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
        ) && !self.flags.has(Flags::FIN_QUEUED)
    }

    /// Queue bytes for sending; returns how many were taken (fewer than
    /// `data.len()` when the send buffer is full).
    pub fn send(&mut self, data: &[u8], pool: &mut BufferPool) -> Result<usize, SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        // Storage sized to what is queued: it grows as the queue does (a
        // refusal leaves the ring as it was: what fits is taken).
        let want = self.send_buffer.len() + data.len();
        if !self.send_buffer.reserve(want, pool) && !self.send_buffer.has_storage() {
            return Err(SendError::NoBuffer);
        }
        Ok(self.send_buffer.enqueue_slice(data))
    }

    /// The application read `count` bytes from the front of the receive
    /// buffer. Opens the window; sends a window update if it had closed.
    pub fn consume(&mut self, count: usize, config: &TcpConfig) {
        let count = self.recv_buffer.dequeue_allocated(count);
        if count == 0 {
            return;
        }
        // RFC 9293 3.8.6.2.2: update the peer once the window can move right
        // by min(buffer/2, MSS) past what it last heard.
        let free = self.recv_free(config);
        let edge = self.rcv_nxt + free;
        let threshold = (config.buffer_size / 2).min(u32::from(self.mss));
        if self.state.can_receive() && edge.distance(self.rcv_adv) >= threshold as i32 {
            let advertised = self.rcv_adv.distance(self.rcv_nxt).max(0) as u32;
            if advertised < config.buffer_size / 2 {
                self.flags.set(Flags::ACK_NOW);
            }
        }
    }

    /// Copy up to `out.len()` received bytes out and consume them.
    pub fn recv_slice(&mut self, out: &mut [u8], config: &TcpConfig) -> usize {
        let (a, b) = self.recv_data();
        let n = out.len().min(a.len() + b.len());
        let from_a = n.min(a.len());
        out[..from_a].copy_from_slice(&a[..from_a]);
        out[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.consume(n, config);
        n
    }

    /// Close for sending: a FIN follows the data already queued (RFC 9293
    /// 3.10.4). Nothing queued is lost.
    pub fn close(&mut self) {
        match self.state {
            State::SynSent => {
                self.state = State::Closed;
                self.events.insert(Events::CLOSED);
            }
            State::SynReceived => {
                // The FIN follows once our SYN is acknowledged (the move to
                // ESTABLISHED then goes on to FIN-WAIT-1).
                self.flags.set(Flags::FIN_QUEUED);
            }
            State::Established => {
                self.flags.set(Flags::FIN_QUEUED);
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.flags.set(Flags::FIN_QUEUED);
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// Abort: send a RST if the peer knows us, drop all data, and close.
    pub fn abort(&mut self) {
        if matches!(self.state, State::Closed | State::Listen | State::TimeWait) {
            return;
        }
        if self.state != State::SynSent {
            self.flags.set(Flags::SEND_RST);
        }
        self.enter_closed(Events::RESET);
    }

    /// Give buffer storage that holds no bytes back to the pool: an idle
    /// connection holds no buffer.
    pub fn release_idle_buffers(&mut self, pool: &mut BufferPool) {
        self.send_buffer.release_if_empty(pool);
        if self.assembler.is_empty() {
            self.recv_buffer.release_if_empty(pool);
        }
    }

    /// Give all buffer storage back (the connection is being removed).
    pub fn release_buffers(&mut self, pool: &mut BufferPool) {
        self.send_buffer.release(pool);
        self.recv_buffer.release(pool);
        self.assembler.clear();
    }

    /// The application has something to send now (a paced sender whose
    /// time came): raise a WRITABLE event, if our side can still send.
    /// Returns whether it did.
    pub fn wake(&mut self) -> bool {
        let open = matches!(self.state, State::Established | State::CloseWait);
        if open {
            self.events.insert(Events::WRITABLE);
        }
        open
    }

    fn enter_closed(&mut self, event: Events) {
        self.state = State::Closed;
        self.events.insert(event);
        self.rto_at = NEVER;
        self.delack_at = NEVER;
        self.aux_at = NEVER;
        self.flags.clear(Flags::ACK_NOW | Flags::SEND_SYN);
    }

    fn enter_time_wait(&mut self, config: &TcpConfig, now: u64) {
        self.state = State::TimeWait;
        self.rto_at = NEVER;
        self.delack_at = NEVER;
        self.aux_at = now.saturating_add(config.time_wait_ns);
    }

    /// Our timestamp clock: milliseconds plus the connection's offset.
    fn ts_now(&self, now: u64) -> u32 {
        timestamp_clock(now, self.ts_offset)
    }

    /// The MSS congestion control counts in: payload per full segment with
    /// the options every segment carries.
    fn congestion_mss(&self) -> u32 {
        let ts = if self.flags.has(Flags::TIMESTAMPS) {
            12
        } else {
            0
        };
        (u32::from(self.mss) - ts).max(64)
    }

    /// Free receive space, whether or not storage is attached yet.
    fn recv_free(&self, config: &TcpConfig) -> u32 {
        config.buffer_size - self.recv_buffer.len() as u32
    }

    /// Take what the peer's SYN tells: its ISN and options.
    fn take_peer_syn(&mut self, syn: &TcpHeader, config: &TcpConfig) {
        self.irs = Seq(syn.seq);
        self.rcv_nxt = self.irs + 1;
        self.rcv_adv = self.rcv_nxt;
        self.last_ack_sent = self.rcv_nxt;
        let options = &syn.options;
        self.mss = options
            .mss
            .unwrap_or(DEFAULT_PEER_MSS)
            .min(config.mss)
            .max(64);
        if let (Some(scale), true) = (options.window_scale, config.window_scaling) {
            // RFC 7323 2.3: a shift above 14 is used as 14.
            self.snd_wscale = scale.min(14);
            self.rcv_wscale = config.window_scale();
            self.flags.set(Flags::WINDOW_SCALING);
        }
        self.flags
            .put(Flags::SACK, options.sack_permitted && config.sack);
        if let (Some((tsval, _)), true) = (options.timestamps, config.timestamps) {
            self.flags.set(Flags::TIMESTAMPS);
            self.ts_recent = tsval;
        }
        // RFC 7323 2.2: the window of a SYN is never scaled.
        self.snd_wnd = u32::from(syn.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = self.irs;
        self.congestion = Congestion::new(config.congestion, self.congestion_mss());
    }

    /// Handle a segment of this connection (its checksum already checked).
    /// `limits` is the worker's: the ACKs that refused segments call for are
    /// rate-limited and counted there.
    pub fn handle_segment(
        &mut self,
        seg: &TcpHeader,
        payload: &[u8],
        config: &TcpConfig,
        pool: &mut BufferPool,
        limits: &mut AckLimiter,
        now: u64,
    ) {
        match self.state {
            State::Closed | State::Listen => return,
            State::SynSent => return self.handle_syn_sent(seg, config, now),
            _ => {}
        }
        let flags = seg.flags;
        let seq = Seq(seg.seq);
        let idle_before = self.idle_ns(now);
        self.last_rx_ms = millis(now);
        if self.state == State::FinWait2 && !flags.contains(TcpFlags::RST) {
            // The FIN-WAIT-2 limit is on silence: a peer still sending after
            // our half-close is served for as long as it keeps sending, even
            // if all it sends are retransmissions of what we already have.
            self.aux_at = now.saturating_add(config.fin_wait2_ns);
        }

        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK may have been
        // lost. It is sent again (an ACK in SYN-RECEIVED is the SYN-ACK, see
        // `poll_syn`), at most once per `invalid_ack_interval_ns`, as Linux's
        // `tcp_check_req` does; the handshake's own timer is left alone.
        if self.state == State::SynReceived
            && flags.contains(TcpFlags::SYN)
            && !flags.contains(TcpFlags::ACK)
            && seq == self.irs
        {
            self.ack_refused(
                Refusal::OutOfWindow,
                seg,
                payload.len(),
                limits,
                config,
                now,
            );
            return;
        }
        if self.is_bad_ack_in_handshake(seg) {
            // The table answers with a RST; the connection is left as it was.
            return;
        }

        // RFC 7323 5.3: PAWS.
        if self.flags.has(Flags::TIMESTAMPS) && !flags.contains(TcpFlags::RST) {
            if let Some((tsval, _)) = seg.options.timestamps {
                let stale = (tsval.wrapping_sub(self.ts_recent) as i32) < 0;
                if stale && idle_before < PAWS_IDLE_NS {
                    self.ack_refused(
                        Refusal::OutOfWindow,
                        seg,
                        payload.len(),
                        limits,
                        config,
                        now,
                    );
                    return;
                }
            }
        }

        // RFC 9293 3.10.7.4, first: is the segment in the window?
        let mut seg_len = payload.len() as u32;
        if flags.contains(TcpFlags::SYN) {
            seg_len += 1;
        }
        if flags.contains(TcpFlags::FIN) {
            seg_len += 1;
        }
        let advertised = self.rcv_adv.distance(self.rcv_nxt).max(0) as u32;
        let window = advertised.max(self.recv_free(config));
        let acceptable = match (seg_len, window) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => seq.in_range(self.rcv_nxt, self.rcv_nxt + window),
            (_, 0) => false,
            (_, _) => {
                seq.in_range(self.rcv_nxt, self.rcv_nxt + window)
                    || (seq + (seg_len - 1)).in_range(self.rcv_nxt, self.rcv_nxt + window)
            }
        };
        // A zero-window probe or old duplicate: acknowledge, drop.
        if !acceptable {
            if !flags.contains(TcpFlags::RST) {
                self.ack_refused(
                    Refusal::OutOfWindow,
                    seg,
                    payload.len(),
                    limits,
                    config,
                    now,
                );
            }
            if self.state == State::TimeWait && flags.contains(TcpFlags::FIN) {
                // The peer did not get our last ACK and resent its FIN:
                // acknowledge again and restart the 2*MSL wait (RFC 9293).
                self.aux_at = now.saturating_add(config.time_wait_ns);
            }
            return;
        }

        // Second: RST (RFC 5961 3.2).
        if flags.contains(TcpFlags::RST) {
            if seq == self.rcv_nxt {
                self.enter_closed(Events::RESET);
            } else {
                self.ack_refused(Refusal::Challenge, seg, payload.len(), limits, config, now);
            }
            return;
        }

        // Timestamps: remember the peer's latest (RFC 7323 4.3).
        if self.flags.has(Flags::TIMESTAMPS) {
            if let Some((tsval, _)) = seg.options.timestamps {
                if seq <= self.last_ack_sent && (tsval.wrapping_sub(self.ts_recent) as i32) >= 0 {
                    self.ts_recent = tsval;
                }
            }
        }

        // Fourth: SYN in a synchronized state (RFC 5961 4.2): challenge ACK.
        if flags.contains(TcpFlags::SYN) {
            self.ack_refused(Refusal::Challenge, seg, payload.len(), limits, config, now);
            return;
        }

        // Fifth: ACK.
        if !flags.contains(TcpFlags::ACK) {
            return;
        }
        let ack = Seq(seg.ack);
        if self.state == State::SynReceived {
            if self.snd_una < ack && ack <= self.snd_max {
                self.snd_wl1 = seq;
                self.snd_wnd = u32::from(seg.window) << self.snd_wscale;
                self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
                self.establish(ack, config, now);
            } else {
                // An ACK of something we never sent: the table answered it
                // with a RST <SEQ=SEG.ACK> (`is_bad_ack_in_handshake`).
                return;
            }
        }
        if !self.process_ack(seg, payload.len(), config, limits, now) {
            return;
        }
        if self.state == State::Closed {
            return;
        }

        // Seventh: the segment's text.
        let mut fin = flags.contains(TcpFlags::FIN);
        let mut data = payload;
        let mut start = seq;
        if self.state.can_receive() && !data.is_empty() {
            if start < self.rcv_nxt {
                let skip = (self.rcv_nxt - start) as usize;
                data = &data[skip.min(data.len())..];
                start = self.rcv_nxt;
            }
            let room = self.recv_free(config) as usize;
            let offset = (start - self.rcv_nxt) as usize;
            if offset + data.len() > room {
                // Beyond the window: keep what fits, the FIN cannot be in it.
                data = &data[..room.saturating_sub(offset).min(data.len())];
                fin = false;
            }
            if !data.is_empty() && !self.receive_data(start, data, pool, config, now) {
                return;
            }
        } else if !data.is_empty() {
            // Data after the peer's FIN (CLOSE-WAIT and later): ignore it.
            self.flags.set(Flags::ACK_NOW);
        }

        // Eighth: FIN.
        if fin {
            let fin_seq = seq + payload.len() as u32;
            if fin_seq == self.rcv_nxt {
                self.take_remote_fin(config, now);
            } else if fin_seq > self.rcv_nxt && self.state.can_receive() {
                self.remote_fin = fin_seq;
                self.flags.set(Flags::REMOTE_FIN_PENDING);
                self.flags.set(Flags::ACK_NOW);
            } else if self.state == State::TimeWait {
                // A retransmitted FIN: acknowledge and restart the 2*MSL wait.
                self.flags.set(Flags::ACK_NOW);
                self.aux_at = now.saturating_add(config.time_wait_ns);
            } else {
                self.flags.set(Flags::ACK_NOW);
            }
        }
    }

    /// Store in-window data at `start`, which is at or after `rcv_nxt`.
    /// Returns false if the data had to be dropped (no buffer storage).
    fn receive_data(
        &mut self,
        start: Seq,
        data: &[u8],
        pool: &mut BufferPool,
        config: &TcpConfig,
        now: u64,
    ) -> bool {
        let offset = start - self.rcv_nxt;
        // Storage sized to what is in flight. No memory: drop what does not
        // fit, unacknowledged (the peer retransmits); the pool counts it.
        let want = self.recv_buffer.len() + offset as usize + data.len();
        if !self.recv_buffer.reserve(want, pool) && !self.recv_buffer.has_storage() {
            return false;
        }
        let written = self.recv_buffer.write_unallocated(offset as usize, data) as u32;
        if offset == 0 {
            let had_holes = !self.assembler.is_empty();
            self.assembler.advance(written);
            let extra = self.assembler.remove_front();
            self.recv_buffer
                .enqueue_unallocated((written + extra) as usize);
            self.rcv_nxt += written + extra;
            self.events.insert(Events::READABLE);
            if self.flags.has(Flags::REMOTE_FIN_PENDING) && self.rcv_nxt == self.remote_fin {
                self.flags.clear(Flags::REMOTE_FIN_PENDING);
                self.take_remote_fin(config, now);
            }
            // RFC 5681 4.2: ACK at once when a hole was filled; otherwise at
            // least every second full-sized segment (full-sized: the MSS less
            // the options every segment carries, 1448 bytes from a Linux
            // peer with timestamps on a 1500-byte MTU).
            let unacked = self.rcv_nxt.distance(self.last_ack_sent).max(0) as u32;
            if had_holes || unacked >= 2 * self.congestion_mss() {
                self.flags.set(Flags::ACK_NOW);
            } else if self.delack_at == NEVER {
                self.delack_at = now.saturating_add(config.delayed_ack_ns);
            }
        } else {
            // Out of order: remember the range and send a duplicate ACK with
            // SACK blocks at once (RFC 5681 4.2, RFC 2018).
            if written > 0 && self.assembler.add(offset, written).is_err() {
                // Too many holes: the bytes are not kept (the peer resends).
            }
            self.flags.set(Flags::ACK_NOW);
        }
        true
    }

    fn take_remote_fin(&mut self, config: &TcpConfig, now: u64) {
        self.rcv_nxt += 1;
        self.flags.set(Flags::ACK_NOW);
        self.events.insert(Events::PEER_CLOSED);
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => {
                if self.flags.has(Flags::FIN_ACKED) {
                    self.enter_time_wait(config, now);
                } else {
                    self.state = State::Closing;
                }
            }
            State::FinWait2 => self.enter_time_wait(config, now),
            _ => {}
        }
        if self.state == State::CloseWait || self.state == State::Closing {
            // Keepalive has no sense once the peer closed.
            if !self.send_pending() {
                self.aux_at = NEVER;
            }
        }
    }

    /// ACK processing (RFC 9293 3.10.7.4 fifth, RFC 5961 5.2, RFC 5681,
    /// RFC 6582, RFC 6675). Returns false if the segment must be dropped.
    fn process_ack(
        &mut self,
        seg: &TcpHeader,
        payload_len: usize,
        config: &TcpConfig,
        limits: &mut AckLimiter,
        now: u64,
    ) -> bool {
        let ack = Seq(seg.ack);
        let seq = Seq(seg.seq);
        if ack > self.snd_max || ack < self.snd_una - self.max_snd_wnd.max(1) {
            // RFC 5961 5.2: acknowledges something not yet sent, or too old
            // to be believed: a challenge ACK, and drop.
            self.ack_refused(Refusal::Challenge, seg, payload_len, limits, config, now);
            return false;
        }
        let advanced = ack > self.snd_una;
        let window = u32::from(seg.window) << self.snd_wscale;
        self.flags.set(Flags::ACKED_SINCE_RTO);

        // SACK information first: it drives loss detection on this ACK.
        if self.flags.has(Flags::SACK) && seg.options.sack_count > 0 {
            let mut blocks = [(Seq(0), Seq(0)); 4];
            let sack = seg.options.sack();
            for (slot, &(left, right)) in blocks.iter_mut().zip(sack) {
                *slot = (Seq(left), Seq(right));
            }
            let una = self.snd_una.max(ack);
            self.scoreboard
                .on_ack(una, self.snd_max, &blocks[..sack.len()]);
        }

        if ack > self.snd_una {
            self.take_timestamp_sample(seg, now, config);
            self.ack_new_data(ack, config, now);
            self.dupacks = 0;
        } else if ack == self.snd_una
            && self.snd_max > self.snd_una
            && payload_len == 0
            && !seg.flags.intersects(TcpFlags::SYN | TcpFlags::FIN)
            && window == self.snd_wnd
            && window > 0
        {
            // RFC 5681 section 2: a duplicate ACK.
            self.dupacks = self.dupacks.saturating_add(1);
            if self.flags.has(Flags::IN_RECOVERY) {
                if !self.flags.has(Flags::SACK) {
                    self.inflation += self.congestion_mss();
                }
            } else if self.snd_una >= self.recover
                && (self.dupacks >= DUP_THRESH
                    || (self.flags.has(Flags::SACK)
                        && self.scoreboard.is_lost(self.snd_una, self.congestion_mss())))
            {
                self.enter_recovery(now);
            }
        } else if self.flags.has(Flags::SACK)
            && !self.flags.has(Flags::IN_RECOVERY)
            && self.snd_max > self.snd_una
            && self.snd_una >= self.recover
            && self.scoreboard.is_lost(self.snd_una, self.congestion_mss())
        {
            self.enter_recovery(now);
        }
        if self.flags.has(Flags::TLP_OUTSTANDING) {
            self.on_probe_ack(seg, advanced, now);
        }
        if advanced {
            // The retransmission timer (RFC 6298 5.2, 5.3), or the probe
            // timeout (RFC 8985 7.2).
            self.arm_retransmit_timer(true, config, now);
        } else if self.flags.has(Flags::PTO_ARMED) && self.probe_timeout(config).is_none() {
            // Recovery began: the RTO takes over from the probe timeout.
            self.arm_retransmit_timer(false, config, now);
        }

        // Window update (RFC 9293 3.10.7.4: SND.WL1/SND.WL2).
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            let opened = window > self.snd_wnd;
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if window > 0 && self.aux_at != NEVER && self.persisting() {
                self.aux_at = NEVER;
            }
            if opened {
                self.events.insert(Events::WRITABLE);
            }
        }
        self.arm_persist_if_needed(config, now);
        true
    }

    /// An ACK of new data: free the send buffer, sample the RTT, grow the
    /// window or advance recovery, move the state on if our FIN is covered.
    fn ack_new_data(&mut self, ack: Seq, config: &TcpConfig, now: u64) {
        let acked = ack - self.snd_una;
        let data_len = self.send_buffer.len() as u32;
        let fin_covered = self.flags.has(Flags::FIN_QUEUED) && acked > data_len;
        self.send_buffer
            .dequeue_allocated(acked.min(data_len) as usize);
        self.snd_una = ack;
        if self.snd_nxt < ack {
            self.snd_nxt = ack;
        }
        self.retransmits = 0;
        self.take_rtt_sample(ack, now, config);
        self.events.insert(Events::WRITABLE);

        if self.flags.has(Flags::IN_RECOVERY) {
            if ack >= self.recover {
                // Full acknowledgment (RFC 6582 3.2 step 3): leave recovery.
                self.flags.clear(Flags::IN_RECOVERY);
                self.inflation = 0;
                self.congestion.on_recovery_exit();
            } else if !self.flags.has(Flags::SACK) {
                // Partial acknowledgment (RFC 6582 3.2 step 4): retransmit the
                // next hole, deflate by what was acknowledged.
                self.inflation = self.inflation.saturating_sub(acked);
                self.flags.set(Flags::RETRANSMIT_UNA);
                self.rto_at = now.saturating_add(self.rtt.rto_ns(&config.rto));
            }
        } else {
            let srtt = self.rtt.srtt_ns().unwrap_or(0);
            self.congestion.on_ack(acked, now, srtt);
        }

        if fin_covered {
            self.flags.set(Flags::FIN_ACKED);
            match self.state {
                State::FinWait1 => {
                    self.state = State::FinWait2;
                    self.aux_at = now.saturating_add(config.fin_wait2_ns);
                }
                State::Closing => self.enter_time_wait(config, now),
                State::LastAck => self.enter_closed(Events::CLOSED),
                _ => {}
            }
        }
    }

    /// `ack` acknowledges our SYN: ESTABLISHED, or FIN-WAIT-1 if the
    /// application closed meanwhile (the FIN follows the handshake).
    fn establish(&mut self, ack: Seq, config: &TcpConfig, now: u64) {
        self.snd_una = ack;
        self.snd_nxt = self.snd_nxt.max(ack);
        self.snd_wl2 = ack;
        self.rto_at = NEVER;
        self.retransmits = 0;
        self.take_rtt_sample(ack, now, config);
        self.state = if self.flags.has(Flags::FIN_QUEUED) {
            State::FinWait1
        } else {
            State::Established
        };
        self.events.insert(Events::ESTABLISHED);
        self.arm_idle_timer(config, now);
    }

    /// Time the segment ending at `end`, sent at `now`, for an RTT sample.
    fn time_segment(&mut self, end: Seq, now: u64) {
        self.rtt_seq = end;
        self.rtt_sent_us = micros(now);
        self.flags.set(Flags::RTT_TIMED);
    }

    fn take_rtt_sample(&mut self, ack: Seq, now: u64, config: &TcpConfig) {
        if self.flags.has(Flags::RTT_TIMED) && ack >= self.rtt_seq {
            let rtt_us = micros(now).wrapping_sub(self.rtt_sent_us);
            self.rtt.on_sample(u64::from(rtt_us) * 1_000, &config.rto);
            self.flags.clear(Flags::RTT_TIMED);
            self.events.insert(Events::RTT_SAMPLED);
        }
    }

    /// After a timeout, Karn's rule leaves no timed segment until new data
    /// is acknowledged, and the backed-off RTO stays high meanwhile. A
    /// timestamp echo is unambiguous even for a resent segment (RFC 7323
    /// 4.1): one sample from it ends the backoff.
    fn take_timestamp_sample(&mut self, seg: &TcpHeader, now: u64, config: &TcpConfig) {
        if self.rtt.backoff() == 0 || !self.flags.has(Flags::TIMESTAMPS) {
            return;
        }
        if let Some((_, tsecr)) = seg.options.timestamps {
            let ticks = self.ts_now(now).wrapping_sub(tsecr) as i32;
            if tsecr != 0 && ticks >= 0 {
                let rtt_ns = (ticks as u64).max(1) * 1_000_000;
                self.rtt.on_sample(rtt_ns, &config.rto);
                self.events.insert(Events::RTT_SAMPLED);
            }
        }
    }

    /// RFC 8985 7.4: what an ACK says of the outstanding tail loss probe,
    /// which ended at `tlp_end`. `advanced`: the ACK moved SND.UNA (already
    /// moved; the SACK scoreboard is up to date).
    fn on_probe_ack(&mut self, seg: &TcpHeader, advanced: bool, now: u64) {
        let end = self.tlp_end;
        let ack = Seq(seg.ack);
        if ack < end {
            // RACK's verdict (RFC 8985 6.2) on the probe: once it arrived
            // (SACKed), whatever was sent before it and is not SACKed has
            // been overtaken by a segment sent at least 2*SRTT later: lost.
            // Normal SACK recovery repairs it. (The probe's last byte may
            // be our FIN, which no SACK block covers: its last data byte
            // tells then.)
            if self.scoreboard.is_sacked(end - 1) || self.scoreboard.is_sacked(end - 2) {
                self.flags.clear(Flags::TLP_OUTSTANDING);
                self.scoreboard.mark_lost_below(end);
                if !self.flags.has(Flags::IN_RECOVERY) && self.snd_una >= self.recover {
                    self.enter_recovery(now);
                }
            }
            return;
        }
        let dsack = seg.options.sack().first().is_some_and(|&(_, right)| {
            let right = Seq(right);
            right <= ack && right == end
        });
        let repaired = if !self.flags.has(Flags::TLP_RETRANS) || dsack {
            // New data delivered, or the original and the probe both
            // arrived (the D-SACK of RFC 2883 says so): no loss.
            Some(false)
        } else if ack > end {
            // The probe's ACK came with more: it repaired a loss.
            Some(true)
        } else if !advanced && seg.options.sack_count == 0 {
            // A duplicate ACK without SACK: both copies arrived.
            Some(false)
        } else {
            // Ambiguous (a D-SACK may follow): wait for the next ACK.
            None
        };
        if let Some(repaired) = repaired {
            self.flags.clear(Flags::TLP_OUTSTANDING);
            if repaired {
                // RFC 8985 7.4.2: the congestion response of a fast
                // recovery, which the probe has already done.
                let cwnd = self.congestion.cwnd();
                self.congestion.on_congestion_event(cwnd, now);
                self.congestion.on_recovery_exit();
            }
        }
    }

    /// The probe timeout of RFC 8985 7.2, if a tail loss probe may be
    /// scheduled now: SACK in use, data in flight, an RTT measured, no loss
    /// recovery (fast or after a timeout) under way and no probe
    /// outstanding. 2*SRTT, plus the peer's longest ACK delay when a single
    /// segment is in flight.
    fn probe_timeout(&self, config: &TcpConfig) -> Option<u64> {
        let open = matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        );
        if !config.tail_loss_probe
            || !open
            || !self.flags.has(Flags::SACK)
            || self.flags.has(Flags::IN_RECOVERY)
            || self.flags.has(Flags::TLP_OUTSTANDING)
            || self.snd_una < self.recover
            || self.snd_una == self.snd_max
            || self.retransmits > 0
        {
            return None;
        }
        let srtt = self.rtt.srtt_ns()?;
        let flight = self.snd_max - self.snd_una;
        let extra = if flight <= self.congestion_mss() {
            MAX_ACK_DELAY_NS
        } else {
            PROBE_SLACK_NS
        };
        Some(srtt.saturating_mul(2).saturating_add(extra))
    }

    /// Arm the retransmission timer: as the probe timeout when a tail loss
    /// probe may be scheduled (RFC 8985 7.2: restarted on every ACK of new
    /// data and every new segment, but never later than the RTO), otherwise
    /// as the RTO (RFC 6298 5.1: started if not running, or restarted if
    /// `restart`). Off when nothing is in flight.
    fn arm_retransmit_timer(&mut self, restart: bool, config: &TcpConfig, now: u64) {
        if self.snd_una == self.snd_max {
            self.rto_at = NEVER;
            self.flags.clear(Flags::PTO_ARMED);
            return;
        }
        let rto = self.rtt.rto_ns(&config.rto);
        if let Some(pto) = self.probe_timeout(config) {
            self.rto_at = now.saturating_add(pto.min(rto));
            self.flags.set(Flags::PTO_ARMED);
        } else if restart || self.rto_at == NEVER || self.flags.has(Flags::PTO_ARMED) {
            self.rto_at = now.saturating_add(rto);
            self.flags.clear(Flags::PTO_ARMED);
        }
    }

    /// The probe timeout fired (RFC 8985 7.3): a probe goes out, and the
    /// RTO, not another probe timeout, guards what is then in flight.
    fn on_probe_timeout(&mut self, config: &TcpConfig, now: u64) {
        self.flags.clear(Flags::PTO_ARMED);
        if self.snd_una == self.snd_max {
            return;
        }
        self.rto_at = now.saturating_add(self.rtt.rto_ns(&config.rto));
        self.flags.set(Flags::SEND_PROBE);
        self.events.insert(Events::TAIL_LOSS_PROBE);
    }

    /// The tail loss probe (RFC 8985 7.3): a new segment if the peer's
    /// window takes one (whatever cwnd says), else the last segment sent,
    /// again. One per tail: no probe timeout until it is acknowledged.
    fn probe_segment(&mut self, config: &TcpConfig, now: u64) -> Option<Segment> {
        if self.snd_una == self.snd_max {
            return None;
        }
        let cmss = self.congestion_mss();
        let data_end = self.snd_una + self.send_buffer.len() as u32;
        let fin_queued = self.flags.has(Flags::FIN_QUEUED) && !self.flags.has(Flags::FIN_ACKED);
        let fin_sent = fin_queued && self.snd_max > data_end;
        let window_end = self.snd_una + self.snd_wnd;
        let (seq, len, fin) =
            if self.snd_nxt == self.snd_max && self.snd_nxt < data_end && window_end > self.snd_nxt
            {
                let len = (data_end - self.snd_nxt)
                    .min(cmss)
                    .min(window_end - self.snd_nxt);
                (self.snd_nxt, len, fin_queued)
            } else if self.snd_nxt == self.snd_max && fin_queued && !fin_sent {
                (data_end, 0, true)
            } else {
                let end = if fin_sent { data_end } else { self.snd_max };
                let start = if end - self.snd_una > cmss {
                    end - cmss
                } else {
                    self.snd_una
                };
                (start, end - start, fin_sent)
            };
        // Outstanding before it is built: the timers are left as
        // `on_probe_timeout` set them.
        self.flags.set(Flags::TLP_OUTSTANDING);
        let segment = self.data_segment(seq, len, fin, now, config);
        self.tlp_end = self.snd_max;
        self.flags.put(Flags::TLP_RETRANS, segment.retransmission);
        Some(segment)
    }

    fn enter_recovery(&mut self, now: u64) {
        let flight = self.snd_max - self.snd_una;
        self.congestion.on_congestion_event(flight, now);
        self.flags.set(Flags::IN_RECOVERY | Flags::RETRANSMIT_UNA);
        self.recover = self.snd_max;
        self.high_rxt = self.snd_una;
        self.inflation = if self.flags.has(Flags::SACK) {
            0
        } else {
            // RFC 5681 3.2 step 3: inflate by the three segments that left.
            u32::from(DUP_THRESH) * self.congestion_mss()
        };
        self.flags.clear(Flags::RTT_TIMED);
    }

    /// A refused segment calls for an ACK (`why`): send it unless a limit
    /// says no ([`super::ratelimit::answer_refused`]), and count either way.
    fn ack_refused(
        &mut self,
        why: Refusal,
        seg: &TcpHeader,
        payload_len: usize,
        limits: &mut AckLimiter,
        config: &TcpConfig,
        now: u64,
    ) {
        if answer_refused(
            &mut self.last_refusal_ack_ms,
            why,
            seg,
            payload_len,
            limits,
            config.invalid_ack_interval_ns,
            now,
        ) {
            self.flags.set(Flags::ACK_NOW);
        }
    }

    /// SYN-SENT (RFC 9293 3.10.7.3).
    fn handle_syn_sent(&mut self, seg: &TcpHeader, config: &TcpConfig, now: u64) {
        let flags = seg.flags;
        let ack = Seq(seg.ack);
        let has_ack = flags.contains(TcpFlags::ACK);
        // Not `is_bad_ack_in_handshake`: a RST with a bad ACK is dropped too.
        if has_ack && (ack <= self.iss || ack > self.snd_max) {
            // Not for our SYN. The table answers with a RST <SEQ=SEG.ACK>
            // (unless it is one); the connection ignores it.
            return;
        }
        if flags.contains(TcpFlags::RST) {
            if has_ack {
                // Connection refused.
                self.enter_closed(Events::RESET);
            }
            return;
        }
        if !flags.contains(TcpFlags::SYN) {
            return;
        }
        self.last_rx_ms = millis(now);
        self.take_peer_syn(seg, config);
        if !(seg.options.window_scale.is_some() && config.window_scaling) {
            self.snd_wscale = 0;
            self.rcv_wscale = 0;
            self.flags.clear(Flags::WINDOW_SCALING);
        }
        if has_ack {
            self.establish(ack, config, now);
            self.flags.set(Flags::ACK_NOW);
        } else {
            // Simultaneous open: SYN-RECEIVED, answer with SYN-ACK.
            self.state = State::SynReceived;
            self.flags.set(Flags::SEND_SYN);
        }
    }

    /// The next deadline at which [`Connection::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<u64> {
        let at = self.rto_at.min(self.delack_at).min(self.aux_at);
        (at != NEVER).then_some(at)
    }

    /// Run the timers whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, config: &TcpConfig, now: u64) {
        if self.delack_at <= now {
            self.delack_at = NEVER;
            self.flags.set(Flags::ACK_NOW);
        }
        if self.rto_at <= now {
            self.rto_at = NEVER;
            if self.flags.has(Flags::PTO_ARMED) {
                self.on_probe_timeout(config, now);
            } else {
                self.on_retransmission_timeout(config, now);
            }
        }
        if self.aux_at <= now {
            self.aux_at = NEVER;
            match self.state {
                State::TimeWait => self.enter_closed(Events::CLOSED),
                State::FinWait2 => {
                    // The peer never closed: give up quietly, as Linux does.
                    self.enter_closed(Events::CLOSED)
                }
                _ if self.persisting() => {
                    self.flags.set(Flags::PROBE_WINDOW);
                    let backoff = self.rtt.rto_ns(&config.rto);
                    self.aux_at = now.saturating_add(backoff);
                }
                State::Established | State::CloseWait => self.keepalive_due(config, now),
                _ => {}
            }
        }
    }

    /// Time since the last segment arrived (to the millisecond, for up to
    /// 49 days).
    fn idle_ns(&self, now: u64) -> u64 {
        u64::from(millis(now).wrapping_sub(self.last_rx_ms)) * 1_000_000
    }

    /// Whether we have bytes to send but the peer's window is shut and
    /// nothing is in flight: the persist timer's case.
    fn persisting(&self) -> bool {
        self.snd_wnd == 0 && self.send_pending() && self.snd_max == self.snd_una
    }

    fn send_pending(&self) -> bool {
        let data_end = self.snd_una + self.send_buffer.len() as u32;
        self.snd_nxt < data_end
            || (self.flags.has(Flags::FIN_QUEUED) && !self.flags.has(Flags::FIN_ACKED))
    }

    fn arm_persist_if_needed(&mut self, config: &TcpConfig, now: u64) {
        if self.persisting()
            && self.rto_at == NEVER
            && !self.state_has_aux_deadline()
            && (self.aux_at == NEVER || !self.flags.has(Flags::PROBE_WINDOW))
        {
            self.aux_at = now.saturating_add(self.rtt.rto_ns(&config.rto));
        }
    }

    fn state_has_aux_deadline(&self) -> bool {
        matches!(self.state, State::TimeWait | State::FinWait2)
    }

    /// Arm the keepalive timer, if keepalive is on.
    fn arm_idle_timer(&mut self, config: &TcpConfig, now: u64) {
        if let Some(keepalive) = config.keepalive {
            if !self.state_has_aux_deadline() {
                self.aux_at = now.saturating_add(keepalive.idle_ns);
            }
        }
    }

    fn keepalive_due(&mut self, config: &TcpConfig, now: u64) {
        let Some(keepalive) = config.keepalive else {
            return;
        };
        let idle = self.idle_ns(now);
        if idle < keepalive.idle_ns {
            self.aux_at = now.saturating_add(keepalive.idle_ns - idle);
            self.keepalive_probes = 0;
            return;
        }
        if self.snd_max != self.snd_una || self.send_pending() {
            // Data in flight: the retransmission timer watches the peer.
            self.keepalive_probes = 0;
            self.aux_at = now.saturating_add(keepalive.idle_ns);
            return;
        }
        if self.keepalive_probes >= keepalive.probes {
            self.flags.set(Flags::SEND_RST);
            self.enter_closed(Events::RESET | Events::TIMED_OUT);
            return;
        }
        self.keepalive_probes = self.keepalive_probes.saturating_add(1);
        self.flags.set(Flags::PROBE_KEEPALIVE);
        self.aux_at = now.saturating_add(keepalive.interval_ns);
    }

    fn on_retransmission_timeout(&mut self, config: &TcpConfig, now: u64) {
        let handshake = matches!(self.state, State::SynSent | State::SynReceived);
        if !handshake && self.snd_max == self.snd_una {
            return;
        }
        let zero_window_probe = self.snd_wnd == 0 && !handshake;
        let answered = self.flags.has(Flags::ACKED_SINCE_RTO);
        self.flags.clear(Flags::ACKED_SINCE_RTO);
        if !(zero_window_probe && answered) {
            self.retransmits = self.retransmits.saturating_add(1);
        }
        let limit = if handshake {
            config.max_syn_retransmits
        } else {
            config.max_retransmits
        };
        if self.retransmits > limit {
            // A synchronized peer hears of it. A handshake that never
            // completed ends silently, as Linux drops an expired request
            // (`inet_csk_reqsk_queue_drop`): a RST to the source of a
            // spoofed SYN would only reflect the flood.
            if self.state.is_synchronized() {
                self.flags.set(Flags::SEND_RST);
            }
            self.enter_closed(Events::RESET | Events::TIMED_OUT);
            return;
        }
        // A timeout ends any tail loss probe episode (RFC 8985 7.3).
        self.flags
            .clear(Flags::TLP_OUTSTANDING | Flags::SEND_PROBE | Flags::TLP_RETRANS);
        self.rtt.on_timeout();
        self.events.insert(Events::RETRANSMISSION_TIMEOUT);
        self.flags.clear(Flags::RTT_TIMED);
        if handshake {
            self.flags.set(Flags::SEND_SYN);
            return;
        }
        if self.retransmits == 1 && !zero_window_probe {
            // RFC 5681 eq. 4 on the first timeout of a series only.
            let flight = self.snd_max - self.snd_una;
            self.congestion.on_retransmit_timeout(flight, now);
        }
        // RFC 6675 5.1 / RFC 6582 4.1: leave recovery and resend from SND.UNA
        // (go-back-N); later duplicate ACKs of this data start no new episode.
        self.flags.clear(Flags::IN_RECOVERY);
        self.inflation = 0;
        self.dupacks = 0;
        self.recover = self.snd_max;
        self.scoreboard.clear();
        self.snd_nxt = self.snd_una;
        self.high_rxt = self.snd_una;
        if zero_window_probe {
            // The probe went unanswered or was refused: probe again, with
            // the backed-off interval (RFC 9293 3.8.6.1).
            self.flags.set(Flags::PROBE_WINDOW);
        }
    }

    /// The segment to send next, if any. Call until `None` after every input.
    pub fn poll_transmit(&mut self, config: &TcpConfig, now: u64) -> Option<Segment> {
        if self.flags.has(Flags::SEND_RST) {
            self.flags.clear(Flags::SEND_RST);
            let mut header = self.header(TcpFlags::RST | TcpFlags::ACK, self.snd_max, now);
            header.options = TcpOptions::default();
            header.window = 0;
            return Some(self.segment(header, 0, 0, 0, false));
        }
        match self.state {
            State::Closed | State::Listen => return None,
            State::SynSent | State::SynReceived => return self.poll_syn(config, now),
            _ => {}
        }
        if let Some(segment) = self.poll_data(config, now) {
            return Some(segment);
        }
        if self.flags.has(Flags::PROBE_KEEPALIVE) {
            self.flags.clear(Flags::PROBE_KEEPALIVE);
            // RFC 9293 3.8.4: SEG.SEQ = SND.NXT - 1, no data.
            let header = self.header(TcpFlags::ACK, self.snd_una - 1, now);
            return Some(self.segment(header, 0, 0, 0, false));
        }
        if self.flags.has(Flags::ACK_NOW) {
            // SND.MAX, not SND.NXT: after a timeout rewinds SND.NXT, the peer may
            // have received more than it; an ACK below its RCV.NXT would be
            // dropped unread (and its answer by us: an ACK war).
            let header = self.header(TcpFlags::ACK, self.snd_max, now);
            return Some(self.segment(header, 0, 0, 0, false));
        }
        None
    }

    fn poll_syn(&mut self, config: &TcpConfig, now: u64) -> Option<Segment> {
        if !self.flags.has(Flags::SEND_SYN) {
            if self.flags.has(Flags::ACK_NOW) && self.state == State::SynReceived {
                // An unacceptable ACK in SYN-RECEIVED: resend the SYN-ACK,
                // which tells the peer where we are.
                self.flags.clear(Flags::ACK_NOW);
                self.flags.set(Flags::SEND_SYN);
            } else {
                return None;
            }
        }
        self.flags.clear(Flags::SEND_SYN);
        let mut options = TcpOptions {
            mss: Some(config.mss),
            ..TcpOptions::default()
        };
        let syn_ack = self.state == State::SynReceived;
        let mut flags = TcpFlags::SYN;
        if syn_ack {
            flags |= TcpFlags::ACK;
            if self.flags.has(Flags::WINDOW_SCALING) {
                options.window_scale = Some(self.rcv_wscale);
            }
            options.sack_permitted = self.flags.has(Flags::SACK);
            if self.flags.has(Flags::TIMESTAMPS) {
                options.timestamps = Some((self.ts_now(now), self.ts_recent));
            }
        } else {
            if config.window_scaling {
                self.rcv_wscale = config.window_scale();
                options.window_scale = Some(self.rcv_wscale);
                self.flags.set(Flags::WINDOW_SCALING);
            }
            options.sack_permitted = config.sack;
            if config.timestamps {
                options.timestamps = Some((self.ts_now(now), 0));
            }
        }
        let retransmission = self.snd_max != self.iss;
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.iss + 1;
        if !retransmission {
            self.time_segment(self.iss + 1, now);
        }
        if self.rto_at == NEVER {
            // The first SYN, or one the timer calls for (it backed off). A
            // SYN-ACK answering a refused segment leaves the timer alone: junk
            // does not keep a half-open connection alive.
            self.rto_at = now.saturating_add(self.rtt.rto_ns(&config.rto));
        }
        let header = TcpHeader {
            src_port: self.tuple.local_port,
            dst_port: self.tuple.remote_port,
            seq: self.iss.0,
            ack: if syn_ack { self.rcv_nxt.0 } else { 0 },
            flags,
            // RFC 7323 2.2: the window of a SYN is not scaled.
            window: config.buffer_size.min(u32::from(u16::MAX)) as u16,
            urgent: 0,
            options,
        };
        if syn_ack {
            self.rcv_adv = self.rcv_nxt + u32::from(header.window);
            self.last_ack_sent = self.rcv_nxt;
        }
        self.last_tx_ms = millis(now);
        Some(Segment {
            header,
            payload_offset: 0,
            payload_len: 0,
            segment_size: 0,
            retransmission,
        })
    }

    /// A data, FIN or retransmission segment, if one may go now.
    fn poll_data(&mut self, config: &TcpConfig, now: u64) -> Option<Segment> {
        let data_end = self.snd_una + self.send_buffer.len() as u32;
        let fin_queued = self.flags.has(Flags::FIN_QUEUED) && !self.flags.has(Flags::FIN_ACKED);
        let cmss = self.congestion_mss();

        // Retransmit the first unacknowledged segment (fast retransmit,
        // NewReno partial ACK).
        if self.flags.has(Flags::RETRANSMIT_UNA) {
            self.flags.clear(Flags::RETRANSMIT_UNA);
            if self.snd_una < self.snd_max {
                let len = (data_end - self.snd_una).min(cmss);
                let fin = fin_queued && self.snd_una + len == data_end;
                self.high_rxt = self.high_rxt.max(self.snd_una + len);
                return Some(self.data_segment(self.snd_una, len, fin, now, config));
            }
        }

        if self.flags.has(Flags::SEND_PROBE) {
            self.flags.clear(Flags::SEND_PROBE);
            if let Some(segment) = self.probe_segment(config, now) {
                return Some(segment);
            }
        }

        let in_sack_recovery = self.flags.has(Flags::IN_RECOVERY) && self.flags.has(Flags::SACK);
        if in_sack_recovery {
            // RFC 6675 5 (C): while cwnd - pipe >= 1 SMSS, send NextSeg().
            let pipe = self
                .scoreboard
                .pipe(self.snd_una, self.snd_max, self.high_rxt, cmss);
            if pipe.saturating_add(cmss) > self.congestion.cwnd() {
                return None;
            }
            if let Some((start, len)) =
                self.scoreboard
                    .next_seg(self.snd_una, self.snd_max, self.high_rxt, cmss)
            {
                let end = (start + len).min(data_end);
                // NextSeg rule 1 (lost) goes before new data (rule 2); rule 3
                // (merely unSACKed) only when no new data can go.
                let new_data =
                    self.snd_nxt < data_end && self.snd_nxt < self.snd_una + self.snd_wnd;
                let lost = self.scoreboard.is_lost(start, cmss);
                if start < end && (lost || !new_data) {
                    let len = end - start;
                    let fin = fin_queued && end == data_end;
                    self.high_rxt = self.high_rxt.max(end);
                    return Some(self.data_segment(start, len, fin, now, config));
                }
            }
        }

        // New data (or go-back-N after a timeout) from SND.NXT.
        let fin_sent_here = self.snd_nxt > data_end; // our FIN is behind SND.NXT
        let available = if self.snd_nxt < data_end {
            data_end - self.snd_nxt
        } else {
            0
        };
        let want_fin = fin_queued && !fin_sent_here;
        if available == 0 && !want_fin {
            return None;
        }
        let cwnd = if in_sack_recovery {
            // The pipe check above already limits sending.
            u32::MAX
        } else if self.snd_max == self.snd_una {
            // Nothing in flight: the first segment is sized by the window
            // the idle restart will leave (data_segment applies it), so
            // that with segmentation offload it is no larger than the
            // restart window (RFC 5681 4.1).
            self.congestion
                .cwnd_after_idle(self.tx_idle_ns(now), self.rtt.rto_ns(&config.rto))
                .saturating_add(self.inflation)
        } else {
            self.congestion.cwnd().saturating_add(self.inflation)
        };
        let window_end = self.snd_una + self.snd_wnd.min(cwnd);
        let mut usable = if window_end > self.snd_nxt {
            window_end - self.snd_nxt
        } else {
            0
        };
        let probe = self.flags.has(Flags::PROBE_WINDOW);
        if probe && self.snd_wnd == 0 {
            self.flags.clear(Flags::PROBE_WINDOW);
            usable = 1;
        }
        // Segmentation offload: up to `gso_max` bytes in whole MSSes; a
        // remainder only at the end of the queued data (as Linux's
        // tcp_mss_split_point), so no runt goes out while more waits. Not
        // in SACK recovery, whose window is the pipe check above, made per
        // segment of one SMSS (RFC 6675 5 (C)).
        let limit = if config.gso_max > cmss && !in_sack_recovery {
            config.gso_max - config.gso_max % cmss
        } else {
            cmss
        };
        let mut len = available.min(limit).min(usable);
        if len > cmss && len < available {
            len -= len % cmss;
        }
        let fin = want_fin && self.snd_nxt + len == data_end;
        if len == 0 && !fin {
            self.arm_persist_if_needed(config, now);
            return None;
        }
        if len < available.min(cmss) && len > 0 && !probe {
            // Sender SWS avoidance (RFC 9293 3.8.6.2.1): wait for a fuller
            // window unless it is at least half the largest one ever offered
            // or nothing is in flight.
            let in_flight = self.snd_nxt > self.snd_una;
            if in_flight && len < self.max_snd_wnd / 2 {
                return None;
            }
        }
        if config.nagle && len < cmss && len == available && !fin && self.snd_nxt > self.snd_una {
            // Nagle: hold a small segment while data is unacknowledged.
            return None;
        }
        if len == 0 && fin && usable == 0 && self.snd_wnd == 0 && self.snd_nxt > self.snd_una {
            return None;
        }
        len = len.min(available);
        Some(self.data_segment(self.snd_nxt, len, fin, now, config))
    }

    /// Build a segment of up to `len` bytes at `seq`, with our FIN after
    /// them if `want_fin` and they end the queued data, and account for it.
    fn data_segment(
        &mut self,
        seq: Seq,
        len: u32,
        want_fin: bool,
        now: u64,
        config: &TcpConfig,
    ) -> Segment {
        let mut header = self.header(TcpFlags::ACK, seq, now);
        // Options may have grown (SACK blocks): keep each frame in the MSS.
        let room = u32::from(self.mss)
            .saturating_sub(header.options.buffer_len() as u32)
            .max(1);
        let len = if len > room && config.gso_max > room {
            len.min(config.gso_max - config.gso_max % room)
        } else {
            len.min(room)
        };
        // `room` <= the MSS, a u16.
        let segment_size = room as u16;
        let data_end = self.snd_una + self.send_buffer.len() as u32;
        let fin = want_fin && seq + len == data_end;
        if fin {
            header.flags |= TcpFlags::FIN;
        }
        if len > 0 && seq + len == data_end {
            header.flags |= TcpFlags::PSH;
        }
        let end = seq + len + u32::from(fin);
        let retransmission = seq < self.snd_max;
        if retransmission {
            // Karn: no sample from a round trip that includes a resend.
            self.flags.clear(Flags::RTT_TIMED);
        } else if !self.flags.has(Flags::RTT_TIMED) {
            self.time_segment(end, now);
        }
        if seq == self.snd_nxt {
            self.snd_nxt = end;
        }
        let new_data = end > self.snd_max;
        if new_data {
            if self.snd_max == self.snd_una {
                // RFC 5681 4.1: restart from the initial window after an idle
                // period longer than the RTO.
                self.congestion
                    .on_idle_restart(self.tx_idle_ns(now), self.rtt.rto_ns(&config.rto));
            }
            self.snd_max = end;
        }
        if new_data || self.rto_at == NEVER {
            self.arm_retransmit_timer(false, config, now);
        }
        self.last_tx_ms = millis(now);
        let offset = seq - self.snd_una;
        self.segment(header, offset, len, segment_size, retransmission)
    }

    /// Nanoseconds since our last transmission, at `now` (ms resolution).
    fn tx_idle_ns(&self, now: u64) -> u64 {
        u64::from(millis(now).wrapping_sub(self.last_tx_ms)) * 1_000_000
    }

    /// A header from us at `seq` carrying our ACK, window and options; marks
    /// the ACK as sent.
    fn header(&mut self, flags: TcpFlags, seq: Seq, now: u64) -> TcpHeader {
        let mut options = TcpOptions::default();
        if self.flags.has(Flags::TIMESTAMPS) {
            options.timestamps = Some((self.ts_now(now), self.ts_recent));
        }
        if self.flags.has(Flags::SACK) && !self.assembler.is_empty() {
            let ranges = self.assembler.sack_ranges();
            let mut count = 0;
            for (start, end) in ranges.iter().take(4) {
                options.sack_blocks[count] = ((self.rcv_nxt + *start).0, (self.rcv_nxt + *end).0);
                count += 1;
            }
            options.sack_count = count as u8;
        }
        TcpHeader {
            src_port: self.tuple.local_port,
            dst_port: self.tuple.remote_port,
            seq: seq.0,
            ack: self.rcv_nxt.0,
            flags,
            window: 0,
            urgent: 0,
            options,
        }
    }

    /// Finish a segment: fill in the window we advertise, note the ACK sent.
    fn segment(
        &mut self,
        mut header: TcpHeader,
        payload_offset: u32,
        payload_len: u32,
        segment_size: u16,
        retransmission: bool,
    ) -> Segment {
        if header.flags.contains(TcpFlags::ACK) {
            header.window = self.advertise_window();
            self.last_ack_sent = self.rcv_nxt;
            self.flags.clear(Flags::ACK_NOW);
            self.delack_at = NEVER;
        }
        Segment {
            header,
            payload_offset,
            payload_len,
            segment_size,
            retransmission,
        }
    }

    /// The window field for an outgoing segment; moves `rcv_adv` right (never
    /// left), with receiver SWS avoidance (RFC 9293 3.8.6.2.2).
    fn advertise_window(&mut self) -> u16 {
        let limit = self.recv_limit;
        let free = limit - self.recv_buffer.len() as u32;
        let current = self.rcv_adv.distance(self.rcv_nxt).max(0) as u32;
        let threshold = (limit / 2).min(u32::from(self.mss));
        let window = if free >= current.saturating_add(threshold) || free == limit {
            free
        } else {
            current
        };
        let field = (window >> self.rcv_wscale).min(u32::from(u16::MAX));
        let edge = self.rcv_nxt + (field << self.rcv_wscale);
        if edge > self.rcv_adv {
            self.rcv_adv = edge;
        }
        field as u16
    }
}

/// Microseconds of `now`, wrapping every 71 minutes (round trips are
/// measured with it).
fn micros(now: u64) -> u32 {
    (now / 1_000) as u32
}

/// Milliseconds of `now`, wrapping every 49 days.
fn millis(now: u64) -> u32 {
    (now / 1_000_000) as u32
}

/// The timestamp clock (RFC 7323 5.4): one tick per millisecond.
pub(super) fn timestamp_clock(now: u64, offset: u32) -> u32 {
    ((now / 1_000_000) as u32).wrapping_add(offset)
}
