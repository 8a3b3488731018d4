//! Restoring a user's stored record as it is (`presenced import`): no
//! domain rule runs, the record and its deadline are written as exported.

use super::{MAX_ATTEMPTS, RedisStore};
use crate::{StoreError, UserKey, codec};

impl RedisStore {
    /// Writes `record` (as [`codec::encode_user_record`] makes it) as the
    /// user's stored facts, replacing any, and files its deadline; the same
    /// compare-and-set write as every other, so it is safe while nodes serve.
    pub async fn restore_record(&self, key: UserKey, record: &[u8]) -> Result<(), StoreError> {
        let deadline = codec::user_record_deadline(record)?;
        for _ in 0..MAX_ATTEMPTS {
            let (old, version) = self.read_record(key).await?;
            let old_deadline = match &old {
                Some(old) => codec::user_record_deadline(old)?,
                None => None,
            };
            let written = self
                .write_record(key, &version, record, old_deadline, deadline, None)
                .await?;
            if written.is_some() {
                return Ok(());
            }
        }
        Err(StoreError::Io(format!(
            "redis: the record kept changing during {MAX_ATTEMPTS} attempts to restore it"
        )))
    }
}
