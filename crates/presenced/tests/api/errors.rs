//! Every refusal in decisions.md: the status, the Graph code, a useful
//! message, and the stored state untouched.

use presenced_identity::{DevIssuerKey, Subject, TokenRequest};
use serde_json::json;

use crate::helpers::*;

fn set_presence(user: &str) -> String {
    format!("/v1.0/users/{user}/presence/setPresence")
}

fn busy() -> serde_json::Value {
    json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"})
}

both! {
#[tokio::test]
async fn path_ids_must_be_guids_of_the_callers_tenant() {
    let server = TestServer::start().await;
    for id in [
        "adele.vance%40contoso.com",
        "adele.vance@contoso.com",
        "rich-user",
        "fa8bf3dc",
    ] {
        let message = server
            .get(&format!("/v1.0/users/{id}/presence"), &server.app())
            .await
            .assert_error(400, "BadRequest");
        assert!(message.contains("object id"), "{message}");
        server
            .post(
                &format!("/v1.0/users/{id}/presence/setPresence"),
                &server.app(),
                busy(),
            )
            .await
            .assert_error(400, "BadRequest");
    }
    server
        .get(&format!("/v1.0/users/{NOBODY}/presence"), &server.app())
        .await
        .assert_error(404, "NotFound");
    server
        .get(
            &format!("/v1.0/communications/presences/{OUTSIDER}"),
            &server.app(),
        )
        .await
        .assert_error(404, "NotFound");
    server
        .post(&set_presence(OUTSIDER), &server.app(), busy())
        .await
        .assert_error(404, "NotFound");
}
}

both! {
#[tokio::test]
async fn me_needs_a_delegated_token() {
    let server = TestServer::start().await;
    let message = server
        .get("/v1.0/me/presence", &server.app())
        .await
        .assert_error(400, "BadRequest");
    assert_eq!(
        message,
        "/me request is only valid with delegated authentication flow."
    );
    server
        .post("/v1.0/me/presence/setPresence", &server.app(), busy())
        .await
        .assert_error(400, "BadRequest");
}
}

both! {
#[tokio::test]
async fn delegated_tokens_write_only_their_own_presence() {
    let server = TestServer::start().await;
    let message = server
        .post(&set_presence(MEGAN), &server.adele(), busy())
        .await
        .assert_error(403, "Forbidden");
    assert_eq!(
        message,
        format!(
            "Cannot set the presence of another user. Authenticated user: {ADELE}. Requested user: {MEGAN}"
        )
    );
    let status = json!({"statusMessage": {"message": {"content": "x", "contentType": "text"}}});
    server
        .post(
            &format!("/v1.0/users/{MEGAN}/presence/setStatusMessage"),
            &server.adele(),
            status,
        )
        .await
        .assert_error(403, "Forbidden");
    server
        .post(&set_presence(ADELE), &server.adele(), busy())
        .await
        .assert_done();
}
}

both! {
#[tokio::test]
async fn missing_permissions_are_403_naming_what_would_do() {
    let server = TestServer::start().await;
    let read_only = server.token(TENANT, Some(ADELE), "Presence.Read");
    assert_eq!(
        server.get("/v1.0/me/presence", &read_only).await.status,
        200
    );
    assert_eq!(
        server
            .get(&format!("/v1.0/users/{ADELE}/presence"), &read_only)
            .await
            .status,
        200
    );
    let message = server
        .get(&format!("/v1.0/users/{MEGAN}/presence"), &read_only)
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Presence.Read.All"), "{message}");
    let message = server
        .post("/v1.0/me/presence/setPresence", &read_only, busy())
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Presence.ReadWrite"), "{message}");
    let app_reader = server.token(TENANT, None, "Presence.Read.All");
    assert_eq!(
        server
            .get(&format!("/v1.0/users/{MEGAN}/presence"), &app_reader)
            .await
            .status,
        200
    );
    let message = server
        .post(&set_presence(MEGAN), &app_reader, busy())
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Presence.ReadWrite.All"), "{message}");
    let nothing = server.token(TENANT, None, "User.Read.All");
    server
        .get(&format!("/v1.0/users/{MEGAN}/presence"), &nothing)
        .await
        .assert_error(403, "Forbidden");
    let ids = json!({"ids": [ADELE]});
    server
        .post("/v1.0/communications/getPresencesByUserId", &read_only, ids)
        .await
        .assert_error(403, "Forbidden");
    // Work location is delegated-only.
    let location = json!({"workLocationType": "office"});
    server
        .post(
            &format!("/v1.0/users/{ADELE}/presence/setManualLocation"),
            &server.app(),
            location,
        )
        .await
        .assert_error(403, "Forbidden");
}
}

both! {
#[tokio::test]
async fn personal_accounts_are_refused() {
    let server = TestServer::start().await;
    let personal = server.token(
        "9188040d-6c67-4c5b-b112-36a304b66dad",
        Some(ADELE),
        "Presence.Read",
    );
    let message = server
        .get("/v1.0/me/presence", &personal)
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Personal Microsoft accounts"), "{message}");
}
}

both! {
#[tokio::test]
async fn bad_tokens_are_401_saying_why() {
    let server = TestServer::start().await;
    let path = format!("/v1.0/users/{ADELE}/presence");
    let answer = Answer::read(server.client.get(server.url(&path)).send().await.unwrap()).await;
    answer.assert_error(401, "InvalidAuthenticationToken");
    // The bearer challenge of RFC 6750, as Graph sends it.
    assert!(
        answer
            .header("www-authenticate")
            .is_some_and(|challenge| challenge.starts_with("Bearer ")),
        "{:?}",
        answer.header("www-authenticate")
    );
    for token in ["garbage", "a.b.c", &"x".repeat(100_000)] {
        server
            .get(&path, token)
            .await
            .assert_error(401, "InvalidAuthenticationToken");
    }
    let key = DevIssuerKey::load_or_create(server.data_dir.path()).unwrap();
    let request = TokenRequest {
        tenant: guid(TENANT),
        app: guid(APP),
        subject: Subject::Application {
            roles: vec!["Presence.Read.All".into()],
        },
        lifetime: jiff::SignedDuration::from_hours(1),
    };
    let expired = key
        .mint(
            &request,
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2),
        )
        .unwrap();
    let message = server
        .get(&path, &expired)
        .await
        .assert_error(401, "InvalidAuthenticationToken");
    assert!(message.contains("expired"), "{message}");
    let other_key_dir = tempfile::tempdir().unwrap();
    let stranger = DevIssuerKey::load_or_create(other_key_dir.path())
        .unwrap()
        .mint(&request, jiff::Timestamp::now())
        .unwrap();
    server
        .get(&path, &stranger)
        .await
        .assert_error(401, "InvalidAuthenticationToken");
}
}

both! {
#[tokio::test]
async fn tokens_are_checked_against_the_real_clock_not_the_manual_one() {
    let server = TestServer::start().await;
    let token = server.app();
    server.advance("P7D").await;
    assert_eq!(
        server
            .get(&format!("/v1.0/users/{ADELE}/presence"), &token)
            .await
            .status,
        200
    );
}
}

both! {
#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_envelope() {
    let server = TestServer::start().await;
    for path in [
        "/v1.0/groups",
        "/v2.0/me/presence",
        "/nothing",
        "/v1.0/me/presence/fly",
    ] {
        server
            .get(path, &server.app())
            .await
            .assert_error(404, "NotFound");
    }
    let answer = server.get(&set_presence(ADELE), &server.app()).await;
    answer.assert_error(405, "MethodNotAllowed");
    assert_eq!(answer.header("allow"), Some("POST"));
}
}

both! {
#[tokio::test]
async fn malformed_bodies_are_refused_and_unknown_properties_ignored() {
    let server = TestServer::start().await;
    let path = set_presence(ADELE);
    let app = server.app();
    server
        .post_raw(&path, &app, Some("application/json"), b"{\"sessionId\":")
        .await
        .assert_error(400, "BadRequest");
    server
        .post_raw(&path, &app, Some("application/json"), b"[1,2]")
        .await
        .assert_error(400, "BadRequest");
    server
        .post_raw(
            &path,
            &app,
            Some("application/json"),
            br#"{"sessionId":5,"availability":"Busy","activity":"InACall"}"#,
        )
        .await
        .assert_error(400, "BadRequest");
    server
        .post_raw(&path, &app, Some("text/plain"), b"sessionId=5")
        .await
        .assert_error(415, "UnsupportedMediaType");
    server
        .post_raw(&path, &app, None, b"sessionId=5")
        .await
        .assert_error(415, "UnsupportedMediaType");
    let huge = format!("{{\"sessionId\":\"{}\"}}", "x".repeat(1024 * 1024));
    server
        .post_raw(&path, &app, Some("application/json"), huge.as_bytes())
        .await
        .assert_error(413, "RequestEntityTooLarge");
    let extra = json!({"sessionId": APP, "availability": "Busy", "activity": "InACall", "mood": "great", "@odata.type": "x"});
    server.post(&path, &app, extra).await.assert_done();
}
}

both! {
#[tokio::test]
async fn unknown_values_and_disallowed_pairs_are_invalid_arguments() {
    let server = TestServer::start().await;
    let app = server.app();
    let path = set_presence(ADELE);
    let message = server
        .post(
            &path,
            &app,
            json!({"sessionId": APP, "availability": "Sleeping", "activity": "InACall"}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("Sleeping"), "{message}");
    let message = server
        .post(
            &path,
            &app,
            json!({"sessionId": APP, "availability": "Busy", "activity": "Busy"}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    assert!(
        message.contains("Busy/Busy") && message.contains("Busy/InACall"),
        "{message}"
    );
    for (availability, activity) in [
        ("Offline", "Offline"),
        ("Busy", "InAMeeting"),
        ("Available", "OutOfOffice"),
        ("DoNotDisturb", "DoNotDisturb"),
    ] {
        server
            .post(
                &path,
                &app,
                json!({"sessionId": APP, "availability": availability, "activity": activity}),
            )
            .await
            .assert_error(400, "InvalidArgument");
    }
    let preferred = format!("/v1.0/users/{ADELE}/presence/setUserPreferredPresence");
    let message = server
        .post(
            &preferred,
            &app,
            json!({"availability": "Busy", "activity": "InACall"}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("Offline/OffWork"), "{message}");
    server
        .post(&preferred, &app, json!({"availability": "Busy"}))
        .await
        .assert_error(400, "InvalidArgument");
}
}

both! {
#[tokio::test]
async fn durations_are_iso_8601_within_each_actions_range() {
    let server = TestServer::start().await;
    let app = server.app();
    let path = set_presence(ADELE);
    let set = |d: &str| json!({"sessionId": APP, "availability": "Busy", "activity": "InACall", "expirationDuration": d});
    for ok in ["PT5M", "PT4H", "PT300S", "PT1H30M"] {
        server.post(&path, &app, set(ok)).await.assert_done();
    }
    for out in ["PT4M", "PT4H1S", "P1D"] {
        let message = server
            .post(&path, &app, set(out))
            .await
            .assert_error(400, "InvalidArgument");
        assert_eq!(
            message,
            "The provided [ExpirationDuration] is out of range."
        );
    }
    let message = server
        .post(&path, &app, set("1:00:00"))
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("\"PT1H\""), "{message}");
    for bad in ["P1M", "P1Y", "PT0S", "-PT5M", "pt5m", "PT", "5 minutes"] {
        server
            .post(&path, &app, set(bad))
            .await
            .assert_error(400, "InvalidArgument");
    }
    let preferred = format!("/v1.0/users/{ADELE}/presence/setUserPreferredPresence");
    let pref =
        |d: &str| json!({"availability": "Away", "activity": "Away", "expirationDuration": d});
    server
        .post(&preferred, &app, pref("P365D"))
        .await
        .assert_done();
    server
        .post(&preferred, &app, pref("P1W"))
        .await
        .assert_done();
    server
        .post(&preferred, &app, pref("P366D"))
        .await
        .assert_error(400, "InvalidArgument");
    let message = server
        .post(&preferred, &app, pref("1 day, 0:00:00"))
        .await
        .assert_error(400, "InvalidArgument");
    assert!(message.contains("\"P1D\""), "{message}");
}
}

both! {
#[tokio::test]
async fn python_durations_are_accepted_when_switched_on() {
    let server = TestServer::start_with(&[
        "--clock",
        "manual",
        "--throttle",
        "off",
        "--accept-python-durations",
    ])
    .await;
    let path = format!("/v1.0/users/{ADELE}/presence/setUserPreferredPresence");
    let body =
        json!({"availability": "Away", "activity": "Away", "expirationDuration": "1 day, 2:30:15"});
    server.post(&path, &server.app(), body).await.assert_done();
}
}

both! {
#[tokio::test]
async fn session_ids_are_required_and_bounded() {
    let server = TestServer::start().await;
    let path = set_presence(ADELE);
    for body in [
        json!({"availability": "Busy", "activity": "InACall"}),
        json!({"sessionId": "", "availability": "Busy", "activity": "InACall"}),
    ] {
        let message = server
            .post(&path, &server.app(), body)
            .await
            .assert_error(400, "InvalidArgument");
        assert_eq!(message, "[SessionId]: The SessionId field is required.");
    }
    // Validation comes before the permission check, as in Graph.
    let no_scope = server.token(TENANT, None, "User.Read.All");
    server
        .post(
            &format!("/v1.0/users/{ADELE}/presence/clearPresence"),
            &no_scope,
            json!({}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    // Session ids are GUIDs (the calling app's client id): anything else,
    // a NUL included, is refused and changes nothing.
    for bad in [
        "s".repeat(257),
        "s".to_owned(),
        "softphone-1".to_owned(),
        format!("{APP}\u{0}"),
        format!("{{{APP}}}"),
        "22553876-f5ab-4529-bffb-cfe50aa89f8".to_owned(),
    ] {
        let body = json!({"sessionId": bad, "availability": "Busy", "activity": "InACall"});
        let message = server
            .post(&path, &server.app(), body)
            .await
            .assert_error(400, "InvalidArgument");
        assert!(message.contains("SessionId"), "{message}");
    }
    let clear = path.replace("setPresence", "clearPresence");
    server
        .post(
            &clear,
            &server.app(),
            json!({"sessionId": "not\u{0}a guid"}),
        )
        .await
        .assert_error(400, "InvalidArgument");
    let guid =
        json!({"sessionId": APP.to_uppercase(), "availability": "Busy", "activity": "InACall"});
    server.post(&path, &server.app(), guid).await.assert_done();
}
}

both! {
#[tokio::test]
async fn status_messages_must_be_short_text_with_a_known_zone() {
    let server = TestServer::start().await;
    let path = "/v1.0/me/presence/setStatusMessage";
    let message = |content: &str, ct: &str| json!({"statusMessage": {"message": {"content": content, "contentType": ct}}});
    server
        .post(path, &server.adele(), message("<b>Out</b>", "html"))
        .await
        .assert_error(400, "InvalidArgument");
    server
        .post(path, &server.adele(), message(&"x".repeat(281), "text"))
        .await
        .assert_error(400, "InvalidArgument");
    server
        .post(path, &server.adele(), message(&"é".repeat(280), "text"))
        .await
        .assert_done();
    let zone = json!({"statusMessage": {"message": {"content": "x", "contentType": "text"},
        "expiryDateTime": {"dateTime": "2030-01-01T10:00:00", "timeZone": "Mars Standard Time"}}});
    server
        .post(path, &server.adele(), zone)
        .await
        .assert_error(400, "InvalidArgument");
    server
        .post(path, &server.adele(), json!({}))
        .await
        .assert_error(400, "InvalidArgument");
}
}

both! {
#[tokio::test]
async fn refused_requests_leave_the_presence_exactly_as_it_was() {
    let server = TestServer::start().await;
    let app = server.app();
    server
        .post(&set_presence(ADELE), &app, busy())
        .await
        .assert_done();
    let before = server
        .get(&format!("/v1.0/users/{ADELE}/presence"), &app)
        .await
        .json();
    let bad = [
        json!({"sessionId": APP, "availability": "Available", "activity": "Busy"}),
        json!({"sessionId": APP, "availability": "Available", "activity": "Available", "expirationDuration": "PT1M"}),
        json!({"availability": "Available", "activity": "Available"}),
    ];
    for body in bad {
        assert_eq!(
            server.post(&set_presence(ADELE), &app, body).await.status,
            400
        );
    }
    assert_eq!(
        server
            .post(
                &set_presence(ADELE),
                &server.adele().replace('a', "b"),
                busy()
            )
            .await
            .status,
        401
    );
    let after = server
        .get(&format!("/v1.0/users/{ADELE}/presence"), &app)
        .await
        .json();
    assert_eq!(before, after);
}
}

both! {
#[tokio::test]
async fn every_answer_carries_request_ids_and_echoes_the_callers() {
    let server = TestServer::start().await;
    let path = server.url(&format!("/v1.0/users/{ADELE}/presence"));
    let plain = Answer::read(
        server
            .client
            .get(&path)
            .bearer_auth(server.app())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = plain.header("request-id").unwrap();
    assert_eq!(plain.header("client-request-id"), Some(id));
    let echoed = Answer::read(
        server
            .client
            .get(&path)
            .bearer_auth(server.app())
            .header("client-request-id", "ff0ae2ae-2b79-1f00-c3a7-07bbab1de39c")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        echoed.header("client-request-id"),
        Some("ff0ae2ae-2b79-1f00-c3a7-07bbab1de39c")
    );
    let error = Answer::read(
        server
            .client
            .get(&path)
            .header("client-request-id", "mine")
            .send()
            .await
            .unwrap(),
    )
    .await;
    error.assert_error(401, "InvalidAuthenticationToken");
    assert_eq!(
        error.json()["error"]["innerError"]["client-request-id"],
        "mine"
    );
}
}

both! {
#[tokio::test]
async fn throttling_answers_429_with_retry_after_per_app_per_tenant() {
    let server = TestServer::start_with(&["--clock", "manual", "--throttle", "3/30s"]).await;
    let path = format!("/v1.0/users/{ADELE}/presence");
    let app = server.app();
    let ids = json!({"ids": (0..650).map(|i| format!("00000000-0000-4000-8000-{i:012}")).collect::<Vec<_>>()});
    assert_eq!(
        server
            .post("/v1.0/communications/getPresencesByUserId", &app, ids)
            .await
            .status,
        200
    );
    for _ in 0..2 {
        assert_eq!(server.get(&path, &app).await.status, 200);
    }
    let answer = server.get(&path, &app).await;
    answer.assert_error(429, "TooManyRequests");
    let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    // Another app of the same tenant has its own budget.
    let key = presenced_identity::DevIssuerKey::load_or_create(server.data_dir.path()).unwrap();
    let other = key
        .mint(
            &TokenRequest {
                tenant: guid(TENANT),
                app: guid(OTHER_APP),
                subject: Subject::Application {
                    roles: vec!["Presence.Read.All".into()],
                },
                lifetime: jiff::SignedDuration::from_hours(1),
            },
            jiff::Timestamp::now(),
        )
        .unwrap();
    assert_eq!(server.get(&path, &other).await.status, 200);
}
}

both! {
#[tokio::test]
async fn repeating_a_write_has_the_effect_of_making_it_once() {
    let server = TestServer::start().await;
    let read = || async {
        server
            .get(&format!("/v1.0/users/{ADELE}/presence"), &server.app())
            .await
            .json()
    };
    server
        .post(&set_presence(ADELE), &server.app(), busy())
        .await
        .assert_done();
    let once = read().await;
    for _ in 0..3 {
        server
            .post(&set_presence(ADELE), &server.app(), busy())
            .await
            .assert_done();
    }
    assert_eq!(read().await, once);
}
}

both! {
#[tokio::test]
async fn the_configuration_file_sets_limits_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("presenced.toml");
    std::fs::write(
        &config,
        format!("[throttle]\ndefault = \"off\"\n[throttle.tenants]\n\"{TENANT}\" = \"2/30s\"\n"),
    )
    .unwrap();
    let server =
        TestServer::start_with(&["--clock", "manual", "--config", config.to_str().unwrap()]).await;
    let path = format!("/v1.0/users/{ADELE}/presence");
    for _ in 0..2 {
        assert_eq!(server.get(&path, &server.app()).await.status, 200);
    }
    server
        .get(&path, &server.app())
        .await
        .assert_error(429, "TooManyRequests");
    let outsider = server.token(OTHER_TENANT, None, "Presence.Read.All");
    for _ in 0..5 {
        assert_eq!(
            server
                .get(&format!("/v1.0/users/{OUTSIDER}/presence"), &outsider)
                .await
                .status,
            200
        );
    }
}
}
