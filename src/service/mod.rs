//! Services that run inside the stack, and how a program registers its own.
//!
//! A service is named in the rules (`service = "name"`) and has one instance
//! per worker, built on the worker's own thread by a factory the program
//! registered ([`Registry`]): nothing is shared between workers and an
//! instance need not be `Send`. The built-in services (`echo`, `discard`,
//! `http`) are registered the same way, first, by [`Registry::new`].
//!
//! - TCP services implement [`TcpService`]: the engine calls them on a
//!   connection's events through a [`TcpIo`] handle ([`crate::tcp::service`]
//!   has the whole contract).
//! - UDP services implement [`UdpService`]: one datagram at a time, with its
//!   addresses. The answer to the sender can be built in place
//!   ([`UdpAction::EchoBack`]: the reply reuses the request's buffer, so a UDP
//!   echo allocates nothing and copies nothing), and any datagram can be sent
//!   through [`UdpIo::send_to`].
//!
//! A worker's instances are kept in [`Services`], indexed by [`ServiceId`]
//! (one bounds-checked load per event, and one virtual call).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::app::ConnectError;
use crate::config::Config;
pub use crate::config::{CatalogError, ServiceCatalog, ServiceId};
use crate::counters::{DropReason, WorkerCounters};
use crate::rt::net::{AsyncBridge, Reactor};
use crate::rt::udp::Delivery;

pub mod http;
#[cfg(test)]
mod mock;
pub mod tcp;

pub use http::Http;
pub use tcp::{Closed, ConnId, NullService, ServiceSet, TcpDiscard, TcpEcho, TcpIo, TcpService};

/// What a UDP service does with a datagram it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpAction {
    /// Send the payload back, unchanged, to where it came from. The stack swaps
    /// the addresses and ports in place; the checksums stay valid.
    ///
    /// Loop protection: every UDP service but `discard` is taken to answer,
    /// so none is handed a datagram from source port 0, from a port below
    /// 1024, or from a port whose rule names such a service (inetd's
    /// rules; counted as `source_port_zero` and `loop_protection` drops).
    EchoBack,
    /// Keep nothing, answer nothing (the service may have sent datagrams of
    /// its own with [`UdpIo::send_to`]).
    Consume,
}

/// A datagram as a UDP service receives it.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    /// The sender's address and port.
    pub from: SocketAddrV4,
    /// Our address and the port it was sent to.
    pub to: SocketAddrV4,
    /// The payload.
    pub payload: &'a [u8],
}

/// What a UDP service can do while it handles a datagram.
pub trait UdpIo {
    /// Send `payload` from our port `local_port` to `to`. The frame leaves
    /// with the worker's next TX burst.
    ///
    /// # Errors
    /// No route or MAC for `to` yet (an ARP request is sent), no buffer,
    /// or a payload over one frame.
    fn send_to(
        &mut self,
        local_port: u16,
        to: SocketAddrV4,
        payload: &[u8],
    ) -> Result<(), ConnectError>;
    /// The worker's clock, in nanoseconds.
    fn now(&self) -> u64;
}

/// A per-worker UDP service.
pub trait UdpService: std::any::Any {
    /// Handle one datagram.
    fn on_datagram(&mut self, datagram: &Datagram<'_>, io: &mut dyn UdpIo) -> UdpAction;
}

/// RFC 862 echo: every datagram comes back byte for byte.
#[derive(Debug, Default)]
pub struct Echo {
    /// Payload bytes echoed.
    pub bytes: u64,
}

impl UdpService for Echo {
    #[inline]
    fn on_datagram(&mut self, datagram: &Datagram<'_>, _io: &mut dyn UdpIo) -> UdpAction {
        self.bytes += datagram.payload.len() as u64;
        UdpAction::EchoBack
    }
}

/// RFC 863 discard: everything is read and thrown away.
#[derive(Debug, Default)]
pub struct Discard {
    /// Payload bytes discarded.
    pub bytes: u64,
}

impl UdpService for Discard {
    #[inline]
    fn on_datagram(&mut self, datagram: &Datagram<'_>, _io: &mut dyn UdpIo) -> UdpAction {
        self.bytes += datagram.payload.len() as u64;
        UdpAction::Consume
    }
}

/// The [`UdpService`] that hands a worker's datagrams for an async service
/// to its [`crate::rt::UdpSocket`]s ([`crate::rt::udp`]): it copies each
/// into the receive queue of the socket bound to its port and wakes the
/// reader; a full queue or an unbound port drops it, counted as
/// `udp_socket_overflow` or `udp_no_socket`. It answers nothing in place
/// (what the tasks send goes through the outbox), but loop protection
/// applies, as to any UDP service that may answer.
pub struct AsyncUdpBridge {
    reactor: Rc<RefCell<Reactor>>,
    counters: Arc<WorkerCounters>,
}

impl fmt::Debug for AsyncUdpBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncUdpBridge").finish_non_exhaustive()
    }
}

impl UdpService for AsyncUdpBridge {
    fn on_datagram(&mut self, datagram: &Datagram<'_>, _io: &mut dyn UdpIo) -> UdpAction {
        let delivery = self.reactor.borrow_mut().udp_mut().deliver(
            datagram.to.port(),
            datagram.from,
            datagram.payload,
        );
        match delivery {
            Delivery::Queued => {}
            Delivery::Overflow => self.counters.count_drop(DropReason::UdpSocketOverflow),
            Delivery::NoSocket => self.counters.count_drop(DropReason::UdpNoSocket),
        }
        UdpAction::Consume
    }
}

/// What a service factory is told about the worker it builds an instance
/// for.
#[derive(Clone, Copy, Debug)]
pub struct WorkerInfo<'a> {
    /// The worker's number (its queue pair), from 0.
    pub id: usize,
    /// How many workers there are.
    pub workers: usize,
    /// The configuration the process started with.
    pub config: &'a Config,
    /// The worker's counters (a service may publish its own counts in the
    /// ones made for it, as `http` does its timeouts).
    pub counters: &'a Arc<crate::counters::WorkerCounters>,
    /// The rules in force, kept current by reloads (`None` where no
    /// control plane runs, as in unit tests): what [`ports`](Self::ports)
    /// says at start, a service may look up later here.
    pub rules: Option<&'a Arc<crate::rules::SharedRules>>,
}

impl WorkerInfo<'_> {
    /// The ports of `protocol` whose flows the rules give the service
    /// `name` ([`Config::service_ports`]): where an async service binds
    /// its listeners. Rules reloaded later may route other ports to it;
    /// their connections are reset (and counted) on a worker where no
    /// task listens.
    pub fn ports(&self, protocol: crate::config::Protocol, name: &str) -> Vec<u16> {
        self.config.service_ports(protocol, name)
    }
}

/// Builds a worker's instance of a TCP service.
pub type TcpFactory = Arc<dyn Fn(&WorkerInfo<'_>) -> Box<dyn TcpService> + Send + Sync>;

/// A worker's async main task, as [`Registry::add_async`] keeps it.
pub type AsyncMain = Pin<Box<dyn Future<Output = ()>>>;

/// Builds a worker's main task of an async service.
pub type AsyncFactory = Arc<dyn Fn(&WorkerInfo<'_>) -> AsyncMain + Send + Sync>;

/// Builds a worker's instance of a UDP service.
pub type UdpFactory = Arc<dyn Fn(&WorkerInfo<'_>) -> Box<dyn UdpService> + Send + Sync>;

struct Entry {
    name: String,
    tcp: Option<TcpFactory>,
    udp: Option<UdpFactory>,
    main: Option<AsyncFactory>,
}

/// The services of a process, by name: the built-ins, then the program's,
/// with the factories that build each worker's instances.
pub struct Registry {
    entries: Vec<Entry>,
    catalog: ServiceCatalog,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("services", &self.catalog)
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// The built-in services: `echo` and `discard` (TCP and UDP) and `http`
    /// (TCP, answering with the config's `[http]` body and timeouts).
    pub fn new() -> Registry {
        let tcp_echo: TcpFactory = Arc::new(|_: &WorkerInfo<'_>| Box::new(TcpEcho::default()));
        let udp_echo: UdpFactory = Arc::new(|_: &WorkerInfo<'_>| Box::new(Echo::default()));
        let tcp_discard: TcpFactory =
            Arc::new(|_: &WorkerInfo<'_>| Box::new(TcpDiscard::default()));
        let udp_discard: UdpFactory = Arc::new(|_: &WorkerInfo<'_>| Box::new(Discard::default()));
        let http: TcpFactory = Arc::new(|worker: &WorkerInfo<'_>| {
            let mut http = Http::from_settings(&worker.config.http);
            http.set_counters(worker.counters.clone());
            Box::new(http)
        });
        Registry {
            entries: vec![
                Entry {
                    name: "echo".into(),
                    tcp: Some(tcp_echo),
                    udp: Some(udp_echo),
                    main: None,
                },
                Entry {
                    name: "discard".into(),
                    tcp: Some(tcp_discard),
                    udp: Some(udp_discard),
                    main: None,
                },
                Entry {
                    name: "http".into(),
                    tcp: Some(http),
                    udp: None,
                    main: None,
                },
            ],
            catalog: ServiceCatalog::builtin(),
        }
    }

    /// Register `name` with a TCP factory, a UDP factory, or both.
    ///
    /// # Errors
    /// The name is taken, reserved or malformed, or neither factory is given.
    pub fn add(
        &mut self,
        name: &str,
        tcp: Option<TcpFactory>,
        udp: Option<UdpFactory>,
    ) -> Result<ServiceId, CatalogError> {
        let id = self.catalog.add(name, tcp.is_some(), udp.is_some())?;
        debug_assert_eq!(id.index(), self.entries.len());
        self.entries.push(Entry {
            name: name.to_owned(),
            tcp,
            udp,
            main: None,
        });
        Ok(id)
    }

    /// Register `name` as an async service, for TCP and UDP rules: on each
    /// worker, at its first poll round, `main` is called and the future it
    /// returns is spawned on the worker's executor, once. It typically binds
    /// a [`crate::rt::TcpListener`] on the TCP ports the rules give `name`
    /// and loops on `accept`, spawning a task per connection
    /// ([`crate::rt::spawn_local`]), and a [`crate::rt::UdpSocket`] on its
    /// UDP ports. The connections the rules route to `name` reach the
    /// listeners of their port ([`crate::rt::net`]), those on a port no
    /// task listens on are reset and counted; the datagrams reach the
    /// socket bound to their port ([`crate::rt::udp`]), or are dropped and
    /// counted (`udp_no_socket`).
    ///
    /// # Errors
    /// The name is taken, reserved or malformed.
    pub fn add_async<F, Fut>(&mut self, name: &str, main: F) -> Result<ServiceId, CatalogError>
    where
        F: Fn(&WorkerInfo<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let id = self.catalog.add(name, true, true)?;
        debug_assert_eq!(id.index(), self.entries.len());
        let main: AsyncFactory = Arc::new(move |worker: &WorkerInfo<'_>| Box::pin(main(worker)));
        self.entries.push(Entry {
            name: name.to_owned(),
            tcp: None,
            udp: None,
            main: Some(main),
        });
        Ok(id)
    }

    /// The names rules may use, with their protocols.
    pub fn catalog(&self) -> &ServiceCatalog {
        &self.catalog
    }

    /// The registered names, in id order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Build one worker's instances, on that worker's thread.
    pub fn build(&self, worker: &WorkerInfo<'_>) -> Services {
        let has_async = self.entries.iter().any(|e| e.main.is_some());
        let reactor = has_async.then(|| {
            Rc::new(RefCell::new(Reactor::with_counters(
                worker.counters.clone(),
            )))
        });
        // Active opens of the async services go to the first one's bridge
        // (they all share the reactor).
        let dialer = self
            .entries
            .iter()
            .position(|e| e.main.is_some())
            .map(|i| self.catalog.ids()[i]);
        let mains: Vec<AsyncMain> = self
            .entries
            .iter()
            .filter_map(|e| e.main.as_ref().map(|f| f(worker)))
            .collect();
        Services {
            tcp: self
                .entries
                .iter()
                .map(|e| match (&e.tcp, &reactor) {
                    (Some(f), _) => Some(f(worker)),
                    (None, Some(reactor)) if e.main.is_some() => {
                        Some(Box::new(AsyncBridge::new(reactor.clone())) as Box<dyn TcpService>)
                    }
                    _ => None,
                })
                .collect(),
            udp: self
                .entries
                .iter()
                .map(|e| match (&e.udp, &reactor) {
                    (Some(f), _) => Some(UdpSlot::new(f(worker))),
                    (None, Some(reactor)) if e.main.is_some() => {
                        Some(UdpSlot::Other(Box::new(AsyncUdpBridge {
                            reactor: reactor.clone(),
                            counters: worker.counters.clone(),
                        })))
                    }
                    _ => None,
                })
                .collect(),
            app: None,
            null: NullService,
            tasks: reactor.zip(dialer).map(|(reactor, dialer)| AsyncParts {
                reactor,
                mains,
                dialer,
            }),
        }
    }
}

/// A worker's async services before its first round: the reactor their
/// bridges share and their main tasks, not yet spawned.
pub struct AsyncParts {
    /// The reactor of the worker's async services.
    pub reactor: Rc<RefCell<Reactor>>,
    /// Their main tasks, in registration order.
    pub mains: Vec<AsyncMain>,
    /// The service whose bridge drives the tasks' active opens
    /// ([`crate::rt::TcpStream::connect`]): any async service's would do,
    /// as their bridges share the reactor.
    pub dialer: ServiceId,
}

impl fmt::Debug for AsyncParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncParts")
            .field("mains", &self.mains.len())
            .finish()
    }
}

/// One worker's service instances, by [`ServiceId`], and the embedding
/// application's ([`crate::app::App`]) if it runs one.
pub struct Services {
    tcp: Vec<Option<Box<dyn TcpService>>>,
    udp: Vec<Option<UdpSlot>>,
    app: Option<Box<dyn crate::app::App>>,
    null: NullService,
    tasks: Option<AsyncParts>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("tcp", &self.tcp.iter().filter(|s| s.is_some()).count())
            .field("udp", &self.udp.iter().filter(|s| s.is_some()).count())
            .field("app", &self.app.is_some())
            .finish()
    }
}

impl Services {
    /// The built-in services with their defaults, `http` answering with
    /// `http_body` (tests, benchmarks).
    pub fn builtin(http_body: impl AsRef<[u8]>) -> Services {
        Services {
            tcp: vec![
                Some(Box::new(TcpEcho::default())),
                Some(Box::new(TcpDiscard::default())),
                Some(Box::new(Http::new(http_body))),
            ],
            udp: vec![
                Some(UdpSlot::Echo(Echo::default())),
                Some(UdpSlot::Discard(Discard::default())),
                None,
            ],
            app: None,
            null: NullService,
            tasks: None,
        }
    }

    /// Take the async services' reactor and main tasks, if there are any
    /// (the stack spawns them on its executor).
    pub fn take_async(&mut self) -> Option<AsyncParts> {
        self.tasks.take()
    }

    /// Replace the instance of `id` for TCP (tests).
    pub fn set_tcp(&mut self, id: ServiceId, service: Box<dyn TcpService>) {
        let i = id.index();
        if self.tcp.len() <= i {
            self.tcp.resize_with(i + 1, || None);
        }
        self.tcp[i] = Some(service);
    }

    /// The application's instance, if any.
    pub fn app(&self) -> Option<&dyn crate::app::App> {
        self.app.as_deref()
    }

    /// The application's instance, if any, mutably.
    pub fn app_mut(&mut self) -> Option<&mut (dyn crate::app::App + 'static)> {
        self.app.as_deref_mut()
    }

    /// Run `app` on this worker ([`ServiceId::APP`] connections go to it).
    pub fn set_app(&mut self, app: Box<dyn crate::app::App>) {
        self.app = Some(app);
    }

    /// Take the application out (the worker is stopping).
    pub fn take_app(&mut self) -> Option<Box<dyn crate::app::App>> {
        self.app.take()
    }

    /// The TCP instance of `id` as its concrete type, if it is one (tests,
    /// benchmarks).
    pub fn tcp_as<T: TcpService>(&self, id: ServiceId) -> Option<&T> {
        let service: &dyn std::any::Any = &**self.tcp.get(id.index())?.as_ref()?;
        service.downcast_ref()
    }

    /// The UDP instance of `id` as its concrete type, if it is one.
    pub fn udp_as<T: UdpService>(&self, id: ServiceId) -> Option<&T> {
        let service: &dyn std::any::Any = self.udp.get(id.index())?.as_ref()?.service();
        service.downcast_ref()
    }

    /// The UDP instance of `id`, if it runs over UDP.
    #[inline]
    pub fn udp(&mut self, id: ServiceId) -> Option<&mut dyn UdpService> {
        Some(self.udp.get_mut(id.index())?.as_mut()?.service_mut())
    }

    /// Hand `datagram` to the UDP instance of `id`, if it runs over UDP.
    /// The built-in echo and discard are called directly (inlined: for
    /// them the datagram and the I/O handle are never built), any other
    /// service through its trait object. `make` builds both when needed.
    #[inline]
    pub(crate) fn on_datagram<'d, Io: UdpIo>(
        &mut self,
        id: ServiceId,
        make: impl FnOnce() -> (Datagram<'d>, Io),
    ) -> Option<UdpAction> {
        let slot = match self.udp.get_mut(id.index()) {
            Some(Some(slot)) => slot,
            _ => return None,
        };
        let (datagram, mut io) = make();
        Some(match slot {
            UdpSlot::Echo(echo) => echo.on_datagram(&datagram, &mut io),
            UdpSlot::Discard(discard) => discard.on_datagram(&datagram, &mut io),
            UdpSlot::Other(other) => other.on_datagram(&datagram, &mut io),
        })
    }
}

/// One worker's instance of a UDP service: the built-in echo and discard
/// held as themselves, so that the stack calls them without a dynamic call
/// (enum dispatch, as smoltcp's sockets), and any other behind its trait.
enum UdpSlot {
    Echo(Echo),
    Discard(Discard),
    Other(Box<dyn UdpService>),
}

impl UdpSlot {
    /// The slot for what a factory made: a built-in is taken out of its box.
    fn new(service: Box<dyn UdpService>) -> UdpSlot {
        let any: &dyn std::any::Any = &*service;
        if !any.is::<Echo>() && !any.is::<Discard>() {
            return UdpSlot::Other(service);
        }
        let any: Box<dyn std::any::Any> = service;
        match any.downcast::<Echo>() {
            Ok(echo) => UdpSlot::Echo(*echo),
            Err(any) => match any.downcast::<Discard>() {
                Ok(discard) => UdpSlot::Discard(*discard),
                Err(_) => unreachable!("an echo or a discard, checked above"),
            },
        }
    }

    /// The instance, whichever kind.
    fn service(&self) -> &dyn UdpService {
        match self {
            UdpSlot::Echo(echo) => echo,
            UdpSlot::Discard(discard) => discard,
            UdpSlot::Other(other) => &**other,
        }
    }

    /// The instance, whichever kind, mutably.
    fn service_mut(&mut self) -> &mut dyn UdpService {
        match self {
            UdpSlot::Echo(echo) => echo,
            UdpSlot::Discard(discard) => discard,
            UdpSlot::Other(other) => &mut **other,
        }
    }
}

impl ServiceSet for Services {
    #[inline]
    fn tcp(&mut self, id: ServiceId) -> &mut dyn TcpService {
        if id == ServiceId::APP {
            return match &mut self.app {
                Some(app) => &mut **app,
                None => &mut self.null,
            };
        }
        match self.tcp.get_mut(id.index()) {
            Some(Some(service)) => &mut **service,
            _ => &mut self.null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoIo;
    impl UdpIo for NoIo {
        fn send_to(&mut self, _: u16, _: SocketAddrV4, _: &[u8]) -> Result<(), ConnectError> {
            Err(ConnectError::NoBuffer)
        }
        fn now(&self) -> u64 {
            0
        }
    }

    fn datagram(payload: &[u8]) -> Datagram<'_> {
        let a = SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 0, 2), 5000);
        let b = SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 0, 1), 7);
        Datagram {
            from: a,
            to: b,
            payload,
        }
    }

    #[test]
    fn builtins_are_registered_like_any_service() {
        let mut services = Services::builtin(b"hi\n");
        let echo = services.udp(ServiceId::ECHO).unwrap();
        assert_eq!(
            echo.on_datagram(&datagram(b"hello"), &mut NoIo),
            UdpAction::EchoBack
        );
        let discard = services.udp(ServiceId::DISCARD).unwrap();
        assert_eq!(
            discard.on_datagram(&datagram(b"abc"), &mut NoIo),
            UdpAction::Consume
        );
        assert!(services.udp(ServiceId::HTTP).is_none());
        let registry = Registry::new();
        let names: Vec<&str> = registry.names().collect();
        assert_eq!(names, ["echo", "discard", "http"]);
    }

    /// One worker's services from `registry`, with the worker's counters.
    fn build(registry: &Registry) -> (Services, Arc<crate::counters::WorkerCounters>) {
        let config = crate::testing::lone_config();
        let counters = Arc::new(crate::counters::WorkerCounters::default());
        let services = registry.build(&WorkerInfo {
            id: 0,
            workers: 1,
            config: &config,
            counters: &counters,
            rules: None,
        });
        (services, counters)
    }

    #[test]
    fn the_builtin_udp_services_are_held_as_themselves_and_others_boxed() {
        struct Mine;
        impl UdpService for Mine {
            fn on_datagram(&mut self, _: &Datagram<'_>, _: &mut dyn UdpIo) -> UdpAction {
                UdpAction::Consume
            }
        }
        let mut registry = Registry::new();
        let factory: UdpFactory = Arc::new(|_: &WorkerInfo<'_>| Box::new(Mine));
        let mine = registry.add("mine", None, Some(factory)).unwrap();
        let (mut services, _) = build(&registry);
        let kind = |services: &Services, id: ServiceId| match &services.udp[id.index()] {
            Some(UdpSlot::Echo(_)) => "echo",
            Some(UdpSlot::Discard(_)) => "discard",
            Some(UdpSlot::Other(_)) => "other",
            None => "none",
        };
        assert_eq!(kind(&services, ServiceId::ECHO), "echo");
        assert_eq!(kind(&services, ServiceId::DISCARD), "discard");
        assert_eq!(kind(&services, mine), "other");
        assert_eq!(kind(&services, ServiceId::HTTP), "none");
        // Called through the one entry the stack uses, each answers as itself.
        let call = |services: &mut Services, id: ServiceId, payload: &'static [u8]| {
            services.on_datagram(id, || (datagram(payload), NoIo))
        };
        assert_eq!(
            call(&mut services, ServiceId::ECHO, b"hello"),
            Some(UdpAction::EchoBack)
        );
        assert_eq!(
            call(&mut services, ServiceId::DISCARD, b"abc"),
            Some(UdpAction::Consume)
        );
        assert_eq!(call(&mut services, mine, b"x"), Some(UdpAction::Consume));
        assert_eq!(call(&mut services, ServiceId::HTTP, b"x"), None);
        assert_eq!(services.udp_as::<Echo>(ServiceId::ECHO).unwrap().bytes, 5);
        assert_eq!(
            services
                .udp_as::<Discard>(ServiceId::DISCARD)
                .unwrap()
                .bytes,
            3
        );
        assert!(services.udp_as::<Mine>(mine).is_some());
    }

    #[test]
    fn an_async_service_is_valid_for_tcp_and_udp_rules_with_one_registration() {
        let mut registry = Registry::new();
        let id = registry
            .add_async("app", |_: &WorkerInfo<'_>| async {})
            .unwrap();
        assert!(id.supports(crate::config::Protocol::Tcp));
        assert!(id.supports(crate::config::Protocol::Udp));
        let (mut services, counters) = build(&registry);
        // No socket is bound: the bridge drops and counts.
        let bridge = services.udp(id).expect("a UDP bridge");
        assert_eq!(
            bridge.on_datagram(&datagram(b"x"), &mut NoIo),
            UdpAction::Consume
        );
        assert_eq!(counters.drops_of(DropReason::UdpNoSocket), 1);
        assert!(services.take_async().is_some());
    }

    #[test]
    fn registered_services_get_ids_after_the_builtins() {
        struct Mine;
        impl TcpService for Mine {
            fn on_readable(&mut self, io: &mut dyn TcpIo) {
                io.send(b"mine");
            }
        }
        let mut registry = Registry::new();
        let id = registry
            .add(
                "mine",
                Some(Arc::new(|_: &WorkerInfo<'_>| Box::new(Mine))),
                None,
            )
            .unwrap();
        assert_eq!(id.index(), 3);
        assert!(id.supports(crate::config::Protocol::Tcp));
        assert!(!id.supports(crate::config::Protocol::Udp));
        assert_eq!(registry.catalog().get("mine"), Some(id));
        assert!(matches!(
            registry.add(
                "mine",
                Some(Arc::new(|_: &WorkerInfo<'_>| Box::new(Mine))),
                None
            ),
            Err(CatalogError::Duplicate(_))
        ));
        assert!(matches!(
            registry.add(
                "kernel",
                None,
                Some(Arc::new(|_: &WorkerInfo<'_>| Box::new(Echo::default())))
            ),
            Err(CatalogError::BadName(_))
        ));
        assert!(matches!(
            registry.add("none", None, None),
            Err(CatalogError::NoProtocol(_))
        ));
        let (mut services, _) = build(&registry);
        let mut io = mock::MockIo::default();
        io.rx.extend_from_slice(b"x");
        services.tcp(id).on_readable(&mut io);
        assert_eq!(io.tx, b"mine");
    }
}
