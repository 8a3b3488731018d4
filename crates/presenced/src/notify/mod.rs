//! Change notifications: subscriptions, the validation handshake, the
//! durable outbox's worker, time-driven changes, lifecycle events.
//!
//! # Layout
//! - [`subscription`]: the subscription model, resource parsing, limits.
//! - [`handshake`]: the validation handshake.
//! - [`outbound`]: which URLs may be called, and the HTTP client.
//! - [`payload`]: the JSON of webhook payloads (the outbound wire format).
//! - [`crypto`]: Graph's encryption recipe for rich notifications.
//! - [`validation`]: the claims of rich notifications' `validationTokens`.
//! - [`delivery`]: the outbox worker: fan-out, batching, retries, `missed`.
//! - [`endpoint`]: Graph's slow-endpoint rules.
//! - [`live`]: the live stream's bounded log of changes (an extension).
//! - [`scheduler`]: time-driven changes from the store's deadline index,
//!   subscription expiry and lifecycle events.
//!
//! This module knows no HTTP routing and no Graph request JSON: `api`
//! parses requests and calls [`Notifier`]. Changes reach it only through
//! the store's outbox, never directly from a request, so that a change
//! acknowledged to a client is delivered even after a crash.

pub mod crypto;
pub mod delivery;
pub mod endpoint;
pub mod handshake;
pub mod live;
pub mod outbound;
pub mod payload;
pub mod scheduler;
pub mod subscription;
pub mod validation;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use presenced_domain::{Guid, Rules};
use presenced_identity::DevIssuerKey;
use presenced_store::{Store, UserKey};
use serde_json::Value;
use tokio::sync::Notify;

use crate::clock::Clock;
use outbound::TargetPolicy;
use subscription::Subscription;

/// The notification settings (`[notifications]` and the serve flags).
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// How long a notification is retried before it is dropped (Graph: 4 hours).
    pub retry_window: SignedDuration,
    /// The first retry's delay; each later one doubles, up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How long an endpoint has to echo the validation token (Graph: 10 s).
    pub handshake_timeout: Duration,
    /// How long one delivery POST may take.
    pub delivery_timeout: Duration,
    /// How long before expiry `reauthorizationRequired` is sent.
    pub reauthorize_before: SignedDuration,
    /// Graph's slow-endpoint rules.
    pub slow: endpoint::SlowRules,
    /// Extension: subscriptions with application permissions.
    pub app_subscriptions: bool,
    /// Extension: more than 650 ids in one subscription.
    pub unlimited_ids: bool,
    /// Extension: the Server-Sent Events live stream.
    pub live_stream: bool,
    /// How many changes the live stream keeps for clients that reconnect.
    pub live_stream_log: usize,
    /// Subscriptions one app may hold in one tenant (`[limits]`).
    pub max_subscriptions_per_app: usize,
    /// Subscriptions in all (`[limits]`).
    pub max_subscriptions: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            retry_window: SignedDuration::from_hours(4),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(10),
            reauthorize_before: SignedDuration::from_mins(15),
            slow: endpoint::SlowRules::default(),
            app_subscriptions: false,
            unlimited_ids: false,
            live_stream: false,
            live_stream_log: 100_000,
            max_subscriptions_per_app: 1000,
            max_subscriptions: 100_000,
        }
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(String),
}

/// The notification service, shared by the API and its background loops.
pub struct Notifier {
    pub store: Arc<dyn Store>,
    pub clock: Arc<Clock>,
    /// Derives the presence that rich notifications carry.
    pub rules: Rules,
    pub config: NotifyConfig,
    pub policy: Arc<TargetPolicy>,
    /// Calls webhooks: no redirects, timeouts, the checked resolver.
    pub client: reqwest::Client,
    /// Signs `validationTokens` of rich notifications.
    pub issuer: DevIssuerKey,
    /// The live stream's log, when the extension is on.
    pub live: Option<live::LiveLog>,
    /// Slow-endpoint counters, per notification URL.
    pub endpoints: endpoint::EndpointHealth,
    /// Wakes the outbox loop (new work queued).
    pub outbox_wake: Notify,
    /// Wakes the scheduler (the manual clock moved).
    pub scheduler_wake: Notify,
    /// How many deadlines the scheduler handled, and how late.
    pub scheduler_progress: scheduler::Progress,
}

impl Notifier {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<Clock>,
        rules: Rules,
        config: NotifyConfig,
        policy: TargetPolicy,
        issuer: DevIssuerKey,
    ) -> Result<Arc<Notifier>, NotifyError> {
        let policy = Arc::new(policy);
        let client = outbound::client(Arc::clone(&policy), config.delivery_timeout)
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        let live = config
            .live_stream
            .then(|| live::LiveLog::new(config.live_stream_log));
        Ok(Arc::new(Notifier {
            store,
            clock,
            rules,
            config,
            policy,
            client,
            issuer,
            live,
            endpoints: endpoint::EndpointHealth::default(),
            outbox_wake: Notify::new(),
            scheduler_wake: Notify::new(),
            scheduler_progress: scheduler::Progress::default(),
        }))
    }

    /// Starts the outbox worker and the scheduler (and, with the live
    /// stream on, the listener of changes made on other nodes).
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(delivery::run(Arc::clone(self)));
        tokio::spawn(scheduler::run(Arc::clone(self)));
        if self.live.is_some() {
            tokio::spawn(listen_elsewhere(Arc::downgrade(self)));
        }
    }

    /// A write was acknowledged that may have queued a change: deliver it now.
    pub fn changed(&self) {
        self.outbox_wake.notify_one();
    }

    /// A write to `key` at `at` changed the user's presence visibly:
    /// deliver its notifications now and tell live streams.
    pub async fn changed_user(&self, key: UserKey, at: Timestamp) {
        self.changed();
        self.publish_live(key, at).await;
    }

    /// Publishes the user's presence as it reads at `at` (or after the
    /// user's last change) to the live stream, if it is on.
    /// Other nodes sharing the store are told too.
    pub async fn publish_live(&self, key: UserKey, at: Timestamp) {
        if self.live.is_none() {
            return;
        }
        self.publish_here(key, at).await;
        if let Err(error) = self.store.announce_change(key, at).await {
            tracing::warn!(%error, "cannot tell other nodes' live streams of a change");
        }
    }

    /// [`Notifier::publish_live`] on this node only.
    async fn publish_here(&self, key: UserKey, at: Timestamp) {
        let Some(live) = &self.live else {
            return;
        };
        let facts = match self.store.facts(key).await {
            Ok(facts) => facts.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "cannot read a user for the live stream");
                return;
            }
        };
        let instant = facts.sequence_at.map_or(at, |last| last.max(at));
        let view = presenced_domain::derive(&facts, instant, &self.rules);
        live.publish(key, view.availability, view.activity, view.sequence);
    }

    /// The presence clock moved (`POST /admin/clock`): look for due work now.
    pub fn clock_moved(&self) {
        self.scheduler_wake.notify_one();
        self.outbox_wake.notify_one();
    }

    /// A user left the directory: sweep subscriptions now, so that theirs are
    /// removed (with `subscriptionRemoved`) at once.
    pub fn directory_changed(&self) {
        self.scheduler_wake.notify_one();
        self.outbox_wake.notify_one();
    }

    /// Runs the validation handshake against a URL already checked by the policy.
    pub async fn handshake(&self, url: &reqwest::Url) -> Result<(), handshake::HandshakeError> {
        handshake::validate(&self.client, url, self.config.handshake_timeout).await
    }

    /// The delay before retry number `attempt` (1 is the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.config
            .retry_initial
            .saturating_mul(factor)
            .min(self.config.retry_max)
    }

    /// The notification item for a change of `user` at `at` (presence
    /// clock). Rich subscriptions get the presence, encrypted for their
    /// certificate, as it reads at `at` (or after the user's last change,
    /// if that came later).
    pub async fn change_item(
        &self,
        subscription: &Subscription,
        user: Guid,
        at: Timestamp,
    ) -> Result<Value, String> {
        let mut item = payload::change_item(subscription, user);
        if !subscription.include_resource_data {
            return Ok(item);
        }
        let certificate = subscription
            .certificate
            .as_deref()
            .ok_or("a rich subscription without a certificate")?;
        let certificate =
            crypto::EncryptionCertificate::parse(certificate).map_err(|e| e.to_string())?;
        let key = UserKey {
            tenant: subscription.tenant,
            user,
        };
        let facts = self
            .store
            .facts(key)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let instant = facts.sequence_at.map_or(at, |last| last.max(at));
        let view = presenced_domain::derive(&facts, instant, &self.rules);
        let plaintext = payload::presence_resource(user, view.availability, view.activity);
        let content = certificate.encrypt(&plaintext).map_err(|e| e.to_string())?;
        payload::add_encrypted_content(
            &mut item,
            &content,
            subscription.certificate_id.as_deref().unwrap_or_default(),
            certificate.thumbprint(),
        );
        Ok(item)
    }

    /// Checks a subscriber's `encryptionCertificate`.
    pub fn check_certificate(&self, text: &str) -> Result<(), crypto::CryptoError> {
        crypto::EncryptionCertificate::parse(text).map(|_| ())
    }

    /// A `validationTokens` JWT for an app and tenant (rich notifications),
    /// shaped like Graph's (fact sheet §4.4) and signed with the
    /// development issuer's key, whose JWKS the built-in identity provider
    /// serves.
    pub fn validation_token(&self, app: &str, tenant: Guid) -> Option<String> {
        let now = Timestamp::now().as_second();
        let claims = validation::Claims::new(app, tenant, now);
        match self.issuer.sign(&claims) {
            Ok(token) => Some(token),
            Err(error) => {
                tracing::error!(%error, "cannot sign a validation token");
                None
            }
        }
    }
}

/// Publishes the changes other nodes announce to this node's live stream,
/// for as long as the notifier lives; a failed subscription is tried again
/// every 5 seconds.
async fn listen_elsewhere(notifier: std::sync::Weak<Notifier>) {
    loop {
        let Some(strong) = notifier.upgrade() else {
            return;
        };
        let store = Arc::clone(&strong.store);
        drop(strong);
        match store.changes_elsewhere().await {
            Ok(None) | Err(presenced_store::StoreError::Closed) => return,
            Ok(Some(mut feed)) => {
                while let Some((key, at)) = feed.recv().await {
                    let Some(notifier) = notifier.upgrade() else {
                        return;
                    };
                    notifier.publish_here(key, at).await;
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot hear other nodes' changes; trying again in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
