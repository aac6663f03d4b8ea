//! Events held in memory while the queue cannot store (SPEC §5 "Storage faults"), bounded
//! by `buffer.memory_max_bytes` with the same `on_full` rule as the disk queue, and the
//! acknowledgements that could not be written to the database meanwhile.

use super::{Record, WhenFull, record};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A kv write (store name, key) -> value, `None` for a removal.
pub(crate) type KvWrites = BTreeMap<(Arc<str>, Vec<u8>), Option<Vec<u8>>>;

#[derive(Debug, Default)]
pub(crate) struct Held {
    events: BTreeMap<u64, (Record, u64)>,
    bytes: u64,
    /// Seqs acknowledged while the database refused the removal; applied on recovery.
    pub(crate) acked: BTreeSet<u64>,
    /// Kv-store writes the database refused meanwhile; applied on recovery.
    pub(crate) kv: KvWrites,
}

/// What a hold did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HoldOutcome {
    Held { evicted: u64 },
    Rejected,
}

pub(crate) fn size_of(rec: &Record) -> u64 {
    record::encoded_len(rec).map_or(u64::MAX, |n| n as u64)
}

impl Held {
    pub(crate) fn len(&self) -> u64 {
        self.events.len() as u64
    }

    /// How many held events have a seq below `seq`.
    pub(crate) fn count_below(&self, seq: u64) -> u64 {
        self.events.range(..seq).count() as u64
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Holds `rec`, applying `on_full` within `max` bytes.
    pub(crate) fn hold(
        &mut self,
        seq: u64,
        rec: Record,
        max: u64,
        on_full: WhenFull,
    ) -> HoldOutcome {
        let size = size_of(&rec);
        if size > max {
            return HoldOutcome::Rejected;
        }
        let mut evicted = 0;
        while self.bytes + size > max {
            match on_full {
                WhenFull::DropNewest => return HoldOutcome::Rejected,
                WhenFull::DropOldest => match self.events.pop_first() {
                    Some((_, (_, s))) => {
                        self.bytes -= s;
                        evicted += 1;
                    }
                    None => break,
                },
            }
        }
        if let Some((_, old)) = self.events.insert(seq, (rec, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
        HoldOutcome::Held { evicted }
    }

    /// Puts back an event that was already queued (recovery export): never evicts.
    pub(crate) fn keep(&mut self, seq: u64, rec: Record) {
        let size = size_of(&rec);
        if let Some((_, old)) = self.events.insert(seq, (rec, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
    }

    pub(crate) fn remove(&mut self, seq: u64) -> bool {
        match self.events.remove(&seq) {
            Some((_, s)) => {
                self.bytes -= s;
                true
            }
            None => false,
        }
    }

    /// Up to `limit` held records with `start <= seq <= end`, in order.
    pub(crate) fn from(&self, start: u64, end: u64, limit: usize) -> Vec<(u64, Record)> {
        self.events
            .range(start..=end)
            .take(limit)
            .map(|(s, (r, _))| (*s, r.clone()))
            .collect()
    }

    /// All held records, in order (recovery writes them into the queue first).
    pub(crate) fn all(&self) -> Vec<(u64, Record)> {
        self.from(0, u64::MAX, usize::MAX)
    }

    /// The held value of a kv key: `Some(None)` for a held removal, `None` if not held.
    pub(crate) fn kv_pending(&self, name: &Arc<str>, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.kv.get(&(name.clone(), key.to_vec())).cloned()
    }

    pub(crate) fn set_kv(&mut self, name: &Arc<str>, key: &[u8], value: Option<&[u8]>) {
        self.kv
            .insert((name.clone(), key.to_vec()), value.map(<[u8]>::to_vec));
    }

    pub(crate) fn forget_kv(&mut self, name: &Arc<str>, key: &[u8]) {
        if !self.kv.is_empty() {
            self.kv.remove(&(name.clone(), key.to_vec()));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    //! Proves the memory bound and both `on_full` rules.
    use super::*;
    use crate::model::payload::Body;

    fn rec(n: usize) -> Record {
        Record {
            topic: "t".into(),
            payload: Body::from_open(&vec![b'x'; n]),
            retain: false,
            created_ms: 1,
        }
    }

    #[test]
    fn drop_oldest_evicts_the_oldest_held_events_to_stay_within_the_bound() {
        let mut h = Held::default();
        let one = size_of(&rec(100));
        let max = one * 3;
        for s in 1..=3 {
            assert_eq!(
                h.hold(s, rec(100), max, WhenFull::DropOldest),
                HoldOutcome::Held { evicted: 0 }
            );
        }
        assert_eq!(
            h.hold(4, rec(100), max, WhenFull::DropOldest),
            HoldOutcome::Held { evicted: 1 }
        );
        assert_eq!(
            h.from(0, u64::MAX, 10)
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert!(h.bytes() <= max);
    }

    #[test]
    fn drop_newest_refuses_an_event_that_does_not_fit() {
        let mut h = Held::default();
        let max = size_of(&rec(100));
        assert_eq!(
            h.hold(1, rec(100), max, WhenFull::DropNewest),
            HoldOutcome::Held { evicted: 0 }
        );
        assert_eq!(
            h.hold(2, rec(100), max, WhenFull::DropNewest),
            HoldOutcome::Rejected
        );
        assert!(h.remove(1));
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
    }
}
