//! `redis`: how the Redis store connects.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::de::empty_as_none;
use super::{ByteSize, Seconds};

/// Redis connection settings (the seed's section, plus `url`, `cluster_nodes`, `connection`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Host name (default `localhost`).
    pub host: String,
    /// Port (default 6379).
    pub port: u16,
    /// Database number (default 0).
    pub db: i64,
    /// Password; empty means none.
    #[serde(deserialize_with = "empty_as_none")]
    pub password: Option<String>,
    /// Pool size when `connection: pool` (default 50).
    pub max_connections: u32,
    /// Socket read/write timeout (default 5s).
    pub socket_timeout: Seconds,
    /// Connect timeout (default 5s).
    pub socket_connect_timeout: Seconds,
    /// How often health is checked (default 30s).
    pub health_check_interval: Seconds,
    /// A `redis://` URL; when set it wins over host, port, db and password.
    #[serde(deserialize_with = "empty_as_none")]
    pub url: Option<String>,
    /// Cluster seed nodes (`host:port` or URLs); setting them selects a cluster.
    pub cluster_nodes: Vec<String>,
    /// `multiplexed` (default) or `pool`.
    pub connection: RedisConnection,
    /// Memory for local copies of large entries (16 KB and more) read from
    /// Redis (default 64MB; 0 turns them off). A hit on a copy still asks
    /// Redis, for the entry's 16-byte header only, and serves the copy only
    /// if that header is the one it was read with, so a copy is never staler
    /// than Redis. Unused by `type: tiered`, whose L1 already holds entries.
    pub local_copies: ByteSize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: "localhost".into(),
            port: 6379,
            db: 0,
            password: None,
            max_connections: 50,
            socket_timeout: Seconds(Duration::from_secs(5)),
            socket_connect_timeout: Seconds(Duration::from_secs(5)),
            health_check_interval: Seconds(Duration::from_secs(30)),
            url: None,
            cluster_nodes: Vec::new(),
            connection: RedisConnection::default(),
            local_copies: ByteSize(64 << 20),
        }
    }
}

// The password must never reach logs, so Debug is written by hand.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("max_connections", &self.max_connections)
            .field("socket_timeout", &self.socket_timeout)
            .field("socket_connect_timeout", &self.socket_connect_timeout)
            .field("health_check_interval", &self.health_check_interval)
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("cluster_nodes", &self.cluster_nodes)
            .field("connection", &self.connection)
            .field("local_copies", &self.local_copies)
            .finish()
    }
}

/// How the Redis store talks to Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RedisConnection {
    /// One multiplexed, auto-reconnecting connection (the default, fastest for many small GETs).
    #[default]
    Multiplexed,
    /// A pool of connections of `max_connections`.
    Pool,
}
