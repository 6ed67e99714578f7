//! The AF_PACKET backend: a port on any Linux network interface, no DPDK needed.
//!
//! [`AfPacketPort::open`] makes one `AF_PACKET`/`SOCK_RAW` socket per queue,
//! bound to the interface for every protocol, each with a TPACKET_V2 RX ring
//! and TX ring in one shared mapping. Queues are poll-mode: `rx_burst` walks the
//! RX ring, `tx_burst` fills the TX ring and kicks it with one non-blocking
//! `sendto`; neither ever waits.
//!
//! Received frames are not copied: `rx_burst` lends the stack each ring frame
//! in place (a [`HeapBuf`] over a `ring::RingFrame`), and the frame goes back
//! to the kernel when the buffer is dropped, normally within the burst. A
//! packet kept longer (handed to another worker, queued for the kernel's
//! relay) is copied first ([`PacketBuf::detach`]), so that the ring does not
//! stall behind it. Against copying each frame out, one connection into
//! `discard` on a veth went 1.10x as fast (five alternating pairs of runs,
//! every pair in lending's favour).
//!
//! With more than one queue the sockets form one fanout group, and queue `i`
//! is the `i`-th member. The group is `PACKET_FANOUT_CBPF` with the classic
//! BPF program of `fanout` (Linux 4.2+): it computes shardnet's RSS model
//! ([`RssModel::software`]) so that each IPv4 packet lands on the queue of the
//! worker that owns its flow, both directions of a flow and all fragments of
//! a datagram together ([`AfPacketPort::fanout_follows_model`]). Where the
//! kernel refuses the program, the port logs it and the group is
//! `PACKET_FANOUT_HASH`: the kernel's own symmetric flow hash (fragments hashed
//! on addresses), and workers steer other workers' packets in software. No
//! `PACKET_FANOUT_FLAG_DEFRAG`: shardnet does not reassemble, and
//! with that flag the kernel would hold lone fragments out of sight or hand over
//! reassembled datagrams longer than the MTU; without it fragments reach the
//! stack and are counted as dropped. No rollover either: it would move a flow to
//! another queue when its queue is busy.
//!
//! Socket options: `PACKET_QDISC_BYPASS` (transmit straight to the driver, as
//! DPDK would), `PACKET_IGNORE_OUTGOING` (Linux 4.20+; without it a queue would
//! receive what the others transmit) and `PACKET_LOSS` (a frame the kernel
//! cannot send is skipped instead of stalling the TX ring).
//!
//! # Kernel offloads
//!
//! Ring frames hold one frame of the interface's MTU (see `ring::Geometry`).
//! With GRO or LRO on, the kernel hands packet sockets merged frames of up to
//! 64 KiB: those arrive truncated and are dropped and counted
//! ([`AfPacketQueueCounters::rx_truncated`]). Frames a local sender left for TX
//! checksum offload arrive with a partial checksum
//! ([`RxChecksum::Partial`](crate::port::RxChecksum::Partial)).
//! By default ([`AfPacketOptions::disable_offloads`]) the port turns GRO, LRO,
//! GSO, TSO and TX checksumming off on its interface ([`disable_offloads`]) and
//! logs what it changed.
//!
//! # Namespaces
//!
//! Sockets belong to the network namespace of the thread that opens the port;
//! the queues can then be used from any thread.

mod fanout;
pub mod ingress;
mod ring;
pub(crate) mod sys;

use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use thiserror::Error;
use tracing::{debug, info, warn};

pub(crate) use self::ring::RingFrame;
use self::ring::{Geometry, Received, Ring, ETH_HLEN, VLAN_HLEN};
use super::heap::{HeapBuf, HEAP_BUF_ROOM};
use super::{Burst, PacketBuf, PortStats, Queue, QueueStats};
use crate::rss::RssModel;

/// Most queues one port can have: the kernel's limit on a fanout group.
pub const MAX_QUEUES: usize = 256;

/// What went wrong setting up an AF_PACKET port or its interface. Each message
/// names the interface and carries the system's error.
#[derive(Debug, Error)]
pub enum AfPacketError {
    /// The name cannot be an interface name.
    #[error("{interface:?} is not a valid interface name (1 to 15 bytes, no '/', ':', whitespace or NUL)")]
    InvalidName {
        /// The name given.
        interface: String,
    },
    /// No interface of that name in this network namespace.
    #[error("interface {interface} not found (in this thread's network namespace)")]
    NotFound {
        /// The name given.
        interface: String,
    },
    /// The interface does not carry Ethernet frames.
    #[error("interface {interface} is not an Ethernet interface (hardware type {hardware_type}); shardnet needs Ethernet framing")]
    NotEthernet {
        /// The interface.
        interface: String,
        /// Its `ARPHRD_*` type.
        hardware_type: u16,
    },
    /// The options make no sense.
    #[error("invalid AF_PACKET options for interface {interface}: {reason}")]
    InvalidOptions {
        /// The interface.
        interface: String,
        /// Which option, and why.
        reason: String,
    },
    /// The process lacks a capability.
    #[error("{what} on interface {interface} needs root ({capability}): {source}")]
    Permission {
        /// The step that was refused, e.g. "opening AF_PACKET socket".
        what: &'static str,
        /// The interface.
        interface: String,
        /// The capability that would allow it.
        capability: &'static str,
        /// EPERM or EACCES.
        source: io::Error,
    },
    /// Another step of the setup failed.
    #[error("{what} on interface {interface} failed: {source}")]
    Setup {
        /// The step, e.g. "mapping the packet rings".
        what: String,
        /// The interface.
        interface: String,
        /// The system's error.
        source: io::Error,
    },
}

impl AfPacketError {
    /// Classify a failed step: permission errors (for steps that need a
    /// `capability`; pass "" for steps that need none) and a vanished interface
    /// get their own sentence, the rest say which step failed.
    fn from_io(
        interface: &str,
        what: &'static str,
        capability: &'static str,
        source: io::Error,
    ) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) if !capability.is_empty() => {
                AfPacketError::Permission {
                    what,
                    interface: interface.to_owned(),
                    capability,
                    source,
                }
            }
            Some(libc::ENODEV | libc::ENXIO) => AfPacketError::NotFound {
                interface: interface.to_owned(),
            },
            _ => AfPacketError::Setup {
                what: what.to_owned(),
                interface: interface.to_owned(),
                source,
            },
        }
    }
}

/// How to open an AF_PACKET port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Frames in each queue's RX ring, at least (rounded up to whole blocks).
    /// Packets arriving while it is full are dropped by the kernel and counted in
    /// [`PortStats::rx_missed`].
    pub rx_ring_frames: usize,
    /// Frames in each queue's TX ring, at least; when it is full, `tx_burst`
    /// refuses what does not fit.
    pub tx_ring_frames: usize,
    /// Receive frames for every MAC address (`PACKET_MR_PROMISC`), for a stack
    /// configured with a MAC other than the interface's. The interface leaves
    /// promiscuous mode when the port is closed.
    pub promiscuous: bool,
    /// Turn GRO, LRO, GSO, TSO and TX checksumming off on the interface at open
    /// (see [`disable_offloads`]).
    pub disable_offloads: bool,
    /// Hand received frames to the stack in place, in the RX ring, instead of
    /// copying each out (`ring::RingFrame`): a buffer given back late stalls
    /// the ring behind it, so a user that keeps frames long should copy.
    pub lend_rx_frames: bool,
}

impl Default for AfPacketOptions {
    /// 4096 RX and 1024 TX frames per queue (10 MiB of rings per queue at a
    /// 1500-byte MTU), not promiscuous, offloads turned off, RX frames lent.
    /// The RX ring's size is a trade-off (`[af_packet] rx_ring_frames`): see
    /// `config::DEFAULT_AF_PACKET_RX_FRAMES`.
    fn default() -> Self {
        AfPacketOptions {
            rx_ring_frames: 4096,
            tx_ring_frames: 1024,
            promiscuous: false,
            disable_offloads: true,
            lend_rx_frames: true,
        }
    }
}

/// What [`disable_offloads`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffloadChanges {
    /// Features that were on and are now off (`ethtool -K` names).
    pub turned_off: Vec<&'static str>,
    /// Features that are on and could not be turned off (fixed by the driver).
    pub stuck_on: Vec<&'static str>,
}

/// Turn off the offloads that change what a packet socket sees or sends: GRO and
/// LRO (merged receive frames larger than the MTU), GSO and TSO (oversized
/// frames from the kernel's own stack) and TX checksumming (partial checksums on
/// frames the kernel sends). Like `ethtool -K <interface> gro off lro off gso
/// off tso off tx off`, through the legacy ethtool ioctls, so the `ethtool`
/// program is not needed. Features the driver lacks are skipped; features it
/// cannot turn off are reported in [`OffloadChanges::stuck_on`] and logged.
///
/// Needs CAP_NET_ADMIN when something has to change. Acts on the interface in
/// the calling thread's network namespace.
pub fn disable_offloads(interface: &str) -> Result<OffloadChanges, AfPacketError> {
    check_name(interface)?;
    let fd = control_socket(interface)?;
    let mut changes = OffloadChanges::default();
    for feature in sys::OFFLOADS_TO_DISABLE {
        let on = match feature.get(&fd, interface) {
            Ok(on) => on,
            // The driver has no such feature (or no ethtool support at all).
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => continue,
            Err(e) => {
                return Err(AfPacketError::from_io(
                    interface,
                    "reading offload settings",
                    "CAP_NET_ADMIN",
                    e,
                ))
            }
        };
        if !on {
            continue;
        }
        match feature.turn_off(&fd, interface) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                return Err(AfPacketError::from_io(
                    interface,
                    "turning offloads off",
                    "CAP_NET_ADMIN",
                    e,
                ));
            }
            Err(e) => {
                debug!(interface, feature = feature.name, error = %e, "turning offload off refused")
            }
        }
        // The kernel may accept a request and keep a fixed feature on: ask again.
        match feature.get(&fd, interface) {
            Ok(false) => {
                info!(
                    interface,
                    feature = feature.name,
                    "turned offload off for AF_PACKET"
                );
                changes.turned_off.push(feature.name);
            }
            _ => {
                warn!(
                    interface,
                    feature = feature.name,
                    "offload is on and cannot be turned off; AF_PACKET may see merged or partially checksummed frames"
                );
                changes.stuck_on.push(feature.name);
            }
        }
    }
    Ok(changes)
}

fn check_name(interface: &str) -> Result<(), AfPacketError> {
    if sys::valid_name(interface) {
        Ok(())
    } else {
        Err(AfPacketError::InvalidName {
            interface: interface.to_owned(),
        })
    }
}

/// A datagram socket for interface ioctls, which need no privilege to read.
fn control_socket(interface: &str) -> Result<OwnedFd, AfPacketError> {
    sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .map_err(|e| AfPacketError::from_io(interface, "opening a control socket", "", e))
}

/// Counters one queue keeps, readable from other threads. Only the owning
/// queue writes them, once per burst, with relaxed load + store (no
/// read-modify-write on the fast path).
#[derive(Debug, Default)]
#[repr(align(64))]
struct SharedCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_truncated: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_oversize: AtomicU64,
    tx_runt: AtomicU64,
    tx_ring_full: AtomicU64,
    tx_kick_errors: AtomicU64,
}

/// Add `n` to a counter only its owner writes.
fn bump(counter: &AtomicU64, n: u64) {
    if n != 0 {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

impl SharedCounters {
    fn snapshot(&self) -> AfPacketQueueCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AfPacketQueueCounters {
            rx_packets: get(&self.rx_packets),
            rx_bytes: get(&self.rx_bytes),
            rx_truncated: get(&self.rx_truncated),
            tx_packets: get(&self.tx_packets),
            tx_bytes: get(&self.tx_bytes),
            tx_oversize: get(&self.tx_oversize),
            tx_runt: get(&self.tx_runt),
            tx_ring_full: get(&self.tx_ring_full),
            tx_kick_errors: get(&self.tx_kick_errors),
        }
    }
}

/// One queue's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfPacketQueueCounters {
    /// Frames handed to the stack.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames dropped because the ring frame cut them short (GRO/LRO merges).
    pub rx_truncated: u64,
    /// Frames put on the TX ring.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames dropped because they exceed the MTU (plus Ethernet header and any
    /// VLAN tag) or the ring frame.
    pub tx_oversize: u64,
    /// Frames dropped because they are shorter than an Ethernet header.
    pub tx_runt: u64,
    /// Frames refused (left in the burst) because the TX ring was full.
    pub tx_ring_full: u64,
    /// Failed `sendto` kicks of the TX ring (the device dropped frames or the
    /// interface is down).
    pub tx_kick_errors: u64,
}

/// An AF_PACKET port: an interface and its queues' sockets.
#[derive(Debug)]
pub struct AfPacketPort {
    interface: String,
    ifindex: i32,
    mac: [u8; 6],
    mtu: u32,
    /// One socket per queue, shared with the queue (statistics are read here).
    sockets: Vec<Arc<OwnedFd>>,
    counters: Vec<Arc<SharedCounters>>,
    /// Kernel statistics so far per socket: (delivered to the ring, dropped).
    /// Reading them resets the kernel's, so they are accumulated here.
    kernel_totals: Arc<[(AtomicU64, AtomicU64)]>,
    /// The queues, until [`AfPacketPort::queues`] takes them.
    queues: Vec<AfPacketQueue>,
    /// Whether the fanout group follows [`RssModel::software`] (see
    /// [`AfPacketPort::fanout_follows_model`]).
    fanout_follows_model: bool,
}

/// Reads an AF_PACKET port's counters from any thread; see
/// [`AfPacketPort::stats_reader`].
#[derive(Clone, Debug)]
pub struct AfPacketStats {
    interface: String,
    sockets: Vec<Arc<OwnedFd>>,
    counters: Vec<Arc<SharedCounters>>,
    kernel_totals: Arc<[(AtomicU64, AtomicU64)]>,
}

impl AfPacketStats {
    /// Port counters: `rx_packets` and `rx_missed` are the kernel's
    /// (`PACKET_STATISTICS`: frames put on the RX rings, frames dropped because
    /// a ring was full); bytes and TX counts are the queues'. `rx_errors` counts
    /// truncated frames, `tx_errors` dropped oversize and runt frames and failed
    /// kicks; `extended` has every queue's counters by name.
    pub fn read(&self) -> PortStats {
        let mut stats = PortStats::default();
        for (socket, (delivered, dropped)) in self.sockets.iter().zip(self.kernel_totals.iter()) {
            match sys::get_option::<libc::tpacket_stats>(
                socket,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
            ) {
                Ok(kernel) => {
                    // tp_packets counts the dropped ones too.
                    let drops = u64::from(kernel.tp_drops);
                    delivered.fetch_add(
                        u64::from(kernel.tp_packets).saturating_sub(drops),
                        Ordering::Relaxed,
                    );
                    dropped.fetch_add(drops, Ordering::Relaxed);
                }
                Err(e) => {
                    debug!(interface = %self.interface, error = %e, "reading PACKET_STATISTICS failed")
                }
            }
            stats.rx_packets += delivered.load(Ordering::Relaxed);
            stats.rx_missed += dropped.load(Ordering::Relaxed);
        }
        for (index, counters) in self.counters.iter().map(|c| c.snapshot()).enumerate() {
            stats.rx_bytes += counters.rx_bytes;
            stats.tx_packets += counters.tx_packets;
            stats.tx_bytes += counters.tx_bytes;
            stats.rx_errors += counters.rx_truncated;
            stats.tx_errors += counters.tx_oversize + counters.tx_runt + counters.tx_kick_errors;
            stats.queues.push(QueueStats {
                rx_packets: counters.rx_packets,
                tx_packets: counters.tx_packets,
            });
            let named = [
                ("rx_packets", counters.rx_packets),
                ("rx_bytes", counters.rx_bytes),
                ("rx_truncated", counters.rx_truncated),
                ("tx_packets", counters.tx_packets),
                ("tx_bytes", counters.tx_bytes),
                ("tx_oversize", counters.tx_oversize),
                ("tx_runt", counters.tx_runt),
                ("tx_ring_full", counters.tx_ring_full),
                ("tx_kick_errors", counters.tx_kick_errors),
            ];
            stats.extended.extend(
                named
                    .iter()
                    .map(|(name, value)| (format!("q{index}_{name}"), *value)),
            );
        }
        stats
    }
}

impl AfPacketPort {
    /// Open `queues` queues on `interface` in the calling thread's network
    /// namespace. Needs CAP_NET_RAW (and CAP_NET_ADMIN to change offloads or
    /// enter promiscuous mode).
    pub fn open(
        interface: &str,
        queues: usize,
        opts: AfPacketOptions,
    ) -> Result<AfPacketPort, AfPacketError> {
        check_name(interface)?;
        let invalid = |reason: String| AfPacketError::InvalidOptions {
            interface: interface.to_owned(),
            reason,
        };
        if !(1..=MAX_QUEUES).contains(&queues) {
            return Err(invalid(format!(
                "{queues} queues requested; a port has 1 to {MAX_QUEUES}"
            )));
        }
        if opts.rx_ring_frames == 0 || opts.tx_ring_frames == 0 {
            return Err(invalid("ring sizes must be at least one frame".to_owned()));
        }

        let control = control_socket(interface)?;
        let lookup = |what, e| AfPacketError::from_io(interface, what, "", e);
        let ifindex = sys::interface_index(&control, interface)
            .map_err(|e| lookup("looking up the interface index", e))?;
        let mtu =
            sys::interface_mtu(&control, interface).map_err(|e| lookup("reading the MTU", e))?;
        let (hardware_type, mac) = sys::interface_hardware_address(&control, interface)
            .map_err(|e| lookup("reading the MAC address", e))?;
        if hardware_type != libc::ARPHRD_ETHER && hardware_type != libc::ARPHRD_LOOPBACK {
            return Err(AfPacketError::NotEthernet {
                interface: interface.to_owned(),
                hardware_type,
            });
        }
        let flags = sys::interface_flags(&control, interface)
            .map_err(|e| lookup("reading the interface flags", e))?;
        if flags & libc::IFF_UP == 0 {
            warn!(
                interface,
                "interface is down: the port will neither receive nor send until it is up"
            );
        }

        if opts.disable_offloads {
            disable_offloads(interface)?;
        }

        let geometry = Geometry::for_mtu(mtu, opts.rx_ring_frames, opts.tx_ring_frames);
        let max_tx_frame =
            (mtu as usize + ETH_HLEN).min(geometry.frame_size - ring::TX_DATA_OFFSET);
        let mut port_queues = Vec::with_capacity(queues);
        let mut fanout_id = None;
        // The program that makes the kernel pick the model's queue, while the
        // kernel takes it; else the kernel's flow hash.
        let mut program = None;
        if queues > 1 {
            match fanout::program(&RssModel::software(queues as u16)) {
                Ok(p) => program = Some(p),
                Err(reason) => warn!(
                    interface,
                    reason, "no fanout program for the RSS model: PACKET_FANOUT_HASH instead"
                ),
            }
        }
        for index in 0..queues {
            let open = || {
                open_queue(
                    interface,
                    ifindex,
                    geometry,
                    max_tx_frame,
                    opts.lend_rx_frames,
                )
            };
            let mut queue = open()?;
            if queues > 1 {
                if let (None, Some(prog)) = (fanout_id, &program) {
                    match join_fanout_by_model(interface, &queue.socket, prog) {
                        Ok(id) => fanout_id = Some(id),
                        Err(error) => {
                            warn!(
                                interface,
                                %error,
                                "the kernel refused the fanout program (PACKET_FANOUT_CBPF needs \
                                 Linux 4.2+): PACKET_FANOUT_HASH instead, and workers steer \
                                 packets of other workers' flows in software"
                            );
                            program = None;
                            // The socket may be in a group without a program:
                            // start over with a fresh one.
                            drop(queue);
                            queue = open()?;
                        }
                    }
                }
                let mode = match program {
                    Some(_) => libc::PACKET_FANOUT_CBPF,
                    None => libc::PACKET_FANOUT_HASH,
                };
                if fanout_id.is_none() || index > 0 {
                    fanout_id = Some(join_fanout(interface, &queue.socket, fanout_id, mode)?);
                }
            }
            port_queues.push(queue);
            debug!(interface, queue = index, ?fanout_id, "AF_PACKET queue open");
        }

        if opts.promiscuous {
            let membership = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            // The membership lives as long as the socket: queue 0's socket, which
            // the port shares, so it ends when both are dropped.
            sys::set_option(
                &port_queues[0].socket,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &membership,
            )
            .map_err(|e| {
                AfPacketError::from_io(interface, "entering promiscuous mode", "CAP_NET_RAW", e)
            })?;
            info!(interface, "promiscuous mode on for the port's lifetime");
        }

        // Until the group was complete, packets went to whichever sockets existed,
        // regardless of flow: discard them so no flow starts on the wrong queue.
        for queue in &mut port_queues {
            let discarded = queue.rx.discard_received();
            if discarded > 0 {
                debug!(
                    interface,
                    discarded, "discarded frames received while the fanout group formed"
                );
            }
        }

        info!(
            interface,
            queues,
            mtu,
            frame_size = geometry.frame_size,
            rx_frames = geometry.rx_frames(),
            tx_frames = geometry.tx_frames(),
            "AF_PACKET port open"
        );
        Ok(AfPacketPort {
            interface: interface.to_owned(),
            ifindex,
            mac,
            mtu,
            sockets: port_queues.iter().map(|q| Arc::clone(&q.socket)).collect(),
            counters: port_queues
                .iter()
                .map(|q| Arc::clone(&q.counters))
                .collect(),
            kernel_totals: (0..queues)
                .map(|_| Default::default())
                .collect::<Vec<_>>()
                .into(),
            queues: port_queues,
            fanout_follows_model: program.is_some(),
        })
    }

    /// Whether the kernel's fanout puts each IPv4 packet on the queue that
    /// [`RssModel::software`] says owns its flow (`PACKET_FANOUT_CBPF` with
    /// the program of `fanout`), so that workers need not steer them; false
    /// with one queue, or where the kernel refused the program and the group
    /// spreads by its own flow hash (`PACKET_FANOUT_HASH`).
    pub fn fanout_follows_model(&self) -> bool {
        self.fanout_follows_model
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface's MAC address (as it was at open).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface's MTU (as it was at open).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The interface's index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Take the queues, in fanout order, to move one to each worker. Later calls
    /// return nothing.
    pub fn queues(&mut self) -> Vec<AfPacketQueue> {
        std::mem::take(&mut self.queues)
    }

    /// Each queue's counters, in queue order (also after the queues were taken).
    pub fn queue_counters(&self) -> Vec<AfPacketQueueCounters> {
        self.counters.iter().map(|c| c.snapshot()).collect()
    }

    /// Port counters; see [`AfPacketStats::read`].
    pub fn stats(&self) -> PortStats {
        self.stats_reader().read()
    }

    /// What reads [`AfPacketPort::stats`] from another thread (the control
    /// thread's HTTP server).
    pub fn stats_reader(&self) -> AfPacketStats {
        AfPacketStats {
            interface: self.interface.clone(),
            sockets: self.sockets.clone(),
            counters: self.counters.clone(),
            kernel_totals: self.kernel_totals.clone(),
        }
    }
}

/// The room of the buffers a queue hands out for frames of at most
/// `max_tx_frame` bytes without a VLAN tag: the standard [`HEAP_BUF_ROOM`]
/// (recycled per thread) when they fit it, else the frame and a tag.
fn tx_buf_room(max_tx_frame: usize) -> usize {
    (max_tx_frame + VLAN_HLEN).max(HEAP_BUF_ROOM)
}

/// The link of `interface` as sysfs reports it (`/sys/class/net/IF/`):
/// `operstate` `up` is up, `unknown` (drivers that do not report it) asks
/// `carrier`, anything else (`down`, `lowerlayerdown`, `dormant`, a missing
/// interface) is down; `speed` in Mbit/s where the driver knows it (`-1`,
/// unreadable or absent: unknown), `duplex` `full`. sysfs shows the network
/// namespace it was mounted in: `ip netns exec` mounts the namespace's own.
pub fn link(interface: &str) -> super::Link {
    link_in(std::path::Path::new("/sys/class/net"), interface)
}

/// [`link`] under another sysfs root (tests).
pub fn link_in(root: &std::path::Path, interface: &str) -> super::Link {
    let dir = root.join(interface);
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let up = match read("operstate").as_deref() {
        Some("up") => true,
        Some("unknown") => read("carrier").as_deref() == Some("1"),
        _ => false,
    };
    let speed_mbps = read("speed")
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|mbps| u32::try_from(mbps).ok())
        .filter(|&mbps| mbps > 0);
    super::Link {
        up,
        speed_mbps: speed_mbps.filter(|_| up),
        full_duplex: read("duplex").as_deref() == Some("full"),
    }
}

/// Make one queue's socket: options, rings, mapping, bound to the interface.
fn open_queue(
    interface: &str,
    ifindex: i32,
    geometry: Geometry,
    max_tx_frame: usize,
    lend_rx_frames: bool,
) -> Result<AfPacketQueue, AfPacketError> {
    let fail = |what, e| AfPacketError::from_io(interface, what, "CAP_NET_RAW", e);
    // Protocol 0: the socket receives nothing until it is bound, after its rings
    // exist.
    let socket = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
        .map_err(|e| fail("opening AF_PACKET socket", e))?;
    let on: libc::c_int = 1;
    let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
    sys::set_option(&socket, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
        .map_err(|e| fail("selecting TPACKET_V2", e))?;
    sys::set_option(&socket, libc::SOL_PACKET, libc::PACKET_LOSS, &on)
        .map_err(|e| fail("setting PACKET_LOSS", e))?;
    if let Err(e) = sys::set_option(&socket, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &on) {
        warn!(interface, error = %e, "PACKET_QDISC_BYPASS unavailable: transmitting through the qdisc");
    }
    if let Err(e) = sys::set_option(&socket, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &on) {
        warn!(
            interface,
            error = %e,
            "PACKET_IGNORE_OUTGOING unavailable (Linux < 4.20): queues will also receive frames sent on the interface"
        );
    }
    sys::set_option(
        &socket,
        libc::SOL_PACKET,
        libc::PACKET_RX_RING,
        &geometry.rx_request(),
    )
    .map_err(|e| fail("creating the RX ring", e))?;
    sys::set_option(
        &socket,
        libc::SOL_PACKET,
        libc::PACKET_TX_RING,
        &geometry.tx_request(),
    )
    .map_err(|e| fail("creating the TX ring", e))?;
    let base = sys::mmap_rings(&socket, geometry.total_bytes())
        .map_err(|e| fail("mapping the packet rings", e))?;
    let mapping = Arc::new(Mapping {
        base: NonNull::new(base).expect("mmap returned a null mapping"),
        len: geometry.total_bytes(),
    });
    // SAFETY: the mapping is total_bytes long: the RX ring's rx_frames frames
    // first, then the TX ring's; page-aligned, so 16-aligned; it lives in the
    // queue beside the rings (and in every frame the RX ring lends) and is
    // unmapped only when all of them are dropped; only the kernel shares it,
    // through the tp_status protocol.
    let (mut rx, tx) = unsafe {
        let tx_base = NonNull::new_unchecked(mapping.base.as_ptr().add(geometry.rx_bytes()));
        (
            Ring::new(mapping.base, geometry.frame_size, geometry.rx_frames()),
            Ring::new(tx_base, geometry.frame_size, geometry.tx_frames()),
        )
    };
    if lend_rx_frames {
        // SAFETY: every lent frame holds an Arc of the mapping, which unmaps
        // only when the last of them (and the queue) is gone.
        unsafe { rx.lend_frames(mapping.clone()) };
    }
    sys::bind_all_protocols(&socket, ifindex)
        .map_err(|e| fail("binding the AF_PACKET socket", e))?;
    Ok(AfPacketQueue {
        socket: Arc::new(socket),
        rx,
        tx,
        _mapping: mapping,
        max_tx_frame,
        kick_pending: false,
        counters: Arc::default(),
    })
}

/// Put `socket` in the port's fanout group. The first socket creates a group
/// with an id the kernel picks unused (`PACKET_FANOUT_FLAG_UNIQUEID`, Linux
/// 4.3+), so two ports never share a group; the others join it by that id.
fn join_fanout(
    interface: &str,
    socket: &OwnedFd,
    id: Option<u16>,
    mode: u32,
) -> Result<u16, AfPacketError> {
    let value = match id {
        None => (mode | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16,
        Some(id) => (mode << 16) | u32::from(id),
    };
    let fail = |e| {
        AfPacketError::from_io(
            interface,
            "joining the PACKET_FANOUT group",
            "CAP_NET_RAW",
            e,
        )
    };
    sys::set_option(
        socket,
        libc::SOL_PACKET,
        libc::PACKET_FANOUT,
        &(value as libc::c_int),
    )
    .map_err(fail)?;
    match id {
        Some(id) => Ok(id),
        None => {
            let value: libc::c_int =
                sys::get_option(socket, libc::SOL_PACKET, libc::PACKET_FANOUT).map_err(fail)?;
            Ok(value as u16)
        }
    }
}

/// Create the port's fanout group with `socket` in `PACKET_FANOUT_CBPF` mode
/// and attach `program` to it (`PACKET_FANOUT_DATA`, Linux 4.2+): the group's
/// id, or the kernel's refusal.
fn join_fanout_by_model(
    interface: &str,
    socket: &OwnedFd,
    program: &[fanout::Insn],
) -> Result<u16, AfPacketError> {
    let id = join_fanout(interface, socket, None, libc::PACKET_FANOUT_CBPF)?;
    let fprog = libc::sock_fprog {
        // At most fanout::MAX_INSNS (4096) instructions.
        len: program.len() as u16,
        // The kernel copies the program during the call and never writes it.
        filter: program.as_ptr().cast_mut(),
    };
    sys::set_option(socket, libc::SOL_PACKET, libc::PACKET_FANOUT_DATA, &fprog).map_err(|e| {
        AfPacketError::from_io(
            interface,
            "attaching the fanout program (PACKET_FANOUT_DATA)",
            "CAP_NET_RAW",
            e,
        )
    })?;
    Ok(id)
}

/// The shared mapping of one socket's rings; unmapped on drop.
#[derive(Debug)]
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is an address range and its munmap; it gives no access to
// the memory itself (the rings and lent frames do, under their own protocol),
// so it may be dropped on, and shared with, any thread.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` allows nothing.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned; the last holder is
        // gone: the queue (with its rings) and every frame its RX ring lent.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// One queue of an AF_PACKET port: a socket with its RX and TX rings. Owned by
/// one worker.
#[derive(Debug)]
pub struct AfPacketQueue {
    socket: Arc<OwnedFd>,
    rx: Ring,
    tx: Ring,
    /// Declared after the rings: dropped after them; unmapped when the last
    /// frame the RX ring lent is dropped too.
    _mapping: Arc<Mapping>,
    /// The longest frame without a VLAN tag the kernel will send: MTU plus
    /// Ethernet header, and no more than a ring frame holds.
    max_tx_frame: usize,
    /// The last kick failed: frames may wait on the ring, kick again next burst.
    kick_pending: bool,
    counters: Arc<SharedCounters>,
}

// SAFETY: the queue owns its mapping (the rings' pointers lead only into it)
// and shares it with the kernel, which synchronises through the atomic
// tp_status words, and with the frames its RX ring lent, each of which owns
// its own frame until it hands it back through the same word; the socket is
// an fd, usable from any thread, and the counters are atomics. Moving the
// queue to another thread is therefore sound. It is not Sync: all ring access needs `&mut self`.
unsafe impl Send for AfPacketQueue {}

impl AfPacketQueue {
    /// This queue's counters.
    pub fn counters(&self) -> AfPacketQueueCounters {
        self.counters.snapshot()
    }

    /// The longest frame `tx_burst` sends (an 802.1Q/802.1ad tagged frame may be
    /// 4 bytes longer).
    pub fn max_tx_frame(&self) -> usize {
        self.max_tx_frame
    }

    /// The limit for this frame: a VLAN-tagged frame may carry 4 more bytes.
    fn tx_limit(&self, frame: &[u8]) -> usize {
        let tagged = frame.len() >= ETH_HLEN
            && matches!([frame[12], frame[13]], [0x81, 0x00] | [0x88, 0xa8]);
        if tagged {
            (self.max_tx_frame + VLAN_HLEN).min(self.tx.tx_room())
        } else {
            self.max_tx_frame
        }
    }
}

impl Queue for AfPacketQueue {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>) -> usize {
        let (mut packets, mut bytes, mut truncated) = (0u64, 0u64, 0u64);
        while !out.is_full() {
            match self.rx.receive() {
                Some(Received::Frame(buf)) => {
                    bytes += buf.len() as u64;
                    packets += 1;
                    out.push(buf);
                }
                Some(Received::Truncated) => truncated += 1,
                None => break,
            }
        }
        bump(&self.counters.rx_packets, packets);
        bump(&self.counters.rx_bytes, bytes);
        bump(&self.counters.rx_truncated, truncated);
        packets as usize
    }

    /// Frames shorter than an Ethernet header or longer than
    /// [`AfPacketQueue::max_tx_frame`] are removed from `pkts`, dropped and
    /// counted; they are neither sent nor refused.
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let (mut sent, mut bytes, mut oversize, mut runt) = (0u64, 0u64, 0u64, 0u64);
        let mut frames = std::mem::take(pkts).into_iter();
        for buf in frames.by_ref() {
            let frame = buf.data();
            if frame.len() < ETH_HLEN {
                runt += 1;
            } else if frame.len() > self.tx_limit(frame) {
                oversize += 1;
            } else if self.tx.stage(frame) {
                sent += 1;
                bytes += frame.len() as u64;
            } else {
                pkts.push(buf);
                break;
            }
        }
        pkts.extend(frames);
        if sent > 0 || self.kick_pending {
            self.kick_pending = false;
            if let Err(e) = sys::kick_tx(&self.socket) {
                debug!(error = %e, "AF_PACKET TX kick failed");
                self.kick_pending = true;
                bump(&self.counters.tx_kick_errors, 1);
            }
        }
        bump(&self.counters.tx_packets, sent);
        bump(&self.counters.tx_bytes, bytes);
        bump(&self.counters.tx_oversize, oversize);
        bump(&self.counters.tx_runt, runt);
        bump(&self.counters.tx_ring_full, pkts.len() as u64);
        sent as usize
    }

    /// A buffer for the largest frame this queue sends (a VLAN-tagged frame
    /// of the interface's MTU): [`HEAP_BUF_ROOM`] up to a 1500-byte MTU, more
    /// for jumbo frames, so a segment of the MSS a jumbo MTU allows is never
    /// refused for want of room.
    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::with_room(tx_buf_room(self.max_tx_frame)))
    }

    /// Sleeps in `ppoll` on the socket: the kernel wakes the worker when it
    /// puts a frame in the RX ring, and meanwhile has the core for its own
    /// half of AF_PACKET (delivering frames into the ring runs in softirq,
    /// usually on this very core).
    fn wait_rx(&mut self, timeout: std::time::Duration) {
        sys::wait_readable(&self.socket, timeout);
    }
}

#[cfg(test)]
mod link_tests {
    use super::link_in;
    use crate::port::Link;

    fn sysfs(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("eth9")).unwrap();
        for (name, text) in files {
            std::fs::write(root.path().join("eth9").join(name), text).unwrap();
        }
        root
    }

    #[test]
    fn sysfs_link_states() {
        let up = sysfs(&[
            ("operstate", "up\n"),
            ("speed", "10000\n"),
            ("duplex", "full\n"),
        ]);
        assert_eq!(
            link_in(up.path(), "eth9"),
            Link {
                up: true,
                speed_mbps: Some(10_000),
                full_duplex: true
            }
        );
        // A veth whose peer is down.
        let lower = sysfs(&[("operstate", "lowerlayerdown\n"), ("duplex", "full\n")]);
        assert!(!link_in(lower.path(), "eth9").up);
        // A driver that reports no operstate nor speed (tun, dummy).
        let unknown = sysfs(&[
            ("operstate", "unknown\n"),
            ("carrier", "1\n"),
            ("speed", "-1\n"),
        ]);
        let link = link_in(unknown.path(), "eth9");
        assert!(link.up && link.speed_mbps.is_none() && !link.full_duplex);
        // Gone: down, not an error.
        assert!(!link_in(up.path(), "eth8").up);
    }
}
