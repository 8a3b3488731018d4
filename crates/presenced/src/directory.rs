//! The directory file: tenants and their users, as JSON.
//!
//! `{"tenants":[{"id":"<guid>","displayName":"...","users":[{"id":"<guid>",
//! "userPrincipalName":"...","displayName":"..."}]}]}`. Loading it again
//! updates and adds; users missing from it are kept. Unknown fields are
//! ignored, so files written for later versions still load.

use std::path::Path;

use anyhow::{Context, bail};
use presenced_domain::Guid;
use presenced_store::{DirectoryUser, Tenant, TenantRecord};
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
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserEntry {
    id: String,
    #[serde(default)]
    user_principal_name: String,
    #[serde(default)]
    display_name: String,
}

/// Reads and validates a directory file.
pub fn read(path: &Path) -> anyhow::Result<Vec<TenantRecord>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read directory file {}", path.display()))?;
    parse(&text).with_context(|| format!("directory file {} is not valid", path.display()))
}

/// Parses directory JSON; every id must be a GUID.
pub fn parse(text: &str) -> anyhow::Result<Vec<TenantRecord>> {
    let file: DirectoryFile = serde_json::from_str(text)?;
    let mut records = Vec::with_capacity(file.tenants.len());
    for tenant in file.tenants {
        let Some(tenant_id) = Guid::parse(&tenant.id) else {
            bail!("tenant id '{}' is not a GUID", tenant.id);
        };
        let mut users = Vec::with_capacity(tenant.users.len());
        for user in tenant.users {
            let Some(id) = Guid::parse(&user.id) else {
                bail!("user id '{}' in tenant {tenant_id} is not a GUID", user.id);
            };
            users.push(DirectoryUser {
                id,
                user_principal_name: user.user_principal_name,
                display_name: user.display_name,
            });
        }
        records.push(TenantRecord {
            tenant: Tenant {
                id: tenant_id,
                display_name: tenant.display_name,
            },
            users,
        });
    }
    Ok(records)
}

/// A demo tenant with a handful of users, for a first start with no directory.
pub fn demo() -> TenantRecord {
    let guid = || Guid::from_u128(uuid::Uuid::new_v4().as_u128());
    let users = [
        ("adele.vance", "Adele Vance"),
        ("alex.wilber", "Alex Wilber"),
        ("megan.bowen", "Megan Bowen"),
        ("lee.gu", "Lee Gu"),
        ("nestor.wilke", "Nestor Wilke"),
    ]
    .into_iter()
    .map(|(name, display)| DirectoryUser {
        id: guid(),
        user_principal_name: format!("{name}@contoso.example"),
        display_name: display.to_string(),
    })
    .collect();
    TenantRecord {
        tenant: Tenant {
            id: guid(),
            display_name: "Contoso (demo)".to_string(),
        },
        users,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_file_parses_with_unknown_fields_ignored() {
        let records = parse(
            r#"{"tenants":[{"id":"11111111-1111-1111-1111-111111111111","displayName":"T",
                "applications":[],
                "users":[{"id":"22222222-2222-2222-2222-222222222222","userPrincipalName":"a@t","displayName":"A","password":"x"}]}]}"#,
        )
        .unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].users[0].user_principal_name, "a@t");
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
