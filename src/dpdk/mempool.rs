//! Packet mbuf pools: one per worker, so allocation never contends.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys::rte_mempool;

use super::eal::eal_running;
use super::{last_errno, strerror, DpdkError, Mbuf};

/// Bytes a frame adds to the IP MTU: the Ethernet header, two VLAN tags
/// (QinQ) and the CRC, which some drivers store in the buffer.
const FRAME_OVERHEAD: u32 = 14 + 2 * 4 + 4;

/// The data room (headroom included, as `rte_pktmbuf_pool_create` takes it)
/// of mbufs that hold one whole frame of `mtu`: `RTE_MBUF_DEFAULT_BUF_SIZE`
/// (2176) up to a 1500-byte MTU, else the headroom and the frame rounded up
/// to 128 bytes (9216 for a 9000-byte MTU).
pub fn data_room_for_mtu(mtu: u16) -> u16 {
    let needed = dpdk_sys::RTE_PKTMBUF_HEADROOM + u32::from(mtu) + FRAME_OVERHEAD;
    let room = needed
        .next_multiple_of(128)
        .max(dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE);
    // A u16 MTU plus 154 bytes, rounded, stays below u16::MAX for every MTU
    // shardnet accepts (at most 9000); saturate rather than wrap beyond.
    u16::try_from(room).unwrap_or(u16::MAX)
}

/// The data room (headroom included) of the mbufs a TSO segment goes in: the
/// most an mbuf holds (its `buf_len` is 16 bits), so a frame of 65,407 bytes.
pub const LARGE_DATA_ROOM: u16 = u16::MAX;

/// A pool of packet mbufs (`rte_pktmbuf_pool_create`), each with
/// `RTE_MBUF_DEFAULT_BUF_SIZE` of data room (2048 bytes after the 128-byte
/// headroom) by [`Mempool::new`], or the room a frame of some MTU needs by
/// [`Mempool::for_mtu`].
///
/// A cheap handle: clones share the pool. When the last handle drops, the pool
/// is freed if none of its mbufs is out (otherwise it is left allocated, with a
/// warning, so an mbuf still held somewhere never points into freed memory).
#[derive(Clone, Debug)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    raw: NonNull<rte_mempool>,
    name: String,
}

// SAFETY: a packet pool made by rte_pktmbuf_pool_create uses the platform's
// default mempool ops (ring_mp_mc), which allow get and put from any thread at
// once; per-lcore caches are used only by the lcore they belong to, and
// non-EAL threads bypass them. The handle itself holds only the pointer and
// the name.
unsafe impl Send for PoolInner {}
// SAFETY: as above: every operation on the pool is thread-safe.
unsafe impl Sync for PoolInner {}

impl Mempool {
    /// Create a pool of `n_mbufs` mbufs (a power of two minus one is the most
    /// memory-efficient) with a per-lcore cache of `cache` mbufs (at most
    /// `RTE_MEMPOOL_CACHE_MAX_SIZE`, 512), on NUMA socket `socket`
    /// (`dpdk_sys::SOCKET_ID_ANY` for any). `name` must be unique in the process
    /// and short (DPDK limits it to about 25 bytes).
    pub fn new(name: &str, n_mbufs: u32, cache: u32, socket: i32) -> Result<Mempool, DpdkError> {
        Self::with_data_room(
            name,
            n_mbufs,
            cache,
            socket,
            dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
        )
    }

    /// As [`Mempool::new`], each mbuf with room for a whole frame of `mtu`
    /// ([`data_room_for_mtu`]).
    pub fn for_mtu(
        name: &str,
        n_mbufs: u32,
        cache: u32,
        socket: i32,
        mtu: u16,
    ) -> Result<Mempool, DpdkError> {
        Self::with_data_room(name, n_mbufs, cache, socket, data_room_for_mtu(mtu))
    }

    /// As [`Mempool::new`], with `data_room` bytes (headroom included) in each
    /// mbuf.
    pub fn with_data_room(
        name: &str,
        n_mbufs: u32,
        cache: u32,
        socket: i32,
        data_room: u16,
    ) -> Result<Mempool, DpdkError> {
        let fail = |code: i32, hint: &str| DpdkError::Mempool {
            name: name.to_owned(),
            mbufs: n_mbufs,
            code,
            text: strerror(code),
            hint: hint.to_owned(),
        };
        if !eal_running() {
            return Err(fail(libc::ENODEV, "EAL is not initialised"));
        }
        let c_name = CString::new(name).map_err(|_| fail(libc::EINVAL, "the name contains NUL"))?;
        // SAFETY: EAL is running; the name is a valid C string that DPDK copies.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(c_name.as_ptr(), n_mbufs, cache, 0, data_room, socket)
        };
        let Some(raw) = NonNull::new(raw) else {
            let code = last_errno();
            let hint = match code {
                libc::ENOMEM => {
                    "not enough memory: use fewer mbufs_per_worker, reserve more \
                     hugepages, or raise -m with --no-huge"
                }
                libc::EEXIST => "a pool of this name exists already",
                libc::EINVAL => {
                    "cache larger than RTE_MEMPOOL_CACHE_MAX_SIZE or than the pool allows"
                }
                libc::ENAMETOOLONG => "the name is too long",
                libc::ENOSPC => "DPDK's memzone table is full",
                _ => "see the EAL messages above",
            };
            return Err(fail(code, hint));
        };
        Ok(Mempool {
            inner: Arc::new(PoolInner {
                raw,
                name: name.to_owned(),
            }),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The raw pool, for DPDK calls (queue setup).
    pub fn as_ptr(&self) -> *mut rte_mempool {
        self.inner.raw.as_ptr()
    }

    /// Mbufs currently out of the pool: held by the stack, waiting in device
    /// rings, or posted as RX descriptors.
    pub fn in_use(&self) -> u64 {
        // SAFETY: the pool is alive while a handle exists; the count is a read
        // of the ring and the per-lcore caches.
        u64::from(unsafe { dpdk_sys::rte_mempool_in_use_count(self.as_ptr()) })
    }

    /// Mbufs available in the pool (ring and caches).
    pub fn available(&self) -> u64 {
        // SAFETY: as for in_use.
        u64::from(unsafe { dpdk_sys::rte_mempool_avail_count(self.as_ptr()) })
    }

    /// Bytes each mbuf holds after the headroom: the longest frame it takes.
    pub fn frame_room(&self) -> u32 {
        // SAFETY: the pool is alive and was made by rte_pktmbuf_pool_create,
        // so its private area holds the data room size.
        let room = unsafe { dpdk_sys::rte_pktmbuf_data_room_size(self.as_ptr()) };
        u32::from(room).saturating_sub(dpdk_sys::RTE_PKTMBUF_HEADROOM)
    }

    /// The pool's size in mbufs.
    pub fn size(&self) -> u32 {
        // SAFETY: the pool is alive; `size` is set at creation and never changes.
        unsafe { (*self.as_ptr()).size }
    }

    /// A fresh, empty mbuf, or `None` if the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        alloc_from(self.inner.raw)
    }
}

/// Allocate one mbuf from `pool`.
#[inline]
pub(crate) fn alloc_from(pool: NonNull<rte_mempool>) -> Option<Mbuf> {
    // SAFETY: `pool` is a live packet pool (the caller holds a Mempool handle
    // to it); rte_pktmbuf_alloc returns a reset mbuf we now own, or null.
    let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(pool.as_ptr()) };
    // SAFETY: a non-null result is an mbuf owned by no one else.
    NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        if !eal_running() {
            // EAL's cleanup released the memory already.
            return;
        }
        // SAFETY: the pool is alive (no handle frees it before the last drops).
        let in_use = unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) };
        if in_use != 0 {
            tracing::warn!(
                pool = %self.name,
                in_use,
                "mbuf pool dropped with mbufs still out; leaving it allocated"
            );
            return;
        }
        // SAFETY: no mbuf of the pool is out and no handle remains, so nothing
        // can reach the pool after this.
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) };
    }
}
