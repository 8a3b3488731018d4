//! `presenced export` and `presenced import`: a deployment moved between
//! the stores, in either direction, or restored from a backup, reads the
//! same and keeps its time-driven work.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::json;

use crate::helpers::*;
use crate::notifications::{WAIT, set_presence, subscribe_to};
use crate::receiver::{Behaviour, Receiver};

/// `presenced ARGS` with `input` on stdin.
fn presenced(args: &[String], redis: Option<&RedisSetup>, input: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_presenced"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(redis) = redis {
        let (name, value) = redis.env();
        command.args(redis.args()).env(name, value);
    }
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[tokio::test]
async fn an_export_from_the_embedded_store_imported_into_redis_reads_the_same() {
    let mut embedded = TestServer::start().await;
    let path = format!("/v1.0/users/{ADELE}/presence");
    embedded
        .post(
            &format!("{path}/setPresence"),
            &embedded.app(),
            json!({"sessionId": APP, "availability": "Busy", "activity": "InACall",
                   "expirationDuration": "PT1H"}),
        )
        .await
        .assert_done();
    embedded
        .post(
            &format!("{path}/setStatusMessage"),
            &embedded.app(),
            json!({"statusMessage": {"message": {"content": "On a call", "contentType": "text"}}}),
        )
        .await
        .assert_done();
    let before = embedded.get(&path, &embedded.app()).await.json();
    assert!(embedded.terminate().success());

    let data_dir = embedded.data_dir.path().display().to_string();
    let export = presenced(&args(&["export", "--data-dir", &data_dir]), None, b"");
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    assert!(
        stderr.contains("exported 2 tenants, 4 users, 1 presence records, 0 subscriptions"),
        "{stderr}"
    );
    let dump = export.stdout;
    let header: serde_json::Value =
        serde_json::from_str(std::str::from_utf8(&dump).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(header, json!({"format": "presenced-export", "version": 1}));

    let redis = RedisSetup::fresh();
    let import = presenced(&args(&["import"]), Some(&redis), &dump);
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    // Not twice: the target has a directory now.
    let again = presenced(&args(&["import"]), Some(&redis), &dump);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let forced = presenced(&args(&["import", "--force"]), Some(&redis), &dump);
    assert!(forced.status.success());

    let server =
        TestServer::start_on_redis(redis, &["--clock", "manual", "--throttle", "off"]).await;
    let after = server.get(&path, &server.app()).await.json();
    for field in ["availability", "activity", "statusMessage"] {
        assert_eq!(after[field], before[field], "{field}: {after} / {before}");
    }
    assert_eq!(after["availability"], "Busy");
}

#[tokio::test]
async fn import_refuses_what_it_cannot_read_and_writes_nothing() {
    let redis = RedisSetup::fresh();
    for (input, expected) in [
        (&b""[..], "empty"),
        (b"not json\n", "not an export header"),
        (b"{\"format\":\"other\",\"version\":1}\n", "not a presenced export"),
        (
            b"{\"format\":\"presenced-export\",\"version\":99}\n",
            "version 99 is not one this presenced reads",
        ),
        (
            b"{\"format\":\"presenced-export\",\"version\":1}\n{\"kind\":\"tenant\",\"id\":\"x\"}\n",
            "line 2: tenant",
        ),
    ] {
        let output = presenced(&args(&["import"]), Some(&redis), input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    // Nothing was written: an import of a good export still finds an empty store.
    let good = b"{\"format\":\"presenced-export\",\"version\":1}\n";
    let output = presenced(&args(&["import"]), Some(&redis), good);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A server on the manual clock that may call loopback webhooks, on
/// `redis` when given, else on the embedded store in `data_dir` (a fresh one
/// when `None`).
pub async fn notifying_server(
    redis: Option<RedisSetup>,
    data_dir: Option<tempfile::TempDir>,
    config: &tempfile::TempDir,
) -> TestServer {
    let file = config.path().join("presenced.toml");
    std::fs::write(&file, "[notifications]\nretry_initial = \"PT0.05S\"\n").unwrap();
    let args = [
        "--clock",
        "manual",
        "--throttle",
        "off",
        "--webhooks-allow-loopback-http",
        "--config",
        file.to_str().unwrap(),
    ];
    match (redis, data_dir) {
        (Some(redis), _) => TestServer::start_on_redis(redis, &args).await,
        (None, Some(dir)) => TestServer::start_in(dir, &args).await,
        (None, None) => TestServer::start_in(tempfile::tempdir().unwrap(), &args).await,
    }
}

/// Adele subscribed to (delivered to `hook`), Available with a status
/// message; her presence as an app reads it.
async fn a_deployment_with_work_pending(server: &TestServer, hook: &Receiver) -> serde_json::Value {
    subscribe_to(server, hook, ADELE).await;
    set_presence(server, ADELE, "Available", "Available").await;
    let path = format!("/v1.0/users/{ADELE}/presence");
    server
        .post(
            &format!("{path}/setStatusMessage"),
            &server.app(),
            json!({"statusMessage": {"message": {"content": "Back at 3", "contentType": "text"}}}),
        )
        .await
        .assert_done();
    // Both changes are announced (and delivered) before the export.
    assert_eq!(hook.wait_for(2, WAIT).await.len(), 2);
    server.get(&path, &server.app()).await.json()
}

/// The export of `server`'s store (stopped first).
fn export_of(server: &mut TestServer) -> Vec<u8> {
    assert!(server.terminate().success());
    let data_dir = server.data_dir.path().display().to_string();
    let export = presenced(
        &args(&["export", "--data-dir", &data_dir]),
        server.redis.as_ref(),
        b"",
    );
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    assert!(
        stderr.contains("exported 2 tenants, 4 users, 1 presence records, 1 subscriptions"),
        "{stderr}"
    );
    export.stdout
}

/// Imports `dump` into the embedded store in a fresh data directory.
fn imported_into_a_fresh_data_dir(dump: &[u8]) -> tempfile::TempDir {
    let target = tempfile::tempdir().unwrap();
    let data_dir = target.path().display().to_string();
    let import = presenced(&args(&["import", "--data-dir", &data_dir]), None, dump);
    let stderr = String::from_utf8_lossy(&import.stderr);
    assert!(import.status.success(), "{stderr}");
    assert!(
        stderr.contains("imported 2 tenants, 4 users, 1 presence records, 1 subscriptions"),
        "{stderr}"
    );
    target
}

/// The deployment read back from the embedded store in `data_dir` reads as
/// `before`, and its session still fades: the imported deadline fires and
/// the imported subscription is notified.
async fn reads_the_same_and_still_fades(
    data_dir: tempfile::TempDir,
    before: &serde_json::Value,
    hook: &Receiver,
) {
    let config = tempfile::tempdir().unwrap();
    let server = notifying_server(None, Some(data_dir), &config).await;
    let path = format!("/v1.0/users/{ADELE}/presence");
    let after = server.get(&path, &server.app()).await.json();
    for field in ["availability", "activity", "statusMessage"] {
        assert_eq!(after[field], before[field], "{field}: {after} / {before}");
    }
    assert_eq!(after["availability"], "Available");
    // Five minutes on, the session reads inactive: a change announced to
    // the subscription that came with the import.
    server.advance("PT5M").await;
    let items = hook.wait_for(3, WAIT).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(
        server.presence_of(ADELE).await,
        ["Available".to_string(), "AvailableInactive".to_string()]
    );
}

#[tokio::test]
async fn an_export_from_redis_imported_into_the_embedded_store_reads_the_same_and_fades() {
    let hook = Receiver::start(Behaviour::Healthy).await;
    let config = tempfile::tempdir().unwrap();
    let mut source = notifying_server(Some(RedisSetup::fresh()), None, &config).await;
    let before = a_deployment_with_work_pending(&source, &hook).await;
    let dump = export_of(&mut source);
    let target = imported_into_a_fresh_data_dir(&dump);
    reads_the_same_and_still_fades(target, &before, &hook).await;
}

#[tokio::test]
async fn an_embedded_backup_restores_into_a_new_data_directory() {
    let hook = Receiver::start(Behaviour::Healthy).await;
    let config = tempfile::tempdir().unwrap();
    let mut source = notifying_server(None, None, &config).await;
    let before = a_deployment_with_work_pending(&source, &hook).await;
    let dump = export_of(&mut source);
    let target = imported_into_a_fresh_data_dir(&dump);
    let data_dir = target.path().display().to_string();
    // The restored store has a directory now: a second import is refused
    // (nothing written), and `--force` merges the same records again.
    let again = presenced(&args(&["import", "--data-dir", &data_dir]), None, &dump);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success(), "{stderr}");
    assert!(stderr.contains("already has a directory"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    let forced = presenced(
        &args(&["import", "--force", "--data-dir", &data_dir]),
        None,
        &dump,
    );
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    reads_the_same_and_still_fades(target, &before, &hook).await;
}

#[tokio::test]
async fn a_malformed_line_names_the_line_and_the_embedded_store_gets_nothing() {
    let mut source = TestServer::start().await;
    set_presence(&source, ADELE, "Busy", "InACall").await;
    assert!(source.terminate().success());
    let data_dir = source.data_dir.path().display().to_string();
    let export = presenced(&args(&["export", "--data-dir", &data_dir]), None, b"");
    assert!(export.status.success());
    let text = String::from_utf8(export.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Header, two tenants, then Adele's facts: break her record.
    let facts = lines.iter().position(|l| l.contains("\"facts\"")).unwrap();
    let mut broken: serde_json::Value = serde_json::from_str(lines[facts]).unwrap();
    broken["record"] = json!("AAAA");
    let mut bad = lines.clone();
    let broken = broken.to_string();
    bad[facts] = &broken;
    let target = tempfile::tempdir().unwrap();
    let target_dir = target.path().display().to_string();
    let import = presenced(
        &args(&["import", "--data-dir", &target_dir]),
        None,
        (bad.join("\n") + "\n").as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&import.stderr);
    assert!(!import.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("line {}: record", facts + 1)),
        "{stderr}"
    );
    // Nothing was written: the store exports empty.
    let export = presenced(&args(&["export", "--data-dir", &target_dir]), None, b"");
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    assert!(
        stderr.contains("exported 0 tenants, 0 users, 0 presence records, 0 subscriptions"),
        "{stderr}"
    );
}
