//! A full disk, for real: the data directory is a small tmpfs, filled with a
//! ballast file until the store's commits fail. Writes are refused with 503
//! and `Retry-After` while reads are served; once the ballast is deleted the
//! store takes writes again by itself (change notifications resume); nothing
//! acknowledged is lost across a restart, and SIGTERM after the episode
//! exits 0.
//!
//! Needs root (to mount the tmpfs), as CI runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::notifications::{WAIT, subscribe_to};
use crate::receiver::{Behaviour, Receiver};

/// A tmpfs mounted on a directory, unmounted when dropped (even when the
/// test fails).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {} (this test needs root): {status}",
            dir.display()
        );
        Mount(dir.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazily, so a process still holding a file cannot keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Writes zeros into `path` until the file system is full (bounded by
/// `most` bytes); returns how many were written.
fn fill(path: &Path, most: usize) -> usize {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    let mut written = 0;
    while written < most {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    let _ = file.sync_all();
    written
}

fn session(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[tokio::test]
async fn a_full_disk_refuses_writes_serves_reads_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Dropped after the server (declared before it): unmounts last.
    let _mount = Mount::tmpfs(dir.path(), "24m");
    let mut server = TestServer::start_in(
        dir,
        &[
            "--clock",
            "manual",
            "--throttle",
            "off",
            "--webhooks-allow-loopback-http",
        ],
    )
    .await;
    // Notifications resume after the episode.
    let hook = Receiver::start(Behaviour::Healthy).await;
    subscribe_to(&server, &hook, MEGAN).await;
    let app = server.app();
    let data_dir = server.data_dir.path().to_owned();

    let set_presence = |user: &str| format!("/v1.0/users/{user}/presence/setPresence");
    let prefer = format!("/v1.0/users/{LEE}/presence/setUserPreferredPresence");
    server
        .post(
            &set_presence(ADELE),
            &app,
            json!({"sessionId": session(1), "availability": "Busy", "activity": "InACall", "expirationDuration": "PT4H"}),
        )
        .await
        .assert_done();
    // Lee has a session, so his preferred presence shows.
    server
        .post(
            &set_presence(LEE),
            &app,
            json!({"sessionId": session(4), "availability": "Available", "activity": "Available", "expirationDuration": "PT4H"}),
        )
        .await
        .assert_done();
    assert_eq!(server.presence_of(LEE).await, ["Available", "Available"]);

    // Fill the disk, then write until the store's commit fails.
    let ballast = data_dir.join("ballast");
    assert!(fill(&ballast, 64 << 20) > 0);
    let states = [("Busy", "Busy"), ("DoNotDisturb", "DoNotDisturb")];
    let mut last_acknowledged = None;
    let mut refused = None;
    for i in 0..400 {
        let (availability, activity) = states[i % 2];
        let answer = server
            .post(
                &prefer,
                &app,
                json!({"availability": availability, "activity": activity}),
            )
            .await;
        match answer.status {
            200 => last_acknowledged = Some([availability, activity]),
            503 => {
                refused = Some((answer, [availability, activity]));
                break;
            }
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    let (refusal, refused_state) = refused.expect("no write failed on a full disk");
    assert_ne!(Some(refused_state), last_acknowledged);
    refusal.assert_error(503, "ServiceUnavailable");
    assert!(refusal.header("retry-after").is_some(), "no Retry-After");

    // Reads are served from memory, and never show the refused write.
    let lee = server.presence_of(LEE).await;
    match last_acknowledged {
        Some([a, b]) => assert_eq!(lee, [a, b]),
        None => assert_eq!(lee, ["Available", "Available"]),
    }
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "InACall"]);
    let bulk = server
        .post(
            "/v1.0/communications/getPresencesByUserId",
            &app,
            json!({"ids": [ADELE, LEE]}),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text);
    let list = server.get("/v1.0/subscriptions", &server.adele()).await;
    assert_eq!(list.status, 200, "{}", list.text);

    // Not ready while writes fail; alive all the same.
    let probe = |path: &str| {
        let client = server.client.clone();
        let url = server.url(path);
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(probe("/readyz").await, 503);
    assert_eq!(probe("/healthz").await, 200);
    for _ in 0..5 {
        assert_eq!(probe("/readyz").await, 503);
    }
    let again = server
        .post(
            &set_presence(MEGAN),
            &app,
            json!({"sessionId": session(2), "availability": "Away", "activity": "Away"}),
        )
        .await;
    again.assert_error(503, "ServiceUnavailable");

    // Space returns: the store takes writes again by itself.
    std::fs::remove_file(&ballast).unwrap();
    let since = Instant::now();
    while probe("/readyz").await != 200 {
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "not ready 20 s after space returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // However often probes polled while it was not ready, the log says so
    // once, as a warning.
    let since = Instant::now();
    let not_ready = loop {
        let found: Vec<String> = server
            .log_lines()
            .into_iter()
            .filter(|line| line.contains("not ready"))
            .collect();
        if !found.is_empty() || since.elapsed() > Duration::from_secs(5) {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(not_ready.len(), 1, "{not_ready:#?}");
    assert!(not_ready[0].contains("WARN"), "{not_ready:#?}");
    server
        .post(
            &set_presence(MEGAN),
            &app,
            json!({"sessionId": session(3), "availability": "Away", "activity": "Away", "expirationDuration": "PT4H"}),
        )
        .await
        .assert_done();
    server
        .post(
            &prefer,
            &app,
            json!({"availability": "BeRightBack", "activity": "BeRightBack"}),
        )
        .await
        .assert_done();
    // Megan's change after the episode is delivered; her refused one never was.
    let items = hook.wait_for(1, WAIT).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["resourceData"]["id"], MEGAN, "{items:?}");

    // A clean shutdown after the episode, then every acknowledged write is
    // in the file.
    let status = server.terminate();
    assert!(status.success(), "SIGTERM after a full disk: {status}");
    server.restart();
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "InACall"]);
    assert_eq!(
        server.presence_of(LEE).await,
        ["BeRightBack", "BeRightBack"]
    );
    assert_eq!(server.presence_of(MEGAN).await, ["Away", "Away"]);
}
