//! A presence subscription: what it covers, where it delivers, until when.
//!
//! [`Subscription`] is what the notification layer keeps; its stored body
//! (inside the store's [`SubscriptionRecord`]) is this module's JSON, which
//! is presenced's own persistence format, not a Graph wire shape.

use jiff::{SignedDuration, Timestamp};
use percent_encoding::percent_decode_str;
use presenced_domain::Guid;
use presenced_store::{StoreError, SubscriptionRecord};
use serde::{Deserialize, Serialize};

/// Graph's limit on ids in one presence subscription.
pub const MAX_IDS: usize = 650;
/// The shortest and longest lifetime of a presence subscription.
pub const MIN_LIFETIME: SignedDuration = SignedDuration::from_mins(45);
pub const MAX_LIFETIME: SignedDuration = SignedDuration::from_mins(60);
/// Graph's limits on `clientState` and `encryptionCertificateId`.
pub const MAX_CLIENT_STATE: usize = 128;
pub const MAX_CERTIFICATE_ID: usize = 128;

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    #[serde(skip, default = "nil")]
    pub id: Guid,
    #[serde(skip, default = "nil")]
    pub tenant: Guid,
    #[serde(skip)]
    pub users: Vec<Guid>,
    /// The subscribing application (`applicationId`).
    pub app: String,
    /// The signed-in user for delegated subscriptions (`creatorId`); for
    /// application subscriptions, the app's service principal.
    pub creator: String,
    /// Made with a delegated token (`creator` is then a user of the tenant).
    #[serde(default)]
    pub delegated: bool,
    /// `resource` as the subscriber sent it (without a leading `/`).
    pub resource: String,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    /// Milliseconds since the epoch, presence clock.
    pub expires_ms: i64,
    pub client_state: Option<String>,
    pub include_resource_data: bool,
    pub certificate: Option<String>,
    pub certificate_id: Option<String>,
    /// Whether `reauthorizationRequired` was sent for the current expiry.
    #[serde(default)]
    pub reauthorization_sent: bool,
}

impl Subscription {
    pub fn expires(&self) -> Timestamp {
        Timestamp::from_millisecond(self.expires_ms).unwrap_or(Timestamp::MAX)
    }

    /// The signed-in user who created it, for delegated subscriptions.
    pub fn delegated_creator(&self) -> Option<Guid> {
        self.delegated.then(|| Guid::parse(&self.creator)).flatten()
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires()
    }

    pub fn to_record(&self) -> SubscriptionRecord {
        SubscriptionRecord {
            id: self.id,
            tenant: self.tenant,
            users: self.users.clone(),
            body: serde_json::to_vec(self).expect("a subscription serialises"),
        }
    }

    pub fn from_record(record: SubscriptionRecord) -> Result<Subscription, StoreError> {
        let mut subscription: Subscription = serde_json::from_slice(&record.body)
            .map_err(|e| StoreError::Corrupt(format!("subscription {}: {e}", record.id)))?;
        subscription.id = record.id;
        subscription.tenant = record.tenant;
        subscription.users = record.users;
        Ok(subscription)
    }
}

/// A placeholder id, replaced from the record's key on load.
fn nil() -> Guid {
    Guid::from_u128(0)
}

/// The expiry a requested one becomes: at least 45 and at most 60 minutes
/// after `now`, in whole milliseconds.
pub fn clamp_expiry(requested: Timestamp, now: Timestamp) -> Timestamp {
    let low = now.saturating_add(MIN_LIFETIME).unwrap_or(Timestamp::MAX);
    let high = now.saturating_add(MAX_LIFETIME).unwrap_or(Timestamp::MAX);
    let at = requested.clamp(low, high);
    Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at)
}

/// Why a `resource` is not a presence resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error(
        "the resource must be communications/presences/{{id}} or communications/presences?$filter=id in ('{{id}}',...)"
    )]
    Unsupported,
    #[error("'{0}' is not a user id (a GUID)")]
    NotAGuid(String),
    #[error("the resource names no user id")]
    Empty,
}

/// The users a presence `resource` names, in order, without duplicates.
/// Accepts it raw or URL-encoded, with or without a leading `/`.
pub fn parse_resource(resource: &str) -> Result<Vec<Guid>, ResourceError> {
    let decoded = percent_decode_str(&resource.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    let text = decoded.trim().trim_start_matches('/');
    let lower = text.to_ascii_lowercase();
    let ids: Vec<&str> = if let Some(rest) = lower.strip_prefix("communications/presences/") {
        let start = text.len() - rest.len();
        vec![&text[start..]]
    } else if let Some(query) = lower.strip_prefix("communications/presences?") {
        let start = text.len() - query.len();
        let query = &text[start..];
        let filter = query
            .split('&')
            .find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                let name = name.trim().trim_start_matches('$');
                name.eq_ignore_ascii_case("filter").then_some(value)
            })
            .ok_or(ResourceError::Unsupported)?;
        let filter = filter.trim();
        let (field, list) = filter
            .split_once(char::is_whitespace)
            .ok_or(ResourceError::Unsupported)?;
        let list = list.trim_start();
        let list = list
            .get(..2)
            .filter(|op| op.eq_ignore_ascii_case("in"))
            .map(|_| list[2..].trim())
            .ok_or(ResourceError::Unsupported)?;
        if !field.eq_ignore_ascii_case("id") {
            return Err(ResourceError::Unsupported);
        }
        let inner = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or(ResourceError::Unsupported)?;
        inner
            .split(',')
            .map(|id| id.trim().trim_matches(|c| c == '\'' || c == '"'))
            .filter(|id| !id.is_empty())
            .collect()
    } else {
        return Err(ResourceError::Unsupported);
    };
    let mut users = Vec::with_capacity(ids.len());
    for id in ids {
        let user = Guid::parse(id).ok_or_else(|| ResourceError::NotAGuid(id.to_owned()))?;
        if !users.contains(&user) {
            users.push(user);
        }
    }
    if users.is_empty() {
        return Err(ResourceError::Empty);
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";
    const B: &str = "66825e03-7ef5-42da-9069-724602c31f6b";

    #[test]
    fn presence_resources_name_their_users() {
        let a = Guid::parse(A).unwrap();
        let b = Guid::parse(B).unwrap();
        let cases: Vec<(String, Result<Vec<Guid>, ResourceError>)> = vec![
            (format!("communications/presences/{A}"), Ok(vec![a])),
            (format!("/communications/presences/{A}"), Ok(vec![a])),
            (
                format!("communications/presences?$filter=id in ('{A}','{B}')"),
                Ok(vec![a, b]),
            ),
            (
                format!("/communications/presences?$filter=id in ('{A}', '{B}', '{A}')"),
                Ok(vec![a, b]),
            ),
            (
                format!("communications/presences?$filter=id+in+(%27{A}%27)"),
                Ok(vec![a]),
            ),
            (
                format!(
                    "communications%2Fpresences%3F%24filter%3Did%20in%20(%27{A}%27%2C%27{B}%27)"
                ),
                Ok(vec![a, b]),
            ),
            (
                "communications/presences/adele@contoso.com".into(),
                Err(ResourceError::NotAGuid("adele@contoso.com".into())),
            ),
            (
                "communications/presences?$filter=id in ()".into(),
                Err(ResourceError::Empty),
            ),
            (
                format!("users/{A}/presence"),
                Err(ResourceError::Unsupported),
            ),
            (
                format!("communications/presences?$filter=name in ('{A}')"),
                Err(ResourceError::Unsupported),
            ),
            ("me/messages".into(), Err(ResourceError::Unsupported)),
        ];
        for (resource, expected) in cases {
            assert_eq!(parse_resource(&resource), expected, "{resource}");
        }
    }

    #[test]
    fn lifetimes_are_clamped_to_45_to_60_minutes() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let at = |m: i64| now + SignedDuration::from_mins(m);
        assert_eq!(clamp_expiry(at(5), now), at(45));
        assert_eq!(clamp_expiry(at(50), now), at(50));
        assert_eq!(clamp_expiry(at(600), now), at(60));
        assert_eq!(clamp_expiry(at(-10), now), at(45));
    }
}
