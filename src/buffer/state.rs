//! Stored state, apart from the event log: LoRa sessions and join nonces, OCPP
//! transaction ids, command ids, pending downlinks. Each [`KvStore`] is its own sled tree,
//! written by the queue's writer with the same flush as the events.
//!
//! A write goes into memory first and is read back from there until the writer has made
//! it durable. State that cannot be read (the database never opened, or unreadable) is
//! [`BufferError::StateUnavailable`], never absent (SPEC §5): the devices that need it stay
//! offline until it can be read, and a write needs the stored value first, so nothing is
//! written over state that could not be read.

use super::BufferError;
use super::log::{KvWrite, Queue};
use std::sync::Arc;

/// Longest store name accepted by [`Queue::kv`].
pub const MAX_KV_NAME: usize = 64;

/// One stored entry: key, value.
pub type KvEntry = (Vec<u8>, Vec<u8>);

/// A named byte-key/byte-value map beside the queue. Cheap to clone. Writes become
/// durable with the next flush.
#[derive(Clone)]
pub struct KvStore {
    pub(crate) name: Arc<str>,
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
    pub fn name(&self) -> &str {
        &self.name
    }

    fn unavailable(&self) -> BufferError {
        BufferError::StateUnavailable {
            path: self.queue.path().to_path_buf(),
        }
    }

    /// The stored value, `Ok(None)` when there is none, an error when it cannot be read.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        if let Some(w) = self.queue.mem().kv.get(&(self.name.clone(), key.to_vec())) {
            return Ok(w.value.clone());
        }
        let st = self.queue.store().ok_or_else(|| self.unavailable())?;
        st.kv_tree(&self.name)
            .and_then(|t| t.get(key))
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|_| self.unavailable())
    }

    fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<Option<Vec<u8>>, BufferError> {
        let old = self.get(key)?;
        let mut m = self.queue.mem();
        m.kv_version += 1;
        let version = m.kv_version;
        m.kv.insert(
            (self.name.clone(), key.to_vec()),
            KvWrite {
                value: value.map(<[u8]>::to_vec),
                version,
            },
        );
        Ok(old)
    }

    /// Inserts `value` under `key`; returns the previous value.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        self.write(key, Some(value))
    }

    /// [`KvStore::insert`], durable on return (blocking: waits for the writer's fsync).
    /// For what must not be used before it is stored (OCPP transaction ids).
    pub fn insert_durable(&self, key: &[u8], value: &[u8]) -> Result<(), BufferError> {
        self.insert(key, value)?;
        self.queue.flush()?;
        if self.queue.health().is_degraded() {
            return Err(self.queue.closed());
        }
        Ok(())
    }

    /// Removes `key`; returns the previous value.
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BufferError> {
        self.write(key, None)
    }

    /// Entries whose key starts with `prefix`, in key order (`b""` for all of them),
    /// writes not yet durable included.
    pub fn iter_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<KvEntry, BufferError>> + use<> {
        let items: Vec<Result<KvEntry, BufferError>> = match self.entries(prefix) {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        items.into_iter()
    }

    fn entries(&self, prefix: &[u8]) -> Result<Vec<KvEntry>, BufferError> {
        let st = self.queue.store().ok_or_else(|| self.unavailable())?;
        let tree = st.kv_tree(&self.name).map_err(|_| self.unavailable())?;
        let mut all = std::collections::BTreeMap::new();
        for item in tree.scan_prefix(prefix) {
            let (k, v) = item.map_err(|_| self.unavailable())?;
            all.insert(k.to_vec(), Some(v.to_vec()));
        }
        let m = self.queue.mem();
        for ((name, k), w) in m.kv.iter() {
            if *name == self.name && k.starts_with(prefix) {
                all.insert(k.clone(), w.value.clone());
            }
        }
        Ok(all
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    pub fn len(&self) -> usize {
        self.entries(b"").map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Queue {
    /// A named persisted map beside the queue (see [`KvStore`]).
    pub fn kv(&self, name: &str) -> Result<KvStore, BufferError> {
        if !valid_name(name) {
            return Err(BufferError::InvalidKvName {
                path: self.path().to_path_buf(),
                name: name.to_owned(),
            });
        }
        Ok(KvStore {
            name: name.into(),
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

#[cfg(test)]
mod tests {
    //! Proves state stores persist beside the queue, iterate by prefix and refuse bad names.
    use crate::buffer::{BufferError, Queue, QueueOptions};

    #[test]
    fn kv_stores_persist_beside_the_queue_and_iterate_by_prefix() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("buffer");
        {
            let q = Queue::open(&dir, QueueOptions::default()).expect("open");
            assert!(matches!(
                q.kv("bad name"),
                Err(BufferError::InvalidKvName { .. })
            ));
            let kv = q.kv("cmd-ids").expect("kv");
            assert_eq!(kv.insert(b"lamp-1/c-1", b"1").expect("insert"), None);
            kv.insert(b"lamp-1/c-2", b"2").expect("insert");
            kv.insert(b"lamp-2/c-1", b"3").expect("insert");
            assert_eq!(
                kv.remove(b"lamp-2/c-1").expect("remove"),
                Some(b"3".to_vec())
            );
            q.flush().expect("flush");
        }
        let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
        let kv = q.kv("cmd-ids").expect("kv");
        assert_eq!(kv.get(b"lamp-1/c-2").expect("get"), Some(b"2".to_vec()));
        let keys: Vec<Vec<u8>> = kv
            .iter_prefix(b"lamp-1/")
            .map(|r| r.expect("item").0)
            .collect();
        assert_eq!(keys, vec![b"lamp-1/c-1".to_vec(), b"lamp-1/c-2".to_vec()]);
        assert_eq!(q.stats().events, 0, "kv entries are not queue events");
        assert!(q.kv("other").expect("kv").is_empty());
    }
}
