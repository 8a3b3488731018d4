//! Time-driven changes and subscription lifetimes.
//!
//! The store keeps each user's "next change" instant in a persisted index.
//! This loop asks it which users are due at the presence clock's `now`,
//! queues a change for those with subscriptions, and moves their deadlines
//! on with [`Store::advance_deadlines`](presenced_store::Store::advance_deadlines).
//! The queueing comes first, so a crash in between repeats a notification
//! rather than losing one; a store shared by several nodes (Redis) queues
//! the change itself in the step that moves the deadline
//! ([`Store::advance_announces`](presenced_store::Store::advance_announces)),
//! so that one deadline is announced once across nodes. On the manual clock, `POST /admin/clock` wakes
//! the loop; on the system clock it sleeps until the next deadline (at most
//! a second, so deadlines written meanwhile are not missed).
//!
//! [`Progress`] counts the deadlines handled and how late their handling
//! completed, for `GET /admin/scheduler`: a deadline counts as handled only
//! once its notifications are queued and its move is durable.
//!
//! When idle it also sweeps subscriptions: expired ones are removed,
//! `reauthorizationRequired` goes out once before expiry, and a delegated
//! subscription whose creator left the directory is removed with
//! `subscriptionRemoved`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use presenced_store::{OutboxBody, OutboxSettlement, StoreError, UserKey};

use super::Notifier;
use super::delivery::Delivery;
use super::payload;
use super::subscription::Subscription;

/// How many due users one step takes.
const STEP: usize = 4096;

/// What the scheduler has done since the process started.
#[derive(Debug, Default)]
pub struct Progress {
    /// Deadlines handled: notifications queued, live stream told, deadline
    /// moved on durably.
    processed: AtomicU64,
    /// The most any handled deadline waited, from its instant until its
    /// handling completed (presence clock), in microseconds.
    max_lag_micros: AtomicU64,
}

impl Progress {
    /// `count` deadlines were handled, the earliest of them `lag` late.
    pub fn record(&self, count: usize, lag: SignedDuration) {
        let micros = u64::try_from(lag.as_micros()).unwrap_or(0);
        self.max_lag_micros.fetch_max(micros, Ordering::Relaxed);
        // Release: whoever sees the new count also sees the moves that
        // preceded it (see `processed`).
        self.processed
            .fetch_add(u64::try_from(count).unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Deadlines handled since start. Every deadline counted here has been
    /// moved on in the store before the count was raised, so a reader that
    /// takes this count first and reads the store's deadlines after never
    /// sees a counted deadline as still due.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Acquire)
    }

    /// The most any handled deadline waited for its handling to complete.
    pub fn max_lag(&self) -> SignedDuration {
        let micros = self.max_lag_micros.load(Ordering::Relaxed);
        SignedDuration::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}

/// The longest the loop sleeps on the system clock: deadlines written
/// meanwhile (writes do not wake it) are seen within this.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// How long the loop sleeps on the system clock when the next deadline is
/// `next` (`None`: there is none): until it, at most [`MAX_WAIT`], and not at
/// all when it is due. With no deadline at all it sleeps [`MAX_WAIT`], not
/// zero: an idle server does not poll its store in a loop.
fn wait_for(next: Option<Timestamp>, now: Timestamp) -> Duration {
    match next {
        None => MAX_WAIT,
        Some(at) => Duration::try_from(at.duration_since(now))
            .unwrap_or(Duration::ZERO)
            .min(MAX_WAIT),
    }
}

pub async fn run(notifier: Arc<Notifier>) {
    loop {
        // A closed store means the server is shutting down: end quietly.
        match step(&notifier).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(StoreError::Closed) => return,
            Err(error) => tracing::warn!(%error, "scheduler step failed"),
        }
        match sweep(&notifier).await {
            Ok(()) => {}
            Err(StoreError::Closed) => return,
            Err(error) => tracing::warn!(%error, "subscription sweep failed"),
        }
        let wait = if notifier.clock.is_manual() {
            Duration::from_secs(1)
        } else {
            match notifier.store.due(Timestamp::MAX, 1).await {
                Ok(next) => wait_for(next.first().map(|(_, at)| *at), Timestamp::now()),
                Err(_) => MAX_WAIT,
            }
        };
        tokio::select! {
            () = notifier.scheduler_wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Handles the users due now; false if none was.
pub async fn step(notifier: &Arc<Notifier>) -> Result<bool, StoreError> {
    let now = notifier.clock.now();
    let due = notifier.store.due(now, STEP).await?;
    if due.is_empty() {
        return Ok(false);
    }
    let mut add = Vec::new();
    // A store that announces deadlines as it moves them (several nodes)
    // needs nothing queued here.
    let announces = notifier.store.advance_announces();
    for (key, at) in &due {
        notifier.publish_live(*key, *at).await;
        if !announces && !notifier.store.subscriptions_of(*key).await?.is_empty() {
            add.push((Timestamp::MIN, OutboxBody::Changed { key: *key, at: *at }));
        }
    }
    if !add.is_empty() {
        notifier
            .store
            .settle_outbox(OutboxSettlement {
                add,
                ..OutboxSettlement::default()
            })
            .await?;
        notifier.outbox_wake.notify_one();
    }
    let (count, earliest) = (due.len(), due[0].1);
    // All in one call, so that the store can make the moves durable together.
    notifier.store.advance_deadlines(due, now).await?;
    if announces {
        notifier.outbox_wake.notify_one();
    }
    let completed = notifier.clock.now();
    notifier
        .scheduler_progress
        .record(count, completed.duration_since(earliest));
    Ok(true)
}

/// Removes expired subscriptions and sends lifecycle events that are due.
pub async fn sweep(notifier: &Arc<Notifier>) -> Result<(), StoreError> {
    let now = notifier.clock.now();
    let mut add = Vec::new();
    for record in notifier.store.subscriptions().await? {
        let mut subscription = Subscription::from_record(record)?;
        if subscription.is_expired(now) {
            notifier.store.delete_subscription(subscription.id).await?;
            continue;
        }
        if let Some(creator) = subscription.delegated_creator()
            && notifier
                .store
                .user(UserKey {
                    tenant: subscription.tenant,
                    user: creator,
                })
                .await?
                .is_none()
        {
            notifier.store.delete_subscription(subscription.id).await?;
            add.extend(lifecycle(&subscription, "subscriptionRemoved", now));
            continue;
        }
        let left = subscription.expires().duration_since(now);
        if !subscription.reauthorization_sent && left <= notifier.config.reauthorize_before {
            add.extend(lifecycle(&subscription, "reauthorizationRequired", now));
            subscription.reauthorization_sent = true;
            notifier
                .store
                .put_subscription(subscription.to_record())
                .await?;
        }
    }
    if !add.is_empty() {
        notifier
            .store
            .settle_outbox(OutboxSettlement {
                add,
                ..OutboxSettlement::default()
            })
            .await?;
        notifier.outbox_wake.notify_one();
    }
    Ok(())
}

/// A lifecycle event for the subscription's lifecycle URL, if it has one.
fn lifecycle(
    subscription: &Subscription,
    event: &str,
    now: Timestamp,
) -> Option<(Timestamp, OutboxBody)> {
    let url = subscription.lifecycle_url.as_deref()?;
    let item = payload::lifecycle_item(
        subscription.id,
        subscription.tenant,
        subscription.expires(),
        subscription.client_state.as_deref(),
        event,
    );
    let delivery = Delivery::for_subscription(subscription, url, item, true, now);
    Some((Timestamp::MIN, delivery.into_body()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_sleeps_until_the_next_deadline_at_most_a_second() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let at = |ms: i64| Some(now + SignedDuration::from_millis(ms));
        assert_eq!(wait_for(at(300), now), Duration::from_millis(300));
        assert_eq!(wait_for(at(3_600_000), now), MAX_WAIT);
        assert_eq!(wait_for(at(0), now), Duration::ZERO);
        assert_eq!(
            wait_for(at(-5_000), now),
            Duration::ZERO,
            "overdue: at once"
        );
        assert_eq!(wait_for(None, now), MAX_WAIT, "nothing due: no busy loop");
    }
}
