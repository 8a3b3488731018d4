//! The development issuer's signing key: one RS256 key per data directory.
//!
//! The server creates the key on its first start; `presenced token` loads the same file to mint tokens,
//! possibly while the server runs, possibly racing it on a fresh directory. Creation is therefore
//! race-safe: the key is written to a private temporary file and published with a hard link, which fails
//! if the key already exists, so every process ends up with the first key published.
//!
//! This module knows files, PEM and JWK. It does not know tokens' claims (see `mint`) or how tokens are
//! checked (see `validate`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::IdentityError;
use crate::validate::{SigningAlgorithm, VerificationKey};

/// The key file, relative to the data directory.
pub const KEY_FILE: &str = "keys/issuer-rs256.pem";

/// Modulus size of a created key: what Entra ID signs with.
const KEY_BITS: usize = 2048;

/// The development issuer's RSA key pair, loaded from (or created in) a data directory.
#[derive(Clone)]
pub struct DevIssuerKey {
    /// The private key, for signing. Signatures are made by ring, whose RSA
    /// private-key operations are constant-time and blinded; the `rsa` crate
    /// only creates keys and reads their files (RUSTSEC-2023-0071).
    signing: Arc<ring::rsa::KeyPair>,
    /// The public half, shared with the validator's dev issuer.
    verification: Arc<VerificationKey>,
    /// RFC 7638 thumbprint of the public key: the `kid` of every token and of the JWK.
    kid: String,
    /// The modulus, base64url without padding, as it appears in the JWK.
    n: String,
    /// The public exponent, base64url without padding.
    e: String,
    /// Where the key lives, for messages.
    path: PathBuf,
}

impl std::fmt::Debug for DevIssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("DevIssuerKey")
            .field("kid", &self.kid)
            .field("path", &self.path)
            .finish()
    }
}

impl DevIssuerKey {
    /// Loads `<data_dir>/keys/issuer-rs256.pem`, creating the directory and a new 2048-bit key (mode 0600)
    /// first if there is none. Safe to call from several processes at once: all of them get the same key.
    pub fn load_or_create(data_dir: &Path) -> Result<DevIssuerKey, IdentityError> {
        load_or_insert(data_dir, generate)
    }

    /// A key from its PKCS#8 PEM text, as [`DevIssuerKey::generate_pem`] makes it; `origin` names where
    /// the text came from, for messages (a shared store's key, say).
    pub fn from_pem(pem: &str, origin: PathBuf) -> Result<DevIssuerKey, IdentityError> {
        parse(pem, origin)
    }

    /// A new 2048-bit key as PKCS#8 PEM text, for a store that keeps the key somewhere else than a
    /// data directory.
    pub fn generate_pem() -> Result<String, IdentityError> {
        let key = generate()?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|err| IdentityError::KeyGeneration(err.to_string()))?;
        Ok(pem.to_string())
    }

    /// The key id (`kid`) stamped on minted tokens: the RFC 7638 JWK thumbprint, base64url SHA-256.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The file the key was loaded from (or the name of its place in a shared store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public key as a JWK set (`{"keys": [{"kty": "RSA", ...}]}`), as a discovery endpoint serves it.
    pub fn jwks_json(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": self.kid,
                "n": self.n,
                "e": self.e,
            }]
        })
    }

    /// The public half, as the validator's issuers hold keys.
    pub fn verification_key(&self) -> Arc<VerificationKey> {
        Arc::clone(&self.verification)
    }

    /// A compact RS256 JWS of `claims` under `header`.
    pub(crate) fn sign_jwt<T: serde::Serialize>(
        &self,
        header: &jsonwebtoken::Header,
        claims: &T,
    ) -> Result<String, IdentityError> {
        let mut token = URL_SAFE_NO_PAD.encode(to_json(header)?);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(to_json(claims)?));
        let mut signature = vec![0u8; self.signing.public().modulus_len()];
        self.signing
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| IdentityError::Signing("the RSA signature failed".to_owned()))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    fn from_private_key(
        key: &rsa::PrivateKey,
        path: PathBuf,
    ) -> Result<DevIssuerKey, IdentityError> {
        let der = key.to_pkcs1_der().map_err(|err| IdentityError::KeyFormat {
            path: path.clone(),
            reason: err.to_string(),
        })?;
        let n_bytes = key.n_bytes();
        let e_bytes = key.e_bytes();
        let n = URL_SAFE_NO_PAD.encode(&n_bytes);
        let e = URL_SAFE_NO_PAD.encode(&e_bytes);
        // RFC 7638 §3.2: the required members, in lexicographic order, no whitespace. Base64url text needs no
        // JSON escaping.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let verification = Arc::new(VerificationKey::new(
            SigningAlgorithm::Rs256,
            Some(kid.clone()),
            DecodingKey::from_rsa_raw_components(&n_bytes, &e_bytes),
        ));
        let signing = ring::rsa::KeyPair::from_der(der.as_bytes()).map_err(|err| {
            IdentityError::KeyFormat {
                path: path.clone(),
                reason: err.to_string(),
            }
        })?;
        Ok(DevIssuerKey {
            signing: Arc::new(signing),
            verification,
            kid,
            n,
            e,
            path,
        })
    }
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, IdentityError> {
    serde_json::to_vec(value).map_err(|err| IdentityError::Signing(err.to_string()))
}

/// A fresh 2048-bit key with public exponent 65537, from the operating system's RNG.
fn generate() -> Result<rsa::PrivateKey, IdentityError> {
    rsa::PrivateKey::new(&mut getrandom::SysRng, KEY_BITS)
        .map_err(|err| IdentityError::KeyGeneration(err.to_string()))
}

/// [`DevIssuerKey::load_or_create`] with the key source as a parameter, so that tests can race two
/// creators without paying for RSA key generation.
fn load_or_insert(
    data_dir: &Path,
    make_key: impl FnOnce() -> Result<rsa::PrivateKey, IdentityError>,
) -> Result<DevIssuerKey, IdentityError> {
    let path = data_dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(pem) => return parse(&pem, path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(IdentityError::Io { path, source }),
    }
    let dir = path.parent().expect("KEY_FILE has a directory");
    create_private_dir(dir).map_err(|source| IdentityError::Io {
        path: dir.to_owned(),
        source,
    })?;

    let key = make_key()?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|err| IdentityError::KeyFormat {
            path: path.clone(),
            reason: err.to_string(),
        })?;
    let temp = dir.join(format!(
        ".issuer-rs256.pem.{}.{}.tmp",
        std::process::id(),
        unique_suffix()
    ));
    let published = write_private_file(&temp, pem.as_bytes())
        .and_then(|()| publish(&temp, &path))
        .map_err(|source| IdentityError::Io {
            path: path.clone(),
            source,
        });
    // Whatever happened, the temporary name goes: the key (if published) lives on under `path`.
    let _ = fs::remove_file(&temp);
    match published? {
        Published::Ours => DevIssuerKey::from_private_key(&key, path),
        Published::Theirs => {
            let pem = fs::read_to_string(&path).map_err(|source| IdentityError::Io {
                path: path.clone(),
                source,
            })?;
            parse(&pem, path)
        }
    }
}

fn parse(pem: &str, path: PathBuf) -> Result<DevIssuerKey, IdentityError> {
    let key = rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|err| IdentityError::KeyFormat {
        path: path.clone(),
        reason: err.to_string(),
    })?;
    DevIssuerKey::from_private_key(&key, path)
}

/// Who won the race to publish the key file.
enum Published {
    Ours,
    Theirs,
}

/// Gives the complete file at `temp` the name `path`, unless `path` exists. A hard link is atomic and never
/// replaces an existing name, so a reader sees either no key or a whole one.
fn publish(temp: &Path, path: &Path) -> io::Result<Published> {
    match fs::hard_link(temp, path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(Published::Ours)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(Published::Theirs),
        Err(err) => Err(err),
    }
}

/// A suffix that keeps two threads of one process apart (the process id keeps processes apart).
fn unique_suffix() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Writes `bytes` to a new file readable by its owner only, and makes it durable.
fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Barrier, LazyLock};

    use super::*;

    /// Two keys, generated once for this test binary.
    static KEYS: LazyLock<[rsa::PrivateKey; 2]> =
        LazyLock::new(|| [generate().expect("key"), generate().expect("key")]);

    fn thumbprint(key: &rsa::PrivateKey) -> String {
        DevIssuerKey::from_private_key(key, PathBuf::new())
            .expect("key")
            .kid
    }

    #[test]
    fn concurrent_creators_end_up_with_one_key() {
        let keys = &*KEYS;
        let dir = tempfile::tempdir().expect("tempdir");
        // Both threads get past "no key yet" before either publishes.
        let barrier = Barrier::new(2);
        let [first, second] = std::thread::scope(|scope| {
            let handles = keys.each_ref().map(|key| {
                let (barrier, dir) = (&barrier, dir.path());
                scope.spawn(move || {
                    load_or_insert(dir, || {
                        barrier.wait();
                        Ok(key.clone())
                    })
                    .expect("load_or_insert")
                })
            });
            handles.map(|handle| handle.join().expect("thread"))
        });
        assert_eq!(first.kid(), second.kid());
        assert!(keys.iter().any(|key| thumbprint(key) == first.kid()));
        let reloaded = load_or_insert(dir.path(), || panic!("the key exists")).expect("reload");
        assert_eq!(reloaded.kid(), first.kid());
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("keys"))
            .expect("keys dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["issuer-rs256.pem"]);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = load_or_insert(dir.path(), || Ok(KEYS[0].clone())).expect("create");
        let mode = fs::metadata(key.path())
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = fs::read_to_string(key.path()).expect("read");
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "PKCS#8 PEM: {pem}"
        );
    }

    #[test]
    fn corrupt_key_file_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
        fs::write(dir.path().join(KEY_FILE), "not a key").expect("write");
        let err =
            load_or_insert(dir.path(), || panic!("must not replace a key")).expect_err("corrupt");
        assert!(matches!(err, IdentityError::KeyFormat { .. }), "{err:?}");
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 §3.1's example key and thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let canonical = format!(r#"{{"e":"AQAB","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        assert_eq!(kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        // And a generated key's kid is computed the same way from its own n and e.
        let key = DevIssuerKey::from_private_key(&KEYS[0], PathBuf::new()).expect("key");
        let jwk = &key.jwks_json()["keys"][0];
        let canonical = format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap(),
            jwk["n"].as_str().unwrap()
        );
        assert_eq!(
            key.kid(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
        );
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(jwk["kid"], key.kid());
    }
}
