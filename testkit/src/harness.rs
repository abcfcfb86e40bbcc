//! One case, every adapter and store: a [`Harness`] puts a cache with the
//! given policies in front of an [`Origin`], through the Tower layer or the
//! actix middleware, called in process or over a real loopback connection
//! to a real server (hyper for Tower, actix-web's `HttpServer`, which drive
//! bodies as production does), with the memory store, a throwaway Redis or
//! the disk store in a temporary folder of its own.
//!
//! Run it under `#[actix_rt::test]`: the actix variants need actix's
//! runtime, the Tower ones run on it too.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use ::tower::ServiceExt;
use bytes::Bytes;
use uip_cache_core::{CacheConfig, HttpCache, StatsSnapshot, Store};
use uip_cache_disk::DiskStore;
use uip_cache_tower::CacheLayer;

use crate::{Got, Origin, RedisServer, Reply, Seen};

/// Which adapter answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `uip-cache-tower`'s layer.
    Tower,
    /// `uip-cache-actix`'s middleware.
    Actix,
}

/// How requests reach the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Called in process (`oneshot`, actix's `test::call_service`).
    InProcess,
    /// Over a real loopback connection to a real server.
    Socket,
}

/// An adapter and how it is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adapter {
    /// Which adapter.
    pub kind: Kind,
    /// How it is reached.
    pub transport: Transport,
}

/// The Tower layer, in process.
pub const TOWER: Adapter = Adapter {
    kind: Kind::Tower,
    transport: Transport::InProcess,
};
/// The Tower layer behind hyper.
pub const TOWER_SOCKET: Adapter = Adapter {
    kind: Kind::Tower,
    transport: Transport::Socket,
};
/// The actix middleware, in process.
pub const ACTIX: Adapter = Adapter {
    kind: Kind::Actix,
    transport: Transport::InProcess,
};
/// The actix middleware behind actix-web's `HttpServer`.
pub const ACTIX_SOCKET: Adapter = Adapter {
    kind: Kind::Actix,
    transport: Transport::Socket,
};

/// Where entries live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The memory store.
    Memory,
    /// A throwaway redis-server.
    Redis,
    /// The disk store (`store.type: disk`) in a temporary folder of its
    /// own, removed when the harness is dropped, with a memory tier of
    /// `memory_bytes` (0: every hit is read from disk).
    Disk {
        /// `store.disk.memory_bytes`.
        memory_bytes: u64,
    },
}

/// The disk store with no memory tier: every hit is read from disk.
pub const DISK: Backend = Backend::Disk { memory_bytes: 0 };
/// The disk store with a small memory tier (64 KiB) in front.
pub const DISK_TIERED: Backend = Backend::Disk {
    memory_bytes: 64 << 10,
};

type SendFn =
    Box<dyn Fn(String, String, Vec<(String, String)>, Bytes) -> Pin<Box<dyn Future<Output = Got>>>>;

/// Sends a GET and keeps its response without ever reading the body (a
/// stalled client); dropping the returned value lets it go.
type HoldFn = Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = Box<dyn Any>>>>>;

/// A cache in front of an origin, reached through one adapter.
pub struct Harness {
    /// The adapter and transport.
    pub adapter: Adapter,
    /// The cache (counters, purges, the store).
    pub cache: HttpCache,
    /// The origin (its calls and what it saw).
    pub origin: Origin,
    /// The Redis server of [`Backend::Redis`].
    pub redis: Option<RedisServer>,
    send: SendFn,
    hold: HoldFn,
    _server: Option<ServerGuard>,
    /// The folder of [`Backend::Disk`]; declared last, so it is removed
    /// after the servers and the cache are dropped.
    disk: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("adapter", &self.adapter)
            .field("origin", &self.origin)
            .field("redis", &self.redis)
            .field("disk", &self.disk_folder())
            .finish_non_exhaustive()
    }
}

/// Stops a loopback server when the harness is dropped.
enum ServerGuard {
    Task(tokio::task::JoinHandle<()>),
    Actix(actix_web::dev::ServerHandle),
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        match self {
            ServerGuard::Task(t) => t.abort(),
            ServerGuard::Actix(h) => {
                let h = h.clone();
                actix_rt::spawn(async move { h.stop(false).await });
            }
        }
    }
}

impl Harness {
    /// A cache with `policies` (YAML) in front of an origin answering as
    /// `handler` says; `None` when the Redis variant cannot run here (no
    /// redis-server, outside CI: the test is recorded as skipped).
    pub async fn new(
        adapter: Adapter,
        backend: Backend,
        policies: &str,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Option<Self> {
        Self::with_store(adapter, backend, policies, handler, None).await
    }

    /// [`Harness::new`] with `store` instead of the one the config names.
    pub async fn with_store(
        adapter: Adapter,
        backend: Backend,
        policies: &str,
        handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
        store: Option<Arc<dyn Store>>,
    ) -> Option<Self> {
        let (yaml, redis, disk) = match backend {
            Backend::Memory => (format!("store:\n  timeout: 1s\n{policies}"), None, None),
            Backend::Redis => {
                let server = RedisServer::start()?;
                (server.yaml(policies), Some(server), None)
            }
            Backend::Disk { memory_bytes } => {
                let dir = tempfile::Builder::new()
                    .prefix("uip-cache-suite-")
                    .tempdir()
                    .expect("a temporary folder");
                let yaml = format!(
                    "store:\n  type: disk\n  timeout: 1s\n  disk:\n    path: \"{}\"\n    max_bytes: 64MB\n    memory_bytes: {memory_bytes}\n{policies}",
                    dir.path().display()
                );
                (yaml, None, Some(dir))
            }
        };
        let config = CacheConfig::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}"));
        let cache = match store {
            Some(store) => HttpCache::new(&config, store).unwrap(),
            // Built as the crate's docs tell an embedding program to.
            None if disk.is_some() => {
                HttpCache::new(&config, Arc::new(DiskStore::from_config(&config))).unwrap()
            }
            None => uip_cache_redis::http_cache_from_config(&config).unwrap(),
        };
        let origin = Origin::new(handler);
        let ((send, hold), server) = match (adapter.kind, adapter.transport) {
            (Kind::Tower, Transport::InProcess) => (tower_in_process(&cache, &origin), None),
            (Kind::Tower, Transport::Socket) => {
                let (addr, guard) = tower_server(&cache, &origin).await;
                (socket(addr), Some(guard))
            }
            (Kind::Actix, Transport::InProcess) => {
                let (fns, guard) = actix_in_process(&cache, &origin).await;
                (fns, Some(guard))
            }
            (Kind::Actix, Transport::Socket) => {
                let (addr, guard) = actix_server(&cache, &origin);
                (socket(addr), Some(guard))
            }
        };
        Some(Harness {
            adapter,
            cache,
            origin,
            redis,
            send,
            hold,
            _server: server,
            disk,
        })
    }

    /// The folder of the disk store of [`Backend::Disk`].
    pub fn disk_folder(&self) -> Option<&Path> {
        self.disk.as_ref().map(tempfile::TempDir::path)
    }

    /// Sends a request with `headers` (`host: origin.test` unless they name
    /// one) and reads the whole response.
    pub async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Got {
        self.send_body(method, uri, headers, Bytes::new()).await
    }

    /// [`Harness::send`] with a body.
    pub async fn send_body(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Got {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        (self.send)(method.into(), uri.into(), headers, body).await
    }

    /// A GET of `uri`.
    pub async fn get(&self, uri: &str) -> Got {
        self.send("GET", uri, &[]).await
    }

    /// A GET whose client never reads the response body.
    pub async fn hold(&self, uri: &str) -> Box<dyn Any> {
        (self.hold)(uri.into()).await
    }

    /// Requests that reached the origin so far.
    pub fn calls(&self) -> usize {
        self.origin.calls()
    }

    /// Waits (at most 10 s, then panics) until the cache has written `n`
    /// entries: an adapter answers before the entry is stored. A write is
    /// counted once the fetch that made it has let go of its key (and, with
    /// Redis, of its lease): the next stale hit of that key starts a
    /// refresh.
    pub async fn wait_for_sets(&self, n: u64) -> StatsSnapshot {
        let what = format!("{:?}: {n} entries written", self.adapter);
        crate::wait_until(&self.cache, &what, |s| s.sets >= n).await
    }
}

/// `headers` borrowed as the request functions take them.
fn headers_of(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

fn tower_in_process(cache: &HttpCache, origin: &Origin) -> (SendFn, HoldFn) {
    let svc = ::tower::Layer::layer(&CacheLayer::new(cache.clone()), origin.clone());
    let held = svc.clone();
    let hold: HoldFn = Box::new(move |uri| {
        let svc = held.clone();
        Box::pin(async move {
            let resp = svc.oneshot(crate::tower::get(&uri)).await.unwrap();
            Box::new(resp) as Box<dyn Any>
        })
    });
    let send: SendFn = Box::new(move |method, uri, headers, body| {
        let svc = svc.clone();
        Box::pin(async move {
            let req = crate::tower::with_body(&method, &uri, &headers_of(&headers), body);
            let resp = svc.oneshot(req).await.unwrap();
            Got::read(resp).await.unwrap()
        })
    });
    (send, hold)
}

/// The Tower layer served by hyper on a free loopback port.
async fn tower_server(cache: &HttpCache, origin: &Origin) -> (SocketAddr, ServerGuard) {
    use http_body_util::{BodyExt, Full};

    let svc = ::tower::Layer::layer(&CacheLayer::new(cache.clone()), origin.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = svc.clone();
            tokio::spawn(async move {
                let hyper_svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let svc = svc.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            let req = http::Request::from_parts(
                                parts,
                                Full::new(body.unwrap_or_default()),
                            );
                            svc.oneshot(req).await
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), hyper_svc)
                    .await;
            });
        }
    });
    (addr, ServerGuard::Task(task))
}

/// The actix middleware over `cache`, its stale-while-revalidate refreshes
/// sent to `refresh` (the app served on a real port).
fn actix_middleware(cache: &HttpCache, refresh: SocketAddr) -> uip_cache_actix::Cache {
    uip_cache_actix::Cache::new(cache.clone())
        .refresh_through(&format!("http://{refresh}"))
        .unwrap()
}

/// The actix app in process; its stale-while-revalidate refreshes go to a
/// real server of the same app (same cache and origin).
async fn actix_in_process(cache: &HttpCache, origin: &Origin) -> ((SendFn, HoldFn), ServerGuard) {
    use actix_web::test;

    let (addr, guard) = actix_server(cache, origin);
    let app = test::init_service(crate::actix::app(
        actix_middleware(cache, addr),
        origin.clone(),
    ))
    .await;
    let app = Rc::new(app);
    let held = app.clone();
    let hold: HoldFn = Box::new(move |uri| {
        let app = held.clone();
        Box::pin(async move {
            let req = test::TestRequest::get()
                .uri(&uri)
                .insert_header(("host", "origin.test"))
                .to_request();
            let res = test::call_service(&*app, req).await;
            Box::new(res) as Box<dyn Any>
        })
    });
    let send: SendFn = Box::new(move |method, uri, headers, body| {
        let app = app.clone();
        Box::pin(async move {
            crate::actix::send_body(&*app, &method, &uri, &headers_of(&headers), body).await
        })
    });
    ((send, hold), guard)
}

/// The actix middleware in a real `HttpServer` (one worker) on a free port,
/// refreshing stale entries through itself.
fn actix_server(cache: &HttpCache, origin: &Origin) -> (SocketAddr, ServerGuard) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (cache, origin) = (cache.clone(), origin.clone());
    let server = actix_web::HttpServer::new(move || {
        crate::actix::app(actix_middleware(&cache, addr), origin.clone())
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap();
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (addr, ServerGuard::Actix(handle))
}

/// A real HTTP/1.1 client: one connection per request.
fn socket(addr: SocketAddr) -> (SendFn, HoldFn) {
    use tokio::io::AsyncWriteExt;

    let hold: HoldFn = Box::new(move |uri| {
        Box::pin(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!("GET {uri} HTTP/1.1\r\nhost: origin.test\r\n\r\n");
            stream.write_all(req.as_bytes()).await.unwrap();
            // Never read: the server's writes fill the socket buffers and stall.
            Box::new(stream) as Box<dyn Any>
        })
    });
    let send: SendFn = Box::new(move |method, uri, headers, body| {
        Box::pin(async move {
            crate::client::send_body(addr, &method, &uri, &headers_of(&headers), body).await
        })
    });
    (send, hold)
}
