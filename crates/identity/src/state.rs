//! Where the built-in identity provider keeps what must outlive a request:
//! its registrations and refresh tokens.
//!
//! The provider reads and writes them as bytes through a [`StateCell`], and
//! does not know where the bytes live: one node keeps them in files of its
//! data directory ([`FileCell`]); several nodes keep them in a store they
//! share (the server supplies that cell), so that a refresh token issued by
//! one node is redeemed on another.

use std::path::PathBuf;

use crate::IdentityError;

/// Attempts of one read-modify-write cycle against other writers.
pub const MAX_ATTEMPTS: usize = 16;

/// One value of the identity provider's state, read and written whole.
///
/// Calls block (a file, or a round trip to a shared store): call them off
/// the async executor (`spawn_blocking`).
pub trait StateCell: Send + Sync + std::fmt::Debug {
    /// Where the value lives, for messages.
    fn location(&self) -> String;

    /// The bytes (`None` before the first write) and the version they are at.
    fn read(&self) -> Result<(Option<Vec<u8>>, u64), IdentityError>;

    /// Replaces the bytes if the value is still at `version`; `Ok(false)`
    /// when another writer came first (read again and redo the change).
    fn write(&self, version: u64, bytes: &[u8]) -> Result<bool, IdentityError>;
}

/// A file of the data directory, written durably (a synced temporary file
/// renamed over the old one, mode 0600). One process owns it: the version is
/// always 0 and a write always succeeds.
#[derive(Debug, Clone)]
pub struct FileCell {
    path: PathBuf,
}

impl FileCell {
    pub fn new(path: PathBuf) -> FileCell {
        FileCell { path }
    }
}

impl StateCell for FileCell {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self) -> Result<(Option<Vec<u8>>, u64), IdentityError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok((Some(bytes), 0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((None, 0)),
            Err(source) => Err(IdentityError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn write(&self, _version: u64, bytes: &[u8]) -> Result<bool, IdentityError> {
        crate::registry::write_private_durably(&self.path, bytes)?;
        Ok(true)
    }
}
