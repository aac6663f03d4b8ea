//! Reading the queue for the publisher, in seq order: the stored blocks from the one
//! holding the cursor, then the blocks being written, the sealed ones and the open one.
//! A block that fails its checksum is skipped, counted and handed to the writer to move
//! aside; it never blocks delivery of the others.

use super::block;
use super::log::Mem;
use super::store::{key, seq_of};
use super::{BufferError, Queue, Record, record};
use std::sync::atomic::Ordering;

/// Where a read stands.
struct Read {
    start: u64,
    limit: usize,
    out: Vec<(u64, Record)>,
    /// A seq not yet readable was met: nothing later may be returned.
    stopped: bool,
}

impl Read {
    fn full(&self) -> bool {
        self.stopped || self.out.len() >= self.limit
    }

    /// Takes the entries of one block, in order; records that do not decode are
    /// counted and returned in `bad`.
    fn take<'a>(
        &mut self,
        m: &Mem,
        q: &Queue,
        entries: impl Iterator<Item = (u64, &'a [u8])>,
        bad: &mut Vec<u64>,
    ) {
        for (seq, raw) in entries {
            if seq < self.start || m.acked.contains(&seq) {
                continue;
            }
            if !m.readable(seq) {
                self.stopped = true;
                return;
            }
            match record::decode(raw) {
                Ok(rec) => self.out.push((seq, rec)),
                Err(e) => {
                    q.inner.malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(seq, error = %e, "skipping a malformed buffered record");
                    bad.push(seq);
                }
            }
            if self.full() {
                return;
            }
        }
    }
}

impl Queue {
    /// Up to `limit` events with seq > `after` (all from the oldest when `None`), in order.
    pub fn read_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Record)>, BufferError> {
        let start = match after {
            None => 1,
            Some(a) => match a.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
        };
        let mut r = Read {
            start,
            limit,
            out: Vec::with_capacity(limit.min(1024)),
            stopped: false,
        };
        if limit == 0 {
            return Ok(r.out);
        }
        let mut guard = self.mem();
        let m = &mut *guard;
        if m.stored_events > 0 && start <= m.stored_last {
            self.read_stored(m, &mut r)?;
        }
        let mut bad = Vec::new();
        let blocks = m.writing.iter().chain(m.sealed.iter()).chain([&m.open]);
        for b in blocks {
            if r.full() {
                break;
            }
            if b.last().is_some_and(|l| l >= start) {
                let items = b.items.iter().map(|(s, raw)| (*s, raw.as_slice()));
                r.take(m, self, items, &mut bad);
            }
        }
        // Skipped for good: counted as gone, so that their blocks can be removed.
        m.acked.extend(bad);
        Ok(r.out)
    }

    /// The stored blocks that may hold seqs from `r.start` on.
    fn read_stored(&self, m: &mut Mem, r: &mut Read) -> Result<(), BufferError> {
        let Some(st) = self.store() else {
            // Stored events exist but cannot be read now (a reopen is under way):
            // nothing after them may be returned before them.
            r.stopped = true;
            return Ok(());
        };
        let from = st
            .blocks
            .range(..=key(r.start))
            .next_back()
            .and_then(Result::ok)
            .and_then(|(k, _)| seq_of(&k))
            .filter(|k| *k > m.watermark)
            .unwrap_or(r.start.max(m.watermark.saturating_add(1)));
        for item in st.blocks.range(key(from)..=key(m.stored_last)) {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) if self.inner.health.is_degraded() => {
                    tracing::debug!(error = %e, "stored blocks unreadable during a storage fault");
                    r.stopped = true;
                    return Ok(());
                }
                Err(e) => return Err(self.sled_err(e)),
            };
            let Some(first) = seq_of(&k) else { continue };
            if first <= m.watermark || m.quarantine.contains(&first) {
                continue;
            }
            match block::decode(&v) {
                Ok(block) => {
                    let mut bad = Vec::new();
                    r.take(m, self, block.iter(), &mut bad);
                    m.acked.extend(bad);
                }
                Err(e) => self.set_aside(m, first, &v, &e.to_string()),
            }
            if r.full() {
                break;
            }
        }
        Ok(())
    }

    /// A stored block that does not decode: counted, logged, handed to the writer.
    fn set_aside(&self, m: &mut Mem, first: u64, v: &[u8], what: &str) {
        let err = BufferError::Malformed {
            path: self.inner.dir.clone(),
            seq: first,
            what: what.to_owned(),
        };
        tracing::error!(seq = first, error = %err, "skipping a malformed buffered block");
        self.inner.malformed.fetch_add(1, Ordering::Relaxed);
        if let Ok(h) = block::header(v) {
            m.stored_events = m.stored_events.saturating_sub(u64::from(h.count));
            m.stored_bytes = m.stored_bytes.saturating_sub(u64::from(h.bytes));
        } else {
            m.stored_events = m.stored_events.saturating_sub(1);
        }
        m.quarantine.push(first);
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
