use super::*;
use proptest::prelude::*;

fn sample() -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![
            (
                "content-type".into(),
                Bytes::from_static(b"application/ld+json"),
            ),
            ("x-bin".into(), Bytes::from_static(&[0xff, 0x00, 0x7f])),
        ],
        // A body that is itself gzip data (magic 0x1f 0x8b) must come back as is.
        body: Bytes::from_static(&[0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]),
        compression: BodyEncoding::Identity,
        stored_at: UNIX_EPOCH + Duration::from_millis(1_732_000_000_123),
        initial_age: Duration::from_secs(3),
        freshness_lifetime: Duration::from_secs(60),
        stale_while_revalidate: Duration::from_secs(30),
        stale_if_error: Duration::from_secs(300),
        must_revalidate: true,
        no_cache: false,
        etag: Some(Bytes::from_static(b"\"v1\"")),
        last_modified: None,
        vary: vec!["accept-language".into()],
        tags: vec!["camera".into(), "policy:cams".into()],
    }
}

#[test]
fn round_trips_including_gzip_looking_bodies() {
    let e = sample();
    let bytes = e.encode().unwrap();
    assert_eq!(bytes.len(), e.encoded_len());
    let d = StoredResponse::decode(&bytes).unwrap();
    assert_eq!(d, e);
    assert_eq!(d.compression, BodyEncoding::Identity);
    assert_eq!(&d.body[..2], &[0x1f, 0x8b]);
}

#[test]
fn rejects_foreign_truncated_and_trailing_bytes() {
    assert_eq!(
        StoredResponse::decode(&Bytes::from_static(b"hello")),
        Err(EntryError::Foreign)
    );
    assert_eq!(
        StoredResponse::decode(&Bytes::new()),
        Err(EntryError::Foreign)
    );
    let bytes = sample().encode().unwrap();
    for cut in 0..bytes.len() {
        assert!(
            StoredResponse::decode(&bytes.slice(..cut)).is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(
        StoredResponse::decode(&Bytes::from(longer)),
        Err(EntryError::TrailingBytes(1))
    );
    let mut newer = bytes.to_vec();
    newer[4] = 99;
    assert_eq!(
        StoredResponse::decode(&Bytes::from(newer)),
        Err(EntryError::UnsupportedVersion(99))
    );
}

#[test]
fn freshness_and_storage_ttl() {
    let e = sample();
    let t0 = e.stored_at;
    assert_eq!(e.age(t0), Duration::from_secs(3));
    assert!(e.is_fresh(t0 + Duration::from_secs(56)));
    assert!(!e.is_fresh(t0 + Duration::from_secs(57)));
    assert_eq!(
        e.staleness(t0 + Duration::from_secs(67)),
        Duration::from_secs(10)
    );
    // 60 fresh + 300 stale-if-error - 3 already old.
    assert_eq!(e.storage_ttl(), Duration::from_secs(357));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut with_magic = b"UIPC\x01".to_vec();
        with_magic.extend_from_slice(&data);
        let _ = StoredResponse::decode(&Bytes::from(data));
        let _ = StoredResponse::decode(&Bytes::from(with_magic));
    }

    #[test]
    fn arbitrary_entries_round_trip(
        status in 100u16..600,
        body in proptest::collection::vec(any::<u8>(), 0..256),
        tags in proptest::collection::vec("[a-z:]{0,12}", 0..5),
        headers in proptest::collection::vec(("[a-z-]{1,12}", proptest::collection::vec(any::<u8>(), 0..20)), 0..6),
        fresh in 0u64..1_000_000,
        gzip in any::<bool>(),
        etag in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        last_modified in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        vary in proptest::collection::vec("[a-z-]{0,12}", 0..3),
    ) {
        let e = StoredResponse {
            status,
            body: Bytes::from(body),
            tags,
            headers: headers.into_iter().map(|(n, v)| (n.into(), Bytes::from(v))).collect(),
            freshness_lifetime: Duration::from_millis(fresh),
            compression: if gzip { BodyEncoding::Gzip } else { BodyEncoding::Identity },
            etag: etag.map(Bytes::from),
            last_modified: last_modified.map(Bytes::from),
            vary,
            ..StoredResponse::default()
        };
        let bytes = e.encode().unwrap();
        prop_assert_eq!(bytes.len(), e.encoded_len());
        prop_assert_eq!(StoredResponse::decode(&bytes).unwrap(), e.clone());
        // An answer's decoding leaves the tags out and nothing else.
        let untagged = StoredResponse { tags: Vec::new(), ..e };
        prop_assert_eq!(StoredResponse::decode_untagged(&bytes).unwrap(), untagged);
    }

    /// Bytes an answer decodes are bytes `decode` takes: a tag that is
    /// not text is refused by both, though the answer does not keep it.
    #[test]
    fn an_answer_refuses_what_decode_refuses(at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let mut bytes = sample().encode().unwrap().to_vec();
        let i = at.index(bytes.len());
        bytes[i] = to;
        let bytes = Bytes::from(bytes);
        let (whole, answer) = (StoredResponse::decode(&bytes), StoredResponse::decode_untagged(&bytes));
        prop_assert_eq!(whole.is_ok(), answer.is_ok());
        if let (Ok(w), Ok(a)) = (whole, answer) {
            prop_assert_eq!(StoredResponse { tags: Vec::new(), ..w }, a);
        }
    }
}

#[test]
fn a_tag_that_is_not_text_is_refused_by_an_answer_too() {
    let mut e = sample();
    e.tags = vec!["ab".into()];
    let mut bytes = e.encode().unwrap().to_vec();
    let at = bytes.windows(2).rposition(|w| w == b"ab").unwrap();
    bytes[at] = 0xff;
    let bytes = Bytes::from(bytes);
    assert!(StoredResponse::decode(&bytes).is_err());
    assert!(StoredResponse::decode_untagged(&bytes).is_err());
}

#[test]
fn the_storage_ttl_bound_is_the_largest_delta_seconds() {
    assert_eq!(MAX_STORAGE_TTL, crate::http::date::MAX_DELTA);
    let e = StoredResponse {
        freshness_lifetime: Duration::MAX,
        ..StoredResponse::default()
    };
    assert_eq!(e.storage_ttl(), crate::http::date::MAX_DELTA);
}
