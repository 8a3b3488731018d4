//! Identifiers: GUIDs (tenants, users, apps) and app session ids.

/// A GUID such as a tenant id or a user's object id.
///
/// Parsed from the 8-4-4-4-12 hexadecimal form in any letter case (braces not
/// accepted); displayed lower-case, hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(u128);

/// An app's presence session id (`sessionId`): non-empty, at most 256
/// characters (decisions.md rule 6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Box<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionIdError {
    #[error("[SessionId]: The SessionId field is required.")]
    Missing,
    #[error("[SessionId]: The SessionId field must be at most 256 characters.")]
    TooLong,
}
