//! The integration tests of this crate, in one test binary: each module
//! is one theme. One binary links once, where a binary per file linked
//! the whole dependency tree 10 times.

mod admin;
mod attack_forwarding_headers;
mod attack_invalidation;
mod attack_invalidation_store;
mod attack_transform;
mod axum_router;
mod clock;
mod fail_open;
mod http_cache;
mod post_answer;
mod shared_redis;
mod store_reads;
mod streamed_store;
