//! The changes an API call can make to one user's facts.

use jiff::Timestamp;

use crate::duration::{PreferredExpiration, SessionExpiration};
use crate::facts::{OutOfOffice, UserFacts};
use crate::ids::SessionId;
use crate::location::{WorkLocationType};
use crate::status::NewStatusMessage;
use crate::values::{PreferredState, SessionState};
use crate::view::Rules;

/// One validated change to a user's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// setPresence: create or replace the session and refresh it.
    SetSession { id: SessionId, state: SessionState, expiration: SessionExpiration },
    /// clearPresence.
    ClearSession { id: SessionId },
    /// setUserPreferredPresence; `None` expiration takes the state's default.
    SetPreferred { state: PreferredState, expiration: Option<PreferredExpiration> },
    /// clearUserPreferredPresence (idempotent).
    ClearPreferred,
    /// setStatusMessage; `None` clears.
    SetStatusMessage(Option<NewStatusMessage>),
    /// The out-of-office stand-in (admin call).
    SetOutOfOffice(OutOfOffice),
    SetManualLocation { kind: WorkLocationType, place_id: Option<String> },
    SetAutomaticLocation { kind: WorkLocationType, place_id: Option<String> },
    ClearAutomaticLocation,
    ClearLocation,
}

/// A mutation that cannot apply to the current facts; facts are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutationError {
    #[error("No presence session with id '{0}' exists for this user.")]
    SessionNotFound(String),
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
pub fn apply(
    facts: &mut UserFacts,
    mutation: Mutation,
    now: Timestamp,
    rules: &Rules,
) -> Result<Applied, MutationError> {
    let _ = (facts, mutation, now, rules);
    todo!()
}
