//! [`StoreStatus`] for [`RedisStore`]: the entry count, memory figures
//! summed over a cluster's nodes, and health (the breaker, the eviction
//! policy, a ping).

use redis::Value;
use uip_cache_core::store::{
    HealthStatus, MemoryUsage, StoreError, StoreErrorKind, StoreFuture, StoreHealth, StoreStatus,
};

use super::RedisStore;

/// The sum of an `INFO` field over the servers a reply covers (one, or one
/// per cluster node).
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

impl StoreStatus for RedisStore {
    fn keys_count(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            self.guarded(self.inner.op_timeout * 5, async {
                let mut p = redis::pipe();
                p.add_command(self.prune_cmd()).ignore();
                p.cmd("ZCARD").arg(self.inner.keys.paths());
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

#[cfg(test)]
mod tests {
    use super::*;

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
