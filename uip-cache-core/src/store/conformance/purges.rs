//! Purges: by tag, by URL pattern, after an unsafe request (host-scoped),
//! and soft purges.

use bytes::Bytes;

use super::{ns, MINUTE};
use crate::key::KeySpec;
use crate::pattern::UrlPattern;
use crate::request::RequestView;
use crate::store::{PutOptions, Storage};

/// Tag invalidation removes exactly the entries carrying any of the tags.
pub async fn tags(store: &(impl Storage + ?Sized)) {
    let n = ns("tags");
    let (a, b, c) = (format!("{n}:a"), format!("{n}:b"), format!("{n}:c"));
    let (k1, k2, k3) = (format!("{n}:1"), format!("{n}:2"), format!("{n}:3"));
    let ab = vec![a.clone(), b.clone()];
    let only_b = vec![b.clone()];
    let only_c = vec![c.clone()];
    store
        .put(
            &k1,
            Bytes::from_static(b"1"),
            PutOptions::new(MINUTE, "/t1").tags(&ab),
        )
        .await
        .expect("put");
    store
        .put(
            &k2,
            Bytes::from_static(b"2"),
            PutOptions::new(MINUTE, "/t2").tags(&only_b),
        )
        .await
        .expect("put");
    store
        .put(
            &k3,
            Bytes::from_static(b"3"),
            PutOptions::new(MINUTE, "/t3").tags(&only_c),
        )
        .await
        .expect("put");

    assert_eq!(
        store
            .invalidate_tags(std::slice::from_ref(&a))
            .await
            .expect("invalidate"),
        1,
        "tags: tag a"
    );
    assert_eq!(store.get(&k1).await.expect("get"), None, "tags: k1 removed");
    assert!(
        store.get(&k2).await.expect("get").is_some(),
        "tags: k2 kept"
    );
    assert!(
        store.get(&k3).await.expect("get").is_some(),
        "tags: k3 kept"
    );
    assert_eq!(
        store.invalidate_tags(&[a]).await.expect("invalidate"),
        0,
        "tags: tag a again"
    );
    assert_eq!(
        store
            .invalidate_tags(&[b, c, format!("{n}:unknown")])
            .await
            .expect("invalidate"),
        2,
        "tags: tags b and c"
    );
    assert_eq!(store.get(&k2).await.expect("get"), None, "tags: k2 removed");
    assert_eq!(store.get(&k3).await.expect("get"), None, "tags: k3 removed");
}

/// Rewriting an entry replaces its tags.
pub async fn tags_replaced_on_overwrite(store: &(impl Storage + ?Sized)) {
    let n = ns("retag");
    let k = format!("{n}:k");
    let (x, y) = (vec![format!("{n}:x")], vec![format!("{n}:y")]);
    store
        .put(
            &k,
            Bytes::from_static(b"1"),
            PutOptions::new(MINUTE, "/r").tags(&x),
        )
        .await
        .expect("put");
    store
        .put(
            &k,
            Bytes::from_static(b"2"),
            PutOptions::new(MINUTE, "/r").tags(&y),
        )
        .await
        .expect("put");
    assert_eq!(
        store.invalidate_tags(&x).await.expect("invalidate"),
        0,
        "retag: old tag no longer applies"
    );
    assert!(
        store.get(&k).await.expect("get").is_some(),
        "retag: entry kept"
    );
    assert_eq!(
        store.invalidate_tags(&y).await.expect("invalidate"),
        1,
        "retag: new tag applies"
    );
}

/// URL-pattern invalidation: globs over paths, query constraints in any order,
/// exact URLs.
pub async fn patterns(store: &(impl Storage + ?Sized)) {
    let n = ns("patterns");
    let base = format!("/{n}/ngsi-ld/v1/entities");
    let entries = [
        ("e1", format!("{base}/urn:a:1"), None),
        ("e2", format!("{base}/urn:a:2"), None),
        ("cam", base.clone(), Some("limit=10&type=Camera")),
        ("sensor", base.clone(), Some("type=Sensor")),
        ("other", format!("/{n}/other/x"), None),
    ];
    for (id, path, query) in &entries {
        store
            .put(
                &format!("{n}:{id}"),
                Bytes::from_static(b"v"),
                PutOptions::new(MINUTE, path).query(*query),
            )
            .await
            .expect("put");
    }
    let present = |id: &str| {
        let k = format!("{n}:{id}");
        async move { store.get(&k).await.expect("get").is_some() }
    };

    let cams = UrlPattern::glob(&format!("{base}?type=Camera*")).unwrap();
    assert_eq!(
        store.invalidate_pattern(&cams).await.expect("invalidate"),
        1,
        "patterns: query constraint"
    );
    assert!(
        !present("cam").await && present("sensor").await,
        "patterns: only the Camera query went"
    );

    let by_id = UrlPattern::glob(&format!("{base}/*")).unwrap();
    assert_eq!(
        store.invalidate_pattern(&by_id).await.expect("invalidate"),
        2,
        "patterns: path glob"
    );
    assert!(
        !present("e1").await && !present("e2").await && present("sensor").await,
        "patterns: glob scope"
    );

    let exact = UrlPattern::exact(&format!("{base}?type=Sensor"));
    assert_eq!(
        store.invalidate_pattern(&exact).await.expect("invalidate"),
        1,
        "patterns: exact URL"
    );
    let none = UrlPattern::glob(&format!("/{n}/nothing/*")).unwrap();
    assert_eq!(
        store.invalidate_pattern(&none).await.expect("invalidate"),
        0,
        "patterns: no match"
    );
    assert!(present("other").await, "patterns: unrelated path kept");
}

/// The purge after an unsafe request (RFC 9111 section 4.4) removes the
/// entries of its target URI on its own host only: a `POST /x` on
/// `attacker.example` leaves `victim.example`'s `/x`, while one on
/// `victim.example` removes every entry of that URL there (each variant),
/// and no other URL's. Entries are tagged as the cache tags them (the
/// host-less `path:` tag, and the [`KeySpec::target_tag`] the purge removes),
/// and read once before the purge, so that a tiered store has them in its
/// first level too.
pub async fn unsafe_purge_is_host_scoped(store: &(impl Storage + ?Sized)) {
    let n = ns("unsafe-purge");
    let path = format!("/{n}/x");
    let spec = KeySpec::default();
    let none: [(&str, &str); 0] = [];
    let target = |host: &str, query: Option<&str>| {
        spec.target_tag(
            &RequestView::new("GET", &path, &none)
                .query(query)
                .authority(Some(host)),
        )
    };
    let entries = [
        ("victim", "victim.example", None),
        ("victim-variant", "victim.example", None),
        ("victim-query", "victim.example", Some("page=2")),
        ("attacker", "attacker.example", None),
    ];
    for (id, host, query) in entries {
        let tags = vec![format!("path:{path}"), target(host, query)];
        let k = format!("{n}:{id}");
        store
            .put(
                &k,
                Bytes::from_static(b"v"),
                PutOptions::new(MINUTE, &path).tags(&tags).query(query),
            )
            .await
            .expect("put");
        assert!(store.get(&k).await.expect("get").is_some(), "put {id}");
    }
    let present = |id: &str| {
        let k = format!("{n}:{id}");
        async move { store.get(&k).await.expect("get").is_some() }
    };

    // POST /x on attacker.example: its own entry only.
    assert_eq!(
        store
            .invalidate_tags(&[target("Attacker.Example", None)])
            .await
            .expect("invalidate"),
        1,
        "unsafe purge: the attacker's host"
    );
    assert!(
        !present("attacker").await,
        "unsafe purge: attacker's entry removed"
    );
    for id in ["victim", "victim-variant", "victim-query"] {
        assert!(
            present(id).await,
            "unsafe purge: {id} kept after another host's write"
        );
    }
    // POST /x on victim.example: both variants of /x, not /x?page=2.
    assert_eq!(
        store
            .invalidate_tags(&[target("victim.example", None)])
            .await
            .expect("invalidate"),
        2,
        "unsafe purge: the victim's host"
    );
    assert!(
        !present("victim").await && !present("victim-variant").await,
        "unsafe purge: every variant of the target removed"
    );
    assert!(
        present("victim-query").await,
        "unsafe purge: another query kept"
    );
}

/// A soft purge rewrites the entries a tag or pattern selects, leaves the
/// others and those the rewrite declines, and keeps them indexed (a hard
/// purge still finds them). Skipped by stores without soft purge.
pub async fn soft_purge(store: &(impl Storage + ?Sized)) {
    let n = ns("soft");
    let (t, other) = (format!("{n}:t"), format!("{n}:o"));
    let (k1, k2, k3) = (format!("{n}:1"), format!("{n}:2"), format!("{n}:3"));
    let (p1, p2, p3) = (
        format!("/{n}/s/1"),
        format!("/{n}/s/2"),
        format!("/{n}/o/3"),
    );
    for (k, p, tag, v) in [
        (&k1, &p1, &t, "v1"),
        (&k2, &p2, &t, "v2"),
        (&k3, &p3, &other, "v3"),
    ] {
        let tags = vec![tag.clone()];
        store
            .put(k, Bytes::from(v), PutOptions::new(MINUTE, p).tags(&tags))
            .await
            .expect("put");
    }
    let soft = |b: &Bytes| Some((Bytes::from([&b"soft:"[..], &b[..]].concat()), MINUTE));
    let Some(rewritten) = store
        .soft_invalidate_tags(std::slice::from_ref(&t), &soft)
        .await
        .expect("soft purge")
    else {
        return;
    };
    assert_eq!(rewritten, 2, "soft: tag");
    // A tag whose only entry is gone (its index member may outlive it).
    let (gone, gone_tag) = (format!("{n}:gone"), vec![format!("{n}:g")]);
    store
        .put(
            &gone,
            Bytes::from("g"),
            PutOptions::new(MINUTE, &p1).tags(&gone_tag),
        )
        .await
        .expect("put");
    store.delete(&gone).await.expect("delete");
    assert_eq!(
        store
            .soft_invalidate_tags(&gone_tag, &soft)
            .await
            .expect("soft purge of nothing"),
        Some(0),
        "soft: a tag of deleted entries"
    );
    let get = |k: &String| {
        let k = k.clone();
        async move { store.get(&k).await.expect("get") }
    };
    assert_eq!(get(&k1).await.as_deref(), Some(&b"soft:v1"[..]), "soft: k1");
    assert_eq!(get(&k2).await.as_deref(), Some(&b"soft:v2"[..]), "soft: k2");
    assert_eq!(
        get(&k3).await.as_deref(),
        Some(&b"v3"[..]),
        "soft: k3 untouched"
    );
    let declined = |_: &Bytes| None;
    assert_eq!(
        store
            .soft_invalidate_tags(std::slice::from_ref(&t), &declined)
            .await
            .expect("soft purge"),
        Some(0),
        "soft: declined"
    );
    assert_eq!(
        get(&k1).await.as_deref(),
        Some(&b"soft:v1"[..]),
        "soft: k1 kept"
    );
    let pattern = UrlPattern::glob(&format!("/{n}/o/*")).expect("pattern");
    assert_eq!(
        store
            .soft_invalidate_pattern(&pattern, &soft)
            .await
            .expect("soft purge"),
        Some(1),
        "soft: pattern"
    );
    assert_eq!(get(&k3).await.as_deref(), Some(&b"soft:v3"[..]), "soft: k3");
    assert_eq!(
        store.invalidate_tags(&[t]).await.expect("purge"),
        2,
        "soft: still tagged"
    );
    assert_eq!(
        store.invalidate_pattern(&pattern).await.expect("purge"),
        1,
        "soft: still indexed"
    );
    for k in [&k1, &k2, &k3] {
        assert_eq!(get(k).await, None, "soft: {k} removed");
    }
}
