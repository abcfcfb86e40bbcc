//! [`Settings`]: a config compiled into what the cache runs on.
//!
//! A [`CacheConfig`] is the file's shape, checked section by section. The
//! step to [`Settings`] checks what spans sections (`check.rs`: policies
//! compile, cron schedules parse, invalidation placeholders are the ones
//! filled in, trusted proxies are networks) and keeps what it compiled: the
//! [`PolicySet`], the webhook [`EventRules`], the trusted proxies, the
//! names of the headers the cache adds or consumes, and the limits the
//! request path reads (timeouts, windows). An [`HttpCache`](crate::HttpCache)
//! runs on one `Arc<Settings>` at a time, and a request keeps the settings
//! it began with to its end; see
//! [`HttpCache::replace_settings`](crate::HttpCache::replace_settings).
//!
//! ```
//! use std::sync::Arc;
//! use uip_cache_core::settings::Settings;
//! use uip_cache_core::{CacheConfig, HttpCache};
//!
//! let config = CacheConfig::from_yaml_str("policies:\n  - name: items\n    pattern: /items\n    ttl: 60\n")?;
//! let settings = Arc::new(Settings::compile(&config)?);
//! assert_eq!(settings.policies().len(), 1);
//! assert_eq!(settings.cache_status_name(), Some("uip-cache"));
//!
//! // Two caches on the same settings.
//! let a = HttpCache::from_settings(settings.clone()).build()?;
//! let b = HttpCache::from_settings(settings.clone()).build()?;
//! assert!(Arc::ptr_eq(&a.settings(), &b.settings()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::{CacheConfig, ConfigError};
use crate::forwarding::TrustedProxies;
use crate::http::cache_control::is_consumed;
use crate::invalidate::{EventRules, InvalidationPlan};
use crate::policy::PolicySet;

mod check;

/// A config compiled into what the cache runs on (see the [module
/// docs](self)). Build one with [`Settings::compile`]; share it as an
/// `Arc<Settings>`.
pub struct Settings {
    config: Arc<CacheConfig>,
    policies: PolicySet,
    events: EventRules,
    trusted: TrustedProxies,
    /// Response headers the cache consumes and never passes on, lower case.
    hidden: Vec<&'static str>,
    cache_status: Option<String>,
    lock_timeout: Duration,
    store_timeout: Duration,
    purge_timeout: Duration,
    hit_for_miss: Duration,
    soft_purge_grace: Duration,
    stale_if_unreachable: Duration,
    invalidate_on_unsafe: bool,
    select_language: bool,
}

impl Settings {
    /// Compiles `config`: the checks that span sections, then what they
    /// compiled and the values the request path reads.
    ///
    /// # Errors
    ///
    /// Every problem those checks find (a policy that does not compile, a
    /// cron schedule that does not parse, an invalidation pattern with an
    /// unknown placeholder, a trusted proxy that is not a network), in file
    /// order. A config loaded with [`CacheConfig::from_file`] or
    /// [`CacheConfig::from_yaml_str`] has none: they run the same checks.
    pub fn compile(config: &CacheConfig) -> Result<Self, ConfigError> {
        let checked = check::cross_section(config);
        let (Some(policies), Some(trusted), true) = (
            checked.policies,
            checked.trusted,
            checked.problems.is_empty(),
        ) else {
            let mut problems = checked.problems;
            problems.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
            return Err(ConfigError::new(config.source_name(), problems));
        };
        let defaults = &config.defaults;
        let hidden = {
            let targets = defaults.targeted_cache_control_names();
            let mut hidden: Vec<&'static str> = targets
                .iter()
                .filter(|t| is_consumed(t, &targets))
                .map(|t| interned(t))
                .collect();
            if !defaults.forward_tag_headers {
                hidden.extend(defaults.tag_header_names().iter().map(|t| interned(t)));
            }
            hidden
        };
        Ok(Settings {
            events: EventRules::compile(config, &policies),
            policies,
            trusted,
            hidden,
            cache_status: Some(defaults.cache_status.trim().to_owned()).filter(|n| !n.is_empty()),
            lock_timeout: defaults.lock_timeout.get(),
            store_timeout: config.store.timeout.get(),
            purge_timeout: config.store.purge_timeout.get(),
            hit_for_miss: defaults.hit_for_miss.get(),
            soft_purge_grace: defaults.soft_purge_grace.get(),
            stale_if_unreachable: defaults
                .stale_if_unreachable
                .map_or(Duration::ZERO, |s| s.get()),
            invalidate_on_unsafe: defaults.invalidate_on_unsafe,
            select_language: defaults.select_language,
            config: Arc::new(config.clone()),
        })
    }

    /// The config these settings were compiled from.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The config, shared.
    pub(crate) fn shared_config(&self) -> &Arc<CacheConfig> {
        &self.config
    }

    /// The compiled policies.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The webhook events and what each invalidates.
    pub fn events(&self) -> &EventRules {
        &self.events
    }

    /// What webhook `event` invalidates: [`EventRules::plan`].
    pub fn plan_for_event(
        &self,
        event: &str,
        entity_id: Option<&str>,
        entity_type: Option<&str>,
    ) -> Result<InvalidationPlan, String> {
        self.events.plan(event, entity_id, entity_type)
    }

    /// The peers whose forwarding headers are believed
    /// (`server.trusted_proxies`).
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// Response headers the cache consumes itself (`Surrogate-Control` when
    /// obeyed, the tag headers unless forwarded), lower case: adapters
    /// remove them from responses they pass on.
    pub fn hidden_response_headers(&self) -> &[&'static str] {
        &self.hidden
    }

    /// The cache's name in `Cache-Status` (`defaults.cache_status`); `None`
    /// when the header is off.
    pub fn cache_status_name(&self) -> Option<&str> {
        self.cache_status.as_deref()
    }

    /// How long coalesced requests wait for the leader
    /// (`defaults.lock_timeout`).
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// How long past its freshness an entry may answer when the origin is
    /// unreachable (`defaults.stale_if_unreachable`; zero: only
    /// `stale_if_error` applies).
    pub fn stale_if_unreachable(&self) -> Duration {
        self.stale_if_unreachable
    }

    /// How long a store operation may take before the cache goes on
    /// without it (`store.timeout`).
    pub fn store_timeout(&self) -> Duration {
        self.store_timeout
    }

    /// How long a purge may take (`store.purge_timeout`).
    pub fn purge_timeout(&self) -> Duration {
        self.purge_timeout
    }

    /// How long a key whose response could not be stored goes to the
    /// origin at once (`defaults.hit_for_miss`; zero: off).
    pub fn hit_for_miss(&self) -> Duration {
        self.hit_for_miss
    }

    /// The shortest window a soft-purged entry is served stale in while
    /// one request revalidates it (`defaults.soft_purge_grace`).
    pub fn soft_purge_grace(&self) -> Duration {
        self.soft_purge_grace
    }

    /// Whether a successful unsafe request removes the entries of its
    /// target (`defaults.invalidate_on_unsafe`).
    pub fn invalidate_on_unsafe(&self) -> bool {
        self.invalidate_on_unsafe
    }

    /// Whether an answer in one language also answers the requests that
    /// prefer that language (`defaults.select_language`).
    pub fn select_language(&self) -> bool {
        self.select_language
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("source", &self.config.source_name())
            .field(
                "policies",
                &self.policies.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .field("trusted_proxies", &self.trusted.networks())
            .field("hidden", &self.hidden)
            .field("cache_status", &self.cache_status)
            .field("lock_timeout", &self.lock_timeout)
            .field("store_timeout", &self.store_timeout)
            .field("purge_timeout", &self.purge_timeout)
            .field("hit_for_miss", &self.hit_for_miss)
            .field("soft_purge_grace", &self.soft_purge_grace)
            .field("stale_if_unreachable", &self.stale_if_unreachable)
            .field("invalidate_on_unsafe", &self.invalidate_on_unsafe)
            .finish_non_exhaustive()
    }
}

/// `name`, kept for as long as the process runs: adapters are handed the
/// names of headers to remove in [`HeaderEdits`](crate::HeaderEdits) that
/// borrow the cache, while the settings holding the names may be replaced
/// meanwhile. Each distinct name is kept once, so compiling settings again
/// and again keeps no more than the names ever configured (a few each).
fn interned(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(kept) = names.get(name) {
        return kept;
    }
    let kept: &'static str = Box::leak(Box::<str>::from(name));
    names.insert(kept);
    kept
}

#[cfg(test)]
mod tests;
