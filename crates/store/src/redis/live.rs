//! Changes announced between nodes, for their live streams.
//!
//! One channel, `P{g}:live`, plain `PUBLISH`: Redis Cluster forwards a
//! plain publication to every node of the cluster, so each presenced node
//! needs one subscription on any one of them. A message is the announcing
//! node's id, a NUL, the user (tenant ‖ user, 32 bytes) and the instant
//! (`codec` encoding). Each node subscribes on a connection of its own
//! (RESP3 push messages: redis-rs resubscribes by itself when that
//! connection is re-established) and skips its own announcements.
//!
//! Pub/sub is fire and forget: a message published while a node's
//! subscription is down is not seen by that node (its clients keep their
//! stream; they read presence afresh when they reconnect, as after a gap).

use std::time::Duration;

use ::redis::cluster::ClusterClientBuilder;
use ::redis::{PushInfo, PushKind, Value};
use jiff::Timestamp;
use tokio::sync::mpsc;

use super::{RedisStore, guid, io, user_bytes};
use crate::{StoreError, UserKey, codec};

/// How many announcements may wait for the live stream before more are
/// dropped (with a warning).
const BACKLOG: usize = 65_536;

impl RedisStore {
    fn live_channel(&self) -> Vec<u8> {
        self.global_key("live")
    }

    /// Publishes one change to the other nodes.
    pub(super) async fn announce_now(&self, key: UserKey, at: Timestamp) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut message = Vec::with_capacity(self.leases.node.len() + 1 + 32 + 16);
        message.extend_from_slice(self.leases.node.as_bytes());
        message.push(0);
        message.extend_from_slice(&user_bytes(key));
        message.extend_from_slice(&codec::encode_timestamp(at));
        let _: i64 = ::redis::cmd("PUBLISH")
            .arg(self.live_channel())
            .arg(message)
            .query_async(&mut conn)
            .await
            .map_err(io)?;
        Ok(())
    }

    /// Subscribes to the other nodes' announcements.
    pub(super) async fn watch_now(
        &self,
    ) -> Result<mpsc::Receiver<(UserKey, Timestamp)>, StoreError> {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let watcher = tx.clone();
        let own = self.leases.node.clone().into_bytes();
        let channel = self.live_channel();
        let expected = channel.clone();
        let sender = move |info: PushInfo| -> Result<(), ()> {
            if info.kind == PushKind::Disconnection {
                tracing::warn!("live-stream subscription lost; resubscribing");
                return Ok(());
            }
            if info.kind != PushKind::Message {
                return Ok(());
            }
            let [Value::BulkString(name), Value::BulkString(payload)] = info.data.as_slice() else {
                return Ok(());
            };
            if *name != expected {
                return Ok(());
            }
            if let Some(change) = parse(payload, &own)
                && tx.try_send(change).is_err()
                && !tx.is_closed()
            {
                tracing::warn!("live-stream announcements arrive faster than handled: one dropped");
            }
            if tx.is_closed() { Err(()) } else { Ok(()) }
        };
        let mut builder = ClusterClientBuilder::new(self.config.urls.clone())
            .connection_timeout(self.config.connect_timeout)
            .response_timeout(Duration::from_secs(5))
            .use_protocol(::redis::ProtocolVersion::RESP3)
            .push_sender(sender);
        if let Some(password) = &self.config.password {
            builder = builder.password(password.clone());
        }
        let client = builder.build().map_err(io)?;
        let mut conn =
            tokio::time::timeout(self.config.connect_timeout, client.get_async_connection())
                .await
                .map_err(|_| {
                    StoreError::Io("redis: no answer for the live-stream subscription".to_owned())
                })?
                .map_err(io)?;
        conn.subscribe(&channel).await.map_err(io)?;
        // The subscription lives as long as someone listens.
        tokio::spawn(async move {
            watcher.closed().await;
            drop(conn);
        });
        Ok(rx)
    }
}

/// A message of another node: (user, instant); `None` for this node's own
/// or an unreadable one.
fn parse(payload: &[u8], own: &[u8]) -> Option<(UserKey, Timestamp)> {
    let split = payload.iter().position(|&b| b == 0)?;
    if &payload[..split] == own {
        return None;
    }
    let rest = &payload[split + 1..];
    if rest.len() < 32 {
        return None;
    }
    let key = UserKey {
        tenant: guid(&rest[..16]).ok()?,
        user: guid(&rest[16..32]).ok()?,
    };
    let at = codec::decode_timestamp(&rest[32..]).ok()?;
    Some((key, at))
}
