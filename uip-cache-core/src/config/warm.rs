//! `warming`: the URLs fetched ahead of the first client.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::de::empty_as_none;
use super::{ConfigProblem, KeyConfig, Located, Seconds};

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

impl WarmingConfig {
    /// The section's own checks: URLs, the headers a warm request may set,
    /// `host` and `base_url`. Cron schedules are checked where they are
    /// parsed.
    pub(super) fn check(&self, problems: &mut Vec<ConfigProblem>) {
        if self.max_concurrent == 0 {
            problems.push(ConfigProblem::new(
                None,
                "warming.max_concurrent",
                "must be at least 1",
            ));
        }
        for (i, u) in self.urls.iter().enumerate() {
            let path = format!("warming.urls[{i}].url");
            let url = u.url.value.as_str();
            if !(url.starts_with('/') || url.starts_with("http://") || url.starts_with("https://"))
            {
                problems.push(ConfigProblem::new(
                    u.url.line,
                    path,
                    format!("`{url}` must be a path starting with `/` or an http(s) URL"),
                ));
            }
            for name in u.headers.keys() {
                let lower = name.to_ascii_lowercase();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                    || lower == "host"
                {
                    problems.push(ConfigProblem::new(
                        u.url.line,
                        format!("warming.urls[{i}].headers"),
                        format!("`{name}` is not a header a warm request may set (Host comes from `warming.host`)"),
                    ));
                }
            }
        }
        if let Some(h) = &self.host {
            let rest = h
                .strip_prefix("http://")
                .or_else(|| h.strip_prefix("https://"))
                .unwrap_or(h);
            if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
                problems.push(ConfigProblem::new(
                    None,
                    "warming.host",
                    format!("`{h}` must be `host[:port]`, optionally with `http://` or `https://` before it"),
                ));
            }
        }
        if let Some(b) = &self.base_url {
            if !b.starts_with("http://") {
                problems.push(ConfigProblem::new(
                    None,
                    "warming.base_url",
                    format!("`{b}` must be an http:// URL"),
                ));
            }
        }
    }

    /// What is allowed but probably not meant: relative URLs warmed for a
    /// host clients may not use, when keys hold the host.
    pub(super) fn warnings(&self, key: &KeyConfig, notes: &mut Vec<ConfigProblem>) {
        if self.enabled
            && !self.urls.is_empty()
            && key.include_host
            && self.host.is_none()
            && self.urls.iter().any(|u| u.url.value.starts_with('/'))
        {
            notes.push(ConfigProblem::new(
                None,
                "warming.host",
                "warm requests are made and keyed for the host of warming.base_url (the server: of its upstream); clients that send another Host will not hit the warmed entries: set warming.host to the host clients use, or key.include_host: false",
            ));
        }
    }
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
            .field("headers", &redacted(&self.headers))
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

/// Header pairs with credential values hidden, for Debug output.
pub(crate) fn redacted<'h>(
    headers: impl IntoIterator<Item = (&'h String, &'h String)>,
) -> Vec<(&'h str, &'h str)> {
    headers
        .into_iter()
        .map(|(n, v)| {
            let secret = ["authorization", "proxy-authorization", "cookie"]
                .iter()
                .any(|s| n.eq_ignore_ascii_case(s));
            (n.as_str(), if secret { "<redacted>" } else { v.as_str() })
        })
        .collect()
}
