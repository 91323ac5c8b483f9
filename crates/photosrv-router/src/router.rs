//! The shared router state and the request handler.

use crate::forward::{self, Outcome, ProxyBody};
use crate::h1::{parse_length, push_field, BodyRules, NodeResponse, Relay};
use crate::metrics::{MethodLabel, Metrics, RingLabels};
use crate::node::Node;
use crate::options::RouterOptions;
use crate::pool::Upstream;
use crate::reload::{ReloadError, Reloader};
use crate::table::{MigrationState, RouteError, RoutingTable};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The router: the current routing table plus everything that outlives a reload. Cheap to
/// clone (an `Arc`).
#[derive(Clone)]
pub struct Router {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) options: RouterOptions,
    pub(crate) table: ArcSwap<RoutingTable>,
    pub(crate) upstream: Upstream,
    pub(crate) registry: Registry,
    pub(crate) metrics: Metrics,
    pub(crate) migration: AtomicU8,
    /// Serialises migration switches so the file and memory agree.
    pub(crate) migration_lock: Mutex<()>,
    pub(crate) reloader: Mutex<Reloader>,
    /// Request counters of requests refused before routing.
    pub(crate) no_shard_counters: crate::metrics::ShardCounters,
    /// Go's expvar `Requests`.
    pub(crate) go_requests: AtomicU64,
    /// Go's expvar `Errors`: failed upstream attempts.
    pub(crate) go_errors: AtomicU64,
    /// The second (Unix time) of the last warning that the router is out of resources: at
    /// most one a second, as it can hit every request.
    pub(crate) out_of_resources_warned: AtomicU64,
}

impl Inner {
    /// Warns that a connection to `node` could not be opened for want of the router's own
    /// resources, at most once a second.
    pub(crate) fn warn_out_of_resources(&self, node: &Node, error: &dyn std::error::Error) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.out_of_resources_warned.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(
                node = %node.addr.url,
                %error,
                "cannot open a connection to a node: the router is out of file descriptors or \
                 memory (raise its open files limit; the node is not counted as failed)"
            );
        }
    }
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config, roster or migration state is unusable.
    #[error(transparent)]
    Load(#[from] ReloadError),
    /// An https node: not supported by the forwarding client yet.
    #[error("node {0} is https: the router forwards over http only (see ROADMAP.md)")]
    Https(String),
}

/// What the router answers a client: a node's response, passed on with Via added, or a
/// short one of the router's own.
pub struct Reply {
    kind: ReplyKind,
}

enum ReplyKind {
    Node(NodeResponse),
    Own(Response<Full<Bytes>>),
}

impl Reply {
    /// The status.
    pub fn status(&self) -> StatusCode {
        match &self.kind {
            ReplyKind::Node(response) => response.status(),
            ReplyKind::Own(response) => response.status(),
        }
    }

    /// The Content-Length header's value, if there is one.
    pub(crate) fn content_length(&self) -> Option<u64> {
        match &self.kind {
            ReplyKind::Node(response) => response.content_length(),
            ReplyKind::Own(response) => response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| parse_length(v.as_bytes())),
        }
    }

    /// Whether there is a Date header.
    pub(crate) fn has_date(&self) -> bool {
        match &self.kind {
            ReplyKind::Node(response) => response.has_date(),
            ReplyKind::Own(response) => response.headers().contains_key(header::DATE),
        }
    }

    /// Appends the header lines, `name: value` and CRLF each.
    pub(crate) fn write_fields(&self, out: &mut Vec<u8>) {
        match &self.kind {
            ReplyKind::Node(response) => {
                response.write_fields(out);
                push_field(out, b"via", forward::VIA.as_bytes());
            }
            ReplyKind::Own(response) => {
                for (name, value) in response.headers() {
                    push_field(out, name.as_str().as_bytes(), value.as_bytes());
                }
            }
        }
    }

    /// The body.
    pub fn into_body(self) -> ProxyBody {
        match self.kind {
            ReplyKind::Node(response) => Either::Left(response.into_body()),
            ReplyKind::Own(response) => Either::Right(response.into_body()),
        }
    }

    /// As an `http` response, for hyper (h2c clients).
    pub fn into_response(self) -> Response<ProxyBody> {
        match self.kind {
            ReplyKind::Node(response) => {
                let mut response = response.into_response().map(Either::Left);
                response
                    .headers_mut()
                    .append(header::VIA, forward::VIA.clone());
                response
            }
            ReplyKind::Own(response) => response.map(Either::Right),
        }
    }
}

fn reply(status: StatusCode, text: &'static str) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Reply {
        kind: ReplyKind::Own(response),
    }
}

impl Router {
    /// Loads the config and roster named by `options`, restores the migration state, and
    /// builds the first routing table.
    pub fn new(options: RouterOptions) -> Result<Router, StartError> {
        let mut reloader = Reloader::new(&options);
        let table = reloader.load_initial()?;
        for ring in std::iter::once(&table.primary).chain(&table.migration) {
            for shard in &ring.shards {
                if let Some(node) = shard.configured.iter().find(|n| n.addr.tls) {
                    return Err(StartError::Https(node.addr.url.clone()));
                }
            }
        }
        let migration = crate::migration::restore(&options, &table)?;
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let body = BodyRules {
            chunk: options.upstream_buffer_bytes,
            relay: Relay::from_options(options.splice_bodies, options.direct_bodies),
            idle: options.upstream_timeout,
            client_idle: options.send_timeout,
        };
        let upstream = Upstream::new(options.connect_timeout, body);
        let router = Router {
            inner: Arc::new(Inner {
                options,
                table: ArcSwap::from_pointee(table),
                upstream,
                registry,
                metrics,
                migration: AtomicU8::new(migration.as_index()),
                migration_lock: Mutex::new(()),
                reloader: Mutex::new(reloader),
                no_shard_counters: crate::metrics::ShardCounters::default(),
                go_requests: AtomicU64::new(0),
                go_errors: AtomicU64::new(0),
                out_of_resources_warned: AtomicU64::new(0),
            }),
        };
        router
            .inner
            .metrics
            .migration_state
            .set(i64::from(migration.as_index()));
        router.publish_table_gauges();
        Ok(router)
    }

    /// The effective options.
    pub fn options(&self) -> &RouterOptions {
        &self.inner.options
    }

    /// The current routing table.
    pub fn table(&self) -> Arc<RoutingTable> {
        self.inner.table.load_full()
    }

    /// The current migration state.
    pub fn migration_state(&self) -> MigrationState {
        MigrationState::from_index(self.inner.migration.load(Ordering::Relaxed))
    }

    pub(crate) fn publish_table_gauges(&self) {
        let table = self.inner.table.load();
        let (primary, migration) = table.missing_shards();
        let gauges = &self.inner.metrics.shards_without_live_node;
        gauges
            .get_or_create(&RingLabels { ring: "primary" })
            .set(primary.len() as i64);
        gauges
            .get_or_create(&RingLabels { ring: "migration" })
            .set(migration.len() as i64);
    }

    /// Answers one client request.
    /// Its body is never read: a GET or HEAD with one is refused.
    pub async fn handle<B>(&self, request: Request<B>, client: SocketAddr) -> Reply {
        // The access line's clock and fields cost about 440 instructions a request (1% of a
        // proxied 4 KiB GET, callgrind): skipped when the line is filtered out.
        let started =
            tracing::enabled!(target: "photosrv::access", tracing::Level::INFO).then(Instant::now);
        self.inner.go_requests.fetch_add(1, Ordering::Relaxed);
        let method = request.method().clone();
        let method_label = match method {
            Method::GET => MethodLabel::GET,
            Method::HEAD => MethodLabel::HEAD,
            _ => MethodLabel::OTHER,
        };
        let table = self.inner.table.load_full();
        let state = self.migration_state();
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let (response, shard, node, attempts) = 'answer: {
            if method_label == MethodLabel::OTHER {
                let mut response = reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "only GET and HEAD are served\n",
                );
                if let ReplyKind::Own(own) = &mut response.kind {
                    own.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                }
                break 'answer (response, None, None, 0);
            }
            if has_body(&request) {
                break 'answer (
                    reply(
                        StatusCode::BAD_REQUEST,
                        "a GET or HEAD request must not have a body\n",
                    ),
                    None,
                    None,
                    0,
                );
            }
            let mut route = match table.route(target.as_bytes(), state) {
                Ok(route) => route,
                Err(RouteError::Path(e)) => {
                    let status =
                        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
                    let text = if status == StatusCode::NOT_FOUND {
                        "not found\n"
                    } else {
                        "bad request path\n"
                    };
                    break 'answer (reply(status, text), None, None, 0);
                }
                Err(RouteError::NoLiveNode) => {
                    break 'answer (
                        reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "no live node for this key's shard\n",
                        ),
                        None,
                        None,
                        0,
                    );
                }
            };
            let mut path_and_query = std::mem::take(&mut route.upstream_path);
            if let Some(query) = request.uri().query() {
                path_and_query.push('?');
                path_and_query.push_str(query);
            }
            let forwarding = forward::Forwarding::new(request.headers(), client.ip());
            match self
                .forward(&method, route.groups(), &path_and_query, &forwarding)
                .await
            {
                Outcome::Response {
                    response,
                    node,
                    attempts,
                } => {
                    // The exchange left the node's hop-by-hop headers out (`h1.rs`).
                    (
                        Reply {
                            kind: ReplyKind::Node(response),
                        },
                        Some(route.shard),
                        Some(node),
                        attempts,
                    )
                }
                Outcome::Failed {
                    attempts,
                    all_timeouts,
                    all_local,
                } => {
                    let response = if all_local {
                        reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the router is out of file descriptors or memory\n",
                        )
                    } else if all_timeouts {
                        reply(StatusCode::GATEWAY_TIMEOUT, "every replica timed out\n")
                    } else {
                        reply(StatusCode::BAD_GATEWAY, "every replica failed\n")
                    };
                    (response, Some(route.shard), None, attempts)
                }
            }
        };
        let status = response.status();
        match shard {
            Some(shard) => shard.counters.count(
                &self.inner.metrics,
                method_label,
                status.as_u16(),
                &shard.label,
            ),
            None => self.inner.no_shard_counters.count(
                &self.inner.metrics,
                method_label,
                status.as_u16(),
                &self.inner.metrics.no_shard,
            ),
        }
        if let Some(started) = started {
            let node_url = node.as_ref().map_or("", |n| n.addr.url.as_str());
            let shard = shard.map_or("", |s| s.name.as_str());
            // Numbers, for log pipelines; no bytes field when the length is not known ahead.
            let bytes = response.content_length();
            let ms = started.elapsed().as_micros() as f64 / 1000.0;
            tracing::info!(
                target: "photosrv::access",
                %client, %method, path = %target, status = status.as_u16(), shard, node = node_url,
                bytes, ms, attempts,
            );
        }
        if status == StatusCode::NOT_FOUND && node.is_some() {
            // The Go photosrv's "Not found" line, which existing log pipelines parse.
            let header = |name: header::HeaderName| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            let line = serde_json::json!({
                "UserAgent": header(header::USER_AGENT),
                "Referer": header(header::REFERER),
                "Status": "404",
                "URL": target,
                "IP": client.to_string(),
            });
            tracing::info!(target: "photosrv::notfound", "Not found: {line}");
        }
        response
    }
}

/// Whether a request carries a body: GET and HEAD with one are refused rather than have
/// the body dropped or forwarded.
fn has_body<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}
