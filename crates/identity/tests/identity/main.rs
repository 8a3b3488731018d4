//! Minting and validating tokens end to end, with keys in a data directory as the server and
//! `presenced token` use them.

mod claims;
mod header;
mod lifetime;
mod mint;
mod trust;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presenced_identity::{
    AuthError, DevIssuer, DevIssuerKey, GRAPH_APP_ID, GRAPH_AUDIENCE, Guid,
    PERSONAL_ACCOUNT_TENANT, Principal, PrincipalKind, Subject, TokenRequest, Validator,
    ValidatorConfig, dev_issuer, service_principal_id,
};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};

/// A data directory with its key, created once per test binary (RSA key generation is slow).
struct DataDir {
    _dir: tempfile::TempDir,
    key: DevIssuerKey,
    /// The same private key, to sign hand-made tokens.
    signer: EncodingKey,
}

impl DataDir {
    fn new() -> DataDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DevIssuerKey::load_or_create(dir.path()).expect("key");
        let pem = std::fs::read_to_string(key.path()).expect("key file");
        let private = rsa::PrivateKey::from_pkcs8_pem(&pem).expect("PKCS#8");
        let signer = EncodingKey::from_rsa_der(private.to_pkcs1_der().expect("DER").as_bytes());
        DataDir {
            _dir: dir,
            key,
            signer,
        }
    }
}

static DEV: LazyLock<DataDir> = LazyLock::new(DataDir::new);
/// Another data directory: another key.
static OTHER: LazyLock<DataDir> = LazyLock::new(DataDir::new);

const TENANT: &str = "6e4d9b3a-1111-4000-8000-00000000000a";
const USER: &str = "0f2f3c4d-2222-4000-8000-00000000000b";
const APP: &str = "5a7b8c9d-3333-4000-8000-00000000000c";

fn guid(text: &str) -> Guid {
    Guid::parse(text).expect("guid")
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_780_000_000).expect("timestamp")
}

fn delegated(scopes: &str) -> TokenRequest {
    TokenRequest {
        tenant: guid(TENANT),
        app: guid(APP),
        subject: Subject::Delegated {
            user: guid(USER),
            scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        },
        lifetime: SignedDuration::from_hours(1),
    }
}

fn application(roles: &[&str]) -> TokenRequest {
    TokenRequest {
        tenant: guid(TENANT),
        app: guid(APP),
        subject: Subject::Application {
            roles: roles.iter().map(|r| r.to_string()).collect(),
        },
        lifetime: SignedDuration::from_hours(1),
    }
}

/// A clock tests move by hand.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn at(now: Timestamp) -> TestClock {
        TestClock(Arc::new(AtomicI64::new(now.as_second())))
    }

    fn set(&self, now: Timestamp) {
        self.0.store(now.as_second(), Ordering::SeqCst);
    }
}

/// A validator trusting the dev key, at `clock`'s time.
fn validator(clock: &TestClock) -> Validator {
    let clock = clock.clone();
    Validator::new(
        ValidatorConfig::default(),
        vec![Arc::new(DevIssuer::new(&DEV.key))],
    )
    .with_clock(move || Timestamp::from_second(clock.0.load(Ordering::SeqCst)).expect("time"))
}

fn validate_at(now: Timestamp, token: &str) -> Result<Principal, AuthError> {
    validator(&TestClock::at(now)).validate(Some(format!("Bearer {token}").as_bytes()))
}

fn mint(request: &TokenRequest) -> String {
    DEV.key.mint(request, t0()).expect("mint")
}

fn segments(token: &str) -> Vec<Value> {
    token
        .split('.')
        .take(2)
        .map(|s| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("b64")).expect("json"))
        .collect()
}

/// The claims of a freshly minted delegated token, to be edited and re-signed.
fn minted_claims() -> Value {
    segments(&mint(&delegated("Presence.Read")))[1].clone()
}

/// Signs `claims` with the dev key (or `signer`), kid and all, as a well-behaved issuer would.
fn sign_with(signer: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, signer).expect("sign")
}

fn sign(claims: &Value) -> String {
    sign_with(&DEV.signer, DEV.key.kid(), claims)
}

fn edited(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut claims = minted_claims();
    edit(claims.as_object_mut().expect("object"));
    sign(&claims)
}
