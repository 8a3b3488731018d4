//! Replays every request the official Python and JS clients sent
//! (`tests/fixtures/captures/*.jsonl`, recorded from msgraph-sdk-python and
//! @microsoft/microsoft-graph-client) and checks the answer each should get.

use serde_json::Value;

use crate::helpers::*;

fn records() -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/captures");
    ["python.jsonl", "js.jsonl"]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// The status presenced answers a captured call with, given the records
/// before it in the same file.
fn expected(label: &str, python_durations: bool) -> u16 {
    let (client, call) = label.split_once(':').unwrap();
    if client == "js-plain-http" {
        return 401; // the JS client sends no token over plain http
    }
    let python_duration = |ok: u16| if python_durations { ok } else { 400 };
    match call {
        "setUserPreferredPresence_8h"
        | "setUserPreferredPresence_90m"
        | "setUserPreferredPresence_1d"
        | "setUserPreferredPresence_1d2h30m15s" => python_duration(200),
        "setPresence" if client.starts_with("python") => python_duration(200),
        "setPresence_5m" => python_duration(200),
        // Python's setPresence only succeeded with python durations on.
        "clearPresence" if client.starts_with("python") => {
            if python_durations {
                200
            } else {
                404
            }
        }
        "setStatusMessage_no_expiry_html" => 400,
        "getPresence_rich_user" | "getPresence_upn" => 400,
        // The captured subscriptions name made-up ids ('a', 'b') or a webhook
        // host that does not exist (the handshake fails): Graph-shaped 400s.
        c if c.starts_with("createSubscription") => 400,
        // Made-up user ids such as "error-404" and "probe-204" are not GUIDs.
        c if c.starts_with("error_") || c.starts_with("probe_") => 400,
        _ => 200,
    }
}

async fn replay(python_durations: bool) {
    let mut args = vec!["--clock", "manual", "--throttle", "off"];
    if python_durations {
        args.push("--accept-python-durations");
    }
    let server = TestServer::start_with(&args).await;
    let token = server.adele();
    let mut count = 0;
    for record in records() {
        let label = record["label"].as_str().unwrap();
        let method =
            reqwest::Method::from_bytes(record["method"].as_str().unwrap().as_bytes()).unwrap();
        let mut request = server
            .client
            .request(method, server.url(record["target"].as_str().unwrap()));
        let mut client_request_id = None;
        for header in record["headers"].as_array().unwrap() {
            let (name, value) = (header[0].as_str().unwrap(), header[1].as_str().unwrap());
            match name.to_ascii_lowercase().as_str() {
                "host" | "content-length" | "connection" | "accept-encoding" => {}
                "authorization" => request = request.header(name, format!("Bearer {token}")),
                lower => {
                    if lower == "client-request-id" {
                        client_request_id = Some(value.to_string());
                    }
                    request = request.header(name, value);
                }
            }
        }
        let body = record["body_text"].as_str().unwrap().to_string();
        let answer = Answer::read(request.body(body).send().await.unwrap()).await;
        let want = expected(label, python_durations);
        assert_eq!(answer.status, want, "{label}: {}", answer.text);
        if want >= 400 {
            answer.assert_error(want, answer.json()["error"]["code"].as_str().unwrap());
        } else if record["method"] == "GET" || label.contains("getPresencesByUserId") {
            assert!(
                answer
                    .header("content-type")
                    .unwrap()
                    .starts_with("application/json"),
                "{label}"
            );
            answer.json();
        } else {
            answer.assert_done();
        }
        if let Some(id) = client_request_id {
            assert_eq!(
                answer.header("client-request-id"),
                Some(id.as_str()),
                "{label}"
            );
        }
        count += 1;
    }
    assert_eq!(count, 112, "every captured record is replayed");
}

both! {
#[tokio::test]
async fn every_captured_sdk_request_gets_its_answer() {
    replay(false).await;
}
}

both! {
#[tokio::test]
async fn every_captured_sdk_request_gets_its_answer_with_python_durations_accepted() {
    replay(true).await;
}
}

both! {
#[tokio::test]
async fn the_select_capture_returns_only_availability_and_activity() {
    let server = TestServer::start().await;
    let answer = server
        .get(
            &format!("/v1.0/users/{ADELE}/presence?$select=availability,activity"),
            &server.adele(),
        )
        .await;
    let json = answer.json();
    assert_eq!(json.as_object().unwrap().len(), 3, "{json}");
}
}
