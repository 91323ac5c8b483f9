//! The storage node's request handlers.

use crate::paths::{resolve, stays_inside, PathRefused};
use crate::Storage;
use bytes::Bytes;
use futures_util::stream;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;

/// The body of every storage response.
pub type StorageBody = BoxBody<Bytes, std::io::Error>;

/// Files are read and written in chunks of this size; a file no larger is read at once.
const CHUNK: usize = 256 * 1024;

/// The longest file name and path Linux takes (NAME_MAX, PATH_MAX less its NUL). A PUT is
/// written under a short temporary name first, so without this check a name too long would
/// only fail at the final rename, after the whole body was read and synced.
const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4095;

const ALLOW: &str = "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL";

fn full(bytes: impl Into<Bytes>) -> StorageBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn status(code: StatusCode, text: &'static str) -> Response<StorageBody> {
    let mut response = Response::new(full(text));
    *response.status_mut() = code;
    response
}

fn empty(code: StatusCode) -> Response<StorageBody> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = code;
    response
}

fn refused(refusal: PathRefused) -> Response<StorageBody> {
    match refusal {
        PathRefused::Malformed => status(StatusCode::BAD_REQUEST, "malformed path\n"),
        PathRefused::Dot => status(StatusCode::NOT_FOUND, "not found\n"),
        PathRefused::Escapes => status(StatusCode::FORBIDDEN, "forbidden\n"),
    }
}

/// The answer to a failed file system call, as nginx's static module gives it: a path that
/// names nothing (missing, under a file, or with a name too long) is 404, one the node may
/// not follow (no permission, a symlink loop) 403. Only the node's own trouble is a 500 and
/// an error in the log: a client's request cannot raise one.
fn io_error(error: &std::io::Error) -> Response<StorageBody> {
    use std::io::ErrorKind;
    let symlink_loop = rustix::io::Errno::from_io_error(error) == Some(rustix::io::Errno::LOOP);
    match error.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::InvalidFilename => {
            status(StatusCode::NOT_FOUND, "not found\n")
        }
        ErrorKind::PermissionDenied => status(StatusCode::FORBIDDEN, "forbidden\n"),
        _ if symlink_loop => status(StatusCode::FORBIDDEN, "forbidden\n"),
        _ => {
            tracing::error!(%error, "storage I/O error");
            status(StatusCode::INTERNAL_SERVER_ERROR, "storage error\n")
        }
    }
}

/// As [`io_error`], for a PUT or MKCOL: a name too long for the file system is the client's
/// to shorten, so 414 (nginx answers 500).
fn write_error(error: &std::io::Error) -> Response<StorageBody> {
    if error.kind() == std::io::ErrorKind::InvalidFilename {
        return status(StatusCode::URI_TOO_LONG, "name too long\n");
    }
    io_error(error)
}

/// The Content-Type for a file name, from a small table of what photo and web
/// storage holds; anything else is application/octet-stream.
fn content_type(path: &Path) -> &'static str {
    // Lowercased in a stack buffer: no allocation per request.
    let mut lower = [0u8; 8];
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= lower.len())
        .and_then(|e| {
            lower[..e.len()].copy_from_slice(e.as_bytes());
            lower[..e.len()].make_ascii_lowercase();
            std::str::from_utf8(&lower[..e.len()]).ok()
        });
    match extension {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("mp4") => "video/mp4",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// nginx's ETag: hex mtime seconds and hex length.
fn etag_of(mtime: SystemTime, len: u64) -> String {
    let secs = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("\"{secs:x}-{len:x}\"")
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// The requested single byte range, `None` for the whole file, `Err` when unsatisfiable.
fn byte_range(
    headers: &HeaderMap,
    len: u64,
    etag: &str,
    last_modified: &str,
) -> Result<Option<(u64, u64)>, ()> {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if let Some(if_range) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if if_range != etag && if_range != last_modified {
            return Ok(None);
        }
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: the whole file is a valid answer.
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => match number(last) {
            Some(0) | None => return Err(()),
            Some(n) => (len.saturating_sub(n), len.saturating_sub(1)),
        },
        (false, true) => match number(first) {
            Some(start) => (start, len.saturating_sub(1)),
            None => return Ok(None),
        },
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start <= end => (start, end.min(len.saturating_sub(1))),
            _ => return Ok(None),
        },
        (true, true) => return Ok(None),
    };
    if len == 0 || start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Removes a temporary upload unless it was renamed into place: runs even when the
/// connection drops and the handler future is dropped mid-body.
struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A file opened for reading, with what the response headers need.
struct Opened {
    file: std::fs::File,
    len: u64,
    mtime: SystemTime,
}

/// The result of opening a file for reading.
enum OpenedInside {
    File(std::fs::File),
    /// The path leads outside the root through a symlink.
    Escapes,
}

/// Whether the file actually opened lies under `root`: one readlink of
/// `/proc/self/fd/N` instead of resolving every component of the path. Without /proc, the
/// path is resolved instead.
fn opened_inside(file: &std::fs::File, root: &Path, path: &Path) -> bool {
    use std::os::fd::AsRawFd as _;
    match std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
        Ok(real) => real.starts_with(root),
        Err(_) => stays_inside(root, path),
    }
}

/// Length and time of an opened file; `None` for a directory, FIFO, socket or device,
/// which have no content to serve.
fn describe(file: std::fs::File) -> std::io::Result<Option<Opened>> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    Ok(Some(Opened {
        file,
        len: meta.len(),
        mtime: meta.modified().unwrap_or(UNIX_EPOCH),
    }))
}

/// `len` bytes of `file` from `offset`, by pread (no seek) into a buffer that is not zeroed
/// first, as the read overwrites it anyway (1-10% less CPU per 1 MiB request when every
/// chunk was read this way; docs/benchmarks.md). A file that ends early is an error.
fn read_at(file: &std::fs::File, len: usize, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        // Appends to `buf`: up to its spare capacity, which may be more than asked for.
        let filled = match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Err(rustix::io::Errno::INTR) => continue,
            read => read?,
        };
        if filled == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Set once `RWF_NOWAIT` reads turn out unsupported (kernels before 4.14, some file
/// systems), so that later chunks go straight to the blocking pool.
static NOWAIT_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// `len` bytes of `file` from `offset` if the page cache holds them all, read right here with
/// `RWF_NOWAIT`; `None` if that would wait for the disk. A chunk of a cached file then costs
/// one syscall instead of a round trip through the blocking pool (about two context switches
/// and two futex calls), which took a 1 MiB request from 1.2-1.4x nginx's CPU to below it
/// (docs/benchmarks.md, "The storage node beside nginx").
fn read_cached(file: &std::fs::File, len: usize, offset: u64) -> Option<Vec<u8>> {
    use rustix::io::{Errno, IoSliceMut, ReadWriteFlags};
    if NOWAIT_UNSUPPORTED.load(Ordering::Relaxed) {
        return None;
    }
    // Zeroed, unlike `read_at`'s: preadv2 takes initialised slices.
    let mut buf = vec![0; len];
    let slices = &mut [IoSliceMut::new(&mut buf)];
    match rustix::io::preadv2(file, slices, offset, ReadWriteFlags::NOWAIT) {
        // Short: part of it is not cached, or the file shrank; the blocking read finds out.
        Ok(read) => (read == len).then_some(buf),
        Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => {
            NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
            None
        }
        Err(_) => None,
    }
}

/// The body for `len` bytes of `file` from `start`, a chunk at a time: read right here, on
/// the runtime thread, when the page cache holds it (open, stat and a page-cache read cost
/// less than the hop to the blocking pool and back, docs/benchmarks.md), on the blocking pool
/// when it would wait for the disk, so a slow disk never holds the runtime. Up to one chunk
/// comes whole, in one frame.
fn file_body(file: std::fs::File, start: u64, len: u64) -> StorageBody {
    if len as usize <= CHUNK {
        let read = read_cached(&file, len as usize, start).map(Ok).or_else(|| {
            // Where the kernel cannot tell what is cached, small files are read here
            // regardless, as nginx does without aio.
            NOWAIT_UNSUPPORTED
                .load(Ordering::Relaxed)
                .then(|| read_at(&file, len as usize, start))
        });
        match read {
            Some(Ok(buf)) => return full(buf),
            Some(Err(e)) => {
                return StreamBody::new(stream::once(async move { Err::<Frame<Bytes>, _>(e) }))
                    .boxed()
            }
            // Not cached: streamed below, as one chunk (one more `RWF_NOWAIT` try, then the
            // blocking pool; next to a disk read, the extra try is noise).
            None => {}
        }
    }
    let state = (Some(file), start, len);
    let chunks = stream::unfold(state, |(file, offset, remaining)| async move {
        let file = file?;
        if remaining == 0 {
            return None;
        }
        let want = remaining.min(CHUNK as u64) as usize;
        let read = match read_cached(&file, want, offset) {
            Some(buf) => Ok((file, buf)),
            None => tokio::task::spawn_blocking(move || {
                let buf = read_at(&file, want, offset)?;
                Ok::<_, std::io::Error>((file, buf))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e))),
        };
        match read {
            Ok((file, buf)) => Some((
                Ok(Frame::data(Bytes::from(buf))),
                (Some(file), offset + want as u64, remaining - want as u64),
            )),
            Err(e) => Some((Err(e), (None, offset, 0))),
        }
    });
    StreamBody::new(chunks).boxed()
}

impl Storage {
    /// Answers one request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<StorageBody> {
        let (path, is_collection) = match resolve(&self.inner.root, request.uri().path()) {
            Ok(resolved) => resolved,
            Err(refusal) => return refused(refusal),
        };
        let method = request.method().clone();
        // Reads check where the opened file really is (one readlink, in `get`); the other
        // methods check the path before acting on it.
        let reading = method == Method::GET || method == Method::HEAD;
        if !reading && !stays_inside(&self.inner.root, &path) {
            return refused(PathRefused::Escapes);
        }
        let mut response = match method {
            Method::GET | Method::HEAD => self.get(&request, path, method == Method::HEAD).await,
            Method::PUT => self.put(request, path, is_collection).await,
            Method::DELETE => self.delete(path).await,
            _ if method.as_str() == "MKCOL" => self.mkcol(request, path).await,
            Method::OPTIONS => {
                let mut response = empty(StatusCode::OK);
                response
                    .headers_mut()
                    .insert("dav", HeaderValue::from_static("1"));
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
                response
            }
            _ => {
                let mut response = status(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
                response
            }
        };
        response
            .headers_mut()
            .insert(header::SERVER, HeaderValue::from_static("photosrv-storage"));
        response
    }

    /// Opens `path` (the root joined with plain segments) for reading if the file it leads
    /// to is under the root.
    ///
    /// Opened non-blocking: opening a FIFO for reading would otherwise wait for a writer
    /// and stall the runtime thread (reads of regular files ignore the flag).
    ///
    /// The fast way is one `openat2` from the root's descriptor with `RESOLVE_BENEATH`: the
    /// kernel walks only the segments below the root and refuses to leave it, so there is
    /// no second syscall to check. It also refuses absolute symlinks, even ones that stay
    /// inside; those, and kernels or sandboxes without `openat2`, take the slow way: open,
    /// then check where the file really is.
    fn open_inside(&self, path: &Path) -> std::io::Result<OpenedInside> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        use rustix::io::Errno;
        let inner = &self.inner;
        if inner.openat2.load(Ordering::Relaxed) {
            let relative = match path.strip_prefix(&inner.root) {
                Ok(relative) if relative.as_os_str().is_empty() => Path::new("."),
                Ok(relative) => relative,
                Err(_) => return Ok(OpenedInside::Escapes),
            };
            match rustix::fs::openat2(
                &inner.root_fd,
                relative,
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => return Ok(OpenedInside::File(fd.into())),
                // Leaves the root or crosses an absolute symlink: decided below.
                Err(Errno::XDEV | Errno::AGAIN) => {}
                Err(errno @ (Errno::NOSYS | Errno::PERM)) => {
                    tracing::warn!(%errno, "openat2 unavailable: reads check each opened file");
                    inner.openat2.store(false, Ordering::Relaxed);
                }
                Err(errno) => return Err(errno.into()),
            }
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
            .open(path)?;
        Ok(if opened_inside(&file, &inner.root, path) {
            OpenedInside::File(file)
        } else {
            OpenedInside::Escapes
        })
    }

    async fn get(
        &self,
        request: &Request<Incoming>,
        path: PathBuf,
        head: bool,
    ) -> Response<StorageBody> {
        let mime = content_type(&path);
        // open and fstat are quick on a local file system: done here, like the small read.
        let file = match self.open_inside(&path) {
            Ok(OpenedInside::File(file)) => file,
            Ok(OpenedInside::Escapes) => return refused(PathRefused::Escapes),
            Err(e) => return io_error(&e),
        };
        let opened = match describe(file) {
            Ok(Some(opened)) => opened,
            Ok(None) => return status(StatusCode::FORBIDDEN, "not a file\n"),
            Err(e) => return io_error(&e),
        };
        let etag = etag_of(opened.mtime, opened.len);
        let last_modified = httpdate::fmt_http_date(opened.mtime);
        let headers = request.headers();
        let not_modified = match headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
        {
            Some(list) => etag_matches(list, &etag),
            None => headers
                .get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .is_some_and(|since| {
                    httpdate::HttpDate::from(opened.mtime) <= httpdate::HttpDate::from(since)
                }),
        };
        let mut response = if not_modified {
            empty(StatusCode::NOT_MODIFIED)
        } else {
            match byte_range(headers, opened.len, &etag, &last_modified) {
                Err(()) => {
                    let mut r =
                        status(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", opened.len)) {
                        r.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return r;
                }
                Ok(range) => {
                    let (start, end) = range.unwrap_or((0, opened.len.saturating_sub(1)));
                    let len = if opened.len == 0 { 0 } else { end - start + 1 };
                    let body = if head || len == 0 {
                        full(Bytes::new())
                    } else {
                        file_body(opened.file, start, len)
                    };
                    let mut r = Response::new(body);
                    if range.is_some() {
                        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                        if let Ok(v) =
                            HeaderValue::from_str(&format!("bytes {start}-{end}/{}", opened.len))
                        {
                            r.headers_mut().insert(header::CONTENT_RANGE, v);
                        }
                    }
                    r.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    r.headers_mut()
                        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
                    r
                }
            }
        };
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&last_modified) {
            h.insert(header::LAST_MODIFIED, v);
        }
        response
    }

    async fn put(
        &self,
        request: Request<Incoming>,
        path: PathBuf,
        is_collection: bool,
    ) -> Response<StorageBody> {
        if is_collection || path == self.inner.root {
            return status(StatusCode::CONFLICT, "cannot PUT a collection\n");
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.inner.max_body_bytes) {
            return status(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
        }
        let Some(dir) = path.parent().map(Path::to_path_buf) else {
            return status(StatusCode::CONFLICT, "no parent collection\n");
        };
        let temp_path = dir.join(format!(".photosrv-tmp-{:016x}", rand::random::<u64>()));
        let prepared = {
            let (dir, temp_path, path) = (dir.clone(), temp_path.clone(), path.clone());
            tokio::task::spawn_blocking(move || {
                if path.as_os_str().len() > PATH_MAX
                    || path.file_name().is_some_and(|name| name.len() > NAME_MAX)
                {
                    return Err(rustix::io::Errno::NAMETOOLONG.into());
                }
                if path.is_dir() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "a collection is in the way",
                    ));
                }
                std::fs::create_dir_all(&dir)?;
                std::fs::File::create(&temp_path)
            })
            .await
        };
        let file = match prepared {
            Ok(Ok(file)) => file,
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return status(StatusCode::CONFLICT, "a file or collection is in the way\n")
            }
            Ok(Err(e)) => return write_error(&e),
            Err(_) => return status(StatusCode::INTERNAL_SERVER_ERROR, "storage error\n"),
        };
        // From here on the temporary file goes away unless it is renamed into place.
        let mut temp = TempFile {
            path: temp_path,
            committed: false,
        };
        let mut writer =
            tokio::io::BufWriter::with_capacity(CHUNK, tokio::fs::File::from_std(file));
        let mut body = request.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(_) => return status(StatusCode::BAD_REQUEST, "upload cut off\n"),
            };
            if let Ok(data) = frame.into_data() {
                written += data.len() as u64;
                if written > self.inner.max_body_bytes {
                    return status(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
                }
                if let Err(e) = writer.write_all(&data).await {
                    return io_error(&e);
                }
            }
        }
        if declared.is_some_and(|n| n != written) {
            return status(
                StatusCode::BAD_REQUEST,
                "body length differs from Content-Length\n",
            );
        }
        if let Err(e) = writer.flush().await {
            return io_error(&e);
        }
        let file = writer.into_inner().into_std().await;
        let temp_path = temp.path.clone();
        let committed = tokio::task::spawn_blocking(move || {
            file.sync_all()?;
            let existed = path.exists();
            std::fs::rename(&temp_path, &path)?;
            sync_dir(&dir)?;
            Ok::<_, std::io::Error>(existed)
        })
        .await;
        match committed {
            Ok(Ok(existed)) => {
                temp.committed = true;
                empty(if existed {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::CREATED
                })
            }
            Ok(Err(e)) => write_error(&e),
            Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR, "storage error\n"),
        }
    }

    async fn delete(&self, path: PathBuf) -> Response<StorageBody> {
        if path == self.inner.root {
            return status(StatusCode::FORBIDDEN, "the root cannot be deleted\n");
        }
        let result = tokio::task::spawn_blocking(move || {
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
            match path.parent() {
                Some(dir) => sync_dir(dir),
                None => Ok(()),
            }
        })
        .await;
        match result {
            Ok(Ok(())) => empty(StatusCode::NO_CONTENT),
            Ok(Err(e)) => io_error(&e),
            Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR, "storage error\n"),
        }
    }

    async fn mkcol(&self, request: Request<Incoming>, path: PathBuf) -> Response<StorageBody> {
        let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
            || request
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        if has_body {
            return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "MKCOL takes no body\n");
        }
        let result = tokio::task::spawn_blocking(move || {
            if std::fs::symlink_metadata(&path).is_ok() {
                return Ok(StatusCode::METHOD_NOT_ALLOWED);
            }
            match path.parent() {
                Some(parent) if parent.is_dir() => {
                    std::fs::create_dir(&path)?;
                    sync_dir(parent)?;
                    Ok(StatusCode::CREATED)
                }
                _ => Ok(StatusCode::CONFLICT),
            }
        })
        .await;
        match result {
            Ok(Ok(code)) => empty(code),
            Ok(Err(e)) => write_error(&e),
            Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR, "storage error\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        byte_range(&headers, len, "\"e\"", "date")
    }

    /// A file of CHUNK + 5 bytes counting 0..=255 over and over, opened, and its content.
    fn file_of_a_chunk_and_five() -> (tempfile::TempDir, std::fs::File, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..=255).cycle().take(CHUNK + 5).collect();
        std::fs::write(&path, &content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        (dir, file, content)
    }

    /// Exact bytes from any offset; a file shorter than asked for is an error, not a
    /// buffer with stale memory at its end.
    #[test]
    fn reads_exactly_what_was_asked() {
        let (_dir, file, content) = file_of_a_chunk_and_five();
        assert_eq!(read_at(&file, CHUNK, 5).unwrap(), content[5..]);
        assert_eq!(read_at(&file, 3, 254).unwrap(), [254, 255, 0]);
        assert!(read_at(&file, 0, 0).unwrap().is_empty());
        let short = read_at(&file, 10, CHUNK as u64).unwrap_err();
        assert_eq!(short.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    /// A file just written is in the page cache: read in place, exactly, unless this file
    /// system cannot say (then it is remembered). Past the end: never a short buffer.
    #[test]
    fn cached_reads_are_exact_or_none() {
        let (_dir, file, content) = file_of_a_chunk_and_five();
        match read_cached(&file, CHUNK, 5) {
            Some(read) => assert_eq!(read, content[5..]),
            None => assert!(NOWAIT_UNSUPPORTED.load(Ordering::Relaxed)),
        }
        assert_eq!(read_cached(&file, 10, CHUNK as u64), None);
    }

    /// Files the page cache does not hold, small and large, stream through the blocking
    /// pool, whole and in order. (Where dropping a file's pages does nothing, as on tmpfs,
    /// their chunks are read in place instead and only the content is checked.)
    #[tokio::test]
    async fn uncached_chunks_are_read_on_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        for size in [CHUNK / 2, 3 * CHUNK + 7] {
            let path = dir.path().join(size.to_string());
            let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &content).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            file.sync_all().unwrap();
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
            let body = file_body(file, 3, size as u64 - 3);
            let read = body.collect().await.unwrap().to_bytes();
            assert!(
                read == content[3..],
                "streamed body of {size} bytes differs"
            );
        }
    }

    /// The types photo and web storage holds, by extension in any case (nginx's mime.types
    /// names them so); anything else is a byte stream.
    #[test]
    fn content_types_follow_the_extension() {
        let octets = "application/octet-stream";
        for (name, expected) in [
            ("a.jpg", "image/jpeg"),
            ("a.JPEG", "image/jpeg"),
            ("a.png", "image/png"),
            ("a.gif", "image/gif"),
            ("a.webp", "image/webp"),
            ("a.avif", "image/avif"),
            ("a.svg", "image/svg+xml"),
            ("a.ico", "image/x-icon"),
            ("a.txt", "text/plain; charset=utf-8"),
            ("a.html", "text/html; charset=utf-8"),
            ("a.Htm", "text/html; charset=utf-8"),
            ("a.css", "text/css"),
            ("a.js", "text/javascript"),
            ("a.json", "application/json"),
            ("a.mp4", "video/mp4"),
            ("a.pdf", "application/pdf"),
            ("dir.png/a", octets),
            ("a.jpg.gz", octets),
            ("a.jpegjpegx", octets),
            ("a", octets),
        ] {
            assert_eq!(content_type(Path::new(name)), expected, "{name}");
        }
    }

    /// What nginx answers for each: a name that names nothing is 404, one the node may not
    /// follow 403 (permissions are not seen in tests run as root), anything else 500.
    #[test]
    fn io_errors_have_their_statuses() {
        use std::io::{Error, ErrorKind};
        for (kind, expected) in [
            (ErrorKind::NotFound, StatusCode::NOT_FOUND),
            (ErrorKind::PermissionDenied, StatusCode::FORBIDDEN),
            (ErrorKind::NotADirectory, StatusCode::NOT_FOUND),
            (ErrorKind::InvalidFilename, StatusCode::NOT_FOUND),
            (ErrorKind::StorageFull, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            assert_eq!(io_error(&Error::from(kind)).status(), expected, "{kind:?}");
        }
        let symlink_loop = Error::from(rustix::io::Errno::LOOP);
        assert_eq!(io_error(&symlink_loop).status(), StatusCode::FORBIDDEN);
        let io_error_of_the_node = Error::from(rustix::io::Errno::IO);
        assert_eq!(io_error(&io_error_of_the_node).status(), 500);
    }

    /// nginx's ETag, byte for byte: replicas that nginx and this node serve, with the same
    /// modification time and size, answer a conditional request alike
    /// (`tests/node.rs` checks it against a running nginx).
    #[test]
    fn etags_are_nginx_s() {
        let modified = UNIX_EPOCH + std::time::Duration::from_secs(0x6543_21ab);
        assert_eq!(etag_of(modified, 0x10_0000), "\"654321ab-100000\"");
        assert_eq!(etag_of(UNIX_EPOCH, 0), "\"0-0\"");
    }

    /// Up to 256 KiB comes whole, in one frame; more in pieces of 256 KiB.
    #[tokio::test]
    async fn files_are_read_a_chunk_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        for (size, frames) in [
            (200_000, vec![200_000]),
            (262_144, vec![262_144]),
            (600_000, vec![262_144, 262_144, 75_712]),
        ] {
            let path = dir.path().join(size.to_string());
            std::fs::write(&path, vec![7u8; size]).unwrap();
            let mut body = file_body(std::fs::File::open(&path).unwrap(), 0, size as u64);
            let mut read = Vec::new();
            while let Some(frame) = body.frame().await {
                read.push(frame.unwrap().into_data().unwrap().len());
            }
            assert_eq!(read, frames, "{size} bytes");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(range("bytes=90-200", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(range("bytes=-1000", 100), Ok(Some((0, 99))));
        assert_eq!(range("bytes=50-", 100), Ok(Some((50, 99))));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=-0", 100), Err(()));
        assert_eq!(range("bytes=0-0", 0), Err(()));
        assert_eq!(range("bytes=5-1", 100), Ok(None));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        // If-Range: the range only for the version named, by ETag or by date.
        let if_range = |condition: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-9"));
            headers.insert(header::IF_RANGE, HeaderValue::from_str(condition).unwrap());
            byte_range(&headers, 100, "\"e\"", "date")
        };
        assert_eq!(if_range("\"e\""), Ok(Some((0, 9))));
        assert_eq!(if_range("date"), Ok(Some((0, 9))));
        assert_eq!(if_range("\"f\""), Ok(None));
    }
}
