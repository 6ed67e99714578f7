//! shardnet: a multi-core userspace TCP/UDP network stack on DPDK poll-mode
//! drivers, with AF_PACKET and in-memory backends.
//!
//! Layers, lowest first; a lower layer never imports an upper one:
//! - [`wire`]: zero-copy views over packet bytes and checksums.
//! - [`port`]: packet I/O (DPDK ethdev, AF_PACKET, in-memory link).
//! - [`rss`]: the Toeplitz hash and queue steering.
//! - [`config`] and [`rules`]: the TOML file and the compiled port rules.
//! - [`stack`]: per-worker protocol processing (ARP, IPv4, ICMP, UDP).
//! - [`service`]: the services that run inside the stack.
//! - [`kernel`]: the exception port towards the Linux kernel.
//! - [`worker`]: the per-core poll loop.

pub mod app;
pub mod config;
pub mod port;
pub mod rss;
pub mod rt;
pub mod rules;
pub mod steer;
pub mod wire;

pub mod control;
pub mod counters;
#[cfg(feature = "dpdk")]
pub mod dpdk;
#[doc(hidden)]
pub mod fuzzing;
pub mod kernel;
pub mod neighbour;
pub mod runtime;
pub mod service;
pub mod stack;
pub mod tcp;
pub mod testing;
pub mod worker;
