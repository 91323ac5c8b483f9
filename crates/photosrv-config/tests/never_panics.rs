//! The parsers return errors, never panic, on any input (the fuzz targets go further).

use photosrv_config::{Config, Roster};
use proptest::prelude::*;
use std::path::Path;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn config_parser_never_panics(text in "(<|>|/|photosrv|shards|dc1|shard1|,|[0-9]|http://|a|:| |\t|\n|\\\\|\"|#|<<|EOT|include|chooser|jump)*") {
        let _ = Config::parse(Path::new("/nonexistent/fuzz.cfg"), text.as_bytes());
    }

    #[test]
    fn config_parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Config::parse(Path::new("/nonexistent/fuzz.cfg"), &bytes);
    }

    #[test]
    fn roster_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Roster::parse(Path::new("fuzz.roster"), &bytes);
    }
}
