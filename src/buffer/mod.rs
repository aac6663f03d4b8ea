//! The durable event queue (SPEC §5 "Delivery"). Every buffered event is written here
//! before it is published and removed only on its PUBACK. The rest of the daemon sees
//! only [`Queue`]; sled is an implementation detail of this module.
//!
//! Durability contract:
//! - Keys are `seq` as big-endian u64, so iteration order is publish order.
//! - `seq` is never reused, even after kill -9: seqs are handed out from blocks whose
//!   upper bound is persisted *and flushed* before the first seq of the block is used.
//! - Inserts are made durable by [`Queue::flush`], called on the `flush_every_ms` timer and
//!   at shutdown; a crash loses at most the unflushed suffix, never a hole.
//! - A database that fails to open is moved aside (`buffer.corrupt-<time>`) and a fresh
//!   one is started; the event is logged and counted, never a crash loop.
//! - The seq floor also lives in a side file beside the directory (`<dir>.seq`, i.e.
//!   `<state_dir>/buffer.seq`), replaced atomically (temp + fsync + rename + dir fsync)
//!   whenever a block is reserved. Open starts at the max of the meta tree's bound, the side
//!   file's and the last stored seq + 1, so a database moved aside (or a malformed meta
//!   value, which is repaired in place and counted in `corrupt_recoveries`) cannot bring
//!   an old seq back.
//! - A clean stop ([`Queue::close_seq`], after the last event is stamped) lowers both
//!   bounds to the exact next seq, so the next run continues without a gap (SPEC §8);
//!   after a crash the unused rest of the block is skipped, never reused.
//! - A stored record that does not decode is logged with its seq, moved to a quarantine
//!   tree and skipped by [`Queue::read_after`]: it cannot block delivery of the others.
//! - `max_bytes` bounds the sum of encoded record sizes (header + topic + payload), kept in
//!   memory and rebuilt by a scan at open. sled's files take about 2.1 × the records and
//!   never shrink by themselves; a full queue under `on_full` churn stays near 2.5 ×
//!   `max_bytes` (measured). Once a backlog has drained, [`Queue::maintain`] copies the
//!   queue into a fresh generation of files and deletes the old one (`space.rs`,
//!   `generation.rs`), crash-safe at every step; with its copy the partition needs
//!   3 × `max_bytes` + 16 MiB.
//! - The database is `<dir>` or a generation `<dir>.gen-N` named by the pointer file
//!   `<dir>.gen`. Only one process may open the queue (an exclusive `flock` on
//!   `<dir>.lock`, and sled's own on the database); a second one gets
//!   [`BufferError::Locked`].
//!
//! Other persisted state (command-id dedup, LoRa sessions) goes in [`KvStore`]s from
//! [`Queue::kv`], in the same database, made durable by the same `flush`.

mod ack;
mod clean_stop;
mod faults;
mod generation;
mod held;
mod kv;
mod open;
mod open_queue;
mod read;
mod record;
mod recover;
mod seqfile;
mod sled_queue;
mod space;

use crate::model::payload::Body;

pub use faults::{EIO, ENOSPC, FaultPoint, Faults};
pub use kv::{KvStore, MAX_KV_NAME};
pub use recover::RETRY_EVERY;
pub use sled_queue::{BufferError, Queue, SEQ_BLOCK};
pub use space::{COMPACT_FLOOR, Compacted, MAINTAIN_EVERY};

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
