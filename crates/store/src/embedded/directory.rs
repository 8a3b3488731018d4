//! The directory half of the embedded store: loading tenants and users
//! (an upsert: users not named are kept) and listing them.
//!
//! Directory entries live in the same residents as presence records (see
//! [`super::memory`]); replacing one keeps the other.

use std::collections::{BTreeMap, HashMap};
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use presenced_domain::Guid;

use super::memory::{self, KeyBytes, Resident};
use super::tables::{user_key_bytes, user_key_from_bytes};
use super::writer::Op;
use super::{EmbeddedStore, Step};
use crate::{DirectoryChange, DirectoryUser, StoreError, TenantRecord, UserKey, codec};

impl EmbeddedStore {
    pub(super) fn load_directory_in_memory(
        &self,
        records: Vec<TenantRecord>,
    ) -> Result<Step<DirectoryChange>, StoreError> {
        let _admitted = self.shared.admit()?;
        let _serial = self
            .directory_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Later mentions of the same tenant or user win.
        let mut tenants = BTreeMap::new();
        let mut users: HashMap<KeyBytes, Vec<u8>> = HashMap::new();
        for record in records {
            let tenant = record.tenant.id;
            for user in &record.users {
                let key = user_key_bytes(UserKey {
                    tenant,
                    user: user.id,
                });
                users.insert(key, codec::encode_directory_user(user));
            }
            tenants.insert(tenant, record.tenant);
        }

        let mut change = DirectoryChange::default();
        {
            let known = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
            tenants.retain(|id, tenant| match known.get(id) {
                None => {
                    change.tenants_added += 1;
                    true
                }
                Some(known) => known != tenant,
            });
        }
        users.retain(|key, record| {
            let residents = memory::read(self.memory.shard(key));
            match residents.get(key).and_then(Resident::directory) {
                None => {
                    change.users_added += 1;
                    true
                }
                Some(known) if known != record.as_slice() => {
                    change.users_updated += 1;
                    true
                }
                Some(_) => false,
            }
        });

        // In key order: a B-tree takes sorted inserts much faster.
        let mut users: Vec<(KeyBytes, Vec<u8>)> = users.into_iter().collect();
        users.sort_unstable_by_key(|(key, _)| *key);
        let op = if tenants.is_empty() && users.is_empty() {
            Op::Barrier
        } else {
            Op::Directory {
                tenants: tenants
                    .iter()
                    .map(|(id, tenant)| (id.to_bytes(), codec::encode_tenant(tenant)))
                    .collect(),
                users: users.clone(),
            }
        };
        let pending = self.send(op)?;
        self.directory_users
            .fetch_add(change.users_added as u64, Ordering::Relaxed);
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(tenants);
        for (key, record) in users {
            // Under the shard lock, so a concurrent apply's facts are kept.
            let mut residents = memory::write(self.memory.shard(&key));
            let facts = residents.get(&key).and_then(Resident::facts);
            let resident = Resident::new(&key, Some(&record), facts);
            residents.replace(resident);
        }
        Ok(Step::Wait(change, pending))
    }

    /// Removes a user from the directory; their presence record is kept
    /// (nothing can address it any more). `false`: there was no such user.
    pub(super) fn remove_user_in_memory(&self, key: UserKey) -> Result<Step<bool>, StoreError> {
        let _admitted = self.shared.admit()?;
        let _serial = self
            .directory_writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = user_key_bytes(key);
        let mut residents = memory::write(self.memory.shard(&key));
        let Some(resident) = residents.get(&key) else {
            return Ok(Step::Done(false));
        };
        if resident.directory().is_none() {
            return Ok(Step::Done(false));
        }
        // Queued under the shard lock, like every write to this user.
        let pending = self.send(Op::RemoveUser(key))?;
        self.directory_users.fetch_sub(1, Ordering::Relaxed);
        let facts = resident.facts().map(<[u8]>::to_vec);
        residents.replace(Resident::new(&key, None, facts.as_deref()));
        Ok(Step::Wait(true, pending))
    }

    pub(super) fn directory_now(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let mut by_tenant: BTreeMap<Guid, TenantRecord> = self
            .tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, tenant)| {
                (
                    *id,
                    TenantRecord {
                        tenant: tenant.clone(),
                        users: Vec::new(),
                    },
                )
            })
            .collect();
        for shard in self.memory.shards() {
            for resident in memory::read(shard).iter() {
                let Some(record) = resident.directory() else {
                    continue;
                };
                let key = user_key_from_bytes(resident.key());
                let user = codec::decode_directory_user(key.user, record)?;
                // Every user's tenant is written with it; a missing one is corrupt.
                let tenant = by_tenant.get_mut(&key.tenant).ok_or_else(|| {
                    StoreError::Corrupt(format!("user {} has no tenant {}", key.user, key.tenant))
                })?;
                tenant.users.push(user);
            }
        }
        let mut records: Vec<TenantRecord> = by_tenant.into_values().collect();
        for record in &mut records {
            record.users.sort_by_key(|user| user.id);
        }
        Ok(records)
    }

    /// One tenant's users, by id, decoding only theirs.
    pub(super) fn tenant_users_now(&self, tenant: Guid) -> Result<Vec<DirectoryUser>, StoreError> {
        let mut users = Vec::new();
        for shard in self.memory.shards() {
            for resident in memory::read(shard).iter() {
                let Some(record) = resident.directory() else {
                    continue;
                };
                let key = user_key_from_bytes(resident.key());
                if key.tenant == tenant {
                    users.push(codec::decode_directory_user(key.user, record)?);
                }
            }
        }
        users.sort_by_key(|user| user.id);
        Ok(users)
    }
}
