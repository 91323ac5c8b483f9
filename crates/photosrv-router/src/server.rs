//! The router's two listeners, on the shared accept loop of `photosrv-http`.

use crate::{downstream, Router};
use photosrv_http::ServeSettings;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves client requests on `listener` until `shutdown` resolves, then drains. HTTP/1 is
/// the router's own (`downstream.rs`); h2c goes to hyper.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let options = router.options();
    let settings = ServeSettings {
        name: "client",
        max_connections: options.max_connections,
        grace_period: options.grace_period,
        header_read_timeout: options.header_read_timeout,
        max_header_bytes: options.max_header_bytes,
    };
    let connection_settings = Arc::new(settings.clone());
    let serve_one = move |stream, remote, closing| {
        let (router, settings) = (router.clone(), connection_settings.clone());
        async move {
            downstream::serve_connection(router, stream, remote, &settings, closing).await;
        }
    };
    photosrv_http::accept_loop(listener, settings, serve_one, shutdown).await;
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
