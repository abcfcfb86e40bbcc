//! Body files kept mapped between hits (zero-copy on, as the server runs
//! the store): a test binary of its own, since turning zero-copy on holds
//! for the whole process.
#![cfg(target_os = "linux")]

use std::path::PathBuf;

use bytes::Bytes;
use uip_cache_core::store::{PutOptions, Storage};
use uip_cache_core::zerocopy;
use uip_cache_disk::DiskStore;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_body_cut_by_another_process_is_a_miss_and_one_unlinked_stays_whole() {
    zerocopy::enable(16 * 1024, 16 * 1024);
    let dir =
        TempDir(std::env::temp_dir().join(format!("uip-cache-disk-mapped-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let s = DiskStore::open(&dir.0, 64 << 20, 0);
    let o = || PutOptions::new(std::time::Duration::from_secs(60), "/x");
    let value = |v: u8| Bytes::from(vec![v; 100_000]);
    for (k, v) in [("cut", 1), ("unlinked", 2)] {
        s.put(k, value(v), o()).await.unwrap();
        // The first read checks the body; the next ones map it and keep
        // it mapped.
        for _ in 0..3 {
            let got = s.get(k).await.unwrap().unwrap();
            assert_eq!(got, value(v), "{k}");
        }
        let got = s.get(k).await.unwrap().unwrap();
        assert!(zerocopy::find(&got).is_some(), "{k}: read from its mapping");
    }

    // Cut while mapped: its length is asked of the mapping's descriptor
    // on every hit, so the cut is seen (reading the mapping past the cut
    // end would raise SIGBUS).
    let cut = s.body_file("cut").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(4096)
        .unwrap();
    assert_eq!(s.get("cut").await.unwrap(), None);
    assert_eq!(s.corrupt_entries(), 1);
    assert!(!cut.exists(), "the cut file is removed");

    // Unlinked by another process while mapped: the file stays whole for
    // as long as it is mapped, and is served whole.
    std::fs::remove_file(s.body_file("unlinked").unwrap()).unwrap();
    let got = s.get("unlinked").await.unwrap().unwrap();
    assert_eq!(got, value(2));
    assert_eq!(s.corrupt_entries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_memory_tier_a_large_body_is_sent_from_its_file_and_a_cut_is_still_seen() {
    zerocopy::enable(16 * 1024, 16 * 1024);
    let dir = TempDir(
        std::env::temp_dir().join(format!("uip-cache-disk-mapped-tier-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
    let o = || PutOptions::new(std::time::Duration::from_secs(60), "/t");
    let value = Bytes::from(vec![3u8; 100_000]);
    s.put("t", value.clone(), o()).await.unwrap();
    // The first read checks the body (read whole); the next ones are sent
    // from the file's mapping, kept by the disk: the tier holds no copy.
    let mut reads = Vec::new();
    for _ in 0..3 {
        reads.push(s.get("t").await.unwrap().unwrap());
    }
    assert!(reads.iter().all(|r| *r == value));
    assert!(zerocopy::find(&reads[2]).is_some(), "sent from a file");
    assert_eq!(reads[1].as_ptr(), reads[2].as_ptr(), "the disk's mapping");
    assert!(!s.in_memory_tier("t"), "the tier holds none of it");
    // And a hit of it has no bookkeeping for the blocking pool: it is at
    // hand, as without a tier.
    assert!(s.get_now("t").is_some_and(|v| v == value), "at hand");
    drop(reads);
    // Cut by another process: the next hit asks the file's length and
    // misses (a tier holding the mapping would have answered, and reading
    // it would raise SIGBUS).
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.body_file("t").unwrap())
        .unwrap()
        .set_len(4096)
        .unwrap();
    assert_eq!(s.get("t").await.unwrap(), None);
    assert_eq!(s.corrupt_entries(), 1);
    // A small body is held by the tier.
    s.put("small", Bytes::from(vec![4u8; 1000]), o())
        .await
        .unwrap();
    assert!(s.in_memory_tier("small"));
}
