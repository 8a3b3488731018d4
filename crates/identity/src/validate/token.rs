//! From an `Authorization` header to a JWT's parts and claims, before anything is trusted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{AuthError, SigningAlgorithm};
use crate::Guid;

/// The longest token accepted. Entra's access tokens are a few kilobytes; a larger one is an attack or a
/// mistake, and is refused before it is hashed or decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The token in an `Authorization: Bearer <token>` header. The scheme is case-insensitive (RFC 9110);
/// surrounding spaces are ignored.
#[cfg(test)]
pub(crate) fn bearer_token(header: Option<&[u8]>) -> Result<&str, AuthError> {
    token_text(bearer_bytes(header)?)
}

/// [`bearer_token`]'s framing only: the scheme, emptiness and length, not the token's characters; a
/// token known valid (in the validator's cache) skips the per-byte check of [`token_text`].
pub(crate) fn bearer_bytes(header: Option<&[u8]>) -> Result<&[u8], AuthError> {
    let value = header.ok_or(AuthError::Missing)?.trim_ascii();
    if value.is_empty() {
        return Err(AuthError::Missing);
    }
    let (scheme, token) = match value.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(space) => (&value[..space], value[space..].trim_ascii()),
        None => (value, &value[value.len()..]),
    };
    if !scheme.eq_ignore_ascii_case(b"Bearer") {
        return Err(AuthError::NotBearer);
    }
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("the token is longer than 16384 bytes"));
    }
    Ok(token)
}

/// `token` as text, if it has only the characters of a compact JWS.
pub(crate) fn token_text(token: &[u8]) -> Result<&str, AuthError> {
    // A compact JWS is base64url segments joined by dots; anything else (spaces, non-ASCII bytes) is not
    // a token. Checking here also makes the bytes valid UTF-8.
    if !token.iter().all(|b| TOKEN_BYTES[usize::from(*b)]) {
        return Err(AuthError::Malformed(
            "the token has characters outside base64url and '.'",
        ));
    }
    Ok(std::str::from_utf8(token).expect("ASCII"))
}

/// The bytes of a compact JWS: base64url and '.'. A table, because the check
/// runs over every request's token (about a kilobyte) before the cache.
static TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
        b += 1;
    }
    table
};

/// A compact JWS split into its parts, header and claims decoded but nothing verified.
pub(crate) struct UnverifiedJwt<'a> {
    pub algorithm: SigningAlgorithm,
    pub kid: Option<String>,
    /// `header.payload`: what the signature covers.
    pub signing_input: &'a str,
    /// The third segment, base64url.
    pub signature: &'a str,
    pub claims: Claims,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: Option<String>,
    kid: Option<String>,
    /// Extensions the token says must be understood; presenced understands none.
    crit: Option<Value>,
}

/// Splits and decodes `token`, refusing any algorithm presenced does not accept.
pub(crate) fn parse(token: &str) -> Result<UnverifiedJwt<'_>, AuthError> {
    let dots = token.bytes().filter(|b| *b == b'.').count();
    match dots {
        0 => return Err(AuthError::Malformed("there are no dots (.)")),
        2 => {}
        4 => {
            return Err(AuthError::Malformed(
                "encrypted tokens (JWE) are not accepted",
            ));
        }
        _ => return Err(AuthError::Malformed("the token must have three segments")),
    }
    let (signing_input, signature) = token.rsplit_once('.').expect("two dots");
    let (header, payload) = signing_input.split_once('.').expect("one dot");

    let header: JoseHeader = decode_segment(header)
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(AuthError::Malformed(
            "the header is not base64url-encoded JSON",
        ))?;
    let alg = header
        .alg
        .ok_or(AuthError::Malformed("the header has no 'alg'"))?;
    let algorithm = SigningAlgorithm::from_jose(&alg)
        .ok_or_else(|| AuthError::UnsupportedAlgorithm(shorten(alg)))?;
    if header.crit.is_some() {
        return Err(AuthError::Malformed(
            "the header has critical extensions ('crit')",
        ));
    }
    if signature.is_empty() {
        return Err(AuthError::Malformed("the signature is empty"));
    }

    let claims = decode_segment(payload)
        .and_then(|json| serde_json::from_slice::<Map<String, Value>>(&json).ok())
        .ok_or(AuthError::Malformed(
            "the payload is not base64url-encoded JSON object",
        ))?;
    Ok(UnverifiedJwt {
        algorithm,
        kid: header.kid,
        signing_input,
        signature,
        claims: Claims(claims),
    })
}

fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// An unsupported `alg` goes back into a message: keep it short.
fn shorten(mut alg: String) -> String {
    if let Some((cut, _)) = alg.char_indices().nth(32) {
        alg.truncate(cut);
        alg.push('…');
    }
    alg
}

/// A token's claims, read one by one with errors that name the claim.
pub(crate) struct Claims(Map<String, Value>);

impl Claims {
    pub fn string(&self, claim: &'static str) -> Result<Option<&str>, AuthError> {
        match self.0.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(AuthError::InvalidClaim {
                claim,
                expected: "a string",
            }),
        }
    }

    pub fn required_string(&self, claim: &'static str) -> Result<&str, AuthError> {
        self.string(claim)?
            .filter(|text| !text.is_empty())
            .ok_or(AuthError::MissingClaim(claim))
    }

    pub fn guid(&self, claim: &'static str) -> Result<Guid, AuthError> {
        Guid::parse(self.required_string(claim)?).ok_or(AuthError::InvalidClaim {
            claim,
            expected: "a GUID",
        })
    }

    /// A NumericDate (RFC 7519): seconds since the epoch, possibly fractional (rounded down).
    pub fn seconds(&self, claim: &'static str) -> Result<Option<i64>, AuthError> {
        let invalid = AuthError::InvalidClaim {
            claim,
            expected: "a number of seconds",
        };
        match self.0.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => match number.as_i64() {
                Some(seconds) => Ok(Some(seconds)),
                None => number
                    .as_f64()
                    .filter(|seconds| seconds.is_finite() && seconds.abs() < 1e15)
                    .map(|seconds| Some(seconds.floor() as i64))
                    .ok_or(invalid),
            },
            Some(_) => Err(invalid),
        }
    }

    /// `aud`: one string, or an array of them.
    pub fn audiences(&self) -> Result<Vec<&str>, AuthError> {
        match self.0.get("aud") {
            None | Some(Value::Null) => Err(AuthError::MissingClaim("aud")),
            Some(Value::String(aud)) => Ok(vec![aud]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().ok_or(AuthError::InvalidClaim {
                        claim: "aud",
                        expected: "a string or an array of strings",
                    })
                })
                .collect(),
            Some(_) => Err(AuthError::InvalidClaim {
                claim: "aud",
                expected: "a string or an array of strings",
            }),
        }
    }

    /// `roles`: an array of strings; absent means none (Entra omits the claim for an app without roles).
    pub fn roles(&self) -> Result<Vec<String>, AuthError> {
        let invalid = AuthError::InvalidClaim {
            claim: "roles",
            expected: "an array of strings",
        };
        match self.0.get("roles") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned).ok_or(invalid.clone()))
                .collect(),
            Some(_) => Err(invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_found_in_any_scheme_case() {
        fn check(header: Option<&[u8]>, expected: Result<&str, AuthError>) {
            assert_eq!(
                bearer_token(header),
                expected,
                "{:?}",
                header.map(String::from_utf8_lossy)
            );
        }
        check(Some(b"Bearer a.b.c"), Ok("a.b.c"));
        check(Some(b"bearer a.b.c"), Ok("a.b.c"));
        check(Some(b"BEARER   a.b.c  "), Ok("a.b.c"));
        check(Some(b"Bearer\ta.b.c"), Ok("a.b.c"));
        check(None, Err(AuthError::Missing));
        check(Some(b""), Err(AuthError::Missing));
        check(Some(b"   "), Err(AuthError::Missing));
        check(Some(b"Bearer"), Err(AuthError::Missing));
        check(Some(b"Bearer   "), Err(AuthError::Missing));
        check(Some(b"Basic dXNlcjpwYXNz"), Err(AuthError::NotBearer));
        check(Some(b"a.b.c"), Err(AuthError::NotBearer));
        check(Some(b"Bearera.b.c"), Err(AuthError::NotBearer));
        check(
            Some(b"Bearer a.b c"),
            Err(AuthError::Malformed(
                "the token has characters outside base64url and '.'",
            )),
        );
        check(
            Some(b"Bearer a.\xff.c"),
            Err(AuthError::Malformed(
                "the token has characters outside base64url and '.'",
            )),
        );
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        check(
            Some(long.as_bytes()),
            Err(AuthError::Malformed("the token is longer than 16384 bytes")),
        );
    }

    fn segment(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn tokens_must_be_three_decodable_segments() {
        fn error(token: &str) -> AuthError {
            parse(token).err().expect("refused")
        }
        let header = segment(r#"{"alg":"RS256","kid":"k"}"#);
        let claims = segment(r#"{"iss":"x"}"#);
        assert!(parse(&format!("{header}.{claims}.c2ln")).is_ok());
        assert_eq!(
            error("garbage"),
            AuthError::Malformed("there are no dots (.)")
        );
        assert_eq!(
            error("a.b"),
            AuthError::Malformed("the token must have three segments")
        );
        assert_eq!(
            error("a.b.c.d.e"),
            AuthError::Malformed("encrypted tokens (JWE) are not accepted")
        );
        assert_eq!(
            error("!!.b.c"),
            AuthError::Malformed("the header is not base64url-encoded JSON")
        );
        assert_eq!(
            error(&format!("{}.{claims}.c2ln", segment("[1]"))),
            AuthError::Malformed("the header is not base64url-encoded JSON")
        );
        assert_eq!(
            error(&format!("{}.{claims}.c2ln", segment("{}"))),
            AuthError::Malformed("the header has no 'alg'")
        );
        assert_eq!(
            error(&format!("{header}.{}.c2ln", segment("[]"))),
            AuthError::Malformed("the payload is not base64url-encoded JSON object")
        );
        assert_eq!(
            error(&format!("{header}.{claims}.")),
            AuthError::Malformed("the signature is empty")
        );
        let none = segment(r#"{"alg":"none"}"#);
        assert_eq!(
            error(&format!("{none}.{claims}.")),
            AuthError::UnsupportedAlgorithm("none".into())
        );
        let long = segment(&format!(r#"{{"alg":"{}"}}"#, "x".repeat(100)));
        assert_eq!(
            error(&format!("{long}.{claims}.c2ln")),
            AuthError::UnsupportedAlgorithm(format!("{}…", "x".repeat(32)))
        );
    }

    #[test]
    fn claims_name_themselves_when_wrong() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"s":"x","n":5,"f":1.9,"g":"6E4D9B3A-0000-4000-8000-00000000000A","bad":"nope","roles":["a",1],"aud":["a","b"]}"#,
        )
        .unwrap();
        let claims = Claims(claims);
        assert_eq!(claims.string("s"), Ok(Some("x")));
        assert_eq!(claims.string("absent"), Ok(None));
        assert_eq!(
            claims.string("n"),
            Err(AuthError::InvalidClaim {
                claim: "n",
                expected: "a string"
            })
        );
        assert_eq!(
            claims.required_string("absent"),
            Err(AuthError::MissingClaim("absent"))
        );
        assert_eq!(claims.seconds("n"), Ok(Some(5)));
        assert_eq!(claims.seconds("f"), Ok(Some(1)));
        assert_eq!(
            claims.seconds("s"),
            Err(AuthError::InvalidClaim {
                claim: "s",
                expected: "a number of seconds"
            })
        );
        assert_eq!(
            claims.guid("g").map(|g| g.to_string()),
            Ok("6e4d9b3a-0000-4000-8000-00000000000a".into())
        );
        assert_eq!(
            claims.guid("bad"),
            Err(AuthError::InvalidClaim {
                claim: "bad",
                expected: "a GUID"
            })
        );
        assert_eq!(
            claims.roles(),
            Err(AuthError::InvalidClaim {
                claim: "roles",
                expected: "an array of strings"
            })
        );
        assert_eq!(claims.audiences(), Ok(vec!["a", "b"]));
    }
}
