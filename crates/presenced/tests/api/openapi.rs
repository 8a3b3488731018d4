//! The OpenAPI document at `GET /openapi.json`: every operation it documents
//! is served, and every method it does not document is refused with 405.
//! (That every route the router serves is documented is checked in
//! `api::openapi`'s unit tests, from the router's own table.)

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{ADELE, NOBODY, TENANT, TestServer};

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
        flows["clientCredentials"]["tokenUrl"],
        "/common/oauth2/v2.0/token"
    );
    assert!(flows["authorizationCode"]["authorizationUrl"].is_string());

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
