//! The presence board at `/`: its embedded files and their headers, and its
//! built-in client of the identity provider, whose one redirect URI is the
//! server's own origin. (The page itself runs in Chromium in
//! `browser::the_board_signs_in_shows_live_badges_and_sets_presence`.)

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// The board's client id, the same in every tenant.
pub const BOARD_CLIENT: &str = "5e1fb0a4-d000-4000-8000-000000000001";
const VERIFIER: &str = "board-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

async fn fetch(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = server.client.get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Answer::read(request.send().await.unwrap()).await
}

fn assert_graph_404(answer: &Answer) {
    assert_eq!(answer.status, 404, "{}", answer.text);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        answer.headers
    );
    assert_eq!(
        answer.json()["error"]["code"],
        "NotFound",
        "{}",
        answer.text
    );
    assert!(answer.json()["error"]["innerError"]["request-id"].is_string());
}

#[tokio::test]
async fn browsers_get_the_board_and_its_files_with_strict_headers() {
    let server = TestServer::start().await;
    let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let page = fetch(&server, "/", &[("accept", html)]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text.contains("<title>Presence board"), "{}", page.text);
    assert_eq!(page.header("vary"), Some("Accept"));
    let csp = page.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp} lacks {directive}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    // Nothing is loaded from elsewhere: every src and href is the board's own.
    let foreign: Vec<&str> = page
        .text
        .split(['"', '\''])
        .filter(|s| s.contains("://"))
        .collect();
    assert!(
        foreign.is_empty(),
        "the page names other origins: {foreign:?}"
    );

    // The files, with their types; an ETag answers a revalidation with 304.
    for (file, content_type, marker) in [
        (
            "board.js",
            "text/javascript; charset=utf-8",
            "BOARD_CLIENT_ID",
        ),
        ("board.css", "text/css; charset=utf-8", ".card"),
        ("icon.svg", "image/svg+xml", "<svg"),
    ] {
        let path = format!("/board/{file}");
        let answer = fetch(&server, &path, &[]).await;
        assert_eq!(answer.status, 200, "{file}");
        assert_eq!(answer.header("content-type"), Some(content_type), "{file}");
        assert!(answer.text.contains(marker), "{file}");
        assert!(answer.header("content-security-policy").is_some(), "{file}");
        let etag = answer.header("etag").unwrap().to_string();
        let again = fetch(&server, &path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, 304, "{file}");
        assert!(again.text.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        let stale = fetch(&server, &path, &[("if-none-match", "\"other\"")]).await;
        assert_eq!(stale.status, 200, "{file}");
    }
    // The page's client id is the one the identity provider knows.
    let script = fetch(&server, "/board/board.js", &[]).await;
    assert!(script.text.contains(BOARD_CLIENT));
}

#[tokio::test]
async fn api_clients_and_unknown_files_get_graphs_404() {
    let server = TestServer::start().await;
    // API clients keep Graph's 404 at the root.
    for accept in [None, Some("application/json"), Some("*/*")] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        assert_graph_404(&fetch(&server, "/", &headers).await);
    }
    for path in [
        "/board/nope.js",
        "/board/",
        "/board/..%2Fboard.js",
        "/board/index.html/x",
        "/board.js",
    ] {
        let answer = fetch(&server, path, &[("accept", "text/html")]).await;
        assert_graph_404(&answer);
    }
    // Only GET (and HEAD) are served.
    let post = Answer::read(
        server
            .client
            .post(server.url("/board/board.js"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, 405, "{}", post.text);
    assert!(post.json()["error"]["code"].is_string(), "{}", post.text);
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn authorize_form(redirect: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", BOARD_CLIENT.to_string()),
        ("response_type", "code".into()),
        ("response_mode", "fragment".into()),
        ("redirect_uri", redirect.to_string()),
        (
            "scope",
            "openid profile offline_access User.ReadBasic.All Presence.Read.All Presence.ReadWrite"
                .into(),
        ),
        ("state", "s1".into()),
        (
            "code_challenge",
            URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes())),
        ),
        ("code_challenge_method", "S256".into()),
    ]
}

/// The sign-in page's answer for the board client sending codes to `redirect`.
async fn authorize_page(server: &TestServer, tenant: &str, redirect: &str) -> Answer {
    let query = serde_urlencoded::to_string(authorize_form(redirect)).unwrap();
    fetch(
        server,
        &format!("/{tenant}/oauth2/v2.0/authorize?{query}"),
        &[],
    )
    .await
}

#[tokio::test]
async fn the_board_client_signs_in_back_to_the_servers_own_origin_only() {
    let server = TestServer::start().await;
    let own = format!("{}/", server.base);

    // The sign-in page opens for the server's own origin, in every tenant
    // and through `organizations`, without registering anything.
    for tenant in [TENANT, OTHER_TENANT, "organizations"] {
        let page = authorize_page(&server, tenant, &own).await;
        assert_eq!(page.status, 200, "{tenant}: {}", page.text);
        assert!(page.text.contains("name=\"password\""));
    }
    // Any other redirect URI is refused on a page, nothing is redirected.
    let port = server.base.rsplit(':').next().unwrap();
    for other in [
        "http://localhost:3000/".to_string(),
        format!("{}/callback", server.base),
        format!("http://localhost:{port}/"),
        server.base.clone(),
        "https://evil.example/".to_string(),
    ] {
        let page = authorize_page(&server, TENANT, &other).await;
        assert_eq!(page.status, 400, "{other}: {}", page.text);
        assert!(page.text.contains("AADSTS50011"), "{other}: {}", page.text);
        assert!(page.header("location").is_none());
    }

    // Signing in through `organizations`: the user's tenant is found, the
    // code comes back in the fragment of the board's URL.
    let mut form = authorize_form(&own);
    form.push(("username", "adele.vance@contoso.com".into()));
    form.push(("password", ADELE_PASSWORD.into()));
    let answer = no_redirects()
        .post(server.url("/organizations/oauth2/v2.0/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 302);
    let location = answer.headers()["location"].to_str().unwrap().to_string();
    let (base, fragment) = location.split_once('#').unwrap();
    assert_eq!(base, own);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(fragment).unwrap();
    let code = pairs.iter().find(|(k, _)| k == "code").unwrap().1.clone();
    assert!(pairs.contains(&("state".into(), "s1".into())));

    // The code, with the verifier, gives tokens with the board's scopes.
    let tokens = Answer::read(
        server
            .client
            .post(server.url("/organizations/oauth2/v2.0/token"))
            .header("origin", &server.base)
            .form(&[
                ("client_id", BOARD_CLIENT),
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &own),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    let access = tokens.json()["access_token"].as_str().unwrap().to_string();
    let claims = token_claims(&access);
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["oid"], ADELE);
    assert_eq!(claims["appid"], BOARD_CLIENT, "{claims}");
    for scope in [
        "User.ReadBasic.All",
        "Presence.Read.All",
        "Presence.ReadWrite",
    ] {
        assert!(
            claims["scp"]
                .as_str()
                .unwrap()
                .split(' ')
                .any(|s| s == scope),
            "{claims}"
        );
    }
    let refresh = tokens.json()["refresh_token"].as_str().unwrap().to_string();

    // With it the board reads the people and everyone's presence, and sets
    // its user's own (which shows while she has a session: her softphone's).
    let session = server
        .post(
            &format!("/v1.0/users/{ADELE}/presence/setPresence"),
            &server.app(),
            serde_json::json!({"sessionId": APP, "availability": "Available", "activity": "Available", "expirationDuration": "PT1H"}),
        )
        .await;
    assert_eq!(session.status, 200, "{}", session.text);
    let users = server.get("/v1.0/users", &access).await;
    assert_eq!(users.status, 200, "{}", users.text);
    assert_eq!(users.json()["value"].as_array().unwrap().len(), 3);
    let set = server
        .post(
            "/v1.0/me/presence/setUserPreferredPresence",
            &access,
            serde_json::json!({"availability": "Busy", "activity": "Busy", "expirationDuration": "PT1H"}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "Busy"]);

    // The refresh token works at the tenant's own endpoint.
    let refreshed = Answer::read(
        server
            .client
            .post(server.url(&format!("/{TENANT}/oauth2/v2.0/token")))
            .header("origin", &server.base)
            .form(&[
                ("client_id", BOARD_CLIENT),
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);

    // Signing out goes back to the board; elsewhere it does not.
    let logout = |uri: String| {
        let url = server.url(&format!(
            "/{TENANT}/oauth2/v2.0/logout?{}",
            serde_urlencoded::to_string([
                ("client_id", BOARD_CLIENT),
                ("post_logout_redirect_uri", &uri)
            ])
            .unwrap()
        ));
        async move { no_redirects().get(url).send().await.unwrap() }
    };
    let back = logout(own.clone()).await;
    assert_eq!(back.status(), 302);
    assert_eq!(back.headers()["location"], own.as_str());
    let away = logout("https://evil.example/".into()).await;
    assert_eq!(away.status(), 400);
}

#[tokio::test]
async fn with_a_public_url_the_board_client_answers_only_there() {
    let server = TestServer::start_with(&[
        "--clock",
        "manual",
        "--throttle",
        "off",
        "--public-url",
        "https://presence.example",
    ])
    .await;
    let page = authorize_page(&server, TENANT, "https://presence.example/").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let own = format!("{}/", server.base);
    let refused = authorize_page(&server, TENANT, &own).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(refused.text.contains("AADSTS50011"));
}

#[tokio::test]
async fn a_host_that_is_not_an_authority_gives_the_board_client_no_redirect() {
    let server = TestServer::start().await;
    let query = serde_urlencoded::to_string(authorize_form("http://a b/")).unwrap();
    let answer = Answer::read(
        server
            .client
            .get(server.url(&format!("/{TENANT}/oauth2/v2.0/authorize?{query}")))
            .header("host", "a b")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(answer.header("location").is_none());
}
