//! Versioned binary encoding of stored records.
//!
//! Every record starts with a format version byte, so a later layout can be
//! read next to this one. Integers are LEB128 varints (signed ones zigzag
//! encoded), strings are a varint byte length then UTF-8, and instants are the
//! zigzag varint of their nanoseconds since the Unix epoch (an `i128`, so the
//! whole range of [`Timestamp`] fits, not only 1677–2262).
//!
//! Decoding never trusts its input: truncated, overlong or out-of-range data
//! is [`StoreError::Corrupt`], never a panic, and no allocation is sized from
//! a length the input declares before the bytes behind it are known to exist.
//!
//! This module knows the shape of the records, not where they are stored: no
//! table, key or engine appears here.

use jiff::Timestamp;
use jiff::civil::DateTime;
use presenced_domain::{
    Guid, LocationSignal, OutOfOffice, Preferred, PreferredState, Session, SessionId, SessionState,
    StatusExpiry, StatusMessage, UserFacts, WorkLocationLayers, WorkLocationType,
};

use crate::{DirectoryUser, StoreError, Tenant, UserProfile};

/// The version byte every record written by this code starts with.
pub const FORMAT_VERSION: u8 = 1;

// Presence bits of the optional parts of `UserFacts`, in the byte that
// follows the deadline. All eight are in use; a new optional part needs a new
// format version.
const HAS_SEQUENCE_AT: u8 = 1 << 0;
const HAS_PREFERRED: u8 = 1 << 1;
const HAS_STATUS_MESSAGE: u8 = 1 << 2;
const IS_OUT_OF_OFFICE: u8 = 1 << 3;
const HAS_OUT_OF_OFFICE_MESSAGE: u8 = 1 << 4;
const HAS_MANUAL_LOCATION: u8 = 1 << 5;
const HAS_AUTOMATIC_LOCATION: u8 = 1 << 6;
const HAS_SCHEDULED_LOCATION: u8 = 1 << 7;

/// Encodes a user's record: the facts, and the "next change" deadline that was
/// computed when they were written (kept with the facts so that changing the
/// deadline later knows which index row to remove).
pub fn encode_user_record(facts: &UserFacts, deadline: Option<Timestamp>) -> Vec<u8> {
    let mut out = Encoder::with_capacity(128);
    out.u8(FORMAT_VERSION);
    out.opt_timestamp(deadline);
    encode_facts(&mut out, facts);
    out.0
}

/// Decodes a record written by [`encode_user_record`].
pub fn decode_user_record(bytes: &[u8]) -> Result<(UserFacts, Option<Timestamp>), StoreError> {
    let mut input = Decoder::new(bytes, "user record");
    input.version()?;
    let deadline = input.opt_timestamp()?;
    let facts = decode_facts(&mut input)?;
    input.finish()?;
    Ok((facts, deadline))
}

/// The deadline of a user record, without decoding the facts.
pub fn user_record_deadline(bytes: &[u8]) -> Result<Option<Timestamp>, StoreError> {
    let mut input = Decoder::new(bytes, "user record");
    input.version()?;
    input.opt_timestamp()
}

/// The same record with another deadline; the facts bytes are copied as they are.
pub fn replace_user_record_deadline(
    bytes: &[u8],
    deadline: Option<Timestamp>,
) -> Result<Vec<u8>, StoreError> {
    let mut input = Decoder::new(bytes, "user record");
    input.version()?;
    input.opt_timestamp()?;
    let facts = &bytes[input.pos..];
    let mut out = Encoder::with_capacity(facts.len() + 20);
    out.u8(FORMAT_VERSION);
    out.opt_timestamp(deadline);
    out.0.extend_from_slice(facts);
    Ok(out.0)
}

/// Encodes a tenant; the id is not included (it is the record's key).
pub fn encode_tenant(tenant: &Tenant) -> Vec<u8> {
    let mut out = Encoder::with_capacity(2 + tenant.display_name.len());
    out.u8(FORMAT_VERSION);
    out.str(&tenant.display_name);
    out.0
}

/// Decodes a tenant written by [`encode_tenant`], given its id.
pub fn decode_tenant(id: Guid, bytes: &[u8]) -> Result<Tenant, StoreError> {
    let mut input = Decoder::new(bytes, "tenant record");
    input.version()?;
    let display_name = input.string()?;
    input.finish()?;
    Ok(Tenant { id, display_name })
}

/// Encodes a directory user; the id is not included (it is part of the key).
///
/// The profile follows the names only when it says something, so a user
/// without one is written exactly as before profiles existed, and records
/// written before them (ending after the display name) read as users with
/// an empty profile.
pub fn encode_directory_user(user: &DirectoryUser) -> Vec<u8> {
    let mut out =
        Encoder::with_capacity(3 + user.user_principal_name.len() + user.display_name.len());
    out.u8(FORMAT_VERSION);
    out.str(&user.user_principal_name);
    out.str(&user.display_name);
    let profile = &user.profile;
    if *profile != UserProfile::default() {
        for field in profile_texts(profile) {
            match field {
                None => out.u8(0),
                Some(text) => {
                    out.u8(1);
                    out.str(text);
                }
            }
        }
        out.varint(profile.business_phones.len() as u128);
        for phone in &profile.business_phones {
            out.str(phone);
        }
    }
    out.0
}

/// The optional texts of a profile, in their stored order.
fn profile_texts(profile: &UserProfile) -> [Option<&str>; 7] {
    [
        &profile.mail,
        &profile.given_name,
        &profile.surname,
        &profile.job_title,
        &profile.mobile_phone,
        &profile.office_location,
        &profile.preferred_language,
    ]
    .map(Option::as_deref)
}

/// Decodes a directory user written by [`encode_directory_user`], given its id.
pub fn decode_directory_user(id: Guid, bytes: &[u8]) -> Result<DirectoryUser, StoreError> {
    let mut input = Decoder::new(bytes, "directory user record");
    input.version()?;
    let user_principal_name = input.string()?;
    let display_name = input.string()?;
    let mut profile = UserProfile::default();
    if input.pos < bytes.len() {
        let mut text = || -> Result<Option<String>, StoreError> {
            if input.tag()? {
                input.string().map(Some)
            } else {
                Ok(None)
            }
        };
        profile.mail = text()?;
        profile.given_name = text()?;
        profile.surname = text()?;
        profile.job_title = text()?;
        profile.mobile_phone = text()?;
        profile.office_location = text()?;
        profile.preferred_language = text()?;
        let count = input.varint()?;
        // Each phone takes at least its length byte: a count beyond the
        // bytes left is corrupt, and is never used to size an allocation.
        if count > (bytes.len() - input.pos) as u128 {
            return Err(input.corrupt("too many business phones"));
        }
        for _ in 0..count {
            profile.business_phones.push(input.string()?);
        }
    }
    input.finish()?;
    Ok(DirectoryUser {
        id,
        user_principal_name,
        display_name,
        profile,
    })
}

/// Encodes one instant as a record of its own (the manual clock's reading).
pub fn encode_timestamp(at: Timestamp) -> Vec<u8> {
    let mut out = Encoder::with_capacity(20);
    out.u8(FORMAT_VERSION);
    out.timestamp(at);
    out.0
}

/// Decodes an instant written by [`encode_timestamp`].
pub fn decode_timestamp(bytes: &[u8]) -> Result<Timestamp, StoreError> {
    let mut input = Decoder::new(bytes, "timestamp record");
    input.version()?;
    let at = input.timestamp()?;
    input.finish()?;
    Ok(at)
}

fn encode_facts(out: &mut Encoder, facts: &UserFacts) {
    let layers = &facts.work_location;
    let flags = [
        (facts.sequence_at.is_some(), HAS_SEQUENCE_AT),
        (facts.preferred.is_some(), HAS_PREFERRED),
        (facts.status_message.is_some(), HAS_STATUS_MESSAGE),
        (facts.out_of_office.is_out_of_office, IS_OUT_OF_OFFICE),
        (
            facts.out_of_office.message.is_some(),
            HAS_OUT_OF_OFFICE_MESSAGE,
        ),
        (layers.manual.is_some(), HAS_MANUAL_LOCATION),
        (layers.automatic.is_some(), HAS_AUTOMATIC_LOCATION),
        (layers.scheduled.is_some(), HAS_SCHEDULED_LOCATION),
    ]
    .into_iter()
    .filter(|(present, _)| *present)
    .fold(0, |flags, (_, bit)| flags | bit);
    out.u8(flags);
    out.varint(u128::from(facts.sequence));
    if let Some(at) = facts.sequence_at {
        out.timestamp(at);
    }
    out.varint(facts.sessions.len() as u128);
    for session in &facts.sessions {
        out.str(session.id.as_str());
        out.u8(session.state.code());
        out.timestamp(session.refreshed_at);
        out.timestamp(session.expires_at);
    }
    if let Some(preferred) = &facts.preferred {
        out.u8(preferred.state.code());
        out.timestamp(preferred.set_at);
        out.timestamp(preferred.expires_at);
    }
    if let Some(message) = &facts.status_message {
        out.str(&message.content);
        out.timestamp(message.published_at);
        match &message.expiry {
            None => out.u8(0),
            Some(expiry) => {
                out.u8(1);
                out.date_time(expiry.date_time);
                out.str(&expiry.time_zone);
                out.timestamp(expiry.at);
            }
        }
    }
    if let Some(message) = &facts.out_of_office.message {
        out.str(message);
    }
    for signal in [&layers.manual, &layers.automatic, &layers.scheduled]
        .into_iter()
        .flatten()
    {
        out.u8(signal.kind.code());
        match &signal.place_id {
            None => out.u8(0),
            Some(place) => {
                out.u8(1);
                out.str(place);
            }
        }
        out.opt_timestamp(signal.until);
    }
}

fn decode_facts(input: &mut Decoder<'_>) -> Result<UserFacts, StoreError> {
    let flags = input.u8()?;
    let sequence =
        u64::try_from(input.varint()?).map_err(|_| input.corrupt("sequence out of range"))?;
    let sequence_at = if flags & HAS_SEQUENCE_AT != 0 {
        Some(input.timestamp()?)
    } else {
        None
    };
    let count = input.varint()?;
    let mut sessions = Vec::new();
    for _ in 0..count {
        // Each iteration consumes bytes, so a huge declared count ends in a
        // truncation error long before memory runs out.
        let id = input.text()?;
        let id = SessionId::parse(id).map_err(|e| input.corrupt(&format!("session id: {e}")))?;
        let code = input.u8()?;
        let state =
            SessionState::from_code(code).ok_or_else(|| input.corrupt("unknown session state"))?;
        let refreshed_at = input.timestamp()?;
        let expires_at = input.timestamp()?;
        sessions.push(Session {
            id,
            state,
            refreshed_at,
            expires_at,
        });
    }
    let preferred = if flags & HAS_PREFERRED != 0 {
        let code = input.u8()?;
        let state = PreferredState::from_code(code)
            .ok_or_else(|| input.corrupt("unknown preferred state"))?;
        Some(Preferred {
            state,
            set_at: input.timestamp()?,
            expires_at: input.timestamp()?,
        })
    } else {
        None
    };
    let status_message = if flags & HAS_STATUS_MESSAGE != 0 {
        let content = input.string()?;
        let published_at = input.timestamp()?;
        let expiry = if input.tag()? {
            let date_time = input.date_time()?;
            let time_zone = input.string()?;
            let at = input.timestamp()?;
            Some(StatusExpiry {
                date_time,
                time_zone,
                at,
            })
        } else {
            None
        };
        Some(StatusMessage {
            content,
            published_at,
            expiry,
        })
    } else {
        None
    };
    let out_of_office = OutOfOffice {
        is_out_of_office: flags & IS_OUT_OF_OFFICE != 0,
        message: if flags & HAS_OUT_OF_OFFICE_MESSAGE != 0 {
            Some(input.string()?)
        } else {
            None
        },
    };
    let mut signal = |bit: u8| -> Result<Option<LocationSignal>, StoreError> {
        if flags & bit == 0 {
            return Ok(None);
        }
        let code = input.u8()?;
        let kind = WorkLocationType::from_code(code)
            .ok_or_else(|| input.corrupt("unknown work location type"))?;
        let place_id = if input.tag()? {
            Some(input.string()?)
        } else {
            None
        };
        let until = input.opt_timestamp()?;
        Ok(Some(LocationSignal {
            kind,
            place_id,
            until,
        }))
    };
    let work_location = WorkLocationLayers {
        manual: signal(HAS_MANUAL_LOCATION)?,
        automatic: signal(HAS_AUTOMATIC_LOCATION)?,
        scheduled: signal(HAS_SCHEDULED_LOCATION)?,
    };
    Ok(UserFacts {
        sessions,
        preferred,
        status_message,
        out_of_office,
        work_location,
        sequence,
        sequence_at,
    })
}

/// An output buffer with the primitive encodings.
struct Encoder(Vec<u8>);

impl Encoder {
    fn with_capacity(capacity: usize) -> Self {
        Encoder(Vec::with_capacity(capacity))
    }

    fn u8(&mut self, byte: u8) {
        self.0.push(byte);
    }

    fn varint(&mut self, mut value: u128) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn signed(&mut self, value: i128) {
        self.varint(((value << 1) ^ (value >> 127)) as u128);
    }

    fn str(&mut self, text: &str) {
        self.varint(text.len() as u128);
        self.0.extend_from_slice(text.as_bytes());
    }

    fn timestamp(&mut self, at: Timestamp) {
        self.signed(at.as_nanosecond());
    }

    fn opt_timestamp(&mut self, at: Option<Timestamp>) {
        match at {
            None => self.u8(0),
            Some(at) => {
                self.u8(1);
                self.timestamp(at);
            }
        }
    }

    fn date_time(&mut self, at: DateTime) {
        self.signed(i128::from(at.year()));
        for part in [at.month(), at.day(), at.hour(), at.minute(), at.second()] {
            self.u8(part as u8);
        }
        self.varint(at.subsec_nanosecond() as u128);
    }
}

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// What is being decoded, for the error message.
    what: &'static str,
}

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Decoder {
            bytes,
            pos: 0,
            what,
        }
    }

    fn corrupt(&self, why: &str) -> StoreError {
        StoreError::Corrupt(format!("{} at byte {}: {why}", self.what, self.pos))
    }

    fn version(&mut self) -> Result<(), StoreError> {
        match self.u8()? {
            FORMAT_VERSION => Ok(()),
            other => Err(self.corrupt(&format!("unknown format version {other}"))),
        }
    }

    fn finish(&self) -> Result<(), StoreError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
        }
    }

    fn u8(&mut self) -> Result<u8, StoreError> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.corrupt("truncated"))?;
        self.pos += 1;
        Ok(byte)
    }

    /// A 0/1 byte saying whether an optional part follows.
    fn tag(&mut self) -> Result<bool, StoreError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.corrupt("bad presence tag")),
        }
    }

    fn varint(&mut self) -> Result<u128, StoreError> {
        // Most values (lengths, counts, instants in nanoseconds) fit in nine
        // bytes (63 bits): read those in u64 arithmetic, the rest in u128.
        let mut small = 0u64;
        for shift in (0..63).step_by(7) {
            let byte = self.u8()?;
            small |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(u128::from(small));
            }
        }
        let mut value = u128::from(small);
        for shift in (63..128).step_by(7) {
            let byte = self.u8()?;
            let bits = u128::from(byte & 0x7f);
            if shift == 126 && bits > 0b11 {
                return Err(self.corrupt("varint overflows"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.corrupt("varint too long"))
    }

    fn signed(&mut self) -> Result<i128, StoreError> {
        let raw = self.varint()?;
        Ok(((raw >> 1) as i128) ^ -((raw & 1) as i128))
    }

    fn string(&mut self) -> Result<String, StoreError> {
        self.text().map(str::to_owned)
    }

    /// A string, borrowed from the record.
    fn text(&mut self) -> Result<&'a str, StoreError> {
        let len = self.varint()?;
        let rest = self.bytes.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= rest)
            .ok_or_else(|| self.corrupt("truncated string"))?;
        let bytes: &'a [u8] = self.bytes;
        let text = std::str::from_utf8(&bytes[self.pos..self.pos + len])
            .map_err(|_| self.corrupt("not UTF-8"))?;
        self.pos += len;
        Ok(text)
    }

    fn timestamp(&mut self) -> Result<Timestamp, StoreError> {
        let nanos = self.signed()?;
        // Instants within i64 nanoseconds (years 1678 to 2262: all real
        // ones) are split in 64-bit arithmetic; `from_nanosecond` divides in
        // 128 bits, and still takes the rest of jiff's range.
        let instant = match i64::try_from(nanos) {
            Ok(nanos) => Timestamp::new(nanos / 1_000_000_000, (nanos % 1_000_000_000) as i32),
            Err(_) => Timestamp::from_nanosecond(nanos),
        };
        instant.map_err(|_| self.corrupt("instant out of range"))
    }

    fn opt_timestamp(&mut self) -> Result<Option<Timestamp>, StoreError> {
        if self.tag()? {
            self.timestamp().map(Some)
        } else {
            Ok(None)
        }
    }

    fn date_time(&mut self) -> Result<DateTime, StoreError> {
        let year = i16::try_from(self.signed()?).map_err(|_| self.corrupt("year out of range"))?;
        let mut parts = [0i8; 5];
        for part in &mut parts {
            *part = i8::try_from(self.u8()?).map_err(|_| self.corrupt("date part out of range"))?;
        }
        let nanos =
            i32::try_from(self.varint()?).map_err(|_| self.corrupt("nanoseconds out of range"))?;
        let [month, day, hour, minute, second] = parts;
        DateTime::new(year, month, day, hour, minute, second, nanos)
            .map_err(|_| self.corrupt("invalid date and time"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_varint(value: u128) {
        let mut out = Encoder::with_capacity(0);
        out.varint(value);
        let mut input = Decoder::new(&out.0, "test");
        assert_eq!(input.varint().unwrap(), value);
        input.finish().unwrap();
    }

    #[test]
    fn varints_round_trip_at_their_edges() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u128::from(u64::MAX),
            u128::MAX - 1,
            u128::MAX,
        ] {
            roundtrip_varint(value);
        }
    }

    #[test]
    fn signed_values_round_trip_at_their_edges() {
        for value in [0, -1, 1, -64, 64, i128::MIN, i128::MAX] {
            let mut out = Encoder::with_capacity(0);
            out.signed(value);
            assert_eq!(Decoder::new(&out.0, "test").signed().unwrap(), value);
        }
    }

    #[test]
    fn overlong_varints_are_corrupt() {
        let too_long = [0xffu8; 20];
        assert!(Decoder::new(&too_long, "test").varint().is_err());
        // 19 bytes whose last one carries bits beyond 128.
        let mut overflow = [0xffu8; 19];
        overflow[18] = 0x04;
        assert!(Decoder::new(&overflow, "test").varint().is_err());
    }

    #[test]
    fn instants_keep_their_full_range() {
        let nanos = |n: i128| Timestamp::from_nanosecond(n).unwrap();
        for at in [
            Timestamp::MIN,
            Timestamp::UNIX_EPOCH,
            Timestamp::MAX,
            nanos(-1),
            nanos(1),
            nanos(-1_500_000_001),
            nanos(1_780_000_000_123_456_789),
            nanos(i128::from(i64::MIN)),
            nanos(i128::from(i64::MIN) - 1),
            nanos(i128::from(i64::MAX)),
            nanos(i128::from(i64::MAX) + 1),
        ] {
            assert_eq!(decode_timestamp(&encode_timestamp(at)).unwrap(), at);
        }
    }

    #[test]
    fn an_unknown_version_is_corrupt() {
        let mut bytes = encode_timestamp(Timestamp::UNIX_EPOCH);
        bytes[0] = 99;
        assert!(matches!(
            decode_timestamp(&bytes),
            Err(StoreError::Corrupt(_))
        ));
    }
}
