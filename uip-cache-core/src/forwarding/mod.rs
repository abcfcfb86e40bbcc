//! Who sent a request, and for which scheme and host: the headers proxies
//! set (`Forwarded`, `X-Forwarded-*`, `X-Original-URL`, ...) are believed
//! only from a peer in `server.trusted_proxies`.
//!
//! A cache key holds the scheme and host, but an application builds its
//! links from whatever its framework reads: actix-web's `ConnectionInfo` and
//! axum-extra's `Host` read `Forwarded` and `X-Forwarded-Host` before
//! `Host`, and many frameworks honour `X-Forwarded-Prefix` or
//! `X-Original-URL`. A client that sends them would get its links stored
//! under the key of a clean request. So every adapter asks
//! [`TrustedProxies::client_origin`] once per request, with the facts of the
//! connection ([`Connection`]), and:
//!
//! - removes the headers [`ClientOrigin::strip`] lists before the
//!   application sees the request (all of [`FORWARDING_HEADERS`] from a peer
//!   that is not trusted; from a trusted one only those it sent in a form
//!   frameworks read differently);
//! - keys on [`ClientOrigin::scheme`] and [`ClientOrigin::host`], which are
//!   then the ones the application sees.
//!
//! One concern a file: the list of forwarding headers (here), IP networks
//! (`cidr.rs`), the trusted peers and a request's origin (`trusted.rs`),
//! reading the headers as frameworks do (`read.rs`), and the forwarding
//! headers a reverse proxy sends its backend (`upstream.rs`).
//!
//! ```
//! use uip_cache_core::forwarding::{Connection, TrustedProxies};
//!
//! let trusted: TrustedProxies = ["10.0.0.0/8"].iter().map(|c| c.parse().unwrap()).collect();
//! let headers = [("host", "internal:8080"), ("x-forwarded-host", "shop.example"), ("x-forwarded-proto", "https")];
//!
//! let proxy = Connection::new(Some("10.1.2.3:5000".parse().unwrap()), false);
//! let o = trusted.client_origin(&proxy, None, &headers);
//! assert_eq!((o.scheme, o.host), ("https", Some("shop.example")));
//! assert!(o.strip().is_empty());
//!
//! let client = Connection::new(Some("203.0.113.9:5000".parse().unwrap()), false);
//! let o = trusted.client_origin(&client, None, &headers);
//! assert_eq!((o.scheme, o.host), ("http", Some("internal:8080")));
//! assert!(o.strip().contains("x-forwarded-host"));
//! ```

mod cidr;
mod read;
mod trusted;
mod upstream;

pub use cidr::{Cidr, CidrError};
pub use trusted::{ClientOrigin, Connection, Strip, TrustedProxies};
pub use upstream::upstream_edits;

use read::text;

/// The request headers that say where a request came from or what it was
/// before a proxy rewrote it (lower case). A proxy sets them; from a client
/// outside `server.trusted_proxies` every one of them is removed before the
/// application sees the request.
///
/// Names are compared ASCII case-insensitively with `_` taken as `-`
/// ([`same_field_name`]): CGI, WSGI and Rack servers (Puma before 6.4.3,
/// gunicorn before 22, uWSGI, ...) fold both into one variable
/// (`HTTP_X_FORWARDED_HOST`), so `X_Forwarded_Host` is `X-Forwarded-Host`
/// to the application behind them.
pub const FORWARDING_HEADERS: [&str; 26] = [
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-protocol",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "x-host",
    "x-original-host",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-url-scheme",
    "front-end-https",
    "x-proxy-url",
    // Tornado's `xheaders` and ingress-nginx read it as the scheme.
    "x-scheme",
    // CGI's SCRIPT_NAME as a header: the path prefix of Rack, WSGI and
    // uWSGI applications behind some proxies.
    "script-name",
];

/// Whether header names `a` and `b` are one to an application: equal
/// ASCII case-insensitively, with `_` and `-` the same (CGI, WSGI and Rack
/// servers fold both into `HTTP_...` variables).
pub fn same_field_name(a: &str, b: &str) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// Whether `name` is one of [`FORWARDING_HEADERS`] spelt with a `_`: never
/// a proxy's (nginx drops such names by default), so removed from everyone.
fn underscore_variant(name: &str) -> bool {
    name.contains('_') && FORWARDING_HEADERS.iter().any(|n| same_field_name(n, name))
}

// Indices into FORWARDING_HEADERS of the three read for scheme and host.
const FORWARDED: usize = 0;
const X_FORWARDED_HOST: usize = 1;
const X_FORWARDED_PROTO: usize = 2;
// Indices of the headers that name the client's address
// (`X-Forwarded-For`, then `X-Real-IP` to `X-Cluster-Client-IP`): they vary
// per client, so they are never keyed.
const ADDRESSES: std::ops::Range<usize> = 3..4;
const MORE_ADDRESSES: std::ops::Range<usize> = 12..16;

/// The forwarding headers from a trusted proxy that change what an
/// application builds (links, redirects, routing) besides scheme and host;
/// the key holds them when a trusted proxy sent them.
pub fn keyed_from_trusted() -> impl Iterator<Item = &'static str> {
    FORWARDING_HEADERS
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            *i > X_FORWARDED_PROTO && !ADDRESSES.contains(i) && !MORE_ADDRESSES.contains(i)
        })
        .map(|(_, n)| *n)
}

#[cfg(test)]
mod tests;
