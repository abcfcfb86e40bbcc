//! `policies`: one entry per kind of URL cached.

use std::collections::HashMap;

use serde::Deserialize;

use super::de::positive_duration;
use super::{ByteSize, ConfigProblem, Located, Seconds};

/// One caching policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Unique name; entries get the tag `policy:<name>`.
    pub name: Located<String>,
    /// The URL pattern; see [`PatternType`].
    pub pattern: Located<String>,
    /// How `pattern` is read; inferred when left out.
    #[serde(default)]
    pub pattern_type: Option<PatternType>,
    /// Freshness lifetime. Without it only what the origin marks fresh is stored.
    #[serde(default, deserialize_with = "positive_duration")]
    pub ttl: Option<Seconds>,
    /// Largest body stored (default `defaults.max_size`); larger responses pass through.
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    /// Largest request body keyed on when `vary_by` has `body` (default
    /// `defaults.max_body`); larger request bodies bypass the cache.
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// With a store that takes bodies as they stream in (the disk store),
    /// a response whose `Content-Length` is larger than this, or that has
    /// none once it passes this, is written to the store as it arrives
    /// instead of being held in memory until it ends (default
    /// `defaults.stream_above`). The policy's `max_size` still bounds what
    /// is stored.
    #[serde(default)]
    pub stream_above: Option<ByteSize>,
    /// A `Range` request that misses fetches the whole response to store
    /// it, unless the representation is known to be larger than this
    /// (default `defaults.range_passthrough_above`, else the policy's
    /// `max_size`): then the `Range` goes to the origin and its 206 passes
    /// through uncached. 0: every `Range` request that misses does so.
    #[serde(default)]
    pub range_passthrough_above: Option<ByteSize>,
    /// Compression of stored bodies.
    #[serde(default)]
    pub compression: Option<CompressionConfig>,
    /// Per-policy warming schedule.
    #[serde(default)]
    pub warming: Option<PolicyWarmingConfig>,
    /// Webhook events that invalidate this policy's entries.
    #[serde(default)]
    pub invalidate_on: Vec<String>,
    /// What the key varies by: plain names mean a query parameter and a header of
    /// that name; `query:NAME`, `header:NAME` and `body` are explicit.
    #[serde(default)]
    pub vary_by: Vec<String>,
    /// Tags added to every entry of this policy.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How long a stale entry may be served while it is refreshed in the background.
    #[serde(default)]
    pub stale_while_revalidate: Option<Seconds>,
    /// How long a stale entry may be served when the origin fails.
    #[serde(default)]
    pub stale_if_error: Option<Seconds>,
    /// `default`: origin freshness wins, `ttl` when the origin gives none;
    /// `override`: `ttl` always.
    #[serde(default)]
    pub ttl_mode: TtlMode,
    /// Methods cached (default GET and HEAD).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Statuses the policy `ttl` gives freshness to (and, without a `ttl`,
    /// heuristic freshness). Default: 200, 203, 204, 300, 301, 308 for the
    /// `ttl`; for heuristic freshness those and 404, 405, 410, 414, 501
    /// (RFC 9111 section 4.2.2). Any status may still be stored on the
    /// origin's explicit freshness (`max-age`, `s-maxage`, `Expires`).
    #[serde(default)]
    pub statuses: Option<Vec<u16>>,
    /// The longest an error status (400 and above) stays fresh, whatever
    /// gave it freshness: the origin, `ttl` (for statuses listed in
    /// `statuses`) or heuristics (default `defaults.negative_ttl`; 0: error
    /// responses are never served without asking the origin).
    #[serde(default)]
    pub negative_ttl: Option<Seconds>,
}

/// How a policy pattern is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PatternType {
    /// The path (or path and query, when the pattern has `?`) exactly.
    Exact,
    /// `*` matches any run of characters; `?` starts the query constraints.
    Glob,
    /// `/entities/{id}`: segment parameters, available as tags.
    PathTemplate,
    /// A regular expression against the path and query.
    Regex,
}

impl PatternType {
    /// The type a pattern without `pattern_type` gets: `{...}` is a path template,
    /// a leading `^` a regex, `*` a glob, anything else exact.
    pub fn infer(pattern: &str) -> Self {
        if pattern.starts_with('^') {
            PatternType::Regex
        } else if pattern.contains('{') && pattern.contains('}') {
            PatternType::PathTemplate
        } else if pattern.contains('*') {
            PatternType::Glob
        } else {
            PatternType::Exact
        }
    }
}

/// Whose freshness wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TtlMode {
    /// Origin Cache-Control / Expires win; the policy `ttl` applies when they say nothing.
    #[default]
    Default,
    /// The policy `ttl` always applies.
    Override,
}

/// Compression of stored bodies.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CompressionConfig {
    /// On when the block is present (default true).
    pub enabled: bool,
    /// Only `gzip`.
    pub algorithm: CompressionAlgorithm,
    /// Bodies smaller than this are stored as they are (default 1KB).
    pub min_size: ByteSize,
    /// gzip level 1 (fast) to 9 (small); default 6.
    pub level: u32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: true,
            algorithm: CompressionAlgorithm::Gzip,
            min_size: ByteSize(1024),
            level: 6,
        }
    }
}

/// Compression algorithms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CompressionAlgorithm {
    /// gzip (RFC 1952).
    #[default]
    Gzip,
}

/// `warming` inside a policy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PolicyWarmingConfig {
    /// Whether this policy's warm URLs are refreshed on `schedule`.
    pub enabled: bool,
    /// A cron expression (5 or 6 fields).
    pub schedule: Option<Located<String>>,
}

/// What the list of policies can tell of itself: names are unique, gzip
/// levels in range. Patterns, methods, statuses and sizes are checked
/// where the policies are compiled.
pub(super) fn check_policies(policies: &[PolicyConfig], problems: &mut Vec<ConfigProblem>) {
    let mut seen = HashMap::new();
    for (i, p) in policies.iter().enumerate() {
        if let Some(first) = seen.insert(p.name.value.as_str(), i) {
            problems.push(ConfigProblem::new(
                p.name.line,
                format!("policies[{i}].name"),
                format!(
                    "duplicate policy name `{}` (also policies[{first}])",
                    p.name.value
                ),
            ));
        }
        if let Some(c) = &p.compression {
            if !(1..=9).contains(&c.level) {
                problems.push(ConfigProblem::new(
                    p.pattern.line,
                    format!("policies[{i}].compression.level"),
                    format!("gzip level must be 1 to 9, not {}", c.level),
                ));
            }
        }
    }
}
