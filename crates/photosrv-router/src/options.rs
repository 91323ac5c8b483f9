//! The router's effective settings: command-line flags over the config file over defaults.
//! Every default is documented in `docs/configuration.md`.

use photosrv_config::{Config, LogFormat, ReplicaMode, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the router needs to know besides the routing table.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// The config file (re-read on reload).
    pub config_path: PathBuf,
    /// The roster file, if any (re-read on reload).
    pub roster_path: Option<PathBuf>,
    /// The datacenter to serve from.
    pub dc: Option<String>,
    /// Client-facing address.
    pub listen: SocketAddr,
    /// Admin address.
    pub admin_listen: SocketAddr,
    /// Replica choice.
    pub mode: ReplicaMode,
    /// How long a multi-HEAD race waits for a winner.
    pub head_timeout: Duration,
    /// TCP connect timeout to a node.
    pub connect_timeout: Duration,
    /// Time from sending a request to a node to its response headers (and a body of at
    /// most 8 KiB, read with them); also the longest a node may go silent mid-body.
    pub upstream_timeout: Duration,
    /// Time a client has to send its request head (also the keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// The longest a client may take no bytes of a response before its connection is closed.
    pub send_timeout: Duration,
    /// How long in-flight requests may finish after a stop signal.
    pub grace_period: Duration,
    /// Fallback poll interval for config and roster changes.
    pub reload_poll: Duration,
    /// Client connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request head accepted (431 beyond).
    pub max_header_bytes: usize,
    /// The most read from a node at once, per connection: each kept connection that carried
    /// a large body holds a read buffer up to this big while it lives.
    pub upstream_buffer_bytes: usize,
    /// Whether a node's Content-Length body goes to an HTTP/1 client by splice(2) rather
    /// than through the router's memory (off by default: docs/configuration.md says why).
    pub splice_bodies: bool,
    /// Whether a node's Content-Length body is copied to an HTTP/1 client by the client
    /// connection's own task rather than by a reader task one piece ahead (off by default:
    /// docs/configuration.md says why). Spliced bodies that get no pipe are copied so too.
    pub direct_bodies: bool,
    /// The secret for migration switching; switching is refused without one.
    pub migration_key: Option<String>,
    /// Where the migration state is kept.
    pub migration_state: Option<PathBuf>,
    /// Log line format.
    pub log_format: LogFormat,
}

impl RouterOptions {
    /// Resolves `flags` over the settings of `config` over the defaults. Paths in the file
    /// are relative to the file's directory; paths in flags are as given.
    pub fn resolve(config: &Config, flags: Settings) -> RouterOptions {
        let mut file = config.settings.clone();
        file.roster = file.roster.map(|p| config.resolve(&p));
        file.migration_state = file.migration_state.map(|p| config.resolve(&p));
        let s = flags.over(file);
        let ms = |value: Option<u64>, default: u64| Duration::from_millis(value.unwrap_or(default));
        // Go enabled multi-HEAD by a head timeout > 0; keep that when no mode is given.
        let mode = s.mode.unwrap_or(match s.head_timeout_ms {
            Some(t) if t > 0 => ReplicaMode::Multihead,
            _ => ReplicaMode::Random,
        });
        RouterOptions {
            config_path: config.path.clone(),
            roster_path: s.roster,
            dc: s.dc,
            listen: s
                .listen
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8888))),
            admin_listen: s
                .admin_listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            mode,
            head_timeout: ms(s.head_timeout_ms.filter(|&t| t > 0), 200),
            connect_timeout: ms(s.connect_timeout_ms, 1_000),
            upstream_timeout: ms(s.upstream_timeout_ms, 15_000),
            header_read_timeout: ms(s.header_read_timeout_ms, 10_000),
            // nginx's send_timeout: a photo on a slow link moves within a minute or is dead.
            send_timeout: ms(s.send_timeout_ms, 60_000),
            grace_period: ms(s.grace_period_ms, 30_000),
            reload_poll: ms(s.reload_poll_ms, 1_000),
            max_connections: s.max_connections.unwrap_or(10_000),
            max_header_bytes: s.max_header_bytes.unwrap_or(64 * 1024).max(8192),
            // A response's first read is 8 KiB (`h1::FIRST_READ`): smaller reads would only add
            // system calls.
            upstream_buffer_bytes: s.upstream_buffer_bytes.unwrap_or(128 * 1024).max(8192),
            splice_bodies: s.splice_bodies.unwrap_or(false),
            direct_bodies: s.direct_bodies.unwrap_or(false),
            migration_key: s.migration_key.filter(|k| !k.is_empty()),
            migration_state: s.migration_state,
            log_format: s.log_format.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_binds_loopback_unless_told_otherwise_and_flags_win() {
        let text = "<photosrv>\nlisten 127.0.0.1:7000\nhead_timeout_ms 50\n<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n</photosrv>\n";
        let config =
            Config::parse(std::path::Path::new("/etc/photosrv/p.cfg"), text.as_bytes()).unwrap();
        let options = RouterOptions::resolve(&config, Settings::default());
        assert!(
            options.admin_listen.ip().is_loopback(),
            "{}",
            options.admin_listen
        );
        assert_eq!(options.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(
            options.mode,
            ReplicaMode::Multihead,
            "Go: a head timeout alone turns multi-HEAD on"
        );
        assert_eq!(options.migration_key, None, "no key: switching refused");
        let flags = Settings {
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            mode: Some(ReplicaMode::Random),
            ..Settings::default()
        };
        let options = RouterOptions::resolve(&config, flags);
        assert_eq!(options.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(options.mode, ReplicaMode::Random);
    }

    /// With nothing set, every option is the default docs/configuration.md gives.
    #[test]
    fn defaults_are_the_documented_ones() {
        let o = RouterOptions::resolve(&config_with("").unwrap(), Settings::default());
        let ms = Duration::from_millis;
        assert_eq!(o.listen, "0.0.0.0:8888".parse().unwrap());
        assert_eq!(o.admin_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((o.roster_path, o.dc), (None, None));
        assert_eq!(o.mode, ReplicaMode::Random);
        let timeouts = [
            o.head_timeout,
            o.connect_timeout,
            o.upstream_timeout,
            o.header_read_timeout,
            o.send_timeout,
            o.grace_period,
            o.reload_poll,
        ];
        let documented = [200, 1_000, 15_000, 10_000, 60_000, 30_000, 1_000].map(ms);
        assert_eq!(timeouts, documented);
        assert_eq!(o.max_connections, 10_000);
        assert_eq!(o.max_header_bytes, 65_536);
        assert_eq!(o.upstream_buffer_bytes, 131_072);
        assert_eq!((o.migration_key, o.migration_state), (None, None));
        assert_eq!(o.log_format, LogFormat::Text);
    }

    /// As in Go, a head timeout of 0 means no multi-HEAD: random mode, and the default
    /// timeout should multihead be asked for.
    #[test]
    fn a_head_timeout_of_zero_turns_multihead_off() {
        let resolve = |setting: &str| {
            let o = RouterOptions::resolve(&config_with(setting).unwrap(), Settings::default());
            (o.mode, o.head_timeout)
        };
        let ms = Duration::from_millis;
        assert_eq!(resolve("head_timeout_ms 0"), (ReplicaMode::Random, ms(200)));
        assert_eq!(
            resolve("head_timeout_ms 1"),
            (ReplicaMode::Multihead, ms(1))
        );
        assert_eq!(
            resolve("mode multihead\nhead_timeout_ms 0"),
            (ReplicaMode::Multihead, ms(200))
        );
    }

    /// A config with `setting` in its `<photosrv>` block.
    fn config_with(setting: &str) -> Result<Config, photosrv_config::ConfigError> {
        let text = format!("<photosrv>\n{setting}\n<dc1>\n<shards>\nshard1 http://a\n</shards>\n</dc1>\n</photosrv>\n");
        Config::parse(std::path::Path::new("/p.cfg"), text.as_bytes())
    }

    #[test]
    fn upstream_buffer_defaults_to_128_kib_and_never_goes_below_8_kib() {
        let parse = |setting: &str| {
            RouterOptions::resolve(&config_with(setting).unwrap(), Settings::default())
                .upstream_buffer_bytes
        };
        assert_eq!(parse(""), 128 * 1024);
        assert_eq!(parse("upstream_buffer_bytes 65536"), 64 * 1024);
        assert_eq!(parse("upstream_buffer_bytes 100"), 8192);
        let error = config_with("upstream_buffer_bytes lots").unwrap_err();
        assert!(error.to_string().contains("/p.cfg:2:23"), "{error}");
    }

    #[test]
    fn splicing_and_direct_copying_are_off_unless_turned_on() {
        let parse = |setting: &str| {
            let options =
                RouterOptions::resolve(&config_with(setting).unwrap(), Settings::default());
            (options.splice_bodies, options.direct_bodies)
        };
        assert_eq!(parse(""), (false, false));
        assert_eq!(parse("splice_bodies on"), (true, false));
        assert_eq!(parse("splice_bodies off"), (false, false));
        assert_eq!(parse("direct_bodies on"), (false, true));
        assert_eq!(parse("direct_bodies off"), (false, false));
        for (setting, column) in [("splice_bodies yes", 15), ("direct_bodies 1", 15)] {
            let error = config_with(setting).unwrap_err();
            assert!(
                error.to_string().contains(&format!("/p.cfg:2:{column}")),
                "{error}"
            );
            assert!(error.to_string().contains("not on or off"), "{error}");
        }
    }
}
