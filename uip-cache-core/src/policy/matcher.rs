//! Whether a policy matches a request's path and query, and the
//! path-template parameters it extracts.

use regex::Regex;

use super::Policy;
use crate::pattern::UrlPattern;

#[derive(Clone, Debug)]
pub(super) enum Matcher {
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

impl Policy {
    /// `url` is the `path?query` string, built once per lookup by the caller
    /// the first time a regex policy needs it.
    pub(super) fn matches(
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
pub(super) fn template_params(path: &str) -> Vec<String> {
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
