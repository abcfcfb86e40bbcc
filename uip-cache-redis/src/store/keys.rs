//! The layout in Redis: the name of every key (and of the invalidation
//! channel) the store uses, and the format of the members of its indexes,
//! written and parsed here only. [`RedisStore`](super::RedisStore)'s docs
//! describe what each key holds.

use uip_cache_core::pattern::PathSelector;
use uip_cache_core::UrlPattern;

/// The names of the store's keys, all under the configured key prefix.
///
/// Keys with the same braces share a hash slot on a cluster: the path
/// indexes and the tags index (`{paths}`), updated together by one
/// pipeline and one script; the epoch, the invalidation log and its rate
/// counter (`{inv}`), updated together by one script. A tag's set has a
/// slot of its own.
#[derive(Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The key prefix (`cache:` by default).
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every entry, ordered by path (for prefix ranges).
    pub(super) fn paths(&self) -> String {
        format!("{}idx:{{paths}}", self.prefix)
    }

    /// Every entry, scored by expiry (for pruning).
    pub(super) fn paths_exp(&self) -> String {
        format!("{}idx:{{paths}}:exp", self.prefix)
    }

    /// Every tag, scored by the latest expiry of its entries.
    pub(super) fn tags(&self) -> String {
        format!("{}idx:{{paths}}:tags", self.prefix)
    }

    /// The entries carrying `tag`, scored by expiry.
    pub(super) fn tag(&self, tag: &str) -> String {
        format!("{}idx:tag:{tag}", self.prefix)
    }

    /// The counter every recorded invalidation raises.
    pub(super) fn epoch(&self) -> String {
        format!("{}idx:{{inv}}:epoch", self.prefix)
    }

    /// The invalidation log (see [`log_line`] for its members).
    pub(super) fn log(&self) -> String {
        format!("{}idx:{{inv}}:log", self.prefix)
    }

    /// The rate counter of the invalidation log (same slot as the log).
    pub(super) fn log_rate(&self) -> String {
        format!("{}idx:{{inv}}:rate", self.prefix)
    }

    /// The pub/sub channel a tiered store's instances tell each other
    /// about invalidations on.
    pub(super) fn invalidation_channel(&self) -> String {
        format!("{}invalidations", self.prefix)
    }
}

// ===== index members =====

/// The member naming an entry in the path indexes and in its tags' sets:
/// `path \0 query \0 key \0 generation`, the generation as 16 hex digits.
/// Path first, so the path index orders members by path; the generation
/// last, so a purge deletes the entry only while it still holds the write
/// the member names.
pub(super) fn member(path: &str, query: Option<&str>, key: &str, generation: u64) -> Vec<u8> {
    let mut member = Vec::with_capacity(path.len() + key.len() + 24);
    member.extend_from_slice(path.as_bytes());
    member.push(0);
    member.extend_from_slice(query.unwrap_or("").as_bytes());
    member.push(0);
    member.extend_from_slice(key.as_bytes());
    member.push(0);
    member.extend_from_slice(format!("{generation:016x}").as_bytes());
    member
}

/// `path \0 query \0 key \0 generation-hex` -> (key, generation bytes).
pub(super) fn parse_member(m: &[u8]) -> Option<(&[u8], [u8; 8])> {
    let mut parts = m.splitn(4, |&b| b == 0);
    let (_path, _query, key, generation) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let generation = u64::from_str_radix(std::str::from_utf8(generation).ok()?, 16).ok()?;
    Some((key, generation.to_be_bytes()))
}

/// A member's path and query (`None` for an empty one).
pub(super) fn member_path_query(m: &[u8]) -> Option<(&str, Option<&str>)> {
    let mut parts = m.splitn(3, |&b| b == 0);
    let path = std::str::from_utf8(parts.next()?).ok()?;
    let query = std::str::from_utf8(parts.next()?).ok()?;
    Some((path, (!query.is_empty()).then_some(query)))
}

/// The lexicographic range of path-index members a pattern can match.
pub(super) fn pattern_range(pattern: &UrlPattern) -> (Vec<u8>, Vec<u8>) {
    let mut min = b"[".to_vec();
    match pattern.selector() {
        PathSelector::Exact(p) => {
            min.extend_from_slice(p.as_bytes());
            min.push(0);
        }
        // Prefix, or any selector a newer core adds: the widest range.
        _ => min.extend_from_slice(pattern.literal_prefix().as_bytes()),
    }
    let mut max = min.clone();
    max.push(0xff);
    (min, max)
}

// ===== log members =====

/// The invalidation line of a log member. Members are `<seq> <line>`
/// (written by the `RECORD` script): the sequence keeps equal lines apart.
pub(super) fn log_line(member: &[u8]) -> String {
    let m = String::from_utf8_lossy(member).into_owned();
    match m.split_once(' ') {
        Some((_, line)) => line.to_owned(),
        None => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_parsed_as_they_are_written() {
        let m = b"/e/1\x00a=1\x00cache:abc\x00000000000000002a".to_vec();
        let (key, g) = parse_member(&m).unwrap();
        assert_eq!(key, b"cache:abc");
        assert_eq!(u64::from_be_bytes(g), 42);
        assert_eq!(member_path_query(&m), Some(("/e/1", Some("a=1"))));
        assert_eq!(member_path_query(b"/e\x00\x00k\x000"), Some(("/e", None)));
        assert_eq!(member("/e/1", Some("a=1"), "cache:abc", 42), m);
        let m = member("/e", None, "k", u64::MAX);
        assert_eq!(member_path_query(&m), Some(("/e", None)));
        assert_eq!(u64::from_be_bytes(parse_member(&m).unwrap().1), u64::MAX);
        assert_eq!(log_line(b"7 t a b"), "t a b");
    }

    #[test]
    fn key_names_are_the_documented_layout() {
        let k = Keys::new("cache:");
        assert_eq!(k.paths(), "cache:idx:{paths}");
        assert_eq!(k.paths_exp(), "cache:idx:{paths}:exp");
        assert_eq!(k.tags(), "cache:idx:{paths}:tags");
        assert_eq!(k.tag("camera"), "cache:idx:tag:camera");
        assert_eq!(k.epoch(), "cache:idx:{inv}:epoch");
        assert_eq!(k.log(), "cache:idx:{inv}:log");
        assert_eq!(k.log_rate(), "cache:idx:{inv}:rate");
        assert_eq!(k.invalidation_channel(), "cache:invalidations");
    }
}
