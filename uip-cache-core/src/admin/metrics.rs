//! `GET /cache/metrics` (the seed's JSON) and `GET /metrics` (Prometheus
//! text exposition, encoded by `prometheus-client`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::json;

use super::{Admin, AdminResponse};
use crate::stats::{NoCacheReason, StatsSnapshot};
use crate::store::{HealthStatus, MemoryUsage, StoreHealth};

/// `1.5M`-style sizes, as the seed's `used_memory_human`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", UNITS[unit])
    }
}

/// What one scrape reads: the counters and the store's figures.
#[derive(Debug)]
struct Scrape {
    stats: StatsSnapshot,
    keys: Option<u64>,
    memory: Option<MemoryUsage>,
    health: StoreHealth,
}

impl Admin {
    pub(super) async fn metrics_json(&self) -> AdminResponse {
        let cache = &self.inner.cache;
        let stats = cache.stats().snapshot();
        let figures = self.figures().await;
        let keys = figures.keys;
        let memory = figures.memory.as_ref().map(|m| {
            json!({
                "used_memory_bytes": m.used_memory_bytes,
                "used_memory_human": human(m.used_memory_bytes),
                "max_memory_bytes": m.max_memory_bytes,
                "usage_ratio": m.usage_ratio(),
                "evictions": m.evictions,
                "expirations": m.expirations,
            })
        });
        let mut statistics = json!(stats);
        statistics["timestamp"] =
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        AdminResponse::json(
            200,
            &json!({"statistics": statistics, "memory": memory, "keys_count": keys}),
        )
    }

    pub(super) async fn prometheus(&self) -> AdminResponse {
        let cache = &self.inner.cache;
        let figures = self.figures().await;
        let scrape = Scrape {
            stats: cache.stats().snapshot(),
            keys: figures.keys,
            memory: figures.memory.clone(),
            health: figures.health.clone(),
        };
        AdminResponse {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            headers: Vec::new(),
            body: prometheus_text_of(scrape).into(),
        }
    }
}

/// The Prometheus text exposition of `admin`'s cache, as `GET /metrics`
/// serves it.
pub async fn prometheus_text(admin: &Admin) -> String {
    String::from_utf8_lossy(&admin.prometheus().await.body).into_owned()
}

fn prometheus_text_of(scrape: Scrape) -> String {
    let mut registry = Registry::with_prefix("uip_cache");
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn labelled_counters<'l>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'l str, &'l str)>, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn saturating(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &self.stats;
        let mut requests = Vec::new();
        for p in &s.policies {
            for (outcome, v) in [
                ("hit", p.hits),
                ("miss", p.misses),
                ("stale", p.stale),
                ("bypass", p.bypasses),
            ] {
                requests.push((vec![("policy", p.name.as_str()), ("outcome", outcome)], v));
            }
        }
        labelled_counters(
            &mut e,
            "requests",
            "Requests by policy and outcome (hit, miss, stale, bypass).",
            requests,
        )?;
        counter(
            &mut e,
            "hits_at_hand",
            "Hits the server answered from the request head alone, without its general request path (server.fast_hits); counted in the hits as well.",
            s.answered_at_hand,
        )?;
        counter(
            &mut e,
            "unmatched_bypasses",
            "Requests no policy matched.",
            s.uncacheable.get("no_policy").copied().unwrap_or(0),
        )?;
        labelled_counters(
            &mut e,
            "uncacheable",
            "Requests or responses not served from or stored in the cache, by reason.",
            NoCacheReason::ALL.iter().map(|r| {
                (
                    vec![("reason", r.as_str())],
                    s.uncacheable.get(r.as_str()).copied().unwrap_or(0),
                )
            }),
        )?;
        for (name, help, v) in [
            (
                "revalidations",
                "Stale entries revalidated with the origin.",
                s.revalidations,
            ),
            (
                "coalesced",
                "Requests that waited for another's origin fetch.",
                s.coalesced,
            ),
            ("sets", "Entries written.", s.sets),
            (
                "deletes",
                "Entries deleted (invalidations, unsafe methods, corrupt entries).",
                s.deletes,
            ),
            (
                "store_errors",
                "Store operations that failed or timed out (each served as a miss).",
                s.store_errors,
            ),
            (
                "corrupt_entries",
                "Undecodable entries found and deleted.",
                s.corrupt_entries,
            ),
            (
                "compressed_bytes",
                "Body bytes after compression.",
                s.compressed_bytes,
            ),
            (
                "uncompressed_bytes",
                "Body bytes before compression.",
                s.uncompressed_bytes,
            ),
            (
                "unknown_events",
                "Webhook events that no strategy or policy names.",
                s.unknown_events,
            ),
            ("warm_runs", "Warming runs started.", s.warm_runs),
            (
                "store_evictions",
                "Entries the store evicted for capacity (at the last monitor check).",
                s.store_evictions,
            ),
            (
                "store_expirations",
                "Entries the store expired (at the last monitor check).",
                s.store_expirations,
            ),
        ] {
            counter(&mut e, name, help, v)?;
        }
        labelled_counters(
            &mut e,
            "invalidations",
            "Invalidations run, by what started them.",
            s.invalidations
                .iter()
                .map(|(k, v)| (vec![("kind", *k)], *v)),
        )?;
        labelled_counters(
            &mut e,
            "config_reloads",
            "Config reloads, by result: ok (swapped in) or error (refused, nothing changed).",
            [
                (vec![("result", "ok")], s.config_reloads),
                (vec![("result", "error")], s.config_reload_errors),
            ],
        )?;
        labelled_counters(
            &mut e,
            "connections_refused",
            "Connections closed as soon as they were accepted, by reason: per_client_limit (server.max_connections_per_client) or listener_limit (the listener was full).",
            s.connections_refused
                .iter()
                .map(|(r, v)| (vec![("reason", *r)], *v)),
        )?;
        labelled_counters(
            &mut e,
            "warm_urls",
            "URLs warmed, by outcome.",
            [
                (vec![("outcome", "success")], s.warm_success),
                (vec![("outcome", "failed")], s.warm_failed),
                (vec![("outcome", "skipped")], s.warm_skipped),
            ],
        )?;
        let h = &s.store_latency;
        let mut m = e.encode_descriptor(
            "store_operation_duration_seconds",
            "Time of store operations.",
            None,
            MetricType::Histogram,
        )?;
        // The encoder sums the buckets itself: hand it each bucket's own
        // count, the overflow bucket last.
        let mut below = 0;
        let mut per_bucket: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .map(|&(le, cumulative)| {
                let own = cumulative.saturating_sub(below);
                below = cumulative;
                (le, own)
            })
            .collect();
        per_bucket.push((f64::INFINITY, h.count.saturating_sub(below)));
        m.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &per_bucket, None)?;
        let state = match self.health.status {
            HealthStatus::Connected => 0,
            HealthStatus::Degraded => 1,
            _ => 2,
        };
        gauge(
            &mut e,
            "store_state",
            "Store and circuit breaker state: 0 connected (closed), 1 degraded (half open), 2 down (open: requests bypass the store).",
            state,
        )?;
        if let Some(k) = self.keys {
            gauge(&mut e, "entries", "Entries in the store.", saturating(k))?;
        }
        if let Some(m) = &self.memory {
            gauge(
                &mut e,
                "store_used_bytes",
                "Bytes the store uses.",
                saturating(m.used_memory_bytes),
            )?;
            if let Some(max) = m.max_memory_bytes {
                gauge(
                    &mut e,
                    "store_max_bytes",
                    "The store's capacity in bytes.",
                    saturating(max),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(100 * 1024 * 1024), "100.00M");
    }
}
