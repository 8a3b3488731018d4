//! Availability and activity values, and the pairs each action allows.
//!
//! Output is always PascalCase; input matches case-insensitively
//! (decisions.md rule 1). setPresence allows exactly five pairs and
//! setUserPreferredPresence exactly six (rule 2).

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

/// An availability or activity string that is not a known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field:?} '{value}' is not a valid value.")]
pub struct ValueError {
    pub field: Field,
    pub value: String,
}

/// A known availability and activity that do not form an allowed pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The pair {availability:?}/{activity:?} is not allowed.")]
pub struct PairError {
    pub availability: Availability,
    pub activity: Activity,
    /// The pairs the action allows, in documentation order.
    pub allowed: &'static [(Availability, Activity)],
}

/// A validated setPresence pair: one of the five an app session may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionState(/* private */ u8);

/// A validated setUserPreferredPresence pair: one of the six a user may prefer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PreferredState(/* private */ u8);
