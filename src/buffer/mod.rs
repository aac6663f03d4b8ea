//! The durable event queue (SPEC §5 "Delivery") and the gateway's stored state. Every
//! buffered event is held here before it is published and dropped only on its PUBACK. The
//! rest of the daemon sees [`Queue`] and [`KvStore`]; sled is an implementation detail.
//!
//! # Design: a block log inside sled
//! - **Memory first.** A push appends the event to the *open block* in memory; a PUBACK of
//!   an event still in memory just removes it. Pushes, acks and reads never write sled and
//!   never wait for a disk: they take one short mutex (`log.rs`).
//! - **Blocks.** At each flush the open block is sealed and written as one sled value
//!   (`block.rs`, at most 7 KiB, header with count, first and last seq, CRC), keyed by its
//!   first seq, so iteration is publish order. A block is removed whole once every event in
//!   it is acknowledged (or evicted by `on_full`); acknowledgements inside a block are
//!   tracked in memory.
//! - **Ledger.** One value, rewritten once per flush (`ledger.rs`): the watermark (every
//!   event at or below it is gone), the running totals, the last block counted and the seq
//!   reservation. Open reads the ledger and only the blocks written after it, never the log.
//! - **One writer.** Only the writer (`writer.rs`) writes sled: blocks, removals, ledger,
//!   state. In the daemon it runs on its own thread, woken by the flush timer, by the seq
//!   reservation and by memory pressure; no async worker ever waits on an fsync.
//! - **State apart** (`state.rs`): LoRa sessions, OCPP transaction ids, command ids,
//!   pending downlinks live in their own trees, written by the same flush.
//!
//! # Durability contract
//! - A flush makes every event pushed before it durable: a crash loses at most the events
//!   younger than `flush_every_ms`, never a hole. An event may be published twice after a
//!   crash (a partly acknowledged block is read again from the watermark).
//! - `seq` is never reused, even after kill -9: seqs are handed out below a reservation
//!   that is durable (ledger or the side file `<dir>.seq`) before an event carrying them
//!   can be read for publishing. The writer extends it half a block ahead.
//! - Order of one flush in sled's log: new blocks, state, ledger, then removals; sled
//!   recovers a prefix of its log, so after a crash the ledger never counts a block that
//!   is missing, blocks after `last_block` are counted at open, and blocks at or below the
//!   watermark are removed at open.
//! - A clean stop ([`Queue::close_seq`]) records the exact next seq (SPEC §8); after any
//!   other stop the next run starts [`SEQ_FAR`] above the reservation, the range a run
//!   that could not write its reservation (a read-only remount) goes on in.
//! - `max_bytes` bounds the sum of the records in blocks and in memory. `drop_oldest`
//!   evicts whole blocks from the front (events in memory one by one).
//! - A database that does not open as a database is moved aside (`buffer.corrupt-<time>`),
//!   a block that fails its checksum is moved to a quarantine tree and counted; neither
//!   ever stops delivery of the rest.
//!
//! # One degraded mode (`degraded.rs`)
//! Whatever the fault (a full disk, I/O errors, a read-only remount, files deleted under
//! the daemon, a directory that cannot be opened at start), the writer fails, the queue
//! says so once, and events stay in memory as sealed blocks within `memory_max_bytes`
//! (`on_full` applies) and are published from there. Seqs go on above the durable
//! reservation, or, when none can be written, above a time-based floor (epoch ms). The
//! writer retries every [`RETRY_EVERY`], reopening the database, and writes what memory
//! holds first. Stored state that cannot be read is an error, never absent.
//!
//! # Disk use (`space.rs`)
//! sled never shrinks its files: once the queue is nearly empty the writer copies it into
//! a fresh generation `<dir>.gen-N` named by the pointer file `<dir>.gen`, and deletes
//! the old one (`generation.rs`). One process owns the queue (`flock` on `<dir>.lock`).

mod block;
mod degraded;
mod faults;
mod generation;
mod ledger;
mod log;
mod open;
mod reader;
mod record;
mod seqfile;
mod shared;
mod space;
mod state;
mod store;
mod writer;

use crate::model::payload::Body;
use std::io;
use std::path::PathBuf;

pub use degraded::RETRY_EVERY;
pub use faults::{EIO, ENOSPC, FaultPoint, Faults};
pub use log::{Queue, SEQ_BLOCK, SEQ_FAR};
pub use space::{COMPACT_FLOOR, Compacted, MAINTAIN_EVERY};
pub use state::{KvStore, MAX_KV_NAME};
pub use writer::WriterHooks;

#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("buffer at {path}: {source}")]
    Sled {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("buffer at {path}: block {seq} is malformed: {what}")]
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
    #[error("buffer at {path}: seq {seq} was not handed out by next_seq, or pushed out of order")]
    SeqNotAllocated { path: PathBuf, seq: u64 },
    #[error("buffer at {path}: store name {name:?} must be 1-64 characters of [A-Za-z0-9_.-]")]
    InvalidKvName { path: PathBuf, name: String },
    #[error("buffer at {path} cannot store after a storage fault; retrying")]
    Closed { path: PathBuf },
    #[error("state at {path} cannot be read (storage fault); it is not taken as absent")]
    StateUnavailable { path: PathBuf },
    #[error(
        "buffer at {path}: its files vanished (deleted or unmounted); what they held is kept \
         in memory until the queue is opened again"
    )]
    Vanished { path: PathBuf },
    #[error(
        "buffer at {path}: the generation pointer {pointer} names generation {generation}, \
         whose directory is missing; refusing to start an empty queue over it"
    )]
    MissingGeneration {
        path: PathBuf,
        pointer: PathBuf,
        generation: u64,
    },
}

/// One queued MQTT message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    /// The event as the pipeline encoded it, closed by the publisher for its delivery.
    pub payload: Body,
    pub retain: bool,
    /// Wall-clock creation time (epoch ms); events created before the current MQTT
    /// connection came up are published with `"historical": true`.
    pub created_ms: u64,
}

/// What happened to a pushed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored; `evicted` older events were dropped to make room (`on_full = drop_oldest`).
    Stored { evicted: u64 },
    /// Not stored: the buffer is full and `on_full = drop_newest`.
    Rejected,
    /// Not stored durably: the queue cannot store (SPEC §5 "Storage faults"). `held`: kept
    /// in memory (`evicted` older held events dropped for it); else dropped by `on_full`
    /// because `memory_max_bytes` is reached.
    Degraded { held: bool, evicted: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferStats {
    /// Events in the queue.
    pub events: u64,
    /// Sum of record sizes (the quantity `max_bytes` bounds).
    pub bytes: u64,
    /// Events dropped by `on_full` since open.
    pub dropped: u64,
    /// Times the database could not be opened and was moved aside, since open.
    pub corrupt_recoveries: u64,
    /// Size of the database files on disk.
    pub disk_bytes: u64,
}

/// What a push does when the queue holds `max_bytes` already (config `buffer.on_full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Evict the oldest events until the new one fits.
    DropOldest,
    /// Refuse the new event.
    DropNewest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueOptions {
    pub max_bytes: u64,
    pub on_full: WhenFull,
    /// sled page cache; small by default (sled's own default is 1 GiB).
    pub cache_bytes: u64,
    /// Events held in memory while the queue cannot store (config `buffer.memory_max_bytes`).
    pub memory_max_bytes: u64,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_bytes: 256 * 1024 * 1024,
            on_full: WhenFull::DropOldest,
            cache_bytes: 4 * 1024 * 1024,
            memory_max_bytes: 4 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod model_tests;
