//! Matching the host of a request against a route's `host`.

use std::net::Ipv6Addr;

use crate::config::route::{is_host_name, HostSpec, MAX_HOST_LEN};

/// A request's host as routes compare it: the name without its port and
/// trailing dot, or an IPv6 address. `None` for a host no route's `host`
/// can match (empty, too long, with bytes no host name has, a port that is
/// not a number): such a request is routed only by routes without `host`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RequestHost<'a> {
    Name(&'a str),
    Ipv6(Ipv6Addr),
}

impl<'a> RequestHost<'a> {
    /// Reads `host[:port]` (`[v6]:port` for IPv6) as the key holds it.
    pub(super) fn parse(raw: &'a str) -> Option<Self> {
        if raw.len() > MAX_HOST_LEN + 6 {
            return None;
        }
        let (host, port) = match raw.strip_prefix('[') {
            Some(rest) => {
                let (addr, port) = rest.split_once(']')?;
                (Err(addr.parse::<Ipv6Addr>().ok()?), port)
            }
            None => {
                let (host, port) = raw.split_at(raw.find(':').unwrap_or(raw.len()));
                (Ok(host), port)
            }
        };
        if let Some(digits) = port.strip_prefix(':') {
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
        } else if !port.is_empty() {
            return None;
        }
        match host {
            Err(v6) => Some(RequestHost::Ipv6(v6)),
            Ok(name) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                is_host_name(name).then_some(RequestHost::Name(name))
            }
        }
    }
}

/// Whether `host` is one `spec` names: the same name (any case), a name
/// under a wildcard's domain (one label or more before it), or the same
/// IPv6 address however written.
pub(super) fn matches(spec: &HostSpec, host: Option<RequestHost<'_>>) -> bool {
    match (spec, host) {
        (HostSpec::Exact(name), Some(RequestHost::Name(h))) => name.eq_ignore_ascii_case(h),
        (HostSpec::Wildcard(suffix), Some(RequestHost::Name(h))) => {
            // `h` is ASCII (checked when parsed): any byte is a boundary.
            h.len() > suffix.len() && h[h.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        (HostSpec::Ipv6(addr), Some(RequestHost::Ipv6(a))) => *addr == a,
        _ => false,
    }
}
