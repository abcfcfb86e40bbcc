//! Sizes ("5MB") and durations (`30`, "30s", "5m", "250ms") as config values.
//!
//! Both parsers are a few lines; they accept exactly the forms the seed configs
//! and our example use, with errors that say which forms are accepted.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// The longest duration a config may give: 2^31 seconds, about 68 years.
/// It is RFC 9111's largest delta-seconds, to which the cache clamps every
/// age and lifetime; config keeps its own copy so that it depends on no
/// other module (a test checks that the two agree).
pub(crate) const MAX_SECONDS: u64 = 1 << 31;

/// A size in bytes, written as a number of bytes or with a unit: `512`, `"64KB"`,
/// `"5MB"`, `"1GB"` (KB, MB and GB are multiples of 1024, as in nginx; `KiB`,
/// `MiB`, `GiB` mean the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses a size such as `"5MB"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid size `{text}`: expected a number of bytes or a number with B, KB, MB or GB"))?;
        let mult = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "invalid size unit `{other}` in `{text}`: use B, KB, MB or GB"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{text}` is too large"))
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 1048576 or \"5MB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration, written as whole seconds (`60`) or with a unit: `"250ms"`, `"30s"`,
/// `"5m"`, `"2h"`, `"1d"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seconds(pub Duration);

impl Seconds {
    /// Parses a duration such as `"30s"` or `"250ms"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid duration `{text}`: expected seconds or a number with ms, s, m, h or d")
        })?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "" | "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            other => {
                return Err(format!(
                    "invalid duration unit `{other}` in `{text}`: use ms, s, m, h or d"
                ))
            }
        };
        Seconds::checked(d).map_err(|e| format!("duration `{text}` {e}"))
    }

    /// `d`, unless it is longer than any duration a cache needs (2^31
    /// seconds, about 68 years: RFC 9111's largest delta-seconds).
    fn checked(d: Duration) -> Result<Self, String> {
        if d > Duration::from_secs(MAX_SECONDS) {
            return Err(format!(
                "is too large: at most {MAX_SECONDS} seconds (about 68 years)"
            ));
        }
        Ok(Seconds(d))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for Seconds {
    fn from(d: Duration) -> Self {
        Seconds(d)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 60 (seconds), \"30s\", \"5m\" or \"250ms\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Seconds::checked(Duration::from_secs(v))
                    .map_err(|e| E::custom(format!("duration {v} {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                let v = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
                self.visit_u64(v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(E::custom("a duration must be a non-negative number"));
                }
                // Checked before converting: from_secs_f64 panics on overflow.
                if v > MAX_SECONDS as f64 {
                    return Err(E::custom(format!(
                        "duration {v} is too large: at most {MAX_SECONDS} seconds (about 68 years)"
                    )));
                }
                Ok(Seconds(Duration::from_secs_f64(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                Seconds::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("5MB").unwrap().bytes(), 5 * 1024 * 1024);
        assert_eq!(ByteSize::parse("64 KiB").unwrap().bytes(), 64 * 1024);
        assert_eq!(ByteSize::parse("1024").unwrap().bytes(), 1024);
        assert_eq!(ByteSize::parse("2gb").unwrap().bytes(), 2 << 30);
        assert!(ByteSize::parse("5XB").unwrap_err().contains("unit"));
        assert!(ByteSize::parse("MB").is_err());
        assert!(ByteSize::parse("99999999999999999999GB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(Seconds::parse("30").unwrap().get(), Duration::from_secs(30));
        assert_eq!(
            Seconds::parse("250ms").unwrap().get(),
            Duration::from_millis(250)
        );
        assert_eq!(
            Seconds::parse("5m").unwrap().get(),
            Duration::from_secs(300)
        );
        assert_eq!(
            Seconds::parse("1d").unwrap().get(),
            Duration::from_secs(86_400)
        );
        assert!(Seconds::parse("5 weeks").is_err());
        assert!(Seconds::parse("99999999999d").is_err());
        assert!(Seconds::parse("2147483648").is_ok());
        assert!(Seconds::parse("2147483649").is_err());
        assert!(Seconds::parse("-5").is_err());
    }
}
