//! Trusting an external OpenID Connect issuer (`[[auth.issuers]]`): tokens
//! signed by a test provider whose keys the test serves on loopback, every
//! refusal and its message, key rotation, and a provider that is down, slow
//! or confused.

use std::future::Future;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Answer, OTHER_TENANT, TENANT, TestServer};
use crate::provider::{EC_C, Mode, Provider, RSA_A, RSA_B, claims};

/// An Entra-like per-tenant issuer, trusted through the provider's JWKS URL.
const TEMPLATE: &str = "https://login.test.example/{tenantid}/v2.0";

fn entra_like_iss(tenant: &str) -> String {
    TEMPLATE.replace("{tenantid}", tenant)
}

const INVALID_SIGNATURE: &str = "Access token validation failure. Invalid signature.";
const UNKNOWN_KEY: &str = "Access token validation failure. Invalid signature. The signing key is not one of the issuer's keys.";

/// presenced trusting what `toml` says; the configuration file lives as long as the server.
async fn start_trusting(toml: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("presenced.toml");
    std::fs::write(&path, toml).unwrap();
    let server = TestServer::start_with(&[
        "--clock",
        "manual",
        "--throttle",
        "off",
        "--config",
        path.to_str().unwrap(),
    ])
    .await;
    (server, dir)
}

async fn me(server: &TestServer, token: &str) -> Answer {
    server.get("/v1.0/me/presence", token).await
}

async fn assert_accepted(server: &TestServer, token: &str, what: &str) {
    let answer = me(server, token).await;
    assert_eq!(answer.status, 200, "{what}: {}", answer.text);
}

async fn assert_refused(server: &TestServer, token: &str, message: &str, what: &str) {
    let answer = me(server, token).await;
    assert_eq!(answer.status, 401, "{what}: {}", answer.text);
    assert_eq!(
        answer.assert_error(401, "InvalidAuthenticationToken"),
        message,
        "{what}"
    );
}

/// Polls `check` until it holds; a refresh is real asynchronous work.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(server: &TestServer, token: &str) -> u16 {
    me(server, token).await.status
}

fn edited(iss: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims(iss);
    edit(claims.as_object_mut().unwrap());
    claims
}

fn encode(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_a_trusted_issuer_are_accepted_and_every_refusal_says_why() {
    let provider = Provider::start(&[&RSA_A, &EC_C]).await;
    let (server, _config) = start_trusting(&format!(
        "[auth]\nleeway = \"PT1M\"\n\n[[auth.issuers]]\nissuer = \"{TEMPLATE}\"\njwks_url = \"{}\"\n",
        provider.jwks_url()
    ))
    .await;
    let iss = entra_like_iss(TENANT);
    let now = Timestamp::now().as_second();

    assert_accepted(&server, &RSA_A.sign(&claims(&iss)), "RS256").await;
    assert_accepted(&server, &EC_C.sign(&claims(&iss)), "ES256").await;
    assert_accepted(
        &server,
        &RSA_A.sign(&claims(&entra_like_iss(&TENANT.to_uppercase()))),
        "the tenant in iss in upper case",
    )
    .await;
    assert_accepted(
        &server,
        &RSA_A.sign(&edited(&iss, |c| {
            c.insert("exp".into(), json!(now - 30));
        })),
        "expired within the leeway",
    )
    .await;
    assert_accepted(
        &server,
        &RSA_A.sign(&edited(&iss, |c| {
            c.insert("nbf".into(), json!(now + 30));
        })),
        "valid soon, within the leeway",
    )
    .await;
    // The dev issuer stays trusted beside it.
    assert_accepted(&server, &server.adele(), "dev issuer").await;

    let unsigned = format!(
        "{}.{}.",
        encode(&json!({"alg": "none", "kid": "rsa-a"})),
        encode(&claims(&iss))
    );
    // Algorithm confusion: HMAC keyed with the RSA key's public JWK, which anyone can fetch.
    let public_key = serde_json::to_vec(&RSA_A.jwk).unwrap();
    let mut hmac_header = Header::new(Algorithm::HS256);
    hmac_header.kid = Some("rsa-a".into());
    let hmac = jsonwebtoken::encode(
        &hmac_header,
        &claims(&iss),
        &EncodingKey::from_secret(&public_key).unwrap(),
    )
    .unwrap();
    let good = RSA_A.sign(&claims(&iss));
    let (signing_input, signature) = good.rsplit_once('.').unwrap();
    let mut flipped = URL_SAFE_NO_PAD.decode(signature).unwrap();
    flipped[0] ^= 1;
    let bad_signature = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(flipped));

    let refusals: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            unsigned,
            "Access token validation failure. The signing algorithm 'none' is not supported.",
        ),
        (
            "HS256 against an RSA key",
            hmac,
            "Access token validation failure. The signing algorithm 'HS256' is not supported.",
        ),
        ("a bad signature", bad_signature, INVALID_SIGNATURE),
        (
            "another key under the issuer's kid",
            RSA_B.sign_as("rsa-a", &claims(&iss)),
            INVALID_SIGNATURE,
        ),
        (
            "ES256 naming an RSA key",
            EC_C.sign_as("rsa-a", &claims(&iss)),
            UNKNOWN_KEY,
        ),
        ("an unknown kid", RSA_B.sign(&claims(&iss)), UNKNOWN_KEY),
        (
            "an untrusted issuer",
            RSA_A.sign(&claims(
                &"https://login.other.example/{t}/v2.0".replace("{t}", TENANT),
            )),
            "Access token validation failure. Invalid issuer.",
        ),
        (
            "iss naming another tenant than tid",
            RSA_A.sign(&claims(&entra_like_iss(OTHER_TENANT))),
            "Access token validation failure. Invalid issuer.",
        ),
        (
            "another audience",
            RSA_A.sign(&edited(&iss, |c| {
                c.insert("aud".into(), json!("api://someone-else"));
            })),
            "Invalid audience.",
        ),
        (
            "expired beyond the leeway",
            RSA_A.sign(&edited(&iss, |c| {
                c.insert("exp".into(), json!(now - 120));
            })),
            "Lifetime validation failed, the token is expired.",
        ),
        (
            "not yet valid beyond the leeway",
            RSA_A.sign(&edited(&iss, |c| {
                c.insert("nbf".into(), json!(now + 120));
            })),
            "Lifetime validation failed, the token is not yet valid.",
        ),
        (
            "no tid",
            RSA_A.sign(&edited(&iss, |c| {
                c.remove("tid");
            })),
            "Access token validation failure. The token has no 'tid' claim.",
        ),
        (
            "no oid",
            RSA_A.sign(&edited(&iss, |c| {
                c.remove("oid");
            })),
            "Access token validation failure. The token has no 'oid' claim.",
        ),
    ];
    for (what, token, message) in refusals {
        assert_refused(&server, &token, message, what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_once_published_and_a_removed_key_refused_after_refresh() {
    let provider = Provider::start(&[&RSA_A]).await;
    let (server, _config) = start_trusting(&format!(
        "[[auth.issuers]]\nissuer = \"{TEMPLATE}\"\njwks_url = \"{}\"\nrefresh_interval = \"PT1H\"\nmin_refresh_interval = \"PT0.5S\"\n",
        provider.jwks_url()
    ))
    .await;
    let iss = entra_like_iss(TENANT);
    assert_eq!(provider.jwks_requests(), 1);

    // The provider rotates in key B: its first token asks for a refresh, and B is accepted soon.
    provider.publish(&[&RSA_A, &RSA_B]);
    eventually("the new key is accepted", || async {
        status(&server, &RSA_B.sign(&claims(&iss))).await == 200
    })
    .await;

    // The provider retires key A; after the next refresh (here asked for by an unknown kid) A is refused.
    provider.publish(&[&RSA_B]);
    assert_accepted(&server, &RSA_A.sign(&claims(&iss)), "A before the refresh").await;
    assert_refused(
        &server,
        &RSA_B.sign_as("rsa-unknown", &claims(&iss)),
        UNKNOWN_KEY,
        "an unknown kid",
    )
    .await;
    eventually("the removed key is refused", || async {
        let answer = me(&server, &RSA_A.sign(&claims(&iss))).await;
        answer.status == 401 && answer.text.contains("The signing key is not one of")
    })
    .await;
    assert_accepted(&server, &RSA_B.sign(&claims(&iss)), "B after the rotation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_down_slow_or_confused_leaves_cached_keys_working_and_unknown_keys_refused()
 {
    let provider = Provider::start(&[&RSA_A]).await;
    let (server, _config) = start_trusting(&format!(
        "[[auth.issuers]]\nissuer = \"{TEMPLATE}\"\njwks_url = \"{}\"\nrefresh_interval = \"PT0.5S\"\nmin_refresh_interval = \"PT0.5S\"\nfetch_timeout = \"PT0.5S\"\n",
        provider.jwks_url()
    ))
    .await;
    let iss = entra_like_iss(TENANT);

    for mode in [
        Mode::Down,
        Mode::Garbage,
        Mode::Slow(Duration::from_secs(2)),
    ] {
        provider.set_mode(mode);
        let before = provider.jwks_requests();
        eventually(&format!("{mode:?}: two refreshes tried"), || async {
            provider.jwks_requests() >= before + 2
        })
        .await;
        assert_accepted(
            &server,
            &RSA_A.sign(&claims(&iss)),
            &format!("{mode:?}: a cached key"),
        )
        .await;
        assert_refused(
            &server,
            &RSA_B.sign(&claims(&iss)),
            UNKNOWN_KEY,
            &format!("{mode:?}: an unknown key"),
        )
        .await;
    }

    // Back up, with a new key: picked up by the next refresh.
    provider.publish(&[&RSA_A, &RSA_B]);
    provider.set_mode(Mode::Serving);
    eventually("recovered", || async {
        status(&server, &RSA_B.sign(&claims(&iss))).await == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_costs_the_provider_one_fetch_per_floor() {
    let provider = Provider::start(&[&RSA_A]).await;
    let (server, _config) = start_trusting(&format!(
        "[[auth.issuers]]\nissuer = \"{TEMPLATE}\"\njwks_url = \"{}\"\nmin_refresh_interval = \"PT2S\"\n",
        provider.jwks_url()
    ))
    .await;
    let iss = entra_like_iss(TENANT);
    assert_eq!(provider.jwks_requests(), 1, "the keys are fetched at start");

    let started = Instant::now();
    for i in 0..100 {
        let token = RSA_B.sign_as(&format!("made-up-{i}"), &claims(&iss));
        assert_refused(&server, &token, UNKNOWN_KEY, "a made-up kid").await;
    }
    let flood = started.elapsed();
    eventually("the flood asked for a refresh", || async {
        provider.jwks_requests() >= 2
    })
    .await;
    // Long enough for any refresh still owed to the flood to happen.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // One fetch at start, then at most one per 2 s of flooding and one for its tail.
    let allowed = 2 + (flood.as_secs_f64() / 2.0).ceil() as usize;
    assert!(
        provider.jwks_requests() <= allowed,
        "{} JWKS requests for 100 unknown kids in {flood:?} (at most {allowed})",
        provider.jwks_requests()
    );
    assert_accepted(&server, &RSA_A.sign(&claims(&iss)), "the known key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_discovery_or_from_a_jwks_file() {
    let provider = Provider::start(&[&RSA_A]).await;
    let files = tempfile::tempdir().unwrap();
    let jwks_file = files.path().join("jwks.json");
    std::fs::write(&jwks_file, json!({"keys": [EC_C.jwk]}).to_string()).unwrap();
    let file_issuer = "https://file.test.example";
    let (server, _config) = start_trusting(&format!(
        "[[auth.issuers]]\nissuer = \"{}\"\ndiscovery = true\n\n[[auth.issuers]]\nissuer = \"{file_issuer}\"\njwks_file = \"{}\"\naudiences = [\"api://presence\"]\n",
        provider.base(),
        jwks_file.display()
    ))
    .await;

    assert_accepted(&server, &RSA_A.sign(&claims(provider.base())), "discovery").await;
    assert_eq!(
        (provider.discovery_requests(), provider.jwks_requests()),
        (1, 1)
    );

    let for_presence = |mut claims: Value| {
        claims["aud"] = json!("api://presence");
        claims
    };
    assert_accepted(
        &server,
        &EC_C.sign(&for_presence(claims(file_issuer))),
        "JWKS file",
    )
    .await;
    assert_refused(
        &server,
        &RSA_A.sign(&for_presence(claims(file_issuer))),
        UNKNOWN_KEY,
        "a key of another issuer",
    )
    .await;
    assert_refused(
        &server,
        &EC_C.sign(&claims(file_issuer)),
        "Invalid audience.",
        "Graph's audience where the issuer accepts only its own",
    )
    .await;
}

#[test]
fn bad_issuer_configuration_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    for (issuer, expected) in [
        (
            "jwks_url = \"https://idp.example.com/keys\"\ndiscovery = true".to_string(),
            "auth.issuers[0] (https://idp.example.com): give exactly one of jwks_file, jwks_url, discovery_url or discovery = true",
        ),
        (
            "jwks_url = \"http://idp.example.com/keys\"".to_string(),
            "plain http is allowed for loopback addresses only",
        ),
        (
            "refresh_interval = \"soon\"\ndiscovery = true".to_string(),
            "refresh_interval: 'soon' is not an ISO 8601 duration",
        ),
        (
            format!("jwks_file = \"{}\"", missing.display()),
            "missing.json",
        ),
    ] {
        let config = dir.path().join("presenced.toml");
        std::fs::write(
            &config,
            format!("[[auth.issuers]]\nissuer = \"https://idp.example.com\"\n{issuer}\n"),
        )
        .unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_presenced"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{issuer}");
        assert!(stderr.contains(expected), "{issuer}: {stderr}");
    }
}
