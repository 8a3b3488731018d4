//! Token validation: from an `Authorization` header to a [`Principal`].
//!
//! The checks, in order: a Bearer token no larger than 16 KiB; three base64url segments with a JSON
//! header and payload; an accepted `alg` (RS256, ES256; never `none` or HMAC); an `iss` some
//! [`TrustedIssuer`] recognises; that issuer's key for the `kid`; the signature; `aud`; `exp` and `nbf`
//! against the real wall clock with a leeway for clock skew (decisions.md rule 17); `tid` (a GUID that
//! the issuer's `iss` agrees with), `oid` (a GUID), `appid` or `azp`; `scp` (delegated) or else `roles`
//! (app-only).
//!
//! Validated tokens are cached until they expire (see `cache`), so a repeated token costs a SHA-256 and
//! a map lookup. A consequence: a token stays accepted until its `exp` even if its issuer's key is
//! retired meanwhile, as with any cache of validated tokens.
//!
//! This module knows no HTTP and no presence rule: the caller passes the header's bytes, maps
//! [`AuthError`] to a 401, and decides what the principal may do.

mod cache;
mod error;
mod issuer;
pub mod outcome;
mod token;

use std::fmt;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

pub use error::AuthError;
pub use issuer::{DevIssuer, IssuerPattern, SigningAlgorithm, TrustedIssuer, VerificationKey};
pub use token::MAX_TOKEN_BYTES;

use crate::{DevIssuerKey, Principal};
use cache::{Lookup, TokenCache};
use token::UnverifiedJwt;

/// How the validator treats lifetimes and how much it remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorConfig {
    /// Clock skew allowed between the issuer and presenced: a token is accepted until `exp + leeway`
    /// and from `nbf - leeway`. Negative values count as zero.
    pub leeway: SignedDuration,
    /// How many validated tokens to remember; 0 turns the cache off.
    pub cache_capacity: usize,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            leeway: SignedDuration::from_mins(5),
            cache_capacity: 100_000,
        }
    }
}

/// The source of the current time for lifetime checks.
type WallClock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Checks bearer tokens against a list of trusted issuers.
///
/// Share one validator (behind an `Arc`) between all requests: the cache is inside.
pub struct Validator {
    /// Tried in order; the first that recognises the token's `iss` and has its key verifies it.
    issuers: Vec<Arc<dyn TrustedIssuer>>,
    /// [`ValidatorConfig::leeway`], in whole seconds as JWT times are.
    leeway: i64,
    /// The real wall clock, even when presence runs on a manual clock (rule 17); tests replace it.
    now: WallClock,
    cache: TokenCache,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("issuers", &self.issuers)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl Validator {
    /// A validator trusting `issuers`, reading the system clock.
    pub fn new(config: ValidatorConfig, issuers: Vec<Arc<dyn TrustedIssuer>>) -> Validator {
        Validator {
            issuers,
            leeway: config.leeway.as_secs().max(0),
            now: Arc::new(Timestamp::now),
            cache: TokenCache::new(config.cache_capacity),
        }
    }

    /// A validator trusting the development issuer's `key`, with the default configuration.
    pub fn with_dev_issuer(key: &DevIssuerKey) -> Validator {
        Validator::new(
            ValidatorConfig::default(),
            vec![Arc::new(DevIssuer::new(key))],
        )
    }

    /// Replaces the wall clock, for tests of expiry.
    pub fn with_clock(mut self, now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Validator {
        self.now = Arc::new(now);
        self
    }

    /// The caller behind an `Authorization` header's raw value (`None`: no header).
    pub fn validate(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthError> {
        // The cache is asked before the token's characters are checked: only
        // tokens that passed every check are in it, so a hit needs no second
        // pass over the (kilobyte-long) token.
        self.validate_bytes(token::bearer_bytes(authorization).inspect_err(outcome::refused)?)
            .inspect_err(outcome::refused)
    }

    /// The caller behind a bare token (what follows `Bearer `). Every call
    /// is counted in [`outcome::NAME`].
    pub fn validate_token(&self, token: &str) -> Result<Principal, AuthError> {
        self.check_token(token).inspect_err(outcome::refused)
    }

    fn check_token(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("the token is longer than 16384 bytes"));
        }
        self.validate_bytes(token.as_bytes())
    }

    /// [`Validator::validate_token`] for a token of at most `MAX_TOKEN_BYTES`
    /// whose characters are not checked yet.
    fn validate_bytes(&self, token: &[u8]) -> Result<Principal, AuthError> {
        let now = (self.now)().as_second();
        let digest = cache::digest(token);
        match self.cache.get(&digest, now) {
            Lookup::Valid(principal) => {
                outcome::record(outcome::Outcome::CacheHit);
                return Ok(principal);
            }
            Lookup::Expired => return Err(AuthError::Expired),
            Lookup::Unknown => {}
        }
        let token = token::token_text(token)?;
        let (principal, expires) = self.verify(token, now)?;
        outcome::record(outcome::Outcome::Valid);
        self.cache.insert(
            digest,
            expires.saturating_add(self.leeway),
            principal.clone(),
            now,
        );
        Ok(principal)
    }

    /// Every check, without the cache. Returns the principal and the token's `exp`.
    fn verify(&self, token: &str, now: i64) -> Result<(Principal, i64), AuthError> {
        let jwt = token::parse(token)?;
        let claims = &jwt.claims;
        let iss = claims.required_string("iss")?;
        let (issuer, key) = self.issuer_and_key(iss, &jwt)?;
        if key.algorithm() != jwt.algorithm {
            return Err(AuthError::InvalidSignature);
        }
        let verified = jsonwebtoken::crypto::verify(
            jwt.signature,
            jwt.signing_input.as_bytes(),
            key.decoding_key(),
            jwt.algorithm.jsonwebtoken(),
        );
        if !matches!(verified, Ok(true)) {
            return Err(AuthError::InvalidSignature);
        }

        // The token is the issuer's: its claims can be believed, and checked.
        let accepted = issuer.audiences();
        if !claims
            .audiences()?
            .iter()
            .any(|aud| accepted.iter().any(|a| a == aud))
        {
            return Err(AuthError::InvalidAudience);
        }
        let expires = claims
            .seconds("exp")?
            .ok_or(AuthError::MissingClaim("exp"))?;
        if now > expires.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        if let Some(not_before) = claims.seconds("nbf")?
            && now < not_before.saturating_sub(self.leeway)
        {
            return Err(AuthError::NotYetValid);
        }

        let tid = claims.required_string("tid")?;
        let tenant = claims.guid("tid")?;
        if !issuer.pattern().agrees_with(iss, tid) {
            return Err(AuthError::UntrustedIssuer);
        }
        let oid = claims.guid("oid")?;
        let app = match claims.string("appid")?.filter(|app| !app.is_empty()) {
            Some(app) => app,
            None => claims
                .string("azp")?
                .filter(|app| !app.is_empty())
                .ok_or(AuthError::MissingClaim("appid"))?,
        };
        let principal = match claims.string("scp")? {
            Some(scp) => Principal::delegated(
                tenant,
                app,
                oid,
                scp.split_whitespace().map(str::to_owned).collect(),
            ),
            None => Principal::application(tenant, app, claims.roles()?),
        };
        Ok((principal, expires))
    }

    /// The first issuer that recognises `iss` and holds the token's key.
    fn issuer_and_key(
        &self,
        iss: &str,
        jwt: &UnverifiedJwt<'_>,
    ) -> Result<(&dyn TrustedIssuer, Arc<VerificationKey>), AuthError> {
        let mut recognised = false;
        for issuer in self
            .issuers
            .iter()
            .filter(|issuer| issuer.pattern().recognises(iss))
        {
            recognised |= issuer.pattern().vouches_for(iss);
            if let Some(key) = issuer.verification_key(jwt.kid.as_deref(), jwt.algorithm) {
                return Ok((issuer.as_ref(), key));
            }
        }
        Err(if recognised {
            AuthError::UnknownSigningKey
        } else {
            AuthError::UntrustedIssuer
        })
    }
}
