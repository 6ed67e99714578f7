//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Vocabulary: a *sum* is the 16-bit one's-complement sum of some bytes, taken
//! as big-endian 16-bit words (an odd trailing byte is padded with a zero).
//! Sums of separate pieces are joined with [`combine`]. A *checksum*, the value
//! stored in a header, is the complement of the sum of everything it covers:
//! `!combine(&[pseudo_header(..), data(header_and_payload)])`. A packet
//! verifies when the sum over everything, checksum field included, is 0xffff.
//!
//! Nothing here panics.

use super::IpProtocol;
use std::net::Ipv4Addr;

/// Folds a wide one's-complement accumulator down to 16 bits with end-around
/// carry.
#[inline]
const fn fold(mut sum: u64) -> u16 {
    // Two folds reduce any u64 to at most 17 bits, two more to 16.
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// One's-complement sum of `data` as big-endian 16-bit words, not
/// complemented (RFC 1071). An odd final byte counts as its word's high byte.
///
/// The words are added as native-endian `u32`s into `u64` accumulators, which
/// gives the same one's-complement sum once folded (2^32 - 1 is a multiple of
/// 2^16 - 1, and a `u64` holds the carries of 2^32 additions, far more than any
/// packet has), then put in network order (RFC 1071 section 2(B): the sum is
/// byte-order independent up to a final swap). Eight independent lanes of
/// 32 bytes have no carry chain between them, so the compiler turns the loop
/// into vector additions: `bench/checksum.rs` measures it against the
/// serial add-with-carry loop it replaced.
pub fn data(data: &[u8]) -> u16 {
    if data.len() < SHORT {
        return u16::from_be(fold(short_sum(data)));
    }
    const LANES: usize = 8;
    let mut lanes = [0u64; LANES];
    let mut blocks = data.chunks_exact(4 * LANES);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
        }
    }
    let mut acc: u64 = lanes.iter().sum();
    let mut words = blocks.remainder().chunks_exact(4);
    for word in &mut words {
        acc += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        // The remainder starts at an even offset, so zero padding on the right
        // is exactly RFC 1071's padding of an odd final byte.
        let mut word = [0u8; 4];
        word[..rest.len()].copy_from_slice(rest);
        acc += u64::from(u32::from_ne_bytes(word));
    }
    // `fold` added native-endian words; `from_be` swaps back on little-endian.
    u16::from_be(fold(acc))
}

/// Below this many bytes (headers, small datagrams) [`data`] takes the serial
/// 64-bit add-with-carry loop of [`short_sum`]: the eight vector lanes cost
/// more to set up and reduce than they save on so few bytes.
const SHORT: usize = 64;

/// The native-endian one's-complement sum of `data` in a `u64` (not folded):
/// 8 bytes at a time with end-around carry (an `add` and an `adc` on x86),
/// then 4, 2 and 1. Every piece starts at an even offset, so each lands on
/// the same 16-bit lanes as in [`data`]'s wide loop; an odd final byte is
/// its word's first byte, padded with zero (RFC 1071).
#[inline]
fn short_sum(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut add = |word: u64| {
        let (sum, carry) = acc.overflowing_add(word);
        acc = sum + u64::from(carry);
    };
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        add(u64::from_ne_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]));
    }
    let mut rest = words.remainder();
    if let [a, b, c, d, tail @ ..] = rest {
        add(u64::from(u32::from_ne_bytes([*a, *b, *c, *d])));
        rest = tail;
    }
    if let [a, b, tail @ ..] = rest {
        add(u64::from(u16::from_ne_bytes([*a, *b])));
        rest = tail;
    }
    if let [a] = rest {
        add(u64::from(u16::from_ne_bytes([*a, 0])));
    }
    acc
}

/// One's-complement sum of a 20-byte IPv4 header without options, from a
/// fixed-size view (no bounds checks): five native-endian 32-bit words.
#[inline]
pub fn ipv4_header(h: &[u8; 20]) -> u16 {
    let word = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    u16::from_be(fold(word(0) + word(4) + word(8) + word(12) + word(16)))
}

/// One's-complement sum of several partial sums.
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc: u64 = 0;
    for &s in sums {
        acc += u64::from(s);
    }
    fold(acc)
}

/// The one's-complement sum of the IPv4 pseudo-header of `src`, `dst`,
/// `protocol` and `data.len()` together with `data`: the sum a received UDP or
/// TCP segment verifies with (0xffff when its checksum is right). One
/// accumulator and one fold for both, where
/// `combine(&[pseudo_header(..), data(..)])` folds three times.
#[inline]
pub fn pseudo_header_and_data(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    data: &[u8],
) -> u16 {
    if data.len() >= SHORT {
        return combine(&[
            pseudo_header(src, dst, protocol, data.len() as u32),
            self::data(data),
        ]);
    }
    // The pseudo-header's words in network order, added natively: on
    // little-endian their swapped values, which the final `from_be` swaps
    // back together with the data's.
    let len = data.len() as u32;
    let pseudo = u64::from(u32::from_ne_bytes(src.octets()))
        + u64::from(u32::from_ne_bytes(dst.octets()))
        + u64::from(u16::from_ne_bytes([0, u8::from(protocol)]))
        + u64::from(u16::from_ne_bytes((len as u16).to_be_bytes()));
    let acc = short_sum(data);
    let (sum, carry) = acc.overflowing_add(pseudo);
    u16::from_be(fold(sum + u64::from(carry)))
}

/// One's-complement sum of the IPv4 pseudo-header used by UDP and TCP
/// (RFC 768, RFC 793): source, destination, zero, protocol, and `length`,
/// the length of the transport header plus payload. Not complemented.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, length: u32) -> u16 {
    let s = src.octets();
    let d = dst.octets();
    let acc = u64::from(u16::from_be_bytes([s[0], s[1]]))
        + u64::from(u16::from_be_bytes([s[2], s[3]]))
        + u64::from(u16::from_be_bytes([d[0], d[1]]))
        + u64::from(u16::from_be_bytes([d[2], d[3]]))
        + u64::from(u8::from(protocol))
        + u64::from(length >> 16)
        + u64::from(length & 0xffff);
    fold(acc)
}

/// The new checksum after one 16-bit word covered by `old_checksum` changed
/// from `old` to `new`: RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`.
///
/// Unlike RFC 1141's `HC + m + ~m'`, this never turns a header checksum into
/// 0xffff (-0) where recomputation from scratch would give 0x0000. A word that
/// did not change leaves the checksum unchanged.
///
/// The result is exact whenever the covered bytes after the change are not
/// all zero (always true of an IPv4 header, whose version nibble is 4). If
/// they are all zero, the right checksum is 0xffff but this returns 0x0000;
/// callers whose data can be all zero (an ICMP echo reply with identifier,
/// sequence and data 0) must recompute when the result is 0x0000.
///
/// Caution for UDP: a stored checksum of 0 means "no checksum"; leave it at 0
/// rather than updating it, and if an updated UDP checksum comes out 0, store
/// 0xffff.
#[inline]
pub fn update(old_checksum: u16, old: u16, new: u16) -> u16 {
    // Three 16-bit words sum to under 2^18: two 16-bit folds suffice.
    let acc = u32::from(!old_checksum) + u32::from(!old) + u32::from(new);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// [`update`] for a 32-bit field (such as an IPv4 address) that changed from
/// `old` to `new`, as two 16-bit words.
pub fn update_u32(old_checksum: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!old_checksum)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from((new >> 16) as u16)
        + u64::from(new as u16);
    !fold(acc)
}

/// Completes a transport checksum that the sender left partial, as Linux does
/// for `CHECKSUM_PARTIAL` (an AF_PACKET frame with `TP_STATUS_CSUMNOTREADY`,
/// a virtio-net header with `NEEDS_CSUM`): the 16-bit field at
/// `csum_start + csum_offset` holds the non-complemented pseudo-header sum,
/// and the checksum is the complement of the sum of every byte from
/// `csum_start` to the end of `packet`, that field included. A result of 0 is
/// written as 0xffff (Linux's `CSUM_MANGLED_0`; required for UDP, harmless for
/// TCP, where both encode the same sum).
///
/// `packet` must end where the transport payload ends (no Ethernet padding).
/// Returns `Err(Truncated)` if the field lies outside `packet`.
pub fn complete_partial(
    packet: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> super::Result<()> {
    let field = csum_start
        .checked_add(csum_offset)
        .filter(|&f| f.checked_add(2).is_some_and(|end| end <= packet.len()))
        .ok_or(super::WireError::Truncated)?;
    let cks = !data(&packet[csum_start..]);
    let cks = if cks == 0 { 0xffff } else { cks };
    packet[field..field + 2].copy_from_slice(&cks.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook RFC 1071 loop, 16 bits at a time, for comparison.
    fn naive(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            sum += u32::from(data[i]) << 8;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn the_most_carries_a_packet_can_have() {
        // All ones: every addition carries. 64 KiB is more than an IPv4
        // packet holds; odd lengths and every lane count are covered.
        for len in [65_535, 65_536, 65_504, 65_533, 63, 26, 20, 9] {
            let ones = vec![0xffu8; len];
            assert_eq!(data(&ones), naive(&ones), "{len} bytes");
        }
    }

    #[test]
    fn rfc1071_numerical_example() {
        // RFC 1071 section 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(naive(&bytes), 0xddf2);
        // Its checksum is the complement; summing data plus checksum gives -0.
        let cks = !data(&bytes);
        assert_eq!(cks, 0x220d);
        assert_eq!(combine(&[data(&bytes), cks]), 0xffff);
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x01, 0x02, 0x03]), 0x0402);
        // Nine bytes: one full chunk plus an odd byte.
        let nine = [0xff; 9];
        assert_eq!(data(&nine), naive(&nine));
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: the other header words sum to 0xcd7a and a word
        // changes from m = 0x5555 to m' = 0x3285.
        let (rest, m, m2) = (0xcd7a_u16, 0x5555_u16, 0x3285_u16);
        let hc = !combine(&[rest, m]);
        assert_eq!(hc, 0xdd2f);
        // Recomputed from scratch: ~(0xcd7a + 0x3285) = ~0xffff = 0x0000.
        let from_scratch = !combine(&[rest, m2]);
        assert_eq!(from_scratch, 0x0000);
        // RFC 1141's equation 2 (HC + m + ~m') gives 0xffff here: the wrong -0.
        assert_eq!(combine(&[hc, m, !m2]), 0xffff);
        // Equation 3 gives the right answer.
        assert_eq!(update(hc, m, m2), 0x0000);
    }

    #[test]
    fn rfc1624_unchanged_word_keeps_zero_checksum() {
        // The corner case of RFC 1624 section 3 / erratum 4782: HC = 0x0000,
        // m = m' = 0x5555. ~HC + ~m + m' = 0xffff + 0xaaaa + 0x5555, which
        // with end-around carry is 0xffff, so HC' = 0x0000: unchanged.
        assert_eq!(update(0x0000, 0x5555, 0x5555), 0x0000);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(10, 99, 0, 1);
        let dst = Ipv4Addr::new(10, 99, 0, 2);
        let bytes = [10, 99, 0, 1, 10, 99, 0, 2, 0, 17, 0x00, 0x16];
        assert_eq!(pseudo_header(src, dst, IpProtocol::Udp, 0x16), data(&bytes));
        // Lengths above 16 bits (TCP segments with TSO) fold correctly.
        let big = [10, 99, 0, 1, 10, 99, 0, 2, 0, 6, 0x00, 0x01, 0x00, 0x02];
        assert_eq!(
            pseudo_header(src, dst, IpProtocol::Tcp, 0x0001_0002),
            data(&big)
        );
    }

    #[test]
    fn complete_partial_udp_checksum() {
        // The captured datagram "hello shardnet" 10.99.0.1:40000 ->
        // 10.99.0.2:5353 (IPv4 header + UDP), whose real checksum is 0x5720,
        // with its checksum field replaced by the pseudo-header sum, as a
        // sender with TX checksum offload hands it over.
        let mut ip = [
            0x45, 0x00, 0x00, 0x2a, 0x15, 0xa4, 0x40, 0x00, 0x40, 0x11, 0x10, 0x57, 0x0a, 0x63,
            0x00, 0x01, 0x0a, 0x63, 0x00, 0x02, 0x9c, 0x40, 0x14, 0xe9, 0x00, 0x16, 0x57, 0x20,
            0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x73, 0x68, 0x61, 0x72, 0x64, 0x6e, 0x65, 0x74,
        ];
        let src = Ipv4Addr::new(10, 99, 0, 1);
        let dst = Ipv4Addr::new(10, 99, 0, 2);
        let partial = pseudo_header(src, dst, IpProtocol::Udp, 22);
        ip[26..28].copy_from_slice(&partial.to_be_bytes());
        complete_partial(&mut ip, 20, 6).unwrap();
        assert_eq!(&ip[26..28], &[0x57, 0x20]);
        assert_eq!(
            complete_partial(&mut ip, 20, 21),
            Err(super::super::WireError::Truncated)
        );
        assert_eq!(
            complete_partial(&mut ip, usize::MAX, 6),
            Err(super::super::WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn pseudo_header_and_data_matches_combine(bytes in proptest::collection::vec(any::<u8>(), 0..200), src in any::<u32>(), dst in any::<u32>()) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let apart = combine(&[pseudo_header(src, dst, IpProtocol::Udp, bytes.len() as u32), data(&bytes)]);
            prop_assert_eq!(pseudo_header_and_data(src, dst, IpProtocol::Udp, &bytes), apart);
        }

        #[test]
        fn ipv4_header_matches_naive(bytes in proptest::array::uniform20(any::<u8>())) {
            prop_assert_eq!(ipv4_header(&bytes), naive(&bytes));
        }

        #[test]
        fn short_sums_match_naive(bytes in proptest::collection::vec(any::<u8>(), 0..SHORT), skip in 0usize..8) {
            let s = &bytes[skip.min(bytes.len())..];
            prop_assert_eq!(data(s), naive(s));
        }

        #[test]
        fn fast_sum_matches_naive(bytes in proptest::collection::vec(any::<u8>(), 0..2100), skip in 0usize..8) {
            // Every alignment of the slice start.
            let s = &bytes[skip.min(bytes.len())..];
            prop_assert_eq!(data(s), naive(s));
        }

        #[test]
        fn sums_of_even_pieces_combine(bytes in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..100) {
            let cut = (cut * 2).min(bytes.len() & !1);
            prop_assert_eq!(combine(&[data(&bytes[..cut]), data(&bytes[cut..])]), naive(&bytes));
        }

        #[test]
        fn update_matches_recompute(mut words in proptest::collection::vec(any::<u16>(), 2..40), idx in any::<usize>(), new in any::<u16>()) {
            // Keep one word nonzero so the header sum can never be +0 (true
            // of every real IP header), where one's-complement has two zeros.
            words[0] |= 1;
            let idx = 1 + idx % (words.len() - 1);
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            let hc = !data(&bytes);
            let old = words[idx];
            words[idx] = new;
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            prop_assert_eq!(update(hc, old, new), !data(&bytes));
        }

        #[test]
        fn update_u32_matches_recompute(a in any::<u32>(), b in any::<u32>(), other in 1u16..) {
            let before = [other.to_be_bytes(), [0, 0]].concat();
            let mut bytes = before.clone();
            bytes.extend_from_slice(&a.to_be_bytes());
            let hc = !data(&bytes);
            let mut after = before;
            after.extend_from_slice(&b.to_be_bytes());
            prop_assert_eq!(update_u32(hc, a, b), !data(&after));
        }
    }
}
