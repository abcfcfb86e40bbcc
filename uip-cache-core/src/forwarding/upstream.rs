//! The forwarding headers a reverse proxy in front of a backend sends it,
//! as nginx's `proxy_pass` with `$proxy_add_x_forwarded_for` does.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;

use bytes::Bytes;

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

thread_local! {
    /// The text of the last peer address this thread forwarded for.
    static PEER_TEXT: RefCell<Option<(IpAddr, Bytes, Bytes)>> = const { RefCell::new(None) };
}

/// `ip` as `X-Forwarded-For` and as `Forwarded`'s `for=` write it (an
/// IPv6 address quoted and in brackets): written once for the requests of
/// one peer in a row on a thread (those of a keep-alive connection, or of
/// a proxy in front), not once a request; each request's values share it.
fn peer_text(ip: IpAddr) -> (Bytes, Bytes) {
    PEER_TEXT.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((seen, text, node)) if *seen == ip => (text.clone(), node.clone()),
            _ => {
                let text = ip.to_string();
                let node = match ip {
                    IpAddr::V4(_) => Bytes::from(text.clone()),
                    IpAddr::V6(_) => Bytes::from(format!("\"[{text}]\"")),
                };
                let text = Bytes::from(text);
                *last = Some((ip, text.clone(), node.clone()));
                (text, node)
            }
        }
    })
}

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
    let mut edits = HeaderEdits::with_capacity(6);
    if let Some(peer) = client.and_then(|c| c.peer) {
        let ip = peer.ip().to_canonical();
        let (ip_text, node) = peer_text(ip);
        let proxied = ["forwarded", "x-forwarded-host", "x-forwarded-proto"]
            .iter()
            .any(|n| headers.first(n).is_some());
        let forwarded = all("forwarded");
        let ours = if !forwarded.is_empty() {
            let node = String::from_utf8_lossy(&node);
            Some(format!("{}, for={node}", forwarded.join(", ")).into())
        } else if proxied {
            None
        } else {
            // for=<node>;host="<host>";proto=<scheme>, in one allocation
            // of its exact size.
            let host = host.filter(|h| !h.contains(['"', '\\']));
            let parts: [&[u8]; 7] = [
                b"for=",
                &node,
                if host.is_some() { b";host=\"" } else { b"" },
                host.unwrap_or("").as_bytes(),
                if host.is_some() { b"\"" } else { b"" },
                b";proto=",
                scheme.as_bytes(),
            ];
            Some(Bytes::from(parts.concat()))
        };
        edits.remove("forwarded");
        if let Some(ours) = ours {
            edits.set("forwarded", ours);
        }
        // One line, a trusted proxy's list first: a backend reading only
        // the first line still sees our hop.
        let list = all("x-forwarded-for");
        edits.remove("x-forwarded-for");
        if list.is_empty() {
            edits.set("x-forwarded-for", ip_text);
        } else {
            let ip_text = String::from_utf8_lossy(&ip_text);
            edits.set("x-forwarded-for", format!("{}, {ip_text}", list.join(", ")));
        }
    }
    edits.set("x-forwarded-proto", scheme);
    match host {
        Some(h) => edits.set("x-forwarded-host", Bytes::copy_from_slice(h.as_bytes())),
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
