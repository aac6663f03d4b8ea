//! [`KvStore`]: small persisted maps (command-id dedup, LoRa sessions) kept in the queue's
//! database so one `flush` makes queue and state durable together, and so that nothing
//! outside `buffer` ever touches sled.
//!
//! A store resolves its tree on every call (a map lookup in sled), so it keeps working
//! after recovery has reopened the database. While the database refuses writes, writes
//! are kept in memory (and read back from there) and applied when the queue recovers.

use super::Queue;
use super::faults::FaultPoint;
use super::sled_queue::{BufferError, lock};
use std::sync::Arc;

/// Tree-name prefix that keeps user stores apart from the queue's own trees.
pub(crate) const TREE_PREFIX: &str = "kv:";
/// Longest store name accepted by [`super::Queue::kv`].
pub const MAX_KV_NAME: usize = 64;

/// A named byte-key/byte-value map in the queue's database. Cheap to clone. Writes become
/// durable with the next [`super::Queue::flush`].
#[derive(Clone)]
pub struct KvStore {
    pub(crate) name: Arc<str>,
    pub(crate) tree_name: Arc<str>,
    pub(crate) queue: Queue,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("name", &self.name)
            .field("path", &self.queue.path())
            .finish_non_exhaustive()
    }
}

impl KvStore {
    fn with_tree<T>(
        &self,
        f: impl FnOnce(&sled::Tree) -> Result<T, sled::Error>,
    ) -> Result<T, BufferError> {
        let store = self.queue.store();
        let st = store.as_ref().ok_or_else(|| self.queue.closed())?;
        let tree = st
            .db
            .open_tree(self.tree_name.as_bytes())
            .map_err(|e| self.queue.sled_err(e))?;
        f(&tree).map_err(|e| self.queue.sled_err(e))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        if let Some(v) = lock(&self.queue.inner.held).kv_pending(&self.name, key) {
            return Ok(v);
        }
        self.with_tree(|t| t.get(key))
            .map(|v| v.map(|v| v.to_vec()))
    }

    fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<Option<Vec<u8>>, BufferError> {
        // While degraded the database may be closed: the previous value is then unknown.
        let old = match self.get(key) {
            Err(_) if self.queue.inner.health.is_degraded() => None,
            other => other?,
        };
        let res = if self.queue.inner.health.is_degraded() {
            Err(self.queue.closed())
        } else {
            self.queue.check(FaultPoint::Write).and_then(|()| {
                self.with_tree(|t| match value {
                    Some(v) => t.insert(key, v).map(drop),
                    None => t.remove(key).map(drop),
                })
            })
        };
        match res {
            Ok(()) => {
                lock(&self.queue.inner.unflushed)
                    .kv
                    .insert((self.name.clone(), key.to_vec()));
                lock(&self.queue.inner.held).forget_kv(&self.name, key);
                self.queue.mark_dirty();
            }
            Err(e) => {
                if !matches!(e, BufferError::Closed { .. }) {
                    self.queue.degrade(&e);
                }
                lock(&self.queue.inner.held).set_kv(&self.name, key, value);
            }
        }
        Ok(old)
    }

    /// Inserts `value` under `key`; returns the previous value.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        self.write(key, Some(value))
    }

    /// Removes `key`; returns the previous value.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        match self.get(key) {
            Ok(None) => Ok(None),
            Ok(Some(_)) => self.write(key, None),
            Err(_) if self.queue.inner.health.is_degraded() => self.write(key, None),
            Err(e) => Err(e),
        }
    }

    /// Entries whose key starts with `prefix`, in key order (`b""` for all of them), as
    /// stored (writes held in memory during a fault are not merged in).
    pub fn iter_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), BufferError>> + use<> {
        type Entry = Result<(Vec<u8>, Vec<u8>), BufferError>;
        let items: Vec<Entry> = match self.with_tree(|t| {
            t.scan_prefix(prefix)
                .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<Vec<_>, sled::Error>>()
        }) {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        items.into_iter()
    }

    pub fn len(&self) -> usize {
        self.with_tree(|t| Ok(t.len())).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Queue {
    /// A named persisted map in the same database (see [`KvStore`]).
    pub fn kv(&self, name: &str) -> Result<KvStore, BufferError> {
        if !valid_name(name) {
            return Err(BufferError::InvalidKvName {
                path: self.inner.dir.as_ref().clone(),
                name: name.to_owned(),
            });
        }
        Ok(KvStore {
            name: name.into(),
            tree_name: format!("{}{name}", TREE_PREFIX).into(),
            queue: self.clone(),
        })
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KV_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
