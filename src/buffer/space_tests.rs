//! Proves that disk use comes back after a backlog drains, that compaction keeps every
//! queued event, kv entry and the seq floor (also with pushes and acks racing it), and
//! that what a crash leaves at either side of the switch opens to one live queue.

use super::{COMPACT_FLOOR, MAINTAIN_EVERY};
use crate::buffer::generation;
use crate::buffer::{Queue, QueueOptions, Record};
use crate::model::payload::Body;
use std::path::Path;

/// A record whose 300 payload bytes do not compress (the blocks are LZ4): the backlog
/// takes its full size on disk.
fn rec(seq: u64) -> Record {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let noise: Vec<u8> = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect();
    Record {
        topic: format!("polegate/g/lamp-{}/telemetry", seq % 50),
        payload: Body::from_open(&noise),
        retain: false,
        created_ms: seq,
    }
}

fn fill(q: &Queue, n: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        let seq = q.next_seq().expect("seq");
        q.push(seq, &rec(seq)).expect("push");
        seqs.push(seq);
        if i % 1000 == 999 {
            q.flush().expect("flush");
        }
    }
    q.flush().expect("flush");
    seqs
}

fn stored(q: &Queue) -> Vec<u64> {
    q.read_after(None, usize::MAX)
        .expect("read")
        .into_iter()
        .map(|(s, r)| {
            assert_eq!(r, rec(s), "record {s} intact");
            s
        })
        .collect()
}

/// Forces the next `maintain` to measure now (the pacing is tested by the daemon).
fn due(q: &Queue) {
    q.inner.space.lock().expect("space").last_check = None;
}

#[test]
fn a_drained_backlog_gives_its_disk_back_and_keeps_kv_stores_and_the_seq_floor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let kv = q.kv("lora").expect("kv");
    kv.insert(b"session", b"keys").expect("kv insert");
    let seqs = fill(&q, 40_000);
    due(&q);
    assert_eq!(
        q.maintain().expect("maintain"),
        None,
        "a full queue is not compacted"
    );
    let full = q.stats().disk_bytes;
    assert!(full > COMPACT_FLOOR, "the backlog takes {full} bytes");
    let keep = 500;
    for &s in &seqs[..seqs.len() - keep] {
        q.ack(s).expect("ack");
    }
    q.flush().expect("flush");
    due(&q);
    let done = q.maintain().expect("maintain").expect("compacted");
    let queued = q.stats().bytes;
    assert_eq!(done.events, keep as u64);
    assert!(
        done.disk_after <= COMPACT_FLOOR.max(2 * queued) && done.disk_after < full / 4,
        "after draining: {} bytes on disk for {queued} queued (was {full})",
        done.disk_after
    );
    assert_eq!(
        q.stats().disk_bytes,
        done.disk_after,
        "stats shows the measured size"
    );
    assert!(!dir.exists(), "generation 0 is deleted");
    assert_eq!(stored(&q), seqs[seqs.len() - keep..]);
    let next = q.next_seq().expect("seq");
    assert!(next > *seqs.last().expect("last"));
    q.push(next, &rec(next))
        .expect("push into the new generation");
    assert_eq!(
        kv.get(b"session").expect("kv get").as_deref(),
        Some(&b"keys"[..])
    );
    kv.insert(b"fcnt", b"7").expect("kv after compaction");
    q.flush().expect("flush");
    due(&q);
    assert_eq!(
        q.maintain().expect("maintain"),
        None,
        "nothing more to gain"
    );
    drop((q, kv));

    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    let mut expect = seqs[seqs.len() - keep..].to_vec();
    expect.push(next);
    assert_eq!(stored(&q), expect, "the compacted queue survives a reopen");
    let kv = q.kv("lora").expect("kv");
    assert_eq!(kv.get(b"fcnt").expect("get").as_deref(), Some(&b"7"[..]));
    assert!(q.next_seq().expect("seq") > next);
    assert!(
        MAINTAIN_EVERY.as_secs() <= 30,
        "within a minute of the drain"
    );
}

#[test]
fn pushes_and_acks_racing_a_compaction_are_neither_lost_nor_duplicated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("open");
    let seqs = fill(&q, 20_000);
    for &s in &seqs[..15_000] {
        q.ack(s).expect("ack");
    }
    let racing: Vec<u64> = seqs[15_000..18_000].to_vec();
    let writer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut pushed = Vec::new();
            for i in 0..3_000u64 {
                let seq = q.next_seq().expect("seq");
                q.push(seq, &rec(seq)).expect("push");
                pushed.push(seq);
                q.ack(racing[i as usize]).expect("ack while compacting");
            }
            pushed
        })
    };
    let mut compactions = 0;
    while !writer.is_finished() {
        q.compact().expect("compact");
        compactions += 1;
    }
    let pushed = writer.join().expect("writer");
    assert!(compactions >= 1);
    let mut expect: Vec<u64> = seqs[18_000..].to_vec();
    expect.extend(pushed);
    assert_eq!(stored(&q), expect, "after {compactions} compactions");
    assert_eq!(
        q.len(),
        q.read_after(None, usize::MAX).expect("read").len() as u64
    );
}

/// Copies a directory tree (files and directories).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn a_crash_on_either_side_of_the_switch_leaves_exactly_one_live_queue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let seqs = fill(&q, 300);
    q.kv("cmd_ids")
        .expect("kv")
        .insert(b"c-1", b"1")
        .expect("kv");
    q.flush().expect("flush");
    // A copy of generation 0 as it was: after the switch, a crash may leave it behind.
    let old_copy = tmp.path().join("gen0-copy");
    copy_dir(&dir, &old_copy);
    q.compact().expect("compact");
    let live = generation::gen_dir(&dir, 1);
    // Before a switch, a crash leaves the next generation half built.
    let half = generation::gen_dir(&dir, 2);
    copy_dir(&live, &half);
    std::fs::write(half.join("db"), b"torn").expect("tear it");
    drop(q);
    copy_dir(&old_copy, &dir);

    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert_eq!(stored(&q), seqs, "the pointer's generation, complete");
    assert_eq!(q.stats().corrupt_recoveries, 0);
    assert!(
        !dir.exists() && !half.exists() && live.exists(),
        "strays removed"
    );
    let kv = q.kv("cmd_ids").expect("kv");
    assert_eq!(kv.get(b"c-1").expect("get").as_deref(), Some(&b"1"[..]));
    // A second process cannot open it, nor delete anything of it.
    let err = Queue::open(&dir, QueueOptions::default()).expect_err("locked");
    assert!(
        matches!(err, crate::buffer::BufferError::Locked { .. }),
        "{err}"
    );
    assert!(live.exists());
}

#[test]
fn a_failed_directory_sync_after_the_pointer_switch_keeps_the_new_generation_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let seqs = fill(&q, 300);
    q.kv("lora").expect("kv").insert(b"fcnt", b"9").expect("kv");
    // The rename of the pointer happened; the fsync of its directory reports an error.
    q.faults()
        .set(crate::buffer::FaultPoint::Switch, crate::buffer::EIO);
    let done = q
        .compact()
        .expect("the pointer names the new generation: kept");
    assert_eq!(done.generation, 1);
    q.faults().clear();
    assert_eq!(generation::current(&dir), 1);
    assert!(
        generation::gen_dir(&dir, 1).exists(),
        "the live generation is never deleted"
    );
    let more = fill(&q, 5);
    // A crash now, then a restart: nothing is lost, nothing is reused.
    drop(q);
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    let expect: Vec<u64> = seqs.iter().chain(&more).copied().collect();
    assert_eq!(stored(&q), expect);
    assert_eq!(
        q.kv("lora")
            .expect("kv")
            .get(b"fcnt")
            .expect("get")
            .as_deref(),
        Some(&b"9"[..])
    );
    assert!(q.next_seq().expect("seq") > *more.last().expect("last"));
}

#[test]
fn a_pointer_to_a_missing_generation_is_refused_not_replaced_by_an_empty_queue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("buffer");
    let q = Queue::open(&dir, QueueOptions::default()).expect("open");
    let seqs = fill(&q, 50);
    q.compact().expect("compact");
    drop(q);
    // The generation the pointer names is gone (a half-restored backup, say).
    let live = generation::gen_dir(&dir, 1);
    let aside = tmp.path().join("kept-aside");
    std::fs::rename(&live, &aside).expect("move away");
    match Queue::open(&dir, QueueOptions::default()) {
        Err(crate::buffer::BufferError::MissingGeneration { generation: 1, .. }) => {}
        other => panic!(
            "expected MissingGeneration, got {:?}",
            other.map(|_| "a queue")
        ),
    }
    let q = Queue::open_or_degraded(&dir, QueueOptions::default()).expect("degraded start");
    assert!(q.health().is_degraded());
    drop(q);
    std::fs::rename(&aside, &live).expect("back");
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert_eq!(stored(&q), seqs, "nothing was started over it");
}
