//! A network lab for interop tests: two network namespaces joined by a veth
//! pair. The peer side is plain Linux with 198.18.0.1/24; the DUT side holds
//! the other veth end with no kernel address, where shardnet runs.
//!
//! Needs root. Setup failures panic with the reason: these tests never skip.
//! Everything is removed on drop, even when the test panics.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The peer's address.
pub const PEER_IP: &str = "198.18.0.1";
/// The stack's address.
pub const DUT_IP: &str = "198.18.0.2";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Labs of one test binary run one at a time: a stack with two pinned workers
/// already fills this machine's two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_ok(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces and a veth pair between them.
pub struct Lab {
    _serial: std::sync::MutexGuard<'static, ()>,
    pub peer_ns: String,
    pub dut_ns: String,
    pub peer_if: String,
    pub dut_if: String,
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// Build the lab. Panics (loudly) when it cannot.
    pub fn new() -> Lab {
        Lab::with_prefix("sn")
    }

    /// Build the lab with namespace and interface names that start with
    /// `prefix` (at most 4 characters: interface names have 15), so that
    /// the labs of tests run side by side cannot collide.
    pub fn with_prefix(prefix: &str) -> Lab {
        assert!(prefix.len() <= 4, "prefix {prefix:?} too long");
        let euid = effective_uid();
        assert_eq!(
            euid, 0,
            "interop tests need root (network namespaces, veth)"
        );
        let tag = format!(
            "{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lab = Lab {
            _serial: serial,
            peer_ns: format!("{prefix}peer{tag}"),
            dut_ns: format!("{prefix}dut{tag}"),
            peer_if: format!("{prefix}p{tag}"),
            dut_if: format!("{prefix}d{tag}"),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        run_ok(&["ip", "netns", "add", &lab.peer_ns]);
        run_ok(&["ip", "netns", "add", &lab.dut_ns]);
        run_ok(&[
            "ip",
            "link",
            "add",
            &lab.peer_if,
            "netns",
            &lab.peer_ns,
            "type",
            "veth",
            "peer",
            "name",
            &lab.dut_if,
            "netns",
            &lab.dut_ns,
        ]);
        for (ns, ifname) in [(&lab.peer_ns, &lab.peer_if), (&lab.dut_ns, &lab.dut_if)] {
            run_ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run_ok(&["ip", "-n", ns, "link", "set", ifname, "up"]);
            // No offloads: frames on the wire carry complete checksums and
            // nothing is merged (tests of those offloads turn them back on).
            run_ok(&[
                "ip", "netns", "exec", ns, "ethtool", "-K", ifname, "rx", "off", "tx", "off",
                "tso", "off", "gso", "off", "gro", "off",
            ]);
        }
        run_ok(&[
            "ip",
            "-n",
            &lab.peer_ns,
            "addr",
            "add",
            &format!("{PEER_IP}/24"),
            "dev",
            &lab.peer_if,
        ]);
        // Keep the DUT kernel quiet on this interface: no IPv6 chatter.
        run_ok(&[
            "ip",
            "netns",
            "exec",
            &lab.dut_ns,
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{}.disable_ipv6=1", lab.dut_if),
        ]);
        run_ok(&[
            "ip",
            "netns",
            "exec",
            &lab.peer_ns,
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{}.disable_ipv6=1", lab.peer_if),
        ]);
        lab
    }

    /// Run a command in the peer namespace and wait for it.
    pub fn peer(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.peer_ns])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in the peer namespace: {e}"))
    }

    /// Run a command in the DUT namespace (where shardnet and its control
    /// endpoint live) and wait for it.
    pub fn dut(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.dut_ns])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in the DUT namespace: {e}"))
    }

    /// The DUT interface's MAC address.
    pub fn dut_mac(&self) -> String {
        let out = run_ok(&[
            "ip",
            "netns",
            "exec",
            &self.dut_ns,
            "cat",
            &format!("/sys/class/net/{}/address", self.dut_if),
        ]);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The `[dataplane]` and backend sections of a two-worker config on the
    /// DUT interface: `backend` is "af_packet" or "dpdk" (a `net_af_packet`
    /// vdev with two queue pairs, `--no-pci`, `mbufs` per worker).
    pub fn dataplane(&self, backend: &str, mbufs: u32) -> String {
        dataplane_on(backend, mbufs, &self.dut_if)
    }

    /// The same on the peer's interface (for a shardnet on the peer side).
    pub fn peer_dataplane(&self, backend: &str, mbufs: u32) -> String {
        dataplane_on(backend, mbufs, &self.peer_if)
    }

    /// A file path inside the lab's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Start shardnet in the DUT namespace with `config_text`.
    pub fn start_shardnet(&self, config_text: &str) -> Shardnet {
        self.start_shardnet_in(&self.dut_ns, "shardnet", config_text, &[])
    }

    /// The same, started through `wrapper` (a command that ends by running
    /// its arguments with `exec`, so shardnet keeps its process id).
    pub fn start_shardnet_wrapped(&self, config_text: &str, wrapper: &[&str]) -> Shardnet {
        self.start_shardnet_in(&self.dut_ns, "shardnet", config_text, wrapper)
    }

    /// Start a second shardnet, in the peer namespace (on the peer's
    /// interface), with `config_text`; its files are `peer-shardnet.*`.
    pub fn start_peer_shardnet(&self, config_text: &str) -> Shardnet {
        self.start_shardnet_in(&self.peer_ns, "peer-shardnet", config_text, &[])
    }

    /// Start `program --config FILE` (a program built on the shardnet
    /// library, such as an example) in the DUT namespace with
    /// `config_text`; its files are `name.*`.
    pub fn start_program(&self, program: &Path, name: &str, config_text: &str) -> Shardnet {
        self.start_program_with(program, name, config_text, &[])
    }

    /// [`Lab::start_program`] with `args` after `--config FILE`.
    pub fn start_program_with(
        &self,
        program: &Path,
        name: &str,
        config_text: &str,
        args: &[&str],
    ) -> Shardnet {
        let no_wrapper: &[&str] = &[];
        let ns = &self.dut_ns;
        self.spawn_in(
            ns,
            name,
            config_text,
            no_wrapper,
            program.as_os_str(),
            &[],
            args,
        )
    }

    /// Run `program --config FILE` in the DUT namespace to its end.
    pub fn run_program(&self, program: &Path, config: &Path) -> Output {
        self.run_in(program.as_os_str(), &[], config)
    }

    fn start_shardnet_in(
        &self,
        ns: &str,
        name: &str,
        config_text: &str,
        wrapper: &[&str],
    ) -> Shardnet {
        let shardnet = OsStr::new(env!("CARGO_BIN_EXE_shardnet"));
        self.spawn_in(ns, name, config_text, wrapper, shardnet, &["run"], &[])
    }

    /// Start `[wrapper..] ip netns exec NS program before.. --config FILE
    /// after..` with `config_text` in FILE (`name.toml`) and its stderr in
    /// `name.log`, logging at `info`.
    #[allow(clippy::too_many_arguments)]
    fn spawn_in(
        &self,
        ns: &str,
        name: &str,
        config_text: &str,
        wrapper: &[&str],
        program: &OsStr,
        before: &[&str],
        after: &[&str],
    ) -> Shardnet {
        let config = self.path(&format!("{name}.toml"));
        std::fs::write(&config, config_text).unwrap();
        let log = self.path(&format!("{name}.log"));
        let (first, wrapper_args) = match wrapper.split_first() {
            Some((first, rest)) => (*first, rest),
            None => ("ip", &[][..]),
        };
        let mut command = Command::new(first);
        command.args(wrapper_args);
        if !wrapper.is_empty() {
            command.arg("ip");
        }
        let child = command
            .args(["netns", "exec", ns])
            .arg(program)
            .args(before)
            .arg("--config")
            .arg(&config)
            .args(after)
            .env("SHARDNET_LOG", "info")
            // Journals of what it changes on the NIC in the lab, not in
            // /run/shardnet: a test that fails leaves one (for a namespace
            // that is gone).
            .env("SHARDNET_STATE_DIR", self.path("state"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.to_string_lossy()));
        Shardnet {
            child: Some(child),
            log,
        }
    }

    /// Run `shardnet run --config PATH` in the DUT namespace to its end
    /// (for starts that must fail).
    pub fn run_shardnet(&self, config: &Path) -> Output {
        self.run_in(OsStr::new(env!("CARGO_BIN_EXE_shardnet")), &["run"], config)
    }

    /// Run `program args.. --config PATH` in the DUT namespace to its end.
    fn run_in(&self, program: &OsStr, args: &[&str], config: &Path) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.dut_ns])
            .arg(program)
            .args(args)
            .arg("--config")
            .arg(config)
            .env("SHARDNET_STATE_DIR", self.path("state"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.to_string_lossy()))
    }

    /// Ping the stack until it answers, or panic after `limit`.
    pub fn wait_until_answering(&self, shardnet: &mut Shardnet, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = shardnet.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("shardnet exited early ({status}):\n{}", shardnet.log_text());
            }
            let out = self.peer(&["ping", "-c", "1", "-W", "1", DUT_IP]);
            if out.status.success() {
                return;
            }
        }
        panic!(
            "shardnet did not answer ping within {limit:?}:\n{}",
            shardnet.log_text()
        );
    }
}

/// The `[dataplane]` and backend sections of a two-worker config on
/// `interface` (see [`Lab::dataplane`]).
fn dataplane_on(backend: &str, mbufs: u32, interface: &str) -> String {
    match backend {
        "af_packet" => format!(
            "[dataplane]\nbackend = \"af_packet\"\nworkers = [0, 1]\ncontrol_core = 0\n\
             idle = \"adaptive\"\n\n[af_packet]\ninterface = \"{interface}\"\n"
        ),
        "dpdk" => format!(
            "[dataplane]\nbackend = \"dpdk\"\nworkers = [0, 1]\ncontrol_core = 0\n\
             idle = \"adaptive\"\n\n[dpdk]\neal_args = [\"--no-pci\", \"--no-huge\", \
             \"--no-shconf\", \"-m\", \"512\", \
             \"--vdev=net_af_packet0,iface={interface},qpairs=2,framecnt=4096\"]\n\
             port = 0\nmbufs_per_worker = {mbufs}\n"
        ),
        other => panic!("unknown backend {other}"),
    }
}

fn effective_uid() -> u32 {
    // From /proc, to keep the tests free of unsafe code.
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("effective uid")
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.peer_ns, &self.dut_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A running shardnet process; killed on drop if still running.
pub struct Shardnet {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Shardnet {
    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (`ip netns exec` execs shardnet in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Whether it has exited (reaping it if so).
    pub fn has_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// Send a signal to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        run_ok(&["kill", &format!("-{signal}"), &pid]);
    }

    /// SIGKILL (no stop runs: a crash), then wait; the log.
    pub fn kill(mut self) -> String {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.log_text()
    }

    /// SIGTERM, then wait (bounded) for a clean exit; panics otherwise.
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log = self.log_text();
                assert!(status.success(), "shardnet exited with {status}:\n{log}");
                return log;
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                panic!(
                    "shardnet did not stop within 15 s of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Shardnet {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parse `prefix.workerN.flows` files: flow line -> (worker, packets).
pub fn read_flow_records(prefix: &Path, workers: usize) -> Vec<Vec<(String, u64)>> {
    (0..workers)
        .map(|w| {
            let mut path = prefix.as_os_str().to_owned();
            path.push(format!(".worker{w}.flows"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", Path::new(&path).display()));
            text.lines()
                .map(|line| {
                    let (flow, count) = line.rsplit_once(' ').unwrap();
                    (flow.to_string(), count.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

/// Poll `done` every 50 ms until it holds; panic after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The path of a peer helper script.
pub fn peer_script(name: &str) -> String {
    format!("{}/tests/peers/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Run `shardnet-load --config CONFIG ARGS --quiet --json` in the peer
/// namespace (at most 60 s), with `config_text` written as `NAME.toml`;
/// its JSON results. Panics with its output if it fails.
pub fn run_load(lab: &Lab, name: &str, config_text: &str, args: &[&str]) -> serde_json::Value {
    let config = lab.path(&format!("{name}.toml"));
    std::fs::write(&config, config_text).unwrap();
    let json = lab.path(&format!("{name}.json"));
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.peer_ns, "timeout", "60"])
        .arg(env!("CARGO_BIN_EXE_shardnet-load"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("cannot run shardnet-load");
    assert!(
        out.status.success(),
        "shardnet-load failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

/// `/metrics` of the shardnet in the DUT namespace listening on `addr`.
pub fn scrape(lab: &Lab, addr: &str) -> String {
    let out = lab.dut(&[
        "curl",
        "-sf",
        "--max-time",
        "10",
        &format!("http://{addr}/metrics"),
    ]);
    assert!(
        out.status.success(),
        "cannot scrape http://{addr}/metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sum of the samples of metric `name` whose label set contains every
/// one of `labels` (`worker="0"`, say); 0 when there is none.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_set) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|want| label_set.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The path of example `name`, built by `cargo test` next to the tests
/// (`target/<profile>/examples/`).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} is not built at {}: run the tests with cargo test",
        path.display()
    );
    path
}

/// Panics unless `out`, the run of a client (in the peer namespace, say),
/// succeeded, showing `what` it was, its stdout and stderr, and the log of
/// the program it talked to.
#[track_caller]
pub fn assert_client_ok(what: &str, out: &Output, log: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}\nlog:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cross-core messages in a scrape, summed over the workers: (sent,
/// received, refused because a ring was full).
pub fn smp_messages(metrics: &str) -> (f64, f64, f64) {
    let direction = |d: &str| {
        metric_sum(
            metrics,
            "shardnet_smp_messages_total",
            &[&format!("direction=\"{d}\"")],
        )
    };
    (
        direction("sent"),
        direction("received"),
        metric_sum(metrics, "shardnet_smp_queue_full_total", &[]),
    )
}
