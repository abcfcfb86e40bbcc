//! The request path of uip-cache, by hand, with core alone: the same request
//! twice through a policy, a key and the memory store. The first is a MISS that
//! calls the (simulated, slow) origin; the second is a HIT that does not.
//!
//! Run it with `cargo run --example core_walkthrough`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use uip_cache_core::store::{PutOptions, Storage};
use uip_cache_core::{
    CacheConfig, CacheStats, MemoryStore, PolicySet, RequestView, StoredResponse,
};

static ORIGIN_CALLS: AtomicUsize = AtomicUsize::new(0);

/// A slow NGSI-LD-like origin.
async fn origin(path: &str, query: Option<&str>) -> (u16, Bytes) {
    ORIGIN_CALLS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(120)).await;
    let body = format!(
        r#"[{{"id":"urn:ngsi-ld:Camera:001","type":"Camera","requested":"{path}?{}"}}]"#,
        query.unwrap_or("")
    );
    (200, Bytes::from(body))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = CacheConfig::from_yaml_str(
        r#"
policies:
  - name: camera_entities
    pattern: "/ngsi-ld/v1/entities?type=Camera*"
    ttl: 60
    tags: [camera]
"#,
    )?;
    let policies = PolicySet::compile(&config).expect("validated on load");
    let store = MemoryStore::from_config(&config);
    let stats = CacheStats::new();

    let headers = [("accept", "application/ld+json")];
    for attempt in 1..=2 {
        let started = Instant::now();
        let req = RequestView::new("GET", "/ngsi-ld/v1/entities", &headers)
            .query(Some("type=Camera&limit=100"));
        let m = policies
            .find(req.path, req.query)
            .expect("the policy matches");
        let key = m.policy().key_spec().key(&req, &[]);

        let cached = store
            .get(key.as_str())
            .await?
            .and_then(|b| StoredResponse::decode(&b).ok());
        let (outcome, body) = match cached {
            Some(entry) if entry.is_fresh(SystemTime::now()) => {
                stats.hit();
                ("HIT", entry.body)
            }
            _ => {
                stats.miss();
                let (status, body) = origin(req.path, req.query).await;
                let mut entry = StoredResponse::new(status, body.clone());
                entry.freshness_lifetime = m.policy().ttl().unwrap_or_default();
                entry.tags = m.entry_tags(req.path);
                let options = PutOptions::new(entry.storage_ttl(), req.path)
                    .tags(&entry.tags)
                    .query(req.query);
                store.put(key.as_str(), entry.encode()?, options).await?;
                stats.set();
                ("MISS", body)
            }
        };
        println!(
            "request {attempt}: X-Cache: {outcome:<4}  {:>7.2} ms  {} bytes  key {}",
            started.elapsed().as_secs_f64() * 1000.0,
            body.len(),
            &key.as_str()[..18]
        );
    }
    let snap = stats.snapshot();
    println!(
        "origin calls: {}  hits: {}  misses: {}  hit_rate: {:.2}",
        ORIGIN_CALLS.load(Ordering::SeqCst),
        snap.hits,
        snap.misses,
        snap.hit_rate
    );
    let removed = store.invalidate_tags(&["camera".to_string()]).await?;
    println!("invalidated tag `camera`: {removed} entry removed");
    Ok(())
}
