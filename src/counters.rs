//! Per-worker counters.
//!
//! Each worker owns one [`WorkerCounters`], cache-line aligned so that two
//! workers never write the same line. Only the owning worker writes, with a
//! relaxed load and a relaxed store (a plain `mov` on x86: no locked
//! read-modify-write); any other thread may read at any time and sums the
//! workers' values itself (the control thread at scrape and at stop).
//!
//! Each counter is declared once, in the `worker_counters!` table below: its
//! field and doc, the Prometheus family (and label value) that shows it, and
//! its key in the counters logged at stop. `/metrics`
//! (`control::metrics`) and `runtime::counters_json` iterate
//! [`WorkerCounters::SCALARS`] rather than naming fields; a family's HELP and
//! labels are declared once, in `control::metrics::FAMILIES`.

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
    /// A UDP datagram for an async service's socket whose receive queue was
    /// full (`rt::udp::RECV_QUEUE` datagrams unread).
    UdpSocketOverflow,
    /// A UDP datagram the rules give an async service, on a port where no
    /// socket of the worker that got it is bound (`rt::UdpSocket::bind`),
    /// or where the socket is connected to another peer.
    UdpNoSocket,
    /// A datagram an async service's socket sent that could not leave: no
    /// route to it, or no ARP answer for its next hop within
    /// `rt::udp::RESOLVE_WAIT_NS`.
    UdpUnresolved,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 26] = [
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
        DropReason::UdpSocketOverflow,
        DropReason::UdpNoSocket,
        DropReason::UdpUnresolved,
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
            DropReason::UdpSocketOverflow => "udp_socket_overflow",
            DropReason::UdpNoSocket => "udp_no_socket",
            DropReason::UdpUnresolved => "udp_unresolved",
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

/// How one scalar counter of [`WorkerCounters`] is shown outside the
/// worker: the row of [`WorkerCounters::SCALARS`] that the `worker_counters!`
/// declaration below writes for it.
#[derive(Debug)]
pub struct CounterInfo {
    /// The field's name.
    pub field: &'static str,
    /// The Prometheus family (`shardnet_...`, declared with its HELP and
    /// labels in `control::metrics::FAMILIES`) that shows it per worker,
    /// with the value of the family's label after `worker` if it has one;
    /// `None` where `/metrics` shows it its own way (the declaration says
    /// how).
    pub metric: Option<(&'static str, Option<&'static str>)>,
    /// Its key in a worker's object of the counters logged at stop
    /// (`runtime::counters_json`); a dot nests it (`tcp.active`).
    pub json: Option<&'static str>,
    /// Its counter in a worker's counters.
    pub read: fn(&WorkerCounters) -> &Counter,
}

/// `Some($x)`, or `None` without one.
macro_rules! some {
    () => {
        None
    };
    ($x:expr) => {
        Some($x)
    };
}

/// Declares [`WorkerCounters`]: its scalar counters, each once with its doc,
/// its Prometheus family (and label value) and its JSON key, and its arrays.
/// The struct, its `Default` and [`WorkerCounters::SCALARS`] come from here.
macro_rules! worker_counters {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident {
            $(metric: $metric:literal $(/ $label:literal)?,)?
            $(json: $json:literal,)?
        }
    )*) => {
        /// The counters of one worker.
        #[derive(Debug)]
        #[repr(align(128))] // two cache lines: adjacent-line prefetch pairs lines on x86
        pub struct WorkerCounters {
            $($(#[doc = $doc])* pub $field: Counter,)*
            /// Drops by reason, indexed by `DropReason as usize`.
            pub drops: [Counter; DropReason::ALL.len()],
            /// TCP round-trip samples by bucket: `tcp_rtt[i]` counts samples of
            /// at most [`RTT_BUCKETS_US`]`[i]` (and above the previous bound);
            /// the last counts the rest.
            pub tcp_rtt: [Counter; RTT_BUCKETS_US.len() + 1],
            /// Hits per rule, indexed by rule number.
            pub rule_hits: [Counter; MAX_RULES],
        }

        impl Default for WorkerCounters {
            fn default() -> Self {
                WorkerCounters {
                    $($field: Counter::default(),)*
                    drops: std::array::from_fn(|_| Counter::default()),
                    tcp_rtt: std::array::from_fn(|_| Counter::default()),
                    rule_hits: std::array::from_fn(|_| Counter::default()),
                }
            }
        }

        impl WorkerCounters {
            /// Every scalar counter, in declaration order, and how it is shown.
            pub const SCALARS: &'static [CounterInfo] = &[$(CounterInfo {
                field: stringify!($field),
                metric: some!($(($metric, some!($($label)?)))?),
                json: some!($($json)?),
                read: |c| &c.$field,
            }),*];
        }
    };
}

worker_counters! {
    /// Frames received.
    rx_packets { metric: "shardnet_rx_packets_total", json: "rx_packets", }
    /// Bytes received (frames, Ethernet header included).
    rx_bytes { metric: "shardnet_rx_bytes_total", json: "rx_bytes", }
    /// Frames transmitted.
    tx_packets { metric: "shardnet_tx_packets_total", json: "tx_packets", }
    /// Bytes transmitted.
    tx_bytes { metric: "shardnet_tx_bytes_total", json: "tx_bytes", }
    /// ARP requests for our address answered.
    arp_replies_sent { metric: "shardnet_arp_replies_total", json: "arp_replies_sent", }
    /// Neighbours learnt or refreshed from ARP.
    arp_learnt { metric: "shardnet_arp_learnt_total", }
    /// ICMP echo requests answered.
    icmp_echo_replies { metric: "shardnet_icmp_echo_replies_total", json: "icmp_echo_replies", }
    /// UDP datagrams delivered to a service.
    udp_rx { metric: "shardnet_udp_datagrams_total" / "rx", json: "udp_rx", }
    /// UDP datagrams sent by a service.
    udp_tx { metric: "shardnet_udp_datagrams_total" / "tx", json: "udp_tx", }
    /// TCP connections open (gauge): every state but CLOSED, TIME-WAIT included.
    tcp_active { metric: "shardnet_tcp_connections_active", json: "tcp.active", }
    /// TCP connections in TIME-WAIT (gauge), kept as compact records; part of
    /// `tcp_active`.
    tcp_time_wait { metric: "shardnet_tcp_connections_time_wait", json: "tcp.time_wait", }
    /// TCP connections that ended without TIME-WAIT because the worker
    /// already kept `max_time_wait` records (Linux's TCPTimeWaitOverflow).
    tcp_time_wait_overflow {
        metric: "shardnet_tcp_time_wait_overflow_total",
        json: "tcp.time_wait_overflow",
    }
    /// TCP connections accepted (passive opens reaching ESTABLISHED).
    tcp_opened_passive {
        metric: "shardnet_tcp_connections_opened_total" / "passive",
        json: "tcp.opened_passive",
    }
    /// TCP connections opened by us (active opens reaching ESTABLISHED).
    tcp_opened_active {
        metric: "shardnet_tcp_connections_opened_total" / "active",
        json: "tcp.opened_active",
    }
    /// TCP connections that ended in order.
    tcp_closed { metric: "shardnet_tcp_connections_closed_total", json: "tcp.closed", }
    /// TCP segments resent.
    tcp_retransmits { metric: "shardnet_tcp_retransmits_total", json: "tcp.retransmits", }
    /// TCP resets received that closed a connection.
    tcp_resets_rx { metric: "shardnet_tcp_resets_total" / "rx", json: "tcp.resets_rx", }
    /// TCP resets sent.
    tcp_resets_tx { metric: "shardnet_tcp_resets_total" / "tx", json: "tcp.resets_tx", }
    /// TCP connections given up after too many retransmissions or probes.
    tcp_timeouts { metric: "shardnet_tcp_timeouts_total", json: "tcp.timeouts", }
    /// TCP retransmission timer expirations (each backs the RTO off).
    tcp_rto_expired {
        metric: "shardnet_tcp_retransmission_timeouts_total",
        json: "tcp.rto_expired",
    }
    /// TCP tail loss probes sent (RFC 8985 section 7).
    tcp_tail_loss_probes {
        metric: "shardnet_tcp_tail_loss_probes_total",
        json: "tcp.tail_loss_probes",
    }
    /// TCP challenge ACKs (RFC 5961) sent.
    tcp_challenge_acks_sent {
        metric: "shardnet_tcp_challenge_acks_total" / "sent",
        json: "tcp.challenge_acks_sent",
    }
    /// TCP challenge ACKs not sent: the connection's or the worker's limit.
    tcp_challenge_acks_limited {
        metric: "shardnet_tcp_challenge_acks_total" / "limited",
        json: "tcp.challenge_acks_limited",
    }
    /// TCP ACKs sent in answer to out-of-window (or PAWS-failing) segments.
    tcp_out_of_window_acks_sent {
        metric: "shardnet_tcp_out_of_window_acks_total" / "sent",
        json: "tcp.out_of_window_acks_sent",
    }
    /// Such ACKs not sent: the connection's limit.
    tcp_out_of_window_acks_limited {
        metric: "shardnet_tcp_out_of_window_acks_total" / "limited",
        json: "tcp.out_of_window_acks_limited",
    }
    /// Half-open TCP connections (SYN-RECEIVED) dropped, silently, after
    /// their SYN-ACK retransmissions ran out.
    tcp_half_open_expired {
        metric: "shardnet_tcp_half_open_expired_total",
        json: "tcp.half_open_expired",
    }
    /// The sum of the TCP round-trip samples, in microseconds.
    // In the histogram shardnet_tcp_rtt_seconds, with tcp_rtt.
    tcp_rtt_sum_us {}
    /// SYN-ACKs sent with a SYN cookie (the half-open backlog was full).
    tcp_syn_cookies_sent {
        metric: "shardnet_tcp_syn_cookies_sent_total",
        json: "tcp.syn_cookies_sent",
    }
    /// Connections completed from a valid SYN cookie.
    tcp_syn_cookies_accepted {
        metric: "shardnet_tcp_syn_cookies_validated_total",
        json: "tcp.syn_cookies_accepted",
    }
    /// TCP segments received for a connection or listener.
    tcp_rx_segments { metric: "shardnet_tcp_segments_total" / "rx", json: "tcp.rx_segments", }
    /// TCP segments sent.
    tcp_tx_segments { metric: "shardnet_tcp_segments_total" / "tx", json: "tcp.tx_segments", }
    /// TCP segments of several frames handed to the NIC to cut (TSO); their
    /// frames count in `tcp_tx_segments`.
    tcp_tso_segments {
        metric: "shardnet_tcp_tso_segments_total",
        json: "tcp.tso_segments",
    }
    /// Packets queued towards the kernel's exception port (drops while its
    /// queue is full are counted under `kernel_queue_full` instead).
    // /metrics counts the exception port at the relay instead.
    to_kernel { json: "to_kernel", }
    /// The kernel's packets this worker sent out of the port.
    // /metrics counts the exception port at the relay instead.
    from_kernel { json: "from_kernel", }
    /// Packets received here and handed to the worker that owns their flow
    /// (software steering; drops when its ring is full are counted under
    /// `steer_queue_full` instead).
    steered_out { metric: "shardnet_steered_packets_total" / "out", json: "steered_out", }
    /// Packets another worker received and handed to this one, their owner.
    steered_in { metric: "shardnet_steered_packets_total" / "in", json: "steered_in", }
    /// Poll rounds in which this worker left its RX queue alone because a
    /// steering ring to another worker had no room for a burst
    /// (backpressure: the port's RX ring holds, or drops and counts, what
    /// comes meanwhile).
    steer_backpressure_rounds {
        metric: "shardnet_steer_backpressure_rounds_total",
        json: "steer_backpressure_rounds",
    }
    /// Cross-core messages ([`crate::smp`]) this worker sent to another
    /// worker (requests, and replies for `invoke_on_then`).
    smp_sent { metric: "shardnet_smp_messages_total" / "sent", json: "smp.sent", }
    /// Cross-core messages this worker received and ran.
    smp_received { metric: "shardnet_smp_messages_total" / "received", json: "smp.received", }
    /// Cross-core requests refused because the ring from this worker (or
    /// the inbox from a non-worker thread, counted at the target) was full.
    smp_queue_full { metric: "shardnet_smp_queue_full_total", json: "smp.queue_full", }
    /// Captured copies dropped because the ring to the capture client was
    /// full (the packets themselves went on: see `crate::capture`).
    capture_dropped { metric: "shardnet_capture_dropped_total", json: "capture_dropped", }
    /// TCP flows pinned to the kernel (gauge): they stay the kernel's across
    /// rules reloads (see `stack::kernel_pins`).
    kernel_flows { metric: "shardnet_kernel_flows_pinned", json: "kernel_flows", }
    /// New kernel TCP flows not pinned because the flow table was full.
    kernel_flows_untracked { metric: "shardnet_kernel_flows_untracked_total", }
    /// Flows that matched no rule and took the default action.
    // /metrics sums it over the workers (shardnet_default_action_total).
    default_hits { json: "default_hits", }
    /// Poll iterations that received at least one packet.
    busy_polls { metric: "shardnet_worker_polls_total" / "busy", json: "busy_polls", }
    /// Poll iterations that received nothing.
    idle_polls { metric: "shardnet_worker_polls_total" / "idle", json: "idle_polls", }
    /// Buffers of this worker's pool in use (gauge), where the backend knows.
    // shardnet_mempool_in_use, only where the pool's capacity is known.
    pool_in_use { json: "pool_in_use", }
    /// Bytes of TCP send and receive buffers lent to connections (gauge).
    tcp_buffer_bytes { metric: "shardnet_tcp_buffer_bytes", }
    /// The most bytes of TCP buffers the worker lends (gauge: its pool's
    /// limit, `max_buffers_per_worker * buffer_size`).
    tcp_buffer_bytes_limit { metric: "shardnet_tcp_buffer_limit_bytes", }
    /// `http` connections reset: a request not complete within the header
    /// timeout.
    http_header_timeouts { metric: "shardnet_http_timeouts_total" / "header", }
    /// `http` kept-alive connections closed after the idle timeout.
    http_idle_timeouts { metric: "shardnet_http_timeouts_total" / "idle", }
    /// `http` connections reset: a response not read within the timeout.
    http_send_timeouts { metric: "shardnet_http_timeouts_total" / "send", }
    /// Async tasks alive on the worker's executor (gauge).
    async_tasks { metric: "shardnet_async_tasks", json: "async.tasks", }
    /// Async tasks that panicked: each ended alone, its connections reset.
    async_task_panics {
        metric: "shardnet_async_task_panics_total",
        json: "async.task_panics",
    }
    /// Connections for an async service reset as they were accepted: no
    /// task of this worker listened on their port.
    async_refused { metric: "shardnet_async_refused_total", json: "async.refused", }
    /// Monotonic nanoseconds of the worker's last loop iteration (heartbeat).
    // /metrics shows its age (shardnet_worker_heartbeat_age_seconds).
    heartbeat_ns {}
    /// The generation of the rules the worker applies (gauge).
    rules_generation { metric: "shardnet_worker_rules_generation", }
}

impl WorkerCounters {
    /// Count a drop.
    #[inline(always)]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].inc();
    }

    /// Count `n` drops of one reason.
    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].add(n);
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
    fn scalars_read_their_own_field_and_keep_the_json_keys() {
        let counters = WorkerCounters::default();
        for (i, counter) in WorkerCounters::SCALARS.iter().enumerate() {
            (counter.read)(&counters).set(i as u64 + 1);
        }
        assert_eq!(counters.rx_packets.get(), 1);
        for (i, counter) in WorkerCounters::SCALARS.iter().enumerate() {
            assert_eq!(
                (counter.read)(&counters).get(),
                i as u64 + 1,
                "{}",
                counter.field
            );
        }
        // The keys of the counters logged at stop, which tests and
        // bench/http_vs_kernel_report.py read: these stay.
        let keys: Vec<&str> = WorkerCounters::SCALARS
            .iter()
            .filter_map(|c| c.json)
            .collect();
        assert_eq!(
            keys,
            [
                "rx_packets",
                "rx_bytes",
                "tx_packets",
                "tx_bytes",
                "arp_replies_sent",
                "icmp_echo_replies",
                "udp_rx",
                "udp_tx",
                "tcp.active",
                "tcp.time_wait",
                "tcp.time_wait_overflow",
                "tcp.opened_passive",
                "tcp.opened_active",
                "tcp.closed",
                "tcp.retransmits",
                "tcp.resets_rx",
                "tcp.resets_tx",
                "tcp.timeouts",
                "tcp.rto_expired",
                "tcp.tail_loss_probes",
                "tcp.challenge_acks_sent",
                "tcp.challenge_acks_limited",
                "tcp.out_of_window_acks_sent",
                "tcp.out_of_window_acks_limited",
                "tcp.half_open_expired",
                "tcp.syn_cookies_sent",
                "tcp.syn_cookies_accepted",
                "tcp.rx_segments",
                "tcp.tx_segments",
                "tcp.tso_segments",
                "to_kernel",
                "from_kernel",
                "steered_out",
                "steered_in",
                "steer_backpressure_rounds",
                "smp.sent",
                "smp.received",
                "smp.queue_full",
                "capture_dropped",
                "kernel_flows",
                "default_hits",
                "busy_polls",
                "idle_polls",
                "pool_in_use",
                "async.tasks",
                "async.task_panics",
                "async.refused",
            ]
        );
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
