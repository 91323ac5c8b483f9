//! The storage node over HTTP: atomic writes, conditional and range reads, refusal of
//! anything that leaves the root, and Debian's litmus WebDAV suites.

use photosrv_storage::Storage;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Node {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Node {
    async fn start() -> Node {
        Node::start_with_limit(photosrv_storage::DEFAULT_MAX_BODY_BYTES).await
    }

    /// A node that takes PUT bodies of up to `max_body_bytes`.
    async fn start_with_limit(max_body_bytes: u64) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open_with_limit(dir.path(), max_body_bytes).unwrap();
        let (addr, stop) = serve(storage).await;
        Node {
            addr,
            dir,
            _stop: stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every file under the root, relative, sorted.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(
                        path.strip_prefix(base)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

/// `storage` served on a loopback port, until the sender is dropped.
async fn serve(storage: Storage) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(photosrv_storage::serve(listener, storage, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn raw(addr: SocketAddr, bytes: &[u8], close_after: bool) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    if close_after {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn put_creates_then_replaces_and_get_reads_back() {
    let node = Node::start().await;
    let http = client();
    let put = http
        .put(node.url("/a/b/c.jpg"))
        .body("first")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "created, parents included");
    let put = http
        .put(node.url("/a/b/c.jpg"))
        .body("second!")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204, "replaced");
    let get = http.get(node.url("/a/b/c.jpg")).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "image/jpeg");
    assert_eq!(get.headers()["content-length"], "7");
    assert!(get.headers().contains_key("last-modified"));
    assert!(get.headers().contains_key("etag"));
    assert_eq!(get.text().await.unwrap(), "second!");
    assert_eq!(node.files(), ["a/b/c.jpg"], "no temporary file left");
    let delete = http.delete(node.url("/a/b/c.jpg")).send().await.unwrap();
    assert_eq!(delete.status(), 204);
    assert_eq!(
        http.get(node.url("/a/b/c.jpg"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.delete(node.url("/a/b/c.jpg"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn a_cut_off_upload_leaves_nothing_and_readers_never_see_part_of_it() {
    let node = Node::start().await;
    std::fs::write(node.dir.path().join("old.bin"), b"old content").unwrap();
    // Promise 100000 bytes, send 10, hang up.
    raw(
        node.addr,
        b"PUT /old.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789",
        true,
    )
    .await;
    raw(
        node.addr,
        b"PUT /new.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789",
        true,
    )
    .await;
    let mut files = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        files = node.files();
        if files == ["old.bin"] {
            break;
        }
    }
    assert_eq!(
        files,
        ["old.bin"],
        "the temporary files are gone and old.bin is untouched"
    );
    assert_eq!(
        std::fs::read(node.dir.path().join("old.bin")).unwrap(),
        b"old content"
    );
    // A chunked body cut off mid-way is refused too.
    let answer = raw(
        node.addr,
        b"PUT /c.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        false,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(node.files(), ["old.bin"]);
}

/// A body over the node's limit gets 413 and leaves nothing: at once when its Content-Length
/// says so, as soon as the limit is passed when it is chunked. A body of exactly the limit
/// is stored.
#[tokio::test]
async fn bodies_over_the_limit_are_refused_and_leave_nothing() {
    let node = Node::start_with_limit(1000).await;
    let http = client();
    let put = |path: &str, body: Vec<u8>| http.put(node.url(path)).body(body).send();
    assert_eq!(
        put("/limit.bin", vec![1; 1000]).await.unwrap().status(),
        201
    );
    let answer = raw(
        node.addr,
        b"PUT /over.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n",
        false,
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "refused before the body: {answer}"
    );
    let chunked = |size: usize| {
        let mut request = format!(
            "PUT /chunked-{size}.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{:x}\r\n",
            size - 1
        )
        .into_bytes();
        request.extend(vec![b'a'; size - 1]);
        request.extend(b"\r\n1\r\nz\r\n0\r\n\r\n");
        request
    };
    let answer = raw(node.addr, &chunked(1001), false).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let answer = raw(node.addr, &chunked(1000), false).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(node.files(), ["chunked-1000.bin", "limit.bin"]);
    assert_eq!(
        std::fs::read(node.dir.path().join("chunked-1000.bin")).unwrap(),
        [vec![b'a'; 999], vec![b'z']].concat()
    );
}

#[tokio::test]
async fn conditional_and_range_reads() {
    let node = Node::start().await;
    let http = client();
    let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    http.put(node.url("/r.bin"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let get = http.get(node.url("/r.bin")).send().await.unwrap();
    let etag = get.headers()["etag"].to_str().unwrap().to_owned();
    let modified = get.headers()["last-modified"].to_str().unwrap().to_owned();

    let r = http
        .get(node.url("/r.bin"))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/1000");
    assert_eq!(r.bytes().await.unwrap(), body[100..200]);
    let r = http
        .get(node.url("/r.bin"))
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), body[990..]);
    let r = http
        .get(node.url("/r.bin"))
        .header("range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */1000");
    let r = http
        .get(node.url("/r.bin"))
        .header("range", "bytes=0-1")
        .header("if-range", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "If-Range mismatch sends the whole object");

    let r = http
        .get(node.url("/r.bin"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = http
        .get(node.url("/r.bin"))
        .header("if-none-match", "\"nope\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(node.url("/r.bin"))
        .header("if-modified-since", &modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = http.head(node.url("/r.bin")).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], "1000");

    // Larger than one read chunk: streamed in pieces, byte-exact.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    assert_eq!(
        http.put(node.url("/big.bin"))
            .body(big.clone())
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let got = http
        .get(node.url("/big.bin"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got == big, "3 MB object differs");
    let r = http
        .get(node.url("/big.bin"))
        .header("range", "bytes=262140-1000000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), big[262140..=1000000]);
}

#[tokio::test]
async fn nothing_escapes_the_root() {
    let node = Node::start().await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.path(), node.dir.path().join("link")).unwrap();
    for target in [
        "/../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/a%2f..%2f..%2fetc",
        "/a\\..\\b",
        "/a%00b",
        "/.photosrv-tmp-x",
        "/link/secret",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let request = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
            let answer = raw(node.addr, request.as_bytes(), false).await;
            let status: u16 = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            assert!(
                (400..500).contains(&status) || answer.is_empty(),
                "{method} {target}: {answer}"
            );
        }
    }
    assert_eq!(
        std::fs::read(outside.path().join("secret")).unwrap(),
        b"secret"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        1,
        "nothing was written outside"
    );
}

/// Symlinks that stay inside the root are followed, whether absolute or relative; one that
/// climbs out with `..` is refused like an absolute one (the fast read path refuses both in
/// the kernel and the slow path decides the absolute ones that stay inside).
#[tokio::test]
async fn symlinks_inside_the_root_are_followed() {
    let node = Node::start().await;
    let root = node.dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("real/deep")).unwrap();
    std::fs::write(root.join("real/deep/a.jpg"), b"inside").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("absolute")).unwrap();
    std::os::unix::fs::symlink("real/deep", root.join("relative")).unwrap();
    std::os::unix::fs::symlink("../a.jpg", root.join("real/deep/up")).unwrap();
    std::fs::write(root.join("real/a.jpg"), b"one up").unwrap();
    let climb = std::iter::repeat_n("..", root.components().count()).collect::<Vec<_>>();
    let escape = format!(
        "{}{}",
        climb.join("/"),
        outside.path().join("secret").display()
    );
    std::os::unix::fs::symlink(&escape, root.join("climbs-out")).unwrap();
    assert_eq!(std::fs::read(root.join("climbs-out")).unwrap(), b"secret");

    let http = client();
    for (path, want) in [
        ("/absolute/deep/a.jpg", &b"inside"[..]),
        ("/relative/a.jpg", b"inside"),
        ("/real/deep/up", b"one up"),
    ] {
        let r = http.get(node.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.bytes().await.unwrap(), want, "{path}");
    }
    let r = http.get(node.url("/climbs-out")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.text().await.unwrap().contains("secret"));
}

/// A FIFO in the root (which no request can create, but an operator's tools might) is
/// refused at once: opening it for reading must not wait for a writer on the runtime
/// thread. Reached directly (openat2) and through an absolute symlink (the fallback open).
#[tokio::test]
async fn a_fifo_is_refused_without_blocking() {
    let node = Node::start().await;
    let root = node.dir.path().canonicalize().unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::os::unix::fs::symlink(root.join("pipe"), root.join("to-pipe")).unwrap();
    let http = client();
    for path in ["/pipe", "/to-pipe"] {
        let answer =
            tokio::time::timeout(Duration::from_secs(5), http.get(node.url(path)).send()).await;
        let response = answer.expect("the node answers").unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    // Still serving.
    std::fs::write(root.join("a.jpg"), b"ok").unwrap();
    let r = http.get(node.url("/a.jpg")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"ok"[..]);
}

#[tokio::test]
async fn webdav_odds_and_ends() {
    let node = Node::start().await;
    let http = client();
    let options = http
        .request(reqwest::Method::OPTIONS, node.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.headers()["dav"], "1");
    let mkcol = |path: &str| {
        http.request(
            reqwest::Method::from_bytes(b"MKCOL").unwrap(),
            node.url(path),
        )
        .send()
    };
    assert_eq!(mkcol("/c/").await.unwrap().status(), 201);
    assert_eq!(mkcol("/c/").await.unwrap().status(), 405);
    assert_eq!(mkcol("/x/y/").await.unwrap().status(), 409);
    let propfind = http
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            node.url("/"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(propfind.status(), 405);
    let answer = raw(
        node.addr,
        b"PUT /m.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcdef",
        false,
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "extra bytes after the body are not part of it: {answer}"
    );
    assert_eq!(
        std::fs::read(node.dir.path().join("m.bin")).unwrap(),
        b"abc"
    );
    // A PUT names a file, never a collection (existing or not): 409, as when a collection
    // or a file is in its way. A name longer than the file system takes is the client's to
    // shorten: 414, never a 500. Nothing changes.
    let long_name = format!("/{}", "n".repeat(300));
    for (path, want) in [
        ("/c/".to_owned(), 409),
        ("/new/".to_owned(), 409),
        ("/c".to_owned(), 409),
        ("/m.bin/x".to_owned(), 409),
        (long_name.clone(), 414),
        (format!("{long_name}/x"), 414),
    ] {
        let put = http.put(node.url(&path)).body("x").send().await.unwrap();
        assert_eq!(put.status(), want, "PUT {path}");
    }
    assert!(node.dir.path().join("c").is_dir());
    assert_eq!(mkcol(&long_name).await.unwrap().status(), 414);
    // The name is refused before the body is read: a client announcing 50 MB under a name
    // the file system cannot take gets its 414 without sending any of them. So is a path
    // whose parent fits (and so its temporary file) but whose whole does not.
    let long_path = format!("{}/{}", "/d".repeat(1_950), "n".repeat(200));
    for path in [&long_name, &long_path] {
        let head = format!("PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n");
        let answer = raw(node.addr, head.as_bytes(), false).await;
        assert!(answer.starts_with("HTTP/1.1 414"), "{answer:?}");
    }
    let longest_name = node.url(&format!("/{}", "n".repeat(255)));
    let put = http.put(&longest_name).body("x").send().await.unwrap();
    assert_eq!(put.status(), 201, "255 bytes is a name");
    let delete = http.delete(&longest_name).send().await.unwrap();
    assert_eq!(delete.status(), 204);
    assert_eq!(node.files(), ["m.bin"]);
}

/// A request's header lines, name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// The same files served by nginx, the storage node photosrv fronts in production, and by
/// this node from nginx's own directory: the same status, ETag, Last-Modified, length, ranges
/// and bytes, so a shard can mix replicas of both kinds and a client's conditional or range
/// request gets the same answer from either. Required under CI.
#[tokio::test]
async fn answers_as_nginx_does_for_the_same_files() {
    let test = "answers_as_nginx_does_for_the_same_files";
    let Some(binary) = photosrv_testkit::nginx_or_skip(test) else {
        return;
    };
    let nginx = photosrv_testkit::NginxNode::start(&binary).unwrap();
    let modified = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_123);
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    nginx
        .seed_modified("a/photo.jpg", &photo, modified)
        .unwrap();
    nginx.seed_modified("small", b"hello", modified).unwrap();
    nginx.seed_modified("empty.txt", b"", modified).unwrap();
    std::os::unix::fs::symlink("loop", nginx.root.join("loop")).unwrap();
    let long_name = format!("/{}", "n".repeat(300));
    let (ours, _stop) = serve(Storage::open(&nginx.root).unwrap()).await;
    let http = client();

    let get = http.get(format!("{}/a/photo.jpg", nginx.url()));
    let answer = get.send().await.unwrap();
    let etag = answer.headers()["etag"].to_str().unwrap().to_owned();
    let date = answer.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(etag, "\"6553f17b-493e0\"", "nginx's own ETag");
    let cases: &[(&str, &str, Headers)] = &[
        ("GET", "/a/photo.jpg", &[]),
        ("HEAD", "/a/photo.jpg", &[]),
        ("GET", "/a/photo.jpg", &[("range", "bytes=100-199")]),
        ("GET", "/a/photo.jpg", &[("range", "bytes=-10")]),
        ("GET", "/a/photo.jpg", &[("range", "bytes=299990-")]),
        ("GET", "/a/photo.jpg", &[("range", "bytes=299990-400000")]),
        ("GET", "/a/photo.jpg", &[("range", "bytes=300000-")]),
        ("GET", "/a/photo.jpg", &[("if-none-match", &etag)]),
        ("GET", "/a/photo.jpg", &[("if-none-match", "\"other\"")]),
        ("GET", "/a/photo.jpg", &[("if-modified-since", &date)]),
        (
            "GET",
            "/a/photo.jpg",
            &[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")],
        ),
        (
            "GET",
            "/a/photo.jpg",
            &[("range", "bytes=0-9"), ("if-range", &etag)],
        ),
        (
            "GET",
            "/a/photo.jpg",
            &[("range", "bytes=0-9"), ("if-range", &date)],
        ),
        (
            "GET",
            "/a/photo.jpg",
            &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
        ),
        ("GET", "/small", &[]),
        ("GET", "/small", &[("range", "bytes=1-3")]),
        ("GET", "/empty.txt", &[]),
        ("GET", "/missing.jpg", &[]),
        ("GET", "/a/missing/photo.jpg", &[]),
        ("GET", "/", &[]),
        ("GET", "/a/", &[]),
        ("GET", "/small/x", &[]),
        ("HEAD", "/small/x", &[]),
        ("GET", &long_name, &[]),
        ("GET", "/loop", &[]),
    ];
    for (method, path, headers) in cases {
        let mut answers = Vec::new();
        for base in [nginx.url(), format!("http://{ours}")] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = http.request(method, format!("{base}{path}"));
            for (name, value) in headers.iter() {
                request = request.header(*name, *value);
            }
            let answer = request.send().await.unwrap();
            // Error pages differ in their text, so only their status and Content-Range count.
            let status = answer.status();
            let mut compared = vec!["content-range"];
            if status.is_success() || status == 304 {
                compared.extend(["etag", "last-modified", "content-length"]);
            }
            // nginx leaves Accept-Ranges out of a 206; this node sends it (RFC 9110 allows
            // either).
            if status == 200 {
                compared.push("accept-ranges");
            }
            let mut seen = vec![status.to_string()];
            for name in compared {
                let value = answer.headers().get(name);
                seen.push(format!("{name}: {value:?}"));
            }
            if status.is_success() {
                let body = answer.bytes().await.unwrap();
                seen.push(format!(
                    "{} bytes, sum {}",
                    body.len(),
                    body.iter().map(|&b| u64::from(b)).sum::<u64>()
                ));
            }
            answers.push(seen);
        }
        assert_eq!(
            answers[0], answers[1],
            "{method} {path} {headers:?}: nginx, then ours"
        );
    }
}

/// Debian's litmus `basic` and `http` suites, run against the node. Required under CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litmus_basic_and_http_pass() {
    let Some(litmus) = ["/usr/bin/litmus", "/usr/local/bin/litmus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "litmus not found, and CI requires it (.ci/run installs it)"
        );
        eprintln!("litmus_basic_and_http_pass: skipped: litmus not found");
        return;
    };
    let node = Node::start().await;
    let url = node.url("/");
    // litmus writes debug.log and child.log where it runs.
    let workdir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(litmus)
        .current_dir(workdir.path())
        .arg("-k")
        .arg(&url)
        .env("TESTS", "basic http")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("litmus finished")
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for suite in ["basic", "http"] {
        let summary = text
            .lines()
            .find(|l| l.contains(&format!("summary for `{suite}'")))
            .unwrap_or_default();
        assert!(summary.contains("100.0%"), "{suite}: {summary}\n{text}");
    }
    // The one warning besides "no Class 2" is delete_fragment: the http crate drops a
    // `#fragment` from the request target before any handler sees it (docs/storage.md).
    assert_eq!(text.matches("WARNING").count(), 2, "{text}");
}
