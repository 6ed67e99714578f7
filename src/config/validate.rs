//! From the raw spanned file to a [`Config`], collecting every problem.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::{self, PortItem, RawFile, RawPorts};
use super::{
    format_bytes, prefix_mask, Action, AfPacketConfig, Backend, Config, ConfigError, ConfigErrors,
    CongestionKind, CoreSet, Dataplane, DebugConfig, DefaultAction, DpdkConfig, HttpSettings,
    IdleMode, InterfaceConfig, KeepaliveSettings, KernelConfig, KernelIngress, KernelKind,
    MacSetting, MetricsConfig, Position, Positions, Protocol, Rule, ServiceCatalog, ServiceId,
    TcpSettings, TxChecksumSetting, DEFAULT_KERNEL_QUEUE_SIZE, MAX_HTTP_BODY, MAX_RULES,
    MAX_STEER_QUEUE_SIZE, MIN_MBUFS_PER_WORKER, MIN_STEER_QUEUE_SIZE,
};

/// The longest Unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Above this many bytes of TCP buffers per worker, a warning.
const TCP_BUFFERS_WARN_BYTES: u64 = 8 << 30;

/// Byte offsets to 1-based line and character column.
pub(super) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    pub(super) fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let mut column = self.text[start..offset].chars().count() + 1;
        if start == 0 && self.text.starts_with('\u{feff}') && offset > 0 {
            column -= 1;
        }
        Position { line, column }
    }
}

struct Validator<'a> {
    index: LineIndex<'a>,
    online: &'a CoreSet,
    /// The services rules may name.
    services: &'a ServiceCatalog,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

/// Where to report something: a byte offset into the text.
type At = usize;

/// The position for a missing section: the top of the file.
const TOP: At = 0;

fn at<T>(s: &Spanned<T>) -> At {
    s.span().start
}

pub(super) fn parse(
    text: &str,
    path: &Path,
    online: &CoreSet,
    services: &ServiceCatalog,
) -> Result<Config, ConfigErrors> {
    let index = LineIndex::new(text);
    let raw: RawFile = toml::from_str(text).map_err(|e| ConfigErrors {
        path: path.to_owned(),
        errors: vec![serde_error(text, &index, &e)],
    })?;
    let mut v = Validator {
        index,
        online,
        services,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let config = v.file(&raw, path);
    if v.errors.is_empty() {
        let mut config = config;
        v.warnings.sort_by_key(ConfigError::position);
        config.warnings = v.warnings;
        Ok(config)
    } else {
        v.errors.sort_by_key(ConfigError::position);
        v.errors.dedup();
        Err(ConfigErrors {
            path: path.to_owned(),
            errors: v.errors,
        })
    }
}

/// Bounds of `[kernel] queue_size`.
const MIN_KERNEL_QUEUE: usize = 8;
const MAX_KERNEL_QUEUE: usize = 65_536;

impl Validator<'_> {
    fn error(&mut self, at: At, message: impl Into<String>) {
        let pos = self.index.position(at);
        self.errors.push(ConfigError::new(pos, message));
    }

    fn warn(&mut self, at: At, message: impl Into<String>) {
        let pos = self.index.position(at);
        self.warnings.push(ConfigError::new(pos, message));
    }

    fn file(&mut self, raw: &RawFile, path: &Path) -> Config {
        let (dataplane, backend_at) = self.dataplane(raw.dataplane.as_ref());
        let dpdk = self.dpdk(raw.dpdk.as_ref());
        let af_packet = self.af_packet(raw.af_packet.as_ref());
        if let Some((backend, b_at)) = backend_at {
            match backend {
                Backend::AfPacket => {
                    if raw.af_packet.is_none() {
                        self.error(
                            b_at,
                            "backend \"af_packet\" needs an [af_packet] section with interface",
                        );
                    }
                    if let Some(d) = &raw.dpdk {
                        self.warn(at(d), "[dpdk] is ignored with backend \"af_packet\"");
                    }
                }
                Backend::Dpdk => {
                    if let Some(a) = &raw.af_packet {
                        self.warn(at(a), "[af_packet] is ignored with backend \"dpdk\"");
                    }
                }
            }
        }
        let interface = self.interface(raw.interface.as_ref());
        let (kernel, kernel_enabled) = self.kernel(
            raw.kernel.as_ref(),
            dataplane.backend,
            af_packet.as_ref().map(|a| a.interface.as_str()),
        );
        if kernel.enabled && dataplane.backend == Backend::Dpdk {
            // The ring towards the kernel holds buffers of the worker's own
            // pool: a full ring must leave the port enough to receive into.
            let most = dpdk.mbufs_per_worker as usize / 4;
            if kernel.queue_size > most {
                let place = raw
                    .kernel
                    .as_ref()
                    .and_then(|k| k.get_ref().queue_size.as_ref().map(at))
                    .or_else(|| raw.kernel.as_ref().map(at));
                if let Some(place) = place {
                    self.error(
                        place,
                        format!(
                            "queue_size {} is more than a quarter of [dpdk] mbufs_per_worker ({}): \
                             a full ring towards the kernel would hold the buffers the port \
                             receives into; lower queue_size or raise mbufs_per_worker",
                            kernel.queue_size, dpdk.mbufs_per_worker
                        ),
                    );
                }
            }
        }
        if dataplane.backend == Backend::Dpdk
            && usize::from(dpdk.rx_descriptors) > dpdk.mbufs_per_worker as usize / 2
        {
            // Every RX descriptor holds an mbuf of the worker's pool.
            if let Some(place) = raw
                .dpdk
                .as_ref()
                .and_then(|d| d.get_ref().rx_descriptors.as_ref().map(at))
            {
                self.error(
                    place,
                    format!(
                        "rx_descriptors {} is more than half of mbufs_per_worker ({}): a full RX \
                         ring would leave the stack too few mbufs; lower rx_descriptors or raise \
                         mbufs_per_worker",
                        dpdk.rx_descriptors, dpdk.mbufs_per_worker
                    ),
                );
            }
        }
        if let (Some(size), Backend::Dpdk) = (dataplane.steer_queue_size, dataplane.backend) {
            // The rings hold buffers of the receiving worker's pool too.
            let rings = dataplane.workers.len().saturating_sub(1);
            let most = dpdk.mbufs_per_worker as usize / 2;
            if rings * size > most {
                let place = raw
                    .dataplane
                    .as_ref()
                    .and_then(|d| d.get_ref().steer_queue_size.as_ref().map(at));
                if let Some(place) = place {
                    self.error(
                        place,
                        format!(
                            "steer_queue_size {size} x {rings} (a ring to each other worker) is \
                             more than half of [dpdk] mbufs_per_worker ({}): full steering rings would hold the \
                             buffers the port receives into; lower steer_queue_size or raise \
                             mbufs_per_worker",
                            dpdk.mbufs_per_worker
                        ),
                    );
                }
            }
        }
        let metrics = self.metrics(raw.metrics.as_ref());
        let tcp = self.tcp(raw.tcp.as_ref(), interface.mtu);
        let http = self.http(raw.http.as_ref());
        let (rules, rule_services) = self.rules(&raw.rule);
        // The stack's own TCP source ports: replies to its active opens
        // reach their connections whatever the rules say, but a peer's new
        // connection to one of them would go to a rule's service, which is
        // rarely what was meant.
        let (first, last) = interface.local_ports;
        if rules.len() == raw.rule.len() {
            for (rule, raw_rule) in rules.iter().zip(&raw.rule) {
                if rule.protocol == Protocol::Tcp
                    && matches!(rule.action, Action::Service(_))
                    && rule
                        .ports
                        .iter()
                        .any(|p| *p.start() <= last && first <= *p.end())
                {
                    self.warn(
                        at(raw_rule),
                        format!(
                            "rule {:?} claims ports inside [interface] local_ports \
                             {first}-{last}, the stack's own source ports: narrow one or the other",
                            rule.name
                        ),
                    );
                }
            }
        }
        if let Some(t) = &raw.tcp {
            let used = rules
                .iter()
                .any(|r| r.protocol == Protocol::Tcp && matches!(r.action, Action::Service(_)));
            if !used {
                self.warn(at(t), "[tcp] has no effect: no rule sends TCP to a service");
            }
        }
        if let Some(h) = &raw.http {
            if !rules
                .iter()
                .any(|r| r.action == Action::Service(ServiceId::HTTP))
            {
                self.warn(
                    at(h),
                    "[http] has no effect: no rule uses the \"http\" service",
                );
            }
        }
        let default_action = self.default(raw.default.as_ref());
        let debug = self.debug(raw.debug.as_ref());

        Config {
            path: path.to_owned(),
            dataplane,
            dpdk,
            af_packet,
            interface,
            kernel,
            metrics,
            tcp,
            http,
            rules,
            default_action,
            debug,
            warnings: Vec::new(),
            services: self.services.clone(),
            positions: Positions {
                backend: backend_at.map(|(_, a)| self.index.position(a)),
                kernel_enabled: kernel_enabled.map(|a| self.index.position(a)),
                rule_services: rule_services
                    .into_iter()
                    .map(|a| self.index.position(a))
                    .collect(),
            },
        }
    }

    /// A core number that must be online.
    fn core(&mut self, value: i64, at: At) -> Option<usize> {
        let Ok(core) = usize::try_from(value) else {
            self.error(
                at,
                format!("core {value} is not a core number (cores count from 0)"),
            );
            return None;
        };
        if !self.online.contains(core) {
            let online = self.online;
            let are = if online.len() == 1 { "core" } else { "cores" };
            let verb = if online.len() == 1 { "is" } else { "are" };
            self.error(
                at,
                format!(
                    "core {core} does not exist on this machine ({are} {online} {verb} online)"
                ),
            );
            return None;
        }
        Some(core)
    }

    fn dataplane(
        &mut self,
        raw: Option<&Spanned<raw::RawDataplane>>,
    ) -> (Dataplane, Option<(Backend, At)>) {
        let mut out = Dataplane {
            backend: Backend::Dpdk,
            workers: Vec::new(),
            control_core: 0,
            idle: IdleMode::Busy,
            steer_queue_size: None,
        };
        let Some(sec) = raw else {
            self.error(
                TOP,
                "missing [dataplane] section; it needs backend and workers",
            );
            return (out, None);
        };
        let head = at(sec);
        let d = sec.get_ref();
        let mut backend = None;
        match &d.backend {
            None => self.error(
                head,
                "[dataplane] needs backend = \"dpdk\" or \"af_packet\"",
            ),
            Some(b) => match b.get_ref().as_str() {
                "dpdk" => backend = Some((Backend::Dpdk, at(b))),
                "af_packet" => backend = Some((Backend::AfPacket, at(b))),
                other => self.error(
                    at(b),
                    format!("unknown backend {other:?}; expected \"dpdk\" or \"af_packet\""),
                ),
            },
        }
        if let Some((b, _)) = backend {
            out.backend = b;
        }
        match &d.workers {
            None => self.error(
                head,
                "[dataplane] needs workers, the list of worker cores (like workers = [1])",
            ),
            Some(list) if list.get_ref().is_empty() => {
                self.error(at(list), "workers must not be empty")
            }
            Some(list) => {
                let mut seen = HashMap::new();
                for w in list.get_ref() {
                    if let Some(core) = self.core(*w.get_ref(), at(w)) {
                        if seen.insert(core, at(w)).is_some() {
                            self.error(at(w), format!("worker core {core} is listed twice"));
                        } else {
                            out.workers.push(core);
                        }
                    }
                }
            }
        }
        if let Some(c) = &d.control_core {
            if let Some(core) = self.core(*c.get_ref(), at(c)) {
                out.control_core = core;
            }
        }
        let control_at = d.control_core.as_ref().map_or(head, at);
        if out.workers.contains(&out.control_core) && self.online.contains(out.control_core) {
            self.warn(
                control_at,
                format!(
                    "control_core {} is also a worker core; the control thread will share it \
                     with a worker (fine for tests, give it its own core in production)",
                    out.control_core
                ),
            );
        }
        if let Some(idle) = &d.idle {
            match idle.get_ref().as_str() {
                "busy" => out.idle = IdleMode::Busy,
                "adaptive" => out.idle = IdleMode::Adaptive,
                other => self.error(
                    at(idle),
                    format!("unknown idle mode {other:?}; expected \"busy\" or \"adaptive\""),
                ),
            }
        }
        let mut steer_queue_size = 0usize;
        let range = MIN_STEER_QUEUE_SIZE as i64..=MAX_STEER_QUEUE_SIZE as i64;
        if d.steer_queue_size.is_some()
            && self.int(
                &mut steer_queue_size,
                "steer_queue_size",
                d.steer_queue_size.as_ref(),
                range,
                " (packets per ring between two workers; default: the RX ring's size)",
            )
        {
            out.steer_queue_size = Some(steer_queue_size);
        }
        (out, backend)
    }

    fn dpdk(&mut self, raw: Option<&Spanned<raw::RawDpdk>>) -> DpdkConfig {
        let mut out = DpdkConfig::default();
        let Some(sec) = raw else { return out };
        let d = sec.get_ref();
        if let Some(args) = &d.eal_args {
            for arg in args.get_ref() {
                let a = arg.get_ref();
                let core_opt = ["-l", "-c", "--lcores", "--main-lcore", "--master-lcore"]
                    .into_iter()
                    .find(|o| {
                        a == o
                            || (o.starts_with("--") && a.starts_with(&format!("{o}=")))
                            || (!o.starts_with("--") && a.starts_with(o))
                    });
                match core_opt {
                    Some(o) => self.error(
                        at(arg),
                        format!(
                            "eal_args must not set cores ({o}); shardnet derives the EAL core \
                             list from workers and control_core"
                        ),
                    ),
                    None => out.eal_args.push(a.clone()),
                }
            }
            // Only when every entry was kept: the indices are the file's.
            if out.eal_args.len() == args.get_ref().len() {
                if let Err(bad) = crate::eal::check_arguments(&out.eal_args) {
                    self.error(at(&args.get_ref()[bad.index]), bad.reason);
                }
            }
        }
        if let Some(p) = &d.port {
            out.port = self.u16(*p.get_ref(), at(p)).unwrap_or(0);
        }
        let range = super::DPDK_DESCRIPTORS;
        let range = i64::from(*range.start())..=i64::from(*range.end());
        self.int(
            &mut out.rx_descriptors,
            "rx_descriptors",
            d.rx_descriptors.as_ref(),
            range.clone(),
            " per queue (the device's own limits are checked at start)",
        );
        self.int(
            &mut out.tx_descriptors,
            "tx_descriptors",
            d.tx_descriptors.as_ref(),
            range,
            " per queue (the device's own limits are checked at start)",
        );
        if let Some(m) = &d.mbufs_per_worker {
            let n = *m.get_ref();
            if (0..i64::from(MIN_MBUFS_PER_WORKER)).contains(&n) {
                self.error(
                    at(m),
                    format!(
                        "mbufs_per_worker {n} is too small; use at least {MIN_MBUFS_PER_WORKER} \
                         (the default is {})",
                        super::DEFAULT_MBUFS_PER_WORKER
                    ),
                );
            } else {
                match u32::try_from(n) {
                    Ok(n) => out.mbufs_per_worker = n,
                    Err(_) => self.error(
                        at(m),
                        format!(
                            "mbufs_per_worker {n} is out of range {MIN_MBUFS_PER_WORKER}-{}",
                            u32::MAX
                        ),
                    ),
                }
            }
        }
        if let Some(t) = &d.tx_checksum {
            match t.get_ref().as_str() {
                "auto" => out.tx_checksum = TxChecksumSetting::Auto,
                "software" => out.tx_checksum = TxChecksumSetting::Software,
                other => self.error(
                    at(t),
                    format!("unknown tx_checksum {other:?}; expected \"auto\" or \"software\""),
                ),
            }
        }
        out
    }

    /// A port number (UDP/TCP or DPDK port id).
    fn u16(&mut self, value: i64, at: At) -> Option<u16> {
        match u16::try_from(value) {
            Ok(p) => Some(p),
            Err(_) => {
                self.error(at, format!("port {value} is out of range 0-65535"));
                None
            }
        }
    }

    fn ifname(&mut self, name: &Spanned<String>) -> Option<String> {
        let n = name.get_ref();
        let ok = !n.is_empty()
            && n.len() <= 15
            && n != "."
            && n != ".."
            && !n
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if ok {
            Some(n.clone())
        } else {
            self.error(
                at(name),
                format!(
                    "{n:?} is not a valid interface name (1-15 bytes, no '/', ':' or whitespace)"
                ),
            );
            None
        }
    }

    fn af_packet(&mut self, raw: Option<&Spanned<raw::RawAfPacket>>) -> Option<AfPacketConfig> {
        let sec = raw?;
        let a = sec.get_ref();
        let mut kernel_ingress = KernelIngress::default();
        if let Some(k) = &a.kernel_ingress {
            match k.get_ref().as_str() {
                "keep" => kernel_ingress = KernelIngress::Keep,
                "drop" => kernel_ingress = KernelIngress::Drop,
                other => self.error(
                    at(k),
                    format!("unknown kernel_ingress {other:?}; expected \"keep\" or \"drop\""),
                ),
            }
        }
        let mut rx_ring_frames = super::DEFAULT_AF_PACKET_RX_FRAMES;
        self.int(
            &mut rx_ring_frames,
            "rx_ring_frames",
            a.rx_ring_frames.as_ref(),
            256..=65536,
            " frames per queue",
        );
        match &a.interface {
            None => {
                self.error(
                    at(sec),
                    "[af_packet] needs interface = \"NAME\" (like \"eth1\")",
                );
                None
            }
            Some(name) => self.ifname(name).map(|interface| AfPacketConfig {
                interface,
                kernel_ingress,
                rx_ring_frames,
            }),
        }
    }

    fn interface(&mut self, raw: Option<&Spanned<raw::RawInterface>>) -> InterfaceConfig {
        let mut out = InterfaceConfig {
            address: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway: None,
            mac: MacSetting::Auto,
            local_ports: super::DEFAULT_LOCAL_PORTS,
            mtu: super::DEFAULT_MTU,
        };
        let Some(sec) = raw else {
            self.error(
                TOP,
                "missing [interface] section; it needs address (like address = \"198.18.0.2/24\")",
            );
            return out;
        };
        let i = sec.get_ref();
        let mut have_address = false;
        match &i.address {
            None => self.error(
                at(sec),
                "[interface] needs address (like address = \"198.18.0.2/24\")",
            ),
            Some(a) => match parse_cidr(a.get_ref()) {
                Err(msg) => self.error(at(a), msg),
                Ok((addr, len)) => match host_problem(addr, len) {
                    Some(msg) => self.error(at(a), msg),
                    None => {
                        out.address = addr;
                        out.prefix_len = len;
                        have_address = true;
                    }
                },
            },
        }
        if let Some(g) = &i.gateway {
            match g.get_ref().parse::<Ipv4Addr>() {
                Err(_) => self.error(
                    at(g),
                    format!(
                        "{:?} is not an IPv4 address (like \"198.18.0.1\")",
                        g.get_ref()
                    ),
                ),
                Ok(gw) if have_address && gw == out.address => {
                    self.error(at(g), format!("gateway {gw} is the stack's own address"))
                }
                Ok(gw) if have_address && !out.contains(gw) => self.error(
                    at(g),
                    format!(
                        "gateway {gw} is outside {}/{}",
                        out.network(),
                        out.prefix_len
                    ),
                ),
                Ok(gw) => out.gateway = Some(gw),
            }
        }
        if let Some(m) = &i.mac {
            match parse_mac(m.get_ref()) {
                Ok(mac) => out.mac = mac,
                Err(msg) => self.error(at(m), msg),
            }
        }
        if let Some(m) = &i.mtu {
            let range = super::MTU_RANGE;
            self.int(
                &mut out.mtu,
                "mtu",
                Some(m),
                i64::from(*range.start())..=i64::from(*range.end()),
                " bytes (IPv4's least to a 9000-byte jumbo frame)",
            );
        }
        if let Some(p) = &i.local_ports {
            let item = PortItem::Str(p.get_ref().clone());
            match self.port_range(&item, at(p)) {
                Some(range) if *range.start() == 0 => self.error(
                    at(p),
                    "local_ports cannot include port 0; use ports 1-65535 \
                     (like local_ports = \"61000-65535\")",
                ),
                Some(range) => out.local_ports = (*range.start(), *range.end()),
                None => {}
            }
        }
        out
    }

    fn kernel(
        &mut self,
        raw: Option<&Spanned<raw::RawKernel>>,
        backend: Backend,
        af_packet_interface: Option<&str>,
    ) -> (KernelConfig, Option<At>) {
        let mut out = KernelConfig::default();
        let Some(sec) = raw else { return (out, None) };
        let k = sec.get_ref();
        let mut enabled_at = None;
        if let Some(e) = &k.enabled {
            out.enabled = *e.get_ref();
            enabled_at = Some(at(e));
        }
        if let Some(kind) = &k.kind {
            match kind.get_ref().as_str() {
                "virtio-user" => {
                    out.kind = KernelKind::VirtioUser;
                    if out.enabled && backend == Backend::AfPacket {
                        self.error(
                            at(kind),
                            "kind \"virtio-user\" is a DPDK device and needs backend = \"dpdk\"; \
                             use kind = \"tap\" with the AF_PACKET backend",
                        );
                    }
                }
                "tap" => out.kind = KernelKind::Tap,
                other => self.error(
                    at(kind),
                    format!("unknown kernel kind {other:?}; expected \"virtio-user\" or \"tap\""),
                ),
            }
        }
        if let Some(name) = &k.name {
            if let Some(n) = self.ifname(name) {
                if out.enabled && af_packet_interface == Some(n.as_str()) {
                    self.error(
                        at(name),
                        format!(
                            "the kernel interface {n:?} is the [af_packet] interface; \
                             shardnet creates the kernel interface, give it another name"
                        ),
                    );
                }
                out.name = n;
            }
        }
        if let Some(q) = &k.queue_size {
            let n = *q.get_ref();
            let range = MIN_KERNEL_QUEUE..=MAX_KERNEL_QUEUE;
            match usize::try_from(n) {
                Ok(n) if range.contains(&n) => out.queue_size = n,
                _ => self.error(
                    at(q),
                    format!(
                        "queue_size {n} is out of range {}-{} (frames per ring, each way, \
                         per worker; the default is {})",
                        range.start(),
                        range.end(),
                        DEFAULT_KERNEL_QUEUE_SIZE
                    ),
                ),
            }
        }
        (out, enabled_at)
    }

    fn metrics(&mut self, raw: Option<&Spanned<raw::RawMetrics>>) -> MetricsConfig {
        let mut out = MetricsConfig::default();
        let Some(raw) = raw.map(Spanned::get_ref) else {
            return out;
        };
        if let Some(l) = &raw.listen {
            match l.get_ref().parse::<SocketAddr>() {
                Ok(addr) => {
                    out.listen = Some(addr);
                    if !addr.ip().is_loopback() {
                        self.warn(
                            at(l),
                            format!(
                                "listen {addr} is not a loopback address: anyone who can reach \
                                 it reads the metrics (it refuses state changes, which only the \
                                 admin socket takes); firewall it or listen on 127.0.0.1"
                            ),
                        );
                    }
                }
                Err(_) => self.error(
                    at(l),
                    format!(
                        "{:?} is not a socket address (like \"127.0.0.1:9464\")",
                        l.get_ref()
                    ),
                ),
            }
        }
        if let Some(s) = &raw.admin_socket {
            let path = PathBuf::from(s.get_ref());
            if !path.is_absolute() {
                self.error(
                    at(s),
                    format!(
                        "admin_socket {:?} is not an absolute path (like \"/run/shardnet/admin.sock\")",
                        s.get_ref()
                    ),
                );
            } else if s.get_ref().len() > MAX_SOCKET_PATH {
                self.error(
                    at(s),
                    format!(
                        "admin_socket is {} bytes long; a Unix socket path holds at most {MAX_SOCKET_PATH}",
                        s.get_ref().len()
                    ),
                );
            } else if path.file_name().is_none() {
                self.error(at(s), "admin_socket names a directory, not a socket file");
            } else {
                out.admin_socket = Some(path);
            }
        }
        out
    }

    /// An integer key that must lie in `range`, stored into `slot`. Otherwise
    /// `KEY N is out of range A-B` followed by `why` (a unit, a reason) at the
    /// value. Whether `slot` holds a valid value afterwards (absent keys keep
    /// the default, which is valid).
    fn int<T: TryFrom<i64>>(
        &mut self,
        slot: &mut T,
        key: &str,
        value: Option<&Spanned<i64>>,
        range: RangeInclusive<i64>,
        why: &str,
    ) -> bool {
        let Some(value) = value else { return true };
        let n = *value.get_ref();
        match T::try_from(n) {
            Ok(v) if range.contains(&n) => {
                *slot = v;
                true
            }
            _ => {
                self.error(
                    at(value),
                    format!(
                        "{key} {n} is out of range {}-{}{why}",
                        range.start(),
                        range.end()
                    ),
                );
                false
            }
        }
    }

    /// `[tcp]`, for a port of `mtu`: the MSS defaults to `mtu - 40`, and a
    /// larger one is refused (such segments could not be sent).
    fn tcp(&mut self, raw: Option<&Spanned<raw::RawTcp>>, mtu: u16) -> TcpSettings {
        let most_mss = mtu.saturating_sub(super::TCP_IP_HEADERS);
        let mut out = TcpSettings {
            mss: most_mss,
            ..TcpSettings::default()
        };
        let Some(sec) = raw else { return out };
        let t = sec.get_ref();
        self.int(
            &mut out.max_connections,
            "max_connections_per_worker",
            t.max_connections_per_worker.as_ref(),
            1..=16_777_216,
            "",
        );
        self.int(
            &mut out.syn_backlog,
            "syn_backlog",
            t.syn_backlog.as_ref(),
            1..=1_048_576,
            "",
        );
        let buffer_ok = self.int(
            &mut out.buffer_size,
            "buffer_size",
            t.buffer_size.as_ref(),
            4096..=16_777_216,
            " bytes",
        );
        let buffers_ok = self.int(
            &mut out.max_buffers,
            "max_buffers_per_worker",
            t.max_buffers_per_worker.as_ref(),
            2..=16_777_216,
            " (a connection uses up to two)",
        );
        if buffer_ok && buffers_ok {
            let total = out.max_buffers as u64 * u64::from(out.buffer_size);
            let written = t.max_buffers_per_worker.as_ref().or(t.buffer_size.as_ref());
            if let (true, Some(w)) = (total > TCP_BUFFERS_WARN_BYTES, written) {
                self.warn(
                    at(w),
                    format!(
                        "TCP buffers may take up to {} per worker (max_buffers_per_worker {} \
                         x buffer_size {}); more than {} is probably more memory than meant",
                        format_bytes(total),
                        out.max_buffers,
                        out.buffer_size,
                        format_bytes(TCP_BUFFERS_WARN_BYTES)
                    ),
                );
            }
        }
        if let Some(m) = &t.mss {
            let n = *m.get_ref();
            if (i64::from(most_mss) + 1..=8960).contains(&n) {
                self.error(
                    at(m),
                    format!(
                        "mss {n} is larger than [interface] mtu {mtu} minus 40 bytes of IPv4 and \
                         TCP headers ({most_mss}); raise mtu (on the NIC and its peers too) or \
                         leave mss out (it defaults to mtu - 40)"
                    ),
                );
            } else {
                self.int(
                    &mut out.mss,
                    "mss",
                    Some(m),
                    536..=i64::from(most_mss),
                    &format!(
                        " bytes ([interface] mtu {mtu} minus 40 bytes of IPv4 and TCP headers \
                         at most)"
                    ),
                );
            }
        }
        if let Some(c) = &t.congestion {
            match c.get_ref().as_str() {
                "cubic" => out.congestion = CongestionKind::Cubic,
                "newreno" => out.congestion = CongestionKind::NewReno,
                other => self.error(
                    at(c),
                    format!(
                        "unknown congestion control {other:?}; expected \"cubic\" or \"newreno\""
                    ),
                ),
            }
        }
        for (slot, value) in [
            (&mut out.nagle, &t.nagle),
            (&mut out.timestamps, &t.timestamps),
            (&mut out.sack, &t.sack),
            (&mut out.window_scaling, &t.window_scaling),
        ] {
            if let Some(v) = value {
                *slot = *v.get_ref();
            }
        }
        self.int(
            &mut out.delayed_ack_ms,
            "delayed_ack_ms",
            t.delayed_ack_ms.as_ref(),
            0..=500,
            " (RFC 1122 allows at most 500 ms)",
        );
        if self.int(
            &mut out.time_wait_ms,
            "time_wait_ms",
            t.time_wait_ms.as_ref(),
            0..=240_000,
            " (RFC 9293's 2*MSL is at most 240 s)",
        ) && out.time_wait_ms < 1000
        {
            if let Some(v) = &t.time_wait_ms {
                self.warn(
                    at(v),
                    format!(
                        "time_wait_ms {}: TIME-WAIT shorter than 1 s risks old duplicates \
                         being accepted by a new connection",
                        out.time_wait_ms
                    ),
                );
            }
        }
        self.int(
            &mut out.fin_timeout_ms,
            "fin_timeout_ms",
            t.fin_timeout_ms.as_ref(),
            1000..=600_000,
            "",
        );
        self.keepalive(t, &mut out);
        let min_ok = self.int(
            &mut out.rto_min_ms,
            "rto_min_ms",
            t.rto_min_ms.as_ref(),
            1..=60_000,
            "",
        );
        let max_ok = self.int(
            &mut out.rto_max_ms,
            "rto_max_ms",
            t.rto_max_ms.as_ref(),
            1000..=600_000,
            "",
        );
        let initial_ok = self.int(
            &mut out.rto_initial_ms,
            "rto_initial_ms",
            t.rto_initial_ms.as_ref(),
            1..=60_000,
            "",
        );
        // The defaults always agree (rto_max_ms's 120000 is above the other
        // two's ranges), so a conflict needs rto_max_ms written.
        if let (true, Some(max)) = (max_ok, &t.rto_max_ms) {
            for (ok, key, value) in [
                (min_ok, "rto_min_ms", out.rto_min_ms),
                (initial_ok, "rto_initial_ms", out.rto_initial_ms),
            ] {
                if ok && out.rto_max_ms < value {
                    self.error(
                        at(max),
                        format!(
                            "rto_max_ms {} is below {key} {value}; it must be at least as large",
                            out.rto_max_ms
                        ),
                    );
                }
            }
        }
        self.int(
            &mut out.max_retransmits,
            "max_retransmits",
            t.max_retransmits.as_ref(),
            1..=30,
            "",
        );
        self.int(
            &mut out.max_syn_retransmits,
            "max_syn_retransmits",
            t.max_syn_retransmits.as_ref(),
            1..=30,
            "",
        );
        out
    }

    /// `keepalive_idle_s` turns keepalive on; the other two keys only tune it.
    fn keepalive(&mut self, t: &raw::RawTcp, out: &mut TcpSettings) {
        let mut idle_s = 0;
        let idle_ok = self.int(
            &mut idle_s,
            "keepalive_idle_s",
            t.keepalive_idle_s.as_ref(),
            0..=604_800,
            " seconds (0 turns keepalive off; at most a week)",
        );
        let mut k = KeepaliveSettings {
            idle_s,
            interval_s: 75,
            probes: 9,
        };
        self.int(
            &mut k.interval_s,
            "keepalive_interval_s",
            t.keepalive_interval_s.as_ref(),
            1..=3600,
            " seconds",
        );
        self.int(
            &mut k.probes,
            "keepalive_probes",
            t.keepalive_probes.as_ref(),
            1..=127,
            "",
        );
        if idle_s > 0 {
            out.keepalive = Some(k);
        } else if idle_ok {
            let why = if t.keepalive_idle_s.is_some() {
                "keepalive_idle_s = 0 turns keepalive off"
            } else {
                "keepalive is off"
            };
            for (key, value) in [
                ("keepalive_interval_s", t.keepalive_interval_s.as_ref()),
                ("keepalive_probes", t.keepalive_probes.as_ref()),
            ] {
                if let Some(v) = value {
                    self.warn(
                        at(v),
                        format!("{key} is ignored without keepalive_idle_s ({why})"),
                    );
                }
            }
        }
    }

    fn http(&mut self, raw: Option<&Spanned<raw::RawHttp>>) -> HttpSettings {
        let mut out = HttpSettings::default();
        if let Some(h) = raw.map(|s| s.get_ref()) {
            self.int(
                &mut out.header_timeout_ms,
                "header_timeout_ms",
                h.header_timeout_ms.as_ref(),
                0..=86_400_000,
                " ms (0: no limit)",
            );
            self.int(
                &mut out.idle_timeout_ms,
                "idle_timeout_ms",
                h.idle_timeout_ms.as_ref(),
                0..=86_400_000,
                " ms (0: no limit)",
            );
        }
        if let Some(b) = raw.and_then(|s| s.get_ref().body.as_ref()) {
            let len = b.get_ref().len();
            if len > MAX_HTTP_BODY {
                self.error(
                    at(b),
                    format!("body is {len} bytes; at most {MAX_HTTP_BODY} (1 MiB) are allowed"),
                );
            } else {
                out.body = b.get_ref().clone();
            }
        }
        out
    }

    fn rules(&mut self, raw: &[Spanned<raw::RawRule>]) -> (Vec<Rule>, Vec<At>) {
        let mut rules = Vec::new();
        let mut service_at = Vec::new();
        let mut heads = Vec::new();
        let mut names: HashMap<String, At> = HashMap::new();
        if raw.len() > MAX_RULES {
            self.error(
                at(&raw[MAX_RULES]),
                format!(
                    "too many rules ({}); at most {MAX_RULES} are allowed",
                    raw.len()
                ),
            );
        }
        for r in raw {
            let head = at(r);
            let rr = r.get_ref();
            let errors_before = self.errors.len();
            let mut name = String::new();
            match &rr.name {
                None => self.error(head, "[[rule]] needs a name (like name = \"echo\")"),
                Some(n) if n.get_ref().trim().is_empty() => {
                    self.error(at(n), "rule name must not be empty")
                }
                Some(n) => {
                    name = n.get_ref().clone();
                    if let Some(&first) = names.get(&name) {
                        let line = self.index.position(first).line;
                        self.error(
                            at(n),
                            format!("rule name {name:?} is used twice (first on line {line})"),
                        );
                    } else {
                        names.insert(name.clone(), at(n));
                    }
                }
            }
            let mut protocol = None;
            match &rr.protocol {
                None => self.error(head, "[[rule]] needs protocol = \"udp\" or \"tcp\""),
                Some(p) => match p.get_ref().as_str() {
                    "udp" => protocol = Some(Protocol::Udp),
                    "tcp" => protocol = Some(Protocol::Tcp),
                    other => self.error(
                        at(p),
                        format!("unknown protocol {other:?}; expected \"udp\" or \"tcp\""),
                    ),
                },
            }
            let ports = match &rr.ports {
                None => {
                    self.error(
                        head,
                        "[[rule]] needs ports (like ports = \"8000-8100\" or [80, 443])",
                    );
                    Vec::new()
                }
                Some(p) => self.ports(p),
            };
            let mut action = None;
            match &rr.service {
                None => self.error(
                    head,
                    "[[rule]] needs service (a built-in service, \"kernel\" or \"drop\")",
                ),
                Some(s) => {
                    let a = match s.get_ref().as_str() {
                        "kernel" => Some(Action::Kernel),
                        "drop" => Some(Action::Drop),
                        other => match self.services.get(other) {
                            Some(id) => Some(Action::Service(id)),
                            None => {
                                let names: Vec<&str> =
                                    self.services.ids().iter().map(|id| id.as_str()).collect();
                                self.error(
                                    at(s),
                                    format!(
                                        "unknown service {other:?}; expected one of {}, kernel, \
                                         drop",
                                        names.join(", ")
                                    ),
                                );
                                None
                            }
                        },
                    };
                    if let (Some(Action::Service(kind)), Some(proto)) = (a, protocol) {
                        if !kind.supports(proto) {
                            self.error(
                                at(s),
                                format!(
                                    "service {:?} runs over {} only, but this rule has \
                                     protocol = \"{proto}\"",
                                    kind.as_str(),
                                    if kind.supports(Protocol::Tcp) {
                                        "tcp"
                                    } else {
                                        "udp"
                                    }
                                ),
                            );
                        }
                    }
                    action = a.map(|a| (a, at(s)));
                }
            }
            if self.errors.len() == errors_before {
                if let (Some(protocol), Some((action, s_at))) = (protocol, action) {
                    rules.push(Rule {
                        name,
                        protocol,
                        ports,
                        action,
                    });
                    service_at.push(s_at);
                    heads.push(head);
                }
            }
        }
        self.shadowed(&rules, &heads);
        (rules, service_at)
    }

    /// Warns about rules that earlier rules hide completely.
    fn shadowed(&mut self, rules: &[Rule], heads: &[At]) {
        let mut claimed = [vec![0u64; 1024], vec![0u64; 1024]];
        for (rule, &head) in rules.iter().zip(heads) {
            let bits = &mut claimed[rule.protocol as usize];
            let mut reachable = false;
            for range in &rule.ports {
                for port in range.clone() {
                    let (w, b) = (usize::from(port) / 64, port % 64);
                    if bits[w] & (1 << b) == 0 {
                        reachable = true;
                        bits[w] |= 1 << b;
                    }
                }
            }
            if !reachable {
                self.warn(
                    head,
                    format!(
                        "rule {:?} never matches: earlier rules claim all of its ports",
                        rule.name
                    ),
                );
            }
        }
    }

    fn ports(&mut self, p: &Spanned<RawPorts>) -> Vec<RangeInclusive<u16>> {
        match p.get_ref() {
            RawPorts::One(item) => self.port_item(item, at(p)).into_iter().collect(),
            RawPorts::List(items) if items.is_empty() => {
                self.error(at(p), "ports must not be empty");
                Vec::new()
            }
            RawPorts::List(items) => items
                .iter()
                .filter_map(|i| self.port_item(i.get_ref(), at(i)))
                .collect(),
        }
    }

    /// One item of a rule's `ports`: a port or a range of them, 1-65535.
    fn port_item(&mut self, item: &PortItem, at: At) -> Option<RangeInclusive<u16>> {
        let range = self.port_range(item, at)?;
        if *range.start() == 0 {
            // Reserved (RFC 6335): no peer sends to it, and a UDP source
            // port 0 means "no reply", so a rule on it is a mistake.
            self.error(
                at,
                "port 0 is reserved and cannot be claimed by a rule; use ports 1-65535",
            );
            return None;
        }
        Some(range)
    }

    fn port_range(&mut self, item: &PortItem, at: At) -> Option<RangeInclusive<u16>> {
        let s = match item {
            PortItem::Int(n) => return self.u16(*n, at).map(|p| p..=p),
            PortItem::Str(s) => s,
        };
        let not_ports =
            || format!("{s:?} is not a port or a port range (like \"80\" or \"8000-8100\")");
        let number = |t: &str| -> Option<u64> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                Some(t.parse().unwrap_or(u64::MAX))
            }
        };
        let in_range = |v: &mut Self, n: u64| match u16::try_from(n) {
            Ok(p) => Some(p),
            Err(_) => {
                let shown = if n == u64::MAX {
                    "number".to_owned()
                } else {
                    n.to_string()
                };
                v.error(at, format!("port {shown} is out of range 0-65535"));
                None
            }
        };
        match s.split_once('-') {
            None => match number(s) {
                None => {
                    self.error(at, not_ports());
                    None
                }
                Some(n) => in_range(self, n).map(|p| p..=p),
            },
            Some((a, b)) => match (number(a), number(b)) {
                (Some(a), Some(b)) => {
                    let a = in_range(self, a)?;
                    let b = in_range(self, b)?;
                    if a > b {
                        self.error(at, format!("port range {s:?} is reversed"));
                        None
                    } else {
                        Some(a..=b)
                    }
                }
                _ => {
                    self.error(at, not_ports());
                    None
                }
            },
        }
    }

    fn default(&mut self, raw: Option<&Spanned<raw::RawDefault>>) -> DefaultAction {
        let Some(sec) = raw else {
            return DefaultAction::Kernel;
        };
        match &sec.get_ref().action {
            None => {
                self.error(at(sec), "[default] needs action = \"kernel\" or \"drop\"");
                DefaultAction::Kernel
            }
            Some(a) => match a.get_ref().as_str() {
                "kernel" => DefaultAction::Kernel,
                "drop" => DefaultAction::Drop,
                other => {
                    self.error(
                        at(a),
                        format!(
                            "unknown default action {other:?}; expected \"kernel\" or \"drop\""
                        ),
                    );
                    DefaultAction::Kernel
                }
            },
        }
    }

    fn debug(&mut self, raw: Option<&Spanned<raw::RawDebug>>) -> DebugConfig {
        let mut out = DebugConfig::default();
        if let Some(f) = raw.and_then(|s| s.get_ref().flow_record.as_ref()) {
            if f.get_ref().is_empty() {
                self.error(
                    at(f),
                    "flow_record must not be empty (leave it out to disable)",
                );
            } else {
                out.flow_record = Some(PathBuf::from(f.get_ref()));
            }
        }
        if let Some(stall) = raw.and_then(|s| s.get_ref().stall_endpoint.as_ref()) {
            out.stall_endpoint = *stall.get_ref();
        }
        out
    }
}

/// `198.18.0.2/24`.
fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let generic = || format!("{s:?} is not an IPv4 address with prefix (like \"198.18.0.2/24\")");
    let (addr, len) = s.split_once('/').ok_or_else(generic)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| generic())?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(generic());
    }
    let len: u8 = len.parse().map_err(|_| generic())?;
    if len > 32 {
        return Err(format!("prefix length {len} is out of range 0-32"));
    }
    Ok((addr, len))
}

/// Why `addr` cannot be the stack's own address in `addr/len`, if it cannot.
fn host_problem(addr: Ipv4Addr, len: u8) -> Option<String> {
    if addr.is_unspecified() {
        return Some(format!(
            "address {addr} cannot be used as the stack's address"
        ));
    }
    if addr.is_multicast() || addr.is_broadcast() {
        return Some(format!(
            "address {addr} is a multicast or broadcast address"
        ));
    }
    if addr.is_loopback() {
        return Some(format!("address {addr} is a loopback address"));
    }
    if len <= 30 {
        let mask = prefix_mask(len);
        let host = u32::from(addr) & !mask;
        let network = Ipv4Addr::from(u32::from(addr) & mask);
        if host == 0 {
            return Some(format!(
                "address {addr} is the network address of {network}/{len}; use a host address"
            ));
        }
        if host == !mask {
            return Some(format!(
                "address {addr} is the broadcast address of {network}/{len}; use a host address"
            ));
        }
    }
    None
}

/// `"auto"` or `xx:xx:xx:xx:xx:xx` (unicast, not all zero).
fn parse_mac(s: &str) -> Result<MacSetting, String> {
    if s == "auto" {
        return Ok(MacSetting::Auto);
    }
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    let well_formed = parts.len() == 6
        && parts.iter().zip(mac.iter_mut()).all(|(p, b)| {
            p.len() == 2
                && p.bytes().all(|c| c.is_ascii_hexdigit())
                && u8::from_str_radix(p, 16).map(|v| *b = v).is_ok()
        });
    if !well_formed {
        return Err(format!(
            "{s:?} is not a MAC address; use \"auto\" or the xx:xx:xx:xx:xx:xx form \
             (like \"02:00:00:00:00:02\")"
        ));
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "{s:?} is a multicast MAC address; the stack needs a unicast one \
             (the first byte must be even, like \"02:00:00:00:00:02\")"
        ));
    }
    if mac == [0; 6] {
        return Err(format!("{s:?} is not a usable MAC address"));
    }
    Ok(MacSetting::Fixed(mac))
}

/// Turns serde/toml's first error into a positioned, friendlier one.
fn serde_error(text: &str, index: &LineIndex, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let pos = span
        .clone()
        .map_or(Position::default(), |s| index.position(s.start));
    let spanned_text = span
        .as_ref()
        .and_then(|s| text.get(s.clone()))
        .unwrap_or("");
    let msg = e.message();
    let message = if let Some(rest) = msg.strip_prefix("unknown field `") {
        unknown_key(text, span.as_ref().map_or(0, |s| s.start), rest)
    } else if msg == "duplicate key" && !spanned_text.is_empty() {
        let start = span.as_ref().map_or(0, |s| s.start);
        if in_header(text, start) {
            format!("[{spanned_text}] is defined twice")
        } else {
            format!("{spanned_text} is defined twice")
        }
    } else if msg.starts_with("invalid type: map, expected a sequence")
        && (spanned_text == "rule" || spanned_text.starts_with("[rule"))
    {
        "rules are written [[rule]] (an array of tables), not [rule]".to_owned()
    } else {
        msg.replace("invalid type: map", "invalid type: table")
            .replace("invalid type: sequence", "invalid type: array")
            .replace("a sequence", "an array")
            .replace("a map", "a table")
            .replace("expected i64", "expected an integer")
            .replace(" as i128", "")
            .replace("invalid type: ", "wrong type: ")
    };
    ConfigError::new(pos, message)
}

/// `rest` is serde's message after "unknown field `".
fn unknown_key(text: &str, offset: usize, rest: &str) -> String {
    let Some((key, expected)) = rest.split_once('`') else {
        return format!("unknown key `{rest}");
    };
    let expected: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let section = raw::SECTIONS.iter().find(|(_, keys)| {
        keys.len() == expected.len() && keys.iter().all(|k| expected.contains(k))
    });
    match section {
        Some(("", keys)) => {
            let list: Vec<String> = keys
                .iter()
                .map(|k| {
                    if *k == "rule" {
                        "[[rule]]".to_owned()
                    } else {
                        format!("[{k}]")
                    }
                })
                .collect();
            if in_header(text, offset) {
                format!(
                    "unknown section [{key}]; expected one of {}",
                    list.join(", ")
                )
            } else {
                format!(
                    "unknown key {key:?} outside any section; expected one of the sections {}",
                    list.join(", ")
                )
            }
        }
        Some((name, keys)) => format!(
            "unknown key {key:?} in [{name}]; expected one of {}",
            keys.join(", ")
        ),
        None => format!(
            "unknown key {key:?}; expected one of {}",
            expected.join(", ")
        ),
    }
}

/// Whether `offset` is inside a table header (`[name]` or `[[name]]`).
fn in_header(text: &str, offset: usize) -> bool {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    text.get(line_start..offset)
        .is_some_and(|before| before.trim_start().starts_with('['))
}
