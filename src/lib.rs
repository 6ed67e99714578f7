#![warn(missing_docs)]
//! shardnet: a multi-core userspace TCP/UDP network stack on DPDK poll-mode
//! drivers, with AF_PACKET and in-memory backends.
//!
//! Layers, lowest first; a module imports only modules of its own layer or
//! of lower ones, never two of one layer each other (`scripts/check-layers.sh`
//! reads this list and checks it in CI, test code aside):
//! - [`wire`], [`eal`]: zero-copy views over packet bytes and checksums; the
//!   EAL command line of DPDK 22.11 (its options, the devices it names).
//! - [`port`], [`rss`]: packet I/O (AF_PACKET, in-memory link, the traits a
//!   backend implements); the Toeplitz hash and queue steering.
//! - `dpdk`: the DPDK ethdev backend of [`port`] (cargo feature `dpdk`).
//! - [`config`]: the TOML file, its defaults and limits.
//! - [`rules`], [`counters`]: the compiled port rules; the per-worker counters.
//! - [`steer`], [`neighbour`], [`capture`]: the rings between workers for
//!   software steering; the per-worker ARP cache and its mailboxes; the
//!   workers' capture slots and filters (`shardnet capture`).
//! - [`tcp`]: the TCP engine (connections, the per-worker table, and the
//!   callback interface services implement, [`tcp::service`]).
//! - [`rt`]: the per-worker async executor and its timers.
//! - [`app`]: the client side of the service API.
//! - [`service`]: the services that run inside the stack, and the registry
//!   of a program's own.
//! - [`smp`]: cross-core messages between workers, and the per-worker
//!   state they reach ([`smp::Sharded`]).
//! - [`kernel`]: the exception port towards the Linux kernel (relay, pinned
//!   flows, interface setup).
//! - [`stack`]: per-worker protocol processing (ARP, IPv4, ICMP, UDP, TCP).
//! - [`worker`]: the per-core poll loop.
//! - [`control`], [`doctor`]: the control plane (metrics, health, reloads);
//!   the preflight check of a host against a config (`shardnet doctor`).
//! - [`runtime`]: starting and stopping workers, threads and interfaces.
//! - [`net`]: sockets for ordinary threads ([`net::blocking`]).
//! - [`testing`], `fuzzing`: frame builders for tests and fuzz targets.

pub mod app;
pub mod config;
pub mod eal;
pub mod port;
pub mod rss;
pub mod rt;
pub mod rules;
pub mod steer;
pub mod wire;

pub mod capture;
pub mod control;
pub mod counters;
pub mod doctor;
#[cfg(feature = "dpdk")]
pub mod dpdk;
#[doc(hidden)]
pub mod fuzzing;
pub mod kernel;
pub mod neighbour;
pub mod net;
pub mod runtime;
pub mod service;
pub mod smp;
pub mod stack;
pub mod tcp;
pub mod testing;
pub mod worker;

pub use runtime::Runtime;
