//! The path normaliser and rewriter: never a panic, and what comes out is always safe to
//! route: absolute, no dot segment, no empty segment, no NUL, and stable when encoded and
//! normalised again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photosrv_placement::path::{encode_path, normalize, routing_key, RewriteRule, Rewriter};

fuzz_target!(|data: &[u8]| {
    // The first bytes choose a rewrite rule; the rest is the request target.
    let (rule, target) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b""[..], data),
    };
    let rules = std::str::from_utf8(rule)
        .ok()
        .and_then(|r| r.split_once(' '))
        // As the config crate validates them: absolute, no control characters.
        .filter(|(from, to)| from.starts_with('/') && to.starts_with('/'))
        .filter(|(from, to)| !from.chars().chain(to.chars()).any(char::is_control))
        .map(|(from, to)| vec![RewriteRule { from: from.to_owned(), to: to.to_owned() }])
        .unwrap_or_default();
    let rewriter = Rewriter::new(rules);
    if let Ok(path) = normalize(target) {
        assert!(path.starts_with(b"/") && path.len() > 1);
        assert!(!path.windows(2).any(|w| w == b"/." || w == b"//"), "{path:?}");
        assert!(!path.contains(&0));
        let mut encoded = String::new();
        encode_path(&path, &mut encoded);
        assert_eq!(normalize(encoded.as_bytes()).as_deref(), Ok(path.as_slice()), "not stable: {encoded}");
    }
    if let Ok(key) = routing_key(target, &rewriter) {
        assert!(!key.is_empty() && !key.starts_with(b"/"));
        let mut path = b"/".to_vec();
        path.extend_from_slice(&key);
        assert!(!path.windows(2).any(|w| w == b"/."), "{key:?}");
        assert!(!key.contains(&0));
    }
});
