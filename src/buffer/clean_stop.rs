//! `seq` across a clean stop (SPEC §8): the next run continues at exactly the next value.
//!
//! While running, the durable floor (meta tree and side file) is the end of the reserved
//! block, so a crash skips the rest of the block. A clean stop lowers both to the exact
//! next seq once nothing more is stamped. This is safe at any moment: the seq lock is held,
//! every seq handed out is below the new floor, and a `next_seq` after it reserves a fresh
//! block durably first. When one of the two writes fails, open takes the larger bound:
//! the next run skips, it never reuses.

use super::sled_queue::{BufferError, Queue, lock};

impl Queue {
    /// Makes the next seq to be handed out the durable floor (meta tree and side file,
    /// flushed). Call it at a clean stop after the last event was stamped; returns that
    /// seq. Blocking (a flush and an fsync).
    pub fn close_seq(&self) -> Result<u64, BufferError> {
        let mut s = lock(&self.inner.seq);
        let next = s.next;
        if s.reserved_until > next {
            self.reserve(next)?;
            s.reserved_until = next;
        }
        tracing::debug!(next_seq = next, "seq floor recorded for a clean stop");
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    //! Proves a clean stop continues at exactly the next seq, a crash skips to the end of
    //! the reserved block, and stamping after `close_seq` stays unique across a crash.
    use crate::buffer::{Queue, QueueOptions, Record, SEQ_BLOCK};
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
    fn after_a_crash_the_next_run_skips_the_rest_of_the_reserved_block() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("buffer");
        assert_eq!(run(&dir, 5, false), (1, 5));
        assert_eq!(run(&dir, 1, true).0, SEQ_BLOCK + 1);
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
        assert_eq!(run(&dir, 1, true).0, 2 + SEQ_BLOCK);
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
