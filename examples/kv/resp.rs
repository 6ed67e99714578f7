//! RESP2, the Redis protocol, as a server speaks it: requests decoded
//! incrementally from a byte buffer (pipelined, possibly cut anywhere),
//! replies encoded into one output buffer.
//!
//! A request is either an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`)
//! or an inline command (`GET k\r\n`, split on spaces with the quoting rules
//! of redis-server's `sdssplitargs`), as redis-server accepts both.
//!
//! Why not the `redis-protocol` crate (aembke, 6.0, maintained, used by
//! `fred`): it decodes any RESP frame (a server only wants arrays of bulk
//! strings), has no inline commands, and takes no size limits, so a
//! `$536870912` header from a peer would be waited for; and its zero-copy
//! `Bytes` frames would be copied anyway here, since a command's keys and
//! values move to the worker that owns the key (owned `Vec<u8>`s). So this
//! is a small parser of our own, bounded ([`Limits`]) and fuzz-robust (the
//! tests cut every request at every byte and feed it garbage).
//!
//! One difference from redis-server: a bulk string must be followed by
//! CRLF (redis-server skips two bytes whatever they are); anything else is
//! `Protocol error: invalid bulk terminator`.
//!
//! Decoding is stateless: [`parse`] looks at the buffer from its start and
//! returns the first request and the bytes it used, `None` while incomplete,
//! or a [`ProtocolError`] (the server answers `-ERR Protocol error: ...` and
//! closes, as redis-server does). Retrying an incomplete request costs one
//! pass over its headers (bulk payloads are skipped by length), at most
//! [`Limits::max_args`] of them.

use std::fmt;

/// Bounds on one request; a request beyond them is a [`ProtocolError`].
///
/// redis-server allows 512 MiB bulk strings and 2^31 arguments; these are
/// smaller, for a server whose read buffer per connection must stay small.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest bulk string (a key or a value): 1 MiB by default.
    pub max_bulk: usize,
    /// Most elements of a request array: 64 Ki by default.
    pub max_args: usize,
    /// Longest inline command line, or header line (`*N`, `$N`) seen without
    /// its end: 64 KiB by default (redis-server's `PROTO_INLINE_MAX_SIZE`).
    pub max_inline: usize,
    /// Most bytes of one request in all: 8 MiB by default.
    pub max_request: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk: 1 << 20,
            max_args: 1 << 16,
            max_inline: 64 << 10,
            max_request: 8 << 20,
        }
    }
}

/// Why a request cannot be decoded; the text follows redis-server's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// An inline line longer than [`Limits::max_inline`].
    TooBigInline,
    /// Unbalanced quotes in an inline command.
    UnbalancedQuotes,
    /// A `*N` line longer than [`Limits::max_inline`].
    TooBigMbulkCount,
    /// A `*N` that is not a number, or more than [`Limits::max_args`].
    InvalidMultibulkLength,
    /// A `$N` line longer than [`Limits::max_inline`].
    TooBigBulkCount,
    /// An array element that does not start with `$`.
    ExpectedDollar(u8),
    /// A `$N` that is not a number, negative, or more than
    /// [`Limits::max_bulk`].
    InvalidBulkLength,
    /// A bulk string not followed by CRLF.
    InvalidBulkTerminator,
    /// A request of more than [`Limits::max_request`] bytes.
    TooBigRequest,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            ProtocolError::TooBigInline => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::TooBigMbulkCount => f.write_str("too big mbulk count string"),
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::TooBigBulkCount => f.write_str("too big bulk count string"),
            ProtocolError::ExpectedDollar(got) => {
                write!(f, "expected '$', got '{}'", char::from(*got))
            }
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::InvalidBulkTerminator => f.write_str("invalid bulk terminator"),
            ProtocolError::TooBigRequest => f.write_str("too big request"),
        }
    }
}

/// One decoded request: its arguments (empty for a blank inline line or
/// `*0`, which the server skips) and how many bytes of the buffer it used.
pub type Request = (Vec<Vec<u8>>, usize);

/// Decodes the first request in `buf`: `Ok(None)` while it is incomplete.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

/// The position of the first `\r\n` at or after `from`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|at| from + at)
}

/// A decimal integer as redis-server's `string2ll` reads it: an optional
/// `-`, digits, no leading zero (except `0` itself), no spaces, no `+`.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || negative) {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
    }
    Some(value)
}

fn parse_multibulk(buf: &[u8], limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    let Some(end) = find_crlf(buf, 1) else {
        return if buf.len() > limits.max_inline {
            Err(ProtocolError::TooBigMbulkCount)
        } else {
            Ok(None)
        };
    };
    let count = parse_i64(&buf[1..end]).ok_or(ProtocolError::InvalidMultibulkLength)?;
    if count > limits.max_args as i64 {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    let mut at = end + 2;
    if count <= 0 {
        // redis-server ignores `*0` and `*-1` as empty requests.
        return Ok(Some((Vec::new(), at)));
    }
    // Check the headers before allocating: a complete request only.
    let mut spans = Vec::with_capacity((count as usize).min(64));
    for _ in 0..count {
        let Some(&first) = buf.get(at) else {
            return Ok(None);
        };
        if first != b'$' {
            return Err(ProtocolError::ExpectedDollar(first));
        }
        let Some(end) = find_crlf(buf, at + 1) else {
            return if buf.len() - at > limits.max_inline {
                Err(ProtocolError::TooBigBulkCount)
            } else {
                Ok(None)
            };
        };
        let len = parse_i64(&buf[at + 1..end]).ok_or(ProtocolError::InvalidBulkLength)?;
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        let start = end + 2;
        let stop = start + len as usize;
        if stop + 2 > limits.max_request {
            return Err(ProtocolError::TooBigRequest);
        }
        if buf.len() < stop + 2 {
            return Ok(None);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(ProtocolError::InvalidBulkTerminator);
        }
        spans.push(start..stop);
        at = stop + 2;
    }
    let args = spans.into_iter().map(|span| buf[span].to_vec()).collect();
    Ok(Some((args, at)))
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<Request>, ProtocolError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > limits.max_inline {
            Err(ProtocolError::TooBigInline)
        } else {
            Ok(None)
        };
    };
    if newline > limits.max_inline {
        return Err(ProtocolError::TooBigInline);
    }
    let mut line = &buf[..newline];
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    let args = split_args(line).ok_or(ProtocolError::UnbalancedQuotes)?;
    if args.len() > limits.max_args {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    Ok(Some((args, newline + 1)))
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// Splits an inline command line as redis-server's `sdssplitargs`: spaces
/// separate arguments; `"..."` takes `\n \r \t \b \a \\ \" \xHH` escapes;
/// `'...'` takes `\'`; a closing quote must be followed by a space or the
/// end. `None` for unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = line.get(i).copied();
            if in_double {
                match c {
                    None => return None,
                    Some(b'\\')
                        if line.get(i + 1) == Some(&b'x')
                            && line.get(i + 2).copied().and_then(hex_digit).is_some()
                            && line.get(i + 3).copied().and_then(hex_digit).is_some() =>
                    {
                        let hi = hex_digit(line[i + 2]).unwrap_or(0);
                        let lo = hex_digit(line[i + 3]).unwrap_or(0);
                        current.push(hi * 16 + lo);
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        current.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        // The closing quote must end the argument.
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => current.push(other),
                }
            } else if in_single {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        current.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => current.push(other),
                }
            } else {
                match c {
                    None => break,
                    Some(b) if b.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(other) => current.push(other),
                }
            }
            i += 1;
        }
        args.push(current);
    }
}

/// A reply, as RESP2 encodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`.
    Simple(&'static str),
    /// `-ERR ...` (the text includes its `ERR` prefix; CR and LF become
    /// spaces when encoded, as redis-server does).
    Error(String),
    /// `:N`.
    Integer(i64),
    /// `$N` and the bytes, or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
    /// `*N` and the elements.
    Array(Vec<Reply>),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple("OK");

    /// An `-ERR` reply with `text` after `ERR `.
    pub fn err(text: impl fmt::Display) -> Reply {
        Reply::Error(format!("ERR {text}"))
    }

    /// Appends the reply's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(text) => {
                out.push(b'+');
                out.extend_from_slice(text.as_bytes());
            }
            Reply::Error(text) => {
                out.push(b'-');
                out.extend(
                    text.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
            }
            Reply::Integer(n) => {
                out.push(b':');
                out.extend_from_slice(n.to_string().as_bytes());
            }
            Reply::Bulk(None) => out.extend_from_slice(b"$-1"),
            Reply::Bulk(Some(bytes)) => {
                out.push(b'$');
                out.extend_from_slice(bytes.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(bytes);
            }
            Reply::Array(items) => {
                out.push(b'*');
                out.extend_from_slice(items.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                for item in items {
                    item.encode(out);
                }
                return;
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn all(buf: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let limits = Limits::default();
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((request, used)) = parse(&buf[at..], &limits)? {
            assert!(used > 0);
            at += used;
            out.push(request);
        }
        assert_eq!(at, buf.len(), "a request left over");
        Ok(out)
    }

    const PIPELINE: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nPING\r\n  set  \"a b\" 'c\\'d'\n\r\n*0\r\n*1\r\n$4\r\nq\r\nt\r\n";

    fn pipeline_expected() -> Vec<Vec<Vec<u8>>> {
        vec![
            args(&["GET", "k"]),
            args(&["SET", "k", ""]),
            args(&["PING"]),
            args(&["set", "a b", "c'd"]),
            vec![],
            vec![],
            args(&["q\r\nt"]),
        ]
    }

    #[test]
    fn pipelined_requests_decode_in_order() {
        assert_eq!(all(PIPELINE).unwrap(), pipeline_expected());
    }

    #[test]
    fn a_pipeline_cut_at_every_byte_decodes_the_same() {
        // Feed the first `cut` bytes, then the rest, as two reads would.
        let limits = Limits::default();
        for cut in 0..=PIPELINE.len() {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for chunk in [&PIPELINE[..cut], &PIPELINE[cut..]] {
                buf.extend_from_slice(chunk);
                while let Some((request, used)) = parse(&buf, &limits).unwrap() {
                    got.push(request);
                    buf.drain(..used);
                }
            }
            assert!(buf.is_empty(), "cut {cut}: {buf:?} left");
            assert_eq!(got, pipeline_expected(), "cut {cut}");
        }
    }

    #[test]
    fn every_prefix_of_a_request_is_incomplete() {
        let request = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
        for cut in 0..request.len() {
            assert_eq!(
                parse(&request[..cut], &Limits::default()),
                Ok(None),
                "cut {cut}"
            );
        }
        assert_eq!(
            parse(request, &Limits::default()),
            Ok(Some((args(&["ECHO", "hello"]), request.len())))
        );
    }

    #[test]
    fn inline_quoting_follows_sdssplitargs() {
        assert_eq!(split_args(b"").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(split_args(b"  a\tb  ").unwrap(), args(&["a", "b"]));
        assert_eq!(
            split_args(br#"set "\x41\n\"" '\'x' """#).unwrap(),
            vec![b"set".to_vec(), b"A\n\"".to_vec(), b"'x".to_vec(), vec![]]
        );
        // A bad \x escape is kept as is.
        assert_eq!(split_args(br#""\xzz""#).unwrap(), args(&["xzz"]));
        assert_eq!(split_args(b"\"abc"), None);
        assert_eq!(split_args(b"'abc"), None);
        assert_eq!(split_args(b"\"a\"b"), None);
        assert_eq!(split_args(b"'a'b"), None);
        assert_eq!(
            parse(b"GET \"k\r\n", &Limits::default()),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn malformed_requests_are_errors_with_redis_text() {
        let limits = Limits::default();
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "invalid multibulk length"),
            (b"*1\r\nGET\r\n", "expected '$', got 'G'"),
            (b"*1\r\n$x\r\n", "invalid bulk length"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*1\r\n$3\r\nGETxx", "invalid bulk terminator"),
            (b"*1\r\n$01\r\n", "invalid bulk length"),
            (b"*+1\r\n", "invalid multibulk length"),
        ];
        for (input, text) in cases {
            let error = parse(input, &limits).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("Protocol error: {text}"),
                "{input:?}"
            );
        }
    }

    #[test]
    fn limits_are_enforced_before_the_data_arrives() {
        let limits = Limits::default();
        let big_bulk = format!("*1\r\n${}\r\n", limits.max_bulk + 1);
        assert_eq!(
            parse(big_bulk.as_bytes(), &limits),
            Err(ProtocolError::InvalidBulkLength)
        );
        let at_limit = format!("*1\r\n${}\r\n", limits.max_bulk);
        assert_eq!(parse(at_limit.as_bytes(), &limits), Ok(None));
        let many = format!("*{}\r\n", limits.max_args + 1);
        assert_eq!(
            parse(many.as_bytes(), &limits),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        let long_line = vec![b'a'; limits.max_inline + 1];
        assert_eq!(parse(&long_line, &limits), Err(ProtocolError::TooBigInline));
        assert_eq!(parse(&long_line[..limits.max_inline], &limits), Ok(None));
        let mut long_count = b"*1".to_vec();
        long_count.resize(limits.max_inline + 1, b'1');
        assert_eq!(
            parse(&long_count, &limits),
            Err(ProtocolError::TooBigMbulkCount)
        );
        let mut long_bulk = b"*1\r\n$1".to_vec();
        long_bulk.resize(limits.max_inline + 10, b'1');
        assert_eq!(
            parse(&long_bulk, &limits),
            Err(ProtocolError::TooBigBulkCount)
        );
        // Many bulks at the limit add up past max_request.
        let small = Limits {
            max_request: 100,
            max_bulk: 40,
            ..Limits::default()
        };
        let mut request = b"*3\r\n".to_vec();
        for _ in 0..3 {
            request.extend_from_slice(b"$40\r\n");
            request.extend_from_slice(&[b'x'; 40]);
            request.extend_from_slice(b"\r\n");
        }
        assert_eq!(parse(&request, &small), Err(ProtocolError::TooBigRequest));
    }

    #[test]
    fn garbage_never_panics_and_progress_is_bounded() {
        // A small deterministic fuzzer: xorshift bytes biased to RESP's.
        let alphabet = b"*$\r\n-0123456789 \"'\\xAaGET";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let limits = Limits {
            max_bulk: 16,
            max_args: 8,
            max_inline: 32,
            max_request: 64,
        };
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buf.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if let Ok(Some((request, used))) = parse(&buf, &limits) {
                assert!(used > 0 && used <= buf.len());
                assert!(request.len() <= limits.max_args);
                assert!(request.iter().all(|a| a.len() <= limits.max_inline));
            }
        }
    }

    proptest::proptest! {
        /// Any requests (arbitrary bytes, within the limits), encoded as
        /// arrays and delivered in arbitrary pieces, decode to themselves.
        #[test]
        fn encoded_requests_decode_from_any_pieces(
            requests in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 1..6),
                1..8,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let mut wire = Vec::new();
            for request in &requests {
                wire.extend_from_slice(format!("*{}\r\n", request.len()).as_bytes());
                for arg in request {
                    wire.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                    wire.extend_from_slice(arg);
                    wire.extend_from_slice(b"\r\n");
                }
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.push(wire.len());
            cuts.sort_unstable();
            let limits = Limits::default();
            let (mut buf, mut got, mut from) = (Vec::new(), Vec::new(), 0);
            for cut in cuts {
                buf.extend_from_slice(&wire[from..cut]);
                from = cut;
                while let Some((request, used)) = parse(&buf, &limits).unwrap() {
                    got.push(request);
                    buf.drain(..used);
                }
            }
            proptest::prop_assert!(buf.is_empty());
            proptest::prop_assert_eq!(got, requests);
        }

        /// Arbitrary bytes never panic, and a decoded request never claims
        /// more than the buffer.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(Some((_, used))) = parse(&bytes, &Limits::default()) {
                proptest::prop_assert!(used > 0 && used <= bytes.len());
            }
        }
    }

    #[test]
    fn integers_parse_as_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"1.5",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = Vec::new();
        Reply::OK.encode(&mut out);
        Reply::err("bad\r\nthing").encode(&mut out);
        Reply::Integer(-3).encode(&mut out);
        Reply::Bulk(None).encode(&mut out);
        Reply::Array(vec![Reply::Bulk(Some(b"ab".to_vec())), Reply::Bulk(None)]).encode(&mut out);
        assert_eq!(
            out,
            b"+OK\r\n-ERR bad  thing\r\n:-3\r\n$-1\r\n*2\r\n$2\r\nab\r\n$-1\r\n"
        );
    }
}
