//! TCP flows pinned to the kernel: a per-worker stack concern (it was
//! `kernel::flows`), kept by [`Stack`] and consulted before the rules.
//!
//! The rules decide where a *new* TCP flow goes; a flow the kernel took must
//! stay the kernel's until it ends, whatever the rules say after a reload.
//! The stack's own connections need nothing for this (its TCP table is asked
//! before the rules), but the kernel's connections are invisible to the stack:
//! without a record of them, a reload that moves a port from `kernel` to a
//! service makes the next segment of a kernel connection look like a stray
//! segment for the service's listener, which answers it with a RST and kills
//! the kernel's connection.
//!
//! [`KernelFlows`] is that record: one per worker (RSS sends both directions
//! of a flow to one queue, and the kernel's replies do not pass through it),
//! single-threaded, bounded. A flow is pinned by its SYN when the rules send
//! it to the kernel, and is then followed, conntrack-like, from the flags of
//! the peer's segments only (the kernel's side of the conversation leaves
//! through another path):
//!
//! | state         | entered by                       | lives until                    | extended by        |
//! |---------------|----------------------------------|--------------------------------|--------------------|
//! | `Syn`         | the peer's SYN                   | + [`SYN_TIMEOUT_NS`]           | a retransmitted SYN |
//! | `Established` | a segment with ACK (no SYN)      | + [`ESTABLISHED_TIMEOUT_NS`]   | every segment      |
//! | `Closing`     | the peer's FIN                   | + [`CLOSING_TIMEOUT_NS`]       | nothing            |
//! | `Reset`       | a RST                            | + [`RESET_TIMEOUT_NS`]         | nothing            |
//!
//! A pinned flow goes to the kernel whatever the rules say now, `drop`
//! included: like the stack's own connections, flows under way are left alone
//! by a reload, which only decides where new flows go. FIN and RST only ever
//! shorten a flow's life. A SYN (without ACK) for a
//! flow in `Closing` or `Reset` is a new incarnation of the 4-tuple (as a
//! SYN in TIME-WAIT may be): the old pin is dropped and the rules decide anew.
//!
//! Bounds: at most [`KernelFlows::capacity`] entries (default
//! [`DEFAULT_CAPACITY`]), never more. When full, a new flow first makes room by
//! sweeping out expired entries (at most once per [`FULL_SWEEP_GAP_NS`], so a
//! SYN flood against a full table costs no sweep per packet); if none expired,
//! the flow is not pinned and counted as untracked. An untracked flow still
//! goes to the kernel by the rules; only a reload that moves its port during
//! its life would cut it. An entry is about 32 bytes in a table that grows on
//! demand (hashbrown keeps 1/8 of the buckets free): about 4 MiB per worker
//! when full at the default capacity.
//!
//! What it does not do: it reads no sequence numbers, so a forged RST or FIN
//! with the right 4-tuple shortens a pin (the kernel, which checks them, keeps
//! its connection; only a reload moving the port within the pin's remaining
//! life would then cut it). It sees only the peer's FIN: a peer that half-closes
//! while the kernel keeps sending for longer than [`CLOSING_TIMEOUT_NS`] loses
//! its pin. Flows the kernel had before the process started, or that were
//! untracked, are not picked up mid-stream (an ACK is not enough to pin: a
//! flood of forged ACKs would otherwise fill the table with hour-long entries).

use hashbrown::HashMap;

use super::Stack;
use crate::tcp::FourTuple;
use crate::wire::TcpFlags;

const SECOND_NS: u64 = 1_000_000_000;

/// How long a flow lives after the peer's SYN until the handshake completes:
/// short, so that a SYN flood at a kernel port cannot hold the table for long.
/// A handshake takes a round trip; 30 s also covers the kernel's first four
/// SYN-ACK retransmissions (1, 3, 7 and 15 s after the SYN), and a client's
/// retransmitted SYN starts the timeout again.
pub const SYN_TIMEOUT_NS: u64 = 30 * SECOND_NS;

/// How long an established flow lives after its last segment: 2 h 15 min.
/// Linux's default keepalive (`tcp_keepalive_time`) probes an idle connection
/// after 2 hours, and 75 s apart after that (`tcp_keepalive_intvl`); a pin that
/// outlives one idle period plus a few probes is never lost by an idle
/// connection that is kept alive, whichever end sends the probes. conntrack
/// uses 5 days, but its table is the NAT's memory: ours only guards against a
/// reload, and a dead flow (the kernel reset it, and its RST left through
/// the kernel's own path, unseen) holds a bounded slot that long.
pub const ESTABLISHED_TIMEOUT_NS: u64 = (2 * 3600 + 15 * 60) * SECOND_NS;

/// How long a flow lives after the peer's FIN: 2 minutes, conntrack's
/// TIME-WAIT (2 MSL), twice Linux's 60 s TIME-WAIT: room for the last ACKs and
/// for retransmitted FINs. At the default capacity it allows about 540 flows
/// closed per second per worker before new flows go untracked.
pub const CLOSING_TIMEOUT_NS: u64 = 120 * SECOND_NS;

/// How long a flow lives after a RST: long enough for segments already in
/// flight to still reach the kernel rather than draw a RST from the stack.
pub const RESET_TIMEOUT_NS: u64 = 10 * SECOND_NS;

/// The default bound on pinned flows per worker.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// The least time between two sweeps made by new flows finding the table full
/// (the worker's own [`KernelFlows::expire`] is not held to it).
pub const FULL_SWEEP_GAP_NS: u64 = 100_000_000;

/// Where a pinned flow stands, from the peer's segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// The peer's SYN was seen, not yet an ACK.
    Syn,
    /// The handshake went through.
    Established,
    /// The peer sent a FIN.
    Closing,
    /// A RST was seen.
    Reset,
}

/// One pinned flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Its state.
    pub state: FlowState,
    /// When it expires (monotonic ns): pinned while `now < expires_ns`.
    pub expires_ns: u64,
}

impl Flow {
    /// A flow pinned by its SYN at `now_ns`.
    fn new(now_ns: u64) -> Self {
        Flow {
            state: FlowState::Syn,
            expires_ns: now_ns.saturating_add(SYN_TIMEOUT_NS),
        }
    }

    /// The flow after a segment of the peer's with `flags` at `now_ns`, or
    /// `None` when the segment starts a new incarnation of the 4-tuple.
    fn on_segment(self, flags: TcpFlags, now_ns: u64) -> Option<Flow> {
        let mut flow = self;
        let after = |timeout: u64| now_ns.saturating_add(timeout);
        let new_syn = is_new_syn(flags);
        match flow.state {
            FlowState::Closing | FlowState::Reset if new_syn => return None,
            FlowState::Closing | FlowState::Reset => {}
            FlowState::Syn if new_syn => {
                flow.expires_ns = flow.expires_ns.max(after(SYN_TIMEOUT_NS));
            }
            FlowState::Syn => {
                if flags.contains(TcpFlags::ACK) && !flags.contains(TcpFlags::SYN) {
                    flow.state = FlowState::Established;
                    flow.expires_ns = after(ESTABLISHED_TIMEOUT_NS);
                }
            }
            FlowState::Established => flow.expires_ns = after(ESTABLISHED_TIMEOUT_NS),
        }
        if flags.contains(TcpFlags::RST) {
            if flow.state != FlowState::Reset {
                flow.state = FlowState::Reset;
                flow.expires_ns = flow.expires_ns.min(after(RESET_TIMEOUT_NS));
            }
        } else if flags.contains(TcpFlags::FIN)
            && matches!(flow.state, FlowState::Syn | FlowState::Established)
        {
            flow.state = FlowState::Closing;
            flow.expires_ns = flow.expires_ns.min(after(CLOSING_TIMEOUT_NS));
        }
        Some(flow)
    }
}

/// Whether `flags` open a flow: SYN, without ACK, RST or FIN.
#[inline]
/// Whether a segment opens a flow: a SYN or a SYN-ACK (the reply to the
/// kernel's own connect), without RST or FIN.
pub fn opens_a_flow(flags: TcpFlags) -> bool {
    flags.0 & (TcpFlags::SYN | TcpFlags::RST | TcpFlags::FIN).0 == TcpFlags::SYN.0
}

/// Whether a segment is a SYN without ACK, RST or FIN.
pub fn is_new_syn(flags: TcpFlags) -> bool {
    flags.0 & (TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN).0 == TcpFlags::SYN.0
}

/// One worker's TCP flows pinned to the kernel, keyed by 4-tuple (local: our
/// address and port; remote: the peer's). See the module documentation.
pub struct KernelFlows {
    flows: HashMap<FourTuple, Flow, ahash::RandomState>,
    capacity: usize,
    untracked: u64,
    /// No entry expires before this (a lower bound: exact after a sweep,
    /// lowered when an entry is added or shortened, left alone when one is
    /// extended); `u64::MAX` when the table is empty.
    earliest_expiry_ns: u64,
    /// When a new flow that found the table full last swept it.
    last_full_sweep_ns: Option<u64>,
}

impl std::fmt::Debug for KernelFlows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelFlows")
            .field("len", &self.flows.len())
            .field("capacity", &self.capacity)
            .field("untracked", &self.untracked)
            .finish_non_exhaustive()
    }
}

impl KernelFlows {
    /// An empty table of [`DEFAULT_CAPACITY`] flows. `hasher` must be seeded
    /// (the keys come from the network).
    pub fn new(hasher: ahash::RandomState) -> Self {
        Self::with_capacity(DEFAULT_CAPACITY, hasher)
    }

    /// An empty table that never holds more than `capacity` flows. Memory is
    /// taken as the table fills, not up front.
    pub fn with_capacity(capacity: usize, hasher: ahash::RandomState) -> Self {
        KernelFlows {
            flows: HashMap::with_hasher(hasher),
            capacity,
            untracked: 0,
            earliest_expiry_ns: u64::MAX,
            last_full_sweep_ns: None,
        }
    }

    /// Flows in the table, expired ones not yet swept out included.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The most flows the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// New flows not pinned because the table was full, since it was made.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// The entry of `tuple`, as stored (expired or not).
    pub fn get(&self, tuple: &FourTuple) -> Option<Flow> {
        self.flows.get(tuple).copied()
    }

    /// A segment of the peer's with `flags` arrived at `now_ns` for `tuple`:
    /// true if the flow is pinned (and not expired), and then its state
    /// follows the segment. False if it is not, the rules decide; an expired
    /// entry, or one that the segment (a SYN after FIN or RST) replaces by a
    /// new flow, is removed on the way.
    #[inline]
    pub fn track(&mut self, tuple: &FourTuple, flags: TcpFlags, now_ns: u64) -> bool {
        if self.flows.is_empty() {
            return false;
        }
        let Some(flow) = self.flows.get_mut(tuple) else {
            return false;
        };
        let next = if now_ns < flow.expires_ns {
            flow.on_segment(flags, now_ns)
        } else {
            None
        };
        match next {
            Some(next) => {
                *flow = next;
                self.earliest_expiry_ns = self.earliest_expiry_ns.min(next.expires_ns);
                true
            }
            None => {
                self.flows.remove(tuple);
                false
            }
        }
    }

    /// Pin a new flow from its SYN at `now_ns`. False if the table is full of
    /// live flows: the flow is counted as untracked.
    pub fn pin(&mut self, tuple: &FourTuple, now_ns: u64) -> bool {
        let flow = Flow::new(now_ns);
        if let Some(old) = self.flows.get_mut(tuple) {
            *old = flow;
        } else {
            if self.flows.len() >= self.capacity {
                let gap_over = self
                    .last_full_sweep_ns
                    .is_none_or(|last| now_ns >= last.saturating_add(FULL_SWEEP_GAP_NS));
                if gap_over && now_ns >= self.earliest_expiry_ns {
                    self.last_full_sweep_ns = Some(now_ns);
                    self.expire(now_ns);
                }
                if self.flows.len() >= self.capacity {
                    self.untracked += 1;
                    return false;
                }
            }
            self.flows.insert(*tuple, flow);
        }
        self.earliest_expiry_ns = self.earliest_expiry_ns.min(flow.expires_ns);
        true
    }

    /// Remove the flows expired at `now_ns`; returns how many. Costs nothing
    /// when none can have expired, one pass over the table otherwise: for
    /// the worker's housekeeping, about once a second.
    pub fn expire(&mut self, now_ns: u64) -> usize {
        if now_ns < self.earliest_expiry_ns {
            return 0;
        }
        let before = self.flows.len();
        let mut earliest = u64::MAX;
        self.flows.retain(|_, flow| {
            let live = now_ns < flow.expires_ns;
            if live {
                earliest = earliest.min(flow.expires_ns);
            }
            live
        });
        self.earliest_expiry_ns = earliest;
        before - self.flows.len()
    }
}

impl Stack {
    /// Whether there is a kernel exception port (the default: yes). With
    /// one, the kernel's TCP flows are pinned across reloads, and ARP
    /// replies to our address go to the kernel too (it may have asked).
    /// Without one, the kernel's share is dropped: a pin would only keep a
    /// retransmitted SYN away from a service a reload just gave its port
    /// to, and an ARP reply that answered our own request is ours alone.
    pub fn set_kernel_port(&mut self, present: bool) {
        self.kernel_port = present;
    }

    /// The TCP flows pinned to the kernel.
    pub fn kernel_flows(&self) -> &KernelFlows {
        &self.kernel_flows
    }

    /// Forget the kernel flows expired at `now_ns`, and publish the table's
    /// size and untracked count. For the worker's housekeeping, about once a
    /// second: it costs one pass over the table when something may have
    /// expired, nothing otherwise. Returns how many flows were forgotten.
    pub fn expire_kernel_flows(&mut self, now_ns: u64) -> usize {
        let expired = self.kernel_flows.expire(now_ns);
        self.publish_kernel_flows();
        expired
    }

    /// Set the `kernel_flows` gauge and the `kernel_flows_untracked` counter
    /// from the table. Called whenever the table changes size (a flow pinned
    /// or refused, a stale entry dropped on lookup, a sweep): two stores, so
    /// the gauge is current without waiting for the next sweep.
    #[inline]
    pub(super) fn publish_kernel_flows(&self) {
        self.counters
            .kernel_flows
            .set(self.kernel_flows.len() as u64);
        self.counters
            .kernel_flows_untracked
            .set(self.kernel_flows.untracked());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const S: u64 = SECOND_NS;

    fn tuple(remote_port: u16) -> FourTuple {
        FourTuple {
            local_ip: Ipv4Addr::new(198, 18, 0, 2),
            local_port: 8080,
            remote_ip: Ipv4Addr::new(198, 18, 0, 1),
            remote_port,
        }
    }

    fn table(capacity: usize) -> KernelFlows {
        KernelFlows::with_capacity(capacity, ahash::RandomState::with_seeds(1, 2, 3, 4))
    }

    const ACK: TcpFlags = TcpFlags::ACK;
    const SYN: TcpFlags = TcpFlags::SYN;
    const FIN_ACK: TcpFlags = TcpFlags(TcpFlags::FIN.0 | TcpFlags::ACK.0);
    const RST: TcpFlags = TcpFlags::RST;

    #[test]
    fn a_syn_only_flow_expires_after_the_syn_timeout() {
        let mut flows = table(8);
        let t = tuple(1);
        assert!(!flows.track(&t, SYN, 0), "not pinned before pin()");
        assert!(flows.pin(&t, 5 * S));
        assert_eq!(
            flows.get(&t),
            Some(Flow {
                state: FlowState::Syn,
                expires_ns: 5 * S + SYN_TIMEOUT_NS
            })
        );
        assert_eq!(flows.expire(5 * S + SYN_TIMEOUT_NS - 1), 0);
        assert_eq!(flows.len(), 1);
        assert_eq!(flows.expire(5 * S + SYN_TIMEOUT_NS), 1);
        assert!(flows.is_empty());
        // Not swept yet, an expired entry is not pinned either, and goes.
        assert!(flows.pin(&t, 0));
        assert!(!flows.track(&t, ACK, SYN_TIMEOUT_NS));
        assert!(flows.is_empty());
    }

    #[test]
    fn a_retransmitted_syn_restarts_the_syn_timeout_but_other_segments_do_not() {
        let mut flows = table(8);
        let t = tuple(1);
        flows.pin(&t, 0);
        assert!(flows.track(&t, SYN, 20 * S));
        assert_eq!(flows.get(&t).unwrap().expires_ns, 20 * S + SYN_TIMEOUT_NS);
        // A SYN-ACK from the peer is no handshake: no promotion, no extension.
        assert!(flows.track(&t, SYN | ACK, 25 * S));
        assert_eq!(
            flows.get(&t),
            Some(Flow {
                state: FlowState::Syn,
                expires_ns: 20 * S + SYN_TIMEOUT_NS
            })
        );
    }

    #[test]
    fn an_ack_establishes_and_every_segment_extends() {
        let mut flows = table(8);
        let t = tuple(1);
        flows.pin(&t, 0);
        assert!(flows.track(&t, ACK, S));
        assert_eq!(
            flows.get(&t),
            Some(Flow {
                state: FlowState::Established,
                expires_ns: S + ESTABLISHED_TIMEOUT_NS
            })
        );
        // Long past the SYN timeout, still pinned; each segment extends.
        let later = S + ESTABLISHED_TIMEOUT_NS - 1;
        assert_eq!(flows.expire(later), 0);
        assert!(flows.track(&t, ACK | TcpFlags::PSH, later));
        assert_eq!(
            flows.get(&t).unwrap().expires_ns,
            later + ESTABLISHED_TIMEOUT_NS
        );
        // A SYN on an established flow is the kernel's to answer (a
        // challenge ACK): still pinned.
        assert!(flows.track(&t, SYN, later + 1));
        assert_eq!(flows.get(&t).unwrap().state, FlowState::Established);
    }

    #[test]
    fn a_fin_shortens_and_nothing_extends_it_afterwards() {
        let mut flows = table(8);
        let t = tuple(1);
        flows.pin(&t, 0);
        flows.track(&t, ACK, S);
        assert!(flows.track(&t, FIN_ACK, 100 * S));
        let closing = Flow {
            state: FlowState::Closing,
            expires_ns: 100 * S + CLOSING_TIMEOUT_NS,
        };
        assert_eq!(flows.get(&t), Some(closing));
        // The last ACK, a retransmitted FIN: still the kernel's, not extended.
        assert!(flows.track(&t, ACK, 150 * S));
        assert!(flows.track(&t, FIN_ACK, 160 * S));
        assert_eq!(flows.get(&t), Some(closing));
        assert!(!flows.track(&t, ACK, closing.expires_ns));
        assert!(flows.is_empty());
        // FIN|ACK straight after the SYN: the handshake and the close at once.
        flows.pin(&t, 0);
        assert!(flows.track(&t, FIN_ACK, S));
        assert_eq!(
            flows.get(&t),
            Some(Flow {
                state: FlowState::Closing,
                expires_ns: S + CLOSING_TIMEOUT_NS
            })
        );
    }

    #[test]
    fn a_rst_shortens_further_and_nothing_extends_it_afterwards() {
        let mut flows = table(8);
        let t = tuple(1);
        flows.pin(&t, 0);
        flows.track(&t, ACK, S);
        flows.track(&t, FIN_ACK, 2 * S);
        assert!(flows.track(&t, RST, 3 * S));
        let reset = Flow {
            state: FlowState::Reset,
            expires_ns: 3 * S + RESET_TIMEOUT_NS,
        };
        assert_eq!(flows.get(&t), Some(reset));
        assert!(flows.track(&t, ACK, 4 * S));
        assert!(flows.track(&t, RST | ACK, 5 * S));
        assert!(flows.track(&t, FIN_ACK, 6 * S));
        assert_eq!(flows.get(&t), Some(reset));
        assert!(flows.track(&t, ACK, reset.expires_ns - 1));
        assert!(!flows.track(&t, ACK, reset.expires_ns));
        // A RST never lengthens: in the last second of a FIN's timeout, it
        // keeps the earlier expiry.
        flows.pin(&t, 0);
        flows.track(&t, FIN_ACK, 0);
        flows.track(&t, RST, CLOSING_TIMEOUT_NS - S);
        assert_eq!(flows.get(&t).unwrap().expires_ns, CLOSING_TIMEOUT_NS);
    }

    #[test]
    fn a_syn_after_the_close_is_a_new_flow_for_the_rules() {
        let mut flows = table(8);
        for last in [FIN_ACK, RST] {
            let t = tuple(1);
            flows.pin(&t, 0);
            flows.track(&t, ACK, S);
            flows.track(&t, last, 2 * S);
            assert!(!flows.track(&t, SYN, 3 * S), "after {last}");
            assert!(flows.is_empty(), "after {last}");
        }
    }

    #[test]
    fn the_table_never_grows_beyond_its_capacity() {
        let mut flows = table(4);
        for port in 0..4 {
            assert!(flows.pin(&tuple(port), 0));
        }
        // Full of live flows: the new ones are untracked.
        for port in 4..10 {
            assert!(!flows.pin(&tuple(port), S));
            assert!(!flows.track(&tuple(port), ACK, S));
        }
        assert_eq!(flows.len(), 4);
        assert_eq!(flows.untracked(), 6);
        // Re-pinning a flow already in the table takes no room.
        assert!(flows.pin(&tuple(0), S));
        assert_eq!((flows.len(), flows.untracked()), (4, 6));
        // Two flows close with a RST; once expired they make room, and the
        // table sweeps them out itself when it is full.
        flows.track(&tuple(1), RST, 2 * S);
        flows.track(&tuple(2), RST, 2 * S);
        assert!(!flows.pin(&tuple(20), 3 * S), "not expired yet");
        let after = 2 * S + RESET_TIMEOUT_NS;
        assert!(flows.pin(&tuple(21), after));
        assert!(flows.pin(&tuple(22), after));
        assert!(!flows.pin(&tuple(23), after));
        assert_eq!((flows.len(), flows.untracked()), (4, 8));
        assert!(flows.get(&tuple(1)).is_none() && flows.get(&tuple(2)).is_none());
        // A capacity of zero pins nothing.
        let mut none = table(0);
        assert!(!none.pin(&tuple(1), 0));
        assert_eq!((none.len(), none.untracked()), (0, 1));
    }

    #[test]
    fn a_full_table_sweeps_at_most_once_per_gap() {
        let mut flows = table(2);
        let ms = 1_000_000;
        flows.pin(&tuple(1), 0);
        flows.pin(&tuple(2), 10 * ms);
        // At SYN_TIMEOUT the first one has expired: a sweep removes it.
        assert!(flows.pin(&tuple(3), SYN_TIMEOUT_NS));
        // The second has expired 10 ms later, but the next sweep waits until
        // the gap is over: meanwhile new flows are untracked.
        assert!(!flows.pin(&tuple(4), SYN_TIMEOUT_NS + FULL_SWEEP_GAP_NS - 1));
        assert_eq!(
            flows.get(&tuple(2)).unwrap().expires_ns,
            SYN_TIMEOUT_NS + 10 * ms
        );
        assert!(flows.pin(&tuple(4), SYN_TIMEOUT_NS + FULL_SWEEP_GAP_NS));
        assert_eq!(flows.untracked(), 1);
        assert_eq!(flows.len(), 2);
        assert!(flows.get(&tuple(2)).is_none());
    }

    #[test]
    fn expire_removes_exactly_the_expired_flows() {
        let mut flows = table(64);
        // Flows in every state, at various times.
        for port in 0..40u16 {
            let t = tuple(port);
            let at = u64::from(port) * S;
            flows.pin(&t, at);
            match port % 4 {
                0 => {}
                1 => {
                    flows.track(&t, ACK, at);
                }
                2 => {
                    flows.track(&t, ACK, at);
                    flows.track(&t, FIN_ACK, at);
                }
                _ => {
                    flows.track(&t, RST, at);
                }
            }
        }
        let expected: Vec<Flow> = (0..40).map(|p| flows.get(&tuple(p)).unwrap()).collect();
        let mut now = 0;
        while !flows.is_empty() {
            now += 7 * S;
            let live_before = flows.len();
            let removed = flows.expire(now);
            assert_eq!(live_before - removed, flows.len());
            for (port, flow) in expected.iter().enumerate() {
                let kept = flows.get(&tuple(port as u16));
                if flow.expires_ns <= now {
                    assert_eq!(kept, None, "port {port} at {now}");
                } else {
                    assert_eq!(kept, Some(*flow), "port {port} at {now}");
                }
            }
        }
        assert_eq!(flows.earliest_expiry_ns, u64::MAX);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Pin(u16),
        Segment(u16, u8),
        Expire,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..12u16).prop_map(Op::Pin),
            (0..12u16, any::<u8>()).prop_map(|(p, f)| Op::Segment(p, f)),
            Just(Op::Expire),
        ]
    }

    proptest! {
        /// Whatever the segments, pins and sweeps: the table stays within its
        /// capacity, its lower bound on expiries holds, no pin outlives the
        /// longest timeout, a closing or reset flow is never extended, and a
        /// sweep leaves no expired entry.
        #[test]
        fn invariants_hold_under_any_traffic(
            capacity in 0..6usize,
            steps in proptest::collection::vec((op(), 0..(200 * S)), 1..200),
        ) {
            let mut flows = table(capacity);
            let mut now = 0;
            for (op, dt) in steps {
                now += dt;
                match op {
                    Op::Pin(p) => {
                        let (before, untracked) = (flows.len(), flows.untracked());
                        let pinned = flows.pin(&tuple(p), now);
                        prop_assert_eq!(pinned, flows.untracked() == untracked);
                        if pinned {
                            prop_assert_eq!(flows.get(&tuple(p)), Some(Flow::new(now)));
                        } else {
                            prop_assert!(before >= capacity);
                        }
                    }
                    Op::Segment(p, bits) => {
                        let before = flows.get(&tuple(p));
                        let pinned = flows.track(&tuple(p), TcpFlags(bits), now);
                        let after = flows.get(&tuple(p));
                        let live = before.is_some_and(|f| now < f.expires_ns);
                        prop_assert_eq!(pinned, after.is_some());
                        prop_assert!(!pinned || live);
                        if let (Some(b), Some(a)) = (before, after) {
                            if matches!(b.state, FlowState::Closing | FlowState::Reset) {
                                prop_assert!(a.expires_ns <= b.expires_ns);
                                prop_assert_ne!(a.state, FlowState::Syn);
                                prop_assert_ne!(a.state, FlowState::Established);
                            }
                        }
                    }
                    Op::Expire => {
                        flows.expire(now);
                        prop_assert!(flows.flows.values().all(|f| now < f.expires_ns));
                    }
                }
                prop_assert!(flows.len() <= capacity);
                for f in flows.flows.values() {
                    prop_assert!(f.expires_ns >= flows.earliest_expiry_ns);
                    prop_assert!(f.expires_ns <= now + ESTABLISHED_TIMEOUT_NS);
                }
            }
        }
    }
}
