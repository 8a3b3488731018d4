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

/// Query text built from the pieces of OData expressions, so that many
/// cases get deep into the parsers before they go wrong.
fn query_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "startswith(",
        "displayName",
        "userPrincipalName",
        "id",
        "mail",
        " eq ",
        " in ",
        " or ",
        " and ",
        "(",
        ")",
        ",",
        "'a'",
        "'it''s'",
        "'",
        "\"",
        "displayName:ad",
        " OR ",
        "*",
        "%",
        "%24",
        "é",
        " ",
        "999",
        "-1",
        "desc",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// A batch body with random requests, ids, dependencies and URLs.
fn batch_body() -> impl Strategy<Value = serde_json::Value> {
    let url = prop::sample::select(vec![
        "/me/presence".to_string(),
        format!("/users/{ADELE}/presence"),
        "/users?$top=1".to_string(),
        "/$batch".to_string(),
        "/beta/me".to_string(),
        "https://x/v1.0/me".to_string(),
        "".to_string(),
        "%".to_string(),
        "/me/presence/setPresence".to_string(),
    ]);
    let request = (
        prop::option::of(prop_oneof![
            "[a-c]{0,2}".prop_map(serde_json::Value::from),
            any::<u8>().prop_map(serde_json::Value::from),
        ]),
        prop::option::of(prop::sample::select(vec!["GET", "POST", "get", "FLY"])),
        prop::option::of(url),
        prop::option::of(prop::collection::vec("[a-c]{0,2}", 0..3)),
        prop::option::of(prop_oneof![
            Just(serde_json::json!({"sessionId": "s", "availability": "Busy", "activity": "Busy"})),
            Just(serde_json::json!("bm90IGpzb24=")),
            Just(serde_json::json!("%%%")),
            Just(serde_json::json!([1, 2])),
        ]),
        prop::option::of(prop::sample::select(vec![
            "application/json",
            "text/plain",
            "bad header\n",
        ])),
    )
        .prop_map(|(id, method, url, depends_on, body, content_type)| {
            let mut request = serde_json::Map::new();
            if let Some(id) = id {
                request.insert("id".into(), id);
            }
            if let Some(method) = method {
                request.insert("method".into(), method.into());
            }
            if let Some(url) = url {
                request.insert("url".into(), url.into());
            }
            if let Some(depends_on) = depends_on {
                request.insert("dependsOn".into(), depends_on.into());
            }
            if let Some(body) = body {
                request.insert("body".into(), body);
            }
            if let Some(content_type) = content_type {
                request.insert(
                    "headers".into(),
                    serde_json::json!({"Content-Type": content_type}),
                );
            }
            serde_json::Value::Object(request)
        });
    prop::collection::vec(request, 0..24)
        .prop_map(|requests| serde_json::json!({"requests": requests}))
}

#[tokio::test]
async fn random_directory_queries_and_batches_get_answers_and_never_bring_the_server_down() {
    let server = TestServer::start().await;
    let token = server.token(
        TENANT,
        Some(ADELE),
        "Presence.Read.All Presence.ReadWrite User.Read.All",
    );
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let option = prop::sample::select(vec![
        "$filter",
        "$search",
        "$select",
        "$top",
        "$orderby",
        "$count",
        "$skiptoken",
    ]);
    let strategy = (option, query_text(), any::<bool>());
    // Bounded: 200 queries and 100 batches.
    for _ in 0..200 {
        let (option, text, eventual) = strategy.new_tree(&mut runner).unwrap().current();
        let encoded: String = text
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let mut request = server
            .client
            .get(server.url(&format!("/v1.0/users?{option}={encoded}")))
            .bearer_auth(&token);
        if eventual {
            request = request.header("ConsistencyLevel", "eventual");
        }
        let answer = Answer::read(request.send().await.unwrap()).await;
        assert!(
            answer.status == 200 || (400..500).contains(&answer.status),
            "{option}={text}: {} {}",
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
    let strategy = batch_body();
    for _ in 0..100 {
        let body = strategy.new_tree(&mut runner).unwrap().current();
        let answer = server.post("/v1.0/$batch", &token, body.clone()).await;
        assert!(
            answer.status == 200 || answer.status == 400,
            "{body}: {} {}",
            answer.status,
            answer.text
        );
        if answer.status == 200 {
            for response in answer.json()["responses"].as_array().unwrap() {
                let status = response["status"].as_u64().unwrap();
                assert!(status < 500, "{body}: {response}");
            }
        } else {
            answer.assert_error(400, "BadRequest");
        }
    }
    assert_eq!(
        server.get("/healthz", &token).await.status,
        200,
        "the server is still up"
    );
}
