//! Multi-HEAD probes: a HEAD to a node, read up to its status, on connections of their own.
//!
//! Through hyper's client a probe cost as much user-space CPU as a whole proxied 4 KiB GET:
//! a request and a header map built, a trip through a channel to the connection's task and
//! back, every response header parsed into a map. With a probe to every replica, multihead
//! spent three times random mode's user-space CPU per request (docs/benchmarks-history.md). A
//! probe needs only the status and whether the connection stays open: this writes a request head
//! built once per race and reads the answer's head (`h1.rs`), on the request's task.

use crate::forward::{end_head, start_head};
use crate::h1::{self, ExchangeError};
use crate::node::Node;
use crate::pool::{Connection, Upstream, UpstreamError};
use http::{HeaderValue, Method, StatusCode};
use std::time::Instant;
use tokio::io::AsyncWriteExt as _;

/// The probe request for `target` (origin form, a node's base path included) at a node
/// whose Host is `host`; None when `target` cannot go on a request line (see
/// [`start_head`]).
pub(crate) fn probe_request(
    target: &str,
    host: &HeaderValue,
    forwarded_for: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let mut head = start_head(&Method::HEAD, target, host)?;
    end_head(&mut head, forwarded_for);
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
            let (connection, reused) = match node.probes.take(Instant::now()) {
                Some(connection) => (connection, true),
                None => (Connection::new(self.connect_tcp(node).await?), false),
            };
            match exchange(connection, request).await {
                Ok((status, reusable)) => {
                    if let Some(connection) = reusable {
                        node.probes.keep(connection, Instant::now());
                    }
                    return Ok(status);
                }
                Err(ExchangeError::NoAnswer(_)) if reused => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Writes `request` and reads the answer's head; returns its status, and the connection if
/// it can carry another request.
async fn exchange(
    mut connection: Connection,
    request: &[u8],
) -> Result<(StatusCode, Option<Connection>), ExchangeError> {
    let Connection { stream, buf } = &mut connection;
    stream
        .write_all(request)
        .await
        .map_err(ExchangeError::NoAnswer)?;
    buf.reserve(1024);
    let (status, reusable) = h1::read_head(stream, buf, |response, status, raw, length| {
        // An answer to a HEAD ends with its head: anything after it would be read as the
        // next request's answer, so such a connection is not kept.
        let reusable =
            response.version == Some(1) && length == raw.len() && !asks_to_close(response);
        Ok((status, reusable))
    })
    .await?;
    buf.clear();
    Ok((status, reusable.then_some(connection)))
}

/// Whether a response's Connection header says `close`.
fn asks_to_close(response: &httparse::Response<'_, '_>) -> bool {
    response
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h1::list_tokens(h.value))
        .any(|token| token.eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_node::{FakeNode, Script};
    use crate::h1::MAX_HEAD_BYTES;
    use std::time::Duration;

    fn upstream() -> Upstream {
        Upstream::new(
            Duration::from_secs(1),
            crate::h1::BodyRules {
                chunk: 64 * 1024,
                relay: crate::h1::Relay::Reader,
                idle: Duration::from_secs(5),
                client_idle: Duration::from_secs(5),
            },
        )
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
        let request =
            probe_request("/a/b.jpg?w=1", &fake.node.host_header, Some(b"10.0.0.1")).unwrap();
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
        // A new connection closed without a word: the node's failure, not sent again.
        let fake = FakeNode::start(Script {
            answers: 0,
            ..Script::default()
        })
        .await;
        let probed = tokio::time::timeout(Duration::from_secs(5), probe(&fake)).await;
        assert!(probed.expect("the probe was sent over and over").is_err());
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
        let near = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = listener.accept().await.unwrap();
        drop(far);
        fake.node.probes.keep(Connection::new(near), Instant::now());
        assert_eq!(probe(&fake).await.unwrap(), StatusCode::OK);
        assert_eq!(fake.accepted(), 1);
        assert_eq!(fake.node.probes.len(), 1);
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
