//! Disk use that comes back (SPEC §5): sled 0.34 never shrinks its files, so once a
//! backlog has drained the writer copies the queue into a fresh generation
//! (`generation.rs`) and deletes the old files.
//!
//! [`Queue::maintain`] (the writer calls it every [`MAINTAIN_EVERY`]) checks that the
//! files are still there (`degraded.rs`), measures them and compacts when they exceed
//! `max(COMPACT_FLOOR, 4 × queued bytes)` and the copy is small (at most
//! `max(COMPACT_FLOOR, max_bytes / 4)` of blocks). [`Queue::compact`], under the writer's
//! lock (nothing else writes sled; pushes, acks and reads go on in memory):
//! 1. flushes, then copies the live blocks, the ledger, the quarantine and every state
//!    store into generation N+1, flushes it and fsyncs its directory tree;
//! 2. switches the pointer (the commit point: temp file, fsync, rename, directory fsync);
//!    when that reports an error, the pointer is read back: if it names N+1 the switch
//!    happened, otherwise N+1 is deleted and N stays live;
//! 3. swaps the handles and deletes generation N, never the live one.
//!
//! A crash before the switch leaves N live (open deletes N+1); after it, N+1 with
//! everything (open deletes N). A pointer naming a missing generation is refused at open.

use super::BufferError;
use super::generation::{self, Live};
use super::ledger;
use super::log::{Queue, lock};
use super::shared::WriterState;
use super::store::{Store, TREE_PREFIX, dir_size, key, open_store};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often [`Queue::maintain`] measures the files (and maybe compacts).
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(10);
/// Files below this are never compacted: the copy would cost more than it frees.
pub const COMPACT_FLOOR: u64 = 8 * 1024 * 1024;

/// A fresh copy's files per byte of records, × 10 (measured 2.1 for one key per event;
/// blocks take less, so this errs on the safe side).
const COPY_RATIO_X10: u64 = 21;

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
    /// Whether [`Queue::maintain`] has something to do (cheap; for the caller's timer).
    pub fn maintenance_due(&self) -> bool {
        !self.inner.health.is_degraded()
            && lock(&self.inner.space)
                .last_check
                .is_none_or(|t| t.elapsed() >= MAINTAIN_EVERY)
    }

    /// Checks the files are there, measures them and compacts when a drained backlog
    /// left them too large. Blocking. Paced to [`MAINTAIN_EVERY`].
    pub fn maintain(&self) -> Result<Option<Compacted>, BufferError> {
        if !self.maintenance_due() {
            return Ok(None);
        }
        let after_compaction = {
            let mut space = lock(&self.inner.space);
            space.last_check = Some(Instant::now());
            space.after_compaction
        };
        let mut w = lock(&self.inner.write);
        self.check_files_present(&mut w)?;
        let disk = self.measure(&w);
        let queued = self.stats().bytes;
        if disk <= COMPACT_FLOOR.max(4 * queued) || 2 * disk <= 3 * after_compaction {
            return Ok(None);
        }
        if COPY_RATIO_X10 * queued / 10 > COMPACT_FLOOR.max(self.inner.opts.max_bytes / 4) {
            // The copy would need more room than the partition is sized for (README:
            // 3 × max_bytes + 16 MiB); it waits until more of the backlog has drained.
            return Ok(None);
        }
        self.compact_locked(&mut w).map(Some)
    }

    /// Measures the live database's files; returns (and caches) their size.
    fn measure(&self, w: &WriterState) -> u64 {
        let disk = dir_size(&w.live.path);
        self.inner.disk_bytes.store(disk, Ordering::Relaxed);
        disk
    }

    /// Copies the queue into a fresh generation and deletes the old one (module docs).
    /// Blocking; pushes, acks and reads go on meanwhile.
    pub fn compact(&self) -> Result<Compacted, BufferError> {
        let mut w = lock(&self.inner.write);
        self.compact_locked(&mut w)
    }

    fn compact_locked(&self, w: &mut WriterState) -> Result<Compacted, BufferError> {
        let started = Instant::now();
        self.flush_locked(w)?;
        let old_store = self.store().ok_or_else(|| self.closed())?;
        if w.failed {
            return Err(self.closed());
        }
        let old = w.live.clone();
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
        let fresh = match self.copy_into(&old_store, &next) {
            Ok(fresh) => fresh,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&next.path);
                tracing::warn!(error = %e, "buffer compaction abandoned; the queue is unchanged");
                return Err(e);
            }
        };
        let switched = generation::switch_to(&self.inner.dir, next.generation)
            .and_then(|()| self.inner.faults.check(super::FaultPoint::Switch));
        if let Err(source) = switched {
            // The rename may have happened before the failing fsync: what the pointer
            // names now decides which generation is live.
            if generation::current(&self.inner.dir) != next.generation {
                drop(fresh);
                let _ = std::fs::remove_dir_all(&next.path);
                return Err(BufferError::Io {
                    path: generation::pointer_path(&self.inner.dir),
                    what: "switching to the new generation",
                    source,
                });
            }
            tracing::warn!(error = %source,
                "the generation pointer was switched but its directory sync failed; continuing on the new generation");
        }
        drop(self.set_store(Some(Arc::new(fresh))));
        drop(old_store);
        w.live = next.clone();
        if let Err(e) = std::fs::remove_dir_all(&old.path) {
            // The next open removes it (it is not the pointer's generation any more).
            tracing::warn!(path = %old.path.display(), error = %e,
                "cannot remove the previous buffer generation");
        }
        let disk_after = self.measure(w);
        lock(&self.inner.space).after_compaction = disk_after;
        let events = self.len();
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

    /// Step 1: the copy, flushed and synced. Nothing else writes `old` meanwhile.
    fn copy_into(&self, old: &Store, next: &Live) -> Result<Store, BufferError> {
        let err = |e| self.sled_err(e);
        let (fresh, _) = open_store(&next.path, &self.inner.opts, false)?;
        let watermark = self.mem().watermark;
        for item in old.blocks.range(key(watermark.saturating_add(1))..) {
            let (k, v) = item.map_err(err)?;
            fresh.blocks.insert(k, v).map_err(err)?;
        }
        if let Some(v) = old.meta.get(ledger::KEY).map_err(err)? {
            fresh.meta.insert(ledger::KEY, v).map_err(err)?;
        }
        copy_tree(&old.quarantine, &fresh.quarantine).map_err(err)?;
        for name in old.db.tree_names() {
            if name.starts_with(TREE_PREFIX.as_bytes()) {
                let from = old.db.open_tree(&name).map_err(err)?;
                let to = fresh.db.open_tree(&name).map_err(err)?;
                copy_tree(&from, &to).map_err(err)?;
            }
        }
        fresh.flush().map_err(err)?;
        generation::sync_tree(&next.path).map_err(|source| BufferError::Io {
            path: next.path.clone(),
            what: "syncing the new generation",
            source,
        })?;
        Ok(fresh)
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
