//! `defaults`: what applies where a policy says nothing.

use std::time::Duration;

use serde::Deserialize;

use super::de::positive_duration;
use super::{ByteSize, ConfigProblem, Seconds};

/// Settings for whatever a policy does not set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DefaultsConfig {
    /// Cache requests no policy matches (default false: they bypass the cache).
    pub cache_unmatched: bool,
    /// TTL for unmatched requests when `cache_unmatched` is on.
    #[serde(deserialize_with = "positive_duration")]
    pub ttl: Option<Seconds>,
    /// Default `max_size` (default 10MB).
    pub max_size: ByteSize,
    /// Largest request body buffered and hashed into the key, for policies
    /// whose `vary_by` has `body` (default 64KB); larger bodies bypass.
    pub max_body: ByteSize,
    /// Default `stream_above` (default 1MB): with a store that takes
    /// bodies as they stream in (the disk store), larger responses (those
    /// of unknown length once they pass it) are written to it as they
    /// arrive, and no more than this is held in memory for each; `max_size` still bounds
    /// what is stored. Other stores hold each body whole (up to
    /// `max_size`) until it ends.
    pub stream_above: ByteSize,
    /// Default `range_passthrough_above` (default: each policy's
    /// `max_size`): the size past which a `Range` request that misses goes
    /// to the origin with its `Range` instead of fetching the whole.
    pub range_passthrough_above: Option<ByteSize>,
    /// Default `stale_while_revalidate`.
    pub stale_while_revalidate: Option<Seconds>,
    /// Default `stale_if_error`.
    pub stale_if_error: Option<Seconds>,
    /// How long past its freshness an entry may still answer when the
    /// origin cannot be reached, closes the connection without an answer,
    /// or does not answer in time (RFC 9111 section 4.2.4: a disconnected
    /// cache may serve stale), unless the response said `must-revalidate`,
    /// `proxy-revalidate`, `s-maxage` or `no-cache`, or the request
    /// `no-cache`. Entries are kept this much longer. Default none: only
    /// `stale_if_error` lets a stale entry answer for an unreachable origin.
    pub stale_if_unreachable: Option<Seconds>,
    /// Default `negative_ttl`: the longest an error status (400 and above)
    /// stays fresh (default 10s), so that one request cannot make an error
    /// everyone's answer for long.
    pub negative_ttl: Seconds,
    /// How long requests for a key being fetched wait before going to the origin themselves (default 5s).
    pub lock_timeout: Seconds,
    /// A response that varies on `Accept-Language` and names one language
    /// in `Content-Language`, stored for a request that weights that
    /// language at the top, also answers later requests that weight it
    /// above every other language (RFC 9111 section 4.1: a cache may use
    /// what it knows of the negotiation). Default false: only for origins
    /// that choose by weight, as RFC 9110 section 12.4.2 says, not by the
    /// order languages are listed in, and whose answer depends on the
    /// language chosen alone (not on the languages weighted below it, nor
    /// on a region such as `en-GB` when the answer says `en`): a client
    /// can choose which of its answers the others who prefer that language
    /// get.
    pub select_language: bool,
    /// Successful POST, PUT, PATCH, DELETE invalidate their target URI and
    /// the same-origin `Location` / `Content-Location`, on the request's own
    /// host when keys hold the host (default true).
    pub invalidate_on_unsafe: bool,
    /// Targeted cache-control fields (RFC 9213) this cache obeys, first
    /// present (and valid) wins over `Cache-Control` and `Expires` (default
    /// `[CDN-Cache-Control, Surrogate-Control]`; `[]` turns it off).
    /// `Surrogate-Control` is consumed (not passed to clients);
    /// `CDN-Cache-Control` is passed on for caches further down.
    pub targeted_cache_control: Vec<String>,
    /// Response headers whose values (space or comma separated) tag the
    /// entry, so an origin can say what it depends on and have it purged by
    /// tag (default `[Surrogate-Key, Cache-Tag]`; `[]` turns it off).
    pub tag_headers: Vec<String>,
    /// Pass the tag headers on to clients (default false: they are for this
    /// cache, and may reveal internals).
    pub forward_tag_headers: bool,
    /// The cache's name in RFC 9211 `Cache-Status` response headers
    /// (default `uip-cache`; empty: no `Cache-Status`).
    pub cache_status: String,
    /// How long a key whose response could not be stored (`no-store`,
    /// `private`, `Set-Cookie`, too large, ...) sends its requests straight
    /// to the origin instead of queueing them behind one fetch (hit-for-miss;
    /// default 10s, 0 turns it off).
    pub hit_for_miss: Seconds,
    /// How long a soft-purged entry may still be served stale while one
    /// request revalidates it, when its own stale-while-revalidate is
    /// shorter (default 30s).
    pub soft_purge_grace: Seconds,
}

impl DefaultsConfig {
    /// `targeted_cache_control` as header names (trimmed, lower case).
    pub fn targeted_cache_control_names(&self) -> Vec<String> {
        header_names(&self.targeted_cache_control)
    }

    /// `tag_headers` as header names (trimmed, lower case).
    pub fn tag_header_names(&self) -> Vec<String> {
        header_names(&self.tag_headers)
    }

    /// The section's own checks: `cache_status` is a structured-field token.
    pub(super) fn check(&self, problems: &mut Vec<ConfigProblem>) {
        let name = self.cache_status.trim();
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:/".contains(c);
        let is_token = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '*')
            && name.chars().all(token);
        if !name.is_empty() && !is_token {
            problems.push(ConfigProblem::new(
                None,
                "defaults.cache_status",
                format!("`{name}` is not a structured-field token (letters, digits and !#$%&'*+-.^_`|~:/, starting with a letter)"),
            ));
        }
    }
}

fn header_names(list: &[String]) -> Vec<String> {
    list.iter().map(|t| t.trim().to_ascii_lowercase()).collect()
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        DefaultsConfig {
            cache_unmatched: false,
            ttl: None,
            max_size: ByteSize(10 << 20),
            max_body: ByteSize(64 << 10),
            stream_above: ByteSize(1 << 20),
            range_passthrough_above: None,
            cache_status: "uip-cache".into(),
            hit_for_miss: Seconds(Duration::from_secs(10)),
            soft_purge_grace: Seconds(Duration::from_secs(30)),
            stale_while_revalidate: None,
            stale_if_error: None,
            stale_if_unreachable: None,
            negative_ttl: Seconds(Duration::from_secs(10)),
            lock_timeout: Seconds(Duration::from_secs(5)),
            invalidate_on_unsafe: true,
            select_language: false,
            targeted_cache_control: vec!["CDN-Cache-Control".into(), "Surrogate-Control".into()],
            tag_headers: vec!["Surrogate-Key".into(), "Cache-Tag".into()],
            forward_tag_headers: false,
        }
    }
}
