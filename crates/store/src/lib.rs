//! Durable storage of presence facts, behind the [`Store`] trait.
//!
//! The trait is written against what the service needs — read a user's
//! facts, apply one mutation atomically together with the user's new "next
//! change" deadline, scan due deadlines, keep the directory — not against one
//! engine's API. No engine type crosses it, so a Redis Cluster backend can
//! implement it too.
//!
//! # Layout
//! - [`embedded`]: the default backend: authoritative state in memory for
//!   reads, every acknowledged write durable in a redb file first (group
//!   commit: many writes per fsync).
//! - [`redis`]: the Redis Cluster backend, for many nodes sharing one
//!   state (key layout and write script in its docs).
//! - [`codec`]: the versioned binary encoding of facts and directory records.
//!
//! Change notifications add two things: subscriptions (opaque bodies the
//! notification layer encodes, plus the users each covers, so that the store
//! can answer "who subscribes to this user" and enqueue a change atomically
//! with the write that made it), and a durable outbox of work (see
//! [`OutboxBody`]).
//!
//! Architecture invariant: this crate knows nothing of HTTP or Graph JSON.

pub mod codec;
pub mod embedded;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jiff::Timestamp;
use presenced_domain::{Applied, Guid, Mutation, MutationError, UserFacts};

/// A boxed future, so that `dyn Store` works.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One user of one tenant: the key of everything stored per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey {
    pub tenant: Guid,
    pub user: Guid,
}

/// A tenant of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: Guid,
    pub display_name: String,
}

/// A user of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub id: Guid,
    pub user_principal_name: String,
    pub display_name: String,
    /// What else the directory says of the user; all optional.
    pub profile: UserProfile,
}

/// The optional parts of a directory user (Graph's basic user properties).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserProfile {
    pub mail: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub job_title: Option<String>,
    pub mobile_phone: Option<String>,
    pub office_location: Option<String>,
    pub preferred_language: Option<String>,
    pub business_phones: Vec<String>,
}

/// A tenant with its users, as a directory file declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub tenant: Tenant,
    pub users: Vec<DirectoryUser>,
}

/// What loading a directory did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectoryChange {
    pub tenants_added: usize,
    pub users_added: usize,
    pub users_updated: usize,
}

/// A change-notification subscription as the store keeps it: the users it
/// covers (for [`Store::subscriptions_of`]) and a body only the notification
/// layer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub id: Guid,
    pub tenant: Guid,
    /// The users of `tenant` whose changes it is told about.
    pub users: Vec<Guid>,
    /// The notification layer's encoding of everything else.
    pub body: Vec<u8>,
}

/// The id of an outbox entry, unique within one store.
pub type OutboxId = u64;

/// What an outbox entry asks to be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxBody {
    /// The user's derived presence changed visibly at `at` (presence time):
    /// tell their subscribers. [`Store::apply`] enqueues these itself, in the
    /// same commit as the change, for users with subscriptions.
    Changed { key: UserKey, at: Timestamp },
    /// Work the notification layer encoded (a delivery to make).
    Opaque(Vec<u8>),
}

/// One entry of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: OutboxId,
    /// When it may be worked on, in real (wall-clock) time; entries that
    /// [`Store::apply`] enqueues are due at once ([`Timestamp::MIN`]).
    pub due: Timestamp,
    pub body: OutboxBody,
}

/// Changes to the outbox that become durable together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxSettlement {
    /// Entries finished (or dropped): removed.
    pub done: Vec<OutboxId>,
    /// New entries: (due, body).
    pub add: Vec<(Timestamp, OutboxBody)>,
    /// Claimed entries to try again later: (id, new due, new body).
    pub retry: Vec<(OutboxId, Timestamp, OutboxBody)>,
}

/// A user as a read of presence needs them: in the directory or not, and
/// their stored facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownFacts {
    /// The directory has no such user (facts may remain from before they
    /// were removed, and are not to be served).
    NotInDirectory,
    /// A user of the directory, with their facts if any were ever written.
    Facts(Option<Arc<UserFacts>>),
}

/// The outcome of [`Store::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The mutation applied and, if it changed facts, is durable.
    Applied(Applied),
    /// The mutation was refused by the domain; nothing was written.
    Refused(MutationError),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
}

/// Durable storage of presence facts and the directory.
///
/// Every write method returns only after its effect is durable.
pub trait Store: Send + Sync + 'static {
    /// The stored facts of a user, or `None` if nothing was ever written.
    fn facts(&self, key: UserKey) -> BoxFuture<'_, Result<Option<Arc<UserFacts>>, StoreError>>;

    /// The facts of many users of one tenant at once, in the order asked.
    fn facts_many(
        &self,
        tenant: Guid,
        users: Vec<Guid>,
    ) -> BoxFuture<'_, Result<Vec<Option<Arc<UserFacts>>>, StoreError>>;

    /// Whether the directory has the user, and their facts: what
    /// [`Store::user`] and [`Store::facts`] answer, in one lookup.
    fn known_facts(&self, key: UserKey) -> BoxFuture<'_, Result<KnownFacts, StoreError>> {
        Box::pin(async move {
            if self.user(key).await?.is_none() {
                return Ok(KnownFacts::NotInDirectory);
            }
            Ok(KnownFacts::Facts(self.facts(key).await?))
        })
    }

    /// [`Store::known_facts`] of many users of one tenant, in the order asked.
    fn known_facts_many<'a>(
        &'a self,
        tenant: Guid,
        users: &'a [Guid],
    ) -> BoxFuture<'a, Result<Vec<KnownFacts>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(users.len());
            for &user in users {
                out.push(self.known_facts(UserKey { tenant, user }).await?);
            }
            Ok(out)
        })
    }

    /// Whether the directory has the user: [`Store::user`] without the
    /// user's names.
    fn contains_user(&self, key: UserKey) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.user(key).await?.is_some()) })
    }

    /// Whether the directory has any tenant: [`Store::directory`] without
    /// reading every user (start-up asks it of stores holding millions).
    fn has_directory(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { Ok(!self.directory().await?.is_empty()) })
    }

    /// Applies `mutation` at `now` to the user's facts atomically, together
    /// with the user's new "next change" deadline, and makes it durable.
    fn apply(
        &self,
        key: UserKey,
        mutation: Mutation,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<ApplyOutcome, StoreError>>;

    /// [`Store::apply`] for a user the directory has; `None` (nothing
    /// written) when it does not. A store that can tell both with one read
    /// overrides it.
    fn apply_known(
        &self,
        key: UserKey,
        mutation: Mutation,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<ApplyOutcome>, StoreError>> {
        Box::pin(async move {
            if !self.contains_user(key).await? {
                return Ok(None);
            }
            self.apply(key, mutation, now).await.map(Some)
        })
    }

    /// Users whose "next change" deadline is at or before `until`, earliest
    /// first, at most `limit`.
    fn due(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(UserKey, Timestamp)>, StoreError>>;

    /// Moves the user's deadline on once the change due at `handled` has been
    /// dealt with: if the user's deadline is still `handled`, it becomes the
    /// first change after `max(handled, now)` (or none), durably. Returns the
    /// user's deadline afterwards. Without this, a deadline that passes with
    /// no write to the user would stay in [`Store::due`]'s answers for ever.
    ///
    /// The default does nothing and answers `None`, for backends whose
    /// deadline index moves on by itself.
    fn advance_deadline(
        &self,
        key: UserKey,
        handled: Timestamp,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Option<Timestamp>, StoreError>> {
        let _ = (key, handled, now);
        Box::pin(async { Ok(None) })
    }

    /// Whether [`Store::advance_deadline`] itself enqueues
    /// `OutboxBody::Changed { key, at: handled }` for a user with
    /// subscriptions, in the same atomic step that moves the deadline (and
    /// only when it moves it). Then the caller must not enqueue it too: of
    /// several nodes handling one deadline, exactly one announces it. The
    /// default is false: the caller enqueues first, then advances.
    fn advance_announces(&self) -> bool {
        false
    }

    /// [`Store::advance_deadline`] for many users at once: each entry pairs
    /// a user with the deadline that was dealt with. Returns each user's
    /// deadline afterwards, in the order given. A backend may make all the
    /// moves durable in one commit; the default moves them one at a time.
    fn advance_deadlines(
        &self,
        handled: Vec<(UserKey, Timestamp)>,
        now: Timestamp,
    ) -> BoxFuture<'_, Result<Vec<Option<Timestamp>>, StoreError>> {
        Box::pin(async move {
            let mut after = Vec::with_capacity(handled.len());
            for (key, at) in handled {
                after.push(self.advance_deadline(key, at, now).await?);
            }
            Ok(after)
        })
    }

    /// Adds and updates tenants and users; users not named are kept.
    fn load_directory(
        &self,
        records: Vec<TenantRecord>,
    ) -> BoxFuture<'_, Result<DirectoryChange, StoreError>>;

    /// Removes a user from the directory, durably; `false` if there was no
    /// such user. Their presence can no longer be read or written, and their
    /// subscriptions are removed by the notification layer.
    fn remove_user(&self, key: UserKey) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// A user of a tenant, if the directory has it.
    fn user(&self, key: UserKey) -> BoxFuture<'_, Result<Option<DirectoryUser>, StoreError>>;

    /// The users of one tenant, by id; empty for a tenant the directory
    /// does not have. The default reads the whole directory.
    fn tenant_users(&self, tenant: Guid) -> BoxFuture<'_, Result<Vec<DirectoryUser>, StoreError>> {
        Box::pin(async move {
            Ok(self
                .directory()
                .await?
                .into_iter()
                .find(|record| record.tenant.id == tenant)
                .map(|record| record.users)
                .unwrap_or_default())
        })
    }

    /// Every tenant with its users.
    fn directory(&self) -> BoxFuture<'_, Result<Vec<TenantRecord>, StoreError>>;

    /// The manual clock's last reading, so a restart does not move it back.
    fn manual_clock(&self) -> BoxFuture<'_, Result<Option<Timestamp>, StoreError>>;

    /// Records the manual clock's reading durably.
    fn set_manual_clock(&self, now: Timestamp) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Creates or replaces a subscription, durably.
    fn put_subscription(&self, record: SubscriptionRecord)
    -> BoxFuture<'_, Result<(), StoreError>>;

    /// Removes a subscription durably; false if there was none.
    fn delete_subscription(&self, id: Guid) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// One subscription by id.
    fn subscription(
        &self,
        id: Guid,
    ) -> BoxFuture<'_, Result<Option<SubscriptionRecord>, StoreError>>;

    /// Every subscription (for listing and the expiry sweep).
    fn subscriptions(&self) -> BoxFuture<'_, Result<Vec<SubscriptionRecord>, StoreError>>;

    /// The ids of the subscriptions that cover a user.
    fn subscriptions_of(&self, key: UserKey) -> BoxFuture<'_, Result<Vec<Guid>, StoreError>>;

    /// Applies a settlement to the outbox atomically and durably; returns
    /// the ids given to `add`, in order.
    fn settle_outbox(
        &self,
        settlement: OutboxSettlement,
    ) -> BoxFuture<'_, Result<Vec<OutboxId>, StoreError>>;

    /// Claims up to `limit` unclaimed entries due at or before `until`
    /// (real time), earliest first. A claimed entry is not answered again
    /// until it is settled (`done` or `retry`) or the store restarts — after
    /// a crash every entry is unclaimed again: delivery is at least once.
    fn claim_outbox(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<OutboxEntry>, StoreError>>;

    /// When the earliest unclaimed entry is due, if there is one.
    fn outbox_next_due(&self) -> BoxFuture<'_, Result<Option<Timestamp>, StoreError>>;

    /// Finishes every write in flight and stops accepting new ones.
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Whether the store accepts calls (for `/readyz`): false once closed or
    /// after a failure that made it stop. The default is always ready.
    fn is_ready(&self) -> bool {
        true
    }

    /// Tells the other nodes sharing this store that `key`'s presence
    /// changed visibly at `at` (for their live streams). Best effort: a node
    /// not listening at that moment never learns of it. The default does
    /// nothing: no other node shares an embedded store.
    fn announce_change(
        &self,
        key: UserKey,
        at: Timestamp,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let _ = (key, at);
        Box::pin(async { Ok(()) })
    }

    /// The changes other nodes announce from now on
    /// ([`Store::announce_change`]), as they arrive; `None` when no other
    /// node can share this store.
    fn changes_elsewhere(&self) -> BoxFuture<'_, Result<Option<ChangeFeed>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    /// The request budget every node shares, when this backend has one
    /// (Redis); `None`: each node throttles on its own (embedded: one node).
    fn shared_limiter(&self) -> Option<Arc<dyn SharedLimiter>> {
        None
    }

    /// Figures for operators (`/metrics`, `presenced status`), read at each
    /// scrape: they must be cheap to take (no walk over every user). The
    /// default names no backend and knows no figure.
    fn figures(&self) -> StoreFigures {
        StoreFigures::default()
    }

    /// Entries in the outbox, claimed or not, for a store that must ask its
    /// engine to count them (it may answer a count a few seconds old);
    /// `None` when it cannot tell. The default is what [`Store::figures`]
    /// tells.
    fn outbox_entries(&self) -> BoxFuture<'_, Option<u64>> {
        let count = self.figures().outbox_entries;
        Box::pin(async move { count })
    }
}

/// Changes announced by other nodes: (user, instant of the change), for as
/// long as the receiver is kept.
pub type ChangeFeed = tokio::sync::mpsc::Receiver<(UserKey, Timestamp)>;

/// A rate limit shared by every node of a deployment: GCRA (generic cell
/// rate algorithm) over one theoretical arrival time per budget, kept by
/// the backend. It knows nothing of who is limited: the caller names the
/// budget with opaque bytes.
pub trait SharedLimiter: Send + Sync + 'static {
    /// Admits one request against the budget `key` of `requests` per
    /// `window` (a burst of `requests`, then one per `window / requests`),
    /// at `now` — `None`: the backend's own clock, the same for every node
    /// (an explicit instant is for tests). Answers `None` when admitted,
    /// else how long to wait before the next request would be.
    fn admit<'a>(
        &'a self,
        key: &'a [u8],
        requests: u32,
        window: std::time::Duration,
        now: Option<std::time::SystemTime>,
    ) -> BoxFuture<'a, Result<Option<std::time::Duration>, StoreError>>;
}

/// What [`Store::figures`] answers; `None`: this backend cannot tell cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFigures {
    /// The backend's name, such as `embedded`.
    pub backend: &'static str,
    /// Users in the directory.
    pub users: Option<u64>,
    /// Entries in the outbox of notification work, claimed or not.
    pub outbox_entries: Option<u64>,
}

impl Default for StoreFigures {
    fn default() -> Self {
        StoreFigures {
            backend: "unknown",
            users: None,
            outbox_entries: None,
        }
    }
}
