//! A behaviour suite every [`Store`] must pass.
//!
//! Store crates call [`run_all`] on their store from a multi-threaded tokio
//! test, saying whether it is shared between instances ([`Sharing`]). Each
//! check asks for the traits it exercises: most check
//! [`Storage`](super::Storage); [`keys_count_counts_entries`] and
//! [`health_and_memory`] check [`StoreStatus`](super::StoreStatus), the
//! coordination checks [`Coordination`](super::Coordination). Every check
//! works in its own key, tag and path namespace, so the suite can share a
//! store (or a Redis database) with other tests.
//!
//! The checks are grouped by theme: entries (get, put, delete, expiry,
//! concurrent use), purges (tags, URL patterns, the purge after an unsafe
//! request, soft purges), status (key count, health, memory) and
//! coordination (the epoch, the invalidation log and leases of a shared
//! store; the documented defaults of a store used by one process alone).
//!
//! ```no_run
//! # async fn demo() {
//! use std::sync::Arc;
//! use uip_cache_core::store::conformance::{self, Sharing};
//! use uip_cache_core::store::MemoryStore;
//! conformance::run_all(Arc::new(MemoryStore::new(64 << 20)), Sharing::Local).await;
//! # }
//! ```

mod coordination;
mod entries;
mod purges;
mod status;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Store;

pub use coordination::{
    epoch_and_log, lease_expiry, leases, local_defaults, long_lines_are_never_narrowed,
    one_lease_holder_among_many, Sharing,
};
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

/// Runs every check, in order, panicking with the name of the first that
/// fails; the coordination checks are those `sharing` calls for.
pub async fn run_all(store: Arc<dyn Store>, sharing: Sharing) {
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
    match sharing {
        Sharing::Local => local_defaults(&*store).await,
        Sharing::Shared => {
            epoch_and_log(&*store).await;
            long_lines_are_never_narrowed(&*store).await;
            leases(&*store).await;
            lease_expiry(&*store).await;
            one_lease_holder_among_many(store.clone()).await;
        }
    }
}
