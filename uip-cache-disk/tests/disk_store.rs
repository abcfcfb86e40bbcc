//! The disk store on real folders: the conformance suite, restarts,
//! durability of purges, corrupt bodies, the bound, failures that fail open.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use uip_cache_core::store::conformance::{self, Sharing};
use uip_cache_core::store::{HealthStatus, PutOptions, Storage, StoreStatus};
use uip_cache_core::UrlPattern;
use uip_cache_disk::DiskStore;

pub(crate) const MINUTE: Duration = Duration::from_secs(60);

/// A folder of its own under the system's temporary folder, removed on
/// drop (the other modules' too).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "uip-cache-disk-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tags(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local() {
    let dir = TempDir::new("conformance");
    conformance::run_all(
        Arc::new(DiskStore::open(&dir.0, 64 << 20, 8 << 20)),
        Sharing::Local,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_without_a_memory_tier() {
    // A memory tier of 0 bytes keeps nothing: every read is from disk.
    let dir = TempDir::new("conformance-disk-only");
    conformance::run_all(
        Arc::new(DiskStore::open(&dir.0, 64 << 20, 0)),
        Sharing::Local,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_store_keeps_entries_freshness_tags_and_paths() {
    let dir = TempDir::new("reopen");
    let t = tags(&["shoes"]);
    {
        let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
        s.put(
            "a",
            Bytes::from_static(b"A"),
            PutOptions::new(MINUTE, "/shop/a").tags(&t),
        )
        .await
        .unwrap();
        s.put(
            "b",
            Bytes::from_static(b"B"),
            PutOptions::new(MINUTE, "/shop/b"),
        )
        .await
        .unwrap();
        s.put(
            "c",
            Bytes::from_static(b"C"),
            PutOptions::new(Duration::from_millis(200), "/c"),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
    assert_eq!(s.get("a").await.unwrap(), Some(Bytes::from_static(b"A")));
    assert_eq!(s.get("b").await.unwrap(), Some(Bytes::from_static(b"B")));
    assert_eq!(
        s.get("c").await.unwrap(),
        None,
        "its freshness ran out while closed"
    );
    assert_eq!(s.invalidate_tags(&t).await.unwrap(), 1);
    assert_eq!(s.get("a").await.unwrap(), None);
    let pattern = UrlPattern::glob("/shop/*").unwrap();
    assert_eq!(s.invalidate_pattern(&pattern).await.unwrap(), 1);
    assert_eq!(s.get("b").await.unwrap(), None);
    assert_eq!(s.keys_count().await.unwrap(), 0);
    let health = s.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_cut_body_is_a_miss_counted_and_removed() {
    let dir = TempDir::new("corrupt");
    let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
    let o = || PutOptions::new(MINUTE, "/x");
    s.put("flip", Bytes::from(vec![7u8; 10_000]), o())
        .await
        .unwrap();
    s.put("cut", Bytes::from(vec![8u8; 10_000]), o())
        .await
        .unwrap();
    s.put("lost", Bytes::from(vec![9u8; 100]), o())
        .await
        .unwrap();
    let flip = s.body_file("flip").unwrap();
    let mut body = std::fs::read(&flip).unwrap();
    body[5000] ^= 1;
    std::fs::write(&flip, body).unwrap();
    let cut = s.body_file("cut").unwrap();
    std::fs::write(&cut, vec![8u8; 4096]).unwrap();
    std::fs::remove_file(s.body_file("lost").unwrap()).unwrap();
    s.clear_memory();
    for k in ["flip", "cut", "lost"] {
        assert_eq!(s.get(k).await.unwrap(), None, "{k}");
    }
    assert_eq!(s.corrupt_entries(), 3);
    assert_eq!(s.keys_count().await.unwrap(), 0);
    assert!(
        !flip.exists() && !cut.exists(),
        "the damaged files are removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_holds_while_filling_three_times_over() {
    let dir = TempDir::new("bound");
    let max = 4 << 20;
    let s = DiskStore::open(&dir.0, max, 1 << 20);
    let body = Bytes::from(vec![1u8; 64 * 1024]);
    let n = 3 * max / (64 * 1024);
    for i in 0..n {
        s.put(
            &format!("k{i}"),
            body.clone(),
            PutOptions::new(MINUTE, &format!("/k/{i}")),
        )
        .await
        .unwrap();
        let used = s.memory().await.unwrap().used_memory_bytes;
        assert!(used <= max, "{used} > {max} after {i} writes");
    }
    let usage = s.memory().await.unwrap();
    assert!(usage.evictions >= 2 * n / 3, "{usage:?}");
    // What the folder of bodies holds, counted by the filesystem.
    let mut on_disk = 0;
    for sub in std::fs::read_dir(dir.0.join("bodies")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            on_disk += f.unwrap().metadata().unwrap().len();
        }
    }
    assert!(on_disk <= max, "{on_disk} bytes of bodies > {max}");
    // The newest entries are there, the oldest gone.
    s.clear_memory();
    assert!(s.get(&format!("k{}", n - 1)).await.unwrap().is_some());
    assert!(s.get("k0").await.unwrap().is_none());
    // A purge of everything finds only what is left.
    let all = UrlPattern::glob("/k/*").unwrap();
    let left = s.keys_count().await.unwrap();
    assert_eq!(s.invalidate_pattern(&all).await.unwrap(), left);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_read_again_outlives_entries_written_after_it() {
    let dir = TempDir::new("lru");
    let max = 2 << 20;
    let s = DiskStore::open(&dir.0, max, 0);
    let body = Bytes::from(vec![1u8; 64 * 1024]);
    let o = |p: &'static str| PutOptions::new(MINUTE, p);
    s.put("hot", body.clone(), o("/hot")).await.unwrap();
    for i in 0..(3 * max / (64 * 1024)) {
        s.put(&format!("k{i}"), body.clone(), o("/k"))
            .await
            .unwrap();
        assert!(
            s.get("hot").await.unwrap().is_some(),
            "evicted after {i} writes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_tier_is_offered_entries_of_at_most_an_eighth_of_its_size() {
    // A 64 KiB tier, no zero-copy (a program that embeds the store): a
    // 100 KB entry, which the tier could never hold, and a 9 KB one, over
    // its share, stay on disk alone and are at hand on every hit (an
    // offer to the tier would be bookkeeping for the blocking pool, hit
    // after hit); an 8 KB one goes to the tier.
    let dir = TempDir::new("tier-share");
    let s = DiskStore::open(&dir.0, 64 << 20, 64 << 10);
    let o = || PutOptions::new(MINUTE, "/t");
    for (key, len, tier) in [
        ("big", 100_000, false),
        ("over", 9_000, false),
        ("fits", 8_192, true),
    ] {
        let value = Bytes::from(vec![3u8; len]);
        s.put(key, value.clone(), o()).await.unwrap();
        for i in 0..3 {
            assert_eq!(s.get(key).await.unwrap(), Some(value.clone()), "{key}");
            if i > 0 {
                assert_eq!(s.get_now(key), Some(value.clone()), "{key} at hand");
            }
        }
        assert_eq!(s.in_memory_tier(key), tier, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_that_cannot_be_opened_fails_open() {
    let dir = TempDir::new("unusable");
    // A file where the folder should be: as root, permissions would not
    // stop anything, but this does.
    let path = dir.0.join("not-a-folder");
    std::fs::write(&path, b"x").unwrap();
    let s = DiskStore::open(&path, 1 << 20, 1 << 20);
    let health = s.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(health.detail.unwrap().contains("cannot open"));
    // Still a store: the memory tier serves.
    s.put("k", Bytes::from_static(b"v"), PutOptions::new(MINUTE, "/k"))
        .await
        .unwrap();
    assert_eq!(s.get("k").await.unwrap(), Some(Bytes::from_static(b"v")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_fail_are_errors_and_degrade_health_until_one_succeeds() {
    let dir = TempDir::new("write-fails");
    let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
    s.put(
        "old",
        Bytes::from_static(b"1"),
        PutOptions::new(MINUTE, "/k"),
    )
    .await
    .unwrap();
    // Every body folder replaced by a file: no body can be written.
    let bodies = dir.0.join("bodies");
    std::fs::rename(&bodies, dir.0.join("bodies-away")).unwrap();
    std::fs::write(&bodies, b"x").unwrap();
    let failed = s
        .put(
            "new",
            Bytes::from_static(b"2"),
            PutOptions::new(MINUTE, "/k"),
        )
        .await;
    assert!(failed.is_err());
    let health = s.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    assert_eq!(s.get("new").await.unwrap(), None);
    std::fs::remove_file(&bodies).unwrap();
    std::fs::rename(dir.0.join("bodies-away"), &bodies).unwrap();
    s.put(
        "new",
        Bytes::from_static(b"2"),
        PutOptions::new(MINUTE, "/k"),
    )
    .await
    .unwrap();
    assert_eq!(s.health().await.unwrap().status, HealthStatus::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purges_last_across_a_reopen() {
    let dir = TempDir::new("soft");
    let t = tags(&["t"]);
    {
        let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
        s.put(
            "k",
            Bytes::from_static(b"v"),
            PutOptions::new(MINUTE, "/k").tags(&t),
        )
        .await
        .unwrap();
        let rewrite = |b: &Bytes| Some((Bytes::from([&b"soft:"[..], &b[..]].concat()), MINUTE));
        assert_eq!(s.soft_invalidate_tags(&t, &rewrite).await.unwrap(), Some(1));
        assert_eq!(
            s.get("k").await.unwrap(),
            Some(Bytes::from_static(b"soft:v"))
        );
    }
    let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
    assert_eq!(
        s.get("k").await.unwrap(),
        Some(Bytes::from_static(b"soft:v"))
    );
    assert_eq!(s.invalidate_tags(&t).await.unwrap(), 1, "still indexed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_files_no_record_names_are_swept_after_a_start() {
    let dir = TempDir::new("sweep");
    let o = || PutOptions::new(MINUTE, "/s");
    let orphan = {
        let s = DiskStore::open(&dir.0, 64 << 20, 0);
        for k in ["a", "b", "c"] {
            s.put(k, Bytes::from(k), o()).await.unwrap();
        }
        // As a crash between removing a record and its file leaves it.
        let file = s.body_file("b").unwrap();
        assert!(s.delete("b").await.unwrap());
        std::fs::write(&file, b"b").unwrap();
        file
    };
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    assert_eq!(s.wait_for_sweep(), 1);
    assert!(!orphan.exists());
    assert_eq!(s.get("a").await.unwrap(), Some(Bytes::from("a")));
    assert_eq!(s.get("c").await.unwrap(), Some(Bytes::from("c")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_too_long_for_the_index_is_not_kept_and_fails_nothing() {
    let dir = TempDir::new("long");
    let s = DiskStore::open(&dir.0, 64 << 20, 1 << 20);
    let key = "k".repeat(70_000);
    let path = format!("/{}", "p".repeat(40_000));
    s.put(
        &key,
        Bytes::from_static(b"v"),
        PutOptions::new(MINUTE, "/p"),
    )
    .await
    .unwrap();
    s.put(
        "k",
        Bytes::from_static(b"v"),
        PutOptions::new(MINUTE, &path),
    )
    .await
    .unwrap();
    assert_eq!(s.get(&key).await.unwrap(), None);
    assert_eq!(s.get("k").await.unwrap(), None);
    assert_eq!(s.health().await.unwrap().status, HealthStatus::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_in_reads_deletes_and_purges_never_panic() {
    let dir = TempDir::new("long-purge");
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    let long = "x".repeat(70_000);
    assert_eq!(s.get(&long).await.unwrap(), None);
    assert!(!s.delete(&long).await.unwrap());
    assert_eq!(
        s.invalidate_tags(std::slice::from_ref(&long))
            .await
            .unwrap(),
        0
    );
    for p in [format!("/{long}"), format!("/{long}*")] {
        let pattern = UrlPattern::glob(&p).unwrap();
        assert_eq!(s.invalidate_pattern(&pattern).await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_without_a_folder_opens_nothing_and_says_so() {
    let config = uip_cache_core::CacheConfig::from_yaml_str("store:\n  type: memory\n").unwrap();
    let s = DiskStore::from_config(&config);
    let health = s.health().await.unwrap();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(health.detail.unwrap().contains("store.disk.path"));
}

/// How long a test waits for what must happen at once (but would never
/// happen, or only after the purge, if the store blocked).
const PROMPTLY: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_soft_purge_leaves_the_runtime_free_for_other_tasks() {
    let dir = TempDir::new("soft-stall");
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    let t = tags(&["t"]);
    s.put(
        "k",
        Bytes::from_static(b"v"),
        PutOptions::new(MINUTE, "/k").tags(&t),
    )
    .await
    .unwrap();
    let handle = tokio::runtime::Handle::current();
    let others_ran = Arc::new(AtomicBool::new(false));
    let ran = others_ran.clone();
    // On the runtime's only worker: the rewrite (under the purge) waits for
    // a task spawned on the same runtime, which runs only if the purge left
    // the worker to it.
    let purge = tokio::spawn(async move {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let rewrite = move |b: &Bytes| {
            let tx = tx.clone();
            handle.spawn(async move {
                let _ = tx.send(());
            });
            let got = rx.lock().unwrap().recv_timeout(PROMPTLY).is_ok();
            ran.store(got, Ordering::SeqCst);
            Some((b.clone(), MINUTE))
        };
        let pattern = UrlPattern::glob("/k").unwrap();
        let by_tag = s.soft_invalidate_tags(&t, &rewrite).await.unwrap();
        let by_pattern = s.soft_invalidate_pattern(&pattern, &rewrite).await.unwrap();
        (by_tag, by_pattern)
    });
    assert_eq!(purge.await.unwrap(), (Some(1), Some(1)));
    assert!(
        others_ran.load(Ordering::SeqCst),
        "another task ran while the soft purge worked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_figures_answer_while_a_purge_holds_the_store() {
    let dir = TempDir::new("figures");
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    let t = tags(&["t"]);
    s.put(
        "k",
        Bytes::from_static(b"v"),
        PutOptions::new(MINUTE, "/k").tags(&t),
    )
    .await
    .unwrap();
    let watcher = s.clone();
    let figures = Arc::new(std::sync::Mutex::new(None));
    let seen = figures.clone();
    // The rewrite runs under the store's lock: the figures, asked from
    // another thread, must answer before it ends.
    let rewrite = move |b: &Bytes| {
        let (tx, rx) = std::sync::mpsc::channel();
        let w = watcher.clone();
        std::thread::spawn(move || {
            let count = w.keys_count().now_or_never().map(Result::unwrap);
            let usage = w.memory().now_or_never().map(Result::unwrap);
            let _ = tx.send((count, usage.map(|u| u.used_memory_bytes)));
        });
        *seen.lock().unwrap() = rx.recv_timeout(PROMPTLY).ok();
        Some((b.clone(), MINUTE))
    };
    assert_eq!(s.soft_invalidate_tags(&t, &rewrite).await.unwrap(), Some(1));
    let figures = figures.lock().unwrap().take();
    let (count, used) = figures.expect("the figures answered during the purge");
    assert_eq!(count, Some(1));
    assert!(used.is_some_and(|u| u > 0), "{used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_file_of_the_wrong_length_is_not_read() {
    let dir = TempDir::new("huge");
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    let t = tags(&["t"]);
    let o = || PutOptions::new(MINUTE, "/h").tags(&t);
    s.put("read", Bytes::from_static(b"v"), o()).await.unwrap();
    s.put("purged", Bytes::from_static(b"w"), o())
        .await
        .unwrap();
    // Damaged to a (sparse) terabyte: reading it whole would take what
    // the machine does not have.
    for k in ["read", "purged"] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(s.body_file(k).unwrap())
            .unwrap();
        f.set_len(1 << 40).unwrap();
    }
    assert_eq!(s.get("read").await.unwrap(), None);
    assert_eq!(s.corrupt_entries(), 1);
    let rewrite = |b: &Bytes| Some((b.clone(), MINUTE));
    assert_eq!(s.soft_invalidate_tags(&t, &rewrite).await.unwrap(), Some(0));
    assert_eq!(s.corrupt_entries(), 2);
    assert_eq!(s.keys_count().await.unwrap(), 0);
    assert_eq!(s.health().await.unwrap().status, HealthStatus::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_left_of_an_unreadable_record_goes_with_its_next_write_or_delete() {
    let dir = TempDir::new("unreadable");
    let t = tags(&["old"]);
    let o = |path| PutOptions::new(MINUTE, path).tags(&t);
    let bodies = {
        let s = DiskStore::open(&dir.0, 64 << 20, 0);
        s.put("k", Bytes::from(vec![1u8; 10_000]), o("/old"))
            .await
            .unwrap();
        s.put("d", Bytes::from(vec![2u8; 5_000]), o("/old"))
            .await
            .unwrap();
        [s.body_file("k").unwrap(), s.body_file("d").unwrap()]
    };
    {
        // Both records made unreadable (a version this store does not
        // know), at their length.
        let db = fjall::Database::builder(dir.0.join("index"))
            .open()
            .unwrap();
        let entries = db
            .keyspace("entries", || {
                fjall::KeyspaceCreateOptions::default().max_memtable_size(8 << 20)
            })
            .unwrap();
        for k in ["k", "d"] {
            let mut raw = entries.get(k).unwrap().unwrap().to_vec();
            raw[0] = 0xff;
            entries.insert(k, raw).unwrap();
        }
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    assert_eq!(s.get("k").await.unwrap(), None);
    s.put(
        "k",
        Bytes::from_static(b"new"),
        PutOptions::new(MINUTE, "/new"),
    )
    .await
    .unwrap();
    assert!(!s.delete("d").await.unwrap());
    assert_eq!(s.corrupt_entries(), 2);
    assert!(
        bodies.iter().all(|b| !b.exists()),
        "the bodies they named are removed"
    );
    assert_eq!(s.keys_count().await.unwrap(), 1);
    assert_eq!(s.invalidate_tags(&t).await.unwrap(), 0);
    assert_eq!(s.get("k").await.unwrap(), Some(Bytes::from_static(b"new")));
    assert!(s.delete("k").await.unwrap());
    let usage = s.memory().await.unwrap();
    assert_eq!(
        (s.keys_count().await.unwrap(), usage.used_memory_bytes),
        (0, 0),
        "nothing is charged for them any more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_or_delete_takes_effect_after_the_writes_begun_before_it() {
    // The cache begins a write, then an unsafe request purges its target:
    // the purge must find the entry, not pass it while its body is still
    // being written (then the entry would outlive the purge). A large body
    // keeps the write busy.
    let dir = TempDir::new("ordered");
    let s = DiskStore::open(&dir.0, 1 << 30, 0);
    let big = Bytes::from(vec![7u8; 32 << 20]);
    let t = tags(&["target"]);
    for round in 0..3 {
        let key = format!("k{round}");
        let mut put = Box::pin(s.put(&key, big.clone(), PutOptions::new(MINUTE, "/k").tags(&t)));
        assert!((&mut put).now_or_never().is_none(), "the write has begun");
        let removed = match round {
            0 => s.invalidate_tags(&t).await.unwrap(),
            1 => s
                .invalidate_pattern(&UrlPattern::glob("/k").unwrap())
                .await
                .unwrap(),
            _ => u64::from(s.delete(&key).await.unwrap()),
        };
        put.await.unwrap();
        assert_eq!(removed, 1, "round {round}");
        assert_eq!(s.get(&key).await.unwrap(), None, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_checked_on_its_first_read_after_a_start_and_its_length_on_every_read() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = TempDir::new("first-read");
    let value = Bytes::from(vec![5u8; 10_000]);
    let o = || PutOptions::new(MINUTE, "/x");
    let flip = |file: &std::path::Path| {
        // In place, keeping its length.
        let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
        f.seek(SeekFrom::Start(5000)).unwrap();
        f.write_all(&[5 ^ 1]).unwrap();
    };
    {
        let s = DiskStore::open(&dir.0, 64 << 20, 0);
        for k in ["changed", "cut", "unread"] {
            s.put(k, value.clone(), o()).await.unwrap();
        }
        for k in ["changed", "cut"] {
            assert_eq!(s.get(k).await.unwrap(), Some(value.clone()), "{k}");
        }
        // Changed after its first (checked) read, its length kept: read
        // as it is now, whole, until the next start checks it again.
        flip(&s.body_file("changed").unwrap());
        let read = s.get("changed").await.unwrap().unwrap();
        assert_eq!(read.len(), value.len());
        assert_eq!(read[5000], 5 ^ 1);
        // Changed before its first read: caught.
        flip(&s.body_file("unread").unwrap());
        assert_eq!(s.get("unread").await.unwrap(), None);
        assert_eq!(s.corrupt_entries(), 1);
        // Cut after its first read: its length is checked on every read.
        let cut = s.body_file("cut").unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&cut)
            .unwrap()
            .set_len(4096)
            .unwrap();
        assert_eq!(s.get("cut").await.unwrap(), None);
        assert_eq!(s.corrupt_entries(), 2);
        assert!(!cut.exists(), "the cut file is removed");
        assert_eq!(s.keys_count().await.unwrap(), 1);
    }
    // After a start, every body is checked again on its first read.
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    let changed = s.body_file("changed").unwrap();
    assert_eq!(s.get("changed").await.unwrap(), None);
    assert_eq!(s.corrupt_entries(), 1);
    assert!(!changed.exists());
    assert_eq!(s.keys_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_read_from_disk_again_and_again_stay_whole_while_entries_change() {
    // Reads on the runtime's thread and on the blocking pool, first reads
    // and later ones, while the same keys are rewritten and purged.
    let dir = TempDir::new("reads");
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    let t = tags(&["t"]);
    let value = |k: usize, v: u8| Bytes::from(vec![v; 3000 + k * 7000]);
    for round in 0..20u8 {
        for k in 0..4 {
            let key = format!("k{k}");
            if round % 5 == 4 {
                s.invalidate_tags(&t).await.unwrap();
            } else if round % 3 == 0 {
                let o = PutOptions::new(MINUTE, "/r").tags(&t);
                s.put(&key, value(k, round), o).await.unwrap();
            }
            for _ in 0..3 {
                if let Some(got) = s.get(&key).await.unwrap() {
                    assert_eq!(got.len(), value(k, 0).len(), "{key}");
                    assert!(got.iter().all(|b| *b == got[0]), "{key}: one write's bytes");
                }
            }
        }
    }
    assert_eq!(s.corrupt_entries(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_large_body_that_cannot_be_mapped_is_a_miss_and_kept() {
    // Zero-copy is never turned on in this test binary, so no body is
    // mapped: one over 64 MiB is not read whole into memory for a hit.
    let dir = TempDir::new("unmapped");
    let s = DiskStore::open(&dir.0, 1 << 30, 0);
    let small = Bytes::from(vec![7u8; 2 << 20]);
    s.put("small", small.clone(), PutOptions::new(MINUTE, "/small"))
        .await
        .unwrap();
    s.put(
        "huge",
        Bytes::from(vec![9u8; 65 << 20]),
        PutOptions::new(MINUTE, "/huge"),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        assert_eq!(s.get("small").await.unwrap(), Some(small.clone()));
        assert_eq!(s.get("huge").await.unwrap(), None, "a miss");
    }
    assert_eq!(s.keys_count().await.unwrap(), 2, "the entry is kept");
    assert_eq!(s.corrupt_entries(), 0, "and not counted damaged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_entry_is_at_hand_without_a_future_once_its_body_is_checked() {
    let dir = TempDir::new("at-hand");
    let big = Bytes::from(vec![b'b'; 200 * 1024]);
    {
        let s = DiskStore::open(&dir.0, 64 << 20, 0);
        assert_eq!(s.get_now("small"), None);
        s.put(
            "small",
            Bytes::from_static(b"small body"),
            PutOptions::new(MINUTE, "/s"),
        )
        .await
        .unwrap();
        // With no memory tier, a young entry is read from its file at once.
        assert_eq!(s.get_now("small").as_deref(), Some(&b"small body"[..]));
        s.put("big", big.clone(), PutOptions::new(MINUTE, "/b"))
            .await
            .unwrap();
        assert_eq!(s.get_now("big"), Some(big.clone()));
        // "small" is now in the older half of the eviction order: only
        // `get` reads it, and moves it to the young end.
        assert_eq!(s.get_now("small"), None);
        let read = s.get("small").await.unwrap();
        assert_eq!(read.as_deref(), Some(&b"small body"[..]));
        assert_eq!(s.get_now("small").as_deref(), Some(&b"small body"[..]));
        s.delete("small").await.unwrap();
        assert_eq!(s.get_now("small"), None);
        // An entry past its time is never at hand.
        s.put(
            "brief",
            Bytes::from_static(b"x"),
            PutOptions::new(Duration::from_millis(1), "/x"),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.get_now("brief"), None);
    }
    // After a start, a large body is checked by its first read, which only
    // `get` makes; then it is at hand.
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    assert_eq!(s.get_now("big"), None);
    assert_eq!(s.get("big").await.unwrap(), Some(big.clone()));
    assert_eq!(s.get_now("big"), Some(big));
}
