//! The bound actions, in every path form, and what they do to a later read.

use serde_json::json;

use crate::helpers::*;

const ACTIONS: [(&str, &str); 9] = [
    (
        "setPresence",
        r#"{"sessionId":"22553876-f5ab-4529-bffb-cfe50aa89f87","availability":"Available","activity":"Available","expirationDuration":"PT1H"}"#,
    ),
    (
        "setUserPreferredPresence",
        r#"{"availability":"Busy","activity":"Busy"}"#,
    ),
    (
        "setStatusMessage",
        r#"{"statusMessage":{"message":{"content":"Lunch","contentType":"text"}}}"#,
    ),
    ("clearUserPreferredPresence", ""),
    (
        "setManualLocation",
        r#"{"workLocationType":"office","placeId":"eb706f15-137e-4722-b4d1-b601481d9251"}"#,
    ),
    ("setAutomaticLocation", r#"{"workLocationType":"remote"}"#),
    ("clearAutomaticLocation", ""),
    ("clearLocation", ""),
    (
        "clearPresence",
        r#"{"sessionId":"22553876-f5ab-4529-bffb-cfe50aa89f87"}"#,
    ),
];

both! {
#[tokio::test]
async fn every_action_answers_200_with_no_body_under_every_path_form() {
    let server = TestServer::start().await;
    let adele = server.adele();
    for prefix in ["/v1.0", "/beta"] {
        for target in [
            "/me/presence".to_string(),
            format!("/users/{ADELE}/presence"),
            format!("/communications/presences/{ADELE}"),
        ] {
            for namespace in ["", "microsoft.graph."] {
                for (action, body) in ACTIONS {
                    let path = format!("{prefix}{target}/{namespace}{action}");
                    let answer = server
                        .post_raw(&path, &adele, Some("application/json"), body.as_bytes())
                        .await;
                    assert_eq!(answer.status, 200, "{path}: {}", answer.text);
                    answer.assert_done();
                }
            }
        }
    }
}
}

both! {
#[tokio::test]
async fn set_presence_shows_the_session_and_clear_presence_removes_it() {
    let server = TestServer::start().await;
    let path = |action: &str| format!("/v1.0/users/{ADELE}/presence/{action}");
    let set = json!({"sessionId": APP, "availability": "busy", "activity": "inacall", "expirationDuration": "PT1H"});
    server
        .post(&path("setPresence"), &server.app(), set)
        .await
        .assert_done();
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "InACall"]);
    server
        .post(
            &path("clearPresence"),
            &server.app(),
            json!({"sessionId": APP}),
        )
        .await
        .assert_done();
    assert_eq!(server.presence_of(ADELE).await, ["Offline", "Offline"]);
    let message = server
        .post(
            &path("clearPresence"),
            &server.app(),
            json!({"sessionId": APP}),
        )
        .await
        .assert_error(404, "NotFound");
    assert!(message.contains(APP), "{message}");
}
}

both! {
#[tokio::test]
async fn clear_user_preferred_presence_accepts_every_empty_body_and_is_idempotent() {
    let server = TestServer::start().await;
    let path = format!("/v1.0/users/{ADELE}/presence/clearUserPreferredPresence");
    for (content_type, body) in [
        (None, ""),
        (Some("application/json"), ""),
        (Some("application/json"), "{}"),
        (None, "{}"),
    ] {
        server
            .post_raw(&path, &server.app(), content_type, body.as_bytes())
            .await
            .assert_done();
    }
}
}

both! {
#[tokio::test]
async fn the_preferred_presence_overrides_sessions_and_clearing_it_reverts() {
    let server = TestServer::start().await;
    let path = |action: &str| format!("/v1.0/users/{ADELE}/presence/{action}");
    let app = server.app();
    server
        .post(
            &path("setPresence"),
            &app,
            json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"}),
        )
        .await
        .assert_done();
    server
        .post(
            &path("setUserPreferredPresence"),
            &app,
            json!({"availability": "Offline", "activity": "OffWork"}),
        )
        .await
        .assert_done();
    assert_eq!(server.presence_of(ADELE).await, ["Offline", "OffWork"]);
    server
        .post(&path("clearUserPreferredPresence"), &app, json!({}))
        .await
        .assert_done();
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "InACall"]);
}
}

both! {
#[tokio::test]
async fn the_preferred_presence_lapses_after_its_default_day_for_busy() {
    let server = TestServer::start().await;
    let path = |action: &str| format!("/v1.0/users/{ADELE}/presence/{action}");
    let app = server.app();
    let keep_alive = json!({"sessionId": APP, "availability": "Busy", "activity": "InAConferenceCall", "expirationDuration": "PT4H"});
    server
        .post(&path("setPresence"), &app, keep_alive.clone())
        .await
        .assert_done();
    server
        .post(
            &path("setUserPreferredPresence"),
            &app,
            json!({"availability": "DoNotDisturb", "activity": "DoNotDisturb"}),
        )
        .await
        .assert_done();
    for _ in 0..6 {
        assert_eq!(
            server.presence_of(ADELE).await,
            ["DoNotDisturb", "DoNotDisturb"]
        );
        server.advance("PT3H59M").await;
        server
            .post(&path("setPresence"), &app, keep_alive.clone())
            .await
            .assert_done();
    }
    // 23 h 54 min have passed: still preferred; at one day it lapses.
    assert_eq!(
        server.presence_of(ADELE).await,
        ["DoNotDisturb", "DoNotDisturb"]
    );
    server.advance("PT6M").await;
    assert_eq!(
        server.presence_of(ADELE).await,
        ["Busy", "InAConferenceCall"]
    );
}
}

both! {
#[tokio::test]
async fn an_available_session_fades_to_inactive_then_away_and_a_refresh_restores_it() {
    let server = TestServer::start().await;
    let path = format!("/v1.0/users/{ADELE}/presence/setPresence");
    let set = json!({"sessionId": APP, "availability": "Available", "activity": "Available", "expirationDuration": "PT1H"});
    server
        .post(&path, &server.app(), set.clone())
        .await
        .assert_done();
    assert_eq!(server.presence_of(ADELE).await, ["Available", "Available"]);
    server.advance("PT4M59S").await;
    assert_eq!(server.presence_of(ADELE).await, ["Available", "Available"]);
    server.advance("PT1S").await;
    assert_eq!(
        server.presence_of(ADELE).await,
        ["Available", "AvailableInactive"]
    );
    server.advance("PT5M").await;
    assert_eq!(server.presence_of(ADELE).await, ["Away", "Away"]);
    server.post(&path, &server.app(), set).await.assert_done();
    assert_eq!(server.presence_of(ADELE).await, ["Available", "Available"]);
    server.advance("PT1H").await;
    assert_eq!(server.presence_of(ADELE).await, ["Offline", "Offline"]);
}
}

both! {
#[tokio::test]
async fn the_status_message_expires_at_its_instant_in_its_time_zone() {
    let server = TestServer::start().await;
    let now = server.now().await;
    // One hour from now, written as a Tokyo wall-clock time (UTC+9, no DST).
    let tokyo = (now + jiff::SignedDuration::from_hours(1))
        .to_zoned_datetime(jiff::tz::TimeZone::fixed(jiff::tz::offset(9)));
    let body = json!({"statusMessage": {
        "message": {"content": "Back soon", "contentType": "text"},
        "expiryDateTime": {"dateTime": tokyo.datetime().strftime("%Y-%m-%dT%H:%M:%S%.f").to_string(), "timeZone": "Tokyo Standard Time"}
    }});
    server
        .post("/v1.0/me/presence/setStatusMessage", &server.adele(), body)
        .await
        .assert_done();
    let read = || async {
        server
            .get("/v1.0/me/presence", &server.adele())
            .await
            .json()["statusMessage"]
            .clone()
    };
    assert_eq!(read().await["message"]["content"], "Back soon");
    server.advance("PT59M59S").await;
    assert_eq!(read().await["message"]["content"], "Back soon");
    server.advance("PT1S").await;
    assert_eq!(read().await, serde_json::Value::Null);
}
}

both! {
#[tokio::test]
async fn an_expiry_with_the_time_zones_offset_is_accepted_and_a_contradicting_one_refused() {
    let server = TestServer::start().await;
    let now = server.now().await;
    let in_an_hour = (now + jiff::SignedDuration::from_hours(1))
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let body = |date_time: String, time_zone: &str| {
        json!({"statusMessage": {
            "message": {"content": "Back soon", "contentType": "text"},
            "expiryDateTime": {"dateTime": date_time, "timeZone": time_zone}
        }})
    };
    let read = || async {
        server
            .get("/v1.0/me/presence", &server.adele())
            .await
            .json()["statusMessage"]
            .clone()
    };
    // As office365-rest-python-client sends it.
    server
        .post(
            "/v1.0/me/presence/setStatusMessage",
            &server.adele(),
            body(format!("{in_an_hour}+00:00"), "UTC"),
        )
        .await
        .assert_done();
    let message = read().await;
    assert_eq!(message["message"]["content"], "Back soon");
    assert_eq!(
        message["expiryDateTime"]["dateTime"],
        format!("{in_an_hour}.0000000")
    );
    assert_eq!(message["expiryDateTime"]["timeZone"], "UTC");

    // A contradicting offset is refused and leaves the message as it was.
    for (date_time, time_zone, named) in [
        (format!("{in_an_hour}+02:00"), "UTC", ["+02:00", "+00:00"]),
        (
            "2030-07-01T09:00:00-05:00".to_string(),
            "Pacific Standard Time",
            ["-05:00", "-07:00"],
        ),
    ] {
        let answer = server
            .post(
                "/v1.0/me/presence/setStatusMessage",
                &server.adele(),
                json!({"statusMessage": {
                    "message": {"content": "Other", "contentType": "text"},
                    "expiryDateTime": {"dateTime": date_time, "timeZone": time_zone}
                }}),
            )
            .await;
        let text = answer.assert_error(400, "InvalidArgument");
        for part in named.iter().chain([&time_zone]) {
            assert!(text.contains(part), "{text} should name {part}");
        }
        assert_eq!(read().await, message);
    }

    server.advance("PT1H").await;
    assert_eq!(read().await, serde_json::Value::Null);
}
}

both! {
#[tokio::test]
async fn an_empty_or_null_status_message_clears_it() {
    let server = TestServer::start().await;
    let set = json!({"statusMessage": {"message": {"content": "Hi", "contentType": "text"}}});
    for clear in [
        json!({"statusMessage": null}),
        json!({"statusMessage": {"message": {"content": "", "contentType": "text"}}}),
    ] {
        server
            .post(
                "/v1.0/me/presence/setStatusMessage",
                &server.adele(),
                set.clone(),
            )
            .await
            .assert_done();
        let read = server
            .get("/v1.0/me/presence", &server.adele())
            .await
            .json();
        assert_eq!(read["statusMessage"]["message"]["content"], "Hi");
        server
            .post("/v1.0/me/presence/setStatusMessage", &server.adele(), clear)
            .await
            .assert_done();
        let read = server
            .get("/v1.0/me/presence", &server.adele())
            .await
            .json();
        assert_eq!(read["statusMessage"], serde_json::Value::Null);
    }
}
}

both! {
#[tokio::test]
async fn work_location_layers_aggregate_manual_over_automatic() {
    let server = TestServer::start().await;
    let adele = server.adele();
    let act = |action: &'static str, body: serde_json::Value| {
        let server = &server;
        let adele = adele.clone();
        async move {
            server
                .post(&format!("/v1.0/me/presence/{action}"), &adele, body)
                .await
                .assert_done()
        }
    };
    let location = || async {
        server
            .get("/v1.0/me/presence", &server.adele())
            .await
            .json()["workLocation"]
            .clone()
    };
    act(
        "setAutomaticLocation",
        json!({"workLocationType": "remote"}),
    )
    .await;
    assert_eq!(
        location().await,
        json!({"workLocationType": "remote", "source": "automatic", "placeId": null})
    );
    act(
        "setManualLocation",
        json!({"workLocationType": "Office", "placeId": "b1"}),
    )
    .await;
    assert_eq!(
        location().await,
        json!({"workLocationType": "office", "source": "manual", "placeId": "b1"})
    );
    act("clearAutomaticLocation", json!({})).await;
    assert_eq!(
        location().await,
        json!({"workLocationType": "office", "source": "manual", "placeId": "b1"})
    );
    act(
        "setAutomaticLocation",
        json!({"workLocationType": "timeOff"}),
    )
    .await;
    act("clearLocation", json!({})).await;
    assert_eq!(
        location().await,
        json!({"workLocationType": "unspecified", "source": "none", "placeId": null})
    );
}
}

both! {
#[tokio::test]
async fn out_of_office_from_the_admin_call_shows_in_activity_and_settings() {
    let server = TestServer::start().await;
    let put = |token: String, body: serde_json::Value| {
        let request = server.client.put(server.url(&format!(
            "/admin/tenants/{TENANT}/users/{ADELE}/outOfOfficeSettings"
        )));
        async move { Answer::read(request.bearer_auth(token).json(&body).send().await.unwrap()).await }
    };
    let answer = put(
        server.app(),
        json!({"isOutOfOffice": true, "message": "On leave"}),
    )
    .await;
    assert_eq!(answer.status, 204, "{}", answer.text);
    let json = server
        .get(&format!("/v1.0/users/{ADELE}/presence"), &server.app())
        .await
        .json();
    assert_eq!(
        json["outOfOfficeSettings"],
        json!({"message": "On leave", "isOutOfOffice": true})
    );
    assert_eq!(
        (json["availability"].as_str(), json["activity"].as_str()),
        (Some("Offline"), Some("OutOfOffice"))
    );
    let set = json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"});
    server
        .post(
            &format!("/v1.0/users/{ADELE}/presence/setPresence"),
            &server.app(),
            set,
        )
        .await
        .assert_done();
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "InACall"]);
    // Only an application token with Presence.ReadWrite.All may call it.
    put(server.adele(), json!({"isOutOfOffice": false}))
        .await
        .assert_error(403, "Forbidden");
    put(
        server.token(TENANT, None, "Presence.Read.All"),
        json!({"isOutOfOffice": false}),
    )
    .await
    .assert_error(403, "Forbidden");
}
}

both! {
#[tokio::test]
async fn sequence_number_moves_on_visible_changes_only() {
    let server = TestServer::start().await;
    let sequence = || async {
        server
            .get(&format!("/v1.0/users/{ADELE}/presence"), &server.app())
            .await
            .json()["sequenceNumber"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let path = format!("/v1.0/users/{ADELE}/presence/setPresence");
    let busy = json!({"sessionId": APP, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"});
    let s0 = sequence().await;
    server
        .post(&path, &server.app(), busy.clone())
        .await
        .assert_done();
    let s1 = sequence().await;
    assert!(s1 > s0);
    server.post(&path, &server.app(), busy).await.assert_done();
    server.advance("PT30M").await;
    assert_eq!(
        sequence().await,
        s1,
        "a refresh and time without change move nothing"
    );
    server.advance("PT30M").await;
    let s2 = sequence().await;
    assert!(s2 > s1, "the session's expiry is a visible change");
    assert_eq!(sequence().await, s2);
}

/// serde would read a struct from an array of its fields' values; Graph
/// takes objects only. Found by schemathesis (`tests/api/openapi.rs`).
#[tokio::test]
async fn a_body_or_nested_object_sent_as_an_array_is_refused_and_changes_nothing() {
    let server = TestServer::start().await;
    let set = json!({"statusMessage": {"message": {"content": "Hi", "contentType": "text"}}});
    server
        .post("/v1.0/me/presence/setStatusMessage", &server.adele(), set)
        .await
        .assert_done();
    let before = server
        .get("/v1.0/me/presence", &server.adele())
        .await
        .json();
    for (action, body) in [
        (
            "setStatusMessage",
            json!({"statusMessage": {"message": [null, null]}}),
        ),
        (
            "setStatusMessage",
            json!({"statusMessage": {"message": {"content": "x"}, "expiryDateTime": ["2030-01-01T00:00:00", "UTC"]}}),
        ),
        ("setStatusMessage", json!({"statusMessage": [null, null]})),
        ("setStatusMessage", json!([null])),
        ("setUserPreferredPresence", json!(["Busy", "Busy", "PT1H"])),
    ] {
        let answer = server
            .post(
                &format!("/v1.0/me/presence/{action}"),
                &server.adele(),
                body.clone(),
            )
            .await;
        let text = answer.assert_error(400, "BadRequest");
        assert!(text.contains("shape"), "{body}: {text}");
    }
    let after = server
        .get("/v1.0/me/presence", &server.adele())
        .await
        .json();
    assert_eq!(after, before);
}
}
