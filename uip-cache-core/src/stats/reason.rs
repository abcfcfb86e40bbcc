//! What the counters are counted by: why a response was not cached, what
//! started an invalidation, how warming one URL went.

use serde::Serialize;

/// Why a response was not served from or stored in the cache. Counted per
/// reason and logged, so "why is my hit rate low" has an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NoCacheReason {
    /// No policy matched and `cache_unmatched` is off.
    NoPolicy,
    /// The policy does not cache this method.
    Method,
    /// The request said `no-store`.
    RequestNoStore,
    /// The response said `no-store`.
    ResponseNoStore,
    /// The response said `private`.
    Private,
    /// The response sets a cookie.
    SetCookie,
    /// The request had `Authorization` and the response did not allow sharing.
    Authorization,
    /// The status is not in the policy's `statuses`.
    Status,
    /// `Vary: *`.
    VaryStar,
    /// The body exceeded `max_size`.
    TooLarge,
    /// No policy TTL and the origin gave no freshness.
    NoFreshness,
    /// The origin failed.
    OriginError,
    /// An invalidation happened while the response was being fetched.
    Invalidated,
    /// The body stream failed or was cut short.
    IncompleteBody,
    /// The policy keys on the request body, which the adapter did not buffer.
    BodyNotBuffered,
    /// The request had `Cookie`, the response gave no explicit shared
    /// freshness, and the policy does not key on the cookie.
    Cookie,
    /// A `text/event-stream` response: it does not end.
    Streaming,
    /// The request body the policy keys on is larger than its `max_body`
    /// (or has no end within it): passed through unbuffered.
    BodyTooLarge,
    /// A `Cache-Control` (or targeted field) that does not follow the
    /// grammar: a response is not stored, a request bypasses the cache.
    UnparsableCacheControl,
    /// The request carries a method-override header (`X-HTTP-Method-Override`
    /// and the like): the origin may treat it as another method.
    MethodOverride,
    /// A GET or HEAD with a body the key does not hold (the policy does not
    /// key on the body): another body would get this one's answer.
    RequestBody,
    /// The request had `Range`, `If-Match`, `If-Unmodified-Since` or
    /// `If-Range` and the answer is not a complete 200: it is this
    /// request's alone, never the plain key's.
    RangeOrPrecondition,
}

impl NoCacheReason {
    /// Every reason, in counter order.
    pub const ALL: [NoCacheReason; 22] = [
        NoCacheReason::NoPolicy,
        NoCacheReason::Method,
        NoCacheReason::RequestNoStore,
        NoCacheReason::ResponseNoStore,
        NoCacheReason::Private,
        NoCacheReason::SetCookie,
        NoCacheReason::Authorization,
        NoCacheReason::Status,
        NoCacheReason::VaryStar,
        NoCacheReason::TooLarge,
        NoCacheReason::NoFreshness,
        NoCacheReason::OriginError,
        NoCacheReason::Invalidated,
        NoCacheReason::IncompleteBody,
        NoCacheReason::BodyNotBuffered,
        NoCacheReason::Cookie,
        NoCacheReason::Streaming,
        NoCacheReason::BodyTooLarge,
        NoCacheReason::UnparsableCacheControl,
        NoCacheReason::MethodOverride,
        NoCacheReason::RequestBody,
        NoCacheReason::RangeOrPrecondition,
    ];

    /// The snake_case name used in metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            NoCacheReason::NoPolicy => "no_policy",
            NoCacheReason::Method => "method",
            NoCacheReason::RequestNoStore => "request_no_store",
            NoCacheReason::ResponseNoStore => "response_no_store",
            NoCacheReason::Private => "private",
            NoCacheReason::SetCookie => "set_cookie",
            NoCacheReason::Authorization => "authorization",
            NoCacheReason::Status => "status",
            NoCacheReason::VaryStar => "vary_star",
            NoCacheReason::TooLarge => "too_large",
            NoCacheReason::NoFreshness => "no_freshness",
            NoCacheReason::OriginError => "origin_error",
            NoCacheReason::Invalidated => "invalidated",
            NoCacheReason::IncompleteBody => "incomplete_body",
            NoCacheReason::BodyNotBuffered => "body_not_buffered",
            NoCacheReason::Cookie => "cookie",
            NoCacheReason::Streaming => "streaming",
            NoCacheReason::BodyTooLarge => "body_too_large",
            NoCacheReason::UnparsableCacheControl => "unparsable_cache_control",
            NoCacheReason::MethodOverride => "method_override",
            NoCacheReason::RequestBody => "request_body",
            NoCacheReason::RangeOrPrecondition => "range_or_precondition",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// What started an invalidation, for its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidationKind {
    /// `POST /cache/invalidate/tag`.
    Tag,
    /// `POST /cache/invalidate/url` with an exact `url`.
    Url,
    /// `POST /cache/invalidate/url` with a `pattern`.
    Pattern,
    /// A webhook event (`POST /cache/invalidate`).
    Event,
    /// A successful unsafe request (RFC 9111 section 4.4).
    Unsafe,
}

impl InvalidationKind {
    /// Every kind, in counter order.
    pub const ALL: [InvalidationKind; 5] = [
        InvalidationKind::Tag,
        InvalidationKind::Url,
        InvalidationKind::Pattern,
        InvalidationKind::Event,
        InvalidationKind::Unsafe,
    ];

    /// The snake_case name used in metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            InvalidationKind::Tag => "tag",
            InvalidationKind::Url => "url",
            InvalidationKind::Pattern => "pattern",
            InvalidationKind::Event => "event",
            InvalidationKind::Unsafe => "unsafe",
        }
    }
}

/// Why a listener closed a connection as soon as it was accepted, for its
/// counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionRefusal {
    /// Its client already held `server.max_connections_per_client`.
    PerClientLimit,
    /// The listener already served as many connections as it takes.
    ListenerLimit,
}

impl ConnectionRefusal {
    /// Every reason, in counter order.
    pub const ALL: [ConnectionRefusal; 2] = [
        ConnectionRefusal::PerClientLimit,
        ConnectionRefusal::ListenerLimit,
    ];

    /// The snake_case name used in metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionRefusal::PerClientLimit => "per_client_limit",
            ConnectionRefusal::ListenerLimit => "listener_limit",
        }
    }
}

/// The outcome of warming one URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarmOutcome {
    /// Fetched through the cache.
    Success,
    /// Every attempt failed.
    Failed,
    /// A fresh entry was already there.
    Skipped,
}
