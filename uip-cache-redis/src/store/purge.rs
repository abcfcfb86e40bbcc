//! Invalidation in Redis: hard purges (delete) and soft purges (rewrite as
//! stale) of the entries a tag or a URL pattern selects through the
//! indexes, in batches, each entry touched only while it still holds the
//! write generation its index member names (a newer write is left alone).
//!
//! A purge runs until its deadline (`store.purge_timeout` from its start),
//! not the request path's `store.timeout`; one that stops part-way fails
//! with the count of what it did, and leaves the indexes so that running it
//! again finishes the work (members leave a tag's set only after their
//! entries are gone).

use std::future::Future;

use bytes::Bytes;
use redis::{Cmd, RedisResult, Value};
use tokio::time::Instant;
use uip_cache_core::store::{Rewrite, StoreError};
use uip_cache_core::UrlPattern;

use super::call::Call;
use super::keys::{member_path_query, parse_member, pattern_range};
use super::{copies, now_ms, scripts, RedisStore};

/// Entries removed per round trip during invalidation: large enough to be
/// fast, small enough that no single command holds Redis for long.
const BATCH: usize = 500;

/// Entries rewritten per round trip by a soft purge: each is read and
/// written whole, so fewer at once than for deletes.
const SOFT_BATCH: usize = 100;

/// One group of commands per key on a cluster (keys live on other nodes);
/// on a single server `run_groups` sends them all as one pipeline anyway.
fn per_key(n: usize, mut add: impl FnMut(&mut redis::Pipeline, usize)) -> Vec<redis::Pipeline> {
    (0..n)
        .map(|i| {
            let mut p = redis::pipe();
            add(&mut p, i);
            p
        })
        .collect()
}

impl RedisStore {
    /// When a purge starting now must be done.
    fn purge_deadline(&self) -> Instant {
        Instant::now() + self.inner.purge_timeout
    }

    /// Runs one step of a purge with what is left until `deadline`.
    async fn step<T>(
        &self,
        deadline: Instant,
        f: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.call(Call::Purge, left, f).await
    }

    /// Runs one command of a purge with what is left until `deadline`.
    async fn step_cmd<T: redis::FromRedisValue>(
        &self,
        deadline: Instant,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        self.step(deadline, async {
            cmd.query_async(&mut self.conn().await?).await
        })
        .await
    }

    /// Deletes the entries of index members still holding their generation,
    /// and drops the members from the path index; how many entries went.
    async fn remove_members(&self, members: &[Vec<u8>]) -> RedisResult<u64> {
        let parsed: Vec<(&[u8], [u8; 8])> =
            members.iter().filter_map(|m| parse_member(m)).collect();
        let mut index = redis::pipe();
        index
            .cmd("ZREM")
            .arg(self.inner.keys.paths())
            .arg(members)
            .ignore();
        index
            .cmd("ZREM")
            .arg(self.inner.keys.paths_exp())
            .arg(members)
            .ignore();
        if !self.is_cluster() {
            let mut p = redis::pipe();
            let script = p
                .cmd("EVAL")
                .arg(scripts::DEL_IF_GEN_BATCH)
                .arg(parsed.len());
            for (key, _) in &parsed {
                script.arg(*key);
            }
            for (_, generation) in &parsed {
                script.arg(&generation[..]);
            }
            let values = self.run_groups(vec![p, index]).await?;
            return Ok(match values.first() {
                Some(Value::Int(n)) => *n as u64,
                _ => 0,
            });
        }
        let mut groups = per_key(parsed.len(), |p, i| {
            let (key, generation) = &parsed[i];
            p.cmd("EVAL")
                .arg(scripts::DEL_IF_GEN)
                .arg(1)
                .arg(*key)
                .arg(&generation[..]);
        });
        let deleted = groups.len();
        groups.push(index);
        let values = self.run_groups(groups).await?;
        Ok(values
            .iter()
            .take(deleted)
            .filter(|v| matches!(v, Value::Int(1)))
            .count() as u64)
    }

    /// Soft purge of index members: every entry still holding its
    /// generation is replaced by what `rewrite` makes of it (the members
    /// stay, the entry is still indexed); how many were.
    async fn rewrite_members(
        &self,
        members: &[Vec<u8>],
        rewrite: &Rewrite<'_>,
    ) -> RedisResult<u64> {
        let parsed: Vec<(&[u8], [u8; 8])> =
            members.iter().filter_map(|m| parse_member(m)).collect();
        let reads = per_key(parsed.len(), |p, i| {
            p.cmd("GET").arg(parsed[i].0);
        });
        let values = self.run_groups(reads).await?;
        let mut rewritten = Vec::new();
        for ((key, generation), value) in parsed.iter().zip(values) {
            let Value::BulkString(stored) = value else {
                continue;
            };
            let Some((header, entry)) = copies::split(&Bytes::from(stored)) else {
                continue;
            };
            if header[..8] != generation[..] {
                continue;
            }
            if let Some((new, ttl)) = rewrite(&entry) {
                // A new version, so local copies of the old entry go stale.
                let versioned = [&copies::fresh_version()[..], &new[..]].concat();
                rewritten.push((*key, generation, versioned, (ttl.as_millis() as u64).max(1)));
            }
        }
        let writes = per_key(rewritten.len(), |p, i| {
            let (key, generation, new, ttl_ms) = &rewritten[i];
            p.cmd("EVAL")
                .arg(scripts::REWRITE_IF_GEN)
                .arg(1)
                .arg(*key)
                .arg(&generation[..])
                .arg(&new[..])
                .arg(*ttl_ms);
        });
        let values = self.run_groups(writes).await?;
        Ok(values.iter().filter(|v| matches!(v, Value::Int(1))).count() as u64)
    }

    /// Removes every entry carrying any of `tags` (the tag sets go too).
    pub(super) async fn purge_tags(&self, tags: &[String]) -> Result<u64, StoreError> {
        let deadline = self.purge_deadline();
        let mut removed = 0;
        for tag in tags {
            let key = self.inner.keys.tag(tag);
            loop {
                let mut range = redis::cmd("ZRANGE");
                range.arg(&key).arg(0).arg(BATCH - 1);
                let members: Vec<Vec<u8>> = self
                    .step_cmd(deadline, &range)
                    .await
                    .map_err(|e| e.with_partial(removed))?;
                if members.is_empty() {
                    break;
                }
                removed += self
                    .step(deadline, self.remove_members(&members))
                    .await
                    .map_err(|e| e.with_partial(removed))?;
                // Only now: a purge cut before this point finds the same
                // members again when it is run again.
                let mut forget = redis::cmd("ZREM");
                forget.arg(&key).arg(&members);
                self.step_cmd::<u64>(deadline, &forget)
                    .await
                    .map_err(|e| e.with_partial(removed))?;
            }
        }
        Ok(removed)
    }

    /// Soft purge of every live entry carrying any of `tags`; the tag sets
    /// stay, so a later hard purge still finds the entries.
    pub(super) async fn soft_purge_tags(
        &self,
        tags: &[String],
        rewrite: &Rewrite<'_>,
    ) -> Result<u64, StoreError> {
        let deadline = self.purge_deadline();
        let mut rewritten = 0;
        for tag in tags {
            let key = self.inner.keys.tag(tag);
            let now = now_ms() as f64;
            // ZSCAN returns every member present for the whole scan, however
            // the set changes meanwhile (puts prune it, purges pop it);
            // paging by rank would skip members.
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("ZSCAN");
                scan.arg(&key).arg(cursor).arg("COUNT").arg(SOFT_BATCH);
                let (next, page): (u64, Vec<(Vec<u8>, f64)>) = self
                    .step_cmd(deadline, &scan)
                    .await
                    .map_err(|e| e.with_partial(rewritten))?;
                // Scores are expiry times: expired members are left alone.
                let live: Vec<Vec<u8>> = page
                    .into_iter()
                    .filter(|(_, expires)| *expires >= now)
                    .map(|(m, _)| m)
                    .collect();
                if !live.is_empty() {
                    rewritten += self
                        .step(deadline, self.rewrite_members(&live, rewrite))
                        .await
                        .map_err(|e| e.with_partial(rewritten))?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(rewritten)
    }

    /// One page of the path index from `min` up to `max`: the members
    /// matching `pattern`, and where the next page starts, if there is one.
    async fn pattern_page(
        &self,
        deadline: Instant,
        pattern: &UrlPattern,
        min: &[u8],
        max: &[u8],
        size: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<Vec<u8>>), StoreError> {
        let mut range = redis::cmd("ZRANGEBYLEX");
        range
            .arg(self.inner.keys.paths())
            .arg(min)
            .arg(max)
            .arg("LIMIT")
            .arg(0)
            .arg(size);
        let page: Vec<Vec<u8>> = self.step_cmd(deadline, &range).await?;
        let next = match page.last() {
            Some(last) if page.len() == size => {
                let mut next = b"(".to_vec();
                next.extend_from_slice(last);
                Some(next)
            }
            _ => None,
        };
        let matching = page
            .into_iter()
            .filter(|m| member_path_query(m).is_some_and(|(p, q)| pattern.matches(p, q)))
            .collect();
        Ok((matching, next))
    }

    /// Runs `act` on the members matching `pattern`, a page of up to
    /// `size` at a time, until the purge deadline; the sum of what it
    /// counts (an error says how much that was when it stopped).
    async fn each_pattern_page<F, Fut>(
        &self,
        pattern: &UrlPattern,
        size: usize,
        mut act: F,
    ) -> Result<u64, StoreError>
    where
        F: FnMut(Instant, Vec<Vec<u8>>) -> Fut,
        Fut: Future<Output = Result<u64, StoreError>>,
    {
        let deadline = self.purge_deadline();
        let (mut min, max) = pattern_range(pattern);
        let mut counted = 0;
        loop {
            let (matching, next) = self
                .pattern_page(deadline, pattern, &min, &max, size)
                .await
                .map_err(|e| e.with_partial(counted))?;
            if !matching.is_empty() {
                counted += act(deadline, matching)
                    .await
                    .map_err(|e| e.with_partial(counted))?;
            }
            match next {
                // A hard purge takes members out of the index, a soft one
                // leaves them: the next page starts after the last member
                // seen either way.
                Some(n) => min = n,
                None => return Ok(counted),
            }
        }
    }

    /// Removes every entry whose path and query match `pattern`.
    pub(super) async fn purge_pattern(&self, pattern: &UrlPattern) -> Result<u64, StoreError> {
        self.each_pattern_page(pattern, BATCH, |deadline, members| async move {
            self.step(deadline, self.remove_members(&members)).await
        })
        .await
    }

    /// Soft purge of every entry whose path and query match `pattern`.
    pub(super) async fn soft_purge_pattern(
        &self,
        pattern: &UrlPattern,
        rewrite: &Rewrite<'_>,
    ) -> Result<u64, StoreError> {
        self.each_pattern_page(pattern, SOFT_BATCH, |deadline, members| async move {
            self.step(deadline, self.rewrite_members(&members, rewrite))
                .await
        })
        .await
    }
}
