//! The `uip-cache` command line, run as a user would.

use std::process::Command;

use uip_cache_testkit::ServeProcess;

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
    // What a reload cannot change, by the names a reload reports.
    let restart = out
        .lines()
        .find(|l| l.contains("needs a restart to change:"))
        .unwrap_or_else(|| panic!("no restart line: {out}"));
    for field in [
        "server.listen",
        "server.tls.listen",
        "admin.listen",
        "store.type",
    ] {
        assert!(restart.contains(field), "{restart}");
    }
}

#[test]
fn the_demo_tours_miss_hit_webhook_warm_reload_and_metrics_then_exits() {
    let (code, out, err) = uip_cache(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--tls-listen",
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
        [
            "MISS", "HIT", "MISS", "HIT", "HIT", "MISS", "MISS", "HIT",
            // The reload: no policy for the types yet, then one; the
            // entries made before stay.
            "BYPASS", "MISS", "HIT", "HIT",
        ],
        "{out}"
    );
    assert!(
        out.contains("version 1\n"),
        "a stale copy before the webhook: {out}"
    );
    // Over HTTPS: its own key (the scheme), then a hit.
    let https: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(" GET https://localhost:"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(https, ["MISS", "HIT"], "{out}");
    assert!(out.contains(r#""deleted":2"#), "{out}");
    assert!(out.contains(r#""success":2"#), "{out}");
    let reload = lines
        .iter()
        .find(|l| l.contains("POST /config/reload ->"))
        .unwrap_or_else(|| panic!("no reload step: {out}"));
    assert!(reload.trim_start().starts_with("200"), "{reload}");
    assert!(reload.contains(r#""reloaded":true"#), "{reload}");
    assert!(reload.contains("policy added: types"), "{reload}");
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

/// A one-route upstream on a free port, in a thread of its own.
fn upstream() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: max-age=60\r\nconnection: close\r\n\r\nok",
                );
            });
        }
    });
    port
}

#[test]
fn serve_logs_one_json_line_per_request_at_debug() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("uip-cache-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("json.yaml");
    std::fs::write(
        &config,
        "policies:\n  - name: all\n    pattern: \"/*\"\nadmin:\n  enabled: false\nlogging:\n  level: debug\n  format: json\n",
    )
    .unwrap();
    let up = upstream();
    let mut command = Command::new(env!("CARGO_BIN_EXE_uip-cache"));
    command.args([
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("http://127.0.0.1:{up}"),
    ]);
    let server = ServeProcess::start(command);
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    write!(
        s,
        "GET /json-check?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let json = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
    };
    for line in server.startup_lines() {
        json(line);
    }
    let found = server.line(
        |line| json(line)["fields"]["message"] == "request",
        std::time::Duration::from_secs(10),
    );
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
    let v = json(&found.expect("a request line"));
    assert_eq!(v["level"], "DEBUG");
    assert_eq!(v["fields"]["method"], "GET");
    assert_eq!(v["fields"]["uri"], "/json-check?x=1");
    assert_eq!(v["fields"]["status"], 200);
    assert_eq!(v["fields"]["cache"], "MISS");
}

/// A plain HTTP/1.1 exchange on a fresh connection: (status line, headers, body).
fn http(port: u16, request: &str) -> (String, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

/// What the image runs: the Dockerfile's CMD with its config, and the
/// environment compose.yaml gives it, here with Redis on a free port and
/// the listeners on loopback (no container engine needed).
#[test]
fn the_image_command_and_config_serve_from_redis() {
    let Some(redis) = uip_cache_testkit::RedisServer::start() else {
        return;
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("COPY config/docker.yaml /etc/uip-cache/cache.yaml"),
        "the image carries config/docker.yaml"
    );
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD line");
    let args: Vec<String> = cmd
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|a| a.trim().trim_matches('"').to_owned())
        .collect();
    // Both listeners on ports the system picks, read from the log.
    let args: Vec<String> = args
        .into_iter()
        .map(|a| match a.as_str() {
            "/etc/uip-cache/cache.yaml" => format!("{root}/config/docker.yaml"),
            "0.0.0.0:8080" | "0.0.0.0:9092" => "127.0.0.1:0".to_owned(),
            _ => a,
        })
        .collect();
    assert_eq!(args[0], "serve", "{args:?}");
    let up = upstream();
    let mut command = Command::new(env!("CARGO_BIN_EXE_uip-cache"));
    command
        .args(&args)
        .env("UPSTREAM", format!("http://127.0.0.1:{up}"))
        .env("ADMIN_SECRET", "s3cret")
        .env("REDIS_HOST", "127.0.0.1")
        .env("REDIS_PORT", redis.port.to_string());
    let server = ServeProcess::start(command);
    let proxy = server.addr.port();
    let admin = server.admin.expect("the admin API listens").port();
    let get = "GET /things HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let first = http(proxy, get);
    let second = http(proxy, get);
    let health = http(
        admin,
        "GET /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let unauthorized = http(
        admin,
        "POST /cache/invalidate/tag HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"tag\":\"x\"}",
    );
    drop(server);
    assert!(first.0.contains("200"), "{first:?}");
    assert!(first.1.contains("x-cache: miss"), "{first:?}");
    assert!(second.1.contains("x-cache: hit"), "{second:?}");
    assert_eq!(second.2, "ok");
    assert!(
        redis.cli(&["dbsize"]).trim().parse::<u64>().unwrap() > 0,
        "the entry is in Redis"
    );
    assert!(health.0.contains("200"), "{health:?}");
    assert!(health.2.contains("redis"), "{health:?}");
    assert!(unauthorized.0.contains("401"), "{unauthorized:?}");
}

/// `TOKIO_WORKER_THREADS=1` with `server.workers: 0` is one thread, the
/// same as `server.workers: 1` (`bench/run.sh` and `bench/RESULTS.md` run
/// the server with one worker that way).
#[test]
fn tokio_worker_threads_picks_the_threads_when_workers_is_0() {
    let dir = std::env::temp_dir().join(format!("uip-cache-env-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.yaml");
    std::fs::write(
        &file,
        format!(
            "server:\n  listen: 127.0.0.1:0\n  upstream: http://127.0.0.1:{}\n  workers: 0\nadmin:\n  enabled: false\nlogging:\n  level: info\n  format: text\n",
            upstream()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_uip-cache"));
    command
        .args(["serve", "--config", file.to_str().unwrap()])
        .env("TOKIO_WORKER_THREADS", "1");
    // The runtime runs once the log says the server serves.
    let server = ServeProcess::start(command);
    let threads = std::fs::read_dir(format!("/proc/{}/task", server.id()))
        .map(Iterator::count)
        .unwrap_or(0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(threads, 1, "TOKIO_WORKER_THREADS=1: one thread");
}
