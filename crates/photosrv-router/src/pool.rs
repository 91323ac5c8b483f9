//! Keep-alive connections to the nodes: a short list per node over hyper's HTTP/1 client
//! connections.
//!
//! hyper-util's pooled client did this job first. Its checkout and return hash the pool key
//! (SipHash over scheme and authority) and run through several futures on every request:
//! 16% of the router's user-space instructions per 4 KiB request (docs/benchmarks.md). Here
//! each [`Node`] owns its connections, so finding one is a scan of a short list. (Multi-HEAD
//! probes do not come here: they have connections of their own, see `probe.rs`.)
//!
//! What hyper-util's pool did that this keeps: a request that meets a kept connection the
//! node has just closed goes out again on another one (hyper hands back a request it did not
//! write); closed connections are dropped and idle ones expire; a connection is reused only
//! once it is ready, that is once the previous response's body has been read.

use crate::node::Node;
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tower_service::Service as _;

/// A connection's request side; its I/O runs in a task of its own.
type Sender = SendRequest<Empty<Bytes>>;

/// Why a request to a node got no response.
pub(crate) type UpstreamError = Box<dyn std::error::Error + Send + Sync>;

/// Connections kept per node, busy and idle together: as many as the router has requests in
/// flight to that node, up to this.
pub(crate) const MAX_KEPT: usize = 256;

/// A connection unused for this long is closed rather than reused.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a pool looks through all its connections for expired and closed ones.
/// Finding a connection stops at the first ready one, so without this the connections a
/// burst opened would sit at the bottom of the list, each holding a read buffer (up to
/// `upstream_buffer_bytes`), until the node closed them.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One node's connections.
#[derive(Debug, Default)]
pub(crate) struct ConnectionPool {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// Oldest first: the last one is the most recently used.
    connections: Vec<Connection>,
    /// When the whole list was last looked through.
    swept: Option<Instant>,
}

#[derive(Debug)]
struct Connection {
    sender: Sender,
    /// When it last carried a request.
    used: Instant,
}

impl Connection {
    fn expired(&self, now: Instant) -> bool {
        self.sender.is_ready() && now.duration_since(self.used) > IDLE_TIMEOUT
    }
}

impl ConnectionPool {
    /// A connection ready for a request, the most recently used first, so that a few
    /// connections stay busy and the rest expire. Drops closed connections and idle ones
    /// past their time on the way.
    fn take_ready(&self, now: Instant) -> Option<Sender> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept
            .swept
            .is_none_or(|swept| now.duration_since(swept) >= SWEEP_INTERVAL)
        {
            kept.swept = Some(now);
            kept.connections
                .retain(|c| !c.sender.is_closed() && !c.expired(now));
        }
        let connections = &mut kept.connections;
        let mut i = connections.len();
        while i > 0 {
            i -= 1;
            let candidate = &connections[i];
            if candidate.sender.is_closed() {
                connections.remove(i);
            } else if candidate.sender.is_ready() {
                // `remove`, not `swap_remove`: the order is what lets unneeded ones expire.
                let taken = connections.remove(i);
                if now.duration_since(taken.used) <= IDLE_TIMEOUT {
                    return Some(taken.sender);
                }
            }
        }
        None
    }

    /// Keeps a connection that just carried a request. It is busy until the response body
    /// has been read, and [`ConnectionPool::take_ready`] passes it over until then.
    fn keep(&self, sender: Sender, now: Instant) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.connections.len() < MAX_KEPT {
            kept.connections.push(Connection { sender, used: now });
        }
    }

    /// Connections kept (busy or idle).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connections
            .len()
    }
}

/// Sends requests to nodes over their kept connections, opening new ones as needed.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    connector: HttpConnector,
    /// The most a connection reads at once. hyper grows a connection's read buffer up to
    /// this on large bodies (~400 KiB unless told), and every kept connection that has
    /// carried one holds a buffer that big: with hundreds of connections that is most of
    /// the router's memory (docs/benchmarks.md, "Where the memory goes").
    read_buffer: usize,
}

impl Upstream {
    pub(crate) fn new(connect_timeout: Duration, read_buffer: usize) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        Upstream {
            connector,
            read_buffer,
        }
    }

    /// Sends `request` (origin-form URI, Host set) to `node`, up to the response headers.
    pub(crate) async fn send(
        &self,
        node: &Node,
        mut request: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let pool = &node.pool;
        loop {
            let (mut sender, reused) = match pool.take_ready(Instant::now()) {
                Some(sender) => (sender, true),
                None => (self.connect(node).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    pool.keep(sender, Instant::now());
                    return Ok(response);
                }
                Err(mut error) => match error.take_message() {
                    // Not written: the kept connection closed under us. Another one (or a
                    // new one) gets it; each kept connection is tried at most once.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(error.into_error().into()),
                },
            }
        }
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

    async fn connect(&self, node: &Node) -> Result<Sender, UpstreamError> {
        let io = TokioIo::new(self.connect_tcp(node).await?);
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(self.read_buffer)
            .handshake(io)
            .await?;
        let url = node.addr.url.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(node = %url, %error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_node::{FakeNode, Script};

    fn request() -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = Uri::from_static("/x");
        request
            .headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("node"));
        request
    }

    /// A node answering 200 "ok", closing each connection after `answers` requests, each
    /// body sent `body_delay` after its head.
    async fn fake_node(answers: usize, body_delay: Duration) -> FakeNode {
        FakeNode::start(Script {
            answers,
            body_delay,
            ..Script::default()
        })
        .await
    }

    async fn body(response: Response<Incoming>) -> Bytes {
        use http_body_util::BodyExt as _;
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn reuses_a_connection_once_its_body_is_read() {
        let fake = fake_node(usize::MAX, Duration::ZERO).await;
        let node = &fake.node;
        let upstream = Upstream::new(Duration::from_secs(1), 64 * 1024);
        for _ in 0..5 {
            let response = upstream.send(node, request()).await.unwrap();
            assert_eq!(body(response).await, "ok");
        }
        assert_eq!(fake.accepted(), 1);
        assert_eq!(node.pool.len(), 1);
    }

    #[tokio::test]
    async fn a_busy_connection_is_not_shared() {
        let fake = fake_node(usize::MAX, Duration::from_millis(200)).await;
        let node = &fake.node;
        let upstream = Upstream::new(Duration::from_secs(1), 64 * 1024);
        // The first body has not arrived yet: its connection is busy.
        let first = upstream.send(node, request()).await.unwrap();
        let second = upstream.send(node, request()).await.unwrap();
        assert_eq!(body(first).await, "ok");
        assert_eq!(body(second).await, "ok");
        assert_eq!(fake.accepted(), 2);
        // Both are free again: the next two requests open nothing new.
        for _ in 0..2 {
            let response = upstream.send(node, request()).await.unwrap();
            assert_eq!(body(response).await, "ok");
        }
        assert_eq!(fake.accepted(), 2);
    }

    /// Idle connections past their time are closed, also those below the one a request
    /// takes: after a burst, the extra connections (and their read buffers) go.
    #[tokio::test]
    async fn idle_connections_expire() {
        let fake = fake_node(usize::MAX, Duration::ZERO).await;
        let node = &fake.node;
        let upstream = Upstream::new(Duration::from_secs(1), 64 * 1024);
        let start = Instant::now();
        let mut senders = Vec::new();
        for _ in 0..3 {
            let mut sender = upstream.connect(node).await.unwrap();
            sender.ready().await.unwrap();
            senders.push(sender);
        }
        let mut senders = senders.into_iter();
        // Two left over from a burst, then one in use since.
        node.pool.keep(senders.next().unwrap(), start);
        node.pool.keep(senders.next().unwrap(), start);
        let recent = start + IDLE_TIMEOUT - Duration::from_secs(1);
        node.pool.keep(senders.next().unwrap(), recent);
        let now = start + IDLE_TIMEOUT + Duration::from_secs(1);
        assert!(node.pool.take_ready(now).is_some());
        assert_eq!(node.pool.len(), 0, "the two expired connections were kept");
        // Nothing ready is left to reuse once everything has expired.
        let mut sender = upstream.connect(node).await.unwrap();
        sender.ready().await.unwrap();
        node.pool.keep(sender, start);
        assert!(node.pool.take_ready(now).is_none());
        assert_eq!(node.pool.len(), 0);
    }

    /// The node closes every connection after one answer, as a node does at its
    /// keep-alive limit: no request fails for it, and the closed connections are let go.
    #[tokio::test]
    async fn connections_the_node_closed_are_let_go() {
        let fake = fake_node(1, Duration::ZERO).await;
        let node = &fake.node;
        let upstream = Upstream::new(Duration::from_secs(1), 64 * 1024);
        for _ in 0..20 {
            let response = upstream.send(node, request()).await.unwrap();
            assert_eq!(body(response).await, "ok");
        }
        assert_eq!(fake.accepted(), 20);
        assert!(node.pool.len() <= 1, "{} kept", node.pool.len());
    }

    /// A kept connection whose far end went away before its task noticed: the request is
    /// not written there, hyper hands it back, and it goes out on a new connection.
    #[tokio::test]
    async fn a_request_not_written_on_a_dead_connection_goes_out_on_another() {
        let fake = fake_node(usize::MAX, Duration::ZERO).await;
        let node = &fake.node;
        let upstream = Upstream::new(Duration::from_secs(1), 64 * 1024);
        let (near, far) = tokio::io::duplex(4096);
        let (sender, connection) = http1::handshake(hyper_util::rt::TokioIo::new(near))
            .await
            .unwrap();
        tokio::spawn(connection);
        tokio::task::yield_now().await;
        assert!(sender.is_ready());
        node.pool.keep(sender, Instant::now());
        drop(far);
        let response = upstream.send(node, request()).await.unwrap();
        assert_eq!(body(response).await, "ok");
        assert_eq!(fake.accepted(), 1);
    }
}
