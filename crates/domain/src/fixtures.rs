//! Shared test fixtures: a fixed clock origin and short constructors, so
//! tests read as the rule they check.

use jiff::{SignedDuration, Timestamp};

use crate::duration::{PreferredExpiration, SessionExpiration};
use crate::facts::{Session, UserFacts};
use crate::ids::SessionId;
use crate::mutation::{Mutation, apply};
use crate::values::{Activity, Availability, PreferredState, SessionState};
use crate::view::{PresenceView, Rules, derive};

/// The origin of every test clock: a Monday morning, UTC.
pub fn t0() -> Timestamp {
    "2025-06-02T09:00:00Z".parse().unwrap()
}

/// `t0` plus `seconds` (may be negative).
pub fn at_secs(seconds: i64) -> Timestamp {
    t0() + SignedDuration::from_secs(seconds)
}

/// `t0` plus `minutes`.
pub fn at(minutes: i64) -> Timestamp {
    at_secs(minutes * 60)
}

pub fn mins(minutes: i64) -> SignedDuration {
    SignedDuration::from_mins(minutes)
}

pub fn sid(id: &str) -> SessionId {
    SessionId::parse(id).unwrap()
}

pub fn session_state(availability: Availability, activity: Activity) -> SessionState {
    SessionState::new(availability, activity).unwrap()
}

pub fn preferred_state(availability: Availability, activity: Activity) -> PreferredState {
    PreferredState::new(availability, activity).unwrap()
}

/// A stored session refreshed at `refreshed` and expiring at `expires` (minutes after `t0`).
pub fn session(id: &str, state: (Availability, Activity), refreshed: i64, expires: i64) -> Session {
    Session {
        id: sid(id),
        state: session_state(state.0, state.1),
        refreshed_at: at(refreshed),
        expires_at: at(expires),
    }
}

/// setPresence for `minutes`.
pub fn set_session(id: &str, state: (Availability, Activity), minutes: i64) -> Mutation {
    Mutation::SetSession {
        id: sid(id),
        state: session_state(state.0, state.1),
        expiration: SessionExpiration::new(mins(minutes)).unwrap(),
    }
}

/// setUserPreferredPresence for `minutes`.
pub fn set_preferred(state: (Availability, Activity), minutes: i64) -> Mutation {
    Mutation::SetPreferred {
        state: preferred_state(state.0, state.1),
        expiration: Some(PreferredExpiration::new(mins(minutes)).unwrap()),
    }
}

/// Applies `mutation` at `now` with default rules, expecting success.
pub fn run(facts: &mut UserFacts, mutation: Mutation, now: Timestamp) {
    apply(facts, mutation, now, &Rules::default()).unwrap();
}

/// The derived view at `now` with default rules.
pub fn view(facts: &UserFacts, now: Timestamp) -> PresenceView<'_> {
    derive(facts, now, &Rules::default())
}

/// `(availability, activity)` at `now` with default rules.
pub fn pair(facts: &UserFacts, now: Timestamp) -> (Availability, Activity) {
    let v = view(facts, now);
    (v.availability, v.activity)
}

pub const AVAILABLE: (Availability, Activity) = (Availability::Available, Activity::Available);
pub const INACTIVE: (Availability, Activity) =
    (Availability::Available, Activity::AvailableInactive);
pub const IN_A_CALL: (Availability, Activity) = (Availability::Busy, Activity::InACall);
pub const IN_A_CONFERENCE: (Availability, Activity) =
    (Availability::Busy, Activity::InAConferenceCall);
pub const AWAY: (Availability, Activity) = (Availability::Away, Activity::Away);
pub const PRESENTING: (Availability, Activity) = (Availability::DoNotDisturb, Activity::Presenting);
pub const OFFLINE: (Availability, Activity) = (Availability::Offline, Activity::Offline);
pub const BUSY: (Availability, Activity) = (Availability::Busy, Activity::Busy);
pub const DND: (Availability, Activity) = (Availability::DoNotDisturb, Activity::DoNotDisturb);
pub const BRB: (Availability, Activity) = (Availability::BeRightBack, Activity::BeRightBack);
pub const OFF_WORK: (Availability, Activity) = (Availability::Offline, Activity::OffWork);
