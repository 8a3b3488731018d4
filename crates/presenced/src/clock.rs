//! The clock that presence runs on.
//!
//! Everything that needs "now" for presence asks a [`Clock`]; nothing else
//! reads the system time (token lifetimes are the documented exception: they
//! are always checked against the real wall clock).

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

/// Which clock the server runs on (`--clock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockKind {
    /// The system's wall clock.
    System,
    /// Starts at the real time and moves only when told to (`POST /admin/clock`).
    Manual,
}

/// A source of the current instant.
#[derive(Debug)]
pub enum Clock {
    System,
    /// A `std::sync::Mutex` because reads and advances are short and never
    /// cross an `.await`.
    Manual(Mutex<Timestamp>),
}

impl Clock {
    /// A manual clock that reads `start` until advanced.
    pub fn manual(start: Timestamp) -> Clock {
        Clock::Manual(Mutex::new(start))
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Manual(now) => *now.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }

    /// Moves a manual clock forward to `at` if `at` is later (never back):
    /// another node moved the shared manual clock. Whether it moved.
    pub fn catch_up(&self, at: Timestamp) -> bool {
        match self {
            Clock::System => false,
            Clock::Manual(now) => {
                let mut now = now.lock().unwrap_or_else(|e| e.into_inner());
                if at > *now {
                    *now = at;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Moves a manual clock forward by `by` and returns the new reading.
    /// Returns `None` for the system clock or when the result is out of range.
    pub fn advance(&self, by: SignedDuration) -> Option<Timestamp> {
        match self {
            Clock::System => None,
            Clock::Manual(now) => {
                let mut now = now.lock().unwrap_or_else(|e| e.into_inner());
                let next = now.checked_add(by).ok()?;
                *now = next;
                Some(next)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        assert_eq!(
            clock.advance(SignedDuration::from_mins(5)),
            Some(start + SignedDuration::from_mins(5))
        );
        assert_eq!(clock.now(), start + SignedDuration::from_mins(5));
    }

    #[test]
    fn a_manual_clock_catches_up_but_never_goes_back() {
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let clock = Clock::manual(start);
        assert!(!clock.catch_up(start - SignedDuration::from_mins(1)));
        assert_eq!(clock.now(), start);
        assert!(clock.catch_up(start + SignedDuration::from_mins(1)));
        assert_eq!(clock.now(), start + SignedDuration::from_mins(1));
        assert!(!Clock::System.catch_up(start));
    }

    #[test]
    fn system_clock_cannot_be_advanced() {
        assert_eq!(Clock::System.advance(SignedDuration::from_mins(5)), None);
    }
}
