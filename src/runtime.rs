//! Lifecycle: bring the port up, start one pinned worker per core, serve the
//! control loop (signals, rules reload, worker health, the control HTTP
//! endpoint) and stop cleanly.
//!
//! The thread that calls [`run`] becomes the control thread, pinned to
//! `control_core`. It never touches a queue: it publishes rules through
//! [`SharedRules`](crate::rules::SharedRules), sends the rare control
//! message, and reads the workers' counters ([`ControlPlane`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use crossbeam_channel::Receiver;
use serde_json::json;

use crate::app::App;
use crate::config::{Action, Backend, Config, CongestionKind, MacSetting};
#[cfg(feature = "dpdk")]
use crate::config::{KernelConfig, KernelKind};
use crate::control::http::{EndpointSettings, HttpServer};
use crate::control::notify::Notifier;
use crate::control::reload::{ReloadQueue, ReloadThread};
use crate::control::{ControlPlane, HealthWatch, LinkWatch};
use crate::counters::{DropReason, WorkerCounters};
use crate::kernel::journal::{self, NicJournal};
use crate::kernel::netif::{self, DefaultRoute, InterfaceSetup, SysctlGuard};
use crate::kernel::tap::TapDevice;
use crate::kernel::{self, KernelLink, Relay, RelayCounters, RelayThread};
use crate::neighbour::NeighbourMailboxes;
use crate::port::heap::HeapBuf;
use crate::port::{PortStats, Queue};
use crate::rss::{HomePorts, RssModel};
use crate::service::{
    AsyncFactory, Registry, TcpFactory, TcpService, UdpFactory, UdpService, WorkerInfo,
};
use crate::smp::{self, Mesh, Shards};
use crate::stack::{FlowRecord, Interface, Stack, TcpSetup};
use crate::steer;
use crate::tcp::congestion::Algorithm;
use crate::tcp::connection::{Keepalive, TcpConfig};
use crate::tcp::cookie::Secrets;
use crate::tcp::rtt::RtoConfig;
use crate::tcp::table::TableConfig;
use crate::wire::EthernetAddress;
use crate::worker::{self, Clock, ControlMessage, WorkerReport, WorkerSetup};

/// Mbufs each worker's pool keeps in its per-lcore cache.
#[cfg(feature = "dpdk")]
const MEMPOOL_CACHE: u32 = 256;

/// How long the ports stay open after the workers' last transmissions at a
/// graceful stop: the resets of open connections are in the TX rings, and a
/// port closed at once (an AF_PACKET socket, a memif link) would take them
/// with it, leaving the peers to time out instead.
const STOP_LINGER: Duration = Duration::from_millis(50);

/// How often the control loop looks at its signal flags.
const CONTROL_TICK: Duration = Duration::from_millis(20);

/// Flags that the signal handlers set.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    /// SIGINT or SIGTERM arrived: stop.
    pub stop: Arc<AtomicBool>,
    /// SIGHUP arrived: reload the rules.
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// Install handlers for SIGINT, SIGTERM and SIGHUP.
    pub fn install() -> anyhow::Result<Signals> {
        let signals = Signals::default();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, signals.stop.clone())
                .context("cannot install the SIGINT/SIGTERM handler")?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, signals.reload.clone())
            .context("cannot install the SIGHUP handler")?;
        Ok(signals)
    }
}

/// Everything the workers share with the control thread.
struct Shared {
    /// Owns the configuration, the counters and the rules.
    plane: Arc<ControlPlane>,
    mailboxes: NeighbourMailboxes,
    stop_workers: Arc<AtomicBool>,
    control_rx: Vec<Receiver<ControlMessage>>,
    /// TCP parameters, keys and seeds: the same for every worker.
    tcp: TcpSetup,
    /// The application each worker runs, if any.
    app: Option<AppSetup>,
    /// The services rules may name, with the factories of their instances.
    registry: Arc<Registry>,
    /// The configuration the process started with, for the factories.
    config: Arc<Config>,
    /// The program's per-worker state ([`crate::smp`]), and the mesh
    /// between the workers when it declared any.
    shards: Shards,
    mesh: Option<Mesh>,
}

/// What a worker's stack is made of, gathered on the control thread; the
/// stack itself (and its service instances, which need not be `Send`) is
/// built on the worker's own thread by [`StackParts::build`].
struct StackParts {
    id: usize,
    iface: Interface,
    rules: Arc<crate::rules::RuleTable>,
    /// The rules in force, for the services (reloads change them).
    shared_rules: Arc<crate::rules::SharedRules>,
    neighbours: crate::neighbour::NeighbourCache,
    counters: Arc<WorkerCounters>,
    record_flows: bool,
    tcp: TcpSetup,
    kernel_port: bool,
    gateway: Option<Ipv4Addr>,
    registry: Arc<Registry>,
    config: Arc<Config>,
    shards: Shards,
}

impl StackParts {
    /// The worker's stack, with its instance of every service; first the
    /// worker's instances of the program's `Sharded` state, attached to
    /// `smp` (the worker's end of the mesh, if there is one).
    fn build(self, smp: Option<&mut smp::Endpoint>) -> Stack {
        let info = WorkerInfo {
            id: self.id,
            workers: self.config.dataplane.workers.len(),
            config: &self.config,
            counters: &self.counters,
            rules: Some(&self.shared_rules),
        };
        if let Some(endpoint) = smp {
            endpoint.attach(self.shards.build(&info));
        }
        let services = self.registry.build(&info);
        let mut stack = Stack::with_services(
            self.iface,
            self.rules,
            self.neighbours,
            self.counters,
            self.record_flows,
            self.tcp,
            services,
        );
        stack.set_kernel_port(self.kernel_port);
        stack.set_gateway(self.gateway);
        stack
    }
}

/// An application for every worker ([`crate::app`]), as the load generator
/// runs: the stack opens its connections from ports whose replies come home.
pub struct AppSetup {
    /// Makes worker `id`'s instance.
    pub factory: Box<dyn Fn(usize) -> Box<dyn App> + Send + Sync>,
    /// The source ports active opens and UDP flows may use (inclusive).
    pub local_ports: (u16, u16),
}

impl std::fmt::Debug for AppSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSetup")
            .field("local_ports", &self.local_ports)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn new(
        config: Config,
        app: Option<AppSetup>,
        registry: Arc<Registry>,
        shards: Shards,
    ) -> Shared {
        let n = config.dataplane.workers.len();
        let (control_tx, control_rx) = (0..n).map(|_| crossbeam_channel::bounded(4)).unzip();
        let counters: Vec<Arc<WorkerCounters>> = (0..n)
            .map(|_| Arc::new(WorkerCounters::default()))
            .collect();
        let mesh =
            (!shards.is_empty()).then(|| shards.start(counters.clone(), smp::DEFAULT_RING_SIZE));
        let tcp = tcp_setup(&config);
        let config_copy = Arc::new(config.clone());
        Shared {
            plane: Arc::new(ControlPlane::new(
                config,
                counters,
                control_tx,
                Clock::start(),
            )),
            mailboxes: NeighbourMailboxes::new(n),
            stop_workers: Arc::new(AtomicBool::new(false)),
            control_rx,
            tcp,
            app,
            registry,
            config: config_copy,
            shards,
            mesh,
        }
    }

    fn config(&self) -> &Config {
        self.plane.config()
    }

    fn counters(&self) -> &[Arc<WorkerCounters>] {
        self.plane.counters()
    }

    /// The stack's parts and the setup of worker `id`.
    fn worker_parts(&self, id: usize, mac: EthernetAddress) -> (StackParts, WorkerSetup) {
        let iface = Interface {
            mac,
            ip: self.config().interface.address,
            prefix_len: self.config().interface.prefix_len,
        };
        let rules = self.plane.shared_rules();
        let stack = StackParts {
            id,
            iface,
            rules: rules.table(),
            shared_rules: rules.clone(),
            neighbours: self.mailboxes.cache_for(id),
            counters: self.counters()[id].clone(),
            record_flows: self.config().debug.flow_record.is_some(),
            tcp: self.tcp.clone(),
            kernel_port: self.config().kernel.enabled,
            gateway: self.config().interface.gateway,
            registry: self.registry.clone(),
            config: self.config.clone(),
            shards: self.shards.clone(),
        };
        let setup = WorkerSetup {
            id,
            idle: self.config().dataplane.idle,
            stop: self.stop_workers.clone(),
            control: self.control_rx[id].clone(),
            rules: rules.clone(),
            counters: self.counters()[id].clone(),
            clock: self.plane.clock(),
            capture: self.plane.capture_slot(id),
        };
        (stack, setup)
    }
}

fn choose_mac(setting: &MacSetting, port_mac: [u8; 6]) -> EthernetAddress {
    match setting {
        MacSetting::Auto => EthernetAddress(port_mac),
        MacSetting::Fixed(mac) => EthernetAddress(*mac),
    }
}

/// Start the workers of `queues`, each through `launch(worker id, body)`, which
/// must run the body on that worker's pinned thread or lcore. Returns the
/// channel the reports arrive on.
///
/// `links` are the workers' ends of the exception path, one per queue, or
/// empty without one. With more than one worker, `steering` is the model
/// the port spreads packets by (or that software steering enforces): every
/// worker hands packets of other workers' flows to their owners.
fn start_workers<Q: Queue>(
    shared: &Shared,
    queues: Vec<Q>,
    links: Vec<KernelLink<Q::Buf>>,
    steering: Option<(Arc<RssModel>, usize)>,
    mac: EthernetAddress,
    mut launch: impl FnMut(usize, Box<dyn FnOnce() + Send>) -> anyhow::Result<()>,
) -> anyhow::Result<Receiver<WorkerReport>> {
    let (report_tx, report_rx) = crossbeam_channel::unbounded();
    let mut links = links.into_iter();
    let n = queues.len();
    let model = match &steering {
        Some((model, _)) => model.clone(),
        None => Arc::new(RssModel::software(n as u16)),
    };
    // Every worker's active opens (the app's, or the async tasks') come
    // from ports whose replies come home: the app's range, or the
    // configured one.
    let (first, last) = match &shared.app {
        Some(app) => app.local_ports,
        None => shared.config().interface.local_ports,
    };
    let home_ports = Arc::new(HomePorts::new((*model).clone(), first, last));
    let mut steer = match steering {
        Some((model, ring_size)) if n > 1 => steer::links(n, ring_size, model).into_iter(),
        _ => Vec::new().into_iter(),
    };
    for (id, queue) in queues.into_iter().enumerate() {
        let (parts, setup) = shared.worker_parts(id, mac);
        let app = shared.app.as_ref().map(|app| (app.factory)(id));
        let ports = home_ports.picker(id);
        let report_tx = report_tx.clone();
        let mut links = worker::WorkerLinks {
            kernel: links.next(),
            steer: steer.next(),
            smp: shared.mesh.as_ref().map(|mesh| mesh.endpoint(id)),
        };
        launch(
            id,
            Box::new(move || {
                let mut stack = parts.build(links.smp.as_mut());
                stack.set_local_ports(ports);
                if let Some(app) = app {
                    stack.set_app(app);
                }
                let report = worker::run(queue, stack, setup, links);
                let _ = report_tx.send(report);
            }),
        )?;
    }
    Ok(report_rx)
}

/// The steering of `workers` workers on a port whose queues follow no model
/// of shardnet's (AF_PACKET fanout, or a DPDK port without RSS): software
/// steering with the symmetric Toeplitz model, `ring_size` slots per ring.
fn software_steering(
    workers: usize,
    ring_size: usize,
    why: &str,
) -> Option<(Arc<RssModel>, usize)> {
    if workers < 2 {
        return None;
    }
    tracing::info!(
        workers,
        ring_size,
        "software steering: {why}; each worker hands packets of other workers' flows to their \
         owner (symmetric Toeplitz, 128-entry round-robin table)"
    );
    Some((Arc::new(RssModel::software(workers as u16)), ring_size))
}

/// Run the stack described by `config` until `signals.stop` is set.
pub fn run(config: Config, signals: &Signals) -> anyhow::Result<()> {
    run_with_app(config, signals, None)
}

/// [`run`], with the services of `registry` (which `config`'s rules were
/// validated against: [`Config::load_for`] with its catalog).
pub fn run_with_services(
    config: Config,
    signals: &Signals,
    registry: Registry,
) -> anyhow::Result<()> {
    run_inner(config, signals, None, Arc::new(registry), Shards::new())
}

/// [`run`], with `app` running in every worker (the load generator).
pub fn run_with_app(
    config: Config,
    signals: &Signals,
    app: Option<AppSetup>,
) -> anyhow::Result<()> {
    run_inner(
        config,
        signals,
        app,
        Arc::new(Registry::new()),
        Shards::new(),
    )
}

fn run_inner(
    config: Config,
    signals: &Signals,
    app: Option<AppSetup>,
    registry: Arc<Registry>,
    shards: Shards,
) -> anyhow::Result<()> {
    abort_on_panic_outside_tasks();
    let shared = Shared::new(config, app, registry, shards);
    match shared.config().dataplane.backend {
        Backend::AfPacket => run_af_packet(&shared, signals),
        Backend::Dpdk => run_dpdk(&shared, signals),
    }
}

/// A panic in a user's async task ends that task only ([`crate::rt`]: the
/// release profile unwinds for it). Any other panic, in a worker's loop, a
/// callback service or the control thread, still ends the process, as
/// `panic = "abort"` did: a worker that died alone would leave its flows
/// unanswered while the process looked alive.
fn abort_on_panic_outside_tasks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            if crate::rt::current_task().is_none() {
                eprintln!("shardnet: a panic outside of an async task; aborting");
                std::process::abort();
            }
        }));
    });
}

fn pin_current_thread(core: usize, what: &str) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        tracing::warn!("could not pin the {what} to core {core}");
    }
}

fn run_af_packet(shared: &Shared, signals: &Signals) -> anyhow::Result<()> {
    use crate::config::KernelIngress;
    use crate::port::af_packet::{AfPacketOptions, AfPacketPort};
    let config = shared.config();
    let Some(af) = &config.af_packet else {
        bail!("backend \"af_packet\" needs an [af_packet] section");
    };
    let n = config.dataplane.workers.len();
    let options = AfPacketOptions {
        promiscuous: matches!(config.interface.mac, MacSetting::Fixed(_)),
        rx_ring_frames: af.rx_ring_frames,
        ..AfPacketOptions::default()
    };
    let mut port = AfPacketPort::open(&af.interface, n, options)
        .with_context(|| format!("cannot open AF_PACKET port on {}", af.interface))?;
    let mtu = u32::from(config.interface.mtu);
    if port.mtu() < mtu {
        bail!(
            "interface {iface} has MTU {have}, less than [interface] mtu {mtu}: raise it \
             (ip link set dev {iface} mtu {mtu}) or lower [interface] mtu",
            iface = af.interface,
            have = port.mtu(),
        );
    }
    // What shardnet changes on the NIC is written down before it is changed,
    // and a previous run's leftovers are undone first.
    let nic_journal = if config.kernel.enabled || af.kernel_ingress == KernelIngress::Drop {
        Some(claim_nic(&af.interface)?)
    } else {
        None
    };
    // Once the sockets are open (they are the taps the chain runs after), and
    // until the end of this function, after the workers and the exception
    // port have stopped.
    let _ingress_drop = match (af.kernel_ingress, &nic_journal) {
        (KernelIngress::Drop, Some(journal)) => Some(RecordedIngressDrop::install(
            &af.interface,
            journal.clone(),
        )?),
        _ => None,
    };
    let mac = choose_mac(&config.interface.mac, port.mac());
    tracing::info!(
        interface = %af.interface, %mac, workers = n,
        "AF_PACKET port up; {} {}/{} answered by shardnet",
        config.interface.address, config.interface.address, config.interface.prefix_len
    );
    pin_current_thread(config.dataplane.control_core, "control thread");
    let reader = port.stats_reader();
    shared.plane.set_port_stats(Box::new(move || reader.read()));
    let interface = af.interface.clone();
    shared.plane.set_link_reader(
        af.interface.clone(),
        Box::new(move || Ok(crate::port::af_packet::link(&interface))),
    );
    // The exception port before the workers: they get its rings.
    let (kernel, links) = if config.kernel.enabled {
        let journal = nic_journal
            .clone()
            .context("the NIC's journal is claimed")?;
        let (kernel, links) = start_tap_kernel(shared, &af.interface, mac, port.mtu(), journal)?;
        (Some(kernel), links)
    } else {
        (None, Vec::new())
    };
    let control = ControlServices::start(shared)?;
    let mut handles = Vec::new();
    let cores = config.dataplane.workers.clone();
    // By default as deep as the RX ring: a stalled owner then backs up a
    // ring pair as deep as the one it would fill if it received directly.
    let ring_size = config
        .dataplane
        .steer_queue_size
        .unwrap_or(af.rx_ring_frames);
    // With the fanout program, steering is the safety net for what the
    // program does not classify as the model does (ICMP errors).
    let why = if port.fanout_follows_model() {
        "the safety net behind AF_PACKET's fanout program, which already puts each IPv4 \
         packet on its owner's queue"
    } else {
        "AF_PACKET's fanout spreads flows by the kernel's own hash"
    };
    let steering = software_steering(n, ring_size, why);
    let reports = start_workers(shared, port.queues(), links, steering, mac, |id, body| {
        let core = cores[id];
        let handle = std::thread::Builder::new()
            .name(format!("shardnet-w{id}"))
            .spawn(move || {
                pin_current_thread(core, "worker");
                body()
            })
            .context("cannot spawn a worker thread")?;
        handles.push(handle);
        Ok(())
    })?;
    control_loop(shared, signals, &control.reloads.queue());
    control.stop();
    shared.stop_workers.store(true, Relaxed);
    for handle in handles {
        if handle.join().is_err() {
            tracing::error!("a worker thread panicked");
        }
    }
    std::thread::sleep(STOP_LINGER);
    if let Some(kernel) = kernel {
        // Dropping the TAP removes the kernel interface, its address and
        // routes; only then may the kernel see the NIC again.
        let (tap, isolation) = kernel.stop();
        drop(tap);
        drop(isolation);
    }
    let reports: Vec<_> = reports.try_iter().collect();
    finish(shared, reports, port.stats())
}

/// The largest MTU of the kernel interface: a frame (Ethernet header and a
/// VLAN tag included) must fit one 2048-byte buffer.
const KERNEL_MAX_MTU: u32 = (crate::port::heap::HEAP_BUF_ROOM - 18) as u32;

/// A started exception port and the workers' ends of its rings.
type KernelStart<K> = (RunningKernel<K>, Vec<KernelLink<<K as Queue>::Buf>>);

/// The running exception port: its relay, and the NIC settings to restore.
struct RunningKernel<K: Queue> {
    relay: RelayThread<K>,
    name: String,
    isolation: Option<SysctlGuard>,
}

impl<K: Queue> RunningKernel<K> {
    /// Stop the relay. Gives back its device and the NIC's isolation: close
    /// the device first (the kernel interface goes with it), then drop the
    /// isolation (restoring the NIC's settings).
    fn stop(self) -> (Option<K>, Option<SysctlGuard>) {
        let device = self.relay.stop();
        if device.is_none() {
            tracing::error!("the exception port's relay thread panicked");
        }
        if let Some(isolation) = &self.isolation {
            tracing::info!(
                "restoring what shardnet changed on the NIC ({})",
                isolation.summary()
            );
        }
        tracing::info!(interface = %self.name, "exception port stopped");
        (device, self.isolation)
    }
}

/// Give the kernel interface the stack's address, MAC and gateway, and start
/// the relay between it (`device`) and the workers' rings.
fn start_kernel<K: Queue>(
    shared: &Shared,
    device: K,
    mac: EthernetAddress,
    mtu: Option<u32>,
    isolation: Option<SysctlGuard>,
) -> anyhow::Result<KernelStart<K>> {
    let config = shared.config();
    let k = &config.kernel;
    let i = &config.interface;
    // Frames live in single 2048-byte buffers on both sides (heap buffers,
    // mbufs): the kernel must not send longer ones.
    let mtu = mtu.map(|mtu| {
        if mtu > KERNEL_MAX_MTU {
            tracing::warn!(
                interface = %k.name,
                "the NIC's MTU is {mtu}; the kernel interface gets {KERNEL_MAX_MTU}, the most \
                 that shardnet's single-buffer frames carry"
            );
        }
        mtu.min(KERNEL_MAX_MTU)
    });
    let setup = InterfaceSetup {
        name: k.name.clone(),
        mac: mac.0,
        mtu,
        address: i.address,
        prefix_len: i.prefix_len,
        gateway: i.gateway,
    };
    let configured = netif::configure(&setup)?;
    if let (
        Some(wanted),
        DefaultRoute::AlreadyPresent {
            device, gateway, ..
        },
    ) = (i.gateway, &configured.default_route)
    {
        tracing::warn!(
            interface = %k.name,
            "the kernel already has a default route (via {gateway:?} dev {device}); \
             left it as it is instead of one via {wanted}"
        );
    }
    warn_about_ephemeral_ports(config);
    let (links, ends) = kernel::rings(config.dataplane.workers.len(), k.queue_size);
    let counters = Arc::new(RelayCounters::default());
    shared.plane.set_kernel_counters(counters.clone());
    let relay = RelayThread::spawn(
        Relay::new(device, ends, counters),
        config.dataplane.control_core,
    )
    .context("cannot start the exception port's relay thread")?;
    tracing::info!(
        interface = %k.name, kind = %k.kind, %mac, queue_size = k.queue_size,
        "exception port up: the kernel has {}/{} on {}; flows no rule claims go to it",
        i.address, i.prefix_len, k.name
    );
    Ok((
        RunningKernel {
            relay,
            name: k.name.clone(),
            isolation,
        },
        links,
    ))
}

/// The AF_PACKET backend's exception port: a TAP device. The NIC stays the
/// kernel's too (AF_PACKET only taps it), so the kernel is first told not to
/// answer on it with the address it is about to get on the TAP.
fn start_tap_kernel(
    shared: &Shared,
    nic: &str,
    mac: EthernetAddress,
    mtu: u32,
    journal: Arc<NicJournal>,
) -> anyhow::Result<(RunningKernel<TapDevice>, Vec<KernelLink<HeapBuf>>)> {
    let config = shared.config();
    let isolation = isolate_nic(config, nic, journal)?;
    let tap = TapDevice::create(&config.kernel.name)?;
    start_kernel(shared, tap, mac, Some(mtu), Some(isolation))
}

/// Keep the kernel's IP stack off `nic`, which it still sees, while it shares
/// the stack's address through the exception port. The NIC must carry no
/// IPv4 address there: the kernel's addresses move to the exception
/// interface, and an address (or a route) left on the NIC would let the
/// kernel answer on it too. Each change is recorded in `journal` first.
fn isolate_nic(
    config: &Config,
    nic: &str,
    journal: Arc<NicJournal>,
) -> anyhow::Result<SysctlGuard> {
    let addresses = netif::interface_addresses(nic)
        .with_context(|| format!("cannot read the addresses of {nic}"))?;
    if !addresses.is_empty() {
        let list: Vec<String> = addresses.iter().map(Ipv4Addr::to_string).collect();
        bail!(
            "{nic} has IPv4 address {} in the kernel; with [kernel] enabled the kernel's side \
             of the NIC is {} (with {}/{}): remove the address from {nic} (ip -4 addr flush dev {nic})",
            list.join(", "),
            config.kernel.name,
            config.interface.address,
            config.interface.prefix_len
        );
    }
    let guard = netif::isolate_from_kernel(nic, Some(journal))?;
    tracing::info!(
        interface = nic,
        "the kernel's own IP stack is kept off {nic} while shardnet runs: {}",
        guard.summary()
    );
    Ok(guard)
}

/// Claim the journal of `nic` (in this thread's network namespace) before
/// anything on it changes: refused while another shardnet holds it. If a
/// previous run died without its stop, what it left changed is undone first,
/// so that the settings found, and restored at this run's stop, are the
/// originals.
fn claim_nic(nic: &str) -> anyhow::Result<Arc<NicJournal>> {
    let (journal, left) = NicJournal::claim(&journal::state_dir(), nic)?;
    let Some(left) = left else {
        return Ok(journal);
    };
    tracing::warn!(
        interface = nic,
        file = %journal.path().display(),
        "crash recovery: a previous shardnet (pid {}) did not stop cleanly and left {nic} \
         changed ({}); restoring the originals before starting",
        left.pid,
        left.summary()
    );
    let report = journal::restore(&journal);
    for line in &report.done {
        tracing::info!(interface = nic, "crash recovery: {line}");
    }
    if !report.failed.is_empty() {
        bail!(
            "cannot undo what a previous shardnet left changed on {nic} ({}): {}",
            journal.path().display(),
            report.failed.join("; ")
        );
    }
    Ok(journal)
}

/// The `[af_packet] kernel_ingress = "drop"` chain, recorded in the NIC's
/// journal before it is installed and forgotten once it is removed.
struct RecordedIngressDrop {
    chain: Option<crate::port::af_packet::ingress::KernelIngressDrop>,
    journal: Arc<NicJournal>,
}

impl RecordedIngressDrop {
    fn install(interface: &str, journal: Arc<NicJournal>) -> anyhow::Result<Self> {
        use crate::port::af_packet::ingress::{table_name, KernelIngressDrop};
        // A name that makes no table is refused by install, before nft runs.
        if let Some(table) = table_name(interface) {
            journal.record_table(&table).with_context(|| {
                format!(
                    "cannot record the nftables table {table} in {}",
                    journal.path().display()
                )
            })?;
        }
        match KernelIngressDrop::install(interface) {
            Ok(chain) => Ok(RecordedIngressDrop {
                chain: Some(chain),
                journal,
            }),
            Err(e) => {
                // One nft transaction: nothing was installed.
                let _ = journal.forget_table();
                Err(e)
            }
        }
    }
}

impl Drop for RecordedIngressDrop {
    fn drop(&mut self) {
        // A table that stays (logged) stays in the journal too.
        if let Some(Ok(())) = self.chain.take().map(|chain| chain.remove()) {
            if let Err(e) = self.journal.forget_table() {
                tracing::warn!(
                    file = %self.journal.path().display(),
                    "cannot update the journal: {e}"
                );
            }
        }
    }
}

/// The interfaces whose settings a run of `config` may change (and record):
/// the AF_PACKET interface; with DPDK, those of `net_af_packet` vdevs in
/// `eal_args` and the kernel netdevs of the bifurcated (mlx5) PCI devices
/// `-a` names, which the kernel still sees.
pub fn recorded_nics(config: &Config) -> Vec<String> {
    match config.dataplane.backend {
        Backend::AfPacket => config
            .af_packet
            .iter()
            .map(|af| af.interface.clone())
            .collect(),
        Backend::Dpdk => {
            let host = crate::doctor::Host::new("/");
            eal_vdevs(&config.dpdk.eal_args)
                .into_iter()
                .filter(|(device, _)| {
                    device.starts_with("net_af_packet") || device.starts_with("eth_af_packet")
                })
                .filter_map(|(_, iface)| iface)
                .chain(
                    crate::eal::allowed_pci(&config.dpdk.eal_args)
                        .iter()
                        .filter_map(|address| bifurcated_netdev(&host, address)),
                )
                .collect()
        }
    }
}

/// `shardnet restore`: undo what a run of `config` that did not stop
/// cleanly left changed on its NICs (in this thread's network namespace),
/// as its journals record. `say` gets one line per action. Fails if a
/// running shardnet holds one of the NICs, or if something could not be
/// undone (it stays recorded).
pub fn restore_after_crash(config: &Config, say: &mut dyn FnMut(String)) -> anyhow::Result<()> {
    let nics = recorded_nics(config);
    if nics.is_empty() {
        say("nothing to restore: this configuration changes no interface's settings".to_owned());
        return Ok(());
    }
    let dir = journal::state_dir();
    let mut failed = Vec::new();
    for nic in nics {
        let (journal, left) = NicJournal::claim(&dir, &nic)?;
        let Some(left) = left else {
            say(format!("{nic}: nothing to restore"));
            continue;
        };
        say(format!(
            "{nic}: shardnet (pid {}) did not stop cleanly; restoring what it changed ({})",
            left.pid,
            journal.path().display()
        ));
        let report = journal::restore(&journal);
        for line in report.done {
            say(format!("{nic}: {line}"));
        }
        failed.extend(report.failed.into_iter().map(|f| format!("{nic}: {f}")));
    }
    if !failed.is_empty() {
        bail!("{} (kept in the journal)", failed.join("; "));
    }
    Ok(())
}

/// Warn about rules that claim ports the kernel picks for its own outgoing
/// connections: their replies would reach the rule's service or be dropped.
fn warn_about_ephemeral_ports(config: &Config) {
    warn_about_local_ports(config);
    let Ok(range) = netif::local_port_range() else {
        return;
    };
    for rule in &config.rules {
        if rule.action == Action::Kernel {
            continue;
        }
        if rule
            .ports
            .iter()
            .any(|p| p.start() <= range.end() && range.start() <= p.end())
        {
            tracing::warn!(
                rule = %rule.name,
                "rule {:?} claims {} ports {} inside the kernel's ephemeral range {}-{} \
                 (net.ipv4.ip_local_port_range): replies to the kernel's own outgoing \
                 connections from those ports would not reach it; narrow the range or list \
                 the ports in net.ipv4.ip_local_reserved_ports",
                rule.name,
                rule.protocol,
                rule.ports_string(),
                range.start(),
                range.end()
            );
        }
    }
}

/// Warn when the stack's own source ports (`[interface] local_ports`)
/// overlap the kernel's ephemeral range: the kernel shares the address and
/// may pick the same ports for its own connections. (Rules on those ports
/// are warned about by `check`.)
fn warn_about_local_ports(config: &Config) {
    let (first, last) = config.interface.local_ports;
    if let Ok(range) = netif::local_port_range() {
        if *range.start() <= last && first <= *range.end() {
            tracing::warn!(
                "[interface] local_ports {first}-{last} overlaps the kernel's ephemeral range \
                 {}-{} (net.ipv4.ip_local_port_range): the kernel, which shares the address, \
                 may pick the same ports",
                range.start(),
                range.end()
            );
        }
    }
}

#[cfg(feature = "dpdk")]
fn run_dpdk(shared: &Shared, signals: &Signals) -> anyhow::Result<()> {
    use crate::dpdk::{self, DpdkPort, Eal, Mempool, PortOptions, LARGE_DATA_ROOM};
    use crate::port::LARGE_BUFFERS;
    let config = shared.config();
    let n = config.dataplane.workers.len();
    let mut args = dpdk::eal_arguments(
        &config.dpdk.eal_args,
        &config.dataplane.workers,
        config.dataplane.control_core,
    )?;
    let kernel_vdev = if config.kernel.enabled {
        let (name, arg) = kernel_vdev(&config.kernel)?;
        args.push(arg);
        Some(name)
    } else {
        None
    };
    tracing::info!("EAL arguments: {}", args.join(" "));
    let host = crate::doctor::Host::new("/");
    let eal = Eal::init(&args).map_err(|error| match &error {
        dpdk::DpdkError::EalInit { code, .. } => {
            match crate::doctor::eal_init_cause(*code, &config.dpdk.eal_args, &host) {
                Some(cause) => anyhow::anyhow!("DPDK EAL initialisation failed: {cause}"),
                None => error.into(),
            }
        }
        _ => error.into(),
    })?;
    let kernel_port = match kernel_vdev {
        Some(name) => {
            let Some(id) = DpdkPort::id_by_name(name) else {
                bail!("EAL did not create the exception port {name}; see the EAL messages above");
            };
            if Eal::port_count() == 1 {
                bail!(
                    "{}",
                    crate::doctor::no_nic_cause(&config.dpdk.eal_args, &host, true)
                );
            }
            if id == config.dpdk.port {
                bail!(
                    "[dpdk] port {id} is the exception port {name} that shardnet adds; \
                     name the NIC's port id (EAL probed {} ports)",
                    Eal::port_count()
                );
            }
            Some(id)
        }
        None => None,
    };
    // The pools live on the NIC's NUMA node: its DMA and the workers' reads
    // of the frames then stay on one node. Where that node has too few free
    // hugepages, any node, with a warning (a start beats a refusal; `shardnet
    // doctor` names the fix, and warns of worker cores on another node).
    let nic_node = DpdkPort::numa_node(config.dpdk.port);
    let pools = (0..n)
        .map(|id| {
            let name = format!("sn_pool_{id}");
            let make = |socket: i32| {
                Mempool::for_mtu(
                    &name,
                    config.dpdk.mbufs_per_worker,
                    MEMPOOL_CACHE,
                    socket,
                    config.interface.mtu,
                )
            };
            on_nic_node(nic_node, &name, make)
        })
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(
        "mbuf pools: {n} x {} mbufs on {}",
        config.dpdk.mbufs_per_worker,
        match nic_node {
            Some(node) => format!("the NIC's NUMA node {node}"),
            None => "any NUMA node (DPDK knows none for the port)".to_owned(),
        }
    );
    let options = PortOptions {
        promiscuous: matches!(config.interface.mac, MacSetting::Fixed(_)),
        rx_descriptors: config.dpdk.rx_descriptors,
        tx_descriptors: config.dpdk.tx_descriptors,
        mtu: Some(config.interface.mtu),
        tx_checksum_offload: config.dpdk.tx_checksum == crate::config::TxChecksumSetting::Auto,
        ..PortOptions::default()
    };
    if Eal::port_count() == 0 {
        bail!(
            "{}",
            crate::doctor::no_nic_cause(&config.dpdk.eal_args, &host, false)
        );
    }
    let mut port = DpdkPort::open(config.dpdk.port, &pools, options)?;
    tracing::info!(
        port = config.dpdk.port,
        setting = ?config.dpdk.tx_checksum,
        "TX checksum offload: {}",
        crate::port::TxChecksum::for_offloads(port.tx_offloads()).describe()
    );
    if port.tx_offloads().tcp_segmentation {
        // Each large mbuf is out only from a TSO segment's framing to the
        // end of its transmission; when none is free the stack cuts the
        // segment itself. About 4 MiB a worker.
        let large = (0..n)
            .map(|id| {
                let name = format!("sn_large_{id}");
                let make = |socket: i32| {
                    Mempool::with_data_room(&name, LARGE_BUFFERS, 0, socket, LARGE_DATA_ROOM)
                };
                on_nic_node(nic_node, &name, make)
            })
            .collect::<Result<Vec<_>, _>>()?;
        port.set_large_pools(large);
        tracing::info!(
            port = config.dpdk.port,
            "TCP segmentation offload (TSO): on, {n} x {LARGE_BUFFERS} mbufs of 64 KiB"
        );
    }
    let mac = choose_mac(&config.interface.mac, port.mac());
    tracing::info!(
        port = config.dpdk.port, %mac, workers = n,
        "DPDK port up; {}/{} answered by shardnet",
        config.interface.address, config.interface.prefix_len
    );
    let reader = port.stats_reader();
    shared.plane.set_port_stats(Box::new(move || reader.read()));
    shared.plane.set_link_reader(
        config.dpdk.port.to_string(),
        Box::new(move || reader.link().map_err(|e| e.to_string())),
    );
    let (kernel, links) = match kernel_port {
        Some(id) => {
            let (kernel, links) = start_dpdk_kernel(shared, id, &port, mac)?;
            (Some(kernel), links)
        }
        None => (None, Vec::new()),
    };
    // Started from the main lcore, so pinned to control_core with it; and
    // stopped before the port closes (it reads the port's statistics).
    let control = ControlServices::start(shared)?;
    // By default as deep as the RX ring. The rings hold mbufs of the
    // receiving worker's pool: all of them together at most half of it
    // (`check` holds a configured size to the same bound).
    let ring_size = config.dataplane.steer_queue_size.unwrap_or_else(|| {
        let pool_share = config.dpdk.mbufs_per_worker as usize / 2 / n.max(2).saturating_sub(1);
        usize::from(port.rx_descriptors())
            .min(pool_share)
            .max(steer::MIN_STEER_QUEUE_SIZE)
    });
    let steering = match port.rss_model() {
        // The port spreads flows by a model read back from it: the rings
        // carry only what no NIC hash can place (ICMP errors by the flow
        // they quote), and whatever a wrong model would misplace, counted.
        Some(model) if n > 1 => {
            tracing::info!(
                workers = n,
                ring_size,
                "RSS model read back from the port: active opens pick source ports by it, and \
                 packets it places on another worker are steered there"
            );
            Some((Arc::new(model), ring_size))
        }
        _ => software_steering(n, ring_size, "the port does not spread flows with RSS"),
    };
    let reports = start_workers(shared, port.queues(), links, steering, mac, |id, body| {
        dpdk::launch_on_lcore(id as u32 + 1, body)?;
        Ok(())
    })?;
    control_loop(shared, signals, &control.reloads.queue());
    control.stop();
    shared.stop_workers.store(true, Relaxed);
    dpdk::wait_all_lcores();
    std::thread::sleep(STOP_LINGER);
    let kernel = kernel.map(|(running, kernel_port)| {
        let (device, isolation) = running.stop();
        drop(device);
        (kernel_port, isolation)
    });
    let reports: Vec<_> = reports.try_iter().collect();
    let stats = port.stats();
    let result = finish(shared, reports, stats);
    // The NIC first: its TX ring may still hold the kernel's mbufs.
    let closed = port.close();
    if let Some((kernel_port, isolation)) = kernel {
        // Closing a net_tap or virtio-user port removes its kernel interface;
        // only then may the kernel see the NIC again.
        if let Err(error) = kernel_port.close() {
            tracing::warn!("closing the exception port: {error}");
        }
        drop(isolation);
    }
    closed?;
    drop(pools);
    eal.cleanup()?;
    result
}

/// The `--vdev` device name and EAL argument of the exception port.
#[cfg(feature = "dpdk")]
fn kernel_vdev(k: &KernelConfig) -> anyhow::Result<(&'static str, String)> {
    if netif::interface_exists(&k.name) {
        bail!(
            "[kernel] name {:?}: an interface of that name exists already; shardnet creates \
             the kernel interface itself (remove it, or choose another name)",
            k.name
        );
    }
    Ok(match k.kind {
        KernelKind::Tap => (
            KERNEL_TAP_VDEV,
            format!("--vdev={KERNEL_TAP_VDEV},iface={}", k.name),
        ),
        KernelKind::VirtioUser => {
            if !Path::new(VHOST_NET).exists() {
                bail!(
                    "[kernel] kind \"virtio-user\" needs {VHOST_NET} (load the vhost_net \
                     module: modprobe vhost_net), or use kind = \"tap\""
                );
            }
            (
                KERNEL_VIRTIO_VDEV,
                format!(
                    "--vdev={KERNEL_VIRTIO_VDEV},path={VHOST_NET},queues=1,queue_size=1024,iface={}",
                    k.name
                ),
            )
        }
    })
}

/// The DPDK exception port: its relay and port, and the workers' ends.
#[cfg(feature = "dpdk")]
type DpdkKernelStart = (
    (RunningKernel<crate::dpdk::DpdkQueue>, crate::dpdk::DpdkPort),
    Vec<KernelLink<crate::dpdk::Mbuf>>,
);

/// Open the exception port `id` (a net_tap or virtio-user vdev) with its
/// own pool, and start the relay.
#[cfg(feature = "dpdk")]
fn start_dpdk_kernel(
    shared: &Shared,
    id: u16,
    nic: &crate::dpdk::DpdkPort,
    mac: EthernetAddress,
) -> anyhow::Result<DpdkKernelStart> {
    use crate::dpdk::{DpdkPort, Mempool, PortOptions};
    let config = shared.config();
    // The kernel's frames wait in the workers' rings, in the NIC's TX
    // descriptors and in the device's RX descriptors (1024 each at most);
    // the relay is not an lcore, so no per-lcore cache.
    let workers = config.dataplane.workers.len();
    let frames = workers * (config.kernel.queue_size + 1024) + 1024 + 2 * crate::port::BURST;
    let size = u32::try_from((frames + 1).next_power_of_two() - 1).unwrap_or(u32::MAX);
    let pool = Mempool::new("sn_pool_kernel", size, 0, dpdk_sys::SOCKET_ID_ANY)?;
    let options = PortOptions {
        rss: false,
        checksum_offload: false,
        ..PortOptions::default()
    };
    // A NIC that the kernel still sees needs the same care as the AF_PACKET
    // backend: net_af_packet (tests and labs), and a bifurcated mlx5 device,
    // whose kernel netdev stays up beside DPDK.
    let isolation = match (nic.driver(), nic.device_name()) {
        ("net_af_packet", Some(device)) => {
            let Some(iface) = af_packet_vdev_interface(&config.dpdk.eal_args, &device) else {
                bail!(
                    "cannot find the iface= of {device} in eal_args: the kernel still sees that \
                     interface and must be kept off it while it shares the address"
                );
            };
            Some(isolate_nic(config, &iface, claim_nic(&iface)?)?)
        }
        (_, Some(device)) => match bifurcated_netdev(&crate::doctor::Host::new("/"), &device) {
            Some(iface) => Some(isolate_nic(config, &iface, claim_nic(&iface)?)?),
            None => None,
        },
        _ => None,
    };
    let mut port = DpdkPort::open(id, &[pool], options)?;
    let Some(device) = port.queues().pop() else {
        bail!("DPDK port {id} (the exception port) opened without a queue");
    };
    let mtu = nic.mtu().map(u32::from);
    let (kernel, links) = start_kernel(shared, device, mac, mtu, isolation)?;
    Ok(((kernel, port), links))
}

/// The kernel interface of PCI device `address` when DPDK drives it beside
/// the kernel (a Mellanox device: mlx5 is bifurcated, so the kernel's
/// `mlx5_core` netdev stays): the first of `sys/bus/pci/devices/X/net/*`
/// (a physical function has one; switchdev representors sort after it).
/// `None` for a device DPDK owns alone (vfio-pci) or a vdev.
fn bifurcated_netdev(host: &crate::doctor::Host, address: &str) -> Option<String> {
    let device = host.pci_device(address)?;
    if !device.is_mellanox() {
        return None;
    }
    device.netdevs.into_iter().next()
}

/// The `iface=` of vdev `device` (a `net_af_packet` port's name) in
/// `eal_args`, written `--vdev=DEV,...` or as `--vdev` then `DEV,...`.
#[cfg(feature = "dpdk")]
fn af_packet_vdev_interface(eal_args: &[String], device: &str) -> Option<String> {
    eal_vdevs(eal_args)
        .into_iter()
        .find(|(name, _)| name == device)
        .and_then(|(_, iface)| iface)
}

/// Every `--vdev` of `eal_args` (`--vdev=DEV,...` or `--vdev DEV,...`): its
/// device name and its `iface=`, if any.
fn eal_vdevs(eal_args: &[String]) -> Vec<(String, Option<String>)> {
    let mut values = Vec::new();
    let mut args = eal_args.iter();
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--vdev=") {
            values.push(value);
        } else if arg == "--vdev" {
            values.extend(args.next().map(String::as_str));
        }
    }
    values
        .into_iter()
        .map(|value| {
            let mut parts = value.split(',');
            let device = parts.next().unwrap_or_default().to_owned();
            let iface = parts.find_map(|kv| kv.strip_prefix("iface=").map(str::to_owned));
            (device, iface)
        })
        .collect()
}

/// The vdev names of the exception port.
#[cfg(feature = "dpdk")]
const KERNEL_TAP_VDEV: &str = "net_tap_shardnet";
#[cfg(feature = "dpdk")]
const KERNEL_VIRTIO_VDEV: &str = "virtio_user_shardnet";
#[cfg(feature = "dpdk")]
const VHOST_NET: &str = "/dev/vhost-net";

#[cfg(not(feature = "dpdk"))]
fn run_dpdk(_shared: &Shared, _signals: &Signals) -> anyhow::Result<()> {
    bail!("this shardnet was built without the DPDK backend (cargo feature \"dpdk\")")
}

/// The control thread's helpers: the reload thread, and the control HTTP
/// endpoint when `[metrics]` has a listener or an admin socket.
struct ControlServices {
    reloads: ReloadThread,
    http: Option<HttpServer>,
}

impl ControlServices {
    fn start(shared: &Shared) -> anyhow::Result<ControlServices> {
        let config = shared.config();
        let reloads = ReloadThread::start(shared.plane.clone())?;
        let settings = EndpointSettings {
            listen: config.metrics.listen,
            admin_socket: config.metrics.admin_socket.clone(),
            stall_endpoint: config.debug.stall_endpoint,
        };
        let http = if settings.listen.is_some() || settings.admin_socket.is_some() {
            Some(HttpServer::start(
                &settings,
                shared.plane.clone(),
                reloads.queue(),
            )?)
        } else {
            None
        };
        Ok(ControlServices { reloads, http })
    }

    /// Stop the endpoint first (it holds reload handles), then the reloads.
    fn stop(self) {
        if let Some(http) = self.http {
            http.stop();
        }
        self.reloads.stop();
    }
}

/// Wait for a stop signal; queue a reload on SIGHUP; log workers that stop
/// or resume polling; read the port's link every second and log its
/// changes; under systemd, send READY, watchdog pings while every worker
/// polls, STATUS and STOPPING ([`Notifier`]). Nothing here waits for a
/// reload.
fn control_loop(shared: &Shared, signals: &Signals, reloads: &ReloadQueue) {
    let mut health = HealthWatch::default();
    let mut link = LinkWatch::default();
    link.check(&shared.plane);
    let mut notifier = Notifier::from_env();
    while !signals.stop.load(Relaxed) {
        std::thread::sleep(CONTROL_TICK);
        if signals.reload.swap(false, Relaxed) && reloads.request("SIGHUP").is_err() {
            // One is already waiting to run: it reads the file after this
            // signal, so this one is folded into it.
            tracing::info!("SIGHUP: a reload is already waiting to run");
        }
        health.check(&shared.plane);
        link.check(&shared.plane);
        notifier.tick(&shared.plane);
    }
    tracing::info!("stopping");
    notifier.stopping();
}

/// Per-worker counters as JSON, the stop summary and the `[debug]` stats file.
/// `rule_slots` names each rule's hit-counter slot, in configured order.
pub fn counters_json(
    counters: &[Arc<WorkerCounters>],
    rule_slots: &[(String, u8)],
    port: &PortStats,
) -> serde_json::Value {
    let workers: Vec<_> = counters
        .iter()
        .enumerate()
        .map(|(id, c)| {
            let drops: serde_json::Map<_, _> = DropReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), json!(c.drops_of(*r))))
                .collect();
            let rule_hits: serde_json::Map<_, _> = rule_slots
                .iter()
                .map(|(name, slot)| (name.clone(), json!(c.rule_hits[usize::from(*slot)].get())))
                .collect();
            let mut worker = json!({
                "worker": id,
                "drops": drops,
                "rule_hits": rule_hits,
            });
            // Every scalar counter with a JSON key, as counters.rs declares it.
            for counter in WorkerCounters::SCALARS {
                if let Some(key) = counter.json {
                    let mut at = &mut worker;
                    for part in key.split('.') {
                        at = &mut at[part];
                    }
                    *at = json!((counter.read)(c).get());
                }
            }
            worker
        })
        .collect();
    json!({
        "workers": workers,
        "port": {
            "rx_packets": port.rx_packets,
            "tx_packets": port.tx_packets,
            "rx_missed": port.rx_missed,
            "rx_errors": port.rx_errors,
            "tx_errors": port.tx_errors,
            "rx_nombuf": port.rx_nombuf,
        },
    })
}

fn write_flow_record(path: &Path, record: &FlowRecord) -> std::io::Result<()> {
    use std::io::Write;
    let mut flows: Vec<_> = record.iter().collect();
    flows.sort();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (key, packets) in flows {
        writeln!(
            out,
            "{} {}:{} {}:{} {}",
            key.protocol, key.src, key.src_port, key.dst, key.dst_port, packets
        )?;
    }
    out.flush()
}

fn finish(shared: &Shared, reports: Vec<WorkerReport>, port: PortStats) -> anyhow::Result<()> {
    let table = shared.plane.shared_rules().table();
    let rule_slots: Vec<(String, u8)> = table
        .rule_names()
        .iter()
        .cloned()
        .zip(table.slots().iter().copied())
        .collect();
    let mut stats = counters_json(shared.counters(), &rule_slots, &port);
    if let Some(kernel) = shared.plane.kernel_counters() {
        stats["kernel"] = json!({
            "to_kernel": kernel.to_kernel.get(),
            "to_kernel_refused": kernel.to_kernel_refused.get(),
            "from_kernel": kernel.from_kernel.get(),
            "from_kernel_queue_full": kernel.from_kernel_queue_full.get(),
            "from_kernel_dropped": kernel.from_kernel_dropped.get(),
        });
    }
    tracing::info!("final counters: {stats}");
    if reports.len() != shared.counters().len() {
        tracing::error!(
            "{} of {} workers reported back",
            reports.len(),
            shared.counters().len()
        );
    }
    if let Some(prefix) = &shared.config().debug.flow_record {
        let with_suffix = |suffix: String| {
            let mut path = PathBuf::from(prefix);
            path.as_mut_os_string().push(suffix);
            path
        };
        for report in &reports {
            if let Some(record) = &report.flow_record {
                let path = with_suffix(format!(".worker{}.flows", report.id));
                write_flow_record(&path, record)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        let path = with_suffix(".stats.json".into());
        std::fs::write(&path, serde_json::to_vec_pretty(&stats)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A pool made by `make` on the NIC's NUMA node `nic_node`, or, where that
/// node has too few free hugepages (or DPDK knows no node), on any node,
/// with a warning naming the fix.
#[cfg(feature = "dpdk")]
fn on_nic_node(
    nic_node: Option<u32>,
    name: &str,
    make: impl Fn(i32) -> Result<crate::dpdk::Mempool, crate::dpdk::DpdkError>,
) -> Result<crate::dpdk::Mempool, crate::dpdk::DpdkError> {
    match nic_node {
        Some(node) => make(node as i32).or_else(|error| {
            tracing::warn!(
                "mbuf pool {name} does not fit on the NIC's NUMA node {node} ({error}); \
                 allocating it on any node: add hugepages on node {node}"
            );
            make(dpdk_sys::SOCKET_ID_ANY)
        }),
        None => make(dpdk_sys::SOCKET_ID_ANY),
    }
}

/// The TCP setup every worker shares: parameters from the config, one
/// random key for SYN cookies and sequence numbers, one seed for the tables.
fn tcp_setup(config: &Config) -> TcpSetup {
    let t = &config.tcp;
    let ms = |ms: u64| ms.saturating_mul(1_000_000);
    let tcp = TcpConfig {
        mss: t.mss,
        buffer_size: t.buffer_size,
        congestion: match t.congestion {
            CongestionKind::Cubic => Algorithm::Cubic,
            CongestionKind::NewReno => Algorithm::NewReno,
        },
        nagle: t.nagle,
        delayed_ack_ns: ms(t.delayed_ack_ms),
        time_wait_ns: ms(t.time_wait_ms),
        fin_wait2_ns: ms(t.fin_timeout_ms),
        rto: RtoConfig {
            initial_ns: ms(t.rto_initial_ms),
            min_ns: ms(t.rto_min_ms),
            max_ns: ms(t.rto_max_ms),
        },
        max_retransmits: t.max_retransmits,
        max_syn_retransmits: t.max_syn_retransmits,
        keepalive: t.keepalive.map(|k| Keepalive {
            idle_ns: ms(k.idle_s.saturating_mul(1000)),
            interval_ns: ms(k.interval_s.saturating_mul(1000)),
            probes: k.probes,
        }),
        timestamps: t.timestamps,
        sack: t.sack,
        window_scaling: t.window_scaling,
        // Segments of up to 64 KiB leave a connection at once: the NIC
        // cuts them where it does TSO, the stack where not.
        gso_max: crate::tcp::connection::GSO_MAX_BYTES,
        // Not configurable: tail loss probes on, Linux's 500 ms limit on
        // ACKs to refused segments.
        ..TcpConfig::default()
    };
    TcpSetup {
        table: TableConfig {
            tcp,
            max_connections: t.max_connections,
            // The same bound, counted apart: a TIME-WAIT record is small.
            max_time_wait: t.max_connections,
            syn_backlog: t.syn_backlog,
            max_buffers: t.max_buffers,
            challenge_ack_limit: crate::tcp::ratelimit::DEFAULT_CHALLENGE_ACK_LIMIT,
        },
        secret_key: Secrets::random_key(),
        // Injected here, read from /proc once: the stack reads no file.
        timestamp_clock: crate::stack::boot_timestamp_clock(),
        hasher: ahash::RandomState::new(),
    }
}

#[cfg(all(test, feature = "dpdk"))]
mod tests {
    use super::af_packet_vdev_interface;

    #[test]
    fn the_af_packet_vdev_of_the_port_is_found_in_either_form() {
        let args: Vec<String> = [
            "--no-pci",
            "--vdev=net_af_packet0,iface=veth0,qpairs=2",
            "--vdev",
            "net_af_packet1,qpairs=1,iface=veth1",
            "--vdev=net_tap0",
        ]
        .map(String::from)
        .to_vec();
        let find = |d: &str| af_packet_vdev_interface(&args, d);
        assert_eq!(find("net_af_packet0").as_deref(), Some("veth0"));
        assert_eq!(find("net_af_packet1").as_deref(), Some("veth1"));
        assert_eq!(find("net_af_packet2"), None);
        assert_eq!(find("net_tap0"), None);
    }
}

/// A program's own shardnet: the same TOML file as `shardnet run`, plus
/// the services the program registers by name. Rules name them
/// (`service = "app"`) as they name the built-ins, which are registered
/// first, the same way.
///
/// ```no_run
/// use shardnet::service::{TcpIo, TcpService};
///
/// /// Answers every chunk with its length, in decimal.
/// struct Count;
///
/// impl TcpService for Count {
///     fn on_readable(&mut self, io: &mut dyn TcpIo) {
///         let (a, b) = io.recv_data();
///         let n = a.len() + b.len();
///         io.consume(n);
///         io.send(format!("{n}\n").as_bytes());
///     }
/// }
///
/// fn main() -> anyhow::Result<()> {
///     shardnet::Runtime::from_config("shardnet.toml")?
///         .tcp_service("count", |_worker| Count)
///         .run()
/// }
/// ```
///
/// Each worker builds its own instance with the factory, on its own thread
/// (instances need not be `Send`; nothing is shared between workers). A
/// rule naming a service the program did not register is an error at
/// [`Runtime::run`], with its line and column, as `shardnet check` reports
/// any other.
pub struct Runtime {
    path: PathBuf,
    services: Vec<Registration>,
    shards: Shards,
}

/// One service the program registered with a [`Runtime`], in order.
struct Registration {
    name: String,
    tcp: Option<TcpFactory>,
    udp: Option<UdpFactory>,
    main: Option<AsyncFactory>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("Runtime")
            .field("path", &self.path)
            .field("services", &names)
            .finish()
    }
}

impl Runtime {
    /// A runtime for the config file at `path` (read and validated by
    /// [`Runtime::run`], once every service is registered).
    ///
    /// # Errors
    /// `path` is not a readable regular file.
    pub fn from_config(path: impl AsRef<Path>) -> anyhow::Result<Runtime> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        if !meta.is_file() {
            bail!("the config file {} is not a regular file", path.display());
        }
        Ok(Runtime {
            path: path.to_owned(),
            services: Vec::new(),
            shards: Shards::new(),
        })
    }

    fn entry(&mut self, name: &str) -> &mut Registration {
        let at = match self.services.iter().position(|s| s.name == name) {
            Some(at) => at,
            None => {
                self.services.push(Registration {
                    name: name.to_owned(),
                    tcp: None,
                    udp: None,
                    main: None,
                });
                self.services.len() - 1
            }
        };
        &mut self.services[at]
    }

    /// Register the TCP service `name`: `factory` builds each worker's
    /// instance on that worker's thread. A later registration of the same
    /// name replaces this one.
    pub fn tcp_service<S, F>(mut self, name: &str, factory: F) -> Self
    where
        S: TcpService,
        F: Fn(&WorkerInfo<'_>) -> S + Send + Sync + 'static,
    {
        let factory: TcpFactory =
            Arc::new(move |worker: &WorkerInfo<'_>| Box::new(factory(worker)));
        self.entry(name).tcp = Some(factory);
        self
    }

    /// Register the UDP service `name` (a name may have a TCP and a UDP
    /// side, as `echo` has).
    pub fn udp_service<S, F>(mut self, name: &str, factory: F) -> Self
    where
        S: UdpService,
        F: Fn(&WorkerInfo<'_>) -> S + Send + Sync + 'static,
    {
        let factory: UdpFactory =
            Arc::new(move |worker: &WorkerInfo<'_>| Box::new(factory(worker)));
        self.entry(name).udp = Some(factory);
        self
    }

    /// Register the async service `name`: on each worker, at its first
    /// poll round, `main` is called with the worker's [`WorkerInfo`] and
    /// the future it returns is spawned on the worker's executor, once.
    /// It typically binds a [`crate::rt::TcpListener`] on the ports the
    /// rules give `name` and loops on `accept`, spawning a task per
    /// connection ([`crate::rt::spawn_local`]); see
    /// `examples/axum_app.rs`. The future need not be `Send`: it lives
    /// and dies on its worker.
    ///
    /// A name is either async or callback-driven: registering both under
    /// one name is an error at [`Runtime::run`].
    pub fn async_service<F, Fut>(mut self, name: &str, main: F) -> Self
    where
        F: Fn(&WorkerInfo<'_>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let main: AsyncFactory = Arc::new(move |worker: &WorkerInfo<'_>| Box::pin(main(worker)));
        self.entry(name).main = Some(main);
        self
    }

    /// Declare per-worker state that every worker can reach
    /// ([`crate::smp`]): at start, each worker builds its instance with
    /// `factory`, on its own thread (so `S` need not be `Send`), before its
    /// services. Give clones of the returned handle to the service
    /// factories; [`Sharded::invoke_on`](smp::Sharded::invoke_on) runs a
    /// closure on any worker's instance, and
    /// [`Sharded::with_local`](smp::Sharded::with_local) on the caller's.
    ///
    /// ```no_run
    /// # fn main() -> anyhow::Result<()> {
    /// use std::collections::HashMap;
    /// let mut runtime = shardnet::Runtime::from_config("shardnet.toml")?;
    /// let kv = runtime.sharded(|_worker| HashMap::<String, String>::new());
    /// let count = kv.clone();
    /// runtime
    ///     .async_service("kv", move |_worker| {
    ///         let kv = count.clone();
    ///         async move {
    ///             let _ = kv.invoke_on(0, |map| map.len()).await;
    ///         }
    ///     })
    ///     .run()
    /// # }
    /// ```
    pub fn sharded<S, F>(&mut self, factory: F) -> smp::Sharded<S>
    where
        S: 'static,
        F: Fn(&WorkerInfo<'_>) -> S + Send + Sync + 'static,
    {
        self.shards.add(factory)
    }

    /// The registry of the built-ins and the program's services.
    ///
    /// # Errors
    /// A name that is taken (by a built-in), reserved or malformed.
    pub fn registry(&self) -> anyhow::Result<Registry> {
        let mut registry = Registry::new();
        for service in &self.services {
            let name = &service.name;
            let added = match (&service.main, &service.tcp, &service.udp) {
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => bail!(
                    "cannot register the service {name:?}: it is registered both as an async \
                     service and with callbacks"
                ),
                (Some(main), None, None) => {
                    let main = main.clone();
                    registry.add_async(name, move |worker: &WorkerInfo<'_>| main(worker))
                }
                (None, tcp, udp) => registry.add(name, tcp.clone(), udp.clone()),
            };
            added.with_context(|| format!("cannot register the service {name:?}"))?;
        }
        Ok(registry)
    }

    /// Validate the config file against the registered services.
    ///
    /// # Errors
    /// A bad registration, or every problem in the file, with positions
    /// (a rule naming an unregistered service among them).
    pub fn config(&self) -> anyhow::Result<Config> {
        let registry = self.registry()?;
        let config = Config::load_for(
            &self.path,
            &crate::config::CoreSet::online(),
            registry.catalog(),
        )?;
        let unsupported = config.check_supported();
        if !unsupported.is_empty() {
            let lines: Vec<String> = unsupported
                .iter()
                .map(|e| e.display_in(&self.path).to_string())
                .collect();
            bail!("{}", lines.join("\n"));
        }
        Ok(config)
    }

    /// Validate the config, start the workers and serve until SIGINT or
    /// SIGTERM (SIGHUP reloads the rules); then stop gracefully.
    /// Logging goes to stderr, filtered by `SHARDNET_LOG`, unless the
    /// program installed a `tracing` subscriber already.
    ///
    /// # Errors
    /// A bad registration or config (with positions), or a failure to bring
    /// the port, the workers or the exception port up.
    pub fn run(self) -> anyhow::Result<()> {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("SHARDNET_LOG")
                    .unwrap_or_else(|_| "info".into()),
            )
            .try_init();
        let config = self.config()?;
        for warning in &config.warnings {
            tracing::warn!("{}", warning.display_in(&self.path));
        }
        let registry = self.registry()?;
        let signals = Signals::install()?;
        run_inner(config, &signals, None, Arc::new(registry), self.shards)
    }
}

#[cfg(test)]
mod runtime_tests {
    use std::io::Write;

    use super::Runtime;
    use crate::config::ServiceId;
    use crate::service::{TcpEcho, WorkerInfo};

    fn config_file(rules: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        write!(
            file,
            "[dataplane]\nbackend = \"af_packet\"\nworkers = [1]\n\n\
             [af_packet]\ninterface = \"veth-dut\"\n\n[interface]\naddress = \"198.18.0.2/24\"\n\n{rules}"
        )
        .expect("write config");
        file
    }

    #[test]
    fn an_async_service_is_registered_after_the_builtins_and_rules_may_name_it() {
        let file = config_file(
            "[[rule]]\nname = \"web\"\nprotocol = \"tcp\"\nports = [8080, 8081]\nservice = \"app\"\n",
        );
        let runtime = Runtime::from_config(file.path())
            .expect("runtime")
            .async_service("app", |_: &WorkerInfo<'_>| async {});
        let registry = runtime.registry().expect("registry");
        let id = registry.catalog().get("app").expect("app registered");
        assert_eq!(id.index(), ServiceId::HTTP.index() + 1);
        let config = runtime.config().expect("config");
        assert_eq!(
            config.service_ports(crate::config::Protocol::Tcp, "app"),
            vec![8080, 8081]
        );
    }

    #[test]
    fn one_name_cannot_be_both_async_and_callbacks() {
        let file = config_file("");
        let runtime = Runtime::from_config(file.path())
            .expect("runtime")
            .tcp_service("app", |_: &WorkerInfo<'_>| TcpEcho::default())
            .async_service("app", |_: &WorkerInfo<'_>| async {});
        let error = runtime.registry().expect_err("must refuse").to_string();
        assert!(
            error.contains("both as an async service and with callbacks"),
            "{error}"
        );
    }
}
