//! The photosrv client: reads and writes keys on the storage nodes directly, replicating
//! writes to every node of a key's shard. It places keys with the same config and placement
//! code as the router, so readers and writers agree on where a key lives by construction.
//!
//! A write is exact about what was stored: [`Client::put`] returns `Ok` only when the write
//! policy is met (every replica, by default), and the [`WriteReport`] names each node that
//! succeeded and each that failed, and why. An under-replicated write is never reported as
//! stored.
//!
//! ```no_run
//! # async fn example() -> Result<(), photosrv_client::Error> {
//! use photosrv_client::{Client, WritePolicy};
//! let client = Client::from_config_file("photosrv.cfg".as_ref(), None)?;
//! let report = client.put("images/hello.jpg", b"...".to_vec()).await?;
//! println!("stored on {:?}", report.succeeded);
//! let body = client.get_bytes("images/hello.jpg").await?;
//! assert_eq!(&body[..], b"...");
//!
//! // Accept one failed replica, as the Go tool did (and repair later).
//! let lenient = Client::builder(photosrv_config::Config::load("photosrv.cfg".as_ref()).unwrap())
//!     .write_policy(WritePolicy::MinOk(1))
//!     .build()?;
//! # let _ = lenient;
//! # Ok(()) }
//! ```

mod error;

pub use error::{Error, NodeFailure};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::Stream;
use photosrv_config::Config;
use photosrv_placement::path::encode_path;
use photosrv_placement::Chooser;
use rand::seq::SliceRandom;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How many replicas must take a write for it to count as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WritePolicy {
    /// Every node of the shard (the default).
    #[default]
    All,
    /// At least this many nodes.
    MinOk(usize),
}

/// The outcome of a replicated write or delete, node by node.
#[derive(Debug)]
pub struct WriteReport {
    /// The key.
    pub key: String,
    /// Its shard.
    pub shard: String,
    /// "stored" or "deleted".
    pub operation: &'static str,
    /// How many nodes had to succeed.
    pub needed: usize,
    /// The nodes that succeeded.
    pub succeeded: Vec<String>,
    /// The nodes that failed, with why.
    pub failed: Vec<NodeFailure>,
}

impl WriteReport {
    /// Whether enough nodes succeeded.
    pub fn is_met(&self) -> bool {
        self.succeeded.len() >= self.needed
    }
}

impl fmt::Display for WriteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.succeeded.len() + self.failed.len();
        write!(
            f,
            "{}: {} on {} of {} replicas of {} (needs {})",
            self.key,
            self.operation,
            self.succeeded.len(),
            total,
            self.shard,
            self.needed
        )?;
        for failure in &self.failed {
            write!(f, "; {failure}")?;
        }
        Ok(())
    }
}

/// What HEAD said about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The node that answered.
    pub node: String,
    /// Content-Length.
    pub len: Option<u64>,
    /// ETag, as the node sent it.
    pub etag: Option<String>,
}

/// The nodes of one shard.
#[derive(Debug, Clone)]
pub struct ShardNodes {
    /// `shard<N>`.
    pub name: String,
    /// The nodes' base URLs.
    pub nodes: Vec<String>,
}

#[derive(Debug)]
struct Ring {
    chooser: Chooser,
    shards: Vec<ShardNodes>,
}

impl Ring {
    fn new(dc: &photosrv_config::Datacenter, kind: photosrv_config::ChooserKind) -> Ring {
        let names: Vec<&str> = dc.shards.iter().map(|s| s.name.as_str()).collect();
        Ring {
            chooser: Chooser::new(kind, &names),
            shards: dc
                .shards
                .iter()
                .map(|s| ShardNodes {
                    name: s.name.clone(),
                    nodes: s
                        .nodes
                        .iter()
                        .map(|n| n.url.trim_end_matches('/').to_owned())
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A photosrv client. Cheap to clone: clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    ring: Ring,
    policy: WritePolicy,
    hedge: Option<Duration>,
}

/// Builds a [`Client`]; see [`Client::builder`].
#[must_use]
#[derive(Debug)]
pub struct ClientBuilder {
    config: Config,
    dc: Option<String>,
    migration: bool,
    policy: WritePolicy,
    hedge: Option<Duration>,
    timeout: Duration,
    connect_timeout: Duration,
    pool_per_node: usize,
}

impl ClientBuilder {
    /// The datacenter (default: the config's `dc`, or its only one).
    pub fn dc(mut self, dc: Option<&str>) -> Self {
        self.dc = dc.map(str::to_owned);
        self
    }

    /// Place keys on the migration ring instead of the primary one.
    pub fn migration_ring(mut self, yes: bool) -> Self {
        self.migration = yes;
        self
    }

    /// How many replicas a write needs (default: all).
    pub fn write_policy(mut self, policy: WritePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Ask a second replica when the first has not answered a GET within `delay`.
    pub fn hedge(mut self, delay: Option<Duration>) -> Self {
        self.hedge = delay;
        self
    }

    /// Whole-request timeout (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect timeout (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Idle connections kept per node (default 64).
    pub fn pool_per_node(mut self, connections: usize) -> Self {
        self.pool_per_node = connections;
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client, Error> {
        let selection = self
            .config
            .select(self.dc.as_deref())
            .map_err(Error::Config)?;
        let ring = if self.migration {
            match (&self.config.migration, selection.migration) {
                (Some(ring), Some(dc)) => Ring::new(dc, ring.chooser),
                _ => {
                    return Err(Error::Config(
                        "the config has no <migration> ring".to_owned(),
                    ))
                }
            }
        } else {
            Ring::new(selection.primary, self.config.primary.chooser)
        };
        if let WritePolicy::MinOk(0) = self.policy {
            return Err(Error::Config(
                "a write policy needs at least one replica".to_owned(),
            ));
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .pool_max_idle_per_host(self.pool_per_node)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                ring,
                policy: self.policy,
                hedge: self.hedge,
            }),
        })
    }
}

fn transport(url: &str, source: reqwest::Error) -> Error {
    Error::Transport {
        url: url.to_owned(),
        source,
    }
}

impl Client {
    /// A builder over a loaded config.
    pub fn builder(config: Config) -> ClientBuilder {
        ClientBuilder {
            config,
            dc: None,
            migration: false,
            policy: WritePolicy::All,
            hedge: None,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(2),
            pool_per_node: 64,
        }
    }

    /// A client for the config file at `path` and datacenter `dc`, with defaults.
    pub fn from_config_file(path: &Path, dc: Option<&str>) -> Result<Client, Error> {
        let config = Config::load(path).map_err(|e| Error::Config(e.to_string()))?;
        Client::builder(config).dc(dc).build()
    }

    /// Every shard of the ring, in index order.
    pub fn shards(&self) -> &[ShardNodes] {
        &self.inner.ring.shards
    }

    /// The shard of `key` and its nodes.
    pub fn replicas(&self, key: &str) -> &ShardNodes {
        let ring = &self.inner.ring;
        &ring.shards[ring.chooser.choose(key.as_bytes())]
    }

    /// The URL of `key` on `node`.
    pub fn url(node: &str, key: &str) -> String {
        let mut url = String::with_capacity(node.len() + key.len() + 8);
        url.push_str(node);
        url.push('/');
        encode_path(key.trim_start_matches('/').as_bytes(), &mut url);
        url
    }

    fn needed(&self, replicas: usize) -> usize {
        match self.inner.policy {
            WritePolicy::All => replicas,
            WritePolicy::MinOk(n) => n,
        }
    }

    /// PUTs `body` to `key` on one node.
    async fn put_one(
        &self,
        node: &str,
        key: &str,
        body: reqwest::Body,
        len: Option<u64>,
    ) -> Result<(), Error> {
        let url = Client::url(node, key);
        let mut request = self.inner.http.put(&url).body(body);
        if let Some(len) = len {
            request = request.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let response = request.send().await.map_err(|e| transport(&url, e))?;
        match response.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            status => Err(Error::Status { url, status }),
        }
    }

    fn report(
        &self,
        key: &str,
        operation: &'static str,
        needed: usize,
        results: Vec<(String, Result<(), Error>)>,
    ) -> Result<WriteReport, Error> {
        let mut report = WriteReport {
            key: key.to_owned(),
            shard: self.replicas(key).name.clone(),
            operation,
            needed,
            succeeded: Vec::new(),
            failed: Vec::new(),
        };
        for (node, result) in results {
            match result {
                Ok(()) => report.succeeded.push(node),
                Err(error) => report.failed.push(NodeFailure { node, error }),
            }
        }
        if report.is_met() {
            Ok(report)
        } else {
            Err(Error::UnderReplicated(Box::new(report)))
        }
    }

    /// Stores `body` under `key` on every node of its shard, in parallel.
    pub async fn put(&self, key: &str, body: impl Into<Bytes>) -> Result<WriteReport, Error> {
        let body: Bytes = body.into();
        let nodes = &self.replicas(key).nodes;
        let writes = nodes.iter().map(|node| {
            let body = body.clone();
            async move {
                (
                    node.clone(),
                    self.put_one(node, key, body.clone().into(), Some(body.len() as u64))
                        .await,
                )
            }
        });
        let results = futures_util::future::join_all(writes).await;
        self.report(key, "stored", self.needed(nodes.len()), results)
    }

    /// Stores the file at `path` under `key` on every node of its shard, streaming it from
    /// disk to each node (never read whole).
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<WriteReport, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let len = tokio::fs::metadata(path).await.map_err(io)?.len();
        let nodes = &self.replicas(key).nodes;
        let writes = nodes.iter().map(|node| async move {
            let result = match tokio::fs::File::open(path).await {
                Ok(file) => {
                    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
                    self.put_one(node, key, reqwest::Body::wrap_stream(stream), Some(len))
                        .await
                }
                Err(source) => Err(Error::Io {
                    path: path.display().to_string(),
                    source,
                }),
            };
            (node.clone(), result)
        });
        let results = futures_util::future::join_all(writes).await;
        self.report(key, "stored", self.needed(nodes.len()), results)
    }

    /// Stores a stream under `key` on every node of its shard. Each chunk goes to every
    /// replica; the slowest replica paces the stream (a few chunks are buffered per node).
    pub async fn put_stream<S>(
        &self,
        key: &str,
        len: Option<u64>,
        stream: S,
    ) -> Result<WriteReport, Error>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let nodes = &self.replicas(key).nodes;
        let mut senders = Vec::with_capacity(nodes.len());
        let mut bodies = Vec::with_capacity(nodes.len());
        for _ in nodes {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
            senders.push(tx);
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            bodies.push(reqwest::Body::wrap_stream(body));
        }
        let pump = async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                for tx in &senders {
                    let copy = match &item {
                        Ok(bytes) => Ok(bytes.clone()),
                        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                    };
                    // A replica whose request already failed has dropped its receiver.
                    let _ = tx.send(copy).await;
                }
                if failed {
                    break;
                }
            }
        };
        let writes = nodes.iter().zip(bodies).map(|(node, body)| async move {
            (node.clone(), self.put_one(node, key, body, len).await)
        });
        let (results, ()) =
            futures_util::future::join(futures_util::future::join_all(writes), pump).await;
        self.report(key, "stored", self.needed(nodes.len()), results)
    }

    /// Stores `body` under `key` on `node` only (which need not be one of its replicas).
    pub async fn put_to(&self, node: &str, key: &str, body: Bytes) -> Result<(), Error> {
        let len = body.len() as u64;
        self.put_one(node.trim_end_matches('/'), key, body.into(), Some(len))
            .await
    }

    /// Deletes `key` from every node of its shard. Ok when it is gone from all of them; a
    /// node that did not have it counts as gone.
    pub async fn delete(&self, key: &str) -> Result<WriteReport, Error> {
        let nodes = &self.replicas(key).nodes;
        let deletes = nodes.iter().map(|node| async move {
            let url = Client::url(node, key);
            let result = match self.inner.http.delete(&url).send().await {
                Ok(r) if matches!(r.status().as_u16(), 200 | 202 | 204 | 404) => Ok(()),
                Ok(r) => Err(Error::Status {
                    url,
                    status: r.status().as_u16(),
                }),
                Err(e) => Err(transport(&url, e)),
            };
            (node.clone(), result)
        });
        let results = futures_util::future::join_all(deletes).await;
        self.report(key, "deleted", nodes.len(), results)
    }

    /// GETs `key` from its replicas: a random one first, the next on failure or 404; with a
    /// hedge delay, a second replica is asked when the first is slow. The body streams.
    pub async fn get(&self, key: &str) -> Result<reqwest::Response, Error> {
        let mut nodes = self.replicas(key).nodes.clone();
        nodes.shuffle(&mut rand::thread_rng());
        let total = nodes.len();
        let mut pending = FuturesUnordered::new();
        let mut next = 0;
        let mut errors = Vec::new();
        let launch = |node: String| {
            let url = Client::url(&node, key);
            let request = self.inner.http.get(&url).send();
            async move { (url, request.await) }
        };
        pending.push(launch(nodes[0].clone()));
        next += 1;
        loop {
            let hedge = async {
                match self.inner.hedge {
                    Some(delay) if next < total => tokio::time::sleep(delay).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((url, result)) = pending.next() => {
                    match result {
                        Ok(r) if r.status().is_success() => return Ok(r),
                        Ok(r) if r.status() == 404 => {}
                        Ok(r) => errors.push(Error::Status { url, status: r.status().as_u16() }),
                        Err(e) => errors.push(transport(&url, e)),
                    }
                    if next < total {
                        pending.push(launch(nodes[next].clone()));
                        next += 1;
                    } else if pending.is_empty() {
                        break;
                    }
                }
                () = hedge => {
                    pending.push(launch(nodes[next].clone()));
                    next += 1;
                }
            }
        }
        // Every replica answered: 404s alone mean the key is on none of them.
        if errors.is_empty() {
            Err(Error::NotFound {
                key: key.to_owned(),
            })
        } else {
            Err(Error::AllFailed {
                key: key.to_owned(),
                errors,
            })
        }
    }

    /// GETs `key` and collects its body.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes, Error> {
        let response = self.get(key).await?;
        let url = response.url().to_string();
        response.bytes().await.map_err(|e| transport(&url, e))
    }

    /// HEADs `key` on one node: `Ok(None)` for 404.
    pub async fn head_on(&self, node: &str, key: &str) -> Result<Option<ObjectInfo>, Error> {
        let url = Client::url(node, key);
        let response = self
            .inner
            .http
            .head(&url)
            .send()
            .await
            .map_err(|e| transport(&url, e))?;
        match response.status().as_u16() {
            200..=299 => Ok(Some(ObjectInfo {
                node: node.to_owned(),
                len: response
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
                etag: response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            })),
            404 => Ok(None),
            status => Err(Error::Status { url, status }),
        }
    }

    /// HEADs `key` on every replica at once: one answer per node, in config order.
    pub async fn head_replicas(
        &self,
        key: &str,
    ) -> Vec<(String, Result<Option<ObjectInfo>, Error>)> {
        let nodes = &self.replicas(key).nodes;
        futures_util::future::join_all(
            nodes
                .iter()
                .map(|node| async move { (node.clone(), self.head_on(node, key).await) }),
        )
        .await
    }

    /// HEADs `key` on its replicas in turn until one has it.
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, Error> {
        let mut errors = Vec::new();
        let mut nodes = self.replicas(key).nodes.clone();
        nodes.shuffle(&mut rand::thread_rng());
        for node in &nodes {
            match self.head_on(node, key).await {
                Ok(Some(info)) => return Ok(info),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Err(Error::NotFound {
                key: key.to_owned(),
            })
        } else {
            Err(Error::AllFailed {
                key: key.to_owned(),
                errors,
            })
        }
    }

    /// Whether any replica has `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, Error> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Copies `key` from node `from` to node `to`, streaming.
    pub async fn copy(&self, key: &str, from: &str, to: &str) -> Result<(), Error> {
        let url = Client::url(from, key);
        let response = self
            .inner
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| transport(&url, e))?;
        if !response.status().is_success() {
            return Err(Error::Status {
                url,
                status: response.status().as_u16(),
            });
        }
        let len = response.content_length();
        let body = reqwest::Body::wrap_stream(response.bytes_stream());
        self.put_one(to, key, body, len).await
    }
}
