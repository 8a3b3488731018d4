//! Authorization headers, and how refusals read.

use crate::*;

#[test]
fn authorization_headers_are_read_with_care() {
    let token = mint(&delegated("Presence.Read"));
    let validator = validator(&TestClock::at(t0()));
    let check = |header: Option<&[u8]>, expected: Result<(), AuthError>| {
        let shown = header.map(|h| String::from_utf8_lossy(&h[..h.len().min(40)]).into_owned());
        assert_eq!(
            validator.validate(header).map(|_| ()),
            expected,
            "{shown:?}"
        );
    };
    check(Some(format!("Bearer {token}").as_bytes()), Ok(()));
    check(Some(format!("bearer {token}").as_bytes()), Ok(()));
    check(Some(format!("BEARER  {token} ").as_bytes()), Ok(()));
    check(None, Err(AuthError::Missing));
    check(Some(b""), Err(AuthError::Missing));
    check(Some(b"Bearer "), Err(AuthError::Missing));
    check(Some(token.as_bytes()), Err(AuthError::NotBearer));
    check(
        Some(b"Basic dXNlcjpwYXNzd29yZA=="),
        Err(AuthError::NotBearer),
    );
    check(
        Some(b"Bearer garbage"),
        Err(AuthError::Malformed("there are no dots (.)")),
    );
    check(
        Some(b"Bearer \xc3\x28.a.b"),
        Err(AuthError::Malformed(
            "the token has characters outside base64url and '.'",
        )),
    );
    let huge = format!("Bearer {}", "A".repeat(100 * 1024));
    check(
        Some(huge.as_bytes()),
        Err(AuthError::Malformed("the token is longer than 16384 bytes")),
    );
    let huge = format!(
        "{}.{}.{}",
        "A".repeat(40 * 1024),
        "A".repeat(40 * 1024),
        "A".repeat(20 * 1024)
    );
    assert_eq!(
        validator.validate_token(&huge).err(),
        Some(AuthError::Malformed("the token is longer than 16384 bytes"))
    );
}

#[test]
fn refusals_read_as_graph_writes_them() {
    let check = |error: AuthError, message: &str| {
        assert_eq!(error.code(), "InvalidAuthenticationToken");
        assert_eq!(error.message(), message);
    };
    check(AuthError::Missing, "Access token is empty.");
    check(
        AuthError::Expired,
        "Lifetime validation failed, the token is expired.",
    );
    check(
        AuthError::InvalidSignature,
        "Access token validation failure. Invalid signature.",
    );
    check(
        AuthError::UntrustedIssuer,
        "Access token validation failure. Invalid issuer.",
    );
    check(AuthError::InvalidAudience, "Invalid audience.");
    check(
        AuthError::Malformed("there are no dots (.)"),
        "JWT is not well formed, there are no dots (.).",
    );
    check(
        AuthError::MissingClaim("tid"),
        "Access token validation failure. The token has no 'tid' claim.",
    );
    check(
        AuthError::UnsupportedAlgorithm("none".into()),
        "Access token validation failure. The signing algorithm 'none' is not supported.",
    );
}
