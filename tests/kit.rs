//! bench/trex's load-generator profiles, checked without TRex or pktgen
//! (neither is installable here): tests/trex/check_profiles.py imports the
//! TRex profiles against stand-in modules and checks the packets they build
//! with scapy; tests/trex/check_pktgen.lua runs the pktgen script against a
//! stand-in `pktgen` table. (The ASTF profiles' byte counts are checked
//! against the real http service in src/service/http.rs's unit tests.)
//!
//! Needs /usr/bin/python3 with scapy (python3-scapy) and lua5.4
//! (scripts/install-deps.sh installs both); fails if either is missing.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); run scripts/install-deps.sh"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

#[test]
fn trex_profiles_import_and_build_valid_packets() {
    let text = run(
        Command::new("/usr/bin/python3").arg(root().join("tests/trex/check_profiles.py")),
        "tests/trex/check_profiles.py",
    );
    assert!(
        text.contains("udp64_echo, http_keepalive, http_crr OK"),
        "{text}"
    );
}

#[test]
fn pktgen_script_sets_up_64_byte_udp_to_echo() {
    let script = root().join("bench/trex/pktgen_udp64.lua");
    let checker = root().join("tests/trex/check_pktgen.lua");
    let text = run(
        Command::new("lua5.4")
            .arg(&checker)
            .arg(&script)
            .env("SN_DUT_MAC", "02:53:4e:00:00:01")
            .env_remove("SN_START"),
        "check_pktgen.lua",
    );
    assert!(text.contains("all expected ones present"), "{text}");
    let text = run(
        Command::new("lua5.4")
            .arg(&checker)
            .arg(&script)
            .arg("--no-mac")
            .env_remove("SN_DUT_MAC"),
        "check_pktgen.lua --no-mac",
    );
    assert!(text.contains("refuses to run without SN_DUT_MAC"), "{text}");
}
