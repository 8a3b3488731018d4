//! The example of the page the project started from (setUserPreferredPresence),
//! end to end on the manual clock.

use serde_json::json;

use crate::helpers::*;

both! {
#[tokio::test]
async fn do_not_disturb_for_eight_hours_over_a_live_session_then_the_session_shows_again() {
    let server = TestServer::start().await;
    let app = server.app();
    let path = |action: &str| format!("/v1.0/users/{ADELE}/presence/{action}");
    let keep_alive = json!({"sessionId": APP, "availability": "Available", "activity": "Available", "expirationDuration": "PT1H"});
    server
        .post(&path("setPresence"), &app, keep_alive.clone())
        .await
        .assert_done();
    let seed = json!({"availability": "DoNotDisturb", "activity": "DoNotDisturb", "expirationDuration": "PT8H"});
    server
        .post(&path("setUserPreferredPresence"), &app, seed)
        .await
        .assert_done();
    // Every 4 minutes the app refreshes its session; for 8 hours the user reads DoNotDisturb.
    for _ in 0..119 {
        assert_eq!(
            server.presence_of(ADELE).await,
            ["DoNotDisturb", "DoNotDisturb"]
        );
        server.advance("PT4M").await;
        server
            .post(&path("setPresence"), &app, keep_alive.clone())
            .await
            .assert_done();
    }
    assert_eq!(
        server.presence_of(ADELE).await,
        ["DoNotDisturb", "DoNotDisturb"]
    );
    server.advance("PT4M").await; // 8 hours since the preference was set
    assert_eq!(server.presence_of(ADELE).await, ["Available", "Available"]);
}
}

both! {
#[tokio::test]
async fn with_no_live_session_the_user_reads_offline_throughout() {
    let server = TestServer::start().await;
    let seed = json!({"availability": "DoNotDisturb", "activity": "DoNotDisturb", "expirationDuration": "PT8H"});
    server
        .post(
            &format!("/v1.0/users/{ADELE}/presence/setUserPreferredPresence"),
            &server.app(),
            seed,
        )
        .await
        .assert_done();
    for _ in 0..9 {
        assert_eq!(server.presence_of(ADELE).await, ["Offline", "Offline"]);
        server.advance("PT1H").await;
    }
}
}
