//! Matching the path of a request against a route's `path_prefix`, and the
//! paths no prefix route may take.
//!
//! A prefix is compared with the path exactly as the client sent it (and as
//! the cache key holds it): no percent-decoding, no case folding. A
//! backend may read a path differently (decode `%2e`, take `\` or `%2F`
//! for `/`, drop `;params`, merge `//`), but a path that starts with the
//! prefix's own bytes and has no dot segment stays under that prefix
//! however it is read, as the prefix holds none of those characters (the
//! config refuses them). What could move a path out from under its prefix
//! is a `.` or `..` segment in some reading: [`has_dot_segment`] finds
//! them, and such requests are refused rather than routed.

/// Whether `prefix` (checked by the config) matches `path`: the path starts
/// with it, at a segment boundary. `/sparql` matches `/sparql`,
/// `/sparql/` and `/sparql/x`, not `/sparqlx`; `/ngsi-ld/` matches what
/// starts with `/ngsi-ld/` (not `/ngsi-ld`).
pub(super) fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len()
            || prefix.ends_with('/')
            || path.as_bytes()[prefix.len()] == b'/')
}

/// Rounds of percent-decoding looked through: a backend that decodes twice
/// reads `%252e` as `.`.
const DECODE_ROUNDS: usize = 3;

/// Whether some backend could read `path` with a `.` or `..` segment:
/// after percent-decoding (up to [`DECODE_ROUNDS`] times), with `/` and
/// `\` both separating segments and a `;` ending a segment's name (`..;`
/// is `..` to Tomcat). Clients that follow RFC 3986 remove dot segments
/// before they send a request, so only a crafted request has one.
pub(super) fn has_dot_segment(path: &str) -> bool {
    let bytes = path.as_bytes();
    // The common path: no escapes and no backslash, so a dot segment
    // needs a `/` followed by a `.`.
    if !bytes.iter().any(|&b| b == b'%' || b == b'\\') {
        return path.contains("/.") && dots_in(bytes);
    }
    let mut current = bytes.to_vec();
    for _ in 0..=DECODE_ROUNDS {
        if dots_in(&current) {
            return true;
        }
        match decoded(&current) {
            Some(next) => current = next,
            None => return false,
        }
    }
    false
}

/// Whether `bytes` has a segment (between `/` or `\`) whose name (before
/// any `;`) is `.` or `..`.
fn dots_in(bytes: &[u8]) -> bool {
    bytes.split(|&b| b == b'/' || b == b'\\').any(|segment| {
        let name = segment.split(|&b| b == b';').next().unwrap_or(segment);
        name == b"." || name == b".."
    })
}

/// `bytes` with each valid `%XX` decoded, or `None` when there is none.
fn decoded(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                changed = true;
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    changed.then_some(out)
}
