//! The command line as a user meets it: `check` on good and bad files, and
//! `run` failing with a one-sentence reason, never a panic.

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

const GOOD: &str = r#"[dataplane]
backend = "af_packet"
workers = [0]
control_core = 0
idle = "adaptive"

[af_packet]
interface = "sn-no-such-if"

[interface]
address = "198.18.0.2/24"

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"
"#;

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn check_accepts_a_good_file_and_summarises_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, GOOD);
    let (code, stdout, stderr) = shardnet(&["check", "--config", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("{path}: OK")), "{stdout}");
    assert!(stdout.contains("echo"), "{stdout}");
}

#[test]
fn check_reports_each_problem_with_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "workers = [0]",
            "wrokers = [0]",
            ":3:1: ",
            "unknown key \"wrokers\"",
        ),
        (
            "198.18.0.2/24",
            "198.18.0.300/24",
            ":11:11: ",
            "198.18.0.300/24",
        ),
        (
            "ports = \"7\"",
            "ports = \"70000\"",
            ":16:9: ",
            "out of range",
        ),
        (
            "workers = [0]",
            "workers = [0, 4096]",
            ":3:15: ",
            "core 4096 does not exist",
        ),
        (
            "service = \"echo\"",
            "service = \"ecko\"",
            ":17:11: ",
            "ecko",
        ),
        (
            "service = \"echo\"\n",
            "service = \"echo\"\n\n[tcp]\nbuffer_size = 262144\nmss = 100\n",
            ":21:7: ",
            "mss 100 is out of range 536-1460",
        ),
    ];
    for (from, to, position, reason) in cases {
        let path = write(&dir, &GOOD.replacen(from, to, 1));
        let (code, stdout, stderr) = shardnet(&["check", "--config", &path]);
        assert_eq!(code, 1, "{to}: {stdout}{stderr}");
        let expected = format!("{path}{position}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&expected))
            .unwrap_or_else(|| panic!("{to}: no line starting {expected:?} in:\n{stderr}"));
        assert!(line.contains(reason), "{to}: {line}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn check_reports_several_problems_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replacen("198.18.0.2/24", "198.18.0.2/33", 1).replacen(
        "ports = \"7\"",
        "ports = \"9-8\"",
        1,
    );
    let path = write(&dir, &text);
    let (code, _, stderr) = shardnet(&["check", "--config", &path]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with(&path)).count(),
        2,
        "{stderr}"
    );
}

#[test]
fn check_refuses_a_kernel_port_the_backend_cannot_have() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{GOOD}\n[kernel]\nenabled = true\nkind = \"virtio-user\"\n");
    let path = write(&dir, &text);
    let (code, _, stderr) = shardnet(&["check", "--config", &path]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.starts_with(&format!("{path}:")), "{stderr}");
    assert!(stderr.contains("virtio-user"), "{stderr}");

    // A TAP is fine, and the summary says so.
    let text = format!("{GOOD}\n[kernel]\nenabled = true\n");
    let path = write(&dir, &text);
    let (code, stdout, stderr) = shardnet(&["check", "--config", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("kernel:    tap \"sn0\", 1024 frames per ring"),
        "{stdout}"
    );
}

#[test]
fn check_accepts_tcp_services_and_summarises_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{GOOD}\n[[rule]]\nname = \"web\"\nprotocol = \"tcp\"\nports = 80\nservice = \"http\"\n\
         \n[tcp]\ncongestion = \"newreno\"\n\n[http]\nbody = \"hi\"\n"
    );
    let path = write(&dir, &text);
    let (code, stdout, stderr) = shardnet(&["check", "--config", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("tcp:       newreno, 262144 connections/worker"),
        "{stdout}"
    );
    assert!(!stderr.contains("has no effect"), "{stderr}");
}

#[test]
fn run_fails_with_one_sentence_when_the_interface_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, GOOD);
    let (code, _, stderr) = shardnet(&["run", "--config", &path]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("sn-no-such-if"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_file_and_version() {
    let (code, _, stderr) = shardnet(&["check", "--config", "/nonexistent/shardnet.toml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/shardnet.toml"), "{stderr}");
    let (code, stdout, _) = shardnet(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("shardnet "), "{stdout}");
}

/// `shardnet restore` with nothing left behind: exit 0 and say so; its help
/// names the state directory and the systemd use.
#[test]
fn restore_with_nothing_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let restore = |path: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_shardnet"))
            .args(["restore", "--config", path])
            .env("SHARDNET_STATE_DIR", &state)
            .output()
            .expect("run shardnet");
        (
            out.status.code().expect("exit code"),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The AF_PACKET interface's journal is looked for, and is not there.
    let path = write(&dir, &format!("{GOOD}\n[kernel]\nenabled = true\n"));
    let (code, stdout, stderr) = restore(&path);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "sn-no-such-if: nothing to restore");
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        0,
        "no file left"
    );
    // DPDK on a NIC the kernel does not see: nothing shardnet changes.
    let dpdk = GOOD
        .replace("backend = \"af_packet\"", "backend = \"dpdk\"")
        .replace(
            "[af_packet]\ninterface = \"sn-no-such-if\"\n",
            "[dpdk]\neal_args = [\"--no-pci\", \"--vdev=net_tap0\"]\n",
        );
    let (code, stdout, stderr) = restore(&write(&dir, &dpdk));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "nothing to restore: this configuration changes no interface's settings"
    );

    let (code, stdout, _) = shardnet(&["restore", "--help"]);
    assert_eq!(code, 0);
    for words in [
        "SHARDNET_STATE_DIR",
        "/run/shardnet",
        "ExecStopPost",
        "udp_early_demux",
    ] {
        assert!(stdout.contains(words), "{words}: {stdout}");
    }
    let (_, stdout, _) = shardnet(&["--help"]);
    assert!(stdout.contains("restore"), "{stdout}");
}

/// `shardnet` with `args`, killed if it runs past `limit`: (exit code, stderr,
/// how long it ran). A file that never ends, or never opens, must not hang.
fn shardnet_bounded(args: &[&str], limit: std::time::Duration) -> (Option<i32>, String, f64) {
    let start = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardnet"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shardnet");
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status.code(), stderr, start.elapsed().as_secs_f64());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (None, String::new(), start.elapsed().as_secs_f64());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn check_refuses_what_is_not_a_small_regular_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo = fifo.to_str().unwrap().to_owned();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, format!("{GOOD}\n{}", "#".repeat(2 << 20))).unwrap();
    let big = big.to_str().unwrap().to_owned();
    let dir_path = dir.path().to_str().unwrap().to_owned();
    for (path, kind) in [
        ("/dev/zero", "is a character device, not a regular file"),
        (fifo.as_str(), "is a FIFO, not a regular file"),
        (dir_path.as_str(), "is a directory, not a regular file"),
        (big.as_str(), "is larger than 1 MiB, the most accepted"),
    ] {
        for command in ["check", "run"] {
            let (code, stderr, seconds) = shardnet_bounded(
                &[command, "--config", path],
                std::time::Duration::from_secs(10),
            );
            assert_eq!(code, Some(1), "{command} {path}: {seconds:.1} s, {stderr}");
            assert!(seconds < 5.0, "{command} {path} took {seconds:.1} s");
            assert_eq!(
                stderr.trim_end(),
                format!(
                    "{path}: the config file {kind}{}",
                    match kind {
                        k if k.contains("MiB") => "",
                        _ => "; give the path of a TOML file",
                    }
                ),
                "{command} {path}"
            );
        }
    }
}
