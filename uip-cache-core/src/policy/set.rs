//! The compiled policies of a config, and the first one a request matches.

use super::Policy;
use crate::config::{CacheConfig, ConfigProblem};

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
