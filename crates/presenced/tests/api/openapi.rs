//! The OpenAPI document at `GET /openapi.json`: every operation it documents
//! is served (and every method it does not document is refused with 405),
//! and schemathesis, driving the real server from the document alone, finds
//! no server error and no response the document does not describe. (That
//! every route the router serves is documented is checked in
//! `api::openapi`'s unit tests, from the router's own table.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{ADELE, NOBODY, TENANT, TestServer};
use crate::sdk_env;

/// `/metrics` on the API's listener too, so that it is served as documented.
const METRICS: &str = "[metrics]\non_main_listener = true\nbearer_token = \"metrics-secret\"\n";

async fn start() -> TestServer {
    TestServer::start_with_config(METRICS, &["--clock", "manual", "--throttle", "off"]).await
}

async fn document(server: &TestServer) -> Value {
    let response = server
        .client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_security_and_graphs_error_envelope() {
    let server = start().await;
    let doc = document(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
    let flows = &schemes["entra"]["flows"];
    assert_eq!(
        flows["authorizationCode"]["authorizationUrl"],
        "/common/oauth2/v2.0/authorize"
    );
    assert_eq!(flows["password"]["tokenUrl"], "/common/oauth2/v2.0/token");
    // As with Entra ID, client credentials need the tenant's own endpoint.
    let description = schemes["entra"]["description"].as_str().unwrap();
    assert!(description.contains("/{tenant}/oauth2/v2.0/token"));

    let read = &doc["paths"]["/beta/users/{id}/presence"]["get"];
    assert_eq!(read["security"][0], serde_json::json!({"bearer": []}));
    assert_eq!(
        read["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Presence"
    );
    let throttled = &read["responses"]["429"];
    assert_eq!(
        throttled["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/GraphError"
    );
    assert!(throttled["headers"]["Retry-After"].is_object());
    let presence = &doc["components"]["schemas"]["Presence"]["properties"];
    assert!(presence["@odata.context"].is_object());
    assert!(presence["sequenceNumber"].is_object());
    let availability = doc["components"]["schemas"]["Availability"]["enum"]
        .as_array()
        .unwrap();
    assert!(availability.contains(&"BeRightBack".into()));
    let token = &doc["paths"]["/{tenant}/oauth2/v2.0/token"]["post"];
    assert_eq!(
        token["responses"]["400"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/OAuthError"
    );
}

/// The path with sample values for its parameters.
fn concrete(path: &str) -> String {
    path.replace("{tenant}", TENANT)
        .replace("{id}", ADELE)
        .replace("{user}", NOBODY)
}

#[tokio::test]
async fn every_documented_operation_is_served_and_every_other_method_refused() {
    let server = start().await;
    let doc = document(&server).await;
    let paths = doc["paths"].as_object().unwrap();
    // Graph's paths under both versions, the admin calls, the identity provider.
    assert!(paths.len() > 100, "{}", paths.len());
    // A token, so that no request fails authentication (the edge would start
    // refusing an address that keeps failing it).
    let token = server.app();
    for (path, item) in paths {
        let url = server.url(&concrete(path));
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let documented = item.get(method.to_ascii_lowercase()).is_some();
            let response = server
                .client
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .bearer_auth(&token)
                // `/` serves the board to browsers only.
                .header("accept", "application/json, text/html")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let message = body["error"]["message"].as_str().unwrap_or("");
            // What the router answers for a path nothing serves.
            let unrouted = status == 404
                && (message == "The requested resource does not exist."
                    || message.starts_with("Resource not found for the path"));
            if documented {
                assert!(
                    status != 405 && !unrouted,
                    "{method} {path} is documented but answers {status} {body}"
                );
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {path} is not documented but answers {status} {body}"
                );
            }
        }
    }
}

/// Runs schemathesis against `server` with `token` (none: unauthenticated),
/// on the operations `only` selects (all when empty), bounded in time.
fn schemathesis(server: &TestServer, who: &str, token: Option<&str>, only: &[&str]) {
    let st = sdk_env::schemathesis();
    let dir = server.data_dir.path().join(format!("schemathesis-{who}"));
    std::fs::create_dir_all(&dir).unwrap();
    // Path parameters name the seeded tenant and user, so that the requests
    // reach the handlers' logic rather than all ending in 404.
    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.tenant\" = \"{TENANT}\"\n\"path.id\" = \"{ADELE}\"\n\"path.user\" = \"{ADELE}\"\n"
        ),
    )
    .unwrap();
    let output = dir.join("output.txt");
    let mut command = Command::new(&st);
    command
        .current_dir(&dir)
        .arg("--config-file")
        .arg(&config)
        .arg("--no-color")
        .arg("run")
        .arg(server.url("/openapi.json"));
    if let Some(token) = token {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    for tag in only {
        command.args(["--include-tag", tag]);
    }
    let mut child = command
        // Every check but `positive_data_acceptance`: a request the schema
        // allows may still be refused by Graph's rules, which a schema cannot
        // express (an availability and activity that do not pair, a user of
        // another tenant, a location action with an application token).
        .args(["--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        // The live stream answers with an endless event stream.
        .args(["--exclude-path", "/v1.0/presences/stream"])
        .args(["--exclude-path", "/beta/presences/stream"])
        // Destructive: removes the seeded user from the directory, after
        // which every other operation would only meet 404s.
        .args(["--exclude-operation-id", "delete_user"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "10"])
        // One worker: CPython 3.11's `ast` module is not safe to use from
        // two threads, which Hypothesis does when describing strategies.
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .args(["--seed", "1", "--no-shrink"])
        .stdout(Stdio::from(std::fs::File::create(&output).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::options().append(true).open(&output).unwrap(),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", st.display()));
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    match status {
        None => panic!("schemathesis ({who}) did not finish in 150 s:\n{text}"),
        Some(status) => assert!(
            status.success(),
            "schemathesis ({who}) found problems:\n{text}"
        ),
    }
    // It did test: many cases, on every operation but the excluded ones.
    assert!(
        text.contains("generated") && !text.contains("Tested: 0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let server = start().await;
    // An application with read-write on everyone, then Adele signed in
    // (the delegated-only operations: /me, the work location actions)...
    schemathesis(&server, "application", Some(&server.app()), &[]);
    schemathesis(&server, "delegated", Some(&server.adele()), &[]);
    // ...and without a token the calls made without one: the identity
    // provider's, health, status and the clock, the board's files, this
    // document (the Graph operations meet requests without a token in
    // `ignored_auth` above).
    schemathesis(
        &server,
        "anonymous",
        None,
        &["identity", "admin", "meta", "board"],
    );
    // The server survived all of it.
    let health = server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
