//! The stores through their public interface: what is acknowledged
//! survives a reopen, writes are group-committed, and the directory, the
//! manual clock and the deadline index behave as the `Store` trait says.
//! Tests taking a `Backend` run against the embedded store and the Redis
//! Cluster store (`both!`); the others are about the embedded store's file.

use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use presenced_domain::{
    Guid, Mutation, MutationError, PreferredState, Rules, SessionExpiration, SessionId,
    SessionState, UserFacts,
};
use presenced_store::embedded::{EmbeddedStore, FILE_NAME, LOG_FILE_NAME};
use presenced_store::{
    ApplyOutcome, DirectoryChange, DirectoryUser, KnownFacts, OutboxBody, OutboxSettlement, Store,
    StoreError, SubscriptionRecord, Tenant, TenantRecord, UserKey, UserProfile,
};
use redb::{Database, TableDefinition};

mod support;
use support::Backend;

const TENANT: Guid = Guid::from_u128(0x7e4a_0000_0000_0000_0000_0000_0000_0001);

fn user(n: u128) -> UserKey {
    UserKey {
        tenant: TENANT,
        user: Guid::from_u128(0xa000 + n),
    }
}

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_second(1_780_000_000).unwrap() + SignedDuration::from_mins(minutes)
}

fn set_session(id: &str, availability: &str, activity: &str, minutes: i64) -> Mutation {
    Mutation::SetSession {
        id: SessionId::parse(id).unwrap(),
        state: SessionState::parse(availability, activity).unwrap(),
        expiration: SessionExpiration::new(SignedDuration::from_mins(minutes)).unwrap(),
    }
}

fn set_preferred(availability: &str, activity: &str) -> Mutation {
    Mutation::SetPreferred {
        state: PreferredState::parse(availability, activity).unwrap(),
        expiration: None,
    }
}

fn open(dir: &Path) -> Arc<EmbeddedStore> {
    EmbeddedStore::open(dir, Rules::default()).unwrap()
}

async fn applied<S: Store + ?Sized>(
    store: &Arc<S>,
    key: UserKey,
    mutation: Mutation,
    now: Timestamp,
) {
    match store.apply(key, mutation, now).await.unwrap() {
        ApplyOutcome::Applied(applied) => assert!(applied.facts_changed),
        ApplyOutcome::Refused(refused) => panic!("refused: {refused}"),
    }
}

async fn facts<S: Store + ?Sized>(store: &Arc<S>, key: UserKey) -> Option<UserFacts> {
    store
        .facts(key)
        .await
        .unwrap()
        .map(|facts| (*facts).clone())
}

async fn all_due<S: Store + ?Sized>(store: &Arc<S>) -> Vec<(UserKey, Timestamp)> {
    store.due(Timestamp::MAX, usize::MAX).await.unwrap()
}

#[tokio::test]
async fn acknowledged_facts_and_deadlines_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    applied(
        &store,
        user(1),
        set_session("teams", "Available", "Available", 60),
        at(0),
    )
    .await;
    applied(&store, user(1), set_preferred("Busy", "Busy"), at(1)).await;
    applied(
        &store,
        user(2),
        set_session("app", "Busy", "InACall", 30),
        at(2),
    )
    .await;
    let before = (
        facts(&store, user(1)).await,
        facts(&store, user(2)).await,
        all_due(&store).await,
    );
    assert!(before.0.is_some() && before.1.is_some());
    assert_eq!(before.2.len(), 2);
    store.close().await.unwrap();
    drop(store);

    let store = open(dir.path());
    let after = (
        facts(&store, user(1)).await,
        facts(&store, user(2)).await,
        all_due(&store).await,
    );
    assert_eq!(after, before);
    assert_eq!(store.user_count(), 2);
}

async fn dropping_the_store_without_close_still_commits(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    applied(&store, user(1), set_session("s", "Away", "Away", 5), at(0)).await;
    let before = facts(&store, user(1)).await;
    drop(store);
    let store = place.open().await;
    assert_eq!(facts(&store, user(1)).await, before);
}
both!(dropping_the_store_without_close_still_commits);

async fn concurrent_applies_are_all_acknowledged_and_durable(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..400u128 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            // Two writes to each of 200 users, from different tasks.
            let key = user(n % 200);
            let id = format!("session-{n}");
            store
                .apply(key, set_session(&id, "Available", "Available", 10), at(0))
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(matches!(result.unwrap().unwrap(), ApplyOutcome::Applied(_)));
    }
    if let Some(stats) = place.stats() {
        assert_eq!(stats.writes, 400);
    }
    let before: Vec<_> = facts_of_first(&store, 200).await;
    store.close().await.unwrap();
    drop(store);

    let store = place.open().await;
    let after: Vec<_> = facts_of_first(&store, 200).await;
    assert_eq!(after, before);
    assert!(
        after
            .iter()
            .all(|facts| facts.as_ref().is_some_and(|f| f.sessions.len() == 2))
    );
}
both!(concurrent_applies_are_all_acknowledged_and_durable);

async fn facts_of_first<S: Store + ?Sized>(store: &Arc<S>, users: u128) -> Vec<Option<UserFacts>> {
    let ids = (0..users).map(|n| user(n).user).collect();
    let many = store.facts_many(TENANT, ids).await.unwrap();
    many.into_iter()
        .map(|facts| facts.map(|f| (*f).clone()))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Spawned tasks run together once this task waits: each queues its
    // write, then waits, while the writer commits what it has.
    let handles: Vec<_> = (0..300u128)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .apply(user(n), set_preferred("Away", "Away"), at(0))
                    .await
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.writes, 300);
    assert!(stats.commits < stats.writes, "{stats:?}");
}

async fn a_refused_mutation_writes_nothing(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    let clear = Mutation::ClearSession {
        id: SessionId::parse("nope").unwrap(),
    };
    let outcome = store.apply(user(1), clear, at(0)).await.unwrap();
    assert_eq!(
        outcome,
        ApplyOutcome::Refused(MutationError::SessionNotFound("nope".to_owned()))
    );
    if let Some(stats) = place.stats() {
        assert_eq!(stats.writes, 0);
    }
    assert_eq!(facts(&store, user(1)).await, None);
}
both!(a_refused_mutation_writes_nothing);

async fn a_mutation_that_changes_nothing_writes_nothing(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    let outcome = store
        .apply(user(1), Mutation::ClearPreferred, at(0))
        .await
        .unwrap();
    let ApplyOutcome::Applied(applied) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(!applied.facts_changed && !applied.visible_change);
    if let Some(stats) = place.stats() {
        assert_eq!(stats, Default::default());
    }
    assert_eq!(facts(&store, user(1)).await, None);
}
both!(a_mutation_that_changes_nothing_writes_nothing);

fn directory_user(n: u128, name: &str) -> DirectoryUser {
    DirectoryUser {
        id: user(n).user,
        user_principal_name: format!("u{n}@contoso.example"),
        display_name: name.into(),
        profile: Default::default(),
    }
}

fn tenant(id: Guid, name: &str, users: Vec<DirectoryUser>) -> TenantRecord {
    TenantRecord {
        tenant: Tenant {
            id,
            display_name: name.into(),
        },
        users,
    }
}

async fn directory_loads_add_and_update_and_keep_unnamed_users(backend: Backend) {
    let place = backend.place();
    let other = Guid::from_u128(0xbeef);
    let store = place.open().await;
    let first = vec![
        tenant(
            TENANT,
            "Contoso",
            vec![directory_user(1, "Ada"), directory_user(2, "Bo")],
        ),
        tenant(other, "Fabrikam", vec![]),
    ];
    assert!(!store.has_directory().await.unwrap());
    let change = store.load_directory(first).await.unwrap();
    assert!(store.has_directory().await.unwrap());
    assert_eq!(
        change,
        DirectoryChange {
            tenants_added: 2,
            users_added: 2,
            users_updated: 0
        }
    );

    // User 1 renamed, user 2 not named, user 3 new; a second mention wins.
    let second = vec![tenant(
        TENANT,
        "Contoso",
        vec![
            directory_user(3, "Cy"),
            directory_user(1, "Ada L."),
            directory_user(3, "Cyd"),
        ],
    )];
    let change = store.load_directory(second.clone()).await.unwrap();
    assert_eq!(
        change,
        DirectoryChange {
            tenants_added: 0,
            users_added: 1,
            users_updated: 1
        }
    );
    let change = store.load_directory(second).await.unwrap();
    assert_eq!(change, DirectoryChange::default());

    let expected = vec![
        tenant(other, "Fabrikam", vec![]),
        tenant(
            TENANT,
            "Contoso",
            vec![
                directory_user(1, "Ada L."),
                directory_user(2, "Bo"),
                directory_user(3, "Cyd"),
            ],
        ),
    ];
    let mut listed = store.directory().await.unwrap();
    listed.sort_by_key(|record| record.tenant.id);
    let mut sorted = expected.clone();
    sorted.sort_by_key(|record| record.tenant.id);
    assert_eq!(listed, sorted);
    assert_eq!(
        store.user(user(2)).await.unwrap(),
        Some(directory_user(2, "Bo"))
    );
    assert_eq!(
        store
            .user(UserKey {
                tenant: other,
                user: user(2).user
            })
            .await
            .unwrap(),
        None
    );
    drop(store);

    let store = place.open().await;
    let mut reopened = store.directory().await.unwrap();
    reopened.sort_by_key(|record| record.tenant.id);
    assert_eq!(reopened, sorted);
    assert_eq!(store.tenant_users(TENANT).await.unwrap(), expected[1].users);
    assert_eq!(store.tenant_users(other).await.unwrap(), vec![]);
    assert_eq!(
        store.tenant_users(Guid::from_u128(0xf00)).await.unwrap(),
        vec![]
    );
}
both!(directory_loads_add_and_update_and_keep_unnamed_users);

async fn a_users_profile_is_kept_and_updated_across_restarts(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    let mut ada = directory_user(1, "Ada");
    ada.profile = UserProfile {
        mail: Some("ada@contoso.example".into()),
        job_title: Some("Engineer".into()),
        business_phones: vec!["+1 425 555 0100".into()],
        ..UserProfile::default()
    };
    store
        .load_directory(vec![tenant(
            TENANT,
            "Contoso",
            vec![ada.clone(), directory_user(2, "Bo")],
        )])
        .await
        .unwrap();
    assert_eq!(store.user(user(1)).await.unwrap(), Some(ada.clone()));
    ada.profile.job_title = Some("Architect".into());
    let change = store
        .load_directory(vec![tenant(TENANT, "Contoso", vec![ada.clone()])])
        .await
        .unwrap();
    assert_eq!(change.users_updated, 1);
    drop(store);
    let store = place.open().await;
    assert_eq!(
        store.tenant_users(TENANT).await.unwrap(),
        vec![ada, directory_user(2, "Bo")]
    );
}
both!(a_users_profile_is_kept_and_updated_across_restarts);

async fn a_removed_user_leaves_the_directory_durably_and_keeps_their_facts(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    let users = vec![directory_user(1, "Ada"), directory_user(2, "Bo")];
    store
        .load_directory(vec![tenant(TENANT, "Contoso", users)])
        .await
        .unwrap();
    applied(
        &store,
        user(1),
        set_session("s", "Busy", "InACall", 60),
        at(0),
    )
    .await;

    assert!(store.remove_user(user(1)).await.unwrap());
    assert!(!store.remove_user(user(1)).await.unwrap(), "already gone");
    assert!(!store.remove_user(user(9)).await.unwrap(), "never there");
    assert_eq!(store.user(user(1)).await.unwrap(), None);
    assert!(facts(&store, user(1)).await.is_some());
    drop(store);

    let store = place.open().await;
    assert_eq!(store.user(user(1)).await.unwrap(), None);
    assert_eq!(
        store.user(user(2)).await.unwrap(),
        Some(directory_user(2, "Bo"))
    );
    assert!(facts(&store, user(1)).await.is_some());
}
both!(a_removed_user_leaves_the_directory_durably_and_keeps_their_facts);

async fn one_lookup_reads_answer_what_user_and_facts_answer(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    let users = vec![directory_user(1, "Ada"), directory_user(2, "Bo")];
    store
        .load_directory(vec![tenant(TENANT, "Contoso", users)])
        .await
        .unwrap();
    // 1: in the directory with facts; 2: in it without; 3: facts only;
    // 4: neither; 5: removed from the directory, facts kept.
    for n in [1, 3, 5] {
        applied(&store, user(n), set_preferred("Away", "Away"), at(0)).await;
    }
    store
        .load_directory(vec![tenant(
            TENANT,
            "Contoso",
            vec![directory_user(5, "Cy")],
        )])
        .await
        .unwrap();
    assert!(store.remove_user(user(5)).await.unwrap());

    let cases = [
        (1, true, true),
        (2, true, false),
        (3, false, true),
        (4, false, false),
        (5, false, true),
    ];
    for (n, in_directory, has_facts) in cases {
        let key = user(n);
        let expected = if in_directory {
            KnownFacts::Facts(store.facts(key).await.unwrap())
        } else {
            KnownFacts::NotInDirectory
        };
        assert_eq!(store.known_facts(key).await.unwrap(), expected, "user {n}");
        assert_eq!(
            store.contains_user(key).await.unwrap(),
            in_directory,
            "user {n}"
        );
        assert_eq!(facts(&store, key).await.is_some(), has_facts, "user {n}");
    }
    let asked: Vec<Guid> = [4, 1, 2, 5, 1].iter().map(|n| user(*n).user).collect();
    let many = store.known_facts_many(TENANT, &asked).await.unwrap();
    let mut one_by_one = Vec::new();
    for user in &asked {
        one_by_one.push(
            store
                .known_facts(UserKey {
                    tenant: TENANT,
                    user: *user,
                })
                .await
                .unwrap(),
        );
    }
    assert_eq!(many, one_by_one);
    assert!(matches!(many[1], KnownFacts::Facts(Some(_))));
    assert!(matches!(many[2], KnownFacts::Facts(None)));
}
both!(one_lookup_reads_answer_what_user_and_facts_answer);

async fn a_read_of_many_users_answers_each_in_the_order_asked(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    // Enough users that every shard of the embedded store holds several.
    let users = (1..=400).map(|n| directory_user(n, "Someone")).collect();
    store
        .load_directory(vec![tenant(TENANT, "Contoso", users)])
        .await
        .unwrap();
    for n in (1..=400).step_by(3) {
        applied(&store, user(n), set_preferred("Away", "Away"), at(0)).await;
    }
    // Scrambled, with repeats and users the directory does not have.
    let asked: Vec<Guid> = (0..650u128)
        .map(|i| user((i * 7919) % 450 + 1).user)
        .collect();
    let many = store.known_facts_many(TENANT, &asked).await.unwrap();
    assert_eq!(many.len(), asked.len());
    for (user, answer) in asked.iter().zip(&many) {
        let key = UserKey {
            tenant: TENANT,
            user: *user,
        };
        assert_eq!(*answer, store.known_facts(key).await.unwrap(), "{user}");
    }
    let with_facts = many
        .iter()
        .filter(|answer| matches!(answer, KnownFacts::Facts(Some(_))))
        .count();
    let strangers = many
        .iter()
        .filter(|answer| matches!(answer, KnownFacts::NotInDirectory))
        .count();
    assert!(
        with_facts > 100 && strangers > 30,
        "{with_facts} {strangers}"
    );
}
both!(a_read_of_many_users_answers_each_in_the_order_asked);

async fn a_checked_write_applies_only_to_users_of_the_directory(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    let users = vec![directory_user(1, "Ada"), directory_user(2, "Bo")];
    store
        .load_directory(vec![tenant(TENANT, "Contoso", users)])
        .await
        .unwrap();
    assert!(store.remove_user(user(2)).await.unwrap());
    let outcome = store
        .apply_known(user(1), set_preferred("Away", "Away"), at(0))
        .await
        .unwrap();
    assert!(
        matches!(outcome, Some(ApplyOutcome::Applied(ref applied)) if applied.facts_changed),
        "{outcome:?}"
    );
    assert!(facts(&store, user(1)).await.is_some());
    // Removed, and never in the directory: nothing is written.
    for n in [2, 3] {
        let outcome = store
            .apply_known(user(n), set_preferred("Away", "Away"), at(0))
            .await
            .unwrap();
        assert!(outcome.is_none(), "user {n}: {outcome:?}");
        assert!(facts(&store, user(n)).await.is_none(), "user {n}");
    }
}
both!(a_checked_write_applies_only_to_users_of_the_directory);

async fn the_manual_clock_reading_survives_a_reopen(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    assert_eq!(store.manual_clock().await.unwrap(), None);
    store.set_manual_clock(at(5)).await.unwrap();
    store.set_manual_clock(at(7)).await.unwrap();
    assert_eq!(store.manual_clock().await.unwrap(), Some(at(7)));
    store.close().await.unwrap();
    drop(store);
    let store = place.open().await;
    assert_eq!(store.manual_clock().await.unwrap(), Some(at(7)));
}
both!(the_manual_clock_reading_survives_a_reopen);

async fn due_lists_deadlines_earliest_first_up_to_the_limit(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    // Busy sessions do not fade: the deadline is the expiry.
    for (n, minutes) in [(1, 60), (2, 5), (3, 240), (4, 30)] {
        applied(
            &store,
            user(n),
            set_session("s", "Busy", "InACall", minutes),
            at(0),
        )
        .await;
    }
    let due = store.due(at(60), 10).await.unwrap();
    assert_eq!(
        due,
        vec![(user(2), at(5)), (user(4), at(30)), (user(1), at(60))]
    );
    assert_eq!(store.due(at(60), 2).await.unwrap(), due[..2]);
    assert_eq!(store.due(at(4), 10).await.unwrap(), vec![]);
    assert_eq!(store.due(at(60), 0).await.unwrap(), vec![]);

    // A later write moves the user's row: one row per user.
    applied(
        &store,
        user(2),
        set_session("s", "Busy", "InACall", 120),
        at(1),
    )
    .await;
    let due = all_due(&store).await;
    assert_eq!(
        due,
        vec![
            (user(4), at(30)),
            (user(1), at(60)),
            (user(2), at(121)),
            (user(3), at(240))
        ]
    );
}
both!(due_lists_deadlines_earliest_first_up_to_the_limit);

async fn advancing_a_handled_deadline_moves_it_to_the_next_change(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    // Available fades at +5 and +10 minutes, then expires at +60.
    applied(
        &store,
        user(1),
        set_session("s", "Available", "Available", 60),
        at(0),
    )
    .await;
    assert_eq!(all_due(&store).await, vec![(user(1), at(5))]);

    assert_eq!(
        store.advance_deadline(user(1), at(5), at(5)).await.unwrap(),
        Some(at(10))
    );
    assert_eq!(all_due(&store).await, vec![(user(1), at(10))]);
    // A stale or repeated call changes nothing.
    let writes = place.stats().map(|s| s.writes);
    assert_eq!(
        store.advance_deadline(user(1), at(5), at(6)).await.unwrap(),
        Some(at(10))
    );
    assert_eq!(place.stats().map(|s| s.writes), writes);
    // A late handler skips what is already past.
    assert_eq!(
        store
            .advance_deadline(user(1), at(10), at(70))
            .await
            .unwrap(),
        None
    );
    assert_eq!(all_due(&store).await, vec![]);
    assert_eq!(
        store
            .advance_deadline(user(9), at(10), at(70))
            .await
            .unwrap(),
        None
    );
    let before = facts(&store, user(1)).await;
    drop(store);
    let store = place.open().await;
    assert_eq!(all_due(&store).await, vec![]);
    assert_eq!(facts(&store, user(1)).await, before);
}
both!(advancing_a_handled_deadline_moves_it_to_the_next_change);

#[tokio::test]
async fn after_close_every_call_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(store.is_ready());
    applied(&store, user(1), set_preferred("Away", "Away"), at(0)).await;
    store.close().await.unwrap();
    assert!(!store.is_ready());
    store.close().await.unwrap();
    assert!(matches!(
        store.facts(user(1)).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.apply(user(1), Mutation::ClearPreferred, at(1)).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.due(at(0), 1).await, Err(StoreError::Closed)));
    assert!(matches!(
        store.set_manual_clock(at(0)).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.load_directory(vec![]).await,
        Err(StoreError::Closed)
    ));
    // The file is released by close(), even while this handle lives.
    let reopened = open(dir.path());
    assert!(facts(&reopened, user(1)).await.is_some());
}

const USERKEY_FACTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("userkey_facts");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

#[tokio::test]
async fn a_corrupt_record_stops_start_up_and_names_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    applied(&store, user(1), set_preferred("Away", "Away"), at(0)).await;
    drop(store);
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(USERKEY_FACTS).unwrap();
            let mut key = [0; 32];
            key[..16].copy_from_slice(&TENANT.to_bytes());
            key[16..].copy_from_slice(&user(1).user.to_bytes());
            table.insert(&key, [1u8, 0, 0xff].as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    match EmbeddedStore::open(dir.path(), Rules::default()) {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(&user(1).user.to_string()), "{message}")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a corrupt store"),
    }
}

#[tokio::test]
async fn a_file_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", [99u8].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(
        EmbeddedStore::open(dir.path(), Rules::default()),
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    assert!(matches!(
        EmbeddedStore::open(dir.path(), Rules::default()),
        Err(StoreError::Io(_))
    ));
}

#[tokio::test]
async fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    let store = open(&nested);
    assert!(nested.join(FILE_NAME).exists());
    assert!(store.is_ready());
}

fn subscription(id: u128, tenant_users: &[u128], body: &[u8]) -> SubscriptionRecord {
    SubscriptionRecord {
        id: Guid::from_u128(0x5000 + id),
        tenant: TENANT,
        users: tenant_users.iter().map(|n| user(*n).user).collect(),
        body: body.to_vec(),
    }
}

async fn subscriptions_and_the_outbox_keep_their_contract(backend: Backend) {
    let place = backend.place();
    let store = place.open().await;
    // A change of a user without subscriptions enqueues nothing.
    applied(
        &store,
        user(2),
        set_session("s", "Busy", "InACall", 30),
        at(0),
    )
    .await;
    assert_eq!(store.outbox_next_due().await.unwrap(), None);

    let first = subscription(1, &[1, 2], b"one");
    store.put_subscription(first.clone()).await.unwrap();
    store
        .put_subscription(subscription(2, &[2], b"two"))
        .await
        .unwrap();
    assert_eq!(
        store.subscription(first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.subscriptions_of(user(1)).await.unwrap(),
        vec![first.id]
    );
    assert_eq!(store.subscriptions_of(user(2)).await.unwrap().len(), 2);
    // Replacing a subscription moves its index with it.
    let moved = subscription(1, &[3], b"moved");
    store.put_subscription(moved.clone()).await.unwrap();
    assert!(store.subscriptions_of(user(1)).await.unwrap().is_empty());
    assert_eq!(
        store.subscriptions_of(user(3)).await.unwrap(),
        vec![moved.id]
    );
    assert_eq!(store.subscriptions().await.unwrap().len(), 2);

    // A visible change of a subscribed user is enqueued with the write.
    applied(&store, user(3), set_session("s", "Away", "Away", 30), at(1)).await;
    assert_eq!(store.outbox_next_due().await.unwrap(), Some(Timestamp::MIN));
    let claimed = store.claim_outbox(at(1), 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(
        claimed[0].body,
        OutboxBody::Changed {
            key: user(3),
            at: at(1)
        }
    );
    // Claimed entries are not answered again until settled.
    assert!(store.claim_outbox(at(1), 10).await.unwrap().is_empty());
    assert_eq!(store.outbox_next_due().await.unwrap(), None);

    // Settle: the change done, one delivery added, retried later.
    let added = store
        .settle_outbox(OutboxSettlement {
            done: vec![claimed[0].id],
            add: vec![(at(5), OutboxBody::Opaque(b"deliver".to_vec()))],
            retry: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(added.len(), 1);
    assert_eq!(store.outbox_next_due().await.unwrap(), Some(at(5)));
    assert!(store.claim_outbox(at(4), 10).await.unwrap().is_empty());
    let delivery = store.claim_outbox(at(5), 10).await.unwrap();
    assert_eq!(delivery.len(), 1);
    assert_eq!(delivery[0].id, added[0]);
    store
        .settle_outbox(OutboxSettlement {
            retry: vec![(added[0], at(9), OutboxBody::Opaque(b"again".to_vec()))],
            ..OutboxSettlement::default()
        })
        .await
        .unwrap();
    assert!(store.claim_outbox(at(8), 10).await.unwrap().is_empty());
    let again = store.claim_outbox(at(9), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, OutboxBody::Opaque(b"again".to_vec()));

    // After a restart unsettled claims are answered again (at least once),
    // and subscriptions are still there; deleting one removes its index.
    store.close().await.unwrap();
    drop(store);
    let store = place.open().await;
    assert_eq!(store.claim_outbox(at(9), 10).await.unwrap().len(), 1);
    assert!(store.delete_subscription(moved.id).await.unwrap());
    assert!(!store.delete_subscription(moved.id).await.unwrap());
    assert!(store.subscriptions_of(user(3)).await.unwrap().is_empty());
    assert_eq!(store.subscriptions().await.unwrap().len(), 1);
}
both!(subscriptions_and_the_outbox_keep_their_contract);

/// Two stores on one cluster are two nodes: a write on one is read on the
/// other at once, and so is the manual clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_redis_node_is_read_on_another() {
    let place = Backend::Redis.place();
    let a = place.open().await;
    let b = place.open().await;
    applied(&a, user(1), set_session("s", "Busy", "InACall", 30), at(0)).await;
    assert_eq!(facts(&b, user(1)).await, facts(&a, user(1)).await);
    assert!(facts(&b, user(1)).await.is_some());
    a.set_manual_clock(at(7)).await.unwrap();
    assert_eq!(b.manual_clock().await.unwrap(), Some(at(7)));
    // Interleaved writes through both nodes all land (compare-and-set).
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            let id = format!("s{i}");
            store
                .apply(
                    user(2),
                    set_session(&id, "Available", "Available", 60),
                    at(1),
                )
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(matches!(result.unwrap().unwrap(), ApplyOutcome::Applied(_)));
    }
    let sessions = facts(&b, user(2)).await.unwrap();
    assert_eq!(sessions.sessions.len(), 20, "{sessions:?}");
}

#[tokio::test]
async fn figures_count_directory_users_and_outbox_entries_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let empty = store.figures();
    assert_eq!(
        (empty.backend, empty.users, empty.outbox_entries),
        ("embedded", Some(0), Some(0))
    );

    let users = vec![
        directory_user(1, "Ada"),
        directory_user(2, "Bo"),
        directory_user(3, "Cy"),
    ];
    store
        .load_directory(vec![tenant(TENANT, "Contoso", users.clone())])
        .await
        .unwrap();
    // Loading the same users again adds none; presence alone adds no user.
    store
        .load_directory(vec![tenant(TENANT, "Contoso", users)])
        .await
        .unwrap();
    store
        .apply(user(9), Mutation::ClearPreferred, at(0))
        .await
        .unwrap();
    assert!(store.remove_user(user(2)).await.unwrap());
    assert!(!store.remove_user(user(2)).await.unwrap());
    store
        .settle_outbox(OutboxSettlement {
            add: vec![
                (at(0), OutboxBody::Opaque(b"a".to_vec())),
                (at(0), OutboxBody::Opaque(b"b".to_vec())),
            ],
            ..OutboxSettlement::default()
        })
        .await
        .unwrap();
    // A claimed entry is still in the outbox until it is settled.
    assert_eq!(store.claim_outbox(at(0), 1).await.unwrap().len(), 1);
    assert_eq!(store.figures().users, Some(2));
    assert_eq!(store.figures().outbox_entries, Some(2));
    store.close().await.unwrap();
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.figures().users, Some(2));
    assert_eq!(store.figures().outbox_entries, Some(2));
}

/// Copies the files of a data directory, as a crash would leave them.
fn crash_image(from: &Path, to: &Path) {
    for name in [FILE_NAME, LOG_FILE_NAME] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

#[tokio::test]
async fn acknowledged_writes_still_only_in_the_log_survive_a_crash() {
    // The redb file lags the log; a copy of both taken right after the
    // acknowledgements is what a crash leaves. The store checkpoints when
    // idle, so a round whose copy caught an empty log is run again.
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 5, "every copy caught an already emptied log");
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for n in 0..20 {
            applied(
                &store,
                user(n),
                set_session("s", "Busy", "InACall", 30),
                at(0),
            )
            .await;
        }
        store.set_manual_clock(at(3)).await.unwrap();
        let image = tempfile::tempdir().unwrap();
        crash_image(dir.path(), image.path());
        store.close().await.unwrap();
        if std::fs::metadata(image.path().join(LOG_FILE_NAME))
            .unwrap()
            .len()
            <= 8
        {
            continue;
        }
        let store = open(image.path());
        for n in 0..20 {
            let facts = facts(&store, user(n)).await.expect("acknowledged");
            assert_eq!(facts.sessions.len(), 1);
        }
        assert_eq!(store.manual_clock().await.unwrap(), Some(at(3)));
        // Their deadlines are back in the index too.
        assert_eq!(all_due(&store).await.len(), 20);
        // The replay was a checkpoint: the log is empty again.
        assert_eq!(
            std::fs::metadata(image.path().join(LOG_FILE_NAME))
                .unwrap()
                .len(),
            8
        );
        store.close().await.unwrap();
        return;
    }
}

#[tokio::test]
async fn a_data_directory_of_the_release_before_the_log_is_upgraded_in_place() {
    // Written by the store as released before the write-ahead log: a
    // tenant of three users, two with presence, a subscription covering
    // user 1 (whose change is in the outbox), and a manual clock reading.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture.join(FILE_NAME), dir.path().join(FILE_NAME)).unwrap();
    let tenant = Guid::from_u128(0x7e7a);
    let key = |n: u128| UserKey {
        tenant,
        user: Guid::from_u128(n),
    };
    let now = Timestamp::from_second(1_780_000_000).unwrap();

    let store = open(dir.path());
    assert_eq!(store.manual_clock().await.unwrap(), Some(now));
    let users = store.tenant_users(tenant).await.unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(
        store
            .user(key(2))
            .await
            .unwrap()
            .unwrap()
            .user_principal_name,
        "u2@contoso.example"
    );
    let busy = facts(&store, key(1)).await.unwrap();
    assert_eq!(busy.sessions.len(), 1);
    assert!(facts(&store, key(2)).await.unwrap().preferred.is_some());
    assert!(facts(&store, key(3)).await.is_none());
    assert_eq!(
        store.subscriptions_of(key(1)).await.unwrap(),
        vec![Guid::from_u128(0x5001)]
    );
    assert_eq!(store.outbox_next_due().await.unwrap(), Some(Timestamp::MIN));
    // User 1's session expires in an hour: the deadline index came along.
    let due = store
        .due(now + SignedDuration::from_hours(2), 10)
        .await
        .unwrap();
    assert_eq!(due.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [key(1)]);

    // It takes writes, and keeps them across a restart.
    applied(
        &store,
        key(3),
        set_preferred("DoNotDisturb", "DoNotDisturb"),
        now,
    )
    .await;
    store.close().await.unwrap();
    drop(store);
    // Closing made a checkpoint: the log is back to its header.
    assert_eq!(
        std::fs::metadata(dir.path().join(LOG_FILE_NAME))
            .unwrap()
            .len(),
        8
    );
    let store = open(dir.path());
    assert!(facts(&store, key(3)).await.unwrap().preferred.is_some());
    assert_eq!(facts(&store, key(1)).await.unwrap().sessions.len(), 1);
    store.close().await.unwrap();
    drop(store);

    // The file now says it has a log: the schema version moved on.
    let db = Database::open(dir.path().join(FILE_NAME)).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = txn.open_table(META).unwrap();
    assert_eq!(meta.get("schema_version").unwrap().unwrap().value(), [2]);
}

#[tokio::test]
async fn a_restored_record_is_read_files_its_deadline_and_survives_a_reopen() {
    // The record another store holds: a session with a fade and an expiry.
    let source_dir = tempfile::tempdir().unwrap();
    let source = open(source_dir.path());
    applied(
        &source,
        user(1),
        set_session("teams", "Available", "Available", 60),
        at(0),
    )
    .await;
    let exported = facts(&source, user(1)).await.unwrap();
    let deadline = all_due(&source).await[0].1;
    source.close().await.unwrap();
    let record = presenced_store::codec::encode_user_record(&exported, Some(deadline));

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Over an older record with a later deadline: its row moves.
    applied(
        &store,
        user(1),
        set_session("other", "Busy", "InACall", 120),
        at(30),
    )
    .await;
    assert!(all_due(&store).await[0].1 > deadline);
    store.restore_record(user(1), &record).await.unwrap();
    assert_eq!(facts(&store, user(1)).await, Some(exported.clone()));
    assert_eq!(all_due(&store).await, vec![(user(1), deadline)]);
    // A record that does not decode is refused and changes nothing.
    assert!(matches!(
        store.restore_record(user(2), b"not a record").await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(facts(&store, user(2)).await, None);
    store.close().await.unwrap();
    drop(store);

    let store = open(dir.path());
    assert_eq!(facts(&store, user(1)).await, Some(exported));
    assert_eq!(all_due(&store).await, vec![(user(1), deadline)]);
}
