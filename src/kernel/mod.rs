//! The exception port: the kernel's share of the NIC.

pub mod flows;
#[cfg(target_os = "linux")]
pub mod netif;
#[cfg(target_os = "linux")]
pub mod tap;
