//! Which peers are believed, and what a request's scheme and host are from
//! the facts of its connection ([`TrustedProxies::client_origin`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::read::{forwarded, scheme_of, single, text, Single};
use super::{
    same_field_name, underscore_variant, Cidr, CidrError, FORWARDED, FORWARDING_HEADERS,
    X_FORWARDED_HOST, X_FORWARDED_PROTO,
};
use crate::request::{HeaderSource, RequestView};

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
    /// [`keyed_from_trusted`](super::keyed_from_trusted) it sent.
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
    pub(super) const NONE: Strip = Strip(0);
    pub(super) const ALL: Strip = Strip((1 << FORWARDING_HEADERS.len()) - 1);

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
