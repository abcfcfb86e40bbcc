//! Coalesced L2 reads against a real redis-server, with an L2 read held
//! open between the read and the L1 fill.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uip_cache_core::store::{PutOptions, Storage, StoreError};
use uip_cache_core::{CacheConfig, StoredResponse};
use uip_cache_testkit::RedisServer;

use super::TieredStore;

/// Holds the next L2 read, once it has read, until released.
#[derive(Default)]
pub(super) struct Hold(Mutex<Option<oneshot::Receiver<()>>>);

impl Hold {
    /// Holds the next read; it goes on when the sender sends or is dropped.
    fn next(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(rx);
        tx
    }

    /// Whether a read is being held (or was).
    fn taken(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    pub(super) async fn pass(&self) {
        let rx = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(rx) = rx {
            let _ = rx.await;
        }
    }
}

fn tiered(server: &RedisServer) -> TieredStore {
    let yaml = server.yaml("").replace("type: redis\n", "type: tiered\n");
    TieredStore::from_config(&CacheConfig::from_yaml_str(&yaml).unwrap()).unwrap()
}

fn entry(body: &str) -> Bytes {
    let mut e = StoredResponse::new(200, Bytes::from(body.to_owned()));
    e.freshness_lifetime = Duration::from_secs(60);
    e.tags = vec!["t".to_owned(), "path:/t".to_owned()];
    e.encode().unwrap()
}

fn body(got: Option<Bytes>) -> Option<Bytes> {
    got.map(|b| StoredResponse::decode(&b).unwrap().body)
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Two stores on one server, both using L1: `a` is read, `b` writes
/// (so what it puts is in L2 and not in `a`'s L1).
async fn two(server: &RedisServer) -> (TieredStore, TieredStore) {
    let (a, b) = (tiered(server), tiered(server));
    for s in [&a, &b] {
        let _ = s.get("warm-up").await;
        until("subscribed", || s.is_subscribed()).await;
    }
    (a, b)
}

async fn put(s: &TieredStore, key: &str, text: &str) {
    let tags = ["t".to_owned(), "path:/t".to_owned()];
    let options = PutOptions::new(Duration::from_secs(60), "/t").tags(&tags);
    s.put(key, entry(text), options).await.unwrap();
}

/// How many GETs the server has run.
fn gets(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|l| l.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// A read of `key` in a task of its own.
fn spawn_get(a: &TieredStore, key: &str) -> JoinHandle<Result<Option<Bytes>, StoreError>> {
    let (a, key) = (a.clone(), key.to_owned());
    tokio::spawn(async move { a.get(&key).await })
}

/// A read of `key` that has read L2 and is held before its fill until the
/// sender sends or is dropped.
async fn held_read(
    a: &TieredStore,
    key: &str,
) -> (
    oneshot::Sender<()>,
    JoinHandle<Result<Option<Bytes>, StoreError>>,
) {
    let release = a.inner.hold.next();
    let read = spawn_get(a, key);
    until("the first read is held", || a.inner.hold.taken()).await;
    (release, read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_after_an_invalidation_does_not_join_a_read_from_before_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = two(&server).await;
    put(&b, "k", "old").await;
    // The first read has read "old" from L2 and is held before its fill.
    let (release, first) = held_read(&a, "k").await;
    // An invalidation completes, then a new entry is written.
    assert_eq!(a.invalidate_tags(&["t".to_owned()]).await.unwrap(), 1);
    put(&b, "k", "new").await;
    // A read that arrives now reads L2 itself: it finishes while the first
    // is still held, and gets the new entry.
    let second = spawn_get(&a, "k");
    until("the second read finished", || second.is_finished()).await;
    assert_eq!(a.inner.flights.joined.load(Ordering::Relaxed), 0);
    release.send(()).unwrap();
    assert_eq!(
        body(second.await.unwrap().unwrap()).as_deref(),
        Some(&b"new"[..])
    );
    // The first read gets what it read, as before, but does not keep it.
    assert_eq!(
        body(first.await.unwrap().unwrap()).as_deref(),
        Some(&b"old"[..])
    );
    assert_eq!(
        body(a.get("k").await.unwrap()).as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(a.inner.flights.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_others_get_the_value_when_the_first_reader_leaves() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = two(&server).await;
    put(&b, "k", "v").await;
    let before = gets(&server);
    let (release, first) = held_read(&a, "k").await;
    let others: Vec<_> = (0..8)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.get("k").await })
        })
        .collect();
    until("the others joined", || {
        a.inner.flights.joined.load(Ordering::Relaxed) == 8
    })
    .await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    release
        .send(())
        .expect("the read outlives the reader that started it");
    for other in others {
        assert_eq!(
            body(other.await.unwrap().unwrap()).as_deref(),
            Some(&b"v"[..])
        );
    }
    assert_eq!(gets(&server) - before, 1, "one GET for all nine");
    assert!(a.get_now("k").is_some(), "filled L1");
    assert_eq!(a.inner.flights.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_nobody_waits_for_is_dropped_and_forgotten() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, b) = two(&server).await;
    put(&b, "k", "v").await;
    let (_release, first) = held_read(&a, "k").await;
    assert_eq!(a.inner.flights.len(), 1);
    first.abort();
    let _ = first.await;
    assert_eq!(a.inner.flights.len(), 0, "no entry left behind");
    // The next read starts afresh.
    assert_eq!(body(a.get("k").await.unwrap()).as_deref(), Some(&b"v"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_read_waiting_on_a_failed_one_gets_the_error() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, _b) = two(&server).await;
    server.pause();
    let got = futures_util::future::join_all((0..8).map(|_| a.get("k"))).await;
    server.resume();
    assert_eq!(a.inner.flights.joined.load(Ordering::Relaxed), 7);
    let kinds: Vec<_> = got.iter().map(|g| g.as_ref().unwrap_err().kind()).collect();
    assert!(
        got[0].as_ref().unwrap_err().is_timeout(),
        "{:?}",
        got[0].as_ref().err()
    );
    assert!(kinds.iter().all(|k| *k == kinds[0]), "{kinds:?}");
    assert_eq!(a.inner.flights.len(), 0);
}

#[test]
fn a_shared_error_reads_as_the_one_it_copies() {
    use uip_cache_core::store::{StoreError, StoreErrorKind};

    use super::flight::FlightError;

    for e in [
        StoreError::new(StoreErrorKind::Backend, "WRONGTYPE"),
        StoreError::from_kind(StoreErrorKind::Unavailable),
    ] {
        let (kind, text) = (e.kind(), e.to_string());
        let copy = StoreError::from(FlightError::from(e));
        assert_eq!((copy.kind(), copy.to_string()), (kind, text));
    }
}

/// A store whose L1 keeps nothing of 64 KB, subscribed, and a 64 KB
/// body starting with `t`.
async fn small_l1(server: &RedisServer) -> (TieredStore, impl Fn(&str) -> String) {
    let yaml = server.yaml("").replace(
        "type: redis\n",
        "type: tiered\n  l1:\n    max_bytes: 4096\n",
    );
    let a = TieredStore::from_config(&CacheConfig::from_yaml_str(&yaml).unwrap()).unwrap();
    let _ = a.get("warm-up").await;
    until("subscribed", || a.is_subscribed()).await;
    (a, |t: &str| format!("{t}{}", "x".repeat(64 * 1024)))
}

/// A read that began while this store's write was under way, and read
/// Redis before the write reached it, is not shared by a read that begins
/// once the write is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_after_a_write_here_does_not_join_one_begun_during_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, big) = small_l1(&server).await;
    put(&a, "k", &big("old")).await;
    assert!(a.get_now("k").is_none(), "too large for L1");
    // The write of "new" begins and is held before it reaches Redis.
    let write_on = a.inner.hold_put.next();
    let write = tokio::spawn({
        let (a, new) = (a.clone(), big("new"));
        async move { put(&a, "k", &new).await }
    });
    until("the write is held", || a.inner.hold_put.taken()).await;
    // Meanwhile a read reads "old" from Redis and is held before its fill.
    let (read_on, first) = held_read(&a, "k").await;
    // The write goes on to its end.
    write_on.send(()).unwrap();
    write.await.unwrap();
    let second = spawn_get(&a, "k");
    until("the second read finished or joined the first", || {
        second.is_finished() || a.inner.flights.joined.load(Ordering::Relaxed) > 0
    })
    .await;
    read_on.send(()).unwrap();
    let old = body(first.await.unwrap().unwrap()).unwrap();
    assert!(
        old.starts_with(b"old"),
        "the first read read before the write"
    );
    let got = body(second.await.unwrap().unwrap()).unwrap();
    assert!(
        got.starts_with(b"new"),
        "a read that began after the write got what Redis held before it: {:?}",
        String::from_utf8_lossy(&got[..3])
    );
}

/// A read that comes after this store's own write, which L1 did not keep
/// (the entry is larger than L1), must not share an L2 read that began
/// before that write: it would get what Redis held before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_after_a_write_here_does_not_join_a_read_from_before_it() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let (a, big) = small_l1(&server).await;
    put(&a, "k", &big("old")).await;
    assert!(a.get_now("k").is_none(), "too large for L1");
    // A read has read "old" from L2 and is held before its fill.
    let (release, first) = held_read(&a, "k").await;
    // This store writes "new"; the write is done.
    put(&a, "k", &big("new")).await;
    // A read that begins now, after the write.
    let second = spawn_get(&a, "k");
    until("the second read finished or joined the first", || {
        second.is_finished() || a.inner.flights.joined.load(Ordering::Relaxed) > 0
    })
    .await;
    release.send(()).unwrap();
    let _ = first.await;
    let got = body(second.await.unwrap().unwrap()).unwrap();
    assert!(
        got.starts_with(b"new"),
        "a read that began after the write got what Redis held before it: {:?}",
        String::from_utf8_lossy(&got[..3])
    );
}
