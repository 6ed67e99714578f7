//! Receive-side scaling: the Toeplitz hash, the symmetric key and queue steering.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

/// The symmetric Toeplitz key: the 16-bit pattern 0x6d5a repeated. With it the
/// hash of (src, dst, sport, dport) equals the hash of (dst, src, dport, sport),
/// so both directions of a flow land on the same queue (Woo and Park, "Scalable
/// TCP Session Monitoring with Symmetric Receive-side Scaling", 2012). 52 bytes:
/// the longest key a common NIC takes; ports that want 40 use the prefix.
pub const SYMMETRIC_RSS_KEY: [u8; 52] = [
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a,
];

/// The Toeplitz hash of `input` under `key`, bit by bit, as NICs compute it
/// for RSS (Microsoft, "RSS hashing functions"): for every set bit of the
/// input, most significant first, XOR in the 32 key bits that start at that
/// bit's position.
///
/// This is the reference version; [`Toeplitz`] gives the same results from
/// precomputed tables, several times faster.
///
/// # Panics
/// If `key` is shorter than `input.len() + 4` bytes.
pub fn toeplitz_hash(key: &[u8], input: &[u8]) -> u32 {
    assert!(
        key.len() >= input.len() + 4,
        "Toeplitz key of {} bytes is too short for {} input bytes",
        key.len(),
        input.len()
    );
    let mut result = 0u32;
    // The 32 key bits aligned with the current input bit.
    let mut window = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    for (i, &byte) in input.iter().enumerate() {
        let next = key[i + 4];
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    result
}

/// The 12-byte RSS input for TCP or UDP over IPv4, in the order NICs hash it:
/// source address, destination address, source port, destination port, all
/// big-endian.
pub fn ipv4_l4_input(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> [u8; 12] {
    let mut input = [0u8; 12];
    input[0..4].copy_from_slice(&src.octets());
    input[4..8].copy_from_slice(&dst.octets());
    input[8..10].copy_from_slice(&sport.to_be_bytes());
    input[10..12].copy_from_slice(&dport.to_be_bytes());
    input
}

/// The 8-byte RSS input for IPv4 without ports: source then destination.
pub fn ipv4_input(src: Ipv4Addr, dst: Ipv4Addr) -> [u8; 8] {
    let mut input = [0u8; 8];
    input[0..4].copy_from_slice(&src.octets());
    input[4..8].copy_from_slice(&dst.octets());
    input
}

/// Input bytes that [`Toeplitz`] precomputes tables for: the IPv4 4-tuple.
const TABLE_BYTES: usize = 12;

/// A Toeplitz hasher with one 256-entry table per input byte (12 KiB), as
/// DPDK's `rte_thash` and NIC models do: hashing 12 bytes is 12 lookups and
/// XORs instead of 96 conditional XORs.
#[derive(Clone)]
pub struct Toeplitz {
    /// `tables[i][b]` is the hash contribution of byte value `b` at input
    /// position `i`.
    tables: Box<[[u32; 256]; TABLE_BYTES]>,
}

impl Toeplitz {
    /// Precomputes the tables for `key`.
    ///
    /// # Panics
    /// If `key` is shorter than 16 bytes (12 input bytes + 4).
    pub fn new(key: &[u8]) -> Toeplitz {
        assert!(
            key.len() >= TABLE_BYTES + 4,
            "Toeplitz key of {} bytes is too short: need at least {}",
            key.len(),
            TABLE_BYTES + 4
        );
        let mut tables = Box::new([[0u32; 256]; TABLE_BYTES]);
        for (i, table) in tables.iter_mut().enumerate() {
            // The key windows for the 8 bits of input byte i, MSB first.
            let wide = u64::from_be_bytes([
                key[i],
                key[i + 1],
                key[i + 2],
                key[i + 3],
                key.get(i + 4).copied().unwrap_or(0),
                0,
                0,
                0,
            ]);
            let windows: [u32; 8] = core::array::from_fn(|bit| (wide >> (32 - bit)) as u32);
            for (value, entry) in table.iter_mut().enumerate() {
                *entry = windows
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| value & (0x80 >> bit) != 0)
                    .fold(0, |acc, (_, w)| acc ^ w);
            }
        }
        Toeplitz { tables }
    }

    /// Hashes up to 12 input bytes (shorter inputs use the first tables).
    ///
    /// # Panics
    /// If `input` is longer than 12 bytes.
    pub fn hash(&self, input: &[u8]) -> u32 {
        assert!(
            input.len() <= TABLE_BYTES,
            "Toeplitz tables cover 12 input bytes"
        );
        input
            .iter()
            .zip(self.tables.iter())
            .fold(0, |acc, (&b, table)| acc ^ table[usize::from(b)])
    }

    /// The 32 key bits that input bit `bit` (0 = the first byte's most
    /// significant bit) XORs into the hash when it is set: what a hasher
    /// that works bit by bit (such as the AF_PACKET fanout program) needs.
    ///
    /// # Panics
    /// If `bit` is 96 or more (beyond the 12 input bytes).
    pub fn window(&self, bit: usize) -> u32 {
        self.tables[bit / 8][0x80 >> (bit % 8)]
    }

    /// The hash of a TCP or UDP over IPv4 packet, as the NIC computes it.
    pub fn hash_ipv4_l4(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        self.hash(&ipv4_l4_input(src, dst, sport, dport))
    }

    /// The hash of an IPv4 packet on addresses only, as the NIC computes it.
    pub fn hash_ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        self.hash(&ipv4_input(src, dst))
    }
}

impl core::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Toeplitz").finish_non_exhaustive()
    }
}

/// The RSS redirection table (RETA): maps a hash to an RX queue. The NIC
/// indexes it with the hash's low bits; software steering must use the same
/// table to agree with the NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectionTable {
    /// Queue of each entry; the length is a power of two.
    entries: Vec<u16>,
}

impl RedirectionTable {
    /// A table of `size` entries (a power of two such as 128 or 512) filled
    /// 0, 1, ..., n_queues - 1, 0, 1, ...: the default of most drivers.
    ///
    /// # Panics
    /// If `size` is not a power of two or `n_queues` is 0.
    pub fn new_round_robin(size: usize, n_queues: u16) -> RedirectionTable {
        assert!(n_queues > 0, "a redirection table needs at least one queue");
        Self::from_entries(
            (0..size)
                .map(|i| (i % usize::from(n_queues)) as u16)
                .collect(),
        )
    }

    /// A table with the given entries (as read back from a NIC).
    ///
    /// # Panics
    /// If the number of entries is not a power of two.
    pub fn from_entries(entries: Vec<u16>) -> RedirectionTable {
        assert!(
            entries.len().is_power_of_two(),
            "redirection table size {} is not a power of two",
            entries.len()
        );
        RedirectionTable { entries }
    }

    /// The queue that a packet with RSS hash `hash` lands on:
    /// `entries[hash mod size]`.
    pub fn queue_for_hash(&self, hash: u32) -> u16 {
        self.entries[hash as usize & (self.entries.len() - 1)]
    }

    /// The number of entries.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entries, for programming the NIC.
    pub fn entries(&self) -> &[u16] {
        &self.entries
    }
}

/// Which packet fields a port feeds the hash, per packet type (DPDK's
/// `rss_hf`): a NIC that does not hash UDP ports spreads UDP by addresses
/// only, and the model must do the same to agree with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashFields {
    /// Non-TCP/UDP IPv4 packets and fragments: addresses (else: queue 0).
    pub ipv4: bool,
    /// Unfragmented TCP over IPv4: addresses and ports (else: as `ipv4`).
    pub ipv4_tcp: bool,
    /// Unfragmented UDP over IPv4: addresses and ports (else: as `ipv4`).
    pub ipv4_udp: bool,
}

impl HashFields {
    /// Everything hashed: what shardnet asks a port for, and what software
    /// steering uses.
    pub const ALL: HashFields = HashFields {
        ipv4: true,
        ipv4_tcp: true,
        ipv4_udp: true,
    };
}

/// IP protocol numbers the model distinguishes.
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMP: u8 = 1;

/// How a port spreads packets over its queues, and which worker owns each
/// queue: the one model that both the steering of received packets and the
/// choice of source ports for active opens use, so that they agree by
/// construction. With a port that does RSS, the model is the port's own
/// configuration (key, redirection table, hash fields); with a port that does
/// not, it is what software steering enforces.
#[derive(Clone, Debug)]
pub struct RssModel {
    toeplitz: Toeplitz,
    reta: RedirectionTable,
    fields: HashFields,
    /// Owner worker of each queue.
    queue_owner: Vec<u16>,
}

impl RssModel {
    /// The model of a port hashing with `key` and `fields` into `reta`, where
    /// queue `q` belongs to worker `q` (shardnet's layout: queue pair i to
    /// worker i).
    ///
    /// # Panics
    /// If `key` is shorter than 16 bytes or `reta` names a queue at or beyond
    /// `queues`.
    pub fn new(key: &[u8], reta: RedirectionTable, fields: HashFields, queues: u16) -> RssModel {
        assert!(
            reta.entries().iter().all(|&q| q < queues),
            "the redirection table names a queue beyond the {queues} queues"
        );
        RssModel {
            toeplitz: Toeplitz::new(key),
            reta,
            fields,
            queue_owner: (0..queues).collect(),
        }
    }

    /// The model software steering enforces over `workers` workers: the
    /// symmetric key, every field hashed, a 128-entry round-robin table.
    pub fn software(workers: u16) -> RssModel {
        RssModel::new(
            &SYMMETRIC_RSS_KEY,
            RedirectionTable::new_round_robin(128, workers),
            HashFields::ALL,
            workers,
        )
    }

    /// The number of workers (queues).
    pub fn workers(&self) -> usize {
        self.queue_owner.len()
    }

    /// The redirection table.
    pub fn reta(&self) -> &RedirectionTable {
        &self.reta
    }

    /// The hash fields.
    pub fn fields(&self) -> HashFields {
        self.fields
    }

    /// The Toeplitz hasher of the model's key.
    pub fn toeplitz(&self) -> &Toeplitz {
        &self.toeplitz
    }

    /// The worker that owns the queue a packet with RSS hash `hash` lands on.
    #[inline]
    pub fn worker_of_hash(&self, hash: u32) -> usize {
        usize::from(self.queue_owner[usize::from(self.reta.queue_for_hash(hash))])
    }

    /// The hash the port computes for an IPv4 packet of `protocol` from
    /// `src:sport` to `dst:dport` (ports ignored unless the protocol's field
    /// is hashed; `fragment` packets are hashed on addresses). `None` where
    /// the port hashes nothing for it (it goes to queue 0).
    #[inline]
    pub fn hash_ipv4(
        &self,
        protocol: u8,
        fragment: bool,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
    ) -> Option<u32> {
        let with_ports = !fragment
            && match protocol {
                PROTO_TCP => self.fields.ipv4_tcp,
                PROTO_UDP => self.fields.ipv4_udp,
                _ => false,
            };
        if with_ports {
            Some(self.toeplitz.hash_ipv4_l4(src, dst, sport, dport))
        } else if self.fields.ipv4 {
            Some(self.toeplitz.hash_ipv4(src, dst))
        } else {
            None
        }
    }

    /// The worker that owns the flow of a received Ethernet frame, or `None`
    /// for frames that belong to no flow (not IPv4, truncated): any worker
    /// may handle those.
    ///
    /// An ICMP error (destination unreachable, time exceeded, ...) belongs
    /// to the flow it quotes, reversed: the worker that sent the quoted
    /// segment holds the connection it is about. A NIC cannot see that; the
    /// model can.
    pub fn worker_of_frame(&self, frame: &[u8]) -> Option<usize> {
        let ip = ipv4_payload_of_frame(frame)?;
        let flow = FlowFields::parse(ip)?;
        let flow = match flow.protocol {
            PROTO_ICMP if !flow.fragment => flow.quoted_flow(ip).unwrap_or(flow),
            _ => flow,
        };
        let hash = self.hash_ipv4(
            flow.protocol,
            flow.fragment,
            flow.src,
            flow.dst,
            flow.sport,
            flow.dport,
        );
        Some(hash.map_or(usize::from(self.queue_owner[0]), |h| self.worker_of_hash(h)))
    }
}

/// The addresses and ports of an unfragmented IPv4 TCP segment in an
/// Ethernet frame, as (source, source port, destination, destination port);
/// `None` for anything else. Reads only what the RSS hash reads, so a
/// caller may use it ahead of the full parse (the stack's burst prefetch).
#[inline]
pub fn tcp_flow_of_frame(frame: &[u8]) -> Option<(Ipv4Addr, u16, Ipv4Addr, u16)> {
    let flow = FlowFields::parse(ipv4_payload_of_frame(frame)?)?;
    (flow.protocol == PROTO_TCP && !flow.fragment)
        .then_some((flow.src, flow.sport, flow.dst, flow.dport))
}

/// The IPv4 packet in an Ethernet frame (untagged, EtherType 0x0800).
#[inline]
fn ipv4_payload_of_frame(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    Some(&frame[14..])
}

/// What the hash reads of an IPv4 packet.
#[derive(Clone, Copy, Debug)]
struct FlowFields {
    protocol: u8,
    fragment: bool,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
}

impl FlowFields {
    /// Addresses, protocol, and for unfragmented TCP and UDP the ports.
    #[inline]
    fn parse(ip: &[u8]) -> Option<FlowFields> {
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ihl < 20 || ip.len() < ihl {
            return None;
        }
        let protocol = ip[9];
        // More fragments, or a fragment offset: a fragment.
        let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let l4 = &ip[ihl..];
        let (sport, dport) = match protocol {
            PROTO_TCP | PROTO_UDP if !fragment && l4.len() >= 4 => (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
            ),
            PROTO_TCP | PROTO_UDP if !fragment => return None,
            _ => (0, 0),
        };
        Some(FlowFields {
            protocol,
            fragment,
            src,
            dst,
            sport,
            dport,
        })
    }

    /// For an ICMP error, the flow of the datagram it quotes, turned around
    /// (the quote is a packet we sent; its replies are what we receive).
    fn quoted_flow(&self, ip: &[u8]) -> Option<FlowFields> {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let icmp = ip.get(ihl..)?;
        // Destination unreachable, source quench, redirect, time exceeded,
        // parameter problem: a header and the start of the offending datagram.
        if !matches!(icmp.first()?, 3 | 4 | 5 | 11 | 12) {
            return None;
        }
        let quoted = FlowFields::parse(icmp.get(8..)?)?;
        Some(FlowFields {
            protocol: quoted.protocol,
            fragment: quoted.fragment,
            src: quoted.dst,
            dst: quoted.src,
            sport: quoted.dport,
            dport: quoted.sport,
        })
    }
}

/// Why no source port could be picked for an active open.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortPickError {
    /// Every port of the range whose replies come to this worker is in use
    /// towards this destination.
    #[error(
        "worker {worker} has no free source port towards {remote}:{remote_port}: all {share} \
         ports of the range {first}-{last} whose replies come back to this worker are in use \
         (widen the range, or spread the load over more destinations or workers)"
    )]
    Exhausted {
        /// The worker.
        worker: usize,
        /// The destination address.
        remote: Ipv4Addr,
        /// The destination port.
        remote_port: u16,
        /// Ports of the range that come home towards this destination.
        share: usize,
        /// The range's first port.
        first: u16,
        /// The range's last port.
        last: u16,
    },
    /// The port does not hash this protocol's ports, and the addresses alone
    /// send the replies to another worker: no source port can help.
    #[error(
        "replies from {remote} to {local} land on worker {home}, not {worker}, whatever the \
         source port (the port hashes {protocol} on addresses only): open it from worker {home}"
    )]
    OtherWorker {
        /// The worker that asked.
        worker: usize,
        /// The worker replies go to.
        home: usize,
        /// Our address.
        local: Ipv4Addr,
        /// The destination address.
        remote: Ipv4Addr,
        /// `"tcp"` or `"udp"`.
        protocol: &'static str,
    },
}

/// Source ports for active opens whose replies come home: the reply to a
/// connection from `local:lport` to `remote:rport` is hashed on
/// `(remote, local, rport, lport)`, and the Toeplitz hash is linear in its
/// input bits, so that hash is `base ^ P(lport)` with `base` the hash with
/// `lport` = 0 and `P(lport)` the contribution of `lport` alone. The queue is
/// `reta[(base ^ P(lport)) & mask]`: for a destination (fixed `base`), a
/// worker's ports are those whose `P(lport) & mask` lands, XORed with
/// `base`, on one of its table entries.
///
/// So the ports of the range are grouped once by `P(lport) & mask` (the
/// *class*); to pick one, the picker takes one of its worker's table entries
/// `i` (in turn) and the class `(base & mask) ^ i`: every port of that
/// class comes home, with no hash computed per candidate and nothing tried
/// and rejected for landing elsewhere (the retry loop of mTCP and F-Stack's
/// port choice). Candidates are skipped only when already in use towards the
/// same destination, which the caller decides (its connection table).
///
/// The classes are shared by every worker (read-only); each worker has its
/// own [`PortPicker`] with its own cursors.
#[derive(Debug)]
pub struct HomePorts {
    model: RssModel,
    first: u16,
    last: u16,
    mask: u32,
    /// Ports of the range by class.
    classes: Vec<Vec<u16>>,
}

impl HomePorts {
    /// Group the ports `first..=last` by class under `model`.
    ///
    /// # Panics
    /// If `first > last`.
    pub fn new(model: RssModel, first: u16, last: u16) -> HomePorts {
        assert!(first <= last, "empty port range {first}-{last}");
        let mask = (model.reta.len() - 1) as u32;
        let mut classes = vec![Vec::new(); model.reta.len()];
        for port in first..=last {
            let class = model.toeplitz.hash(&port_contribution_input(port)) & mask;
            classes[class as usize].push(port);
        }
        HomePorts {
            model,
            first,
            last,
            mask,
            classes,
        }
    }

    /// The model the ports were grouped under.
    pub fn model(&self) -> &RssModel {
        &self.model
    }

    /// The port range.
    pub fn range(&self) -> (u16, u16) {
        (self.first, self.last)
    }

    /// The picker of worker `worker`.
    pub fn picker(self: &std::sync::Arc<Self>, worker: usize) -> PortPicker {
        let entries = self
            .model
            .reta
            .entries()
            .iter()
            .enumerate()
            .filter(|&(_, &q)| usize::from(self.model.queue_owner[usize::from(q)]) == worker)
            .map(|(i, _)| i as u32)
            .collect();
        PortPicker {
            ports: self.clone(),
            worker,
            entries,
            next_entry: 0,
            next_in_class: vec![0; self.classes.len()],
        }
    }
}

/// The hash input that isolates a local port's contribution to the reply
/// hash: everything zero but the destination port (bytes 10-11).
fn port_contribution_input(port: u16) -> [u8; 12] {
    ipv4_l4_input(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, 0, port)
}

/// One worker's source-port chooser (see [`HomePorts`]).
#[derive(Debug)]
pub struct PortPicker {
    ports: std::sync::Arc<HomePorts>,
    worker: usize,
    /// The redirection-table entries that lead to this worker's queues.
    entries: Vec<u32>,
    next_entry: usize,
    /// Per class, where the next search starts (spreads the ports in use).
    next_in_class: Vec<u16>,
}

impl PortPicker {
    /// The worker this picker serves.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// The port range it picks from (first, last).
    pub fn range(&self) -> (u16, u16) {
        self.ports.range()
    }

    /// A source port from `local` to `remote:remote_port` over `protocol`
    /// (6 or 17) whose replies the port delivers to this picker's worker,
    /// and for which `in_use` says false. At most one pass over the worker's
    /// share of the range, none of it spent on ports that would land
    /// elsewhere.
    pub fn pick(
        &mut self,
        protocol: u8,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        remote_port: u16,
        mut in_use: impl FnMut(u16) -> bool,
    ) -> Result<u16, PortPickError> {
        let model = &self.ports.model;
        let protocol_name = if protocol == PROTO_UDP { "udp" } else { "tcp" };
        // The reply: from the remote end to us.
        let base = model.hash_ipv4(protocol, false, remote, local, remote_port, 0);
        let ports_hashed = match protocol {
            PROTO_UDP => model.fields.ipv4_udp,
            _ => model.fields.ipv4_tcp,
        };
        let base = match base {
            Some(base) if ports_hashed => base,
            // Addresses only, or nothing: the home is the same for every port.
            _ => {
                let home = base.map_or(usize::from(model.queue_owner[0]), |h| {
                    model.worker_of_hash(h)
                });
                return self.fixed_home(home, local, remote, remote_port, protocol_name, in_use);
            }
        };
        let base = base & self.ports.mask;
        let mut share = 0;
        for step in 0..self.entries.len() {
            let entry = self.entries[(self.next_entry + step) % self.entries.len()];
            let class = (base ^ entry) as usize;
            let candidates = &self.ports.classes[class];
            share += candidates.len();
            let start = usize::from(self.next_in_class[class]);
            for k in 0..candidates.len() {
                let at = (start + k) % candidates.len();
                let port = candidates[at];
                if !in_use(port) {
                    self.next_in_class[class] = ((at + 1) % candidates.len()) as u16;
                    self.next_entry = (self.next_entry + step + 1) % self.entries.len();
                    return Ok(port);
                }
            }
        }
        Err(PortPickError::Exhausted {
            worker: self.worker,
            remote,
            remote_port,
            share,
            first: self.ports.first,
            last: self.ports.last,
        })
    }

    /// Where the home does not depend on the port: the next free port if it
    /// is this worker, an error naming the right worker otherwise.
    fn fixed_home(
        &mut self,
        home: usize,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        remote_port: u16,
        protocol: &'static str,
        mut in_use: impl FnMut(u16) -> bool,
    ) -> Result<u16, PortPickError> {
        if home != self.worker {
            return Err(PortPickError::OtherWorker {
                worker: self.worker,
                home,
                local,
                remote,
                protocol,
            });
        }
        let (first, last) = (self.ports.first, self.ports.last);
        let span = u32::from(last - first) + 1;
        // The cursor of class 0 serves as the range's cursor here.
        let start = u32::from(self.next_in_class[0]) % span;
        for k in 0..span {
            let offset = (start + k) % span;
            let port = first + offset as u16;
            if !in_use(port) {
                self.next_in_class[0] = ((offset + 1) % span) as u16;
                return Ok(port);
            }
        }
        Err(PortPickError::Exhausted {
            worker: self.worker,
            remote,
            remote_port,
            share: span as usize,
            first,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Microsoft's default RSS key, from "Verifying the RSS Hash Calculation"
    /// (Windows driver docs), also in the Intel 82599 datasheet 7.1.2.8.3.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    /// The IPv4 rows of that table: (destination, destination port, source,
    /// source port, IPv4-only hash, IPv4-with-TCP hash). The published table
    /// lists the destination first; the hash input is source first.
    ///
    /// Cross-checked with an independent implementation of the published
    /// pseudocode, which reproduces all ten values:
    ///
    /// ```text
    /// def th(key, inp):
    ///     k = int.from_bytes(key, 'big'); kl = len(key) * 8; r = 0
    ///     for i in range(len(inp) * 8):
    ///         if (inp[i // 8] >> (7 - i % 8)) & 1:
    ///             r ^= (k >> (kl - 32 - i)) & 0xffffffff
    ///     return r
    /// # th(K, src + dst) and th(K, src + dst + pack('>HH', sport, dport))
    /// ```
    #[allow(clippy::type_complexity)]
    const MS_IPV4_ROWS: [([u8; 4], u16, [u8; 4], u16, u32, u32); 5] = [
        (
            [161, 142, 100, 80],
            1766,
            [66, 9, 149, 187],
            2794,
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            [65, 69, 140, 83],
            4739,
            [199, 92, 111, 2],
            14230,
            0xd718262a,
            0xc626b0ea,
        ),
        (
            [12, 22, 207, 184],
            38024,
            [24, 19, 198, 95],
            12898,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            [209, 142, 163, 6],
            2217,
            [38, 27, 205, 30],
            48228,
            0x82989176,
            0xafc7327f,
        ),
        (
            [202, 188, 127, 2],
            1303,
            [153, 39, 163, 191],
            44251,
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    #[test]
    fn microsoft_verification_table_bitwise() {
        for (dst, dport, src, sport, ipv4, ipv4_tcp) in MS_IPV4_ROWS {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            assert_eq!(
                toeplitz_hash(&MS_KEY, &ipv4_input(src, dst)),
                ipv4,
                "{src} -> {dst}"
            );
            assert_eq!(
                toeplitz_hash(&MS_KEY, &ipv4_l4_input(src, dst, sport, dport)),
                ipv4_tcp,
                "{src}:{sport} -> {dst}:{dport}"
            );
        }
    }

    #[test]
    fn microsoft_verification_table_tables() {
        let t = Toeplitz::new(&MS_KEY);
        for (dst, dport, src, sport, ipv4, ipv4_tcp) in MS_IPV4_ROWS {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            assert_eq!(t.hash_ipv4(src, dst), ipv4, "{src} -> {dst}");
            assert_eq!(
                t.hash_ipv4_l4(src, dst, sport, dport),
                ipv4_tcp,
                "{src}:{sport} -> {dst}:{dport}"
            );
        }
    }

    #[test]
    fn input_layout() {
        let input = ipv4_l4_input(
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(5, 6, 7, 8),
            0x0a0b,
            0x0c0d,
        );
        assert_eq!(input, [1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(
            ipv4_input(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8)),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
    }

    #[test]
    fn exact_minimum_key_works() {
        // 16 bytes is exactly enough for 12 input bytes, in both versions.
        let key = &MS_KEY[..16];
        let input = ipv4_l4_input(
            Ipv4Addr::new(66, 9, 149, 187),
            Ipv4Addr::new(161, 142, 100, 80),
            2794,
            1766,
        );
        assert_eq!(toeplitz_hash(key, &input), 0x51ccc178);
        assert_eq!(Toeplitz::new(key).hash(&input), 0x51ccc178);
    }

    #[test]
    #[should_panic(expected = "too short")]
    fn short_key_panics() {
        toeplitz_hash(&MS_KEY[..15], &[0u8; 12]);
    }

    #[test]
    fn round_robin_table() {
        let reta = RedirectionTable::new_round_robin(128, 4);
        assert_eq!(reta.len(), 128);
        for q in 0..4u16 {
            assert_eq!(reta.entries().iter().filter(|&&e| e == q).count(), 32);
        }
        assert_eq!(reta.queue_for_hash(0), 0);
        assert_eq!(reta.queue_for_hash(5), 1);
        // Only the low 7 bits matter.
        assert_eq!(reta.queue_for_hash(0xffff_ff80 | 6), 2);
        // Queue counts that do not divide the size still cover every queue.
        let reta = RedirectionTable::new_round_robin(512, 6);
        let counts: Vec<usize> = (0..6u16)
            .map(|q| reta.entries().iter().filter(|&&e| e == q).count())
            .collect();
        assert_eq!(counts, [86, 86, 85, 85, 85, 85]);
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn table_size_must_be_power_of_two() {
        RedirectionTable::new_round_robin(100, 4);
    }

    #[test]
    fn flows_spread_evenly_over_queues() {
        // 16384 client flows to one server port, as a load balancer would see
        // them, under the symmetric key: each of 4 queues gets its share
        // within 10%.
        let t = Toeplitz::new(&SYMMETRIC_RSS_KEY);
        let reta = RedirectionTable::new_round_robin(128, 4);
        let server = Ipv4Addr::new(10, 0, 0, 1);
        let mut counts = [0usize; 4];
        for client in 0..64u32 {
            for sport in 0..256u16 {
                let src = Ipv4Addr::from(0xc0a8_0000 | (client * 7919));
                let h = t.hash_ipv4_l4(src, server, 32768 + sport * 97, 443);
                counts[usize::from(reta.queue_for_hash(h))] += 1;
            }
        }
        let expected = 16384 / 4;
        for (q, &c) in counts.iter().enumerate() {
            assert!(
                c.abs_diff(expected) < expected / 10,
                "queue {q}: {c} of {counts:?}"
            );
        }
    }

    use std::collections::HashSet;
    use std::sync::Arc;

    const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// An Ethernet frame with an IPv4 header of `protocol` from `src` to
    /// `dst` and `l4` after it.
    fn frame(protocol: u8, src: Ipv4Addr, dst: Ipv4Addr, flags_frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0];
        ip[6..8].copy_from_slice(&flags_frag.to_be_bytes());
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f
    }

    fn ports_bytes(sport: u16, dport: u16) -> Vec<u8> {
        let mut l4 = sport.to_be_bytes().to_vec();
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&[0; 16]);
        l4
    }

    #[test]
    fn tcp_flow_of_frame_reads_whole_tcp_segments_only() {
        let remote = Ipv4Addr::new(198, 18, 0, 1);
        let tcp = frame(PROTO_TCP, remote, LOCAL, 0x4000, &ports_bytes(40000, 80));
        assert_eq!(tcp_flow_of_frame(&tcp), Some((remote, 40000, LOCAL, 80)));
        let udp = frame(PROTO_UDP, remote, LOCAL, 0, &ports_bytes(40000, 80));
        assert_eq!(tcp_flow_of_frame(&udp), None);
        // First and later fragments: the ports are not (all) there.
        for flags_frag in [0x2000, 0x0010] {
            let fragment = frame(PROTO_TCP, remote, LOCAL, flags_frag, &ports_bytes(1, 2));
            assert_eq!(tcp_flow_of_frame(&fragment), None, "{flags_frag:#x}");
        }
        // Cut short anywhere before the ports end: nothing.
        for len in 0..14 + 20 + 4 {
            assert_eq!(tcp_flow_of_frame(&tcp[..len]), None, "{len} bytes");
        }
        let mut vlan = tcp.clone();
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(tcp_flow_of_frame(&vlan), None);
    }

    #[test]
    fn frames_go_to_the_worker_of_their_hash() {
        let model = RssModel::software(4);
        let t = Toeplitz::new(&SYMMETRIC_RSS_KEY);
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 1), LOCAL);
        for sport in [1u16, 80, 4242, 65535] {
            for proto in [PROTO_TCP, PROTO_UDP] {
                let f = frame(proto, a, b, 0, &ports_bytes(sport, 80));
                let h = t.hash_ipv4_l4(a, b, sport, 80);
                assert_eq!(
                    model.worker_of_frame(&f),
                    Some(usize::from(model.reta().queue_for_hash(h)))
                );
                // Both directions of a flow have one owner (symmetric key).
                let back = frame(proto, b, a, 0, &ports_bytes(80, sport));
                assert_eq!(model.worker_of_frame(&back), model.worker_of_frame(&f));
            }
        }
        // Fragments and other protocols: the addresses only.
        let h2 = usize::from(model.reta().queue_for_hash(t.hash_ipv4(a, b)));
        assert_eq!(
            model.worker_of_frame(&frame(PROTO_UDP, a, b, 0x2000, &ports_bytes(1, 2))),
            Some(h2)
        );
        assert_eq!(
            model.worker_of_frame(&frame(47, a, b, 0, &ports_bytes(1, 2))),
            Some(h2)
        );
        // Not a flow: ARP, truncated, a TCP header cut short.
        let mut arp = frame(PROTO_UDP, a, b, 0, &ports_bytes(1, 2));
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(model.worker_of_frame(&arp), None);
        assert_eq!(model.worker_of_frame(&arp[..20]), None);
        assert_eq!(
            model.worker_of_frame(&frame(PROTO_TCP, a, b, 0, &[0, 1])),
            None
        );
    }

    #[test]
    fn an_icmp_error_goes_to_the_owner_of_the_flow_it_quotes() {
        let model = RssModel::software(4);
        let peer = Ipv4Addr::new(198, 18, 0, 1);
        let router = Ipv4Addr::new(198, 18, 0, 254);
        let mut seen = HashSet::new();
        for sport in 40000..40064u16 {
            // We sent LOCAL:sport -> peer:80; a router answers "frag needed".
            let quoted = frame(PROTO_TCP, LOCAL, peer, 0, &ports_bytes(sport, 80));
            let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
            icmp.extend_from_slice(&quoted[14..14 + 28]);
            let error = frame(PROTO_ICMP, router, LOCAL, 0, &icmp);
            let reply = frame(PROTO_TCP, peer, LOCAL, 0, &ports_bytes(80, sport));
            let owner = model.worker_of_frame(&reply);
            assert_eq!(model.worker_of_frame(&error), owner);
            seen.insert(owner);
        }
        assert_eq!(seen.len(), 4, "the quoted flows spread over all workers");
        // An echo request is hashed on its addresses.
        let echo = frame(PROTO_ICMP, peer, LOCAL, 0, &[8, 0, 0, 0, 0, 1, 0, 1]);
        let t = Toeplitz::new(&SYMMETRIC_RSS_KEY);
        assert_eq!(
            model.worker_of_frame(&echo),
            Some(usize::from(
                model.reta().queue_for_hash(t.hash_ipv4(peer, LOCAL))
            ))
        );
    }

    /// Every port of the range whose reply comes home to `worker`, by brute force.
    fn home_share(
        model: &RssModel,
        worker: usize,
        remote: Ipv4Addr,
        rport: u16,
        range: (u16, u16),
    ) -> HashSet<u16> {
        (range.0..=range.1)
            .filter(|&p| {
                let h = model.toeplitz().hash_ipv4_l4(remote, LOCAL, rport, p);
                model.worker_of_hash(h) == worker
            })
            .collect()
    }

    #[test]
    fn picked_ports_come_home_until_the_share_is_used_up() {
        for (workers, reta) in [(2u16, 128usize), (3, 512), (4, 128)] {
            let model = RssModel::new(
                &SYMMETRIC_RSS_KEY,
                RedirectionTable::new_round_robin(reta, workers),
                HashFields::ALL,
                workers,
            );
            let range = (50000, 53999);
            let ports = Arc::new(HomePorts::new(model.clone(), range.0, range.1));
            for worker in 0..usize::from(workers) {
                let remote = Ipv4Addr::new(198, 18, 1, 10 + worker as u8);
                let mut picker = ports.picker(worker);
                let mut used = HashSet::new();
                loop {
                    match picker.pick(PROTO_TCP, LOCAL, remote, 80, |p| used.contains(&p)) {
                        Ok(port) => {
                            assert!(used.insert(port), "{port} handed out twice");
                        }
                        Err(PortPickError::Exhausted {
                            share, worker: w, ..
                        }) => {
                            assert_eq!(w, worker);
                            assert_eq!(share, used.len());
                            break;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                // Exactly the ports that come home, all of them.
                assert_eq!(used, home_share(&model, worker, remote, 80, range));
                let expected = 4000 / usize::from(workers);
                assert!(
                    used.len().abs_diff(expected) < expected / 5,
                    "{} of {expected}",
                    used.len()
                );
            }
        }
    }

    #[test]
    fn a_port_in_use_towards_one_destination_is_free_towards_another() {
        let ports = Arc::new(HomePorts::new(RssModel::software(2), 60000, 60999));
        let mut picker = ports.picker(1);
        let a = picker
            .pick(PROTO_UDP, LOCAL, Ipv4Addr::new(198, 18, 0, 1), 7, |_| false)
            .unwrap();
        let b = picker
            .pick(PROTO_UDP, LOCAL, Ipv4Addr::new(198, 18, 0, 1), 7, |p| {
                p == a
            })
            .unwrap();
        assert_ne!(a, b);
        let exhausted = picker.pick(PROTO_TCP, LOCAL, Ipv4Addr::new(198, 18, 0, 1), 7, |_| true);
        let message = exhausted.unwrap_err().to_string();
        assert!(
            message.contains("worker 1 has no free source port towards 198.18.0.1:7"),
            "{message}"
        );
        assert!(message.contains("60000-60999"), "{message}");
    }

    #[test]
    fn without_port_hashing_the_addresses_decide() {
        let fields = HashFields {
            ipv4: true,
            ipv4_tcp: true,
            ipv4_udp: false,
        };
        let model = RssModel::new(
            &SYMMETRIC_RSS_KEY,
            RedirectionTable::new_round_robin(128, 2),
            fields,
            2,
        );
        let remote = Ipv4Addr::new(198, 18, 0, 1);
        let home = model.worker_of_hash(model.toeplitz().hash_ipv4(remote, LOCAL));
        let ports = Arc::new(HomePorts::new(model, 61000, 61003));
        let mut at_home = ports.picker(home);
        let mut used = Vec::new();
        for _ in 0..4 {
            let p = at_home
                .pick(PROTO_UDP, LOCAL, remote, 53, |p| used.contains(&p))
                .unwrap();
            used.push(p);
        }
        assert!(matches!(
            at_home.pick(PROTO_UDP, LOCAL, remote, 53, |p| used.contains(&p)),
            Err(PortPickError::Exhausted { share: 4, .. })
        ));
        let error = ports
            .picker(1 - home)
            .pick(PROTO_UDP, LOCAL, remote, 53, |_| false)
            .unwrap_err();
        assert_eq!(
            error,
            PortPickError::OtherWorker {
                worker: 1 - home,
                home,
                local: LOCAL,
                remote,
                protocol: "udp"
            }
        );
        // TCP ports are still hashed: the other worker gets TCP ports.
        assert!(ports
            .picker(1 - home)
            .pick(PROTO_TCP, LOCAL, remote, 53, |_| false)
            .is_ok());
    }

    proptest! {
        #[test]
        fn tcp_flow_of_frame_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = tcp_flow_of_frame(&bytes);
        }

        #[test]
        fn tables_match_bitwise(key in proptest::collection::vec(any::<u8>(), 16..52), input in proptest::collection::vec(any::<u8>(), 0..=12)) {
            prop_assert_eq!(Toeplitz::new(&key).hash(&input), toeplitz_hash(&key, &input));
        }

        #[test]
        fn any_picked_port_comes_home(remote in any::<u32>(), rport in any::<u16>(), worker in 0usize..4, udp in any::<bool>()) {
            let remote = Ipv4Addr::from(remote);
            static PORTS: std::sync::LazyLock<Arc<HomePorts>> = std::sync::LazyLock::new(|| {
                Arc::new(HomePorts::new(RssModel::software(4), 1024, 65535))
            });
            let ports = &*PORTS;
            let proto = if udp { PROTO_UDP } else { PROTO_TCP };
            let port = ports.picker(worker).pick(proto, LOCAL, remote, rport, |_| false).unwrap();
            let reply = frame(proto, remote, LOCAL, 0, &ports_bytes(rport, port));
            prop_assert_eq!(ports.model().worker_of_frame(&reply), Some(worker));
        }

        #[test]
        fn symmetric_key_is_symmetric(a in any::<u32>(), b in any::<u32>(), p in any::<u16>(), q in any::<u16>()) {
            let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            let t = Toeplitz::new(&SYMMETRIC_RSS_KEY);
            prop_assert_eq!(t.hash_ipv4_l4(a, b, p, q), t.hash_ipv4_l4(b, a, q, p));
            prop_assert_eq!(t.hash_ipv4(a, b), t.hash_ipv4(b, a));
            // The 40-byte prefix, for ports that take 40-byte keys.
            let key40 = &SYMMETRIC_RSS_KEY[..40];
            prop_assert_eq!(
                toeplitz_hash(key40, &ipv4_l4_input(a, b, p, q)),
                toeplitz_hash(key40, &ipv4_l4_input(b, a, q, p))
            );
        }
    }
}
