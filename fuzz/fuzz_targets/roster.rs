//! The roster parser never panics; what it accepts, it accepts whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photosrv_config::Roster;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(roster) = Roster::parse(Path::new("fuzz.roster"), data) {
        // Every listed host is live; an empty roster means all are.
        let _ = roster.is_live("127.0.0.1:1");
    }
});
