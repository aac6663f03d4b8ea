//! The writer: the only code that writes sled. One flush seals the open block, writes the
//! sealed blocks (less what was acknowledged meanwhile), the state writes and the ledger,
//! removes the blocks that are gone, then fsyncs. The memory side (`log.rs`) is locked
//! only to take the plan and to commit it, never across the I/O.
//!
//! In the daemon the writer is a thread of its own ([`Queue::start_writer`]): it flushes
//! on the `flush_every_ms` timer, when the seq reservation runs short, when sealed blocks
//! or acknowledgements pile up, retries while degraded and maintains the files.

use super::BufferError;
use super::block::Entries;
use super::faults::FaultPoint;
use super::ledger::{self, Ledger};
use super::log::{KvKey, Mem, Queue, SEQ_BLOCK, lock};
use super::seqfile;
use super::shared::WriterState;
use super::store::{QUARANTINE_MAX, Store, key};
use std::sync::Arc;
use std::time::Duration;

/// What the writer thread reports to the daemon.
pub struct WriterHooks {
    /// Woken when events become readable (a reservation made durable, a recovery).
    pub readable: Arc<tokio::sync::Notify>,
    /// Called for each failed write (`stats.errors.buffer_error`).
    pub on_error: Box<dyn Fn() + Send>,
}

/// One flush, taken from memory under the lock.
pub(crate) struct Plan {
    /// The blocks to write, encoded (their entries wait in `Mem::writing`).
    writes: Vec<(super::block::Header, Vec<u8>)>,
    kv: Vec<(KvKey, super::log::KvWrite)>,
    garbage: Vec<u64>,
    quarantine: Vec<u64>,
    purge: bool,
    ledger: Ledger,
}

impl Queue {
    /// Makes everything pushed, acknowledged and stored so far durable. Blocking. While
    /// degraded there is nothing to write: only the seq reservation is kept (side file).
    pub fn flush(&self) -> Result<(), BufferError> {
        let mut w = lock(&self.inner.write);
        self.flush_locked(&mut w)
    }

    /// Asks the writer thread for a flush now (non-blocking).
    pub fn request_flush(&self) {
        self.inner.signal.wake();
    }

    pub(crate) fn flush_locked(&self, w: &mut WriterState) -> Result<(), BufferError> {
        let store = match self.store() {
            Some(st) if !w.failed => st,
            _ => {
                self.reserve_without_store(w);
                return Ok(());
            }
        };
        let Some(plan) = self.plan(&store, w.side_file) else {
            return Ok(());
        };
        match self.execute(&store, &plan, w) {
            Ok(()) => {
                self.commit(plan);
                Ok(())
            }
            Err(e) => {
                self.put_back(plan);
                w.failed = true;
                self.degrade(&e);
                self.reserve_without_store(w);
                Err(e)
            }
        }
    }

    pub(crate) fn plan(&self, store: &Store, side_file: u64) -> Option<Plan> {
        let mut guard = self.mem();
        let m = &mut *guard;
        m.seal();
        let mut writes: Vec<Entries> = m.sealed.drain(..).collect();
        for b in &mut writes {
            let acked = &mut m.acked;
            b.retain(|s| !acked.remove(&s));
        }
        writes.retain(|b| !b.is_empty());
        self.advance_watermark(m, store);
        let (reserved, exact) = match m.lower_to.take() {
            Some(exact) => (exact.max(m.next), true),
            None => (m.reserved.max(m.want_reserved), false),
        };
        let (events, bytes) = writes
            .iter()
            .fold((0, 0), |(e, b), w| (e + w.len() as u64, b + w.bytes));
        let ledger = Ledger {
            watermark: m.watermark,
            events: m.stored_events + events,
            bytes: m.stored_bytes + bytes,
            last_block: writes
                .last()
                .and_then(Entries::first)
                .unwrap_or(m.last_block),
            reserved,
            exact,
            acked: m.acked.iter().take(ledger::MAX_ACKED).copied().collect(),
        };
        let plan = Plan {
            ledger,
            kv: m.kv.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            garbage: std::mem::take(&mut m.garbage),
            quarantine: std::mem::take(&mut m.quarantine),
            purge: std::mem::take(&mut m.purge),
            writes: writes.iter().map(|b| (b.header(), b.encode())).collect(),
        };
        let idle = plan.writes.is_empty()
            && plan.kv.is_empty()
            && plan.garbage.is_empty()
            && plan.quarantine.is_empty()
            && !plan.purge
            && side_file == plan.ledger.reserved
            // The side file holds the reservation: a ledger that differs only there is
            // not worth a sled flush (an idle gateway never makes one).
            && m.written.as_ref().is_some_and(|w| {
                let l = &plan.ledger;
                Ledger {
                    reserved: l.reserved,
                    exact: l.exact,
                    ..w.clone()
                } == *l
            });
        if idle {
            return None;
        }
        m.writing = writes;
        Some(plan)
    }

    /// Removes, in memory, the stored blocks at the front whose events are all
    /// acknowledged (a read of each, no write).
    fn advance_watermark(&self, m: &mut Mem, store: &Store) {
        for _ in 0..4096 {
            if m.stored_last <= m.watermark || m.acked.is_empty() {
                return;
            }
            let front = store
                .blocks
                .range(key(m.watermark.saturating_add(1))..)
                .next()
                .and_then(Result::ok);
            let Some((k, v)) = front else { return };
            let Some(first) = super::store::seq_of(&k) else {
                return;
            };
            if first > m.stored_last {
                return;
            }
            let Ok(block) = super::block::decode(&v) else {
                return; // the reader sets it aside
            };
            if !block.iter().all(|(s, _)| m.acked.contains(&s)) {
                return;
            }
            m.forget_block(first, &block.header);
        }
    }

    fn execute(&self, st: &Store, p: &Plan, w: &mut WriterState) -> Result<(), BufferError> {
        let err = |e| self.sled_err(e);
        self.check(FaultPoint::Write)?;
        if p.purge {
            st.blocks.clear().map_err(err)?;
        }
        for (h, value) in &p.writes {
            st.blocks
                .insert(key(h.first), value.as_slice())
                .map_err(err)?;
        }
        for ((name, k), write) in &p.kv {
            let tree = st.kv_tree(name).map_err(err)?;
            match &write.value {
                Some(v) => tree.insert(k.as_slice(), v.as_slice()).map(drop),
                None => tree.remove(k.as_slice()).map(drop),
            }
            .map_err(err)?;
        }
        st.meta
            .insert(ledger::KEY, p.ledger.encode())
            .map_err(err)?;
        for g in &p.garbage {
            st.blocks.remove(key(*g)).map_err(err)?;
        }
        for q in &p.quarantine {
            if let Some(v) = st.blocks.remove(key(*q)).map_err(err)?
                && st.quarantine.len() < QUARANTINE_MAX
            {
                st.quarantine.insert(key(*q), v).map_err(err)?;
            }
        }
        self.check(FaultPoint::Flush)?;
        // A slow card (tests/benches: `FAILPOINTS=buffer-flush=sleep(500)`).
        crate::failpoint!("buffer-flush");
        st.flush().map_err(err)?;
        if p.ledger.reserved != w.side_file {
            match seqfile::write(&self.inner.seq_file, p.ledger.reserved) {
                Ok(()) => w.side_file = p.ledger.reserved,
                Err(e) => tracing::warn!(path = %self.inner.seq_file.display(), error = %e,
                    "seq side file not written; the database holds the reservation"),
            }
        }
        Ok(())
    }

    fn commit(&self, p: Plan) {
        let grew = {
            let mut m = self.mem();
            m.writing.clear();
            for (h, _) in &p.writes {
                m.stored_events += u64::from(h.count);
                m.stored_bytes += u64::from(h.bytes);
                m.stored_last = m.stored_last.max(h.last);
                m.last_block = m.last_block.max(h.first);
            }
            for (k, written) in p.kv {
                if m.kv
                    .get(&k)
                    .is_some_and(|now| now.version == written.version)
                {
                    m.kv.remove(&k);
                }
            }
            let grew = p.ledger.reserved > m.reserved;
            m.reserved = p.ledger.reserved;
            if m.reserved > m.next {
                m.jump_from = None;
                m.unreservable = false;
            }
            m.written = Some(p.ledger.clone());
            grew
        };
        if grew {
            self.inner.signal.notify_readable();
        }
    }

    /// A failed write: what the plan took from memory goes back.
    fn put_back(&self, p: Plan) {
        let mut m = self.mem();
        let writing = std::mem::take(&mut m.writing);
        for b in writing.into_iter().rev() {
            m.sealed.push_front(b);
        }
        m.garbage.extend(p.garbage);
        m.quarantine.extend(p.quarantine);
        m.purge |= p.purge;
    }

    /// Without a database the side file alone holds the reservation. When it cannot be
    /// written either, seqs go on within [`SEQ_FAR`] of the last durable reservation
    /// (the next run starts above that range), and past it from a time-based floor no
    /// earlier run can have reached (more than one event per millisecond since 1970).
    ///
    /// [`SEQ_FAR`]: super::SEQ_FAR
    pub(crate) fn reserve_without_store(&self, w: &mut WriterState) {
        let (want, lower) = {
            let mut m = self.mem();
            let lower = m.lower_to.take();
            if lower.is_none() && (m.jump_from.is_some() || m.want_reserved <= m.reserved) {
                return;
            }
            (
                lower.map_or(m.want_reserved, |l| l.max(m.next)),
                lower.is_some(),
            )
        };
        match seqfile::write(&self.inner.seq_file, want) {
            Ok(()) => {
                w.side_file = want;
                let mut m = self.mem();
                let grew = want > m.reserved;
                m.reserved = want;
                drop(m);
                if grew {
                    self.inner.signal.notify_readable();
                }
            }
            Err(e) if !lower => {
                let mut m = self.mem();
                let far_end = m.reserved.saturating_add(super::SEQ_FAR);
                if !m.unreservable {
                    m.unreservable = true;
                    tracing::warn!(path = %self.inner.seq_file.display(), error = %e, up_to = far_end,
                        "no seq reservation can be written: seqs go on in the range the next run starts above");
                } else if m.jump_from.is_none() && m.next.saturating_add(SEQ_BLOCK) >= far_end {
                    let floor = m.next.max(far_end).max(crate::model::now_ms());
                    m.next = floor;
                    m.jump_from = Some(floor);
                    tracing::warn!(
                        next_seq = floor,
                        "the seq range without a reservation is used up: seqs continue from a time-based floor"
                    );
                }
                drop(m);
                self.inner.signal.notify_readable();
            }
            Err(_) => {}
        }
    }

    /// Makes the next seq to be handed out the durable floor. Call it at a clean stop
    /// after the last event was stamped; returns that seq. Blocking.
    pub fn close_seq(&self) -> Result<u64, BufferError> {
        let next = {
            let mut m = self.mem();
            m.lower_to = Some(m.next);
            m.next
        };
        self.flush()?;
        tracing::debug!(next_seq = next, "seq floor recorded for a clean stop");
        Ok(next)
    }

    /// Fails with the injected fault at `p`, if any.
    pub(crate) fn check(&self, p: FaultPoint) -> Result<(), BufferError> {
        self.inner
            .faults
            .check(p)
            .map_err(|e| self.sled_err(sled::Error::Io(e)))
    }

    /// Starts the writer thread (the daemon's): flushes on demand ([`Queue::request_flush`],
    /// the pipeline's `flush_every_ms` timer, the reservation, memory pressure), retries
    /// while degraded and maintains the files (checked every second). It ends with the
    /// queue.
    pub fn start_writer(&self, hooks: WriterHooks) -> std::io::Result<()> {
        *lock(&self.inner.signal.readable) = Some(hooks.readable.clone());
        let weak = Arc::downgrade(&self.inner);
        let signal = self.inner.signal.clone();
        std::thread::Builder::new()
            .name("polegate-buffer".into())
            .spawn(move || {
                loop {
                    let (woken, stop) = signal.wait(Duration::from_secs(1));
                    if stop {
                        return;
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    let q = Queue { inner };
                    if woken && q.flush().is_err() {
                        (hooks.on_error)();
                    }
                    q.housekeeping(&hooks.readable);
                }
            })
            .map(drop)
    }

    /// Retries while degraded, otherwise maintains the files when due.
    fn housekeeping(&self, readable: &tokio::sync::Notify) {
        if self.inner.health.is_degraded() {
            match self.retry() {
                Ok(true) => readable.notify_one(),
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "buffer still cannot store"),
            }
        } else if self.maintenance_due()
            && let Err(e) = self.maintain()
        {
            tracing::debug!(error = %e, "buffer maintenance failed");
        }
    }
}

#[cfg(test)]
mod clean_stop_tests {
    //! Proves a clean stop continues at exactly the next seq, a crash skips the reserved
    //! block and the far range, and stamping after `close_seq` stays unique across a crash.
    use crate::buffer::{Queue, QueueOptions, Record, SEQ_BLOCK, SEQ_FAR};
    use crate::model::payload::Body;
    use std::path::Path;

    fn push(q: &Queue, i: u64) -> u64 {
        let seq = q.next_seq().expect("next_seq");
        let rec = Record {
            topic: format!("polegate/cab-1/lamp-{i}/telemetry"),
            payload: Body::from_open(b"{}"),
            retain: false,
            created_ms: 1_700_000_000_000,
        };
        q.push(seq, &rec).expect("push");
        seq
    }

    /// One run of `events` events; returns its first and last seq.
    fn run(dir: &Path, events: u64, clean: bool) -> (u64, u64) {
        let q = Queue::open(dir, QueueOptions::default()).expect("open");
        let first = push(&q, 0);
        let mut last = first;
        for i in 1..events {
            last = push(&q, i);
        }
        q.flush().expect("flush");
        if clean {
            assert_eq!(q.close_seq().expect("close_seq"), last + 1);
        }
        (first, last)
    }

    #[test]
    fn after_a_clean_stop_the_next_run_continues_at_exactly_the_next_seq() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("buffer");
        let mut last = 0;
        for round in 0..4 {
            let (first, end) = run(&dir, 7, true);
            assert_eq!(first, last + 1, "round {round}");
            last = end;
        }
        assert_eq!(last, 28);
    }

    #[test]
    fn after_a_crash_the_next_run_skips_the_reserved_block_and_the_far_range() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("buffer");
        assert_eq!(run(&dir, 5, false), (1, 5));
        assert_eq!(run(&dir, 1, true).0, SEQ_BLOCK + SEQ_FAR + 1);
    }

    #[test]
    fn a_seq_stamped_after_close_seq_is_never_reused_after_a_crash() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("buffer");
        let stamped = {
            let q = Queue::open(&dir, QueueOptions::default()).expect("open");
            push(&q, 1);
            assert_eq!(q.close_seq().expect("close_seq"), 2);
            // A late event after the floor was lowered reserves a fresh block first.
            push(&q, 2)
        };
        assert_eq!(stamped, 2);
        assert_eq!(run(&dir, 1, true).0, 2 + SEQ_BLOCK + SEQ_FAR);
    }

    #[test]
    fn a_clean_stop_without_events_keeps_the_floor_where_it_was() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("buffer");
        run(&dir, 3, true);
        {
            let q = Queue::open(&dir, QueueOptions::default()).expect("open");
            assert_eq!(q.close_seq().expect("close_seq"), 4);
        }
        assert_eq!(run(&dir, 1, true).0, 4);
    }
}
