//! An in-memory link between two queues, for tests and deterministic simulation.
//!
//! [`MemLink::pair`] gives two [`MemQueue`]s: what one transmits the other
//! receives. Faults are injected on the way, as configured in [`LinkConfig`]:
//! loss, duplication, reordering, corruption, delay and a bounded queue. With every
//! fault at zero and no delay the link is a perfect FIFO.
//!
//! # Time
//!
//! The link never reads a clock. It has a simulated clock in nanoseconds, shared
//! by both ends and starting at 0, that the simulation moves forward with
//! [`MemQueue::set_now`] or [`MemQueue::advance`] (from either end: it is one
//! clock). A frame sent at `t` becomes receivable once the clock reaches
//! `t + delay`. [`MemQueue::next_arrival`] tells a simulation when the next frame
//! will become receivable, so it can step straight there.
//!
//! # Threads
//!
//! Both ends share one `Arc<Mutex<..>>` holding the two directions, the clock and
//! the counters. That is a lock per burst, which the fast-path rules forbid for
//! real ports; this backend is for tests and simulation, where simplicity and
//! determinism matter and contention does not. It makes [`MemQueue`] `Send`, so
//! an end can be moved into a worker thread.
//!
//! # Determinism
//!
//! Faults are drawn from a small seeded PRNG (splitmix64), one stream per
//! direction, so the same seed and the same sequence of calls give the same
//! faults, and one direction's traffic does not shift the other's faults. It is
//! written here rather than taken from `rand` because the sequence must stay
//! fixed across dependency upgrades for recorded seeds to keep reproducing, and
//! twelve lines do not justify a dependency.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::heap::{HeapBuf, HEAP_BUF_ROOM};
use super::{Burst, PacketBuf, Queue, RxChecksum};

/// How an in-memory link misbehaves. Probabilities are per frame, in `0.0..=1.0`;
/// each direction draws its faults independently.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame is delivered twice (the copy right after it).
    pub duplicate: f64,
    /// Probability that a frame is held back and delivered right after the next
    /// frame sent in the same direction. A held frame waits for that next frame
    /// however long it takes (a transport's retransmission releases it); see
    /// [`MemQueue::release_held`] to let it go by hand.
    pub reorder: f64,
    /// One-way latency: a frame sent at `t` is receivable from `t + delay` on the
    /// link's simulated clock.
    pub delay: Duration,
    /// Probability that one random bit of one random byte of a frame is flipped.
    pub corrupt: f64,
    /// Most frames in flight per direction (including a held one); transmits
    /// beyond it are refused and stay in the caller's burst.
    pub capacity: usize,
    /// Seed of the fault PRNG.
    pub seed: u64,
}

impl Default for LinkConfig {
    /// A perfect link: no faults, no delay, room for 4096 frames per direction.
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: Duration::ZERO,
            corrupt: 0.0,
            capacity: 4096,
            seed: 0x5eed,
        }
    }
}

/// What happened to the frames one end transmitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames the link accepted for transmission (refused ones not counted).
    pub sent: u64,
    /// Frames refused because the direction was at capacity.
    pub refused: u64,
    /// Frames the other end received (duplicates included).
    pub delivered: u64,
    /// Frames dropped by the loss fault.
    pub lost: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames held back behind the next one.
    pub reordered: u64,
    /// Frames with one bit flipped.
    pub corrupted: u64,
}

/// splitmix64 (Steele, Lea, Flood 2014): a tiny, fast generator of good quality
/// that any seed, zero included, starts well.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`; draws nothing when `p <= 0`, so a fault that is
    /// off does not consume the stream.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is negligible for frame sizes.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// One direction of the link: frames in flight from one end to the other.
#[derive(Debug)]
struct Direction {
    /// Frames with the time they become receivable, oldest first. The times never
    /// decrease along the queue: the clock is monotonic and the delay constant.
    in_flight: VecDeque<(u64, HeapBuf)>,
    /// A frame held back by the reorder fault, waiting for the next one.
    held: Option<HeapBuf>,
    rng: SplitMix64,
    counters: LinkCounters,
}

impl Direction {
    fn new(seed: u64) -> Self {
        Direction {
            in_flight: VecDeque::new(),
            held: None,
            rng: SplitMix64(seed),
            counters: LinkCounters::default(),
        }
    }

    fn occupancy(&self) -> usize {
        self.in_flight.len() + usize::from(self.held.is_some())
    }

    /// Pass one accepted frame through the faults and queue what survives.
    fn transmit(&mut self, config: &LinkConfig, deliver_at: u64, mut frame: HeapBuf) {
        self.counters.sent += 1;
        if self.rng.chance(config.loss) {
            self.counters.lost += 1;
            return;
        }
        if self.rng.chance(config.corrupt) && !frame.is_empty() {
            let byte = self.rng.below(frame.len());
            let bit = self.rng.below(8);
            frame.data_mut()[byte] ^= 1 << bit;
            self.counters.corrupted += 1;
        }
        // The copy is made only if it fits: the frame itself already has room.
        let duplicate =
            self.rng.chance(config.duplicate) && self.occupancy() + 2 <= config.capacity;
        // Only one frame can be held at a time: while one waits, the next frame is
        // the one that releases it, so it is not held itself.
        if self.held.is_none() && self.rng.chance(config.reorder) {
            self.counters.reordered += 1;
            if duplicate {
                // The copy goes ahead; the original is held behind the next frame.
                self.counters.duplicated += 1;
                self.in_flight.push_back((deliver_at, frame.clone()));
            }
            self.held = Some(frame);
            return;
        }
        if duplicate {
            self.counters.duplicated += 1;
            self.in_flight.push_back((deliver_at, frame.clone()));
        }
        self.in_flight.push_back((deliver_at, frame));
        if let Some(held) = self.held.take() {
            self.in_flight.push_back((deliver_at, held));
        }
    }
}

/// Everything both ends share.
#[derive(Debug)]
struct Shared {
    config: LinkConfig,
    now_ns: u64,
    /// `directions[i]` carries frames transmitted by end `i`.
    directions: [Direction; 2],
}

/// The constructor of in-memory links.
#[derive(Debug)]
pub struct MemLink;

impl MemLink {
    /// A link with the given faults; returns its two ends. What the first
    /// transmits the second receives, and the other way round.
    pub fn pair(config: LinkConfig) -> (MemQueue, MemQueue) {
        let directions = [
            Direction::new(config.seed),
            // A different stream for the other direction, still fixed by the seed.
            Direction::new(config.seed ^ 0xa5a5_a5a5_5a5a_5a5a),
        ];
        let shared = Arc::new(Mutex::new(Shared {
            config,
            now_ns: 0,
            directions,
        }));
        (
            MemQueue {
                shared: Arc::clone(&shared),
                end: 0,
            },
            MemQueue { shared, end: 1 },
        )
    }
    /// The link's state: always up, with no speed (faults are configured
    /// with [`LinkConfig`], not by taking the link down).
    pub fn link() -> super::Link {
        super::Link::VIRTUAL
    }
}

/// One end of an in-memory link: a [`Queue`] of [`HeapBuf`]s.
#[derive(Debug)]
pub struct MemQueue {
    shared: Arc<Mutex<Shared>>,
    /// 0 or 1: which end this is; it transmits on `directions[end]`.
    end: usize,
}

impl MemQueue {
    /// Two ends of a perfect link (no faults, no delay): a FIFO each way.
    pub fn loopback_pair() -> (MemQueue, MemQueue) {
        MemLink::pair(LinkConfig::default())
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves plain data, still consistent
        // enough for a test to report on: do not cascade the poison.
        self.shared
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The link's simulated time in nanoseconds.
    pub fn now(&self) -> u64 {
        self.lock().now_ns
    }

    /// Set the link's simulated time (shared by both ends). Time never goes
    /// back: an earlier `now_ns` is ignored.
    pub fn set_now(&self, now_ns: u64) {
        let mut shared = self.lock();
        shared.now_ns = shared.now_ns.max(now_ns);
    }

    /// Move the link's simulated time forward by `ns` nanoseconds.
    pub fn advance(&self, ns: u64) {
        let mut shared = self.lock();
        shared.now_ns = shared.now_ns.saturating_add(ns);
    }

    /// The earliest time at which a frame in flight towards this end becomes
    /// receivable, or `None` if nothing is in flight (a held frame waits for the
    /// next one, not for a time, and is not counted).
    pub fn next_arrival(&self) -> Option<u64> {
        let shared = self.lock();
        shared.directions[1 - self.end]
            .in_flight
            .front()
            .map(|(at, _)| *at)
    }

    /// Queue `frame` to be received by this end, now, bypassing faults and delay:
    /// for tests that play the peer by hand.
    pub fn inject(&mut self, frame: &[u8]) {
        let mut shared = self.lock();
        let now = shared.now_ns;
        shared.directions[1 - self.end]
            .in_flight
            .push_back((now, HeapBuf::from_slice(frame)));
    }

    /// Take every frame this end transmitted that the other end has not received
    /// yet, delay ignored, a held frame last: for tests that read what the stack
    /// sent instead of running a peer.
    pub fn drain_sent(&mut self) -> Vec<Vec<u8>> {
        let mut shared = self.lock();
        let direction = &mut shared.directions[self.end];
        let mut frames: Vec<Vec<u8>> = direction
            .in_flight
            .drain(..)
            .map(|(_, frame)| frame.data().to_vec())
            .collect();
        frames.extend(direction.held.take().map(|frame| frame.data().to_vec()));
        frames
    }

    /// Let a frame this end sent that the reorder fault holds back go now, as if
    /// the next frame had been sent.
    pub fn release_held(&mut self) {
        let mut shared = self.lock();
        let now = shared.now_ns;
        let delay = duration_ns(shared.config.delay);
        let direction = &mut shared.directions[self.end];
        if let Some(held) = direction.held.take() {
            direction
                .in_flight
                .push_back((now.saturating_add(delay), held));
        }
    }

    /// What happened to the frames this end transmitted.
    pub fn counters(&self) -> LinkCounters {
        self.lock().directions[self.end].counters
    }

    /// The link's configuration.
    pub fn config(&self) -> LinkConfig {
        self.lock().config.clone()
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Queue for MemQueue {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>) -> usize {
        let mut shared = self.lock();
        let now = shared.now_ns;
        let direction = &mut shared.directions[1 - self.end];
        let mut received = 0;
        while !out.is_full() {
            match direction.in_flight.front() {
                Some((at, _)) if *at <= now => {}
                _ => break,
            }
            let Some((_, mut frame)) = direction.in_flight.pop_front() else {
                break;
            };
            // Whatever the sender's buffer said, nothing checked this frame.
            frame.l4_checksum = RxChecksum::Unknown;
            out.push(frame);
            received += 1;
        }
        direction.counters.delivered += received as u64;
        received
    }

    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let mut shared = self.lock();
        let deliver_at = shared
            .now_ns
            .saturating_add(duration_ns(shared.config.delay));
        let Shared {
            config, directions, ..
        } = &mut *shared;
        let direction = &mut directions[self.end];
        // Room is checked per frame: a duplicate takes room too.
        let mut frames = std::mem::take(pkts).into_iter();
        let mut sent = 0;
        for frame in frames.by_ref() {
            if direction.occupancy() >= config.capacity {
                pkts.push(frame);
                break;
            }
            direction.transmit(config, deliver_at, frame);
            sent += 1;
        }
        pkts.extend(frames);
        direction.counters.refused += pkts.len() as u64;
        sent
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::with_room(HEAP_BUF_ROOM))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame whose bytes encode `n`, long enough to corrupt interestingly.
    fn frame(n: u32) -> HeapBuf {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        HeapBuf::from_slice(&bytes)
    }

    fn number(buf: &[u8]) -> u32 {
        u32::from_be_bytes(buf[..4].try_into().unwrap())
    }

    /// Send `count` numbered frames from `a` to `b` one burst at a time and return
    /// the received frames' bytes.
    fn send_all(a: &mut MemQueue, b: &mut MemQueue, count: u32) -> Vec<Vec<u8>> {
        let mut received = Vec::new();
        let mut n = 0;
        while n < count {
            let mut burst = Burst::new();
            while n < count && !burst.is_full() {
                burst.push(frame(n));
                n += 1;
            }
            let offered = burst.len();
            assert_eq!(a.tx_burst(&mut burst), offered);
            let mut out = Burst::new();
            while b.rx_burst(&mut out) > 0 {
                received.extend(out.drain(..).map(|f| f.data().to_vec()));
            }
        }
        a.release_held();
        let mut out = Burst::new();
        while b.rx_burst(&mut out) > 0 {
            received.extend(out.drain(..).map(|f| f.data().to_vec()));
        }
        received
    }

    #[test]
    fn perfect_link_is_a_fifo_both_ways() {
        let (mut a, mut b) = MemQueue::loopback_pair();
        let got = send_all(&mut a, &mut b, 1000);
        assert_eq!(got.len(), 1000);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(number(f), i as u32);
            assert_eq!(f, frame(i as u32).data());
        }
        let back = send_all(&mut b, &mut a, 100);
        assert_eq!(
            back.iter().map(|f| number(f)).collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
        let c = a.counters();
        assert_eq!(
            (
                c.sent,
                c.delivered,
                c.lost,
                c.duplicated,
                c.reordered,
                c.corrupted
            ),
            (1000, 1000, 0, 0, 0, 0)
        );
        assert_eq!(b.counters().delivered, 100);
    }

    #[test]
    fn rx_burst_fills_at_most_the_burst_and_tx_takes_what_fits() {
        let (mut a, mut b) = MemQueue::loopback_pair();
        for _ in 0..2 {
            let mut burst: Burst<HeapBuf> = (0..32).map(frame).collect();
            assert_eq!(a.tx_burst(&mut burst), 32);
            assert!(burst.is_empty());
        }
        let mut out = Burst::new();
        out.push(frame(999));
        assert_eq!(b.rx_burst(&mut out), 31);
        assert_eq!(out.len(), 32);
        out.clear();
        assert_eq!(b.rx_burst(&mut out), 32);
        assert_eq!(b.rx_burst(&mut out), 0);
        out.clear();
        assert_eq!(b.rx_burst(&mut out), 1);
    }

    /// Run 20 000 frames through a link with `config` and return the counters.
    fn run(config: LinkConfig) -> (LinkCounters, Vec<Vec<u8>>) {
        let (mut a, mut b) = MemLink::pair(config);
        let got = send_all(&mut a, &mut b, 20_000);
        (a.counters(), got)
    }

    fn assert_rate(what: &str, count: u64, of: u64, p: f64) {
        let rate = count as f64 / of as f64;
        // 20 000 draws: the standard deviation at p = 0.1 is 0.002; allow 5 of them.
        assert!(
            (rate - p).abs() < 0.01,
            "{what}: {count} of {of} = {rate}, configured {p}"
        );
    }

    #[test]
    fn loss_happens_at_the_configured_rate() {
        let (c, got) = run(LinkConfig {
            loss: 0.1,
            ..LinkConfig::default()
        });
        assert_rate("lost", c.lost, c.sent, 0.1);
        assert_eq!(got.len() as u64, c.sent - c.lost);
        assert_eq!(c.delivered, got.len() as u64);
        // Survivors keep their order.
        assert!(got.windows(2).all(|w| number(&w[0]) < number(&w[1])));
    }

    #[test]
    fn duplication_happens_at_the_configured_rate() {
        let (c, got) = run(LinkConfig {
            duplicate: 0.1,
            ..LinkConfig::default()
        });
        assert_rate("duplicated", c.duplicated, c.sent, 0.1);
        assert_eq!(got.len() as u64, c.sent + c.duplicated);
        let repeats = got.windows(2).filter(|w| w[0] == w[1]).count() as u64;
        assert_eq!(repeats, c.duplicated);
    }

    #[test]
    fn reordering_happens_at_the_configured_rate() {
        let (c, got) = run(LinkConfig {
            reorder: 0.1,
            ..LinkConfig::default()
        });
        // A frame is only held when none is waiting, which removes the frames
        // right after a held one from the draw: the rate is p / (1 + p).
        assert_rate("reordered", c.reordered, c.sent, 0.1 / 1.1);
        assert_eq!(got.len(), 20_000);
        let swaps = got
            .windows(2)
            .filter(|w| number(&w[0]) > number(&w[1]))
            .count() as u64;
        // Every held frame shows as one swap, except a last frame that nothing
        // followed and `release_held` let go in order.
        let last_held_alone = u64::from(c.reordered == swaps + 1);
        assert_eq!(swaps + last_held_alone, c.reordered);
        if last_held_alone == 1 {
            assert_eq!(number(got.last().unwrap()), 19_999);
        }
        let mut numbers: Vec<u32> = got.iter().map(|f| number(f)).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (0..20_000).collect::<Vec<_>>());
    }

    #[test]
    fn corruption_flips_exactly_one_bit_at_the_configured_rate() {
        let (c, got) = run(LinkConfig {
            corrupt: 0.1,
            ..LinkConfig::default()
        });
        assert_rate("corrupted", c.corrupted, c.sent, 0.1);
        assert_eq!(got.len(), 20_000);
        let mut flipped = 0;
        for (i, f) in got.iter().enumerate() {
            let want = frame(i as u32);
            let bits: u32 = f
                .iter()
                .zip(want.data())
                .map(|(x, y)| (x ^ y).count_ones())
                .sum();
            assert!(bits <= 1, "frame {i}: {bits} bits differ");
            flipped += u64::from(bits);
        }
        assert_eq!(flipped, c.corrupted);
    }

    #[test]
    fn same_seed_same_faults_other_seed_other_faults() {
        let config = LinkConfig {
            loss: 0.05,
            duplicate: 0.05,
            reorder: 0.05,
            corrupt: 0.05,
            seed: 42,
            ..LinkConfig::default()
        };
        let first = run(config.clone());
        let second = run(config.clone());
        assert_eq!(first, second);
        let other = run(LinkConfig { seed: 43, ..config });
        assert_ne!(first.1, other.1);
    }

    #[test]
    fn directions_draw_independent_faults() {
        let config = LinkConfig {
            loss: 0.5,
            ..LinkConfig::default()
        };
        let (mut a, mut b) = MemLink::pair(config);
        let ab = send_all(&mut a, &mut b, 200);
        let ba = send_all(&mut b, &mut a, 200);
        assert_ne!(ab, ba);
    }

    #[test]
    fn delay_holds_frames_until_the_clock_passes_it() {
        let (mut a, mut b) = MemLink::pair(LinkConfig {
            delay: Duration::from_micros(100),
            ..LinkConfig::default()
        });
        a.set_now(1_000);
        let mut burst: Burst<HeapBuf> = [frame(1)].into_iter().collect();
        assert_eq!(a.tx_burst(&mut burst), 1);
        b.advance(50_000);
        let mut burst: Burst<HeapBuf> = [frame(2)].into_iter().collect();
        assert_eq!(a.tx_burst(&mut burst), 1);
        assert_eq!(b.next_arrival(), Some(101_000));
        let mut out = Burst::new();
        b.set_now(100_999);
        assert_eq!(b.rx_burst(&mut out), 0);
        b.set_now(101_000);
        assert_eq!(b.rx_burst(&mut out), 1);
        assert_eq!(number(out[0].data()), 1);
        assert_eq!(b.next_arrival(), Some(151_000));
        // Time does not go back.
        b.set_now(0);
        assert_eq!(b.now(), 101_000);
        b.advance(49_999);
        assert_eq!(b.rx_burst(&mut out), 0);
        b.advance(1);
        assert_eq!(b.rx_burst(&mut out), 1);
        assert_eq!(b.next_arrival(), None);
    }

    #[test]
    fn capacity_bounds_frames_in_flight_and_refuses_the_rest() {
        let (mut a, mut b) = MemLink::pair(LinkConfig {
            capacity: 10,
            ..LinkConfig::default()
        });
        let mut burst: Burst<HeapBuf> = (0..32).map(frame).collect();
        assert_eq!(a.tx_burst(&mut burst), 10);
        assert_eq!(burst.len(), 22);
        assert_eq!(number(burst[0].data()), 10, "the refused are the suffix");
        assert_eq!(a.tx_burst(&mut burst), 0);
        assert_eq!(a.counters().refused, 22 + 22);
        let mut out = Burst::new();
        assert_eq!(b.rx_burst(&mut out), 10);
        assert_eq!(a.tx_burst(&mut burst), 10);
        assert_eq!(number(burst[0].data()), 20);
    }

    #[test]
    fn duplicates_count_against_capacity() {
        let (mut a, mut b) = MemLink::pair(LinkConfig {
            capacity: 5,
            duplicate: 1.0,
            ..LinkConfig::default()
        });
        let mut burst: Burst<HeapBuf> = (0..4).map(frame).collect();
        // 0, 0', 1, 1', then 2 fits but its copy does not; 3 is refused.
        assert_eq!(a.tx_burst(&mut burst), 3);
        assert_eq!(burst.len(), 1);
        let c = a.counters();
        assert_eq!((c.sent, c.duplicated, c.refused), (3, 2, 1));
        let mut out = Burst::new();
        assert_eq!(b.rx_burst(&mut out), 5);
        let got: Vec<u32> = out.iter().map(|f| number(f.data())).collect();
        assert_eq!(got, vec![0, 0, 1, 1, 2]);
    }

    #[test]
    fn inject_and_drain_sent_script_the_peer() {
        let (mut a, _b) = MemLink::pair(LinkConfig {
            delay: Duration::from_millis(1),
            ..LinkConfig::default()
        });
        a.inject(&[1, 2, 3]);
        let mut out = Burst::new();
        assert_eq!(a.rx_burst(&mut out), 1);
        assert_eq!(out[0].data(), &[1, 2, 3]);
        let mut burst: Burst<HeapBuf> = (0..3).map(frame).collect();
        a.tx_burst(&mut burst);
        let sent = a.drain_sent();
        assert_eq!(
            sent.iter().map(|f| number(f)).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(a.drain_sent().is_empty());
    }

    #[test]
    fn an_end_can_move_to_another_thread() {
        let (mut a, mut b) = MemQueue::loopback_pair();
        let sender = std::thread::spawn(move || {
            let mut burst: Burst<HeapBuf> = (0..5).map(frame).collect();
            a.tx_burst(&mut burst)
        });
        assert_eq!(sender.join().unwrap(), 5);
        let mut out = Burst::new();
        assert_eq!(b.rx_burst(&mut out), 5);
    }
}
