//! Downlinks handed to the ChirpStack network server and not yet reported by a txack.
//!
//! Invariant: an entry is written to the queue's database (`Queue::kv("lora")`, keys
//! `cs/<queueItemId>`) and flushed (by the task, off the async workers, see
//! [`Pending::queue`]) *before* its `command/down` is published, so after a
//! restart a late `event/txack` still turns the command into `sent`, and one that never
//! comes into `expired`. Entries are keyed by DevEUI, not by device index, so a changed
//! device list cannot attach a result to the wrong device; entries of devices no longer
//! configured are dropped at start.

use crate::buffer::{BufferError, KvStore, Queue};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Key prefix of the pending downlinks inside the `lora` store.
const PREFIX: &str = "cs/";

/// One `command/down` waiting for its `event/txack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDown {
    /// DevEUI, 16 lowercase hex digits.
    pub dev_eui: String,
    /// The command id (None for commands without one).
    pub id: Option<String>,
    /// The points the command wrote, reported in `cmd/result`.
    pub points: Vec<(String, serde_json::Value)>,
    /// Wall clock, ms.
    pub expires_ms: u64,
}

/// The pending downlinks, in memory and in the queue's database.
pub struct Pending {
    kv: KvStore,
    queue: Queue,
    /// queueItemId → (device index, entry).
    map: HashMap<String, (usize, PendingDown)>,
}

impl Pending {
    /// Loads what a previous run left; `device_of` maps a DevEUI (hex) to a device index.
    pub fn load(kv: KvStore, queue: Queue, device_of: impl Fn(&str) -> Option<usize>) -> Pending {
        let mut map = HashMap::new();
        let mut stale = Vec::new();
        for item in kv.iter_prefix(PREFIX.as_bytes()) {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::error!(error = %e, "pending LoRa downlinks unreadable");
                    break;
                }
            };
            let qid = String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned();
            match serde_json::from_slice::<PendingDown>(&v) {
                Ok(p) => match device_of(&p.dev_eui) {
                    Some(i) => {
                        map.insert(qid, (i, p));
                    }
                    None => {
                        tracing::warn!(dev_eui = %p.dev_eui, queue_item_id = %qid, "pending downlink of a device no longer configured: dropped");
                        stale.push(k);
                    }
                },
                Err(e) => {
                    tracing::warn!(queue_item_id = %qid, error = %e, "pending downlink unreadable: dropped");
                    stale.push(k);
                }
            }
        }
        for k in stale {
            let _ = kv.remove(&k);
        }
        if !map.is_empty() {
            tracing::info!(
                count = map.len(),
                "pending LoRa downlinks restored from the buffer"
            );
        }
        Pending { kv, queue, map }
    }

    fn key(qid: &str) -> Vec<u8> {
        format!("{PREFIX}{qid}").into_bytes()
    }

    /// The queue to flush before acting on what [`Pending::add`] or [`Pending::remove`]
    /// wrote (a blocking call: run it with `spawn_blocking`).
    pub fn queue(&self) -> Queue {
        self.queue.clone()
    }

    /// Records the entries (durable with the next flush); on failure nothing is kept.
    pub fn add(&mut self, entries: Vec<(String, usize, PendingDown)>) -> Result<(), BufferError> {
        let mut written = Vec::new();
        let mut result = Ok(());
        for (qid, _, p) in &entries {
            let v = serde_json::to_vec(p).unwrap_or_default();
            if let Err(e) = self.kv.insert(&Self::key(qid), &v) {
                result = Err(e);
                break;
            }
            written.push(qid.clone());
        }
        if result.is_err() {
            for qid in written {
                let _ = self.kv.remove(&Self::key(&qid));
            }
            return result;
        }
        for (qid, device, p) in entries {
            self.map.insert(qid, (device, p));
        }
        Ok(())
    }

    /// Forgets every entry of command `id` on `device` (one of its frames failed).
    pub fn remove_command(&mut self, device: usize, id: &str) {
        let gone: Vec<String> = self
            .map
            .iter()
            .filter(|(_, (d, p))| *d == device && p.id.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.remove(&k);
        }
    }

    /// Forgets one entry (its txack came, or it could not be published).
    pub fn remove(&mut self, qid: &str) -> Option<(usize, PendingDown)> {
        let found = self.map.remove(qid)?;
        if let Err(e) = self.kv.remove(&Self::key(qid)) {
            tracing::error!(queue_item_id = %qid, error = %e, "pending downlink could not be removed");
        }
        Some(found)
    }

    /// Whether another frame of command `id` on `device` still waits for its txack.
    pub fn has_command(&self, device: usize, id: &str) -> bool {
        self.map
            .values()
            .any(|(d, p)| *d == device && p.id.as_deref() == Some(id))
    }

    /// Removes and returns the entries expired at `now_ms`, one per command.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(usize, PendingDown)> {
        let gone: Vec<String> = self
            .map
            .iter()
            .filter(|(_, (_, p))| p.expires_ms <= now_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<(usize, PendingDown)> = Vec::new();
        for k in gone {
            if let Some((d, p)) = self.remove(&k)
                && !out.iter().any(|(od, op)| *od == d && op.id == p.id)
            {
                out.push((d, p));
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    //! Pending downlinks survive a reopen of the queue's database.
    use super::*;
    use crate::buffer::QueueOptions;

    fn open(dir: &std::path::Path) -> (KvStore, Queue) {
        let q = Queue::open(&dir.join("buffer"), QueueOptions::default()).expect("open");
        (q.kv("lora").expect("kv"), q)
    }

    fn entry(dev_eui: &str, id: &str, expires_ms: u64) -> PendingDown {
        PendingDown {
            dev_eui: dev_eui.into(),
            id: Some(id.into()),
            points: vec![("dim_level".into(), serde_json::json!(40))],
            expires_ms,
        }
    }

    #[test]
    fn pending_downlinks_are_restored_after_a_restart_and_unknown_devices_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let device_of = |e: &str| (e == "0004a30b001c0532").then_some(3);
        {
            let (kv, q) = open(tmp.path());
            let mut p = Pending::load(kv, q, device_of);
            p.add(vec![
                ("q-1".into(), 3, entry("0004a30b001c0532", "c-1", 1_000)),
                ("q-2".into(), 3, entry("0004a30b001c0532", "c-2", 5_000)),
                ("q-3".into(), 4, entry("0004a30b001c0599", "c-3", 5_000)),
            ])
            .unwrap();
            p.queue().flush().unwrap();
        }
        let (kv, q) = open(tmp.path());
        let mut p = Pending::load(kv.clone(), q, device_of);
        assert_eq!(p.len(), 2, "the entry of the unknown device is dropped");
        assert_eq!(kv.len(), 2);
        let expired = p.expire(2_000);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].1.id.as_deref(), Some("c-1"));
        assert!(p.has_command(3, "c-2"));
        let (d, got) = p.remove("q-2").expect("restored entry");
        assert_eq!((d, got), (3, entry("0004a30b001c0532", "c-2", 5_000)));
        assert!(p.is_empty() && kv.is_empty());
    }

    #[test]
    fn an_expired_command_with_several_frames_is_reported_once() {
        let tmp = tempfile::tempdir().unwrap();
        let (kv, q) = open(tmp.path());
        let mut p = Pending::load(kv, q, |_| Some(0));
        p.add(vec![
            ("a".into(), 0, entry("00", "c-1", 10)),
            ("b".into(), 0, entry("00", "c-1", 10)),
        ])
        .unwrap();
        assert_eq!(p.expire(10).len(), 1);
        assert!(p.is_empty());
    }
}
