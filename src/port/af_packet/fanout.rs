//! The classic BPF program that makes a `PACKET_FANOUT_CBPF` group pick, for
//! every received packet, the queue that shardnet's RSS model
//! ([`RssModel`]) says owns its flow, so that workers need not hand packets
//! to each other (software steering stays as the safety net).
//!
//! The program computes the model's symmetric Toeplitz hash bit by bit:
//! classic BPF has no loops and no tables, but the hash of a fixed-size input
//! is an unrolled sequence: for each of the 96 input bits (source address,
//! destination address, source port, destination port), if it is set, XOR in
//! the 32-bit key window at that bit (constants precomputed here). The low
//! bits of the hash then index the model's redirection table.
//!
//! What it classifies as the model does:
//! - unfragmented TCP and UDP over IPv4: addresses and ports;
//! - other IPv4 packets and fragments (more-fragments or an offset):
//!   addresses only, so every fragment of a datagram lands together, on the
//!   owner of the address hash;
//! - anything else (not IPv4, a bad header length): queue 0. The model
//!   gives such frames no owner.
//!
//! The one case where the model and the program differ: ICMP errors belong
//! to the flow they quote in the model; the program hashes them on their
//! addresses, and the receiving worker steers them in software.
//!
//! Loads are relative to the network header (`SKF_NET_OFF`) and the
//! EtherType is read from the socket buffer (`SKF_AD_PROTOCOL`), so the
//! program does not depend on where the kernel's packet data starts. A load
//! beyond the packet ends a classic BPF program with 0: queue 0.
#![forbid(unsafe_code)]

use crate::rss::RssModel;

/// One classic BPF instruction.
pub(crate) type Insn = libc::sock_filter;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub(crate) const MAX_INSNS: usize = 4096;

// Opcodes, from the libc constants (`u32` there, `u16` in `sock_filter`).
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const LD_W_IND: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_IND) as u16;
const LD_IMM: u16 = (libc::BPF_LD | libc::BPF_IMM) as u16;
const LD_MEM: u16 = (libc::BPF_LD | libc::BPF_MEM) as u16;
const LDX_IMM: u16 = (libc::BPF_LDX | libc::BPF_IMM) as u16;
const LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
const ST: u16 = libc::BPF_ST as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const XOR_K: u16 = (libc::BPF_ALU | libc::BPF_XOR | libc::BPF_K) as u16;
const MOD_K: u16 = (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;
const TAX: u16 = (libc::BPF_MISC | libc::BPF_TAX) as u16;
const TXA: u16 = (libc::BPF_MISC | libc::BPF_TXA) as u16;

/// `k` of a load `off` bytes into the network header.
const fn net(off: u32) -> u32 {
    (libc::SKF_NET_OFF as u32).wrapping_add(off)
}
/// `k` of the load of the EtherType (host order).
const PROTOCOL: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32;

// Scratch memory words.
/// The ports word (source port << 16 | destination port), 0 without ports.
const M_PORTS: u32 = 0;
/// 1 when the ports are hashed.
const M_WITH_PORTS: u32 = 1;
/// The input word being hashed.
const M_INPUT: u32 = 2;

const ETHERTYPE_IPV4: u32 = 0x0800;
const PROTO_TCP: u32 = 6;
const PROTO_UDP: u32 = 17;

/// A jump target, resolved when the program is complete.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    /// The next instruction.
    Next,
    Other,
    Ports,
    Addresses,
    Hash,
    Hash2,
    Tail,
}

struct Assembler {
    insns: Vec<Insn>,
    /// Instructions whose jt, jf (conditional) or k (`ja`) name a label.
    fixups: Vec<(usize, Label, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Assembler {
    fn op(&mut self, code: u16, k: u32) {
        self.insns.push(Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        });
    }

    fn jump(&mut self, code: u16, k: u32, jt: Label, jf: Label) {
        self.fixups.push((self.insns.len(), jt, jf));
        self.op(code, k);
    }

    fn label(&mut self, label: Label) {
        self.labels.push((label, self.insns.len()));
    }

    fn finish(mut self) -> Result<Vec<Insn>, String> {
        let at = |labels: &[(Label, usize)], label| {
            labels
                .iter()
                .find(|(l, _)| *l == label)
                .map(|&(_, i)| i)
                .ok_or("a jump to a missing label")
        };
        for &(i, jt, jf) in &self.fixups {
            let offset = |label| -> Result<u32, String> {
                if label == Label::Next {
                    return Ok(0);
                }
                let target = at(&self.labels, label)?;
                if target <= i {
                    return Err("a backward jump".to_owned());
                }
                Ok((target - i - 1) as u32)
            };
            let (t, f) = (offset(jt)?, offset(jf)?);
            let insn = &mut self.insns[i];
            if insn.code == JA {
                insn.k = t;
            } else {
                insn.jt = u8::try_from(t).map_err(|_| "a conditional jump beyond 255")?;
                insn.jf = u8::try_from(f).map_err(|_| "a conditional jump beyond 255")?;
            }
        }
        if self.insns.len() > MAX_INSNS {
            return Err(format!(
                "{} instructions, more than the kernel's {MAX_INSNS}",
                self.insns.len()
            ));
        }
        Ok(self.insns)
    }

    /// XOR into X (the hash) the windows of the set bits of the word in
    /// M_INPUT (also in A), input bits `first..first + 32`.
    fn hash_word(&mut self, model: &RssModel, first: usize) {
        for bit in 0..32 {
            // Bit clear: skip the 4 instructions that XOR its window in.
            self.insns.push(Insn {
                code: JSET_K,
                jt: 0,
                jf: 4,
                k: 1 << (31 - bit),
            });
            self.op(TXA, 0);
            self.op(XOR_K, model.toeplitz().window(first + bit));
            self.op(TAX, 0);
            self.op(LD_MEM, M_INPUT);
        }
    }
}

/// The fanout program for a group whose `i`-th member is the queue of
/// worker `i` under `model`. An error (a model the program cannot express)
/// is a one-sentence reason.
pub(crate) fn program(model: &RssModel) -> Result<Vec<Insn>, String> {
    let fields = model.fields();
    let mut a = Assembler {
        insns: Vec::with_capacity(600),
        fixups: Vec::new(),
        labels: Vec::new(),
    };
    // IPv4 with a header of at least 20 bytes, else queue 0.
    a.op(LD_W_ABS, PROTOCOL);
    a.jump(JEQ_K, ETHERTYPE_IPV4, Label::Next, Label::Other);
    a.op(LD_B_ABS, net(0));
    a.op(AND_K, 0xf0);
    a.jump(JEQ_K, 0x40, Label::Next, Label::Other);
    a.op(LDX_B_MSH, net(0));
    a.op(TXA, 0);
    a.jump(JGE_K, 20, Label::Next, Label::Other);
    // Fragments: addresses only.
    a.op(LD_H_ABS, net(6));
    a.jump(JSET_K, 0x3fff, Label::Addresses, Label::Next);
    let with_ports = |hashed| {
        if hashed {
            Label::Ports
        } else {
            Label::Addresses
        }
    };
    a.op(LD_B_ABS, net(9));
    a.jump(JEQ_K, PROTO_TCP, with_ports(fields.ipv4_tcp), Label::Next);
    a.jump(
        JEQ_K,
        PROTO_UDP,
        with_ports(fields.ipv4_udp),
        Label::Addresses,
    );

    // Close to the checks (conditional jumps reach 255 instructions).
    a.label(Label::Other);
    a.op(RET_K, 0);

    a.label(Label::Ports);
    // X still holds the header length.
    a.op(LD_W_IND, net(0));
    a.op(ST, M_PORTS);
    a.op(LD_IMM, 1);
    a.op(ST, M_WITH_PORTS);
    a.jump(JA, 0, Label::Hash, Label::Next);

    a.label(Label::Addresses);
    if !fields.ipv4 {
        // The model hashes nothing here: queue 0.
        a.op(RET_K, 0);
    }
    // Both paths store every scratch word the program reads: the kernel's
    // checker wants each read preceded by a write on every path.
    a.op(LD_IMM, 0);
    a.op(ST, M_PORTS);
    a.op(ST, M_WITH_PORTS);

    a.label(Label::Hash);
    a.op(LDX_IMM, 0);
    for (word, offset) in [(0, 12), (1, 16)] {
        a.op(LD_W_ABS, net(offset));
        a.op(ST, M_INPUT);
        a.hash_word(model, word * 32);
    }
    a.op(LD_MEM, M_WITH_PORTS);
    a.jump(JEQ_K, 0, Label::Next, Label::Hash2);
    a.jump(JA, 0, Label::Tail, Label::Next);
    a.label(Label::Hash2);
    a.op(LD_MEM, M_PORTS);
    a.op(ST, M_INPUT);
    a.hash_word(model, 64);

    a.label(Label::Tail);
    a.op(TXA, 0);
    let reta = model.reta();
    a.op(AND_K, (reta.len() - 1) as u32);
    // The owner of each table entry: the group member to return.
    let owners: Vec<u32> = (0..reta.len())
        .map(|h| model.worker_of_hash(h as u32) as u32)
        .collect();
    let workers = model.workers() as u32;
    if owners
        .iter()
        .enumerate()
        .all(|(i, &o)| o == i as u32 % workers)
    {
        // Round-robin (shardnet's software table): entry % workers.
        a.op(MOD_K, workers);
        a.op(RET_A, 0);
    } else {
        // Any other table: runs of equal owners, from the last down.
        let mut end = owners.len();
        while end > 0 {
            let owner = owners[end - 1];
            let start = owners[..end]
                .iter()
                .rposition(|&o| o != owner)
                .map_or(0, |i| i + 1);
            if start > 0 {
                a.insns.push(Insn {
                    code: JGE_K,
                    jt: 0,
                    jf: 1,
                    k: start as u32,
                });
            }
            a.op(RET_K, owner);
            end = start;
        }
    }
    a.finish()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::rss::{HashFields, RedirectionTable, SYMMETRIC_RSS_KEY};

    /// A classic BPF interpreter for the instructions [`program`] emits, with
    /// the kernel's semantics: loads relative to the network header
    /// (`SKF_NET_OFF`) read `ip`, `SKF_AD_PROTOCOL` is `ethertype`, and a load
    /// beyond the packet ends the program with 0.
    fn run(prog: &[Insn], ethertype: u16, ip: &[u8]) -> u32 {
        let load = |k: u32, size: usize| -> Option<u32> {
            if k == PROTOCOL {
                return Some(u32::from(ethertype));
            }
            let off = usize::try_from(k.wrapping_sub(libc::SKF_NET_OFF as u32)).ok()?;
            let bytes = ip.get(off..off.checked_add(size)?)?;
            Some(bytes.iter().fold(0, |acc, &b| acc << 8 | u32::from(b)))
        };
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0;
        for _ in 0..MAX_INSNS {
            let Insn { code, jt, jf, k } = prog[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { jt } else { jf });
            match code {
                LD_W_ABS | LD_H_ABS | LD_B_ABS | LD_W_IND => {
                    let size = match code {
                        LD_H_ABS => 2,
                        LD_B_ABS => 1,
                        _ => 4,
                    };
                    let k = if code == LD_W_IND {
                        k.wrapping_add(x)
                    } else {
                        k
                    };
                    match load(k, size) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                LDX_B_MSH => match load(k, 1) {
                    Some(v) => x = (v & 0xf) * 4,
                    None => return 0,
                },
                LD_IMM => a = k,
                LDX_IMM => x = k,
                LD_MEM => a = mem[k as usize],
                ST => mem[k as usize] = a,
                AND_K => a &= k,
                XOR_K => a ^= k,
                MOD_K => a %= k,
                TAX => x = a,
                TXA => a = x,
                JA => pc += k as usize,
                JEQ_K => pc += jump(a == k),
                JGE_K => pc += jump(a >= k),
                JSET_K => pc += jump(a & k != 0),
                RET_K => return k,
                RET_A => return a,
                other => panic!("instruction {other:#x} not interpreted"),
            }
        }
        panic!("the program did not end");
    }

    /// xorshift64: reproducible pseudo-random input.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// An IPv4 packet (with `options` words of IP options) and its frame.
    fn packet(
        protocol: u8,
        fragment: u16,
        options: usize,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
    ) -> (Vec<u8>, Vec<u8>) {
        let ihl = 5 + options;
        let mut ip = vec![0u8; ihl * 4 + 8];
        ip[0] = 0x40 | ihl as u8;
        ip[6..8].copy_from_slice(&fragment.to_be_bytes());
        ip[9] = protocol;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        let l4 = ihl * 4;
        if protocol == 1 {
            ip[l4] = 8; // echo request: no quoted flow
        } else {
            ip[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
            ip[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
        }
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        (ip, frame)
    }

    fn check_model(model: &RssModel, rng: &mut Rng, flows: usize) {
        let prog = program(model).unwrap();
        assert!(prog.len() <= MAX_INSNS);
        let n = model.workers() as u32;
        for _ in 0..flows {
            let r = rng.next();
            let s = rng.next();
            let src = Ipv4Addr::from(r as u32);
            let dst = Ipv4Addr::from((r >> 32) as u32);
            let (sport, dport) = (s as u16, (s >> 16) as u16);
            let protocol = [6, 17, 6, 17, 1, 47][(s >> 32) as usize % 6];
            // One packet in 8 a fragment (first, middle or last).
            let fragment = match (s >> 40) % 24 {
                0 => 0x2000,
                1 => 0x2000 | 185,
                2 => 185,
                _ => [0, 0x4000][(s >> 48) as usize % 2],
            };
            let options = (s >> 52) as usize % 3;
            for (a, b, sp, dp) in [(src, dst, sport, dport), (dst, src, dport, sport)] {
                let (ip, frame) = packet(protocol, fragment, options, a, b, sp, dp);
                let owner = model.worker_of_frame(&frame).unwrap() as u32;
                let queue = run(&prog, 0x0800, &ip) % n;
                assert_eq!(
                    queue, owner,
                    "{n} workers, protocol {protocol}, fragment {fragment:#x}, \
                     {a}:{sp} -> {b}:{dp}"
                );
            }
            // Symmetric: both directions on one queue.
            let there = run(
                &prog,
                0x0800,
                &packet(protocol, fragment, 0, src, dst, sport, dport).0,
            );
            let back = run(
                &prog,
                0x0800,
                &packet(protocol, fragment, 0, dst, src, dport, sport).0,
            );
            assert_eq!(there % n, back % n);
        }
    }

    #[test]
    fn fanout_program_picks_the_models_owner() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for workers in 1..=4 {
            check_model(&RssModel::software(workers), &mut rng, 5000);
        }
    }

    #[test]
    fn fanout_program_follows_any_table_and_fields() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        // Not round-robin: runs and a lone entry.
        let entries: Vec<u16> = (0..128)
            .map(|i| match i {
                0..=40 => 2,
                41 => 0,
                42..=100 => 1,
                _ => (i % 3) as u16,
            })
            .collect();
        let reta = RedirectionTable::from_entries(entries);
        for fields in [
            HashFields::ALL,
            HashFields {
                ipv4: true,
                ipv4_tcp: true,
                ipv4_udp: false,
            },
            HashFields {
                ipv4: false,
                ipv4_tcp: true,
                ipv4_udp: true,
            },
        ] {
            let model = RssModel::new(&SYMMETRIC_RSS_KEY, reta.clone(), fields, 3);
            check_model(&model, &mut rng, 2000);
        }
    }

    #[test]
    fn fanout_program_sends_what_it_cannot_classify_to_queue_0() {
        let prog = program(&RssModel::software(4)).unwrap();
        let (ip, _) = packet(
            6,
            0,
            0,
            [198, 18, 0, 1].into(),
            [198, 18, 0, 2].into(),
            1,
            2,
        );
        // Not IPv4 (ARP, IPv6).
        assert_eq!(run(&prog, 0x0806, &ip), 0);
        assert_eq!(run(&prog, 0x86dd, &ip), 0);
        // An IPv6 header behind an IPv4 EtherType; a header length under 20.
        let mut bad = ip.clone();
        bad[0] = 0x60;
        assert_eq!(run(&prog, 0x0800, &bad), 0);
        bad[0] = 0x44;
        assert_eq!(run(&prog, 0x0800, &bad), 0);
        // Truncated before the ports, and before the addresses.
        assert_eq!(run(&prog, 0x0800, &ip[..21]), 0);
        assert_eq!(run(&prog, 0x0800, &ip[..10]), 0);
        assert_eq!(run(&prog, 0x0800, &[]), 0);
    }
}
