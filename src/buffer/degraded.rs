//! The one degraded mode (SPEC §5 "Storage faults"). Whatever the fault, the writer
//! fails, the queue says so once ([`BufferHealth`]), and events stay in memory as sealed
//! blocks within `memory_max_bytes` (`log.rs`). sled latches an I/O error (every later
//! write fails), so recovery reopens the database:
//!
//! 1. a small probe write proves the file system takes writes again (sled's recovery at
//!    open writes; on a still-full disk it was measured to lose flushed events);
//! 2. when the files vanished, what the old handles still read is carried into memory
//!    first (within `memory_max_bytes`, oldest dropped and counted beyond it);
//! 3. the database is reopened (a queue that started without it takes its lock and
//!    reconciles the seq floor and its stored totals);
//! 4. a flush writes what memory holds, and only then the queue says it stores again.
//!
//! A failed step leaves everything in memory for the next attempt, [`RETRY_EVERY`] later
//! (SPEC §5: at least every 10 s).
//!
//! [`BufferHealth`]: crate::ops::health::BufferHealth

use super::BufferError;
use super::block::{self, Entries};
use super::faults::FaultPoint;
use super::log::{Mem, Queue, lock};
use super::open::{live, load, take_lock};
use super::shared::WriterState;
use super::store::{Store, open_store};
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a degraded queue retries.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// The probe: enough to show the file system takes writes, little for a failing card
/// that is retried every few seconds for days.
const PROBE_BYTES: u64 = 64 * 1024;

/// Writes and syncs `bytes` in a file beside the queue directory, then removes it.
fn probe_space(dir: &Path, bytes: u64) -> io::Result<()> {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".probe");
    let path = dir.with_file_name(name);
    let res = (|| {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let mut f = fs::File::create(&path)?;
        let chunk = vec![0u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    })();
    let removed = fs::remove_file(&path);
    res.and(removed)
}

impl Queue {
    /// Enters the degraded state because of `e` (logged once, by the transition).
    pub(crate) fn degrade(&self, e: &BufferError) {
        self.inner.health.degrade(&e.to_string(), &self.inner.dir);
    }

    /// While degraded, reopens the database if the last attempt is [`RETRY_EVERY`] old.
    /// Blocking. `Ok(true)` when the queue stores again.
    pub fn retry(&self) -> Result<bool, BufferError> {
        if !self.inner.health.is_degraded() {
            return Ok(false);
        }
        let mut w = lock(&self.inner.write);
        if w.last_retry.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
            return Ok(false);
        }
        w.last_retry = Some(Instant::now());
        self.recover_locked(&mut w).map(|_| true)
    }

    /// Reopens the database and writes what memory holds into it first; returns the
    /// number of events written from memory. Blocking.
    pub fn recover(&self) -> Result<u64, BufferError> {
        let mut w = lock(&self.inner.write);
        self.recover_locked(&mut w)
    }

    fn recover_locked(&self, w: &mut WriterState) -> Result<u64, BufferError> {
        let dir = self.inner.dir.clone();
        probe_space(&dir, PROBE_BYTES).map_err(|source| BufferError::Io {
            path: dir.clone(),
            what: "checking that the file system takes writes before reopening",
            source,
        })?;
        self.check(FaultPoint::Open)?;
        if w.vanished {
            if let Some(old) = self.store() {
                self.carry_over(&old);
            }
            w.state_lock = None;
            w.vanished = false;
        }
        // The old handles go before the database is opened again (sled's own lock).
        drop(self.set_store(None));
        let fresh_files = w.state_lock.is_none();
        if fresh_files {
            w.state_lock = Some(take_lock(&dir)?);
            w.live = live(&dir)?;
        }
        let (store, corrupt) = open_store(&w.live.path, &self.inner.opts, false)?;
        self.inner
            .corrupt_recoveries
            .fetch_add(corrupt, std::sync::atomic::Ordering::Relaxed);
        if fresh_files {
            let loaded = load(&dir, &store).map_err(|e| self.sled_err(e))?;
            self.reconcile(&loaded);
        }
        self.set_store(Some(Arc::new(store)));
        w.failed = false;
        let restored = self.mem().memory_events();
        self.flush_locked(w)?;
        self.inner.health.recovered(&dir, restored);
        Ok(restored)
    }

    /// The database a queue started without (or found again) is open at last: its
    /// totals become the stored ones and seqs go on above what it proves. Events held
    /// meanwhile with a seq at or below its last block (only a clock set back makes one)
    /// are dropped, logged and counted: blocks stay in seq order.
    fn reconcile(&self, loaded: &super::open::Loaded) {
        let mut m = self.mem();
        let led = &loaded.ledger;
        m.acked = led
            .acked
            .iter()
            .copied()
            .filter(|s| *s > led.watermark)
            .collect();
        m.watermark = led.watermark;
        m.stored_events = led.events;
        m.stored_bytes = led.bytes;
        m.stored_last = loaded.stored_last;
        m.last_block = led.last_block;
        m.written = None;
        if loaded.floor > m.next {
            m.next = loaded.floor;
        }
        let floor = m.stored_last.max(m.watermark);
        let mut clashing = 0;
        while m
            .sealed
            .front()
            .and_then(Entries::first)
            .is_some_and(|s| s <= floor)
            || m.open.first().is_some_and(|s| s <= floor)
        {
            if let Some(front) = m.sealed.front_mut() {
                front.pop_front();
                if front.is_empty() {
                    m.sealed.pop_front();
                }
            } else {
                m.open.pop_front();
            }
            clashing += 1;
        }
        m.want_reserved = m.want_reserved.max(m.next + super::SEQ_BLOCK);
        drop(m);
        if clashing > 0 {
            self.inner
                .dropped
                .fetch_add(clashing, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                clashing,
                stored_floor = floor,
                "BUFFER events held while the files could not be opened have seqs the \
                 database already used (the clock was set back); dropped and counted"
            );
        }
    }

    /// The files vanished but the open handles still read them: every live block and
    /// every state entry goes into memory, within `memory_max_bytes` for the events.
    fn carry_over(&self, old: &Store) {
        let mut m = self.mem();
        let mut carried: Vec<Entries> = Vec::new();
        let mut lost = 0u64;
        let range = super::store::key(m.watermark.saturating_add(1))..;
        for item in old.blocks.range(range) {
            let Ok((_, v)) = item else {
                lost += 1;
                continue;
            };
            match block::decode(&v) {
                Ok(block) => {
                    let mut b = Entries::default();
                    for (s, rec) in block.iter() {
                        if !m.acked.contains(&s) {
                            b.push(s, rec.to_vec());
                        }
                    }
                    if !b.is_empty() {
                        carried.push(b);
                    }
                }
                Err(_) => lost += 1,
            }
        }
        let limit = self.inner.opts.memory_max_bytes;
        let mut bytes: u64 = carried.iter().map(|b| b.bytes).sum::<u64>() + m.memory_bytes();
        while bytes > limit && !carried.is_empty() {
            let b = carried.remove(0);
            bytes -= b.bytes;
            lost += b.len() as u64;
        }
        m.acked.clear();
        m.stored_events = 0;
        m.stored_bytes = 0;
        m.garbage.clear();
        m.quarantine.clear();
        m.written = None;
        for b in carried.into_iter().rev() {
            m.sealed.push_front(b);
        }
        carry_state(old, &mut m);
        drop(m);
        if lost > 0 {
            self.inner
                .dropped
                .fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                lost,
                "events of the vanished files could not be kept (unreadable, or over memory_max_bytes)"
            );
        }
    }

    /// Whether the live database's files are still where the queue opened them: a state
    /// directory deleted or unmounted under a running daemon leaves sled writing into
    /// files nobody will find again. Degrades the queue when they are gone.
    pub(crate) fn check_files_present(&self, w: &mut WriterState) -> Result<(), BufferError> {
        if self.store().is_none() || w.live.path.join("conf").is_file() {
            return Ok(());
        }
        let e = BufferError::Vanished {
            path: w.live.path.clone(),
        };
        w.vanished = true;
        w.failed = true;
        self.degrade(&e);
        Err(e)
    }
}

/// Every state entry of `old` not already waiting in memory.
fn carry_state(old: &Store, m: &mut Mem) {
    for name in old.db.tree_names() {
        let Some(store_name) = std::str::from_utf8(&name)
            .ok()
            .and_then(|n| n.strip_prefix(super::store::TREE_PREFIX))
        else {
            continue;
        };
        let store_name: Arc<str> = store_name.into();
        let Ok(tree) = old.db.open_tree(&name) else {
            continue;
        };
        for (k, v) in tree.iter().flatten() {
            let entry = (store_name.clone(), k.to_vec());
            if !m.kv.contains_key(&entry) {
                m.kv_version += 1;
                let version = m.kv_version;
                m.kv.insert(
                    entry,
                    super::log::KvWrite {
                        value: Some(v.to_vec()),
                        version,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
#[path = "degraded_tests.rs"]
mod tests;
