//! Injected storage faults behind the queue's interface, for tests of SPEC §5 "Storage
//! faults" without a real failing disk: each switch makes the named operation fail with
//! the given OS error (ENOSPC, EIO) until it is cleared. Costs one relaxed load per
//! operation when unused.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// Inserts and removals in the database (events, meta, kv stores).
    Write,
    /// Making writes durable (`Queue::flush`, seq reservations).
    Flush,
    /// Opening the database (at recovery).
    Open,
    /// The directory fsync after the generation pointer was renamed (compaction).
    Switch,
}

/// Shared switches; `0` means no fault.
#[derive(Debug, Default)]
pub struct Faults {
    write: AtomicI32,
    flush: AtomicI32,
    open: AtomicI32,
    switch: AtomicI32,
}

/// ENOSPC and EIO as raw OS errors, for [`Faults::set`].
pub const ENOSPC: i32 = 28;
pub const EIO: i32 = 5;

impl Faults {
    fn slot(&self, p: FaultPoint) -> &AtomicI32 {
        match p {
            FaultPoint::Write => &self.write,
            FaultPoint::Flush => &self.flush,
            FaultPoint::Open => &self.open,
            FaultPoint::Switch => &self.switch,
        }
    }

    /// Makes `point` fail with OS error `errno` (0 clears it).
    pub fn set(&self, point: FaultPoint, errno: i32) {
        self.slot(point).store(errno, Ordering::Relaxed);
    }

    pub fn clear(&self) {
        for p in [
            FaultPoint::Write,
            FaultPoint::Flush,
            FaultPoint::Open,
            FaultPoint::Switch,
        ] {
            self.set(p, 0);
        }
    }

    pub(crate) fn check(&self, point: FaultPoint) -> io::Result<()> {
        match self.slot(point).load(Ordering::Relaxed) {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}
