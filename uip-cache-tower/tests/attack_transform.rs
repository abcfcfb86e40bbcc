//! Transformations the origin forbade, through the Tower layer: no
//! `no-transform` body is compressed, the gzip the cache made has its own
//! validator, conditionals and `Vary` follow the representation, and a large
//! gzip entry is decompressed as a client without gzip reads it.

use uip_cache_testkit::tower::{cached, get, ok, req};
use uip_cache_testkit::{wait_for_sets, Origin, Reply};

const GZIP_ON: &str = "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n    max_size: 16MB\n    compression: {min_size: 256}\n";
const GZIP: (&str, &str) = ("accept-encoding", "gzip, br");

fn json(n: usize) -> String {
    let unit = r#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera","status":{"value":"on"}},"#;
    unit.chars().cycle().take(n).collect()
}

#[tokio::test]
async fn a_no_transform_response_is_never_compressed() {
    let body = json(8192);
    let origin = Origin::always(
        Reply::ok(&body)
            .header("content-type", "application/json")
            .header("cache-control", "max-age=60, no-transform"),
    )
    .chunked();
    let mut svc = cached(GZIP_ON, &origin);
    ok(&mut svc, req("GET", "/items", &[GZIP])).await;
    wait_for_sets(svc.cache(), 1).await;
    let hit = ok(&mut svc, req("GET", "/items", &[GZIP])).await;
    assert_eq!(hit.x_cache(), "HIT");
    assert_eq!(hit.header("content-encoding"), None);
    assert_eq!(hit.body, body.as_bytes());
    assert_eq!(svc.cache().stats().snapshot().compressed_bytes, 0);
}

#[tokio::test]
async fn the_cache_made_gzip_has_its_own_validator_and_conditionals_follow_it() {
    let body = json(8192);
    let origin = Origin::always(
        Reply::ok(&body)
            .header("content-type", "application/json")
            .header("etag", "\"v1\""),
    )
    .chunked();
    let mut svc = cached(GZIP_ON, &origin);
    ok(&mut svc, req("GET", "/items", &[GZIP])).await;
    wait_for_sets(svc.cache(), 1).await;
    let gz = ok(&mut svc, req("GET", "/items", &[GZIP])).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("etag"), Some("W/\"v1-gzip\""));
    let plain = ok(&mut svc, get("/items")).await;
    assert_eq!(plain.header("etag"), Some("\"v1\""));
    assert_eq!(plain.body, body.as_bytes());

    let gz_304 = ok(
        &mut svc,
        req("GET", "/items", &[GZIP, ("if-none-match", "W/\"v1-gzip\"")]),
    )
    .await;
    assert_eq!(gz_304.status, 304);
    assert_eq!(gz_304.header("etag"), Some("W/\"v1-gzip\""));
    assert_eq!(gz_304.header("vary"), Some("accept-encoding"));
    let not_for_identity = ok(
        &mut svc,
        req("GET", "/items", &[("if-none-match", "W/\"v1-gzip\"")]),
    )
    .await;
    assert_eq!(not_for_identity.status, 200);
    assert_eq!(not_for_identity.body, body.as_bytes());
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_gzip_entry_is_decompressed_as_it_is_read() {
    let body = json(5 << 20);
    let origin =
        Origin::always(Reply::ok(&body).header("content-type", "application/json")).chunked();
    let mut svc = cached(GZIP_ON, &origin);
    ok(&mut svc, req("GET", "/items", &[GZIP])).await;
    wait_for_sets(svc.cache(), 1).await;
    let plain = ok(&mut svc, get("/items")).await;
    assert_eq!(plain.x_cache(), "HIT");
    assert_eq!(plain.header("content-length"), Some("5242880"));
    assert!(plain.body == body.as_bytes(), "the body differs");
}
