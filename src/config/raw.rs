//! The file as written: every value optional and spanned, so that validation
//! can report all problems with their positions. Only syntax and structure
//! (unknown keys, wrong value types) stop deserialization early.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// `Option<Spanned<T>>`: a key that may be absent, with its value's span.
pub(super) type Opt<T> = Option<Spanned<T>>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub dataplane: Opt<RawDataplane>,
    pub dpdk: Opt<RawDpdk>,
    pub af_packet: Opt<RawAfPacket>,
    pub interface: Opt<RawInterface>,
    pub kernel: Opt<RawKernel>,
    pub metrics: Opt<RawMetrics>,
    pub tcp: Opt<RawTcp>,
    pub http: Opt<RawHttp>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
    pub default: Opt<RawDefault>,
    pub debug: Opt<RawDebug>,
}

/// `[dataplane]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataplane {
    pub backend: Opt<String>,
    pub workers: Opt<Vec<Spanned<i64>>>,
    pub control_core: Opt<i64>,
    pub idle: Opt<String>,
    pub steer_queue_size: Opt<i64>,
}

/// `[dpdk]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDpdk {
    pub eal_args: Opt<Vec<Spanned<String>>>,
    pub port: Opt<i64>,
    pub mbufs_per_worker: Opt<i64>,
    pub rx_descriptors: Opt<i64>,
    pub tx_descriptors: Opt<i64>,
    pub tx_checksum: Opt<String>,
}

/// `[af_packet]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAfPacket {
    pub interface: Opt<String>,
    pub kernel_ingress: Opt<String>,
    pub rx_ring_frames: Opt<i64>,
}

/// `[interface]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub address: Opt<String>,
    pub gateway: Opt<String>,
    pub mac: Opt<String>,
    pub local_ports: Opt<String>,
    pub mtu: Opt<i64>,
}

/// `[kernel]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKernel {
    pub enabled: Opt<bool>,
    pub kind: Opt<String>,
    pub name: Opt<String>,
    pub queue_size: Opt<i64>,
}

/// `[metrics]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Opt<String>,
    pub admin_socket: Opt<String>,
}

/// `[tcp]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTcp {
    pub max_connections_per_worker: Opt<i64>,
    pub syn_backlog: Opt<i64>,
    pub buffer_size: Opt<i64>,
    pub max_buffers_per_worker: Opt<i64>,
    pub mss: Opt<i64>,
    pub congestion: Opt<String>,
    pub nagle: Opt<bool>,
    pub delayed_ack_ms: Opt<i64>,
    pub time_wait_ms: Opt<i64>,
    pub fin_timeout_ms: Opt<i64>,
    pub keepalive_idle_s: Opt<i64>,
    pub keepalive_interval_s: Opt<i64>,
    pub keepalive_probes: Opt<i64>,
    pub timestamps: Opt<bool>,
    pub sack: Opt<bool>,
    pub window_scaling: Opt<bool>,
    pub rto_min_ms: Opt<i64>,
    pub rto_max_ms: Opt<i64>,
    pub rto_initial_ms: Opt<i64>,
    pub max_retransmits: Opt<i64>,
    pub max_syn_retransmits: Opt<i64>,
}

/// `[http]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub body: Opt<String>,
    pub header_timeout_ms: Opt<i64>,
    pub idle_timeout_ms: Opt<i64>,
}

/// One `[[rule]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub name: Opt<String>,
    pub protocol: Opt<String>,
    pub ports: Opt<RawPorts>,
    pub service: Opt<String>,
}

/// `[default]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefault {
    pub action: Opt<String>,
}

/// `[debug]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDebug {
    pub flow_record: Opt<String>,
    pub stall_endpoint: Opt<bool>,
}

/// The sections and the keys each accepts, in the order of the structs above;
/// used to name the section in "unknown key" messages. Kept in step with the
/// structs by a test.
pub(super) const SECTIONS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "dataplane",
            "dpdk",
            "af_packet",
            "interface",
            "kernel",
            "metrics",
            "tcp",
            "http",
            "rule",
            "default",
            "debug",
        ],
    ),
    (
        "dataplane",
        &[
            "backend",
            "workers",
            "control_core",
            "idle",
            "steer_queue_size",
        ],
    ),
    (
        "dpdk",
        &[
            "eal_args",
            "port",
            "mbufs_per_worker",
            "rx_descriptors",
            "tx_descriptors",
            "tx_checksum",
        ],
    ),
    (
        "af_packet",
        &["interface", "kernel_ingress", "rx_ring_frames"],
    ),
    (
        "interface",
        &["address", "gateway", "mac", "local_ports", "mtu"],
    ),
    ("kernel", &["enabled", "kind", "name", "queue_size"]),
    ("metrics", &["listen", "admin_socket"]),
    (
        "tcp",
        &[
            "max_connections_per_worker",
            "syn_backlog",
            "buffer_size",
            "max_buffers_per_worker",
            "mss",
            "congestion",
            "nagle",
            "delayed_ack_ms",
            "time_wait_ms",
            "fin_timeout_ms",
            "keepalive_idle_s",
            "keepalive_interval_s",
            "keepalive_probes",
            "timestamps",
            "sack",
            "window_scaling",
            "rto_min_ms",
            "rto_max_ms",
            "rto_initial_ms",
            "max_retransmits",
            "max_syn_retransmits",
        ],
    ),
    ("http", &["body", "header_timeout_ms", "idle_timeout_ms"]),
    ("[rule]", &["name", "protocol", "ports", "service"]),
    ("default", &["action"]),
    ("debug", &["flow_record", "stall_endpoint"]),
];

/// `ports = 7`, `ports = "8000-8100"` or `ports = [80, "8000-8100"]`.
#[derive(Debug)]
pub(super) enum RawPorts {
    /// A single integer or string.
    One(PortItem),
    /// An array, each element with its own span.
    List(Vec<Spanned<PortItem>>),
}

/// One element of `ports`.
#[derive(Debug)]
pub(super) enum PortItem {
    /// An integer, not yet range-checked.
    Int(i64),
    /// A string: `"7"` or `"8000-8100"`, not yet parsed.
    Str(String),
}

const PORT_EXPECTING: &str = "a port number or a range like \"8000-8100\"";

struct PortItemVisitor;

impl Visitor<'_> for PortItemVisitor {
    type Value = PortItem;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(PORT_EXPECTING)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortItem, E> {
        Ok(PortItem::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortItem, E> {
        Ok(PortItem::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PortItem, E> {
        Ok(PortItem::Str(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for PortItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PortItemVisitor)
    }
}

struct PortsVisitor;

impl<'de> Visitor<'de> for PortsVisitor {
    type Value = RawPorts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a port, a range like \"8000-8100\", or an array of them")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPorts, E> {
        PortItemVisitor.visit_i64(v).map(RawPorts::One)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPorts, E> {
        PortItemVisitor.visit_u64(v).map(RawPorts::One)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPorts, E> {
        PortItemVisitor.visit_str(v).map(RawPorts::One)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawPorts, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<PortItem>>()? {
            items.push(item);
        }
        Ok(RawPorts::List(items))
    }
}

impl<'de> Deserialize<'de> for RawPorts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PortsVisitor)
    }
}
