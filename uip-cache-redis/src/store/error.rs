//! Errors: a config that cannot make a client, and what a Redis error
//! means for the cache.

use std::fmt;

use redis::RedisError;
use uip_cache_core::store::{StoreError, StoreErrorKind};

/// The Redis section of a config could not make a client.
#[derive(Debug)]
pub struct RedisConfigError(pub(super) String);

impl fmt::Display for RedisConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis config: {}", self.0)
    }
}

impl std::error::Error for RedisConfigError {}

/// Whether Redis refused one command (a key of another type, a write while
/// Redis is full): that is an answer, Redis is up, and the circuit stays as
/// it is.
pub(super) fn is_refusal(e: &RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
        || e.code() == Some("OOM")
        || e.kind() == redis::ErrorKind::UnexpectedReturnType
}

/// The store error a Redis error is, by its kind.
pub(super) fn store_error(e: RedisError) -> StoreError {
    let kind = if e.is_timeout() {
        StoreErrorKind::Timeout
    } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped() {
        StoreErrorKind::Connection
    } else {
        StoreErrorKind::Backend
    };
    StoreError::new(kind, e)
}
