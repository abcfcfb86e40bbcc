//! RFC 9111 shared-cache rules: whether a stored response may be used, whether
//! a response may be stored and for how long, conditional requests, and which
//! headers are end-to-end.

pub mod admission;
pub mod cache_control;
pub mod date;
