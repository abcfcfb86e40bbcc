use super::*;
use crate::config::{CacheConfig, PatternType};
use crate::pattern::split_query;

fn set(yaml: &str) -> PolicySet {
    let config = CacheConfig::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    PolicySet::compile(&config).unwrap()
}

fn name<'a>(s: &'a PolicySet, url: &str) -> Option<&'a str> {
    let (p, q) = split_query(url);
    s.find(p, q).map(|m| m.policy().name())
}

const SEED: &str = r#"
policies:
  - name: camera_entities
    pattern: "/ngsi-ld/v1/entities?type=Camera*"
    pattern_type: glob
    ttl: 60
    tags: [camera, sensor]
  - name: sensor_data
    pattern: "/ngsi-ld/v1/entities?type=Sensor*"
    ttl: 30
  - name: entity_by_id
    pattern: "/ngsi-ld/v1/entities/{id}"
    ttl: 300
  - name: sparql_query
    pattern: "/sparql?query=*"
    ttl: 600
  - name: versioned_api
    pattern: "^/api/v[0-9]+/.*"
    ttl: 10
  - name: health
    pattern: /health
    pattern_type: exact
    ttl: 5
"#;

#[test]
fn seed_examples() {
    let s = set(SEED);
    let cases = [
        (
            "/ngsi-ld/v1/entities?type=Camera&limit=100",
            Some("camera_entities"),
        ),
        (
            "/ngsi-ld/v1/entities?limit=100&type=Camera",
            Some("camera_entities"),
        ),
        (
            "/ngsi-ld/v1/entities?type=CameraPTZ",
            Some("camera_entities"),
        ),
        (
            "/ngsi-ld/v1/entities?type=Sensor&limit=5",
            Some("sensor_data"),
        ),
        ("/ngsi-ld/v1/entities?type=Parking", None),
        ("/ngsi-ld/v1/entities", None),
        (
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001",
            Some("entity_by_id"),
        ),
        ("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001/attrs", None),
        ("/sparql?query=SELECT", Some("sparql_query")),
        ("/sparql", None),
        ("/api/v2/things?x=1", Some("versioned_api")),
        ("/api/vX/things", None),
        ("/health", Some("health")),
        ("/health?verbose=1", Some("health")),
        ("/healthz", None),
    ];
    for (url, want) in cases {
        assert_eq!(name(&s, url), want, "{url}");
    }
}

#[test]
fn first_match_in_file_order_wins() {
    let s = set("policies:\n  - name: specific\n    pattern: /a/b\n  - name: broad\n    pattern: /a/*\n  - name: never\n    pattern: /a/b\n");
    assert_eq!(name(&s, "/a/b"), Some("specific"));
    assert_eq!(name(&s, "/a/c"), Some("broad"));
}

#[test]
fn exact_with_query_ignores_order_but_not_extras() {
    let s = set("policies:\n  - name: q\n    pattern: \"/e?type=A&limit=1\"\n");
    assert_eq!(name(&s, "/e?limit=1&type=A"), Some("q"));
    assert_eq!(name(&s, "/e?type=A"), None);
    assert_eq!(name(&s, "/e?type=A&limit=1&x=2"), None);
}

#[test]
fn templates_extract_params_as_tags() {
    let s = set(SEED);
    let m = s
        .find("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001", None)
        .unwrap();
    let tags = m.entry_tags("/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001");
    assert!(
        tags.contains(&"id:urn:ngsi-ld:Camera:001".to_string()),
        "{tags:?}"
    );
    assert!(tags.contains(&"policy:entity_by_id".to_string()));
    assert!(tags.contains(&"path:/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001".to_string()));
    let m = s.find("/ngsi-ld/v1/entities", Some("type=Camera")).unwrap();
    let tags = m.entry_tags("/ngsi-ld/v1/entities");
    for t in ["camera", "sensor", "policy:camera_entities"] {
        assert!(tags.contains(&t.to_string()), "{tags:?}");
    }
}

#[test]
fn templates_with_query_constraints_and_several_params() {
    let s = set("policies:\n  - name: t\n    pattern: \"/orgs/{org}/items/{item}?format=json\"\n    pattern_type: path_template\n");
    let m = s
        .find("/orgs/acme/items/42", Some("x=1&format=json"))
        .unwrap();
    assert_eq!(
        m.params(),
        &[("org".into(), "acme".into()), ("item".into(), "42".into())]
    );
    assert!(s.find("/orgs/acme/items/42", Some("format=xml")).is_none());
}

#[test]
fn inferred_pattern_types() {
    assert_eq!(PatternType::infer("/e/{id}"), PatternType::PathTemplate);
    assert_eq!(PatternType::infer("^/e/.*$"), PatternType::Regex);
    assert_eq!(PatternType::infer("/e/*"), PatternType::Glob);
    assert_eq!(PatternType::infer("/e?x=1"), PatternType::Exact);
}

#[test]
fn unmatched_requests_use_the_fallback_only_when_asked() {
    let s = set("policies:\n  - name: a\n    pattern: /a\n");
    assert_eq!(name(&s, "/zzz"), None);
    let s = set(
        "defaults:\n  cache_unmatched: true\n  ttl: 15\npolicies:\n  - name: a\n    pattern: /a\n",
    );
    let m = s.find("/zzz", None).unwrap();
    assert_eq!(m.policy().name(), "default");
    assert_eq!(m.policy().ttl(), Some(Duration::from_secs(15)));
}

#[test]
fn policy_fields_and_defaults() {
    let s = set("defaults:\n  stale_if_error: 100\npolicies:\n  - name: a\n    pattern: /a\n    methods: [get, post]\n    vary_by: [body]\n    max_body: 2KB\n    statuses: [200]\n    compression: {min_size: 10}\n    stale_while_revalidate: 5\n  - name: b\n    pattern: /b\n");
    let a = s.find("/a", None).unwrap().policy();
    assert!(a.allows_method("POST") && a.allows_method("GET") && !a.allows_method("DELETE"));
    // Request methods are case-sensitive: `get` is not GET.
    assert!(!a.allows_method("get"));
    assert!(a.allows_status(200) && !a.allows_status(404));
    assert_eq!(a.compression().map(|c| c.min_size), Some(10));
    assert_eq!(a.stale_while_revalidate(), Some(Duration::from_secs(5)));
    assert_eq!(
        a.stale_if_error(),
        Some(Duration::from_secs(100)),
        "from defaults"
    );
    let b = s.find("/b", None).unwrap().policy();
    assert!(b.allows_method("HEAD") && !b.allows_method("POST"));
    // A policy TTL gives no error freshness by default; heuristics may,
    // for the statuses RFC 9111 lists.
    assert!(b.allows_status(301) && !b.allows_status(404) && !b.allows_status(405));
    assert!(!b.allows_status(500) && !b.allows_status(206));
    assert!(b.allows_heuristic(404) && b.allows_heuristic(501) && !b.allows_heuristic(500));
    assert!(
        a.allows_heuristic(200) && !a.allows_heuristic(404),
        "a's own list"
    );
    assert_eq!(b.negative_ttl(), Duration::from_secs(10));
    assert_eq!(b.compression(), None);
    assert_eq!(b.max_size(), 10 << 20);
    assert_eq!((a.max_body(), b.max_body()), (2048, 64 << 10));
}

#[test]
fn methods_are_get_head_and_post_with_a_body_key() {
    let compile = |yaml: &str| CacheConfig::from_yaml_str(yaml).map_err(|e| e.problems().to_vec());
    for (methods, vary, needle) in [
        ("[GET, PUT]", "[]", "`PUT` cannot be cached"),
        ("[DELETE]", "[body]", "`DELETE` cannot be cached"),
        ("[POST]", "[]", "vary_by must contain `body`"),
        (
            "[POST]",
            "[\"header:content-type\"]",
            "vary_by must contain `body`",
        ),
    ] {
        let yaml = format!("policies:\n  - name: q\n    pattern: /q\n    methods: {methods}\n    vary_by: {vary}\n");
        let errs = compile(&yaml).expect_err(&yaml);
        assert!(
            errs[0].message.contains(needle),
            "{yaml}: {}",
            errs[0].message
        );
        assert!(
            errs[0].message.contains("policy `q`"),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[0].path, "policies[0].methods");
    }
    assert!(compile("policies:\n  - name: q\n    pattern: /q\n    methods: [get, HEAD, post]\n    vary_by: [body]\n").is_ok());
}

#[test]
fn bad_patterns_are_errors_naming_the_policy() {
    for (pattern, ty) in [
        ("^/a(", "regex"),
        ("/a/{id", "path_template"),
        ("a/*", "glob"),
        ("a", "exact"),
    ] {
        let err = CacheConfig::from_yaml_str(&format!(
            "policies:\n  - name: p\n    pattern: \"{pattern}\"\n    pattern_type: {ty}\n"
        ))
        .unwrap_err();
        assert_eq!(err.problems()[0].path, "policies[0].pattern", "{err}");
        assert_eq!(err.problems()[0].line, Some(3), "{err}");
    }
}

#[test]
fn negative_ttl_from_the_policy_or_defaults() {
    let s = set("defaults:\n  negative_ttl: 3s\npolicies:\n  - name: a\n    pattern: /a\n    negative_ttl: 0\n  - name: b\n    pattern: /b\n");
    let a = s.find("/a", None).unwrap().policy();
    let b = s.find("/b", None).unwrap().policy();
    assert_eq!(a.negative_ttl(), Duration::ZERO);
    assert_eq!(b.negative_ttl(), Duration::from_secs(3));
}

#[test]
fn tag_templates_name_the_parameters_matching_extracts() {
    let s = set(concat!(
        "policies:\n",
        "  - name: t\n    pattern: \"/orgs/{org}/files/{*rest}?format=json\"\n    pattern_type: path_template\n    tags: [files]\n",
        "  - name: braces\n    pattern: \"/lit/{{x}}/{id}\"\n    pattern_type: path_template\n",
        "  - name: r\n    pattern: \"^/a{2}$\"\n    pattern_type: regex\n",
    ));
    let t = s.iter().next().unwrap();
    assert_eq!(
        t.tag_templates(),
        [
            "files",
            "policy:t",
            "path:<path>",
            "org:<org>",
            "rest:<rest>"
        ]
    );
    let m = s.find("/orgs/acme/files/a/b", Some("format=json")).unwrap();
    let names: Vec<&str> = m.params().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["org", "rest"]);
    let braces = s.iter().nth(1).unwrap();
    assert_eq!(
        braces.tag_templates(),
        ["policy:braces", "path:<path>", "id:<id>"]
    );
    let m = s.find("/lit/{x}/7", None).unwrap();
    assert_eq!(m.params(), &[("id".into(), "7".into())]);
    // A regex's braces are quantifiers, not parameters.
    assert_eq!(
        s.iter().nth(2).unwrap().tag_templates(),
        ["policy:r", "path:<path>"]
    );
}
