use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::*;
use crate::store::PutOptions;
use crate::CacheConfig;

const CONFIG: &str = r#"
policies:
  - name: entity
    pattern: "/ngsi-ld/v1/entities/{id}"
    ttl: 60
  - name: cams
    pattern: "/ngsi-ld/v1/entities?type=Camera*"
    ttl: 60
    tags: [camera]
    invalidate_on: [camera_update]
  - name: sensors
    pattern: "/ngsi-ld/v1/entities?type=Sensor*"
    ttl: 60
    tags: [sensor]
invalidation:
  strategies:
    - type: webhook
      secret: hook
      events:
        - event: entity_update
          invalidate_patterns:
            - "/ngsi-ld/v1/entities/{entity_id}"
            - "/ngsi-ld/v1/entities?type={entity_type}*"
admin:
  secret: admin
"#;

fn admin_with(yaml: &str) -> Admin {
    let config = CacheConfig::from_yaml_str(yaml).unwrap();
    Admin::new(HttpCache::with_memory_store(&config).unwrap())
}

/// Puts an entry under `path?query` with `tags`, as the cache would.
async fn put(admin: &Admin, key: &str, path: &str, query: Option<&str>, tags: &[&str]) {
    let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
    let opts = PutOptions::new(Duration::from_secs(60), path)
        .tags(&tags)
        .query(query);
    admin
        .cache()
        .store()
        .put(key, Bytes::from_static(b"x"), opts)
        .await
        .unwrap();
}

async fn seed(admin: &Admin) {
    put(
        admin,
        "e1",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001",
        None,
        &["policy:entity"],
    )
    .await;
    put(
        admin,
        "e2",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:002",
        None,
        &["policy:entity"],
    )
    .await;
    put(
        admin,
        "l1",
        "/ngsi-ld/v1/entities",
        Some("type=Camera&limit=100"),
        &["camera", "policy:cams"],
    )
    .await;
    put(
        admin,
        "l2",
        "/ngsi-ld/v1/entities",
        Some("type=Sensor"),
        &["sensor", "policy:sensors"],
    )
    .await;
}

async fn present(admin: &Admin) -> Vec<&'static str> {
    let mut out = Vec::new();
    for k in ["e1", "e2", "l1", "l2"] {
        if admin.cache().store().get(k).await.unwrap().is_some() {
            out.push(k);
        }
    }
    out
}

async fn call(
    admin: &Admin,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    let req = AdminRequest::new(method, path, &headers)
        .body(AdminBody::Complete(Bytes::copy_from_slice(body.as_bytes())));
    let resp = admin.handle(req).await;
    let json = if resp.content_type == "application/json" {
        serde_json::from_slice(&resp.body).unwrap()
    } else {
        Value::String(String::from_utf8(resp.body.to_vec()).unwrap())
    };
    (resp.status, json)
}

const ADMIN: &[(&str, &str)] = &[("x-webhook-secret", "admin")];

/// A store that holds nothing and reports a health, and `step` more
/// evictions (half as many expirations) at every look at its memory.
#[derive(Debug)]
struct Stub {
    health: crate::store::HealthStatus,
    step: u64,
    evictions: std::sync::atomic::AtomicU64,
}

impl Stub {
    fn new(health: crate::store::HealthStatus, step: u64) -> Self {
        Stub {
            health,
            step,
            evictions: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl crate::store::Storage for Stub {
    fn get<'a>(&'a self, _: &'a str) -> crate::store::StoreFuture<'a, Option<Bytes>> {
        Box::pin(async { Ok(None) })
    }
    fn put<'a>(
        &'a self,
        _: &'a str,
        _: Bytes,
        _: PutOptions<'a>,
    ) -> crate::store::StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
    fn delete<'a>(&'a self, _: &'a str) -> crate::store::StoreFuture<'a, bool> {
        Box::pin(async { Ok(false) })
    }
    fn invalidate_tags<'a>(&'a self, _: &'a [String]) -> crate::store::StoreFuture<'a, u64> {
        Box::pin(async { Ok(0) })
    }
    fn invalidate_pattern<'a>(
        &'a self,
        _: &'a crate::UrlPattern,
    ) -> crate::store::StoreFuture<'a, u64> {
        Box::pin(async { Ok(0) })
    }
}

impl crate::store::Coordination for Stub {}

impl crate::store::StoreStatus for Stub {
    fn keys_count(&self) -> crate::store::StoreFuture<'_, u64> {
        Box::pin(async { Ok(0) })
    }
    fn memory(&self) -> crate::store::StoreFuture<'_, crate::store::MemoryUsage> {
        let n = self
            .evictions
            .fetch_add(self.step, std::sync::atomic::Ordering::SeqCst)
            + self.step;
        Box::pin(async move {
            Ok(crate::store::MemoryUsage::new(10, Some(100), n).with_expirations(n / 2))
        })
    }
    fn health(&self) -> crate::store::StoreFuture<'_, crate::store::StoreHealth> {
        let detail =
            (self.health == crate::store::HealthStatus::Down).then(|| "circuit open".to_owned());
        let health = crate::store::StoreHealth::new(self.health, "test", detail);
        Box::pin(async move { Ok(health) })
    }
}
const HOOK: &[(&str, &str)] = &[("x-webhook-secret", "hook")];

#[tokio::test]
async fn the_webhook_removes_exactly_the_entity_and_its_listing() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    let (status, body) = call(
        &admin,
        "POST",
        "/cache/invalidate",
        HOOK,
        r#"{"event":"entity_update","entity_id":"urn:ngsi-ld:Camera:001","entity_type":"Camera","extra":1}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], 2);
    assert_eq!(body["matched"], true);
    assert_eq!(
        body["patterns"],
        serde_json::json!([
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001",
            "/ngsi-ld/v1/entities?type=Camera*"
        ])
    );
    assert_eq!(present(&admin).await, ["e2", "l2"]);
    let snap = admin.cache().stats().snapshot();
    assert_eq!(snap.invalidations["event"], 1);
}

#[tokio::test]
async fn a_policy_listening_to_an_event_is_purged_by_its_tag() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    let (status, body) = call(
        &admin,
        "POST",
        "/cache/invalidate",
        ADMIN,
        r#"{"event":"camera_update"}"#,
    )
    .await;
    assert_eq!(
        (status, &body["tags"]),
        (200, &serde_json::json!(["policy:cams"]))
    );
    assert_eq!(present(&admin).await, ["e1", "e2", "l2"]);
}

#[tokio::test]
async fn an_unknown_event_is_200_unmatched_and_counted() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    let (status, body) = call(
        &admin,
        "POST",
        "/cache/invalidate",
        HOOK,
        r#"{"event":"nobody"}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["deleted"], 0);
    assert_eq!(body["matched"], false);
    assert_eq!(present(&admin).await.len(), 4);
    assert_eq!(admin.cache().stats().snapshot().unknown_events, 1);
}

#[tokio::test]
async fn wrong_or_missing_secrets_are_401_and_change_nothing() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    let tag = r#"{"tag":"camera"}"#;
    for headers in [
        &[][..],
        &[("x-webhook-secret", "wrong")][..],
        &[("x-webhook-secret", "admi")][..],
        &[("authorization", "Basic admin")][..],
        &[("authorization", "Bearer wrong")][..],
        // The webhook's own secret opens the webhook route only.
        HOOK,
    ] {
        let (status, _) = call(&admin, "POST", "/cache/invalidate/tag", headers, tag).await;
        assert_eq!(status, 401, "{headers:?}");
    }
    let event =
        r#"{"event":"entity_update","entity_id":"urn:ngsi-ld:Camera:001","entity_type":"Camera"}"#;
    let (status, _) = call(
        &admin,
        "POST",
        "/cache/invalidate",
        &[("x-webhook-secret", "nope")],
        event,
    )
    .await;
    assert_eq!(status, 401);
    // Too large but unauthenticated: still 401, nothing read.
    let headers: Vec<(String, String)> = Vec::new();
    let req =
        AdminRequest::new("POST", "/cache/invalidate/tag", &headers).body(AdminBody::TooLarge);
    assert_eq!(admin.handle(req).await.status, 401);
    assert_eq!(present(&admin).await.len(), 4);
    assert_eq!(admin.cache().stats().snapshot().deletes, 0);

    let (status, body) = call(
        &admin,
        "POST",
        "/cache/invalidate/tag",
        &[("authorization", "Bearer admin")],
        tag,
    )
    .await;
    assert_eq!((status, &body["deleted"]), (200, &serde_json::json!(1)));
    let (status, _) = call(
        &admin,
        "POST",
        "/cache/invalidate/url",
        &[("authorization", "bearer   admin ")],
        r#"{"url":"/x"}"#,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field_and_change_nothing() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    for (path, body, needle) in [
        ("/cache/invalidate", "", "JSON object"),
        ("/cache/invalidate", "{not json", "invalid JSON"),
        ("/cache/invalidate", r#"{"entity_id":"x"}"#, "event"),
        (
            "/cache/invalidate",
            r#"{"event":"entity_update","entity_id":5}"#,
            "entity_id",
        ),
        ("/cache/invalidate", r#"{"event":""}"#, "event"),
        (
            "/cache/invalidate",
            r#"{"event":"entity_update","entity_type":"Camera"}"#,
            "entity_id",
        ),
        (
            "/cache/invalidate",
            r#"{"event":"entity_update","entity_id":"*","entity_type":"Camera"}"#,
            "entity_id",
        ),
        ("/cache/invalidate/tag", "{}", "tag"),
        ("/cache/invalidate/tag", r#"{"tags":[""]}"#, "tags"),
        ("/cache/invalidate/tag", r#"{"tags":"camera"}"#, "tags"),
        (
            "/cache/invalidate/tag",
            r#"{"tag":"camera","soft":"yes"}"#,
            "soft",
        ),
        ("/cache/invalidate/url", r#"{}"#, "url"),
        (
            "/cache/invalidate/url",
            r#"{"url":"/a","pattern":"/b*"}"#,
            "pattern",
        ),
        ("/cache/invalidate/url", r#"{"url":"ftp://x/y"}"#, "url"),
        (
            "/cache/invalidate/url",
            r#"{"pattern":"ngsi-ld/*"}"#,
            "pattern",
        ),
    ] {
        let (status, json) = call(&admin, "POST", path, ADMIN, body).await;
        assert_eq!(status, 400, "{path} {body}: {json}");
        let msg = json["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{path} {body}: {msg}");
    }
    assert_eq!(present(&admin).await.len(), 4);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    let headers: Vec<(String, String)> = vec![("x-webhook-secret".into(), "admin".into())];
    let req =
        AdminRequest::new("POST", "/cache/invalidate/tag", &headers).body(AdminBody::TooLarge);
    let resp = admin.handle(req).await;
    assert_eq!(resp.status, 413);
    assert_eq!(present(&admin).await.len(), 4);
}

#[tokio::test]
async fn unknown_routes_are_404_json_and_wrong_methods_405() {
    let admin = admin_with(CONFIG);
    let (status, body) = call(&admin, "GET", "/cache/nope", &[], "").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("/cache/nope"));
    let headers: Vec<(String, String)> = Vec::new();
    let resp = admin
        .handle(AdminRequest::new("GET", "/cache/invalidate", &headers))
        .await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.headers, [("allow", "POST".to_owned())]);
    let (status, _) = call(&admin, "POST", "/health", ADMIN, "").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn tag_and_url_routes_remove_what_they_name() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    let (s, b) = call(
        &admin,
        "POST",
        "/cache/invalidate/tag",
        ADMIN,
        r#"{"tags":["sensor","nothing"]}"#,
    )
    .await;
    assert_eq!((s, &b["deleted"]), (200, &serde_json::json!(1)));
    assert_eq!(present(&admin).await, ["e1", "e2", "l1"]);
    let (s, b) = call(
        &admin,
        "POST",
        "/cache/invalidate/url",
        ADMIN,
        r#"{"url":"http://api.example/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:002"}"#,
    )
    .await;
    assert_eq!((s, &b["deleted"]), (200, &serde_json::json!(1)));
    assert_eq!(b["url"], "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:002");
    let (s, b) = call(
        &admin,
        "POST",
        "/cache/invalidate/url",
        ADMIN,
        r#"{"pattern":"/ngsi-ld/v1/entities*"}"#,
    )
    .await;
    assert_eq!((s, &b["deleted"]), (200, &serde_json::json!(2)));
    assert!(present(&admin).await.is_empty());
    let snap = admin.cache().stats().snapshot();
    assert_eq!(
        (
            snap.invalidations["tag"],
            snap.invalidations["url"],
            snap.invalidations["pattern"]
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn without_a_secret_post_routes_are_open_to_this_host_only() {
    let admin = admin_with("policies:\n  - name: a\n    pattern: /a\n    ttl: 5\n    tags: [t]\n");
    let headers: Vec<(String, String)> = Vec::new();
    let send = |peer: Option<&str>| {
        AdminRequest::new("POST", "/cache/invalidate/tag", &headers)
            .body(AdminBody::Complete(Bytes::from_static(br#"{"tag":"t"}"#)))
            .peer(peer.map(str::to_owned))
    };
    for (peer, status) in [
        (Some("127.0.0.1:5000"), 200),
        (Some("[::1]:5000"), 200),
        (Some("[::ffff:127.0.0.1]:5000"), 200),
        (Some("10.0.0.7:5000"), 403),
        (Some("not an address"), 403),
        (None, 403),
    ] {
        assert_eq!(admin.handle(send(peer)).await.status, status, "{peer:?}");
    }
    assert_eq!(admin.cache().stats().snapshot().invalidations["tag"], 3);
}

#[tokio::test]
async fn a_webhook_secret_alone_opens_the_webhook_route_only() {
    // No admin.secret: the webhook's secret must not stand in for it.
    let admin = admin_with(&CONFIG.replace("admin:\n  secret: admin\n", ""));
    seed(&admin).await;
    let send = |path: &'static str, body: &'static str, peer: &str, secret: Option<&str>| {
        let headers: Vec<(String, String)> = secret
            .map(|s| vec![("x-webhook-secret".to_owned(), s.to_owned())])
            .unwrap_or_default();
        let admin = admin.clone();
        let peer = peer.to_owned();
        async move {
            let req = AdminRequest::new("POST", path, &headers)
                .body(AdminBody::Complete(Bytes::from_static(body.as_bytes())))
                .peer(Some(peer));
            admin.handle(req).await.status
        }
    };
    let tag = r#"{"tag":"camera"}"#;
    for path in ["/cache/invalidate/tag", "/cache/warm"] {
        assert_eq!(
            send(path, tag, "10.0.0.7:5000", Some("hook")).await,
            403,
            "{path}"
        );
    }
    assert_eq!(present(&admin).await.len(), 4, "nothing purged");
    // Its own route takes it from anywhere; a wrong one is still refused.
    let event =
        r#"{"event":"entity_update","entity_id":"urn:ngsi-ld:Camera:001","entity_type":"Camera"}"#;
    assert_eq!(
        send("/cache/invalidate", event, "10.0.0.7:5000", Some("nope")).await,
        401
    );
    assert_eq!(present(&admin).await.len(), 4);
    assert_eq!(
        send("/cache/invalidate", event, "10.0.0.7:5000", Some("hook")).await,
        200
    );
    assert_eq!(present(&admin).await, ["e2", "l2"]);
    // The other routes are this host's, as with no secret at all.
    assert_eq!(
        send(
            "/cache/invalidate/tag",
            r#"{"tag":"sensor"}"#,
            "127.0.0.1:5000",
            None
        )
        .await,
        200
    );
    assert_eq!(present(&admin).await, ["e2"]);
}

#[tokio::test]
async fn trailing_bytes_after_the_json_are_400() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    let (s, b) = call(
        &admin,
        "POST",
        "/cache/invalidate/tag",
        ADMIN,
        r#"{"tag":"camera"}{"tag":"sensor"}"#,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(present(&admin).await.len(), 4);
}

#[tokio::test]
async fn health_and_metrics_report_the_store() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    let (s, h) = call(&admin, "GET", "/health", &[], "").await;
    assert_eq!(s, 200);
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["components"]["store"]["status"], "connected");
    assert_eq!(h["components"]["store"]["keys_count"], 4);
    assert_eq!(h["components"]["warmer"]["status"], "no_fetcher");
    assert_eq!(h["components"]["invalidator"]["webhook"], true);

    let (s, m) = call(&admin, "GET", "/cache/metrics", &[], "").await;
    assert_eq!(s, 200);
    assert_eq!(m["keys_count"], 4);
    for f in [
        "hit_rate",
        "miss_rate",
        "total_requests",
        "avg_latency_ms",
        "compression_ratio",
        "timestamp",
    ] {
        assert!(
            m["statistics"].get(f).is_some(),
            "missing statistics.{f}: {m}"
        );
    }
    assert!(m["memory"]["used_memory_bytes"].as_u64().unwrap() > 0);
    assert!(m["memory"]["used_memory_human"].is_string());
}

#[tokio::test]
async fn a_store_that_is_down_makes_health_503() {
    let config = CacheConfig::from_yaml_str(CONFIG).unwrap();
    let store = Stub::new(crate::store::HealthStatus::Down, 0);
    let admin = Admin::new(HttpCache::new(&config, std::sync::Arc::new(store)).unwrap());
    let (s, h) = call(&admin, "GET", "/health", &[], "").await;
    assert_eq!((s, &h["status"]), (503, &serde_json::json!("unhealthy")));
    assert_eq!(h["components"]["store"]["detail"], "circuit open");
    let text = prometheus_text(&admin).await;
    assert!(text.contains("uip_cache_store_state 2"), "{text}");
}

#[tokio::test]
async fn prometheus_exposition_parses_and_has_every_family() {
    let admin = admin_with(CONFIG);
    seed(&admin).await;
    let _ = call(
        &admin,
        "POST",
        "/cache/invalidate",
        HOOK,
        r#"{"event":"nobody"}"#,
    )
    .await;
    let _ = call(
        &admin,
        "POST",
        "/cache/invalidate/tag",
        ADMIN,
        r#"{"tag":"camera"}"#,
    )
    .await;
    let headers: Vec<(String, String)> = Vec::new();
    let resp = admin
        .handle(AdminRequest::new("GET", "/metrics", &headers))
        .await;
    assert_eq!(resp.status, 200);
    assert!(resp.content_type.starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(resp.body.to_vec()).unwrap();
    let families =
        uip_cache_testkit::exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, kind) in [
        ("uip_cache_requests_total", "counter"),
        ("uip_cache_uncacheable_total", "counter"),
        ("uip_cache_store_operation_duration_seconds", "histogram"),
        ("uip_cache_store_errors_total", "counter"),
        ("uip_cache_store_state", "gauge"),
        ("uip_cache_invalidations_total", "counter"),
        ("uip_cache_unknown_events_total", "counter"),
        ("uip_cache_warm_runs_total", "counter"),
        ("uip_cache_warm_urls_total", "counter"),
        ("uip_cache_entries", "gauge"),
        ("uip_cache_store_used_bytes", "gauge"),
        ("uip_cache_store_evictions_total", "counter"),
        ("uip_cache_store_expirations_total", "counter"),
    ] {
        let f = families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}\n{text}"));
        assert_eq!(f.kind, kind, "{name}");
        assert!(f.help, "{name} has no HELP");
        assert!(!f.samples.is_empty(), "{name} has no samples");
    }
    let req = &families["uip_cache_requests_total"].samples;
    assert_eq!(
        req.len(),
        4 * 4,
        "four outcomes of three policies and the unmatched slot"
    );
    assert_eq!(
        families["uip_cache_unknown_events_total"].samples["uip_cache_unknown_events_total"],
        1.0
    );
    assert_eq!(
        families["uip_cache_invalidations_total"].samples
            ["uip_cache_invalidations_total{kind=\"tag\"}"],
        1.0
    );
    assert_eq!(
        families["uip_cache_entries"].samples["uip_cache_entries"],
        3.0
    );
    let h = &families["uip_cache_store_operation_duration_seconds"].samples;
    let count = h["uip_cache_store_operation_duration_seconds_count"];
    assert!(count >= 1.0, "{h:?}");
    assert_eq!(
        h["uip_cache_store_operation_duration_seconds_bucket{le=\"+Inf\"}"],
        count
    );
    // Cumulative in the order of their bounds, one per bound and +Inf.
    let mut buckets: Vec<(f64, f64)> = h
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix("uip_cache_store_operation_duration_seconds_bucket{le=\"")?;
            let le = le.strip_suffix("\"}")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            Some((bound, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(buckets.len(), crate::stats::STORE_LATENCY_BUCKETS.len() + 1);
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
}

#[tokio::test]
async fn background_tasks_stop_when_the_admin_api_is_dropped() {
    let admin = admin_with(
        "policies:\n  - name: a\n    pattern: /a\n    ttl: 5\ninvalidation:\n  strategies:\n    - type: time_based\n      check_interval: 1\n",
    );
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    admin.start().unwrap();
    admin.start().unwrap();
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 1,
        "one monitor, started once"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let weak = std::sync::Arc::downgrade(&admin.inner);
    drop(admin);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(weak.upgrade().is_none(), "a task kept the admin API alive");
    assert_eq!(
        metrics.num_alive_tasks(),
        before,
        "the monitor did not stop"
    );
}

#[tokio::test]
async fn the_monitor_reads_evictions_and_expirations_into_the_metrics() {
    let config = CacheConfig::from_yaml_str(
        "policies:\n  - name: a\n    pattern: /a\n    ttl: 5\ninvalidation:\n  strategies:\n    - type: time_based\n      check_interval: 1\n      eviction_threshold: 100\n",
    )
    .unwrap();
    // 5000 more evictions at every look.
    let store = std::sync::Arc::new(Stub::new(crate::store::HealthStatus::Connected, 5000));
    let admin = Admin::new(HttpCache::new(&config, store).unwrap());
    admin.start().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let snap = admin.cache().stats().snapshot();
    assert_eq!(
        (snap.store_evictions, snap.store_expirations),
        (10_000, 5_000),
        "two checks, one a second"
    );
    let text = prometheus_text(&admin).await;
    assert!(
        text.contains("uip_cache_store_evictions_total 10000"),
        "{text}"
    );
    admin.shutdown();
}

#[tokio::test]
async fn a_soft_purge_marks_entries_stale_instead_of_removing_them() {
    let admin = admin_with(CONFIG);
    let store = admin.cache().store().clone();
    let tags = vec!["camera".to_owned(), "path:/cams".to_owned()];
    for key in ["s1", "s2"] {
        let mut e = crate::StoredResponse::new(200, Bytes::from_static(b"old"));
        e.freshness_lifetime = Duration::from_secs(60);
        e.tags = tags.clone();
        let opts = PutOptions::new(e.storage_ttl(), "/cams").tags(&tags);
        store.put(key, e.encode().unwrap(), opts).await.unwrap();
    }
    let (s, b) = call(
        &admin,
        "POST",
        "/cache/invalidate/tag",
        ADMIN,
        r#"{"tag":"camera","soft":true}"#,
    )
    .await;
    assert_eq!(
        (s, &b["deleted"], &b["soft"]),
        (200, &serde_json::json!(2), &serde_json::json!(true)),
        "{b}"
    );
    let now = std::time::SystemTime::now();
    for key in ["s1", "s2"] {
        let bytes = store.get(key).await.unwrap().expect("still stored");
        let e = crate::StoredResponse::decode(&bytes).unwrap();
        assert!(!e.is_fresh(now), "stale now");
        assert!(
            e.stale_while_revalidate >= Duration::from_secs(30),
            "servable stale"
        );
        assert_eq!(&e.body[..], b"old");
        assert_eq!(e.tags, tags, "still tagged");
    }
    // A hard purge still removes them, tags intact after the rewrite.
    let (_, b) = call(
        &admin,
        "POST",
        "/cache/invalidate/tag",
        ADMIN,
        r#"{"tag":"camera"}"#,
    )
    .await;
    assert_eq!(b["deleted"], 2);
}

/// A reload that swaps in the settings of `next` (or fails with `errors`).
#[derive(Debug)]
struct SwapTo {
    cache: HttpCache,
    next: std::sync::Mutex<Result<String, Vec<String>>>,
}

impl Reload for SwapTo {
    fn reload(&self) -> Result<ReloadReport, Vec<String>> {
        let yaml = self.next.lock().unwrap().clone()?;
        let config = CacheConfig::from_yaml_str(&yaml).map_err(|e| vec![e.to_string()])?;
        let settings = Arc::new(crate::Settings::compile(&config).unwrap());
        let n = settings.policies().len();
        self.cache.replace_settings(settings);
        Ok(ReloadReport::new(n, 0).changed(vec!["policies".to_owned()]))
    }
}

#[tokio::test]
async fn the_reload_route_needs_a_reload_and_the_secret_and_counts_its_outcomes() {
    let admin = admin_with(CONFIG);
    // Without a Reload, the route is not there.
    assert_eq!(
        call(&admin, "POST", "/config/reload", ADMIN, "").await.0,
        404
    );
    assert!(!admin.paths().contains(&"/config/reload"));

    let reload = Arc::new(SwapTo {
        cache: admin.cache().clone(),
        next: std::sync::Mutex::new(Ok(CONFIG.replace("secret: admin", "secret: rotated"))),
    });
    admin.reload_with(reload.clone());
    assert!(admin.paths().contains(&"/config/reload"));
    assert_eq!(
        call(&admin, "GET", "/config/reload", ADMIN, "").await.0,
        405
    );
    let (status, _) = call(
        &admin,
        "POST",
        "/config/reload",
        &[("x-webhook-secret", "hook")],
        "",
    )
    .await;
    assert_eq!(status, 401, "the webhook's secret is not the admin's");
    assert_eq!(admin.cache().stats().snapshot().config_reloads, 0);

    let (status, body) = call(&admin, "POST", "/config/reload", ADMIN, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reloaded"], true);
    assert_eq!(body["policies"], 3);
    assert_eq!(body["changed"][0], "policies");
    // The new secret applies at once; the old one no longer does.
    assert_eq!(
        call(&admin, "POST", "/config/reload", ADMIN, "").await.0,
        401
    );
    *reload.next.lock().unwrap() = Err(vec![
        "a.yaml:1: x: wrong".to_owned(),
        "a.yaml:2: y: wrong".to_owned(),
    ]);
    let (status, body) = call(
        &admin,
        "POST",
        "/config/reload",
        &[("authorization", "Bearer rotated")],
        "",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["reloaded"], false);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    let snap = admin.cache().stats().snapshot();
    assert_eq!((snap.config_reloads, snap.config_reload_errors), (1, 1));
    let text = prometheus_text(&admin).await;
    assert!(
        text.contains("uip_cache_config_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("uip_cache_config_reloads_total{result=\"error\"} 1"),
        "{text}"
    );
}
