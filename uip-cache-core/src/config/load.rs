//! Reading a config's text: `${VAR}` expansion, then the YAML into the
//! sections. Only the YAML's own shape is checked here (types, units,
//! unknown fields); a problem names the file, line and field path.

use super::env::{self, Expanded};
use super::{CacheConfig, ConfigError, ConfigProblem};

/// `text` (of the file `name`) with `${VAR}` / `${VAR:-default}` expanded
/// through `lookup`, and the variables that were unset; an unterminated
/// `${` is an error naming its line.
pub(crate) fn expand_env(
    text: &str,
    name: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, ConfigError> {
    env::expand(text, lookup).map_err(|(line, msg)| {
        ConfigError::single(name, ConfigProblem::new(Some(line as u64), "", msg))
    })
}

/// The expanded text of the file `name` read into the sections; an empty
/// text is the default config.
pub(crate) fn read_yaml(text: &str, name: &str) -> Result<CacheConfig, ConfigError> {
    let mut config = if text.trim().is_empty() {
        CacheConfig::default()
    } else {
        deserialize(text, name)?
    };
    config.source_name = name.to_owned();
    Ok(config)
}

fn deserialize(text: &str, name: &str) -> Result<CacheConfig, ConfigError> {
    let mut path = None;
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let location = e.location();
        let mut problem = ConfigProblem::new(
            location.map(|l| l.line()).filter(|&l| l > 0),
            path.filter(|p| p != ".").unwrap_or_default(),
            clean_message(&e.to_string()),
        );
        problem.column = location.map(|l| l.column()).filter(|&c| c > 0);
        ConfigError::single(name, problem)
    })
}

/// The YAML error's text without the location it repeats (we print our own).
fn clean_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret put at the wrong indentation (`admin: ${ADMIN_SECRET}`) is
    /// not echoed: the message goes to logs and to a reload's answer. (Units
    /// quote what they could not read, which helps more than it risks.)
    #[test]
    fn a_string_of_the_wrong_type_is_not_quoted() {
        for config in [
            "admin: \"s3cr3t-value\"\n",
            "admin:\n  enabled: s3cr3t-value\n",
            "redis:\n  port: s3cr3t-value\n",
            "policies: s3cr3t-value\n",
        ] {
            let err = read_yaml(config, "c.yaml").unwrap_err().to_string();
            assert!(!err.contains("s3cr3t-value"), "{err}");
        }
    }
}
