//! Status messages: text content, an optional expiry in a named time zone.
//!
//! Rules (decisions.md rule 11): only `text` content, at most 280 characters;
//! `expiryDateTime.timeZone` takes IANA names, `UTC`, and Windows names such as
//! `Pacific Standard Time`; `dateTime` has no offset and up to 7 fractional
//! digits. Empty content clears the message.
//!
//! Choices where Graph is silent:
//! - Length counts Unicode scalar values (`char`s), not UTF-16 units or bytes.
//! - `dateTime` is strictly `YYYY-MM-DDTHH:MM:SS[.fffffff]`: a trailing `Z` or
//!   offset is refused, since the zone belongs in `timeZone`.
//! - A civil time that a DST change skips or repeats resolves with jiff's
//!   "compatible" rule (as RFC 5545 and Temporal): a skipped time moves forward
//!   by the gap, a repeated time takes the earlier instant.
//! - An expiry already in the past is accepted; the message then reads as
//!   `null` straight away.
//! - Zone rules come from the IANA database compiled into the binary (jiff's
//!   bundled copy), never from the host, so every machine agrees.

use std::sync::OnceLock;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{TimeZone, TimeZoneDatabase};

use crate::windows_zones::iana_for_windows;

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
    #[error(
        "'{0}' is not a time zone: use an IANA name (Europe/Paris), UTC, or a Windows name (Pacific Standard Time)."
    )]
    UnknownTimeZone(String),
    #[error("'{0}' is not a date and time without offset such as 2026-01-01T17:00:00.0000000.")]
    DateTime(String),
}

/// The longest content accepted, in characters.
pub const MAX_CONTENT_CHARS: usize = 280;

impl NewStatusMessage {
    /// Validates a setStatusMessage request.
    ///
    /// `content_type` absent means `text`; `expiry` is `(dateTime, timeZone)`.
    /// Everything is checked even when `content` is empty; then the result is
    /// `Ok(None)`, meaning "clear the message".
    pub fn parse(
        content: &str,
        content_type: Option<&str>,
        expiry: Option<(&str, &str)>,
    ) -> Result<Option<NewStatusMessage>, StatusMessageError> {
        if let Some(kind) = content_type
            && !kind.eq_ignore_ascii_case("text")
        {
            return Err(StatusMessageError::ContentType(kind.to_owned()));
        }
        let chars = content.chars().count();
        if chars > MAX_CONTENT_CHARS {
            return Err(StatusMessageError::TooLong(chars));
        }
        let expiry = expiry
            .map(|(date_time, time_zone)| StatusExpiry::parse(date_time, time_zone))
            .transpose()?;
        if content.is_empty() {
            return Ok(None);
        }
        Ok(Some(NewStatusMessage {
            content: content.to_owned(),
            expiry,
        }))
    }
}

impl StatusExpiry {
    /// Reads `dateTime` and `timeZone` and finds the instant they name.
    pub fn parse(date_time: &str, time_zone: &str) -> Result<StatusExpiry, StatusMessageError> {
        let civil = parse_date_time(date_time)
            .ok_or_else(|| StatusMessageError::DateTime(date_time.to_owned()))?;
        let zone = resolve_time_zone(time_zone)
            .ok_or_else(|| StatusMessageError::UnknownTimeZone(time_zone.to_owned()))?;
        let at = zone
            .to_ambiguous_timestamp(civil)
            .compatible()
            .map_err(|_| StatusMessageError::DateTime(date_time.to_owned()))?;
        Ok(StatusExpiry {
            date_time: civil,
            time_zone: time_zone.to_owned(),
            at,
        })
    }

    /// `date_time` as Graph writes it: seven fractional digits, no offset
    /// (`2026-08-31T08:00:00.0000000`).
    pub fn date_time_text(&self) -> String {
        format_date_time(self.date_time)
    }
}

impl StatusMessage {
    /// Whether the message still shows at `now` (its expiry, if any, is later).
    pub fn is_visible_at(&self, now: Timestamp) -> bool {
        self.expiry.as_ref().is_none_or(|e| e.at > now)
    }
}

/// The IANA database compiled into the binary, loaded once.
fn tzdb() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// The zone a `timeZone` value names: `UTC`, a Windows name or an IANA name,
/// all without regard to ASCII case.
pub fn resolve_time_zone(name: &str) -> Option<TimeZone> {
    if name.eq_ignore_ascii_case("UTC") {
        return Some(TimeZone::UTC);
    }
    let iana = iana_for_windows(name).unwrap_or(name);
    if iana.is_empty() {
        return None;
    }
    tzdb().get(iana).ok()
}

/// Strictly `YYYY-MM-DDTHH:MM:SS` with an optional `.` and 1 to 7 digits.
pub fn parse_date_time(text: &str) -> Option<DateTime> {
    let b = text.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let field = |range: std::ops::Range<usize>| -> Option<i32> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let nanos = match &text[19..] {
        "" => 0,
        rest => {
            let digits = rest.strip_prefix('.')?;
            if !(1..=7).contains(&digits.len()) || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            format!("{digits:0<9}").parse().ok()?
        }
    };
    DateTime::new(
        year as i16,
        month as i8,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        nanos,
    )
    .ok()
}

/// `YYYY-MM-DDTHH:MM:SS.fffffff`, Graph's `dateTimeTimeZone.dateTime` shape.
pub fn format_date_time(dt: DateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 100
    )
}

#[cfg(test)]
mod tests;
