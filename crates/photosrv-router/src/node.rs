//! A storage node as the router sees it: where to send requests, and passive health.

use crate::metrics::{Metrics, NodeMetrics};
use crate::pool::IdleConnections;
use http::uri::{Authority, Scheme};
use http::HeaderValue;
use photosrv_config::NodeAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a node that failed to connect or timed out is tried last.
const EJECTION: Duration = Duration::from_secs(2);

/// One storage node. Kept across reloads (by URL) so its health survives them.
#[derive(Debug)]
pub struct Node {
    /// The address from the config.
    pub addr: NodeAddr,
    /// `http` or `https`, parsed once.
    pub scheme: Scheme,
    /// `host:port`, parsed once.
    pub authority: Authority,
    /// The `Host` header to send.
    pub host_header: HeaderValue,
    metrics: OnceLock<NodeMetrics>,
    /// Its idle keep-alive connections for GETs and HEADs, each with its read buffer; kept
    /// across reloads with the node.
    pub(crate) pool: IdleConnections,
    /// And for multi-HEAD probes, apart: their buffers stay small. Shared with GETs, the
    /// probes' connections grew GET-sized buffers too, and multihead kept about twice as
    /// many connections holding one as random mode (docs/benchmarks.md, "Where the
    /// router's memory goes").
    pub(crate) probes: IdleConnections,
    /// Until when (ms since `epoch`) the node is ejected; 0 when healthy.
    ejected_until_ms: AtomicU64,
    epoch: Instant,
}

impl Node {
    /// A node for `addr`. `epoch` is the process-wide clock origin for ejections.
    pub fn new(addr: NodeAddr, epoch: Instant) -> Node {
        let scheme = if addr.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        // The config crate validated host and port, so these parse; fall back harmlessly.
        let authority = Authority::try_from(addr.authority.as_str())
            .unwrap_or_else(|_| Authority::from_static("invalid.invalid"));
        let host_header = HeaderValue::from_str(&addr.authority)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid.invalid"));
        Node {
            addr,
            scheme,
            authority,
            host_header,
            metrics: OnceLock::new(),
            pool: IdleConnections::default(),
            probes: IdleConnections::default(),
            ejected_until_ms: AtomicU64::new(0),
            epoch,
        }
    }

    /// The node's metric handles (created on first use).
    pub fn metrics(&self, metrics: &Metrics) -> &NodeMetrics {
        self.metrics.get_or_init(|| metrics.node(&self.addr.url))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether the node recently failed and should be tried after the healthy ones.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && until > self.now_ms()
    }

    /// Whether a request may go to the node first: it has not failed since its last good
    /// answer, or its ejection has run out and this caller gets the one trial request that
    /// decides whether it is back. Until that trial ends (or `lease` passes) the node
    /// counts as ejected for everyone else. Without this, every request that picked a node
    /// whose ejection had run out waited on it: with a node that never answers, half of a
    /// two-replica shard's requests for a whole upstream timeout.
    pub fn take_first(&self, lease: Duration) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        until <= now
            && self
                .ejected_until_ms
                .compare_exchange(
                    until,
                    now + lease.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A node whose clock has run for a minute, so that ejections can be set to have ended.
    fn node() -> Node {
        let epoch = Instant::now().checked_sub(Duration::from_secs(60)).unwrap();
        Node::new(NodeAddr::parse("http://127.0.0.1:9").unwrap(), epoch)
    }

    #[test]
    fn a_healthy_node_goes_first_for_everyone() {
        let node = node();
        assert!(!node.is_ejected());
        assert!(node.take_first(Duration::from_secs(1)));
        assert!(node.take_first(Duration::from_secs(1)));
    }

    #[test]
    fn an_ejected_node_goes_last_until_its_time_is_up() {
        let node = node();
        let before = node.epoch.elapsed().as_millis() as u64;
        node.eject();
        let after = node.epoch.elapsed().as_millis() as u64;
        let until = node.ejected_until_ms.load(Ordering::Relaxed);
        assert!((before + 2_000..=after + 2_000).contains(&until), "for 2 s");
        assert!(node.is_ejected());
        assert!(!node.take_first(Duration::from_secs(1)));
        // A good answer from it (to a request that had no other node) ends the ejection.
        node.restore();
        assert!(!node.is_ejected());
        assert!(node.take_first(Duration::from_secs(1)));
    }

    /// Once its ejection has run out, one caller gets the trial request; everyone else
    /// finds the node ejected for the lease, then the next caller gets a trial of its own.
    #[test]
    fn an_ejection_that_ran_out_gives_one_trial_at_a_time() {
        let node = node();
        // Its time is up: a second ago, or this very millisecond.
        let a_second_ago = node.epoch.elapsed().as_millis() as u64 - 1000;
        for until in [a_second_ago, node.now_ms()] {
            node.ejected_until_ms.store(until, Ordering::Relaxed);
            assert!(!node.is_ejected(), "its time is up");
        }
        let before = node.epoch.elapsed().as_millis() as u64;
        assert!(node.take_first(Duration::from_secs(60)));
        let after = node.epoch.elapsed().as_millis() as u64;
        let until = node.ejected_until_ms.load(Ordering::Relaxed);
        assert!(
            (before + 60_000..=after + 60_000).contains(&until),
            "a lease of 60 s"
        );
        assert!(node.is_ejected(), "under trial");
        assert!(!node.take_first(Duration::from_secs(60)));
        node.ejected_until_ms.store(a_second_ago, Ordering::Relaxed);
        assert!(node.take_first(Duration::ZERO), "the lease ran out");
    }
}
