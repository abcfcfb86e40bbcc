//! A client connection's socket: which HTTP version it speaks, and cached
//! bodies in a store's mapped files leave with `sendfile(2)`, everything
//! else as on a plain socket.
//!
//! hyper hands a response's head and body to the socket as slices
//! (vectored writes). When a body slice of at least [`SENDFILE_MIN`] bytes
//! lies in a mapped store file ([`uip_cache_core::zerocopy::map_file`]),
//! the head goes first as a plain write and the body is sent from its
//! file, so the kernel takes the pages instead of copying them. A shorter
//! slice of a mapped file, and a slice of sealed memory of any length, is
//! copied from its mapping with the head in one `writev` (see
//! [`SEAL_MIN`] for why sealed memory is not sent from its file): the
//! kernel touches the pages, so a file cut since it was mapped makes that
//! call fail (`EFAULT`) rather than raise `SIGBUS`. (Over TLS, and for HTTP/2
//! frames, the process reads the mapping itself, as before: the hazard
//! the disk store's docs describe.) (Holding the head back with `MSG_MORE`
//! to share a segment with the body halved throughput on loopback, so it
//! is not done.) Partial writes are reported as such, as
//! any socket does; hyper sends the rest.
//!
//! Every read and write, on either path, is reported to the connection's
//! watch ([`crate::slow`]): bytes the socket took, writes it could not
//! take, the first bytes of a request. A connection closed for a slow
//! client is closed with a reset, which drops what its socket still holds.

use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use uip_cache_core::zerocopy;

use crate::slow::Watch;

/// Store files at least this long are mapped when [`enable`] is on (the
/// disk store's bodies): a hit then reads no body into memory, whether the
/// socket is handed the file's pages ([`SENDFILE_MIN`]) or copies them
/// from the mapping.
pub const ZERO_COPY_MIN: usize = 32 * 1024;

/// Slices of a mapped store file at least this long leave with
/// `sendfile(2)`; shorter ones are copied from their mapping into the
/// socket, with the response's head in the same `writev`. Above HTTP/2's
/// default frame size (16 KB), so DATA frames are always copied.
///
/// Measured on loopback, one core each (hits of one disk store entry,
/// `wrk -t1 -c64`, the server's user + system time per hit), copying
/// against `sendfile` from the file: 64 KB 19.0-19.3 against 25.0-27.9 us
/// in three rounds of four (1.25x the hits; the fourth 23.5 against 26.0);
/// 96 KB 21.8-32.1 against 25.9-33.4 us; 112 KB 23.6-29.8 against
/// 26.0-30.7 us; 128 KB 34.5-49.0 against 30.1-42.9 us, where `sendfile`
/// wins (the head and a 64 KB body leave in one call and one segment's
/// worth of work for the client; from 128 KB the socket takes a copy in
/// pieces). Past it the copy still moves more hits on loopback, at more
/// CPU: 1 MB 3.4-4.1k against 2.0-2.5k hits a second at 191-224 against
/// 154-196 us; 8 MB 405-452 against 174-218 at 1.64-1.89 against
/// 1.38-1.59 ms. nginx sends its cache files with `sendfile` too.
pub const SENDFILE_MIN: usize = 128 * 1024;

/// Values held in memory at least this long are sealed when [`enable`] is
/// on (a memory file each, outside the heap, counted by the memory bound
/// as the pages it holds).
///
/// They were sent from their memory file with `sendfile`, chosen on an
/// earlier measurement (copying from the heap against `sendfile`: 512 KB
/// 82-96 against 52-55 us, 1 MB 219-223 against 145-162 us, though the
/// copy moved 1.6x the hits). Copying from the memory file's mapping, as
/// now, measured on this machine (one core each, `wrk -t1 -c64`, the
/// server's user + system time per hit, four rounds): 512 KB 8.1-11.2k
/// hits a second at 76-95 us against 8.2-10.4k at 91-103 us; 1 MB
/// 4.1-5.2k at 158-188 us against 2.0-2.6k at 158-229 us; 2 MB 1.6-1.8k at
/// 436-505 us against 811-840 at 448-494 us. Twice the hits at the same
/// CPU: the kernel hands a memory file's pages over one lookup at a time.
pub const SEAL_MIN: usize = 320 * 1024;

/// Turns on sealed memory for large entries and mapped store files, so
/// large hits of a store's files through a [`ClientStream`] are sent
/// without copying (Linux; a no-op elsewhere).
pub fn enable() {
    let budget = zerocopy::enable(ZERO_COPY_MIN, SEAL_MIN);
    tracing::debug!(budget, "large entries are sent from sealed memory");
}

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client's TCP connection (see the module docs).
#[derive(Debug)]
pub struct ClientStream {
    inner: TcpStream,
    /// Bytes read to tell the version, given back first.
    prefix: Bytes,
    watch: Option<Arc<Watch>>,
}

impl ClientStream {
    /// Wraps an accepted connection.
    pub fn new(inner: TcpStream) -> Self {
        ClientStream {
            inner,
            prefix: Bytes::new(),
            watch: None,
        }
    }

    /// Reports reads and writes to `watch` from now on (the bytes read to
    /// tell the version count as read now).
    pub(crate) fn watched(mut self, watch: Arc<Watch>) -> Self {
        watch.read(self.prefix.len());
        self.watch = Some(watch);
        self
    }

    fn written(&self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Some(w) = &self.watch {
            match &r {
                Poll::Ready(Ok(n)) => w.wrote(*n),
                Poll::Pending => w.blocked(),
                Poll::Ready(Err(_)) => {}
            }
        }
        r
    }

    /// Reads the connection's first bytes to tell HTTP/2 with prior
    /// knowledge (h2c) from HTTP/1: whether it is HTTP/2, and the stream,
    /// which gives the bytes read back first. The caller bounds the time
    /// this takes.
    pub async fn detect(inner: TcpStream) -> io::Result<(bool, Self)> {
        let mut buf = [0u8; H2_PREFACE.len()];
        let mut n = 0;
        let h2 = loop {
            inner.readable().await?;
            let m = match inner.try_read(&mut buf[n..]) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            n += m;
            if m == 0 || buf[..n] != H2_PREFACE[..n] {
                break false;
            }
            if n == H2_PREFACE.len() {
                break true;
            }
        };
        Ok((
            h2,
            ClientStream {
                inner,
                prefix: Bytes::copy_from_slice(&buf[..n]),
                watch: None,
            },
        ))
    }

    /// Runs the non-blocking `op` when the socket is writable, until it
    /// does not answer `WouldBlock`.
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            match self.inner.try_io(Interest::WRITABLE, &mut op) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

/// The store file `buf` lies in, when it is to leave with `sendfile`: at
/// least [`SENDFILE_MIN`] bytes of a mapped store file. A slice of sealed
/// memory is copied from its mapping whatever its length (see
/// [`SEAL_MIN`]).
fn sealed(buf: &[u8]) -> Option<zerocopy::Sealed> {
    if buf.len() < SENDFILE_MIN {
        return None;
    }
    zerocopy::find(buf).filter(zerocopy::Sealed::is_file)
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Some(w), Poll::Ready(Ok(()))) = (&self.watch, &r) {
            w.read(buf.filled().len() - before);
        }
        r
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = match sealed(buf) {
            Some(body) => {
                let socket = self.inner.as_fd();
                self.poll_send(cx, || body.send(socket, buf.len()))
            }
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        };
        self.written(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some((i, body)) = bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| sealed(b).map(|s| (i, s)))
        else {
            let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            return self.written(r);
        };
        let head = &bufs[..i];
        let head_len: usize = head.iter().map(|b| b.len()).sum();
        let body_len = bufs[i].len();
        let socket = self.inner.as_fd();
        let r = self.poll_send(cx, || {
            let mut sent = 0;
            if head_len > 0 {
                sent = self.inner.try_write_vectored(head)?;
                if sent < head_len {
                    return Ok(sent);
                }
            }
            match body.send(socket, body_len) {
                Ok(n) => Ok(sent + n),
                // The head went: report it; the error (or the full
                // socket) shows again on the next write.
                Err(_) if sent > 0 => Ok(sent),
                Err(e) => Err(e),
            }
        });
        self.written(r)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        // A slow client's connection ends with a reset: the kernel drops
        // the bytes still queued for it instead of trying to deliver them.
        if self.watch.as_ref().is_some_and(|w| w.resets()) {
            let _ = self.inner.set_zero_linger();
        }
    }
}
