//! Ethdev ports and their per-worker queue pairs.

use std::ffi::CStr;
use std::ptr::{self, NonNull};

use dpdk_sys::{rte_mbuf, rte_mempool};

use super::mempool::alloc_from;
use super::{DpdkError, Mbuf, Mempool};
use crate::port::{Burst, Link, PortStats, Queue, QueueStats, TxOffloads};
use crate::rss::{HashFields, RedirectionTable, RssModel, SYMMETRIC_RSS_KEY};

/// Port settings beyond the queue count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortOptions {
    /// RX descriptors per queue: outside the device's limits
    /// (`rx_desc_lim`) the port refuses to open; rounded up to its alignment.
    pub rx_descriptors: u16,
    /// TX descriptors per queue, as `rx_descriptors` (`tx_desc_lim`).
    pub tx_descriptors: u16,
    /// The IP MTU to set on the port (`rxmode.mtu` and
    /// `rte_eth_dev_set_mtu`), checked against the device's `min_mtu` and
    /// `max_mtu` and against the pools' data room (frames are never
    /// scattered over mbufs); `None` (the default) leaves the device's.
    pub mtu: Option<u16>,
    /// Receive frames for any destination MAC, not only ours.
    pub promiscuous: bool,
    /// Spread flows over the queues with RSS (symmetric Toeplitz key), where
    /// the port supports it and has more than one queue.
    pub rss: bool,
    /// Use the device's RX and TX checksum offloads where it reports them.
    pub checksum_offload: bool,
    /// With `checksum_offload`, enable the TX checksum offloads too (false:
    /// RX only, `[dpdk] tx_checksum = "software"`).
    pub tx_checksum_offload: bool,
    /// With the TX checksum offloads, enable TCP segmentation offload (TSO)
    /// where the device reports it with all three checksums. The queues then
    /// need a pool of large mbufs for it ([`DpdkPort::set_large_pools`]).
    pub tcp_segmentation: bool,
}

impl Default for PortOptions {
    fn default() -> Self {
        PortOptions {
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            mtu: None,
            promiscuous: false,
            rss: true,
            checksum_offload: true,
            tx_checksum_offload: true,
            tcp_segmentation: true,
        }
    }
}

/// The RSS hash types shardnet asks for: IPv4 addresses and TCP/UDP ports.
const RSS_HASH_TYPES: u64 = dpdk_sys::RTE_ETH_RSS_IPV4
    | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP
    | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_UDP;

/// Hash-type modifiers that restrict a hash to one side of the flow (source or
/// destination only). The model hashes both sides, so a port that reports one
/// of them cannot be modelled.
const RSS_ONE_SIDED: u64 = dpdk_sys::RTE_ETH_RSS_L3_SRC_ONLY
    | dpdk_sys::RTE_ETH_RSS_L3_DST_ONLY
    | dpdk_sys::RTE_ETH_RSS_L4_SRC_ONLY
    | dpdk_sys::RTE_ETH_RSS_L4_DST_ONLY;

/// Room for the key `rte_eth_dev_rss_hash_conf_get` writes: more than any
/// `hash_key_size` (a `u8`), as some drivers write their whole key whatever
/// length they are told.
const KEY_READ_BACK_ROOM: usize = 256;

/// A started ethdev port with one RX/TX queue pair per worker.
///
/// Close it with [`DpdkPort::close`] (or drop it) after the workers using its
/// queues have stopped.
#[derive(Debug)]
pub struct DpdkPort {
    port: u16,
    driver: String,
    pools: Vec<Mempool>,
    /// Large mbufs for TSO, one pool per queue ([`DpdkPort::set_large_pools`]).
    large_pools: Vec<Mempool>,
    queues_taken: bool,
    tx_offloads: TxOffloads,
    rss: bool,
    rss_model: Option<RssModel>,
    mac: [u8; 6],
    /// RX descriptors per queue, as the device took them.
    rx_descriptors: u16,
    closed: bool,
}

/// Reads a port's counters; see [`DpdkPort::stats_reader`].
#[derive(Clone, Copy, Debug)]
pub struct DpdkStatsReader {
    port: u16,
    queues: usize,
}

impl DpdkStatsReader {
    /// The port's counters now. `rte_eth_stats_get` and the xstats calls only
    /// read the driver's counters, which DPDK allows while other threads run
    /// RX/TX bursts (its telemetry does the same); only one thread at a time
    /// calls this.
    pub fn read(&self) -> PortStats {
        let port = self.port;
        let mut stats = PortStats::default();
        let mut raw = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid out pointer, valid port.
        let rc = unsafe { dpdk_sys::rte_eth_stats_get(port, &mut raw) };
        if rc == 0 {
            stats.rx_packets = raw.ipackets;
            stats.tx_packets = raw.opackets;
            stats.rx_bytes = raw.ibytes;
            stats.tx_bytes = raw.obytes;
            stats.rx_missed = raw.imissed;
            stats.rx_errors = raw.ierrors;
            stats.tx_errors = raw.oerrors;
            stats.rx_nombuf = raw.rx_nombuf;
            let per_queue = self.queues.min(raw.q_ipackets.len());
            stats.queues = (0..per_queue)
                .map(|q| QueueStats {
                    rx_packets: raw.q_ipackets[q],
                    tx_packets: raw.q_opackets[q],
                })
                .collect();
        } else {
            tracing::warn!("{}", DpdkError::port(port, "reading statistics", rc));
        }
        match xstats(port) {
            Ok(extended) => stats.extended = extended,
            Err(e) => tracing::warn!("{e}"),
        }
        stats
    }
}

impl DpdkStatsReader {
    /// The port's link now (`rte_eth_link_get_nowait`: never waits for
    /// autonegotiation, so the control thread may call it every second), or
    /// why the driver cannot tell (`-ENOTSUP`: no `link_update`).
    pub fn link(&self) -> Result<Link, DpdkError> {
        let (up, speed, full_duplex) = dpdk_sys::eth_link_get_nowait(self.port)
            .map_err(|rc| DpdkError::port(self.port, "reading the link", rc))?;
        Ok(link_from(up, speed, full_duplex))
    }
}

/// A [`Link`] from `rte_eth_link`'s fields. `RTE_ETH_SPEED_NUM_NONE` (0) and
/// `RTE_ETH_SPEED_NUM_UNKNOWN` (`UINT32_MAX`) are no speed;
/// `RTE_ETH_LINK_FULL_DUPLEX` is 1.
fn link_from(up: bool, speed: u32, full_duplex: bool) -> Link {
    Link {
        up,
        speed_mbps: (up && speed != 0 && speed != u32::MAX).then_some(speed),
        full_duplex,
    }
}

/// The device's description (`rte_eth_dev_info_get`).
fn dev_info(port: u16) -> Result<dpdk_sys::rte_eth_dev_info, DpdkError> {
    let mut info = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: `info` is a writable struct of the bindings' layout; the port id
    // was checked by the caller (the call checks it again).
    let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(port, &mut info) };
    if rc != 0 {
        return Err(DpdkError::port(port, "reading device info", rc));
    }
    Ok(info)
}

/// Refuse a descriptor count outside the device's limits, in one sentence.
fn check_descriptors(
    port: u16,
    driver: &str,
    key: &str,
    n: u16,
    lim: &dpdk_sys::rte_eth_desc_lim,
) -> Result<(), DpdkError> {
    // A driver that fills in no limits reports nb_max 0: nothing to check.
    if lim.nb_max == 0 || (lim.nb_min..=lim.nb_max).contains(&n) {
        return Ok(());
    }
    Err(DpdkError::Unsupported {
        port,
        driver: driver.to_owned(),
        message: format!(
            "[dpdk] {key} = {n} is outside the device's limits of {}-{} descriptors per queue{}",
            lim.nb_min,
            lim.nb_max,
            if lim.nb_align > 1 {
                format!(" (a multiple of {})", lim.nb_align)
            } else {
                String::new()
            }
        ),
    })
}

/// Refuse an MTU the device or the pools cannot take, in one sentence.
fn check_mtu(
    port: u16,
    driver: &str,
    mtu: u16,
    info: &dpdk_sys::rte_eth_dev_info,
    pools: &[Mempool],
) -> Result<(), DpdkError> {
    let fail = |message: String| DpdkError::Unsupported {
        port,
        driver: driver.to_owned(),
        message,
    };
    if info.max_mtu != 0 && !(info.min_mtu..=info.max_mtu).contains(&mtu) {
        return Err(fail(format!(
            "[interface] mtu {mtu} is outside the device's MTU range {}-{}",
            info.min_mtu, info.max_mtu
        )));
    }
    // The frame ethdev holds against max_rx_pktlen (as
    // eth_dev_get_overhead_len computes it).
    let overhead = if info.max_mtu != u16::MAX && info.max_rx_pktlen > u32::from(info.max_mtu) {
        info.max_rx_pktlen - u32::from(info.max_mtu)
    } else {
        14 + 4
    };
    let wire_frame = u32::from(mtu) + overhead;
    if info.max_rx_pktlen != 0 && wire_frame > info.max_rx_pktlen {
        return Err(fail(format!(
            "[interface] mtu {mtu} needs frames of {wire_frame} bytes, more than the device's \
             largest ({}); lower mtu or use a device that takes jumbo frames",
            info.max_rx_pktlen
        )));
    }
    // Ethernet header, a VLAN tag and the CRC some drivers store.
    let frame = u32::from(mtu) + 14 + 4 + 4;
    if let Some(pool) = pools.iter().find(|p| p.frame_room() < frame) {
        return Err(fail(format!(
            "mbuf pool {} holds frames of {} bytes, too small for [interface] mtu {mtu} \
             ({frame} bytes a frame); make the pools with Mempool::for_mtu",
            pool.name(),
            pool.frame_room()
        )));
    }
    Ok(())
}

/// The RSS key for a device that takes `hash_key_size` bytes (40 or 52).
///
/// DPDK 23.11 and later refuse, in `rte_eth_dev_configure`, a key whose
/// length is not the device's `hash_key_size`
/// ([`dpdk_sys::RSS_KEY_LEN_MUST_MATCH`]): a device reporting 0, or more than
/// the 52 bytes of [`SYMMETRIC_RSS_KEY`], then gets no key (empty: the driver
/// hashes with its own, and the port has no RSS model). Older releases take
/// the common 40 bytes from a device reporting 0, and the first 52 from one
/// reporting more.
fn rss_key(hash_key_size: u8) -> Vec<u8> {
    rss_key_for(hash_key_size, dpdk_sys::RSS_KEY_LEN_MUST_MATCH)
}

fn rss_key_for(hash_key_size: u8, len_must_match: bool) -> Vec<u8> {
    let len = match usize::from(hash_key_size) {
        0 if len_must_match => 0,
        0 => 40,
        n if n > SYMMETRIC_RSS_KEY.len() && len_must_match => 0,
        n => n.min(SYMMETRIC_RSS_KEY.len()),
    };
    SYMMETRIC_RSS_KEY[..len].to_vec()
}

/// The TX offloads to enable: those shardnet uses that the device has.
fn tx_offload_mask(capa: u64) -> u64 {
    capa & (dpdk_sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM
        | dpdk_sys::RTE_ETH_TX_OFFLOAD_UDP_CKSUM
        | dpdk_sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM)
}

/// The RX offloads to enable: those shardnet uses that the device has.
fn rx_offload_mask(capa: u64) -> u64 {
    capa & (dpdk_sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM
        | dpdk_sys::RTE_ETH_RX_OFFLOAD_UDP_CKSUM
        | dpdk_sys::RTE_ETH_RX_OFFLOAD_TCP_CKSUM)
}

/// The [`TxOffloads`] a set of enabled `RTE_ETH_TX_OFFLOAD_*` flags gives.
fn tx_offloads_from(enabled: u64) -> TxOffloads {
    TxOffloads {
        ipv4_checksum: enabled & dpdk_sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM != 0,
        udp_checksum: enabled & dpdk_sys::RTE_ETH_TX_OFFLOAD_UDP_CKSUM != 0,
        tcp_checksum: enabled & dpdk_sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM != 0,
        tcp_segmentation: enabled & dpdk_sys::RTE_ETH_TX_OFFLOAD_TCP_TSO != 0,
    }
}

impl DpdkPort {
    /// Configure and start port `port_id` with one RX/TX queue pair per pool in
    /// `pools` (queue `i` receives into `pools[i]`; give each worker its own).
    ///
    /// Enables RSS with the symmetric key over IPv4/TCP/UDP when the port
    /// supports it and there is more than one queue (with the RSS hash in the
    /// mbufs where the device offers it), and the checksum offloads the device
    /// reports (see [`DpdkPort::tx_offloads`]). With RSS on, programs the
    /// device's redirection table round-robin over the queues and reads the
    /// configuration in force back (see [`DpdkPort::rss_model`]).
    pub fn open(port_id: u16, pools: &[Mempool], opts: PortOptions) -> Result<DpdkPort, DpdkError> {
        let port = port_id;
        // SAFETY: validity check of a port id; no other precondition.
        if unsafe { dpdk_sys::rte_eth_dev_is_valid_port(port) } == 0 {
            return Err(DpdkError::PortNotFound {
                port,
                available: super::Eal::port_count(),
            });
        }
        if pools.is_empty() {
            return Err(DpdkError::Arguments(format!(
                "DPDK port {port}: no mbuf pools given (one per queue)"
            )));
        }
        let info = dev_info(port)?;
        let driver = if info.driver_name.is_null() {
            String::from("unknown driver")
        } else {
            // SAFETY: a non-null driver_name is a static C string of the driver.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        let max = info.max_rx_queues.min(info.max_tx_queues);
        if pools.len() > usize::from(max) {
            return Err(DpdkError::TooManyQueues {
                port,
                driver,
                requested: pools.len(),
                max,
            });
        }
        let queues = pools.len() as u16;
        check_descriptors(
            port,
            &driver,
            "rx_descriptors",
            opts.rx_descriptors,
            &info.rx_desc_lim,
        )?;
        check_descriptors(
            port,
            &driver,
            "tx_descriptors",
            opts.tx_descriptors,
            &info.tx_desc_lim,
        )?;

        let mut conf = dpdk_sys::rte_eth_conf::default();
        if let Some(mtu) = opts.mtu {
            check_mtu(port, &driver, mtu, &info, pools)?;
            conf.rxmode.mtu = u32::from(mtu);
        }
        // RSS: the key must outlive rte_eth_dev_configure, which copies it.
        let mut key = rss_key(info.hash_key_size);
        let hash_types = RSS_HASH_TYPES & info.flow_type_rss_offloads;
        let rss = opts.rss && queues > 1 && hash_types != 0;
        if rss {
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            if !key.is_empty() {
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
            }
            conf.rx_adv_conf.rss_conf.rss_hf = hash_types;
            conf.rxmode.offloads |= info.rx_offload_capa & dpdk_sys::RTE_ETH_RX_OFFLOAD_RSS_HASH;
            tracing::info!(
                port,
                %driver,
                queues,
                key_len = key.len(),
                hash_types = format_args!("{hash_types:#x}"),
                mbuf_hash = conf.rxmode.offloads & dpdk_sys::RTE_ETH_RX_OFFLOAD_RSS_HASH != 0,
                "RSS on with the symmetric Toeplitz key"
            );
        } else if queues > 1 {
            tracing::warn!(
                port,
                %driver,
                queues,
                requested = opts.rss,
                "RSS off (the port reports no IPv4/TCP/UDP RSS or it is disabled): \
                 the device decides which queue gets a packet (net_af_packet: the kernel's symmetric fanout hash)"
            );
        } else {
            tracing::info!(port, %driver, "one queue: RSS not needed");
        }

        if opts.checksum_offload {
            conf.rxmode.offloads |= rx_offload_mask(info.rx_offload_capa);
            if opts.tx_checksum_offload {
                conf.txmode.offloads |= tx_offload_mask(info.tx_offload_capa);
                let tso_needs = dpdk_sys::RTE_ETH_TX_OFFLOAD_TCP_TSO
                    | dpdk_sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM
                    | dpdk_sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
                if opts.tcp_segmentation && info.tx_offload_capa & tso_needs == tso_needs {
                    conf.txmode.offloads |= dpdk_sys::RTE_ETH_TX_OFFLOAD_TCP_TSO;
                }
            }
        }
        let tx_offloads = tx_offloads_from(conf.txmode.offloads);
        tracing::info!(
            port,
            rx_offloads = format_args!("{:#x}", conf.rxmode.offloads),
            tx_offloads = ?tx_offloads,
            "checksum and segmentation offloads the device reports and shardnet enables"
        );

        // SAFETY: `conf` is fully initialised and `key` (pointed to by it)
        // outlives the call; the port exists and is stopped (never started).
        let rc = unsafe { dpdk_sys::rte_eth_dev_configure(port, queues, queues, &conf) };
        if rc != 0 {
            return Err(DpdkError::port(port, "configuring queues and offloads", rc));
        }

        let mut port_handle = DpdkPort {
            port,
            driver,
            pools: pools.to_vec(),
            queues_taken: false,
            large_pools: Vec::new(),
            tx_offloads,
            rss,
            rss_model: None,
            mac: [0; 6],
            rx_descriptors: 0,
            closed: false,
        };
        // From here on, a failure closes the port (port_handle's Drop).

        if let Some(mtu) = opts.mtu {
            // rxmode.mtu sizes the device's receive path; set_mtu is what
            // drivers with an MTU of their own act on (net_af_packet sets the
            // Linux interface's, for one).
            // SAFETY: plain call on a configured, stopped port.
            let rc = unsafe { dpdk_sys::rte_eth_dev_set_mtu(port, mtu) };
            if rc == -libc::ENOTSUP {
                tracing::warn!(
                    port,
                    driver = %port_handle.driver,
                    mtu,
                    "the driver cannot set an MTU; make sure the device and its link take frames of it"
                );
            } else if rc != 0 {
                return Err(DpdkError::Unsupported {
                    port,
                    driver: port_handle.driver.clone(),
                    message: format!(
                        "the device refuses [interface] mtu {mtu} (rte_eth_dev_set_mtu: {}); \
                         lower mtu, or give the device room for such frames (net_af_packet: \
                         framesz)",
                        super::strerror(rc.abs())
                    ),
                });
            }
        }

        let (mut nb_rx, mut nb_tx) = (opts.rx_descriptors, opts.tx_descriptors);
        // SAFETY: valid out pointers; the port is configured.
        let rc =
            unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut nb_rx, &mut nb_tx) };
        if rc != 0 {
            return Err(DpdkError::port(port, "adjusting descriptor counts", rc));
        }
        // SAFETY: plain query of a valid port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(port) };
        let mut rxconf = info.default_rxconf;
        rxconf.offloads = conf.rxmode.offloads;
        let mut txconf = info.default_txconf;
        txconf.offloads = conf.txmode.offloads;
        for (q, pool) in pools.iter().enumerate() {
            let q = q as u16;
            // SAFETY: q < queues configured above; rxconf is a valid config;
            // the pool is a live packet pool that outlives the port (the port
            // keeps a handle). A negative socket (SOCKET_ID_ANY) is accepted as
            // the unsigned value C would pass.
            let rc = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    port,
                    q,
                    nb_rx,
                    socket as u32,
                    &rxconf,
                    pool.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(DpdkError::queue(port, q, "RX queue setup", rc));
            }
            // SAFETY: as above, for the TX side.
            let rc =
                unsafe { dpdk_sys::rte_eth_tx_queue_setup(port, q, nb_tx, socket as u32, &txconf) };
            if rc != 0 {
                return Err(DpdkError::queue(port, q, "TX queue setup", rc));
            }
        }

        // SAFETY: every queue is set up.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(port) };
        if rc != 0 {
            return Err(DpdkError::port(port, "starting", rc));
        }

        if rss {
            port_handle.rss_model = match program_and_read_rss(port, &info, &key, queues) {
                Ok(model) => Some(model),
                Err(reason) => {
                    tracing::warn!(
                        port,
                        driver = %port_handle.driver,
                        queues,
                        "no RSS model of the port: {reason}; shardnet steers flows in software"
                    );
                    None
                }
            };
        }

        // SAFETY: plain calls on a started port.
        let rc = unsafe {
            if opts.promiscuous {
                dpdk_sys::rte_eth_promiscuous_enable(port)
            } else {
                dpdk_sys::rte_eth_promiscuous_disable(port)
            }
        };
        if rc == -libc::ENOTSUP {
            tracing::debug!(port, "the driver cannot change promiscuous mode");
        } else if rc != 0 {
            return Err(DpdkError::port(port, "setting promiscuous mode", rc));
        }

        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid out pointer, valid port.
        let rc = unsafe { dpdk_sys::rte_eth_macaddr_get(port, &mut addr) };
        if rc != 0 {
            return Err(DpdkError::port(port, "reading the MAC address", rc));
        }
        port_handle.mac = addr.addr_bytes;
        port_handle.rx_descriptors = nb_rx;
        tracing::info!(
            port,
            driver = %port_handle.driver,
            queues,
            rx_descriptors = nb_rx,
            tx_descriptors = nb_tx,
            mtu = ?port_handle.mtu(),
            mac = %format_mac(&port_handle.mac),
            "DPDK port started"
        );
        Ok(port_handle)
    }

    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port
    }

    /// The device's driver name (`net_ring`, `net_ice`, ...).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The number of RX/TX queue pairs.
    pub fn queue_count(&self) -> usize {
        self.pools.len()
    }

    /// Whether RSS is configured on the port (it reports IPv4/TCP/UDP hash
    /// types, has more than one queue, and [`PortOptions::rss`] is on). The
    /// device then spreads flows by its own means; whether shardnet knows how
    /// is [`DpdkPort::rss_model`].
    pub fn rss_enabled(&self) -> bool {
        self.rss
    }

    /// How the port spreads flows over its queues, where shardnet can model
    /// it: RSS is on and the device reads back the symmetric Toeplitz key
    /// shardnet configured, a redirection table (programmed round-robin over
    /// the queues at open, then read back as the model's table), and hash
    /// types the model follows (`RTE_ETH_RSS_IPV4`, `FRAG_IPV4` or
    /// `NONFRAG_IPV4_OTHER`: [`HashFields::ipv4`]; `NONFRAG_IPV4_TCP`:
    /// `ipv4_tcp`; `NONFRAG_IPV4_UDP`: `ipv4_udp`). Queue `i` belongs to
    /// worker `i`.
    ///
    /// `None` when RSS is off, or the device cannot report or take its RSS
    /// configuration (no `rss_hash_conf_get`, no redirection table), or uses
    /// another key or one-sided hash types; the reason was logged at open.
    /// Shardnet then steers in software.
    ///
    /// DPDK 22.11 cannot report the hash function (`rss_conf.algorithm`
    /// arrived in 23.11): the model assumes Toeplitz, the default of the
    /// drivers that do RSS. A port whose hash function was changed through
    /// `rte_flow` (`RTE_ETH_HASH_FUNCTION_SIMPLE_XOR` or
    /// `SYMMETRIC_TOEPLITZ` on i40e, ice, hns3, ...) breaks that assumption;
    /// shardnet creates no flow rules. net_null reports a table and a key but
    /// hashes nothing (and ignores the configured key, so it gets no model).
    pub fn rss_model(&self) -> Option<RssModel> {
        self.rss_model.clone()
    }

    /// RX descriptors per queue, as the device took them (the RX ring's
    /// size).
    pub fn rx_descriptors(&self) -> u16 {
        self.rx_descriptors
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The port's MTU, where the driver reports one.
    pub fn mtu(&self) -> Option<u16> {
        let mut mtu = 0u16;
        // SAFETY: valid out pointer; the port is open.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_mtu(self.port, &mut mtu) };
        (rc == 0).then_some(mtu)
    }

    /// The device name EAL gave the port (`net_af_packet0`, `0000:3b:00.0`).
    pub fn device_name(&self) -> Option<String> {
        let mut name = [0 as std::os::raw::c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: the buffer has the RTE_ETH_NAME_MAX_LEN bytes the function
        // may write, NUL included; the port is open.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(self.port, name.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        // SAFETY: on success the buffer holds a NUL-terminated name.
        let name = unsafe { CStr::from_ptr(name.as_ptr()) };
        Some(name.to_string_lossy().into_owned())
    }

    /// The id of the port EAL probed under device `name` (a `--vdev` name
    /// such as `net_tap_shardnet`), if any. `None` before EAL is up.
    pub fn id_by_name(name: &str) -> Option<u16> {
        if !super::eal::eal_running() {
            return None;
        }
        let name = std::ffi::CString::new(name).ok()?;
        let mut port = 0u16;
        // SAFETY: EAL is initialised (checked above); `name` is a
        // NUL-terminated string that outlives the call; valid out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut port) };
        (rc == 0).then_some(port)
    }

    /// The NUMA node of port `port`'s device (`rte_eth_dev_socket_id`), or
    /// `None` where DPDK knows none (a vdev, a single-node host reporting
    /// `SOCKET_ID_ANY`, an invalid port, EAL not up).
    pub fn numa_node(port: u16) -> Option<u32> {
        if !super::eal::eal_running() {
            return None;
        }
        // SAFETY: EAL is initialised; a plain query that checks the port id
        // itself (-1 with rte_errno for an invalid one).
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(port) };
        u32::try_from(socket).ok()
    }

    /// The transmit checksum offloads enabled on every queue.
    pub fn tx_offloads(&self) -> TxOffloads {
        self.tx_offloads
    }

    /// Give queue `i` the pool `pools[i]` of large mbufs (room for a frame of
    /// 65,407 bytes: [`super::LARGE_DATA_ROOM`]) for the segments the NIC cuts
    /// (TSO). Call before [`DpdkPort::queues`]; without it, or where TSO is
    /// off, [`Queue::alloc_large`] returns `None` and the stack cuts.
    pub fn set_large_pools(&mut self, pools: Vec<Mempool>) {
        self.large_pools = pools;
    }

    /// The queue pairs, one per pool given to [`DpdkPort::open`], in order
    /// (queue `i` for worker `i`). Hands them out once; later calls return an
    /// empty vector.
    pub fn queues(&mut self) -> Vec<DpdkQueue> {
        if self.queues_taken {
            return Vec::new();
        }
        self.queues_taken = true;
        self.pools
            .iter()
            .enumerate()
            .map(|(q, pool)| DpdkQueue {
                port: self.port,
                queue: q as u16,
                pool_raw: NonNull::new(pool.as_ptr()).expect("a live pool"),
                pool: pool.clone(),
                large_pool: self
                    .large_pools
                    .get(q)
                    .filter(|_| self.tx_offloads.tcp_segmentation)
                    .map(|pool| {
                        (
                            NonNull::new(pool.as_ptr()).expect("a live pool"),
                            pool.clone(),
                        )
                    }),
                tx_offloads: self.tx_offloads,
                multi_segment_drops: 0,
                tso_proven: false,
                tso_refused: 0,
            })
            .collect()
    }

    /// The device's counters (`rte_eth_stats_get`) and its extended statistics
    /// by name (xstats). For the control thread: it allocates. A counter the
    /// device cannot read stays 0 (and is logged).
    pub fn stats(&self) -> PortStats {
        self.stats_reader().read()
    }

    /// What reads [`DpdkPort::stats`] from another thread (the control
    /// thread's HTTP server). Read only while the port is open: stop the
    /// reader's users before [`DpdkPort::close`].
    pub fn stats_reader(&self) -> DpdkStatsReader {
        DpdkStatsReader {
            port: self.port,
            queues: self.pools.len(),
        }
    }

    /// Stop and close the port. Call after every worker using its queues has
    /// stopped polling (since DPDK 21.11 a burst on a stopped port is a no-op,
    /// not a crash, but the packets are lost).
    pub fn close(mut self) -> Result<(), DpdkError> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<(), DpdkError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let port = self.port;
        // SAFETY: stopping a configured port; a port that was never started
        // is stopped already and the call is harmless.
        let rc = unsafe { dpdk_sys::rte_eth_dev_stop(port) };
        if rc != 0 {
            return Err(DpdkError::port(port, "stopping", rc));
        }
        // SAFETY: the port is stopped; close releases its queues and the
        // mbufs posted in RX rings.
        let rc = unsafe { dpdk_sys::rte_eth_dev_close(port) };
        if rc != 0 {
            return Err(DpdkError::port(port, "closing", rc));
        }
        tracing::info!(port, "DPDK port closed");
        Ok(())
    }
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            tracing::warn!("{e}");
        }
    }
}

/// The [`HashFields`] of the hash types a port reports (`rss_hf`), or why the
/// model cannot follow them.
fn hash_fields_from_rss_hf(rss_hf: u64) -> Result<HashFields, String> {
    if rss_hf & RSS_ONE_SIDED != 0 {
        return Err(format!(
            "the port hashes one side of the flow only (rss_hf {rss_hf:#x})"
        ));
    }
    let fields = HashFields {
        ipv4: rss_hf
            & (dpdk_sys::RTE_ETH_RSS_IPV4
                | dpdk_sys::RTE_ETH_RSS_FRAG_IPV4
                | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_OTHER)
            != 0,
        ipv4_tcp: rss_hf & dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP != 0,
        ipv4_udp: rss_hf & dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_UDP != 0,
    };
    if !(fields.ipv4 || fields.ipv4_tcp || fields.ipv4_udp) {
        return Err(format!(
            "the port hashes no IPv4 packets (rss_hf {rss_hf:#x})"
        ));
    }
    Ok(fields)
}

/// The groups of 64 entries in which `rte_eth_dev_rss_reta_update` and
/// `_query` take a table of `size` entries: `ceil(size / 64)` groups, the mask
/// bit of every entry of the table set (the last group's beyond `size` clear),
/// entry `i` holding `entry(i)`.
fn reta_groups(
    size: usize,
    entry: impl Fn(usize) -> u16,
) -> Vec<dpdk_sys::rte_eth_rss_reta_entry64> {
    let group = dpdk_sys::RTE_ETH_RETA_GROUP_SIZE as usize;
    (0..size.div_ceil(group))
        .map(|g| {
            let mut e = dpdk_sys::rte_eth_rss_reta_entry64::default();
            let in_group = (size - g * group).min(group);
            e.mask = if in_group == 64 {
                u64::MAX
            } else {
                (1u64 << in_group) - 1
            };
            for (i, slot) in e.reta.iter_mut().enumerate().take(in_group) {
                *slot = entry(g * group + i);
            }
            e
        })
        .collect()
}

/// The `size` entries of a table read back in `groups` (see [`reta_groups`]).
fn reta_entries(groups: &[dpdk_sys::rte_eth_rss_reta_entry64], size: usize) -> Vec<u16> {
    groups
        .iter()
        .flat_map(|g| g.reta.iter().copied())
        .take(size)
        .collect()
}

/// Write the redirection table of `port` (`entries.len()` is the device's
/// `reta_size`).
fn reta_update(port: u16, entries: &[u16]) -> Result<(), DpdkError> {
    let mut groups = reta_groups(entries.len(), |i| entries[i]);
    // SAFETY: `groups` holds ceil(len / 64) groups, all DPDK reads for a table
    // of `len` entries, and lives across the call; the port is started.
    let rc = unsafe {
        dpdk_sys::rte_eth_dev_rss_reta_update(port, groups.as_mut_ptr(), entries.len() as u16)
    };
    if rc != 0 {
        return Err(DpdkError::port(
            port,
            "programming the RSS redirection table",
            rc,
        ));
    }
    Ok(())
}

/// Read the redirection table of `port`, `size` (the device's `reta_size`)
/// entries.
fn reta_query(port: u16, size: u16) -> Result<Vec<u16>, DpdkError> {
    let mut groups = reta_groups(usize::from(size), |_| 0);
    // SAFETY: `groups` holds ceil(size / 64) writable groups, all DPDK writes
    // for a table of `size` entries; the port is started.
    let rc = unsafe { dpdk_sys::rte_eth_dev_rss_reta_query(port, groups.as_mut_ptr(), size) };
    if rc != 0 {
        return Err(DpdkError::port(
            port,
            "reading the RSS redirection table",
            rc,
        ));
    }
    Ok(reta_entries(&groups, usize::from(size)))
}

/// The RSS key and hash types (`rss_hf`) in force on `port`, asking for a key
/// of `key_len` bytes (the length configured). The key read back is as long
/// as the driver says (`rss_key_len`, which most leave as asked).
fn rss_hash_conf_get(port: u16, key_len: usize) -> Result<(Vec<u8>, u64), DpdkError> {
    let mut key = vec![0u8; KEY_READ_BACK_ROOM];
    let mut conf = dpdk_sys::rte_eth_rss_conf {
        rss_key: key.as_mut_ptr(),
        rss_key_len: key_len.min(usize::from(u8::MAX)) as u8,
        ..Default::default()
    };
    // SAFETY: `conf` is a valid struct whose key pointer has
    // KEY_READ_BACK_ROOM writable bytes, more than any key a driver has (the
    // length is a u8), and outlives the call; the port is started.
    let rc = unsafe { dpdk_sys::rte_eth_dev_rss_hash_conf_get(port, &mut conf) };
    if rc != 0 {
        return Err(DpdkError::port(
            port,
            "reading the RSS hash configuration",
            rc,
        ));
    }
    key.truncate(usize::from(conf.rss_key_len));
    Ok((key, conf.rss_hf))
}

/// What a port reports of the RSS configuration in force.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RssReadBack {
    /// The key (`rte_eth_dev_rss_hash_conf_get`).
    key: Vec<u8>,
    /// The hash types (`rss_hf`).
    rss_hf: u64,
    /// The redirection table (`rte_eth_dev_rss_reta_query`).
    reta: Vec<u16>,
}

/// The model of a port with `queues` queues that reads back `back` after
/// shardnet configured `key`, or why there is none.
fn model_from_read_back(back: &RssReadBack, key: &[u8], queues: u16) -> Result<RssModel, String> {
    if back.key != key {
        return Err(format!(
            "the port reads back another RSS key than the symmetric one configured \
             ({} bytes: {}; configured {} bytes: {})",
            back.key.len(),
            hex(&back.key),
            key.len(),
            hex(key)
        ));
    }
    let fields = hash_fields_from_rss_hf(back.rss_hf)?;
    if !back.reta.len().is_power_of_two() {
        return Err(format!(
            "the redirection table has {} entries, not a power of two",
            back.reta.len()
        ));
    }
    if let Some(q) = back.reta.iter().find(|&&q| q >= queues) {
        return Err(format!(
            "the redirection table names queue {q}, beyond the {queues} queues"
        ));
    }
    Ok(RssModel::new(
        &back.key,
        RedirectionTable::from_entries(back.reta.clone()),
        fields,
        queues,
    ))
}

/// Program `port`'s redirection table round-robin over `queues` and read back
/// the RSS configuration in force (`key` was configured): its model, or why
/// there is none.
fn program_and_read_rss(
    port: u16,
    info: &dpdk_sys::rte_eth_dev_info,
    key: &[u8],
    queues: u16,
) -> Result<RssModel, String> {
    if key.is_empty() {
        return Err(format!(
            "the device's RSS key size ({} bytes) is not one the symmetric key has \
             (DPDK {} takes only a key of exactly that size), so it hashes with its own key",
            info.hash_key_size,
            dpdk_sys::VERSION
        ));
    }
    let (key_back, rss_hf) = rss_hash_conf_get(port, key.len()).map_err(|e| e.to_string())?;
    let size = info.reta_size;
    if size == 0 {
        return Err("the device reports no redirection table (reta_size 0)".into());
    }
    if !usize::from(size).is_power_of_two() {
        return Err(format!(
            "the device's redirection table has {size} entries, not a power of two"
        ));
    }
    let table = RedirectionTable::new_round_robin(usize::from(size), queues);
    reta_update(port, table.entries()).map_err(|e| e.to_string())?;
    let reta = reta_query(port, size).map_err(|e| e.to_string())?;
    if reta != table.entries() {
        tracing::info!(
            port,
            "the redirection table read back differs from the round-robin one programmed; \
             the model follows the device"
        );
    }
    let model = model_from_read_back(
        &RssReadBack {
            key: key_back,
            rss_hf,
            reta,
        },
        key,
        queues,
    )?;
    tracing::info!(
        port,
        queues,
        reta_size = size,
        key_len = key.len(),
        rss_hf = format_args!("{rss_hf:#x}"),
        fields = ?model.fields(),
        "RSS redirection table programmed round-robin over the queues; the key, table \
         and hash types read back from the device make the port's RSS model"
    );
    Ok(model)
}

/// Bytes as lowercase hex, no separators.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `aa:bb:cc:dd:ee:ff`.
fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The port's extended statistics, by name.
fn xstats(port: u16) -> Result<Vec<(String, u64)>, DpdkError> {
    // SAFETY: a null array with size 0 asks for the count only.
    let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(port, ptr::null_mut(), 0) };
    if n < 0 {
        return Err(DpdkError::port(port, "counting extended statistics", n));
    }
    let n = n as usize;
    let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n];
    let mut values = vec![dpdk_sys::rte_eth_xstat::default(); n];
    // SAFETY: `names` has room for n entries.
    let got_names =
        unsafe { dpdk_sys::rte_eth_xstats_get_names(port, names.as_mut_ptr(), n as u32) };
    // SAFETY: `values` has room for n entries.
    let got_values = unsafe { dpdk_sys::rte_eth_xstats_get(port, values.as_mut_ptr(), n as u32) };
    if got_names < 0 || got_values < 0 {
        return Err(DpdkError::port(
            port,
            "reading extended statistics",
            got_names.min(got_values),
        ));
    }
    let count = (got_names as usize).min(got_values as usize).min(n);
    Ok(values[..count]
        .iter()
        .filter_map(|v| {
            let name = names.get(v.id as usize)?;
            // SAFETY: DPDK writes NUL-terminated names into the 64-byte array;
            // the array's last byte is never part of a name of the maximum size.
            let name = unsafe { CStr::from_ptr(name.name.as_ptr()) };
            Some((name.to_string_lossy().into_owned(), v.value))
        })
        .collect())
}

/// One RX/TX queue pair of a [`DpdkPort`], for one worker.
#[derive(Debug)]
pub struct DpdkQueue {
    port: u16,
    queue: u16,
    pool_raw: NonNull<rte_mempool>,
    pool: Mempool,
    /// Where TSO is on: the pool of large mbufs (and its raw pointer).
    large_pool: Option<(NonNull<rte_mempool>, Mempool)>,
    tx_offloads: TxOffloads,
    multi_segment_drops: u64,
    /// The driver took a TSO segment: TSO works on this queue.
    tso_proven: bool,
    /// TSO segments the driver refused before it took any.
    tso_refused: u8,
}

/// TSO segments a driver may refuse, before it has taken any, until the
/// queue stops asking for TSO (the stack cuts its segments instead).
const TSO_REFUSALS_TO_GIVE_UP: u8 = 4;

/// The index of the first TSO segment of a burst (read before the driver
/// owns the mbufs).
#[cold]
fn first_tso(pkts: &[Mbuf]) -> Option<usize> {
    pkts.iter()
        .position(|m| m.ol_flags() & dpdk_sys::RTE_MBUF_F_TX_TCP_SEG != 0)
}

// SAFETY: DPDK's burst functions on one queue id must not run on two threads
// at once. A DpdkQueue is the only handle to its queue id: DpdkPort::queues
// makes each once and DpdkQueue is not Clone, and the bursts take &mut self. So
// moving it to the worker thread that then uses it alone is sound. `pool_raw`
// points to a pool kept alive by `pool` (a thread-safe handle), and so does
// `large_pool`'s pointer by its handle.
unsafe impl Send for DpdkQueue {}

impl DpdkQueue {
    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port
    }

    /// The queue id on the port.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// The pool this queue receives into and allocates from.
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Until the driver has taken one TSO segment: whether it took the
    /// burst's first one (at `at`) or refused it (the first not sent). Some drivers
    /// refuse TSO frames they report they can cut (DPDK 22.11's net_tap
    /// compares the cut frames, Ethernet header included, with the MTU);
    /// after [`TSO_REFUSALS_TO_GIVE_UP`] such refusals and no success the
    /// queue gives up TSO with a warning, so that a connection's data does
    /// not go out only as retransmissions.
    #[cold]
    fn check_tso(&mut self, at: usize, sent: usize) {
        if sent > at {
            self.tso_proven = true;
            return;
        }
        if sent == at {
            self.tso_refused += 1;
            if self.tso_refused >= TSO_REFUSALS_TO_GIVE_UP {
                self.large_pool = None;
                tracing::warn!(
                    port = self.port,
                    queue = self.queue,
                    "the driver refused {} TSO segments and took none: TSO off on this \
                     queue, the stack cuts its segments (counted as tx_full drops meanwhile)",
                    self.tso_refused
                );
            }
        }
    }

    /// Chained (multi-segment) packets received and freed at once: shardnet
    /// handles single-segment frames only (RX scatter is off, so this stays 0
    /// unless a driver misbehaves).
    pub fn multi_segment_drops(&self) -> u64 {
        self.multi_segment_drops
    }
}

impl Queue for DpdkQueue {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Burst<Mbuf>) -> usize {
        let start = out.len();
        let room = out.capacity() - start;
        if room == 0 {
            return 0;
        }
        // SAFETY: ArrayVec's buffer holds `capacity` contiguous slots, the first
        // `start` initialised; we pass the spare slots [start, capacity). Mbuf
        // is repr(transparent) over NonNull<rte_mbuf>, the layout of
        // `struct rte_mbuf *`. rte_eth_rx_burst writes `n <= room` non-null
        // pointers to mbufs it hands over to us, in slots start..start+n, and
        // set_len then covers exactly the slots written. This thread alone uses
        // the queue id (see Send).
        let n = unsafe {
            let slots = out.as_mut_ptr().add(start).cast::<*mut rte_mbuf>();
            let n = usize::from(dpdk_sys::rte_eth_rx_burst(
                self.port,
                self.queue,
                slots,
                room as u16,
            ));
            out.set_len(start + n);
            n
        };
        if out[start..].iter().any(Mbuf::is_multi_segment) {
            return self.drop_multi_segment(out, start);
        }
        n
    }

    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst<Mbuf>) -> usize {
        let n = pkts.len();
        if n == 0 {
            return 0;
        }
        let first_tso = if !self.tso_proven && self.large_pool.is_some() {
            first_tso(pkts)
        } else {
            None
        };
        // SAFETY: `pkts` holds n initialised Mbufs, laid out as n `struct
        // rte_mbuf *`. The driver takes ownership of the first `sent` (it frees
        // them after transmission); those slots are then dropped from the
        // vector without running Mbuf's Drop: the rest is moved to the front
        // (ptr::copy handles the overlap) and the length set to what is left.
        unsafe {
            let base = pkts.as_mut_ptr();
            let sent = usize::from(dpdk_sys::rte_eth_tx_burst(
                self.port,
                self.queue,
                base.cast::<*mut rte_mbuf>(),
                n as u16,
            ));
            if let Some(at) = first_tso {
                self.check_tso(at, sent);
            }
            if sent > 0 {
                ptr::copy(base.add(sent), base, n - sent);
                pkts.set_len(n - sent);
            }
            sent
        }
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        alloc_from(self.pool_raw)
    }

    #[inline]
    fn alloc_large(&mut self) -> Option<Mbuf> {
        alloc_from(self.large_pool.as_ref()?.0)
    }

    fn rx_dropped(&self) -> u64 {
        self.multi_segment_drops()
    }

    fn rx_multi_segment_drops(&self) -> u64 {
        self.multi_segment_drops()
    }

    fn tx_offloads(&self) -> TxOffloads {
        self.tx_offloads
    }

    fn pool_in_use(&self) -> Option<u64> {
        Some(self.pool.in_use())
    }
}

impl DpdkQueue {
    /// Free the multi-segment packets among `out[start..]`; returns how many
    /// packets of the burst remain.
    #[cold]
    fn drop_multi_segment(&mut self, out: &mut Burst<Mbuf>, start: usize) -> usize {
        let before = out.len();
        let mut i = start;
        while i < out.len() {
            if out[i].is_multi_segment() {
                drop(out.remove(i));
            } else {
                i += 1;
            }
        }
        let dropped = before - out.len();
        self.multi_segment_drops += dropped as u64;
        tracing::debug!(
            port = self.port,
            queue = self.queue,
            dropped,
            "dropped multi-segment packets"
        );
        out.len() - start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_counts_outside_the_device_limits_are_refused() {
        let lim = dpdk_sys::rte_eth_desc_lim {
            nb_max: 4096,
            nb_min: 64,
            nb_align: 32,
            ..Default::default()
        };
        for n in [64, 1024, 4096] {
            assert!(check_descriptors(0, "net_x", "rx_descriptors", n, &lim).is_ok());
        }
        let e = check_descriptors(1, "net_ice", "rx_descriptors", 8192, &lim).unwrap_err();
        assert_eq!(
            e.to_string(),
            "DPDK port 1 (net_ice): [dpdk] rx_descriptors = 8192 is outside the device's \
             limits of 64-4096 descriptors per queue (a multiple of 32)"
        );
        assert!(check_descriptors(0, "net_x", "tx_descriptors", 32, &lim).is_err());
        // No limits reported: nothing to check.
        let none = dpdk_sys::rte_eth_desc_lim::default();
        assert!(check_descriptors(0, "net_x", "tx_descriptors", 32768, &none).is_ok());
    }

    #[test]
    fn an_mtu_beyond_the_device_is_refused() {
        let mut info = dpdk_sys::rte_eth_dev_info {
            min_mtu: 68,
            max_mtu: u16::MAX,
            max_rx_pktlen: 1518,
            ..Default::default()
        };
        assert!(check_mtu(0, "net_af_packet", 1500, &info, &[]).is_ok());
        let e = check_mtu(0, "net_af_packet", 9000, &info, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "DPDK port 0 (net_af_packet): [interface] mtu 9000 needs frames of 9018 bytes, more \
             than the device's largest (1518); lower mtu or use a device that takes jumbo frames"
        );
        info.max_rx_pktlen = 9728;
        info.max_mtu = 9710;
        assert!(check_mtu(0, "net_ice", 9000, &info, &[]).is_ok());
        info.max_mtu = 8000;
        let e = check_mtu(0, "net_ice", 9000, &info, &[]).unwrap_err();
        assert!(
            e.to_string()
                .contains("outside the device's MTU range 68-8000"),
            "{e}"
        );
    }

    #[test]
    fn mbuf_room_holds_a_frame_of_the_mtu() {
        assert_eq!(
            u32::from(crate::dpdk::data_room_for_mtu(1500)),
            dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE
        );
        assert_eq!(crate::dpdk::data_room_for_mtu(9000), 9216);
        for mtu in [576u16, 1500, 1501, 4000, 9000] {
            let room = u32::from(crate::dpdk::data_room_for_mtu(mtu));
            assert!(
                room - dpdk_sys::RTE_PKTMBUF_HEADROOM >= u32::from(mtu) + 26,
                "{mtu}"
            );
        }
    }

    #[test]
    fn link_speeds_none_and_unknown_are_no_speed() {
        assert_eq!(link_from(true, 10_000, true).speed_mbps, Some(10_000));
        assert_eq!(link_from(true, 0, true).speed_mbps, None);
        assert_eq!(link_from(true, u32::MAX, false).speed_mbps, None);
        assert_eq!(link_from(false, 10_000, true).speed_mbps, None);
    }

    #[test]
    fn rss_key_follows_the_device_size() {
        assert_eq!(rss_key(40), SYMMETRIC_RSS_KEY[..40].to_vec());
        assert_eq!(rss_key(52), SYMMETRIC_RSS_KEY.to_vec());
        // DPDK 22.11 takes any length: 40 bytes when the device says 0.
        assert_eq!(rss_key_for(0, false).len(), 40);
        assert_eq!(rss_key_for(64, false).len(), 52);
        // 23.11 and later take only the device's own size: no key otherwise.
        assert!(rss_key_for(0, true).is_empty());
        assert!(rss_key_for(64, true).is_empty());
        assert_eq!(rss_key_for(40, true), SYMMETRIC_RSS_KEY[..40].to_vec());
        assert_eq!(rss_key_for(52, true), SYMMETRIC_RSS_KEY.to_vec());
    }

    #[test]
    fn offloads_only_where_the_device_has_them() {
        use dpdk_sys::*;
        assert_eq!(tx_offloads_from(tx_offload_mask(0)), TxOffloads::default());
        let capa = RTE_ETH_TX_OFFLOAD_UDP_CKSUM | RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
        assert_eq!(
            tx_offloads_from(tx_offload_mask(capa)),
            TxOffloads {
                ipv4_checksum: false,
                udp_checksum: true,
                tcp_checksum: false,
                tcp_segmentation: false,
            }
        );
        // TSO only where enabled; the mask of checksum offloads leaves it out
        // (open() adds it when the device has all three checksums too).
        let tso = RTE_ETH_TX_OFFLOAD_TCP_TSO | RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
        assert!(tx_offloads_from(tso).tcp_segmentation);
        assert!(!tx_offloads_from(tx_offload_mask(tso)).tcp_segmentation);
        let tcp = tx_offloads_from(RTE_ETH_TX_OFFLOAD_TCP_CKSUM);
        assert!(tcp.tcp_checksum && !tcp.udp_checksum && !tcp.ipv4_checksum);
        assert_eq!(rx_offload_mask(RTE_ETH_RX_OFFLOAD_RSS_HASH), 0);
        assert_eq!(
            rx_offload_mask(u64::MAX),
            RTE_ETH_RX_OFFLOAD_IPV4_CKSUM
                | RTE_ETH_RX_OFFLOAD_UDP_CKSUM
                | RTE_ETH_RX_OFFLOAD_TCP_CKSUM
        );
    }

    #[test]
    fn rss_hf_maps_to_hash_fields() {
        use dpdk_sys::*;
        let fields = |hf| hash_fields_from_rss_hf(hf).unwrap();
        assert_eq!(
            fields(RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP),
            HashFields::ALL
        );
        // Any of the three address-only IPv4 types counts for `ipv4`.
        for hf in [
            RTE_ETH_RSS_IPV4,
            RTE_ETH_RSS_FRAG_IPV4,
            RTE_ETH_RSS_NONFRAG_IPV4_OTHER,
        ] {
            assert_eq!(
                fields(hf),
                HashFields {
                    ipv4: true,
                    ipv4_tcp: false,
                    ipv4_udp: false
                },
                "{hf:#x}"
            );
        }
        assert_eq!(
            fields(RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_IPV6),
            HashFields {
                ipv4: false,
                ipv4_tcp: true,
                ipv4_udp: false
            }
        );
        assert_eq!(
            fields(RTE_ETH_RSS_NONFRAG_IPV4_UDP | RTE_ETH_RSS_NONFRAG_IPV4_OTHER),
            HashFields {
                ipv4: true,
                ipv4_tcp: false,
                ipv4_udp: true
            }
        );
        // What net_null reports back and the usual "ip tcp udp" sets.
        assert_eq!(
            fields(RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP),
            HashFields::ALL
        );
        // IPv6 only, nothing, or one side of the flow: no model.
        for hf in [
            0,
            RTE_ETH_RSS_IPV6 | RTE_ETH_RSS_NONFRAG_IPV6_TCP,
            RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_L3_SRC_ONLY,
            RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_L4_DST_ONLY,
        ] {
            assert!(hash_fields_from_rss_hf(hf).is_err(), "{hf:#x}");
        }
        let err = hash_fields_from_rss_hf(RTE_ETH_RSS_IPV6).unwrap_err();
        assert!(err.contains("no IPv4") && err.contains("0x100"), "{err}");
    }

    #[test]
    fn reta_groups_cover_the_table_in_64s() {
        let table = RedirectionTable::new_round_robin(128, 3);
        let groups = reta_groups(128, |i| table.entries()[i]);
        assert_eq!(groups.len(), 2);
        assert!(groups.iter().all(|g| g.mask == u64::MAX));
        assert_eq!(groups[0].reta[..4], [0, 1, 2, 0]);
        // Entry 64 is the first of the second group: 64 % 3 = 1.
        assert_eq!(groups[1].reta[0], 1);
        assert_eq!(reta_entries(&groups, 128), table.entries());

        // 512 entries: 8 groups.
        let table = RedirectionTable::new_round_robin(512, 4);
        let groups = reta_groups(512, |i| table.entries()[i]);
        assert_eq!(groups.len(), 8);
        assert_eq!(reta_entries(&groups, 512), table.entries());

        // Tables smaller than a group: one group, the mask covers the table only.
        let groups = reta_groups(16, |i| i as u16);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].mask, 0xffff);
        assert!(groups[0].reta[16..].iter().all(|&e| e == 0));
        assert_eq!(reta_entries(&groups, 16), (0..16).collect::<Vec<u16>>());

        // A query asks for every entry and starts from zeros.
        let query = reta_groups(64, |_| 0);
        assert_eq!(query.len(), 1);
        assert_eq!(query[0].mask, u64::MAX);
        assert!(reta_groups(0, |_| 0).is_empty());
    }

    fn read_back(key: &[u8], rss_hf: u64, reta: Vec<u16>) -> RssReadBack {
        RssReadBack {
            key: key.to_vec(),
            rss_hf,
            reta,
        }
    }

    #[test]
    fn the_model_is_the_configuration_read_back() {
        use dpdk_sys::*;
        let key = rss_key(40);
        // A table that is not round-robin: the model follows what the device
        // reports, not what shardnet asked for.
        let reta: Vec<u16> = (0..128).map(|i| u16::from(i % 4 == 3)).collect();
        let model = model_from_read_back(
            &read_back(
                &key,
                RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_TCP,
                reta.clone(),
            ),
            &key,
            2,
        )
        .unwrap();
        assert_eq!(model.workers(), 2);
        assert_eq!(model.reta().entries(), &reta[..]);
        assert_eq!(
            model.fields(),
            HashFields {
                ipv4: true,
                ipv4_tcp: true,
                ipv4_udp: false
            }
        );
        let toeplitz = crate::rss::Toeplitz::new(&SYMMETRIC_RSS_KEY);
        let (a, b) = (
            std::net::Ipv4Addr::new(198, 18, 0, 1),
            std::net::Ipv4Addr::new(198, 19, 0, 2),
        );
        for sport in 1000..1100 {
            let h = toeplitz.hash_ipv4_l4(a, b, sport, 80);
            assert_eq!(model.toeplitz().hash_ipv4_l4(a, b, sport, 80), h);
            assert_eq!(model.worker_of_hash(h), usize::from(reta[h as usize & 127]));
        }

        // A 52-byte key is fine too.
        let key52 = rss_key(52);
        let model = model_from_read_back(
            &read_back(&key52, RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP, vec![0, 1, 2, 3]),
            &key52,
            4,
        )
        .unwrap();
        assert_eq!(model.reta().len(), 4);
    }

    #[test]
    fn no_model_for_what_the_model_cannot_follow() {
        use dpdk_sys::*;
        let key = rss_key(40);
        let hf = RSS_HASH_TYPES;
        let rr = RedirectionTable::new_round_robin(128, 2).entries().to_vec();
        let no = |back: RssReadBack, queues| model_from_read_back(&back, &key, queues).unwrap_err();

        // Another key: net_null keeps the common Intel key it starts with.
        let intel: Vec<u8> = [0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2]
            .into_iter()
            .chain(std::iter::repeat_n(0, 32))
            .collect();
        let err = no(read_back(&intel, hf, rr.clone()), 2);
        assert!(
            err.contains("another RSS key") && err.contains("6d5a56da255b0ec2"),
            "{err}"
        );
        // A key cut short (a driver that reports fewer bytes than it took).
        let err = no(read_back(&key[..16], hf, rr.clone()), 2);
        assert!(err.contains("16 bytes"), "{err}");
        // Hash types it does not model.
        let err = no(read_back(&key, RTE_ETH_RSS_IPV6, rr.clone()), 2);
        assert!(err.contains("no IPv4"), "{err}");
        let err = no(read_back(&key, hf | RTE_ETH_RSS_L3_DST_ONLY, rr.clone()), 2);
        assert!(err.contains("one side"), "{err}");
        // Tables it cannot index, or that name queues that do not exist.
        let err = no(read_back(&key, hf, vec![0, 1, 0]), 2);
        assert!(err.contains("not a power of two"), "{err}");
        let err = no(read_back(&key, hf, vec![]), 2);
        assert!(err.contains("0 entries"), "{err}");
        let err = no(read_back(&key, hf, vec![0, 1, 2, 1]), 2);
        assert!(err.contains("queue 2, beyond the 2 queues"), "{err}");
    }

    #[test]
    fn mac_formats_as_usual() {
        assert_eq!(
            format_mac(&[0x02, 0, 0, 0xab, 0xcd, 1]),
            "02:00:00:ab:cd:01"
        );
    }
}
