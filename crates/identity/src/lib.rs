//! Bearer tokens for presenced: who is calling.
//!
//! Apps call presenced with Entra-shaped access tokens, as they call Microsoft Graph. This crate has four
//! parts:
//!
//! - [`keys`]: the development issuer's RS256 key, created once in the data directory ([`DevIssuerKey`]).
//! - [`mint`]: Entra-v2-shaped access tokens signed with that key ([`DevIssuerKey::mint`]), for
//!   `presenced token`.
//! - [`validate`]: the [`Validator`], which turns an `Authorization` header into a [`Principal`] or an
//!   [`AuthError`]. It trusts a list of [`TrustedIssuer`]s; the dev issuer is one.
//! - [`jwks`] and [`oidc`]: [`JwksIssuer`], any OpenID Connect issuer (Entra ID among them) trusted through
//!   its JWK set, from a file, a URL or discovery, refreshed in the background.
//!
//! Architecture invariant: this crate knows JWTs, keys and Entra's claims. It serves no HTTP (the caller
//! hands it the header's bytes and maps [`AuthError`] to a 401); its only HTTP is the client that fetches
//! issuers' keys, off the request path. It knows no rule of Graph presence: which scope
//! or role an operation needs, and the refusal of personal accounts, belong to the API layer. It reads the
//! wall clock for token lifetimes only (decisions.md rule 17), through an injectable clock.

use std::path::PathBuf;

pub mod grants;
pub mod jwks;
pub mod keys;
pub mod mint;
pub mod oidc;
mod principal;
pub mod registry;
pub mod state;
pub mod validate;

pub use jwks::{JwksError, KeySet};
pub use keys::DevIssuerKey;
pub use mint::{
    Subject, TokenRequest, dev_issuer, is_authority, is_origin, issuer_at, service_principal_id,
};
pub use oidc::{IssuerStartError, JwksIssuer, JwksIssuerConfig, KeySource, SourceError};
pub use presenced_domain::Guid;
pub use principal::{Principal, PrincipalKind};
pub use registry::{
    Application, BOARD_APP_ID, BOARD_SCOPES, NewApplication, Registry, check_redirect_uri,
};
pub use state::{FileCell, StateCell};
pub use validate::{
    AuthError, DevIssuer, IssuerPattern, SigningAlgorithm, TrustedIssuer, Validator,
    ValidatorConfig, VerificationKey,
};

/// The audience of tokens for Microsoft Graph, as Entra v2 tokens carry it.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";

/// Microsoft Graph's application id: the audience as some tokens (v1, some SDK flows) carry it.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// The tenant of personal Microsoft accounts, `9188040d-6c67-4c5b-b112-36a304b66dad`. Tokens from it
/// validate; the API refuses them (403).
pub const PERSONAL_ACCOUNT_TENANT: Guid = Guid::from_u128(0x9188040d_6c67_4c5b_b112_36a304b66dad);

/// Makes `ring` the process's rustls crypto provider, unless one is already
/// installed: HTTPS clients (key fetching here, webhooks in the server) and
/// the server's TLS listener all use that one provider.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why the signing key could not be loaded or created, or a token not minted.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a PKCS#8 PEM RSA private key: {reason}")]
    KeyFormat { path: PathBuf, reason: String },
    #[error("could not generate an RSA key: {0}")]
    KeyGeneration(String),
    /// The token request itself is unusable (an empty scope list, a lifetime under a second, ...).
    #[error("invalid token request: {0}")]
    InvalidRequest(String),
    #[error("could not sign the token: {0}")]
    Signing(String),
    /// The shared store that holds the identity provider's state failed.
    #[error("{location}: {reason}")]
    Shared { location: String, reason: String },
}
