//! The memory store's own count of its bytes against what its entries
//! really cost: every allocation of this test binary is counted as glibc
//! charges it (a chunk header, 16-byte rounding; pages for mappings), and
//! the pages of sealed memory files are counted too. A full store must stay
//! within `max_bytes` by its own count, and that count must not be less
//! than the memory the entries hold (nor wildly more, or the store would
//! hold far fewer entries than it could).
//!
//! One test function runs every case in turn: the counter is global to the
//! process, so nothing else may allocate meanwhile.

// A global allocator is an `unsafe impl`; it only forwards to the system
// allocator and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use uip_cache_core::store::{MemoryStore, PutOptions, Storage, StoreStatus};
use uip_cache_core::StoredResponse;

/// Bytes held, as the allocator charges them.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

/// What glibc's malloc takes for a request of `size`: a chunk of the size
/// plus its 8-byte header rounded up to 16, at least 32; large requests
/// (past the mmap threshold, 128 KB at start) are mapped whole pages.
fn charged(size: usize) -> isize {
    let n = if size >= 128 * 1024 {
        (size + 16).div_ceil(4096) * 4096
    } else {
        ((size + 8).div_ceil(16) * 16).max(32)
    };
    n as isize
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(charged(layout.size()), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(charged(layout.size()), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(charged(layout.size()), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            charged(new_size) - charged(layout.size()),
            Ordering::Relaxed,
        );
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Pages of this process's sealed memory files.
fn sealed_bytes() -> isize {
    let mut total = 0;
    for fd in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let is_entry = std::fs::read_link(fd.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:uip-cache-entry"));
        if let (true, Ok(meta)) = (is_entry, std::fs::metadata(fd.path())) {
            total += meta.len().div_ceil(4096) * 4096;
        }
    }
    total as isize
}

fn held() -> isize {
    LIVE.load(Ordering::Relaxed) + sealed_bytes()
}

/// An entry as the cache stores an nginx answer of `body` bytes.
fn entry(i: usize, body: usize) -> Bytes {
    let mut e = StoredResponse::new(200, Bytes::from(vec![b'x'; body]));
    let h = |n: &'static str, v: String| (n.into(), Bytes::from(v));
    e.headers = vec![
        h("server", "nginx/1.22.1".into()),
        h("date", "Sat, 05 Dec 2026 11:23:17 GMT".into()),
        h("content-type", "application/json".into()),
        h("content-length", body.to_string()),
        h("last-modified", "Sat, 05 Dec 2026 11:21:57 GMT".into()),
        h("etag", format!("\"6932c1b5-{i:x}\"")),
        h("cache-control", "max-age=3600".into()),
        h("accept-ranges", "bytes".into()),
    ];
    e.etag = Some(Bytes::from(format!("\"6932c1b5-{i:x}\"")));
    e.last_modified = Some(Bytes::from_static(b"Sat, 05 Dec 2026 11:21:57 GMT"));
    e.freshness_lifetime = Duration::from_secs(3600);
    e.stored_at = SystemTime::now();
    e.tags = vec!["policy:all".into()];
    e.encode().unwrap()
}

struct Case {
    name: &'static str,
    body: usize,
    /// Every entry on a path of its own (else one path, unique queries).
    unique_paths: bool,
    tags: usize,
}

/// Fills a store of `max` bytes with 3 x `max` of entries; (accounted,
/// really held) bytes.
fn fill(rt: &tokio::runtime::Runtime, case: &Case, max: u64) -> (u64, u64, u64) {
    let before = held();
    let store = MemoryStore::new(max);
    let tags: Vec<String> = (0..case.tags).map(|t| format!("tag-{t}")).collect();
    let n = 3 * max as usize / case.body;
    rt.block_on(async {
        for i in 0..n {
            let key = format!("cache:{:064x}", i);
            let (path, query) = if case.unique_paths {
                (format!("/items/{i}"), None)
            } else {
                ("/body.json".to_string(), Some(format!("u=1-{i}")))
            };
            let options = PutOptions::new(Duration::from_secs(3600), &path)
                .tags(&tags)
                .query(query.as_deref());
            store.put(&key, entry(i, case.body), options).await.unwrap();
        }
    });
    let entries = rt.block_on(store.keys_count()).unwrap();
    let accounted = rt.block_on(store.memory()).unwrap().used_memory_bytes;
    let real = held() - before;
    drop(store);
    (accounted, real.max(0) as u64, entries)
}

#[test]
fn a_full_memory_store_counts_what_its_entries_hold_and_stays_within_max_bytes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    uip_cache_core::zerocopy::enable(32 * 1024, 32 * 1024);
    let cases = [
        Case {
            name: "2 KB, one path, unique queries",
            body: 2048,
            unique_paths: false,
            tags: 1,
        },
        Case {
            name: "2 KB, a path each, 3 tags",
            body: 2048,
            unique_paths: true,
            tags: 3,
        },
        Case {
            name: "200 B, a path each",
            body: 200,
            unique_paths: true,
            tags: 1,
        },
        Case {
            name: "20 KB, one path",
            body: 20 * 1024,
            unique_paths: false,
            tags: 0,
        },
        Case {
            name: "64 KB (sealed), one path",
            body: 64 * 1024,
            unique_paths: false,
            tags: 1,
        },
    ];
    let max: u64 = 16 << 20;
    let mut problems = Vec::new();
    for case in &cases {
        let (accounted, real, entries) = fill(&rt, case, max);
        let ratio = real as f64 / accounted as f64;
        eprintln!(
            "{}: {entries} entries, accounted {accounted}, held {real} ({ratio:.3} of accounted, {} B per entry held, {} accounted)",
            case.name,
            real / entries.max(1),
            accounted / entries.max(1)
        );
        if accounted > max {
            problems.push(format!("{}: accounted {accounted} > max {max}", case.name));
        }
        if real > accounted {
            problems.push(format!(
                "{}: entries hold {real} bytes, more than the {accounted} counted",
                case.name
            ));
        }
        if (real as f64) < 0.75 * accounted as f64 {
            problems.push(format!(
                "{}: entries hold {real} bytes, far less than the {accounted} counted",
                case.name
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
