//! Choosers: key -> bucket (the index of a shard in shard-index order).

use crate::hash::{jump_hash, leveldb_hash, siphash24};
use std::fmt;
use std::str::FromStr;

/// Points each shard puts on the chash ring, as in go-shardedkv.
const CHASH_POINTS_PER_SHARD: u32 = 160;

/// The placement algorithms the Go photosrv offers, by their config names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ChooserKind {
    /// `chooser jump`: jump hash of SipHash-2-4.
    Jump,
    /// `chooser chash`, and the default when no chooser is given: the LevelDB-hash ring.
    #[default]
    Chash,
}

impl ChooserKind {
    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            ChooserKind::Jump => "jump",
            ChooserKind::Chash => "chash",
        }
    }
}

impl fmt::Display for ChooserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A chooser name that is neither `jump` nor `chash`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown chooser {0:?}: expected \"jump\" or \"chash\"")]
pub struct UnknownChooser(pub String);

impl FromStr for ChooserKind {
    type Err = UnknownChooser;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jump" => Ok(ChooserKind::Jump),
            "chash" => Ok(ChooserKind::Chash),
            other => Err(UnknownChooser(other.to_owned())),
        }
    }
}

/// Maps keys to buckets for a fixed, ordered list of shard names.
#[derive(Clone, Debug)]
pub struct Chooser {
    kind: ChooserKind,
    buckets: u32,
    /// chash only: ring point hashes, sorted ascending, with the bucket owning each.
    ring: Vec<(u32, u32)>,
}

impl Chooser {
    /// A chooser over `shard_names`, given in shard-index order (`shard1, shard2, shard5`
    /// are buckets 0, 1, 2). The names matter to chash only: its ring points are
    /// `leveldb_hash(decimal(i) + name)`.
    ///
    /// # Panics
    /// When `shard_names` is empty or holds more than `u32::MAX` names; the config layer
    /// refuses such rings before they get here.
    pub fn new<S: AsRef<str>>(kind: ChooserKind, shard_names: &[S]) -> Self {
        assert!(
            !shard_names.is_empty(),
            "a chooser needs at least one shard"
        );
        let buckets = u32::try_from(shard_names.len()).expect("too many shards");
        let ring = match kind {
            ChooserKind::Jump => Vec::new(),
            ChooserKind::Chash => build_ring(shard_names),
        };
        Chooser {
            kind,
            buckets,
            ring,
        }
    }

    /// The algorithm.
    pub fn kind(&self) -> ChooserKind {
        self.kind
    }

    /// How many buckets (shards) there are.
    pub fn buckets(&self) -> usize {
        self.buckets as usize
    }

    /// The bucket of `key`: an index into the shard list given to [`Chooser::new`].
    #[inline]
    pub fn choose(&self, key: &[u8]) -> usize {
        match self.kind {
            ChooserKind::Jump => jump_hash(siphash24(key), self.buckets) as usize,
            ChooserKind::Chash => {
                let h = leveldb_hash(key);
                let at = self.ring.partition_point(|&(point, _)| point < h);
                let (_, bucket) = self.ring.get(at).unwrap_or(&self.ring[0]);
                *bucket as usize
            }
        }
    }
}

/// The go-shardedkv / groupcache ring: 160 points per shard, shards added in index order,
/// and a later point with an equal hash takes the point over (Go's map overwrite).
fn build_ring<S: AsRef<str>>(shard_names: &[S]) -> Vec<(u32, u32)> {
    let mut points = Vec::with_capacity(shard_names.len() * CHASH_POINTS_PER_SHARD as usize);
    let mut label = String::new();
    for (bucket, name) in shard_names.iter().enumerate() {
        for i in 0..CHASH_POINTS_PER_SHARD {
            label.clear();
            label.push_str(&i.to_string());
            label.push_str(name.as_ref());
            points.push((leveldb_hash(label.as_bytes()), bucket as u32));
        }
    }
    // Stable sort keeps insertion order among equal hashes; keep the last of each run.
    points.sort_by_key(|&(hash, _)| hash);
    let mut ring: Vec<(u32, u32)> = Vec::with_capacity(points.len());
    for point in points {
        match ring.last_mut() {
            Some(last) if last.0 == point.0 => *last = point,
            _ => ring.push(point),
        }
    }
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_go_by_their_config_names() {
        for (kind, name) in [(ChooserKind::Jump, "jump"), (ChooserKind::Chash, "chash")] {
            assert_eq!(kind.name(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(name.parse::<ChooserKind>(), Ok(kind));
        }
        assert_eq!(
            "Jump".parse::<ChooserKind>(),
            Err(UnknownChooser("Jump".to_owned()))
        );
    }

    #[test]
    fn a_chooser_tells_its_kind_and_size() {
        for kind in [ChooserKind::Jump, ChooserKind::Chash] {
            let chooser = Chooser::new(kind, &["a", "b", "c"]);
            assert_eq!(chooser.kind(), kind);
            assert_eq!(chooser.buckets(), 3);
        }
    }

    #[test]
    fn a_key_on_a_ring_point_goes_to_the_shard_of_that_point() {
        // Go takes the first point at or after the key's hash; a key spelled like a point's
        // label has exactly that point's hash.
        let names = ["alpha", "beta", "gamma"];
        let chooser = Chooser::new(ChooserKind::Chash, &names);
        for (bucket, name) in names.iter().enumerate() {
            for i in 0..CHASH_POINTS_PER_SHARD {
                assert_eq!(chooser.choose(format!("{i}{name}").as_bytes()), bucket);
            }
        }
    }

    #[test]
    fn of_two_points_with_one_hash_the_shard_added_later_owns_it() {
        // Go's ring is a map from point to shard, written in shard order.
        assert_eq!(leveldb_hash(b"63shard5"), leveldb_hash(b"55shard235"));
        for names in [["shard5", "shard235"], ["shard235", "shard5"]] {
            let chooser = Chooser::new(ChooserKind::Chash, &names);
            assert_eq!(chooser.choose(b"63shard5"), 1, "{names:?}");
            assert_eq!(chooser.choose(b"55shard235"), 1, "{names:?}");
        }
    }
}
