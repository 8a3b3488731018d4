//! `sequenceNumber` without timers: counting the instants at which the view
//! changed by itself (decisions.md rule 12).
//!
//! The view is a step function of time that can only change at a
//! *candidate* instant: a session's fade points and expiry, the preferred
//! presence's expiry, the status message's expiry, a location layer's lapse.
//! `facts.sequence` is the value at `facts.sequence_at` (the last mutation);
//! the value at `now` adds one for each candidate in `(sequence_at, now]` at
//! which the view differs from the view at the previous candidate. A
//! candidate where nothing visible changes (a Busy session expiring under a
//! DoNotDisturb one, a preference lapsing while offline) counts nothing.
//!
//! [`crate::mutation::apply`] stores the value at `now` (plus one if the
//! mutation itself changed the view) and moves `sequence_at` to `now`, so
//! the facts it then drops as expired are never needed again.

use jiff::Timestamp;

use crate::facts::UserFacts;
use crate::values::Availability;
use crate::view::{Rules, later, presence_at};

/// Every instant at which the view of `facts` might change by itself.
pub fn candidates<'a>(
    facts: &'a UserFacts,
    rules: &'a Rules,
) -> impl Iterator<Item = Timestamp> + 'a {
    let sessions = facts.sessions.iter().flat_map(move |s| {
        let fades = s.state.availability() == Availability::Available;
        let fade = |d| fades.then(|| later(s.refreshed_at, d));
        [
            Some(s.expires_at),
            fade(rules.fade_to_inactive),
            fade(rules.fade_to_away),
        ]
        .into_iter()
        .flatten()
    });
    let preferred = facts.preferred.map(|p| p.expires_at);
    let status = facts
        .status_message
        .as_ref()
        .and_then(|m| Some(m.expiry.as_ref()?.at));
    sessions
        .chain(preferred)
        .chain(status)
        .chain(facts.work_location.lapses())
}

/// Sorted, distinct candidates within `(after, until]` (`None`: unbounded).
fn candidates_between(
    facts: &UserFacts,
    rules: &Rules,
    after: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Vec<Timestamp> {
    let mut points: Vec<Timestamp> = candidates(facts, rules)
        .filter(|&c| after.is_none_or(|a| c > a) && until.is_none_or(|u| c <= u))
        .collect();
    points.sort_unstable();
    points.dedup();
    points
}

/// The sequence value `facts` show at `now`.
pub(crate) fn sequence_at(facts: &UserFacts, now: Timestamp, rules: &Rules) -> u64 {
    let points = candidates_between(facts, rules, facts.sequence_at, Some(now));
    if points.is_empty() {
        return facts.sequence;
    }
    let mut previous = presence_at(facts, facts.sequence_at.unwrap_or(Timestamp::MIN), rules);
    let mut changes = 0u64;
    for point in points {
        let view = presence_at(facts, point, rules);
        if !view.same_presence(&previous) {
            changes += 1;
        }
        previous = view;
    }
    facts.sequence.saturating_add(changes)
}

/// The first candidate after `now` at which the view differs from the view
/// just before it.
pub(crate) fn next_change(facts: &UserFacts, now: Timestamp, rules: &Rules) -> Option<Timestamp> {
    let current = presence_at(facts, now, rules);
    candidates_between(facts, rules, Some(now), None)
        .into_iter()
        .find(|&point| !presence_at(facts, point, rules).same_presence(&current))
}

#[cfg(test)]
mod tests;
