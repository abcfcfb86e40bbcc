//! The `uip-cache` command line, run as a user would.

use std::process::Command;

fn uip_cache(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_uip-cache"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_compiled_policies() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/cache.example.yaml");
    let (code, out, err) = uip_cache(&["check-config", example]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok,"), "{out}");
    assert!(out.contains("camera_entities"), "{out}");
    assert!(out.contains("/ngsi-ld/v1/entities?type=Camera*"), "{out}");
    // What the key holds, and the tags, per policy.
    assert!(
        out.contains("query (only limit, type), headers: accept, limit, type"),
        "{out}"
    );
    assert!(out.contains("body (SHA-256)"), "{out}");
    assert!(out.contains("id:<id>"), "{out}");
}

#[test]
fn the_demo_tours_miss_hit_webhook_warm_and_metrics_then_exits() {
    let (code, out, err) = uip_cache(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--exit",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    let verdicts: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(" GET /ngsi-ld"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        verdicts,
        ["MISS", "HIT", "MISS", "HIT", "HIT", "MISS", "MISS", "HIT"],
        "{out}"
    );
    assert!(
        out.contains("version 1\n"),
        "a stale copy before the webhook: {out}"
    );
    assert!(out.contains(r#""deleted":2"#), "{out}");
    assert!(out.contains(r#""success":2"#), "{out}");
    assert!(out.contains("hit_rate"), "{out}");
    assert!(!err.contains("WARN"), "{err}");
}

#[test]
fn check_config_names_file_line_and_field_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("uip-cache-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "policies:\n  - name: a\n    pattern: /a\n    tll: 60\n",
    )
    .unwrap();
    let (code, out, err) = uip_cache(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("bad.yaml:4:5: policies[0].tll"), "{err}");
    let missing = dir.join("missing.yaml");
    let (code, _, err) = uip_cache(&["check-config", missing.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.yaml"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn serve_without_an_upstream_is_a_clear_error() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/cache.example.yaml");
    let (code, _, err) = uip_cache(&["serve", "--config", example, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 1);
    assert!(err.contains("no upstream"), "{err}");
}
