//! The packet I/O boundary.
//!
//! A *port* is one network interface (a DPDK ethdev, an AF_PACKET socket group,
//! an in-memory link). It is set up by the control thread and split into
//! *queues*: one RX/TX queue pair per worker, each moved to and owned by exactly
//! one worker thread. Queues move bursts of packet buffers; nothing on a queue
//! is shared with another thread.
//!
//! The worker is generic over [`Queue`], so the backend is chosen once at start
//! and every call in the loop is statically dispatched (the way DPDK's l3fwd picks
//! its lookup mode through a table once, not with an `if` per packet).

pub mod heap;
pub mod memlink;

#[cfg(target_os = "linux")]
pub mod af_packet;

use arrayvec::ArrayVec;

/// Packets per RX and TX burst.
pub const BURST: usize = 32;

/// Large buffers (64 KiB) a queue with TSO gets for the segments the NIC
/// cuts ([`Queue::alloc_large`]): a power of two less one, as DPDK's pools
/// like; about 4 MiB a worker.
pub const LARGE_BUFFERS: u32 = 63;

/// A burst of packet buffers: fixed capacity, lives on the worker's stack.
pub type Burst<B> = ArrayVec<B, BURST>;

/// Ask the CPU to load every cache line of `value` into its caches, as
/// DPDK's `rte_prefetch0` does for a driver: a hint that changes nothing
/// the program computes (no effect at all off x86-64). Here because it is
/// a CPU intrinsic, the kind of code this layer holds; the TCP table uses
/// it to overlap a burst's lookups ([`crate::tcp::table::TcpTable::prefetch`]).
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // Every line the value touches, from the one holding its first
        // byte: a value that does not start on a line boundary (a slab
        // slot of 448 bytes) spans one line more than its size says.
        let start = (value as *const T).cast::<i8>();
        let first_line = start.wrapping_sub(start as usize % 64);
        let span = start as usize % 64 + std::mem::size_of::<T>();
        for offset in (0..span).step_by(64) {
            // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has
            // (it is in the target's baseline); a prefetch never faults and
            // never writes, whatever the address (this one is in a line
            // that holds part of `value`).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first_line.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// What the receiving NIC says about one checksum of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RxChecksum {
    /// The NIC did not check it: software must.
    #[default]
    Unknown,
    /// The NIC verified it.
    Good,
    /// The NIC found it wrong.
    Bad,
    /// The packet has a partial checksum that a local sender left for offload
    /// (`TP_STATUS_CSUMNOTREADY` on AF_PACKET): the data are trusted, the
    /// checksum field is not final.
    Partial,
}

/// The checksum offloads a queue can do on transmit. A capability passed in, not
/// a global: the protocol code fills checksums in software for whatever is false.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TxOffloads {
    /// The NIC computes the IPv4 header checksum.
    pub ipv4_checksum: bool,
    /// The NIC computes UDP checksums (given the pseudo-header sum).
    pub udp_checksum: bool,
    /// The NIC computes TCP checksums (given the pseudo-header sum).
    pub tcp_checksum: bool,
    /// The NIC cuts a large TCP segment into MSS-sized frames (TSO), with
    /// all three checksums. See [`TxOffloadRequest::tcp_segment_size`].
    pub tcp_segmentation: bool,
}

/// How a worker fills the checksums of the IPv4 frames it builds, decided
/// once per queue from its [`TxOffloads`] (see [`TxChecksum::for_offloads`])
/// so that the per-packet choice is one match on a value in a register, not a
/// lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TxChecksum {
    /// Every checksum in software (AF_PACKET, memlink, a port without the
    /// offloads, or `[dpdk] tx_checksum = "software"`).
    #[default]
    Software,
    /// The NIC fills the UDP and TCP checksums (software puts the
    /// pseudo-header sum in the field); the IPv4 header checksum, 20 bytes,
    /// stays in software (virtio-net offers L4 but not IPv4).
    L4,
    /// The NIC fills the IPv4 header checksum too.
    Full,
}

impl TxChecksum {
    /// The mode a queue with `offloads` uses: [`TxChecksum::Full`] with all
    /// three, [`TxChecksum::L4`] with UDP and TCP, software otherwise (a port
    /// with only one of UDP and TCP is rare enough not to be worth a branch).
    pub const fn for_offloads(offloads: TxOffloads) -> TxChecksum {
        match (
            offloads.ipv4_checksum,
            offloads.udp_checksum && offloads.tcp_checksum,
        ) {
            (true, true) => TxChecksum::Full,
            (false, true) => TxChecksum::L4,
            _ => TxChecksum::Software,
        }
    }

    /// The request for an IPv4 frame with a 14-byte Ethernet header, a
    /// 20-byte IPv4 header and `l4`, or `None` in software mode.
    #[inline]
    pub const fn request(self, l4: L4Offload) -> Option<TxOffloadRequest> {
        let ipv4_checksum = match self {
            TxChecksum::Software => return None,
            TxChecksum::L4 => false,
            TxChecksum::Full => true,
        };
        Some(TxOffloadRequest {
            l2_len: 14,
            l3_len: 20,
            ipv4_checksum,
            l4: Some(l4),
            l4_len: 0,
            tcp_segment_size: 0,
        })
    }

    /// Whether the IPv4 header checksum is left to the NIC.
    #[inline]
    pub const fn ipv4_offloaded(self) -> bool {
        matches!(self, TxChecksum::Full)
    }

    /// Whether the UDP and TCP checksums are left to the NIC.
    #[inline]
    pub const fn l4_offloaded(self) -> bool {
        !matches!(self, TxChecksum::Software)
    }

    /// What the log line at start says: the checksums left to the NIC.
    pub const fn describe(self) -> &'static str {
        match self {
            TxChecksum::Software => "none (software)",
            TxChecksum::L4 => "udp tcp",
            TxChecksum::Full => "ipv4 udp tcp",
        }
    }
}

/// Transmit offload work requested for one outgoing packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TxOffloadRequest {
    /// Length of the link-layer header (14 for plain Ethernet).
    pub l2_len: u8,
    /// Length of the IPv4 header including options.
    pub l3_len: u8,
    /// Ask the NIC to fill the IPv4 header checksum.
    pub ipv4_checksum: bool,
    /// Ask the NIC to fill the L4 checksum; the field holds the pseudo-header sum.
    pub l4: Option<L4Offload>,
    /// Length of the TCP header with its options (used with segmentation).
    pub l4_len: u8,
    /// Non-zero: cut the TCP payload into frames of this many bytes (TSO);
    /// only for a queue whose [`TxOffloads::tcp_segmentation`] is true.
    pub tcp_segment_size: u16,
}

impl TxOffloadRequest {
    /// The request for a TCP segment of a 14-byte Ethernet header, a
    /// 20-byte IPv4 header and a TCP header of `tcp_header_len` bytes that
    /// the NIC cuts into frames of `segment_size` payload bytes (TSO): all
    /// checksums offloaded, the TCP field holding the pseudo-header sum
    /// without the length (DPDK's rule for `RTE_MBUF_F_TX_TCP_SEG`).
    #[inline]
    pub const fn tcp_segmentation(tcp_header_len: u8, segment_size: u16) -> TxOffloadRequest {
        TxOffloadRequest {
            l2_len: 14,
            l3_len: 20,
            ipv4_checksum: true,
            l4: Some(L4Offload::Tcp),
            l4_len: tcp_header_len,
            tcp_segment_size: segment_size,
        }
    }
}

/// Which L4 checksum a [`TxOffloadRequest`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Offload {
    /// UDP checksum.
    Udp,
    /// TCP checksum.
    Tcp,
}

/// One packet buffer: a contiguous frame starting at the Ethernet header.
///
/// Dropping a buffer gives it back to its pool (for DPDK: `rte_pktmbuf_free`).
pub trait PacketBuf {
    /// The frame's bytes.
    fn data(&self) -> &[u8];
    /// The frame's bytes, writable (replies are built in place).
    fn data_mut(&mut self) -> &mut [u8];
    /// The frame's length in bytes.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// Whether the frame is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Grow or shrink the frame to `len` bytes, keeping its start. Returns false
    /// (and changes nothing) if `len` exceeds the buffer's room.
    fn set_len(&mut self, len: usize) -> bool;
    /// The longest frame this buffer can hold.
    fn capacity(&self) -> usize;
    /// The NIC's verdict on the IPv4 header checksum.
    fn rx_ip_checksum(&self) -> RxChecksum {
        RxChecksum::Unknown
    }
    /// The NIC's verdict on the L4 (UDP/TCP) checksum.
    fn rx_l4_checksum(&self) -> RxChecksum {
        RxChecksum::Unknown
    }
    /// The RSS hash the NIC computed for this packet, where it reports one.
    fn rss_hash(&self) -> Option<u32> {
        None
    }
    /// Ask the transmitting NIC to do checksum work for this packet. Only called
    /// for offloads that the queue's [`Queue::tx_offloads`] reports; a backend
    /// without offloads ignores it.
    fn request_tx_offload(&mut self, _request: TxOffloadRequest) {}
    /// This packet in a buffer that may be kept beyond the burst (handed to
    /// another worker, queued for the kernel's relay) without holding up the
    /// queue that received it: the same buffer for most backends; a copy for
    /// a frame an AF_PACKET RX ring lent, whose ring would otherwise stall at
    /// it.
    fn detach(self) -> Self
    where
        Self: Sized,
    {
        self
    }
}

/// One RX/TX queue pair, owned by one worker.
pub trait Queue: Send + 'static {
    /// The packet buffer type of this backend.
    type Buf: PacketBuf + Send;

    /// Receive up to the remaining capacity of `out`, appending to it. Returns
    /// the number of packets received. Never blocks.
    fn rx_burst(&mut self, out: &mut Burst<Self::Buf>) -> usize;

    /// Transmit a prefix of `pkts` and remove the sent buffers from it; what is
    /// left in `pkts` was refused (ring full) and stays the caller's to retry or
    /// drop. Returns the number sent. Never blocks.
    fn tx_burst(&mut self, pkts: &mut Burst<Self::Buf>) -> usize;

    /// A fresh, empty buffer from this queue's pool, or `None` if the pool is
    /// exhausted.
    fn alloc(&mut self) -> Option<Self::Buf>;

    /// A fresh buffer for one large TCP segment that the NIC cuts into frames
    /// (a queue whose [`TxOffloads::tcp_segmentation`] is true: room for a
    /// frame of 65,407 bytes, the most an mbuf holds), or `None`
    /// when the queue has none or none is free: the stack then cuts the
    /// segment itself.
    fn alloc_large(&mut self) -> Option<Self::Buf> {
        None
    }

    /// The transmit checksum offloads this queue performs.
    fn tx_offloads(&self) -> TxOffloads {
        TxOffloads::default()
    }

    /// Buffers of this queue's pool currently handed out (in flight, held by the
    /// stack or waiting in rings), where the backend can tell.
    fn pool_in_use(&self) -> Option<u64> {
        None
    }

    /// Frames the queue received and dropped on its own (too long, chained,
    /// unreadable) since it opened: a total, not a delta.
    fn rx_dropped(&self) -> u64 {
        0
    }

    /// Of [`Queue::rx_dropped`], the packets that came chained
    /// (multi-segment): a total. A worker counts them as
    /// `drops_total{reason="multi_segment"}`.
    fn rx_multi_segment_drops(&self) -> u64 {
        0
    }

    /// Wait at most `timeout` for a frame to arrive, for an idle worker that
    /// may give its core away (`idle = "adaptive"`). Returns early when the
    /// backend can tell that a frame is there; the default only sleeps.
    fn wait_rx(&mut self, timeout: std::time::Duration) {
        std::thread::sleep(timeout);
    }
}

/// Port-wide counters as the device reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Packets the device dropped because RX queues were full.
    pub rx_missed: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// RX buffer allocation failures.
    pub rx_nombuf: u64,
    /// Extended statistics by the driver's names (DPDK xstats).
    pub extended: Vec<(String, u64)>,
    /// Per-queue packet counts, in queue order (DPDK reports at most 16).
    pub queues: Vec<QueueStats>,
}

/// One queue pair's packet counts as the device reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Packets received on the queue.
    pub rx_packets: u64,
    /// Packets transmitted on the queue.
    pub tx_packets: u64,
}

/// A port's link as its device reports it: read by the control thread
/// (never a worker) about once a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Whether the link is up (carrier on).
    pub up: bool,
    /// The negotiated speed in Mbit/s, where the device reports one.
    pub speed_mbps: Option<u32>,
    /// Full duplex (false: half duplex or unknown).
    pub full_duplex: bool,
}

impl Link {
    /// An in-memory link ([`memlink::MemLink::link`]): always up, no speed.
    pub const VIRTUAL: Link = Link {
        up: true,
        speed_mbps: None,
        full_duplex: true,
    };

    /// The speed in bytes per second (the metric's unit), where known.
    pub fn speed_bytes_per_second(&self) -> Option<u64> {
        self.speed_mbps.map(|mbps| u64::from(mbps) * 1_000_000 / 8)
    }
}

impl std::fmt::Display for Link {
    /// `link up 10 Gbit/s full-duplex`, `link up (speed unknown)`, `link down`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.up {
            return f.write_str("link down");
        }
        f.write_str("link up")?;
        match self.speed_mbps {
            Some(mbps) if mbps >= 1000 && mbps % 1000 == 0 => write!(f, " {} Gbit/s", mbps / 1000)?,
            Some(mbps) if mbps >= 1000 => write!(f, " {:.1} Gbit/s", f64::from(mbps) / 1000.0)?,
            Some(mbps) => write!(f, " {mbps} Mbit/s")?,
            None => f.write_str(" (speed unknown)")?,
        }
        f.write_str(if self.full_duplex {
            " full-duplex"
        } else {
            " half-duplex"
        })
    }
}

#[cfg(test)]
mod link_tests {
    use super::Link;

    #[test]
    fn links_read_as_an_operator_writes_them() {
        let link = |up, speed_mbps, full_duplex| Link {
            up,
            speed_mbps,
            full_duplex,
        };
        assert_eq!(
            link(true, Some(10_000), true).to_string(),
            "link up 10 Gbit/s full-duplex"
        );
        assert_eq!(
            link(true, Some(2500), true).to_string(),
            "link up 2.5 Gbit/s full-duplex"
        );
        assert_eq!(
            link(true, Some(100), false).to_string(),
            "link up 100 Mbit/s half-duplex"
        );
        assert_eq!(link(false, Some(100), true).to_string(), "link down");
        assert_eq!(
            Link::VIRTUAL.to_string(),
            "link up (speed unknown) full-duplex"
        );
        assert_eq!(
            link(true, Some(10_000), true).speed_bytes_per_second(),
            Some(1_250_000_000)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_checksum_follows_the_queues_offloads() {
        let all = TxOffloads {
            ipv4_checksum: true,
            udp_checksum: true,
            tcp_checksum: true,
            tcp_segmentation: false,
        };
        assert_eq!(TxChecksum::for_offloads(all), TxChecksum::Full);
        let l4 = TxOffloads {
            ipv4_checksum: false,
            ..all
        };
        assert_eq!(TxChecksum::for_offloads(l4), TxChecksum::L4);
        for partial in [
            TxOffloads::default(),
            TxOffloads {
                udp_checksum: false,
                ..all
            },
            TxOffloads {
                tcp_checksum: false,
                ..all
            },
        ] {
            assert_eq!(TxChecksum::for_offloads(partial), TxChecksum::Software);
        }
        assert_eq!(TxChecksum::Software.request(L4Offload::Udp), None);
        assert_eq!(
            TxChecksum::Full.request(L4Offload::Tcp),
            Some(TxOffloadRequest {
                l2_len: 14,
                l3_len: 20,
                ipv4_checksum: true,
                l4: Some(L4Offload::Tcp),
                l4_len: 0,
                tcp_segment_size: 0,
            })
        );
        assert_eq!(
            TxChecksum::L4.request(L4Offload::Udp),
            Some(TxOffloadRequest {
                l2_len: 14,
                l3_len: 20,
                ipv4_checksum: false,
                l4: Some(L4Offload::Udp),
                l4_len: 0,
                tcp_segment_size: 0,
            })
        );
        // TSO: every checksum offloaded, the TCP header's length and the
        // frames' payload given.
        assert_eq!(
            TxOffloadRequest::tcp_segmentation(32, 1448),
            TxOffloadRequest {
                l2_len: 14,
                l3_len: 20,
                ipv4_checksum: true,
                l4: Some(L4Offload::Tcp),
                l4_len: 32,
                tcp_segment_size: 1448,
            }
        );
        assert_eq!(TxChecksum::Full.describe(), "ipv4 udp tcp");
    }
}
