//! Reading a request body to key on (`vary_by: [body]`), up to a limit and
//! a deadline.

use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};

use crate::request::HeaderSource;

/// Reads a request body up to the limit a policy keys on
/// ([`Start::ReadBody`](crate::Start::ReadBody)) and within
/// [`BODY_READ_TIMEOUT`](crate::BODY_READ_TIMEOUT) from when reading
/// starts, from chunks the adapter polls out of its body type.
///
/// ```
/// use std::task::Poll;
/// use uip_cache_core::{BodyRead, BodyReader};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let headers = [("content-type", "application/sparql-query")];
/// let mut chunks = vec![Ok::<_, ()>("SELECT".into()), Ok(" *".into())].into_iter();
/// let reader = BodyReader::new(64, &headers).expect("no longer Content-Length");
/// match reader.read(|_| Poll::Ready(chunks.next())).await {
///     BodyRead::Whole(body) => assert_eq!(body, "SELECT *"),
///     _ => unreachable!("within the limit"),
/// }
/// # });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct BodyReader {
    limit: u64,
}

/// What [`BodyReader::read`] gave. Anything but [`BodyRead::Whole`] makes
/// the request bypass the cache
/// ([`NoCacheReason::BodyTooLarge`](crate::NoCacheReason::BodyTooLarge))
/// with its body sent on as the client sent it. Exhaustive on purpose: a
/// new outcome must make every adapter handle it.
#[derive(Debug)]
pub enum BodyRead<E> {
    /// The whole body, within the limit: key on it, and send the origin
    /// exactly these bytes.
    Whole(Bytes),
    /// Longer than the limit, or not all there by the deadline: these
    /// bytes were read; send them, then the rest of the source.
    Partial(Bytes),
    /// The source failed after these bytes: send them, then the error.
    Failed(Bytes, E),
}

impl BodyReader {
    /// A reader of up to `limit` bytes; `None` when the request's
    /// `Content-Length` announces more, so that its body is not read at
    /// all.
    pub fn new(limit: u64, headers: &dyn HeaderSource) -> Option<Self> {
        let announced = headers
            .first("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit) {
            return None;
        }
        Some(BodyReader { limit })
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Reads chunks from `next` (polled like a stream: `None` when the body
    /// ends) until the body ends, goes past the limit, fails or misses the
    /// deadline. Empty chunks (an adapter's trailers, say) are skipped. The
    /// source is left where reading stopped, for the adapter to send on.
    pub async fn read<E>(
        self,
        mut next: impl FnMut(&mut Context<'_>) -> Poll<Option<Result<Bytes, E>>>,
    ) -> BodyRead<E> {
        let mut buf = BytesMut::new();
        // A client trickling its body gets this long to finish it; then it
        // goes on unbuffered (the origin's own timeouts apply).
        let deadline = tokio::time::Instant::now() + crate::BODY_READ_TIMEOUT;
        loop {
            let chunk = tokio::time::timeout_at(deadline, std::future::poll_fn(&mut next));
            let Ok(chunk) = chunk.await else {
                return BodyRead::Partial(buf.freeze());
            };
            match chunk {
                None => return BodyRead::Whole(buf.freeze()),
                Some(Ok(data)) => {
                    buf.extend_from_slice(&data);
                    if buf.len() as u64 > self.limit {
                        return BodyRead::Partial(buf.freeze());
                    }
                }
                Some(Err(e)) => return BodyRead::Failed(buf.freeze(), e),
            }
        }
    }
}
