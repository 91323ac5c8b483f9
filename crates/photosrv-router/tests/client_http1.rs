//! The router's own HTTP/1 server side (`downstream.rs`), as clients see it on the wire:
//! pipelining, HTTP/1.0 and keep-alive, re-framing of chunked node answers, the header
//! timeout, h2c handed to hyper, and shutdown between requests.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use photosrv_config::Settings;
use photosrv_testkit::{RouterBuilder, RouterHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads from `stream` until `done` holds for what came, the peer closes, or 2 s pass.
async fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        if done(&String::from_utf8_lossy(&out)) {
            return (String::from_utf8_lossy(&out).into_owned(), false);
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// The heads (lowercased) and bodies of the responses in `answer`, in order; each body is
/// framed by its Content-Length, or runs to the end when there is none.
fn responses(answer: &str, to_head: &[bool]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = answer;
    for &head_only in to_head {
        let Some(end) = rest.find("\r\n\r\n") else {
            break;
        };
        let head = rest[..end].to_ascii_lowercase();
        rest = &rest[end + 4..];
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|v| v.trim().parse::<usize>().unwrap());
        let take = match (head_only, length) {
            (true, _) => 0,
            (false, Some(length)) => length.min(rest.len()),
            (false, None) => rest.len(),
        };
        out.push((head, rest[..take].to_owned()));
        rest = &rest[take..];
    }
    out
}

async fn router_over(cluster: &Cluster, timeout_ms: Option<u64>) -> RouterHandle {
    RouterBuilder::new(cluster.config("jump", ""))
        .settings(|s| s.header_read_timeout_ms = timeout_ms)
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let Some(cluster) = Cluster::start("pipelined", 1, 1) else {
        return;
    };
    cluster.seed(0, "a.jpg", b"A");
    cluster.seed(0, "b.jpg", b"BB");
    let router = router_over(&cluster, None).await;
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(
            b"GET /a.jpg HTTP/1.1\r\nHost: x\r\n\r\nGET /b.jpg HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /missing.jpg HTTP/1.1\r\nHost: x\r\n\r\nGET /bad%zz.jpg HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b.jpg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let (answer, closed) = read_until(&mut stream, |_| false).await;
    assert!(closed, "Connection: close was not honoured: {answer}");
    let got = responses(&answer, &[false, false, false, false, true]);
    assert_eq!(got.len(), 5, "{answer}");
    let statuses: Vec<&str> = got.iter().map(|(head, _)| &head[9..12]).collect();
    assert_eq!(statuses, ["200", "200", "404", "400", "200"], "{answer}");
    assert_eq!(got[0].1, "A");
    assert_eq!(got[1].1, "BB");
    // The router's own answer: its length and date are the router's to add.
    assert_eq!(got[3].1, "bad request path\n");
    assert!(got[4].0.contains("content-length: 2"), "{}", got[4].0);
    assert!(got[4].0.contains("connection: close"), "{}", got[4].0);
    for (i, (head, _)) in got.iter().enumerate() {
        assert!(head.contains("\r\ndate: "), "{head}");
        assert_eq!(head.contains("\r\nvia: 1.1 photosrv"), i != 3, "{head}");
        assert!(!head.contains("keep-alive"), "{head}");
    }
    assert!(
        answer.ends_with("\r\n\r\n"),
        "a body after the HEAD answer: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_clients_get_keep_alive_only_when_they_ask() {
    let Some(cluster) = Cluster::start("http10", 1, 1) else {
        return;
    };
    cluster.seed(0, "a.jpg", b"A");
    let router = router_over(&cluster, None).await;
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET /a.jpg HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until(&mut stream, |_| false).await;
    assert!(closed && answer.ends_with("\r\n\r\nA"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /a.jpg HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let (answer, closed) = read_until(&mut stream, |a| a.ends_with("\r\n\r\nA")).await;
        assert!(!closed && answer.ends_with("\r\n\r\nA"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("connection: keep-alive"),
            "{answer}"
        );
    }
}

/// A request head read off `stream` (and whatever came with it); None once it closes.
async fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Some(seen)
}

/// A node that answers every request with `answer`, keeping the connection.
async fn scripted_node(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                while read_request_head(&mut stream).await.is_some() {
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A router with default settings over one [`scripted_node`] answering `answer`.
async fn router_over_scripted_node(answer: &'static [u8]) -> RouterHandle {
    let node = scripted_node(answer).await;
    RouterBuilder::new(one_node(&format!("http://{node}")))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_node_answers_are_rechunked_for_http11_and_closed_for_http10() {
    let router = router_over_scripted_node(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .await;
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET /any.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (answer, closed) = read_until(&mut stream, |a| a.ends_with("\r\n0\r\n\r\n")).await;
        assert!(!closed, "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        let mut decoded = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            if size == 0 {
                break;
            }
            decoded.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        assert_eq!(decoded, "abcde");
    }
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET /any.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until(&mut stream, |_| false).await;
    assert!(
        closed,
        "an HTTP/1.0 body without a length must end with the connection"
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, "abcde");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_clients_are_disconnected_after_the_header_timeout() {
    let Some(cluster) = Cluster::start("header_timeout", 1, 1) else {
        return;
    };
    cluster.seed(0, "a.jpg", b"A");
    let router = router_over(&cluster, Some(300)).await;
    let silent = TcpStream::connect(router.addr).await.unwrap();
    let mut partial = TcpStream::connect(router.addr).await.unwrap();
    partial
        .write_all(b"GET /a.jpg HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(router.addr).await.unwrap();
    idle.write_all(b"GET /a.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until(&mut idle, |a| a.ends_with("\r\n\r\nA")).await;
    assert!(!closed && answer.starts_with("HTTP/1.1 200"), "{answer}");
    let started = Instant::now();
    for (name, mut stream) in [("silent", silent), ("partial", partial), ("idle", idle)] {
        let (answer, closed) = read_until(&mut stream, |_| false).await;
        assert!(closed && answer.is_empty(), "{name}: {closed} {answer}");
    }
    assert!(started.elapsed() < Duration::from_millis(1500));
    // A client that keeps sending in time is served.
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream
            .write_all(b"GET /a.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (answer, closed) = read_until(&mut stream, |a| a.ends_with("\r\n\r\nA")).await;
        assert!(!closed, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_is_served() {
    let Some(cluster) = Cluster::start("h2c", 1, 1) else {
        return;
    };
    cluster.seed(0, "a.jpg", b"over h2");
    let router = router_over(&cluster, None).await;
    let client = h2c_client();
    for _ in 0..2 {
        let response = client
            .get(format!("{}/a.jpg", router.url()).parse().unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"over h2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_request_in_flight_and_closes_idle_connections() {
    let slow = photosrv_testkit::FaultyNode::start(photosrv_testkit::Fault::Slow(
        Duration::from_millis(400),
        b"slow body",
    ))
    .await
    .unwrap();
    let config = one_node(&slow.url());
    let router = RouterBuilder::new(config).start().await.unwrap();
    let mut idle = TcpStream::connect(router.addr).await.unwrap();
    let mut busy = TcpStream::connect(router.addr).await.unwrap();
    busy.write_all(b"GET /x.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(router.stop(Duration::from_secs(5)));
    let (answer, closed) = read_until(&mut idle, |_| false).await;
    assert!(
        closed && answer.is_empty(),
        "idle connection: {closed} {answer}"
    );
    let (answer, closed) = read_until(&mut busy, |_| false).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nslow body"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(closed);
    stopping.await.unwrap();
}

/// A request with a body is answered and the connection closed, but the router goes on
/// reading what the client still sends for a while first: closing with unread bytes would
/// make the kernel send a reset, which can destroy an answer still on its way (on loopback it
/// always arrives first, so the test checks that the router keeps reading instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_is_drained_so_the_answer_arrives() {
    let router = router_over_scripted_node(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    for _ in 0..5 {
        let mut stream = TcpStream::connect(router.addr).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        stream
            .write_all(b"PUT /x.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            .await
            .unwrap();
        stream.write_all(&chunk).await.unwrap();
        // The answer is out by now; the body keeps coming.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stream.write_all(&chunk).await;
        let (answer, closed) = read_until(&mut stream, |_| false).await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer:?}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert!(closed, "the router did not close its side");
        // The router still reads: more body bytes are taken, not answered with a reset
        // (which would fail the second write).
        for _ in 0..2 {
            stream.write_all(&chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `len` bytes that differ from page to page, so a piece out of place would show.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
}

/// A client that speaks h2c (HTTP/2 with prior knowledge) only.
fn h2c_client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Empty<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A config of one shard on the node at `url`.
fn one_node(url: &str) -> String {
    format!(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 {url}\n</shards>\n</dc1>\n</photosrv>\n"
    )
}

/// A node that answers every request with `len` bytes of [`pattern`], and those bytes.
async fn node_serving_pattern(len: usize) -> (photosrv_testkit::FaultyNode, &'static [u8]) {
    let object: &'static [u8] = Box::leak(pattern(len).into_boxed_slice());
    let fault = photosrv_testkit::Fault::Slow(Duration::ZERO, object);
    (
        photosrv_testkit::FaultyNode::start(fault).await.unwrap(),
        object,
    )
}

/// How many pipes this process has open.
fn open_pipes() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

/// Who passes a Content-Length body on to an HTTP/1 client: a reader task (the default), the
/// client connection's task copying it (`direct_bodies on`) or splicing it (`splice_bodies on`).
const RELAYS: [&str; 3] = ["reader", "direct", "splice"];

fn relay_by(relay: &str, settings: &mut Settings) {
    settings.direct_bodies = Some(relay == "direct");
    settings.splice_bodies = Some(relay == "splice");
}

/// With `direct_bodies on` or `splice_bodies on`, a node's large Content-Length body goes to
/// HTTP/1 clients from the client connection's task: it arrives whole and in order, the
/// node's connection is kept for the next request, and an h2c client (whose body is copied
/// into frames by a reader task) gets the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_bodies_arrive_whole_and_keep_the_node_connection() {
    for relay in ["direct", "splice"] {
        let (node, object) = node_serving_pattern((3 << 20) + 1).await;
        let config = one_node(&node.url());
        let router = RouterBuilder::new(config)
            .settings(|s| relay_by(relay, s))
            .start()
            .await
            .unwrap();
        let pipes_before = open_pipes();
        let client = reqwest::Client::new();
        for _ in 0..3 {
            let response = client
                .get(format!("{}/big.jpg", router.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.content_length(), Some(object.len() as u64));
            let body = response.bytes().await.unwrap();
            assert!(
                body == object,
                "{relay}: {} bytes, not the object",
                body.len()
            );
        }
        let response = client
            .head(format!("{}/big.jpg", router.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.bytes().await.unwrap().is_empty());
        assert_eq!(
            node.accepted(),
            1,
            "{relay}: the node's connection was not kept"
        );
        if relay == "splice" {
            // The router runs in this process: the pipes it spliced through are kept for the
            // next body, so they witness that the bodies did not go the copying way.
            assert!(
                open_pipes() > pipes_before,
                "no pipe was made: nothing was spliced"
            );
        }
        let h2c = h2c_client();
        let response = h2c
            .get(format!("{}/big.jpg", router.url()).parse().unwrap())
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            body == object,
            "{relay} h2c: {} bytes, not the object",
            body.len()
        );
    }
}

/// A node that sends part of a Content-Length body and then closes, or goes silent: the
/// client gets that part and then a closed connection (after `upstream_timeout` when the node
/// is silent), never a clean end it could take for the whole object; however it is relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_by_its_node_ends_the_client_connection() {
    let sent = pattern(300 * 1024);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = listener.local_addr().unwrap();
    let answer = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n".as_slice(),
        &sent,
    ]
    .concat();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let Some(seen) = read_request_head(&mut stream).await else {
                    return;
                };
                let _ = stream.write_all(&answer).await;
                if seen.starts_with(b"GET /silent") {
                    // Holds the connection open, sending nothing more, past the test's end.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            });
        }
    });
    for relay in RELAYS {
        let config = one_node(&format!("http://{node}"));
        let router = RouterBuilder::new(config)
            .settings(|s| {
                relay_by(relay, s);
                s.upstream_timeout_ms = Some(300);
            })
            .start()
            .await
            .unwrap();
        for path in ["/closes.jpg", "/silent.jpg"] {
            let mut stream = TcpStream::connect(router.addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got));
            read.await
                .unwrap_or_else(|_| panic!("{path} {relay}: the client's connection was left open"))
                .unwrap();
            let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            assert!(got.starts_with(b"HTTP/1.1 200"), "{path} {relay}");
            assert!(
                got[end..] == sent[..],
                "{path} {relay}: {} body bytes",
                got.len() - end
            );
        }
    }
}

/// A node that cuts a small body short (half of 4 KiB, then it closes): the body is read with
/// its head, so the attempt fails before any byte reaches the client and the other replica
/// answers with the whole object; however bodies are relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_body_cut_short_goes_to_the_next_replica() {
    let (good, object) = node_serving_pattern(4096).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cutter = listener.local_addr().unwrap();
    let cuts = Arc::new(AtomicUsize::new(0));
    let counted = cuts.clone();
    let half = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n".as_slice(),
        &object[..2048],
    ]
    .concat();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let half = half.clone();
            tokio::spawn(async move {
                if read_request_head(&mut stream).await.is_some() {
                    let _ = stream.write_all(&half).await;
                }
            });
        }
    });
    let config = one_node(&format!("http://{cutter} http://{}", good.addr));
    for relay in RELAYS {
        let router = RouterBuilder::new(config.clone())
            .settings(|s| relay_by(relay, s))
            .start()
            .await
            .unwrap();
        let cut_before = cuts.load(Ordering::SeqCst);
        for i in 0..16 {
            let mut stream = TcpStream::connect(router.addr).await.unwrap();
            let request = format!("GET /o{i}.jpg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
                .await
                .expect("the router answered")
                .unwrap();
            let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            assert!(got.starts_with(b"HTTP/1.1 200"), "{relay} {i}");
            assert!(
                got[end..] == object[..],
                "{relay} {i}: {} body bytes",
                got.len() - end
            );
        }
        assert!(
            cuts.load(Ordering::SeqCst) > cut_before,
            "{relay}: the cutting node was never tried"
        );
    }
}

/// A client that takes no bytes of a response for `send_timeout` has its connection closed:
/// it cannot hold the router's side and the node's connection forever. When it reads again it
/// finds what was in the sockets' buffers and the end, not the whole object; however it is
/// relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_nothing_is_cut_off_after_the_send_timeout() {
    // More than the sockets' buffers on both sides can hold, so the router must wait.
    let (node, object) = node_serving_pattern(32 << 20).await;
    let config = one_node(&node.url());
    for relay in RELAYS {
        let router = RouterBuilder::new(config.clone())
            .settings(|s| {
                relay_by(relay, s);
                s.send_timeout_ms = Some(300);
            })
            .start()
            .await
            .unwrap();
        let mut stream = TcpStream::connect(router.addr).await.unwrap();
        stream
            .write_all(b"GET /big.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got));
        let _ = read.await.expect("the router kept the connection");
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = &got[end..];
        assert!(
            body.len() < object.len(),
            "{relay}: the whole object arrived after the client stalled"
        );
        assert!(body == &object[..body.len()], "{relay}");
    }
}

/// The same for an h2c client, whose connection hyper serves without a send limit: the body
/// reader gives up once the client's side has taken nothing for `send_timeout`, the client
/// sees an error rather than the whole object, and the node's connection is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_client_that_takes_nothing_is_cut_off_after_the_send_timeout() {
    let (node, object) = node_serving_pattern(32 << 20).await;
    let router = RouterBuilder::new(one_node(&node.url()))
        .settings(|s| s.send_timeout_ms = Some(300))
        .start()
        .await
        .unwrap();
    let h2c = h2c_client();
    let url = format!("{}/big.jpg", router.url());
    let response = h2c.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the body neither ended nor failed");
    if let Ok(body) = body {
        let got = body.to_bytes().len();
        assert!(
            got < object.len(),
            "the whole object arrived after the client stalled"
        );
    }
    // The first connection was closed, not kept: a HEAD needs a new one.
    let head = reqwest::Client::new().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        node.accepted(),
        2,
        "the node's connection outlived the stalled client"
    );
}

/// An h2c client that answers no ping (gone, or reading nothing) is disconnected: hyper pings
/// it after `header_read_timeout` and closes when the ping is not answered within as long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_client_that_answers_no_ping_is_disconnected() {
    let Some(cluster) = Cluster::start("h2c_ping", 1, 1) else {
        return;
    };
    let router = router_over(&cluster, Some(300)).await;
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    // The preface and an empty SETTINGS frame; then nothing, not even acknowledgements.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "the router kept a connection that answers no ping"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// An h2c connection with no request in flight and none begun for `header_read_timeout` (to
/// twice that) is closed, as an idle HTTP/1 connection is; one with a request in flight stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2c_connection_is_closed() {
    let Some(cluster) = Cluster::start("h2c_idle", 1, 1) else {
        return;
    };
    cluster.seed(0, "a.jpg", b"over h2");
    let router = router_over(&cluster, Some(300)).await;
    let stream = TcpStream::connect(router.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    // Requests 100 ms apart for 1 s: never idle for a whole period, so never closed.
    let started = Instant::now();
    for _ in 0..10 {
        let request = http::Request::get(format!("{}/a.jpg", router.url()))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"over h2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then idle: the router closes it.
    let closed = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(closed.is_ok(), "the router kept an idle h2c connection");
    assert!(started.elapsed() >= Duration::from_millis(1300));
}

/// A head the router refuses gets a whole answer, the status and a line of text framed by
/// its length, and then the connection closes: never a close without a word, nor a node
/// asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_heads_get_a_whole_answer_then_a_close() {
    let router = router_over_scripted_node(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    for (wire, status, text) in [
        (
            "GET /a.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                .to_owned(),
            "400 bad request",
            "Bad Request\n",
        ),
        (
            format!("GET /a.jpg HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
            "431 request header fields too large",
            "Request Header Fields Too Large\n",
        ),
    ] {
        let mut stream = TcpStream::connect(router.addr).await.unwrap();
        stream.write_all(wire.as_bytes()).await.unwrap();
        let (answer, closed) = read_until(&mut stream, |_| false).await;
        let seen = responses(&answer, &[false]);
        let (head, body) = &seen[0];
        assert!(
            head.starts_with(&format!("http/1.1 {status}\r\n")),
            "{answer}"
        );
        assert!(head.contains("\r\nconnection: close"), "{answer}");
        let date = answer.lines().find_map(|line| line.strip_prefix("date: "));
        let date = date.map(httpdate::parse_http_date);
        assert!(date.is_some_and(|date| date.is_ok()), "a Date: {answer}");
        let length = format!("\r\ncontent-length: {}", text.len());
        assert!(head.contains(&length), "{answer}");
        assert_eq!(body, text);
        assert!(closed, "the connection stays open after a refusal");
    }
}

/// A 204 from a node goes on without a Content-Length the router made up (RFC 9110 8.6 forbids
/// one), and the connection carries the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_204_gets_no_content_length() {
    let router = router_over_scripted_node(b"HTTP/1.1 204 No Content\r\nx-node: 1\r\n\r\n").await;
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    let request = b"GET /a.jpg HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(&request.repeat(2)).await.unwrap();
    let (answer, closed) =
        read_until(&mut stream, |seen| seen.matches("\r\n\r\n").count() == 2).await;
    // No body follows a 204's head, as after a HEAD's.
    let seen = responses(&answer, &[true, true]);
    assert_eq!(seen.len(), 2, "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "{answer}");
    for (head, body) in &seen {
        assert!(head.starts_with("http/1.1 204"), "{answer}");
        assert!(head.contains("x-node: 1"), "{answer}");
        assert!(!head.contains("content-length"), "{answer}");
        assert!(!head.contains("transfer-encoding"), "{answer}");
        assert!(body.is_empty());
    }
    assert!(!closed);
}

/// A request's header lines, name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// What a client sees of an answer: the status, the header lines (sorted, without those a
/// proxy sets for itself: Date, Via, Connection, Keep-Alive) and the body, with a
/// multipart/byteranges boundary (nginx makes a new one per answer) made constant.
async fn seen(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Empty<Bytes>,
    >,
    method: &str,
    url: &str,
    headers: Headers<'_>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    // The node's Date, or the router's when the node sent none: never both.
    let dates = response.headers().get_all("date").iter().count();
    assert_eq!(dates, 1, "{method} {url}: Date lines");
    let mut lines: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| !["date", "via", "connection", "keep-alive"].contains(&name.as_str()))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    lines.sort();
    let mut body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let boundary = lines.iter_mut().find_map(|(name, value)| {
        let boundary = value
            .strip_prefix("multipart/byteranges; boundary=")?
            .to_owned();
        *value = "multipart/byteranges; boundary=B".to_owned();
        (name == "content-type").then_some(boundary)
    });
    if let Some(boundary) = boundary {
        let (mut rest, mut constant) = (&body[..], Vec::new());
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix(boundary.as_bytes()) {
                constant.push(b'B');
                rest = after;
            } else {
                constant.push(rest[0]);
                rest = &rest[1..];
            }
        }
        body = constant;
    }
    (status, lines, body)
}

/// Through the router a client gets what the node answered: the same status, end-to-end
/// header lines and bytes, for plain, HEAD, range, multi-range, conditional and failing
/// requests, an empty object, a small one and one of 300 kB; with each body relay, over
/// HTTP/1.1 and over h2c.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_through_the_router_are_the_node_s_own() {
    let Some(cluster) = Cluster::start("answers_through_the_router", 1, 1) else {
        return;
    };
    cluster.seed(0, "small.jpg", &pattern(1000));
    cluster.seed(0, "big.jpg", &pattern(300_000));
    cluster.seed(0, "empty.jpg", b"");
    let node = cluster.nodes[0][0].url();
    let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let h2c = h2c_client();
    let head = seen(&http1, "HEAD", &format!("{node}/big.jpg"), &[]).await;
    let field = |name: &str| {
        let (_, value) = head.1.iter().find(|(n, _)| n == name).unwrap();
        value.clone()
    };
    let (etag, modified) = (field("etag"), field("last-modified"));
    let cases: &[(&str, &str, Headers)] = &[
        ("GET", "big.jpg", &[]),
        ("HEAD", "big.jpg", &[]),
        ("GET", "small.jpg", &[]),
        ("GET", "empty.jpg", &[]),
        ("GET", "big.jpg", &[("range", "bytes=100-199")]),
        ("GET", "big.jpg", &[("range", "bytes=-10")]),
        ("GET", "big.jpg", &[("range", "bytes=299990-")]),
        ("GET", "big.jpg", &[("range", "bytes=1000-200000")]),
        ("GET", "big.jpg", &[("range", "bytes=300000-")]),
        ("GET", "small.jpg", &[("range", "bytes=0-9,20-29")]),
        ("GET", "big.jpg", &[("if-none-match", &etag)]),
        ("GET", "big.jpg", &[("if-modified-since", &modified)]),
        (
            "GET",
            "big.jpg",
            &[("range", "bytes=0-9"), ("if-range", &etag)],
        ),
        (
            "GET",
            "big.jpg",
            &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
        ),
        ("HEAD", "big.jpg", &[("range", "bytes=0-9")]),
        ("GET", "missing.jpg", &[]),
        ("HEAD", "missing.jpg", &[]),
    ];
    for relay in RELAYS {
        let router = RouterBuilder::new(one_node(&node))
            .settings(|s| relay_by(relay, s))
            .start()
            .await
            .unwrap();
        for (method, key, headers) in cases {
            let direct = seen(&http1, method, &format!("{node}/{key}"), headers).await;
            let url = format!("{}/{key}", router.url());
            for (protocol, client) in [("HTTP/1.1", &http1), ("h2c", &h2c)] {
                let through = seen(client, method, &url, headers).await;
                assert!(
                    through == direct,
                    "{method} /{key} {headers:?}, {relay}, {protocol}:\n \
                     node:   {} {:?} {} bytes\n router: {} {:?} {} bytes",
                    direct.0,
                    direct.1,
                    direct.2.len(),
                    through.0,
                    through.1,
                    through.2.len()
                );
            }
        }
        router.stop(Duration::from_secs(5)).await;
    }
}
