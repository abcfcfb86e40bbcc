//! Transformations the origin forbade, through the request flow every
//! adapter follows: the cache compresses only what it may, a gzip it made
//! is a representation with its own validator and `Vary`, conditionals are
//! answered per representation, and large bodies are decompressed as they
//! are read.

use bytes::Bytes;
use uip_cache_core::compress;
use uip_cache_core::{
    After, BodyEncoding, CacheConfig, CachedBody, CachedResponse, FieldName, HttpCache, Plan,
    RequestView, StoredResponse,
};
use uip_cache_testkit::wait_until;

use crate::owned;

const CONFIG: &str = "policies:\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n    max_size: 32MB\n    compression: {min_size: 256}\n";

fn cache() -> HttpCache {
    HttpCache::with_memory_store(&CacheConfig::from_yaml_str(CONFIG).unwrap()).unwrap()
}

/// JSON-like text that compresses well, `n` bytes.
fn json(n: usize) -> Bytes {
    let unit = br#"{"id":"urn:ngsi-ld:Camera:001","type":"Camera","status":{"value":"on"}},"#;
    Bytes::from(unit.iter().copied().cycle().take(n).collect::<Vec<u8>>())
}

/// What the origin answers: status, headers, body.
type Origin<'a> = (u16, &'a [(&'a str, &'a str)], Bytes);

/// What the request gets: the cached answer, or the origin's (`origin`
/// answers with status, headers and body, recorded as an adapter would).
async fn request(
    cache: &HttpCache,
    method: &str,
    path: &str,
    req_headers: &[(&str, &str)],
    origin: Option<Origin<'_>>,
) -> Got {
    let hs = req_headers.to_vec();
    let req = RequestView::new(method, path, &hs);
    let Plan::Cache(plan) = cache.plan(&req) else {
        panic!("cached")
    };
    let ticket = match cache.begin(plan, &req, || owned(req_headers)).await {
        uip_cache_core::Begin::Respond(r) => return r.into(),
        uip_cache_core::Begin::Fetch(t) => t,
        other => panic!("{other:?}"),
    };
    let (status, headers, body) = origin.expect("the origin is not asked");
    match ticket.origin_responded(status, owned(headers)).await {
        After::Respond(r) => r.into(),
        After::Record { mut recording, .. } => {
            recording.chunk(&body);
            recording.ended();
            let mut h = owned(headers);
            h.push(("content-length".into(), Bytes::from(body.len().to_string())));
            from_origin(status, h, body)
        }
        After::Pass(_) => from_origin(status, owned(headers), body),
        other => panic!("no range was asked for: {other:?}"),
    }
}

/// The stored entry of `path` for `req_headers`, once the store has it.
async fn stored(cache: &HttpCache, path: &str, req_headers: &[(&str, &str)]) -> StoredResponse {
    let hs = req_headers.to_vec();
    let req = RequestView::new("GET", path, &hs);
    let Plan::Cache(plan) = cache.plan(&req) else {
        panic!("cached")
    };
    loop {
        // Counted before the lookup: a write after it ends the wait below.
        let sets = cache.stats().snapshot().sets;
        if let Some(e) = cache.lookup(&plan, &req).await {
            return e;
        }
        wait_until(cache, &format!("{path} is stored"), |s| s.sets > sets).await;
    }
}

fn header<'a>(r: &'a Got, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

fn vary_names(r: &Got) -> Vec<String> {
    let mut names: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "vary")
        .flat_map(|(_, v)| {
            std::str::from_utf8(v)
                .unwrap()
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names
}

/// A response as the client gets it, from the cache or from the origin.
struct Got {
    status: u16,
    headers: Vec<(FieldName, Bytes)>,
    body: CachedBody,
}

impl From<CachedResponse> for Got {
    fn from(r: CachedResponse) -> Self {
        Got {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

fn from_origin(status: u16, headers: Vec<(FieldName, Bytes)>, body: Bytes) -> Got {
    Got {
        status,
        headers,
        body: body.into(),
    }
}

const GZIP: (&str, &str) = ("accept-encoding", "gzip, br");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transform_responses_are_stored_and_served_as_the_origin_sent_them() {
    let cache = cache();
    let body = json(8192);
    for (i, forbidding) in [
        ("cache-control", "max-age=60, no-transform"),
        ("cdn-cache-control", "max-age=60, no-transform"),
        // Consumed by the cache: the entry does not keep it, the rule holds.
        ("surrogate-control", "max-age=60, no-transform"),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/nt{i}");
        let headers = [("content-type", "application/json"), forbidding];
        request(
            &cache,
            "GET",
            &path,
            &[GZIP],
            Some((200, &headers, body.clone())),
        )
        .await;
        let e = stored(&cache, &path, &[GZIP]).await;
        assert_eq!(e.compression, BodyEncoding::Identity, "{forbidding:?}");
        let r = request(&cache, "GET", &path, &[GZIP], None).await;
        assert_eq!(header(&r, "x-cache"), Some("HIT"));
        assert_eq!(header(&r, "content-encoding"), None, "{forbidding:?}");
        assert_eq!(r.body.collect().unwrap(), body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_representation_has_its_validator_and_vary_and_conditionals_follow_it() {
    let cache = cache();
    let body = json(8192);
    let origin = [
        ("content-type", "application/json"),
        ("etag", "\"v1\""),
        ("vary", "Accept-Language"),
        ("accept-ranges", "bytes"),
    ];
    request(
        &cache,
        "GET",
        "/e",
        &[GZIP],
        Some((200, &origin, body.clone())),
    )
    .await;
    assert_eq!(
        stored(&cache, "/e", &[GZIP]).await.compression,
        BodyEncoding::Gzip
    );

    let gz = request(&cache, "GET", "/e", &[GZIP], None).await;
    assert_eq!(header(&gz, "content-encoding"), Some("gzip"));
    assert_eq!(header(&gz, "etag"), Some("W/\"v1-gzip\""));
    assert_eq!(vary_names(&gz), ["accept-encoding", "accept-language"]);
    // The cache answers ranges of the gzip bytes it sends (not the origin's
    // ranges of its own bytes).
    assert_eq!(header(&gz, "accept-ranges"), Some("bytes"));
    let accept_ranges_fields = |r: &Got| {
        r.headers
            .iter()
            .filter(|(n, _)| n == "accept-ranges")
            .count()
    };
    assert_eq!(accept_ranges_fields(&gz), 1);
    let z = gz.body.collect().unwrap();
    assert_eq!(compress::gunzip(&z, 1 << 20).unwrap(), body);

    let plain = request(&cache, "GET", "/e", &[], None).await;
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(header(&plain, "etag"), Some("\"v1\""));
    assert_eq!(header(&plain, "accept-ranges"), Some("bytes"));
    assert_eq!(
        accept_ranges_fields(&plain),
        1,
        "the cache's, not beside the origin's"
    );
    assert_eq!(vary_names(&plain), ["accept-encoding", "accept-language"]);
    assert_eq!(plain.body.collect().unwrap(), body);

    // If-None-Match is answered for the representation the request gets.
    // (request headers, status, ETag of the answer)
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, Option<&'a str>);
    let cases: &[Case<'_>] = &[
        (
            &[GZIP, ("if-none-match", "W/\"v1-gzip\"")],
            304,
            Some("W/\"v1-gzip\""),
        ),
        (
            &[GZIP, ("if-none-match", "\"v1-gzip\"")],
            304,
            Some("W/\"v1-gzip\""),
        ),
        (&[("if-none-match", "\"v1\"")], 304, Some("\"v1\"")),
        // The gzip's validator does not validate the identity body ...
        (&[("if-none-match", "W/\"v1-gzip\"")], 200, Some("\"v1\"")),
        // ... nor the origin's the gzip.
        (
            &[GZIP, ("if-none-match", "\"v1\"")],
            200,
            Some("W/\"v1-gzip\""),
        ),
        // A request that forbids transformation gets the origin's bytes.
        (
            &[
                GZIP,
                ("cache-control", "no-transform"),
                ("if-none-match", "\"v1\""),
            ],
            304,
            Some("\"v1\""),
        ),
    ];
    for (req, status, etag) in cases {
        let r = request(&cache, "GET", "/e", req, None).await;
        assert_eq!(r.status, *status, "{req:?}");
        assert_eq!(header(&r, "etag"), *etag, "{req:?}");
        assert_eq!(
            vary_names(&r),
            ["accept-encoding", "accept-language"],
            "{req:?}"
        );
    }
    let r = request(
        &cache,
        "GET",
        "/e",
        &[GZIP, ("cache-control", "no-transform")],
        None,
    )
    .await;
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(r.body.collect().unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_gzip_entry_is_decompressed_as_it_is_read() {
    let cache = cache();
    let body = json(6 << 20);
    let origin = [("content-type", "application/json"), ("etag", "\"big\"")];
    request(
        &cache,
        "GET",
        "/big",
        &[GZIP],
        Some((200, &origin, body.clone())),
    )
    .await;
    let e = stored(&cache, "/big", &[GZIP]).await;
    assert_eq!(e.compression, BodyEncoding::Gzip);
    assert!(e.body.len() < body.len() / 10);

    let r = request(&cache, "GET", "/big", &[], None).await;
    assert_eq!(header(&r, "content-length"), Some("6291456"));
    let mut chunks = r.body.into_bytes().expect_err("read in chunks");
    assert_eq!(chunks.len(), body.len() as u64);
    let mut got = Vec::with_capacity(body.len());
    while let Some(c) = chunks.next_chunk() {
        assert!(c.len() <= compress::INLINE_LIMIT);
        got.extend_from_slice(&c);
    }
    assert!(got == body, "the decompressed body differs");

    let head = request(&cache, "HEAD", "/big", &[], None).await;
    assert_eq!(header(&head, "content-length"), Some("6291456"));
    assert!(head.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_that_forbids_transformation_turns_the_entry_back_into_the_origins_bytes() {
    let cache = cache();
    let body = json(8192);
    let first = [("cache-control", "max-age=0"), ("etag", "\"r1\"")];
    request(
        &cache,
        "GET",
        "/r",
        &[GZIP],
        Some((200, &first, body.clone())),
    )
    .await;
    assert_eq!(
        stored(&cache, "/r", &[GZIP]).await.compression,
        BodyEncoding::Gzip
    );
    let not_modified = [
        ("cache-control", "max-age=60"),
        ("surrogate-control", "no-transform"),
        ("etag", "\"r1\""),
    ];
    let r = request(
        &cache,
        "GET",
        "/r",
        &[GZIP],
        Some((304, &not_modified, Bytes::new())),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(header(&r, "etag"), Some("\"r1\""));
    assert_eq!(r.body.collect().unwrap(), body);
    loop {
        let sets = cache.stats().snapshot().sets;
        if stored(&cache, "/r", &[GZIP]).await.compression == BodyEncoding::Identity {
            break;
        }
        wait_until(&cache, "the entry is stored again, not gzip", |s| {
            s.sets > sets
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origins_own_encoding_is_passed_on_never_inflated() {
    let cache = cache();
    // A gzip bomb from the origin: 8 MB of zeros in a few kilobytes.
    let bomb = match compress::gzip_if_worth_it(&vec![0u8; 8 << 20], 0, 9) {
        compress::Compressed::Gzip(z) => Bytes::from(z),
        _ => unreachable!(),
    };
    let origin = [("content-encoding", "gzip"), ("vary", "accept-encoding")];
    request(
        &cache,
        "GET",
        "/bomb",
        &[GZIP],
        Some((200, &origin, bomb.clone())),
    )
    .await;
    let e = stored(&cache, "/bomb", &[GZIP]).await;
    assert_eq!(e.compression, BodyEncoding::Identity);
    let r = request(&cache, "GET", "/bomb", &[GZIP], None).await;
    assert_eq!(header(&r, "content-encoding"), Some("gzip"));
    assert_eq!(r.body.collect().unwrap(), bomb);
}
