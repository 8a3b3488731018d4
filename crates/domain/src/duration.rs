//! ISO 8601 durations (`expirationDuration`) and the ranges each action allows.
//!
//! Accepted: `PnW` or `PnDTnHnMnS`, fractional seconds allowed, upper-case
//! designators (decisions.md rule 3). Years and months are ambiguous and
//! rejected; zero and negative durations are rejected. The Python SDK's
//! `timedelta` text (`"8:00:00"`, `"1 day, 0:00:00"`) is rejected with a
//! message naming the fix unless [`DurationSyntax::AlsoPythonTimedelta`] is
//! chosen.

use jiff::SignedDuration;

/// Which spellings of a duration are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DurationSyntax {
    /// ISO 8601 only, as Graph does.
    #[default]
    Iso8601,
    /// ISO 8601, and also Python's `str(timedelta)` form.
    AlsoPythonTimedelta,
}

/// Why a duration string was refused. Each message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Looks like Python's `str(timedelta)`: the message names the ISO form to send instead.
    #[error("'{given}' is not an ISO 8601 duration; send it as the string \"{suggestion}\".")]
    PythonTimedelta { given: String, suggestion: String },
    #[error("'{0}' uses years or months, which have no fixed length; use weeks, days, hours, minutes or seconds, for example \"P30D\".")]
    CalendarUnits(String),
    #[error("'{0}' is not a positive duration.")]
    NotPositive(String),
    #[error("'{0}' is not an ISO 8601 duration such as \"PT8H\", \"PT1H30M\" or \"P1DT2H\".")]
    Malformed(String),
}

/// A positive duration parsed from its wire text.
pub fn parse_duration(text: &str, syntax: DurationSyntax) -> Result<SignedDuration, DurationError> {
    let _ = (text, syntax);
    todo!()
}

/// setPresence's `expirationDuration`: `PT5M` to `PT4H` inclusive, default `PT5M`
/// (decisions.md rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpiration(SignedDuration);

/// setUserPreferredPresence's `expirationDuration`: more than zero, at most 365
/// days; when absent, 1 day for Busy and DoNotDisturb, 7 days otherwise
/// (decisions.md rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreferredExpiration(SignedDuration);

/// A duration outside the range its action allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The provided [ExpirationDuration] is out of range.")]
pub struct OutOfRange;
