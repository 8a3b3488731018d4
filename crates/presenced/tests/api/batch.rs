//! JSON batching over raw HTTP: Graph's response shape, mixed statuses,
//! `dependsOn` and 424, the 20-request limit, request-level 400s, per-request
//! headers and bodies, and a sub-request throttled with its own Retry-After.

use serde_json::{Value, json};

use crate::helpers::*;

async fn batch(server: &TestServer, path: &str, token: &str, body: Value) -> Answer {
    server.post(path, token, body).await
}

/// The answers by id.
fn by_id(answer: &Answer) -> std::collections::HashMap<String, Value> {
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

fn get(id: &str, url: &str) -> Value {
    json!({"id": id, "method": "GET", "url": url})
}

both! {
#[tokio::test]
async fn a_batch_answers_each_request_in_graphs_shape_with_mixed_statuses() {
    let server = TestServer::start().await;
    let token = server.token(
        TENANT,
        Some(ADELE),
        "Presence.Read.All Presence.ReadWrite User.Read",
    );
    let body = json!({"requests": [
        {"id": "1", "method": "POST", "url": "/me/presence/setPresence",
         "headers": {"Content-Type": "application/json"},
         "body": {"sessionId": APP, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1H"}},
        {"id": "2", "method": "GET", "url": "me/presence", "dependsOn": ["1"]},
        get("3", &format!("/users/{NOBODY}/presence")),
        get("4", "/users/not-a-guid/presence"),
        get("5", &format!("/v1.0/users/{MEGAN}")),
        {"id": "6", "method": "GET", "url": "/me", "dependsOn": ["3"]},
        {"id": "7", "method": "GET", "url": "/me?$select=displayName", "dependsOn": ["2"],
         "headers": {"client-request-id": "sub-7"}},
        get("8", "/$batch"),
        get("9", "/nothing/here")
    ]});
    let answer = batch(&server, "/v1.0/$batch", &token, body).await;
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert!(answer.header("request-id").is_some());
    let responses = by_id(&answer);
    assert_eq!(responses.len(), 9);
    for (id, response) in &responses {
        let object = response.as_object().unwrap();
        assert!(
            object.contains_key("status") && object.contains_key("headers"),
            "{id}: {response}"
        );
    }

    // The write ran and the read that depends on it sees it.
    assert_eq!(responses["1"]["status"], 200);
    assert!(responses["1"].get("body").is_none(), "{}", responses["1"]);
    assert_eq!(responses["2"]["status"], 200);
    assert_eq!(responses["2"]["body"]["availability"], "Busy");
    assert_eq!(responses["2"]["body"]["activity"], "InACall");
    assert!(
        responses["2"]["headers"]["Content-Type"]
            .as_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "InACall"]);

    // Errors carry Graph's envelope in their body.
    assert_eq!(responses["3"]["status"], 404);
    assert_eq!(responses["3"]["body"]["error"]["code"], "NotFound");
    assert!(responses["3"]["body"]["error"]["innerError"]["request-id"].is_string());
    assert_eq!(responses["4"]["status"], 400);
    assert_eq!(responses["5"]["status"], 403);
    assert_eq!(
        responses["5"]["body"]["error"]["code"],
        "Authorization_RequestDenied"
    );
    // A failed dependency: not run, 424.
    assert_eq!(responses["6"]["status"], 424);
    assert_eq!(responses["6"]["body"]["error"]["code"], "FailedDependency");
    // A successful dependency: run, with its own headers.
    assert_eq!(responses["7"]["status"], 200);
    assert_eq!(responses["7"]["body"]["displayName"], "Adele Vance");
    assert_eq!(responses["7"]["headers"]["client-request-id"], "sub-7");
    // No nested batches; unknown routes are 404 as outside a batch.
    assert_eq!(responses["8"]["status"], 400);
    assert_eq!(responses["9"]["status"], 404);
}
}

both! {
#[tokio::test]
async fn batches_are_limited_to_20_requests_with_unique_ids() {
    let server = TestServer::start().await;
    let token = server.app();
    let requests = |n: usize| {
        (0..n)
            .map(|i| get(&i.to_string(), &format!("/users/{ADELE}/presence")))
            .collect::<Vec<_>>()
    };
    let twenty = batch(
        &server,
        "/v1.0/$batch",
        &token,
        json!({"requests": requests(20)}),
    )
    .await;
    let responses = by_id(&twenty);
    assert_eq!(responses.len(), 20);
    assert!(responses.values().all(|r| r["status"] == 200));

    let message = batch(
        &server,
        "/v1.0/$batch",
        &token,
        json!({"requests": requests(21)}),
    )
    .await
    .assert_error(400, "BadRequest");
    assert!(message.contains("20"), "{message}");

    let duplicate = json!({"requests": [get("a", "/me/presence"), get("a", "/me/presence")]});
    let message = batch(&server, "/v1.0/$batch", &token, duplicate)
        .await
        .assert_error(400, "BadRequest");
    assert!(message.contains("'a'"), "{message}");

    for bad in [
        json!({}),
        json!({"requests": []}),
        json!({"requests": "no"}),
        json!({"requests": [get("1", "/me/presence"), 5]}),
        json!({"requests": [{"id": "1", "method": "GET", "url": "/me", "dependsOn": ["2"]}]}),
        json!({"requests": [
            {"id": "1", "method": "GET", "url": "/me", "dependsOn": ["2"]},
            {"id": "2", "method": "GET", "url": "/me", "dependsOn": ["1"]}
        ]}),
    ] {
        batch(&server, "/v1.0/$batch", &token, bad)
            .await
            .assert_error(400, "BadRequest");
    }
    server
        .post_raw(
            "/v1.0/$batch",
            &token,
            Some("application/json"),
            b"{\"requests\": [",
        )
        .await
        .assert_error(400, "BadRequest");
    // The batch needs a token.
    server
        .post_raw(
            "/v1.0/$batch",
            "not-a-token",
            Some("application/json"),
            b"{}",
        )
        .await
        .assert_error(401, "InvalidAuthenticationToken");
    // POST only.
    let answer = server.get("/v1.0/$batch", &token).await;
    answer.assert_error(405, "MethodNotAllowed");
}
}

both! {
#[tokio::test]
async fn beta_and_percent_encoded_batches_are_relative_to_their_version() {
    let server = TestServer::start().await;
    let token = server.token(TENANT, None, "Presence.ReadWrite.All User.Read.All");
    for path in ["/beta/$batch", "/beta/%24batch", "/v1.0/%24batch"] {
        let version = if path.starts_with("/beta") {
            "beta"
        } else {
            "v1.0"
        };
        let other = if version == "beta" { "v1.0" } else { "beta" };
        let body = json!({"requests": [
            get("same", &format!("/{version}/users/{ADELE}/presence")),
            get("other", &format!("/{other}/users/{ADELE}/presence")),
            {"id": "count", "method": "GET", "url": "/users/$count",
             "headers": {"ConsistencyLevel": "eventual"}},
        ]});
        let responses = by_id(&batch(&server, path, &token, body).await);
        assert_eq!(responses["same"]["status"], 200, "{path}");
        assert_eq!(
            responses["same"]["body"]["@odata.context"],
            server.url(&format!(
                "/{version}/$metadata#users('{ADELE}')/presence/$entity"
            ))
        );
        assert_eq!(responses["other"]["status"], 400, "{path}");
        // A body that is not JSON comes base64-encoded.
        assert_eq!(responses["count"]["status"], 200, "{path}");
        assert_eq!(
            responses["count"]["body"], "Mw==",
            "{path}: base64 of \"3\""
        );
    }
}
}

both! {
#[tokio::test]
async fn each_sub_request_is_throttled_on_its_own_with_its_own_retry_after() {
    let server = TestServer::start_with(&["--clock", "manual", "--throttle", "3/60s"]).await;
    let token = server.app();
    let body = json!({"requests": (1..=5)
        .map(|i| get(&i.to_string(), &format!("/users/{ADELE}/presence")))
        .collect::<Vec<_>>()});
    let responses = by_id(&batch(&server, "/v1.0/$batch", &token, body).await);
    let statuses: Vec<u64> = (1..=5)
        .map(|i| responses[&i.to_string()]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    for id in ["4", "5"] {
        let response = &responses[id];
        let wait: u64 = response["headers"]["Retry-After"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{response}");
        assert_eq!(response["body"]["error"]["code"], "TooManyRequests");
    }
    // The batch itself was not counted: a batch of one is throttled too,
    // not refused as a whole.
    let again = batch(
        &server,
        "/v1.0/$batch",
        &token,
        json!({"requests": [get("1", &format!("/users/{ADELE}/presence"))]}),
    )
    .await;
    assert_eq!(by_id(&again)["1"]["status"], 429);
}
}

both! {
#[tokio::test]
async fn the_live_stream_is_refused_inside_a_batch_rather_than_held_open() {
    let server = TestServer::start_with_config(
        "[notifications]\nlive_stream = true\n",
        &["--clock", "manual", "--throttle", "off"],
    )
    .await;
    let token = server.adele();
    let body = json!({"requests": [
        get("stream", &format!("/presences/stream?ids={MEGAN}")),
        get("read", &format!("/users/{MEGAN}/presence")),
    ]});
    let responses = by_id(&batch(&server, "/v1.0/$batch", &token, body).await);
    assert_eq!(responses["stream"]["status"], 400);
    assert_eq!(responses["read"]["status"], 200);
}
}
