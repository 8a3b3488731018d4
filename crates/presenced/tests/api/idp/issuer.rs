//! Issuer and discovery under the URL the client used.

use presenced_identity::{DevIssuerKey, Subject, TokenRequest};
use serde_json::Value;

use crate::helpers::*;

async fn discovery(server: &TestServer, tenant: &str, host: Option<&str>) -> Answer {
    let mut request = server
        .client
        .get(server.url(&format!("/{tenant}/v2.0/.well-known/openid-configuration")));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    Answer::read(request.send().await.unwrap()).await
}

async fn password_token(server: &TestServer, host: Option<&str>) -> Value {
    let mut request = server
        .client
        .post(server.url(&format!("/{TENANT}/oauth2/v2.0/token")))
        .form(&[
            ("grant_type", "password"),
            ("client_id", APP),
            ("client_secret", APP_SECRET),
            ("username", "adele.vance@contoso.com"),
            ("password", ADELE_PASSWORD),
            ("scope", "openid profile Presence.Read"),
        ]);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let answer = Answer::read(request.send().await.unwrap()).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()
}

both! {
#[tokio::test]
async fn discovery_and_tokens_name_the_host_the_client_used() {
    let server = TestServer::start().await;
    let config = discovery(&server, TENANT, Some("idp.example.test:8443")).await;
    assert_eq!(config.status, 200, "{}", config.text);
    let config = config.json();
    // The request came over plain HTTP: the scheme is the connection's.
    let base = "http://idp.example.test:8443";
    assert_eq!(config["issuer"], format!("{base}/{TENANT}/v2.0"));
    for (field, path) in [
        ("token_endpoint", "oauth2/v2.0/token"),
        ("authorization_endpoint", "oauth2/v2.0/authorize"),
        ("jwks_uri", "discovery/v2.0/keys"),
        ("end_session_endpoint", "oauth2/v2.0/logout"),
    ] {
        assert_eq!(config[field], format!("{base}/{TENANT}/{path}"), "{field}");
    }

    // Tokens carry the issuer of the host they were asked at, and the API accepts them.
    let tokens = password_token(&server, Some("idp.example.test:8443")).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(token_claims(access)["iss"], format!("{base}/{TENANT}/v2.0"));
    assert_eq!(
        token_claims(tokens["id_token"].as_str().unwrap())["iss"],
        format!("{base}/{TENANT}/v2.0")
    );
    let read = server
        .get(&format!("/v1.0/users/{ADELE}/presence"), access)
        .await;
    assert_eq!(read.status, 200, "{}", read.text);

    // Without a Host override: the loopback address the client used.
    let tokens = password_token(&server, None).await;
    assert_eq!(
        token_claims(tokens["access_token"].as_str().unwrap())["iss"],
        server.url(&format!("/{TENANT}/v2.0"))
    );
}
}

both! {
#[tokio::test]
async fn a_host_that_is_not_an_authority_is_refused_not_echoed() {
    let server = TestServer::start().await;
    for host in [
        "evil.example\",\"x\":\"y",
        "a b",
        "user@host",
        "host:99999999",
        "host/path",
    ] {
        let answer = discovery(&server, TENANT, Some(host)).await;
        assert_eq!(answer.status, 400, "{host}: {}", answer.text);
        assert_eq!(answer.json()["error"], "invalid_request", "{host}");
        assert!(!answer.text.contains("evil"), "{}", answer.text);
    }
}
}

both! {
#[tokio::test]
async fn a_public_url_wins_over_the_request_host() {
    let server = TestServer::start_with(&[
        "--clock",
        "manual",
        "--throttle",
        "off",
        "--public-url",
        "https://Presence.Example.com/",
    ])
    .await;
    let config = discovery(&server, TENANT, Some("internal:8080"))
        .await
        .json();
    let base = "https://presence.example.com";
    assert_eq!(config["issuer"], format!("{base}/{TENANT}/v2.0"));
    assert_eq!(
        config["token_endpoint"],
        format!("{base}/{TENANT}/oauth2/v2.0/token")
    );
    let tokens = password_token(&server, None).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(token_claims(access)["iss"], format!("{base}/{TENANT}/v2.0"));
    let read = server
        .get(&format!("/v1.0/users/{ADELE}/presence"), access)
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
}
}

both! {
#[tokio::test]
async fn the_configuration_files_public_url_is_checked_at_start() {
    let server = TestServer::start_with_config(
        "[server]\npublic_url = \"https://presence.example.com:9443\"\n",
        &["--clock", "manual", "--throttle", "off"],
    )
    .await;
    let config = discovery(&server, TENANT, None).await.json();
    assert_eq!(
        config["issuer"],
        format!("https://presence.example.com:9443/{TENANT}/v2.0")
    );
    drop(server);

    let data_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            "https://h/path",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("public URL"), "{stderr}");
}
}

both! {
#[tokio::test]
async fn dev_key_tokens_under_any_origin_must_agree_with_their_tenant() {
    let server = TestServer::start().await;
    let key = DevIssuerKey::load_or_create(server.data_dir.path()).unwrap();
    let request = TokenRequest {
        tenant: guid(TENANT),
        app: guid(APP),
        subject: Subject::Application {
            roles: vec!["Presence.Read.All".into()],
        },
        lifetime: jiff::SignedDuration::from_hours(1),
    };
    let path = format!("/v1.0/users/{ADELE}/presence");
    let now = jiff::Timestamp::now();
    // presenced token's issuer and any plain origin: accepted.
    for iss in [
        format!("https://login.presenced.local/{TENANT}/v2.0"),
        format!("https://127.0.0.1:1/{TENANT}/v2.0"),
        format!("http://[::1]:8080/{TENANT}/v2.0"),
    ] {
        let token = key.mint_issued_by(&request, &iss, now).unwrap();
        assert_eq!(server.get(&path, &token).await.status, 200, "{iss}");
    }
    // Another tenant in the issuer, or an issuer that is not origin + tenant: refused.
    for iss in [
        format!("https://127.0.0.1:1/{OTHER_TENANT}/v2.0"),
        format!("https://127.0.0.1:1/x/{TENANT}/v2.0"),
        format!("https://a@b/{TENANT}/v2.0"),
        format!("https://127.0.0.1:1/{TENANT}/v1.0"),
    ] {
        let token = key.mint_issued_by(&request, &iss, now).unwrap();
        server
            .get(&path, &token)
            .await
            .assert_error(401, "InvalidAuthenticationToken");
    }
}
}

both! {
#[tokio::test]
async fn msal_instance_discovery_and_user_realm_let_msal_go_on() {
    let server = TestServer::start().await;
    let host = server.base.trim_start_matches("http://").to_string();
    let answer = Answer::read(
        server
            .client
            .get(server.url(&format!(
                "/common/discovery/instance?api-version=1.1&authorization_endpoint={}/{TENANT}/oauth2/v2.0/authorize",
                server.base
            )))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let json = answer.json();
    assert_eq!(
        json["tenant_discovery_endpoint"],
        server.url("/common/v2.0/.well-known/openid-configuration")
    );
    assert_eq!(json["metadata"][0]["aliases"][0], host.as_str());

    let realm = Answer::read(
        server
            .client
            .get(server.url("/common/userrealm/adele.vance@contoso.com?api-version=1.0"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(realm.status, 200, "{}", realm.text);
    assert_eq!(realm.json()["account_type"], "Managed");
    assert_eq!(realm.json()["domain_name"], "contoso.com");

    let common = discovery(&server, "organizations", None).await;
    assert_eq!(common.status, 200, "{}", common.text);
    assert_eq!(common.json()["issuer"], server.url("/{tenantid}/v2.0"));
    assert_eq!(
        common.json()["token_endpoint"],
        server.url("/organizations/oauth2/v2.0/token")
    );
}
}
