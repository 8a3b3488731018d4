//! A test OpenID Connect provider on loopback: its own RSA and EC keys, a JWK set
//! and a discovery document served by a small axum app, tokens it signs, and a
//! count of the requests it received. It can be switched to answer as a
//! provider that is down, slow or confused.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::Generate;
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use crate::helpers::{ADELE, APP, TENANT};

/// A signing key of the test provider, with its public JWK.
pub struct TestKey {
    pub kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn rsa(kid: &str) -> TestKey {
        let private = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("RSA key");
        let der = private.to_pkcs1_der().expect("PKCS#1");
        TestKey {
            kid: kid.into(),
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA", "use": "sig", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(private.n_bytes()),
                "e": URL_SAFE_NO_PAD.encode(private.e_bytes()),
            }),
        }
    }

    pub fn ec(kid: &str) -> TestKey {
        let secret =
            p256::SecretKey::try_generate_from_rng(&mut getrandom::SysRng).expect("P-256 key");
        let der = secret.to_pkcs8_der().expect("PKCS#8");
        // SEC1 uncompressed: 0x04 || x || y.
        let point = secret.public_key().to_sec1_bytes();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        TestKey {
            kid: kid.into(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            }),
        }
    }

    /// `claims`, signed with this key under its kid.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// `claims`, signed with this key but naming another kid.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

/// Keys are made once per test run: RSA key generation takes a while.
pub static RSA_A: LazyLock<TestKey> = LazyLock::new(|| TestKey::rsa("rsa-a"));
pub static RSA_B: LazyLock<TestKey> = LazyLock::new(|| TestKey::rsa("rsa-b"));
pub static EC_C: LazyLock<TestKey> = LazyLock::new(|| TestKey::ec("ec-c"));

/// Adele's delegated claims from `iss`, valid for an hour from now, each set
/// with its own `jti` so that no two tokens are the same (and none is answered
/// from the validated-token cache).
pub fn claims(iss: &str) -> Value {
    let now = Timestamp::now().as_second();
    json!({
        "iss": iss,
        "aud": "https://graph.microsoft.com",
        "tid": TENANT,
        "oid": ADELE,
        "appid": APP,
        "scp": "Presence.Read Presence.Read.All Presence.ReadWrite",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// How the provider answers requests for its JWK set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serving,
    /// 503 Service Unavailable.
    Down,
    /// 200 with an HTML page.
    Garbage,
    /// Answers after this long.
    Slow(Duration),
}

struct ProviderState {
    keys: Mutex<Vec<Value>>,
    mode: Mutex<Mode>,
    base: String,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
}

/// The running provider; stops with the test's runtime, which must be
/// multi-threaded: `TestServer::start_with` blocks its thread while presenced
/// starts, and presenced fetches the keys while it starts.
pub struct Provider {
    state: Arc<ProviderState>,
}

impl Provider {
    /// Serves `keys` at `/keys` and a discovery document whose issuer is the
    /// provider's base URL.
    pub async fn start(keys: &[&TestKey]) -> Provider {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let state = Arc::new(ProviderState {
            keys: Mutex::new(keys.iter().map(|key| key.jwk.clone()).collect()),
            mode: Mutex::new(Mode::Serving),
            base: format!("http://{}", listener.local_addr().unwrap()),
            jwks_requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/keys", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Provider { state }
    }

    /// The provider's base URL, which is also its issuer for discovery.
    pub fn base(&self) -> &str {
        &self.state.base
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/keys", self.state.base)
    }

    /// Publishes exactly these keys from now on.
    pub fn publish(&self, keys: &[&TestKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|key| key.jwk.clone()).collect();
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn jwks_requests(&self) -> usize {
        self.state.jwks_requests.load(Ordering::SeqCst)
    }

    pub fn discovery_requests(&self) -> usize {
        self.state.discovery_requests.load(Ordering::SeqCst)
    }
}

async fn jwks(State(state): State<Arc<ProviderState>>) -> Response {
    state.jwks_requests.fetch_add(1, Ordering::SeqCst);
    let mode = *state.mode.lock().unwrap();
    match mode {
        Mode::Serving => {}
        Mode::Down => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::Garbage => return "<html>It works!</html>".into_response(),
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
    }
    let keys = state.keys.lock().unwrap().clone();
    json_response(json!({ "keys": keys }))
}

async fn discovery(State(state): State<Arc<ProviderState>>) -> Response {
    state.discovery_requests.fetch_add(1, Ordering::SeqCst);
    json_response(json!({
        "issuer": state.base,
        "jwks_uri": format!("{}/keys", state.base),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

fn json_response(body: Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
