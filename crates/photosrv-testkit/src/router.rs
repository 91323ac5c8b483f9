//! In-process routers over a config text, on loopback ports.

use photosrv_config::{Config, ReplicaMode, Settings};
use photosrv_router::{Router, RouterOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Builds a router over a config text; see [`RouterBuilder::start`].
#[must_use]
pub struct RouterBuilder {
    config: String,
    roster: Option<String>,
    settings: Settings,
}

/// A running router; stopped (gracefully) on [`RouterHandle::stop`] or on drop.
pub struct RouterHandle {
    /// The client-facing address.
    pub addr: SocketAddr,
    /// The admin address.
    pub admin_addr: SocketAddr,
    /// The router, to reload or inspect.
    pub router: Router,
    /// The directory holding `photosrv.cfg` and `roster`.
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _reloader: Option<photosrv_router::ReloaderHandle>,
}

impl RouterBuilder {
    /// A router over `config` (the text of a photosrv.cfg).
    pub fn new(config: impl Into<String>) -> RouterBuilder {
        RouterBuilder {
            config: config.into(),
            roster: None,
            settings: Settings::default(),
        }
    }

    /// Writes `text` as the roster file and uses it.
    pub fn roster(mut self, text: impl Into<String>) -> Self {
        self.roster = Some(text.into());
        self
    }

    /// Replica choice.
    pub fn mode(mut self, mode: ReplicaMode) -> Self {
        self.settings.mode = Some(mode);
        self
    }

    /// Overrides any setting.
    pub fn settings(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }

    /// Starts the router and its admin listener on `127.0.0.1:0`, with the file watcher
    /// (polling every 200 ms as the fallback).
    pub async fn start(self) -> Result<RouterHandle, Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::Builder::new()
            .prefix("photosrv-router")
            .tempdir()?;
        let config_path = dir.path().join("photosrv.cfg");
        std::fs::write(&config_path, &self.config)?;
        let mut settings = self.settings;
        if let Some(roster) = &self.roster {
            let path: PathBuf = dir.path().join("roster");
            std::fs::write(&path, roster)?;
            settings.roster = Some(path);
        }
        settings.reload_poll_ms.get_or_insert(200);
        settings.grace_period_ms.get_or_insert(5_000);
        settings.upstream_timeout_ms.get_or_insert(2_000);
        let config = Config::load(&config_path)?;
        let options = RouterOptions::resolve(&config, settings);
        let router = Router::new(options)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (addr, admin_addr) = (listener.local_addr()?, admin.local_addr()?);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let tasks = vec![
            tokio::spawn(photosrv_router::serve(
                listener,
                router.clone(),
                wait(rx.clone()),
            )),
            tokio::spawn(photosrv_router::serve_admin(
                admin,
                router.clone(),
                wait(rx),
            )),
        ];
        let reloader = Some(router.spawn_reloader());
        Ok(RouterHandle {
            addr,
            admin_addr,
            router,
            dir,
            stop: Some(tx),
            tasks,
            _reloader: reloader,
        })
    }
}

impl RouterHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:ADMINPORT`.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// The roster file path.
    pub fn roster_path(&self) -> PathBuf {
        self.dir.path().join("roster")
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("photosrv.cfg")
    }

    /// Stops accepting, drains in-flight requests, and waits for both listeners to end
    /// (at most `limit`).
    pub async fn stop(mut self, limit: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        for task in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(limit, task).await;
        }
    }
}

impl Drop for RouterHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}
