//! `POST /config/reload`: reading the config again without a restart.
//!
//! Core does not know where a config comes from or what a server runs
//! besides the cache (listeners, routes, certificates): the front-end that
//! does gives the admin API a [`Reload`] ([`Admin::reload_with`]). The
//! admin API checks the secret, runs it, counts the outcome
//! (`uip_cache_config_reloads_total{result="ok|error"}`), writes one log
//! line, and on success restarts the background tasks (warming schedules,
//! the time-based monitor) from the new settings.

use std::fmt;
use std::sync::Arc;

use serde_json::json;

use super::{Admin, AdminResponse};

/// What a successful reload swapped in, for the answer and the log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Policies the new config has.
    pub policies: usize,
    /// Routes the new config has.
    pub routes: usize,
    /// What changed, one short phrase each (`policy added: items`,
    /// `routes`, `certificates`, ...), in a stable order.
    pub changed: Vec<String>,
    /// What changed in the file but needs a restart to apply (listener
    /// addresses, the store type, ...): the running values stay.
    pub needs_restart: Vec<String>,
}

impl ReloadReport {
    /// A report of a config with `policies` policies and `routes` routes.
    pub fn new(policies: usize, routes: usize) -> Self {
        ReloadReport {
            policies,
            routes,
            ..ReloadReport::default()
        }
    }

    /// With `changed`.
    #[must_use]
    pub fn changed(mut self, changed: Vec<String>) -> Self {
        self.changed = changed;
        self
    }

    /// With `needs_restart`.
    #[must_use]
    pub fn needs_restart(mut self, needs_restart: Vec<String>) -> Self {
        self.needs_restart = needs_restart;
        self
    }
}

/// Reads the config again, validates all of it, and swaps it in at once
/// (the cache's settings with [`HttpCache::replace_settings`], and
/// whatever else the front-end runs on), or changes nothing.
///
/// [`HttpCache::replace_settings`]: crate::HttpCache::replace_settings
pub trait Reload: fmt::Debug + Send + Sync + 'static {
    /// Reloads. `Err` holds every problem found, one line each, as
    /// `file:line:col: field: message` where the place is known; then
    /// nothing has changed.
    fn reload(&self) -> Result<ReloadReport, Vec<String>>;
}

impl Admin {
    /// Answers `POST /config/reload` with `reload` from now on (without
    /// one, the route is not there: 404). The first call wins.
    pub fn reload_with(&self, reload: Arc<dyn Reload>) {
        let _ = self.inner.reload.set(reload);
    }

    /// Whether `POST /config/reload` is answered.
    pub fn can_reload(&self) -> bool {
        self.inner.reload.get().is_some()
    }

    /// Reloads the config now (`trigger` says why, for the log: `SIGHUP`,
    /// `POST /config/reload`), counts and logs the outcome, and answers as
    /// the route does: 200 with what changed, 400 with every error, 404
    /// when there is no [`Reload`]. Nothing checks a secret here: the
    /// route does before calling it.
    pub async fn reload(&self, trigger: &str) -> AdminResponse {
        let Some(reload) = self.inner.reload.get().cloned() else {
            return AdminResponse::error(
                404,
                "no admin route /config/reload: this front-end has no config file to read again",
            );
        };
        // Files are read and certificates parsed: off the request threads.
        let outcome = match tokio::runtime::Handle::try_current() {
            Ok(rt) => match rt.spawn_blocking(move || reload.reload()).await {
                Ok(outcome) => outcome,
                Err(e) => Err(vec![format!("the reload failed: {e}")]),
            },
            Err(_) => reload.reload(),
        };
        let stats = self.inner.cache.stats();
        match outcome {
            Ok(report) => {
                stats.config_reload(true);
                self.restart_schedules();
                self.forget_figures();
                // One line a reload; a warning when part of the file
                // waits for a restart.
                if report.needs_restart.is_empty() {
                    tracing::info!(
                        target: "uip_cache::config",
                        trigger,
                        policies = report.policies,
                        routes = report.routes,
                        changed = ?report.changed,
                        "config reloaded"
                    );
                } else {
                    tracing::warn!(
                        target: "uip_cache::config",
                        trigger,
                        policies = report.policies,
                        routes = report.routes,
                        changed = ?report.changed,
                        needs_restart = ?report.needs_restart,
                        "config reloaded; what needs_restart lists needs a restart to apply (the running values stay)"
                    );
                }
                AdminResponse::json(
                    200,
                    &json!({
                        "reloaded": true,
                        "policies": report.policies,
                        "routes": report.routes,
                        "changed": report.changed,
                        "needs_restart": report.needs_restart,
                    }),
                )
            }
            Err(errors) => {
                stats.config_reload(false);
                tracing::error!(
                    target: "uip_cache::config",
                    trigger,
                    errors = ?errors,
                    "config not reloaded: the file has errors; nothing changed"
                );
                AdminResponse::json(400, &json!({"reloaded": false, "errors": errors}))
            }
        }
    }
}
