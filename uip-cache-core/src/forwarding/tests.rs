use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn trusted(list: &[&str]) -> TrustedProxies {
    TrustedProxies::parse(list).unwrap()
}

fn from(peer: &str) -> Connection {
    Connection::new(Some(SocketAddr::new(ip(peer), 40_000)), false)
}

// ===== CIDR =====

#[test]
fn networks_and_plain_addresses_parse() {
    assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    assert_eq!(cidr("192.168.1.7").to_string(), "192.168.1.7/32");
    assert_eq!(cidr("::1").to_string(), "::1/128");
    assert_eq!(cidr("fd00::/8").prefix(), 8);
    assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    assert_eq!(cidr("::/0").to_string(), "::/0");
    // IPv4-mapped networks are the IPv4 ones.
    assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
}

#[test]
fn what_is_not_a_network_is_refused_with_a_reason() {
    for bad in [
        "",
        "10.0.0.0/",
        "10.0.0.0/33",
        "::/129",
        "10.0.0/8",
        "10.0.0.0/+8",
        "10.0.0.0/ 8",
        "10.0.0.0/8/8",
        "[::1]/128",
        "example.com",
        "10.0.0.0/0x8",
        "10.0.0.0/-1",
        "10.0.0.0/0008",
    ] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
    }
    let e = "10.1.0.0/8".parse::<Cidr>().unwrap_err().to_string();
    assert!(e.contains("10.0.0.0/8"), "{e}");
    let e = "10.0.0.0/40".parse::<Cidr>().unwrap_err().to_string();
    assert!(e.contains("at most 32"), "{e}");
}

#[test]
fn membership_is_by_prefix_and_family() {
    let ten = cidr("10.0.0.0/8");
    assert!(ten.contains(ip("10.255.1.2")));
    assert!(!ten.contains(ip("11.0.0.0")));
    assert!(!ten.contains(ip("::a00:1")), "another family");
    // A dual-stack socket reports IPv4 peers mapped into IPv6.
    assert!(ten.contains(ip("::ffff:10.1.2.3")));
    assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.1")));
    assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
    assert!(cidr("::1/128").contains(ip("::1")));
    assert!(!cidr("::1/128").contains(ip("::2")));
    assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
    let list = trusted(&["127.0.0.1", "fd00::/8"]);
    assert!(list.contains(ip("127.0.0.1")) && list.contains(ip("fd12::1")));
    assert!(!list.contains(ip("127.0.0.2")));
    assert_eq!(
        TrustedProxies::parse(&["10.0.0.0/8", "nope"])
            .unwrap_err()
            .0,
        1
    );
}

fn v4_net() -> impl Strategy<Value = (u32, u8)> {
    (any::<u32>(), 0u8..=32)
}

proptest! {
    /// Parsing what `Display` writes gives the same network, and the
    /// network holds exactly the addresses that agree with it on the
    /// prefix bits (checked bit by bit, not with the same mask arithmetic).
    #[test]
    fn ipv4_networks_hold_the_addresses_sharing_their_prefix((addr, prefix) in v4_net(), probe in any::<u32>()) {
        let bits = |x: u32| (0..prefix).map(move |i| (x >> (31 - i)) & 1);
        let network: u32 = bits(addr).enumerate().map(|(i, b)| b << (31 - i)).sum();
        let c = Cidr::new(IpAddr::V4(Ipv4Addr::from(network)), prefix).unwrap();
        prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
        let expected = bits(network).eq(bits(probe));
        prop_assert_eq!(c.contains(IpAddr::V4(Ipv4Addr::from(probe))), expected);
        prop_assert_eq!(c.contains(IpAddr::V6(Ipv4Addr::from(probe).to_ipv6_mapped())), expected);
        prop_assert!(c.contains(IpAddr::V4(Ipv4Addr::from(network))));
        // Host bits past the prefix are refused, never silently dropped.
        if network != addr {
            let text = format!("{}/{}", Ipv4Addr::from(addr), prefix);
            prop_assert!(text.parse::<Cidr>().is_err());
        }
    }

    #[test]
    fn ipv6_networks_hold_the_addresses_sharing_their_prefix(addr in any::<u128>(), prefix in 0u8..=128, probe in any::<u128>()) {
        let keep = |x: u128| if prefix == 0 { 0 } else { x >> (128 - u32::from(prefix)) };
        let network = if prefix == 0 { 0 } else { keep(addr) << (128 - u32::from(prefix)) };
        let net = Ipv6Addr::from(network);
        match Cidr::new(IpAddr::V6(net), prefix) {
            Some(c) => {
                prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
                if net.to_ipv4_mapped().is_none() || prefix < 96 {
                    prop_assert_eq!(c.contains(IpAddr::V6(Ipv6Addr::from(probe))), keep(probe) == keep(network));
                }
            }
            None => prop_assert!(false, "a masked network was refused"),
        }
    }

    /// Nothing panics on any input, and what parses prints back to itself.
    #[test]
    fn any_text_parses_or_is_refused(s in "[0-9a-fA-F:./ x+-]{0,24}") {
        if let Ok(c) = s.parse::<Cidr>() {
            prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
        }
    }
}

// ===== the decision =====

#[test]
fn an_untrusted_peer_gets_every_forwarding_header_removed() {
    let t = trusted(&["10.0.0.0/8"]);
    let h = [
        ("host", "shop.example"),
        ("forwarded", "host=evil.example;proto=https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
    ];
    for conn in [from("203.0.113.9"), Connection::default()] {
        let o = t.client_origin(&conn, None, &h);
        assert_eq!(
            (o.scheme, o.host, o.trusted),
            ("http", Some("shop.example"), false)
        );
        let names: Vec<_> = o.strip().names().collect();
        assert_eq!(names, FORWARDING_HEADERS);
    }
    // Nobody is trusted by default.
    let o = TrustedProxies::default().client_origin(&from("10.0.0.1"), None, &h);
    assert!(!o.trusted && o.host == Some("shop.example"));
    // The target's authority wins over Host; TLS gives https.
    let tls = Connection::new(None, true);
    let o = t.client_origin(&tls, Some("target.example"), &h);
    assert_eq!((o.scheme, o.host), ("https", Some("target.example")));
}

#[test]
fn a_trusted_peer_is_believed_as_frameworks_read_it() {
    let t = trusted(&["10.0.0.0/8"]);
    let p = from("10.0.0.1");
    let o = t.client_origin(
        &p,
        None,
        &[
            ("host", "in"),
            ("x-forwarded-host", "a.example"),
            ("x-forwarded-proto", "HTTPS"),
        ],
    );
    assert_eq!(
        (o.scheme, o.host, o.trusted),
        ("https", Some("a.example"), true)
    );
    assert!(o.strip().is_empty());
    // Forwarded first, as actix-web and axum-extra read it.
    let o = t.client_origin(
        &p,
        None,
        &[
            ("host", "in"),
            (
                "forwarded",
                "for=1.2.3.4;host=\"b.example\";proto=https, for=10.0.0.1",
            ),
            ("x-forwarded-host", "a.example"),
        ],
    );
    assert_eq!((o.scheme, o.host), ("https", Some("b.example")));
    // A Forwarded with only for= leaves host and scheme to the others.
    let o = t.client_origin(
        &p,
        None,
        &[
            ("host", "in"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-host", "a.example"),
        ],
    );
    assert_eq!((o.scheme, o.host), ("http", Some("a.example")));
    assert!(o.strip().is_empty());
    // Nothing forwarded: the request's own.
    let o = t.client_origin(&p, None, &[("host", "in")]);
    assert_eq!((o.scheme, o.host), ("http", Some("in")));
}

#[test]
fn trusted_headers_frameworks_would_read_differently_are_removed() {
    let t = trusted(&["10.0.0.0/8"]);
    let p = from("10.0.0.1");
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );
    let cases: [Case; 9] = [
        (&[("forwarded", "host= evil")], "forwarded", "in"),
        // actix-web finds host= in a later element, axum-extra does not.
        (
            &[("forwarded", "for=1.2.3.4, host=evil")],
            "forwarded",
            "in",
        ),
        (&[("forwarded", "host=a;host=b")], "forwarded", "in"),
        (
            &[("forwarded", "for=x"), ("forwarded", "host=evil")],
            "forwarded",
            "in",
        ),
        // A quoted separator splits differently.
        (&[("forwarded", "host=\"a,host=b\"")], "forwarded", "in"),
        (&[("forwarded", "proto=gopher")], "forwarded", "in"),
        // actix-web reads the first of a list, axum-extra all of it.
        (
            &[("x-forwarded-host", "a.example, evil")],
            "x-forwarded-host",
            "in",
        ),
        (
            &[("x-forwarded-proto", "https, http")],
            "x-forwarded-proto",
            "in",
        ),
        (
            &[("x-forwarded-host", "caf\u{e9}.example")],
            "x-forwarded-host",
            "in",
        ),
    ];
    for (extra, removed, host) in cases {
        let mut h: Vec<(&str, &str)> = vec![("host", "in")];
        h.extend_from_slice(extra);
        let o = t.client_origin(&p, None, &h);
        assert!(o.strip().contains(removed), "{extra:?}: {:?}", o.strip());
        assert_eq!(o.strip().names().count(), 1, "{extra:?}");
        assert_eq!((o.scheme, o.host), ("http", Some(host)), "{extra:?}");
    }
    // An ambiguous Forwarded falls back to X-Forwarded-Host, which both read.
    let o = t.client_origin(
        &p,
        None,
        &[
            ("host", "in"),
            ("forwarded", "for=a, host=evil"),
            ("x-forwarded-host", "ok.example"),
        ],
    );
    assert_eq!(o.host, Some("ok.example"));
}

#[test]
fn strip_sets_answer_cheaply_and_list_what_they_hold() {
    assert!(!Strip::NONE.contains("x-forwarded-host"));
    assert!(Strip::ALL.contains("x-original-url"));
    assert!(Strip::ALL.contains("forwarded") && Strip::ALL.contains("true-client-ip"));
    assert!(!Strip::ALL.contains("accept") && !Strip::ALL.contains("x-custom"));
    assert_eq!(Strip::ALL.names().count(), FORWARDING_HEADERS.len());
    let keyed: Vec<_> = keyed_from_trusted().collect();
    assert!(keyed.contains(&"x-forwarded-prefix") && keyed.contains(&"x-original-url"));
    assert!(keyed.contains(&"x-forwarded-port") && keyed.contains(&"x-rewrite-url"));
    for per_client in [
        "x-forwarded-for",
        "x-real-ip",
        "true-client-ip",
        "forwarded",
        "x-forwarded-host",
    ] {
        assert!(!keyed.contains(&per_client), "{per_client}");
    }
}

/// `name` with every letter's case and every `-` chosen by `bits`.
fn spelt(name: &str, bits: u64) -> String {
    name.bytes()
        .enumerate()
        .map(|(i, b)| {
            let on = bits >> (i % 64) & 1 == 1;
            match b {
                b'-' if on => '_',
                b if on => b.to_ascii_uppercase() as char,
                b => b as char,
            }
        })
        .collect()
}

proptest! {
    // CGI, WSGI and Rack servers fold `_` into `-` (HTTP_X_FORWARDED_HOST):
    // every spelling of a listed name is removed from an untrusted peer,
    // and one with `_` from a trusted peer too.
    #[test]
    fn every_case_and_underscore_spelling_of_a_listed_name_is_removed(
        i in 0..FORWARDING_HEADERS.len(),
        bits in any::<u64>(),
    ) {
        let name = spelt(FORWARDING_HEADERS[i], bits);
        prop_assert!(Strip::ALL.contains(&name), "{name}");
        let t = trusted(&["10.0.0.0/8"]);
        let h = [("host", "in"), (name.as_str(), "evil.example")];
        let o = t.client_origin(&from("203.0.113.1"), None, &h);
        prop_assert!(o.strip().contains(&name), "{name}");
        let o = t.client_origin(&from("10.0.0.1"), None, &h);
        if name.contains('_') {
            prop_assert!(o.strip().contains(&name), "{name}");
        }
        prop_assert_eq!(Strip::NONE.contains(&name), name.contains('_'), "{}", name);
    }

    #[test]
    fn other_names_are_kept(name in "[a-zA-Z_-]{1,24}") {
        let listed = FORWARDING_HEADERS.iter().any(|n| same_field_name(n, &name));
        prop_assert_eq!(Strip::ALL.contains(&name), listed);
    }
}

#[test]
fn underscore_spellings_are_not_believed_from_a_trusted_peer() {
    let t = trusted(&["10.0.0.0/8"]);
    let h = [("host", "in"), ("x_forwarded_host", "evil.example")];
    let o = t.client_origin(&from("10.0.0.1"), None, &h);
    assert_eq!(o.host, Some("in"));
    assert!(o.strip().contains("X_Forwarded_Host"));
    assert!(!Strip::ALL.contains("x-forwarded-hosts"));
    assert!(Strip::ALL.contains("x-scheme") && Strip::ALL.contains("Script_Name"));
}

#[test]
fn more_than_one_x_forwarded_host_or_proto_line_is_removed() {
    let t = trusted(&["10.0.0.0/8"]);
    let p = from("10.0.0.1");
    // actix-web and axum-extra read the first line, Rails the last.
    let h = [
        ("host", "in"),
        ("x-forwarded-host", "victim.example"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-proto", "http"),
    ];
    let o = t.client_origin(&p, None, &h);
    assert_eq!((o.scheme, o.host), ("http", Some("in")));
    assert!(o.strip().contains("x-forwarded-host"));
    assert!(o.strip().contains("x-forwarded-proto"));
}

#[test]
fn x_forwarded_host_and_proto_must_agree_with_forwarded() {
    let t = trusted(&["10.0.0.0/8"]);
    let p = from("10.0.0.1");
    let h = [
        ("host", "in"),
        ("forwarded", "host=a.example;proto=https"),
        ("x-forwarded-host", "b.example"),
        ("x-forwarded-proto", "http"),
    ];
    let o = t.client_origin(&p, None, &h);
    assert_eq!((o.scheme, o.host), ("https", Some("a.example")));
    let removed: Vec<_> = o.strip().names().collect();
    assert_eq!(removed, ["x-forwarded-host", "x-forwarded-proto"]);
    // Agreeing, they stay; an unreadable one goes even beside Forwarded.
    let h = [
        ("host", "in"),
        ("forwarded", "host=a.example;proto=https"),
        ("x-forwarded-host", "A.example"),
        ("x-forwarded-proto", "HTTPS"),
    ];
    assert!(t.client_origin(&p, None, &h).strip().is_empty());
    let h = [
        ("host", "in"),
        ("forwarded", "host=a.example"),
        ("x-forwarded-host", "a.example, b.example"),
    ];
    let o = t.client_origin(&p, None, &h);
    assert_eq!(o.host, Some("a.example"));
    assert!(o.strip().contains("x-forwarded-host"));
}
