//! The integration tests of this crate, in one test binary: each module
//! is one theme. One binary links once, where a binary per file linked
//! the whole dependency tree 3 times.

mod attack_invalidation_store;
mod redis_store;
mod tiered;
