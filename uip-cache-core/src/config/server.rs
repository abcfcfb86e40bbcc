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
    /// Where clients connect (default `127.0.0.1:8080`; `--listen` overrides).
    pub listen: String,
    /// The backend, `http://host:port` (`--upstream` overrides). With
    /// `routes`, the backend of the requests no route matches.
    #[serde(deserialize_with = "empty_as_none")]
    pub upstream: Option<String>,
    /// Which backend a request goes to, by host and path prefix: the first
    /// route that matches, in file order (see [`RouteConfig`]).
    pub routes: Vec<RouteConfig>,
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
}

impl ServerConfig {
    /// The section's own check of `listen`: it is an address.
    pub(super) fn check_listen(&self, problems: &mut Vec<ConfigProblem>) {
        check_listen("server.listen", &self.listen, "127.0.0.1:8080", problems);
    }

    /// The section's own check of `upstream`: it is an http:// URL.
    /// (`trusted_proxies` are checked where they are parsed.)
    pub(super) fn check_upstream(&self, problems: &mut Vec<ConfigProblem>) {
        if let Some(u) = &self.upstream {
            if !(u.starts_with("http://") && u.len() > "http://".len()) {
                problems.push(ConfigProblem::new(
                    None,
                    "server.upstream",
                    format!("`{u}` is not an http:// URL such as http://127.0.0.1:3000"),
                ));
            }
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            upstream: None,
            routes: Vec::new(),
            connect_timeout: Seconds(Duration::from_secs(5)),
            timeout: Seconds(Duration::from_secs(60)),
            shutdown_grace: Seconds(Duration::from_secs(10)),
            workers: 0,
            trusted_proxies: Vec::new(),
            send_timeout: Seconds(Duration::from_secs(60)),
            idle_timeout: Seconds(Duration::from_secs(75)),
            max_inflight_bytes: ByteSize(256 << 20),
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
