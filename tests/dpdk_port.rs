//! The DPDK backend end to end on virtual devices: EAL, pools, a two-queue
//! `net_ring` port (a loopback: what a queue sends comes back on that queue),
//! mbufs as packet buffers, bursts, statistics, lcore launch, close, cleanup.
//!
//! Needs root; no hugepages and no NIC (`--no-huge --no-pci`). EAL can start
//! once per process, so this is one test function. It fails, loudly, when it
//! cannot run: it never skips.
#![cfg(feature = "dpdk")]

use std::sync::mpsc;

use shardnet::dpdk::{
    eal_arguments, launch_on_lcore, wait_all_lcores, wait_lcore, DpdkError, DpdkPort, DpdkQueue,
    Eal, Mbuf, Mempool, PortOptions,
};
use shardnet::port::{Burst, L4Offload, PacketBuf, Queue, RxChecksum, TxOffloadRequest, BURST};

fn user_args() -> Vec<String> {
    [
        "--no-pci",
        "--no-huge",
        "-m",
        "256",
        // --in-memory is refused together with --no-huge; --no-shconf keeps the
        // runtime directory free of files so runs can repeat.
        "--no-shconf",
        "--file-prefix=shardnet-dpdk-port-test",
        "--no-telemetry",
        "--log-level=lib.eal:notice",
        "--vdev=net_ring0",
        "--vdev=net_null0",
        // A kernel TAP interface of our own (removed when the port closes): it
        // reports RSS hash types, so the RSS configuration path runs, but it
        // cannot report its configuration back (no rss_hash_conf_get, no
        // redirection table).
        "--vdev=net_tap0,iface=sn-dpdktest0",
        // net_null keeps a redirection table and a key, and reads them back,
        // but keeps its own key whatever is configured (and hashes nothing).
        "--vdev=net_null1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A frame of `len` bytes whose first two bytes are `tag`.
fn frame(queue: &mut DpdkQueue, len: usize, tag: u16) -> Mbuf {
    let mut m = queue.alloc().expect("pool has mbufs");
    assert!(m.set_len(len));
    m.data_mut().fill(0x5a);
    m.data_mut()[..2].copy_from_slice(&tag.to_be_bytes());
    m
}

fn tag(m: &Mbuf) -> u16 {
    u16::from_be_bytes([m.data()[0], m.data()[1]])
}

/// Send one frame on `queue` and receive it back (net_ring loops back).
fn round_trip(queue: &mut DpdkQueue, tag_value: u16) -> Result<(), String> {
    let mut out = Burst::new();
    out.push(frame(queue, 60, tag_value));
    if queue.tx_burst(&mut out) != 1 || !out.is_empty() {
        return Err("tx_burst did not take the frame".into());
    }
    let mut back = Burst::new();
    if queue.rx_burst(&mut back) != 1 {
        return Err("rx_burst did not return the frame".into());
    }
    if tag(&back[0]) != tag_value || back[0].len() != 60 {
        return Err("the frame came back changed".into());
    }
    Ok(())
}

#[test]
fn dpdk_port_end_to_end() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root: DPDK's EAL must lock memory and open devices"
    );
    let args = eal_arguments(&user_args(), &[1, 1], 0).unwrap();
    assert_eq!(args[1], "--lcores=0@0,1@1,2@1");
    let eal = Eal::init(&args).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Eal::lcore_count(), 3);
    assert_eq!(
        Eal::port_count(),
        4,
        "net_ring0, net_null0, net_tap0 and net_null1 (PMD plugins loaded)"
    );

    // Errors read as sentences.
    let err = Eal::init(&args).unwrap_err();
    assert!(matches!(err, DpdkError::EalInit { .. }), "{err}");
    assert!(err.to_string().contains("already initialised"), "{err}");

    let pools = [
        Mempool::new("test_q0", 2047, 32, dpdk_sys::SOCKET_ID_ANY).unwrap(),
        Mempool::new("test_q1", 1023, 32, dpdk_sys::SOCKET_ID_ANY).unwrap(),
    ];
    let err = Mempool::new("test_q0", 63, 0, dpdk_sys::SOCKET_ID_ANY).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(pools[0].size(), 2047);
    assert_eq!(pools[0].in_use(), 0);

    let err = DpdkPort::open(7, &pools, PortOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DPDK port 7 not found: 4 port(s) available; check --vdev/--allow in eal_args"
    );

    let mut port =
        DpdkPort::open(0, &pools, PortOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(port.driver(), "net_ring");
    assert_eq!(port.queue_count(), 2);
    assert!(!port.rss_enabled(), "net_ring has no RSS");
    assert!(port.rss_model().is_none(), "net_ring has no RSS");
    assert_eq!(port.mac(), [0; 6], "net_ring's MAC is all zeros");
    let mut queues = port.queues();
    assert_eq!(queues.len(), 2);
    assert!(port.queues().is_empty(), "queues are handed out once");
    let mut q1 = queues.pop().unwrap();
    let mut q0 = queues.pop().unwrap();
    assert_eq!((q0.queue_id(), q1.queue_id()), (0, 1));
    assert_eq!(q0.tx_offloads(), port.tx_offloads());

    // Mbuf as a PacketBuf.
    let mut m = q0.alloc().unwrap();
    assert_eq!(q0.pool_in_use(), Some(1));
    assert!(m.is_empty());
    assert_eq!(
        m.capacity(),
        2048,
        "RTE_MBUF_DEFAULT_BUF_SIZE minus the headroom"
    );
    assert!(!m.set_len(2049));
    assert!(m.set_len(2048));
    assert!(m.set_len(60));
    assert_eq!(m.data().len(), 60);
    let raw = m.as_ptr();
    // SAFETY: reading fields of an mbuf we own.
    let (data_addr, pkt_len) = unsafe {
        (
            (*raw).buf_addr as usize + usize::from(dpdk_sys::MbufFields::data_off(&*raw)),
            dpdk_sys::MbufFields::pkt_len(&*raw),
        )
    };
    assert_eq!(m.data().as_ptr() as usize, data_addr);
    assert_eq!(pkt_len, 60);
    assert_eq!(m.rx_ip_checksum(), RxChecksum::Unknown);
    assert_eq!(m.rss_hash(), None);
    assert!(!m.is_multi_segment());
    m.request_tx_offload(TxOffloadRequest {
        l2_len: 14,
        l3_len: 20,
        ipv4_checksum: true,
        l4: Some(L4Offload::Tcp),
        ..TxOffloadRequest::default()
    });
    assert_eq!(
        m.ol_flags(),
        dpdk_sys::RTE_MBUF_F_TX_IPV4
            | dpdk_sys::RTE_MBUF_F_TX_IP_CKSUM
            | dpdk_sys::RTE_MBUF_F_TX_TCP_CKSUM
    );
    assert_eq!(m.tx_header_lengths(), (14, 20));
    // TSO: the flag, and the TCP header length and frame payload in the
    // mbuf's bitfields (read back through DPDK's own struct layout).
    m.request_tx_offload(TxOffloadRequest::tcp_segmentation(32, 1448));
    assert_eq!(
        m.ol_flags(),
        dpdk_sys::RTE_MBUF_F_TX_IPV4
            | dpdk_sys::RTE_MBUF_F_TX_IP_CKSUM
            | dpdk_sys::RTE_MBUF_F_TX_TCP_CKSUM
            | dpdk_sys::RTE_MBUF_F_TX_TCP_SEG
    );
    assert_eq!(m.tx_header_lengths(), (14, 20));
    assert_eq!(m.tso_lengths(), (32, 1448));
    let raw = m.into_raw();
    assert_eq!(q0.pool_in_use(), Some(1), "into_raw does not free");
    // SAFETY: `raw` came from into_raw just above and is owned by no one else.
    drop(unsafe { Mbuf::from_raw(raw) });
    assert_eq!(q0.pool_in_use(), Some(0), "drop frees");

    // One round trip per queue.
    round_trip(&mut q0, 1).unwrap();
    round_trip(&mut q1, 2).unwrap();
    assert_eq!(pools[0].in_use() + pools[1].in_use(), 0);

    // A ring that fills: tx_burst takes a prefix and leaves the rest, in order,
    // at the front of the burst.
    let mut sent = 0usize;
    let mut refused = None;
    for round in 0..64u16 {
        let mut out = Burst::new();
        for i in 0..BURST as u16 {
            out.push(frame(&mut q0, 64, round * BURST as u16 + i));
        }
        let n = q0.tx_burst(&mut out);
        assert_eq!(n + out.len(), BURST);
        sent += n;
        if !out.is_empty() {
            assert_eq!(
                usize::from(tag(&out[0])),
                sent,
                "the first refused frame follows the last sent"
            );
            refused = Some(out.len());
            break; // dropping `out` frees the refused frames
        }
    }
    let refused = refused.expect("net_ring's ring filled up");
    assert_eq!(
        sent, 1023,
        "net_ring rings hold 1023 packets; {refused} refused"
    );
    assert_eq!(
        pools[0].in_use(),
        1023,
        "the ring holds the sent ones, the refused are freed"
    );
    let mut received = 0usize;
    for _ in 0..64 {
        let mut back = Burst::new();
        let n = q0.rx_burst(&mut back);
        if n == 0 {
            break;
        }
        for m in &back {
            assert_eq!(usize::from(tag(m)), received, "in order");
            received += 1;
        }
    }
    assert_eq!(received, sent);
    assert_eq!(pools[0].in_use(), 0);

    // rx_burst appends after what the burst already holds.
    let mut out = Burst::new();
    out.push(frame(&mut q0, 60, 7));
    assert_eq!(q0.tx_burst(&mut out), 1);
    let mut back = Burst::new();
    back.push(frame(&mut q0, 60, 8));
    assert_eq!(q0.rx_burst(&mut back), 1);
    assert_eq!((tag(&back[0]), tag(&back[1])), (8, 7));
    drop(back);
    assert_eq!(q0.multi_segment_drops(), 0);

    // Statistics: 1 + 1023 + 1 frames through queue 0, 1 through queue 1.
    let stats = port.stats();
    assert_eq!(
        (stats.tx_packets, stats.rx_packets),
        (1026, 1026),
        "{stats:?}"
    );
    assert!(
        stats
            .extended
            .iter()
            .any(|(name, v)| name == "rx_good_packets" && *v == 1026),
        "{stats:?}"
    );

    // Queue 1 moves to worker lcore 2 and works there.
    let (done_tx, done_rx) = mpsc::channel();
    launch_on_lcore(
        2,
        Box::new(move || {
            // SAFETY: reads the calling thread's lcore id.
            let lcore = unsafe { dpdk_sys::rte_lcore_id() };
            let result = round_trip(&mut q1, 3).map(|()| lcore);
            done_tx.send(result).unwrap();
        }),
    )
    .unwrap();
    assert_eq!(wait_lcore(2), 0);
    assert_eq!(done_rx.recv().unwrap(), Ok(2), "ran on lcore 2");

    // Launch errors, and a panic caught at the lcore's edge.
    let err = launch_on_lcore(0, Box::new(|| {})).unwrap_err();
    assert!(err.to_string().contains("main lcore"), "{err}");
    let err = launch_on_lcore(9, Box::new(|| {})).unwrap_err();
    assert!(err.to_string().contains("no such lcore"), "{err}");
    launch_on_lcore(1, Box::new(|| panic!("deliberate panic on lcore 1"))).unwrap();
    assert_eq!(wait_lcore(1), -1);
    wait_all_lcores();

    // net_null: RX produces frames from the queue's pool.
    let null_pool = Mempool::new("test_null", 511, 0, dpdk_sys::SOCKET_ID_ANY).unwrap();
    let mut null_port = DpdkPort::open(1, std::slice::from_ref(&null_pool), PortOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(null_port.driver(), "net_null");
    assert!(!null_port.rss_enabled(), "one queue: no RSS");
    assert!(null_port.rss_model().is_none());
    let mac = null_port.mac();
    assert!(
        mac != [0; 6] && mac[0] & 1 == 0,
        "net_null's random unicast MAC: {mac:02x?}"
    );
    let mut nq = null_port.queues().pop().unwrap();
    let mut back = Burst::new();
    assert_eq!(nq.rx_burst(&mut back), BURST);
    assert_eq!(nq.pool_in_use(), Some(BURST as u64));
    assert_eq!(
        nq.tx_burst(&mut back),
        BURST,
        "net_null takes and frees everything"
    );
    assert_eq!(nq.pool_in_use(), Some(0));
    drop(nq);
    null_port.close().unwrap();

    // net_tap: two queues with RSS (the symmetric key cut to the device's size).
    let tap_pools = [
        Mempool::new("test_tap0", 1023, 32, dpdk_sys::SOCKET_ID_ANY).unwrap(),
        Mempool::new("test_tap1", 1023, 32, dpdk_sys::SOCKET_ID_ANY).unwrap(),
    ];
    let mut tap_port =
        DpdkPort::open(2, &tap_pools, PortOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tap_port.driver(), "net_tap");
    assert!(tap_port.rss_enabled(), "net_tap reports IPv4/TCP/UDP RSS");
    assert!(
        tap_port.rss_model().is_none(),
        "net_tap cannot report its RSS configuration: its queues are the kernel's \
         TUN queue choice, not Toeplitz over a redirection table"
    );
    let tap_offloads = tap_port.tx_offloads();
    assert!(
        tap_offloads.ipv4_checksum && tap_offloads.udp_checksum && tap_offloads.tcp_checksum,
        "net_tap does checksums in software and reports them: {tap_offloads:?}"
    );
    assert_eq!(
        port.tx_offloads(),
        Default::default(),
        "net_ring has no offloads"
    );
    assert_eq!(tap_port.queues().len(), 2);
    let tap_stats = tap_port.stats();
    assert!(!tap_stats.extended.is_empty(), "{tap_stats:?}");
    tap_port.close().unwrap();

    // net_null with two queues: RSS configured, the table programmed and read
    // back, but the key read back is net_null's own, not the symmetric one:
    // no model.
    let null_rss_pools = [
        Mempool::new("test_null_rss0", 255, 0, dpdk_sys::SOCKET_ID_ANY).unwrap(),
        Mempool::new("test_null_rss1", 255, 0, dpdk_sys::SOCKET_ID_ANY).unwrap(),
    ];
    let null_rss_id = DpdkPort::id_by_name("net_null1").expect("net_null1 probed");
    let null_rss = DpdkPort::open(null_rss_id, &null_rss_pools, PortOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(null_rss.driver(), "net_null");
    assert!(null_rss.rss_enabled(), "net_null reports RSS hash types");
    assert!(
        null_rss.rss_model().is_none(),
        "net_null ignores the configured key: no model"
    );
    null_rss.close().unwrap();
    drop(null_rss_pools);

    drop(q0);
    port.close().unwrap();
    drop(pools);
    drop(null_pool);
    drop(tap_pools);
    eal.cleanup().unwrap();
}
