//! The authorization-code flow with PKCE, refresh tokens and logout, driven over HTTP as a browser
//! and MSAL do.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// A public client (no secret) registered for the code flow.
pub const SPA: &str = "3c9d2e1f-0a4b-4c5d-9e6f-7a8b9c0d1e2f";
pub const REDIRECT: &str = "http://localhost:3000/auth";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-extra-length";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub fn directory() -> Value {
    let mut directory = directory_json();
    let apps = directory["tenants"][0]["applications"]
        .as_array_mut()
        .unwrap();
    apps.push(json!({"appId": SPA, "displayName": "Board", "scopes": ["Presence.Read", "Presence.ReadWrite"],
        "redirectUris": [REDIRECT, "https://board.example/signed-out"]}));
    apps[0]["redirectUris"] = json!(["https://softphone.example/callback"]);
    directory
}

async fn server() -> TestServer {
    TestServer::start_with_directory(&["--clock", "manual", "--throttle", "off"], &directory())
        .await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn authorize_params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = [
        ("client_id", SPA),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        (
            "scope",
            "openid profile offline_access https://graph.microsoft.com/Presence.ReadWrite",
        ),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    params.push(("code_challenge".into(), challenge(VERIFIER)));
    for (k, v) in extra {
        params.retain(|(name, _)| name != k);
        if !v.is_empty() {
            params.push((k.to_string(), v.to_string()));
        }
    }
    params
}

fn authorize_url(server: &TestServer, params: &[(String, String)]) -> String {
    server.url(&format!(
        "/{TENANT}/oauth2/v2.0/authorize?{}",
        serde_urlencoded::to_string(params).unwrap()
    ))
}

/// Posts the sign-in form; answers the redirect's `Location`.
async fn sign_in(
    server: &TestServer,
    params: &[(String, String)],
    password: &str,
) -> reqwest::Response {
    let mut form = params.to_vec();
    form.push(("username".into(), "adele.vance@contoso.com".into()));
    form.push(("password".into(), password.into()));
    no_redirects()
        .post(server.url(&format!("/{TENANT}/oauth2/v2.0/authorize")))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The parameters of a redirect's query (or fragment).
fn returned(response: &reqwest::Response) -> (String, Vec<(String, String)>) {
    assert_eq!(response.status(), 302, "{:?}", response.headers());
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let (base, query) = location
        .split_once(['?', '#'])
        .map(|(b, q)| (b.to_string(), q.to_string()))
        .unwrap();
    (base, serde_urlencoded::from_str(&query).unwrap())
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn token(server: &TestServer, form: &[(&str, &str)]) -> Answer {
    Answer::read(
        server
            .client
            .post(server.url(&format!("/{TENANT}/oauth2/v2.0/token")))
            .form(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn code(server: &TestServer) -> String {
    let response = sign_in(server, &authorize_params(&[]), ADELE_PASSWORD).await;
    let (_, pairs) = returned(&response);
    get(&pairs, "code").unwrap().to_string()
}

fn redeem_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("client_id", SPA),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ]
}

fn assert_oauth(answer: &Answer, status: u16, error: &str, code: u64) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.json()["error"], error, "{}", answer.text);
    assert_eq!(answer.json()["error_codes"][0], code, "{}", answer.text);
}

both! {
#[tokio::test]
async fn a_user_signs_in_with_the_code_flow_and_pkce() {
    let server = server().await;
    // The page: a form, no external assets, the request carried along.
    let page = no_redirects()
        .get(authorize_url(&server, &authorize_params(&[])))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\""), "{html}");
    assert!(html.contains("name=\"password\""));
    assert!(!html.contains("src=") && !html.contains("href="), "{html}");

    // A wrong password shows the page again, no redirect.
    let wrong = sign_in(&server, &authorize_params(&[]), "nope").await;
    assert_eq!(wrong.status(), 200);
    assert!(wrong.text().await.unwrap().contains("incorrect"));

    let response = sign_in(&server, &authorize_params(&[]), ADELE_PASSWORD).await;
    let (base, pairs) = returned(&response);
    assert_eq!(base, REDIRECT);
    assert_eq!(get(&pairs, "state"), Some("st-123"));
    let code = get(&pairs, "code").unwrap().to_string();
    let client_info: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(get(&pairs, "client_info").unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(client_info, json!({"uid": ADELE, "utid": TENANT}));

    let answer = token(&server, &redeem_form(&code, VERIFIER)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let tokens = answer.json();
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(token_claims(access)["scp"], "Presence.ReadWrite");
    assert_eq!(token_claims(access)["oid"], ADELE);
    let id = token_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], SPA);
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["iss"], server.url(&format!("/{TENANT}/v2.0")));
    assert_eq!(id["preferred_username"], "adele.vance@contoso.com");
    assert_eq!(id["name"], "Adele Vance");
    assert_eq!(id["ver"], "2.0");
    assert!(tokens["refresh_token"].as_str().is_some());
    assert!(tokens["client_info"].as_str().is_some());
    // The token sets presence.
    let set = server
        .post(
            &format!("/v1.0/users/{ADELE}/presence/setUserPreferredPresence"),
            access,
            json!({"availability": "Busy", "activity": "Busy"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);

    // A code is single-use.
    let again = token(&server, &redeem_form(&code, VERIFIER)).await;
    assert_oauth(&again, 400, "invalid_grant", 70008);
}
}

both! {
#[tokio::test]
async fn the_fragment_response_mode_and_errors_go_back_to_the_redirect_uri() {
    let server = server().await;
    let response = sign_in(
        &server,
        &authorize_params(&[("response_mode", "fragment")]),
        ADELE_PASSWORD,
    )
    .await;
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{REDIRECT}#code=")),
        "{location}"
    );

    // A public client without PKCE: the error goes back to the app, with its state.
    let response = no_redirects()
        .get(authorize_url(
            &server,
            &authorize_params(&[("code_challenge", ""), ("code_challenge_method", "")]),
        ))
        .send()
        .await
        .unwrap();
    let (base, pairs) = returned(&response);
    assert_eq!(base, REDIRECT);
    assert_eq!(get(&pairs, "error"), Some("invalid_request"));
    assert!(
        get(&pairs, "error_description")
            .unwrap()
            .starts_with("AADSTS9002325:")
    );
    assert_eq!(get(&pairs, "state"), Some("st-123"));
    // The plain method is refused too.
    let response = no_redirects()
        .get(authorize_url(
            &server,
            &authorize_params(&[("code_challenge_method", "plain")]),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        get(&returned(&response).1, "error"),
        Some("invalid_request")
    );

    // An unregistered redirect URI never receives anything: an error page.
    for uri in [
        "https://evil.example/auth",
        "http://localhost:3000/other",
        "",
    ] {
        let response = no_redirects()
            .get(authorize_url(
                &server,
                &authorize_params(&[("redirect_uri", uri)]),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{uri}");
        assert!(response.headers().get("location").is_none());
        assert!(response.text().await.unwrap().contains("AADSTS50011"));
    }
    // Nor does an unknown client, even at a registered URI.
    let response = no_redirects()
        .get(authorize_url(
            &server,
            &authorize_params(&[("client_id", NOBODY)]),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
}
}

both! {
#[tokio::test]
async fn pkce_and_the_redirect_uri_are_checked_at_redemption() {
    let server = server().await;
    let code1 = code(&server).await;
    let wrong = token(&server, &redeem_form(&code1, &"x".repeat(43))).await;
    assert_oauth(&wrong, 400, "invalid_grant", 501481);
    // The failed attempt used the code up.
    let right = token(&server, &redeem_form(&code1, VERIFIER)).await;
    assert_oauth(&right, 400, "invalid_grant", 70008);

    let code2 = code(&server).await;
    let mut form = redeem_form(&code2, VERIFIER);
    form.retain(|(k, _)| *k != "code_verifier");
    assert_oauth(&token(&server, &form).await, 400, "invalid_grant", 501481);

    let code3 = code(&server).await;
    let mut form = redeem_form(&code3, VERIFIER);
    form[3] = ("redirect_uri", "http://localhost:3000/other");
    assert_oauth(&token(&server, &form).await, 400, "invalid_grant", 500112);

    // Another client cannot redeem the code.
    let code4 = code(&server).await;
    let mut form = redeem_form(&code4, VERIFIER);
    form[1] = ("client_id", OTHER_APP);
    form.push(("client_secret", "wallboard-secret"));
    assert_oauth(&token(&server, &form).await, 400, "invalid_grant", 70008);
    assert_oauth(
        &token(&server, &redeem_form("made-up", VERIFIER)).await,
        400,
        "invalid_grant",
        70008,
    );
}
}

both! {
#[tokio::test]
async fn refresh_tokens_rotate_survive_a_restart_and_a_replay_revokes_them() {
    let mut server = server().await;
    let code = code(&server).await;
    let first = token(&server, &redeem_form(&code, VERIFIER)).await.json();
    let first_refresh = first["refresh_token"].as_str().unwrap().to_string();
    let refresh = |rt: &str| {
        vec![
            ("grant_type".to_string(), "refresh_token".to_string()),
            ("client_id".to_string(), SPA.to_string()),
            ("refresh_token".to_string(), rt.to_string()),
            (
                "scope".to_string(),
                "openid Presence.Read offline_access".to_string(),
            ),
        ]
    };
    let form = refresh(&first_refresh);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let second = token(&server, &form).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let second = second.json();
    assert_eq!(
        token_claims(second["access_token"].as_str().unwrap())["scp"],
        "Presence.Read"
    );
    assert!(second["id_token"].as_str().is_some());
    let second_refresh = second["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second_refresh, first_refresh);

    // Refresh tokens are kept hashed, and survive a restart.
    let file = server.identity_state("identity/refresh-tokens.json", "identity-refresh-tokens");
    assert!(file.contains("expires"), "{file}");
    assert!(!file.contains(&second_refresh));
    server.restart();
    let form = refresh(&second_refresh);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let third = token(&server, &form).await;
    assert_eq!(third.status, 200, "{}", third.text);
    let third_refresh = third.json()["refresh_token"].as_str().unwrap().to_string();

    // Replaying a used refresh token is refused and revokes its whole family.
    let form = refresh(&first_refresh);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_oauth(&token(&server, &form).await, 400, "invalid_grant", 54005);
    let form = refresh(&third_refresh);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_oauth(&token(&server, &form).await, 400, "invalid_grant", 70008);
}
}

both! {
#[tokio::test]
async fn the_password_grant_gives_a_refresh_token_for_offline_access() {
    let server = server().await;
    let answer = token(
        &server,
        &[
            ("grant_type", "password"),
            ("client_id", SPA),
            ("username", "adele.vance@contoso.com"),
            ("password", ADELE_PASSWORD),
            ("scope", "openid profile offline_access Presence.Read"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let json = answer.json();
    assert!(json["refresh_token"].as_str().is_some());
    assert!(json["id_token"].as_str().is_some());
    let refreshed = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", SPA),
            ("refresh_token", json["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    // Without offline_access, no refresh token.
    let answer = token(
        &server,
        &[
            ("grant_type", "password"),
            ("client_id", SPA),
            ("username", "adele.vance@contoso.com"),
            ("password", ADELE_PASSWORD),
            ("scope", "Presence.Read"),
        ],
    )
    .await;
    assert!(
        answer.json().get("refresh_token").is_none(),
        "{}",
        answer.text
    );
}
}

both! {
#[tokio::test]
async fn logout_goes_back_only_to_a_registered_uri() {
    let server = server().await;
    let response = no_redirects()
        .get(server.url(&format!(
            "/{TENANT}/oauth2/v2.0/logout?post_logout_redirect_uri=https://board.example/signed-out&state=s1"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "https://board.example/signed-out?state=s1"
    );
    let response = no_redirects()
        .get(server.url(&format!(
            "/{TENANT}/oauth2/v2.0/logout?post_logout_redirect_uri=https://evil.example/"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    let response = no_redirects()
        .get(server.url(&format!("/{TENANT}/oauth2/v2.0/logout")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("signed out"));
}
}

#[tokio::test]
async fn a_code_issued_by_one_node_is_redeemed_on_another_once() {
    let redis = RedisSetup::fresh();
    let args = ["--clock", "manual", "--throttle", "off"];
    let a = TestServer::start_on_redis_with_directory(redis.clone(), &args, &directory()).await;
    let b = TestServer::start_on_redis_with_directory(redis, &args, &directory()).await;
    let code = code(&a).await;
    let redeemed = token(&b, &redeem_form(&code, VERIFIER)).await;
    assert_eq!(redeemed.status, 200, "{}", redeemed.text);
    let access = redeemed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(a.get("/v1.0/me/presence", &access).await.status, 200);
    // Once, whichever node is asked again.
    let again = token(&a, &redeem_form(&code, VERIFIER)).await;
    assert_oauth(&again, 400, "invalid_grant", 70008);
}
