//! `uip-cache demo`: a built-in NGSI-LD-like origin with realistic latency,
//! the caching proxy in front of it (plain HTTP, and HTTPS with a
//! certificate made at start-up) and the admin API, all on 127.0.0.1 with
//! the memory store; a guided tour (miss, hit, webhook invalidation, warming,
//! HTTPS, a config reload that adds a policy, metrics) with the timing of
//! each step, then the URLs to try.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use uip_cache_core::HttpCache;

use crate::reload::{load, routes_of, Overrides, ServerReload};
use crate::server::{admin, proxy, serve_admin, serve_edge};
use crate::slow::ClientLimits;
use crate::tls::{CertificateFiles, Certificates};

/// The demo's config: the seed's NGSI-LD policies, webhook and warming.
pub const CONFIG: &str = r#"
policies:
  - name: camera_entities
    pattern: "/ngsi-ld/v1/entities?type=Camera*"
    ttl: 60
    tags: [camera, ngsi-ld]
  - name: entity_by_id
    pattern: "/ngsi-ld/v1/entities/{id}"
    ttl: 300
    stale_while_revalidate: 30
  - name: entities
    pattern: "/ngsi-ld/v1/entities*"
    ttl: 120
invalidation:
  strategies:
    - type: webhook
      secret: demo-secret
      events:
        - event: entity_update
          invalidate_patterns:
            - "/ngsi-ld/v1/entities/{entity_id}"
            - "/ngsi-ld/v1/entities?type={entity_type}*"
admin:
  secret: demo-secret
warming:
  on_startup: false
  host: demo.local
  urls:
    - url: "/ngsi-ld/v1/entities?type=Sensor&limit=100"
      priority: high
    - url: "/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:001"
"#;

/// The policy the tour's reload adds to [`CONFIG`], first in the list.
const ADDED_POLICY: &str = "  - name: types\n    pattern: /ngsi-ld/v1/types\n    ttl: 600\n";

/// Latency of the built-in origin, as a busy context broker might have.
const ORIGIN_LATENCY: Duration = Duration::from_millis(40);

/// Where the demo listens.
#[derive(Clone, Copy, Debug)]
pub struct DemoAddrs {
    /// The proxy.
    pub listen: SocketAddr,
    /// The admin API.
    pub admin: SocketAddr,
    /// The proxy over HTTPS.
    pub tls: SocketAddr,
}

/// The demo's certificate, made at start-up for `localhost`, `127.0.0.1`
/// and `demo.local`, self-signed (ECDSA P-256), in PEM files under the
/// system's temp folder (removed when the demo ends): the certificates
/// the TLS listener serves, and the certificate a client trusts.
struct DemoCertificate {
    dir: std::path::PathBuf,
    der: Vec<u8>,
}

impl DemoCertificate {
    fn make() -> Result<Self, Box<dyn std::error::Error>> {
        let key = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "demo.local".to_owned(),
        ])?;
        let cert = params.self_signed(&key)?;
        let dir = std::env::temp_dir().join(format!("uip-cache-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("demo.pem"), cert.pem())?;
        std::fs::write(dir.join("demo.key"), key.serialize_pem())?;
        Ok(DemoCertificate {
            dir,
            der: cert.der().to_vec(),
        })
    }

    fn files(&self) -> Vec<CertificateFiles> {
        vec![CertificateFiles::new(
            self.dir.join("demo.pem"),
            self.dir.join("demo.key"),
        )]
    }

    /// A TLS client that trusts this certificate only.
    fn client(&self) -> Result<tokio_rustls::TlsConnector, Box<dyn std::error::Error>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(self.der.clone()))?;
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

impl Drop for DemoCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The built-in origin: entities by id and listings by type, each entity
/// with a version the demo bumps to show an update.
async fn origin(listener: TcpListener, version: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let version = version.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let version = version.load(Ordering::SeqCst);
                async move {
                    tokio::time::sleep(ORIGIN_LATENCY).await;
                    Ok::<_, Infallible>(answer(&req, version))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn entity(id: &str, version: u64) -> String {
    let ty = id.split(':').nth(2).unwrap_or("Thing");
    format!(
        r#"{{"id":"{id}","type":"{ty}","status":{{"type":"Property","value":"on"}},"version":{{"type":"Property","value":{version}}},"@context":"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"}}"#
    )
}

fn answer(req: &Request<Incoming>, version: u64) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let body = if path == "/ngsi-ld/v1/types" {
        Some(r#"{"id":"urn:ngsi-ld:EntityTypeList:1","type":"EntityTypeList","typeList":["Camera","Sensor"]}"#.to_owned())
    } else if let Some(id) = path.strip_prefix("/ngsi-ld/v1/entities/") {
        Some(entity(id, version))
    } else if path == "/ngsi-ld/v1/entities" {
        let ty = query
            .split('&')
            .find_map(|p| p.strip_prefix("type="))
            .unwrap_or("Thing");
        let items: Vec<String> = (1..=20)
            .map(|i| entity(&format!("urn:ngsi-ld:{ty}:{i:03}"), version))
            .collect();
        Some(format!("[{}]", items.join(",")))
    } else {
        None
    };
    let (status, body) = match body {
        Some(b) => (StatusCode::OK, b),
        None => (
            StatusCode::NOT_FOUND,
            r#"{"type":"ResourceNotFound"}"#.to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/ld+json"),
    );
    resp
}

/// What one request of the tour got: status, `X-Cache`, body, time taken.
type Sent = (u16, String, String, Duration);

/// One request on a fresh connection.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Sent, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await?;
    exchange(stream, started, method, path, headers, body).await
}

/// One GET over TLS on a fresh connection (its handshake timed too).
async fn send_tls(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    path: &str,
) -> Result<Sent, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = tls.connect(name, stream).await?;
    exchange(stream, started, "GET", path, &[], "").await
}

async fn exchange<S>(
    stream: S,
    started: Instant,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Sent, Box<dyn std::error::Error>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "demo.local");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let resp = sender
        .send_request(b.body(Full::new(Bytes::from(body.to_owned())))?)
        .await?;
    let status = resp.status().as_u16();
    let x = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((
        status,
        x,
        String::from_utf8_lossy(&bytes).into_owned(),
        started.elapsed(),
    ))
}

fn ms(d: Duration) -> String {
    format!("{:>8.2} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the demo: binds everything, walks through the tour, then serves
/// until `shutdown` resolves (or returns right after the tour when
/// `tour_only`).
pub async fn run(
    addrs: DemoAddrs,
    tour_only: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error>> {
    let origin_listener = TcpListener::bind("127.0.0.1:0").await?;
    let origin_addr = origin_listener.local_addr()?;
    let version = Arc::new(AtomicU64::new(1));
    tokio::spawn(origin(origin_listener, version.clone()));

    let certificate = DemoCertificate::make()?;
    // The config is a file, as `serve` reads it, so that the tour can
    // change it and reload it; the origin is its upstream.
    let file = certificate.dir.join("demo.yaml");
    std::fs::write(&file, CONFIG)?;
    let overrides = Overrides::new(None, Some(format!("http://{origin_addr}")), None);
    let config = load(&file, &overrides).map_err(|e| e.join("\n"))?;
    let cache = HttpCache::with_memory_store(&config)?;
    let upstream_tls = crate::tls::client::default_client_config();
    let routes = routes_of(cache.settings(), &upstream_tls, None)?;
    let proxy = proxy(cache.clone(), routes.clone());
    let ops = admin(&proxy);
    ops.reload_with(Arc::new(ServerReload::new(
        file.clone(),
        certificate.dir.clone(),
        overrides,
        config,
        upstream_tls,
        cache,
        routes,
        None,
    )));
    let certificates = Certificates::load(certificate.files())?;
    let tls_client = certificate.client()?;
    let listener = TcpListener::bind(addrs.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (pass --listen): {e}", addrs.listen))?;
    let tls_listener = TcpListener::bind(addrs.tls)
        .await
        .map_err(|e| format!("cannot listen on {} (pass --tls-listen): {e}", addrs.tls))?;
    let admin_listener = TcpListener::bind(addrs.admin)
        .await
        .map_err(|e| format!("cannot listen on {} (pass --admin): {e}", addrs.admin))?;
    let (p, a, t) = (
        listener.local_addr()?,
        admin_listener.local_addr()?,
        tls_listener.local_addr()?,
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let when_stopped = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let proxy_task = tokio::spawn(serve_edge(
        Some(listener),
        Some((tls_listener, certificates)),
        false,
        proxy,
        ClientLimits::default(),
        Duration::from_secs(2),
        when_stopped(),
    ));
    let admin_task = tokio::spawn(serve_admin(admin_listener, ops.clone(), when_stopped()));

    println!(
        "uip-cache demo: an NGSI-LD-like origin ({} ms per request) at http://{origin_addr}",
        ORIGIN_LATENCY.as_millis()
    );
    println!("                the caching proxy at http://{p} and https://{t}, its admin API at http://{a}");
    println!(
        "                (the HTTPS certificate was made at start-up: {})\n",
        certificate.dir.join("demo.pem").display()
    );
    let entity = "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:001";
    let cameras = "/ngsi-ld/v1/entities?type=Camera&limit=100";
    let step = |n: u32, what: &str| println!("{n}. {what}");
    let show = |x: &str, d: Duration, line: &str| println!("   {x:<7} {} {line}", ms(d));

    step(
        1,
        "a first request goes to the origin (MISS), the second is served by the cache (HIT)",
    );
    for path in [entity, entity, cameras, cameras] {
        let (_, x, _, d) = send(p, "GET", path, &[], "").await?;
        show(&x, d, &format!("GET {path}"));
    }

    step(
        2,
        "the entity changes at the origin: the cache still has version 1 ...",
    );
    version.store(2, Ordering::SeqCst);
    let (_, x, body, d) = send(p, "GET", entity, &[], "").await?;
    show(
        &x,
        d,
        &format!(
            "GET {entity} -> version {}",
            if body.contains(r#""value":2"#) { 2 } else { 1 }
        ),
    );
    println!("   ... until the broker's webhook says so:");
    let webhook =
        r#"{"event":"entity_update","entity_id":"urn:ngsi-ld:Camera:001","entity_type":"Camera"}"#;
    let (status, _, answer, d) = send(
        a,
        "POST",
        "/cache/invalidate",
        &[
            ("x-webhook-secret", "demo-secret"),
            ("content-type", "application/json"),
        ],
        webhook,
    )
    .await?;
    show(
        &status.to_string(),
        d,
        &format!("POST /cache/invalidate {webhook}\n                       -> {answer}"),
    );
    for path in [entity, cameras] {
        let (_, x, body, d) = send(p, "GET", path, &[], "").await?;
        let v = if body.contains(r#""value":2"#) { 2 } else { 1 };
        show(&x, d, &format!("GET {path} -> version {v}"));
    }

    step(
        3,
        "warming fetches the configured URLs ahead of the first client",
    );
    let (status, _, report, d) = send(
        a,
        "POST",
        "/cache/warm",
        &[("authorization", "Bearer demo-secret")],
        "",
    )
    .await?;
    show(
        &status.to_string(),
        d,
        &format!("POST /cache/warm -> {report}"),
    );
    let sensors = "/ngsi-ld/v1/entities?type=Sensor&limit=100";
    let (_, x, _, d) = send(p, "GET", sensors, &[], "").await?;
    show(&x, d, &format!("GET {sensors} (never requested before)"));

    step(
        4,
        "the same cache over HTTPS (TLS 1.3, the certificate made at start-up): keys hold the scheme",
    );
    for path in [entity, entity] {
        let (_, x, _, d) = send_tls(t, &tls_client, path).await?;
        show(&x, d, &format!("GET https://localhost:{}{path}", t.port()));
    }

    step(
        5,
        "a config reload adds a policy: no restart, the entries stay",
    );
    let types = "/ngsi-ld/v1/types";
    let (_, x, _, d) = send(p, "GET", types, &[], "").await?;
    show(&x, d, &format!("GET {types} (no policy: passed through)"));
    std::fs::write(
        &file,
        CONFIG.replacen("policies:\n", &format!("policies:\n{ADDED_POLICY}"), 1),
    )?;
    println!(
        "   demo.yaml now starts its policies with:\n{}",
        ADDED_POLICY
            .trim_end()
            .lines()
            .map(|l| format!("     {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (status, _, answer, d) = send(
        a,
        "POST",
        "/config/reload",
        &[("authorization", "Bearer demo-secret")],
        "",
    )
    .await?;
    show(
        &status.to_string(),
        d,
        &format!("POST /config/reload -> {answer}"),
    );
    for (path, why) in [
        (types, ""),
        (types, ""),
        (entity, " (stored before the reload)"),
    ] {
        let (_, x, _, d) = send(p, "GET", path, &[], "").await?;
        show(&x, d, &format!("GET {path}{why}"));
    }

    step(6, "what the cache counted");
    let (_, _, metrics, d) = send(a, "GET", "/cache/metrics", &[], "").await?;
    let v: serde_json::Value = serde_json::from_str(&metrics)?;
    let s = &v["statistics"];
    println!(
        "   {} GET /cache/metrics: hits {} misses {} hit_rate {:.2} keys_count {}",
        ms(d),
        s["hits"],
        s["misses"],
        s["hit_rate"].as_f64().unwrap_or(0.0),
        v["keys_count"]
    );
    let (_, _, text, d) = send(a, "GET", "/metrics", &[], "").await?;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("uip_cache_requests_total{policy=\"entity_by_id\",outcome=\"hit\"}")
        })
        .unwrap_or("");
    println!(
        "   {} GET /metrics ({} lines of Prometheus text), e.g. {line}",
        ms(d),
        text.lines().count()
    );

    if tour_only {
        let _ = stop.send(true);
    } else {
        println!("\nserving; try (Ctrl-C to stop):");
        println!("  curl -i 'http://{p}{cameras}'");
        println!("  curl -i 'http://{p}/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:007'");
        println!(
            "  curl -i --cacert {} 'https://localhost:{}{cameras}'",
            certificate.dir.join("demo.pem").display(),
            t.port()
        );
        println!("  curl -s http://{a}/cache/metrics");
        println!("  curl -s http://{a}/metrics");
        println!("  curl -s http://{a}/health");
        println!("  curl -s -X POST http://{a}/cache/invalidate -H 'X-Webhook-Secret: demo-secret' -d '{webhook}'");
        println!(
            "  (edit {} then) curl -s -X POST http://{a}/config/reload -H 'Authorization: Bearer demo-secret'",
            file.display()
        );
        shutdown.await;
        let _ = stop.send(true);
    }
    ops.shutdown();
    let _ = proxy_task.await;
    let _ = admin_task.await;
    Ok(())
}
