//! The queue's memory side: seq allocation, the open block, sealed blocks waiting for the
//! writer, the acknowledgements inside stored blocks and the running totals. Everything a
//! push, an ack or a read does happens here under one short mutex; sled is only read.

use super::block::{self, Entries};
use super::faults::Faults;
use super::shared::{Signal, SpaceState, WriterState};
use super::store::{Store, key, seq_of};
use super::{BufferError, BufferStats, PushOutcome, QueueOptions, Record, WhenFull, record};
use crate::ops::health::BufferHealth;
pub(crate) use crate::ops::lock::lock;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

/// seqs reserved per durable write of the reservation.
pub const SEQ_BLOCK: u64 = 1024;
/// After a stop that did not record its exact next seq (a crash, or a stop while
/// nothing could be written), the next run starts this far above the reservation; a run
/// that cannot write its reservation (a read-only remount) goes on within that range, so
/// the next run still continues above every seq it published.
pub const SEQ_FAR: u64 = 1 << 20;
/// Sealed bytes in memory that wake the writer before its timer.
pub(crate) const WAKE_BYTES: u64 = 256 * 1024;
/// Acknowledgements inside stored blocks that wake the writer (to remove the blocks).
pub(crate) const WAKE_ACKS: usize = 4096;

/// The durable queue. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Queue {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) seq_file: PathBuf,
    pub(crate) opts: QueueOptions,
    pub(crate) mem: Mutex<Mem>,
    /// None while the database is not open (a degraded start, or during a reopen).
    pub(crate) store: RwLock<Option<Arc<Store>>>,
    /// Held by whoever writes sled (the writer); never taken under `mem`.
    pub(crate) write: Mutex<WriterState>,
    pub(crate) health: BufferHealth,
    pub(crate) faults: Arc<Faults>,
    pub(crate) dropped: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) corrupt_recoveries: AtomicU64,
    pub(crate) disk_bytes: AtomicU64,
    pub(crate) signal: Arc<Signal>,
    pub(crate) space: Mutex<SpaceState>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.signal.stop();
    }
}

/// A state write waiting for the writer; `version` tells a later write of the same key.
#[derive(Debug, Clone)]
pub(crate) struct KvWrite {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) version: u64,
}

pub(crate) type KvKey = (Arc<str>, Vec<u8>);

#[derive(Debug, Default)]
pub(crate) struct Mem {
    /// The next seq to hand out.
    pub(crate) next: u64,
    /// Every seq below this is durably reserved (ledger or side file).
    pub(crate) reserved: u64,
    /// The reservation the writer is asked to make durable.
    pub(crate) want_reserved: u64,
    /// A clean stop's exact floor, for the writer to record.
    pub(crate) lower_to: Option<u64>,
    /// No reservation can be written now: seqs go on within `reserved + SEQ_FAR`.
    pub(crate) unreservable: bool,
    /// Set when even that range ran out, or nothing proved a floor: seqs continued from
    /// a time-based floor, and those from here on are readable without a reservation.
    pub(crate) jump_from: Option<u64>,
    /// The highest seq pushed.
    pub(crate) pushed: u64,
    pub(crate) open: Entries,
    /// Sealed, not yet written, oldest first.
    pub(crate) sealed: VecDeque<Entries>,
    /// Taken by the writer for the write in progress (older than `sealed`).
    pub(crate) writing: Vec<Entries>,
    /// Acknowledged seqs inside stored, writing or sealed blocks, above the watermark.
    pub(crate) acked: BTreeSet<u64>,
    /// Every event with seq ≤ this is gone; stored blocks at or below it are garbage.
    pub(crate) watermark: u64,
    pub(crate) stored_events: u64,
    pub(crate) stored_bytes: u64,
    /// The last seq of the newest stored block.
    pub(crate) stored_last: u64,
    /// The key of the newest stored block.
    pub(crate) last_block: u64,
    /// Keys of stored blocks at or below the watermark, for the writer to remove.
    pub(crate) garbage: Vec<u64>,
    /// Keys of stored blocks that failed their checksum, for the writer to move aside.
    pub(crate) quarantine: Vec<u64>,
    pub(crate) purge: bool,
    pub(crate) kv: BTreeMap<KvKey, KvWrite>,
    pub(crate) kv_version: u64,
    /// The ledger as last written (the writer skips a flush that would change nothing).
    pub(crate) written: Option<super::ledger::Ledger>,
}

impl Mem {
    pub(crate) fn memory_events(&self) -> u64 {
        self.open.len() as u64
            + self.sealed.iter().map(|b| b.len() as u64).sum::<u64>()
            + self.writing.iter().map(|b| b.len() as u64).sum::<u64>()
    }

    pub(crate) fn memory_bytes(&self) -> u64 {
        self.open.bytes
            + self.sealed.iter().map(|b| b.bytes).sum::<u64>()
            + self.writing.iter().map(|b| b.bytes).sum::<u64>()
    }

    fn sealed_bytes(&self) -> u64 {
        self.sealed.iter().map(|b| b.bytes).sum()
    }

    pub(crate) fn len(&self) -> u64 {
        (self.stored_events + self.memory_events()).saturating_sub(self.acked.len() as u64)
    }

    /// Whether `seq` may be read for publishing: its reservation is durable.
    pub(crate) fn readable(&self, seq: u64) -> bool {
        seq <= self.pushed && self.covered(seq)
    }

    /// Whether `seq` lies below a bound the next run starts above.
    pub(crate) fn covered(&self, seq: u64) -> bool {
        seq < self.reserved
            || (self.unreservable && seq < self.reserved.saturating_add(SEQ_FAR))
            || self.jump_from.is_some_and(|j| seq >= j)
    }

    pub(crate) fn seal(&mut self) {
        if !self.open.is_empty() {
            let b = std::mem::take(&mut self.open);
            self.sealed.push_back(b);
        }
    }

    /// Advances the watermark past a stored block that is gone (acknowledged or
    /// evicted); returns how many of its events were not acknowledged.
    pub(crate) fn forget_block(&mut self, k: u64, h: &block::Header) -> u64 {
        self.watermark = self.watermark.max(h.last);
        self.stored_events = self.stored_events.saturating_sub(u64::from(h.count));
        self.stored_bytes = self.stored_bytes.saturating_sub(u64::from(h.bytes));
        let before = self.acked.len() as u64;
        self.acked = self.acked.split_off(&self.watermark.saturating_add(1));
        self.garbage.push(k);
        u64::from(h.count).saturating_sub(before - self.acked.len() as u64)
    }

    /// Drops the oldest event held in memory (sealed first, then open); false if none.
    fn evict_memory_front(&mut self) -> bool {
        if let Some(front) = self.sealed.front_mut() {
            if let Some((seq, _)) = front.pop_front() {
                self.acked.remove(&seq);
            }
            if front.is_empty() {
                self.sealed.pop_front();
            }
            return true;
        }
        self.open.pop_front().is_some()
    }
}

impl Queue {
    pub(crate) fn mem(&self) -> MutexGuard<'_, Mem> {
        lock(&self.inner.mem)
    }

    pub(crate) fn store(&self) -> Option<Arc<Store>> {
        self.inner
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_store(&self, store: Option<Arc<Store>>) -> Option<Arc<Store>> {
        std::mem::replace(
            &mut *self
                .inner
                .store
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            store,
        )
    }

    pub(crate) fn sled_err(&self, source: sled::Error) -> BufferError {
        BufferError::Sled {
            path: self.inner.dir.clone(),
            source,
        }
    }

    pub(crate) fn closed(&self) -> BufferError {
        BufferError::Closed {
            path: self.inner.dir.clone(),
        }
    }

    /// The queue's directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether the queue stores durably (shared with the status, `/healthz`, `/metrics`).
    pub fn health(&self) -> BufferHealth {
        self.inner.health.clone()
    }

    /// Fault injection behind the queue's interface (tests, benchmarks).
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Hands out the next seq in memory, asking the writer to extend the reservation half
    /// a block ahead. An event carrying it is readable once the reservation is durable.
    fn allocate(&self) -> u64 {
        let mut m = self.mem();
        let seq = m.next;
        m.next += 1;
        if m.jump_from.is_none() && m.next + SEQ_BLOCK / 2 > m.reserved {
            m.want_reserved = m.want_reserved.max(m.next + SEQ_BLOCK);
            drop(m);
            self.inner.signal.wake();
        }
        seq
    }

    /// Stamps and queues one event: `build` gets its seq. The pipeline's one call.
    pub fn push_with(
        &self,
        build: impl FnOnce(u64) -> Record,
    ) -> Result<(u64, PushOutcome), BufferError> {
        let seq = self.allocate();
        let rec = build(seq);
        self.push(seq, &rec).map(|o| (seq, o))
    }

    /// Allocates the next seq, durably reserved before it is returned (blocking: it may
    /// wait for the writer's fsync). For callers that announce a seq before using it.
    pub fn next_seq(&self) -> Result<u64, BufferError> {
        for _ in 0..2 {
            {
                let mut m = self.mem();
                if m.covered(m.next) {
                    drop(m);
                    return Ok(self.allocate());
                }
                m.want_reserved = m.want_reserved.max(m.next + SEQ_BLOCK);
            }
            // A failed flush degrades the queue and keeps the reservation without the
            // database (side file, or a time-based floor); checked on the next turn.
            let _ = self.flush();
        }
        Err(self.closed())
    }

    /// The highest seq pushed so far (stored, held or refused), without allocating one.
    pub fn last_pushed(&self) -> u64 {
        self.mem().pushed
    }

    /// Queues `rec` under `seq` (from [`Queue::next_seq`], pushed in the order handed
    /// out), applying `on_full`. While the queue cannot store, the event is held in memory
    /// within `memory_max_bytes` ([`PushOutcome::Degraded`]).
    pub fn push(&self, seq: u64, rec: &Record) -> Result<PushOutcome, BufferError> {
        let value = record::encode(rec).ok_or_else(|| BufferError::TopicTooLong {
            path: self.inner.dir.clone(),
            seq,
            len: rec.topic.len(),
        })?;
        let size = value.len() as u64;
        let degraded = self.inner.health.is_degraded();
        let mut m = self.mem();
        let newest = m.open.last().unwrap_or(m.stored_last.max(m.watermark));
        let newest = m
            .sealed
            .back()
            .and_then(Entries::last)
            .map_or(newest, |s| s.max(newest));
        if seq == 0 || seq >= m.next || seq <= newest {
            return Err(BufferError::SeqNotAllocated {
                path: self.inner.dir.clone(),
                seq,
            });
        }
        m.pushed = m.pushed.max(seq);
        let (limit, in_memory_only) = if degraded {
            (self.inner.opts.memory_max_bytes, true)
        } else {
            (self.inner.opts.max_bytes, false)
        };
        // Not kept: counted as dropped, said as the mode says it.
        let refused = || {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            Ok(if degraded {
                PushOutcome::Degraded {
                    held: false,
                    evicted: 0,
                }
            } else {
                PushOutcome::Rejected
            })
        };
        if size > limit {
            return refused();
        }
        let mut evicted = 0;
        loop {
            let used = if in_memory_only {
                m.memory_bytes()
            } else {
                m.stored_bytes + m.memory_bytes()
            };
            if used + size <= limit {
                break;
            }
            if self.inner.opts.on_full == WhenFull::DropNewest {
                return refused();
            }
            let n = if !in_memory_only && m.stored_events > 0 {
                self.evict_stored_front(&mut m)
            } else if m.evict_memory_front() {
                1
            } else {
                // Only blocks being written are left: they go once written.
                break;
            };
            evicted += n;
        }
        self.inner.dropped.fetch_add(evicted, Ordering::Relaxed);
        if !m.open.fits(value.len()) {
            m.seal();
        }
        m.open.push(seq, value);
        let wake = !degraded && m.sealed_bytes() > WAKE_BYTES;
        drop(m);
        if wake {
            self.inner.signal.wake();
        }
        Ok(if degraded {
            PushOutcome::Degraded {
                held: true,
                evicted,
            }
        } else {
            PushOutcome::Stored { evicted }
        })
    }

    /// Evicts the oldest stored block (`drop_oldest`); returns its unacknowledged events.
    /// A read of sled, no write: the writer removes the block.
    fn evict_stored_front(&self, m: &mut Mem) -> u64 {
        let front = self.store().and_then(|st| {
            st.blocks
                .range(key(m.watermark.saturating_add(1))..)
                .next()
                .and_then(Result::ok)
        });
        let parsed = front.and_then(|(k, v)| Some((seq_of(&k)?, block::header(&v).ok()?)));
        match parsed {
            Some((k, h)) if k <= m.stored_last => m.forget_block(k, &h),
            _ => {
                // The totals disagree with the tree; the tree is the truth.
                m.stored_events = 0;
                m.stored_bytes = 0;
                0
            }
        }
    }

    /// Removes `seq` (its PUBACK came). Unknown seqs are ignored.
    pub fn ack(&self, seq: u64) -> Result<(), BufferError> {
        self.ack_many(&[seq]);
        Ok(())
    }

    /// Removes every seq of `seqs` (their PUBACKs came): in memory only; the writer
    /// removes stored blocks once all their events are acknowledged.
    pub fn ack_many(&self, seqs: &[u64]) {
        let mut m = self.mem();
        for &seq in seqs {
            if seq <= m.watermark || seq > m.pushed {
                continue;
            }
            if m.open.first().is_some_and(|f| seq >= f) {
                m.open.remove(seq);
            } else {
                m.acked.insert(seq);
            }
        }
        let wake = m.acked.len() > WAKE_ACKS;
        drop(m);
        if wake {
            self.inner.signal.wake();
        }
    }

    /// Events in the queue, stored or in memory (cheap).
    pub fn len(&self) -> u64 {
        self.mem().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events held only in memory because the queue cannot store (SPEC §5 "Storage
    /// faults"): a stop now loses them.
    pub fn held_in_memory(&self) -> u64 {
        if self.inner.health.is_degraded() {
            self.mem().memory_events()
        } else {
            0
        }
    }

    /// Counters and sizes (cheap: `disk_bytes` is the writer's last measurement).
    pub fn stats(&self) -> BufferStats {
        let (events, bytes) = {
            let m = self.mem();
            (m.len(), m.stored_bytes + m.memory_bytes())
        };
        BufferStats {
            events,
            bytes,
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            corrupt_recoveries: self.inner.corrupt_recoveries.load(Ordering::Relaxed),
            disk_bytes: self.inner.disk_bytes.load(Ordering::Relaxed),
        }
    }

    /// Malformed blocks or records skipped (and quarantined) by reads since open.
    pub fn malformed_skipped(&self) -> u64 {
        self.inner.malformed.load(Ordering::Relaxed)
    }

    /// Removes every queued event (`polegate buffer purge`); durable on return.
    pub fn purge(&self) -> Result<u64, BufferError> {
        let n = {
            let mut m = self.mem();
            let n = m.len();
            m.open = Entries::default();
            m.sealed.clear();
            m.acked.clear();
            m.watermark = m.watermark.max(m.stored_last).max(m.pushed);
            m.stored_events = 0;
            m.stored_bytes = 0;
            m.purge = true;
            n
        };
        self.flush()?;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;
