//! Crash and restart: nothing acknowledged is lost, and time-driven
//! expirations still hold after a restart on the manual clock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn sigkill_during_concurrent_writes_loses_no_acknowledged_write() {
    // Every session written must survive, so none may give way to the
    // bound on sessions per user (`limits.rs` tests that bound).
    let mut server = TestServer::start_with_config(
        "[limits]\nmax_sessions_per_user = 1000000\n",
        &["--clock", "manual", "--throttle", "off"],
    )
    .await;
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let stop_at = Instant::now() + Duration::from_secs(20);
    let mut writers = Vec::new();
    for writer in 0..8 {
        let client = server.client.clone();
        let base = server.base.clone();
        let token = server.app();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let users = [ADELE, MEGAN, LEE];
            // Bounded: at most 2,000 writes per writer, or until the server dies.
            for i in 0..2000 {
                let user = users[i % users.len()];
                let session = format!("w{writer}-{i}");
                let body = json!({"sessionId": session, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT4H"});
                let sent = client
                    .post(format!("{base}/v1.0/users/{user}/presence/setPresence"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => {
                        acknowledged.lock().unwrap().push((user.to_string(), session));
                    }
                    Ok(response) => panic!("unexpected {}", response.status()),
                    Err(_) => return,
                }
                if Instant::now() > stop_at {
                    return;
                }
            }
        }));
    }
    // Let writes flow, then kill without warning.
    while acknowledged.lock().unwrap().len() < 300 && Instant::now() < stop_at {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 300,
        "only {} writes acknowledged",
        acknowledged.len()
    );

    server.restart();
    let app = server.app();
    for (user, session) in &acknowledged {
        let answer = server
            .post(
                &format!("/v1.0/users/{user}/presence/clearPresence"),
                &app,
                json!({"sessionId": session}),
            )
            .await;
        assert_eq!(
            answer.status, 200,
            "acknowledged session {session} of {user} was lost: {}",
            answer.text
        );
    }
}

#[tokio::test]
async fn a_restart_on_the_manual_clock_keeps_time_and_expirations() {
    let mut server = TestServer::start().await;
    let app = server.app();
    let path = |action: &str| format!("/v1.0/users/{ADELE}/presence/{action}");
    let session = json!({"sessionId": APP, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT4H"});
    server
        .post(&path("setPresence"), &app, session.clone())
        .await
        .assert_done();
    server.post(&path("setUserPreferredPresence"), &app, json!({"availability": "DoNotDisturb", "activity": "DoNotDisturb", "expirationDuration": "PT8H"})).await.assert_done();
    let status = json!({"statusMessage": {"message": {"content": "Focus", "contentType": "text"},
        "expiryDateTime": {"dateTime": (server.now().await + jiff::SignedDuration::from_hours(2)).strftime("%Y-%m-%dT%H:%M:%S%.f").to_string(), "timeZone": "UTC"}}});
    server
        .post(
            "/v1.0/me/presence/setStatusMessage",
            &server.adele(),
            status,
        )
        .await
        .assert_done();
    let later = server.advance("PT3H").await;

    server.restart();
    assert!(
        server.now().await >= later,
        "the manual clock went back after a restart"
    );
    assert_eq!(
        server.presence_of(ADELE).await,
        ["DoNotDisturb", "DoNotDisturb"]
    );
    let own = server
        .get("/v1.0/me/presence", &server.adele())
        .await
        .json();
    assert_eq!(
        own["statusMessage"],
        serde_json::Value::Null,
        "the status message expired at 2 h"
    );
    server.advance("PT1H").await;
    // The session expired at 4 h: no session, so Offline despite the preference.
    assert_eq!(server.presence_of(ADELE).await, ["Offline", "Offline"]);
    server
        .post(&path("setPresence"), &app, session.clone())
        .await
        .assert_done();
    assert_eq!(
        server.presence_of(ADELE).await,
        ["DoNotDisturb", "DoNotDisturb"]
    );
    server.advance("PT4H").await;
    server
        .post(&path("setPresence"), &app, session)
        .await
        .assert_done();
    assert_eq!(
        server.presence_of(ADELE).await,
        ["Busy", "InACall"],
        "the preference expired at 8 h"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_work_and_exits_cleanly() {
    let mut server = TestServer::start().await;
    let set = json!({"sessionId": APP, "availability": "Away", "activity": "Away", "expirationDuration": "PT4H"});
    server
        .post(
            &format!("/v1.0/users/{LEE}/presence/setPresence"),
            &server.app(),
            set,
        )
        .await
        .assert_done();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    server.restart();
    assert_eq!(server.presence_of(LEE).await, ["Away", "Away"]);
}
