//! The accept loop every listener shares, and the first moments of a
//! connection: the per-client and the listener's connection limits, the
//! TLS handshake or the h2c preface, then [`super::conn`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use uip_cache_core::stats::ConnectionRefusal;
use uip_cache_core::HttpCache;

use super::clients::Clients;
use super::conn::{serve_h2, serve_http1, Conn, ConnBody, ConnService};
use super::hits::Hits;
use crate::io::ClientStream;
use crate::slow::{ClientLimits, Inflight, Watch, HEADER_READ_TIMEOUT};

/// What a listener speaks.
#[derive(Clone)]
pub(super) enum Protocol {
    /// HTTP/1.1 only (the admin API).
    Http1,
    /// HTTP/1.1, and HTTP/2 when the client opens with its preface (h2c).
    Http1AndH2c,
    /// TLS, then HTTP/2 or HTTP/1.1 as ALPN chose.
    Tls(TlsAcceptor),
}

/// How a listener treats its connections.
pub(super) struct Listener {
    /// Connections served at once; more are refused, not queued.
    pub(super) max: usize,
    /// Its name in log lines.
    pub(super) what: &'static str,
    pub(super) protocol: Protocol,
    pub(super) limits: ClientLimits,
    /// The bytes owed to clients, shared by the listeners of one server
    /// (`server.max_inflight_bytes` bounds them together).
    pub(super) inflight: Arc<Inflight>,
    /// How long the requests in flight may finish once it stops.
    pub(super) grace: Duration,
    /// The proxy listeners': the connections open per client (shared by
    /// the listeners of one server), and the cache whose settings give
    /// `server.max_connections_per_client` (read at each accept, so a
    /// reload changes it) and whose counters count the refusals.
    pub(super) per_client: Option<(Arc<Clients>, HttpCache)>,
}

/// The accept loop every listener shares: at most `max` connections,
/// `limits` on slow and idle clients (and on TLS handshakes), and on `shutdown` a drain of at most `grace`.
/// `make` gives the service of a connection from its peer.
pub(super) async fn accept_loop<S, B>(
    listener: TcpListener,
    config: Listener,
    shutdown: impl Future<Output = ()>,
    make: impl Fn(std::net::SocketAddr, &Arc<Watch>) -> (S, Option<Hits>),
) -> io::Result<()>
where
    S: ConnService<B>,
    B: ConnBody,
{
    let Listener {
        max,
        what,
        protocol,
        limits,
        inflight,
        grace,
        per_client,
    } = config;
    let listener_refusals = uip_cache_core::quiet::Quiet::new();
    let accept_failed = uip_cache_core::quiet::Quiet::new();
    let refused = |why: ConnectionRefusal| {
        if let Some((_, cache)) = &per_client {
            cache.stats().connection_refused(why);
        }
    };
    // Every connection holds a permit until it ends; the drain waits for
    // all of them back.
    let connections = Arc::new(Semaphore::new(max));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on
                    // (a line a second at most while it lasts).
                    if let Some(left_out) = accept_failed.admit() {
                        tracing::warn!(listener = what, error = %e, left_out, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Refused connections are closed at once, before any byte is read
        // or written (no TLS handshake is spent on them), with a reset: no
        // TIME_WAIT left behind for each.
        let slot = match &per_client {
            Some((clients, cache)) => {
                let settings = cache.settings();
                // A trusted proxy carries many clients: it is counted, not
                // limited (its own limits are the ones that can tell its
                // clients apart).
                let cap = if settings.trusted_proxies().contains(remote.ip()) {
                    0
                } else {
                    settings.config().server.max_connections_per_client
                };
                match clients.admit(remote.ip(), cap) {
                    Ok(slot) => Some(slot),
                    Err(client) => {
                        refused(ConnectionRefusal::PerClientLimit);
                        if let Some(left_out) = clients.warned.admit() {
                            tracing::warn!(
                                listener = what,
                                %client,
                                max = cap,
                                left_out,
                                "a client holds server.max_connections_per_client connections; refusing its new ones"
                            );
                        }
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        continue;
                    }
                }
            }
            None => None,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // At the limit: refuse rather than queue without bound.
            refused(ConnectionRefusal::ListenerLimit);
            if let Some(left_out) = listener_refusals.admit() {
                tracing::warn!(
                    listener = what,
                    max,
                    left_out,
                    "connection limit reached; refusing a connection"
                );
            }
            let _ = stream.set_zero_linger();
            drop((stream, slot));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watch = inflight.watch();
        let (service, hits) = make(remote, &watch);
        let stopped = stopped.clone();
        let protocol = protocol.clone();
        tokio::spawn(async move {
            // Both given back when the task ends, however it ends.
            let _held = (permit, slot);
            let conn = Conn {
                watch,
                limits,
                stopped,
            };
            if let Err(e) = serve_connection(stream, remote, protocol, service, hits, conn).await {
                tracing::debug!(listener = what, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(listener = what, grace = ?grace, "shutting down: finishing requests in flight");
    let _ = stop.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            listener = what,
            "requests still in flight after the shutdown grace period were cut"
        );
    }
    Ok(())
}

/// Serves one accepted connection in its own task: tells its protocol,
/// in the time a client has for that, then serves it to its end.
async fn serve_connection<S, B>(
    stream: TcpStream,
    remote: SocketAddr,
    protocol: Protocol,
    service: S,
    hits: Option<Hits>,
    mut conn: Conn,
) -> Result<(), hyper::Error>
where
    S: ConnService<B>,
    B: ConnBody,
{
    let watch = conn.watch.clone();
    match protocol {
        Protocol::Http1 => {
            serve_http1(
                ClientStream::new(stream).watched(watch),
                service,
                conn,
                hits,
            )
            .await
        }
        Protocol::Http1AndH2c => {
            // The version is read in the time a client has for its request
            // headers.
            let detected = tokio::select! {
                d = tokio::time::timeout(HEADER_READ_TIMEOUT, ClientStream::detect(stream)) => d,
                _ = conn.stopped.changed() => return Ok(()),
            };
            match detected {
                Ok(Ok((true, io))) => serve_h2(io.watched(watch), service, conn).await,
                Ok(Ok((false, io))) => serve_http1(io.watched(watch), service, conn, hits).await,
                _ => Ok(()),
            }
        }
        Protocol::Tls(acceptor) => {
            // The handshake's bytes count on the watch as the first
            // request's: its headers are due HEADER_READ_TIMEOUT after
            // the ClientHello began.
            let io = ClientStream::new(stream).watched(watch.clone());
            let handshake = tokio::select! {
                h = tokio::time::timeout(conn.limits.handshake_timeout, acceptor.accept(io)) => h,
                _ = conn.stopped.changed() => return Ok(()),
            };
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %remote, error = %e, "TLS handshake failed");
                    return Ok(());
                }
                Err(_) => {
                    tracing::debug!(peer = %remote, timeout = ?conn.limits.handshake_timeout, "TLS handshake not finished in time: closing");
                    watch.reset();
                    return Ok(());
                }
            };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                serve_h2(tls, service, conn).await
            } else {
                serve_http1(tls, service, conn, hits).await
            }
        }
    }
}
