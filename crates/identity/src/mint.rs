//! Minting Entra-shaped access tokens with the development issuer's key.
//!
//! The tokens look like the v2 access tokens Entra ID issues for Microsoft Graph, so that apps and SDKs
//! see what they would see in production: `aud`, `iss`, `tid`, `oid`, `sub`, `scp` (delegated) or `roles`
//! (app-only), `appid` and `azp`, `idtyp`, `ver`, `iat`, `nbf`, `exp` and `uti`. Two simplifications, both
//! invisible to a client: `sub` equals `oid` (Entra makes it a pairwise id per app), and an app-only
//! token's `oid` is [`service_principal_id`] (Entra uses the id of the app's service principal object).
//!
//! This module does not know whether a token will be accepted for an operation (the API decides that).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::{SignedDuration, Timestamp};
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{DevIssuerKey, GRAPH_AUDIENCE, Guid, IdentityError};

/// The development issuer's `iss` for `tenant`, shaped like Entra's v2 issuer.
pub fn dev_issuer(tenant: Guid) -> String {
    format!("https://login.presenced.local/{tenant}/v2.0")
}

/// The issuer of the built-in identity provider reached at `base` (`scheme://authority`, no trailing
/// slash) for `tenant`: `{base}/{tenant}/v2.0`, as Entra's v2 issuer sits under its login host.
pub fn issuer_at(base: &str, tenant: Guid) -> String {
    format!("{base}/{tenant}/v2.0")
}

/// Whether `text` is a URL authority as presenced echoes it into issuers and discovery documents: a host
/// name (letters, digits, `-`, `.`, `_`), an IPv4 address or a bracketed IPv6 address, then optionally
/// `:port` (1 to 5 digits); at most 255 bytes. Nothing else (no user info, no path, no quotes, no spaces)
/// so that a `Host` header can never inject text into a JSON document or a URL.
pub fn is_authority(text: &str) -> bool {
    if text.is_empty() || text.len() > 255 {
        return false;
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => ("x", None),
            _ => match after.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// Whether `text` is an origin presenced may name its issuer under: `http://` or `https://` and an
/// [`is_authority`] authority, nothing after it.
pub fn is_origin(text: &str) -> bool {
    text.strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .is_some_and(is_authority)
}

/// The template of [`dev_issuer`]: `{tenantid}` stands for the token's `tid`.
pub const DEV_ISSUER_TEMPLATE: &str = "https://login.presenced.local/{tenantid}/v2.0";

/// What to put in a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The tenant (`tid`; also part of `iss`).
    pub tenant: Guid,
    /// The client application (`appid` and `azp`): an Entra application (client) id.
    pub app: Guid,
    /// Delegated (a user and scopes) or app-only (roles).
    pub subject: Subject,
    /// From `iat` to `exp`; whole seconds, at least one.
    pub lifetime: SignedDuration,
}

/// Whom a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The app acts as `user` (`oid`), with delegated `scopes` (`scp`, at least one).
    Delegated { user: Guid, scopes: Vec<String> },
    /// The app acts as itself with application `roles` (possibly none: Entra then omits the claim).
    Application { roles: Vec<String> },
}

/// The claims of a minted token, in the order Entra writes them.
#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    aud: &'static str,
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    /// v1's name for the client application; many libraries still read it.
    appid: &'a str,
    /// v2's name for the client application.
    azp: &'a str,
    idtyp: &'static str,
    oid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scp: Option<String>,
    sub: String,
    tid: String,
    /// A unique token id (Entra's `uti`: 16 random bytes, base64url).
    uti: String,
    ver: &'static str,
}

impl DevIssuerKey {
    /// Signs an access token for `request`, issued at `now`.
    ///
    /// `now` is the real time for a token that is to be used; tests pass other instants to make expired
    /// or not-yet-valid tokens.
    pub fn mint(&self, request: &TokenRequest, now: Timestamp) -> Result<String, IdentityError> {
        self.mint_issued_by(request, &dev_issuer(request.tenant), now)
    }

    /// Signs an access token for `request` whose `iss` is `issuer` (the built-in identity provider names
    /// the URL it was reached at: [`issuer_at`]).
    pub fn mint_issued_by(
        &self,
        request: &TokenRequest,
        issuer: &str,
        now: Timestamp,
    ) -> Result<String, IdentityError> {
        let lifetime = whole_seconds(request.lifetime)?;
        let issued = now.as_second();
        let expires = issued
            .checked_add(lifetime)
            .filter(|exp| Timestamp::from_second(*exp).is_ok())
            .ok_or_else(|| {
                IdentityError::InvalidRequest("the token would expire after year 9999".into())
            })?;

        let (oid, idtyp, scp, roles) = match &request.subject {
            Subject::Delegated { user, scopes } => {
                if scopes.is_empty() {
                    return Err(IdentityError::InvalidRequest(
                        "a delegated token needs at least one scope".into(),
                    ));
                }
                for scope in scopes {
                    check_word("scope", scope)?;
                }
                (*user, "user", Some(scopes.join(" ")), None)
            }
            Subject::Application { roles } => {
                for role in roles {
                    check_word("role", role)?;
                }
                let roles = (!roles.is_empty()).then_some(roles.as_slice());
                (
                    service_principal_id(request.tenant, request.app),
                    "app",
                    None,
                    roles,
                )
            }
        };

        let app = request.app.to_string();
        let claims = AccessTokenClaims {
            aud: GRAPH_AUDIENCE,
            iss: issuer.to_owned(),
            iat: issued,
            nbf: issued,
            exp: expires,
            appid: &app,
            azp: &app,
            idtyp,
            oid: oid.to_string(),
            roles,
            scp,
            sub: oid.to_string(),
            tid: request.tenant.to_string(),
            uti: unique_token_id()?,
            ver: "2.0",
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid().to_owned());
        self.sign_jwt(&header, &claims)
    }
}

/// The `oid` of app-only tokens for `app` in `tenant`: stable, distinct per (tenant, app), and never a
/// user's id by accident. It is a version-8 (custom) UUID made of the first 16 bytes of
/// SHA-256("presenced service principal" NUL tenant NUL app), the GUIDs in their lower-case text form.
pub fn service_principal_id(tenant: Guid, app: Guid) -> Guid {
    let mut hash = Sha256::new();
    hash.update(b"presenced service principal\0");
    hash.update(tenant.to_string().as_bytes());
    hash.update(b"\0");
    hash.update(app.to_string().as_bytes());
    let digest = hash.finalize();
    let mut bytes: [u8; 16] = digest[..16].try_into().expect("SHA-256 is 32 bytes");
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    Guid::from_bytes(bytes)
}

fn whole_seconds(lifetime: SignedDuration) -> Result<i64, IdentityError> {
    let seconds = lifetime.as_secs();
    if seconds < 1 {
        return Err(IdentityError::InvalidRequest(format!(
            "the lifetime must be at least one second, not {lifetime:#}"
        )));
    }
    Ok(seconds)
}

/// Scopes and roles travel in space-separated lists: one word each.
fn check_word(what: &str, value: &str) -> Result<(), IdentityError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(IdentityError::InvalidRequest(format!(
            "the {what} {value:?} must be non-empty, without spaces or control characters"
        )));
    }
    Ok(())
}

fn unique_token_id() -> Result<String, IdentityError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|err| IdentityError::KeyGeneration(err.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl DevIssuerKey {
    /// Signs arbitrary claims (an id token, say) as an RS256 JWT with this key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, IdentityError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid().to_owned());
        self.sign_jwt(&header, claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(text: &str) -> Guid {
        Guid::parse(text).expect("guid")
    }

    #[test]
    fn authorities_are_host_and_port_only() {
        for ok in [
            "127.0.0.1:8443",
            "localhost",
            "login.example.com",
            "[::1]:443",
            "[::1]",
            "my_host:1",
        ] {
            assert!(is_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "a\"b",
            "a b",
            "user@host",
            "host/path",
            "host:",
            "host:123456",
            "host:8a",
            "[::1",
            "[zz]",
            "[::1]x",
            "a:1:2",
            "h\u{e9}",
            "a\\b",
        ] {
            assert!(!is_authority(bad), "{bad:?}");
        }
        assert!(is_origin("https://127.0.0.1:8443"));
        assert!(is_origin("http://localhost"));
        assert!(!is_origin("https://127.0.0.1:8443/"));
        assert!(!is_origin("ftp://host"));
        assert!(!is_origin("https://"));
    }

    #[test]
    fn dev_issuer_names_the_tenant() {
        let tenant = guid("6E4D9B3A-0000-4000-8000-00000000000A");
        assert_eq!(
            dev_issuer(tenant),
            "https://login.presenced.local/6e4d9b3a-0000-4000-8000-00000000000a/v2.0"
        );
        assert_eq!(
            DEV_ISSUER_TEMPLATE.replace("{tenantid}", &tenant.to_string()),
            dev_issuer(tenant)
        );
    }

    #[test]
    fn service_principal_ids_are_stable_and_per_tenant_and_app() {
        let a = guid("00000000-0000-4000-8000-000000000001");
        let b = guid("00000000-0000-4000-8000-000000000002");
        let id = service_principal_id(a, b);
        assert_eq!(id, service_principal_id(a, b));
        assert_ne!(id, service_principal_id(b, b));
        assert_ne!(id, service_principal_id(a, a));
        assert_ne!(id, service_principal_id(b, a));
        let text = id.to_string();
        assert_eq!(&text[14..15], "8", "version 8: {text}");
        assert!(
            matches!(&text[19..20], "8" | "9" | "a" | "b"),
            "variant: {text}"
        );
    }

    #[test]
    fn lifetimes_are_whole_positive_seconds() {
        assert_eq!(
            whole_seconds(SignedDuration::from_secs(3600)).ok(),
            Some(3600)
        );
        assert_eq!(
            whole_seconds(SignedDuration::from_millis(1500)).ok(),
            Some(1)
        );
        assert!(whole_seconds(SignedDuration::from_millis(999)).is_err());
        assert!(whole_seconds(SignedDuration::from_secs(-60)).is_err());
    }

    #[test]
    fn scopes_and_roles_are_single_words() {
        assert!(check_word("scope", "Presence.Read").is_ok());
        for bad in ["", "Presence.Read Presence.ReadWrite", "a\tb", "a\u{0}"] {
            assert!(check_word("scope", bad).is_err(), "{bad:?}");
        }
    }
}
