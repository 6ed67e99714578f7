//! The DPDK backend: EAL setup, mbuf pools, mbufs as [`crate::port::PacketBuf`],
//! ethdev ports split into per-worker [`crate::port::Queue`]s, and lcore launch.
//!
//! This is the safe face of the `dpdk-sys` bindings. The order of life:
//!
//! 1. [`eal_arguments`] derives the EAL command line (core mapping first, then
//!    the user's `eal_args`), [`Eal::init`] starts EAL once per process;
//! 2. one [`Mempool`] per worker, then [`DpdkPort::open`] configures one RX/TX
//!    queue pair per pool and starts the port;
//! 3. [`DpdkPort::queues`] hands out the [`DpdkQueue`]s, each moved to its worker
//!    (an lcore started with [`launch_on_lcore`]);
//! 4. on shutdown: [`wait_all_lcores`], [`DpdkPort::close`], drop the queues and
//!    pools, then [`Eal::cleanup`] (or drop the [`Eal`]).
//!
//! Mbufs are single-segment: the ports are configured without RX scatter, and
//! each pool's data room holds a whole frame of the port's MTU
//! ([`data_room_for_mtu`]: `RTE_MBUF_DEFAULT_BUF_SIZE`, 2048 bytes after the
//! headroom, up to a 1500-byte MTU; about 9 KiB for a 9000-byte one). Large
//! single-segment mbufs keep the stack's one-buffer-per-frame model: no chain
//! is ever parsed or built, at the cost of memory (a jumbo pool of the default
//! 8191 mbufs is about 77 MiB per worker). Should a driver
//! deliver a chained packet anyway, [`DpdkQueue::rx_burst`](crate::port::Queue::rx_burst)
//! frees it and counts it ([`DpdkQueue::multi_segment_drops`]; the worker
//! adds them to `drops_total{reason="multi_segment"}`).
//!
//! Every `unsafe` block carries a `// SAFETY:` comment.

mod eal;
mod error;
mod mbuf;
mod mempool;
mod port;

pub use eal::{eal_arguments, launch_on_lcore, wait_all_lcores, wait_lcore, Eal, PROGRAM_NAME};
pub use error::DpdkError;
pub use mbuf::Mbuf;
pub use mempool::{data_room_for_mtu, Mempool, LARGE_DATA_ROOM};
pub use port::{DpdkPort, DpdkQueue, DpdkStatsReader, PortOptions};

use std::ffi::CStr;

/// DPDK's text for an error number (`rte_strerror`), which also knows DPDK's
/// own codes beyond the C library's.
pub fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or per-thread,
    // NUL-terminated string, valid until the next call on this thread; it is
    // copied out at once. It needs no EAL.
    unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

/// The calling thread's `rte_errno`.
pub(crate) fn last_errno() -> i32 {
    // SAFETY: reads a thread-local integer; no precondition.
    unsafe { dpdk_sys::rte_errno() }
}
