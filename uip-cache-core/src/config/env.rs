//! `${VAR}` / `${VAR:-default}` expansion of the config text.
//!
//! Expansion runs on the text before YAML parsing, as the seed system did, so an
//! unquoted `port: ${REDIS_PORT:-6379}` stays a number and a quoted
//! `host: "${REDIS_HOST:-redis}"` stays a string. Line numbers are preserved as
//! long as values hold no newlines, so errors still point at the right line.
//!
//! This is a dozen lines of scanning; an interpolation crate would bring a
//! different syntax (`$VAR`, nested forms) that seed configs do not use.

/// Expands `${VAR}` and `${VAR:-default}` in `text` using `lookup`.
///
/// `$${` is an escape for a literal `${`. An unset variable without a default
/// expands to the empty string (as docker compose does) and is reported back so
/// the caller can warn. An unterminated `${` is an error naming its line.
pub(crate) fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        // Whole-line comments are left alone: they often show `${VAR}` as an example.
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        expand_line(line, &lookup, &mut out, &mut unset).map_err(|msg| (i + 1, msg))?;
    }
    Ok(Expanded { text: out, unset })
}

fn expand_line(
    line: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    out: &mut String,
    unset: &mut Vec<String>,
) -> Result<(), String> {
    let mut rest = line;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated `${` in environment variable reference (the `}` must be on the same line)".into());
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "invalid environment variable name `{name}` in `${{{inner}}}`"
            ));
        }
        match (lookup(name), default) {
            // `:-` means "unset or empty", as in the shell.
            (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => unset.push(name.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// The expanded text and the variables that were unset.
#[derive(Debug)]
pub(crate) struct Expanded {
    pub(crate) text: String,
    pub(crate) unset: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("redis.internal".into()),
            "PORT" => Some("6380".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_unset_and_defaults() {
        let e = expand("host: \"${HOST:-redis}\"\nport: ${PORT:-6379}\ndb: ${DB:-3}\npw: \"${EMPTY:-x}\"\nq: \"${NOPE}\"", env).unwrap();
        assert_eq!(
            e.text,
            "host: \"redis.internal\"\nport: 6380\ndb: 3\npw: \"x\"\nq: \"\""
        );
        assert_eq!(e.unset, vec!["NOPE".to_string()]);
    }

    #[test]
    fn escape_and_errors() {
        assert_eq!(expand("a: $${HOST}", env).unwrap().text, "a: ${HOST}");
        let err = expand("a: 1\nb: ${HOST", env).unwrap_err();
        assert_eq!(err.0, 2);
        assert!(expand("a: ${BAD-NAME}", env).is_err());
        // Whole-line comments are not expanded; the brace must close on its line.
        assert_eq!(
            expand("# ${HOST\na: ${HOST}\n", env).unwrap().text,
            "# ${HOST\na: redis.internal\n"
        );
        assert_eq!(expand("a: ${HOST\n}", env).unwrap_err().0, 1);
    }
}
