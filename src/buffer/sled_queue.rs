//! sled implementation of the queue. See the module docs of `buffer` for the contract.
//!
//! Trees: `events` (seq BE u64 -> [`codec`] record), `meta` (`seq_reserved_until`),
//! `quarantine` (undecodable records moved out of the way, capped), and `kv:<name>` for
//! [`KvStore`]s. Byte and event counts are kept in memory (scanned at open) under one mutex
//! that every mutation of `events` takes, so `max_bytes` accounting stays exact.

use super::WhenFull;
use super::kv::{self, KvStore};
use super::open::{OpenFailure, dir_size, locked_error, move_aside, open_sled_waiting};
use super::{BufferStats, PushOutcome, QueueOptions, Record, record, seqfile};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// seqs reserved per durable write of the upper bound.
pub const SEQ_BLOCK: u64 = 1024;
/// Undecodable records kept for inspection; beyond this they are just deleted.
const QUARANTINE_MAX: usize = 100;
const EVENTS_TREE: &str = "events";
const META_TREE: &str = "meta";
const QUARANTINE_TREE: &str = "quarantine";
const META_RESERVED: &[u8] = b"seq_reserved_until";
/// Written beside sled's files so a `Locked` error can name the holder.
pub(crate) const OWNER_FILE: &str = "owner.pid";

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer at {path}: {source}")]
    Sled {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("buffer at {path}: record {seq} is malformed: {what}")]
    Malformed {
        path: PathBuf,
        seq: u64,
        what: String,
    },
    #[error(
        "buffer at {path} is in use by another polegate process (lock on {lock} held by {holder}); \
         stop it first"
    )]
    Locked {
        path: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("buffer at {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("buffer at {path}: record {seq} has a {len}-byte topic, over the 65535-byte limit")]
    TopicTooLong { path: PathBuf, seq: u64, len: usize },
    #[error("buffer at {path}: seq {seq} was not handed out by next_seq")]
    SeqNotAllocated { path: PathBuf, seq: u64 },
    #[error("buffer at {path}: store name {name:?} must be 1-64 characters of [A-Za-z0-9_.-]")]
    InvalidKvName { path: PathBuf, name: String },
}

/// The durable queue. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    dir: Arc<PathBuf>,
    seq_file: PathBuf,
    opts: QueueOptions,
    db: sled::Db,
    events: sled::Tree,
    meta: sled::Tree,
    quarantine: sled::Tree,
    seq: Mutex<SeqState>,
    acct: Mutex<Acct>,
    dropped: AtomicU64,
    malformed: AtomicU64,
    corrupt_recoveries: u64,
    /// Set by every write, cleared by `flush`: a flush with nothing to do costs nothing.
    dirty: Arc<AtomicBool>,
}

#[derive(Debug)]
struct SeqState {
    next: u64,
    /// Every seq below this is durably reserved (meta tree and side file).
    reserved_until: u64,
}

#[derive(Debug, Default)]
struct Acct {
    events: u64,
    bytes: u64,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_of(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Queue {
    /// Opens (or creates) the queue in directory `dir` (e.g. `<state_dir>/buffer`).
    pub fn open(dir: &Path, opts: QueueOptions) -> Result<Queue, BufferError> {
        let io_err = |what, source| BufferError::Io {
            path: dir.to_path_buf(),
            what,
            source,
        };
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| io_err("creating the parent directory", e))?;
        }
        let mut corrupt_recoveries = 0;
        let db = match open_sled_waiting(dir, &opts) {
            Ok(db) => db,
            Err(OpenFailure::Locked) => return Err(locked_error(dir)),
            Err(OpenFailure::Other(source)) => {
                return Err(BufferError::Sled {
                    path: dir.to_path_buf(),
                    source,
                });
            }
            Err(OpenFailure::Corrupt(why)) => {
                let aside =
                    move_aside(dir).map_err(|e| io_err("moving a corrupt database aside", e))?;
                tracing::error!(
                    path = %dir.display(),
                    moved_to = %aside.display(),
                    error = %why,
                    "BUFFER DATABASE IS CORRUPT: moved it aside and started an empty one; \
                     queued events in it are not delivered"
                );
                corrupt_recoveries += 1;
                match open_sled_waiting(dir, &opts) {
                    Ok(db) => db,
                    Err(OpenFailure::Locked) => return Err(locked_error(dir)),
                    Err(OpenFailure::Other(source)) => {
                        return Err(BufferError::Sled {
                            path: dir.to_path_buf(),
                            source,
                        });
                    }
                    Err(OpenFailure::Corrupt(why)) => {
                        return Err(BufferError::Io {
                            path: dir.to_path_buf(),
                            what: "opening a fresh database after moving a corrupt one aside",
                            source: io::Error::other(why),
                        });
                    }
                }
            }
        };
        let sled_err = |source| BufferError::Sled {
            path: dir.to_path_buf(),
            source,
        };
        let events = db.open_tree(EVENTS_TREE).map_err(sled_err)?;
        let meta = db.open_tree(META_TREE).map_err(sled_err)?;
        let quarantine = db.open_tree(QUARANTINE_TREE).map_err(sled_err)?;

        // The seq floor: the largest of the db's reservation, the side file's, and the
        // last stored key + 1.
        let mut floor = 1u64;
        let mut rewrite_meta = false;
        match meta.get(META_RESERVED).map_err(sled_err)? {
            None => {}
            Some(v) => match seq_of(&v) {
                Some(n) => floor = floor.max(n),
                None => {
                    tracing::error!(
                        path = %dir.display(),
                        len = v.len(),
                        "BUFFER seq reservation in the meta tree is malformed; recovering \
                         the seq floor from the side file and the stored events"
                    );
                    corrupt_recoveries += 1;
                    rewrite_meta = true;
                }
            },
        }
        let seq_file = seqfile::path_for(dir);
        match seqfile::read(&seq_file) {
            Ok(Some(n)) => floor = floor.max(n),
            Ok(None) => {}
            Err(e) => tracing::error!(
                path = %seq_file.display(),
                error = %e,
                "seq side file is unreadable; relying on the database's reservation"
            ),
        }
        let mut acct = Acct::default();
        for item in events.iter() {
            let (k, v) = item.map_err(sled_err)?;
            acct.events += 1;
            acct.bytes += v.len() as u64;
            if let Some(seq) = seq_of(&k) {
                floor = floor.max(seq.saturating_add(1));
            }
        }
        if rewrite_meta {
            meta.insert(META_RESERVED, &key(floor)).map_err(sled_err)?;
            db.flush().map_err(sled_err)?;
        }
        let owner = dir.join(OWNER_FILE);
        if let Err(e) = fs::write(&owner, format!("{}\n", std::process::id())) {
            tracing::warn!(path = %owner.display(), error = %e, "could not write the owner pid file");
        }
        tracing::info!(
            path = %dir.display(),
            events = acct.events,
            bytes = acct.bytes,
            next_seq = floor,
            "buffer opened"
        );
        Ok(Queue {
            inner: Arc::new(Inner {
                dir: Arc::new(dir.to_path_buf()),
                seq_file,
                opts,
                db,
                events,
                meta,
                quarantine,
                seq: Mutex::new(SeqState {
                    next: floor,
                    // Nothing is reserved for this run yet: the first next_seq reserves.
                    reserved_until: floor,
                }),
                acct: Mutex::new(acct),
                dropped: AtomicU64::new(0),
                malformed: AtomicU64::new(0),
                corrupt_recoveries,
                dirty: Arc::new(AtomicBool::new(false)),
            }),
        })
    }

    fn sled_err(&self, source: sled::Error) -> BufferError {
        BufferError::Sled {
            path: self.inner.dir.as_ref().clone(),
            source,
        }
    }

    fn mark_dirty(&self) {
        self.inner.dirty.store(true, Ordering::Release);
    }

    /// The queue's directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Allocates the next `seq` (strictly increasing, never reused across restarts).
    pub fn next_seq(&self) -> Result<u64, BufferError> {
        let mut s = lock(&self.inner.seq);
        if s.next >= s.reserved_until {
            let bound = s.next.saturating_add(SEQ_BLOCK);
            // Both copies must be durable before any seq of the block leaves this function.
            self.inner
                .meta
                .insert(META_RESERVED, &key(bound))
                .map_err(|e| self.sled_err(e))?;
            self.inner.db.flush().map_err(|e| self.sled_err(e))?;
            seqfile::write(&self.inner.seq_file, bound).map_err(|source| BufferError::Io {
                path: self.inner.seq_file.clone(),
                what: "writing the seq side file",
                source,
            })?;
            s.reserved_until = bound;
        }
        let seq = s.next;
        s.next += 1;
        Ok(seq)
    }

    /// Stores `rec` under `seq` (which must come from `next_seq`), applying `on_full`.
    pub fn push(&self, seq: u64, rec: &Record) -> Result<PushOutcome, BufferError> {
        if seq == 0 || seq >= lock(&self.inner.seq).next {
            return Err(BufferError::SeqNotAllocated {
                path: self.inner.dir.as_ref().clone(),
                seq,
            });
        }
        let value = record::encode(rec).ok_or_else(|| BufferError::TopicTooLong {
            path: self.inner.dir.as_ref().clone(),
            seq,
            len: rec.topic.len(),
        })?;
        let size = value.len() as u64;
        let max = self.inner.opts.max_bytes;
        let mut acct = lock(&self.inner.acct);
        if size > max {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                seq,
                size,
                max,
                "record larger than buffer.max_bytes, dropped"
            );
            return Ok(PushOutcome::Rejected);
        }
        let mut evicted = 0;
        if acct.bytes + size > max {
            match self.inner.opts.on_full {
                WhenFull::DropNewest => {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(PushOutcome::Rejected);
                }
                WhenFull::DropOldest => {
                    while acct.bytes + size > max {
                        match self.inner.events.pop_min().map_err(|e| self.sled_err(e))? {
                            Some((_, v)) => {
                                acct.events = acct.events.saturating_sub(1);
                                acct.bytes = acct.bytes.saturating_sub(v.len() as u64);
                                evicted += 1;
                            }
                            None => {
                                // Accounting drifted from the tree (cannot happen while all
                                // mutations hold this lock); the tree is the truth.
                                *acct = Acct::default();
                                break;
                            }
                        }
                    }
                    self.inner.dropped.fetch_add(evicted, Ordering::Relaxed);
                }
            }
        }
        let old = self
            .inner
            .events
            .insert(key(seq), value)
            .map_err(|e| self.sled_err(e))?;
        match old {
            Some(old) => acct.bytes = acct.bytes.saturating_sub(old.len() as u64),
            None => acct.events += 1,
        }
        acct.bytes += size;
        self.mark_dirty();
        Ok(PushOutcome::Stored { evicted })
    }

    /// Up to `limit` records with seq > `after` (all from the oldest when `None`), in order.
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
        let mut out = Vec::with_capacity(limit.min(1024));
        if limit == 0 {
            return Ok(out);
        }
        for item in self.inner.events.range(key(start)..) {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            let decoded = match seq_of(&k) {
                None => Err((0, format!("key of {} bytes, not 8", k.len()))),
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
                Err((seq, what)) => {
                    let err = BufferError::Malformed {
                        path: self.inner.dir.as_ref().clone(),
                        seq,
                        what,
                    };
                    tracing::error!(seq, error = %err, "skipping a malformed buffered record");
                    self.quarantine(&k)?;
                }
            }
        }
        Ok(out)
    }

    fn quarantine(&self, k: &[u8]) -> Result<(), BufferError> {
        let mut acct = lock(&self.inner.acct);
        let Some(v) = self.inner.events.remove(k).map_err(|e| self.sled_err(e))? else {
            return Ok(()); // acked or evicted meanwhile
        };
        acct.events = acct.events.saturating_sub(1);
        acct.bytes = acct.bytes.saturating_sub(v.len() as u64);
        self.inner.malformed.fetch_add(1, Ordering::Relaxed);
        if self.inner.quarantine.len() < QUARANTINE_MAX {
            self.inner
                .quarantine
                .insert(k, v)
                .map_err(|e| self.sled_err(e))?;
        }
        self.mark_dirty();
        Ok(())
    }

    /// Malformed records skipped (and quarantined) by `read_after` since open.
    pub fn malformed_skipped(&self) -> u64 {
        self.inner.malformed.load(Ordering::Relaxed)
    }

    /// Removes `seq` (its PUBACK came). Unknown seqs are ignored.
    pub fn ack(&self, seq: u64) -> Result<(), BufferError> {
        let mut acct = lock(&self.inner.acct);
        if let Some(v) = self
            .inner
            .events
            .remove(key(seq))
            .map_err(|e| self.sled_err(e))?
        {
            acct.events = acct.events.saturating_sub(1);
            acct.bytes = acct.bytes.saturating_sub(v.len() as u64);
            self.mark_dirty();
        }
        Ok(())
    }

    /// Makes every insert, ack and seq reservation durable.
    pub fn flush(&self) -> Result<(), BufferError> {
        if self.inner.dirty.swap(false, Ordering::AcqRel)
            && let Err(e) = self.inner.db.flush()
        {
            self.mark_dirty();
            return Err(self.sled_err(e));
        }
        Ok(())
    }

    /// Events in the queue (cheap: an in-memory counter).
    pub fn len(&self) -> u64 {
        lock(&self.inner.acct).events
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters and sizes; walks the database directory for `disk_bytes`, so call it
    /// for reports, not per event.
    pub fn stats(&self) -> BufferStats {
        let acct = lock(&self.inner.acct);
        BufferStats {
            events: acct.events,
            bytes: acct.bytes,
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            corrupt_recoveries: self.inner.corrupt_recoveries,
            disk_bytes: dir_size(&self.inner.dir),
        }
    }

    /// Removes every queued event (`polegate buffer purge`).
    pub fn purge(&self) -> Result<u64, BufferError> {
        let n = {
            let mut acct = lock(&self.inner.acct);
            self.inner.events.clear().map_err(|e| self.sled_err(e))?;
            std::mem::take(&mut *acct).events
        };
        self.mark_dirty();
        self.flush()?;
        Ok(n)
    }

    /// A named persisted map in the same database (see [`KvStore`]).
    pub fn kv(&self, name: &str) -> Result<KvStore, BufferError> {
        if !kv::valid_name(name) {
            return Err(BufferError::InvalidKvName {
                path: self.inner.dir.as_ref().clone(),
                name: name.to_owned(),
            });
        }
        let tree = self
            .inner
            .db
            .open_tree(format!("{}{name}", kv::TREE_PREFIX))
            .map_err(|e| self.sled_err(e))?;
        Ok(KvStore {
            name: name.into(),
            tree,
            path: Arc::clone(&self.inner.dir),
            dirty: Arc::clone(&self.inner.dirty),
        })
    }
}

#[cfg(test)]
#[path = "sled_queue_tests.rs"]
mod tests;
