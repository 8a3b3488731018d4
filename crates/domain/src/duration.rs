//! ISO 8601 durations (`expirationDuration`) and the ranges each action allows.
//!
//! Accepted: `PnW` or `PnDTnHnMnS`, fractional seconds allowed, upper-case
//! designators (decisions.md rule 3). Years and months are ambiguous and
//! rejected; zero and negative durations are rejected. The Python SDK's
//! `timedelta` text (`"8:00:00"`, `"1 day, 0:00:00"`) is rejected with a
//! message naming the fix unless [`DurationSyntax::AlsoPythonTimedelta`] is
//! chosen.
//!
//! Exact grammar (what .NET's `XmlConvert.ToTimeSpan`, Graph's own parser,
//! accepts, minus years and months):
//!
//! ```text
//! P n W
//! P [n D] [T [n H] [n M] [n[.f] S]]     at least one part; after T at least one
//! ```
//!
//! `n` is one or more ASCII digits; a fraction (`.` then 1 to 9 digits) is
//! allowed on seconds only, so `PT0.5S` is accepted and `PT1.5H` is not.
//! No sign, no white space, no `,` as decimal mark, no lower-case letters.
//! Weeks do not combine with other parts. A leading `-` makes a negative,
//! hence refused, duration.

use jiff::SignedDuration;

use crate::values::{Availability, PreferredState};

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
    #[error(
        "'{0}' uses years or months, which have no fixed length; use weeks, days, hours, minutes or seconds, for example \"P30D\" (one minute is \"PT1M\")."
    )]
    CalendarUnits(String),
    #[error("'{0}' is not a positive duration.")]
    NotPositive(String),
    #[error("'{0}' is not an ISO 8601 duration such as \"PT8H\", \"PT1H30M\" or \"P1DT2H\".")]
    Malformed(String),
    /// Well formed but too long to represent (more than about 292 billion years).
    #[error("'{0}' is too long a duration.")]
    Overflow(String),
}

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// What went wrong inside the ISO grammar, before the text is attached.
enum IsoError {
    Malformed,
    CalendarUnits,
    Overflow,
}

/// A positive duration parsed from its wire text.
pub fn parse_duration(text: &str, syntax: DurationSyntax) -> Result<SignedDuration, DurationError> {
    let (negative, iso) = match text.strip_prefix('-') {
        Some(rest) if rest.starts_with('P') => (true, Some(rest)),
        _ => (false, text.starts_with('P').then_some(text)),
    };
    if let Some(iso) = iso {
        let nanos = parse_iso(iso).map_err(|e| match e {
            IsoError::Malformed => DurationError::Malformed(text.to_owned()),
            IsoError::CalendarUnits => DurationError::CalendarUnits(text.to_owned()),
            IsoError::Overflow => DurationError::Overflow(text.to_owned()),
        })?;
        return positive(text, if negative { -nanos } else { nanos });
    }
    let Some(nanos) = parse_python_timedelta(text) else {
        return Err(DurationError::Malformed(text.to_owned()));
    };
    let duration = positive(text, nanos)?;
    match syntax {
        DurationSyntax::AlsoPythonTimedelta => Ok(duration),
        DurationSyntax::Iso8601 => Err(DurationError::PythonTimedelta {
            given: text.to_owned(),
            suggestion: format_duration(duration),
        }),
    }
}

/// `nanos` as a duration, if it is above zero and representable.
fn positive(text: &str, nanos: i128) -> Result<SignedDuration, DurationError> {
    if nanos <= 0 {
        return Err(DurationError::NotPositive(text.to_owned()));
    }
    SignedDuration::try_from_nanos_i128(nanos)
        .ok_or_else(|| DurationError::Overflow(text.to_owned()))
}

/// Parses `text` (starting with `P`) to whole nanoseconds.
fn parse_iso(text: &str) -> Result<i128, IsoError> {
    let body = &text[1..];
    if let Some(weeks) = body.strip_suffix('W') {
        return Ok(number(weeks)? * 7 * 86_400 * NANOS_PER_SEC);
    }
    let (date, time) = match body.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (body, None),
    };
    let looks_like_a_date = date
        .bytes()
        .all(|b| b.is_ascii_digit() || b"YMWD".contains(&b));
    if looks_like_a_date && (date.contains('Y') || date.contains('M')) {
        return Err(IsoError::CalendarUnits);
    }
    let days = match date {
        "" => None,
        _ => Some(number(date.strip_suffix('D').ok_or(IsoError::Malformed)?)?),
    };
    let clock = match time {
        None => None,
        Some(time) => Some(parse_clock(time)?),
    };
    if days.is_none() && clock.is_none() {
        return Err(IsoError::Malformed);
    }
    Ok(days.unwrap_or(0) * 86_400 * NANOS_PER_SEC + clock.unwrap_or(0))
}

/// The part after `T`: `[nH][nM][n[.f]S]`, at least one, in that order.
fn parse_clock(mut rest: &str) -> Result<i128, IsoError> {
    if rest.is_empty() {
        return Err(IsoError::Malformed);
    }
    let mut total: i128 = 0;
    let mut last_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole = number(&rest[..digits])?;
        rest = &rest[digits..];
        let mut fraction = 0;
        let has_fraction = rest.starts_with('.');
        if let Some(after_dot) = rest.strip_prefix('.') {
            let len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            if !(1..=9).contains(&len) {
                return Err(IsoError::Malformed);
            }
            let padded = format!("{:0<9}", &after_dot[..len]);
            fraction = padded.parse::<i128>().map_err(|_| IsoError::Malformed)?;
            rest = &after_dot[len..];
        }
        let (unit, seconds) = match rest.bytes().next() {
            Some(b'H') => (1, 3_600),
            Some(b'M') => (2, 60),
            Some(b'S') => (3, 1),
            _ => return Err(IsoError::Malformed),
        };
        if unit <= last_unit || (has_fraction && unit != 3) {
            return Err(IsoError::Malformed);
        }
        last_unit = unit;
        total += whole * seconds * NANOS_PER_SEC + fraction;
        rest = &rest[1..];
    }
    Ok(total)
}

/// One or more ASCII digits as a number; too many digits is an overflow.
fn number(digits: &str) -> Result<i128, IsoError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IsoError::Malformed);
    }
    let value: u64 = digits.parse().map_err(|_| IsoError::Overflow)?;
    Ok(value as i128)
}

/// Python's `str(timedelta)`: `[-]H:MM:SS[.ffffff]` or
/// `D day[s], H:MM:SS[.ffffff]` (D may be negative), as signed nanoseconds.
fn parse_python_timedelta(text: &str) -> Option<i128> {
    let has_days = text.contains(", ");
    let (days, clock) = match text.split_once(", ") {
        Some((day_part, clock)) => {
            let count = day_part
                .strip_suffix(" days")
                .or_else(|| day_part.strip_suffix(" day"))?;
            let digits = count.strip_prefix('-').unwrap_or(count);
            if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            (count.parse::<i128>().ok()?, clock)
        }
        None => (0, text),
    };
    let (sign, clock) = match clock.strip_prefix('-') {
        Some(rest) if !has_days => (-1, rest),
        Some(_) => return None,
        None => (1, clock),
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            (hms, format!("{f:0<9}").parse::<i128>().ok()?)
        }
        Some(_) => return None,
        None => (clock, 0),
    };
    let mut parts = hms.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.is_empty() || h.len() > 12 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    if ![h, m, s]
        .iter()
        .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let (h, m, s): (i128, i128, i128) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    if m >= 60 || s >= 60 {
        return None;
    }
    let clock_nanos = (h * 3_600 + m * 60 + s) * NANOS_PER_SEC + fraction;
    Some(days * 86_400 * NANOS_PER_SEC + sign * clock_nanos)
}

/// The ISO 8601 text of `duration`, in the form [`parse_duration`] reads:
/// days and a time part (`P1DT2H30M15S`, `PT0.5S`), never weeks; zero is
/// `PT0S`; a negative duration is prefixed with `-`.
pub fn format_duration(duration: SignedDuration) -> String {
    let magnitude = duration.unsigned_abs();
    let secs = magnitude.as_secs();
    let nanos = magnitude.subsec_nanos();
    let (days, hours, minutes, seconds) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    let mut out = String::from(if duration.is_negative() { "-P" } else { "P" });
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if hours > 0 || minutes > 0 || seconds > 0 || nanos > 0 || days == 0 {
        out.push('T');
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if seconds > 0 || nanos > 0 || (hours == 0 && minutes == 0) {
            out.push_str(&seconds.to_string());
            if nanos > 0 {
                let fraction = format!("{nanos:09}");
                out.push('.');
                out.push_str(fraction.trim_end_matches('0'));
            }
            out.push('S');
        }
    }
    out
}

/// setPresence's `expirationDuration`: `PT5M` to `PT4H` inclusive, default `PT5M`
/// (decisions.md rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpiration(/* within MIN..=MAX */ SignedDuration);

/// setUserPreferredPresence's `expirationDuration`: more than zero, at most 365
/// days; when absent, 1 day for Busy and DoNotDisturb, 7 days otherwise
/// (decisions.md rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreferredExpiration(/* within (0, MAX] */ SignedDuration);

/// A duration outside the range its action allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The provided [ExpirationDuration] is out of range.")]
pub struct OutOfRange;

/// Why an `expirationDuration` text was refused: its spelling or its length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpirationError {
    #[error(transparent)]
    Syntax(#[from] DurationError),
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
}

impl SessionExpiration {
    /// The shortest allowed, also the default.
    pub const MIN: SignedDuration = SignedDuration::from_mins(5);
    /// The longest allowed.
    pub const MAX: SignedDuration = SignedDuration::from_hours(4);
    /// What an absent `expirationDuration` means.
    pub const DEFAULT: SessionExpiration = SessionExpiration(Self::MIN);

    pub fn new(duration: SignedDuration) -> Result<Self, OutOfRange> {
        (Self::MIN..=Self::MAX)
            .contains(&duration)
            .then_some(SessionExpiration(duration))
            .ok_or(OutOfRange)
    }

    /// Parses the wire text and checks the range.
    pub fn parse(text: &str, syntax: DurationSyntax) -> Result<Self, ExpirationError> {
        Ok(Self::new(parse_duration(text, syntax)?)?)
    }

    pub fn duration(self) -> SignedDuration {
        self.0
    }
}

impl Default for SessionExpiration {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl PreferredExpiration {
    /// The longest allowed: 365 days.
    pub const MAX: SignedDuration = SignedDuration::from_hours(365 * 24);

    pub fn new(duration: SignedDuration) -> Result<Self, OutOfRange> {
        (duration.is_positive() && duration <= Self::MAX)
            .then_some(PreferredExpiration(duration))
            .ok_or(OutOfRange)
    }

    /// Parses the wire text and checks the range.
    pub fn parse(text: &str, syntax: DurationSyntax) -> Result<Self, ExpirationError> {
        Ok(Self::new(parse_duration(text, syntax)?)?)
    }

    /// What an absent `expirationDuration` means for `state`: 1 day for Busy
    /// and DoNotDisturb, 7 days otherwise (as Teams' own manual states).
    pub fn default_for(state: PreferredState) -> Self {
        let days = match state.availability() {
            Availability::Busy | Availability::DoNotDisturb => 1,
            _ => 7,
        };
        PreferredExpiration(SignedDuration::from_hours(days * 24))
    }

    pub fn duration(self) -> SignedDuration {
        self.0
    }
}

#[cfg(test)]
mod tests;
