//! Entries: get, put, overwrite, delete, expiry, and many tasks at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{ns, MINUTE};
use crate::store::{PutOptions, Storage, Store};

/// An unknown key is a miss, not an error.
pub async fn get_missing(store: &(impl Storage + ?Sized)) {
    let k = ns("missing");
    assert_eq!(
        store.get(&k).await.expect("get of a missing key"),
        None,
        "get_missing"
    );
}

/// Binary and empty values come back byte for byte.
pub async fn put_then_get(store: &(impl Storage + ?Sized)) {
    let k = ns("put");
    let value = Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>());
    store
        .put(&k, value.clone(), PutOptions::new(MINUTE, "/put"))
        .await
        .expect("put");
    assert_eq!(
        store.get(&k).await.expect("get"),
        Some(value),
        "put_then_get: binary value"
    );
    let k2 = ns("put-empty");
    store
        .put(&k2, Bytes::new(), PutOptions::new(MINUTE, "/put"))
        .await
        .expect("put empty");
    assert_eq!(
        store.get(&k2).await.expect("get"),
        Some(Bytes::new()),
        "put_then_get: empty value"
    );
}

/// A second put replaces the first.
pub async fn overwrite(store: &(impl Storage + ?Sized)) {
    let k = ns("overwrite");
    store
        .put(
            &k,
            Bytes::from_static(b"one"),
            PutOptions::new(MINUTE, "/o"),
        )
        .await
        .expect("put");
    store
        .put(
            &k,
            Bytes::from_static(b"two"),
            PutOptions::new(MINUTE, "/o"),
        )
        .await
        .expect("put");
    assert_eq!(
        store.get(&k).await.expect("get").as_deref(),
        Some(&b"two"[..]),
        "overwrite"
    );
}

/// Delete removes and reports whether the key was there.
pub async fn delete(store: &(impl Storage + ?Sized)) {
    let k = ns("delete");
    store
        .put(&k, Bytes::from_static(b"x"), PutOptions::new(MINUTE, "/d"))
        .await
        .expect("put");
    assert!(
        store.delete(&k).await.expect("delete"),
        "delete: existing key reports true"
    );
    assert_eq!(
        store.get(&k).await.expect("get"),
        None,
        "delete: key is gone"
    );
    assert!(
        !store.delete(&k).await.expect("delete"),
        "delete: missing key reports false"
    );
}

/// Entries expire after their TTL; a rewrite gets its own TTL.
pub async fn ttl_expiry(store: &(impl Storage + ?Sized)) {
    let short = Duration::from_millis(300);
    let k = ns("ttl");
    let renewed = ns("ttl-renewed");
    store
        .put(&k, Bytes::from_static(b"x"), PutOptions::new(short, "/t"))
        .await
        .expect("put");
    store
        .put(
            &renewed,
            Bytes::from_static(b"x"),
            PutOptions::new(short, "/t"),
        )
        .await
        .expect("put");
    store
        .put(
            &renewed,
            Bytes::from_static(b"y"),
            PutOptions::new(MINUTE, "/t"),
        )
        .await
        .expect("put");
    assert!(
        store.get(&k).await.expect("get").is_some(),
        "ttl_expiry: present before the TTL"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        store.get(&k).await.expect("get"),
        None,
        "ttl_expiry: gone after the TTL"
    );
    assert_eq!(
        store.get(&renewed).await.expect("get").as_deref(),
        Some(&b"y"[..]),
        "ttl_expiry: a rewrite with a longer TTL keeps the entry"
    );
}

/// Many tasks writing and reading at once lose nothing.
pub async fn concurrent_use(store: Arc<dyn Store>) {
    let n = ns("concurrent");
    let mut set = tokio::task::JoinSet::new();
    for t in 0..16u32 {
        let store = store.clone();
        let n = n.clone();
        set.spawn(async move {
            for i in 0..40u32 {
                let own = format!("{n}:{t}:{i}");
                let value = Bytes::from(format!("{t}-{i}"));
                store
                    .put(&own, value.clone(), PutOptions::new(MINUTE, "/c"))
                    .await
                    .expect("put");
                let shared = format!("{n}:shared:{}", i % 4);
                store
                    .put(&shared, value.clone(), PutOptions::new(MINUTE, "/c"))
                    .await
                    .expect("put");
                assert_eq!(
                    store.get(&own).await.expect("get"),
                    Some(value),
                    "concurrent: own key"
                );
                assert!(
                    store.get(&shared).await.expect("get").is_some(),
                    "concurrent: shared key"
                );
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("concurrent task panicked");
    }
    for t in 0..16u32 {
        for i in 0..40u32 {
            let got = store.get(&format!("{n}:{t}:{i}")).await.expect("get");
            assert_eq!(
                got,
                Some(Bytes::from(format!("{t}-{i}"))),
                "concurrent: final read"
            );
        }
    }
}
