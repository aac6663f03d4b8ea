//! Proves SPEC §5 "Storage faults" behind the queue's interface with injected errors
//! (ENOSPC, EIO on write, flush and open). A push never touches the disk, so a fault shows
//! at the writer's flush; from then on events are held in memory and still readable,
//! acks and kv writes are remembered, the fault is one state change, recovery writes the
//! held events first and everything survives a reopen, and no seq is reused after a crash
//! during the fault; a queue whose files cannot be opened at all starts degraded.

use super::*;
use crate::buffer::record;
use crate::buffer::{
    BufferError, EIO, ENOSPC, PushOutcome, QueueOptions, Record, SEQ_BLOCK, WhenFull,
};
use crate::model::payload::Body;
use crate::ops::health::Health;

fn rec(i: u64) -> Record {
    Record {
        topic: format!("polegate/cab-1/lamp-{i}/telemetry"),
        payload: Body::from_open(br#"{"seq":1"#),
        retain: false,
        created_ms: 1_700_000_000_000 + i,
    }
}

fn push(q: &Queue, i: u64) -> (u64, PushOutcome) {
    let seq = q.next_seq().expect("next_seq");
    (seq, q.push(seq, &rec(i)).expect("push"))
}

/// Deletes everything inside `dir` (an `rm -rf` of the state directory's contents).
fn remove_everything_in(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).expect("list").flatten() {
        let p = e.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).expect("rm -rf");
        } else {
            std::fs::remove_file(&p).expect("rm");
        }
    }
}

fn seqs(q: &Queue) -> Vec<u64> {
    q.read_after(None, 1000)
        .expect("read")
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

#[test]
fn a_full_disk_on_write_holds_events_in_memory_and_recovery_stores_them_first() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let (s1, _) = push(&q, 1);
    q.flush().expect("flush");
    q.faults().set(FaultPoint::Write, ENOSPC);
    let (s2, out) = push(&q, 2);
    assert_eq!(out, PushOutcome::Stored { evicted: 0 }, "in memory");
    assert!(q.flush().is_err(), "the writer meets the fault");
    let health = q.health().get();
    assert!(health.is_degraded());
    assert!(
        health.reason().expect("reason").contains("No space left"),
        "{health:?}"
    );
    let (s3, out) = push(&q, 3);
    assert_eq!(
        out,
        PushOutcome::Degraded {
            held: true,
            evicted: 0
        }
    );
    assert_eq!(seqs(&q), vec![s1, s2, s3], "stored and held, in seq order");
    assert_eq!(q.len(), 3);
    // An ack of a stored event while the database refuses writes is remembered.
    q.ack(s1).expect("ack");
    assert_eq!(seqs(&q), vec![s2, s3]);
    // Still failing: recovery fails and keeps everything in memory.
    assert!(q.recover().is_err());
    assert_eq!(seqs(&q), vec![s2, s3]);
    q.faults().clear();
    assert_eq!(q.recover().expect("recover"), 2);
    assert_eq!(q.health().get(), Health::Ok);
    let (s4, out) = push(&q, 4);
    assert!(matches!(out, PushOutcome::Stored { .. }));
    q.flush().expect("flush");
    drop(q);
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert_eq!(seqs(&q), vec![s2, s3, s4], "held events were made durable");
    assert_eq!(q.stats().dropped, 0);
}

#[test]
fn an_io_error_on_flush_keeps_the_unflushed_events_through_the_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let (s1, out) = push(&q, 1);
    assert!(matches!(out, PushOutcome::Stored { .. }));
    q.faults().set(FaultPoint::Flush, EIO);
    assert!(q.flush().is_err());
    assert!(q.health().is_degraded());
    // A second failing flush is no new fault (nothing to flush while degraded).
    assert!(q.flush().is_ok());
    let (s2, _) = push(&q, 2);
    q.faults().clear();
    q.recover().expect("recover");
    drop(q);
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert_eq!(seqs(&q), vec![s1, s2]);
}

#[test]
fn a_failing_open_at_recovery_leaves_the_queue_usable_from_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    q.faults().set(FaultPoint::Write, EIO);
    let (s1, _) = push(&q, 1);
    assert!(q.flush().is_err());
    q.faults().set(FaultPoint::Open, EIO);
    assert!(q.recover().is_err(), "open fails");
    // The database is closed now; pushes, reads and acks still work from memory.
    let (s2, out) = push(&q, 2);
    assert_eq!(
        out,
        PushOutcome::Degraded {
            held: true,
            evicted: 0
        }
    );
    assert_eq!(seqs(&q), vec![s1, s2]);
    q.ack(s1).expect("ack");
    let kv = q.kv("lora").expect("kv");
    kv.insert(b"dev", b"session").expect("kv insert");
    assert_eq!(kv.get(b"dev").expect("get"), Some(b"session".to_vec()));
    q.faults().clear();
    q.recover().expect("recover");
    q.flush().expect("flush");
    drop((q, kv));
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert_eq!(seqs(&q), vec![s2]);
    let kv = q.kv("lora").expect("kv");
    assert_eq!(kv.get(b"dev").expect("get"), Some(b"session".to_vec()));
}

#[test]
fn the_memory_hold_is_bounded_and_every_lost_event_is_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let one = record::encoded_len(&rec(1)).expect("len") as u64;
    let q = Queue::open(
        &tmp.path().join("buffer"),
        QueueOptions {
            memory_max_bytes: one * 3,
            on_full: WhenFull::DropOldest,
            ..QueueOptions::default()
        },
    )
    .expect("open");
    q.faults().set(FaultPoint::Write, ENOSPC);
    let mut all = vec![push(&q, 1).0];
    assert!(q.flush().is_err(), "degraded");
    all.extend((2..=5).map(|i| push(&q, i).0));
    assert_eq!(seqs(&q), all[2..].to_vec(), "the oldest held events went");
    assert_eq!(q.stats().dropped, 2);
    assert!(q.stats().bytes <= one * 3);
}

#[test]
fn no_seq_is_reused_after_a_crash_during_the_fault() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let mut issued = 0;
    {
        let q = Queue::open(&dir, QueueOptions::default()).expect("open");
        q.faults().set(FaultPoint::Write, ENOSPC);
        q.faults().set(FaultPoint::Flush, ENOSPC);
        // Past several reserved blocks: reservations go to the side file alone.
        for i in 0..(3 * SEQ_BLOCK) {
            issued = push(&q, i).0;
        }
        // Dropped without a flush or a recovery: a crash.
    }
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert!(q.next_seq().expect("next") > issued);
}

#[test]
fn a_queue_whose_directory_cannot_be_made_starts_degraded_and_opens_it_once_it_can() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The state directory's place is taken by a file: nothing can be created there.
    let blocker = tmp.path().join("state");
    std::fs::write(&blocker, b"not a directory").expect("blocker");
    let dir = blocker.join("buffer");
    assert!(Queue::open(&dir, QueueOptions::default()).is_err());
    let q = Queue::open_or_degraded(&dir, QueueOptions::default()).expect("starts degraded");
    assert!(q.health().is_degraded());
    let held: Vec<u64> = (1..=3).map(|i| push(&q, i)).map(|(s, _)| s).collect();
    assert!(
        held[0] >= crate::model::now_ms() - 60_000,
        "a time-based seq floor: {held:?}"
    );
    assert_eq!(seqs(&q), held, "held in memory, readable");
    assert!(q.retry().is_err(), "a retry that cannot open yet fails");
    assert!(q.health().is_degraded(), "and leaves it degraded");

    std::fs::remove_file(&blocker).expect("free the place");
    lock(&q.inner.write).last_retry = None; // do not wait RETRY_EVERY in a test
    assert!(q.retry().expect("retry"), "opened once it can");
    assert!(!q.health().is_degraded());
    assert_eq!(seqs(&q), held, "the held events were stored first");
    let next = push(&q, 4).0;
    assert!(next > held[2], "seqs go on: {next} after {held:?}");
    q.flush().expect("flush");
    drop(q);
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert_eq!(seqs(&q).len(), 4, "all of them survive a reopen");
    assert!(q.next_seq().expect("next_seq") > next, "no seq reused");
}

#[test]
fn a_queue_another_process_holds_is_still_an_error_not_a_degraded_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let _first = Queue::open(&dir, QueueOptions::default()).expect("open");
    match Queue::open_or_degraded(&dir, QueueOptions::default()) {
        Err(BufferError::Locked { .. }) => {}
        other => panic!("expected Locked, got {:?}", other.map(|_| "a queue")),
    }
}

#[test]
fn files_deleted_under_a_running_queue_are_detected_and_everything_they_held_is_rewritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let stored: Vec<u64> = (1..=3).map(|i| push(&q, i)).map(|(s, _)| s).collect();
    q.ack(stored[0]).expect("ack");
    let kv = q.kv("sessions").expect("kv");
    kv.insert(b"dev-1", b"fcnt=7").expect("kv insert");
    q.flush().expect("flush");
    // A technician's `rm -rf` of the state directory under the running daemon.
    remove_everything_in(tmp.path());
    match q.maintain() {
        Err(BufferError::Vanished { .. }) => {}
        other => panic!("expected Vanished, got {other:?}"),
    }
    assert!(q.health().is_degraded());
    let (during, out) = push(&q, 4);
    assert!(matches!(out, PushOutcome::Degraded { held: true, .. }));

    lock(&q.inner.write).last_retry = None; // do not wait RETRY_EVERY in a test
    assert!(q.retry().expect("retry"), "a new queue is written");
    assert!(!q.health().is_degraded());
    let expect = vec![stored[1], stored[2], during];
    assert_eq!(
        seqs(&q),
        expect,
        "the stored events and the held one, not the acked"
    );
    assert_eq!(kv.get(b"dev-1").expect("kv get"), Some(b"fcnt=7".to_vec()));
    q.flush().expect("flush");
    drop((q, kv));
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert_eq!(seqs(&q), expect, "they are on disk again");
    assert_eq!(
        q.kv("sessions").expect("kv").get(b"dev-1").expect("kv get"),
        Some(b"fcnt=7".to_vec())
    );
    assert!(q.next_seq().expect("next_seq") > during, "no seq reused");
}

#[test]
fn files_found_again_after_they_vanished_keep_the_seq_floor_even_with_nothing_queued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let handed: Vec<u64> = (1..=2).map(|i| push(&q, i)).map(|(s, _)| s).collect();
    for s in &handed {
        q.ack(*s).expect("ack");
    }
    q.flush().expect("flush");
    remove_everything_in(tmp.path());
    assert!(q.maintain().is_err(), "vanished");
    lock(&q.inner.write).last_retry = None;
    assert!(q.retry().expect("retry"));
    // A crash right after the recovery, before any new seq: the new files alone (empty)
    // must still know the floor.
    drop(q);
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert!(
        q.next_seq().expect("next_seq") > handed[1],
        "no seq reused after files that vanished empty"
    );
}

#[test]
fn without_any_writable_reservation_seqs_go_on_in_the_far_range_and_the_next_run_starts_above() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let (first, _) = push(&q, 0);
    q.flush().expect("flush");
    // A read-only remount: neither the database nor the side file takes writes.
    q.faults().set(FaultPoint::Write, crate::buffer::EIO);
    let side = tmp.path().join("buffer.seq");
    std::fs::remove_file(&side).expect("side file");
    std::fs::create_dir(&side).expect("a directory where the side file was");
    let mut seqs = vec![first];
    for i in 1..3 * SEQ_BLOCK {
        let (seq, _) = q.push_with(|_| rec(i)).expect("push");
        seqs.push(seq);
        if i % 100 == 0 {
            let _ = q.flush();
        }
    }
    let _ = q.flush();
    assert!(q.health().is_degraded());
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "no jump within the far range"
    );
    let readable = q.read_after(None, usize::MAX).expect("read");
    assert_eq!(
        readable.len(),
        seqs.len(),
        "every one is published, none waits for a reservation"
    );
    // The daemon stops or dies without recording anything; the file system comes back.
    drop(q);
    std::fs::remove_dir(&side).expect("side file place");
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert!(
        q.next_seq().expect("next") > *seqs.last().expect("last"),
        "the next run starts above"
    );
}
