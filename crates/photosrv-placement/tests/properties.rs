//! Consistency properties of the choosers.

use photosrv_placement::{Chooser, ChooserKind};
use proptest::prelude::*;

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("shard{i}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Growing N to N+1 shards with jump moves only keys that land on the new shard, and
    /// about 1/(N+1) of them.
    #[test]
    fn jump_growth_moves_only_to_the_new_shard(n in 1usize..200, seed in any::<u64>()) {
        let before = Chooser::new(ChooserKind::Jump, &names(n));
        let after = Chooser::new(ChooserKind::Jump, &names(n + 1));
        let keys = 4000u64;
        let mut moved = 0u64;
        for i in 0..keys {
            let key = format!("images/{seed:x}/{i}.jpg");
            let (a, b) = (before.choose(key.as_bytes()), after.choose(key.as_bytes()));
            if a != b {
                prop_assert_eq!(b, n, "key {} moved to an old shard", key);
                moved += 1;
            }
        }
        let expected = keys as f64 / (n + 1) as f64;
        // 6 standard deviations of a binomial: fails by chance about never.
        let slack = 6.0 * (expected * (1.0 - 1.0 / (n + 1) as f64)).sqrt() + 1.0;
        prop_assert!((moved as f64 - expected).abs() <= slack,
            "moved {} of {} keys, expected about {}", moved, keys, expected);
    }

    /// Placement depends on the shard list only, never on the nodes inside a shard:
    /// the chooser is built from shard names alone, so this holds by construction; what we
    /// check is that the same names always build the same chooser.
    #[test]
    fn same_shards_same_placement(n in 1usize..50, key in ".{0,60}") {
        for kind in [ChooserKind::Jump, ChooserKind::Chash] {
            let a = Chooser::new(kind, &names(n));
            let b = Chooser::new(kind, &names(n));
            prop_assert_eq!(a.choose(key.as_bytes()), b.choose(key.as_bytes()));
            prop_assert!(a.choose(key.as_bytes()) < n);
        }
    }
}
