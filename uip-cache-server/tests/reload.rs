//! Reloading the config of `uip-cache serve` without a restart, over real
//! sockets: `POST /config/reload` and SIGHUP swap policies and routes and
//! keep the entries; a file with errors, or a request without the secret,
//! changes nothing; what needs a restart is reported; requests in flight
//! finish on the config they began with, and none fails while reloads run
//! under load.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use uip_cache_testkit::{client, Got, ServeProcess};

use crate::tls_support::TempDir;

const SECRET: &str = "reload-secret";

// ===== a backend =====

/// A backend that answers `<name> <path>` (no freshness of its own: the
/// policies give it). Requests for `/slow...` report their arrival and wait
/// for a permit of `gate`.
#[derive(Clone)]
struct Backend {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    gate: Arc<Semaphore>,
    arrived: mpsc::UnboundedSender<String>,
}

impl Backend {
    async fn start(name: &'static str) -> (Self, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (arrived, arrivals) = mpsc::unbounded_channel();
        let backend = Backend {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            arrived,
        };
        let b = backend.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let b = b.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let b = b.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let _ = req.into_body().collect().await;
                            b.requests.lock().unwrap().push(path.clone());
                            if path.starts_with("/slow") {
                                let _ = b.arrived.send(path.clone());
                                b.gate.acquire().await.unwrap().forget();
                            }
                            let body = format!("{name} {path}");
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (backend, arrivals)
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests for `path` it answered.
    fn count(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

// ===== the server =====

/// A config: `policies` (YAML list items), one catch-all route to
/// `upstream`, the admin API with [`SECRET`], and `extra` server lines.
fn config(policies: &str, upstream: &str, server_extra: &str) -> String {
    format!(
        "policies:\n{policies}admin:\n  enabled: true\n  listen: 127.0.0.1:0\n  secret: {SECRET}\nserver:\n  listen: 127.0.0.1:0\n  upstream: {upstream}\n{server_extra}"
    )
}

fn policy(name: &str, pattern: &str, ttl: u32) -> String {
    format!("  - name: {name}\n    pattern: \"{pattern}\"\n    ttl: {ttl}\n")
}

/// `uip-cache serve --config <dir>/reload.yaml`, up.
struct Served {
    process: ServeProcess,
    file: PathBuf,
    _dir: TempDir,
}

impl Served {
    async fn start(yaml: &str) -> Self {
        let dir = TempDir::new("reload");
        let file = dir.write("reload.yaml", yaml);
        let mut command = Command::new(env!("CARGO_BIN_EXE_uip-cache"));
        command.args(["serve", "--config", file.to_str().unwrap()]);
        let process = tokio::task::spawn_blocking(move || ServeProcess::start(command))
            .await
            .unwrap();
        Served {
            process,
            file,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.process.addr
    }

    fn admin(&self) -> SocketAddr {
        self.process.admin.expect("the admin API listens")
    }

    fn rewrite(&self, yaml: &str) {
        std::fs::write(&self.file, yaml).unwrap();
    }

    async fn get(&self, path: &str) -> Got {
        client::get(self.addr(), path, &[("host", "site.test")]).await
    }

    /// `POST /config/reload` with `secret`: the status and the JSON body.
    async fn reload_with(&self, secret: &str) -> (u16, serde_json::Value) {
        let got = client::send(
            self.admin(),
            "POST",
            "/config/reload",
            &[("x-webhook-secret", secret)],
        )
        .await;
        let body = serde_json::from_slice(&got.body).unwrap_or(serde_json::Value::Null);
        (got.status, body)
    }

    async fn reload(&self) -> serde_json::Value {
        let (status, body) = self.reload_with(SECRET).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn metrics(&self) -> String {
        client::get(self.admin(), "/metrics", &[]).await.text()
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

// ===== the tests =====

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_a_policy_and_keeps_the_entries_and_their_counters() {
    let (backend, _) = Backend::start("one").await;
    let served = Served::start(&config(&policy("a", "/a/*", 60), &backend.url(), "")).await;
    assert_eq!(served.get("/a/1").await.x_cache(), "MISS");
    assert_eq!(served.get("/a/1").await.x_cache(), "HIT");
    served.get("/b/1").await;
    served.get("/b/1").await;
    assert_eq!(backend.count("/b/1"), 2, "no policy: not cached");

    served.rewrite(&config(
        &format!("{}{}", policy("b", "/b/*", 60), policy("a", "/a/*", 60)),
        &backend.url(),
        "",
    ));
    let body = served.reload().await;
    assert_eq!(body["reloaded"], true);
    assert_eq!(body["policies"], 2);
    assert_eq!(body["routes"], 1);
    let changed = strings(&body["changed"]);
    assert!(changed.contains(&"policy added: b".to_owned()), "{body}");
    // `b` comes first, `a` is unchanged (in another place in the list).
    assert_eq!(changed, ["policy added: b"], "{body}");
    assert_eq!(strings(&body["needs_restart"]), Vec::<String>::new());

    // The entry stayed; the new policy caches.
    let hit = served.get("/a/1").await;
    assert_eq!((hit.x_cache(), hit.text().as_str()), ("HIT", "one /a/1"));
    assert_eq!(backend.count("/a/1"), 1);
    assert_eq!(served.get("/b/1").await.x_cache(), "MISS");
    assert_eq!(served.get("/b/1").await.x_cache(), "HIT");
    assert_eq!(backend.count("/b/1"), 3);

    // The kept policy kept its counters, by name; the new one started at 0.
    let metrics = served.metrics().await;
    for line in [
        "uip_cache_requests_total{policy=\"a\",outcome=\"hit\"} 2",
        "uip_cache_requests_total{policy=\"a\",outcome=\"miss\"} 1",
        "uip_cache_requests_total{policy=\"b\",outcome=\"hit\"} 1",
        "uip_cache_config_reloads_total{result=\"ok\"} 1",
        "uip_cache_config_reloads_total{result=\"error\"} 0",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_sends_new_requests_to_the_new_upstream_of_a_route() {
    let (old, _) = Backend::start("old").await;
    let (new, _) = Backend::start("new").await;
    let routes =
        |to: &str| format!("  routes:\n    - {{ path_prefix: \"/api/\", upstream: \"{to}\" }}\n");
    let served = Served::start(&config(
        &policy("cached", "/api/cached*", 60),
        &old.url(),
        &routes(&old.url()),
    ))
    .await;
    assert_eq!(served.get("/api/x").await.text(), "old /api/x");
    served.get("/api/cached").await;

    served.rewrite(&config(
        &policy("cached", "/api/cached*", 60),
        &old.url(),
        &routes(&new.url()),
    ));
    let body = served.reload().await;
    assert_eq!(strings(&body["changed"]), ["server.routes"], "{body}");
    assert_eq!(body["routes"], 2);
    assert_eq!(served.get("/api/x").await.text(), "new /api/x");
    // Not under the route: the catch-all, still the old backend.
    assert_eq!(served.get("/other").await.text(), "old /other");
    // Entries stay: the key does not hold the backend.
    let hit = served.get("/api/cached").await;
    assert_eq!(
        (hit.x_cache(), hit.text().as_str()),
        ("HIT", "old /api/cached")
    );
    assert_eq!(new.count("/api/cached"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_errors_answers_400_with_every_error_and_changes_nothing() {
    let (old, _) = Backend::start("old").await;
    let (new, _) = Backend::start("new").await;
    let served = Served::start(&config(&policy("a", "/a/*", 60), &old.url(), "")).await;
    assert_eq!(served.get("/a/1").await.x_cache(), "MISS");

    // Two mistakes, and a change of upstream that must not happen.
    served.rewrite(&config(
        &format!("{}{}", policy("a", "/a/*", 60), policy("b", "/b/*", 60)),
        &new.url(),
        "  trusted_proxies: [\"10.1.0.0/33\"]\n  routes:\n    - { path_prefix: \"sparql\", upstream: \"http://127.0.0.1:9\" }\n",
    ));
    let (status, body) = served.reload_with(SECRET).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["reloaded"], false);
    let errors = strings(&body["errors"]);
    assert!(errors.len() >= 2, "{body}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("reload.yaml:") && e.contains("server.routes[0].path_prefix")),
        "{body}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("reload.yaml:") && e.contains("server.trusted_proxies[0]")),
        "{body}"
    );
    // Every error names its place: file:line:col or file: field.
    assert!(errors.iter().all(|e| e.contains("reload.yaml")), "{body}");

    // Nothing changed: the old upstream, the old policies, the entry.
    assert_eq!(served.get("/a/1").await.x_cache(), "HIT");
    assert_eq!(served.get("/x").await.text(), "old /x");
    served.get("/b/1").await;
    served.get("/b/1").await;
    assert_eq!(old.count("/b/1"), 2);
    assert_eq!(new.count("/x"), 0);
    let metrics = served.metrics().await;
    assert!(
        metrics.contains("uip_cache_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("uip_cache_config_reloads_total{result=\"ok\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_without_the_secret_changes_nothing() {
    let (old, _) = Backend::start("old").await;
    let (new, _) = Backend::start("new").await;
    let served = Served::start(&config("  []\n", &old.url(), "")).await;
    served.rewrite(&config("  []\n", &new.url(), ""));
    let (status, _) = served.reload_with("guess").await;
    assert_eq!(status, 401);
    let got = client::send(served.admin(), "POST", "/config/reload", &[]).await;
    assert_eq!(got.status, 401);
    assert_eq!(served.get("/x").await.text(), "old /x");
    let metrics = served.metrics().await;
    assert!(
        metrics.contains("uip_cache_config_reloads_total{result=\"ok\"} 0"),
        "{metrics}"
    );
    // With it, the same file applies.
    served.reload().await;
    assert_eq!(served.get("/x").await.text(), "new /x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_without_tls() {
    let (backend, _) = Backend::start("one").await;
    let served = Served::start(&config("  []\n", &backend.url(), "")).await;
    served.get("/a/1").await;
    served.get("/a/1").await;
    assert_eq!(backend.count("/a/1"), 2);

    served.rewrite(&config(&policy("a", "/a/*", 60), &backend.url(), ""));
    let ok = Command::new("kill")
        .args(["-HUP", &served.process.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let line = served
        .process
        .line(|l| l.contains("config reloaded"), Duration::from_secs(20))
        .expect("a log line saying the config was reloaded");
    assert!(line.contains("SIGHUP"), "{line}");
    assert!(line.contains("policy added: a"), "{line}");
    // Still running (SIGHUP's default would have ended it), on the new
    // policies.
    assert_eq!(served.get("/a/1").await.x_cache(), "MISS");
    assert_eq!(served.get("/a/1").await.x_cache(), "HIT");

    // A file with errors: logged, nothing changes.
    served.rewrite("policies: [\n");
    Command::new("kill")
        .args(["-HUP", &served.process.id().to_string()])
        .status()
        .unwrap();
    let line = served
        .process
        .line(
            |l| l.contains("config not reloaded"),
            Duration::from_secs(20),
        )
        .expect("a log line saying the reload failed");
    assert!(line.contains("reload.yaml"), "{line}");
    assert_eq!(served.get("/a/1").await.x_cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_listen_address_is_reported_as_needing_a_restart() {
    let (backend, _) = Backend::start("one").await;
    let served = Served::start(&config("  []\n", &backend.url(), "")).await;
    let port = uip_cache_testkit::free_port();
    let yaml = config(&policy("a", "/a/*", 60), &backend.url(), "").replace(
        "  listen: 127.0.0.1:0\n  upstream",
        &format!("  listen: 127.0.0.1:{port}\n  upstream"),
    );
    let yaml = yaml + "store:\n  type: redis\n";
    served.rewrite(&yaml);
    let body = served.reload().await;
    let restart = strings(&body["needs_restart"]);
    assert!(restart.contains(&"server.listen".to_owned()), "{body}");
    assert!(restart.contains(&"store.type".to_owned()), "{body}");
    // What can change did.
    assert_eq!(strings(&body["changed"]), ["policy added: a"], "{body}");
    assert_eq!(served.get("/a/1").await.x_cache(), "MISS");
    assert_eq!(served.get("/a/1").await.x_cache(), "HIT");
    // The running listener stays; nothing listens on the new address.
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
    let line = served
        .process
        .line(|l| l.contains("needs a restart"), Duration::from_secs(10))
        .expect("a log line");
    assert!(line.contains("server.listen"), "{line}");
}

/// A GET on a new connection: whether it was answered at all (a
/// connection refused at accept is closed unanswered).
async fn answered(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = "GET /x HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n";
    if s.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    out.starts_with(b"HTTP/1.1 ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_connections_per_client_for_new_connections() {
    let (backend, _) = Backend::start("one").await;
    let yaml = |max: u32| {
        config(
            &policy("a", "/*", 60),
            &backend.url(),
            &format!("  max_connections_per_client: {max}\n"),
        )
    };
    let served = Served::start(&yaml(2)).await;
    // Two idle connections (the header deadline is 30 s) hold the limit.
    let _idle = [
        tokio::net::TcpStream::connect(served.addr()).await.unwrap(),
        tokio::net::TcpStream::connect(served.addr()).await.unwrap(),
    ];
    assert!(!answered(served.addr()).await, "past the limit of 2");
    served.rewrite(&yaml(3));
    let body = served.reload().await;
    assert_eq!(
        strings(&body["changed"]),
        ["server.max_connections_per_client"],
        "{body}"
    );
    assert_eq!(strings(&body["needs_restart"]), Vec::<String>::new());
    assert!(answered(served.addr()).await, "under the new limit of 3");
    assert!(served
        .metrics()
        .await
        .contains("uip_cache_connections_refused_total{reason=\"per_client_limit\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_upstream_it_began_with() {
    let (old, mut arrivals) = Backend::start("old").await;
    let (new, _) = Backend::start("new").await;
    let served = Served::start(&config(&policy("slow", "/slow*", 60), &old.url(), "")).await;
    let addr = served.addr();
    let slow =
        tokio::spawn(async move { client::get(addr, "/slow", &[("host", "site.test")]).await });
    assert_eq!(arrivals.recv().await.as_deref(), Some("/slow"));

    served.rewrite(&config(&policy("slow", "/slow*", 1), &new.url(), ""));
    let body = served.reload().await;
    assert!(
        strings(&body["changed"]).contains(&"policy changed: slow".to_owned()),
        "{body}"
    );
    assert_eq!(served.get("/fast").await.text(), "new /fast");

    old.gate.add_permits(1);
    let got = slow.await.unwrap();
    assert_eq!((got.status, got.text().as_str()), (200, "old /slow"));
    assert_eq!(new.count("/slow"), 0);
    // Stored under the key as it stands: a hit now.
    let hit = served.get("/slow").await;
    assert_eq!((hit.x_cache(), hit.text().as_str()), ("HIT", "old /slow"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_the_config_reloads_under_load() {
    let (a, _) = Backend::start("a").await;
    let (b, _) = Backend::start("b").await;
    let yaml = |ttl: u32, to: &str| {
        config(
            &format!(
                "{}{}",
                policy("hot", "/hot*", ttl),
                policy("warm", "/warm*", ttl + 1)
            ),
            &a.url(),
            &format!("  routes:\n    - {{ path_prefix: \"/cold\", upstream: \"{to}\" }}\n"),
        )
    };
    let served = Arc::new(Served::start(&yaml(60, &a.url())).await);
    served.get("/hot/0").await;
    assert_eq!(served.get("/hot/0").await.x_cache(), "HIT");

    let progress = Arc::new(tokio::sync::Notify::new());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let mut clients = Vec::new();
    for c in 0..16 {
        let (addr, done, ok, failed) = (served.addr(), done.clone(), ok.clone(), failed.clone());
        let progress = progress.clone();
        clients.push(tokio::spawn(async move {
            // One keep-alive connection per client, as a load generator's.
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut i = 0u32;
            while !done.load(Ordering::Acquire) {
                i += 1;
                let path = match i % 3 {
                    0 => format!("/hot/{}", i % 8),
                    1 => format!("/warm/{c}"),
                    _ => format!("/cold/{i}"),
                };
                let req = Request::get(&path)
                    .header("host", "site.test")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let outcome = match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        match resp.into_body().collect().await {
                            Ok(_) if status == 200 => Ok(()),
                            Ok(_) => Err(format!("{path}: status {status}")),
                            Err(e) => Err(format!("{path}: body: {e}")),
                        }
                    }
                    Err(e) => Err(format!("{path}: {e}")),
                };
                match outcome {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        progress.notify_waiters();
                    }
                    Err(e) => {
                        failed.lock().unwrap().push(e);
                        return;
                    }
                }
            }
        }));
    }
    for round in 0..20u32 {
        // Requests between each two reloads.
        let target = ok.load(Ordering::Relaxed) + 16;
        loop {
            let notified = progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ok.load(Ordering::Relaxed) >= target || !failed.lock().unwrap().is_empty() {
                break;
            }
            notified.await;
        }
        let (ttl, to) = if round % 2 == 0 {
            (120, b.url())
        } else {
            (60, a.url())
        };
        served.rewrite(&yaml(ttl, &to));
        let body = served.reload().await;
        assert_eq!(body["reloaded"], true, "{body}");
        // The entry made before any reload is still a hit.
        assert_eq!(served.get("/hot/0").await.x_cache(), "HIT", "round {round}");
    }
    done.store(true, Ordering::Release);
    for c in clients {
        c.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(ok.load(Ordering::Relaxed) >= 20 * 16, "the clients ran");
    let metrics = served.metrics().await;
    assert!(
        metrics.contains("uip_cache_config_reloads_total{result=\"ok\"} 20"),
        "{metrics}"
    );
    assert!(b.count("/hot/0") == 0 && a.count("/hot/0") == 1);
}

/// A reload that changes a policy and a route at once: under config `a`,
/// `/api/` goes to backend `a` and is cached (MISS, then HIT); under
/// config `b`, it goes to backend `b` and no policy takes it (BYPASS).
/// While reloads alternate the two, every answer is of one config: never
/// backend `b` cached, never backend `a` passed through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_routes_and_caches_by_one_config_while_reloads_change_both() {
    let (a, _) = Backend::start("a").await;
    let (b, _) = Backend::start("b").await;
    let yaml = |which: &str| {
        let (policy_line, to) = match which {
            "a" => (policy("api", "/api/*", 60), a.url()),
            _ => (policy("other", "/other/*", 60), b.url()),
        };
        config(
            &policy_line,
            &a.url(),
            &format!("  routes:\n    - {{ path_prefix: \"/api/\", upstream: \"{to}\" }}\n"),
        )
    };
    let served = Arc::new(Served::start(&yaml("a")).await);

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = Arc::new(tokio::sync::Notify::new());
    let (answered, wrong) = (
        Arc::new(Mutex::new([0usize; 2])),
        Arc::new(Mutex::new(Vec::new())),
    );
    let mut clients = Vec::new();
    for c in 0..8 {
        let (addr, done, progress) = (served.addr(), done.clone(), progress.clone());
        let (answered, wrong) = (answered.clone(), wrong.clone());
        clients.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut i = 0u32;
            while !done.load(Ordering::Acquire) {
                i += 1;
                // A new path each time: a miss under config `a`, so the
                // backend that answers says which route was taken.
                let path = format!("/api/{c}/{i}");
                let req = Request::get(&path)
                    .header("host", "site.test")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                let x_cache = resp
                    .headers()
                    .get("x-cache")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8_lossy(&body).into_owned();
                match (body.split(' ').next(), x_cache.as_str()) {
                    (Some("a"), "MISS") => answered.lock().unwrap()[0] += 1,
                    (Some("b"), "BYPASS") => answered.lock().unwrap()[1] += 1,
                    _ => wrong
                        .lock()
                        .unwrap()
                        .push(format!("{path}: {x_cache} {body}")),
                }
                progress.notify_waiters();
            }
        }));
    }
    let count = || {
        let n = answered.lock().unwrap();
        n[0] + n[1]
    };
    for round in 0..20u32 {
        // Answers between each two reloads.
        let target = count() + 8;
        loop {
            let notified = progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if count() >= target || !wrong.lock().unwrap().is_empty() {
                break;
            }
            notified.await;
        }
        served.rewrite(&yaml(if round % 2 == 0 { "b" } else { "a" }));
        let body = served.reload().await;
        let changed = strings(&body["changed"]);
        assert!(
            changed.contains(&"server.routes".to_owned()) && changed.len() == 3,
            "a policy added, one removed, the routes: {body}"
        );
    }
    done.store(true, Ordering::Release);
    for c in clients {
        c.await.unwrap();
    }
    let wrong = wrong.lock().unwrap().clone();
    assert!(
        wrong.is_empty(),
        "answers of two configs at once: {wrong:?}"
    );
    let [of_a, of_b] = *answered.lock().unwrap();
    assert!(of_a > 0 && of_b > 0, "both configs served: {of_a} {of_b}");
}

/// The threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(Iterator::count)
        .unwrap_or(0)
}

/// Whether process `pid` has exited (a zombie not yet reaped, or gone)
/// within 10 s.
async fn exits(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !exits_now(pid) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_serves_on_one_thread_and_reloads_purges_and_drains() {
    let (backend, mut arrivals) = Backend::start("one").await;
    let served = Served::start(&config(
        &format!(
            "{}{}",
            policy("a", "/a/*", 60),
            policy("slow", "/slow*", 60)
        ),
        &backend.url(),
        "  workers: 1\n",
    ))
    .await;
    let pid = served.process.id();
    // Misses at once, hits, and passes (no policy for /p).
    let misses = (0..20).map(|i| {
        let addr = served.addr();
        async move { client::get(addr, &format!("/a/{i}"), &[("host", "site.test")]).await }
    });
    for got in futures_util::future::join_all(misses).await {
        assert_eq!((got.status, got.x_cache()), (200, "MISS"));
    }
    for i in 0..20 {
        let hit = served.get(&format!("/a/{i}")).await;
        assert_eq!(hit.x_cache(), "HIT");
        assert_eq!(hit.text(), format!("one /a/{i}"));
    }
    served.get("/p/1").await;
    assert_eq!(served.get("/p/1").await.text(), "one /p/1");
    assert_eq!(backend.count("/p/1"), 2, "passed, not cached");
    // One thread serves all of it: the current-thread runtime.
    assert_eq!(threads(pid), 1, "one worker: no thread beside the main one");

    // A purge through the admin API.
    let purged = client::send_body(
        served.admin(),
        "POST",
        "/cache/invalidate/url",
        &[
            ("x-webhook-secret", SECRET),
            ("content-type", "application/json"),
        ],
        Bytes::from_static(b"{\"pattern\": \"/a/1*\"}"),
    )
    .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(served.get("/a/1").await.x_cache(), "MISS");
    assert_eq!(served.get("/a/2").await.x_cache(), "HIT");

    // A reload adds a policy.
    served.rewrite(&config(
        &format!(
            "{}{}{}",
            policy("p", "/p/*", 60),
            policy("a", "/a/*", 60),
            policy("slow", "/slow*", 60)
        ),
        &backend.url(),
        "  workers: 1\n",
    ));
    served.reload().await;
    assert_eq!(served.get("/p/2").await.x_cache(), "MISS");
    assert_eq!(served.get("/p/2").await.x_cache(), "HIT");

    // SIGTERM with a request in flight: it is answered, then the process
    // exits.
    let addr = served.addr();
    let slow =
        tokio::spawn(async move { client::get(addr, "/slow", &[("host", "site.test")]).await });
    assert_eq!(arrivals.recv().await.as_deref(), Some("/slow"));
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!exits_now(pid), "waits for the request in flight");
    backend.gate.add_permits(1);
    let got = slow.await.unwrap();
    assert_eq!((got.status, got.text().as_str()), (200, "one /slow"));
    assert!(exits(pid).await, "exits once nothing is in flight");
}

/// Whether process `pid` has exited, now.
fn exits_now(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z'))
    })
}
