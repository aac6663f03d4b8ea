//! The sled database of one generation and its trees; opening it: waiting briefly for
//! its lock, telling a lock held by another process from a corrupt database, and moving a
//! corrupt one aside.
//!
//! Trees: `blocks` (first seq BE u64 -> block, `block.rs`), `meta` (the ledger,
//! `ledger.rs`), `quarantine` (blocks that failed their checksum, capped), `kv:<name>`
//! (stored state, `state.rs`), and `events`, the one-key-per-event tree of earlier
//! releases, read once at open and converted into blocks.

use super::{BufferError, QueueOptions};
use std::fs;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) const BLOCKS_TREE: &str = "blocks";
pub(crate) const META_TREE: &str = "meta";
pub(crate) const QUARANTINE_TREE: &str = "quarantine";
/// Tree-name prefix that keeps state stores apart from the queue's own trees.
pub(crate) const TREE_PREFIX: &str = "kv:";
/// The per-event tree of earlier releases (converted at open).
pub(crate) const LEGACY_EVENTS_TREE: &str = "events";
/// The seq bound earlier releases kept in `meta`.
pub(crate) const LEGACY_RESERVED: &[u8] = b"seq_reserved_until";
/// Blocks that fail their checksum kept for inspection; beyond this they are just deleted.
pub(crate) const QUARANTINE_MAX: usize = 100;
/// Written beside sled's files so a `Locked` error can name the holder.
pub(crate) const OWNER_FILE: &str = "owner.pid";

/// The handles of one open database.
pub(crate) struct Store {
    pub(crate) db: sled::Db,
    pub(crate) blocks: sled::Tree,
    pub(crate) meta: sled::Tree,
    pub(crate) quarantine: sled::Tree,
}

impl Store {
    /// Makes everything written durable, then hands this thread's deferred frees on:
    /// `Db::flush` defers the drop of the sealed I/O buffer into the calling thread's
    /// epoch bag, which is only handed on at 64 items (64 x 512 KiB kept alive otherwise).
    pub(crate) fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush()?;
        sled::pin().flush();
        Ok(())
    }

    /// The tree of the state store `name`.
    pub(crate) fn kv_tree(&self, name: &str) -> Result<sled::Tree, sled::Error> {
        self.db.open_tree(format!("{TREE_PREFIX}{name}"))
    }
}

pub(crate) fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub(crate) fn seq_of(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

/// How long `open` waits for the lock: sled releases it from background threads a little
/// after the last handle of a previous instance is dropped, and a previous daemon may still
/// be exiting.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens the database and its trees, moving a corrupt one aside when `move_corrupt` (then
/// the second value is 1: the corrupt recoveries this open made). Recovery from a storage
/// fault passes false: on a full or failing disk sled reports errors that look like
/// corruption, and the queued events must not be moved aside for them.
pub(crate) fn open_store(
    dir: &Path,
    opts: &QueueOptions,
    move_corrupt: bool,
) -> Result<(Store, u64), BufferError> {
    let io_err = |what, source| BufferError::Io {
        path: dir.to_path_buf(),
        what,
        source,
    };
    let sled_err = |source| BufferError::Sled {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| io_err("creating the parent directory", e))?;
    }
    let mut corrupt_recoveries = 0;
    let db = match open_sled_waiting(dir, opts) {
        Ok(db) => db,
        Err(OpenFailure::Locked) => return Err(locked_error(dir)),
        Err(OpenFailure::Other(source)) => return Err(sled_err(source)),
        Err(OpenFailure::Corrupt(why)) if !move_corrupt => {
            return Err(io_err("reopening the database", io::Error::other(why)));
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
            match open_sled_waiting(dir, opts) {
                Ok(db) => db,
                Err(OpenFailure::Locked) => return Err(locked_error(dir)),
                Err(OpenFailure::Other(source)) => return Err(sled_err(source)),
                Err(OpenFailure::Corrupt(why)) => {
                    return Err(io_err(
                        "opening a fresh database after moving a corrupt one aside",
                        io::Error::other(why),
                    ));
                }
            }
        }
    };
    let blocks = db.open_tree(BLOCKS_TREE).map_err(sled_err)?;
    let meta = db.open_tree(META_TREE).map_err(sled_err)?;
    let quarantine = db.open_tree(QUARANTINE_TREE).map_err(sled_err)?;
    Ok((
        Store {
            db,
            blocks,
            meta,
            quarantine,
        },
        corrupt_recoveries,
    ))
}

fn open_sled_waiting(dir: &Path, opts: &QueueOptions) -> Result<sled::Db, OpenFailure> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        let attempt = if lock_is_held(dir) {
            Err(OpenFailure::Locked)
        } else {
            open_sled(dir, opts)
        };
        match attempt {
            Err(OpenFailure::Locked) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

enum OpenFailure {
    Locked,
    Corrupt(String),
    Other(sled::Error),
}

fn open_sled(dir: &Path, opts: &QueueOptions) -> Result<sled::Db, OpenFailure> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(opts.cache_bytes)
        // We flush on our own timer (flush_every_ms) and at shutdown.
        .flush_every_ms(None)
        // LowSpace: measured no throughput difference from HighThroughput here (100k x 300 B,
        // flush every 1000: 20-35k ev/s either way in a debug build, noise-dominated), and
        // cabinet flash is small, so favour reclaiming segments.
        .mode(sled::Mode::LowSpace);
    // sled 0.34 can panic on some garbage files; under panic=unwind that is a corrupt
    // database too (with panic=abort this guard cannot help).
    match catch_unwind(AssertUnwindSafe(|| config.open())) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(classify(e)),
        Err(panic) => Err(OpenFailure::Corrupt(format!(
            "sled panicked while opening: {}",
            crate::ops::logging::panic_message(&*panic)
        ))),
    }
}

fn classify(e: sled::Error) -> OpenFailure {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            OpenFailure::Locked
        }
        sled::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            OpenFailure::Corrupt(io.to_string())
        }
        e @ (sled::Error::Corruption { .. }
        | sled::Error::Unsupported(_)
        | sled::Error::ReportableBug(_)
        | sled::Error::CollectionNotFound(_)) => OpenFailure::Corrupt(e.to_string()),
        other => OpenFailure::Other(other),
    }
}

/// sled holds an exclusive `flock` on `<dir>/db` while open; probe it first so a second
/// process gets a clear error instead of relying on sled's message text alone.
fn lock_is_held(dir: &Path) -> bool {
    let Ok(f) = fs::File::open(dir.join("db")) else {
        return false; // no database yet, or unreadable: sled will say
    };
    matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock))
}

fn locked_error(dir: &Path) -> BufferError {
    let holder = fs::read_to_string(dir.join(OWNER_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map_or_else(|| "an unknown pid".to_owned(), |pid| format!("pid {pid}"));
    BufferError::Locked {
        path: dir.to_path_buf(),
        lock: dir.join("db"),
        holder,
    }
}

/// Renames `dir` to `<dir>.corrupt-<UTC time>` (with a `-N` suffix if taken).
fn move_aside(dir: &Path) -> io::Result<PathBuf> {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "buffer".into());
    let base = dir.with_file_name(format!("{name}.corrupt-{stamp}"));
    let mut target = base.clone();
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    fs::rename(dir, &target)?;
    Ok(target)
}

pub(crate) fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
