//! The Internet checksum of `shardnet::wire::checksum::data` against the loop
//! it replaced (one `u64` add-with-carry chain, kept here as the baseline),
//! side by side in one run, for the sizes the stack sums: a full-size TCP
//! segment (1480 bytes: header and 1460 of payload), a small request (64) and
//! a 9000-byte jumbo frame. Both must agree on every input before anything
//! is timed.
//!
//!     cargo run --release --example checksum [ROUNDS]
//!
//! Prints, per size, nanoseconds per sum for each and the ratio
//! baseline / shardnet (above 1: shardnet is faster).

use std::hint::black_box;
use std::time::Instant;

use shardnet::wire::checksum;

/// The previous implementation: eight bytes at a time, one carry chain.
fn baseline(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let (sum, carry) = acc.overflowing_add(u64::from_ne_bytes(word));
        acc = sum + u64::from(carry);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        let (sum, carry) = acc.overflowing_add(u64::from_ne_bytes(word));
        acc = sum + u64::from(carry);
    }
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    u16::from_be(acc as u16)
}

/// Nanoseconds per call of `f` over `bufs`, best of `rounds` rounds (the
/// least disturbed by the rest of the machine).
fn time(f: fn(&[u8]) -> u16, bufs: &[Vec<u8>], rounds: usize) -> f64 {
    let per_round = 200_000;
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut x = 0u16;
        for i in 0..per_round {
            x ^= f(black_box(&bufs[i % bufs.len()]));
        }
        black_box(x);
        best = best.min(start.elapsed().as_nanos() as f64 / per_round as f64);
    }
    best
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("usage: checksum [ROUNDS]"))
        .unwrap_or(15);
    println!(
        "{:>6} {:>12} {:>12} {:>8}",
        "bytes", "baseline ns", "shardnet ns", "ratio"
    );
    for size in [64usize, 1480, 9000] {
        // 64 buffers of pseudo-random bytes, at odd and even alignments.
        let mut seed = 0x9e37_79b9_u32;
        let bufs: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                (0..size)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 17;
                        seed ^= seed << 5;
                        seed as u8
                    })
                    .collect()
            })
            .collect();
        for b in &bufs {
            assert_eq!(baseline(b), checksum::data(b), "the two sums disagree");
            assert_eq!(baseline(&b[1..]), checksum::data(&b[1..]));
        }
        // Interleaved, so that both see the same machine.
        let (mut base, mut ours) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            base = base.min(time(baseline, &bufs, rounds));
            ours = ours.min(time(checksum::data, &bufs, rounds));
        }
        println!("{size:>6} {base:>12.1} {ours:>12.1} {:>8.2}", base / ours);
    }
}
