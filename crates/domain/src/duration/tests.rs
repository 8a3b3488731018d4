//! Durations: the grammar of decisions.md rule 3 and the ranges of rules 4-5.

use jiff::SignedDuration;
use proptest::prelude::*;

use super::*;
use crate::values::{Activity, Availability, PreferredState};

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

fn iso(text: &str) -> Result<SignedDuration, DurationError> {
    parse_duration(text, DurationSyntax::Iso8601)
}

#[test]
fn iso_8601_weeks_days_and_times_are_accepted() {
    fn check(input: &str, expected: SignedDuration) {
        assert_eq!(iso(input), Ok(expected), "{input}");
        let lenient = parse_duration(input, DurationSyntax::AlsoPythonTimedelta);
        assert_eq!(lenient, Ok(expected), "{input}");
    }
    check("PT5M", secs(300));
    check("PT8H", secs(8 * 3600));
    check("PT1H30M", secs(5400));
    check("P1D", secs(86_400));
    check("P1DT2H30M15S", secs(86_400 + 2 * 3600 + 30 * 60 + 15));
    check("P1W", secs(7 * 86_400));
    check("P2W", secs(14 * 86_400));
    check("PT0.5S", SignedDuration::from_millis(500));
    check(
        "PT4H0.001S",
        secs(4 * 3600) + SignedDuration::from_millis(1),
    );
    check("PT0.000000001S", SignedDuration::from_nanos(1));
    check("PT1M30.25S", SignedDuration::from_millis(90_250));
    check("PT300S", secs(300));
    check("PT240M", secs(4 * 3600));
    check("PT36H", secs(36 * 3600));
    check("P0DT5M", secs(300));
    check("PT0H5M", secs(300));
    check("P365D", secs(365 * 86_400));
    check("PT005M", secs(300));
}

#[test]
fn malformed_durations_are_refused_saying_which_format_is_expected() {
    fn check(input: &str) {
        assert_eq!(
            iso(input),
            Err(DurationError::Malformed(input.to_owned())),
            "{input}"
        );
        assert_eq!(
            parse_duration(input, DurationSyntax::AlsoPythonTimedelta),
            iso(input),
            "{input}"
        );
    }
    for input in [
        "",
        "P",
        "PT",
        "P1DT",
        "pt5m",
        "Pt5M",
        "PT5m",
        "p1d",
        "PT5M ",
        " PT5M",
        "PT1.5H",
        "PT1.5M",
        "PT.5S",
        "PT5.S",
        "PT0.0000000001S",
        "PT1,5S",
        "P1W2D",
        "P1DT1W",
        "P1WT1H",
        "PT5M1H",
        "PT1H1H",
        "+PT5M",
        "5M",
        "PT5",
        "P1D2D",
        "PTS",
        "PT-5M",
        "P1.5D",
        "PT5Mjunk",
        "PT1H30",
        "P1DT2H30M15",
        "T5M",
        "PT5M\n",
        "8:00",
        "8:0:00",
        "8:60:00",
        "0:05:60",
        "1 day 0:00:00",
        "1 day, -0:05:00",
        "1 week, 0:00:00",
        "1 day,0:00:00",
        "day, 0:00:00",
        "8:00:00.",
        "8:00:00.1234567890",
        "08h00",
        "five minutes",
    ] {
        check(input);
    }
    assert_eq!(
        iso("PT").unwrap_err().to_string(),
        "'PT' is not an ISO 8601 duration such as \"PT8H\", \"PT1H30M\" or \"P1DT2H\"."
    );
}

#[test]
fn years_and_months_are_refused_as_ambiguous() {
    fn check(input: &str) {
        assert_eq!(
            iso(input),
            Err(DurationError::CalendarUnits(input.to_owned())),
            "{input}"
        );
    }
    for input in ["P1Y", "P1M", "P0Y", "P1Y2M3DT4H", "P1MT5M", "P2M1D", "-P1Y"] {
        check(input);
    }
    assert!(iso("P1M").unwrap_err().to_string().contains("PT1M"));
}

#[test]
fn zero_and_negative_durations_are_refused() {
    fn check(input: &str) {
        assert_eq!(
            iso(input),
            Err(DurationError::NotPositive(input.to_owned())),
            "{input}"
        );
        let lenient = parse_duration(input, DurationSyntax::AlsoPythonTimedelta);
        assert_eq!(
            lenient,
            Err(DurationError::NotPositive(input.to_owned())),
            "{input}"
        );
    }
    for input in [
        "PT0S",
        "P0D",
        "P0W",
        "PT0M",
        "PT0.0S",
        "P0DT0H0M0S",
        "-PT5M",
        "-P1D",
        "0:00:00",
        "-0:05:00",
        "-1 day, 23:55:00",
        "-2 days, 0:00:00",
        "0 days, 0:00:00",
    ] {
        check(input);
    }
}

#[test]
fn durations_too_long_to_represent_are_refused() {
    for input in [
        "P99999999999999999999D",
        "P18446744073709551615D",
        "PT18446744073709551615H",
    ] {
        assert_eq!(
            iso(input),
            Err(DurationError::Overflow(input.to_owned())),
            "{input}"
        );
    }
}

#[test]
fn python_timedelta_text_is_refused_by_default_naming_the_iso_form() {
    fn check(input: &str, suggestion: &str, expected: SignedDuration) {
        let err = iso(input).unwrap_err();
        assert_eq!(
            err,
            DurationError::PythonTimedelta {
                given: input.to_owned(),
                suggestion: suggestion.to_owned()
            },
            "{input}"
        );
        assert_eq!(
            iso(suggestion),
            Ok(expected),
            "the suggestion {suggestion} must itself parse"
        );
    }
    // Every form in sdk-wire.md "Durations".
    check("8:00:00", "PT8H", secs(8 * 3600));
    check("1:30:00", "PT1H30M", secs(5400));
    check("0:05:00", "PT5M", secs(300));
    check("1:00:00", "PT1H", secs(3600));
    check("4:00:00", "PT4H", secs(4 * 3600));
    check("1 day, 0:00:00", "P1D", secs(86_400));
    check("1 day, 2:30:15", "P1DT2H30M15S", secs(86_400 + 9015));
    check("7 days, 0:00:00", "P7D", secs(7 * 86_400));
    check(
        "4:00:00.500000",
        "PT4H0.5S",
        secs(4 * 3600) + SignedDuration::from_millis(500),
    );
    check(
        "0:05:00.500000",
        "PT5M0.5S",
        SignedDuration::from_millis(300_500),
    );
    assert_eq!(
        iso("8:00:00").unwrap_err().to_string(),
        "'8:00:00' is not an ISO 8601 duration; send it as the string \"PT8H\"."
    );
}

#[test]
fn python_timedelta_text_is_accepted_when_configured() {
    fn check(input: &str, expected: SignedDuration) {
        assert_eq!(
            parse_duration(input, DurationSyntax::AlsoPythonTimedelta),
            Ok(expected),
            "{input}"
        );
    }
    check("8:00:00", secs(8 * 3600));
    check("1:30:00", secs(5400));
    check("0:05:00", secs(300));
    check("1 day, 0:00:00", secs(86_400));
    check("1 day, 2:30:15", secs(86_400 + 9015));
    check("7 days, 0:00:00", secs(7 * 86_400));
    check(
        "4:00:00.500000",
        secs(4 * 3600) + SignedDuration::from_millis(500),
    );
    check(
        "12:34:56.7",
        secs(12 * 3600 + 34 * 60 + 56) + SignedDuration::from_millis(700),
    );
}

#[test]
fn durations_format_as_the_shortest_iso_text() {
    fn check(duration: SignedDuration, expected: &str) {
        assert_eq!(format_duration(duration), expected);
    }
    check(secs(300), "PT5M");
    check(secs(8 * 3600), "PT8H");
    check(secs(5400), "PT1H30M");
    check(secs(86_400), "P1D");
    check(secs(7 * 86_400), "P7D");
    check(secs(86_400 + 9015), "P1DT2H30M15S");
    check(secs(86_400 + 15), "P1DT15S");
    check(
        secs(4 * 3600) + SignedDuration::from_millis(500),
        "PT4H0.5S",
    );
    check(SignedDuration::from_nanos(1), "PT0.000000001S");
    check(SignedDuration::ZERO, "PT0S");
    check(-secs(300), "-PT5M");
}

#[test]
fn session_expiration_allows_five_minutes_to_four_hours_inclusive() {
    fn check(input: &str, expected: Result<SignedDuration, ExpirationError>) {
        let got = SessionExpiration::parse(input, DurationSyntax::Iso8601)
            .map(SessionExpiration::duration);
        assert_eq!(got, expected, "{input}");
    }
    let out = || Err(ExpirationError::OutOfRange(OutOfRange));
    check("PT5M", Ok(secs(300)));
    check("PT300S", Ok(secs(300)));
    check("PT4H", Ok(secs(4 * 3600)));
    check("PT240M", Ok(secs(4 * 3600)));
    check("PT1H", Ok(secs(3600)));
    check("PT4M", out());
    check("PT4M59.999999999S", out());
    check("PT4H0.001S", out());
    check("PT4H0.000000001S", out());
    check("PT241M", out());
    check("P1D", out());
    check("P1W", out());
    check(
        "PT0S",
        Err(ExpirationError::Syntax(DurationError::NotPositive(
            "PT0S".into(),
        ))),
    );
    assert_eq!(SessionExpiration::DEFAULT.duration(), secs(300));
    assert_eq!(SessionExpiration::default(), SessionExpiration::DEFAULT);
    assert_eq!(
        OutOfRange.to_string(),
        "The provided [ExpirationDuration] is out of range."
    );
    assert_eq!(
        ExpirationError::from(OutOfRange).to_string(),
        "The provided [ExpirationDuration] is out of range."
    );
}

#[test]
fn preferred_expiration_allows_more_than_zero_up_to_365_days() {
    fn check(input: &str, expected: Result<SignedDuration, ExpirationError>) {
        let got = PreferredExpiration::parse(input, DurationSyntax::Iso8601)
            .map(PreferredExpiration::duration);
        assert_eq!(got, expected, "{input}");
    }
    let out = || Err(ExpirationError::OutOfRange(OutOfRange));
    check("PT0.000000001S", Ok(SignedDuration::from_nanos(1)));
    check("PT1S", Ok(secs(1)));
    check("PT8H", Ok(secs(8 * 3600)));
    check("P52W", Ok(secs(364 * 86_400)));
    check("P365D", Ok(secs(365 * 86_400)));
    check("P365DT0.000000001S", out());
    check("P366D", out());
    check("P53W", out());
    assert_eq!(
        PreferredExpiration::new(SignedDuration::ZERO),
        Err(OutOfRange)
    );
    assert_eq!(PreferredExpiration::new(-secs(1)), Err(OutOfRange));
}

#[test]
fn preferred_expiration_defaults_to_a_day_for_busy_and_dnd_and_a_week_otherwise() {
    fn check(availability: Availability, activity: Activity, days: i64) {
        let state = PreferredState::new(availability, activity).unwrap();
        assert_eq!(
            PreferredExpiration::default_for(state).duration(),
            secs(days * 86_400),
            "{availability}"
        );
    }
    check(Availability::Busy, Activity::Busy, 1);
    check(Availability::DoNotDisturb, Activity::DoNotDisturb, 1);
    check(Availability::Available, Activity::Available, 7);
    check(Availability::BeRightBack, Activity::BeRightBack, 7);
    check(Availability::Away, Activity::Away, 7);
    check(Availability::Offline, Activity::OffWork, 7);
}

proptest! {
    #[test]
    fn formatting_then_parsing_gives_back_the_same_duration(
        seconds in 0i64..=400 * 86_400,
        nanos in 0i32..1_000_000_000,
    ) {
        let duration = SignedDuration::new(seconds, nanos);
        prop_assume!(duration.is_positive());
        let text = format_duration(duration);
        prop_assert_eq!(iso(&text), Ok(duration), "{}", text);
    }

    #[test]
    fn python_text_suggestions_parse_to_the_same_duration(
        days in 0i64..400,
        seconds in 0i64..86_400,
        micros in 0i64..1_000_000,
    ) {
        let duration = SignedDuration::from_secs(days * 86_400 + seconds) + SignedDuration::from_micros(micros);
        prop_assume!(duration.is_positive());
        // Python's str(timedelta).
        let clock = format!("{}:{:02}:{:02}", seconds / 3600, seconds % 3600 / 60, seconds % 60);
        let clock = if micros > 0 { format!("{clock}.{micros:06}") } else { clock };
        let text = match days {
            0 => clock,
            1 => format!("1 day, {clock}"),
            n => format!("{n} days, {clock}"),
        };
        prop_assert_eq!(parse_duration(&text, DurationSyntax::AlsoPythonTimedelta), Ok(duration));
        match iso(&text) {
            Err(DurationError::PythonTimedelta { suggestion, .. }) => prop_assert_eq!(iso(&suggestion), Ok(duration)),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
