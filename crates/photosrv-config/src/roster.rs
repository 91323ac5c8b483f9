//! The roster: which `host:port`s are live.
//!
//! Compatible with the Go photosrv: on each line the second white-space separated field is
//! a live `host:port`, and an empty roster means every node is live (fail-open: an empty
//! file is far more often a deploy mistake than a whole cluster down). Two deliberate
//! differences, in `docs/compatibility.md`: a line starting with `#` is a comment (Go made
//! `# 1.2.3.4 host1` mark `1.2.3.4` live), and a line that is not `NAME HOST:PORT` is an
//! error that keeps the last good roster, not a line silently skipped.

use crate::authority;
use crate::diagnostic::{ConfigError, Diagnostic};
use std::collections::HashSet;
use std::path::Path;

/// The set of live node authorities (`host:port`, as node URLs write them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roster {
    live: HashSet<String>,
}

impl Roster {
    /// A roster that lists no host: every node is live.
    pub fn all_live() -> Roster {
        Roster::default()
    }

    /// Reads and parses the roster file at `path`.
    pub fn load(path: &Path) -> Result<Roster, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Roster::parse(path, &bytes)
    }

    /// Parses roster text; `path` names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Roster, ConfigError> {
        let mut live = HashSet::new();
        let mut errors = Vec::new();
        for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let number = number as u32 + 1;
            let Ok(line) = std::str::from_utf8(line) else {
                errors.push(Diagnostic::new(path, number, 1, "line is not valid UTF-8"));
                continue;
            };
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let _name = fields.next();
            let Some(host) = fields.next() else {
                let col = (line.len() - trimmed.len()) as u32 + 1;
                errors.push(
                    Diagnostic::new(path, number, col, "expected two fields: NAME HOST:PORT")
                        .with_source_line(line),
                );
                continue;
            };
            let col = line[..host.as_ptr() as usize - line.as_ptr() as usize]
                .chars()
                .count() as u32
                + 1;
            if let Err(why) = check_authority(host) {
                errors.push(Diagnostic::new(path, number, col, why).with_source_line(line));
                continue;
            }
            live.insert(host.to_ascii_lowercase());
        }
        if errors.is_empty() {
            Ok(Roster { live })
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Whether the roster lists no host at all (and so every node counts as live).
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// How many hosts it lists.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether the node with this `host[:port]` is live.
    pub fn is_live(&self, authority: &str) -> bool {
        self.live.is_empty() || self.live.contains(&authority.to_ascii_lowercase())
    }
}

fn check_authority(host: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{host:?} is not a HOST:PORT: {why}"));
    if host.contains(['/', '@', '?', '#']) || host.chars().any(|c| c.is_control()) {
        return bad("only a host and a port may be given");
    }
    match authority::split(host) {
        Ok(_) => Ok(()),
        Err(error) => bad(&error.to_string()),
    }
}
