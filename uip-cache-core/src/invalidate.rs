//! Turning webhook events into what they invalidate.

use crate::config::{CacheConfig, StrategyKind};
use crate::pattern::UrlPattern;
use crate::policy::PolicySet;

/// Replaces `{entity_id}` and `{entity_type}` in a pattern or tag.
pub fn substitute(template: &str, entity_id: &str, entity_type: &str) -> String {
    template
        .replace("{entity_id}", entity_id)
        .replace("{entity_type}", entity_type)
}

/// What one event invalidates: URL patterns and tags.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct InvalidationPlan {
    /// URL patterns (glob) whose entries are removed.
    pub patterns: Vec<UrlPattern>,
    /// Tags whose entries are removed.
    pub tags: Vec<String>,
}

impl InvalidationPlan {
    /// Whether the event is unknown to the config (nothing to do).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.tags.is_empty()
    }
}

/// The plan for a webhook event: the enabled webhook rules for `event` (with
/// placeholders substituted) and the `policy:<name>` tag of every policy whose
/// `invalidate_on` names the event.
///
/// A placeholder whose value is missing from the event would widen a pattern
/// (`/entities/{entity_id}` -> `/entities/`), so such patterns are skipped and
/// reported as errors instead of silently matching the wrong entries.
pub fn plan_for_event(
    config: &CacheConfig,
    policies: &PolicySet,
    event: &str,
    entity_id: Option<&str>,
    entity_type: Option<&str>,
) -> Result<InvalidationPlan, String> {
    let mut plan = InvalidationPlan::default();
    let id = entity_id.unwrap_or("");
    let ty = entity_type.unwrap_or("");
    for strategy in &config.invalidation.strategies {
        if strategy.kind != StrategyKind::Webhook || !strategy.enabled {
            continue;
        }
        for rule in strategy.events.iter().filter(|r| r.event.value == event) {
            for pat in &rule.invalidate_patterns {
                if (pat.contains("{entity_id}") && id.is_empty()) || (pat.contains("{entity_type}") && ty.is_empty()) {
                    return Err(format!(
                        "event `{event}` needs entity_id and entity_type for pattern `{}`",
                        pat.value
                    ));
                }
                plan.patterns.push(UrlPattern::glob(&substitute(pat, id, ty))?);
            }
            for tag in &rule.invalidate_tags {
                plan.tags.push(substitute(tag, id, ty));
            }
        }
    }
    for p in policies.iter() {
        if p.invalidate_on().iter().any(|e| e == event) {
            plan.tags.push(format!("policy:{}", p.name()));
        }
    }
    plan.tags.sort();
    plan.tags.dedup();
    Ok(plan)
}
