//! Slow clients and idle connections: what a client connection owes its
//! client, when it last made progress, and the rules that close it.
//!
//! Every client connection has a watch, fed without locks by its socket
//! ([`crate::io::ClientStream`]: bytes read, bytes written, writes the
//! socket could not take) and by its response and request bodies. The
//! connection's own task looks at it a few times per timeout and closes
//! the connection:
//!
//! - with a reset, when a response has made no progress towards the client
//!   for [`ClientLimits::send_timeout`]: a socket write the client does not
//!   read, an HTTP/2 response body its flow control holds (window 0), HTTP/2
//!   response bytes handed to the connection and not sent since, or a
//!   request body the client stopped sending; also when an HTTP/1 client
//!   started a request and has not finished its headers in
//!   [`HEADER_READ_TIMEOUT`];
//! - gracefully (HTTP/2: GOAWAY), when no request has been in progress for
//!   [`ClientLimits::idle_timeout`]; one that does not finish closing within
//!   `send_timeout` is then reset;
//! - with a reset, when the listener holds more than
//!   [`ClientLimits::max_inflight_bytes`] of response bytes for its clients
//!   together: the connections that went longest without the socket taking
//!   a byte go first, until the rest fits.
//!
//! # What counts as in flight
//!
//! A response body hands its bytes to the connection (hyper) in pieces of
//! at most 256 KB (HTTP/1) or 32 KB (HTTP/2); bytes handed and not yet
//! taken by the socket are *owed*. That is the memory a slow client makes
//! the server hold on top of what it would hold anyway: hyper's write
//! queue, HTTP/2 send buffers, chunks read from the upstream. A stored body
//! is one shared allocation (an `Arc`, sealed memory for large ones) that
//! every reader of the entry shares with the store, and the store counts it
//! against `store.max_bytes`: only the pieces a connection has been handed
//! count as owed, not the whole body, so a thousand clients downloading one
//! large entry at a normal pace are not counted a thousand times. A stored
//! body evicted while a slow client still reads it stays alive until that
//! client finishes or `send_timeout` cuts it. Response heads and HTTP/2
//! framing are not counted; kernel socket buffers are not either (a reset
//! frees them at once).
//!
//! A miss that is being stored reads the origin at the origin's pace, not
//! the client's, and queues what the client has not taken yet (up to the
//! policy's `max_size`, see [`uip_cache_core::tee`]): those queued bytes
//! count as well. They are summed when the connection looks at its watch
//! (every [`ClientLimits::send_timeout`] / 4, at most 5 s), so a burst of
//! them can pass the bound for that long.

use std::time::Duration;

use uip_cache_core::config::ServerConfig;

mod body;
mod inflight;
#[cfg(test)]
mod tests;
mod watch;

pub use body::ClientBody;
pub(crate) use body::Sent;
pub(crate) use inflight::Inflight;
pub(crate) use watch::{DrainMark, Exchange, Verdict, Watch};

/// Time a client has to send a request's headers once it started sending
/// them (or from its connection's opening, for the first request).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest piece of a response body handed to an HTTP/1 connection at
/// once (large enough for `sendfile` to pay off, see [`crate::io`]).
pub(crate) const HTTP1_PIECE: usize = 256 * 1024;

/// Largest piece of a response body handed to an HTTP/2 stream at once
/// (HTTP/2 copies its frames anyway): a stream takes a new piece only when
/// its client has taken most of the last, so a stream that takes nothing
/// for `send_timeout` shows.
pub(crate) const HTTP2_PIECE: usize = 32 * 1024;

// ===== impl ClientLimits =====

/// How a listener treats slow and idle clients: `server.send_timeout`,
/// `server.idle_timeout` and `server.max_inflight_bytes` (see the module
/// docs for what each closes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientLimits {
    /// Longest time a response may make no progress towards its client
    /// (default 60s).
    pub send_timeout: Duration,
    /// Longest time a connection may stay without a request in progress
    /// (default 75s).
    pub idle_timeout: Duration,
    /// Response bytes the connections of one listener may owe their clients
    /// together (default 256 MB).
    pub max_inflight_bytes: u64,
    /// Time from a TLS connection's opening to the end of its handshake
    /// (default [`crate::tls::HANDSHAKE_TIMEOUT`]).
    pub handshake_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits::from_config(&ServerConfig::default())
    }
}

impl ClientLimits {
    /// The limits a config's `server` section sets.
    pub fn from_config(server: &ServerConfig) -> Self {
        ClientLimits {
            send_timeout: server.send_timeout.get(),
            idle_timeout: server.idle_timeout.get(),
            max_inflight_bytes: server.max_inflight_bytes.bytes(),
            handshake_timeout: crate::tls::HANDSHAKE_TIMEOUT,
        }
    }

    /// How often a connection looks at its watch: a quarter of the shortest
    /// limit, between 20 ms and 5 s (a limit is enforced that much late at
    /// most).
    pub(crate) fn tick(&self) -> Duration {
        let shortest = self
            .send_timeout
            .min(self.idle_timeout)
            .min(HEADER_READ_TIMEOUT);
        (shortest / 4).clamp(Duration::from_millis(20), Duration::from_secs(5))
    }
}

/// Milliseconds on a process-wide monotonic clock, from 1 (0 is "never").
pub(crate) use uip_cache_core::clock::monotonic_ms as now_ms;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}
