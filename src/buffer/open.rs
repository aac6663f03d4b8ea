//! Opening the queue: the lock, the live generation, the database, then the ledger and
//! only the blocks a crash left uncounted. A queue whose files cannot be opened starts
//! degraded.

use super::block::{self, Entries};
use super::faults::Faults;
use super::generation::{self, Live};
use super::ledger::{self, Ledger};
use super::log::{Inner, Mem, Queue, SEQ_BLOCK, SEQ_FAR};
use super::seqfile;
use super::shared::{Signal, WriterState};
use super::store::{
    LEGACY_EVENTS_TREE, LEGACY_RESERVED, LOCK_WAIT, OWNER_FILE, Store, dir_size, key, open_store,
    seq_of,
};
use super::{BufferError, QueueOptions, record};
use crate::ops::health::BufferHealth;
use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

/// What a database holds, as its ledger and the uncounted blocks say.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) ledger: Ledger,
    pub(crate) stored_last: u64,
    /// The smallest seq the next run may hand out.
    pub(crate) floor: u64,
    /// The ledger was damaged and rebuilt.
    pub(crate) repaired: bool,
    /// A ledger was found (damaged or not).
    pub(crate) had_ledger: bool,
}

impl Queue {
    /// Opens (or creates) the queue in directory `dir` (e.g. `<state_dir>/buffer`).
    pub fn open(dir: &Path, opts: QueueOptions) -> Result<Queue, BufferError> {
        let state_lock = take_lock(dir)?;
        let live = live(dir)?;
        let (store, mut corrupt) = open_store(&live.path, &opts, true)?;
        // Only now, holding the lock and the live database: what a crash during a
        // compaction left beside it goes.
        generation::remove_strays(dir, live.generation);
        let sled_err = |source| BufferError::Sled {
            path: dir.to_path_buf(),
            source,
        };
        let loaded = load(dir, &store).map_err(sled_err)?;
        corrupt += u64::from(loaded.repaired);
        let seq_file = seqfile::path_for(dir);
        let side = match seqfile::read(&seq_file) {
            Ok(side) => side,
            Err(e) => {
                tracing::error!(path = %seq_file.display(), error = %e,
                    "seq side file is unreadable; relying on the database's reservation");
                None
            }
        };
        let floor = next_floor(&loaded, side);
        // The first block of seqs is reserved in the side file alone (one small fsync,
        // not a sled flush: a gateway without events never starts sled's I/O threads);
        // the writer records it in the ledger with its first flush.
        let (reserved, side_file) = match seqfile::write(&seq_file, floor + SEQ_BLOCK) {
            Ok(()) => (floor + SEQ_BLOCK, floor + SEQ_BLOCK),
            Err(e) => {
                tracing::warn!(path = %seq_file.display(), error = %e,
                    "seq side file not written; the first event reserves in the database");
                (floor, side.unwrap_or(0))
            }
        };
        let owner = live.path.join(OWNER_FILE);
        if let Err(e) = fs::write(&owner, format!("{}\n", std::process::id())) {
            tracing::warn!(path = %owner.display(), error = %e, "could not write the owner pid file");
        }
        let led = loaded.ledger.clone();
        tracing::info!(path = %dir.display(), events = led.events, bytes = led.bytes,
            next_seq = floor, generation = live.generation, "buffer opened");
        let disk = dir_size(&live.path);
        let mem = Mem {
            next: floor,
            reserved,
            want_reserved: reserved,
            pushed: floor - 1,
            watermark: led.watermark,
            stored_events: led.events,
            stored_bytes: led.bytes,
            stored_last: loaded.stored_last,
            last_block: led.last_block,
            acked: led
                .acked
                .iter()
                .copied()
                .filter(|s| *s > led.watermark)
                .collect(),
            written: Some(led),
            ..Mem::default()
        };
        let w = WriterState {
            live,
            state_lock: Some(state_lock),
            side_file,
            ..WriterState::default()
        };
        let q = assemble(dir, opts, Some(store), w, mem);
        q.inner
            .corrupt_recoveries
            .store(corrupt, std::sync::atomic::Ordering::Relaxed);
        q.inner
            .disk_bytes
            .store(disk, std::sync::atomic::Ordering::Relaxed);
        Ok(q)
    }

    /// [`Queue::open`], or, when the queue's files cannot be opened at all (a read-only
    /// or failing file system, an unusable `state_dir`, a generation pointer naming a
    /// missing directory), a queue that starts degraded (SPEC §5 "Storage faults"): events
    /// are held in memory and published directly, stored state is unavailable, and the
    /// writer opens the files once they can be. A queue another process holds stays an
    /// error ([`BufferError::Locked`]).
    ///
    /// Without its database the queue cannot know the last seq handed out, so it
    /// continues from the current time in milliseconds, or from the side file's bound
    /// if that is higher: a seq the gateway cannot have reached. The limit: a second such
    /// start with the clock set back could meet the first one's seqs.
    pub fn open_or_degraded(dir: &Path, opts: QueueOptions) -> Result<Queue, BufferError> {
        let err = match Queue::open(dir, opts.clone()) {
            Ok(q) => return Ok(q),
            Err(e @ BufferError::Locked { .. }) => return Err(e),
            Err(e) => e,
        };
        let side = seqfile::read(&seqfile::path_for(dir))
            .ok()
            .flatten()
            .unwrap_or(0);
        let floor = side.max(crate::model::now_ms()).max(1);
        tracing::warn!(path = %dir.display(), next_seq = floor,
            "buffer files cannot be opened: seqs continue from a time-based floor until they can");
        let mem = Mem {
            next: floor,
            reserved: side,
            want_reserved: side,
            jump_from: Some(floor),
            pushed: floor - 1,
            ..Mem::default()
        };
        let w = WriterState {
            live: Live::current(dir).unwrap_or_default(),
            failed: true,
            side_file: side,
            ..WriterState::default()
        };
        let q = assemble(dir, opts, None, w, mem);
        q.degrade(&err);
        Ok(q)
    }
}

/// Where the next run starts: above everything the ledger, the blocks and the side file
/// prove, and [`SEQ_FAR`] higher unless the last run recorded its exact next seq (a clean
/// stop, in the ledger, and no later reservation in the side file): a run that could not
/// write its reservation went on within that range.
fn next_floor(loaded: &Loaded, side: Option<u64>) -> u64 {
    let floor = loaded.floor.max(side.unwrap_or(0));
    let had_a_run = loaded.had_ledger || side.is_some();
    let led = &loaded.ledger;
    let exact = loaded.had_ledger
        && led.exact
        && !loaded.repaired
        && side.is_none_or(|s| s <= led.reserved);
    if had_a_run && !exact {
        floor.saturating_add(SEQ_FAR)
    } else {
        floor
    }
}

/// The live generation, or the refusal of a pointer to a missing one.
pub(crate) fn live(dir: &Path) -> Result<Live, BufferError> {
    Live::current(dir).map_err(|generation| BufferError::MissingGeneration {
        path: dir.to_path_buf(),
        pointer: generation::pointer_path(dir),
        generation,
    })
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

/// Reads the ledger, removes the garbage blocks below its watermark and counts the
/// blocks written after it. A missing or damaged ledger is rebuilt from every block
/// (the only full read); a database of an earlier release is converted into blocks.
pub(crate) fn load(dir: &Path, store: &Store) -> Result<Loaded, sled::Error> {
    let mut out = Loaded::default();
    let mut legacy_floor = convert_legacy(store)?;
    let stored_ledger = store.meta.get(ledger::KEY)?;
    out.had_ledger = stored_ledger.is_some();
    match stored_ledger {
        Some(v) => match Ledger::decode(&v) {
            Ok(l) => out.ledger = l,
            Err(e) => {
                tracing::error!(path = %dir.display(), error = %e,
                    "BUFFER ledger is damaged; rebuilding it from the blocks and the side file");
                out.repaired = true;
            }
        },
        None => out.ledger = Ledger::default(),
    }
    if out.repaired {
        out.ledger = Ledger::default();
    }
    if let Some(v) = store.meta.get(LEGACY_RESERVED)? {
        legacy_floor = legacy_floor.max(seq_of(&v).unwrap_or(0));
    }
    let led = &mut out.ledger;
    let garbage: Vec<_> = store
        .blocks
        .range(..=key(led.watermark))
        .keys()
        .collect::<Result<_, _>>()?;
    for k in garbage {
        store.blocks.remove(k)?;
    }
    let after = if out.repaired { 0 } else { led.last_block };
    for item in store.blocks.range(key(after.saturating_add(1))..) {
        let (k, v) = item?;
        let Some(first) = seq_of(&k) else { continue };
        if let Ok(h) = block::header(&v) {
            led.events += u64::from(h.count);
            led.bytes += u64::from(h.bytes);
        }
        led.last_block = led.last_block.max(first);
    }
    if let Some((k, v)) = store.blocks.last()? {
        let first = seq_of(&k).unwrap_or(0);
        out.stored_last = block::header(&v).map_or(first, |h| h.last.max(first));
    }
    out.floor = [
        1,
        led.reserved,
        led.watermark.saturating_add(1),
        out.stored_last.saturating_add(1),
        legacy_floor,
    ]
    .into_iter()
    .max()
    .unwrap_or(1);
    Ok(out)
}

/// Converts the per-event tree of an earlier release into blocks (once; the tree is then
/// dropped). Returns the seq floor it proves.
fn convert_legacy(store: &Store) -> Result<u64, sled::Error> {
    if !store
        .db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == LEGACY_EVENTS_TREE.as_bytes())
    {
        return Ok(0);
    }
    let events = store.db.open_tree(LEGACY_EVENTS_TREE)?;
    let mut block = Entries::default();
    let mut last = 0;
    let mut converted = 0u64;
    for item in events.iter() {
        let (k, v) = item?;
        let Some(seq) = seq_of(&k) else { continue };
        // Re-encoded in the current record version (an unreadable one is kept as is and
        // skipped, counted, by the reader).
        let v = record::decode(&v)
            .ok()
            .and_then(|r| record::encode(&r))
            .unwrap_or_else(|| v.to_vec());
        if !block.fits(v.len()) {
            let b = std::mem::take(&mut block);
            store
                .blocks
                .insert(key(b.first().unwrap_or(0)), b.encode())?;
        }
        block.push(seq, v);
        last = seq;
        converted += 1;
    }
    if let Some(first) = block.first() {
        store.blocks.insert(key(first), block.encode())?;
    }
    store.db.drop_tree(LEGACY_EVENTS_TREE)?;
    store.flush()?;
    tracing::info!(
        events = converted,
        "buffer of an earlier release converted into blocks"
    );
    Ok(last.saturating_add(1))
}

fn assemble(
    dir: &Path,
    opts: QueueOptions,
    store: Option<Store>,
    w: WriterState,
    mem: Mem,
) -> Queue {
    Queue {
        inner: Arc::new(Inner {
            dir: dir.to_path_buf(),
            seq_file: seqfile::path_for(dir),
            opts,
            mem: Mutex::new(mem),
            store: RwLock::new(store.map(Arc::new)),
            write: Mutex::new(w),
            health: BufferHealth::default(),
            faults: Arc::new(Faults::default()),
            dropped: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            corrupt_recoveries: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(0),
            signal: Arc::new(Signal::default()),
            space: Mutex::new(Default::default()),
        }),
    }
}
