//! Refreshes the cache sent back through the application, as the adapter
//! in front of it sees them again.

use crate::forwarding::ClientOrigin;
use crate::HttpCache;

/// A stale-while-revalidate refresh this cache sent through the
/// application's own address (see [`crate::refresh`]), recognised by the
/// marker it carries ([`HttpCache::refresh_marked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    scheme: &'static str,
}

impl HttpCache {
    /// Whether `marker`, the value of a
    /// [`REFRESH_HEADER`](crate::refresh::REFRESH_HEADER) a request came
    /// with, holds this cache's token: then the request is a refresh this
    /// cache sent, to be recorded under the client's key. A marker without
    /// the token is only to be dropped.
    pub fn refresh_marked(&self, marker: &[u8]) -> Option<Refresh> {
        let scheme = match self.refresh_token().check(marker)? {
            "https" => "https",
            _ => "http",
        };
        Some(Refresh { scheme })
    }
}

impl Refresh {
    /// The scheme of the client's request, which the marker carries.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// The scheme and host a refresh's key holds, from `origin`, what
    /// [`HttpCache::client_origin`] read from the refresh's own connection
    /// and headers: the client's scheme, and the key holding what a trusted
    /// proxy had sent (its headers are still there only if one did: the
    /// refresh carries the headers the client's request had once the
    /// forwarding headers were removed).
    pub fn origin<'h>(&self, mut origin: ClientOrigin<'h>) -> ClientOrigin<'h> {
        origin.scheme = self.scheme;
        origin.trusted = true;
        origin
    }
}
