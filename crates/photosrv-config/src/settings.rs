//! photosrv's own settings, which live in the `<photosrv>` block beside the shards.
//! Every one is documented in `docs/configuration.md`; command-line flags override them.

use crate::syntax::{Block, Item, Pos};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// How the router picks a replica inside a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaMode {
    /// A uniformly random node, then the others in random order on failure.
    #[default]
    Random,
    /// HEAD every node at once; the first to answer 2xx/3xx serves the GET.
    Multihead,
}

impl FromStr for ReplicaMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(ReplicaMode::Random),
            "multihead" => Ok(ReplicaMode::Multihead),
            _ => Err(format!(
                "unknown mode {s:?}: expected \"random\" or \"multihead\""
            )),
        }
    }
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown log format {s:?}: expected \"text\" or \"json\""
            )),
        }
    }
}

/// The settings found in the file; `None` where the file is silent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `listen`: the client-facing address.
    pub listen: Option<SocketAddr>,
    /// `admin_listen`: metrics, health and migration switching.
    pub admin_listen: Option<SocketAddr>,
    /// `roster`: the live-hosts file, relative to the config's directory.
    pub roster: Option<PathBuf>,
    /// `dc`: the datacenter to serve from.
    pub dc: Option<String>,
    /// Where `dc` was set, to point at it when it names no datacenter.
    pub dc_pos: Pos,
    /// `mode`: `random` or `multihead`.
    pub mode: Option<ReplicaMode>,
    /// `head_timeout_ms`: how long a multi-HEAD race waits.
    pub head_timeout_ms: Option<u64>,
    /// `connect_timeout_ms`: TCP connect to a node.
    pub connect_timeout_ms: Option<u64>,
    /// `upstream_timeout_ms`: from sending a request to a node to its response headers.
    pub upstream_timeout_ms: Option<u64>,
    /// `header_read_timeout_ms`: how long a client may take to send its request headers.
    pub header_read_timeout_ms: Option<u64>,
    /// `send_timeout_ms`: how long a client may take no bytes of a response.
    pub send_timeout_ms: Option<u64>,
    /// `grace_period_ms`: how long in-flight requests may run after SIGTERM.
    pub grace_period_ms: Option<u64>,
    /// `reload_poll_ms`: the fallback poll interval of the config and roster watcher.
    pub reload_poll_ms: Option<u64>,
    /// `max_connections`: client connections served at once.
    pub max_connections: Option<usize>,
    /// `max_header_bytes`: the largest request head accepted.
    pub max_header_bytes: Option<usize>,
    /// `upstream_buffer_bytes`: the most read from a node at once, per connection.
    pub upstream_buffer_bytes: Option<usize>,
    /// `splice_bodies on|off`: pass large bodies on with splice(2) instead of copying them.
    pub splice_bodies: Option<bool>,
    /// `direct_bodies on|off`: copy large bodies in the client connection's task instead of
    /// a reader task of their own.
    pub direct_bodies: Option<bool>,
    /// `migration_key`: the secret that migration switching requires.
    pub migration_key: Option<String>,
    /// `migration_state`: the file the migration state is kept in.
    pub migration_state: Option<PathBuf>,
    /// `log_format`: `text` or `json`.
    pub log_format: Option<LogFormat>,
}

const KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "roster",
    "dc",
    "mode",
    "head_timeout_ms",
    "connect_timeout_ms",
    "upstream_timeout_ms",
    "header_read_timeout_ms",
    "send_timeout_ms",
    "grace_period_ms",
    "reload_poll_ms",
    "max_connections",
    "max_header_bytes",
    "upstream_buffer_bytes",
    "splice_bodies",
    "direct_bodies",
    "migration_key",
    "migration_state",
    "log_format",
];

fn parse<T: FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse::<T>()
        .map_err(|_| format!("{text:?} is not {what}"))
}

fn on_or_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{text:?} is not on or off")),
    }
}

impl Settings {
    /// `self` where it has a value, `under` elsewhere: flags over the file.
    pub fn over(self, under: Settings) -> Settings {
        Settings {
            listen: self.listen.or(under.listen),
            admin_listen: self.admin_listen.or(under.admin_listen),
            roster: self.roster.or(under.roster),
            dc_pos: if self.dc.is_some() {
                self.dc_pos
            } else {
                under.dc_pos
            },
            dc: self.dc.or(under.dc),
            mode: self.mode.or(under.mode),
            head_timeout_ms: self.head_timeout_ms.or(under.head_timeout_ms),
            connect_timeout_ms: self.connect_timeout_ms.or(under.connect_timeout_ms),
            upstream_timeout_ms: self.upstream_timeout_ms.or(under.upstream_timeout_ms),
            header_read_timeout_ms: self.header_read_timeout_ms.or(under.header_read_timeout_ms),
            send_timeout_ms: self.send_timeout_ms.or(under.send_timeout_ms),
            grace_period_ms: self.grace_period_ms.or(under.grace_period_ms),
            reload_poll_ms: self.reload_poll_ms.or(under.reload_poll_ms),
            max_connections: self.max_connections.or(under.max_connections),
            max_header_bytes: self.max_header_bytes.or(under.max_header_bytes),
            upstream_buffer_bytes: self.upstream_buffer_bytes.or(under.upstream_buffer_bytes),
            splice_bodies: self.splice_bodies.or(under.splice_bodies),
            direct_bodies: self.direct_bodies.or(under.direct_bodies),
            migration_key: self.migration_key.or(under.migration_key),
            migration_state: self.migration_state.or(under.migration_state),
            log_format: self.log_format.or(under.log_format),
        }
    }

    /// Whether `key` is one of ours.
    pub fn is_key(key: &str) -> bool {
        KEYS.contains(&key)
    }

    /// Reads the settings among `block`'s entries, reporting bad values to `error`.
    pub(crate) fn from_block(block: &Block, error: &mut dyn FnMut(Pos, String)) -> Settings {
        let mut s = Settings::default();
        let mut seen: Vec<(&str, Pos)> = Vec::new();
        for item in &block.items {
            let Item::Entry(entry) = item else { continue };
            let key = entry.key.as_str();
            if !Settings::is_key(key) {
                continue;
            }
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                error(
                    entry.pos,
                    format!("{key} given twice (first at line {})", first.line),
                );
                continue;
            }
            seen.push((key, entry.pos));
            let text = entry.value.text.trim();
            let ms = "a number of milliseconds";
            let result: Result<(), String> = (|| {
                if text.is_empty() {
                    return Err(format!("{key} needs a value"));
                }
                match key {
                    "listen" => s.listen = Some(parse(text, "an address such as 127.0.0.1:8888")?),
                    "admin_listen" => {
                        s.admin_listen = Some(parse(text, "an address such as 127.0.0.1:8080")?)
                    }
                    "roster" => s.roster = Some(PathBuf::from(text)),
                    "dc" => {
                        s.dc = Some(text.to_owned());
                        s.dc_pos = entry.value.pos();
                    }
                    "mode" => s.mode = Some(text.parse()?),
                    "head_timeout_ms" => s.head_timeout_ms = Some(parse(text, ms)?),
                    "connect_timeout_ms" => s.connect_timeout_ms = Some(parse(text, ms)?),
                    "upstream_timeout_ms" => s.upstream_timeout_ms = Some(parse(text, ms)?),
                    "header_read_timeout_ms" => s.header_read_timeout_ms = Some(parse(text, ms)?),
                    "send_timeout_ms" => s.send_timeout_ms = Some(parse(text, ms)?),
                    "grace_period_ms" => s.grace_period_ms = Some(parse(text, ms)?),
                    "reload_poll_ms" => s.reload_poll_ms = Some(parse(text, ms)?),
                    "max_connections" => {
                        s.max_connections = Some(parse(text, "a number of connections")?)
                    }
                    "max_header_bytes" => {
                        s.max_header_bytes = Some(parse(text, "a number of bytes")?)
                    }
                    "upstream_buffer_bytes" => {
                        s.upstream_buffer_bytes = Some(parse(text, "a number of bytes")?)
                    }
                    "splice_bodies" => s.splice_bodies = Some(on_or_off(text)?),
                    "direct_bodies" => s.direct_bodies = Some(on_or_off(text)?),
                    "migration_key" => s.migration_key = Some(text.to_owned()),
                    "migration_state" => s.migration_state = Some(PathBuf::from(text)),
                    "log_format" => s.log_format = Some(text.parse()?),
                    _ => unreachable!("every key of KEYS is handled"),
                }
                Ok(())
            })();
            if let Err(message) = result {
                error(entry.value.pos(), message);
            }
        }
        s
    }
}
