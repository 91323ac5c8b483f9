//! The photosrv router as a library: a consistently hashed HTTP router for static
//! content. It maps each GET/HEAD path to a shard (jump or chash, as the Go photosrv) and
//! forwards it to one live node of that shard, with failover, streaming bodies.
//!
//! The binary is a thin layer over this: it binds the listeners, wires signals, and calls
//! [`serve`] and [`serve_admin`] with a shutdown future. Tests do the same on
//! `127.0.0.1:0`.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use photosrv_router::{Router, RouterOptions};
//! let config = photosrv_config::Config::load("photosrv.cfg".as_ref())?;
//! let options = RouterOptions::resolve(&config, Default::default());
//! let router = Router::new(options)?;
//! let _reloader = router.spawn_reloader();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! photosrv_router::serve(listener, router, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

mod admin;
mod downstream;
#[cfg(test)]
mod fake_node;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod h1;
pub mod metrics;
mod migration;
mod node;
mod options;
mod pool;
mod probe;
mod relay;
mod reload;
mod router;
mod server;
mod table;

pub use forward::ProxyBody;
pub use h1::UpstreamBody;
pub use migration::SwitchError;
pub use node::Node;
pub use options::RouterOptions;
pub use photosrv_http::bind_reuseport;
pub use reload::{ReloadError, Reloaded, ReloaderHandle};
pub use router::{Reply, Router, StartError};
pub use server::{serve, serve_admin};
pub use table::{MigrationState, Route, RouteError, RoutingTable, ShardTable, TableError};
