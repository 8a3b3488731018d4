//! Commands sent together: one pipeline per master.
//!
//! A bulk read asks for up to hundreds of users spread over the buckets, so
//! over the masters. Sending each command on its own puts one request per
//! command through the cluster connection's queue; many bulk reads at once
//! then swamp it. A [`Batch`] instead groups its commands by the master
//! that serves their slot (the slot map is read with `CLUSTER SLOTS` and
//! kept until an answer says it moved) and sends one pipeline per master,
//! at most [`MAX_PIPELINE`] commands each, at most [`MAX_IN_FLIGHT`]
//! pipelines of a batch at a time.
//!
//! Redis runs each command of a pipeline on its own, so a pipeline may mix
//! slots of one master. The slot map can be stale (a failover, a slot
//! moved): a command the master no longer serves answers `MOVED` (or
//! `ASK`), and such commands are sent again once the map is read afresh,
//! then, if still refused, each on its own through the cluster client,
//! which follows redirections. Every command a batch holds is idempotent
//! (reads, `HSET`, `SADD`, `ZADD`, removals), so sending one again is safe.
//! A pipeline that fails as a whole (the master out of reach after the
//! client's own retries) fails the batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use ::redis::Value;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use super::{RedisStore, io, slot_of};
use crate::StoreError;

/// Most commands in one pipeline: a larger group is split.
pub const MAX_PIPELINE: usize = 1_000;
/// Most pipelines of one batch in flight at once.
pub const MAX_IN_FLIGHT: usize = 8;
const SLOTS: usize = 16_384;

/// Commands sent together, answered in order. Every command's first
/// argument is its key (the pipeline of its master is found by it).
pub(super) struct Batch {
    cmds: Vec<(::redis::Cmd, bool)>,
}

impl Batch {
    pub(super) fn new() -> Self {
        Batch { cmds: Vec::new() }
    }

    pub(super) fn cmd(&mut self, name: &str) -> &mut Self {
        self.cmds.push((::redis::cmd(name), false));
        self
    }

    pub(super) fn arg<T: ::redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        if let Some((cmd, _)) = self.cmds.last_mut() {
            cmd.arg(arg);
        }
        self
    }

    /// Leaves the last command's answer out of the result.
    pub(super) fn ignore(&mut self) -> &mut Self {
        if let Some((_, ignored)) = self.cmds.last_mut() {
            *ignored = true;
        }
        self
    }

    /// Sends the commands (see the module docs) and collects the answers
    /// of those not ignored, in order.
    pub(super) async fn query<T: ::redis::FromRedisValue>(
        &self,
        store: &RedisStore,
        conn: &ClusterConnection,
    ) -> Result<T, StoreError> {
        let answers = self.answers(store, conn).await?;
        let values = answers
            .into_iter()
            .zip(&self.cmds)
            .filter(|(_, (_, ignored))| !ignored)
            .map(|(value, _)| value)
            .collect();
        ::redis::from_redis_value(Value::Array(values))
            .map_err(|e| StoreError::Corrupt(format!("redis: unexpected answer: {e}")))
    }

    /// Every command's answer, in order.
    async fn answers(
        &self,
        store: &RedisStore,
        conn: &ClusterConnection,
    ) -> Result<Vec<Value>, StoreError> {
        let mut answers: Vec<Option<Value>> = vec![None; self.cmds.len()];
        let mut pending: Vec<usize> = (0..self.cmds.len()).collect();
        // Two rounds of pipelines: the second with the slot map read afresh
        // when the first met a moved slot.
        for _ in 0..2 {
            if pending.is_empty() {
                break;
            }
            let owners = store.slot_owners(conn).await;
            let refused = self
                .pipelines(conn, owners.as_deref(), &pending, &mut answers)
                .await?;
            if refused.is_empty() {
                return Ok(answers.into_iter().map(Option::unwrap_or_default).collect());
            }
            store.forget_slot_owners();
            pending = refused;
        }
        // Still refused: one by one, the client following redirections.
        for i in pending {
            let mut conn = conn.clone();
            let value = self.cmds[i]
                .0
                .query_async::<Value>(&mut conn)
                .await
                .map_err(io)?;
            answers[i] = Some(value);
        }
        Ok(answers.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Sends the commands `pending` (indexes into the batch) as pipelines,
    /// one per master, and fills in their answers; returns the commands a
    /// master refused (an error answer: sent again by the caller).
    async fn pipelines(
        &self,
        conn: &ClusterConnection,
        owners: Option<&SlotOwners>,
        pending: &[usize],
        answers: &mut [Option<Value>],
    ) -> Result<Vec<usize>, StoreError> {
        // Group by master (by slot while the map is unknown).
        let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for &i in pending {
            let slot = key_slot(&self.cmds[i].0);
            let group = match owners.and_then(|owners| owners.master_of(slot)) {
                Some(master) => u32::from(master),
                None => (1 << 16) | u32::from(slot),
            };
            groups.entry(group).or_default().push(i);
        }
        let mut chunks: Vec<Vec<usize>> = Vec::new();
        for members in groups.into_values() {
            chunks.extend(members.chunks(MAX_PIPELINE).map(<[usize]>::to_vec));
        }

        let mut refused = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut chunks = chunks.into_iter();
        loop {
            while tasks.len() < MAX_IN_FLIGHT {
                let Some(members) = chunks.next() else { break };
                let mut pipe = ::redis::pipe();
                for &i in &members {
                    pipe.add_command(self.cmds[i].0.clone());
                }
                // The pipeline goes to the master of its first command's slot.
                let route = SingleNodeRoutingInfo::SpecificNode(Route::new(
                    key_slot(&self.cmds[members[0]].0),
                    SlotAddr::Master,
                ));
                let mut conn = conn.clone();
                let count = members.len();
                tasks.spawn(async move {
                    let values = conn.route_pipeline(pipe, 0, count, route).await;
                    (members, values)
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (members, values) = joined.map_err(|e| StoreError::Io(format!("redis: {e}")))?;
            let values = values.map_err(io)?;
            if values.len() != members.len() {
                return Err(StoreError::Io(format!(
                    "redis: a pipeline of {} commands got {} answers",
                    members.len(),
                    values.len()
                )));
            }
            for (i, value) in members.into_iter().zip(values) {
                if matches!(value, Value::ServerError(_)) {
                    refused.push(i);
                } else {
                    answers[i] = Some(value);
                }
            }
        }
        refused.sort_unstable();
        Ok(refused)
    }
}

/// The slot of a command's key (its first argument).
fn key_slot(cmd: &::redis::Cmd) -> u16 {
    match cmd.args_iter().nth(1) {
        Some(::redis::Arg::Simple(key)) => slot_of(key),
        _ => 0,
    }
}

/// Which master serves each slot, as `CLUSTER SLOTS` said.
pub(super) struct SlotOwners {
    /// Per slot: the master's index, or `u16::MAX` when no master serves it.
    master: Vec<u16>,
}

impl SlotOwners {
    fn master_of(&self, slot: u16) -> Option<u16> {
        self.master
            .get(usize::from(slot))
            .copied()
            .filter(|&m| m != u16::MAX)
    }

    /// Reads a `CLUSTER SLOTS` answer: `[start, end, [host, port, id, ..],
    /// replicas ..]` per range.
    fn parse(answer: &Value) -> Option<SlotOwners> {
        let Value::Array(ranges) = answer else {
            return None;
        };
        let mut master = vec![u16::MAX; SLOTS];
        let mut masters: Vec<Value> = Vec::new();
        for range in ranges {
            let Value::Array(fields) = range else {
                return None;
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return None;
            };
            // A master is known by its address (host and port).
            let address = Value::Array(node.iter().take(2).cloned().collect());
            let index = match masters.iter().position(|known| *known == address) {
                Some(index) => index,
                None => {
                    masters.push(address);
                    masters.len() - 1
                }
            };
            let index = u16::try_from(index).ok()?;
            let (start, end) = (usize::try_from(*start).ok()?, usize::try_from(*end).ok()?);
            if start > end || end >= SLOTS {
                return None;
            }
            master[start..=end].fill(index);
        }
        Some(SlotOwners { master })
    }
}

impl RedisStore {
    /// The slot map, read with `CLUSTER SLOTS` when not known; `None` when
    /// it cannot be read now (commands are then grouped by slot).
    pub(super) async fn slot_owners(&self, conn: &ClusterConnection) -> Option<Arc<SlotOwners>> {
        if let Some(known) = self
            .slot_owners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Some(known);
        }
        let mut conn = conn.clone();
        let mut command = ::redis::cmd("CLUSTER");
        command.arg("SLOTS");
        let answer = conn
            .route_command(
                command,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await
            .ok()?;
        let owners = Arc::new(SlotOwners::parse(&answer)?);
        *self
            .slot_owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&owners));
        Some(owners)
    }

    /// Drops the slot map: the next batch reads it afresh.
    pub(super) fn forget_slot_owners(&self) {
        *self
            .slot_owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn a_slot_map_groups_the_ranges_of_one_master() {
        let answer = Value::Array(vec![
            Value::Array(vec![Value::Int(0), Value::Int(99), node("10.0.0.1", 7000)]),
            Value::Array(vec![
                Value::Int(100),
                Value::Int(16_000),
                node("10.0.0.2", 7000),
                node("10.0.0.3", 7000),
            ]),
            Value::Array(vec![
                Value::Int(16_001),
                Value::Int(16_383),
                node("10.0.0.1", 7000),
            ]),
        ]);
        let owners = SlotOwners::parse(&answer).expect("a well-formed map");
        assert_eq!(owners.master_of(0), Some(0));
        assert_eq!(owners.master_of(99), Some(0));
        assert_eq!(owners.master_of(100), Some(1));
        assert_eq!(owners.master_of(16_383), Some(0));
    }

    #[test]
    fn a_malformed_slot_map_is_not_used() {
        assert!(SlotOwners::parse(&Value::Nil).is_none());
        let beyond = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(16_384),
            node("10.0.0.1", 7000),
        ])]);
        assert!(SlotOwners::parse(&beyond).is_none());
        let unserved = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(10),
            node("10.0.0.1", 7000),
        ])]);
        let owners = SlotOwners::parse(&unserved).expect("a partial map");
        assert_eq!(owners.master_of(11), None);
    }
}
