//! The errors of DPDK setup: each names what failed, where, and DPDK's code.

/// A DPDK setup failure, worded as a sentence a user can act on. Fast-path
/// operations (bursts, allocation) never return it: they count and go on.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// The EAL arguments are unusable before EAL even sees them.
    #[error("invalid EAL arguments: {0}")]
    Arguments(String),

    /// An `eal_args` entry that DPDK 22.11's EAL does not accept (an unknown
    /// option, a value missing), refused before `rte_eal_init` so that EAL
    /// does not print its usage text.
    #[error("{0}")]
    BadArgument(String),

    /// `rte_eal_init` failed.
    #[error("DPDK EAL initialisation failed: {hint} (rte_errno {code}: {text})")]
    EalInit {
        /// `rte_errno` after the call.
        code: i32,
        /// DPDK's text for `code`.
        text: String,
        /// The likely cause and what to do about it.
        hint: String,
    },

    /// `rte_eal_cleanup` failed.
    #[error("DPDK EAL cleanup failed: {text} (error {code})")]
    EalCleanup {
        /// The error number.
        code: i32,
        /// DPDK's text for `code`.
        text: String,
    },

    /// The port id names no probed device.
    #[error(
        "DPDK port {port} not found: {available} port(s) available; check --vdev/--allow in eal_args"
    )]
    PortNotFound {
        /// The requested port id.
        port: u16,
        /// How many ports EAL probed.
        available: u16,
    },

    /// The device cannot have one queue pair per worker.
    #[error(
        "DPDK port {port} ({driver}) supports at most {max} RX/TX queue pair(s), {requested} requested (one per worker); use fewer workers"
    )]
    TooManyQueues {
        /// The port id.
        port: u16,
        /// The device's driver.
        driver: String,
        /// Queue pairs requested.
        requested: usize,
        /// The device's limit (the lower of its RX and TX maxima).
        max: u16,
    },

    /// The device cannot take a setting asked of it (MTU, descriptor counts,
    /// buffer size); the message is one sentence naming the setting and the
    /// device's limit.
    #[error("DPDK port {port} ({driver}): {message}")]
    Unsupported {
        /// The port id.
        port: u16,
        /// The driver's name.
        driver: String,
        /// What the device cannot do, and its limit.
        message: String,
    },

    /// A port-wide call failed.
    #[error("DPDK port {port}: {operation} failed: {text} (error {code})")]
    Port {
        /// The port id.
        port: u16,
        /// The DPDK call, as words.
        operation: &'static str,
        /// The error number (positive).
        code: i32,
        /// DPDK's text for `code`.
        text: String,
    },

    /// A per-queue call failed.
    #[error("DPDK port {port} queue {queue}: {operation} failed: {text} (error {code})")]
    Queue {
        /// The port id.
        port: u16,
        /// The queue id.
        queue: u16,
        /// The DPDK call, as words.
        operation: &'static str,
        /// The error number (positive).
        code: i32,
        /// DPDK's text for `code`.
        text: String,
    },

    /// `rte_pktmbuf_pool_create` failed.
    #[error("cannot create mbuf pool {name:?} ({mbufs} mbufs): {hint} (rte_errno {code}: {text})")]
    Mempool {
        /// The pool's name.
        name: String,
        /// The requested number of mbufs.
        mbufs: u32,
        /// `rte_errno` after the call.
        code: i32,
        /// DPDK's text for `code`.
        text: String,
        /// The likely cause.
        hint: String,
    },

    /// `rte_eal_remote_launch` refused.
    #[error("cannot launch a function on lcore {lcore}: {reason}")]
    Launch {
        /// The lcore id.
        lcore: u32,
        /// Why.
        reason: String,
    },
}

impl DpdkError {
    /// A [`DpdkError::Port`] from a negative return value.
    pub(crate) fn port(port: u16, operation: &'static str, rc: i32) -> Self {
        let code = rc.abs();
        DpdkError::Port {
            port,
            operation,
            code,
            text: super::strerror(code),
        }
    }

    /// A [`DpdkError::Queue`] from a negative return value.
    pub(crate) fn queue(port: u16, queue: u16, operation: &'static str, rc: i32) -> Self {
        let code = rc.abs();
        DpdkError::Queue {
            port,
            queue,
            operation,
            code,
            text: super::strerror(code),
        }
    }
}
