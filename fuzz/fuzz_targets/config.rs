//! The config parser returns a config or errors with positions; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photosrv_config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match Config::parse(Path::new("/nonexistent/fuzz.cfg"), data) {
        Ok(config) => {
            // A valid config always selects or explains, and builds choosers.
            if let Ok(selection) = config.select(None) {
                assert!(!selection.primary.shards.is_empty());
            }
        }
        Err(error) => {
            for diagnostic in error.diagnostics() {
                assert!(diagnostic.line >= 1 && diagnostic.col >= 1, "{diagnostic}");
                let _ = diagnostic.render();
            }
        }
    }
});
