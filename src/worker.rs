//! The per-core poll loop.
//!
//! One worker per configured core, pinned, owning one RX/TX queue pair, one
//! [`Stack`] and one [`WorkerCounters`]. Run to completion, as in DPDK's l3fwd:
//!
//! ```text
//! while !stop {
//!     every 64 rounds: new rules, control messages, neighbour updates, pool gauge
//!     up to 256 cross-core messages (crate::smp) other threads sent
//!     TCP and app timers; the async tasks that are ready -> TX burst
//!     if the TX drain timer expired: flush the TX burst
//!     up to a burst of the kernel's frames -> TX burst
//!     up to a burst of frames other workers handed over -> stack.process
//!     a steering ring to another worker without room for a burst: skip RX
//!     rx burst (32); for each frame: another worker's flow -> its steering ring,
//!         else stack.process -> (its egress) TX burst | kernel ring | consumed
//! }
//! ```
//!
//! With software steering ([`crate::steer`]), a worker whose ring towards
//! some owner cannot take a whole burst does not pull RX that round
//! (backpressure, counted in `steer_backpressure_rounds`): what arrives
//! meanwhile waits in the port's RX ring, or is dropped and counted there,
//! rather than pulled only to be dropped. It still drains the rings into
//! it every round, which is why two workers never wait on each other.
//!
//! With an exception port ([`crate::kernel`]), frames for the kernel go into a
//! bounded ring towards the relay thread (dropped and counted as
//! `kernel_queue_full` when it is full), and the kernel's frames come from
//! another, at most a burst per round, so the kernel's traffic can never take
//! more than half of a busy worker's TX bursts.
//!
//! Replies collect in a TX burst that is sent when it is full, when the RX
//! queue is drained (a short or empty RX burst: nothing more to batch with,
//! so a lone reply never waits), or when the drain timer (100 µs) expires
//! under sustained load; whatever the queue refuses is freed and counted. No
//! lock, no allocation and no system call per packet (the adaptive idle mode
//! sleeps only after a run of empty polls).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::capture::{CaptureSlot, Direction};
use crate::config::IdleMode;
use crate::counters::{DropReason, WorkerCounters};
use crate::kernel::KernelLink;
use crate::port::{Burst, PacketBuf, Queue, TxChecksum, BURST};
use crate::rules::SharedRules;
use crate::smp;
use crate::stack::{Egress, FlowRecord, Stack};
use crate::steer::SteerLinks;

/// How long a partial TX burst may wait before it is sent (l3fwd's
/// `BURST_TX_DRAIN_US`).
pub const TX_DRAIN_NS: u64 = 100_000;

/// Empty polls in a row after which an adaptive worker starts to sleep.
pub const ADAPTIVE_EMPTY_POLLS: u32 = 1_000;

/// How long an adaptive worker sleeps per idle round.
pub const ADAPTIVE_SLEEP: Duration = Duration::from_micros(100);

/// Poll rounds between looks at the control channel and the neighbour mailbox.
const HOUSEKEEPING_EVERY: u32 = 64;

/// How often the pinned kernel flows are swept for expired ones.
const KERNEL_FLOWS_SWEEP_NS: u64 = 1_000_000_000;

/// A monotonic clock in nanoseconds, shared by all workers of a process.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        Clock(Instant::now())
    }

    /// Nanoseconds since the clock started.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// A message from the control thread to a worker.
#[derive(Debug)]
pub enum ControlMessage {
    /// Stop polling for this long (`[debug] stall_endpoint`: how tests make
    /// a worker stuck on purpose).
    Stall(Duration),
}

/// What a worker needs besides its queue and stack.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Worker number (queue pair number).
    pub id: usize,
    /// Poll or back off when idle.
    pub idle: IdleMode,
    /// Set by the control thread to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// Control messages.
    pub control: Receiver<ControlMessage>,
    /// The rules in force; new flows follow a new generation at once.
    pub rules: Arc<SharedRules>,
    /// This worker's counters.
    pub counters: Arc<WorkerCounters>,
    /// The shared clock.
    pub clock: Clock,
    /// This worker's capture slot (`shardnet capture`).
    pub capture: Arc<CaptureSlot>,
}

/// What a worker hands back when it stops.
#[derive(Debug)]
pub struct WorkerReport {
    /// Worker number.
    pub id: usize,
    /// Flows seen, when recording was on.
    pub flow_record: Option<FlowRecord>,
}

/// Send the TX burst; free and count what the queue refuses.
#[inline]
fn flush<Q: Queue>(
    queue: &mut Q,
    tx: &mut Burst<Q::Buf>,
    counters: &WorkerCounters,
    capture: &CaptureSlot,
) {
    if tx.is_empty() {
        return;
    }
    if capture.is_on() {
        capture.tap(tx.iter().map(PacketBuf::data), Direction::Tx, counters);
    }
    let bytes: usize = tx.iter().map(PacketBuf::len).sum();
    let sent = queue.tx_burst(tx);
    let refused_bytes: usize = tx.iter().map(PacketBuf::len).sum();
    counters.tx_packets.add(sent as u64);
    counters.tx_bytes.add((bytes - refused_bytes) as u64);
    if !tx.is_empty() {
        counters.drops[DropReason::TxFull as usize].add(tx.len() as u64);
        tx.clear();
    }
}

/// The worker's output as the stack sees it: buffers from the queue's pool,
/// frames into the TX burst (sent when full), frames for the kernel into the
/// ring towards the relay thread.
struct TxPath<'a, Q: Queue> {
    queue: &'a mut Q,
    tx: &'a mut Burst<Q::Buf>,
    tx_since: &'a mut u64,
    /// The exception path; without one, frames for the kernel are dropped
    /// and counted as `no_kernel_port`.
    kernel: Option<&'a KernelLink<Q::Buf>>,
    counters: &'a WorkerCounters,
    capture: &'a CaptureSlot,
    now: u64,
    /// The queue's checksum offloads, decided once at start.
    tx_checksum: TxChecksum,
}

impl<Q: Queue> Egress for TxPath<'_, Q> {
    type Buf = Q::Buf;

    #[inline]
    fn alloc(&mut self) -> Option<Q::Buf> {
        self.queue.alloc()
    }

    #[inline]
    fn send(&mut self, frame: Q::Buf) {
        if self.tx.is_full() {
            flush(self.queue, self.tx, self.counters, self.capture);
        }
        if self.tx.is_empty() {
            *self.tx_since = self.now;
        }
        self.tx.push(frame);
    }

    #[inline]
    fn tx_checksum(&self) -> TxChecksum {
        self.tx_checksum
    }

    #[inline]
    fn alloc_large(&mut self) -> Option<Q::Buf> {
        self.queue.alloc_large()
    }

    #[inline]
    fn to_kernel(&mut self, frame: Q::Buf) {
        match self.kernel {
            Some(link) => match link.push(frame.detach()) {
                Ok(()) => self.counters.to_kernel.inc(),
                Err(_dropped) => self.counters.count_drop(DropReason::KernelQueueFull),
            },
            None => self.counters.count_drop(DropReason::NoKernelPort),
        }
    }
}

/// A worker's links to the other threads of the data plane.
#[derive(Debug)]
pub struct WorkerLinks<B> {
    /// This worker's end of the exception path; without one, frames for the
    /// kernel are dropped and counted as `no_kernel_port`.
    pub kernel: Option<KernelLink<B>>,
    /// This worker's ends of the steering rings, when packets may arrive at
    /// a worker that does not own their flow ([`crate::steer`]).
    pub steer: Option<SteerLinks<B>>,
    /// This worker's end of the cross-core messages ([`crate::smp`]),
    /// attached on the worker's thread before [`run`] (by the runtime,
    /// when the program declared `Sharded` state). Dropped when the loop
    /// stops, which resolves what is still queued for it as stopped.
    pub smp: Option<smp::Endpoint>,
}

impl<B> Default for WorkerLinks<B> {
    fn default() -> Self {
        WorkerLinks {
            kernel: None,
            steer: None,
            smp: None,
        }
    }
}

/// Run the poll loop until `setup.stop` is set. Returns the worker's report.
pub fn run<Q: Queue>(
    mut queue: Q,
    mut stack: Stack,
    setup: WorkerSetup,
    links: WorkerLinks<Q::Buf>,
) -> WorkerReport {
    let WorkerLinks {
        kernel,
        mut steer,
        smp,
    } = links;
    let counters = &*setup.counters;
    let capture = &*setup.capture;
    let mut rx: Burst<Q::Buf> = Burst::new();
    let mut tx: Burst<Q::Buf> = Burst::new();
    let mut tx_since = 0u64;
    // Per queue, once: every frame built below reads it from the TxPath.
    let tx_checksum = TxChecksum::for_offloads(queue.tx_offloads());
    let mut empty_polls = 0u32;
    // The queue's own drops of chained packets, counted as they grow.
    let mut multi_segment_drops = queue.rx_multi_segment_drops();
    let mut round = 0u32;
    let mut next_sweep = setup.clock.now_ns() + KERNEL_FLOWS_SWEEP_NS;
    // The generation first, then the table (at least as new): a reload
    // between the stack's construction and here is not missed.
    let mut rules_generation = setup.rules.generation();
    stack.set_rules(setup.rules.table());
    counters.rules_generation.set(rules_generation);
    tracing::debug!(worker = setup.id, "worker polling");
    while !setup.stop.load(Relaxed) {
        let now = setup.clock.now_ns();
        counters.heartbeat_ns.set(now);
        round = round.wrapping_add(1);
        if round % HOUSEKEEPING_EVERY == 0 {
            let generation = setup.rules.generation();
            if generation != rules_generation {
                stack.set_rules(setup.rules.table());
                rules_generation = generation;
                counters.rules_generation.set(generation);
            }
            while let Ok(message) = setup.control.try_recv() {
                match message {
                    ControlMessage::Stall(how_long) => {
                        tracing::warn!(worker = setup.id, "stalling for {how_long:?} on request");
                        std::thread::sleep(how_long);
                    }
                }
            }
            stack.neighbours().drain_mailbox();
            if let Some(in_use) = queue.pool_in_use() {
                counters.pool_in_use.set(in_use);
            }
            if now >= next_sweep {
                stack.expire_kernel_flows(now);
                next_sweep = now + KERNEL_FLOWS_SWEEP_NS;
            }
        }
        let mut egress = TxPath {
            queue: &mut queue,
            tx: &mut tx,
            tx_since: &mut tx_since,
            kernel: kernel.as_ref(),
            counters,
            capture,
            now,
            tx_checksum,
        };
        // Cross-core messages first: the tasks they wake run this round.
        let smp_ran = smp.as_ref().map_or(0, |e| e.drain(smp::DRAIN_BUDGET));
        stack.poll(now, &mut egress);
        stack.poll_app(now, &mut egress);
        // The async services' tasks woken by the last round's segments
        // (or by their timers); what they write leaves with this round.
        stack.run_tasks(now, &mut egress);
        let mut from_kernel = 0;
        if let Some(link) = &kernel {
            // The kernel's frames go out unchanged, a burst per round at most.
            while from_kernel < BURST {
                let Some(frame) = link.pop() else { break };
                egress.send(frame);
                from_kernel += 1;
            }
            counters.from_kernel.add(from_kernel as u64);
        }
        // Packets other workers received for this worker's flows: processed
        // here, never steered again.
        let mut steered_in = 0;
        if let Some(steer) = &mut steer {
            stack.begin_burst();
            steered_in = steer.receive(BURST, |pkt| {
                stack.process(pkt, now, &mut egress);
            });
            stack.end_burst(now, &mut egress);
            counters.steered_in.add(steered_in as u64);
        }
        if !tx.is_empty() && now.saturating_sub(tx_since) >= TX_DRAIN_NS {
            flush(&mut queue, &mut tx, counters, capture);
        }

        // Backpressure (see `steer`): RX only while every ring to another
        // worker can take a whole burst, so no hand-off below can fail.
        // Otherwise the port's RX ring holds what comes (or drops and
        // counts it) until the owner has drained some. The rings into this
        // worker were drained above whatever the state of the rings out of
        // it: a worker waiting here never keeps another waiting.
        if let Some(steer) = &steer {
            if !steer.has_room_for(BURST) {
                counters.steer_backpressure_rounds.inc();
                // Nothing to batch with: replies to handed-over packets go.
                flush(&mut queue, &mut tx, counters, capture);
                empty_polls = 0;
                if setup.idle == IdleMode::Adaptive {
                    // The owner may be waiting for this core.
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
        }
        let received = queue.rx_burst(&mut rx);
        let dropped = queue.rx_multi_segment_drops();
        if dropped != multi_segment_drops {
            counters.count_drops(DropReason::MultiSegment, dropped - multi_segment_drops);
            multi_segment_drops = dropped;
        }
        if received == 0 {
            counters.idle_polls.inc();
            // Nothing more to batch with: what waits goes now (a reply must
            // not wait for the drain timer on a quiet link).
            flush(&mut queue, &mut tx, counters, capture);
            // Sending the kernel's frames and processing handed-over ones
            // is work too: no nap while they come.
            if from_kernel > 0 || steered_in > 0 || smp_ran > 0 {
                empty_polls = 0;
            } else if setup.idle == IdleMode::Adaptive {
                empty_polls = empty_polls.saturating_add(1);
                if empty_polls >= ADAPTIVE_EMPTY_POLLS {
                    flush(&mut queue, &mut tx, counters, capture);
                    queue.wait_rx(ADAPTIVE_SLEEP);
                }
            }
            continue;
        }
        counters.busy_polls.inc();
        empty_polls = 0;
        if capture.is_on() {
            capture.tap(rx.iter().map(PacketBuf::data), Direction::Rx, counters);
        }
        let mut egress = TxPath {
            queue: &mut queue,
            tx: &mut tx,
            tx_since: &mut tx_since,
            kernel: kernel.as_ref(),
            counters,
            capture,
            now,
            tx_checksum,
        };
        stack.prefetch_burst(&rx);
        stack.begin_burst();
        for pkt in rx.drain(..) {
            // A packet of another worker's flow goes to its owner untouched.
            if let Some(steer) = &steer {
                if let Some(owner) = steer.foreign_owner(pkt.data()) {
                    match steer.hand_off(owner, pkt.detach()) {
                        Ok(()) => counters.steered_out.inc(),
                        // Ruled out by the backpressure check; counted
                        // all the same should it ever happen.
                        Err(_dropped) => counters.count_drop(DropReason::SteerQueueFull),
                    }
                    continue;
                }
            }
            stack.process(pkt, now, &mut egress);
        }
        stack.end_burst(now, &mut egress);
        // A short burst means the RX queue is drained: send now. Under load
        // (full bursts) replies batch up to a full TX burst or the drain
        // timer, as in l3fwd.
        if received < BURST || tx.is_full() {
            flush(&mut queue, &mut tx, counters, capture);
        }
    }
    // Graceful stop. What other workers handed over before they stopped is
    // processed (the last ACKs of connections, say); then peers of open
    // connections get a RST now rather than retransmitting into silence.
    let now = setup.clock.now_ns();
    if let Some(steer) = &mut steer {
        let mut egress = TxPath {
            queue: &mut queue,
            tx: &mut tx,
            tx_since: &mut tx_since,
            kernel: kernel.as_ref(),
            counters,
            capture,
            now,
            tx_checksum,
        };
        loop {
            let n = steer.receive(BURST, |pkt| {
                stack.process(pkt, now, &mut egress);
            });
            counters.steered_in.add(n as u64);
            if n == 0 {
                break;
            }
        }
    }
    stack.stop_app();
    stack.abort_connections(
        now,
        &mut TxPath {
            queue: &mut queue,
            tx: &mut tx,
            tx_since: &mut tx_since,
            kernel: kernel.as_ref(),
            counters,
            capture,
            now,
            tx_checksum,
        },
    );
    flush(&mut queue, &mut tx, counters, capture);
    // Requests still queued for this worker resolve as stopped.
    drop(smp);
    tracing::debug!(worker = setup.id, "worker stopped");
    WorkerReport {
        id: setup.id,
        flow_record: stack.flow_record().cloned(),
    }
}
