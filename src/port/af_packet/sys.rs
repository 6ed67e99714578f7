//! Thin, checked wrappers over the system calls the AF_PACKET backend makes:
//! sockets, socket options, interface ioctls and the legacy ethtool ioctls.
//! Every function returns `io::Result` with the errno; the caller turns it into
//! an [`AfPacketError`](super::AfPacketError) that names what failed and where.
//! The interface helpers are shared with the kernel exception port
//! ([`crate::kernel::netif`], [`crate::kernel::tap`]), and the `flock` with
//! its journal ([`crate::kernel::journal`]).

use std::ffi::c_void;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Turn a `-1`-on-error return into the errno.
pub(crate) fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Take an exclusive `flock` on `file` without waiting: `Ok(false)` when
/// another open file description holds one. (std's `File::try_lock` does the
/// same from Rust 1.89, above this crate's MSRV.) Used by
/// [`crate::kernel::journal`].
pub(crate) fn try_lock_exclusive(file: &impl AsRawFd) -> io::Result<bool> {
    // SAFETY: flock(2) takes no pointers; the descriptor is borrowed, so it
    // stays open across the call.
    match check(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A new socket, close-on-exec.
pub(crate) fn socket(
    domain: libc::c_int,
    kind: libc::c_int,
    protocol: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative return is a new file
    // descriptor that nothing else owns, so OwnedFd may take it.
    unsafe {
        let fd = check(libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// `setsockopt(fd, level, name, &value, sizeof value)`.
pub(super) fn set_option<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialised `T` of exactly the length
    // passed; the kernel only reads it.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A socket option value that `getsockopt` may fill: a C integer or a C struct
/// of integers.
///
/// # Safety
///
/// All-zero bytes, and any bytes the kernel writes, must be a valid value.
pub(super) unsafe trait PlainOption: Copy {}

// SAFETY: integers: every bit pattern is valid.
unsafe impl PlainOption for libc::c_int {}
// SAFETY: two C unsigned ints: every bit pattern is valid.
unsafe impl PlainOption for libc::tpacket_stats {}

/// `getsockopt(fd, level, name)` into a `T`.
pub(super) fn get_option<T: PlainOption>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    // SAFETY: PlainOption types are valid when all-zero.
    let mut value: T = unsafe { zeroed() };
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a writable `T` and `len` says its size; the kernel writes
    // at most `len` bytes, and any bytes are a valid `T` (PlainOption).
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// An `ifreq` naming `interface`; the name was validated by [`valid_name`].
pub(crate) fn ifreq(interface: &str) -> libc::ifreq {
    // SAFETY: ifreq is a C struct of integers, arrays and a union of such (and
    // one raw pointer, null when zeroed): all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(interface.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// Whether `interface` fits an `ifreq`: 1 to 15 bytes, no NUL, no '/', no
/// whitespace (what the kernel's `dev_valid_name` accepts).
pub(crate) fn valid_name(interface: &str) -> bool {
    (1..libc::IFNAMSIZ).contains(&interface.len())
        && interface != "."
        && interface != ".."
        && !interface
            .bytes()
            .any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// Issue an interface ioctl and return the filled request.
pub(crate) fn interface_ioctl(
    fd: &OwnedFd,
    interface: &str,
    request: libc::c_ulong,
    mut req: libc::ifreq,
) -> io::Result<libc::ifreq> {
    debug_assert!(valid_name(interface));
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name (at most 15
    // bytes in a 16-byte zeroed array); the SIOCGIF*, SIOCSIF* and SIOCETHTOOL
    // requests read and write only within it, or through `ifru_data`, which
    // callers set to a live buffer of the size the command implies.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut req) })?;
    Ok(req)
}

/// The interface's index (`SIOCGIFINDEX`).
pub(crate) fn interface_index(fd: &OwnedFd, interface: &str) -> io::Result<libc::c_int> {
    let req = interface_ioctl(fd, interface, libc::SIOCGIFINDEX, ifreq(interface))?;
    // SAFETY: SIOCGIFINDEX fills the ifindex member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex })
}

/// The interface's MTU (`SIOCGIFMTU`).
pub(crate) fn interface_mtu(fd: &OwnedFd, interface: &str) -> io::Result<u32> {
    let req = interface_ioctl(fd, interface, libc::SIOCGIFMTU, ifreq(interface))?;
    // SAFETY: SIOCGIFMTU fills the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(mtu).unwrap_or(0))
}

/// The interface's flags (`SIOCGIFFLAGS`): `IFF_UP`, `IFF_PROMISC`, ...
pub(crate) fn interface_flags(fd: &OwnedFd, interface: &str) -> io::Result<libc::c_int> {
    let req = interface_ioctl(fd, interface, libc::SIOCGIFFLAGS, ifreq(interface))?;
    // SAFETY: SIOCGIFFLAGS fills the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    // The kernel's flags are an unsigned short in this ABI.
    Ok(libc::c_int::from(flags as u16))
}

/// The interface's hardware type (`ARPHRD_*`) and first six address bytes
/// (`SIOCGIFHWADDR`).
pub(crate) fn interface_hardware_address(
    fd: &OwnedFd,
    interface: &str,
) -> io::Result<(u16, [u8; 6])> {
    let req = interface_ioctl(fd, interface, libc::SIOCGIFHWADDR, ifreq(interface))?;
    // SAFETY: SIOCGIFHWADDR fills the hwaddr member of the union.
    let address = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(address.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok((address.sa_family, mac))
}

/// `struct ethtool_value` from `<linux/ethtool.h>`: a command and one value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// One offload feature reachable through the legacy ethtool ioctls: a get and a
/// set command, and the bit of the value that means "on" (0 = any non-zero).
#[derive(Clone, Copy, Debug)]
pub(super) struct LegacyFeature {
    /// The name `ethtool -K` uses.
    pub name: &'static str,
    get: u32,
    set: u32,
    flag: u32,
}

// Command numbers from <linux/ethtool.h>; not in the libc crate.
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
/// `ETH_FLAG_LRO` in the ETHTOOL_GFLAGS word.
const ETH_FLAG_LRO: u32 = 1 << 15;

/// The offloads an AF_PACKET port wants off, in the order to turn them off:
/// receive merging first, then segmentation, then TX checksumming (which the
/// kernel would otherwise refuse while TSO depends on it).
pub(super) const OFFLOADS_TO_DISABLE: [LegacyFeature; 5] = [
    LegacyFeature {
        name: "gro",
        get: ETHTOOL_GGRO,
        set: ETHTOOL_SGRO,
        flag: 0,
    },
    LegacyFeature {
        name: "lro",
        get: ETHTOOL_GFLAGS,
        set: ETHTOOL_SFLAGS,
        flag: ETH_FLAG_LRO,
    },
    LegacyFeature {
        name: "gso",
        get: ETHTOOL_GGSO,
        set: ETHTOOL_SGSO,
        flag: 0,
    },
    LegacyFeature {
        name: "tso",
        get: ETHTOOL_GTSO,
        set: ETHTOOL_STSO,
        flag: 0,
    },
    LegacyFeature {
        name: "tx-checksumming",
        get: ETHTOOL_GTXCSUM,
        set: ETHTOOL_STXCSUM,
        flag: 0,
    },
];

fn ethtool(fd: &OwnedFd, interface: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    let mut req = ifreq(interface);
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast::<libc::c_char>();
    interface_ioctl(fd, interface, libc::SIOCETHTOOL, req)?;
    Ok(value.data)
}

impl LegacyFeature {
    /// Whether the feature is on.
    pub(super) fn get(&self, fd: &OwnedFd, interface: &str) -> io::Result<bool> {
        let value = ethtool(fd, interface, self.get, 0)?;
        Ok(if self.flag == 0 {
            value != 0
        } else {
            value & self.flag != 0
        })
    }

    /// Turn the feature off.
    pub(super) fn turn_off(&self, fd: &OwnedFd, interface: &str) -> io::Result<()> {
        let value = if self.flag == 0 {
            0
        } else {
            // A flags word: clear our bit, keep the others as they are.
            ethtool(fd, interface, self.get, 0)? & !self.flag
        };
        ethtool(fd, interface, self.set, value)?;
        Ok(())
    }
}

/// Map `len` bytes of the socket's rings, shared with the kernel.
pub(super) fn mmap_rings(fd: &OwnedFd, len: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh mapping at an address the kernel chooses, so it cannot
    // overlap anything Rust owns; the fd stays open for the call.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(addr.cast::<u8>())
}

/// Bind an AF_PACKET socket to every protocol on `ifindex`.
pub(super) fn bind_all_protocols(fd: &OwnedFd, ifindex: libc::c_int) -> io::Result<()> {
    // SAFETY: sockaddr_ll is a C struct of integers; all-zero is valid.
    let mut address: libc::sockaddr_ll = unsafe { zeroed() };
    address.sll_family = libc::AF_PACKET as libc::c_ushort;
    address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    address.sll_ifindex = ifindex;
    // SAFETY: `address` is a valid sockaddr_ll of the length passed.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Ask the kernel to transmit what the TX ring holds, without waiting.
pub(super) fn kick_tx(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: no buffer and no address: with a TX ring, sendto only walks the
    // ring, which the kernel mapped and validates itself.
    let ret = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wait at most `timeout` for the socket to become readable (a frame in its RX
/// ring). Errors, a signal included, end the wait like the timeout: the caller
/// polls the ring either way.
pub(super) fn wait_readable(fd: &OwnedFd, timeout: std::time::Duration) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask; the kernel
    // writes only `pfd.revents`.
    unsafe {
        libc::ppoll(&mut pfd, 1, &ts, std::ptr::null());
    }
}
