//! Hostile requests as raw bytes over TCP: each gets a 4xx (414/431 where they fit) or a
//! closed connection, nothing smuggled reaches a node, and the router keeps serving. HTTP/2
//! floods end their connection.

mod support;

use photosrv_testkit::RouterBuilder;
use std::time::Duration;
use support::{client, raw_exchange, Cluster};

/// The status of the first response in `answer`, or None for a closed connection.
fn first_status(answer: &str) -> Option<u16> {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_or_a_closed_connection_and_nothing_is_smuggled() {
    let Some(cluster) = Cluster::start("hostile_requests", 1, 1) else {
        return;
    };
    let node = &cluster.nodes[0][0];
    node.seed("ok.jpg", b"fine").unwrap();
    node.seed("smuggled", b"SMUGGLED").unwrap();
    let router = RouterBuilder::new(cluster.config("jump", ""))
        .start()
        .await
        .unwrap();
    let long_uri = format!("/{}", "a".repeat(100_000));
    let long_header = format!("X-Big: {}", "b".repeat(100_000));
    let many_headers: String = (0..2000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, String)> = vec![
        ("CL and TE", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: 36\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("TE and CL", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n".into()),
        ("two Content-Lengths", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("unknown coding", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("doubled chunked", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n".into()),
        ("chunked not last", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".into()),
        ("bad chunk size", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /smuggled HTTP/1.1\r\n\r\n".into()),
        ("chunk size overflow", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n".into()),
        ("CL on GET", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: 34\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("obs-fold", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n".into()),
        ("space before colon", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n".into()),
        ("bare CR", "GET /ok.jpg HTTP/1.1\rHost: x\r\r".into()),
        ("NUL in target", "GET /ok\0.jpg HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("space in target", "GET /ok .jpg HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("NUL in header", "GET /ok.jpg HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".into()),
        ("over-long URI", format!("GET {long_uri} HTTP/1.1\r\nHost: x\r\n\r\n")),
        ("over-long header", format!("GET /ok.jpg HTTP/1.1\r\nHost: x\r\n{long_header}\r\n\r\n")),
        ("too many headers", format!("GET /ok.jpg HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n")),
        ("bad percent-encoding", "GET /ok%zz.jpg HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("truncated percent", "GET /ok.jpg% HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("encoded NUL", "GET /ok%00.jpg HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("bad version", "GET /ok.jpg HTTP/9.9\r\nHost: x\r\n\r\n".into()),
        ("TLS hello", "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03".into()),
        ("PUT with body", "PUT /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nEVIL".into()),
        ("CONNECT", "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n".into()),
    ];
    for traversal in [
        "/../smuggled",
        "/%2e%2e/smuggled",
        "/%2E%2e/smuggled",
        "/.%2e/smuggled",
        "/a/..%2fsmuggled",
        "/a/%2e%2e%2fsmuggled",
        "/a%2f..%2fsmuggled",
        "/./smuggled",
        "/%2e/smuggled",
        "/.git/config",
        "/a/%2E%2E/%2E%2E/etc/passwd",
        "/a/.../x",
    ] {
        let answer = raw_exchange(
            router.addr,
            format!("GET {traversal} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let status = first_status(&answer);
        assert!(matches!(status, Some(400..=499)), "{traversal}: {answer}");
    }
    let mut seen = Vec::new();
    for (name, request) in &cases {
        let answer = raw_exchange(router.addr, request.as_bytes()).await;
        let status = first_status(&answer);
        // Only the first response counts: a second would be a smuggled request answered.
        let responses = answer.matches("HTTP/1.1 ").count();
        assert!(
            matches!(status, None | Some(400..=499)),
            "{name}: got {status:?}: {}",
            answer.lines().next().unwrap_or("")
        );
        assert!(responses <= 1, "{name}: {responses} responses: {answer}");
        assert!(
            !answer.contains("SMUGGLED"),
            "{name}: smuggled body came back"
        );
        seen.push((name.to_string(), status));
    }
    for (name, want) in [
        ("over-long URI", [414, 431]),
        ("over-long header", [431, 431]),
        ("too many headers", [431, 431]),
    ] {
        // The router reads heads itself: every refusal is answered (`client_http1.rs`).
        let status = seen.iter().find(|(n, _)| n == name).unwrap().1;
        assert!(
            status.is_some_and(|status| want.contains(&status)),
            "{name}: {status:?}"
        );
    }
    eprintln!("hostile statuses: {seen:?}");
    // An absolute-form target (legal HTTP) is routed by its path to our own nodes: the
    // router never connects to the host it names.
    let answer = raw_exchange(router.addr, b"GET http://127.0.0.1:22/ok.jpg HTTP/1.1\r\nHost: 127.0.0.1:22\r\nConnection: close\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("fine"),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = node.access_log();
    assert!(
        !log.contains("smuggled"),
        "a smuggled request reached the node:\n{log}"
    );
    assert!(!log.contains("passwd") && !log.contains(".git"), "{log}");
    // Still up and serving.
    let response = client()
        .get(format!("{}/ok.jpg", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "fine");
}

/// Lines ending in a bare LF are accepted by the HTTP parser (as nginx accepts them); that
/// is no smuggling vector here, because the router re-frames every request it forwards and
/// never forwards a request body. What matters: one request in, one request out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_requests_are_reframed_not_smuggled() {
    let Some(cluster) = Cluster::start("bare_lf", 1, 1) else {
        return;
    };
    let node = &cluster.nodes[0][0];
    node.seed("ok.jpg", b"fine").unwrap();
    let router = RouterBuilder::new(cluster.config("jump", ""))
        .start()
        .await
        .unwrap();
    let answer = raw_exchange(
        router.addr,
        b"GET /ok.jpg HTTP/1.1\nHost: x\nConnection: close\n\nGET /smuggled HTTP/1.1\n\n",
    )
    .await;
    assert!(
        matches!(first_status(&answer), None | Some(200) | Some(400)),
        "{answer}"
    );
    assert!(answer.matches("HTTP/1.1 ").count() <= 1, "{answer}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!node.access_log().contains("smuggled"));
}

/// One HTTP/2 frame: 9 bytes of head (length, type, flags, stream id), then the payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

const H2_HEADERS: u8 = 0x1;
const H2_RST_STREAM: u8 = 0x3;
const H2_SETTINGS: u8 = 0x4;
const H2_GOAWAY: u8 = 0x7;
const H2_CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_STREAM_AND_HEADERS: u8 = 0x5;

/// An h2c connection's opening: the preface and empty settings.
fn h2_opening() -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
    bytes
}

/// A GET's header block (HPACK: GET and http from the static table, :path and :authority as
/// literals without indexing).
fn h2_get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend(path.as_bytes());
    block.extend([0x01, 1, b'x']);
    block
}

/// Connects to `addr` and writes `bytes` (ignoring a connection the router closed
/// meanwhile), then reads until the router closes or 5 s pass; returns the GOAWAY's error
/// code if one came.
async fn h2_send_and_read_goaway(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let mut rest = &answer[..];
    while rest.len() >= 9 {
        let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let payload = rest.get(9..9 + length)?;
        if rest[3] == H2_GOAWAY {
            return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
        }
        rest = &rest[9 + length..];
    }
    None
}

/// The HTTP/2 floods that took down servers in 2023 and 2024 end the connection with a GOAWAY
/// and reach the nodes little or not at all: a rapid reset (a stream opened and cancelled at
/// once, 10,000 times: CVE-2023-44487), malformed streams the server must reset itself, and a
/// header block continued forever (CVE-2024-27316 and its kin). hyper's HTTP/2 (the `h2`
/// crate) enforces the limits; this holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_floods_end_the_connection_and_the_router_keeps_serving() {
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    let Some(cluster) = Cluster::start("h2c_floods", 1, 1) else {
        return;
    };
    let node = &cluster.nodes[0][0];
    node.seed("ok.jpg", b"fine").unwrap();
    let router = RouterBuilder::new(cluster.config("jump", ""))
        .start()
        .await
        .unwrap();

    let mut flood = h2_opening();
    let get = h2_get("/ok.jpg");
    for stream in (1..20_000).step_by(2) {
        flood.extend(h2_frame(H2_HEADERS, END_STREAM_AND_HEADERS, stream, &get));
        flood.extend(h2_frame(H2_RST_STREAM, 0, stream, &0x8u32.to_be_bytes()));
    }
    let goaway = h2_send_and_read_goaway(router.addr, &flood).await;
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "rapid reset");

    // 10,000 streams the router must reset itself, each a GET with a header HTTP/2 forbids
    // (`connection`): resets the rapid-reset limit does not count (CVE-2025-8671).
    let mut flood = h2_opening();
    let mut malformed = get.clone();
    malformed.extend([0x00, 10]);
    malformed.extend(b"connection");
    malformed.extend([5]);
    malformed.extend(b"close");
    for stream in (1..20_000).step_by(2) {
        flood.extend(h2_frame(
            H2_HEADERS,
            END_STREAM_AND_HEADERS,
            stream,
            &malformed,
        ));
    }
    let goaway = h2_send_and_read_goaway(router.addr, &flood).await;
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "streams reset by the router"
    );

    // One HEADERS frame without END_HEADERS, then 16 MiB of header lines in CONTINUATION
    // frames: refused at the header list limit (64 KiB), long before the end.
    let mut flood = h2_opening();
    flood.extend(h2_frame(H2_HEADERS, END_STREAM, 1, &get));
    let mut lines = Vec::new();
    for i in 0..64 {
        let name = format!("x-h{i}");
        lines.extend([0x00, name.len() as u8]);
        lines.extend(name.as_bytes());
        lines.extend([0x7f, 200 - 127]);
        lines.extend([b'v'; 200]);
    }
    let continuation = h2_frame(H2_CONTINUATION, 0, 1, &lines);
    while flood.len() < 16 << 20 {
        flood.extend(&continuation);
    }
    let goaway = h2_send_and_read_goaway(router.addr, &flood).await;
    assert!(goaway.is_some(), "CONTINUATION flood: no GOAWAY");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let forwarded = node.access_log().lines().count();
    assert!(
        forwarded < 1000,
        "{forwarded} of 10,000 reset streams reached the node"
    );
    let response = client()
        .get(format!("{}/ok.jpg", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    eprintln!("h2c floods: {forwarded} requests reached the node");
}
