//! Services that run inside the stack.
//!
//! Each worker holds its own instances (no sharing, no locks). TCP services
//! are driven through the callbacks of [`tcp`]. UDP services see
//! one datagram at a time and answer in place: the reply reuses the request's
//! buffer, so a UDP echo allocates nothing and copies nothing.

use crate::config::ServiceKind;

pub mod http;
#[cfg(test)]
mod mock;
pub mod tcp;

pub use http::Http;
pub use tcp::{TcpDiscard, TcpEcho, TcpIo, TcpService, TcpServices};

/// What a UDP service does with a datagram it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpAction {
    /// Send the payload back, unchanged, to where it came from. The stack swaps
    /// the addresses and ports in place; the checksums stay valid.
    EchoBack,
    /// Keep nothing, answer nothing.
    Consume,
}

/// A per-worker UDP service.
pub trait UdpService {
    /// Handle one datagram's payload.
    fn on_datagram(&mut self, payload: &[u8]) -> UdpAction;
}

/// RFC 862 echo: every datagram comes back byte for byte.
#[derive(Debug, Default)]
pub struct Echo {
    /// Payload bytes echoed.
    pub bytes: u64,
}

impl UdpService for Echo {
    #[inline]
    fn on_datagram(&mut self, payload: &[u8]) -> UdpAction {
        self.bytes += payload.len() as u64;
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
    fn on_datagram(&mut self, payload: &[u8]) -> UdpAction {
        self.bytes += payload.len() as u64;
        UdpAction::Consume
    }
}

/// The UDP service instances of one worker, dispatched by kind without a
/// virtual call.
#[derive(Debug, Default)]
pub struct UdpServices {
    /// The echo instance.
    pub echo: Echo,
    /// The discard instance.
    pub discard: Discard,
}

impl UdpServices {
    /// Whether the service of `kind` sends datagrams back (echo does,
    /// discard does not): the stack applies loop protection to those.
    #[inline]
    pub fn answers(kind: ServiceKind) -> bool {
        matches!(kind, ServiceKind::Echo)
    }

    /// Hand a datagram to the service of `kind`; `None` if `kind` has no UDP side.
    #[inline]
    pub fn dispatch(&mut self, kind: ServiceKind, payload: &[u8]) -> Option<UdpAction> {
        match kind {
            ServiceKind::Echo => Some(self.echo.on_datagram(payload)),
            ServiceKind::Discard => Some(self.discard.on_datagram(payload)),
            ServiceKind::Http | ServiceKind::App => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_and_discard() {
        let mut services = UdpServices::default();
        assert_eq!(
            services.dispatch(ServiceKind::Echo, b"hello"),
            Some(UdpAction::EchoBack)
        );
        assert_eq!(
            services.dispatch(ServiceKind::Discard, b"abc"),
            Some(UdpAction::Consume)
        );
        assert_eq!(services.dispatch(ServiceKind::Http, b"GET /"), None);
        assert_eq!(services.echo.bytes, 5);
        assert_eq!(services.discard.bytes, 3);
    }
}
