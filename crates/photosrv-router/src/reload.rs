//! Hot reload of the config and the roster.
//!
//! The parent directories of every file are watched (notify), so a symlink swap, an
//! editor's rename-on-save and an in-place edit are all seen; a poll is the fallback for
//! file systems where events do not arrive. A reload re-reads everything, builds a new
//! table off the request path and swaps it in; a bad file keeps the last good table.

use crate::metrics::ReloadLabels;
use crate::options::RouterOptions;
use crate::table::{RoutingTable, TableError};
use crate::Router;
use notify::Watcher as _;
use photosrv_config::{Config, ConfigError, Roster};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a config, roster or table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file is unreadable or invalid.
    #[error("{0}")]
    Config(ConfigError),
    /// The roster file is unreadable or invalid.
    #[error("{0}")]
    Roster(ConfigError),
    /// The config and roster do not make a usable table.
    #[error("{0}")]
    Table(#[from] TableError),
    /// The saved migration state is unusable.
    #[error("{0}")]
    Migration(String),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The files are as they were at the last attempt.
    Unchanged,
    /// A new table was published; the changes, one per line.
    Changed(Vec<String>),
}

pub(crate) struct Reloader {
    config_path: PathBuf,
    roster_path: Option<PathBuf>,
    dc: Option<String>,
    /// The files read at the last attempt (config, includes, roster).
    files: Vec<PathBuf>,
    fingerprint: u64,
}

impl Reloader {
    pub(crate) fn new(options: &RouterOptions) -> Reloader {
        Reloader {
            config_path: options.config_path.clone(),
            roster_path: options.roster_path.clone(),
            dc: options.dc.clone(),
            files: Vec::new(),
            fingerprint: 0,
        }
    }

    /// The directories to watch.
    fn directories(&self) -> HashSet<PathBuf> {
        self.files
            .iter()
            .chain(std::iter::once(&self.config_path))
            .chain(&self.roster_path)
            .map(|f| match f.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect()
    }

    /// A hash of the content of every file read last time, plus the main ones.
    fn current_fingerprint(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut files: Vec<&Path> = vec![&self.config_path];
        files.extend(self.roster_path.as_deref());
        files.extend(self.files.iter().map(PathBuf::as_path));
        // The main files are among those read, too: read each once.
        let mut seen = HashSet::new();
        files.retain(|file| seen.insert(*file));
        for file in files {
            file.hash(&mut hasher);
            match std::fs::read(file) {
                Ok(bytes) => bytes.hash(&mut hasher),
                Err(e) => e.kind().hash(&mut hasher),
            }
        }
        hasher.finish()
    }

    fn load(&mut self, previous: Option<&RoutingTable>) -> Result<RoutingTable, ReloadError> {
        self.fingerprint = self.current_fingerprint();
        let config = Config::load(&self.config_path).map_err(ReloadError::Config)?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let mut files: Vec<PathBuf> = config.sources.paths().map(Path::to_path_buf).collect();
        let roster = match &self.roster_path {
            Some(path) => {
                files.push(path.clone());
                let roster = Roster::load(path).map_err(ReloadError::Roster)?;
                if roster.is_empty() {
                    tracing::warn!(roster = %path.display(), "the roster lists no host: every node counts as live");
                }
                roster
            }
            None => Roster::all_live(),
        };
        self.files = files;
        let table = RoutingTable::build(&config, &roster, self.dc.as_deref(), previous)?;
        self.fingerprint = self.current_fingerprint();
        Ok(table)
    }

    pub(crate) fn load_initial(&mut self) -> Result<RoutingTable, ReloadError> {
        self.load(None)
    }
}

impl Router {
    /// Re-reads the config and roster if they changed since the last attempt (or always,
    /// with `force`), and publishes the new table. On error the current table stays.
    pub fn reload(&self, force: bool) -> Result<Reloaded, ReloadError> {
        let inner = &self.inner;
        let mut reloader = inner.reloader.lock().unwrap_or_else(|e| e.into_inner());
        if !force && reloader.current_fingerprint() == reloader.fingerprint {
            return Ok(Reloaded::Unchanged);
        }
        let current = inner.table.load_full();
        match reloader.load(Some(&current)) {
            Ok(table) => {
                let changes = table.diff(&current);
                if table.migration.is_none() && self.migration_state() != crate::MigrationState::Old
                {
                    tracing::warn!(
                        "the new config has no <migration> ring: serving from the primary ring"
                    );
                }
                inner.table.store(Arc::new(table));
                self.publish_table_gauges();
                inner
                    .metrics
                    .reloads
                    .get_or_create(&ReloadLabels { result: "ok" })
                    .inc();
                if changes.is_empty() {
                    tracing::info!("reloaded: no routing change");
                }
                for change in &changes {
                    tracing::info!("reloaded: {change}");
                }
                Ok(Reloaded::Changed(changes))
            }
            Err(error) => {
                inner
                    .metrics
                    .reloads
                    .get_or_create(&ReloadLabels { result: "error" })
                    .inc();
                tracing::error!("reload failed, keeping the last good state:\n{error}");
                Err(error)
            }
        }
    }

    /// Watches the config's and roster's directories and reloads on change, with a poll
    /// every `reload_poll` as a fallback. Runs until the returned handle is stopped or
    /// dropped.
    pub fn spawn_reloader(&self) -> ReloaderHandle {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|event| may_change_content(&event.kind)) {
                let _ = tx.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("file watching unavailable ({e}): polling only");
                None
            }
        };
        let router = self.clone();
        let poll = self.inner.options.reload_poll;
        let task = tokio::spawn(async move {
            let mut watched: HashSet<PathBuf> = HashSet::new();
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let directories = router
                    .inner
                    .reloader
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .directories();
                if let Some(w) = watcher.as_mut() {
                    for dir in directories.difference(&watched.clone()) {
                        match w.watch(dir, notify::RecursiveMode::NonRecursive) {
                            Ok(()) => {
                                watched.insert(dir.clone());
                            }
                            Err(e) => tracing::warn!(dir = %dir.display(), "cannot watch: {e}"),
                        }
                    }
                }
                tokio::select! {
                    biased;
                    // Stopped, or the handle dropped. Checked between reloads only: a
                    // reload under way finishes, so none happens after `stop` returns.
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                    Some(()) = rx.recv() => {
                        // Let a burst of events (an editor's save, a symlink swap) settle.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        while rx.try_recv().is_ok() {}
                    }
                }
                let router = router.clone();
                let _ = tokio::task::spawn_blocking(move || router.reload(false)).await;
            }
        });
        ReloaderHandle { stop, task }
    }
}

/// Whether a file event can mean new content. Opening or reading a file cannot, and the
/// reloader reads the files it watches: reacting to its own reads re-read the config about
/// 20 times a second, forever. A close after writing does count: it ends an in-place save.
fn may_change_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

/// Stops the reloader when stopped or dropped: no reload starts after that.
pub struct ReloaderHandle {
    /// Dropping it stops the reloader.
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ReloaderHandle {
    /// Stops the reloader and waits until a reload under way has finished and its file
    /// watches are gone, e.g. before removing the directory they watch (which would make
    /// removing them fail, with a log line).
    pub async fn stop(self) {
        let ReloaderHandle { stop, task } = self;
        drop(stop);
        let _ = task.await;
    }
}
