//! Work location: manual, automatic and scheduled layers, aggregated as
//! manual > automatic > scheduled; nothing set reads `none` / `unspecified`.
//!
//! Manual and automatic signals apply to the day they were set: they lapse at
//! the next midnight UTC (`until`), as clearLocation's "for the current date"
//! implies.

use jiff::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkLocationType {
    Unspecified,
    Office,
    Remote,
    TimeOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkLocationSource {
    None,
    Manual,
    Scheduled,
    Automatic,
}

/// One layer's signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationSignal {
    pub kind: WorkLocationType,
    pub place_id: Option<String>,
    /// The signal no longer applies at and after this instant (`None`: until cleared).
    pub until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkLocationLayers {
    pub manual: Option<LocationSignal>,
    pub automatic: Option<LocationSignal>,
    pub scheduled: Option<LocationSignal>,
}
