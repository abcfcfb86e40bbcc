//! Keep-alive connections to one plain `http://` backend as bare sockets,
//! for the relay of the fast loop (see `crate::server::hits`), which
//! writes its requests and reads its responses itself.
//!
//! The rules are those of the hyper pool beside it (`pool.rs`): a socket
//! goes back only once its response was read to its exact end and
//! nothing followed it; idle ones are reused most recent first, for at
//! most the idle timeout and at most `max_idle` of them, and a task closes
//! those idle for longer while any are kept.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_rustls::MaybeHttpsStream;
use tokio::net::TcpStream;
use tower::Service;

use super::idle::IdleSet;
use crate::tls::client::UpstreamConnector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The bare connections to one backend: a cheap clone of one shared set.
#[derive(Clone)]
pub(crate) struct RawPool(Arc<Shared>);

struct Shared {
    idle: Arc<IdleSet<TcpStream>>,
    connector: UpstreamConnector,
    base: Uri,
}

impl RawPool {
    /// Sockets to `base` (`http://`), opened by `connector` within its
    /// connect timeout, at most `max_idle` kept idle, each for at most
    /// `idle_timeout`.
    pub(crate) fn new(
        base: Uri,
        connector: UpstreamConnector,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        RawPool(Arc::new(Shared {
            // Its end or a byte on it is seen when it is taken.
            idle: IdleSet::new(max_idle, idle_timeout, |_| true),
            connector,
            base,
        }))
    }

    /// The most recently used idle socket still fresh and quiet; the
    /// others on the way are closed.
    ///
    /// Quiet: nothing to read on it, neither bytes nor its end. A backend
    /// may write after a response (a second one, bytes a slow body sent
    /// late, a `408` before closing an idle connection): a socket with
    /// anything on it would give that to the next request as its
    /// response, so it is never used again. (hyper's pool sees the same
    /// through the task that reads each idle connection.)
    pub(crate) fn take(&self) -> Option<TcpStream> {
        self.0.idle.take(quiet)
    }

    /// A new socket to the backend.
    pub(crate) async fn connect(&self) -> Result<TcpStream, BoxError> {
        match self.0.connector.clone().call(self.0.base.clone()).await? {
            MaybeHttpsStream::Http(io) => Ok(io.into_inner()),
            MaybeHttpsStream::Https(_) => Err("a TLS connection to an http:// backend".into()),
        }
    }

    /// Keeps `socket`, whose last response was read to its end, for
    /// another request if there is room; else it is closed.
    pub(crate) fn put(&self, socket: TcpStream) {
        self.0.idle.put(socket);
    }

    /// How many sockets are idle now.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.0.idle.len()
    }
}

/// Whether nothing is there to read on `socket` (a look that takes
/// nothing: the socket does not block).
fn quiet(socket: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(
        socket2::SockRef::from(socket).peek(&mut byte),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::client::default_client_config;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A pool for a listener's address, and the listener.
    async fn pool(max_idle: usize, idle_timeout: Duration) -> (RawPool, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base: Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let connector = UpstreamConnector::new(default_client_config(), Duration::from_secs(1));
        (
            RawPool::new(base, connector, max_idle, idle_timeout),
            listener,
        )
    }

    #[tokio::test]
    async fn only_quiet_fresh_sockets_come_back_and_at_most_max_idle_are_kept() {
        let (pool, listener) = pool(2, Duration::from_secs(60)).await;
        let mut accepted = Vec::new();
        for _ in 0..3 {
            let socket = pool.connect().await.unwrap();
            accepted.push(listener.accept().await.unwrap().0);
            pool.put(socket);
        }
        assert_eq!(pool.idle_count(), 2, "the third is closed");
        // The backend writes on the most recent one while it is idle: it
        // is passed over (and closed), the other one is taken.
        accepted[1]
            .write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let taken = pool.take().expect("the quiet one");
        assert_eq!(
            taken.local_addr().unwrap().port(),
            accepted[0].peer_addr().unwrap().port()
        );
        assert_eq!(pool.idle_count(), 0);
        // A socket its backend closed is not quiet either.
        pool.put(taken);
        drop(accepted);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take().is_none());
    }

    #[tokio::test]
    async fn a_socket_idle_past_the_timeout_is_not_taken() {
        let (pool, listener) = pool(4, Duration::from_millis(30)).await;
        let socket = pool.connect().await.unwrap();
        let _backend = listener.accept().await.unwrap();
        pool.put(socket);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(pool.take().is_none());
    }
}
