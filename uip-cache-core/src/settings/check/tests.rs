use std::time::Duration;

use super::*;
use crate::config::{ByteSize, Seconds, StoreKind, StrategyKind, WarmPriority};

fn parse(text: &str) -> Result<CacheConfig, ConfigError> {
    CacheConfig::parse(text, "cache.yaml", |v| match v {
        "REDIS_HOST" => Some("redis.internal".into()),
        "REDIS_PORT" => Some("6380".into()),
        _ => None,
    })
}

fn only_problem(text: &str) -> ConfigProblem {
    let err = parse(text).expect_err("config should be rejected");
    assert_eq!(err.problems().len(), 1, "{err}");
    err.problems()[0].clone()
}

#[test]
fn example_config_loads_and_documents_the_seed_sections() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/cache.example.yaml");
    let config = CacheConfig::from_file(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.policies.len(), 5);
    assert_eq!(config.policies[0].name.value, "camera_entities");
    assert_eq!(config.policies[0].max_size, Some(ByteSize(5 << 20)));
    assert_eq!(config.store.kind, StoreKind::Memory);
    assert_eq!(config.store.memory_max_bytes(), 256 << 20);
    assert_eq!(config.warming.urls[0].priority, WarmPriority::High);
    assert_eq!(config.invalidation.strategies.len(), 3);
    assert_eq!(
        config.invalidation.strategies[1].kind,
        StrategyKind::TimeBased
    );
    assert!(config.invalidation.webhook().is_some());
    assert_eq!(config.admin.listen, "127.0.0.1:9092");
    assert!(config.source_name().ends_with("cache.example.yaml"));
}

#[test]
fn seed_config_loads_unchanged() {
    // The seed report's snippets, as written there.
    let config = parse(
        r#"
redis:
  host: "${REDIS_HOST:-redis}"
  port: ${REDIS_PORT:-6379}
  db: 0
  password: "${REDIS_PASSWORD:-}"
  max_connections: 50
  socket_timeout: 5
  socket_connect_timeout: 5
  health_check_interval: 30
policies:
  - name: "camera_entities"
    pattern: "/ngsi-ld/v1/entities?type=Camera*"
    pattern_type: "glob"
    ttl: 60  # seconds
    max_size: "5MB"
    compression:
      enabled: true
      algorithm: "gzip"
      min_size: 1024
    warming:
      enabled: true
      schedule: "*/5 * * * *"
    invalidate_on:
      - "camera_update"
      - "camera_create"
    vary_by:
      - "type"
      - "limit"
    tags:
      - "camera"
      - "sensor"
  - name: "sensor_data"
    pattern: "/ngsi-ld/v1/entities?type=Sensor*"
    ttl: 30
  - name: "entity_by_id"
    pattern: "/ngsi-ld/v1/entities/{id}"
    ttl: 300
  - name: "sparql_query"
    pattern: "/sparql?query=*"
    ttl: 600
warming:
  enabled: true
  on_startup: true
  interval: 300
  max_concurrent: 5
  urls:
    - url: "/ngsi-ld/v1/entities?type=Camera&limit=100"
      priority: "high"
      schedule: "*/5 * * * *"
invalidation:
  strategies:
    - type: "webhook"
      endpoint: "/cache/invalidate"
      events:
        - event: "entity_update"
          invalidate_patterns:
            - "/ngsi-ld/v1/entities/{entity_id}"
            - "/ngsi-ld/v1/entities?type={entity_type}*"
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.redis.host, "redis.internal");
    assert_eq!(
        config.redis.port, 6380,
        "an unquoted variable stays a number"
    );
    assert_eq!(config.redis.password, None, "an empty password is none");
    assert_eq!(config.policies.len(), 4);
    assert_eq!(
        config.policies[3].ttl,
        Some(Seconds(Duration::from_secs(600)))
    );
    assert_eq!(config.warming.max_concurrent, 5);
}

#[test]
fn only_policies_is_a_complete_config_and_empty_is_default() {
    let c = parse("policies:\n  - name: a\n    pattern: /a\n").unwrap();
    assert_eq!(c.store.kind, StoreKind::Memory);
    assert_eq!(c.key.prefix, "cache:");
    assert!(c.key.include_host);
    let c = parse("").unwrap();
    assert!(c.policies.is_empty());
}

#[test]
fn unknown_field_names_file_line_and_path() {
    let p = only_problem("policies:\n  - name: a\n    pattern: /a\n    tll: 60\n");
    assert_eq!(p.line, Some(4), "{p:?}");
    assert_eq!(p.path, "policies[0].tll");
    assert!(p.message.contains("tll"), "{p:?}");
    let text = parse("policies:\n  - name: a\n    pattern: /a\n    tll: 60\n")
        .unwrap_err()
        .to_string();
    assert!(text.starts_with("cache.yaml:4:"), "{text}");
}

#[test]
fn wrong_types_and_bad_sizes_point_at_the_value() {
    let p = only_problem("redis:\n  port: lots\n");
    assert_eq!(p.line, Some(2), "{p:?}");
    assert_eq!(p.path, "redis.port");
    let p = only_problem("policies:\n  - name: a\n    pattern: /a\n    max_size: 5XB\n");
    assert_eq!(p.line, Some(4), "{p:?}");
    assert_eq!(p.path, "policies[0].max_size");
    assert!(p.message.contains("unit"), "{p:?}");
    let p = only_problem("store:\n  type: memcached\n");
    assert_eq!(p.path, "store.type");
    assert!(p.message.contains("memcached"), "{p:?}");
}

#[test]
fn zero_ttl_is_rejected_with_advice() {
    let p = only_problem("policies:\n  - name: a\n    pattern: /a\n    ttl: 0\n");
    assert_eq!(p.line, Some(4), "{p:?}");
    assert!(p.message.contains("leave `ttl` out"), "{p:?}");
}

#[test]
fn validation_reports_every_problem_with_lines() {
    let err = parse(
        "policies:\n  - name: a\n    pattern: \"^/bad(\"\n  - name: a\n    pattern: /x\n    warming:\n      schedule: \"every minute\"\n  - name: t\n    pattern: \"/e/{id\"\n    pattern_type: path_template\n",
    )
    .unwrap_err();
    let lines: Vec<_> = err
        .problems()
        .iter()
        .map(|p| (p.line, p.path.as_str()))
        .collect();
    assert!(lines.contains(&(Some(3), "policies[0].pattern")), "{err}");
    assert!(lines.contains(&(Some(4), "policies[1].name")), "{err}");
    assert!(
        lines.contains(&(Some(7), "policies[1].warming.schedule")),
        "{err}"
    );
    assert!(lines.contains(&(Some(9), "policies[2].pattern")), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("cache.yaml:3: policies[0].pattern: invalid regex"),
        "{text}"
    );
    assert!(text.contains("duplicate policy name `a`"), "{text}");
}

#[test]
fn the_cache_status_name_is_a_token() {
    let p = only_problem("defaults:\n  cache_status: \"my cache\"\n");
    assert_eq!(p.path, "defaults.cache_status");
    assert!(parse("defaults:\n  cache_status: edge-1\n").is_ok());
    assert!(parse("defaults:\n  cache_status: \"\"\n").is_ok());
}

#[test]
fn cross_field_rules() {
    let p = only_problem("store:\n  type: redis_cluster\n");
    assert_eq!(p.path, "store.type");
    let p = only_problem("store:\n  max_bytes: 1MB\n  memory:\n    max_bytes: 2MB\n");
    assert_eq!(p.path, "store.memory.max_bytes");
    let c = parse("store:\n  memory:\n    max_bytes: 2MB\n").unwrap();
    assert_eq!(c.store.memory_max_bytes(), 2 << 20);
    let p = only_problem("admin:\n  listen: nowhere\n");
    assert_eq!(p.path, "admin.listen");
    let p = only_problem(
        "invalidation:\n  strategies:\n    - type: webhook\n      events:\n        - event: e\n          invalidate_patterns: [\"/e/{entity}\"]\n",
    );
    assert_eq!(p.line, Some(6));
    assert!(p.message.contains("placeholder"), "{p:?}");
    let p = only_problem("warming:\n  urls:\n    - url: entities\n");
    assert_eq!(p.line, Some(3));
}

#[test]
fn connections_per_client_default_to_256_and_zero_turns_the_limit_off() {
    let c = parse("policies: []\n").unwrap();
    assert_eq!(c.server.max_connections_per_client, 256);
    let c = parse("server:\n  max_connections_per_client: 0\n").unwrap();
    assert_eq!(c.server.max_connections_per_client, 0);
    let c = parse("server:\n  max_connections_per_client: 16\n").unwrap();
    assert_eq!(c.server.max_connections_per_client, 16);
    let p = only_problem("server:\n  max_connections_per_client: -1\n");
    assert_eq!(
        (p.line, p.path.as_str()),
        (Some(2), "server.max_connections_per_client"),
        "{p:?}"
    );
}

#[test]
fn slow_client_limits_have_defaults_units_and_are_never_zero() {
    let c = parse("policies: []\n").unwrap();
    assert_eq!(c.server.send_timeout.get(), Duration::from_secs(60));
    assert_eq!(c.server.idle_timeout.get(), Duration::from_secs(75));
    assert_eq!(c.server.max_inflight_bytes, ByteSize(256 << 20));
    let c =
        parse("server:\n  send_timeout: 1500ms\n  idle_timeout: 2m\n  max_inflight_bytes: 64MB\n")
            .unwrap();
    assert_eq!(c.server.send_timeout.get(), Duration::from_millis(1500));
    assert_eq!(c.server.idle_timeout.get(), Duration::from_secs(120));
    assert_eq!(c.server.max_inflight_bytes, ByteSize(64 << 20));
    for (text, path) in [
        ("server:\n  send_timeout: 0\n", "server.send_timeout"),
        ("server:\n  idle_timeout: 0s\n", "server.idle_timeout"),
        (
            "server:\n  max_inflight_bytes: 0MB\n",
            "server.max_inflight_bytes",
        ),
    ] {
        let p = only_problem(text);
        assert_eq!((p.line, p.path.as_str()), (Some(2), path), "{p:?}");
        assert!(p.message.contains("greater than zero"), "{p:?}");
    }
}

#[test]
fn env_errors_name_the_line_and_missing_files_the_file() {
    let p = only_problem("a: 1\nredis:\n  host: ${UNCLOSED\n");
    assert_eq!(p.line, Some(3));
    let err = CacheConfig::from_file("/nonexistent/cache.yaml").unwrap_err();
    assert_eq!(err.source_name(), "/nonexistent/cache.yaml");
    assert!(
        err.to_string().contains("cannot read the config file"),
        "{err}"
    );
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let c = parse("redis:\n  password: hunter2\nadmin:\n  secret: s3cret\n").unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2") && !dbg.contains("s3cret"), "{dbg}");
}

#[test]
fn durations_that_would_overflow_are_errors_with_a_line() {
    for ttl in [
        "1e20",
        "99999999999999999999",
        "3000000000",
        "\"99999999999d\"",
    ] {
        let p = only_problem(&format!(
            "policies:\n  - name: a\n    pattern: /a\n    ttl: {ttl}\n"
        ));
        assert_eq!(p.line, Some(4), "{ttl}: {p:?}");
        assert_eq!(p.path, "policies[0].ttl", "{ttl}");
        assert!(
            p.message.contains("too large") || p.message.contains("invalid"),
            "{ttl}: {p:?}"
        );
    }
    let p = only_problem(
        "policies:\n  - name: a\n    pattern: /a\n    ttl: 60\n    stale_while_revalidate: 1e300\n",
    );
    assert_eq!(p.path, "policies[0].stale_while_revalidate");
}

#[test]
fn plain_vary_by_names_key_only_those_parameters_and_say_so() {
    let c = parse(
        "policies:\n  - name: cams\n    pattern: \"/e?type=Camera*&offset=*\"\n    vary_by: [type, limit, \"header:x-tenant\"]\n  - name: all\n    pattern: /a\n    vary_by: [\"header:x-tenant\", body]\n",
    )
    .unwrap();
    let notes = c.warnings();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].path, "policies[0].vary_by");
    assert_eq!(notes[0].line, Some(3));
    assert!(notes[0].message.contains("limit, type"), "{notes:?}");
    assert!(notes[0].message.contains("including offset"), "{notes:?}");
    // And the key does what the note says: offset is not keyed.
    let set = crate::PolicySet::compile(&c).unwrap();
    let spec = set.iter().next().unwrap().key_spec();
    let h: [(&str, &str); 0] = [];
    let k = |q| {
        spec.key(
            &crate::RequestView::new("GET", "/e", &h).query(Some(q)),
            &[],
        )
    };
    assert_eq!(k("type=Camera&offset=0"), k("type=Camera&offset=50"));
    assert_ne!(k("type=Camera&limit=1"), k("type=Camera&limit=2"));
}

#[test]
fn trusted_proxies_are_networks_and_a_bad_one_names_its_line() {
    let config =
        parse("server:\n  trusted_proxies: [10.0.0.0/8, \"::1/128\", 192.168.1.7]\n").unwrap();
    let list = crate::TrustedProxies::parse(&config.server.trusted_proxies).unwrap();
    assert_eq!(list.networks().len(), 3);
    assert!(parse("policies: []\n")
        .unwrap()
        .server
        .trusted_proxies
        .is_empty());
    let p = only_problem("server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n");
    assert_eq!(p.line, Some(4), "{p:?}");
    assert_eq!(p.path, "server.trusted_proxies[1]");
    assert!(p.message.contains("at most 32"), "{p:?}");
    let err = parse("server:\n  trusted_proxies: [proxy.internal]\n").unwrap_err();
    assert!(err.to_string().starts_with("cache.yaml:2"), "{err}");
}

#[test]
fn config_and_date_agree_on_the_longest_duration() {
    assert_eq!(config::MAX_SECONDS, crate::http::date::MAX_DELTA_SECONDS);
    assert_eq!(
        Duration::from_secs(config::MAX_SECONDS),
        crate::http::date::MAX_DELTA
    );
}
