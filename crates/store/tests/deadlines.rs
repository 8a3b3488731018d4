//! `Store::advance_deadlines` on the embedded store: many handled deadlines
//! moved in one call end exactly where moving them one by one would, durably.

use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use presenced_domain::{
    Guid, Mutation, Rules, SessionExpiration, SessionId, SessionState, UserFacts,
};
use presenced_store::embedded::EmbeddedStore;
use presenced_store::{ApplyOutcome, Store, UserKey};

/// Users, each with the deadline that was dealt with.
type Handled = Vec<(UserKey, Timestamp)>;

const TENANT: Guid = Guid::from_u128(0x7e4a_0000_0000_0000_0000_0000_0000_0002);

fn user(n: u128) -> UserKey {
    UserKey {
        tenant: TENANT,
        user: Guid::from_u128(0xb000 + n),
    }
}

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_780_000_000).unwrap() + SignedDuration::from_mins(minutes)
}

fn session(availability: &str, activity: &str, minutes: i64) -> Mutation {
    Mutation::SetSession {
        id: SessionId::parse("s").unwrap(),
        state: SessionState::parse(availability, activity).unwrap(),
        expiration: SessionExpiration::new(SignedDuration::from_mins(minutes)).unwrap(),
    }
}

fn open(dir: &Path) -> Arc<EmbeddedStore> {
    EmbeddedStore::open(dir, Rules::default()).unwrap()
}

/// The same users on a store: Available sessions (fading at +5 and +10,
/// expiring at +60) for users 0..40, Busy ones expiring at +30 for 40..80.
async fn populated(dir: &Path) -> Arc<EmbeddedStore> {
    let store = open(dir);
    for n in 0..80 {
        let mutation = if n < 40 {
            session("Available", "Available", 60)
        } else {
            session("Busy", "InACall", 30)
        };
        let outcome = store.apply(user(n), mutation, at(0)).await.unwrap();
        assert!(matches!(outcome, ApplyOutcome::Applied(_)));
    }
    store
}

async fn all_due(store: &EmbeddedStore) -> Vec<(UserKey, Timestamp)> {
    store.due(Timestamp::MAX, usize::MAX).await.unwrap()
}

async fn every_facts(store: &EmbeddedStore) -> Vec<Option<UserFacts>> {
    let mut all = Vec::new();
    for n in 0..100 {
        all.push(store.facts(user(n)).await.unwrap().map(|f| (*f).clone()));
    }
    all
}

#[tokio::test]
async fn moving_many_deadlines_at_once_ends_where_moving_them_one_by_one_does() {
    // (handled, now, rows written): on time, late past a later change,
    // stale, repeated, and users with no facts at all.
    let rounds: Vec<(Handled, Timestamp, u64)> = vec![
        ((0..40).map(|n| (user(n), at(5))).collect(), at(5), 40),
        ((0..20).map(|n| (user(n), at(10))).collect(), at(45), 20),
        (vec![(user(20), at(5)), (user(45), at(29))], at(46), 0),
        ((40..80).map(|n| (user(n), at(30))).collect(), at(30), 40),
        ((40..80).map(|n| (user(n), at(30))).collect(), at(31), 0),
        ((80..100).map(|n| (user(n), at(30))).collect(), at(31), 0),
    ];
    let (one_dir, many_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, many) = (
        populated(one_dir.path()).await,
        populated(many_dir.path()).await,
    );
    for (handled, now, written) in rounds {
        let mut expected = Vec::new();
        for (key, handled_at) in &handled {
            expected.push(one.advance_deadline(*key, *handled_at, now).await.unwrap());
        }
        let writes = many.stats().writes;
        let after = many.advance_deadlines(handled.clone(), now).await.unwrap();
        assert_eq!(after, expected, "{handled:?} at {now}");
        assert_eq!(many.stats().writes - writes, written, "{handled:?}");
        assert_eq!(all_due(&many).await, all_due(&one).await, "{handled:?}");
        assert_eq!(every_facts(&many).await, every_facts(&one).await);
    }
    let mut left: Vec<_> = (20..40).map(|n| (user(n), at(10))).collect();
    left.extend((0..20).map(|n| (user(n), at(60))));
    assert_eq!(all_due(&many).await, left);
}

#[tokio::test]
async fn deadlines_moved_at_once_stay_moved_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = populated(dir.path()).await;
    let handled: Vec<_> = (0..80)
        .map(|n| (user(n), if n < 40 { at(5) } else { at(30) }))
        .collect();
    let commits = store.stats().commits;
    let after = store.advance_deadlines(handled, at(30)).await.unwrap();
    assert_eq!(after[..40], vec![Some(at(60)); 40]);
    assert_eq!(after[40..], vec![None; 40]);
    assert!(
        store.stats().commits - commits < 80,
        "one commit per user: {:?}",
        store.stats()
    );
    let due = all_due(&store).await;
    assert_eq!(due.len(), 40);
    drop(store);
    let store = open(dir.path());
    assert_eq!(all_due(&store).await, due);
}
