//! Why a token is refused, in Graph's words.

/// Why an `Authorization` header does not authenticate anyone.
///
/// Every variant is Graph's `401 InvalidAuthenticationToken`; the message (the `Display`) says which check
/// failed, in the style of Graph's own messages. The API layer maps it to the error envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header, or `Bearer` with nothing after it.
    #[error("Access token is empty.")]
    Missing,
    /// An `Authorization` header with another scheme (`Basic ...`).
    #[error("JWT is not well formed, the Authorization header does not hold a Bearer token.")]
    NotBearer,
    /// Not a compact JWS: says what is wrong with it.
    #[error("JWT is not well formed, {0}.")]
    Malformed(&'static str),
    /// `alg` is not one presenced accepts (RS256, ES256): `none` and the HMAC family among others.
    #[error("Access token validation failure. The signing algorithm '{0}' is not supported.")]
    UnsupportedAlgorithm(String),
    /// No trusted issuer has this `iss`, or `iss` names another tenant than `tid`.
    #[error("Access token validation failure. Invalid issuer.")]
    UntrustedIssuer,
    /// The issuer is trusted but has no key with the token's `kid` for its `alg`.
    #[error(
        "Access token validation failure. Invalid signature. The signing key is not one of the issuer's keys."
    )]
    UnknownSigningKey,
    #[error("Access token validation failure. Invalid signature.")]
    InvalidSignature,
    /// `aud` is not Microsoft Graph (or another audience the issuer accepts).
    #[error("Invalid audience.")]
    InvalidAudience,
    /// `exp` is past, beyond the allowed clock skew.
    #[error("Lifetime validation failed, the token is expired.")]
    Expired,
    /// `nbf` is ahead, beyond the allowed clock skew.
    #[error("Lifetime validation failed, the token is not yet valid.")]
    NotYetValid,
    #[error("Access token validation failure. The token has no '{0}' claim.")]
    MissingClaim(&'static str),
    /// A claim of the wrong type or shape; `expected` says what it should be ("a GUID").
    #[error("Access token validation failure. The '{claim}' claim is not {expected}.")]
    InvalidClaim {
        claim: &'static str,
        expected: &'static str,
    },
}

impl AuthError {
    /// Graph's error code for every authentication failure.
    pub const CODE: &'static str = "InvalidAuthenticationToken";

    /// The error code of the Graph error envelope: always [`AuthError::CODE`].
    pub fn code(&self) -> &'static str {
        Self::CODE
    }

    /// The message of the Graph error envelope.
    pub fn message(&self) -> String {
        self.to_string()
    }
}
