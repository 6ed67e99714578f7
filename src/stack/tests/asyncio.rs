//! Async services on the stack: a listener's accept loop, streams that
//! echo, and a panicking handler whose connection is reset while another
//! keeps working.

use std::future::poll_fn;

use super::*;
use crate::rt::{spawn_local, TcpListener};
use crate::service::{Registry, WorkerInfo};
use crate::testing::{parse_tcp_frame, stack_with_registry, tcp_frame, tcp_rule};
use crate::wire::{TcpFlags, TcpHeader, TcpOptions};

const PORT: u16 = 5000;

/// A stack with the async service "app" on `PORT`: its main task accepts
/// and spawns a task per connection that echoes what it reads, and
/// panics on a read starting with "boom".
fn async_echo_stack() -> Stack {
    let mut registry = Registry::new();
    let id = registry
        .add_async("app", |_: &WorkerInfo<'_>| async {
            let listener = TcpListener::bind(PORT).expect("the port is free");
            assert!(TcpListener::bind(PORT).is_err(), "bound once per worker");
            loop {
                let (stream, _peer) = listener.accept().await.expect("a connection");
                drop(spawn_local(async move {
                    let mut buf = [0u8; 256];
                    loop {
                        let n = poll_fn(|cx| stream.poll_read_into(cx, &mut buf))
                            .await
                            .expect("a read");
                        if n == 0 {
                            break;
                        }
                        assert!(!buf.starts_with(b"boom"), "the handler's bug");
                        let mut written = 0;
                        while written < n {
                            written += poll_fn(|cx| stream.poll_write_from(cx, &buf[written..n]))
                                .await
                                .expect("a write");
                        }
                    }
                }));
            }
        })
        .expect("a new name");
    let tcp = TcpSetup {
        secret_key: [7; 32],
        ..TcpSetup::default()
    };
    let rules = [tcp_rule("app", PORT, Action::Service(id))];
    stack_with_registry(OUR_IFACE, &rules, DefaultAction::Drop, tcp, &registry, 1).0
}

fn segment(peer_port: u16, flags: TcpFlags, seq: u32, ack: u32) -> TcpHeader {
    TcpHeader {
        src_port: peer_port,
        dst_port: PORT,
        seq,
        ack,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
    }
}

type Segments = Vec<(TcpHeader, Vec<u8>)>;

fn parse(egress: CollectEgress) -> Segments {
    egress
        .frames
        .iter()
        .map(|f| parse_tcp_frame(f.data()).expect("a valid TCP frame"))
        .collect()
}

/// Hand one segment to the stack, then run its tasks for a few rounds;
/// returns what was sent meanwhile.
fn step(stack: &mut Stack, header: TcpHeader, payload: &[u8]) -> Segments {
    let mut egress = CollectEgress::default();
    let frame = tcp_frame(ENDS, &header, payload);
    stack.process(HeapBuf::from_slice(&frame), 0, &mut egress);
    for _ in 0..4 {
        stack.run_tasks(0, &mut egress);
    }
    parse(egress)
}

/// Establish a connection from `peer_port`; returns our next sequence
/// number (the peer's is 1001).
fn connect(stack: &mut Stack, peer_port: u16) -> u32 {
    let mut syn = segment(peer_port, TcpFlags::SYN, 1000, 0);
    syn.options.mss = Some(1460);
    let out = step(stack, syn, b"");
    assert_eq!(out.len(), 1, "a SYN-ACK: {out:?}");
    let our = out[0].0.seq.wrapping_add(1);
    let out = step(stack, segment(peer_port, TcpFlags::ACK, 1001, our), b"");
    assert!(out.is_empty(), "{out:?}");
    our
}

#[test]
fn an_async_service_echoes_and_a_panicking_handler_only_resets_its_connection() {
    let mut stack = async_echo_stack();
    let mut egress = CollectEgress::default();
    stack.run_tasks(0, &mut egress);
    assert_eq!(
        stack.executor().expect("created").tasks(),
        1,
        "the main task"
    );

    let our_a = connect(&mut stack, 40000);
    let our_b = connect(&mut stack, 40001);
    assert_eq!(
        stack.executor().unwrap().tasks(),
        3,
        "main and two handlers"
    );

    let out = step(
        &mut stack,
        segment(40000, TcpFlags::ACK | TcpFlags::PSH, 1001, our_a),
        b"hello",
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].1, b"hello");
    assert_eq!(out[0].0.ack, 1006);
    assert_eq!(out[0].0.dst_port, 40000);

    let out = step(
        &mut stack,
        segment(40001, TcpFlags::ACK | TcpFlags::PSH, 1001, our_b),
        b"boom",
    );
    assert!(
        out.iter()
            .any(|(h, _)| h.dst_port == 40001 && h.flags.contains(TcpFlags::RST)),
        "the panicking task's connection is reset: {out:?}"
    );
    let executor = stack.executor().unwrap();
    assert_eq!(executor.stats().panics, 1);
    assert_eq!(executor.tasks(), 2);
    // Published for /metrics: the panic, and the tasks left (the main task
    // and the other connection's).
    assert_eq!(stack.counters.async_task_panics.get(), 1);
    assert_eq!(stack.counters.async_tasks.get(), 2);

    let out = step(
        &mut stack,
        segment(40000, TcpFlags::ACK | TcpFlags::PSH, 1006, our_a + 5),
        b"again",
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].1, b"again");
    assert_eq!(stack.tcp().len(), 1, "only the reset connection is gone");
}

#[test]
fn a_port_nobody_listens_on_is_reset_and_counted() {
    let mut registry = Registry::new();
    let id = registry
        .add_async("idle", |_: &WorkerInfo<'_>| async {})
        .expect("a new name");
    let rules = [tcp_rule("idle", PORT, Action::Service(id))];
    let (mut stack, _) = stack_with_registry(
        OUR_IFACE,
        &rules,
        DefaultAction::Drop,
        TcpSetup::default(),
        &registry,
        1,
    );
    let mut syn = segment(40000, TcpFlags::SYN, 1000, 0);
    syn.options.mss = Some(1460);
    let out = step(&mut stack, syn, b"");
    let our = out[0].0.seq.wrapping_add(1);
    let out = step(&mut stack, segment(40000, TcpFlags::ACK, 1001, our), b"");
    assert!(
        out.iter().any(|(h, _)| h.flags.contains(TcpFlags::RST)),
        "{out:?}"
    );
    assert_eq!(stack.net().unwrap().reactor().borrow().refused(), 1);
    assert_eq!(stack.counters.async_refused.get(), 1);
    assert_eq!(stack.tcp().len(), 0);
}
