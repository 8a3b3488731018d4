//! Status messages: decisions.md rule 11.

use jiff::Timestamp;
use jiff::civil::date;

use super::*;
use crate::windows_zones::{RETIRED_WINDOWS_ZONES, WINDOWS_ZONES};

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn expiry_at(date_time: &str, time_zone: &str) -> Result<Timestamp, StatusMessageError> {
    StatusExpiry::parse(date_time, time_zone).map(|e| e.at)
}

#[test]
fn text_content_is_accepted_in_any_letter_case_or_when_absent() {
    fn check(content_type: Option<&str>, expected: Result<(), StatusMessageError>) {
        let got = NewStatusMessage::parse("In a meeting", content_type, None).map(|_| ());
        assert_eq!(got, expected, "{content_type:?}");
    }
    check(None, Ok(()));
    check(Some("text"), Ok(()));
    check(Some("Text"), Ok(()));
    check(Some("TEXT"), Ok(()));
    check(
        Some("html"),
        Err(StatusMessageError::ContentType("html".into())),
    );
    check(
        Some("HTML"),
        Err(StatusMessageError::ContentType("HTML".into())),
    );
    check(Some(""), Err(StatusMessageError::ContentType("".into())));
    check(
        Some("plain"),
        Err(StatusMessageError::ContentType("plain".into())),
    );
}

#[test]
fn content_may_be_at_most_280_characters() {
    fn check(content: &str, expected: Result<bool, StatusMessageError>) {
        let got = NewStatusMessage::parse(content, Some("text"), None).map(|m| m.is_some());
        assert_eq!(got, expected, "{} chars", content.chars().count());
    }
    check(&"a".repeat(280), Ok(true));
    check(&"a".repeat(281), Err(StatusMessageError::TooLong(281)));
    check(&"é".repeat(280), Ok(true));
    check(&"🙂".repeat(280), Ok(true));
    check(&"🙂".repeat(281), Err(StatusMessageError::TooLong(281)));
    check(" ", Ok(true));
    check("", Ok(false));
}

#[test]
fn empty_content_means_clear_but_is_still_validated() {
    assert_eq!(NewStatusMessage::parse("", None, None), Ok(None));
    assert_eq!(
        NewStatusMessage::parse("", Some("text"), Some(("2025-01-01T17:00:00", "UTC"))),
        Ok(None)
    );
    assert_eq!(
        NewStatusMessage::parse("", Some("html"), None),
        Err(StatusMessageError::ContentType("html".into()))
    );
    assert_eq!(
        NewStatusMessage::parse("", None, Some(("tomorrow", "UTC"))),
        Err(StatusMessageError::DateTime("tomorrow".into()))
    );
}

#[test]
fn a_message_keeps_its_content_and_expiry() {
    let message = NewStatusMessage::parse(
        "Hey I'm currently in a meeting.",
        Some("text"),
        Some(("2025-01-01T17:00:00.0000000", "Pacific Standard Time")),
    )
    .unwrap()
    .unwrap();
    assert_eq!(message.content, "Hey I'm currently in a meeting.");
    let expiry = message.expiry.unwrap();
    assert_eq!(expiry.date_time, date(2025, 1, 1).at(17, 0, 0, 0));
    assert_eq!(expiry.time_zone, "Pacific Standard Time");
    assert_eq!(expiry.at, ts("2025-01-02T01:00:00Z"));
    assert_eq!(expiry.date_time_text(), "2025-01-01T17:00:00.0000000");
}

#[test]
fn date_times_have_no_offset_and_up_to_seven_fractional_digits() {
    fn check(input: &str, expected: Option<&str>) {
        let got = parse_date_time(input).map(format_date_time);
        assert_eq!(got.as_deref(), expected, "{input}");
    }
    check("2025-01-01T17:00:00", Some("2025-01-01T17:00:00.0000000"));
    check("2025-01-01T17:00:00.5", Some("2025-01-01T17:00:00.5000000"));
    check(
        "2022-10-18T17:05:33.2079781",
        Some("2022-10-18T17:05:33.2079781"),
    );
    check(
        "2025-01-01T12:00:00.123456",
        Some("2025-01-01T12:00:00.1234560"),
    );
    check("2024-02-29T23:59:59", Some("2024-02-29T23:59:59.0000000"));
    check("2025-01-01T17:00:00.12345678", None);
    check("2025-01-01T17:00:00.", None);
    check("2025-01-01T17:00:00Z", None);
    check("2025-01-01T17:00:00.123Z", None);
    check("2025-01-01T17:00:00+00:00", None);
    check("2025-01-01T17:00:00-08:00", None);
    check("2025-01-01 17:00:00", None);
    check("2025-01-01t17:00:00", None);
    check("2025-01-01T17:00", None);
    check("2025-01-01", None);
    check("2025-02-29T00:00:00", None);
    check("2025-13-01T00:00:00", None);
    check("2025-01-01T24:00:00", None);
    check("2025-01-01T23:60:00", None);
    check("+025-01-01T00:00:00", None);
    check("2025-1-01T00:00:00", None);
    check("", None);
}

#[test]
fn time_zones_may_be_utc_iana_or_windows_names_in_any_case() {
    fn check(time_zone: &str, expected: Result<&str, StatusMessageError>) {
        assert_eq!(
            expiry_at("2025-01-15T12:00:00", time_zone),
            expected.map(ts),
            "{time_zone}"
        );
    }
    check("UTC", Ok("2025-01-15T12:00:00Z"));
    check("utc", Ok("2025-01-15T12:00:00Z"));
    check("Etc/UTC", Ok("2025-01-15T12:00:00Z"));
    check("Pacific Standard Time", Ok("2025-01-15T20:00:00Z"));
    check("PACIFIC STANDARD TIME", Ok("2025-01-15T20:00:00Z"));
    check("America/Los_Angeles", Ok("2025-01-15T20:00:00Z"));
    check("america/los_angeles", Ok("2025-01-15T20:00:00Z"));
    check("W. Europe Standard Time", Ok("2025-01-15T11:00:00Z"));
    check("Europe/Paris", Ok("2025-01-15T11:00:00Z"));
    check("India Standard Time", Ok("2025-01-15T06:30:00Z"));
    check("Asia/Kolkata", Ok("2025-01-15T06:30:00Z"));
    check("Tokyo Standard Time", Ok("2025-01-15T03:00:00Z"));
    check("AUS Eastern Standard Time", Ok("2025-01-15T01:00:00Z"));
    check("Nepal Standard Time", Ok("2025-01-15T06:15:00Z"));
    check("Dateline Standard Time", Ok("2025-01-16T00:00:00Z"));
    check("Line Islands Standard Time", Ok("2025-01-14T22:00:00Z"));
    let unknown = |name: &str| Err(StatusMessageError::UnknownTimeZone(name.into()));
    check("Pacific Time", unknown("Pacific Time"));
    check("Mars/Olympus_Mons", unknown("Mars/Olympus_Mons"));
    check("", unknown(""));
    check("+01:00", unknown("+01:00"));
    check("../../etc/passwd", unknown("../../etc/passwd"));
}

#[test]
fn daylight_saving_time_is_applied_in_the_named_zone() {
    fn check(date_time: &str, time_zone: &str, expected: &str) {
        assert_eq!(
            expiry_at(date_time, time_zone),
            Ok(ts(expected)),
            "{date_time} {time_zone}"
        );
    }
    // Summer and winter on both sides of the Atlantic.
    check(
        "2025-07-01T17:00:00",
        "Pacific Standard Time",
        "2025-07-02T00:00:00Z",
    );
    check(
        "2025-12-01T17:00:00",
        "Pacific Standard Time",
        "2025-12-02T01:00:00Z",
    );
    check(
        "2025-07-01T17:00:00",
        "W. Europe Standard Time",
        "2025-07-01T15:00:00Z",
    );
    check(
        "2025-07-01T17:00:00",
        "GMT Standard Time",
        "2025-07-01T16:00:00Z",
    );
    check(
        "2025-12-01T17:00:00",
        "GMT Standard Time",
        "2025-12-01T17:00:00Z",
    );
    // Southern hemisphere: Sydney is on summer time in January.
    check(
        "2025-01-15T12:00:00",
        "Australia/Sydney",
        "2025-01-15T01:00:00Z",
    );
    check(
        "2025-07-15T12:00:00",
        "AUS Eastern Standard Time",
        "2025-07-15T02:00:00Z",
    );
    // A skipped local time moves forward by the gap (02:30 does not exist on 9 March 2025).
    check(
        "2025-03-09T02:30:00",
        "Pacific Standard Time",
        "2025-03-09T10:30:00Z",
    );
    // A repeated local time takes the earlier instant (01:30 happens twice on 2 November 2025).
    check(
        "2025-11-02T01:30:00",
        "Pacific Standard Time",
        "2025-11-02T08:30:00Z",
    );
    check(
        "2025-10-26T02:30:00",
        "Europe/Berlin",
        "2025-10-26T00:30:00Z",
    );
}

#[test]
fn every_windows_zone_in_the_table_resolves_without_system_files() {
    for (windows, iana) in WINDOWS_ZONES.iter().chain(RETIRED_WINDOWS_ZONES) {
        assert!(
            resolve_time_zone(windows).is_some(),
            "{windows} -> {iana} is missing from the bundled database"
        );
    }
    assert!(!tzdb().is_definitively_empty());
}

#[test]
fn an_expiry_in_the_past_is_accepted() {
    let message = NewStatusMessage::parse("Back soon", None, Some(("2000-01-01T00:00:00", "UTC")))
        .unwrap()
        .unwrap();
    let expiry = message.expiry.unwrap();
    assert_eq!(expiry.at, ts("2000-01-01T00:00:00Z"));
    let stored = StatusMessage {
        content: message.content,
        published_at: ts("2025-01-01T00:00:00Z"),
        expiry: Some(expiry),
    };
    assert!(!stored.is_visible_at(ts("2025-01-01T00:00:00Z")));
}

#[test]
fn a_message_shows_until_its_expiry_instant_and_not_at_it() {
    let expiry = StatusExpiry::parse("2025-01-01T12:00:00", "UTC").unwrap();
    let message = StatusMessage {
        content: "x".into(),
        published_at: ts("2025-01-01T00:00:00Z"),
        expiry: Some(expiry),
    };
    fn check(message: &StatusMessage, now: &str, expected: bool) {
        assert_eq!(message.is_visible_at(ts(now)), expected, "{now}");
    }
    check(&message, "2025-01-01T11:59:59.999999999Z", true);
    check(&message, "2025-01-01T12:00:00Z", false);
    check(&message, "2025-01-01T12:00:01Z", false);
    let forever = StatusMessage {
        expiry: None,
        ..message
    };
    check(&forever, "9999-01-01T00:00:00Z", true);
}

#[test]
fn a_date_time_beyond_the_representable_range_is_refused() {
    assert_eq!(
        expiry_at("9999-12-31T23:59:59", "Dateline Standard Time"),
        Err(StatusMessageError::DateTime("9999-12-31T23:59:59".into()))
    );
}

#[test]
fn an_offset_that_agrees_with_the_time_zone_is_accepted() {
    fn check(date_time: &str, time_zone: &str, at: &str, civil: &str) {
        let expiry = StatusExpiry::parse(date_time, time_zone)
            .unwrap_or_else(|e| panic!("{date_time} {time_zone}: {e}"));
        assert_eq!(expiry.at, ts(at), "{date_time} {time_zone}");
        assert_eq!(expiry.date_time_text(), civil, "{date_time} {time_zone}");
        assert_eq!(expiry.time_zone, time_zone);
    }
    // What office365-rest-python-client sends.
    check(
        "2026-12-04T02:29:10+00:00",
        "UTC",
        "2026-12-04T02:29:10Z",
        "2026-12-04T02:29:10.0000000",
    );
    check(
        "2026-12-04T02:29:10Z",
        "UTC",
        "2026-12-04T02:29:10Z",
        "2026-12-04T02:29:10.0000000",
    );
    check(
        "2026-12-04T02:29:10.5z",
        "Etc/UTC",
        "2026-12-04T02:29:10.5Z",
        "2026-12-04T02:29:10.5000000",
    );
    check(
        "2026-07-01T09:00:00-07:00",
        "Pacific Standard Time",
        "2026-07-01T16:00:00Z",
        "2026-07-01T09:00:00.0000000",
    );
    check(
        "2026-01-15T09:00:00-08:00",
        "America/Los_Angeles",
        "2026-01-15T17:00:00Z",
        "2026-01-15T09:00:00.0000000",
    );
    check(
        "2026-01-15T12:00:00+05:30",
        "India Standard Time",
        "2026-01-15T06:30:00Z",
        "2026-01-15T12:00:00.0000000",
    );
    // A time the autumn change repeats: the offset picks which one.
    check(
        "2026-10-25T02:30:00+02:00",
        "Europe/Paris",
        "2026-10-25T00:30:00Z",
        "2026-10-25T02:30:00.0000000",
    );
    check(
        "2026-10-25T02:30:00+01:00",
        "Europe/Paris",
        "2026-10-25T01:30:00Z",
        "2026-10-25T02:30:00.0000000",
    );
}

#[test]
fn an_offset_that_contradicts_the_time_zone_is_refused_naming_both() {
    fn check(date_time: &str, time_zone: &str, offset: &str, zone_offset: &str) {
        let error = StatusExpiry::parse(date_time, time_zone).unwrap_err();
        assert_eq!(
            error,
            StatusMessageError::OffsetContradictsTimeZone {
                date_time: date_time.into(),
                offset: offset.into(),
                time_zone: time_zone.into(),
                zone_offset: zone_offset.into(),
            }
        );
        let message = error.to_string();
        assert!(
            message.contains(offset)
                && message.contains(zone_offset)
                && message.contains(time_zone),
            "{message}"
        );
    }
    check("2026-12-04T02:29:10+02:00", "UTC", "+02:00", "+00:00");
    check(
        "2026-07-01T09:00:00-05:00",
        "Pacific Standard Time",
        "-05:00",
        "-07:00",
    );
    // Winter offset in summer.
    check(
        "2026-07-01T09:00:00-08:00",
        "America/Los_Angeles",
        "-08:00",
        "-07:00",
    );
    check("2026-01-15T12:00:00Z", "Europe/Paris", "+00:00", "+01:00");
}

#[test]
fn malformed_offsets_are_not_date_times() {
    for text in [
        "2026-12-04T02:29:10+0000",
        "2026-12-04T02:29:10+00",
        "2026-12-04T02:29:10+24:00",
        "2026-12-04T02:29:10+00:60",
        "2026-12-04T02:29:10+0a:00",
        "2026-12-04T02:29:10 +00:00",
        "2026-12-04T02:29:10ZZ",
        "2026-12-04T02:29:10.+00:00",
        "2026-12-04+00:00",
        "Z",
        "+00:00",
    ] {
        assert_eq!(
            StatusExpiry::parse(text, "UTC").map(|e| e.at),
            Err(StatusMessageError::DateTime(text.into())),
            "{text}"
        );
    }
}
