//! Cron schedules of warming.

use croner::Cron;

/// Parses a 5-field (minute precision) or 6-field (with seconds) cron expression.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "`{expr}` is not a cron expression: expected 5 fields (minute hour day month weekday) or 6 with seconds first"
        ));
    }
    Cron::new(expr)
        .with_seconds_optional()
        .parse()
        .map_err(|e| format!("invalid cron expression `{expr}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_schedules_and_rejects_garbage() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("0 */5 * * * *").is_ok());
        assert!(parse_cron("every five minutes").is_err());
        assert!(parse_cron("61 * * * *").is_err());
    }
}
