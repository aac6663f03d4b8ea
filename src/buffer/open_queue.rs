//! Opening the queue: the database, then the seq floor from the meta tree, the side file
//! and the last stored key.

use super::QueueOptions;
use super::faults::Faults;
use super::generation;
use super::held::Held;
use super::open::{LOCK_WAIT, dir_size};
use super::seqfile;
use super::sled_queue::{
    Acct, BufferError, Inner, Live, META_RESERVED, OWNER_FILE, Queue, SeqState, Unflushed, key,
    seq_of,
};
use crate::ops::health::BufferHealth;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

impl Queue {
    /// Opens (or creates) the queue in directory `dir` (e.g. `<state_dir>/buffer`).
    /// The database itself is `dir` or a generation beside it (see `generation.rs`).
    pub fn open(dir: &Path, opts: QueueOptions) -> Result<Queue, BufferError> {
        let lock_path = generation::lock_path(dir);
        let state_lock = match generation::lock(dir, LOCK_WAIT) {
            Ok(Ok(f)) => f,
            Ok(Err(holder)) => {
                return Err(BufferError::Locked {
                    path: dir.to_path_buf(),
                    lock: lock_path,
                    holder,
                });
            }
            Err(source) => {
                return Err(BufferError::Io {
                    path: lock_path,
                    what: "taking the buffer lock",
                    source,
                });
            }
        };
        let generation = generation::current(dir);
        let live = generation::gen_dir(dir, generation);
        let (store, mut corrupt_recoveries) = super::open::open_store(&live, &opts, true)?;
        // Only now, holding the lock and the live database: what a crash during a
        // compaction left beside it goes.
        generation::remove_strays(dir, generation);
        let sled_err = |source| BufferError::Sled {
            path: dir.to_path_buf(),
            source,
        };
        // The seq floor: the largest of the db's reservation, the side file's, and the
        // last stored key + 1.
        let mut floor = 1u64;
        let mut rewrite_meta = false;
        match store.meta.get(META_RESERVED).map_err(sled_err)? {
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
        let acct = scan(&store.events).map_err(sled_err)?;
        if let Some(last) = store.events.last().map_err(sled_err)?
            && let Some(seq) = seq_of(&last.0)
        {
            floor = floor.max(seq.saturating_add(1));
        }
        if rewrite_meta {
            store
                .meta
                .insert(META_RESERVED, &key(floor))
                .map_err(sled_err)?;
            store.db.flush().map_err(sled_err)?;
        }
        let owner = live.join(OWNER_FILE);
        if let Err(e) = fs::write(&owner, format!("{}\n", std::process::id())) {
            tracing::warn!(path = %owner.display(), error = %e, "could not write the owner pid file");
        }
        tracing::info!(
            path = %dir.display(),
            events = acct.events,
            bytes = acct.bytes,
            next_seq = floor,
            generation,
            "buffer opened"
        );
        Ok(Queue {
            inner: Arc::new(Inner {
                dir: Arc::new(dir.to_path_buf()),
                seq_file,
                opts,
                store: RwLock::new(Some(store)),
                disk_bytes: AtomicU64::new(dir_size(&live)),
                live: Mutex::new(Live {
                    generation,
                    path: live,
                }),
                _lock: state_lock,
                space: Mutex::new(Default::default()),
                compacting: Mutex::new(()),
                seq: Mutex::new(SeqState {
                    next: floor,
                    // Nothing is reserved for this run yet: the first next_seq reserves.
                    reserved_until: floor,
                }),
                pushed: AtomicU64::new(floor.saturating_sub(1)),
                acct: Mutex::new(acct),
                held: Mutex::new(Held::default()),
                unflushed: Mutex::new(Unflushed::default()),
                dropped: AtomicU64::new(0),
                malformed: AtomicU64::new(0),
                corrupt_recoveries: AtomicU64::new(corrupt_recoveries),
                dirty: Arc::new(AtomicBool::new(false)),
                health: BufferHealth::default(),
                faults: Arc::new(Faults::default()),
                last_retry: Mutex::new(None),
            }),
        })
    }
}

/// Event count and byte sum of `events`.
pub(crate) fn scan(events: &sled::Tree) -> Result<Acct, sled::Error> {
    let mut acct = Acct::default();
    for item in events.iter() {
        let (_, v) = item?;
        acct.events += 1;
        acct.bytes += v.len() as u64;
    }
    Ok(acct)
}
