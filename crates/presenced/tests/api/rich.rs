//! Rich notifications (`includeResourceData: true`), checked the way a
//! Graph client checks them: an independent implementation (Python's
//! `cryptography`, following Graph's documented steps, in
//! `sdk-tests/python/decrypt_notification.py`) decrypts them and verifies
//! the signature, and the `validationTokens` verify against the JWKS of
//! the built-in identity provider.

use std::io::Write;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use x509_cert::builder::{Builder, CertificateBuilder, profile::cabf::Root};
use x509_cert::der::Encode;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

use crate::helpers::{ADELE, APP, TENANT, TestServer, both};
use crate::notifications::{WAIT, request, server, set_presence, subscribe};
use crate::receiver::{Behaviour, Receiver};
use crate::sdk_env::{python, workspace};

/// A subscriber's key pair: the private key (PEM) and a self-signed
/// certificate (DER) for its public key.
struct Subscriber {
    private_pem: String,
    certificate: Vec<u8>,
}

fn subscriber() -> Subscriber {
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let subject = Name::from_str("CN=presence receiver,O=Contoso,C=US").unwrap();
    let spki = SubjectPublicKeyInfoOwned::from_key(&key.to_public_key()).unwrap();
    let builder = CertificateBuilder::new(
        Root::new(false, subject).unwrap(),
        SerialNumber::from(7u32),
        Validity::from_now(Duration::from_secs(3600)).unwrap(),
        spki,
    )
    .unwrap();
    let certificate = builder
        .build::<_, rsa::pkcs1v15::Signature>(&signer)
        .unwrap()
        .to_der()
        .unwrap();
    Subscriber {
        private_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        certificate,
    }
}

/// Runs the Python decryption on a collection: its output, or its error.
fn decrypt(collection: &Value, private_pem: &str) -> Result<Value, String> {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("subscriber.pem");
    std::fs::write(&key_file, private_pem).unwrap();
    let mut child = Command::new(python())
        .arg(workspace().join("sdk-tests/python/decrypt_notification.py"))
        .arg(&key_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(collection.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

async fn rich_subscription(server: &TestServer, hook: &Receiver, certificate: &[u8]) -> Value {
    let mut body = request(&hook.url, &format!("communications/presences/{ADELE}"));
    body["includeResourceData"] = json!(true);
    body["encryptionCertificate"] = json!(STANDARD.encode(certificate));
    body["encryptionCertificateId"] = json!("presence-cert-1");
    let answer = subscribe(server, body).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.json()
}

/// The one collection that carries `count` items in all, when it arrives.
async fn collection_with(hook: &Receiver, count: usize) -> Value {
    let items = hook.wait_for(count, WAIT).await;
    assert_eq!(items.len(), count, "{items:?}");
    hook.collections().last().cloned().unwrap()
}

both! {
#[tokio::test(flavor = "multi_thread")]
async fn rich_notifications_decrypt_with_graphs_documented_steps() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let subscriber = subscriber();
    let created = rich_subscription(&server, &hook, &subscriber.certificate).await;
    assert_eq!(created["includeResourceData"], true);
    assert_eq!(created["encryptionCertificateId"], "presence-cert-1");

    set_presence(&server, ADELE, "Busy", "InACall").await;
    let collection = collection_with(&hook, 1).await;
    let item = &collection["value"][0];
    assert_eq!(item["subscriptionId"], created["id"]);
    assert_eq!(item["resourceData"]["id"], ADELE);
    let thumbprint: String = Sha1::digest(&subscriber.certificate)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(
        item["encryptedContent"]["encryptionCertificateThumbprint"],
        thumbprint
    );

    let decrypted = decrypt(&collection, &subscriber.private_pem).unwrap();
    assert_eq!(
        decrypted,
        json!([{
            "resource": {
                "@odata.id": format!("users/{ADELE}/presence"),
                "@odata.type": "#microsoft.graph.presence",
                "id": ADELE,
                "availability": "Busy",
                "activity": "InACall",
            },
            "signatureValid": true,
            "encryptionCertificateId": "presence-cert-1",
            "encryptionCertificateThumbprint": thumbprint,
        }])
    );

    // A notification whose signature does not match is refused.
    let mut tampered = collection.clone();
    let signature = tampered["value"][0]["encryptedContent"]["dataSignature"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bytes = STANDARD.decode(signature).unwrap();
    bytes[0] ^= 1;
    tampered["value"][0]["encryptedContent"]["dataSignature"] = json!(STANDARD.encode(bytes));
    let error = decrypt(&tampered, &subscriber.private_pem).unwrap_err();
    assert!(error.contains("dataSignature"), "{error}");

    // A change by time alone carries the presence as it then reads.
    set_presence(&server, ADELE, "Available", "Available").await;
    hook.wait_for(2, WAIT).await;
    server.advance("PT5M").await;
    let collection = collection_with(&hook, 3).await;
    let decrypted = decrypt(&collection, &subscriber.private_pem).unwrap();
    let [availability, activity] = server.presence_of(ADELE).await;
    assert_eq!(activity, "AvailableInactive");
    assert_eq!(decrypted[0]["resource"]["availability"], availability);
    assert_eq!(decrypted[0]["resource"]["activity"], activity);
}
}

both! {
#[tokio::test(flavor = "multi_thread")]
async fn validation_tokens_verify_against_the_identity_providers_keys() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let subscriber = subscriber();
    rich_subscription(&server, &hook, &subscriber.certificate).await;
    set_presence(&server, ADELE, "Busy", "InACall").await;
    let collection = collection_with(&hook, 1).await;
    let tokens = collection["validationTokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{collection}");

    let keys: JwkSet = server
        .client
        .get(server.url(&format!("/{TENANT}/discovery/v2.0/keys")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tokens[0].as_str().unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let key = DecodingKey::from_jwk(keys.find(&kid).unwrap()).unwrap();
    let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[APP]);
    validation.set_issuer(&[format!("https://sts.windows.net/{TENANT}/")]);
    validation.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["appid"], "0bf30f3b-4a52-48df-9a82-234910c4a086");
    assert_eq!(claims["tid"], TENANT);

    // A basic subscription's notifications carry no validation tokens.
    let basic = Receiver::start(Behaviour::Healthy).await;
    let megan = server.token(TENANT, Some(crate::helpers::MEGAN), "Presence.Read.All");
    let answer = server
        .post(
            "/v1.0/subscriptions",
            &megan,
            request(&basic.url, &format!("communications/presences/{ADELE}")),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    set_presence(&server, ADELE, "Away", "Away").await;
    basic.wait_for(1, WAIT).await;
    assert!(basic.collections()[0].get("validationTokens").is_none());
}
}
