//! `GET /metrics`: the workers' counters, summed at scrape time into the
//! `prometheus` crate's metric families by a custom [`Collector`], and
//! written in the Prometheus text format by its `TextEncoder`.
//!
//! Workers never touch this: each writes its own cache-line aligned
//! [`WorkerCounters`] with relaxed stores,
//! and a scrape reads them (relaxed loads) on the control thread. Every
//! family is declared once in [`FAMILIES`], with its HELP, TYPE and labels;
//! `README.md` lists them and `deploy/` uses exactly these names. Which
//! worker counter feeds which family is declared with the counter, in
//! `counters.rs` ([`WorkerCounters::SCALARS`]).

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use super::ControlPlane;
use crate::counters::{Counter, DropReason, WorkerCounters, RTT_BUCKETS_US};

/// One metric family: name, HELP, TYPE and label names.
#[derive(Debug)]
pub struct Family {
    /// The full name (`shardnet_...`).
    pub name: &'static str,
    /// The HELP text.
    pub help: &'static str,
    /// The TYPE.
    pub kind: Kind,
    /// Label names, in order.
    pub labels: &'static [&'static str],
}

/// A family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets at restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

macro_rules! families {
    ($($id:ident: $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $(
            #[doc = $help]
            const $id: Family = Family {
                name: $name,
                help: $help,
                kind: Kind::$kind,
                labels: &[$($label),*],
            };
        )*
        /// Every family `/metrics` may serve.
        pub const FAMILIES: &[Family] = &[$($id),*];
    };
}

families! {
    RX_PACKETS: "shardnet_rx_packets_total", Counter, ["worker"],
        "Frames received by the worker.";
    TX_PACKETS: "shardnet_tx_packets_total", Counter, ["worker"],
        "Frames transmitted by the worker.";
    RX_BYTES: "shardnet_rx_bytes_total", Counter, ["worker"],
        "Bytes received by the worker (whole frames).";
    TX_BYTES: "shardnet_tx_bytes_total", Counter, ["worker"],
        "Bytes transmitted by the worker (whole frames).";
    DROPS: "shardnet_drops_total", Counter, ["worker", "reason"],
        "Packets dropped by the worker, by reason.";
    ARP_REPLIES: "shardnet_arp_replies_total", Counter, ["worker"],
        "ARP requests for the stack's address answered.";
    ARP_LEARNT: "shardnet_arp_learnt_total", Counter, ["worker"],
        "Neighbours learnt or refreshed from ARP.";
    ICMP_ECHO: "shardnet_icmp_echo_replies_total", Counter, ["worker"],
        "ICMP echo requests answered.";
    UDP_DATAGRAMS: "shardnet_udp_datagrams_total", Counter, ["worker", "direction"],
        "UDP datagrams delivered to (rx) or sent by (tx) a service.";
    TCP_ACTIVE: "shardnet_tcp_connections_active", Gauge, ["worker"],
        "TCP connections in any state but CLOSED (TIME-WAIT included).";
    TCP_TIME_WAIT: "shardnet_tcp_connections_time_wait", Gauge, ["worker"],
        "TCP connections in TIME-WAIT (compact records; part of the active ones).";
    TCP_TIME_WAIT_OVERFLOW: "shardnet_tcp_time_wait_overflow_total", Counter, ["worker"],
        "TCP connections that ended without TIME-WAIT: the worker's TIME-WAIT records were at their limit.";
    TCP_OPENED: "shardnet_tcp_connections_opened_total", Counter, ["worker", "side"],
        "TCP connections that reached ESTABLISHED, accepted (passive) or opened (active).";
    TCP_CLOSED: "shardnet_tcp_connections_closed_total", Counter, ["worker"],
        "TCP connections that ended in order.";
    TCP_SEGMENTS: "shardnet_tcp_segments_total", Counter, ["worker", "direction"],
        "TCP segments received for a connection or listener (rx) and sent (tx).";
    TCP_RETRANSMITS: "shardnet_tcp_retransmits_total", Counter, ["worker"],
        "TCP segments resent.";
    TCP_RTO: "shardnet_tcp_retransmission_timeouts_total", Counter, ["worker"],
        "TCP retransmission timer expirations.";
    TCP_TIMEOUTS: "shardnet_tcp_timeouts_total", Counter, ["worker"],
        "TCP connections given up after too many retransmissions or probes.";
    TCP_TLP: "shardnet_tcp_tail_loss_probes_total", Counter, ["worker"],
        "TCP tail loss probes sent (RFC 8985).";
    TCP_CHALLENGE_ACKS: "shardnet_tcp_challenge_acks_total", Counter, ["worker", "result"],
        "TCP challenge ACKs (RFC 5961) sent, or not sent because of the per-connection or the per-worker limit (limited).";
    TCP_OOW_ACKS: "shardnet_tcp_out_of_window_acks_total", Counter, ["worker", "result"],
        "TCP ACKs answering out-of-window segments sent, or not sent because of the per-connection limit (limited).";
    TCP_HALF_OPEN_EXPIRED: "shardnet_tcp_half_open_expired_total", Counter, ["worker"],
        "Half-open TCP connections dropped silently after their SYN-ACK retransmissions ran out.";
    TCP_RESETS: "shardnet_tcp_resets_total", Counter, ["worker", "direction"],
        "TCP resets received that closed a connection (rx) and sent (tx).";
    TCP_TSO_SEGMENTS: "shardnet_tcp_tso_segments_total", Counter, ["worker"],
        "TCP segments of several frames handed to the NIC to cut (TSO); their frames count in shardnet_tcp_segments_total.";
    TCP_COOKIES_SENT: "shardnet_tcp_syn_cookies_sent_total", Counter, ["worker"],
        "SYN-ACKs sent with a SYN cookie because the half-open backlog was full.";
    TCP_COOKIES_VALID: "shardnet_tcp_syn_cookies_validated_total", Counter, ["worker"],
        "TCP connections completed from a valid SYN cookie.";
    TCP_RTT: "shardnet_tcp_rtt_seconds", Histogram, ["worker"],
        "TCP round-trip time samples (RFC 6298 measurements and timestamp echoes).";
    TCP_BUFFER_BYTES: "shardnet_tcp_buffer_bytes", Gauge, ["worker"],
        "Bytes of TCP send and receive buffers lent to connections (they grow from 4 KiB with what is in flight).";
    TCP_BUFFER_LIMIT: "shardnet_tcp_buffer_limit_bytes", Gauge, ["worker"],
        "The most bytes of TCP buffers the worker lends (max_buffers_per_worker x buffer_size); past it, data is dropped as tcp_no_buffer.";
    HTTP_TIMEOUTS: "shardnet_http_timeouts_total", Counter, ["worker", "kind"],
        "http connections ended by a timeout: a request not complete in time (header, reset), kept alive with no request (idle, closed), a response not read (send, reset).";
    ASYNC_TASKS: "shardnet_async_tasks", Gauge, ["worker"],
        "Async tasks alive on the worker's executor.";
    ASYNC_TASK_PANICS: "shardnet_async_task_panics_total", Counter, ["worker"],
        "Async tasks that panicked; each ended alone and its connections were reset.";
    ASYNC_REFUSED: "shardnet_async_refused_total", Counter, ["worker"],
        "Connections for an async service reset at accept because no task of the worker listened on their port.";
    MEMPOOL_IN_USE: "shardnet_mempool_in_use", Gauge, ["worker"],
        "Buffers of the worker's pool in use (in rings, in flight or held by the stack).";
    MEMPOOL_CAPACITY: "shardnet_mempool_capacity", Gauge, ["worker"],
        "Buffers in the worker's pool.";
    POLLS: "shardnet_worker_polls_total", Counter, ["worker", "result"],
        "Poll loop rounds that received packets (busy) or nothing (idle).";
    WORKER_UP: "shardnet_worker_up", Gauge, ["worker"],
        "1 while the worker polls, 0 once it has not polled for 500 ms (stuck).";
    HEARTBEAT_AGE: "shardnet_worker_heartbeat_age_seconds", Gauge, ["worker"],
        "Time since the worker's last poll round began.";
    WORKER_RULES: "shardnet_worker_rules_generation", Gauge, ["worker"],
        "Generation of the rules the worker applies (see shardnet_rules_generation).";
    RULE_HITS: "shardnet_rule_hits_total", Counter, ["rule"],
        "Packets matched by each rule in force (TCP: segments that no connection claimed).";
    DEFAULT_HITS: "shardnet_default_action_total", Counter, [],
        "Packets that no rule matched, which took the default action.";
    KERNEL_PACKETS: "shardnet_kernel_packets_total", Counter, ["direction"],
        "Frames written to the kernel's exception interface (to_kernel) and read from it (from_kernel).";
    KERNEL_DROPS: "shardnet_kernel_drops_total", Counter, ["direction", "reason"],
        "Frames of the exception path dropped: a full ring between a worker and the relay (queue_full), refused by the kernel interface (interface_refused), or unreadable from it (interface_error: longer than a buffer).";
    STEERED: "shardnet_steered_packets_total", Counter, ["worker", "direction"],
        "Packets handed between workers by software steering: received by this worker for another worker's flow (out), or received by another worker for this one's (in).";
    STEER_BACKPRESSURE: "shardnet_steer_backpressure_rounds_total", Counter, ["worker"],
        "Poll rounds in which the worker left its RX queue alone because a steering ring to another worker had no room for a burst (the port's RX ring holds, or drops as shardnet_port_rx_missed_total, what comes meanwhile).";
    SMP_MESSAGES: "shardnet_smp_messages_total", Counter, ["worker", "direction"],
        "Cross-core messages (shardnet::smp) a worker sent to another worker (sent) or received and ran (received).";
    SMP_QUEUE_FULL: "shardnet_smp_queue_full_total", Counter, ["worker"],
        "Cross-core requests refused with SmpError::Full: the ring from the worker, or a non-worker thread's inbox into it, was full.";
    CAPTURE_DROPPED: "shardnet_capture_dropped_total", Counter, ["worker"],
        "Copies of frames a running capture (shardnet capture) dropped because the worker's ring to the control thread was full; the frames themselves went on.";
    KERNEL_FLOWS: "shardnet_kernel_flows_pinned", Gauge, ["worker"],
        "TCP flows the kernel accepted, pinned to it across rules reloads.";
    KERNEL_FLOWS_UNTRACKED: "shardnet_kernel_flows_untracked_total", Counter, ["worker"],
        "New kernel TCP flows not pinned because the worker's flow table was full.";
    PORT_RX_PACKETS: "shardnet_port_rx_packets_total", Counter, [],
        "Packets the port received, as its driver counts.";
    PORT_TX_PACKETS: "shardnet_port_tx_packets_total", Counter, [],
        "Packets the port transmitted, as its driver counts.";
    PORT_RX_BYTES: "shardnet_port_rx_bytes_total", Counter, [],
        "Bytes the port received, as its driver counts.";
    PORT_TX_BYTES: "shardnet_port_tx_bytes_total", Counter, [],
        "Bytes the port transmitted, as its driver counts.";
    PORT_RX_MISSED: "shardnet_port_rx_missed_total", Counter, [],
        "Packets the port dropped because an RX queue was full (DPDK imissed, AF_PACKET ring drops).";
    PORT_RX_NOMBUF: "shardnet_port_rx_nombuf_total", Counter, [],
        "RX buffer allocation failures (the pool was empty).";
    PORT_RX_ERRORS: "shardnet_port_rx_errors_total", Counter, [],
        "Erroneous packets received.";
    PORT_TX_ERRORS: "shardnet_port_tx_errors_total", Counter, [],
        "Failed transmissions.";
    PORT_QUEUE_PACKETS: "shardnet_port_queue_packets_total", Counter, ["queue", "direction"],
        "Packets per queue as the driver counts (DPDK: the first 16 queues).";
    PORT_XSTAT: "shardnet_port_xstat", Gauge, ["name"],
        "Every extended statistic of the port by the driver's name (mostly cumulative counts).";
    LINK_UP: "shardnet_link_up", Gauge, ["port"],
        "1 while the port's link is up, 0 while it is down (read by the control thread every second).";
    LINK_SPEED: "shardnet_link_speed_bytes_per_second", Gauge, ["port"],
        "The port's negotiated link speed (10 Gbit/s is 1.25e9); absent while down or where the driver reports none.";
    BUILD_INFO: "shardnet_build_info", Gauge, ["version", "backend"],
        "Always 1: the version and the backend in use.";
    START_TIME: "shardnet_start_time_seconds", Gauge, [],
        "Unix time the process started.";
    RELOADS: "shardnet_rules_reloads_total", Counter, ["result"],
        "Rule reloads (SIGHUP or POST /reload) applied (ok) or refused (error).";
    RULES_ACTIVE: "shardnet_rules_active", Gauge, [],
        "Rules in force (not counting the default action).";
    RULES_GENERATION: "shardnet_rules_generation", Gauge, [],
        "Generation of the rules in force (1 at start, one more per reload).";
}

/// The custom collector: reads a [`ControlPlane`] at every scrape.
pub struct ShardnetCollector {
    plane: Arc<ControlPlane>,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for ShardnetCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardnetCollector").finish_non_exhaustive()
    }
}

impl ShardnetCollector {
    /// A collector of `plane`'s metrics.
    pub fn new(plane: Arc<ControlPlane>) -> ShardnetCollector {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                Desc::new(
                    f.name.to_owned(),
                    f.help.to_owned(),
                    f.labels.iter().map(|l| (*l).to_owned()).collect(),
                    HashMap::new(),
                )
                .expect("valid metric names and labels")
            })
            .collect();
        ShardnetCollector { plane, descs }
    }
}

/// Samples of one family under construction.
struct Samples {
    family: &'static Family,
    metrics: Vec<proto::Metric>,
}

impl Samples {
    fn new(family: &'static Family) -> Samples {
        Samples {
            family,
            metrics: Vec::new(),
        }
    }

    fn labels(&self, values: &[&str]) -> Vec<proto::LabelPair> {
        debug_assert_eq!(
            values.len(),
            self.family.labels.len(),
            "{}",
            self.family.name
        );
        self.family
            .labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect()
    }

    /// Add one sample (a counter or a gauge, as the family says).
    fn add(&mut self, labels: &[&str], value: f64) {
        let mut metric = proto::Metric::from_label(self.labels(labels));
        match self.family.kind {
            Kind::Counter => {
                let mut counter = proto::Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            Kind::Gauge => {
                let mut gauge = proto::Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
            Kind::Histogram => unreachable!("{} is a histogram", self.family.name),
        }
        self.metrics.push(metric);
    }

    /// Add one histogram: per-bucket (not cumulative) counts, the last one
    /// above every bound.
    fn add_histogram(&mut self, labels: &[&str], bounds: &[f64], counts: &[u64], sum: f64) {
        debug_assert_eq!(counts.len(), bounds.len() + 1);
        let mut cumulative = 0u64;
        let buckets = bounds
            .iter()
            .zip(counts)
            .map(|(bound, count)| {
                cumulative += count;
                let mut bucket = proto::Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(cumulative);
                bucket
            })
            .collect();
        let total: u64 = counts.iter().sum();
        let mut histogram = proto::Histogram::default();
        histogram.set_bucket(buckets);
        histogram.set_sample_count(total);
        histogram.set_sample_sum(sum);
        let mut metric = proto::Metric::from_label(self.labels(labels));
        metric.set_histogram(histogram);
        self.metrics.push(metric);
    }

    fn into_family(self) -> MetricFamily {
        let mut family = MetricFamily::default();
        family.set_name(self.family.name.to_owned());
        family.set_help(self.family.help.to_owned());
        family.set_field_type(match self.family.kind {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
            Kind::Histogram => MetricType::HISTOGRAM,
        });
        family.set_metric(self.metrics);
        family
    }
}

/// Families being filled, in [`FAMILIES`] order.
struct Scrape {
    families: Vec<Samples>,
}

impl Scrape {
    fn new() -> Scrape {
        Scrape {
            families: FAMILIES.iter().map(Samples::new).collect(),
        }
    }

    fn of(&mut self, family: &'static Family) -> &mut Samples {
        self.named(family.name)
    }

    /// The family named `name` (a test checks that every name
    /// [`WorkerCounters::SCALARS`] gives is in [`FAMILIES`]).
    fn named(&mut self, name: &str) -> &mut Samples {
        self.families
            .iter_mut()
            .find(|s| s.family.name == name)
            .expect("every family is in FAMILIES")
    }
}

impl Collector for ShardnetCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        collect(&self.plane)
    }
}

/// Read everything now.
fn collect(plane: &ControlPlane) -> Vec<MetricFamily> {
    let mut s = Scrape::new();
    let workers: Vec<(String, &WorkerCounters)> = plane
        .counters()
        .iter()
        .enumerate()
        .map(|(id, c)| (id.to_string(), &**c))
        .collect();
    let rtt_bounds: Vec<f64> = RTT_BUCKETS_US.iter().map(|us| *us as f64 / 1e6).collect();
    for (id, c) in &workers {
        let id = id.as_str();
        // Every scalar counter with a family, as counters.rs declares it.
        for counter in WorkerCounters::SCALARS {
            if let Some((family, label)) = counter.metric {
                let value = (counter.read)(c).get() as f64;
                match label {
                    Some(label) => s.named(family).add(&[id, label], value),
                    None => s.named(family).add(&[id], value),
                }
            }
        }
        let drops = s.of(&DROPS);
        for reason in DropReason::ALL {
            drops.add(&[id, reason.as_str()], c.drops_of(reason) as f64);
        }
        let counts: Vec<u64> = c.tcp_rtt.iter().map(Counter::get).collect();
        let sum = c.tcp_rtt_sum_us.get() as f64 / 1e6;
        s.of(&TCP_RTT)
            .add_histogram(&[id], &rtt_bounds, &counts, sum);
        if let Some(capacity) = plane.pool_capacity() {
            s.of(&MEMPOOL_IN_USE).add(&[id], c.pool_in_use.get() as f64);
            s.of(&MEMPOOL_CAPACITY).add(&[id], capacity as f64);
        }
    }
    for h in plane.health() {
        let id = h.worker.to_string();
        s.of(&WORKER_UP)
            .add(&[&id], if h.polling { 1.0 } else { 0.0 });
        s.of(&HEARTBEAT_AGE)
            .add(&[&id], h.heartbeat_age.as_secs_f64());
    }

    let (hits, default_hits) = plane.rule_hits();
    for (name, hits) in &hits {
        s.of(&RULE_HITS).add(&[name], *hits as f64);
    }
    s.of(&DEFAULT_HITS).add(&[], default_hits as f64);
    if let Some(relay) = plane.kernel_counters() {
        let kernel = s.of(&KERNEL_PACKETS);
        kernel.add(&["to_kernel"], relay.to_kernel.get() as f64);
        kernel.add(&["from_kernel"], relay.from_kernel.get() as f64);
        let ring_full: u64 = workers
            .iter()
            .map(|(_, c)| c.drops_of(DropReason::KernelQueueFull))
            .sum();
        let drops = s.of(&KERNEL_DROPS);
        drops.add(&["to_kernel", "queue_full"], ring_full as f64);
        drops.add(
            &["to_kernel", "interface_refused"],
            relay.to_kernel_refused.get() as f64,
        );
        drops.add(
            &["from_kernel", "queue_full"],
            relay.from_kernel_queue_full.get() as f64,
        );
    } else {
        // No exception port: nothing crosses it (the kernel's share is
        // counted in shardnet_drops_total{reason="no_kernel_port"}).
        let kernel = s.of(&KERNEL_PACKETS);
        kernel.add(&["to_kernel"], 0.0);
        kernel.add(&["from_kernel"], 0.0);
    }

    if let Some(port) = plane.port_stats() {
        s.of(&PORT_RX_PACKETS).add(&[], port.rx_packets as f64);
        s.of(&PORT_TX_PACKETS).add(&[], port.tx_packets as f64);
        s.of(&PORT_RX_BYTES).add(&[], port.rx_bytes as f64);
        s.of(&PORT_TX_BYTES).add(&[], port.tx_bytes as f64);
        s.of(&PORT_RX_MISSED).add(&[], port.rx_missed as f64);
        s.of(&PORT_RX_NOMBUF).add(&[], port.rx_nombuf as f64);
        s.of(&PORT_RX_ERRORS).add(&[], port.rx_errors as f64);
        s.of(&PORT_TX_ERRORS).add(&[], port.tx_errors as f64);
        for (q, stats) in port.queues.iter().enumerate() {
            let q = q.to_string();
            let queues = s.of(&PORT_QUEUE_PACKETS);
            queues.add(&[&q, "rx"], stats.rx_packets as f64);
            queues.add(&[&q, "tx"], stats.tx_packets as f64);
        }
        let xstats = s.of(&PORT_XSTAT);
        for (name, value) in &port.extended {
            xstats.add(&[name], *value as f64);
        }
    }

    if let Some((port, link)) = plane.link() {
        s.of(&LINK_UP).add(&[port], if link.up { 1.0 } else { 0.0 });
        if let Some(speed) = link.speed_bytes_per_second() {
            s.of(&LINK_SPEED).add(&[port], speed as f64);
        }
    }

    let config = plane.config();
    s.of(&BUILD_INFO).add(
        &[env!("CARGO_PKG_VERSION"), config.dataplane.backend.as_str()],
        1.0,
    );
    s.of(&START_TIME).add(&[], plane.start_time_unix());
    let (ok, failed) = plane.reload_counts();
    let reloads = s.of(&RELOADS);
    reloads.add(&["ok"], ok as f64);
    reloads.add(&["error"], failed as f64);
    s.of(&RULES_ACTIVE).add(&[], hits.len() as f64);
    s.of(&RULES_GENERATION)
        .add(&[], plane.shared_rules().generation() as f64);

    s.families.into_iter().map(Samples::into_family).collect()
}

/// A registry holding `plane`'s collector.
pub fn registry(plane: Arc<ControlPlane>) -> Registry {
    let registry = Registry::new();
    registry
        .register(Box::new(ShardnetCollector::new(plane)))
        .expect("the collector's descriptors are valid and unique");
    registry
}

/// The registry's metrics in the text format, and its content type.
pub fn render(registry: &Registry) -> (Vec<u8>, String) {
    let encoder = TextEncoder::new();
    let mut out = Vec::with_capacity(32 * 1024);
    if let Err(e) = encoder.encode(&registry.gather(), &mut out) {
        // Only an I/O error on a Vec or an inconsistent family can get here.
        tracing::error!("cannot encode the metrics: {e}");
    }
    (out, encoder.format_type().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::tests::{plane_for, BASE};
    use crate::port::{PortStats, QueueStats};

    fn scrape(plane: ControlPlane) -> String {
        let (body, content_type) = render(&registry(Arc::new(plane)));
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        String::from_utf8(body).unwrap()
    }

    fn dpdk_plane(workers: usize) -> (tempfile::NamedTempFile, ControlPlane) {
        let text = BASE
            .replace("backend = \"af_packet\"", "backend = \"dpdk\"")
            .replace("[af_packet]\ninterface = \"veth-test\"\n", "");
        plane_for(&text, workers)
    }

    /// What counters.rs declares for `/metrics` fits [`FAMILIES`]: each
    /// family it names is there, a counter or a gauge, with the label (after
    /// `worker`) that the declaration gives a value for, and no two counters
    /// are the same sample.
    #[test]
    fn the_declared_counters_name_families_with_their_labels() {
        let mut samples = Vec::new();
        for counter in WorkerCounters::SCALARS {
            let Some((name, label)) = counter.metric else {
                continue;
            };
            let family = FAMILIES
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("{}: no family {name}", counter.field));
            assert_ne!(family.kind, Kind::Histogram, "{}", counter.field);
            assert_eq!(family.labels[0], "worker", "{}", counter.field);
            assert_eq!(
                family.labels.len(),
                1 + usize::from(label.is_some()),
                "{}: the labels of {name}",
                counter.field
            );
            samples.push((name, label));
        }
        let count = samples.len();
        samples.sort();
        samples.dedup();
        assert_eq!(samples.len(), count, "two counters are one sample");
        assert!(count >= 40, "{count} counters shown per worker");
    }

    #[test]
    fn every_family_has_help_and_type_and_the_counters_values() {
        let (_file, plane) = dpdk_plane(2);
        let c = &plane.counters()[1];
        c.udp_rx.add(4);
        c.udp_tx.add(3);
        c.count_drop(DropReason::TxFull);
        c.tcp_opened_active.add(2);
        c.pool_in_use.set(17);
        c.count_drop(DropReason::KernelQueueFull);
        c.kernel_flows.set(3);
        let relay = Arc::new(crate::kernel::RelayCounters::default());
        relay.to_kernel.add(12);
        relay.from_kernel.add(7);
        relay.from_kernel_queue_full.add(2);
        plane.set_kernel_counters(relay);
        plane.set_port_stats(Box::new(|| PortStats {
            rx_missed: 9,
            extended: vec![("rx_good_packets".into(), 11)],
            queues: vec![QueueStats {
                rx_packets: 5,
                tx_packets: 6,
            }],
            ..PortStats::default()
        }));
        plane.set_link_reader(
            "0".into(),
            Box::new(|| {
                Ok(crate::port::Link {
                    up: true,
                    speed_mbps: Some(25_000),
                    full_duplex: true,
                })
            }),
        );
        plane.poll_link();
        let text = scrape(plane);
        for family in FAMILIES {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            assert!(
                text.contains(&format!("# HELP {} ", family.name)),
                "{}",
                family.name
            );
            assert!(
                text.contains(&format!("# TYPE {} {kind}\n", family.name)),
                "{}",
                family.name
            );
        }
        for line in [
            r#"shardnet_udp_datagrams_total{worker="1",direction="rx"} 4"#,
            r#"shardnet_udp_datagrams_total{worker="1",direction="tx"} 3"#,
            r#"shardnet_udp_datagrams_total{worker="0",direction="rx"} 0"#,
            r#"shardnet_drops_total{worker="1",reason="tx_full"} 1"#,
            r#"shardnet_drops_total{worker="0",reason="kernel_queue_full"} 0"#,
            r#"shardnet_drops_total{worker="1",reason="kernel_queue_full"} 1"#,
            r#"shardnet_kernel_packets_total{direction="to_kernel"} 12"#,
            r#"shardnet_kernel_packets_total{direction="from_kernel"} 7"#,
            r#"shardnet_kernel_drops_total{direction="to_kernel",reason="queue_full"} 1"#,
            r#"shardnet_kernel_drops_total{direction="to_kernel",reason="interface_refused"} 0"#,
            r#"shardnet_kernel_drops_total{direction="from_kernel",reason="queue_full"} 2"#,
            r#"shardnet_kernel_flows_pinned{worker="1"} 3"#,
            r#"shardnet_tcp_connections_opened_total{worker="1",side="active"} 2"#,
            r#"shardnet_mempool_in_use{worker="1"} 17"#,
            r#"shardnet_port_rx_missed_total 9"#,
            r#"shardnet_port_xstat{name="rx_good_packets"} 11"#,
            r#"shardnet_port_queue_packets_total{queue="0",direction="tx"} 6"#,
            r#"shardnet_rule_hits_total{rule="web"} 0"#,
            r#"shardnet_rules_reloads_total{result="error"} 0"#,
            r#"shardnet_rules_generation 1"#,
            r#"shardnet_worker_up{worker="0"} 1"#,
            r#"shardnet_link_up{port="0"} 1"#,
            r#"shardnet_link_speed_bytes_per_second{port="0"} 3125000000"#,
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "no {line:?} in\n{text}"
            );
        }
        assert!(text.contains("shardnet_build_info{version=\""));
        assert!(text.contains("shardnet_mempool_capacity{worker=\"0\"} "));
    }

    #[test]
    fn without_an_exception_port_nothing_crosses_it() {
        let (_file, plane) = plane_for(BASE, 1);
        plane.counters()[0].count_drop(DropReason::NoKernelPort);
        let text = scrape(plane);
        for line in [
            r#"shardnet_kernel_packets_total{direction="to_kernel"} 0"#,
            r#"shardnet_kernel_packets_total{direction="from_kernel"} 0"#,
            r#"shardnet_drops_total{worker="0",reason="no_kernel_port"} 1"#,
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "no {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("shardnet_kernel_drops_total"), "{text}");
    }

    #[test]
    fn rtt_is_a_cumulative_histogram_in_seconds() {
        let (_file, plane) = plane_for(BASE, 1);
        let c = &plane.counters()[0];
        c.record_rtt(80_000); // 80 us
        c.record_rtt(3_000_000); // 3 ms
        c.record_rtt(3_000_000_000); // 3 s: above every bound
        let text = scrape(plane);
        for line in [
            r#"shardnet_tcp_rtt_seconds_bucket{worker="0",le="0.0001"} 1"#,
            r#"shardnet_tcp_rtt_seconds_bucket{worker="0",le="0.0025"} 1"#,
            r#"shardnet_tcp_rtt_seconds_bucket{worker="0",le="0.005"} 2"#,
            r#"shardnet_tcp_rtt_seconds_bucket{worker="0",le="2.5"} 2"#,
            r#"shardnet_tcp_rtt_seconds_bucket{worker="0",le="+Inf"} 3"#,
            r#"shardnet_tcp_rtt_seconds_sum{worker="0"} 3.00308"#,
            r#"shardnet_tcp_rtt_seconds_count{worker="0"} 3"#,
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "no {line:?} in\n{text}"
            );
        }
        // AF_PACKET has no pool and no port reader was set: no such series.
        assert!(!text.contains("shardnet_mempool_in_use{"));
        assert!(!text.contains("shardnet_port_rx_packets_total "));
    }
}
