//! Request path -> routing key: percent-decoding, refusal of hostile paths, slash
//! collapsing and prefix rewrites.
//!
//! The outcome for ordinary paths is the Go photosrv's, so keys land where they always did.
//! Where Go was lax we are strict (see `docs/compatibility.md`): one decode only, every run
//! of slashes collapsed, NUL and invalid encodings refused.

/// Why a request path has no key. The router maps each to a status: [`PathError::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in path")]
    BadEncoding,
    /// A NUL byte, raw or encoded.
    #[error("NUL byte in path")]
    Nul,
    /// The path is not absolute (does not start with `/`).
    #[error("path must start with '/'")]
    NotAbsolute,
    /// A segment starting with `.` (`.`, `..`, `.git`, `.hidden`): Go refused these too.
    #[error("path has a dot segment")]
    DotSegment,
    /// Nothing left to route: `/` or an empty path.
    #[error("no key in path")]
    Empty,
}

impl PathError {
    /// The HTTP status a router answers with: 400 for malformed input, 404 for paths that
    /// are well-formed but name nothing that may be served.
    pub fn status(self) -> u16 {
        match self {
            PathError::BadEncoding | PathError::Nul | PathError::NotAbsolute => 400,
            PathError::DotSegment | PathError::Empty => 404,
        }
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `raw` once. `+` stays `+` (this is a path, not a form).
pub fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    // The runs between escapes are copied whole: most paths have no escape at all.
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        out.extend_from_slice(&rest[..at]);
        let hi = rest.get(at + 1).copied().and_then(hex_value);
        let lo = rest.get(at + 2).copied().and_then(hex_value);
        match (hi, lo) {
            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
            _ => return Err(PathError::BadEncoding),
        }
        rest = &rest[at + 3..];
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// Whether a segment of `path` starts with `.`.
fn has_dot_segment(path: &[u8]) -> bool {
    path.windows(2).any(|w| w == b"/.")
}

/// Collapses every run of slashes to one, in place; does not move a byte when there is
/// no run.
fn collapse_slashes(path: &mut Vec<u8>) {
    if path.windows(2).any(|w| w == b"//") {
        path.dedup_by(|next, prev| *next == b'/' && *prev == b'/');
    }
}

/// Normalises a request target (path, optionally with `?query`, still percent-encoded) to
/// a decoded absolute path such as `/images/hello.jpg`.
///
/// ```
/// use photosrv_placement::path::{normalize, PathError};
/// assert_eq!(normalize(b"/images//hello%2Ejpg?w=1").unwrap(), b"/images/hello.jpg");
/// assert_eq!(normalize(b"/%2e%2e/etc/passwd"), Err(PathError::DotSegment));
/// assert_eq!(normalize(b"/a%zz"), Err(PathError::BadEncoding));
/// ```
pub fn normalize(target: &[u8]) -> Result<Vec<u8>, PathError> {
    let raw = match target.iter().position(|&b| b == b'?') {
        Some(query) => &target[..query],
        None => target,
    };
    let mut decoded = percent_decode(raw)?;
    if decoded.contains(&0) {
        return Err(PathError::Nul);
    }
    if decoded.first() != Some(&b'/') {
        return Err(if decoded.is_empty() {
            PathError::Empty
        } else {
            PathError::NotAbsolute
        });
    }
    // Go checks for "/." before cutting at a decoded '?', so "/a%3F/../b" is refused there.
    if has_dot_segment(&decoded) {
        return Err(PathError::DotSegment);
    }
    // Go cuts at a decoded '?': "/a%3Fb.jpg" is the key "a". Kept so such keys still land.
    if let Some(question) = decoded.iter().position(|&b| b == b'?') {
        decoded.truncate(question);
    }
    collapse_slashes(&mut decoded);
    if decoded.len() <= 1 {
        return Err(PathError::Empty);
    }
    Ok(decoded)
}

/// One prefix rewrite rule: a path starting with `from` has that prefix replaced by `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteRule {
    /// The prefix to match, case-sensitive; may end mid-segment, as in Go.
    pub from: String,
    /// What replaces it.
    pub to: String,
}

/// Prefix rewrites: the longest matching `from` applies, once.
#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    /// Sorted by `from` length, longest first, so the first match is the longest.
    rules: Vec<RewriteRule>,
}

impl Rewriter {
    /// A rewriter over validated rules (the config crate drops the invalid ones).
    pub fn new(mut rules: Vec<RewriteRule>) -> Self {
        rules.sort_by(|a, b| b.from.len().cmp(&a.from.len()).then(a.from.cmp(&b.from)));
        Rewriter { rules }
    }

    /// The rules, longest `from` first.
    pub fn rules(&self) -> &[RewriteRule] {
        &self.rules
    }

    /// Applies the longest matching rule to a normalised path; returns the path unchanged
    /// when none matches.
    pub fn rewrite(&self, path: Vec<u8>) -> Vec<u8> {
        for rule in &self.rules {
            if let Some(rest) = path.strip_prefix(rule.from.as_bytes()) {
                let mut out = Vec::with_capacity(rule.to.len() + rest.len());
                out.extend_from_slice(rule.to.as_bytes());
                out.extend_from_slice(rest);
                return out;
            }
        }
        path
    }
}

/// Target -> routing key: normalise, rewrite, drop the leading `/`. A rewrite that yields a
/// path with a dot segment or nothing to route is refused like the request itself would be.
pub fn routing_key(target: &[u8], rewriter: &Rewriter) -> Result<Vec<u8>, PathError> {
    let mut path = rewriter.rewrite(normalize(target)?);
    // Without rules the path is as `normalize` left it: nothing to check again.
    if !rewriter.rules.is_empty() {
        // A replacement may bring slashes back together (`/` -> `//x`): collapse them
        // again, so a key never starts with `/` (found by the path fuzz target).
        collapse_slashes(&mut path);
        if has_dot_segment(&path) {
            return Err(PathError::DotSegment);
        }
        if path.len() < 2 || path[0] != b'/' {
            return Err(PathError::Empty);
        }
    }
    // In place: one allocation fewer per request than copying the rest out.
    path.remove(0);
    Ok(path)
}

/// Whether `encode_path` passes `byte` as it is: unreserved characters, `/` and the
/// sub-delimiters nginx leaves alone.
const fn passes_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'/' | b'-'
                | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// [`passes_plain`] for every byte, looked up once per byte of a path.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = passes_plain(byte as u8);
        byte += 1;
    }
    table
};

/// Percent-encodes a key for use in an upstream URL path: unreserved characters, `/` and
/// the sub-delimiters nginx leaves alone pass; everything else becomes `%XX`.
pub fn encode_path(key: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(key.len());
    let mut rest = key;
    // The runs of plain bytes are copied whole: most keys are one run.
    while !rest.is_empty() {
        let run = rest
            .iter()
            .position(|&b| !PLAIN[b as usize])
            .unwrap_or(rest.len());
        out.push_str(std::str::from_utf8(&rest[..run]).expect("plain bytes are ASCII"));
        let Some(&byte) = rest.get(run) else { break };
        out.push('%');
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 15) as usize] as char);
        rest = &rest[run + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_what_must_never_reach_a_node() {
        for (target, want) in [
            (&b"/"[..], PathError::Empty),
            (b"", PathError::Empty),
            (b"//", PathError::Empty),
            (b"/../etc/passwd", PathError::DotSegment),
            (b"/%2e%2e/x", PathError::DotSegment),
            (b"/%2E%2E%2Fetc", PathError::DotSegment),
            (b"/a%2F..%2Fb", PathError::DotSegment),
            (b"/.git/x", PathError::DotSegment),
            (b"/a/./b", PathError::DotSegment),
            (b"/a%00b", PathError::Nul),
            (b"/a%2", PathError::BadEncoding),
            (b"/a%zz.jpg", PathError::BadEncoding),
            (b"a/b", PathError::NotAbsolute),
        ] {
            assert_eq!(
                normalize(target),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(target)
            );
        }
    }

    #[test]
    fn rewrite_takes_the_longest_match_once() {
        let rewriter = Rewriter::new(vec![
            RewriteRule {
                from: "/a/".into(),
                to: "/b/".into(),
            },
            RewriteRule {
                from: "/a/foo".into(),
                to: "/a/bar".into(),
            },
            RewriteRule {
                from: "/b/".into(),
                to: "/c/".into(),
            },
        ]);
        assert_eq!(rewriter.rewrite(b"/a/foobar/x".to_vec()), b"/a/barbar/x");
        assert_eq!(rewriter.rewrite(b"/a/x".to_vec()), b"/b/x");
        assert_eq!(rewriter.rewrite(b"/z".to_vec()), b"/z");
        assert_eq!(routing_key(b"/a/x", &rewriter).unwrap(), b"b/x");
        let froms: Vec<&str> = rewriter.rules().iter().map(|r| r.from.as_str()).collect();
        assert_eq!(froms, ["/a/foo", "/a/", "/b/"]);
    }

    #[test]
    fn a_rewrite_may_leave_a_one_byte_key_but_not_an_empty_one() {
        let rewriter = Rewriter::new(vec![
            RewriteRule {
                from: "/long/name".into(),
                to: "/k".into(),
            },
            RewriteRule {
                from: "/gone/".into(),
                to: "/".into(),
            },
            RewriteRule {
                from: "/void".into(),
                to: "".into(),
            },
        ]);
        assert_eq!(routing_key(b"/long/name", &rewriter), Ok(b"k".to_vec()));
        assert_eq!(routing_key(b"/gone/", &rewriter), Err(PathError::Empty));
        assert_eq!(routing_key(b"/void", &rewriter), Err(PathError::Empty));
    }

    #[test]
    fn malformed_paths_are_400_and_unservable_ones_404() {
        for (error, status) in [
            (PathError::BadEncoding, 400),
            (PathError::Nul, 400),
            (PathError::NotAbsolute, 400),
            (PathError::DotSegment, 404),
            (PathError::Empty, 404),
        ] {
            assert_eq!(error.status(), status, "{error:?}");
        }
    }

    /// fuzz/artifacts/path/crash-5ea697b9: rule `/` -> `//50`, target `/@`.
    #[test]
    fn a_rewrite_cannot_make_a_key_start_with_a_slash() {
        let rewriter = Rewriter::new(vec![RewriteRule {
            from: "/".into(),
            to: "//50".into(),
        }]);
        assert_eq!(routing_key(b"/@", &rewriter).unwrap(), b"50@");
    }

    #[test]
    fn encode_round_trips_through_decode() {
        let mut out = String::new();
        encode_path(b"/a b/%/\xff?#", &mut out);
        assert_eq!(out, "/a%20b/%25/%FF%3F%23");
        assert_eq!(percent_decode(out.as_bytes()).unwrap(), b"/a b/%/\xff?#");
    }

    /// Byte-at-a-time forms of the decoder, the encoder and the key's checks, as they
    /// were before runs were copied whole: what the fast ones must agree with.
    fn reference_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'%' {
                let hi = raw.get(i + 1).copied().and_then(hex_value);
                let lo = raw.get(i + 2).copied().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(PathError::BadEncoding),
                }
                i += 3;
            } else {
                out.push(raw[i]);
                i += 1;
            }
        }
        Ok(out)
    }

    fn reference_encode(key: &[u8]) -> String {
        key.iter()
            .map(|&b| {
                if passes_plain(b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    fn reference_key(target: &[u8], rewriter: &Rewriter) -> Result<Vec<u8>, PathError> {
        let mut path = rewriter.rewrite(normalize(target)?);
        path.dedup_by(|next, prev| *next == b'/' && *prev == b'/');
        if path.windows(2).any(|w| w == b"/.") {
            return Err(PathError::DotSegment);
        }
        if path.len() < 2 || path[0] != b'/' {
            return Err(PathError::Empty);
        }
        Ok(path[1..].to_vec())
    }

    fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b'/'),
                Just(b'.'),
                Just(b'%'),
                Just(b'2'),
                Just(b'e'),
                Just(b'F'),
                Just(b'0'),
                Just(b'a'),
                Just(b'?'),
                any::<u8>()
            ],
            0..40,
        )
    }

    proptest! {
        #[test]
        fn copying_runs_decodes_and_encodes_as_byte_at_a_time(raw in path_bytes()) {
            prop_assert_eq!(percent_decode(&raw), reference_decode(&raw));
            let mut encoded = String::new();
            encode_path(&raw, &mut encoded);
            prop_assert_eq!(encoded, reference_encode(&raw));
        }

        #[test]
        fn keys_are_checked_as_byte_at_a_time(
            target in path_bytes(),
            rules in proptest::collection::vec(("/[a/]{0,3}", "[a./]{0,4}"), 0..3),
        ) {
            let rewriter = Rewriter::new(
                rules.into_iter().map(|(from, to)| RewriteRule { from, to }).collect(),
            );
            prop_assert_eq!(routing_key(&target, &rewriter), reference_key(&target, &rewriter));
        }
    }

    proptest! {
        #[test]
        fn a_normalised_path_has_no_dot_segment_nul_or_double_slash(
            target in proptest::collection::vec(
                prop_oneof![Just(b'/'), Just(b'.'), Just(b'%'), Just(b'2'), Just(b'e'),
                            Just(b'E'), Just(b'f'), Just(b'F'), Just(b'0'), Just(b'a'),
                            Just(b'?'), any::<u8>()],
                0..40)
        ) {
            if let Ok(path) = normalize(&target) {
                prop_assert!(path.starts_with(b"/"));
                prop_assert!(!path.windows(2).any(|w| w == b"/." || w == b"//"));
                prop_assert!(!path.contains(&0));
                prop_assert!(path.len() > 1);
            }
        }

        #[test]
        fn encoding_a_normalised_path_normalises_to_itself(
            key in proptest::collection::vec(any::<u8>(), 1..40)
        ) {
            let mut path = b"/".to_vec();
            path.extend_from_slice(&key);
            if let Ok(normal) = normalize(&{ let mut s = String::new(); encode_path(&path, &mut s); s.into_bytes() }) {
                let mut again = String::new();
                encode_path(&normal, &mut again);
                prop_assert_eq!(normalize(again.as_bytes()).unwrap(), normal);
            }
        }
    }
}
