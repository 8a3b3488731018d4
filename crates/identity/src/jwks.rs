//! JWK sets (RFC 7517): from a provider's `{"keys": [...]}` document to the keys presenced verifies with.
//!
//! Only signature keys presenced can use are kept: RSA keys (`n`, `e`, at least 2048 bits) for RS256 and
//! EC P-256 keys (`x`, `y`) for ES256. Everything else in a set (encryption keys, `oct` secrets, other
//! curves and algorithms) is skipped with a log line, never an error: providers publish such keys beside
//! their signing keys. A symmetric (`oct`) key in particular is never turned into a verification key, so a
//! token signed with HMAC can never verify here.
//!
//! This module knows the JWK format only: not where a set comes from (see `oidc`) nor how tokens are
//! checked (see `validate`).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use serde_json::Value;

use crate::validate::{SigningAlgorithm, VerificationKey};

/// The smallest RSA modulus accepted, in bits (RFC 7518 section 3.3).
const MIN_RSA_BITS: usize = 2048;

/// The keys of one JWK set that presenced can verify with, in the set's order.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
}

impl KeySet {
    pub fn new(keys: Vec<Arc<VerificationKey>>) -> KeySet {
        KeySet { keys }
    }

    /// Parses a JWK set document, keeping the usable keys. Fails only when the document as a whole is not
    /// a JWK set; a set without a single usable key is an error too, since it would refuse every token.
    pub fn parse(document: &[u8]) -> Result<KeySet, JwksError> {
        let document: JwkSetDocument =
            serde_json::from_slice(document).map_err(|e| JwksError::NotJwkSet(e.to_string()))?;
        let mut keys = Vec::new();
        for (index, jwk) in document.keys.iter().enumerate() {
            match Jwk::deserialize(jwk)
                .map_err(|e| e.to_string())
                .and_then(|jwk| jwk.verification_key())
            {
                Ok(key) => keys.push(Arc::new(key)),
                Err(reason) => {
                    tracing::info!(index, kid = %kid_of(jwk), %reason, "skipping a key of the JWK set");
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(KeySet { keys })
    }

    /// The key a token with header `kid` and `alg` asks for. A token without `kid` is answered only when
    /// the set holds exactly one key for its algorithm: guessing among several is not verifying.
    pub fn find(
        &self,
        kid: Option<&str>,
        algorithm: SigningAlgorithm,
    ) -> Option<Arc<VerificationKey>> {
        let mut candidates = self.keys.iter().filter(|key| key.answers(kid, algorithm));
        let first = candidates.next()?;
        (kid.is_some() || candidates.next().is_none()).then(|| Arc::clone(first))
    }

    /// Whether the set has a key with this `kid`, whatever its algorithm.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid() == Some(kid))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, for logs.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|key| key.kid()).collect()
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter()).finish()
    }
}

/// Why a document is not a usable JWK set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWK set ({0})")]
    NotJwkSet(String),
    #[error("the JWK set has no RS256 or ES256 signing key")]
    NoUsableKey,
}

#[derive(Deserialize)]
struct JwkSetDocument {
    /// Kept as raw JSON so that one odd key does not spoil the set.
    keys: Vec<Value>,
}

/// The members of a JWK presenced looks at; others (`x5c`, `x5t`, Entra's `issuer`) are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    key_ops: Option<Vec<String>>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl Jwk {
    fn verification_key(self) -> Result<VerificationKey, String> {
        if let Some(usage) = &self.usage
            && usage != "sig"
        {
            return Err(format!("its use is '{usage}', not 'sig'"));
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Err("its key_ops do not include 'verify'".into());
        }
        let (algorithm, key) = match self.kty.as_str() {
            "RSA" => (SigningAlgorithm::Rs256, self.rsa_key()?),
            "EC" => (SigningAlgorithm::Es256, self.ec_key()?),
            other => return Err(format!("key type '{other}' is not RSA or EC")),
        };
        if let Some(alg) = &self.alg
            && alg != algorithm.jose_name()
        {
            return Err(format!("its algorithm '{alg}' is not RS256 or ES256"));
        }
        Ok(VerificationKey::new(algorithm, self.kid, key))
    }

    fn rsa_key(&self) -> Result<DecodingKey, String> {
        let n = member(&self.n, "n")?;
        let e = member(&self.e, "e")?;
        let significant = n.iter().skip_while(|b| **b == 0).count();
        if significant * 8 < MIN_RSA_BITS {
            return Err(format!("its modulus is shorter than {MIN_RSA_BITS} bits"));
        }
        if e.is_empty() || e.len() > 8 {
            return Err("its exponent is not a small positive number".into());
        }
        Ok(DecodingKey::from_rsa_raw_components(&n, &e))
    }

    fn ec_key(&self) -> Result<DecodingKey, String> {
        match self.crv.as_deref() {
            Some("P-256") => {}
            Some(other) => return Err(format!("curve '{other}' is not P-256")),
            None => return Err("it has no 'crv'".into()),
        }
        let x = member(&self.x, "x")?;
        let y = member(&self.y, "y")?;
        if x.len() != 32 || y.len() != 32 {
            return Err("its coordinates are not 32 bytes each".into());
        }
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        Ok(DecodingKey::from_ec_der(&point))
    }
}

/// A base64url member of a JWK, decoded.
fn member(value: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    let text = value
        .as_deref()
        .ok_or_else(|| format!("it has no '{name}'"))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| format!("its '{name}' is not base64url"))
}

fn kid_of(jwk: &Value) -> &str {
    jwk.get("kid").and_then(Value::as_str).unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa(kid: &str) -> Value {
        let mut n = vec![0xc5; 256];
        n[255] = 0x01;
        json!({"kty": "RSA", "use": "sig", "kid": kid, "n": b64(&n), "e": "AQAB"})
    }

    fn ec(kid: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&[1; 32]), "y": b64(&[2; 32])})
    }

    fn parse(keys: Vec<Value>) -> Result<KeySet, JwksError> {
        KeySet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn rsa_and_p256_signing_keys_are_kept_and_everything_else_skipped() {
        let with = |edit: &dyn Fn(&mut Value), base: Value| {
            let mut key = base;
            edit(&mut key);
            key
        };
        let keys = vec![
            rsa("rsa"),
            ec("ec"),
            with(&|k| k["alg"] = json!("RS256"), rsa("rsa-alg")),
            with(&|k| k["alg"] = json!("ES256"), ec("ec-alg")),
            with(&|k| k["x5c"] = json!(["MIIC..."]), rsa("entra-like")),
            // Skipped, each for one reason:
            json!({"kty": "oct", "kid": "secret", "k": "c2VjcmV0"}),
            with(&|k| k["use"] = json!("enc"), rsa("enc")),
            with(&|k| k["key_ops"] = json!(["encrypt"]), rsa("ops")),
            with(&|k| k["alg"] = json!("PS256"), rsa("ps256")),
            with(&|k| k["alg"] = json!("HS256"), rsa("hs256")),
            with(&|k| k["n"] = json!(b64(&[0xc5; 128])), rsa("short")),
            with(&|k| k["n"] = json!("not base64!"), rsa("garbled")),
            with(&|k| k["e"] = json!(""), rsa("no-exponent")),
            with(&|k| k["crv"] = json!("P-384"), ec("p384")),
            with(&|k| k["x"] = json!(b64(&[1; 31])), ec("short-x")),
            with(&|k| k["y"] = Value::Null, ec("null-y")),
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(&[1; 32])}),
            json!("not an object"),
            json!({"kid": "no-kty"}),
        ];
        let set = parse(keys).expect("a usable set");
        assert_eq!(set.kids(), ["rsa", "ec", "rsa-alg", "ec-alg", "entra-like"]);
    }

    #[test]
    fn documents_that_are_not_jwk_sets_are_errors() {
        for document in [
            &b"<html>502 Bad Gateway</html>"[..],
            b"",
            b"{}",
            b"{\"keys\": {}}",
            b"[1, 2]",
        ] {
            assert!(
                matches!(KeySet::parse(document), Err(JwksError::NotJwkSet(_))),
                "{}",
                String::from_utf8_lossy(document)
            );
        }
        assert_eq!(parse(vec![]).unwrap_err(), JwksError::NoUsableKey);
        assert_eq!(
            parse(vec![json!({"kty": "oct", "k": "c2VjcmV0"})]).unwrap_err(),
            JwksError::NoUsableKey
        );
    }

    #[test]
    fn keys_are_found_by_kid_and_algorithm() {
        let set = parse(vec![rsa("a"), rsa("b"), ec("c")]).unwrap();
        let kid =
            |kid: Option<&str>, alg| set.find(kid, alg).and_then(|k| k.kid().map(String::from));
        assert_eq!(
            kid(Some("a"), SigningAlgorithm::Rs256).as_deref(),
            Some("a")
        );
        assert_eq!(
            kid(Some("c"), SigningAlgorithm::Es256).as_deref(),
            Some("c")
        );
        // A kid under another algorithm is no match: an RSA key never verifies an ES256 token.
        assert_eq!(kid(Some("a"), SigningAlgorithm::Es256), None);
        assert_eq!(kid(Some("z"), SigningAlgorithm::Rs256), None);
        // Without a kid: the only ES256 key answers, the two RSA keys do not.
        assert_eq!(kid(None, SigningAlgorithm::Es256).as_deref(), Some("c"));
        assert_eq!(kid(None, SigningAlgorithm::Rs256), None);
        assert!(set.knows("a") && !set.knows("z"));
    }
}
