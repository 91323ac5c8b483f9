//! The router's two listeners, on the shared accept loop of `photosrv-http`.

use crate::Router;
use photosrv_http::ServeSettings;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves client requests on `listener` until `shutdown` resolves, then drains.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let options = router.options();
    let settings = ServeSettings {
        name: "client",
        max_connections: options.max_connections,
        grace_period: options.grace_period,
        header_read_timeout: options.header_read_timeout,
        max_header_bytes: options.max_header_bytes,
    };
    let handler = move |request, remote| {
        let router = router.clone();
        async move { router.handle(request, remote).await }
    };
    photosrv_http::serve(listener, settings, handler, shutdown).await;
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let settings = ServeSettings {
        max_connections: 64,
        grace_period: Duration::from_secs(2),
        ..ServeSettings::new("admin")
    };
    let handler = move |request, _remote| {
        let router = router.clone();
        async move { router.admin(request).await }
    };
    photosrv_http::serve(listener, settings, handler, shutdown).await;
}
