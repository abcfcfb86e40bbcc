//! A strict reader of the Prometheus text exposition format (version 0.0.4),
//! for tests of `GET /metrics`.

use std::collections::BTreeMap;

/// One metric family: its type and samples (`name{labels}` -> value).
#[derive(Debug, Default)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, ...
    pub kind: String,
    /// Whether a `# HELP` line came with it.
    pub help: bool,
    /// Samples of the family, by full sample name with labels.
    pub samples: BTreeMap<String, f64>,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Splits `name{a="b",c="d"} 1.5` into the series (name with labels), the
/// bare name and the value, checking label syntax.
fn sample(line: &str) -> Result<(String, String, f64), String> {
    let (series, value) = match line.find('}') {
        Some(i) => (&line[..=i], line[i + 1..].trim()),
        None => line
            .split_once(' ')
            .ok_or_else(|| format!("no value in `{line}`"))?,
    };
    let name = series.split('{').next().unwrap_or("");
    if !valid_name(name) {
        return Err(format!("bad metric name in `{line}`"));
    }
    if let Some(labels) = series.strip_prefix(name) {
        if !labels.is_empty() {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .ok_or_else(|| format!("bad labels in `{line}`"))?;
            let mut rest = inner;
            while !rest.is_empty() {
                let (k, after) = rest
                    .split_once("=\"")
                    .ok_or_else(|| format!("bad label in `{line}`"))?;
                if !valid_name(k) {
                    return Err(format!("bad label name `{k}` in `{line}`"));
                }
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.ok_or_else(|| format!("unterminated label in `{line}`"))?;
                rest = after[end + 1..]
                    .strip_prefix(',')
                    .unwrap_or(&after[end + 1..]);
            }
        }
    }
    let value = value.split(' ').next().unwrap_or("");
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse::<f64>()
            .map_err(|_| format!("bad value `{v}` in `{line}`"))?,
    };
    Ok((series.to_owned(), name.to_owned(), v))
}

/// Reads an exposition: every family has `# TYPE` before its samples, every
/// sample line parses and belongs to a declared family (histogram samples
/// as `_bucket`, `_sum`, `_count`; counters may end in `_total`).
pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            families.entry(name.to_owned()).or_default().help = true;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| format!("bad TYPE line `{line}`"))?;
            if ![
                "counter",
                "gauge",
                "histogram",
                "summary",
                "untyped",
                "info",
                "unknown",
            ]
            .contains(&kind)
            {
                return Err(format!("unknown type in `{line}`"));
            }
            families.entry(name.to_owned()).or_default().kind = kind.to_owned();
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, name, v) = sample(line)?;
            let family = ["_bucket", "_sum", "_count", "_total", ""]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .find(|f| families.get(*f).is_some_and(|fam| !fam.kind.is_empty()))
                .ok_or_else(|| format!("sample `{line}` has no TYPE before it"))?
                .to_owned();
            families
                .get_mut(&family)
                .expect("found")
                .samples
                .insert(series, v);
        }
    }
    Ok(families)
}
