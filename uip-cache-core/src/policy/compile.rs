//! Compiling a policy of the config: its matcher, methods, statuses,
//! limits and key, with the defaults filled in; a problem names the field.

use regex::Regex;

use super::matcher::{template_params, Matcher};
use super::{Compression, Policy, DEFAULT_STATUSES, HEURISTIC_STATUSES};
use crate::config::{CacheConfig, ConfigProblem, PatternType, PolicyConfig, TtlMode};
use crate::key::KeySpec;
use crate::pattern::{split_query, UrlPattern};

impl Policy {
    pub(super) fn compile(
        i: usize,
        p: &PolicyConfig,
        config: &CacheConfig,
    ) -> Result<Self, ConfigProblem> {
        let pattern = p.pattern.value.as_str();
        let problem =
            |msg: String| ConfigProblem::new(p.pattern.line, format!("policies[{i}].pattern"), msg);
        let kind = p
            .pattern_type
            .unwrap_or_else(|| PatternType::infer(pattern));
        let matcher = match kind {
            PatternType::Exact => {
                if !pattern.starts_with('/') {
                    return Err(problem(format!(
                        "exact pattern `{pattern}` must start with `/`"
                    )));
                }
                Matcher::Url(if pattern.contains('?') {
                    UrlPattern::exact(pattern)
                } else {
                    UrlPattern::exact_path(pattern)
                })
            }
            PatternType::Glob => Matcher::Url(UrlPattern::glob(pattern).map_err(problem)?),
            PatternType::PathTemplate => {
                let (path, query) = split_query(pattern);
                if !path.starts_with('/') {
                    return Err(problem(format!(
                        "path template `{pattern}` must start with `/`"
                    )));
                }
                let mut router = matchit::Router::new();
                router
                    .insert(path, ())
                    .map_err(|e| problem(format!("invalid path template `{pattern}`: {e}")))?;
                let query = match query {
                    Some(q) => Some(UrlPattern::glob(&format!("*?{q}")).map_err(problem)?),
                    None => None,
                };
                Matcher::Template {
                    prefix: path[..path.find('{').unwrap_or(path.len())].to_owned(),
                    router,
                    query,
                    params: template_params(path),
                }
            }
            PatternType::Regex => Matcher::Regex(
                Regex::new(pattern)
                    .map_err(|e| problem(format!("invalid regex `{pattern}`: {e}")))?,
            ),
        };
        let methods = match &p.methods {
            Some(m) if m.is_empty() => {
                return Err(ConfigProblem::new(
                    p.pattern.line,
                    format!("policies[{i}].methods"),
                    "must not be empty",
                ))
            }
            Some(m) => m.iter().map(|m| m.to_ascii_uppercase()).collect(),
            None => vec!["GET".into(), "HEAD".into()],
        };
        if let Some(bad) = methods
            .iter()
            .find(|m| !["GET", "HEAD", "POST"].contains(&m.as_str()))
        {
            return Err(ConfigProblem::new(
                p.pattern.line,
                format!("policies[{i}].methods"),
                format!(
                    "policy `{}`: `{bad}` cannot be cached; methods may be GET, HEAD and POST",
                    p.name.value
                ),
            ));
        }
        let key = KeySpec::new(&config.key, &p.vary_by);
        if methods.iter().any(|m| m == "POST") && !key.uses_body() {
            return Err(ConfigProblem::new(
                p.pattern.line,
                format!("policies[{i}].methods"),
                format!("policy `{}` caches POST, so its vary_by must contain `body` (or two different queries would share an entry)", p.name.value),
            ));
        }
        let max_body = p.max_body.unwrap_or(config.defaults.max_body).bytes();
        let statuses = p
            .statuses
            .clone()
            .unwrap_or_else(|| DEFAULT_STATUSES.to_vec());
        let heuristic_statuses = match &p.statuses {
            Some(listed) => listed.clone(),
            None => HEURISTIC_STATUSES.to_vec(),
        };
        if let Some(bad) = statuses.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(ConfigProblem::new(
                p.pattern.line,
                format!("policies[{i}].statuses"),
                format!("{bad} is not an HTTP status"),
            ));
        }
        let max_size = p.max_size.unwrap_or(config.defaults.max_size).bytes();
        if max_size == 0 {
            return Err(ConfigProblem::new(
                p.pattern.line,
                format!("policies[{i}].max_size"),
                "must be greater than zero",
            ));
        }
        Ok(Policy {
            name: p.name.value.clone(),
            matcher,
            ttl: p.ttl.map(|t| t.get()),
            ttl_mode: p.ttl_mode,
            max_size,
            compression: p
                .compression
                .as_ref()
                .filter(|c| c.enabled)
                .map(|c| Compression {
                    min_size: c.min_size.bytes(),
                    level: c.level,
                }),
            stale_while_revalidate: p
                .stale_while_revalidate
                .or(config.defaults.stale_while_revalidate)
                .map(|s| s.get()),
            stale_if_error: p
                .stale_if_error
                .or(config.defaults.stale_if_error)
                .map(|s| s.get()),
            methods,
            statuses,
            heuristic_statuses,
            negative_ttl: p.negative_ttl.unwrap_or(config.defaults.negative_ttl).get(),
            tags: p.tags.clone(),
            invalidate_on: p.invalidate_on.clone(),
            key,
            max_body,
            stream_above: p
                .stream_above
                .unwrap_or(config.defaults.stream_above)
                .bytes(),
            range_passthrough_above: p
                .range_passthrough_above
                .or(config.defaults.range_passthrough_above)
                .map_or(max_size, |b| b.bytes()),
            targets: config.defaults.targeted_cache_control_names(),
            tag_headers: config.defaults.tag_header_names(),
            forward_tag_headers: config.defaults.forward_tag_headers,
        })
    }

    pub(super) fn fallback(config: &CacheConfig) -> Self {
        Policy {
            name: "default".into(),
            matcher: Matcher::Any,
            ttl: config.defaults.ttl.map(|t| t.get()),
            ttl_mode: TtlMode::Default,
            max_size: config.defaults.max_size.bytes(),
            compression: None,
            stale_while_revalidate: config.defaults.stale_while_revalidate.map(|s| s.get()),
            stale_if_error: config.defaults.stale_if_error.map(|s| s.get()),
            methods: vec!["GET".into(), "HEAD".into()],
            statuses: DEFAULT_STATUSES.to_vec(),
            heuristic_statuses: HEURISTIC_STATUSES.to_vec(),
            negative_ttl: config.defaults.negative_ttl.get(),
            tags: Vec::new(),
            invalidate_on: Vec::new(),
            key: KeySpec::new(&config.key, &[]),
            max_body: config.defaults.max_body.bytes(),
            stream_above: config.defaults.stream_above.bytes(),
            range_passthrough_above: config
                .defaults
                .range_passthrough_above
                .map_or(config.defaults.max_size.bytes(), |b| b.bytes()),
            targets: config.defaults.targeted_cache_control_names(),
            tag_headers: config.defaults.tag_header_names(),
            forward_tag_headers: config.defaults.forward_tag_headers,
        }
    }
}
