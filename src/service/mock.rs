//! A [`TcpIo`] for service tests: a `Vec`-backed receive side that can be
//! split into two slices anywhere (the ring's wrap), a send side with a
//! settable space limit, and the close/abort flags.

use super::tcp::{TcpIo, TcpService};

/// One mock connection.
#[derive(Debug)]
pub struct MockIo {
    /// Received bytes not yet consumed.
    pub rx: Vec<u8>,
    /// Length of the first slice [`TcpIo::recv_data`] returns (the wrap
    /// point); `usize::MAX` for no wrap.
    pub wrap_at: usize,
    /// Everything sent.
    pub tx: Vec<u8>,
    /// What [`TcpIo::send`] takes before the buffer is "full".
    pub space: usize,
    /// `close` was called (counted, to catch double closes).
    pub closes: u32,
    /// `abort` was called.
    pub aborted: bool,
    /// The peer's FIN arrived.
    pub peer_closed: bool,
    /// The service's state word.
    pub state: u64,
    /// The clock [`TcpIo::now`] reads.
    pub now: u64,
    /// The service timer's deadline ([`TcpIo::set_timer`]).
    pub timer: Option<u64>,
}

impl Default for MockIo {
    fn default() -> Self {
        MockIo {
            rx: Vec::new(),
            wrap_at: usize::MAX,
            tx: Vec::new(),
            space: usize::MAX,
            closes: 0,
            aborted: false,
            peer_closed: false,
            state: 0,
            now: 0,
            timer: None,
        }
    }
}

impl MockIo {
    /// A connection whose send buffer takes `space` bytes.
    pub fn with_space(space: usize) -> Self {
        MockIo {
            space,
            ..MockIo::default()
        }
    }

    /// Whether our side was closed.
    pub fn closed(&self) -> bool {
        self.closes > 0
    }

    /// Bytes arrive; the service is told.
    pub fn deliver(&mut self, service: &mut dyn TcpService, bytes: &[u8]) {
        assert!(!self.peer_closed, "bytes after the FIN");
        self.rx.extend_from_slice(bytes);
        service.on_readable(self);
    }

    /// The peer's FIN arrives; the service is told.
    pub fn fin(&mut self, service: &mut dyn TcpService) {
        self.peer_closed = true;
        service.on_peer_closed(self);
    }

    /// The clock moves to `now`; if the service timer is due, it fires
    /// (unset first, as the table does). Returns whether it fired.
    pub fn advance(&mut self, service: &mut dyn TcpService, now: u64) -> bool {
        self.now = now;
        match self.timer {
            Some(at) if at <= now => {
                self.timer = None;
                service.on_timer(self);
                true
            }
            _ => false,
        }
    }

    /// `more` bytes of send space free up; the service is told.
    pub fn grant(&mut self, service: &mut dyn TcpService, more: usize) {
        self.space = self.space.saturating_add(more);
        service.on_writable(self);
    }
}

impl TcpIo for MockIo {
    fn recv_data(&self) -> (&[u8], &[u8]) {
        let at = self.wrap_at.min(self.rx.len());
        self.rx.split_at(at)
    }

    fn consume(&mut self, count: usize) {
        assert!(count <= self.rx.len(), "consumed more than received");
        self.rx.drain(..count);
        if self.wrap_at != usize::MAX {
            self.wrap_at = self.wrap_at.saturating_sub(count);
            if self.wrap_at == 0 {
                self.wrap_at = usize::MAX;
            }
        }
    }

    fn send(&mut self, data: &[u8]) -> usize {
        if self.closed() || self.aborted {
            return 0;
        }
        let n = data.len().min(self.space);
        self.tx.extend_from_slice(&data[..n]);
        self.space -= n;
        n
    }

    fn send_space(&self) -> usize {
        if self.closed() || self.aborted {
            0
        } else {
            self.space
        }
    }

    fn close(&mut self) {
        self.closes += 1;
    }

    fn abort(&mut self) {
        self.aborted = true;
    }

    fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    fn app_state(&mut self) -> &mut u64 {
        &mut self.state
    }

    fn id(&self) -> super::tcp::ConnId {
        super::tcp::ConnId { key: 0, serial: 0 }
    }

    fn local_addr(&self) -> std::net::SocketAddrV4 {
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 0, 1), 80)
    }

    fn peer_addr(&self) -> std::net::SocketAddrV4 {
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 0, 2), 40000)
    }

    fn now(&self) -> u64 {
        self.now
    }

    fn set_timer(&mut self, deadline: Option<u64>) {
        self.timer = deadline;
    }
}
