//! Loading a config and checking it as a whole.
//!
//! `config/` reads the file into sections and each section checks its own
//! shape; it depends on nothing else in the crate. The checks here span
//! sections and need the modules above config: the policies compile into a
//! [`PolicySet`], cron schedules parse, invalidation patterns use only the
//! placeholders [`crate::invalidate`] fills in, trusted proxies are
//! networks. They are the checks of the step from a config to
//! [`Settings`](super::Settings), which keeps what they compile; the loaders
//! that validate ([`CacheConfig::from_file`], [`CacheConfig::from_yaml_str`])
//! run them too, so a config that loads is one the cache can run.

use std::path::Path;

use crate::config::{self, CacheConfig, ConfigError, ConfigProblem, Located};
use crate::forwarding::{Cidr, TrustedProxies};
use crate::policy::{PolicySet, UNMATCHED_NAME};

/// Messages about loading keep the target they have always had, which log
/// filters may name.
const LOG_TARGET: &str = "uip_cache_core::config";

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

    pub(crate) fn parse(
        text: &str,
        name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let expanded = config::expand_env(text, name, env)?;
        for var in &expanded.unset {
            tracing::warn!(target: LOG_TARGET, file = name, variable = %var, "environment variable is not set; using an empty value");
        }
        let config = config::read_yaml(&expanded.text, name)?;
        let problems = problems(&config);
        if problems.is_empty() {
            for w in config.warnings() {
                tracing::warn!(target: LOG_TARGET, "{name}:{w}");
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
        notes.extend(self.shape_warnings());
        notes
    }
}

/// Checks everything that does not need the network; returns every problem
/// found, in file order (those without a line last).
fn problems(config: &CacheConfig) -> Vec<ConfigProblem> {
    let mut problems = cross_section(config).problems;
    problems.extend(config.shape_problems());
    problems.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
    problems
}

/// What the checks that span sections compiled on the way, and the problems
/// they found.
pub(super) struct Checked {
    /// The policies, when every one compiled.
    pub(super) policies: Option<PolicySet>,
    /// `server.trusted_proxies`, when every entry is a network.
    pub(super) trusted: Option<TrustedProxies>,
    /// Every problem, in the order the checks found them.
    pub(super) problems: Vec<ConfigProblem>,
}

/// The checks that need modules other than config.
pub(super) fn cross_section(config: &CacheConfig) -> Checked {
    let mut problems = Vec::new();
    let policies = match PolicySet::compile(config) {
        Ok(set) => Some(set),
        Err(errs) => {
            problems.extend(errs);
            None
        }
    };
    for (i, p) in config.policies.iter().enumerate() {
        if p.name.value == UNMATCHED_NAME {
            problems.push(ConfigProblem::new(
                p.name.line,
                format!("policies[{i}].name"),
                format!(
                    "`{}` is reserved: metrics use it for requests no policy matched",
                    p.name.value
                ),
            ));
        }
        if let Some(w) = &p.warming {
            if let Some(s) = &w.schedule {
                check_cron(s, &format!("policies[{i}].warming.schedule"), &mut problems);
            }
        }
    }
    for (i, u) in config.warming.urls.iter().enumerate() {
        if let Some(s) = &u.schedule {
            check_cron(s, &format!("warming.urls[{i}].schedule"), &mut problems);
        }
    }
    for (i, s) in config.invalidation.strategies.iter().enumerate() {
        for (j, rule) in s.events.iter().enumerate() {
            for (k, pat) in rule.invalidate_patterns.iter().enumerate() {
                // A pattern that is not a path is reported by its section.
                if !pat.starts_with('/') {
                    continue;
                }
                let probe = crate::invalidate::substitute(pat, "x", "x");
                if probe.contains('{') || probe.contains('}') {
                    problems.push(ConfigProblem::new(
                        pat.line,
                        format!(
                            "invalidation.strategies[{i}].events[{j}].invalidate_patterns[{k}]"
                        ),
                        format!(
                            "`{}` uses a placeholder other than {{entity_id}} and {{entity_type}}",
                            pat.value
                        ),
                    ));
                }
            }
        }
    }
    let mut networks = Vec::with_capacity(config.server.trusted_proxies.len());
    let mut all_networks = true;
    for (i, p) in config.server.trusted_proxies.iter().enumerate() {
        match p.value.trim().parse::<Cidr>() {
            Ok(n) => networks.push(n),
            Err(e) => {
                all_networks = false;
                problems.push(ConfigProblem::new(
                    p.line,
                    format!("server.trusted_proxies[{i}]"),
                    e.to_string(),
                ));
            }
        }
    }
    Checked {
        policies,
        trusted: all_networks.then(|| networks.into_iter().collect()),
        problems,
    }
}

fn check_cron(schedule: &Located<String>, path: &str, problems: &mut Vec<ConfigProblem>) {
    if let Err(e) = crate::schedule::parse_cron(&schedule.value) {
        problems.push(ConfigProblem::new(schedule.line, path, e));
    }
}

#[cfg(test)]
mod tests;
