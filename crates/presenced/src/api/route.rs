//! Graph's presence URLs, parsed into a [`GraphRoute`].
//!
//! Path segments are percent-decoded one by one (the Python SDK encodes ids,
//! the JS client sends them raw). Bound actions may be namespace-qualified
//! (`microsoft.graph.setPresence`). Ids are kept as text here: whether one is
//! a GUID is decided by the handler, so that a bad id gets its own message.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Which user a presence path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/me/presence`: the signed-in user.
    Me,
    /// `/users/{id}/presence`.
    User(String),
    /// `/communications/presences/{id}`.
    Communications(String),
}

/// A bound action on a presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SetPresence,
    ClearPresence,
    SetUserPreferredPresence,
    ClearUserPreferredPresence,
    SetStatusMessage,
    SetManualLocation,
    SetAutomaticLocation,
    ClearAutomaticLocation,
    ClearLocation,
}

impl Action {
    const ALL: [(Action, &'static str); 9] = [
        (Action::SetPresence, "setPresence"),
        (Action::ClearPresence, "clearPresence"),
        (Action::SetUserPreferredPresence, "setUserPreferredPresence"),
        (
            Action::ClearUserPreferredPresence,
            "clearUserPreferredPresence",
        ),
        (Action::SetStatusMessage, "setStatusMessage"),
        (Action::SetManualLocation, "setManualLocation"),
        (Action::SetAutomaticLocation, "setAutomaticLocation"),
        (Action::ClearAutomaticLocation, "clearAutomaticLocation"),
        (Action::ClearLocation, "clearLocation"),
    ];

    /// Every action with its name as Graph spells it.
    pub fn all() -> &'static [(Action, &'static str)] {
        &Action::ALL
    }

    /// The action's name as Graph spells it.
    pub fn name(self) -> &'static str {
        Action::ALL
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, n)| *n)
            .unwrap_or("")
    }

    /// Parses a bare or namespace-qualified action segment; action names,
    /// like all OData identifiers in Graph URLs, match case-insensitively.
    fn parse(segment: &str) -> Option<Action> {
        let bare = strip_namespace(segment);
        Action::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(bare))
            .map(|(a, _)| *a)
    }

    /// Location actions are delegated-only in Graph.
    pub fn is_location(self) -> bool {
        matches!(
            self,
            Action::SetManualLocation
                | Action::SetAutomaticLocation
                | Action::ClearAutomaticLocation
                | Action::ClearLocation
        )
    }
}

fn strip_namespace(segment: &str) -> &str {
    const NAMESPACE: &str = "microsoft.graph.";
    match segment.get(..NAMESPACE.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(NAMESPACE) => &segment[NAMESPACE.len()..],
        _ => segment,
    }
}

/// The Graph API version prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    Beta,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1.0",
            Version::Beta => "beta",
        }
    }
}

/// A recognised presence URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphRoute {
    GetPresence(Target),
    GetPresencesByUserId,
    Act(Target, Action),
}

impl GraphRoute {
    /// A stable name for logs: the route template, no ids.
    pub fn template(&self) -> &'static str {
        match self {
            GraphRoute::GetPresence(Target::Me) => "/me/presence",
            GraphRoute::GetPresence(Target::User(_)) => "/users/{id}/presence",
            GraphRoute::GetPresence(Target::Communications(_)) => "/communications/presences/{id}",
            GraphRoute::GetPresencesByUserId => "/communications/getPresencesByUserId",
            GraphRoute::Act(Target::Me, _) => "/me/presence/{action}",
            GraphRoute::Act(Target::User(_), _) => "/users/{id}/presence/{action}",
            GraphRoute::Act(Target::Communications(_), _) => {
                "/communications/presences/{id}/{action}"
            }
        }
    }

    /// The HTTP method the route answers to.
    pub fn method(&self) -> &'static str {
        match self {
            GraphRoute::GetPresence(_) => "GET",
            _ => "POST",
        }
    }
}

/// Every path form [`parse`] recognises, as a template without the version
/// (`/users/{id}/presence/setPresence`), with the method it answers.
pub fn templates() -> Vec<(&'static str, String)> {
    let targets = [
        Target::Me,
        Target::User(String::new()),
        Target::Communications(String::new()),
    ];
    let mut out = vec![(
        GraphRoute::GetPresencesByUserId.method(),
        GraphRoute::GetPresencesByUserId.template().to_string(),
    )];
    for target in targets {
        let read = GraphRoute::GetPresence(target.clone());
        out.push((read.method(), read.template().to_string()));
        for &(action, name) in Action::all() {
            let act = GraphRoute::Act(target.clone(), action);
            out.push((act.method(), act.template().replace("{action}", name)));
        }
    }
    out
}

/// Splits `/v1.0/...` or `/beta/...` into the version and the route.
/// `None` means "no such resource" (404).
pub fn parse(path: &str) -> Option<(Version, GraphRoute)> {
    let mut raw = path.strip_prefix('/')?.split('/');
    let version = match raw.next()? {
        "v1.0" => Version::V1,
        "beta" => Version::Beta,
        _ => return None,
    };
    // Every route has at most four segments after the version: collected
    // into an array, each borrowed unless it has a percent-escape.
    let mut decoded: [Cow<'_, str>; 4] = Default::default();
    let mut count = 0;
    for segment in raw {
        let slot = decoded.get_mut(count)?;
        *slot = if segment.contains('%') {
            percent_decode_str(segment).decode_utf8_lossy()
        } else {
            Cow::Borrowed(segment)
        };
        count += 1;
    }
    let segments: [&str; 4] = [&decoded[0], &decoded[1], &decoded[2], &decoded[3]];
    let segments = &segments[..count];
    let is = |s: &str, name: &str| s.eq_ignore_ascii_case(name);
    let route = match segments {
        [me, presence] if is(me, "me") && is(presence, "presence") => {
            GraphRoute::GetPresence(Target::Me)
        }
        [me, presence, action] if is(me, "me") && is(presence, "presence") => {
            GraphRoute::Act(Target::Me, Action::parse(action)?)
        }
        [users, id, presence] if is(users, "users") && is(presence, "presence") => {
            GraphRoute::GetPresence(Target::User(id.to_string()))
        }
        [users, id, presence, action] if is(users, "users") && is(presence, "presence") => {
            GraphRoute::Act(Target::User(id.to_string()), Action::parse(action)?)
        }
        [comms, presences, id] if is(comms, "communications") && is(presences, "presences") => {
            GraphRoute::GetPresence(Target::Communications(id.to_string()))
        }
        [comms, presences, id, action]
            if is(comms, "communications") && is(presences, "presences") =>
        {
            GraphRoute::Act(
                Target::Communications(id.to_string()),
                Action::parse(action)?,
            )
        }
        [comms, action]
            if is(comms, "communications")
                && is(strip_namespace(action), "getPresencesByUserId") =>
        {
            GraphRoute::GetPresencesByUserId
        }
        _ => return None,
    };
    Some((version, route))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expected: Option<GraphRoute>) {
        assert_eq!(parse(path).map(|(_, r)| r), expected, "{path}");
    }

    const ID: &str = "fa8bf3dc-eca7-46b7-bad1-db199b62afc3";

    #[test]
    fn every_documented_path_form_is_recognised() {
        let user = || Target::User(ID.to_string());
        let comms = || Target::Communications(ID.to_string());
        check(
            "/v1.0/me/presence",
            Some(GraphRoute::GetPresence(Target::Me)),
        );
        check(
            &format!("/v1.0/users/{ID}/presence"),
            Some(GraphRoute::GetPresence(user())),
        );
        check(
            &format!("/beta/communications/presences/{ID}"),
            Some(GraphRoute::GetPresence(comms())),
        );
        check(
            "/v1.0/communications/getPresencesByUserId",
            Some(GraphRoute::GetPresencesByUserId),
        );
        check(
            "/v1.0/communications/microsoft.graph.getPresencesByUserId",
            Some(GraphRoute::GetPresencesByUserId),
        );
        for (action, name) in Action::ALL {
            check(
                &format!("/v1.0/me/presence/{name}"),
                Some(GraphRoute::Act(Target::Me, action)),
            );
            check(
                &format!("/v1.0/users/{ID}/presence/microsoft.graph.{name}"),
                Some(GraphRoute::Act(user(), action)),
            );
            check(
                &format!("/beta/communications/presences/{ID}/{name}"),
                Some(GraphRoute::Act(comms(), action)),
            );
        }
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        check(
            "/v1.0/users/adele.vance%40contoso.com/presence",
            Some(GraphRoute::GetPresence(Target::User(
                "adele.vance@contoso.com".into(),
            ))),
        );
    }

    #[test]
    fn unknown_paths_are_not_routes() {
        for path in [
            "/v2.0/me/presence",
            "/v1.0/me/presence/",
            "/v1.0/me/presence/fly",
            "/v1.0/users/x/presence/setPresence/more",
            "/v1.0",
            "/v1.0/",
            "/v1.0/communications/presences",
        ] {
            check(path, None);
        }
    }
}
