//! The admin API as a Tower service and an axum router, and the in-process
//! warming fetcher. Every route's logic is core's ([`Admin::handle`]); this
//! module only translates requests and responses.
//!
//! ```
//! use axum::{routing::get, Router};
//! use uip_cache_core::CacheConfig;
//! use uip_cache_tower::admin::{self, Admin};
//! use uip_cache_tower::CacheLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = CacheConfig::from_yaml_str(r#"
//! policies:
//!   - name: entities
//!     pattern: "/ngsi-ld/v1/entities*"
//!     ttl: 60
//! warming:
//!   enabled: true
//!   host: api.example
//!   urls: [{url: "/ngsi-ld/v1/entities?type=Camera"}]
//! "#)?;
//! let layer = CacheLayer::from_config(&config)?;
//! let app: Router = Router::new()
//!     .route("/ngsi-ld/v1/entities", get(|| async { "[]" }))
//!     .layer(layer.clone());
//! // Warm requests go through `app`, the cache layer included.
//! let ops = Admin::with_fetcher(layer.cache().clone(), admin::router_fetcher(app.clone()));
//! ops.start()?; // warming on start-up, schedules, the time-based monitor
//! let app = app.nest("/admin", admin::router(ops));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tower_service::Service;
use uip_cache_core::admin::{AdminBody, AdminRequest, AdminResponse, BODY_TIMEOUT, MAX_BODY};
use uip_cache_core::warm::{FetchFuture, WarmFetcher, WarmRequest};

use crate::headers::HeaderMapRef;

pub use uip_cache_core::admin::Admin;

/// A Tower service answering the admin API (for hyper, or any Tower stack).
#[derive(Clone, Debug)]
pub struct AdminService {
    admin: Admin,
}

impl AdminService {
    /// The admin API as a service.
    pub fn new(admin: Admin) -> Self {
        AdminService { admin }
    }
}

/// The admin API as an axum router, to `.nest` under a prefix or serve on
/// its own port: every path under it is answered (a JSON 404 for unknown
/// ones). To `.merge` it into an app at its root, use [`routes`], which
/// leaves the app's fallback alone.
#[cfg(feature = "axum")]
pub fn router(admin: Admin) -> axum::Router {
    routes(admin.clone()).fallback_service(AdminService::new(admin))
}

/// The admin API's routes only (no fallback), to `.merge` into an app.
#[cfg(feature = "axum")]
pub fn routes(admin: Admin) -> axum::Router {
    let service = AdminService::new(admin.clone());
    admin.paths().into_iter().fold(axum::Router::new(), |r, p| {
        r.route_service(p, service.clone())
    })
}

fn to_response(r: AdminResponse) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(r.body));
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    for (name, value) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

/// Who sent the request, when the server recorded it.
fn peer(ext: &http::Extensions) -> Option<String> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(a)) =
        ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(a.to_string());
    }
    ext.get::<std::net::SocketAddr>().map(ToString::to_string)
}

impl<B> Service<Request<B>> for AdminService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let admin = self.admin.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let announced = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            // Read no more than the limit, whatever the client announced,
            // and for no longer than the body timeout.
            let body = if announced.is_some_and(|n| n > MAX_BODY as u64) {
                AdminBody::TooLarge
            } else {
                let read =
                    tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect());
                match read.await {
                    Ok(Ok(b)) => AdminBody::Complete(b.to_bytes()),
                    Ok(Err(e)) if e.is::<LengthLimitError>() => AdminBody::TooLarge,
                    Ok(Err(e)) => {
                        return Ok(to_response(AdminResponse::error(
                            400,
                            format!("could not read the body: {e}"),
                        )))
                    }
                    Err(_) => {
                        return Ok(to_response(AdminResponse::error(
                            408,
                            format!("the body did not arrive within {BODY_TIMEOUT:?}"),
                        )))
                    }
                }
            };
            let headers = HeaderMapRef(&parts.headers);
            let req = AdminRequest::new(parts.method.as_str(), parts.uri.path(), &headers)
                .body(body)
                .peer(peer(&parts.extensions));
            Ok(to_response(admin.handle(req).await))
        })
    }
}

/// Warms through a Tower service in process: the service the cache layer
/// wraps, with the layer (an axum `Router` after `.layer(cache_layer)`, or
/// `CacheService<S>`). Each warm request is a GET for `warming.host`,
/// marked https with an `http::uri::Scheme` extension when the warm URL is.
pub struct ServiceFetcher<S, B> {
    service: Mutex<S>,
    _body: PhantomData<fn() -> B>,
}

/// A fetcher over an axum router (with the cache layer applied), ready to
/// give to [`Admin::with_fetcher`].
#[cfg(feature = "axum")]
pub fn router_fetcher(router: axum::Router) -> Arc<dyn WarmFetcher> {
    ServiceFetcher::<_, axum::body::Body>::shared(router)
}

impl<S, B> fmt::Debug for ServiceFetcher<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceFetcher").finish_non_exhaustive()
    }
}

impl<S, B> ServiceFetcher<S, B> {
    /// A fetcher over `service` (cloned for each request), sending bodies
    /// of type `B` (empty).
    pub fn new(service: S) -> Self {
        ServiceFetcher {
            service: Mutex::new(service),
            _body: PhantomData,
        }
    }

    /// The same, ready to give to [`Admin::with_fetcher`].
    pub fn shared<ResBody>(service: S) -> Arc<dyn WarmFetcher>
    where
        S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: fmt::Display,
        B: Default + Send + 'static,
        ResBody: Body + Send,
        ResBody::Data: Send,
        ResBody::Error: fmt::Display,
    {
        Arc::new(Self::new(service))
    }
}

impl<S, B, ResBody> WarmFetcher for ServiceFetcher<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: fmt::Display,
    B: Default + Send + 'static,
    ResBody: Body + Send,
    ResBody::Data: Send,
    ResBody::Error: fmt::Display,
{
    fn fetch<'a>(&'a self, warm: &'a WarmRequest) -> FetchFuture<'a> {
        let mut service = self
            .service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let req = build_request::<B>(warm);
        Box::pin(async move {
            let req = req?;
            poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(|e| e.to_string())?;
            let resp = service.call(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            // Read the body to its end (into nothing), so the entry is
            // recorded whole.
            let mut body = std::pin::pin!(resp.into_body());
            while let Some(frame) = body.frame().await {
                frame.map_err(|e| format!("the body failed: {e}"))?;
            }
            Ok(status)
        })
    }
}

fn build_request<B: Default>(warm: &WarmRequest) -> Result<Request<B>, String> {
    let mut builder = Request::get(warm.path_and_query.as_str());
    for (name, value) in warm.header_list() {
        builder = builder.header(name, value);
    }
    if warm.scheme == "https" {
        builder = builder.extension(http::uri::Scheme::HTTPS);
    }
    builder
        .body(B::default())
        .map_err(|e| format!("not a valid request: {e}"))
}
