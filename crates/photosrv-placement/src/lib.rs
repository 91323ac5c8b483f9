//! Where a key lives: the choosers of the Go photosrv, bit for bit, and the request-path
//! rules that turn a URL path into a key.
//!
//! Nothing here does I/O. Every router, client and tool computes the same placement from
//! the same shard list, which is what lets any number of routers run side by side.
//!
//! ```
//! use photosrv_placement::{Chooser, ChooserKind};
//!
//! let shards = ["shard1", "shard2", "shard3"];
//! let chooser = Chooser::new(ChooserKind::Jump, &shards);
//! let bucket = chooser.choose(b"images/hello.jpg");
//! assert_eq!(shards[bucket], "shard1");
//! ```

mod chooser;
mod hash;
pub mod path;

pub use chooser::{Chooser, ChooserKind, UnknownChooser};
pub use hash::{jump_hash, leveldb_hash, siphash24};
