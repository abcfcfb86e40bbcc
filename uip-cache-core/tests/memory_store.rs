//! MemoryStore against the store conformance suite, plus what only a bounded
//! in-process store has: capacity and eviction.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uip_cache_core::store::conformance::{self, Sharing};
use uip_cache_core::store::{MemoryStore, PutOptions, Storage, StoreStatus};
use uip_cache_core::UrlPattern;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_conformance_suite() {
    conformance::run_all(Arc::new(MemoryStore::new(64 << 20)), Sharing::Local).await;
}

#[tokio::test]
async fn capacity_bounds_memory_and_counts_evictions() {
    let max = 200 * 1024;
    let store = MemoryStore::new(max);
    let value = Bytes::from(vec![7u8; 1024]);
    for i in 0..2000 {
        store
            .put(
                &format!("k{i}"),
                value.clone(),
                PutOptions::new(Duration::from_secs(60), "/cap"),
            )
            .await
            .unwrap();
    }
    let mem = store.memory().await.unwrap();
    let len = store.keys_count().await.unwrap();
    assert!(mem.used_memory_bytes <= max, "{mem:?}");
    assert!(len < 200, "at most max/entry-size entries stay: {len}");
    assert!(len > 50, "the store is not emptied by eviction: {len}");
    assert!(mem.evictions >= 2000 - 200, "{mem:?}");
    assert!(mem.usage_ratio().unwrap() <= 1.0);
}

#[tokio::test]
async fn an_entry_larger_than_the_store_is_not_kept() {
    let store = MemoryStore::new(4096);
    store
        .put(
            "big",
            Bytes::from(vec![0u8; 10_000]),
            PutOptions::new(Duration::from_secs(60), "/big"),
        )
        .await
        .unwrap();
    store.keys_count().await.unwrap();
    assert_eq!(store.get("big").await.unwrap(), None);
}

/// Invalidation looks only under the tag or the pattern's literal prefix: with
/// 20 000 unrelated entries, removing 10 touches the 10, and the unrelated
/// entries all survive.
#[tokio::test]
async fn invalidation_is_scoped_to_the_tag_and_prefix() {
    let store = MemoryStore::new(512 << 20);
    let ttl = Duration::from_secs(60);
    let noise_tags = vec!["noise".to_string()];
    for i in 0..20_000 {
        let path = format!("/noise/{i}");
        store
            .put(
                &format!("n{i}"),
                Bytes::from_static(b"x"),
                PutOptions::new(ttl, &path).tags(&noise_tags),
            )
            .await
            .unwrap();
    }
    let target_tags = vec!["target".to_string()];
    for i in 0..10 {
        let path = format!("/target/{i}");
        store
            .put(
                &format!("t{i}"),
                Bytes::from_static(b"x"),
                PutOptions::new(ttl, &path).tags(&target_tags),
            )
            .await
            .unwrap();
    }
    assert_eq!(store.invalidate_tags(&target_tags).await.unwrap(), 10);
    for i in 0..10 {
        let path = format!("/target/{i}");
        store
            .put(
                &format!("t{i}"),
                Bytes::from_static(b"x"),
                PutOptions::new(ttl, &path),
            )
            .await
            .unwrap();
    }
    let p = UrlPattern::glob("/target/*").unwrap();
    assert_eq!(store.invalidate_pattern(&p).await.unwrap(), 10);
    assert_eq!(store.keys_count().await.unwrap(), 20_000);
}

/// Writers replacing entries while invalidations run never leave an entry that
/// its tag no longer reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writes_and_invalidations_keep_the_index_complete() {
    let store = Arc::new(MemoryStore::new(64 << 20));
    let tags = Arc::new(vec!["hot".to_string()]);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (store, tags) = (store.clone(), tags.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..2000 {
                let key = format!("k{}", (i + w) % 16);
                store
                    .put(
                        &key,
                        Bytes::from_static(b"v"),
                        PutOptions::new(Duration::from_secs(60), "/hot").tags(&tags),
                    )
                    .await
                    .unwrap();
                if i % 7 == 0 {
                    store.invalidate_tags(&tags).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    store.invalidate_tags(&tags).await.unwrap();
    for k in 0..16 {
        assert_eq!(
            store.get(&format!("k{k}")).await.unwrap(),
            None,
            "k{k} escaped its tag"
        );
    }
}
