//! The derived presence of one user at `now`, its `sequenceNumber`, and when
//! it next changes by itself.

use jiff::{SignedDuration, Timestamp};

use crate::facts::UserFacts;
use crate::location::{WorkLocationSource, WorkLocationType};
use crate::status::StatusMessage;
use crate::values::{Activity, Availability};

/// Tunable rules; the defaults are Graph's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// An Available session reads Available/AvailableInactive this long after its last refresh.
    pub fade_to_inactive: SignedDuration,
    /// An Available session reads Away/Away this long after its last refresh.
    pub fade_to_away: SignedDuration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            fade_to_inactive: SignedDuration::from_mins(5),
            fade_to_away: SignedDuration::from_mins(10),
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
    /// Strictly increases with each visible change; see [`derive`].
    pub sequence: u64,
}

/// The presence `facts` show at `now`.
pub fn derive<'a>(facts: &'a UserFacts, now: Timestamp, rules: &Rules) -> PresenceView<'a> {
    let _ = (facts, now, rules);
    todo!()
}

/// The first instant after `now` at which the derived view changes by itself
/// (a session fades or expires, a preferred presence, status message or
/// location signal lapses), or `None` if it never does.
pub fn next_change(facts: &UserFacts, now: Timestamp, rules: &Rules) -> Option<Timestamp> {
    let _ = (facts, now, rules);
    todo!()
}
