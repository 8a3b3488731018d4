//! Every refusal leaves in Graph's envelope, whichever layer produced it,
//! and a connection that carried a refused request stays usable.
//!
//! Raw TCP is used where the request is one no HTTP client would send, and
//! to see which connection a follow-up request travels on.
//!
//! Most of these are about the transport alone and run on the embedded
//! store; the two whose refusals come from the API and its throttle run on
//! both stores.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

const ARGS: [&str; 4] = ["--clock", "manual", "--throttle", "off"];

fn address(server: &TestServer) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

/// One HTTP/1.1 response read from a raw connection.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// Asserts Graph's envelope with the request ids; returns the code.
    fn assert_envelope(&self, status: u16, what: &str) -> String {
        assert_eq!(self.status, status, "{what}: {} {}", self.head, self.body);
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: {}",
            self.head
        );
        let request_id = self.header("request-id").expect("a request-id header");
        let body: Value = serde_json::from_str(&self.body).expect(what);
        let error = &body["error"];
        assert!(
            error["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{what}: {body}"
        );
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        assert_eq!(
            error["innerError"]["request-id"],
            request_id.as_str(),
            "{what}"
        );
        assert!(
            error["innerError"]["client-request-id"].is_string(),
            "{what}"
        );
        error["code"].as_str().unwrap().to_owned()
    }
}

async fn read_raw(stream: &mut TcpStream) -> Raw {
    read_raw_from(stream).await
}

async fn read_raw_from(stream: &mut (impl AsyncReadExt + Unpin)) -> Raw {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_string();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return Raw {
                    status: head[9..12].parse().unwrap(),
                    body: String::from_utf8_lossy(&bytes[end + 4..end + 4 + length]).to_string(),
                    head,
                };
            }
        }
        let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer))
            .await
            .expect("an answer within 10 s")
            .unwrap_or(0);
        assert!(
            read > 0,
            "closed without an answer: {}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&buffer[..read]);
    }
}

/// Whether the server closes the connection within a few seconds.
async fn closes(stream: &mut TcpStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Request heads hyper refuses with a bare status, and the status each gets.
fn broken_heads() -> Vec<(&'static str, Vec<u8>, u16)> {
    let long_path = format!(
        "GET /v1.0/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..600)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    vec![
        ("bare CR", b"GET /healthz HTTP/1.1\rHost: x\r\n\r\n".to_vec(), 400),
        ("NUL in a header", b"GET /healthz HTTP/1.1\r\nHost: x\0y\r\n\r\n".to_vec(), 400),
        ("raw 0xFF in the path", b"GET /v1.0/\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        (
            "conflicting Content-Length",
            b"POST /v1.0/me/presence/setPresence HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            400,
        ),
        ("HTTP/1.7", b"GET /healthz HTTP/1.7\r\nHost: x\r\n\r\n".to_vec(), 505),
        (
            "TLS bytes on the plain port",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
            400,
        ),
        ("a 70,000-byte path", long_path.into_bytes(), 414),
        ("600 header fields", many_headers.into_bytes(), 431),
    ]
}

#[tokio::test]
async fn heads_hyper_would_refuse_bare_get_the_envelope_and_a_closed_connection() {
    let server = TestServer::start_with(&ARGS).await;
    let cases = broken_heads();
    for (what, bytes, status) in cases {
        let mut stream = TcpStream::connect(address(&server)).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        let answer = read_raw(&mut stream).await;
        answer.assert_envelope(status, what);
        assert_eq!(
            answer.header("connection").as_deref(),
            Some("close"),
            "{what}"
        );
        assert!(
            closes(&mut stream).await,
            "{what}: the connection stays open"
        );
    }
    // 150 small header fields are well under the byte limit: served.
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_raw(&mut stream).await.status, 200);
}

/// A broken head after a good request on a kept-alive connection is
/// refused by hyper itself; its bare status is replaced by the envelope.
#[tokio::test]
async fn a_broken_later_head_on_a_kept_alive_connection_gets_the_envelope() {
    let server = TestServer::start_with(&ARGS).await;
    for (what, bytes, status) in broken_heads() {
        let mut stream = TcpStream::connect(address(&server)).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_raw(&mut stream).await.status, 200, "{what}");
        stream.write_all(&bytes).await.unwrap();
        let answer = read_raw(&mut stream).await;
        // hyper judges a later head and picks the status: an unknown
        // version is a plain 400 there.
        let status = if what == "HTTP/1.7" { 400 } else { status };
        answer.assert_envelope(status, what);
        assert_eq!(
            answer.header("connection").as_deref(),
            Some("close"),
            "{what}"
        );
        assert!(
            closes(&mut stream).await,
            "{what}: the connection stays open"
        );
    }
}

#[tokio::test]
async fn undecodable_paths_get_the_envelope_on_every_route() {
    let server = TestServer::start_with(&ARGS).await;
    let cases = [
        ("DELETE", format!("/admin/tenants/{TENANT}/users/%ff")),
        (
            "PUT",
            format!("/admin/tenants/%ff/users/{ADELE}/outOfOfficeSettings"),
        ),
        ("POST", "/%ff/oauth2/v2.0/token".to_owned()),
        (
            "GET",
            "/%ff/v2.0/.well-known/openid-configuration".to_owned(),
        ),
        ("GET", "/%ff/discovery/v2.0/keys".to_owned()),
        ("GET", "/v1.0/users/%ff/presence".to_owned()),
    ];
    for (method, path) in cases {
        let response = server
            .client
            .request(method.parse().unwrap(), server.url(&path))
            .bearer_auth(server.app())
            .send()
            .await
            .unwrap();
        let answer = Answer::read(response).await;
        assert!(
            answer.status == 400 || answer.status == 404,
            "{method} {path}: {}",
            answer.status
        );
        let code = answer.assert_error(
            answer.status,
            if answer.status == 400 {
                "BadRequest"
            } else {
                "NotFound"
            },
        );
        assert!(!code.is_empty());
        assert!(answer.header("request-id").is_some(), "{method} {path}");
    }
}

both! {
#[tokio::test]
async fn a_connection_stays_usable_after_every_kind_of_refusal() {
    let server = TestServer::start_with(&ARGS).await;
    let app = server.app();
    let reader = server.token(TENANT, Some(ADELE), "User.Read");
    let status_message = "/v1.0/me/presence/setStatusMessage";
    let set_presence = format!("/v1.0/users/{ADELE}/presence/setPresence");
    for size in [1_000usize, 64_000, 900_000] {
        let filler = "x".repeat(size);
        // Valid JSON padded with whitespace: only the refusal's reason counts.
        let json = format!(
            r#"{{"statusMessage":{{"message":{{"content":"hi"}}}}}}{}"#,
            " ".repeat(size)
        );
        let cases: Vec<(&str, String, String, &str, String, u16)> = vec![
            (
                "401",
                "POST".into(),
                status_message.into(),
                "Bearer not-a-token",
                json.clone(),
                401,
            ),
            (
                "403",
                "POST".into(),
                status_message.into(),
                &reader,
                json.clone(),
                403,
            ),
            (
                "404",
                "POST".into(),
                "/v1.0/nowhere".into(),
                &app,
                json.clone(),
                404,
            ),
            (
                "405",
                "PUT".into(),
                set_presence.clone(),
                &app,
                json.clone(),
                405,
            ),
            (
                "400 malformed JSON",
                "POST".into(),
                set_presence.clone(),
                &app,
                format!("{{{filler}"),
                400,
            ),
        ];
        for (what, method, path, token, body, status) in cases {
            let what = format!("{what} with {size} bytes");
            let authorization = if token.starts_with("Bearer") {
                token.to_owned()
            } else {
                format!("Bearer {token}")
            };
            let mut stream = TcpStream::connect(address(&server)).await.unwrap();
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            let answer = read_raw(&mut stream).await;
            answer.assert_envelope(status, &what);
            assert_ne!(
                answer.header("connection").as_deref(),
                Some("close"),
                "{what}"
            );
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert_eq!(read_raw(&mut stream).await.status, 200, "after {what}");
        }
        // 415: a body that is not JSON.
        let mut stream = TcpStream::connect(address(&server)).await.unwrap();
        let request = format!(
            "POST {set_presence} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {app}\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n\r\n{filler}"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        read_raw(&mut stream).await.assert_envelope(415, "415");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            read_raw(&mut stream).await.status,
            200,
            "after 415 with {size} bytes"
        );
    }
    // 413: a body a few times over the limit is read and dropped, and the
    // connection carries on.
    let size = 3 * 1024 * 1024;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let head = format!(
        "POST {status_message} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {app}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read_half, mut write_half) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..size / chunk.len() {
            write_half.write_all(&chunk).await.unwrap();
        }
        write_half
    });
    let answer = read_raw_from(&mut read_half).await;
    answer.assert_envelope(413, "413");
    let mut write_half = writer.await.unwrap();
    write_half
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_raw_from(&mut read_half).await.status, 200, "after 413");
    // Far over it, the answer comes at once and closes the connection.
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let head = format!(
        "POST {status_message} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {app}\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_raw(&mut stream).await;
    answer.assert_envelope(413, "413 of 100 MiB");
    assert_eq!(answer.header("connection").as_deref(), Some("close"));
    assert!(closes(&mut stream).await);
    // A pooled client carries on either way.
    let pooled = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    for _ in 0..3 {
        let refused = pooled
            .post(server.url(status_message))
            .bearer_auth(&app)
            .header("content-type", "application/json")
            .body(vec![b' '; 2 * 1024 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 413);
        let ok = pooled.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
    }
}
}

both! {
#[tokio::test]
async fn a_pooled_client_keeps_its_connection_after_a_throttled_request() {
    let server = TestServer::start_with(&["--clock", "manual", "--throttle", "2/30s"]).await;
    let app = server.app();
    let pooled = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let body = serde_json::json!({
        "sessionId": APP,
        "availability": "Available",
        "activity": "Available",
        "padding": "p".repeat(4000),
    });
    let mut throttled = 0;
    for _ in 0..4 {
        let response = pooled
            .post(server.url(&format!("/v1.0/users/{ADELE}/presence/setPresence")))
            .bearer_auth(&app)
            .json(&body)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            throttled += 1;
            assert_ne!(
                response
                    .headers()
                    .get("connection")
                    .map(|v| v.to_str().unwrap()),
                Some("close")
            );
        }
        let ok = pooled.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
    }
    assert!(throttled > 0, "the throttle never answered 429");
}
}

#[tokio::test]
async fn odata_context_names_the_listener_never_the_clients_host() {
    let server = TestServer::start_with(&ARGS).await;
    let token = server.adele();
    let expected = format!("{}/v1.0/$metadata#", server.base);
    for target in [
        "/v1.0/me/presence".to_owned(),
        "http://evil.example/v1.0/me/presence".to_owned(),
        format!("http://evil.example/v1.0/users/{ADELE}/presence"),
    ] {
        let mut stream = TcpStream::connect(address(&server)).await.unwrap();
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_raw(&mut stream).await;
        assert_eq!(answer.status, 200, "{target}: {}", answer.body);
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        let context = body["@odata.context"].as_str().unwrap();
        assert!(context.starts_with(&expected), "{target}: {context}");
        assert!(!context.contains("evil"), "{target}: {context}");
    }
}

#[tokio::test]
async fn odata_context_names_the_public_url_when_one_is_configured() {
    let mut args = ARGS.to_vec();
    args.extend(["--public-url", "https://presence.example"]);
    let server = TestServer::start_with(&args).await;
    let token = server.adele();
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let request = format!(
        "GET /v1.0/me/presence HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_raw(&mut stream).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    let context = body["@odata.context"].as_str().unwrap();
    assert!(
        context.starts_with("https://presence.example/v1.0/$metadata#"),
        "{context}"
    );
}
