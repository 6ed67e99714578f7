//! The exception port: the kernel's share of the NIC.
//!
//! The stack and the Linux kernel share the port's IPv4 address and MAC.
//! Frames that no rule gives to a service (and non-IPv4 traffic, ARP replies
//! for the kernel's own requests, ICMP other than echo requests) go to the
//! kernel unchanged, through a kernel interface that shardnet creates (a TAP,
//! or DPDK's virtio-user over vhost-net); the kernel's frames go out of the
//! NIC unchanged.
//!
//! ```text
//!  worker k --push--> [to_kernel k]   --+
//!                                        +--> relay thread <--> kernel interface (sn0)
//!  worker k <--pop--- [from_kernel k] <--+
//! ```
//!
//! The device belongs to one relay thread, on the control core: the system
//! calls of a TAP (one per frame) never run on a worker core. Between the
//! relay and each worker there are two bounded single-producer,
//! single-consumer rings. A worker never blocks and never waits on the
//! kernel: when its ring towards the kernel is full the frame is dropped and
//! counted (`kernel_queue_full`); it sends at most a burst of the kernel's
//! frames per poll round. The relay counts what the interface refuses and
//! what a full worker ring makes it drop ([`RelayCounters`]).
//!
//! The kernel's frames are spread over the workers by a hash of their flow
//! (addresses, protocol and ports), so one flow always leaves through one TX
//! queue, in order.

#[cfg(target_os = "linux")]
pub mod journal;
#[cfg(target_os = "linux")]
pub mod netif;
#[cfg(target_os = "linux")]
pub mod tap;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::counters::Counter;
use crate::port::{Burst, PacketBuf, Queue};

/// Frames per ring (each direction, per worker) unless `[kernel] queue_size`
/// says otherwise (declared with the other limits of the file in [`config`]).
///
/// [`config`]: crate::config
pub use crate::config::DEFAULT_KERNEL_QUEUE_SIZE as DEFAULT_QUEUE_SIZE;

/// Empty relay rounds in a row after which the relay sleeps between rounds.
const RELAY_SPIN_ROUNDS: u32 = 64;

/// How long an idle relay sleeps per round: the added latency of the
/// kernel's traffic when it has been idle (ssh, monitoring, updates).
pub const RELAY_IDLE_SLEEP: Duration = Duration::from_micros(50);

/// A worker's end of the exception path.
#[derive(Debug)]
pub struct KernelLink<B> {
    to_kernel: Arc<ArrayQueue<B>>,
    from_kernel: Arc<ArrayQueue<B>>,
}

impl<B> KernelLink<B> {
    /// Queue a frame for the kernel. Gives it back when the ring is full.
    #[inline]
    pub fn push(&self, frame: B) -> Result<(), B> {
        self.to_kernel.push(frame)
    }

    /// The next frame from the kernel, if any.
    #[inline]
    pub fn pop(&self) -> Option<B> {
        self.from_kernel.pop()
    }
}

/// The relay's counters (written by the relay thread only).
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Frames written to the kernel interface.
    pub to_kernel: Counter,
    /// Frames read from the kernel interface.
    pub from_kernel: Counter,
    /// Frames the kernel interface refused or rejected (its queue full, down,
    /// or a frame it would not take).
    pub to_kernel_refused: Counter,
    /// Frames the kernel sent that the device dropped (longer than the
    /// buffers, unreadable).
    pub from_kernel_dropped: Counter,
    /// The kernel's frames dropped because the worker ring was full.
    pub from_kernel_queue_full: Counter,
}

/// The relay's end of one worker's rings.
#[derive(Debug)]
struct RelayEnd<B> {
    to_kernel: Arc<ArrayQueue<B>>,
    from_kernel: Arc<ArrayQueue<B>>,
}

/// Rings for `workers` workers, `queue_size` frames each way: the workers'
/// ends (in worker order) and the relay's ends (give them to [`Relay::new`]).
pub fn rings<B>(workers: usize, queue_size: usize) -> (Vec<KernelLink<B>>, RelayEnds<B>) {
    let queue_size = queue_size.max(1);
    let mut links = Vec::with_capacity(workers);
    let mut ends = Vec::with_capacity(workers);
    for _ in 0..workers {
        let to_kernel = Arc::new(ArrayQueue::new(queue_size));
        let from_kernel = Arc::new(ArrayQueue::new(queue_size));
        links.push(KernelLink {
            to_kernel: to_kernel.clone(),
            from_kernel: from_kernel.clone(),
        });
        ends.push(RelayEnd {
            to_kernel,
            from_kernel,
        });
    }
    (links, RelayEnds(ends))
}

/// The relay's ends of every worker's rings.
#[derive(Debug)]
pub struct RelayEnds<B>(Vec<RelayEnd<B>>);

/// Moves frames between the workers' rings and the kernel interface.
pub struct Relay<K: Queue> {
    device: K,
    ends: Vec<RelayEnd<K::Buf>>,
    counters: Arc<RelayCounters>,
    burst: Burst<K::Buf>,
}

impl<K: Queue> Relay<K> {
    /// A relay between `device` (the kernel interface) and the workers' rings.
    pub fn new(device: K, ends: RelayEnds<K::Buf>, counters: Arc<RelayCounters>) -> Self {
        assert!(!ends.0.is_empty(), "a relay needs at least one worker");
        Relay {
            device,
            ends: ends.0,
            counters,
            burst: Burst::new(),
        }
    }

    /// One round: up to a burst from each worker to the kernel, then up to a
    /// burst from the kernel to the workers. Returns the frames moved.
    pub fn poll(&mut self) -> usize {
        let mut moved = 0;
        for end in &self.ends {
            while !self.burst.is_full() {
                match end.to_kernel.pop() {
                    Some(frame) => self.burst.push(frame),
                    None => break,
                }
            }
            if self.burst.is_empty() {
                continue;
            }
            let offered = self.burst.len();
            let sent = self.device.tx_burst(&mut self.burst);
            self.counters.to_kernel.add(sent as u64);
            // The interface refused the rest: drop them rather than hold the
            // worker's buffers while the kernel is slow.
            self.counters.to_kernel_refused.add(self.burst.len() as u64);
            self.burst.clear();
            moved += offered;
        }
        let received = self.device.rx_burst(&mut self.burst);
        if received > 0 {
            self.counters.from_kernel.add(received as u64);
            let workers = self.ends.len();
            for frame in self.burst.drain(..) {
                let worker = steer(frame.data(), workers);
                if self.ends[worker].from_kernel.push(frame).is_err() {
                    self.counters.from_kernel_queue_full.inc();
                }
            }
            moved += received;
        }
        if moved > 0 {
            self.counters
                .from_kernel_dropped
                .set(self.device.rx_dropped());
        }
        moved
    }

    /// Relay until `stop` is set, sleeping [`RELAY_IDLE_SLEEP`] per round
    /// once idle, then deliver what the workers left in the rings (stop the
    /// workers first). Returns the device (the caller closes it).
    pub fn run(mut self, stop: &AtomicBool) -> K {
        let mut idle = 0u32;
        while !stop.load(Relaxed) {
            if self.poll() > 0 {
                idle = 0;
                continue;
            }
            idle = idle.saturating_add(1);
            if idle >= RELAY_SPIN_ROUNDS {
                std::thread::sleep(RELAY_IDLE_SLEEP);
            }
        }
        // The workers stop first: hand the kernel what they queued (bounded:
        // the rings cannot refill).
        for _ in 0..1024 {
            if self.poll() == 0 {
                break;
            }
        }
        self.device
    }
}

/// A relay running on its own thread.
pub struct RelayThread<K: Queue> {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<K>>,
}

impl<K: Queue> RelayThread<K> {
    /// Start `relay` on a thread named `shardnet-kernel`, pinned to `core`.
    pub fn spawn(relay: Relay<K>, core: usize) -> std::io::Result<RelayThread<K>> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("shardnet-kernel".into())
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    tracing::warn!("could not pin the exception port's relay to core {core}");
                }
                relay.run(&flag)
            })?;
        Ok(RelayThread {
            stop,
            handle: Some(handle),
        })
    }

    /// Stop the relay and hand back its device (to close it), or `None` if
    /// the relay thread panicked.
    pub fn stop(mut self) -> Option<K> {
        self.stop.store(true, Relaxed);
        self.handle.take()?.join().ok()
    }
}

impl<K: Queue> Drop for RelayThread<K> {
    /// A relay never outlives its owner, on error paths too: it holds worker
    /// buffers and polls a device that the owner closes next.
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Which worker sends a frame of the kernel's: a hash of its IPv4 flow
/// (addresses, protocol, and ports for unfragmented TCP and UDP), so that a
/// flow keeps one TX queue and its order; worker 0 for anything else (ARP,
/// IPv6).
pub fn steer(frame: &[u8], workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    const ETH: usize = 14;
    if frame.len() < ETH + 20 || frame[12..14] != [0x08, 0x00] {
        return 0;
    }
    let ip = &frame[ETH..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let protocol = ip[9];
    let mut h = u64::from(protocol);
    h = mix(
        h,
        u64::from(u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]])),
    );
    h = mix(
        h,
        u64::from(u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]])),
    );
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if (protocol == 6 || protocol == 17) && !fragment && ip.len() >= ihl + 4 {
        h = mix(
            h,
            u64::from(u32::from_be_bytes([
                ip[ihl],
                ip[ihl + 1],
                ip[ihl + 2],
                ip[ihl + 3],
            ])),
        );
    }
    (h % workers as u64) as usize
}

/// One round of a multiply-xorshift mix (the finaliser of SplitMix64).
#[inline]
fn mix(h: u64, v: u64) -> u64 {
    let mut z = (h ^ v).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::heap::HeapBuf;
    use crate::port::memlink::MemQueue;
    use crate::testing::{udp_frame, Endpoints};
    use crate::wire::EthernetAddress;
    use std::net::Ipv4Addr;

    fn frame(src_port: u16) -> Vec<u8> {
        udp_frame(
            Endpoints {
                src_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
                dst_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                src_ip: Ipv4Addr::new(198, 18, 0, 2),
                dst_ip: Ipv4Addr::new(198, 18, 0, 1),
            },
            src_port,
            53,
            b"query",
        )
    }

    #[test]
    fn frames_cross_both_ways_and_full_rings_are_counted() {
        // `kernel` plays the kernel interface: what the relay transmits
        // arrives at `kernel_side`, what `kernel_side` injects the relay reads.
        let (kernel, mut kernel_side) = MemQueue::loopback_pair();
        let receive = |side: &mut MemQueue| {
            let mut out = Vec::new();
            let mut burst = Burst::new();
            while side.rx_burst(&mut burst) > 0 {
                out.extend(burst.drain(..).map(|b| b.data().to_vec()));
            }
            out
        };
        let (links, ends) = rings::<HeapBuf>(2, 4);
        let counters = Arc::new(RelayCounters::default());
        let mut relay = Relay::new(kernel, ends, counters.clone());

        // Workers to kernel: worker 1 fills its ring; the fifth is refused.
        for i in 0..5 {
            let result = links[1].push(HeapBuf::from_slice(&frame(i)));
            assert_eq!(result.is_ok(), i < 4, "frame {i}");
        }
        assert_eq!(relay.poll(), 4);
        let delivered = receive(&mut kernel_side);
        assert_eq!(delivered.len(), 4);
        for (i, sent) in delivered.iter().enumerate() {
            assert_eq!(sent, &frame(i as u16), "unchanged and in order");
        }
        assert_eq!(counters.to_kernel.get(), 4);

        // Kernel to workers: each frame lands on the worker its flow hashes
        // to, in order; beyond a ring's room it is dropped and counted.
        let sent: Vec<Vec<u8>> = (0..24).map(|i| frame(1000 + i)).collect();
        for chunk in sent.chunks(8) {
            let mut burst: Burst<HeapBuf> = chunk.iter().map(|f| HeapBuf::from_slice(f)).collect();
            assert_eq!(kernel_side.tx_burst(&mut burst), chunk.len());
        }
        // A relay round reads one burst (32) at most: all 24 here.
        assert_eq!(relay.poll(), 24);
        assert_eq!(counters.from_kernel.get(), 24);
        let mut expected: [Vec<&Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        for f in &sent {
            expected[steer(f, 2)].push(f);
        }
        let mut got_total = 0;
        for (w, link) in links.iter().enumerate() {
            let mut got = Vec::new();
            while let Some(b) = link.pop() {
                got.push(b.data().to_vec());
            }
            let want: Vec<Vec<u8>> = expected[w].iter().take(4).map(|f| (*f).clone()).collect();
            assert_eq!(got, want, "worker {w}");
            got_total += got.len();
        }
        assert_eq!(
            counters.from_kernel_queue_full.get() + got_total as u64,
            24,
            "every frame from the kernel is delivered or counted"
        );
        assert!(counters.from_kernel_queue_full.get() > 0);
    }

    #[test]
    fn steering_keeps_a_flow_on_one_worker_and_spreads_flows() {
        let mut seen = [0usize; 4];
        for port in 0..4000u16 {
            let f = frame(port);
            let w = steer(&f, 4);
            assert_eq!(w, steer(&f, 4));
            seen[w] += 1;
        }
        for count in seen {
            assert!((700..1300).contains(&count), "uneven spread {seen:?}");
        }
        // ARP and short frames: worker 0.
        let mut arp = frame(1);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(steer(&arp, 4), 0);
        assert_eq!(steer(&[0u8; 10], 4), 0);
    }
}
