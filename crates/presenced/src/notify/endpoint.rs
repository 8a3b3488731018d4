//! Graph's slow-endpoint rules (fact sheet §4.3), per notification URL.
//!
//! A response slower than the threshold (Graph: 2,900 ms) counts as slow,
//! for every notification of the batch it answered. Once an endpoint has
//! been sent a minimum number of notifications (Graph: 100) in the current
//! window, a slow share at or above one mark (10 %) flags it: its
//! notifications are held back for a while (10 minutes); at or above a
//! second mark (15 %) its notifications are dropped. Counters restart every
//! window (10 minutes). Time here is real time ([`Instant`]), like the
//! pacing of retries: a receiver is fast or slow in real time.
//!
//! This module is pure bookkeeping: it knows no HTTP and no outbox.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The rules' numbers (`[notifications]` `slow_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowRules {
    /// A response taking longer than this is slow (Graph: 2,900 ms).
    pub threshold: Duration,
    /// The rules apply once this many notifications were sent in the window.
    pub after: u64,
    /// Slow share (percent) at which an endpoint is flagged and delayed.
    pub flag_percent: u8,
    /// Slow share (percent) at which notifications are dropped.
    pub drop_percent: u8,
    /// How long a flagged endpoint's notifications are held back.
    pub delay: Duration,
    /// How often the counters restart.
    pub window: Duration,
}

impl Default for SlowRules {
    fn default() -> Self {
        SlowRules {
            threshold: Duration::from_millis(2900),
            after: 100,
            flag_percent: 10,
            drop_percent: 15,
            delay: Duration::from_secs(600),
            window: Duration::from_secs(600),
        }
    }
}

/// What to do with an endpoint's notifications now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Flagged: hold them back this long.
    Delay(Duration),
    /// Too slow: drop them (with `missed`).
    Drop,
}

/// One endpoint's counters in the current window.
#[derive(Debug, Clone, Copy)]
struct Counters {
    started: Instant,
    sent: u64,
    slow: u64,
}

/// Every endpoint's counters. A `std::sync::Mutex`: it is held for a map
/// lookup only, never across an `.await`.
#[derive(Debug, Default)]
pub struct EndpointHealth {
    endpoints: Mutex<HashMap<String, Counters>>,
}

impl EndpointHealth {
    /// The verdict for `url` at `now`.
    pub fn verdict(&self, rules: &SlowRules, url: &str, now: Instant) -> Verdict {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let Some(counters) = endpoints.get_mut(url) else {
            return Verdict::Send;
        };
        if now.saturating_duration_since(counters.started) >= rules.window {
            endpoints.remove(url);
            return Verdict::Send;
        }
        if counters.sent < rules.after.max(1) {
            return Verdict::Send;
        }
        let percent = counters.slow.saturating_mul(100) / counters.sent;
        if percent >= u64::from(rules.drop_percent) {
            Verdict::Drop
        } else if percent >= u64::from(rules.flag_percent) {
            Verdict::Delay(rules.delay)
        } else {
            Verdict::Send
        }
    }

    /// Records that `count` notifications to `url` were answered (or failed)
    /// after `took`.
    pub fn record(&self, rules: &SlowRules, url: &str, count: u64, took: Duration, now: Instant) {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let counters = endpoints.entry(url.to_owned()).or_insert(Counters {
            started: now,
            sent: 0,
            slow: 0,
        });
        if now.saturating_duration_since(counters.started) >= rules.window {
            *counters = Counters {
                started: now,
                sent: 0,
                slow: 0,
            };
        }
        counters.sent = counters.sent.saturating_add(count);
        if took > rules.threshold {
            counters.slow = counters.slow.saturating_add(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.example.com/presence";

    /// Graph's numbers: (fast, slow) notifications sent in one window, then the verdict.
    #[test]
    fn graphs_numbers_flag_at_ten_and_drop_at_fifteen_percent_after_a_hundred() {
        let rules = SlowRules::default();
        let fast = Duration::from_millis(2900);
        let slow = Duration::from_millis(2901);
        let cases = [
            ((0, 0), Verdict::Send),
            ((0, 99), Verdict::Send),
            ((91, 9), Verdict::Send),
            ((90, 10), Verdict::Delay(Duration::from_secs(600))),
            ((86, 14), Verdict::Delay(Duration::from_secs(600))),
            ((85, 15), Verdict::Drop),
            ((0, 100), Verdict::Drop),
            ((900, 99), Verdict::Send),
        ];
        for ((fast_count, slow_count), expected) in cases {
            let health = EndpointHealth::default();
            let now = Instant::now();
            health.record(&rules, URL, fast_count, fast, now);
            health.record(&rules, URL, slow_count, slow, now);
            assert_eq!(
                health.verdict(&rules, URL, now),
                expected,
                "{fast_count} fast, {slow_count} slow"
            );
            assert_eq!(
                health.verdict(&rules, "https://other.example.com/", now),
                Verdict::Send
            );
        }
    }

    #[test]
    fn counters_restart_every_window() {
        let rules = SlowRules::default();
        let health = EndpointHealth::default();
        let start = Instant::now();
        health.record(&rules, URL, 100, Duration::from_secs(5), start);
        assert_eq!(health.verdict(&rules, URL, start), Verdict::Drop);
        let later = start + Duration::from_secs(599);
        assert_eq!(health.verdict(&rules, URL, later), Verdict::Drop);
        let next_window = start + Duration::from_secs(600);
        assert_eq!(health.verdict(&rules, URL, next_window), Verdict::Send);
        // A new window counts from scratch.
        health.record(&rules, URL, 99, Duration::from_secs(5), next_window);
        assert_eq!(health.verdict(&rules, URL, next_window), Verdict::Send);
    }
}
