//! The value of a keyed request header as the key holds it: two requests
//! whose selecting headers differ only in ways their field's syntax gives
//! no meaning to share a variant (RFC 9111 section 4.1), and no others.
//!
//! - Field lines of one name are combined with commas (RFC 9110 section
//!   5.3), and the white space around the commas that separate list
//!   members is removed (section 5.6.1), outside quoted strings and
//!   comments, where it is part of the value.
//! - `Accept-Language` (RFC 9110 section 12.5.4) is read member by member:
//!   language ranges are case-insensitive (RFC 4647 section 2), so they are
//!   lower-cased; a weight is written one way (`q=1`, `Q=1.000` and none
//!   are the same, `q=0.50` is `q=0.5`); empty members go. The order of
//!   the members is kept: many servers break ties between equal weights by
//!   it (`en, de` and `de, en` get English and German), so two orders are
//!   two variants. A member that does not follow the grammar is kept as
//!   sent.
//! - Fields that are not lists, or whose white space may carry meaning to
//!   a server (credentials, cookies, dates, free text), are keyed as each
//!   line was sent, trimmed only at its ends, as before.
//!
//! Normalising is idempotent: a value and its normal form give one key.
//!
//! With `defaults.select_language`, a response that varies on
//! `Accept-Language` and names one `Content-Language`, stored for a
//! request that weights that language at the top ([`weights_at_top`]), is
//! also found by the requests that prefer that language above every other
//! ([`preferred_language`]): `fr;q=0.5, de` gets the German answer stored
//! for `en, de` (RFC 9111 section 4.1 lets a cache use what it knows of
//! the negotiation). Ties are not broken: `en, de` finds no answer stored
//! for `de, en`.

use std::borrow::Cow;

/// Fields keyed line by line, as sent: not comma-separated lists, or
/// values in which a server may read a comma's white space (a cookie
/// value, a token, a date, a product comment).
const AS_SENT: [&str; 11] = [
    "authorization",
    "cookie",
    "date",
    "from",
    "if-modified-since",
    "if-range",
    "if-unmodified-since",
    "proxy-authorization",
    "range",
    "referer",
    "user-agent",
];

/// Whether `name` (lower case) is keyed line by line as sent.
pub(super) fn as_sent(name: &str) -> bool {
    AS_SENT.contains(&name)
}

/// The normal form of the field `name` (lower case) whose lines, combined
/// with commas, are `value`.
pub(super) fn normalise<'v>(name: &str, value: &'v [u8]) -> Cow<'v, [u8]> {
    if name == "accept-language" {
        Cow::Owned(accept_language(value))
    } else {
        list_spacing(value)
    }
}

/// The members of a comma-separated list: split at the commas that are
/// outside quoted strings (with their `\` escapes) and comments (nested
/// parentheses), each trimmed of white space. An unterminated quoted
/// string or comment runs to the end of the value.
fn members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let v = rest?;
        let (mut quoted, mut escaped, mut depth) = (false, false, 0usize);
        for (i, &b) in v.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted {
                match b {
                    b'\\' => escaped = true,
                    b'"' => quoted = false,
                    _ => {}
                }
            } else if depth > 0 {
                match b {
                    b'\\' => escaped = true,
                    b'(' => depth += 1,
                    b')' => depth -= 1,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => quoted = true,
                    b'(' => depth = 1,
                    b',' => {
                        rest = Some(&v[i + 1..]);
                        return Some(trim(&v[..i]));
                    }
                    _ => {}
                }
            }
        }
        rest = None;
        Some(trim(v))
    })
}

/// Without the optional white space (space, tab) at both ends.
fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else {
        return &[];
    };
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &v[start..=end]
}

/// `value` without white space around its list separators (members kept,
/// empty ones too: the field may not be a list where they mean nothing).
fn list_spacing(value: &[u8]) -> Cow<'_, [u8]> {
    // Without white space there is nothing to remove.
    if !value.iter().any(|&b| b == b' ' || b == b'\t') {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    for (i, m) in members(value).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
    if out == value {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(out)
    }
}

/// `Accept-Language` in its normal form (see the module's documentation).
fn accept_language(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for m in members(value).filter(|m| !m.is_empty()) {
        if !out.is_empty() {
            out.push(b',');
        }
        match language_member(m) {
            Some((range, weight)) => {
                out.extend(range.iter().map(u8::to_ascii_lowercase));
                if let Some(w) = weight {
                    out.extend_from_slice(b";q=");
                    out.extend_from_slice(&w);
                }
            }
            None => out.extend_from_slice(m),
        }
    }
    out
}

/// The one language `Accept-Language` prefers to every other (lower
/// case): the range whose weight is above every other member's, and above
/// 0, and not `*`. `None` when two ranges share the top weight (which one
/// a server takes is its own rule: see the module's documentation), when
/// any member does not follow the grammar, or when there is none.
pub(super) fn preferred_language(value: &[u8]) -> Option<Vec<u8>> {
    let members = weighted(value)?;
    let top = members.iter().map(|&(_, q)| q).max()?;
    let mut at_top = members.iter().filter(|&&(_, q)| q == top);
    let (Some(&(range, _)), None) = (at_top.next(), at_top.next()) else {
        return None;
    };
    (top > 0 && range != b"*").then(|| range.to_ascii_lowercase())
}

/// Whether `Accept-Language` weights `language` (lower case) at the top:
/// at its highest weight, above 0, perhaps with others (a tie). `false`
/// when any member does not follow the grammar.
pub(super) fn weights_at_top(value: &[u8], language: &[u8]) -> bool {
    let Some(members) = weighted(value) else {
        return false;
    };
    let top = members.iter().map(|&(_, q)| q).max().unwrap_or(0);
    members
        .iter()
        .any(|&(range, q)| q == top && q > 0 && range.eq_ignore_ascii_case(language))
}

/// The language ranges of `Accept-Language` with their weights in
/// thousandths; `None` when any member does not follow the grammar.
fn weighted(value: &[u8]) -> Option<Vec<(&[u8], u16)>> {
    members(value)
        .filter(|m| !m.is_empty())
        .map(|m| {
            let (range, weight) = language_member(m)?;
            Some((range, weight.as_deref().map_or(1000, thousandths)))
        })
        .collect()
}

/// A `Content-Language` that names one language (lower case): a single
/// language tag, not a list.
pub(super) fn content_language(value: &[u8]) -> Option<Vec<u8>> {
    let tag = trim(value);
    (tag != b"*" && is_language_range(tag)).then(|| tag.to_ascii_lowercase())
}

/// A normal-form weight (`0`, `0.5`, `0.125`; see [`qvalue`]) in
/// thousandths.
fn thousandths(w: &[u8]) -> u16 {
    let frac = w.strip_prefix(b"0.").unwrap_or_default();
    let mut t = 0u16;
    for i in 0..3 {
        t = t * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    t
}

/// A member `language-range [ weight ]`: the range, and the weight in its
/// normal form (`None` for 1); `None` when it does not follow the grammar.
fn language_member(m: &[u8]) -> Option<(&[u8], Option<Vec<u8>>)> {
    let (range, weight) = match m.iter().position(|&b| b == b';') {
        Some(i) => (trim(&m[..i]), Some(trim(&m[i + 1..]))),
        None => (m, None),
    };
    if !is_language_range(range) {
        return None;
    }
    let weight = match weight {
        None => None,
        Some(w) => {
            let q = w.strip_prefix(b"q=").or_else(|| w.strip_prefix(b"Q="))?;
            qvalue(q)?
        }
    };
    Some((range, weight))
}

/// `language-range` of RFC 4647 section 2.1: `*`, or 1 to 8 letters and
/// subtags of 1 to 8 letters and digits, joined by `-`.
fn is_language_range(r: &[u8]) -> bool {
    if r == b"*" {
        return true;
    }
    let mut parts = r.split(|&b| b == b'-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (1..=8).contains(&p.len()) && p.iter().all(u8::is_ascii_alphabetic));
    first_ok && parts.all(|p| (1..=8).contains(&p.len()) && p.iter().all(u8::is_ascii_alphanumeric))
}

/// A `qvalue` (RFC 9110 section 12.4.2) in its normal form: `None` inside
/// for 1 (the weight of a member without one), else `0` or `0.` and its
/// digits without trailing zeros; `None` when it does not follow the
/// grammar.
fn qvalue(q: &[u8]) -> Option<Option<Vec<u8>>> {
    let (int, frac) = match q.iter().position(|&b| b == b'.') {
        Some(i) => (&q[..i], &q[i + 1..]),
        None => (q, &[][..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match int {
        b"1" if frac.iter().all(|&b| b == b'0') => Some(None),
        b"0" => {
            let digits = match frac.iter().rposition(|&b| b != b'0') {
                Some(last) => &frac[..=last],
                None => &[][..],
            };
            let mut w = b"0".to_vec();
            if !digits.is_empty() {
                w.push(b'.');
                w.extend_from_slice(digits);
            }
            Some(Some(w))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(name: &str, v: &str) -> String {
        String::from_utf8(normalise(name, v.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn list_members_lose_the_white_space_around_commas_only() {
        assert_eq!(n("foo", " 1, 2 "), "1,2");
        assert_eq!(n("foo", "1,2"), "1,2");
        assert_eq!(n("foo", "1 ,\t2"), "1,2");
        // Inside a member, in quotes and in comments, it is the value's.
        assert_eq!(n("foo", "a b, c"), "a b,c");
        assert_eq!(n("foo", "\"a , b\" , c"), "\"a , b\",c");
        assert_eq!(n("foo", "\"a \\\" , b\", c"), "\"a \\\" , b\",c");
        assert_eq!(n("foo", "x (a , (b , c) , d) , e"), "x (a , (b , c) , d),e");
        // An unterminated quote runs to the end, untouched.
        assert_eq!(n("foo", "a , \"b , c"), "a,\"b , c");
        // Empty members are kept: the field may not be a list.
        assert_eq!(n("foo", "a, , b"), "a,,b");
        assert_eq!(n("foo", ""), "");
    }

    #[test]
    fn accept_language_case_space_and_weights_but_not_order() {
        let same = [
            "en, de",
            "EN, De",
            " en ,   de",
            "en;q=1, de;q=1.0",
            "en;Q=1.000,de",
            "en,,de,",
        ];
        for v in same {
            assert_eq!(n("accept-language", v), "en,de", "{v}");
        }
        assert_eq!(n("accept-language", "de, en"), "de,en");
        assert_eq!(
            n("accept-language", "fr-CH; q=0.50, *;q=0.000, en-us"),
            "fr-ch;q=0.5,*;q=0,en-us"
        );
        // Weights that differ stay apart; a member off the grammar is kept as sent.
        assert_ne!(
            n("accept-language", "en;q=0.5"),
            n("accept-language", "en;q=0.6")
        );
        assert_eq!(n("accept-language", "en;q=2, De;x=1"), "en;q=2,De;x=1");
        assert_eq!(n("accept-language", "EN;q=0.5;a=b"), "EN;q=0.5;a=b");
    }

    #[test]
    fn fields_kept_as_sent() {
        for f in ["cookie", "authorization", "user-agent", "if-modified-since"] {
            assert!(as_sent(f));
        }
        assert!(!as_sent("accept"));
        assert!(!as_sent("accept-language"));
    }

    fn top(v: &str) -> Option<String> {
        preferred_language(v.as_bytes()).map(|l| String::from_utf8(l).unwrap())
    }

    #[test]
    fn the_preferred_language_is_the_one_weighted_above_all_others() {
        assert_eq!(top("fr;q=0.5, de;q=1.0").as_deref(), Some("de"));
        assert_eq!(top("DE-at, en;q=0.9").as_deref(), Some("de-at"));
        assert_eq!(top("en;q=0.1").as_deref(), Some("en"));
        assert_eq!(top("fr;q=0.125, en;q=0.12").as_deref(), Some("fr"));
        // A tie, nothing wanted, anything, or a member off the grammar: none.
        for v in [
            "en, de",
            "de;q=0.5, en;q=0.50",
            "en;q=0",
            "*",
            "*, en;q=0.5",
            "",
            " , ",
            "en, de;q=x",
            "en;q=2",
            "e1",
        ] {
            assert_eq!(top(v), None, "{v}");
        }
        let at_top = |v: &str, l: &str| weights_at_top(v.as_bytes(), l.as_bytes());
        assert!(at_top("en, de", "de") && at_top("en, DE", "de") && at_top("de;q=0.5", "de"));
        assert!(!at_top("en, de;q=0.9", "de") && !at_top("ja", "de") && !at_top("de;q=0", "de"));
        assert!(!at_top("en, de, x;q=2", "de") && !at_top("", "de"));
        let cl = |v: &str| content_language(v.as_bytes()).map(|l| String::from_utf8(l).unwrap());
        assert_eq!(cl(" De-AT ").as_deref(), Some("de-at"));
        for v in ["de, en", "*", "", "de;q=1", "d e"] {
            assert_eq!(cl(v), None, "{v}");
        }
    }

    proptest! {
        /// Normalising twice is normalising once: a stored variant's value
        /// and the same value normalised again find one key.
        #[test]
        fn normalising_is_idempotent_and_never_panics(
            v in proptest::collection::vec(prop_oneof![
                Just(b' '), Just(b','), Just(b'"'), Just(b'\\'), Just(b'('), Just(b')'),
                Just(b';'), Just(b'='), Just(b'q'), Just(b'Q'), Just(b'.'), Just(b'0'), Just(b'1'),
                Just(b'E'), Just(b'n'), Just(b'-'), Just(b'*'), Just(b'\t'), any::<u8>(),
            ], 0..40),
            name in prop_oneof![Just("accept-language"), Just("accept"), Just("x-foo")],
        ) {
            let once = normalise(name, &v).into_owned();
            let twice = normalise(name, &once).into_owned();
            prop_assert_eq!(once, twice);
        }

        /// Two lists share a normal form exactly when their members do:
        /// the white space around the commas never joins two lists that
        /// differ, nor separates two that do not.
        #[test]
        fn lists_match_exactly_when_their_members_do(
            a in proptest::collection::vec("[a-z0-9]([a-z0-9 ]{0,3}[a-z0-9])?", 0..4),
            b in proptest::collection::vec("[a-z0-9]([a-z0-9 ]{0,3}[a-z0-9])?", 0..4),
            sep_a in prop_oneof![Just(","), Just(", "), Just(" ,\t")],
            sep_b in prop_oneof![Just(","), Just(", "), Just("  , ")],
        ) {
            let (na, nb) = (n("x-list", &a.join(sep_a)), n("x-list", &b.join(sep_b)));
            prop_assert_eq!(na == nb, a == b);
        }

        /// The preferred language never panics, is a range the value
        /// names (lower-cased), and is weighted above every other member.
        #[test]
        fn the_preferred_language_is_weighted_above_the_rest(
            l in proptest::collection::vec(("[a-zA-Z]{1,3}|\\*", 0u16..=1000), 0..5),
            raw in proptest::collection::vec(any::<u8>(), 0..30),
        ) {
            let _ = preferred_language(&raw);
            let show = l.iter().map(|(t, q)| {
                if *q == 1000 { t.clone() } else { format!("{t};q={}.{:03}", q / 1000, q % 1000) }
            }).collect::<Vec<_>>().join(", ");
            match top(&show) {
                Some(p) => {
                    let q = l.iter().filter(|(t, _)| t.to_ascii_lowercase() == p).map(|(_, q)| *q).max().unwrap();
                    prop_assert!(q > 0 && p != "*");
                    let at_top = l.iter().filter(|(_, w)| *w >= q).count();
                    prop_assert_eq!(at_top, 1);
                }
                None => {
                    let max = l.iter().map(|(_, q)| *q).max().unwrap_or(0);
                    let at_max: Vec<_> = l.iter().filter(|(_, q)| *q == max).collect();
                    prop_assert!(max == 0 || at_max.len() != 1 || at_max[0].0 == "*");
                }
            }
        }

        /// Two Accept-Language values of distinct language lists never
        /// share a key, whatever the spelling of their weights.
        #[test]
        fn distinct_language_lists_stay_apart(
            a in proptest::collection::vec(("[a-z]{1,3}", 0u16..=1000), 1..4),
            b in proptest::collection::vec(("[a-z]{1,3}", 0u16..=1000), 1..4),
        ) {
            let show = |l: &[(String, u16)]| l.iter().map(|(t, q)| {
                if *q == 1000 { t.clone() } else { format!("{t};q={}.{:03}", q / 1000, q % 1000) }
            }).collect::<Vec<_>>().join(", ");
            let (na, nb) = (n("accept-language", &show(&a)), n("accept-language", &show(&b)));
            prop_assert_eq!(na == nb, a == b);
        }
    }
}
