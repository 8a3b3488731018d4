//! Cross-origin requests from browser apps: preflights answered for any
//! origin without a token, CORS headers on every Graph and identity-provider
//! answer (errors included), none on the operator's paths, and an allow-list
//! from the configuration. Headers of the HTTP layer, the same whatever
//! the store: on the embedded store only.

use reqwest::Method;

use crate::helpers::*;

const ORIGIN: &str = "https://app.example";

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn preflight(server: &TestServer, path: &str, origin: &str) -> reqwest::Response {
    server
        .client
        .request(Method::OPTIONS, server.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "GET")
        .header(
            "Access-Control-Request-Headers",
            "authorization,client-request-id,consistencylevel",
        )
        .send()
        .await
        .unwrap()
}

async fn get_from(
    server: &TestServer,
    path: &str,
    origin: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = server.client.get(server.url(path)).header("Origin", origin);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn assert_exposes_graph_headers(response: &reqwest::Response) {
    let exposed = header(response, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for name in ["request-id", "client-request-id", "retry-after", "location"] {
        assert!(
            exposed.split(',').any(|e| e.trim() == name),
            "{name} in {exposed}"
        );
    }
}

#[tokio::test]
async fn a_preflight_is_answered_for_any_origin_without_a_token() {
    // Failed authentications are limited to 2 a minute per address:
    // preflights must not count.
    let server = TestServer::start_with_config(
        "[limits]\nunauthenticated = \"2/60s\"\n",
        &["--clock", "manual", "--throttle", "off"],
    )
    .await;
    let paths = [
        format!("/v1.0/users/{ADELE}/presence"),
        "/beta/me/presence".to_string(),
        "/v1.0/$batch".to_string(),
        "/v1.0/users".to_string(),
        format!("/{TENANT}/oauth2/v2.0/token"),
        format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
        "/v1.0/presences/stream".to_string(),
    ];
    for _ in 0..3 {
        for path in &paths {
            let response = preflight(&server, path, ORIGIN).await;
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
            let headers = header(&response, "access-control-allow-headers")
                .unwrap()
                .to_ascii_lowercase();
            for name in ["authorization", "client-request-id", "consistencylevel"] {
                assert!(headers.contains(name), "{path}: {headers}");
            }
            let methods = header(&response, "access-control-allow-methods").unwrap();
            assert!(
                methods.contains("GET") && methods.contains("POST"),
                "{methods}"
            );
            assert_eq!(header(&response, "access-control-max-age"), Some("3600"));
        }
    }
    // After 21 preflights, the address is not throttled as a flooder.
    let read = get_from(
        &server,
        &format!("/v1.0/users/{ADELE}/presence"),
        ORIGIN,
        Some(&server.app()),
    )
    .await;
    assert_eq!(read.status(), 200);
}

#[tokio::test]
async fn answers_and_errors_carry_cors_headers_so_the_browser_shows_them() {
    let server = TestServer::start_with(&["--clock", "manual", "--throttle", "2/60s"]).await;
    let path = format!("/v1.0/users/{ADELE}/presence");

    // 401: no token.
    let response = get_from(&server, &path, ORIGIN, None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert_exposes_graph_headers(&response);
    assert!(header(&response, "request-id").is_some());

    // 403: a token without the permission.
    let weak = server.token(TENANT, None, "Presence.Nothing");
    let response = get_from(&server, &path, ORIGIN, Some(&weak)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));

    // 200, then 429 once the app's budget is spent (the 403 above spent one).
    let token = server.app();
    let response = get_from(&server, &path, ORIGIN, Some(&token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert_exposes_graph_headers(&response);
    let response = get_from(&server, &path, ORIGIN, Some(&token)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert!(header(&response, "retry-after").is_some());
    assert_exposes_graph_headers(&response);

    // The identity provider answers browsers too, errors included.
    let response = server
        .client
        .post(server.url(&format!("/{TENANT}/oauth2/v2.0/token")))
        .header("Origin", ORIGIN)
        .form(&[("grant_type", "client_credentials"), ("client_id", APP)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    let response = get_from(
        &server,
        &format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
        ORIGIN,
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));

    // Without an Origin (servers, SDKs) nothing changes.
    let response = server.client.get(server.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(header(&response, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn operator_paths_get_no_cors_headers() {
    let server = TestServer::start().await;
    for path in ["/admin/clock", "/healthz", "/readyz"] {
        let response = get_from(&server, path, ORIGIN, None).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            header(&response, "access-control-allow-origin").is_none(),
            "{path}"
        );
        let response = preflight(&server, path, ORIGIN).await;
        assert!(
            header(&response, "access-control-allow-origin").is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_allow_list_admits_only_its_origins() {
    let server = TestServer::start_with_config(
        "[cors]\nallowed_origins = [\"https://app.example\", \"http://127.0.0.1:5173\"]\nmax_age = \"PT10M\"\n",
        &["--clock", "manual", "--throttle", "off"],
    )
    .await;
    let path = format!("/v1.0/users/{ADELE}/presence");
    for origin in [ORIGIN, "http://127.0.0.1:5173"] {
        let response = preflight(&server, &path, origin).await;
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(origin)
        );
        assert_eq!(header(&response, "access-control-max-age"), Some("600"));
        let response = get_from(&server, &path, origin, Some(&server.app())).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(origin)
        );
        assert!(
            header(&response, "vary")
                .unwrap_or_default()
                .to_ascii_lowercase()
                .contains("origin")
        );
    }
    let response = preflight(&server, &path, "https://evil.example").await;
    assert!(header(&response, "access-control-allow-origin").is_none());
    let response = get_from(&server, &path, "https://evil.example", Some(&server.app())).await;
    assert!(header(&response, "access-control-allow-origin").is_none());
}
