//! HTTP/1.1 cache hits answered from the parsed request head
//! (`server.fast_hits`).
//!
//! Most requests at the edge are hits of a few hot entries. Through the
//! general path each one becomes an `http::Request` (a header map built
//! and hashed), passes the connection's service, the route, the cache
//! layer and back, and its response is a header map encoded again by
//! hyper: several times the work of finding the entry. Here an HTTP/1.1
//! connection starts on a loop of its own that parses each request head
//! (with `httparse`, the parser hyper itself uses) and asks core for the
//! answer the store has at hand ([`HttpCache::answer_at_hand`]). When core
//! has one, its head is written as hyper would write it and its body goes
//! out as hyper's would (large bodies with `sendfile`, see [`crate::io`]).
//! A store that keeps its entries out of the process (Redis) has none at
//! hand: core then gives the request's plan ([`AtHandOrLater::Later`]),
//! and the loop waits on a lookup of the store
//! ([`HttpCache::answer_later`]) before it writes the hit, or lends the
//! request when there is none, with what the lookup found when that is
//! nothing ([`uip_cache_core::Looked`]: hyper's path takes it for its own
//! lookup instead of asking the store again).
//!
//! A request no policy takes ([`AtHandOrLater::Pass`]) whose route's
//! backends are all `http://` is relayed to them by the loop itself
//! (`relay`): the request and response as the general path edits and
//! frames them, on bare keep-alive sockets.
//!
//! Only requests whose answer through the general path could not differ
//! are taken: GET or HEAD over HTTP/1.1, an origin-form target that parses
//! as hyper parses it, exactly one `Host`, at most one `Cookie`, no body
//! (no `Content-Length` or `Transfer-Encoding`), no `Expect`, `Upgrade`,
//! hop-by-hop header or `Connection` other than `keep-alive` (the general
//! path removes those before keying), no `Range` (its answers may stream),
//! no forwarding header core would remove first, a route that takes the
//! request, and no debug logging (whose line the general path writes).
//! Every other request is answered by hyper, exactly as without this loop,
//! in one of two ways:
//!
//! - lent: a GET or HEAD over HTTP/1.1 with no body and no `Connection`
//!   other than `keep-alive` (a miss, a stale entry, a range, a policy's
//!   bypass, a route with an `https://` backend, a refused route...) is
//!   served by a hyper connection made for it alone, which reads that
//!   request's head ([`LendIo`]); once its answer is out
//!   hyper is asked to be done and the stream comes back to this loop,
//!   with whatever the client sent meanwhile. An answer that says
//!   `Connection: close` closes the connection, as hyper alone would.
//!   Lending costs a hyper connection per request: the fifth request in
//!   a row that would be lent (a client fetching new URLs) hands the
//!   connection over;
//! - handed over: anything else (a body, `Expect`, `Upgrade`, HTTP/1.0,
//!   `Connection: close`, a head that does not parse or is over 16 KiB)
//!   gives the connection to hyper for the rest of its life, with the bytes
//!   read so far given back first ([`Prefixed`]).
//!
//! Core counts nothing for a request it does not answer here, so each
//! request is counted once, by whichever path answers it.
//!
//! The connection is watched as hyper's is ([`crate::slow`]): the answer
//! is a request in progress on the watch while it is written, its body
//! is handed over in pieces counted as owed, and the connection closes
//! when its watch or the server says so.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use uip_cache_core::route::Route;
use uip_cache_core::{
    AtHandOrLater, CachedResponse, ClientOrigin, Connection, HeaderSource, HttpCache, Later,
    LaterAnswer, RequestView,
};

use super::Proxy;
use crate::proxy::Upstream;
use crate::routes::Snapshot;

mod fast;
mod head;
mod lend;
mod relay;

use relay::Relayable;

pub(super) use fast::Http1;
pub(super) use lend::{HyperConn, LendIo, Lent, LentConn, MakeHyper, MakeLent, Noted, Prefixed};

/// Bytes read for a request head before it goes to hyper as it is (which
/// takes larger heads, up to its own limit).
const HEAD_MAX: usize = 16 * 1024;

/// Room a connection reads into at first; it grows up to [`HEAD_MAX`]
/// for a larger head.
const READ_START: usize = 4 * 1024;

/// Header fields parsed here; a request with more goes to hyper.
const FIELDS_MAX: usize = 48;

/// Request fields after which hyper keeps the connection: a body, a
/// protocol change, an interim response, fields of the connection itself.
const FRAMING_REQUEST: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "expect",
    "upgrade",
    "te",
    "http2-settings",
    "keep-alive",
    "proxy-connection",
];

/// Request fields that make the general path answer the request (lent
/// the connection for it): hop-by-hop fields it removes before keying,
/// and `Range` (whose answers may be cut as they stream).
const GENERAL: [&str; 4] = ["proxy-authorization", "trailer", "range", "if-range"];

/// What answers the hits of one proxy connection.
#[derive(Clone)]
pub(crate) struct Hits {
    proxy: Proxy,
    connection: Connection,
}

impl Hits {
    /// For a connection of `proxy` with these facts.
    pub(crate) fn new(proxy: &Proxy, connection: Connection) -> Self {
        Hits {
            proxy: proxy.clone(),
            connection,
        }
    }

    /// What to do with a request head: answer it from the hit core has
    /// at hand, lend the connection to hyper for it, or hand the
    /// connection over (see the module docs).
    fn decide(&self, req: &httparse::Request<'_, '_>) -> Decision {
        let Some(method) = req.method else {
            return Decision::Handover;
        };
        if !matches!(method, "GET" | "HEAD") || req.version != Some(1) {
            return Decision::Handover;
        }
        // hyper frames a request with none of these as this loop does,
        // answers it and keeps the connection open. The same pass tells
        // whether the general path would answer it otherwise than from the
        // head: not one `Host`, cookies it joins, fields it removes.
        let (mut hosts, mut cookies, mut general) = (0, 0, false);
        for field in req.headers.iter() {
            let name = field.name;
            if name.eq_ignore_ascii_case("connection") {
                if !field.value.eq_ignore_ascii_case(b"keep-alive") {
                    return Decision::Handover;
                }
            } else if FRAMING_REQUEST.iter().any(|g| name.eq_ignore_ascii_case(g)) {
                return Decision::Handover;
            } else if name.eq_ignore_ascii_case("host") {
                hosts += 1;
            } else if name.eq_ignore_ascii_case("cookie") {
                cookies += 1;
            } else if GENERAL.iter().any(|g| name.eq_ignore_ascii_case(g)) {
                general = true;
            }
        }
        let snapshot = self.proxy.get_ref().snapshot();
        if !snapshot.settings().config().server.fast_hits {
            return Decision::Handover;
        }
        if hosts != 1 || cookies > 1 || general {
            return Decision::Lend;
        }
        self.answer(method, req, &snapshot)
            .unwrap_or(Decision::Lend)
    }

    /// What to do with a plain request head (one `Host`, at most one
    /// `Cookie`, no field the general path removes): write the hit core
    /// has at hand, ask the store for it, relay a request no policy takes
    /// to the `http://` backends of its route; `None` (lend) for every
    /// other.
    fn answer(
        &self,
        method: &str,
        req: &httparse::Request<'_, '_>,
        snapshot: &Arc<Snapshot>,
    ) -> Option<Decision> {
        if tracing::enabled!(tracing::Level::DEBUG) {
            return None;
        }
        let fields = Fields(req.headers);
        let (cache, uri, origin, route) = self.plain(req.path, &fields, snapshot)?;
        let view = RequestView::new(method, uri.path(), &fields)
            .query(uri.query())
            .origin(origin);
        match cache.answer_at_hand_or_later(&view) {
            AtHandOrLater::Answer(answer) => Some(Decision::Answer(answer)),
            AtHandOrLater::Later(later) => Some(Decision::LookUp(later, snapshot.clone())),
            AtHandOrLater::Pass(pass) => {
                if !relayable(&route) {
                    return None;
                }
                Some(Decision::Relay(Box::new(Relayable {
                    ticket: pass.ticket(&view),
                    route,
                    clock: self.proxy.get_ref().fail_clock().clone(),
                    request: relay::request_head(method, &uri, req.headers, self.connection),
                    head_only: method == "HEAD",
                })))
            }
            AtHandOrLater::No => None,
        }
    }

    /// The cache pinned to `snapshot`'s settings, the target as hyper
    /// makes it and the client's origin, for a request head (`target`,
    /// `fields`) whose route takes it and that has no field the cache would
    /// remove first; `None` for any other.
    #[allow(clippy::type_complexity)]
    fn plain<'f>(
        &self,
        target: Option<&str>,
        fields: &'f Fields<'_, '_>,
        snapshot: &Snapshot,
    ) -> Option<(HttpCache, http::Uri, ClientOrigin<'f>, Arc<Route<Upstream>>)> {
        let target = target?;
        if !target.starts_with('/') {
            return None;
        }
        // The target as hyper makes it (or its 400).
        let uri: http::Uri = target.parse().ok()?;
        let cache = self.proxy.cache();
        let route = snapshot
            .route_for(cache, &self.connection, None, fields, uri.path())
            .ok()?;
        let cache = cache.pinned(snapshot.settings().clone());
        let origin = cache.client_origin(&self.connection, None, fields);
        let strip = origin.strip();
        if fields.0.iter().any(|f| strip.contains(f.name)) {
            return None;
        }
        Some((cache, uri, origin, route))
    }

    /// The answer to the request of `head` (the bytes of a head that
    /// [`Hits::decide`] took for a [`Decision::LookUp`]) from the store,
    /// asked with a future; anything else is for the general path.
    fn look_up(&self, later: Later, snapshot: Arc<Snapshot>, head: Bytes) -> LookUp {
        let hits = self.clone();
        Box::pin(async move {
            let mut fields = [httparse::EMPTY_HEADER; FIELDS_MAX];
            let mut req = httparse::Request::new(&mut fields);
            // The head parsed as it was when it was decided on.
            let Ok(httparse::Status::Complete(_)) = req.parse(&head) else {
                return LaterAnswer::Other;
            };
            let Some(method) = req.method else {
                return LaterAnswer::Other;
            };
            let fields = Fields(req.headers);
            let Some((cache, uri, origin, _)) = hits.plain(req.path, &fields, &snapshot) else {
                return LaterAnswer::Other;
            };
            let view = RequestView::new(method, uri.path(), &fields)
                .query(uri.query())
                .origin(origin);
            cache.answer_later(later, &view).await
        })
    }
}

/// A lookup the fast loop waits on: the answer, or what the general path
/// takes over.
type LookUp = Pin<Box<dyn Future<Output = LaterAnswer> + Send>>;

/// What the fast loop does with a request head.
enum Decision {
    /// Write this answer.
    Answer(CachedResponse),
    /// Ask the store for the entry with a future (a store that keeps its
    /// entries out of the process: Redis), then write the answer or lend
    /// the connection.
    LookUp(Later, Arc<Snapshot>),
    /// A request no policy takes: relayed to its backend here.
    Relay(Box<Relayable>),
    /// A request without a body that keeps the connection open: hyper
    /// answers it, and gives the connection back.
    Lend,
    /// Anything else: hyper takes the connection for the rest of its life.
    Handover,
}

/// Whether the fast loop relays requests of `route`: every backend of it
/// is `http://` (the relay speaks HTTP/1.1 on bare sockets).
fn relayable(route: &Route<Upstream>) -> bool {
    let set = route.upstreams();
    !set.is_empty() && (0..set.len()).all(|i| set.client(i).raw().is_some())
}

/// Core's header lookup over a parsed head's fields.
struct Fields<'h, 'b>(&'h [httparse::Header<'b>]);

impl HeaderSource for Fields<'_, '_> {
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for field in self.0 {
            if field.name.eq_ignore_ascii_case(name) {
                f(field.value);
            }
        }
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case(name))
            .map(|field| field.value)
    }
}
