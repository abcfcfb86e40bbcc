//! Entries written as their body streams in (`Storage::begin_put`): commit,
//! abort, the bound, a large body's first read (a crash part-way: the
//! server's `disk_stream` tests).

use std::path::Path;

use bytes::Bytes;
use uip_cache_core::store::{PutOptions, Storage, StoreStatus};
use uip_cache_disk::DiskStore;

use crate::disk_store::{TempDir, MINUTE};

/// The body files in the store at `dir`.
fn body_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("bodies"))
        .unwrap()
        .flatten()
        .map(|d| std::fs::read_dir(d.path()).unwrap().count())
        .sum()
}

/// `n` chunks of `size` bytes, each of its own byte.
fn chunks(n: usize, size: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(vec![i as u8; size])).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_write_is_the_head_then_every_chunk() {
    let dir = TempDir::new("commit");
    let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
    s.put(
        "k",
        Bytes::from_static(b"old"),
        PutOptions::new(MINUTE, "/k"),
    )
    .await
    .unwrap();
    let tags = vec!["t".to_owned()];
    let o = PutOptions::new(MINUTE, "/k").tags(&tags);
    let mut w = s.begin_put("k", 4, o).expect("the disk store streams");
    let sent = chunks(10, 100_000);
    for c in &sent {
        w.write(c.clone()).await.unwrap();
    }
    assert_eq!(w.written(), 1_000_000);
    // Until the commit, the old entry stands.
    assert_eq!(s.get("k").await.unwrap(), Some(Bytes::from_static(b"old")));
    w.commit(Bytes::from_static(b"HEAD")).await.unwrap();
    let mut want = b"HEAD".to_vec();
    for c in &sent {
        want.extend_from_slice(c);
    }
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&want[..]));
    assert_eq!(s.keys_count().await.unwrap(), 1);
    assert_eq!(body_files(&dir.0), 1, "the old body is gone");
    // Tagged as the options said, and read whole after a reopen (checked
    // against its checksum then).
    drop(s);
    let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&want[..]));
    assert_eq!(s.invalidate_tags(&tags).await.unwrap(), 1);
    assert_eq!(s.get("k").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_write_stores_nothing_and_removes_its_file() {
    let dir = TempDir::new("abort");
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    let mut w = s.begin_put("k", 4, PutOptions::new(MINUTE, "/k")).unwrap();
    for c in chunks(4, 300_000) {
        w.write(c).await.unwrap();
    }
    assert_eq!(body_files(&dir.0), 1, "written as it came");
    drop(w);
    assert_eq!(body_files(&dir.0), 0);
    assert_eq!(s.get("k").await.unwrap(), None);
    assert_eq!(s.keys_count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_larger_than_the_store_fails_before_filling_the_disk() {
    let dir = TempDir::new("bound");
    let s = DiskStore::open(&dir.0, 4 << 20, 0);
    let mut w = s.begin_put("k", 4, PutOptions::new(MINUTE, "/k")).unwrap();
    let mut failed = false;
    for c in chunks(20, 1 << 20) {
        if w.write(c).await.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "past max_bytes the write fails");
    assert!(w.commit(Bytes::from_static(b"HEAD")).await.is_err());
    assert_eq!(body_files(&dir.0), 0);
    assert_eq!(s.get("k").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_of_another_length_is_refused() {
    let dir = TempDir::new("head");
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    // Small enough to be written whole at the commit, and large enough to
    // be in its file before it.
    for len in [4, 1 << 20] {
        let mut w = s.begin_put("k", 4, PutOptions::new(MINUTE, "/k")).unwrap();
        w.write(Bytes::from(vec![1u8; len])).await.unwrap();
        assert!(
            w.commit(Bytes::from_static(b"HEADER")).await.is_err(),
            "{len}"
        );
        assert_eq!(s.get("k").await.unwrap(), None);
        assert_eq!(body_files(&dir.0), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_streamed_write_is_stored_in_one_write() {
    let dir = TempDir::new("small");
    let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
    let mut w = s.begin_put("k", 4, PutOptions::new(MINUTE, "/k")).unwrap();
    w.write(Bytes::from_static(b"small ")).await.unwrap();
    w.write(Bytes::from_static(b"body")).await.unwrap();
    assert_eq!(body_files(&dir.0), 0, "nothing written before the commit");
    w.commit(Bytes::from_static(b"HEAD")).await.unwrap();
    assert_eq!(
        s.get("k").await.unwrap(),
        Some(Bytes::from_static(b"HEADsmall body"))
    );
    assert_eq!(body_files(&dir.0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_damaged_before_a_start_is_a_miss() {
    let dir = TempDir::new("large-corrupt");
    let body = {
        let s = DiskStore::open(&dir.0, 64 << 20, 0);
        let mut w = s.begin_put("k", 4, PutOptions::new(MINUTE, "/k")).unwrap();
        for c in chunks(8, 1 << 20) {
            w.write(c).await.unwrap();
        }
        w.commit(Bytes::from_static(b"HEAD")).await.unwrap();
        s.body_file("k").unwrap()
    };
    // A byte changed deep in the body: its first read checks it, a piece
    // at a time, and finds it.
    let mut bytes = std::fs::read(&body).unwrap();
    bytes[6 << 20] ^= 1;
    std::fs::write(&body, bytes).unwrap();
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    assert_eq!(s.get("k").await.unwrap(), None);
    assert_eq!(s.corrupt_entries(), 1);
    assert!(!body.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_progress_together_stay_within_max_bytes() {
    let dir = TempDir::new("together");
    let s = DiskStore::open(&dir.0, 4 << 20, 0);
    let mut first = s.begin_put("a", 4, PutOptions::new(MINUTE, "/a")).unwrap();
    for c in chunks(3, 1 << 20) {
        first.write(c).await.unwrap();
    }
    // A second write would bring the bodies on their way past the store.
    let mut second = s.begin_put("b", 4, PutOptions::new(MINUTE, "/b")).unwrap();
    assert!(second.write(Bytes::from(vec![1u8; 1 << 20])).await.is_err());
    drop(second);
    first.commit(Bytes::from_static(b"HEAD")).await.unwrap();
    // Committed, the first counts in the store's bound, no longer here: a
    // new write goes on (evicting it at its commit).
    let mut third = s.begin_put("c", 4, PutOptions::new(MINUTE, "/c")).unwrap();
    for c in chunks(3, 1 << 20) {
        third.write(c).await.unwrap();
    }
    third.commit(Bytes::from_static(b"HEAD")).await.unwrap();
    assert_eq!(s.get("a").await.unwrap(), None, "evicted");
    assert_eq!(
        s.get("c").await.unwrap().map(|v| v.len()),
        Some(4 + (3 << 20))
    );
    assert_eq!(body_files(&dir.0), 1);
}
