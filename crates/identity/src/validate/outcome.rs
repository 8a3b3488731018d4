//! `presenced_token_validations_total{outcome}`: every validation counted by
//! how it ended.
//!
//! The counters are registered with the process's `metrics` recorder on the
//! first validation and kept: counting one is then an atomic add, with no
//! lock and no allocation. A process that installs no recorder counts into
//! nothing.

use std::sync::OnceLock;

use metrics::Counter;

use super::AuthError;

/// The metric's name.
pub const NAME: &str = "presenced_token_validations_total";

/// How a validation ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Accepted from the cache of validated tokens.
    CacheHit,
    /// Accepted after every check.
    Valid,
    Refused(Refusal),
}

/// Why a token was refused, one per [`AuthError`] kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Missing,
    NotBearer,
    Malformed,
    UnsupportedAlgorithm,
    UntrustedIssuer,
    UnknownSigningKey,
    BadSignature,
    InvalidAudience,
    Expired,
    NotYetValid,
    MissingClaim,
    InvalidClaim,
}

impl Refusal {
    pub(super) fn of(error: &AuthError) -> Refusal {
        match error {
            AuthError::Missing => Refusal::Missing,
            AuthError::NotBearer => Refusal::NotBearer,
            AuthError::Malformed(_) => Refusal::Malformed,
            AuthError::UnsupportedAlgorithm(_) => Refusal::UnsupportedAlgorithm,
            AuthError::UntrustedIssuer => Refusal::UntrustedIssuer,
            AuthError::UnknownSigningKey => Refusal::UnknownSigningKey,
            AuthError::InvalidSignature => Refusal::BadSignature,
            AuthError::InvalidAudience => Refusal::InvalidAudience,
            AuthError::Expired => Refusal::Expired,
            AuthError::NotYetValid => Refusal::NotYetValid,
            AuthError::MissingClaim(_) => Refusal::MissingClaim,
            AuthError::InvalidClaim { .. } => Refusal::InvalidClaim,
        }
    }
}

/// Every `outcome` label, in the order of [`index`].
const LABELS: [&str; 14] = [
    "cache_hit",
    "valid",
    "missing",
    "not_bearer",
    "malformed",
    "unsupported_algorithm",
    "untrusted_issuer",
    "unknown_signing_key",
    "bad_signature",
    "invalid_audience",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "invalid_claim",
];

fn index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::CacheHit => 0,
        Outcome::Valid => 1,
        Outcome::Refused(refusal) => match refusal {
            Refusal::Missing => 2,
            Refusal::NotBearer => 3,
            Refusal::Malformed => 4,
            Refusal::UnsupportedAlgorithm => 5,
            Refusal::UntrustedIssuer => 6,
            Refusal::UnknownSigningKey => 7,
            Refusal::BadSignature => 8,
            Refusal::InvalidAudience => 9,
            Refusal::Expired => 10,
            Refusal::NotYetValid => 11,
            Refusal::MissingClaim => 12,
            Refusal::InvalidClaim => 13,
        },
    }
}

static COUNTERS: OnceLock<[Counter; 14]> = OnceLock::new();

/// Counts one validation.
pub(super) fn record(outcome: Outcome) {
    let counters =
        COUNTERS.get_or_init(|| LABELS.map(|label| metrics::counter!(NAME, "outcome" => label)));
    counters[index(outcome)].increment(1);
}

/// Counts a refusal.
pub(super) fn refused(error: &AuthError) {
    record(Outcome::Refused(Refusal::of(error)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_label() {
        let refusals = [
            Refusal::Missing,
            Refusal::NotBearer,
            Refusal::Malformed,
            Refusal::UnsupportedAlgorithm,
            Refusal::UntrustedIssuer,
            Refusal::UnknownSigningKey,
            Refusal::BadSignature,
            Refusal::InvalidAudience,
            Refusal::Expired,
            Refusal::NotYetValid,
            Refusal::MissingClaim,
            Refusal::InvalidClaim,
        ];
        let mut seen: Vec<usize> = [Outcome::CacheHit, Outcome::Valid]
            .into_iter()
            .chain(refusals.map(Outcome::Refused))
            .map(index)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), LABELS.len());
        assert_eq!(
            Refusal::of(&AuthError::InvalidSignature),
            Refusal::BadSignature
        );
    }
}
