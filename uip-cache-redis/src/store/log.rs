//! The shared invalidation log: what every instance reads before and after
//! storing a response, to learn whether another instance invalidated it
//! meanwhile. Its bounds keep those reads small whatever clients send:
//!
//! - a line holds at most [`LINE_MAX`] bytes: a longer one (a long URL, many
//!   tags) is recorded as a wider invalidation that concerns at least what
//!   it concerned (the path without its query, a prefix of the path, or
//!   everything), so a reader fences at least as much, never less;
//! - at most [`RATE_MAX`] lines a second are recorded, by all instances
//!   together: past that, the epoch still rises but no line is written,
//!   and a reader whose fetch spans such a gap, like one whose fetch
//!   outlived the log, assumes the worst and does not store;
//! - a read returns at most [`READ_MAX`] lines: a fetch that saw more
//!   invalidations than that is not stored either.
//!
//! Reads of the log never count toward opening the circuit: a slow read is
//! an unknown answer (the response is not stored), not an outage.
//!
//! The scripts `scripts::RECORD` and `scripts::SINCE` write and read it,
//! under the keys `Keys::epoch`, `Keys::log` and `Keys::log_rate`.

use std::borrow::Cow;

use uip_cache_core::invalidate::Invalidation;
use uip_cache_core::pattern::PathSelector;
use uip_cache_core::UrlPattern;

/// How many invalidations the log keeps for fetches in flight.
pub(super) const LEN: u64 = 1024;

/// The longest line the log holds, in bytes.
pub(super) const LINE_MAX: usize = 512;

/// The most lines recorded in one second, by all instances together.
pub(super) const RATE_MAX: u64 = 1000;

/// The most lines one read returns.
pub(super) const READ_MAX: u64 = 256;

/// A line that concerns every entry.
const EVERYTHING: &str = "g *";

/// `line`, or a wider invalidation's line of at most [`LINE_MAX`] bytes.
pub(super) fn bounded(line: &str) -> Cow<'_, str> {
    if line.len() <= LINE_MAX {
        return Cow::Borrowed(line);
    }
    let wider = match Invalidation::from_line(line) {
        Some(Invalidation::Pattern(p)) => match p.selector() {
            PathSelector::Exact(path) => Some(UrlPattern::exact_path(path).to_line())
                .filter(|l| l.len() <= LINE_MAX)
                .or_else(|| prefix_line(path)),
            PathSelector::Prefix(prefix) => prefix_line(prefix),
            _ => None,
        },
        // Tags match exactly: no shorter line concerns them all but this.
        _ => None,
    };
    Cow::Owned(
        wider
            .filter(|l| l.len() <= LINE_MAX)
            .unwrap_or_else(|| EVERYTHING.to_owned()),
    )
}

/// A glob for every path starting with the first bytes of `path`: a
/// superset of any pattern whose paths start with `path` (a `*` in the
/// kept bytes only widens it further).
fn prefix_line(path: &str) -> Option<String> {
    let mut end = LINE_MAX - 8;
    while !path.is_char_boundary(end.min(path.len())) {
        end -= 1;
    }
    let kept = &path[..end.min(path.len())];
    UrlPattern::glob(&format!("{kept}*"))
        .ok()
        .map(|p| p.to_line())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concerns(line: &str, url: &str, tags: &[String]) -> bool {
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url, None),
        };
        Invalidation::from_line(line).is_none_or(|i| i.concerns(path, query, tags))
    }

    #[test]
    fn short_lines_stay_as_they_are() {
        let line = Invalidation::Pattern(UrlPattern::exact("/a?b=1")).to_line();
        assert_eq!(bounded(&line), line.as_str());
    }

    proptest::proptest! {
        #[test]
        fn a_bounded_line_concerns_at_least_what_the_line_did(
            path in "/[a-zé*/]{0,700}",
            query in proptest::option::of("[a-z=&]{0,700}"),
            other in "/[a-z]{0,20}",
            tags in proptest::collection::vec("[a-z:]{1,200}", 0..8),
        ) {
            let url = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let lines = [
                Invalidation::Pattern(UrlPattern::exact(&url)).to_line(),
                Invalidation::Pattern(UrlPattern::exact_path(&path)).to_line(),
                Invalidation::Tags(tags.clone()).to_line(),
            ];
            for line in lines {
                let b = bounded(&line);
                proptest::prop_assert!(b.len() <= LINE_MAX);
                for (u, t) in [(url.as_str(), &tags[..]), (other.as_str(), &[][..])] {
                    if concerns(&line, u, t) {
                        proptest::prop_assert!(concerns(&b, u, t), "{} lost {}", b, u);
                    }
                }
            }
        }
    }
}
