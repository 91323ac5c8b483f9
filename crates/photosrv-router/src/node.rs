//! A storage node as the router sees it: where to send requests, and passive health.

use http::HeaderValue;
use photosrv_config::NodeAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a node that failed to connect or timed out is tried last.
const EJECTION: Duration = Duration::from_secs(2);

/// One storage node. Kept across reloads (by URL) so its health survives them.
#[derive(Debug)]
pub struct Node {
    /// The address from the config.
    pub addr: NodeAddr,
    /// `http://host:port` + the URL's base path: a request URI is this + the key path.
    pub base: String,
    /// The `Host` header to send.
    pub host_header: HeaderValue,
    /// Until when (ms since `epoch`) the node is ejected; 0 when healthy.
    ejected_until_ms: AtomicU64,
    epoch: Instant,
}

impl Node {
    /// A node for `addr`. `epoch` is the process-wide clock origin for ejections.
    pub fn new(addr: NodeAddr, epoch: Instant) -> Node {
        let base = format!(
            "{}://{}{}",
            if addr.tls { "https" } else { "http" },
            addr.authority,
            addr.base_path
        );
        let host_header = HeaderValue::from_str(&addr.authority)
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Node {
            addr,
            base,
            host_header,
            ejected_until_ms: AtomicU64::new(0),
            epoch,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether the node recently failed and should be tried after the healthy ones.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && until > self.now_ms()
    }

    /// Records a connect failure or a timeout.
    pub fn eject(&self) {
        let until = self.now_ms() + EJECTION.as_millis() as u64;
        self.ejected_until_ms.store(until, Ordering::Relaxed);
    }

    /// Records a good answer.
    pub fn restore(&self) {
        if self.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            self.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }
}
