//! gzip compression of stored bodies.
//!
//! Whether a body is compressed is recorded in the entry
//! ([`StoredResponse::compression`](crate::StoredResponse)), never guessed from
//! magic bytes: a body that is itself gzip data round-trips untouched. The
//! cache never decompresses a body the origin encoded (`Content-Encoding`
//! from the origin is passed on as it is), only the gzip bodies it made.
//!
//! A gzip body the cache made is a representation of its own (RFC 9110
//! section 8.8.3): it gets its own validator, every response from such an
//! entry says `Vary: Accept-Encoding`, and a response that forbids
//! transformation is never compressed. Those rules are HTTP's and live in
//! [`crate::http::encoding`]; this module only compresses and decompresses.
//!
//! Work on large bodies stays off the async workers: bodies above
//! [`INLINE_LIMIT`] are compressed on the blocking pool ([`gzip_off_runtime`])
//! and decompressed chunk by chunk as they are sent ([`GunzipChunks`]).

use std::io::{Read, Write};
use std::sync::OnceLock;

use bytes::{Buf, Bytes, BytesMut};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Bodies up to this many bytes are compressed, or decompressed at once, on
/// the task that needs them (well under a millisecond); larger ones are
/// compressed on the blocking pool and decompressed in chunks of this size.
pub const INLINE_LIMIT: usize = 64 * 1024;

/// The largest body the cache compresses: the gzip trailer records the
/// length modulo 2^32, and the cache reads the identity length from it.
const MAX_GZIP_INPUT: u64 = u32::MAX as u64;

/// A body compressed only if it was worth it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Compressed {
    /// Compressed bytes (at least 10% smaller than the input).
    Gzip(Vec<u8>),
    /// Below `min_size`, or compression saved less than 10%.
    NotWorthIt,
}

/// gzips `body` when it is at least `min_size` bytes (and under 4 GiB) and
/// the result is at most 90% of its size.
pub fn gzip_if_worth_it(body: &[u8], min_size: u64, level: u32) -> Compressed {
    if (body.len() as u64) < min_size || body.is_empty() || body.len() as u64 >= MAX_GZIP_INPUT {
        return Compressed::NotWorthIt;
    }
    let mut enc = GzEncoder::new(
        Vec::with_capacity(body.len() / 3),
        flate2::Compression::new(level.min(9)),
    );
    // Writing to a Vec cannot fail.
    if enc.write_all(body).is_err() {
        return Compressed::NotWorthIt;
    }
    match enc.finish() {
        Ok(out) if (out.len() as u64) * 10 <= (body.len() as u64) * 9 => Compressed::Gzip(out),
        _ => Compressed::NotWorthIt,
    }
}

/// [`gzip_if_worth_it`] without holding up the async worker it is called
/// on: a body above [`INLINE_LIMIT`] is compressed on tokio's blocking pool,
/// at most as many at once as there are CPUs (the others wait their turn
/// without holding a thread). Must run inside a tokio runtime.
pub async fn gzip_off_runtime(body: Bytes, min_size: u64, level: u32) -> Compressed {
    if body.len() <= INLINE_LIMIT || (body.len() as u64) < min_size {
        return gzip_if_worth_it(&body, min_size, level);
    }
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let Ok(_slot) = slots.acquire().await else {
        return Compressed::NotWorthIt;
    };
    tokio::task::spawn_blocking(move || gzip_if_worth_it(&body, min_size, level))
        .await
        .unwrap_or(Compressed::NotWorthIt)
}

/// gunzips `data`, refusing to produce more than `limit` bytes (a corrupt or
/// hostile entry cannot make us allocate without bound).
pub fn gunzip(data: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(3).min(limit as usize));
    let n = GzDecoder::new(data)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)?;
    if n as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "decompressed body exceeds the limit",
        ));
    }
    Ok(out)
}

/// The content of a gzip body the cache made, all of it (as long as its
/// trailer says, no longer), decompressed on tokio's blocking pool when it
/// is larger than [`INLINE_LIMIT`]; `None` when it does not decompress.
/// Must run inside a tokio runtime.
pub async fn gunzip_off_runtime(data: Bytes) -> Option<Bytes> {
    let len = gzip_content_length(&data)?;
    let run = move || {
        gunzip(&data, len)
            .ok()
            .filter(|b| b.len() as u64 == len)
            .map(Bytes::from)
    };
    if len <= INLINE_LIMIT as u64 {
        return run();
    }
    tokio::task::spawn_blocking(run).await.ok().flatten()
}

/// The length of the content of a gzip body the cache made, from its
/// trailer (ISIZE: the length modulo 2^32, exact for the bodies under 4 GiB
/// the cache compresses); `None` when `data` is too short to be gzip.
pub fn gzip_content_length(data: &[u8]) -> Option<u64> {
    if data.len() < 18 || data[..2] != [0x1f, 0x8b] {
        return None;
    }
    let t = &data[data.len() - 4..];
    Some(u64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]])))
}

/// A stored gzip body decompressed chunk by chunk, as a client reads it:
/// at most [`INLINE_LIMIT`] bytes of work per chunk, and never more output
/// than the trailer announced (the `Content-Length` already sent).
pub struct GunzipChunks {
    decoder: GzDecoder<bytes::buf::Reader<Bytes>>,
    remaining: u64,
    failed: bool,
}

impl GunzipChunks {
    /// A decoder for a gzip body the cache stored; `None` when it has no
    /// gzip trailer.
    pub fn new(data: Bytes) -> Option<Self> {
        let remaining = gzip_content_length(&data)?;
        Some(GunzipChunks {
            decoder: GzDecoder::new(data.reader()),
            remaining,
            failed: false,
        })
    }

    /// How many bytes are still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Whether the data turned out corrupt (it ended early, decoded to more
    /// than announced, or failed its checksum).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The next chunk; `None` at the end, or once the data turns out
    /// corrupt ([`failed`](GunzipChunks::failed) then says so: the response
    /// ends short of its announced length, so the client sees it broken,
    /// never complete with wrong bytes).
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            // Past the announced length there must be nothing but the
            // trailer, which the decoder checks (CRC and length) here.
            let mut probe = [0u8; 1];
            if !matches!(self.decoder.read(&mut probe), Ok(0)) {
                self.failed = true;
            }
            return None;
        }
        let want = (self.remaining as usize).min(INLINE_LIMIT);
        let mut buf = BytesMut::zeroed(want);
        let mut filled = 0;
        while filled < want {
            match self.decoder.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if filled < want {
            self.failed = true;
            return None;
        }
        self.remaining -= want as u64;
        buf.truncate(filled);
        Some(buf.freeze())
    }
}

impl std::fmt::Debug for GunzipChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GunzipChunks")
            .field("remaining", &self.remaining)
            .field("failed", &self.failed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_json_and_round_trips() {
        let body = br#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera","status":{"value":"on"}}"#
            .repeat(40);
        let Compressed::Gzip(z) = gzip_if_worth_it(&body, 1024, 6) else {
            panic!("JSON should compress")
        };
        assert!(z.len() * 2 < body.len());
        assert_eq!(gunzip(&z, 1 << 20).unwrap(), body);
        assert!(gunzip(&z, 100).is_err(), "limit is enforced");
    }

    #[test]
    fn skips_small_and_incompressible_bodies() {
        assert!(matches!(
            gzip_if_worth_it(b"tiny", 1024, 6),
            Compressed::NotWorthIt
        ));
        // Random bytes (like already-compressed media) do not shrink by 10%.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(matches!(
            gzip_if_worth_it(&noise, 0, 6),
            Compressed::NotWorthIt
        ));
    }

    /// Bytes that compress to a few percent, `n` of them.
    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"abcdefghij{}[]:,\"\n"[(i * 7 + i / 13) % 16])
            .collect()
    }

    #[test]
    fn large_bodies_decompress_in_bounded_chunks_to_the_announced_length() {
        let body = text(3 * INLINE_LIMIT + 123);
        let Compressed::Gzip(z) = gzip_if_worth_it(&body, 0, 6) else {
            panic!("compressible")
        };
        let z = Bytes::from(z);
        assert_eq!(gzip_content_length(&z), Some(body.len() as u64));
        let mut chunks = GunzipChunks::new(z.clone()).unwrap();
        let mut out = Vec::new();
        while let Some(c) = chunks.next_chunk() {
            assert!(c.len() <= INLINE_LIMIT);
            out.extend_from_slice(&c);
            assert_eq!(chunks.remaining(), (body.len() - out.len()) as u64);
        }
        assert!(!chunks.failed());
        assert_eq!(out, body);

        // Corrupt data ends short and says so; it never yields more than
        // announced.
        let mut bad = z.to_vec();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let mut chunks = GunzipChunks::new(Bytes::from(bad)).unwrap();
        let mut n = 0;
        while let Some(c) = chunks.next_chunk() {
            n += c.len();
        }
        assert!(chunks.failed());
        assert!(n <= body.len());
        // A trailer announcing less than the data holds.
        let mut short = z.to_vec();
        let l = short.len();
        short[l - 4..].copy_from_slice(&10u32.to_le_bytes());
        let mut chunks = GunzipChunks::new(Bytes::from(short)).unwrap();
        assert_eq!(chunks.next_chunk().map(|c| c.len()), Some(10));
        assert_eq!(chunks.next_chunk(), None);
        assert!(chunks.failed());
        assert!(GunzipChunks::new(Bytes::from_static(b"not gzip")).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_bodies_are_compressed_and_decompressed_off_the_workers() {
        let body = Bytes::from(text(4 * INLINE_LIMIT));
        let Compressed::Gzip(z) = gzip_off_runtime(body.clone(), 0, 6).await else {
            panic!("compressible")
        };
        assert_eq!(gunzip_off_runtime(Bytes::from(z)).await, Some(body));
        assert!(matches!(
            gzip_off_runtime(Bytes::from_static(b"tiny"), 1024, 6).await,
            Compressed::NotWorthIt
        ));
    }
}
