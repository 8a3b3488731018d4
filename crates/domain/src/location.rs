//! Work location: manual, automatic and scheduled layers, aggregated as
//! manual > automatic > scheduled; nothing set reads `none` / `unspecified`.
//!
//! Manual and automatic signals apply to the day they were set: they lapse at
//! the next midnight UTC (`until`), as clearLocation's "for the current date"
//! implies. The scheduled layer stands for the calendar's working hours and is
//! not set by any presence action.

use jiff::Timestamp;

/// Where the user works today (`workLocationType` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkLocationType {
    Unspecified,
    Office,
    Remote,
    TimeOff,
}

/// Which layer the aggregated work location came from (`source` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkLocationSource {
    None,
    Manual,
    Scheduled,
    Automatic,
}

/// One layer's signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationSignal {
    /// The location type the signal reports.
    pub kind: WorkLocationType,
    /// The optional place (building, desk) the caller named, echoed as sent.
    pub place_id: Option<String>,
    /// The signal no longer applies at and after this instant (`None`: until cleared).
    pub until: Option<Timestamp>,
}

/// The three layers, each set independently; see [`WorkLocationLayers::aggregate`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkLocationLayers {
    /// setManualLocation: the user's own word, wins over everything.
    pub manual: Option<LocationSignal>,
    /// setAutomaticLocation: detected by a client (Teams, a dock, the network).
    pub automatic: Option<LocationSignal>,
    /// The calendar's working-hours location; no presence action sets it.
    pub scheduled: Option<LocationSignal>,
}

/// A workLocationType string that is not a known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid workLocationType; use unspecified, office, remote or timeOff.")]
pub struct WorkLocationTypeError(pub String);

impl WorkLocationType {
    pub const ALL: &'static [WorkLocationType] = &[
        WorkLocationType::Unspecified,
        WorkLocationType::Office,
        WorkLocationType::Remote,
        WorkLocationType::TimeOff,
    ];

    /// Parses a wire value in any letter case (`timeoff` reads as `timeOff`).
    pub fn parse(text: &str) -> Result<Self, WorkLocationTypeError> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| WorkLocationTypeError(text.to_owned()))
    }

    /// The camelCase wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkLocationType::Unspecified => "unspecified",
            WorkLocationType::Office => "office",
            WorkLocationType::Remote => "remote",
            WorkLocationType::TimeOff => "timeOff",
        }
    }

    /// A stable small integer for storage.
    pub fn code(self) -> u8 {
        match self {
            WorkLocationType::Unspecified => 0,
            WorkLocationType::Office => 1,
            WorkLocationType::Remote => 2,
            WorkLocationType::TimeOff => 3,
        }
    }

    /// The value a stored [`WorkLocationType::code`] stands for.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.code() == code)
    }
}

impl WorkLocationSource {
    pub const ALL: &'static [WorkLocationSource] = &[
        WorkLocationSource::None,
        WorkLocationSource::Manual,
        WorkLocationSource::Scheduled,
        WorkLocationSource::Automatic,
    ];

    /// The camelCase wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkLocationSource::None => "none",
            WorkLocationSource::Manual => "manual",
            WorkLocationSource::Scheduled => "scheduled",
            WorkLocationSource::Automatic => "automatic",
        }
    }

    /// A stable small integer for storage.
    pub fn code(self) -> u8 {
        match self {
            WorkLocationSource::None => 0,
            WorkLocationSource::Manual => 1,
            WorkLocationSource::Scheduled => 2,
            WorkLocationSource::Automatic => 3,
        }
    }

    /// The value a stored [`WorkLocationSource::code`] stands for.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.code() == code)
    }
}

/// The aggregated work location a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkLocation<'a> {
    pub kind: WorkLocationType,
    pub source: WorkLocationSource,
    pub place_id: Option<&'a str>,
}

impl LocationSignal {
    /// A signal set at `now` by setManualLocation or setAutomaticLocation:
    /// it lasts until the next midnight UTC.
    pub fn for_today(kind: WorkLocationType, place_id: Option<String>, now: Timestamp) -> Self {
        LocationSignal {
            kind,
            place_id,
            until: Some(next_midnight_utc(now)),
        }
    }

    /// Whether the signal still applies at `now`.
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

impl WorkLocationLayers {
    /// The highest live layer at `now`: manual, then automatic, then scheduled.
    pub fn aggregate(&self, now: Timestamp) -> WorkLocation<'_> {
        let layers = [
            (&self.manual, WorkLocationSource::Manual),
            (&self.automatic, WorkLocationSource::Automatic),
            (&self.scheduled, WorkLocationSource::Scheduled),
        ];
        layers
            .into_iter()
            .find_map(|(signal, source)| {
                let signal = signal.as_ref().filter(|s| s.is_live_at(now))?;
                Some(WorkLocation {
                    kind: signal.kind,
                    source,
                    place_id: signal.place_id.as_deref(),
                })
            })
            .unwrap_or(WorkLocation {
                kind: WorkLocationType::Unspecified,
                source: WorkLocationSource::None,
                place_id: None,
            })
    }

    /// The instants at which a layer lapses.
    pub fn lapses(&self) -> impl Iterator<Item = Timestamp> + '_ {
        [&self.manual, &self.automatic, &self.scheduled]
            .into_iter()
            .filter_map(|s| s.as_ref()?.until)
    }

    /// Drops the layers that have lapsed by `now`.
    pub fn drop_lapsed(&mut self, now: Timestamp) {
        for layer in [&mut self.manual, &mut self.automatic, &mut self.scheduled] {
            if layer.as_ref().is_some_and(|s| !s.is_live_at(now)) {
                *layer = None;
            }
        }
    }
}

/// The first midnight UTC strictly after `now`.
pub fn next_midnight_utc(now: Timestamp) -> Timestamp {
    const DAY: i64 = 86_400;
    let next = (now.as_second().div_euclid(DAY) + 1).saturating_mul(DAY);
    Timestamp::from_second(next).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn signal(kind: WorkLocationType, place: Option<&str>, until: Option<&str>) -> LocationSignal {
        LocationSignal {
            kind,
            place_id: place.map(str::to_owned),
            until: until.map(ts),
        }
    }

    #[test]
    fn work_location_types_match_any_letter_case_and_print_camel_case() {
        fn check(input: &str, expected: Result<WorkLocationType, WorkLocationTypeError>) {
            assert_eq!(WorkLocationType::parse(input), expected, "{input}");
        }
        check("office", Ok(WorkLocationType::Office));
        check("Office", Ok(WorkLocationType::Office));
        check("REMOTE", Ok(WorkLocationType::Remote));
        check("timeOff", Ok(WorkLocationType::TimeOff));
        check("timeoff", Ok(WorkLocationType::TimeOff));
        check("unspecified", Ok(WorkLocationType::Unspecified));
        check(
            "unknownFutureValue",
            Err(WorkLocationTypeError("unknownFutureValue".into())),
        );
        check("home", Err(WorkLocationTypeError("home".into())));
        assert_eq!(WorkLocationType::TimeOff.as_str(), "timeOff");
        let sources: Vec<_> = WorkLocationSource::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(sources, ["none", "manual", "scheduled", "automatic"]);
    }

    #[test]
    fn location_codes_round_trip() {
        for &kind in WorkLocationType::ALL {
            assert_eq!(WorkLocationType::from_code(kind.code()), Some(kind));
        }
        for &source in WorkLocationSource::ALL {
            assert_eq!(WorkLocationSource::from_code(source.code()), Some(source));
        }
        assert_eq!(WorkLocationType::from_code(4), None);
        assert_eq!(WorkLocationSource::from_code(4), None);
    }

    #[test]
    fn manual_beats_automatic_beats_scheduled_and_lapsed_layers_are_ignored() {
        let now = ts("2025-06-02T10:00:00Z");
        let manual = Some(signal(
            WorkLocationType::Office,
            Some("building-1"),
            Some("2025-06-03T00:00:00Z"),
        ));
        let automatic = Some(signal(
            WorkLocationType::Remote,
            None,
            Some("2025-06-03T00:00:00Z"),
        ));
        let scheduled = Some(signal(WorkLocationType::Office, Some("hq"), None));
        let lapsed = Some(signal(
            WorkLocationType::TimeOff,
            None,
            Some("2025-06-02T10:00:00Z"),
        ));
        fn check(
            layers: WorkLocationLayers,
            now: Timestamp,
            expected: (WorkLocationType, WorkLocationSource, Option<&str>),
        ) {
            let got = layers.aggregate(now);
            assert_eq!((got.kind, got.source, got.place_id), expected, "{layers:?}");
        }
        use WorkLocationSource as S;
        use WorkLocationType as T;
        let layers =
            |m: &Option<LocationSignal>, a: &Option<LocationSignal>, s: &Option<LocationSignal>| {
                WorkLocationLayers {
                    manual: m.clone(),
                    automatic: a.clone(),
                    scheduled: s.clone(),
                }
            };
        check(
            layers(&manual, &automatic, &scheduled),
            now,
            (T::Office, S::Manual, Some("building-1")),
        );
        check(
            layers(&None, &automatic, &scheduled),
            now,
            (T::Remote, S::Automatic, None),
        );
        check(
            layers(&None, &None, &scheduled),
            now,
            (T::Office, S::Scheduled, Some("hq")),
        );
        check(
            layers(&None, &None, &None),
            now,
            (T::Unspecified, S::None, None),
        );
        check(
            layers(&lapsed, &automatic, &None),
            now,
            (T::Remote, S::Automatic, None),
        );
        check(
            layers(&lapsed, &lapsed, &lapsed),
            now,
            (T::Unspecified, S::None, None),
        );
        check(
            layers(&manual, &None, &scheduled),
            ts("2025-06-03T00:00:00Z"),
            (T::Office, S::Scheduled, Some("hq")),
        );
    }

    #[test]
    fn manual_and_automatic_signals_last_until_the_next_midnight_utc() {
        fn check(now: &str, expected: &str) {
            assert_eq!(next_midnight_utc(ts(now)), ts(expected), "{now}");
        }
        check("2025-06-02T10:00:00Z", "2025-06-03T00:00:00Z");
        check("2025-06-02T00:00:00Z", "2025-06-03T00:00:00Z");
        check("2025-06-02T23:59:59.999999999Z", "2025-06-03T00:00:00Z");
        check("1969-12-31T12:00:00Z", "1970-01-01T00:00:00Z");
        let s =
            LocationSignal::for_today(WorkLocationType::Remote, None, ts("2025-06-02T10:00:00Z"));
        assert_eq!(s.until, Some(ts("2025-06-03T00:00:00Z")));
        assert!(s.is_live_at(ts("2025-06-02T23:59:59Z")));
        assert!(!s.is_live_at(ts("2025-06-03T00:00:00Z")));
    }
}
