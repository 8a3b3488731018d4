//! Serving on Redis: start-up against the cluster, the signing key every
//! node and `presenced token` share, an unreachable cluster, and the
//! fan-out past stale subscription index entries.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn the_server_and_the_token_command_sign_with_the_clusters_key() {
    let redis = RedisSetup::empty();
    // The command comes first on an empty cluster and an empty data
    // directory: it creates the shared key, in Redis only.
    let elsewhere = tempfile::tempdir().unwrap();
    let (name, value) = redis.env();
    let minted = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg("token")
        .args([
            "--tenant",
            TENANT,
            "--app",
            APP,
            "--roles",
            "Presence.Read.All",
        ])
        .args(redis.args())
        .arg("--data-dir")
        .arg(elsewhere.path())
        .env(name, value)
        .output()
        .unwrap();
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    assert!(
        !elsewhere.path().join("keys").exists(),
        "the key lives in Redis, not in the data directory"
    );
    let token = String::from_utf8(minted.stdout).unwrap();
    // The server's data directory holds another key (the tests' template):
    // it must sign and validate with the cluster's.
    let server =
        TestServer::start_on_redis(redis, &["--clock", "manual", "--throttle", "off"]).await;
    let path = format!("/v1.0/users/{ADELE}/presence");
    assert_eq!(server.get(&path, token.trim()).await.status, 200);
    assert_eq!(
        server.get(&path, &server.app()).await.status,
        401,
        "a token of the data directory's key is not the cluster's"
    );
    let jwks = server
        .client
        .get(server.url(&format!("/{TENANT}/discovery/v2.0/keys")))
        .send()
        .await
        .unwrap();
    let jwks: serde_json::Value = jwks.json().await.unwrap();
    let kid = jwt_header(token.trim())["kid"].clone();
    assert_eq!(jwks["keys"][0]["kid"], kid, "{jwks}");
}

/// The decoded header of a JWT.
fn jwt_header(token: &str) -> serde_json::Value {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn an_unreachable_cluster_stops_start_up_with_one_clear_line() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--listen", "127.0.0.1:0", "--store", "redis", "--redis-url"])
        .arg(format!("redis://:hunter2@127.0.0.1:{port}"))
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = started + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "presenced: cannot reach the Redis cluster at redis://***@127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// Two nodes on one cluster under one key prefix.
async fn two_nodes() -> (TestServer, TestServer) {
    let redis = RedisSetup::fresh();
    let args = ["--clock", "manual", "--throttle", "off"];
    let a = TestServer::start_on_redis(redis.clone(), &args).await;
    let b = TestServer::start_on_redis(redis, &args).await;
    (a, b)
}

#[tokio::test]
async fn a_write_on_one_node_is_read_on_the_other_at_once() {
    let (a, b) = two_nodes().await;
    let busy = serde_json::json!({
        "sessionId": APP, "availability": "Busy", "activity": "InACall"
    });
    a.post(
        &format!("/v1.0/users/{ADELE}/presence/setPresence"),
        &a.app(),
        busy,
    )
    .await
    .assert_done();
    assert_eq!(b.presence_of(ADELE).await, ["Busy", "InACall"]);
}

#[tokio::test]
async fn moving_the_manual_clock_on_one_node_moves_every_node() {
    let (a, b) = two_nodes().await;
    assert_eq!(a.now().await, b.now().await);
    let session = serde_json::json!({
        "sessionId": APP, "availability": "Busy", "activity": "InACall",
        "expirationDuration": "PT5M"
    });
    a.post(
        &format!("/v1.0/users/{ADELE}/presence/setPresence"),
        &a.app(),
        session,
    )
    .await
    .assert_done();
    assert_eq!(b.presence_of(ADELE).await, ["Busy", "InACall"]);
    let moved = a.advance("PT6M").await;
    // The very next request to the other node sees the new time, and the
    // session that expired with it.
    assert_eq!(b.now().await, moved);
    assert_eq!(b.presence_of(ADELE).await[0], "Offline");
    // And back the other way.
    let moved = b.advance("PT1H").await;
    assert_eq!(a.now().await, moved);
}

/// Polls `check` every 50 ms for at most `limit`; panics with `what` after.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_master_is_503_and_not_ready_until_it_returns() {
    lost_master(&["--throttle", "off"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_shared_manual_clock_too_and_healthz_stays_up() {
    lost_master(&["--throttle", "off", "--clock", "manual"]).await;
}

async fn lost_master(args: &[&str]) {
    use presenced_testkit::{ClusterOptions, RedisCluster};
    let options = ClusterOptions::default();
    let mut cluster = tokio::task::spawn_blocking(move || RedisCluster::start(options))
        .await
        .unwrap()
        .expect("a cluster of this test's own");
    let redis = RedisSetup::fresh_on(&cluster);
    let server = TestServer::start_on_redis(redis, args).await;
    let path = format!("/v1.0/users/{ADELE}/presence");
    let session = serde_json::json!({
        "sessionId": APP, "availability": "Busy", "activity": "InACall"
    });
    server
        .post(
            &format!("{path}/setPresence"),
            &server.app(),
            session.clone(),
        )
        .await
        .assert_done();
    let readyz = || async {
        let answer = Answer::read(
            server
                .client
                .get(server.url("/readyz"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        answer.status
    };
    assert_eq!(readyz().await, 200);

    // Adele's bucket's master goes away.
    let bucket = presenced_store::redis::bucket_of(presenced_store::UserKey {
        tenant: guid(TENANT),
        user: guid(ADELE),
    });
    let master = cluster.node_of(&format!("{{b:{bucket:04}}}")).unwrap();
    // A snapshot, so that it comes back with the directory it had.
    assert_eq!(cluster.command(master, &["SAVE"]).unwrap(), "OK");
    let started = Instant::now();
    cluster.kill_node(master).unwrap();
    let app = server.app();
    eventually(
        Duration::from_secs(20),
        "a Graph 503 with Retry-After",
        || async {
            let answer = server.get(&path, &app).await;
            if answer.status != 503 {
                return Err(format!("{} {}", answer.status, answer.text));
            }
            answer.assert_error(503, "ServiceUnavailable");
            match answer.header("retry-after") {
                Some(seconds) if seconds.parse::<u64>().is_ok() => Ok(()),
                other => Err(format!("Retry-After: {other:?}")),
            }
        },
    )
    .await;
    eventually(Duration::from_secs(10), "/readyz not ready", || async {
        match readyz().await {
            503 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    // The process itself is fine: a restart would not bring Redis back.
    let healthz = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);

    eprintln!("503 and not ready {:?} after the kill", started.elapsed());
    // It comes back; the server recovers without a restart.
    let started = Instant::now();
    tokio::task::block_in_place(|| cluster.restart_node(master, &options)).unwrap();
    eventually(Duration::from_secs(30), "ready again", || async {
        match readyz().await {
            200 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "writes and reads again",
        || async {
            let write = server
                .post(&format!("{path}/setPresence"), &app, session.clone())
                .await;
            if write.status != 200 {
                return Err(format!("write: {} {}", write.status, write.text));
            }
            let read = server.get(&path, &app).await;
            match read.status {
                200 if read.json()["availability"] == "Busy" => Ok(()),
                _ => Err(format!("read: {} {}", read.status, read.text)),
            }
        },
    )
    .await;
    eprintln!("serving again {:?} after the restart", started.elapsed());
}

/// Adds `id` to `user`'s subscription index on Redis, behind the server's
/// back (see ARCHITECTURE: writes across buckets leave such entries).
fn add_index_entry(redis: &RedisSetup, user: &str, id: &str) {
    let cluster = presenced_testkit::RedisCluster::shared();
    let key = presenced_store::UserKey {
        tenant: guid(TENANT),
        user: guid(user),
    };
    let bucket = presenced_store::redis::bucket_of(key);
    let tag = format!("{}{{b:{bucket:04}}}:s:", redis.key_prefix);
    let mut index = tag.clone().into_bytes();
    index.extend_from_slice(&key.tenant.to_bytes());
    index.extend_from_slice(&key.user.to_bytes());
    let node = cluster.node_of(&tag).unwrap();
    let id = guid(id).to_bytes();
    assert_eq!(
        cluster
            .command_bytes(node, &[b"SADD", &index, &id])
            .unwrap(),
        "1"
    );
}

#[tokio::test]
async fn the_fan_out_skips_stale_subscription_index_entries() {
    use crate::notifications::{WAIT, set_presence, subscribe_to};
    use crate::receiver::{Behaviour, Receiver};

    let redis = RedisSetup::fresh();
    let config = tempfile::tempdir().unwrap();
    let server = crate::transfer::notifying_server(Some(redis.clone()), None, &config).await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let id = subscribe_to(&server, &hook, ADELE).await;
    // Megan's index names Adele's subscription; Lee's names one that does
    // not exist.
    add_index_entry(&redis, MEGAN, &id);
    add_index_entry(&redis, LEE, "5a1e0000-0000-4000-8000-000000000001");

    set_presence(&server, MEGAN, "Busy", "InACall").await;
    set_presence(&server, LEE, "Busy", "InACall").await;
    set_presence(&server, ADELE, "Busy", "InACall").await;
    // All three changes were queued (the index is not empty) and worked
    // through: the outbox is empty, and only Adele's was delivered.
    let started = Instant::now();
    loop {
        let status = Command::new(env!("CARGO_BIN_EXE_presenced"))
            .args(["status", "--json", "--url", &server.base])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        if json["outbox"]["entries"] == 0 && !hook.items().is_empty() {
            break;
        }
        assert!(started.elapsed() < WAIT, "the outbox never emptied: {json}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let items = hook.wait_for(1, WAIT).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["subscriptionId"], id.as_str());
    assert_eq!(items[0]["resourceData"]["id"], ADELE, "{items:?}");
    // The server stayed healthy: the stale entries cost nothing else.
    assert_eq!(server.presence_of(MEGAN).await[0], "Busy");
}

/// The text part of a key in `user`'s bucket (`P{b:NNNN}:rest`), and the
/// cluster node serving it.
fn bucket_key(setup: &RedisSetup, user: &str, rest: &str) -> (String, u16) {
    let bucket = presenced_store::redis::bucket_of(presenced_store::UserKey {
        tenant: guid(TENANT),
        user: guid(user),
    });
    let key = format!("{}{{b:{bucket:04}}}:{rest}", setup.key_prefix);
    let node = presenced_testkit::RedisCluster::shared()
        .node_of(&key)
        .expect("the bucket's node");
    (key, node)
}

/// A node with quick webhook retries and short leases, on a fresh prefix.
async fn notifying_node(setup: &RedisSetup) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::multinode::config(dir.path(), "");
    let server = crate::multinode::node(setup, &config, "off").await;
    (server, dir)
}

/// A change still in the outbox when a subscription's delete is
/// acknowledged is not delivered to it: the fan-out reads the record when
/// it runs, and the delete removed the record first. (A notification built
/// before the delete is still delivered: at least once.)
#[tokio::test(flavor = "multi_thread")]
async fn a_change_queued_before_a_delete_is_not_delivered_after_it() {
    use crate::notifications::{WAIT, request, set_presence, subscribe, subscribe_to, unsubscribe};
    use crate::receiver::{Behaviour, Receiver};

    let setup = RedisSetup::fresh();
    let cluster = presenced_testkit::RedisCluster::shared();
    // Another holder has Adele's bucket: her change waits in its outbox.
    let (lease, lease_node) = bucket_key(&setup, ADELE, "lease");
    let taken = cluster
        .command(lease_node, &["SET", &lease, "ffffffff-0-0", "PX", "60000"])
        .expect("SET the lease");
    assert_eq!(taken, "OK");
    let (server, _dir) = notifying_node(&setup).await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let resource = format!("communications/presences/{ADELE}");
    let id = subscribe_to(&server, &hook, ADELE).await;
    set_presence(&server, ADELE, "Busy", "InACall").await;
    crate::metrics::outbox_entries_become(&server, 1).await;

    unsubscribe(&server, &id).await;
    // The holder goes: the node takes the bucket within a renewal and
    // handles the change, delivering nothing.
    assert_eq!(cluster.command(lease_node, &["DEL", &lease]).unwrap(), "1");
    crate::metrics::outbox_entries_become(&server, 0).await;
    assert!(hook.items().is_empty(), "{:?}", hook.items());

    // The bucket is served now: a new subscription hears the next change.
    let again = subscribe(&server, request(&hook.url, &resource)).await;
    assert_eq!(again.status, 201, "{}", again.text);
    set_presence(&server, ADELE, "Away", "Away").await;
    let items = hook.wait_for(1, WAIT).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["subscriptionId"], again.json()["id"]);
}
