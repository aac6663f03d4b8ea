//! [`KvStore`]: small persisted maps (command-id dedup, LoRa sessions) kept in the queue's
//! database so one `flush` makes queue and state durable together, and so that nothing
//! outside `buffer` ever touches sled.

use super::sled_queue::BufferError;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Tree-name prefix that keeps user stores apart from the queue's own trees.
pub(crate) const TREE_PREFIX: &str = "kv:";
/// Longest store name accepted by [`super::Queue::kv`].
pub const MAX_KV_NAME: usize = 64;

/// A named byte-key/byte-value map in the queue's database. Cheap to clone. Writes become
/// durable with the next [`super::Queue::flush`].
#[derive(Clone)]
pub struct KvStore {
    pub(crate) name: Arc<str>,
    pub(crate) tree: sled::Tree,
    pub(crate) path: Arc<PathBuf>,
    pub(crate) dirty: Arc<AtomicBool>,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl KvStore {
    fn err(&self, source: sled::Error) -> BufferError {
        BufferError::Sled {
            path: self.path.as_ref().clone(),
            source,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        Ok(self
            .tree
            .get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.to_vec()))
    }

    /// Inserts `value` under `key`; returns the previous value.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        let old = self.tree.insert(key, value).map_err(|e| self.err(e))?;
        self.dirty.store(true, Ordering::Release);
        Ok(old.map(|v| v.to_vec()))
    }

    /// Removes `key`; returns the previous value.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        let old = self.tree.remove(key).map_err(|e| self.err(e))?;
        if old.is_some() {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(old.map(|v| v.to_vec()))
    }

    /// Entries whose key starts with `prefix`, in key order (`b""` for all of them).
    pub fn iter_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), BufferError>> + use<> {
        let path = Arc::clone(&self.path);
        self.tree.scan_prefix(prefix).map(move |item| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|source| BufferError::Sled {
                    path: path.as_ref().clone(),
                    source,
                })
        })
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KV_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
