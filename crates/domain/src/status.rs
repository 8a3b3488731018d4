//! Status messages: text content, an optional expiry in a named time zone.
//!
//! Rules (decisions.md rule 11): only `text` content, at most 280 characters;
//! `expiryDateTime.timeZone` takes IANA names, `UTC`, and Windows names such as
//! `Pacific Standard Time`; `dateTime` has up to 7 fractional digits and
//! normally no offset. Empty content clears the message.
//!
//! Choices where Graph is silent:
//! - Length counts Unicode scalar values (`char`s), not UTF-16 units or bytes.
//! - `dateTime` is strictly `YYYY-MM-DDTHH:MM:SS[.fffffff]`, optionally
//!   followed by `Z` or `±HH:MM`. An offset is only a restatement: it is
//!   accepted when it equals `timeZone`'s offset at the instant it names
//!   (which also picks the instant of a time a DST change repeats), and
//!   refused, naming both, when it contradicts it. The self view echoes the
//!   civil part without the offset, as Graph writes `dateTimeTimeZone`.
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
use jiff::tz::{Offset, TimeZone, TimeZoneDatabase};

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
    #[error(
        "'{0}' is not a date and time such as 2026-01-01T17:00:00.0000000 (an offset such as +01:00 or Z may follow)."
    )]
    DateTime(String),
    #[error(
        "dateTime '{date_time}' has the offset {offset}, but timeZone '{time_zone}' is at {zone_offset} at that instant; send the time without an offset, or with the time zone's own."
    )]
    OffsetContradictsTimeZone {
        date_time: String,
        offset: String,
        time_zone: String,
        zone_offset: String,
    },
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
        let bad = || StatusMessageError::DateTime(date_time.to_owned());
        let (civil_text, offset) = split_offset(date_time).ok_or_else(bad)?;
        let civil = parse_date_time(civil_text).ok_or_else(bad)?;
        let zone = resolve_time_zone(time_zone)
            .ok_or_else(|| StatusMessageError::UnknownTimeZone(time_zone.to_owned()))?;
        let at = match offset {
            None => zone
                .to_ambiguous_timestamp(civil)
                .compatible()
                .map_err(|_| bad())?,
            Some(offset) => {
                let at = offset.to_timestamp(civil).map_err(|_| bad())?;
                let zone_offset = zone.to_offset(at);
                if zone_offset != offset {
                    return Err(StatusMessageError::OffsetContradictsTimeZone {
                        date_time: date_time.to_owned(),
                        offset: offset_text(offset),
                        time_zone: time_zone.to_owned(),
                        zone_offset: offset_text(zone_offset),
                    });
                }
                at
            }
        };
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

/// Splits a trailing `Z` (or `z`) or `±HH:MM` off a `dateTime`; `None` when
/// what follows the seconds is neither a fraction nor a valid offset.
fn split_offset(text: &str) -> Option<(&str, Option<Offset>)> {
    if let Some(civil) = text.strip_suffix(['Z', 'z']) {
        return Some((civil, Some(Offset::UTC)));
    }
    let b = text.as_bytes();
    if b.len() < 19 + 6 || !matches!(b[b.len() - 6], b'+' | b'-') || b[b.len() - 3] != b':' {
        return Some((text, None));
    }
    let (civil, offset) = text.split_at(text.len() - 6);
    let digits = |part: &str| -> Option<i32> {
        (part.len() == 2 && part.bytes().all(|c| c.is_ascii_digit())).then(|| part.parse().ok())?
    };
    let (hours, minutes) = (digits(&offset[1..3])?, digits(&offset[4..6])?);
    if hours > 18 || minutes > 59 {
        return None;
    }
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let offset = Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()?;
    Some((civil, Some(offset)))
}

/// `+HH:MM`, or `+HH:MM:SS` for the odd historical offset with seconds.
fn offset_text(offset: Offset) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let seconds = seconds.unsigned_abs();
    let (hours, minutes, rest) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if rest == 0 {
        format!("{sign}{hours:02}:{minutes:02}")
    } else {
        format!("{sign}{hours:02}:{minutes:02}:{rest:02}")
    }
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
