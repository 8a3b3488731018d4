//! Tests that need the store's insides: a failing commit, and start-up over
//! a file written directly.

use std::sync::atomic::Ordering;
use std::task::{Context, Waker};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use presenced_domain::{
    Guid, Mutation, PreferredState, Rules, Session, SessionId, SessionState, UserFacts,
};

use super::tables::{DEADLINE_USERKEY, USERKEY_FACTS, deadline_key, user_key_bytes};
use super::*;

fn key(n: u128) -> UserKey {
    UserKey {
        tenant: Guid::from_u128(0x1234),
        user: Guid::from_u128(n),
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_780_000_000).unwrap()
}

fn prefer_away() -> Mutation {
    Mutation::SetPreferred {
        state: PreferredState::parse("Away", "Away").unwrap(),
        expiration: None,
    }
}

#[tokio::test]
async fn a_failed_commit_fails_its_writers_and_stops_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    store.apply(key(1), prefer_away(), now()).await.unwrap();

    store.shared.fail_next_commit.store(true, Ordering::SeqCst);
    let failed = store.apply(key(2), prefer_away(), now()).await;
    assert!(matches!(failed, Err(StoreError::Io(_))), "{failed:?}");

    // Memory holds user 2's unwritten record: nothing may read it.
    assert!(!store.is_ready());
    assert!(matches!(store.facts(key(2)).await, Err(StoreError::Io(_))));
    assert!(matches!(store.facts(key(1)).await, Err(StoreError::Io(_))));
    assert!(matches!(
        store.apply(key(3), prefer_away(), now()).await,
        Err(StoreError::Io(_))
    ));
    assert!(matches!(store.close().await, Err(StoreError::Io(_))));
    drop(store);

    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    assert!(store.facts(key(1)).await.unwrap().is_some());
    assert!(store.facts(key(2)).await.unwrap().is_none());
}

#[tokio::test]
async fn a_barrier_waits_for_the_writes_queued_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    store.apply(key(1), prefer_away(), now()).await.unwrap();
    // The clear's write fails; a repeated clear that changes nothing in
    // memory must not report success for state that never became durable.
    store.shared.fail_next_commit.store(true, Ordering::SeqCst);
    let (first, second) = tokio::join!(
        store.apply(key(1), Mutation::ClearPreferred, now()),
        store.apply(key(1), Mutation::ClearPreferred, now()),
    );
    assert!(matches!(first, Err(StoreError::Io(_))), "{first:?}");
    assert!(matches!(second, Err(StoreError::Io(_))), "{second:?}");
}

#[tokio::test]
async fn writes_queued_during_a_commit_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    let mut applies: Vec<_> = (0..300u128)
        .map(|n| store.apply(key(n), prefer_away(), now()))
        .collect();
    {
        // Hold the writer before its first commit, and poll every apply once:
        // each queues its write and waits, so all 300 are queued before any
        // commit runs.
        let _gate = store.shared.commit_gate.lock().unwrap();
        let mut context = Context::from_waker(Waker::noop());
        for apply in &mut applies {
            assert!(apply.as_mut().poll(&mut context).is_pending());
        }
    }
    for apply in applies {
        apply.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.writes, 300);
    assert!(stats.commits <= 2, "{stats:?}");
    assert!(stats.largest_batch >= 150, "{stats:?}");
}

/// One user with a session and a preferred presence.
fn typical_facts(n: u128) -> UserFacts {
    UserFacts {
        sessions: vec![Session {
            id: SessionId::parse(&format!("{:036x}", n)).unwrap(),
            state: SessionState::from_code(0).unwrap(),
            refreshed_at: now(),
            expires_at: now() + SignedDuration::from_mins(60),
        }],
        preferred: Some(presenced_domain::Preferred {
            state: PreferredState::from_code(1).unwrap(),
            set_at: now(),
            expires_at: now() + SignedDuration::from_hours(24),
        }),
        sequence: 1,
        sequence_at: Some(now()),
        ..UserFacts::default()
    }
}

/// Start-up over 100k users: measured and printed (`--nocapture`), not
/// asserted, since the time depends on the machine.
#[tokio::test]
async fn start_up_reads_every_user_back() {
    const USERS: u128 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path(), Rules::default()).unwrap());
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut records = txn.open_table(USERKEY_FACTS).unwrap();
            let mut deadlines = txn.open_table(DEADLINE_USERKEY).unwrap();
            let deadline = now() + SignedDuration::from_mins(5);
            for n in 0..USERS {
                let user = user_key_bytes(key(n));
                records
                    .insert(
                        &user,
                        codec::encode_user_record(&typical_facts(n), Some(deadline)).as_slice(),
                    )
                    .unwrap();
                deadlines
                    .insert(&deadline_key(deadline, &user), ())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }

    let started = Instant::now();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    let elapsed = started.elapsed();
    eprintln!("opened {USERS} users in {elapsed:?}");
    assert_eq!(store.user_count(), USERS as usize);
    assert_eq!(
        store.facts(key(77)).await.unwrap().as_deref(),
        Some(&typical_facts(77))
    );
    assert_eq!(
        store.due(Timestamp::MAX, usize::MAX).await.unwrap().len(),
        USERS as usize
    );
}
