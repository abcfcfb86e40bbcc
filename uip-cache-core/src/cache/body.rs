//! The body of a response from a stored entry.

use bytes::Bytes;

use super::HttpCache;
use crate::compress::{self, gunzip};
use crate::entry::StoredResponse;
use crate::http::range::RangeSlicer;

/// The body of a [`CachedResponse`](crate::CachedResponse): stored bytes, or a large gzip body the
/// cache stored, decompressed chunk by chunk as it is read for a client
/// that does not take gzip (so that no worker stalls, and no request holds
/// the whole decompressed body, however large it is), or the parts of
/// either that a 206 sends. Stored bytes and their ranges are slices of
/// the entry as the store gave it: never copied.
///
/// Adapters send [`into_bytes`](CachedBody::into_bytes) when it is one
/// buffer already, and otherwise read [`next_chunk`](CachedBody::next_chunk)
/// as the client reads; [`len`](CachedBody::len) is its `Content-Length`.
#[derive(Debug)]
pub struct CachedBody {
    kind: BodyKind,
}

#[derive(Debug)]
enum BodyKind {
    Full(Bytes),
    Gunzip {
        chunks: Box<crate::compress::GunzipChunks>,
        /// Counts a body that turns out corrupt part-way.
        cache: HttpCache,
    },
    /// The ranges of a 206 cut from `source` as it is read (a multipart
    /// body, or a range of a body decompressed as it is read).
    Sliced {
        source: Option<Box<CachedBody>>,
        slicer: Box<RangeSlicer>,
    },
}

impl CachedBody {
    /// No bytes.
    pub fn empty() -> Self {
        Bytes::new().into()
    }

    /// How many bytes are still to come (all of them before the first
    /// chunk: the `Content-Length`).
    pub fn len(&self) -> u64 {
        match &self.kind {
            BodyKind::Full(b) => b.len() as u64,
            BodyKind::Gunzip { chunks, .. } => chunks.remaining(),
            BodyKind::Sliced { slicer, .. } => slicer.len(),
        }
    }

    /// Whether no bytes are to come.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body as one buffer, when it is one; otherwise itself, to be read
    /// chunk by chunk.
    pub fn into_bytes(self) -> Result<Bytes, CachedBody> {
        match self.kind {
            BodyKind::Full(b) => Ok(b),
            kind => Err(CachedBody { kind }),
        }
    }

    /// The next chunk, `None` at the end. A stored body that turns out
    /// corrupt part-way ends here, short of [`len`](CachedBody::len): the
    /// response was announced with its length, so the client sees it
    /// broken rather than complete with wrong bytes (the corrupt entry is
    /// counted and logged).
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        match &mut self.kind {
            BodyKind::Full(b) => Some(std::mem::take(b)).filter(|b| !b.is_empty()),
            BodyKind::Gunzip { chunks, cache } => {
                let chunk = chunks.next_chunk();
                if chunk.is_none() && chunks.failed() {
                    cache.inner.stats.corrupt_entry();
                    if let Some(left_out) = cache.inner.quiet.corrupt.admit() {
                        tracing::warn!(
                            left_out,
                            "stored gzip body does not decompress; response cut short"
                        );
                    }
                }
                chunk
            }
            BodyKind::Sliced { source, slicer } => loop {
                if let Some(piece) = slicer.pop() {
                    return Some(piece);
                }
                if slicer.is_complete() {
                    return None;
                }
                // The representation ended short of the ranges (a corrupt
                // gzip body): the body ends short too.
                slicer.push(source.as_mut()?.next_chunk()?);
            },
        }
    }

    /// This body cut by `slicer` (the body of a 206): a single range of
    /// one buffer stays one buffer, a slice of it.
    pub(crate) fn sliced(self, mut slicer: RangeSlicer) -> Self {
        let source = match self.kind {
            BodyKind::Full(b) => {
                slicer.push(b);
                None
            }
            kind => Some(Box::new(CachedBody { kind })),
        };
        if source.is_none() {
            if let Some(one) = slicer.take_whole() {
                return one.into();
            }
        }
        CachedBody {
            kind: BodyKind::Sliced {
                source,
                slicer: Box::new(slicer),
            },
        }
    }

    /// All of the body at once (reading whatever is left of it); `None`
    /// when a stored gzip body turns out corrupt.
    pub fn collect(self) -> Option<Bytes> {
        let mut body = match self.into_bytes() {
            Ok(b) => return Some(b),
            Err(body) => body,
        };
        let mut all = bytes::BytesMut::with_capacity(usize::try_from(body.len()).ok()?);
        while let Some(chunk) = body.next_chunk() {
            all.extend_from_slice(&chunk);
        }
        (!body.failed()).then(|| all.freeze())
    }

    fn failed(&self) -> bool {
        match &self.kind {
            BodyKind::Gunzip { chunks, .. } => chunks.failed(),
            BodyKind::Sliced { source, slicer } => {
                !slicer.is_done() || source.as_ref().is_some_and(|s| s.failed())
            }
            BodyKind::Full(_) => false,
        }
    }
}

impl From<Bytes> for CachedBody {
    fn from(b: Bytes) -> Self {
        CachedBody {
            kind: BodyKind::Full(b),
        }
    }
}

impl HttpCache {
    /// The identity body of a gzip entry the cache stored, as long as the
    /// gzip trailer says: decompressed at once when small, otherwise as it
    /// is read (see [`CachedBody`]). `None` when it is not gzip or does
    /// not decompress.
    pub(super) fn gunzipped(&self, entry: &StoredResponse) -> Option<CachedBody> {
        let len = compress::gzip_content_length(&entry.body)?;
        if len > compress::INLINE_LIMIT as u64 {
            let chunks = compress::GunzipChunks::new(entry.body.clone())?;
            return Some(CachedBody {
                kind: BodyKind::Gunzip {
                    chunks: Box::new(chunks),
                    cache: self.clone(),
                },
            });
        }
        let body = gunzip(&entry.body, len).ok()?;
        (body.len() as u64 == len).then(|| Bytes::from(body).into())
    }
}
