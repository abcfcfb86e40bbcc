//! Connections to Redis: one multiplexed connection, a pool, or a cluster
//! client, all made on first use.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;
use uip_cache_core::config::{RedisConfig, RedisConnection, StoreKind};
use uip_cache_core::CacheConfig;

use super::error::RedisConfigError;
use super::RedisStore;

/// Where connections come from, and the connections once made.
pub(super) struct Connections {
    source: Source,
    /// Where a pub/sub connection goes (a cluster's first node: PUBLISH
    /// reaches every node of a cluster).
    pubsub_url: String,
    ready: OnceCell<Ready>,
}

enum Source {
    Multiplexed(redis::Client, Duration, Duration),
    Pool(redis::Client, u32, Duration),
    Cluster(ClusterClient),
}

enum Ready {
    Multiplexed(ConnectionManager),
    Pool(bb8::Pool<redis::Client>),
    Cluster(ClusterConnection),
}

/// One connection: a clone of the multiplexed one or of the cluster's, or
/// one checked out of the pool.
pub(super) enum Conn {
    Multiplexed(ConnectionManager),
    Pool(bb8::PooledConnection<'static, redis::Client>),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Multiplexed(c) => c.req_packed_command(cmd),
            Conn::Pool(c) => (**c).req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Multiplexed(c) => c.req_packed_commands(p, offset, count),
            Conn::Pool(c) => (**c).req_packed_commands(p, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(p, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Multiplexed(c) => c.get_db(),
            Conn::Pool(c) => (**c).get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Percent-encodes a URL userinfo part (passwords may hold any character).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn url_of(r: &RedisConfig) -> String {
    if let Some(url) = &r.url {
        return url.clone();
    }
    let auth = r
        .password
        .as_deref()
        .map(|p| format!(":{}@", encode(p)))
        .unwrap_or_default();
    format!("redis://{auth}{}:{}/{}", r.host, r.port, r.db)
}

impl Connections {
    /// The connections the config names (`store.type: redis` or
    /// `redis_cluster`, or any config with `redis.cluster_nodes`), not
    /// made yet.
    pub(super) fn from_config(config: &CacheConfig) -> Result<Self, RedisConfigError> {
        let r = &config.redis;
        let connect = r.socket_connect_timeout.get();
        let response = r.socket_timeout.get();
        let cluster = config.store.kind == StoreKind::RedisCluster || !r.cluster_nodes.is_empty();
        let pubsub_url = match r.cluster_nodes.first() {
            Some(n) if n.contains("://") => n.clone(),
            Some(n) => match &r.password {
                Some(p) => format!("redis://:{}@{n}", encode(p)),
                None => format!("redis://{n}"),
            },
            None => url_of(r),
        };
        let source = if cluster {
            if r.cluster_nodes.is_empty() {
                return Err(RedisConfigError(
                    "a cluster needs `redis.cluster_nodes`".into(),
                ));
            }
            let nodes: Vec<String> = r
                .cluster_nodes
                .iter()
                .map(|n| {
                    if n.contains("://") {
                        n.clone()
                    } else {
                        format!("redis://{n}")
                    }
                })
                .collect();
            let mut b = ClusterClient::builder(nodes)
                .connection_timeout(connect)
                .response_timeout(response)
                .retries(2);
            if let Some(p) = &r.password {
                b = b.password(p);
            }
            Source::Cluster(b.build().map_err(|e| RedisConfigError(e.to_string()))?)
        } else {
            let client =
                redis::Client::open(url_of(r)).map_err(|e| RedisConfigError(e.to_string()))?;
            match r.connection {
                // A short checkout timeout: a starved pool must not hold requests.
                RedisConnection::Pool => Source::Pool(
                    client,
                    r.max_connections.max(1),
                    connect.min(Duration::from_secs(1)),
                ),
                _ => Source::Multiplexed(client, connect, response),
            }
        };
        Ok(Connections {
            source,
            pubsub_url,
            ready: OnceCell::new(),
        })
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.source, Source::Cluster(_))
    }

    /// Whether all calls share one multiplexed connection (reads can then
    /// be batched into one pipeline).
    pub(super) fn is_multiplexed(&self) -> bool {
        matches!(self.source, Source::Multiplexed(..))
    }

    /// A connection, the first call making the connection (or pool, or
    /// cluster client) the others share.
    pub(super) async fn get(&self) -> RedisResult<Conn> {
        let ready = self
            .ready
            .get_or_try_init(|| async {
                Ok::<_, RedisError>(match &self.source {
                    Source::Multiplexed(client, connect, response) => {
                        let cfg = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(*connect))
                            .set_response_timeout(Some(*response))
                            .set_number_of_retries(1);
                        Ready::Multiplexed(ConnectionManager::new_lazy_with_config(
                            client.clone(),
                            cfg,
                        )?)
                    }
                    Source::Pool(client, max, connect) => Ready::Pool(
                        bb8::Pool::builder()
                            .max_size(*max)
                            .connection_timeout(*connect)
                            .test_on_check_out(false)
                            .build_unchecked(client.clone()),
                    ),
                    Source::Cluster(client) => Ready::Cluster(client.get_async_connection().await?),
                })
            })
            .await?;
        Ok(match ready {
            Ready::Multiplexed(m) => Conn::Multiplexed(m.clone()),
            Ready::Pool(p) => Conn::Pool(p.get_owned().await.map_err(|e| match e {
                bb8::RunError::User(e) => e,
                bb8::RunError::TimedOut => RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out waiting for a pooled redis connection",
                )),
            })?),
            Ready::Cluster(c) => Conn::Cluster(c.clone()),
        })
    }

    /// A client for a pub/sub connection.
    pub(super) fn pubsub_client(&self) -> RedisResult<redis::Client> {
        redis::Client::open(self.pubsub_url.as_str())
    }
}

impl RedisStore {
    pub(super) fn is_cluster(&self) -> bool {
        self.inner.connections.is_cluster()
    }

    pub(super) fn backend(&self) -> &'static str {
        if self.is_cluster() {
            "redis_cluster"
        } else {
            "redis"
        }
    }

    pub(super) async fn conn(&self) -> RedisResult<Conn> {
        self.inner.connections.get().await
    }

    /// A client for a pub/sub connection.
    pub(crate) fn pubsub_client(&self) -> RedisResult<redis::Client> {
        self.inner.connections.pubsub_client()
    }

    /// Runs groups of commands: one pipeline on a single server; on a cluster
    /// each group (whose keys share a slot) is its own pipeline, all at once.
    pub(super) async fn run_groups(&self, groups: Vec<Pipeline>) -> RedisResult<Vec<Value>> {
        if groups.iter().all(|g| g.cmd_iter().next().is_none()) {
            // Redis refuses an empty pipeline; nothing to do is no error.
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        if !self.is_cluster() {
            let mut all = redis::pipe();
            for g in &groups {
                for c in g.cmd_iter() {
                    all.add_command(c.clone());
                }
            }
            return all.query_async(&mut conn).await;
        }
        let Conn::Cluster(c) = conn else {
            unreachable!("cluster source gives cluster connections")
        };
        let results = futures_util::future::join_all(groups.into_iter().map(|g| {
            let mut c = c.clone();
            async move { g.query_async::<Vec<Value>>(&mut c).await }
        }))
        .await;
        let mut out = Vec::new();
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_encoded() {
        assert_eq!(encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
        let mut r = RedisConfig::default();
        r.password = Some("a@b".into());
        assert_eq!(url_of(&r), "redis://:a%40b@localhost:6379/0");
    }
}
