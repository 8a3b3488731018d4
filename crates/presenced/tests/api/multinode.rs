//! Several `presenced` nodes on one Redis Cluster, as behind a load
//! balancer: real binaries, one key prefix, leases of 1.5 s
//! (`[store.redis] lease_ms = 1500`, renewed every 500 ms).
//!
//! Bounds stated here: a killed node's deadlines fire and its pending
//! notifications arrive on the other node within [`TAKEOVER`] (the lease,
//! 1.5 s, plus a renewal, 0.5 s, plus the scheduler's and outbox's 1 s
//! poll, with room for a loaded machine). Throttling is measured over a
//! steady 4 s window of a `40/2s` limit: the 30 s window scaled down, as
//! GCRA's steady rate is the same 20 requests a second whatever the
//! window, and its burst is spent first.

use std::path::Path;
use std::time::{Duration, Instant};

use presenced_store::UserKey;
use presenced_store::redis::bucket_of;
use presenced_testkit::{ClusterOptions, RedisCluster};
use serde_json::{Value, json};

use crate::extensions::{Stream, expect, pair};
use crate::helpers::*;
use crate::notifications::{WAIT, set_presence, subscribe_to};
use crate::receiver::{Behaviour, Receiver};

const LEASE_MS: u64 = 1_500;
const TAKEOVER: Duration = Duration::from_secs(10);

/// A configuration file for the nodes: quick webhook retries, short leases.
pub(crate) fn config(dir: &Path, extra: &str) -> String {
    let path = dir.join("presenced.toml");
    std::fs::write(
        &path,
        format!(
            "[notifications]\nretry_initial = \"PT0.05S\"\nretry_max = \"PT0.2S\"\nhandshake_timeout = \"PT0.5S\"\nlive_stream = true\n[store.redis]\nlease_ms = {LEASE_MS}\n{extra}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

pub(crate) async fn node(setup: &RedisSetup, config: &str, throttle: &str) -> TestServer {
    TestServer::start_on_redis(
        setup.clone(),
        &[
            "--clock",
            "manual",
            "--throttle",
            throttle,
            "--webhooks-allow-loopback-http",
            "--config",
            config,
        ],
    )
    .await
}

/// Two nodes on the shared cluster under a fresh key prefix.
async fn two_nodes(throttle: &str) -> (TestServer, TestServer, RedisSetup, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "");
    let setup = RedisSetup::fresh();
    let a = node(&setup, &config, throttle).await;
    let b = node(&setup, &config, throttle).await;
    (a, b, setup, dir)
}

/// The process id of the node holding the lease of `user`'s bucket.
fn lease_holder(cluster: &RedisCluster, setup: &RedisSetup, user: &str) -> Option<u32> {
    let bucket = bucket_of(UserKey {
        tenant: guid(TENANT),
        user: guid(user),
    });
    let key = format!("{}{{b:{bucket:04}}}:lease", setup.key_prefix);
    let holder = cluster
        .command(cluster.node_of(&key).ok()?, &["GET", &key])
        .ok()?;
    u32::from_str_radix(holder.split('-').next()?, 16).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_on_one_node_is_read_on_the_other() {
    let (a, b, _setup, _dir) = two_nodes("off").await;
    set_presence(&a, ADELE, "Busy", "InACall").await;
    assert_eq!(b.presence_of(ADELE).await, ["Busy", "InACall"]);
    set_presence(&b, ADELE, "Away", "Away").await;
    assert_eq!(a.presence_of(ADELE).await, ["Away", "Away"]);
    // One manual clock.
    let moved = a.advance("PT1H").await;
    assert_eq!(b.now().await, moved);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fade_is_notified_once_across_nodes() {
    let (a, b, _setup, _dir) = two_nodes("off").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    subscribe_to(&a, &hook, ADELE).await;
    set_presence(&b, ADELE, "Available", "Available").await;
    assert_eq!(hook.wait_for(1, WAIT).await.len(), 1);
    // +5 min: Available/AvailableInactive; +10 min: Away. Each once, from
    // whichever node holds Adele's bucket, whatever node the clock moved on.
    a.advance("PT5M").await;
    assert_eq!(hook.wait_for(2, WAIT).await.len(), 2);
    b.advance("PT5M").await;
    assert_eq!(hook.wait_for(3, WAIT).await.len(), 3);
    // Both schedulers poll every second: two polls each, nothing more.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(hook.items().len(), 3, "{:?}", hook.items());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_nodes_deadlines_and_pending_notifications_pass_to_the_other() {
    let (a, b, setup, _dir) = two_nodes("off").await;
    let cluster = RedisCluster::shared();
    // The second node's arrival moves half the buckets over within two
    // renewals (1 s); leases run on real time, not the manual clock.
    tokio::time::sleep(Duration::from_millis(2 * LEASE_MS)).await;
    let holder = lease_holder(cluster, &setup, ADELE).expect("a holder");
    assert!(holder == a.pid() || holder == b.pid(), "{holder}");
    let (mut victim, survivor) = if holder == a.pid() { (a, b) } else { (b, a) };

    // The endpoint fails: the victim (it holds Adele's bucket, so it fans
    // her change out into its own buckets) keeps the notification pending.
    let hook = Receiver::start(Behaviour::Failing).await;
    subscribe_to(&survivor, &hook, ADELE).await;
    set_presence(&survivor, ADELE, "Available", "Available").await;
    let started = Instant::now();
    while hook.failures() == 0 {
        assert!(started.elapsed() < WAIT, "no delivery attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(lease_holder(cluster, &setup, ADELE), Some(victim.pid()));
    victim.kill();
    let killed = Instant::now();
    hook.set(Behaviour::Healthy);
    // Adele's fade is due at once on the shared clock; only the victim
    // held her deadline.
    survivor.advance("PT5M").await;
    let items = hook.wait_for(2, TAKEOVER).await;
    let took = killed.elapsed();
    assert!(items.len() >= 2, "{items:?} after {took:?}");
    assert!(took < TAKEOVER, "{took:?}");
    eprintln!("the survivor delivered the victim's work {took:?} after the kill");
    assert_eq!(
        lease_holder(cluster, &setup, ADELE),
        Some(survivor.pid()),
        "the survivor holds Adele's bucket"
    );
    assert_eq!(
        survivor.presence_of(ADELE).await,
        ["Available", "AvailableInactive"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_stream_on_one_node_sees_changes_made_on_the_other() {
    let (a, b, _setup, _dir) = two_nodes("off").await;
    let reader = b.token(TENANT, None, "Presence.Read.All");
    let mut stream = Stream::open(&b, &reader, &[ADELE, MEGAN], None).await;
    set_presence(&a, ADELE, "Busy", "InACall").await;
    assert_eq!(pair(&stream.next().await), expect(ADELE, "Busy", "InACall"));
    set_presence(&a, MEGAN, "Available", "Available").await;
    assert_eq!(
        pair(&stream.next().await),
        expect(MEGAN, "Available", "Available")
    );
    // A change by time alone, fired by whichever node holds the bucket.
    a.advance("PT5M").await;
    assert_eq!(
        pair(&stream.next().await),
        expect(MEGAN, "Available", "AvailableInactive")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_holds_across_two_nodes() {
    let (a, b, _setup, _dir) = two_nodes("40/2s").await;
    let token = a.app();
    let path = format!("/v1.0/users/{ADELE}/presence");
    let urls = [a.url(&path), b.url(&path)];
    let start = Instant::now();
    let run = Duration::from_secs(6);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let client = a.client.clone();
        let (token, urls) = (token.clone(), urls.clone());
        tasks.spawn(async move {
            let mut answers = Vec::new();
            let mut n = worker;
            while start.elapsed() < run {
                let response = client
                    .get(&urls[n % 2])
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let retry_after = response.headers().get("retry-after").cloned();
                answers.push((start.elapsed(), response.status().as_u16(), retry_after));
                n += 1;
            }
            answers
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.extend(done.unwrap());
    }
    let refused: Vec<_> = answers.iter().filter(|a| a.1 == 429).collect();
    assert!(!refused.is_empty());
    assert!(
        refused.iter().all(|a| a.2.is_some()),
        "429 without Retry-After"
    );
    assert!(answers.iter().all(|a| a.1 == 200 || a.1 == 429));
    // The burst is spent in the first 2 s; then 20 a second, whatever node.
    let steady = answers
        .iter()
        .filter(|a| a.1 == 200 && a.0 >= Duration::from_secs(2))
        .count();
    let admitted_during = (run - Duration::from_secs(2)).as_secs_f64() * 20.0;
    assert!(
        (steady as f64 - admitted_during).abs() <= admitted_during * 0.1,
        "{steady} admitted in the steady 4 s, the limit allows {admitted_during} ({} answers)",
        answers.len()
    );
}

/// The tests' directory with `extra` more users in the first tenant.
fn directory_with_users(extra: &[String]) -> Value {
    let mut directory = directory_json();
    let users = directory["tenants"][0]["users"].as_array_mut().unwrap();
    for (i, id) in extra.iter().enumerate() {
        users.push(json!({"id": id, "userPrincipalName": format!("user{i}@contoso.com"), "displayName": format!("User {i}")}));
    }
    directory
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_a_master_failover_with_wait_replicas() {
    let mut cluster = RedisCluster::start(ClusterOptions {
        replicas_per_master: 1,
        ..ClusterOptions::default()
    })
    .unwrap();
    let setup = RedisSetup::fresh_on(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "wait_replicas = 1\n");
    let users: Vec<String> = (0..30)
        .map(|i| format!("00000000-0000-4000-8000-{:012x}", 0x5000 + i))
        .collect();
    let directory = directory_with_users(&users);
    let args = [
        "--clock",
        "manual",
        "--throttle",
        "off",
        "--config",
        config.as_str(),
    ];
    let a = TestServer::start_on_redis_with_directory(setup.clone(), &args, &directory).await;
    let b = TestServer::start_on_redis_with_directory(setup.clone(), &args, &directory).await;
    let token = a.app();
    let write = |server: &TestServer, user: &str| {
        let request = server
            .client
            .post(server.url(&format!("/v1.0/users/{user}/presence/setPresence")))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(15))
            .json(&json!({"sessionId": APP, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"}));
        async move { matches!(request.send().await, Ok(r) if r.status() == 200) }
    };

    let victim = cluster.master_ports()[0];
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for (i, user) in users.iter().enumerate() {
        if i == 10 {
            cluster.kill_node(victim).unwrap();
        }
        let server = if i % 2 == 0 { &a } else { &b };
        if write(server, user).await {
            acknowledged.push(user.clone());
        } else {
            refused.push(user.clone());
        }
    }
    // Service resumes: every refused write goes through again (bounded).
    let started = Instant::now();
    for user in &refused {
        while !write(&b, user).await {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no service after the failover"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "{} acknowledged during the failover, {} refused and written again",
        acknowledged.len(),
        refused.len()
    );
    // Every acknowledged write is there, read through either node.
    for (i, user) in acknowledged.iter().enumerate() {
        let server = if i % 2 == 0 { &b } else { &a };
        assert_eq!(
            server.presence_of(user).await,
            ["Busy", "InACall"],
            "{user}"
        );
    }
}
