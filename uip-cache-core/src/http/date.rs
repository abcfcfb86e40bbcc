//! HTTP dates and delta-seconds, read as RFC 9110 and 9111 ask recipients
//! to read them: the three date layouts in any letter case, any year.
//!
//! The `httpdate` crate formats dates well but parses only what its own
//! formatter writes (case-sensitive, 1970 to 9999): an origin's `Expires` in
//! lower case, an RFC 850 date or a year before 1970 would read as invalid.
//! Recipients must accept all three formats of RFC 9110 section 5.6.7, and a
//! cache has to survive any year, so the parser is written here.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use uip_cache_core::http::date::parse_http_date;
//!
//! let t = UNIX_EPOCH + Duration::from_secs(784111777);
//! assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
//! assert_eq!(parse_http_date(b"sunday, 06-nov-94 08:49:37 gmt"), Some(t));
//! assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(t));
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::request::HeaderSource;

/// The largest delta-seconds a cache needs to represent (RFC 9111 section
/// 1.2.2): larger values, in `max-age`, `Age` or a config, count as this.
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// [`MAX_DELTA_SECONDS`] as a duration: every freshness lifetime, age and
/// stale window is clamped to it, so sums of them never overflow.
pub const MAX_DELTA: Duration = Duration::from_secs(MAX_DELTA_SECONDS);

/// Parses delta-seconds (`1*DIGIT`), clamping at [`MAX_DELTA_SECONDS`];
/// `None` for anything else (a sign, a fraction, letters, nothing).
pub fn parse_delta_seconds(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in s {
        n = n * 10 + u64::from(d - b'0');
        if n >= MAX_DELTA_SECONDS {
            return Some(MAX_DELTA_SECONDS);
        }
    }
    Some(n)
}

/// Clamps a duration to [`MAX_DELTA`].
pub fn clamp(d: Duration) -> Duration {
    d.min(MAX_DELTA)
}

/// The date in the first `name` header, if it is one.
pub(crate) fn http_date(h: &dyn HeaderSource, name: &str) -> Option<SystemTime> {
    h.first(name).and_then(parse_http_date)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// Parses an HTTP date in any of the three formats of RFC 9110 section 5.6.7
/// (IMF-fixdate, RFC 850, asctime), case-insensitively, with any four-digit
/// year. The layout is checked exactly (single spaces, the comma, colons):
/// anything else is not a date, and an `Expires` that is not a date means
/// "already expired".
pub fn parse_http_date(v: &[u8]) -> Option<SystemTime> {
    let s: Vec<u8> = v.trim_ascii().to_ascii_lowercase();
    let at = |i: usize, c: u8| s.get(i) == Some(&c);
    let (year, month, day, time) = if s.len() == 29 && at(3, b',') {
        // sun, 06 nov 1994 08:49:37 gmt
        if !(short_day(&s[..3]) && at(4, b' ') && at(7, b' ') && at(11, b' ') && at(16, b' '))
            || &s[25..] != b" gmt"
        {
            return None;
        }
        let year = number(&s[12..16], 4, 4)?;
        (year, month(&s[8..11])?, number(&s[5..7], 2, 2)?, &s[17..25])
    } else if let Some(comma) = s.iter().position(|&b| b == b',') {
        // sunday, 06-nov-94 08:49:37 gmt
        let rest = &s[comma + 1..];
        if !long_day(&s[..comma])
            || rest.len() != 23
            || rest[0] != b' '
            || rest[3] != b'-'
            || rest[7] != b'-'
            || rest[10] != b' '
            || &rest[19..] != b" gmt"
        {
            return None;
        }
        let year = two_digit_year(number(&rest[8..10], 2, 2)?);
        (
            year,
            month(&rest[4..7])?,
            number(&rest[1..3], 2, 2)?,
            &rest[11..19],
        )
    } else if s.len() == 24 {
        // sun nov  6 08:49:37 1994
        if !(short_day(&s[..3]) && at(3, b' ') && at(7, b' ') && at(10, b' ') && at(19, b' ')) {
            return None;
        }
        let day = if s[8] == b' ' { &s[9..10] } else { &s[8..10] };
        (
            number(&s[20..24], 4, 4)?,
            month(&s[4..7])?,
            number(day, 1, 2)?,
            &s[11..19],
        )
    } else {
        return None;
    };
    if time.len() != 8 || time[2] != b':' || time[5] != b':' {
        return None;
    }
    let h = number(&time[..2], 2, 2)?;
    let m = number(&time[3..5], 2, 2)?;
    let sec = number(&time[6..], 2, 2)?;
    if h > 23 || m > 59 || sec > 60 || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year as i64, month, day);
    let secs = days * 86_400 + (h * 3600 + m * 60 + sec.min(59)) as i64;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

const SHORT_DAYS: [&[u8]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];
const LONG_DAYS: [&[u8]; 7] = [
    b"monday",
    b"tuesday",
    b"wednesday",
    b"thursday",
    b"friday",
    b"saturday",
    b"sunday",
];

fn short_day(w: &[u8]) -> bool {
    SHORT_DAYS.contains(&w)
}

fn long_day(w: &[u8]) -> bool {
    LONG_DAYS.contains(&w)
}

fn number(w: &[u8], min: usize, max: usize) -> Option<u64> {
    if w.len() < min || w.len() > max || !w.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(w.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn month(w: &[u8]) -> Option<u64> {
    MONTHS
        .iter()
        .position(|m| &m[..] == w)
        .map(|i| i as u64 + 1)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC 9110: a two-digit year that would be more than 50 years in the future
/// is the most recent past year with those digits.
fn two_digit_year(yy: u64) -> u64 {
    let now_year = 1970
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 31_556_952);
    let century = now_year / 100 * 100;
    let year = century + yy;
    if year > now_year + 50 {
        year - 100
    } else {
        year
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm); exact for every year, negative before 1970.
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: i64) -> SystemTime {
        if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        }
    }

    #[test]
    fn three_formats_any_case() {
        let t = Some(at(784_111_777));
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "sun, 06 nov 1994 08:49:37 gmt",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "SUNDAY, 06-NOV-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun nov 06 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT  ",
        ] {
            assert_eq!(parse_http_date(s.as_bytes()), t, "{s}");
        }
    }

    #[test]
    fn years_outside_1970_to_9999_and_garbage() {
        assert_eq!(
            parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(UNIX_EPOCH)
        );
        assert_eq!(
            parse_http_date(b"Wed, 31 Dec 1969 23:59:59 GMT"),
            Some(at(-1))
        );
        assert_eq!(
            parse_http_date(b"Mon, 01 Jan 0001 00:00:00 GMT"),
            Some(at(-62_135_596_800))
        );
        assert_eq!(
            parse_http_date(b"Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(at(253_402_300_799))
        );
        for bad in [
            "",
            "0",
            "-1",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 99999 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sat, 31 Feb 2024 08:49:37 GMT",
            "Tue, 29 Feb 2023 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            // Layouts RFC 9110 does not allow.
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sun, 06  Nov  1994 08:49:37 GMT",
            "Sun, 06-Nov-1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08.49.37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "sun nov 6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 GMT+1",
        ] {
            assert_eq!(parse_http_date(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn delta_seconds_clamp() {
        assert_eq!(parse_delta_seconds(b"0"), Some(0));
        assert_eq!(parse_delta_seconds(b"60"), Some(60));
        assert_eq!(
            parse_delta_seconds(b"99999999999999999999999999"),
            Some(MAX_DELTA_SECONDS)
        );
        assert_eq!(
            parse_delta_seconds(b"18446744073709551615"),
            Some(MAX_DELTA_SECONDS)
        );
        for bad in ["", "-1", "1.5", " 1", "a"] {
            assert_eq!(parse_delta_seconds(bad.as_bytes()), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn formats_round_trip(secs in 0u64..253_402_300_799) {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let s = httpdate::fmt_http_date(t);
            prop_assert_eq!(parse_http_date(s.as_bytes()), Some(t));
            prop_assert_eq!(parse_http_date(s.to_ascii_lowercase().as_bytes()), Some(t));
        }

        #[test]
        fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_http_date(&v);
            let _ = parse_delta_seconds(&v);
        }

        #[test]
        fn date_like_text_never_panics(
            d in "[A-Za-z]{0,9},? [0-9]{1,5}[ -][A-Za-z]{3}[ -][0-9]{1,6} [0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}( GMT)?"
        ) {
            let _ = parse_http_date(d.as_bytes());
        }
    }
}
