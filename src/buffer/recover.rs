//! Recovery from a storage fault (SPEC §5 "Storage faults"). sled latches an I/O error
//! (every later write fails), so recovery closes the database and reopens it:
//!
//! 1. under the locks: take the old handles out, and copy what they hold only in memory
//!    (events and kv writes since the last successful flush) into the held set;
//! 2. without locks (slow: the lock wait, sled's recovery, the accounting scan): drop the
//!    old database, open it again; meanwhile pushes are held and acks remembered;
//! 3. under the locks: write the held events, acks and kv writes into the database
//!    first, flush, and only then leave the degraded state.
//!
//! Nothing that was in the queue is lost on the way; a failed step leaves everything in
//! memory for the next attempt.

use super::faults::FaultPoint;
use super::held::Held;
use super::kv::TREE_PREFIX;
use super::open::open_store;
use super::open_queue::{scan, stored_floor, take_lock};
use super::record;
use super::sled_queue::{Acct, BufferError, Live, Queue, Store, key, lock};
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often a degraded queue retries (SPEC §5 asks for at least every 10 s).
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Free space proven before a reopen (plus twice the held events).
const PROBE_MIN: u64 = 2 * 1024 * 1024;

/// Writes and syncs `bytes` in a file beside the queue directory, then removes it.
fn probe_space(dir: &Path, bytes: u64) -> io::Result<()> {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".probe");
    let path = dir.with_file_name(name);
    let res = (|| {
        // A queue that started without its directory (gone, or not creatable) creates it.
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
    /// While degraded, reopens the database if the last attempt is `RETRY_EVERY` old.
    /// Blocking (call it from a blocking thread). `Ok(true)` when the queue stores again.
    pub fn retry(&self) -> Result<bool, BufferError> {
        if !self.inner.health.is_degraded() {
            return Ok(false);
        }
        {
            let mut last = lock(&self.inner.last_retry);
            if last.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        self.recover().map(|_| true)
    }

    /// Reopens the database and writes what memory holds into it first; returns the
    /// number of held events written. Blocking.
    pub fn recover(&self) -> Result<u64, BufferError> {
        // sled's recovery at open writes; on a still-full disk it was measured to lose
        // the events it had flushed before the fault. Reopen only once there is room.
        let need = PROBE_MIN.max(2 * lock(&self.inner.held).bytes());
        probe_space(&self.inner.dir, need).map_err(|source| BufferError::Io {
            path: self.inner.dir.as_ref().clone(),
            what: "checking for free space before reopening",
            source,
        })?;
        let old = self.close_carrying_over();
        drop(old);
        self.check(FaultPoint::Open)?;
        if self.inner.vanished.load(Ordering::Acquire) {
            // The lock file went with the directory: take a new one on the new files.
            *lock(&self.inner.state_lock) = None;
        }
        let started_without_files = self.take_lock_if_missing()?;
        let live = lock(&self.inner.live).path.clone();
        let (store, corrupt) = open_store(&live, &self.inner.opts, false)?;
        self.inner
            .corrupt_recoveries
            .fetch_add(corrupt, Ordering::Relaxed);
        let scanned = scan(&store.events).map_err(|e| self.sled_err(e))?;
        if started_without_files {
            self.reconcile_floor(&store)?;
        }

        let restored = {
            let mut acct = lock(&self.inner.acct);
            let mut held = lock(&self.inner.held);
            let mut slot = self
                .inner
                .store
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            *acct = scanned;
            let res = self.write_held(&store, &mut acct, &held);
            *slot = Some(store);
            res?;
            self.inner.vanished.store(false, Ordering::Release);
            let restored = held.len();
            *held = Held::default();
            self.inner.dirty.store(false, Ordering::Release);
            self.inner.health.recovered(&self.inner.dir, restored);
            restored
        };
        if started_without_files {
            // New or found-again files learn the seq floor now, not at the next block: a
            // crash before it must not start the next run below the seqs handed out.
            let bound = {
                let s = lock(&self.inner.seq);
                s.reserved_until.max(s.next)
            };
            if let Err(e) = self.reserve(bound) {
                tracing::warn!(error = %e, "could not record the seq floor in the reopened buffer");
            }
        }
        Ok(restored)
    }

    /// For a queue that started without its files ([`Queue::open_or_degraded`]): takes
    /// the queue's lock and finds its live generation. `Ok(true)` when it did.
    fn take_lock_if_missing(&self) -> Result<bool, BufferError> {
        let mut slot = lock(&self.inner.state_lock);
        if slot.is_some() {
            return Ok(false);
        }
        let dir = self.inner.dir.as_ref();
        let file = take_lock(dir)?;
        *lock(&self.inner.live) = Live::current(dir);
        *slot = Some(file);
        Ok(true)
    }

    /// The database a queue started without is open at last: the seqs handed out go on
    /// above what it proves (its reservation, its last key) as well as above the
    /// time-based floor. A held event below it may share a seq with a stored one, which it
    /// then replaces: that takes a second start without the files with the clock set back
    /// (see [`Queue::open_or_degraded`]); it is logged and counted as dropped, not hidden.
    fn reconcile_floor(&self, store: &Store) -> Result<(), BufferError> {
        let (stored, _) = stored_floor(&self.inner.dir, store)?;
        {
            let mut s = lock(&self.inner.seq);
            if stored > s.next {
                s.next = stored;
                s.reserved_until = stored;
            }
        }
        let clashing = lock(&self.inner.held).count_below(stored);
        if clashing > 0 {
            self.inner.dropped.fetch_add(clashing, Ordering::Relaxed);
            tracing::error!(
                clashing,
                stored_floor = stored,
                "BUFFER events held while the files could not be opened have seqs the \
                 database already used (the clock was set back); written over the stored \
                 events of the same seq, which are counted as dropped"
            );
        }
        self.inner.floor_unknown.store(false, Ordering::Release);
        Ok(())
    }

    /// Step 1: takes the handles out, keeping in memory what only they held.
    fn close_carrying_over(&self) -> Option<Store> {
        let _acct = lock(&self.inner.acct);
        let mut held = lock(&self.inner.held);
        let mut unflushed = lock(&self.inner.unflushed);
        let mut slot = self
            .inner
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let old = slot.take()?;
        let mut lost = 0;
        if self.inner.vanished.load(Ordering::Acquire) {
            // The files are gone (deleted or unmounted) but the open handles still read
            // them: everything they hold is carried over, not only the unflushed part.
            lost += carry_over_everything(&old, &mut held);
            unflushed.events.clear();
            unflushed.kv.clear();
        }
        for seq in std::mem::take(&mut unflushed.events) {
            match old.events.get(key(seq)) {
                Ok(None) => {} // acknowledged meanwhile
                Ok(Some(v)) => match record::decode(&v) {
                    Ok(rec) => held.keep(seq, rec),
                    Err(_) => lost += 1,
                },
                Err(_) => lost += 1,
            }
        }
        for (name, k) in std::mem::take(&mut unflushed.kv) {
            if held.kv.contains_key(&(name.clone(), k.clone())) {
                continue;
            }
            let value = old
                .db
                .open_tree(format!("{TREE_PREFIX}{name}"))
                .and_then(|t| t.get(&k));
            if let Ok(v) = value {
                held.kv.insert((name, k), v.map(|v| v.to_vec()));
            }
        }
        if lost > 0 {
            self.inner.dropped.fetch_add(lost, Ordering::Relaxed);
            tracing::error!(
                lost,
                "events written before the storage fault could not be read back; lost"
            );
        }
        Some(old)
    }

    /// Whether the live database's files are still where the queue opened them: a state
    /// directory deleted or unmounted under a running daemon leaves sled writing into
    /// files nobody will find again. Marks the queue degraded when they are gone.
    pub(crate) fn check_files_present(&self) -> Result<(), BufferError> {
        let live = lock(&self.inner.live).path.clone();
        if self.store().is_none() || live.join("conf").is_file() {
            return Ok(());
        }
        let e = BufferError::Vanished { path: live };
        self.inner.vanished.store(true, Ordering::Release);
        self.degrade(&e);
        Err(e)
    }

    /// Step 3: the held events, acks and kv writes into `store`, then a flush.
    fn write_held(&self, store: &Store, acct: &mut Acct, held: &Held) -> Result<(), BufferError> {
        let err = |e| self.sled_err(e);
        self.check(FaultPoint::Write)?;
        for (seq, rec) in held.all() {
            let Some(value) = record::encode(&rec) else {
                continue;
            };
            let size = value.len() as u64;
            match store.events.insert(key(seq), value).map_err(err)? {
                Some(old) => acct.bytes = acct.bytes.saturating_sub(old.len() as u64),
                None => acct.events += 1,
            }
            acct.bytes += size;
        }
        for seq in &held.acked {
            if let Some(v) = store.events.remove(key(*seq)).map_err(err)? {
                acct.events = acct.events.saturating_sub(1);
                acct.bytes = acct.bytes.saturating_sub(v.len() as u64);
            }
        }
        for ((name, k), v) in &held.kv {
            let tree = store
                .db
                .open_tree(format!("{TREE_PREFIX}{name}"))
                .map_err(err)?;
            match v {
                Some(v) => tree.insert(k.as_slice(), v.as_slice()).map(drop),
                None => tree.remove(k.as_slice()).map(drop),
            }
            .map_err(err)?;
        }
        self.check(FaultPoint::Flush)?;
        store.db.flush().map_err(err)?;
        Ok(())
    }
}

/// Every event and kv entry of `old` into `held` (the files of `old` vanished); returns
/// how many events could not be read back.
fn carry_over_everything(old: &Store, held: &mut Held) -> u64 {
    let mut lost = 0;
    for item in old.events.iter() {
        match item.map(|(k, v)| (super::sled_queue::seq_of(&k), record::decode(&v))) {
            Ok((Some(seq), Ok(rec))) => held.keep(seq, rec),
            _ => lost += 1,
        }
    }
    for name in old.db.tree_names() {
        let Some(store_name) = std::str::from_utf8(&name)
            .ok()
            .and_then(|n| n.strip_prefix(TREE_PREFIX))
        else {
            continue;
        };
        let store_name: std::sync::Arc<str> = store_name.into();
        let Ok(tree) = old.db.open_tree(&name) else {
            continue;
        };
        for (k, v) in tree.iter().flatten() {
            held.kv
                .entry((store_name.clone(), k.to_vec()))
                .or_insert_with(|| Some(v.to_vec()));
        }
    }
    lost
}
