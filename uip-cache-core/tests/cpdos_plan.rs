//! Which requests bypass the cache so that one request cannot make its
//! answer everyone's: method overrides, GET/HEAD bodies the key does not
//! hold, and a `Cache-Control` that cannot be read.

use uip_cache_core::{CacheConfig, HttpCache, NoCacheReason, Plan, RequestView, Start};

fn cache(policies: &str) -> HttpCache {
    HttpCache::with_memory_store(&CacheConfig::from_yaml_str(policies).unwrap()).unwrap()
}

const ALL: &str = "policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n    vary_by: [q]\n";

fn bypass(c: &HttpCache, req: &RequestView<'_>) -> Option<NoCacheReason> {
    match c.plan(req) {
        Plan::Bypass(r) => Some(r),
        Plan::Cache(_) => None,
    }
}

#[test]
fn method_overrides_bypass() {
    let c = cache(ALL);
    for name in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let h = vec![(name.to_ascii_lowercase(), "DELETE".to_owned())];
        let req = RequestView::new("GET", "/a", &h);
        assert_eq!(
            bypass(&c, &req),
            Some(NoCacheReason::MethodOverride),
            "{name}"
        );
    }
    // `_method` is not in the key (vary_by: [q]), so it must not pick the entry.
    let none: [(&str, &str); 0] = [];
    let req = RequestView::new("GET", "/a", &none).query(Some("q=1&_method=DELETE"));
    assert_eq!(bypass(&c, &req), Some(NoCacheReason::MethodOverride));
    let req = RequestView::new("GET", "/a", &none).query(Some("q=1"));
    assert_eq!(bypass(&c, &req), None);
    assert!(matches!(c.start(&req), Start::Plan(Plan::Cache(_))));
}

#[test]
fn get_and_head_bodies_bypass_unless_the_key_holds_the_body() {
    let c = cache(ALL);
    let none: [(&str, &str); 0] = [];
    for method in ["GET", "HEAD"] {
        let req = RequestView::new(method, "/a", &none).has_body(true);
        assert_eq!(bypass(&c, &req), Some(NoCacheReason::RequestBody));
        let cl = [("content-length", "5")];
        let req = RequestView::new(method, "/a", &cl);
        assert_eq!(bypass(&c, &req), Some(NoCacheReason::RequestBody));
        let te = [("transfer-encoding", "chunked")];
        let req = RequestView::new(method, "/a", &te);
        assert_eq!(bypass(&c, &req), Some(NoCacheReason::RequestBody));
        let zero = [("content-length", "0")];
        assert_eq!(bypass(&c, &RequestView::new(method, "/a", &zero)), None);
    }
    // A policy keying the body reads it and keys on it.
    let keyed = cache(
        "policies:\n  - name: q\n    pattern: /q\n    methods: [GET, POST]\n    vary_by: [body]\n",
    );
    let cl = [("content-length", "5")];
    let req = RequestView::new("GET", "/q", &cl).has_body(true);
    assert!(matches!(keyed.start(&req), Start::ReadBody(_)));
    assert_eq!(bypass(&keyed, &req.body(Some(b"alice"))), None);
}

#[test]
fn an_unreadable_request_cache_control_bypasses() {
    let c = cache(ALL);
    for v in ["max-age=\"0", "no-cache; x", "max-age =0"] {
        let h = [("cache-control", v)];
        let req = RequestView::new("GET", "/a", &h);
        assert_eq!(
            bypass(&c, &req),
            Some(NoCacheReason::UnparsableCacheControl),
            "{v}"
        );
    }
    let h = [("cache-control", r#"max-stale, x="a\"b""#)];
    assert_eq!(bypass(&c, &RequestView::new("GET", "/a", &h)), None);
}
