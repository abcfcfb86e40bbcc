//! Keeping entries: [`Storage`] and what a write carries.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::StoreFuture;
use crate::pattern::UrlPattern;

/// What is stored with an entry besides its bytes.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct PutOptions<'a> {
    /// How long the store keeps the entry.
    pub ttl: Duration,
    /// Tags the entry can be invalidated by.
    pub tags: &'a [String],
    /// The request's path, indexed for URL-pattern invalidation.
    pub path: &'a str,
    /// The request's raw query, matched against pattern query constraints.
    pub query: Option<&'a str>,
}

impl<'a> PutOptions<'a> {
    /// Options for an entry at `path` kept for `ttl`, without tags or query.
    pub fn new(ttl: Duration, path: &'a str) -> Self {
        PutOptions {
            ttl,
            tags: &[],
            path,
            query: None,
        }
    }

    /// Sets the tags.
    #[must_use]
    pub fn tags(mut self, tags: &'a [String]) -> Self {
        self.tags = tags;
        self
    }

    /// Sets the raw query.
    #[must_use]
    pub fn query(mut self, query: Option<&'a str>) -> Self {
        self.query = query;
        self
    }
}

/// Rewrites one stored entry for a soft purge: its new bytes and how long to
/// keep them, or `None` to leave it as it is.
pub type Rewrite<'a> = dyn Fn(&Bytes) -> Option<(Bytes, Duration)> + Send + Sync + 'a;

/// Where entries are kept: reads, writes, deletes and purges.
///
/// Implementations must make tag and URL-pattern invalidation cost time
/// proportional to the entries they look at under the tag or under the
/// pattern's literal path prefix, never to the size of the whole store.
/// `core`'s `conformance` feature has a suite every implementation should pass.
pub trait Storage: fmt::Debug + Send + Sync + 'static {
    /// The bytes under `key`, if any and not expired.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>>;

    /// The bytes under `key` when the store has them at hand without
    /// waiting (a memory store, a tiered store's first level); `None` means
    /// only [`Storage::get`] can tell. Front-ends answer hits found this way
    /// without a future of their own. The default has nothing at hand.
    fn get_now(&self, key: &str) -> Option<Bytes> {
        let _ = key;
        None
    }

    /// Whether [`Storage::get_now`] sees all that [`Storage::get`] would:
    /// its `None` then means that `get` would find nothing under the key
    /// at that moment, and the lookup that would follow a miss at hand is
    /// spared (a memory store). The default is no.
    fn get_now_is_whole(&self) -> bool {
        false
    }

    /// Stores `value` under `key`, replacing any entry and its tags.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: PutOptions<'a>,
    ) -> StoreFuture<'a, ()>;

    /// Begins a write under `key` whose bytes come in pieces, so that a
    /// large body goes to the store as it streams in and is never held
    /// whole in memory. The value is `head_len` bytes given at the commit
    /// (see [`EntryWriter`]), then every written chunk. `None` (the
    /// default) when the store takes whole values only: the caller uses
    /// [`Storage::put`].
    fn begin_put(
        &self,
        key: &str,
        head_len: u64,
        options: PutOptions<'_>,
    ) -> Option<Box<dyn EntryWriter>> {
        let _ = (key, head_len, options);
        None
    }

    /// Removes `key`; whether it was there.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool>;

    /// Removes every entry carrying any of `tags`; how many were removed.
    /// A store that pages through its entries bounds the whole purge by
    /// `store.purge_timeout` and, when it stops part-way, fails with the
    /// count of what it removed
    /// ([`StoreError::with_partial`](super::StoreError::with_partial));
    /// running the purge again must finish the work.
    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64>;

    /// Removes every entry whose path and query match `pattern`; how many.
    fn invalidate_pattern<'a>(&'a self, pattern: &'a UrlPattern) -> StoreFuture<'a, u64>;

    /// Soft purge: rewrites (instead of removing) every entry carrying any of
    /// `tags`; how many were rewritten, or `None` when the store cannot (the
    /// caller removes them instead).
    fn soft_invalidate_tags<'a>(
        &'a self,
        tags: &'a [String],
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let _ = (tags, rewrite);
        Box::pin(async { Ok(None) })
    }

    /// Soft purge of the entries matching `pattern` (see
    /// [`Storage::soft_invalidate_tags`]).
    fn soft_invalidate_pattern<'a>(
        &'a self,
        pattern: &'a UrlPattern,
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        let _ = (pattern, rewrite);
        Box::pin(async { Ok(None) })
    }
}

/// A write begun with [`Storage::begin_put`]: its chunks in order, then
/// [`commit`](EntryWriter::commit). A writer dropped before it commits (or
/// whose write failed) stores nothing and leaves nothing behind.
pub trait EntryWriter: fmt::Debug + Send + 'static {
    /// Appends `chunk` to the value. Memory stays bounded: the future ends
    /// once the chunk is written (or queued within a small bound). After an
    /// error the writer can only be dropped.
    fn write(&mut self, chunk: Bytes) -> StoreFuture<'_, ()>;

    /// How many chunk bytes were written.
    fn written(&self) -> u64;

    /// Stores the value, `head` (exactly the `head_len` bytes announced at
    /// [`Storage::begin_put`]) then the chunks, replacing any entry under
    /// the key, as [`Storage::put`] does.
    fn commit(self: Box<Self>, head: Bytes) -> StoreFuture<'static, ()>;

    /// The chunk bytes this write has put where they can be read back (a
    /// disk store's file being written): how many, from the first, and a
    /// reader of them. A client that falls behind the origin is fed from
    /// it, so that the write goes on at the origin's pace. `None` (the
    /// default) when the store cannot.
    fn read_back(&self) -> Option<(u64, Arc<dyn ReadBack>)> {
        None
    }
}

/// Reads back the chunk bytes of a write in progress (see
/// [`EntryWriter::read_back`]). It stays readable once the write has
/// ended, whether it was committed, dropped or evicted since.
pub trait ReadBack: fmt::Debug + Send + Sync + 'static {
    /// Reads `len` chunk bytes from `offset` (both within what
    /// [`EntryWriter::read_back`] said was written). It blocks: callers
    /// run it on a blocking thread.
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes>;
}
