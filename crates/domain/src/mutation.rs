//! The changes an API call can make to one user's facts.
//!
//! [`apply`] is the only writer of [`UserFacts`]: it makes the change, drops
//! facts that can no longer be seen (expired sessions, preferences, status
//! messages, lapsed location layers) and moves `sequence` forward so that it
//! stays consistent with the derived view (see [`crate::sequence`]).

use jiff::Timestamp;

use crate::duration::{PreferredExpiration, SessionExpiration};
use crate::facts::{OutOfOffice, Preferred, Session, UserFacts};
use crate::ids::SessionId;
use crate::location::{LocationSignal, WorkLocationType};
use crate::status::{NewStatusMessage, StatusMessage};
use crate::values::{PreferredState, SessionState};
use crate::view::{Rules, derive, later, presence_at};

/// One validated change to a user's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// setPresence: create or replace the session and refresh it.
    SetSession {
        id: SessionId,
        state: SessionState,
        expiration: SessionExpiration,
    },
    /// clearPresence.
    ClearSession {
        id: SessionId,
    },
    /// setUserPreferredPresence; `None` expiration takes the state's default.
    SetPreferred {
        state: PreferredState,
        expiration: Option<PreferredExpiration>,
    },
    /// clearUserPreferredPresence (idempotent).
    ClearPreferred,
    /// setStatusMessage; `None` clears.
    SetStatusMessage(Option<NewStatusMessage>),
    /// The out-of-office stand-in (admin call).
    SetOutOfOffice(OutOfOffice),
    SetManualLocation {
        kind: WorkLocationType,
        place_id: Option<String>,
    },
    SetAutomaticLocation {
        kind: WorkLocationType,
        place_id: Option<String>,
    },
    ClearAutomaticLocation,
    ClearLocation,
}

/// A mutation that cannot apply to the current facts; facts are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutationError {
    #[error("No presence session with id '{0}' exists for this user.")]
    SessionNotFound(String),
    /// The user's stored facts would exceed the store's bound on one
    /// user's record (the store checks it, on the encoded record).
    #[error(
        "The user's presence data would take {size} bytes, over the limit of {limit}; clear something first."
    )]
    RecordTooLarge { size: usize, limit: usize },
}

/// What applying a mutation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The derived view differs from the one just before: `sequence` moved.
    pub visible_change: bool,
    /// Whether the stored facts changed at all (a refresh changes facts
    /// without a visible change); when false nothing needs writing.
    pub facts_changed: bool,
}

/// Applies `mutation` at `now`. On error `facts` is left exactly as it was.
///
/// When the mutation changes nothing (a repeated clear, the same
/// out-of-office), `facts` is left exactly as it was, `sequence` included,
/// and nothing needs writing. Otherwise `sequence` becomes the value derived
/// at `now`, plus one if the view at `now` changed, and `sequence_at` becomes
/// `now` (never earlier than it was).
pub fn apply(
    facts: &mut UserFacts,
    mutation: Mutation,
    now: Timestamp,
    rules: &Rules,
) -> Result<Applied, MutationError> {
    let mut next = facts.clone();
    change(&mut next, mutation, now)?;
    if same_substance(&next, facts) {
        return Ok(Applied {
            visible_change: false,
            facts_changed: false,
        });
    }
    drop_expired(&mut next, now);
    keep_freshest_sessions(&mut next, rules.max_sessions);
    let (sequence, visible_change) = {
        let before = derive(facts, now, rules);
        let after = presence_at(&next, now, rules);
        (before.sequence, !after.same_presence(&before))
    };
    next.sequence = sequence.saturating_add(visible_change as u64);
    next.sequence_at = Some(facts.sequence_at.map_or(now, |at| at.max(now)));
    *facts = next;
    Ok(Applied {
        visible_change,
        facts_changed: true,
    })
}

/// Makes the change itself, without touching `sequence`.
fn change(facts: &mut UserFacts, mutation: Mutation, now: Timestamp) -> Result<(), MutationError> {
    match mutation {
        Mutation::SetSession {
            id,
            state,
            expiration,
        } => {
            let session = Session {
                id,
                state,
                refreshed_at: now,
                expires_at: later(now, expiration.duration()),
            };
            match facts.sessions.iter_mut().find(|s| s.id == session.id) {
                Some(existing) => *existing = session,
                None => facts.sessions.push(session),
            }
        }
        Mutation::ClearSession { id } => {
            let live = facts
                .sessions
                .iter()
                .position(|s| s.id == id && s.is_live_at(now));
            let Some(index) = live else {
                return Err(MutationError::SessionNotFound(id.as_str().to_owned()));
            };
            facts.sessions.remove(index);
        }
        Mutation::SetPreferred { state, expiration } => {
            let expiration = expiration.unwrap_or_else(|| PreferredExpiration::default_for(state));
            facts.preferred = Some(Preferred {
                state,
                set_at: now,
                expires_at: later(now, expiration.duration()),
            });
        }
        Mutation::ClearPreferred => facts.preferred = None,
        Mutation::SetStatusMessage(message) => {
            facts.status_message =
                message.map(|NewStatusMessage { content, expiry }| StatusMessage {
                    content,
                    published_at: now,
                    expiry,
                });
        }
        Mutation::SetOutOfOffice(out_of_office) => facts.out_of_office = out_of_office,
        Mutation::SetManualLocation { kind, place_id } => {
            facts.work_location.manual = Some(LocationSignal::for_today(kind, place_id, now));
        }
        Mutation::SetAutomaticLocation { kind, place_id } => {
            facts.work_location.automatic = Some(LocationSignal::for_today(kind, place_id, now));
        }
        Mutation::ClearAutomaticLocation => facts.work_location.automatic = None,
        Mutation::ClearLocation => {
            facts.work_location.manual = None;
            facts.work_location.automatic = None;
        }
    }
    Ok(())
}

/// Whether two sets of facts hold the same facts, `sequence` aside.
fn same_substance(a: &UserFacts, b: &UserFacts) -> bool {
    a.sessions == b.sessions
        && a.preferred == b.preferred
        && a.status_message == b.status_message
        && a.out_of_office == b.out_of_office
        && a.work_location == b.work_location
}

/// Keeps at most `most` sessions (at least one): the most recently refreshed
/// ones (of two refreshed at the same instant, the one set later).
fn keep_freshest_sessions(facts: &mut UserFacts, most: usize) {
    let most = most.max(1);
    while facts.sessions.len() > most {
        // Sessions are in the order they were created; `min_by_key` keeps
        // the first of equals, the older one.
        let stalest = facts
            .sessions
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.refreshed_at)
            .map(|(index, _)| index)
            .expect("more sessions than the bound, so at least one");
        facts.sessions.remove(stalest);
    }
}

/// Drops what can no longer be seen at or after `now`. Only sound together
/// with moving `sequence_at` to `now`, which [`apply`] does.
fn drop_expired(facts: &mut UserFacts, now: Timestamp) {
    facts.sessions.retain(|s| s.is_live_at(now));
    if facts.preferred.is_some_and(|p| p.expires_at <= now) {
        facts.preferred = None;
    }
    if facts
        .status_message
        .as_ref()
        .is_some_and(|m| !m.is_visible_at(now))
    {
        facts.status_message = None;
    }
    facts.work_location.drop_lapsed(now);
}

#[cfg(test)]
mod tests;
