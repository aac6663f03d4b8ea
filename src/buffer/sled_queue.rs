//! sled implementation of the queue. See the module docs of `buffer` for the contract.

use super::{BufferStats, PushOutcome, QueueOptions, Record};
use std::path::{Path, PathBuf};

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
}

/// The durable queue. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Queue {
    _todo: (),
}

impl Queue {
    /// Opens (or creates) the queue in directory `dir` (e.g. `<state_dir>/buffer`).
    pub fn open(_dir: &Path, _opts: QueueOptions) -> Result<Queue, BufferError> {
        unimplemented!()
    }
    /// Allocates the next `seq` (strictly increasing, never reused across restarts).
    pub fn next_seq(&self) -> Result<u64, BufferError> {
        unimplemented!()
    }
    /// Stores `rec` under `seq` (which must come from `next_seq`), applying `on_full`.
    pub fn push(&self, _seq: u64, _rec: &Record) -> Result<PushOutcome, BufferError> {
        unimplemented!()
    }
    /// Up to `limit` records with seq > `after` (all from the oldest when `None`), in order.
    pub fn read_after(
        &self,
        _after: Option<u64>,
        _limit: usize,
    ) -> Result<Vec<(u64, Record)>, BufferError> {
        unimplemented!()
    }
    /// Removes `seq` (its PUBACK came). Unknown seqs are ignored.
    pub fn ack(&self, _seq: u64) -> Result<(), BufferError> {
        unimplemented!()
    }
    /// Makes every insert, ack and seq reservation durable.
    pub fn flush(&self) -> Result<(), BufferError> {
        unimplemented!()
    }
    pub fn stats(&self) -> BufferStats {
        unimplemented!()
    }
    /// Removes every queued event (`polegate buffer purge`).
    pub fn purge(&self) -> Result<u64, BufferError> {
        unimplemented!()
    }
}
