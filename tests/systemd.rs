//! The systemd deployment (`deploy/systemd/`) against systemd's own tools,
//! and the `sd_notify` protocol against a socket the test owns.
//!
//! - `systemd-analyze verify` on the units (a copy whose `ExecStart=` paths
//!   name the built binary and the repository's script: verify refuses a
//!   unit whose programs do not exist); `systemd-tmpfiles --root` makes
//!   /run/shardnet from the tmpfiles.d entry; the sysctl drop-in's keys exist.
//! - `shardnet-nic.sh`: shellcheck; `--dry-run` against fake sysfs trees
//!   (a NIC on vfio-pci, on its kernel driver, mlx5, a missing device) prints
//!   exactly the writes due and changes nothing; a real `restore` and `bind`
//!   on a veth in a namespace of the test's own, twice each (idempotent).
//! - `shardnet run` in a lab namespace with `NOTIFY_SOCKET` on a Unix datagram
//!   socket of the test and a 400 ms `WATCHDOG_USEC`: READY=1, then
//!   WATCHDOG=1 pings and STATUS; no ping from the moment a worker stalled on
//!   purpose (`[debug] stall_endpoint`) is reported stuck until it polls
//!   again; pings again; STOPPING=1 on SIGTERM. On both backends (DPDK on
//!   a `net_af_packet` vdev, `--no-pci`).
//!
//! Needs root (namespaces) and Debian's `systemd` and `shellcheck`
//! (scripts/install-deps.sh); fails, never skips, when it cannot set up.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Lab, DUT_IP};

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/systemd")
        .join(name)
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/install-deps.sh): {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(deploy("shardnet.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/shardnet run --config "));
    let unit = unit
        .replace("/usr/local/bin/shardnet", env!("CARGO_BIN_EXE_shardnet"))
        .replace(
            "/usr/local/lib/shardnet/shardnet-nic.sh",
            deploy("shardnet-nic.sh").to_str().unwrap(),
        );
    let service = dir.path().join("shardnet.service");
    std::fs::write(&service, unit).unwrap();
    let mount = dir.path().join("dev-hugepages1G.mount");
    std::fs::copy(deploy("dev-hugepages1G.mount"), &mount).unwrap();
    let out = run(
        "systemd-analyze",
        &["verify", service.to_str().unwrap(), mount.to_str().unwrap()],
    );
    let said = text(&out);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    // Unknown keys and bad values are only warnings to verify.
    for unit in ["shardnet.service", "dev-hugepages1G.mount"] {
        assert!(!said.contains(unit), "systemd-analyze verify warns: {said}");
    }
}

#[test]
fn tmpfiles_makes_the_runtime_directory_and_the_sysctl_keys_exist() {
    let root = tempfile::tempdir().unwrap();
    let conf = deploy("shardnet.tmpfiles.conf");
    let out = run(
        "systemd-tmpfiles",
        &[
            &format!("--root={}", root.path().display()),
            "--create",
            conf.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "systemd-tmpfiles: {}", text(&out));
    let made = std::fs::metadata(root.path().join("run/shardnet")).expect("/run/shardnet made");
    assert!(made.is_dir());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(made.permissions().mode() & 0o7777, 0o750);

    let sysctl = std::fs::read_to_string(deploy("80-shardnet-hugepages.conf")).unwrap();
    let mut keys = 0;
    for line in sysctl.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').expect("key = value");
        let path = Path::new("/proc/sys").join(key.trim().replace('.', "/"));
        assert!(path.exists(), "{line}: no {}", path.display());
        value.trim().parse::<u64>().expect("a number of pages");
        keys += 1;
    }
    assert_eq!(keys, 1);
}

/// A fake sysfs with PCI device `pci` bound to `driver` (or none).
fn fake_sysfs(pci: &str, driver: Option<&str>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let device = root.path().join("bus/pci/devices").join(pci);
    std::fs::create_dir_all(&device).unwrap();
    std::fs::write(device.join("driver_override"), "(null)\n").unwrap();
    std::fs::write(root.path().join("bus/pci/drivers_probe"), "").unwrap();
    if let Some(driver) = driver {
        let dir = root.path().join("bus/pci/drivers").join(driver);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("unbind"), "").unwrap();
        std::os::unix::fs::symlink(&dir, device.join("driver")).unwrap();
    }
    root
}

/// `shardnet-nic.sh ARGS` with `env` and SHARDNET_SYSFS at `sysfs`.
fn nic_script(sysfs: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(deploy("shardnet-nic.sh"));
    command
        .args(args)
        .env("SHARDNET_SYSFS", sysfs)
        .env_remove("SHARDNET_NIC_PCI")
        .env_remove("SHARDNET_NIC_DPDK_DRIVER")
        .env_remove("SHARDNET_NIC_IFACE")
        .env_remove("SHARDNET_NIC_ADDRESS")
        .env_remove("SHARDNET_NIC_GATEWAY");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run shardnet-nic.sh")
}

/// Every file under `root`, with its contents (links as their targets).
fn snapshot(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((path, target.display().to_string()));
            } else if meta.is_dir() {
                dirs.push(path);
            } else {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_nic_script_passes_shellcheck_and_its_dry_run_says_exactly_what_is_due() {
    let out = run("shellcheck", &[deploy("shardnet-nic.sh").to_str().unwrap()]);
    assert!(out.status.success(), "shellcheck: {}", text(&out));

    const PCI: &str = "0000:3b:00.0";
    let intel = [
        ("SHARDNET_NIC_PCI", PCI),
        ("SHARDNET_NIC_IFACE", "snsdnic0"),
    ];
    let lines = |out: &Output| -> Vec<String> {
        assert!(out.status.success(), "{}", text(out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_start_matches("shardnet-nic: ").to_owned())
            .collect()
    };

    // Restore after a crash: the NIC is still on vfio-pci.
    let sysfs = fake_sysfs(PCI, Some("vfio-pci"));
    let s = sysfs.path().display().to_string();
    let before = snapshot(sysfs.path());
    let out = nic_script(sysfs.path(), &intel, &["--dry-run", "restore"]);
    assert_eq!(
        lines(&out),
        [
            format!("giving {PCI} back to its kernel driver (was: vfio-pci)"),
            format!("would write '{PCI}' to {s}/bus/pci/devices/{PCI}/driver/unbind"),
            format!("would write '' to {s}/bus/pci/devices/{PCI}/driver_override"),
            format!("would write '{PCI}' to {s}/bus/pci/drivers_probe"),
            "would run: ip link set dev snsdnic0 up".to_owned(),
            "restore done".to_owned(),
        ]
    );
    // And bound already: nothing to rebind.
    let out = nic_script(sysfs.path(), &intel, &["--dry-run", "bind"]);
    assert_eq!(
        lines(&out),
        [
            format!("{PCI} is bound to vfio-pci already"),
            "bind done".to_owned()
        ]
    );
    assert_eq!(snapshot(sysfs.path()), before, "a dry run changed sysfs");

    // On its kernel driver: restore has nothing to rebind; bind does it.
    let sysfs = fake_sysfs(PCI, Some("ixgbe"));
    let s = sysfs.path().display().to_string();
    let out = nic_script(sysfs.path(), &intel, &["--dry-run", "restore"]);
    assert_eq!(
        lines(&out),
        [
            format!("{PCI} is bound to its kernel driver ixgbe already"),
            "would run: ip link set dev snsdnic0 up".to_owned(),
            "restore done".to_owned(),
        ]
    );
    let out = nic_script(sysfs.path(), &intel, &["--dry-run", "bind"]);
    assert_eq!(
        lines(&out),
        [
            "would run: modprobe vfio-pci".to_owned(),
            format!("binding {PCI} to vfio-pci (was: ixgbe)"),
            format!("would write '{PCI}' to {s}/bus/pci/devices/{PCI}/driver/unbind"),
            format!("would write 'vfio-pci' to {s}/bus/pci/devices/{PCI}/driver_override"),
            format!("would write '{PCI}' to {s}/bus/pci/drivers_probe"),
            "bind done".to_owned(),
        ]
    );

    // mlx5 (bifurcated): never rebound, only brought up.
    let mlx5 = [
        ("SHARDNET_NIC_PCI", PCI),
        ("SHARDNET_NIC_DPDK_DRIVER", "kernel"),
        ("SHARDNET_NIC_IFACE", "snsdnic0"),
    ];
    let sysfs = fake_sysfs(PCI, Some("mlx5_core"));
    for action in ["bind", "restore"] {
        let out = nic_script(sysfs.path(), &mlx5, &["--dry-run", action]);
        assert_eq!(
            lines(&out),
            [
                "would run: ip link set dev snsdnic0 up".to_owned(),
                format!("{action} done"),
            ]
        );
    }

    // A device that is not there, and a bad command line: one sentence each.
    let out = nic_script(
        sysfs.path(),
        &[("SHARDNET_NIC_PCI", "0000:99:00.0")],
        &["--dry-run", "restore"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "shardnet-nic: no PCI device 0000:99:00.0 (SHARDNET_NIC_PCI): see lspci -D"
    );
    let out = nic_script(sysfs.path(), &[], &["unbind"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// A namespace of this test's own, removed on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip_ok(args: &[&str]) -> Output {
    let out = run("ip", args);
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
    out
}

#[test]
fn the_nic_script_restores_and_takes_back_a_fallback_address_idempotently() {
    let ns = Netns(format!("snsdnic{}", std::process::id() % 100_000));
    ip_ok(&["netns", "add", &ns.0]);
    ip_ok(&[
        "-n", &ns.0, "link", "add", "snsdn0", "type", "veth", "peer", "name", "snsdn1",
    ]);
    ip_ok(&["-n", &ns.0, "link", "set", "snsdn1", "up"]);
    let script = deploy("shardnet-nic.sh");
    let in_ns = |action: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .arg(&script)
            .arg(action)
            .env("SHARDNET_NIC_IFACE", "snsdn0")
            .env("SHARDNET_NIC_ADDRESS", "198.19.77.2/24")
            .env("SHARDNET_NIC_GATEWAY", "198.19.77.1")
            .env_remove("SHARDNET_NIC_PCI")
            .output()
            .unwrap();
        assert!(out.status.success(), "{action}: {}", text(&out));
    };
    let show = |what: &[&str]| {
        let mut args = vec!["-n", &ns.0];
        args.extend_from_slice(what);
        String::from_utf8(ip_ok(&args).stdout).unwrap()
    };
    for _ in 0..2 {
        in_ns("restore");
        let link = show(&["-o", "link", "show", "dev", "snsdn0"]);
        assert!(link.contains("<BROADCAST,MULTICAST,UP"), "{link}");
        let addr = show(&["-o", "addr", "show", "dev", "snsdn0"]);
        assert_eq!(addr.matches("inet 198.19.77.2/24").count(), 1, "{addr}");
        let route = show(&["route", "show", "default"]);
        assert!(
            route.contains("default via 198.19.77.1 dev snsdn0"),
            "{route}"
        );
    }
    for _ in 0..2 {
        in_ns("bind");
        let addr = show(&["-o", "addr", "show", "dev", "snsdn0"]);
        assert!(!addr.contains("198.19.77.2"), "{addr}");
        let link = show(&["-o", "link", "show", "dev", "snsdn0"]);
        assert!(link.contains(",UP"), "{link}");
    }
}

/// The notifications received so far, one datagram each.
struct Notifications {
    socket: UnixDatagram,
    got: Vec<String>,
}

impl Notifications {
    /// Read datagrams until `done` holds for the last one, or panic after
    /// `limit` (or when shardnet exited).
    fn until(
        &mut self,
        what: &str,
        limit: Duration,
        shardnet: &mut common::Shardnet,
        mut done: impl FnMut(&str) -> bool,
    ) -> usize {
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        loop {
            assert!(
                start.elapsed() < limit,
                "no {what} within {limit:?}; got {:?}\n{}",
                self.got,
                shardnet.log_text()
            );
            if let Some(status) = shardnet.has_exited() {
                panic!(
                    "shardnet exited ({status}) before {what}:\n{}",
                    shardnet.log_text()
                );
            }
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.got.push(message);
                    if done(self.got.last().unwrap()) {
                        return self.got.len() - 1;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("notification socket: {e}"),
            }
        }
    }
}

fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

/// The STATUS line of a healthy instance: every worker polling, then the
/// port's link (`; port P link up ...`, as the control thread last read it).
fn all_polling_and_link_up(message: &str) -> bool {
    message.lines().any(|l| {
        l.strip_prefix("STATUS=2 of 2 workers polling; rules generation 1; port ")
            .is_some_and(|rest| rest.contains(" link up"))
    })
}

#[test]
fn run_notifies_ready_pings_while_workers_poll_and_says_stopping() {
    notify_protocol("af_packet");
}

#[test]
fn run_on_dpdk_notifies_ready_pings_while_workers_poll_and_says_stopping() {
    notify_protocol("dpdk");
}

fn notify_protocol(backend: &str) {
    let lab = Lab::with_prefix("snsd");
    let socket_path = lab.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notification socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut notes = Notifications {
        socket,
        got: Vec::new(),
    };
    let admin = lab.path("admin.sock");
    let config = format!(
        "{}\n[interface]\naddress = \"{DUT_IP}/24\"\n\n[metrics]\nadmin_socket = \"{}\"\n\n\
         [[rule]]\nname = \"echo\"\nprotocol = \"udp\"\nports = \"7\"\nservice = \"echo\"\n\n\
         [debug]\nstall_endpoint = true\n",
        lab.dataplane(backend, 4095),
        admin.display()
    );
    // As systemd does it: WATCHDOG_PID is shardnet's own (sh execs `ip
    // netns exec`, which execs shardnet: one process id throughout).
    let env = format!(
        "export NOTIFY_SOCKET={} WATCHDOG_USEC=400000 WATCHDOG_PID=$$; exec \"$@\"",
        socket_path.display()
    );
    let mut shardnet = lab.start_shardnet_wrapped(&config, &["sh", "-c", &env, "sh"]);

    let ready = notes.until("READY=1", Duration::from_secs(60), &mut shardnet, |m| {
        has_line(m, "READY=1")
    });
    assert!(
        notes.got[..=ready]
            .iter()
            .all(|m| !has_line(m, "WATCHDOG=1") || has_line(m, "READY=1")),
        "a ping before READY: {:?}",
        notes.got
    );
    let mut pings = 0;
    notes.until("3 pings", Duration::from_secs(30), &mut shardnet, |m| {
        pings += usize::from(has_line(m, "WATCHDOG=1"));
        pings == 3
    });
    // The kernel sets a veth's operstate up up to a second after its carrier
    // (linkwatch), so the first STATUS may still say `link down`; the
    // control thread reads the link every second and says the change.
    if !notes.got.iter().any(|m| all_polling_and_link_up(m)) {
        notes.until(
            "a STATUS with the link up",
            Duration::from_secs(10),
            &mut shardnet,
            all_polling_and_link_up,
        );
    }

    // Worker 1 stalls for 3 s: once it is reported stuck, no ping until it
    // polls again; then the pings resume.
    let out = run(
        "curl",
        &[
            "-s",
            "--max-time",
            "5",
            "--unix-socket",
            admin.to_str().unwrap(),
            "-X",
            "POST",
            "-w",
            "\n%{http_code}",
            "http://localhost/debug/stall?worker=1&ms=3000",
        ],
    );
    assert!(
        text(&out).trim_end().ends_with("200"),
        "stall: {}",
        text(&out)
    );
    let stuck = notes.until(
        "worker 1 stuck",
        Duration::from_secs(10),
        &mut shardnet,
        |m| {
            m.lines().any(|l| {
                l.starts_with("STATUS=1 of 2 workers polling") && l.contains("worker 1 stuck")
            })
        },
    );
    let back = notes.until("recovery", Duration::from_secs(20), &mut shardnet, |m| {
        all_polling_and_link_up(m)
    });
    assert!(
        notes.got[stuck..back]
            .iter()
            .all(|m| !has_line(m, "WATCHDOG=1")),
        "a ping while worker 1 was stuck: {:?}",
        &notes.got[stuck..=back]
    );
    notes.until(
        "a ping after recovery",
        Duration::from_secs(10),
        &mut shardnet,
        |m| has_line(m, "WATCHDOG=1"),
    );

    let log = shardnet.stop();
    let mut buf = vec![0u8; 4096];
    let mut stopping = false;
    // Bounded: the socket holds a few seconds of pings at most.
    for _ in 0..1000 {
        match notes.socket.recv(&mut buf) {
            Ok(n) => stopping |= has_line(&String::from_utf8_lossy(&buf[..n]), "STOPPING=1"),
            Err(_) => break,
        }
    }
    assert!(stopping, "no STOPPING=1 at SIGTERM:\n{log}");
    assert!(
        log.contains("watchdog pings every 200ms"),
        "the watchdog interval is not logged as half WATCHDOG_USEC:\n{log}"
    );
}
