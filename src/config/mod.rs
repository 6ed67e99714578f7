//! The TOML configuration file: parsing, validation with line-precise errors,
//! and the validated types the rest of the stack is built from.
//!
//! Parsing happens in two steps. `toml` + serde read the file into spanned raw
//! structs (syntax errors, unknown keys and wrong value types stop here, the
//! first one is reported); then every value is checked and *all* semantic
//! problems are reported together, each as `FILE:LINE:COL: reason` with the
//! position of the offending value (or of the table header for a missing key).
//!
//! Features the file can describe but this build's dataplane cannot run yet are
//! not parse errors: [`Config::check_supported`] reports them separately, so
//! the same file stays valid as the dataplane grows.

mod cores;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

pub use cores::CoreSet;

/// The most `[[rule]]` entries a file may hold (rule indices are `u8`, and
/// one more slot is kept for the default action).
pub const MAX_RULES: usize = 255;

/// The default for `[dpdk] mbufs_per_worker`.
pub const DEFAULT_MBUFS_PER_WORKER: u32 = 8191;

/// The least `[dpdk] mbufs_per_worker` accepted: below this a worker cannot
/// even fill its RX ring and its mempool cache.
pub const MIN_MBUFS_PER_WORKER: u32 = 256;

/// The default `[dpdk] rx_descriptors` and `tx_descriptors`.
pub const DEFAULT_DPDK_DESCRIPTORS: u16 = 1024;

/// The range of `[dpdk] rx_descriptors` and `tx_descriptors` that `check`
/// accepts; the device's own limits (`rte_eth_dev_info.rx_desc_lim`) are
/// checked when the port opens.
pub const DPDK_DESCRIPTORS: std::ops::RangeInclusive<u16> = 64..=32768;

/// The default `[interface] mtu`.
pub const DEFAULT_MTU: u16 = 1500;

/// The range of `[interface] mtu`: IPv4's least (RFC 791) to the usual jumbo
/// frame.
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 576..=9000;

/// IPv4 and TCP headers without options: the MSS is the MTU minus this.
pub const TCP_IP_HEADERS: u16 = 40;

/// The largest config file accepted (1 MiB): real files are a few KiB, and
/// `shardnet check --config /dev/zero` must not read without end.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The default `[kernel] name`.
pub const DEFAULT_KERNEL_NAME: &str = "sn0";

/// Frames per exception-port ring (each direction, per worker) unless
/// `[kernel] queue_size` says otherwise.
pub const DEFAULT_KERNEL_QUEUE_SIZE: usize = 1024;

/// The fewest slots a steering ring may have (`[dataplane]
/// steer_queue_size`): two bursts, so that a worker under backpressure can
/// pull again once its peer has taken one burst.
pub const MIN_STEER_QUEUE_SIZE: usize = 2 * crate::port::BURST;

/// The most slots a steering ring may have.
pub const MAX_STEER_QUEUE_SIZE: usize = 65_536;

/// A validated configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (as given, not canonicalized).
    pub path: PathBuf,
    /// `[dataplane]`: backend, cores, idle mode.
    pub dataplane: Dataplane,
    /// `[dpdk]`: EAL arguments, port, pool sizes (defaults when absent).
    pub dpdk: DpdkConfig,
    /// `[af_packet]`: present (and required) when the backend is AF_PACKET.
    pub af_packet: Option<AfPacketConfig>,
    /// `[interface]`: the stack's address, gateway and MAC.
    pub interface: InterfaceConfig,
    /// `[kernel]`: the exception port towards the Linux kernel.
    pub kernel: KernelConfig,
    /// `[metrics]`: the control HTTP endpoint.
    pub metrics: MetricsConfig,
    /// `[tcp]`: the TCP engine of every worker (defaults when absent).
    pub tcp: TcpSettings,
    /// `[http]`: the built-in `http` service (defaults when absent).
    pub http: HttpSettings,
    /// The `[[rule]]` entries in file order; the first match wins.
    pub rules: Vec<Rule>,
    /// `[default] action`: what flows that no rule claims get (default: kernel).
    pub default_action: DefaultAction,
    /// `[debug]`: test and debugging aids.
    pub debug: DebugConfig,
    /// Things that are allowed but probably not meant (a control core shared
    /// with a worker, a rule that can never match, ...), in file order. The
    /// binary logs them; they do not make the file invalid.
    pub warnings: Vec<ConfigError>,
    /// Where some values were written, for later checks such as
    /// [`Config::check_supported`].
    pub positions: Positions,
    /// The services the rules were resolved against (a reload resolves the
    /// new file's against the same).
    pub services: ServiceCatalog,
}

/// Positions of values that later checks report on. `None` where the value
/// was not written in the file (a default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Positions {
    /// `[dataplane] backend`.
    pub backend: Option<Position>,
    /// `[kernel] enabled`.
    pub kernel_enabled: Option<Position>,
    /// Each rule's `service` value, parallel to [`Config::rules`].
    pub rule_services: Vec<Position>,
}

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// 1-based line; 0 when there is no position.
    pub line: usize,
    /// 1-based column in characters; 0 when there is no position.
    pub column: usize,
}

/// `[dataplane]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataplane {
    /// Which packet I/O backend drives the NIC.
    pub backend: Backend,
    /// One pinned worker per listed core, in order: queue pair `i` belongs to
    /// `workers[i]`. Never empty, no duplicates, all online.
    pub workers: Vec<usize>,
    /// The core of the control thread (default 0). May equal a worker's core;
    /// that case carries a warning.
    pub control_core: usize,
    /// How workers behave when there is no traffic (default busy).
    pub idle: IdleMode,
    /// Slots of each software-steering ring between two workers
    /// ([`crate::steer`]), when set; by default the RX ring's size
    /// (`[af_packet] rx_ring_frames`, or the DPDK port's RX descriptors, at
    /// most what half a worker's mbuf pool holds over its rings).
    pub steer_queue_size: Option<usize>,
}

/// `[dataplane] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `"dpdk"`: a DPDK ethdev (needs the `dpdk` feature).
    Dpdk,
    /// `"af_packet"`: a Linux AF_PACKET socket per worker.
    AfPacket,
}

/// `[dataplane] idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IdleMode {
    /// `"busy"`: poll without pause (production, dedicated cores).
    #[default]
    Busy,
    /// `"adaptive"`: back off with short sleeps after a run of empty polls
    /// (shared machines, tests). On AF_PACKET the sleep is a `ppoll` on the
    /// socket, which a frame arriving ends at once.
    Adaptive,
}

/// `[dpdk]`; every key has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkConfig {
    /// Extra EAL arguments (default none). The core list is derived from
    /// `[dataplane]`, so core options (`-l`, `-c`, `--lcores`, `--main-lcore`)
    /// are rejected here.
    pub eal_args: Vec<String>,
    /// The DPDK port id (default 0).
    pub port: u16,
    /// Mbufs in each worker's pool (default [`DEFAULT_MBUFS_PER_WORKER`]).
    /// Each mbuf holds a whole frame of `[interface] mtu` (see
    /// `dpdk::data_room_for_mtu`).
    pub mbufs_per_worker: u32,
    /// RX descriptors per queue (default [`DEFAULT_DPDK_DESCRIPTORS`], range
    /// [`DPDK_DESCRIPTORS`]); the port refuses to start with a count outside
    /// the device's limits.
    pub rx_descriptors: u16,
    /// TX descriptors per queue (default [`DEFAULT_DPDK_DESCRIPTORS`], range
    /// [`DPDK_DESCRIPTORS`]), checked against the device as `rx_descriptors`.
    pub tx_descriptors: u16,
    /// Who fills the checksums of the frames shardnet builds (default auto).
    pub tx_checksum: TxChecksumSetting,
}

/// `[dpdk] tx_checksum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TxChecksumSetting {
    /// `"auto"`: the NIC, for the IPv4, UDP and TCP checksums the port
    /// reports it can offload; software for the others.
    #[default]
    Auto,
    /// `"software"`: always software (to compare, or to rule the NIC out
    /// while debugging).
    Software,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            eal_args: Vec::new(),
            port: 0,
            mbufs_per_worker: DEFAULT_MBUFS_PER_WORKER,
            rx_descriptors: DEFAULT_DPDK_DESCRIPTORS,
            tx_descriptors: DEFAULT_DPDK_DESCRIPTORS,
            tx_checksum: TxChecksumSetting::Auto,
        }
    }
}

/// `[af_packet]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// The Linux interface to bind to (a valid interface name).
    pub interface: String,
    /// What the kernel's own receive path does with the frames it has copied
    /// to shardnet's sockets (default keep).
    pub kernel_ingress: KernelIngress,
    /// Frames of each queue's RX ring (default
    /// [`DEFAULT_AF_PACKET_RX_FRAMES`], 256-65536: a worker holds up to two
    /// bursts of lent frames).
    pub rx_ring_frames: usize,
}

/// `[af_packet] rx_ring_frames` by default.
///
/// A trade-off. A large ring absorbs a worker's stall (descheduled on a
/// shared machine: 4096 full-size frames are 5 ms at 10 Gbit/s). A small one
/// is faster when the worker has its core: the worker reads every frame
/// through the 4 KiB pages of the ring's mapping, and with 4096 frames (2048
/// pages) the copy out of a frame the kernel had just written on the same
/// core took about 140 ns (TLB misses, most likely); with 1024 frames (DPDK
/// l3fwd's RX descriptor count) one connection into `discard` on a veth went
/// about 1.2x as fast in alternating runs. But on a 2-core VM running four
/// workers, 1024 frames overflowed now and then where 4096 did not.
pub const DEFAULT_AF_PACKET_RX_FRAMES: usize = 4096;

/// `[af_packet] kernel_ingress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KernelIngress {
    /// `"keep"`: the kernel also runs its receive path (IPv4, IPv6, ARP) on
    /// every frame of the interface, as it does without shardnet.
    #[default]
    Keep,
    /// `"drop"`: shardnet installs an nftables `netdev` ingress chain with
    /// policy drop on the interface while it runs, so the kernel drops each
    /// frame right after AF_PACKET has its copy. The kernel then gets nothing
    /// on this interface (its traffic comes through `[kernel]`'s exception
    /// interface, if any).
    Drop,
}

/// `[interface]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// The stack's IPv4 address (a usable host address in its prefix).
    pub address: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub prefix_len: u8,
    /// The default route, inside the prefix and not the address itself.
    pub gateway: Option<Ipv4Addr>,
    /// The MAC the stack uses (default: the port's own).
    pub mac: MacSetting,
    /// The source ports of the stack's own active opens
    /// ([`crate::rt::TcpStream::connect`]), inclusive: each worker uses
    /// those whose replies come back to it. The default,
    /// [`DEFAULT_LOCAL_PORTS`], lies above Linux's default ephemeral range
    /// (32768-60999), since the kernel shares the address.
    pub local_ports: (u16, u16),
    /// The IP MTU of the port (default [`DEFAULT_MTU`], range [`MTU_RANGE`]):
    /// set on a DPDK port, required of an AF_PACKET interface, and the size
    /// the receive and transmit buffers are made for. `[tcp] mss` defaults to
    /// it minus 40.
    pub mtu: u16,
}

/// The default of `[interface] local_ports`: above Linux's default
/// ephemeral range (32768-60999).
pub const DEFAULT_LOCAL_PORTS: (u16, u16) = (61000, 65535);

impl InterfaceConfig {
    /// The netmask for `prefix_len`.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }

    /// The network address (`address` with the host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & prefix_mask(self.prefix_len))
    }

    /// Whether `ip` is on the directly attached network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix_len);
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

/// The netmask of a prefix length as a host-order `u32`.
pub(crate) fn prefix_mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n.min(32))),
    }
}

/// `[interface] mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MacSetting {
    /// `"auto"`: use the port's own MAC.
    #[default]
    Auto,
    /// A fixed unicast, non-zero MAC.
    Fixed([u8; 6]),
}

/// `[kernel]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    /// Whether the exception port is created (default false).
    pub enabled: bool,
    /// Its kind (default tap).
    pub kind: KernelKind,
    /// The kernel-side interface name (default [`DEFAULT_KERNEL_NAME`]).
    pub name: String,
    /// Frames per ring between a worker and the relay, each way (default
    /// [`DEFAULT_KERNEL_QUEUE_SIZE`]).
    pub queue_size: usize,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            enabled: false,
            kind: KernelKind::Tap,
            name: DEFAULT_KERNEL_NAME.to_owned(),
            queue_size: DEFAULT_KERNEL_QUEUE_SIZE,
        }
    }
}

/// `[kernel] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KernelKind {
    /// `"virtio-user"`: DPDK's virtio-user with the vhost-net backend.
    VirtioUser,
    /// `"tap"`: a TAP device.
    #[default]
    Tap,
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// `listen`: where the control HTTP server answers the read-only calls
    /// (`/metrics`, `/healthz`, `/rules`); `None` = no TCP listener.
    pub listen: Option<SocketAddr>,
    /// `admin_socket`: the Unix socket (mode 0600, owned by the process'
    /// user) serving the same HTTP API plus the state-changing calls
    /// (`POST /reload`, `POST /debug/stall`); `None` = none (SIGHUP still
    /// reloads).
    pub admin_socket: Option<PathBuf>,
}

/// `[tcp]`: the TCP engine of every worker. Every key has a default; limits
/// and buffers are per worker, so the machine-wide figures are these times the
/// number of workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSettings {
    /// `max_connections_per_worker`: the most connections (in any state but
    /// TIME-WAIT) a worker tracks at once. Default 262144, range
    /// 1-16777216. Connections in TIME-WAIT are compact entries (about a
    /// fifth of a connection's memory) bounded apart by the same number,
    /// as Linux's `tcp_max_tw_buckets`: beyond it a connection ends without
    /// TIME-WAIT, counted in `tcp_time_wait_overflow`.
    pub max_connections: usize,
    /// `syn_backlog`: half-open (SYN-RECEIVED) connections a worker keeps
    /// before it answers SYNs with SYN cookies instead. Default 1024, range
    /// 1-1048576.
    pub syn_backlog: usize,
    /// `buffer_size`: bytes of each send and of each receive buffer of a
    /// connection; also bounds the receive window we advertise. Default
    /// 262144 (256 KiB), range 4096-16777216; need not be a power of two.
    pub buffer_size: u32,
    /// `max_buffers_per_worker`: buffers in a worker's pool, shared by its
    /// connections (an idle connection holds none, a busy one up to two).
    /// Default 4096, range 2-16777216. More than 8 GiB of buffers per worker
    /// (`max_buffers * buffer_size`) carries a warning.
    pub max_buffers: usize,
    /// `mss`: the maximum segment size we announce and send, in bytes.
    /// Default `[interface] mtu` minus 40 bytes of IPv4 and TCP headers
    /// (1460); range 536 to that default.
    pub mss: u16,
    /// `congestion`: the congestion control algorithm (default CUBIC).
    pub congestion: CongestionKind,
    /// `nagle`: Nagle's algorithm, holding back small segments while data is
    /// unacknowledged (default false: services write whole messages).
    pub nagle: bool,
    /// `delayed_ack_ms`: how long an ACK may be delayed, in milliseconds; 0
    /// acknowledges at once. Default 40, range 0-500 (RFC 1122's limit).
    pub delayed_ack_ms: u64,
    /// `time_wait_ms`: how long a connection stays in TIME-WAIT, in
    /// milliseconds. Default 60000, range 0-240000 (RFC 9293's 2*MSL); below
    /// 1000 carries a warning.
    pub time_wait_ms: u64,
    /// `fin_timeout_ms`: how long FIN-WAIT-2 waits for the peer's FIN once
    /// our side has closed, in milliseconds. Default 60000, range
    /// 1000-600000.
    pub fin_timeout_ms: u64,
    /// Keepalive probing of idle connections; `None` (the default) when
    /// `keepalive_idle_s` is absent or 0.
    pub keepalive: Option<KeepaliveSettings>,
    /// `timestamps`: offer and accept RFC 7323 timestamps (default true).
    pub timestamps: bool,
    /// `sack`: offer and accept selective acknowledgements, RFC 2018
    /// (default true).
    pub sack: bool,
    /// `window_scaling`: offer and accept RFC 7323 window scaling (default
    /// true); without it the receive window stops at 64 KiB.
    pub window_scaling: bool,
    /// `rto_min_ms`: the least retransmission timeout, in milliseconds.
    /// Default 200, range 1-60000.
    pub rto_min_ms: u64,
    /// `rto_max_ms`: the largest retransmission timeout, in milliseconds.
    /// Default 120000, range 1000-600000; at least `rto_min_ms` and
    /// `rto_initial_ms`.
    pub rto_max_ms: u64,
    /// `rto_initial_ms`: the retransmission timeout before any round trip has
    /// been measured (SYNs included), in milliseconds. Default 1000 (RFC
    /// 6298), range 1-60000.
    pub rto_initial_ms: u64,
    /// `max_retransmits`: retransmissions of the same data before the
    /// connection is reset. Default 15, range 1-30.
    pub max_retransmits: u8,
    /// `max_syn_retransmits`: retransmissions of a SYN or SYN-ACK before
    /// giving up. Default 6, range 1-30.
    pub max_syn_retransmits: u8,
}

impl Default for TcpSettings {
    fn default() -> Self {
        TcpSettings {
            max_connections: 262_144,
            syn_backlog: 1024,
            buffer_size: 256 * 1024,
            max_buffers: 4096,
            mss: 1460,
            congestion: CongestionKind::Cubic,
            nagle: false,
            delayed_ack_ms: 40,
            time_wait_ms: 60_000,
            fin_timeout_ms: 60_000,
            keepalive: None,
            timestamps: true,
            sack: true,
            window_scaling: true,
            rto_min_ms: 200,
            rto_max_ms: 120_000,
            rto_initial_ms: 1000,
            max_retransmits: 15,
            max_syn_retransmits: 6,
        }
    }
}

/// `[tcp] congestion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CongestionKind {
    /// `"cubic"`: CUBIC, RFC 9438 (the default, as on Linux).
    #[default]
    Cubic,
    /// `"newreno"`: NewReno, RFC 5681 and RFC 6582.
    NewReno,
}

/// `[tcp] keepalive_*`: probing of idle connections, on when
/// `keepalive_idle_s` is set and not 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveSettings {
    /// `keepalive_idle_s`: seconds without traffic before the first probe
    /// (range 1-604800, a week; no default: absent or 0 turns keepalive off).
    pub idle_s: u64,
    /// `keepalive_interval_s`: seconds between unanswered probes. Default 75,
    /// range 1-3600.
    pub interval_s: u64,
    /// `keepalive_probes`: unanswered probes after which the connection is
    /// reset. Default 9, range 1-127.
    pub probes: u8,
}

/// The default `[http] body`.
pub const DEFAULT_HTTP_BODY: &str = "shardnet\n";

/// The longest `[http] body` accepted, in bytes (1 MiB).
pub const MAX_HTTP_BODY: usize = 1 << 20;

/// The default `[http] header_timeout_ms` (nginx's `client_header_timeout`
/// is 60 s, Apache's `RequestReadTimeout` 20-40 s; a request head takes a
/// real client milliseconds).
pub const DEFAULT_HTTP_HEADER_TIMEOUT_MS: u64 = 15_000;

/// The default `[http] idle_timeout_ms` (nginx's `keepalive_timeout`).
pub const DEFAULT_HTTP_IDLE_TIMEOUT_MS: u64 = 75_000;

/// `[http]`: the built-in `http` service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `body`: the body of every `200 OK` response, sent as is (default
    /// [`DEFAULT_HTTP_BODY`]). At most [`MAX_HTTP_BODY`] bytes; may be empty.
    pub body: String,
    /// `header_timeout_ms`: from the accept, or from the first byte of a
    /// later request, the time allowed for the request to arrive whole;
    /// then the connection is reset (slowloris). Default 15000, range
    /// 0-86400000; 0: no limit.
    pub header_timeout_ms: u64,
    /// `idle_timeout_ms`: a kept-alive connection with no request in
    /// progress is closed after this long; also the most time a response
    /// may wait for the peer to read it. Default 75000, range 0-86400000;
    /// 0: no limit.
    pub idle_timeout_ms: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            body: DEFAULT_HTTP_BODY.to_owned(),
            header_timeout_ms: DEFAULT_HTTP_HEADER_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_HTTP_IDLE_TIMEOUT_MS,
        }
    }
}

/// `[debug]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DebugConfig {
    /// A path prefix; when set, workers write per-worker flow records to
    /// files starting with it when they stop. Kept as written (a relative
    /// path is relative to the working directory).
    pub flow_record: Option<PathBuf>,
    /// `stall_endpoint`: serve `POST /debug/stall?worker=N&ms=M` on the
    /// control endpoint, which makes worker N stop polling for M ms (to test
    /// health checks and alerts). Off by default; never in production.
    pub stall_endpoint: bool,
}

/// One `[[rule]]`: flows of `protocol` to one of `ports` get `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique, non-empty; the `rule` label of `shardnet_rule_hits_total`.
    pub name: String,
    /// The transport protocol the rule matches.
    pub protocol: Protocol,
    /// Destination port ranges (a single port is `p..=p`); never empty,
    /// never reversed.
    pub ports: Vec<RangeInclusive<u16>>,
    /// What matching flows get.
    pub action: Action,
}

impl Rule {
    /// Whether the rule matches this protocol and destination port.
    pub fn matches(&self, protocol: Protocol, dst_port: u16) -> bool {
        self.protocol == protocol && self.ports.iter().any(|r| r.contains(&dst_port))
    }

    /// The ports as written in a config file: `80,443,8000-8100`.
    pub fn ports_string(&self) -> String {
        self.port_strings().join(",")
    }

    /// Each port range as written in a config file: `["80", "8000-8100"]`.
    pub fn port_strings(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|r| {
                if r.start() == r.end() {
                    r.start().to_string()
                } else {
                    format!("{}-{}", r.start(), r.end())
                }
            })
            .collect()
    }
}

/// `[[rule]] protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `"udp"`.
    Udp,
    /// `"tcp"`.
    Tcp,
}

/// What a rule does with the flows it matches (`[[rule]] service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A service (built-in or registered) terminates the flow inside the stack.
    Service(ServiceId),
    /// `"kernel"`: hand the packets to the kernel unchanged.
    Kernel,
    /// `"drop"`: drop the packets.
    Drop,
}

/// A service a rule can name: one of the process's [`ServiceCatalog`].
///
/// Built-in and registered services are named alike; a rule's
/// `service = "name"` resolves to one at validation. An id is a small
/// `Copy` value (its index in the catalog, its name and the protocols it
/// runs over): the catalog is fixed for the life of the process, so ids stay
/// valid across reloads. Two ids are equal when their indices are.
#[derive(Clone, Copy)]
pub struct ServiceId {
    index: u16,
    protocols: u8,
    name: &'static str,
}

const TCP_BIT: u8 = 1;
const UDP_BIT: u8 = 2;

impl ServiceId {
    /// `"echo"`: returns every byte (UDP and TCP).
    pub const ECHO: ServiceId = ServiceId::builtin(0, "echo", TCP_BIT | UDP_BIT);
    /// `"discard"`: reads and drops everything (UDP and TCP).
    pub const DISCARD: ServiceId = ServiceId::builtin(1, "discard", TCP_BIT | UDP_BIT);
    /// `"http"`: a fixed HTTP/1.1 responder (TCP only).
    pub const HTTP: ServiceId = ServiceId::builtin(2, "http", TCP_BIT);
    /// The embedding application's own active opens ([`crate::app::App`]):
    /// never named by a rule, not in the catalog.
    pub const APP: ServiceId = ServiceId::builtin(u16::MAX, "app", TCP_BIT | UDP_BIT);
    /// The built-in services, in catalog order.
    pub const BUILTIN: [ServiceId; 3] = [ServiceId::ECHO, ServiceId::DISCARD, ServiceId::HTTP];

    const fn builtin(index: u16, name: &'static str, protocols: u8) -> ServiceId {
        ServiceId {
            index,
            protocols,
            name,
        }
    }

    /// Its index in the catalog (`u16::MAX` for [`ServiceId::APP`]).
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.index)
    }

    /// The name rules use.
    pub fn as_str(&self) -> &'static str {
        self.name
    }

    /// Whether the service runs over `protocol`.
    #[inline]
    pub fn supports(self, protocol: Protocol) -> bool {
        let bit = match protocol {
            Protocol::Tcp => TCP_BIT,
            Protocol::Udp => UDP_BIT,
        };
        self.protocols & bit != 0
    }
}

impl PartialEq for ServiceId {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}

impl Eq for ServiceId {}

impl std::hash::Hash for ServiceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.index.hash(state);
    }
}

impl fmt::Debug for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceId({:?})", self.name)
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Why a service could not be added to a [`ServiceCatalog`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Another service has this name.
    #[error("a service named {0:?} is already registered")]
    Duplicate(String),
    /// The name is empty, too long, reserved or has characters other than
    /// ASCII letters, digits, `-`, `_` and `.`.
    #[error(
        "{0:?} is not a valid service name (1 to 64 ASCII letters, digits, '-', '_' or '.'; \
         not \"kernel\", \"drop\" or \"app\")"
    )]
    BadName(String),
    /// A service must run over TCP, UDP or both.
    #[error("service {0:?} runs over no protocol")]
    NoProtocol(String),
    /// More services than ids.
    #[error("too many services")]
    Full,
}

/// The services rules may name, fixed for the life of the process: the
/// built-ins first ([`ServiceId::BUILTIN`]), then those the program
/// registered (see [`crate::runtime::Runtime`]). Validation resolves rule
/// names against it, so a rule naming a service the program did not
/// register is a positioned error, as any other config error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCatalog {
    ids: Vec<ServiceId>,
}

impl Default for ServiceCatalog {
    fn default() -> Self {
        ServiceCatalog::builtin()
    }
}

impl ServiceCatalog {
    /// The built-in services only (what `shardnet run` and `check` know).
    pub fn builtin() -> ServiceCatalog {
        ServiceCatalog {
            ids: ServiceId::BUILTIN.to_vec(),
        }
    }

    /// Add a service named `name` that runs over TCP and/or UDP. The name
    /// is kept for the life of the process (ids carry it as `&'static str`;
    /// a program registers its few services once).
    ///
    /// # Errors
    /// A duplicate, reserved or malformed name, or no protocol.
    pub fn add(&mut self, name: &str, tcp: bool, udp: bool) -> Result<ServiceId, CatalogError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            // "app" is free: rules never name the embedded application's
            // connections (`ServiceId::APP`, active opens only), and the
            // issue's axum example registers its async service as "app".
            && !matches!(name, "kernel" | "drop");
        if !valid {
            return Err(CatalogError::BadName(name.to_owned()));
        }
        if self.get(name).is_some() {
            return Err(CatalogError::Duplicate(name.to_owned()));
        }
        if !tcp && !udp {
            return Err(CatalogError::NoProtocol(name.to_owned()));
        }
        let index = u16::try_from(self.ids.len())
            .ok()
            .filter(|&i| i < u16::MAX)
            .ok_or(CatalogError::Full)?;
        let protocols = if tcp { TCP_BIT } else { 0 } | if udp { UDP_BIT } else { 0 };
        let id = ServiceId {
            index,
            protocols,
            name: Box::leak(name.to_owned().into_boxed_str()),
        };
        self.ids.push(id);
        Ok(id)
    }

    /// The service named `name`.
    pub fn get(&self, name: &str) -> Option<ServiceId> {
        self.ids.iter().copied().find(|id| id.name == name)
    }

    /// Every service, in index order.
    pub fn ids(&self) -> &[ServiceId] {
        &self.ids
    }

    /// How many services there are.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Never true: the built-ins are always there.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// `[default] action`: what flows that no rule claims get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DefaultAction {
    /// `"kernel"` (the default).
    #[default]
    Kernel,
    /// `"drop"`.
    Drop,
}

impl From<DefaultAction> for Action {
    fn from(d: DefaultAction) -> Action {
        match d {
            DefaultAction::Kernel => Action::Kernel,
            DefaultAction::Drop => Action::Drop,
        }
    }
}

macro_rules! names {
    ($ty:ty { $($variant:pat => $name:expr),* $(,)? }) => {
        impl $ty {
            /// The name used in config files.
            pub fn as_str(&self) -> &'static str {
                match self { $($variant => $name),* }
            }
        }
        /// The name used in config files.
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Backend { Backend::Dpdk => "dpdk", Backend::AfPacket => "af_packet" });
names!(KernelIngress { KernelIngress::Keep => "keep", KernelIngress::Drop => "drop" });
names!(IdleMode { IdleMode::Busy => "busy", IdleMode::Adaptive => "adaptive" });
names!(KernelKind { KernelKind::VirtioUser => "virtio-user", KernelKind::Tap => "tap" });
names!(CongestionKind { CongestionKind::Cubic => "cubic", CongestionKind::NewReno => "newreno" });
names!(Protocol { Protocol::Udp => "udp", Protocol::Tcp => "tcp" });
names!(Action {
    Action::Service(s) => s.as_str(),
    Action::Kernel => "kernel",
    Action::Drop => "drop",
});
names!(DefaultAction { DefaultAction::Kernel => "kernel", DefaultAction::Drop => "drop" });

/// One problem (or warning) in a config file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line; 0 when the problem has no position (an unreadable file).
    pub line: usize,
    /// 1-based column, in characters; 0 when there is no position.
    pub column: usize,
    /// What is wrong, as a short sentence without the position.
    pub message: String,
}

impl ConfigError {
    /// A problem at `pos`.
    pub fn new(pos: Position, message: impl Into<String>) -> ConfigError {
        ConfigError {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }

    /// The position of the problem.
    pub fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    /// `FILE:LINE:COL: message` (or `FILE: message` without a position).
    pub fn display_in<'a>(&'a self, path: &'a Path) -> impl fmt::Display + 'a {
        Located { path, error: self }
    }
}

struct Located<'a> {
    path: &'a Path,
    error: &'a ConfigError,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.error;
        if e.line == 0 {
            write!(f, "{}: {}", self.path.display(), e.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                e.line,
                e.column,
                e.message
            )
        }
    }
}

/// The text of the config file at `path`, or why not, as one sentence.
///
/// Only a regular file of at most [`MAX_CONFIG_BYTES`] is read. It is opened
/// with `O_NONBLOCK`, so that a FIFO cannot block the open (nor a reload, nor
/// `shardnet check`), and its kind is checked on the open descriptor before
/// any read: a FIFO, a device such as `/dev/zero` or a directory is refused.
fn read_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read the config file: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the config file: {e}"))?;
    let kind = meta.file_type();
    let not_regular = if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else if !kind.is_file() {
        Some("not a file")
    } else {
        None
    };
    if let Some(what) = not_regular {
        return Err(format!(
            "the config file is {what}, not a regular file; give the path of a TOML file"
        ));
    }
    let too_big = || {
        format!(
            "the config file is larger than {} MiB, the most accepted",
            MAX_CONFIG_BYTES >> 20
        )
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    // Bounded even if the file grows while it is read.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the config file: {e}"))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "the config file is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// `LINE:COL: message`.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Every problem found in one config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file.
    pub path: PathBuf,
    /// The problems; never empty when returned by this module.
    pub errors: Vec<ConfigError>,
}

/// One `FILE:LINE:COL: reason` line per error, separated by newlines, no
/// trailing newline.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", e.display_in(&self.path))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// The destination ports of `protocol` whose flows the rules give the
    /// service `name` (in the rules' order, each once): the ports of the
    /// rules naming it, less those an earlier rule takes. What an async
    /// service binds its listeners or sockets on.
    pub fn service_ports(&self, protocol: Protocol, name: &str) -> Vec<u16> {
        let mut ports = Vec::new();
        let mut seen = vec![false; 1 << 16];
        for (at, rule) in self.rules.iter().enumerate() {
            let named = matches!(rule.action, Action::Service(id) if id.as_str() == name);
            if !named || rule.protocol != protocol {
                continue;
            }
            for port in rule.ports.iter().flat_map(|range| range.clone()) {
                let first = self.rules[..at]
                    .iter()
                    .all(|earlier| !earlier.matches(protocol, port));
                if first && !std::mem::replace(&mut seen[usize::from(port)], true) {
                    ports.push(port);
                }
            }
        }
        ports
    }

    /// Reads and validates `path` against the cores online on this machine.
    ///
    /// # Errors
    /// Every problem found, or a single position-less one when the file
    /// cannot be read. Warnings do not fail: see [`Config::warnings`].
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with(path, &CoreSet::online())
    }

    /// Reads and validates `path` against the given set of online cores.
    pub fn load_with(path: &Path, online: &CoreSet) -> Result<Config, ConfigErrors> {
        Config::load_for(path, online, &ServiceCatalog::builtin())
    }

    /// Reads and validates `path` against the given online cores, with
    /// rules naming the services of `services`.
    pub fn load_for(
        path: &Path,
        online: &CoreSet,
        services: &ServiceCatalog,
    ) -> Result<Config, ConfigErrors> {
        let text = read_file(path).map_err(|message| ConfigErrors {
            path: path.to_owned(),
            errors: vec![ConfigError::new(Position::default(), message)],
        })?;
        Config::parse_for(&text, path, online, services)
    }

    /// Validates `text` (the contents of `path`, which is only used in
    /// messages) against the cores online on this machine.
    ///
    /// # Errors
    /// The first syntax or structure error (unknown key, wrong value type),
    /// or else every semantic problem found, in file order.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        Config::parse_with(text, path, &CoreSet::online())
    }

    /// Validates `text` against the given set of online cores.
    pub fn parse_with(text: &str, path: &Path, online: &CoreSet) -> Result<Config, ConfigErrors> {
        validate::parse(text, path, online, &ServiceCatalog::builtin())
    }

    /// Validates `text` against the given online cores, with rules naming
    /// the services of `services` (built-in and registered).
    pub fn parse_for(
        text: &str,
        path: &Path,
        online: &CoreSet,
        services: &ServiceCatalog,
    ) -> Result<Config, ConfigErrors> {
        validate::parse(text, path, online, services)
    }

    /// Problems with features the file may describe but this build's
    /// dataplane cannot run yet, with positions; empty when everything is
    /// supported. Kept out of parsing so files stay valid as the dataplane
    /// grows; `shardnet run` and `shardnet check` refuse a config with any.
    pub fn check_supported(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        let at = |p: Option<Position>| p.unwrap_or(Position { line: 1, column: 1 });
        if self.dataplane.backend == Backend::Dpdk && !cfg!(feature = "dpdk") {
            out.push(ConfigError::new(
                at(self.positions.backend),
                "backend \"dpdk\" needs shardnet built with the \"dpdk\" feature; \
                 use backend = \"af_packet\" or rebuild",
            ));
        }
        out.sort_by_key(ConfigError::position);
        out
    }

    /// Whether some rule sends TCP to a built-in service, that is whether the
    /// TCP engine (and `[tcp]`) is used at all.
    pub fn uses_tcp_services(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.protocol == Protocol::Tcp && matches!(r.action, Action::Service(_)))
    }

    /// Whether some rule uses the built-in service `kind`.
    pub fn uses_service(&self, kind: ServiceId) -> bool {
        self.rules.iter().any(|r| r.action == Action::Service(kind))
    }

    /// A short multi-line summary (no trailing newline), as printed by
    /// `shardnet check`.
    pub fn summary(&self) -> String {
        let mut lines = Vec::new();
        let dp = &self.dataplane;
        let backend = match dp.backend {
            Backend::AfPacket => format!(
                "af_packet on {}",
                self.af_packet
                    .as_ref()
                    .map_or("?", |a| a.interface.as_str())
            ),
            Backend::Dpdk => {
                let mut s = format!(
                    "dpdk port {}, {} mbufs per worker, {}/{} RX/TX descriptors",
                    self.dpdk.port,
                    self.dpdk.mbufs_per_worker,
                    self.dpdk.rx_descriptors,
                    self.dpdk.tx_descriptors
                );
                if !self.dpdk.eal_args.is_empty() {
                    s.push_str(&format!(", EAL args {}", self.dpdk.eal_args.join(" ")));
                }
                s
            }
        };
        lines.push(format!("backend:   {backend}"));
        let workers: Vec<String> = dp.workers.iter().map(usize::to_string).collect();
        lines.push(format!(
            "workers:   {} on {} {}, control thread on core {}, idle {}",
            dp.workers.len(),
            if dp.workers.len() == 1 {
                "core"
            } else {
                "cores"
            },
            workers.join(","),
            dp.control_core,
            dp.idle
        ));
        let i = &self.interface;
        let mut iface = format!("{}/{}", i.address, i.prefix_len);
        if let Some(gw) = i.gateway {
            iface.push_str(&format!(" via {gw}"));
        }
        match i.mac {
            MacSetting::Auto => iface.push_str(", mac auto"),
            MacSetting::Fixed(m) => iface.push_str(&format!(", mac {}", format_mac(m))),
        }
        iface.push_str(&format!(", mtu {}", i.mtu));
        lines.push(format!("interface: {iface}"));
        lines.push(if self.kernel.enabled {
            format!(
                "kernel:    {} {:?}, {} frames per ring",
                self.kernel.kind, self.kernel.name, self.kernel.queue_size
            )
        } else {
            "kernel:    disabled".to_owned()
        });
        lines.push(match self.metrics.listen {
            Some(addr) => format!("metrics:   http://{addr}/metrics"),
            None => "metrics:   disabled".to_owned(),
        });
        lines.push(match &self.metrics.admin_socket {
            Some(path) => format!("admin:     {} (POST /reload)", path.display()),
            None => "admin:     no socket (SIGHUP reloads)".to_owned(),
        });
        if self.uses_tcp_services() {
            let t = &self.tcp;
            lines.push(format!(
                "tcp:       {}, {} connections/worker, buffers {}, TIME-WAIT {}",
                t.congestion,
                t.max_connections,
                format_bytes(u64::from(t.buffer_size)),
                format_ms(t.time_wait_ms)
            ));
        }
        if self.uses_service(ServiceId::HTTP) {
            lines.push(format!(
                "http:      body of {}",
                format_bytes(self.http.body.len() as u64)
            ));
        }
        if let Some(p) = &self.debug.flow_record {
            lines.push(format!("debug:     flow records to {}*", p.display()));
        }
        lines.push(format!(
            "rules:     {} (first match wins)",
            self.rules.len()
        ));
        let width = self
            .rules
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0);
        for (n, r) in self.rules.iter().enumerate() {
            lines.push(format!(
                "  {:>3}. {:<width$}  {} {} -> {}",
                n + 1,
                r.name,
                r.protocol,
                r.ports_string(),
                r.action
            ));
        }
        lines.push(format!("  default -> {}", self.default_action));
        lines.join("\n")
    }
}

/// A size in the largest binary unit that shows it exactly (`256 KiB`,
/// `1025 KiB`, `9 bytes`), or else with one decimal (`97.7 KiB`).
fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let size = |i: usize| 1u64 << (10 * (i + 1));
    if bytes < 1024 {
        return format!("{bytes} {}", if bytes == 1 { "byte" } else { "bytes" });
    }
    if let Some(i) = (0..UNITS.len()).rev().find(|&i| bytes % size(i) == 0) {
        return format!("{} {}", bytes / size(i), UNITS[i]);
    }
    let i = (0..UNITS.len())
        .rev()
        .find(|&i| bytes >= size(i))
        .unwrap_or(0);
    format!("{:.1} {}", bytes as f64 / size(i) as f64, UNITS[i])
}

/// A duration given in milliseconds: `60 s` when whole seconds, else `500 ms`.
fn format_ms(ms: u64) -> String {
    if ms >= 1000 && ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// `02:00:00:00:00:02`.
pub fn format_mac(mac: [u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}
