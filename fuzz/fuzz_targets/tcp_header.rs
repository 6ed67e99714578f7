//! The TCP header and options parser on arbitrary bytes: never panics, and
//! what parses re-emits to something that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardnet::wire::{TcpHeader, TcpPacket};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = TcpPacket::new_checked(data) else {
        return;
    };
    let _ = packet.payload();
    if let Ok(header) = TcpHeader::parse(&packet) {
        let mut out = vec![0u8; header.header_len()];
        header.emit(&mut out);
        let again = TcpHeader::parse(&TcpPacket::new_checked(&out[..]).unwrap()).unwrap();
        assert_eq!(again.options.mss, header.options.mss);
        assert_eq!(again.options.timestamps, header.options.timestamps);
        assert_eq!(again.flags, header.flags);
    }
});
