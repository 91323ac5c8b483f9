//! Entry points for the cargo-fuzz targets under `fuzz/` (docs/reliability.md, "Fuzzing"):
//! the two parsers that read bytes from the network, and the request head built for a node
//! from what the first accepted. Not an API.

use crate::downstream::{self, Refused};
use crate::forward;
use crate::h1::{self, Chunked, NodeResponse, UpstreamBody, MAX_HEADERS};
use crate::node::Node;
use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode};
use photosrv_config::NodeAddr;
use std::net::IpAddr;

/// Reads `data` as request heads from a client, `piece` bytes per read, as a connection
/// does: every head parsed is taken off the buffer whole, its method and (origin-form)
/// target are the request line's, a refusal is 400 or 431, the head a node would get for it
/// is as [`check_node_request`] says, and nothing panics. Returns how many heads were
/// parsed.
pub fn client_request_heads(data: &[u8], piece: usize) -> usize {
    let piece = piece.clamp(1, 4096);
    let (mut buf, mut fed, mut parsed) = (BytesMut::new(), 0, 0);
    loop {
        let before = buf.len();
        match downstream::parse_head(&mut buf, 8 * 1024) {
            Ok(Some(head)) => {
                assert!(buf.len() < before, "a parsed head was left in the buffer");
                let request = head.request();
                // Empty lines before a request line are skipped (RFC 9112 2.2).
                // `buf` holds the last bytes fed: the head was `data`'s bytes before them.
                let line = data[fed - before..fed - buf.len()].trim_ascii_start();
                let method = request.method().as_str().as_bytes();
                assert!(line.starts_with(method), "another method than the line's");
                let target = request.uri().to_string();
                if target.starts_with('/') {
                    // The target as sent, up to a space, or a fragment the parser drops.
                    let rest = &line[method.len() + 1..];
                    let whole = matches!(rest.get(target.len()), Some(b' ' | b'#'));
                    assert!(rest.starts_with(target.as_bytes()) && whole, "not {target}");
                }
                check_node_request(request);
                parsed += 1;
            }
            Ok(None) if fed < data.len() => {
                let n = piece.min(data.len() - fed);
                buf.extend_from_slice(&data[fed..fed + n]);
                fed += n;
            }
            Ok(None) => return parsed,
            Err(Refused(status)) => {
                assert!(matches!(status.as_u16(), 400 | 431), "{status}");
                return parsed;
            }
        }
    }
}

/// The head the router would send a node for `request` (`forward.rs`) parses whole, and
/// holds exactly: the request line, the node's Host, the client's headers in order less
/// hop-by-hop ones, those its Connection lines name, Host, Content-Length and
/// X-Forwarded-For; then one X-Forwarded-For (the client's lines that are not empty, joined
/// in order, then its address) and Via. The expected lines are worked out here, apart from
/// `forward.rs`.
fn check_node_request(request: &Request<()>) {
    let client = headers_of(request);
    // Every option Connection lists, keep-alive and close too (RFC 9110 7.6.1).
    let named_by_connection: Vec<Vec<u8>> = request
        .headers()
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|token| token.trim_ascii().to_ascii_lowercase())
        .collect();
    let skipped = |name: &str| {
        forward::HOP_BY_HOP.iter().any(|hop| hop.as_str() == name)
            || ["host", "content-length", "x-forwarded-for"].contains(&name)
            || named_by_connection
                .iter()
                .any(|listed| listed == name.as_bytes())
    };
    let mut forwarded_for: Vec<&str> = client
        .iter()
        .filter(|(name, value)| name == "x-forwarded-for" && !value.is_empty())
        .map(|(_, value)| value.as_str())
        .collect();
    forwarded_for.push("192.0.2.1");
    let mut want = vec![("host".to_owned(), "node:8080".to_owned())];
    want.extend(client.iter().filter(|(name, _)| !skipped(name)).cloned());
    want.push(("x-forwarded-for".to_owned(), forwarded_for.join(", ")));
    want.push(("via".to_owned(), "1.1 photosrv".to_owned()));

    let forwarding = forward::Forwarding::new(request.headers(), IpAddr::from([192, 0, 2, 1]));
    let addr = NodeAddr::parse("http://node:8080").expect("a valid node URL");
    let node = Node::new(addr, std::time::Instant::now());
    let head = forwarding
        .request_head(request.method(), &node, "/key")
        .expect("a plain target always goes on a request line");
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS + 3];
    let mut parsed = httparse::Request::new(&mut fields);
    assert_eq!(
        parsed.parse(&head).ok(),
        Some(httparse::Status::Complete(head.len())),
        "the node's request head does not parse whole: {:?}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(
        (parsed.method, parsed.path),
        (Some(request.method().as_str()), Some("/key"))
    );
    let sent: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(sent, want, "{:?}", String::from_utf8_lossy(&head));
}

/// A request's header lines as lowercase names and lossy text values, in order.
fn headers_of(request: &Request<()>) -> Vec<(String, String)> {
    request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Reads `data` as a node's answer: its head, then a chunked body after it. The head
/// forwarded to a client from what was accepted is itself a well-formed head with the same
/// header lines (nothing injected, nothing lost), and nothing panics.
pub fn node_answer(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(length)) = response.parse(data) else {
        return;
    };
    let Some(status) = response.code.and_then(|c| StatusCode::from_u16(c).ok()) else {
        return;
    };
    let Ok(head) = h1::parse_head(&response, status, data, false) else {
        return;
    };
    let raw = Bytes::copy_from_slice(&data[..length]);
    let forwarded = NodeResponse::new(head, raw, UpstreamBody::whole(Bytes::new()));
    let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
    forwarded.write_fields(&mut out);
    out.extend_from_slice(b"\r\n");
    let mut again = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut reparsed = httparse::Response::new(&mut again);
    assert_eq!(
        reparsed.parse(&out).ok(),
        Some(httparse::Status::Complete(out.len())),
        "the forwarded head does not parse whole"
    );
    assert_eq!(
        reparsed.headers.len(),
        forwarded.into_response().headers().len(),
        "a header line was lost or made up"
    );
    let mut body = BytesMut::from(&data[length..]);
    let mut decoder = Chunked::new();
    while let Ok(Some(_)) = decoder.decode(&mut body) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds")
            .join(target);
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                (path, data)
            })
            .collect();
        seeds.sort();
        seeds
    }

    /// The fuzz targets' seeds hold in CI too: request heads in reads of every size up to
    /// 64 bytes and in one read, and node answers.
    #[test]
    fn fuzz_seeds_hold() {
        let mut heads = 0;
        for (path, data) in seeds("client_head") {
            let (_, heads_bytes) = data.split_first().expect("a read size, then heads");
            let whole = client_request_heads(heads_bytes, heads_bytes.len());
            assert!(whole > 0, "{}: no head parsed", path.display());
            for piece in 1..=64 {
                assert_eq!(
                    client_request_heads(heads_bytes, piece),
                    whole,
                    "{}",
                    path.display()
                );
            }
            heads += whole;
        }
        assert!(heads >= 5, "{heads} heads in the seeds");
        for (_, data) in seeds("node_answer") {
            node_answer(&data);
        }
    }
}
