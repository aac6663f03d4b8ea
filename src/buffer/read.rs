//! Reading the queue for the publisher: stored records merged with those held in memory
//! during a storage fault, skipping (and quarantining) records that do not decode.

use super::Record;
use super::record;
use super::sled_queue::{BufferError, QUARANTINE_MAX, Queue, key, lock, seq_of};
use std::sync::atomic::Ordering;

impl Queue {
    /// Up to `limit` records with seq > `after` (all from the oldest when `None`), in order:
    /// the stored ones and those held in memory during a storage fault.
    ///
    /// A record that does not decode is logged, moved to the quarantine tree and skipped:
    /// one bad entry must not stall delivery of the others.
    pub fn read_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Record)>, BufferError> {
        let start = match after {
            None => 0,
            Some(a) => match a.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
        };
        // Read before the scan starts: every push up to here has returned, so the scan
        // sees all of them, and nothing later (which it might see out of order).
        let end = self.inner.pushed.load(Ordering::Acquire);
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit == 0 || start > end {
            return Ok(out);
        }
        let mut bad = Vec::new();
        {
            let held = lock(&self.inner.held);
            let store = self.store();
            if let Some(st) = store.as_ref() {
                for item in st.events.range(key(start)..=key(end)) {
                    let (k, v) = match item {
                        Ok(kv) => kv,
                        // While degraded, what memory holds is still delivered.
                        Err(_) if self.inner.health.is_degraded() => break,
                        Err(e) => return Err(self.sled_err(e)),
                    };
                    let decoded = match seq_of(&k) {
                        None => Err((0, format!("key of {} bytes, not 8", k.len()))),
                        Some(seq) if held.acked.contains(&seq) => continue,
                        Some(seq) => record::decode(&v)
                            .map(|r| (seq, r))
                            .map_err(|e| (seq, e.to_string())),
                    };
                    match decoded {
                        Ok(pair) => {
                            out.push(pair);
                            if out.len() >= limit {
                                break;
                            }
                        }
                        Err((seq, what)) => bad.push((k, seq, what)),
                    }
                }
            }
            if !held.is_empty() {
                let mut merged: std::collections::BTreeMap<u64, Record> = out.into_iter().collect();
                merged.extend(held.from(start, end, limit));
                out = merged.into_iter().take(limit).collect();
            }
        }
        for (k, seq, what) in bad {
            let err = BufferError::Malformed {
                path: self.inner.dir.as_ref().clone(),
                seq,
                what,
            };
            tracing::error!(seq, error = %err, "skipping a malformed buffered record");
            self.quarantine(&k)?;
        }
        Ok(out)
    }

    fn quarantine(&self, k: &[u8]) -> Result<(), BufferError> {
        let mut acct = lock(&self.inner.acct);
        let store = self.store();
        let st = store.as_ref().ok_or_else(|| self.closed())?;
        let Some(v) = st.events.remove(k).map_err(|e| self.sled_err(e))? else {
            return Ok(()); // acked or evicted meanwhile
        };
        acct.events = acct.events.saturating_sub(1);
        acct.bytes = acct.bytes.saturating_sub(v.len() as u64);
        self.inner.malformed.fetch_add(1, Ordering::Relaxed);
        if st.quarantine.len() < QUARANTINE_MAX {
            st.quarantine.insert(k, v).map_err(|e| self.sled_err(e))?;
        }
        self.mark_dirty();
        Ok(())
    }

    /// Malformed records skipped (and quarantined) by `read_after` since open.
    pub fn malformed_skipped(&self) -> u64 {
        self.inner.malformed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Queue, QueueOptions, Record};
    use crate::model::payload::Body;

    fn rec(i: u64) -> Record {
        Record {
            topic: format!("polegate/cab-1/lamp-{i}/telemetry"),
            payload: Body::from_open(&[b'x'; 40]),
            retain: false,
            created_ms: 1_700_000_000_000 + i,
        }
    }

    fn push_new(q: &Queue, r: &Record) {
        let seq = q.next_seq().expect("next_seq");
        q.push(seq, r).expect("push");
    }

    /// The publisher reads while the pipeline pushes: a reader following its cursor must see
    /// every seq, in order, never a later one before an earlier (sled's range scans alone do
    /// not promise that under concurrent inserts; the `pushed` watermark does).
    #[test]
    fn a_reader_racing_the_writer_sees_every_seq_in_order() {
        const N: u64 = 20_000;
        let tmp = tempfile::tempdir().expect("tempdir");
        let q = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("open");
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    push_new(&q, &rec(i));
                }
            })
        };
        let mut cursor: Option<u64> = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while cursor != Some(N) {
            assert!(
                std::time::Instant::now() < deadline,
                "reader stuck at {cursor:?}"
            );
            for (seq, _) in q.read_after(cursor, 64).expect("read") {
                assert_eq!(seq, cursor.map_or(1, |c| c + 1), "read after {cursor:?}");
                cursor = Some(seq);
                q.ack(seq).expect("ack");
            }
        }
        writer.join().expect("writer");
        assert!(q.is_empty());
    }
}
