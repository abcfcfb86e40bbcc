//! [`Storage`] for [`RedisStore`]: reads (through local copies and
//! batches), writes with their index members, deletes, and the purges of
//! the `purge` module.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use redis::{RedisError, RedisResult, Value};
use uip_cache_core::store::{PutOptions, Rewrite, Storage, StoreFuture};
use uip_cache_core::UrlPattern;

use super::copies::{self, HEADER};
use super::keys;
use super::{now_ms, RedisStore};

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
            let member = keys::member(o.path, o.query, key, generation);

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
                .arg(self.inner.keys.paths())
                .arg(0)
                .arg(&member)
                .ignore();
            paths
                .cmd("ZADD")
                .arg(self.inner.keys.paths_exp())
                .arg(expires)
                .arg(&member)
                .ignore();
            paths.add_command(self.prune_cmd()).ignore();
            if !o.tags.is_empty() {
                let tags = paths.cmd("ZADD").arg(self.inner.keys.tags()).arg("GT");
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
                let tk = self.inner.keys.tag(t);
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
