//! `server`: the reverse proxy of `uip-cache serve`.

use std::time::Duration;

use serde::Deserialize;

use super::de::{empty_as_none, nonzero_duration, nonzero_size};
use super::{ByteSize, ConfigProblem, Located, RouteConfig, Seconds};

/// The caching reverse proxy of `uip-cache serve`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where clients connect over plain HTTP/1.1 and h2c (`--listen`
    /// overrides). Default `127.0.0.1:8080`, or none when `tls` is set:
    /// leave it out to serve TLS only. See [`ServerConfig::plain_listen`].
    #[serde(deserialize_with = "empty_as_none")]
    pub listen: Option<String>,
    /// Plain-HTTP requests get a `308` to the same host, path and query on
    /// the TLS listener instead of an answer (default false; needs `tls`).
    pub redirect_http: bool,
    /// TLS termination: a listener of its own, HTTP/1.1 and HTTP/2 by ALPN.
    pub tls: Option<TlsConfig>,
    /// The backend, `http://host:port` or `https://host:port`
    /// (`--upstream` overrides). With `routes`, the backend of the requests
    /// no route matches.
    #[serde(deserialize_with = "empty_as_none")]
    pub upstream: Option<String>,
    /// Which backend a request goes to, by host and path prefix: the first
    /// route that matches, in file order (see [`RouteConfig`]). Each
    /// backend may be `http://` or `https://` (verified per `upstream_tls`).
    pub routes: Vec<RouteConfig>,
    /// How `https://` upstreams are verified, and the client certificate
    /// sent to them.
    pub upstream_tls: UpstreamTlsConfig,
    /// Time to connect to the upstream (default 5s); past it: 502.
    pub connect_timeout: Seconds,
    /// Time for the upstream's response headers (default 60s); past it: 504.
    pub timeout: Seconds,
    /// How long in-flight requests may finish after SIGINT/SIGTERM (default 10s).
    pub shutdown_grace: Seconds,
    /// Threads serving requests (at most 255); 0, the default, is one per
    /// core. 1 matches nginx's `worker_processes 1`.
    pub workers: u8,
    /// Peers whose forwarding headers (`Forwarded`, `X-Forwarded-*`,
    /// `X-Original-URL`, ...) are believed: networks such as `10.0.0.0/8`
    /// or `::1/128`, or plain addresses. Default: none; from any other peer
    /// those headers are removed before the application sees the request.
    /// The library adapters read it too.
    pub trusted_proxies: Vec<Located<String>>,
    /// How long a response may make no progress towards its client before
    /// the connection is closed (default 60s, as nginx's `send_timeout`):
    /// a write the client does not read, an HTTP/2 stream its flow control
    /// holds, or a request body the client stops sending.
    #[serde(deserialize_with = "nonzero_duration")]
    pub send_timeout: Seconds,
    /// How long a keep-alive connection may stay without a request in
    /// progress before it is closed (default 75s, as nginx's
    /// `keepalive_timeout`; HTTP/2 connections get a GOAWAY).
    #[serde(deserialize_with = "nonzero_duration")]
    pub idle_timeout: Seconds,
    /// Response bytes all connections together may hold for clients that
    /// have not taken them yet (default 256MB); past it, the connections
    /// that went longest without taking any are closed first.
    #[serde(deserialize_with = "nonzero_size")]
    pub max_inflight_bytes: ByteSize,
    /// Connections one client may hold open at once, from accept to close
    /// (TLS handshakes in progress included), over the plain and TLS
    /// listeners together; a client is an IPv4 address or an IPv6 /64
    /// (an IPv4-mapped IPv6 address counts as its IPv4 address). Past
    /// it, a new connection is closed at once, unanswered. Default 256: a
    /// browser opens 6 per host, a NAT or office gateway carries many
    /// browsers, and 256 idle connections cost little, while one address
    /// can no longer take the 16,384 connections of a listener. Peers in
    /// `trusted_proxies` carry many clients: they are not limited. 0 = no
    /// limit. Takes effect on reload for new connections.
    pub max_connections_per_client: usize,
    /// Whether HTTP/1.1 requests that are plain hits of the memory tier
    /// (GET or HEAD, no body, no `Range`, nothing to rewrite before keying)
    /// are answered straight from the parsed request head, and such
    /// requests that no policy takes relayed from there to their route's
    /// `http://` backends, without the general request path; every other
    /// request takes that path, with the same answer. On by default; off
    /// to rule it out when chasing a problem. Takes effect on reload for
    /// the next request.
    pub fast_hits: bool,
}

/// `server.tls`: TLS termination.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// Where TLS clients connect (default `127.0.0.1:8443`).
    #[serde(default = "default_tls_listen")]
    pub listen: String,
    /// Certificate chains and their keys, in PEM. Each serves the names in
    /// its certificate's subject alternative names, picked by the client's
    /// SNI; the first also serves clients that send no known name.
    pub certificates: Vec<CertificateConfig>,
}

fn default_tls_listen() -> String {
    "127.0.0.1:8443".into()
}

/// One certificate of `server.tls.certificates`. Relative paths are read
/// from the config file's folder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CertificateConfig {
    /// The PEM file with the certificate, then its intermediates.
    pub cert: Located<String>,
    /// The PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Located<String>,
}

/// `server.upstream_tls`: how an `https://` upstream is verified and what
/// the proxy presents to it. Relative paths are read from the config
/// file's folder.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct UpstreamTlsConfig {
    /// PEM file of the certificate authorities the upstream's certificate
    /// must chain to; default: the public web roots (webpki roots).
    #[serde(deserialize_with = "empty_as_none")]
    pub ca: Option<String>,
    /// PEM certificate chain presented to upstreams that ask for one
    /// (mTLS); needs `client_key`.
    #[serde(deserialize_with = "empty_as_none")]
    pub client_cert: Option<String>,
    /// The private key of `client_cert`, in PEM.
    #[serde(deserialize_with = "empty_as_none")]
    pub client_key: Option<String>,
}

impl ServerConfig {
    /// The plain-HTTP listener's address: `listen`, else `127.0.0.1:8080`
    /// unless `tls` is set (then there is none: TLS only).
    pub fn plain_listen(&self) -> Option<&str> {
        match (&self.listen, &self.tls) {
            (Some(l), _) => Some(l),
            (None, None) => Some("127.0.0.1:8080"),
            (None, Some(_)) => None,
        }
    }

    /// The section's own checks of its listeners: addresses, at least one
    /// certificate with both files named, two listeners on two addresses,
    /// and `redirect_http` only with somewhere to redirect to.
    pub(super) fn check_listen(&self, problems: &mut Vec<ConfigProblem>) {
        if let Some(l) = &self.listen {
            check_listen("server.listen", l, "127.0.0.1:8080", problems);
        }
        let Some(tls) = &self.tls else {
            if self.redirect_http {
                problems.push(ConfigProblem::new(
                    None,
                    "server.redirect_http",
                    "redirects go to the TLS listener: set server.tls too",
                ));
            }
            return;
        };
        check_listen("server.tls.listen", &tls.listen, "127.0.0.1:8443", problems);
        if self.plain_listen() == Some(tls.listen.as_str()) {
            problems.push(ConfigProblem::new(
                None,
                "server.tls.listen",
                format!(
                    "`{}` is server.listen too: give TLS an address of its own, such as 0.0.0.0:8443",
                    tls.listen
                ),
            ));
        }
        if tls.certificates.is_empty() {
            problems.push(ConfigProblem::new(
                None,
                "server.tls.certificates",
                "TLS needs at least one certificate: - { cert: site.pem, key: site.key }",
            ));
        }
        for (i, c) in tls.certificates.iter().enumerate() {
            for (field, file) in [("cert", &c.cert), ("key", &c.key)] {
                if file.trim().is_empty() {
                    problems.push(ConfigProblem::new(
                        file.line,
                        format!("server.tls.certificates[{i}].{field}"),
                        "a PEM file path is needed",
                    ));
                }
            }
        }
        if self.redirect_http && self.plain_listen().is_none() {
            problems.push(ConfigProblem::new(
                None,
                "server.redirect_http",
                "there is no plain listener to redirect from: set server.listen too",
            ));
        }
    }

    /// The section's own check of `upstream`: it is an http:// or https://
    /// URL; a client certificate comes with its key.
    /// (`trusted_proxies` are checked where they are parsed.)
    pub(super) fn check_upstream(&self, problems: &mut Vec<ConfigProblem>) {
        if let Some(u) = &self.upstream {
            let rest = u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"));
            if rest.is_none_or(str::is_empty) {
                problems.push(ConfigProblem::new(
                    None,
                    "server.upstream",
                    format!(
                        "`{u}` is not an http:// or https:// URL such as http://127.0.0.1:3000"
                    ),
                ));
            }
        }
        let t = &self.upstream_tls;
        match (&t.client_cert, &t.client_key) {
            (Some(_), None) => problems.push(ConfigProblem::new(
                None,
                "server.upstream_tls.client_key",
                "client_cert needs its key: set client_key too",
            )),
            (None, Some(_)) => problems.push(ConfigProblem::new(
                None,
                "server.upstream_tls.client_cert",
                "client_key needs its certificate: set client_cert too",
            )),
            _ => {}
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: None,
            redirect_http: false,
            tls: None,
            upstream: None,
            routes: Vec::new(),
            upstream_tls: UpstreamTlsConfig::default(),
            connect_timeout: Seconds(Duration::from_secs(5)),
            timeout: Seconds(Duration::from_secs(60)),
            shutdown_grace: Seconds(Duration::from_secs(10)),
            workers: 0,
            trusted_proxies: Vec::new(),
            send_timeout: Seconds(Duration::from_secs(60)),
            idle_timeout: Seconds(Duration::from_secs(75)),
            max_inflight_bytes: ByteSize(256 << 20),
            max_connections_per_client: 256,
            fast_hits: true,
        }
    }
}

/// A `listen` address (of the server or the admin API) is `ip:port`.
pub(super) fn check_listen(
    path: &str,
    value: &str,
    example: &str,
    problems: &mut Vec<ConfigProblem>,
) {
    if value.parse::<std::net::SocketAddr>().is_err() {
        problems.push(ConfigProblem::new(
            None,
            path,
            format!("`{value}` is not an address such as {example}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::CacheConfig;

    fn problems(yaml: &str) -> String {
        match CacheConfig::from_yaml_str(yaml) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tls_alone_means_no_plain_listener_and_listen_keeps_both() {
        let tls = "server:\n  tls:\n    certificates:\n      - { cert: a.pem, key: a.key }\n";
        let c = CacheConfig::from_yaml_str(tls).unwrap();
        assert_eq!(c.server.plain_listen(), None);
        assert_eq!(c.server.tls.as_ref().unwrap().listen, "127.0.0.1:8443");
        let both = format!("{tls}  listen: 0.0.0.0:80\n");
        let c = CacheConfig::from_yaml_str(&both).unwrap();
        assert_eq!(c.server.plain_listen(), Some("0.0.0.0:80"));
        let none = CacheConfig::from_yaml_str("server:\n  workers: 1\n").unwrap();
        assert_eq!(none.server.plain_listen(), Some("127.0.0.1:8080"));
    }

    #[test]
    fn tls_shape_errors_name_the_field() {
        let e = problems("server:\n  tls:\n    certificates: []\n");
        assert!(e.contains("server.tls.certificates"), "{e}");
        let e = problems("server:\n  redirect_http: true\n");
        assert!(e.contains("server.redirect_http"), "{e}");
        let e = problems(
            "server:\n  redirect_http: true\n  tls:\n    certificates:\n      - { cert: a, key: b }\n",
        );
        assert!(e.contains("no plain listener"), "{e}");
        let e = problems(
            "server:\n  listen: 127.0.0.1:8443\n  tls:\n    certificates:\n      - { cert: a, key: b }\n",
        );
        assert!(e.contains("server.tls.listen"), "{e}");
        let e = problems("server:\n  tls:\n    certificates:\n      - { cert: a }\n");
        assert!(e.contains("key"), "{e}");
        let e = problems("server:\n  tls:\n    certificates:\n      - { cert: a, key: \"\" }\n");
        assert!(e.contains("server.tls.certificates[0].key"), "{e}");
    }

    #[test]
    fn upstreams_may_be_https_and_client_certificates_come_with_keys() {
        assert_eq!(problems("server:\n  upstream: https://broker:8443\n"), "");
        let e = problems("server:\n  upstream: ftp://x\n");
        assert!(e.contains("server.upstream"), "{e}");
        let e = problems("server:\n  upstream: https://\n");
        assert!(e.contains("server.upstream"), "{e}");
        let e = problems("server:\n  upstream_tls:\n    client_cert: c.pem\n");
        assert!(e.contains("server.upstream_tls.client_key"), "{e}");
        assert_eq!(
            problems("server:\n  upstream_tls:\n    ca: ca.pem\n    client_cert: c.pem\n    client_key: c.key\n"),
            ""
        );
    }
}
