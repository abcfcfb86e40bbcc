//! Disk store for uip-cache (`store.type: disk`): entries that survive a
//! restart and outgrow memory.
//!
//! ```no_run
//! use std::sync::Arc;
//! use uip_cache_core::{CacheConfig, HttpCache};
//! use uip_cache_disk::DiskStore;
//!
//! let config = CacheConfig::from_yaml_str(
//!     "store:\n  type: disk\n  disk:\n    path: /var/cache/uip-cache\n    max_bytes: 20GB\n",
//! )?;
//! let store = DiskStore::from_config(&config); // never fails: see below
//! let cache = HttpCache::new(&config, Arc::new(store))?;
//! # let _ = cache;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Each entry is a body file in `path/bodies/` and a record in a
//! [fjall](https://docs.rs/fjall) database in `path/index/`: its expiry,
//! its body's length and CRC-32, its tags, path and query, and its place in
//! eviction order. The tag and path indexes purges go through and the
//! store's own figures (bytes, entries) are there too, and every change to
//! them is one batch, written to the journal before the call answers:
//!
//! - a restart, graceful or not (`kill -9`), keeps every entry whose write
//!   had answered, with its remaining freshness (expiry is wall-clock time),
//!   tags and path; opening replays the journal and reads no body and no
//!   folder listing;
//! - deletes and purges are synced to the disk (`fsync`) before they
//!   answer: an entry purged never comes back;
//! - a delete or purge takes effect after every write begun (first polled)
//!   before it, as commands sent to Redis run in order: an entry whose
//!   write began before a purge does not outlive it;
//! - a body is checked against its record's length each time it is read
//!   from disk, and against its checksum on its first read after the store
//!   opened: a torn, cut or changed file is a miss, counted
//!   ([`DiskStore::corrupt_entries`]), logged and removed;
//! - a hit whose body file's pages are in memory is read on the caller's
//!   thread (`preadv2` with `RWF_NOWAIT`), other reads on the blocking
//!   pool; a body of at least the zero-copy minimum already checked is
//!   mapped from its file ([`uip_cache_core::zerocopy::map_file`]), so the
//!   server sends it with `sendfile` from that file;
//! - `max_bytes` bounds the bodies (by the 4 KiB blocks they take), records
//!   and index members; the oldest entries leave first, and an entry read
//!   from disk while in the older half of that order moves to the young end
//!   (least recently used, roughly, with no write for most reads and no
//!   listing of the folder);
//! - hot entries are also kept in process, in a
//!   [`MemoryStore`] of `memory_bytes`
//!   written under the same lock as the disk, so it never holds what the
//!   disk no longer does;
//! - body files no record names (left by a crash between a body and its
//!   record) are removed by a sweep that runs in the background after the
//!   start.
//!
//! Failures fail open: a folder that cannot be opened (missing permission,
//! read-only, not a folder) leaves the store running on the memory tier
//! alone; a write or read that fails (a full disk) is an error the cache
//! turns into a miss or a write not kept. Either way health is `degraded`
//! with the reason, and one log line says what failed; health is
//! `connected` again after the next write that succeeds.
#![forbid(unsafe_code)]

mod disk;
mod record;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use uip_cache_core::store::{
    Coordination, EntryWriter, HealthStatus, MemoryStore, MemoryUsage, PutOptions, ReadBack,
    Rewrite, Storage, StoreError, StoreErrorKind, StoreFuture, StoreHealth, StoreStatus,
};
use uip_cache_core::{zerocopy, CacheConfig, UrlPattern};

use disk::{Disk, Read};

/// Entries on disk, with a memory tier in front: see the [crate] docs.
#[derive(Clone)]
pub struct DiskStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` when the folder could not be opened: the memory tier alone.
    disk: Option<Disk>,
    memory: MemoryStore,
    /// Whether the memory tier holds anything (`memory_bytes` > 0).
    tiered: bool,
    /// The largest entry offered to the memory tier (see [`TIER_SHARE`]).
    tier_max: usize,
    path: PathBuf,
    /// What failed last, until a write succeeds.
    problem: Mutex<Option<String>>,
    /// The sweep of orphan body files, and what stops it.
    sweep: Mutex<Option<std::thread::JoinHandle<u64>>>,
    stop: Arc<AtomicBool>,
    /// Writes begun and not done, which later deletes and purges wait for.
    writes: Arc<Writes>,
}

/// What a read on the caller's thread found.
enum Nowait {
    /// The answer.
    Done(Option<Bytes>),
    /// A hit, whose bookkeeping ([`Inner::touch`]) is left to do.
    Touch(Bytes, record::Record),
    /// Read it on the blocking pool.
    Blocking,
}

/// The writes in progress, numbered in the order they began (were first
/// polled). A delete or purge waits for those begun before it: a write
/// goes to the blocking pool and writes its body before it takes the
/// store's lock, so a purge begun after it could otherwise commit first and
/// the entry would outlive the purge (a purge after an unsafe request would
/// leave the target of that request cached). Redis gives the same order: a
/// command sent first is run first.
#[derive(Debug, Default)]
struct Writes {
    /// The next number, and the numbers of the writes in progress.
    state: Mutex<(u64, BTreeSet<u64>)>,
    done: tokio::sync::Notify,
}

/// A write in progress; it is done when this is dropped.
struct Begun {
    writes: Arc<Writes>,
    n: u64,
}

impl Writes {
    fn state(&self) -> std::sync::MutexGuard<'_, (u64, BTreeSet<u64>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a write beginning.
    fn begin(self: &Arc<Self>) -> Begun {
        let mut state = self.state();
        let n = state.0;
        state.0 += 1;
        state.1.insert(n);
        Begun {
            writes: self.clone(),
            n,
        }
    }

    /// The number the next write will take: writes below it have begun.
    fn begun(&self) -> u64 {
        self.state().0
    }

    /// Waits until no write numbered below `upto` is in progress. A write
    /// in progress runs on the blocking pool (or has run, if there is no
    /// runtime) and never waits for a delete or a purge, so this ends; it
    /// waits here, not on the blocking pool, whose threads the writes need.
    async fn wait_below(&self, upto: u64) {
        loop {
            let done = self.done.notified();
            let mut done = std::pin::pin!(done);
            // Registered before the check: a write ending after it wakes us.
            done.as_mut().enable();
            if self.state().1.first().is_none_or(|&n| n >= upto) {
                return;
            }
            done.await;
        }
    }
}

impl Drop for Begun {
    fn drop(&mut self) {
        self.writes.state().1.remove(&self.n);
        self.writes.done.notify_waiters();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The sweep holds the database open: it ends before the store does.
        self.stop.store(true, Ordering::Relaxed);
        let sweep = self.sweep.get_mut().map(Option::take);
        if let Ok(Some(sweep)) = sweep {
            let _ = sweep.join();
        }
    }
}

impl fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskStore")
            .field("path", &self.inner.path)
            .field("open", &self.inner.disk.is_some())
            .finish()
    }
}

impl DiskStore {
    /// The store in the folder `path` (created if missing), holding at most
    /// `max_bytes` on disk and `memory_bytes` in its memory tier. Never
    /// fails: a folder that cannot be used leaves the memory tier alone,
    /// with health `degraded` and an error logged.
    pub fn open(path: impl AsRef<Path>, max_bytes: u64, memory_bytes: u64) -> DiskStore {
        let path = path.as_ref().to_path_buf();
        let started = Instant::now();
        let (disk, problem) = match Disk::open(&path, max_bytes) {
            Ok(d) => {
                let state = d.state();
                tracing::info!(
                    path = %path.display(),
                    entries = state.count,
                    bytes = state.used,
                    ms = started.elapsed().as_millis() as u64,
                    "disk store opened"
                );
                (Some(d), None)
            }
            Err(e) => {
                let problem = format!("cannot open {}: {e}", path.display());
                tracing::error!(
                    "disk store {problem}; serving from the memory tier alone, health degraded"
                );
                (None, Some(problem))
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let sweep = disk.as_ref().map(|d| {
            let sweeper = d.sweeper();
            let stop = stop.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let removed = sweeper.run(&stop);
                if removed > 0 {
                    tracing::info!(path = %path.display(), removed, "disk store removed orphan body files");
                }
                removed
            })
        });
        DiskStore {
            inner: Arc::new(Inner {
                disk,
                memory: MemoryStore::new(memory_bytes),
                tiered: memory_bytes > 0,
                tier_max: usize::try_from(memory_bytes / TIER_SHARE).unwrap_or(usize::MAX),
                path,
                problem: Mutex::new(problem),
                sweep: Mutex::new(sweep),
                stop,
                writes: Arc::default(),
            }),
        }
    }

    /// Waits for the sweep of orphan body files that the start began;
    /// how many it removed (for tests).
    #[doc(hidden)]
    pub fn wait_for_sweep(&self) -> u64 {
        let sweep = self.inner.take_sweep();
        sweep.and_then(|s| s.join().ok()).unwrap_or(0)
    }

    /// The store `store.disk` of `config` describes (see [`DiskStore::open`]).
    pub fn from_config(config: &CacheConfig) -> DiskStore {
        let disk = config.store.disk.clone().unwrap_or_default();
        DiskStore::open(
            disk.path.unwrap_or_default(),
            disk.max_bytes.bytes(),
            disk.memory_bytes.bytes(),
        )
    }

    /// Entries found torn or corrupt (and removed) since start.
    pub fn corrupt_entries(&self) -> u64 {
        self.inner
            .disk
            .as_ref()
            .map_or(0, |d| d.corrupt.load(Ordering::Relaxed))
    }

    /// The body file of `key`'s entry, if it has one (for tests that
    /// damage it).
    #[doc(hidden)]
    pub fn body_file(&self, key: &str) -> Option<PathBuf> {
        self.inner.disk.as_ref()?.body_file(key)
    }

    /// Drops the memory tier's entries (for tests that read from disk).
    #[doc(hidden)]
    pub fn clear_memory(&self) {
        self.inner.memory.clear();
    }

    /// Whether the memory tier holds `key` (for tests).
    #[doc(hidden)]
    pub fn in_memory_tier(&self, key: &str) -> bool {
        self.inner.memory.get_now(key).is_some()
    }
}

impl Inner {
    fn take_sweep(&self) -> Option<std::thread::JoinHandle<u64>> {
        self.sweep.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn problem(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.problem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a failed disk operation: logged when it starts a run of them.
    fn failed(&self, what: &str, e: &disk::Error) -> StoreError {
        let text = format!("{what} failed in {}: {e}", self.path.display());
        let mut problem = self.problem();
        // A line when a run of failures starts, a line a second at most: on
        // a nearly full disk, small writes pass and large ones fail, and a
        // client choosing its URLs would start a run with each request.
        static FAILING: uip_cache_core::quiet::Quiet = uip_cache_core::quiet::Quiet::new();
        if problem.is_none() {
            if let Some(left_out) = FAILING.admit() {
                tracing::error!(
                    left_out,
                    "disk store {text}; failing open (misses), health degraded"
                );
            }
        }
        *problem = Some(text.clone());
        StoreError::new(StoreErrorKind::Backend, text)
    }

    fn succeeded(&self) {
        if self.disk.is_none() {
            return;
        }
        let mut problem = self.problem();
        static AGAIN: uip_cache_core::quiet::Quiet = uip_cache_core::quiet::Quiet::new();
        if problem.take().is_some() {
            if let Some(left_out) = AGAIN.admit() {
                tracing::info!(path = %self.path.display(), left_out, "disk store writes again");
            }
        }
    }

    /// Writes `value` to the memory tier (its futures are ready at once).
    /// With a disk, see [`for_the_tier`].
    fn remember(&self, key: &str, value: Bytes, options: PutOptions<'_>) {
        if !self.tiered {
            return;
        }
        let _ = self.memory.put(key, value, options).now_or_never();
    }

    fn forget(&self, key: &str) {
        let _ = self.memory.delete(key).now_or_never();
    }

    fn forget_tags(&self, tags: &[String]) {
        let _ = self.memory.invalidate_tags(tags).now_or_never();
    }

    fn forget_pattern(&self, pattern: &UrlPattern) {
        let _ = self.memory.invalidate_pattern(pattern).now_or_never();
    }

    fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let Some(disk) = &self.disk else {
            return Ok(None);
        };
        match disk.get(key) {
            Ok(Read::Hit(value, record)) => {
                self.touch(disk, key, &value, &record);
                Ok(Some(value))
            }
            // Not given by `Disk::get`, which reads every record whole.
            Ok(Read::Young(value)) => Ok(Some(value)),
            Ok(Read::Miss | Read::Blocking) => Ok(None),
            Ok(Read::Corrupt) => {
                tracing::warn!(
                    path = %self.path.display(),
                    key,
                    "disk store entry torn or corrupt: removed, answered as a miss"
                );
                Ok(None)
            }
            Err(e) => Err(self.failed("a read", &e)),
        }
    }

    /// After a hit read from disk: moves the entry to the young end of the
    /// eviction order if it is in the older half, and puts it in the
    /// memory tier (under the store's lock).
    fn touch(&self, disk: &Disk, key: &str, value: &Bytes, record: &record::Record) {
        let ttl = Duration::from_millis(record.expires_ms.saturating_sub(disk::now_ms()));
        let touched = disk.touch(key, record.file, || {
            let options = PutOptions::new(ttl, &record.path)
                .tags(&record.tags)
                .query(record.query.as_deref());
            if self.for_the_tier(value) {
                self.remember(key, value.clone(), options);
            }
        });
        if let Err(e) = touched {
            // The body read is good; only the bookkeeping failed.
            let _ = self.failed("a read's update", &e);
        }
    }

    /// A read on the caller's thread, without blocking on the disk (see
    /// [`Disk::get_nowait`]).
    fn get_nowait(&self, key: &str) -> Nowait {
        let Some(disk) = &self.disk else {
            return Nowait::Done(None);
        };
        // Most hits have nothing more to do: the entry is young, and there
        // is no memory tier or it does not take the body (moving a hit to
        // the tier, or in the order, is work for the blocking pool).
        match disk.get_nowait(key, |body| self.for_the_tier(body)) {
            Ok(Read::Young(value)) => Nowait::Done(Some(value)),
            Ok(Read::Hit(value, record)) => Nowait::Touch(value, record),
            Ok(Read::Miss) => Nowait::Done(None),
            // Errors are found again, and reported, on the blocking pool.
            Ok(Read::Corrupt | Read::Blocking) | Err(_) => Nowait::Blocking,
        }
    }

    fn put(&self, key: &str, value: Bytes, options: PutOptions<'_>) -> Result<(), StoreError> {
        let Some(disk) = &self.disk else {
            self.remember(key, value, options);
            return Ok(());
        };
        let written = disk.put(key, &value, &options, |kept| {
            if kept && self.for_the_tier(&value) {
                self.remember(key, value.clone(), options);
            } else {
                self.forget(key);
            }
        });
        match written {
            Ok(()) => {
                self.succeeded();
                Ok(())
            }
            Err(e) => {
                // What the memory tier holds of the key may be older than
                // the write that failed.
                self.forget(key);
                Err(self.failed("a write", &e))
            }
        }
    }
}

/// The memory tier is offered entries of at most this share of its size.
/// A larger one would push out most of what it holds, and one it cannot
/// hold at all would be offered again on every hit, each time through the
/// blocking pool and a copy.
const TIER_SHARE: u64 = 8;

impl Inner {
    /// Whether a body read from or written to the disk goes to the memory
    /// tier: there is one, the body is at most its share of it, and
    /// [`for_the_tier`] takes it.
    fn for_the_tier(&self, value: &Bytes) -> bool {
        self.tiered && value.len() <= self.tier_max && for_the_tier(value)
    }
}

/// Whether a body read from or written to the disk may go to the memory
/// tier. Never the mapping of a body file: a disk hit checks a mapped
/// file's length first (a file cut by another process would raise
/// `SIGBUS` when read past its end), a tier hit would not. Nor a body the
/// server sends from its file (32 KiB and more, with zero-copy on and its
/// budget not used up), which the disk serves as fast as the tier would:
/// a sealed copy (what the tier makes of bytes in ordinary memory) would
/// hold its bytes twice, beside the page cache, and the kernel hands a
/// memory file's pages to a socket more slowly than a disk file's (64 KB
/// hits from such a tier ran at 0.96x nginx, from the disk alone at
/// 1.03x).
fn for_the_tier(value: &Bytes) -> bool {
    zerocopy::find(value).is_none() && !zerocopy::maps(value.len())
}

/// Runs `f` on the blocking pool (file and database work), or here when
/// there is no runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| StoreError::new(StoreErrorKind::Backend, e.to_string()))?,
        Err(_) => f(),
    }
}

/// Runs `f` on the blocking pool once the writes begun before this was
/// first polled are done (a delete or a purge: see [`Writes`]).
async fn after_writes<T: Send + 'static>(
    inner: Arc<Inner>,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let upto = inner.writes.begun();
    inner.writes.wait_below(upto).await;
    blocking(f).await
}

/// Runs `f`, file and database work that borrows (so cannot go to the
/// blocking pool), without stalling the runtime: on a multi-thread runtime
/// the worker hands its other tasks to another thread while `f` runs; with
/// a current-thread runtime, or none, `f` runs here.
fn blocking_in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A write's options, owned (to cross to the blocking pool).
struct Owned {
    ttl: Duration,
    tags: Vec<String>,
    path: String,
    query: Option<String>,
}

impl Owned {
    fn new(o: &PutOptions<'_>) -> Owned {
        Owned {
            ttl: o.ttl,
            tags: o.tags.to_vec(),
            path: o.path.to_owned(),
            query: o.query.map(str::to_owned),
        }
    }

    fn options(&self) -> PutOptions<'_> {
        PutOptions::new(self.ttl, &self.path)
            .tags(&self.tags)
            .query(self.query.as_deref())
    }
}

/// Body bytes gathered before one write to the file: fewer, larger writes
/// on the blocking pool, and at most this much held per streamed entry.
const STREAM_WRITE: usize = 256 << 10;

/// A write of an entry as its body streams in ([`Storage::begin_put`]):
/// its body goes to a new file as it comes (on the blocking pool, one
/// write at a time, so the caller is held to the disk's pace), and the
/// record is committed under the store's lock as [`Storage::put`] commits
/// it. Dropped before its commit, it removes its file; a crash leaves a
/// file no record names, which the sweep after the next start removes.
struct DiskWriter {
    inner: Arc<Inner>,
    key: String,
    options: Owned,
    head_len: u64,
    /// Bytes not written to the file yet (less than [`STREAM_WRITE`]).
    pending: bytes::BytesMut,
    /// The file, once the first write has made it; `None` after a failure.
    stream: Option<disk::Stream>,
    /// The file's body read back, once made: for a client behind the write.
    reader: Option<Arc<disk::WrittenBody>>,
    /// Chunk bytes in the file (written, less those pending or in flight).
    in_file: u64,
    written: u64,
    failed: bool,
}

impl DiskWriter {
    /// Writes `data` to the file (making it first), on the blocking pool.
    async fn flush(&mut self, data: Bytes) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        let stream = self.stream.take();
        let head_len = self.head_len;
        let len = data.len() as u64;
        let written = blocking(move || {
            let Some(disk) = &inner.disk else {
                return Err(StoreError::new(StoreErrorKind::Backend, "no disk"));
            };
            let (mut stream, reader) = match stream {
                Some(s) => (s, None),
                None => {
                    let s = disk
                        .begin_stream(head_len)
                        .map_err(|e| inner.failed("a streamed write", &e))?;
                    // Without a reader the write goes on; a client behind
                    // it is then waited for instead.
                    let reader = s.reader().ok();
                    (s, reader)
                }
            };
            disk.write_stream(&mut stream, &data)
                .map_err(|e| inner.failed("a streamed write", &e))?;
            Ok((stream, reader))
        })
        .await;
        match written {
            Ok((stream, reader)) => {
                self.stream = Some(stream);
                self.in_file += len;
                if let Some(r) = reader {
                    self.reader = Some(Arc::new(r));
                }
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

impl EntryWriter for DiskWriter {
    fn write(&mut self, chunk: Bytes) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if self.failed {
                return Err(StoreError::new(
                    StoreErrorKind::Backend,
                    "an earlier write failed",
                ));
            }
            self.written += chunk.len() as u64;
            let data = if self.pending.is_empty() && chunk.len() >= STREAM_WRITE {
                chunk
            } else {
                self.pending.extend_from_slice(&chunk);
                if self.pending.len() < STREAM_WRITE {
                    return Ok(());
                }
                self.pending.split().freeze()
            };
            self.flush(data).await
        })
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn read_back(&self) -> Option<(u64, Arc<dyn ReadBack>)> {
        if self.failed {
            return None;
        }
        let reader = self.reader.clone()?;
        Some((self.in_file, reader))
    }

    fn commit(mut self: Box<Self>, head: Bytes) -> StoreFuture<'static, ()> {
        Box::pin(async move {
            if self.failed {
                return Err(StoreError::new(
                    StoreErrorKind::Backend,
                    "an earlier write failed",
                ));
            }
            if self.stream.is_none() {
                // A small body (of unknown length until now): one whole
                // write, as `put` makes it.
                if head.len() as u64 != self.head_len {
                    return Err(StoreError::new(
                        StoreErrorKind::Backend,
                        "a streamed entry's head is not of the length announced",
                    ));
                }
                let mut value = bytes::BytesMut::with_capacity(head.len() + self.pending.len());
                value.extend_from_slice(&head);
                value.extend_from_slice(&self.pending);
                let DiskWriter {
                    inner,
                    key,
                    options,
                    ..
                } = *self;
                let begun = inner.writes.begin();
                return blocking(move || {
                    let _begun = begun;
                    inner.put(&key, value.freeze(), options.options())
                })
                .await;
            }
            let rest = self.pending.split().freeze();
            if !rest.is_empty() {
                self.flush(rest).await?;
            }
            let DiskWriter {
                inner,
                key,
                options,
                stream,
                ..
            } = *self;
            // Begun when first polled, as a whole write.
            let begun = inner.writes.begin();
            blocking(move || {
                let _begun = begun;
                let (Some(disk), Some(stream)) = (&inner.disk, stream) else {
                    return Err(StoreError::new(StoreErrorKind::Backend, "no disk"));
                };
                let committed = disk.commit_stream(&key, stream, &head, &options.options(), |_| {
                    // A large body is not kept in the memory tier; what it
                    // held of the key is older.
                    inner.forget(&key);
                });
                match committed {
                    Ok(()) => {
                        inner.succeeded();
                        Ok(())
                    }
                    Err(e) => {
                        inner.forget(&key);
                        Err(inner.failed("a streamed write", &e))
                    }
                }
            })
            .await
        })
    }
}

impl fmt::Debug for DiskWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskWriter")
            .field("key", &self.key)
            .field("written", &self.written)
            .finish()
    }
}

impl Storage for DiskStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        if let Some(v) = self.inner.memory.get_now(key) {
            return Box::pin(async move { Ok(Some(v)) });
        }
        let inner = self.inner.clone();
        let key = key.to_owned();
        match self.inner.get_nowait(&key) {
            Nowait::Done(read) => Box::pin(async move { Ok(read) }),
            Nowait::Touch(value, record) => Box::pin(blocking(move || {
                if let Some(disk) = &inner.disk {
                    inner.touch(disk, &key, &value, &record);
                }
                Ok(Some(value))
            })),
            Nowait::Blocking => Box::pin(blocking(move || inner.get(&key))),
        }
    }

    /// The memory tier's entry, else a young entry whose body the page
    /// cache holds (read without blocking, as [`Storage::get`] reads it
    /// first): what a hit needs nothing more for. An entry that is old in
    /// the eviction order, or that the memory tier would take, is left to
    /// `get`, which moves it.
    fn get_now(&self, key: &str) -> Option<Bytes> {
        if let Some(v) = self.inner.memory.get_now(key) {
            return Some(v);
        }
        match self.inner.get_nowait(key) {
            Nowait::Done(read) => read,
            Nowait::Touch(..) | Nowait::Blocking => None,
        }
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions<'a>,
    ) -> StoreFuture<'a, ()> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        let owned = Owned::new(&options);
        Box::pin(async move {
            // Begun when first polled, as a command is sent to Redis.
            let begun = inner.writes.begin();
            blocking(move || {
                let _begun = begun;
                inner.put(&key, value, owned.options())
            })
            .await
        })
    }

    fn begin_put(
        &self,
        key: &str,
        head_len: u64,
        options: PutOptions<'_>,
    ) -> Option<Box<dyn EntryWriter>> {
        // Without a disk, the memory tier takes whole values.
        self.inner.disk.as_ref()?;
        Some(Box::new(DiskWriter {
            inner: self.inner.clone(),
            key: key.to_owned(),
            options: Owned::new(&options),
            head_len,
            pending: bytes::BytesMut::new(),
            stream: None,
            reader: None,
            in_file: 0,
            written: 0,
            failed: false,
        }))
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        let inner = self.inner.clone();
        let key = key.to_owned();
        Box::pin(after_writes(inner.clone(), move || {
            let Some(disk) = &inner.disk else {
                return inner
                    .memory
                    .delete(&key)
                    .now_or_never()
                    .unwrap_or(Ok(false));
            };
            disk.delete(&key, || inner.forget(&key))
                .map_err(|e| inner.failed("a delete", &e))
        }))
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64> {
        let inner = self.inner.clone();
        let tags = tags.to_vec();
        Box::pin(after_writes(inner.clone(), move || {
            let Some(disk) = &inner.disk else {
                return inner
                    .memory
                    .invalidate_tags(&tags)
                    .now_or_never()
                    .unwrap_or(Ok(0));
            };
            let n = disk.invalidate_tags(&tags, None, |_| inner.forget_tags(&tags));
            inner.forget_tags(&tags);
            n.map_err(|e| inner.failed("a purge", &e))
        }))
    }

    fn invalidate_pattern<'a>(&'a self, pattern: &'a UrlPattern) -> StoreFuture<'a, u64> {
        let inner = self.inner.clone();
        let pattern = pattern.clone();
        Box::pin(after_writes(inner.clone(), move || {
            let Some(disk) = &inner.disk else {
                return inner
                    .memory
                    .invalidate_pattern(&pattern)
                    .now_or_never()
                    .unwrap_or(Ok(0));
            };
            let n = disk.invalidate_pattern(&pattern, None, |_| inner.forget_pattern(&pattern));
            inner.forget_pattern(&pattern);
            n.map_err(|e| inner.failed("a purge", &e))
        }))
    }

    fn soft_invalidate_tags<'a>(
        &'a self,
        tags: &'a [String],
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        // The rewrite borrows, so it cannot go to the blocking pool: it
        // runs when polled, in place (see `blocking_in_place`).
        let inner = &self.inner;
        let Some(disk) = &inner.disk else {
            return inner.memory.soft_invalidate_tags(tags, rewrite);
        };
        Box::pin(async move {
            let upto = inner.writes.begun();
            inner.writes.wait_below(upto).await;
            blocking_in_place(|| {
                disk.invalidate_tags(tags, Some(rewrite), |_| inner.forget_tags(tags))
                    .map(Some)
                    .map_err(|e| inner.failed("a soft purge", &e))
            })
        })
    }

    fn soft_invalidate_pattern<'a>(
        &'a self,
        pattern: &'a UrlPattern,
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let inner = &self.inner;
        let Some(disk) = &inner.disk else {
            return inner.memory.soft_invalidate_pattern(pattern, rewrite);
        };
        Box::pin(async move {
            let upto = inner.writes.begun();
            inner.writes.wait_below(upto).await;
            blocking_in_place(|| {
                disk.invalidate_pattern(pattern, Some(rewrite), |_| inner.forget_pattern(pattern))
                    .map(Some)
                    .map_err(|e| inner.failed("a soft purge", &e))
            })
        })
    }
}

/// One process alone: the cache's own log and locks cover it.
impl Coordination for DiskStore {}

impl StoreStatus for DiskStore {
    fn keys_count(&self) -> StoreFuture<'_, u64> {
        let n = match &self.inner.disk {
            // Read without the lock: a long purge holding it does not
            // hold the figures.
            Some(d) => Ok(d.count()),
            None => return self.inner.memory.keys_count(),
        };
        Box::pin(async move { n })
    }

    fn memory(&self) -> StoreFuture<'_, MemoryUsage> {
        let usage = match &self.inner.disk {
            Some(d) => MemoryUsage::new(
                d.used(),
                Some(d.max_bytes()),
                d.evictions.load(Ordering::Relaxed),
            )
            .with_expirations(d.expirations.load(Ordering::Relaxed)),
            None => return self.inner.memory.memory(),
        };
        Box::pin(async move { Ok(usage) })
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        let health = match self.inner.problem().clone() {
            None => StoreHealth::new(HealthStatus::Connected, "disk", None),
            Some(p) => StoreHealth::new(HealthStatus::Degraded, "disk", Some(p)),
        };
        Box::pin(async move { Ok(health) })
    }
}
