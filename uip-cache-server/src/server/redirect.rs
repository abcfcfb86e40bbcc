//! `server.redirect_http`: a plain-HTTP request gets a `308` to the same
//! host, path and query on the TLS listener's port.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use uip_cache_core::forwarding::TrustedProxies;
use uip_cache_core::Connection;

use crate::proxy::{error_response, Fields, ProxyBody};

/// Where a plain request goes instead, as a `308` (or a `400` when its
/// host cannot be named in a URL); `None` when it is to be served: a
/// trusted proxy in front says its client spoke HTTPS (the key holds
/// `https` then; redirecting would loop).
pub(super) fn to_https<B>(
    req: &Request<B>,
    conn: &Connection,
    trusted: &TrustedProxies,
    https_port: u16,
) -> Option<Response<ProxyBody>> {
    let fields = Fields(req.headers());
    let origin = trusted.client_origin(conn, None, &fields);
    if origin.scheme == "https" {
        return None;
    }
    let Some(location) = origin.host.and_then(|h| location(h, https_port, req)) else {
        return Some(error_response(
            StatusCode::BAD_REQUEST,
            "this site is served over HTTPS; the request has no valid Host to redirect to",
        ));
    };
    let mut resp = error_response(
        StatusCode::PERMANENT_REDIRECT,
        "this site is served over HTTPS",
    );
    resp.headers_mut().insert(header::LOCATION, location);
    Some(resp)
}

/// `https://host[:port]/path?query`; `None` for a host that is not one.
fn location<B>(host: &str, https_port: u16, req: &Request<B>) -> Option<HeaderValue> {
    let host = host_of(host)?;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let path = if path.starts_with('/') { path } else { "/" };
    let url = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    // The same bytes parse as a URL with that host, or nothing is sent.
    let parsed: http::Uri = url.parse().ok()?;
    if parsed.host() != Some(host) {
        return None;
    }
    HeaderValue::from_str(&url).ok()
}

/// The host of a `Host` field (or `:authority`) that is a plain
/// `host[:port]` (RFC 9110 section 7.2), without its port; `None` for
/// anything else. Stricter than RFC 3986's authority on purpose: the host
/// goes into a URL another client may follow, so only what a site's name
/// can be passes.
///
/// - a name: dot-separated labels of 1 to 63 letters, digits, `-` and `_`
///   (253 bytes at most, one final dot allowed), which covers IPv4
///   addresses too;
/// - or an IPv6 address in brackets (no zone: it names nothing outside
///   the client's own host);
/// - then an optional `:` and a port of at most 5 digits, at most 65535.
///
/// No userinfo (`@`), no percent-encoding, no sub-delimiters (`;`, `,`,
/// `'`, ...), no spaces or control bytes, no path.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')?;
            rest[..end].parse::<std::net::Ipv6Addr>().ok()?;
            let host = &authority[..end + 2];
            (host, &authority[end + 2..])
        }
        None => match authority.find(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        },
    };
    match port.strip_prefix(':') {
        None if port.is_empty() => {}
        None => return None,
        // `host:` is allowed (an empty port).
        Some("") => {}
        Some(digits) => {
            if digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse::<u16>().ok()?;
        }
    }
    if host.starts_with('[') {
        return Some(host);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (host.len() <= 253 && name.split('.').all(label_ok)).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str) -> Request<()> {
        Request::builder().uri(target).body(()).unwrap()
    }

    #[test]
    fn the_location_keeps_host_path_and_query_and_names_the_tls_port() {
        let r = req("/a/b?c=1&d");
        assert_eq!(
            location("example.org:8080", 8443, &r).unwrap(),
            "https://example.org:8443/a/b?c=1&d"
        );
        assert_eq!(
            location("example.org", 443, &r).unwrap(),
            "https://example.org/a/b?c=1&d"
        );
        assert_eq!(
            location("[::1]:80", 8443, &req("/")).unwrap(),
            "https://[::1]:8443/"
        );
    }

    #[test]
    fn hosts_that_would_name_another_url_are_refused() {
        for host in [
            "",
            "evil.example@victim",
            "a/b",
            "a b",
            "exa mple.org",
            "host:port:1",
            // Valid in RFC 3986's reg-name, junk in a site's name.
            "a.test;x=1",
            "a.test,b.test",
            "a.test'",
            "a.test(x)",
            "a.test!",
            "a.test*",
            "a.test+x",
            "a.test=x",
            "a.test$",
            "a.test&x",
            "a%2etest",
            "a.test:abc",
            "a.test:99999",
            "a.test:+80",
            "a.test: 80",
            "a..test",
            ".a.test",
            "[::1",
            "[::1]x",
            "[::1]:80:80",
            "[fe80::1%25eth0]",
            "[v1.x]",
            "a.test\r\nSet-Cookie: x=1",
            "a.test\t",
        ] {
            assert!(location(host, 8443, &req("/")).is_none(), "{host:?}");
        }
        let long = format!("{}.test", "a".repeat(64));
        assert!(location(&long, 8443, &req("/")).is_none());
    }

    #[test]
    fn names_addresses_and_ports_that_are_plain_pass() {
        for (given, host) in [
            ("a.test", "a.test"),
            ("A-b_c.Test.", "A-b_c.Test."),
            ("a.test:", "a.test"),
            ("a.test:65535", "a.test"),
            ("192.0.2.1:80", "192.0.2.1"),
            ("[2001:db8::1]:8080", "[2001:db8::1]"),
            ("[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]"),
            ("localhost", "localhost"),
        ] {
            assert_eq!(host_of(given), Some(host), "{given}");
        }
    }

    #[test]
    fn a_trusted_proxy_saying_https_is_served_and_others_are_redirected() {
        let trusted = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        let peer = Connection::new(Some(([127, 0, 0, 1], 9).into()), false);
        let other = Connection::new(Some(([10, 0, 0, 1], 9).into()), false);
        let r = Request::builder()
            .uri("/x")
            .header("host", "example.org")
            .header("x-forwarded-proto", "https")
            .body(())
            .unwrap();
        assert!(to_https(&r, &peer, &trusted, 8443).is_none());
        let resp = to_https(&r, &other, &trusted, 8443).unwrap();
        assert_eq!(resp.status(), 308);
        assert_eq!(resp.headers()["location"], "https://example.org:8443/x");
        let no_host = req("/x");
        assert_eq!(
            to_https(&no_host, &other, &trusted, 8443).unwrap().status(),
            400
        );
    }

    proptest::proptest! {
        /// Whatever the Host, the Location is an https URL for exactly
        /// that host on the TLS port, with the request's path, or none.
        #[test]
        fn a_location_names_the_host_it_was_given_or_nothing(
            host in "[a-zA-Z0-9.:@\\[\\]/?#%_;,' -]{0,40}",
            port in 1u16..,
        ) {
            let r = req("/p?q=1");
            if let Some(v) = location(&host, port, &r) {
                let url: http::Uri = v.to_str().unwrap().parse().unwrap();
                proptest::prop_assert_eq!(url.scheme_str(), Some("https"));
                let given = host_of(&host).unwrap();
                proptest::prop_assert_eq!(url.host(), Some(given));
                proptest::prop_assert!(host.starts_with(given));
                proptest::prop_assert_eq!(url.port_u16().unwrap_or(443), port);
                proptest::prop_assert_eq!(url.path_and_query().unwrap().as_str(), "/p?q=1");
            }
        }

        /// Any string at all: never a panic, and what passes holds only
        /// the bytes a name, an address or a bracketed IPv6 address has.
        #[test]
        fn any_authority_is_judged_without_panicking(authority in "\\PC{0,80}|[\\[\\]:0-9a-f.]{0,40}") {
            if let Some(host) = host_of(&authority) {
                proptest::prop_assert!(authority.starts_with(host));
                proptest::prop_assert!(!host.is_empty());
                proptest::prop_assert!(host.bytes().all(|b| b.is_ascii_alphanumeric()
                    || b"-_.:[]".contains(&b)));
                let rest = &authority[host.len()..];
                proptest::prop_assert!(rest.is_empty() || rest.starts_with(':'));
            }
        }

        /// Any bytes a header value may hold, as the server receives them.
        #[test]
        fn any_host_bytes_are_answered_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..60)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = location(&text, 8443, &req("/"));
        }
    }
}
