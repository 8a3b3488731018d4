//! Trusted issuers: who may sign the tokens presenced accepts, with which keys, for which audiences.
//!
//! [`TrustedIssuer`] is the seam for issuers beyond the development one. An issuer says which `iss` values
//! are its own (an [`IssuerPattern`], per tenant like Entra's or fixed), hands out the public key for a
//! token's `kid` and `alg`, and lists the audiences it issues for. The validator does the rest (parsing,
//! signature, lifetime, claims), the same way for every issuer.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};

/// The origin `presenced token` names the development issuer by.
const DEV_ISSUER_HOME: &str = "https://login.presenced.local";
/// The path of the development issuer under its origin.
const DEV_ISSUER_PATH: &str = "/{tenantid}/v2.0";
use crate::{DevIssuerKey, GRAPH_APP_ID, GRAPH_AUDIENCE};

/// A signing algorithm presenced accepts. Anything else (`none`, the HMAC family, PS*, EdDSA) is refused
/// before any key is looked at, which rules out algorithm confusion: a public RSA key is never used as an
/// HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: what Entra ID signs with.
    Rs256,
    /// ECDSA P-256 with SHA-256: common among other OIDC providers.
    Es256,
}

impl SigningAlgorithm {
    /// The algorithm a JOSE header's `alg` names; names are case-sensitive (RFC 7518).
    pub fn from_jose(name: &str) -> Option<SigningAlgorithm> {
        match name {
            "RS256" => Some(SigningAlgorithm::Rs256),
            "ES256" => Some(SigningAlgorithm::Es256),
            _ => None,
        }
    }

    pub fn jose_name(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Es256 => "ES256",
        }
    }

    pub(crate) fn jsonwebtoken(self) -> Algorithm {
        match self {
            SigningAlgorithm::Rs256 => Algorithm::RS256,
            SigningAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// A public key that verifies one algorithm's signatures.
#[derive(Clone)]
pub struct VerificationKey {
    /// The only algorithm this key verifies: a token whose `alg` differs is refused.
    algorithm: SigningAlgorithm,
    /// The key id tokens name it by; `None` for a key that answers tokens without `kid`.
    kid: Option<String>,
    key: DecodingKey,
}

impl VerificationKey {
    pub fn new(
        algorithm: SigningAlgorithm,
        kid: Option<String>,
        key: DecodingKey,
    ) -> VerificationKey {
        VerificationKey {
            algorithm,
            kid,
            key,
        }
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// Whether this key is the one a token with header `kid` and `alg` asks for. A token without `kid`
    /// matches on the algorithm alone.
    pub fn answers(&self, kid: Option<&str>, algorithm: SigningAlgorithm) -> bool {
        self.algorithm == algorithm && kid.is_none_or(|kid| self.kid.as_deref() == Some(kid))
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish()
    }
}

/// The `iss` values of one issuer: a fixed string, or a template where `{tenantid}` stands for the token's
/// `tid` (as in Entra's `https://login.microsoftonline.com/{tenantid}/v2.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerPattern {
    /// The text before `{tenantid}`, or the whole issuer.
    prefix: String,
    /// The text after `{tenantid}`; `None` for a fixed issuer.
    suffix: Option<String>,
    /// The prefix is any origin ([`crate::mint::is_origin`]) followed by `prefix`.
    any_origin: bool,
    /// For an any-origin pattern, the origin that is the issuer's own name (see [`Self::vouches_for`]).
    home: Option<String>,
}

impl IssuerPattern {
    pub const TENANT_PLACEHOLDER: &'static str = "{tenantid}";

    /// A pattern from a template; without `{tenantid}` it matches that issuer exactly.
    pub fn new(template: &str) -> IssuerPattern {
        match template.split_once(Self::TENANT_PLACEHOLDER) {
            Some((prefix, suffix)) => IssuerPattern {
                prefix: prefix.to_owned(),
                suffix: Some(suffix.to_owned()),
                any_origin: false,
                home: None,
            },
            None => IssuerPattern {
                prefix: template.to_owned(),
                suffix: None,
                any_origin: false,
                home: None,
            },
        }
    }

    /// A per-tenant pattern under any origin: `{origin}/{tenantid}/v2.0` for `path_template`
    /// `/{tenantid}/v2.0`, where the origin is `http(s)://` and a plain authority (host and port). The
    /// built-in identity provider names its issuer after the URL a client reached it at.
    /// `home` is the origin the issuer is known by: see [`Self::vouches_for`].
    pub fn any_origin(home: &str, path_template: &str) -> IssuerPattern {
        let (prefix, suffix) = path_template
            .split_once(Self::TENANT_PLACEHOLDER)
            .unwrap_or((path_template, ""));
        IssuerPattern {
            prefix: prefix.to_owned(),
            suffix: Some(suffix.to_owned()),
            any_origin: true,
            home: Some(home.to_owned()),
        }
    }

    /// Whether a token whose `iss` this pattern recognises but whose key the issuer lacks is the
    /// issuer's with an unknown key (`true`) rather than a stranger's (`false`): an any-origin pattern
    /// vouches only for its home origin, so a foreign issuer's token reads "invalid issuer".
    pub fn vouches_for(&self, iss: &str) -> bool {
        match &self.home {
            None => true,
            Some(home) => iss
                .strip_prefix(home.as_str())
                .is_some_and(|rest| rest.starts_with('/')),
        }
    }

    /// Whether `iss` has this issuer's shape (for a template: any non-empty tenant segment without `/`).
    pub fn recognises(&self, iss: &str) -> bool {
        match &self.suffix {
            None => iss == self.prefix,
            Some(suffix) => self.tenant_segment(iss, suffix).is_some(),
        }
    }

    /// Whether `iss` is this issuer's for tenant `tid`: the tenant segment must be `tid` (letter case
    /// aside). A fixed issuer agrees with every tenant.
    pub fn agrees_with(&self, iss: &str, tid: &str) -> bool {
        match &self.suffix {
            None => iss == self.prefix,
            Some(suffix) => self
                .tenant_segment(iss, suffix)
                .is_some_and(|segment| segment.eq_ignore_ascii_case(tid)),
        }
    }

    fn tenant_segment<'a>(&self, iss: &'a str, suffix: &str) -> Option<&'a str> {
        let iss = if self.any_origin {
            let after_scheme = iss
                .strip_prefix("https://")
                .or_else(|| iss.strip_prefix("http://"))?;
            let end = after_scheme.find('/')?;
            if !crate::mint::is_authority(&after_scheme[..end]) {
                return None;
            }
            &after_scheme[end..]
        } else {
            iss
        };
        let segment = iss
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(suffix)?;
        (!segment.is_empty() && !segment.contains('/')).then_some(segment)
    }
}

/// An issuer whose tokens presenced accepts.
///
/// Implementations answer from memory and never block: `validate` runs on the request path. An issuer
/// backed by a remote JWKS answers from its current key set and refreshes it elsewhere (for instance when
/// asked for an unknown `kid`).
pub trait TrustedIssuer: Send + Sync + fmt::Debug {
    /// The `iss` values this issuer signs with.
    fn pattern(&self) -> &IssuerPattern;

    /// The key for a token whose header names `kid` and `algorithm`, if the issuer has one.
    fn verification_key(
        &self,
        kid: Option<&str>,
        algorithm: SigningAlgorithm,
    ) -> Option<Arc<VerificationKey>>;

    /// The `aud` values accepted from this issuer (any one of them).
    fn audiences(&self) -> &[String];
}

/// The development issuer: tokens minted by `presenced token` with the data directory's key.
///
/// Its `iss` is `{origin}/{tenantid}/v2.0`: `presenced token` writes `https://login.presenced.local`, the
/// built-in identity provider the URL it was reached at (or the configured public URL). Any `http(s)`
/// origin is accepted, because only presenced holds the key: the signature, `tid` agreeing with the
/// issuer's tenant segment, the audience and the lifetime are checked as for every issuer. Its audience is
/// Microsoft Graph (as the URL or as Graph's app id).
#[derive(Debug, Clone)]
pub struct DevIssuer {
    pattern: IssuerPattern,
    key: Arc<VerificationKey>,
    /// Graph's audience in both spellings.
    audiences: Vec<String>,
}

impl DevIssuer {
    /// Trusts tokens signed with `key`'s private half. Only the public key is kept.
    pub fn new(key: &DevIssuerKey) -> DevIssuer {
        DevIssuer {
            pattern: IssuerPattern::any_origin(DEV_ISSUER_HOME, DEV_ISSUER_PATH),
            key: key.verification_key(),
            audiences: vec![GRAPH_AUDIENCE.to_owned(), GRAPH_APP_ID.to_owned()],
        }
    }
}

impl TrustedIssuer for DevIssuer {
    fn pattern(&self) -> &IssuerPattern {
        &self.pattern
    }

    fn verification_key(
        &self,
        kid: Option<&str>,
        algorithm: SigningAlgorithm,
    ) -> Option<Arc<VerificationKey>> {
        self.key
            .answers(kid, algorithm)
            .then(|| Arc::clone(&self.key))
    }

    fn audiences(&self) -> &[String] {
        &self.audiences
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mint::DEV_ISSUER_TEMPLATE;

    #[test]
    fn templated_issuers_match_any_tenant_segment_and_check_it_against_tid() {
        let pattern = IssuerPattern::new(DEV_ISSUER_TEMPLATE);
        let tid = "6e4d9b3a-0000-4000-8000-00000000000a";
        let iss = format!("https://login.presenced.local/{tid}/v2.0");
        assert!(pattern.recognises(&iss));
        assert!(pattern.agrees_with(&iss, tid));
        assert!(pattern.agrees_with(&iss, &tid.to_uppercase()));
        assert!(!pattern.agrees_with(&iss, "6e4d9b3a-0000-4000-8000-00000000000b"));
        for other in [
            "https://login.presenced.local//v2.0",
            "https://login.presenced.local/a/b/v2.0",
            "https://login.presenced.local/x/v1.0",
            "https://login.microsoftonline.com/x/v2.0",
            "https://login.presenced.local/x/v2.0/",
        ] {
            assert!(!pattern.recognises(other), "{other}");
        }
    }

    #[test]
    fn the_dev_issuer_pattern_takes_any_plain_origin() {
        let pattern = IssuerPattern::any_origin(DEV_ISSUER_HOME, DEV_ISSUER_PATH);
        let tid = "6e4d9b3a-0000-4000-8000-00000000000a";
        assert!(pattern.vouches_for(&format!("{DEV_ISSUER_HOME}/{tid}/v2.0")));
        assert!(!pattern.vouches_for(&format!("https://127.0.0.1:1/{tid}/v2.0")));
        for origin in [
            "https://login.presenced.local",
            "https://127.0.0.1:8443",
            "http://localhost:8080",
            "https://[::1]:9",
        ] {
            let iss = format!("{origin}/{tid}/v2.0");
            assert!(pattern.recognises(&iss), "{iss}");
            assert!(pattern.agrees_with(&iss, tid), "{iss}");
            assert!(
                !pattern.agrees_with(&iss, "6e4d9b3a-0000-4000-8000-00000000000b"),
                "{iss}"
            );
        }
        for other in [
            format!("https://host/x/{tid}/v2.0"),
            format!("https://us@er@host/{tid}/v2.0"),
            format!("ftp://host/{tid}/v2.0"),
            format!("https://host/{tid}/v1.0"),
            format!("https://host/{tid}/v2.0/"),
            format!("https:///{tid}/v2.0"),
            format!("https://ho st/{tid}/v2.0"),
            "https://host//v2.0".to_string(),
        ] {
            assert!(!pattern.recognises(&other), "{other}");
        }
    }

    #[test]
    fn fixed_issuers_match_exactly() {
        let pattern = IssuerPattern::new("https://idp.example.com");
        assert!(pattern.recognises("https://idp.example.com"));
        assert!(pattern.agrees_with("https://idp.example.com", "any"));
        assert!(!pattern.recognises("https://idp.example.com/"));
    }

    #[test]
    fn only_rs256_and_es256_are_algorithms() {
        assert_eq!(
            SigningAlgorithm::from_jose("RS256"),
            Some(SigningAlgorithm::Rs256)
        );
        assert_eq!(
            SigningAlgorithm::from_jose("ES256"),
            Some(SigningAlgorithm::Es256)
        );
        for other in [
            "none", "None", "HS256", "rs256", "PS256", "RS512", "EdDSA", "",
        ] {
            assert_eq!(SigningAlgorithm::from_jose(other), None, "{other}");
        }
    }
}
