//! Test servers as builders, on ephemeral loopback ports, stopped on drop:
//! [`NginxNode`] (a real nginx WebDAV node from `examples/nginx-storage.conf`),
//! [`FaultyNode`] (hangs, fails or is slow on purpose) and [`RouterHandle`] (an in-process
//! router over a config text).
//!
//! Tests that need nginx call [`nginx_or_skip`]: on a machine without nginx they print
//! "skipped: nginx not found" rather than pass silently, and CI (`CI` set) fails instead.

mod faulty;
mod nginx;
mod router;

pub use faulty::{Fault, FaultyNode};
pub use nginx::{nginx_binary, nginx_or_skip, NginxNode};
pub use router::{RouterBuilder, RouterHandle};

/// The repository root (for examples and test data).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A loopback port that was free a moment ago (for servers that cannot report the port
/// they bound, such as nginx).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
