//! Segments of arbitrary bytes against an established connection (see
//! `shardnet::fuzzing::tcp_segments`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shardnet::fuzzing::tcp_segments(data);
});
