//! Status: the key count, health and memory figures.

use bytes::Bytes;

use super::{ns, MINUTE};
use crate::store::{HealthStatus, PutOptions, Storage, StoreStatus};

/// `len` grows by the number of new entries.
pub async fn keys_count_counts_entries(store: &(impl Storage + StoreStatus + ?Sized)) {
    let n = ns("len");
    let before = store.keys_count().await.expect("len");
    for i in 0..5 {
        store
            .put(
                &format!("{n}:{i}"),
                Bytes::from_static(b"v"),
                PutOptions::new(MINUTE, "/len"),
            )
            .await
            .expect("put");
    }
    let after = store.keys_count().await.expect("len");
    assert!(
        after >= before + 5,
        "keys_count: {before} before, {after} after 5 puts"
    );
}

/// Health says connected and memory figures are readable.
pub async fn health_and_memory(store: &(impl StoreStatus + ?Sized)) {
    let h = store.health().await.expect("health");
    assert_eq!(h.status, HealthStatus::Connected, "health: {h:?}");
    let m = store.memory().await.expect("memory");
    assert!(
        m.used_memory_bytes > 0,
        "memory: used bytes reported after writes: {m:?}"
    );
}
