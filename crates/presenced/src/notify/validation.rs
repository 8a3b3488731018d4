//! The claims of rich notifications' `validationTokens` (fact sheet §4.4).
//!
//! Graph puts one JWT per app and tenant in each collection of rich
//! notifications, so that a receiver can check the notification came from
//! Graph: audience the subscribing app, issuer `https://sts.windows.net/{tenant}/`,
//! `appid` Graph's change-notification publisher. presenced signs them with
//! its development issuer's key, whose JWKS the built-in identity provider
//! serves at `/{tenant}/discovery/v2.0/keys`. This module knows the claims,
//! not how they are signed.

use presenced_domain::Guid;
use serde::Serialize;

/// The app id of Graph's change-notification publisher (`appid`).
pub const PUBLISHER_APP_ID: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";
/// How long a validation token is valid (Graph's are valid for an hour).
pub const LIFETIME_SECONDS: i64 = 3600;

/// The claims of one validation token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// The subscribing application's id.
    pub aud: String,
    /// `https://sts.windows.net/{tenantId}/`.
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Graph's change-notification publisher.
    pub appid: &'static str,
    /// Application-only token (as in Graph's: `appidacr` 2, no user).
    pub appidacr: &'static str,
    pub tid: String,
    pub ver: &'static str,
}

impl Claims {
    /// Claims for `app` of `tenant`, issued at `now` (seconds, real time).
    pub fn new(app: &str, tenant: Guid, now: i64) -> Claims {
        Claims {
            aud: app.to_owned(),
            iss: format!("https://sts.windows.net/{tenant}/"),
            iat: now,
            nbf: now,
            exp: now.saturating_add(LIFETIME_SECONDS),
            appid: PUBLISHER_APP_ID,
            appidacr: "2",
            tid: tenant.to_string(),
            ver: "1.0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_name_the_app_the_tenant_and_graphs_publisher() {
        let tenant = Guid::parse("4f5e1d6c-2b3a-4c9d-8e7f-0a1b2c3d4e5f").unwrap();
        let claims = Claims::new(
            "22553876-f5ab-4529-bffb-cfe50aa89f87",
            tenant,
            1_800_000_000,
        );
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["aud"], "22553876-f5ab-4529-bffb-cfe50aa89f87");
        assert_eq!(
            json["iss"],
            "https://sts.windows.net/4f5e1d6c-2b3a-4c9d-8e7f-0a1b2c3d4e5f/"
        );
        assert_eq!(json["appid"], PUBLISHER_APP_ID);
        assert_eq!(json["tid"], "4f5e1d6c-2b3a-4c9d-8e7f-0a1b2c3d4e5f");
        assert_eq!(json["nbf"], json["iat"]);
        assert_eq!(json["exp"], 1_800_003_600);
    }
}
