//! The bounds of `[limits]` on stored data: sessions per user (the least
//! recently refreshed one gives way), subscriptions per app per tenant and
//! in all (`403 QuotaLimitReached`), and the size of one user's record
//! (`400 InvalidArgument`, nothing stored).

use serde_json::json;

use crate::helpers::*;
use crate::notifications::{request, server};
use crate::receiver::{Behaviour, Receiver};

fn session(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

both! {
#[tokio::test]
async fn a_session_over_the_limit_drops_the_least_recently_refreshed_one() {
    let server = TestServer::start_with_config(
        "[limits]\nmax_sessions_per_user = 3\n",
        &["--clock", "manual", "--throttle", "off"],
    )
    .await;
    let app = server.app();
    let path = |action: &str| format!("/v1.0/users/{ADELE}/presence/{action}");
    let set = |n: usize, availability: &'static str, activity: &'static str| json!({"sessionId": session(n), "availability": availability, "activity": activity, "expirationDuration": "PT4H"});
    server
        .post(
            &path("setPresence"),
            &app,
            set(1, "DoNotDisturb", "Presenting"),
        )
        .await
        .assert_done();
    for n in 2..=3 {
        server.advance("PT1M").await;
        server
            .post(&path("setPresence"), &app, set(n, "Available", "Available"))
            .await
            .assert_done();
    }
    assert_eq!(
        server.presence_of(ADELE).await,
        ["DoNotDisturb", "Presenting"]
    );
    // Session 2 is refreshed; a fourth session drops session 1, the stalest.
    server.advance("PT1M").await;
    server
        .post(&path("setPresence"), &app, set(2, "Available", "Available"))
        .await
        .assert_done();
    server.advance("PT1M").await;
    server
        .post(&path("setPresence"), &app, set(4, "Busy", "InACall"))
        .await
        .assert_done();
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "InACall"]);
    let clear = |n: usize| json!({"sessionId": session(n)});
    server
        .post(&path("clearPresence"), &app, clear(1))
        .await
        .assert_error(404, "NotFound");
    for n in [2, 3, 4] {
        server
            .post(&path("clearPresence"), &app, clear(n))
            .await
            .assert_done();
    }
}
}

both! {
#[tokio::test]
async fn a_write_that_would_make_a_record_too_large_is_refused_and_stores_nothing() {
    let server = TestServer::start_with_config(
        "[limits]\nmax_user_record_bytes = 1024\n",
        &["--clock", "manual", "--throttle", "off"],
    )
    .await;
    let app = server.app();
    let path = |action: &str| format!("/v1.0/users/{ADELE}/presence/{action}");
    let mut refused = None;
    for n in 0..64 {
        let answer = server
            .post(
                &path("setPresence"),
                &app,
                json!({"sessionId": session(n), "availability": "Busy", "activity": "InACall", "expirationDuration": "PT4H"}),
            )
            .await;
        match answer.status {
            200 => {}
            400 => {
                refused = Some((n, answer));
                break;
            }
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    let (n, answer) = refused.expect("64 sessions fit in 1024 bytes");
    let message = answer.assert_error(400, "InvalidArgument");
    assert!(message.contains("1024"), "{message}");
    assert!(n >= 5, "only {n} sessions fit");
    // Nothing of the refused write was stored; the earlier sessions were.
    server
        .post(
            &path("clearPresence"),
            &app,
            json!({"sessionId": session(n)}),
        )
        .await
        .assert_error(404, "NotFound");
    server
        .post(
            &path("clearPresence"),
            &app,
            json!({"sessionId": session(0)}),
        )
        .await
        .assert_done();
}
}

both! {
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_over_the_limits_are_refused_with_quota_limit_reached() {
    let (server, _dir) = server(
        "app_subscriptions = true\n[limits]\nmax_subscriptions_per_app = 2\nmax_subscriptions = 3\n",
    )
    .await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let contoso = server.token(TENANT, None, "Presence.Read.All");
    let fabrikam = server.token(OTHER_TENANT, None, "Presence.Read.All");
    let create = |token: &str, user: &str| {
        let body = request(&hook.url, &format!("communications/presences/{user}"));
        let token = token.to_owned();
        let server = &server;
        async move { server.post("/v1.0/subscriptions", &token, body).await }
    };
    let first = create(&contoso, ADELE).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let second = create(&contoso, MEGAN).await;
    assert_eq!(second.status, 201, "{}", second.text);
    // The app's third subscription in the tenant.
    let message = create(&contoso, LEE)
        .await
        .assert_error(403, "QuotaLimitReached");
    assert!(message.contains("Subscription limit reached"), "{message}");
    // The same app in another tenant has its own count, until the total.
    let other = create(&fabrikam, OUTSIDER).await;
    assert_eq!(other.status, 201, "{}", other.text);
    create(&fabrikam, OUTSIDER)
        .await
        .assert_error(403, "QuotaLimitReached");
    // Deleting one makes room again.
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let deleted = server
        .client
        .delete(server.url(&format!("/v1.0/subscriptions/{id}")))
        .bearer_auth(&contoso)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let again = create(&contoso, LEE).await;
    assert_eq!(again.status, 201, "{}", again.text);
}
}
