//! Every metric name, in one place. Prometheus histograms, not summaries; logical requests
//! are counted apart from retries and multi-HEAD probes.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::Arc;

/// The HTTP method, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms, missing_docs)]
pub enum MethodLabel {
    GET,
    HEAD,
    OTHER,
}

/// A shard name as a label: shared, so counting a request allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct ShardLabel(pub Arc<str>);

impl EncodeLabelValue for ShardLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// Labels of `photosrv_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// GET, HEAD or OTHER.
    pub method: MethodLabel,
    /// The status sent to the client.
    pub status: u16,
    /// The shard, or "" when the request was refused before routing.
    pub shard: ShardLabel,
}

/// Labels of per-node metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// The node's URL.
    pub node: String,
}

/// Labels of `photosrv_upstream_failures`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The node's URL.
    pub node: String,
    /// connect, timeout, status_5xx or io.
    pub kind: &'static str,
}

/// Labels of `photosrv_reloads`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// ok or error.
    pub result: &'static str,
}

/// Labels of `photosrv_shards_without_live_node`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RingLabels {
    /// primary or migration.
    pub ring: &'static str,
}

/// Labels of `photosrv_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version.
    pub version: String,
}

/// The statuses whose request counters each shard keeps at hand.
const COMMON_STATUSES: [u16; 6] = [200, 206, 304, 404, 502, 503];

/// A shard's request counters for GET and HEAD with the common statuses, looked up once:
/// counting a request then costs no hashing and no lock.
#[derive(Debug, Default)]
pub struct ShardCounters {
    cells: [std::sync::OnceLock<Counter>; 2 * COMMON_STATUSES.len()],
}

impl ShardCounters {
    /// Counts one request answered with `status`.
    pub fn count(&self, metrics: &Metrics, method: MethodLabel, status: u16, shard: &ShardLabel) {
        let row = match method {
            MethodLabel::GET => Some(0),
            MethodLabel::HEAD => Some(1),
            MethodLabel::OTHER => None,
        };
        let column = COMMON_STATUSES.iter().position(|&s| s == status);
        let labels = || RequestLabels {
            method: method.clone(),
            status,
            shard: shard.clone(),
        };
        match (row, column) {
            (Some(row), Some(column)) => self.cells[row * COMMON_STATUSES.len() + column]
                .get_or_init(|| metrics.requests.get_or_create(&labels()).clone())
                .inc(),
            _ => metrics.requests.get_or_create(&labels()).inc(),
        };
    }
}

/// One node's metric handles, looked up once and kept with the node.
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    /// Its `photosrv_upstream_latency_seconds` histogram.
    pub latency: Histogram,
    /// Its `photosrv_upstream_failures_total`, by kind: connect, timeout, status_5xx.
    pub failures: [Counter; 3],
}

/// The failure kinds, in the order of [`NodeMetrics::failures`].
pub const FAILURE_KINDS: [&str; 3] = ["connect", "timeout", "status_5xx"];

/// The router's metrics.
pub struct Metrics {
    /// `photosrv_requests_total{method,status,shard}`: logical client requests.
    pub requests: Family<RequestLabels, Counter>,
    /// `photosrv_upstream_latency_seconds{node}`: request sent to response headers (with a
    /// body of at most 8 KiB, which is read with them).
    pub upstream_latency: Family<NodeLabels, Histogram>,
    /// `photosrv_upstream_failures_total{node,kind}`.
    pub upstream_failures: Family<FailureLabels, Counter>,
    /// `photosrv_retries_total`: attempts beyond the first of a request.
    pub retries: Counter,
    /// `photosrv_multihead_races_total`.
    pub multihead_races: Counter,
    /// `photosrv_multihead_timeouts_total`: races that ended by the head timeout.
    pub multihead_timeouts: Counter,
    /// `photosrv_reloads_total{result}`.
    pub reloads: Family<ReloadLabels, Counter>,
    /// `photosrv_shards_without_live_node{ring}`.
    pub shards_without_live_node: Family<RingLabels, Gauge>,
    /// `photosrv_migration_state`: 0 old, 1 both, 2 new.
    pub migration_state: Gauge,
    /// `photosrv_build_info{version}`: always 1.
    pub build_info: Family<BuildLabels, Gauge>,
    /// The shard label of requests refused before routing: "".
    pub no_shard: ShardLabel,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

impl Metrics {
    /// The handles for the node at `url`.
    pub fn node(&self, url: &str) -> NodeMetrics {
        let failure = |kind| {
            self.upstream_failures
                .get_or_create(&FailureLabels {
                    node: url.to_owned(),
                    kind,
                })
                .clone()
        };
        NodeMetrics {
            latency: self
                .upstream_latency
                .get_or_create(&NodeLabels {
                    node: url.to_owned(),
                })
                .clone(),
            failures: FAILURE_KINDS.map(failure),
        }
    }

    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            upstream_latency: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            upstream_failures: Family::default(),
            retries: Counter::default(),
            multihead_races: Counter::default(),
            multihead_timeouts: Counter::default(),
            reloads: Family::default(),
            shards_without_live_node: Family::default(),
            migration_state: Gauge::default(),
            build_info: Family::default(),
            no_shard: ShardLabel(Arc::from("")),
        };
        let r = registry.sub_registry_with_prefix("photosrv");
        r.register(
            "requests",
            "Client requests answered, by method, status and shard",
            m.requests.clone(),
        );
        r.register(
            "upstream_latency_seconds",
            "Time from sending a request to a node to its response headers (and a body of at most 8 KiB, read with them)",
            m.upstream_latency.clone(),
        );
        r.register(
            "upstream_failures",
            "Failed attempts to a node, by kind",
            m.upstream_failures.clone(),
        );
        r.register(
            "retries",
            "Attempts beyond the first of a request (failover)",
            m.retries.clone(),
        );
        r.register(
            "multihead_races",
            "Multi-HEAD races run",
            m.multihead_races.clone(),
        );
        r.register(
            "multihead_timeouts",
            "Multi-HEAD races that ended by the head timeout",
            m.multihead_timeouts.clone(),
        );
        r.register(
            "reloads",
            "Config and roster reloads, by result",
            m.reloads.clone(),
        );
        r.register(
            "shards_without_live_node",
            "Shards with no live node, by ring",
            m.shards_without_live_node.clone(),
        );
        r.register(
            "migration_state",
            "Migration state: 0 old ring, 1 both, 2 new ring",
            m.migration_state.clone(),
        );
        r.register("build_info", "Build information", m.build_info.clone());
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The request counts on the metrics page, by their labels as written there.
    fn request_counts(registry: &Registry) -> HashMap<String, u64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text.lines()
            .filter_map(|line| line.strip_prefix("photosrv_requests_total"))
            .map(|line| {
                let (labels, count) = line.rsplit_once(' ').unwrap();
                (labels.to_owned(), count.parse().unwrap())
            })
            .collect()
    }

    /// Every method and status is counted under its own labels, whether its counter is kept
    /// at hand (GET and HEAD with a common status) or looked up each time.
    #[test]
    fn each_request_is_counted_under_its_own_labels() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let counters = ShardCounters::default();
        let shard = ShardLabel(Arc::from("shard7"));
        let statuses = [200, 206, 304, 404, 502, 503, 400, 500];
        let methods = [
            (MethodLabel::GET, "GET"),
            (MethodLabel::HEAD, "HEAD"),
            (MethodLabel::OTHER, "OTHER"),
        ];
        let mut expected = HashMap::new();
        for (m, (method, name)) in methods.iter().enumerate() {
            for (s, &status) in statuses.iter().enumerate() {
                // A different number of requests for each pair of labels.
                let times = 1 + m * statuses.len() + s;
                for _ in 0..times {
                    counters.count(&metrics, method.clone(), status, &shard);
                }
                let labels = format!(r#"{{method="{name}",status="{status}",shard="shard7"}}"#);
                expected.insert(labels, times as u64);
            }
        }
        assert_eq!(request_counts(&registry), expected);
    }

    /// A node's latency histogram has buckets from half a millisecond (a node on the same
    /// rack) to ten seconds (past which the upstream timeout has usually struck).
    #[test]
    fn latency_buckets_span_half_a_millisecond_to_ten_seconds() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.node("http://n:1").latency.observe(0.003);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let buckets: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("photosrv_upstream_latency_seconds_bucket{"))
            .map(|line| {
                let le = line.split("le=\"").nth(1).unwrap();
                let (le, _) = le.split_once('"').unwrap();
                (le, line.rsplit(' ').next().unwrap())
            })
            .collect();
        let bounds: Vec<&str> = buckets.iter().map(|(le, _)| *le).collect();
        assert_eq!(
            bounds,
            [
                "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"
            ]
        );
        let counts: Vec<&str> = buckets.iter().map(|(_, count)| *count).collect();
        assert_eq!(
            counts[..4],
            ["0", "0", "0", "1"],
            "3 ms falls in the 5 ms bucket"
        );
    }
}
