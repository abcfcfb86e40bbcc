//! `admin`: the admin API.

use std::fmt;

use serde::Deserialize;

use super::de::empty_as_none;
use super::server::check_listen;
use super::ConfigProblem;

/// The admin API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Whether the server exposes it (default true).
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:9092`).
    pub listen: String,
    /// Secret required by mutating routes (`X-Webhook-Secret`). The webhook
    /// strategy's secret opens the webhook route alone; without this one
    /// the other mutating routes are open to this host only.
    #[serde(deserialize_with = "empty_as_none")]
    pub secret: Option<String>,
}

impl AdminConfig {
    /// The section's own checks: `listen` is an address.
    pub(super) fn check(&self, problems: &mut Vec<ConfigProblem>) {
        check_listen("admin.listen", &self.listen, "127.0.0.1:9092", problems);
    }

    /// What is allowed but probably not meant: POST routes without a
    /// secret (`secret`, the effective one) on an address other hosts
    /// reach.
    pub(super) fn warnings(&self, secret: Option<&str>, notes: &mut Vec<ConfigProblem>) {
        if self.enabled && secret.is_none() {
            let loopback = self
                .listen
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback());
            if !loopback {
                notes.push(ConfigProblem::new(
                    None,
                    "admin.secret",
                    format!("the admin API listens on {} without a secret: its POST routes refuse every client not on this host (set admin.secret)", self.listen),
                ));
            }
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: "127.0.0.1:9092".into(),
            secret: None,
        }
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}
