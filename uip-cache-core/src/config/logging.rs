//! `logging`: level and format of log lines.

use serde::Deserialize;

use super::ConfigProblem;

/// Logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LoggingConfig {
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    pub level: String,
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

impl LoggingConfig {
    /// The section's own checks: `level` is one of the five.
    pub(super) fn check(&self, problems: &mut Vec<ConfigProblem>) {
        if !["error", "warn", "info", "debug", "trace"]
            .contains(&self.level.to_ascii_lowercase().as_str())
        {
            problems.push(ConfigProblem::new(
                None,
                "logging.level",
                format!(
                    "`{}` is not one of error, warn, info, debug, trace",
                    self.level
                ),
            ));
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
