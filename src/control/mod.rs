//! The control plane: what the control thread owns and serves.
//!
//! [`ControlPlane`] holds the rules in force and their reload, the workers'
//! counters and health, and the port's statistics and link readers. The
//! control thread ([`crate::runtime`]) watches signals, worker health and
//! the link ([`LinkWatch`], every second) with it; the HTTP
//! server of [`http`] (`[metrics] listen`, and the admin Unix socket
//! `[metrics] admin_socket`) serves it, and [`reload`] runs its reloads:
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text format ([`metrics`]) |
//! | `GET /healthz` | `200` while every worker polls and the link is up, `503` naming the stuck ones or the link down |
//! | `GET /rules` | the rules in force, with their hits, as JSON |
//! | `POST /reload` | admin socket only (`403` on TCP): re-read the rules from the config file: `200`, or `400` with the reason (the old rules stay) |
//!
//! Nothing here runs on a worker core or blocks a worker: workers publish
//! counters with relaxed stores and pick new rules up through
//! [`SharedRules`]; the one message channel to them carries only the debug
//! stall request. Under systemd, [`notify`] tells the service manager when
//! the workers are ready, pings its watchdog while they all poll, and says
//! when the process stops. [`status`] is the other end: the `shardnet status` client
//! that reads `/metrics`.

pub mod capture_client;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod reload;
pub mod status;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::kernel::RelayCounters;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use serde_json::json;

use crate::capture::{CaptureSlot, Filter, Session};
use crate::config::{Backend, Config};
use crate::counters::WorkerCounters;
use crate::port::{Link, PortStats};
use crate::rules::{RuleSlots, RuleTable, SharedRules};
use crate::worker::{Clock, ControlMessage};

/// A worker whose last poll round began longer ago than this is stuck:
/// `/healthz` turns 503 and `shardnet_worker_up` 0. A round takes
/// microseconds (a burst of 32 packets, or an adaptive worker's 100 µs nap),
/// so half a second is far beyond any healthy pause, yet well within the
/// second an operator may expect.
pub const STUCK_AFTER: Duration = Duration::from_millis(500);

/// How long `POST /reload` waits for every worker to apply new rules.
const APPLY_WAIT: Duration = Duration::from_secs(1);

/// Reads the port's counters from the control thread.
pub type PortStatsReader = Box<dyn Fn() -> PortStats + Send + Sync>;

/// Reads the port's link from the control thread: `Err` with the reason
/// when the driver cannot tell.
pub type LinkReader = Box<dyn Fn() -> Result<Link, String> + Send + Sync>;

/// How often the control thread reads the port's link.
pub const LINK_POLL: Duration = Duration::from_secs(1);

/// The port's link reader and what it last read.
struct LinkState {
    /// The `port` label: the DPDK port number or the interface's name.
    port: String,
    read: LinkReader,
    last: Mutex<Option<Result<Link, String>>>,
}

/// One worker's health.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkerHealth {
    /// Worker number.
    pub worker: usize,
    /// Whether it polled within [`STUCK_AFTER`].
    pub polling: bool,
    /// Time since its last poll round began (since start if it never
    /// polled).
    pub heartbeat_age: Duration,
}

/// What a successful reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// Rules now in force.
    pub rules: usize,
    /// Their generation (1 = the rules at start).
    pub generation: u64,
    /// Workers that had not applied them after a second (stuck ones); they
    /// apply them when they poll again.
    pub pending_workers: Vec<usize>,
    /// Sections of the file that changed but only take effect at restart.
    pub needs_restart: Vec<&'static str>,
}

/// The control thread's state, shared with its HTTP server.
pub struct ControlPlane {
    config: Config,
    counters: Vec<Arc<WorkerCounters>>,
    rules: Arc<SharedRules>,
    /// Also serializes publishing reloads (SIGHUP and `POST /reload`, which
    /// [`reload::ReloadThread`] runs one at a time anyway).
    slots: Mutex<RuleSlots>,
    control_tx: Vec<Sender<ControlMessage>>,
    clock: Clock,
    started: SystemTime,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    pool_capacity: Option<u64>,
    port_stats: OnceLock<PortStatsReader>,
    kernel: OnceLock<Arc<RelayCounters>>,
    link: OnceLock<LinkState>,
    /// The workers' capture slots, in worker order.
    captures: Vec<Arc<CaptureSlot>>,
    /// Set while a capture runs: one at a time.
    capturing: AtomicBool,
    /// Set by `POST /capture/stop`: the running capture ends.
    capture_stop: AtomicBool,
}

/// A running capture: its sessions, stopped on drop.
#[derive(Debug)]
pub struct CaptureGuard {
    plane: Arc<ControlPlane>,
    sessions: Vec<(Arc<CaptureSlot>, Arc<Session>)>,
}

impl CaptureGuard {
    /// Whether `POST /capture/stop` asked this capture to end.
    pub fn stop_requested(&self) -> bool {
        self.plane.capture_stop.load(Ordering::Acquire)
    }

    /// The sessions of the captured workers, to drain.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().map(|(_, s)| &**s)
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        for (slot, _) in &self.sessions {
            slot.stop();
        }
        self.plane.capturing.store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("config", &self.config.path)
            .field("workers", &self.counters.len())
            .field("rules_generation", &self.rules.generation())
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// The control plane of `config`, whose workers write `counters` and read
    /// `control_tx`'s other ends. Compiles the configured rules.
    pub fn new(
        config: Config,
        counters: Vec<Arc<WorkerCounters>>,
        control_tx: Vec<Sender<ControlMessage>>,
        clock: Clock,
    ) -> ControlPlane {
        let mut slots = RuleSlots::default();
        let assigned = slots.assign(&config.rules, |_| 0);
        let table = RuleTable::compile_with_slots(&config.rules, config.default_action, &assigned);
        let pool_capacity = match config.dataplane.backend {
            Backend::Dpdk => Some(u64::from(config.dpdk.mbufs_per_worker)),
            // AF_PACKET frames live in the kernel's rings: no pool to watch.
            Backend::AfPacket => None,
        };
        let captures = counters.iter().map(|_| Arc::default()).collect();
        ControlPlane {
            config,
            counters,
            rules: Arc::new(SharedRules::new(Arc::new(table))),
            slots: Mutex::new(slots),
            control_tx,
            clock,
            started: SystemTime::now(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            pool_capacity,
            port_stats: OnceLock::new(),
            kernel: OnceLock::new(),
            link: OnceLock::new(),
            captures,
            capturing: AtomicBool::new(false),
            capture_stop: AtomicBool::new(false),
        }
    }

    /// Worker `id`'s capture slot.
    pub fn capture_slot(&self, id: usize) -> Arc<CaptureSlot> {
        self.captures[id].clone()
    }

    /// Ask the running capture, if any, to end (its stream ends within a
    /// drain). Whether one was running.
    pub fn stop_capture(&self) -> bool {
        self.capture_stop.store(true, Ordering::Release);
        self.capturing.load(Ordering::Acquire)
    }

    /// Start a capture on the workers `worker` names (all when `None`);
    /// stopped when the returned guard is dropped. The error is one
    /// sentence: a capture already runs, or no such worker.
    pub fn start_capture(
        self: &Arc<Self>,
        worker: Option<usize>,
        filter: Filter,
    ) -> Result<CaptureGuard, String> {
        if let Some(w) = worker {
            if w >= self.captures.len() {
                return Err(format!(
                    "no worker {w}: this instance has workers 0 to {}",
                    self.captures.len().saturating_sub(1)
                ));
            }
        }
        if self.capturing.swap(true, Ordering::AcqRel) {
            return Err(
                "a capture is already running; one at a time (POST /capture/stop ends it)".into(),
            );
        }
        self.capture_stop.store(false, Ordering::Release);
        let mut sessions = Vec::new();
        for (id, slot) in self.captures.iter().enumerate() {
            if worker.is_none_or(|w| w == id) {
                let session = Arc::new(Session::new(filter.clone()));
                slot.start(session.clone());
                sessions.push((slot.clone(), session));
            }
        }
        Ok(CaptureGuard {
            plane: self.clone(),
            sessions,
        })
    }

    /// The configuration the process started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The workers' counters, in worker order.
    pub fn counters(&self) -> &[Arc<WorkerCounters>] {
        &self.counters
    }

    /// The rules in force, as the workers see them.
    pub fn shared_rules(&self) -> &Arc<SharedRules> {
        &self.rules
    }

    /// The shared clock (worker heartbeats are on it).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Install the port's statistics reader, once the port is open.
    pub fn set_port_stats(&self, reader: PortStatsReader) {
        if self.port_stats.set(reader).is_err() {
            tracing::warn!("the port statistics reader was already set");
        }
    }

    /// The port's counters, once the port is open.
    pub fn port_stats(&self) -> Option<PortStats> {
        self.port_stats.get().map(|read| read())
    }

    /// Install the exception port's relay counters, once it runs.
    pub fn set_kernel_counters(&self, counters: Arc<RelayCounters>) {
        if self.kernel.set(counters).is_err() {
            tracing::warn!("the exception port's counters were already set");
        }
    }

    /// Install the port's link reader, once the port is open, and read the
    /// link once (so `/metrics` and `/healthz` have it from the start);
    /// `port` is the `port` label of the link metrics (the DPDK port number
    /// or the interface's name). Only the control thread calls `read`
    /// (here and in [`ControlPlane::poll_link`]).
    pub fn set_link_reader(&self, port: String, read: LinkReader) {
        let first = read();
        let state = LinkState {
            port,
            read,
            last: Mutex::new(Some(first)),
        };
        if self.link.set(state).is_err() {
            tracing::warn!("the link reader was already set");
        }
    }

    /// Read the link now and keep it for [`ControlPlane::link`]; returns
    /// it (`None` without a reader).
    pub fn poll_link(&self) -> Option<Result<Link, String>> {
        let state = self.link.get()?;
        let now = (state.read)();
        let mut last = state.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = Some(now.clone());
        Some(now)
    }

    /// The port's label and its link as last read, once read; `None` also
    /// while the driver cannot tell (then neither `/healthz` nor the
    /// metrics show a link).
    pub fn link(&self) -> Option<(&str, Link)> {
        let state = self.link.get()?;
        let last = state.last.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(Ok(link)) => Some((state.port.as_str(), link)),
            _ => None,
        }
    }

    /// The `port` label of the link, once a reader is installed.
    pub fn link_port(&self) -> Option<&str> {
        self.link.get().map(|state| state.port.as_str())
    }

    /// The exception port's relay counters, when it runs.
    pub fn kernel_counters(&self) -> Option<&RelayCounters> {
        self.kernel.get().map(|c| &**c)
    }

    /// Buffers in each worker's pool, where the backend has pools.
    pub fn pool_capacity(&self) -> Option<u64> {
        self.pool_capacity
    }

    /// Reloads so far: (applied, refused).
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Relaxed),
            self.reloads_failed.load(Relaxed),
        )
    }

    /// The Unix time the process started at, in seconds.
    pub fn start_time_unix(&self) -> f64 {
        self.started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// Every worker's health now.
    pub fn health(&self) -> Vec<WorkerHealth> {
        let now = self.clock.now_ns();
        self.counters
            .iter()
            .enumerate()
            .map(|(worker, c)| {
                // A worker that has not polled yet counts from the clock's
                // start: the same grace as between two rounds.
                let age = Duration::from_nanos(now.saturating_sub(c.heartbeat_ns.get()));
                WorkerHealth {
                    worker,
                    polling: age < STUCK_AFTER,
                    heartbeat_age: age,
                }
            })
            .collect()
    }

    /// Hits of each rule in force, in configured order, and of the default
    /// action, summed over the workers.
    pub fn rule_hits(&self) -> (Vec<(String, u64)>, u64) {
        let (table, hits, default) = self.hits_in_force();
        (
            table.rule_names().iter().cloned().zip(hits).collect(),
            default,
        )
    }

    /// The table in force with its rules' hits (in configured order) and the
    /// default action's, read together: reloads publish under the same lock,
    /// so the hits always belong to that table's rules.
    fn hits_in_force(&self) -> (Arc<RuleTable>, Vec<u64>, u64) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let table = self.rules.table();
        let hits = table
            .slots()
            .iter()
            .map(|&slot| slots.hits(slot, self.slot_count(slot.into())))
            .collect();
        let default = self.counters.iter().map(|c| c.default_hits.get()).sum();
        (table, hits, default)
    }

    fn slot_count(&self, slot: usize) -> u64 {
        self.counters.iter().map(|c| c.rule_hits[slot].get()).sum()
    }

    /// The rules in force as JSON (`GET /rules`).
    pub fn rules_json(&self) -> serde_json::Value {
        let (table, hits, default_hits) = self.hits_in_force();
        let rules: Vec<_> = table
            .rules()
            .iter()
            .zip(hits)
            .map(|(rule, hits)| {
                json!({
                    "name": rule.name,
                    "protocol": rule.protocol.as_str(),
                    "ports": rule.port_strings(),
                    "service": rule.action.as_str(),
                    "hits": hits,
                })
            })
            .collect();
        json!({
            "generation": self.rules.generation(),
            "config": self.config.path.display().to_string(),
            "rules": rules,
            "default": {
                "action": table.default_action().as_str(),
                "hits": default_hits,
            },
        })
    }

    /// Re-read the config file and put its rules in force, then wait (up to a
    /// second) until every worker applies them. A file that does not validate
    /// changes nothing; the error lists every problem as `FILE:LINE:COL`.
    /// Other sections are not applied; those that changed are named. The
    /// outcome is logged here, naming `trigger` (`"SIGHUP"`, `"HTTP"`).
    pub fn reload(&self, trigger: &str) -> Result<Reloaded, String> {
        let outcome = self.reload_inner();
        match &outcome {
            Ok(done) => {
                tracing::info!(
                    "rules reloaded on {trigger}: {} rule(s) in force, generation {}",
                    done.rules,
                    done.generation
                );
                if !done.pending_workers.is_empty() {
                    tracing::warn!(
                        "workers {:?} have not applied the new rules yet",
                        done.pending_workers
                    );
                }
                if !done.needs_restart.is_empty() {
                    tracing::warn!(
                        "changed sections only apply at restart: {}",
                        done.needs_restart.join(", ")
                    );
                }
            }
            Err(e) => tracing::error!("rules not reloaded on {trigger}, the old ones stay: {e}"),
        }
        outcome
    }

    fn reload_inner(&self) -> Result<Reloaded, String> {
        // Read before taking the lock: `/rules` and `/metrics` take it too,
        // and must not wait for a slow file.
        let config = match Config::load_for(
            &self.config.path,
            &crate::config::CoreSet::online(),
            &self.config.services,
        ) {
            Ok(config) => config,
            Err(e) => {
                self.reloads_failed.fetch_add(1, Relaxed);
                return Err(e.to_string());
            }
        };
        // Poisoned only by a panic, which aborts a release build.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let assigned = slots.assign(&config.rules, |slot| self.slot_count(slot));
        let table = RuleTable::compile_with_slots(&config.rules, config.default_action, &assigned);
        let generation = self.rules.publish(Arc::new(table));
        drop(slots);
        self.reloads_ok.fetch_add(1, Relaxed);
        let deadline = Instant::now() + APPLY_WAIT;
        let pending = loop {
            let pending: Vec<usize> = (0..self.counters.len())
                .filter(|&w| self.counters[w].rules_generation.get() < generation)
                .collect();
            if pending.is_empty() || Instant::now() >= deadline {
                break pending;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        Ok(Reloaded {
            rules: config.rules.len(),
            generation,
            pending_workers: pending,
            needs_restart: self.changed_sections(&config),
        })
    }

    /// Sections other than the rules that differ between `new` and the file
    /// the process started with.
    fn changed_sections(&self, new: &Config) -> Vec<&'static str> {
        let old = &self.config;
        let mut out = Vec::new();
        let mut check = |changed: bool, name: &'static str| {
            if changed {
                out.push(name);
            }
        };
        check(old.dataplane != new.dataplane, "dataplane");
        check(old.dpdk != new.dpdk, "dpdk");
        check(old.af_packet != new.af_packet, "af_packet");
        check(old.interface != new.interface, "interface");
        check(old.kernel != new.kernel, "kernel");
        check(old.metrics != new.metrics, "metrics");
        check(old.tcp != new.tcp, "tcp");
        check(old.http != new.http, "http");
        check(old.debug != new.debug, "debug");
        out
    }

    /// Make `worker` stop polling for `how_long` (`[debug] stall_endpoint`).
    pub fn stall(&self, worker: usize, how_long: Duration) -> Result<(), String> {
        let tx = self
            .control_tx
            .get(worker)
            .ok_or_else(|| format!("no worker {worker} (there are {})", self.counters.len()))?;
        tx.try_send(ControlMessage::Stall(how_long))
            .map_err(|e| format!("worker {worker} does not take messages: {e}"))
    }
}

/// Logs workers that stop or resume polling. The control thread calls
/// [`HealthWatch::check`] every tick.
#[derive(Debug, Default)]
pub struct HealthWatch {
    stuck: Vec<bool>,
}

impl HealthWatch {
    /// Compare with the last check and log the changes.
    pub fn check(&mut self, plane: &ControlPlane) {
        let health = plane.health();
        self.stuck.resize(health.len(), false);
        for h in health {
            let stuck = !h.polling;
            if stuck != self.stuck[h.worker] {
                if stuck {
                    tracing::error!(
                        worker = h.worker,
                        "worker {} has not polled for {:?}",
                        h.worker,
                        h.heartbeat_age
                    );
                } else {
                    tracing::warn!(worker = h.worker, "worker {} polls again", h.worker);
                }
                self.stuck[h.worker] = stuck;
            }
        }
    }
}

/// Reads the port's link every [`LINK_POLL`] and logs it at the first read
/// and at every change (`link up 10 Gbit/s full-duplex`, `link down`). The
/// control thread calls [`LinkWatch::check`] every tick.
#[derive(Debug, Default)]
pub struct LinkWatch {
    next: Option<Instant>,
    /// What was logged last.
    logged: Option<Result<Link, String>>,
}

impl LinkWatch {
    /// Read the link if a [`LINK_POLL`] has passed since the last read.
    pub fn check(&mut self, plane: &ControlPlane) {
        let now = Instant::now();
        if self.next.is_some_and(|next| now < next) {
            return;
        }
        self.next = Some(now + LINK_POLL);
        let Some(now) = plane.poll_link() else {
            return;
        };
        if self.logged.as_ref() == Some(&now) {
            return;
        }
        let first = self.logged.replace(now.clone()).is_none();
        let port = plane.link_port().unwrap_or_default();
        match now {
            Ok(link) if link.up && first => tracing::info!(port = %port, "{link}"),
            Ok(link) if link.up => tracing::warn!(port = %port, "{link}"),
            Ok(link) => tracing::error!(
                port = %port,
                "{link}: /healthz answers 503 until it comes up"
            ),
            Err(e) => tracing::warn!(
                port = %port,
                "the port does not report its link ({e}): neither /healthz nor the metrics show it"
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;

    pub(crate) const BASE: &str = r#"
[dataplane]
backend = "af_packet"
workers = [0]
control_core = 0

[af_packet]
interface = "veth-test"

[interface]
address = "198.18.0.2/24"

[[rule]]
name = "echo"
protocol = "udp"
ports = "7"
service = "echo"

[[rule]]
name = "web"
protocol = "tcp"
ports = [80]
service = "http"

[default]
action = "drop"
"#;

    pub(crate) fn plane_for(text: &str, workers: usize) -> (tempfile::NamedTempFile, ControlPlane) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        let config = Config::load(file.path()).unwrap();
        let counters = (0..workers).map(|_| Arc::default()).collect();
        let (tx, _rx): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| crossbeam_channel::bounded(1)).unzip();
        let plane = ControlPlane::new(config, counters, tx, Clock::start());
        (file, plane)
    }

    #[test]
    fn a_good_reload_publishes_and_a_bad_one_changes_nothing() {
        let (file, plane) = plane_for(BASE, 0);
        assert_eq!(plane.shared_rules().generation(), 1);
        let moved = BASE.replace("service = \"echo\"", "service = \"discard\"");
        std::fs::write(file.path(), &moved).unwrap();
        let done = plane.reload("test").unwrap();
        assert_eq!((done.rules, done.generation), (2, 2));
        assert!(done.pending_workers.is_empty() && done.needs_restart.is_empty());
        let rules = plane.rules_json();
        assert_eq!(rules["generation"], 2);
        assert_eq!(rules["rules"][0]["service"], "discard");
        assert_eq!(rules["rules"][1]["ports"], serde_json::json!(["80"]));
        assert_eq!(rules["default"]["action"], "drop");

        // A broken file: the reason names the place, and nothing changes.
        std::fs::write(file.path(), moved.replace("ports = [80]", "ports = [80")).unwrap();
        let error = plane.reload("test").unwrap_err();
        let path = file.path().display().to_string();
        assert!(error.contains(&format!("{path}:")), "{error}");
        assert_eq!(plane.shared_rules().generation(), 2);
        assert_eq!(plane.rules_json()["rules"][0]["service"], "discard");
        assert_eq!(plane.reload_counts(), (1, 1));

        // Sections other than the rules are named, not applied.
        let tcp = format!("{moved}\n[tcp]\nmss = 1200\n");
        std::fs::write(file.path(), tcp).unwrap();
        let done = plane.reload("test").unwrap();
        assert_eq!(done.needs_restart, ["tcp"]);
        assert_ne!(plane.config().tcp.mss, 1200);
    }

    #[test]
    fn a_reload_with_a_rule_on_port_0_is_refused_with_its_place() {
        let (file, plane) = plane_for(BASE, 0);
        // BASE's echo rule: `ports = "7"` on line 16, the value at column 9.
        std::fs::write(
            file.path(),
            BASE.replace("ports = \"7\"", "ports = \"0-7\""),
        )
        .unwrap();
        let error = plane.reload("test").unwrap_err();
        let path = file.path().display().to_string();
        assert!(
            error.contains(&format!("{path}:16:9: port 0 is reserved")),
            "{error}"
        );
        assert_eq!(plane.shared_rules().generation(), 1);
        assert_eq!(
            plane.rules_json()["rules"][0]["ports"],
            serde_json::json!(["7"])
        );
    }

    #[test]
    fn hits_follow_rule_names_across_reloads() {
        let (file, plane) = plane_for(BASE, 2);
        let table = plane.shared_rules().table();
        let web = table.slots()[1];
        plane.counters()[0].rule_hits[usize::from(web)].add(5);
        plane.counters()[1].rule_hits[usize::from(web)].add(2);
        plane.counters()[1].default_hits.add(3);
        // "web" moves first; a new rule comes in behind it.
        let reordered = BASE.replace(
            "[[rule]]\nname = \"echo\"",
            "[[rule]]\nname = \"dns\"\nprotocol = \"udp\"\nports = \"53\"\nservice = \"drop\"\n\n[[rule]]\nname = \"echo\"",
        );
        std::fs::write(file.path(), reordered).unwrap();
        // Nobody polls here: the reload waits its second, then names them.
        let done = plane.reload("test").unwrap();
        assert_eq!(done.pending_workers, [0, 1]);
        let (hits, default) = plane.rule_hits();
        assert_eq!(
            hits,
            [
                ("dns".to_owned(), 0),
                ("echo".to_owned(), 0),
                ("web".to_owned(), 7)
            ]
        );
        assert_eq!(default, 3);
    }

    #[test]
    fn the_link_is_read_by_poll_and_kept() {
        let (_file, plane) = plane_for(BASE, 1);
        assert_eq!(plane.poll_link(), None);
        assert_eq!(plane.link(), None);
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let reads = up.clone();
        plane.set_link_reader(
            "veth-test".into(),
            Box::new(move || {
                Ok(Link {
                    up: reads.load(Relaxed),
                    ..Link::VIRTUAL
                })
            }),
        );
        // Read once when installed: the metrics have it from the start.
        assert_eq!(plane.link(), Some(("veth-test", Link::VIRTUAL)));
        let mut watch = LinkWatch::default();
        watch.check(&plane);
        assert_eq!(watch.logged, Some(Ok(Link::VIRTUAL)));
        up.store(false, Relaxed);
        // Within the second: not read again.
        watch.check(&plane);
        assert!(plane.link().unwrap().1.up);
        assert!(!plane.poll_link().unwrap().unwrap().up);
        assert!(!plane.link().unwrap().1.up);
    }

    #[test]
    fn a_worker_that_stops_beating_is_not_polling() {
        let (_file, plane) = plane_for(BASE, 3);
        // Just started: no worker has polled yet, none is late yet.
        assert!(plane.health().iter().all(|h| h.polling));
        let now = plane.clock().now_ns();
        plane.counters()[0].heartbeat_ns.set(now);
        plane.counters()[1].heartbeat_ns.set(now);
        std::thread::sleep(STUCK_AFTER + Duration::from_millis(50));
        plane.counters()[0].heartbeat_ns.set(plane.clock().now_ns());
        let health = plane.health();
        assert!(health[0].polling);
        assert!(!health[1].polling);
        assert!(health[1].heartbeat_age >= STUCK_AFTER);
        assert!(!health[2].polling, "never polled, and the grace is over");
    }
}
