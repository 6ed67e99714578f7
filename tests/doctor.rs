//! `shardnet doctor` as an operator runs it: on this host with a vdev-only
//! config, and on fake sysfs/procfs trees (`--root`) of a production server
//! with exact findings; and an unknown EAL option refused in one sentence.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

fn shardnet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardnet"))
        .args(args)
        .output()
        .expect("run shardnet");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{text}\n")).unwrap();
}

const VDEV_ON_LO: &str = r#"[dataplane]
backend = "dpdk"
workers = [0]
control_core = 0

[dpdk]
eal_args = ["--no-pci", "--no-huge", "--no-shconf", "--vdev=net_af_packet0,iface=lo"]

[interface]
address = "198.18.0.2/24"
"#;

#[test]
fn this_host_with_a_vdev_config_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vdev.toml");
    std::fs::write(&config, VDEV_ON_LO).unwrap();
    let (code, stdout, stderr) = shardnet(&["doctor", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "OK: eal_args has --no-pci: PCI device, IOMMU and driver checks skipped",
            "OK: eal_args has --no-huge: no hugepages needed (pools are in ordinary memory, for \
             tests and labs only)",
        ]
    );
    // lo has no speed and an "unknown" operstate, with a carrier.
    assert_eq!(
        lines.last(),
        Some(&"OK: lo: carrier on (operstate unknown), speed unknown")
    );
    for line in &lines {
        assert!(
            line.starts_with("OK: ") || (line.starts_with("WARN: ") && line.contains("; fix: ")),
            "{line}"
        );
    }
}

/// A fake 8-core, 2-node production server for config/production.toml:
/// its NIC 0000:3b:00.0 on node 0 bound to `driver`.
fn production_host(root: &Path, driver: &str, iommu: bool) {
    write(root, "sys/devices/system/cpu/online", "0-7");
    write(root, "sys/devices/system/cpu/isolated", "2-7");
    write(root, "sys/devices/system/cpu/nohz_full", "2-7");
    write(root, "sys/devices/system/node/node0/cpulist", "0-7");
    write(root, "sys/devices/system/node/node1/cpulist", "8-15");
    for node in 0..2 {
        let dir = format!("sys/devices/system/node/node{node}/hugepages/hugepages-1048576kB");
        write(root, &format!("{dir}/nr_hugepages"), "2");
        write(root, &format!("{dir}/free_hugepages"), "2");
    }
    for cpu in 0..8 {
        write(
            root,
            &format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
            "performance",
        );
    }
    write(
        root,
        "proc/cmdline",
        "root=/dev/sda1 intel_iommu=on iommu=pt",
    );
    write(root, "proc/1/comm", "systemd");
    std::fs::create_dir_all(root.join("sys/kernel/iommu_groups")).unwrap();
    if iommu {
        std::fs::create_dir_all(root.join("sys/kernel/iommu_groups/17")).unwrap();
    }
    let dev = "sys/bus/pci/devices/0000:3b:00.0";
    write(root, &format!("{dev}/vendor"), "0x8086");
    write(root, &format!("{dev}/numa_node"), "0");
    let target = root.join(format!("sys/bus/pci/drivers/{driver}"));
    std::fs::create_dir_all(&target).unwrap();
    symlink(&target, root.join(format!("{dev}/driver"))).unwrap();
}

fn production_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/production.toml");
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_ready_production_host_blocks_nothing() {
    let root = tempfile::tempdir().unwrap();
    production_host(root.path(), "vfio-pci", true);
    let (code, stdout, stderr) = shardnet(&[
        "doctor",
        "--config",
        &production_config(),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "OK: 0000:3b:00.0 is bound to vfio-pci",
            "OK: IOMMU on (/sys/kernel/iommu_groups has 1)",
            "OK: hugepages: 2048 MiB free on the NIC's NUMA node 0, the pools need about 340 MiB",
            "OK: worker cores 2,3,4,5,6,7 are on the NIC's NUMA node 0",
            "OK: worker cores 2,3,4,5,6,7 are in isolcpus and nohz_full",
            "OK: CPU governor of worker cores 2,3,4,5,6,7 is performance",
            "OK: irqbalance is not running",
        ]
    );
}

#[test]
fn an_unbound_nic_without_iommu_blocks_with_exit_1() {
    let root = tempfile::tempdir().unwrap();
    production_host(root.path(), "ixgbe", false);
    write(root.path(), "proc/4242/comm", "irqbalance");
    let (code, stdout, stderr) = shardnet(&[
        "doctor",
        "--config",
        &production_config(),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "BLOCKER: 0000:3b:00.0 is not bound to vfio-pci (its driver is ixgbe); fix: \
             deploy/nic-bind.sh bind 0000:3b:00.0",
            "BLOCKER: IOMMU off although the kernel command line asks for it: \
             /sys/kernel/iommu_groups is empty; fix: enable VT-d (Intel) or AMD-Vi/IOMMU in the \
             firmware set-up, then reboot",
        ]
    );
    assert_eq!(
        lines.last(),
        Some(
            &"WARN: irqbalance is running: it moves the NIC's interrupts onto the worker cores; \
              fix: systemctl disable --now irqbalance (or list the workers in \
              IRQBALANCE_BANNED_CPULIST in /etc/default/irqbalance)"
        )
    );
}

#[test]
fn a_bad_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[dataplane]\nwrokers = [0]\n").unwrap();
    let (code, stdout, stderr) = shardnet(&["doctor", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn an_unknown_eal_option_is_one_sentence_not_the_usage_text() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let text = VDEV_ON_LO.replace("\"--no-shconf\"", "\"--no-shconf\", \"--bogus-opt\"");
    std::fs::write(&config, text).unwrap();
    let path = config.to_str().unwrap();
    let expected = format!(
        "{path}:7:53: unknown EAL option --bogus-opt in eal_args (DPDK 22.11's EAL has no such \
         option)\n"
    );
    for command in ["check", "run", "doctor"] {
        let (code, stdout, stderr) = shardnet(&[command, "--config", path]);
        assert_eq!(code, if command == "doctor" { 2 } else { 1 }, "{command}");
        assert_eq!(stderr, expected, "{command}");
        assert!(stdout.is_empty(), "{command}: {stdout}");
    }
}

/// `run` with `--no-pci` and the exception port as its only port: EAL comes
/// up with the TAP alone, and the error names the missing NIC, not port 0.
/// Needs root (EAL and the TAP): fails, not skips, without it.
#[test]
fn run_without_a_nic_names_the_missing_nic() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap();
    assert_eq!(
        uid, "0",
        "this test runs EAL and creates a TAP: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let text = r#"[dataplane]
backend = "dpdk"
workers = [0]
control_core = 0

[dpdk]
eal_args = ["--no-pci", "--no-huge", "--no-shconf", "-m", "512", "--file-prefix=sndoctor"]
mbufs_per_worker = 8191

[interface]
address = "198.18.221.2/24"

[kernel]
enabled = true
name = "sndoctor0"
"#;
    std::fs::write(&config, text).unwrap();
    let (code, stdout, stderr) = shardnet(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "shardnet: EAL found no NIC: the only port is the exception port (eal_args has --no-pci \
         and no --vdev of a NIC; add the NIC with \"-a\", \"0000:03:00.0\" in place of --no-pci, \
         or a --vdev)",
        "{stderr}"
    );
    let (code, _, _) = shardnet(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        !Path::new("/sys/class/net/sndoctor0").exists(),
        "the TAP is gone with the process"
    );
}

/// deploy/nic-bind.sh --dry-run on a fake sysfs: what it would run for an
/// Intel NIC, and its refusal of a Mellanox one.
#[test]
fn nic_bind_dry_run() {
    let root = tempfile::tempdir().unwrap();
    production_host(root.path(), "ixgbe", true);
    let mlx = "sys/bus/pci/devices/0000:5e:00.0";
    write(root.path(), &format!("{mlx}/vendor"), "0x15b3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nic-bind.sh");
    let bind = |args: &[&str]| {
        let out = Command::new(&script)
            .args(args)
            .env("SYSFS", root.path().join("sys"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = bind(&["--dry-run", "bind", "3b:00.0"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "modprobe vfio-pci", "{stdout}");
    // dpdk-devbind.py where DPDK's tools are installed, sysfs otherwise.
    let sysfs = root.path().join("sys").display().to_string();
    assert!(
        lines[1..] == ["dpdk-devbind.py --bind=vfio-pci 0000:3b:00.0"]
            || lines[1..]
                == [
                    format!("echo vfio-pci > {sysfs}/bus/pci/devices/0000:3b:00.0/driver_override")
                        .as_str(),
                    &format!(
                        "echo 0000:3b:00.0 > {sysfs}/bus/pci/devices/0000:3b:00.0/driver/unbind"
                    ),
                    &format!("echo 0000:3b:00.0 > {sysfs}/bus/pci/drivers_probe"),
                ],
        "{stdout}"
    );
    let (code, stdout, stderr) = bind(&["--dry-run", "bind", "0000:5e:00.0"]);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        stderr,
        "nic-bind: 0000:5e:00.0 is a Mellanox device: mlx5 is bifurcated and stays on mlx5_core \
         (install rdma-core; no rebinding), see deploy/nic-setup.md\n"
    );
    let (code, _, stderr) = bind(&["--dry-run", "bind", "0000:ff:1f.7"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "nic-bind: 0000:ff:1f.7: no such PCI device (lspci -D -d ::0200 lists the NICs)\n"
    );
    let (code, _, _) = bind(&["frobnicate"]);
    assert_eq!(code, 2);
    // shellcheck is in scripts/install-deps.sh.
    let out = Command::new("shellcheck")
        .arg(&script)
        .output()
        .expect("shellcheck (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// With `[kernel] enabled`, a NIC the kernel still sees must have no IPv4
/// address (run would refuse): on this host, lo has 127.0.0.1.
#[test]
fn an_address_on_a_shared_nic_blocks_on_this_host() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vdev.toml");
    std::fs::write(
        &config,
        format!("{VDEV_ON_LO}\n[kernel]\nenabled = true\nname = \"sndoctor1\"\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = shardnet(&["doctor", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "OK: lo: carrier on (operstate unknown), speed unknown",
            "BLOCKER: lo has IPv4 address 127.0.0.1 in the kernel; with [kernel] enabled the \
             kernel's side of the NIC is sndoctor1 and shardnet keeps the kernel's IP stack off \
             lo; fix: ip -4 addr flush dev lo",
        ]
    );
}
