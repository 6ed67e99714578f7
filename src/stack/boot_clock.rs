//! The TCP timestamp clock of this boot, read from `/proc`. The runtime reads
//! it once and hands it to every worker's stack in [`super::TcpSetup`]; the
//! stack itself never reads a file.

use crate::tcp::cookie::Secrets;

/// The TCP timestamp clock of this boot: keyed with the kernel's `boot_id`,
/// starting at the uptime in milliseconds (`/proc/uptime`, which counts
/// suspended time too, so it never goes back). Where either cannot be read
/// (no `/proc`), a random key and 0, with a warning: the clock then starts
/// over with each run, and a peer may refuse our SYNs for a minute on
/// 4-tuples it still holds in TIME-WAIT.
pub fn boot_timestamp_clock() -> ([u8; 16], u32) {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
    let key = boot_id.and_then(|id| {
        let hex: Vec<u8> = id
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| (c as char).to_digit(16).unwrap_or(0) as u8)
            .collect();
        let mut key = [0u8; 16];
        (hex.len() == 32).then(|| {
            for (i, pair) in hex.chunks(2).enumerate() {
                key[i] = pair[0] << 4 | pair[1];
            }
            key
        })
    });
    let uptime_ms = std::fs::read_to_string("/proc/uptime").ok().and_then(|u| {
        let seconds: f64 = u.split_whitespace().next()?.parse().ok()?;
        Some((seconds * 1000.0) as u64 as u32)
    });
    match (key, uptime_ms) {
        (Some(key), Some(ms)) => (key, ms),
        _ => {
            tracing::warn!(
                "cannot read /proc/sys/kernel/random/boot_id or /proc/uptime: TCP timestamps \
                 start over with this run"
            );
            random_timestamp_clock()
        }
    }
}

/// A TCP timestamp clock of this run only: a random key, starting at 0. What
/// [`super::TcpSetup::default`] holds (it reads no file), and what
/// [`boot_timestamp_clock`] falls back to.
pub fn random_timestamp_clock() -> ([u8; 16], u32) {
    let random = Secrets::random_key();
    let mut key = [0u8; 16];
    key.copy_from_slice(&random[..16]);
    (key, 0)
}
