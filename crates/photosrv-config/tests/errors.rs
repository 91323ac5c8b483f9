//! Every kind of bad config gets an error naming FILE:LINE:COL and what was expected.

use photosrv_config::{Config, ConfigError};
use std::path::Path;

fn errors(text: &str) -> Vec<String> {
    match Config::parse(Path::new("p.cfg"), text.as_bytes()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.diagnostics().iter().map(|d| d.to_string()).collect(),
    }
}

/// A config that loads, and its warnings.
fn with_warnings(text: &str) -> (Config, Vec<String>) {
    let config = Config::parse(Path::new("p.cfg"), text.as_bytes()).unwrap();
    let warnings = config.warnings.iter().map(|w| w.to_string()).collect();
    (config, warnings)
}

fn wrap(shards: &str) -> String {
    format!("<photosrv>\n<dc1>\n<shards>\n{shards}</shards>\n</dc1>\n</photosrv>\n")
}

#[test]
fn bad_shard_lines() {
    assert_eq!(
        errors(&wrap("shardX http://a\n")),
        ["p.cfg:4:1: shard name \"shardx\" must be shard<N>, such as shard1"]
    );
    assert_eq!(
        errors(&wrap("shard1 http://a\nshard01 http://b\n")),
        ["p.cfg:5:1: shard index 1 repeated (first at line 4)"]
    );
    assert_eq!(errors(&wrap("shard1,ten http://a\n")), ["p.cfg:4:8: weight \"ten\" of shard1 is not a number: expected shard<N>,<weight> such as shard1,10"]);
    assert_eq!(errors(&wrap("shard1 http://a ftp://b\n")), ["p.cfg:4:17: node \"ftp://b\" has scheme \"ftp\": expected an http:// or https:// URL with a host, such as http://node1:9001"]);
    assert_eq!(errors(&wrap("shard1 node1:9001\n")), ["p.cfg:4:8: node \"node1:9001\" is not a URL: expected an http:// or https:// URL with a host, such as http://node1:9001"]);
    assert_eq!(errors(&wrap("shard1 http://:9001\n")), ["p.cfg:4:8: node \"http://:9001\" has no host: expected an http:// or https:// URL with a host, such as http://node1:9001"]);
    assert_eq!(
        errors(&wrap("shard1 http://a:99999\n")),
        ["p.cfg:4:8: node \"http://a:99999\" has port 99999: expected a number from 1 to 65535"]
    );
    assert_eq!(
        errors(&wrap("shard1\n")),
        ["p.cfg:4:1: shard1 has no nodes: expected one or more URLs such as http://node1:9001"]
    );
    assert_eq!(
        errors(&wrap("")),
        ["p.cfg:3:1: datacenter <dc1> has no shards: expected lines `shard<N> URL...`"]
    );
}

#[test]
fn bad_structure() {
    assert_eq!(errors("<photosrv>\nchooser ring\n<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n</photosrv>\n"),
        ["p.cfg:2:9: unknown chooser \"ring\": expected \"jump\" or \"chash\""]);
    assert_eq!(
        errors("<photosrv>\n<dc1>\n<shards>\nshard1 http://a\n</dc1>\n</photosrv>\n"),
        [
            "p.cfg:5:1: </dc1> does not match <shards> opened at line 3: expected </shards>",
            "p.cfg:6:1: </photosrv> does not match <shards> opened at line 3: expected </shards>",
            "p.cfg:3:1: <shards> is never closed: expected </shards>",
            "p.cfg:2:1: <dc1> is never closed: expected </dc1>",
            "p.cfg:1:1: <photosrv> is never closed: expected </photosrv>"
        ]
    );
    assert_eq!(errors("<photosrv>\n</photosrv>\n"), ["p.cfg:1:1: <photosrv> has no datacenter: expected a block such as <dc1> holding <shards>"]);
    assert_eq!(
        errors("chooser jump\n"),
        ["p.cfg:1:1: no <photosrv> block: the config must be <photosrv> ... </photosrv>"]
    );
    assert_eq!(
        errors("<photosrv>\n<dc1>\n</dc1>\n</photosrv>\n"),
        ["p.cfg:2:1: datacenter <dc1> has no <shards> block"]
    );
    assert_eq!(errors("<photosrv>\ndc dc9\n<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n</photosrv>\n"),
        ["p.cfg:2:4: no datacenter \"dc9\": the config has dc1"]);
    assert_eq!(errors("<photosrv>\nhead_timeout_ms soon\n<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n</photosrv>\n"),
        ["p.cfg:2:17: \"soon\" is not a number of milliseconds"]);
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let all = errors(&wrap(
        "shardX http://a\nshard2 ftp://b\nshard3,x http://c\n",
    ));
    assert_eq!(all.len(), 3, "{all:?}");
}

#[test]
fn unknown_keys_are_warnings_and_rewrites_are_validated() {
    let text = "<photosrv>\nfrobnicate yes\n<prefix_rewrite>\n/Images/Old/ /images/new/\nnoslash /x\n/a/ /b\n/dup /x\n/dup /y\n/v/ //w/\n</prefix_rewrite>\n<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n</photosrv>\n";
    let (config, warnings) = with_warnings(text);
    assert_eq!(
        warnings,
        [
            "p.cfg:2:1: unknown key \"frobnicate\" in <photosrv>: ignored",
            "p.cfg:5:1: rewrite noslash -> /x ignored: the prefix must start with '/'",
            "p.cfg:6:1: rewrite /a/ -> /b ignored: if one side ends in '/' then both must",
            "p.cfg:7:1: rewrite /dup -> /x ignored: its prefix is given more than once",
            "p.cfg:8:1: rewrite /dup -> /y ignored: its prefix is given more than once",
            "p.cfg:9:1: rewrite /v/ -> //w/ ignored: paths must not contain '//' or dot segments",
        ]
    );
    assert_eq!(config.rewrites.len(), 1);
    assert_eq!(config.rewrites[0].from, "/Images/Old/", "case is kept");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = Config::load(Path::new("/nonexistent/photosrv.cfg")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(
        err.to_string().starts_with("/nonexistent/photosrv.cfg: "),
        "{err}"
    );
}

#[test]
fn settings_are_read() {
    let text = "<photosrv>\nlisten 127.0.0.1:9999\nmode multihead\nhead_timeout_ms 50\nmigration_key \"s3cret\"\n<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n</photosrv>\n";
    let config = Config::parse(Path::new("/etc/photosrv/p.cfg"), text.as_bytes()).unwrap();
    assert_eq!(
        config.settings.listen,
        Some("127.0.0.1:9999".parse().unwrap())
    );
    assert_eq!(config.settings.head_timeout_ms, Some(50));
    assert_eq!(config.settings.migration_key.as_deref(), Some("s3cret"));
    assert_eq!(
        config.resolve(Path::new("roster")),
        Path::new("/etc/photosrv/roster")
    );
}

#[test]
fn misplaced_and_repeated_blocks_and_nodes() {
    assert_eq!(
        errors("<photosrv>\n<shards>\nshard1 http://a\n</shards>\n<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n</photosrv>\n"),
        ["p.cfg:2:1: <shards> must be inside a datacenter block, such as <dc1><shards>...</shards></dc1>"]
    );
    let dc1 = "<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n";
    assert_eq!(
        errors(&format!("<photosrv>\n{dc1}{dc1}</photosrv>\n")),
        ["p.cfg:7:1: datacenter <dc1> defined twice (first at line 2)"]
    );
    assert_eq!(
        errors(&wrap("shard1 http://a:1 http://b:1 http://a:1\n")),
        ["p.cfg:4:30: node http://a:1 is listed twice in shard1"]
    );
}

#[test]
fn several_datacenters_need_a_choice() {
    let text = "<photosrv>\n<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n<DC2>\n<shards>\nshard1 http://b\n</shards>\n</DC2>\n</photosrv>\n";
    let config = Config::parse(Path::new("p.cfg"), text.as_bytes()).unwrap();
    assert_eq!(
        config.select(None).unwrap_err(),
        "the config has several datacenters (dc1, dc2): choose one with --dc or the `dc` setting"
    );
    assert_eq!(config.select(Some("Dc2")).unwrap().primary.name, "dc2");
}

#[test]
fn blocks_where_none_belongs_are_warnings() {
    let text = "<other>\n</other>\n<photosrv>\n<dc1>\n<weights>\n</weights>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n<prefix_rewrite>\n/a/ /b/ /c/\n</prefix_rewrite>\n</photosrv>\n";
    let (config, warnings) = with_warnings(text);
    assert_eq!(
        warnings,
        [
            "p.cfg:1:1: block <other> outside <photosrv>: ignored",
            "p.cfg:5:1: unknown block <weights> in datacenter <dc1>: ignored",
            "p.cfg:12:1: rewrite /a/ -> /b/ /c/ ignored: the replacement must be one path",
        ]
    );
    assert_eq!(config.primary.datacenters[0].shards.len(), 1);
}
