//! Multi-HEAD probes: a HEAD to a node, read up to its status, on connections of their own.
//!
//! Through hyper's client a probe cost as much user-space CPU as a whole proxied 4 KiB GET:
//! a request and a header map built, a trip through a channel to the connection's task and
//! back, every response header parsed into a map. With a probe to every replica, multihead
//! spent three times random mode's user-space CPU per request (docs/benchmarks.md). A probe
//! needs only the status and whether the connection stays open: this writes a request head
//! built once per race and parses the answer with httparse (hyper's own parser), on the
//! request's task.

use crate::forward::VIA;
use crate::node::Node;
use crate::pool::{Upstream, UpstreamError, IDLE_TIMEOUT, MAX_KEPT};
use http::{HeaderValue, StatusCode};
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The largest response head a probe reads.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most header lines a probe's response may have (hyper's limit too).
const MAX_HEADERS: usize = 100;

/// Why a probe got no status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// The connection failed or closed before the first byte of an answer: on a kept
    /// connection, the node closed it while idle, and the probe can go out again.
    #[error("no answer: {0}")]
    NoAnswer(std::io::Error),
    /// The connection failed or closed in the middle of the answer.
    #[error("answer cut short: {0}")]
    CutShort(std::io::Error),
    /// Not an HTTP/1 response head.
    #[error("malformed response head: {0}")]
    Malformed(&'static str),
}

/// One node's idle probe connections.
#[derive(Debug, Default)]
pub(crate) struct ProbePool {
    /// Oldest first: the last one is the most recently used.
    idle: Mutex<VecDeque<Idle>>,
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
}

impl ProbePool {
    /// The most recently used idle connection that is still open. Drops those that are not.
    fn take(&self, now: Instant) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(kept) = idle.pop_back() {
            if now.duration_since(kept.since) > IDLE_TIMEOUT {
                // Those below it have been idle longer still.
                idle.clear();
                return None;
            }
            // A close (or bytes nobody asked for) that the runtime has seen makes the socket
            // readable; otherwise this returns at once, without a system call.
            if let Err(e) = kept.stream.try_read(&mut [0u8; 1]) {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Some(kept.stream);
                }
            }
        }
        None
    }

    /// Keeps a connection that just answered, and lets go of those idle past their time
    /// (the oldest are first), so the connections a burst opened do not stay.
    fn keep(&self, stream: TcpStream, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while idle
            .front()
            .is_some_and(|kept| now.duration_since(kept.since) > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_KEPT {
            idle.push_back(Idle { stream, since: now });
        }
    }

    /// Idle connections kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The probe request for `target` (origin form, a node's base path included) at a node
/// whose Host is `host`. None when `target` cannot go on a request line as it is: a space,
/// a control character or DEL would end the line or smuggle another.
pub(crate) fn probe_request(
    target: &str,
    host: &HeaderValue,
    forwarded_for: Option<&HeaderValue>,
) -> Option<Vec<u8>> {
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let mut head = Vec::with_capacity(target.len() + 96);
    head.extend_from_slice(b"HEAD ");
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(host.as_bytes());
    if let Some(value) = forwarded_for {
        head.extend_from_slice(b"\r\nx-forwarded-for: ");
        head.extend_from_slice(value.as_bytes());
    }
    head.extend_from_slice(b"\r\nvia: ");
    head.extend_from_slice(VIA.as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    Some(head)
}

impl Upstream {
    /// Sends a probe `request` (from [`probe_request`]) to `node` and reads the status of
    /// its answer. A kept connection the node has closed meanwhile costs nothing but a
    /// new connection: a HEAD is safe to send again.
    pub(crate) async fn probe(
        &self,
        node: &Node,
        request: &[u8],
    ) -> Result<StatusCode, UpstreamError> {
        loop {
            let (stream, reused) = match node.probes.take(Instant::now()) {
                Some(stream) => (stream, true),
                None => (self.connect_tcp(node).await?, false),
            };
            match exchange(stream, request).await {
                Ok((status, reusable)) => {
                    if let Some(stream) = reusable {
                        node.probes.keep(stream, Instant::now());
                    }
                    return Ok(status);
                }
                Err(ProbeError::NoAnswer(_)) if reused => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Writes `request` and reads the answer's head; returns its status, and the connection if
/// it can carry another probe.
async fn exchange(
    mut stream: TcpStream,
    request: &[u8],
) -> Result<(StatusCode, Option<TcpStream>), ProbeError> {
    stream
        .write_all(request)
        .await
        .map_err(ProbeError::NoAnswer)?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(ProbeError::Malformed("response head too large"));
            }
            buf.reserve(buf.len());
        }
        let read = stream.read_buf(&mut buf).await;
        let cut = |e: std::io::Error, buf: &[u8]| {
            if buf.is_empty() {
                ProbeError::NoAnswer(e)
            } else {
                ProbeError::CutShort(e)
            }
        };
        match read {
            Ok(0) => return Err(cut(std::io::ErrorKind::UnexpectedEof.into(), &buf)),
            Ok(_) => {}
            Err(e) => return Err(cut(e, &buf)),
        }
        // Interim answers (100 Continue, 103 Early Hints) come before the real one.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            let length = match response.parse(&buf) {
                Ok(httparse::Status::Complete(length)) => length,
                Ok(httparse::Status::Partial) => break,
                Err(_) => return Err(ProbeError::Malformed("not an HTTP/1 response")),
            };
            let status = response
                .code
                .and_then(|code| StatusCode::from_u16(code).ok())
                .ok_or(ProbeError::Malformed("bad status code"))?;
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(ProbeError::Malformed("101 to a HEAD"));
            }
            if status.is_informational() {
                buf.drain(..length);
                continue;
            }
            // An answer to a HEAD ends with its head: anything after it would be read as the
            // next probe's answer, so such a connection is not kept.
            let reusable =
                response.version == Some(1) && length == buf.len() && !asks_to_close(&response);
            return Ok((status, reusable.then_some(stream)));
        }
    }
}

/// Whether a response's Connection header says `close`.
fn asks_to_close(response: &httparse::Response<'_, '_>) -> bool {
    response
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_node::{FakeNode, Script};
    use std::time::Duration;

    fn upstream() -> Upstream {
        Upstream::new(Duration::from_secs(1), 64 * 1024)
    }

    async fn probe(fake: &FakeNode) -> Result<StatusCode, UpstreamError> {
        let request = probe_request("/x", &fake.node.host_header, None).unwrap();
        upstream().probe(&fake.node, &request).await
    }

    async fn node_answering(head: &'static [u8]) -> FakeNode {
        FakeNode::start(Script {
            head,
            ..Script::default()
        })
        .await
    }

    #[tokio::test]
    async fn a_probe_reads_the_status_and_keeps_the_connection() {
        let fake = node_answering(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\n").await;
        let xff = HeaderValue::from_static("10.0.0.1");
        let request = probe_request("/a/b.jpg?w=1", &fake.node.host_header, Some(&xff)).unwrap();
        for _ in 0..3 {
            let status = upstream().probe(&fake.node, &request).await.unwrap();
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        assert_eq!(fake.accepted(), 1);
        assert_eq!(fake.node.probes.len(), 1);
        let host = fake.node.addr.authority.clone();
        assert_eq!(
            String::from_utf8(fake.requests()[0].clone()).unwrap(),
            format!("HEAD /a/b.jpg?w=1 HTTP/1.1\r\nhost: {host}\r\nx-forwarded-for: 10.0.0.1\r\nvia: 1.1 photosrv\r\n\r\n")
        );
    }

    #[tokio::test]
    async fn interim_answers_are_skipped() {
        let fake = node_answering(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
        )
        .await;
        assert_eq!(probe(&fake).await.unwrap(), StatusCode::OK);
        assert_eq!(fake.node.probes.len(), 1);
    }

    /// `Connection: close`, HTTP/1.0 and bytes after the head (a body to a HEAD): the
    /// answer counts, the connection is not kept.
    #[tokio::test]
    async fn a_connection_is_kept_only_when_its_answer_allows() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n"[..],
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ] {
            let fake = node_answering(head).await;
            for _ in 0..2 {
                assert_eq!(probe(&fake).await.unwrap(), StatusCode::OK);
            }
            assert_eq!(fake.accepted(), 2, "{}", String::from_utf8_lossy(head));
            assert_eq!(fake.node.probes.len(), 0);
        }
    }

    #[tokio::test]
    async fn garbage_cut_short_and_oversized_answers_are_errors() {
        let huge = format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        for head in [
            &b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            Box::leak(huge.into_boxed_str()).as_bytes(),
        ] {
            let fake = node_answering(head).await;
            assert!(
                probe(&fake).await.is_err(),
                "{:.40}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(fake.node.probes.len(), 0);
        }
        // The node closes in the middle of the head: an error, not sent again.
        let fake = FakeNode::start(Script {
            answers: 1,
            head: b"HTTP/1.1 200 OK\r\nContent-",
            ..Script::default()
        })
        .await;
        assert!(probe(&fake).await.is_err());
        assert_eq!(fake.accepted(), 1);
    }

    /// The node closes every connection after one answer, as at its keep-alive limit.
    #[tokio::test]
    async fn connections_the_node_closed_are_not_errors() {
        let fake = FakeNode::start(Script {
            answers: 1,
            ..Script::default()
        })
        .await;
        for _ in 0..10 {
            assert_eq!(probe(&fake).await.unwrap(), StatusCode::OK);
        }
        assert_eq!(fake.accepted(), 10);
        assert!(fake.node.probes.len() <= 1);
    }

    /// A kept connection whose far end closed before the runtime saw it: the probe finds
    /// no answer there and goes out again on a new connection.
    #[tokio::test]
    async fn a_probe_on_a_connection_closed_unseen_goes_out_again() {
        let fake = node_answering(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = listener.accept().await.unwrap();
        drop(far);
        fake.node.probes.keep(near, Instant::now());
        assert_eq!(probe(&fake).await.unwrap(), StatusCode::OK);
        assert_eq!(fake.accepted(), 1);
        assert_eq!(fake.node.probes.len(), 1);
    }

    #[tokio::test]
    async fn idle_connections_expire() {
        let fake = node_answering(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let start = Instant::now();
        let upstream = upstream();
        let connect = || upstream.connect_tcp(&fake.node);
        // Two left over from a burst, then one in use since: keeping it lets the two go.
        fake.node.probes.keep(connect().await.unwrap(), start);
        fake.node.probes.keep(connect().await.unwrap(), start);
        let later = start + IDLE_TIMEOUT + Duration::from_secs(1);
        fake.node.probes.keep(connect().await.unwrap(), later);
        assert_eq!(fake.node.probes.len(), 1);
        // Taking one past its time gives nothing, and drops it.
        let much_later = later + IDLE_TIMEOUT + Duration::from_secs(1);
        assert!(fake.node.probes.take(much_later).is_none());
        assert_eq!(fake.node.probes.len(), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever a node sends before closing, a probe ends (no panic, no wait past the
        /// close) and finds a status only in a complete head (one with its empty line).
        #[test]
        fn any_answer_ends_the_probe(
            status_line in proptest::prop_oneof![
                proptest::strategy::Just(&b""[..]),
                proptest::strategy::Just(&b"HTTP/1.1 200 OK\r\n"[..]),
                proptest::strategy::Just(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]),
            ],
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let answer: &'static [u8] = Box::leak([status_line, &rest].concat().into_boxed_slice());
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let result = runtime.block_on(async {
                let fake = FakeNode::start(Script { answers: 1, head: answer, ..Script::default() }).await;
                tokio::time::timeout(Duration::from_secs(5), probe(&fake)).await
            });
            let result = result.expect("the probe outlived the node's close");
            if result.is_ok() {
                // An empty line ends a head; httparse, like most, also takes a bare LF.
                let ends_head = |w: &[u8]| w.ends_with(b"\n\n") || w == b"\n\r\n";
                proptest::prop_assert!(answer.windows(3).any(ends_head));
            }
        }
    }

    #[test]
    fn targets_that_would_break_the_request_line_are_refused() {
        let host = HeaderValue::from_static("node:80");
        for bad in ["", "/a b", "/a\r\nX-Smuggled: 1", "/a\tb", "/a\x7f"] {
            assert!(probe_request(bad, &host, None).is_none(), "{bad:?}");
        }
        assert!(probe_request("/a/%20b.jpg?x=1&y=%0d", &host, None).is_some());
    }
}
