//! The three hash functions the Go photosrv's choosers are built from.

use std::hash::Hasher;

/// SipHash-2-4 of the raw key bytes with a zero key (k0 = k1 = 0), as `dchest/siphash`
/// computes it in the Go photosrv.
///
/// This hashes the bytes themselves: Rust's `Hash` trait would append a terminator byte
/// and give other values.
pub fn siphash24(key: &[u8]) -> u64 {
    let mut hasher = siphasher::sip::SipHasher24::new_with_keys(0, 0);
    hasher.write(key);
    hasher.finish()
}

/// Lamping and Veach's jump consistent hash: the bucket in `0..buckets` for `key`.
///
/// Written with wrapping arithmetic because the `jump-consistent-hash` crate overflows
/// (and panics in debug builds) on keys such as `0x201997f8666313ab`. The floating point
/// steps are those of the reference and of go-jump, so the buckets are identical
/// (the tests compare it with the loop as published).
///
/// # Panics
/// When `buckets` is zero: there is no bucket to return.
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    assert!(buckets > 0, "jump_hash needs at least one bucket");
    // The loop is a chain of dependent float steps, so its speed is their latency. Two
    // rewrites keep every rounding of the reference: the exit test compares the product
    // itself (for an integer n, x >= n exactly when trunc(x) >= n), and b + 1 is computed
    // in f64, exact below 2^53. Where trunc is one instruction (SSE4.1 `roundsd`, which
    // .cargo/config.toml enables, or any non-x86 target) b stays in f64 and the chain
    // never leaves the float unit; without it, trunc is a libm call and the integer
    // conversion is faster. docs/benchmarks.md has the figures.
    let n = f64::from(buckets);
    let trunc_is_one_instruction = cfg!(any(
        target_feature = "sse4.1",
        not(any(target_arch = "x86", target_arch = "x86_64"))
    ));
    if trunc_is_one_instruction {
        let mut b = 0.0f64;
        loop {
            key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
            let x = (b + 1.0) * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64);
            if x >= n {
                // b is an integer in 0..buckets.
                return b as u32;
            }
            b = x.trunc();
        }
    } else {
        let mut b: i64 = 0;
        loop {
            key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
            let x = (b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64);
            if x >= n {
                return b as u32;
            }
            // x < buckets <= u32::MAX, so it converts without saturating.
            b = x as i64;
        }
    }
}

/// LevelDB's 32-bit bloom filter hash (seed 0xbc9f1d34, multiplier 0xc6a4a793), the hash of
/// the Go photosrv's chash ring.
pub fn leveldb_hash(bytes: &[u8]) -> u32 {
    const SEED: u32 = 0xbc9f_1d34;
    const M: u32 = 0xc6a4_a793;
    // Go computes uint32(len(b)*m) in int: the same as wrapping u32 arithmetic.
    let mut h = SEED ^ (bytes.len() as u32).wrapping_mul(M);
    let mut chunks = bytes.chunks_exact(4);
    for word in &mut chunks {
        h = h.wrapping_add(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
        h = h.wrapping_mul(M);
        h ^= h >> 16;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        if rest.len() == 3 {
            h = h.wrapping_add(u32::from(rest[2]) << 16);
        }
        if rest.len() >= 2 {
            h = h.wrapping_add(u32::from(rest[1]) << 8);
        }
        h = h.wrapping_add(u32::from(rest[0]));
        h = h.wrapping_mul(M);
        h ^= h >> 24;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Jump hash exactly as Lamping and Veach publish it (and go-jump ports it): the oracle
    /// that [`jump_hash`] is tested against.
    fn jump_hash_reference(mut key: u64, buckets: u32) -> u32 {
        let mut b: i64 = -1;
        let mut j: i64 = 0;
        while j < i64::from(buckets) {
            b = j;
            key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
            j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
        }
        b as u32
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn fast_jump_matches_the_reference_loop(
            key in any::<u64>(),
            buckets in prop_oneof![1u32..1_000, 1u32..],
        ) {
            prop_assert_eq!(jump_hash(key, buckets), jump_hash_reference(key, buckets));
        }
    }

    /// go-jump's table, generated from the reference C++ code: buckets 1..=N per key.
    #[test]
    fn matches_published_jump_vectors() {
        let table: &[(u64, &[u32])] = &[
            (0, &[0; 20]),
            (
                1,
                &[0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17],
            ),
            (
                0xdeadbeef,
                &[0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16],
            ),
            (
                0x0ddc0ffeebadf00d,
                &[0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15],
            ),
        ];
        for &(key, want) in table {
            for (i, &bucket) in want.iter().enumerate() {
                let buckets = i as u32 + 1;
                assert_eq!(
                    jump_hash(key, buckets),
                    bucket,
                    "jump_hash({key:#x}, {buckets})"
                );
            }
        }
    }

    /// The fast loop against the published one, over every bucket count that changes
    /// the number of steps (powers of two and their neighbours) and keys that make the
    /// float quotient an exact power of two (key >> 33 of the form 2^k - 1).
    #[test]
    fn fast_jump_matches_the_reference_loop_at_the_edges() {
        let mut keys = vec![0u64, 1, u64::MAX, 0x2019_97f8_6663_13ab];
        keys.extend((0..31).map(|k| ((1u64 << k) - 1) << 33));
        let mut buckets = vec![1u32, u32::MAX];
        for k in 1..32 {
            buckets.extend([(1u32 << k) - 1, 1 << k, (1u32 << k).wrapping_add(1)]);
        }
        for &key in &keys {
            for &n in buckets.iter().filter(|&&n| n > 0) {
                assert_eq!(
                    jump_hash(key, n),
                    jump_hash_reference(key, n),
                    "{key:#x} {n}"
                );
            }
        }
    }

    #[test]
    fn jump_does_not_overflow_on_the_key_that_breaks_the_crate() {
        let key = 0x2019_97f8_6663_13ab;
        for buckets in [1, 2, 3, 10, 1000, u32::MAX] {
            assert!(jump_hash(key, buckets) < buckets);
        }
    }

    #[test]
    fn leveldb_hash_of_empty_is_seed() {
        assert_eq!(leveldb_hash(b""), 0xbc9f_1d34);
    }
}
