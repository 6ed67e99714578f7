//! The client side of the service API: an application that runs inside a
//! worker and opens connections and sends datagrams itself (the load
//! generator in `bench/`, tests), as Seastar's seawreck runs on Seastar.
//!
//! Each worker has at most one [`App`] instance (per core, no sharing). The
//! worker calls [`App::poll`] once per poll round with an [`AppIo`] handle,
//! through which the app opens TCP connections ([`AppIo::connect`]), sends
//! UDP datagrams ([`AppIo::send_udp`]) and asks for a connection to send on
//! when its own schedule says so ([`AppIo::wake`]). Connections it opens are
//! driven by its [`TcpService`] callbacks, as the built-in services' are;
//! datagrams to the UDP ports it bound come to [`App::on_datagram`].
//!
//! Source ports come from the worker's [`crate::rss::PortPicker`]: the
//! replies of every connection and flow the app opens hash back to the
//! worker that opened it, so the app sees every packet of its flows on its
//! own core, with nothing shared.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::rss::PortPickError;
use crate::tcp::service::TcpService;

/// A per-worker client application.
pub trait App: TcpService + Send {
    /// One poll round at monotonic time `now_ns`: open connections and send
    /// datagrams through `io`. Called every round, so it must be cheap when
    /// there is nothing to do.
    fn poll(&mut self, now_ns: u64, io: &mut dyn AppIo);

    /// A datagram from `from` to our UDP port `local_port` (one the app bound
    /// with [`AppIo::bind_udp`]).
    fn on_datagram(&mut self, _from: SocketAddrV4, _local_port: u16, _payload: &[u8]) {}

    /// An active open made in [`App::poll`] could not start (no connection
    /// was created, no callback will come for it).
    fn on_connect_error(&mut self, _remote: SocketAddrV4, _error: ConnectError) {}

    /// The worker is stopping: last chance to publish results. Connections
    /// are reset right after.
    fn on_stop(&mut self) {}
}

/// What an [`App`] can do during [`App::poll`].
pub trait AppIo {
    /// Our address.
    fn local_ip(&self) -> Ipv4Addr;

    /// Open a TCP connection to `remote`, from a source port whose replies
    /// come to this worker. The SYN leaves at the end of the poll round;
    /// the app's [`TcpService::on_accepted`] is called once it is
    /// established. Returns the source port.
    fn connect(&mut self, remote: SocketAddrV4) -> Result<u16, ConnectError>;

    /// Offer our connection from `local_port` to `remote` to the app as
    /// writable ([`TcpService::on_writable`]) at the end of this poll round,
    /// whether or not send space was freed: how an app that paces itself
    /// (a fixed request or bit rate) sends when its time comes rather than
    /// when the peer's last segment arrived. Nothing happens if there is no
    /// such established connection by then (one [`AppIo::connect`]ed in
    /// the same round is not: its SYN leaves after the wakes), or our side
    /// of it is closed.
    fn wake(&mut self, local_port: u16, remote: SocketAddrV4);

    /// Bind a UDP source port for datagrams to `remote`, whose replies come
    /// to this worker; datagrams to it go to [`App::on_datagram`].
    fn bind_udp(&mut self, remote: SocketAddrV4) -> Result<u16, ConnectError>;

    /// Send `payload` from our UDP port `local_port` to `remote`.
    fn send_udp(
        &mut self,
        local_port: u16,
        remote: SocketAddrV4,
        payload: &[u8],
    ) -> Result<(), ConnectError>;
}

/// Why a connection could not be opened or a datagram sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The destination is off our subnet and there is no gateway.
    #[error("{0} is not on our subnet and no gateway is configured")]
    NoRoute(Ipv4Addr),
    /// The next hop's MAC is not known yet; an ARP request was sent. Try
    /// again shortly.
    #[error("the MAC of {0} is not known yet (ARP request sent)")]
    Resolving(Ipv4Addr),
    /// No source port: see the reason.
    #[error(transparent)]
    Ports(#[from] PortPickError),
    /// This worker has no source ports to give (no port range set up).
    #[error("this worker has no source port range for active opens")]
    NoPortRange,
    /// The worker's connection table is full.
    #[error("the worker's connection table is full")]
    TableFull,
    /// No buffer for the frame.
    #[error("no buffer left in the worker's pool")]
    NoBuffer,
    /// The payload does not fit one frame.
    #[error("a {0}-byte UDP payload does not fit one frame")]
    TooLong(usize),
}
