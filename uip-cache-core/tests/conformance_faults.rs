//! The coordination checks of the store conformance suite catch the faults
//! they are written for: a store double that coordinates as a shared store
//! passes them all, and each fault put into it makes the check for it
//! fail. A store used by one process alone fails the shared checks, and a
//! shared one the local ones.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uip_cache_core::store::conformance::{self, Sharing};
use uip_cache_core::store::{Coordination, MemoryStore, Storage, Store, StoreFuture};

/// What the double gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// Recording leaves the epoch where it was.
    EpochStays,
    /// The log gives lines newest first.
    NewestFirst,
    /// The log gives back every line ever recorded, whatever the epoch.
    LogIgnoresEpoch,
    /// Lines are cut to 512 bytes: a narrower invalidation.
    CutsLongLines,
    /// Every lease is granted, held or not.
    LeaseNotExclusive,
    /// A release frees the lease whoever asks.
    ReleaseByAnyone,
    /// Leases never expire.
    LeaseNeverExpires,
    /// A lease is checked and taken in two steps: racing holders all get it.
    LeaseRace,
}

/// A shared store's coordination in one process, with one fault; its
/// entries live in a [`MemoryStore`].
#[derive(Debug)]
struct Double {
    fault: Fault,
    entries: MemoryStore,
    log: Mutex<(u64, Vec<(u64, String)>)>,
    leases: Mutex<HashMap<String, (u64, Instant)>>,
    /// With [`Fault::LeaseRace`], the holders the race check sends (16)
    /// meet here between checking and taking.
    racers: tokio::sync::Barrier,
}

impl Double {
    fn new(fault: Fault) -> Arc<Self> {
        Arc::new(Double {
            fault,
            entries: MemoryStore::new(16 << 20),
            log: Mutex::default(),
            leases: Mutex::default(),
            racers: tokio::sync::Barrier::new(16),
        })
    }

    /// Takes the lease if it is free (or expired).
    fn take(&self, key: &str, token: u64, ttl: Duration) -> bool {
        let mut leases = self.leases.lock().unwrap();
        let now = Instant::now();
        let free = match leases.get(key) {
            None => true,
            Some(_) if self.fault == Fault::LeaseNotExclusive => true,
            Some((_, until)) => self.fault != Fault::LeaseNeverExpires && *until <= now,
        };
        if free {
            leases.insert(key.to_owned(), (token, now + ttl));
        }
        free
    }
}

impl Storage for Double {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.entries.get(key)
    }
    uip_cache_testkit::storage_put_to!(entries);
    uip_cache_testkit::storage_removals_to!(entries);
}

uip_cache_testkit::store_status_of!(Double, entries);

impl Coordination for Double {
    fn shared(&self) -> bool {
        true
    }

    fn epoch(&self) -> StoreFuture<'_, u64> {
        let epoch = self.log.lock().unwrap().0;
        Box::pin(async move { Ok(epoch) })
    }

    fn record_invalidation<'a>(&'a self, line: &'a str) -> StoreFuture<'a, ()> {
        let mut log = self.log.lock().unwrap();
        let epoch = log.0 + 1;
        if self.fault != Fault::EpochStays {
            log.0 = epoch;
        }
        let kept = match self.fault {
            Fault::CutsLongLines => line[..line.len().min(512)].to_owned(),
            _ => line.to_owned(),
        };
        log.1.push((epoch, kept));
        Box::pin(async { Ok(()) })
    }

    fn invalidations_since(&self, epoch: u64) -> StoreFuture<'_, Option<Vec<String>>> {
        let log = self.log.lock().unwrap();
        let mut lines: Vec<String> = log
            .1
            .iter()
            .filter(|(n, _)| self.fault == Fault::LogIgnoresEpoch || *n > epoch)
            .map(|(_, l)| l.clone())
            .collect();
        if self.fault == Fault::NewestFirst {
            lines.reverse();
        }
        Box::pin(async move { Ok(Some(lines)) })
    }

    fn try_lease<'a>(&'a self, key: &'a str, token: u64, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if self.fault == Fault::LeaseRace {
                let free = !self.leases.lock().unwrap().contains_key(key);
                self.racers.wait().await;
                if free {
                    self.leases
                        .lock()
                        .unwrap()
                        .insert(key.to_owned(), (token, Instant::now() + ttl));
                }
                return Ok(free);
            }
            Ok(self.take(key, token, ttl))
        })
    }

    fn release_lease<'a>(&'a self, key: &'a str, token: u64) -> StoreFuture<'a, ()> {
        let mut leases = self.leases.lock().unwrap();
        if self.fault == Fault::ReleaseByAnyone || leases.get(key).is_some_and(|l| l.0 == token) {
            leases.remove(key);
        }
        Box::pin(async { Ok(()) })
    }
}

/// Whether `check` panics (fails) on `store`; it must end within 30 s.
async fn fails<S, F, Fut>(store: Arc<S>, check: F) -> bool
where
    S: Send + Sync + 'static + ?Sized,
    F: FnOnce(Arc<S>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ran = tokio::time::timeout(Duration::from_secs(30), tokio::spawn(check(store)));
    match ran.await.expect("the check ended within 30 s") {
        Ok(()) => false,
        Err(e) => e.is_panic(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_double_without_faults_passes_the_shared_suite() {
    conformance::run_all(Double::new(Fault::None), Sharing::Shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_fault_fails_the_check_written_for_it() {
    let log = |s: Arc<Double>| async move { conformance::epoch_and_log(&*s).await };
    let long =
        |s: Arc<Double>| async move { conformance::long_lines_are_never_narrowed(&*s).await };
    let leases = |s: Arc<Double>| async move { conformance::leases(&*s).await };
    let expiry = |s: Arc<Double>| async move { conformance::lease_expiry(&*s).await };
    let race = |s: Arc<Double>| async move {
        conformance::one_lease_holder_among_many(s as Arc<dyn Store>).await
    };
    let cases: [(Fault, &str, bool); 8] = [
        (
            Fault::EpochStays,
            "epoch_and_log",
            fails(Double::new(Fault::EpochStays), log).await,
        ),
        (
            Fault::NewestFirst,
            "epoch_and_log",
            fails(Double::new(Fault::NewestFirst), log).await,
        ),
        (
            Fault::LogIgnoresEpoch,
            "epoch_and_log",
            fails(Double::new(Fault::LogIgnoresEpoch), log).await,
        ),
        (
            Fault::CutsLongLines,
            "long_lines_are_never_narrowed",
            fails(Double::new(Fault::CutsLongLines), long).await,
        ),
        (
            Fault::LeaseNotExclusive,
            "leases",
            fails(Double::new(Fault::LeaseNotExclusive), leases).await,
        ),
        (
            Fault::ReleaseByAnyone,
            "leases",
            fails(Double::new(Fault::ReleaseByAnyone), leases).await,
        ),
        (
            Fault::LeaseNeverExpires,
            "lease_expiry",
            fails(Double::new(Fault::LeaseNeverExpires), expiry).await,
        ),
        (
            Fault::LeaseRace,
            "one_lease_holder_among_many",
            fails(Double::new(Fault::LeaseRace), race).await,
        ),
    ];
    for (fault, check, failed) in cases {
        assert!(failed, "{check} passed a store with fault {fault:?}");
    }
    // Without a fault, the same checks pass.
    let sound = || Double::new(Fault::None);
    assert!(!fails(sound(), log).await, "epoch_and_log");
    assert!(!fails(sound(), long).await, "long_lines_are_never_narrowed");
    assert!(!fails(sound(), leases).await, "leases");
    assert!(!fails(sound(), expiry).await, "lease_expiry");
    assert!(!fails(sound(), race).await, "one_lease_holder_among_many");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_store_fails_the_shared_checks_and_a_shared_one_the_local_ones() {
    let memory = Arc::new(MemoryStore::new(16 << 20));
    assert!(
        fails(memory.clone(), |s| async move {
            conformance::epoch_and_log(&*s).await
        })
        .await,
        "epoch_and_log passed a store that keeps no log"
    );
    assert!(
        fails(
            memory.clone(),
            |s| async move { conformance::leases(&*s).await }
        )
        .await,
        "leases passed a store that grants every lease"
    );
    assert!(
        !fails(
            memory,
            |s| async move { conformance::local_defaults(&*s).await }
        )
        .await,
        "the memory store answers as the defaults do"
    );
    assert!(
        fails(Double::new(Fault::None), |s| async move {
            conformance::local_defaults(&*s).await
        })
        .await,
        "local_defaults passed a store whose epoch rises"
    );
    assert!(
        fails(Double::new(Fault::EpochStays), |s| async move {
            conformance::local_defaults(&*s).await
        })
        .await,
        "local_defaults passed a store that keeps a log and exclusive leases"
    );
}
