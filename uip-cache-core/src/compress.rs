//! gzip compression of stored bodies.
//!
//! Whether a body is compressed is recorded in the entry
//! ([`StoredResponse::compression`](crate::StoredResponse)), never guessed from
//! magic bytes: a body that is itself gzip data round-trips untouched.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// A body compressed only if it was worth it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Compressed {
    /// Compressed bytes (at least 10% smaller than the input).
    Gzip(Vec<u8>),
    /// Below `min_size`, or compression saved less than 10%.
    NotWorthIt,
}

/// gzips `body` when it is at least `min_size` bytes and the result is at most
/// 90% of its size.
pub fn gzip_if_worth_it(body: &[u8], min_size: u64, level: u32) -> Compressed {
    if (body.len() as u64) < min_size || body.is_empty() {
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
}
