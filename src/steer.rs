//! Software steering: every packet to the worker that owns its flow.
//!
//! A port whose queues are not spread by the RSS model (AF_PACKET's fanout
//! hash, a TAP, a single-queue port shared by several workers, a NIC whose
//! RSS could not be set up) delivers some packets to a worker that does not
//! own their flow. The receiving worker computes the owner with the same
//! [`RssModel`] that active opens use to pick their source ports, and hands
//! the packet over, untouched, through a bounded lock-free ring: one ring per
//! ordered pair of workers, so each ring has one producer and one consumer
//! and no worker ever waits. The owner processes it as if it had received
//! it; a handed-over packet is never steered again, so no packet is
//! processed by two workers (the receiver only reads its headers).
//! Handed-over packets are counted `steered_out` by the sender and
//! `steered_in` by the owner.
//!
//! # Backpressure
//!
//! A worker pulls an RX burst only while every one of its outgoing rings
//! has room for a whole burst ([`SteerLinks::has_room_for`]). Only that
//! worker pushes into its outgoing rings and their owners only take from
//! them, so the room it saw can only grow until it has handed the burst
//! over: no hand-off of that burst can fail. When an owner falls behind
//! (descheduled on a shared core, stalled), the receiving worker leaves its
//! RX queue alone and the packets wait, or are dropped, in the port's RX
//! ring, where the port counts them (AF_PACKET `tp_drops`, DPDK `imissed`:
//! `shardnet_port_rx_missed_total`), instead of being pulled only to be
//! dropped here. Such rounds are counted (`steer_backpressure_rounds`).
//! `steer_queue_full` is still counted if a hand-off ever fails, which
//! backpressure rules out.
//!
//! No two workers can wait on each other: a worker under backpressure still
//! runs the rest of its round, and in particular drains the rings *into*
//! it (a burst per round) whatever the state of the rings *out of* it.
//! Draining depends on nothing but the worker being scheduled (processing
//! a handed-over packet only sends, queues for the kernel or drops, all
//! without waiting), so a ring towards a running worker always empties,
//! and a cycle of full rings (0 -> 1 full and 1 -> 0 full) resolves as soon
//! as either worker runs a round.
//!
//! With a port whose RSS matches the model, the rings carry what the NIC
//! cannot place: ICMP errors go to the worker of the flow they quote, which
//! no NIC hash can see.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::rss::RssModel;

/// The fewest and the most slots a ring may have, declared with the other
/// limits of the file in [`config`](crate::config) (which sits below this
/// module).
pub use crate::config::{MAX_STEER_QUEUE_SIZE, MIN_STEER_QUEUE_SIZE};

/// One worker's ends of the steering rings.
pub struct SteerLinks<B> {
    id: usize,
    model: Arc<RssModel>,
    /// Rings to each other worker, by worker (`None` at our own index).
    to: Vec<Option<Arc<ArrayQueue<B>>>>,
    /// Rings from each other worker.
    from: Vec<Arc<ArrayQueue<B>>>,
    /// The ring to read first next time (fairness between senders).
    next_from: usize,
}

impl<B> std::fmt::Debug for SteerLinks<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteerLinks")
            .field("id", &self.id)
            .field("workers", &self.to.len())
            .finish_non_exhaustive()
    }
}

/// The steering rings of `workers` workers, `queue_size` slots each, and the
/// model that decides the owners: one [`SteerLinks`] per worker, in order.
/// A worker pulls RX only while its rings have room for a burst, so the
/// runtime uses at least [`MIN_STEER_QUEUE_SIZE`] slots.
///
/// # Panics
/// If the model has a different number of workers, or `queue_size` is 0.
pub fn links<B>(workers: usize, queue_size: usize, model: Arc<RssModel>) -> Vec<SteerLinks<B>> {
    assert_eq!(
        model.workers(),
        workers,
        "the steering model has {} workers, not {workers}",
        model.workers()
    );
    // rings[s][d]: from worker s to worker d.
    let rings: Vec<Vec<Option<Arc<ArrayQueue<B>>>>> = (0..workers)
        .map(|s| {
            (0..workers)
                .map(|d| (s != d).then(|| Arc::new(ArrayQueue::new(queue_size))))
                .collect()
        })
        .collect();
    (0..workers)
        .map(|id| SteerLinks {
            id,
            model: model.clone(),
            to: rings[id].clone(),
            from: (0..workers)
                .filter(|&s| s != id)
                .map(|s| rings[s][id].clone().expect("a ring between two workers"))
                .collect(),
            next_from: 0,
        })
        .collect()
}

impl<B> SteerLinks<B> {
    /// This worker's number.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The model the owners come from.
    pub fn model(&self) -> &Arc<RssModel> {
        &self.model
    }

    /// The worker other than this one that owns `frame`'s flow, if any:
    /// `None` when it is ours or belongs to no flow (ARP, non-IPv4).
    #[inline]
    pub fn foreign_owner(&self, frame: &[u8]) -> Option<usize> {
        self.model
            .worker_of_frame(frame)
            .filter(|&owner| owner != self.id)
    }

    /// Whether every ring out of this worker has room for `packets` more:
    /// then a burst of that many, pulled now, can be handed over whoever
    /// owns its packets (only this worker pushes into these rings, so their
    /// room can only grow until it does).
    #[inline]
    pub fn has_room_for(&self, packets: usize) -> bool {
        self.to
            .iter()
            .flatten()
            .all(|ring| ring.capacity() - ring.len() >= packets)
    }

    /// Hand `pkt` to worker `owner`; gives it back if that ring is full.
    #[inline]
    pub fn hand_off(&self, owner: usize, pkt: B) -> Result<(), B> {
        match &self.to[owner] {
            Some(ring) => ring.push(pkt),
            None => Err(pkt),
        }
    }

    /// Take up to `max` packets handed to this worker, passing each to
    /// `f`, the rings read in turn. Returns how many.
    #[inline]
    pub fn receive(&mut self, max: usize, mut f: impl FnMut(B)) -> usize {
        let rings = self.from.len();
        let mut taken = 0;
        for k in 0..rings {
            let ring = &self.from[(self.next_from + k) % rings];
            while taken < max {
                let Some(pkt) = ring.pop() else { break };
                f(pkt);
                taken += 1;
            }
            if taken == max {
                break;
            }
        }
        if rings > 0 {
            self.next_from = (self.next_from + 1) % rings;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    fn udp_frame(src: Ipv4Addr, sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[14 + 12..14 + 16].copy_from_slice(&src.octets());
        f[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&7u16.to_be_bytes());
        f
    }

    #[test]
    fn every_packet_reaches_its_owner_once() {
        let workers = 3;
        let model = Arc::new(RssModel::software(workers as u16));
        let mut links: Vec<SteerLinks<Vec<u8>>> = links(workers, 4096, model.clone());
        // Every worker "receives" every flow; foreign ones are handed off.
        let mut processed: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
        for (rx, link) in links.iter().enumerate() {
            for sport in 0..1000u16 {
                let f = udp_frame(Ipv4Addr::new(198, 18, 0, 1 + rx as u8), 1000 + sport);
                match link.foreign_owner(&f) {
                    Some(owner) => link.hand_off(owner, f).unwrap(),
                    None => processed.entry(f).or_default().push(rx),
                }
            }
        }
        for (w, link) in links.iter_mut().enumerate() {
            let mut got = Vec::new();
            while link.receive(32, |f| got.push(f)) > 0 {}
            for f in got {
                assert_eq!(link.foreign_owner(&f), None, "handed to a non-owner");
                processed.entry(f).or_default().push(w);
            }
        }
        assert_eq!(processed.len(), 3000);
        let mut per_worker = vec![0; workers];
        for (f, by) in &processed {
            assert_eq!(by.len(), 1, "processed by {by:?}");
            assert_eq!(Some(by[0]), model.worker_of_frame(f));
            per_worker[by[0]] += 1;
        }
        assert!(per_worker.iter().all(|&n| n > 800), "{per_worker:?}");
    }

    #[test]
    fn a_full_ring_gives_the_packet_back_and_receive_is_bounded() {
        let model = Arc::new(RssModel::software(2));
        let mut links: Vec<SteerLinks<u32>> = links(2, 4, model);
        for i in 0..4 {
            links[0].hand_off(1, i).unwrap();
        }
        assert_eq!(links[0].hand_off(1, 99), Err(99));
        assert_eq!(links[0].hand_off(0, 5), Err(5), "no ring to itself");
        let mut got = Vec::new();
        assert_eq!(links[1].receive(3, |p| got.push(p)), 3);
        assert_eq!(links[1].receive(3, |p| got.push(p)), 1);
        assert_eq!(got, [0, 1, 2, 3], "in order");
        assert_eq!(links[0].receive(8, |_| ()), 0);
    }

    #[test]
    fn room_is_checked_on_every_outgoing_ring() {
        let model = Arc::new(RssModel::software(3));
        let mut links: Vec<SteerLinks<u32>> = links(3, 4, model);
        assert!(links[0].has_room_for(4));
        assert!(!links[0].has_room_for(5));
        links[0].hand_off(2, 1).unwrap();
        assert!(links[0].has_room_for(3), "3 left towards worker 2");
        assert!(!links[0].has_room_for(4), "the ring to worker 2 counts");
        assert!(links[1].has_room_for(4), "other workers' rings do not");
        // Only the owner's draining gives room back.
        assert_eq!(links[2].receive(8, |_| ()), 1);
        assert!(links[0].has_room_for(4));
    }
}
