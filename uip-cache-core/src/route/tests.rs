use std::convert::Infallible;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn table(yaml: &str) -> RouteTable<String> {
    let config = CacheConfig::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    RouteTable::from_config(&config, |url| Ok::<_, Infallible>(url.to_owned())).unwrap()
}

/// The URL of the first backend of the route `host` and `path` take, or
/// what stood in the way.
fn to(t: &RouteTable<String>, host: Option<&str>, path: &str) -> String {
    match t.find(host, path) {
        Lookup::Route(r) => r.upstreams().client(0).clone(),
        Lookup::NoRoute => "404".into(),
        Lookup::DotSegment => "400".into(),
    }
}

const PLATFORM: &str = r#"
server:
  routes:
    - { host: "api.example.org", path_prefix: "/ngsi-ld/", upstream: "http://broker:1026" }
    - { path_prefix: "/sparql", upstreams: ["http://fuseki-1:3030", "http://fuseki-2:3030"] }
    - { host: "*.tenants.example", upstream: "http://tenants" }
    - { host: "[2001:db8::1]", upstream: "http://v6" }
"#;

#[test]
fn hosts_match_without_port_case_or_trailing_dot() {
    let t = table(PLATFORM);
    for host in [
        "api.example.org",
        "API.Example.ORG",
        "api.example.org:8443",
        "api.example.org.",
        "api.example.org.:80",
    ] {
        assert_eq!(
            to(&t, Some(host), "/ngsi-ld/v1/entities"),
            "http://broker:1026",
            "{host}"
        );
    }
    for host in [
        "api.example.org.evil",
        "xapi.example.org",
        "api.example.org:x",
        "api.example.org:",
        "api.example.org:123456",
        "api.example.org..",
        "api.example.org/x",
        "api.example.org@evil",
        "",
    ] {
        assert_eq!(to(&t, Some(host), "/ngsi-ld/v1/entities"), "404", "{host}");
    }
    assert_eq!(to(&t, None, "/ngsi-ld/v1/entities"), "404");
}

#[test]
fn a_wildcard_takes_every_name_under_its_domain_but_not_the_domain() {
    let t = table(PLATFORM);
    for host in [
        "a.tenants.example",
        "a.b.tenants.example:8080",
        "A.TENANTS.EXAMPLE.",
    ] {
        assert_eq!(to(&t, Some(host), "/"), "http://tenants", "{host}");
    }
    for host in [
        "tenants.example",
        "atenants.example",
        ".tenants.example",
        "a..tenants.example",
    ] {
        assert_eq!(to(&t, Some(host), "/"), "404", "{host}");
    }
}

#[test]
fn ipv6_hosts_compare_as_addresses_with_any_port() {
    let t = table(PLATFORM);
    for host in [
        "[2001:db8::1]",
        "[2001:DB8:0::1]:8080",
        "[2001:db8:0:0:0:0:0:1]",
    ] {
        assert_eq!(to(&t, Some(host), "/"), "http://v6", "{host}");
    }
    for host in [
        "[2001:db8::2]",
        "2001:db8::1",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "[2001:db8::1]:",
    ] {
        assert_eq!(to(&t, Some(host), "/"), "404", "{host}");
    }
}

#[test]
fn a_prefix_ends_at_a_segment_boundary_and_ignores_the_query() {
    let t = table(PLATFORM);
    let h = Some("any.example");
    assert_eq!(to(&t, h, "/sparql"), "http://fuseki-1:3030");
    assert_eq!(to(&t, h, "/sparql/"), "http://fuseki-1:3030");
    assert_eq!(to(&t, h, "/sparql/update"), "http://fuseki-1:3030");
    for path in [
        "/sparqlx",
        "/sparql-admin",
        "/Sparql",
        "/%73parql",
        "//sparql",
        "/sparql;x",
        "/",
    ] {
        assert_eq!(to(&t, h, path), "404", "{path}");
    }
    // `/ngsi-ld/` (with its slash) does not take `/ngsi-ld`.
    assert_eq!(to(&t, Some("api.example.org"), "/ngsi-ld"), "404");
}

#[test]
fn paths_some_backend_reads_with_dot_segments_are_refused() {
    let t = table(PLATFORM);
    let h = Some("api.example.org");
    for path in [
        "/ngsi-ld/../admin",
        "/ngsi-ld/./x",
        "/ngsi-ld/..",
        "/ngsi-ld/%2e%2e/admin",
        "/ngsi-ld/%2E./admin",
        "/ngsi-ld/..%2fadmin",
        "/ngsi-ld/..%5Cadmin",
        "/ngsi-ld\\..\\admin",
        "/ngsi-ld/..;/admin",
        "/ngsi-ld/.;x=1/admin",
        "/ngsi-ld/%252e%252e/admin",
        "/admin/..%2Fngsi-ld/x",
        "/a/%25252e%25252e/b",
    ] {
        assert_eq!(to(&t, h, path), "400", "{path}");
    }
    for path in [
        "/ngsi-ld/.well-known",
        "/ngsi-ld/...",
        "/ngsi-ld/a..b",
        "/ngsi-ld/a.%2e",
        "/ngsi-ld/%zz",
        "/ngsi-ld/%",
        "/ngsi-ld/urn%3Angsi-ld%3AX%2F1",
    ] {
        assert_eq!(to(&t, h, path), "http://broker:1026", "{path}");
    }
    // Without a prefix route the path decides nothing: nothing is refused.
    let hosts = table("server:\n  routes:\n    - { host: a.example, upstream: \"http://a\" }\n");
    assert_eq!(to(&hosts, Some("a.example"), "/x/../y"), "http://a");
}

#[test]
fn the_first_match_wins_and_server_upstream_comes_last() {
    let t = table(
        r#"
server:
  upstream: "http://rest"
  routes:
    - { path_prefix: "/a", upstream: "http://first" }
    - { path_prefix: "/a/b", upstream: "http://never" }
    - { host: "h.example", upstream: "http://host" }
"#,
    );
    assert_eq!(to(&t, Some("h.example"), "/a/b"), "http://first");
    assert_eq!(to(&t, Some("h.example"), "/c"), "http://host");
    assert_eq!(to(&t, Some("other"), "/c"), "http://rest");
    assert_eq!(t.routes()[3].source(), RouteSource::Upstream);
    assert_eq!(t.routes()[1].source().to_string(), "server.routes[1]");
    assert!(!t.is_single());
    let single = table("server:\n  upstream: \"http://only\"\n");
    assert!(single.is_single());
    assert_eq!(to(&single, None, "/x/../y"), "http://only");
    assert!(table("policies: []\n").is_empty());
}

#[test]
fn routes_print_what_they_match_and_where_they_go() {
    let t = table(PLATFORM);
    assert_eq!(
        t.routes()[0].to_string(),
        "host api.example.org, path /ngsi-ld/ -> http://broker:1026"
    );
    assert_eq!(
        t.routes()[1].to_string(),
        "path /sparql -> http://fuseki-1:3030, http://fuseki-2:3030 (round robin, fail_timeout 10s)"
    );
}

fn problems(yaml: &str) -> String {
    CacheConfig::from_yaml_str(yaml)
        .expect_err("a config error")
        .to_string()
}

#[test]
fn config_errors_name_line_and_field() {
    let e = problems(
        r#"server:
  routes:
    - { path_prefix: "/a", upstream: "http://a", upstreams: ["http://b"] }
    - { path_prefix: "/b" }
    - { path_prefix: "b", upstream: "http://a" }
    - { host: "a.*.org", upstream: "http://a" }
    - { host: "api.example.org:443", upstream: "http://a" }
    - { upstreams: [] , host: "x.example"}
    - upstreams:
        - "http://ok:1"
        - "ftp://nope"
    - { upstream: "http://a/base", path_prefix: "/%61" }
"#,
    );
    for line in [
        "<string>:3: server.routes[0].upstreams: give `upstream` (one backend) or `upstreams` (several), not both",
        "<string>:4: server.routes[1]: a route needs `upstream` (one backend) or `upstreams` (several)",
        "<string>:5: server.routes[2].path_prefix: `b` must start with `/`",
        "<string>:6: server.routes[3].host: `a.*.org`: only a leading `*.` is a wildcard",
        "<string>:7: server.routes[4].host: `api.example.org:443` has a port",
        "<string>:8: server.routes[5].upstreams: the list is empty",
        "<string>:11: server.routes[6].upstreams[1]: `ftp://nope` is not an http:// or https:// URL",
        "<string>:12: server.routes[7].upstream: `http://a/base` has a path",
        "<string>:12: server.routes[7].path_prefix: `/%61` contains `%`",
    ] {
        assert!(e.contains(line), "{line}\nnot in\n{e}");
    }
    // https:// backends are accepted (the server's client reaches them).
    let t = table("server:\n  routes:\n    - { upstream: \"https://broker.internal:8443\" }\n");
    assert_eq!(to(&t, None, "/"), "https://broker.internal:8443");
}

#[test]
fn routes_by_host_need_keys_that_hold_the_host() {
    let e = problems(
        "key:\n  include_host: false\nserver:\n  routes:\n    - { host: a.example, upstream: \"http://a\" }\n",
    );
    assert!(
        e.contains(
            "<string>:5: server.routes[0].host: routes by host need keys that hold the host"
        ),
        "{e}"
    );
    // Routes by path alone are fine: the path is always in the key.
    table("key:\n  include_host: false\nserver:\n  routes:\n    - { path_prefix: /a, upstream: \"http://a\" }\n");
}

#[test]
fn unreachable_routes_are_warned_about() {
    let config = CacheConfig::from_yaml_str(
        r#"server:
  upstream: "http://rest"
  routes:
    - { path_prefix: "/a", upstream: "http://a" }
    - { path_prefix: "/a", upstream: "http://b" }
    - { upstream: "http://all" }
    - { host: "x.example", upstream: "http://x" }
"#,
    )
    .unwrap();
    let notes: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    let all = notes.join("\n");
    assert!(
        all.contains("5: server.routes[1]: no request reaches this route: server.routes[0]"),
        "{all}"
    );
    assert!(
        all.contains("7: server.routes[3]: no request reaches this route: server.routes[2]"),
        "{all}"
    );
    assert!(all.contains("server.upstream: `http://rest` is the route for requests no route matches, but server.routes[2]"), "{all}");
}

#[test]
fn backends_take_turns_and_one_that_failed_is_skipped_for_fail_timeout() {
    let set = UpstreamSet::new(
        vec![("a".into(), ()), ("b".into(), ()), ("c".into(), ())],
        Duration::from_secs(10),
    );
    let t0 = Instant::now();
    let firsts: Vec<usize> = (0..6).map(|_| set.attempts(t0).next().unwrap()).collect();
    assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    // Each request tries each backend once, the next in turn first.
    assert_eq!(set.attempts(t0).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(set.attempts(t0).collect::<Vec<_>>(), [1, 2, 0]);

    assert!(set.failed(1, t0), "news the first time");
    assert!(!set.failed(1, t0), "not the second");
    assert!(set.is_down(1, t0));
    // b is skipped, a and c share the load, b is last resort.
    let orders: Vec<Vec<usize>> = (0..4).map(|_| set.attempts(t0).collect()).collect();
    assert!(
        orders.iter().all(|o| o.len() == 3 && o[2] == 1),
        "{orders:?}"
    );
    let firsts: Vec<usize> = orders.iter().map(|o| o[0]).collect();
    assert_eq!(firsts.iter().filter(|&&i| i == 0).count(), 2, "{firsts:?}");
    assert_eq!(firsts.iter().filter(|&&i| i == 2).count(), 2, "{firsts:?}");

    // Up again when fail_timeout has passed.
    let later = t0 + Duration::from_secs(10);
    assert!(!set.is_down(1, later));
    assert!(set.attempts(later).take(3).any(|i| i == 1));
    let mut seen_first = [false; 3];
    for _ in 0..3 {
        seen_first[set.attempts(later).next().unwrap()] = true;
    }
    assert_eq!(seen_first, [true; 3]);
}

#[test]
fn when_every_backend_is_down_the_one_back_first_is_tried_first() {
    let set = UpstreamSet::new(
        vec![("a".into(), ()), ("b".into(), ())],
        Duration::from_secs(10),
    );
    let t0 = Instant::now();
    set.failed(1, t0);
    set.failed(0, t0 + Duration::from_secs(3));
    let now = t0 + Duration::from_secs(5);
    assert_eq!(set.attempts(now).collect::<Vec<_>>(), [1, 0]);
    assert_eq!(set.attempts(now).collect::<Vec<_>>(), [1, 0]);
    // It answered: up again at once.
    set.succeeded(1);
    assert!(!set.is_down(1, now));
    assert_eq!(set.attempts(now).next(), Some(1));
}

#[test]
fn one_backend_or_a_zero_fail_timeout_is_never_skipped() {
    let one = UpstreamSet::new(vec![("a".into(), ())], Duration::from_secs(10));
    let t0 = Instant::now();
    assert!(!one.failed(0, t0));
    assert!(!one.is_down(0, t0));
    assert_eq!(one.attempts(t0).collect::<Vec<_>>(), [0]);
    let zero = UpstreamSet::new(vec![("a".into(), ()), ("b".into(), ())], Duration::ZERO);
    assert!(!zero.failed(0, t0));
    assert!(!zero.is_down(0, t0));
    let none: UpstreamSet<()> = UpstreamSet::new(Vec::new(), Duration::ZERO);
    assert_eq!(none.attempts(t0).next(), None);
}

#[test]
fn the_mock_clock_moves_fail_timeout_on() {
    let clock = crate::clock::MockClock::new();
    let set = UpstreamSet::new(
        vec![("a".into(), ()), ("b".into(), ())],
        Duration::from_secs(10),
    );
    set.failed(0, clock.instant());
    clock.advance(Duration::from_secs(9));
    assert!(set.is_down(0, clock.instant()));
    clock.advance(Duration::from_secs(1));
    assert!(!set.is_down(0, clock.instant()));
}

#[test]
fn the_host_a_passed_on_request_was_keyed_for() {
    let headers = [
        ("host", "internal"),
        ("x-forwarded-host", "api.example.org"),
    ];
    assert_eq!(passed_on_host(&headers), Some("api.example.org"));
    let headers = [("host", "api.example.org")];
    assert_eq!(passed_on_host(&headers), Some("api.example.org"));
}

// ===== hostile input =====

/// How one backend or another could read `path`: percent-decoded
/// `decodes` times, `\` taken as `/` or not, `;params` dropped from each
/// segment or not, `//` merged or not, then dot segments removed (RFC 3986
/// section 5.2.4).
fn read_as(path: &str, decodes: usize, backslash: bool, params: bool, merge: bool) -> String {
    let mut p = path.as_bytes().to_vec();
    for _ in 0..decodes {
        p = percent_decode(&p);
    }
    let mut p = String::from_utf8_lossy(&p).into_owned();
    if backslash {
        p = p.replace('\\', "/");
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = p.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, s) in segments.iter().enumerate() {
        let name = if params {
            s.split(';').next().unwrap_or(s)
        } else {
            s
        };
        match name {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            "" if merge && i != last => {}
            _ => out.push(name),
        }
    }
    format!("/{}", out.join("/"))
}

/// Every `%XX` with two hex digits decoded, as most servers do.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .filter(|_| bytes[i] == b'%' && bytes[i + 1] != b'+');
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "a", "b", "ngsi-ld", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", ";", ";x=1",
        "%25", "%252e", "%", "%zz", "//", "?",
    ]);
    let start = prop::sample::select(vec!["/", "/ngsi-ld/", "/ngsi-ld/a/", "/ngsi-ld"]);
    (start, prop::collection::vec(piece, 0..12)).prop_map(|(s, v)| format!("{s}{}", v.concat()))
}

proptest! {
    /// Hostile hosts and paths never panic, and the answer is the same
    /// each time.
    #[test]
    fn any_host_and_path_is_routed_without_panic(
        host in prop::option::of(prop_oneof![
            ".{0,300}",
            "[\\[\\]0-9a-fA-F:.%a-z_*-]{0,60}",
            "[a-z.]{0,20}(:[0-9]{0,7})?",
        ]),
        path in prop_oneof![".{0,300}", hostile_path()],
    ) {
        let t = table(PLATFORM);
        let first = to(&t, host.as_deref(), &path);
        prop_assert_eq!(first, to(&t, host.as_deref(), &path));
        prop_assert!(RequestHost::parse(&"a.".repeat(10_000)).is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// A path routed under a prefix stays under it however a backend
    /// reads it: decoding once or twice, `\` as `/`, `;params` dropped,
    /// `//` merged, dot segments resolved.
    #[test]
    fn a_routed_path_stays_under_its_prefix_in_every_reading(path in hostile_path()) {
        let t = table("server:\n  routes:\n    - { path_prefix: \"/ngsi-ld/\", upstream: \"http://broker\" }\n");
        if let Lookup::Route(_) = t.find(None, &path) {
            for decodes in 0..=2 {
                for backslash in [false, true] {
                    for params in [false, true] {
                        for merge in [false, true] {
                            let read = read_as(&path, decodes, backslash, params, merge);
                            prop_assert!(
                                read.starts_with("/ngsi-ld/"),
                                "{} read as {} ({} decodes, backslash {}, params {}, merge {})",
                                path, read, decodes, backslash, params, merge
                            );
                        }
                    }
                }
            }
        }
    }
}
