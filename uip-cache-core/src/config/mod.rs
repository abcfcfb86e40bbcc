//! The YAML config: one file says what is cached, for how long, under which key
//! and tags, how entries are warmed and how they are invalidated.
//!
//! ```
//! use uip_cache_core::CacheConfig;
//!
//! let config = CacheConfig::from_yaml_str(r#"
//! policies:
//!   - name: entity_by_id
//!     pattern: "/ngsi-ld/v1/entities/{id}"
//!     ttl: 300
//! "#)?;
//! assert_eq!(config.policies[0].name.value, "entity_by_id");
//! # Ok::<(), uip_cache_core::ConfigError>(())
//! ```
//!
//! Loading expands `${VAR}` / `${VAR:-default}`, rejects unknown fields and
//! validates everything that can be checked without the network (patterns
//! compile, cron schedules parse, sizes and durations are sane). Every problem is
//! reported with the file, line and field path; see [`ConfigError`].
//! `config/cache.example.yaml` documents every field and its default.

mod env;
mod error;
mod units;

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use error::{ConfigError, ConfigProblem};
pub use units::{ByteSize, Seconds};

use crate::policy::PolicySet;

/// A config value together with the line it was read from, so that checks made
/// after parsing can still point at the right place.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// 1-based line in the config file; `None` for values built in code.
    pub line: Option<u64>,
}

impl<T> Located<T> {
    /// A value that did not come from a file.
    pub const fn new(value: T) -> Self {
        Located { value, line: None }
    }
}

impl<T> Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl AsRef<str> for Located<String> {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl<T> From<T> for Located<T> {
    fn from(value: T) -> Self {
        Located::new(value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(d)?;
        let line = spanned.referenced.line();
        Ok(Located {
            value: spanned.value,
            line: (line > 0).then_some(line),
        })
    }
}

// ===== the sections =====

/// The whole config file. Every section is optional: a file with only
/// `policies:` is complete and uses the in-memory store.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Which store holds the entries (default: memory).
    #[serde(default)]
    pub store: StoreConfig,
    /// Redis connection settings, used when `store.type` is `redis` or `redis_cluster`.
    #[serde(default)]
    pub redis: RedisConfig,
    /// What is cached: the first policy whose pattern matches a request wins.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// Settings for requests and policies that do not say otherwise.
    #[serde(default)]
    pub defaults: DefaultsConfig,
    /// How cache keys are built.
    #[serde(default)]
    pub key: KeyConfig,
    /// Cache warming: URLs fetched ahead of the first request.
    #[serde(default)]
    pub warming: WarmingConfig,
    /// Invalidation strategies (webhook events, time-based, tags).
    #[serde(default)]
    pub invalidation: InvalidationConfig,
    /// The admin API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The `uip-cache serve` reverse proxy (the library adapters read only
    /// its `trusted_proxies`).
    #[serde(default)]
    pub server: ServerConfig,
    /// Logging.
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(skip)]
    source_name: String,
}

/// Which store holds the entries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// `memory` (default), `redis` or `redis_cluster`.
    #[serde(rename = "type", default)]
    pub kind: StoreKind,
    /// Capacity of the memory store in bytes of keys and entries (default 256MB).
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// The same setting, nested as `store.memory.max_bytes`.
    #[serde(default)]
    pub memory: Option<MemoryStoreConfig>,
    /// How long one store operation may take before it counts as a failure and
    /// the request goes on without the cache (default 100ms).
    #[serde(default = "default_store_timeout")]
    pub timeout: Seconds,
    /// How long one purge (by tag, URL, pattern, webhook event, or after an
    /// unsafe request) may page through the store (default 10s); its
    /// record in the shared invalidation log and its messages to other
    /// instances get as long each. A purge is not cut by `timeout`, and one
    /// that stops part-way is reported as an error (the admin API answers
    /// 503 with what was done, so webhook senders retry; running it again
    /// finishes the work).
    #[serde(default = "default_purge_timeout")]
    pub purge_timeout: Seconds,
    /// The in-process tier of `type: tiered`.
    #[serde(default)]
    pub l1: L1Config,
}

/// The in-process tier of a tiered store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct L1Config {
    /// Capacity in bytes of keys and entries (default 64MB).
    pub max_bytes: ByteSize,
    /// Longest time an entry stays in L1 (default 30s): the staleness bound
    /// should an invalidation message be lost.
    pub max_ttl: Seconds,
    /// How often the invalidation channel is pinged (default 1s). L1 is
    /// not used from the moment a ping goes unanswered for this long (a
    /// connection a NAT or firewall dropped silently delivers nothing,
    /// without an error), until the channel is back, with L1 empty.
    pub ping_interval: Seconds,
}

impl Default for L1Config {
    fn default() -> Self {
        L1Config {
            max_bytes: ByteSize(64 << 20),
            max_ttl: Seconds(Duration::from_secs(30)),
            ping_interval: Seconds(Duration::from_secs(1)),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::default(),
            max_bytes: None,
            memory: None,
            timeout: default_store_timeout(),
            purge_timeout: default_purge_timeout(),
            l1: L1Config::default(),
        }
    }
}

impl StoreConfig {
    /// The memory store's capacity, from `max_bytes` or `memory.max_bytes`.
    pub fn memory_max_bytes(&self) -> u64 {
        self.max_bytes
            .or_else(|| self.memory.as_ref().and_then(|m| m.max_bytes))
            .map_or(DEFAULT_MEMORY_MAX_BYTES, ByteSize::bytes)
    }
}

/// Default capacity of the memory store: 256 MiB.
pub const DEFAULT_MEMORY_MAX_BYTES: u64 = 256 << 20;

fn default_store_timeout() -> Seconds {
    Seconds(Duration::from_millis(100))
}

fn default_purge_timeout() -> Seconds {
    Seconds(Duration::from_secs(10))
}

/// `store.memory`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryStoreConfig {
    /// Capacity in bytes of keys and entries.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
}

/// The kinds of store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// In-process memory (the default; nothing to run).
    #[default]
    Memory,
    /// One Redis server.
    Redis,
    /// A Redis Cluster.
    RedisCluster,
    /// An in-process L1 in front of Redis or Redis Cluster (L2), kept
    /// coherent by invalidations published on a Redis channel.
    Tiered,
}

/// Redis connection settings (the seed's section, plus `url`, `cluster_nodes`, `connection`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Host name (default `localhost`).
    pub host: String,
    /// Port (default 6379).
    pub port: u16,
    /// Database number (default 0).
    pub db: i64,
    /// Password; empty means none.
    #[serde(deserialize_with = "empty_as_none")]
    pub password: Option<String>,
    /// Pool size when `connection: pool` (default 50).
    pub max_connections: u32,
    /// Socket read/write timeout (default 5s).
    pub socket_timeout: Seconds,
    /// Connect timeout (default 5s).
    pub socket_connect_timeout: Seconds,
    /// How often health is checked (default 30s).
    pub health_check_interval: Seconds,
    /// A `redis://` URL; when set it wins over host, port, db and password.
    #[serde(deserialize_with = "empty_as_none")]
    pub url: Option<String>,
    /// Cluster seed nodes (`host:port` or URLs); setting them selects a cluster.
    pub cluster_nodes: Vec<String>,
    /// `multiplexed` (default) or `pool`.
    pub connection: RedisConnection,
    /// Memory for local copies of large entries (16 KB and more) read from
    /// Redis (default 64MB; 0 turns them off). A hit on a copy still asks
    /// Redis, for the entry's 16-byte header only, and serves the copy only
    /// if that header is the one it was read with, so a copy is never staler
    /// than Redis. Unused by `type: tiered`, whose L1 already holds entries.
    pub local_copies: ByteSize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: "localhost".into(),
            port: 6379,
            db: 0,
            password: None,
            max_connections: 50,
            socket_timeout: Seconds(Duration::from_secs(5)),
            socket_connect_timeout: Seconds(Duration::from_secs(5)),
            health_check_interval: Seconds(Duration::from_secs(30)),
            url: None,
            cluster_nodes: Vec::new(),
            connection: RedisConnection::default(),
            local_copies: ByteSize(64 << 20),
        }
    }
}

// The password must never reach logs, so Debug is written by hand.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("socket_timeout", &self.socket_timeout)
            .field("socket_connect_timeout", &self.socket_connect_timeout)
            .field("health_check_interval", &self.health_check_interval)
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("cluster_nodes", &self.cluster_nodes)
            .field("connection", &self.connection)
            .field("local_copies", &self.local_copies)
            .finish()
    }
}

/// How the Redis store talks to Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RedisConnection {
    /// One multiplexed, auto-reconnecting connection (the default, fastest for many small GETs).
    #[default]
    Multiplexed,
    /// A pool of connections of `max_connections`.
    Pool,
}

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
    /// Default `stale_while_revalidate`.
    pub stale_while_revalidate: Option<Seconds>,
    /// Default `stale_if_error`.
    pub stale_if_error: Option<Seconds>,
    /// Default `negative_ttl`: the longest an error status (400 and above)
    /// stays fresh (default 10s), so that one request cannot make an error
    /// everyone's answer for long.
    pub negative_ttl: Seconds,
    /// How long requests for a key being fetched wait before going to the origin themselves (default 5s).
    pub lock_timeout: Seconds,
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
            cache_status: "uip-cache".into(),
            hit_for_miss: Seconds(Duration::from_secs(10)),
            soft_purge_grace: Seconds(Duration::from_secs(30)),
            stale_while_revalidate: None,
            stale_if_error: None,
            negative_ttl: Seconds(Duration::from_secs(10)),
            lock_timeout: Seconds(Duration::from_secs(5)),
            invalidate_on_unsafe: true,
            targeted_cache_control: vec!["CDN-Cache-Control".into(), "Surrogate-Control".into()],
            tag_headers: vec!["Surrogate-Key".into(), "Cache-Tag".into()],
            forward_tag_headers: false,
        }
    }
}

/// How cache keys are built.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct KeyConfig {
    /// Prefix of every key (default `cache:`).
    pub prefix: String,
    /// Whether scheme and host are part of the key (default true).
    pub include_host: bool,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            prefix: "cache:".into(),
            include_host: true,
        }
    }
}

/// Cache warming.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WarmingConfig {
    /// Whether warming runs at all (default false).
    pub enabled: bool,
    /// Warm once at start-up (default true).
    pub on_startup: bool,
    /// Period between warming runs for URLs without a schedule (default 300s).
    pub interval: Seconds,
    /// URLs fetched at once (default 5).
    pub max_concurrent: usize,
    /// The URLs to warm, by priority.
    pub urls: Vec<WarmUrlConfig>,
    /// Timeout of one fetch (default 10s).
    pub timeout: Seconds,
    /// Retries of a failed fetch (default 2).
    pub retries: u32,
    /// Base URL for relative warm URLs (the server uses its upstream when unset).
    pub base_url: Option<String>,
    /// The host (`host[:port]`, or `https://host[:port]` to key as https)
    /// a warm request is made and keyed for, as a client request to that
    /// host would be; default: the host of `base_url`.
    #[serde(deserialize_with = "empty_as_none")]
    pub host: Option<String>,
}

impl Default for WarmingConfig {
    fn default() -> Self {
        WarmingConfig {
            enabled: false,
            on_startup: true,
            interval: Seconds(Duration::from_secs(300)),
            max_concurrent: 5,
            urls: Vec::new(),
            timeout: Seconds(Duration::from_secs(10)),
            retries: 2,
            base_url: None,
            host: None,
        }
    }
}

/// One URL to warm.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WarmUrlConfig {
    /// Path and query (`/ngsi-ld/v1/entities?type=Camera`) or an absolute URL.
    pub url: Located<String>,
    /// `high`, `medium` (default) or `low`.
    #[serde(default)]
    pub priority: WarmPriority,
    /// A cron expression; without it the URL is warmed every `interval`.
    #[serde(default)]
    pub schedule: Option<Located<String>>,
    /// Request headers of the warm request (name -> value), keyed as a
    /// client's would be (`Accept`, say); none but `Host` by default.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

impl fmt::Debug for WarmUrlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmUrlConfig")
            .field("url", &self.url)
            .field("priority", &self.priority)
            .field("schedule", &self.schedule)
            .field("headers", &crate::warm::redacted(&self.headers))
            .finish()
    }
}

/// Warming priority: higher priorities are fetched first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarmPriority {
    /// First.
    High,
    /// Second (the default).
    #[default]
    Medium,
    /// Last.
    Low,
}

/// Invalidation strategies.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct InvalidationConfig {
    /// The strategies, in any order.
    pub strategies: Vec<StrategyConfig>,
}

impl InvalidationConfig {
    /// The enabled webhook strategy, if any.
    pub fn webhook(&self) -> Option<&StrategyConfig> {
        self.strategies
            .iter()
            .find(|s| s.enabled && s.kind == StrategyKind::Webhook)
    }
}

/// One invalidation strategy. Which fields apply depends on `type`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StrategyConfig {
    /// `webhook`, `time_based` (also `time-based`) or `tag`.
    #[serde(rename = "type")]
    pub kind: StrategyKind,
    /// Whether the strategy is on (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// webhook: the route (default `/cache/invalidate`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// webhook: the shared secret expected in `X-Webhook-Secret`.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub secret: Option<String>,
    /// webhook: event name -> what it invalidates.
    #[serde(default)]
    pub events: Vec<EventRule>,
    /// time_based: how often the store's evictions and expirations are read
    /// (default 60s).
    #[serde(default)]
    pub check_interval: Option<Seconds>,
    /// time_based: evictions per check above which a warning is logged
    /// (default 1000).
    #[serde(default)]
    pub eviction_threshold: Option<u64>,
}

impl fmt::Debug for StrategyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrategyConfig")
            .field("kind", &self.kind)
            .field("enabled", &self.enabled)
            .field("endpoint", &self.endpoint)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("events", &self.events)
            .field("check_interval", &self.check_interval)
            .field("eviction_threshold", &self.eviction_threshold)
            .finish()
    }
}

/// Kinds of invalidation strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StrategyKind {
    /// `POST /cache/invalidate` events.
    Webhook,
    /// Periodic expiry checks.
    #[serde(alias = "time-based")]
    TimeBased,
    /// `POST /cache/invalidate/tag`.
    Tag,
}

/// What one webhook event invalidates. Patterns and tags may use `{entity_id}`
/// and `{entity_type}`, replaced by the event's fields.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EventRule {
    /// The event name, as sent in the webhook's `event` field.
    pub event: Located<String>,
    /// URL patterns (glob) to invalidate.
    #[serde(default)]
    pub invalidate_patterns: Vec<Located<String>>,
    /// Tags to invalidate.
    #[serde(default)]
    pub invalidate_tags: Vec<String>,
}

/// The admin API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Whether the server exposes it (default true).
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:9092`).
    pub listen: String,
    /// Secret required by mutating routes (`X-Webhook-Secret`); the webhook
    /// strategy's secret is used when this is unset.
    #[serde(deserialize_with = "empty_as_none")]
    pub secret: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: "127.0.0.1:9092".into(),
            secret: None,
        }
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The caching reverse proxy of `uip-cache serve`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where clients connect (default `127.0.0.1:8080`; `--listen` overrides).
    pub listen: String,
    /// The backend, `http://host:port` (`--upstream` overrides).
    #[serde(deserialize_with = "empty_as_none")]
    pub upstream: Option<String>,
    /// Time to connect to the upstream (default 5s); past it: 502.
    pub connect_timeout: Seconds,
    /// Time for the upstream's response headers (default 60s); past it: 504.
    pub timeout: Seconds,
    /// How long in-flight requests may finish after SIGINT/SIGTERM (default 10s).
    pub shutdown_grace: Seconds,
    /// Threads serving requests (at most 255); 0, the default, is one per
    /// core. 1 matches nginx's `worker_processes 1`.
    pub workers: u8,
    /// Peers whose forwarding headers (`Forwarded`, `X-Forwarded-*`,
    /// `X-Original-URL`, ...) are believed: networks such as `10.0.0.0/8`
    /// or `::1/128`, or plain addresses. Default: none; from any other peer
    /// those headers are removed before the application sees the request.
    /// The library adapters read it too.
    pub trusted_proxies: Vec<Located<String>>,
    /// How long a response may make no progress towards its client before
    /// the connection is closed (default 60s, as nginx's `send_timeout`):
    /// a write the client does not read, an HTTP/2 stream its flow control
    /// holds, or a request body the client stops sending.
    #[serde(deserialize_with = "nonzero_duration")]
    pub send_timeout: Seconds,
    /// How long a keep-alive connection may stay without a request in
    /// progress before it is closed (default 75s, as nginx's
    /// `keepalive_timeout`; HTTP/2 connections get a GOAWAY).
    #[serde(deserialize_with = "nonzero_duration")]
    pub idle_timeout: Seconds,
    /// Response bytes all connections together may hold for clients that
    /// have not taken them yet (default 256MB); past it, the connections
    /// that went longest without taking any are closed first.
    #[serde(deserialize_with = "nonzero_size")]
    pub max_inflight_bytes: ByteSize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            upstream: None,
            connect_timeout: Seconds(Duration::from_secs(5)),
            timeout: Seconds(Duration::from_secs(60)),
            shutdown_grace: Seconds(Duration::from_secs(10)),
            workers: 0,
            trusted_proxies: Vec::new(),
            send_timeout: Seconds(Duration::from_secs(60)),
            idle_timeout: Seconds(Duration::from_secs(75)),
            max_inflight_bytes: ByteSize(256 << 20),
        }
    }
}

/// Logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LoggingConfig {
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    pub level: String,
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn yes() -> bool {
    true
}

fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

fn nonzero_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
    let v = Seconds::deserialize(d)?;
    if v.get().is_zero() {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(v)
}

fn nonzero_size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    let v = ByteSize::deserialize(d)?;
    if v.bytes() == 0 {
        return Err(serde::de::Error::custom("must be greater than zero"));
    }
    Ok(v)
}

fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Seconds>, D::Error> {
    let v = Option::<Seconds>::deserialize(d)?;
    if let Some(s) = v {
        if s.get().is_zero() {
            return Err(serde::de::Error::custom(
                "ttl must be at least 1 second; leave `ttl` out to store only what the origin marks fresh",
            ));
        }
        if s.get() > Duration::from_secs(365 * 86_400) {
            return Err(serde::de::Error::custom("ttl must be at most one year"));
        }
    }
    Ok(v)
}

// ===== loading =====

impl CacheConfig {
    /// Reads, expands and validates a config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single(
                name.clone(),
                ConfigProblem::new(None, "", format!("cannot read the config file: {e}")),
            )
        })?;
        Self::parse(&text, &name, |v| std::env::var(v).ok())
    }

    /// Expands and validates a config given as text (errors name it `<string>`).
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, "<string>", |v| std::env::var(v).ok())
    }

    /// The file the config was read from (`<string>` for text).
    pub fn source_name(&self) -> &str {
        if self.source_name.is_empty() {
            "<default>"
        } else {
            &self.source_name
        }
    }

    pub(crate) fn parse(
        text: &str,
        name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let expanded = env::expand(text, env).map_err(|(line, msg)| {
            ConfigError::single(name, ConfigProblem::new(Some(line as u64), "", msg))
        })?;
        for var in &expanded.unset {
            tracing::warn!(file = name, variable = %var, "environment variable is not set; using an empty value");
        }
        let mut config = if expanded.text.trim().is_empty() {
            CacheConfig::default()
        } else {
            deserialize(&expanded.text, name)?
        };
        config.source_name = name.to_owned();
        let problems = config.validate();
        if problems.is_empty() {
            for w in config.warnings() {
                tracing::warn!("{name}:{w}");
            }
            Ok(config)
        } else {
            Err(ConfigError::new(name, problems))
        }
    }

    /// What is allowed but probably not meant, one note per policy (logged
    /// once when the config loads). Today: a `vary_by` naming query
    /// parameters keys only those (the seed's meaning), so requests that
    /// differ in any other parameter share an entry.
    pub fn warnings(&self) -> Vec<ConfigProblem> {
        let mut notes = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            let mut kept: Vec<&str> = p
                .vary_by
                .iter()
                .map(|v| v.trim())
                .filter(|v| !v.eq_ignore_ascii_case("body") && !v.starts_with("header:"))
                .map(|v| v.strip_prefix("query:").unwrap_or(v))
                .collect();
            if kept.is_empty() {
                continue;
            }
            kept.sort_unstable();
            kept.dedup();
            let pattern = p.pattern.value.as_str();
            let mut dropped: Vec<&str> = crate::pattern::split_query(pattern)
                .1
                .map(|q| crate::pattern::query_pairs(q).map(|(n, _)| n).collect())
                .unwrap_or_default();
            dropped.retain(|n| !kept.contains(n));
            dropped.sort_unstable();
            dropped.dedup();
            let also = if dropped.is_empty() {
                String::new()
            } else {
                format!(", including {} named in the pattern", dropped.join(", "))
            };
            notes.push(ConfigProblem::new(
                p.pattern.line,
                format!("policies[{i}].vary_by"),
                format!(
                    "policy `{}` keys only the query parameters {}; requests that differ in any other parameter{also} share an entry (list them in vary_by, or leave vary_by without plain names to key every parameter)",
                    p.name.value,
                    kept.join(", ")
                ),
            ));
        }
        let w = &self.warming;
        if w.enabled
            && !w.urls.is_empty()
            && self.key.include_host
            && w.host.is_none()
            && w.urls.iter().any(|u| u.url.value.starts_with('/'))
        {
            notes.push(ConfigProblem::new(
                None,
                "warming.host",
                "warm requests are made and keyed for the host of warming.base_url (the server: of its upstream); clients that send another Host will not hit the warmed entries: set warming.host to the host clients use, or key.include_host: false",
            ));
        }
        if self.admin.enabled && self.admin_secret().is_none() {
            let loopback = self
                .admin
                .listen
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback());
            if !loopback {
                notes.push(ConfigProblem::new(
                    None,
                    "admin.secret",
                    format!("the admin API listens on {} without a secret: its POST routes refuse every client not on this host (set admin.secret)", self.admin.listen),
                ));
            }
        }
        notes
    }

    /// The secret mutating admin routes require: `admin.secret`, else the
    /// enabled webhook strategy's.
    pub fn admin_secret(&self) -> Option<&str> {
        self.admin
            .secret
            .as_deref()
            .or_else(|| self.invalidation.webhook()?.secret.as_deref())
    }

    /// Checks everything that does not need the network; returns every problem found.
    fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Err(errs) = PolicySet::compile(self) {
            problems.extend(errs);
        }
        let mut seen = std::collections::HashMap::new();
        for (i, p) in self.policies.iter().enumerate() {
            if p.name.value == crate::policy::UNMATCHED_NAME {
                problems.push(ConfigProblem::new(
                    p.name.line,
                    format!("policies[{i}].name"),
                    format!(
                        "`{}` is reserved: metrics use it for requests no policy matched",
                        p.name.value
                    ),
                ));
            }
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
            if let Some(w) = &p.warming {
                if let Some(s) = &w.schedule {
                    check_cron(s, &format!("policies[{i}].warming.schedule"), &mut problems);
                }
            }
        }
        match self.store.kind {
            StoreKind::RedisCluster if self.redis.cluster_nodes.is_empty() => {
                problems.push(ConfigProblem::new(
                    None,
                    "store.type",
                    "`redis_cluster` needs `redis.cluster_nodes` (a list of host:port)",
                ));
            }
            _ => {}
        }
        if self.store.max_bytes.is_some()
            && self
                .store
                .memory
                .as_ref()
                .is_some_and(|m| m.max_bytes.is_some())
        {
            problems.push(ConfigProblem::new(
                None,
                "store.memory.max_bytes",
                "set either `store.max_bytes` or `store.memory.max_bytes`, not both",
            ));
        }
        let name = self.defaults.cache_status.trim();
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
        for (field, value) in [
            ("store.timeout", self.store.timeout),
            ("store.purge_timeout", self.store.purge_timeout),
            ("store.l1.ping_interval", self.store.l1.ping_interval),
        ] {
            if value.get().is_zero() {
                problems.push(ConfigProblem::new(None, field, "must be greater than zero"));
            }
        }
        if self.warming.max_concurrent == 0 {
            problems.push(ConfigProblem::new(
                None,
                "warming.max_concurrent",
                "must be at least 1",
            ));
        }
        for (i, u) in self.warming.urls.iter().enumerate() {
            let path = format!("warming.urls[{i}].url");
            let url = u.url.value.as_str();
            if !(url.starts_with('/') || url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(ConfigProblem::new(
                    u.url.line,
                    path,
                    format!("`{url}` must be a path starting with `/` or an http(s) URL"),
                ));
            }
            if let Some(s) = &u.schedule {
                check_cron(s, &format!("warming.urls[{i}].schedule"), &mut problems);
            }
            for name in u.headers.keys() {
                let lower = name.to_ascii_lowercase();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                    || lower == "host"
                {
                    problems.push(ConfigProblem::new(
                        u.url.line,
                        format!("warming.urls[{i}].headers"),
                        format!("`{name}` is not a header a warm request may set (Host comes from `warming.host`)"),
                    ));
                }
            }
        }
        if let Some(h) = &self.warming.host {
            let rest = h
                .strip_prefix("http://")
                .or_else(|| h.strip_prefix("https://"))
                .unwrap_or(h);
            if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
                problems.push(ConfigProblem::new(
                    None,
                    "warming.host",
                    format!("`{h}` must be `host[:port]`, optionally with `http://` or `https://` before it"),
                ));
            }
        }
        if let Some(b) = &self.warming.base_url {
            if !b.starts_with("http://") {
                problems.push(ConfigProblem::new(
                    None,
                    "warming.base_url",
                    format!("`{b}` must be an http:// URL"),
                ));
            }
        }
        for (i, s) in self.invalidation.strategies.iter().enumerate() {
            for (j, rule) in s.events.iter().enumerate() {
                for (k, pat) in rule.invalidate_patterns.iter().enumerate() {
                    let path = format!(
                        "invalidation.strategies[{i}].events[{j}].invalidate_patterns[{k}]"
                    );
                    if !pat.starts_with('/') {
                        problems.push(ConfigProblem::new(
                            pat.line,
                            path,
                            format!("`{}` must start with `/`", pat.value),
                        ));
                        continue;
                    }
                    let probe = crate::invalidate::substitute(pat, "x", "x");
                    if probe.contains('{') || probe.contains('}') {
                        problems.push(ConfigProblem::new(
                            pat.line,
                            path,
                            format!("`{}` uses a placeholder other than {{entity_id}} and {{entity_type}}", pat.value),
                        ));
                    }
                }
            }
            if let Some(e) = &s.endpoint {
                if !e.starts_with('/') {
                    problems.push(ConfigProblem::new(
                        None,
                        format!("invalidation.strategies[{i}].endpoint"),
                        format!("`{e}` must be a path starting with `/`"),
                    ));
                }
            }
            if s.kind != StrategyKind::Webhook && !s.events.is_empty() {
                problems.push(ConfigProblem::new(
                    None,
                    format!("invalidation.strategies[{i}].events"),
                    "only `webhook` strategies have events",
                ));
            }
        }
        for (path, value, example) in [
            ("server.listen", &self.server.listen, "127.0.0.1:8080"),
            ("admin.listen", &self.admin.listen, "127.0.0.1:9092"),
        ] {
            if value.parse::<std::net::SocketAddr>().is_err() {
                problems.push(ConfigProblem::new(
                    None,
                    path,
                    format!("`{value}` is not an address such as {example}"),
                ));
            }
        }
        for (i, p) in self.server.trusted_proxies.iter().enumerate() {
            if let Err(e) = p.value.trim().parse::<crate::forwarding::Cidr>() {
                problems.push(ConfigProblem::new(
                    p.line,
                    format!("server.trusted_proxies[{i}]"),
                    e.to_string(),
                ));
            }
        }
        if let Some(u) = &self.server.upstream {
            if !(u.starts_with("http://") && u.len() > "http://".len()) {
                problems.push(ConfigProblem::new(
                    None,
                    "server.upstream",
                    format!("`{u}` is not an http:// URL such as http://127.0.0.1:3000"),
                ));
            }
        }

        if !["error", "warn", "info", "debug", "trace"]
            .contains(&self.logging.level.to_ascii_lowercase().as_str())
        {
            problems.push(ConfigProblem::new(
                None,
                "logging.level",
                format!(
                    "`{}` is not one of error, warn, info, debug, trace",
                    self.logging.level
                ),
            ));
        }
        problems.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
        problems
    }
}

fn check_cron(schedule: &Located<String>, path: &str, problems: &mut Vec<ConfigProblem>) {
    if let Err(e) = crate::schedule::parse_cron(&schedule.value) {
        problems.push(ConfigProblem::new(schedule.line, path, e));
    }
}

fn deserialize(text: &str, name: &str) -> Result<CacheConfig, ConfigError> {
    let mut path = None;
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let location = e.location();
        let mut problem = ConfigProblem::new(
            location.map(|l| l.line()).filter(|&l| l > 0),
            path.filter(|p| p != ".").unwrap_or_default(),
            clean_message(&e.to_string()),
        );
        problem.column = location.map(|l| l.column()).filter(|&c| c > 0);
        ConfigError::single(name, problem)
    })
}

/// The YAML error's text without the location it repeats (we print our own).
fn clean_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests;
