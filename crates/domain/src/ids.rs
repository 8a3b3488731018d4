//! Identifiers: GUIDs (tenants, users, apps) and app session ids.
//!
//! Both are parsed once at the edge; a value of these types is valid.

use std::fmt;
use std::str::FromStr;

/// A GUID such as a tenant id or a user's object id.
///
/// Parsed from the 8-4-4-4-12 hexadecimal form in any letter case (braces not
/// accepted); displayed lower-case, hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(
    /* the 128 bits, most significant first as written */ u128,
);

impl Guid {
    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, hex digits in any case.
    pub fn parse(text: &str) -> Option<Guid> {
        let text: &[u8; 36] = text.as_bytes().try_into().ok()?;
        if [8, 13, 18, 23].iter().any(|&i| text[i] != b'-') {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (byte, &start) in bytes.iter_mut().zip(BYTE_STARTS.iter()) {
            let high = HEX_VALUE[usize::from(text[start])];
            let low = HEX_VALUE[usize::from(text[start + 1])];
            if (high | low) > 0xf {
                return None;
            }
            *byte = (high << 4) | low;
        }
        Some(Guid::from_bytes(bytes))
    }

    pub const fn from_u128(value: u128) -> Guid {
        Guid(value)
    }

    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// The 16 bytes in textual order (big-endian), for storage keys that sort
    /// like the text.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The inverse of [`Guid::to_bytes`].
    pub const fn from_bytes(bytes: [u8; 16]) -> Guid {
        Guid(u128::from_be_bytes(bytes))
    }
}

/// Where each of the 16 bytes' two hex digits start in the 36-character text.
const BYTE_STARTS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

/// The value of each byte as a hex digit (any case), or 0xff.
static HEX_VALUE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            digit @ b'0'..=b'9' => digit - b'0',
            letter @ b'a'..=b'f' => letter - b'a' + 10,
            letter @ b'A'..=b'F' => letter - b'A' + 10,
            _ => 0xff,
        };
        b += 1;
    }
    table
};

impl Guid {
    /// The lower-case 8-4-4-4-12 text, built on the stack: bulk reads write
    /// hundreds of ids per answer, with no allocation for any of them.
    pub fn text(self) -> [u8; 36] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b'-'; 36];
        for (byte, &start) in self.to_bytes().iter().zip(BYTE_STARTS.iter()) {
            text[start] = HEX[usize::from(byte >> 4)];
            text[start + 1] = HEX[usize::from(byte & 0xf)];
        }
        text
    }
}

impl fmt::Display for Guid {
    /// Lower-case 8-4-4-4-12 hex ([`Guid::text`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text();
        f.write_str(std::str::from_utf8(&text).expect("hex digits and hyphens are ASCII"))
    }
}

/// A string that is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a GUID.")]
pub struct NotAGuid(pub String);

impl FromStr for Guid {
    type Err = NotAGuid;

    fn from_str(s: &str) -> Result<Guid, NotAGuid> {
        Guid::parse(s).ok_or_else(|| NotAGuid(s.to_owned()))
    }
}

/// An app's presence session id (`sessionId`): non-empty, at most 256
/// characters (decisions.md rule 6).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(/* as sent; never blank, at most 256 chars */ Box<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionIdError {
    #[error("[SessionId]: The SessionId field is required.")]
    Missing,
    #[error("[SessionId]: The SessionId field must be at most 256 characters.")]
    TooLong,
}

impl SessionId {
    /// The longest id accepted, in characters.
    pub const MAX_CHARS: usize = 256;

    /// Accepts any text that is not blank and has at most 256 characters.
    ///
    /// Blank (empty or only white space) counts as missing, as ASP.NET's
    /// `[Required]` does. The id is kept exactly as sent: it is not trimmed
    /// and not case-folded, and Graph does not require it to be the app id.
    pub fn parse(text: &str) -> Result<SessionId, SessionIdError> {
        if text.trim().is_empty() {
            return Err(SessionIdError::Missing);
        }
        // No more bytes than the limit means no more characters either.
        if text.len() > Self::MAX_CHARS && text.chars().count() > Self::MAX_CHARS {
            return Err(SessionIdError::TooLong);
        }
        Ok(SessionId(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_parse_in_any_letter_case_and_print_lower_case() {
        fn check(input: &str, expected: Option<&str>) {
            assert_eq!(
                Guid::parse(input).map(|g| g.to_string()).as_deref(),
                expected,
                "{input}"
            );
        }
        let lower = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";
        check(lower, Some(lower));
        check("FA8BF3DC-ECA7-46B7-BAD1-DB199B62AFC3", Some(lower));
        check("Fa8bF3dc-eCa7-46B7-bAd1-dB199b62aFc3", Some(lower));
        check(
            "00000000-0000-0000-0000-000000000000",
            Some("00000000-0000-0000-0000-000000000000"),
        );
        check("{fa8bf3dc-eca7-46b7-bad1-db199b62afc3}", None);
        check("fa8bf3dceca746b7bad1db199b62afc3", None);
        check("fa8bf3dc-eca7-46b7-bad1-db199b62afc", None);
        check("fa8bf3dc-eca7-46b7-bad1-db199b62afc3 ", None);
        check("fa8bf3dc_eca7-46b7-bad1-db199b62afc3", None);
        check("ga8bf3dc-eca7-46b7-bad1-db199b62afc3", None);
        check("+a8bf3dc-eca7-46b7-bad1-db199b62afc3", None);
        check("adele.vance@contoso.com", None);
        check("", None);
    }

    #[test]
    fn guid_bytes_are_big_endian_and_round_trip() {
        let guid = Guid::parse("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        assert_eq!(
            guid.to_bytes(),
            [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        assert_eq!(Guid::from_bytes(guid.to_bytes()), guid);
        assert_eq!(Guid::from_u128(guid.as_u128()), guid);
        assert_eq!(guid.as_u128(), 0x00112233_4455_6677_8899_aabbccddeeff);
        assert_eq!(
            "00112233-4455-6677-8899-AABBCCDDEEFF".parse::<Guid>(),
            Ok(guid)
        );
        assert!("nope".parse::<Guid>().is_err());
    }

    #[test]
    fn session_ids_must_be_present_and_at_most_256_characters() {
        fn check(input: &str, expected: Result<&str, SessionIdError>) {
            let got = SessionId::parse(input);
            assert_eq!(
                got.as_ref().map(SessionId::as_str).map_err(Clone::clone),
                expected,
                "{input:?}"
            );
        }
        check(
            "22553876-f5ab-4529-bffb-cfe50aa89f87",
            Ok("22553876-f5ab-4529-bffb-cfe50aa89f87"),
        );
        check("not-a-guid at all", Ok("not-a-guid at all"));
        check(" padded ", Ok(" padded "));
        check("", Err(SessionIdError::Missing));
        check("   ", Err(SessionIdError::Missing));
        let max = "x".repeat(256);
        check(&max, Ok(&max));
        check(&"x".repeat(257), Err(SessionIdError::TooLong));
        let wide = "é".repeat(256);
        check(&wide, Ok(&wide));
        check(&"é".repeat(257), Err(SessionIdError::TooLong));
    }

    #[test]
    fn a_missing_session_id_reads_as_graph_says() {
        assert_eq!(
            SessionIdError::Missing.to_string(),
            "[SessionId]: The SessionId field is required."
        );
    }
}
