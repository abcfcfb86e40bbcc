//! The longest pauses of the memory store's writes while it fills: every
//! write's time, as the server's misses make them (a key, a path, the
//! policy's tag and the path's tag), with no eviction, or with a bound
//! (`MAX_MB`) that makes the later writes evict.
//!
//! ```sh
//! cargo bench -p uip-cache-core --bench fill            # 400 000 writes of 2 KB
//! ENTRIES=1000000 cargo bench -p uip-cache-core --bench fill
//! MAX_MB=512 ENTRIES=2000000 cargo bench -p uip-cache-core --bench fill
//! VALUE_BYTES=256 cargo bench -p uip-cache-core --bench fill   # 2048 unless told
//! ```
//!
//! Not a criterion bench: what it measures is the few writes that pause
//! (a table that doubles moves its slots at once), which a median hides.
//! It runs on the server's allocator, whose way of taking memory from the
//! kernel is part of what a write costs.
//! It prints the median, the 99.99th percentile and the longest write, and
//! the ten longest with the number of entries held when they happened.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mimalloc::MiMalloc;
use uip_cache_core::store::{MemoryStore, PutOptions, Storage, StoreStatus};

// The server's allocator: how long a write takes depends on it.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// The number the environment variable `name` holds, else `default`.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let entries: usize = env_or("ENTRIES", 400_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Room for all of them unless told: no write evicts.
    let max_mb: u64 = env_or("MAX_MB", 64 << 10);
    let store = MemoryStore::new(max_mb << 20);
    let value_bytes: usize = env_or("VALUE_BYTES", 2048);
    let value = Bytes::from(vec![b'x'; value_bytes]);
    let mut took = Vec::with_capacity(entries);
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..entries {
            let path = format!("/m/run-{i}/body.json");
            let tags = ["policy:misses".to_owned(), format!("path:{path}")];
            let key = format!("GET|http|127.0.0.1|{path}|{i:016x}");
            let options = PutOptions::new(Duration::from_secs(3600), &path).tags(&tags);
            let t = Instant::now();
            store.put(&key, value.clone(), options).await.unwrap();
            took.push((t.elapsed(), i));
        }
    });
    let total = started.elapsed();
    let kept = rt.block_on(store.keys_count()).unwrap();
    let mut sorted: Vec<Duration> = took.iter().map(|(d, _)| *d).collect();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    println!(
        "{entries} writes, {} kept, in {:.2} s: median {:?}, p99.99 {:?}, longest {:?}",
        kept,
        total.as_secs_f64(),
        at(0.5),
        at(0.9999),
        sorted[sorted.len() - 1]
    );
    took.sort_unstable_by_key(|t| std::cmp::Reverse(t.0));
    let longest: Vec<String> = took
        .iter()
        .take(10)
        .map(|(d, i)| format!("{:.2} ms at {i}", d.as_secs_f64() * 1e3))
        .collect();
    println!("ten longest: {}", longest.join(", "));
}
