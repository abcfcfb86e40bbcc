//! The invalidation backplane: every instance subscribes to one Redis
//! channel, publishes there what it invalidates and deletes, and drops from
//! its L1 what the others publish (see the `tiered` module's docs).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use uip_cache_core::invalidate::Invalidation;
use uip_cache_core::store::{Storage, StoreError};

use super::{Inner, TieredStore};

/// A message on the backplane, after the sender's id: an invalidation line,
/// or `key <key>` for one deleted key.
pub(super) const KEY_PREFIX: &str = "key ";

/// 64 random bits naming this instance on the channel.
pub(super) fn instance_id() -> String {
    uip_cache_core::refresh::random_hex::<8>()
}

/// Marks the subscription down however the subscriber task ends (a
/// cancelled runtime included), so L1 is not used without it.
struct SubscriberGuard(Weak<Inner>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.subscribed.store(false, Ordering::Release);
            inner.started.store(false, Ordering::Release);
            inner.bump();
        }
    }
}

impl TieredStore {
    /// Starts the subscriber once, when called inside a Tokio runtime.
    pub(super) fn ensure_subscriber(&self) {
        if self.inner.started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return;
        }
        rt.spawn(subscribe(Arc::downgrade(&self.inner)));
    }

    /// Tells the other instances; a failure is returned (a webhook sender
    /// should retry), the other instances keeping their copy at most
    /// `max_ttl` meanwhile.
    pub(super) async fn publish(&self, message: &str) -> Result<(), StoreError> {
        let message = format!("{} {message}", self.inner.id);
        self.inner
            .l2
            .publish(&self.inner.channel, &message)
            .await
            .inspect_err(|e| {
                // Every unsafe request publishes while Redis is down: at
                // most a line a second (see `uip_cache_core::quiet`).
                static FAILED: uip_cache_core::quiet::Quiet = uip_cache_core::quiet::Quiet::new();
                if let Some(left_out) = FAILED.admit() {
                    tracing::warn!(error = %e, left_out, "tiered store: could not publish an invalidation");
                }
            })
    }
}

/// The subscriber: applies every message to L1 and pings the connection;
/// on a lost connection or a late ping, stops using L1 and reconnects with
/// a growing pause (at most 5 s).
async fn subscribe(weak: Weak<Inner>) {
    let _guard = SubscriberGuard(weak.clone());
    let mut pause = Duration::from_millis(100);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let client = inner.l2.pubsub_client();
        let channel = inner.channel.clone();
        drop(inner);
        let connected = async {
            let mut pubsub = client?.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(5), connected).await {
            Ok(Ok(pubsub)) => {
                let up = std::time::Instant::now();
                let ping_every = {
                    let Some(inner) = weak.upgrade() else { return };
                    // Whatever was published while we were away is lost:
                    // start from an empty L1.
                    inner.bump();
                    inner.l1.clear();
                    inner.subscribed.store(true, Ordering::Release);
                    inner.ping_every
                };
                let (mut sink, mut messages) = pubsub.split();
                // A connection that died silently delivers nothing and
                // reports nothing: only an unanswered ping tells.
                let pinger = async {
                    loop {
                        tokio::time::sleep(ping_every).await;
                        match tokio::time::timeout(ping_every, sink.ping::<redis::Value>()).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => return format!("ping failed: {e}"),
                            Err(_) => return format!("no answer to a ping within {ping_every:?}"),
                        }
                    }
                };
                let reader = async {
                    while let Some(msg) = messages.next().await {
                        let Some(inner) = weak.upgrade() else { return };
                        let Ok(text) = msg.get_payload::<String>() else {
                            continue;
                        };
                        apply(&inner, &text).await;
                    }
                };
                tokio::select! {
                    why = pinger => tracing::warn!(reason = %why, "tiered store: invalidation channel silent"),
                    () = reader => {}
                }
                // Back to a short pause only after a subscription that held.
                if up.elapsed() > Duration::from_secs(10) {
                    pause = Duration::from_millis(100);
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "tiered store: subscription failed"),
            Err(_) => tracing::debug!("tiered store: subscription timed out"),
        }
        {
            let Some(inner) = weak.upgrade() else { return };
            inner.subscribed.store(false, Ordering::Release);
            inner.bump();
        }
        tracing::warn!(
            retry_in = ?pause,
            "tiered store: invalidation channel lost; L1 unused until it is back"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Drops from L1 what a backplane message concerns (another instance's;
/// this one has applied its own already).
async fn apply(inner: &Inner, message: &str) {
    let Some((sender, message)) = message.split_once(' ') else {
        return;
    };
    if sender == inner.id {
        return;
    }
    if let Some(key) = message.strip_prefix(KEY_PREFIX) {
        inner.bump();
        let _ = inner.l1.delete(key).await;
        return;
    }
    match Invalidation::from_line(message) {
        Some(what) => inner.drop_from_l1(&what).await,
        // Anything not understood: drop all of L1.
        None => {
            inner.bump();
            inner.l1.clear();
        }
    }
}
