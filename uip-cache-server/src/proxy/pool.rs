//! The keep-alive connections to one plain `http://` backend, spoken to
//! in HTTP/1.1 through hyper's connection API: one task per connection,
//! none per request.
//!
//! - A connection goes back to the pool only once its response has been
//!   read to the end through [`PooledBody`] and hyper says it is ready for
//!   another request (the request's body sent whole, the response
//!   keep-alive). A response not read to its end, a request cancelled (its
//!   future dropped: the client left, or the timeout passed), a connection
//!   that failed: each is closed, never handed to another request, so no
//!   byte of one client's exchange can reach another's.
//! - Idle connections are reused most recent first, for at most the idle
//!   timeout ([`UPSTREAM_IDLE_TIMEOUT`](super::UPSTREAM_IDLE_TIMEOUT) in
//!   the server), at most `max_idle` of them; a task closes those idle for
//!   longer while any are kept.
//! - A request that an idle connection refused before a byte of it was
//!   written (the backend closed it just as it was taken) goes once more
//!   on a new connection, as hyper-util's client does.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use tower::Service;

use super::idle::IdleSet;
use super::UpstreamBody;
use crate::tls::client::UpstreamConnector;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Sender = http1::SendRequest<UpstreamBody>;

/// Why a request got no response from the pool.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened: the request never reached the
    /// backend.
    Connect(BoxError),
    /// The connection failed once the request was on it.
    Request(hyper::Error),
}

/// The connections to one backend: a cheap clone of one shared pool.
#[derive(Clone)]
pub(crate) struct Pool(Arc<Shared>);

struct Shared {
    idle: Arc<IdleSet<Sender>>,
    connector: UpstreamConnector,
    base: Uri,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    /// A pool of connections to `base`, opened by `connector`, at most
    /// `max_idle` kept idle, each for at most `idle_timeout`.
    pub(crate) fn new(
        base: Uri,
        connector: UpstreamConnector,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        Pool(Arc::new(Shared {
            idle: IdleSet::new(max_idle, idle_timeout, |sender: &Sender| {
                !sender.is_closed()
            }),
            connector,
            base,
            max_idle,
            idle_timeout,
        }))
    }

    /// Sends `req` (origin-form target, `Host` set) on an idle connection,
    /// else on a new one.
    pub(crate) async fn send(
        &self,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        if let Some(mut sender) = self.take_idle() {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.wrap(resp, sender)),
                Err(mut e) => match e.take_message() {
                    // Not a byte written: the backend closed it as it was
                    // taken. Once more, on a new connection.
                    Some(again) => req = again,
                    None => return Err(SendError::Request(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(self.wrap(resp, sender)),
            Err(e) => Err(SendError::Request(e.into_error())),
        }
    }

    fn wrap(&self, resp: Response<Incoming>, sender: Sender) -> Response<PooledBody> {
        let (parts, body) = resp.into_parts();
        let mut body = PooledBody {
            body,
            back: Some((sender, self.clone())),
        };
        // No body to read (HEAD, 204, 304, an empty 200): done already.
        if body.body.is_end_stream() {
            body.release();
        }
        Response::from_parts(parts, body)
    }

    /// The most recently used idle connection still fresh and ready; the
    /// others on the way are closed.
    fn take_idle(&self) -> Option<Sender> {
        self.0.idle.take(Sender::is_ready)
    }

    async fn connect(&self) -> Result<Sender, SendError> {
        let io = self
            .0
            .connector
            .clone()
            .call(self.0.base.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(Box::new(e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection closed");
            }
        });
        Ok(sender)
    }

    /// Keeps `sender` for another request if hyper says it is ready for
    /// one (its response read, its request sent, keep-alive) and there is
    /// room; else it is dropped, which closes it.
    fn put(&self, sender: Sender) {
        if sender.is_ready() {
            self.0.idle.put(sender);
        }
    }

    /// How many connections are idle now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.0.idle.len()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("base", &self.0.base)
            .field("max_idle", &self.0.max_idle)
            .field("idle_timeout", &self.0.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// A response body from a pooled connection: the connection goes back to
/// the pool when the body has been read to its end, and is closed when the
/// body is dropped before.
pub struct PooledBody {
    body: Incoming,
    back: Option<(Sender, Pool)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((sender, pool)) = self.back.take() {
            pool.put(sender);
        }
    }
}

impl fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            // Readers stop at the frame after which the body says it has
            // ended: the connection goes back then.
            Some(Ok(_)) if this.body.is_end_stream() => this.release(),
            Some(Ok(_)) => {}
            None => this.release(),
            // Never reused.
            Some(Err(_)) => this.back = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::tls::client::default_client_config;

    /// A backend on a raw socket answering every request of a connection
    /// with `answer`; counts the connections it accepted.
    async fn backend(answer: &'static str) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if stream.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    fn pool(base: Uri) -> Pool {
        let connector = UpstreamConnector::new(default_client_config(), Duration::from_secs(1));
        Pool::new(base, connector, 4, Duration::from_secs(4))
    }

    fn get(path: &str) -> Request<UpstreamBody> {
        Request::builder()
            .uri(path)
            .header("host", "backend.test")
            .body(UpstreamBody::default())
            .unwrap()
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn a_connection_whose_response_was_read_whole_is_reused() {
        let (base, accepted) = backend(OK).await;
        let pool = pool(base);
        for _ in 0..5 {
            let resp = pool.send(get("/")).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn a_response_dropped_before_its_end_closes_its_connection() {
        // Longer than its first frame can hold: the body is not read whole.
        let big: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: 300000\r\n\r\n{}",
                "x".repeat(300_000)
            )
            .into_boxed_str(),
        );
        let (base, accepted) = backend(big).await;
        let pool = pool(base);
        let mut body = pool.send(get("/")).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().unwrap().len() < 300_000);
        drop(body);
        assert_eq!(pool.idle(), 0, "a half-read connection is never kept");
        let resp = pool.send(get("/")).await.unwrap();
        let whole = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(whole.len(), 300_000);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cancelled_request_closes_its_connection() {
        // Reads the request, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base: Uri = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            // Until the proxy closes the connection.
            while !matches!(stream.read(&mut buf).await, Ok(0) | Err(_)) {}
            let _ = closed_tx.send(());
        });
        let pool = pool(base);
        let sending = pool.send(get("/"));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), sending)
                .await
                .is_err(),
            "the backend never answers"
        );
        closed_rx.await.unwrap();
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closes_is_not_kept() {
        let (base, accepted) =
            backend("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        let pool = pool(base);
        for _ in 0..3 {
            let resp = pool.send(get("/")).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn at_most_max_idle_connections_are_kept() {
        let (base, accepted) = backend(OK).await;
        let pool = pool(base);
        let resps = futures_util::future::join_all((0..6).map(|_| pool.send(get("/")))).await;
        for resp in resps {
            resp.unwrap().into_body().collect().await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 6);
        assert_eq!(pool.idle(), 4);
    }
}
