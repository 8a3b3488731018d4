//! Throttling like Graph's: a request budget per app per tenant
//! (decisions.md 22), enforced with GCRA.
//!
//! Throttling runs on real time (`std::time::Instant`), never on the manual
//! presence clock: a test that jumps the clock a week ahead must not refill
//! or drain anyone's budget.
//!
//! With a store that offers a [`SharedLimiter`] (Redis: several nodes), the
//! budget lives there, so that it holds whatever node a request lands on;
//! its clock is the Redis master's. If the shared budget cannot be reached,
//! the request is judged by this node's own budget instead (the store call
//! that follows will answer 503 if Redis is really gone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use presenced_domain::Guid;
use presenced_store::SharedLimiter;

/// How many requests an app may make per window in one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u32,
    pub window: Duration,
}

impl Limit {
    /// Graph's presence limit: 1,500 requests per 30 seconds.
    pub const GRAPH: Limit = Limit {
        requests: 1500,
        window: Duration::from_secs(30),
    };

    /// Parses `off` (no limit), or `N/SECONDSs` such as `1500/30s`.
    pub fn parse(text: &str) -> Result<Option<Limit>, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || {
            format!(
                "'{text}' is not a throttle limit: use 'off' or REQUESTS/SECONDSs, such as 1500/30s"
            )
        };
        let (requests, window) = text.split_once('/').ok_or_else(bad)?;
        let requests: u32 = requests.trim().parse().map_err(|_| bad())?;
        let seconds: u64 = window
            .trim()
            .trim_end_matches('s')
            .parse()
            .map_err(|_| bad())?;
        if requests == 0 || seconds == 0 {
            return Err(bad());
        }
        Ok(Some(Limit {
            requests,
            window: Duration::from_secs(seconds),
        }))
    }
}

/// Per (tenant, app) theoretical arrival times, under a default limit and
/// per-tenant overrides.
#[derive(Default)]
pub struct Throttle {
    /// The limit of tenants without an override; `None`: unlimited.
    default: Option<Limit>,
    /// Per-tenant overrides; `None`: that tenant is unlimited.
    tenants: HashMap<Guid, Option<Limit>>,
    /// One `std::sync::Mutex`: held for a hash lookup and an addition, never
    /// across an `.await`.
    arrivals: Mutex<HashMap<(Guid, Box<str>), Instant>>,
    /// The budget every node shares, when the store has one.
    shared: Option<Arc<dyn SharedLimiter>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("default", &self.default)
            .field("tenants", &self.tenants)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl Throttle {
    pub fn new(default: Option<Limit>, tenants: HashMap<Guid, Option<Limit>>) -> Throttle {
        Throttle {
            default,
            tenants,
            arrivals: Mutex::new(HashMap::new()),
            shared: None,
        }
    }

    /// Keeps the budgets in `shared` (every node's) instead of this node.
    pub fn with_shared(mut self, shared: Option<Arc<dyn SharedLimiter>>) -> Throttle {
        self.shared = shared;
        self
    }

    /// Admits one request of `app` in `tenant` now, against the shared
    /// budget when there is one, else this node's; or says how many whole
    /// seconds to wait.
    pub async fn check(&self, tenant: Guid, app: &str) -> Result<(), u64> {
        let Some(limit) = self.limit_for(tenant) else {
            return Ok(());
        };
        if let Some(shared) = &self.shared {
            let mut key = Vec::with_capacity(16 + app.len());
            key.extend_from_slice(&tenant.to_bytes());
            key.extend_from_slice(app.as_bytes());
            match shared.admit(&key, limit.requests, limit.window, None).await {
                Ok(None) => return Ok(()),
                Ok(Some(wait)) => {
                    crate::telemetry::throttled(crate::telemetry::Throttled::AppTenant);
                    return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
                }
                Err(error) => {
                    tracing::warn!(%error, "shared throttle unreachable: judging on this node");
                }
            }
        }
        self.admit(tenant, app, Instant::now())
    }

    fn limit_for(&self, tenant: Guid) -> Option<Limit> {
        self.tenants.get(&tenant).copied().unwrap_or(self.default)
    }

    /// Admits one request of `app` in `tenant` at `now`, or says how many
    /// whole seconds to wait.
    pub fn admit(&self, tenant: Guid, app: &str, now: Instant) -> Result<(), u64> {
        let Some(limit) = self.limit_for(tenant) else {
            return Ok(());
        };
        let interval = limit.window / limit.requests;
        let tolerance = limit.window.saturating_sub(interval);
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if arrivals.len() > 100_000 {
            arrivals.retain(|_, tat| *tat > now);
        }
        let tat = arrivals.entry((tenant, app.into())).or_insert(now);
        let start = (*tat).max(now);
        let ahead = start - now;
        if ahead > tolerance {
            let wait = ahead - tolerance;
            crate::telemetry::throttled(crate::telemetry::Throttled::AppTenant);
            return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        }
        *tat = start + interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_parses_off_and_rates() {
        assert_eq!(Limit::parse("off"), Ok(None));
        assert_eq!(Limit::parse("1500/30s"), Ok(Some(Limit::GRAPH)));
        assert!(Limit::parse("0/30s").is_err());
        assert!(Limit::parse("many").is_err());
    }

    #[test]
    fn a_burst_of_the_whole_budget_passes_and_the_next_request_waits() {
        let unlimited = Guid::from_u128(2);
        let limit = Limit {
            requests: 3,
            window: Duration::from_secs(30),
        };
        let throttle = Throttle::new(Some(limit), HashMap::from([(unlimited, None)]));
        let tenant = Guid::from_u128(1);
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(throttle.admit(tenant, "app", now), Ok(()));
        }
        assert_eq!(throttle.admit(tenant, "app", now), Err(10));
        assert_eq!(throttle.admit(tenant, "other-app", now), Ok(()));
        assert_eq!(
            throttle.admit(tenant, "app", now + Duration::from_secs(10)),
            Ok(())
        );
        for _ in 0..10 {
            assert_eq!(throttle.admit(unlimited, "app", now), Ok(()));
        }
    }
}
