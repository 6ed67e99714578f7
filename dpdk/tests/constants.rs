//! The constants the bindings export against the DPDK headers themselves: a C
//! table compiled apart from the shim (`shim/test_helpers.c`) maps each macro's
//! name to its value, and every Rust constant must match the entry of its own
//! name. A constant exported under the wrong name (the UDP flag's name on the
//! TCP flag's value, as once happened in demikernel's shim) fails here. Needs
//! no EAL.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::raw::c_char;

#[link(name = "dpdk_shim_test", kind = "static")]
extern "C" {
    fn shim_test_constant_count() -> usize;
    fn shim_test_constant(i: usize, value: *mut i64) -> *const c_char;
    fn shim_test_mbuf_offset_buf_addr() -> usize;
    fn shim_test_mbuf_offset_data_off() -> usize;
    fn shim_test_mbuf_offset_nb_segs() -> usize;
    fn shim_test_mbuf_offset_port() -> usize;
    fn shim_test_mbuf_offset_ol_flags() -> usize;
    fn shim_test_mbuf_offset_pkt_len() -> usize;
    fn shim_test_mbuf_offset_data_len() -> usize;
    fn shim_test_mbuf_offset_buf_len() -> usize;
    fn shim_test_mbuf_offset_pool() -> usize;
    fn shim_test_mbuf_size() -> usize;
}

/// The C table, by name.
fn c_constants() -> HashMap<String, i64> {
    // SAFETY: plain reads of a static table, index bounded by its count.
    unsafe {
        (0..shim_test_constant_count())
            .map(|i| {
                let mut value = 0i64;
                let name = shim_test_constant(i, &mut value);
                assert!(!name.is_null());
                (CStr::from_ptr(name).to_str().unwrap().to_owned(), value)
            })
            .collect()
    }
}

/// `(name, value as i64)` for each Rust constant, the name taken from the Rust
/// identifier itself.
macro_rules! rust_constants {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), dpdk_sys::$name as i64)),*]
    };
}

#[test]
fn every_constant_matches_the_header_value_of_its_own_name() {
    let c = c_constants();
    let rust = rust_constants![
        RTE_MAX_LCORE,
        RTE_MAX_ETHPORTS,
        RTE_PKTMBUF_HEADROOM,
        RTE_MBUF_DEFAULT_DATAROOM,
        RTE_MBUF_DEFAULT_BUF_SIZE,
        RTE_MEMPOOL_CACHE_MAX_SIZE,
        RTE_ETH_XSTATS_NAME_SIZE,
        RTE_ETHER_ADDR_LEN,
        SOCKET_ID_ANY,
        RTE_VERSION,
        RTE_ETH_RSS_IPV4,
        RTE_ETH_RSS_FRAG_IPV4,
        RTE_ETH_RSS_NONFRAG_IPV4_TCP,
        RTE_ETH_RSS_NONFRAG_IPV4_UDP,
        RTE_ETH_RSS_NONFRAG_IPV4_OTHER,
        RTE_ETH_RSS_IPV6,
        RTE_ETH_RSS_NONFRAG_IPV6_TCP,
        RTE_ETH_RSS_NONFRAG_IPV6_UDP,
        RTE_ETH_RSS_IP,
        RTE_ETH_RSS_TCP,
        RTE_ETH_RSS_UDP,
        RTE_ETH_RSS_L3_SRC_ONLY,
        RTE_ETH_RSS_L3_DST_ONLY,
        RTE_ETH_RSS_L4_SRC_ONLY,
        RTE_ETH_RSS_L4_DST_ONLY,
        RTE_ETH_RETA_GROUP_SIZE,
        RTE_ETH_RSS_RETA_SIZE_64,
        RTE_ETH_RSS_RETA_SIZE_128,
        RTE_ETH_RSS_RETA_SIZE_256,
        RTE_ETH_RSS_RETA_SIZE_512,
        RTE_ETH_RX_OFFLOAD_IPV4_CKSUM,
        RTE_ETH_RX_OFFLOAD_UDP_CKSUM,
        RTE_ETH_RX_OFFLOAD_TCP_CKSUM,
        RTE_ETH_RX_OFFLOAD_CHECKSUM,
        RTE_ETH_RX_OFFLOAD_RSS_HASH,
        RTE_ETH_RX_OFFLOAD_SCATTER,
        RTE_ETH_TX_OFFLOAD_IPV4_CKSUM,
        RTE_ETH_TX_OFFLOAD_UDP_CKSUM,
        RTE_ETH_TX_OFFLOAD_TCP_CKSUM,
        RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE,
        RTE_ETH_TX_OFFLOAD_MULTI_SEGS,
        RTE_ETH_TX_OFFLOAD_TCP_TSO,
        RTE_MBUF_F_RX_RSS_HASH,
        RTE_MBUF_F_RX_IP_CKSUM_MASK,
        RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN,
        RTE_MBUF_F_RX_IP_CKSUM_BAD,
        RTE_MBUF_F_RX_IP_CKSUM_GOOD,
        RTE_MBUF_F_RX_IP_CKSUM_NONE,
        RTE_MBUF_F_RX_L4_CKSUM_MASK,
        RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN,
        RTE_MBUF_F_RX_L4_CKSUM_BAD,
        RTE_MBUF_F_RX_L4_CKSUM_GOOD,
        RTE_MBUF_F_RX_L4_CKSUM_NONE,
        RTE_MBUF_F_TX_IPV4,
        RTE_MBUF_F_TX_IP_CKSUM,
        RTE_MBUF_F_TX_L4_NO_CKSUM,
        RTE_MBUF_F_TX_TCP_CKSUM,
        RTE_MBUF_F_TX_UDP_CKSUM,
        RTE_MBUF_F_TX_L4_MASK,
        RTE_MBUF_F_TX_TCP_SEG,
    ];
    assert_eq!(
        rust.len(),
        c.len(),
        "the Rust list and the C table differ in length"
    );
    for (name, value) in rust {
        let expected = c
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from shim/test_helpers.c"));
        assert_eq!(
            value, *expected,
            "{name}: Rust {value:#x}, header {expected:#x}"
        );
    }
}

#[test]
fn flags_that_are_easy_to_swap_differ() {
    use dpdk_sys::*;
    // From rte_mbuf_core.h: the L4 request is a 2-bit field, TCP = 1, UDP = 3.
    assert_eq!(RTE_MBUF_F_TX_TCP_CKSUM, 1 << 52);
    assert_eq!(RTE_MBUF_F_TX_UDP_CKSUM, 3 << 52);
    assert_eq!(RTE_MBUF_F_TX_IP_CKSUM, 1 << 54);
    assert_eq!(RTE_MBUF_F_TX_IPV4, 1 << 55);
    assert_ne!(RTE_ETH_TX_OFFLOAD_UDP_CKSUM, RTE_ETH_TX_OFFLOAD_TCP_CKSUM);
    assert_ne!(RTE_ETH_RSS_NONFRAG_IPV4_UDP, RTE_ETH_RSS_NONFRAG_IPV4_TCP);
    assert_ne!(RTE_MBUF_F_RX_L4_CKSUM_GOOD, RTE_MBUF_F_RX_IP_CKSUM_GOOD);
    assert_eq!(RTE_MBUF_F_RX_IP_CKSUM_NONE, RTE_MBUF_F_RX_IP_CKSUM_MASK);
    assert_eq!(RTE_MBUF_F_RX_L4_CKSUM_NONE, RTE_MBUF_F_RX_L4_CKSUM_MASK);
}

#[test]
fn version_is_at_least_22_11() {
    let (year, month) = (
        dpdk_sys::RTE_VERSION >> 24,
        (dpdk_sys::RTE_VERSION >> 16) & 0xff,
    );
    assert!((year, month) >= (22, 11), "RTE_VERSION {year}.{month}");
    assert!(
        dpdk_sys::VERSION.starts_with(&format!("{year}.{month}")),
        "{}",
        dpdk_sys::VERSION
    );
}

#[test]
fn mbuf_fields_read_directly_sit_where_c_puts_them() {
    use dpdk_sys::rte_mbuf;
    use std::mem::{offset_of, size_of};
    // SAFETY: the helpers return offsetof/sizeof values.
    unsafe {
        assert_eq!(
            offset_of!(rte_mbuf, buf_addr),
            shim_test_mbuf_offset_buf_addr()
        );
        assert_eq!(
            offset_of!(rte_mbuf, ol_flags),
            shim_test_mbuf_offset_ol_flags()
        );
        // The fields that DPDK 24.03 moved into anonymous unions, where this
        // release's bindings have them (dpdk_sys::MbufFields reads them there).
        for (name, offset) in dpdk_sys::MBUF_FIELD_OFFSETS {
            let c = match name {
                "data_off" => shim_test_mbuf_offset_data_off(),
                "nb_segs" => shim_test_mbuf_offset_nb_segs(),
                "port" => shim_test_mbuf_offset_port(),
                "pkt_len" => shim_test_mbuf_offset_pkt_len(),
                "data_len" => shim_test_mbuf_offset_data_len(),
                "buf_len" => shim_test_mbuf_offset_buf_len(),
                other => panic!("no C offset helper for rte_mbuf.{other}"),
            };
            assert_eq!(offset, c, "offset of rte_mbuf.{name}");
        }
        assert_eq!(offset_of!(rte_mbuf, pool), shim_test_mbuf_offset_pool());
        assert_eq!(size_of::<rte_mbuf>(), shim_test_mbuf_size());
    }
}

#[test]
fn pmd_dir_holds_the_vdev_drivers() {
    assert!(
        !dpdk_sys::PMD_DIR.is_empty(),
        "build.rs found no pmds-* directory"
    );
    for driver in [
        "net_null",
        "net_ring",
        "net_pcap",
        "net_af_packet",
        "net_tap",
    ] {
        let path = std::path::Path::new(dpdk_sys::PMD_DIR).join(format!("librte_{driver}.so"));
        assert!(path.exists(), "{} is missing", path.display());
    }
}
