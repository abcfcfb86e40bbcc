//! Requests no policy takes, relayed by the fast loop itself to a plain
//! `http://` backend: the request head written as the general path's
//! upstream client writes it, the response head read, edited as the
//! general path edits it, and its body passed on, with no `http::Request`,
//! header map, hyper connection or task of its own on the way.
//!
//! What the general path does, done the same way:
//!
//! - the request: the client's fields in lower case, without hop-by-hop
//!   ones, with core's forwarding edits ([`upstream_edits`]) and `Via`
//!   added; the target as hyper parses it (origin-form);
//! - the response: hop-by-hop fields and those `Connection` names removed,
//!   `Via` added, core's edits for a bypass (`X-Cache`, `Cache-Status`,
//!   [`BypassTicket::origin_responded`]), written as hyper's server writes
//!   a head; 1xx responses other than 101 passed on first (at most
//!   [`MAX_INTERIMS`], [`MAX_INTERIM_BYTES`] bytes), an unsolicited 100
//!   dropped;
//! - framing: a body of a known length goes on with that length; a
//!   chunked one, or one that ends when the backend closes, goes on
//!   chunked (its chunk extensions and trailer fields dropped, as hyper
//!   drops them for a client that did not ask for trailers); a HEAD, 204
//!   or 304 has none. A `Content-Length` that is not one number, a
//!   response head over [`RESPONSE_HEAD_MAX`] bytes or
//!   [`RESPONSE_FIELDS_MAX`] fields, bytes that are not HTTP/1.x: 502.
//!   Each 1xx read is dropped from memory once passed on, and they all
//!   count against the timeout;
//! - failures: no connection is a 502, no final response head within the
//!   route's timeout (1xx included) a 504, a connection that fails before a whole head a
//!   502, each with the general path's body; a body that ends short or
//!   is not valid chunked coding closes the client's connection (the
//!   client must not read what follows as the rest of it);
//! - a connection to the backend is reused only when its response was
//!   read to its exact end, nothing followed it, and neither side said
//!   `close`; a request on a reused connection that met its closing before
//!   any byte of a response came is sent once more on a new connection (a
//!   GET or HEAD without a body, which the backend had not answered).
//!
//! Only what the fast loop takes reaches here: GET or HEAD over HTTP/1.1
//! without a body, `Expect`, `Upgrade` or a hop-by-hop field, exactly one
//! `Host`, no forwarding field core would remove, a route whose backends
//! are all `http://`. Everything else goes to hyper as before.
//!
//! The backends of a route take turns as on the general path
//! ([`UpstreamSet::attempts`](uip_cache_core::route::UpstreamSet::attempts)):
//! one that cannot be connected to is marked down for `fail_timeout` and
//! the request goes on to the next.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use uip_cache_core::forwarding::upstream_edits;
use uip_cache_core::route::Route;
use uip_cache_core::{BypassTicket, Clock, Connection, HeaderEdit, HeaderEdits, HeaderSource};

use super::head::{encode, encode_interim, put, valid_value, Framing};
use super::Fields;
use crate::interim::{MAX_INTERIMS, MAX_INTERIM_BYTES};
use crate::proxy::quiet;
use crate::proxy::{
    error_text, is_hop_by_hop, Chunked, Decoded, RawPool, Upstream, CONNECTION_FAILED, REFUSED,
    TIMED_OUT,
};
use crate::slow::{Exchange, HTTP1_PIECE};

/// A response head larger than this is a 502 (about hyper's client's
/// limit).
pub(super) const RESPONSE_HEAD_MAX: usize = 400 * 1024;

/// Fields a response head may have (hyper's client takes as many).
const RESPONSE_FIELDS_MAX: usize = 100;

/// Room for reading a response body a piece at a time (as much as the
/// slow-client watch takes at once: fewer, larger reads and writes for a
/// large body).
const READ_ROOM: usize = HTTP1_PIECE;

/// Room a response head is first read into; a connection keeps this much
/// between its requests, no more.
const HEAD_ROOM: usize = 8 * 1024;

const VIA: &[u8] = b"1.1 uip-cache";

/// A request the fast loop relays, as it decided it.
pub(super) struct Relayable {
    /// Its route (every backend `http://`), and the clock its backends'
    /// `fail_timeout` is read on.
    pub(super) route: Arc<Route<Upstream>>,
    pub(super) clock: Clock,
    /// The bypass, counted.
    pub(super) ticket: BypassTicket,
    /// The request head for the backend ([`request_head`]).
    pub(super) request: Vec<u8>,
    pub(super) head_only: bool,
}

/// A request the fast loop relays: what [`relay`] needs of it.
pub(super) struct Relay {
    pub(super) relayable: Relayable,
    /// The request, in progress on the connection's watch.
    pub(super) exchange: Exchange,
    /// The client sent more requests after it, read already.
    pub(super) pipelined: bool,
}

/// How a relayed exchange left the client's connection.
pub(super) enum Relayed {
    /// The answer is written whole: the next request may come.
    Open,
    /// The answer could not be written whole: close the connection.
    Close,
}

/// Bytes a client may send while its request waits on the backend that
/// are read meanwhile (to see whether it leaves); past them it is not
/// read until its answer is written.
const EARLY_MAX: usize = 16 * 1024;

/// What a relay gives back to the fast loop.
pub(super) struct Done<I> {
    /// The client's stream.
    pub(super) io: I,
    /// Bytes the client sent while its request waited.
    pub(super) early: Vec<u8>,
    /// The room the response was read into, for the next relay.
    pub(super) room: Vec<u8>,
    pub(super) result: io::Result<Relayed>,
}

/// Relays one request on `io`, the client's stream, reading the response
/// into `room`, and gives all back with what became of it.
pub(super) async fn relay<I>(mut io: I, relay: Relay, mut room: Vec<u8>) -> Done<I>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut early = Vec::new();
    room.clear();
    let result = exchange(&mut io, relay, &mut early, &mut room).await;
    if room.capacity() > HEAD_ROOM {
        room = Vec::new();
    }
    Done {
        io,
        early,
        room,
        result,
    }
}

/// The final response head at the start of `buf`, as the client gets it
/// (fields to edit, framing), when it is one the relay takes.
struct Final<'b> {
    status: u16,
    framing: Body,
    reusable: bool,
    fields: Vec<(&'b str, &'b [u8])>,
}

fn final_head(buf: &[u8], head_only: bool) -> Result<Final<'_>, &'static str> {
    let mut parsed = [httparse::EMPTY_HEADER; RESPONSE_FIELDS_MAX];
    let mut resp = httparse::Response::new(&mut parsed);
    let Ok(httparse::Status::Complete(_)) = resp.parse(buf) else {
        return Err("a response head that is not HTTP/1.x");
    };
    let status = resp.code.unwrap_or(0);
    let named = |name: &str| {
        resp.headers
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(name))
    };
    let (coded, length) = (named("transfer-encoding"), named("content-length"));
    let framing = framing(&resp, head_only)?;
    if coded && resp.version != Some(1) && !matches!(framing, Body::None) {
        // As hyper's client: HTTP/1.0 has no transfer codings (for an
        // answer with a body).
        return Err("a transfer coding in an HTTP/1.0 response");
    }
    // A coding beside a length is how responses are smuggled: the
    // connection is not trusted with another request.
    let reusable = resp.version == Some(1)
        && !says_close(resp.headers)
        && framing.ends_alone()
        && !(coded && length);
    // The backend's first length goes on as it is (checked by `framing`
    // for a body: one number, or a list of that number), as the general
    // path passes it: none beside a coding, none for a 204 or 304 to a
    // GET (the answer to a HEAD keeps it whatever its status), and an
    // empty body's is written `0` (as hyper writes it).
    let keep_length = !coded
        && (head_only || (status != 204 && status != 304 && matches!(framing, Body::Length(1..))));
    let fields = response_fields(resp.headers, keep_length);
    Ok(Final {
        status,
        framing,
        reusable,
        fields,
    })
}

async fn exchange<I: AsyncRead + AsyncWrite + Unpin>(
    io: &mut I,
    relay: Relay,
    early: &mut Vec<u8>,
    buf: &mut Vec<u8>,
) -> io::Result<Relayed> {
    let Relay {
        relayable:
            Relayable {
                route,
                clock,
                ticket,
                request,
                head_only,
            },
        exchange,
        pipelined,
    } = relay;
    // The backends of the route take turns; one that cannot be connected
    // to is skipped for the route's fail_timeout and the request goes on
    // to the next (it has no body: it can be sent again), as the general
    // path's routes do.
    let set = route.upstreams();
    let mut got = None;
    for i in set.attempts(clock.instant()) {
        let upstream = set.client(i);
        let Some(raw) = upstream.raw() else { continue };
        let timeout = upstream.timeout();
        // The final response head, 1xx before it included, within the
        // timeout.
        let deadline = tokio::time::Instant::now() + timeout;
        buf.clear();
        // A client that leaves while its request waits gives it up, as
        // the general path does: the backend's connection is closed.
        let sent = tokio::select! {
            biased;
            sent = tokio::time::timeout_at(deadline, send(raw, &request, buf)) => sent,
            () = left(io, early, pipelined) => return Ok(Relayed::Close),
        };
        match sent {
            Ok(Err(Failure::Connect(e))) => {
                if let Some(left_out) = quiet::FAILED.admit() {
                    tracing::warn!(upstream = set.url(i), error = %e, left_out, "upstream request failed");
                }
                crate::routes::mark_down(&route, i, &clock);
            }
            sent => {
                set.succeeded(i);
                got = Some((sent, raw, timeout, deadline));
                break;
            }
        }
    }
    drop(request);
    let Some((sent, raw, timeout, deadline)) = got else {
        return NoAnswer::Refused.answer(io, &ticket, head_only).await;
    };
    let (mut socket, mut head_len, mut status) = match NoAnswer::of(sent, timeout) {
        Ok(got) => got,
        Err(no) => return no.answer(io, &ticket, head_only).await,
    };
    // 1xx responses first, then the final one.
    let mut interims = Interims::default();
    while status < 200 {
        if status == 101 {
            let why = "a 101 to a request that asked no upgrade".to_owned();
            return NoAnswer::Failed(why).answer(io, &ticket, head_only).await;
        }
        interims.pass(io, status, &buf[..head_len]).await?;
        buf.drain(..head_len);
        let next = tokio::time::timeout_at(deadline, read_head(&mut socket, buf)).await;
        let next = next.map(|read| read.map_err(|e| Failure::Request(e.to_string())));
        (head_len, status) = match NoAnswer::of(next, timeout) {
            Ok(got) => got,
            Err(no) => return no.answer(io, &ticket, head_only).await,
        };
    }
    let mut out = Vec::with_capacity(head_len + 256);
    let (framing, reusable) = {
        let head = match final_head(&buf[..head_len], head_only) {
            Ok(head) => head,
            Err(why) => {
                let no = NoAnswer::Failed(why.to_owned());
                return no.answer(io, &ticket, head_only).await;
            }
        };
        let edits = edits(&ticket, head.status, &head.fields).await;
        let fields = edited(head.fields, &edits);
        let client_framing = match head.framing {
            Body::None => Framing::Length(0),
            Body::Length(n) => Framing::Length(n),
            Body::Chunked(_) | Body::UntilClose => Framing::Chunked,
        };
        encode(&mut out, head.status, &fields, head_only, client_framing);
        (head.framing, head.reusable)
    };
    let mut pass = Pass {
        io,
        exchange: &exchange,
        head: out,
        early,
        pipelined,
    };
    let ended = match framing {
        Body::None => {
            pass.head_only().await?;
            End::Whole {
                extra: buf.len() > head_len,
            }
        }
        Body::Length(n) => pass.length(&mut socket, buf, head_len, n).await?,
        Body::Chunked(mut chunked) => {
            pass.chunked(&mut socket, buf, head_len, &mut chunked)
                .await?
        }
        Body::UntilClose => pass.until_close(&mut socket, buf, head_len).await?,
    };
    match ended {
        End::Whole { extra } => {
            if reusable && !extra {
                raw.put(socket);
            }
            Ok(Relayed::Open)
        }
        End::Short => Ok(Relayed::Close),
    }
}

/// Resolves when the client closes its side of the connection (or it
/// fails) with nothing more sent: then it left, and hyper gives up such a
/// request too. What it sends meanwhile is kept in `early`, up to
/// [`EARLY_MAX`] bytes. A client that sent more requests (`pipelined`, or
/// in `early`) before closing its side is answered, as hyper answers it.
async fn left<I: AsyncRead + Unpin>(io: &mut I, early: &mut Vec<u8>, pipelined: bool) {
    loop {
        if early.len() >= EARLY_MAX {
            return std::future::pending().await;
        }
        early.reserve(4096);
        match io.read_buf(early).await {
            Ok(0) | Err(_) if pipelined || !early.is_empty() => {
                return std::future::pending().await
            }
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The request head for the backend: the client's fields (`fields`, of
/// a request the fast loop took) without hop-by-hop ones, core's
/// forwarding edits for `connection`, `Via`.
pub(super) fn request_head(
    method: &str,
    target: &http::Uri,
    fields: &[httparse::Header<'_>],
    connection: Connection,
) -> Vec<u8> {
    let path = target.path_and_query().map_or("/", |p| p.as_str());
    let edits = upstream_edits(Some(connection), &Fields(fields));
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for field in fields {
        let edited = |e: &HeaderEdit<'_>| match e {
            HeaderEdit::Remove(n) | HeaderEdit::Set(n, _) => field.name.eq_ignore_ascii_case(n),
        };
        if is_hop_by_hop(field.name) || edits.iter().any(edited) {
            continue;
        }
        put(&mut out, field.name, field.value);
    }
    for edit in edits.iter() {
        if let HeaderEdit::Set(name, value) = edit {
            if valid_value(value) {
                put(&mut out, name, value);
            }
        }
    }
    put(&mut out, "via", VIA);
    out.extend_from_slice(b"\r\n");
    out
}

enum Failure {
    Connect(Box<dyn std::error::Error + Send + Sync>),
    Request(String),
}

/// Sends `request` on an idle socket of `raw`, else on a new one, and
/// reads a response head into `buf`: the socket, the head's length and
/// its status.
async fn send(
    raw: &RawPool,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(TcpStream, usize, u16), Failure> {
    // Whether the request was written whole on a kept socket: the backend
    // may have seen it, so it never goes to another backend after that.
    let mut written = false;
    if let Some(mut socket) = raw.take() {
        // A socket the backend closed while it was idle fails before a
        // byte of a response: then once more on a new one, to the same
        // backend (a GET or HEAD without a body).
        if socket.write_all(request).await.is_ok() {
            written = true;
            match read_head(&mut socket, buf).await {
                Ok((len, status)) => return Ok((socket, len, status)),
                Err(HeadError::ClosedEmpty) => buf.clear(),
                Err(e) => return Err(Failure::Request(e.to_string())),
            }
        }
    }
    let mut socket = match raw.connect().await {
        Ok(socket) => socket,
        Err(e) if written => return Err(Failure::Request(e.to_string())),
        Err(e) => return Err(Failure::Connect(e)),
    };
    socket
        .write_all(request)
        .await
        .map_err(|e| Failure::Request(e.to_string()))?;
    let (len, status) = read_head(&mut socket, buf)
        .await
        .map_err(|e| Failure::Request(e.to_string()))?;
    Ok((socket, len, status))
}

#[derive(Debug)]
enum HeadError {
    /// Closed (or reset) before any byte of a response.
    ClosedEmpty,
    /// Closed within a head.
    Closed,
    Io(io::Error),
    Invalid(&'static str),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::ClosedEmpty => f.write_str("closed before a response"),
            HeadError::Closed => f.write_str("closed within a response head"),
            HeadError::Io(e) => write!(f, "{e}"),
            HeadError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Reads into `buf` until it holds a whole response head at its start:
/// its length and status.
async fn read_head(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(usize, u16), HeadError> {
    loop {
        if !buf.is_empty() {
            let mut parsed = [httparse::EMPTY_HEADER; RESPONSE_FIELDS_MAX];
            let mut resp = httparse::Response::new(&mut parsed);
            match resp.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    // As hyper's client: a status of three digits, 100 up.
                    return match resp.code {
                        Some(code @ 100..=999) => Ok((len, code)),
                        _ => Err(HeadError::Invalid("a status under 100")),
                    };
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HeadError::Invalid("a response head with too many fields"))
                }
                Err(_) => return Err(HeadError::Invalid("a response head that is not HTTP/1.x")),
            }
            if buf.len() >= RESPONSE_HEAD_MAX {
                return Err(HeadError::Invalid("a response head too large"));
            }
        }
        let before = buf.len();
        if buf.capacity() - before < 2048 {
            buf.reserve(if before == 0 { HEAD_ROOM } else { READ_ROOM });
        }
        let n = match socket.read_buf(buf).await {
            Ok(n) => n,
            Err(e) if before == 0 && closing(&e) => return Err(HeadError::ClosedEmpty),
            Err(e) => return Err(HeadError::Io(e)),
        };
        if n == 0 {
            return Err(if before == 0 {
                HeadError::ClosedEmpty
            } else {
                HeadError::Closed
            });
        }
    }
}

fn closing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// How the backend frames the body.
enum Body {
    None,
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl Body {
    /// Whether the body's end is known without the connection closing.
    fn ends_alone(&self) -> bool {
        !matches!(self, Body::UntilClose)
    }
}

/// The framing of a response (RFC 9112 section 6.3).
fn framing(resp: &httparse::Response<'_, '_>, head_only: bool) -> Result<Body, &'static str> {
    let status = resp.code.unwrap_or(0);
    if head_only || status == 204 || status == 304 {
        return Ok(Body::None);
    }
    let mut chunked = None;
    let mut length: Option<u64> = None;
    let mut codings = false;
    for field in resp.headers.iter() {
        if field.name.eq_ignore_ascii_case("transfer-encoding") {
            codings = true;
            let value = std::str::from_utf8(field.value)
                .map_err(|_| "a transfer coding that is not text")?;
            // Only the last coding of the last field tells whether the
            // body is chunked (`chunked,` ends with an empty one: it is
            // not, as hyper's client reads it).
            let last = value.split(',').next_back().unwrap_or("").trim();
            chunked = Some(last.eq_ignore_ascii_case("chunked"));
        }
    }
    if codings {
        // A transfer coding wins over a length (RFC 9112 section 6.3),
        // which is then not read at all (as hyper's client).
        return Ok(match chunked {
            Some(true) => Body::Chunked(Chunked::default()),
            _ => Body::UntilClose,
        });
    }
    for field in resp.headers.iter() {
        if !field.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        for part in field.value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err("a Content-Length that is not a number");
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("a Content-Length that is not a number")?;
            match length {
                Some(l) if l != n => return Err("Content-Length fields that differ"),
                _ => length = Some(n),
            }
        }
    }
    Ok(match length {
        Some(n) => Body::Length(n),
        None => Body::UntilClose,
    })
}

/// The tokens of a message's `Connection` fields.
fn connection_tokens<'a>(fields: &'a [httparse::Header<'_>]) -> impl Iterator<Item = &'a [u8]> {
    fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("connection"))
        .flat_map(|f| f.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Whether the backend said it closes the connection.
fn says_close(fields: &[httparse::Header<'_>]) -> bool {
    connection_tokens(fields).any(|t| t.eq_ignore_ascii_case(b"close"))
}

/// The response's fields for the client: hop-by-hop ones and those its
/// `Connection` names removed, `Via` added; of its `Content-Length`
/// fields the first when `keep_length`, none otherwise (a chunked body
/// goes on without one).
fn response_fields<'a>(
    fields: &[httparse::Header<'a>],
    keep_length: bool,
) -> Vec<(&'a str, &'a [u8])> {
    let named = |name: &str| {
        connection_tokens(fields).any(|t| {
            !t.is_empty()
                && t.eq_ignore_ascii_case(name.as_bytes())
                && !t.eq_ignore_ascii_case(b"host")
                && !t.eq_ignore_ascii_case(b"content-length")
        })
    };
    let mut length = keep_length;
    let mut kept: Vec<(&str, &[u8])> = fields
        .iter()
        .filter(|f| !is_hop_by_hop(f.name) && !named(f.name))
        .filter(|f| {
            if !f.name.eq_ignore_ascii_case("content-length") {
                return true;
            }
            // The first, as it is (as hyper's server writes a HEAD's: no
            // body follows it either way).
            std::mem::replace(&mut length, false)
        })
        .map(|f| (f.name, f.value))
        .collect();
    kept.push(("via", VIA));
    kept
}

/// `fields` with core's `edits` applied.
fn edited<'a>(
    mut fields: Vec<(&'a str, &'a [u8])>,
    edits: &'a HeaderEdits<'_>,
) -> Vec<(&'a str, &'a [u8])> {
    for edit in edits.iter() {
        match edit {
            HeaderEdit::Remove(name) => fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name)),
            HeaderEdit::Set(name, value) => {
                if !valid_value(value) {
                    continue;
                }
                fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                fields.push((name, value));
            }
        }
    }
    fields
}

/// Core's changes to an answer's fields for `ticket`: at once for a GET
/// or HEAD; the wait of an unsafe request's invalidation (which the relay
/// never takes) is boxed, so that its room is not in every exchange.
async fn edits<'t>(
    ticket: &'t BypassTicket,
    status: u16,
    fields: &(dyn HeaderSource + Sync),
) -> HeaderEdits<'t> {
    match ticket.origin_responded_now(fields) {
        Some(edits) => edits,
        None => Box::pin(ticket.origin_responded(status, fields)).await,
    }
}

/// Why the backend gave no answer to pass on: the general path's own
/// answer for it, and its log line.
enum NoAnswer {
    /// No backend of the route could be connected to (each attempt logged).
    Refused,
    /// The connection failed, or what came is not an answer the relay
    /// takes.
    Failed(String),
    /// No final head within the timeout.
    Late(Duration),
}

impl NoAnswer {
    /// A read of a response head (first or next) under `timeout`: what it
    /// got, or why there is nothing to pass on. Never a connect failure,
    /// which the next backend is tried for.
    fn of<T>(
        read: Result<Result<T, Failure>, tokio::time::error::Elapsed>,
        timeout: Duration,
    ) -> Result<T, NoAnswer> {
        match read {
            Ok(Ok(got)) => Ok(got),
            Ok(Err(Failure::Connect(_))) => unreachable!("the next backend was tried"),
            Ok(Err(Failure::Request(why))) => Err(NoAnswer::Failed(why)),
            Err(_) => Err(NoAnswer::Late(timeout)),
        }
    }

    /// Logs it and writes the proxy's own answer, as the general path
    /// does (`crate::proxy::Upstream`).
    async fn answer<I: AsyncWrite + Unpin>(
        self,
        io: &mut I,
        ticket: &BypassTicket,
        head_only: bool,
    ) -> io::Result<Relayed> {
        let (code, message) = match self {
            NoAnswer::Refused => (StatusCode::BAD_GATEWAY, REFUSED),
            NoAnswer::Failed(why) => {
                if let Some(left_out) = quiet::FAILED.admit() {
                    tracing::warn!(error = %why, left_out, "upstream request failed");
                }
                (StatusCode::BAD_GATEWAY, CONNECTION_FAILED)
            }
            NoAnswer::Late(timeout) => {
                if let Some(left_out) = quiet::TIMED_OUT.admit() {
                    tracing::warn!(?timeout, left_out, "upstream timed out");
                }
                (StatusCode::GATEWAY_TIMEOUT, TIMED_OUT)
            }
        };
        let status = code.as_u16();
        let body = error_text(code, message);
        let len = body.len() as u64;
        // Written for a HEAD too, as hyper writes a known length.
        let length = len.to_string();
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("content-type", b"text/plain; charset=utf-8"),
            ("cache-control", b"no-store"),
            ("content-length", length.as_bytes()),
        ];
        let edits = edits(ticket, status, &fields).await;
        fields = edited(fields, &edits);
        let mut out = Vec::with_capacity(256);
        encode(&mut out, status, &fields, head_only, Framing::Length(len));
        if !head_only {
            out.extend_from_slice(&body);
        }
        io.write_all(&out).await?;
        io.flush().await?;
        Ok(Relayed::Open)
    }
}

/// The 1xx responses passed on for one request.
#[derive(Default)]
struct Interims {
    count: usize,
    bytes: usize,
}

impl Interims {
    /// Passes on the 1xx response `head` (other than 101) if the client may
    /// have it: not an unsolicited 100, within the limits.
    async fn pass<I: AsyncWrite + Unpin>(
        &mut self,
        io: &mut I,
        status: u16,
        head: &[u8],
    ) -> io::Result<()> {
        if status == 100 || self.count >= MAX_INTERIMS {
            return Ok(());
        }
        let Some(out) = interim(status, head) else {
            return Ok(());
        };
        if self.bytes + out.len() > MAX_INTERIM_BYTES {
            return Ok(());
        }
        self.count += 1;
        self.bytes += out.len();
        io.write_all(&out).await?;
        io.flush().await
    }
}

/// The 1xx response `head` as the client gets it.
fn interim(status: u16, head: &[u8]) -> Option<Vec<u8>> {
    let mut parsed = [httparse::EMPTY_HEADER; RESPONSE_FIELDS_MAX];
    let mut resp = httparse::Response::new(&mut parsed);
    let Ok(httparse::Status::Complete(_)) = resp.parse(head) else {
        return None;
    };
    // A 1xx has no content (RFC 9110 section 8.6).
    let fields = response_fields(resp.headers, false);
    let mut out = Vec::with_capacity(head.len() + 32);
    encode_interim(&mut out, status, &fields);
    Some(out)
}

/// How a body ended.
enum End {
    /// Read to its end; `extra`: bytes followed it.
    Whole { extra: bool },
    /// The backend closed or broke it before its end.
    Short,
}

/// A response on its way to the client.
struct Pass<'a, I> {
    io: &'a mut I,
    exchange: &'a Exchange,
    /// The head, until it goes with the first bytes of the body.
    head: Vec<u8>,
    /// What the client sends meanwhile, and whether it sent requests in a
    /// row with this one (see [`left`]).
    early: &'a mut Vec<u8>,
    pipelined: bool,
}

/// What a read of the backend gave, while the client was watched.
enum Got {
    Data(usize),
    /// The backend closed.
    End,
    /// The read failed, or the client left meanwhile.
    Failed,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Pass<'_, I> {
    /// Reads the next piece of the body, at most `limit` bytes, from
    /// `socket` into `buf` (emptied first), the head written before the
    /// wait; a client that leaves meanwhile gives the body up (and the
    /// backend's connection with it), as hyper gives up a body whose
    /// client left.
    async fn read(
        &mut self,
        socket: &mut TcpStream,
        buf: &mut Vec<u8>,
        limit: usize,
    ) -> io::Result<Got> {
        self.head_only().await?;
        buf.clear();
        buf.reserve(limit);
        let Pass {
            io,
            early,
            pipelined,
            ..
        } = self;
        let mut limited = (&mut *socket).take(limit as u64);
        Ok(tokio::select! {
            biased;
            read = limited.read_buf(buf) => match read {
                Ok(0) => Got::End,
                Ok(n) => Got::Data(n),
                Err(_) => Got::Failed,
            },
            () = left(&mut **io, early, *pipelined) => Got::Failed,
        })
    }

    /// Writes the head if it is not written yet: before the relay waits
    /// on the backend for body bytes, so that the client has it meanwhile
    /// (as hyper writes a head as soon as it has it).
    async fn head_only(&mut self) -> io::Result<()> {
        if self.head.is_empty() {
            return Ok(());
        }
        let head = std::mem::take(&mut self.head);
        self.io.write_all(&head).await?;
        self.io.flush().await
    }

    /// Writes the head (if not yet written) and `data` as it is.
    async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return self.head_only().await;
        }
        for piece in data.chunks(HTTP1_PIECE) {
            self.exchange.handed(piece.len());
            let head = std::mem::take(&mut self.head);
            write_all(self.io, &[&head, piece]).await?;
        }
        self.io.flush().await
    }

    /// Writes the head (if not yet written) and `data` as one chunk.
    async fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let size = format!("{:x}\r\n", data.len());
        self.exchange.handed(data.len());
        let head = std::mem::take(&mut self.head);
        write_all(self.io, &[&head, size.as_bytes(), data, b"\r\n"]).await?;
        self.io.flush().await
    }

    /// Writes the last chunk (and the head, if not yet written).
    async fn last_chunk(&mut self) -> io::Result<()> {
        let head = std::mem::take(&mut self.head);
        write_all(self.io, &[&head, b"0\r\n\r\n"]).await?;
        self.io.flush().await
    }

    /// A body of `len` bytes, the first of them in `buf` from `start`.
    async fn length(
        &mut self,
        socket: &mut TcpStream,
        buf: &mut Vec<u8>,
        start: usize,
        len: u64,
    ) -> io::Result<End> {
        let first = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(buf.len() - start);
        let extra = buf.len() - start > first;
        self.write(&buf[start..start + first]).await?;
        let mut left = len - first as u64;
        while left > 0 {
            let room = usize::try_from(left).unwrap_or(usize::MAX).min(READ_ROOM);
            let n = match self.read(socket, buf, room).await? {
                Got::Data(n) => n,
                Got::End | Got::Failed => return Ok(End::Short),
            };
            left -= n as u64;
            self.write(&buf[..n]).await?;
        }
        Ok(End::Whole { extra })
    }

    /// A chunked body, its first bytes in `buf` from `start`.
    async fn chunked(
        &mut self,
        socket: &mut TcpStream,
        buf: &mut Vec<u8>,
        start: usize,
        chunked: &mut Chunked,
    ) -> io::Result<End> {
        let mut at = start;
        loop {
            while at < buf.len() {
                match chunked.decode(&buf[at..]) {
                    Ok((taken, Decoded::Data(data))) => {
                        at += taken;
                        self.chunk(data).await?;
                    }
                    Ok((taken, Decoded::More)) => at += taken,
                    Ok((taken, Decoded::End)) => {
                        self.last_chunk().await?;
                        return Ok(End::Whole {
                            extra: at + taken < buf.len(),
                        });
                    }
                    Err(why) => {
                        if let Some(left_out) = quiet::CHUNKED.admit() {
                            tracing::warn!(
                                error = why.0,
                                left_out,
                                "upstream body is not valid chunked coding"
                            );
                        }
                        return Ok(End::Short);
                    }
                }
            }
            at = 0;
            match self.read(socket, buf, READ_ROOM).await? {
                Got::Data(_) => {}
                Got::End | Got::Failed => return Ok(End::Short),
            }
        }
    }

    /// A body that ends when the backend closes, its first bytes in `buf`
    /// from `start`.
    async fn until_close(
        &mut self,
        socket: &mut TcpStream,
        buf: &mut Vec<u8>,
        start: usize,
    ) -> io::Result<End> {
        self.chunk(&buf[start..]).await?;
        loop {
            match self.read(socket, buf, READ_ROOM).await? {
                Got::Data(_) => self.chunk(buf).await?,
                Got::End => break,
                // Its end is where it closed: a reset is no end.
                Got::Failed => return Ok(End::Short),
            }
        }
        self.last_chunk().await?;
        Ok(End::Whole { extra: false })
    }
}

/// Writes all of `parts`, in order, with vectored writes.
async fn write_all<I: AsyncWrite + Unpin>(io: &mut I, parts: &[&[u8]]) -> io::Result<()> {
    let mut skip = 0usize;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    while skip < total {
        let mut slices = Vec::with_capacity(parts.len());
        let mut s = skip;
        for p in parts {
            if s >= p.len() {
                s -= p.len();
                continue;
            }
            slices.push(IoSlice::new(&p[s..]));
            s = 0;
        }
        let n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        skip += n;
    }
    Ok(())
}
