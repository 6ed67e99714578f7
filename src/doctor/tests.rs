//! The doctor against fake sysfs/procfs trees, with exact findings.

use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

/// A fake host: two NUMA nodes (CPUs 0-1 on node 0, 2-3 on node 1), the
/// IOMMU on, no cpufreq, irqbalance not running.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let fake = Fake {
            dir: tempfile::tempdir().unwrap(),
        };
        fake.write(
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on iommu=pt",
        );
        fake.write("proc/1/comm", "systemd");
        fake.mkdir("sys/kernel/iommu_groups/0");
        fake.mkdir("sys/kernel/iommu_groups/1");
        fake.write("sys/devices/system/node/node0/cpulist", "0-1");
        fake.write("sys/devices/system/node/node1/cpulist", "2-3");
        fake.hugepages(0, 0);
        fake.hugepages(1, 0);
        fake.write("sys/devices/system/cpu/isolated", "1-3");
        fake.write("sys/devices/system/cpu/nohz_full", "1-3");
        fake
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.root().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("{text}\n")).unwrap();
    }

    fn mkdir(&self, path: &str) {
        std::fs::create_dir_all(self.root().join(path)).unwrap();
    }

    fn hugepages(&self, node: usize, free: u64) {
        let dir = format!("sys/devices/system/node/node{node}/hugepages/hugepages-2048kB");
        self.write(&format!("{dir}/nr_hugepages"), &free.to_string());
        self.write(&format!("{dir}/free_hugepages"), &free.to_string());
    }

    /// A PCI device on `node`, bound to `driver` (if any), with kernel
    /// interfaces `netdevs`.
    fn pci(&self, address: &str, vendor: &str, driver: Option<&str>, node: i32, netdevs: &[&str]) {
        let dir = format!("sys/bus/pci/devices/{address}");
        self.write(&format!("{dir}/vendor"), vendor);
        self.write(&format!("{dir}/numa_node"), &node.to_string());
        if let Some(driver) = driver {
            let target = self.root().join(format!("sys/bus/pci/drivers/{driver}"));
            std::fs::create_dir_all(&target).unwrap();
            symlink(&target, self.root().join(format!("{dir}/driver"))).unwrap();
        }
        for netdev in netdevs {
            self.mkdir(&format!("{dir}/net/{netdev}"));
        }
    }

    fn netdev(&self, name: &str, state: &str, speed: &str) {
        self.write(&format!("sys/class/net/{name}/operstate"), state);
        self.write(&format!("sys/class/net/{name}/speed"), speed);
    }

    fn lines(&self, config: &str) -> Vec<String> {
        let online = CoreSet::from_cores(0..4);
        let config = Config::parse_with(config, Path::new("test.toml"), &online).unwrap();
        diagnose(&config, &Host::new(self.root()))
            .iter()
            .map(Finding::to_string)
            .collect()
    }
}

fn dpdk_config(eal_args: &str) -> String {
    format!(
        "[dataplane]\nbackend = \"dpdk\"\nworkers = [2, 3]\ncontrol_core = 0\n\
         [dpdk]\neal_args = [{eal_args}]\nmbufs_per_worker = 8191\n\
         [interface]\naddress = \"198.18.0.2/24\"\n"
    )
}

const HUGE_OK_NODE1: &str =
    "OK: hugepages: 2048 MiB free on the NIC's NUMA node 1, the pools need about 109 MiB";
const CORES_NODE1: &str = "OK: worker cores 2,3 are on the NIC's NUMA node 1";
const ISOLATED: &str = "OK: worker cores 2,3 are in isolcpus and nohz_full";
const NO_CPUFREQ: &str = "OK: no CPU frequency scaling here (cpufreq absent): nothing to set";
const NO_IRQBALANCE: &str = "OK: irqbalance is not running";

#[test]
fn a_bound_intel_nic_on_a_ready_host_blocks_nothing() {
    let fake = Fake::new();
    fake.pci("0000:3b:00.0", "0x8086", Some("vfio-pci"), 1, &[]);
    fake.hugepages(1, 1024);
    let lines = fake.lines(&dpdk_config("\"-a\", \"0000:3b:00.0\""));
    assert_eq!(
        lines,
        [
            "OK: 0000:3b:00.0 is bound to vfio-pci",
            "OK: IOMMU on (/sys/kernel/iommu_groups has 2)",
            HUGE_OK_NODE1,
            CORES_NODE1,
            ISOLATED,
            NO_CPUFREQ,
            NO_IRQBALANCE,
        ]
    );
}

#[test]
fn an_unbound_nic_blocks() {
    let fake = Fake::new();
    fake.pci("0000:3b:00.0", "0x8086", Some("ixgbe"), 1, &["enp59s0f0"]);
    fake.hugepages(1, 1024);
    let lines = fake.lines(&dpdk_config("\"-a\", \"0000:3b:00.0\""));
    assert_eq!(
        lines[0],
        "BLOCKER: 0000:3b:00.0 is not bound to vfio-pci (its driver is ixgbe); fix: \
         deploy/nic-bind.sh bind 0000:3b:00.0"
    );
    let host = Host::new(fake.root());
    let args: Vec<String> = vec!["-a".into(), "0000:3b:00.0".into()];
    assert_eq!(
        no_nic_cause(&args, &host, true),
        "EAL found no NIC: the only port is the exception port: 0000:3b:00.0 is not bound to \
         vfio-pci (its driver is ixgbe): run deploy/nic-bind.sh bind 0000:3b:00.0"
    );
    assert_eq!(
        eal_init_cause(libc::ENODEV, &args, &host).as_deref(),
        Some(
            "0000:3b:00.0 is not bound to vfio-pci (its driver is ixgbe): run deploy/nic-bind.sh \
             bind 0000:3b:00.0"
        )
    );
}

#[test]
fn an_absent_pci_address_is_named() {
    let fake = Fake::new();
    fake.hugepages(0, 1024);
    let lines = fake.lines(&dpdk_config("\"-a\", \"0000:ff:1f.7\""));
    assert_eq!(
        lines[0],
        "BLOCKER: 0000:ff:1f.7 (-a in eal_args): no such PCI device on this host; fix: correct \
         -a in [dpdk] eal_args (lspci -D -d ::0200 lists the NICs)"
    );
    let args: Vec<String> = vec!["-a".into(), "0000:ff:1f.7".into()];
    let host = Host::new(fake.root());
    assert_eq!(
        no_nic_cause(&args, &host, true),
        "EAL found no NIC: the only port is the exception port: 0000:ff:1f.7 is not a PCI \
         device of this host (lspci -D -d ::0200 lists the NICs)"
    );
    assert_eq!(
        eal_init_cause(libc::ENODEV, &args, &host).as_deref(),
        Some("0000:ff:1f.7 is not a PCI device of this host")
    );
    // A --no-pci config names its own cause.
    assert_eq!(
        no_nic_cause(&["--no-pci".into()], &host, true),
        "EAL found no NIC: the only port is the exception port (eal_args has --no-pci and no \
         --vdev of a NIC; add the NIC with \"-a\", \"0000:03:00.0\" in place of --no-pci, or a \
         --vdev)"
    );
}

#[test]
fn no_iommu_blocks() {
    let fake = Fake::new();
    std::fs::remove_dir_all(fake.root().join("sys/kernel/iommu_groups")).unwrap();
    fake.mkdir("sys/kernel/iommu_groups");
    fake.write("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1");
    fake.pci("0000:3b:00.0", "0x8086", Some("vfio-pci"), 1, &[]);
    fake.hugepages(1, 1024);
    let lines = fake.lines(&dpdk_config("\"-a\", \"0000:3b:00.0\""));
    assert_eq!(
        lines[1],
        "BLOCKER: IOMMU off: /sys/kernel/iommu_groups is empty and the kernel command line has \
         no intel_iommu=on or amd_iommu=on; fix: add intel_iommu=on iommu=pt (AMD: amd_iommu=on \
         iommu=pt) to GRUB_CMDLINE_LINUX in /etc/default/grub, update-grub, reboot"
    );
    fake.write("proc/cmdline", "root=/dev/sda1 intel_iommu=on");
    let lines = fake.lines(&dpdk_config("\"-a\", \"0000:3b:00.0\""));
    assert_eq!(
        lines[1],
        "BLOCKER: IOMMU off although the kernel command line asks for it: \
         /sys/kernel/iommu_groups is empty; fix: enable VT-d (Intel) or AMD-Vi/IOMMU in the \
         firmware set-up, then reboot"
    );
}

#[test]
fn hugepages_on_the_wrong_node_warn_and_none_block() {
    let fake = Fake::new();
    fake.pci("0000:3b:00.0", "0x8086", Some("vfio-pci"), 1, &[]);
    fake.hugepages(0, 1024);
    let config = dpdk_config("\"-a\", \"0000:3b:00.0\"");
    assert_eq!(
        fake.lines(&config)[2],
        "WARN: hugepages: 0 MiB free on the NIC's NUMA node 1, the pools need about 109 MiB: \
         they would be on another node, a cross-node access for every packet; fix: echo 55 > \
         /sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages (to last: \
         deploy/nic-setup.md, hugepages)"
    );
    fake.hugepages(0, 0);
    let lines = fake.lines(&config);
    assert_eq!(
        lines[2],
        "BLOCKER: hugepages: 0 MiB free (0 MiB reserved), the pools of 2 workers need about 109 \
         MiB; fix: echo 55 > /sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages \
         (to last: deploy/nic-setup.md, hugepages)"
    );
    let host = Host::new(fake.root());
    assert_eq!(
        eal_init_cause(libc::ENOMEM, &[], &host).as_deref(),
        Some(
            "no hugepages: none is free on this host (reserve some: echo 1024 > \
             /proc/sys/vm/nr_hugepages, or see deploy/nic-setup.md)"
        )
    );
}

#[test]
fn mlx5_bound_to_vfio_blocks_and_mlx5_core_needs_rdma_core() {
    let fake = Fake::new();
    fake.pci("0000:5e:00.0", "0x15b3", Some("vfio-pci"), 0, &[]);
    fake.hugepages(0, 1024);
    let config = dpdk_config("\"-a\", \"0000:5e:00.0\"");
    assert_eq!(
        fake.lines(&config)[0],
        "BLOCKER: 0000:5e:00.0 is a Mellanox (mlx5) device bound to vfio-pci: mlx5 is \
         bifurcated and needs the kernel's mlx5_core; fix: deploy/nic-bind.sh unbind 0000:5e:00.0"
    );

    let fake = Fake::new();
    fake.pci(
        "0000:5e:00.0",
        "0x15b3",
        Some("mlx5_core"),
        0,
        &["ens1f0np0"],
    );
    fake.netdev("ens1f0np0", "up", "25000");
    fake.hugepages(0, 1024);
    fake.write("proc/77/comm", "irqbalance");
    fake.write(
        "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
        "powersave",
    );
    fake.write(
        "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
        "performance",
    );
    let lines = fake.lines(&config);
    assert_eq!(
        lines,
        [
            "BLOCKER: 0000:5e:00.0 (Mellanox) needs rdma-core, but libibverbs.so.1 is not \
             installed; fix: apt-get install rdma-core ibverbs-providers libibverbs1",
            "OK: hugepages: 2048 MiB free on the NIC's NUMA node 0, the pools need about 109 MiB",
            "WARN: worker cores 2,3 are not on the NIC's NUMA node 0; fix: pick [dataplane] \
             workers from node 0's CPUs (/sys/devices/system/node/node0/cpulist)",
            ISOLATED,
            "WARN: CPU governor of worker cores 2 (powersave) is not performance; fix: cpupower \
             frequency-set -g performance (package linux-cpupower)",
            "WARN: irqbalance is running: it moves the NIC's interrupts onto the worker cores; \
             fix: systemctl disable --now irqbalance (or list the workers in \
             IRQBALANCE_BANNED_CPULIST in /etc/default/irqbalance)",
            "OK: ens1f0np0: link up, 25000 Mb/s",
        ]
    );
    fake.write("usr/lib/x86_64-linux-gnu/libibverbs.so.1", "");
    assert_eq!(
        fake.lines(&config)[0],
        "OK: 0000:5e:00.0 (Mellanox) is on mlx5_core and rdma-core's libibverbs is installed"
    );
}

#[test]
fn vdev_only_skips_pci_and_checks_the_link() {
    let fake = Fake::new();
    fake.netdev("veth-dut", "down", "");
    let lines = fake.lines(&dpdk_config(
        "\"--no-pci\", \"--no-huge\", \"--vdev=net_af_packet0,iface=veth-dut\"",
    ));
    assert_eq!(
        lines,
        [
            "OK: eal_args has --no-pci: PCI device, IOMMU and driver checks skipped",
            "OK: eal_args has --no-huge: no hugepages needed (pools are in ordinary memory, for \
             tests and labs only)",
            ISOLATED,
            NO_CPUFREQ,
            NO_IRQBALANCE,
            "WARN: veth-dut: link down; fix: ip link set veth-dut up, and check the cable and the \
             peer's port",
        ]
    );
    let findings: Vec<Finding> = vec![Finding::warn("a", "b"), Finding::ok("c")];
    assert_eq!(exit_code(&findings), 0);
    assert_eq!(exit_code(&[Finding::blocker("a", "b")]), 1);
}
