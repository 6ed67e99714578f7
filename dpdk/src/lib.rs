//! Raw bindings to the system's DPDK (22.11 LTS and later; built and tested
//! on 22.11 and 24.11). What moved between releases is handled by cfgs that
//! build.rs sets from the version pkg-config reports (`dpdk_mbuf_field_unions`:
//! [`MbufFields`]; `dpdk_rss_key_len_checked`: [`RSS_KEY_LEN_MUST_MATCH`]).
//!
//! Three parts:
//! - the bindgen output for DPDK's exported functions and types, with explicit
//!   allowlists (`rte_eal_*`, `rte_eth_*`, `rte_pktmbuf_*`, `rte_mempool_*`,
//!   `rte_lcore_*`, `rte_strerror`, `rte_socket_id`, `rte_get_tsc_hz`, ...);
//! - DPDK's macro constants (`RTE_ETH_RSS_*`, `RTE_ETH_RETA_GROUP_SIZE`,
//!   `RTE_MBUF_F_RX_*`, `RTE_MBUF_F_TX_*`, `RTE_ETH_{RX,TX}_OFFLOAD_*`,
//!   `RTE_MAX_LCORE`, ...) as `pub const` under their own names, evaluated by
//!   clang from the headers (see `shim/constants.h`);
//! - wrappers around DPDK's `static inline` fast-path functions, which have no
//!   symbol to link against: each calls a one-line C function of `shim/shim.c`
//!   and is re-exported here under DPDK's own name (`rte_eth_rx_burst`,
//!   `rte_pktmbuf_alloc`, ...).
//!
//! Linking is dynamic. Poll-mode drivers are plugins: a shared-library EAL loads
//! every driver in its built-in plugin directory ([`PMD_DIR`] on distribution
//! builds) at `rte_eal_init`, so `--vdev=net_ring0` and friends work with no `-d`.
//!
//! Everything here is `unsafe` and follows DPDK's C contracts; the safe layer
//! lives in the shardnet crate (`shardnet::dpdk`).

#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(clippy::all, rustdoc::all)]
#![allow(missing_docs)]

mod bindings {
    #![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
    #![allow(dead_code, clippy::all, rustdoc::all, unsafe_op_in_unsafe_fn)]
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

pub use bindings::*;

use std::os::raw::{c_char, c_int, c_uint, c_void};

/// The release of the DPDK this crate was built against, as pkg-config reports
/// it (for example `"22.11.11"`).
pub const VERSION: &str = env!("DPDK_SYS_VERSION");

/// Whether `rte_eth_dev_configure` takes an RSS key only when its
/// `rss_key_len` is the device's `hash_key_size` (DPDK 23.11 and later; cfg
/// `dpdk_rss_key_len_checked`, set by build.rs from the DPDK version). Before
/// 23.11 drivers took the length given.
pub const RSS_KEY_LEN_MUST_MATCH: bool = cfg!(dpdk_rss_key_len_checked);

/// The driver plugin directory of the DPDK this crate was built against
/// (`$libdir/dpdk/pmds-<ABI>`), or `""` if the build found none. A shared-library
/// EAL loads every driver there at init; pass it with `-d` only to override.
pub const PMD_DIR: &str = env!("DPDK_SYS_PMD_DIR");

// ---- ethdev fast path --------------------------------------------------------

/// `rte_eth_rx_burst`: receive up to `nb_pkts` packets from an RX queue into
/// `rx_pkts`; returns how many were stored.
///
/// # Safety
/// EAL initialised, the port started, `queue_id` configured and used by this
/// thread only, `rx_pkts` valid for `nb_pkts` writes.
#[inline]
pub unsafe fn rte_eth_rx_burst(
    port_id: u16,
    queue_id: u16,
    rx_pkts: *mut *mut rte_mbuf,
    nb_pkts: u16,
) -> u16 {
    rte_shim_rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts)
}

/// `rte_eth_tx_burst`: hand up to `nb_pkts` packets to a TX queue; returns how
/// many the driver took (it then owns and frees them). The rest stay the
/// caller's.
///
/// # Safety
/// As for [`rte_eth_rx_burst`]; `tx_pkts` holds `nb_pkts` valid mbufs.
#[inline]
pub unsafe fn rte_eth_tx_burst(
    port_id: u16,
    queue_id: u16,
    tx_pkts: *mut *mut rte_mbuf,
    nb_pkts: u16,
) -> u16 {
    rte_shim_rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts)
}

/// `rte_eth_tx_prepare`: let the driver check and fix up offload requests of up
/// to `nb_pkts` packets before [`rte_eth_tx_burst`]; returns how many are ready.
///
/// # Safety
/// As for [`rte_eth_tx_burst`].
#[inline]
pub unsafe fn rte_eth_tx_prepare(
    port_id: u16,
    queue_id: u16,
    tx_pkts: *mut *mut rte_mbuf,
    nb_pkts: u16,
) -> u16 {
    rte_shim_rte_eth_tx_prepare(port_id, queue_id, tx_pkts, nb_pkts)
}

// ---- mbufs ---------------------------------------------------------------------

/// `rte_pktmbuf_alloc`: a reset mbuf from `mp`, or null if the pool is empty.
///
/// # Safety
/// `mp` is a packet mbuf pool (`rte_pktmbuf_pool_create`).
#[inline]
pub unsafe fn rte_pktmbuf_alloc(mp: *mut rte_mempool) -> *mut rte_mbuf {
    rte_shim_rte_pktmbuf_alloc(mp)
}

/// `rte_pktmbuf_free`: give an mbuf (and its chained segments) back to its pool;
/// null is ignored.
///
/// # Safety
/// `m` is null or an mbuf the caller owns and does not use again.
#[inline]
pub unsafe fn rte_pktmbuf_free(m: *mut rte_mbuf) {
    rte_shim_rte_pktmbuf_free(m)
}

/// `rte_pktmbuf_alloc_bulk`: fill `mbufs[..count]` with reset mbufs, all or
/// none; returns 0 on success, a negative errno otherwise.
///
/// # Safety
/// `mp` is a packet mbuf pool and `mbufs` valid for `count` writes.
#[inline]
pub unsafe fn rte_pktmbuf_alloc_bulk(
    mp: *mut rte_mempool,
    mbufs: *mut *mut rte_mbuf,
    count: c_uint,
) -> c_int {
    rte_shim_rte_pktmbuf_alloc_bulk(mp, mbufs, count)
}

/// `rte_pktmbuf_mtod(m, void *)`: the address of the first data byte,
/// `buf_addr + data_off`.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn rte_pktmbuf_mtod(m: *mut rte_mbuf) -> *mut c_void {
    rte_shim_rte_pktmbuf_mtod(m)
}

/// `rte_pktmbuf_headroom`: bytes free before the data in the first segment.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn rte_pktmbuf_headroom(m: *const rte_mbuf) -> u16 {
    rte_shim_rte_pktmbuf_headroom(m)
}

/// `rte_pktmbuf_tailroom`: bytes free after the data in the last segment.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn rte_pktmbuf_tailroom(m: *const rte_mbuf) -> u16 {
    rte_shim_rte_pktmbuf_tailroom(m)
}

/// `rte_pktmbuf_data_room_size`: the data room (headroom included) of each mbuf
/// of a packet pool.
///
/// # Safety
/// `mp` is a packet mbuf pool.
#[inline]
pub unsafe fn rte_pktmbuf_data_room_size(mp: *mut rte_mempool) -> u16 {
    rte_shim_rte_pktmbuf_data_room_size(mp)
}

/// `rte_pktmbuf_append`: grow the packet by `len` bytes at the end; returns the
/// start of the new bytes, or null (nothing changed) if the tailroom is short.
///
/// # Safety
/// `m` is a valid mbuf the caller owns.
#[inline]
pub unsafe fn rte_pktmbuf_append(m: *mut rte_mbuf, len: u16) -> *mut c_char {
    rte_shim_rte_pktmbuf_append(m, len)
}

/// `rte_pktmbuf_trim`: drop `len` bytes from the end; returns 0, or -1 (nothing
/// changed) if the last segment is shorter.
///
/// # Safety
/// `m` is a valid mbuf the caller owns.
#[inline]
pub unsafe fn rte_pktmbuf_trim(m: *mut rte_mbuf, len: u16) -> c_int {
    rte_shim_rte_pktmbuf_trim(m, len)
}

/// `rte_pktmbuf_prepend`: grow the packet by `len` bytes at the front; returns
/// the new start, or null if the headroom is short.
///
/// # Safety
/// `m` is a valid mbuf the caller owns.
#[inline]
pub unsafe fn rte_pktmbuf_prepend(m: *mut rte_mbuf, len: u16) -> *mut c_char {
    rte_shim_rte_pktmbuf_prepend(m, len)
}

/// `rte_pktmbuf_adj`: drop `len` bytes from the front; returns the new start, or
/// null if the first segment is shorter.
///
/// # Safety
/// `m` is a valid mbuf the caller owns.
#[inline]
pub unsafe fn rte_pktmbuf_adj(m: *mut rte_mbuf, len: u16) -> *mut c_char {
    rte_shim_rte_pktmbuf_adj(m, len)
}

/// `rte_pktmbuf_reset`: reset the packet fields (lengths, offloads, headroom) of
/// an mbuf.
///
/// # Safety
/// `m` is a valid single-segment mbuf the caller owns.
#[inline]
pub unsafe fn rte_pktmbuf_reset(m: *mut rte_mbuf) {
    rte_shim_rte_pktmbuf_reset(m)
}

/// `rte_pktmbuf_is_contiguous`: non-zero if the packet is one segment.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn rte_pktmbuf_is_contiguous(m: *const rte_mbuf) -> c_int {
    rte_shim_rte_pktmbuf_is_contiguous(m)
}

/// `rte_mbuf_refcnt_read`: the mbuf's reference count.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn rte_mbuf_refcnt_read(m: *const rte_mbuf) -> u16 {
    rte_shim_rte_mbuf_refcnt_read(m)
}

// ---- mbuf fields in unions, bitfields, or places that move between releases ----

/// `m->hash.rss`: the RSS hash the NIC stored (valid when `ol_flags` has
/// [`RTE_MBUF_F_RX_RSS_HASH`]). Not a DPDK function: a field accessor.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn mbuf_hash_rss(m: *const rte_mbuf) -> u32 {
    rte_shim_mbuf_hash_rss(m)
}

/// A port's link as `rte_eth_link_get_nowait` reads it: `(up, speed in
/// Mbit/s as DPDK reports it, full duplex)`, or the negative errno
/// (`-ENOTSUP`: the driver has no `link_update`). The shim decodes the
/// bitfields, whose place in `struct rte_eth_link` moved in DPDK 24.x.
/// Not a DPDK function.
pub fn eth_link_get_nowait(port_id: u16) -> Result<(bool, u32, bool), i32> {
    let (mut speed, mut up, mut full_duplex) = (0u32, 0u8, 0u8);
    // SAFETY: three valid out pointers; rte_eth_link_get_nowait checks the
    // port id itself (-ENODEV for one that is not valid).
    let rc =
        unsafe { rte_shim_eth_link_get_nowait(port_id, &mut speed, &mut up, &mut full_duplex) };
    if rc != 0 {
        return Err(rc);
    }
    Ok((up != 0, speed, full_duplex != 0))
}

/// `m->l2_len`: the L2 header length for TX offloads. Not a DPDK function.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn mbuf_l2_len(m: *const rte_mbuf) -> u64 {
    rte_shim_mbuf_l2_len(m)
}

/// `m->l3_len`: the L3 header length for TX offloads. Not a DPDK function.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn mbuf_l3_len(m: *const rte_mbuf) -> u64 {
    rte_shim_mbuf_l3_len(m)
}

/// Set `m->l2_len` and `m->l3_len` (bitfields of 7 and 9 bits) for TX
/// offloads. Not a DPDK function.
///
/// # Safety
/// `m` is a valid mbuf the caller owns.
#[inline]
pub unsafe fn mbuf_set_tx_lens(m: *mut rte_mbuf, l2_len: u64, l3_len: u64) {
    rte_shim_mbuf_set_tx_lens(m, l2_len, l3_len)
}

/// Set `m->l4_len` and `m->tso_segsz` (bitfields of 8 and 16 bits) for TCP
/// segmentation offload. Not a DPDK function.
///
/// # Safety
/// `m` is a valid mbuf the caller owns.
#[inline]
pub unsafe fn mbuf_set_tso(m: *mut rte_mbuf, l4_len: u64, tso_segsz: u64) {
    rte_shim_mbuf_set_tso(m, l4_len, tso_segsz)
}

/// `m->l4_len` and `m->tso_segsz`, as [`mbuf_set_tso`] set them. Not a DPDK
/// function.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn mbuf_tso(m: *const rte_mbuf) -> (u64, u64) {
    (rte_shim_mbuf_l4_len(m), rte_shim_mbuf_tso_segsz(m))
}

/// `m->next`: the next segment of a chained packet, or null. (The field moved
/// in DPDK 23.03, hence an accessor.) Not a DPDK function.
///
/// # Safety
/// `m` is a valid mbuf.
#[inline]
pub unsafe fn mbuf_next(m: *const rte_mbuf) -> *mut rte_mbuf {
    rte_shim_mbuf_next(m)
}

/// The plain fields of `struct rte_mbuf` that DPDK 24.03 moved into anonymous
/// unions (`rearm_data`, `rx_descriptor_fields1`, which were zero-sized
/// `RTE_MARKER`s before): bindgen names them `m.data_off` on 22.11 and
/// `m.__bindgen_anon_1.__bindgen_anon_1.data_off` on 24.11. These methods name
/// each field where the release built against has it (cfg
/// `dpdk_mbuf_field_unions`, set by build.rs from the DPDK version).
pub trait MbufFields {
    /// `data_off`: where the data start in the buffer.
    fn data_off(&self) -> u16;
    /// `refcnt`: the reference count (as a plain read; see
    /// [`rte_mbuf_refcnt_read`] for the atomic one).
    fn refcnt(&self) -> u16;
    /// `nb_segs`: the number of segments.
    fn nb_segs(&self) -> u16;
    /// `port`: the input port.
    fn port(&self) -> u16;
    /// `pkt_len`: the packet's length over all segments.
    fn pkt_len(&self) -> u32;
    /// `data_len`: the data length of this segment.
    fn data_len(&self) -> u16;
    /// `buf_len`: the buffer's length.
    fn buf_len(&self) -> u16;
    /// Set `data_off`.
    fn set_data_off(&mut self, v: u16);
    /// Set `pkt_len`.
    fn set_pkt_len(&mut self, v: u32);
    /// Set `data_len`.
    fn set_data_len(&mut self, v: u16);
}

/// The path of a union-held `rte_mbuf` field on this release: `rearm` for
/// the fields of `rearm_data`, `rx` for those of `rx_descriptor_fields1`.
#[cfg(dpdk_mbuf_field_unions)]
macro_rules! mbuf_field {
    ($m:expr, rearm, $f:ident) => {
        $m.__bindgen_anon_1.__bindgen_anon_1.$f
    };
    ($m:expr, rx, $f:ident) => {
        $m.__bindgen_anon_2.__bindgen_anon_1.$f
    };
}
#[cfg(not(dpdk_mbuf_field_unions))]
macro_rules! mbuf_field {
    ($m:expr, $union:ident, $f:ident) => {
        $m.$f
    };
}

// Reading a union member is `unsafe` in Rust only on 24.03+, where these are
// union members; on older releases the blocks are plain field accesses.
#[allow(unused_unsafe)]
impl MbufFields for rte_mbuf {
    #[inline]
    fn data_off(&self) -> u16 {
        // SAFETY: every member of these unions is plain integer data (any bit
        // pattern is a valid value), so reading through this one is sound.
        unsafe { mbuf_field!(self, rearm, data_off) }
    }
    #[inline]
    fn refcnt(&self) -> u16 {
        // SAFETY: as in data_off.
        unsafe { mbuf_field!(self, rearm, refcnt) }
    }
    #[inline]
    fn nb_segs(&self) -> u16 {
        // SAFETY: as in data_off.
        unsafe { mbuf_field!(self, rearm, nb_segs) }
    }
    #[inline]
    fn port(&self) -> u16 {
        // SAFETY: as in data_off.
        unsafe { mbuf_field!(self, rearm, port) }
    }
    #[inline]
    fn pkt_len(&self) -> u32 {
        // SAFETY: as in data_off (the other members are integers and pointers
        // read as an array, never through this path).
        unsafe { mbuf_field!(self, rx, pkt_len) }
    }
    #[inline]
    fn data_len(&self) -> u16 {
        // SAFETY: as in pkt_len.
        unsafe { mbuf_field!(self, rx, data_len) }
    }
    #[inline]
    fn buf_len(&self) -> u16 {
        // SAFETY: as in pkt_len.
        unsafe { mbuf_field!(self, rx, buf_len) }
    }
    #[inline]
    fn set_data_off(&mut self, v: u16) {
        // Writing a union field is safe; on older releases a plain field.
        mbuf_field!(self, rearm, data_off) = v;
    }
    #[inline]
    fn set_pkt_len(&mut self, v: u32) {
        mbuf_field!(self, rx, pkt_len) = v;
    }
    #[inline]
    fn set_data_len(&mut self, v: u16) {
        mbuf_field!(self, rx, data_len) = v;
    }
}

/// The byte offsets in `struct rte_mbuf` of the fields [`MbufFields`] reads,
/// `(name, offset)`, where this release's bindings put them (the tests compare
/// them with C's `offsetof`).
#[cfg(dpdk_mbuf_field_unions)]
pub const MBUF_FIELD_OFFSETS: [(&str, usize); 6] = {
    use std::mem::offset_of;
    let rearm = offset_of!(rte_mbuf, __bindgen_anon_1);
    let rx = offset_of!(rte_mbuf, __bindgen_anon_2);
    [
        (
            "data_off",
            rearm + offset_of!(rte_mbuf__bindgen_ty_1__bindgen_ty_1, data_off),
        ),
        (
            "nb_segs",
            rearm + offset_of!(rte_mbuf__bindgen_ty_1__bindgen_ty_1, nb_segs),
        ),
        (
            "port",
            rearm + offset_of!(rte_mbuf__bindgen_ty_1__bindgen_ty_1, port),
        ),
        (
            "pkt_len",
            rx + offset_of!(rte_mbuf__bindgen_ty_2__bindgen_ty_1, pkt_len),
        ),
        (
            "data_len",
            rx + offset_of!(rte_mbuf__bindgen_ty_2__bindgen_ty_1, data_len),
        ),
        (
            "buf_len",
            rx + offset_of!(rte_mbuf__bindgen_ty_2__bindgen_ty_1, buf_len),
        ),
    ]
};

/// The byte offsets in `struct rte_mbuf` of the fields [`MbufFields`] reads,
/// `(name, offset)`, where this release's bindings put them (the tests compare
/// them with C's `offsetof`).
#[cfg(not(dpdk_mbuf_field_unions))]
pub const MBUF_FIELD_OFFSETS: [(&str, usize); 6] = {
    use std::mem::offset_of;
    [
        ("data_off", offset_of!(rte_mbuf, data_off)),
        ("nb_segs", offset_of!(rte_mbuf, nb_segs)),
        ("port", offset_of!(rte_mbuf, port)),
        ("pkt_len", offset_of!(rte_mbuf, pkt_len)),
        ("data_len", offset_of!(rte_mbuf, data_len)),
        ("buf_len", offset_of!(rte_mbuf, buf_len)),
    ]
};

// ---- EAL -----------------------------------------------------------------------

/// `rte_lcore_id`: the calling thread's lcore id, or `u32::MAX`
/// (`LCORE_ID_ANY`) on a thread EAL does not know.
///
/// # Safety
/// None beyond FFI; EAL sets the value on its own threads.
#[inline]
pub unsafe fn rte_lcore_id() -> c_uint {
    rte_shim_rte_lcore_id()
}

/// `rte_errno`: the calling thread's DPDK error number (a per-lcore variable in
/// C, hence a function here).
///
/// # Safety
/// None beyond FFI.
#[inline]
pub unsafe fn rte_errno() -> c_int {
    rte_shim_rte_errno()
}

/// `rte_errno = value`: set the calling thread's DPDK error number.
///
/// # Safety
/// None beyond FFI.
#[inline]
pub unsafe fn set_rte_errno(value: c_int) {
    rte_shim_set_rte_errno(value)
}

/// `rte_prefetch0`: prefetch the cache line at `p` into all cache levels.
///
/// # Safety
/// None: a prefetch never faults, `p` may be any address.
#[inline]
pub unsafe fn rte_prefetch0(p: *const c_void) {
    rte_shim_rte_prefetch0(p)
}

/// `rte_rdtsc`: the CPU's time-stamp counter; see `rte_get_tsc_hz` for its rate.
///
/// # Safety
/// None beyond FFI.
#[inline]
pub unsafe fn rte_rdtsc() -> u64 {
    rte_shim_rte_rdtsc()
}
