//! Keep-alive connections to the nodes: a short list of idle ones per node, and the
//! exchange of a GET or HEAD over one (`h1.rs`).
//!
//! hyper-util's pooled client did this job first. Its checkout and return hash the pool key
//! (SipHash over scheme and authority) and run through several futures on every request: 16% of
//! the router's user-space instructions per 4 KiB request (docs/benchmarks-history.md). Here
//! each [`Node`] owns its connections, so finding one is a scan of a short list, and an idle
//! connection is a socket and its read buffer: no task. (Multi-HEAD probes keep theirs in a
//! list of their own, see `probe.rs`.)
//!
//! What hyper-util's pool did that this keeps: a request that meets a kept connection the
//! node has just closed goes out again on another one (a GET or HEAD that got no byte of an
//! answer is safe to send again); closed connections are dropped and idle ones expire; a
//! connection is reused only once the previous response's body has been read whole.

use crate::h1::{self, BodyRules, ExchangeError, NodeResponse};
use crate::node::Node;
use bytes::BytesMut;
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tower_service::Service as _;

/// Why a request to a node got no response.
pub(crate) type UpstreamError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections kept per node (for GETs, and apart for probes), up to this.
pub(crate) const MAX_KEPT: usize = 256;

/// A connection unused for this long is closed rather than reused.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One node's idle connections (of one kind: GETs, or multi-HEAD probes).
#[derive(Debug, Default)]
pub(crate) struct IdleConnections {
    /// Oldest first: the last one is the most recently used.
    idle: Mutex<VecDeque<Idle>>,
}

#[derive(Debug)]
struct Idle {
    connection: Connection,
    since: Instant,
}

/// A connection to a node and its read buffer. They are kept together, as hyper's client
/// connections kept theirs: a buffer allocated for every response and freed after it made
/// the allocator hand pages back to the system and fault them in again, a tenth of the
/// router's CPU at 256 KiB (perf, seventh session).
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            buf: BytesMut::new(),
        }
    }
}

impl IdleConnections {
    /// The most recently used idle connection that is still open, so that a few
    /// connections stay busy and the rest expire. Drops those that are not, and those idle
    /// past their time.
    pub(crate) fn take(&self, now: Instant) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        drop_expired(&mut idle, now);
        while let Some(kept) = idle.pop_back() {
            // A close (or bytes nobody asked for) that the runtime has seen makes the socket
            // readable; otherwise this returns at once, without a system call.
            if let Err(e) = kept.connection.stream.try_read(&mut [0u8; 1]) {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Some(kept.connection);
                }
            }
        }
        None
    }

    /// Keeps a connection that just finished an exchange, and lets go of those idle past
    /// their time (the oldest are first), so the connections a burst opened do not stay.
    pub(crate) fn keep(&self, connection: Connection, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        drop_expired(&mut idle, now);
        if idle.len() < MAX_KEPT {
            idle.push_back(Idle {
                connection,
                since: now,
            });
        }
    }

    /// Idle connections kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Lets go of the connections idle past their time: the oldest, at the front.
fn drop_expired(idle: &mut VecDeque<Idle>, now: Instant) {
    while idle
        .front()
        .is_some_and(|kept| now.duration_since(kept.since) > IDLE_TIMEOUT)
    {
        idle.pop_front();
    }
}

/// Sends requests to nodes over their kept connections, opening new ones as needed.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    connector: HttpConnector,
    /// How bodies are read. A streamed response holds up to `body.chunk` per connection in
    /// the router, twice (one chunk read ahead, one being written).
    body: BodyRules,
}

impl Upstream {
    pub(crate) fn new(connect_timeout: Duration, body: BodyRules) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        Upstream { connector, body }
    }

    /// Sends `head` (a whole request head, from `Forwarding::request_head`) to `node`, up to
    /// the response headers. `to_head`: the request is a HEAD, whose answer has no body.
    pub(crate) async fn send(
        &self,
        node: &Arc<Node>,
        head: &[u8],
        to_head: bool,
    ) -> Result<NodeResponse, UpstreamError> {
        loop {
            let (connection, reused) = match node.pool.take(Instant::now()) {
                Some(connection) => (connection, true),
                None => (Connection::new(self.connect_tcp(node).await?), false),
            };
            match self.exchange(node, connection, head, to_head).await {
                Ok(response) => return Ok(response),
                // The kept connection was closed under us: another one (or a new one) gets
                // the request; each kept connection is tried at most once.
                Err(ExchangeError::NoAnswer(_)) if reused => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn exchange(
        &self,
        node: &Arc<Node>,
        mut connection: Connection,
        head: &[u8],
        to_head: bool,
    ) -> Result<NodeResponse, ExchangeError> {
        let Connection { stream, buf } = &mut connection;
        stream
            .write_all(head)
            .await
            .map_err(ExchangeError::NoAnswer)?;
        // Room for a head and a small body in one read; the last response's allocation
        // again, once nothing of it is in use.
        buf.reserve(h1::FIRST_READ);
        let (parsed, length) = h1::read_head(stream, buf, |response, status, raw, length| {
            Ok((h1::parse_head(response, status, raw, to_head)?, length))
        })
        .await?;
        let raw = buf.split_to(length).freeze();
        let (framing, keep_alive) = (parsed.framing, parsed.keep_alive);
        // A body that fits the first read but came after the head is read here, not
        // streamed by a task of its own. At light load the head is often read alone (7 of
        // 20 GETs of 4 KiB one after another here; none of 235k under wrk's load). A cut
        // is then an error of this attempt, before any byte goes to the client, so
        // another node can take the request.
        if let h1::Framing::Length(body_length) = framing {
            if body_length <= h1::FIRST_READ as u64 {
                buf.reserve((body_length as usize).saturating_sub(buf.len()));
                while (buf.len() as u64) < body_length {
                    match stream.read_buf(buf).await {
                        Ok(0) => return Err(ExchangeError::CutShort(h1::cut_short())),
                        Ok(_) => {}
                        Err(e) => return Err(ExchangeError::CutShort(e)),
                    }
                }
            }
        }
        let body = h1::body(node, connection, framing, keep_alive, self.body);
        Ok(NodeResponse::new(parsed, raw, body))
    }

    /// A new TCP connection to `node` (resolved, within the connect timeout, no Nagle).
    pub(crate) async fn connect_tcp(&self, node: &Node) -> Result<TcpStream, UpstreamError> {
        let uri = Uri::builder()
            .scheme(node.scheme.clone())
            .authority(node.authority.clone())
            .path_and_query("/")
            .build()?;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        Ok(connector.call(uri).await?.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_node::{FakeNode, Script};
    use crate::h1::Relay;
    use bytes::Bytes;
    use http_body_util::BodyExt as _;

    const GET: &[u8] = b"GET /x HTTP/1.1\r\nhost: node\r\n\r\n";

    /// A node answering 200 "ok", closing each connection after `answers` requests, each
    /// body sent `body_delay` after its head.
    async fn fake_node(answers: usize, body_delay: Duration) -> (FakeNode, Arc<Node>) {
        node_with(Script {
            answers,
            body_delay,
            ..Script::default()
        })
        .await
    }

    async fn node_with(script: Script) -> (FakeNode, Arc<Node>) {
        let fake = FakeNode::start(script).await;
        let node = Arc::new(Node::new(fake.node.addr.clone(), Instant::now()));
        (fake, node)
    }

    fn upstream() -> Upstream {
        upstream_with(Relay::Reader)
    }

    fn upstream_with(relay: Relay) -> Upstream {
        let body = BodyRules {
            chunk: 64 * 1024,
            relay,
            idle: Duration::from_secs(5),
            client_idle: Duration::from_secs(5),
        };
        Upstream::new(Duration::from_secs(1), body)
    }

    async fn body(response: NodeResponse) -> std::io::Result<Bytes> {
        Ok(response.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn reuses_a_connection_once_its_body_is_read() {
        let (fake, node) = fake_node(usize::MAX, Duration::ZERO).await;
        for _ in 0..5 {
            let response = upstream().send(&node, GET, false).await.unwrap();
            assert_eq!(body(response).await.unwrap(), "ok");
        }
        assert_eq!(fake.accepted(), 1);
        assert_eq!(node.pool.len(), 1);
    }

    /// A body larger than the first read, sent after the head.
    static LARGE: [u8; 2 * h1::FIRST_READ] = [b'x'; 2 * h1::FIRST_READ];

    #[tokio::test]
    async fn a_busy_connection_is_not_shared() {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", LARGE.len());
        let (fake, node) = node_with(Script {
            head: Box::leak(head.into_bytes().into_boxed_slice()),
            body: &LARGE,
            body_delay: Duration::from_millis(200),
            ..Script::default()
        })
        .await;
        // The first body has not arrived yet: its connection is busy.
        let first = upstream().send(&node, GET, false).await.unwrap();
        let second = upstream().send(&node, GET, false).await.unwrap();
        assert_eq!(body(first).await.unwrap(), LARGE[..]);
        assert_eq!(body(second).await.unwrap(), LARGE[..]);
        assert_eq!(fake.accepted(), 2);
        // Both are free again: the next two requests open nothing new.
        for _ in 0..2 {
            let response = upstream().send(&node, GET, false).await.unwrap();
            assert_eq!(body(response).await.unwrap(), LARGE[..]);
        }
        assert_eq!(fake.accepted(), 2);
    }

    /// A small body that comes after its head is read with it, not streamed: the
    /// connection is free again as soon as the response is, whichever way bodies are
    /// relayed.
    #[tokio::test]
    async fn a_small_body_after_its_head_is_read_with_it() {
        for relay in [Relay::Reader, Relay::Copy, Relay::Splice] {
            let (fake, node) = fake_node(usize::MAX, Duration::from_millis(50)).await;
            let response = upstream_with(relay).send(&node, GET, false).await.unwrap();
            assert_eq!(node.pool.len(), 1, "{relay:?}");
            assert_eq!(body(response).await.unwrap(), "ok");
            let response = upstream_with(relay).send(&node, GET, false).await.unwrap();
            assert_eq!(body(response).await.unwrap(), "ok");
            assert_eq!(fake.accepted(), 1, "{relay:?}");
        }
    }

    /// Idle connections past their time are closed, also those below the one a request
    /// takes: after a burst, the extra connections go.
    #[tokio::test]
    async fn idle_connections_expire() {
        let (_fake, node) = fake_node(usize::MAX, Duration::ZERO).await;
        let upstream = upstream();
        let start = Instant::now();
        // Two left over from a burst, then one in use since.
        node.pool.keep(
            Connection::new(upstream.connect_tcp(&node).await.unwrap()),
            start,
        );
        node.pool.keep(
            Connection::new(upstream.connect_tcp(&node).await.unwrap()),
            start,
        );
        let recent = start + IDLE_TIMEOUT - Duration::from_secs(1);
        node.pool.keep(
            Connection::new(upstream.connect_tcp(&node).await.unwrap()),
            recent,
        );
        let now = start + IDLE_TIMEOUT + Duration::from_secs(1);
        assert!(node.pool.take(now).is_some());
        assert_eq!(node.pool.len(), 0, "the two expired connections were kept");
        // Nothing is left to reuse once everything has expired.
        node.pool.keep(
            Connection::new(upstream.connect_tcp(&node).await.unwrap()),
            start,
        );
        assert!(node.pool.take(now).is_none());
        assert_eq!(node.pool.len(), 0);
        // At its time exactly a connection is still kept; past it, it is not.
        for since in [start, start + IDLE_TIMEOUT] {
            node.pool.keep(
                Connection::new(upstream.connect_tcp(&node).await.unwrap()),
                since,
            );
        }
        assert_eq!(node.pool.len(), 2);
        assert!(node
            .pool
            .take(start + IDLE_TIMEOUT + Duration::from_nanos(1))
            .is_some());
        assert_eq!(node.pool.len(), 0, "the older one expired");
    }

    /// However many connections a burst opened, at most `MAX_KEPT` stay idle per node.
    #[tokio::test]
    async fn at_most_max_kept_connections_are_kept() {
        let (_fake, node) = fake_node(usize::MAX, Duration::ZERO).await;
        let upstream = upstream();
        let now = Instant::now();
        for _ in 0..=MAX_KEPT {
            node.pool.keep(
                Connection::new(upstream.connect_tcp(&node).await.unwrap()),
                now,
            );
        }
        assert_eq!(node.pool.len(), MAX_KEPT);
    }

    /// The node closes every connection after one answer, as a node does at its
    /// keep-alive limit: no request fails for it, and the closed connections are let go.
    #[tokio::test]
    async fn connections_the_node_closed_are_let_go() {
        let (fake, node) = fake_node(1, Duration::ZERO).await;
        for _ in 0..20 {
            let response = upstream().send(&node, GET, false).await.unwrap();
            assert_eq!(body(response).await.unwrap(), "ok");
        }
        assert_eq!(fake.accepted(), 20);
        assert!(node.pool.len() <= 1, "{} kept", node.pool.len());
    }

    /// A kept connection whose far end went away before the runtime saw it: the request
    /// gets no answer there and goes out again on a new connection.
    #[tokio::test]
    async fn a_request_on_a_connection_closed_unseen_goes_out_again() {
        let (fake, node) = fake_node(usize::MAX, Duration::ZERO).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = listener.accept().await.unwrap();
        drop(far);
        node.pool.keep(Connection::new(near), Instant::now());
        let response = upstream().send(&node, GET, false).await.unwrap();
        assert_eq!(body(response).await.unwrap(), "ok");
        assert_eq!(fake.accepted(), 1);
        assert_eq!(node.pool.len(), 1);
    }

    /// A new connection that gets no answer is the node's failure, not a stale kept
    /// connection's: the request is not sent again (another replica may take it), and
    /// nothing is kept.
    #[tokio::test]
    async fn a_new_connection_without_an_answer_is_not_tried_again() {
        let (fake, node) = fake_node(0, Duration::ZERO).await;
        let sent = tokio::time::timeout(Duration::from_secs(5), upstream().send(&node, GET, false))
            .await
            .expect("the request was sent over and over");
        assert!(sent.is_err());
        assert_eq!(fake.accepted(), 1);
        assert_eq!(node.pool.len(), 0);
    }

    /// Each way a node frames a body arrives byte-exact; the connection is kept when the
    /// framing ends the body and the node allows it, and not otherwise.
    #[tokio::test]
    async fn every_framing_streams_exactly_and_keeps_only_reusable_connections() {
        let large: &'static [u8] = Box::leak(
            (0..300_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let large_head: &'static [u8] = Box::leak(
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", large.len())
                .into_bytes()
                .into_boxed_slice(),
        );
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
        // (head, body sent, body wanted, whether the connection may carry another request)
        for (head, sent, want, kept) in [
            (large_head, large, large, true),
            (
                &chunked[..],
                &b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: 1\r\n\r\n"[..],
                &b"hello world"[..],
                true,
            ),
            (&ok[..], &b"ok"[..], &b"ok"[..], true),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n",
                b"ok",
                b"ok",
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n",
                b"ok",
                b"ok",
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n",
                b"ok",
                b"ok",
                true,
            ),
            // Bytes after the body answer nothing asked: the connection is not reused,
            // whether they come in the head's read or after it.
            (ok, b"okEXTRA", b"ok", false),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
                b"",
                b"ok",
                false,
            ),
            // The same for a streamed (chunked) body.
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
                b"hello",
                false,
            ),
            (chunked, b"5\r\nhello\r\n0\r\n\r\nEXTRA", b"hello", false),
        ] {
            let label = String::from_utf8_lossy(&head[..head.len().min(60)]).into_owned();
            // A body that comes after its head is streamed, or waits to be relayed by the
            // client's side (and is then polled here): the same either way.
            for (delay, relay) in [
                (Duration::ZERO, Relay::Reader),
                (Duration::from_millis(20), Relay::Reader),
                (Duration::from_millis(20), Relay::Copy),
                (Duration::from_millis(20), Relay::Splice),
            ] {
                // The node keeps every connection open: only the router decides.
                let (_fake, node) = node_with(Script {
                    answers: usize::MAX,
                    head,
                    body: sent,
                    body_delay: delay,
                })
                .await;
                let response = upstream_with(relay).send(&node, GET, false).await.unwrap();
                assert_eq!(body(response).await.unwrap(), want, "{label}");
                // Extra bytes may come in a read of their own after the body.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let reused = node.pool.take(Instant::now()).is_some();
                assert_eq!(reused, kept, "{label} {delay:?} {relay:?}");
            }
        }
        // Read until the node closes: the body is whole, and the connection done.
        let (_fake, node) = node_with(Script {
            answers: 1,
            head: b"HTTP/1.1 200 OK\r\n\r\n",
            body: b"until close",
            body_delay: Duration::from_millis(20),
        })
        .await;
        let response = upstream().send(&node, GET, false).await.unwrap();
        assert_eq!(body(response).await.unwrap(), "until close");
        assert_eq!(node.pool.len(), 0);
    }

    /// An answer to a HEAD, a 204 and a 304 end with their heads, whatever length they
    /// state; the connection carries the next request unless the node closes it or sent more.
    #[tokio::test]
    async fn answers_without_a_body_end_with_their_head() {
        // (head, whether it answers a HEAD, connections the node sees for three requests)
        for (head, to_head, connections) in [
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"[..],
                true,
                1,
            ),
            (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], false, 1),
            (
                &b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n"[..],
                false,
                1,
            ),
            // Unless the node said it would close, or sent bytes after the head.
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\n"[..],
                true,
                3,
            ),
            (&b"HTTP/1.1 204 No Content\r\n\r\nEXTRA"[..], false, 3),
        ] {
            let (fake, node) = node_with(Script {
                head,
                body: b"",
                ..Script::default()
            })
            .await;
            for _ in 0..3 {
                let request: &[u8] = if to_head {
                    b"HEAD /x HTTP/1.1\r\nhost: node\r\n\r\n"
                } else {
                    GET
                };
                let response = upstream().send(&node, request, to_head).await.unwrap();
                assert_eq!(body(response).await.unwrap(), "");
            }
            let label = String::from_utf8_lossy(head);
            assert_eq!(fake.accepted(), connections, "{label}");
        }
    }

    /// What a node must not send is an error before any byte goes to the client, or, in
    /// the middle of a body, an error on the body: never a guess at the framing. (Each way
    /// of framing a body ambiguously is a case of `h1`'s `ambiguous_framing_is_refused`.)
    #[tokio::test]
    async fn malformed_or_cut_answers_are_errors() {
        for head in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nx-bad: a\x01b\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        ] {
            let (_fake, node) = node_with(Script {
                answers: 1,
                head,
                ..Script::default()
            })
            .await;
            let result = upstream().send(&node, GET, false).await;
            assert!(result.is_err(), "{}", String::from_utf8_lossy(head));
        }
        // A small body cut short fails the exchange: it is read with its head.
        let (_fake, node) = node_with(Script {
            answers: 1,
            head: b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
            body: b"short",
            ..Script::default()
        })
        .await;
        assert!(upstream().send(&node, GET, false).await.is_err());
        assert_eq!(node.pool.len(), 0);
        for (head, sent) in [
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n"[..],
                &b"short"[..],
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                b"5\r\nhello",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                b"5\r\nhelloXX0\r\n\r\n",
            ),
        ] {
            let (_fake, node) = node_with(Script {
                answers: 1,
                head,
                body: sent,
                ..Script::default()
            })
            .await;
            let response = upstream().send(&node, GET, false).await.unwrap();
            assert!(
                body(response).await.is_err(),
                "{}",
                String::from_utf8_lossy(sent)
            );
            assert_eq!(node.pool.len(), 0);
        }
    }

    /// A node's head of up to 64 KiB is read, however it arrives, and all its header lines
    /// are passed on; a longer one is refused, and one that never ends is refused as soon as
    /// 64 KiB of it have come, not left to the node's time limit.
    #[tokio::test]
    async fn heads_are_taken_up_to_64_kib() {
        let head = |line_bytes: usize, end: &str| -> &'static [u8] {
            let line = format!("x-filler: {}\r\n", "f".repeat(line_bytes - 12));
            let text = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{}{end}",
                line.repeat(99)
            );
            Box::leak(text.into_bytes().into_boxed_slice())
        };
        // 99 lines of 640 bytes: 63,400 bytes in all, the 100 header lines a head may have.
        let (_fake, node) = node_with(Script {
            answers: 1,
            head: head(640, "\r\n"),
            ..Script::default()
        })
        .await;
        let response = upstream().send(&node, GET, false).await.unwrap();
        let mut fields = Vec::new();
        response.write_fields(&mut fields);
        assert_eq!(fields.len(), 99 * 640 + "content-length: 2\r\n".len());
        assert_eq!(body(response).await.unwrap(), "ok");
        // 99 lines of 700 bytes: 69,340 bytes, whole or without its end.
        for end in ["\r\n", ""] {
            let (_fake, node) = node_with(Script {
                answers: 1,
                head: head(700, end),
                body: b"",
                body_delay: Duration::from_secs(30),
            })
            .await;
            let upstream = upstream();
            let sent = upstream.send(&node, GET, false);
            let error = tokio::time::timeout(Duration::from_secs(5), sent)
                .await
                .expect("refused once 64 KiB came")
                .unwrap_err();
            assert!(error.to_string().contains("too large"), "{end:?}: {error}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever a node sends before closing, a GET ends (no panic, no wait past the
        /// close), and a body that arrives is never longer than what was sent.
        #[test]
        fn any_answer_ends_the_exchange(
            status_line in proptest::prop_oneof![
                proptest::strategy::Just(&b""[..]),
                proptest::strategy::Just(&b"HTTP/1.1 200 OK\r\n"[..]),
                proptest::strategy::Just(&b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"[..]),
                proptest::strategy::Just(&b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\n"[..]),
            ],
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let answer: &'static [u8] = Box::leak([status_line, &rest].concat().into_boxed_slice());
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let outcome = runtime.block_on(async {
                let (_fake, node) = node_with(Script { answers: 1, head: answer, body: b"", ..Script::default() }).await;
                tokio::time::timeout(Duration::from_secs(5), async {
                    match upstream().send(&node, GET, false).await {
                        Ok(response) => Some(body(response).await),
                        Err(_) => None,
                    }
                })
                .await
            });
            let outcome = outcome.expect("the exchange outlived the node's close");
            if let Some(Ok(bytes)) = outcome {
                proptest::prop_assert!(bytes.len() <= answer.len());
            }
        }
    }
}
