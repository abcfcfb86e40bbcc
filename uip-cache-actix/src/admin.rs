//! The admin API as an actix-web scope, and warming over HTTP. Every route's
//! logic is core's ([`Admin::handle`]); this module only translates.
//!
//! Warming in actix goes over HTTP to the app's own address
//! (`warming.base_url`, [`HttpFetcher`]): the warm request passes through
//! this middleware like a client's, so the entry lands under the key a
//! client gets.
//!
//! ```
//! use actix_web::{web, App, HttpResponse};
//! use uip_cache_actix::admin::{self, Admin, HttpFetcher};
//! use uip_cache_actix::Cache;
//! use uip_cache_core::CacheConfig;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = CacheConfig::from_yaml_str(r#"
//! policies:
//!   - name: e
//!     pattern: "/entities*"
//!     ttl: 60
//! warming:
//!   enabled: true
//!   base_url: "http://127.0.0.1:8080"   # where this app listens
//!   host: api.example
//!   urls: [{url: /entities}]
//! "#)?;
//! let cache = Cache::from_config(&config)?;
//! let fetcher = HttpFetcher::from_config(&config).expect("base_url is set")?;
//! let ops = Admin::with_fetcher(cache.cache().clone(), std::sync::Arc::new(fetcher));
//! // In async code, once the server runs: ops.start()?;
//! let app = App::new()
//!     .service(admin::scope("/admin", ops.clone()))
//!     .service(
//!         web::scope("")
//!             .wrap(cache.clone())
//!             .route("/entities", web::get().to(|| async { HttpResponse::Ok().body("[]") })),
//!     );
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, Scope};
use bytes::BytesMut;
use futures_util::StreamExt;
use uip_cache_core::admin::{AdminBody, AdminRequest, AdminResponse, BODY_TIMEOUT, MAX_BODY};

use crate::translate::Headers;

pub use uip_cache_core::admin::Admin;
pub use uip_cache_core::warm::HttpFetcher;

/// The admin API mounted at `path` (`""` or `"/"` for the root): every
/// request under it goes to [`Admin::handle`].
pub fn scope(path: &str, admin: Admin) -> Scope {
    let prefix: std::rc::Rc<str> = path.trim_end_matches('/').into();
    web::scope(path).default_service(web::to(move |req: HttpRequest, payload: web::Payload| {
        handle(admin.clone(), prefix.clone(), req, payload)
    }))
}

async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<AdminBody, String> {
    let announced = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return Ok(AdminBody::TooLarge);
    }
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| format!("could not read the body: {e}"))?;
            if buf.len() + chunk.len() > MAX_BODY {
                return Ok(AdminBody::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(AdminBody::Complete(buf.freeze()))
    };
    actix_rt::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(format!("the body did not arrive within {BODY_TIMEOUT:?}")))
}

async fn handle(
    admin: Admin,
    prefix: std::rc::Rc<str>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let resp = match read_body(&req, payload).await {
        Err(e) => AdminResponse::error(400, e),
        Ok(body) => {
            let path = req.path().strip_prefix(&*prefix).unwrap_or(req.path());
            let path = if path.is_empty() { "/" } else { path };
            let headers = Headers(req.headers());
            let admin_req = AdminRequest::new(req.method().as_str(), path, &headers)
                .body(body)
                .peer(req.peer_addr().map(|a| a.to_string()));
            admin.handle(admin_req).await
        }
    };
    let mut out = HttpResponse::build(
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    out.content_type(resp.content_type)
        .insert_header(("cache-control", "no-store"));
    for (name, value) in resp.headers {
        out.insert_header((name, value));
    }
    out.body(resp.body)
}
