//! The control endpoint under abuse, against the real binary: a flood of
//! idle connections under a pids limit (as systemd's `TasksMax`), state
//! changes tried by an unprivileged user, a config path that is a FIFO, and
//! slow or oversized requests. The stack must stay up and answering, with a
//! bounded number of threads and connections.
//!
//! Needs root (network namespaces, a pids cgroup); fails, never skips, when
//! it cannot set up.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{peer_script, wait_for, Lab, DUT_IP};
use serde_json::Value;

const METRICS: &str = "127.0.0.1:9464";

/// The server's cap on TCP connections (`control::http::MAX_CONNECTIONS`).
const MAX_CONNECTIONS: usize = 64;

fn config(lab: &Lab, admin_socket: Option<&str>) -> String {
    let dataplane = lab.dataplane("af_packet", 4095);
    let admin = admin_socket
        .map(|path| format!("admin_socket = \"{path}\"\n"))
        .unwrap_or_default();
    format!(
        r#"{dataplane}
[interface]
address = "{DUT_IP}/24"

[metrics]
listen = "{METRICS}"
{admin}
[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[default]
action = "drop"
"#
    )
}

/// curl from the DUT namespace, optionally as uid/gid 65534: (curl's exit
/// code, HTTP status, body).
fn curl(lab: &Lab, nobody: bool, options: &[&str], method: &str, url: &str) -> (i32, u16, String) {
    let mut args: Vec<&str> = Vec::new();
    if nobody {
        args.extend_from_slice(&[
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
        ]);
    }
    args.extend_from_slice(&["curl", "-s", "--max-time", "5"]);
    args.extend_from_slice(options);
    args.extend_from_slice(&["-X", method, "-w", "\n%{http_code}", url]);
    let out = lab.dut(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
    )
}

fn get(lab: &Lab, path: &str) -> (i32, u16, String) {
    curl(lab, false, &[], "GET", &format!("http://{METRICS}{path}"))
}

fn threads_of(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

fn fds_of(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// A child pids cgroup (v1) with a limit; removed on drop (its processes
/// must have exited by then).
struct PidsCgroup {
    dir: PathBuf,
}

impl PidsCgroup {
    fn new(max: u32) -> PidsCgroup {
        let root = PathBuf::from("/sys/fs/cgroup/pids");
        assert!(
            root.join("cgroup.procs").exists(),
            "this test needs the cgroup v1 pids controller at /sys/fs/cgroup/pids"
        );
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = root.join(format!(
            "shardnet-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).expect("cannot create a pids cgroup");
        std::fs::write(dir.join("pids.max"), max.to_string()).unwrap();
        PidsCgroup { dir }
    }

    fn procs(&self) -> String {
        self.dir.join("cgroup.procs").display().to_string()
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // A cgroup can be removed once empty: give an exiting process time.
        let start = Instant::now();
        while std::fs::remove_dir(&self.dir).is_err() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_connection_flood_under_a_pids_limit_leaves_the_stack_up() {
    let lab = Lab::new();
    let cgroup = PidsCgroup::new(64);
    let enter = format!("echo $$ > {} && exec \"$@\"", cgroup.procs());
    let mut shardnet = lab.start_shardnet_wrapped(&config(&lab, None), &["sh", "-c", &enter, "sh"]);
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));
    wait_for("healthz 200", Duration::from_secs(5), || {
        get(&lab, "/healthz").1 == 200
    });
    let pid = shardnet.pid();
    let in_cgroup = std::fs::read_to_string(cgroup.dir.join("cgroup.procs")).unwrap();
    assert!(
        in_cgroup.lines().any(|l| l.trim() == pid.to_string()),
        "shardnet ({pid}) is in the cgroup: {in_cgroup}"
    );
    let threads_before = threads_of(pid).unwrap();
    let fds_before = fds_of(pid).unwrap();

    // Watch threads and descriptors while the flood runs.
    let stop = Arc::new(AtomicBool::new(false));
    let most_threads = Arc::new(AtomicUsize::new(0));
    let most_fds = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, most_threads, most_fds) = (stop.clone(), most_threads.clone(), most_fds.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = threads_of(pid) {
                    most_threads.fetch_max(t, Ordering::Relaxed);
                }
                if let Some(f) = fds_of(pid) {
                    most_fds.fetch_max(f, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // 3000 idle connections, opened within 30 s and held up to 30 s.
    let mut flood = Command::new("ip")
        .args(["netns", "exec", &lab.dut_ns, "/usr/bin/python3"])
        .arg(peer_script("conn_flood.py"))
        .args(["127.0.0.1", "9464", "3000", "30", "30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(flood.stdout.take().unwrap()).lines();
    let opened: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();

    // While they are held: alive, answering scrapes, the dataplane too.
    assert!(
        shardnet.has_exited().is_none(),
        "shardnet died under the flood ({opened}):\n{}",
        shardnet.log_text()
    );
    let (code, status, body) = get(&lab, "/metrics");
    assert_eq!(
        (code, status),
        (0, 200),
        "a scrape during the flood: {body}"
    );
    assert!(body.contains("shardnet_worker_up"), "{body}");
    assert_eq!(get(&lab, "/healthz").1, 200);
    let ping = lab.peer(&["ping", "-c", "3", "-i", "0.2", "-W", "2", DUT_IP]);
    assert!(
        ping.status.success(),
        "the dataplane answers ping during the flood"
    );
    drop(flood.stdin.take());
    let closed: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(flood.wait().unwrap().success());
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    let opened_n = opened["opened"].as_u64().unwrap() as usize;
    assert!(opened_n >= 2000, "the flood got in: {opened}");
    let most_threads = most_threads.load(Ordering::Relaxed);
    let most_fds = most_fds.load(Ordering::Relaxed);
    eprintln!(
        "flood: {opened} {closed}; threads {threads_before} -> at most {most_threads}; \
         descriptors {fds_before} -> at most {most_fds}"
    );
    assert!(
        most_threads <= threads_before + 1,
        "no thread per connection: {threads_before} before, {most_threads} during"
    );
    // The cap (plus the one just accepted, and a shed one not closed yet).
    assert!(
        most_fds <= fds_before + MAX_CONNECTIONS + 8,
        "at most {MAX_CONNECTIONS} control connections: {fds_before} descriptors before, \
         {most_fds} during"
    );
    assert!(
        closed["closed_by_server"].as_u64().unwrap() as usize + MAX_CONNECTIONS >= opened_n,
        "the server keeps at most {MAX_CONNECTIONS}: {opened} {closed}"
    );
    // And after.
    assert_eq!(get(&lab, "/metrics").1, 200);
    let log = shardnet.stop();
    assert!(!log.contains("panicked"), "{log}");
    drop(cgroup);
}

/// Run `control_abuse.py` against the TCP listener: its JSON per case.
fn abuse(lab: &Lab, limit_s: u64) -> Value {
    let out = lab.dut(&[
        "timeout",
        &(limit_s + 20).to_string(),
        "/usr/bin/python3",
        &peer_script("control_abuse.py"),
        "127.0.0.1",
        "9464",
        &limit_s.to_string(),
    ]);
    assert!(
        out.status.success(),
        "control_abuse.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn state_changes_need_the_admin_socket_and_bad_requests_and_files_are_bounded() {
    let lab = Lab::new();
    // Let uid 65534 reach the socket's directory: only the socket's own mode
    // may keep it out.
    std::fs::set_permissions(lab.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = lab.path("admin.sock").display().to_string();
    let unix = ["--unix-socket", socket.as_str()];
    let mut shardnet = lab.start_shardnet(&config(&lab, Some(&socket)));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));
    wait_for("healthz 200", Duration::from_secs(5), || {
        get(&lab, "/healthz").1 == 200
    });
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "the admin socket is 0600");
    assert_eq!(meta.uid(), 0, "owned by the process' user");

    // Nobody: reads metrics, cannot reload on either listener.
    let reload_url = format!("http://{METRICS}/reload");
    assert_eq!(
        curl(&lab, true, &[], "GET", &format!("http://{METRICS}/metrics")).1,
        200
    );
    let (_, status, body) = curl(&lab, true, &[], "POST", &reload_url);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(&socket),
        "the answer names the socket: {body}"
    );
    let (code, status, _) = curl(&lab, true, &unix, "POST", "http://localhost/reload");
    assert_eq!(
        (code, status),
        (7, 0),
        "curl cannot even connect as uid 65534"
    );
    // Root, on the socket: reloads; also SIGHUP.
    let (_, status, body) = curl(&lab, false, &unix, "POST", "http://localhost/reload");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["generation"],
        2
    );
    shardnet.signal("HUP");
    wait_for("the SIGHUP reload", Duration::from_secs(5), || {
        let (_, _, rules) = get(&lab, "/rules");
        serde_json::from_str::<Value>(&rules).unwrap()["generation"] == 3
    });

    // The config path turns into a FIFO nobody writes: reloads fail at
    // once, and the endpoint and the control thread go on answering.
    let config_path = lab.path("shardnet.toml");
    std::fs::rename(&config_path, lab.path("shardnet.toml.real")).unwrap();
    let made = Command::new("mkfifo").arg(&config_path).status().unwrap();
    assert!(made.success());
    let start = Instant::now();
    let (code, status, body) = curl(&lab, false, &unix, "POST", "http://localhost/reload");
    assert_eq!((code, status), (0, 400), "{body}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        body.contains("the config file is a FIFO, not a regular file"),
        "{body}"
    );
    shardnet.signal("HUP");
    wait_for("the refused SIGHUP reload", Duration::from_secs(5), || {
        shardnet.log_text().contains("rules not reloaded on SIGHUP")
    });
    assert_eq!(get(&lab, "/healthz").1, 200);
    let (_, _, rules) = get(&lab, "/rules");
    assert_eq!(
        serde_json::from_str::<Value>(&rules).unwrap()["generation"],
        3
    );

    // Slow and oversized requests: answered or closed, within bounds; the
    // header timeout is 5 s.
    let started = Instant::now();
    let cases = abuse(&lab, 15);
    eprintln!("abuse: {cases}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let closed_within = |case: &str, seconds: f64| {
        let after = cases[case]["closed_after"].as_f64();
        assert!(
            after.is_some_and(|a| a <= seconds),
            "{case} closed within {seconds} s: {cases}"
        );
    };
    closed_within("silent", 8.0);
    closed_within("drip", 8.0);
    closed_within("idle_keepalive", 8.0);
    assert_eq!(cases["idle_keepalive"]["status"], 200, "{cases}");
    for (case, status) in [("big_head", 431), ("big_body", 413)] {
        closed_within(case, 3.0);
        let answered = &cases[case]["status"];
        assert!(
            answered.is_null() || *answered == status,
            "{case}: {status} or a close: {cases}"
        );
    }
    // At least the announced body gets its status (its head is complete).
    assert_eq!(cases["big_body"]["status"], 413, "{cases}");
    assert_eq!(get(&lab, "/healthz").1, 200);

    let log = shardnet.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        !lab.path("admin.sock").exists(),
        "the admin socket is removed at stop"
    );
    // A stale socket (left by a crash) is replaced at the next start.
    let stale = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(stale);
    std::fs::remove_file(&config_path).unwrap();
    let mut shardnet = lab.start_shardnet(&config(&lab, Some(&socket)));
    lab.wait_until_answering(&mut shardnet, Duration::from_secs(20));
    let (_, status, body) = curl(&lab, false, &unix, "GET", "http://localhost/healthz");
    assert_eq!(status, 200, "{body}");
    let log = shardnet.stop();
    assert!(log.contains("removed a stale admin socket"), "{log}");
    let _ = std::io::stderr().flush();
}
