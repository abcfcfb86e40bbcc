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

/// The webhook events a config acts on, compiled once (it is part of
/// [`Settings`](crate::settings::Settings)): the rules of the enabled
/// webhook strategies, in file order, and the events each policy's
/// `invalidate_on` names.
#[derive(Clone, Debug, Default)]
pub struct EventRules {
    rules: Vec<Rule>,
    /// `(event, tag)`: a policy's `invalidate_on` event and its
    /// `policy:<name>` tag.
    policies: Vec<(String, String)>,
}

/// One event rule of an enabled webhook strategy: templates with the
/// placeholders still in them.
#[derive(Clone, Debug)]
struct Rule {
    event: String,
    patterns: Vec<String>,
    tags: Vec<String>,
}

impl EventRules {
    /// The event rules of `config`, with `policies` (compiled from it).
    pub fn compile(config: &CacheConfig, policies: &PolicySet) -> Self {
        let rules = config
            .invalidation
            .strategies
            .iter()
            .filter(|s| s.kind == StrategyKind::Webhook && s.enabled)
            .flat_map(|s| &s.events)
            .map(|rule| Rule {
                event: rule.event.value.clone(),
                patterns: rule
                    .invalidate_patterns
                    .iter()
                    .map(|p| p.value.clone())
                    .collect(),
                tags: rule.invalidate_tags.clone(),
            })
            .collect();
        let policies = policies
            .iter()
            .flat_map(|p| {
                p.invalidate_on()
                    .iter()
                    .map(|e| (e.clone(), format!("policy:{}", p.name())))
            })
            .collect();
        EventRules { rules, policies }
    }

    /// The plan for a webhook event: the enabled webhook rules for `event`
    /// (with placeholders substituted) and the `policy:<name>` tag of every
    /// policy whose `invalidate_on` names the event.
    ///
    /// A placeholder whose value is missing from the event would widen a
    /// pattern (`/entities/{entity_id}` -> `/entities/`), so such patterns
    /// are skipped and reported as errors instead of silently matching the
    /// wrong entries.
    pub fn plan(
        &self,
        event: &str,
        entity_id: Option<&str>,
        entity_type: Option<&str>,
    ) -> Result<InvalidationPlan, String> {
        let mut plan = InvalidationPlan::default();
        let id = entity_id.unwrap_or("");
        let ty = entity_type.unwrap_or("");
        // A value with a wildcard would widen the configured pattern into one
        // the operator never wrote (`{entity_id}` = `*` purges every entity).
        let check = |template: &str| {
            for (field, placeholder, value) in [
                ("entity_id", "{entity_id}", id),
                ("entity_type", "{entity_type}", ty),
            ] {
                if template.contains(placeholder)
                    && (value.contains('*') || value.chars().any(char::is_control))
                {
                    return Err(format!(
                        "field `{field}` must not contain `*` or control characters"
                    ));
                }
            }
            Ok(())
        };
        for rule in self.rules.iter().filter(|r| r.event == event) {
            for pat in &rule.patterns {
                check(pat)?;
                if (pat.contains("{entity_id}") && id.is_empty())
                    || (pat.contains("{entity_type}") && ty.is_empty())
                {
                    return Err(format!(
                        "event `{event}` needs entity_id and entity_type for pattern `{pat}`"
                    ));
                }
                plan.patterns
                    .push(UrlPattern::glob(&substitute(pat, id, ty))?);
            }
            for tag in &rule.tags {
                check(tag)?;
                plan.tags.push(substitute(tag, id, ty));
            }
        }
        for (e, tag) in &self.policies {
            if e == event {
                plan.tags.push(tag.clone());
            }
        }
        plan.tags.sort();
        plan.tags.dedup();
        Ok(plan)
    }
}

/// The plan for a webhook event under `config` and its compiled `policies`:
/// [`EventRules::plan`] of rules compiled for this call. A cache has them
/// compiled already ([`crate::settings::Settings::events`]).
pub fn plan_for_event(
    config: &CacheConfig,
    policies: &PolicySet,
    event: &str,
    entity_id: Option<&str>,
    entity_type: Option<&str>,
) -> Result<InvalidationPlan, String> {
    EventRules::compile(config, policies).plan(event, entity_id, entity_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
policies:
  - name: cams
    pattern: "/ngsi-ld/v1/entities?type=Camera*"
    ttl: 60
    invalidate_on: [camera_update]
  - name: other
    pattern: "/other"
    ttl: 60
invalidation:
  strategies:
    - type: webhook
      events:
        - event: entity_update
          invalidate_patterns:
            - "/ngsi-ld/v1/entities/{entity_id}"
            - "/ngsi-ld/v1/entities?type={entity_type}*"
          invalidate_tags: ["id:{entity_id}"]
    - type: webhook
      enabled: false
      events:
        - event: entity_update
          invalidate_patterns: ["/disabled/*"]
"#;

    fn plan(event: &str, id: Option<&str>, ty: Option<&str>) -> Result<InvalidationPlan, String> {
        let config = CacheConfig::from_yaml_str(CONFIG).unwrap();
        let policies = PolicySet::compile(&config).unwrap();
        plan_for_event(&config, &policies, event, id, ty)
    }

    #[test]
    fn webhook_event_substitutes_placeholders() {
        let p = plan(
            "entity_update",
            Some("urn:ngsi-ld:Camera:001"),
            Some("Camera"),
        )
        .unwrap();
        let pats: Vec<_> = p.patterns.iter().map(UrlPattern::as_str).collect();
        assert_eq!(
            pats,
            [
                "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001",
                "/ngsi-ld/v1/entities?type=Camera*"
            ]
        );
        assert_eq!(p.tags, ["id:urn:ngsi-ld:Camera:001"]);
        assert!(p.patterns[1].matches_url("/ngsi-ld/v1/entities?limit=5&type=Camera"));
    }

    #[test]
    fn policies_listen_to_their_events_and_unknown_events_do_nothing() {
        let p = plan("camera_update", None, None).unwrap();
        assert_eq!(p.tags, ["policy:cams"]);
        assert!(p.patterns.is_empty());
        assert!(plan("nobody_listens", Some("x"), None).unwrap().is_empty());
    }

    #[test]
    fn a_missing_placeholder_value_is_an_error_not_a_wider_pattern() {
        let err = plan("entity_update", None, Some("Camera")).unwrap_err();
        assert!(err.contains("entity_id"), "{err}");
    }

    #[test]
    fn a_wildcard_in_an_event_value_is_refused_not_widened() {
        let err = plan("entity_update", Some("*"), Some("Camera")).unwrap_err();
        assert!(err.contains("entity_id"), "{err}");
        let err = plan("entity_update", Some("urn:x"), Some("Cam*")).unwrap_err();
        assert!(err.contains("entity_type"), "{err}");
        // An event nobody listens to is no error, whatever its values.
        assert!(plan("nobody_listens", Some("*"), None).unwrap().is_empty());
    }
}

/// What one invalidation removed, remembered for a while so that a response
/// fetched before it and arriving after it is not stored, while responses
/// for everything else store as usual.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Invalidation {
    /// Entries whose path and query match.
    Pattern(UrlPattern),
    /// Entries carrying any of these tags.
    Tags(Vec<String>),
}

impl Invalidation {
    /// Whether `other` is the same invalidation (the same line).
    pub(crate) fn same_as(&self, other: &Invalidation) -> bool {
        match (self, other) {
            (Invalidation::Tags(a), Invalidation::Tags(b)) => a == b,
            _ => self.to_line() == other.to_line(),
        }
    }

    /// Whether an entry for `path` and `query` with `tags` is concerned.
    pub fn concerns(&self, path: &str, query: Option<&str>, tags: &[String]) -> bool {
        match self {
            Invalidation::Pattern(p) => p.matches(path, query),
            Invalidation::Tags(ts) => ts.iter().any(|t| tags.contains(t)),
        }
    }

    /// A one-line form for logs shared through a store.
    pub fn to_line(&self) -> String {
        match self {
            Invalidation::Pattern(p) => p.to_line(),
            Invalidation::Tags(ts) => {
                let mut line = String::from("t");
                for t in ts {
                    line.push('\n');
                    line.push_str(t);
                }
                line
            }
        }
    }

    /// Reads [`Invalidation::to_line`]'s form back; `None` for anything else.
    pub fn from_line(line: &str) -> Option<Self> {
        match line.strip_prefix('t') {
            Some(rest) if rest.is_empty() || rest.starts_with('\n') => Some(Invalidation::Tags(
                rest.split('\n').skip(1).map(str::to_owned).collect(),
            )),
            _ => UrlPattern::from_line(line).map(Invalidation::Pattern),
        }
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_concern_only_their_targets() {
        let cases = [
            Invalidation::Pattern(UrlPattern::exact("/items?b=2&a=1")),
            Invalidation::Pattern(UrlPattern::exact_path("/items")),
            Invalidation::Pattern(UrlPattern::glob("/ngsi-ld/*?type=Camera*").unwrap()),
            Invalidation::Tags(vec!["camera".into(), "with space".into()]),
        ];
        let tags = ["camera".to_string()];
        let expect = [
            ("/items", Some("a=1&b=2"), true),
            ("/items", Some("zzz"), true),
            ("/ngsi-ld/v1/entities", Some("type=Camera&limit=1"), true),
            ("/anything", None, true),
        ];
        for (inv, (path, query, concerned)) in cases.iter().zip(expect) {
            let back = Invalidation::from_line(&inv.to_line()).unwrap();
            let tags_for = if matches!(inv, Invalidation::Tags(_)) {
                &tags[..]
            } else {
                &[][..]
            };
            assert_eq!(back.concerns(path, query, tags_for), concerned, "{inv:?}");
            assert!(!back.concerns("/other", None, &[]), "{inv:?}");
        }
        assert!(Invalidation::from_line("x nonsense").is_none());
    }
}
