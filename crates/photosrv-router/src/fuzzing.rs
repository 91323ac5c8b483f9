//! Entry points for the cargo-fuzz targets under `fuzz/` (docs/reliability.md, "Fuzzing"):
//! the two parsers that read bytes from the network. Not an API.

use crate::downstream::{self, Refused};
use crate::h1::{self, Chunked, NodeResponse, UpstreamBody, MAX_HEADERS};
use bytes::{Bytes, BytesMut};
use http::StatusCode;

/// Reads `data` as request heads from a client, `piece` bytes per read, as a connection
/// does: every head parsed is taken off the buffer whole, a refusal is 400 or 431, and
/// nothing panics.
pub fn client_request_heads(data: &[u8], piece: usize) {
    let piece = piece.clamp(1, 4096);
    let (mut buf, mut fed) = (BytesMut::new(), 0);
    loop {
        let before = buf.len();
        match downstream::parse_head(&mut buf, 8 * 1024) {
            Ok(Some(_)) => assert!(buf.len() < before, "a parsed head was left in the buffer"),
            Ok(None) if fed < data.len() => {
                let n = piece.min(data.len() - fed);
                buf.extend_from_slice(&data[fed..fed + n]);
                fed += n;
            }
            Ok(None) => return,
            Err(Refused(status)) => {
                assert!(matches!(status.as_u16(), 400 | 431), "{status}");
                return;
            }
        }
    }
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
