//! The outbox worker: fans changes out to subscriptions and delivers them.
//!
//! One loop claims due outbox entries. A `Changed` entry becomes one
//! delivery per subscription that covers the user, in one settlement (the
//! change is removed in the same commit that adds its deliveries). Claimed
//! deliveries are grouped by endpoint and each endpoint gets its own task,
//! which posts them in batches: a slow or dead endpoint holds up only its
//! own task. A failed batch is retried with exponential backoff (paced in
//! real time) until the retry window (measured on the presence clock) has
//! passed since the first attempt; then it is dropped and, if the
//! subscription has a lifecycle URL, a `missed` lifecycle event is queued.
//! Graph's slow-endpoint rules ([`super::endpoint`]) hold back or drop the
//! notifications of an endpoint that answers slowly too often.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use presenced_domain::Guid;
use presenced_store::{OutboxBody, OutboxId, OutboxSettlement, StoreError, UserKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Notifier;
use super::endpoint::Verdict;
use super::outbound::read_bounded;
use super::payload;
use super::subscription::Subscription;

/// Most notifications in one POST.
pub const MAX_BATCH: usize = 100;
/// How many outbox entries one claim takes.
const CLAIM: usize = 4096;

/// One notification waiting to be delivered: the outbox's opaque body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub url: String,
    /// The notification item, ready to send.
    pub item: Value,
    /// A lifecycle event (never followed by `missed` when dropped).
    pub lifecycle: bool,
    /// When it was first queued (presence clock, ms): the retry window's start.
    pub first_ms: i64,
    pub attempts: u32,
    #[serde(with = "guid_text")]
    pub subscription: Guid,
    #[serde(with = "guid_text")]
    pub tenant: Guid,
    pub app: String,
    pub expires_ms: i64,
    pub client_state: Option<String>,
    pub lifecycle_url: Option<String>,
    /// Rich notifications need `validationTokens` in their collection.
    #[serde(default)]
    pub rich: bool,
    /// Already held back once for a flagged endpoint: sent when due even if
    /// the endpoint is still flagged (Graph retries them on other workers).
    #[serde(default)]
    pub delayed: bool,
}

impl Delivery {
    pub fn for_subscription(
        subscription: &Subscription,
        url: &str,
        item: Value,
        lifecycle: bool,
        now: Timestamp,
    ) -> Delivery {
        Delivery {
            url: url.to_owned(),
            rich: item.get("encryptedContent").is_some(),
            item,
            lifecycle,
            first_ms: now.as_millisecond(),
            attempts: 0,
            subscription: subscription.id,
            tenant: subscription.tenant,
            app: subscription.app.clone(),
            expires_ms: subscription.expires_ms,
            client_state: subscription.client_state.clone(),
            lifecycle_url: subscription.lifecycle_url.clone(),
            delayed: false,
        }
    }

    pub fn into_body(self) -> OutboxBody {
        OutboxBody::Opaque(serde_json::to_vec(&self).expect("a delivery serialises"))
    }
}

/// Runs the outbox loop for ever.
pub async fn run(notifier: Arc<Notifier>) {
    loop {
        match step(&notifier).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "outbox step failed"),
        }
        let wait = match notifier.store.outbox_next_due().await {
            Ok(Some(due)) => {
                let left = due.duration_since(Timestamp::now());
                Duration::try_from(left).unwrap_or(Duration::ZERO)
            }
            _ => Duration::from_secs(1),
        }
        .min(Duration::from_secs(1));
        tokio::select! {
            () = notifier.outbox_wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Claims what is due and starts working on it; false if nothing was due.
pub async fn step(notifier: &Arc<Notifier>) -> Result<bool, StoreError> {
    let entries = notifier.store.claim_outbox(Timestamp::now(), CLAIM).await?;
    if entries.is_empty() {
        return Ok(false);
    }
    let mut changed = Vec::new();
    let mut by_url: HashMap<String, Vec<(OutboxId, Delivery)>> = HashMap::new();
    let mut unreadable = Vec::new();
    for entry in entries {
        match entry.body {
            OutboxBody::Changed { key, at } => changed.push((entry.id, key, at)),
            OutboxBody::Opaque(bytes) => match serde_json::from_slice::<Delivery>(&bytes) {
                Ok(delivery) => by_url
                    .entry(delivery.url.clone())
                    .or_default()
                    .push((entry.id, delivery)),
                Err(error) => {
                    tracing::error!(%error, "dropping an unreadable outbox entry");
                    unreadable.push(entry.id);
                }
            },
        }
    }
    if !changed.is_empty() || !unreadable.is_empty() {
        fan_out(notifier, changed, unreadable).await?;
    }
    for (url, deliveries) in by_url {
        let notifier = Arc::clone(notifier);
        tokio::spawn(async move { deliver(&notifier, &url, deliveries).await });
    }
    Ok(true)
}

/// Turns changes into deliveries, atomically.
async fn fan_out(
    notifier: &Arc<Notifier>,
    changed: Vec<(OutboxId, UserKey, Timestamp)>,
    mut done: Vec<OutboxId>,
) -> Result<(), StoreError> {
    let now = notifier.clock.now();
    let mut add = Vec::new();
    let mut cache: HashMap<Guid, Option<Subscription>> = HashMap::new();
    for (id, key, at) in changed {
        done.push(id);
        for subscription_id in notifier.store.subscriptions_of(key).await? {
            if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(subscription_id) {
                let found = match notifier.store.subscription(subscription_id).await? {
                    Some(record) => Some(Subscription::from_record(record)?),
                    None => None,
                };
                slot.insert(found);
            }
            let Some(subscription) = cache.get(&subscription_id).and_then(Option::as_ref) else {
                continue;
            };
            // A change made while the subscription lived is delivered; an
            // index entry left behind by a replaced subscription (a store
            // that writes the index and the record in steps) is not.
            if subscription.is_expired(at)
                || subscription.tenant != key.tenant
                || !subscription.users.contains(&key.user)
            {
                continue;
            }
            let item = match notifier.change_item(subscription, key.user, at).await {
                Ok(item) => item,
                Err(error) => {
                    tracing::error!(%error, subscription = %subscription.id, "cannot build a notification");
                    continue;
                }
            };
            let delivery = Delivery::for_subscription(
                subscription,
                &subscription.notification_url,
                item,
                false,
                now,
            );
            add.push((Timestamp::MIN, delivery.into_body()));
        }
    }
    notifier
        .store
        .settle_outbox(OutboxSettlement {
            done,
            add,
            retry: Vec::new(),
        })
        .await?;
    Ok(())
}

/// Delivers one endpoint's claimed notifications, in batches, under
/// Graph's slow-endpoint rules.
async fn deliver(notifier: &Arc<Notifier>, url: &str, deliveries: Vec<(OutboxId, Delivery)>) {
    let rules = notifier.config.slow;
    let mut rest = deliveries;
    while !rest.is_empty() {
        let mut batch: Vec<_> = rest.drain(..rest.len().min(MAX_BATCH)).collect();
        match notifier.endpoints.verdict(&rules, url, Instant::now()) {
            Verdict::Send => {}
            Verdict::Drop => {
                tracing::warn!(
                    url,
                    notifications = batch.len(),
                    "slow endpoint: notifications dropped"
                );
                crate::telemetry::webhook_dropped(
                    crate::telemetry::Dropped::SlowEndpoint,
                    batch.len(),
                );
                settle(notifier, drop_with_missed(notifier, batch)).await;
                continue;
            }
            Verdict::Delay(by) => {
                // Those held back once already are sent now.
                let (send, hold): (Vec<_>, Vec<_>) =
                    batch.into_iter().partition(|(_, d)| d.delayed);
                tracing::info!(
                    url,
                    notifications = hold.len(),
                    "slow endpoint: notifications delayed"
                );
                settle(notifier, delay(hold, by)).await;
                batch = send;
                if batch.is_empty() {
                    continue;
                }
            }
        }
        let batch = without_deleted(notifier, batch).await;
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let outcome = post(notifier, url, &batch).await;
        let count = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let elapsed = started.elapsed();
        crate::telemetry::webhook_post(outcome.is_ok(), elapsed);
        notifier
            .endpoints
            .record(&rules, url, count, elapsed, Instant::now());
        let settlement = match outcome {
            Ok(()) => OutboxSettlement {
                done: batch.iter().map(|(id, _)| *id).collect(),
                ..OutboxSettlement::default()
            },
            Err(why) => {
                tracing::info!(url, %why, notifications = batch.len(), "delivery failed; will retry");
                give_up_or_retry(notifier, batch)
            }
        };
        settle(notifier, settlement).await;
    }
    notifier.outbox_wake.notify_one();
}

/// Settles, undelivered, the change notifications of subscriptions deleted
/// since they were built (they may have waited on a failing endpoint), so
/// nothing reaches an app for a subscription after its delete was
/// acknowledged. Lifecycle events are kept: they may speak of a removal.
/// So are the notifications of a subscription past its expiry: it was
/// removed by time, not deleted, and they go on to their retries' end and
/// `missed`. If the store cannot tell, the notification is kept (at least
/// once).
async fn without_deleted(
    notifier: &Notifier,
    batch: Vec<(OutboxId, Delivery)>,
) -> Vec<(OutboxId, Delivery)> {
    let now_ms = notifier.clock.now().as_millisecond();
    let mut live: HashMap<Guid, bool> = HashMap::new();
    let mut kept = Vec::with_capacity(batch.len());
    let mut gone = Vec::new();
    for (id, delivery) in batch {
        if delivery.lifecycle || delivery.expires_ms <= now_ms {
            kept.push((id, delivery));
            continue;
        }
        let exists = match live.get(&delivery.subscription) {
            Some(&exists) => exists,
            None => {
                let exists = !matches!(
                    notifier.store.subscription(delivery.subscription).await,
                    Ok(None)
                );
                live.insert(delivery.subscription, exists);
                exists
            }
        };
        if exists {
            kept.push((id, delivery));
        } else {
            gone.push(id);
        }
    }
    if !gone.is_empty() {
        tracing::info!(
            notifications = gone.len(),
            "notifications of deleted subscriptions dropped"
        );
        settle(
            notifier,
            OutboxSettlement {
                done: gone,
                ..OutboxSettlement::default()
            },
        )
        .await;
    }
    kept
}

async fn settle(notifier: &Notifier, settlement: OutboxSettlement) {
    if let Err(error) = notifier.store.settle_outbox(settlement).await {
        tracing::error!(%error, "cannot settle deliveries");
    }
}

/// Holds a flagged endpoint's notifications back (not counted as attempts).
fn delay(batch: Vec<(OutboxId, Delivery)>, by: Duration) -> OutboxSettlement {
    let due = Timestamp::now()
        .checked_add(SignedDuration::try_from(by).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    OutboxSettlement {
        retry: batch
            .into_iter()
            .map(|(id, delivery)| {
                let delivery = Delivery {
                    delayed: true,
                    ..delivery
                };
                (id, due, delivery.into_body())
            })
            .collect(),
        ..OutboxSettlement::default()
    }
}

/// Drops a batch, queueing one `missed` per subscription that has a
/// lifecycle URL (never for lifecycle events themselves).
fn drop_with_missed(notifier: &Notifier, batch: Vec<(OutboxId, Delivery)>) -> OutboxSettlement {
    let now = notifier.clock.now();
    let mut settlement = OutboxSettlement::default();
    let mut missed_sent: Vec<Guid> = Vec::new();
    for (id, delivery) in batch {
        settlement.done.push(id);
        if let Some(missed) = missed(delivery, now, &mut missed_sent) {
            settlement.add.push((Timestamp::MIN, missed.into_body()));
        }
    }
    settlement
}

/// The `missed` event for a dropped delivery, unless one was already made
/// for its subscription (listed in `sent`) or it has no lifecycle URL.
fn missed(delivery: Delivery, now: Timestamp, sent: &mut Vec<Guid>) -> Option<Delivery> {
    if delivery.lifecycle || sent.contains(&delivery.subscription) {
        return None;
    }
    let lifecycle_url = delivery.lifecycle_url.clone()?;
    sent.push(delivery.subscription);
    let expires = Timestamp::from_millisecond(delivery.expires_ms).unwrap_or(now);
    let item = payload::lifecycle_item(
        delivery.subscription,
        delivery.tenant,
        expires,
        delivery.client_state.as_deref(),
        "missed",
    );
    Some(Delivery {
        url: lifecycle_url,
        item,
        lifecycle: true,
        first_ms: now.as_millisecond(),
        attempts: 0,
        rich: false,
        delayed: false,
        ..delivery
    })
}

/// Retries each failed delivery later, or drops it (with `missed`) once the
/// retry window has passed.
fn give_up_or_retry(notifier: &Notifier, batch: Vec<(OutboxId, Delivery)>) -> OutboxSettlement {
    let now = notifier.clock.now();
    let mut settlement = OutboxSettlement::default();
    let mut missed_sent: Vec<Guid> = Vec::new();
    for (id, mut delivery) in batch {
        let first = Timestamp::from_millisecond(delivery.first_ms).unwrap_or(now);
        if now.duration_since(first) >= notifier.config.retry_window {
            settlement.done.push(id);
            tracing::warn!(url = %delivery.url, subscription = %delivery.subscription, "notification dropped after the retry window");
            crate::telemetry::webhook_dropped(crate::telemetry::Dropped::RetryWindow, 1);
            if let Some(missed) = missed(delivery, now, &mut missed_sent) {
                settlement.add.push((Timestamp::MIN, missed.into_body()));
            }
            continue;
        }
        delivery.attempts += 1;
        let backoff = notifier.backoff(delivery.attempts);
        let due = Timestamp::now()
            .checked_add(SignedDuration::try_from(backoff).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        settlement.retry.push((id, due, delivery.into_body()));
    }
    settlement
}

/// POSTs one batch; `Ok` on any 2xx answer in time.
async fn post(
    notifier: &Notifier,
    url: &str,
    batch: &[(OutboxId, Delivery)],
) -> Result<(), String> {
    let target = notifier.policy.check(url).map_err(|e| e.to_string())?;
    let items: Vec<Value> = batch.iter().map(|(_, d)| d.item.clone()).collect();
    let mut apps: Vec<(String, Guid)> = batch
        .iter()
        .filter(|(_, d)| d.rich)
        .map(|(_, d)| (d.app.clone(), d.tenant))
        .collect();
    apps.sort();
    apps.dedup();
    let tokens = apps
        .iter()
        .filter_map(|(app, tenant)| notifier.validation_token(app, *tenant))
        .collect();
    let body = payload::collection(items, tokens);
    let response = notifier
        .client
        .post(target)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .map_err(|e| super::handshake::error_chain(&e))?;
    let status = response.status();
    // Read (a bounded part of) the body so the connection can be reused.
    let _ = read_bounded(response, 4096).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the endpoint answered {status}"))
    }
}

/// GUIDs as text inside the stored delivery JSON.
mod guid_text {
    use presenced_domain::Guid;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(guid: &Guid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(guid)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Guid, D::Error> {
        let text = String::deserialize(deserializer)?;
        Guid::parse(&text).ok_or_else(|| serde::de::Error::custom("not a GUID"))
    }
}
