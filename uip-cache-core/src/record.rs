//! Recording a response body as it streams to the client, up to a limit.

use bytes::{Bytes, BytesMut};

/// Collects the chunks of a body until it passes `max` bytes; past that it
/// drops what it had and records nothing more, so memory stays bounded while
/// the body keeps streaming to the client.
#[derive(Debug)]
pub struct BodyRecorder {
    chunks: Vec<Bytes>,
    len: u64,
    max: u64,
    overflowed: bool,
}

impl BodyRecorder {
    /// A recorder keeping at most `max` bytes.
    pub fn new(max: u64) -> Self {
        BodyRecorder {
            chunks: Vec::new(),
            len: 0,
            max,
            overflowed: false,
        }
    }

    /// Records a chunk (a cheap reference-counted clone); false once over the limit.
    pub fn push(&mut self, chunk: &Bytes) -> bool {
        if self.overflowed {
            return false;
        }
        self.len += chunk.len() as u64;
        if self.len > self.max {
            self.overflowed = true;
            self.chunks = Vec::new();
            return false;
        }
        if !chunk.is_empty() {
            self.chunks.push(chunk.clone());
        }
        true
    }

    /// How many bytes it holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks it holds, in order (none past the limit).
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// Whether the limit was passed.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The whole body, or `None` past the limit.
    pub fn finish(self) -> Option<Bytes> {
        if self.overflowed {
            return None;
        }
        Some(match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(self.len as usize);
                for c in &self.chunks {
                    all.extend_from_slice(c);
                }
                all.freeze()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_chunks_and_stops_past_the_limit() {
        let mut r = BodyRecorder::new(10);
        assert!(r.push(&Bytes::from_static(b"hello ")));
        assert!(r.push(&Bytes::from_static(b"you!")));
        assert_eq!(r.finish().unwrap(), "hello you!");
        let mut r = BodyRecorder::new(10);
        assert!(r.push(&Bytes::from_static(b"hello ")));
        assert!(!r.push(&Bytes::from_static(b"world")));
        assert!(r.overflowed());
        assert!(r.chunks.is_empty(), "memory is released at once");
        assert_eq!(r.finish(), None);
        assert_eq!(BodyRecorder::new(0).finish().unwrap(), "");
    }
}
