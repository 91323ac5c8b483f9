//! Shared helpers for the router's integration tests.
#![allow(dead_code)]

use photosrv_testkit::{nginx_or_skip, NginxNode};
use std::time::Duration;

/// A cluster of real nginx nodes, `shards` x `replicas`.
pub struct Cluster {
    /// nodes[shard][replica]
    pub nodes: Vec<Vec<NginxNode>>,
}

impl Cluster {
    /// Starts the nodes, or `None` when nginx is missing (outside CI).
    pub fn start(test: &str, shards: usize, replicas: usize) -> Option<Cluster> {
        let nginx = nginx_or_skip(test)?;
        let nodes = (0..shards)
            .map(|_| {
                (0..replicas)
                    .map(|_| NginxNode::start(&nginx).expect("nginx node"))
                    .collect()
            })
            .collect();
        Some(Cluster { nodes })
    }

    /// A config placing the nodes in `shard1..shardN` of `dc1`, with `extra` settings.
    pub fn config(&self, chooser: &str, extra: &str) -> String {
        let mut text = format!("<photosrv>\nchooser {chooser}\n{extra}\n<dc1>\n<shards>\n");
        for (i, shard) in self.nodes.iter().enumerate() {
            let urls: Vec<String> = shard.iter().map(NginxNode::url).collect();
            text.push_str(&format!("shard{} {}\n", i + 1, urls.join(" ")));
        }
        text.push_str("</shards>\n</dc1>\n</photosrv>\n");
        text
    }

    /// A roster listing every node but those in `except`.
    pub fn roster_without(&self, except: &[&NginxNode]) -> String {
        self.nodes
            .iter()
            .flatten()
            .filter(|n| !except.iter().any(|e| e.addr == n.addr))
            .map(|n| format!("node {}\n", n.authority()))
            .collect()
    }

    /// Stores `body` under `key` on every replica of shard index `shard`, with one
    /// modification time, so every replica gives the same ETag (writes that straddled a
    /// second did not, and a conditional GET sent to the other replica got 200, not 304).
    pub fn seed(&self, shard: usize, key: &str, body: &[u8]) {
        let modified = std::time::SystemTime::now();
        for node in &self.nodes[shard] {
            node.seed_modified(key, body, modified).expect("seed");
        }
    }
}

/// A cluster and a router over it with default settings, or `None` when nginx is missing.
pub async fn cluster_with_router(
    test: &str,
    shards: usize,
    replicas: usize,
) -> Option<(Cluster, photosrv_testkit::RouterHandle)> {
    let cluster = Cluster::start(test, shards, replicas)?;
    let router = photosrv_testkit::RouterBuilder::new(cluster.config("jump", ""))
        .start()
        .await
        .expect("router");
    Some((cluster, router))
}

/// The content of a test object: derived from its key, so a wrong body is detected.
pub fn body_for(key: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut state = key.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A client that talks to loopback directly, whatever the environment's proxies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// GETs `url` and returns its body as text (any status).
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// GETs `url` and parses its body as JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON body")
}

/// The value of an unlabelled counter or gauge on the router's `/metrics`.
pub async fn metric(admin_url: &str, name: &str) -> u64 {
    let text = get_text(&format!("{admin_url}/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("/metrics lacks {name}:\n{text}"))
}

/// Sends raw bytes and returns what came back until the peer closed or 1 s passed.
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `check` every 50 ms until it holds or `limit` passes; returns how long it took.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
