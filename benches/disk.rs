//! Benchmark harness (not a test): the queue's disk use while a backlog fills and after it
//! drains, what reclaiming the space costs, and how long a storage fault takes to heal.
//! Run with `cargo bench --bench disk` (`-- --events N` for another backlog size); results
//! go to BENCHMARKS.md.

use polegate::buffer::{Queue, QueueOptions, Record};
use polegate::model::payload::Body;
use std::path::Path;
use std::time::{Duration, Instant};

fn record(seq: u64) -> Record {
    Record {
        topic: format!("polegate/cab-1/lamp-{}/telemetry", seq % 200),
        payload: Body::from_open(&[b'p'; 300]),
        retain: false,
        created_ms: seq,
    }
}

/// Bytes of every file under `dir` (the state directory: all generations, side files).
fn disk(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().to_path_buf();
    let q = Queue::open(&state.join("buffer"), QueueOptions::default()).expect("open");
    let t = Instant::now();
    for i in 0..events {
        let seq = q.next_seq().expect("seq");
        q.push(seq, &record(seq)).expect("push");
        if i % 1000 == 999 {
            q.flush().expect("flush");
        }
    }
    q.flush().expect("flush");
    let fill = t.elapsed();
    let payload = q.stats().bytes;
    println!(
        "filled {events} events ({} of records) in {:.2} s: disk {}",
        mb(payload),
        fill.as_secs_f64(),
        mb(disk(&state))
    );
    let t = Instant::now();
    let mut acked = 0;
    loop {
        let batch = q.read_after(None, 1000).expect("read");
        if batch.is_empty() {
            break;
        }
        for (seq, _) in batch {
            q.ack(seq).expect("ack");
            acked += 1;
        }
        q.flush().expect("flush");
    }
    println!(
        "drained {acked} events in {:.2} s: disk {}",
        t.elapsed().as_secs_f64(),
        mb(disk(&state))
    );
    let t = Instant::now();
    for s in [1u64, 5, 10, 30, 60] {
        while t.elapsed() < Duration::from_secs(s) {
            std::thread::sleep(Duration::from_millis(100));
            q.flush().expect("flush");
        }
        println!("  {s:>3} s after the drain: disk {}", mb(disk(&state)));
    }
}
