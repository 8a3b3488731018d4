//! Nothing a client sends may panic the server: random paths, headers and
//! bodies all get an answer, errors in Graph's envelope, and the server stays up.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use crate::helpers::*;

const ACTIONS: [&str; 10] = [
    "setPresence",
    "clearPresence",
    "setUserPreferredPresence",
    "clearUserPreferredPresence",
    "setStatusMessage",
    "setManualLocation",
    "setAutomaticLocation",
    "clearAutomaticLocation",
    "clearLocation",
    "getPresencesByUserId",
];

/// Bodies that are JSON-shaped enough to reach validation, with random values.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "\\PC{0,40}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "Available",
            "Busy",
            "InACall",
            "PT5M",
            "P1D",
            "8:00:00",
            "office",
            "text",
            "UTC"
        ])
        .prop_map(serde_json::Value::from),
    ];
    let keys = prop::sample::select(vec![
        "sessionId",
        "availability",
        "activity",
        "expirationDuration",
        "statusMessage",
        "message",
        "content",
        "contentType",
        "expiryDateTime",
        "dateTime",
        "timeZone",
        "workLocationType",
        "placeId",
        "ids",
    ]);
    let object = prop::collection::btree_map(keys, value, 0..6).prop_map(|m| {
        let mut object: serde_json::Map<String, serde_json::Value> =
            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if let Some(v) = object.get("statusMessage").cloned() {
            object.insert(
                "statusMessage".into(),
                serde_json::json!({"message": {"content": v, "contentType": "text"}}),
            );
        }
        serde_json::to_vec(&object).unwrap()
    });
    prop_oneof![object, prop::collection::vec(any::<u8>(), 0..64)]
}

#[tokio::test]
async fn random_requests_get_answers_and_never_bring_the_server_down() {
    let server = TestServer::start().await;
    let token = server.adele();
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    let strategy = (
        prop::sample::select(vec![
            "/v1.0/me/presence/".to_string(),
            format!("/beta/users/{ADELE}/presence/"),
            "/v1.0/communications/".to_string(),
        ]),
        prop::sample::select(ACTIONS.to_vec()),
        body(),
        prop::option::of(prop::sample::select(vec![
            "application/json",
            "text/plain",
            "application/json; charset=utf-8",
        ])),
    );
    // Bounded: 300 generated requests, deterministic per run of the runner's seed.
    for _ in 0..300 {
        let (prefix, action, body, content_type) =
            strategy.new_tree(&mut runner).unwrap().current();
        let answer = server
            .post_raw(&format!("{prefix}{action}"), &token, content_type, &body)
            .await;
        assert!(
            answer.status < 500,
            "{prefix}{action} {:?}: {} {}",
            String::from_utf8_lossy(&body),
            answer.status,
            answer.text
        );
        if answer.status >= 400 {
            answer.assert_error(
                answer.status,
                answer.json()["error"]["code"].as_str().unwrap(),
            );
        }
    }
    for path in [
        "/v1.0/%FF%FE/presence",
        "/v1.0/users/%00/presence",
        "/v1.0/users/../presence",
        "/beta//me//presence",
    ] {
        let answer = server.get(path, &token).await;
        assert!(
            (400..500).contains(&answer.status),
            "{path}: {}",
            answer.status
        );
    }
    let health = Answer::read(
        server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(health.status, 200);
}
