//! Which Redis eviction policies keep purges working.
//!
//! A purge finds entries only through index keys: a tag's sorted set and
//! the path index. Should Redis evict an index before the entries it lists,
//! a purge deletes nothing and those entries are served until they expire.
//! Entries (and leases) carry a TTL; index keys and the invalidation log
//! carry none. So:
//!
//! - `noeviction`: nothing is evicted (a full Redis refuses writes, which
//!   are dropped writes for the cache): safe;
//! - `volatile-lru`, `volatile-lfu`, `volatile-random`, `volatile-ttl`:
//!   only keys with a TTL are evicted, that is entries, never an index:
//!   safe, and the usual choice for a cache;
//! - `allkeys-lru`, `allkeys-lfu`, `allkeys-random`: any key may go, index
//!   keys included: purges can silently miss entries. The store refuses to
//!   work under them (while `maxmemory` is set): every call fails at once,
//!   which the cache treats as a miss, and health is degraded (not down:
//!   the instance still serves, from the origin), naming the policy and
//!   the fix.
//!
//! The policy is read (`INFO memory`, allowed where `CONFIG` is not) when
//! the store first talks to Redis and at every health check; while refused,
//! it is read again at most every few seconds, so fixing Redis
//! (`CONFIG SET maxmemory-policy volatile-lru`) brings the store back by
//! itself.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

use redis::{RedisResult, Value};

use super::{now_ms, RedisStore};

// 0: not read yet.
const SAFE: u8 = 1;
const UNSAFE: u8 = 2;

/// How often a refused store looks at the policy again.
const RECHECK_MS: u64 = 5_000;

/// What the store knows of the server's eviction policy.
#[derive(Debug, Default)]
pub(super) struct Eviction {
    state: AtomicU8,
    checked_ms: AtomicU64,
    reason: Mutex<String>,
    /// Serialises checks, so a burst of first calls reads the policy once.
    checking: tokio::sync::Mutex<()>,
}

/// What to do before a call.
pub(super) enum Verdict {
    /// Go ahead.
    Go,
    /// Read the policy first.
    Check,
    /// Refuse, for this reason.
    Refuse(String),
}

impl Eviction {
    pub(super) fn verdict(&self, now_ms: u64) -> Verdict {
        match self.state.load(Ordering::Acquire) {
            SAFE => Verdict::Go,
            UNSAFE if now_ms < self.checked_ms.load(Ordering::Acquire) + RECHECK_MS => {
                Verdict::Refuse(self.reason())
            }
            _ => Verdict::Check,
        }
    }

    /// Whether the policy still needs reading (another caller may have
    /// read it while this one waited for the lock).
    pub(super) fn needs_check(&self, now_ms: u64) -> bool {
        matches!(self.verdict(now_ms), Verdict::Check)
    }

    pub(super) fn lock(&self) -> &tokio::sync::Mutex<()> {
        &self.checking
    }

    /// The reason of the last refusal, if the store refuses.
    pub(super) fn refusal(&self) -> Option<String> {
        (self.state.load(Ordering::Acquire) == UNSAFE).then(|| self.reason())
    }

    fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records what `INFO memory` said; the refusal, if any.
    pub(super) fn record(&self, info: &Value, now_ms: u64) -> Option<String> {
        let refusal = refusal_of(info);
        let was = self.state.swap(
            if refusal.is_some() { UNSAFE } else { SAFE },
            Ordering::AcqRel,
        );
        self.checked_ms.store(now_ms, Ordering::Release);
        match &refusal {
            Some(r) => {
                *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = r.clone();
                if was != UNSAFE {
                    tracing::error!("{r}");
                }
            }
            None if was == UNSAFE => {
                tracing::warn!(
                    "redis eviction policy is safe for purges again: the store is back in use"
                );
            }
            None => {}
        }
        refusal
    }
}

impl RedisStore {
    /// Reads the eviction policy when it is not known yet (or, while it is
    /// refused, every few seconds); the refusal, if the store must refuse.
    pub(super) async fn eviction_refusal(&self) -> RedisResult<Option<String>> {
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
    pub(super) async fn check_eviction(&self) -> RedisResult<Option<String>> {
        let info: Value = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(self.inner.eviction.record(&info, now_ms()))
    }
}

/// Why the servers `INFO memory` describes (one, or one per cluster node)
/// cannot hold the cache, if they cannot.
pub(super) fn refusal_of(info: &Value) -> Option<String> {
    let mut texts = Vec::new();
    collect_texts(info, &mut texts);
    texts.iter().find_map(|text| {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let policy = field("maxmemory_policy")?;
        let max: u64 = field("maxmemory").and_then(|m| m.parse().ok()).unwrap_or(0);
        (policy.starts_with("allkeys-") && max > 0).then(|| {
            format!(
                "redis runs with maxmemory-policy {policy}, which can evict the tag and path indexes \
                 before the entries they list, so purges would miss entries: the store is not used. \
                 Set maxmemory-policy to volatile-lru (entries carry a TTL, indexes none) or noeviction"
            )
        })
    })
}

fn collect_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => out.push(text.clone()),
        Value::Map(m) => m.iter().for_each(|(_, v)| collect_texts(v, out)),
        Value::Array(a) => a.iter().for_each(|v| collect_texts(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(policy: &str, max: u64) -> Value {
        Value::BulkString(
            format!("# Memory\r\nmaxmemory:{max}\r\nmaxmemory_policy:{policy}\r\n").into_bytes(),
        )
    }

    #[test]
    fn only_allkeys_policies_with_a_memory_limit_are_refused() {
        for safe in [
            "noeviction",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            assert!(refusal_of(&info(safe, 1 << 20)).is_none(), "{safe}");
        }
        for bad in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
            let r = refusal_of(&info(bad, 1 << 20)).expect(bad);
            assert!(r.contains(bad) && r.contains("volatile-lru"), "{r}");
            // Without a memory limit nothing is ever evicted.
            assert!(refusal_of(&info(bad, 0)).is_none(), "{bad}");
        }
        // One bad node of a cluster is enough.
        let nodes = Value::Map(vec![
            (Value::SimpleString("a".into()), info("volatile-lru", 1)),
            (Value::SimpleString("b".into()), info("allkeys-lru", 1)),
        ]);
        assert!(refusal_of(&nodes).is_some());
    }

    #[test]
    fn a_refusal_is_kept_for_a_while_then_checked_again() {
        let e = Eviction::default();
        assert!(matches!(e.verdict(0), Verdict::Check));
        assert!(e.record(&info("allkeys-lru", 1), 1_000).is_some());
        assert!(matches!(e.verdict(1_001), Verdict::Refuse(_)));
        assert!(matches!(e.verdict(1_000 + RECHECK_MS), Verdict::Check));
        assert!(e.record(&info("volatile-lru", 1), 7_000).is_none());
        assert!(matches!(e.verdict(7_001), Verdict::Go));
        assert!(e.refusal().is_none());
    }
}
