//! Request path -> file path, refusing anything that could leave the root.

use photosrv_placement::path::percent_decode;
use std::path::{Path, PathBuf};

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    /// Invalid percent-encoding, NUL, backslash or an encoded slash: 400.
    #[error("malformed path")]
    Malformed,
    /// A `.`/`..` segment or a hidden name (temporary files are hidden): 404.
    #[error("dot segment in path")]
    Dot,
    /// A symlink inside the root points outside it: 403.
    #[error("path leads outside the storage root")]
    Escapes,
}

/// Maps a raw (still percent-encoded) request path to a path under `root`, without
/// touching the file system. The result is `root` joined with plain, non-dot segments.
/// A trailing `/` is kept as an empty last segment's absence; `is_dir` tells whether the
/// request named a collection.
pub fn resolve(root: &Path, raw_path: &str) -> Result<(PathBuf, bool), PathRefused> {
    // The http crate has already dropped any `#fragment` (litmus warns about that).
    let raw = raw_path.split('?').next().unwrap_or("");
    // An encoded slash or backslash would let a segment hide a separator.
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || raw.contains('\\') {
        return Err(PathRefused::Malformed);
    }
    let decoded = percent_decode(raw.as_bytes()).map_err(|_| PathRefused::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| PathRefused::Malformed)?;
    if decoded.contains('\0') || !decoded.starts_with('/') {
        return Err(PathRefused::Malformed);
    }
    let mut path = root.to_path_buf();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment.starts_with('.') {
            return Err(PathRefused::Dot);
        }
        path.push(segment);
    }
    Ok((path, decoded.ends_with('/')))
}

/// Whether the existing part of `path` stays inside `root` once symlinks are followed.
pub(crate) fn stays_inside(root: &Path, path: &Path) -> bool {
    // Walk up to the deepest ancestor that exists, and check where it really is.
    let mut probe = path.to_path_buf();
    loop {
        match std::fs::canonicalize(&probe) {
            Ok(real) => return real.starts_with(root),
            Err(_) => {
                if !probe.pop() || !probe.starts_with(root) {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_escapes() {
        let root = Path::new("/srv/data");
        for raw in [
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/a%2fb",
            "/a%2F..%2Fb",
            "/a\\b",
            "/a%5cb",
            "/a%00b",
            "/.tmp/x",
            "/a/./b",
            "/a%zz",
            "x",
        ] {
            assert!(resolve(root, raw).is_err(), "{raw}");
        }
        assert_eq!(
            resolve(root, "/a//b%20c.jpg").unwrap(),
            (PathBuf::from("/srv/data/a/b c.jpg"), false)
        );
        assert_eq!(
            resolve(root, "/coll/").unwrap(),
            (PathBuf::from("/srv/data/coll"), true)
        );
    }

    proptest! {
        #[test]
        fn no_generated_path_leaves_the_root(
            segments in proptest::collection::vec(
                prop_oneof![
                    Just("..".to_owned()), Just(".".to_owned()), Just("%2e%2e".to_owned()),
                    Just("%2E.".to_owned()), Just("%2f".to_owned()), Just("%5c".to_owned()),
                    Just("\\..".to_owned()), Just("%00".to_owned()), Just("".to_owned()),
                    "[a-z%.]{1,6}",
                ],
                0..8)
        ) {
            let raw = format!("/{}", segments.join("/"));
            let root = Path::new("/srv/data");
            if let Ok((path, _)) = resolve(root, &raw) {
                prop_assert!(path.starts_with(root));
                prop_assert!(path.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_))));
                prop_assert!(!path.to_string_lossy().contains("/."));
            }
        }
    }
}
