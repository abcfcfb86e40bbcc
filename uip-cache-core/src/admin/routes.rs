//! The routes of the admin API.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::{Access, Admin, AdminBody, AdminRequest, AdminResponse};
use crate::pattern::UrlPattern;
use crate::stats::InvalidationKind;
use crate::store::HealthStatus;

/// What a route does, once found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Health,
    Metrics,
    Prometheus,
    Webhook,
    Tag,
    Url,
    Warm,
    Reload,
}

impl Route {
    fn method(self) -> &'static str {
        match self {
            Route::Health | Route::Metrics | Route::Prometheus => "GET",
            _ => "POST",
        }
    }
}

/// The webhook body (extra fields are ignored: senders add their own).
#[derive(Deserialize)]
struct WebhookBody {
    event: String,
    #[serde(default)]
    entity_id: Option<String>,
    #[serde(default)]
    entity_type: Option<String>,
    #[serde(default)]
    soft: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    soft: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UrlBody {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    soft: bool,
}

/// Parses a JSON body; a 400 naming the field otherwise.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AdminResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AdminResponse::error(400, "the body must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if path == "." || path.is_empty() {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid JSON body: field `{path}`: {inner}")
        };
        AdminResponse::error(400, msg)
    })?;
    de.end()
        .map_err(|e| AdminResponse::error(400, format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// The longest tag or URL accepted (the stores index tags of at most this).
const MAX_NAME: usize = 2048;

impl Admin {
    /// The paths this API answers (the webhook's configured endpoint too),
    /// for front-ends that register routes one by one.
    pub fn paths(&self) -> Vec<&str> {
        let mut paths = vec![
            "/health",
            "/cache/metrics",
            "/metrics",
            "/cache/invalidate",
            "/cache/invalidate/tag",
            "/cache/invalidate/url",
            "/cache/warm",
        ];
        if !paths.contains(&self.inner.webhook_path.as_str()) {
            paths.push(&self.inner.webhook_path);
        }
        if self.can_reload() {
            paths.push("/config/reload");
        }
        paths
    }

    fn route(&self, path: &str) -> Option<Route> {
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        Some(match path {
            "/health" => Route::Health,
            "/cache/metrics" => Route::Metrics,
            "/metrics" => Route::Prometheus,
            "/cache/invalidate/tag" => Route::Tag,
            "/cache/invalidate/url" => Route::Url,
            "/cache/warm" => Route::Warm,
            "/config/reload" if self.can_reload() => Route::Reload,
            p if p == "/cache/invalidate" || p == self.inner.webhook_path => Route::Webhook,
            _ => return None,
        })
    }

    /// Answers one admin request.
    pub async fn handle(&self, req: AdminRequest<'_>) -> AdminResponse {
        let Some(route) = self.route(req.path) else {
            return AdminResponse::error(404, format!("no admin route {}", req.path));
        };
        let method = req.method.to_ascii_uppercase();
        let allowed = route.method();
        if method != allowed && !(allowed == "GET" && method == "HEAD") {
            return AdminResponse::error(405, format!("{} takes {allowed}", req.path))
                .header("allow", allowed);
        }
        if allowed == "GET" {
            return match route {
                Route::Health => self.health().await,
                Route::Metrics => self.metrics_json().await,
                _ => self.prometheus().await,
            };
        }
        match self.access(req.headers, req.peer.as_deref(), route == Route::Webhook) {
            Access::Granted => {}
            Access::WrongSecret => {
                if let Some(left_out) = self.may_log_refusal() {
                    tracing::warn!(target: "uip_cache::admin", peer = req.peer.as_deref().unwrap_or("-"), path = req.path, left_out, "admin request refused: missing or wrong secret");
                }
                return AdminResponse::error(
                    401,
                    "missing or wrong secret (send X-Webhook-Secret or Authorization: Bearer)",
                )
                .header("www-authenticate", "Bearer");
            }
            Access::NoSecretRemote => {
                if let Some(left_out) = self.may_log_refusal() {
                    tracing::warn!(target: "uip_cache::admin", peer = req.peer.as_deref().unwrap_or("-"), path = req.path, left_out, "admin request refused: no secret is configured and the client is not on this host");
                }
                return AdminResponse::error(
                    403,
                    "no admin secret is configured: POST routes are open to clients on this host only (set admin.secret)",
                );
            }
        }
        let body = match &req.body {
            AdminBody::Complete(b) => b.clone(),
            AdminBody::TooLarge => {
                return AdminResponse::error(
                    413,
                    format!("the body is larger than {} bytes", super::MAX_BODY),
                )
            }
        };
        let peer = req.peer.as_deref().unwrap_or("-");
        let result = match route {
            Route::Webhook => self.webhook(&body, peer).await,
            Route::Tag => self.tag(&body, peer).await,
            Route::Url => self.url(&body, peer).await,
            Route::Reload => Ok(self.reload("POST /config/reload").await),
            _ => Ok(self.warm().await),
        };
        self.forget_figures();
        result.unwrap_or_else(|r| r)
    }

    async fn webhook(&self, body: &[u8], peer: &str) -> Result<AdminResponse, AdminResponse> {
        let b: WebhookBody = parse(body)?;
        if b.event.is_empty() {
            return Err(AdminResponse::error(400, "field `event` must not be empty"));
        }
        let cache = &self.inner.cache;
        let plan = cache
            .settings()
            .plan_for_event(&b.event, b.entity_id.as_deref(), b.entity_type.as_deref())
            .map_err(|e| AdminResponse::error(400, e))?;
        let patterns: Vec<&str> = plan.patterns.iter().map(UrlPattern::as_str).collect();
        if plan.is_empty() {
            cache.stats().unknown_event();
            tracing::info!(target: "uip_cache::admin", peer, event = %b.event, "webhook event nobody configured: nothing invalidated");
            return Ok(AdminResponse::json(
                200,
                &json!({"deleted": 0, "matched": false, "event": b.event, "patterns": [], "tags": []}),
            ));
        }
        cache.stats().invalidation(InvalidationKind::Event);
        let mut deleted = 0;
        let mut soft = b.soft;
        let mut failure = None;
        if !plan.tags.is_empty() {
            match purge_tags(cache, &plan.tags, b.soft).await {
                Ok((n, s)) => (deleted, soft) = (deleted + n, soft && s),
                Err(e) => {
                    deleted += e.partial().unwrap_or(0);
                    failure = Some(e);
                }
            }
        }
        for p in &plan.patterns {
            match purge_pattern(cache, p, b.soft).await {
                Ok((n, s)) => (deleted, soft) = (deleted + n, soft && s),
                Err(e) => {
                    deleted += e.partial().unwrap_or(0);
                    failure = Some(e);
                }
            }
        }
        tracing::info!(target: "uip_cache::admin", peer, event = %b.event, entity_id = b.entity_id.as_deref().unwrap_or(""), patterns = ?patterns, tags = ?plan.tags, deleted, "webhook invalidation");
        let mut body = json!({
            "deleted": deleted,
            "matched": true,
            "event": b.event,
            "patterns": patterns,
            "tags": plan.tags,
        });
        if b.soft {
            body["soft"] = json!(soft);
        }
        Ok(match failure {
            None => AdminResponse::json(200, &body),
            Some(e) => store_failed(&e, deleted, body),
        })
    }

    async fn tag(&self, body: &[u8], peer: &str) -> Result<AdminResponse, AdminResponse> {
        let b: TagBody = parse(body)?;
        let mut tags: Vec<String> = b
            .tag
            .into_iter()
            .chain(b.tags.unwrap_or_default())
            .collect();
        if tags.is_empty() {
            return Err(AdminResponse::error(
                400,
                "field `tag` (a string) or `tags` (a list of strings) is required",
            ));
        }
        if let Some(bad) = tags.iter().find(|t| t.is_empty() || t.len() > MAX_NAME) {
            return Err(AdminResponse::error(
                400,
                format!(
                    "field `tags`: a tag must have 1 to {MAX_NAME} bytes, not {}",
                    bad.len()
                ),
            ));
        }
        tags.sort();
        tags.dedup();
        let cache = &self.inner.cache;
        cache.stats().invalidation(InvalidationKind::Tag);
        let result = purge_tags(cache, &tags, b.soft).await;
        let deleted = done(&result);
        tracing::info!(target: "uip_cache::admin", peer, tags = ?tags, deleted, soft = b.soft, "tag invalidation");
        Ok(match result {
            Ok((n, soft)) => {
                let mut body = json!({"deleted": n, "tags": tags});
                if b.soft {
                    body["soft"] = json!(soft);
                }
                AdminResponse::json(200, &body)
            }
            Err(e) => store_failed(&e, deleted, json!({"tags": tags})),
        })
    }

    async fn url(&self, body: &[u8], peer: &str) -> Result<AdminResponse, AdminResponse> {
        let b: UrlBody = parse(body)?;
        let (kind, pattern) = match (b.url, b.pattern) {
            (Some(url), None) => (InvalidationKind::Url, UrlPattern::exact(&path_of(&url)?)),
            (None, Some(p)) => {
                if !p.starts_with('/') || p.len() > MAX_NAME {
                    return Err(AdminResponse::error(
                        400,
                        format!("field `pattern`: `{p}` must be a path starting with `/` of at most {MAX_NAME} bytes"),
                    ));
                }
                let pattern = UrlPattern::glob(&p)
                    .map_err(|e| AdminResponse::error(400, format!("field `pattern`: {e}")))?;
                (InvalidationKind::Pattern, pattern)
            }
            _ => {
                return Err(AdminResponse::error(
                    400,
                    "exactly one of the fields `url` and `pattern` is required",
                ))
            }
        };
        let cache = &self.inner.cache;
        cache.stats().invalidation(kind);
        let result = purge_pattern(cache, &pattern, b.soft).await;
        let deleted = done(&result);
        tracing::info!(target: "uip_cache::admin", peer, kind = kind.as_str(), pattern = pattern.as_str(), deleted, soft = b.soft, "URL invalidation");
        let field = if kind == InvalidationKind::Url {
            "url"
        } else {
            "pattern"
        };
        Ok(match result {
            Ok((n, soft)) => {
                let mut body = json!({"deleted": n, field: pattern.as_str()});
                if b.soft {
                    body["soft"] = json!(soft);
                }
                AdminResponse::json(200, &body)
            }
            Err(e) => store_failed(&e, deleted, json!({field: pattern.as_str()})),
        })
    }

    async fn warm(&self) -> AdminResponse {
        let Some(warmer) = &self.inner.warmer else {
            return AdminResponse::error(
                503,
                "warming has no fetcher here (build the admin API with one, or set warming.base_url)",
            );
        };
        // In a task of its own: a client that hangs up does not cut the
        // run short.
        let warmer = warmer.clone();
        match tokio::spawn(async move { warmer.try_run().await }).await {
            Ok(Some(report)) => AdminResponse::json(200, &json!(report)),
            Ok(None) => AdminResponse::error(409, "a warming run is in progress"),
            Err(e) => AdminResponse::error(500, format!("the warming run failed: {e}")),
        }
    }

    async fn health(&self) -> AdminResponse {
        let cache = &self.inner.cache;
        let figures = self.figures().await;
        let store = &figures.health;
        let config = cache.config();
        let warming = &config.warming;
        let last = self.inner.warmer.as_ref().and_then(|w| w.last_report());
        let warmer_status = match (&self.inner.warmer, warming.enabled) {
            (None, _) => "no_fetcher",
            (Some(_), false) => "disabled",
            (Some(_), true) => match &last {
                Some(r) if r.failed > 0 && r.failed == r.total => "failing",
                _ => "enabled",
            },
        };
        let webhook = config.invalidation.webhook();
        let status = match store.status {
            HealthStatus::Down => "unhealthy",
            HealthStatus::Degraded => "degraded",
            _ if warmer_status == "failing" => "degraded",
            _ => "healthy",
        };
        // Counts only: the failures (URLs, upstream errors) are in the
        // authenticated answer of POST /cache/warm and in the log.
        let last_run = last.map(|r| {
            json!({"total": r.total, "success": r.success, "failed": r.failed, "skipped": r.skipped, "duration_ms": r.duration_ms})
        });
        let body = json!({
            "status": status,
            "components": {
                "store": {
                    "status": store.status,
                    "backend": store.backend,
                    "detail": store.detail,
                    "keys_count": figures.keys,
                },
                "warmer": {
                    "status": warmer_status,
                    "urls": warming.urls.len(),
                    "last_run": last_run,
                },
                "invalidator": {
                    "status": "enabled",
                    "webhook": webhook.is_some(),
                    "webhook_endpoint": self.inner.webhook_path,
                    "events": webhook.map(|w| w.events.iter().map(|e| e.event.value.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                },
            },
        });
        AdminResponse::json(if status == "unhealthy" { 503 } else { 200 }, &body)
    }
}

/// Purges by tags, softly when asked (and the store can): how many, and
/// whether it was soft.
async fn purge_tags(
    cache: &crate::HttpCache,
    tags: &[String],
    soft: bool,
) -> Result<(u64, bool), crate::store::StoreError> {
    if soft {
        cache.soft_invalidate_tags(tags).await
    } else {
        cache.invalidate_tags(tags).await.map(|n| (n, false))
    }
}

/// Purges by URL pattern, softly when asked (and the store can).
async fn purge_pattern(
    cache: &crate::HttpCache,
    pattern: &UrlPattern,
    soft: bool,
) -> Result<(u64, bool), crate::store::StoreError> {
    if soft {
        cache.soft_invalidate_pattern(pattern).await
    } else {
        cache.invalidate_pattern(pattern).await.map(|n| (n, false))
    }
}

/// A path and query from `/path?query` or an absolute http(s) URL.
fn path_of(url: &str) -> Result<String, AdminResponse> {
    let bad = || {
        AdminResponse::error(
            400,
            format!("field `url`: `{url}` must be `/path?query` or an http(s) URL"),
        )
    };
    if url.len() > MAX_NAME {
        return Err(bad());
    }
    if url.starts_with('/') {
        return Ok(url.to_owned());
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => Ok(rest[i..].to_owned()),
        Some(i) => Ok(format!("/{}", &rest[i..])),
        None => Ok("/".to_owned()),
    }
}

/// How many entries a purge removed, one that failed part-way included.
fn done(result: &Result<(u64, bool), crate::store::StoreError>) -> u64 {
    match result {
        Ok((n, _)) => *n,
        Err(e) => e.partial().unwrap_or(0),
    }
}

/// A store failure during an invalidation: 503, so webhook senders retry.
/// The body is `what` (the request's fields) with the error, the entries
/// removed before it (`deleted`) and `"complete": false`: running the
/// same invalidation again finishes the work.
fn store_failed(
    e: &crate::store::StoreError,
    deleted: u64,
    mut what: serde_json::Value,
) -> AdminResponse {
    tracing::warn!(target: "uip_cache::admin", error = %e, deleted, "invalidation failed in the store");
    what["error"] = json!(format!(
        "the store failed: {e}; {deleted} entries were removed before it did: send the request again"
    ));
    what["deleted"] = json!(deleted);
    what["complete"] = json!(false);
    AdminResponse::json(503, &what)
}
