//! Entry points for fuzzing (the `fuzz/` crate, run with `cargo +nightly
//! fuzz`) and for the property tests that replay the same inputs on stable
//! in CI. Not part of the API a service uses.
//!
//! [`tcp_segments`] treats its input as a script: a stack with TCP services
//! is brought to an established connection with a fixed peer, then each
//! record of the input is sent as the TCP header, options and payload of a
//! segment from that peer (ports and checksum fixed up so that the bytes
//! reach the state machine, not only the checksum check), with the clock
//! advanced between records. Nothing may panic, and the stack's invariants
//! must hold after every segment.

use std::net::Ipv4Addr;

use crate::config::{Action, DefaultAction, ServiceId};
use crate::port::heap::HeapBuf;
use crate::port::PacketBuf;
use crate::stack::{Interface, Stack};
use crate::testing::{
    ipv4_frame, lone_stack, parse_tcp_frame, tcp_frame, tcp_header, tcp_rule, CollectEgress,
    Endpoints,
};
use crate::wire::{EthernetAddress, IpProtocol, TcpFlags, TcpHeader, TcpPacket};

const PEER: Endpoints = Endpoints {
    src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
    dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
    src_ip: Ipv4Addr::new(198, 18, 0, 1),
    dst_ip: Ipv4Addr::new(198, 18, 0, 2),
};

fn stack() -> Stack {
    let iface = Interface {
        mac: PEER.dst_mac,
        ip: PEER.dst_ip,
        prefix_len: 24,
    };
    let rules = [
        tcp_rule("echo", 7, Action::Service(ServiceId::ECHO)),
        tcp_rule("web", 80, Action::Service(ServiceId::HTTP)),
    ];
    lone_stack(iface, &rules, DefaultAction::Drop, false).0
}

fn segment(port: u16, flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
    tcp_header(40000, port, flags, seq, ack)
}

/// Run `data` as a script of segments against an established connection
/// (see the module documentation). Panics only on a bug.
pub fn tcp_segments(data: &[u8]) {
    let mut stack = stack();
    let mut egress = CollectEgress::default();
    let port = if data.first().is_some_and(|b| b & 1 == 1) {
        80
    } else {
        7
    };
    // Handshake.
    let syn = tcp_frame(PEER, &segment(port, TcpFlags::SYN, 1000, 0), b"");
    stack.process(HeapBuf::from_slice(&syn), 0, &mut egress);
    let syn_ack = egress
        .frames
        .pop()
        .and_then(|f| parse_tcp_frame(f.data()))
        .expect("a SYN-ACK");
    let ack = tcp_frame(
        PEER,
        &segment(port, TcpFlags::ACK, 1001, syn_ack.0.seq.wrapping_add(1)),
        b"",
    );
    stack.process(HeapBuf::from_slice(&ack), 1_000_000, &mut egress);

    let mut now = 1_000_000u64;
    let mut rest = data.get(1..).unwrap_or_default();
    while rest.len() >= 3 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]) % 1600);
        let advance = u64::from(rest[2]);
        rest = &rest[3..];
        let take = len.min(rest.len());
        let (record, tail) = rest.split_at(take);
        rest = tail;
        let mut bytes = record.to_vec();
        if bytes.len() >= 4 {
            // Our connection's ports, so that the segment reaches it.
            bytes[0..2].copy_from_slice(&40000u16.to_be_bytes());
            bytes[2..4].copy_from_slice(&port.to_be_bytes());
        }
        if bytes.len() >= 20 {
            TcpPacket::new_unchecked(&mut bytes[..]).fill_checksum(PEER.src_ip, PEER.dst_ip);
        }
        let frame = ipv4_frame(PEER, IpProtocol::Tcp, &bytes);
        now += advance * advance * 1_000_000;
        stack.process(HeapBuf::from_slice(&frame), now, &mut egress);
        // What goes to the kernel is not the stack's to check.
        egress.kernel.clear();
        stack.poll(now, &mut egress);
        for frame in egress.frames.drain(..) {
            // Whatever the stack sends must be a valid TCP frame.
            assert!(
                parse_tcp_frame(frame.data()).is_some(),
                "the stack sent an invalid TCP frame"
            );
        }
        assert!(stack.tcp().len() <= 1);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The fuzz target's body on stable, on random scripts.
        #[test]
        fn tcp_segments_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            super::tcp_segments(&data);
        }
    }

    /// The fuzzer's saved corpus (`fuzz/corpus/tcp_segments`), replayed.
    #[test]
    fn tcp_segments_corpus() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/tcp_segments");
        let mut replayed = 0;
        for entry in std::fs::read_dir(dir).expect("the fuzz corpus is in the tree") {
            let path = entry.unwrap().path();
            super::tcp_segments(&std::fs::read(&path).unwrap());
            replayed += 1;
        }
        assert!(replayed >= 100, "only {replayed} corpus entries");
    }

    /// Scripts shaped like real segments (a 20-byte header with plausible
    /// offsets and flags), which random bytes rarely are.
    #[test]
    fn tcp_segments_plausible_headers() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..300 {
            let mut script = vec![next() as u8];
            for _ in 0..(next() % 12) {
                let payload = (next() % 64) as usize;
                let options = ((next() % 11) * 4) as usize;
                let len = 20 + options + payload;
                script.extend_from_slice(&(len as u16).to_le_bytes());
                script.push((next() % 4) as u8);
                let mut header = vec![0u8; len];
                for b in header.iter_mut() {
                    *b = next() as u8;
                }
                // seq near the peer's, ack near ours is too unlikely to hit;
                // keep them random but the data offset consistent.
                header[12] = (((20 + options) / 4) as u8) << 4;
                header[13] = (next() as u8) & 0x3f;
                script.extend_from_slice(&header);
            }
            super::tcp_segments(&script);
        }
    }
}
