//! RFC 9111 shared-cache rules: whether a stored response may be used, whether
//! a response may be stored and for how long, conditional requests, and which
//! headers are end-to-end.
//!
//! Pure functions over requests, responses and stored entries, free of
//! [`HttpCache`](crate::HttpCache), which applies them:
//!
//! - [`cache_control`]: `Cache-Control` and the targeted fields (RFC 9213)
//!   as the request and the response give them.
//! - [`date`]: HTTP dates and delta-seconds.
//! - [`freshness`]: ages, lifetimes, and what a stored response may be used
//!   for now.
//! - [`admission`]: whether a response may be stored, and the entry to store.
//! - [`conditional`]: 304s to the client, and what the origin's 304 does to
//!   an entry.
//! - [`encoding`]: whether a client takes gzip.
//! - [`range`]: `Range`, `If-Range`, `Content-Range` and the body of a
//!   206 cut from a complete representation.
//! - [`request`]: unsafe methods, method overrides, request bodies, ranges
//!   and preconditions.
//! - [`target`]: the URIs an unsafe request's success invalidates.
//! - [`cache_status`]: the `X-Cache` and `Cache-Status` values.

pub mod admission;
pub mod cache_control;
pub mod cache_status;
pub mod conditional;
pub mod date;
pub mod encoding;
pub mod freshness;
pub mod range;
pub mod request;
pub mod target;

#[cfg(test)]
mod testing;
