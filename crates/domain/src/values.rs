//! Availability and activity values, and the pairs each action allows.
//!
//! Output is always PascalCase; input matches case-insensitively
//! (decisions.md rule 1). setPresence allows exactly five pairs and
//! setUserPreferredPresence exactly six (rule 2). This module knows the
//! strings, not JSON: the api layer hands it the text it received.

use std::fmt;

/// The base presence state (`availability` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Availability {
    Available,
    AvailableIdle,
    Away,
    BeRightBack,
    Busy,
    BusyIdle,
    DoNotDisturb,
    Offline,
    PresenceUnknown,
}

/// The detail that qualifies an availability (`activity` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activity {
    Available,
    AvailableInactive,
    Away,
    BeRightBack,
    Busy,
    DoNotDisturb,
    InACall,
    InAConferenceCall,
    Inactive,
    InAMeeting,
    Offline,
    OffWork,
    OutOfOffice,
    PresenceUnknown,
    Presenting,
    UrgentInterruptionsOnly,
}

/// Which field an unknown value was sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Availability,
    Activity,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Availability => "availability",
            Field::Activity => "activity",
        })
    }
}

/// An availability or activity string that is not a known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid {field}.")]
pub struct ValueError {
    pub field: Field,
    pub value: String,
}

/// A known availability and activity that do not form an allowed pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "The pair {availability}/{activity} is not allowed for {action}. Allowed pairs: {list}.",
    action = action_of(.allowed),
    list = list_pairs(.allowed)
)]
pub struct PairError {
    pub availability: Availability,
    pub activity: Activity,
    /// The pairs the action allows, in documentation order.
    pub allowed: &'static [(Availability, Activity)],
}

/// A pair that failed either because a value is unknown or because the
/// known values do not form an allowed pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error(transparent)]
    Pair(#[from] PairError),
}

fn action_of(allowed: &[(Availability, Activity)]) -> &'static str {
    if allowed == PreferredState::ALLOWED {
        "setUserPreferredPresence"
    } else {
        "setPresence"
    }
}

fn list_pairs(allowed: &[(Availability, Activity)]) -> String {
    let pairs: Vec<String> = allowed.iter().map(|(a, b)| format!("{a}/{b}")).collect();
    pairs.join(", ")
}

/// Case-insensitive lookup of `text` among `all`, by their wire names.
fn lookup<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, text: &str) -> Option<T> {
    all.iter()
        .copied()
        .find(|v| name(*v).eq_ignore_ascii_case(text))
}

impl Availability {
    /// Every value, in documentation order.
    pub const ALL: &'static [Availability] = &[
        Availability::Available,
        Availability::AvailableIdle,
        Availability::Away,
        Availability::BeRightBack,
        Availability::Busy,
        Availability::BusyIdle,
        Availability::DoNotDisturb,
        Availability::Offline,
        Availability::PresenceUnknown,
    ];

    /// Parses a wire value in any letter case.
    pub fn parse(text: &str) -> Result<Availability, ValueError> {
        lookup(Self::ALL, Self::as_str, text).ok_or_else(|| ValueError {
            field: Field::Availability,
            value: text.to_owned(),
        })
    }

    /// The PascalCase wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Available => "Available",
            Availability::AvailableIdle => "AvailableIdle",
            Availability::Away => "Away",
            Availability::BeRightBack => "BeRightBack",
            Availability::Busy => "Busy",
            Availability::BusyIdle => "BusyIdle",
            Availability::DoNotDisturb => "DoNotDisturb",
            Availability::Offline => "Offline",
            Availability::PresenceUnknown => "PresenceUnknown",
        }
    }
}

impl Activity {
    /// Every value, in documentation order.
    pub const ALL: &'static [Activity] = &[
        Activity::Available,
        Activity::AvailableInactive,
        Activity::Away,
        Activity::BeRightBack,
        Activity::Busy,
        Activity::DoNotDisturb,
        Activity::InACall,
        Activity::InAConferenceCall,
        Activity::Inactive,
        Activity::InAMeeting,
        Activity::Offline,
        Activity::OffWork,
        Activity::OutOfOffice,
        Activity::PresenceUnknown,
        Activity::Presenting,
        Activity::UrgentInterruptionsOnly,
    ];

    /// Parses a wire value in any letter case.
    pub fn parse(text: &str) -> Result<Activity, ValueError> {
        lookup(Self::ALL, Self::as_str, text).ok_or_else(|| ValueError {
            field: Field::Activity,
            value: text.to_owned(),
        })
    }

    /// The PascalCase wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Available => "Available",
            Activity::AvailableInactive => "AvailableInactive",
            Activity::Away => "Away",
            Activity::BeRightBack => "BeRightBack",
            Activity::Busy => "Busy",
            Activity::DoNotDisturb => "DoNotDisturb",
            Activity::InACall => "InACall",
            Activity::InAConferenceCall => "InAConferenceCall",
            Activity::Inactive => "Inactive",
            Activity::InAMeeting => "InAMeeting",
            Activity::Offline => "Offline",
            Activity::OffWork => "OffWork",
            Activity::OutOfOffice => "OutOfOffice",
            Activity::PresenceUnknown => "PresenceUnknown",
            Activity::Presenting => "Presenting",
            Activity::UrgentInterruptionsOnly => "UrgentInterruptionsOnly",
        }
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Finds `(availability, activity)` in `allowed`, as its index.
fn position(
    allowed: &'static [(Availability, Activity)],
    availability: Availability,
    activity: Activity,
) -> Result<u8, PairError> {
    allowed
        .iter()
        .position(|&pair| pair == (availability, activity))
        .map(|i| i as u8)
        .ok_or(PairError {
            availability,
            activity,
            allowed,
        })
}

/// Defines a validated pair type whose private index points into its
/// `ALLOWED` table; the index doubles as the store's code, so each table is
/// append-only.
macro_rules! pair_state {
    ($(#[$doc:meta])* $name:ident, $action:literal, [$(($availability:ident, $activity:ident)),+ $(,)?]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(/* index into ALLOWED */ u8);

        impl $name {
            /// The pairs the action allows, in documentation order.
            /// Append only: a pair's index is its stored code.
            pub const ALLOWED: &'static [(Availability, Activity)] =
                &[$((Availability::$availability, Activity::$activity)),+];

            #[doc = concat!("The pair, if ", $action, " allows it.")]
            pub fn new(availability: Availability, activity: Activity) -> Result<Self, PairError> {
                position(Self::ALLOWED, availability, activity).map($name)
            }

            /// Parses both wire strings (any case) and checks the pair.
            pub fn parse(availability: &str, activity: &str) -> Result<Self, StateError> {
                Ok(Self::new(Availability::parse(availability)?, Activity::parse(activity)?)?)
            }

            pub fn availability(self) -> Availability {
                Self::ALLOWED[self.0 as usize].0
            }

            pub fn activity(self) -> Activity {
                Self::ALLOWED[self.0 as usize].1
            }

            /// A stable small integer for storage.
            pub fn code(self) -> u8 {
                self.0
            }

            /// The state a stored code stands for.
            pub fn from_code(code: u8) -> Option<Self> {
                ((code as usize) < Self::ALLOWED.len()).then_some($name(code))
            }
        }
    };
}

pair_state!(
    /// A validated setPresence pair: one of the five an app session may hold
    /// (graph-presence.md §2.3).
    SessionState,
    "setPresence",
    [
        (Available, Available),
        (Busy, InACall),
        (Busy, InAConferenceCall),
        (Away, Away),
        (DoNotDisturb, Presenting),
    ]
);

pair_state!(
    /// A validated setUserPreferredPresence pair: one of the six a user may
    /// prefer (graph-presence.md §2.5).
    PreferredState,
    "setUserPreferredPresence",
    [
        (Available, Available),
        (Busy, Busy),
        (DoNotDisturb, DoNotDisturb),
        (BeRightBack, BeRightBack),
        (Away, Away),
        (Offline, OffWork),
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_matches_any_letter_case_and_prints_pascal_case() {
        fn check(input: &str, expected: Availability) {
            let parsed = Availability::parse(input).unwrap();
            assert_eq!(parsed, expected, "{input}");
            assert!(parsed.as_str().eq_ignore_ascii_case(input));
        }
        check("Available", Availability::Available);
        check("available", Availability::Available);
        check("DONOTDISTURB", Availability::DoNotDisturb);
        check("doNotDisturb", Availability::DoNotDisturb);
        check("beRightBack", Availability::BeRightBack);
        check("presenceunknown", Availability::PresenceUnknown);
        for value in Availability::ALL {
            assert_eq!(Availability::parse(value.as_str()), Ok(*value));
            assert_eq!(value.to_string(), value.as_str());
        }
    }

    #[test]
    fn activity_matches_any_letter_case_and_prints_pascal_case() {
        fn check(input: &str, expected: Activity) {
            assert_eq!(Activity::parse(input), Ok(expected), "{input}");
        }
        check("inacall", Activity::InACall);
        check("InAConferenceCall", Activity::InAConferenceCall);
        check("OFFWORK", Activity::OffWork);
        check("presenting", Activity::Presenting);
        for value in Activity::ALL {
            assert_eq!(Activity::parse(value.as_str()), Ok(*value));
        }
        assert_eq!(Activity::InACall.as_str(), "InACall");
        assert_eq!(Activity::OffWork.as_str(), "OffWork");
    }

    #[test]
    fn unknown_values_name_the_field_and_the_value() {
        fn check(err: ValueError, expected: &str) {
            assert_eq!(err.to_string(), expected);
        }
        check(
            Availability::parse("Sleeping").unwrap_err(),
            "'Sleeping' is not a valid availability.",
        );
        check(
            Activity::parse("Napping").unwrap_err(),
            "'Napping' is not a valid activity.",
        );
        check(
            Availability::parse("").unwrap_err(),
            "'' is not a valid availability.",
        );
        check(
            Availability::parse(" Available").unwrap_err(),
            "' Available' is not a valid availability.",
        );
    }

    /// Every availability × activity: `new` accepts exactly the `allowed`
    /// pairs, and a state reads back as the pair it was made from.
    fn check_pairs<S: Copy>(
        allowed: &[(Availability, Activity)],
        new: impl Fn(Availability, Activity) -> Result<S, PairError>,
        read: impl Fn(S) -> (Availability, Activity),
    ) -> usize {
        let mut accepted = 0;
        for &availability in Availability::ALL {
            for &activity in Activity::ALL {
                let result = new(availability, activity);
                let expected = allowed.contains(&(availability, activity));
                assert_eq!(result.is_ok(), expected, "{availability}/{activity}");
                if let Ok(state) = result {
                    accepted += 1;
                    assert_eq!(read(state), (availability, activity));
                }
            }
        }
        accepted
    }

    #[test]
    fn set_presence_allows_exactly_its_five_pairs() {
        let accepted = check_pairs(SessionState::ALLOWED, SessionState::new, |s| {
            (s.availability(), s.activity())
        });
        assert_eq!(accepted, 5);
    }

    #[test]
    fn set_user_preferred_presence_allows_exactly_its_six_pairs() {
        let accepted = check_pairs(PreferredState::ALLOWED, PreferredState::new, |s| {
            (s.availability(), s.activity())
        });
        assert_eq!(accepted, 6);
    }

    #[test]
    fn commonly_attempted_pairs_are_refused() {
        fn check(availability: &str, activity: &str, session: bool, preferred: bool) {
            assert_eq!(
                SessionState::parse(availability, activity).is_ok(),
                session,
                "{availability}/{activity}"
            );
            assert_eq!(
                PreferredState::parse(availability, activity).is_ok(),
                preferred,
                "{availability}/{activity}"
            );
        }
        check("Busy", "Busy", false, true);
        check("Busy", "InAMeeting", false, false);
        check("Offline", "Offline", false, false);
        check("Offline", "OffWork", false, true);
        check("DoNotDisturb", "DoNotDisturb", false, true);
        check("DoNotDisturb", "Presenting", true, false);
        check("busy", "inacall", true, false);
        check("Available", "Available", true, true);
        check("Away", "Away", true, true);
        check("BeRightBack", "BeRightBack", false, true);
    }

    #[test]
    fn a_refused_pair_names_the_pair_and_lists_the_allowed_pairs() {
        fn check(err: StateError, expected: &str) {
            assert_eq!(err.to_string(), expected);
        }
        check(
            SessionState::parse("busy", "busy").unwrap_err(),
            "The pair Busy/Busy is not allowed for setPresence. Allowed pairs: Available/Available, \
             Busy/InACall, Busy/InAConferenceCall, Away/Away, DoNotDisturb/Presenting.",
        );
        check(
            PreferredState::parse("Busy", "InACall").unwrap_err(),
            "The pair Busy/InACall is not allowed for setUserPreferredPresence. Allowed pairs: \
             Available/Available, Busy/Busy, DoNotDisturb/DoNotDisturb, BeRightBack/BeRightBack, \
             Away/Away, Offline/OffWork.",
        );
        check(
            SessionState::parse("Sleeping", "Busy").unwrap_err(),
            "'Sleeping' is not a valid availability.",
        );
        check(
            SessionState::parse("Busy", "Napping").unwrap_err(),
            "'Napping' is not a valid activity.",
        );
    }

    #[test]
    fn state_codes_round_trip_and_unknown_codes_are_none() {
        for (i, &(availability, activity)) in SessionState::ALLOWED.iter().enumerate() {
            let state = SessionState::new(availability, activity).unwrap();
            assert_eq!(state.code() as usize, i);
            assert_eq!(SessionState::from_code(state.code()), Some(state));
        }
        for (i, &(availability, activity)) in PreferredState::ALLOWED.iter().enumerate() {
            let state = PreferredState::new(availability, activity).unwrap();
            assert_eq!(state.code() as usize, i);
            assert_eq!(PreferredState::from_code(state.code()), Some(state));
        }
        assert_eq!(SessionState::from_code(5), None);
        assert_eq!(PreferredState::from_code(6), None);
        assert_eq!(PreferredState::from_code(255), None);
    }
}
