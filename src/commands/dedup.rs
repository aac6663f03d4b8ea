//! Command ids seen recently (SPEC §8): remembered for at least `RETAIN_MS` and the last
//! `RETAIN_COUNT`, across reloads and restarts (persisted in the buffer's database), so a
//! QoS 1 redelivery or a replayed command is never executed twice.

use crate::buffer::KvStore;
use std::collections::{HashMap, VecDeque};

pub const RETAIN_MS: u64 = 10 * 60 * 1000;
pub const RETAIN_COUNT: usize = 1000;
/// Hard bound of memory and store: beyond it the oldest id goes even if younger than
/// `RETAIN_MS`. Only accepted commands are recorded (at most 5/s per device), so this
/// is reached only by a control room sending more than 30 commands/s for 10 minutes.
pub const MAX_IDS: usize = 20_000;

pub struct Dedup {
    seen: HashMap<String, u64>,
    order: VecDeque<(u64, String)>,
    store: Option<KvStore>,
    /// The store's ids are merged in. Until then (stored state unavailable, SPEC §5) ids
    /// are remembered in memory and every check tries the store again.
    loaded: bool,
}

fn key(device: &str, id: &str) -> String {
    format!("{device}\u{0}{id}")
}

impl Dedup {
    /// Loads what `store` remembers (None: memory only, for tests).
    pub fn open(store: Option<KvStore>, now_ms: u64) -> Dedup {
        let mut d = Dedup {
            seen: HashMap::new(),
            order: VecDeque::new(),
            store,
            loaded: false,
        };
        if !d.load(now_ms) {
            tracing::warn!(
                "remembered command ids cannot be read yet; ids seen meanwhile are kept in \
                 memory and merged once they can"
            );
        }
        d
    }

    /// Merges the stored ids with those seen meanwhile (which are stored in turn); false
    /// while the store cannot be read.
    fn load(&mut self, now_ms: u64) -> bool {
        if self.loaded {
            return true;
        }
        let Some(s) = &self.store else {
            self.loaded = true;
            return true;
        };
        let mut stored: Vec<(u64, String)> = Vec::new();
        for item in s.iter_prefix(b"") {
            let Ok((k, v)) = item else { return false };
            let (Ok(k), Ok(ms)) = (String::from_utf8(k), <[u8; 8]>::try_from(&v[..])) else {
                continue;
            };
            stored.push((u64::from_be_bytes(ms), k));
        }
        let meanwhile: Vec<(u64, String)> = self.order.drain(..).collect();
        self.seen.clear();
        for (ms, k) in &meanwhile {
            if let Err(e) = s.insert(k.as_bytes(), &ms.to_be_bytes()) {
                tracing::warn!(error = %e, "cannot persist a command id");
            }
        }
        let mut all: Vec<(u64, String)> = stored.into_iter().chain(meanwhile).collect();
        all.sort();
        for (ms, k) in all {
            if self.seen.insert(k.clone(), ms).is_none() {
                self.order.push_back((ms, k));
            }
        }
        self.loaded = true;
        self.evict(now_ms);
        true
    }

    /// True when (device, id) was recorded recently.
    pub fn is_duplicate(&mut self, device: &str, id: &str, now_ms: u64) -> bool {
        if !self.loaded && self.load(now_ms) {
            tracing::info!(ids = self.seen.len(), "remembered command ids loaded");
        }
        self.seen.contains_key(&key(device, id))
    }

    /// Remembers (device, id), in memory and in the store.
    pub fn record(&mut self, device: &str, id: &str, now_ms: u64) {
        let k = key(device, id);
        if self.seen.contains_key(&k) {
            return;
        }
        if self.loaded
            && let Some(s) = &self.store
            && let Err(e) = s.insert(k.as_bytes(), &now_ms.to_be_bytes())
        {
            tracing::warn!(error = %e, "cannot persist a command id");
        }
        self.seen.insert(k.clone(), now_ms);
        self.order.push_back((now_ms, k));
        self.evict(now_ms);
    }

    /// True when (device, id) was seen recently; otherwise records it and returns false.
    pub fn check_and_record(&mut self, device: &str, id: &str, now_ms: u64) -> bool {
        if self.is_duplicate(device, id, now_ms) {
            return true;
        }
        self.record(device, id, now_ms);
        false
    }

    fn evict(&mut self, now_ms: u64) {
        while self.order.len() > RETAIN_COUNT {
            let Some((ms, _)) = self.order.front() else {
                break;
            };
            if now_ms.saturating_sub(*ms) < RETAIN_MS && self.order.len() <= MAX_IDS {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.seen.remove(&k);
                if self.loaded
                    && let Some(s) = &self.store
                {
                    let _ = s.remove(k.as_bytes());
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    //! Ids are kept 10 minutes and at least the last 1000, and survive a reopen.
    use super::*;
    use crate::buffer::{Queue, QueueOptions};

    #[test]
    fn an_id_is_a_duplicate_until_both_ten_minutes_and_a_thousand_newer_ids_have_passed() {
        let mut d = Dedup::open(None, 0);
        assert!(!d.check_and_record("lamp", "c-1", 0));
        assert!(d.check_and_record("lamp", "c-1", 1));
        assert!(!d.check_and_record("other", "c-1", 1), "ids are per device");
        for i in 0..1500 {
            d.check_and_record("lamp", &format!("x{i}"), 2);
        }
        assert!(
            d.check_and_record("lamp", "c-1", 3),
            "younger than 10 min: kept"
        );
        d.check_and_record("lamp", "late", RETAIN_MS + 10);
        assert!(
            !d.check_and_record("lamp", "c-1", RETAIN_MS + 11),
            "old and beyond 1000"
        );
        assert!(d.len() >= RETAIN_COUNT);
    }

    #[test]
    fn the_memory_is_bounded_even_within_the_ten_minute_window() {
        let mut d = Dedup::open(None, 0);
        for i in 0..MAX_IDS + 100 {
            d.record("lamp", &format!("f{i}"), 1);
        }
        assert_eq!(d.len(), MAX_IDS);
        assert!(!d.is_duplicate("lamp", "f0", 1), "the oldest went first");
        assert!(d.is_duplicate("lamp", &format!("f{}", MAX_IDS + 99), 1));
    }

    #[test]
    fn remembered_ids_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(&dir.path().join("b"), QueueOptions::default()).unwrap();
            let mut d = Dedup::open(Some(q.kv("cmd_ids").unwrap()), 0);
            d.check_and_record("lamp", "c-9", 5);
            q.flush().unwrap();
        }
        let q = Queue::open(&dir.path().join("b"), QueueOptions::default()).unwrap();
        let mut d = Dedup::open(Some(q.kv("cmd_ids").unwrap()), 10);
        assert!(d.check_and_record("lamp", "c-9", 11));
    }
}
