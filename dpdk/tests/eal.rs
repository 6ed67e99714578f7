//! Every shim function against DPDK's own behaviour, on a live EAL.
//!
//! EAL can be initialised once per process, so this is one test binary with its
//! own `main` that runs the checks in sequence. It needs root (EAL opens
//! /dev/... and locks memory) but no hugepages and no NIC: `--no-huge --no-pci
//! --no-shconf` (EAL refuses `--in-memory` together with `--no-huge`, which
//! implies `--legacy-mem`), with three virtual devices, `net_ring0` (a loopback: what a queue
//! sends comes back on the same queue), `net_null0`, and `net_null1` for the RSS
//! calls (net_null keeps a redirection table and a key, though it hashes nothing).

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;

use dpdk_sys::*;

#[link(name = "dpdk_shim_test", kind = "static")]
extern "C" {
    fn shim_test_mtod_expected(m: *mut rte_mbuf) -> *mut c_void;
    fn shim_test_hash_rss_set(m: *mut rte_mbuf, v: u32) -> u32;
    fn shim_test_lcore_id() -> u32;
    fn shim_test_set_errno(v: c_int);
    fn shim_test_get_errno() -> c_int;
    fn shim_test_tx_offload(m: *const rte_mbuf) -> u64;
}

const EAL_ARGS: &[&str] = &[
    "dpdk-sys-eal-test",
    "--no-pci",
    "--no-huge",
    "--no-shconf",
    "--file-prefix=dpdk-sys-eal-test",
    "--no-telemetry",
    "-m",
    "256",
    "-l",
    "0",
    "--log-level=lib.eal:notice",
    "--vdev=net_ring0",
    "--vdev=net_null0",
    "--vdev=net_null1",
];

fn port_by_name(name: &str) -> u16 {
    let c = CString::new(name).unwrap();
    let mut port = u16::MAX;
    // SAFETY: valid C string and out pointer.
    let rc = unsafe { rte_eth_dev_get_port_by_name(c.as_ptr(), &mut port) };
    assert_eq!(rc, 0, "port {name} not found");
    port
}

fn strerror(code: c_int) -> String {
    // SAFETY: rte_strerror returns a static or per-lcore string.
    unsafe { CStr::from_ptr(rte_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

fn main() {
    // SAFETY (whole test): single-threaded use of DPDK's C API in its documented
    // order; every pointer passed comes from DPDK or lives across the call.
    unsafe {
        let mut args: Vec<CString> = EAL_ARGS.iter().map(|a| CString::new(*a).unwrap()).collect();
        let mut argv: Vec<*mut c_char> =
            args.iter_mut().map(|a| a.as_ptr() as *mut c_char).collect();
        let rc = rte_eal_init(argv.len() as c_int, argv.as_mut_ptr());
        assert!(rc >= 0, "rte_eal_init failed: {}", strerror(rte_errno()));
        println!("EAL up (DPDK {VERSION}, drivers from {PMD_DIR})");

        check_lcore_and_errno();
        check_ports_probed();
        let pool = check_pool();
        check_single_mbuf(pool);
        check_bulk(pool);
        check_exhaustion(pool);
        check_ring_rx_tx(pool);
        check_null_rx(pool);
        check_rss_calls(pool);
        check_tsc_and_prefetch();

        rte_mempool_free(pool);
        assert_eq!(rte_eal_cleanup(), 0, "rte_eal_cleanup");
    }
    println!("eal: all checks passed");
}

unsafe fn check_lcore_and_errno() {
    assert_eq!(rte_lcore_id(), 0, "main lcore id");
    assert_eq!(rte_lcore_id(), shim_test_lcore_id());
    assert_eq!(rte_lcore_count(), 1);
    assert_eq!(rte_get_main_lcore(), 0);
    assert!(rte_socket_id() < 64);

    set_rte_errno(libc_eagain());
    assert_eq!(
        shim_test_get_errno(),
        libc_eagain(),
        "set_rte_errno writes rte_errno"
    );
    shim_test_set_errno(12345);
    assert_eq!(rte_errno(), 12345, "rte_errno reads rte_errno");
    set_rte_errno(0);
    println!("ok lcore id, rte_errno");
}

fn libc_eagain() -> c_int {
    11
}

unsafe fn check_ports_probed() {
    // Both vdevs come from driver plugins EAL loaded from PMD_DIR by itself.
    assert_eq!(
        rte_eth_dev_count_avail(),
        3,
        "net_ring0, net_null0 and net_null1 probed"
    );
    let _ = port_by_name("net_ring0");
    let _ = port_by_name("net_null0");
    let _ = port_by_name("net_null1");
    println!("ok vdev plugins loaded (net_ring, net_null)");
}

unsafe fn check_pool() -> *mut rte_mempool {
    let name = CString::new("eal_test_pool").unwrap();
    let pool = rte_pktmbuf_pool_create(
        name.as_ptr(),
        1023,
        32,
        0,
        RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        SOCKET_ID_ANY,
    );
    assert!(!pool.is_null(), "pool: {}", strerror(rte_errno()));
    assert_eq!(
        rte_pktmbuf_data_room_size(pool),
        RTE_MBUF_DEFAULT_BUF_SIZE as u16
    );
    assert_eq!(rte_mempool_in_use_count(pool), 0);
    assert_eq!(rte_mempool_avail_count(pool), 1023);
    println!("ok pool create, data room, counts");
    pool
}

unsafe fn check_single_mbuf(pool: *mut rte_mempool) {
    let m = rte_pktmbuf_alloc(pool);
    assert!(!m.is_null());
    assert_eq!(rte_mempool_in_use_count(pool), 1, "alloc takes one");
    let mb = &*m;
    assert_eq!(mb.pool, pool);
    assert_eq!(
        (mb.data_len(), mb.pkt_len(), mb.nb_segs(), mb.ol_flags),
        (0, 0, 1, 0),
        "reset"
    );
    assert_eq!(mb.buf_len() as u32, RTE_MBUF_DEFAULT_BUF_SIZE);

    // Data pointer: buf_addr + data_off, as the header computes it.
    let data = rte_pktmbuf_mtod(m);
    assert_eq!(data, shim_test_mtod_expected(m));
    assert_eq!(data as usize, mb.buf_addr as usize + mb.data_off() as usize);

    // Room on both sides.
    assert_eq!(rte_pktmbuf_headroom(m) as u32, RTE_PKTMBUF_HEADROOM);
    assert_eq!(rte_pktmbuf_headroom(m), mb.data_off());
    assert_eq!(rte_pktmbuf_tailroom(m), mb.buf_len() - mb.data_off());
    assert_eq!(rte_pktmbuf_is_contiguous(m), 1);
    assert_eq!(rte_mbuf_refcnt_read(m), 1);
    assert!(mbuf_next(m).is_null());

    // Append / trim / prepend / adj move lengths and offsets as documented.
    let tail = rte_pktmbuf_tailroom(m);
    let p = rte_pktmbuf_append(m, 100);
    assert_eq!(
        p as *mut c_void, data,
        "append to an empty mbuf starts at the data"
    );
    assert_eq!(((*m).data_len(), (*m).pkt_len()), (100, 100));
    assert_eq!(rte_pktmbuf_tailroom(m), tail - 100);
    assert!(
        rte_pktmbuf_append(m, tail).is_null(),
        "append past the tailroom fails"
    );
    assert_eq!((*m).data_len(), 100, "a failed append changes nothing");
    assert_eq!(rte_pktmbuf_trim(m, 40), 0);
    assert_eq!(((*m).data_len(), (*m).pkt_len()), (60, 60));
    assert_eq!(rte_pktmbuf_trim(m, 61), -1, "trim past the data fails");
    let front = rte_pktmbuf_prepend(m, 14);
    assert_eq!(front as usize, data as usize - 14);
    assert_eq!(
        ((*m).data_len(), (*m).pkt_len(), (*m).data_off()),
        (74, 74, RTE_PKTMBUF_HEADROOM as u16 - 14)
    );
    let back = rte_pktmbuf_adj(m, 14);
    assert_eq!(back as *mut c_void, data);
    assert_eq!((*m).data_len(), 60);

    // Fields behind unions and bitfields.
    shim_test_hash_rss_set(m, 0xdead_beef);
    assert_eq!(mbuf_hash_rss(m), 0xdead_beef);
    mbuf_set_tx_lens(m, 14, 20);
    assert_eq!((mbuf_l2_len(m), mbuf_l3_len(m)), (14, 20));
    // l2_len is bits 0..7 and l3_len bits 7..16 of tx_offload (rte_mbuf_core.h).
    assert_eq!(shim_test_tx_offload(m), 14 | (20 << 7));
    mbuf_set_tx_lens(m, 127, 511);
    assert_eq!((mbuf_l2_len(m), mbuf_l3_len(m)), (127, 511));

    // Reset restores a fresh packet.
    (*m).ol_flags = RTE_MBUF_F_TX_IPV4;
    rte_pktmbuf_reset(m);
    assert_eq!(((*m).data_len(), (*m).pkt_len(), (*m).ol_flags), (0, 0, 0));
    assert_eq!((*m).data_off() as u32, RTE_PKTMBUF_HEADROOM);

    rte_pktmbuf_free(m);
    assert_eq!(rte_mempool_in_use_count(pool), 0, "free gives it back");
    rte_pktmbuf_free(ptr::null_mut());
    println!(
        "ok alloc/free, mtod, headroom/tailroom, append/trim/prepend/adj, rss, tx lens, reset"
    );
}

unsafe fn check_bulk(pool: *mut rte_mempool) {
    let mut mbufs = [ptr::null_mut::<rte_mbuf>(); 8];
    assert_eq!(rte_pktmbuf_alloc_bulk(pool, mbufs.as_mut_ptr(), 8), 0);
    assert!(mbufs.iter().all(|m| !m.is_null()));
    assert_eq!(rte_mempool_in_use_count(pool), 8);
    assert!(
        mbufs
            .iter()
            .all(|m| (**m).data_len() == 0 && (**m).nb_segs() == 1),
        "bulk mbufs are reset"
    );
    rte_pktmbuf_free_bulk(mbufs.as_mut_ptr(), 8);
    assert_eq!(rte_mempool_in_use_count(pool), 0);
    println!("ok alloc_bulk / free_bulk");
}

unsafe fn check_exhaustion(pool: *mut rte_mempool) {
    let mut held = Vec::new();
    for _ in 0..2048 {
        let m = rte_pktmbuf_alloc(pool);
        if m.is_null() {
            break;
        }
        held.push(m);
    }
    assert_eq!(
        held.len(),
        1023,
        "alloc returns null once the pool is empty"
    );
    assert_eq!(rte_mempool_avail_count(pool), 0);
    let mut one = [ptr::null_mut(); 1];
    assert!(
        rte_pktmbuf_alloc_bulk(pool, one.as_mut_ptr(), 1) < 0,
        "bulk alloc fails on an empty pool"
    );
    for m in held {
        rte_pktmbuf_free(m);
    }
    assert_eq!(rte_mempool_in_use_count(pool), 0);
    println!("ok exhaustion");
}

unsafe fn setup_port(port: u16, pool: *mut rte_mempool) {
    let conf = rte_eth_conf::default();
    assert_eq!(rte_eth_dev_configure(port, 1, 1, &conf), 0);
    let socket = rte_eth_dev_socket_id(port);
    assert_eq!(
        rte_eth_rx_queue_setup(port, 0, 256, socket as u32, ptr::null(), pool),
        0
    );
    assert_eq!(
        rte_eth_tx_queue_setup(port, 0, 256, socket as u32, ptr::null()),
        0
    );
    assert_eq!(rte_eth_dev_start(port), 0);
}

unsafe fn check_ring_rx_tx(pool: *mut rte_mempool) {
    let port = port_by_name("net_ring0");
    setup_port(port, pool);

    let mut tx = [ptr::null_mut::<rte_mbuf>(); 4];
    assert_eq!(rte_pktmbuf_alloc_bulk(pool, tx.as_mut_ptr(), 4), 0);
    for (i, m) in tx.iter().enumerate() {
        let p = rte_pktmbuf_append(*m, 64) as *mut u8;
        std::slice::from_raw_parts_mut(p, 64).fill(i as u8 + 1);
    }
    assert_eq!(
        rte_eth_tx_prepare(port, 0, tx.as_mut_ptr(), 4),
        4,
        "net_ring has no prepare step"
    );
    assert_eq!(rte_eth_tx_burst(port, 0, tx.as_mut_ptr(), 4), 4);

    let mut rx = [ptr::null_mut::<rte_mbuf>(); 32];
    let n = rte_eth_rx_burst(port, 0, rx.as_mut_ptr(), 32);
    assert_eq!(n, 4, "net_ring loops TX back to RX");
    for i in 0..4 {
        assert_eq!(rx[i], tx[i], "the same mbufs, in order");
        let data = std::slice::from_raw_parts(rte_pktmbuf_mtod(rx[i]) as *const u8, 64);
        assert!(data.iter().all(|b| *b == i as u8 + 1));
    }
    assert_eq!(
        rte_eth_rx_burst(port, 0, rx.as_mut_ptr(), 32),
        0,
        "ring drained"
    );

    let mut stats = rte_eth_stats::default();
    assert_eq!(rte_eth_stats_get(port, &mut stats), 0);
    assert_eq!((stats.ipackets, stats.opackets), (4, 4));

    rte_pktmbuf_free_bulk(rx.as_mut_ptr(), 4);
    assert_eq!(rte_mempool_in_use_count(pool), 0);
    assert_eq!(rte_eth_dev_stop(port), 0);
    assert_eq!(rte_eth_dev_close(port), 0);
    println!("ok rx/tx burst, tx_prepare on net_ring0");
}

unsafe fn check_null_rx(pool: *mut rte_mempool) {
    let port = port_by_name("net_null0");
    setup_port(port, pool);
    let mut rx = [ptr::null_mut::<rte_mbuf>(); 32];
    let n = rte_eth_rx_burst(port, 0, rx.as_mut_ptr(), 32);
    assert_eq!(n, 32, "net_null fills every RX slot");
    assert_eq!(rte_mempool_in_use_count(pool), 32);
    assert!(
        rx.iter().all(|m| (**m).data_len() == 64),
        "net_null's default packet size"
    );
    // TX on net_null frees what it takes.
    assert_eq!(rte_eth_tx_burst(port, 0, rx.as_mut_ptr(), 32), 32);
    assert_eq!(rte_mempool_in_use_count(pool), 0);
    assert_eq!(rte_eth_dev_stop(port), 0);
    assert_eq!(rte_eth_dev_close(port), 0);
    println!("ok rx/tx burst on net_null0");
}

/// The RSS configuration calls and their structs, on net_null1 (two queues):
/// the redirection table written in groups of 64 and read back, the hash
/// types and key read back.
///
/// # Safety
/// The EAL is initialised and `pool` is a live mbuf pool made by it.
unsafe fn check_rss_calls(pool: *mut rte_mempool) {
    let port = port_by_name("net_null1");
    let mut info = rte_eth_dev_info::default();
    assert_eq!(rte_eth_dev_info_get(port, &mut info), 0);
    assert_eq!(
        info.reta_size, RTE_ETH_RSS_RETA_SIZE_128 as u16,
        "net_null's table size"
    );
    assert_ne!(
        info.flow_type_rss_offloads & RTE_ETH_RSS_NONFRAG_IPV4_TCP,
        0
    );

    let mut key = [0x6d_u8, 0x5a].repeat(20);
    let mut conf = rte_eth_conf::default();
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
    conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
    conf.rx_adv_conf.rss_conf.rss_hf = RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_TCP;
    assert_eq!(rte_eth_dev_configure(port, 2, 2, &conf), 0);
    let socket = rte_eth_dev_socket_id(port) as u32;
    for q in 0..2 {
        assert_eq!(
            rte_eth_rx_queue_setup(port, q, 256, socket, ptr::null(), pool),
            0
        );
        assert_eq!(rte_eth_tx_queue_setup(port, q, 256, socket, ptr::null()), 0);
    }
    assert_eq!(rte_eth_dev_start(port), 0);

    // Write 1, 0, 0, 0, 1, 0, ...: not the driver's default 0, 1, 0, 1, ...
    let groups = usize::from(info.reta_size) / RTE_ETH_RETA_GROUP_SIZE as usize;
    let mut reta = vec![rte_eth_rss_reta_entry64::default(); groups];
    for (g, group) in reta.iter_mut().enumerate() {
        group.mask = u64::MAX;
        for (i, e) in group.reta.iter_mut().enumerate() {
            *e = u16::from((g * 64 + i) % 4 == 0);
        }
    }
    assert_eq!(
        rte_eth_dev_rss_reta_update(port, reta.as_mut_ptr(), info.reta_size),
        0
    );
    let mut back = vec![rte_eth_rss_reta_entry64::default(); groups];
    // Only the entries whose mask bit is set are read: the first 64 here.
    back[0].mask = u64::MAX;
    assert_eq!(
        rte_eth_dev_rss_reta_query(port, back.as_mut_ptr(), info.reta_size),
        0
    );
    assert_eq!(back[0].reta, reta[0].reta);
    assert!(back[1].reta.iter().all(|&e| e == 0), "masked out");
    back[1].mask = u64::MAX;
    assert_eq!(
        rte_eth_dev_rss_reta_query(port, back.as_mut_ptr(), info.reta_size),
        0
    );
    assert_eq!(back[1].reta, reta[1].reta);
    assert_eq!(
        rte_eth_dev_rss_reta_query(port, back.as_mut_ptr(), 64),
        -libc_einval(),
        "a size other than the device's is refused"
    );

    let mut key_back = [0u8; 64];
    let mut rss = rte_eth_rss_conf {
        rss_key: key_back.as_mut_ptr(),
        rss_key_len: key_back.len() as u8,
        ..Default::default()
    };
    assert_eq!(rte_eth_dev_rss_hash_conf_get(port, &mut rss), 0);
    assert_eq!(rss.rss_hf, RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_TCP);
    // net_null keeps its own default key (the common Intel one, which starts
    // 6d 5a 56 da): its configure ignores rss_conf's key.
    assert_eq!(key_back[..4], [0x6d, 0x5a, 0x56, 0xda]);

    assert_eq!(rte_eth_dev_stop(port), 0);
    assert_eq!(rte_eth_dev_close(port), 0);
    println!("ok RSS redirection table and hash configuration on net_null1");
}

fn libc_einval() -> c_int {
    22
}

unsafe fn check_tsc_and_prefetch() {
    let hz = rte_get_tsc_hz();
    assert!(hz > 100_000_000, "tsc hz {hz}");
    let t0 = rte_rdtsc();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t1 = rte_rdtsc();
    let elapsed = (t1 - t0) as f64 / hz as f64;
    assert!(
        (0.045..1.0).contains(&elapsed),
        "rdtsc measured {elapsed}s for a 50 ms sleep"
    );
    let x = [0u8; 64];
    rte_prefetch0(x.as_ptr() as *const c_void);
    rte_prefetch0(ptr::null());
    println!("ok rdtsc / tsc hz, prefetch0");
}
