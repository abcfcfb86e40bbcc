//! Response heads written as hyper's HTTP/1.1 server writes them.

use bytes::Bytes;
use uip_cache_core::FieldName;

/// Fields of a message's framing and connection, never written from a
/// stored answer: the answer's length is its body's, and the connection
/// stays open. Admission never stores them; an entry that has one (put in
/// a shared store by something else) would otherwise make the client read
/// the body as chunks, or the next answer as part of this one.
const FRAMING: [&str; 7] = [
    "transfer-encoding",
    "connection",
    "trailer",
    "keep-alive",
    "upgrade",
    "proxy-connection",
    "te",
];

/// How a response's body is framed on the client's connection.
#[derive(Clone, Copy, Debug)]
pub(super) enum Framing {
    /// This many bytes (`content-length`, made up when none is given).
    Length(u64),
    /// Chunks (`transfer-encoding: chunked`; a `content-length` given is
    /// left out).
    Chunked,
}

/// Writes a response head as hyper's HTTP/1.1 server writes it for a
/// body of `len` bytes: the status line with its canonical reason, the
/// fields that are valid HTTP (others are left out, as the general path's
/// header map leaves them), `content-length` when none is given and the
/// status and method allow one, and `date` when none is given.
pub(super) fn encode_head(
    head: &mut Vec<u8>,
    status: u16,
    fields: &[(FieldName, Bytes)],
    head_only: bool,
    len: u64,
) {
    encode(head, status, fields, head_only, Framing::Length(len));
}

/// [`encode_head`] for a body framed as `framing` says, with fields of
/// any kind of name and value.
pub(super) fn encode<N: AsRef<str>, V: AsRef<[u8]>>(
    head: &mut Vec<u8>,
    status: u16,
    fields: &[(N, V)],
    head_only: bool,
    framing: Framing,
) {
    let code = status_line(head, status);
    let chunked = matches!(framing, Framing::Chunked);
    let (mut length, mut date) = (false, false);
    // A field goes out as the header map has it: its name in lower case,
    // and only when its value is one (a `content-length` or `date` left
    // out is one hyper makes up, as for a field never given).
    let mut field = |name: &str, value: &[u8]| {
        if !valid_value(value) {
            return;
        }
        let is_length = name.eq_ignore_ascii_case("content-length");
        if is_length && chunked {
            return;
        }
        length |= is_length;
        date |= name.eq_ignore_ascii_case("date");
        put(head, name, value);
    };
    // hyper writes a header map's fields grouped by name, in the order
    // each name first appears; most answers repeat no name, which their
    // fingerprints tell without comparing names in pairs.
    let repeats = repeats(fields);
    for (i, (name, value)) in fields.iter().enumerate() {
        let name = name.as_ref();
        if !valid_name(name.as_bytes()) || FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            continue;
        }
        if !repeats {
            field(name, value.as_ref());
            continue;
        }
        if fields[..i]
            .iter()
            .any(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        {
            continue;
        }
        for (n, value) in &fields[i..] {
            if n.as_ref().eq_ignore_ascii_case(name) {
                field(name, value.as_ref());
            }
        }
    }
    let bodiless = code.is_informational()
        || code == http::StatusCode::NO_CONTENT
        || code == http::StatusCode::NOT_MODIFIED;
    match framing {
        Framing::Length(len) if !length && !bodiless && !head_only => {
            head.extend_from_slice(b"content-length: ");
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            let mut n = len;
            loop {
                at -= 1;
                digits[at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            head.extend_from_slice(&digits[at..]);
            head.extend_from_slice(b"\r\n");
        }
        Framing::Chunked if !bodiless && !head_only => {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        _ => {}
    }
    if !date {
        head.extend_from_slice(b"date: ");
        head.extend_from_slice(&now_date());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// Writes a 1xx interim response as the general path writes it
/// (`crate::interim`): the status line, the valid fields, in lower case,
/// nothing made up.
pub(super) fn encode_interim(head: &mut Vec<u8>, status: u16, fields: &[(&str, &[u8])]) {
    status_line(head, status);
    for (name, value) in fields {
        if valid_name(name.as_bytes()) && valid_value(value) {
            put(head, name, value);
        }
    }
    head.extend_from_slice(b"\r\n");
}

/// `HTTP/1.1 <code> <reason>`: the status written, as hyper writes it.
fn status_line(head: &mut Vec<u8>, status: u16) -> http::StatusCode {
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(code.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(code.canonical_reason().unwrap_or("<none>").as_bytes());
    head.extend_from_slice(b"\r\n");
    code
}

/// One field, its name in lower case.
pub(super) fn put(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    let at = head.len();
    head.extend_from_slice(name.as_bytes());
    head[at..].make_ascii_lowercase();
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Lists longer than this are taken as repeating a name.
const FINGERPRINTED: usize = 32;

/// Whether two of `fields` may have the same name (ASCII case aside):
/// always when they do, and rarely otherwise (two names of the same
/// fingerprint).
fn repeats<N: AsRef<str>, V>(fields: &[(N, V)]) -> bool {
    if fields.len() > FINGERPRINTED {
        return true;
    }
    let mut prints = [0u64; FINGERPRINTED];
    for (print, (name, _)) in prints.iter_mut().zip(fields) {
        *print = fingerprint(name.as_ref().as_bytes());
    }
    let prints = &prints[..fields.len()];
    prints
        .iter()
        .enumerate()
        .any(|(i, p)| prints[i + 1..].contains(p))
}

/// The same for names equal but for ASCII case (the case bit of every byte
/// set): their length and first and last eight bytes.
fn fingerprint(name: &[u8]) -> u64 {
    let word = |bytes: &[u8]| {
        let mut w = [0u8; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(w) | 0x2020_2020_2020_2020
    };
    let n = name.len();
    word(&name[..n.min(8)])
        ^ word(&name[n.saturating_sub(8)..]).rotate_left(29)
        ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A field name `http::HeaderName` takes (in lower case): a token.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field value `http::HeaderValue` takes: no control byte but tab.
/// Eight bytes at a time: a word with no byte under 0x20 and none 0x7f
/// passes whole; a word with one is checked a byte at a time.
pub(super) fn valid_value(value: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether a byte of `w` is under `n` (n <= 128).
    let under = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH != 0;
    let byte = |b: &u8| *b == b'\t' || (*b >= 0x20 && *b != 0x7f);
    let mut words = value.chunks_exact(8);
    for word in words.by_ref() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        if (under(w, 0x20) || under(w ^ (ONES * 0x7f), 1)) && !word.iter().all(byte) {
            return false;
        }
    }
    words.remainder().iter().all(byte)
}

/// Today's HTTP date, formatted once a second per thread.
fn now_date() -> [u8; 29] {
    use std::cell::Cell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let (at, text) = d.get();
        if at == secs {
            return text;
        }
        let mut text = [0; 29];
        let formatted = httpdate::fmt_http_date(now);
        let n = formatted.len().min(29);
        text[..n].copy_from_slice(&formatted.as_bytes()[..n]);
        d.set((secs, text));
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(status: u16, fields: &[(&'static str, &str)], head_only: bool, len: u64) -> String {
        let fields: Vec<(FieldName, Bytes)> = fields
            .iter()
            .map(|(n, v)| (FieldName::from(*n), Bytes::copy_from_slice(v.as_bytes())))
            .collect();
        let mut out = Vec::new();
        encode_head(&mut out, status, &fields, head_only, len);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_head_groups_fields_by_name_and_adds_what_hyper_adds() {
        let h = head(200, &[("a", "1"), ("b", "2"), ("a", "3")], false, 5);
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\na: 1\r\na: 3\r\nb: 2\r\ncontent-length: 5\r\ndate: "),
            "{h}"
        );
        assert!(h.ends_with(" GMT\r\n\r\n"), "{h}");
        // Given length and date are kept as they are.
        let h = head(200, &[("content-length", "7"), ("date", "x")], false, 5);
        assert_eq!(h, "HTTP/1.1 200 OK\r\ncontent-length: 7\r\ndate: x\r\n\r\n");
        // No length made up for a 304 or a HEAD.
        let h = head(304, &[("date", "x")], false, 0);
        assert_eq!(h, "HTTP/1.1 304 Not Modified\r\ndate: x\r\n\r\n");
        let h = head(200, &[("date", "x")], true, 9);
        assert_eq!(h, "HTTP/1.1 200 OK\r\ndate: x\r\n\r\n");
    }

    #[test]
    fn a_length_or_date_left_out_is_made_up_as_hyper_makes_it() {
        // The general path's header map leaves out a value that is not
        // HTTP; hyper then writes the body's length and today's date.
        let h = head(200, &[("content-length", "5\0"), ("date", "\n")], false, 5);
        assert!(
            h.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ndate: "),
            "{h}"
        );
        assert!(h.ends_with(" GMT\r\n\r\n"), "{h}");
    }

    #[test]
    fn stored_framing_fields_never_go_out() {
        let h = head(
            200,
            &[
                ("Transfer-Encoding", "chunked"),
                ("connection", "close"),
                ("trailer", "x"),
                ("te", "trailers"),
                ("x-kept", "1"),
                ("date", "x"),
            ],
            false,
            3,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nx-kept: 1\r\ndate: x\r\ncontent-length: 3\r\n\r\n"
        );
    }

    #[test]
    fn names_go_out_in_lower_case_grouped_as_the_header_map_groups_them() {
        let h = head(
            200,
            &[("X-A", "1"), ("b", "2"), ("x-a", "3"), ("Date", "x")],
            false,
            0,
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nx-a: 1\r\nx-a: 3\r\nb: 2\r\ndate: x\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_usual_answer_is_not_taken_as_repeating_a_name() {
        let usual = [
            "server",
            "date",
            "content-type",
            "last-modified",
            "etag",
            "cache-control",
            "via",
            "content-length",
            "accept-ranges",
            "age",
            "x-cache",
            "cache-status",
            "vary",
            "expires",
            "content-encoding",
            "access-control-allow-origin",
        ];
        let fields: Vec<(FieldName, Bytes)> = usual
            .iter()
            .map(|n| (FieldName::from(*n), Bytes::new()))
            .collect();
        assert!(!repeats(&fields));
    }

    #[test]
    fn fields_that_are_not_http_are_left_out() {
        let h = head(
            200,
            &[
                ("x-a", "ok"),
                ("x-b", "bad\r\ninjected: 1"),
                ("Bad Name", "v"),
                ("date", "x"),
            ],
            true,
            0,
        );
        assert_eq!(h, "HTTP/1.1 200 OK\r\nx-a: ok\r\ndate: x\r\n\r\n");
    }

    proptest! {
        #[test]
        fn values_are_checked_as_a_byte_at_a_time(
            value in proptest::collection::vec(prop_oneof![16 => 0x20u8..0x7f, 1 => any::<u8>()], 0..40),
        ) {
            let one_by_one = value.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
            prop_assert_eq!(valid_value(&value), one_by_one);
        }

        /// Names equal but for case always have one fingerprint, so a list
        /// said to repeat no name repeats none.
        #[test]
        fn a_list_that_repeats_a_name_is_always_told(
            names in proptest::collection::vec("[a-cA-C-]{0,10}", 0..40),
        ) {
            let fields: Vec<(FieldName, Bytes)> = names
                .iter()
                .map(|n| (FieldName::from(n.clone()), Bytes::new()))
                .collect();
            let twice = names.iter().enumerate().any(|(i, a)| {
                names[i + 1..].iter().any(|b| a.eq_ignore_ascii_case(b))
            });
            if twice {
                prop_assert!(repeats(&fields));
            }
            let upper: Vec<u8> = names.concat().to_ascii_uppercase().into_bytes();
            prop_assert_eq!(fingerprint(&upper), fingerprint(names.concat().as_bytes()));
        }

        /// Whatever a stored entry holds, the head is one status line and
        /// well-formed fields ending in an empty line: no field can split
        /// the response.
        #[test]
        fn any_stored_fields_make_a_well_formed_head(
            status in 100u16..1000,
            fields in proptest::collection::vec(("[a-zA-Z :\r\n-]{0,8}", proptest::collection::vec(any::<u8>(), 0..12)), 0..6),
            head_only: bool,
            len in 0u64..1 << 40,
        ) {
            let fields: Vec<(FieldName, Bytes)> = fields
                .into_iter()
                .map(|(n, v)| (FieldName::from(n), Bytes::from(v)))
                .collect();
            let mut out = Vec::new();
            encode_head(&mut out, status, &fields, head_only, len);
            let mut parsed = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut parsed);
            let n = resp.parse(&out).expect("parses");
            prop_assert_eq!(n, httparse::Status::Complete(out.len()));
            prop_assert_eq!(resp.code, Some(status));
        }
    }
}
