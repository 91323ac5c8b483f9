//! Compatibility with the Go photosrv, end to end through our parser: its vector configs
//! place every key where Go did, its example configs load, its rosters parse alike except
//! where docs/compatibility.md says we differ on purpose.

use photosrv_config::{ChooserKind, Config, Roster};
use photosrv_placement::path::{normalize, PathError};
use photosrv_placement::Chooser;
use serde_json::Value;
use std::path::Path;

fn testdata(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn matches_go_photosrv_placement_for_every_vector_config() {
    let v: Value = serde_json::from_str(&testdata("photosrv_chooser_vectors.json")).unwrap();
    let configs = v["configs"].as_object().unwrap();
    assert_eq!(configs.len(), 9);
    let mut checked = 0;
    for (name, text) in configs {
        let config = Config::parse(Path::new(name), text.as_str().unwrap().as_bytes())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let dc = config.select(None).unwrap().primary;
        let names: Vec<&str> = dc.shards.iter().map(|s| s.name.as_str()).collect();
        let chooser = Chooser::new(config.primary.chooser, &names);
        for (key, want) in v["choices"][name].as_object().unwrap() {
            assert_eq!(
                names[chooser.choose(key.as_bytes())],
                want.as_str().unwrap(),
                "{name}: {key:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9 * 209);
}

#[test]
fn chash_is_the_default_and_weights_do_not_move_keys() {
    let v: Value = serde_json::from_str(&testdata("photosrv_chooser_vectors.json")).unwrap();
    let default = Config::parse(
        Path::new("d"),
        v["configs"]["chash_default_3"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(default.primary.chooser, ChooserKind::Chash);
    assert_eq!(v["choices"]["chash_default_3"], v["choices"]["chash_3"]);
    let weighted = Config::parse(
        Path::new("w"),
        v["configs"]["jump_weighted_10_20_30"]
            .as_str()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let weights: Vec<_> = weighted.primary.datacenters[0]
        .shards
        .iter()
        .map(|s| s.weight)
        .collect();
    assert_eq!(weights, [Some(10), Some(20), Some(30)]);
    assert_eq!(
        v["choices"]["jump_weighted_10_20_30"],
        v["choices"]["jump_3"]
    );
}

#[test]
fn loads_both_go_example_configs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/go-examples");
    let simple = Config::load(&dir.join("photosrv.cfg")).unwrap();
    let sel = simple.select(None).unwrap();
    assert_eq!(sel.primary.name, "all");
    assert_eq!(simple.primary.chooser, ChooserKind::Jump);
    assert!(sel.migration.is_none());

    let advanced = Config::load(&dir.join("photosrv-advanced.cfg")).unwrap();
    let sel = advanced.select(None).unwrap();
    assert_eq!(sel.primary.name, "earth");
    assert_eq!(advanced.primary.chooser, ChooserKind::Chash);
    assert_eq!(sel.migration.unwrap().name, "lhr4");
    assert_eq!(
        advanced.migration.as_ref().unwrap().chooser,
        ChooserKind::Jump
    );
    assert_eq!(sel.primary.shards[0].nodes[0].authority, "node1");
    assert_eq!(sel.primary.shards[0].nodes[0].port, 80);

    let roster = Roster::load(&dir.join("photostorage.roster")).unwrap();
    assert_eq!(roster.len(), 4);
    assert!(roster.is_live("127.0.0.1:9003"));
    assert!(!roster.is_live("127.0.0.1:9005"));
}

/// The roster rows of the Go vectors. The inputs are reconstructed from the outputs Go
/// gave; `comment` and `oneField` are the two deliberate differences.
#[test]
fn roster_parses_like_go_except_comments_and_malformed_lines() {
    let v: Value =
        serde_json::from_str(&testdata("photosrv_normalize_rewrite_roster_vectors.json")).unwrap();
    let go = v["roster"].as_object().unwrap();
    let inputs = [
        ("two", "a host1\nb host2\n"),
        ("extra", "node1 host1 extra\n"),
        ("tabs", "node1\thost:9001\n"),
        ("empty", ""),
        ("nl", "\n"),
    ];
    for (name, text) in inputs {
        let roster = Roster::parse(Path::new(name), text.as_bytes()).unwrap();
        let want = go[name].as_object().unwrap();
        assert_eq!(roster.len(), want.len(), "{name}");
        for host in want.keys() {
            assert!(roster.is_live(host), "{name}: {host}");
        }
    }
    // Go: "# 1.2.3.4 host1" makes 1.2.3.4 live. Ours: a comment.
    assert_eq!(go["comment"].as_object().unwrap().len(), 1);
    assert!(Roster::parse(Path::new("c"), b"# 1.2.3.4 host1\n")
        .unwrap()
        .is_empty());
    // Go: a one-field line is skipped. Ours: an error, so a bad file keeps the last good one.
    assert_eq!(go["oneField"].as_object().unwrap().len(), 0);
    let err = Roster::parse(Path::new("r"), b"host1\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "r:1:1: expected two fields: NAME HOST:PORT"
    );
    let err = Roster::parse(Path::new("r"), b"a 1.2.3.4:9001\nb 1.2.3.4:x\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "r:2:3: \"1.2.3.4:x\" is not a HOST:PORT: the port must be a number from 1 to 65535"
    );
}

/// Go's normalizeURL on its vector inputs, beside ours. Go's server decodes the path once
/// before normalizeURL runs, so for inputs without `%` the vector is the request-level
/// outcome; rows marked as differing are in docs/compatibility.md.
#[test]
fn normaliser_matches_go_for_ordinary_paths() {
    let v: Value =
        serde_json::from_str(&testdata("photosrv_normalize_rewrite_roster_vectors.json")).unwrap();
    let go = v["normalizeURL"].as_object().unwrap();
    assert_eq!(go.len(), 23);
    // (input, ours) where ours differs from Go's, with Go's answer checked too.
    let ours_differ: &[(&str, Result<&str, PathError>)] = &[
        ("", Err(PathError::Empty)),  // Go "": then 404 for "/"
        ("/", Err(PathError::Empty)), // Go "/": 404
        ("/%2e%2e/etc/passwd", Err(PathError::DotSegment)), // Go "/": 404
        ("/.hidden", Err(PathError::DotSegment)),
        ("/a%2F..%2Fb", Err(PathError::DotSegment)),
        ("/images/../hello.jpg", Err(PathError::DotSegment)),
        ("/images/./hello.jpg", Err(PathError::DotSegment)),
        ("/images/.jpg", Err(PathError::DotSegment)),
        ("/a%2", Err(PathError::BadEncoding)), // Go "/": 404; ours 400
        ("/a%zz.jpg", Err(PathError::BadEncoding)),
        ("/a%00b", Err(PathError::Nul)),    // Go passes NUL on
        ("///a///b", Ok("/a/b")),           // Go "//a//b": one pass
        ("/a%252Eb", Ok("/a%2Eb")),         // same as Go's function; Go's server decodes twice
        ("/a+b%20c.jpg", Ok("/a+b c.jpg")), // Go's QueryUnescape turns + into space
    ];
    for (input, want_go) in go {
        let want_go = want_go.as_str().unwrap();
        let ours = normalize(input.as_bytes());
        match ours_differ.iter().find(|(i, _)| i == input) {
            Some((_, expected)) => {
                let expected = expected.map(|s| s.as_bytes().to_vec());
                assert_eq!(ours, expected, "{input:?}");
                if let Err(e) = ours {
                    // Every refusal we make, Go refused too (it answered 404 for "/"),
                    // except NUL which Go passed on.
                    assert!(
                        want_go == "/" || want_go.is_empty() || e == PathError::Nul,
                        "{input:?}"
                    );
                }
            }
            None => assert_eq!(ours.as_deref(), Ok(want_go.as_bytes()), "{input:?}"),
        }
    }
}
