use super::*;

fn compile(yaml: &str) -> Result<Settings, ConfigError> {
    // Not through the validating loader: the step itself must find them.
    let config = crate::config::read_yaml(yaml, "cache.yaml").unwrap();
    Settings::compile(&config)
}

#[test]
fn settings_hold_what_the_config_compiles_to() {
    let s = compile(
        "defaults:\n  lock_timeout: 7\n  hit_for_miss: 0\n  cache_status: \"\"\n  tag_headers: [x-tags]\nserver:\n  trusted_proxies: [10.0.0.0/8]\npolicies:\n  - name: items\n    pattern: /items\n    ttl: 60\n    invalidate_on: [items_changed]\n",
    )
    .unwrap();
    assert_eq!(s.policies().len(), 1);
    assert_eq!(s.lock_timeout(), Duration::from_secs(7));
    assert!(s.hit_for_miss().is_zero());
    assert_eq!(s.cache_status_name(), None, "an empty name turns it off");
    assert!(s.hidden_response_headers().contains(&"x-tags"));
    assert!(s.trusted_proxies().contains("10.1.2.3".parse().unwrap()));
    let plan = s.plan_for_event("items_changed", None, None).unwrap();
    assert_eq!(plan.tags, ["policy:items"]);
    assert_eq!(s.config().policies[0].name.value, "items");
}

#[test]
fn every_problem_that_spans_sections_is_an_error_in_file_order() {
    let err = compile(
        "server:\n  trusted_proxies: [not-a-network]\npolicies:\n  - name: \"(unmatched)\"\n    pattern: /items\n    ttl: 60\n  - name: bad\n    pattern: \"^(\"\n    pattern_type: regex\n",
    )
    .unwrap_err();
    let fields: Vec<&str> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        fields,
        [
            "server.trusted_proxies[0]",
            "policies[0].name",
            "policies[1].pattern"
        ]
    );
}

#[test]
fn a_header_name_is_kept_once_however_often_settings_are_compiled() {
    let a = interned("x-tags-once");
    let b = interned(&String::from("x-tags-once"));
    assert!(std::ptr::eq(a, b));
    assert_eq!(a, "x-tags-once");
}
