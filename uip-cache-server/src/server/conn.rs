//! One connection, once its protocol is known: HTTP/1.1 or HTTP/2 served
//! by hyper over any watched stream (plain TCP, or TLS over it), and the
//! loop that closes it when its watch says so (see [`crate::slow`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::hits::{
    Hits, Http1, HyperConn, LendIo, Lent, LentConn, MakeHyper, MakeLent, Noted, Prefixed,
};
use crate::interim::{CloseOnDrop, InterimOpener, InterimStream};
use crate::slow::{now_ms, ClientLimits, DrainMark, Sent, Verdict, Watch, HEADER_READ_TIMEOUT};

/// How often an idle HTTP/2 connection is pinged, and how long the answer
/// may take.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Requests at once on one HTTP/2 connection (hyper's default is 200; each
/// can be a miss holding an upstream connection).
const H2_MAX_STREAMS: u32 = 64;

/// Request body bytes a client may send on an HTTP/2 stream, and on the
/// whole connection, before the proxy reads them.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 256 * 1024;

/// Response bytes buffered per HTTP/2 stream for a slow reader.
const H2_SEND_BUFFER: usize = 64 * 1024;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a listener serves a connection with, on either HTTP version: a
/// service whose futures may move between threads (HTTP/2 spawns them).
pub(super) trait ConnService<B>:
    hyper::service::Service<
        Request<Incoming>,
        Response = http::Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + Sync
    + 'static
{
}

impl<S, B> ConnService<B> for S where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = http::Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Send
        + Sync
        + 'static
{
}

/// The response body such a service gives.
pub(super) trait ConnBody:
    http_body::Body<Data: bytes::Buf + Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ConnBody for B where
    B: http_body::Body<Data: bytes::Buf + Send, Error: Into<BoxError>> + Send + 'static
{
}

/// A client connection's byte stream, already reporting to its watch.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T> Stream for T where T: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

/// What a connection's task needs besides its socket and service.
pub(super) struct Conn {
    pub(super) watch: Arc<Watch>,
    pub(super) limits: ClientLimits,
    pub(super) stopped: tokio::sync::watch::Receiver<bool>,
}

/// `service`, with each request counted in progress on `watch` until its
/// response body ends, and the body handed on in watched pieces. With
/// `interims` (an HTTP/1.1 connection), each HTTP/1.1 request carries its
/// [`Interims`](crate::interim::Interims), closed once its response is
/// ready.
fn watched<S, B>(
    service: Arc<S>,
    watch: Arc<Watch>,
    http2: bool,
    interims: Option<InterimOpener>,
    closes: Option<Arc<AtomicBool>>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = http::Response<Sent<B>>,
    Error = S::Error,
    Future: Send + Unpin + 'static,
> + Send
       + Sync
       + Unpin
       + 'static
where
    S: ConnService<B>,
    B: ConnBody,
{
    hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let exchange = watch.request();
        // Never to an HTTP/1.0 client (RFC 9110 section 15.2).
        let interims = interims
            .as_ref()
            .filter(|_| req.version() == http::Version::HTTP_11)
            .map(|opener| {
                let expects_continue = req
                    .headers()
                    .get(http::header::EXPECT)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
                let interims = opener.open(expects_continue);
                req.extensions_mut().insert(interims.clone());
                CloseOnDrop(interims)
            });
        let response = service.call(req);
        let closes = closes.clone();
        // Boxed, so that a connection lent one request by the fast loop
        // (see `super::hits`) can be polled without being pinned.
        Box::pin(async move {
            let response = response.await;
            // The final response is ready: no interim may follow its head.
            drop(interims);
            let response = response?;
            if let Some(closes) = &closes {
                let close = response
                    .headers()
                    .get_all(http::header::CONNECTION)
                    .iter()
                    .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
                closes.store(close, Ordering::Relaxed);
            }
            Ok(response.map(move |body| Sent::new(body, exchange, http2)))
        })
    })
}

/// Serves one HTTP/1.1 connection until it ends; on `stopped`, finishes
/// the request in flight and closes. With `hits`, its requests are first
/// answered without hyper while they are plain hits (see [`super::hits`]).
/// The backend's 1xx interim responses reach its client through an
/// [`InterimStream`].
pub(super) async fn serve_http1<I, S, B>(
    io: I,
    service: S,
    conn: Conn,
    hits: Option<Hits>,
) -> Result<(), hyper::Error>
where
    I: Stream,
    S: ConnService<B>,
    B: ConnBody,
{
    let watch = conn.watch.clone();
    let header_read_timeout = conn.limits.idle_timeout + HEADER_READ_TIMEOUT;
    let service = Arc::new(service);
    let builder = move || {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.keep_alive(true)
            // The watch closes idle connections and unfinished headers;
            // hyper's own header timer (which counts the idle time before a
            // request) is only a backstop past both. hyper needs a timer
            // for it.
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        http
    };
    let (lend_service, lend_watch) = (service.clone(), watch.clone());
    let lend: MakeLent<I> = Box::new(move |io: LendIo<I>, looked| {
        let io = InterimStream::new(io);
        let closes = Arc::new(AtomicBool::new(false));
        let service = Noted {
            inner: watched(
                lend_service.clone(),
                lend_watch.clone(),
                false,
                Some(io.opener()),
                Some(closes.clone()),
            ),
            looked: std::sync::Mutex::new(looked),
        };
        let conn = builder().serve_connection(TokioIo::new(io), service);
        Box::new(LentConn { conn, closes }) as Box<dyn Lent<I>>
    });
    let make: MakeHyper<I> = Box::new(move |io: Prefixed<I>| {
        let io = InterimStream::new(io);
        let service = watched(service, watch, false, Some(io.opener()), None);
        Box::pin(builder().serve_connection(TokioIo::new(io), service)) as Pin<Box<dyn HyperConn>>
    });
    let http = match hits {
        Some(hits) => Http1::fast(io, hits, conn.watch.clone(), make, lend),
        None => Http1::hyper(make(Prefixed::new(io))),
    };
    drive(http, Http1::drain, conn, false).await
}

/// Serves one HTTP/2 connection until it ends. Streams per connection and
/// buffered bytes per stream are bounded; a connection with no stream in
/// flight for `idle_timeout` is sent a GOAWAY, as an idle HTTP/1
/// connection is closed (a long download is not idle).
pub(super) async fn serve_h2<I, S, B>(io: I, service: S, conn: Conn) -> Result<(), hyper::Error>
where
    I: Stream,
    S: ConnService<B>,
    B: ConnBody,
{
    // hyper's HTTP/2 server cannot send a 1xx: no interims.
    let service = watched(Arc::new(service), conn.watch.clone(), true, None, None);
    let http = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_send_buf_size(H2_SEND_BUFFER)
        // Dead peers are found by pings.
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_INTERVAL)
        .serve_connection(TokioIo::new(io), service);
    drive(http, |c| c.graceful_shutdown(), conn, true).await
}

/// Runs a connection to its end. It is asked to finish (`drain`) when the
/// server stops or when its watch finds it idle (and reset if it has not
/// finished `send_timeout` after that); it is reset at once when the watch
/// finds it stalled or the in-flight bound chose it (see [`crate::slow`]).
async fn drive<C, E>(
    http: C,
    drain: impl Fn(std::pin::Pin<&mut C>),
    conn: Conn,
    http2: bool,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let Conn {
        watch,
        limits,
        mut stopped,
    } = conn;
    let mut http = std::pin::pin!(http);
    let mut stopping = false;
    let mut idle_drain: Option<u64> = None;
    let mut mark = DrainMark::default();
    let tick = limits.tick();
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let doomed = watch.doomed();
    let mut doomed = std::pin::pin!(doomed);
    let why = loop {
        tokio::select! {
            result = http.as_mut() => return result,
            _ = stopped.changed(), if !stopping => {
                stopping = true;
                if idle_drain.is_none() {
                    drain(http.as_mut());
                }
            }
            () = &mut doomed => break "past server.max_inflight_bytes, this connection stalled longest",
            _ = check.tick() => {
                let now = now_ms();
                match watch.check(&limits, now, http2, &mut mark) {
                    Verdict::Stalled(why) => break why,
                    Verdict::Idle if idle_drain.is_none() && !stopping => {
                        idle_drain = Some(now);
                        drain(http.as_mut());
                    }
                    _ => {}
                }
                let send = u64::try_from(limits.send_timeout.as_millis()).unwrap_or(u64::MAX);
                if idle_drain.is_some_and(|since| now.saturating_sub(since) >= send) {
                    break "an idle connection did not close within send_timeout";
                }
            }
        }
    };
    tracing::debug!(reason = why, "closing a slow client's connection");
    watch.reset();
    Ok(())
}
