//! Dataplane capture (`shardnet capture`, `POST /capture` on the admin socket).
//!
//! Each worker owns a [`CaptureSlot`]. While no capture runs, the cost to the
//! worker is one relaxed atomic load per RX burst and per TX burst (not per
//! packet). While one runs, the worker copies the frames that match the
//! session's [`Filter`] (at most [`SNAPLEN`] bytes each, with their wire
//! length) into a bounded ring towards the control thread; a full ring drops
//! the copy (never the packet) and counts it as
//! `shardnet_capture_dropped_total`. The worker never blocks and never locks.
//!
//! The filter is a small expression language, parsed on the control side
//! and evaluated on the worker as a tree of [`Filter`] nodes:
//! `udp`, `tcp`, `icmp`, `arp`, `port N`, `host A.B.C.D`, joined with `and`,
//! `or`, `not` and parentheses (`and` binds tighter than `or`). A BPF
//! compiler was not used: the only one that takes tcpdump syntax is
//! libpcap's, a C dependency for five primitives.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;

use crate::counters::WorkerCounters;

/// Bytes kept of each frame: enough for every header and the start of the
/// payload. The pcap records the frame's full length too.
pub const SNAPLEN: usize = 256;

/// Frames one worker may have waiting for the control thread.
pub const RING_FRAMES: usize = 4096;

/// Which way a frame went through the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received from the port, before the stack.
    Rx,
    /// Handed by the stack to the port.
    Tx,
}

/// One captured frame.
#[derive(Debug)]
pub struct Captured {
    /// Wall-clock time of the burst it came in or went out with.
    pub time: Duration,
    /// Its length on the wire.
    pub wire_len: u32,
    /// Which way it went.
    pub direction: Direction,
    /// Its first [`SNAPLEN`] bytes at most.
    pub data: Vec<u8>,
}

/// What a worker needs of a running capture.
#[derive(Debug)]
pub struct Session {
    filter: Filter,
    ring: ArrayQueue<Captured>,
}

impl Session {
    /// A session with this filter.
    pub fn new(filter: Filter) -> Session {
        Session {
            filter,
            ring: ArrayQueue::new(RING_FRAMES),
        }
    }

    /// The next frame waiting, if any (control thread).
    pub fn pop(&self) -> Option<Captured> {
        self.ring.pop()
    }
}

/// A worker's capture slot, shared with the control thread.
#[derive(Debug, Default)]
pub struct CaptureSlot {
    on: AtomicBool,
    session: ArcSwapOption<Session>,
}

impl CaptureSlot {
    /// Whether a capture runs (one relaxed load: the worker's whole cost
    /// while none does).
    #[inline(always)]
    pub fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Start capturing into `session` (control thread).
    pub fn start(&self, session: Arc<Session>) {
        self.session.store(Some(session));
        self.on.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Stop capturing (control thread). A burst the worker is copying now
    /// still lands in the old session's ring, which nobody reads any more.
    pub fn stop(&self) {
        self.on.store(false, Relaxed);
        self.session.store(None);
    }

    /// Copy the matching frames of a burst (worker; call only when
    /// [`Self::is_on`]).
    #[cold]
    #[inline(never)]
    pub fn tap<'a>(
        &self,
        frames: impl Iterator<Item = &'a [u8]>,
        direction: Direction,
        counters: &WorkerCounters,
    ) {
        let guard = self.session.load();
        let Some(session) = guard.as_ref() else {
            return;
        };
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        for frame in frames {
            if !session.filter.matches(frame) {
                continue;
            }
            let captured = Captured {
                time,
                wire_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
                direction,
                data: frame[..frame.len().min(SNAPLEN)].to_vec(),
            };
            if session.ring.push(captured).is_err() {
                counters.capture_dropped.inc();
            }
        }
    }
}

/// A compiled capture filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Every frame (no expression given).
    Any,
    /// IPv4 UDP.
    Udp,
    /// IPv4 TCP.
    Tcp,
    /// IPv4 ICMP.
    Icmp,
    /// ARP.
    Arp,
    /// UDP or TCP with this source or destination port.
    Port(u16),
    /// IPv4 (or ARP) with this source or destination address.
    Host(Ipv4Addr),
    /// Both.
    And(Box<Filter>, Box<Filter>),
    /// Either.
    Or(Box<Filter>, Box<Filter>),
    /// Not this.
    Not(Box<Filter>),
}

/// The fields of a frame a filter looks at.
#[derive(Default)]
struct Fields {
    arp: bool,
    protocol: Option<u8>,
    addresses: Option<([u8; 4], [u8; 4])>,
    ports: Option<(u16, u16)>,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;

fn fields(frame: &[u8]) -> Fields {
    let mut f = Fields::default();
    let Some(ethertype) = frame.get(12..14) else {
        return f;
    };
    match u16::from_be_bytes([ethertype[0], ethertype[1]]) {
        ETHERTYPE_ARP => {
            f.arp = true;
            // Sender and target protocol addresses (Ethernet/IPv4 ARP).
            if let (Some(s), Some(t)) = (frame.get(28..32), frame.get(38..42)) {
                f.addresses = Some((addr(s), addr(t)));
            }
        }
        ETHERTYPE_IPV4 => {
            let ip = &frame[14..];
            let Some(&vihl) = ip.first() else { return f };
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 || ip.len() < 20 {
                return f;
            }
            f.protocol = Some(ip[9]);
            f.addresses = Some((addr(&ip[12..16]), addr(&ip[16..20])));
            let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
            if first_fragment && matches!(ip[9], 6 | 17) {
                if let Some(p) = ip.get(ihl..ihl + 4) {
                    f.ports = Some((
                        u16::from_be_bytes([p[0], p[1]]),
                        u16::from_be_bytes([p[2], p[3]]),
                    ));
                }
            }
        }
        _ => {}
    }
    f
}

fn addr(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

impl Filter {
    /// Whether `frame` (Ethernet) matches.
    pub fn matches(&self, frame: &[u8]) -> bool {
        if *self == Filter::Any {
            return true;
        }
        self.eval(&fields(frame))
    }

    fn eval(&self, f: &Fields) -> bool {
        match self {
            Filter::Any => true,
            Filter::Udp => f.protocol == Some(17),
            Filter::Tcp => f.protocol == Some(6),
            Filter::Icmp => f.protocol == Some(1),
            Filter::Arp => f.arp,
            Filter::Port(p) => f.ports.is_some_and(|(s, d)| s == *p || d == *p),
            Filter::Host(h) => f
                .addresses
                .is_some_and(|(s, d)| s == h.octets() || d == h.octets()),
            Filter::And(a, b) => a.eval(f) && b.eval(f),
            Filter::Or(a, b) => a.eval(f) || b.eval(f),
            Filter::Not(a) => !a.eval(f),
        }
    }

    /// Parse a filter expression; an empty one matches every frame. The
    /// error is one sentence.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let spaced = text.replace('(', " ( ").replace(')', " ) ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        if tokens.is_empty() {
            return Ok(Filter::Any);
        }
        let mut parser = Parser { tokens, at: 0 };
        let filter = parser.or()?;
        match parser.peek() {
            None => Ok(filter),
            Some(t) => Err(format!(
                "capture filter {text:?}: unexpected {t:?} (use udp, tcp, icmp, arp, port N, host A.B.C.D, and, or, not, parentheses)"
            )),
        }
    }
}

struct Parser<'a> {
    tokens: Vec<&'a str>,
    at: usize,
}

const SYNTAX: &str = "use udp, tcp, icmp, arp, port N, host A.B.C.D, and, or, not, parentheses";

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.at).copied()
    }

    fn next(&mut self) -> Option<&'a str> {
        let t = self.peek();
        self.at += 1;
        t
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.peek() == Some("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.peek() == Some("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        // Bounded nesting: no stack overflow on a hostile expression.
        if self.at > 256 {
            return Err("capture filter: too long (256 words at most)".into());
        }
        match self.next() {
            Some("not") => Ok(Filter::Not(Box::new(self.unary()?))),
            Some("(") => {
                let inner = self.or()?;
                match self.next() {
                    Some(")") => Ok(inner),
                    _ => Err("capture filter: a \"(\" is never closed".into()),
                }
            }
            Some("udp") => Ok(Filter::Udp),
            Some("tcp") => Ok(Filter::Tcp),
            Some("icmp") => Ok(Filter::Icmp),
            Some("arp") => Ok(Filter::Arp),
            Some("port") => match self.next().map(str::parse::<u16>) {
                Some(Ok(port)) => Ok(Filter::Port(port)),
                _ => Err("capture filter: \"port\" takes a number from 0 to 65535".into()),
            },
            Some("host") => match self.next().map(str::parse::<Ipv4Addr>) {
                Some(Ok(host)) => Ok(Filter::Host(host)),
                _ => Err("capture filter: \"host\" takes an IPv4 address (A.B.C.D)".into()),
            },
            Some(t) => Err(format!("capture filter: unexpected {t:?} ({SYNTAX})")),
            None => Err(format!(
                "capture filter: the expression ends too soon ({SYNTAX})"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn filters_parse_and_match() {
        let f = udp_frame([198, 18, 0, 1], [198, 18, 0, 2], 40000, 7);
        let yes = [
            "",
            "udp",
            "port 7",
            "udp and port 7",
            "tcp or port 7",
            "not tcp",
            "host 198.18.0.2 and (udp or tcp)",
            "not (tcp or icmp) and port 40000",
        ];
        for e in yes {
            assert!(Filter::parse(e).unwrap().matches(&f), "{e}");
        }
        for e in ["tcp", "port 8", "host 1.2.3.4", "arp", "udp and not port 7"] {
            assert!(!Filter::parse(e).unwrap().matches(&f), "{e}");
        }
        // Anything at all: no panic on short or odd frames.
        for len in 0..f.len() {
            Filter::parse("udp and port 7 or host 198.18.0.1")
                .unwrap()
                .matches(&f[..len]);
        }
    }

    #[test]
    fn bad_filters_are_one_sentence() {
        for e in [
            "udp and",
            "port",
            "port 70000",
            "host x",
            "(udp",
            "udp)",
            "bogus",
            "and",
        ] {
            let err = Filter::parse(e).unwrap_err();
            assert!(err.starts_with("capture filter"), "{e}: {err}");
            assert!(!err.contains('\n'));
        }
        let deep = "not ".repeat(10_000) + "udp";
        assert!(Filter::parse(&deep).is_err());
        let deep = "(".repeat(10_000) + "udp";
        assert!(Filter::parse(&deep).is_err());
    }
}
