//! Ranges through the request protocol every adapter follows: what a range
//! request sends the origin, what it gets while the whole is stored, and
//! the parts of stored entries in each representation (identity, the
//! cache's gzip, and gzip decompressed as it is read).

use bytes::Bytes;
use uip_cache_core::compress;
use uip_cache_core::{
    After, Begin, CacheConfig, CachedBody, FieldName, HttpCache, Plan, RequestView,
};
use uip_cache_testkit::wait_until;

use crate::owned;

const CONFIG: &str = "policies:\n  - name: big\n    pattern: \"/big/*\"\n    ttl: 60\n    range_passthrough_above: 1KB\n  - name: all\n    pattern: \"/*\"\n    ttl: 60\n    max_size: 32MB\n    compression: {min_size: 256}\n";

fn cache() -> HttpCache {
    HttpCache::with_memory_store(&CacheConfig::from_yaml_str(CONFIG).unwrap()).unwrap()
}

/// Text that compresses well, `n` bytes, each position telling its offset
/// apart from its neighbours'.
fn text(n: usize) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36])
            .collect::<Vec<u8>>(),
    )
}

/// What a response gave: status, headers, body.
struct Got {
    status: u16,
    headers: Vec<(FieldName, Bytes)>,
    body: Bytes,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }
}

fn read(mut body: CachedBody) -> Bytes {
    let announced = body.len();
    let mut all = Vec::new();
    while let Some(c) = body.next_chunk() {
        all.extend_from_slice(&c);
    }
    assert_eq!(
        all.len() as u64,
        announced,
        "the body is as long as announced"
    );
    Bytes::from(all)
}

/// What an origin answers.
struct Origin<'a> {
    status: u16,
    headers: &'a [(&'a str, &'a str)],
    body: Bytes,
}

/// Sends a request through the protocol; `origin` answers a fetch, fed
/// through the recording and the range reply as an adapter does. Also
/// returns the request headers the origin got (`None`: not asked).
async fn request(
    cache: &HttpCache,
    method: &str,
    path: &str,
    req_headers: &[(&str, &str)],
    origin: Option<Origin<'_>>,
) -> (Got, Option<Vec<(String, String)>>) {
    let hs = req_headers.to_vec();
    let req = RequestView::new(method, path, &hs);
    let Plan::Cache(plan) = cache.plan(&req) else {
        panic!("cached")
    };
    let ticket = match cache.begin(plan, &req, || owned(req_headers)).await {
        Begin::Respond(r) => {
            let got = Got {
                status: r.status,
                headers: r.headers,
                body: read(r.body),
            };
            return (got, None);
        }
        Begin::Fetch(t) => t,
        other => panic!("{other:?}"),
    };
    let o = origin.expect("the origin is asked");
    // The request the origin gets.
    let mut sent: Vec<(String, String)> = req_headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let changes = ticket.origin_header_changes();
    sent.retain(|(n, _)| !changes.remove.contains(&n.as_str()));
    let mut headers = owned(o.headers);
    headers.push((
        "content-length".into(),
        Bytes::from(o.body.len().to_string()),
    ));
    let got = match ticket.origin_responded(o.status, headers.clone()).await {
        After::Respond(r) => Got {
            status: r.status,
            headers: r.headers,
            body: read(r.body),
        },
        After::Pass(_) => Got {
            status: o.status,
            headers,
            body: o.body,
        },
        After::Record { mut recording, .. } => {
            recording.chunk(&o.body);
            recording.ended();
            Got {
                status: o.status,
                headers,
                body: o.body,
            }
        }
        After::Refetch(t) => panic!("no stored part is completed here: {t:?}"),
        After::Part {
            recording, reply, ..
        } => {
            if let Some(mut recording) = recording {
                recording.chunk(&o.body);
                recording.ended();
            }
            let status = reply.status();
            for edit in reply.header_edits() {
                if let uip_cache_core::HeaderEdit::Set(n, v) = edit {
                    headers.retain(|(h, _)| h != n);
                    headers.push((n.into(), v));
                }
            }
            let mut slicer = reply.into_body();
            let mut body = Vec::new();
            // The origin's body in small chunks, as it might arrive.
            for chunk in o.body.chunks(7) {
                slicer.push(Bytes::copy_from_slice(chunk));
                while let Some(piece) = slicer.pop() {
                    body.extend_from_slice(&piece);
                }
            }
            assert!(slicer.is_done());
            Got {
                status,
                headers,
                body: Bytes::from(body),
            }
        }
    };
    (got, Some(sent))
}

async fn sets(cache: &HttpCache, n: u64) {
    wait_until(cache, &format!("{n} entries stored"), |s| s.sets >= n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_that_misses_fetches_the_whole_answers_the_part_and_stores_the_whole() {
    let cache = cache();
    let body = text(100);
    let origin = Origin {
        status: 200,
        headers: &[("etag", "\"v1\""), ("content-type", "text/plain")],
        body: body.clone(),
    };
    let asked = [("range", "bytes=10-19"), ("if-range", "\"v1\"")];
    let (got, sent) = request(&cache, "GET", "/a", &asked, Some(origin)).await;
    let sent = sent.unwrap();
    assert!(
        !sent.iter().any(|(n, _)| n == "range" || n == "if-range"),
        "the origin is asked for the whole: {sent:?}"
    );
    assert_eq!(got.status, 206);
    assert_eq!(got.header("content-range"), Some("bytes 10-19/100"));
    assert_eq!(got.header("content-length"), Some("10"));
    assert_eq!(got.body, body.slice(10..20));
    sets(&cache, 1).await;

    // The whole is stored: a plain request is a complete 200 hit.
    let (whole, sent) = request(&cache, "GET", "/a", &[], None).await;
    assert!(sent.is_none());
    assert_eq!((whole.status, whole.body.clone()), (200, body.clone()));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(whole.header("x-cache"), Some("HIT"));
    // And a range of it is cut from the entry.
    let (part, _) = request(&cache, "GET", "/a", &[("range", "bytes=-3")], None).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, body.slice(97..));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_whose_if_range_fails_or_whose_length_is_unknown_gets_the_whole() {
    let cache = cache();
    let body = text(50);
    let origin = |etag| Origin {
        status: 200,
        headers: match etag {
            true => &[("etag", "\"v2\"")],
            false => &[],
        },
        body: body.clone(),
    };
    let asked = [("range", "bytes=0-4"), ("if-range", "\"v1\"")];
    let (got, _) = request(&cache, "GET", "/b", &asked, Some(origin(true))).await;
    assert_eq!((got.status, got.body.clone()), (200, body.clone()));

    // A miss that is not stored still gets its part.
    let headers = [("cache-control", "no-store")];
    let o = Origin {
        status: 200,
        headers: &headers,
        body: body.clone(),
    };
    let (got, _) = request(&cache, "GET", "/c", &[("range", "bytes=0-4")], Some(o)).await;
    assert_eq!((got.status, &got.body[..]), (206, &body[..5]));
    // An unsatisfiable one, a 416 of this request alone.
    let (got, _) = request(
        &cache,
        "GET",
        "/d",
        &[("range", "bytes=500-")],
        Some(origin(false)),
    )
    .await;
    assert_eq!(got.status, 416);
    assert_eq!(got.header("content-range"), Some("bytes */50"));
    assert!(got.body.is_empty());
    sets(&cache, 2).await;
    let (whole, _) = request(&cache, "GET", "/d", &[], None).await;
    assert_eq!((whole.status, whole.body), (200, body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_of_each_representation_of_a_gzip_entry() {
    let cache = cache();
    // Larger than the inline limit: decompressed as it is read.
    let body = text(3 * compress::INLINE_LIMIT + 11);
    let len = body.len();
    let now = std::time::SystemTime::now();
    let date = httpdate::fmt_http_date(now);
    let modified = httpdate::fmt_http_date(now - std::time::Duration::from_secs(86_400));
    let origin = Origin {
        status: 200,
        headers: &[
            ("etag", "\"z\""),
            ("content-type", "text/plain"),
            ("last-modified", &modified),
            ("date", &date),
        ],
        body: body.clone(),
    };
    request(
        &cache,
        "GET",
        "/z",
        &[("accept-encoding", "gzip")],
        Some(origin),
    )
    .await;
    sets(&cache, 1).await;

    // Identity: ranges of the decompressed bytes, far into the body.
    let asked = format!("bytes={}-{}", len - 20, len - 11);
    let (got, _) = request(&cache, "GET", "/z", &[("range", &asked)], None).await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, body.slice(len - 20..len - 10));
    assert_eq!(got.header("content-encoding"), None);
    assert_eq!(got.header("etag"), Some("\"z\""));
    // Several of them: a multipart body.
    let asked = format!("bytes=0-2, {}-", len - 2);
    let (got, _) = request(&cache, "GET", "/z", &[("range", &asked)], None).await;
    assert_eq!(got.status, 206);
    let parts = multipart(&got);
    assert_eq!(
        parts,
        [
            (format!("bytes 0-2/{len}"), body.slice(..3)),
            (
                format!("bytes {}-{}/{len}", len - 2, len - 1),
                body.slice(len - 2..)
            ),
        ]
    );
    // A date If-Range of the identity bytes holds (Date is later).
    let lm = [("range", "bytes=1-1"), ("if-range", modified.as_str())];
    let (got, _) = request(&cache, "GET", "/z", &lm, None).await;
    assert_eq!((got.status, &got.body[..]), (206, &body[1..2]));

    // gzip: ranges of the gzip bytes, with the gzip's own validator.
    let gz = [("accept-encoding", "gzip")];
    let (whole_gz, _) = request(&cache, "GET", "/z", &gz, None).await;
    assert_eq!(whole_gz.header("content-encoding"), Some("gzip"));
    let (got, _) = request(
        &cache,
        "GET",
        "/z",
        &[("accept-encoding", "gzip"), ("range", "bytes=0-9")],
        None,
    )
    .await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, whole_gz.body.slice(..10));
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert_eq!(got.header("etag"), Some("W/\"z-gzip\""));
    let total = whole_gz.body.len();
    assert_eq!(
        got.header("content-range"),
        Some(format!("bytes 0-9/{total}").as_str())
    );
    // Its validator is weak, and its bytes are the cache's: If-Range never holds.
    for cond in ["W/\"z-gzip\"", "\"z\"", modified.as_str()] {
        let asked = [
            ("accept-encoding", "gzip"),
            ("range", "bytes=0-9"),
            ("if-range", cond),
        ];
        let (got, _) = request(&cache, "GET", "/z", &asked, None).await;
        assert_eq!(got.status, 200, "{cond}");
        assert_eq!(got.body, whole_gz.body, "{cond}");
    }
}

/// The parts of a `multipart/byteranges` body: `Content-Range` and bytes.
fn multipart(got: &Got) -> Vec<(String, Bytes)> {
    let ct = got.header("content-type").unwrap();
    let boundary = ct
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{ct}"));
    assert!(
        boundary.len() >= 16,
        "an unpredictable boundary: {boundary}"
    );
    let delimiter = format!("--{boundary}");
    let body = &got.body[..];
    let text = String::from_utf8_lossy(body);
    assert!(text.ends_with(&format!("\r\n{delimiter}--\r\n")), "{text}");
    let mut parts = Vec::new();
    let mut at = 0;
    while let Some(start) = find(&body[at..], delimiter.as_bytes()).map(|i| at + i) {
        let head_start = start + delimiter.len();
        if body[head_start..].starts_with(b"--") {
            break;
        }
        let head_end = head_start + find(&body[head_start..], b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&body[head_start..head_end]).into_owned();
        let data_start = head_end + 4;
        let next =
            data_start + find(&body[data_start..], format!("\r\n{delimiter}").as_bytes()).unwrap();
        let range = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_owned();
        parts.push((range, Bytes::copy_from_slice(&body[data_start..next])));
        at = next + 2;
    }
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_gets_the_head_of_the_part() {
    let cache = cache();
    let body = text(40);
    let origin = Origin {
        status: 200,
        headers: &[],
        body: body.clone(),
    };
    request(&cache, "GET", "/h", &[], Some(origin)).await;
    sets(&cache, 1).await;
    let (got, _) = request(&cache, "HEAD", "/h", &[("range", "bytes=5-9")], None).await;
    assert_eq!(got.status, 206);
    assert_eq!(got.header("content-range"), Some("bytes 5-9/40"));
    assert_eq!(got.header("content-length"), Some("5"));
    assert!(got.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_representations_send_their_range_to_the_origin() {
    let cache = cache();
    let partial = Origin {
        status: 206,
        headers: &[
            ("cache-control", "max-age=600"),
            ("content-range", "bytes 2000-2009/5000"),
        ],
        body: text(10),
    };
    // A first byte past `range_passthrough_above` (1KB): the representation
    // is larger, and the origin answers the range itself.
    let asked = [("range", "bytes=2000-2009")];
    let (got, sent) = request(&cache, "GET", "/big/a", &asked, Some(partial)).await;
    let sent = sent.unwrap();
    assert!(
        sent.iter()
            .any(|(n, v)| n == "range" && v == "bytes=2000-2009"),
        "{sent:?}"
    );
    assert_eq!(got.status, 206);
    // Stored as a part, under a key of its own: it answers ranges within
    // it, and nothing else.
    sets(&cache, 1).await;
    let within = [("range", "bytes=2002-2004")];
    let (got, sent) = request(&cache, "GET", "/big/a", &within, None).await;
    assert!(sent.is_none(), "a hit");
    assert_eq!(got.status, 206);
    assert_eq!(got.header("content-range"), Some("bytes 2002-2004/5000"));
    assert_eq!(got.body, text(10).slice(2..5));
    let whole = Origin {
        status: 200,
        headers: &[("cache-control", "no-store")],
        body: text(5000),
    };
    let (got, sent) = request(&cache, "GET", "/big/a", &[], Some(whole)).await;
    assert!(sent.is_some(), "the whole comes from the origin");
    assert_eq!((got.status, got.body.len()), (200, 5000));

    // A range near the start: the whole is fetched (here not storable);
    // it turns out larger than the limit, so the next range requests for
    // it go to the origin with their range.
    let whole = Origin {
        status: 200,
        headers: &[("cache-control", "no-store")],
        body: text(5000),
    };
    let (got, sent) = request(
        &cache,
        "GET",
        "/big/b",
        &[("range", "bytes=0-9")],
        Some(whole),
    )
    .await;
    assert!(!sent.unwrap().iter().any(|(n, _)| n == "range"));
    assert_eq!((got.status, got.body.len()), (206, 10));
    let partial = Origin {
        status: 206,
        headers: &[("content-range", "bytes 10-19/5000")],
        body: text(10),
    };
    let (got, sent) = request(
        &cache,
        "GET",
        "/big/b",
        &[("range", "bytes=10-19")],
        Some(partial),
    )
    .await;
    assert!(sent
        .unwrap()
        .iter()
        .any(|(n, v)| n == "range" && v == "bytes=10-19"));
    assert_eq!(got.status, 206);
    // A smaller one is fetched whole again.
    let small = Origin {
        status: 200,
        headers: &[("cache-control", "no-store")],
        body: text(500),
    };
    let (got, sent) = request(
        &cache,
        "GET",
        "/big/c",
        &[("range", "bytes=0-9")],
        Some(small),
    )
    .await;
    assert!(!sent.unwrap().iter().any(|(n, _)| n == "range"));
    assert_eq!(got.status, 206);
}

/// A range the origin answers itself (`range_passthrough_above`) is never
/// stored: its fetch takes no lock on the key, so a plain GET that comes
/// while the origin is still answering it leads its own fetch at once
/// instead of waiting for it as for a leader.
#[tokio::test]
async fn a_range_passed_to_the_origin_holds_up_no_request_for_the_key() {
    let cache = cache();
    let range = [("range", "bytes=2000-2009")];
    let req = RequestView::new("GET", "/big/held", &range);
    let Plan::Cache(plan) = cache.plan(&req) else {
        panic!("cached")
    };
    let Begin::Fetch(passing) = cache.begin(plan, &req, || owned(&range)).await else {
        panic!("a miss")
    };
    assert!(
        format!("{passing:?}").contains("leader: false"),
        "{passing:?}"
    );
    let none: [(&str, &str); 0] = [];
    let plain = RequestView::new("GET", "/big/held", &none);
    let Plan::Cache(plan) = cache.plan(&plain) else {
        panic!("cached")
    };
    let begun = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        cache.begin(plan, &plain, Vec::new),
    )
    .await
    .expect("the plain GET is not held up by the range's fetch");
    let Begin::Fetch(plain) = begun else {
        panic!("a miss")
    };
    assert!(format!("{plain:?}").contains("leader: true"), "{plain:?}");
    assert_eq!(cache.stats().snapshot().coalesced, 0);
    drop(passing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_ranges_of_a_large_gzip_entry_get_the_whole() {
    // Past 1 MiB of identity bytes, a range of a gzip entry for a client
    // that does not take gzip would decompress to the end for one byte.
    let cache = cache();
    let body = text((1 << 20) + 1);
    let len = body.len();
    let origin = Origin {
        status: 200,
        headers: &[("etag", "\"big\""), ("content-type", "text/plain")],
        body: body.clone(),
    };
    request(
        &cache,
        "GET",
        "/large",
        &[("accept-encoding", "gzip")],
        Some(origin),
    )
    .await;
    sets(&cache, 1).await;

    let (got, _) = request(&cache, "GET", "/large", &[("range", "bytes=-1")], None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), len);
    // The gzip bytes themselves are sliced as before.
    let gz = [("accept-encoding", "gzip"), ("range", "bytes=-1")];
    let (got, _) = request(&cache, "GET", "/large", &gz, None).await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body.len(), 1);
    assert_eq!(got.header("content-encoding"), Some("gzip"));
}
