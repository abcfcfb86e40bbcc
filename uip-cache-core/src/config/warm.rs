//! `warming`: the URLs fetched ahead of the first client.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::de::empty_as_none;
use super::{Located, Seconds};

/// Cache warming.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WarmingConfig {
    /// Whether warming runs at all (default false).
    pub enabled: bool,
    /// Warm once at start-up (default true).
    pub on_startup: bool,
    /// Period between warming runs for URLs without a schedule (default 300s).
    pub interval: Seconds,
    /// URLs fetched at once (default 5).
    pub max_concurrent: usize,
    /// The URLs to warm, by priority.
    pub urls: Vec<WarmUrlConfig>,
    /// Timeout of one fetch (default 10s).
    pub timeout: Seconds,
    /// Retries of a failed fetch (default 2).
    pub retries: u32,
    /// Base URL for relative warm URLs (the server uses its upstream when unset).
    pub base_url: Option<String>,
    /// The host (`host[:port]`, or `https://host[:port]` to key as https)
    /// a warm request is made and keyed for, as a client request to that
    /// host would be; default: the host of `base_url`.
    #[serde(deserialize_with = "empty_as_none")]
    pub host: Option<String>,
}

impl Default for WarmingConfig {
    fn default() -> Self {
        WarmingConfig {
            enabled: false,
            on_startup: true,
            interval: Seconds(Duration::from_secs(300)),
            max_concurrent: 5,
            urls: Vec::new(),
            timeout: Seconds(Duration::from_secs(10)),
            retries: 2,
            base_url: None,
            host: None,
        }
    }
}

/// One URL to warm.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WarmUrlConfig {
    /// Path and query (`/ngsi-ld/v1/entities?type=Camera`) or an absolute URL.
    pub url: Located<String>,
    /// `high`, `medium` (default) or `low`.
    #[serde(default)]
    pub priority: WarmPriority,
    /// A cron expression; without it the URL is warmed every `interval`.
    #[serde(default)]
    pub schedule: Option<Located<String>>,
    /// Request headers of the warm request (name -> value), keyed as a
    /// client's would be (`Accept`, say); none but `Host` by default.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

impl fmt::Debug for WarmUrlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmUrlConfig")
            .field("url", &self.url)
            .field("priority", &self.priority)
            .field("schedule", &self.schedule)
            .field("headers", &crate::warm::redacted(&self.headers))
            .finish()
    }
}

/// Warming priority: higher priorities are fetched first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WarmPriority {
    /// First.
    High,
    /// Second (the default).
    #[default]
    Medium,
    /// Last.
    Low,
}
