//! photosrv's own settings: every key reaches its field, bad values are refused where they
//! stand, and flags override the file key by key.

use photosrv_config::{Config, LogFormat, ReplicaMode, Settings};
use std::path::{Path, PathBuf};

const SHARDS: &str = "<dc1>\n<shards>\nshard1 http://a:9001\n</shards>\n</dc1>\n";

fn config(settings: &str) -> Config {
    let text = format!("<photosrv>\n{settings}{SHARDS}</photosrv>\n");
    Config::parse(Path::new("p.cfg"), text.as_bytes())
        .unwrap_or_else(|e| panic!("refused:\n{text}\n{e}"))
}

fn errors(settings: &str) -> Vec<String> {
    let text = format!("<photosrv>\n{settings}{SHARDS}</photosrv>\n");
    match Config::parse(Path::new("p.cfg"), text.as_bytes()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.diagnostics().iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn every_setting_reaches_its_field_and_none_is_an_unknown_key() {
    let parsed = config(
        "listen 127.0.0.1:8001\n\
         admin_listen 127.0.0.1:8002\n\
         roster live.txt\n\
         dc DC1\n\
         mode multihead\n\
         head_timeout_ms 11\n\
         connect_timeout_ms 12\n\
         upstream_timeout_ms 13\n\
         header_read_timeout_ms 14\n\
         send_timeout_ms 15\n\
         grace_period_ms 16\n\
         reload_poll_ms 17\n\
         max_connections 18\n\
         max_header_bytes 19\n\
         upstream_buffer_bytes 20\n\
         splice_bodies on\n\
         direct_bodies off\n\
         migration_key sesame\n\
         migration_state state.json\n\
         log_format json\n",
    );
    assert_eq!(parsed.warnings, []);
    let s = &parsed.settings;
    assert_eq!(s.listen, Some("127.0.0.1:8001".parse().unwrap()));
    assert_eq!(s.admin_listen, Some("127.0.0.1:8002".parse().unwrap()));
    assert_eq!(s.roster, Some(PathBuf::from("live.txt")));
    assert_eq!(s.dc.as_deref(), Some("DC1"));
    assert_eq!((s.dc_pos.line, s.dc_pos.col), (5, 4));
    assert_eq!(s.mode, Some(ReplicaMode::Multihead));
    assert_eq!(
        [
            s.head_timeout_ms,
            s.connect_timeout_ms,
            s.upstream_timeout_ms,
            s.header_read_timeout_ms,
            s.send_timeout_ms,
            s.grace_period_ms,
            s.reload_poll_ms,
        ],
        [11, 12, 13, 14, 15, 16, 17].map(Some)
    );
    assert_eq!(
        [
            s.max_connections,
            s.max_header_bytes,
            s.upstream_buffer_bytes
        ],
        [18, 19, 20].map(Some)
    );
    assert_eq!(
        (s.splice_bodies, s.direct_bodies),
        (Some(true), Some(false))
    );
    assert_eq!(s.migration_key.as_deref(), Some("sesame"));
    assert_eq!(s.migration_state, Some(PathBuf::from("state.json")));
    assert_eq!(s.log_format, Some(LogFormat::Json));
    // Datacenter names match case-insensitively, as in Go.
    assert_eq!(parsed.select(None).unwrap().primary.name, "dc1");
}

#[test]
fn the_other_value_of_each_choice() {
    let s = config("mode random\nsplice_bodies off\ndirect_bodies on\nlog_format text\n").settings;
    assert_eq!(s.mode, Some(ReplicaMode::Random));
    assert_eq!(
        (s.splice_bodies, s.direct_bodies),
        (Some(false), Some(true))
    );
    assert_eq!(s.log_format, Some(LogFormat::Text));
    assert_eq!(config("").settings, Settings::default());
}

#[test]
fn a_bad_value_is_refused_where_it_stands() {
    assert_eq!(
        errors("splice_bodies yes\n"),
        ["p.cfg:2:15: \"yes\" is not on or off"]
    );
    assert_eq!(
        errors("direct_bodies ON\n"),
        ["p.cfg:2:15: \"ON\" is not on or off"]
    );
    assert_eq!(
        errors("mode fastest\n"),
        ["p.cfg:2:6: unknown mode \"fastest\": expected \"random\" or \"multihead\""]
    );
    assert_eq!(
        errors("log_format xml\n"),
        ["p.cfg:2:12: unknown log format \"xml\": expected \"text\" or \"json\""]
    );
    assert_eq!(
        errors("max_connections many\n"),
        ["p.cfg:2:17: \"many\" is not a number of connections"]
    );
    assert_eq!(
        errors("listen 8888\n"),
        ["p.cfg:2:8: \"8888\" is not an address such as 127.0.0.1:8888"]
    );
    assert_eq!(errors("roster\n"), ["p.cfg:2:7: roster needs a value"]);
    assert_eq!(
        errors("mode random\nmode multihead\n"),
        ["p.cfg:3:1: mode given twice (first at line 2)"]
    );
}

#[test]
fn flags_override_the_file_key_by_key() {
    let file =
        config("listen 127.0.0.1:8001\nmode multihead\ndc dc1\nhead_timeout_ms 50\n").settings;
    let flags = Settings {
        listen: Some("127.0.0.1:9001".parse().unwrap()),
        head_timeout_ms: Some(70),
        log_format: Some(LogFormat::Json),
        ..Settings::default()
    };
    let merged = flags.over(file.clone());
    assert_eq!(merged.listen, Some("127.0.0.1:9001".parse().unwrap()));
    assert_eq!(merged.head_timeout_ms, Some(70));
    assert_eq!(merged.log_format, Some(LogFormat::Json));
    assert_eq!(merged.mode, Some(ReplicaMode::Multihead));
    assert_eq!(merged.dc.as_deref(), Some("dc1"));
    assert_eq!(merged.dc_pos, file.dc_pos);
    // Over nothing, the file is kept as it is.
    assert_eq!(Settings::default().over(file.clone()), file);
}
