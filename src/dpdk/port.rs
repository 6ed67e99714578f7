//! Ethdev ports and their per-worker queue pairs.

use std::ffi::CStr;
use std::ptr::{self, NonNull};

use dpdk_sys::{rte_mbuf, rte_mempool};

use super::mempool::alloc_from;
use super::{DpdkError, Mbuf, Mempool};
use crate::port::{Burst, PortStats, Queue, QueueStats, TxOffloads};
use crate::rss::SYMMETRIC_RSS_KEY;

/// Port settings beyond the queue count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortOptions {
    /// RX descriptors per queue (clamped to what the device allows).
    pub rx_descriptors: u16,
    /// TX descriptors per queue (clamped to what the device allows).
    pub tx_descriptors: u16,
    /// Receive frames for any destination MAC, not only ours.
    pub promiscuous: bool,
    /// Spread flows over the queues with RSS (symmetric Toeplitz key), where
    /// the port supports it and has more than one queue.
    pub rss: bool,
    /// Use the device's RX and TX checksum offloads where it reports them.
    pub checksum_offload: bool,
}

impl Default for PortOptions {
    fn default() -> Self {
        PortOptions {
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            promiscuous: false,
            rss: true,
            checksum_offload: true,
        }
    }
}

/// The RSS hash types shardnet asks for: IPv4 addresses and TCP/UDP ports.
const RSS_HASH_TYPES: u64 = dpdk_sys::RTE_ETH_RSS_IPV4
    | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_TCP
    | dpdk_sys::RTE_ETH_RSS_NONFRAG_IPV4_UDP;

/// A started ethdev port with one RX/TX queue pair per worker.
///
/// Close it with [`DpdkPort::close`] (or drop it) after the workers using its
/// queues have stopped.
#[derive(Debug)]
pub struct DpdkPort {
    port: u16,
    driver: String,
    pools: Vec<Mempool>,
    queues_taken: bool,
    tx_offloads: TxOffloads,
    rss: bool,
    mac: [u8; 6],
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

/// The RSS key for a device that takes `hash_key_size` bytes (40 or 52; a
/// device reporting 0 gets the common 40).
fn rss_key(hash_key_size: u8) -> Vec<u8> {
    let len = match usize::from(hash_key_size) {
        0 => 40,
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
    }
}

impl DpdkPort {
    /// Configure and start port `port_id` with one RX/TX queue pair per pool in
    /// `pools` (queue `i` receives into `pools[i]`; give each worker its own).
    ///
    /// Enables RSS with the symmetric key over IPv4/TCP/UDP when the port
    /// supports it and there is more than one queue, and the checksum offloads
    /// the device reports (see [`DpdkPort::tx_offloads`]).
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

        let mut conf = dpdk_sys::rte_eth_conf::default();
        // RSS: the key must outlive rte_eth_dev_configure, which copies it.
        let mut key = rss_key(info.hash_key_size);
        let hash_types = RSS_HASH_TYPES & info.flow_type_rss_offloads;
        let rss = opts.rss && queues > 1 && hash_types != 0;
        if rss {
            conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
            conf.rx_adv_conf.rss_conf.rss_hf = hash_types;
            conf.rxmode.offloads |= info.rx_offload_capa & dpdk_sys::RTE_ETH_RX_OFFLOAD_RSS_HASH;
            tracing::info!(
                port,
                %driver,
                queues,
                key_len = key.len(),
                hash_types = format_args!("{hash_types:#x}"),
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
            conf.txmode.offloads |= tx_offload_mask(info.tx_offload_capa);
        }
        let tx_offloads = tx_offloads_from(conf.txmode.offloads);
        tracing::info!(
            port,
            rx_offloads = format_args!("{:#x}", conf.rxmode.offloads),
            tx_offloads = ?tx_offloads,
            "checksum offloads the device reports and shardnet enables"
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
            tx_offloads,
            rss,
            mac: [0; 6],
            closed: false,
        };
        // From here on, a failure closes the port (port_handle's Drop).

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
        tracing::info!(
            port,
            driver = %port_handle.driver,
            queues,
            rx_descriptors = nb_rx,
            tx_descriptors = nb_tx,
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

    /// Whether RSS spreads flows over the queues.
    pub fn rss_enabled(&self) -> bool {
        self.rss
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

    /// The transmit checksum offloads enabled on every queue.
    pub fn tx_offloads(&self) -> TxOffloads {
        self.tx_offloads
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
                tx_offloads: self.tx_offloads,
                multi_segment_drops: 0,
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
    tx_offloads: TxOffloads,
    multi_segment_drops: u64,
}

// SAFETY: DPDK's burst functions on one queue id must not run on two threads
// at once. A DpdkQueue is the only handle to its queue id: DpdkPort::queues
// makes each once and DpdkQueue is not Clone, and the bursts take &mut self. So
// moving it to the worker thread that then uses it alone is sound. `pool_raw`
// points to a pool kept alive by `pool` (a thread-safe handle).
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

    fn rx_dropped(&self) -> u64 {
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
    fn rss_key_follows_the_device_size() {
        assert_eq!(rss_key(40), SYMMETRIC_RSS_KEY[..40].to_vec());
        assert_eq!(rss_key(52), SYMMETRIC_RSS_KEY.to_vec());
        assert_eq!(rss_key(0).len(), 40);
        assert_eq!(rss_key(64).len(), 52);
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
                tcp_checksum: false
            }
        );
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
    fn mac_formats_as_usual() {
        assert_eq!(
            format_mac(&[0x02, 0, 0, 0xab, 0xcd, 1]),
            "02:00:00:ab:cd:01"
        );
    }
}
