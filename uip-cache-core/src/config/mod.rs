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
//!
//! Each section is a file of this module, with the checks it can make of
//! itself. The checks that need the rest of the crate (patterns compile into
//! policies, cron schedules parse, invalidation placeholders are the ones
//! filled in, trusted proxies are networks) run where a loaded config is
//! validated as a whole, so this module depends on nothing else in the crate.

mod admin;
mod de;
mod defaults;
mod env;
mod error;
mod invalidate;
mod key;
mod load;
mod located;
mod logging;
mod policy;
mod redis;
pub(crate) mod route;
mod server;
mod store;
mod units;
mod warm;

use serde::Deserialize;

pub use admin::AdminConfig;
pub use defaults::DefaultsConfig;
pub use error::{ConfigError, ConfigProblem};
pub use invalidate::{EventRule, InvalidationConfig, StrategyConfig, StrategyKind};
pub use key::KeyConfig;
pub use located::Located;
pub use logging::{LogFormat, LoggingConfig};
pub use policy::{
    CompressionAlgorithm, CompressionConfig, PatternType, PolicyConfig, PolicyWarmingConfig,
    TtlMode,
};
pub use redis::{RedisConfig, RedisConnection};
pub use route::{RouteConfig, DEFAULT_FAIL_TIMEOUT};
pub use server::{CertificateConfig, ServerConfig, TlsConfig, UpstreamTlsConfig};
pub use store::{
    DiskStoreConfig, L1Config, MemoryStoreConfig, StoreConfig, StoreKind, DEFAULT_MEMORY_MAX_BYTES,
};
pub use units::{ByteSize, Seconds};
pub use warm::{WarmPriority, WarmUrlConfig, WarmingConfig};

pub(crate) use load::{expand_env, read_yaml};
#[cfg(test)]
pub(crate) use units::MAX_SECONDS;
pub(crate) use warm::redacted;

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

impl CacheConfig {
    /// The file the config was read from (`<string>` for text).
    pub fn source_name(&self) -> &str {
        if self.source_name.is_empty() {
            "<default>"
        } else {
            &self.source_name
        }
    }

    /// The secret mutating admin routes require: `admin.secret`. The
    /// webhook strategy's secret opens the webhook route only, never the
    /// others: it is handed to whatever sends the events (a broker's
    /// subscription), and must not also purge everything or reload the
    /// config.
    pub fn admin_secret(&self) -> Option<&str> {
        self.admin.secret.as_deref()
    }

    /// What each section can tell of itself, unsorted. The checks that
    /// need the rest of the crate run where the config is validated as a
    /// whole. Problems without a line are reported in this order.
    pub(crate) fn shape_problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        policy::check_policies(&self.policies, &mut problems);
        self.store.check_kind_and_size(&self.redis, &mut problems);
        self.defaults.check(&mut problems);
        self.store.check_timeouts(&mut problems);
        self.warming.check(&mut problems);
        self.invalidation.check(&mut problems);
        self.server.check_listen(&mut problems);
        self.admin.check(&mut problems);
        self.server.check_upstream(&mut problems);
        route::check_routes(&self.server.routes, &self.key, &mut problems);
        self.logging.check(&mut problems);
        problems
    }

    /// The sections' notes on what is allowed but probably not meant.
    pub(crate) fn shape_warnings(&self) -> Vec<ConfigProblem> {
        let mut notes = Vec::new();
        self.warming.warnings(&self.key, &mut notes);
        self.admin.warnings(self.admin_secret(), &mut notes);
        route::unreachable_routes(
            &self.server.routes,
            self.server.upstream.as_deref(),
            &mut notes,
        );
        notes
    }
}
