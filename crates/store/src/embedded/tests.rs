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

/// Waits (bounded) until the store takes writes again after a failed commit.
async fn until_ready(store: &EmbeddedStore) {
    let since = Instant::now();
    while !store.is_ready() {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(10),
            "the store did not recover"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_failed_commit_fails_its_writers_and_the_store_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    store.apply(key(1), prefer_away(), now()).await.unwrap();

    store.shared.fail_next_commit.store(true, Ordering::SeqCst);
    let failed = store.apply(key(2), prefer_away(), now()).await;
    assert!(matches!(failed, Err(StoreError::Io(_))), "{failed:?}");

    // Memory held user 2's unwritten record; it is put back before the
    // failure is answered, so reads are served and never show it.
    assert!(store.facts(key(2)).await.unwrap().is_none());
    assert!(store.facts(key(1)).await.unwrap().is_some());
    until_ready(&store).await;
    store.apply(key(3), prefer_away(), now()).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    assert!(store.facts(key(1)).await.unwrap().is_some());
    assert!(store.facts(key(2)).await.unwrap().is_none());
    assert!(store.facts(key(3)).await.unwrap().is_some());
}

#[tokio::test]
async fn writes_queued_behind_a_failed_commit_fail_too_and_memory_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    store.apply(key(1), prefer_away(), now()).await.unwrap();
    let before = store.facts(key(1)).await.unwrap();
    store
        .put_subscription(subscription_of(1, &[1]))
        .await
        .unwrap();

    let mut context = Context::from_waker(Waker::noop());
    let mut first = store.apply(key(1), Mutation::ClearPreferred, now());
    let mut second = store.apply(key(1), prefer_away(), now() + SignedDuration::from_secs(1));
    let mut third = store.delete_subscription(Guid::from_u128(1));
    {
        // The writer takes `first` (alone, or with the others) and waits at
        // the gate; `second` (applied on top of it in memory) and `third`
        // queue behind it or share its batch: either way none may commit.
        let _gate = store.shared.commit_gate.lock().unwrap();
        assert!(first.as_mut().poll(&mut context).is_pending());
        assert!(second.as_mut().poll(&mut context).is_pending());
        assert!(third.as_mut().poll(&mut context).is_pending());
        store.shared.fail_next_commit.store(true, Ordering::SeqCst);
    }
    assert!(matches!(first.await, Err(StoreError::Io(_))));
    assert!(matches!(second.await, Err(StoreError::Io(_))));
    assert!(matches!(third.await, Err(StoreError::Io(_))));
    // Memory is what the file holds: the preferred presence and the
    // subscription that were there before.
    assert_eq!(store.facts(key(1)).await.unwrap(), before);
    assert!(
        store
            .subscription(Guid::from_u128(1))
            .await
            .unwrap()
            .is_some()
    );
    // Writes are refused until the store has found the file writable again.
    if !store.is_ready() {
        let refused = store.apply(key(4), prefer_away(), now()).await;
        assert!(refused.is_err() || store.is_ready(), "{refused:?}");
    }
    until_ready(&store).await;
    store.apply(key(4), prefer_away(), now()).await.unwrap();
    store.close().await.unwrap();
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

fn subscription_of(id: u128, users: &[u128]) -> SubscriptionRecord {
    SubscriptionRecord {
        id: Guid::from_u128(id),
        tenant: key(0).tenant,
        users: users.iter().map(|n| key(*n).user).collect(),
        body: b"opaque".to_vec(),
    }
}

#[tokio::test]
async fn a_visible_change_of_a_subscribed_user_is_in_the_outbox_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    let busy = || Mutation::SetSession {
        id: SessionId::parse("s").unwrap(),
        state: SessionState::parse("Busy", "InACall").unwrap(),
        expiration: presenced_domain::SessionExpiration::DEFAULT,
    };
    store
        .put_subscription(subscription_of(9, &[1]))
        .await
        .unwrap();
    store.apply(key(1), busy(), now()).await.unwrap();
    // Not subscribed: nothing to announce.
    store.apply(key(2), busy(), now()).await.unwrap();
    // Subscribed, but nothing visible changed: nothing to announce.
    store.apply(key(1), busy(), now()).await.unwrap();
    drop(store);

    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    assert_eq!(
        store.subscriptions_of(key(1)).await.unwrap(),
        vec![Guid::from_u128(9)]
    );
    assert!(store.subscriptions_of(key(2)).await.unwrap().is_empty());
    let claimed = store.claim_outbox(now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(
        claimed[0].body,
        OutboxBody::Changed {
            key: key(1),
            at: now()
        }
    );
    // Claimed entries are not claimed twice.
    assert!(store.claim_outbox(now(), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn settled_outbox_entries_stay_settled_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    let later = now() + SignedDuration::from_secs(60);
    let ids = store
        .settle_outbox(OutboxSettlement {
            add: vec![
                (now(), OutboxBody::Opaque(b"a".to_vec())),
                (now(), OutboxBody::Opaque(b"b".to_vec())),
                (now(), OutboxBody::Opaque(b"c".to_vec())),
            ],
            ..OutboxSettlement::default()
        })
        .await
        .unwrap();
    assert_eq!(ids.len(), 3);
    let claimed = store.claim_outbox(now(), 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    store
        .settle_outbox(OutboxSettlement {
            done: vec![claimed[0].id],
            retry: vec![(claimed[1].id, later, OutboxBody::Opaque(b"b2".to_vec()))],
            ..OutboxSettlement::default()
        })
        .await
        .unwrap();
    assert_eq!(store.outbox_next_due().await.unwrap(), Some(now()));
    drop(store);

    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    let bodies: Vec<_> = store
        .claim_outbox(later, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| (entry.due, entry.body))
        .collect();
    assert_eq!(
        bodies,
        vec![
            (now(), OutboxBody::Opaque(b"c".to_vec())),
            (later, OutboxBody::Opaque(b"b2".to_vec())),
        ]
    );
    assert!(
        store
            .delete_subscription(Guid::from_u128(1))
            .await
            .is_ok_and(|gone| !gone)
    );
}

/// The space the store takes: the redb file and the log (which holds
/// acknowledged writes until a checkpoint moves them into the file).
fn file_len(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join(FILE_NAME)).unwrap().len() + log_len(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_freed_by_deletes_is_given_back_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    let empty = file_len(dir.path());
    // 600 subscriptions of 20 KB each, written concurrently so they share
    // commits, then all deleted.
    let mut writes = tokio::task::JoinSet::new();
    for id in 0..600u128 {
        let store = Arc::clone(&store);
        let mut record = subscription_of(id, &[1, 2]);
        record.body = vec![b'x'; 20 * 1024];
        writes.spawn(async move { store.put_subscription(record).await });
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap().unwrap();
    }
    let full = file_len(dir.path());
    for id in 0..600u128 {
        let store = Arc::clone(&store);
        writes.spawn(async move {
            store
                .delete_subscription(Guid::from_u128(id))
                .await
                .map(|_| ())
        });
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap().unwrap();
    }
    store.close().await.unwrap();
    drop(store);
    let deleted = file_len(dir.path());
    assert!(full > empty + 10 * 1024 * 1024, "{empty} → {full}");

    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    let reopened = file_len(dir.path());
    assert!(store.subscriptions().await.unwrap().is_empty());
    // Most of the growth is given back.
    assert!(
        reopened.saturating_sub(empty) < (full - empty) / 10,
        "empty {empty}, full {full}, after deletes {deleted}, after restart {reopened}"
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_freed_by_deletes_is_given_back_once_the_store_is_idle() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    let mut writes = tokio::task::JoinSet::new();
    for id in 0..600u128 {
        let store = Arc::clone(&store);
        let mut record = subscription_of(id, &[1, 2]);
        record.body = vec![b'x'; 20 * 1024];
        writes.spawn(async move { store.put_subscription(record).await });
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap().unwrap();
    }
    let full = file_len(dir.path());
    for id in 0..600u128 {
        let store = Arc::clone(&store);
        writes.spawn(async move {
            store
                .delete_subscription(Guid::from_u128(id))
                .await
                .map(|_| ())
        });
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap().unwrap();
    }
    // Tests use a short idle time (`writer::IDLE_AFTER`); the store stays
    // open and keeps serving.
    let since = Instant::now();
    while file_len(dir.path()) > full / 10 {
        assert!(
            since.elapsed().as_secs() < 10,
            "the file was not compacted while idle"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.apply(key(1), prefer_away(), now()).await.unwrap();
    assert!(store.due(Timestamp::MAX, 10).await.is_ok());
    store.close().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    assert!(store.facts(key(1)).await.unwrap().is_some());
    assert!(store.subscriptions().await.unwrap().is_empty());
}

/// Writes `users` sessions (users `from..from + users`, each with a
/// deadline), 64 at a time so that they share log records; each is
/// acknowledged.
async fn write_users(store: &Arc<EmbeddedStore>, from: u128, users: u128) {
    let mut writes = tokio::task::JoinSet::new();
    for n in from..from + users {
        let store = Arc::clone(store);
        let busy = Mutation::SetSession {
            id: SessionId::parse("s").unwrap(),
            state: SessionState::parse("Busy", "InACall").unwrap(),
            expiration: presenced_domain::SessionExpiration::DEFAULT,
        };
        writes.spawn(async move { store.apply(key(n), busy, now()).await });
        if writes.len() >= 64 {
            writes.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(done) = writes.join_next().await {
        done.unwrap().unwrap();
    }
}

/// The log's length: its active segment and its retired one, if any.
fn log_len(dir: &std::path::Path) -> u64 {
    [LOG_FILE_NAME, "presenced.wal.prev"]
        .iter()
        .map(|name| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len()))
        .sum()
}

// The lock held across the writes stops the applier thread, not a task.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_redb_lags_the_log_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    // The applier stops before its first transaction: redb holds nothing
    // of what follows, and the log segment retired meanwhile stays.
    let gate = store.shared.apply_gate.lock().unwrap();
    const USERS: u128 = 10_000;
    write_users(&store, 0, USERS).await;
    // A copy of the directory now is what a SIGKILL would leave (redb is
    // not being written: its applier waits).
    let crashed = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), crashed.path().join(entry.file_name())).unwrap();
    }
    assert!(
        crashed.path().join("presenced.wal.prev").exists(),
        "the test means a log with a retired segment"
    );
    drop(gate);
    store.close().await.unwrap();

    let store = EmbeddedStore::open(crashed.path(), Rules::default()).unwrap();
    assert_eq!(store.user_count(), USERS as usize);
    for n in [0, 1, USERS / 2, USERS - 1] {
        let facts = store.facts(key(n)).await.unwrap();
        assert!(facts.is_some(), "user {n} was lost");
    }
    // The replay was a checkpoint: nothing is left to replay.
    assert!(!crashed.path().join("presenced.wal.prev").exists());
    assert_eq!(log_len(crashed.path()), wal::MAGIC.len() as u64);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_sees_the_last_acknowledged_deadline_after_many_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    // More than the applier takes at once, so it runs while writes go on.
    const USERS: u128 = 20_000;
    write_users(&store, 0, USERS).await;
    let due = store.due(Timestamp::MAX, usize::MAX).await.unwrap();
    assert_eq!(due.len(), USERS as usize);
    assert!(due.iter().any(|(user, _)| *user == key(USERS - 1)));
    // And a write right before the call is seen too.
    write_users(&store, USERS, 1).await;
    let due = store.due(Timestamp::MAX, usize::MAX).await.unwrap();
    assert!(due.iter().any(|(user, _)| *user == key(USERS)));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reclaim_the_log_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    // 64 waves of 64 subscriptions of 4 KiB: 16 MiB through a log whose
    // segment retires at 256 KiB in tests (`writer::CHECKPOINT_BYTES`),
    // with no pause in which the idle checkpoint could empty it. The log
    // holds what the applier has not yet made durable, and appends wait
    // for it once a segment reaches 1 MiB (`writer::LOG_MOST_BYTES`): two
    // segments of 1 MiB and a batch at most.
    let mut largest = 0;
    for wave in 0..64u128 {
        let mut writes = tokio::task::JoinSet::new();
        for id in wave * 64..(wave + 1) * 64 {
            let store = Arc::clone(&store);
            let mut record = subscription_of(id, &[1]);
            record.body = vec![b'x'; 4096];
            writes.spawn(async move { store.put_subscription(record).await });
        }
        while let Some(done) = writes.join_next().await {
            done.unwrap().unwrap();
        }
        largest = largest.max(log_len(dir.path()));
    }
    assert!(
        largest < 3 * 1024 * 1024,
        "the log grew to {largest} bytes for 16 MiB written"
    );
    store.close().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    assert_eq!(store.subscriptions().await.unwrap().len(), 64 * 64);
    store.close().await.unwrap();
}

// The locks held across awaits stop the writer and applier threads, not a task.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_for_redb_survive_a_failed_append_while_closing() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    // The applier holds the first handed-off writes at the gate; the later
    // ones wait in its queue. (A sync, as `due()` asks for, hands the
    // pending writes over; it is answered once redb holds them.)
    let apply_gate = store.shared.apply_gate.lock().unwrap();
    // Each sync is sent on its future's first poll; the write after it is
    // acknowledged only once the writer has taken the sync (in that
    // write's batch or before), and it hands over before its next batch.
    const USERS: u128 = 201;
    let mut context = Context::from_waker(Waker::noop());
    write_users(&store, 0, 100).await;
    let mut first_sync = Box::pin(store.due(Timestamp::MAX, 1));
    assert!(first_sync.as_mut().poll(&mut context).is_pending());
    write_users(&store, 100, 100).await;
    let mut second_sync = Box::pin(store.due(Timestamp::MAX, 1));
    assert!(second_sync.as_mut().poll(&mut context).is_pending());
    write_users(&store, 200, 1).await;
    // The next append fails while the store is closing: the writer pauses
    // the applier, which gives its queue back, and the last checkpoint must
    // write it too before it empties the log.
    let commit_gate = store.shared.commit_gate.lock().unwrap();
    let mut failing = store.apply(key(USERS), prefer_away(), now());
    assert!(failing.as_mut().poll(&mut context).is_pending());
    store.shared.fail_next_commit.store(true, Ordering::SeqCst);
    let mut closing = Box::pin(store.close());
    assert!(closing.as_mut().poll(&mut context).is_pending());
    drop(commit_gate);
    // The writer reaches the pause (which waits for the running
    // transaction) long before the applier could take its queue.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(apply_gate);
    closing.await.unwrap();
    assert!(failing.await.is_err());
    // Answered (by the pause), whatever they answered.
    let _ = first_sync.await;
    let _ = second_sync.await;
    drop(store);

    let store = EmbeddedStore::open(dir.path(), Rules::default()).unwrap();
    assert_eq!(store.user_count(), USERS as usize);
    for n in [0, USERS / 2, USERS - 1] {
        assert!(
            store.facts(key(n)).await.unwrap().is_some(),
            "user {n} was lost"
        );
    }
    assert!(store.facts(key(USERS)).await.unwrap().is_none());
    store.close().await.unwrap();
}
