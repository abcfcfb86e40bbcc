//! Warming over HTTP: requests sent to an address served through the cache
//! (an actix-web app's own listener, or a `uip-cache` server), which records
//! them as it records any client's.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{FetchFuture, WarmFetcher, WarmRequest};

/// Sends warm requests over HTTP/1.1 to `base_url` (kept-alive, pooled).
/// The request carries the warm request's `Host` (`warming.host`), not the
/// base URL's, so the cache behind it keys the entry as it keys clients'.
#[derive(Debug)]
pub struct HttpFetcher {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl HttpFetcher {
    /// A fetcher to `base_url` (`http://host:port`, plain HTTP).
    pub fn new(base_url: &str) -> Result<Self, String> {
        let base = base_url.trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{base_url}` must be an http:// URL"))?;
        if rest.is_empty() || rest.contains(['/', '?', '#']) {
            return Err(format!("`{base_url}` must be http://host[:port]"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        Ok(HttpFetcher {
            base: base.to_owned(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// A fetcher for the config's `warming.base_url`, when it has one.
    pub fn from_config(config: &crate::CacheConfig) -> Option<Result<Self, String>> {
        config.warming.base_url.as_deref().map(Self::new)
    }
}

impl WarmFetcher for HttpFetcher {
    fn fetch<'a>(&'a self, warm: &'a WarmRequest) -> FetchFuture<'a> {
        Box::pin(async move {
            let mut builder = http::Request::get(format!("{}{}", self.base, warm.path_and_query));
            for (name, value) in warm.header_list() {
                builder = builder.header(name, value);
            }
            let req = builder
                .body(Empty::new())
                .map_err(|e| format!("not a valid request: {e}"))?;
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("request to {} failed: {e}", self.base))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                frame.map_err(|e| format!("the body failed: {e}"))?;
            }
            Ok(status)
        })
    }
}
