use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;
use uip_cache_core::config::{RedisConfig, RedisConnection, StoreKind};
use uip_cache_core::store::{
    Coordination, HealthStatus, MemoryUsage, PutOptions, Rewrite, Storage, StoreError,
    StoreErrorKind, StoreFuture, StoreHealth, StoreStatus,
};
use uip_cache_core::{CacheConfig, UrlPattern};

use crate::breaker::Breaker;

mod batch;
mod copies;
mod eviction;
mod log;
mod purge;
use batch::Batch;
use copies::{LocalCopies, HEADER};
use eviction::{Eviction, Verdict};
#[cfg(test)]
use purge::{member_path_query, parse_member};

/// Gives back a lease only if it is still ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// Forgets the tags ARGV[2..] whose latest expiry (their score) is not
/// after ARGV[1]: their sets have just been emptied of expired members.
const FORGET_TAGS: &str = r"
local n = 0
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= tonumber(ARGV[1]) then n = n + redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return n";

/// How many expired tags a write with tags pays for pruning, per tag it
/// carries and once: more than it can create, so that unique tags (one per
/// URL with `target:` tags) never pile up faster than they are pruned.
const TAG_PRUNE_PER_TAG: u64 = 2;
const TAG_PRUNE_PER_PUT: u64 = 8;

/// The most expired tags one pruning round empties.
const TAG_PRUNE_ROUND: u64 = 500;

/// Drops path-index members whose entries have expired (both keys share a slot).
const PRUNE: &str = r"
local m = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #m > 0 then
  redis.call('ZREM', KEYS[1], unpack(m))
  redis.call('ZREM', KEYS[2], unpack(m))
end
return #m";

/// A [`Store`](uip_cache_core::Store) in Redis or Redis Cluster.
///
/// Layout, all under the configured key prefix (`cache:` by default):
///
/// - an entry is a string `<prefix><sha256>` holding an 8-byte write
///   generation, an 8-byte write version and the entry bytes, with a `PX`
///   expiry: a hit is one `GET`, or for an entry of 16 KB or more held in
///   a local copy (`redis.local_copies`), one 16-byte `GETRANGE` that
///   checks the copy is still the stored value;
/// - every tag is a sorted set `<prefix>idx:tag:<tag>` and all entries are in
///   `<prefix>idx:{paths}` (ordered by path, for prefix ranges) and
///   `<prefix>idx:{paths}:exp` (scored by expiry, for pruning). Their members
///   are `path \0 query \0 key \0 generation`. `<prefix>idx:{paths}:tags`
///   scores every tag by the latest expiry of its entries, so that the sets
///   of tags whose entries have all expired are emptied (and so deleted),
///   in proportion to writes: every write with tags pays for pruning more
///   expired tags than it can create, so unique tags (one per URL) cannot
///   grow Redis without bound.
/// - Entries carry a TTL; index keys carry none, so that a `volatile-*`
///   eviction policy evicts entries, never an index a purge needs. Under an
///   `allkeys-*` policy (with `maxmemory` set) an index could go before its
///   entries, and purges would miss them: the store refuses to work there
///   (every call fails at once, a miss for the cache; health is degraded and
///   says why).
///
/// Invalidation pops members in batches of 500 and deletes each key only if
/// it still holds the indexed generation (a one-key script, so it works on a
/// cluster), so its cost follows the entries removed, never the keyspace, and
/// a rewrite with other tags is not removed by an old tag. No command spans
/// two slots.
///
/// Every call has a timeout (`store.timeout`); after 5 failures in a row the
/// circuit opens and Redis is skipped for 3 seconds, then tried again.
/// Purges are not request-path calls: one runs, page after page, for up to
/// `store.purge_timeout` (its log record and backplane messages included),
/// is tried even while the circuit is open, and never counts toward opening
/// it; one cut short fails with the number of entries it removed
/// ([`StoreError::partial`]). Reads of the shared invalidation log do not
/// count toward opening the circuit either (see the `log` module).
/// Connections are made lazily: building the store never touches the network.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    /// Where a pub/sub connection goes (a cluster's first node: PUBLISH
    /// reaches every node of a cluster).
    pubsub_url: String,
    ready: OnceCell<Ready>,
    prefix: String,
    op_timeout: Duration,
    purge_timeout: Duration,
    breaker: Breaker,
    eviction: Eviction,
    /// How many expired tags the writes since the last pruning round paid
    /// for (see TAG_PRUNE_PER_TAG).
    tag_prune_debt: AtomicU64,
    /// Whether a pruning task runs (one at a time per instance).
    tag_pruning: AtomicBool,
    generation: AtomicU64,
    copies: Option<LocalCopies>,
    batch: Batch,
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

enum Conn {
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

/// The Redis section of a config could not make a client.
#[derive(Debug)]
pub struct RedisConfigError(String);

impl fmt::Display for RedisConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis config: {}", self.0)
    }
}

impl std::error::Error for RedisConfigError {}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
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

impl RedisStore {
    /// Builds the store the config names (`store.type: redis` or
    /// `redis_cluster`, or any config with `redis.cluster_nodes`). Never
    /// connects: the first call does, and failures are misses.
    pub fn from_config(config: &CacheConfig) -> Result<Self, RedisConfigError> {
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
        let op_timeout = config.store.timeout.get();
        Ok(RedisStore {
            inner: Arc::new(Inner {
                source,
                pubsub_url,
                ready: OnceCell::new(),
                prefix: config.key.prefix.clone(),
                op_timeout,
                purge_timeout: config.store.purge_timeout.get(),
                breaker: Breaker::new(5, Duration::from_secs(3)),
                eviction: Eviction::default(),
                tag_prune_debt: AtomicU64::new(0),
                tag_pruning: AtomicBool::new(false),
                generation: AtomicU64::new(
                    SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos() as u64
                        ^ (u64::from(std::process::id()) << 40),
                ),
                // A tiered store's L1 already holds entries here.
                copies: if config.store.kind == StoreKind::Tiered {
                    None
                } else {
                    LocalCopies::new(r.local_copies.bytes())
                },
                batch: Batch::default(),
            }),
        })
    }

    /// Publishes `message` on `channel` (every node of a cluster sees it),
    /// as part of a purge: tried even while the circuit is open, for up to
    /// `store.purge_timeout`.
    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        let publish = redis::cmd("PUBLISH").arg(channel).arg(message).clone();
        self.call(Call::Purge, self.inner.purge_timeout, async {
            publish.query_async::<i64>(&mut self.conn().await?).await
        })
        .await
        .map(drop)
    }

    /// A client for a pub/sub connection.
    pub(crate) fn pubsub_client(&self) -> RedisResult<redis::Client> {
        redis::Client::open(self.inner.pubsub_url.as_str())
    }

    /// The key prefix (channels are named after it).
    pub(crate) fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn is_cluster(&self) -> bool {
        matches!(self.inner.source, Source::Cluster(_))
    }

    fn backend(&self) -> &'static str {
        if self.is_cluster() {
            "redis_cluster"
        } else {
            "redis"
        }
    }

    async fn conn(&self) -> RedisResult<Conn> {
        let ready = self
            .inner
            .ready
            .get_or_try_init(|| async {
                Ok::<_, RedisError>(match &self.inner.source {
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

    /// Reads the eviction policy when it is not known yet (or, while it is
    /// refused, every few seconds); the refusal, if the store must refuse.
    async fn eviction_refusal(&self) -> RedisResult<Option<String>> {
        match self.inner.eviction.verdict(now_ms()) {
            Verdict::Go => return Ok(None),
            Verdict::Refuse(reason) => return Ok(Some(reason)),
            Verdict::Check => {}
        }
        let _one = self.inner.eviction.lock().lock().await;
        if !self.inner.eviction.needs_check(now_ms()) {
            return Ok(self.inner.eviction.refusal());
        }
        self.check_eviction().await
    }

    /// Reads the eviction policy now; the refusal, if the store must refuse.
    async fn check_eviction(&self) -> RedisResult<Option<String>> {
        let info: Value = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(self.inner.eviction.record(&info, now_ms()))
    }

    /// Runs `f` under the breaker and a timeout, mapping errors to store errors.
    async fn guarded<T>(
        &self,
        timeout: Duration,
        f: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.call(Call::Request, timeout, f).await
    }

    /// Runs `f` within `timeout`, the circuit breaker taking part as `call`
    /// says, once the eviction policy is known to be safe.
    async fn call<T>(
        &self,
        call: Call,
        timeout: Duration,
        f: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        if call != Call::Purge && !self.inner.breaker.allows() {
            return Err(StoreError::from_kind(StoreErrorKind::Unavailable));
        }
        if timeout.is_zero() {
            return Err(StoreError::from_kind(StoreErrorKind::Timeout));
        }
        let counted = call == Call::Request;
        let checked = async {
            match self.eviction_refusal().await? {
                Some(reason) => Ok(Err(reason)),
                None => f.await.map(Ok),
            }
        };
        match tokio::time::timeout(timeout, checked).await {
            Ok(Ok(Ok(v))) => {
                if counted {
                    self.inner.breaker.success();
                }
                Ok(v)
            }
            Ok(Ok(Err(reason))) => Err(StoreError::new(StoreErrorKind::Backend, reason)),
            Ok(Err(e)) => {
                // A refusal of one command (a key of another type, a write
                // while Redis is full) is an answer: Redis is up, and the
                // circuit stays as it is.
                let refused = e.code() == Some("WRONGTYPE")
                    || e.code() == Some("OOM")
                    || e.kind() == redis::ErrorKind::UnexpectedReturnType;
                if !refused && counted {
                    self.inner.breaker.failure();
                }
                let kind = if e.is_timeout() {
                    StoreErrorKind::Timeout
                } else if e.is_connection_refusal() || e.is_io_error() || e.is_connection_dropped()
                {
                    StoreErrorKind::Connection
                } else {
                    StoreErrorKind::Backend
                };
                Err(StoreError::new(kind, e))
            }
            Err(_) => {
                if counted {
                    self.inner.breaker.failure();
                }
                Err(StoreError::from_kind(StoreErrorKind::Timeout))
            }
        }
    }

    /// Runs one command under the breaker and `timeout`.
    async fn query<T: redis::FromRedisValue>(
        &self,
        timeout: Duration,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        self.guarded(timeout, async {
            cmd.query_async(&mut self.conn().await?).await
        })
        .await
    }

    /// Runs groups of commands: one pipeline on a single server; on a cluster
    /// each group (whose keys share a slot) is its own pipeline, all at once.
    async fn run_groups(&self, groups: Vec<Pipeline>) -> RedisResult<Vec<Value>> {
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

    fn paths_key(&self) -> String {
        format!("{}idx:{{paths}}", self.inner.prefix)
    }

    fn paths_exp_key(&self) -> String {
        format!("{}idx:{{paths}}:exp", self.inner.prefix)
    }

    // The epoch and the invalidation log share a hash slot, so one script
    // updates both on a cluster too.
    fn epoch_key(&self) -> String {
        format!("{}idx:{{inv}}:epoch", self.inner.prefix)
    }

    fn log_key(&self) -> String {
        format!("{}idx:{{inv}}:log", self.inner.prefix)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}idx:tag:{tag}", self.inner.prefix)
    }

    /// Every tag, scored by the latest expiry of its entries.
    fn tags_key(&self) -> String {
        format!("{}idx:{{paths}}:tags", self.inner.prefix)
    }

    /// The rate counter of the invalidation log (same slot as the log).
    fn log_rate_key(&self) -> String {
        format!("{}idx:{{inv}}:rate", self.inner.prefix)
    }

    /// Pays for pruning after a write of `tags` tags: the sets of tags whose
    /// entries have all expired are emptied (tag sets carry no TTL, see the
    /// type's docs) in proportion to writes, by one task at a time per
    /// instance that runs while writes keep paying. A tag set and the tags
    /// index are in different slots on a cluster, hence a task rather than
    /// the write's own pipeline.
    fn prune_tags_after_write(&self, tags: usize) {
        let paid = TAG_PRUNE_PER_TAG * tags as u64 + TAG_PRUNE_PER_PUT;
        self.inner.tag_prune_debt.fetch_add(paid, Ordering::AcqRel);
        if self.inner.tag_pruning.swap(true, Ordering::AcqRel) {
            return; // the running task takes this debt too
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner.tag_pruning.store(false, Ordering::Release);
            return;
        };
        let store = self.clone();
        rt.spawn(async move {
            loop {
                let debt = store.inner.tag_prune_debt.swap(0, Ordering::AcqRel);
                if debt == 0 {
                    store.inner.tag_pruning.store(false, Ordering::Release);
                    // A write may have paid between the swap and the store.
                    if store.inner.tag_prune_debt.load(Ordering::Acquire) == 0
                        || store.inner.tag_pruning.swap(true, Ordering::AcqRel)
                    {
                        return;
                    }
                    continue;
                }
                match store.prune_tags(now_ms(), debt.min(TAG_PRUNE_ROUND)).await {
                    // Fewer expired tags than paid for: nothing is left over.
                    Ok(n) if n < debt.min(TAG_PRUNE_ROUND) => {}
                    // Unpaid rest of a large debt: carried to the next round.
                    Ok(_) => {
                        store
                            .inner
                            .tag_prune_debt
                            .fetch_add(debt.saturating_sub(TAG_PRUNE_ROUND), Ordering::AcqRel);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "redis store: pruning expired tags failed");
                        // Kept for the task the next write starts.
                        store.inner.tag_prune_debt.fetch_add(debt, Ordering::AcqRel);
                        store.inner.tag_pruning.store(false, Ordering::Release);
                        return;
                    }
                }
            }
        });
    }

    /// Empties the sets of up to `limit` tags whose entries expired by
    /// `now`; how many expired tags it found.
    async fn prune_tags(&self, now: u64, limit: u64) -> Result<u64, StoreError> {
        let timeout = self.inner.op_timeout * 10;
        let tags: Vec<String> = self
            .call(Call::Purge, timeout, async {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.tags_key())
                    .arg("-inf")
                    .arg(now)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut self.conn().await?)
                    .await
            })
            .await?;
        if tags.is_empty() {
            return Ok(0);
        }
        let groups = tags
            .iter()
            .map(|t| {
                let mut p = redis::pipe();
                p.cmd("ZREMRANGEBYSCORE")
                    .arg(self.tag_key(t))
                    .arg("-inf")
                    .arg(now)
                    .ignore();
                p
            })
            .collect();
        self.call(Call::Purge, timeout, self.run_groups(groups))
            .await?;
        let mut forget = redis::cmd("EVAL");
        forget
            .arg(FORGET_TAGS)
            .arg(1)
            .arg(self.tags_key())
            .arg(now)
            .arg(&tags);
        self.call(Call::Purge, timeout, async {
            forget.query_async::<i64>(&mut self.conn().await?).await
        })
        .await?;
        Ok(tags.len() as u64)
    }

    fn prune_cmd(&self) -> Cmd {
        let mut c = redis::cmd("EVAL");
        c.arg(PRUNE)
            .arg(2)
            .arg(self.paths_key())
            .arg(self.paths_exp_key())
            .arg(now_ms())
            .arg(200);
        c
    }
}

/// A string reply's bytes; `None` for nil.
fn bytes_of(v: Value) -> RedisResult<Option<Vec<u8>>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        _ => Err(RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "not a string reply",
        ))),
    }
}

/// How a call takes part in the circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// The request path: skipped while the circuit is open; its failures
    /// and successes count.
    Request,
    /// A read of the shared invalidation log: skipped while the circuit is
    /// open (its caller then does not store), never counted.
    Log,
    /// A purge, its log record, its backplane messages: tried even while
    /// the circuit is open, never counted.
    Purge,
}

fn info_field(v: &Value, field: &str) -> u64 {
    let sum_text = |text: &str| -> u64 {
        text.lines()
            .filter_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum()
    };
    match v {
        Value::BulkString(b) => sum_text(&String::from_utf8_lossy(b)),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => sum_text(text),
        Value::Map(m) => m.iter().map(|(_, v)| info_field(v, field)).sum(),
        Value::Array(a) => a.iter().map(|v| info_field(v, field)).sum(),
        _ => 0,
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("backend", &self.backend())
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.op_timeout)
            .field("circuit_open", &self.inner.breaker.is_open())
            .finish()
    }
}

impl Storage for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let local = self.inner.copies.as_ref();
            if let Some((header, entry)) = local.and_then(|c| c.get(key)) {
                let mut range = redis::cmd("GETRANGE");
                range.arg(key).arg(0).arg(HEADER - 1);
                let now = self
                    .guarded(self.inner.op_timeout, async {
                        bytes_of(self.read(range).await?)
                    })
                    .await?
                    .unwrap_or_default();
                if now[..] == header[..] {
                    return Ok(Some(entry));
                }
                local.inspect(|c| c.forget(key));
                if now.is_empty() {
                    return Ok(None);
                }
            }
            let mut get = redis::cmd("GET");
            get.arg(key);
            let raw = self
                .guarded(self.inner.op_timeout, async {
                    bytes_of(self.read(get).await?)
                })
                .await?;
            // Strip the header; shorter values are foreign bytes, handed on
            // as they are for core to count and delete.
            Ok(raw.map(|v| {
                let stored = Bytes::from(v);
                match copies::split(&stored) {
                    Some((header, entry)) => local
                        .and_then(|c| c.keep(key, header, entry.clone()))
                        .unwrap_or(entry),
                    None => stored,
                }
            }))
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Bytes, o: PutOptions<'a>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
            let ttl_ms = (o.ttl.as_millis() as u64).max(1);
            let expires = now_ms() + ttl_ms;
            let header = copies::header(generation);
            let mut stored = Vec::with_capacity(HEADER + value.len());
            stored.extend_from_slice(&header);
            stored.extend_from_slice(&value);
            let mut member = Vec::with_capacity(o.path.len() + key.len() + 24);
            member.extend_from_slice(o.path.as_bytes());
            member.push(0);
            member.extend_from_slice(o.query.unwrap_or("").as_bytes());
            member.push(0);
            member.extend_from_slice(key.as_bytes());
            member.push(0);
            member.extend_from_slice(format!("{generation:016x}").as_bytes());

            let mut groups = Vec::with_capacity(2 + o.tags.len());
            let mut entry = redis::pipe();
            entry
                .cmd("SET")
                .arg(key)
                .arg(stored)
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
            groups.push(entry);
            let mut paths = redis::pipe();
            paths
                .cmd("ZADD")
                .arg(self.paths_key())
                .arg(0)
                .arg(&member)
                .ignore();
            paths
                .cmd("ZADD")
                .arg(self.paths_exp_key())
                .arg(expires)
                .arg(&member)
                .ignore();
            paths.add_command(self.prune_cmd()).ignore();
            if !o.tags.is_empty() {
                let tags = paths.cmd("ZADD").arg(self.tags_key()).arg("GT");
                for t in o.tags {
                    tags.arg(expires).arg(t);
                }
                tags.ignore();
            }
            groups.push(paths);
            // No TTL on a tag's set (an eviction policy may then evict
            // entries only): expired members go on writes, and the whole
            // set once all its entries expired (prune_tags_after_write).
            for t in o.tags {
                let tk = self.tag_key(t);
                let mut p = redis::pipe();
                p.cmd("ZADD").arg(&tk).arg(expires).arg(&member).ignore();
                p.cmd("ZREMRANGEBYSCORE")
                    .arg(&tk)
                    .arg("-inf")
                    .arg(now_ms())
                    .ignore();
                groups.push(p);
            }
            if let Some(c) = &self.inner.copies {
                c.forget(key);
            }
            self.guarded(self.inner.op_timeout, self.run_groups(groups))
                .await?;
            if let Some(c) = &self.inner.copies {
                c.keep(key, header, value);
            }
            if !o.tags.is_empty() {
                self.prune_tags_after_write(o.tags.len());
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if let Some(c) = &self.inner.copies {
                c.forget(key);
            }
            let n: u64 = self
                .query(self.inner.op_timeout, redis::cmd("DEL").arg(key))
                .await?;
            Ok(n > 0)
        })
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> StoreFuture<'a, u64> {
        Box::pin(self.purge_tags(tags))
    }

    fn invalidate_pattern<'a>(&'a self, pattern: &'a UrlPattern) -> StoreFuture<'a, u64> {
        Box::pin(self.purge_pattern(pattern))
    }

    fn soft_invalidate_tags<'a>(
        &'a self,
        tags: &'a [String],
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move { self.soft_purge_tags(tags, rewrite).await.map(Some) })
    }

    fn soft_invalidate_pattern<'a>(
        &'a self,
        pattern: &'a UrlPattern,
        rewrite: &'a Rewrite<'a>,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move { self.soft_purge_pattern(pattern, rewrite).await.map(Some) })
    }
}

impl StoreStatus for RedisStore {
    fn keys_count(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.guarded(self.inner.op_timeout * 5, async {
                let mut p = redis::pipe();
                p.add_command(self.prune_cmd()).ignore();
                p.cmd("ZCARD").arg(self.paths_key());
                let (n,): (u64,) = p.query_async(&mut self.conn().await?).await?;
                Ok(n)
            })
            .await
        })
    }

    fn memory(&self) -> StoreFuture<'_, MemoryUsage> {
        Box::pin(async move {
            self.guarded(self.inner.op_timeout * 10, async {
                let mut c = self.conn().await?;
                let mem: Value = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
                let stats: Value = redis::cmd("INFO").arg("stats").query_async(&mut c).await?;
                let max = info_field(&mem, "maxmemory");
                Ok(MemoryUsage::new(
                    info_field(&mem, "used_memory"),
                    (max > 0).then_some(max),
                    info_field(&stats, "evicted_keys"),
                )
                .with_expirations(info_field(&stats, "expired_keys")))
            })
            .await
        })
    }

    fn health(&self) -> StoreFuture<'_, StoreHealth> {
        Box::pin(async move {
            if self.inner.breaker.is_open() {
                return Ok(StoreHealth::new(
                    HealthStatus::Down,
                    self.backend(),
                    Some("circuit open after repeated failures".into()),
                ));
            }
            // The eviction policy is read again at every health check. A
            // policy that may evict indexes is degraded, not down: the store
            // is not used (requests go to the origin) but the instance can
            // serve, so a readiness probe on /health keeps it in rotation.
            let down = |detail: String| {
                Ok(StoreHealth::new(
                    HealthStatus::Down,
                    self.backend(),
                    Some(detail),
                ))
            };
            match tokio::time::timeout(self.inner.op_timeout * 5, self.check_eviction()).await {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(reason))) => {
                    return Ok(StoreHealth::new(
                        HealthStatus::Degraded,
                        self.backend(),
                        Some(reason),
                    ))
                }
                Ok(Err(e)) => {
                    return down(StoreError::new(StoreErrorKind::Connection, e).to_string())
                }
                Err(_) => return down(StoreError::from_kind(StoreErrorKind::Timeout).to_string()),
            }
            let ping = self
                .query::<String>(self.inner.op_timeout * 5, &redis::cmd("PING"))
                .await;
            Ok(match ping {
                Ok(_) if self.inner.breaker.has_failures() => StoreHealth::new(
                    HealthStatus::Degraded,
                    self.backend(),
                    Some("recent failures".into()),
                ),
                Ok(_) => StoreHealth::new(HealthStatus::Connected, self.backend(), None),
                Err(e) => StoreHealth::new(HealthStatus::Down, self.backend(), Some(e.to_string())),
            })
        })
    }
}

impl Coordination for RedisStore {
    fn epoch(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut get = redis::cmd("GET");
            get.arg(self.epoch_key());
            let n: Option<u64> = self
                .call(Call::Log, self.inner.op_timeout, async {
                    get.query_async(&mut self.conn().await?).await
                })
                .await?;
            Ok(n.unwrap_or(0))
        })
    }

    /// Part of a purge (see the type's docs); a line longer than the log
    /// holds is recorded as a wider invalidation (see the `log` module).
    fn record_invalidation<'a>(&'a self, line: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut record = redis::cmd("EVAL");
            record
                .arg(log::RECORD)
                .arg(3)
                .arg(self.epoch_key())
                .arg(self.log_key())
                .arg(self.log_rate_key())
                .arg(log::bounded(line).as_ref())
                .arg(log::LEN)
                .arg(log::RATE_MAX);
            self.call(Call::Purge, self.inner.purge_timeout, async {
                record.query_async::<u64>(&mut self.conn().await?).await
            })
            .await
            .map(drop)
        })
    }

    fn invalidations_since(&self, epoch: u64) -> StoreFuture<'_, Option<Vec<String>>> {
        Box::pin(async move {
            let mut since = redis::cmd("EVAL");
            since
                .arg(log::SINCE)
                .arg(2)
                .arg(self.epoch_key())
                .arg(self.log_key())
                .arg(epoch)
                .arg(log::READ_MAX);
            let members: Option<Vec<Vec<u8>>> = self
                .call(Call::Log, self.inner.op_timeout, async {
                    since.query_async(&mut self.conn().await?).await
                })
                .await?;
            // Members are "<seq> <line>": the sequence keeps equal lines apart.
            Ok(members.map(|ms| {
                ms.into_iter()
                    .map(|m| {
                        let m = String::from_utf8_lossy(&m).into_owned();
                        match m.split_once(' ') {
                            Some((_, line)) => line.to_owned(),
                            None => m,
                        }
                    })
                    .collect()
            }))
        })
    }

    fn try_lease<'a>(&'a self, key: &'a str, token: u64, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let set: Option<String> = self
                .query(
                    self.inner.op_timeout,
                    redis::cmd("SET")
                        .arg(key)
                        .arg(token)
                        .arg("NX")
                        .arg("PX")
                        .arg((ttl.as_millis() as u64).max(1)),
                )
                .await?;
            Ok(set.is_some())
        })
    }

    fn release_lease<'a>(&'a self, key: &'a str, token: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.query::<i64>(
                self.inner.op_timeout,
                redis::cmd("EVAL").arg(RELEASE).arg(1).arg(key).arg(token),
            )
            .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_and_passwords_are_encoded() {
        let m = b"/e/1\x00a=1\x00cache:abc\x00000000000000002a".to_vec();
        let (key, g) = parse_member(&m).unwrap();
        assert_eq!(key, b"cache:abc");
        assert_eq!(u64::from_be_bytes(g), 42);
        assert_eq!(member_path_query(&m), Some(("/e/1", Some("a=1"))));
        assert_eq!(member_path_query(b"/e\x00\x00k\x000"), Some(("/e", None)));
        assert_eq!(encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
        let mut r = RedisConfig::default();
        r.password = Some("a@b".into());
        assert_eq!(url_of(&r), "redis://:a%40b@localhost:6379/0");
    }

    #[test]
    fn info_fields_sum_across_nodes() {
        let one = Value::BulkString(b"# Memory\r\nused_memory:100\r\nmaxmemory:0\r\n".to_vec());
        assert_eq!(info_field(&one, "used_memory"), 100);
        let many = Value::Map(vec![
            (Value::SimpleString("a".into()), one.clone()),
            (Value::SimpleString("b".into()), one),
        ]);
        assert_eq!(info_field(&many, "used_memory"), 200);
    }
}
