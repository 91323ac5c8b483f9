//! Forwarding one request: replica order, multi-HEAD races, failover, header hygiene.

use crate::metrics::{FailureLabels, NodeLabels};
use crate::node::Node;
use crate::Router;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rand::seq::SliceRandom;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The body of every response the router sends: a node's, streamed, or a short one of ours.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// The pooled HTTP client to the nodes.
pub(crate) type UpstreamClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn upstream_client(connect_timeout: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those the Connection header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

static VIA: HeaderValue = HeaderValue::from_static("1.1 photosrv");

/// The headers sent to a node: the client's, less hop-by-hop and Host, with
/// X-Forwarded-For and Via appended.
pub(crate) fn upstream_headers(client_headers: &HeaderMap, client_ip: IpAddr) -> HeaderMap {
    let mut headers = client_headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {client_ip}"),
        None => client_ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    headers.append(header::VIA, VIA.clone());
    headers
}

/// Why one attempt at one node failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Could not connect (or the connection broke before a response).
    Connect,
    /// No response headers within the upstream timeout.
    Timeout,
    /// The node answered 5xx.
    Status,
}

impl Failure {
    fn kind(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Status => "status_5xx",
        }
    }
}

/// What forwarding came to.
pub(crate) enum Outcome {
    /// A node's response, to stream to the client.
    Response {
        response: Response<Incoming>,
        node: Arc<Node>,
        attempts: u32,
    },
    /// Every candidate failed; `all_timeouts` picks 504 over 502.
    Failed { attempts: u32, all_timeouts: bool },
}

/// The nodes of a group in the order to try them: random, recently failed ones last.
fn order(group: &[Arc<Node>]) -> Vec<Arc<Node>> {
    let mut nodes = group.to_vec();
    nodes.shuffle(&mut rand::thread_rng());
    nodes.sort_by_key(|n| n.is_ejected());
    nodes
}

impl Router {
    fn upstream_request(
        &self,
        method: &Method,
        node: &Node,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Option<Request<Empty<Bytes>>> {
        let mut uri = String::with_capacity(node.base.len() + path_and_query.len());
        uri.push_str(&node.base);
        uri.push_str(path_and_query);
        let uri = Uri::try_from(uri).ok()?;
        let mut request = Request::new(Empty::new());
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers.clone();
        request
            .headers_mut()
            .insert(header::HOST, node.host_header.clone());
        Some(request)
    }

    /// One request to one node, up to its response headers.
    async fn attempt(
        &self,
        method: &Method,
        node: &Arc<Node>,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<Response<Incoming>, Failure> {
        let inner = &self.inner;
        let Some(request) = self.upstream_request(method, node, path_and_query, headers) else {
            return Err(Failure::Connect);
        };
        let started = Instant::now();
        let result = tokio::time::timeout(
            inner.options.upstream_timeout,
            inner.client.request(request),
        )
        .await;
        let failure = match result {
            Ok(Ok(response)) => {
                inner
                    .metrics
                    .upstream_latency
                    .get_or_create(&NodeLabels {
                        node: node.addr.url.clone(),
                    })
                    .observe(started.elapsed().as_secs_f64());
                if !response.status().is_server_error() {
                    node.restore();
                    return Ok(response);
                }
                Failure::Status
            }
            Ok(Err(error)) => {
                tracing::debug!(node = %node.addr.url, %error, "upstream request failed");
                node.eject();
                Failure::Connect
            }
            Err(_) => {
                node.eject();
                Failure::Timeout
            }
        };
        inner
            .go_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        inner
            .metrics
            .upstream_failures
            .get_or_create(&FailureLabels {
                node: node.addr.url.clone(),
                kind: failure.kind(),
            })
            .inc();
        Err(failure)
    }

    /// HEADs every node of `group` at once; the first 2xx/3xx wins and the rest are
    /// cancelled. Returns the winner's index and response, and whether every node said 404.
    async fn race(
        &self,
        group: &[Arc<Node>],
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> (Option<(usize, Response<Incoming>)>, bool) {
        let inner = &self.inner;
        inner.metrics.multihead_races.inc();
        let mut probes: FuturesUnordered<_> = group
            .iter()
            .enumerate()
            .map(|(i, node)| async move {
                (
                    i,
                    self.attempt(&Method::HEAD, node, path_and_query, headers)
                        .await,
                )
            })
            .collect();
        let mut not_found = 0;
        let deadline = tokio::time::sleep(inner.options.head_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = probes.next() => match next {
                    Some((i, Ok(response))) if response.status().as_u16() < 400 => return (Some((i, response)), false),
                    Some((_, Ok(response))) => {
                        if response.status() == StatusCode::NOT_FOUND {
                            not_found += 1;
                        }
                    }
                    Some((_, Err(_))) => {}
                    None => return (None, not_found == group.len()),
                },
                _ = &mut deadline => {
                    inner.metrics.multihead_timeouts.inc();
                    return (None, false);
                }
            }
        }
    }

    /// Tries the groups of a route in turn, the nodes of each in turn.
    pub(crate) async fn forward(
        &self,
        method: &Method,
        groups: &[&[Arc<Node>]],
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Outcome {
        let mut attempts = 0u32;
        let mut all_timeouts = true;
        let multihead = self.inner.options.mode == photosrv_config::ReplicaMode::Multihead;
        for (g, group) in groups.iter().enumerate() {
            let has_next_group = g + 1 < groups.len();
            let mut nodes = order(group);
            if multihead && group.len() > 1 {
                match self.race(group, path_and_query, headers).await {
                    (Some((winner, response)), _) => {
                        if *method == Method::HEAD {
                            return Outcome::Response {
                                response,
                                node: group[winner].clone(),
                                attempts: attempts + 1,
                            };
                        }
                        let winner = group[winner].clone();
                        nodes.retain(|n| !Arc::ptr_eq(n, &winner));
                        nodes.insert(0, winner);
                    }
                    (None, true) if has_next_group => continue,
                    (None, _) => {}
                }
            }
            for node in nodes {
                attempts += 1;
                if attempts > 1 {
                    self.inner.metrics.retries.inc();
                }
                match self.attempt(method, &node, path_and_query, headers).await {
                    Ok(response)
                        if response.status() == StatusCode::NOT_FOUND && has_next_group =>
                    {
                        break
                    }
                    Ok(response) => {
                        return Outcome::Response {
                            response,
                            node,
                            attempts,
                        }
                    }
                    Err(failure) => all_timeouts &= failure == Failure::Timeout,
                }
            }
        }
        Outcome::Failed {
            attempts,
            all_timeouts,
        }
    }
}
