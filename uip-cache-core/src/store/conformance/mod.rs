//! A behaviour suite every [`Store`] must pass.
//!
//! Store crates call [`run_all`] on their store from a multi-threaded tokio
//! test. Each check asks for the traits it exercises: most check
//! [`Storage`](super::Storage); [`keys_count_counts_entries`] and
//! [`health_and_memory`] check [`StoreStatus`](super::StoreStatus). Every
//! check works in its own key, tag and path namespace, so the suite can
//! share a store (or a Redis database) with other tests.
//!
//! The checks are grouped by theme: entries (get, put, delete, expiry,
//! concurrent use), purges (tags, URL patterns, the purge after an unsafe
//! request, soft purges) and status (key count, health, memory).
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use uip_cache_core::store::{conformance, MemoryStore};
//! conformance::run_all(Arc::new(MemoryStore::new(64 << 20))).await;
//! # }
//! ```

mod entries;
mod purges;
mod status;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Store;

pub use entries::{concurrent_use, delete, get_missing, overwrite, put_then_get, ttl_expiry};
pub use purges::{
    patterns, soft_purge, tags, tags_replaced_on_overwrite, unsafe_purge_is_host_scoped,
};
pub use status::{health_and_memory, keys_count_counts_entries};

/// A unique namespace for one check.
fn ns(check: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{check}-{}-{t:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

const MINUTE: Duration = Duration::from_secs(60);

/// Runs every check, in order, panicking with the name of the first that fails.
pub async fn run_all(store: Arc<dyn Store>) {
    get_missing(&*store).await;
    put_then_get(&*store).await;
    overwrite(&*store).await;
    delete(&*store).await;
    ttl_expiry(&*store).await;
    tags(&*store).await;
    tags_replaced_on_overwrite(&*store).await;
    patterns(&*store).await;
    unsafe_purge_is_host_scoped(&*store).await;
    soft_purge(&*store).await;
    keys_count_counts_entries(&*store).await;
    health_and_memory(&*store).await;
    concurrent_use(store.clone()).await;
}
