//! Bulk reads on Redis under load: many concurrent reads of the largest
//! batch Graph allows (650 ids) all answer correctly, within a generous
//! bound, and the node keeps calling Redis reachable meanwhile (a busy node
//! is not an outage).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use presenced_domain::{Guid, Mutation, Rules, SessionExpiration, SessionId, SessionState};
use presenced_store::redis::{RedisConfig, RedisStore};
use presenced_store::{
    ApplyOutcome, DirectoryUser, KnownFacts, Store, Tenant, TenantRecord, UserKey,
};
use presenced_testkit::RedisCluster;

const TENANT: Guid = Guid::from_u128(0x7e4a_0000_0000_0000_0000_0000_0000_0b01);
/// Graph's largest `getPresencesByUserId` batch.
const IDS: u128 = 650;
/// Of which the directory holds the first 600, and the first 300 have facts.
const KNOWN: u128 = 600;
const WITH_FACTS: u128 = 300;
/// Concurrent bulk reads, as the benchmark's 64 connections, each done
/// `ROUNDS` times.
const READERS: usize = 64;
const ROUNDS: usize = 3;
/// Far above what the reads need (well under a second each when pipelined).
const BOUND: Duration = Duration::from_secs(60);

fn user(n: u128) -> Guid {
    Guid::from_u128(0xb_0000 + n)
}

fn session(n: u128) -> SessionId {
    SessionId::parse(&format!("s{n}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_bulk_reads_all_answer_and_redis_stays_reachable() {
    let cluster = RedisCluster::shared();
    let config = RedisConfig {
        urls: cluster.urls(),
        key_prefix: cluster.unique_prefix("bulk"),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(&config, Rules::default())
        .await
        .unwrap();
    store
        .load_directory(vec![TenantRecord {
            tenant: Tenant {
                id: TENANT,
                display_name: "Bulk".into(),
            },
            users: (0..KNOWN)
                .map(|n| DirectoryUser {
                    id: user(n),
                    user_principal_name: format!("u{n}@bulk.example"),
                    display_name: format!("User {n}"),
                    profile: Default::default(),
                })
                .collect(),
        }])
        .await
        .unwrap();
    let now = Timestamp::from_second(1_780_000_000).unwrap();
    for n in 0..WITH_FACTS {
        let mutation = Mutation::SetSession {
            id: session(n),
            state: SessionState::parse("Available", "Available").unwrap(),
            expiration: SessionExpiration::new(SignedDuration::from_mins(60)).unwrap(),
        };
        let key = UserKey {
            tenant: TENANT,
            user: user(n),
        };
        assert!(matches!(
            store.apply(key, mutation, now).await.unwrap(),
            ApplyOutcome::Applied(_)
        ));
    }

    let ids: Arc<Vec<Guid>> = Arc::new((0..IDS).map(user).collect());
    let started = Instant::now();
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..READERS {
        let store = Arc::clone(&store);
        let ids = Arc::clone(&ids);
        readers.spawn(async move {
            let mut answers = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                answers.push(store.known_facts_many(TENANT, &ids).await);
            }
            answers
        });
    }
    // Probe as the server does (every 500 ms), all along the reads.
    let reading = Arc::new(AtomicBool::new(true));
    let prober = {
        let store = Arc::clone(&store);
        let reading = Arc::clone(&reading);
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while reading.load(Ordering::Acquire) && started.elapsed() < BOUND {
                if let Err(error) = store.probe().await {
                    failures.push(format!("{:?}: {error}", started.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            failures
        })
    };

    let mut answered = 0;
    while let Some(joined) =
        tokio::time::timeout(BOUND.saturating_sub(started.elapsed()), readers.join_next())
            .await
            .unwrap_or_else(|_| panic!("{answered} bulk reads answered within {BOUND:?}"))
    {
        for answer in joined.unwrap() {
            let facts = answer.expect("a bulk read under load answers");
            assert_eq!(facts.len(), ids.len());
            for (n, known) in (0..IDS).zip(&facts) {
                match known {
                    KnownFacts::NotInDirectory => {
                        assert!(n >= KNOWN, "user {n} is in the directory")
                    }
                    KnownFacts::Facts(None) => {
                        assert!((WITH_FACTS..KNOWN).contains(&n), "user {n}: no facts")
                    }
                    KnownFacts::Facts(Some(facts)) => {
                        assert!(n < WITH_FACTS, "user {n} has facts");
                        assert_eq!(facts.sessions.len(), 1, "user {n}");
                        assert_eq!(facts.sessions[0].id, session(n), "user {n}: someone else's");
                    }
                }
            }
            answered += 1;
        }
    }
    let took = started.elapsed();
    reading.store(false, Ordering::Release);
    let failures = prober.await.unwrap();
    assert_eq!(answered, READERS * ROUNDS);
    assert!(
        failures.is_empty(),
        "Redis called out of reach during {took:?} of bulk reads: {failures:?}"
    );
    assert!(store.is_ready());
    store.close().await.unwrap();
}
