//! The directory file: tenants and their users, as JSON.
//!
//! `{"tenants":[{"id":"<guid>","displayName":"...","users":[{"id":"<guid>",
//! "userPrincipalName":"...","displayName":"...","password":"...",
//! "mail":"...","givenName":"...","surname":"...","jobTitle":"...",
//! "mobilePhone":"...","officeLocation":"...","preferredLanguage":"...",
//! "businessPhones":["..."]}],
//! "applications":[{"appId":"<guid>","displayName":"...","secrets":["..."],
//! "roles":["Presence.ReadWrite.All"],"scopes":["Presence.ReadWrite"],
//! "redirectUris":["https://app.example/auth","http://localhost:3000"]}]}]}`.
//! Redirect URIs are checked on load: `https://`, or `http://` on a loopback host.
//! Loading it again updates and adds; users missing from it are kept.
//! Unknown fields are ignored, so files written for later versions still
//! load. Users and tenants go to the store; applications and passwords to
//! the built-in identity provider's registry.

use std::path::Path;

use anyhow::{Context, bail};
use presenced_domain::Guid;
use presenced_identity::{NewApplication, check_redirect_uri};
use presenced_store::{DirectoryUser, Tenant, TenantRecord, UserProfile};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct DirectoryFile {
    tenants: Vec<TenantEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantEntry {
    id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    users: Vec<UserEntry>,
    #[serde(default)]
    applications: Vec<ApplicationEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationEntry {
    app_id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserEntry {
    id: String,
    #[serde(default)]
    user_principal_name: String,
    #[serde(default)]
    display_name: String,
    password: Option<String>,
    mail: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    job_title: Option<String>,
    mobile_phone: Option<String>,
    office_location: Option<String>,
    preferred_language: Option<String>,
    #[serde(default)]
    business_phones: Vec<String>,
}

/// One tenant of a directory file: its directory record and its
/// registrations with the built-in identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDeclaration {
    pub record: TenantRecord,
    pub applications: Vec<NewApplication>,
    /// `(user, userPrincipalName, password)` of users who have a password.
    pub passwords: Vec<(Guid, String, String)>,
}

/// Reads and validates a directory file.
pub fn read(path: &Path) -> anyhow::Result<Vec<TenantDeclaration>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read directory file {}", path.display()))?;
    parse(&text).with_context(|| format!("directory file {} is not valid", path.display()))
}

/// Parses directory JSON; every id must be a GUID.
pub fn parse(text: &str) -> anyhow::Result<Vec<TenantDeclaration>> {
    let file: DirectoryFile = serde_json::from_str(text)?;
    let mut declarations = Vec::with_capacity(file.tenants.len());
    for tenant in file.tenants {
        let Some(tenant_id) = Guid::parse(&tenant.id) else {
            bail!("tenant id '{}' is not a GUID", tenant.id);
        };
        let mut users = Vec::with_capacity(tenant.users.len());
        let mut passwords = Vec::new();
        for user in tenant.users {
            let Some(id) = Guid::parse(&user.id) else {
                bail!("user id '{}' in tenant {tenant_id} is not a GUID", user.id);
            };
            if let Some(password) = user.password.filter(|p| !p.is_empty()) {
                if user.user_principal_name.is_empty() {
                    bail!(
                        "user {id} in tenant {tenant_id} has a password but no userPrincipalName to sign in with"
                    );
                }
                passwords.push((id, user.user_principal_name.clone(), password));
            }
            let text = |t: Option<String>| t.filter(|t| !t.is_empty());
            users.push(DirectoryUser {
                id,
                profile: UserProfile {
                    mail: text(user.mail),
                    given_name: text(user.given_name),
                    surname: text(user.surname),
                    job_title: text(user.job_title),
                    mobile_phone: text(user.mobile_phone),
                    office_location: text(user.office_location),
                    preferred_language: text(user.preferred_language),
                    business_phones: user.business_phones,
                },
                user_principal_name: user.user_principal_name,
                display_name: user.display_name,
            });
        }
        let mut applications = Vec::with_capacity(tenant.applications.len());
        for app in tenant.applications {
            let Some(app_id) = Guid::parse(&app.app_id) else {
                bail!(
                    "application id '{}' in tenant {tenant_id} is not a GUID",
                    app.app_id
                );
            };
            for uri in &app.redirect_uris {
                if let Err(reason) = check_redirect_uri(uri) {
                    bail!("application {app_id} in tenant {tenant_id}: {reason}");
                }
            }
            applications.push(NewApplication {
                app: app_id,
                display_name: app.display_name,
                secrets: app.secrets,
                roles: app.roles,
                scopes: app.scopes,
                redirect_uris: app.redirect_uris,
            });
        }
        declarations.push(TenantDeclaration {
            record: TenantRecord {
                tenant: Tenant {
                    id: tenant_id,
                    display_name: tenant.display_name,
                },
                users,
            },
            applications,
            passwords,
        });
    }
    Ok(declarations)
}

/// The demo tenant's application: its client id and its one secret.
pub const DEMO_APP: Guid = Guid::from_u128(0x11111111_1111_1111_1111_111111111111);

/// The demo tenant's public client (no secret) for browser and desktop apps signing users in with the
/// authorization code flow and PKCE.
pub const DEMO_SPA: Guid = Guid::from_u128(0x22222222_2222_2222_2222_222222222222);

/// Where the demo public client may be sent back to after sign-in.
pub const DEMO_SPA_REDIRECT_URIS: [&str; 3] = [
    "http://localhost:3000",
    "http://localhost:5173",
    "http://localhost",
];

/// A demo tenant with a handful of users and one application whose secret
/// is made fresh, for a first start with no directory.
pub fn demo() -> TenantDeclaration {
    let guid = || Guid::from_u128(uuid::Uuid::new_v4().as_u128());
    let users = [
        ("adele.vance", "Adele", "Vance", "Retail Manager"),
        ("alex.wilber", "Alex", "Wilber", "Marketing Assistant"),
        ("megan.bowen", "Megan", "Bowen", "Marketing Manager"),
        ("lee.gu", "Lee", "Gu", "Director"),
        ("nestor.wilke", "Nestor", "Wilke", "Director"),
    ]
    .into_iter()
    .map(|(name, given, surname, job)| DirectoryUser {
        id: guid(),
        user_principal_name: format!("{name}@contoso.example"),
        display_name: format!("{given} {surname}"),
        profile: UserProfile {
            mail: Some(format!("{name}@contoso.example")),
            given_name: Some(given.to_string()),
            surname: Some(surname.to_string()),
            job_title: Some(job.to_string()),
            preferred_language: Some("en-US".to_string()),
            ..UserProfile::default()
        },
    })
    .collect::<Vec<_>>();
    let application = NewApplication {
        app: DEMO_APP,
        display_name: "Demo app".to_string(),
        secrets: vec![uuid::Uuid::new_v4().simple().to_string()],
        roles: vec![
            "Presence.Read.All".to_string(),
            "Presence.ReadWrite.All".to_string(),
            "User.Read.All".to_string(),
        ],
        scopes: vec![
            "Presence.Read".to_string(),
            "Presence.Read.All".to_string(),
            "Presence.ReadWrite".to_string(),
            "User.Read".to_string(),
            "User.ReadBasic.All".to_string(),
        ],
        redirect_uris: Vec::new(),
    };
    let spa = NewApplication {
        app: DEMO_SPA,
        display_name: "Demo single-page app".to_string(),
        secrets: Vec::new(),
        roles: Vec::new(),
        scopes: vec![
            "Presence.Read".to_string(),
            "Presence.Read.All".to_string(),
            "Presence.ReadWrite".to_string(),
            "User.Read".to_string(),
            "User.ReadBasic.All".to_string(),
        ],
        redirect_uris: DEMO_SPA_REDIRECT_URIS.map(str::to_string).to_vec(),
    };
    let password = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let passwords = users
        .iter()
        .map(|u: &DirectoryUser| (u.id, u.user_principal_name.clone(), password.clone()))
        .collect();
    TenantDeclaration {
        record: TenantRecord {
            tenant: Tenant {
                id: guid(),
                display_name: "Contoso (demo)".to_string(),
            },
            users,
        },
        applications: vec![application, spa],
        passwords,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_file_parses_with_unknown_fields_ignored() {
        let declarations = parse(
            r#"{"tenants":[{"id":"11111111-1111-1111-1111-111111111111","displayName":"T","color":"blue",
                "applications":[{"appId":"33333333-3333-3333-3333-333333333333","secrets":["s"],"roles":["Presence.Read.All"]}],
                "users":[{"id":"22222222-2222-2222-2222-222222222222","userPrincipalName":"a@t","displayName":"A","password":"x"}]}]}"#,
        )
        .unwrap();
        assert_eq!(declarations.len(), 1);
        assert_eq!(declarations[0].record.users[0].user_principal_name, "a@t");
        assert_eq!(declarations[0].applications[0].roles, ["Presence.Read.All"]);
        assert_eq!(declarations[0].passwords[0].2, "x");
        assert_eq!(
            declarations[0].record.users[0].profile,
            UserProfile::default()
        );
    }

    #[test]
    fn a_users_optional_profile_is_read() {
        let declarations = parse(
            r#"{"tenants":[{"id":"11111111-1111-1111-1111-111111111111","users":[
                {"id":"22222222-2222-2222-2222-222222222222","userPrincipalName":"a@t","displayName":"A",
                 "mail":"a@t","givenName":"Ada","surname":"Lovelace","jobTitle":"Analyst","mobilePhone":"",
                 "officeLocation":"18/2111","preferredLanguage":"en-GB","businessPhones":["+44 20 7946 0000"]}]}]}"#,
        )
        .unwrap();
        let profile = &declarations[0].record.users[0].profile;
        assert_eq!(profile.given_name.as_deref(), Some("Ada"));
        assert_eq!(profile.office_location.as_deref(), Some("18/2111"));
        assert_eq!(profile.mobile_phone, None);
        assert_eq!(profile.business_phones, ["+44 20 7946 0000"]);
    }

    #[test]
    fn redirect_uris_are_checked_on_load() {
        let file = |uri: &str| {
            format!(
                r#"{{"tenants":[{{"id":"11111111-1111-1111-1111-111111111111","applications":[
                {{"appId":"33333333-3333-3333-3333-333333333333","redirectUris":["{uri}"]}}]}}]}}"#
            )
        };
        let ok = parse(&file("http://localhost:3000/auth")).unwrap();
        assert_eq!(
            ok[0].applications[0].redirect_uris,
            ["http://localhost:3000/auth"]
        );
        let error = parse(&file("http://app.example/auth")).unwrap_err();
        assert!(format!("{error:#}").contains("must be https"), "{error:#}");
    }

    #[test]
    fn a_non_guid_user_id_is_refused() {
        let error = parse(
            r#"{"tenants":[{"id":"11111111-1111-1111-1111-111111111111","users":[{"id":"bob"}]}]}"#,
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("'bob'"));
    }
}
