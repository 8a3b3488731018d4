//! The presence engine: Graph's presence rules as pure functions.
//!
//! A user's presence is never stored. It is derived from stored *facts*
//! ([`UserFacts`]: app sessions, the preferred presence, the status message,
//! out-of-office, work-location signals) and the current instant:
//!
//! ```text
//! presence(user, now) = derive(facts, now, rules)
//! ```
//!
//! Facts carry absolute instants (`refreshed_at`, `expires_at`), never
//! "remaining time", so a late timer, a restart or a slow node can never serve
//! a wrong presence. The only job left to timers elsewhere is to *announce* a
//! change at the instant [`next_change`] names.
//!
//! # Layout
//! - [`values`]: availability and activity strings, the allowed pairs.
//! - [`duration`]: ISO 8601 durations and the two expiration ranges.
//! - [`ids`]: GUIDs and session ids.
//! - [`facts`]: what is stored about one user.
//! - [`status`]: status messages and their expiry in a named time zone.
//! - [`windows_zones`]: Windows time zone names mapped to IANA zones (CLDR).
//! - [`location`]: work-location signals and their aggregation.
//! - [`mutation`]: the changes an API call can make, applied to facts.
//! - [`view`]: the derived presence and the next change.
//! - [`sequence`]: `sequenceNumber`, counted from the facts without timers.
//!
//! Architecture invariant: nothing in this crate does I/O, reads the clock,
//! or knows Graph's JSON. `now` is always an argument.

pub mod duration;
pub mod facts;
pub mod ids;
pub mod location;
pub mod mutation;
pub mod sequence;
pub mod status;
pub mod values;
pub mod view;
pub mod windows_zones;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod properties;

pub use duration::{
    DurationError, DurationSyntax, ExpirationError, OutOfRange, PreferredExpiration,
    SessionExpiration, format_duration, parse_duration,
};
pub use facts::{OutOfOffice, Preferred, Session, UserFacts};
pub use ids::{Guid, NotAGuid, SessionId, SessionIdError};
pub use location::{
    LocationSignal, WorkLocation, WorkLocationLayers, WorkLocationSource, WorkLocationType,
    WorkLocationTypeError,
};
pub use mutation::{Applied, Mutation, MutationError, apply};
pub use status::{NewStatusMessage, StatusExpiry, StatusMessage, StatusMessageError};
pub use values::{
    Activity, Availability, Field, PairError, PreferredState, SessionState, StateError, ValueError,
};
pub use view::{PresenceView, Rules, derive, next_change, sequence_number_text};
