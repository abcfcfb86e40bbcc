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

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::request::{HeaderSource, RequestView};

mod upstream;
pub use upstream::upstream_edits;

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

// ===== CIDR =====

/// An IP network such as `10.0.0.0/8` or `::1/128`; a plain address is a
/// network of one.
///
/// Hand-written rather than a dependency: it is a mask and a compare on
/// std's address types, and the only parsing is std's plus a prefix length.
/// IPv4 peers seen on a dual-stack socket (`::ffff:10.1.2.3`) match IPv4
/// networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The network of `address` with a `prefix`-bit mask; `None` when the
    /// prefix is longer than the address or `address` has bits set past it
    /// (`10.1.0.0/8` is a mistake for `10.0.0.0/8` or `10.1.0.0/16`).
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        let (network, prefix) = canonical(address, prefix)?;
        (masked(network, prefix) == network).then_some(Cidr { network, prefix })
    }

    /// The network's first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && masked(ip, self.prefix) == self.network
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 one it
/// is, so that it matches the canonical peers `contains` compares.
fn canonical(address: IpAddr, prefix: u8) -> Option<(IpAddr, u8)> {
    match address {
        IpAddr::V4(_) if prefix <= 32 => Some((address, prefix)),
        IpAddr::V6(v6) if prefix <= 128 => match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => Some((IpAddr::V4(v4), prefix - 96)),
            _ => Some((address, prefix)),
        },
        _ => None,
    }
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = |why: &str| CidrError(format!("`{s}` is not {why}"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| err("an IP address or network such as 10.0.0.0/8 or ::1/128"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(err(&format!("a network: the prefix is at most {max}"))),
                }
            }
            Some(_) => return Err(err("a network: the prefix length must be a number")),
        };
        Cidr::new(address, prefix).ok_or_else(|| {
            let network = masked(canonical(address, prefix).map_or(address, |c| c.0), prefix);
            err(&format!(
                "a network: it has address bits set past the /{prefix} prefix (the network is {network}/{prefix})"
            ))
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

// ===== trusted proxies =====

/// The peers whose forwarding headers are believed (`server.trusted_proxies`);
/// empty by default: nobody's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
}

impl FromIterator<Cidr> for TrustedProxies {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Self {
        TrustedProxies {
            networks: iter.into_iter().collect(),
        }
    }
}

impl TrustedProxies {
    /// Parses a list such as `server.trusted_proxies`; the error names the
    /// index of the first entry that is not a network.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, (usize, CidrError)> {
        list.iter()
            .enumerate()
            .map(|(i, s)| s.as_ref().trim().parse().map_err(|e| (i, e)))
            .collect()
    }

    /// Whether no peer is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The networks.
    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }

    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// Whether the peer of `conn` is trusted; an unknown peer is not.
    pub fn trusts(&self, conn: &Connection) -> bool {
        !self.is_empty() && conn.peer.is_some_and(|p| self.contains(p.ip()))
    }

    /// The scheme and host the key must hold for a request, and the
    /// forwarding headers to remove before the application sees it.
    ///
    /// `target_authority` is the authority of the request target
    /// (absolute-form, or HTTP/2's `:authority`), which wins over `Host`
    /// (RFC 9112 section 3.2.2); adapters that rewrite such targets to
    /// origin form with that `Host` pass `None`.
    ///
    /// From a trusted peer, the host is `Forwarded`'s `host=`, else
    /// `X-Forwarded-Host`, else the request's; the scheme `Forwarded`'s
    /// `proto=`, else `X-Forwarded-Proto`, else the connection's; as
    /// actix-web's `ConnectionInfo` and axum-extra's `Host`/`Scheme` read
    /// them. A header they would read differently (a `host=` outside the
    /// first element, a list in `X-Forwarded-Host`, a scheme that is not
    /// `http` or `https`, more than one field line of `X-Forwarded-Host` or
    /// `X-Forwarded-Proto`, which Rails reads the last of, bytes that are
    /// not visible ASCII) is not believed and is listed for removal, so the
    /// application falls back to what the key holds. So is an
    /// `X-Forwarded-Host` or `-Proto` that disagrees with the `Forwarded`
    /// the key holds, and from every peer a listed name spelt with `_`.
    pub fn client_origin<'h>(
        &self,
        conn: &Connection,
        target_authority: Option<&'h str>,
        headers: &'h dyn HeaderSource,
    ) -> ClientOrigin<'h> {
        let own_host = target_authority.or_else(|| headers.first("host").and_then(text));
        let own_scheme = if conn.tls { "https" } else { "http" };
        if !self.trusts(conn) {
            return ClientOrigin {
                scheme: own_scheme,
                host: own_host,
                trusted: false,
                strip: Strip::ALL,
            };
        }
        let mut strip = Strip::NONE;
        let (mut host, mut scheme) = (None, None);
        match forwarded(headers) {
            Some((h, p)) => (host, scheme) = (h, p),
            None => strip.0 |= 1 << FORWARDED,
        }
        // X-Forwarded-Host and -Proto are read even when Forwarded named a
        // host or scheme: frameworks that read only them (Rails, Django,
        // Express) must find the same, or none.
        match single(headers, "x-forwarded-host") {
            Single::Absent => {}
            Single::Value(v) if !v.is_empty() && !v.contains(',') => match host {
                None => host = Some(v),
                Some(h) if h.eq_ignore_ascii_case(v) => {}
                Some(_) => strip.0 |= 1 << X_FORWARDED_HOST,
            },
            _ => strip.0 |= 1 << X_FORWARDED_HOST,
        }
        match single(headers, "x-forwarded-proto") {
            Single::Absent => {}
            Single::Value(v) if scheme_of(v).is_some() => match scheme {
                None => scheme = scheme_of(v),
                Some(s) if Some(s) == scheme_of(v) => {}
                Some(_) => strip.0 |= 1 << X_FORWARDED_PROTO,
            },
            _ => strip.0 |= 1 << X_FORWARDED_PROTO,
        }
        ClientOrigin {
            scheme: scheme.unwrap_or(own_scheme),
            host: host.or(own_host),
            trusted: true,
            strip,
        }
    }
}

/// What only the server knows about the connection a request came on;
/// adapters build it from their framework's connection info.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Connection {
    /// The peer's address; `None` when not known (then it is not trusted).
    pub peer: Option<SocketAddr>,
    /// Whether the connection is TLS (the client's scheme is `https`).
    pub tls: bool,
}

impl Connection {
    /// A connection from `peer`, over TLS or not.
    pub const fn new(peer: Option<SocketAddr>, tls: bool) -> Self {
        Connection { peer, tls }
    }
}

/// The answer of [`TrustedProxies::client_origin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOrigin<'h> {
    /// `http` or `https`: the scheme the key holds.
    pub scheme: &'static str,
    /// The host (and port) the key holds, when known.
    pub host: Option<&'h str>,
    /// Whether the peer is a trusted proxy: its forwarding headers reach the
    /// application, and the key holds those of
    /// [`keyed_from_trusted`] it sent.
    pub trusted: bool,
    strip: Strip,
}

impl ClientOrigin<'_> {
    /// The headers to remove before the application sees the request.
    pub fn strip(&self) -> Strip {
        self.strip
    }
}

// Written here, beside what it reads, so that `request` needs nothing of
// this module.
impl<'a> RequestView<'a> {
    /// Sets scheme, authority and whether a trusted proxy sent the request,
    /// as core decided them from the connection
    /// ([`crate::HttpCache::client_origin`]).
    #[must_use]
    pub fn origin(mut self, origin: ClientOrigin<'a>) -> Self {
        self.scheme = Some(origin.scheme);
        self.authority = origin.host;
        self.via_trusted_proxy = origin.trusted;
        self
    }
}

/// A set of [`FORWARDING_HEADERS`] to remove; `Copy`, so an adapter can
/// keep it after it lets go of the request's headers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Strip(u32);

impl Strip {
    const NONE: Strip = Strip(0);
    const ALL: Strip = Strip((1 << FORWARDING_HEADERS.len()) - 1);

    /// Whether there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Whether header `name` is to be removed: one of the set's names, any
    /// case, `_` taken as `-`; and, even from an empty set, any of
    /// [`FORWARDING_HEADERS`] spelt with `_`, which no proxy sends. Cheap
    /// for the names of an ordinary request, so that adapters can look for
    /// one before removing anything; they remove every name of the request
    /// it holds (the spellings [`Strip::names`] lists are not all of them).
    pub fn contains(&self, name: &str) -> bool {
        // Every name in the list starts with one of these.
        let first = name.as_bytes().first().copied().unwrap_or(0);
        if !matches!(first.to_ascii_lowercase(), b'x' | b'f' | b't' | b's') {
            return false;
        }
        self.names().any(|n| same_field_name(n, name)) || underscore_variant(name)
    }

    /// The names to remove, lower case.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        FORWARDING_HEADERS
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
    }
}

impl fmt::Debug for Strip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

// ===== reading the headers as frameworks do =====

/// A header value as frameworks read it: visible ASCII only (`to_str`).
fn text(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}

fn scheme_of(v: &str) -> Option<&'static str> {
    if v.eq_ignore_ascii_case("https") {
        Some("https")
    } else if v.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

enum Single<'h> {
    Absent,
    Value(&'h str),
    Unreadable,
}

/// The one field line of `name`: actix-web and axum-extra read the first,
/// Rails the last, so more than one is unreadable.
fn single<'h>(headers: &'h dyn HeaderSource, name: &str) -> Single<'h> {
    let mut lines = 0usize;
    headers.for_each_value(name, &mut |_| lines += 1);
    match headers.first(name) {
        None => Single::Absent,
        Some(_) if lines > 1 => Single::Unreadable,
        Some(v) => text(v).map_or(Single::Unreadable, |v| Single::Value(v.trim())),
    }
}

/// `Forwarded`'s `host=` and `proto=`, when every reader finds the same:
/// `Some((None, None))` when there are none, `None` when the header is to
/// be removed. axum-extra reads the first element of the first field line;
/// actix-web the first `host=` / `proto=` anywhere, splitting at `,` and `;`
/// without regard to quotes; they agree when those parameters are only in
/// the first element, once each, and no quoted value holds a separator.
#[allow(clippy::type_complexity)]
fn forwarded(headers: &dyn HeaderSource) -> Option<(Option<&str>, Option<&'static str>)> {
    let Some(first) = headers.first("forwarded") else {
        return Some((None, None));
    };
    let mut certain = true;
    let mut line = 0usize;
    headers.for_each_value("forwarded", &mut |v| {
        let Some(v) = text(v) else {
            certain = false;
            return;
        };
        let mut in_quotes = false;
        for c in v.bytes() {
            match c {
                b'"' => in_quotes = !in_quotes,
                b',' | b';' | b'=' | b'\\' if in_quotes => certain = false,
                _ => {}
            }
        }
        certain &= !in_quotes;
        for (e, element) in v.split(',').enumerate() {
            let (mut host, mut proto) = (0, 0);
            for pair in element.split(';') {
                let Some((n, v)) = pair.split_once('=') else {
                    continue;
                };
                let n = n.trim();
                let counted = if n.eq_ignore_ascii_case("host") {
                    &mut host
                } else if n.eq_ignore_ascii_case("proto") {
                    &mut proto
                } else {
                    continue;
                };
                *counted += 1;
                // actix-web keeps the blanks after `=`, axum-extra does not.
                certain &= !v.starts_with([' ', '\t']);
            }
            let first_element = line == 0 && e == 0;
            if host + proto > 0 && (!first_element || host > 1 || proto > 1) {
                certain = false;
            }
        }
        line += 1;
    });
    if !certain {
        return None;
    }
    let element = text(first)?.split(',').next().unwrap_or("");
    let (mut host, mut proto) = (None, None);
    for pair in element.split(';') {
        if let Some((n, v)) = pair.split_once('=') {
            let v = v.trim().trim_matches('"');
            if n.trim().eq_ignore_ascii_case("host") {
                if v.is_empty() {
                    return None;
                }
                host = Some(v);
            } else if n.trim().eq_ignore_ascii_case("proto") {
                proto = Some(scheme_of(v)?);
            }
        }
    }
    Some((host, proto))
}

#[cfg(test)]
mod tests;
