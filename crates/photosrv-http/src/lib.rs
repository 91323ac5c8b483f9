//! The accept loop shared by the photosrv router and storage node.
//!
//! One accept loop ([`accept_loop`]): a limit on open connections (beyond it, new ones wait
//! in the listen backlog), and on shutdown: stop accepting, tell open connections they are
//! [`Closing`], wait for them for a grace period. [`serve`] runs it with hyper-util's auto
//! builder (HTTP/1.1 and h2c) with a header read timeout and size limit; the router's client
//! listener brings its own HTTP/1 connections and hands h2c ones to [`serve_hyper`]. A hyper
//! connection idle for the header read timeout is closed (HTTP/2 included), and an HTTP/2
//! peer that leaves a ping unanswered as long is disconnected.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use photosrv_http::{serve, ServeSettings};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let handler = |_request: http::Request<hyper::body::Incoming>, _client| async {
//!     http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"hi\n")))
//! };
//! serve(listener, ServeSettings::new("example"), handler, std::future::pending()).await;
//! # Ok(()) }
//! ```

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How a listener serves.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// A name for log lines.
    pub name: &'static str,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long open connections may finish after shutdown.
    pub grace_period: Duration,
    /// How long a client may take to send a request head, and stay idle between requests
    /// (over HTTP/2 too); also the interval and timeout of HTTP/2 keep-alive pings.
    pub header_read_timeout: Duration,
    /// The largest request head accepted; larger gets 431.
    pub max_header_bytes: usize,
}

impl ServeSettings {
    /// Defaults: 10,000 connections, 30 s grace, 10 s header timeout, 64 KiB heads.
    pub fn new(name: &'static str) -> ServeSettings {
        ServeSettings {
            name,
            max_connections: 10_000,
            grace_period: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Tells a connection that the listener is shutting down: it should finish the request in
/// flight, if any, and close. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Closing(CancellationToken);

impl Closing {
    /// Whether shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once shutdown has begun.
    pub async fn closing(&self) {
        self.0.cancelled().await;
    }
}

/// Serves `handler` on `listener` with hyper (HTTP/1.1 and h2c) until `shutdown` resolves,
/// then stops accepting and lets open connections finish for up to the grace period.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    settings: ServeSettings,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(http::Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection_settings = settings.clone();
    let serve_one = move |stream: TcpStream, remote, closing| {
        let (settings, handler) = (connection_settings.clone(), handler.clone());
        async move {
            serve_hyper(TokioIo::new(stream), remote, &settings, handler, closing).await;
        }
    };
    accept_loop(listener, settings, serve_one, shutdown).await;
}

/// Serves one connection with hyper (HTTP/1.1 or h2c, as the client's first bytes say)
/// until it ends, or until `closing` and the request in flight is answered.
pub async fn serve_hyper<I, H, F, B>(
    io: I,
    remote: SocketAddr,
    settings: &ServeSettings,
    handler: H,
    closing: Closing,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    H: Fn(http::Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192))
        .keep_alive(true);
    // HTTP/2 has no header timeout to close a connection whose peer is gone or reads nothing:
    // a ping unanswered within the same time closes it instead. A live idle client answers.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.header_read_timeout)
        .keep_alive_timeout(settings.header_read_timeout)
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    let activity = Arc::new(Activity::default());
    let service = service_fn({
        let activity = activity.clone();
        move |request| {
            let in_flight = InFlight::enter(&activity);
            let response = handler(request, remote);
            async move {
                let response = response.await;
                // The request is in flight until hyper drops its body: sent, or reset.
                let body = |body: B| {
                    body.map_err(move |error| {
                        let _held = &in_flight;
                        error
                    })
                };
                Ok::<_, Infallible>(response.map(body))
            }
        }
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = closing.closing() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        () = activity.idle_for(settings.header_read_timeout) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%remote, %error, "connection ended with an error");
    }
}

/// What a hyper connection is doing, for closing it once idle. HTTP/1 has the header read
/// timeout for that; HTTP/2 has nothing in hyper, so an h2c client that sent nothing more
/// would hold its connection for as long as it answered pings.
#[derive(Debug, Default)]
struct Activity {
    /// Requests whose response body hyper still holds.
    in_flight: AtomicUsize,
    /// Requests begun on the connection, ever.
    begun: AtomicUsize,
}

impl Activity {
    /// Resolves once a whole `period` has passed with no request in flight and none begun:
    /// a connection idle for between one and two periods.
    async fn idle_for(&self, period: Duration) {
        let mut begun = self.begun.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(period).await;
            let now = self.begun.load(Ordering::Relaxed);
            if now == begun && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            begun = now;
        }
    }
}

/// One request in flight on a connection, until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> InFlight {
        activity.begun.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections on `listener` and serves each with `serve_one` on a task of its own,
/// at most `max_connections` at once (beyond that, new ones wait in the listen backlog),
/// until `shutdown` resolves; then stops accepting, tells every open connection it is
/// [`Closing`], and waits for them for up to the grace period.
pub async fn accept_loop<S, F>(
    listener: TcpListener,
    settings: ServeSettings,
    serve_one: S,
    shutdown: impl Future<Output = ()>,
) where
    S: Fn(TcpStream, SocketAddr, Closing) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let max_connections = u32::try_from(settings.max_connections.max(1)).unwrap_or(u32::MAX);
    let limit = Arc::new(Semaphore::new(max_connections as usize));
    let closing = Closing::default();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = settings.name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = serve_one(stream, remote, closing.clone());
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    drop(listener);
    closing.0.cancel();
    let open = max_connections as usize - limit.available_permits();
    if open > 0 {
        tracing::info!(listener = settings.name, open, "draining connections");
    }
    tokio::select! {
        _ = limit.acquire_many(max_connections) => {}
        () = tokio::time::sleep(settings.grace_period) => {
            tracing::warn!(listener = settings.name, "grace period over: closing the connections left");
        }
    }
}

/// Binds `addr` with SO_REUSEPORT (and SO_REUSEADDR), so a second process can bind the
/// same port during a restart and no connection is refused meanwhile.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}
