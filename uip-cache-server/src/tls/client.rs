//! The proxy as a TLS client of `https://` upstreams: verification always
//! on (`server.upstream_tls.ca`, else the webpki roots), SNI from the
//! upstream's host, an optional client certificate for mTLS, and HTTP/2
//! when the upstream offers it by ALPN.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use tokio::net::TcpStream;
use uip_cache_core::config::UpstreamTlsConfig;

use super::certs::{read_chain, read_key, CertError};
use super::{provider, VERSIONS};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The rustls client configuration `server.upstream_tls` describes,
/// relative paths read from `base` (the config file's folder).
pub fn client_config(
    tls: &UpstreamTlsConfig,
    base: &Path,
) -> Result<Arc<rustls::ClientConfig>, CertError> {
    let roots = match &tls.ca {
        Some(ca) => {
            let path = base.join(ca);
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(read_chain(&path)?);
            if added == 0 {
                return Err(CertError::new(&path, "no usable CA certificate in it"));
            }
            roots
        }
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (base.join(cert), base.join(key));
            let chain = read_chain(&cert)?;
            let private = read_key(&key)?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                CertError::new(&key, format!("not the key of the client certificate: {e}"))
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The default client configuration: the webpki roots, no client
/// certificate.
pub fn default_client_config() -> Arc<rustls::ClientConfig> {
    client_config(&UpstreamTlsConfig::default(), Path::new(""))
        .expect("the default upstream TLS configuration reads no file")
}

/// What the upstream client connects with: plain TCP for `http://`, TLS
/// for `https://` (ALPN `h2` and `http/1.1`), the whole of it, handshake
/// included, within the connect timeout.
#[derive(Clone)]
pub struct UpstreamConnector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

impl UpstreamConnector {
    /// A connector using `tls` for `https://` upstreams, giving up on a
    /// connection (TCP and TLS) after `connect_timeout`.
    pub fn new(tls: Arc<rustls::ClientConfig>, connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let inner = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(Arc::unwrap_or_clone(tls))
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        UpstreamConnector {
            inner,
            timeout: connect_timeout,
        }
    }
}

impl fmt::Debug for UpstreamConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConnector")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The connect timeout passed: the error the proxy's 502 names.
#[derive(Debug)]
struct ConnectTimeout(Duration);

impl fmt::Display for ConnectTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no connection within the connect timeout ({:?})", self.0)
    }
}

impl std::error::Error for ConnectTimeout {}

impl tower::Service<Uri> for UpstreamConnector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(r) => r,
                Err(_) => Err(Box::new(ConnectTimeout(timeout)) as BoxError),
            }
        })
    }
}

/// The TLS failure in an upstream error's causes, if it is one: what the
/// log line and the 502 say.
pub fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // An I/O error's `source` skips the error it wraps (which may be
        // another I/O error around the TLS one).
        cause = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}
