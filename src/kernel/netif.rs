//! Kernel network interfaces: configuring the exception port's interface with
//! the classic ioctls, and keeping the kernel off the NIC.
//!
//! [`configure`] gives an interface (the TAP of [`super::tap`]) the stack's MAC,
//! IPv4 address and prefix, brings it up and adds a default route through it
//! unless one exists: what `ip link set`, `ip addr add` and `ip route add`
//! would do, through `SIOCSIF*` and `SIOCADDRT` on an `AF_INET` socket, so no
//! netlink code and no `ip` program are needed.
//!
//! [`isolate_from_kernel`] stops the kernel from answering, with the shared
//! address, packets that reach it on the NIC directly (see its documentation).
//!
//! Everything acts on the network namespace of the calling *thread*.

use crate::config::format_mac;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::mem::zeroed;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use thiserror::Error;
use tracing::{debug, warn};

use super::journal::NicJournal;
use crate::port::af_packet::sys;

/// What went wrong configuring an interface or its sysctls. Each message names
/// the interface and the step.
#[derive(Debug, Error)]
pub enum NetifError {
    /// The name cannot be an interface name.
    #[error(
        "{name:?} is not a valid interface name (1 to 15 bytes, no '/', ':', whitespace or NUL)"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// No interface of that name in this thread's network namespace.
    #[error("interface {interface} not found (in this thread's network namespace)")]
    NotFound {
        /// The name given.
        interface: String,
    },
    /// The setup asks for something that cannot be done.
    #[error("invalid setup for interface {interface}: {reason}")]
    InvalidSetup {
        /// The interface.
        interface: String,
        /// What is wrong.
        reason: String,
    },
    /// One step failed, e.g. "cannot set the address of sn0 to 10.0.0.2: ...".
    #[error("cannot {step}: {source}{hint}", hint = permission_hint(source))]
    Step {
        /// The interface.
        interface: String,
        /// The step, naming the interface ("set the address of sn0 to 10.0.0.2").
        step: String,
        /// The system's error.
        source: io::Error,
    },
}

/// " (needs root ...)" after a refusal, nothing otherwise.
fn permission_hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => " (needs root: CAP_NET_ADMIN)",
        _ => "",
    }
}

fn step_error(interface: &str, step: String, source: io::Error) -> NetifError {
    if source.raw_os_error() == Some(libc::ENODEV) {
        return NetifError::NotFound {
            interface: interface.to_owned(),
        };
    }
    NetifError::Step {
        interface: interface.to_owned(),
        step,
        source,
    }
}

fn check_name(name: &str) -> Result<(), NetifError> {
    if sys::valid_name(name) {
        Ok(())
    } else {
        Err(NetifError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// How [`configure`] sets up an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceSetup {
    /// The interface, e.g. `sn0`.
    pub name: String,
    /// Its MAC address (unicast, not zero).
    pub mac: [u8; 6],
    /// Its MTU; `None` leaves it as it is.
    pub mtu: Option<u32>,
    /// Its IPv4 address.
    pub address: Ipv4Addr,
    /// The prefix length of `address`, 0 to 32; the kernel adds the subnet route.
    pub prefix_len: u8,
    /// A default route through this gateway on this interface, unless a
    /// default route exists already. Must lie in `address/prefix_len`.
    pub gateway: Option<Ipv4Addr>,
}

/// What happened to the default route in [`configure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefaultRoute {
    /// No gateway was given.
    NotRequested,
    /// A default route via the gateway on the interface was added.
    Added,
    /// A default route existed already (in the main table) and was left alone:
    /// the caller should warn that the kernel's traffic may leave elsewhere.
    AlreadyPresent {
        /// The existing route's interface.
        device: String,
        /// The existing route's gateway, if it has one.
        gateway: Option<Ipv4Addr>,
    },
}

/// The outcome of [`configure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configured {
    /// What happened to the default route.
    pub default_route: DefaultRoute,
}

/// Configure `setup.name`: MAC (`SIOCSIFHWADDR`, taking the link down first if
/// it is up and the MAC differs), MTU (`SIOCSIFMTU`), IPv4 address and netmask
/// (`SIOCSIFADDR`, `SIOCSIFNETMASK`; the kernel adds the subnet route), link up
/// (`SIOCSIFFLAGS`), then a default route via the gateway on the interface
/// (`SIOCADDRT`), unless the main table has a default route already: that one
/// is never replaced nor shadowed, and [`DefaultRoute::AlreadyPresent`] says so.
///
/// Steps that would change nothing are skipped, so calling it again with the
/// same setup is harmless. The address replaces the interface's primary IPv4
/// address, if it had another. Needs CAP_NET_ADMIN.
pub fn configure(setup: &InterfaceSetup) -> Result<Configured, NetifError> {
    let name = setup.name.as_str();
    check_name(name)?;
    validate(setup)?;
    let socket = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
        .map_err(|e| step_error(name, format!("open a control socket for {name}"), e))?;

    let (hardware_type, current_mac) = sys::interface_hardware_address(&socket, name)
        .map_err(|e| step_error(name, format!("read the MAC address of {name}"), e))?;
    if hardware_type != libc::ARPHRD_ETHER {
        return Err(NetifError::InvalidSetup {
            interface: name.to_owned(),
            reason: format!("not an Ethernet interface (hardware type {hardware_type})"),
        });
    }
    if current_mac != setup.mac {
        let flags = read_flags(&socket, name)?;
        if flags & libc::IFF_UP != 0 {
            set_flags(&socket, name, flags & !libc::IFF_UP)
                .map_err(|e| step_error(name, format!("take {name} down to set its MAC"), e))?;
        }
        let mut req = sys::ifreq(name);
        let mut hwaddr = libc::sockaddr {
            sa_family: libc::ARPHRD_ETHER,
            sa_data: [0; 14],
        };
        for (dst, src) in hwaddr.sa_data.iter_mut().zip(setup.mac) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_hwaddr = hwaddr;
        sys::interface_ioctl(&socket, name, libc::SIOCSIFHWADDR, req).map_err(|e| {
            step_error(
                name,
                format!("set the MAC address of {name} to {}", format_mac(setup.mac)),
                e,
            )
        })?;
    }

    if let Some(mtu) = setup.mtu {
        let current = sys::interface_mtu(&socket, name)
            .map_err(|e| step_error(name, format!("read the MTU of {name}"), e))?;
        if current != mtu {
            let mut req = sys::ifreq(name);
            // validate() checked that it fits.
            req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
            sys::interface_ioctl(&socket, name, libc::SIOCSIFMTU, req)
                .map_err(|e| step_error(name, format!("set the MTU of {name} to {mtu}"), e))?;
        }
    }

    let mut req = sys::ifreq(name);
    req.ifr_ifru.ifru_addr = sockaddr_v4(setup.address);
    sys::interface_ioctl(&socket, name, libc::SIOCSIFADDR, req).map_err(|e| {
        step_error(
            name,
            format!("set the address of {name} to {}", setup.address),
            e,
        )
    })?;
    let mut req = sys::ifreq(name);
    req.ifr_ifru.ifru_netmask = sockaddr_v4(netmask(setup.prefix_len));
    sys::interface_ioctl(&socket, name, libc::SIOCSIFNETMASK, req).map_err(|e| {
        step_error(
            name,
            format!("set the netmask of {name} to /{}", setup.prefix_len),
            e,
        )
    })?;

    let flags = read_flags(&socket, name)?;
    if flags & libc::IFF_UP == 0 {
        set_flags(&socket, name, flags | libc::IFF_UP)
            .map_err(|e| step_error(name, format!("bring {name} up"), e))?;
    }

    let default_route = match setup.gateway {
        None => DefaultRoute::NotRequested,
        Some(gateway) => add_default_route(&socket, name, gateway)?,
    };
    Ok(Configured { default_route })
}

fn validate(setup: &InterfaceSetup) -> Result<(), NetifError> {
    let invalid = |reason: String| NetifError::InvalidSetup {
        interface: setup.name.clone(),
        reason,
    };
    if setup.mac[0] & 1 != 0 || setup.mac == [0; 6] {
        return Err(invalid(format!(
            "MAC address {} is multicast or zero",
            format_mac(setup.mac)
        )));
    }
    if setup.prefix_len > 32 {
        return Err(invalid(format!(
            "prefix length /{} is longer than 32",
            setup.prefix_len
        )));
    }
    if let Some(mtu) = setup.mtu {
        if libc::c_int::try_from(mtu).is_err() {
            return Err(invalid(format!("MTU {mtu} is too large")));
        }
    }
    if let Some(gateway) = setup.gateway {
        let mask = u32::from(netmask(setup.prefix_len));
        if u32::from(gateway) & mask != u32::from(setup.address) & mask || gateway == setup.address
        {
            return Err(invalid(format!(
                "gateway {gateway} is not another address of {}/{}",
                setup.address, setup.prefix_len
            )));
        }
    }
    Ok(())
}

/// The netmask of a prefix length (at most 32).
fn netmask(prefix_len: u8) -> Ipv4Addr {
    let bits = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    Ipv4Addr::from(bits)
}

/// An `AF_INET` socket address, as the generic `sockaddr` the ioctls take.
fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    // SAFETY: sockaddr_in is a C struct of integers; all-zero is valid.
    let mut sin: libc::sockaddr_in = unsafe { zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from(addr).to_be();
    // SAFETY: sockaddr_in and sockaddr are both 16-byte C structs made only of
    // integers (transmute checks the sizes at compile time), so every byte
    // pattern of one is a valid value of the other; this is the cast the C API
    // expects.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn read_flags(socket: &OwnedFd, name: &str) -> Result<libc::c_int, NetifError> {
    sys::interface_flags(socket, name)
        .map_err(|e| step_error(name, format!("read the flags of {name}"), e))
}

fn set_flags(socket: &OwnedFd, name: &str, flags: libc::c_int) -> io::Result<()> {
    let mut req = sys::ifreq(name);
    // The kernel's flags are an unsigned short in this ABI.
    req.ifr_ifru.ifru_flags = flags as u16 as libc::c_short;
    sys::interface_ioctl(socket, name, libc::SIOCSIFFLAGS, req)?;
    Ok(())
}

/// A default route in the main table: its interface and gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ExistingRoute {
    device: String,
    gateway: Option<Ipv4Addr>,
}

/// The first default route of the main table, from `/proc/thread-self/net/route`
/// (the calling thread's namespace; `/proc/net` is the main thread's).
fn existing_default_route() -> io::Result<Option<ExistingRoute>> {
    let table = fs::read_to_string("/proc/thread-self/net/route")?;
    Ok(parse_default_route(&table))
}

/// Parse `/proc/net/route`: `Iface Destination Gateway Flags RefCnt Use Metric
/// Mask ...`, addresses as the hex of the network-order word read natively.
fn parse_default_route(table: &str) -> Option<ExistingRoute> {
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (device, destination, gateway, mask) = (
            fields.first()?,
            fields.get(1)?,
            fields.get(2)?,
            fields.get(7)?,
        );
        if word(destination)? != 0 || word(mask)? != 0 {
            return None;
        }
        let gateway = Ipv4Addr::from(word(gateway)?.to_ne_bytes());
        Some(ExistingRoute {
            device: (*device).to_owned(),
            gateway: (!gateway.is_unspecified()).then_some(gateway),
        })
    })
}

fn add_default_route(
    socket: &OwnedFd,
    name: &str,
    gateway: Ipv4Addr,
) -> Result<DefaultRoute, NetifError> {
    let step = || format!("add a default route via {gateway} on {name}");
    let present = |route: ExistingRoute| DefaultRoute::AlreadyPresent {
        device: route.device,
        gateway: route.gateway,
    };
    // SIOCADDRT only fails with EEXIST for an identical route: a default route
    // through another gateway or device would be added beside the existing one
    // (and, inserted first, take over). So look first.
    if let Some(route) = existing_default_route().map_err(|e| step_error(name, step(), e))? {
        return Ok(present(route));
    }
    let device = CString::new(name).expect("valid_name rejects NUL");
    // SAFETY: rtentry is a C struct of integers, sockaddrs and one raw pointer
    // (null when zeroed): all-zero is a valid value.
    let mut route: libc::rtentry = unsafe { zeroed() };
    route.rt_dst = sockaddr_v4(Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr_v4(Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr_v4(gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    route.rt_dev = device.as_ptr().cast_mut();
    // SAFETY: `route` is a valid rtentry that lives across the call; its
    // `rt_dev` points to `device`, a NUL-terminated string that outlives the
    // call and that the kernel only reads (it copies at most IFNAMSIZ bytes).
    let ret = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCADDRT as _, &mut route) };
    match sys::check(ret) {
        Ok(_) => Ok(DefaultRoute::Added),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let route = existing_default_route()
                .ok()
                .flatten()
                .unwrap_or(ExistingRoute {
                    device: name.to_owned(),
                    gateway: Some(gateway),
                });
            Ok(present(route))
        }
        Err(e) => Err(step_error(name, step(), e)),
    }
}

/// Whether an interface of this name exists in the calling thread's network
/// namespace (`if_nametoindex`). False for names that cannot be interface names.
pub fn interface_exists(name: &str) -> bool {
    if !sys::valid_name(name) {
        return false;
    }
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: `name` is a NUL-terminated string that lives across the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

/// Whether interface `name` has the IPv4 address `addr` (`getifaddrs`).
pub fn interface_has_address(name: &str, addr: Ipv4Addr) -> io::Result<bool> {
    Ok(interface_addresses(name)?.contains(&addr))
}

/// The IPv4 addresses of interface `name` (`getifaddrs`).
pub fn interface_addresses(name: &str) -> io::Result<Vec<Ipv4Addr>> {
    let mut found = Vec::new();
    /// Frees the list whatever happens.
    struct List(*mut libc::ifaddrs);
    impl Drop for List {
        fn drop(&mut self) {
            // SAFETY: the pointer came from a successful getifaddrs and is freed
            // once, here.
            unsafe { libc::freeifaddrs(self.0) }
        }
    }

    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a writable pointer; on success getifaddrs stores a list
    // that we own until freeifaddrs.
    sys::check(unsafe { libc::getifaddrs(&mut head) })?;
    let list = List(head);
    let mut entry = list.0;
    while !entry.is_null() {
        // SAFETY: `entry` is a non-null node of the list, which stays allocated
        // until `list` is dropped after the loop.
        let ifa = unsafe { &*entry };
        entry = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a socket address of at least
        // a sockaddr's size, part of the list.
        let family = unsafe { (*ifa.ifa_addr).sa_family };
        if libc::c_int::from(family) != libc::AF_INET {
            continue;
        }
        // SAFETY: a non-null ifa_name is a NUL-terminated string in the list.
        let ifa_name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if ifa_name.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: the family is AF_INET, so the address is a sockaddr_in;
        // read_unaligned copes with any alignment.
        let sin = unsafe { std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>()) };
        found.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
    }
    Ok(found)
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`) in the
/// calling thread's network namespace: the ports the kernel picks for its own
/// connections.
pub fn local_port_range() -> io::Result<RangeInclusive<u16>> {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    parse_port_range(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse ip_local_port_range {:?}", text.trim()),
        )
    })
}

fn parse_port_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    let (low, high) = (numbers.next()?.ok()?, numbers.next()?.ok()?);
    (numbers.next().is_none() && low <= high).then_some(low..=high)
}

/// One sysctl that [`isolate_from_kernel`] changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SysctlChange {
    /// The file, e.g. `/proc/sys/net/ipv4/conf/eth0/rp_filter`.
    pub path: String,
    /// The value before, restored on drop.
    pub old: String,
    /// The value set.
    pub new: String,
}

impl SysctlChange {
    /// The sysctl's name as a path under `/proc/sys`, e.g.
    /// `net/ipv4/conf/eth0/rp_filter`.
    pub fn key(&self) -> &str {
        self.path.strip_prefix("/proc/sys/").unwrap_or(&self.path)
    }

    /// The undoing, for a log line: `KEY NEW -> OLD`.
    pub fn reversed(&self) -> String {
        format!("{} {} -> {}", self.key(), self.new, self.old)
    }
}

impl fmt::Display for SysctlChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.key(), self.old, self.new)
    }
}

/// What [`restore_sysctl`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SysctlRestore {
    /// It held the value set, and holds the original again.
    Restored,
    /// It holds the original already (the change was recorded but never
    /// made, or undone already).
    AlreadyOriginal,
    /// It no longer exists (its interface is gone, and its settings with it).
    Gone,
    /// Someone set it to this value since: left alone.
    ChangedSince(String),
}

/// Put `change.path` back to `change.old`, but only while it holds
/// `change.new`, the value shardnet set: a value someone else wrote since is
/// theirs to keep.
pub fn restore_sysctl(change: &SysctlChange) -> io::Result<SysctlRestore> {
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let now = match read_sysctl(&change.path) {
        Ok(now) => now,
        Err(e) if gone(&e) => return Ok(SysctlRestore::Gone),
        Err(e) => return Err(e),
    };
    if now == change.old {
        return Ok(SysctlRestore::AlreadyOriginal);
    }
    if now != change.new {
        return Ok(SysctlRestore::ChangedSince(now));
    }
    match write_sysctl(&change.path, &change.old) {
        Ok(()) => Ok(SysctlRestore::Restored),
        Err(e) if gone(&e) => Ok(SysctlRestore::Gone),
        Err(e) => Err(e),
    }
}

/// The sysctls [`isolate_from_kernel`] changed; dropping it puts the old values
/// back, the last change first (each while it still holds the value set: see
/// [`restore_sysctl`]).
#[derive(Debug)]
#[must_use = "dropping the guard gives the NIC back to the kernel"]
pub struct SysctlGuard {
    nic: String,
    changes: Vec<SysctlChange>,
    /// Where each change is recorded before it is made, and forgotten once
    /// undone.
    journal: Option<Arc<NicJournal>>,
}

impl SysctlGuard {
    /// The NIC it isolates.
    pub fn nic(&self) -> &str {
        &self.nic
    }

    /// What it changed, in order (values that already were right are not
    /// listed).
    pub fn changes(&self) -> &[SysctlChange] {
        &self.changes
    }

    /// The changes on one line, for a log message.
    pub fn summary(&self) -> String {
        if self.changes.is_empty() {
            return "no sysctl changed (all were set already)".to_owned();
        }
        let all: Vec<String> = self.changes.iter().map(ToString::to_string).collect();
        all.join(", ")
    }

    /// Set `path` to `value`, remembering the old value if it differs.
    fn set(&mut self, path: String, value: &str) -> Result<(), NetifError> {
        let fail = |what: &str, e| {
            step_error(
                &self.nic,
                format!("{what} {path} to isolate {} from the kernel", self.nic),
                e,
            )
        };
        let old = read_sysctl(&path).map_err(|e| fail("read", e))?;
        if old == value {
            return Ok(());
        }
        let change = SysctlChange {
            path: path.clone(),
            old,
            new: value.to_owned(),
        };
        if let Some(journal) = &self.journal {
            journal.record_sysctl(&change).map_err(|e| {
                step_error(
                    &self.nic,
                    format!(
                        "record the original value of {path} in {} (before changing it)",
                        journal.path().display()
                    ),
                    e,
                )
            })?;
        }
        if let Err(e) = write_sysctl(&path, value) {
            if let Some(journal) = &self.journal {
                // Not changed: nothing to restore.
                let _ = journal.forget_sysctl(&change);
            }
            return Err(fail("write", e));
        }
        self.changes.push(change);
        Ok(())
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        for change in self.changes.iter().rev() {
            match restore_sysctl(change) {
                Ok(SysctlRestore::Restored | SysctlRestore::AlreadyOriginal) => {}
                // The interface is gone, and its settings with it.
                Ok(SysctlRestore::Gone) => {
                    debug!(path = %change.path, "sysctl gone, nothing to restore");
                }
                Ok(SysctlRestore::ChangedSince(now)) => warn!(
                    path = %change.path,
                    "left at {now}: changed since shardnet set {} (the original was {})",
                    change.new,
                    change.old
                ),
                Err(e) => {
                    warn!(
                        path = %change.path,
                        value = %change.old,
                        error = %e,
                        "cannot restore sysctl"
                    );
                    // Stays in the journal, for `shardnet restore`.
                    continue;
                }
            }
            if let Some(journal) = &self.journal {
                if let Err(e) = journal.forget_sysctl(change) {
                    warn!(file = %journal.path().display(), error = %e, "cannot update the journal");
                }
            }
        }
    }
}

fn read_sysctl(path: &str) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(format!("{value}\n").as_bytes())
}

/// Keep the kernel from answering, with the address it shares with the stack,
/// packets that reach it on `nic` directly. For a NIC the kernel still sees:
/// the AF_PACKET backend, or DPDK's `net_af_packet` vdev.
///
/// The kernel interface of the exception port carries the stack's IPv4
/// address; by Linux's weak host model the kernel would then also answer ARP
/// for it on the NIC and accept TCP and UDP for it there, racing the stack
/// (and resetting its connections). The guard sets, in the calling thread's
/// network namespace:
///
/// - `net.ipv4.conf.<nic>.arp_ignore = 8`: never answer ARP on the NIC;
/// - `net.ipv4.conf.<nic>.rp_filter = 1`: strict reverse-path filtering. The
///   route back to any source goes through the TAP, never the NIC (which has
///   no address), so IPv4 arriving on the NIC fails the check and is dropped,
///   locally destined packets included (ARP requests too). The kernel uses
///   the maximum of `conf.all` and `conf.<nic>`; 2 (loose: any route back
///   will do) still drops on a NIC without an address, but lets everything
///   in once the NIC has one. So if `conf.all.rp_filter` is 2 the guard
///   lowers it to 1, after raising every other interface's own value (and
///   `conf.default`'s) to 2, which keeps their effective mode loose as it was;
/// - `net.ipv4.udp_early_demux = 0`: a UDP datagram for a *connected* kernel
///   socket is otherwise delivered through the socket's cached route, whatever
///   interface it arrived on, without a reverse-path check (namespace-wide;
///   costs a route lookup per datagram for connected sockets). TCP's early
///   demux checks the interface and needs nothing;
/// - `net.ipv6.conf.<nic>.disable_ipv6 = 1` (skipped if the kernel has no IPv6).
///
/// Values that were set already are left alone. Dropping the guard restores
/// the old values; [`SysctlGuard::summary`] lists the changes for a log line.
/// If a step fails, what was changed before it is restored. Needs root.
///
/// With a `journal`, each change is recorded there (on disk) before it is
/// made, and forgotten once undone, so that a crash loses no original value
/// (see [`super::journal`]).
///
/// Not covered: IPv4 from source 0.0.0.0 to the limited broadcast (DHCP
/// clients) skips the reverse-path check.
pub fn isolate_from_kernel(
    nic: &str,
    journal: Option<Arc<NicJournal>>,
) -> Result<SysctlGuard, NetifError> {
    check_name(nic)?;
    if !interface_exists(nic) {
        return Err(NetifError::NotFound {
            interface: nic.to_owned(),
        });
    }
    let mut guard = SysctlGuard {
        nic: nic.to_owned(),
        changes: Vec::new(),
        journal,
    };
    let ipv4 = "/proc/sys/net/ipv4";
    guard.set(format!("{ipv4}/conf/{nic}/arp_ignore"), "8")?;
    guard.set(format!("{ipv4}/conf/{nic}/rp_filter"), "1")?;
    let all = format!("{ipv4}/conf/all/rp_filter");
    let loose = read_sysctl(&all)
        .map_err(|e| step_error(nic, format!("read {all}"), e))?
        .parse::<u8>()
        .is_ok_and(|mode| mode >= 2);
    if loose {
        // Keep every other interface loose (their own value 2), then make
        // `all` strict: only the NIC's effective mode changes.
        let conf = format!("{ipv4}/conf");
        let entries =
            fs::read_dir(&conf).map_err(|e| step_error(nic, format!("list {conf}"), e))?;
        let mut others: Vec<String> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name != "all" && name != nic)
            .collect();
        others.sort();
        for other in others {
            let path = format!("{conf}/{other}/rp_filter");
            match guard.set(path, "2") {
                // An interface that went away meanwhile needs nothing.
                Err(NetifError::Step { ref source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        guard.set(all, "1")?;
    }
    guard.set(format!("{ipv4}/udp_early_demux"), "0")?;
    let ipv6 = format!("/proc/sys/net/ipv6/conf/{nic}/disable_ipv6");
    if Path::new("/proc/sys/net/ipv6").exists() {
        guard.set(ipv6, "1")?;
    }
    Ok(guard)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers for tests that need a private network namespace.

    use std::net::Ipv4Addr;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use super::InterfaceSetup;
    use crate::port::heap::HeapBuf;
    use crate::port::{Burst, Queue, BURST};
    use crate::testing::{ipv4_frame, Endpoints};
    use crate::wire::{
        ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
        Icmpv4Message, Icmpv4Packet, IpProtocol, ARP_PACKET_LEN, ETHERNET_HEADER_LEN,
        ICMPV4_HEADER_LEN,
    };

    /// Run `f` on a new thread moved into a fresh network namespace (only that
    /// thread, and processes it spawns, live there), with `lo` up. Panics if
    /// the namespace cannot be made: these tests need root, and must not pass
    /// without it.
    pub(crate) fn in_fresh_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: unshare takes no pointers; CLONE_NEWNET moves only
                    // the calling thread (this test thread, which ends with `f`)
                    // into a new network namespace.
                    let ret = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                    assert_eq!(
                        ret,
                        0,
                        "cannot create a network namespace ({}): the kernel interface tests \
                         need root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run them as root",
                        std::io::Error::last_os_error()
                    );
                    ip(&["link", "set", "dev", "lo", "up"]);
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Run `ip args...`; panic with its error output if it fails.
    pub(crate) fn ip(args: &[&str]) -> String {
        let output = Command::new("ip").args(args).output().unwrap_or_else(|e| {
            panic!(
                "cannot run `ip {}`: {e}; these tests need iproute2",
                args.join(" ")
            )
        });
        assert!(
            output.status.success(),
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The TAP the tests make.
    pub(crate) const TAP: &str = "sntest0";
    /// The TAP's (the stack's) MAC.
    pub(crate) const TAP_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    /// The MAC of the gateway (the far end of the TAP, as the tests play it).
    pub(crate) const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    /// The shared address.
    pub(crate) const ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    /// The gateway.
    pub(crate) const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    /// sntest0 as 198.18.0.2/24, MAC 02:00:00:00:00:02, MTU 1500, gateway
    /// 198.18.0.1.
    pub(crate) fn tap_setup() -> InterfaceSetup {
        InterfaceSetup {
            name: TAP.to_owned(),
            mac: TAP_MAC,
            mtu: Some(1500),
            address: ADDRESS,
            prefix_len: 24,
            gateway: Some(GATEWAY),
        }
    }

    /// An Ethernet frame with an ARP packet; a request goes to the broadcast
    /// address and asks with a zero target MAC.
    pub(crate) fn arp_frame(
        operation: ArpOperation,
        src: ([u8; 6], Ipv4Addr),
        dst: ([u8; 6], Ipv4Addr),
    ) -> Vec<u8> {
        let request = operation == ArpOperation::Request;
        let mut frame = vec![0; ETHERNET_HEADER_LEN + ARP_PACKET_LEN];
        EthernetRepr {
            src_addr: EthernetAddress(src.0),
            dst_addr: if request {
                EthernetAddress::BROADCAST
            } else {
                EthernetAddress(dst.0)
            },
            ethertype: EtherType::Arp,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        ArpRepr {
            operation,
            source_hardware_addr: EthernetAddress(src.0),
            source_protocol_addr: src.1,
            target_hardware_addr: if request {
                EthernetAddress::UNSPECIFIED
            } else {
                EthernetAddress(dst.0)
            },
            target_protocol_addr: dst.1,
        }
        .emit(&mut ArpPacket::new_unchecked(
            &mut frame[ETHERNET_HEADER_LEN..],
        ));
        frame
    }

    /// The ARP packet of a frame, if it carries one.
    pub(crate) fn parse_arp(frame: &[u8]) -> Option<ArpRepr> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != EtherType::Arp {
            return None;
        }
        ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()
    }

    /// An Ethernet frame with an ICMP echo request (checksums filled).
    pub(crate) fn echo_request(ends: Endpoints, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut icmp = vec![0; ICMPV4_HEADER_LEN + data.len()];
        icmp[ICMPV4_HEADER_LEN..].copy_from_slice(data);
        let mut packet = Icmpv4Packet::new_unchecked(&mut icmp[..]);
        packet.set_msg_type(Icmpv4Message::EchoRequest);
        packet.set_msg_code(0);
        packet.set_echo_ident(ident);
        packet.set_echo_seq_no(seq);
        packet.fill_checksum();
        ipv4_frame(ends, IpProtocol::Icmp, &icmp)
    }

    /// Transmit all `frames` on `queue`; panic if any is refused or dropped.
    pub(crate) fn send_all<Q: Queue<Buf = HeapBuf>>(queue: &mut Q, frames: &[Vec<u8>]) {
        for chunk in frames.chunks(BURST) {
            let mut burst: Burst<HeapBuf> = chunk.iter().map(|f| HeapBuf::from_slice(f)).collect();
            let sent = queue.tx_burst(&mut burst);
            assert_eq!(sent, chunk.len(), "some frames were not sent");
        }
    }

    /// A counter of `/proc/thread-self/net/snmp` (the calling thread's
    /// namespace), e.g. ("Icmp", "InEchos").
    pub(crate) fn snmp(group: &str, name: &str) -> u64 {
        let text = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
        let prefix = format!("{group}:");
        let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
        let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
        let index = names
            .split_whitespace()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no {group} {name} in /proc/net/snmp"));
        values
            .split_whitespace()
            .nth(index)
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The MAC of an interface, from `ip -j link`.
    pub(crate) fn mac_of(dev: &str) -> [u8; 6] {
        let link = ip_json(&["link", "show", "dev", dev]);
        let text = link[0]["address"].as_str().unwrap();
        text.parse::<EthernetAddress>().unwrap().0
    }

    /// Wait (at most 2 s) for interface `name` to disappear. Closing the last
    /// descriptor of a TAP deletes it, but a process spawned meanwhile by
    /// another test thread may hold a copy of the descriptor between its fork
    /// and its exec.
    pub(crate) fn wait_until_gone(name: &str) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while super::interface_exists(name) {
            assert!(
                Instant::now() < deadline,
                "{name} still exists 2 s after the drop"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `ip -j args...`, parsed.
    pub(crate) fn ip_json(args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let text = ip(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("`ip {all:?}` gave {text:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    use super::test_support::*;
    use super::*;
    use crate::kernel::tap::TapDevice;
    use crate::port::af_packet::{AfPacketOptions, AfPacketPort, AfPacketQueue};
    use crate::port::heap::HeapBuf;
    use crate::port::{Burst, PacketBuf, Queue};
    use crate::testing::{tcp_frame, tcp_header, udp_frame, Endpoints};
    use crate::wire::{ArpOperation, EthernetAddress, TcpFlags};

    const NIC: &str = "snnic0";
    const PEER: &str = "snpeer0";

    /// What the kernel did with one round of probes sent to the shared address
    /// on the NIC.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Answered {
        arp_reply: bool,
        echo_requests_in: u64,
        udp: bool,
        udp_connected: bool,
        tcp_segments_in: u64,
    }

    struct Probe {
        queue: AfPacketQueue,
        _port: AfPacketPort,
        nic_mac: [u8; 6],
        peer_mac: [u8; 6],
        udp: UdpSocket,
        connected: UdpSocket,
    }

    impl Probe {
        /// A veth pair NIC <-> PEER, both up with no addresses, an AF_PACKET
        /// queue on PEER, and two UDP sockets on the shared address: one
        /// unconnected, one connected to the gateway (with one datagram through
        /// the TAP, so that it has a cached input route).
        fn new(tap: &mut TapDevice) -> Probe {
            ip(&["link", "add", NIC, "type", "veth", "peer", "name", PEER]);
            for dev in [NIC, PEER] {
                ip(&["link", "set", "dev", dev, "addrgenmode", "none"]);
                ip(&["link", "set", "dev", dev, "up"]);
            }
            let options = AfPacketOptions {
                rx_ring_frames: 64,
                tx_ring_frames: 64,
                promiscuous: false,
                disable_offloads: false,
                lend_rx_frames: false,
            };
            let mut port = AfPacketPort::open(PEER, 1, options).unwrap();
            let queue = port.queues().pop().unwrap();
            let udp = UdpSocket::bind((ADDRESS, 40000)).unwrap();
            udp.set_nonblocking(true).unwrap();
            let connected = UdpSocket::bind((ADDRESS, 40001)).unwrap();
            connected.connect((GATEWAY, 50001)).unwrap();
            connected
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let via_tap = Endpoints {
                src_mac: EthernetAddress(GATEWAY_MAC),
                dst_mac: EthernetAddress(TAP_MAC),
                src_ip: GATEWAY,
                dst_ip: ADDRESS,
            };
            send_all(tap, &[udp_frame(via_tap, 50001, 40001, b"via the tap")]);
            let mut buf = [0u8; 64];
            let n = connected
                .recv(&mut buf)
                .expect("a datagram through the TAP");
            assert_eq!(&buf[..n], b"via the tap");
            connected.set_nonblocking(true).unwrap();
            Probe {
                queue,
                _port: port,
                nic_mac: mac_of(NIC),
                peer_mac: mac_of(PEER),
                udp,
                connected,
            }
        }

        /// Send an ARP request, two echo requests (from the gateway and from
        /// off the subnet), two UDP datagrams and a TCP SYN to the shared
        /// address on the NIC, and see what the kernel does with them for up to
        /// `wait`.
        fn probe(&mut self, wait: Duration) -> Answered {
            let echos = snmp("Icmp", "InEchos");
            let segments = snmp("Tcp", "InSegs");
            let ends = |src_ip| Endpoints {
                src_mac: EthernetAddress(self.peer_mac),
                dst_mac: EthernetAddress(self.nic_mac),
                src_ip,
                dst_ip: ADDRESS,
            };
            let remote = Ipv4Addr::new(203, 0, 113, 9);
            let frames = [
                arp_frame(
                    ArpOperation::Request,
                    (self.peer_mac, GATEWAY),
                    ([0; 6], ADDRESS),
                ),
                echo_request(ends(GATEWAY), 7, 1, b"on the nic"),
                echo_request(ends(remote), 7, 2, b"on the nic"),
                udp_frame(ends(GATEWAY), 50000, 40000, b"unconnected"),
                udp_frame(ends(GATEWAY), 50001, 40001, b"connected"),
                tcp_frame(
                    ends(GATEWAY),
                    &tcp_header(50002, 40002, TcpFlags::SYN, 1000, 0),
                    b"",
                ),
            ];
            send_all(&mut self.queue, &frames);
            let mut answered = Answered::default();
            let deadline = Instant::now() + wait;
            let mut buf = [0u8; 64];
            loop {
                let mut burst = Burst::<HeapBuf>::new();
                self.queue.rx_burst(&mut burst);
                answered.arp_reply |= burst.iter().any(|frame| {
                    parse_arp(frame.data()).is_some_and(|arp| {
                        arp.operation == ArpOperation::Reply && arp.source_protocol_addr == ADDRESS
                    })
                });
                answered.udp |= self.udp.recv(&mut buf).is_ok();
                answered.udp_connected |= self.connected.recv(&mut buf).is_ok();
                answered.echo_requests_in = snmp("Icmp", "InEchos") - echos;
                answered.tcp_segments_in = snmp("Tcp", "InSegs") - segments;
                let all = answered.arp_reply
                    && answered.udp
                    && answered.udp_connected
                    && answered.echo_requests_in == 2
                    && answered.tcp_segments_in == 1;
                if all || Instant::now() >= deadline {
                    return answered;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn sysctl(path: &str) -> String {
        read_sysctl(path).unwrap()
    }

    fn set_sysctl(path: &str, value: &str) {
        write_sysctl(path, value).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }

    /// Everything answered, as the kernel does without the guard.
    const EVERYTHING: Answered = Answered {
        arp_reply: true,
        echo_requests_in: 2,
        udp: true,
        udp_connected: true,
        tcp_segments_in: 1,
    };

    /// Nothing answered.
    const NOTHING: Answered = Answered {
        arp_reply: false,
        echo_requests_in: 0,
        udp: false,
        udp_connected: false,
        tcp_segments_in: 0,
    };

    #[test]
    fn configure_sets_address_mac_mtu_and_default_route() {
        in_fresh_netns(|| {
            let tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            let configured = configure(&tap_setup()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(configured.default_route, DefaultRoute::Added);

            let link = &ip_json(&["link", "show", "dev", TAP])[0];
            assert_eq!(link["ifindex"], tap.ifindex());
            assert_eq!(link["address"], "02:00:00:00:00:02");
            assert_eq!(link["mtu"], 1500);
            let flags = link["flags"].as_array().unwrap();
            assert!(flags.iter().any(|f| f == "UP"), "{link}");
            let addr = &ip_json(&["-4", "addr", "show", "dev", TAP])[0]["addr_info"];
            assert_eq!(addr.as_array().unwrap().len(), 1, "{addr}");
            assert_eq!(addr[0]["local"], "198.18.0.2");
            assert_eq!(addr[0]["prefixlen"], 24);
            assert_eq!(addr[0]["broadcast"], "198.18.0.255");
            let routes = ip_json(&["-4", "route", "show"]);
            let routes = routes.as_array().unwrap();
            assert!(
                routes.iter().any(|r| r["dst"] == "default"
                    && r["gateway"] == "198.18.0.1"
                    && r["dev"] == TAP),
                "no default route via 198.18.0.1 dev {TAP}: {routes:?}"
            );
            assert!(
                routes.iter().any(|r| r["dst"] == "198.18.0.0/24"
                    && r["dev"] == TAP
                    && r["prefsrc"] == "198.18.0.2"),
                "no subnet route on {TAP}: {routes:?}"
            );
            assert!(interface_exists(TAP));

            // Again: nothing to change, and the route is ours already.
            let again = configure(&tap_setup()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                again.default_route,
                DefaultRoute::AlreadyPresent {
                    device: TAP.to_owned(),
                    gateway: Some(GATEWAY),
                }
            );

            // Another MAC while up (the link goes down for it, which takes the
            // default route away: it is added again), another MTU, and a
            // /16 prefix.
            let setup = InterfaceSetup {
                mac: [2, 0, 0, 0, 0, 0x22],
                mtu: Some(1400),
                prefix_len: 16,
                ..tap_setup()
            };
            let configured = configure(&setup).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(configured.default_route, DefaultRoute::Added);
            let link = &ip_json(&["link", "show", "dev", TAP])[0];
            assert_eq!(link["address"], "02:00:00:00:00:22");
            assert_eq!(link["mtu"], 1400);
            assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
            let addr = &ip_json(&["-4", "addr", "show", "dev", TAP])[0]["addr_info"];
            assert_eq!(addr[0]["local"], "198.18.0.2");
            assert_eq!(addr[0]["prefixlen"], 16);
            let default = ip_json(&["-4", "route", "show", "default"]);
            assert_eq!(default[0]["gateway"], "198.18.0.1");
            assert_eq!(default[0]["dev"], TAP);

            // Dropping the device deletes the interface, its address and routes.
            drop(tap);
            wait_until_gone(TAP);
            let links = ip_json(&["link", "show"]);
            assert!(
                links.as_array().unwrap().iter().all(|l| l["ifname"] != TAP),
                "{links}"
            );
            assert_eq!(
                ip_json(&["-4", "route", "show", "default"]),
                serde_json::json!([])
            );
        })
    }

    #[test]
    fn existing_default_route_is_left_alone() {
        in_fresh_netns(|| {
            ip(&[
                "link", "add", "snother0", "type", "veth", "peer", "name", "snother1",
            ]);
            ip(&["link", "set", "dev", "snother0", "up"]);
            ip(&["addr", "add", "10.9.0.1/24", "dev", "snother0"]);
            ip(&[
                "route",
                "add",
                "default",
                "via",
                "10.9.0.254",
                "dev",
                "snother0",
                "metric",
                "100",
            ]);
            let _tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            let configured = configure(&tap_setup()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                configured.default_route,
                DefaultRoute::AlreadyPresent {
                    device: "snother0".to_owned(),
                    gateway: Some(Ipv4Addr::new(10, 9, 0, 254)),
                }
            );
            let default = ip_json(&["-4", "route", "show", "default"]);
            assert_eq!(default.as_array().unwrap().len(), 1, "{default}");
            assert_eq!(default[0]["dev"], "snother0");
            // The rest is configured all the same.
            assert!(interface_has_address(TAP, ADDRESS).unwrap());
        })
    }

    #[test]
    fn configure_errors_name_the_interface_and_the_step() {
        in_fresh_netns(|| {
            let missing = InterfaceSetup {
                name: "snmissing0".to_owned(),
                ..tap_setup()
            };
            let e = configure(&missing).unwrap_err();
            assert!(matches!(e, NetifError::NotFound { .. }), "{e:?}");
            assert!(e.to_string().contains("snmissing0"), "{e}");

            let bad_name = InterfaceSetup {
                name: "../etc".to_owned(),
                ..tap_setup()
            };
            assert!(matches!(
                configure(&bad_name),
                Err(NetifError::InvalidName { .. })
            ));

            let _tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            let far_gateway = InterfaceSetup {
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
                ..tap_setup()
            };
            let e = configure(&far_gateway).unwrap_err().to_string();
            assert!(e.contains(TAP) && e.contains("10.0.0.1"), "{e}");
            let multicast_mac = InterfaceSetup {
                mac: [1, 0, 0x5e, 0, 0, 1],
                ..tap_setup()
            };
            assert!(matches!(
                configure(&multicast_mac),
                Err(NetifError::InvalidSetup { .. })
            ));

            // The kernel refuses an MTU below 68.
            let tiny_mtu = InterfaceSetup {
                mtu: Some(10),
                ..tap_setup()
            };
            let e = configure(&tiny_mtu).unwrap_err();
            assert!(matches!(e, NetifError::Step { .. }), "{e:?}");
            assert!(
                e.to_string()
                    .starts_with("cannot set the MTU of sntest0 to 10: "),
                "{e}"
            );
        })
    }

    #[test]
    fn finds_addresses_and_the_port_range() {
        in_fresh_netns(|| {
            let _tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            assert!(!interface_has_address(TAP, ADDRESS).unwrap());
            configure(&tap_setup()).unwrap_or_else(|e| panic!("{e}"));
            assert!(interface_has_address(TAP, ADDRESS).unwrap());
            assert!(!interface_has_address(TAP, GATEWAY).unwrap());
            assert!(!interface_has_address("lo", ADDRESS).unwrap());
            assert!(interface_has_address("lo", Ipv4Addr::LOCALHOST).unwrap());
            assert!(!interface_has_address("snmissing0", ADDRESS).unwrap());

            let path = "/proc/sys/net/ipv4/ip_local_port_range";
            assert_eq!(
                local_port_range().unwrap(),
                32768..=60999,
                "{}",
                sysctl(path)
            );
            set_sysctl(path, "20000\t20999");
            assert_eq!(local_port_range().unwrap(), 20000..=20999);
        })
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(32768..=60999));
        assert_eq!(parse_port_range(" 1024 65535 "), Some(1024..=65535));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("1024"), None);
        assert_eq!(parse_port_range("1 2 3"), None);
        assert_eq!(parse_port_range("1024 70000"), None);

        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
        let expected_gateway = if cfg!(target_endian = "little") {
            Ipv4Addr::new(192, 168, 2, 1)
        } else {
            Ipv4Addr::new(1, 2, 168, 192)
        };
        assert_eq!(
            parse_default_route(table),
            Some(ExistingRoute {
                device: "eth0".to_owned(),
                gateway: Some(expected_gateway),
            })
        );
        assert_eq!(
            parse_default_route(&table[..table.rfind("eth0").unwrap()]),
            None
        );

        assert_eq!(netmask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(32), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn guard_keeps_the_kernel_off_the_nic() {
        in_fresh_netns(|| {
            let mut tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            configure(&tap_setup()).unwrap_or_else(|e| panic!("{e}"));
            let mut probe = Probe::new(&mut tap);
            // The weak host model: the kernel answers for the TAP's address on
            // the NIC, which has no address at all.
            assert_eq!(probe.probe(Duration::from_secs(2)), EVERYTHING);

            let paths = [
                format!("/proc/sys/net/ipv4/conf/{NIC}/arp_ignore"),
                format!("/proc/sys/net/ipv4/conf/{NIC}/rp_filter"),
                "/proc/sys/net/ipv4/udp_early_demux".to_owned(),
                format!("/proc/sys/net/ipv6/conf/{NIC}/disable_ipv6"),
            ];
            let before: Vec<String> = paths.iter().map(|p| sysctl(p)).collect();
            assert_eq!(before, ["0", "0", "1", "0"]);
            let all_before = sysctl("/proc/sys/net/ipv4/conf/all/rp_filter");

            let guard = isolate_from_kernel(NIC, None).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(guard.nic(), NIC);
            let changed: Vec<(&str, &str, &str)> = guard
                .changes()
                .iter()
                .map(|c| (c.path.as_str(), c.old.as_str(), c.new.as_str()))
                .collect();
            assert_eq!(
                changed,
                [
                    (paths[0].as_str(), "0", "8"),
                    (paths[1].as_str(), "0", "1"),
                    (paths[2].as_str(), "1", "0"),
                    (paths[3].as_str(), "0", "1"),
                ]
            );
            assert_eq!(
                guard.summary(),
                "net/ipv4/conf/snnic0/arp_ignore 0 -> 8, net/ipv4/conf/snnic0/rp_filter 0 -> 1, \
                 net/ipv4/udp_early_demux 1 -> 0, net/ipv6/conf/snnic0/disable_ipv6 0 -> 1"
            );
            let during: Vec<String> = paths.iter().map(|p| sysctl(p)).collect();
            assert_eq!(during, ["8", "1", "0", "1"]);
            assert_eq!(sysctl("/proc/sys/net/ipv4/conf/all/rp_filter"), all_before);

            assert_eq!(
                probe.probe(Duration::from_millis(500)),
                NOTHING,
                "the kernel answered on the NIC despite {}",
                guard.summary()
            );
            // The TAP still works.
            let via_tap = Endpoints {
                src_mac: EthernetAddress(GATEWAY_MAC),
                dst_mac: EthernetAddress(TAP_MAC),
                src_ip: GATEWAY,
                dst_ip: ADDRESS,
            };
            send_all(&mut tap, &[udp_frame(via_tap, 50001, 40001, b"tap")]);
            probe.connected.set_nonblocking(false).unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(probe.connected.recv(&mut buf).unwrap(), 3);
            probe.connected.set_nonblocking(true).unwrap();

            // A second guard finds nothing to change; dropping it restores
            // nothing.
            let second = isolate_from_kernel(NIC, None).unwrap_or_else(|e| panic!("{e}"));
            assert!(second.changes().is_empty(), "{}", second.summary());
            drop(second);

            drop(guard);
            let after: Vec<String> = paths.iter().map(|p| sysctl(p)).collect();
            assert_eq!(after, before);
            assert_eq!(probe.probe(Duration::from_secs(2)), EVERYTHING);
        })
    }

    /// Loose reverse-path filtering (`conf.all.rp_filter = 2`, Ubuntu's
    /// default) makes the NIC's own value 1 ineffective once the NIC has an
    /// address: the guard lowers `all` to 1 and keeps every other interface
    /// loose.
    #[test]
    fn guard_overrides_loose_rp_filter() {
        in_fresh_netns(|| {
            let mut tap = TapDevice::create(TAP).unwrap_or_else(|e| panic!("{e}"));
            configure(&tap_setup()).unwrap_or_else(|e| panic!("{e}"));
            let mut probe = Probe::new(&mut tap);
            ip(&["addr", "add", "10.77.0.1/24", "dev", NIC]);
            let conf = "/proc/sys/net/ipv4/conf";
            set_sysctl(&format!("{conf}/all/rp_filter"), "2");
            set_sysctl(&format!("{conf}/{NIC}/rp_filter"), "1");
            set_sysctl(&format!("{conf}/{NIC}/arp_ignore"), "8");
            set_sysctl("/proc/sys/net/ipv4/udp_early_demux", "0");
            // Per-interface strict mode alone does not do: max(all, nic) = 2.
            let leaked = probe.probe(Duration::from_secs(2));
            assert!(
                leaked.echo_requests_in == 2 && leaked.udp && leaked.tcp_segments_in == 1,
                "{leaked:?}"
            );

            let others = ["lo", TAP, PEER, "default"];
            let values = |names: &[&str]| -> Vec<String> {
                names
                    .iter()
                    .map(|n| sysctl(&format!("{conf}/{n}/rp_filter")))
                    .collect()
            };
            let before = values(&others);
            assert_eq!(before, ["0", "0", "0", "0"]);

            let guard = isolate_from_kernel(NIC, None).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(sysctl(&format!("{conf}/all/rp_filter")), "1");
            // Every other interface stays loose: max(1, 2).
            assert_eq!(values(&others), ["2", "2", "2", "2"]);
            assert_eq!(
                guard.changes().last().map(ToString::to_string).as_deref(),
                Some("net/ipv6/conf/snnic0/disable_ipv6 0 -> 1")
            );
            assert!(
                guard
                    .summary()
                    .contains("net/ipv4/conf/all/rp_filter 2 -> 1"),
                "{}",
                guard.summary()
            );
            assert_eq!(probe.probe(Duration::from_millis(500)), NOTHING);

            drop(guard);
            assert_eq!(sysctl(&format!("{conf}/all/rp_filter")), "2");
            assert_eq!(values(&others), before);
            assert_eq!(sysctl(&format!("{conf}/{NIC}/rp_filter")), "1");
        })
    }

    /// With a journal, each change is on disk before it is made; a journal
    /// left as a crash leaves it (the file, the sysctls still changed, nobody
    /// holding the lock) restores the originals, but leaves alone a value
    /// someone changed since.
    #[test]
    fn the_journal_outlives_a_crash() {
        use crate::kernel::journal::{self, netns_inode, NicJournal, NicRecord};
        in_fresh_netns(|| {
            ip(&["link", "add", NIC, "type", "veth", "peer", "name", PEER]);
            let paths = [
                format!("/proc/sys/net/ipv4/conf/{NIC}/arp_ignore"),
                format!("/proc/sys/net/ipv4/conf/{NIC}/rp_filter"),
                "/proc/sys/net/ipv4/udp_early_demux".to_owned(),
                format!("/proc/sys/net/ipv6/conf/{NIC}/disable_ipv6"),
            ];
            let values = || -> Vec<String> { paths.iter().map(|p| sysctl(p)).collect() };
            let before = values();
            assert_eq!(before, ["0", "0", "1", "0"]);

            let dir = tempfile::tempdir().unwrap();
            let (journal, left) = NicJournal::claim(dir.path(), NIC).unwrap();
            assert_eq!(left, None);
            let guard =
                isolate_from_kernel(NIC, Some(journal.clone())).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(guard.changes().len(), 4, "{}", guard.summary());
            let file = journal.path().to_owned();
            let on_disk: NicRecord = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
            assert_eq!(on_disk.sysctls, guard.changes());
            assert_eq!(on_disk.nic, NIC);
            assert_eq!(on_disk.netns, netns_inode().unwrap());
            assert_eq!(values(), ["8", "1", "0", "1"]);

            // The crash: the same file where nobody holds the lock.
            let crashed = tempfile::tempdir().unwrap();
            fs::copy(&file, crashed.path().join(file.file_name().unwrap())).unwrap();
            let (recovery, left) = NicJournal::claim(crashed.path(), NIC).unwrap();
            assert_eq!(left.unwrap().sysctls, guard.changes());
            // Someone else changed arp_ignore meanwhile.
            set_sysctl(&paths[0], "2");
            let report = journal::restore(&recovery);
            assert!(report.failed.is_empty(), "{report:?}");
            assert_eq!(
                report.done,
                [
                    "net/ipv6/conf/snnic0/disable_ipv6 1 -> 0 (restored)",
                    "net/ipv4/udp_early_demux 0 -> 1 (restored)",
                    "net/ipv4/conf/snnic0/rp_filter 1 -> 0 (restored)",
                    "net/ipv4/conf/snnic0/arp_ignore left at 2: changed since shardnet set 8 \
                     (the original was 0)",
                ]
            );
            assert_eq!(values(), ["2", "0", "1", "0"]);
            assert!(
                !recovery.path().exists(),
                "the journal is removed once done"
            );

            // The guard's own stop finds nothing of its own left to undo,
            // and removes its journal too.
            drop(guard);
            assert_eq!(values(), ["2", "0", "1", "0"]);
            assert!(!file.exists());
            // A journal whose change was recorded but never made (a crash
            // between the two): already right.
            set_sysctl(&paths[0], "0");
            let unmade = SysctlChange {
                path: paths[0].clone(),
                old: "0".to_owned(),
                new: "8".to_owned(),
            };
            journal.record_sysctl(&unmade).unwrap();
            let report = journal::restore(&journal);
            assert_eq!(
                report.done,
                ["net/ipv4/conf/snnic0/arp_ignore is 0 already"]
            );
            assert!(!file.exists());
        })
    }

    #[test]
    fn guard_errors() {
        in_fresh_netns(|| {
            let e = isolate_from_kernel("snmissing0", None).unwrap_err();
            assert!(matches!(e, NetifError::NotFound { .. }), "{e:?}");
            assert!(e.to_string().contains("snmissing0"), "{e}");
            assert!(matches!(
                isolate_from_kernel("..", None),
                Err(NetifError::InvalidName { .. })
            ));
            assert!(matches!(
                isolate_from_kernel("all/../x", None),
                Err(NetifError::InvalidName { .. })
            ));
            // The interface vanishing under the guard: dropping it is quiet.
            ip(&["link", "add", NIC, "type", "veth", "peer", "name", PEER]);
            let guard = isolate_from_kernel(NIC, None).unwrap_or_else(|e| panic!("{e}"));
            ip(&["link", "del", NIC]);
            drop(guard);
            assert_eq!(sysctl("/proc/sys/net/ipv4/udp_early_demux"), "1");
        })
    }
}
