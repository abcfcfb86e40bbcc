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

mod admin;
mod de;
mod defaults;
mod env;
mod error;
mod invalidate;
mod key;
mod located;
mod logging;
mod policy;
mod redis;
mod server;
mod store;
mod units;
mod warm;

use std::path::Path;

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
pub use server::ServerConfig;
pub use store::{L1Config, MemoryStoreConfig, StoreConfig, StoreKind, DEFAULT_MEMORY_MAX_BYTES};
pub use units::{ByteSize, Seconds};
pub use warm::{WarmPriority, WarmUrlConfig, WarmingConfig};

use crate::policy::PolicySet;

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
