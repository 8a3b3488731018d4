//! Status messages: text content, an optional expiry in a named time zone.
//!
//! Rules (decisions.md rule 11): only `text` content, at most 280 characters;
//! `expiryDateTime.timeZone` takes IANA names, `UTC`, and Windows names such as
//! `Pacific Standard Time`; `dateTime` has no offset and up to 7 fractional
//! digits. Empty content clears the message.

use jiff::Timestamp;
use jiff::civil::DateTime;

/// A status message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    /// The text (`message.content`); never empty.
    pub content: String,
    /// Set by the server when the message was set (`publishedDateTime`).
    pub published_at: Timestamp,
    pub expiry: Option<StatusExpiry>,
}

/// When a status message expires, as the caller named it and as an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusExpiry {
    /// The wall-clock time the caller sent, echoed back in the self view.
    pub date_time: DateTime,
    /// The zone name the caller sent, echoed back as sent.
    pub time_zone: String,
    /// The absolute instant the message stops showing.
    pub at: Timestamp,
}

/// A validated request to set a status message; `None` content means clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStatusMessage {
    pub content: String,
    pub expiry: Option<StatusExpiry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusMessageError {
    #[error("Only contentType 'text' is supported for a status message; '{0}' is not.")]
    ContentType(String),
    #[error("The status message content is {0} characters long; at most 280 are allowed.")]
    TooLong(usize),
    #[error("'{0}' is not a time zone: use an IANA name (Europe/Paris), UTC, or a Windows name (Pacific Standard Time).")]
    UnknownTimeZone(String),
    #[error("'{0}' is not a date and time without offset such as 2026-01-01T17:00:00.0000000.")]
    DateTime(String),
}
