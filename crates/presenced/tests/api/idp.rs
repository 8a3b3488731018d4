//! The built-in identity provider as real clients use it: the issuer follows the URL the client
//! used (or `--public-url`), MSAL's discovery calls, the authorization-code flow with PKCE, refresh
//! tokens and logout.

pub mod code;
mod issuer;
