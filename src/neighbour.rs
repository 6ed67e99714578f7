//! The neighbour (ARP) cache.
//!
//! ARP frames carry no flow hash, so a NIC's RSS delivers them all to one queue:
//! the worker that learns a neighbour is rarely the one that next needs it. Each
//! worker keeps its own cache (no lock on lookup) and tells the others what it
//! learnt through a bounded lock-free mailbox per worker; a worker drains its
//! mailbox once per poll loop. A full mailbox loses the update (counted by the
//! sender as `lost_updates`); the next ARP exchange repairs it.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use hashbrown::HashMap;

use crate::wire::EthernetAddress;

/// How long a learnt neighbour stays valid without being refreshed.
pub const NEIGHBOUR_TTL_NS: u64 = 60_000_000_000;

/// Most updates a mailbox holds before new ones are dropped.
pub const MAILBOX_CAPACITY: usize = 256;

/// Most neighbours one cache holds; past it the oldest-expiring is evicted.
pub const CACHE_CAPACITY: usize = 1024;

/// One learnt mapping, as posted between workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourUpdate {
    /// The neighbour's IPv4 address.
    pub ip: Ipv4Addr,
    /// Its hardware address.
    pub mac: EthernetAddress,
    /// Monotonic nanoseconds when it was learnt.
    pub learnt_ns: u64,
}

/// The mailboxes of all workers, created once by the control thread.
#[derive(Clone, Debug)]
pub struct NeighbourMailboxes {
    boxes: Arc<[ArrayQueue<NeighbourUpdate>]>,
}

impl NeighbourMailboxes {
    /// Mailboxes for `workers` workers.
    pub fn new(workers: usize) -> Self {
        NeighbourMailboxes {
            boxes: (0..workers)
                .map(|_| ArrayQueue::new(MAILBOX_CAPACITY))
                .collect(),
        }
    }

    /// The cache of worker `id`, wired to every mailbox.
    pub fn cache_for(&self, id: usize) -> NeighbourCache {
        NeighbourCache {
            id,
            entries: HashMap::with_capacity(64),
            mailboxes: self.boxes.clone(),
            lost_updates: 0,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: EthernetAddress,
    expires_ns: u64,
}

/// One worker's neighbour cache.
#[derive(Debug)]
pub struct NeighbourCache {
    id: usize,
    entries: HashMap<Ipv4Addr, Entry>,
    mailboxes: Arc<[ArrayQueue<NeighbourUpdate>]>,
    /// Updates that could not be posted because a peer's mailbox was full.
    pub lost_updates: u64,
}

impl NeighbourCache {
    /// Record that `ip` is at `mac`, and tell the other workers.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: EthernetAddress, now_ns: u64) {
        let changed = self
            .entries
            .get(&ip)
            .is_none_or(|e| e.mac != mac || e.expires_ns < now_ns + NEIGHBOUR_TTL_NS / 2);
        self.insert(ip, mac, now_ns);
        if !changed {
            return; // refreshed recently: spare the mailboxes
        }
        let update = NeighbourUpdate {
            ip,
            mac,
            learnt_ns: now_ns,
        };
        for (peer, mailbox) in self.mailboxes.iter().enumerate() {
            if peer != self.id && mailbox.push(update).is_err() {
                self.lost_updates += 1;
            }
        }
    }

    fn insert(&mut self, ip: Ipv4Addr, mac: EthernetAddress, learnt_ns: u64) {
        if self.entries.len() >= CACHE_CAPACITY && !self.entries.contains_key(&ip) {
            if let Some(victim) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires_ns)
                .map(|(ip, _)| *ip)
            {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(
            ip,
            Entry {
                mac,
                expires_ns: learnt_ns + NEIGHBOUR_TTL_NS,
            },
        );
    }

    /// Take in what the other workers learnt. Returns how many updates it read.
    pub fn drain_mailbox(&mut self) -> usize {
        let mut n = 0;
        while let Some(update) = self.mailboxes[self.id].pop() {
            self.insert(update.ip, update.mac, update.learnt_ns);
            n += 1;
        }
        n
    }

    /// The hardware address of `ip`, if known and not expired.
    pub fn lookup(&self, ip: Ipv4Addr, now_ns: u64) -> Option<EthernetAddress> {
        self.entries
            .get(&ip)
            .filter(|e| e.expires_ns > now_ns)
            .map(|e| e.mac)
    }

    /// Number of entries (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa]);
    const MAC_B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb]);

    #[test]
    fn learnt_on_one_worker_known_on_all() {
        let boxes = NeighbourMailboxes::new(3);
        let mut caches: Vec<_> = (0..3).map(|i| boxes.cache_for(i)).collect();
        let ip = Ipv4Addr::new(198, 18, 0, 1);
        caches[1].learn(ip, MAC_A, 1_000);
        assert_eq!(caches[1].lookup(ip, 2_000), Some(MAC_A));
        assert_eq!(caches[0].lookup(ip, 2_000), None);
        assert_eq!(caches[0].drain_mailbox(), 1);
        assert_eq!(caches[2].drain_mailbox(), 1);
        assert_eq!(caches[1].drain_mailbox(), 0, "no echo to the learner");
        for cache in &caches {
            assert_eq!(cache.lookup(ip, 2_000), Some(MAC_A));
        }
    }

    #[test]
    fn entries_expire_and_change() {
        let boxes = NeighbourMailboxes::new(1);
        let mut cache = boxes.cache_for(0);
        let ip = Ipv4Addr::new(198, 18, 0, 1);
        cache.learn(ip, MAC_A, 0);
        assert_eq!(cache.lookup(ip, NEIGHBOUR_TTL_NS - 1), Some(MAC_A));
        assert_eq!(cache.lookup(ip, NEIGHBOUR_TTL_NS), None);
        cache.learn(ip, MAC_B, NEIGHBOUR_TTL_NS);
        assert_eq!(cache.lookup(ip, NEIGHBOUR_TTL_NS + 1), Some(MAC_B));
    }

    #[test]
    fn full_mailbox_loses_updates_and_counts_them() {
        let boxes = NeighbourMailboxes::new(2);
        let mut cache = boxes.cache_for(0);
        for i in 0..(MAILBOX_CAPACITY as u32 + 10) {
            cache.learn(Ipv4Addr::from(0xc612_0000 + i), MAC_A, 0);
        }
        assert_eq!(cache.lost_updates, 10);
        let mut peer = boxes.cache_for(1);
        assert_eq!(peer.drain_mailbox(), MAILBOX_CAPACITY);
    }

    #[test]
    fn capacity_is_bounded() {
        let boxes = NeighbourMailboxes::new(1);
        let mut cache = boxes.cache_for(0);
        for i in 0..(CACHE_CAPACITY as u32 * 2) {
            cache.learn(Ipv4Addr::from(0xc612_0000 + i), MAC_A, u64::from(i));
        }
        assert_eq!(cache.len(), CACHE_CAPACITY);
    }
}
