//! The router's reader of node answers: never panics, and the head it forwards from an
//! accepted answer is well-formed with the same header lines.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    photosrv_router::fuzzing::node_answer(data);
});
