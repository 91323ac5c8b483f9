//! A scripted node on loopback for the connection tests of `pool.rs` and `probe.rs`.

use crate::node::Node;
use photosrv_config::NodeAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the node answers.
#[derive(Clone, Copy)]
pub(crate) struct Script {
    /// Requests answered per connection; then it closes the connection without a word.
    pub answers: usize,
    /// The response head (with any interim responses before it).
    pub head: &'static [u8],
    /// The body, sent `body_delay` after the head; none to a HEAD.
    pub body: &'static [u8],
    pub body_delay: Duration,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            answers: usize::MAX,
            head: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n",
            body: b"ok",
            body_delay: Duration::ZERO,
        }
    }
}

/// A node on `127.0.0.1:0` following `script`.
pub(crate) struct FakeNode {
    pub node: Node,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl FakeNode {
    pub(crate) async fn start(script: Script) -> FakeNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (counter, log) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..script.answers {
                        let mut seen = Vec::new();
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        let head_request = seen.starts_with(b"HEAD ");
                        log.lock().unwrap().push(seen);
                        if stream.write_all(script.head).await.is_err() {
                            return;
                        }
                        if head_request {
                            continue;
                        }
                        tokio::time::sleep(script.body_delay).await;
                        if stream.write_all(script.body).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let node_addr = NodeAddr::parse(&format!("http://{addr}")).unwrap();
        FakeNode {
            node: Node::new(node_addr, Instant::now()),
            accepted,
            requests,
        }
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The request heads received so far.
    pub(crate) fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }
}
