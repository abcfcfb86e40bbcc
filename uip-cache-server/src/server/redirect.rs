//! `server.redirect_http`: a plain-HTTP request gets a `308` to the same
//! host, path and query on the TLS listener's port.

use http::header::{self, HeaderValue};
use http::uri::Authority;
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
    let authority: Authority = host.parse().ok()?;
    let host = authority.host();
    // A Host of `user@host` or a path would make another URL of it.
    if host.is_empty() || authority.as_str().contains('@') {
        return None;
    }
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
        ] {
            assert!(location(host, 8443, &req("/")).is_none(), "{host}");
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
            host in "[a-zA-Z0-9.:@\\[\\]/?#%_ -]{0,40}",
            port in 1u16..,
        ) {
            let r = req("/p?q=1");
            if let Some(v) = location(&host, port, &r) {
                let url: http::Uri = v.to_str().unwrap().parse().unwrap();
                proptest::prop_assert_eq!(url.scheme_str(), Some("https"));
                let given: Authority = host.parse().unwrap();
                proptest::prop_assert_eq!(url.host(), Some(given.host()));
                proptest::prop_assert_eq!(url.port_u16().unwrap_or(443), port);
                proptest::prop_assert_eq!(url.path_and_query().unwrap().as_str(), "/p?q=1");
            }
        }
    }
}
