//! The forwarding headers a reverse proxy in front of a backend sends it,
//! as nginx's `proxy_pass` with `$proxy_add_x_forwarded_for` does.

use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;

use super::{text, Cidr, Connection, TrustedProxies};
use crate::field::HeaderEdits;
use crate::request::HeaderSource;

/// Every peer: what is left of a request once the cache layer removed
/// the forwarding headers it did not believe is believed.
static EVERYONE: LazyLock<TrustedProxies> = LazyLock::new(|| {
    [IpAddr::from([0u8; 4]), IpAddr::from([0u16; 8])]
        .into_iter()
        .filter_map(|a| Cidr::new(a, 0))
        .collect()
});

/// How to change the forwarding headers of a request a reverse proxy
/// sends its backend, from `client`, the connection it came on, and
/// `headers`, the request as the cache layer passed it on (the layer has
/// removed the forwarding headers of clients outside
/// `server.trusted_proxies`, so any still there are a trusted proxy's):
///
/// - `Forwarded` (RFC 7239): our hop (`for=`) after a trusted proxy's
///   elements, with no `host=` or `proto=` a reader could take for the
///   client's; none of ours when a trusted proxy sent only
///   `X-Forwarded-*` (readers that look at `Forwarded` first would miss
///   its word); else `for=`, `host=` and `proto=` naming what the key holds;
/// - `X-Forwarded-For`: one line, a trusted proxy's list then the peer;
/// - `X-Forwarded-Proto` and `-Host`: one line each, the scheme and host
///   the cache keyed on, whatever a trusted proxy sent (Rails reads the
///   last line, others the first), so that no framework links to another
///   host.
///
/// Without a known peer only the last two are set.
pub fn upstream_edits(
    client: Option<Connection>,
    headers: &dyn HeaderSource,
) -> HeaderEdits<'static> {
    let tls = client.is_some_and(|c| c.tls);
    let anyone = Connection::new(Some(SocketAddr::from(([0, 0, 0, 0], 0))), tls);
    let keyed = EVERYONE.client_origin(&anyone, None, headers);
    let (scheme, host) = (keyed.scheme, keyed.host);
    let all = |name: &str| {
        let mut values = Vec::new();
        headers.for_each_value(name, &mut |v| values.extend(text(v).map(str::to_owned)));
        values
    };
    let mut edits = HeaderEdits::new();
    if let Some(peer) = client.and_then(|c| c.peer) {
        let ip = peer.ip().to_canonical();
        let node = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        let proxied = ["forwarded", "x-forwarded-host", "x-forwarded-proto"]
            .iter()
            .any(|n| headers.first(n).is_some());
        let forwarded = all("forwarded");
        let ours = if !forwarded.is_empty() {
            Some(format!("{}, for={node}", forwarded.join(", ")))
        } else if proxied {
            None
        } else {
            Some(match host.filter(|h| !h.contains(['"', '\\'])) {
                Some(h) => format!("for={node};host=\"{h}\";proto={scheme}"),
                None => format!("for={node};proto={scheme}"),
            })
        };
        edits.remove("forwarded");
        if let Some(ours) = ours {
            edits.set("forwarded", ours);
        }
        // One line, a trusted proxy's list first: a backend reading only
        // the first line still sees our hop.
        let mut list = all("x-forwarded-for");
        list.push(ip.to_string());
        edits.remove("x-forwarded-for");
        edits.set("x-forwarded-for", list.join(", "));
    }
    edits.set("x-forwarded-proto", scheme);
    match host {
        Some(h) => edits.set("x-forwarded-host", h.to_owned()),
        None => edits.remove("x-forwarded-host"),
    }
    edits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HeaderEdit;

    fn edits(client: Option<Connection>, headers: &dyn HeaderSource) -> Vec<HeaderEdit<'static>> {
        upstream_edits(client, headers).into_iter().collect()
    }

    fn peer(addr: &str, tls: bool) -> Option<Connection> {
        Some(Connection::new(Some(addr.parse().unwrap()), tls))
    }

    #[test]
    fn a_direct_client_gets_our_forwarded_naming_what_the_key_holds() {
        let headers = [("host", "cache.test")];
        assert_eq!(
            edits(peer("127.0.0.1:5000", false), &headers),
            [
                HeaderEdit::Remove("forwarded"),
                HeaderEdit::Set(
                    "forwarded",
                    "for=127.0.0.1;host=\"cache.test\";proto=http".into()
                ),
                HeaderEdit::Remove("x-forwarded-for"),
                HeaderEdit::Set("x-forwarded-for", "127.0.0.1".into()),
                HeaderEdit::Set("x-forwarded-proto", "http".into()),
                HeaderEdit::Set("x-forwarded-host", "cache.test".into()),
            ]
        );
    }

    #[test]
    fn a_trusted_proxys_word_is_kept_and_our_hop_added() {
        let headers = [
            ("host", "internal"),
            ("forwarded", "for=203.0.113.7;host=shop.example;proto=https"),
            ("x-forwarded-for", "203.0.113.7"),
        ];
        assert_eq!(
            edits(peer("[::ffff:10.0.0.2]:5000", false), &headers),
            [
                HeaderEdit::Remove("forwarded"),
                HeaderEdit::Set(
                    "forwarded",
                    "for=203.0.113.7;host=shop.example;proto=https, for=10.0.0.2".into()
                ),
                HeaderEdit::Remove("x-forwarded-for"),
                HeaderEdit::Set("x-forwarded-for", "203.0.113.7, 10.0.0.2".into()),
                HeaderEdit::Set("x-forwarded-proto", "https".into()),
                HeaderEdit::Set("x-forwarded-host", "shop.example".into()),
            ]
        );
        // X-Forwarded-* only: no Forwarded of ours to hide it.
        let headers = [("host", "internal"), ("x-forwarded-host", "shop.example")];
        let e = edits(peer("[2001:db8::1]:5000", true), &headers);
        assert_eq!(e[0], HeaderEdit::Remove("forwarded"));
        assert_eq!(e[1], HeaderEdit::Remove("x-forwarded-for"));
        assert_eq!(
            e[2],
            HeaderEdit::Set("x-forwarded-for", "2001:db8::1".into())
        );
        assert_eq!(e[3], HeaderEdit::Set("x-forwarded-proto", "https".into()));
    }

    #[test]
    fn without_a_peer_only_proto_and_host_are_said() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            edits(None, &none),
            [
                HeaderEdit::Set("x-forwarded-proto", "http".into()),
                HeaderEdit::Remove("x-forwarded-host"),
            ]
        );
        // A host that cannot be quoted is left out of Forwarded.
        let headers = [("host", "a\"b")];
        let e = edits(peer("[2001:db8::1]:5000", false), &headers);
        assert_eq!(
            e[1],
            HeaderEdit::Set("forwarded", "for=\"[2001:db8::1]\";proto=http".into())
        );
    }
}
