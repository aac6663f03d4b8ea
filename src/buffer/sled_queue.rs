//! sled implementation of the queue. See the module docs of `buffer` for the contract.
//!
//! Trees: `events` (seq BE u64 -> [`record`] record), `meta` (`seq_reserved_until`),
//! `quarantine` (undecodable records moved out of the way, capped), and `kv:<name>` for
//! [`KvStore`]s. Byte and event counts are kept in memory (scanned at open) under one mutex
//! that every mutation of `events` takes, so `max_bytes` accounting stays exact.
//!
//! The database handles sit behind a lock so that a storage fault can replace them
//! (`recover.rs`): while degraded, new events are [`Held`] in memory. Lock order:
//! `acct`, then `held`, then `unflushed`, then `seq`, then `store`.

use super::faults::{FaultPoint, Faults};
use super::held::{Held, HoldOutcome};
use super::{PushOutcome, QueueOptions, Record, WhenFull, record, seqfile};
use crate::ops::health::BufferHealth;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::Instant;

/// seqs reserved per durable write of the upper bound.
pub const SEQ_BLOCK: u64 = 1024;
/// Undecodable records kept for inspection; beyond this they are just deleted.
pub(crate) const QUARANTINE_MAX: usize = 100;
pub(crate) const EVENTS_TREE: &str = "events";
pub(crate) const META_TREE: &str = "meta";
pub(crate) const QUARANTINE_TREE: &str = "quarantine";
pub(crate) const META_RESERVED: &[u8] = b"seq_reserved_until";
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
    #[error("buffer at {path} is closed after a storage fault; retrying")]
    Closed { path: PathBuf },
    #[error(
        "buffer at {path}: its files vanished (deleted or unmounted); what they held is kept \
         in memory until the queue is opened again"
    )]
    Vanished { path: PathBuf },
}

/// The durable queue. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Queue {
    pub(crate) inner: Arc<Inner>,
}

/// The database handles; replaced as a whole when recovery reopens the database.
pub(crate) struct Store {
    pub(crate) db: sled::Db,
    pub(crate) events: sled::Tree,
    pub(crate) meta: sled::Tree,
    pub(crate) quarantine: sled::Tree,
}

pub(crate) struct Inner {
    pub(crate) dir: Arc<PathBuf>,
    pub(crate) seq_file: PathBuf,
    pub(crate) opts: QueueOptions,
    /// None while recovery has closed the database and not reopened it yet.
    pub(crate) store: RwLock<Option<Store>>,
    /// The live generation (`generation.rs`); changed by compaction under `store`'s lock.
    pub(crate) live: Mutex<Live>,
    /// Exclusive ownership of the queue's files (`<dir>.lock`), held while open; `None`
    /// until a queue that started without its files ([`Queue::open_or_degraded`]) opens them.
    pub(crate) state_lock: Mutex<Option<std::fs::File>>,
    /// The queue started without its database, so its seqs continue from a time-based
    /// floor (see [`Queue::open_or_degraded`]) until recovery reconciles it.
    pub(crate) floor_unknown: AtomicBool,
    /// The live files were found gone ([`Queue::check_files_present`]): recovery carries
    /// over everything the open handles still read, and takes a new lock.
    pub(crate) vanished: AtomicBool,
    /// Bytes of the live database's files, as last measured (off the async workers).
    pub(crate) disk_bytes: AtomicU64,
    pub(crate) space: Mutex<super::space::SpaceState>,
    /// Held by a compaction from start to end.
    pub(crate) compacting: Mutex<()>,
    pub(crate) seq: Mutex<SeqState>,
    /// The highest seq whose [`Queue::push`] has returned. Readers stop there (see
    /// `read_after`): sled's range scans are not snapshots, so a scan racing with inserts
    /// is not promised to see an earlier key whenever it sees a later one.
    pub(crate) pushed: AtomicU64,
    pub(crate) acct: Mutex<Acct>,
    pub(crate) held: Mutex<Held>,
    /// What was written since the last successful flush (recovery carries it over).
    pub(crate) unflushed: Mutex<Unflushed>,
    pub(crate) dropped: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) corrupt_recoveries: AtomicU64,
    /// Set by every write, cleared by `flush`: a flush with nothing to do costs nothing.
    pub(crate) dirty: Arc<AtomicBool>,
    pub(crate) health: BufferHealth,
    pub(crate) faults: Arc<Faults>,
    pub(crate) last_retry: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) generation: u64,
    pub(crate) path: PathBuf,
}

#[derive(Debug, Default)]
pub(crate) struct Unflushed {
    pub(crate) events: BTreeSet<u64>,
    pub(crate) kv: BTreeSet<(Arc<str>, Vec<u8>)>,
}

#[derive(Debug)]
pub(crate) struct SeqState {
    pub(crate) next: u64,
    /// Every seq below this is durably reserved (meta tree or side file).
    pub(crate) reserved_until: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Acct {
    pub(crate) events: u64,
    pub(crate) bytes: u64,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn seq_of(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn injected(e: io::Error) -> sled::Error {
    sled::Error::Io(e)
}

impl Queue {
    pub(crate) fn sled_err(&self, source: sled::Error) -> BufferError {
        BufferError::Sled {
            path: self.inner.dir.as_ref().clone(),
            source,
        }
    }

    pub(crate) fn closed(&self) -> BufferError {
        BufferError::Closed {
            path: self.inner.dir.as_ref().clone(),
        }
    }

    pub(crate) fn store(&self) -> RwLockReadGuard<'_, Option<Store>> {
        self.inner
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails with the injected fault at `p`, if any.
    pub(crate) fn check(&self, p: FaultPoint) -> Result<(), BufferError> {
        self.inner
            .faults
            .check(p)
            .map_err(|e| self.sled_err(injected(e)))
    }

    pub(crate) fn mark_dirty(&self) {
        self.inner.dirty.store(true, Ordering::Release);
    }

    /// Enters the degraded state because of `e` (logged once, by the transition).
    pub(crate) fn degrade(&self, e: &BufferError) {
        self.inner.health.degrade(&e.to_string(), &self.inner.dir);
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

    /// Allocates the next `seq` (strictly increasing, never reused across restarts).
    ///
    /// A block is durably reserved in the meta tree and in the side file; one of the two
    /// suffices (open takes the larger), so a degraded database does not stop numbering.
    pub fn next_seq(&self) -> Result<u64, BufferError> {
        let mut s = lock(&self.inner.seq);
        if s.next >= s.reserved_until {
            let bound = s.next.saturating_add(SEQ_BLOCK);
            self.reserve(bound)?;
            s.reserved_until = bound;
        }
        let seq = s.next;
        s.next += 1;
        Ok(seq)
    }

    /// The highest seq pushed so far (stored, held or refused), without allocating one.
    pub fn last_pushed(&self) -> u64 {
        self.inner.pushed.load(Ordering::Acquire)
    }

    /// Makes `bound` the durable seq floor (meta tree and side file; either suffices).
    pub(crate) fn reserve(&self, bound: u64) -> Result<(), BufferError> {
        let in_db = if self.inner.health.is_degraded() {
            Err(self.closed())
        } else {
            let store = self.store();
            match store.as_ref() {
                None => Err(self.closed()),
                Some(st) => self
                    .check(FaultPoint::Write)
                    .and_then(|()| {
                        st.meta
                            .insert(META_RESERVED, &key(bound))
                            .map_err(|e| self.sled_err(e))
                    })
                    .and_then(|_| self.check(FaultPoint::Flush))
                    .and_then(|()| st.db.flush().map(drop).map_err(|e| self.sled_err(e))),
            }
        };
        let in_file =
            seqfile::write(&self.inner.seq_file, bound).map_err(|source| BufferError::Io {
                path: self.inner.seq_file.clone(),
                what: "writing the seq side file",
                source,
            });
        match (in_db, in_file) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) => {
                if !matches!(e, BufferError::Closed { .. }) {
                    self.degrade(&e);
                }
                Ok(())
            }
            (Ok(()), Err(e)) => {
                tracing::warn!(error = %e, "seq reserved in the database only");
                Ok(())
            }
            // Nothing can be persisted, but a queue that started without its database
            // hands out seqs above a time-based floor no earlier run has reached.
            (Err(_), Err(_)) if self.inner.floor_unknown.load(Ordering::Acquire) => Ok(()),
            (Err(_), Err(e)) => Err(e),
        }
    }

    /// Stores `rec` under `seq` (which must come from `next_seq`), applying `on_full`.
    /// While the database cannot store, the record is held in memory instead
    /// ([`PushOutcome::Degraded`]).
    ///
    /// Seqs are pushed in the order `next_seq` handed them out (the pipeline is the one
    /// writer): a reader sees a record only once every earlier push has returned.
    pub fn push(&self, seq: u64, rec: &Record) -> Result<PushOutcome, BufferError> {
        let outcome = self.push_unordered(seq, rec);
        if outcome.is_ok() {
            self.inner.pushed.fetch_max(seq, Ordering::AcqRel);
        }
        outcome
    }

    fn push_unordered(&self, seq: u64, rec: &Record) -> Result<PushOutcome, BufferError> {
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
        if !self.inner.health.is_degraded() {
            match self.push_durable(&mut acct, seq, value, size) {
                Ok(outcome) => return Ok(outcome),
                Err(e) => self.degrade(&e),
            }
        }
        let mut held = lock(&self.inner.held);
        let outcome = held.hold(
            seq,
            rec.clone(),
            self.inner.opts.memory_max_bytes,
            self.inner.opts.on_full,
        );
        Ok(match outcome {
            HoldOutcome::Held { evicted } => {
                self.inner.dropped.fetch_add(evicted, Ordering::Relaxed);
                PushOutcome::Degraded {
                    held: true,
                    evicted,
                }
            }
            HoldOutcome::Rejected => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                PushOutcome::Degraded {
                    held: false,
                    evicted: 0,
                }
            }
        })
    }

    fn push_durable(
        &self,
        acct: &mut Acct,
        seq: u64,
        value: Vec<u8>,
        size: u64,
    ) -> Result<PushOutcome, BufferError> {
        let max = self.inner.opts.max_bytes;
        let store = self.store();
        let st = store.as_ref().ok_or_else(|| self.closed())?;
        self.check(FaultPoint::Write)?;
        let mut evicted = 0;
        if acct.bytes + size > max {
            match self.inner.opts.on_full {
                WhenFull::DropNewest => {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ok(PushOutcome::Rejected);
                }
                WhenFull::DropOldest => {
                    while acct.bytes + size > max {
                        match st.events.pop_min().map_err(|e| self.sled_err(e))? {
                            Some((_, v)) => {
                                acct.events = acct.events.saturating_sub(1);
                                acct.bytes = acct.bytes.saturating_sub(v.len() as u64);
                                evicted += 1;
                                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                            None => {
                                // Accounting drifted from the tree (cannot happen while all
                                // mutations hold this lock); the tree is the truth.
                                *acct = Acct::default();
                                break;
                            }
                        }
                    }
                }
            }
        }
        let old = st
            .events
            .insert(key(seq), value)
            .map_err(|e| self.sled_err(e))?;
        drop(store);
        match old {
            Some(old) => acct.bytes = acct.bytes.saturating_sub(old.len() as u64),
            None => acct.events += 1,
        }
        acct.bytes += size;
        lock(&self.inner.unflushed).events.insert(seq);
        self.mark_dirty();
        Ok(PushOutcome::Stored { evicted })
    }

    /// Makes every insert, ack and seq reservation durable. While degraded there is
    /// nothing to flush: [`Queue::retry`] reopens the database.
    pub fn flush(&self) -> Result<(), BufferError> {
        if self.inner.health.is_degraded() {
            return Ok(());
        }
        if self.inner.dirty.swap(false, Ordering::AcqRel) {
            let mut unflushed = lock(&self.inner.unflushed);
            let store = self.store();
            let st = store.as_ref().ok_or_else(|| self.closed())?;
            let res = self
                .check(FaultPoint::Flush)
                .and_then(|()| st.db.flush().map_err(|e| self.sled_err(e)));
            if let Err(e) = res {
                self.mark_dirty();
                self.degrade(&e);
                return Err(e);
            }
            *unflushed = Unflushed::default();
        }
        Ok(())
    }

    /// Events in the queue, stored or held (cheap: in-memory counters).
    pub fn len(&self) -> u64 {
        let acct = lock(&self.inner.acct);
        let held = lock(&self.inner.held);
        (acct.events + held.len()).saturating_sub(held.acked.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events held only in memory because the queue cannot store (SPEC §5 "Storage
    /// faults"): a stop now loses them.
    pub fn held_in_memory(&self) -> u64 {
        lock(&self.inner.held).len()
    }

    /// Removes every queued event (`polegate buffer purge`).
    pub fn purge(&self) -> Result<u64, BufferError> {
        let n = {
            let mut acct = lock(&self.inner.acct);
            let mut held = lock(&self.inner.held);
            let store = self.store();
            let st = store.as_ref().ok_or_else(|| self.closed())?;
            st.events.clear().map_err(|e| self.sled_err(e))?;
            let n = held.len();
            held.clear();
            held.acked.clear();
            std::mem::take(&mut *acct).events + n
        };
        self.mark_dirty();
        self.flush()?;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "sled_queue_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "fault_tests.rs"]
mod fault_tests;
