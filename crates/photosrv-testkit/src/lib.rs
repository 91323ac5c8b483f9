//! Test servers as builders, on ephemeral loopback ports, stopped on drop:
//! [`NginxNode`] (a real nginx WebDAV node from `examples/nginx-storage.conf`),
//! [`FaultyNode`] (hangs, fails or is slow on purpose) and [`RouterHandle`] (an in-process
//! router over a config text), and [`ChildGuard`] for a test's own processes.
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

/// A process a test started, killed and reaped when dropped unless it has exited, so that a
/// failed assertion does not leave it running. It is still the test's child until then, so
/// its pid cannot have gone to another process.
pub struct ChildGuard(pub std::process::Child);

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
