//! A small photosrv storage node: the files under one directory, over the WebDAV subset
//! storage nodes need (GET, HEAD, PUT, DELETE, OPTIONS, MKCOL).
//!
//! - PUT writes a temporary file in the target directory, fsyncs it and renames it into
//!   place: a reader never sees a partial object, and an upload cut off mid-body leaves
//!   nothing behind. Parent directories are created (like nginx's `create_full_put_path`).
//! - GET/HEAD send Content-Length, Last-Modified and an nginx-style ETag, honour one Range
//!   and If-None-Match / If-Modified-Since, and read large files in chunks.
//! - No request reaches outside the directory: `..`, encoded slashes, backslashes, NUL,
//!   dot segments and symlinks that lead out are refused.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! let storage = photosrv_storage::Storage::open("/srv/photosrv".as_ref())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! photosrv_storage::serve(listener, storage, std::future::pending()).await;
//! # Ok(()) }
//! ```

mod handlers;
mod paths;

pub use handlers::StorageBody;
pub use paths::{resolve, PathRefused};

use photosrv_http::ServeSettings;
use rustix::fs::{Mode, OFlags};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The largest PUT body a node takes unless told otherwise: 1 GiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 30;

/// A storage node over one directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The directory, canonical.
    root: PathBuf,
    /// The directory, open: reads resolve their path from it.
    root_fd: std::os::fd::OwnedFd,
    /// Whether `openat2` works here (false on old kernels and in some sandboxes).
    openat2: AtomicBool,
    /// The largest PUT body accepted.
    max_body_bytes: u64,
}

impl Storage {
    /// A node storing under `root`, which must exist, taking PUT bodies of up to
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub fn open(root: &Path) -> std::io::Result<Storage> {
        Storage::open_with_limit(root, DEFAULT_MAX_BODY_BYTES)
    }

    /// As [`Storage::open`], refusing a PUT body over `max_body_bytes` with 413 (nginx's
    /// `client_max_body_size`): at once when its Content-Length says so, else once that many
    /// bytes have come, leaving nothing behind.
    pub fn open_with_limit(root: &Path, max_body_bytes: u64) -> std::io::Result<Storage> {
        let root = std::fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let root_fd = rustix::fs::open(
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Storage {
            inner: Arc::new(Inner {
                root,
                root_fd,
                openat2: AtomicBool::new(true),
                max_body_bytes,
            }),
        })
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }
}

/// Serves `storage` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(listener: TcpListener, storage: Storage, shutdown: impl Future<Output = ()>) {
    let handler = move |request, _remote| {
        let storage = storage.clone();
        async move { storage.handle(request).await }
    };
    photosrv_http::serve(listener, ServeSettings::new("storage"), handler, shutdown).await;
}
