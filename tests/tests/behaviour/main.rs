//! One behaviour suite for every adapter and store: each case is written
//! once and runs sixteen times, through the Tower layer and the actix
//! middleware, each called in process and over a real socket, each with the
//! memory store, with a real Redis and with the disk store (with no memory
//! tier, every hit read from disk, and with a small one). A fix in one
//! adapter or store that another lacks shows up here as a failing case.
//!
//! The cases are grouped by theme, one file each; the harness that drives
//! them is `uip_cache_testkit::harness`. Without redis-server (outside CI)
//! the Redis variants return at once and are recorded as skipped.

/// Runs each case for every adapter, transport and store.
macro_rules! for_every_adapter_and_store {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use uip_cache_testkit::harness::{
                Backend, ACTIX, ACTIX_SOCKET, DISK, DISK_TIERED, TOWER, TOWER_SOCKET,
            };
            #[actix_rt::test]
            async fn tower_memory() { super::$case(TOWER, Backend::Memory).await }
            #[actix_rt::test]
            async fn tower_redis() { super::$case(TOWER, Backend::Redis).await }
            #[actix_rt::test]
            async fn actix_memory() { super::$case(ACTIX, Backend::Memory).await }
            #[actix_rt::test]
            async fn actix_redis() { super::$case(ACTIX, Backend::Redis).await }
            #[actix_rt::test]
            async fn tower_socket_memory() { super::$case(TOWER_SOCKET, Backend::Memory).await }
            #[actix_rt::test]
            async fn tower_socket_redis() { super::$case(TOWER_SOCKET, Backend::Redis).await }
            #[actix_rt::test]
            async fn actix_socket_memory() { super::$case(ACTIX_SOCKET, Backend::Memory).await }
            #[actix_rt::test]
            async fn actix_socket_redis() { super::$case(ACTIX_SOCKET, Backend::Redis).await }
            #[actix_rt::test]
            async fn tower_disk() { super::$case(TOWER, DISK).await }
            #[actix_rt::test]
            async fn actix_disk() { super::$case(ACTIX, DISK).await }
            #[actix_rt::test]
            async fn tower_socket_disk() { super::$case(TOWER_SOCKET, DISK).await }
            #[actix_rt::test]
            async fn actix_socket_disk() { super::$case(ACTIX_SOCKET, DISK).await }
            #[actix_rt::test]
            async fn tower_disk_tiered() { super::$case(TOWER, DISK_TIERED).await }
            #[actix_rt::test]
            async fn actix_disk_tiered() { super::$case(ACTIX, DISK_TIERED).await }
            #[actix_rt::test]
            async fn tower_socket_disk_tiered() { super::$case(TOWER_SOCKET, DISK_TIERED).await }
            #[actix_rt::test]
            async fn actix_socket_disk_tiered() { super::$case(ACTIX_SOCKET, DISK_TIERED).await }
        }
    )*};
}

mod attack_cpdos;
mod bodies;
mod coalescing;
mod errors;
mod freshness;
mod invalidation;
mod privacy;
mod queries;
mod ranges;
mod vary;

/// The policy most cases use: `/items*` for a minute, tagged `items`.
const ITEMS: &str =
    "policies:\n  - name: items\n    pattern: \"/items*\"\n    ttl: 60\n    tags: [items]\n";
