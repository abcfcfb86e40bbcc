//! Warming over HTTP: requests sent to an address served through the cache
//! (an actix-web app's own listener, or a `uip-cache` server), which records
//! them as it records any client's.

use crate::quiet::Quiet;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{FetchFuture, WarmFetcher, WarmRequest};
use crate::refresh::RefreshToken;
use crate::FetchTicket;

/// Request headers never sent on (RFC 9110 section 7.6.1), and those the
/// refresh sets itself.
const NOT_SENT: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "cache-control",
    "pragma",
];

/// How long a background refresh may take before it is given up.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(60);

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

use crate::refresh::{REFRESHED_HEADER, REFRESH_HEADER};

impl HttpFetcher {
    /// A stale-while-revalidate refresh for front-ends that cannot send the
    /// client's request on after answering it (actix-web): sends the
    /// client's GET (its headers, its host) to `base_url` marked with
    /// `token`, which the cache in front of the app recognises and records
    /// as a fetch of the client's key, with the client's scheme (see
    /// [`HttpCache::begin_refresh`](crate::HttpCache::begin_refresh)).
    /// `ticket` holds the key meanwhile and lets it go once the answer has
    /// been read. Only GETs are refreshed: a POST query's body is not kept.
    pub async fn refresh(&self, ticket: FetchTicket, token: &RefreshToken) {
        if ticket.method() != "GET" {
            return;
        }
        let mut builder = http::Request::get(format!("{}{}", self.base, ticket.path_and_query()));
        for (name, value) in ticket.request_headers() {
            let name = &**name;
            if NOT_SENT.contains(&name) || name == "host" || name == REFRESH_HEADER {
                continue;
            }
            builder = builder.header(name, value.as_ref());
        }
        if let Some(host) = ticket.authority() {
            builder = builder.header("host", host);
        }
        let scheme = ticket.scheme().unwrap_or("http");
        let req = match builder
            .header(REFRESH_HEADER, token.header_value(scheme))
            .body(Empty::new())
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "background refresh: request not valid");
                return;
            }
        };
        let client = &self.client;
        let run = async move {
            let resp = client.request(req).await?;
            // Only a cache that recognised the marker says so.
            let recorded = resp.headers().contains_key(REFRESHED_HEADER);
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                frame?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(recorded)
        };
        // A line a second at most of each: while the app is slow or down,
        // every stale key a client asks for is a refresh that fails.
        static ELSEWHERE: Quiet = Quiet::new();
        static FAILED: Quiet = Quiet::new();
        static TIMED_OUT: Quiet = Quiet::new();
        match tokio::time::timeout(REFRESH_TIMEOUT, run).await {
            Ok(Ok(true)) => ticket.stored_elsewhere(),
            Ok(Ok(false)) => {
                if let Some(left_out) = ELSEWHERE.admit() {
                    tracing::warn!(
                        base = %self.base,
                        left_out,
                        "background refresh answered by a process that is not this cache: point warming.base_url at this process"
                    )
                }
            }
            Ok(Err(e)) => {
                if let Some(left_out) = FAILED.admit() {
                    tracing::warn!(base = %self.base, error = %e, left_out, "background refresh failed")
                }
            }
            Err(_) => {
                if let Some(left_out) = TIMED_OUT.admit() {
                    tracing::warn!(base = %self.base, left_out, "background refresh timed out")
                }
            }
        }
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
