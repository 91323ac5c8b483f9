//! photosrv's config and roster: text -> syntax tree (nom, with positions) -> validated,
//! typed model. Every error names `FILE:LINE:COL` and says what was expected; the parser
//! never panics, whatever the input.
//!
//! ```
//! use photosrv_config::Config;
//! use std::path::Path;
//!
//! let text = "<photosrv>\n  chooser jump\n  <dc1>\n    <shards>\n      shard1 http://node1:9001\n    </shards>\n  </dc1>\n</photosrv>\n";
//! let config = Config::parse(Path::new("photosrv.cfg"), text.as_bytes()).unwrap();
//! let dc = config.select(None).unwrap().primary;
//! assert_eq!(dc.shards[0].nodes[0].authority, "node1:9001");
//!
//! let err = Config::parse(Path::new("bad.cfg"), b"<photosrv>\n<dc1>\n<shards>\nshardX http://a\n</shards>\n</dc1>\n</photosrv>\n").unwrap_err();
//! assert_eq!(err.to_string(), "bad.cfg:4:1: shard name \"shardx\" must be shard<N>, such as shard1");
//! ```

mod authority;
mod diagnostic;
mod model;
mod roster;
mod settings;
pub mod syntax;

pub use diagnostic::{ConfigError, Diagnostic};
pub use model::{Config, Datacenter, NodeAddr, Ring, Selection, Shard};
pub use photosrv_placement::path::RewriteRule;
pub use photosrv_placement::ChooserKind;
pub use roster::Roster;
pub use settings::{LogFormat, ReplicaMode, Settings};
