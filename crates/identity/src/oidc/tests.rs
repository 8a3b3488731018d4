//! The refresh rules, on tokio's paused clock and a fetcher that serves documents from memory.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use serde_json::{Value, json};

use super::*;

const JWKS: &str = "https://idp.example.com/keys";
const DISCOVERY: &str = "https://idp.example.com/.well-known/openid-configuration";

/// What the fake provider answers at one URL.
#[derive(Clone)]
enum Answer {
    Document(Vec<u8>),
    Failure(&'static str),
    /// Never answers: the fetch timeout has to end it.
    Hang,
}

#[derive(Default)]
struct FakeProvider {
    answers: Mutex<HashMap<String, Answer>>,
    requests: Mutex<Vec<String>>,
}

impl FakeProvider {
    fn serve(&self, url: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(url.to_owned(), answer);
    }

    fn serve_keys(&self, kids: &[&str]) {
        self.serve(JWKS, Answer::Document(jwks(kids)));
    }

    fn requests(&self, url: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| *r == url)
            .count()
    }
}

impl Fetch for FakeProvider {
    fn get<'a>(&'a self, url: &'a Url) -> FetchFuture<'a> {
        self.requests.lock().unwrap().push(url.to_string());
        let answer = self.answers.lock().unwrap().get(url.as_str()).cloned();
        Box::pin(async move {
            match answer {
                Some(Answer::Document(bytes)) => Ok(bytes),
                Some(Answer::Failure(reason)) => Err(reason.to_owned()),
                Some(Answer::Hang) => std::future::pending().await,
                None => Err("HTTP 404 Not Found".to_owned()),
            }
        })
    }
}

/// A JWK set of well-formed RSA keys with these ids (the key material is never used to verify here).
fn jwks(kids: &[&str]) -> Vec<u8> {
    let n = URL_SAFE_NO_PAD.encode([0xc5; 256]);
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| json!({"kty": "RSA", "use": "sig", "kid": kid, "n": n, "e": "AQAB"}))
        .collect();
    json!({ "keys": keys }).to_string().into_bytes()
}

fn config(source: KeySource) -> JwksIssuerConfig {
    JwksIssuerConfig {
        issuer: "https://idp.example.com".into(),
        audiences: vec!["api://presence".into()],
        source,
        refresh_interval: Duration::from_secs(3600),
        min_refresh_interval: Duration::from_secs(30),
        fetch_timeout: Duration::from_secs(5),
    }
}

async fn start(provider: &Arc<FakeProvider>) -> JwksIssuer {
    let source = KeySource::jwks_url(JWKS).unwrap();
    JwksIssuer::start_with(config(source), provider.clone())
        .await
        .expect("started")
}

fn knows(issuer: &JwksIssuer, kid: &str) -> bool {
    issuer
        .verification_key(Some(kid), SigningAlgorithm::Rs256)
        .is_some()
}

/// Lets the refresh task run for `seconds` of paused time.
async fn pass(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn keys_are_loaded_at_start_and_refreshed_every_interval() {
    let provider = Arc::new(FakeProvider::default());
    provider.serve_keys(&["one"]);
    let issuer = start(&provider).await;
    assert!(knows(&issuer, "one"));

    provider.serve_keys(&["two"]);
    pass(3599).await;
    assert!(knows(&issuer, "one"), "not refreshed before the interval");
    assert_eq!(provider.requests(JWKS), 1);
    pass(2).await;
    assert!(knows(&issuer, "two") && !issuer.keys().knows("one"));
    assert_eq!(provider.requests(JWKS), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_kid_refreshes_soon_but_never_more_than_once_per_floor() {
    let provider = Arc::new(FakeProvider::default());
    provider.serve_keys(&["one"]);
    let issuer = start(&provider).await;
    provider.serve_keys(&["one", "rotated"]);

    // The token naming the new key is refused, and asks for a refresh, which waits for the floor.
    assert!(!knows(&issuer, "rotated"));
    pass(29).await;
    assert_eq!(provider.requests(JWKS), 1);
    pass(2).await;
    assert_eq!(provider.requests(JWKS), 2);
    assert!(knows(&issuer, "rotated"));

    // A flood of made-up kids: one refresh per floor at most.
    for round in 0..10 {
        for i in 0..100 {
            assert!(!knows(&issuer, &format!("made-up-{round}-{i}")));
        }
        pass(3).await;
    }
    // 30 s of flooding after a refresh: one more fetch, at the floor.
    assert_eq!(provider.requests(JWKS), 3);
    // Known kids never ask for a refresh.
    for _ in 0..100 {
        assert!(knows(&issuer, "one"));
        assert!(
            issuer
                .verification_key(Some("one"), SigningAlgorithm::Es256)
                .is_none()
        );
        assert!(
            issuer
                .verification_key(None, SigningAlgorithm::Rs256)
                .is_none()
        );
    }
    pass(120).await;
    assert_eq!(provider.requests(JWKS), 3);
}

#[tokio::test(start_paused = true)]
async fn a_provider_down_slow_or_answering_garbage_leaves_the_cached_keys_in_place() {
    for (what, answer) in [
        ("down", Answer::Failure("connection refused")),
        ("slow", Answer::Hang),
        ("garbage", Answer::Document(b"<html>oops</html>".to_vec())),
        (
            "no usable key",
            Answer::Document(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#.to_vec()),
        ),
    ] {
        let provider = Arc::new(FakeProvider::default());
        provider.serve_keys(&["one"]);
        let issuer = start(&provider).await;
        provider.serve(JWKS, answer);

        assert!(!knows(&issuer, "unknown"), "{what}");
        pass(3600 * 2).await;
        assert!(knows(&issuer, "one"), "{what}: cached keys keep working");
        assert!(
            !knows(&issuer, "unknown"),
            "{what}: unknown keys fail closed"
        );

        // Once the provider is back, the next retry picks up its keys.
        provider.serve_keys(&["two"]);
        pass(3600).await;
        assert!(knows(&issuer, "two"), "{what}: recovered");
    }
}

#[tokio::test(start_paused = true)]
async fn failed_refreshes_are_retried_with_a_doubling_delay() {
    let provider = Arc::new(FakeProvider::default());
    provider.serve(JWKS, Answer::Failure("connection refused"));
    // Down at start: the issuer starts without keys.
    let issuer = start(&provider).await;
    assert!(issuer.keys().is_empty());
    let mut attempts_at = Vec::new();
    // Looks half a second after each whole second, never at the instant an attempt is due.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for second in 1..=600 {
        pass(1).await;
        let attempts = provider.requests(JWKS);
        if attempts > attempts_at.len() + 1 {
            attempts_at.push(second);
        }
    }
    // 30 s, then 60 s, 120 s, 240 s after each attempt.
    assert_eq!(attempts_at, [30, 90, 210, 450]);
    provider.serve_keys(&["one"]);
    pass(480).await;
    assert!(knows(&issuer, "one"));
}

#[tokio::test(start_paused = true)]
async fn discovery_finds_the_jwks_uri_and_rediscovers_when_it_fails() {
    let provider = Arc::new(FakeProvider::default());
    provider.serve(
        DISCOVERY,
        Answer::Document(
            json!({"issuer": "https://idp.example.com", "jwks_uri": JWKS})
                .to_string()
                .into_bytes(),
        ),
    );
    provider.serve_keys(&["one"]);
    let source = KeySource::discovery_of_issuer("https://idp.example.com").unwrap();
    let issuer = JwksIssuer::start_with(config(source), provider.clone())
        .await
        .unwrap();
    assert!(knows(&issuer, "one"));

    // The jwks_uri is remembered...
    pass(3601).await;
    assert_eq!(
        (provider.requests(DISCOVERY), provider.requests(JWKS)),
        (1, 2)
    );
    // ...until it fails, and then looked up again.
    let moved = "https://idp.example.com/v2/keys";
    provider.serve(JWKS, Answer::Failure("HTTP 404 Not Found"));
    provider.serve(
        DISCOVERY,
        Answer::Document(json!({"jwks_uri": moved}).to_string().into_bytes()),
    );
    provider.serve(moved, Answer::Document(jwks(&["two"])));
    pass(3600).await;
    assert!(knows(&issuer, "one"), "kept while the keys moved");
    pass(30).await;
    assert!(knows(&issuer, "two"));
    assert_eq!(provider.requests(DISCOVERY), 2);
}

#[tokio::test(start_paused = true)]
async fn discovery_documents_must_name_a_safe_jwks_uri() {
    for document in [
        json!({"issuer": "https://idp.example.com"}),
        json!({"jwks_uri": "http://idp.example.com/keys"}),
        json!("nope"),
    ] {
        let provider = Arc::new(FakeProvider::default());
        provider.serve(
            DISCOVERY,
            Answer::Document(document.to_string().into_bytes()),
        );
        provider.serve_keys(&["one"]);
        let source = KeySource::discovery_of_issuer("https://idp.example.com").unwrap();
        let issuer = JwksIssuer::start_with(config(source), provider.clone())
            .await
            .unwrap();
        assert!(issuer.keys().is_empty(), "{document}");
        assert_eq!(provider.requests(JWKS), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_jwks_file_is_read_at_start_and_again_at_each_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    let provider = Arc::new(FakeProvider::default());
    let start_file =
        || JwksIssuer::start_with(config(KeySource::File(path.clone())), provider.clone());

    let missing = start_file().await.unwrap_err().to_string();
    assert!(missing.contains("jwks.json"), "{missing}");
    std::fs::write(&path, "{not json").unwrap();
    let garbage = start_file().await.unwrap_err().to_string();
    assert!(garbage.contains("not a JWK set"), "{garbage}");

    std::fs::write(&path, jwks(&["one"])).unwrap();
    let issuer = start_file().await.unwrap();
    assert!(knows(&issuer, "one"));
    std::fs::write(&path, jwks(&["two"])).unwrap();
    assert!(!knows(&issuer, "two"));
    pass(31).await;
    assert!(knows(&issuer, "two"));
}

#[tokio::test]
async fn configurations_that_cannot_work_are_refused() {
    type Edit = fn(&mut JwksIssuerConfig);
    let cases: [(Edit, &str); 6] = [
        (|c| c.issuer.clear(), "the issuer is empty"),
        (
            |c| c.issuer = "https://x/{tenantid}/{tenantid}".into(),
            "once at most",
        ),
        (|c| c.audiences.clear(), "audiences"),
        (|c| c.audiences = vec![String::new()], "audiences"),
        (
            |c| c.min_refresh_interval = Duration::ZERO,
            "more than zero",
        ),
        (
            |c| c.refresh_interval = Duration::from_secs(10),
            "at least min_refresh_interval",
        ),
    ];
    for (edit, expected) in cases {
        let mut config = config(KeySource::jwks_url(JWKS).unwrap());
        edit(&mut config);
        let provider = Arc::new(FakeProvider::default());
        let error = JwksIssuer::start_with(config, provider.clone())
            .await
            .unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
        assert_eq!(
            provider.requests(JWKS),
            0,
            "nothing is fetched for {expected}"
        );
    }
}
