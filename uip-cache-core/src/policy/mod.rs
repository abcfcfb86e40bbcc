//! Policies: which requests are cached, for how long, under which key and tags.
//!
//! [`PolicySet::find`] returns the first policy, in file order, whose pattern
//! matches. Patterns are `exact`, `glob`, `path_template` or `regex`; see
//! [`PatternType`](crate::config::PatternType).
//!
//! One concern a file: what a compiled [`Policy`] holds and answers (here),
//! compiling one from the config with its defaults (`compile.rs`), matching
//! a path and query (`matcher.rs`), and the ordered [`PolicySet`] with its
//! [`PolicyMatch`] (`set.rs`).
//!
//! ```
//! use uip_cache_core::{CacheConfig, PolicySet};
//!
//! let config = CacheConfig::from_yaml_str(r#"
//! policies:
//!   - name: camera_entities
//!     pattern: "/ngsi-ld/v1/entities?type=Camera*"
//!     pattern_type: glob
//!     ttl: 60
//!   - name: entity_by_id
//!     pattern: "/ngsi-ld/v1/entities/{id}"
//!     ttl: 300
//! "#)?;
//! let policies = PolicySet::compile(&config).unwrap();
//! let m = policies.find("/ngsi-ld/v1/entities", Some("type=Camera&limit=100")).unwrap();
//! assert_eq!(m.policy().name(), "camera_entities");
//! let m = policies.find("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001", None).unwrap();
//! assert_eq!(m.params(), &[("id".to_string(), "urn:ngsi-ld:Camera:001".to_string())]);
//! # Ok::<(), uip_cache_core::ConfigError>(())
//! ```

use std::time::Duration;

use crate::config::TtlMode;
use crate::key::KeySpec;

mod compile;
mod matcher;
mod set;

use matcher::Matcher;
pub use set::{PolicyMatch, PolicySet};

/// Statuses a policy `ttl` gives freshness to when the policy does not list
/// its own: the non-error ones RFC 9111 (section 4.2.2) calls heuristically
/// cacheable. An error never lives on a policy TTL unless the policy lists
/// it: one request (a method override, a bad `Range`) must not make an
/// error everyone's answer.
pub const DEFAULT_STATUSES: [u16; 6] = [200, 203, 204, 300, 301, 308];

/// Statuses that may get heuristic freshness when a policy does not list its
/// own: those RFC 9111 (section 4.2.2) calls heuristically cacheable, but
/// 206 (partial content is never stored). Errors among them are fresh for
/// at most the policy's `negative_ttl`.
pub const HEURISTIC_STATUSES: [u16; 11] = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// A compiled policy.
#[derive(Clone, Debug)]
pub struct Policy {
    name: String,
    matcher: Matcher,
    ttl: Option<Duration>,
    ttl_mode: TtlMode,
    max_size: u64,
    compression: Option<Compression>,
    stale_while_revalidate: Option<Duration>,
    stale_if_error: Option<Duration>,
    methods: Vec<String>,
    statuses: Vec<u16>,
    /// Statuses that may get heuristic freshness.
    heuristic_statuses: Vec<u16>,
    negative_ttl: Duration,
    tags: Vec<String>,
    invalidate_on: Vec<String>,
    key: KeySpec,
    /// The largest request body buffered to key on (policies whose key holds the body).
    max_body: u64,
    /// Responses larger than this (or of unknown length) are streamed to a
    /// store that takes them as they arrive.
    stream_above: u64,
    /// Representations larger than this are not fetched whole for a `Range`.
    range_passthrough_above: u64,
    /// Targeted cache-control field names (lower case), in precedence order.
    targets: Vec<String>,
    /// Response headers that tag entries (lower case), and whether clients see them.
    tag_headers: Vec<String>,
    forward_tag_headers: bool,
}

/// How a policy compresses stored bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compression {
    /// Bodies smaller than this are stored as they are.
    pub min_size: u64,
    /// gzip level.
    pub level: u32,
}

/// The name metrics give the policy of `defaults.cache_unmatched` (requests
/// no policy matched); no policy may be called so.
pub const UNMATCHED_NAME: &str = "(unmatched)";

impl Policy {
    /// The tags of an entry this policy stores for `path` with template `params`.
    pub fn entry_tags(&self, params: &[(String, String)], path: &str) -> Vec<String> {
        let mut tags = self.tags_in_order(params, path);
        tags.sort();
        tags.dedup();
        tags
    }

    /// The tags of the entries this policy stores, as
    /// [`Policy::entry_tags`] makes them but with `<path>` and `<param>`
    /// standing in for the values, in the order they are made: the
    /// policy's `tags`, `policy:<name>`, `path:<path>`, then
    /// `<param>:<param>` for each path-template parameter.
    pub fn tag_templates(&self) -> Vec<String> {
        let params: Vec<(String, String)> = match &self.matcher {
            Matcher::Template { params, .. } => params
                .iter()
                .map(|p| (p.clone(), format!("<{p}>")))
                .collect(),
            _ => Vec::new(),
        };
        self.tags_in_order(&params, "<path>")
    }

    fn tags_in_order(&self, params: &[(String, String)], path: &str) -> Vec<String> {
        let mut tags = Vec::with_capacity(self.tags.len() + 2 + params.len());
        tags.extend(self.tags.iter().cloned());
        tags.push(format!("policy:{}", self.name));
        tags.push(format!("path:{path}"));
        tags.extend(params.iter().map(|(k, v)| format!("{k}:{v}")));
        tags
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured TTL, if any.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// Whose freshness wins.
    pub fn ttl_mode(&self) -> TtlMode {
        self.ttl_mode
    }

    /// Largest body stored, in bytes.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Largest request body buffered to key on, in bytes.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// Responses larger than this many bytes, or of unknown length, are
    /// written to a store that takes bodies as they stream in, rather than
    /// held in memory until they end.
    pub fn stream_above(&self) -> u64 {
        self.stream_above
    }

    /// The size past which a `Range` request that misses is sent to the
    /// origin with its `Range` (its 206 passes through uncached) instead of
    /// fetching the whole representation.
    pub fn range_passthrough_above(&self) -> u64 {
        self.range_passthrough_above
    }

    /// Compression settings, when compression is on.
    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// The policy's stale-while-revalidate window.
    pub fn stale_while_revalidate(&self) -> Option<Duration> {
        self.stale_while_revalidate
    }

    /// The policy's stale-if-error window.
    pub fn stale_if_error(&self) -> Option<Duration> {
        self.stale_if_error
    }

    /// Whether requests with this method may be cached.
    pub fn allows_method(&self, method: &str) -> bool {
        // Case-sensitive (RFC 9110 section 9.1): a `get` is not a GET, and
        // must not be answered from, or stored under, a GET's entry.
        self.methods.iter().any(|m| m == method)
    }

    /// The targeted cache-control fields this cache obeys (RFC 9213), lower
    /// case, first present wins.
    pub fn cache_control_targets(&self) -> &[String] {
        &self.targets
    }

    /// The response headers whose values tag entries (lower case).
    pub fn tag_headers(&self) -> &[String] {
        &self.tag_headers
    }

    /// Whether the tag headers are passed on to clients.
    pub fn forwards_tag_headers(&self) -> bool {
        self.forward_tag_headers
    }

    /// Whether the policy's `ttl` gives freshness to responses with this
    /// status (its `statuses`, by default [`DEFAULT_STATUSES`]). Any status
    /// may still be stored on the origin's explicit freshness.
    pub fn allows_status(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }

    /// Whether responses with this status may get heuristic freshness (its
    /// `statuses`, by default [`HEURISTIC_STATUSES`]).
    pub fn allows_heuristic(&self, status: u16) -> bool {
        self.heuristic_statuses.contains(&status)
    }

    /// The longest an error status (400 and above) stays fresh.
    pub fn negative_ttl(&self) -> Duration {
        self.negative_ttl
    }

    /// The policy's own tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Webhook events that invalidate this policy's entries.
    pub fn invalidate_on(&self) -> &[String] {
        &self.invalidate_on
    }

    /// How this policy's keys are built.
    pub fn key_spec(&self) -> &KeySpec {
        &self.key
    }
}

#[cfg(test)]
mod tests;
