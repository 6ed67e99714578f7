//! Per-worker counters.
//!
//! Each worker owns one [`WorkerCounters`], cache-line aligned so that two
//! workers never write the same line. Only the owning worker writes, with a
//! relaxed load and a relaxed store (a plain `mov` on x86: no locked
//! read-modify-write); any other thread may read at any time and sums the
//! workers' values itself (the control thread at scrape and at stop).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::config::MAX_RULES;

/// Why a packet was dropped. The names are stable: they are metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than the headers it claims to have.
    Truncated,
    /// IPv4 header with a version other than 4.
    BadVersion,
    /// IPv4 header length field below 20 or beyond the packet.
    BadHeaderLength,
    /// IPv4 total length below the header length or beyond the frame.
    BadTotalLength,
    /// IPv4 header checksum wrong.
    BadIpChecksum,
    /// ICMP or UDP checksum wrong.
    BadL4Checksum,
    /// A malformed ARP, ICMP, UDP or TCP header (a TCP data offset below
    /// 5 words among them).
    Malformed,
    /// An IPv4 fragment: shardnet does not reassemble.
    Fragment,
    /// Addressed to another host (IP or MAC).
    NotForUs,
    /// A rule (or the default action) said drop.
    Rule,
    /// Meant for the kernel, but no exception port is configured.
    NoKernelPort,
    /// The TX ring refused the packet.
    TxFull,
    /// A multi-segment buffer (scatter RX is not enabled).
    MultiSegment,
    /// No buffer could be allocated for a reply.
    NoBuffer,
    /// A TCP segment for a port a service listens on, matching no connection
    /// (answered with a RST where RFC 9293 says so).
    NoConnection,
    /// A SYN refused because the worker's connection table is full.
    ConnectionLimit,
    /// The exception port's queue towards the kernel was full.
    KernelQueueFull,
    /// The steering ring to the worker that owns the packet's flow was full
    /// (backpressure keeps this at zero: see `steer`).
    SteerQueueFull,
    /// A datagram for us from a source no host can have (RFC 1812 5.3.7, as
    /// Linux's `martian_source`): 0.0.0.0/8, 127.0.0.0/8, multicast,
    /// 255.255.255.255, our subnet's broadcast address or our own address.
    /// Also an ARP packet whose sender is such an address.
    MartianSource,
    /// A UDP datagram for a service that answers (echo) from source port 0:
    /// a reply could go nowhere (RFC 768: port 0 means "no reply").
    SourcePortZero,
    /// A UDP datagram for a service that answers (echo) from a port that
    /// could answer back (below 1024, or a port our rules give
    /// to an answering service): refused, as inetd does, so that a spoofed
    /// datagram cannot start a loop between two services.
    LoopProtection,
    /// An ARP packet from another host that claims our own IPv4 address as
    /// its sender (an address conflict, RFC 5227): not learnt, not answered.
    AddressConflict,
    /// TCP data the worker's buffer pool had no room for (its byte limit,
    /// `max_buffers_per_worker`, was reached): dropped unacknowledged, the
    /// peer retransmits.
    TcpNoBuffer,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 23] = [
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::BadHeaderLength,
        DropReason::BadTotalLength,
        DropReason::BadIpChecksum,
        DropReason::BadL4Checksum,
        DropReason::Malformed,
        DropReason::Fragment,
        DropReason::NotForUs,
        DropReason::Rule,
        DropReason::NoKernelPort,
        DropReason::TxFull,
        DropReason::MultiSegment,
        DropReason::NoBuffer,
        DropReason::NoConnection,
        DropReason::ConnectionLimit,
        DropReason::KernelQueueFull,
        DropReason::SteerQueueFull,
        DropReason::MartianSource,
        DropReason::SourcePortZero,
        DropReason::LoopProtection,
        DropReason::AddressConflict,
        DropReason::TcpNoBuffer,
    ];

    /// The metric label of this reason.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::BadHeaderLength => "bad_header_length",
            DropReason::BadTotalLength => "bad_total_length",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::BadL4Checksum => "bad_l4_checksum",
            DropReason::Malformed => "malformed",
            DropReason::Fragment => "fragment",
            DropReason::NotForUs => "not_for_us",
            DropReason::Rule => "rule",
            DropReason::NoKernelPort => "no_kernel_port",
            DropReason::TxFull => "tx_full",
            DropReason::MultiSegment => "multi_segment",
            DropReason::NoBuffer => "no_buffer",
            DropReason::NoConnection => "no_connection",
            DropReason::ConnectionLimit => "connection_limit",
            DropReason::KernelQueueFull => "kernel_queue_full",
            DropReason::SteerQueueFull => "steer_queue_full",
            DropReason::MartianSource => "martian_source",
            DropReason::SourcePortZero => "source_port_zero",
            DropReason::LoopProtection => "loop_protection",
            DropReason::AddressConflict => "address_conflict",
            DropReason::TcpNoBuffer => "tcp_no_buffer",
        }
    }
}

/// Upper bounds, in microseconds, of the TCP round-trip histogram's buckets
/// (the Prometheus `le` bounds; a last bucket takes everything above).
pub const RTT_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// One counter, written by one thread only.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n`. Only the owning worker may call this: it is a load and a store,
    /// not an atomic add.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Add one.
    #[inline(always)]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Overwrite (for gauges).
    #[inline(always)]
    pub fn set(&self, value: u64) {
        self.0.store(value, Relaxed);
    }

    /// The current value, from any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The counters of one worker.
#[derive(Debug)]
#[repr(align(128))] // two cache lines: adjacent-line prefetch pairs lines on x86
pub struct WorkerCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received (frames, Ethernet header included).
    pub rx_bytes: Counter,
    /// Frames transmitted.
    pub tx_packets: Counter,
    /// Bytes transmitted.
    pub tx_bytes: Counter,
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [Counter; DropReason::ALL.len()],
    /// ARP requests for our address answered.
    pub arp_replies_sent: Counter,
    /// Neighbours learnt or refreshed from ARP.
    pub arp_learnt: Counter,
    /// ICMP echo requests answered.
    pub icmp_echo_replies: Counter,
    /// UDP datagrams delivered to a service.
    pub udp_rx: Counter,
    /// UDP datagrams sent by a service.
    pub udp_tx: Counter,
    /// TCP connections open (gauge): every state but CLOSED, TIME-WAIT included.
    pub tcp_active: Counter,
    /// TCP connections in TIME-WAIT (gauge), kept as compact records; part of
    /// `tcp_active`.
    pub tcp_time_wait: Counter,
    /// TCP connections that ended without TIME-WAIT because the worker
    /// already kept `max_time_wait` records (Linux's TCPTimeWaitOverflow).
    pub tcp_time_wait_overflow: Counter,
    /// TCP connections accepted (passive opens reaching ESTABLISHED).
    pub tcp_opened_passive: Counter,
    /// TCP connections opened by us (active opens reaching ESTABLISHED).
    pub tcp_opened_active: Counter,
    /// TCP connections that ended in order.
    pub tcp_closed: Counter,
    /// TCP segments resent.
    pub tcp_retransmits: Counter,
    /// TCP resets received that closed a connection.
    pub tcp_resets_rx: Counter,
    /// TCP resets sent.
    pub tcp_resets_tx: Counter,
    /// TCP connections given up after too many retransmissions or probes.
    pub tcp_timeouts: Counter,
    /// TCP retransmission timer expirations (each backs the RTO off).
    pub tcp_rto_expired: Counter,
    /// TCP tail loss probes sent (RFC 8985 section 7).
    pub tcp_tail_loss_probes: Counter,
    /// TCP challenge ACKs (RFC 5961) sent.
    pub tcp_challenge_acks_sent: Counter,
    /// TCP challenge ACKs not sent: the connection's or the worker's limit.
    pub tcp_challenge_acks_limited: Counter,
    /// TCP ACKs sent in answer to out-of-window (or PAWS-failing) segments.
    pub tcp_out_of_window_acks_sent: Counter,
    /// Such ACKs not sent: the connection's limit.
    pub tcp_out_of_window_acks_limited: Counter,
    /// Half-open TCP connections (SYN-RECEIVED) dropped, silently, after
    /// their SYN-ACK retransmissions ran out.
    pub tcp_half_open_expired: Counter,
    /// TCP round-trip samples by bucket: `tcp_rtt[i]` counts samples of at
    /// most [`RTT_BUCKETS_US`]`[i]` (and above the previous bound); the last
    /// counts the rest.
    pub tcp_rtt: [Counter; RTT_BUCKETS_US.len() + 1],
    /// The sum of the TCP round-trip samples, in microseconds.
    pub tcp_rtt_sum_us: Counter,
    /// SYN-ACKs sent with a SYN cookie (the half-open backlog was full).
    pub tcp_syn_cookies_sent: Counter,
    /// Connections completed from a valid SYN cookie.
    pub tcp_syn_cookies_accepted: Counter,
    /// TCP segments received for a connection or listener.
    pub tcp_rx_segments: Counter,
    /// TCP segments sent.
    pub tcp_tx_segments: Counter,
    /// Packets queued towards the kernel's exception port (drops while its
    /// queue is full are counted under `kernel_queue_full` instead).
    pub to_kernel: Counter,
    /// The kernel's packets this worker sent out of the port.
    pub from_kernel: Counter,
    /// Packets received here and handed to the worker that owns their flow
    /// (software steering; drops when its ring is full are counted under
    /// `steer_queue_full` instead).
    pub steered_out: Counter,
    /// Packets another worker received and handed to this one, their owner.
    pub steered_in: Counter,
    /// Poll rounds in which this worker left its RX queue alone because a
    /// steering ring to another worker had no room for a burst
    /// (backpressure: the port's RX ring holds, or drops and counts, what
    /// comes meanwhile).
    pub steer_backpressure_rounds: Counter,
    /// TCP flows pinned to the kernel (gauge): they stay the kernel's across
    /// rules reloads (see `stack::kernel_pins`).
    pub kernel_flows: Counter,
    /// New kernel TCP flows not pinned because the flow table was full.
    pub kernel_flows_untracked: Counter,
    /// Hits per rule, indexed by rule number.
    pub rule_hits: [Counter; MAX_RULES],
    /// Flows that matched no rule and took the default action.
    pub default_hits: Counter,
    /// Poll iterations that received at least one packet.
    pub busy_polls: Counter,
    /// Poll iterations that received nothing.
    pub idle_polls: Counter,
    /// Buffers of this worker's pool in use (gauge), where the backend knows.
    pub pool_in_use: Counter,
    /// Bytes of TCP send and receive buffers lent to connections (gauge).
    pub tcp_buffer_bytes: Counter,
    /// The most bytes of TCP buffers the worker lends (gauge: its pool's
    /// limit, `max_buffers_per_worker * buffer_size`).
    pub tcp_buffer_bytes_limit: Counter,
    /// `http` connections reset: a request not complete within the header
    /// timeout.
    pub http_header_timeouts: Counter,
    /// `http` kept-alive connections closed after the idle timeout.
    pub http_idle_timeouts: Counter,
    /// `http` connections reset: a response not read within the timeout.
    pub http_send_timeouts: Counter,
    /// Monotonic nanoseconds of the worker's last loop iteration (heartbeat).
    pub heartbeat_ns: Counter,
    /// The generation of the rules the worker applies (gauge).
    pub rules_generation: Counter,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            rx_packets: Counter::default(),
            rx_bytes: Counter::default(),
            tx_packets: Counter::default(),
            tx_bytes: Counter::default(),
            drops: std::array::from_fn(|_| Counter::default()),
            arp_replies_sent: Counter::default(),
            arp_learnt: Counter::default(),
            icmp_echo_replies: Counter::default(),
            udp_rx: Counter::default(),
            udp_tx: Counter::default(),
            tcp_active: Counter::default(),
            tcp_time_wait: Counter::default(),
            tcp_time_wait_overflow: Counter::default(),
            tcp_opened_passive: Counter::default(),
            tcp_opened_active: Counter::default(),
            tcp_closed: Counter::default(),
            tcp_retransmits: Counter::default(),
            tcp_resets_rx: Counter::default(),
            tcp_resets_tx: Counter::default(),
            tcp_timeouts: Counter::default(),
            tcp_rto_expired: Counter::default(),
            tcp_tail_loss_probes: Counter::default(),
            tcp_challenge_acks_sent: Counter::default(),
            tcp_challenge_acks_limited: Counter::default(),
            tcp_out_of_window_acks_sent: Counter::default(),
            tcp_out_of_window_acks_limited: Counter::default(),
            tcp_half_open_expired: Counter::default(),
            tcp_rtt: std::array::from_fn(|_| Counter::default()),
            tcp_rtt_sum_us: Counter::default(),
            tcp_syn_cookies_sent: Counter::default(),
            tcp_syn_cookies_accepted: Counter::default(),
            tcp_rx_segments: Counter::default(),
            tcp_tx_segments: Counter::default(),
            to_kernel: Counter::default(),
            from_kernel: Counter::default(),
            steered_out: Counter::default(),
            steered_in: Counter::default(),
            steer_backpressure_rounds: Counter::default(),
            kernel_flows: Counter::default(),
            kernel_flows_untracked: Counter::default(),
            rule_hits: std::array::from_fn(|_| Counter::default()),
            default_hits: Counter::default(),
            busy_polls: Counter::default(),
            idle_polls: Counter::default(),
            pool_in_use: Counter::default(),
            tcp_buffer_bytes: Counter::default(),
            tcp_buffer_bytes_limit: Counter::default(),
            http_header_timeouts: Counter::default(),
            http_idle_timeouts: Counter::default(),
            http_send_timeouts: Counter::default(),
            heartbeat_ns: Counter::default(),
            rules_generation: Counter::default(),
        }
    }
}

impl WorkerCounters {
    /// Count a drop.
    #[inline(always)]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    /// The drop count of one reason.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    /// Count one TCP round-trip sample.
    #[inline]
    pub fn record_rtt(&self, rtt_ns: u64) {
        let us = rtt_ns / 1_000;
        // 14 bounds: a scan is as fast as a search and branch-predictable.
        let bucket = RTT_BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(RTT_BUCKETS_US.len());
        self.tcp_rtt[bucket].inc();
        self.tcp_rtt_sum_us.add(us);
    }

    /// All drops, whatever the reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order_and_named_uniquely() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }

    #[test]
    fn counters_do_not_share_cache_lines() {
        assert_eq!(std::mem::align_of::<WorkerCounters>(), 128);
        let counters = WorkerCounters::default();
        counters.count_drop(DropReason::Fragment);
        counters.count_drop(DropReason::Fragment);
        counters.rx_packets.add(5);
        assert_eq!(counters.drops_of(DropReason::Fragment), 2);
        assert_eq!(counters.total_drops(), 2);
        assert_eq!(counters.rx_packets.get(), 5);
    }

    #[test]
    fn rtt_samples_land_in_the_bucket_of_their_upper_bound() {
        let counters = WorkerCounters::default();
        counters.record_rtt(100_000); // exactly 100 us: the first bucket (le)
        counters.record_rtt(100_999); // 100 us after truncation
        counters.record_rtt(101_000);
        counters.record_rtt(3_000_000_000); // beyond the last bound
        let counts: Vec<u64> = counters.tcp_rtt.iter().map(Counter::get).collect();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[RTT_BUCKETS_US.len()], 1);
        assert_eq!(counts.iter().sum::<u64>(), 4);
        assert_eq!(counters.tcp_rtt_sum_us.get(), 100 + 100 + 101 + 3_000_000);
    }
}
