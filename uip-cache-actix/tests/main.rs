//! The integration tests of this crate, in one test binary: each module
//! is one theme. One binary links once, where a binary per file linked
//! the whole dependency tree 6 times.

mod admin;
mod attack_forwarding_headers;
mod attack_invalidation;
mod attack_transform;
mod clock;
mod middleware;
mod redis_backed;
