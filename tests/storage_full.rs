//! Proves SPEC §5 "Storage faults" on a real full file system: the queue lives on a
//! 12 MiB tmpfs that a filler file has filled. Writes then fail for real (ENOSPC), the
//! queue turns degraded once, keeps every event (queued before the fault, and held in
//! memory during it) readable for the publisher, and once space is freed it reopens
//! the database, stores the held events first and all of them survive a reopen.
//! Needs root (mount); CI runs as root.

use polegate::buffer::{PushOutcome, Queue, QueueOptions, Record};
use polegate::model::payload::Body;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, lazily unmounted on drop (also when the test fails).
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("mnt");
        std::fs::create_dir(&dir).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir,
            _parent: parent,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn rec(i: u64) -> Record {
    Record {
        topic: format!("polegate/cab-1/lamp-{}/telemetry", i % 3),
        payload: Body::from_open(
            format!("{{\"seq\":{i},\"pad\":\"{}\"", "x".repeat(400)).as_bytes(),
        ),
        retain: false,
        created_ms: 1_700_000_000_000 + i,
    }
}

/// Writes 64 KiB chunks until the file system refuses; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

fn seqs(q: &Queue) -> Vec<u64> {
    q.read_after(None, 100_000)
        .expect("read")
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

#[test]
fn a_full_file_system_degrades_the_queue_without_losing_events_and_it_recovers_once_freed() {
    let fs = Tmpfs::mount("12m");
    let dir = fs.dir.join("buffer");
    let q = Queue::open(
        &dir,
        QueueOptions {
            max_bytes: 64 * 1024 * 1024,
            ..QueueOptions::default()
        },
    )
    .expect("open");
    let mut pushed = Vec::new();
    for i in 0..200 {
        let seq = q.next_seq().expect("seq");
        q.push(seq, &rec(i)).expect("push");
        pushed.push(seq);
    }
    q.flush().expect("flush before the fault");
    let filler = fill(&fs.dir);

    // Write until the real ENOSPC reaches the queue (bounded).
    let mut degraded_at = None;
    for i in 200..20_000 {
        let seq = q.next_seq().expect("seq keeps numbering during the fault");
        let out = q.push(seq, &rec(i)).expect("push never errors");
        pushed.push(seq);
        let _ = q.flush();
        if matches!(out, PushOutcome::Degraded { .. }) || q.health().is_degraded() {
            degraded_at = Some(i);
            break;
        }
    }
    assert!(degraded_at.is_some(), "the full tmpfs never failed a write");
    let reason = q
        .health()
        .get()
        .reason()
        .map(str::to_owned)
        .expect("a reason");
    assert!(!reason.is_empty());
    // During the fault: more events are held, everything stays readable in seq order.
    for i in 0..50 {
        let seq = q.next_seq().expect("seq");
        assert!(matches!(
            q.push(seq, &rec(100_000 + i)).expect("push"),
            PushOutcome::Degraded { held: true, .. }
        ));
        pushed.push(seq);
    }
    assert_eq!(seqs(&q), pushed, "nothing lost while degraded");
    assert_eq!(q.stats().dropped, 0);
    // Still full: a retry fails (or cannot write the held events) and keeps everything.
    let still = q.recover();
    assert!(still.is_err(), "recovered on a full disk: {still:?}");
    assert!(q.health().is_degraded());
    assert_eq!(seqs(&q), pushed);
    let aside: Vec<_> = std::fs::read_dir(&fs.dir)
        .expect("ls")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
        .collect();
    assert!(aside.is_empty(), "a full disk is not a corrupt database");

    std::fs::remove_file(&filler).expect("free the space");
    q.recover().expect("recovers once space is free");
    assert!(!q.health().is_degraded());
    let seq = q.next_seq().expect("seq");
    assert!(matches!(
        q.push(seq, &rec(999_999)).expect("push"),
        PushOutcome::Stored { .. }
    ));
    pushed.push(seq);
    q.flush().expect("durable again");
    drop(q);
    let q = Queue::open(&dir, QueueOptions::default()).expect("reopen");
    assert_eq!(
        seqs(&q),
        pushed,
        "every event survived the fault and the reopen"
    );
}
