//! Syntax tree -> validated, typed config.

use crate::authority::{self, AuthorityError};
use crate::diagnostic::{ConfigError, Diagnostic};
use crate::settings::Settings;
use crate::syntax::{self, Block, Document, Entry, Item, Pos, Sources};
use photosrv_placement::path::RewriteRule;
use photosrv_placement::ChooserKind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A validated photosrv config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main config file.
    pub path: PathBuf,
    /// Our own settings (listen addresses, timeouts, ...); command-line flags override them.
    pub settings: Settings,
    /// The ring requests are served from.
    pub primary: Ring,
    /// The `<migration>` ring, when there is one.
    pub migration: Option<Ring>,
    /// The prefix rewrites that passed validation.
    pub rewrites: Vec<RewriteRule>,
    /// Things that are not errors but deserve a look: unknown keys, dropped rewrites.
    pub warnings: Vec<Diagnostic>,
    /// Every file read (the config and its includes) and its text.
    pub sources: Sources,
}

/// A set of datacenters with one chooser: the main ring or the migration ring.
#[derive(Debug, Clone)]
pub struct Ring {
    /// How keys map to shards.
    pub chooser: ChooserKind,
    /// The datacenters, in file order.
    pub datacenters: Vec<Datacenter>,
}

/// A datacenter block: its shards, in shard-index order.
#[derive(Debug, Clone)]
pub struct Datacenter {
    /// The block name, lowercased (datacenter names match case-insensitively, as in Go).
    pub name: String,
    /// The shards, sorted by index: `shard1, shard2, shard5` are buckets 0, 1, 2.
    pub shards: Vec<Shard>,
}

/// One shard: a name, an index and the nodes that each hold a full copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// `shard<N>` as written (lowercased), without the weight: chash hashes this name.
    pub name: String,
    /// N.
    pub index: u64,
    /// The weight after the comma: parsed, and ignored by placement as in Go.
    pub weight: Option<u64>,
    /// The replicas.
    pub nodes: Vec<NodeAddr>,
}

/// A storage node's base URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// The URL as written.
    pub url: String,
    /// `true` for https.
    pub tls: bool,
    /// `host[:port]` as written: what the roster lists (Go compares `url.Host`).
    pub authority: String,
    /// The host alone.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The path prefix of the URL, without a trailing `/` (often empty).
    pub base_path: String,
}

impl NodeAddr {
    /// Parses `http[s]://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<NodeAddr, String> {
        let expected = "expected an http:// or https:// URL with a host, such as http://node1:9001";
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("node {url:?} is not a URL: {expected}"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(format!("node {url:?} has scheme {scheme:?}: {expected}")),
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(format!("node {url:?} has a query or fragment: {expected}"));
        }
        if authority.contains('@') {
            return Err(format!(
                "node {url:?} has user info, which is not supported"
            ));
        }
        let (host, port) = authority::split(authority).map_err(|error| match error {
            AuthorityError::EmptyHost => format!("node {url:?} has no host: {expected}"),
            AuthorityError::BadPort(port)
                if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() =>
            {
                format!("node {url:?} has port {port}: expected a number from 1 to 65535")
            }
            AuthorityError::BadPort(port) => {
                format!("node {url:?} has port {port:?}: expected a number from 1 to 65535")
            }
            other => format!("node {url:?}: {other}"),
        })?;
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        Ok(NodeAddr {
            url: url.to_owned(),
            tls,
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// The datacenters of both rings that a router or client serves from.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// The primary ring's datacenter.
    pub primary: &'a Datacenter,
    /// The migration ring's datacenter, when there is a migration ring.
    pub migration: Option<&'a Datacenter>,
}

impl Ring {
    /// The datacenter named `dc` (case-insensitively), or the only one when `dc` is `None`.
    pub fn datacenter(&self, dc: Option<&str>) -> Result<&Datacenter, String> {
        let names = || {
            self.datacenters
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match dc {
            Some(name) => {
                let wanted = name.to_lowercase();
                self.datacenters
                    .iter()
                    .find(|d| d.name == wanted)
                    .ok_or_else(|| format!("no datacenter {name:?}: the config has {}", names()))
            }
            None if self.datacenters.len() == 1 => Ok(&self.datacenters[0]),
            None => Err(format!(
                "the config has several datacenters ({}): choose one with --dc or the `dc` setting",
                names()
            )),
        }
    }
}

impl Config {
    /// Reads, parses and validates the config at `path` and its includes.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let document = syntax::parse_file(path)?;
        validate(path, document)
    }

    /// Parses and validates `bytes` as the content of `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
        let document = syntax::parse_bytes(path, bytes)?;
        validate(path, document)
    }

    /// The datacenters to serve from: `dc` (or the config's `dc` setting, or the only
    /// datacenter) in the primary ring; in the migration ring the datacenter of the same
    /// name, or its only one (the Go examples name them differently).
    pub fn select(&self, dc: Option<&str>) -> Result<Selection<'_>, String> {
        let dc = dc.or(self.settings.dc.as_deref());
        let primary = self.primary.datacenter(dc)?;
        let migration = match &self.migration {
            None => None,
            Some(ring) => Some(
                ring.datacenter(Some(&primary.name))
                    .or_else(|_| ring.datacenter(None))
                    .map_err(|e| format!("migration ring: {e}"))?,
            ),
        };
        Ok(Selection { primary, migration })
    }

    /// A path from the config, relative to the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(path)
    }
}

struct Validator<'a> {
    sources: &'a Sources,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(self.sources.diagnostic(pos, message));
    }

    fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.warnings.push(self.sources.diagnostic(pos, message));
    }

    /// A ring from the items of `<photosrv>` or `<migration>`. Settings are read by the
    /// caller; here they are skipped (`is_setting`).
    fn ring(&mut self, block: &Block, is_setting: &dyn Fn(&str) -> bool) -> Option<Ring> {
        let mut chooser: Option<(ChooserKind, Pos)> = None;
        let mut datacenters: Vec<(Datacenter, Pos)> = Vec::new();
        let mut saw_datacenter = false;
        for item in &block.items {
            match item {
                Item::Entry(entry) if entry.key == "chooser" => {
                    if let Some((_, first)) = chooser {
                        self.error(entry.pos, format!("chooser given twice (first at line {})", first.line));
                        continue;
                    }
                    match entry.value.text.trim().parse::<ChooserKind>() {
                        Ok(kind) => chooser = Some((kind, entry.pos)),
                        Err(e) => self.error(entry.value.pos(), e.to_string()),
                    }
                }
                Item::Entry(entry) if is_setting(&entry.key) => {}
                Item::Entry(entry) => {
                    self.warn(entry.pos, format!("unknown key {:?} in <{}>: ignored", entry.key, block.name))
                }
                Item::Block(b) if b.name == "prefix_rewrite" || b.name == "migration" => {}
                Item::Block(b) if b.name == "shards" => self.error(
                    b.pos,
                    "<shards> must be inside a datacenter block, such as <dc1><shards>...</shards></dc1>",
                ),
                Item::Block(b) => {
                    saw_datacenter = true;
                    if let Some((_, first)) = datacenters.iter().find(|(d, _)| d.name == b.name) {
                        let line = first.line;
                        self.error(b.pos, format!("datacenter <{}> defined twice (first at line {line})", b.name));
                        continue;
                    }
                    if let Some(dc) = self.datacenter(b) {
                        datacenters.push((dc, b.pos));
                    }
                }
            }
        }
        if datacenters.is_empty() {
            if saw_datacenter {
                return None;
            }
            self.error(
                block.pos,
                format!(
                    "<{}> has no datacenter: expected a block such as <dc1> holding <shards>",
                    block.name
                ),
            );
            return None;
        }
        Some(Ring {
            chooser: chooser.map(|(kind, _)| kind).unwrap_or_default(),
            datacenters: datacenters.into_iter().map(|(dc, _)| dc).collect(),
        })
    }

    fn datacenter(&mut self, block: &Block) -> Option<Datacenter> {
        let mut shards_block: Option<&Block> = None;
        for item in &block.items {
            match item {
                Item::Block(b) if b.name == "shards" => {
                    if let Some(first) = shards_block {
                        self.error(
                            b.pos,
                            format!(
                                "<shards> given twice in <{}> (first at line {})",
                                block.name, first.pos.line
                            ),
                        );
                    } else {
                        shards_block = Some(b);
                    }
                }
                Item::Block(b) => self.warn(
                    b.pos,
                    format!(
                        "unknown block <{}> in datacenter <{}>: ignored",
                        b.name, block.name
                    ),
                ),
                Item::Entry(e) => self.warn(
                    e.pos,
                    format!(
                        "unknown key {:?} in datacenter <{}>: ignored",
                        e.key, block.name
                    ),
                ),
            }
        }
        let Some(shards_block) = shards_block else {
            self.error(
                block.pos,
                format!("datacenter <{}> has no <shards> block", block.name),
            );
            return None;
        };
        let mut shards: BTreeMap<u64, (Shard, Pos)> = BTreeMap::new();
        let errors_before = self.errors.len();
        for item in &shards_block.items {
            match item {
                Item::Block(b) => self.error(
                    b.pos,
                    format!(
                        "unexpected block <{}> in <shards>: expected lines `shard<N> URL...`",
                        b.name
                    ),
                ),
                Item::Entry(entry) => {
                    if let Some(shard) = self.shard(entry) {
                        if let Some((_, first)) = shards.get(&shard.index) {
                            let line = first.line;
                            self.error(
                                entry.pos,
                                format!(
                                    "shard index {} repeated (first at line {line})",
                                    shard.index
                                ),
                            );
                        } else {
                            shards.insert(shard.index, (shard, entry.pos));
                        }
                    }
                }
            }
        }
        if shards.is_empty() && self.errors.len() == errors_before {
            self.error(
                shards_block.pos,
                format!(
                    "datacenter <{}> has no shards: expected lines `shard<N> URL...`",
                    block.name
                ),
            );
        }
        Some(Datacenter {
            name: block.name.clone(),
            shards: shards.into_values().map(|(shard, _)| shard).collect(),
        })
    }

    fn shard(&mut self, entry: &Entry) -> Option<Shard> {
        let (name, weight) = match entry.key.split_once(',') {
            Some((name, weight)) => (name, Some(weight)),
            None => (entry.key.as_str(), None),
        };
        let index = match name.strip_prefix("shard") {
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                match digits.parse::<u64>() {
                    Ok(index) => index,
                    Err(_) => {
                        self.error(entry.pos, format!("shard index {digits} is too large"));
                        return None;
                    }
                }
            }
            _ => {
                self.error(
                    entry.pos,
                    format!("shard name {name:?} must be shard<N>, such as shard1"),
                );
                return None;
            }
        };
        let weight = match weight {
            None => None,
            Some(w) => match w.parse::<u64>() {
                Ok(w) => Some(w),
                Err(_) => {
                    let col = entry.pos.col + name.chars().count() as u32 + 1;
                    self.error(Pos { col, ..entry.pos }, format!("weight {w:?} of {name} is not a number: expected shard<N>,<weight> such as shard1,10"));
                    return None;
                }
            },
        };
        let mut nodes = Vec::new();
        let mut ok = true;
        for (word, pos) in entry.value.words() {
            match NodeAddr::parse(word) {
                Ok(node) if nodes.contains(&node) => {
                    self.error(pos, format!("node {word} is listed twice in {name}"));
                    ok = false;
                }
                Ok(node) => nodes.push(node),
                Err(message) => {
                    self.error(pos, message);
                    ok = false;
                }
            }
        }
        if nodes.is_empty() && ok {
            self.error(
                entry.pos,
                format!("{name} has no nodes: expected one or more URLs such as http://node1:9001"),
            );
            return None;
        }
        ok.then(|| Shard {
            name: name.to_owned(),
            index,
            weight,
            nodes,
        })
    }

    /// The Go validation of `<prefix_rewrite>`: invalid rules are dropped with a warning.
    fn rewrites(&mut self, block: &Block) -> Vec<RewriteRule> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for item in &block.items {
            if let Item::Entry(e) = item {
                *seen.entry(e.raw_key.as_str()).or_default() += 1;
            }
        }
        let mut rules = Vec::new();
        for item in &block.items {
            let entry = match item {
                Item::Entry(entry) => entry,
                Item::Block(b) => {
                    self.warn(
                        b.pos,
                        format!("unexpected block <{}> in <prefix_rewrite>: ignored", b.name),
                    );
                    continue;
                }
            };
            let from = entry.raw_key.as_str();
            let to = entry.value.text.trim();
            let problem = if seen[from] > 1 {
                Some("its prefix is given more than once")
            } else if to.is_empty() {
                Some("it has no replacement")
            } else if to.split_whitespace().count() > 1 {
                Some("the replacement must be one path")
            } else if !from.starts_with('/') {
                Some("the prefix must start with '/'")
            } else if !to.starts_with('/') {
                Some("the replacement must start with '/'")
            } else if from.ends_with('/') != to.ends_with('/') {
                Some("if one side ends in '/' then both must")
            } else if from.chars().chain(to.chars()).any(char::is_control) {
                Some("control characters are not allowed in paths")
            } else if [from, to]
                .iter()
                .any(|p| p.contains("//") || p.split('/').any(|seg| seg.starts_with('.')))
            {
                Some("paths must not contain '//' or dot segments")
            } else {
                None
            };
            match problem {
                Some(why) => self.warn(entry.pos, format!("rewrite {from} -> {to} ignored: {why}")),
                None => rules.push(RewriteRule {
                    from: from.to_owned(),
                    to: to.to_owned(),
                }),
            }
        }
        rules
    }
}

fn validate(path: &Path, document: Document) -> Result<Config, ConfigError> {
    let Document { items, sources } = document;
    let mut v = Validator {
        sources: &sources,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let mut root: Option<&Block> = None;
    for item in &items {
        match item {
            Item::Block(b) if b.name == "photosrv" => {
                if root.is_some() {
                    v.error(b.pos, "<photosrv> given twice");
                } else {
                    root = Some(b);
                }
            }
            Item::Block(b) => v.warn(
                b.pos,
                format!("block <{}> outside <photosrv>: ignored", b.name),
            ),
            Item::Entry(e) => v.warn(
                e.pos,
                format!("key {:?} outside <photosrv>: ignored", e.key),
            ),
        }
    }
    let Some(root) = root else {
        let pos = Pos {
            file: 0,
            line: 1,
            col: 1,
        };
        v.error(
            pos,
            "no <photosrv> block: the config must be <photosrv> ... </photosrv>",
        );
        return Err(ConfigError::Invalid(v.errors));
    };
    let settings = Settings::from_block(root, &mut |pos, message| v.error(pos, message));
    let primary = v.ring(root, &Settings::is_key);
    let mut migration = None;
    let mut rewrites = Vec::new();
    let mut seen_migration = false;
    let mut seen_rewrites = false;
    for item in &root.items {
        match item {
            Item::Block(b) if b.name == "migration" => {
                if std::mem::replace(&mut seen_migration, true) {
                    v.error(b.pos, "<migration> given twice");
                } else {
                    migration = v.ring(b, &|_| false);
                }
            }
            Item::Block(b) if b.name == "prefix_rewrite" => {
                if std::mem::replace(&mut seen_rewrites, true) {
                    v.error(b.pos, "<prefix_rewrite> given twice");
                } else {
                    rewrites = v.rewrites(b);
                }
            }
            _ => {}
        }
    }
    let (errors, warnings) = (v.errors, v.warnings);
    match (primary, errors.is_empty()) {
        (Some(primary), true) => {
            let config = Config {
                path: path.to_path_buf(),
                settings,
                primary,
                migration,
                rewrites,
                warnings,
                sources,
            };
            if let Some(dc) = &config.settings.dc {
                if let Err(e) = config.select(Some(dc)) {
                    let pos = config.settings.dc_pos;
                    return Err(ConfigError::Invalid(vec![config
                        .sources
                        .diagnostic(pos, e)]));
                }
            }
            Ok(config)
        }
        _ => Err(ConfigError::Invalid(errors)),
    }
}
