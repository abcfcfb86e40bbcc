//! Reading the forwarding headers as frameworks do: a value they read
//! differently from one another is not believed.

use crate::request::HeaderSource;

/// A header value as frameworks read it: visible ASCII only (`to_str`).
pub(super) fn text(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}

pub(super) fn scheme_of(v: &str) -> Option<&'static str> {
    if v.eq_ignore_ascii_case("https") {
        Some("https")
    } else if v.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

pub(super) enum Single<'h> {
    Absent,
    Value(&'h str),
    Unreadable,
}

/// The one field line of `name`: actix-web and axum-extra read the first,
/// Rails the last, so more than one is unreadable.
pub(super) fn single<'h>(headers: &'h dyn HeaderSource, name: &str) -> Single<'h> {
    let mut lines = 0usize;
    headers.for_each_value(name, &mut |_| lines += 1);
    match headers.first(name) {
        None => Single::Absent,
        Some(_) if lines > 1 => Single::Unreadable,
        Some(v) => text(v).map_or(Single::Unreadable, |v| Single::Value(v.trim())),
    }
}

/// `Forwarded`'s `host=` and `proto=`, when every reader finds the same:
/// `Some((None, None))` when there are none, `None` when the header is to
/// be removed. axum-extra reads the first element of the first field line;
/// actix-web the first `host=` / `proto=` anywhere, splitting at `,` and `;`
/// without regard to quotes; they agree when those parameters are only in
/// the first element, once each, and no quoted value holds a separator.
#[allow(clippy::type_complexity)]
pub(super) fn forwarded(
    headers: &dyn HeaderSource,
) -> Option<(Option<&str>, Option<&'static str>)> {
    let Some(first) = headers.first("forwarded") else {
        return Some((None, None));
    };
    let mut certain = true;
    let mut line = 0usize;
    headers.for_each_value("forwarded", &mut |v| {
        let Some(v) = text(v) else {
            certain = false;
            return;
        };
        let mut in_quotes = false;
        for c in v.bytes() {
            match c {
                b'"' => in_quotes = !in_quotes,
                b',' | b';' | b'=' | b'\\' if in_quotes => certain = false,
                _ => {}
            }
        }
        certain &= !in_quotes;
        for (e, element) in v.split(',').enumerate() {
            let (mut host, mut proto) = (0, 0);
            for pair in element.split(';') {
                let Some((n, v)) = pair.split_once('=') else {
                    continue;
                };
                let n = n.trim();
                let counted = if n.eq_ignore_ascii_case("host") {
                    &mut host
                } else if n.eq_ignore_ascii_case("proto") {
                    &mut proto
                } else {
                    continue;
                };
                *counted += 1;
                // actix-web keeps the blanks after `=`, axum-extra does not.
                certain &= !v.starts_with([' ', '\t']);
            }
            let first_element = line == 0 && e == 0;
            if host + proto > 0 && (!first_element || host > 1 || proto > 1) {
                certain = false;
            }
        }
        line += 1;
    });
    if !certain {
        return None;
    }
    let element = text(first)?.split(',').next().unwrap_or("");
    let (mut host, mut proto) = (None, None);
    for pair in element.split(';') {
        if let Some((n, v)) = pair.split_once('=') {
            let v = v.trim().trim_matches('"');
            if n.trim().eq_ignore_ascii_case("host") {
                if v.is_empty() {
                    return None;
                }
                host = Some(v);
            } else if n.trim().eq_ignore_ascii_case("proto") {
                proto = Some(scheme_of(v)?);
            }
        }
    }
    Some((host, proto))
}
