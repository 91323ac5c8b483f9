//! Placement pinned by values the Go photosrv computed (tests/data, copied from
//! shared/vectors). The per-config chooser rows are checked end to end, config text
//! included, in photosrv-config's tests.

use photosrv_placement::{jump_hash, siphash24, Chooser, ChooserKind};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!(
        "../../../testdata/photosrv_chooser_vectors.json"
    ))
    .unwrap()
}

#[test]
fn matches_go_siphash24_with_zero_key() {
    let v = vectors();
    let table = v["siphash24_k0_0_k1_0"].as_object().unwrap();
    assert_eq!(table.len(), 209);
    for (key, hex) in table {
        let want = u64::from_str_radix(hex.as_str().unwrap(), 16).unwrap();
        assert_eq!(siphash24(key.as_bytes()), want, "siphash24({key:?})");
    }
}

#[test]
fn matches_go_jump_of_siphash() {
    let v = vectors();
    let table = v["jump_of_sip_3_buckets"].as_object().unwrap();
    assert_eq!(table.len(), 209);
    for (key, want) in table {
        assert_eq!(
            u64::from(jump_hash(siphash24(key.as_bytes()), 3)),
            want.as_u64().unwrap(),
            "jump(sip({key:?}), 3)"
        );
    }
}

/// The shard names of a vector config in index order: the rows are simple enough to read
/// without the config crate (which re-checks them through its own parser).
fn shard_names(config: &str) -> Vec<String> {
    let mut shards: Vec<(u32, String)> = config
        .lines()
        .filter_map(|line| line.trim().strip_prefix("shard"))
        .map(|rest| {
            let label = rest.split_whitespace().next().unwrap();
            let index = label.split(',').next().unwrap();
            (index.parse().unwrap(), format!("shard{index}"))
        })
        .collect();
    shards.sort();
    shards.into_iter().map(|(_, name)| name).collect()
}

#[test]
fn matches_go_photosrv_choosers_for_every_vector_config() {
    let v = vectors();
    let configs = v["configs"].as_object().unwrap();
    assert_eq!(configs.len(), 9);
    for (name, text) in configs {
        let text = text.as_str().unwrap();
        let kind = if text.contains("chooser jump") {
            ChooserKind::Jump
        } else {
            ChooserKind::Chash
        };
        let names = shard_names(text);
        let chooser = Chooser::new(kind, &names);
        let choices = v["choices"][name].as_object().unwrap();
        assert_eq!(choices.len(), 209, "{name}");
        for (key, want) in choices {
            assert_eq!(
                names[chooser.choose(key.as_bytes())],
                want.as_str().unwrap(),
                "{name}: key {key:?}"
            );
        }
    }
}
