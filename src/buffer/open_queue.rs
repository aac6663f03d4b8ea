//! Opening the queue: the database, then the seq floor from the meta tree, the side file
//! and the last stored key.

use super::QueueOptions;
use super::faults::Faults;
use super::generation;
use super::held::Held;
use super::open::{LOCK_WAIT, dir_size};
use super::seqfile;
use super::sled_queue::{
    Acct, BufferError, Inner, Live, META_RESERVED, OWNER_FILE, Queue, SeqState, Store, Unflushed,
    key, seq_of,
};
use crate::ops::health::BufferHealth;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

impl Queue {
    /// Opens (or creates) the queue in directory `dir` (e.g. `<state_dir>/buffer`).
    /// The database itself is `dir` or a generation beside it (see `generation.rs`).
    pub fn open(dir: &Path, opts: QueueOptions) -> Result<Queue, BufferError> {
        let state_lock = take_lock(dir)?;
        let Live {
            generation,
            path: live,
        } = Live::current(dir);
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
        let (mut floor, rewrite_meta) = stored_floor(dir, &store)?;
        corrupt_recoveries += u64::from(rewrite_meta);
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
        let disk_bytes = dir_size(&live);
        Ok(assemble(
            dir,
            opts,
            Some(store),
            Live {
                generation,
                path: live,
            },
            Some(state_lock),
            floor,
            acct,
            corrupt_recoveries,
            disk_bytes,
        ))
    }

    /// [`Queue::open`], or, when the queue's files cannot be opened at all (a read-only
    /// or failing file system, an unusable `state_dir`), a queue that starts degraded
    /// (SPEC §5 "Storage faults"): events are held in memory and published directly,
    /// and [`Queue::retry`] opens the files once they can be. A queue another process
    /// holds stays an error ([`BufferError::Locked`]).
    ///
    /// Without its database the queue cannot know the last seq handed out, so it
    /// continues from the current time in milliseconds, or from the side file's bound
    /// if that is higher: a seq the gateway cannot have reached (that would take more
    /// than one event per millisecond since 1970), so none is reused. The limit: a
    /// second such start with the clock set back could meet the first one's seqs.
    pub fn open_or_degraded(dir: &Path, opts: QueueOptions) -> Result<Queue, BufferError> {
        let err = match Queue::open(dir, opts.clone()) {
            Ok(q) => return Ok(q),
            Err(e @ BufferError::Locked { .. }) => return Err(e),
            Err(e) => e,
        };
        let seq_file = seqfile::path_for(dir);
        let side = seqfile::read(&seq_file).ok().flatten().unwrap_or(0);
        let floor = side.max(crate::model::now_ms()).max(1);
        // The fault itself is the degrade line below; this says what it means for seqs.
        tracing::warn!(
            path = %dir.display(),
            next_seq = floor,
            "buffer files cannot be opened: seqs continue from a time-based floor until they can"
        );
        let q = assemble(
            dir,
            opts,
            None,
            Live::current(dir),
            None,
            floor,
            Acct::default(),
            0,
            0,
        );
        q.inner.floor_unknown.store(true, Ordering::Release);
        q.degrade(&err);
        Ok(q)
    }
}

/// The exclusive lock on the queue at `dir` (`<dir>.lock`), waiting up to [`LOCK_WAIT`].
pub(crate) fn take_lock(dir: &Path) -> Result<fs::File, BufferError> {
    let lock = generation::lock_path(dir);
    match generation::lock(dir, LOCK_WAIT) {
        Ok(Ok(f)) => Ok(f),
        Ok(Err(holder)) => Err(BufferError::Locked {
            path: dir.to_path_buf(),
            lock,
            holder,
        }),
        Err(source) => Err(BufferError::Io {
            path: lock,
            what: "taking the buffer lock",
            source,
        }),
    }
}

impl Live {
    /// The live generation of the queue at `dir`, as its pointer file names it now.
    pub(crate) fn current(dir: &Path) -> Live {
        let generation = generation::current(dir);
        Live {
            generation,
            path: generation::gen_dir(dir, generation),
        }
    }
}

/// The seq floor the database `store` of the queue at `dir` proves: its reservation and
/// its last key + 1; `true` when the reservation was malformed (to be rewritten).
pub(crate) fn stored_floor(dir: &Path, store: &Store) -> Result<(u64, bool), BufferError> {
    let sled_err = |source| BufferError::Sled {
        path: dir.to_path_buf(),
        source,
    };
    let mut floor = 1u64;
    let mut malformed = false;
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
                malformed = true;
            }
        },
    }
    if let Some(last) = store.events.last().map_err(sled_err)?
        && let Some(seq) = seq_of(&last.0)
    {
        floor = floor.max(seq.saturating_add(1));
    }
    Ok((floor, malformed))
}

/// The queue's shared state, open or not.
#[allow(clippy::too_many_arguments)]
fn assemble(
    dir: &Path,
    opts: QueueOptions,
    store: Option<Store>,
    live: Live,
    state_lock: Option<fs::File>,
    floor: u64,
    acct: Acct,
    corrupt_recoveries: u64,
    disk_bytes: u64,
) -> Queue {
    Queue {
        inner: Arc::new(Inner {
            dir: Arc::new(dir.to_path_buf()),
            seq_file: seqfile::path_for(dir),
            opts,
            store: RwLock::new(store),
            disk_bytes: AtomicU64::new(disk_bytes),
            live: Mutex::new(live),
            state_lock: Mutex::new(state_lock),
            floor_unknown: AtomicBool::new(false),
            vanished: AtomicBool::new(false),
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
