//! What is stored about one user: facts with absolute instants.
//!
//! Plain data, encoded by the store. Instants are absolute (`expires_at`,
//! never "time left"), so a restart or a late timer cannot skew a reading.
//! Facts may hold things that have already expired; the view ignores them
//! and [`crate::mutation::apply`] drops them on the next write.

use jiff::Timestamp;

use crate::ids::SessionId;
use crate::location::WorkLocationLayers;
use crate::status::StatusMessage;
use crate::values::{PreferredState, SessionState};

/// Everything presence is derived from, for one user.
///
/// Invariant: facts only change through [`crate::mutation::apply`], which
/// keeps `sequence` consistent with the derived view.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserFacts {
    /// App presence sessions, keyed by `sessionId`; at most one per id.
    pub sessions: Vec<Session>,
    /// The user's own choice, which overrides sessions while one exists.
    pub preferred: Option<Preferred>,
    /// The custom note, if one is set (it may have expired: see the view).
    pub status_message: Option<StatusMessage>,
    /// Set by the calendar and mailbox stand-in (an admin call).
    pub out_of_office: OutOfOffice,
    /// Manual, automatic and scheduled work-location signals.
    pub work_location: WorkLocationLayers,
    /// `sequenceNumber` as it was at `sequence_at`. Later visible changes
    /// caused by time alone are counted on top when the view is derived.
    pub sequence: u64,
    /// The instant `sequence` was last written (the last mutation).
    pub sequence_at: Option<Timestamp>,
}

/// One app's presence session for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The caller's `sessionId`: one session per id per user.
    pub id: SessionId,
    /// The pair setPresence set; fading applies on top when it is read.
    pub state: SessionState,
    /// The last setPresence for this session; fading counts from here.
    pub refreshed_at: Timestamp,
    /// The session no longer exists at and after this instant.
    pub expires_at: Timestamp,
}

/// The preferred presence (setUserPreferredPresence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preferred {
    /// The pair the user chose; shown as is while a session exists.
    pub state: PreferredState,
    /// When setUserPreferredPresence was called (kept for diagnostics).
    pub set_at: Timestamp,
    /// The preference no longer applies at and after this instant.
    pub expires_at: Timestamp,
}

/// Out-of-office as the calendar and mailbox would report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutOfOffice {
    /// Turns a plain Available or Offline activity into `OutOfOffice`.
    pub is_out_of_office: bool,
    /// The automatic-reply text, always returned (`null` when `None`).
    pub message: Option<String>,
}
