//! What core hands an adapter so that it only translates: every decision
//! an adapter would otherwise make about a request is one value here, made
//! by core from plain facts, and the adapter turns it into its framework's
//! types.
//!
//! - [`BypassTicket`] ([`HttpCache::bypass`](crate::HttpCache::bypass)):
//!   a request that goes to the origin without the cache. It is counted
//!   when the ticket is made; when the origin answers, the ticket runs what
//!   an unsafe method's success invalidates and says how to change the
//!   response's headers.
//! - [`HeaderEdits`]: one list of header changes (remove these names, set
//!   these values) for a response on its way out
//!   ([`HttpCache::response_edits`](crate::HttpCache::response_edits)), a
//!   request on its way to the origin, or a proxied request on its way to
//!   a backend ([`crate::forwarding::upstream_edits`]). Each adapter applies
//!   it with one short loop.
//! - [`BodyReader`]: reads a request body to key on up to a limit and a
//!   deadline, from any source of chunks the adapter polls for it.
//! - [`Refresh`]: a refresh the cache sent back through the application,
//!   recognised by its marker, and the scheme and host its key holds.
//! - [`RangeReply`]: a client's answer to its `Range`, cut from the
//!   complete response the origin sent for the cache to store.
//!
//! The way of a request through an adapter, with these:
//!
//! ```text
//! guard (forwarding headers)  -> RequestView -> HttpCache::start
//!   Start::ReadBody(limit)    -> BodyReader  -> Whole: HttpCache::plan
//!                                            -> otherwise: bypass
//!   Plan::Bypass(reason)      -> HttpCache::bypass -> BypassTicket
//!                                -> origin -> BypassTicket::origin_responded
//!                                -> HeaderEdits applied to the response
//!   Plan::Cache(plan)         -> HttpCache::begin -> FetchTicket ...
//!                                -> HeaderEdits applied to the response
//! ```
//!
//! An adapter applies a list of edits in order:
//!
//! ```
//! use uip_cache_core::{HeaderEdit, HeaderEdits};
//!
//! fn apply(headers: &mut Vec<(String, Vec<u8>)>, edits: HeaderEdits<'_>) {
//!     for edit in edits {
//!         match edit {
//!             HeaderEdit::Remove(name) => headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name)),
//!             HeaderEdit::Set(name, value) => {
//!                 headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
//!                 headers.push((name.to_owned(), value.to_vec()));
//!             }
//!         }
//!     }
//! }
//! # let mut headers = vec![("X-Cache".to_owned(), b"HIT".to_vec())];
//! # apply(&mut headers, HeaderEdits::from_iter([HeaderEdit::Set("x-cache", "MISS".into())]));
//! # assert_eq!(headers, [("x-cache".to_owned(), b"MISS".to_vec())]);
//! ```

mod body;
mod bypass;
mod edits;
mod refresh;
#[cfg(test)]
mod tests;

pub use crate::cache::RangeReply;
pub use crate::field::{HeaderEdit, HeaderEdits};
pub use body::{BodyRead, BodyReader};
pub use bypass::BypassTicket;
pub use refresh::Refresh;

/// Marks a response that is a proxy's own answer for an origin it could
/// not reach: the connection was refused or reset, closed before a
/// response, or no response came in time. A front-end that proxies puts
/// it in the response's extensions; the adapter then asks
/// [`FetchTicket::origin_unreachable`](crate::FetchTicket::origin_unreachable)
/// for a stale entry before passing the error on. An origin's own 502 or
/// 504 never carries it: only `stale_if_error` lets a stale entry answer
/// for those.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginUnreachable;

/// A header value as frameworks read it (`to_str` in `http`): visible
/// ASCII and tabs only.
pub(crate) fn text(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}
