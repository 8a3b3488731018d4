//! `presenced export` and `presenced import`: a deployment's directory,
//! presence facts and subscriptions as JSON lines, to move it between
//! stores or keep it as a backup.
//!
//! The first line is a header, `{"format":"presenced-export","version":1}`;
//! then one object per line, by `kind`:
//! - `tenant`: `id`, `displayName` and its `users` (`id`,
//!   `userPrincipalName`, `displayName`, `profile`).
//! - `facts`: `tenant`, `user`, `record` — the user's stored record as the
//!   store encodes it (`presenced_store::codec`), base64: sessions,
//!   preferences, status message, locations and the next deadline, exactly.
//! - `subscription`: `id`, `tenant`, `users` and `body` (the notification
//!   layer's encoding, base64).
//!
//! Import refuses another format or version, and a store that already has a
//! directory unless told `--force` (then it merges: tenants and users added
//! or updated, facts and subscriptions of the same ids replaced). It reads
//! and checks the whole input before it writes anything. Both stores take
//! it: each writes a record as exported and files its deadline again
//! (`restore_record`).

use std::io::{BufRead, Write};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use presenced_domain::Guid;
use presenced_store::embedded::EmbeddedStore;
use presenced_store::redis::RedisStore;
use presenced_store::{
    DirectoryUser, Store, SubscriptionRecord, Tenant, TenantRecord, UserKey, UserProfile, codec,
};
use serde_json::{Value, json};

use crate::backend::OpenStore;

/// The `format` of the header line.
pub const FORMAT: &str = "presenced-export";
/// The version this build writes and reads.
pub const VERSION: u64 = 1;

/// What an export or import moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tenants: usize,
    pub users: usize,
    pub facts: usize,
    pub subscriptions: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tenants, {} users, {} presence records, {} subscriptions",
            self.tenants, self.users, self.facts, self.subscriptions
        )
    }
}

/// Writes the whole store to `out`.
pub async fn export(store: &dyn Store, out: &mut dyn Write) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    writeln!(out, "{}", json!({"format": FORMAT, "version": VERSION}))?;
    let directory = store.directory().await?;
    for record in &directory {
        writeln!(out, "{}", tenant_json(record))?;
        counts.tenants += 1;
        counts.users += record.users.len();
    }
    for record in &directory {
        let tenant = record.tenant.id;
        let users: Vec<Guid> = record.users.iter().map(|u| u.id).collect();
        for chunk in users.chunks(500) {
            let facts = store.facts_many(tenant, chunk.to_vec()).await?;
            for (user, facts) in chunk.iter().zip(facts) {
                let Some(facts) = facts else { continue };
                // The deadline is filed again by the importing store.
                let bytes = codec::encode_user_record(&facts, None);
                writeln!(
                    out,
                    "{}",
                    json!({"kind": "facts", "tenant": tenant.to_string(), "user": user.to_string(),
                           "record": STANDARD.encode(bytes)})
                )?;
                counts.facts += 1;
            }
        }
    }
    for subscription in store.subscriptions().await? {
        let users: Vec<String> = subscription.users.iter().map(Guid::to_string).collect();
        writeln!(
            out,
            "{}",
            json!({"kind": "subscription", "id": subscription.id.to_string(),
                   "tenant": subscription.tenant.to_string(), "users": users,
                   "body": STANDARD.encode(&subscription.body)})
        )?;
        counts.subscriptions += 1;
    }
    out.flush()?;
    Ok(counts)
}

/// Reads an export from `input` into the opened store.
pub async fn import(
    opened: &OpenStore,
    input: &mut dyn BufRead,
    force: bool,
    now: jiff::Timestamp,
    rules: &presenced_domain::Rules,
) -> anyhow::Result<Counts> {
    let mut lines = input.lines().enumerate();
    let header = match lines.next() {
        Some((_, line)) => line.context("reading the export")?,
        None => anyhow::bail!("the export is empty: no header line"),
    };
    let header: Value = serde_json::from_str(&header)
        .map_err(|_| anyhow::anyhow!("line 1 is not an export header (JSON)"))?;
    if header["format"] != FORMAT {
        anyhow::bail!(
            "line 1: not a presenced export (format {})",
            header["format"]
        );
    }
    if header["version"].as_u64() != Some(VERSION) {
        anyhow::bail!(
            "line 1: export format version {} is not one this presenced reads (it reads version {VERSION})",
            header["version"]
        );
    }
    // Each store writes a record as exported in its own way.
    let restore = match (&opened.redis, &opened.embedded) {
        (Some(redis), _) => Restore::Redis(redis),
        (None, Some(embedded)) => Restore::Embedded(embedded),
        (None, None) => anyhow::bail!("this store cannot take an import"),
    };
    if !force && opened.store.has_directory().await? {
        anyhow::bail!(
            "the target store already has a directory: import refuses to mix deployments; pass --force to merge into it"
        );
    }
    // Read and check everything before writing anything.
    let mut tenants = Vec::new();
    let mut facts = Vec::new();
    let mut subscriptions = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        let line = line.context("reading the export")?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("line {number}: not JSON: {e}"))?;
        let at = |what: &str| format!("line {number}: {what}");
        match value["kind"].as_str() {
            Some("tenant") => tenants.push(tenant_from(&value).with_context(|| at("tenant"))?),
            Some("facts") => {
                let key = UserKey {
                    tenant: guid(&value["tenant"]).with_context(|| at("tenant"))?,
                    user: guid(&value["user"]).with_context(|| at("user"))?,
                };
                let bytes = bytes(&value["record"]).with_context(|| at("record"))?;
                let (record, _) = codec::decode_user_record(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at("record")))?;
                // Filed under the deadline the rules give it now.
                let deadline = presenced_domain::next_change(&record, now, rules);
                facts.push((key, codec::encode_user_record(&record, deadline)));
            }
            Some("subscription") => {
                let users = value["users"]
                    .as_array()
                    .ok_or_else(|| anyhow::anyhow!("{}", at("users must be an array")))?
                    .iter()
                    .map(guid)
                    .collect::<anyhow::Result<Vec<_>>>()
                    .with_context(|| at("users"))?;
                subscriptions.push(SubscriptionRecord {
                    id: guid(&value["id"]).with_context(|| at("id"))?,
                    tenant: guid(&value["tenant"]).with_context(|| at("tenant"))?,
                    users,
                    body: bytes(&value["body"]).with_context(|| at("body"))?,
                });
            }
            other => anyhow::bail!("line {number}: unknown kind {other:?}"),
        }
    }
    let counts = Counts {
        tenants: tenants.len(),
        users: tenants.iter().map(|t: &TenantRecord| t.users.len()).sum(),
        facts: facts.len(),
        subscriptions: subscriptions.len(),
    };
    // A store that fails part-way says how far the import got.
    let mut done = Counts::default();
    let so_far = |done: &Counts| format!("the import stopped after writing {done}");
    opened
        .store
        .load_directory(tenants)
        .await
        .with_context(|| so_far(&done))?;
    (done.tenants, done.users) = (counts.tenants, counts.users);
    for (key, record) in facts {
        let restored = match restore {
            Restore::Redis(redis) => redis.restore_record(key, &record).await,
            Restore::Embedded(embedded) => embedded.restore_record(key, &record).await,
        };
        restored.with_context(|| so_far(&done))?;
        done.facts += 1;
    }
    for subscription in subscriptions {
        opened
            .store
            .put_subscription(subscription)
            .await
            .with_context(|| so_far(&done))?;
        done.subscriptions += 1;
    }
    Ok(done)
}

/// The store an import writes records into.
#[derive(Clone, Copy)]
enum Restore<'a> {
    Redis(&'a RedisStore),
    Embedded(&'a EmbeddedStore),
}

fn guid(value: &Value) -> anyhow::Result<Guid> {
    value
        .as_str()
        .and_then(Guid::parse)
        .ok_or_else(|| anyhow::anyhow!("{value} is not a GUID"))
}

fn bytes(value: &Value) -> anyhow::Result<Vec<u8>> {
    let text = value
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("expected base64 text"))?;
    STANDARD
        .decode(text)
        .map_err(|e| anyhow::anyhow!("not base64: {e}"))
}

fn tenant_json(record: &TenantRecord) -> Value {
    let users: Vec<Value> = record
        .users
        .iter()
        .map(|u| {
            let p = &u.profile;
            json!({
                "id": u.id.to_string(),
                "userPrincipalName": u.user_principal_name,
                "displayName": u.display_name,
                "profile": {
                    "mail": p.mail, "givenName": p.given_name, "surname": p.surname,
                    "jobTitle": p.job_title, "mobilePhone": p.mobile_phone,
                    "officeLocation": p.office_location,
                    "preferredLanguage": p.preferred_language,
                    "businessPhones": p.business_phones,
                },
            })
        })
        .collect();
    json!({"kind": "tenant", "id": record.tenant.id.to_string(),
           "displayName": record.tenant.display_name, "users": users})
}

fn tenant_from(value: &Value) -> anyhow::Result<TenantRecord> {
    let text = |v: &Value, name: &str| -> anyhow::Result<String> {
        v[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("{name} missing"))
    };
    let optional = |v: &Value, name: &str| v[name].as_str().map(str::to_owned);
    let users = value["users"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("users must be an array"))?
        .iter()
        .map(|u| {
            let p = &u["profile"];
            Ok(DirectoryUser {
                id: guid(&u["id"])?,
                user_principal_name: text(u, "userPrincipalName")?,
                display_name: text(u, "displayName")?,
                profile: UserProfile {
                    mail: optional(p, "mail"),
                    given_name: optional(p, "givenName"),
                    surname: optional(p, "surname"),
                    job_title: optional(p, "jobTitle"),
                    mobile_phone: optional(p, "mobilePhone"),
                    office_location: optional(p, "officeLocation"),
                    preferred_language: optional(p, "preferredLanguage"),
                    business_phones: p["businessPhones"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                },
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(TenantRecord {
        tenant: Tenant {
            id: guid(&value["id"])?,
            display_name: text(value, "displayName")?,
        },
        users,
    })
}
