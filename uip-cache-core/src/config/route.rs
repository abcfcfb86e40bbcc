//! `server.routes`: which backend a request goes to, by host and path
//! prefix, in file order.
//!
//! The grammar of a route's `host`, `path_prefix` and upstream URLs lives
//! here, with the section's checks, so that the compiled route table
//! ([`crate::route`]) reads exactly what was checked.

use std::net::Ipv6Addr;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigProblem, KeyConfig, Located, Seconds};

/// One route of `server.routes`: the requests it matches (`host`,
/// `path_prefix`; both optional, both must match) and where they go
/// (`upstream`, or `upstreams` in round robin).
///
/// ```yaml
/// server:
///   routes:
///     - { host: "api.example.org", path_prefix: "/ngsi-ld/", upstream: "http://broker:1026" }
///     - { path_prefix: "/sparql", upstreams: ["http://fuseki-1:3030", "http://fuseki-2:3030"], fail_timeout: 10s }
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// The host the request is for (as its key holds it; the port is not
    /// compared): `api.example.org`, an IP address (`[::1]` for IPv6), or
    /// `*.example.org` for every name under `example.org` (not
    /// `example.org` itself). Case does not matter. Default: any host.
    #[serde(default)]
    pub host: Option<Located<String>>,
    /// The start of the path, compared byte for byte with the path the
    /// request sent and ending at a segment boundary: `/sparql` matches
    /// `/sparql`, `/sparql/` and `/sparql/update`, not `/sparqlx`; the
    /// query is not compared. Default: any path.
    #[serde(default)]
    pub path_prefix: Option<Located<String>>,
    /// The one backend, `http://host:port` or `https://host:port`.
    #[serde(default)]
    pub upstream: Option<Located<String>>,
    /// Several backends serving the same content, taken in round robin;
    /// one that refuses connections is skipped for `fail_timeout`.
    #[serde(default)]
    pub upstreams: Option<Vec<Located<String>>>,
    /// How long a backend of `upstreams` that failed to connect is skipped
    /// (default 10s, as nginx's `fail_timeout`; 0: never skipped).
    #[serde(default = "default_fail_timeout")]
    pub fail_timeout: Seconds,
}

/// nginx's default `fail_timeout`.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);

fn default_fail_timeout() -> Seconds {
    Seconds(DEFAULT_FAIL_TIMEOUT)
}

impl RouteConfig {
    /// A route to `upstream` for every request (as `server.upstream` is).
    pub fn catch_all(upstream: impl Into<String>) -> Self {
        RouteConfig {
            host: None,
            path_prefix: None,
            upstream: Some(Located::new(upstream.into())),
            upstreams: None,
            fail_timeout: default_fail_timeout(),
        }
    }

    /// The backends' URLs, in the order given.
    pub fn urls(&self) -> impl Iterator<Item = &Located<String>> {
        self.upstream.iter().chain(self.upstreams.iter().flatten())
    }

    /// The first line the entry was read from, when known.
    fn line(&self) -> Option<u64> {
        [&self.host, &self.path_prefix, &self.upstream]
            .into_iter()
            .flatten()
            .map(|l| l.line)
            .chain(self.upstreams.iter().flatten().map(|l| l.line))
            .flatten()
            .min()
    }
}

/// A checked `host` of a route, lower case, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostSpec {
    /// A name or an IPv4 address, compared ASCII case-insensitively.
    Exact(String),
    /// `*.example.org`: the suffix `.example.org`.
    Wildcard(String),
    /// `[::1]`: compared as an address.
    Ipv6(Ipv6Addr),
}

/// The longest host name DNS allows (253), plus the trailing dot.
pub(crate) const MAX_HOST_LEN: usize = 254;

/// Whether `name` is a host name (or IPv4 address) as routes compare them:
/// labels of ASCII letters, digits, `-` and `_`, separated by single dots,
/// at most 253 bytes. No trailing dot (the caller removes one).
pub(crate) fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < MAX_HOST_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Parses a route's `host`.
pub(crate) fn host_spec(spec: &str) -> Result<HostSpec, String> {
    let trimmed = spec.strip_suffix('.').unwrap_or(spec);
    if let Some(inner) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().map(HostSpec::Ipv6).map_err(|_| {
            format!("`{spec}` is not an IPv6 address in brackets such as [2001:db8::1]")
        });
    }
    if trimmed.contains(':') {
        return Err(format!(
            "`{spec}` has a port or is an IPv6 address without brackets: a route compares hosts without their port (write `[::1]` for IPv6)"
        ));
    }
    let (wildcard, name) = match trimmed.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    if name.contains('*') {
        return Err(format!(
            "`{spec}`: only a leading `*.` is a wildcard (`*.example.org` matches every name under example.org)"
        ));
    }
    if !is_host_name(name) {
        return Err(format!(
            "`{spec}` is not a host name such as api.example.org, *.example.org or 10.0.0.1"
        ));
    }
    let lower = name.to_ascii_lowercase();
    Ok(if wildcard {
        HostSpec::Wildcard(format!(".{lower}"))
    } else {
        HostSpec::Exact(lower)
    })
}

/// Checks a route's `path_prefix`: the start of a path as clients send it,
/// with nothing a backend could read as another path.
pub(crate) fn check_path_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("`{prefix}` must start with `/`"));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| matches!(c, '?' | '#' | '%' | '\\' | ';') || c.is_whitespace() || c.is_control())
    {
        let why = match c {
            '?' | '#' => "the query is not compared: give the path only",
            '%' => "prefixes are compared with the path as sent: write the characters, not percent-escapes",
            _ => "it cannot be part of a path prefix",
        };
        return Err(format!(
            "`{prefix}` contains `{}`: {why}",
            c.escape_default()
        ));
    }
    if prefix.contains("//")
        || prefix
            .split('/')
            .any(|segment| segment == "." || segment == "..")
    {
        return Err(format!(
            "`{prefix}` has an empty, `.` or `..` segment: write the path as clients send it"
        ));
    }
    Ok(())
}

/// Checks an upstream URL: `http://` or `https://`, a host and an
/// optional port, nothing after but an optional `/` (the request's path is
/// sent as it is).
pub(crate) fn check_upstream_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!(
            "`{url}` is not an http:// or https:// URL such as http://127.0.0.1:3000"
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "`{url}` has a path: an upstream is scheme://host[:port], and each request's own path is sent to it"
        ));
    }
    if authority.contains('@') {
        return Err(format!("`{url}` has credentials: they are not supported"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, port)) if addr.parse::<Ipv6Addr>().is_ok() => (addr, port),
            _ => {
                return Err(format!(
                    "`{url}`: the IPv6 address in brackets is not valid"
                ))
            }
        },
        // The port with its `:`, or nothing.
        None => authority.split_at(authority.find(':').unwrap_or(authority.len())),
    };
    if host.is_empty() || (!authority.starts_with('[') && !is_host_name(host)) {
        return Err(format!("`{url}` has no valid host"));
    }
    if !port.is_empty() {
        let digits = port.strip_prefix(':').unwrap_or("x");
        if !matches!(digits.parse::<u16>(), Ok(p) if p > 0) || digits.starts_with('+') {
            return Err(format!(
                "`{url}`: the port must be a number from 1 to 65535"
            ));
        }
    }
    Ok(())
}

/// The checks of `server.routes` and of how it sits with `server.upstream`
/// and `key.include_host`.
pub(super) fn check_routes(
    routes: &[RouteConfig],
    key: &KeyConfig,
    problems: &mut Vec<ConfigProblem>,
) {
    for (i, r) in routes.iter().enumerate() {
        let at = |field: &str| format!("server.routes[{i}].{field}");
        match (&r.upstream, &r.upstreams) {
            (Some(_), Some(list)) => problems.push(ConfigProblem::new(
                list.first().and_then(|l| l.line).or(r.line()),
                at("upstreams"),
                "give `upstream` (one backend) or `upstreams` (several), not both",
            )),
            (None, None) => problems.push(ConfigProblem::new(
                r.line(),
                format!("server.routes[{i}]"),
                "a route needs `upstream` (one backend) or `upstreams` (several)",
            )),
            (None, Some(list)) if list.is_empty() => problems.push(ConfigProblem::new(
                r.line(),
                at("upstreams"),
                "the list is empty: name at least one backend",
            )),
            _ => {}
        }
        for (field, url) in r.upstream.iter().map(|u| ("upstream".to_owned(), u)).chain(
            r.upstreams
                .iter()
                .flatten()
                .enumerate()
                .map(|(j, u)| (format!("upstreams[{j}]"), u)),
        ) {
            if let Err(e) = check_upstream_url(url) {
                problems.push(ConfigProblem::new(url.line.or(r.line()), at(&field), e));
            }
        }
        if let Some(host) = &r.host {
            if let Err(e) = host_spec(host) {
                problems.push(ConfigProblem::new(host.line, at("host"), e));
            } else if !key.include_host {
                problems.push(ConfigProblem::new(
                    host.line,
                    at("host"),
                    "routes by host need keys that hold the host: with key.include_host false, the same path on two hosts would share one entry whichever backend answered it; remove key.include_host: false or this route's host",
                ));
            }
        }
        if let Some(prefix) = &r.path_prefix {
            if let Err(e) = check_path_prefix(prefix) {
                problems.push(ConfigProblem::new(prefix.line, at("path_prefix"), e));
            }
        }
    }
}

/// Routes no request can reach: after a route that matches every request,
/// or after one with the same host and prefix.
pub(super) fn unreachable_routes(
    routes: &[RouteConfig],
    upstream: Option<&str>,
    notes: &mut Vec<ConfigProblem>,
) {
    let same = |a: &Option<Located<String>>, b: &Option<Located<String>>, fold: bool| match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) if fold => a.value.eq_ignore_ascii_case(&b.value),
        (Some(a), Some(b)) => a.value == b.value,
        _ => false,
    };
    for (i, r) in routes.iter().enumerate() {
        let shadow = routes[..i].iter().position(|earlier| {
            (earlier.host.is_none() && earlier.path_prefix.is_none())
                || (same(&earlier.host, &r.host, true)
                    && same(&earlier.path_prefix, &r.path_prefix, false))
        });
        if let Some(j) = shadow {
            notes.push(ConfigProblem::new(
                r.line(),
                format!("server.routes[{i}]"),
                format!("no request reaches this route: server.routes[{j}] matches every request it would"),
            ));
        }
    }
    if let (Some(u), Some(j)) = (
        upstream,
        routes
            .iter()
            .position(|r| r.host.is_none() && r.path_prefix.is_none()),
    ) {
        notes.push(ConfigProblem::new(
            None,
            "server.upstream",
            format!("`{u}` is the route for requests no route matches, but server.routes[{j}] matches every request"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            host_spec("API.Example.org."),
            Ok(HostSpec::Exact("api.example.org".into()))
        );
        assert_eq!(
            host_spec("*.Example.org"),
            Ok(HostSpec::Wildcard(".example.org".into()))
        );
        assert_eq!(host_spec("[::1]"), Ok(HostSpec::Ipv6(Ipv6Addr::LOCALHOST)));
        assert_eq!(
            host_spec("10.0.0.1"),
            Ok(HostSpec::Exact("10.0.0.1".into()))
        );
        for bad in [
            "",
            ".",
            "api.example.org:8443",
            "::1",
            "[nope]",
            "a.*.org",
            "*",
            "*.",
            "a..b",
            "a b",
            "ä.example",
            "a/b",
        ] {
            assert!(host_spec(bad).is_err(), "{bad}");
        }
        assert!(host_spec(&"a".repeat(254)).is_err());
    }

    #[test]
    fn prefixes() {
        for good in ["/", "/sparql", "/ngsi-ld/", "/a-b_c.d/e~f"] {
            assert_eq!(check_path_prefix(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "sparql",
            "/a?b",
            "/a#b",
            "/%73parql",
            "/a\\b",
            "/a;b",
            "//a",
            "/a//b",
            "/./a",
            "/a/..",
            "/a b",
            "/a\n",
        ] {
            assert!(check_path_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_urls() {
        for good in [
            "http://127.0.0.1:3000",
            "https://broker.internal:8443/",
            "http://fuseki-1:3030",
            "http://[::1]:8080",
            "http://backend",
        ] {
            assert_eq!(check_upstream_url(good), Ok(()), "{good}");
        }
        for bad in [
            "ftp://x",
            "http://",
            "http://a/b",
            "http://a?x",
            "http://u:p@a",
            "http://a:0",
            "http://a:70000",
            "http://a:+80",
            "http://a:",
            "http://[zz]:80",
            "http://a b",
            "127.0.0.1:3000",
        ] {
            assert!(check_upstream_url(bad).is_err(), "{bad}");
        }
    }
}
