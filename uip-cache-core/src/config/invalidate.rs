//! `invalidation`: webhook events, time-based checks and tag purges.

use std::fmt;

use serde::Deserialize;

use super::de::{empty_as_none, yes};
use super::{ConfigProblem, Located, Seconds};

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

    /// The section's own checks: paths start with `/`, and only webhook
    /// strategies have events. Which placeholders a pattern may use is
    /// checked where they are filled in.
    pub(super) fn check(&self, problems: &mut Vec<ConfigProblem>) {
        for (i, s) in self.strategies.iter().enumerate() {
            for (j, rule) in s.events.iter().enumerate() {
                for (k, pat) in rule.invalidate_patterns.iter().enumerate() {
                    if !pat.starts_with('/') {
                        problems.push(ConfigProblem::new(
                            pat.line,
                            format!(
                                "invalidation.strategies[{i}].events[{j}].invalidate_patterns[{k}]"
                            ),
                            format!("`{}` must start with `/`", pat.value),
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
