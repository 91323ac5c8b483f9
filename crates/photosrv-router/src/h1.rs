//! HTTP/1 exchanges with the nodes: the request head written in one go, the response head
//! parsed with httparse (hyper's own parser), the body framed by Content-Length or chunked
//! encoding and streamed.
//!
//! The router used hyper's client connections here until the seventh session. Each request
//! then went through a channel to the connection's task, a header map built for the request
//! and serialised again, hyper's client state machine, and a body channel back, even for a
//! 4 KiB body that arrived with its head: 37% of the router's user-space instructions per
//! proxied 4 KiB GET (callgrind, docs/benchmarks-history.md). Here a body that came with its
//! head is answered from that one read, on the request's task, and the connection goes straight
//! back to the node's pool; a longer body is read by a task of its own, one piece ahead of
//! the client, as hyper's connection task did. A proxied 4 KiB GET went from 38.9k to 27.6k
//! instructions (callgrind), with the same system calls.
//!
//! Only what a static-content node sends is accepted, and strictly: a response with both
//! Content-Length and Transfer-Encoding, a Transfer-Encoding other than `chunked`,
//! Content-Length values that disagree, or a head over [`MAX_HEAD_BYTES`] is an error, never
//! guessed at. Trailers of a chunked body are read and dropped.

use crate::forward::HOP_BY_HOP;
use crate::node::Node;
use crate::pool::Connection;
use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// The largest response head read: the router's default limit on a client's request head
/// (`max_header_bytes`).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The most header lines a response may have (hyper's limit too).
pub(crate) const MAX_HEADERS: usize = 100;

/// The first read of a response: room for a head and a small body in one system call.
pub(crate) const FIRST_READ: usize = 8 * 1024;

/// The longest chunk-size line, and the most trailer bytes, of a chunked body.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Why an exchange with a node failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// The connection failed or closed before the first byte of an answer: on a kept
    /// connection, the node closed it while idle, and a GET or HEAD can go out again.
    #[error("no answer: {0}")]
    NoAnswer(io::Error),
    /// The connection failed or closed in the middle of the answer.
    #[error("answer cut short: {0}")]
    CutShort(io::Error),
    /// Not an HTTP/1 response this router forwards.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

/// Reads into `buf` up to the end of the final response head (interim 1xx answers are
/// dropped from `buf`) and gives its parse and status to `take`, with the bytes it was
/// parsed from (the head starts at the first) and its length. `take` runs once.
pub(crate) async fn read_head<T>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    take: impl FnOnce(&httparse::Response<'_, '_>, StatusCode, &[u8], usize) -> Result<T, ExchangeError>,
) -> Result<T, ExchangeError> {
    let mut received = false;
    loop {
        // What is there first: after an interim answer, the final head may be in already.
        loop {
            let mut headers =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut response,
                buf,
                &mut headers,
            );
            let length = match parsed {
                Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => break,
                Ok(_) => return Err(ExchangeError::Malformed("response head too large")),
                Err(_) => return Err(ExchangeError::Malformed("not an HTTP/1 response")),
            };
            let status = response
                .code
                .and_then(|code| StatusCode::from_u16(code).ok())
                .ok_or(ExchangeError::Malformed("bad status code"))?;
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(ExchangeError::Malformed(
                    "101 to a request that asked no upgrade",
                ));
            }
            if status.is_informational() {
                buf.advance(length);
                continue;
            }
            return take(&response, status, buf, length);
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(FIRST_READ);
        }
        let cut = |e: io::Error| {
            if received {
                ExchangeError::CutShort(e)
            } else {
                ExchangeError::NoAnswer(e)
            }
        };
        match stream.read_buf(buf).await {
            Ok(0) => return Err(cut(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => received = true,
            Err(e) => return Err(cut(e)),
        }
    }
}

/// How a response's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: an answer to a HEAD, a 204 or a 304.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the node closes the connection.
    UntilClose,
}

/// Where one header line's name and value lie in a head.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

/// A parsed response head: status, framing, keep-alive, and where the end-to-end headers lie
/// in the head's bytes (hop-by-hop ones left out).
#[derive(Debug)]
pub(crate) struct Head {
    status: StatusCode,
    version: Version,
    fields: Vec<Field>,
    content_length: Option<u64>,
    has_date: bool,
    pub(crate) framing: Framing,
    /// Whether the connection can carry another request after this body.
    pub(crate) keep_alive: bool,
}

/// Whether `name` is hop-by-hop by itself (RFC 9110 7.6.1).
fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop.as_str().as_bytes()))
}

/// The head of a response to a request (a HEAD if `to_head`), from httparse's parse of
/// `raw` (the buffer it parsed) and the status [`read_head`] read: headers, framing and
/// keep-alive. Header names are compared as bytes, not made into `HeaderName`s: the head
/// goes to the client as the node wrote it, less its hop-by-hop headers.
pub(crate) fn parse_head(
    response: &httparse::Response<'_, '_>,
    status: StatusCode,
    raw: &[u8],
    to_head: bool,
) -> Result<Head, ExchangeError> {
    let malformed = ExchangeError::Malformed;
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut fields = Vec::with_capacity(response.headers.len());
    let (mut length, mut chunked, mut close, mut keep_alive) = (None, false, false, false);
    // Header names the Connection header lists besides keep-alive and close: hop-by-hop too.
    let mut listed: Vec<&[u8]> = Vec::new();
    let base = raw.as_ptr() as usize;
    // Heads are at most MAX_HEAD_BYTES: offsets fit in u32.
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        (start, start + s.len() as u32)
    };
    for field in response.headers.iter() {
        let (name, value) = (field.name.as_bytes(), field.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = parse_length(value).ok_or(malformed("bad content-length"))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(malformed("content-length values disagree"));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(malformed("transfer-encoding other than chunked"));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in list_tokens(value) {
                if token.eq_ignore_ascii_case(b"keep-alive") {
                    // A field of that name is hop-by-hop anyway.
                    keep_alive = true;
                } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"content-length") {
                    // Every other option names a field to drop, close too (RFC 9110 7.6.1);
                    // Content-Length frames the body the client gets: never dropped.
                    close |= token.eq_ignore_ascii_case(b"close");
                    listed.push(token);
                }
            }
        }
        // Hop-by-hop headers stop here: the router's client connection has its own.
        if !is_hop_by_hop(name) {
            fields.push(Field {
                name: span(name),
                value: span(value),
            });
        }
    }
    let name_of = |field: &Field| &raw[field.name.0 as usize..field.name.1 as usize];
    if !listed.is_empty() {
        fields.retain(|field| {
            !listed
                .iter()
                .any(|listed| listed.eq_ignore_ascii_case(name_of(field)))
        });
    }
    let has_date = fields
        .iter()
        .any(|field| name_of(field).eq_ignore_ascii_case(b"date"));
    if chunked && length.is_some() {
        // A request smuggling classic: which one frames the body is anyone's guess.
        return Err(malformed("both content-length and transfer-encoding"));
    }
    let framing =
        if to_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::None
        } else if chunked {
            Framing::Chunked
        } else if let Some(length) = length {
            Framing::Length(length)
        } else {
            Framing::UntilClose
        };
    let keep_alive = framing != Framing::UntilClose
        && match version {
            Version::HTTP_11 => !close,
            _ => keep_alive && !close,
        };
    Ok(Head {
        status,
        version,
        fields,
        content_length: length,
        has_date,
        framing,
        keep_alive,
    })
}

/// The tokens of a comma-separated header value such as Connection's, trimmed.
pub(crate) fn list_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Appends one header line, `name: value` and CRLF, to a head being written.
pub(crate) fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A Content-Length value: digits only, at most 18 of them (no overflow, no sign, no list).
pub(crate) fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// A node's response: its head as the node sent it, hop-by-hop headers left out, and its
/// body. The head goes to an HTTP/1 client as bytes ([`NodeResponse::write_fields`]); a
/// header map is made only for an h2c client.
#[derive(Debug)]
pub struct NodeResponse {
    head: Head,
    /// The head's bytes, which `head`'s fields point into.
    raw: Bytes,
    body: UpstreamBody,
}

impl NodeResponse {
    pub(crate) fn new(head: Head, raw: Bytes, body: UpstreamBody) -> NodeResponse {
        NodeResponse { head, raw, body }
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The node's Content-Length, if it sent one.
    pub(crate) fn content_length(&self) -> Option<u64> {
        self.head.content_length
    }

    /// Whether the node sent a Date header.
    pub(crate) fn has_date(&self) -> bool {
        self.head.has_date
    }

    /// Appends the end-to-end header lines, `name: value` and CRLF each; names as the node
    /// wrote them (HTTP/1 names are case-insensitive).
    pub(crate) fn write_fields(&self, out: &mut Vec<u8>) {
        for field in &self.head.fields {
            push_field(
                out,
                &self.raw[field.name.0 as usize..field.name.1 as usize],
                &self.raw[field.value.0 as usize..field.value.1 as usize],
            );
        }
    }

    /// The response with a header map (values are slices of the head, not copies).
    pub(crate) fn into_response(self) -> Response<UpstreamBody> {
        let mut headers = HeaderMap::with_capacity(self.head.fields.len());
        for field in &self.head.fields {
            let name = &self.raw[field.name.0 as usize..field.name.1 as usize];
            let value = self
                .raw
                .slice(field.value.0 as usize..field.value.1 as usize);
            // httparse checked both as `http` does: names are tokens, values have no control
            // bytes but tab (`control_bytes_in_values_are_refused`).
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_maybe_shared(value),
            ) {
                headers.append(name, value);
            }
        }
        let mut response = Response::new(self.body);
        *response.status_mut() = self.head.status;
        *response.version_mut() = self.head.version;
        *response.headers_mut() = headers;
        response
    }

    pub(crate) fn into_body(self) -> UpstreamBody {
        self.body
    }
}

/// A chunked body's decoder: takes framing off what is in a buffer, hands out the data.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl Chunked {
    pub(crate) fn new() -> Chunked {
        Chunked {
            state: ChunkState::Size,
            trailer_bytes: 0,
        }
    }

    /// Whether the last chunk and the trailers have been read.
    pub(crate) fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// The next piece of data in `buf`, taking the framing before it off; None when `buf`
    /// holds no more data (more is needed, or the body is [`Chunked::done`]).
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ExchangeError> {
        let malformed = ExchangeError::Malformed;
        loop {
            match self.state {
                // httparse reads an empty size line as a last chunk: not here.
                ChunkState::Size if buf.first() == Some(&b'\r') => {
                    return Err(malformed("bad chunk size line"))
                }
                ChunkState::Size => match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buf.advance(used);
                        self.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buf.len() <= MAX_CHUNK_LINE => {
                        return Ok(None)
                    }
                    _ => return Err(malformed("bad chunk size line")),
                },
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                        if self.trailer_bytes + buf.len() > MAX_TRAILER_BYTES {
                            return Err(malformed("trailers too large"));
                        }
                        return Ok(None);
                    };
                    self.trailer_bytes += end + 2;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(malformed("trailers too large"));
                    }
                    buf.advance(end + 2);
                    if end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(None),
            }
        }
    }
}

/// A node's response body: whole (it came with the head), or streamed by a reader task.
#[derive(Debug)]
pub struct UpstreamBody {
    kind: BodyKind,
}

#[derive(Debug)]
enum BodyKind {
    Whole(Option<Bytes>),
    /// Not read yet: an HTTP/1 client's side passes it on itself (`relay.rs`); polled as a
    /// body, a reader task streams it.
    Waiting(Option<Box<Rest>>),
    Streamed {
        chunks: mpsc::Receiver<Bytes>,
        /// Set by the reader once it has handed on the whole body: a channel that closes
        /// without it was cut short (the node failed, or the client's side took nothing for
        /// `send_timeout`), which the client must see as an error, never as a clean end.
        whole: Arc<AtomicBool>,
        hint: SizeHint,
    },
}

impl UpstreamBody {
    pub(crate) fn whole(bytes: Bytes) -> UpstreamBody {
        UpstreamBody {
            kind: BodyKind::Whole((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// Takes the body still on the node's connection, for its bytes to be passed on as they
    /// are; None if it is not such a body, or was already polled.
    pub(crate) fn take_rest(&mut self) -> Option<Box<Rest>> {
        match &mut self.kind {
            BodyKind::Waiting(rest) => rest.take(),
            _ => None,
        }
    }
}

/// How a node's body is read: the same for every body of a router.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyRules {
    /// `upstream_buffer_bytes`: the most read, or spliced, at once.
    pub(crate) chunk: usize,
    /// Who passes a Content-Length body on to an HTTP/1 client.
    pub(crate) relay: Relay,
    /// `upstream_timeout`: the longest a node may leave a body waiting for its next bytes.
    /// Without it a node that stops mid-body would hold its client, and the router's side
    /// of both connections, for as long as the node's host keeps the connection open.
    pub(crate) idle: Duration,
    /// `send_timeout`: the longest the client's side may take none of a body's pieces, after
    /// which the body is dropped and the node's connection closed. The client's own writes
    /// have this limit too (`downstream.rs`); this one also holds for h2c clients, whose
    /// connections hyper serves without one.
    pub(crate) client_idle: Duration,
}

/// Who passes a node's Content-Length body on to an HTTP/1 client (chunked bodies, and
/// every body to an h2c client, always go through a reader task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relay {
    /// A reader task of its own, reading one piece ahead of the client's side (the default).
    Reader,
    /// The client connection's task, reading each piece and writing it at once
    /// (`direct_bodies on`).
    Copy,
    /// The client connection's task, by splice(2) (`splice_bodies on`); copied as `Copy`
    /// when no pipe can be had.
    Splice,
}

impl Relay {
    pub(crate) fn from_options(splice_bodies: bool, direct_bodies: bool) -> Relay {
        match (splice_bodies, direct_bodies) {
            (true, _) => Relay::Splice,
            (false, true) => Relay::Copy,
            (false, false) => Relay::Reader,
        }
    }
}

/// The error of a body whose node went silent for longer than [`BodyRules::idle`].
pub(crate) fn silent_node() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "node silent mid-body")
}

/// A Content-Length body not read yet: its start is in the connection's buffer, the rest
/// still on the connection.
#[derive(Debug)]
pub(crate) struct Rest {
    node: Arc<Node>,
    pub(crate) connection: Connection,
    /// The whole body's length, the buffered start included.
    length: u64,
    keep_alive: bool,
    pub(crate) rules: BodyRules,
}

impl Rest {
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// What follows the buffered start.
    pub(crate) fn unread(&self) -> u64 {
        self.length - self.connection.buf.len() as u64
    }

    /// After its bytes were all passed on: the connection goes back to the node's pool.
    pub(crate) fn finished(self) {
        let Rest {
            node,
            mut connection,
            keep_alive,
            ..
        } = self;
        if keep_alive {
            connection.buf.clear();
            node.pool.keep(connection, Instant::now());
        }
    }

    /// Streams it by a reader task, as any other body that did not come whole.
    fn stream(self) -> BodyKind {
        let Rest {
            node,
            connection,
            length,
            keep_alive,
            rules,
        } = self;
        spawn_reader(node, connection, Framing::Length(length), keep_alive, rules)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let kind = &mut self.get_mut().kind;
        if let BodyKind::Waiting(rest) = kind {
            *kind = match rest.take() {
                Some(rest) => (*rest).stream(),
                None => BodyKind::Whole(None),
            };
        }
        match kind {
            BodyKind::Waiting(_) => Poll::Ready(None),
            BodyKind::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            BodyKind::Streamed { chunks, whole, .. } => match chunks.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Poll::Ready(None) if whole.load(Ordering::Acquire) => Poll::Ready(None),
                Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::other(
                    "the node's body was cut short (the router's log says why)",
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, BodyKind::Whole(None) | BodyKind::Waiting(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            BodyKind::Waiting(rest) => SizeHint::with_exact(rest.as_ref().map_or(0, |r| r.length)),
            BodyKind::Streamed { hint, .. } => *hint,
        }
    }
}

/// The body after a head, whose rest is in the connection's buffer: whole if it is all
/// there (the connection then goes back to `node`'s pool at once); else, framed by
/// Content-Length and relayed by the client's side, left on the connection until that side
/// takes it or polls it; else streamed by a task that reads it, a piece of up to `rules.chunk`
/// bytes at a time, and gives the connection back at its end when it can be reused.
pub(crate) fn body(
    node: &Arc<Node>,
    mut connection: Connection,
    framing: Framing,
    keep_alive: bool,
    rules: BodyRules,
) -> UpstreamBody {
    let buffered = connection.buf.len() as u64;
    match framing {
        Framing::None => {
            if keep_alive && buffered == 0 {
                node.pool.keep(connection, Instant::now());
            }
            UpstreamBody::whole(Bytes::new())
        }
        Framing::Length(length) if buffered >= length => {
            let whole = connection.buf.split_to(length as usize).freeze();
            // Bytes after the body answer nothing we asked: such a connection is not reused.
            if keep_alive && connection.buf.is_empty() {
                node.pool.keep(connection, Instant::now());
            }
            UpstreamBody::whole(whole)
        }
        Framing::Length(length) if rules.relay != Relay::Reader => UpstreamBody {
            kind: BodyKind::Waiting(Some(Box::new(Rest {
                node: node.clone(),
                connection,
                length,
                keep_alive,
                rules,
            }))),
        },
        _ => UpstreamBody {
            kind: spawn_reader(node.clone(), connection, framing, keep_alive, rules),
        },
    }
}

/// A task that reads the body off `connection`, and the kind of body that streams it.
fn spawn_reader(
    node: Arc<Node>,
    connection: Connection,
    framing: Framing,
    keep_alive: bool,
    rules: BodyRules,
) -> BodyKind {
    let hint = match framing {
        Framing::Length(length) => SizeHint::with_exact(length),
        _ => SizeHint::default(),
    };
    // The reader reads the next piece while the client's side writes the one before, as
    // hyper's connection task did (without that read-ahead the fifth session measured a
    // loss at 256 KiB); one piece at most waits in between.
    let (tx, chunks) = mpsc::channel(1);
    let whole = Arc::new(AtomicBool::new(false));
    let reader = Reader {
        node,
        connection,
        chunk: rules.chunk,
        next_read: FIRST_READ.min(rules.chunk),
        idle: rules.idle,
        client_idle: rules.client_idle,
        tx,
        whole: whole.clone(),
    };
    tokio::spawn(reader.run(framing, keep_alive));
    BodyKind::Streamed {
        chunks,
        whole,
        hint,
    }
}

/// Reads one streamed body off a node's connection.
struct Reader {
    node: Arc<Node>,
    connection: Connection,
    /// The most one read may take (`upstream_buffer_bytes`), and what the next one asks.
    chunk: usize,
    next_read: usize,
    /// The longest the node may be silent (`BodyRules::idle`).
    idle: Duration,
    /// The longest the client's side may take nothing (`BodyRules::client_idle`).
    client_idle: Duration,
    tx: mpsc::Sender<Bytes>,
    whole: Arc<AtomicBool>,
}

/// How a body's reading ended, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Every byte was handed on.
    Whole,
    /// The client's side went away first: nobody is waiting for the rest.
    ClientGone,
}

/// Why a body's reading failed.
#[derive(Debug)]
enum Cut {
    /// The node failed, closed early or went silent.
    Node(io::Error),
    /// The client's side took nothing for `send_timeout`.
    Client,
}

impl From<io::Error> for Cut {
    fn from(error: io::Error) -> Cut {
        Cut::Node(error)
    }
}

impl Reader {
    async fn run(mut self, framing: Framing, keep_alive: bool) {
        let finished = match framing {
            Framing::Length(length) => self.length(length).await,
            Framing::Chunked => self.chunked().await,
            Framing::UntilClose | Framing::None => self.until_close().await,
        };
        // On any cut the client's side sees an error (`whole` is not set) and the node's
        // connection is closed.
        match finished {
            Ok(End::Whole) => {
                self.whole.store(true, Ordering::Release);
                let reusable = framing != Framing::UntilClose && self.connection.buf.is_empty();
                if keep_alive && reusable {
                    self.node.pool.keep(self.connection, Instant::now());
                }
            }
            Ok(End::ClientGone) => {}
            Err(Cut::Node(error)) if !self.tx.is_closed() => {
                tracing::warn!(node = %self.node.addr.url, %error, "node's body cut short");
            }
            Err(Cut::Node(_)) => {}
            Err(Cut::Client) => {
                tracing::debug!(node = %self.node.addr.url, "client took nothing for send_timeout: body dropped");
            }
        }
    }

    /// Reads more into the buffer, up to `want` bytes (at least one), once the client's side
    /// has taken the piece before: Some(false) at the end of the stream, None if the client's
    /// side has gone. Reading only then, while
    /// the client's side writes that piece, finds more in the socket than reading at once
    /// would: at 256 KiB, reading at once made 5.5 reads per response instead of 4.1, and
    /// cost the router and the nodes more per request (seventh session).
    async fn fill(&mut self, want: usize) -> Result<Option<bool>, Cut> {
        match tokio::time::timeout(self.client_idle, self.tx.reserve()).await {
            Ok(Ok(_permit)) => {}
            Ok(Err(_)) => return Ok(None),
            Err(_) => return Err(Cut::Client),
        }
        let room = want.clamp(1, self.next_read);
        if self.connection.buf.capacity() - self.connection.buf.len() < room {
            self.connection.buf.reserve(room);
        }
        let read = self.connection.stream.read_buf(&mut self.connection.buf);
        let read = tokio::time::timeout(self.idle, read)
            .await
            .map_err(|_| silent_node())??;
        self.next_read = next_read_size(self.next_read, read, room, self.chunk);
        Ok(Some(read > 0))
    }

    /// Hands a piece of the body to the client's side; false if it has gone.
    async fn hand(&self, bytes: Bytes) -> Result<bool, Cut> {
        match tokio::time::timeout(self.client_idle, self.tx.send(bytes)).await {
            Ok(sent) => Ok(sent.is_ok()),
            Err(_) => Err(Cut::Client),
        }
    }

    async fn length(&mut self, mut left: u64) -> Result<End, Cut> {
        loop {
            if !self.connection.buf.is_empty() {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.connection.buf.len());
                left -= take as u64;
                let piece = self.connection.buf.split_to(take).freeze();
                if !self.hand(piece).await? {
                    return Ok(End::ClientGone);
                }
            }
            if left == 0 {
                return Ok(End::Whole);
            }
            match self
                .fill(usize::try_from(left).unwrap_or(usize::MAX))
                .await?
            {
                Some(true) => {}
                Some(false) => return Err(cut_short().into()),
                None => return Ok(End::ClientGone),
            }
        }
    }

    async fn chunked(&mut self) -> Result<End, Cut> {
        let mut decoder = Chunked::new();
        loop {
            while let Some(data) = decoder
                .decode(&mut self.connection.buf)
                .map_err(io::Error::other)?
            {
                if !self.hand(data).await? {
                    return Ok(End::ClientGone);
                }
            }
            if decoder.done() {
                return Ok(End::Whole);
            }
            match self.fill(self.chunk).await? {
                Some(true) => {}
                Some(false) => return Err(cut_short().into()),
                None => return Ok(End::ClientGone),
            }
        }
    }

    /// A body framed by the node closing the connection: its end is the whole body.
    async fn until_close(&mut self) -> Result<End, Cut> {
        loop {
            if !self.connection.buf.is_empty() {
                let piece = self.connection.buf.split().freeze();
                if !self.hand(piece).await? {
                    return Ok(End::ClientGone);
                }
            }
            match self.fill(self.chunk).await? {
                Some(true) => {}
                Some(false) => return Ok(End::Whole),
                None => return Ok(End::ClientGone),
            }
        }
    }
}

/// The size of a body's next read, after one of `read` bytes into `room` when `next` was
/// asked, as hyper's adaptive reads: doubled (up to `most`, `upstream_buffer_bytes`) while
/// reads fill their room, halved (down to [`FIRST_READ`]) when one leaves most of it empty.
/// Always asking for the most made every read a fresh allocation of `upstream_buffer_bytes`,
/// at the allocator's mmap threshold: page faults and unmapping were a tenth of the router's
/// CPU at 256 KiB (perf, seventh session).
fn next_read_size(next: usize, read: usize, room: usize, most: usize) -> usize {
    if read >= room {
        (next * 2).min(most)
    } else if read < next / 4 {
        (next / 2).max(FIRST_READ)
    } else {
        next
    }
}

/// The error of a node that closed its connection in the middle of a body.
pub(crate) fn cut_short() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "node closed mid-body")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `parse_head` on a whole head.
    fn head(raw: &[u8], to_head: bool) -> Result<Head, ExchangeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        assert!(response.parse(raw).unwrap().is_complete());
        let status = StatusCode::from_u16(response.code.unwrap()).unwrap();
        parse_head(&response, status, raw, to_head)
    }

    /// The node response of a whole head, with no body.
    fn node_response(raw: &Bytes) -> NodeResponse {
        NodeResponse::new(
            head(raw, false).unwrap(),
            raw.clone(),
            UpstreamBody::whole(Bytes::new()),
        )
    }

    #[test]
    fn framing_and_keep_alive_follow_rfc_9112() {
        for (raw, to_head, framing, keep_alive) in [
            (&b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"[..], false, Framing::Length(12), true),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\ncontent-length: 12\r\n\r\n", false, Framing::Length(12), true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", true, Framing::None, true),
            (b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n", false, Framing::None, true),
            (b"HTTP/1.1 304 Not Modified\r\n\r\n", false, Framing::None, true),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", false, Framing::Chunked, true),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, Framing::UntilClose, false),
            (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nConnection: keep-alive, Close\r\n\r\n", false, Framing::Length(0), false),
            (b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false, Framing::Length(1), false),
            (b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\nconnection: Keep-Alive\r\n\r\n", false, Framing::Length(1), true),
            // 18 digits, the most taken (19 could overflow): refused in `ambiguous_framing_is_refused`.
            (b"HTTP/1.1 200 OK\r\ncontent-length: 999999999999999999\r\n\r\n", false, Framing::Length(999_999_999_999_999_999), true),
        ] {
            let parsed = head(raw, to_head).unwrap();
            let label = String::from_utf8_lossy(raw);
            assert_eq!(parsed.framing, framing, "{label}");
            assert_eq!(parsed.keep_alive, keep_alive, "{label}");
        }
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1234567890123456789\r\n\r\n",
        ] {
            assert!(
                head(raw, false).is_err(),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn hop_by_hop_headers_are_left_out() {
        let raw = Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\n\
              Keep-Alive: timeout=5\r\nProxy-Connection: x\r\nTE: x\r\nTrailer: x\r\n\
              Upgrade: x\r\nETag: \"e\"\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let response = node_response(&raw);
        let mut written = Vec::new();
        response.write_fields(&mut written);
        assert_eq!(written, b"ETag: \"e\"\r\n");
        let response = response.into_response();
        let names: Vec<_> = response.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["etag"]);
        // A Connection header cannot take away the framing the client needs; a Date it lists
        // is gone, and the router adds its own.
        let raw = Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 2\r\nConnection: content-length, date\r\n\r\n",
        );
        let response = node_response(&raw);
        let mut written = Vec::new();
        response.write_fields(&mut written);
        assert_eq!(written, b"Content-Length: 2\r\n");
        assert!(!response.has_date());
        // Content-Length is end-to-end.
        let raw = Bytes::from_static(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        let response = node_response(&raw);
        assert_eq!(response.content_length(), Some(2));
        assert_eq!(response.into_response().headers()["content-length"], "2");
        // Every option names a field to drop, close too (RFC 9110 7.6.1); the connection
        // still closes.
        let raw = Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nClose: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(!head(&raw, false).unwrap().keep_alive);
        let response = node_response(&raw);
        let mut written = Vec::new();
        response.write_fields(&mut written);
        assert_eq!(written, b"Content-Length: 0\r\n");
    }

    /// The head goes to clients as the node wrote it: it must not carry a CR, LF or other
    /// control byte in a value, which httparse refuses (as `http`'s HeaderValue would).
    #[test]
    fn control_bytes_in_values_are_refused() {
        // Long values too: httparse checks those with SIMD.
        for (byte, before) in [0u8, 1, b'\r', 0x1f, 0x7f]
            .into_iter()
            .flat_map(|b| [(b, 1), (b, 40)])
        {
            let value = ["a".repeat(before).as_bytes(), &[byte], b"b"].concat();
            let raw = [&b"HTTP/1.1 200 OK\r\nX-A: "[..], &value, b"\r\n\r\n"].concat();
            let mut headers = [httparse::EMPTY_HEADER; 4];
            let parsed = httparse::Response::new(&mut headers).parse(&raw);
            assert!(parsed.is_err(), "{byte:#x} after {before}: {parsed:?}");
        }
        let raw = b"HTTP/1.1 200 OK\r\nX-A: a\tb\x80\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 4];
        assert!(httparse::Response::new(&mut headers).parse(raw).is_ok());
    }

    #[test]
    fn header_values_are_slices_of_the_head() {
        let raw = Bytes::from_static(b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nX-A: 1\r\nX-A: 2\r\n\r\n");
        let response = node_response(&raw).into_response();
        assert_eq!(response.headers()["etag"], "\"e\"");
        let all: Vec<_> = response.headers().get_all("x-a").iter().collect();
        assert_eq!(all, ["1", "2"]);
    }

    /// Decodes `wire` fed in pieces of the given sizes; the decoded data, whether the body
    /// ended, and what was left after it.
    fn decode_in_pieces(
        wire: &[u8],
        pieces: &[usize],
    ) -> Result<(Vec<u8>, bool, Vec<u8>), ExchangeError> {
        let (mut decoder, mut buf, mut out) = (Chunked::new(), BytesMut::new(), Vec::new());
        let (mut fed, mut sizes) = (0, pieces.iter().cycle());
        loop {
            while let Some(data) = decoder.decode(&mut buf)? {
                out.extend_from_slice(&data);
            }
            if decoder.done() || fed == wire.len() {
                return Ok((out, decoder.done(), buf.to_vec()));
            }
            let n = (*sizes.next().unwrap()).clamp(1, wire.len() - fed);
            buf.extend_from_slice(&wire[fed..fed + n]);
            fed += n;
        }
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for wire in [
            &b"5\r\nhelloXX0\r\n\r\n"[..],
            b"\r\n",
            b"zz\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            assert!(
                decode_in_pieces(wire, &[1]).is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        let endless_trailer = [&b"0\r\nx: "[..], &vec![b'a'; MAX_TRAILER_BYTES]].concat();
        assert!(decode_in_pieces(&endless_trailer, &[4096]).is_err());
        let endless_size_line = [&b"1;"[..], &vec![b'a'; MAX_CHUNK_LINE]].concat();
        assert!(decode_in_pieces(&endless_size_line, &[1000]).is_err());
    }

    /// Reads grow while they fill their room, up to `upstream_buffer_bytes`, and shrink when
    /// they leave most of it empty, never under the first read's 8 KiB.
    #[test]
    fn reads_grow_and_shrink_with_what_comes() {
        let most = 256 * 1024;
        for (next, read, room, size) in [
            (8192, 8192, 8192, 16_384),
            (131_072, 131_072, 131_072, most),
            (most, most, most, most),
            // The last piece of a body: it fills the little room left.
            (65_536, 1000, 1000, 131_072),
            (65_536, 16_384, 65_536, 65_536),
            (65_536, 16_383, 65_536, 32_768),
            (16_384, 100, 16_384, 8192),
            (8192, 100, 8192, 8192),
        ] {
            let label = format!("{next} asked, {read} read into {room}");
            assert_eq!(next_read_size(next, read, room, most), size, "{label}");
        }
    }

    /// The limits in bytes, as documented: a chunk-size line of up to 4 KiB (extensions
    /// included) and trailers of up to 16 KiB are read, in whatever pieces they come; longer
    /// ones are refused.
    #[test]
    fn chunk_lines_and_trailers_are_taken_up_to_their_limits() {
        let chunk_line = |extension: usize| {
            format!("3;{}\r\nabc\r\n0\r\n\r\n", "e".repeat(extension)).into_bytes()
        };
        let (body, done, _) = decode_in_pieces(&chunk_line(4000), &[1000]).unwrap();
        assert_eq!((&body[..], done), (&b"abc"[..], true));
        assert!(decode_in_pieces(&chunk_line(4200), &[4200]).is_err());
        let trailer = |value: usize| {
            format!("3\r\nabc\r\n0\r\nx-t: {}\r\n\r\n", "t".repeat(value)).into_bytes()
        };
        let (body, done, _) = decode_in_pieces(&trailer(16_000), &[1000]).unwrap();
        assert_eq!((&body[..], done), (&b"abc"[..], true));
        assert!(decode_in_pieces(&trailer(16_500), &[1000]).is_err());
        // The limit is on all the trailer lines together.
        let trailers = |lines: usize| {
            let line = format!("x-t: {}\r\n", "t".repeat(53));
            format!("3\r\nabc\r\n0\r\n{}\r\n", line.repeat(lines)).into_bytes()
        };
        let (body, done, _) = decode_in_pieces(&trailers(250), &[1000]).unwrap();
        assert_eq!((&body[..], done), (&b"abc"[..], true));
        assert!(decode_in_pieces(&trailers(300), &[1000]).is_err());
        // Exactly 16 KiB, the empty line's CRLF included, is still taken.
        let line = |bytes: usize| format!("x-t: {}\r\n", "t".repeat(bytes - 7));
        let exact = format!("0\r\n{}{}\r\n", line(64).repeat(255), line(62));
        let (_, done, _) = decode_in_pieces(exact.as_bytes(), &[1000]).unwrap();
        assert!(done);
    }

    proptest! {
        /// Any body, in any chunks (with extensions and trailers), read in any pieces,
        /// comes out whole, and what follows the body is left in the buffer.
        #[test]
        fn chunked_bodies_decode_whole(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(1usize..700, 1..8),
            pieces in proptest::collection::vec(1usize..300, 1..8),
            extension in any::<bool>(),
            trailer in any::<bool>(),
        ) {
            let mut wire = Vec::new();
            let (mut at, mut cut) = (0, cuts.iter().cycle());
            while at < body.len() {
                let n = (*cut.next().unwrap()).min(body.len() - at);
                wire.extend_from_slice(format!("{n:X}").as_bytes());
                if extension {
                    wire.extend_from_slice(b";name=\"v\"");
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(&body[at..at + n]);
                wire.extend_from_slice(b"\r\n");
                at += n;
            }
            wire.extend_from_slice(b"0\r\n");
            if trailer {
                wire.extend_from_slice(b"x-checksum: 1\r\n");
            }
            wire.extend_from_slice(b"\r\nHTTP/1.1 next");
            let (decoded, done, left) = decode_in_pieces(&wire, &pieces).unwrap();
            prop_assert_eq!(decoded, body);
            prop_assert!(done);
            prop_assert!(b"HTTP/1.1 next".starts_with(&left));
        }

        /// Arbitrary bytes never panic the decoder nor make it hand out more than it got.
        #[test]
        fn arbitrary_bytes_are_decoded_or_refused(
            wire in proptest::collection::vec(any::<u8>(), 0..600),
            pieces in proptest::collection::vec(1usize..64, 1..4),
        ) {
            if let Ok((decoded, _, _)) = decode_in_pieces(&wire, &pieces) {
                prop_assert!(decoded.len() <= wire.len());
            }
        }
    }
}
