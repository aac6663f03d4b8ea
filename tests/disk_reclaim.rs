//! The daemon gives the disk back: a backlog that took more than the compaction floor is
//! delivered, and within a minute the queue's files shrink to a fresh generation, with
//! the old files deleted and `seq` continuing in the next run.

use crate::common::*;
use polegate::buffer::{COMPACT_FLOOR, Queue, QueueOptions, Record};
use polegate::model::payload::Body;
use std::time::Duration;

/// `n` letters that LZ4 cannot shorten, different for each `seed`.
fn noise(seed: u64, n: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backlog_gives_its_disk_back_within_a_minute() {
    let broker = Mosquitto::start().await;
    let setup = Setup::custom(
        "cab-test",
        &format!(
            "url = \"mqtt://127.0.0.1:{}\"\nreplay_rate = 0\n",
            broker.port
        ),
        "[buffer]\nflush_every_ms = 100\n",
    );
    let state = setup.state_dir();
    // A backlog left by an outage: 30,000 events, more than the compaction floor on disk
    // (padded with noise: the queue's blocks are compressed).
    let backlog = 30_000u64;
    let last = {
        let q = Queue::open(&state.join("buffer"), QueueOptions::default()).expect("open");
        let mut last = 0;
        for i in 0..backlog {
            let seq = q.next_seq().expect("seq");
            let body = format!("{{\"seq\":{seq},\"pad\":\"{}\"", noise(seq, 280));
            let rec = Record {
                topic: "polegate/cab-test/lamp-1/telemetry".into(),
                payload: Body::from_open(body.as_bytes()),
                retain: false,
                created_ms: 1,
            };
            q.push(seq, &rec).expect("push");
            if i % 1000 == 999 {
                q.flush().expect("flush");
            }
            last = seq;
        }
        q.flush().expect("flush");
        last
    };
    let filled = allocated_bytes(&state);
    assert!(filled > COMPACT_FLOOR, "the backlog takes {filled} bytes");

    let mut rec = Recorder::start(broker.port, "polegate/cab-test/lamp-1/telemetry").await;
    let d = Daemon::start(&setup).await;
    // Delivered in seq order: looking at the newest message is enough (and linear).
    rec.wait_until("the backlog delivered", |s| {
        s.last().and_then(|m| m.json["seq"].as_u64()) >= Some(last)
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while d.handles.queue.stats().disk_bytes > COMPACT_FLOOR {
        assert!(
            tokio::time::Instant::now() < deadline,
            "files still {} bytes a minute after the drain (filled: {filled})",
            d.handles.queue.stats().disk_bytes
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = allocated_bytes(&state);
    assert!(
        now <= COMPACT_FLOOR,
        "state dir {now} bytes after compaction (was {filled})"
    );
    assert!(
        !state.join("buffer").exists(),
        "the old generation is deleted"
    );
    let next = d.handles.queue.next_seq().expect("seq");
    assert!(next > last);
    d.stop().await;

    let q = Queue::open(&state.join("buffer"), QueueOptions::default()).expect("reopen");
    assert_eq!(q.stats().corrupt_recoveries, 0);
    assert!(
        q.next_seq().expect("seq") > next,
        "seq continues in the compacted queue"
    );
}
