//! The state the queue's parts share that is not the log itself: what only the writer
//! touches, the writer thread's wake-up, the maintenance pacing. No behaviour here.

use super::generation::Live;
use crate::ops::lock::lock;
use std::fs;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What only the writer touches (under `Inner::write`).
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    pub(crate) live: Live,
    /// Exclusive ownership of the queue's files (`<dir>.lock`); `None` until a queue that
    /// started without its files opens them, or after they vanished.
    pub(crate) state_lock: Option<fs::File>,
    /// sled latched an error: nothing is written until the database is reopened.
    pub(crate) failed: bool,
    /// The files were found gone: the reopen carries over what the old handles read.
    pub(crate) vanished: bool,
    pub(crate) last_retry: Option<Instant>,
    /// The reservation the side file holds.
    pub(crate) side_file: u64,
}

/// Wakes the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    /// (woken, stopped)
    state: Mutex<(bool, bool)>,
    cv: Condvar,
    /// The publisher's wake-up, once the daemon started the writer thread.
    pub(crate) readable: Mutex<Option<Arc<tokio::sync::Notify>>>,
}

impl Signal {
    pub(crate) fn wake(&self) {
        lock(&self.state).0 = true;
        self.cv.notify_one();
    }

    pub(crate) fn stop(&self) {
        lock(&self.state).1 = true;
        self.cv.notify_one();
    }

    /// Waits for a wake, a stop or `timeout`; returns (woken, stopped).
    pub(crate) fn wait(&self, timeout: Duration) -> (bool, bool) {
        let guard = lock(&self.state);
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |s| !s.0 && !s.1)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let out = *guard;
        guard.0 = false;
        out
    }
}

impl Signal {
    /// Tells the publisher that events became readable.
    pub(crate) fn notify_readable(&self) {
        if let Some(n) = lock(&self.readable).as_ref() {
            n.notify_one();
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct SpaceState {
    pub(crate) last_check: Option<Instant>,
    /// Size of the files right after the last compaction: a database whose overhead
    /// alone exceeds twice its payload is not compacted again until it has grown.
    pub(crate) after_compaction: u64,
}
