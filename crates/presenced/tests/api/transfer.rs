//! `presenced export` and `presenced import`: a deployment moved from the
//! embedded store to Redis reads the same.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::json;

use crate::helpers::*;

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
