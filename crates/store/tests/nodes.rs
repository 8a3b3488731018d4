//! Several `RedisStore`s on one cluster are several nodes: they share the
//! buckets by lease, every deadline is fired and announced once across
//! them, and a node that dies (stops renewing without giving anything back)
//! has its buckets, deadlines and claimed deliveries taken over.
//!
//! Leases here last 1 s and are renewed every 200 ms, so the bounds below
//! are: balance within 5 s of a node joining, takeover within
//! lease + 2 × renewal + 1 s = 2.4 s of a node's death.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use presenced_domain::{Guid, Mutation, Rules, SessionExpiration, SessionId, SessionState};
use presenced_store::redis::{BUCKETS, LeaseTiming, RedisConfig, RedisStore, bucket_of};
use presenced_store::{ApplyOutcome, OutboxBody, OutboxEntry, Store, SubscriptionRecord, UserKey};
use presenced_testkit::RedisCluster;

const TENANT: Guid = Guid::from_u128(0x7e4a_0000_0000_0000_0000_0000_0000_0002);
const LEASE: Duration = Duration::from_millis(1_000);
const RENEW: Duration = Duration::from_millis(200);
const BALANCE_BOUND: Duration = Duration::from_secs(5);
const TAKEOVER_BOUND: Duration = Duration::from_millis(2_400);

fn user(n: u128) -> UserKey {
    UserKey {
        tenant: TENANT,
        user: Guid::from_u128(0xb000 + n),
    }
}

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_780_000_000).unwrap() + SignedDuration::from_mins(minutes)
}

fn available(minutes: i64) -> Mutation {
    Mutation::SetSession {
        id: SessionId::parse("s").unwrap(),
        state: SessionState::parse("Available", "Available").unwrap(),
        expiration: SessionExpiration::new(SignedDuration::from_mins(minutes)).unwrap(),
    }
}

fn config(prefix: &str) -> RedisConfig {
    RedisConfig {
        urls: RedisCluster::shared().urls(),
        key_prefix: prefix.to_owned(),
        leases: LeaseTiming {
            lease: LEASE,
            renew_every: RENEW,
        },
        ..RedisConfig::default()
    }
}

async fn node(prefix: &str) -> Arc<RedisStore> {
    RedisStore::connect(&config(prefix), Rules::default())
        .await
        .unwrap()
}

/// Polls (every 50 ms, at most `bound`) until `done` holds; how long it took.
async fn within(bound: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < bound,
            "{what}: not within {bound:?} (leases of {LEASE:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

fn balanced(nodes: &[&Arc<RedisStore>]) -> bool {
    let share = usize::from(BUCKETS).div_ceil(nodes.len());
    let mut all = BTreeSet::new();
    for node in nodes {
        let held = node.held_buckets();
        if held.len() > share {
            return false;
        }
        for bucket in held {
            if !all.insert(bucket) {
                return false;
            }
        }
    }
    all.len() == usize::from(BUCKETS)
}

/// What the scheduler does on one node: the due users, then their moves.
async fn fire(node: &Arc<RedisStore>, now: Timestamp) -> Vec<(UserKey, Timestamp)> {
    let due = node.due(now, usize::MAX).await.unwrap();
    node.advance_deadlines(due.clone(), now).await.unwrap();
    due
}

async fn claim_all(node: &Arc<RedisStore>) -> Vec<OutboxEntry> {
    node.claim_outbox(Timestamp::MAX, usize::MAX).await.unwrap()
}

async fn subscribe(store: &Arc<RedisStore>, users: impl Iterator<Item = UserKey>) {
    store
        .put_subscription(SubscriptionRecord {
            id: Guid::from_u128(0x5111),
            tenant: TENANT,
            users: users.map(|k| k.user).collect(),
            body: b"sub".to_vec(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_buckets_and_fire_every_deadline_exactly_once() {
    let prefix = RedisCluster::shared().unique_prefix("nodes");
    let a = node(&prefix).await;
    assert_eq!(a.held_buckets().len(), usize::from(BUCKETS), "alone: all");
    let b = node(&prefix).await;
    within(BALANCE_BOUND, "two nodes balance", || balanced(&[&a, &b])).await;

    let users: Vec<UserKey> = (0..200).map(user).collect();
    subscribe(&a, users.iter().copied()).await;
    for &key in &users {
        let store = if key.user.to_bytes()[15] % 2 == 0 {
            &a
        } else {
            &b
        };
        assert!(matches!(
            store.apply(key, available(60), at(0)).await.unwrap(),
            ApplyOutcome::Applied(_)
        ));
    }
    // The changes the writes announced, each claimed by its bucket's holder.
    let (from_a, from_b) = (claim_all(&a).await, claim_all(&b).await);
    assert_eq!(from_a.len() + from_b.len(), users.len());

    // Both fire at once: each sees only its own buckets' users.
    let (due_a, due_b) = tokio::join!(fire(&a, at(5)), fire(&b, at(5)));
    let keys_a: BTreeSet<UserKey> = due_a.iter().map(|(k, _)| *k).collect();
    let keys_b: BTreeSet<UserKey> = due_b.iter().map(|(k, _)| *k).collect();
    assert!(keys_a.is_disjoint(&keys_b));
    assert_eq!(keys_a.len() + keys_b.len(), users.len());
    assert!(!keys_a.is_empty() && !keys_b.is_empty());
    // A node that read the same deadlines before a handover and handles
    // them late announces nothing more: the deadline moved already.
    b.advance_deadlines(due_a.clone(), at(5)).await.unwrap();
    a.advance_deadlines(due_b.clone(), at(5)).await.unwrap();

    let mut announced: BTreeMap<UserKey, usize> = BTreeMap::new();
    for entry in claim_all(&a).await.into_iter().chain(claim_all(&b).await) {
        match entry.body {
            OutboxBody::Changed { key, at: when } => {
                assert_eq!(when, at(5));
                *announced.entry(key).or_default() += 1;
            }
            other => panic!("unexpected entry {other:?}"),
        }
    }
    assert_eq!(announced.len(), users.len());
    assert!(announced.values().all(|&n| n == 1), "{announced:?}");
    // The next fade is at +10 for everyone, and fires once more, once.
    assert!(fire(&a, at(9)).await.is_empty() && fire(&b, at(9)).await.is_empty());
    let fired = fire(&a, at(10)).await.len() + fire(&b, at(10)).await.len();
    assert_eq!(fired, users.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_a_lease_stops_firing_that_bucket() {
    let prefix = RedisCluster::shared().unique_prefix("nodes");
    let a = node(&prefix).await;
    let key = user(1);
    let bucket = bucket_of(key);
    a.apply(key, available(60), at(0)).await.unwrap();
    assert_eq!(a.due(at(5), 10).await.unwrap(), vec![(key, at(5))]);

    // Another holder appears in Redis (as after a partition).
    let cluster = RedisCluster::shared();
    let lease = format!("{prefix}{{b:{bucket:04}}}:lease");
    let port = cluster.node_of(&lease).unwrap();
    cluster
        .command(port, &["SET", &lease, "someone-else", "PX", "60000"])
        .unwrap();
    within(LEASE, "the lost lease is noticed", || {
        !a.held_buckets().contains(&bucket)
    })
    .await;
    assert_eq!(a.due(at(5), 10).await.unwrap(), vec![]);
    // Nor can it claim that bucket's outbox.
    subscribe(&a, std::iter::once(key)).await;
    let busy = Mutation::SetSession {
        id: SessionId::parse("s").unwrap(),
        state: SessionState::parse("Busy", "InACall").unwrap(),
        expiration: SessionExpiration::new(SignedDuration::from_mins(30)).unwrap(),
    };
    let ApplyOutcome::Applied(applied) = a.apply(key, busy, at(1)).await.unwrap() else {
        panic!("refused")
    };
    assert!(applied.visible_change);
    assert!(claim_all(&a).await.is_empty());
    assert_eq!(a.outbox_next_due().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_deadlines_and_claimed_deliveries_pass_to_the_other() {
    let prefix = RedisCluster::shared().unique_prefix("nodes");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    within(BALANCE_BOUND, "two nodes balance", || balanced(&[&a, &b])).await;

    // Users of A's buckets, subscribed, with a fade due at +5.
    let held_by_a: BTreeSet<u16> = a.held_buckets().into_iter().collect();
    let users: Vec<UserKey> = (0..400)
        .map(user)
        .filter(|k| held_by_a.contains(&bucket_of(*k)))
        .take(20)
        .collect();
    assert_eq!(users.len(), 20);
    subscribe(&b, users.iter().copied()).await;
    for &key in &users {
        b.apply(key, available(60), at(0)).await.unwrap();
    }
    // B sees none of it; A claims the announced changes and dies with them
    // in flight: no renewal, nothing given back.
    assert!(b.due(at(5), usize::MAX).await.unwrap().is_empty());
    assert!(claim_all(&b).await.is_empty());
    let in_flight: BTreeSet<u64> = claim_all(&a).await.iter().map(|e| e.id).collect();
    assert_eq!(in_flight.len(), users.len());
    drop(a);

    let took = within(TAKEOVER_BOUND, "B takes A's buckets", || {
        b.held_buckets().len() == usize::from(BUCKETS)
    })
    .await;
    eprintln!("took over in {took:?}");
    // A's deadlines fire on B, and A's claimed deliveries are B's to retry.
    let due: BTreeSet<UserKey> = fire(&b, at(5)).await.iter().map(|(k, _)| *k).collect();
    assert_eq!(due, users.iter().copied().collect());
    let claimed = claim_all(&b).await;
    let retried: BTreeSet<u64> = claimed
        .iter()
        .filter(|e| matches!(e.body, OutboxBody::Changed { at: when, .. } if when == at(0)))
        .map(|e| e.id)
        .collect();
    assert_eq!(retried, in_flight);
    let fades = claimed
        .iter()
        .filter(|e| matches!(e.body, OutboxBody::Changed { at: when, .. } if when == at(5)))
        .count();
    assert_eq!(fades, users.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_node_hands_its_buckets_over_at_once() {
    let prefix = RedisCluster::shared().unique_prefix("nodes");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    within(BALANCE_BOUND, "two nodes balance", || balanced(&[&a, &b])).await;
    a.close().await.unwrap();
    // Well under a lease: the buckets were given back, not left to lapse.
    within(RENEW * 3, "B takes every bucket", || {
        b.held_buckets().len() == usize::from(BUCKETS)
    })
    .await;
}

/// One budget, two nodes: requests through either count against the same
/// GCRA state, so over a steady 30 s window the two admit the limit
/// together (±10 %), not twice it. Simulated time: explicit instants, 4×
/// the allowed rate for 90 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_request_budget() {
    let prefix = RedisCluster::shared().unique_prefix("throttle");
    let (a, b) = (node(&prefix).await, node(&prefix).await);
    let (a, b) = (a.shared_limiter().unwrap(), b.shared_limiter().unwrap());
    let window = Duration::from_secs(30);
    let requests = 300;
    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let key = b"tenant+app";

    // The whole budget at once, half through each node; then a wait of one
    // emission interval (30 s / 300).
    for i in 0..requests {
        let limiter = if i % 2 == 0 { &a } else { &b };
        let answer = limiter.admit(key, requests, window, Some(start)).await;
        assert_eq!(answer.unwrap(), None, "request {i} of the burst");
    }
    let refused = b.admit(key, requests, window, Some(start)).await.unwrap();
    assert_eq!(refused, Some(Duration::from_millis(100)));
    // Another budget is untouched.
    assert_eq!(
        a.admit(b"other", requests, window, Some(start))
            .await
            .unwrap(),
        None
    );

    // 40 requests a second (the limit allows 10) for 90 s.
    let step = Duration::from_millis(25);
    let mut steady = 0;
    for i in 0..3_600u32 {
        let offset = step * i;
        let limiter = if i % 2 == 0 { &a } else { &b };
        let admitted = limiter
            .admit(key, requests, window, Some(start + offset))
            .await
            .unwrap()
            .is_none();
        if admitted && offset >= Duration::from_secs(60) {
            steady += 1;
        }
    }
    let limit = f64::from(requests);
    assert!(
        (f64::from(steady) - limit).abs() <= limit * 0.1,
        "{steady} admitted in the last 30 s, limit {requests}"
    );
}

/// A change announced on one node reaches the other's feed (not its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_announced_on_one_node_reaches_the_others() {
    let prefix = RedisCluster::shared().unique_prefix("live");
    let (a, b) = (node(&prefix).await, node(&prefix).await);
    let mut heard_by_a = a.changes_elsewhere().await.unwrap().unwrap();
    let mut heard_by_b = b.changes_elsewhere().await.unwrap().unwrap();
    a.announce_change(user(1), at(3)).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), heard_by_b.recv()).await;
    assert_eq!(heard.unwrap(), Some((user(1), at(3))));
    b.announce_change(user(2), at(4)).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), heard_by_a.recv()).await;
    // A hears B's change, and never its own.
    assert_eq!(heard.unwrap(), Some((user(2), at(4))));
    assert!(heard_by_a.try_recv().is_err());
    // Another deployment (key prefix) on the same cluster is not heard.
    let other = node(&RedisCluster::shared().unique_prefix("live")).await;
    other.announce_change(user(3), at(5)).await.unwrap();
    a.announce_change(user(4), at(6)).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), heard_by_b.recv()).await;
    assert_eq!(heard.unwrap(), Some((user(4), at(6))));
}

/// Work a node queues for no user lands in a bucket it holds: it delivers
/// it itself, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_a_node_queues_are_its_own_to_make() {
    let prefix = RedisCluster::shared().unique_prefix("nodes");
    let a = node(&prefix).await;
    let b = node(&prefix).await;
    within(BALANCE_BOUND, "two nodes balance", || balanced(&[&a, &b])).await;
    for (me, other) in [(&a, &b), (&b, &a)] {
        let ids = me
            .settle_outbox(presenced_store::OutboxSettlement {
                add: (0..8)
                    .map(|i| (at(0), OutboxBody::Opaque(vec![i])))
                    .collect(),
                ..Default::default()
            })
            .await
            .unwrap();
        let held = me.held_buckets();
        assert!(ids.iter().all(|id| held.contains(&((id >> 40) as u16))));
        assert!(claim_all(other).await.is_empty());
        assert_eq!(claim_all(me).await.len(), 8);
    }
}

/// Adds `id` to `key`'s subscription index (`P{b:NNNN}:s:<tenant><user>`)
/// behind the store's back: what a write across buckets that stopped
/// part-way, or a replaced subscription, leaves behind.
fn add_index_entry(prefix: &str, key: UserKey, id: Guid) {
    let cluster = RedisCluster::shared();
    let tag = format!("{prefix}{{b:{:04}}}:s:", bucket_of(key));
    let mut index = tag.clone().into_bytes();
    index.extend_from_slice(&key.tenant.to_bytes());
    index.extend_from_slice(&key.user.to_bytes());
    let node = cluster.node_of(&tag).unwrap();
    let added = cluster
        .command_bytes(node, &[b"SADD", &index, &id.to_bytes()])
        .unwrap();
    assert_eq!(added, "1");
}

/// What the fan-out (`notify/delivery.rs`) delivers a change of `key` to:
/// the ids of `key`'s index whose record exists and covers `key`.
async fn covering(store: &Arc<RedisStore>, key: UserKey) -> (Vec<Guid>, Vec<Guid>) {
    let listed = store.subscriptions_of(key).await.unwrap();
    let mut covering = Vec::new();
    for id in &listed {
        if let Some(record) = store.subscription(*id).await.unwrap()
            && record.tenant == key.tenant
            && record.users.contains(&key.user)
        {
            covering.push(*id);
        }
    }
    (listed, covering)
}

fn changed_users(entries: &[OutboxEntry]) -> BTreeSet<UserKey> {
    entries
        .iter()
        .filter_map(|e| match e.body {
            OutboxBody::Changed { key, .. } => Some(key),
            OutboxBody::Opaque(_) => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_index_entry_queues_a_change_that_finds_no_subscription() {
    let prefix = RedisCluster::shared().unique_prefix("stale");
    let store = node(&prefix).await;
    // One subscription covers user 1; user 2's index names it although its
    // record does not cover user 2, and user 3's names an id with no record.
    let subscription = Guid::from_u128(0x5111);
    let gone = Guid::from_u128(0x5222);
    subscribe(&store, std::iter::once(user(1))).await;
    add_index_entry(&prefix, user(2), subscription);
    add_index_entry(&prefix, user(3), gone);

    // The index is not filtered: a visible change of user 2 or 3 is queued
    // as of any subscribed user...
    for n in 1..=3 {
        store.apply(user(n), available(60), at(0)).await.unwrap();
    }
    let claimed = claim_all(&store).await;
    assert_eq!(
        changed_users(&claimed),
        [user(1), user(2), user(3)].into_iter().collect()
    );
    // ...and the fan-out's check finds a covering subscription only for user 1.
    assert_eq!(
        covering(&store, user(1)).await,
        (vec![subscription], vec![subscription])
    );
    assert_eq!(
        covering(&store, user(2)).await,
        (vec![subscription], Vec::new())
    );
    assert_eq!(covering(&store, user(3)).await, (vec![gone], Vec::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_flight_when_its_subscription_is_deleted_finds_none() {
    let prefix = RedisCluster::shared().unique_prefix("stale");
    let store = node(&prefix).await;
    let subscription = Guid::from_u128(0x5111);
    subscribe(&store, std::iter::once(user(1))).await;
    // A change is queued for the subscription, not yet fanned out...
    store.apply(user(1), available(60), at(0)).await.unwrap();
    // ...when the subscription is deleted: once that is acknowledged, the
    // record and the index entry are both gone.
    assert!(store.delete_subscription(subscription).await.unwrap());
    let claimed = claim_all(&store).await;
    assert_eq!(changed_users(&claimed), [user(1)].into_iter().collect());
    assert_eq!(covering(&store, user(1)).await, (Vec::new(), Vec::new()));
    assert!(store.subscription(subscription).await.unwrap().is_none());
    // The delete's steps are idempotent: deleting again finds nothing.
    assert!(!store.delete_subscription(subscription).await.unwrap());
}
