//! The entries on disk: a fjall database holding each entry's record, the
//! tag, path and eviction-order indexes and the store's state, and a folder
//! of body files. Every change to records, indexes and state is one atomic
//! batch, written to the journal before it answers (so a process killed
//! right after keeps it); deletes and purges are also synced to the disk.
//! Body files are written before the record that names them, and removed
//! after the record that named them is gone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use uip_cache_core::pattern::PathSelector;
use uip_cache_core::store::{PutOptions, ReadBack, Rewrite};
use uip_cache_core::{zerocopy, UrlPattern};

use crate::record::{
    order_member, path_member, read_order_member, set_member_state, tag_member, tag_prefix, Fixed,
    Place, Record, State,
};

/// The key of the state in the `meta` keyspace (written by the batches
/// that add no member to the eviction order; see [`State`]).
const STATE: &[u8] = b"state";
/// Body files are charged by the 4 KiB blocks they take.
const BLOCK: u64 = 4096;
/// What an entry costs besides its body and record: its index members and
/// the file's inode, roughly.
const PER_ENTRY: u64 = 256;

/// The longest key, path or tag an entry may have: index keys hold a
/// key with a path or a tag, and fjall takes keys of at most 64 KiB. An
/// entry past it is not kept (a client's long URL must not fail writes).
const MAX_NAME: usize = 16 << 10;

/// How many body files the store remembers having checked since it
/// opened (one `u64` each, 512 KiB): a file is remembered in the slot its
/// number hashes to, so a file whose slot was taken since is checked again
/// on its next read (more checks, never fewer).
const VERIFIED_SLOTS: usize = 1 << 16;

/// How many body files are kept mapped between hits (each holds a
/// descriptor and a mapping from the zero-copy budget; see `Mapped`).
const MAPPED_MAX: usize = 1024;

/// The largest body read on the caller's thread (when its pages are in
/// memory): larger ones are read on the blocking pool, unless mapped.
const INLINE_MAX: u64 = 1 << 20;

/// Bodies smaller than this (those never mapped) keep their file open
/// once read, at most `KEPT_OPEN_MAX` of them: a hit then costs one
/// positional read instead of an open, a stat, a read and a close.
const KEPT_OPEN_BELOW: u64 = 32 * 1024;

/// Small body files kept open at most: a quarter of the usual soft limit
/// of descriptors (1024), which a program that embeds the store may not
/// raise.
const KEPT_OPEN_MAX: usize = 256;

/// The largest body a hit reads whole into memory when it cannot be mapped
/// (zero-copy off, as in a program that embeds the store without the
/// server, or its budget used up): larger ones are a miss, so that
/// concurrent hits of a large entry cannot each hold it in memory.
const UNMAPPED_MAX: u64 = 64 << 20;

/// Why a disk operation failed.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a read from disk found.
pub(crate) enum Read {
    /// The body, with the record it was read by.
    Hit(Bytes, Record),
    /// The body of an entry young in the eviction order (see
    /// [`Disk::get_nowait`]).
    Young(Bytes),
    /// No such entry (or expired).
    Miss,
    /// The body file did not match its record (torn, cut, changed): the
    /// entry was removed.
    Corrupt,
    /// Not read without blocking (pages not in memory, a body not checked
    /// yet and large, an entry to remove): read it on the blocking pool.
    Blocking,
}

/// What reading a body file found.
enum Body {
    /// The body, checked.
    Good(Bytes),
    /// Not the record's length, or (on its first read) not its checksum.
    Bad,
    /// Its pages are not all in memory (reads that must not block).
    WouldBlock,
    /// Whole and checked, but too large to read into memory and not
    /// mapped ([`UNMAPPED_MAX`]): a miss, the entry kept.
    Unmapped,
}

/// The keyspaces, as a batch names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Space {
    Entries,
    Tags,
    Paths,
    Order,
    Meta,
}

/// Changes to be committed together. The last change to a key wins: a
/// fjall batch gives all its changes one sequence number, so a key removed
/// and written again in one batch must be written once, not both. Beside
/// them, the oldest order number an eviction in the batch left in place
/// (so that the commit need not read the order again to know it).
#[derive(Default)]
struct WriteBatch(BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>>, Option<u64>);

impl WriteBatch {
    fn insert(&mut self, space: Space, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.0.insert(
            (space, key.as_ref().to_vec()),
            Some(value.as_ref().to_vec()),
        );
    }

    fn remove(&mut self, space: Space, key: impl AsRef<[u8]>) {
        self.0.insert((space, key.as_ref().to_vec()), None);
    }

    /// What the batch does to the eviction order whose oldest number is
    /// `oldest` (0: not known, read again with any change to the order).
    fn reorder(&self, oldest: u64) -> Reorder {
        let mut r = Reorder {
            removes_oldest: false,
            first_added: u64::MAX,
            left: self.1,
        };
        for ((space, key), value) in &self.0 {
            if *space != Space::Order {
                continue;
            }
            r.removes_oldest |= oldest == 0;
            let Ok(seq) = <[u8; 8]>::try_from(key.as_slice()).map(u64::from_be_bytes) else {
                r.removes_oldest = true;
                r.left = None;
                continue;
            };
            match value {
                Some(_) => r.first_added = r.first_added.min(seq),
                None => {
                    r.removes_oldest |= seq == oldest;
                    if r.left == Some(seq) {
                        r.left = None;
                    }
                }
            }
        }
        r
    }
}

/// What a batch does to the eviction order ([`WriteBatch::reorder`]).
struct Reorder {
    /// It removes the oldest member (or one whose number cannot be read).
    removes_oldest: bool,
    /// The least number it adds (`u64::MAX`: none).
    first_added: u64,
    /// The first member an eviction in it left in place, if the batch
    /// keeps it.
    left: Option<u64>,
}

/// The disk part of a disk store.
pub(crate) struct Disk {
    db: Database,
    entries: Keyspace,
    tags: Keyspace,
    paths: Keyspace,
    order: Keyspace,
    meta: Keyspace,
    bodies: PathBuf,
    max_bytes: u64,
    /// The state; every batch is built and committed under this lock.
    state: Mutex<State>,
    /// File and order numbers handed out (at least `state.next`).
    next: AtomicU64,
    /// Commits made (the last state's `commit`).
    commits: AtomicU64,
    /// The order number of the least recently used entry (`u64::MAX`: no
    /// entry, or unknown), kept by every commit that changes the order (a
    /// new entry is the youngest; the index is read again only when the
    /// oldest goes): a hit's [`Disk::is_old`] asks it without reading the
    /// index.
    oldest: AtomicU64,
    /// Commits that removed the oldest entry (see [`RECHECK_OLDEST`]).
    reordered: AtomicU64,
    /// `state.used` and `state.count`, stored beside the lock each time the
    /// state changes: the store's figures are read without waiting for a
    /// long purge or eviction that holds the lock.
    used: AtomicU64,
    count: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) corrupt: AtomicU64,
    /// Body files checked against their checksum since the store opened,
    /// by number plus one (0: none), in the slot their number hashes to.
    verified: Box<[AtomicU64]>,
    /// Body files mapped by earlier hits.
    mapped: Mutex<Held<Bytes>>,
    /// Small body files read by earlier hits, kept open.
    open: Mutex<Held<Arc<fs::File>>>,
    /// Bytes in body files being written as they stream in (not counted
    /// in `used` until committed): at most `max_bytes` together.
    streaming: std::sync::Arc<AtomicU64>,
}

/// Body files kept between hits, by number, at most `max` (the first
/// kept leaves first): mapped (mapping and unmapping a file for each
/// hit costs more than the rest of the read), or small ones open (opening
/// and closing one for each hit costs more than reading it). A file leaves
/// when the store removes it, so a removed file's blocks are not held past
/// the responses that are sending it. Body files are never rewritten: a
/// number always names the same bytes.
struct Held<T> {
    files: std::collections::HashMap<u64, T>,
    order: std::collections::VecDeque<u64>,
    max: usize,
}

impl<T> Held<T> {
    fn new(max: usize) -> Self {
        Held {
            files: std::collections::HashMap::new(),
            order: std::collections::VecDeque::new(),
            max,
        }
    }

    fn insert(&mut self, file: u64, body: T) {
        if self.files.insert(file, body).is_some() {
            return;
        }
        self.order.push_back(file);
        while self.files.len() > self.max {
            match self.order.pop_front() {
                Some(f) => {
                    self.files.remove(&f);
                }
                None => break,
            }
        }
        if self.order.len() > 2 * self.max {
            // Numbers of files removed meanwhile.
            let files = &self.files;
            self.order.retain(|f| files.contains_key(f));
        }
    }
}

/// A body file being written as its body streams in ([`Disk::begin_stream`]):
/// removed when dropped before [`Disk::commit_stream`] took it.
pub(crate) struct Stream {
    file: fs::File,
    number: u64,
    path: PathBuf,
    head_len: u64,
    /// Body bytes written after the head's place.
    written: u64,
    /// The checksum of those bytes.
    crc: crc32fast::Hasher,
    /// When the write began: the entry's time to live counts from here.
    began_ms: u64,
    /// Whether a commit took the file (it removes it when not kept).
    taken: bool,
    /// The store's count of bytes being streamed, which holds this one's.
    streaming: std::sync::Arc<AtomicU64>,
}

impl Stream {
    /// A reader of the body bytes written so far, on a descriptor of its
    /// own: they stay readable after the file is committed, removed or
    /// evicted (body files are never written again in place past their
    /// head, nor reused).
    pub(crate) fn reader(&self) -> Result<WrittenBody, Error> {
        Ok(WrittenBody {
            file: self.file.try_clone()?,
            head_len: self.head_len,
        })
    }
}

/// The body of a [`Stream`], read back ([`Stream::reader`]).
#[derive(Debug)]
pub(crate) struct WrittenBody {
    file: fs::File,
    head_len: u64,
}

impl ReadBack for WrittenBody {
    /// Reads `len` body bytes from `offset` (after the head's place).
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        let at = self.head_len.saturating_add(offset);
        self.file.read_exact_at(&mut buf, at)?;
        Ok(Bytes::from(buf))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.streaming
            .fetch_sub(self.head_len + self.written, Ordering::Relaxed);
        if !self.taken {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Every this many commits that remove the oldest entry, the next oldest
/// is read from the start of the order (walking what was evicted before
/// it) rather than from where it was.
const RECHECK_OLDEST: u64 = 256;

/// The store's state: the later (by commit) of the one under `meta` and
/// the one the youngest member of the eviction order carries (see
/// [`State`]). Every batch writes one of the two, and a batch that adds a
/// member adds the youngest (order numbers are handed out under the
/// store's lock), so the later of the two is the last commit's.
///
/// A state that does not decode (under `meta`, or on a youngest member of
/// the current form) is an error: the store does not open rather than
/// hand out file numbers again. `next` is past the youngest order number
/// whatever the state says. Also whether `meta` holds a state of the
/// current version.
fn load_state(meta: &Keyspace, order: &Keyspace) -> Result<(State, bool), Error> {
    let unreadable = || "the store's state record is unreadable";
    let (kept, current) = match meta.get(STATE)? {
        Some(b) => (
            Some(State::decode(&b).map_err(|_| unreadable())?),
            State::is_current(&b),
        ),
        None => (None, false),
    };
    let (carried, youngest) = match order.last_key_value() {
        Some(g) => {
            let (seq, value) = g.into_inner()?;
            let member = read_order_member(&value);
            if member.current && member.state.is_none() {
                return Err(unreadable().into());
            }
            let seq = <[u8; 8]>::try_from(&seq[..]).map_or(0, u64::from_be_bytes);
            (member.state, seq)
        }
        None => (None, 0),
    };
    let mut state = match (kept, carried) {
        (Some(k), Some(c)) if c.commit > k.commit => c,
        (Some(k), _) => k,
        (None, Some(c)) => c,
        (None, None) => State::default(),
    };
    state.next = state.next.max(youngest.saturating_add(1));
    Ok((state, current))
}

/// The order number of the least recently used entry in `order` from
/// order number `from` on: `u64::MAX` when it has none; 0 (the start) when
/// it cannot be read, so that the order is then walked from its start, as
/// it was before the number was kept.
fn first_order(order: &Keyspace, from: u64) -> u64 {
    let from = if from == u64::MAX { 0 } else { from };
    let Some(first) = order.range(from.to_be_bytes()..).next() else {
        return u64::MAX;
    };
    match first.key() {
        Ok(k) if k.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&k);
            u64::from_be_bytes(a)
        }
        _ => 0,
    }
}

/// Milliseconds since the Unix epoch now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an entry under `key` with `record` is charged against `max_bytes`.
fn charge(key: &[u8], record: &Record) -> u64 {
    let body = record.len.div_ceil(BLOCK) * BLOCK;
    let names: u64 = record
        .tags
        .iter()
        .map(|t| (t.len() + key.len() + 4) as u64)
        .sum::<u64>()
        + (record.path.len() + key.len() + 1) as u64;
    body + record.encode().len() as u64 + key.len() as u64 * 2 + names + PER_ENTRY
}

/// What a soft purge makes of one entry's body.
enum Rewritten {
    /// A new body file, and the entry's new record: its `expires_ms`
    /// holds the new time to live (the expiry is set at the commit), its
    /// `seq` is not set yet.
    New(Record),
    /// The rewrite keeps the entry as it is.
    Kept,
    /// The body is unreadable or damaged: the entry goes.
    Damaged,
}

/// The body files `outcomes` made.
fn made_files(outcomes: impl IntoIterator<Item = (u64, Rewritten)>) -> Vec<u64> {
    outcomes
        .into_iter()
        .filter_map(|(_, o)| match o {
            Rewritten::New(r) => Some(r.file),
            _ => None,
        })
        .collect()
}

impl Record {
    /// The record of a body file written from `began_ms` on, before its
    /// place in eviction order (`seq`) is given.
    fn written(began_ms: u64, file: u64, len: u64, crc: u32, options: &PutOptions<'_>) -> Record {
        Record {
            expires_ms: began_ms.saturating_add(duration_ms(options.ttl)),
            seq: 0,
            file,
            len,
            crc,
            path: options.path.to_owned(),
            query: options.query.map(str::to_owned),
            tags: options.tags.to_vec(),
        }
    }
}

/// Whether a name of the entry is past what the index takes
/// ([`MAX_NAME`]): such an entry is not kept.
fn names_too_long(key: &str, options: &PutOptions<'_>) -> bool {
    key.len() > MAX_NAME
        || options.path.len() > MAX_NAME
        || options.tags.iter().any(|t| t.len() > MAX_NAME)
}

impl Disk {
    /// Opens (or creates) the store in `dir`: the database (replaying its
    /// journal) and the body folders. Reads no body and lists no folder.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Disk, Error> {
        if dir.as_os_str().is_empty() {
            return Err("no folder given (store.disk.path)".into());
        }
        let bodies = dir.join("bodies");
        for i in 0..256 {
            fs::create_dir_all(bodies.join(format!("{i:02x}")))?;
        }
        let db = Database::builder(dir.join("index"))
            // The journal is replayed on start: keep it short so that a
            // start stays quick whatever was written before it.
            .max_journaling_size(64 << 20)
            // Memory: a smaller block cache, and memtables of 8 MiB
            // (fjall's default lets each of the six keyspaces hold 64 MiB,
            // and more while they are flushed).
            .cache_size(16 << 20)
            .open()?;
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(8 << 20)
            })
        };
        let (entries, tags, paths, order, meta) = (
            ks("entries")?,
            ks("tags")?,
            ks("paths")?,
            ks("order")?,
            ks("meta")?,
        );
        let (state, marked) = load_state(&meta, &order)?;
        let oldest = AtomicU64::new(first_order(&order, 0));
        let disk = Disk {
            oldest,
            reordered: AtomicU64::new(1),
            next: AtomicU64::new(state.next),
            commits: AtomicU64::new(state.commit),
            used: AtomicU64::new(state.used),
            count: AtomicU64::new(state.count),
            db,
            entries,
            tags,
            paths,
            order,
            meta,
            bodies,
            max_bytes,
            state: Mutex::new(state),
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            verified: (0..VERIFIED_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            mapped: Mutex::new(Held::new(MAPPED_MAX)),
            open: Mutex::new(Held::new(KEPT_OPEN_MAX)),
            streaming: std::sync::Arc::default(),
        };
        // The index as this version writes it, marked so: the earlier
        // version refuses a state it cannot read (and runs without the
        // disk) rather than open a store whose file index is gone, which
        // its sweep would take for bodies no record names.
        if !marked {
            let mut guard = lock(&disk.state);
            let mut state = *guard;
            disk.commit(WriteBatch::default(), &mut state, true)?;
            disk.set(&mut guard, state);
        }
        // Then the earlier version's index of body files (one more item
        // per write; the eviction order names the files now) goes.
        if disk.db.keyspace_exists("files") {
            let files = disk.db.keyspace("files", KeyspaceCreateOptions::default)?;
            disk.db.delete_keyspace(files)?;
        }
        Ok(disk)
    }

    /// The slot of body file `file` in `verified`.
    fn slot(&self, file: u64) -> &AtomicU64 {
        let h = file.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48;
        &self.verified[h as usize % VERIFIED_SLOTS]
    }

    /// Whether body file `file` was checked against its checksum since the
    /// store opened (file numbers are not reused while it runs).
    fn is_verified(&self, file: u64) -> bool {
        self.slot(file).load(Ordering::Relaxed) == file.wrapping_add(1)
    }

    fn set_verified(&self, file: u64) {
        self.slot(file)
            .store(file.wrapping_add(1), Ordering::Relaxed);
    }

    /// The store's state now.
    pub(crate) fn state(&self) -> State {
        *lock(&self.state)
    }

    /// The bytes charged now, without taking the lock.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The entries now, without taking the lock.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Makes `state` (committed) the state, under the lock `guard` is.
    fn set(&self, guard: &mut MutexGuard<'_, State>, state: State) {
        self.used.store(state.used, Ordering::Relaxed);
        self.count.store(state.count, Ordering::Relaxed);
        **guard = state;
    }

    /// The capacity.
    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn body_path(&self, file: u64) -> PathBuf {
        // Numbers are handed out for files and eviction order alike, so
        // their low bits are not spread evenly: the folder is a hash's.
        let folder = file.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
        self.bodies
            .join(format!("{folder:02x}"))
            .join(format!("{file:016x}"))
    }

    /// Writes a new body file; its number.
    fn write_body(&self, value: &[u8]) -> Result<u64, Error> {
        let file = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.body_path(file);
        let written = fs::File::create(&path).and_then(|mut f| f.write_all(value));
        if let Err(e) = written {
            let _ = fs::remove_file(&path);
            return Err(e.into());
        }
        Ok(file)
    }

    /// Begins a body file written as its body streams in: `head_len` bytes
    /// are left for the head, given at the commit.
    pub(crate) fn begin_stream(&self, head_len: u64) -> Result<Stream, Error> {
        use std::io::{Seek, SeekFrom};
        // The number is recorded as handed out before the file exists: a
        // crash during a long write leaves a file the next start's sweep
        // sees as below its numbers, and removes.
        let number = {
            let mut guard = lock(&self.state);
            let number = self.next.fetch_add(1, Ordering::Relaxed);
            let mut state = *guard;
            state.next = state.next.max(number + 1);
            self.commit(WriteBatch::default(), &mut state, false)?;
            self.set(&mut guard, state);
            number
        };
        let path = self.body_path(number);
        // Readable too: a client behind the write reads its body back
        // (see [`Stream::reader`]).
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        self.streaming.fetch_add(head_len, Ordering::Relaxed);
        let mut stream = Stream {
            file,
            number,
            path,
            head_len,
            written: 0,
            crc: crc32fast::Hasher::new(),
            began_ms: now_ms(),
            taken: false,
            streaming: self.streaming.clone(),
        };
        stream.file.seek(SeekFrom::Start(head_len))?;
        Ok(stream)
    }

    /// Appends `chunk` to a streamed body. An entry that would not fit in
    /// the whole store fails here, before the disk fills with it, and so
    /// does one that would make the bodies being streamed together more
    /// than `max_bytes` (the disk holds at most `max_bytes` of entries and
    /// as much again of writes in progress).
    pub(crate) fn write_stream(&self, stream: &mut Stream, chunk: &[u8]) -> Result<(), Error> {
        let len = stream.head_len + stream.written + chunk.len() as u64;
        if len > self.max_bytes {
            return Err("the entry is larger than the store (store.disk.max_bytes)".into());
        }
        let n = chunk.len() as u64;
        let all = self.streaming.fetch_add(n, Ordering::Relaxed) + n;
        if all > self.max_bytes {
            self.streaming.fetch_sub(n, Ordering::Relaxed);
            return Err(
                "the entries being written would be larger than the store (store.disk.max_bytes)"
                    .into(),
            );
        }
        if let Err(e) = stream.file.write_all(chunk) {
            self.streaming.fetch_sub(n, Ordering::Relaxed);
            return Err(e.into());
        }
        stream.crc.update(chunk);
        stream.written += chunk.len() as u64;
        Ok(())
    }

    /// Stores the streamed body under `key` with `head` in its place, as
    /// [`Disk::put`] stores a whole value; the entry's time to live counts
    /// from the beginning of the write.
    pub(crate) fn commit_stream(
        &self,
        key: &str,
        mut stream: Stream,
        head: &[u8],
        options: &PutOptions<'_>,
        then: impl FnOnce(bool),
    ) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        if names_too_long(key, options) {
            then(false);
            return Ok(());
        }
        if head.len() as u64 != stream.head_len {
            return Err("a streamed entry's head is not of the length announced".into());
        }
        stream.file.write_all_at(head, 0)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(head);
        crc.combine(&stream.crc);
        let record = Record::written(
            stream.began_ms,
            stream.number,
            stream.head_len + stream.written,
            crc.finalize(),
            options,
        );
        // Its checksum was taken from the bytes as they were written: its
        // first read in this run need not read it all again (a large body's
        // check can take longer than a read may). After a restart it is
        // checked as every body is.
        self.set_verified(stream.number);
        // From here the file is the record's, or `link_written` removes it.
        stream.taken = true;
        drop(stream);
        self.link_written(key, record, then)
    }

    /// Reads `record`'s body file if its length is the record's (a damaged
    /// file, however large, is not read), checked against its checksum on
    /// its first read since the store opened. A file checked before is
    /// mapped (for `sendfile`) when it is large enough and the budget
    /// allows (see [`zerocopy::map_file`]), else read. With `nowait`, a
    /// file whose pages are not all in memory is not read (`WouldBlock`).
    fn read_body(&self, record: Place, nowait: bool) -> io::Result<Body> {
        let mapped = self.mapped().files.get(&record.file).cloned();
        if let Some(body) = mapped {
            // Mapped by an earlier hit: still of its length (asked of the
            // descriptor the mapping holds; a file unlinked by another
            // process stays whole while mapped).
            let len = zerocopy::find(&body).map(|s| s.file_len());
            if let Some(len) = len {
                if len? == record.len {
                    return Ok(Body::Good(body));
                }
            }
            self.mapped().files.remove(&record.file);
            return Ok(Body::Bad);
        }
        if record.len < KEPT_OPEN_BELOW {
            let open = self.kept_open().files.get(&record.file).cloned();
            if let Some(file) = open {
                // Read before and of this length: read again at its place.
                let len = usize::try_from(record.len).unwrap_or(usize::MAX);
                let body = if nowait {
                    read_nowait(&file, len)?
                } else {
                    read_at_exact(&file, len)?
                };
                return Ok(match body {
                    Some(body) => Body::Good(Bytes::from(body)),
                    None if nowait => Body::WouldBlock,
                    None => {
                        self.kept_open().files.remove(&record.file);
                        Body::Bad
                    }
                });
            }
        }
        let path = self.body_path(record.file);
        let file = fs::File::open(&path)?;
        if file.metadata()?.len() != record.len {
            return Ok(Body::Bad);
        }
        let Ok(len) = usize::try_from(record.len) else {
            return Ok(Body::Bad);
        };
        let mut verified = self.is_verified(record.file);
        if !verified && !nowait && record.len > INLINE_MAX {
            // A large body's first read: its checksum is taken a piece at a
            // time, so that it is then mapped rather than read whole.
            if crc_of(&file, record.len)? != Some(record.crc) {
                return Ok(Body::Bad);
            }
            self.set_verified(record.file);
            verified = true;
        }
        let file = if verified {
            match zerocopy::map_file(file, len) {
                Ok(mapped) => {
                    self.mapped().insert(record.file, mapped.clone());
                    return Ok(Body::Good(mapped));
                }
                Err(file) => file,
            }
        } else {
            file
        };
        // Not mapped (zero-copy off, its budget used up): a large body is
        // copied on the blocking pool, never on the caller's thread, and a
        // very large one not at all.
        if verified && record.len > UNMAPPED_MAX {
            return Ok(Body::Unmapped);
        }
        if nowait && record.len > INLINE_MAX {
            return Ok(Body::WouldBlock);
        }
        let Some(body) = read_exact(&file, len, nowait)? else {
            return Ok(if nowait { Body::WouldBlock } else { Body::Bad });
        };
        if !verified {
            if crc32fast::hash(&body) != record.crc {
                return Ok(Body::Bad);
            }
            self.set_verified(record.file);
        }
        if record.len < KEPT_OPEN_BELOW {
            self.kept_open().insert(record.file, Arc::new(file));
            // Removed meanwhile (`remove_bodies` deletes the file before it
            // lets go of it): not kept, so that its blocks are freed.
            if !path.exists() {
                self.kept_open().files.remove(&record.file);
            }
        }
        Ok(Body::Good(Bytes::from(body)))
    }

    fn mapped(&self) -> MutexGuard<'_, Held<Bytes>> {
        self.mapped.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kept_open(&self) -> MutexGuard<'_, Held<Arc<fs::File>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove_bodies(&self, files: &[u64]) {
        // The files go first, then what is kept of them: a first read that
        // keeps a file after this looks for it and finds it gone.
        for f in files {
            let _ = fs::remove_file(self.body_path(*f));
        }
        let mut mapped = self.mapped();
        for f in files {
            mapped.files.remove(f);
        }
        drop(mapped);
        let mut open = self.kept_open();
        for f in files {
            open.files.remove(f);
        }
    }

    fn record(&self, key: &str) -> Result<Option<Record>, Error> {
        // A record that does not decode is treated as no entry; the next
        // write or delete of the key removes what is left of it
        // (`unlink_unreadable`).
        Ok(self.lookup(key)?.and_then(Result::ok))
    }

    /// `key`'s record, or the bytes of one that does not decode.
    fn lookup(&self, key: &str) -> Result<Option<Result<Record, Vec<u8>>>, Error> {
        // fjall refuses (panics on) keys past 64 KiB; none is stored.
        if key.len() > MAX_NAME {
            return Ok(None);
        }
        Ok(self
            .entries
            .get(key)?
            .map(|b| Record::decode(&b).map_err(|_| b.to_vec())))
    }

    /// Adds to `batch` the removal of what is left of `key`'s entry whose
    /// record `raw` does not decode: the record, and the index members and
    /// body file that name the key, found by going through the indexes
    /// (rare, and under the lock). Its charge is rebuilt from what is found.
    fn unlink_unreadable(
        &self,
        batch: &mut WriteBatch,
        state: &mut State,
        key: &str,
        raw: &[u8],
        gone: &mut Vec<u64>,
    ) -> Result<(), Error> {
        batch.remove(Space::Entries, key);
        let mut charged = raw.len() as u64 + key.len() as u64 * 2 + PER_ENTRY;
        let spaces = [
            (Space::Tags, &self.tags),
            (Space::Paths, &self.paths),
            (Space::Order, &self.order),
        ];
        for (space, ks) in spaces {
            for g in ks.iter() {
                let (member, value) = g.into_inner()?;
                if space == Space::Order {
                    let m = read_order_member(&value);
                    if m.key != key.as_bytes() {
                        continue;
                    }
                    // The member names the body file (one of the earlier
                    // form does not: the file is left to the sweep after
                    // the next start, and its blocks stay charged).
                    if let Some(file) = m.file {
                        let len = fs::metadata(self.body_path(file)).map_or(0, |m| m.len());
                        charged += len.div_ceil(BLOCK) * BLOCK;
                        gone.push(file);
                    }
                } else if value[..] == *key.as_bytes() {
                    charged += member.len() as u64;
                } else {
                    continue;
                }
                batch.remove(space, member);
            }
        }
        state.used = state.used.saturating_sub(charged);
        state.count = state.count.saturating_sub(1);
        Ok(())
    }

    /// Adds the removal of `key`'s entry `record` to `batch`.
    fn unlink(&self, batch: &mut WriteBatch, state: &mut State, key: &str, record: &Record) {
        batch.remove(Space::Entries, key);
        for t in &record.tags {
            batch.remove(Space::Tags, tag_member(t, key));
        }
        batch.remove(Space::Paths, path_member(&record.path, key));
        batch.remove(Space::Order, record.seq.to_be_bytes());
        state.used = state.used.saturating_sub(charge(key.as_bytes(), record));
        state.count = state.count.saturating_sub(1);
    }

    /// Adds the writing of `key`'s entry `record` to `batch`.
    fn link(&self, batch: &mut WriteBatch, state: &mut State, key: &str, record: &Record) {
        batch.insert(Space::Entries, key, record.encode());
        for t in &record.tags {
            batch.insert(Space::Tags, tag_member(t, key), key);
        }
        batch.insert(Space::Paths, path_member(&record.path, key), key);
        // The commit puts the state in (see `commit`).
        batch.insert(
            Space::Order,
            record.seq.to_be_bytes(),
            order_member(record.file, state, key.as_bytes()),
        );
        state.used += charge(key.as_bytes(), record);
        state.count += 1;
        state.next = state.next.max(record.file + 1).max(record.seq + 1);
    }

    /// Commits `batch` with `state` (numbered as the next commit): on
    /// each member it adds to the eviction order when it adds any, under
    /// `meta` otherwise (see [`State`]).
    fn commit(&self, mut batch: WriteBatch, state: &mut State, sync: bool) -> Result<(), Error> {
        let oldest = self.oldest.load(Ordering::Relaxed);
        let reorder = batch.reorder(oldest);
        state.commit = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        let mut carried = false;
        for ((space, _), value) in batch.0.iter_mut() {
            if let (Space::Order, Some(member)) = (space, value) {
                set_member_state(member, state);
                carried = true;
            }
        }
        if !carried {
            batch.insert(Space::Meta, STATE, state.encode());
        }
        let mode = if sync {
            PersistMode::SyncAll
        } else {
            PersistMode::Buffer
        };
        let mut out = self.db.batch().durability(Some(mode));
        for ((space, key), value) in batch.0 {
            let ks = match space {
                Space::Entries => &self.entries,
                Space::Tags => &self.tags,
                Space::Paths => &self.paths,
                Space::Order => &self.order,
                Space::Meta => &self.meta,
            };
            match value {
                Some(v) => out.insert(ks, key, v),
                None => out.remove(ks, key),
            }
        }
        out.commit()?;
        self.keep_oldest(oldest, reorder);
        Ok(())
    }

    /// The oldest order number after a commit that did `reorder` to the
    /// order, under the store's lock as every commit (so exact there). Only
    /// the removal of the oldest needs the order read again, and then from
    /// the old number on, unless an eviction said where it stopped. Every
    /// [`RECHECK_OLDEST`] removals it is read from the start, so that a
    /// number that went wrong cannot leave older entries out of the
    /// eviction for long.
    fn keep_oldest(&self, oldest: u64, reorder: Reorder) {
        let Reorder {
            removes_oldest,
            first_added,
            left,
        } = reorder;
        let recheck = removes_oldest
            && self
                .reordered
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(RECHECK_OLDEST);
        let now = if recheck {
            first_order(&self.order, 0)
        } else if let Some(seq) = left {
            seq.min(first_added)
        } else if removes_oldest {
            first_order(&self.order, oldest).min(first_added)
        } else {
            oldest.min(first_added)
        };
        if now != oldest {
            self.oldest.store(now, Ordering::Relaxed);
        }
    }

    /// Stores `value` under `key`. `then` runs once it is committed, under
    /// the store's lock, told whether the entry was kept (one larger than
    /// the whole store is not, and the key's old entry goes): the memory
    /// tier is written there, so that it follows the disk's order.
    pub(crate) fn put(
        &self,
        key: &str,
        value: &[u8],
        options: &PutOptions<'_>,
        then: impl FnOnce(bool),
    ) -> Result<(), Error> {
        if names_too_long(key, options) {
            // Not kept; nothing of the key can be there either.
            then(false);
            return Ok(());
        }
        let file = self.write_body(value)?;
        let record = Record::written(
            now_ms(),
            file,
            value.len() as u64,
            crc32fast::hash(value),
            options,
        );
        self.link_written(key, record, then)
    }

    /// Commits `record`, whose body file is written, under `key`; then
    /// removes the files it replaced, or its own when nothing was
    /// committed.
    fn link_written(
        &self,
        key: &str,
        record: Record,
        then: impl FnOnce(bool),
    ) -> Result<(), Error> {
        let file = record.file;
        let mut gone = Vec::new();
        match self.put_locked(key, record, &mut gone, then) {
            Ok(()) => {
                self.remove_bodies(&gone);
                Ok(())
            }
            Err(e) => {
                self.remove_bodies(&[file]);
                Err(e)
            }
        }
    }

    fn put_locked(
        &self,
        key: &str,
        mut record: Record,
        gone: &mut Vec<u64>,
        then: impl FnOnce(bool),
    ) -> Result<(), Error> {
        let mut guard = lock(&self.state);
        let mut state = *guard;
        let mut batch = WriteBatch::default();
        let mut unreadable = false;
        match self.lookup(key)? {
            Some(Ok(old)) => {
                self.unlink(&mut batch, &mut state, key, &old);
                gone.push(old.file);
            }
            Some(Err(raw)) => {
                self.unlink_unreadable(&mut batch, &mut state, key, &raw, gone)?;
                unreadable = true;
            }
            None => {}
        }
        let kept = charge(key.as_bytes(), &record) <= self.max_bytes;
        if kept {
            record.seq = self.next.fetch_add(1, Ordering::Relaxed);
            self.link(&mut batch, &mut state, key, &record);
            self.evict(&mut batch, &mut state, key, gone)?;
        } else {
            gone.push(record.file);
        }
        self.commit(batch, &mut state, false)?;
        self.set(&mut guard, state);
        if unreadable {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
        }
        then(kept);
        Ok(())
    }

    /// Adds to `batch` the removal of the oldest entries (but `keep`) until
    /// the state is within `max_bytes`.
    fn evict(
        &self,
        batch: &mut WriteBatch,
        state: &mut State,
        keep: &str,
        gone: &mut Vec<u64>,
    ) -> Result<(), Error> {
        if state.used <= self.max_bytes {
            return Ok(());
        }
        // From the oldest member on: the members evicted before it are
        // deletions the index would otherwise walk again every time. Should
        // that number be off, the members before it are taken after.
        let from = self.oldest_key();
        let mut first_left = self.evict_in(self.order.range(from..), batch, state, keep, gone)?;
        if state.used > self.max_bytes && from != [0; 8] {
            // Members before the number: the first of them left in place
            // is the oldest then.
            let before = self.evict_in(self.order.range(..from), batch, state, keep, gone)?;
            first_left = before.or(first_left);
        }
        batch.1 = first_left.and_then(|s| <[u8; 8]>::try_from(&s[..]).ok().map(u64::from_be_bytes));
        Ok(())
    }

    /// Evicts the members `members` gives, oldest first, until the state
    /// is within `max_bytes`; the first member it leaves in place (`keep`'s,
    /// which the batch may remove, or where it stopped).
    fn evict_in(
        &self,
        members: impl Iterator<Item = fjall::Guard>,
        batch: &mut WriteBatch,
        state: &mut State,
        keep: &str,
        gone: &mut Vec<u64>,
    ) -> Result<Option<fjall::UserKey>, Error> {
        let mut first_left = None;
        for guard in members {
            let (seq, member) = guard.into_inner()?;
            if state.used <= self.max_bytes {
                first_left = first_left.or(Some(seq));
                break;
            }
            let key = String::from_utf8_lossy(read_order_member(&member).key).into_owned();
            if key == keep {
                first_left = first_left.or(Some(seq));
                continue;
            }
            match self.record(&key)? {
                Some(r) if r.seq.to_be_bytes()[..] == seq[..] => {
                    self.unlink(batch, state, &key, &r);
                    gone.push(r.file);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                // A member left behind: drop it.
                _ => batch.remove(Space::Order, seq),
            }
        }
        Ok(first_left)
    }

    /// Reads `key`'s entry: its record, then its body, checked against the
    /// record's length and checksum. An expired or corrupt entry is removed.
    pub(crate) fn get(&self, key: &str) -> Result<Read, Error> {
        // A body removed between reading its record and opening it was
        // replaced (or purged): read the record again, a few times.
        for _ in 0..8 {
            if let Some(read) = self.get_once(key)? {
                return Ok(read);
            }
        }
        Ok(Read::Miss)
    }

    /// One read; `None` when the body went while it was read.
    fn get_once(&self, key: &str) -> Result<Option<Read>, Error> {
        let Some(record) = self.record(key)? else {
            return Ok(Some(Read::Miss));
        };
        if record.expires_ms <= now_ms() {
            if self.remove_if(key, record.file, false)? {
                self.expirations.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Some(Read::Miss));
        }
        let body = match self.read_body(record.place(), false) {
            Ok(Body::Good(b)) => Some(b),
            Ok(Body::Unmapped) => return Ok(Some(Read::Miss)),
            Ok(Body::Bad | Body::WouldBlock) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Lost if the record still names it; else replaced or
                // purged meanwhile.
                return Ok(if self.remove_if(key, record.file, false)? {
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                    Some(Read::Corrupt)
                } else {
                    None
                });
            }
            Err(e) => return Err(e.into()),
        };
        let Some(body) = body else {
            // A body cut or changed under a record that still names it is
            // corrupt; one whose record changed meanwhile was replaced as
            // it was read (file numbers are not reused while running).
            if !self.remove_if(key, record.file, false)? {
                return Ok(None);
            }
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(Read::Corrupt));
        };
        Ok(Some(Read::Hit(body, record)))
    }

    /// Reads `key`'s entry without blocking on the disk: the record (from
    /// the index, as any read), then the body if its pages are in memory.
    /// Anything else, and anything that would write (an expired or damaged
    /// entry to remove), is left to [`Disk::get`] on the blocking pool
    /// (`Blocking`).
    ///
    /// A hit is `Young` (its fixed fields read in place, nothing
    /// allocated) unless `whole` says so of its body or the entry is old
    /// in the eviction order: then `Hit`, with its whole record, for the
    /// caller to move or keep.
    pub(crate) fn get_nowait(
        &self,
        key: &str,
        whole: impl FnOnce(&Bytes) -> bool,
    ) -> Result<Read, Error> {
        if key.len() > MAX_NAME {
            return Ok(Read::Miss);
        }
        let Some(raw) = self.entries.get(key)? else {
            return Ok(Read::Miss);
        };
        // A record that does not decode is no entry here, as in `record`.
        let Ok(fixed) = Fixed::read(&raw) else {
            return Ok(Read::Miss);
        };
        if fixed.expires_ms <= now_ms() || (fixed.len > INLINE_MAX && !self.is_verified(fixed.file))
        {
            return Ok(Read::Blocking);
        }
        let Ok(Body::Good(body)) = self.read_body(fixed.place(), true) else {
            return Ok(Read::Blocking);
        };
        if !self.is_old(fixed.seq) && !whole(&body) {
            return Ok(Read::Young(body));
        }
        Ok(match Record::decode(&raw) {
            Ok(record) => Read::Hit(body, record),
            Err(_) => Read::Miss,
        })
    }

    /// Runs `then` under the store's lock if `key` still holds the write of
    /// `file`, after moving it to the young end of the eviction order if it
    /// is in the older half (least recently used, roughly, without a write
    /// per read).
    pub(crate) fn touch(&self, key: &str, file: u64, then: impl FnOnce()) -> Result<(), Error> {
        let mut guard = lock(&self.state);
        let Some(record) = self.record(key)? else {
            return Ok(());
        };
        if record.file != file {
            return Ok(());
        }
        if self.is_old(record.seq) {
            let mut state = *guard;
            let mut batch = WriteBatch::default();
            self.unlink(&mut batch, &mut state, key, &record);
            let young = Record {
                seq: self.next.fetch_add(1, Ordering::Relaxed),
                ..record
            };
            self.link(&mut batch, &mut state, key, &young);
            self.commit(batch, &mut state, false)?;
            self.set(&mut guard, state);
        }
        then();
        Ok(())
    }

    /// Where the order's live members begin (its oldest's number, or the
    /// start when that is not known).
    fn oldest_key(&self) -> [u8; 8] {
        match self.oldest.load(Ordering::Relaxed) {
            u64::MAX => [0; 8],
            n => n.to_be_bytes(),
        }
    }

    /// Whether `record` is in the older half of the eviction order (read
    /// without the lock, so only a hint outside it).
    pub(crate) fn is_old(&self, seq: u64) -> bool {
        let oldest = match self.oldest.load(Ordering::Relaxed) {
            u64::MAX => seq,
            n => n,
        };
        let next = self.next.load(Ordering::Relaxed);
        seq < oldest + (next.saturating_sub(oldest)) / 2
    }

    /// Removes `key` if it still holds the write of `file`; whether it did.
    fn remove_if(&self, key: &str, file: u64, sync: bool) -> Result<bool, Error> {
        let mut guard = lock(&self.state);
        let Some(record) = self.record(key)? else {
            return Ok(false);
        };
        if record.file != file {
            return Ok(false);
        }
        let mut state = *guard;
        let mut batch = WriteBatch::default();
        self.unlink(&mut batch, &mut state, key, &record);
        self.commit(batch, &mut state, sync)?;
        self.set(&mut guard, state);
        drop(guard);
        self.remove_bodies(&[record.file]);
        Ok(true)
    }

    /// Removes `key`, synced to the disk; whether it was there. `then`
    /// runs under the lock once it is gone.
    pub(crate) fn delete(&self, key: &str, then: impl FnOnce()) -> Result<bool, Error> {
        let mut guard = lock(&self.state);
        let record = match self.lookup(key)? {
            Some(Ok(record)) => record,
            Some(Err(raw)) => {
                // What is left of an entry whose record does not decode.
                let mut state = *guard;
                let mut batch = WriteBatch::default();
                let mut gone = Vec::new();
                self.unlink_unreadable(&mut batch, &mut state, key, &raw, &mut gone)?;
                self.commit(batch, &mut state, true)?;
                self.set(&mut guard, state);
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                then();
                drop(guard);
                self.remove_bodies(&gone);
                return Ok(false);
            }
            None => {
                then();
                return Ok(false);
            }
        };
        let mut state = *guard;
        let mut batch = WriteBatch::default();
        self.unlink(&mut batch, &mut state, key, &record);
        self.commit(batch, &mut state, true)?;
        self.set(&mut guard, state);
        then();
        drop(guard);
        self.remove_bodies(&[record.file]);
        Ok(record.expires_ms > now_ms())
    }

    /// The keys the tag index holds under `tags`.
    fn tag_keys(&self, tags: &[String]) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for t in tags.iter().filter(|t| t.len() <= MAX_NAME) {
            for g in self.tags.prefix(tag_prefix(t)) {
                let key = String::from_utf8_lossy(&g.value()?).into_owned();
                if seen.insert(key.clone()) {
                    keys.push(key);
                }
            }
        }
        Ok(keys)
    }

    /// The keys the path index holds under the paths `pattern` selects.
    fn pattern_keys(&self, pattern: &UrlPattern) -> Result<Vec<String>, Error> {
        let prefix = match pattern.selector() {
            PathSelector::Exact(p) => path_member(p, ""),
            PathSelector::Prefix(p) => p.as_bytes().to_vec(),
            // A selector this store does not know: every path (each
            // candidate is checked against the pattern).
            _ => Vec::new(),
        };
        if prefix.len() > MAX_NAME + 1 {
            // No stored path is that long.
            return Ok(Vec::new());
        }
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for g in self.paths.prefix(prefix) {
            let key = String::from_utf8_lossy(&g.value()?).into_owned();
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// Removes (or with `rewrite`, rewrites) the entries under the keys
    /// `list` gives whose record `selects`, in one batch synced to the
    /// disk; how many (expired ones are removed and not counted). `then`
    /// runs under the lock once the batch is written.
    ///
    /// The keys are listed under the lock: a write committed after the
    /// listing could otherwise keep what is purged. A soft purge reads,
    /// rewrites and writes the bodies first, without the lock (a broad tag
    /// may name gigabytes, and every write and move in eviction order
    /// waits for the lock), then lists again under it and takes each body
    /// it made whose entry is still the one it read; only entries written
    /// in between are rewritten under the lock.
    fn purge(
        &self,
        list: impl Fn() -> Result<Vec<String>, Error>,
        selects: impl Fn(&Record) -> bool,
        rewrite: Option<&Rewrite<'_>>,
        then: impl FnOnce(&[String]),
    ) -> Result<u64, Error> {
        let mut ready = HashMap::new();
        if let Some(rewrite) = rewrite {
            let now = now_ms();
            for key in list()? {
                let Some(record) = self.record(&key)? else {
                    continue;
                };
                if !selects(&record) || record.expires_ms <= now {
                    continue;
                }
                match self.rewritten(&record, rewrite) {
                    Ok(outcome) => {
                        ready.insert(key, (record.file, outcome));
                    }
                    Err(e) => {
                        self.remove_bodies(&made_files(ready.into_values()));
                        return Err(e);
                    }
                }
            }
        }
        let mut guard = lock(&self.state);
        let keys = match list() {
            Ok(keys) => keys,
            Err(e) => {
                drop(guard);
                self.remove_bodies(&made_files(ready.into_values()));
                return Err(e);
            }
        };
        let mut state = *guard;
        let mut batch = WriteBatch::default();
        let mut gone = Vec::new();
        let mut written = Vec::new();
        let mut done = Vec::new();
        // Bodies made without the lock for an entry replaced meanwhile:
        // removed whether the batch is written or not.
        let mut discarded = Vec::new();
        let now = now_ms();
        let result = (|| {
            for key in keys {
                let Some(record) = self.record(&key)? else {
                    continue;
                };
                if !selects(&record) {
                    continue;
                }
                let live = record.expires_ms > now;
                let Some(rewrite) = rewrite.filter(|_| live) else {
                    self.unlink(&mut batch, &mut state, &key, &record);
                    gone.push(record.file);
                    if live {
                        done.push(key);
                    }
                    continue;
                };
                // What was made without the lock, if the entry is still
                // the one it was made from; else what is made now.
                let outcome = match ready.remove(&key) {
                    Some((from, outcome)) if from == record.file => outcome,
                    Some((_, stale)) => {
                        discarded.extend(made_files([(0, stale)]));
                        self.rewritten(&record, rewrite)?
                    }
                    None => self.rewritten(&record, rewrite)?,
                };
                let mut new = match outcome {
                    Rewritten::New(new) => new,
                    Rewritten::Kept => continue,
                    Rewritten::Damaged => {
                        // It goes, as on a read.
                        self.unlink(&mut batch, &mut state, &key, &record);
                        gone.push(record.file);
                        self.corrupt.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                written.push(new.file);
                self.unlink(&mut batch, &mut state, &key, &record);
                gone.push(record.file);
                new.seq = self.next.fetch_add(1, Ordering::Relaxed);
                new.expires_ms = now.saturating_add(new.expires_ms);
                self.link(&mut batch, &mut state, &key, &new);
                done.push(key);
            }
            Ok(())
        })();
        // Bodies made for entries gone or replaced meanwhile.
        let mut unused = made_files(ready.into_values());
        unused.append(&mut discarded);
        if let Err(e) = result.and_then(|()| self.commit(batch, &mut state, true)) {
            drop(guard);
            self.remove_bodies(&written);
            self.remove_bodies(&unused);
            return Err(e);
        }
        self.set(&mut guard, state);
        then(&done);
        drop(guard);
        self.remove_bodies(&gone);
        self.remove_bodies(&unused);
        Ok(done.len() as u64)
    }

    /// `record`'s body rewritten by `rewrite` into a new body file (see
    /// [`Rewritten`]).
    fn rewritten(&self, record: &Record, rewrite: &Rewrite<'_>) -> Result<Rewritten, Error> {
        let Ok(Body::Good(body)) = self.read_body(record.place(), false) else {
            return Ok(Rewritten::Damaged);
        };
        let Some((value, ttl)) = rewrite(&body) else {
            return Ok(Rewritten::Kept);
        };
        let file = self.write_body(&value)?;
        Ok(Rewritten::New(Record {
            expires_ms: duration_ms(ttl),
            seq: 0,
            file,
            len: value.len() as u64,
            crc: crc32fast::hash(&value),
            ..record.clone()
        }))
    }

    /// Removes the entries carrying any of `tags`.
    pub(crate) fn invalidate_tags(
        &self,
        tags: &[String],
        rewrite: Option<&Rewrite<'_>>,
        then: impl FnOnce(&[String]),
    ) -> Result<u64, Error> {
        self.purge(
            || self.tag_keys(tags),
            |r| r.tags.iter().any(|t| tags.contains(t)),
            rewrite,
            then,
        )
    }

    /// Removes the entries whose path and query match `pattern`.
    pub(crate) fn invalidate_pattern(
        &self,
        pattern: &UrlPattern,
        rewrite: Option<&Rewrite<'_>>,
        then: impl FnOnce(&[String]),
    ) -> Result<u64, Error> {
        self.purge(
            || self.pattern_keys(pattern),
            |r| pattern.matches(&r.path, r.query.as_deref()),
            rewrite,
            then,
        )
    }

    /// What the sweep of orphan body files needs, to run on a thread of
    /// its own: the eviction order and the records, the bodies folder, and
    /// the first number handed out since the start (files from there on
    /// may be writes in progress, and are left alone).
    pub(crate) fn sweeper(&self) -> Sweeper {
        Sweeper {
            order: self.order.clone(),
            entries: self.entries.clone(),
            bodies: self.bodies.clone(),
            below: self.state().next,
        }
    }

    /// The body file of `key`'s entry (for tests that damage it).
    #[doc(hidden)]
    pub(crate) fn body_file(&self, key: &str) -> Option<PathBuf> {
        self.record(key)
            .ok()
            .flatten()
            .map(|r| self.body_path(r.file))
    }
}

/// The checksum of the first `len` bytes of `file`, read a piece at a
/// time; `None` if it is shorter.
fn crc_of(file: &fs::File, len: u64) -> io::Result<Option<u32>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut crc = crc32fast::Hasher::new();
    let mut at = 0;
    while at < len {
        let want = usize::try_from((len - at).min(buf.len() as u64)).unwrap_or(buf.len());
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Ok(None);
        }
        crc.update(&buf[..n]);
        at += n as u64;
    }
    Ok(Some(crc.finalize()))
}

/// Reads `len` bytes of `file` from its start, by position (the file's
/// offset is shared by every reader of a file kept open); `None` if it
/// is shorter.
fn read_at_exact(file: &fs::File, len: usize) -> io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileExt as _;
    let mut body = vec![0u8; len];
    match file.read_exact_at(&mut body, 0) {
        Ok(()) => Ok(Some(body)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The first `len` bytes of `file`, if it has that many; `None` if it is
/// shorter, or with `nowait` if they are not all in memory (or the file
/// system cannot tell).
fn read_exact(file: &fs::File, len: usize, nowait: bool) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    if nowait {
        return read_nowait(file, len);
    }
    let mut body = Vec::with_capacity(len);
    // At most one byte past the record's length is read: a file that grew
    // meanwhile is found damaged without being read whole.
    file.take(len as u64 + 1).read_to_end(&mut body)?;
    Ok(Some(body).filter(|b| b.len() == len))
}

#[cfg(target_os = "linux")]
fn read_nowait(file: &fs::File, len: usize) -> io::Result<Option<Vec<u8>>> {
    use rustix::io::{preadv2, ReadWriteFlags};
    let mut body = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let mut bufs = [io::IoSliceMut::new(&mut body[done..])];
        match preadv2(file, &mut bufs, done as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => return Ok(None),
            Ok(n) => done += n,
            // Pages not in memory (`EAGAIN`), or no `RWF_NOWAIT` here.
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(body))
}

#[cfg(not(target_os = "linux"))]
fn read_nowait(_file: &fs::File, _len: usize) -> io::Result<Option<Vec<u8>>> {
    Ok(None)
}

/// `d` in milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Removes body files no record names: left by a crash between writing a
/// body and committing its record, or between removing a record and its
/// file. Runs after the start, in the background, one folder at a time.
pub(crate) struct Sweeper {
    order: Keyspace,
    entries: Keyspace,
    bodies: PathBuf,
    below: u64,
}

impl Sweeper {
    /// Sweeps every body folder, until `stop` is set; how many files it
    /// removed.
    pub(crate) fn run(&self, stop: &std::sync::atomic::AtomicBool) -> u64 {
        // The files the entries name, read once from the eviction order
        // (8 bytes an entry, for the sweep's time): an entry committed
        // after this read names a file numbered from `below` on, or one an
        // entry named already (a move in eviction order keeps its file),
        // and an entry removed after it removes its file itself. A member
        // names its entry's file even when the record cannot be read, so
        // the file stays for the removal that charges it back; one of the
        // earlier form (the key alone) is looked up in the records.
        let mut named = Vec::new();
        for g in self.order.iter() {
            if stop.load(Ordering::Relaxed) {
                return 0;
            }
            let Ok(value) = g.value() else {
                // The index cannot be read whole: remove nothing.
                return 0;
            };
            let member = read_order_member(&value);
            let file = match member.file {
                Some(f) => Some(f),
                // Longer than any key kept (and than fjall takes).
                None if member.key.len() > MAX_NAME => None,
                None => match self.entries.get(member.key) {
                    Ok(Some(r)) => Fixed::read(&r).ok().map(|f| f.file),
                    Ok(None) => None,
                    Err(_) => return 0,
                },
            };
            named.extend(file);
        }
        named.sort_unstable();
        let mut removed = 0;
        for i in 0..256 {
            let Ok(dir) = fs::read_dir(self.bodies.join(format!("{i:02x}"))) else {
                continue;
            };
            for entry in dir.flatten() {
                if stop.load(Ordering::Relaxed) {
                    return removed;
                }
                let name = entry.file_name();
                let Some(file) = name
                    .to_str()
                    .filter(|n| n.len() == 16)
                    .and_then(|n| u64::from_str_radix(n, 16).ok())
                else {
                    continue;
                };
                // Files numbered from `below` on may be being written.
                if file < self.below
                    && named.binary_search(&file).is_err()
                    && fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of its own under the system's temporary folder, removed on
    /// drop.
    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_purge_lists_its_keys_under_the_lock() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-purge-list-{}", std::process::id())),
        );
        let disk = Disk::open(&dir.0, 64 << 20).unwrap();
        let tags = vec!["t".to_owned()];
        std::thread::scope(|scope| {
            // A write of `k` with the tag commits while the purge waits for
            // the lock: the purge must find it.
            let mut guard = lock(&disk.state);
            let purge = scope.spawn(|| disk.invalidate_tags(&tags, None, |_| {}));
            // No notification says the purge is waiting for the lock: this
            // gives it the time to get there (if it is not there yet, the
            // test passes without having tested anything, never fails).
            std::thread::sleep(Duration::from_millis(200));
            let file = disk.write_body(b"v").unwrap();
            let record = Record {
                expires_ms: now_ms() + 60_000,
                seq: disk.next.fetch_add(1, Ordering::Relaxed),
                file,
                len: 1,
                crc: crc32fast::hash(b"v"),
                path: "/k".to_owned(),
                query: None,
                tags: tags.clone(),
            };
            let mut state = *guard;
            let mut batch = WriteBatch::default();
            disk.link(&mut batch, &mut state, "k", &record);
            disk.commit(batch, &mut state, false).unwrap();
            disk.set(&mut guard, state);
            drop(guard);
            assert_eq!(purge.join().unwrap().unwrap(), 1, "the write is purged");
        });
        assert_eq!(disk.record("k").unwrap(), None);
    }

    /// Commits `key` with `body` and `tags` as a put would, under `guard`.
    fn commit_entry(
        disk: &Disk,
        guard: &mut MutexGuard<'_, State>,
        key: &str,
        body: &[u8],
        tags: &[String],
    ) {
        let file = disk.write_body(body).unwrap();
        let record = Record {
            expires_ms: now_ms() + 60_000,
            seq: disk.next.fetch_add(1, Ordering::Relaxed),
            file,
            len: body.len() as u64,
            crc: crc32fast::hash(body),
            path: format!("/{key}"),
            query: None,
            tags: tags.to_vec(),
        };
        let mut state = **guard;
        let mut batch = WriteBatch::default();
        if let Some(old) = disk.record(key).unwrap() {
            disk.unlink(&mut batch, &mut state, key, &old);
            disk.remove_bodies(&[old.file]);
        }
        disk.link(&mut batch, &mut state, key, &record);
        disk.commit(batch, &mut state, false).unwrap();
        disk.set(guard, state);
    }

    fn body_of(disk: &Disk, key: &str) -> Vec<u8> {
        let record = disk.record(key).unwrap().unwrap();
        match disk.read_body(record.place(), false).unwrap() {
            Body::Good(b) => b.to_vec(),
            _ => panic!("{key}: no good body"),
        }
    }

    #[test]
    fn the_oldest_order_number_follows_writes_rewrites_deletes_and_a_reopen() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-oldest-{}", std::process::id())),
        );
        let read = |disk: &Disk| first_order(&disk.order, 0);
        {
            let disk = Disk::open(&dir.0, 64 << 20).unwrap();
            assert_eq!(disk.oldest.load(Ordering::Relaxed), u64::MAX, "empty");
            for k in ["a", "b", "c", "d"] {
                commit_entry(&disk, &mut lock(&disk.state), k, b"v", &[]);
                assert_eq!(disk.oldest.load(Ordering::Relaxed), read(&disk), "{k}");
            }
            let a = disk.record("a").unwrap().unwrap();
            let d = disk.record("d").unwrap().unwrap();
            assert!(disk.is_old(a.seq) && !disk.is_old(d.seq));
            // The oldest written again: the next one is the oldest now.
            commit_entry(&disk, &mut lock(&disk.state), "a", b"w", &[]);
            let b = disk.record("b").unwrap().unwrap();
            assert_eq!(disk.oldest.load(Ordering::Relaxed), b.seq);
            // A younger one written again changes nothing; the oldest
            // deleted moves it on.
            commit_entry(&disk, &mut lock(&disk.state), "c", b"w", &[]);
            assert_eq!(disk.oldest.load(Ordering::Relaxed), b.seq);
            assert!(disk.remove_if("b", b.file, false).unwrap());
            assert_eq!(disk.oldest.load(Ordering::Relaxed), read(&disk));
            assert_eq!(read(&disk), disk.record("d").unwrap().unwrap().seq);
        }
        let disk = Disk::open(&dir.0, 64 << 20).unwrap();
        assert_eq!(disk.oldest.load(Ordering::Relaxed), read(&disk), "reopened");
        assert_ne!(read(&disk), u64::MAX);
    }

    #[test]
    fn the_oldest_order_number_follows_evictions() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-oldest-ev-{}", std::process::id())),
        );
        // Room for about eight entries: from the ninth on, each write
        // evicts, and some rewrite the oldest key itself.
        let disk = Disk::open(&dir.0, 80 << 10).unwrap();
        let body = vec![7u8; 8 << 10];
        let options = PutOptions::new(Duration::from_secs(60), "/k");
        for i in 0..60 {
            let key = if i % 7 == 6 {
                // The oldest there is, written again.
                let first = disk.order.first_key_value().unwrap().value().unwrap();
                String::from_utf8(read_order_member(&first).key.to_vec()).unwrap()
            } else {
                format!("k{i}")
            };
            disk.put(&key, &body, &options, |_| {}).unwrap();
            assert_eq!(
                disk.oldest.load(Ordering::Relaxed),
                first_order(&disk.order, 0),
                "after write {i} ({key})"
            );
        }
        assert!(disk.evictions.load(Ordering::Relaxed) > 40);
    }

    #[test]
    fn an_oldest_order_number_past_every_entry_is_found_again_by_the_eviction() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-oldest-past-{}", std::process::id())),
        );
        let disk = Disk::open(&dir.0, 80 << 10).unwrap();
        let body = vec![7u8; 8 << 10];
        let options = PutOptions::new(Duration::from_secs(60), "/k");
        // Full: every write from here on evicts.
        for i in 0..12 {
            disk.put(&format!("a{i}"), &body, &options, |_| {}).unwrap();
        }
        let first = disk.order.first_key_value().unwrap().value().unwrap();
        let first = String::from_utf8(read_order_member(&first).key.to_vec()).unwrap();
        // Past every entry: the eviction finds nothing from there on and
        // takes the oldest before it.
        disk.oldest
            .store(disk.next.load(Ordering::Relaxed), Ordering::Relaxed);
        disk.put("b", &body, &options, |_| {}).unwrap();
        assert!(lock(&disk.state).used <= 80 << 10, "within the bound");
        assert_eq!(disk.record(&first).unwrap(), None, "the oldest went");
        assert_eq!(
            disk.oldest.load(Ordering::Relaxed),
            first_order(&disk.order, 0),
            "and the number is right again"
        );
    }

    #[test]
    fn an_oldest_order_number_that_is_off_still_evicts_within_the_bound() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-oldest-off-{}", std::process::id())),
        );
        let disk = Disk::open(&dir.0, 80 << 10).unwrap();
        let body = vec![7u8; 8 << 10];
        let options = PutOptions::new(Duration::from_secs(60), "/k");
        for i in 0..8 {
            disk.put(&format!("a{i}"), &body, &options, |_| {}).unwrap();
        }
        // As if the number were off: the youngest's, past seven older ones.
        let youngest = disk.record("a7").unwrap().unwrap().seq;
        disk.oldest.store(youngest, Ordering::Relaxed);
        for i in 0..2 * RECHECK_OLDEST {
            disk.put(&format!("b{i}"), &body, &options, |_| {}).unwrap();
            assert!(lock(&disk.state).used <= 80 << 10, "within the bound");
        }
        // Those before the number went too, once it was read again from
        // the start (every RECHECK_OLDEST evictions).
        for i in 0..8 {
            assert_eq!(disk.record(&format!("a{i}")).unwrap(), None, "a{i}");
        }
        assert_eq!(
            disk.oldest.load(Ordering::Relaxed),
            first_order(&disk.order, 0)
        );
    }

    #[test]
    fn a_soft_purge_rewrites_without_the_lock_and_misses_no_write_made_meanwhile() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-soft-list-{}", std::process::id())),
        );
        let disk = Disk::open(&dir.0, 64 << 20).unwrap();
        let tags = vec!["t".to_owned()];
        commit_entry(&disk, &mut lock(&disk.state), "a", b"a1", &tags);
        commit_entry(&disk, &mut lock(&disk.state), "b", b"b1", &tags);
        let (called, rewrites) = std::sync::mpsc::channel();
        let rewrite = move |b: &Bytes| {
            let _ = called.send(b.clone());
            Some((
                Bytes::from([&b"soft:"[..], &b[..]].concat()),
                Duration::from_secs(60),
            ))
        };
        std::thread::scope(|scope| {
            let mut guard = lock(&disk.state);
            // The purge rewrites a and b while the lock is held here...
            let purge = scope.spawn(|| disk.invalidate_tags(&tags, Some(&rewrite), |_| {}));
            let wait = Duration::from_secs(10);
            let mut seen = [
                rewrites
                    .recv_timeout(wait)
                    .expect("rewritten without the lock"),
                rewrites
                    .recv_timeout(wait)
                    .expect("rewritten without the lock"),
            ];
            seen.sort();
            assert_eq!(seen, [&b"a1"[..], &b"b1"[..]]);
            // ...and a is replaced and k added before it takes the lock.
            commit_entry(&disk, &mut guard, "a", b"a2", &tags);
            commit_entry(&disk, &mut guard, "k", b"v", &tags);
            drop(guard);
            assert_eq!(purge.join().unwrap().unwrap(), 3);
        });
        assert_eq!(
            body_of(&disk, "a"),
            b"soft:a2",
            "never the body made from a's old one"
        );
        assert_eq!(body_of(&disk, "b"), b"soft:b1");
        assert_eq!(
            body_of(&disk, "k"),
            b"soft:v",
            "a write made meanwhile is purged too"
        );
        // No body left behind: one file per entry.
        let files: usize = fs::read_dir(&disk.bodies)
            .unwrap()
            .map(|d| fs::read_dir(d.unwrap().path()).unwrap().count())
            .sum();
        assert_eq!(files, 3);
    }

    #[test]
    fn a_large_body_not_mapped_is_never_read_on_the_callers_thread() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-inline-max-{}", std::process::id())),
        );
        let disk = Disk::open(&dir.0, 64 << 20).unwrap();
        // Larger than `INLINE_MAX`; zero-copy is off here, so it cannot be
        // mapped and would be copied whole by a read without blocking.
        let body = vec![7u8; 4 << 20];
        commit_entry(&disk, &mut lock(&disk.state), "big", &body, &[]);
        // Its first read (on the blocking pool) checks it.
        assert!(matches!(disk.get("big").unwrap(), Read::Hit(..)));
        let record = disk.record("big").unwrap().unwrap();
        assert!(disk.is_verified(record.file));
        // Checked now, its pages in memory: still not read without
        // blocking, as the first read was not.
        assert!(
            matches!(disk.get_nowait("big", |_| false).unwrap(), Read::Blocking),
            "a 4 MiB body was read on the caller's thread"
        );
    }

    /// The state a store opens with, for a folder it left with `state`.
    fn reopened(dir: &Path, state: State) -> State {
        let disk = Disk::open(dir, 64 << 20).unwrap();
        let got = disk.state();
        assert_eq!(
            (got.used, got.count, got.next),
            (state.used, state.count, state.next),
            "the state after the last commit"
        );
        got
    }

    #[test]
    fn the_state_comes_back_from_the_youngest_member_or_meta_whichever_is_later() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-state-{}", std::process::id())),
        );
        let options = PutOptions::new(Duration::from_secs(60), "/k");
        let state = {
            let disk = Disk::open(&dir.0, 64 << 20).unwrap();
            for i in 0..5 {
                disk.put(&format!("k{i}"), &[1u8; 3000], &options, |_| {})
                    .unwrap();
            }
            // Writes only: their state rides on their order members, and
            // what is under `meta` (written as the store opened) is older.
            let kept = State::decode(&disk.meta.get(STATE).unwrap().unwrap()).unwrap();
            assert!(kept.commit < disk.state().commit && kept.count == 0);
            disk.state()
        };
        let state = {
            let s = reopened(&dir.0, state);
            let disk = Disk::open(&dir.0, 64 << 20).unwrap();
            assert_eq!(disk.state().commit, s.commit);
            // The youngest entry deleted: the state goes under `meta`,
            // later than what the (now) youngest member carries.
            assert!(disk.delete("k4", || {}).unwrap());
            assert!(disk.meta.get(STATE).unwrap().is_some());
            disk.state()
        };
        let state = {
            reopened(&dir.0, state);
            let disk = Disk::open(&dir.0, 64 << 20).unwrap();
            // A write again: later than `meta`'s.
            disk.put("k9", &[2u8; 10_000], &options, |_| {}).unwrap();
            disk.state()
        };
        let state = {
            reopened(&dir.0, state);
            let disk = Disk::open(&dir.0, 64 << 20).unwrap();
            // A delete of an older entry: `meta` again.
            assert!(disk.delete("k1", || {}).unwrap());
            assert_eq!(disk.count(), 4);
            disk.state()
        };
        reopened(&dir.0, state);
    }

    #[test]
    fn a_store_of_the_earlier_form_opens_with_its_state_and_keeps_its_bodies() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-earlier-{}", std::process::id())),
        );
        // Made as the earlier version made it: an index of body files,
        // order members holding the key alone, the state (first version)
        // under `meta` alone.
        let record = Record {
            expires_ms: now_ms() + 60_000,
            seq: 2,
            file: 1,
            len: 5,
            crc: crc32fast::hash(b"hello"),
            path: "/k".to_owned(),
            query: None,
            tags: vec![],
        };
        let used = charge(b"k", &record);
        {
            let disk = Disk::open(&dir.0, 64 << 20).unwrap();
            fs::write(disk.body_path(1), b"hello").unwrap();
            // An orphan, which the sweep removes.
            fs::write(disk.body_path(0), b"orphan").unwrap();
            let files = disk
                .db
                .keyspace("files", KeyspaceCreateOptions::default)
                .unwrap();
            let mut v1 = State {
                used,
                count: 1,
                next: 3,
                commit: 0,
            }
            .encode()[..25]
                .to_vec();
            v1[0] = 1;
            let mut batch = disk.db.batch();
            batch.insert(&disk.entries, "k", record.encode());
            batch.insert(&disk.paths, path_member("/k", "k"), "k");
            batch.insert(&disk.order, 2u64.to_be_bytes(), "k");
            batch.insert(&files, 1u64.to_be_bytes(), "k");
            batch.insert(&disk.meta, STATE, v1);
            batch.commit().unwrap();
            disk.db.persist(PersistMode::SyncAll).unwrap();
        }
        let disk = Disk::open(&dir.0, 64 << 20).unwrap();
        assert!(
            !disk.db.keyspace_exists("files"),
            "the file index is dropped"
        );
        let state = disk.state();
        assert_eq!((state.used, state.count, state.next), (used, 1, 3));
        let stop = std::sync::atomic::AtomicBool::new(false);
        assert_eq!(disk.sweeper().run(&stop), 1, "the orphan alone");
        assert!(disk.body_path(1).exists() && !disk.body_path(0).exists());
        assert!(matches!(disk.get("k").unwrap(), Read::Hit(b, _) if &b[..] == b"hello"));
        // Evicted and deleted as any entry.
        assert!(disk.delete("k", || {}).unwrap());
        assert_eq!((disk.used(), disk.count()), (0, 0));
        assert!(!disk.body_path(1).exists());
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let t = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &t);
            } else {
                fs::copy(e.path(), &t).unwrap();
            }
        }
    }

    /// Checks a store copied (as a kill -9 would leave it) opens with the
    /// live store's state, and that it is consistent with its records.
    fn check_copy(live: &Disk, dir: &Path, snap: &Path, step: usize, what: &str) {
        let _ = fs::remove_dir_all(snap);
        fs::create_dir_all(snap).unwrap();
        copy_dir(&dir.join("index"), &snap.join("index"));
        let want = live.state();
        let disk = Disk::open(snap, live.max_bytes).unwrap();
        let got = disk.state();
        assert_eq!(
            (got.used, got.count, got.next, got.commit),
            (want.used, want.count, want.next, want.commit),
            "step {step} ({what})"
        );
        let mut count = 0;
        let mut used = 0;
        for g in disk.entries.iter() {
            let (k, v) = g.into_inner().unwrap();
            let r = Record::decode(&v).unwrap();
            assert!(
                r.file < got.next && r.seq < got.next,
                "step {step}: number past next"
            );
            count += 1;
            used += charge(&k, &r);
            let m = disk
                .order
                .get(r.seq.to_be_bytes())
                .unwrap()
                .expect("member");
            let m = read_order_member(&m);
            assert_eq!((m.key, m.file), (&k[..], Some(r.file)), "step {step}");
        }
        assert_eq!((count, used), (got.count, got.used), "step {step} ({what})");
        drop(disk);
        let _ = fs::remove_dir_all(snap);
    }

    /// Random writes, moves, deletes, reads (some expired), hard and soft
    /// purges and streamed writes (committed, dropped, or open across the
    /// rest) over ten keys in a store that evicts: after each, the index
    /// as a `kill -9` would leave it opens with the live state, which the
    /// records add up to, and every record's order member names its key
    /// and body file.
    #[test]
    fn a_store_cut_after_any_commit_reopens_with_that_commits_state() {
        let base =
            std::env::temp_dir().join(format!("uip-cache-disk-prefix-{}", std::process::id()));
        let _g = TempDir(base.clone());
        let dir = base.join("live");
        let snap = base.join("snap");
        let disk = Disk::open(&dir, 70_000).unwrap();
        let mut seed: u64 = 0x1234_5678;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let tags: Vec<Vec<String>> = (0..3).map(|i| vec![format!("t{i}")]).collect();
        let mut open_stream: Option<(String, Stream)> = None;
        for step in 0..250 {
            let r = rnd();
            let key = format!("k{}", rnd() % 10);
            let t = &tags[(rnd() % 3) as usize];
            let what;
            match r % 10 {
                0..=2 => {
                    what = "put";
                    let len = (rnd() % 20_000) as usize + 1;
                    let ttl = if rnd() % 8 == 0 {
                        Duration::from_millis(1)
                    } else {
                        Duration::from_secs(600)
                    };
                    let o = PutOptions::new(ttl, "/p").tags(t);
                    disk.put(&key, &vec![step as u8; len], &o, |_| {}).unwrap();
                }
                3 => {
                    what = "touch";
                    if let Some(rec) = disk.record(&key).unwrap() {
                        disk.touch(&key, rec.file, || {}).unwrap();
                    }
                }
                4 => {
                    what = "delete";
                    disk.delete(&key, || {}).unwrap();
                }
                5 => {
                    what = "get";
                    let _ = disk.get(&key).unwrap();
                }
                6 => {
                    what = "purge";
                    let soft = rnd() % 2 == 0;
                    let rw = |b: &Bytes| -> Option<(Bytes, Duration)> {
                        let mut v = b.to_vec();
                        v.push(1);
                        Some((Bytes::from(v), Duration::from_secs(600)))
                    };
                    let rw: &Rewrite<'_> = &rw;
                    disk.invalidate_tags(t, soft.then_some(rw), |_| {}).unwrap();
                }
                7 => {
                    what = "begin stream";
                    if open_stream.is_none() {
                        let mut s = disk.begin_stream(4).unwrap();
                        disk.write_stream(&mut s, &vec![7u8; (rnd() % 9000) as usize])
                            .unwrap();
                        open_stream = Some((key.clone(), s));
                    }
                }
                8 => {
                    what = "commit stream";
                    if let Some((k, s)) = open_stream.take() {
                        let o = PutOptions::new(Duration::from_secs(600), "/s").tags(t);
                        disk.commit_stream(&k, s, b"head", &o, |_| {}).unwrap();
                    }
                }
                _ => {
                    what = "drop stream";
                    open_stream = None;
                }
            }
            check_copy(&disk, &dir, &snap, step, what);
        }
        assert!(
            disk.evictions.load(Ordering::Relaxed) > 5,
            "the bound was met: writes evicted"
        );
        // The sweep after a restart removes no body an entry names.
        drop(open_stream);
        let state = disk.state();
        drop(disk);
        let disk = Disk::open(&dir, 70_000).unwrap();
        assert_eq!(disk.state(), state);
        let stop = std::sync::atomic::AtomicBool::new(false);
        disk.sweeper().run(&stop);
        for g in disk.entries.iter() {
            let (_, v) = g.into_inner().unwrap();
            let r = Record::decode(&v).unwrap();
            assert!(disk.body_path(r.file).exists());
        }
    }

    #[test]
    fn a_youngest_member_whose_state_is_unreadable_keeps_the_store_from_opening() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("uip-cache-disk-bad-member-{}", std::process::id())),
        );
        let o = PutOptions::new(Duration::from_secs(600), "/p");
        {
            let disk = Disk::open(&dir.0, 64 << 20).unwrap();
            disk.put("a", &[1u8; 100], &o, |_| {}).unwrap();
            disk.put("b", &[2u8; 100], &o, |_| {}).unwrap();
            let (k, v) = disk.order.last_key_value().unwrap().into_inner().unwrap();
            let mut v = v.to_vec();
            v[9] = 9; // the state's version byte
            disk.order.insert(k, v).unwrap();
            disk.db.persist(PersistMode::SyncAll).unwrap();
        }
        // Opening with `meta`'s older state would hand out the numbers of
        // files the records name again (a new body over a live one).
        let err = Disk::open(&dir.0, 64 << 20).err().expect("refused");
        assert!(err.to_string().contains("state"), "{err}");
    }
}
