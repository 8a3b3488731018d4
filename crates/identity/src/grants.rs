//! What the built-in identity provider remembers between two requests of a delegated sign-in:
//! authorization codes (in memory, single use, short-lived), refresh tokens (persisted hashed in the
//! data directory, rotated, a reused one revoking its family), PKCE verification, and id tokens.
//!
//! Codes and refresh tokens are 32 random bytes, base64url. Only their SHA-256 is kept, so a copy of
//! the data directory does not hold a usable refresh token. Times are passed in (`now`): codes and
//! refresh tokens live in real time, as access tokens do.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{FileCell, StateCell};
use crate::{DevIssuerKey, Guid, IdentityError};

/// How long an authorization code may be redeemed, as Entra's (10 minutes).
pub const CODE_LIFETIME: SignedDuration = SignedDuration::from_mins(10);
/// Codes waiting to be redeemed, at most; the oldest are dropped beyond.
const MAX_CODES: usize = 10_000;
/// Refresh tokens kept, at most (used ones included, to detect replay); the soonest to expire are
/// dropped beyond.
pub const MAX_REFRESH_TOKENS: usize = 50_000;
/// The refresh-token file, relative to the data directory.
pub const REFRESH_FILE: &str = "identity/refresh-tokens.json";

/// What a delegated sign-in granted: who, to which app, with which scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(with = "crate::registry::guid_text")]
    pub tenant: Guid,
    #[serde(with = "crate::registry::guid_text")]
    pub app: Guid,
    #[serde(with = "crate::registry::guid_text")]
    pub user: Guid,
    /// Delegated permissions (the access token's `scp`).
    pub scopes: Vec<String>,
    /// `openid`, `profile`, `email`, `offline_access` as asked.
    pub oidc: Vec<String>,
}

impl Grant {
    pub fn asked(&self, oidc_scope: &str) -> bool {
        self.oidc.iter().any(|s| s.eq_ignore_ascii_case(oidc_scope))
    }
}

/// An authorization code's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub grant: Grant,
    /// The redirect URI the code was sent to: the token request must name the same.
    pub redirect_uri: String,
    /// PKCE's S256 challenge, if the client sent one.
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub expires: Timestamp,
}

/// Codes issued and not yet redeemed: in this process's memory, or in a [`StateCell`] that several
/// nodes share (then a code issued by one node is redeemed on any, once).
#[derive(Debug, Default)]
pub struct CodeStore {
    codes: Mutex<HashMap<String, AuthorizationCode>>,
    /// Where the codes live instead of `codes`, when shared.
    cell: Option<Box<dyn StateCell>>,
}

/// An authorization code as a shared cell keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCode {
    grant: Grant,
    redirect_uri: String,
    code_challenge: Option<String>,
    nonce: Option<String>,
    /// Unix milliseconds.
    expires: i64,
}

impl StoredCode {
    fn from_code(code: &AuthorizationCode) -> StoredCode {
        StoredCode {
            grant: code.grant.clone(),
            redirect_uri: code.redirect_uri.clone(),
            code_challenge: code.code_challenge.clone(),
            nonce: code.nonce.clone(),
            expires: code.expires.as_millisecond(),
        }
    }

    fn into_code(self) -> Option<AuthorizationCode> {
        Some(AuthorizationCode {
            grant: self.grant,
            redirect_uri: self.redirect_uri,
            code_challenge: self.code_challenge,
            nonce: self.nonce,
            expires: Timestamp::from_millisecond(self.expires).ok()?,
        })
    }
}

/// Drops expired codes, and the soonest to expire beyond [`MAX_CODES`] - 1.
fn make_room<V>(codes: &mut HashMap<String, V>, expires: impl Fn(&V) -> i64, now: Timestamp) {
    codes.retain(|_, c| expires(c) > now.as_millisecond());
    if codes.len() >= MAX_CODES
        && let Some(oldest) = codes
            .iter()
            .min_by_key(|(_, c)| expires(c))
            .map(|(k, _)| k.clone())
    {
        codes.remove(&oldest);
    }
}

impl CodeStore {
    /// Codes kept in `cell`, shared with every node that uses it. Its calls block: use the store
    /// off the async executor (`spawn_blocking`).
    pub fn in_cell(cell: Box<dyn StateCell>) -> CodeStore {
        CodeStore {
            codes: Mutex::default(),
            cell: Some(cell),
        }
    }

    /// Whether the codes live in a shared cell (whose calls block).
    pub fn is_shared(&self) -> bool {
        self.cell.is_some()
    }

    /// Remembers `code` and returns the text to hand the client.
    pub fn issue(&self, code: AuthorizationCode, now: Timestamp) -> Result<String, IdentityError> {
        let text = random_token()?;
        if let Some(cell) = &self.cell {
            let stored = StoredCode::from_code(&code);
            update_cell(cell.as_ref(), |codes: &mut HashMap<String, StoredCode>| {
                make_room(codes, |c| c.expires, now);
                codes.insert(digest(&text), stored.clone());
                ((), true)
            })?;
            return Ok(text);
        }
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        make_room(&mut codes, |c| c.expires.as_millisecond(), now);
        codes.insert(digest(&text), code);
        Ok(text)
    }

    /// The code's record, once: a second redemption, an unknown or an expired code get `None`.
    pub fn redeem(
        &self,
        text: &str,
        now: Timestamp,
    ) -> Result<Option<AuthorizationCode>, IdentityError> {
        let key = digest(text);
        if let Some(cell) = &self.cell {
            let stored = update_cell(cell.as_ref(), |codes: &mut HashMap<String, StoredCode>| {
                let found = codes.remove(&key);
                let changed = found.is_some();
                (found, changed)
            })?;
            return Ok(stored
                .and_then(StoredCode::into_code)
                .filter(|code| code.expires > now));
        }
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        Ok(codes.remove(&key).filter(|code| code.expires > now))
    }
}

/// Read-modify-write of a JSON map in `cell`, redone on fresh contents when another writer came first;
/// `change` says whether to write.
fn update_cell<V, T>(
    cell: &dyn StateCell,
    mut change: impl FnMut(&mut HashMap<String, V>) -> (T, bool),
) -> Result<T, IdentityError>
where
    V: Serialize + serde::de::DeserializeOwned,
{
    for _ in 0..crate::state::MAX_ATTEMPTS {
        let (bytes, version) = cell.read()?;
        let mut map: HashMap<String, V> = match bytes {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| IdentityError::KeyFormat {
                    path: cell.location().into(),
                    reason: format!("not a code list: {e}"),
                })?
            }
            None => HashMap::new(),
        };
        let (out, write) = change(&mut map);
        if !write {
            return Ok(out);
        }
        let bytes = serde_json::to_vec(&map).expect("codes serialise");
        if cell.write(version, &bytes)? {
            return Ok(out);
        }
    }
    Err(IdentityError::Shared {
        location: cell.location(),
        reason: "the codes kept changing under this write; try again".into(),
    })
}

/// Whether `verifier` answers the S256 `challenge` (RFC 7636): BASE64URL(SHA-256(verifier)), the
/// verifier 43 to 128 unreserved characters.
pub fn pkce_matches(challenge: &str, verifier: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    well_formed && constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// Whether `challenge` has the shape of an S256 challenge (43 base64url characters).
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One refresh token's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RefreshRecord {
    grant: Grant,
    /// Tokens rotated from one sign-in share a family; replaying a used one revokes it all.
    family: String,
    /// Unix seconds.
    expires: i64,
    /// Whether the family's expiry is fixed (single-page apps: 24 hours from sign-in, as Entra).
    fixed_expiry: bool,
    used: bool,
}

/// The outcome of redeeming a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The grant, and the rotated refresh token that replaces the redeemed one.
    Rotated { grant: Grant, refresh_token: String },
    /// Unknown or expired.
    Invalid,
    /// Already redeemed once: the whole family is now revoked.
    Reused,
}

/// Refresh tokens, kept hashed in a [`StateCell`]: `<data-dir>/identity/refresh-tokens.json` on one
/// node, the shared store when several serve (written whole on every change; bounded by
/// [`MAX_REFRESH_TOKENS`]; expired ones pruned on each write). Every operation reads the current
/// records first, so a token issued by one node is redeemed on another, and a write that lost a race
/// with another node is redone on the fresh records (a token is rotated once, whichever node is asked).
#[derive(Debug)]
pub struct RefreshTokens {
    cell: Box<dyn StateCell>,
    /// One operation at a time in this process.
    lock: Mutex<()>,
}

type Records = HashMap<String, RefreshRecord>;

impl RefreshTokens {
    /// The refresh tokens of a data directory (none if there is no file yet).
    pub fn load(data_dir: &Path) -> Result<RefreshTokens, IdentityError> {
        RefreshTokens::in_cell(Box::new(FileCell::new(data_dir.join(REFRESH_FILE))))
    }

    /// The refresh tokens kept in `cell`; fails if what it holds is not refresh tokens.
    pub fn in_cell(cell: Box<dyn StateCell>) -> Result<RefreshTokens, IdentityError> {
        let tokens = RefreshTokens {
            cell,
            lock: Mutex::new(()),
        };
        tokens.read()?;
        Ok(tokens)
    }

    fn read(&self) -> Result<(Records, u64), IdentityError> {
        let (bytes, version) = self.cell.read()?;
        let records = match bytes {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| IdentityError::KeyFormat {
                    path: self.cell.location().into(),
                    reason: format!("not a refresh-token file: {e}"),
                })?
            }
            None => HashMap::new(),
        };
        Ok((records, version))
    }

    /// Runs `change` on the current records and writes them if it says so, redoing it on fresh
    /// records when another writer came first.
    fn update<T>(
        &self,
        now: Timestamp,
        mut change: impl FnMut(&mut Records) -> Result<(T, bool), IdentityError>,
    ) -> Result<T, IdentityError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..crate::state::MAX_ATTEMPTS {
            let (mut records, version) = self.read()?;
            let (out, write) = change(&mut records)?;
            if !write || self.save(&mut records, version, now)? {
                return Ok(out);
            }
        }
        Err(IdentityError::Shared {
            location: self.cell.location(),
            reason: "the refresh tokens kept changing under this write; try again".into(),
        })
    }

    /// A new refresh token for `grant` (a new family), valid for `lifetime`; `fixed` if rotation must
    /// not extend it.
    pub fn issue(
        &self,
        grant: Grant,
        lifetime: SignedDuration,
        fixed: bool,
        now: Timestamp,
    ) -> Result<String, IdentityError> {
        let family = random_token()?;
        let expires = now.as_second().saturating_add(lifetime.as_secs());
        let text = random_token()?;
        let record = RefreshRecord {
            grant,
            family,
            expires,
            fixed_expiry: fixed,
            used: false,
        };
        self.update(now, |records| {
            records.insert(digest(&text), record.clone());
            Ok(((), true))
        })?;
        Ok(text)
    }

    /// Redeems `text` for `app` in `tenant`: the grant and a rotated token (with `lifetime` from now,
    /// unless the family's expiry is fixed), or why not.
    pub fn redeem(
        &self,
        text: &str,
        tenant: Guid,
        app: Guid,
        lifetime: SignedDuration,
        now: Timestamp,
    ) -> Result<Refresh, IdentityError> {
        let key = digest(text);
        let rotated = random_token()?;
        self.update(now, |records| {
            let Some(record) = records.get(&key).cloned() else {
                return Ok((Refresh::Invalid, false));
            };
            if record.expires <= now.as_second()
                || record.grant.tenant != tenant
                || record.grant.app != app
            {
                return Ok((Refresh::Invalid, false));
            }
            if record.used {
                records.retain(|_, r| r.family != record.family);
                return Ok((Refresh::Reused, true));
            }
            if let Some(r) = records.get_mut(&key) {
                r.used = true;
            }
            let expires = if record.fixed_expiry {
                record.expires
            } else {
                now.as_second().saturating_add(lifetime.as_secs())
            };
            records.insert(
                digest(&rotated),
                RefreshRecord {
                    used: false,
                    expires,
                    ..record.clone()
                },
            );
            Ok((
                Refresh::Rotated {
                    grant: record.grant,
                    refresh_token: rotated.clone(),
                },
                true,
            ))
        })
    }

    /// Revokes every refresh token of `user` for `app` in `tenant` (sign-out).
    pub fn revoke(
        &self,
        tenant: Guid,
        app: Guid,
        user: Guid,
        now: Timestamp,
    ) -> Result<(), IdentityError> {
        self.update(now, |records| {
            let before = records.len();
            records.retain(|_, r| {
                !(r.grant.tenant == tenant && r.grant.app == app && r.grant.user == user)
            });
            Ok(((), records.len() != before))
        })
    }

    /// Prunes and writes `records` if the cell is still at `version`.
    fn save(
        &self,
        records: &mut Records,
        version: u64,
        now: Timestamp,
    ) -> Result<bool, IdentityError> {
        records.retain(|_, r| r.expires > now.as_second());
        if records.len() > MAX_REFRESH_TOKENS {
            let mut by_expiry: Vec<(i64, String)> = records
                .iter()
                .map(|(k, r)| (r.expires, k.clone()))
                .collect();
            by_expiry.sort();
            let excess = records.len() - MAX_REFRESH_TOKENS;
            for (_, key) in by_expiry.into_iter().take(excess) {
                records.remove(&key);
            }
        }
        let bytes = serde_json::to_vec(&*records).expect("refresh tokens serialise");
        self.cell.write(version, &bytes)
    }
}

/// The claims of an id token (OpenID Connect Core §2, as Entra's v2 id tokens).
#[derive(Debug, Serialize)]
pub struct IdTokenClaims<'a> {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    pub oid: String,
    pub preferred_username: &'a str,
    pub sub: String,
    pub tid: String,
    pub ver: &'static str,
}

impl DevIssuerKey {
    /// Signs an id token.
    pub fn id_token(&self, claims: &IdTokenClaims<'_>) -> Result<String, IdentityError> {
        self.sign(claims)
    }
}

fn random_token() -> Result<String, IdentityError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn digest(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn guid(n: u128) -> Guid {
        Guid::from_u128(n)
    }

    fn grant() -> Grant {
        Grant {
            tenant: guid(1),
            app: guid(2),
            user: guid(3),
            scopes: vec!["Presence.Read".into()],
            oidc: vec!["openid".into(), "offline_access".into()],
        }
    }

    #[test]
    fn pkce_s256_is_checked() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_s256_challenge(challenge));
        assert!(pkce_matches(challenge, verifier));
        assert!(!pkce_matches(
            challenge,
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"
        ));
        assert!(!pkce_matches(challenge, "short"));
        assert!(!pkce_matches(verifier, verifier));
        assert!(!is_s256_challenge("plain"));
    }

    #[test]
    fn codes_are_single_use_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let shared = || CodeStore::in_cell(Box::new(FileCell::new(dir.path().join("codes.json"))));
        // In memory; and in a cell, where another store on the same cell redeems it.
        for (issuer, redeemer) in [(CodeStore::default(), None), (shared(), Some(shared()))] {
            let redeemer = redeemer.as_ref().unwrap_or(&issuer);
            // Whole milliseconds, as a shared cell keeps them.
            let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
            let code = AuthorizationCode {
                grant: grant(),
                redirect_uri: "http://localhost/cb".into(),
                code_challenge: Some("challenge".into()),
                nonce: None,
                expires: now + CODE_LIFETIME,
            };
            let text = issuer.issue(code.clone(), now).unwrap();
            assert_eq!(redeemer.redeem(&text, now).unwrap(), Some(code.clone()));
            assert_eq!(redeemer.redeem(&text, now).unwrap(), None);
            assert_eq!(issuer.redeem(&text, now).unwrap(), None);
            let text = issuer.issue(code, now).unwrap();
            assert_eq!(redeemer.redeem(&text, now + CODE_LIFETIME).unwrap(), None);
            assert_eq!(redeemer.redeem("unknown", now).unwrap(), None);
        }
    }

    #[test]
    fn refresh_tokens_rotate_survive_a_reload_and_reuse_revokes_the_family() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::now();
        let day = SignedDuration::from_hours(24);
        let tokens = RefreshTokens::load(dir.path()).unwrap();
        let first = tokens.issue(grant(), day, false, now).unwrap();
        let Refresh::Rotated {
            refresh_token: second,
            grant: got,
        } = tokens.redeem(&first, guid(1), guid(2), day, now).unwrap()
        else {
            panic!("not rotated");
        };
        assert_eq!(got, grant());
        // Another app or tenant cannot redeem it.
        assert_eq!(
            tokens.redeem(&second, guid(1), guid(9), day, now).unwrap(),
            Refresh::Invalid
        );
        let reloaded = RefreshTokens::load(dir.path()).unwrap();
        let file = fs::read_to_string(dir.path().join(REFRESH_FILE)).unwrap();
        assert!(!file.contains(&second) && !file.contains(&first));
        // Replaying the first revokes the family: the second is refused too.
        assert_eq!(
            reloaded.redeem(&first, guid(1), guid(2), day, now).unwrap(),
            Refresh::Reused
        );
        assert_eq!(
            reloaded
                .redeem(&second, guid(1), guid(2), day, now)
                .unwrap(),
            Refresh::Invalid
        );
        // Expired tokens are refused.
        let third = reloaded.issue(grant(), day, true, now).unwrap();
        assert_eq!(
            reloaded
                .redeem(&third, guid(1), guid(2), day, now + day)
                .unwrap(),
            Refresh::Invalid
        );
    }
}
