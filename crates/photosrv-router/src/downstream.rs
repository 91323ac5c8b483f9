//! HTTP/1 with clients: the router's own server side of a client connection.
//!
//! Until the eighth session hyper's server served these connections. After the node side
//! became the router's own (`h1.rs`), hyper's server was most of the user-space work left
//! per proxied 4 KiB GET: its connection state machine, request parsing into a header map,
//! and the response head written from one (callgrind, docs/benchmarks-history.md). The
//! router only serves GET and HEAD without a body, so its server side is small: read a head,
//! parse it with httparse (hyper's own parser), answer, write the answer's head and stream
//! its body, and keep the connection for the next request when both sides allow it.
//!
//! The rules are hyper's where it had them, and strict: a head over `max_header_bytes` gets
//! 431, a head httparse refuses gets 400, and both close the connection; a client that sends
//! no complete head within `header_read_timeout` (idle time between requests included) is
//! disconnected. A request with a body (any Transfer-Encoding, or a Content-Length other
//! than 0) is answered by the router (400 or 405) and the connection closed after it, so no
//! body bytes are ever read as a request. Before such a close, what the client still sends
//! is read and dropped for a while ([`LINGER`]). A connection that opens with the HTTP/2 preface
//! (h2c, prior knowledge) is handed to hyper with the bytes read so far.
//!
//! A client that takes no bytes of an answer for `send_timeout` is disconnected. With
//! `direct_bodies on` or `splice_bodies on`, a node's Content-Length body is passed on by the
//! client connection's task itself, copied or by splice(2) (`relay.rs`).

use crate::forward::ProxyBody;
use crate::h1::{list_tokens, parse_length, push_field, Relay};
use crate::relay::{self, Broken, Pipe};
use crate::router::Reply;
use crate::Router;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt as _, Either};
use hyper_util::rt::TokioIo;
use photosrv_http::{Closing, ServeSettings};
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What an h2c client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most header lines a request may have (hyper's limit too); more gets 431.
const MAX_HEADERS: usize = 100;

/// The read buffer's size to start with, and the least room a read is given.
const READ_ROOM: usize = 4 * 1024;

/// After answering a request whose body was not read: how long, and how much, the router
/// goes on reading (and dropping) before closing, so that the kernel does not answer unread
/// bytes with a reset that could destroy the answer before the client has read it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// A request head as read: the request for the router, and how the connection goes on.
pub(crate) struct RequestHead {
    request: Request<()>,
    /// Whether the client allows another request on this connection after this one.
    keep_alive: bool,
    /// Whether body bytes follow the head (they are never read as a request).
    has_body: bool,
}

impl RequestHead {
    /// The request, its body aside.
    pub(crate) fn request(&self) -> &Request<()> {
        &self.request
    }
}

/// Why a request head was refused: the status to answer with before closing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) StatusCode);

/// Serves one client connection until it closes, the client or the router ends it, or
/// `closing` and no request is in flight.
pub(crate) async fn serve_connection(
    router: Router,
    mut stream: TcpStream,
    remote: SocketAddr,
    settings: &ServeSettings,
    closing: Closing,
) {
    let mut buf = BytesMut::with_capacity(READ_ROOM);
    let closed = closing.closing();
    tokio::pin!(closed);
    // One timer for the connection's life, not one per read: a timer set and cancelled for
    // every request cost 1.5k instructions of a 4 KiB GET's 25k (callgrind). It fires at a
    // deadline it may have been set for long ago, and is only then moved to the current one.
    let timeout = settings.header_read_timeout;
    let send_limit = router.options().send_timeout;
    let mut deadline = Instant::now() + timeout;
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    let mut first = true;
    loop {
        let head = loop {
            if first && !buf.is_empty() && H2_PREFACE.starts_with(&buf[..buf.len().min(24)]) {
                if buf.len() >= H2_PREFACE.len() {
                    let io = TokioIo::new(Rewound {
                        read: buf.freeze(),
                        stream,
                    });
                    let handler = move |request, remote| {
                        let router = router.clone();
                        async move { router.handle(request, remote).await.into_response() }
                    };
                    photosrv_http::serve_hyper(io, remote, settings, handler, closing.clone())
                        .await;
                    return;
                }
            } else if !buf.is_empty() {
                match parse_head(&mut buf, settings.max_header_bytes) {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(Refused(status)) => {
                        // What follows a refused head is unread: drained, as after a body.
                        if write_all(&mut stream, &mut [&refusal(status)], send_limit)
                            .await
                            .is_ok()
                        {
                            linger(&mut stream).await;
                        }
                        return;
                    }
                }
            }
            if buf.capacity() - buf.len() < READ_ROOM {
                buf.reserve(READ_ROOM);
            }
            tokio::select! {
                biased;
                read = stream.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                () = &mut timer => {
                    if Instant::now() >= deadline {
                        tracing::debug!(%remote, "no complete request head in time: closing");
                        return;
                    }
                    timer.as_mut().reset(deadline);
                }
                // Shutdown closes a connection between requests, not in the middle of one.
                () = &mut closed, if buf.is_empty() => return,
            }
        };
        first = false;
        let method = head.request.method().clone();
        let version = head.request.version();
        let response = router.handle(head.request, remote).await;
        let keep_alive = head.keep_alive && !head.has_body && !closing.is_closing();
        match respond(
            &mut stream,
            response,
            method == Method::HEAD,
            version,
            keep_alive,
            send_limit,
        )
        .await
        {
            // The next head, and the time it may take, start now.
            Ok(true) => deadline = Instant::now() + timeout,
            Ok(false) | Err(_) => {
                if head.has_body {
                    linger(&mut stream).await;
                }
                return;
            }
        }
    }
}

/// Parses the request head at the start of `buf` and takes it off: None when more bytes
/// are needed.
pub(crate) fn parse_head(
    buf: &mut BytesMut,
    max_head: usize,
) -> Result<Option<RequestHead>, Refused> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(length)) if length <= max_head => length,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Err(Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
        }
        Err(_) => return Err(Refused(StatusCode::BAD_REQUEST)),
    };
    let bad = Refused(StatusCode::BAD_REQUEST);
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes()).map_err(|_| bad)?;
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // Where the target and each header lie in the head, so that the head can be split off
    // the buffer and every value be a slice of it rather than a copy.
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let target = parsed.path.unwrap_or("").as_bytes();
    let target = (offset(target), offset(target) + target.len());
    let mut fields = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let count = parsed.headers.len();
    for (field, slot) in parsed.headers.iter().zip(&mut fields) {
        let (name, value) = (field.name.as_bytes(), field.value);
        // Heads are at most `max_header_bytes`, far below 4 GiB.
        let at = |s: &[u8]| offset(s) as u32;
        *slot = (
            at(name),
            at(name) + name.len() as u32,
            at(value),
            at(value) + value.len() as u32,
        );
    }
    let head = buf.split_to(length).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.1))
        .map_err(|_| Refused(StatusCode::BAD_REQUEST))?;
    let mut map = HeaderMap::with_capacity(count);
    let (mut close, mut keep_alive_token, mut has_body) = (false, false, false);
    let mut length = None;
    for &(name_start, name_end, value_start, value_end) in &fields[..count] {
        let bad = || Refused(StatusCode::BAD_REQUEST);
        let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize])
            .map_err(|_| bad())?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value_start as usize..value_end as usize))
                .map_err(|_| bad())?;
        if name == header::CONTENT_LENGTH {
            let parsed = parse_length(value.as_bytes()).ok_or_else(bad)?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(bad());
            }
            length = Some(parsed);
            has_body |= parsed > 0;
        } else if name == header::TRANSFER_ENCODING {
            // Whatever the coding, a body follows whose end only it would tell.
            has_body = true;
        } else if name == header::CONNECTION {
            for token in list_tokens(value.as_bytes()) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        map.append(name, value);
    }
    let keep_alive = match version {
        Version::HTTP_11 => !close,
        _ => keep_alive_token && !close,
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Ok(Some(RequestHead {
        request,
        keep_alive,
        has_body,
    }))
}

/// The whole answer to a head that was refused: the connection closes after it.
fn refusal(status: StatusCode) -> Vec<u8> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or("refused"));
    let mut out = Vec::with_capacity(256);
    status_line(&mut out, status);
    out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\ncontent-length: ");
    out.extend_from_slice(text.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\nconnection: close\r\n");
    date_line(&mut out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(text.as_bytes());
    out
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a Date header line; the text is made once a second per thread.
fn date_line(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            *text = httpdate::fmt_http_date(now);
        }
        push_field(out, b"date", text.as_bytes());
    });
}

/// How a response's body is framed on the client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body bytes: an answer to a HEAD, a 1xx, 204 or 304.
    None,
    /// Exactly this many bytes, as Content-Length says.
    Length(u64),
    /// Chunked transfer coding (HTTP/1.1 clients).
    Chunked,
    /// Until the router closes the connection (HTTP/1.0 clients).
    UntilClose,
}

/// Writes `reply` (to a HEAD if `to_head`) to a client speaking `version`; Ok(true) when
/// the connection can carry another request (`keep_alive`, and the body ended as framed).
async fn respond(
    stream: &mut TcpStream,
    reply: Reply,
    to_head: bool,
    version: Version,
    mut keep_alive: bool,
    send_limit: Duration,
) -> io::Result<bool> {
    let status = reply.status();
    let mut head = Vec::with_capacity(512);
    status_line(&mut head, status);
    reply.write_fields(&mut head);
    let declared = reply.content_length();
    let has_date = reply.has_date();
    let mut body = reply.into_body();
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match (declared, body.size_hint().exact()) {
        _ if to_head || bodiless => Framing::None,
        (Some(length), _) => Framing::Length(length),
        (None, Some(length)) => {
            push_field(&mut head, b"content-length", length.to_string().as_bytes());
            Framing::Length(length)
        }
        (None, None) if version == Version::HTTP_11 => {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
        (None, None) => Framing::UntilClose,
    };
    keep_alive &= framing != Framing::UntilClose;
    if !has_date {
        date_line(&mut head);
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    } else if version == Version::HTTP_10 {
        head.extend_from_slice(b"connection: keep-alive\r\n");
    }
    head.extend_from_slice(b"\r\n");
    if framing == Framing::None {
        write_all(stream, &mut [&head], send_limit).await?;
        return Ok(keep_alive);
    }
    // The client's Content-Length is the node's, which also frames what is relayed.
    if let Framing::Length(_) = framing {
        if let Some(relayed) = relay_body(stream, &head, &mut body, send_limit).await {
            return relayed.map(|()| keep_alive);
        }
    }
    let mut written = 0u64;
    let mut head = Some(head);
    loop {
        let data = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
            Some(Err(error)) => {
                // The node's body broke off: the client must see a cut, not a clean end.
                if let Some(head) = head.take() {
                    write_all(stream, &mut [&head], send_limit).await?;
                }
                return Err(io::Error::other(error));
            }
            None => break,
        };
        written += data.len() as u64;
        let pending = head.take().unwrap_or_default();
        match framing {
            Framing::Length(length) if written > length => {
                return Err(io::Error::other("body longer than its Content-Length"));
            }
            Framing::Chunked if data.is_empty() => {
                write_all(stream, &mut [&pending], send_limit).await?
            }
            Framing::Chunked => {
                let size = format!("{:x}\r\n", data.len());
                write_all(
                    stream,
                    &mut [&pending, size.as_bytes(), &data, b"\r\n"],
                    send_limit,
                )
                .await?;
            }
            _ => write_all(stream, &mut [&pending, &data], send_limit).await?,
        }
    }
    let pending = head.take().unwrap_or_default();
    match framing {
        Framing::Length(length) if written != length => {
            write_all(stream, &mut [&pending], send_limit).await?;
            Err(io::Error::other("body shorter than its Content-Length"))
        }
        Framing::Chunked => {
            write_all(stream, &mut [&pending, b"0\r\n\r\n"], send_limit).await?;
            Ok(keep_alive)
        }
        _ => {
            write_all(stream, &mut [&pending], send_limit).await?;
            Ok(keep_alive)
        }
    }
}

/// Writes `head` and passes a node's Content-Length body on from this task (`relay.rs`);
/// None, with nothing written, if `body` is not a body left for this task to relay.
async fn relay_body(
    stream: &mut TcpStream,
    head: &[u8],
    body: &mut ProxyBody,
    send_limit: Duration,
) -> Option<io::Result<()>> {
    let Either::Left(upstream) = body else {
        return None;
    };
    let mut rest = upstream.take_rest()?;
    let pipe = match rest.rules.relay {
        Relay::Splice => Pipe::take(rest.rules.chunk)
            .inspect_err(|error| tracing::debug!(%error, "no pipe to splice a body: copying it"))
            .ok(),
        Relay::Copy | Relay::Reader => None,
    };
    if let Err(error) = write_all(stream, &mut [head, &rest.connection.buf], send_limit).await {
        return Some(Err(error));
    }
    let (length, chunk, node_idle) = (rest.unread(), rest.rules.chunk, rest.rules.idle);
    let from = &mut rest.connection.stream;
    let relayed = match pipe {
        Some(pipe) => relay::splice(from, stream, pipe, length, node_idle, send_limit).await,
        None => relay::copy(from, stream, length, chunk, node_idle, send_limit).await,
    };
    match relayed {
        Ok(()) => {
            (*rest).finished();
            Some(Ok(()))
        }
        Err(Broken::Node(error)) => {
            tracing::warn!(node = %rest.node().addr.url, %error, "node's body cut short");
            Some(Err(error))
        }
        Err(Broken::Client(error)) => Some(Err(error)),
    }
}

/// The error of a client that took no bytes of an answer for `send_timeout`.
pub(crate) fn stalled_client() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "client took nothing for send_timeout",
    )
}

/// Writes every byte of `parts`, in order, with as few system calls as the socket allows,
/// waiting at most `send_limit` each time the client's socket has no room.
pub(crate) async fn write_all(
    stream: &mut TcpStream,
    parts: &mut [&[u8]],
    send_limit: Duration,
) -> io::Result<()> {
    let mut slices = [IoSlice::new(&[]); 4];
    let count = parts.len().min(slices.len());
    for (slice, part) in slices.iter_mut().zip(parts.iter()) {
        *slice = IoSlice::new(part);
    }
    let mut slices = &mut slices[..count];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let written = match stream.try_write_vectored(slices) {
            Ok(written) => written,
            // Only a client that is not taking bytes costs a timer.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(send_limit, stream.writable())
                    .await
                    .map_err(|_| stalled_client())??;
                continue;
            }
            Err(error) => return Err(error),
        };
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// Closes the sending side and reads (and drops) what the client still sends, for a while.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut sink = vec![0u8; 16 * 1024];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(read) => left = left.saturating_sub(read),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// A client connection whose first bytes were read already: they are read again first.
struct Rewound {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let take = self.read.len().min(out.remaining());
            out.put_slice(&self.read.split_to(take));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMIT: usize = 64 * 1024;

    /// A request as parsed: method, target, keep-alive, body.
    type Seen = (String, String, bool, bool);

    /// Feeds `wire` to `parse_head` in pieces of the given sizes, as reads would bring it;
    /// the requests parsed (method, target, keep-alive, body), then the refusal if any.
    fn parse_in_pieces(wire: &[u8], pieces: &[usize]) -> (Vec<Seen>, Option<StatusCode>) {
        let (mut buf, mut fed, mut sizes) = (BytesMut::new(), 0, pieces.iter().cycle());
        let mut parsed = Vec::new();
        loop {
            match parse_head(&mut buf, LIMIT) {
                Ok(Some(head)) => {
                    parsed.push((
                        head.request.method().to_string(),
                        head.request.uri().to_string(),
                        head.keep_alive,
                        head.has_body,
                    ));
                    continue;
                }
                Ok(None) if fed < wire.len() => {}
                Ok(None) => return (parsed, None),
                Err(Refused(status)) => return (parsed, Some(status)),
            }
            let n = (*sizes.next().unwrap()).min(wire.len() - fed);
            buf.extend_from_slice(&wire[fed..fed + n]);
            fed += n;
        }
    }

    #[test]
    fn heads_are_read_with_framing_and_keep_alive() {
        for (wire, keep_alive, has_body) in [
            (&b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..], true, false),
            (
                b"GET /a HTTP/1.1\r\nConnection: Close\r\n\r\n",
                false,
                false,
            ),
            (
                b"GET /a HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
                false,
                false,
            ),
            (b"GET /a HTTP/1.0\r\n\r\n", false, false),
            (
                b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
                true,
                false,
            ),
            (b"GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n", true, false),
            (b"GET /a HTTP/1.1\r\nContent-Length: 3\r\n\r\n", true, true),
            (
                b"GET /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                true,
                true,
            ),
        ] {
            let (parsed, refused) = parse_in_pieces(wire, &[wire.len()]);
            let label = String::from_utf8_lossy(wire);
            assert_eq!(refused, None, "{label}");
            assert_eq!(parsed.len(), 1, "{label}");
            assert_eq!(
                (parsed[0].2, parsed[0].3),
                (keep_alive, has_body),
                "{label}"
            );
        }
    }

    #[test]
    fn bad_heads_are_refused_with_400_or_431() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(LIMIT));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        for (wire, status) in [
            (
                &b"GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
                400,
            ),
            (b"GET /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", 400),
            (b"GET /a HTTP/2.0\r\n\r\n", 400),
            (b"GET /a b HTTP/1.1\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400),
            (b"\x16\x03\x01\x02\x00\x01\x00\x01", 400),
            (long.as_bytes(), 431),
            (many.as_bytes(), 431),
        ] {
            let (parsed, refused) = parse_in_pieces(wire, &[1000]);
            let label = String::from_utf8_lossy(&wire[..wire.len().min(60)]);
            assert!(parsed.is_empty(), "{label}");
            assert_eq!(refused.map(|s| s.as_u16()), Some(status), "{label}");
        }
    }

    /// The length check on an incomplete head is all that bounds a connection's buffer
    /// until the header timeout.
    #[test]
    fn a_head_that_never_ends_is_refused_once_it_is_too_long() {
        let endless = format!("GET /a HTTP/1.1\r\nX: {}", "a".repeat(2 * LIMIT));
        let (parsed, refused) = parse_in_pieces(endless.as_bytes(), &[1000]);
        assert!(parsed.is_empty());
        assert_eq!(refused, Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        // An incomplete head of LIMIT bytes can only end longer than LIMIT; one byte less
        // may still end at LIMIT.
        let mut buf = BytesMut::from(&endless.as_bytes()[..LIMIT]);
        let refused = parse_head(&mut buf, LIMIT)
            .err()
            .map(|Refused(status)| status);
        assert_eq!(refused, Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let mut buf = BytesMut::from(&endless.as_bytes()[..LIMIT - 1]);
        assert!(matches!(parse_head(&mut buf, LIMIT), Ok(None)));
    }

    proptest! {
        /// Pipelined requests come out the same, one by one and in order, however the
        /// reads cut them.
        #[test]
        fn pipelined_heads_parse_the_same_in_any_pieces(
            paths in proptest::collection::vec("/[a-z0-9]{1,12}(\\?[a-z=]{0,6})?", 1..6),
            pieces in proptest::collection::vec(1usize..40, 1..6),
        ) {
            let wire: String = paths
                .iter()
                .map(|p| format!("GET {p} HTTP/1.1\r\nHost: x\r\nX-A: {p}\r\n\r\n"))
                .collect();
            let (parsed, refused) = parse_in_pieces(wire.as_bytes(), &pieces);
            prop_assert_eq!(refused, None);
            let targets: Vec<&str> = parsed.iter().map(|p| p.1.as_str()).collect();
            prop_assert_eq!(targets, paths.iter().map(String::as_str).collect::<Vec<_>>());
        }

        /// Any bytes: parsed, refused or waiting for more, never a panic; what is parsed is
        /// taken off the buffer.
        #[test]
        fn arbitrary_bytes_are_parsed_or_refused(
            wire in proptest::collection::vec(any::<u8>(), 0..600),
            prefix in any::<bool>(),
            pieces in proptest::collection::vec(1usize..64, 1..4),
        ) {
            let wire = if prefix { [&b"GET /x HTTP/1.1\r\n"[..], &wire].concat() } else { wire };
            let _ = parse_in_pieces(&wire, &pieces);
        }
    }
}
