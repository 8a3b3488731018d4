//! The caller a validated token stands for.

use std::sync::Arc;

use crate::Guid;

/// Who is calling: a tenant, an app and, for delegated tokens, the signed-in user.
///
/// Built by the [`Validator`](crate::Validator) from a token's claims. Cheap to clone (the strings are
/// shared), so the validator's cache hands out clones. `user` is `Some` exactly when `kind` is
/// [`PrincipalKind::Delegated`]; the constructors keep it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The `tid` claim: whose directory the caller belongs to, and whose users it may see.
    pub tenant: Guid,
    /// The `appid` (or `azp`) claim: the client application. Sessions and throttling are per app. A
    /// string, because issuers other than Entra may use client ids that are not GUIDs.
    pub app: Arc<str>,
    /// The `oid` claim of a delegated token: the user the app acts as. `None` for app-only tokens.
    pub user: Option<Guid>,
    /// The permissions the token carries.
    pub kind: PrincipalKind,
}

/// The permissions of a token: scopes granted to a signed-in user's app, or roles granted to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A delegated token (`scp`): the app acts as the user.
    Delegated { scopes: Arc<[String]> },
    /// An app-only token (`roles`): the app acts as itself.
    Application { roles: Arc<[String]> },
}

impl Principal {
    /// A delegated caller: `app` acting as `user` with `scopes`.
    pub fn delegated(tenant: Guid, app: &str, user: Guid, scopes: Vec<String>) -> Principal {
        Principal {
            tenant,
            app: app.into(),
            user: Some(user),
            kind: PrincipalKind::Delegated {
                scopes: scopes.into(),
            },
        }
    }

    /// An app-only caller with `roles`.
    pub fn application(tenant: Guid, app: &str, roles: Vec<String>) -> Principal {
        Principal {
            tenant,
            app: app.into(),
            user: None,
            kind: PrincipalKind::Application {
                roles: roles.into(),
            },
        }
    }

    pub fn is_delegated(&self) -> bool {
        matches!(self.kind, PrincipalKind::Delegated { .. })
    }

    /// Whether a delegated token carries `scope`. Permission names compare case-insensitively, as
    /// Entra's do. Always false for app-only tokens.
    pub fn has_scope(&self, scope: &str) -> bool {
        match &self.kind {
            PrincipalKind::Delegated { scopes } => {
                scopes.iter().any(|s| s.eq_ignore_ascii_case(scope))
            }
            PrincipalKind::Application { .. } => false,
        }
    }

    /// Whether an app-only token carries `role` (case-insensitively). Always false for delegated
    /// tokens.
    pub fn has_role(&self, role: &str) -> bool {
        match &self.kind {
            PrincipalKind::Application { roles } => {
                roles.iter().any(|r| r.eq_ignore_ascii_case(role))
            }
            PrincipalKind::Delegated { .. } => false,
        }
    }
}
