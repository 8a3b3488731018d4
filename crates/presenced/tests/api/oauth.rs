//! The built-in identity provider: Entra-shaped discovery, keys and token
//! endpoint, and its tokens accepted by the API.

use serde_json::Value;

use crate::helpers::*;

async fn token_call(server: &TestServer, tenant: &str, form: &[(&str, &str)]) -> Answer {
    let url = server.url(&format!("/{tenant}/oauth2/v2.0/token"));
    Answer::read(server.client.post(url).form(form).send().await.unwrap()).await
}

fn assert_oauth_error(answer: &Answer, status: u16, error: &str, code: u64) {
    assert_eq!(answer.status, status, "{}", answer.text);
    let json = answer.json();
    assert_eq!(json["error"], error, "{}", answer.text);
    assert_eq!(json["error_codes"][0], code, "{}", answer.text);
    assert!(
        json["error_description"]
            .as_str()
            .unwrap()
            .starts_with(&format!("AADSTS{code}:"))
    );
}

both! {
#[tokio::test]
async fn discovery_names_the_endpoints_and_the_keys_verify_issued_tokens() {
    let server = TestServer::start().await;
    let config = Answer::read(
        server
            .client
            .get(server.url(&format!("/{TENANT}/v2.0/.well-known/openid-configuration")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(config.status, 200, "{}", config.text);
    let config = config.json();
    assert_eq!(
        config["token_endpoint"],
        server.url(&format!("/{TENANT}/oauth2/v2.0/token"))
    );
    assert_eq!(config["issuer"], server.url(&format!("/{TENANT}/v2.0")));
    let keys = Answer::read(
        server
            .client
            .get(config["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap(),
    )
    .await
    .json();
    let token = server.app();
    let header: Value = {
        use base64::Engine;
        let part = token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    assert!(
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"] && k["kty"] == "RSA")
    );
    let unknown = Answer::read(
        server
            .client
            .get(server.url(&format!("/{NOBODY}/v2.0/.well-known/openid-configuration")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_oauth_error(&unknown, 400, "invalid_tenant", 90002);
}
}

both! {
#[tokio::test]
async fn client_credentials_give_an_app_token_with_the_granted_roles() {
    let server = TestServer::start().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", APP),
        ("client_secret", APP_SECRET),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    let answer = token_call(&server, TENANT, &form).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.header("cache-control"), Some("no-store, no-cache"));
    let json = answer.json();
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["expires_in"].as_i64().unwrap() > 3000);
    let token = json["access_token"].as_str().unwrap();
    let claims = token_claims(token);
    assert_eq!(
        claims["roles"],
        serde_json::json!(["Presence.Read.All", "Presence.ReadWrite.All"])
    );
    assert_eq!(
        (
            claims["tid"].as_str(),
            claims["appid"].as_str(),
            claims["idtyp"].as_str()
        ),
        (Some(TENANT), Some(APP), Some("app"))
    );
    assert_eq!(
        server
            .get(&format!("/v1.0/users/{ADELE}/presence"), token)
            .await
            .status,
        200
    );

    // client_secret_basic works too.
    use base64::Engine;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{OTHER_APP}:wallboard-secret"));
    let response = server
        .client
        .post(server.url(&format!("/{TENANT}/oauth2/v2.0/token")))
        .header("authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "00000003-0000-0000-c000-000000000000/.default"),
        ])
        .send()
        .await
        .unwrap();
    let answer = Answer::read(response).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let token = answer.json()["access_token"].as_str().unwrap().to_string();
    server
        .post(
            &format!("/v1.0/users/{ADELE}/presence/setPresence"),
            &token,
            serde_json::json!({"sessionId": "22553876-f5ab-4529-bffb-cfe50aa89f87", "availability": "Busy", "activity": "InACall"}),
        )
        .await
        .assert_error(403, "Forbidden");
}
}

both! {
#[tokio::test]
async fn the_token_endpoint_refuses_bad_clients_in_oauth2_format_without_detail() {
    let server = TestServer::start().await;
    let form = |id: &'static str, secret: &'static str, scope: &'static str| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", scope),
        ]
    };
    let default = "https://graph.microsoft.com/.default";
    assert_oauth_error(
        &token_call(&server, TENANT, &form(APP, "wrong", default)).await,
        401,
        "invalid_client",
        7000215,
    );
    assert_oauth_error(
        &token_call(&server, TENANT, &form(APP, "", default)).await,
        401,
        "invalid_client",
        7000215,
    );
    assert_oauth_error(
        &token_call(&server, TENANT, &form(NOBODY, APP_SECRET, default)).await,
        400,
        "unauthorized_client",
        700016,
    );
    assert_oauth_error(
        &token_call(&server, TENANT, &form("not-a-guid", APP_SECRET, default)).await,
        400,
        "unauthorized_client",
        700016,
    );
    assert_oauth_error(
        &token_call(&server, NOBODY, &form(APP, APP_SECRET, default)).await,
        400,
        "invalid_tenant",
        90002,
    );
    assert_oauth_error(
        &token_call(&server, "contoso", &form(APP, APP_SECRET, default)).await,
        400,
        "invalid_tenant",
        90002,
    );
    assert_oauth_error(
        &token_call(&server, TENANT, &form(APP, APP_SECRET, "Presence.Read.All")).await,
        400,
        "invalid_scope",
        1002012,
    );
    let answer = token_call(
        &server,
        TENANT,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", APP),
            ("scope", default),
        ],
    )
    .await;
    assert_oauth_error(&answer, 400, "unsupported_grant_type", 70003);
    let answer = token_call(&server, TENANT, &[("client_id", APP)]).await;
    assert_oauth_error(&answer, 400, "invalid_request", 900144);
    let garbage = Answer::read(
        server
            .client
            .post(server.url(&format!("/{TENANT}/oauth2/v2.0/token")))
            .body(vec![0xff, 0xfe, b'=', b'&'])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_oauth_error(&garbage, 400, "invalid_request", 900144);
}
}

both! {
#[tokio::test]
async fn a_test_user_signs_in_with_a_password_for_delegated_scopes() {
    let server = TestServer::start().await;
    let form = |tenant_scope: &'static str, password: &'static str| {
        vec![
            ("grant_type", "password"),
            ("client_id", APP),
            ("username", "Adele.Vance@contoso.com"),
            ("password", password),
            ("scope", tenant_scope),
            ("client_info", "1"),
        ]
    };
    let scope = "openid profile offline_access https://graph.microsoft.com/Presence.ReadWrite https://graph.microsoft.com/Presence.Read";
    for tenant in [TENANT, "organizations"] {
        let answer = token_call(&server, tenant, &form(scope, ADELE_PASSWORD)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let json = answer.json();
        assert_eq!(json["scope"], "Presence.ReadWrite Presence.Read");
        let token = json["access_token"].as_str().unwrap();
        let access = token_claims(token);
        assert_eq!(
            (access["oid"].as_str(), access["scp"].as_str()),
            (Some(ADELE), Some("Presence.ReadWrite Presence.Read"))
        );
        let id = token_claims(json["id_token"].as_str().unwrap());
        assert_eq!(
            (id["oid"].as_str(), id["aud"].as_str(), id["name"].as_str()),
            (Some(ADELE), Some(APP), Some("Adele Vance"))
        );
        let set =
            serde_json::json!({"sessionId": APP, "availability": "Busy", "activity": "InACall"});
        server
            .post("/v1.0/me/presence/setPresence", token, set)
            .await
            .assert_done();
    }
    assert_oauth_error(
        &token_call(&server, TENANT, &form(scope, "wrong")).await,
        400,
        "invalid_grant",
        50126,
    );
    let unknown = [
        ("grant_type", "password"),
        ("client_id", APP),
        ("username", "nobody@contoso.com"),
        ("password", ADELE_PASSWORD),
        ("scope", scope),
    ];
    assert_oauth_error(
        &token_call(&server, TENANT, &unknown).await,
        400,
        "invalid_grant",
        50126,
    );
    let not_allowed = token_call(
        &server,
        TENANT,
        &form("https://graph.microsoft.com/User.Read.All", ADELE_PASSWORD),
    )
    .await;
    assert_oauth_error(&not_allowed, 400, "invalid_grant", 65001);
}
}
