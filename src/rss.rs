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

    proptest! {
        #[test]
        fn tables_match_bitwise(key in proptest::collection::vec(any::<u8>(), 16..52), input in proptest::collection::vec(any::<u8>(), 0..=12)) {
            prop_assert_eq!(Toeplitz::new(&key).hash(&input), toeplitz_hash(&key, &input));
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
