//! systemd's service notification protocol (`sd_notify(3)`), from the
//! control thread.
//!
//! Under a `Type=notify` unit systemd sets `NOTIFY_SOCKET`, and with
//! `WatchdogSec=` also `WATCHDOG_USEC` and `WATCHDOG_PID`. [`Notifier`] then
//! sends, over the `sd-notify` crate:
//!
//! - `READY=1` once every worker has polled at least once and is polling now
//!   (the control listener and the admin socket are bound before the control
//!   loop starts, so they are up by then);
//! - `WATCHDOG=1` every half `WATCHDOG_USEC`, but only while every worker's
//!   heartbeat is fresh: the same test as `/healthz`
//!   ([`ControlPlane::health`], [`super::STUCK_AFTER`]). A stuck worker thus
//!   lets systemd's watchdog fire and, with `Restart=on-failure`, restart the
//!   process, where `/healthz` only reports it;
//! - `STATUS=` lines (`2 of 2 workers polling; rules generation 1`), sent
//!   when they change, which `systemctl status` shows;
//! - `STOPPING=1` when a stop signal arrives.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) nothing is sent. The
//! environment is left as it is (`unset_env = false`): removing variables
//! while other threads run is not sound, and systemd takes notifications
//! only from the main process by default (`NotifyAccess=main`), so a child
//! that inherits them cannot speak for shardnet.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::ControlPlane;

/// The control thread's side of `sd_notify`.
#[derive(Debug)]
pub struct Notifier {
    /// Whether `NOTIFY_SOCKET` is set.
    enabled: bool,
    /// Half of `WATCHDOG_USEC` (systemd's advice), when the watchdog is on
    /// for this process.
    ping_every: Option<Duration>,
    ready: bool,
    last_ping: Option<Instant>,
    last_status: String,
    /// Whether a failed send was logged already (logged once, not per tick).
    send_failed: bool,
}

/// What one look at the workers decided.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    /// Every worker has polled at least once.
    all_started: bool,
    /// Every worker's heartbeat is fresh.
    all_polling: bool,
    status: String,
}

impl Notifier {
    /// A notifier configured from the environment (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC`, `WATCHDOG_PID`); inert when not under systemd.
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let mut usec = 0;
        let ping_every = (enabled && sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
            .then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(1)));
        if enabled {
            match ping_every {
                Some(every) => tracing::info!(
                    "systemd notification socket set: READY once every worker polls, \
                     watchdog pings every {every:?} while they all do"
                ),
                None => tracing::info!(
                    "systemd notification socket set: READY once every worker polls \
                     (no watchdog: WatchdogSec= is not set for this process)"
                ),
            }
        }
        Notifier {
            enabled,
            ping_every,
            ready: false,
            last_ping: None,
            last_status: String::new(),
            send_failed: false,
        }
    }

    /// Whether notifications are sent at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The watchdog ping interval, when the watchdog is on.
    pub fn ping_every(&self) -> Option<Duration> {
        self.ping_every
    }

    /// Look at the workers and send what is due: the control thread calls
    /// this every tick.
    pub fn tick(&mut self, plane: &ControlPlane) {
        if !self.enabled {
            return;
        }
        let verdict = verdict(plane);
        let mut states = Vec::new();
        if verdict.status != self.last_status {
            self.last_status.clone_from(&verdict.status);
            states.push(NotifyState::Status(&verdict.status));
        }
        if !self.ready && verdict.all_started && verdict.all_polling {
            self.ready = true;
            states.push(NotifyState::Ready);
        }
        let now = Instant::now();
        if let Some(every) = self.ping_every {
            let due = self
                .last_ping
                .is_none_or(|last| now.duration_since(last) >= every);
            if self.ready && verdict.all_polling && due {
                self.last_ping = Some(now);
                states.push(NotifyState::Watchdog);
            }
        }
        self.send(&states);
    }

    /// Tell systemd the process is stopping (a stop signal came).
    pub fn stopping(&mut self) {
        if self.enabled {
            self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        }
    }

    fn send(&mut self, states: &[NotifyState<'_>]) {
        if states.is_empty() {
            return;
        }
        match sd_notify::notify(false, states) {
            Ok(()) => self.send_failed = false,
            Err(e) if !self.send_failed => {
                self.send_failed = true;
                tracing::warn!("cannot notify systemd on NOTIFY_SOCKET: {e}");
            }
            Err(_) => {}
        }
    }
}

fn verdict(plane: &ControlPlane) -> Verdict {
    let health = plane.health();
    // A heartbeat of 0 is the clock's start: that worker never polled.
    let started: Vec<bool> = plane
        .counters()
        .iter()
        .map(|c| c.heartbeat_ns.get() > 0)
        .collect();
    let all_started = started.iter().all(|&s| s);
    let polling = health
        .iter()
        .filter(|h| h.polling && started[h.worker])
        .count();
    let mut status = format!(
        "{polling} of {} workers polling; rules generation {}",
        health.len(),
        plane.shared_rules().generation()
    );
    if let Some((port, link)) = plane.link() {
        status.push_str(&format!("; port {port} {link}"));
    }
    if !all_started {
        status = format!("starting: {status}");
    }
    for h in health.iter().filter(|h| !h.polling && started[h.worker]) {
        status.push_str(&format!(
            "; worker {} stuck (no poll for over {} ms): watchdog pings withheld",
            h.worker,
            super::STUCK_AFTER.as_millis()
        ));
    }
    Verdict {
        all_started,
        all_polling: health.iter().all(|h| h.polling),
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::tests::{plane_for, BASE};
    use crate::control::STUCK_AFTER;

    #[test]
    fn ready_waits_for_every_worker_and_a_stuck_one_is_named() {
        let (_file, plane) = plane_for(BASE, 2);
        let v = verdict(&plane);
        assert!(!v.all_started);
        assert_eq!(
            v.status,
            "starting: 0 of 2 workers polling; rules generation 1"
        );
        let now = plane.clock().now_ns().max(1);
        plane.counters()[0].heartbeat_ns.set(now);
        plane.counters()[1].heartbeat_ns.set(now);
        let v = verdict(&plane);
        assert!(v.all_started && v.all_polling);
        assert_eq!(v.status, "2 of 2 workers polling; rules generation 1");
        std::thread::sleep(STUCK_AFTER + Duration::from_millis(50));
        plane.counters()[0].heartbeat_ns.set(plane.clock().now_ns());
        let v = verdict(&plane);
        assert!(v.all_started && !v.all_polling);
        assert!(
            v.status.starts_with("1 of 2 workers polling") && v.status.contains("worker 1 stuck"),
            "{}",
            v.status
        );
    }
}
