//! Nodes that misbehave on purpose, for failover tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a [`FaultyNode`] misbehaves.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Accepts connections and never answers.
    Hang,
    /// Answers every request with 500.
    Fail500,
    /// Answers 200 with `body` after a delay.
    Slow(Duration, &'static [u8]),
    /// Serves the files under a directory (404 when absent), each after a delay: a slow
    /// but correct replica.
    SlowFiles(Duration, std::path::PathBuf),
}

/// A node on a loopback port that misbehaves; stopped on drop.
pub struct FaultyNode {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyNode {
    /// Starts the node on the current tokio runtime.
    pub async fn start(fault: Fault) -> std::io::Result<FaultyNode> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let fault = fault.clone();
                match fault {
                    // Read what comes, never answer, close when the peer does: holding every
                    // socket instead would run a long test out of descriptors.
                    Fault::Hang => {
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 4096];
                            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                        });
                    }
                    Fault::Fail500 | Fault::Slow(..) | Fault::SlowFiles(..) => {
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 16 * 1024];
                            let mut seen = Vec::new();
                            loop {
                                let n = match stream.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                };
                                seen.extend_from_slice(&buf[..n]);
                                while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n")
                                {
                                    let head = seen.drain(..end + 4).collect::<Vec<_>>();
                                    let is_head = head.starts_with(b"HEAD ");
                                    let response = match &fault {
                                        Fault::Fail500 => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nfail".to_vec(),
                                        Fault::Slow(delay, body) => {
                                            tokio::time::sleep(*delay).await;
                                            let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
                                            if !is_head {
                                                r.extend_from_slice(body);
                                            }
                                            r
                                        }
                                        Fault::SlowFiles(delay, root) => {
                                            tokio::time::sleep(*delay).await;
                                            let target = String::from_utf8_lossy(&head).split_whitespace().nth(1).unwrap_or("/").to_owned();
                                            let path = target.split('?').next().unwrap_or("/").trim_start_matches('/').to_owned();
                                            match (path.contains(".."), tokio::fs::read(root.join(&path)).await) {
                                                (false, Ok(body)) => {
                                                    let mut r = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
                                                    if !is_head {
                                                        r.extend_from_slice(&body);
                                                    }
                                                    r
                                                }
                                                _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
                                            }
                                        }
                                        Fault::Hang => unreachable!(),
                                    };
                                    if stream.write_all(&response).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        });
                    }
                }
            }
        });
        Ok(FaultyNode {
            addr,
            accepted,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultyNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}
