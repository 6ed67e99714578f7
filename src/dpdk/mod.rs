//! The DPDK backend (in progress).
