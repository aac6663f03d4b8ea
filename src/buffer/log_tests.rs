//! Proves the queue contract in-process: ordering, idempotent acks, seq monotonicity across
//! reopen, exact `on_full` accounting in memory and by whole blocks on disk (also after
//! reopen), recovery from a corrupt database and a damaged ledger, skipping of damaged
//! blocks, conversion of an earlier release's queue, the lock error.

use super::super::store::{META_TREE, key};
use super::super::{
    BufferError, PushOutcome, QueueOptions, Record, WhenFull, ledger, record, seqfile,
};
use super::*;
use crate::buffer::SEQ_FAR;
use crate::model::payload::{Body, Delivery};
use std::fs;

fn rec(i: u64, payload_len: usize) -> Record {
    Record {
        topic: format!("polegate/cab-1/lamp-{i}/telemetry"),
        payload: Body::from_open(&vec![b'x'; payload_len]),
        retain: i.is_multiple_of(2),
        created_ms: 1_700_000_000_000 + i,
    }
}

fn opts(max_bytes: u64, on_full: WhenFull) -> QueueOptions {
    QueueOptions {
        max_bytes,
        on_full,
        cache_bytes: 1024 * 1024,
        ..QueueOptions::default()
    }
}

fn size(r: &Record) -> u64 {
    record::encoded_len(r).expect("short topic") as u64
}

fn push_new(q: &Queue, r: &Record) -> (u64, PushOutcome) {
    let seq = q.next_seq().expect("next_seq");
    (seq, q.push(seq, r).expect("push"))
}

#[test]
fn pushed_records_read_back_in_seq_order_and_ack_removes_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("open");
    let seqs: Vec<u64> = (0..10).map(|i| push_new(&q, &rec(i, 20)).0).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>(), "seqs start at 1");

    let all = q.read_after(None, 100).expect("read");
    assert_eq!(all.iter().map(|(s, _)| *s).collect::<Vec<_>>(), seqs);
    assert_eq!(all[3].1, rec(3, 20));
    let page = q.read_after(Some(4), 3).expect("read");
    assert_eq!(
        page.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
    assert!(q.read_after(Some(u64::MAX), 3).expect("read").is_empty());
    assert!(q.read_after(None, 0).expect("read").is_empty());

    q.ack(1).expect("ack");
    q.ack(5).expect("ack");
    q.ack(5).expect("a second ack of the same seq is a no-op");
    q.ack(999).expect("an unknown seq is ignored");
    let left: Vec<u64> = q
        .read_after(None, 100)
        .expect("read")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(left, vec![2, 3, 4, 6, 7, 8, 9, 10]);
    let st = q.stats();
    assert_eq!(st.events, 8);
    assert_eq!(
        st.bytes,
        (2..=10)
            .filter(|i| *i != 5)
            .map(|i| size(&rec(i - 1, 20)))
            .sum::<u64>()
    );
    assert_eq!(q.purge().expect("purge"), 8);
    assert_eq!(q.stats().events, 0);
    assert_eq!(q.stats().bytes, 0);
    assert_eq!(q.next_seq().expect("next"), 11, "purge does not rewind seq");
}

#[test]
fn a_seq_not_handed_out_by_next_seq_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("open");
    assert!(matches!(
        q.push(0, &rec(0, 1)),
        Err(BufferError::SeqNotAllocated { seq: 0, .. })
    ));
    assert!(matches!(
        q.push(1, &rec(0, 1)),
        Err(BufferError::SeqNotAllocated { seq: 1, .. })
    ));
}

#[test]
fn seq_keeps_increasing_across_reopen_and_skips_the_far_range_after_a_crash() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let mut last = 0;
    for round in 0..3 {
        let q = Queue::open(&dir, QueueOptions::default()).expect("open");
        for i in 0..5 {
            let (seq, _) = push_new(&q, &rec(i, 10));
            assert!(seq > last, "round {round}: {seq} after {last}");
            last = seq;
        }
        q.flush().expect("flush");
    }
    // No run stopped cleanly: each reopen starts SEQ_FAR past the block the previous run
    // reserved (a run that could not write its reservation went on in that range).
    assert_eq!(last, 2 * (SEQ_BLOCK + SEQ_FAR) + 5);
    assert_eq!(
        seqfile::read(&tmp.path().join("buffer.seq")).expect("side file"),
        Some(3 * SEQ_BLOCK + 2 * SEQ_FAR + 1)
    );
}

#[test]
fn drop_oldest_evicts_exactly_enough_old_records_held_in_memory_and_counts_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let one = size(&rec(0, 100));
    let q = Queue::open(
        &tmp.path().join("buffer"),
        opts(one * 3, WhenFull::DropOldest),
    )
    .expect("open");
    for i in 0..3 {
        assert_eq!(
            push_new(&q, &rec(i, 100)).1,
            PushOutcome::Stored { evicted: 0 }
        );
    }
    assert_eq!(
        push_new(&q, &rec(3, 100)).1,
        PushOutcome::Stored { evicted: 1 }
    );
    // A record three times the size needs the whole buffer.
    assert_eq!(
        push_new(&q, &rec(4, 2 * 100 + 2 * (one as usize - 100) + 100)).1,
        PushOutcome::Stored { evicted: 3 }
    );
    let st = q.stats();
    assert_eq!((st.events, st.bytes, st.dropped), (1, one * 3, 4));
    assert_eq!(q.read_after(None, 10).expect("read")[0].0, 5);
    // Larger than max_bytes on its own: rejected, counted, nothing evicted.
    assert_eq!(push_new(&q, &rec(6, 1000)).1, PushOutcome::Rejected);
    let st = q.stats();
    assert_eq!((st.events, st.dropped), (1, 5));
}

#[test]
fn drop_newest_rejects_when_full_and_counts_each_rejection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let one = size(&rec(0, 100));
    let q = Queue::open(
        &tmp.path().join("buffer"),
        opts(one * 2, WhenFull::DropNewest),
    )
    .expect("open");
    assert_eq!(
        push_new(&q, &rec(1, 100)).1,
        PushOutcome::Stored { evicted: 0 }
    );
    assert_eq!(
        push_new(&q, &rec(2, 100)).1,
        PushOutcome::Stored { evicted: 0 }
    );
    assert_eq!(push_new(&q, &rec(3, 100)).1, PushOutcome::Rejected);
    assert_eq!(push_new(&q, &rec(4, 100)).1, PushOutcome::Rejected);
    let st = q.stats();
    assert_eq!((st.events, st.bytes, st.dropped), (2, one * 2, 2));
    q.ack(1).expect("ack");
    assert_eq!(
        push_new(&q, &rec(5, 100)).1,
        PushOutcome::Stored { evicted: 0 }
    );
    let seqs: Vec<u64> = q
        .read_after(None, 10)
        .expect("read")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, vec![2, 5]);
}

#[test]
fn max_bytes_accounting_is_rebuilt_on_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let one = size(&rec(0, 50));
    {
        let q = Queue::open(&dir, opts(one * 3, WhenFull::DropNewest)).expect("open");
        for i in 0..3 {
            push_new(&q, &rec(i, 50));
        }
        q.ack(2).expect("ack");
        q.flush().expect("flush");
    }
    let q = Queue::open(&dir, opts(one * 3, WhenFull::DropNewest)).expect("reopen");
    let st = q.stats();
    assert_eq!((st.events, st.bytes, st.dropped), (2, one * 2, 0));
    assert!(st.disk_bytes > 0);
    assert_eq!(
        push_new(&q, &rec(9, 50)).1,
        PushOutcome::Stored { evicted: 0 }
    );
    assert_eq!(push_new(&q, &rec(10, 50)).1, PushOutcome::Rejected);
}

#[test]
fn a_corrupt_database_is_moved_aside_and_a_fresh_one_keeps_the_seq_floor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let last = {
        let q = Queue::open(&dir, QueueOptions::default()).expect("open");
        let (seq, _) = push_new(&q, &rec(1, 10));
        q.flush().expect("flush");
        seq
    };
    fs::write(
        dir.join("conf"),
        b"\xff\xfe not a sled config at all \x00\x01\x02",
    )
    .expect("garble conf");
    fs::write(dir.join("db"), vec![0xA5u8; 4096]).expect("garble db");

    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen recovers");
    let st = q.stats();
    assert_eq!(st.corrupt_recoveries, 1);
    assert_eq!(st.events, 0);
    let moved: Vec<String> = fs::read_dir(tmp.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("buffer.corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    // buffer.corrupt-20261128T172425Z
    let stamp = moved[0].trim_start_matches("buffer.corrupt-");
    assert_eq!(stamp.len(), 16, "{stamp}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T',
        "{stamp}"
    );
    assert!(
        q.next_seq().expect("next") > last,
        "the side file kept the seq floor"
    );
}

#[test]
fn a_damaged_ledger_is_rebuilt_from_the_blocks_and_the_side_file_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    {
        let q = Queue::open(&dir, QueueOptions::default()).expect("open");
        let (seq, _) = push_new(&q, &rec(1, 10));
        q.ack(seq).expect("ack");
        q.flush().expect("flush");
    }
    {
        // The dropped queue's sled I/O threads may hold its file lock a moment longer.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match sled::open(&dir) {
                Ok(db) => break db,
                Err(e) => assert!(std::time::Instant::now() < deadline, "raw open: {e}"),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let meta = db.open_tree(META_TREE).expect("meta");
        meta.insert(ledger::KEY, &b"oops"[..]).expect("garble");
        db.flush().expect("flush");
    }
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert_eq!(q.stats().corrupt_recoveries, 1);
    assert_eq!(
        q.next_seq().expect("next"),
        SEQ_BLOCK + SEQ_FAR + 1,
        "a ledger that cannot prove a clean stop: the far range is skipped"
    );
}

#[test]
fn a_backlog_written_by_the_previous_record_version_is_delivered_after_an_upgrade() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let closed = br#"{"seq":1,"points":{"a":1}}"#;
    let mut old = vec![1u8, 0];
    old.extend_from_slice(&5u64.to_be_bytes());
    old.extend_from_slice(&3u16.to_be_bytes());
    old.extend_from_slice(b"a/b");
    old.extend_from_slice(closed);
    {
        // An earlier release kept one sled key per event in the `events` tree.
        let q = Queue::open(&dir, QueueOptions::default()).expect("open");
        let store = q.store().expect("open");
        let events = store.db.open_tree("events").expect("events tree");
        events.insert(key(7), &old[..]).expect("old");
        let mut v2 = record::encode(&rec(0, 10)).expect("encode");
        events.insert(key(8), v2.as_slice()).expect("v2");
        v2.truncate(3);
        store.flush().expect("flush");
    }
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    let all = q.read_after(None, 10).expect("read");
    assert_eq!(all.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![7, 8]);
    assert_eq!(q.malformed_skipped(), 0);
    let upgraded = all[0].1.clone();
    assert_eq!((upgraded.topic.as_str(), upgraded.created_ms), ("a/b", 5));
    assert_eq!(upgraded.payload.publish(Delivery::Live), closed.to_vec());
    assert_eq!(all[1].1, rec(0, 10));
    // Converted to the current record version (one byte shorter).
    assert_eq!(q.stats().bytes, size(&rec(0, 10)) + old.len() as u64 - 1);
    assert!(
        q.next_seq().expect("next") > 8,
        "the old keys raise the seq floor"
    );
    q.ack_many(&[7, 8]);
    q.flush().expect("flush");
    assert_eq!((q.stats().events, q.stats().bytes), (0, 0));
    let names = q.store().expect("open").db.tree_names();
    assert!(
        !names.iter().any(|n| n.as_ref() == b"events"),
        "converted once"
    );
}

#[test]
fn a_damaged_block_is_skipped_and_quarantined_without_blocking_the_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    {
        let q = Queue::open(&dir, QueueOptions::default()).expect("open");
        for i in 0..3 {
            push_new(&q, &rec(i, 10));
            q.flush().expect("one block per event");
        }
        let store = q.store().expect("open");
        let mut v = store
            .blocks
            .get(key(2))
            .expect("get")
            .expect("block 2")
            .to_vec();
        let last = v.len() - 1;
        v[last] ^= 0x55; // a bit rot in its last record
        store.blocks.insert(key(2), v).expect("garble");
        store.flush().expect("flush");
    }
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    let seqs: Vec<u64> = q
        .read_after(None, 10)
        .expect("read")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, vec![1, 3]);
    assert_eq!(q.malformed_skipped(), 1);
    assert_eq!(q.stats().events, 2);
    assert_eq!(q.stats().bytes, size(&rec(0, 10)) + size(&rec(2, 10)));
    q.flush().expect("the writer moves it aside");
    assert_eq!(q.store().expect("open").quarantine.len(), 1);
    assert_eq!(q.read_after(None, 10).expect("read again").len(), 2);
    assert_eq!(
        q.malformed_skipped(),
        1,
        "a quarantined record is not met again"
    );
    let err = BufferError::Malformed {
        path: dir.clone(),
        seq: 2,
        what: "x".into(),
    };
    assert!(err.to_string().contains("block 2"));
}

#[test]
fn a_second_open_of_the_same_directory_is_a_clear_locked_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let _q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let err = Queue::open(&dir, QueueOptions::default()).expect_err("locked");
    let msg = err.to_string();
    assert!(matches!(err, BufferError::Locked { .. }), "{msg}");
    assert!(msg.contains("in use by another polegate process"), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert!(dir.exists(), "a locked database is never moved aside");
}

#[test]
fn flush_with_nothing_written_does_not_touch_sled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("open");
    let st = q.store().expect("open");
    q.flush().expect("flush");
    assert!(
        q.plan(&st, q.inner.write.lock().expect("writer").side_file)
            .is_none(),
        "nothing to write"
    );
    push_new(&q, &rec(0, 1));
    q.flush().expect("flush");
    assert!(
        q.plan(&st, q.inner.write.lock().expect("writer").side_file)
            .is_none(),
        "written"
    );
}

#[test]
fn events_acked_before_the_flush_are_never_written_and_a_drained_block_is_removed_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("open");
    let st = q.store().expect("open");
    let seqs: Vec<u64> = (0..10).map(|i| push_new(&q, &rec(i, 50)).0).collect();
    q.ack_many(&seqs[..10]);
    q.flush().expect("flush");
    assert_eq!(st.blocks.len(), 0, "acked in memory: nothing reached sled");
    let seqs: Vec<u64> = (0..10).map(|i| push_new(&q, &rec(i, 50)).0).collect();
    q.flush().expect("flush");
    assert_eq!(st.blocks.len(), 1, "one block for the flush window");
    q.ack_many(&seqs[..9]);
    q.flush().expect("flush");
    assert_eq!(st.blocks.len(), 1, "a block stays until all of it is acked");
    assert_eq!(q.len(), 1);
    q.ack(seqs[9]).expect("ack");
    q.flush().expect("flush");
    assert_eq!(st.blocks.len(), 0, "removed whole");
    assert_eq!((q.stats().events, q.stats().bytes), (0, 0));
}

#[test]
fn drop_oldest_evicts_whole_stored_blocks_from_the_front() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let one = size(&rec(0, 100));
    let q = Queue::open(
        &tmp.path().join("buffer"),
        opts(one * 4, WhenFull::DropOldest),
    )
    .expect("open");
    let a: Vec<u64> = (0..2).map(|i| push_new(&q, &rec(i, 100)).0).collect();
    q.flush().expect("block a");
    let b: Vec<u64> = (0..2).map(|i| push_new(&q, &rec(i, 100)).0).collect();
    q.flush().expect("block b");
    let (c, out) = push_new(&q, &rec(9, 100));
    assert_eq!(
        out,
        PushOutcome::Stored { evicted: 2 },
        "block a went whole"
    );
    let left: Vec<u64> = q
        .read_after(None, 10)
        .expect("read")
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(left, vec![b[0], b[1], c]);
    assert_eq!((q.stats().events, q.stats().dropped), (3, 2));
    q.flush().expect("flush");
    drop(q);
    let q = Queue::open(
        &tmp.path().join("buffer"),
        opts(one * 4, WhenFull::DropOldest),
    )
    .expect("reopen");
    let left: Vec<u64> = q
        .read_after(None, 10)
        .expect("read")
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(left, vec![b[0], b[1], c], "the eviction is durable");
    assert!(a.iter().all(|s| !left.contains(s)));
}
