//! Forwarding one request: replica order, multi-HEAD races, failover, header hygiene.

use crate::h1::{list_tokens, push_field, NodeResponse, UpstreamBody};
use crate::node::Node;
use crate::pool::UpstreamError;
use crate::probe::probe_request;
use crate::Router;
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{Either, Full};
use rand::seq::SliceRandom;
use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The body of every response the router sends: a node's, streamed, or a short one of ours.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded in either direction.
pub(crate) const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// X-Forwarded-For, which the router writes itself (the client's values, then its address).
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The header names a Connection value lists: also hop-by-hop. RFC 9110 7.6.1 makes no
/// exception, so `Connection: close` drops a field named Close too (a name IANA reserves for
/// that reason). Read as bytes, so that a byte that is not ASCII in one token does not hide
/// the names in the others.
fn connection_listed(value: &HeaderValue) -> impl Iterator<Item = HeaderName> + '_ {
    list_tokens(value.as_bytes())
        // A field named Keep-Alive is hop-by-hop anyway: no name to make for it.
        .filter(|name| !name.eq_ignore_ascii_case(b"keep-alive"))
        .filter_map(|name| HeaderName::from_bytes(name).ok())
}

/// Longest text of an IP address (an IPv6 address with an IPv4 tail).
const IP_TEXT_MAX: usize = 45;

/// The X-Forwarded-For value sent on: the client's own list, if it sent one, then its
/// address. Kept inline when it is the address alone, as for most requests.
enum ForwardedFor {
    Address { text: [u8; IP_TEXT_MAX], len: usize },
    List(Vec<u8>),
}

impl ForwardedFor {
    /// The client's address alone; IPv4 written by hand, as `fmt` costs more than the
    /// rest of header preparation.
    fn address(ip: IpAddr) -> ForwardedFor {
        let mut text = [0u8; IP_TEXT_MAX];
        let len = match ip {
            IpAddr::V4(v4) => {
                let mut len = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    let digits = [octet / 100, octet / 10 % 10, octet % 10];
                    let skip = if octet >= 100 {
                        0
                    } else if octet >= 10 {
                        1
                    } else {
                        2
                    };
                    for &d in &digits[skip..] {
                        text[len] = b'0' + d;
                        len += 1;
                    }
                }
                len
            }
            IpAddr::V6(v6) => {
                let mut rest = &mut text[..];
                // Cannot fail: IP_TEXT_MAX holds the longest form.
                let _ = write!(rest, "{v6}");
                IP_TEXT_MAX - rest.len()
            }
        };
        ForwardedFor::Address { text, len }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            ForwardedFor::Address { text, len } => &text[..*len],
            ForwardedFor::List(list) => list,
        }
    }
}

/// What the router adds to Via, both ways.
pub(crate) static VIA: HeaderValue = HeaderValue::from_static("1.1 photosrv");

/// What every attempt of one request sends besides the client's own headers; computed
/// once per request.
pub(crate) struct Forwarding<'r> {
    client_headers: &'r HeaderMap,
    dropped: Vec<HeaderName>,
    forwarded_for: ForwardedFor,
}

impl<'r> Forwarding<'r> {
    /// X-Forwarded-For with `client_ip` appended, and the Connection-listed headers: one
    /// pass over the client's headers (cheaper than looking either up for the few headers
    /// a request has).
    pub(crate) fn new(client_headers: &'r HeaderMap, client_ip: IpAddr) -> Forwarding<'r> {
        let mut dropped = Vec::new();
        let mut list = Vec::new();
        for (name, value) in client_headers {
            if name == header::CONNECTION {
                dropped.extend(connection_listed(value));
            } else if *name == X_FORWARDED_FOR && !value.is_empty() {
                // Several field lines are one list (RFC 9110 5.3), in the order sent; an
                // empty line adds nothing to it, not an empty element.
                if !list.is_empty() {
                    list.extend_from_slice(b", ");
                }
                list.extend_from_slice(value.as_bytes());
            }
        }
        let address = ForwardedFor::address(client_ip);
        let forwarded_for = if list.is_empty() {
            address
        } else {
            list.extend_from_slice(b", ");
            list.extend_from_slice(address.as_bytes());
            ForwardedFor::List(list)
        };
        Forwarding {
            client_headers,
            dropped,
            forwarded_for,
        }
    }

    /// The request head for one attempt at `node`: the request line for `target` (origin
    /// form, the node's base path included); Host; the client's headers except hop-by-hop
    /// ones, Host, Content-Length and X-Forwarded-For; then X-Forwarded-For and Via. None
    /// when `target` cannot go on a request line (see [`start_head`]). (Header names and
    /// values came through hyper's parser and `http`'s checks: no CR, LF or NUL.)
    pub(crate) fn request_head(
        &self,
        method: &Method,
        node: &Node,
        target: &str,
    ) -> Option<Vec<u8>> {
        let mut head = start_head(method, target, &node.host_header)?;
        for (name, value) in self.client_headers {
            let skip = HOP_BY_HOP.contains(name)
                || name == header::HOST
                || name == header::CONTENT_LENGTH
                || *name == X_FORWARDED_FOR
                || self.dropped.contains(name);
            if !skip {
                push_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        end_head(&mut head, Some(self.forwarded_for.as_bytes()));
        Some(head)
    }
}

/// Starts a request head to a node: the request line for `target` and Host. None when
/// `target` cannot go on a request line as it is: a space, a control character or DEL
/// would end the line or smuggle another.
pub(crate) fn start_head(method: &Method, target: &str, host: &HeaderValue) -> Option<Vec<u8>> {
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let mut head = Vec::with_capacity(256 + target.len());
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(host.as_bytes());
    head.extend_from_slice(b"\r\n");
    Some(head)
}

/// Ends a request head to a node: X-Forwarded-For (when there is one), Via, the empty line.
pub(crate) fn end_head(head: &mut Vec<u8>, forwarded_for: Option<&[u8]>) {
    if let Some(value) = forwarded_for {
        push_field(head, b"x-forwarded-for", value);
    }
    push_field(head, b"via", VIA.as_bytes());
    head.extend_from_slice(b"\r\n");
}

/// Why one attempt at one node failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Could not connect (or the connection broke before a response). The order matches
    /// `metrics::FAILURE_KINDS`, which has no kind for `Local`: the node did not fail.
    Connect,
    /// No response headers within the upstream timeout.
    Timeout,
    /// The node answered 5xx.
    Status,
    /// The router itself could not open a connection: out of file descriptors or memory.
    /// No fault of the node, which is neither ejected nor counted as failed.
    Local,
}

/// What forwarding came to.
pub(crate) enum Outcome {
    /// A node's response, to stream to the client.
    Response {
        response: NodeResponse,
        node: Arc<Node>,
        attempts: u32,
    },
    /// Every candidate failed; `all_timeouts` picks 504 over 502, `all_local` 503.
    Failed {
        attempts: u32,
        all_timeouts: bool,
        all_local: bool,
    },
}

/// What a node answered: a response to forward, or a probe's status.
trait Answer {
    fn status(&self) -> StatusCode;
}

impl Answer for NodeResponse {
    fn status(&self) -> StatusCode {
        NodeResponse::status(self)
    }
}

impl Answer for StatusCode {
    fn status(&self) -> StatusCode {
        *self
    }
}

/// The nodes of a group in the order to try them: random, recently failed ones last. The
/// first is the race's `winner` if there is one, else one that may take a request first
/// ([`Node::take_first`], for up to `lease`) if there is one.
fn order(group: &[Arc<Node>], winner: Option<&Arc<Node>>, lease: Duration) -> Vec<Arc<Node>> {
    let mut nodes = group.to_vec();
    nodes.shuffle(&mut rand::thread_rng());
    nodes.sort_by_key(|n| n.is_ejected());
    let first = match winner {
        Some(winner) => nodes.iter().position(|n| Arc::ptr_eq(n, winner)),
        None => nodes.iter().position(|n| n.take_first(lease)),
    };
    if let Some(first) = first {
        nodes[..=first].rotate_right(1);
    }
    nodes
}

/// The request target at `node`: its base path (from the config URL), then the request's.
fn upstream_target<'p>(node: &Node, path_and_query: &'p str) -> Cow<'p, str> {
    match node.addr.base_path.as_str() {
        "" => Cow::Borrowed(path_and_query),
        base => Cow::Owned(format!("{base}{path_and_query}")),
    }
}

/// Whether `error` says the router's process or host ran out of something a new connection
/// needs (file descriptors, socket buffers, memory) rather than that the node failed.
fn out_of_resources(error: &(dyn std::error::Error + 'static)) -> bool {
    use rustix::io::Errno;
    const EXHAUSTED: [Errno; 4] = [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM];
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Errno::from_io_error(io).is_some_and(|errno| EXHAUSTED.contains(&errno));
        }
        cause = error.source();
    }
    false
}

impl Router {
    /// One request to one node, up to its response headers.
    async fn attempt(
        &self,
        method: &Method,
        node: &Arc<Node>,
        path_and_query: &str,
        forwarding: &Forwarding<'_>,
    ) -> Result<NodeResponse, Failure> {
        let target = upstream_target(node, path_and_query);
        let Some(head) = forwarding.request_head(method, node, &target) else {
            return Err(Failure::Connect);
        };
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.inner.options.upstream_timeout,
            self.inner
                .upstream
                .send(node, &head, method == Method::HEAD),
        )
        .await;
        self.settle(node, started, result)
    }

    /// Records the outcome of a request to `node` (latency, failures, ejection) and says
    /// whether it can be used.
    fn settle<A: Answer>(
        &self,
        node: &Node,
        started: Instant,
        result: Result<Result<A, UpstreamError>, tokio::time::error::Elapsed>,
    ) -> Result<A, Failure> {
        let inner = &self.inner;
        let metrics = node.metrics(&inner.metrics);
        let failure = match result {
            Ok(Ok(response)) => {
                metrics.latency.observe(started.elapsed().as_secs_f64());
                if !response.status().is_server_error() {
                    node.restore();
                    return Ok(response);
                }
                Failure::Status
            }
            Ok(Err(error)) if out_of_resources(&*error) => {
                inner.warn_out_of_resources(node, &*error);
                Failure::Local
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
        if let Some(counter) = metrics.failures.get(failure as usize) {
            counter.inc();
        }
        Err(failure)
    }

    /// HEADs the nodes of `group` at once; the first 2xx/3xx wins. Nodes that failed
    /// lately are left out while another can answer. A probe gets the head timeout, no
    /// more: one that has not answered by then cannot win, and a node that accepts but
    /// never answers would otherwise hold a connection from every race for the whole
    /// upstream timeout. The race stops waiting for the others at once, but lets them
    /// finish in the background (within their time): dropping a probe mid-flight would
    /// close its connection, and a HEAD is cheap to complete; their outcomes count as any
    /// other, so a node whose probe failed is ejected. The probes run inside this future,
    /// and only those still running when it ends move to a task of their own: one spawn per
    /// race at most, none when every probe answered.
    /// Returns the winner's index, and whether every node probed said 404.
    async fn race(
        &self,
        group: &[Arc<Node>],
        path_and_query: &str,
        forwarding: &Forwarding<'_>,
    ) -> (Option<usize>, bool) {
        let inner = &self.inner;
        inner.metrics.multihead_races.inc();
        let limit = inner.options.head_timeout;
        let skip_ejected = group.iter().any(|node| !node.is_ejected());
        let mut probes = FuturesUnordered::new();
        for (i, node) in group.iter().enumerate() {
            if skip_ejected && !node.take_first(limit) {
                continue;
            }
            let Some(request) = probe_request(
                &upstream_target(node, path_and_query),
                &node.host_header,
                Some(forwarding.forwarded_for.as_bytes()),
            ) else {
                continue;
            };
            let (upstream, node) = (inner.upstream.clone(), node.clone());
            probes.push(async move {
                let started = Instant::now();
                let result = tokio::time::timeout(limit, upstream.probe(&node, &request)).await;
                (i, started, result)
            });
        }
        let probed = probes.len();
        let (mut not_found, mut timed_out) = (0, false);
        let deadline = tokio::time::sleep(inner.options.head_timeout);
        tokio::pin!(deadline);
        let outcome = loop {
            tokio::select! {
                next = probes.next() => match next {
                    Some((i, started, result)) => match self.settle(&group[i], started, result) {
                        Ok(status) if status.as_u16() < 400 => break (Some(i), false),
                        Ok(status) => not_found += usize::from(status == StatusCode::NOT_FOUND),
                        Err(failure) => timed_out |= failure == Failure::Timeout,
                    },
                    None => {
                        // The probes' time and the race's run out together: either may
                        // end the race.
                        if timed_out {
                            inner.metrics.multihead_timeouts.inc();
                        }
                        break (None, probed > 0 && not_found == probed);
                    }
                },
                () = &mut deadline => {
                    inner.metrics.multihead_timeouts.inc();
                    break (None, false);
                }
            }
        };
        if !probes.is_empty() {
            let (router, group) = (self.clone(), group.to_vec());
            tokio::spawn(async move {
                while let Some((i, started, result)) = probes.next().await {
                    let _ = router.settle(&group[i], started, result);
                }
            });
        }
        outcome
    }

    /// Tries the groups of a route in turn, the nodes of each in turn.
    pub(crate) async fn forward(
        &self,
        method: &Method,
        groups: &[&[Arc<Node>]],
        path_and_query: &str,
        forwarding: &Forwarding<'_>,
    ) -> Outcome {
        let mut attempts = 0u32;
        let (mut all_timeouts, mut all_local) = (true, true);
        let multihead = self.inner.options.mode == photosrv_config::ReplicaMode::Multihead;
        for (g, group) in groups.iter().enumerate() {
            let has_next_group = g + 1 < groups.len();
            let mut winner = None;
            if multihead && group.len() > 1 {
                // A client's HEAD, too, goes to the winner as a request of its own: the probe
                // read only the status.
                match self.race(group, path_and_query, forwarding).await {
                    (Some(i), _) => winner = Some(&group[i]),
                    (None, true) if has_next_group => continue,
                    (None, _) => {}
                }
            }
            let nodes = order(group, winner, self.inner.options.upstream_timeout);
            for node in nodes {
                attempts += 1;
                if attempts > 1 {
                    self.inner.metrics.retries.inc();
                }
                match self
                    .attempt(method, &node, path_and_query, forwarding)
                    .await
                {
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
                    Err(failure) => {
                        all_timeouts &= failure == Failure::Timeout;
                        all_local &= failure == Failure::Local;
                    }
                }
            }
        }
        Outcome::Failed {
            attempts,
            all_timeouts,
            all_local: all_local && attempts > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the router's own shortages count as local, however deep in the error's causes;
    /// a refused or reset connection is the node's.
    #[test]
    fn out_of_resources_means_the_routers_own_shortage() {
        use rustix::io::Errno;
        #[derive(Debug, thiserror::Error)]
        #[error("tcp open error")]
        struct Wrapper(#[source] std::io::Error);
        let local = [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM];
        let remote = [
            Errno::CONNREFUSED,
            Errno::CONNRESET,
            Errno::TIMEDOUT,
            Errno::ADDRNOTAVAIL,
        ];
        for (errnos, want) in [(local, true), (remote, false)] {
            for errno in errnos {
                let io = || std::io::Error::from_raw_os_error(errno.raw_os_error());
                assert_eq!(out_of_resources(&io()), want, "{errno:?}");
                assert_eq!(out_of_resources(&Wrapper(io())), want, "{errno:?} wrapped");
            }
        }
        assert!(!out_of_resources(&std::fmt::Error));
    }

    #[test]
    fn ip_values_match_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.100.99.9",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let text = ip.to_string();
            assert_eq!(ForwardedFor::address(ip).as_bytes(), text.as_bytes());
        }
    }

    /// A Connection line with a byte that is not ASCII still drops the headers it names
    /// (read as text, the whole line was ignored and they went to the node); empty
    /// X-Forwarded-For lines add nothing.
    #[test]
    fn odd_connection_and_forwarded_for_lines() {
        let mut client = HeaderMap::new();
        client.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"X-Private, caf\xe9").unwrap(),
        );
        client.append(header::CONNECTION, HeaderValue::from_static("close"));
        client.append("x-private", HeaderValue::from_static("1"));
        client.append("x-public", HeaderValue::from_static("2"));
        client.append("close", HeaderValue::from_static("3"));
        for value in ["", "10.0.0.1", ""] {
            client.append("x-forwarded-for", HeaderValue::from_static(value));
        }
        let forwarding = Forwarding::new(&client, "127.0.0.1".parse().unwrap());
        let node = Node::new(
            photosrv_config::NodeAddr::parse("http://node:8080").unwrap(),
            Instant::now(),
        );
        let head = forwarding.request_head(&Method::GET, &node, "/a").unwrap();
        let head = String::from_utf8_lossy(&head);
        assert!(!head.contains("x-private"), "{head}");
        assert!(!head.contains("close"), "{head}");
        assert!(head.contains("\r\nx-public: 2\r\n"), "{head}");
        // Empty X-Forwarded-For lines add no empty element (found by the client_head fuzz
        // target: the first such line gave ", 127.0.0.1" or a later one "a, , 127.0.0.1").
        assert!(
            head.contains("\r\nx-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"),
            "{head}"
        );
    }

    /// What a node receives: the client's end-to-end headers, its own Host, the client's
    /// address appended to X-Forwarded-For (all of the client's field lines, in order),
    /// Via; no hop-by-hop header, none the client's
    /// Connection header named, no Content-Length.
    #[test]
    fn request_heads_carry_end_to_end_headers_only() {
        let mut client = HeaderMap::new();
        for (name, value) in [
            ("host", "photos.example"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("content-length", "0"),
            ("x-forwarded-for", "10.0.0.1"),
            ("range", "bytes=0-1"),
            ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
            ("if-none-match", "\"e\""),
        ] {
            client.append(name, HeaderValue::from_static(value));
        }
        let forwarding = Forwarding::new(&client, "127.0.0.1".parse().unwrap());
        let addr = photosrv_config::NodeAddr::parse("http://node:8080/base").unwrap();
        let node = Node::new(addr, Instant::now());
        let head = forwarding
            .request_head(&Method::GET, &node, "/base/a/b.jpg?x=1")
            .unwrap();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        assert_eq!(
            request.parse(&head).unwrap(),
            httparse::Status::Complete(head.len())
        );
        assert_eq!(
            (request.method, request.path),
            (Some("GET"), Some("/base/a/b.jpg?x=1"))
        );
        let sent: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let want = [
            ("host", "node:8080"),
            ("range", "bytes=0-1"),
            ("if-none-match", "\"e\""),
            ("x-forwarded-for", "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"),
            ("via", "1.1 photosrv"),
        ];
        assert_eq!(
            sent,
            want.map(|(n, v)| (n.to_owned(), v.to_owned())),
            "{}",
            String::from_utf8_lossy(&head)
        );
        for bad in ["", "/a b", "/a\r\nX-Smuggled: 1", "/a\tb", "/a\x7f"] {
            assert!(
                forwarding.request_head(&Method::GET, &node, bad).is_none(),
                "{bad:?}"
            );
        }
    }
}
