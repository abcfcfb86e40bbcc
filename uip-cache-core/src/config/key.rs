//! `key`: how cache keys are built.

use serde::Deserialize;

/// How cache keys are built.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct KeyConfig {
    /// Prefix of every key (default `cache:`).
    pub prefix: String,
    /// Whether scheme and host are part of the key (default true).
    pub include_host: bool,
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            prefix: "cache:".into(),
            include_host: true,
        }
    }
}
