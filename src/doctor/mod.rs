//! `shardnet doctor`: what this host lacks for a config, read from sysfs and
//! procfs, one finding a line with the command that fixes it.
//!
//! Every file is read under a root directory ([`Host::new`]), `/` for the
//! real host and a fake tree holding `sys/` and `proc/` in tests. Nothing is
//! changed: the doctor only reads.

use std::fmt;
use std::path::PathBuf;

use crate::config::{Backend, Config, CoreSet};
use crate::eal;

#[cfg(test)]
mod tests;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// In order.
    Ok,
    /// shardnet starts, but runs worse than it could.
    Warn,
    /// shardnet cannot start (or cannot reach its NIC) until this is fixed.
    Blocker,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How much it matters.
    pub level: Level,
    /// What was found, as one sentence.
    pub what: String,
    /// The command (or step) that fixes it; none for [`Level::Ok`].
    pub fix: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Finding {
        Finding {
            level: Level::Ok,
            what: what.into(),
            fix: None,
        }
    }

    fn warn(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Warn,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }

    fn blocker(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            level: Level::Blocker,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Finding {
    /// `BLOCKER: what; fix: command`, `WARN: ...`, `OK: what`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Blocker => "BLOCKER",
        };
        write!(f, "{level}: {}", self.what)?;
        if let Some(fix) = &self.fix {
            write!(f, "; fix: {fix}")?;
        }
        Ok(())
    }
}

/// The exit status of `shardnet doctor` for `findings`: 1 if one blocks a
/// start, else 0 (2, a bad config, is the command's own).
pub fn exit_code(findings: &[Finding]) -> u8 {
    u8::from(findings.iter().any(|f| f.level == Level::Blocker))
}

/// The Mellanox PCI vendor id: ConnectX NICs run DPDK's mlx5 driver on top
/// of the kernel's `mlx5_core` (bifurcated), never on vfio-pci.
pub const MELLANOX_VENDOR: &str = "0x15b3";

/// The host as files under a root directory.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    /// The host whose `sys/` and `proc/` are under `root` (`/` for this one).
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.path(path))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// The names in directory `path`, sorted; empty if it cannot be read.
    fn list(&self, path: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(path))
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The PCI device `address` as sysfs shows it, `None` if absent.
    pub fn pci_device(&self, address: &str) -> Option<PciDevice> {
        let dir = format!("sys/bus/pci/devices/{address}");
        if !self.path(&dir).exists() {
            return None;
        }
        let driver = std::fs::read_link(self.path(&format!("{dir}/driver")))
            .ok()
            .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()));
        let numa_node = self
            .read(&format!("{dir}/numa_node"))
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|n| usize::try_from(n).ok());
        Some(PciDevice {
            address: address.to_owned(),
            vendor: self.read(&format!("{dir}/vendor")).unwrap_or_default(),
            driver,
            numa_node,
            netdevs: self.list(&format!("{dir}/net")),
        })
    }

    /// Whether the rdma-core user-space library mlx5 needs is installed.
    fn has_libibverbs(&self) -> bool {
        [
            "usr/lib/x86_64-linux-gnu",
            "usr/lib/aarch64-linux-gnu",
            "usr/lib64",
            "usr/lib",
            "lib/x86_64-linux-gnu",
        ]
        .iter()
        .any(|dir| self.path(&format!("{dir}/libibverbs.so.1")).exists())
    }

    /// Free hugepage bytes per NUMA node (node, page size in kB, free pages,
    /// total pages); node 0 alone when the host shows no NUMA nodes.
    fn hugepages(&self) -> Vec<HugePool> {
        let nodes: Vec<usize> = self
            .list("sys/devices/system/node")
            .iter()
            .filter_map(|n| n.strip_prefix("node")?.parse().ok())
            .collect();
        let mut pools = Vec::new();
        let mut read_dir = |node: usize, dir: &str| {
            for size in self.list(dir) {
                let Some(kb) = size
                    .strip_prefix("hugepages-")
                    .and_then(|s| s.strip_suffix("kB"))
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                let num = |f: &str| {
                    self.read(&format!("{dir}/{size}/{f}"))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                pools.push(HugePool {
                    node,
                    page_kb: kb,
                    free: num("free_hugepages"),
                    total: num("nr_hugepages"),
                });
            }
        };
        if nodes.is_empty() {
            read_dir(0, "sys/kernel/mm/hugepages");
        } else {
            for node in nodes {
                read_dir(
                    node,
                    &format!("sys/devices/system/node/node{node}/hugepages"),
                );
            }
        }
        pools
    }

    /// The NUMA node of CPU `cpu`, if the host shows nodes.
    fn cpu_node(&self, cpu: usize) -> Option<usize> {
        self.list("sys/devices/system/node")
            .iter()
            .filter_map(|n| n.strip_prefix("node")?.parse::<usize>().ok())
            .find(|node| {
                self.read(&format!("sys/devices/system/node/node{node}/cpulist"))
                    .and_then(|l| CoreSet::parse_list(&l))
                    .is_some_and(|set| set.contains(cpu))
            })
    }

    /// A CPU list file of sysfs (`isolated`, `nohz_full`); empty if absent.
    fn cpu_set(&self, path: &str) -> CoreSet {
        self.read(path)
            .and_then(|l| CoreSet::parse_list(&l))
            .unwrap_or_default()
    }

    /// Whether a process named `name` runs (`/proc/PID/comm`).
    fn process_runs(&self, name: &str) -> bool {
        self.list("proc")
            .iter()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .any(|pid| self.read(&format!("proc/{pid}/comm")).as_deref() == Some(name))
    }
}

/// A PCI device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// `0000:03:00.0`.
    pub address: String,
    /// `0x8086`, `0x15b3`.
    pub vendor: String,
    /// The bound driver (`vfio-pci`, `ixgbe`, `mlx5_core`), if any.
    pub driver: Option<String>,
    /// Its NUMA node, where the platform tells.
    pub numa_node: Option<usize>,
    /// Its kernel network interfaces (`sys/.../net/*`).
    pub netdevs: Vec<String>,
}

impl PciDevice {
    /// Whether DPDK drives it through mlx5 on the kernel's driver.
    pub fn is_mellanox(&self) -> bool {
        self.vendor.eq_ignore_ascii_case(MELLANOX_VENDOR)
    }

    /// Why DPDK cannot use the device as it is bound, as one sentence
    /// naming the fix; `None` if it can.
    pub fn unusable(&self) -> Option<(String, String)> {
        let address = &self.address;
        let driver = self.driver.as_deref();
        if self.is_mellanox() {
            return match driver {
                Some("mlx5_core") => None,
                Some("vfio-pci") => Some((
                    format!(
                        "{address} is a Mellanox (mlx5) device bound to vfio-pci: mlx5 is \
                         bifurcated and needs the kernel's mlx5_core"
                    ),
                    format!("deploy/nic-bind.sh unbind {address}"),
                )),
                other => Some((
                    format!(
                        "{address} is a Mellanox (mlx5) device on {}, not mlx5_core",
                        other.unwrap_or("no driver")
                    ),
                    format!("modprobe mlx5_core && deploy/nic-bind.sh unbind {address}"),
                )),
            };
        }
        match driver {
            Some("vfio-pci") => None,
            Some(other) => Some((
                format!("{address} is not bound to vfio-pci (its driver is {other})"),
                format!("deploy/nic-bind.sh bind {address}"),
            )),
            None => Some((
                format!("{address} is not bound to vfio-pci (it has no driver)"),
                format!("deploy/nic-bind.sh bind {address}"),
            )),
        }
    }
}

/// Free hugepages of one size on one node.
#[derive(Debug, Clone, Copy)]
struct HugePool {
    node: usize,
    page_kb: u64,
    free: u64,
    total: u64,
}

/// Bytes of one mbuf in a pool: the 2048-byte data room, 128 bytes of
/// headroom, the 128-byte `rte_mbuf` and the mempool's object header and
/// cache-line padding.
const MBUF_BYTES: u64 = 2048 + 128 + 128 + 64;

/// What EAL itself takes from hugepages beyond the pools (memzones, rings,
/// the ethdev and driver structures): a generous bound.
const EAL_OVERHEAD_BYTES: u64 = 64 << 20;

/// The hugepage bytes a run of `config` needs, about.
pub fn hugepage_need(config: &Config) -> u64 {
    let workers = config.dataplane.workers.len() as u64;
    let mut mbufs = workers * u64::from(config.dpdk.mbufs_per_worker);
    if config.kernel.enabled {
        // The exception port's pool (see runtime::start_dpdk_kernel).
        mbufs += workers * (config.kernel.queue_size as u64 + 1024) + 1024 + 64;
    }
    // A NIC with TSO gets large mbufs for the segments it cuts: counted
    // whenever TX offloads may be on, since whether the NIC has TSO is
    // known only once EAL probed it.
    let large = if config.dpdk.tx_checksum == crate::config::TxChecksumSetting::Auto {
        workers * u64::from(crate::port::LARGE_BUFFERS) * (65_536 + 128 + 64)
    } else {
        0
    };
    mbufs * MBUF_BYTES + large + EAL_OVERHEAD_BYTES
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Every finding about `host` for a run of `config`.
pub fn diagnose(config: &Config, host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut nic_node = None;
    let mut netdevs = Vec::new();
    match config.dataplane.backend {
        Backend::AfPacket => {
            out.push(Finding::ok(
                "backend af_packet: no DPDK device, IOMMU or hugepage is needed",
            ));
            if let Some(af) = &config.af_packet {
                netdevs.push(af.interface.clone());
                nic_node = host
                    .read(&format!("sys/class/net/{}/device/numa_node", af.interface))
                    .and_then(|n| n.parse::<i64>().ok())
                    .and_then(|n| usize::try_from(n).ok());
            }
        }
        Backend::Dpdk => {
            let args = &config.dpdk.eal_args;
            let devices = pci_findings(args, host, &mut out, &mut netdevs);
            nic_node = devices.iter().find_map(|d| d.numa_node);
            netdevs.extend(af_packet_ifaces(args));
            if eal::no_huge(args) {
                out.push(Finding::ok(
                    "eal_args has --no-huge: no hugepages needed (pools are in ordinary memory, \
                     for tests and labs only)",
                ));
            } else {
                out.push(hugepage_finding(config, host, nic_node));
            }
        }
    }
    out.extend(core_findings(config, host, nic_node));
    out.push(if host.process_runs("irqbalance") {
        Finding::warn(
            "irqbalance is running: it moves the NIC's interrupts onto the worker cores",
            "systemctl disable --now irqbalance (or list the workers in \
             IRQBALANCE_BANNED_CPULIST in /etc/default/irqbalance)",
        )
    } else {
        Finding::ok("irqbalance is not running")
    });
    for netdev in netdevs {
        out.push(link_finding(host, &netdev));
        if config.kernel.enabled {
            out.extend(address_finding(config, host, &netdev));
        }
    }
    out
}

/// With `[kernel] enabled`, a NIC the kernel still sees must carry no IPv4
/// address (`run` refuses otherwise: the kernel's addresses move to the
/// exception interface). Addresses are not in sysfs, so only the real host
/// (root `/`) is asked, through `getifaddrs`.
fn address_finding(config: &Config, host: &Host, netdev: &str) -> Option<Finding> {
    if host.root != std::path::Path::new("/")
        || !host.path(&format!("sys/class/net/{netdev}")).exists()
    {
        return None;
    }
    let addresses = crate::kernel::netif::interface_addresses(netdev).ok()?;
    if addresses.is_empty() {
        return Some(Finding::ok(format!(
            "{netdev} has no IPv4 address: the kernel's side is the exception interface {}",
            config.kernel.name
        )));
    }
    let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    Some(Finding::blocker(
        format!(
            "{netdev} has IPv4 address {} in the kernel; with [kernel] enabled the kernel's side \
             of the NIC is {} and shardnet keeps the kernel's IP stack off {netdev}",
            list.join(", "),
            config.kernel.name
        ),
        format!("ip -4 addr flush dev {netdev}"),
    ))
}

/// The `iface=` of every `net_af_packet` vdev (an interface the kernel
/// still drives, whose link it reports).
fn af_packet_ifaces(args: &[String]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.strip_prefix("--vdev=").or(Some(a.as_str())))
        .filter(|v| v.starts_with("net_af_packet") || v.starts_with("eth_af_packet"))
        .filter_map(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("iface=").map(str::to_owned))
        })
        .collect()
}

/// IOMMU and the driver of every PCI device of `args`; the devices found.
fn pci_findings(
    args: &[String],
    host: &Host,
    out: &mut Vec<Finding>,
    netdevs: &mut Vec<String>,
) -> Vec<PciDevice> {
    let addresses = eal::allowed_pci(args);
    if eal::no_pci(args) {
        out.push(Finding::ok(
            "eal_args has --no-pci: PCI device, IOMMU and driver checks skipped",
        ));
        return Vec::new();
    }
    if addresses.is_empty() {
        let vdevs = eal::vdev_names(args);
        out.push(if vdevs.is_empty() {
            Finding::warn(
                "eal_args names no PCI device: EAL takes every device bound to a DPDK driver",
                "name the NIC in [dpdk] eal_args: \"-a\", \"0000:03:00.0\" (lspci -D -d ::0200 \
                 lists the NICs)",
            )
        } else {
            Finding::ok(format!(
                "eal_args names no PCI device (vdevs only: {}): PCI device, IOMMU and driver \
                 checks skipped",
                vdevs.join(", ")
            ))
        });
        return Vec::new();
    }
    let mut devices = Vec::new();
    for address in &addresses {
        let Some(device) = host.pci_device(address) else {
            out.push(Finding::blocker(
                format!("{address} (-a in eal_args): no such PCI device on this host"),
                "correct -a in [dpdk] eal_args (lspci -D -d ::0200 lists the NICs)",
            ));
            continue;
        };
        match device.unusable() {
            Some((what, fix)) => out.push(Finding::blocker(what, fix)),
            None if device.is_mellanox() => {
                if host.has_libibverbs() {
                    out.push(Finding::ok(format!(
                        "{address} (Mellanox) is on mlx5_core and rdma-core's libibverbs is \
                         installed"
                    )));
                } else {
                    out.push(Finding::blocker(
                        format!(
                            "{address} (Mellanox) needs rdma-core, but libibverbs.so.1 is not \
                             installed"
                        ),
                        "apt-get install rdma-core ibverbs-providers libibverbs1",
                    ));
                }
                // Bifurcated: the kernel keeps its interface.
                netdevs.extend(device.netdevs.iter().cloned());
            }
            None => out.push(Finding::ok(format!("{address} is bound to vfio-pci"))),
        }
        devices.push(device);
    }
    let needs_iommu = devices
        .iter()
        .any(|d| !d.is_mellanox() && d.driver.as_deref() != Some("uio_pci_generic"));
    if needs_iommu {
        out.push(iommu_finding(host));
    }
    devices
}

/// Whether the IOMMU is on (vfio-pci needs it).
fn iommu_finding(host: &Host) -> Finding {
    let groups = host.list("sys/kernel/iommu_groups").len();
    if groups > 0 {
        return Finding::ok(format!("IOMMU on (/sys/kernel/iommu_groups has {groups})"));
    }
    let cmdline = host.read("proc/cmdline").unwrap_or_default();
    let asked = cmdline
        .split_whitespace()
        .any(|w| w == "intel_iommu=on" || w.starts_with("amd_iommu"));
    if host.read("sys/module/vfio/parameters/enable_unsafe_noiommu_mode") == Some("Y".into()) {
        return Finding::warn(
            "IOMMU off, vfio runs in unsafe no-IOMMU mode (the NIC can write anywhere in memory)",
            "add intel_iommu=on iommu=pt (AMD: amd_iommu=on iommu=pt) to GRUB_CMDLINE_LINUX in \
             /etc/default/grub, update-grub, reboot",
        );
    }
    if asked {
        Finding::blocker(
            "IOMMU off although the kernel command line asks for it: /sys/kernel/iommu_groups \
             is empty",
            "enable VT-d (Intel) or AMD-Vi/IOMMU in the firmware set-up, then reboot",
        )
    } else {
        Finding::blocker(
            "IOMMU off: /sys/kernel/iommu_groups is empty and the kernel command line has no \
             intel_iommu=on or amd_iommu=on",
            "add intel_iommu=on iommu=pt (AMD: amd_iommu=on iommu=pt) to GRUB_CMDLINE_LINUX in \
             /etc/default/grub, update-grub, reboot",
        )
    }
}

/// Free hugepages against what the pools need, on the NIC's node.
fn hugepage_finding(config: &Config, host: &Host, nic_node: Option<usize>) -> Finding {
    let need = hugepage_need(config);
    let pools = host.hugepages();
    let free_on = |node: usize| -> u64 {
        pools
            .iter()
            .filter(|p| p.node == node)
            .map(|p| p.free * p.page_kb * 1024)
            .sum()
    };
    let total_free: u64 = pools.iter().map(|p| p.free * p.page_kb * 1024).sum();
    let node = nic_node.unwrap_or(0);
    let pages_2m = need.div_ceil(2 << 20);
    let reserve = format!(
        "echo {pages_2m} > /sys/devices/system/node/node{node}/hugepages/hugepages-2048kB/nr_hugepages \
         (to last: deploy/nic-setup.md, hugepages)"
    );
    if total_free < need {
        let reserved: u64 = pools.iter().map(|p| p.total * p.page_kb * 1024).sum();
        return Finding::blocker(
            format!(
                "hugepages: {} MiB free ({} MiB reserved), the pools of {} workers need about {} MiB",
                mib(total_free),
                mib(reserved),
                config.dataplane.workers.len(),
                mib(need)
            ),
            reserve,
        );
    }
    let Some(nic_node) = nic_node else {
        return Finding::ok(format!(
            "hugepages: {} MiB free, the pools need about {} MiB",
            mib(total_free),
            mib(need)
        ));
    };
    let here = free_on(nic_node);
    if here >= need {
        Finding::ok(format!(
            "hugepages: {} MiB free on the NIC's NUMA node {nic_node}, the pools need about {} MiB",
            mib(here),
            mib(need)
        ))
    } else {
        Finding::warn(
            format!(
                "hugepages: {} MiB free on the NIC's NUMA node {nic_node}, the pools need about \
                 {} MiB: they would be on another node, a cross-node access for every packet",
                mib(here),
                mib(need)
            ),
            reserve,
        )
    }
}

/// The worker cores: their node, isolation and frequency governor.
fn core_findings(config: &Config, host: &Host, nic_node: Option<usize>) -> Vec<Finding> {
    let workers = &config.dataplane.workers;
    let list = |cores: &[usize]| {
        cores
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let all = list(workers);
    let mut out = Vec::new();
    if let Some(node) = nic_node {
        let off: Vec<usize> = workers
            .iter()
            .copied()
            .filter(|&c| host.cpu_node(c).is_some_and(|n| n != node))
            .collect();
        out.push(if off.is_empty() {
            Finding::ok(format!(
                "worker cores {all} are on the NIC's NUMA node {node}"
            ))
        } else {
            Finding::warn(
                format!(
                    "worker cores {} are not on the NIC's NUMA node {node}",
                    list(&off)
                ),
                format!(
                    "pick [dataplane] workers from node {node}'s CPUs \
                     (/sys/devices/system/node/node{node}/cpulist)"
                ),
            )
        });
    }
    let isolated = host.cpu_set("sys/devices/system/cpu/isolated");
    let nohz = host.cpu_set("sys/devices/system/cpu/nohz_full");
    let loose: Vec<usize> = workers
        .iter()
        .copied()
        .filter(|&c| !isolated.contains(c) || !nohz.contains(c))
        .collect();
    out.push(if loose.is_empty() {
        Finding::ok(format!("worker cores {all} are in isolcpus and nohz_full"))
    } else {
        Finding::warn(
            format!(
                "worker cores {} are not in both isolcpus and nohz_full: the scheduler and the \
                 timer tick interrupt them",
                list(&loose)
            ),
            format!(
                "add isolcpus={all} nohz_full={all} rcu_nocbs={all} to GRUB_CMDLINE_LINUX in \
                 /etc/default/grub, update-grub, reboot"
            ),
        )
    });
    let mut slow = Vec::new();
    let mut unknown = 0;
    for &cpu in workers {
        match host.read(&format!(
            "sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
        )) {
            Some(g) if g == "performance" => {}
            Some(g) => slow.push(format!("{cpu} ({g})")),
            None => unknown += 1,
        }
    }
    out.push(if !slow.is_empty() {
        Finding::warn(
            format!(
                "CPU governor of worker cores {} is not performance",
                slow.join(", ")
            ),
            "cpupower frequency-set -g performance (package linux-cpupower)",
        )
    } else if unknown == workers.len() {
        Finding::ok("no CPU frequency scaling here (cpufreq absent): nothing to set")
    } else {
        Finding::ok(format!("CPU governor of worker cores {all} is performance"))
    });
    out
}

/// The link state and speed of the kernel interface `netdev`.
fn link_finding(host: &Host, netdev: &str) -> Finding {
    let dir = format!("sys/class/net/{netdev}");
    if !host.path(&dir).exists() {
        return Finding::blocker(
            format!("interface {netdev} does not exist"),
            "correct the interface name in the config (ip -br link lists them)",
        );
    }
    let state = host
        .read(&format!("{dir}/operstate"))
        .unwrap_or_else(|| "unknown".into());
    // Reading `speed` fails (EINVAL) while the link is down.
    let speed = host
        .read(&format!("{dir}/speed"))
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|&s| s > 0);
    let speed_text = speed.map_or_else(|| "speed unknown".to_owned(), |s| format!("{s} Mb/s"));
    if state == "up" {
        Finding::ok(format!("{netdev}: link up, {speed_text}"))
    } else if state == "unknown" && host.read(&format!("{dir}/carrier")).as_deref() == Some("1") {
        Finding::ok(format!(
            "{netdev}: carrier on (operstate unknown), {speed_text}"
        ))
    } else {
        Finding::warn(
            format!("{netdev}: link {state}"),
            format!("ip link set {netdev} up, and check the cable and the peer's port"),
        )
    }
}

/// One sentence naming why EAL found no NIC, from `eal_args` and the host's sysfs: a device absent or not
/// bound to its driver, or none named.
///
/// `exception_port` tells whether EAL probed the exception port (the lead
/// then says so) or nothing at all.
pub fn no_nic_cause(eal_args: &[String], host: &Host, exception_port: bool) -> String {
    let lead = if exception_port {
        "EAL found no NIC: the only port is the exception port"
    } else {
        "EAL found no NIC: it probed no port"
    };
    let addresses = eal::allowed_pci(eal_args);
    if eal::no_pci(eal_args) {
        return format!(
            "{lead} (eal_args has --no-pci and no --vdev of a NIC; add the NIC with \"-a\", \
             \"0000:03:00.0\" in place of --no-pci, or a --vdev)"
        );
    }
    let mut causes = Vec::new();
    for address in &addresses {
        match host.pci_device(address) {
            None => causes.push(format!(
                "{address} is not a PCI device of this host (lspci -D -d ::0200 lists the NICs)"
            )),
            Some(device) => {
                if let Some((what, fix)) = device.unusable() {
                    causes.push(format!("{what}: run {fix}"));
                }
            }
        }
    }
    if causes.is_empty() {
        if addresses.is_empty() {
            format!(
                "{lead}: no NIC is bound to vfio-pci (deploy/nic-bind.sh bind ADDRESS; name it \
                 with \"-a\" in eal_args)"
            )
        } else {
            format!(
                "{lead}: {} is bound but EAL did not probe it (see the EAL messages above)",
                addresses.join(", ")
            )
        }
    } else {
        format!("{lead}: {}", causes.join("; "))
    }
}

/// One sentence naming why `rte_eal_init` failed with `errno` when the
/// host explains it better than the errno alone: no free hugepages
/// (ENOMEM), or a named PCI device that is absent or unbound (ENODEV).
pub fn eal_init_cause(errno: i32, eal_args: &[String], host: &Host) -> Option<String> {
    match errno {
        libc::ENOMEM if !eal::no_huge(eal_args) => {
            let pools = host.hugepages();
            let free: u64 = pools.iter().map(|p| p.free).sum();
            if free == 0 {
                Some(
                    "no hugepages: none is free on this host (reserve some: echo 1024 > \
                     /proc/sys/vm/nr_hugepages, or see deploy/nic-setup.md)"
                        .into(),
                )
            } else {
                None
            }
        }
        libc::ENODEV | libc::EIO if !eal::no_pci(eal_args) => eal::allowed_pci(eal_args)
            .iter()
            .find_map(|address| match host.pci_device(address) {
                None => Some(format!("{address} is not a PCI device of this host")),
                Some(device) => device
                    .unusable()
                    .map(|(what, fix)| format!("{what}: run {fix}")),
            }),
        _ => None,
    }
}
