//! Graph's permission model for presence (fact sheet §2.0, decisions.md 16).
//!
//! Authentication (is the token valid?) belongs to `presenced-identity`; this
//! module decides what a valid caller may do.

use presenced_domain::Guid;
use presenced_identity::{PERSONAL_ACCOUNT_TENANT, Principal, PrincipalKind};

use super::error::ApiError;

/// What a call needs to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read the caller's own presence.
    ReadOwn,
    /// Read any user's presence of the tenant.
    ReadAny,
    /// Write the presence of `target` (sessions, preferred, status message).
    Write,
    /// Write a work location (delegated only in Graph).
    WriteLocation,
}

/// Refuses personal accounts, whatever they ask for.
pub fn check_account(principal: &Principal) -> Result<(), ApiError> {
    if principal.tenant == PERSONAL_ACCOUNT_TENANT {
        return Err(ApiError::forbidden(
            "Personal Microsoft accounts are not supported for presence; use a work or school account.",
        ));
    }
    Ok(())
}

/// Checks that `principal` may do `need` to the presence of `target`.
pub fn authorize(principal: &Principal, need: Need, target: Guid) -> Result<(), ApiError> {
    let (granted, wanted): (bool, &[&str]) = match (&principal.kind, need) {
        (PrincipalKind::Delegated { .. }, Need::ReadOwn) => {
            let wanted: &[&str] = &["Presence.Read", "Presence.Read.All", "Presence.ReadWrite"];
            (wanted.iter().any(|s| principal.has_scope(s)), wanted)
        }
        (PrincipalKind::Delegated { .. }, Need::ReadAny) => (
            principal.has_scope("Presence.Read.All"),
            &["Presence.Read.All"],
        ),
        (PrincipalKind::Delegated { .. }, Need::Write | Need::WriteLocation) => (
            principal.has_scope("Presence.ReadWrite"),
            &["Presence.ReadWrite"],
        ),
        (PrincipalKind::Application { .. }, Need::ReadOwn | Need::ReadAny) => {
            let wanted: &[&str] = &["Presence.Read.All", "Presence.ReadWrite.All"];
            (wanted.iter().any(|r| principal.has_role(r)), wanted)
        }
        (PrincipalKind::Application { .. }, Need::Write) => (
            principal.has_role("Presence.ReadWrite.All"),
            &["Presence.ReadWrite.All"],
        ),
        (PrincipalKind::Application { .. }, Need::WriteLocation) => {
            return Err(ApiError::forbidden(
                "Work location can only be set with delegated permission Presence.ReadWrite; application permissions are not supported.",
            ));
        }
    };
    if !granted {
        let kind = if principal.is_delegated() {
            "delegated"
        } else {
            "application"
        };
        return Err(ApiError::forbidden(format!(
            "Missing permission: this call needs the {kind} permission {}.",
            wanted.join(" or ")
        )));
    }
    let writes = matches!(need, Need::Write | Need::WriteLocation);
    if let Some(user) = principal
        .user
        .filter(|_| writes && principal.is_delegated())
        && user != target
    {
        return Err(ApiError::forbidden(format!(
            "Cannot set the presence of another user. Authenticated user: {user}. Requested user: {target}"
        )));
    }
    Ok(())
}

/// How much of a directory user a caller may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAccess {
    /// Every property (`User.Read.All`, or `User.Read` on oneself).
    Full,
    /// Graph's basic set only (`User.ReadBasic.All`): id, names, mail.
    Basic,
}

const READ_ALL_USERS: [&str; 5] = [
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
    "Directory.AccessAsUser.All",
];

/// What `principal` may read of the directory user `target` (`None`: the
/// list of users), with Graph's 403 when nothing.
pub fn read_users(principal: &Principal, target: Option<Guid>) -> Result<UserAccess, ApiError> {
    let delegated = principal.is_delegated();
    let has = |permission: &str| {
        if delegated {
            principal.has_scope(permission)
        } else {
            principal.has_role(permission)
        }
    };
    let own = delegated && target.is_some() && principal.user == target;
    if READ_ALL_USERS.iter().any(|p| has(p)) || (own && (has("User.Read") || has("User.ReadWrite")))
    {
        return Ok(UserAccess::Full);
    }
    if has("User.ReadBasic.All") {
        return Ok(UserAccess::Basic);
    }
    Err(ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    ))
}
