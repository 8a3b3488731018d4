//! The derived presence of one user at `now`, its `sequenceNumber`, and when
//! it next changes by itself.
//!
//! Aggregation (decisions.md rules 7-10): sessions whose expiry has passed do
//! not exist; an `Available` session fades to `Available/AvailableInactive`
//! and then to `Away/Away`; with no live session the user is
//! `Offline/Offline`; otherwise an unexpired preferred presence wins;
//! otherwise sessions rank `DoNotDisturb > Busy > Available > Away` and the
//! most recently refreshed session of the winning availability gives the
//! activity (ties: the smaller session id, so the result never depends on
//! storage order). Out of office then turns exactly `Available/Available` and
//! `Offline/Offline` into activity `OutOfOffice`.
//!
//! The view is a step function of time: it can only change at the instants
//! [`crate::sequence`] lists, and it holds from each such instant up to the
//! next (conditions are all "reached at or after"), which is what makes
//! `sequenceNumber` and [`next_change`] computable without timers.

use jiff::{SignedDuration, Timestamp};

use crate::facts::{Session, UserFacts};
use crate::location::{WorkLocationSource, WorkLocationType};
use crate::sequence;
use crate::status::StatusMessage;
use crate::values::{Activity, Availability};

/// Tunable rules; the defaults are Graph's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// An Available session reads Available/AvailableInactive this long after its last refresh.
    pub fade_to_inactive: SignedDuration,
    /// An Available session reads Away/Away this long after its last refresh.
    pub fade_to_away: SignedDuration,
    /// The most sessions one user keeps. A new session beyond it drops the
    /// least recently refreshed one (sessions expire anyway; a client that
    /// keeps refreshing its session keeps it). At least 1.
    pub max_sessions: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            fade_to_inactive: SignedDuration::from_mins(5),
            fade_to_away: SignedDuration::from_mins(10),
            max_sessions: 64,
        }
    }
}

/// The presence a reader sees at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceView<'a> {
    pub availability: Availability,
    pub activity: Activity,
    /// The unexpired status message, if any.
    pub status_message: Option<&'a StatusMessage>,
    pub is_out_of_office: bool,
    pub out_of_office_message: Option<&'a str>,
    pub work_location_type: WorkLocationType,
    pub work_location_source: WorkLocationSource,
    pub place_id: Option<&'a str>,
    /// Strictly increases with each visible change; see [`derive()`].
    pub sequence: u64,
}

impl PresenceView<'_> {
    /// Whether a reader would see the same presence in both views: every
    /// field but `sequence`.
    pub fn same_presence(&self, other: &PresenceView<'_>) -> bool {
        self.availability == other.availability
            && self.activity == other.activity
            && self.status_message == other.status_message
            && self.is_out_of_office == other.is_out_of_office
            && self.out_of_office_message == other.out_of_office_message
            && self.work_location_type == other.work_location_type
            && self.work_location_source == other.work_location_source
            && self.place_id == other.place_id
    }

    /// `sequence` as Graph's `sequenceNumber` string; see [`sequence_number_text`].
    pub fn sequence_number(&self) -> String {
        sequence_number_text(self.sequence)
    }
}

/// A sequence value as text whose byte order is its numeric order: 20
/// decimal digits, zero-padded (the width of `u64::MAX`).
pub fn sequence_number_text(sequence: u64) -> String {
    format!("{sequence:020}")
}

/// The presence `facts` show at `now`.
///
/// `sequence` is `facts.sequence` (the value at the last mutation) plus the
/// number of instants in `(facts.sequence_at, now]` at which the view changed
/// by itself. Cost: one aggregation, plus one per such instant (a few per
/// session at most).
pub fn derive<'a>(facts: &'a UserFacts, now: Timestamp, rules: &Rules) -> PresenceView<'a> {
    let mut view = presence_at(facts, now, rules);
    view.sequence = sequence::sequence_at(facts, now, rules);
    view
}

/// The first instant after `now` at which the derived view changes by itself
/// (a session fades or expires, a preferred presence, status message or
/// location signal lapses), or `None` if it never does.
pub fn next_change(facts: &UserFacts, now: Timestamp, rules: &Rules) -> Option<Timestamp> {
    sequence::next_change(facts, now, rules)
}

/// `t + d`, saturating at the ends of time instead of panicking.
pub(crate) fn later(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The rank of a session's (effective) availability; higher wins.
pub(crate) fn rank(availability: Availability) -> u8 {
    match availability {
        Availability::DoNotDisturb => 4,
        Availability::Busy => 3,
        Availability::Available => 2,
        Availability::Away => 1,
        _ => 0,
    }
}

impl Session {
    /// Whether the session exists at `now`.
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.expires_at > now
    }

    /// What the session reads at `now` once fading applies, or `None` if it
    /// has expired. Only `Available` sessions fade.
    pub fn effective_at(&self, now: Timestamp, rules: &Rules) -> Option<(Availability, Activity)> {
        if !self.is_live_at(now) {
            return None;
        }
        let (availability, activity) = (self.state.availability(), self.state.activity());
        if availability != Availability::Available {
            return Some((availability, activity));
        }
        Some(if now >= later(self.refreshed_at, rules.fade_to_away) {
            (Availability::Away, Activity::Away)
        } else if now >= later(self.refreshed_at, rules.fade_to_inactive) {
            (Availability::Available, Activity::AvailableInactive)
        } else {
            (availability, activity)
        })
    }
}

/// The availability and activity the sessions and preference give at `now`,
/// before out of office.
fn aggregate(facts: &UserFacts, now: Timestamp, rules: &Rules) -> (Availability, Activity) {
    let best = facts
        .sessions
        .iter()
        .filter_map(|s| s.effective_at(now, rules).map(|state| (state, s)))
        .max_by(|((a, _), x), ((b, _), y)| {
            rank(*a)
                .cmp(&rank(*b))
                .then(x.refreshed_at.cmp(&y.refreshed_at))
                .then(y.id.cmp(&x.id))
        });
    let Some((state, _)) = best else {
        return (Availability::Offline, Activity::Offline);
    };
    match facts.preferred {
        Some(p) if p.expires_at > now => (p.state.availability(), p.state.activity()),
        _ => state,
    }
}

/// The view at `t`, with `sequence` left at `facts.sequence`: the pure
/// function of facts and time that every other computation compares.
pub(crate) fn presence_at<'a>(
    facts: &'a UserFacts,
    t: Timestamp,
    rules: &Rules,
) -> PresenceView<'a> {
    let (availability, mut activity) = aggregate(facts, t, rules);
    let ooo = &facts.out_of_office;
    let plain = matches!(
        (availability, activity),
        (Availability::Available, Activity::Available) | (Availability::Offline, Activity::Offline)
    );
    if ooo.is_out_of_office && plain {
        activity = Activity::OutOfOffice;
    }
    let location = facts.work_location.aggregate(t);
    PresenceView {
        availability,
        activity,
        status_message: facts.status_message.as_ref().filter(|m| m.is_visible_at(t)),
        is_out_of_office: ooo.is_out_of_office,
        out_of_office_message: ooo.message.as_deref(),
        work_location_type: location.kind,
        work_location_source: location.source,
        place_id: location.place_id,
        sequence: facts.sequence,
    }
}

#[cfg(test)]
mod tests;
