//! Real nginx WebDAV storage nodes.

use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nginx binary, if this machine has one.
pub fn nginx_binary() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nginx"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
}

/// The nginx binary, or `None` after printing "skipped: nginx not found". Under CI (the
/// `CI` variable set) a missing nginx is a failure: `.ci/run` installs it.
pub fn nginx_or_skip(test: &str) -> Option<PathBuf> {
    match nginx_binary() {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => {
            panic!("{test}: nginx not found, and CI requires it (.ci/run installs nginx-light)")
        }
        None => {
            eprintln!("{test}: skipped: nginx not found");
            None
        }
    }
}

/// One nginx storage node, serving `root` on a loopback port, killed on drop.
pub struct NginxNode {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The directory it stores files in.
    pub root: PathBuf,
    dir: tempfile::TempDir,
    binary: PathBuf,
    child: Option<Child>,
}

/// The example config with this node's ports and paths put in.
fn render_config(example: &str, port: u16, dir: &Path, root: &Path) -> String {
    let mut out = String::new();
    for line in example.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let replaced = if t.starts_with("worker_processes ") {
            "worker_processes 1;".to_owned()
        } else if t.starts_with("pid ") {
            format!("pid {}/nginx.pid;", dir.display())
        } else if t.starts_with("error_log ") {
            format!("error_log {}/error.log warn;", dir.display())
        } else if t.starts_with("access_log ") {
            format!("access_log {}/access.log;", dir.display())
        } else if t.starts_with("listen ") {
            format!("listen 127.0.0.1:{port};")
        } else if t.starts_with("root ") {
            format!("root {};", root.display())
        } else if t.starts_with("client_body_temp_path ") {
            format!("client_body_temp_path {}/.tmp 1 2;", root.display())
        } else if t.starts_with("worker_connections ") {
            "worker_connections 1024;".to_owned()
        } else {
            t.to_owned()
        };
        out.push_str(indent);
        out.push_str(&replaced);
        out.push('\n');
    }
    // Keep nginx's other temp files out of the system directories too.
    out.replace(
        "http {\n",
        &format!(
            "http {{\n    proxy_temp_path {0}/proxy_temp;\n    fastcgi_temp_path {0}/fastcgi_temp;\n    uwsgi_temp_path {0}/uwsgi_temp;\n    scgi_temp_path {0}/scgi_temp;\n",
            dir.display()
        ),
    )
}

impl NginxNode {
    /// Starts a node with an empty root.
    pub fn start(binary: &Path) -> io::Result<NginxNode> {
        let dir = tempfile::Builder::new()
            .prefix("photosrv-nginx")
            .tempdir()?;
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join(".tmp"))?;
        let mut node = NginxNode {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            root,
            dir,
            binary: binary.to_path_buf(),
            child: None,
        };
        let mut last_error = None;
        for _ in 0..5 {
            node.addr.set_port(crate::free_port()?);
            match node.spawn() {
                Ok(()) => return Ok(node),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("nginx did not start")))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let example =
            std::fs::read_to_string(crate::repo_root().join("examples/nginx-storage.conf"))?;
        let conf = self.dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            render_config(&example, self.addr.port(), self.dir.path(), &self.root),
        )?;
        let mut child = Command::new(&self.binary)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-e")
            .arg(self.dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .arg("-g")
            // One process: killing it by pid stops the node (workers can outlive a killed
            // master), and it runs as the test's user.
            .arg("daemon off; master_process off;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid_file = self.dir.path().join("nginx.pid");
        loop {
            // Something listens on the port, and it is this nginx: it writes its pid file only
            // once it has bound its port. The port was free a moment ago, but another test's
            // listener may have been given it since; nginx then retries its bind for a while
            // and exits, and a start that trusted the connect alone would hand the caller
            // someone else's server.
            let ours = std::fs::read_to_string(&pid_file)
                .is_ok_and(|pid| pid.trim() == child.id().to_string());
            if ours && TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                let log =
                    std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "nginx exited with {status}: {log}"
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other("nginx did not listen within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, as a roster lists it.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Stores `body` under `key` directly on disk (seeding, bypassing HTTP).
    pub fn seed(&self, key: &str, body: &[u8]) -> io::Result<()> {
        self.seed_modified(key, body, std::time::SystemTime::now())
    }

    /// As [`seed`](Self::seed), with the file's modification time set to `modified`. nginx's
    /// ETag is the modification second and the size, so replicas seeded with one time give
    /// one ETag, as a conditional request to either replica needs.
    pub fn seed_modified(
        &self,
        key: &str,
        body: &[u8],
        modified: std::time::SystemTime,
    ) -> io::Result<()> {
        let path = self.root.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::File::create(&path)?;
        file.write_all(body)?;
        file.set_modified(modified)
    }

    /// The node's access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Stops the node (kills the process this handle started, by pid).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the node gracefully (SIGQUIT: in-flight requests finish), by pid.
    pub fn stop_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            let quit = Command::new("kill")
                .arg("-QUIT")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while quit.as_ref().is_ok_and(|s| s.success()) && Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node again on the same port with the same files.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for NginxNode {
    fn drop(&mut self) {
        self.stop();
    }
}
