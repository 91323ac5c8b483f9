//! Nanoseconds per key for each chooser at 10, 1,000 and 100,000 shards (40-byte keys),
//! and for path normalisation.
// criterion_group! generates functions that cannot carry docs.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use photosrv_placement::path::{routing_key, Rewriter};
use photosrv_placement::{jump_hash, siphash24, Chooser, ChooserKind};

fn keys() -> Vec<Vec<u8>> {
    (0..1024)
        .map(|i| format!("images/hotel/max500/{:07}/{:08}.jpg", i * 7919, i).into_bytes())
        .inspect(|k| assert_eq!(k.len(), 40))
        .collect()
}

fn choosers(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("choose");
    group.throughput(Throughput::Elements(keys.len() as u64));
    for shards in [10usize, 1_000, 100_000] {
        let names: Vec<String> = (1..=shards).map(|i| format!("shard{i}")).collect();
        for kind in [ChooserKind::Jump, ChooserKind::Chash] {
            let chooser = Chooser::new(kind, &names);
            group.bench_with_input(BenchmarkId::new(kind.name(), shards), &keys, |b, keys| {
                b.iter(|| {
                    for key in keys {
                        black_box(chooser.choose(black_box(key)));
                    }
                })
            });
        }
    }
    group.finish();
    // The two halves of jump placement, apart.
    let mut parts = c.benchmark_group("parts");
    parts.throughput(Throughput::Elements(keys.len() as u64));
    parts.bench_function("siphash24_40B", |b| {
        b.iter(|| {
            for key in &keys {
                black_box(siphash24(black_box(key)));
            }
        })
    });
    let hashes: Vec<u64> = keys.iter().map(|k| siphash24(k)).collect();
    parts.bench_function("jump_hash_100000", |b| {
        b.iter(|| {
            for &h in &hashes {
                black_box(jump_hash(black_box(h), 100_000));
            }
        })
    });
    parts.finish();
}

fn normalise(c: &mut Criterion) {
    let rewriter = Rewriter::default();
    let mut group = c.benchmark_group("routing_key");
    for target in [
        &b"/images/hotel/max500/12345678/0000000042.jpg"[..],
        b"/images//hotel/max500/%31%32345678/0000000042.jpg?w=500",
    ] {
        group.bench_function(String::from_utf8_lossy(target).into_owned(), |b| {
            b.iter(|| black_box(routing_key(black_box(target), &rewriter)))
        });
    }
    group.finish();
}

criterion_group!(benches, choosers, normalise);
criterion_main!(benches);
