//! Disk use that comes back (SPEC §5): sled 0.34 never shrinks its files, so once a
//! backlog has drained the queue is copied into a fresh generation (`generation.rs`) and
//! the old files are deleted.
//!
//! [`Queue::maintain`] (blocking; the pipeline calls it on a blocking thread every
//! [`MAINTAIN_EVERY`]) measures the live database's files and compacts when they exceed
//! `max(COMPACT_FLOOR, 4 × queued bytes)`: a freshly written sled 0.34 database takes
//! about 2.1 × its records (measured: 13.6 MB of 340-byte records, 28.8 MB of files,
//! whatever the mode or the flush pattern), so below 4 × a copy would free little.
//! The copy is made only while it needs at most `max(COMPACT_FLOOR, max_bytes / 4)`
//! (2.1 × the queued records): a queue kept full by `on_full` churn stays at about
//! 2.5 × `max_bytes` of files (measured), so the partition needs 3 × `max_bytes` + 16 MiB.
//! [`Queue::compact`]:
//! 1. without the queue's locks (pushes and acks go on): opens generation N+1 and copies
//!    the events up to the last pushed seq `w`;
//! 2. under every lock (acct, held, unflushed, seq, store): removes from the copy what
//!    was acked or evicted meanwhile, copies the events after `w`, the quarantine, every
//!    kv store and the seq floor, flushes and fsyncs the new generation, switches the
//!    pointer (the commit point) and swaps the handles;
//! 3. deletes generation N.
//!
//! A crash before the switch leaves generation N live (open deletes N+1); after it,
//! N+1 with everything (open deletes N). A failure (a full disk has no room for the copy)
//! abandons the copy and leaves the queue as it was.

use super::BufferStats;
use super::generation;
use super::kv::TREE_PREFIX;
use super::open::{dir_size, open_store};
use super::sled_queue::{BufferError, Live, META_RESERVED, Queue, Store, Unflushed, key, lock};
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often [`Queue::maintain`] measures the files (and maybe compacts).
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(10);
/// Files below this are never compacted: the copy would cost more than it frees.
pub const COMPACT_FLOOR: u64 = 8 * 1024 * 1024;

/// A fresh copy's files per byte of records, × 10 (measured 2.1).
const COPY_RATIO_X10: u64 = 21;

#[derive(Debug, Default)]
pub(crate) struct SpaceState {
    last_check: Option<Instant>,
    /// Size of the files right after the last compaction: a database whose overhead
    /// alone exceeds twice its payload is not compacted again until it has grown.
    after_compaction: u64,
}

/// What one compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub generation: u64,
    pub events: u64,
    pub disk_before: u64,
    pub disk_after: u64,
    pub took: Duration,
}

impl Queue {
    /// Counters and sizes (cheap: `disk_bytes` is the last measurement, taken at open and
    /// by [`Queue::maintain`], not a walk of the directory).
    pub fn stats(&self) -> BufferStats {
        let (events, bytes) = {
            let acct = lock(&self.inner.acct);
            let held = lock(&self.inner.held);
            (
                (acct.events + held.len()).saturating_sub(held.acked.len() as u64),
                acct.bytes + held.bytes(),
            )
        };
        BufferStats {
            events,
            bytes,
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            corrupt_recoveries: self.inner.corrupt_recoveries.load(Ordering::Relaxed),
            disk_bytes: self.inner.disk_bytes.load(Ordering::Relaxed),
        }
    }

    /// Whether [`Queue::maintain`] has something to do (cheap; for the caller's timer).
    pub fn maintenance_due(&self) -> bool {
        !self.inner.health.is_degraded()
            && lock(&self.inner.space)
                .last_check
                .is_none_or(|t| t.elapsed() >= MAINTAIN_EVERY)
    }

    /// Measures the files and compacts when a drained backlog left them too large.
    /// Blocking (call it from a blocking thread). Paced to [`MAINTAIN_EVERY`].
    pub fn maintain(&self) -> Result<Option<Compacted>, BufferError> {
        if !self.maintenance_due() {
            return Ok(None);
        }
        let after_compaction = {
            let mut space = lock(&self.inner.space);
            space.last_check = Some(Instant::now());
            space.after_compaction
        };
        self.check_files_present()?;
        let disk = self.measure();
        let queued = lock(&self.inner.acct).bytes;
        if disk <= COMPACT_FLOOR.max(4 * queued) || 2 * disk <= 3 * after_compaction {
            return Ok(None);
        }
        if COPY_RATIO_X10 * queued / 10 > COMPACT_FLOOR.max(self.inner.opts.max_bytes / 4) {
            // The copy would need more room than the partition is sized for (README:
            // 3 × max_bytes + 16 MiB); it waits until more of the backlog has drained.
            return Ok(None);
        }
        self.compact().map(Some)
    }

    /// Measures the live database's files; returns (and caches) their size.
    fn measure(&self) -> u64 {
        let live = lock(&self.inner.live).path.clone();
        let disk = dir_size(&live);
        self.inner.disk_bytes.store(disk, Ordering::Relaxed);
        disk
    }

    /// Copies the queue into a fresh generation and deletes the old one (module docs).
    /// Blocking; pushes, acks and reads go on meanwhile except during the final step.
    pub fn compact(&self) -> Result<Compacted, BufferError> {
        let started = Instant::now();
        // One compaction at a time; the live generation only changes under this lock.
        let _one = lock(&self.inner.compacting);
        let old = lock(&self.inner.live).clone();
        let disk_before = dir_size(&old.path);
        let next = Live {
            generation: old.generation + 1,
            path: generation::gen_dir(&self.inner.dir, old.generation + 1),
        };
        let io_err = |what, source| BufferError::Io {
            path: next.path.clone(),
            what,
            source,
        };
        if next.path.exists() {
            std::fs::remove_dir_all(&next.path)
                .map_err(|e| io_err("removing a stale generation", e))?;
        }
        let res = self.copy_into(&next);
        let events = match res {
            Ok(events) => events,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&next.path);
                tracing::warn!(error = %e, "buffer compaction abandoned; the queue is unchanged");
                return Err(e);
            }
        };
        if let Err(e) = std::fs::remove_dir_all(&old.path) {
            // The next open removes it (it is not the pointer's generation any more).
            tracing::warn!(path = %old.path.display(), error = %e,
                "cannot remove the previous buffer generation");
        }
        let disk_after = self.measure();
        lock(&self.inner.space).after_compaction = disk_after;
        let done = Compacted {
            generation: next.generation,
            events,
            disk_before,
            disk_after,
            took: started.elapsed(),
        };
        tracing::info!(
            generation = done.generation,
            events,
            disk_before,
            disk_after,
            took_ms = done.took.as_millis() as u64,
            "buffer compacted"
        );
        Ok(done)
    }

    /// Steps 1 and 2: the copy, the switch. Returns the events copied.
    fn copy_into(&self, next: &Live) -> Result<u64, BufferError> {
        let err = |e| self.sled_err(e);
        let (source, _) = {
            let store = self.store();
            let st = store.as_ref().ok_or_else(|| self.closed())?;
            (st.events.clone(), st.db.clone())
        };
        let (fresh, _) = open_store(&next.path, &self.inner.opts, false)?;
        let watermark = self.inner.pushed.load(Ordering::Acquire);
        for item in source.range(..=key(watermark)) {
            let (k, v) = item.map_err(err)?;
            fresh.events.insert(k, v).map_err(err)?;
        }
        drop(source);
        // The bulk is written out before the locks are taken: under them only the delta.
        fresh.db.flush().map_err(err)?;

        let _acct = lock(&self.inner.acct);
        let _held = lock(&self.inner.held);
        let mut unflushed = lock(&self.inner.unflushed);
        let seq = lock(&self.inner.seq);
        let mut slot = self
            .inner
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.health.is_degraded() {
            return Err(self.closed());
        }
        let st = slot.as_ref().ok_or_else(|| self.closed())?;
        for item in fresh.events.range(..=key(watermark)) {
            let (k, _) = item.map_err(err)?;
            if !st.events.contains_key(&k).map_err(err)? {
                fresh.events.remove(k).map_err(err)?;
            }
        }
        let after = watermark.checked_add(1).map(key);
        if let Some(after) = after {
            for item in st.events.range(after..) {
                let (k, v) = item.map_err(err)?;
                fresh.events.insert(k, v).map_err(err)?;
            }
        }
        copy_tree(&st.quarantine, &fresh.quarantine).map_err(err)?;
        for name in st.db.tree_names() {
            if name.starts_with(TREE_PREFIX.as_bytes()) {
                let from = st.db.open_tree(&name).map_err(err)?;
                let to = fresh.db.open_tree(&name).map_err(err)?;
                copy_tree(&from, &to).map_err(err)?;
            }
        }
        fresh
            .meta
            .insert(META_RESERVED, &key(seq.reserved_until.max(seq.next)))
            .map_err(err)?;
        fresh.db.flush().map_err(err)?;
        let events = fresh.events.len() as u64;
        generation::sync_tree(&next.path).map_err(|source| BufferError::Io {
            path: next.path.clone(),
            what: "syncing the new generation",
            source,
        })?;
        generation::switch_to(&self.inner.dir, next.generation).map_err(|source| {
            BufferError::Io {
                path: generation::pointer_path(&self.inner.dir),
                what: "switching to the new generation",
                source,
            }
        })?;
        let previous: Option<Store> = slot.replace(fresh);
        *lock(&self.inner.live) = next.clone();
        *unflushed = Unflushed::default();
        self.inner.dirty.store(false, Ordering::Release);
        drop(slot);
        drop(previous);
        Ok(events)
    }
}

fn copy_tree(from: &sled::Tree, to: &sled::Tree) -> Result<(), sled::Error> {
    for item in from.iter() {
        let (k, v) = item?;
        to.insert(k, v)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "space_tests.rs"]
mod tests;
