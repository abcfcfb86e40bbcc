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
    zerocopy::enable(16 * 1024);
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
async fn the_memory_tier_holds_a_large_body_as_its_files_mapping() {
    zerocopy::enable(16 * 1024);
    let dir = TempDir(
        std::env::temp_dir().join(format!("uip-cache-disk-mapped-tier-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    let s = DiskStore::open(&dir.0, 64 << 20, 8 << 20);
    let o = PutOptions::new(std::time::Duration::from_secs(60), "/t");
    let value = Bytes::from(vec![3u8; 100_000]);
    s.put("t", value.clone(), o).await.unwrap();
    // The first read checks the body (read whole); the second maps it,
    // and the tier takes that mapping; the third is the tier's.
    let mut reads = Vec::new();
    for _ in 0..3 {
        reads.push(s.get("t").await.unwrap().unwrap());
    }
    let again = reads.pop().unwrap();
    assert_eq!(again, value);
    assert_eq!(
        reads[1].as_ptr(),
        again.as_ptr(),
        "the tier holds the mapping"
    );
    // What the tier holds is the body file itself, not a copy made at the
    // write: the file cut, its mapping's file is that short (nothing reads
    // the mapping past here).
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.body_file("t").unwrap())
        .unwrap()
        .set_len(4096)
        .unwrap();
    let sealed = zerocopy::find(&again).expect("sent from a file");
    assert_eq!(sealed.file_len().unwrap(), 4096);
}
