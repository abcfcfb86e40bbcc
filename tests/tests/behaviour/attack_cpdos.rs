//! Cache-poisoned denial of service through the library adapters: the
//! Tower layer and the actix-web middleware, each in front of an origin
//! that honours method overrides, answers GET bodies and fails ranges and
//! preconditions with cacheable errors. The attacker's request comes first;
//! the clean request after it must get the real answer.

use bytes::Bytes;
use uip_cache_testkit::harness::{Adapter, Backend, Harness, ACTIX, TOWER};
use uip_cache_testkit::{Got, Reply, Seen};

const POLICY: &str = "policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n    compression: {enabled: true, min_size: 16}\n";

/// A framework's habits (see `uip-cache-server/tests/attack_cpdos.rs`).
fn origin(s: &Seen, _: usize) -> Reply {
    let method = s.header("x-http-method-override").unwrap_or(&s.method);
    if method != "GET" && method != "HEAD" {
        return Reply::ok("not allowed").status(405);
    }
    if s.header("range").is_some() {
        return Reply::ok("unsatisfiable")
            .status(416)
            .header("cache-control", "max-age=3600");
    }
    if s.header("if-match").is_some() {
        return Reply::ok("failed")
            .status(412)
            .header("cache-control", "max-age=3600");
    }
    let user = s.header("x-user").unwrap_or("nobody");
    match s.path() {
        "/search" => Reply::ok(&format!(
            "results for [{}]",
            String::from_utf8_lossy(&s.body)
        )),
        "/me" => Reply::ok(&format!("hello {user}"))
            .header("cache-control", r#"max-age=60, x="a\"b", private"#),
        path => Reply::ok(&format!("the real {path}, padded for gzip")),
    }
}

/// One request from `shop.test`: method, path, headers, body.
async fn send(h: &Harness, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Got {
    let mut all = vec![("host", "shop.test")];
    all.extend_from_slice(headers);
    h.send_body(method, path, &all, Bytes::from(body.to_owned()))
        .await
}

/// The attacks, each followed by clean requests, through `adapter`.
async fn attacks(adapter: Adapter) {
    let h = Harness::new(adapter, Backend::Memory, POLICY, origin)
        .await
        .expect("the memory store is always there");
    let h = &h;
    // A method override: bypasses; the 405 is nobody else's answer.
    let attack = send(h, "GET", "/a", &[("x-http-method-override", "DELETE")], "").await;
    assert_eq!(
        (attack.status, attack.x_cache()),
        (405, "BYPASS"),
        "{attack:?}"
    );
    assert!(
        attack.cache_status().contains("detail=method_override"),
        "{attack:?}"
    );
    let clean = send(h, "GET", "/a", &[], "").await;
    assert_eq!((clean.status, clean.x_cache()), (200, "MISS"), "{clean:?}");
    let again = send(h, "GET", "/a", &[], "").await;
    assert_eq!((again.status, again.x_cache()), (200, "HIT"), "{again:?}");

    // A Range the representation cannot satisfy: the cache asks the origin
    // for the whole (which would have failed the Range with a cacheable
    // 416) and answers the 416 itself, to this request alone; the clean
    // request gets the whole that was stored.
    let attack = send(h, "GET", "/b", &[("range", "bytes=9999-")], "").await;
    assert_eq!(attack.status, 416, "{attack:?}");
    assert_eq!(attack.header("content-range"), Some("bytes */28"));
    assert!(h.origin.seen().iter().all(|s| s.header("range").is_none()));
    h.wait_for_sets(2).await;
    let clean = send(h, "GET", "/b", &[], "").await;
    assert_eq!(
        (clean.status, clean.text()),
        (200, "the real /b, padded for gzip".into()),
        "{clean:?}"
    );

    // An If-Match answer is that request's alone.
    let attack = send(h, "GET", "/c", &[("if-match", "\"x\"")], "").await;
    assert_eq!(attack.status, 412, "{attack:?}");
    assert!(
        attack
            .cache_status()
            .contains("detail=range_or_precondition"),
        "{attack:?}"
    );
    let clean = send(h, "GET", "/c", &[], "").await;
    assert_eq!((clean.status, clean.x_cache()), (200, "MISS"), "{clean:?}");

    // A GET body the key does not hold: bypasses, each body its answer.
    let before = h.calls();
    let alice = send(h, "GET", "/search", &[], "alice").await;
    assert_eq!(alice.x_cache(), "BYPASS", "{alice:?}");
    assert!(
        alice.cache_status().contains("detail=request_body"),
        "{alice:?}"
    );
    let bob = send(h, "GET", "/search", &[], "bob").await;
    assert_eq!(bob.text(), "results for [bob]", "{bob:?}");
    assert_eq!(h.calls(), before + 2);

    // A request Cache-Control that cannot be read: bypasses.
    let odd = send(h, "GET", "/a", &[("cache-control", "max-age=\"0")], "").await;
    assert_eq!(odd.x_cache(), "BYPASS", "{odd:?}");
    assert!(odd.cache_status().contains("fwd=request"), "{odd:?}");

    // `private` after a quoted-pair is found.
    let alice = send(h, "GET", "/me", &[("x-user", "alice")], "").await;
    assert_eq!(alice.text(), "hello alice");
    let bob = send(h, "GET", "/me", &[("x-user", "bob")], "").await;
    assert_eq!(bob.text(), "hello bob", "{bob:?}");
}

#[tokio::test]
async fn tower_layer() {
    attacks(TOWER).await;
}

#[actix_rt::test]
async fn actix_middleware() {
    attacks(ACTIX).await;
}
