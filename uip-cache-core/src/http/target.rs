//! The targets an unsafe request's success invalidates (RFC 9111 section
//! 4.4): the `Location` and `Content-Location` values on the target's
//! origin, resolved against the target (RFC 3986 section 5).

/// The path and query (`/path?query`) a `Location` / `Content-Location`
/// value names, resolved against the request's target (RFC 3986 section 5),
/// when it is on the target's host and port: RFC 9111 section 4.4 forbids
/// invalidating a URI of another origin. `None` for another host or port, for
/// a scheme other than `http` and `https`, for an absolute URI when the
/// target's authority is unknown, and for an empty reference (the target
/// itself, invalidated anyway).
///
/// The scheme is not compared: the purge does not tell schemes apart (see
/// [`KeySpec::target_tag`](crate::KeySpec::target_tag)), and behind a proxy
/// that ends TLS the origin writes `https` URLs for requests the cache sees
/// over `http`. Default ports count as absent (`:80` for `http`, `:443` for
/// `https`, each for its own scheme).
///
/// ```
/// use uip_cache_core::http::target::same_origin_target;
///
/// let t = |l| same_origin_target(l, Some("https"), Some("api.example"), "/items/7");
/// assert_eq!(t("/items/8?x=1").as_deref(), Some("/items/8?x=1"));
/// assert_eq!(t("https://API.example:443/a").as_deref(), Some("/a"));
/// assert_eq!(t("../lists/1").as_deref(), Some("/lists/1"));
/// assert_eq!(t("https://victim.example/items/7"), None);
/// assert_eq!(t("//victim.example/items/7"), None);
/// assert_eq!(t("https://api.example:8443/items/7"), None);
/// ```
pub fn same_origin_target(
    location: &str,
    scheme: Option<&str>,
    authority: Option<&str>,
    target_path: &str,
) -> Option<String> {
    let scheme = scheme.unwrap_or("http");
    let location = location.trim();
    let location = location.split_once('#').map_or(location, |(l, _)| l);
    if location.is_empty() {
        return None;
    }
    let (loc_scheme, rest) = match location.split_once(':') {
        Some((s, rest))
            if s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (Some(s), rest)
        }
        _ => (None, location),
    };
    if loc_scheme
        .is_some_and(|s| !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https"))
    {
        return None;
    }
    let reference = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            let ours = authority.map(|a| origin_authority(a, scheme))?;
            if origin_authority(&after[..end], loc_scheme.unwrap_or(scheme)) != ours {
                return None;
            }
            match &after[end..] {
                "" => "/",
                r => r,
            }
        }
        // `http:path` without `//` names no authority: not one we can compare.
        None if loc_scheme.is_some() => return None,
        None => rest,
    };
    let (path, query) = match reference.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (reference, None),
    };
    let path = if path.starts_with('/') {
        path.to_owned()
    } else if path.is_empty() {
        // `?q`: the target's path with another query.
        target_path.to_owned()
    } else {
        // A relative path: merged with the target's directory.
        let dir = &target_path[..target_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{}{path}", if dir.is_empty() { "/" } else { dir })
    };
    let mut out = remove_dot_segments(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// An authority as an origin compares it: without user information, lower
/// case, without the scheme's default port.
fn origin_authority(authority: &str, scheme: &str) -> String {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.to_ascii_lowercase();
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    match host.strip_suffix(default) {
        Some(h) => h.to_owned(),
        None => host.strip_suffix(':').map_or(host.clone(), str::to_owned),
    }
}

/// RFC 3986 section 5.2.4, for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    if !path.split('/').any(|s| s == "." || s == "..") {
        return path.to_owned();
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => {
                out.push(s);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_on_the_same_origin_only() {
        let t = |l: &str, a: Option<&str>| same_origin_target(l, Some("http"), a, "/items/7");
        assert_eq!(t("/items/7", None), Some("/items/7".into()));
        assert_eq!(
            t("http://api.local/items/7?x=1", Some("api.local")),
            Some("/items/7?x=1".into())
        );
        assert_eq!(t("HTTP://API.local", Some("api.local")), Some("/".into()));
        assert_eq!(
            t("http://api.local:80/a", Some("api.local")),
            Some("/a".into())
        );
        assert_eq!(
            t("http://u@api.local/a#f", Some("api.local")),
            Some("/a".into())
        );
        assert_eq!(t("http://api.local:8080/a", Some("api.local")), None);
        assert_eq!(t("http://api.local/a", Some("api.local:8080")), None);
        assert_eq!(
            t("http://api.local:8080/a", Some("API.local:8080")),
            Some("/a".into())
        );
        // The scheme is not compared (the purge does not tell schemes apart);
        // each side's default port is its own scheme's.
        assert_eq!(
            t("https://api.local/items", Some("api.local")),
            Some("/items".into())
        );
        assert_eq!(
            t("https://api.local:443/i", Some("api.local:80")),
            Some("/i".into())
        );
        assert_eq!(t("https://api.local:80/i", Some("api.local")), None);
        // Another host or port, or no authority to compare with: not ours.
        assert_eq!(t("http://other.host/items", Some("api.local")), None);
        assert_eq!(t("//other.host/items", Some("api.local")), None);
        assert_eq!(t("https://other.host/items", Some("api.local")), None);
        assert_eq!(t("http://api.local/items", None), None);
        assert_eq!(t("http:items", Some("api.local")), None);
        assert_eq!(t("mailto:a@api.local", Some("api.local")), None);
        assert_eq!(t("", Some("api.local")), None);
        assert_eq!(t("#frag", Some("api.local")), None);
        // Relative references resolve against the target.
        assert_eq!(t("8", None), Some("/items/8".into()));
        assert_eq!(t("./8?a=1", None), Some("/items/8?a=1".into()));
        assert_eq!(t("../../../x", None), Some("/x".into()));
        assert_eq!(t("?page=2", None), Some("/items/7?page=2".into()));
        assert_eq!(t("/a/b/../c/./d/..", None), Some("/a/c/".into()));
        assert_eq!(t("//api.local", Some("api.local")), Some("/".into()));
    }
}
