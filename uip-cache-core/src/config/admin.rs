//! `admin`: the admin API.

use std::fmt;

use serde::Deserialize;

use super::de::empty_as_none;

/// The admin API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Whether the server exposes it (default true).
    pub enabled: bool,
    /// Listen address (default `127.0.0.1:9092`).
    pub listen: String,
    /// Secret required by mutating routes (`X-Webhook-Secret`); the webhook
    /// strategy's secret is used when this is unset.
    #[serde(deserialize_with = "empty_as_none")]
    pub secret: Option<String>,
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
