//! The kernel's end of the exception port: a TAP interface.
//!
//! [`TapDevice::create`] makes a new TAP interface from `/dev/net/tun`, in the
//! network namespace of the calling thread. Frames written to the device
//! arrive at the kernel as if received on that interface; frames the kernel
//! sends out of it are read from the device. It is a [`Queue`] of heap
//! buffers, so the relay thread moves frames with the same bursts as any port.
//!
//! The interface exists for as long as the device: it is not persistent, and
//! closing the file descriptor (dropping the device, or the process exiting
//! however it exits) makes the kernel delete it, its addresses and its routes.
//! That is the whole cleanup. (The descriptor is close-on-exec, but a child
//! process holds a copy between its fork and its exec: the interface goes when
//! the last copy is closed, a moment after the drop if another thread is
//! spawning a process just then.) [`TapDevice::create`] never attaches to an
//! interface that exists already.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use thiserror::Error;

use super::netif;
use crate::port::af_packet::sys;
use crate::port::heap::{HeapBuf, HEAP_BUF_ROOM};
use crate::port::{Burst, PacketBuf, Queue};

/// The clone device of the TUN/TAP driver.
const TUN_PATH: &str = "/dev/net/tun";

/// Room behind each receive buffer for the rest of an oversize frame, so that
/// it is seen whole, measured and dropped: the largest frame a TAP hands over
/// is its largest MTU (65535 minus the Ethernet header) plus the Ethernet header
/// and a VLAN tag the kernel inserts.
const OVERFLOW_ROOM: usize = 64 * 1024 + 64;

/// Why a TAP device could not be created.
#[derive(Debug, Error)]
pub enum TapError {
    /// The name cannot be an interface name.
    #[error(
        "{name:?} is not a valid interface name (1 to 15 bytes, no '/', ':', whitespace or NUL)"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// An interface of that name exists: shardnet makes its own and never takes
    /// over another.
    #[error("cannot create the TAP interface {name}: an interface of that name exists already (shardnet creates its own and never attaches to an existing one; choose another name or delete it)")]
    AlreadyExists {
        /// The name given.
        name: String,
    },
    /// The kernel has no TUN/TAP driver, or the device node is missing.
    #[error("cannot create the TAP interface {name}: {TUN_PATH} is missing (is the tun module loaded? `modprobe tun`): {source}")]
    NoTunDevice {
        /// The name given.
        name: String,
        /// The error opening the device.
        source: io::Error,
    },
    /// The process lacks the rights.
    #[error("cannot create the TAP interface {name}: {step} needs root (CAP_NET_ADMIN): {source}")]
    Permission {
        /// The step refused.
        step: &'static str,
        /// The name given.
        name: String,
        /// EPERM or EACCES.
        source: io::Error,
    },
    /// Another step failed.
    #[error("cannot create the TAP interface {name}: {step} failed: {source}")]
    Setup {
        /// The step, e.g. "TUNSETIFF".
        step: &'static str,
        /// The name given.
        name: String,
        /// The system's error.
        source: io::Error,
    },
}

impl TapError {
    fn from_io(name: &str, step: &'static str, source: io::Error) -> TapError {
        let name = name.to_owned();
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => TapError::Permission { step, name, source },
            _ => TapError::Setup { step, name, source },
        }
    }
}

/// The device's counters. Plain numbers: the device is owned by one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapCounters {
    /// Frames read from the kernel.
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames longer than a receive buffer, dropped.
    pub rx_oversize: u64,
    /// Reads that failed with an error other than "nothing to read".
    pub rx_errors: u64,
    /// Frames written to the kernel.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames the kernel refused with an error (e.g. EIO while the interface is
    /// down, EINVAL for a runt), dropped.
    pub tx_errors: u64,
}

/// A TAP interface and its file descriptor; see the [module](self) docs.
///
/// Opened with `IFF_TAP | IFF_NO_PI` (Ethernet frames, no packet-information
/// prefix) and deliberately without `IFF_VNET_HDR`: with no virtio-net header
/// to describe partial checksums or segmentation, the kernel gives the
/// interface no checksum or segmentation offloads, so every frame it hands us
/// has complete checksums and is no longer than the MTU (plus the Ethernet
/// header and possibly a VLAN tag). The descriptor is non-blocking and
/// close-on-exec.
///
/// Receive buffers have [`HEAP_BUF_ROOM`] bytes, enough for a 1500-byte MTU;
/// keep the interface's MTU at most `HEAP_BUF_ROOM - 18`, longer frames are
/// dropped and counted ([`TapCounters::rx_oversize`]).
pub struct TapDevice {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
    /// A receive buffer left over from the last read that found nothing.
    spare: Option<HeapBuf>,
    /// Where the tail of an oversize frame goes.
    overflow: Box<[u8]>,
    counters: TapCounters,
}

impl TapDevice {
    /// Create the TAP interface `name` (down, no address) in the calling
    /// thread's network namespace. Refuses if an interface of that name exists
    /// (checked first for a clear error, and again atomically by the kernel
    /// through `IFF_TUN_EXCL`). Needs CAP_NET_ADMIN.
    pub fn create(name: &str) -> Result<TapDevice, TapError> {
        if !sys::valid_name(name) {
            return Err(TapError::InvalidName {
                name: name.to_owned(),
            });
        }
        let exists = || TapError::AlreadyExists {
            name: name.to_owned(),
        };
        if netif::interface_exists(name) {
            return Err(exists());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => TapError::NoTunDevice {
                    name: name.to_owned(),
                    source,
                },
                _ => TapError::from_io(name, "opening /dev/net/tun", source),
            })?;
        let fd = OwnedFd::from(file);

        let mut req = sys::ifreq(name);
        req.ifr_ifru.ifru_flags =
            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_TUN_EXCL) as u16 as libc::c_short;
        // SAFETY: `req` is a valid ifreq with a NUL-terminated name (validated,
        // at most 15 bytes in a zeroed 16-byte array); TUNSETIFF reads the name
        // and flags and writes the final name back, all within the struct.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if let Err(source) = sys::check(ret) {
            return Err(match source.raw_os_error() {
                // IFF_TUN_EXCL: it appeared since we looked.
                Some(libc::EBUSY | libc::EEXIST) => exists(),
                _ => TapError::from_io(name, "TUNSETIFF", source),
            });
        }
        // The kernel writes the name back (the same, as it holds no pattern).
        let name: String = req
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect();

        let c_name = CString::new(name.as_str()).expect("interface names hold no NUL");
        // SAFETY: `c_name` is a NUL-terminated string that lives across the call.
        let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if ifindex == 0 {
            return Err(TapError::from_io(
                &name,
                "looking up its index",
                io::Error::last_os_error(),
            ));
        }
        Ok(TapDevice {
            fd,
            name,
            ifindex,
            spare: None,
            overflow: vec![0; OVERFLOW_ROOM].into_boxed_slice(),
            counters: TapCounters::default(),
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The device's counters.
    pub fn counters(&self) -> TapCounters {
        self.counters
    }

    /// Read one frame into `buf` (its whole room), the excess of a longer frame
    /// into the overflow buffer. Returns the frame's full length.
    fn read_frame(&mut self, buf: &mut HeapBuf) -> io::Result<usize> {
        let room = buf.capacity();
        buf.set_len(room);
        let data = buf.data_mut();
        let iov = [
            libc::iovec {
                iov_base: data.as_mut_ptr().cast(),
                iov_len: data.len(),
            },
            libc::iovec {
                iov_base: self.overflow.as_mut_ptr().cast(),
                iov_len: self.overflow.len(),
            },
        ];
        // SAFETY: both iovecs describe live, writable, exclusively borrowed
        // buffers of the lengths given (`data` borrows `buf`, the overflow is
        // owned by `self`), and the kernel writes only within them.
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as _) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl std::fmt::Debug for TapDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapDevice")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("fd", &self.fd)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl AsFd for TapDevice {
    /// The device's descriptor, to wait on with `poll` or `epoll`.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Queue for TapDevice {
    type Buf = HeapBuf;

    /// Reads frames until the kernel has none (EAGAIN) or `out` is full. A
    /// frame longer than a buffer is dropped and counted, not truncated.
    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>) -> usize {
        let mut received = 0;
        while !out.is_full() {
            let mut buf = self
                .spare
                .take()
                .unwrap_or_else(|| HeapBuf::with_room(HEAP_BUF_ROOM));
            match self.read_frame(&mut buf) {
                // Not a frame; the TUN driver does not return empty reads.
                Ok(0) => {
                    self.spare = Some(buf);
                    break;
                }
                Ok(n) if n <= buf.capacity() => {
                    buf.set_len(n);
                    self.counters.rx_packets += 1;
                    self.counters.rx_bytes += n as u64;
                    received += 1;
                    out.push(buf);
                }
                Ok(_) => {
                    self.counters.rx_oversize += 1;
                    self.spare = Some(buf);
                }
                Err(e) => {
                    self.spare = Some(buf);
                    match e.raw_os_error() {
                        Some(libc::EINTR) => continue,
                        Some(libc::EAGAIN) => {}
                        _ => self.counters.rx_errors += 1,
                    }
                    break;
                }
            }
        }
        received
    }

    /// Writes each frame with write(2). EAGAIN or ENOBUFS stop the burst and
    /// leave the rest in `pkts`, refused; a frame the kernel rejects with
    /// another error (EIO while the interface is down, EINVAL for a runt) is
    /// removed, dropped and counted in [`TapCounters::tx_errors`].
    fn tx_burst(&mut self, pkts: &mut Burst<HeapBuf>) -> usize {
        let mut sent = 0;
        let mut frames = std::mem::take(pkts).into_iter();
        for buf in frames.by_ref() {
            let frame = buf.data();
            let result = loop {
                // SAFETY: `frame` is a live buffer of the length given; the
                // kernel only reads it.
                let n =
                    unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
                if n >= 0 {
                    break Ok(());
                }
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    break Err(e);
                }
            };
            match result {
                Ok(()) => {
                    sent += 1;
                    self.counters.tx_packets += 1;
                    self.counters.tx_bytes += frame.len() as u64;
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS)) => {
                    pkts.push(buf);
                    break;
                }
                Err(_) => self.counters.tx_errors += 1,
            }
        }
        pkts.extend(frames);
        sent
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(HeapBuf::with_room(HEAP_BUF_ROOM))
    }

    fn rx_dropped(&self) -> u64 {
        self.counters.rx_oversize + self.counters.rx_errors
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::kernel::netif::test_support::*;
    use crate::kernel::netif::{configure, interface_exists, InterfaceSetup};
    use crate::testing::{parse_tcp_frame, tcp_frame, tcp_header, Endpoints};
    use crate::wire::{
        ArpOperation, EtherType, EthernetAddress, EthernetFrame, Icmpv4Message, Icmpv4Packet,
        IpProtocol, Ipv4Packet, TcpFlags, ETHERNET_HEADER_LEN,
    };

    /// Frames from the gateway to the TAP's address.
    const FROM_GATEWAY: Endpoints = Endpoints {
        src_mac: EthernetAddress(GATEWAY_MAC),
        dst_mac: EthernetAddress(TAP_MAC),
        src_ip: GATEWAY,
        dst_ip: ADDRESS,
    };

    /// Read frames from `tap` until `wanted` picks one, for at most 2 s.
    fn receive(tap: &mut TapDevice, what: &str, mut wanted: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mut burst = Burst::<HeapBuf>::new();
            tap.rx_burst(&mut burst);
            if let Some(frame) = burst.iter().find(|f| wanted(f.data())) {
                return frame.data().to_vec();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} from the kernel within 2 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// An IPv4 header and the ICMP message it carries.
    type IcmpInIpv4<'a> = (Ipv4Packet<&'a [u8]>, Icmpv4Packet<&'a [u8]>);

    /// The ICMP echo reply in a frame, with its IPv4 header.
    fn echo_reply(frame: &[u8]) -> Option<IcmpInIpv4<'_>> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != EtherType::Ipv4 {
            return None;
        }
        let bytes = eth.into_payload();
        let ip = Ipv4Packet::new_checked(bytes).ok()?;
        if ip.next_header() != IpProtocol::Icmp {
            return None;
        }
        let payload = Ipv4Packet::new_checked(bytes).ok()?.into_payload();
        let icmp = Icmpv4Packet::new_checked(payload).ok()?;
        (icmp.msg_type() == Icmpv4Message::EchoReply).then_some((ip, icmp))
    }

    #[test]
    fn an_existing_name_is_refused() {
        in_fresh_netns(|| {
            let e = TapDevice::create("lo").unwrap_err();
            assert!(matches!(e, TapError::AlreadyExists { .. }), "{e:?}");
            let message = e.to_string();
            assert!(
                message.contains("lo") && message.contains("exists already"),
                "{message}"
            );

            let tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(tap.name(), TAP);
            let e = TapDevice::create(TAP).unwrap_err();
            assert!(matches!(e, TapError::AlreadyExists { .. }), "{e:?}");
            // The refusal did not disturb the first one.
            assert!(interface_exists(TAP));
            drop(tap);
            wait_until_gone(TAP);

            for bad in ["", "a/b", "name-longer-than-15", "x y"] {
                assert!(
                    matches!(TapDevice::create(bad), Err(TapError::InvalidName { .. })),
                    "{bad:?}"
                );
            }
        })
    }

    #[test]
    fn descriptor_is_nonblocking_and_close_on_exec() {
        in_fresh_netns(|| {
            let mut tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            let fd = tap.as_fd().as_raw_fd();
            // SAFETY: fcntl F_GETFL/F_GETFD on a descriptor we own; no pointers.
            let (status, fd_flags) = unsafe {
                (
                    libc::fcntl(fd, libc::F_GETFL),
                    libc::fcntl(fd, libc::F_GETFD),
                )
            };
            assert_ne!(status & libc::O_NONBLOCK, 0);
            assert_ne!(fd_flags & libc::FD_CLOEXEC, 0);
            // Nothing to read (the link is down): returns at once.
            let mut burst = Burst::<HeapBuf>::new();
            assert_eq!(tap.rx_burst(&mut burst), 0);
            assert_eq!(tap.counters(), TapCounters::default());
            let link = &ip_json(&["link", "show", "dev", TAP])[0];
            assert_eq!(link["ifindex"], tap.ifindex());
            assert_eq!(link["link_type"], "ether");
        })
    }

    /// The kernel answers a ping written to the TAP, after asking for the
    /// gateway's MAC with ARP, and its frames carry correct checksums.
    #[test]
    fn echo_through_the_kernel() {
        in_fresh_netns(|| {
            let mut tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            configure(&tap_setup()).unwrap_or_else(|e| panic!("{e}"));
            let data = b"shardnet exception port";
            send_all(&mut tap, &[echo_request(FROM_GATEWAY, 0x1234, 1, data)]);

            let request = receive(&mut tap, "ARP request for the gateway", |frame| {
                parse_arp(frame).is_some_and(|arp| {
                    arp.operation == ArpOperation::Request && arp.target_protocol_addr == GATEWAY
                })
            });
            let arp = parse_arp(&request).unwrap();
            assert_eq!(arp.source_hardware_addr, EthernetAddress(TAP_MAC));
            assert_eq!(arp.source_protocol_addr, ADDRESS);
            let eth = EthernetFrame::new_checked(&request[..]).unwrap();
            assert_eq!(eth.src_addr(), EthernetAddress(TAP_MAC));
            send_all(
                &mut tap,
                &[arp_frame(
                    ArpOperation::Reply,
                    (GATEWAY_MAC, GATEWAY),
                    (TAP_MAC, ADDRESS),
                )],
            );

            let frame = receive(&mut tap, "echo reply", |f| echo_reply(f).is_some());
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            assert_eq!(eth.dst_addr(), EthernetAddress(GATEWAY_MAC));
            assert_eq!(eth.src_addr(), EthernetAddress(TAP_MAC));
            let (ip, icmp) = echo_reply(&frame).unwrap();
            assert!(ip.verify_checksum(), "bad IPv4 header checksum");
            assert_eq!(ip.src_addr(), ADDRESS);
            assert_eq!(ip.dst_addr(), GATEWAY);
            assert!(icmp.verify_checksum(), "bad ICMP checksum");
            assert_eq!(icmp.echo_ident(), 0x1234);
            assert_eq!(icmp.echo_seq_no(), 1);
            assert_eq!(icmp.data(), data);

            let counters = tap.counters();
            assert_eq!(counters.tx_packets, 2);
            assert!(counters.rx_packets >= 2, "{counters:?}");
            assert_eq!(counters.tx_errors, 0);
            assert_eq!(counters.rx_oversize, 0);
        })
    }

    /// TCP from the kernel through the TAP: with no vnet header the device has
    /// no checksum or segmentation offloads, so every segment comes whole,
    /// with its checksum computed and no longer than the MTU, even when the
    /// kernel has 60 KiB to send.
    #[test]
    fn kernel_tcp_segments_are_complete_and_fit_the_mtu() {
        in_fresh_netns(|| {
            let mut tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            configure(&tap_setup()).unwrap_or_else(|e| panic!("{e}"));
            ip(&[
                "neigh",
                "replace",
                "198.18.0.1",
                "lladdr",
                "02:00:00:00:00:01",
                "dev",
                TAP,
            ]);
            let sender = std::thread::spawn(|| {
                // Inherits the namespace of the thread that spawns it.
                let mut stream =
                    TcpStream::connect_timeout(&(GATEWAY, 80).into(), Duration::from_secs(2))
                        .expect("connecting through the TAP");
                stream.set_nonblocking(true).unwrap();
                let written = stream.write(&[0x5a; 60 * 1024]).unwrap();
                (stream, written)
            });
            let is_tcp_from_kernel = |frame: &[u8]| {
                let eth = EthernetFrame::new_checked(frame).unwrap();
                eth.ethertype() == EtherType::Ipv4
                    && Ipv4Packet::new_checked(eth.payload())
                        .is_ok_and(|ip| ip.next_header() == IpProtocol::Tcp)
            };
            let syn = receive(&mut tap, "SYN", is_tcp_from_kernel);
            let (syn, _) = parse_tcp_frame(&syn).expect("a SYN with valid checksums");
            assert_eq!(syn.flags, TcpFlags::SYN);
            let to_kernel = Endpoints {
                src_mac: EthernetAddress(GATEWAY_MAC),
                dst_mac: EthernetAddress(TAP_MAC),
                src_ip: GATEWAY,
                dst_ip: ADDRESS,
            };
            let syn_ack = tcp_header(
                80,
                syn.src_port,
                TcpFlags::SYN | TcpFlags::ACK,
                5000,
                syn.seq.wrapping_add(1),
            );
            send_all(&mut tap, &[tcp_frame(to_kernel, &syn_ack, b"")]);

            let mut payload = 0;
            let mut segments = 0;
            let deadline = Instant::now() + Duration::from_secs(2);
            // The initial congestion window: 10 full segments.
            while segments < 10 {
                assert!(
                    Instant::now() < deadline,
                    "only {segments} data segments within 2 s"
                );
                let mut burst = Burst::<HeapBuf>::new();
                tap.rx_burst(&mut burst);
                for frame in burst.iter().filter(|f| is_tcp_from_kernel(f.data())) {
                    assert!(
                        frame.len() <= 1500 + ETHERNET_HEADER_LEN,
                        "a {}-byte frame from a 1500-byte MTU interface",
                        frame.len()
                    );
                    let (_, data) = parse_tcp_frame(frame.data())
                        .expect("a TCP segment with a wrong or partial checksum");
                    if !data.is_empty() {
                        segments += 1;
                        payload += data.len();
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                payload >= 10 * 1400,
                "{payload} bytes in {segments} segments"
            );
            let (_stream, written) = sender.join().unwrap();
            assert!(written > payload, "the kernel had {written} bytes to send");
            assert_eq!(tap.counters().rx_oversize, 0);
        })
    }

    /// A frame longer than a receive buffer is dropped and counted, never
    /// handed over truncated; the next frame reads normally.
    #[test]
    fn oversize_frames_are_dropped_and_counted() {
        in_fresh_netns(|| {
            let mut tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            let setup = InterfaceSetup {
                mtu: Some(9000),
                ..tap_setup()
            };
            configure(&setup).unwrap_or_else(|e| panic!("{e}"));
            ip(&[
                "neigh",
                "replace",
                "198.18.0.1",
                "lladdr",
                "02:00:00:00:00:01",
                "dev",
                TAP,
            ]);
            let big = vec![0xa5; 3000];
            send_all(&mut tap, &[echo_request(FROM_GATEWAY, 1, 1, &big)]);
            let deadline = Instant::now() + Duration::from_secs(2);
            while tap.counters().rx_oversize == 0 {
                assert!(Instant::now() < deadline, "no oversize frame counted");
                let mut burst = Burst::<HeapBuf>::new();
                tap.rx_burst(&mut burst);
                assert!(
                    burst.iter().all(|f| echo_reply(f.data()).is_none()),
                    "an echo reply came through"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            send_all(&mut tap, &[echo_request(FROM_GATEWAY, 1, 2, b"small")]);
            let frame = receive(&mut tap, "echo reply", |f| echo_reply(f).is_some());
            let (_, icmp) = echo_reply(&frame).unwrap();
            assert_eq!(icmp.echo_seq_no(), 2);
            assert!(icmp.verify_checksum());
            assert_eq!(tap.counters().rx_oversize, 1);
        })
    }

    /// Frames the kernel rejects are dropped and counted, not retried.
    #[test]
    fn rejected_frames_are_dropped_and_counted() {
        in_fresh_netns(|| {
            let mut tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            // Down: the kernel refuses writes (EIO).
            let frames = [
                echo_request(FROM_GATEWAY, 1, 1, b"down"),
                echo_request(FROM_GATEWAY, 1, 2, b"down"),
            ];
            let mut burst: Burst<HeapBuf> = frames.iter().map(|f| HeapBuf::from_slice(f)).collect();
            assert_eq!(tap.tx_burst(&mut burst), 0);
            assert!(burst.is_empty(), "rejected frames are not left to retry");
            assert_eq!(tap.counters().tx_errors, 2);
            assert_eq!(tap.counters().tx_packets, 0);

            configure(&tap_setup()).unwrap_or_else(|e| panic!("{e}"));
            // Up: a runt is refused, the frame after it goes through.
            let mut burst: Burst<HeapBuf> = [&[0u8; 10][..], &frames[0][..]]
                .iter()
                .map(|f| HeapBuf::from_slice(f))
                .collect();
            assert_eq!(tap.tx_burst(&mut burst), 1);
            assert!(burst.is_empty());
            assert_eq!(tap.counters().tx_errors, 3);
            assert_eq!(tap.counters().tx_packets, 1);
            assert_eq!(tap.counters().tx_bytes, frames[0].len() as u64);
        })
    }
}
