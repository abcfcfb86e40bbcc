//! Rules about the request alone: whether its method is unsafe, whether it
//! says its method is another one, whether it carries a body, and whether
//! it asks for part of the representation or sets a precondition.

use crate::request::{HeaderSource, RequestView};

/// Whether the request asks for part of the representation (`Range`,
/// `If-Range`) or sets a precondition the origin evaluates (`If-Match`,
/// `If-Unmodified-Since`): its answer may be for it alone (206, 416, 412).
/// `If-None-Match` and `If-Modified-Since` are not here: the cache removes
/// them from what it sends the origin and answers them itself.
pub fn has_range_or_precondition(headers: &dyn HeaderSource) -> bool {
    ["range", "if-range", "if-match", "if-unmodified-since"]
        .iter()
        .any(|h| headers.first(h).is_some())
}

/// Request headers with which frameworks let a client say the method is
/// another one (Express's method-override, Symfony, ASP.NET Core, Go's
/// gorilla/handlers, OData, IBM): the origin may answer a GET as a DELETE.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Every spelling of [`METHOD_OVERRIDE_HEADERS`] with any of its `-` as `_`
/// (lower case: header lookups ignore case).
static METHOD_OVERRIDE_SPELLINGS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| {
        let mut all = Vec::new();
        for name in METHOD_OVERRIDE_HEADERS {
            let dashes: Vec<usize> = name.match_indices('-').map(|(i, _)| i).collect();
            for mask in 0..1u32 << dashes.len() {
                let mut b = name.as_bytes().to_vec();
                for (k, &i) in dashes.iter().enumerate() {
                    if mask & (1 << k) != 0 {
                        b[i] = b'_';
                    }
                }
                all.push(String::from_utf8(b).unwrap_or_default());
            }
        }
        all
    });

/// Whether the request says its method is another one: a method-override
/// header, or a `_method` query parameter (Rails, Laravel, Symfony, Spring
/// and Rack read it; some for GET too). Such a request bypasses the cache:
/// the answer is not the GET's.
///
/// The headers are matched with `_` taken as `-` (`X_HTTP_Method_Override`):
/// CGI, WSGI and Rack servers fold both into one `HTTP_...` variable.
pub fn has_method_override(req: &RequestView<'_>) -> bool {
    METHOD_OVERRIDE_SPELLINGS
        .iter()
        .any(|h| req.headers.first(h).is_some())
        || req.query.is_some_and(|q| {
            q.split('&').any(|pair| {
                let name = pair.split('=').next().unwrap_or("");
                percent_decoded_eq(name, "_method")
            })
        })
}

/// Whether `raw`, percent-decoded, is `name` (ASCII, any case).
fn percent_decoded_eq(raw: &str, name: &str) -> bool {
    let mut raw = raw.bytes();
    let mut want = name.bytes();
    loop {
        let got = match raw.next() {
            Some(b'%') => {
                let hex = |b: Option<u8>| (b? as char).to_digit(16);
                match (hex(raw.next()), hex(raw.next())) {
                    (Some(h), Some(l)) => (h * 16 + l) as u8,
                    _ => return false,
                }
            }
            Some(b'+') => b' ',
            Some(b) => b,
            None => return want.next().is_none(),
        };
        if !want.next().is_some_and(|w| w.eq_ignore_ascii_case(&got)) {
            return false;
        }
    }
}

/// Whether the request carries a body: the adapter says so
/// (the `has_body` field of [`RequestView`]), or `Transfer-Encoding` or a
/// `Content-Length` other than 0 does (one that does not parse counts).
pub fn carries_body(req: &RequestView<'_>) -> bool {
    if req.has_body || req.headers.first("transfer-encoding").is_some() {
        return true;
    }
    let mut body = false;
    req.headers.for_each_value("content-length", &mut |v| {
        body |= v.split(|&b| b == b',').any(|n| {
            let n = n.trim_ascii();
            n.is_empty() || !n.iter().all(|&d| d == b'0')
        });
    });
    body
}

/// Whether a method is unsafe and, on success, invalidates its target (RFC 9111 section 4.4).
pub fn is_unsafe(method: &str) -> bool {
    // Method names are case-sensitive (RFC 9110 section 9.1): `get` is not
    // GET, and a method of unknown safety counts as unsafe.
    !["GET", "HEAD", "OPTIONS", "TRACE"].contains(&method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_overrides_and_request_bodies_are_seen() {
        let h = [("x-http-method-override", "DELETE")];
        assert!(has_method_override(&RequestView::new("GET", "/p", &h)));
        for name in ["X-HTTP-Method", "x-method-override"] {
            let h = [(name, "PUT")];
            assert!(
                has_method_override(&RequestView::new("GET", "/p", &h)),
                "{name}"
            );
        }
        let none: [(&str, &str); 0] = [];
        for q in [
            "_method=DELETE",
            "a=1&_METHOD=put",
            "%5Fmethod=DELETE",
            "a&_method",
        ] {
            let v = RequestView::new("GET", "/p", &none).query(Some(q));
            assert!(has_method_override(&v), "{q}");
        }
        for q in [
            "method=x",
            "a_method=x",
            "_methods=x",
            "x=_method",
            "%5Fmethod%",
        ] {
            let v = RequestView::new("GET", "/p", &none).query(Some(q));
            assert!(!has_method_override(&v), "{q}");
        }
        assert!(!has_method_override(&RequestView::new("GET", "/p", &none)));

        assert!(!carries_body(&RequestView::new("GET", "/p", &none)));
        assert!(carries_body(
            &RequestView::new("GET", "/p", &none).has_body(true)
        ));
        for (n, v, body) in [
            ("content-length", "0", false),
            ("content-length", "00", false),
            ("content-length", "12", true),
            ("content-length", "x", true),
            ("content-length", "", true),
            ("transfer-encoding", "chunked", true),
        ] {
            let h = [(n, v)];
            assert_eq!(
                carries_body(&RequestView::new("GET", "/p", &h)),
                body,
                "{n}: {v}"
            );
        }
    }

    #[test]
    fn method_override_headers_spelt_with_underscores_are_seen() {
        // CGI, WSGI and Rack servers read `X_HTTP_Method_Override` as
        // `X-HTTP-Method-Override` (both are HTTP_X_HTTP_METHOD_OVERRIDE).
        for name in [
            "X_HTTP_Method_Override",
            "x-http_method-override",
            "X_HTTP_METHOD",
            "x_method-override",
            "X-Method_Override",
        ] {
            let h = [(name, "DELETE")];
            assert!(
                has_method_override(&RequestView::new("GET", "/p", &h)),
                "{name}"
            );
        }
        for name in ["x-http-method-overrides", "x_http_method_", "xhttp-method"] {
            let h = [(name, "DELETE")];
            assert!(
                !has_method_override(&RequestView::new("GET", "/p", &h)),
                "{name}"
            );
        }
    }
}
