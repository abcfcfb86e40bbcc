//! URL patterns: the glob and exact forms shared by policies and invalidation.
//!
//! A glob's path part uses `*` for any run of characters (including `/`); `?`
//! is the literal query separator, never a wildcard. The query part is a list of
//! constraints on parameters by name, in any order: `?type=Camera*` matches
//! `?limit=100&type=Camera`. A pattern without a query part says nothing about
//! the query.
//!
//! ```
//! use uip_cache_core::UrlPattern;
//!
//! let p = UrlPattern::glob("/ngsi-ld/v1/entities?type=Camera*").unwrap();
//! assert!(p.matches("/ngsi-ld/v1/entities", Some("limit=100&type=Camera")));
//! assert!(!p.matches("/ngsi-ld/v1/entities", Some("type=Sensor")));
//! ```

use regex::Regex;

/// A compiled URL pattern (glob or exact) matched against a path and query.
#[derive(Clone, Debug)]
pub struct UrlPattern {
    source: String,
    path: PathMatcher,
    query: QueryMatcher,
}

#[derive(Clone, Debug)]
enum PathMatcher {
    Exact(String),
    /// Anchored regex translated from the glob; `prefix` is its literal start.
    Glob {
        prefix: String,
        regex: Regex,
    },
}

#[derive(Clone, Debug)]
enum QueryMatcher {
    /// No query part in the pattern: any query matches.
    Any,
    /// Every constraint must be met by some parameter.
    Constraints(Vec<(String, ValueMatcher)>),
    /// The query must hold exactly these parameters, in any order.
    Exact(Vec<(String, String)>),
}

#[derive(Clone, Debug)]
enum ValueMatcher {
    /// `name` alone: present with any value.
    Present,
    Exact(String),
    Glob(Regex),
}

/// Where, among stored paths, the entries a pattern can match are found: the
/// store looks only there, which keeps invalidation proportional to the entries
/// under the pattern's literal part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathSelector<'a> {
    /// Only entries with exactly this path.
    Exact(&'a str),
    /// Entries whose path starts with this prefix (empty: all entries).
    Prefix(&'a str),
}

impl UrlPattern {
    /// Compiles a glob such as `/ngsi-ld/*` or `/entities?type=Camera*`.
    pub fn glob(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') && !pattern.starts_with('*') {
            return Err(format!("pattern `{pattern}` must start with `/` or `*`"));
        }
        let (path, query) = split_query(pattern);
        let path_m = if path.contains('*') {
            PathMatcher::Glob {
                prefix: path[..path.find('*').unwrap_or(path.len())].to_owned(),
                regex: glob_regex(path)?,
            }
        } else {
            PathMatcher::Exact(path.to_owned())
        };
        let query_m = match query {
            None => QueryMatcher::Any,
            Some(q) => {
                let mut constraints = Vec::new();
                for (name, value) in query_pairs(q) {
                    let vm = match value {
                        None => ValueMatcher::Present,
                        Some(v) if v.contains('*') => ValueMatcher::Glob(glob_regex(v)?),
                        Some(v) => ValueMatcher::Exact(v.to_owned()),
                    };
                    constraints.push((name.to_owned(), vm));
                }
                QueryMatcher::Constraints(constraints)
            }
        };
        Ok(UrlPattern {
            source: pattern.to_owned(),
            path: path_m,
            query: query_m,
        })
    }

    /// A pattern that matches exactly one URL (`/path` or `/path?query`), with the
    /// query parameters in any order. A URL without `?` matches only requests
    /// without a query.
    pub fn exact(url: &str) -> Self {
        let (path, query) = split_query(url);
        let mut params: Vec<(String, String)> = query
            .map(|q| {
                query_pairs(q)
                    .map(|(n, v)| (n.to_owned(), v.unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        params.sort();
        UrlPattern {
            source: url.to_owned(),
            path: PathMatcher::Exact(path.to_owned()),
            query: QueryMatcher::Exact(params),
        }
    }

    /// A pattern that matches one path, whatever the query (an `exact` policy
    /// pattern without `?`).
    pub fn exact_path(path: &str) -> Self {
        UrlPattern {
            source: path.to_owned(),
            path: PathMatcher::Exact(path.to_owned()),
            query: QueryMatcher::Any,
        }
    }

    /// A one-line form that [`UrlPattern::from_line`] reads back (for logs
    /// shared between instances): the kind, a space, the source.
    pub fn to_line(&self) -> String {
        let kind = match (&self.path, &self.query) {
            (PathMatcher::Exact(_), QueryMatcher::Exact(_)) => 'e',
            (PathMatcher::Exact(_), QueryMatcher::Any) => 'p',
            _ => 'g',
        };
        format!("{kind} {}", self.source)
    }

    /// Reads [`UrlPattern::to_line`]'s form back.
    pub fn from_line(line: &str) -> Option<Self> {
        let (kind, source) = line.split_once(' ')?;
        match kind {
            "e" => Some(UrlPattern::exact(source)),
            "p" => Some(UrlPattern::exact_path(source)),
            "g" => UrlPattern::glob(source).ok(),
            _ => None,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Where stored entries this pattern can match are to be found.
    pub fn selector(&self) -> PathSelector<'_> {
        match &self.path {
            PathMatcher::Exact(p) => PathSelector::Exact(p),
            PathMatcher::Glob { prefix, .. } => PathSelector::Prefix(prefix),
        }
    }

    /// The literal part a matching path must start with.
    pub fn literal_prefix(&self) -> &str {
        match self.selector() {
            PathSelector::Exact(p) | PathSelector::Prefix(p) => p,
        }
    }

    /// Whether a request's path and query match.
    pub fn matches(&self, path: &str, query: Option<&str>) -> bool {
        self.matches_path(path) && self.matches_query(query)
    }

    /// Whether a `path?query` string matches.
    pub fn matches_url(&self, url: &str) -> bool {
        let (path, query) = split_query(url);
        self.matches(path, query)
    }

    pub(crate) fn matches_path(&self, path: &str) -> bool {
        match &self.path {
            PathMatcher::Exact(p) => p == path,
            PathMatcher::Glob { prefix, regex } => {
                path.starts_with(prefix.as_str()) && regex.is_match(path)
            }
        }
    }

    pub(crate) fn matches_query(&self, query: Option<&str>) -> bool {
        match &self.query {
            QueryMatcher::Any => true,
            QueryMatcher::Constraints(cs) => cs.iter().all(|(name, vm)| {
                query.is_some_and(|q| {
                    query_pairs(q).any(|(n, v)| {
                        n == name
                            && match vm {
                                ValueMatcher::Present => true,
                                ValueMatcher::Exact(e) => v.unwrap_or("") == e,
                                ValueMatcher::Glob(re) => re.is_match(v.unwrap_or("")),
                            }
                    })
                })
            }),
            QueryMatcher::Exact(expected) => {
                let mut got: Vec<(&str, &str)> = query
                    .map(|q| query_pairs(q).map(|(n, v)| (n, v.unwrap_or(""))).collect())
                    .unwrap_or_default();
                got.sort_unstable();
                got.len() == expected.len()
                    && got
                        .iter()
                        .zip(expected)
                        .all(|((n, v), (en, ev))| n == en && v == ev)
            }
        }
    }
}

/// Splits `path?query` at the first `?`.
pub(crate) fn split_query(url: &str) -> (&str, Option<&str>) {
    match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    }
}

/// The `name[=value]` pairs of a raw query, empty segments skipped. Values stay
/// as sent (not percent-decoded), so keys and matches never merge two spellings.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        })
}

/// Translates a glob (only `*` is special) into an anchored regex.
fn glob_regex(glob: &str) -> Result<Regex, String> {
    let mut re = String::with_capacity(glob.len() + 8);
    re.push_str("^(?s:");
    for (i, part) in glob.split('*').enumerate() {
        if i > 0 {
            re.push_str(".*");
        }
        re.push_str(&regex::escape(part));
    }
    re.push_str(")$");
    Regex::new(&re).map_err(|e| format!("cannot compile `{glob}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_path_and_query_in_any_order() {
        let p = UrlPattern::glob("/ngsi-ld/v1/entities?type=Camera*").unwrap();
        assert!(p.matches_url("/ngsi-ld/v1/entities?type=Camera&limit=100"));
        assert!(p.matches_url("/ngsi-ld/v1/entities?limit=100&type=CameraX"));
        assert!(!p.matches_url("/ngsi-ld/v1/entities?type=Sensor"));
        assert!(!p.matches_url("/ngsi-ld/v1/entities"));
        assert!(!p.matches_url("/ngsi-ld/v1/entities/x?type=Camera"));
        assert_eq!(p.selector(), PathSelector::Exact("/ngsi-ld/v1/entities"));
    }

    #[test]
    fn star_crosses_slashes_and_question_mark_is_literal() {
        let p = UrlPattern::glob("/ngsi-ld/*").unwrap();
        assert!(p.matches_url("/ngsi-ld/v1/entities/urn:x?type=A"));
        assert!(!p.matches_url("/other/ngsi-ld/x"));
        assert_eq!(p.selector(), PathSelector::Prefix("/ngsi-ld/"));
        // Regex metacharacters in the glob are literal.
        let p = UrlPattern::glob("/a.b/(c)+*").unwrap();
        assert!(p.matches_url("/a.b/(c)+/d"));
        assert!(!p.matches_url("/axb/(c)+/d"));
        let p = UrlPattern::glob("/sparql?query=*").unwrap();
        assert!(p.matches_url("/sparql?query=SELECT%20*"));
        assert!(!p.matches_url("/sparql"));
        let p = UrlPattern::glob("/x?flag").unwrap();
        assert!(p.matches_url("/x?flag&b=2"));
        assert!(!p.matches_url("/x?b=2"));
    }

    #[test]
    fn exact_urls_ignore_parameter_order_only() {
        let p = UrlPattern::exact("/e?b=2&a=1");
        assert!(p.matches_url("/e?a=1&b=2"));
        assert!(!p.matches_url("/e?a=1"));
        assert!(!p.matches_url("/e?a=1&b=2&c=3"));
        assert!(!p.matches_url("/e"));
        let p = UrlPattern::exact("/e");
        assert!(p.matches_url("/e"));
        assert!(!p.matches_url("/e?a=1"));
    }

    #[test]
    fn rejects_relative_patterns() {
        assert!(UrlPattern::glob("entities/*").is_err());
    }
}
