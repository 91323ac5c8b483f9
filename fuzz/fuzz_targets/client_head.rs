//! The router's reader of client request heads, fed in reads of any size: never panics,
//! takes each head it parses off its buffer, refuses with 400 or 431 only; and the head it
//! would send a node for each request parses whole with the expected header lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, data)) = data.split_first() else {
        return;
    };
    photosrv_router::fuzzing::client_request_heads(data, usize::from(piece));
});
