//! Policies: which requests are cached, for how long, under which key and tags.
//!
//! [`PolicySet::find`] returns the first policy, in file order, whose pattern
//! matches. Patterns are `exact`, `glob`, `path_template` or `regex`; see
//! [`PatternType`].
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

use regex::Regex;

use crate::config::{CacheConfig, ConfigProblem, PatternType, PolicyConfig, TtlMode};
use crate::key::KeySpec;
use crate::pattern::{split_query, UrlPattern};

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

#[derive(Clone, Debug)]
enum Matcher {
    Any,
    Url(UrlPattern),
    Template {
        prefix: String,
        router: matchit::Router<()>,
        query: Option<UrlPattern>,
        /// The parameter names, in template order.
        params: Vec<String>,
    },
    Regex(Regex),
}

/// The name metrics give the policy of `defaults.cache_unmatched` (requests
/// no policy matched); no policy may be called so.
pub const UNMATCHED_NAME: &str = "(unmatched)";

/// A policy that matched a request, with the path-template parameters it extracted.
#[derive(Clone, Debug)]
pub struct PolicyMatch<'a> {
    policy: &'a Policy,
    index: Option<usize>,
    params: Vec<(String, String)>,
}

impl<'a> PolicyMatch<'a> {
    /// The policy.
    pub fn policy(&self) -> &'a Policy {
        self.policy
    }

    /// Path-template parameters, in template order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// Where the policy is in its set (`None` for the fallback), for [`PolicySet::get`].
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// Splits the match into its index and parameters, owned.
    pub fn into_parts(self) -> (Option<usize>, Vec<(String, String)>) {
        (self.index, self.params)
    }

    /// The tags of an entry stored under this match: the policy's `tags`,
    /// `policy:<name>`, `path:<path>` and `<param>:<value>` for each template parameter.
    pub fn entry_tags(&self, path: &str) -> Vec<String> {
        self.policy.entry_tags(&self.params, path)
    }
}

impl Policy {
    fn compile(i: usize, p: &PolicyConfig, config: &CacheConfig) -> Result<Self, ConfigProblem> {
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
            range_passthrough_above: p
                .range_passthrough_above
                .or(config.defaults.range_passthrough_above)
                .map_or(max_size, |b| b.bytes()),
            targets: config.defaults.targeted_cache_control_names(),
            tag_headers: config.defaults.tag_header_names(),
            forward_tag_headers: config.defaults.forward_tag_headers,
        })
    }

    fn fallback(config: &CacheConfig) -> Self {
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
            range_passthrough_above: config
                .defaults
                .range_passthrough_above
                .map_or(config.defaults.max_size.bytes(), |b| b.bytes()),
            targets: config.defaults.targeted_cache_control_names(),
            tag_headers: config.defaults.tag_header_names(),
            forward_tag_headers: config.defaults.forward_tag_headers,
        }
    }

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

    /// `url` is the `path?query` string, built once per lookup by the caller
    /// the first time a regex policy needs it.
    fn matches(
        &self,
        path: &str,
        query: Option<&str>,
        url: &mut Option<String>,
    ) -> Option<Vec<(String, String)>> {
        match &self.matcher {
            Matcher::Any => Some(Vec::new()),
            Matcher::Url(p) => p.matches(path, query).then(Vec::new),
            Matcher::Template {
                prefix,
                router,
                query: q,
                ..
            } => {
                if !path.starts_with(prefix.as_str())
                    || !q.as_ref().is_none_or(|q| q.matches_query(query))
                {
                    return None;
                }
                let m = router.at(path).ok()?;
                Some(
                    m.params
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                )
            }
            Matcher::Regex(re) => {
                let hit = match query {
                    Some(q) => re.is_match(url.get_or_insert_with(|| format!("{path}?{q}"))),
                    None => re.is_match(path),
                };
                hit.then(Vec::new)
            }
        }
    }
}

/// The parameter names of a path template that compiled, in order:
/// `{id}` and `{*rest}` name `id` and `rest`; `{{` and `}}` are braces.
fn template_params(path: &str) -> Vec<String> {
    let b = path.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' | b'}' if b.get(i + 1) == Some(&b[i]) => i += 2,
            b'{' => {
                let end = path[i + 1..].find('}').map_or(b.len(), |e| i + 1 + e);
                names.push(path[i + 1..end].trim_start_matches('*').to_owned());
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    names
}

/// The compiled policies of a config, in file order, plus the fallback used when
/// `defaults.cache_unmatched` is on.
#[derive(Clone, Debug)]
pub struct PolicySet {
    policies: Vec<Policy>,
    fallback: Option<Policy>,
}

impl PolicySet {
    /// Compiles every policy; returns every problem found.
    pub fn compile(config: &CacheConfig) -> Result<Self, Vec<ConfigProblem>> {
        let mut policies = Vec::with_capacity(config.policies.len());
        let mut problems = Vec::new();
        for (i, p) in config.policies.iter().enumerate() {
            match Policy::compile(i, p, config) {
                Ok(p) => policies.push(p),
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(PolicySet {
            policies,
            fallback: config
                .defaults
                .cache_unmatched
                .then(|| Policy::fallback(config)),
        })
    }

    /// The first policy matching the path and raw query, in file order; the
    /// fallback policy when none does and `cache_unmatched` is on.
    pub fn find(&self, path: &str, query: Option<&str>) -> Option<PolicyMatch<'_>> {
        let query = query.filter(|q| !q.is_empty());
        let mut url = None;
        for (i, policy) in self.policies.iter().enumerate() {
            if let Some(params) = policy.matches(path, query, &mut url) {
                return Some(PolicyMatch {
                    policy,
                    index: Some(i),
                    params,
                });
            }
        }
        self.fallback.as_ref().map(|policy| PolicyMatch {
            policy,
            index: None,
            params: Vec::new(),
        })
    }

    /// The policy at `index` (`None`: the fallback) as given by [`PolicyMatch::index`].
    ///
    /// # Panics
    ///
    /// If the index does not come from this set.
    pub fn get(&self, index: Option<usize>) -> &Policy {
        match index {
            Some(i) => &self.policies[i],
            None => self
                .fallback
                .as_ref()
                .expect("the fallback policy exists when matched"),
        }
    }

    /// The policies, in file order (without the fallback).
    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter()
    }

    /// Number of policies (without the fallback).
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether there are no policies.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

#[cfg(test)]
mod tests;
