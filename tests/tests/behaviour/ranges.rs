//! Ranges (RFC 9110 section 14): a stored complete 200 answers `Range`
//! requests itself (206, 416, `multipart/byteranges`, `If-Range`, HEAD,
//! gzip-stored entries), and a range request that misses is answered from
//! the whole response, which is stored for everyone. A 206 the origin
//! sends is stored as a part, apart from complete responses, and answers
//! only ranges that lie within it; a request for the whole that finds a
//! part beginning the representation asks the origin for the rest, and
//! combines the two only when they are of the same representation.

use uip_cache_testkit::harness::{Adapter, Backend, Harness, Transport};
use uip_cache_testkit::{Got, Reply};

use crate::ITEMS;

for_every_adapter_and_store!(
    single_ranges,
    unsatisfiable,
    several_ranges,
    if_range,
    a_range_of_a_miss,
    head,
    gzip_entries,
    stored_parts,
    completed_parts,
    completed_parts_streamed,
);

/// What the origin serves at every path: 36 distinct bytes.
const BODY: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

/// An origin with a strong validator and a type, counting its calls and
/// refusing to see a `Range` (the cache must ask for the whole).
fn origin(body: &'static str) -> impl Fn(&uip_cache_testkit::Seen, usize) -> Reply {
    move |seen, _| {
        assert!(seen.header("range").is_none(), "the cache sent a Range on");
        assert!(
            seen.header("if-range").is_none(),
            "the cache sent an If-Range on"
        );
        Reply::ok(body)
            .header("etag", "\"v1\"")
            .header("content-type", "text/plain")
    }
}

async fn harness(a: Adapter, b: Backend, policies: &str) -> Option<Harness> {
    Harness::new(a, b, policies, origin(BODY)).await
}

/// A GET of `uri` with `headers`.
async fn get(h: &Harness, uri: &str, headers: &[(&str, &str)]) -> Got {
    h.send("GET", uri, headers).await
}

/// Stores `uri` with a plain GET (a miss).
async fn store(h: &Harness, uri: &str, sets: u64) {
    let miss = get(h, uri, &[]).await;
    assert_eq!((miss.status, miss.x_cache()), (200, "MISS"), "{miss:?}");
    h.wait_for_sets(sets).await;
}

/// A 206 of one range: its status, `Content-Range`, body and (over a
/// socket, where the framing is the server's) `Content-Length`.
fn assert_part(a: Adapter, got: &Got, content_range: &str, body: &str) {
    assert_eq!(got.status, 206, "{a:?} {got:?}");
    assert_eq!(
        got.header("content-range"),
        Some(content_range),
        "{a:?} {got:?}"
    );
    assert_eq!(got.text(), body, "{a:?}");
    if a.transport == Transport::Socket {
        assert_eq!(
            got.header("content-length"),
            Some(body.len().to_string().as_str()),
            "{a:?}"
        );
    }
}

async fn single_ranges(a: Adapter, b: Backend) {
    let Some(h) = harness(a, b, ITEMS).await else {
        return;
    };
    store(&h, "/items/s", 1).await;
    let whole = get(&h, "/items/s", &[]).await;
    assert_eq!((whole.status, whole.x_cache()), (200, "HIT"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"), "{a:?}");
    for (range, content_range, part) in [
        ("bytes=0-4", "bytes 0-4/36", "01234"),
        ("bytes=-3", "bytes 33-35/36", "xyz"),
        ("bytes=30-", "bytes 30-35/36", "uvwxyz"),
        ("bytes=10-10", "bytes 10-10/36", "a"),
        ("bytes=34-1000", "bytes 34-35/36", "yz"),
    ] {
        let got = get(&h, "/items/s", &[("range", range)]).await;
        assert_part(a, &got, content_range, part);
        assert_eq!(got.x_cache(), "HIT", "{range}");
        assert_eq!(got.header("etag"), Some("\"v1\""), "{range}");
        assert_eq!(got.header("content-type"), Some("text/plain"), "{range}");
    }
    // Not a range the cache can read: the whole.
    for range in ["bytes=5-1", "items=0-1", "bytes=x"] {
        let got = get(&h, "/items/s", &[("range", range)]).await;
        assert_eq!((got.status, got.text()), (200, BODY.into()), "{range}");
    }
    assert_eq!(h.calls(), 1, "{a:?}: every range from the one stored 200");
}

async fn unsatisfiable(a: Adapter, b: Backend) {
    let Some(h) = harness(a, b, ITEMS).await else {
        return;
    };
    store(&h, "/items/u", 1).await;
    let got = get(&h, "/items/u", &[("range", "bytes=36-")]).await;
    assert_eq!(got.status, 416, "{a:?} {got:?}");
    assert_eq!(got.header("content-range"), Some("bytes */36"), "{a:?}");
    assert!(got.body.is_empty());
    // Nobody else gets the 416.
    let whole = get(&h, "/items/u", &[]).await;
    assert_eq!((whole.status, whole.text()), (200, BODY.into()), "{a:?}");
    assert_eq!(h.calls(), 1);
}

/// The parts of a `multipart/byteranges` body: each part's `Content-Type`,
/// `Content-Range` and bytes.
fn parts(got: &Got) -> Vec<(String, String, String)> {
    let ct = got.header("content-type").unwrap_or_default();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {got:?}"));
    let text = got.text();
    let close = format!("\r\n--{boundary}--\r\n");
    let inner = text
        .strip_suffix(&close)
        .unwrap_or_else(|| panic!("{text:?}"));
    inner
        .split(&format!("--{boundary}\r\n"))
        .skip(1)
        .map(|part| {
            let part = part.strip_suffix("\r\n").unwrap_or(part);
            let (head, data) = part.split_once("\r\n\r\n").unwrap();
            let field = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                field("Content-Type: "),
                field("Content-Range: "),
                data.to_owned(),
            )
        })
        .collect()
}

async fn several_ranges(a: Adapter, b: Backend) {
    let Some(h) = harness(a, b, ITEMS).await else {
        return;
    };
    store(&h, "/items/m", 1).await;
    let got = get(&h, "/items/m", &[("range", "bytes=-2, 0-1, 5-6")]).await;
    assert_eq!((got.status, got.x_cache()), (206, "HIT"), "{a:?} {got:?}");
    assert_eq!(got.header("content-range"), None);
    let text_plain = || "text/plain".to_owned();
    assert_eq!(
        parts(&got),
        [
            (text_plain(), "bytes 0-1/36".into(), "01".into()),
            (text_plain(), "bytes 5-6/36".into(), "56".into()),
            (text_plain(), "bytes 34-35/36".into(), "yz".into()),
        ],
        "{a:?}"
    );
    if a.transport == Transport::Socket {
        assert_eq!(
            got.header("content-length"),
            Some(got.body.len().to_string().as_str())
        );
    }
    // Each response has its own boundary.
    let again = get(&h, "/items/m", &[("range", "bytes=-2, 0-1, 5-6")]).await;
    assert_ne!(again.header("content-type"), got.header("content-type"));
    // Overlapping and adjacent ranges are joined: one part.
    let joined = get(&h, "/items/m", &[("range", "bytes=0-3, 2-5, 6-7")]).await;
    assert_part(a, &joined, "bytes 0-7/36", "01234567");
    // More than 16, or more than two overlapping: the whole.
    let many: Vec<String> = (0..17).map(|i| format!("{i}-{i}")).collect();
    let many = format!("bytes={}", many.join(","));
    for range in [many.as_str(), "bytes=0-9, 1-9, 2-9, 3-9"] {
        let got = get(&h, "/items/m", &[("range", range)]).await;
        assert_eq!(
            (got.status, got.text()),
            (200, BODY.into()),
            "{a:?} {range}"
        );
    }
    assert_eq!(h.calls(), 1);
}

async fn if_range(a: Adapter, b: Backend) {
    let Some(h) = harness(a, b, ITEMS).await else {
        return;
    };
    store(&h, "/items/i", 1).await;
    let matching = get(
        &h,
        "/items/i",
        &[("range", "bytes=0-2"), ("if-range", "\"v1\"")],
    )
    .await;
    assert_part(a, &matching, "bytes 0-2/36", "012");
    // Another tag, a weak one, or a date the entry cannot vouch for: the
    // client's copy is not this one, and gets the whole.
    for cond in ["\"v0\"", "W/\"v1\"", "Tue, 01 Jul 2025 10:00:00 GMT"] {
        let got = get(
            &h,
            "/items/i",
            &[("range", "bytes=0-2"), ("if-range", cond)],
        )
        .await;
        assert_eq!((got.status, got.text()), (200, BODY.into()), "{a:?} {cond}");
        assert_eq!(got.x_cache(), "HIT");
    }
    assert_eq!(h.calls(), 1);
}

async fn a_range_of_a_miss(a: Adapter, b: Backend) {
    let Some(h) = harness(a, b, ITEMS).await else {
        return;
    };
    // The origin (which refuses to see a Range) sends the whole; the client
    // gets its part, as the bytes arrive.
    let first = get(
        &h,
        "/items/r",
        &[("range", "bytes=3-5"), ("if-range", "\"v1\"")],
    )
    .await;
    assert_part(a, &first, "bytes 3-5/36", "345");
    assert_eq!(first.x_cache(), "MISS");
    h.wait_for_sets(1).await;
    // The whole was stored for everyone.
    let whole = get(&h, "/items/r", &[]).await;
    assert_eq!((whole.status, whole.x_cache()), (200, "HIT"), "{a:?}");
    assert_eq!(whole.text(), BODY);
    let part = get(&h, "/items/r", &[("range", "bytes=-1")]).await;
    assert_part(a, &part, "bytes 35-35/36", "z");
    // An unsatisfiable range of a miss: a 416 for it, the whole stored.
    let none = get(&h, "/items/r2", &[("range", "bytes=99-")]).await;
    assert_eq!(
        (none.status, none.x_cache()),
        (416, "MISS"),
        "{a:?} {none:?}"
    );
    assert_eq!(none.header("content-range"), Some("bytes */36"));
    h.wait_for_sets(2).await;
    let whole = get(&h, "/items/r2", &[]).await;
    assert_eq!(
        (whole.status, whole.x_cache(), whole.text()),
        (200, "HIT", BODY.into())
    );
    assert_eq!(h.calls(), 2);
}

async fn head(a: Adapter, b: Backend) {
    let Some(h) = harness(a, b, ITEMS).await else {
        return;
    };
    store(&h, "/items/h", 1).await;
    // From the entry, and (the origin asked for the whole's head) on a miss.
    for (uri, x_cache) in [("/items/h", "HIT"), ("/items/h2", "MISS")] {
        let got = h.send("HEAD", uri, &[("range", "bytes=2-5")]).await;
        assert_eq!((got.status, got.x_cache()), (206, x_cache), "{a:?} {got:?}");
        assert_eq!(got.header("content-range"), Some("bytes 2-5/36"));
        assert!(got.body.is_empty());
        // The framing is the server's: in process, actix computes it.
        if a.transport == Transport::Socket {
            assert_eq!(got.header("content-length"), Some("4"), "{a:?}");
        }
    }
    assert_eq!(h.calls(), 2);
}

async fn gzip_entries(a: Adapter, b: Backend) {
    let body: &'static str = BODY.repeat(20).leak();
    let policies = format!("{ITEMS}    compression: {{enabled: true, min_size: 64}}\n");
    let Some(h) = Harness::new(a, b, &policies, origin(body)).await else {
        return;
    };
    let gzip = ("accept-encoding", "gzip");
    let miss = get(&h, "/items/g", &[gzip]).await;
    assert_eq!(miss.x_cache(), "MISS");
    h.wait_for_sets(1).await;
    let whole_gz = get(&h, "/items/g", &[gzip]).await;
    assert_eq!(whole_gz.header("content-encoding"), Some("gzip"), "{a:?}");
    let total = whole_gz.body.len();

    // A client that takes gzip gets a range of the gzip bytes, described
    // by the gzip's own validator.
    let got = get(&h, "/items/g", &[gzip, ("range", "bytes=0-9")]).await;
    assert_eq!((got.status, got.x_cache()), (206, "HIT"), "{a:?} {got:?}");
    assert_eq!(got.body, whole_gz.body.slice(..10), "{a:?}");
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert_eq!(got.header("etag"), Some("W/\"v1-gzip\""));
    let expected = format!("bytes 0-9/{total}");
    assert_eq!(got.header("content-range"), Some(expected.as_str()));
    // Its weak tag never satisfies If-Range.
    let got = get(
        &h,
        "/items/g",
        &[gzip, ("range", "bytes=0-9"), ("if-range", "W/\"v1-gzip\"")],
    )
    .await;
    assert_eq!((got.status, got.body.len()), (200, total), "{a:?}");

    // A client that does not gets a range of the identity bytes.
    let got = get(&h, "/items/g", &[("range", "bytes=700-")]).await;
    assert_part(a, &got, "bytes 700-719/720", &body[700..]);
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.header("etag"), Some("\"v1\""));
    let got = get(
        &h,
        "/items/g",
        &[("range", "bytes=0-1"), ("if-range", "\"v1\"")],
    )
    .await;
    assert_part(a, &got, "bytes 0-1/720", "01");
    assert_eq!(h.calls(), 1);
}

/// An origin that answers a `Range` of the form `bytes=first-last` with
/// that part of [`BODY`] (a 206), anything else with the whole.
fn ranging_origin(seen: &uip_cache_testkit::Seen, _: usize) -> Reply {
    let asked = seen
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
    match asked {
        Some((first, last)) if first <= last && last < BODY.len() => Reply::ok(&BODY[first..=last])
            .status(206)
            .header(
                "content-range",
                format!("bytes {first}-{last}/{}", BODY.len()),
            )
            .header("etag", "\"v1\"")
            .header("content-type", "text/plain")
            .header("cache-control", "max-age=60"),
        _ => Reply::ok(BODY)
            .header("etag", "\"v1\"")
            .header("content-type", "text/plain")
            .header("cache-control", "max-age=60"),
    }
}

async fn stored_parts(a: Adapter, b: Backend) {
    // Every range that misses goes to the origin with its `Range`.
    let policies = format!("{ITEMS}    range_passthrough_above: 0\n");
    let Some(h) = Harness::new(a, b, &policies, ranging_origin).await else {
        return;
    };
    let first = get(&h, "/items/p", &[("range", "bytes=10-19")]).await;
    assert_part(a, &first, "bytes 10-19/36", "abcdefghij");
    assert_eq!(first.x_cache(), "MISS", "{a:?}");
    h.wait_for_sets(1).await;
    // Ranges within the stored part: hits, cut from it.
    let inside = get(&h, "/items/p", &[("range", "bytes=12-14")]).await;
    assert_part(a, &inside, "bytes 12-14/36", "cde");
    assert_eq!(inside.x_cache(), "HIT", "{a:?} {inside:?}");
    let whole_part = get(
        &h,
        "/items/p",
        &[("range", "bytes=10-19"), ("if-range", "\"v1\"")],
    )
    .await;
    assert_part(a, &whole_part, "bytes 10-19/36", "abcdefghij");
    assert_eq!(whole_part.x_cache(), "HIT", "{a:?}");
    let several = get(&h, "/items/p", &[("range", "bytes=10-11, 18-19")]).await;
    assert_eq!((several.status, several.x_cache()), (206, "HIT"), "{a:?}");
    assert_eq!(
        parts(&several),
        [
            ("text/plain".into(), "bytes 10-11/36".into(), "ab".into()),
            ("text/plain".into(), "bytes 18-19/36".into(), "ij".into()),
        ],
        "{a:?}"
    );
    assert_eq!(h.calls(), 1, "{a:?}");
    // A range reaching past the part, an If-Range the part does not
    // satisfy, a HEAD and a request for the whole go to the origin.
    let outside = get(&h, "/items/p", &[("range", "bytes=18-20")]).await;
    assert_ne!(outside.x_cache(), "HIT", "{a:?} {outside:?}");
    assert_eq!(h.calls(), 2, "{a:?}");
    let other = get(
        &h,
        "/items/p",
        &[("range", "bytes=12-14"), ("if-range", "\"v0\"")],
    )
    .await;
    assert_ne!(other.x_cache(), "HIT", "{a:?} {other:?}");
    assert_eq!(h.calls(), 3, "{a:?}");
    let head = h
        .send("HEAD", "/items/p", &[("range", "bytes=12-14")])
        .await;
    assert_ne!(head.x_cache(), "HIT", "{a:?} {head:?}");
    assert_eq!(h.calls(), 4, "{a:?}");
    let whole = get(&h, "/items/p", &[]).await;
    assert_eq!(
        (whole.status, whole.x_cache()),
        (200, "MISS"),
        "{a:?} {whole:?}"
    );
    assert_eq!(whole.text(), BODY);
    // The complete 200, stored apart from the parts, answers every range.
    h.wait_for_sets(4).await;
    let from_whole = get(&h, "/items/p", &[("range", "bytes=0-1")]).await;
    assert_part(a, &from_whole, "bytes 0-1/36", "01");
    assert_eq!(from_whole.x_cache(), "HIT", "{a:?}");
    assert_eq!(h.calls(), 5, "{a:?}");
}

/// What `/items/changed` serves after its first part: new bytes, new tag.
const CHANGED: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ9876543210";

/// An origin that answers `bytes=first-last` and `bytes=first-` with that
/// part of [`BODY`] and the strong tag `"v1"`, with a field `a` that says
/// which (`part` for a first-last range, `rest` for an open-ended one).
/// At `/items/changed` everything but `bytes=0-9` gets [`CHANGED`] under
/// `"v2"`; at `/items/ignoring` an open-ended range gets the whole 200;
/// at `/items/gone` everything but `bytes=0-9` a fresh 404; at
/// `/items/weak` the tag is the weak `W/"v1"`.
fn completing_origin(seen: &uip_cache_testkit::Seen, _: usize) -> Reply {
    let range = seen.header("range").and_then(|r| r.strip_prefix("bytes="));
    if seen.path() == "/items/gone" && range != Some("0-9") {
        return Reply::ok("gone")
            .status(404)
            .header("cache-control", "max-age=60");
    }
    let (body, tag) = match (seen.path(), range) {
        ("/items/changed", r) if r != Some("0-9") => (CHANGED, "\"v2\""),
        _ => (BODY, "\"v1\""),
    };
    let asked = range.and_then(|r| r.split_once('-')).and_then(|(a, b)| {
        let first = a.parse::<usize>().ok()?;
        match b {
            "" if seen.path() == "/items/ignoring" => None,
            "" => Some((first, body.len() - 1, "rest")),
            b => Some((first, b.parse::<usize>().ok()?, "part")),
        }
    });
    let reply = match asked {
        Some((first, last, which)) if first <= last && last < body.len() => {
            Reply::ok(&body[first..=last])
                .status(206)
                .header(
                    "content-range",
                    format!("bytes {first}-{last}/{}", body.len()),
                )
                .header("a", which)
        }
        _ => Reply::ok(body).header("a", "whole"),
    };
    let tag = if seen.path() == "/items/weak" {
        "W/\"v1\""
    } else {
        tag
    };
    reply
        .header("etag", tag)
        .header("content-type", "text/plain")
        .header("cache-control", "max-age=60")
}

async fn completed_parts(a: Adapter, b: Backend) {
    completed_parts_with(a, b, "").await;
}

/// As [`completed_parts`], every part and every whole past 4 bytes going
/// through the streamed write of a store that has one (the disk store:
/// bodies this small reach its file at the commit), a completion's part
/// written first.
async fn completed_parts_streamed(a: Adapter, b: Backend) {
    completed_parts_with(a, b, "    stream_above: 4\n").await;
}

async fn completed_parts_with(a: Adapter, b: Backend, extra: &str) {
    // Every range that misses goes to the origin with its `Range`.
    let policies = format!("{ITEMS}    range_passthrough_above: 0\n{extra}");
    let Some(h) = Harness::new(a, b, &policies, completing_origin).await else {
        return;
    };
    let seen_last = |h: &Harness| {
        let s = h.origin.last_seen().expect("the origin saw a request");
        (
            s.header("range").map(str::to_owned),
            s.header("if-range").map(str::to_owned),
        )
    };
    let part = |uri: &'static str| {
        let h = &h;
        async move {
            let got = get(h, uri, &[("range", "bytes=0-9")]).await;
            assert_part(a, &got, "bytes 0-9/36", "0123456789");
        }
    };

    // The origin honours the `Range` of the rest, with the same strong
    // tag: the client gets the exact whole, with the new response's
    // fields, and it is stored as a complete 200.
    part("/items/c").await;
    h.wait_for_sets(1).await;
    let whole = get(&h, "/items/c", &[]).await;
    assert_eq!(
        (whole.status, whole.text()),
        (200, BODY.into()),
        "{a:?} {whole:?}"
    );
    assert_eq!(whole.x_cache(), "MISS", "{a:?}");
    assert_eq!(whole.header("a"), Some("rest"), "{a:?} {whole:?}");
    assert_eq!(whole.header("content-range"), None, "{a:?} {whole:?}");
    if a.transport == Transport::Socket {
        assert_eq!(whole.header("content-length"), Some("36"), "{a:?}");
    }
    assert_eq!(
        seen_last(&h),
        (Some("bytes=10-".into()), Some("\"v1\"".into())),
        "{a:?}"
    );
    assert_eq!(h.calls(), 2, "{a:?}");
    h.wait_for_sets(2).await;
    let hit = get(&h, "/items/c", &[]).await;
    assert_eq!((hit.status, hit.x_cache()), (200, "HIT"), "{a:?} {hit:?}");
    assert_eq!(hit.text(), BODY, "{a:?}");
    let range = get(&h, "/items/c", &[("range", "bytes=30-")]).await;
    assert_part(a, &range, "bytes 30-35/36", "uvwxyz");
    assert_eq!(range.x_cache(), "HIT", "{a:?}");
    assert_eq!(h.calls(), 2, "{a:?}");

    // The representation changed meanwhile (another tag): its 206 is not
    // combined with the old part; the whole is fetched once more, and the
    // client gets the new whole, never a mix.
    part("/items/changed").await;
    h.wait_for_sets(3).await;
    let whole = get(&h, "/items/changed", &[]).await;
    assert_eq!(
        (whole.status, whole.text()),
        (200, CHANGED.into()),
        "{a:?} {whole:?}"
    );
    assert_eq!(whole.header("etag"), Some("\"v2\""), "{a:?}");
    assert_eq!(whole.header("a"), Some("whole"), "{a:?}");
    assert_eq!(h.calls(), 5, "{a:?}");
    let seen = h.origin.seen();
    assert_eq!(seen[3].header("range"), Some("bytes=10-"), "{a:?}");
    assert_eq!(seen_last(&h), (None, None), "{a:?}");
    h.wait_for_sets(4).await;
    let hit = get(&h, "/items/changed", &[]).await;
    assert_eq!(
        (hit.x_cache(), hit.text()),
        ("HIT", CHANGED.into()),
        "{a:?}"
    );

    // An origin that ignores the `Range` of the rest: its 200 is an
    // ordinary miss.
    part("/items/ignoring").await;
    h.wait_for_sets(5).await;
    let whole = get(&h, "/items/ignoring", &[]).await;
    assert_eq!(
        (whole.status, whole.text()),
        (200, BODY.into()),
        "{a:?} {whole:?}"
    );
    assert_eq!(whole.header("a"), Some("whole"), "{a:?}");
    assert_eq!(h.calls(), 7, "{a:?}");
    assert_eq!(seen_last(&h).0.as_deref(), Some("bytes=10-"), "{a:?}");
    h.wait_for_sets(6).await;
    let hit = get(&h, "/items/ignoring", &[]).await;
    assert_eq!((hit.x_cache(), hit.text()), ("HIT", BODY.into()), "{a:?}");

    // An answer other than a complete 200 to the cache's `Range` is that
    // request's alone: passed on, never stored under the plain key.
    part("/items/gone").await;
    h.wait_for_sets(7).await;
    for _ in 0..2 {
        let gone = get(&h, "/items/gone", &[]).await;
        assert_eq!(
            (gone.status, gone.x_cache()),
            (404, "MISS"),
            "{a:?} {gone:?}"
        );
    }
    assert_eq!(h.calls(), 10, "{a:?}");

    // A part with a weak tag only: nothing could show that an answer to
    // the `Range` of the rest is of its representation, so the whole is
    // asked for at once, in one request, never the rest first.
    part("/items/weak").await;
    h.wait_for_sets(8).await;
    let calls = h.calls();
    let whole = get(&h, "/items/weak", &[]).await;
    assert_eq!(
        (whole.status, whole.text()),
        (200, BODY.into()),
        "{a:?} {whole:?}"
    );
    assert_eq!(seen_last(&h), (None, None), "{a:?}");
    assert_eq!(h.calls(), calls + 1, "{a:?}: the rest was asked for first");
    h.wait_for_sets(9).await;

    // A HEAD and a conditional GET leave the part alone.
    part("/items/h").await;
    h.wait_for_sets(10).await;
    let calls = h.calls();
    let head = h.send("HEAD", "/items/h", &[]).await;
    assert_eq!(head.status, 200, "{a:?}");
    assert_eq!(seen_last(&h).0, None, "{a:?}");
    let cond = get(&h, "/items/h", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(cond.status, 200, "{a:?}");
    assert_eq!(seen_last(&h).0, None, "{a:?}");
    assert_eq!(h.calls(), calls + 2, "{a:?}");
}
