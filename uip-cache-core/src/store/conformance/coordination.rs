//! Coordination: the epoch, the invalidation log and leases, as
//! [`Coordination`] documents them. A store shared between instances
//! ([`Sharing::Shared`]) must keep a log and grant a lease to one holder at
//! a time; a store used by one process alone ([`Sharing::Local`]) must
//! answer as the trait's defaults do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ns, MINUTE};
use crate::invalidate::Invalidation;
use crate::pattern::UrlPattern;
use crate::store::{Coordination, Store};

/// What a store promises the instances that use it, and so which
/// [`Coordination`] checks it must pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sharing {
    /// Used by one process alone: it implements none of [`Coordination`],
    /// or answers as its defaults do (the epoch stays 0, the log is empty,
    /// every lease is granted).
    Local,
    /// Shared between instances (Redis): every recorded invalidation raises
    /// the epoch and can be read back, and a lease has one holder at a time
    /// until it is released or expires.
    Shared,
}

/// The line of an invalidation of the URL `path` (no query).
fn url_line(path: &str) -> String {
    Invalidation::Pattern(UrlPattern::exact(path)).to_line()
}

/// The line of an invalidation of `tags`.
fn tags_line(tags: &[String]) -> String {
    Invalidation::Tags(tags.to_vec()).to_line()
}

/// Whether some line of `lines` concerns an entry for `path` with `tags`
/// (a line that does not parse concerns everything, as the cache reads it).
fn concerned(lines: &[String], path: &str, tags: &[String]) -> bool {
    lines
        .iter()
        .any(|l| Invalidation::from_line(l).is_none_or(|inv| inv.concerns(path, None, tags)))
}

/// Recording an invalidation raises the epoch; the log gives back, oldest
/// first, the lines recorded since an epoch, and nothing for the epoch it
/// is at. Other instances may record meanwhile: the check looks for its own
/// lines among theirs. A store may bound its log, but not below the two
/// lines recorded here.
pub async fn epoch_and_log(store: &(impl Coordination + ?Sized)) {
    let n = ns("log");
    assert!(
        store.shared(),
        "shared: shared() is true (instances look for what others stored)"
    );
    let (first, second) = (url_line(&format!("/{n}/a")), tags_line(&[format!("{n}:t")]));
    let before = store.epoch().await.expect("epoch");
    store
        .record_invalidation(&first)
        .await
        .expect("record_invalidation");
    let after_first = store.epoch().await.expect("epoch");
    assert!(
        after_first > before,
        "epoch: {before} before a recorded invalidation, {after_first} after"
    );
    store
        .record_invalidation(&second)
        .await
        .expect("record_invalidation");
    let after_second = store.epoch().await.expect("epoch");
    assert!(
        after_second > after_first,
        "epoch: {after_first} before a second recorded invalidation, {after_second} after"
    );

    let position = |lines: &[String], line: &str| lines.iter().position(|l| l == line);
    let since_before = store
        .invalidations_since(before)
        .await
        .expect("invalidations_since")
        .unwrap_or_else(|| panic!("log: the two lines just recorded since {before} are held"));
    match (
        position(&since_before, &first),
        position(&since_before, &second),
    ) {
        (Some(a), Some(b)) => assert!(a < b, "log: oldest first: {since_before:?}"),
        _ => panic!("log: both lines since {before}: {since_before:?}"),
    }
    let since_first = store
        .invalidations_since(after_first)
        .await
        .expect("invalidations_since")
        .unwrap_or_else(|| panic!("log: the line just recorded since {after_first} is held"));
    assert!(
        position(&since_first, &second).is_some() && position(&since_first, &first).is_none(),
        "log: only the second line since {after_first}: {since_first:?}"
    );
    let since_now = store
        .invalidations_since(after_second)
        .await
        .expect("invalidations_since")
        .unwrap_or_else(|| panic!("log: nothing recorded since {after_second} is an answer"));
    assert!(
        position(&since_now, &first).is_none() && position(&since_now, &second).is_none(),
        "log: nothing of this check since {after_second}: {since_now:?}"
    );
}

/// A line longer than a store keeps may be recorded as a wider
/// invalidation, or not at all if the log then answers `None` for the
/// epochs before it; never as a narrower one. Recorded either way: the
/// epoch rises.
pub async fn long_lines_are_never_narrowed(store: &(impl Coordination + ?Sized)) {
    let n = ns("long-line");
    let path = format!("/{n}/{}", "p".repeat(4000));
    let tags: Vec<String> = (0..64)
        .map(|i| format!("{n}:{i}:{}", "t".repeat(100)))
        .collect();
    let before = store.epoch().await.expect("epoch");
    for line in [url_line(&path), tags_line(&tags)] {
        store
            .record_invalidation(&line)
            .await
            .expect("record_invalidation");
    }
    let after = store.epoch().await.expect("epoch");
    assert!(
        after >= before + 2,
        "long lines: the epoch rose from {before} to {after} for two invalidations"
    );
    let Some(lines) = store
        .invalidations_since(before)
        .await
        .expect("invalidations_since")
    else {
        // Not kept, and said so: the cache then assumes the worst.
        return;
    };
    assert!(
        concerned(&lines, &path, &[]),
        "long lines: the long URL is still invalidated by what was kept: {lines:?}"
    );
    let elsewhere = format!("/{n}/elsewhere");
    for tag in &tags {
        assert!(
            concerned(&lines, &elsewhere, std::slice::from_ref(tag)),
            "long lines: tag {tag} is still invalidated by what was kept: {lines:?}"
        );
    }
}

/// A free key's lease is granted; while held it is refused to another
/// holder, and a release by one who does not hold it changes nothing; once
/// its holder releases it, the next is granted it.
pub async fn leases(store: &(impl Coordination + ?Sized)) {
    let k = ns("lease");
    let lease = |token: u64| store.try_lease(&k, token, MINUTE);
    assert!(lease(1).await.expect("try_lease"), "lease: a free key");
    assert!(
        !lease(2).await.expect("try_lease"),
        "lease: refused to a second holder while held"
    );
    store.release_lease(&k, 2).await.expect("release_lease");
    assert!(
        !lease(3).await.expect("try_lease"),
        "lease: still held after a release by a token that does not hold it"
    );
    store.release_lease(&k, 1).await.expect("release_lease");
    assert!(
        lease(2).await.expect("try_lease"),
        "lease: granted again once released"
    );
    assert!(
        !lease(1).await.expect("try_lease"),
        "lease: the new holder's, refused to the old one"
    );
    store.release_lease(&k, 2).await.expect("release_lease");
}

/// A lease ends by itself after its TTL, and the late release of the
/// holder whose lease expired leaves the next holder's alone.
pub async fn lease_expiry(store: &(impl Coordination + ?Sized)) {
    let k = ns("lease-ttl");
    let ttl = Duration::from_millis(300);
    assert!(
        store.try_lease(&k, 1, ttl).await.expect("try_lease"),
        "lease expiry: a free key"
    );
    assert!(
        !store.try_lease(&k, 2, MINUTE).await.expect("try_lease"),
        "lease expiry: held before its TTL"
    );
    // Stores expire leases in real time: wait the TTL, then ask until it
    // has ended (a little late is fine, never is not).
    tokio::time::sleep(ttl).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !store.try_lease(&k, 2, MINUTE).await.expect("try_lease") {
        assert!(
            Instant::now() < deadline,
            "lease expiry: still held 2 s after its {ttl:?} TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.release_lease(&k, 1).await.expect("release_lease");
    assert!(
        !store.try_lease(&k, 3, MINUTE).await.expect("try_lease"),
        "lease expiry: the expired holder's release left the new holder's lease"
    );
    store.release_lease(&k, 2).await.expect("release_lease");
}

/// Many instances asking for one key's lease at once: exactly one gets it.
pub async fn one_lease_holder_among_many(store: Arc<dyn Store>) {
    let k = ns("lease-race");
    let mut set = tokio::task::JoinSet::new();
    for token in 1..=16u64 {
        let (store, k) = (store.clone(), k.clone());
        set.spawn(async move { store.try_lease(&k, token, MINUTE).await.expect("try_lease") });
    }
    let mut granted = 0;
    while let Some(r) = set.join_next().await {
        granted += usize::from(r.expect("lease task panicked"));
    }
    assert_eq!(granted, 1, "lease race: holders among 16 asking at once");
}

/// A store used by one process alone answers as [`Coordination`]'s
/// defaults do: the epoch stays 0 whatever is recorded, the log has
/// nothing since any epoch, and every lease is granted, a second holder's
/// too (the cache's own locks coalesce within the process).
pub async fn local_defaults(store: &(impl Coordination + ?Sized)) {
    let n = ns("local");
    assert!(!store.shared(), "local: shared() is false");
    assert_eq!(store.epoch().await.expect("epoch"), 0, "local: epoch");
    store
        .record_invalidation(&url_line(&format!("/{n}/a")))
        .await
        .expect("record_invalidation");
    assert_eq!(
        store.epoch().await.expect("epoch"),
        0,
        "local: epoch after a recorded invalidation"
    );
    for epoch in [0, 1] {
        assert_eq!(
            store
                .invalidations_since(epoch)
                .await
                .expect("invalidations_since"),
            Some(Vec::new()),
            "local: the log since {epoch}"
        );
    }
    let k = format!("{n}:lease");
    for token in [1, 2] {
        assert!(
            store.try_lease(&k, token, MINUTE).await.expect("try_lease"),
            "local: lease granted to token {token}"
        );
    }
    store.release_lease(&k, 1).await.expect("release_lease");
    store.release_lease(&k, 2).await.expect("release_lease");
}
