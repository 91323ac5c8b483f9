//! The routing table: a snapshot of config + roster that maps a request path to the nodes
//! that may serve it. Built off the request path, published with an atomic swap, and read
//! without locks; `route` is a pure function of the snapshot.

use crate::node::Node;
use photosrv_config::{Config, Datacenter, Roster};
use photosrv_placement::path::{encode_path, routing_key, PathError, Rewriter};
use photosrv_placement::Chooser;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// One shard of a ring: its name, its configured nodes and the live ones among them.
#[derive(Debug)]
pub struct ShardTable {
    /// `shard<N>`.
    pub name: String,
    /// The name as a metrics label, shared so counting allocates nothing.
    pub label: crate::metrics::ShardLabel,
    /// Its request counters.
    pub counters: crate::metrics::ShardCounters,
    /// Every configured node.
    pub configured: Vec<Arc<Node>>,
    /// The nodes the roster lists, in config order: the candidates.
    pub live: Vec<Arc<Node>>,
}

/// One ring (primary or migration) for the selected datacenter.
#[derive(Debug)]
pub struct RingTable {
    /// The datacenter's name.
    pub datacenter: String,
    /// Key -> bucket.
    pub chooser: Chooser,
    /// Buckets in shard-index order.
    pub shards: Vec<ShardTable>,
}

impl RingTable {
    fn build(
        dc: &Datacenter,
        chooser: photosrv_config::ChooserKind,
        roster: &Roster,
        nodes: &mut NodeCache,
    ) -> RingTable {
        let names: Vec<&str> = dc.shards.iter().map(|s| s.name.as_str()).collect();
        let shards = dc
            .shards
            .iter()
            .map(|shard| {
                let configured: Vec<Arc<Node>> =
                    shard.nodes.iter().map(|addr| nodes.get(addr)).collect();
                let live = configured
                    .iter()
                    .filter(|n| roster.is_live(&n.addr.authority))
                    .cloned()
                    .collect();
                ShardTable {
                    name: shard.name.clone(),
                    label: crate::metrics::ShardLabel(shard.name.as_str().into()),
                    counters: crate::metrics::ShardCounters::default(),
                    configured,
                    live,
                }
            })
            .collect();
        RingTable {
            datacenter: dc.name.clone(),
            chooser: Chooser::new(chooser, &names),
            shards,
        }
    }

    /// The shard of `key`.
    pub fn shard_of(&self, key: &[u8]) -> &ShardTable {
        &self.shards[self.chooser.choose(key)]
    }

    fn live_count(&self) -> usize {
        self.shards.iter().map(|s| s.live.len()).sum()
    }

    fn configured_count(&self) -> usize {
        self.shards.iter().map(|s| s.configured.len()).sum()
    }
}

/// Which ring(s) serve reads: the Go photosrv's three migration states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationState {
    /// Serve from the primary ring (Go: msOldConfig).
    #[default]
    Old,
    /// Serve from the migration ring, falling back to the primary ring on 404
    /// (Go: msBothConfigs).
    Both,
    /// Serve from the migration ring (Go: msNewConfig).
    New,
}

impl MigrationState {
    /// The Go name, as `/debug/vars` and the state file use it.
    pub fn go_name(self) -> &'static str {
        match self {
            MigrationState::Old => "msOldConfig",
            MigrationState::Both => "msBothConfigs",
            MigrationState::New => "msNewConfig",
        }
    }

    /// Parses a Go name (the state file's content).
    pub fn from_go_name(name: &str) -> Option<MigrationState> {
        match name.trim() {
            "msOldConfig" => Some(MigrationState::Old),
            "msBothConfigs" => Some(MigrationState::Both),
            "msNewConfig" => Some(MigrationState::New),
            _ => None,
        }
    }

    /// 0, 1, 2 as in Go.
    pub fn as_index(self) -> u8 {
        self as u8
    }

    /// The inverse of [`MigrationState::as_index`].
    pub fn from_index(index: u8) -> MigrationState {
        match index {
            1 => MigrationState::Both,
            2 => MigrationState::New,
            _ => MigrationState::Old,
        }
    }
}

/// Why a request cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The path is malformed or names nothing servable.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The shard has no live node.
    #[error("no live node in the shard")]
    NoLiveNode,
}

/// Where one request goes.
#[derive(Debug)]
pub struct Route<'t> {
    /// The routing key.
    pub key: Vec<u8>,
    /// The path to send upstream, percent-encoded (`/` + key).
    pub upstream_path: String,
    /// The shard of the first group.
    pub shard: &'t ShardTable,
    /// The candidate groups (see [`Route::groups`]) in the first `group_count` places: at
    /// most two, so no list is allocated per request.
    groups: [&'t [Arc<Node>]; 2],
    group_count: usize,
}

impl<'t> Route<'t> {
    /// Candidate groups, tried in order: a 404 from one group moves on to the next (the
    /// "both" migration state); inside a group, failures move to the next node. None is
    /// empty.
    pub fn groups(&self) -> &[&'t [Arc<Node>]] {
        &self.groups[..self.group_count]
    }
}

/// Reuses `Node`s across reloads so pooled connections and health state survive.
pub(crate) struct NodeCache {
    epoch: Instant,
    by_url: HashMap<String, Arc<Node>>,
}

impl NodeCache {
    pub(crate) fn from_table(previous: Option<&RoutingTable>, epoch: Instant) -> NodeCache {
        let mut cache = NodeCache {
            epoch,
            by_url: HashMap::new(),
        };
        if let Some(table) = previous {
            for ring in std::iter::once(&table.primary).chain(&table.migration) {
                for shard in &ring.shards {
                    for node in &shard.configured {
                        cache.by_url.insert(node.addr.url.clone(), node.clone());
                    }
                }
            }
        }
        cache
    }

    fn get(&mut self, addr: &photosrv_config::NodeAddr) -> Arc<Node> {
        let epoch = self.epoch;
        self.by_url
            .entry(addr.url.clone())
            .or_insert_with(|| Arc::new(Node::new(addr.clone(), epoch)))
            .clone()
    }
}

/// A published snapshot of everything routing needs.
#[derive(Debug)]
pub struct RoutingTable {
    /// The primary ring.
    pub primary: RingTable,
    /// The migration ring.
    pub migration: Option<RingTable>,
    /// Prefix rewrites.
    pub rewriter: Rewriter,
    /// How many hosts the roster listed (0: every node live).
    pub roster_hosts: usize,
}

/// Why a table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The config names no usable datacenter.
    #[error("{0}")]
    Datacenter(String),
    /// The roster lists none of the configured nodes.
    #[error("the roster lists none of the {0} nodes of the datacenter: refusing a table where every shard is empty")]
    NoLiveNode(usize),
}

impl RoutingTable {
    /// Builds a table for datacenter `dc` (or the config's choice), reusing the nodes of
    /// `previous`.
    pub fn build(
        config: &Config,
        roster: &Roster,
        dc: Option<&str>,
        previous: Option<&RoutingTable>,
    ) -> Result<RoutingTable, TableError> {
        let selection = config.select(dc).map_err(TableError::Datacenter)?;
        let mut nodes = NodeCache::from_table(previous, Instant::now());
        let primary = RingTable::build(
            selection.primary,
            config.primary.chooser,
            roster,
            &mut nodes,
        );
        let migration = match (&config.migration, selection.migration) {
            (Some(ring), Some(dc)) => Some(RingTable::build(dc, ring.chooser, roster, &mut nodes)),
            _ => None,
        };
        let live = primary.live_count() + migration.as_ref().map_or(0, RingTable::live_count);
        if live == 0 {
            let configured = primary.configured_count()
                + migration.as_ref().map_or(0, RingTable::configured_count);
            return Err(TableError::NoLiveNode(configured));
        }
        Ok(RoutingTable {
            primary,
            migration,
            rewriter: Rewriter::new(config.rewrites.clone()),
            roster_hosts: roster.len(),
        })
    }

    /// Routes a request target (path and optional query, still percent-encoded).
    pub fn route(&self, target: &[u8], state: MigrationState) -> Result<Route<'_>, RouteError> {
        let key = routing_key(target, &self.rewriter)?;
        let mut upstream_path = String::with_capacity(key.len() + 8);
        upstream_path.push('/');
        encode_path(&key, &mut upstream_path);
        let primary = self.primary.shard_of(&key);
        let (shard, first, then) = match (state, &self.migration) {
            (MigrationState::Old, _) | (_, None) => (primary, primary.live.as_slice(), &[][..]),
            (MigrationState::New, Some(ring)) => {
                let shard = ring.shard_of(&key);
                (shard, shard.live.as_slice(), &[][..])
            }
            (MigrationState::Both, Some(ring)) => {
                let shard = ring.shard_of(&key);
                (shard, shard.live.as_slice(), primary.live.as_slice())
            }
        };
        let mut groups = [&[][..]; 2];
        let mut group_count = 0;
        for group in [first, then] {
            if !group.is_empty() {
                groups[group_count] = group;
                group_count += 1;
            }
        }
        if group_count == 0 {
            return Err(RouteError::NoLiveNode);
        }
        Ok(Route {
            key,
            upstream_path,
            shard,
            groups,
            group_count,
        })
    }

    /// Shards (primary, then migration) without a live node: Go's `MissingShards`.
    pub fn missing_shards(&self) -> (Vec<&str>, Vec<&str>) {
        fn empty(ring: &RingTable) -> Vec<&str> {
            ring.shards
                .iter()
                .filter(|s| s.live.is_empty())
                .map(|s| s.name.as_str())
                .collect()
        }
        (
            empty(&self.primary),
            self.migration.as_ref().map(empty).unwrap_or_default(),
        )
    }

    /// What changed from `old` to `self`, one line per change, for the reload log.
    pub fn diff(&self, old: &RoutingTable) -> Vec<String> {
        let mut changes = Vec::new();
        let rings = [
            ("", Some(&old.primary), Some(&self.primary)),
            (
                "migration ",
                old.migration.as_ref(),
                self.migration.as_ref(),
            ),
        ];
        for (label, before, after) in rings {
            match (before, after) {
                (None, None) => {}
                (None, Some(_)) => changes.push(format!("{label}ring added")),
                (Some(_), None) => changes.push(format!("{label}ring removed")),
                (Some(before), Some(after)) => {
                    if before.shards.len() != after.shards.len()
                        || before.chooser.kind() != after.chooser.kind()
                    {
                        changes.push(format!(
                            "{label}ring: {} {} shards -> {} {} shards",
                            before.chooser.kind(),
                            before.shards.len(),
                            after.chooser.kind(),
                            after.shards.len()
                        ));
                    }
                    let old_live: HashMap<&str, Vec<&str>> = before
                        .shards
                        .iter()
                        .map(|s| {
                            (
                                s.name.as_str(),
                                s.live.iter().map(|n| n.addr.url.as_str()).collect(),
                            )
                        })
                        .collect();
                    for shard in &after.shards {
                        let was = old_live
                            .get(shard.name.as_str())
                            .cloned()
                            .unwrap_or_default();
                        let now: Vec<&str> =
                            shard.live.iter().map(|n| n.addr.url.as_str()).collect();
                        let mut line = String::new();
                        for url in now.iter().filter(|u| !was.contains(u)) {
                            let _ = write!(line, " +{url}");
                        }
                        for url in was.iter().filter(|u| !now.contains(u)) {
                            let _ = write!(line, " -{url}");
                        }
                        if !line.is_empty() {
                            changes.push(format!(
                                "{label}{}:{line} ({} live)",
                                shard.name,
                                now.len()
                            ));
                        }
                    }
                }
            }
        }
        if self.rewriter.rules() != old.rewriter.rules() {
            let rules = self.rewriter.rules().len();
            let plural = if rules == 1 { "" } else { "s" };
            changes.push(format!("prefix rewrites: {rules} rule{plural}"));
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("t.cfg"), text.as_bytes()).unwrap()
    }

    const TWO_RINGS: &str = "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 http://a:1 http://b:1\nshard2 http://c:1 http://d:1\n</shards>\n</dc1>\n<migration>\nchooser jump\n<dc1>\n<shards>\nshard1 http://e:1\nshard2 http://f:1\nshard3 http://g:1\n</shards>\n</dc1>\n</migration>\n</photosrv>\n";

    #[test]
    fn roster_filters_candidates_and_missing_shard_is_503() {
        let cfg = config(TWO_RINGS);
        let roster = Roster::parse(Path::new("r"), b"x a:1\ny c:1\nz d:1\n").unwrap();
        let table = RoutingTable::build(&cfg, &roster, None, None).unwrap();
        assert_eq!(table.primary.shards[0].live.len(), 1);
        assert_eq!(
            table.missing_shards(),
            (vec![], vec!["shard1", "shard2", "shard3"])
        );
        assert_eq!(
            table.route(b"/k", MigrationState::New).unwrap_err(),
            RouteError::NoLiveNode
        );
    }

    #[test]
    fn both_state_tries_the_new_ring_then_the_old() {
        let cfg = config(TWO_RINGS);
        let table = RoutingTable::build(&cfg, &Roster::all_live(), None, None).unwrap();
        let route = table
            .route(b"/images/a%20b.jpg?x=1", MigrationState::Both)
            .unwrap();
        assert_eq!(route.key, b"images/a b.jpg");
        assert_eq!(route.upstream_path, "/images/a%20b.jpg");
        assert_eq!(route.groups().len(), 2);
        assert_eq!(route.groups()[0].len(), 1, "migration shard first");
        assert_eq!(route.groups()[1].len(), 2, "then the primary shard");
    }

    #[test]
    fn reload_keeps_nodes_and_reports_changes() {
        let cfg = config(TWO_RINGS);
        let all = RoutingTable::build(&cfg, &Roster::all_live(), None, None).unwrap();
        let roster = Roster::parse(
            Path::new("r"),
            b"x a:1\ny c:1\nz d:1\nw e:1\nv f:1\nu g:1\n",
        )
        .unwrap();
        let fewer = RoutingTable::build(&cfg, &roster, None, Some(&all)).unwrap();
        assert!(Arc::ptr_eq(
            &all.primary.shards[0].configured[0],
            &fewer.primary.shards[0].configured[0]
        ));
        assert_eq!(fewer.diff(&all), ["shard1: -http://b:1 (1 live)"]);
    }

    /// Each kind of change gets its line in the reload log.
    #[test]
    fn every_kind_of_change_is_reported() {
        let table = |chooser: &str, shards: &str, more: &str| {
            let text = format!("<photosrv>\nchooser {chooser}\n<dc1>\n<shards>\n{shards}</shards>\n</dc1>\n{more}</photosrv>\n");
            RoutingTable::build(&config(&text), &Roster::all_live(), None, None).unwrap()
        };
        let two = "shard1 http://a:1\nshard2 http://b:1\n";
        let three = "shard1 http://a:1\nshard2 http://b:1\nshard3 http://c:1\n";
        let migration =
            "<migration>\n<dc1>\n<shards>\nshard1 http://e:1\n</shards>\n</dc1>\n</migration>\n";
        let rewrite = "<prefix_rewrite>\n/a /b\n</prefix_rewrite>\n";
        let jump = table("jump", two, "");
        assert_eq!(table("jump", two, "").diff(&jump), Vec::<String>::new());
        assert_eq!(
            table("chash", two, "").diff(&jump),
            ["ring: jump 2 shards -> chash 2 shards"]
        );
        assert_eq!(
            table("jump", three, "").diff(&jump),
            [
                "ring: jump 2 shards -> jump 3 shards",
                "shard3: +http://c:1 (1 live)"
            ]
        );
        let with_migration = table("jump", two, migration);
        assert_eq!(with_migration.diff(&jump), ["migration ring added"]);
        assert_eq!(jump.diff(&with_migration), ["migration ring removed"]);
        let rewritten = table("jump", two, rewrite);
        assert_eq!(rewritten.diff(&jump), ["prefix rewrites: 1 rule"]);
        assert_eq!(jump.diff(&rewritten), ["prefix rewrites: 0 rules"]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Taking nodes out of shards (by roster) never changes any key's shard, in either ring.
        #[test]
        fn removing_nodes_never_moves_a_key(dropped in proptest::collection::vec(proptest::bool::ANY, 7), keys in proptest::collection::vec("[a-z0-9/._-]{1,40}", 1..50)) {
            let cfg = config(TWO_RINGS);
            let all = RoutingTable::build(&cfg, &Roster::all_live(), None, None).unwrap();
            let hosts = ["a:1", "b:1", "c:1", "d:1", "e:1", "f:1", "g:1"];
            let listed: String = hosts.iter().zip(&dropped).filter(|(_, d)| !**d).map(|(h, _)| format!("n {h}\n")).collect();
            let roster = Roster::parse(Path::new("r"), listed.as_bytes()).unwrap();
            if let Ok(fewer) = RoutingTable::build(&cfg, &roster, None, Some(&all)) {
                for key in &keys {
                    proptest::prop_assert_eq!(&all.primary.shard_of(key.as_bytes()).name, &fewer.primary.shard_of(key.as_bytes()).name);
                    let (a, b) = (all.migration.as_ref().unwrap(), fewer.migration.as_ref().unwrap());
                    proptest::prop_assert_eq!(&a.shard_of(key.as_bytes()).name, &b.shard_of(key.as_bytes()).name);
                }
            }
        }
    }

    #[test]
    fn a_roster_listing_no_node_is_refused() {
        let cfg = config(TWO_RINGS);
        let roster = Roster::parse(Path::new("r"), b"x elsewhere:1\n").unwrap();
        assert!(matches!(
            RoutingTable::build(&cfg, &roster, None, None),
            Err(TableError::NoLiveNode(7))
        ));
    }
}
