//! Benchmark harness (not a test): the queue's disk use while a backlog fills and after it
//! drains, what reclaiming the space costs (compaction time, the longest push stalled by
//! it), the disk a full queue takes under `max_bytes` churn, and how long a storage fault
//! takes to heal once the disk is writable again. Run with `cargo bench --bench disk`
//! (`-- --events N` for another backlog size); results go to BENCHMARKS.md.

use polegate::buffer::{ENOSPC, FaultPoint, Queue, QueueOptions, Record};
use polegate::model::payload::Body;
use std::time::{Duration, Instant};

fn record(seq: u64) -> Record {
    Record {
        topic: format!("polegate/cab-1/lamp-{}/telemetry", seq % 200),
        payload: Body::from_open(&[b'p'; 300]),
        retain: false,
        created_ms: seq,
    }
}

// The tests' harness, for its measure of a directory's disk use.
#[path = "../tests/common/mod.rs"]
mod common;
use common::allocated_bytes as disk;

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn fill(q: &Queue, n: u64) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let seq = q.next_seq().expect("seq");
            q.push(seq, &record(seq)).expect("push");
            if i % 1000 == 999 {
                q.flush().expect("flush");
            }
            seq
        })
        .collect()
}

fn ack(q: &Queue, seqs: &[u64]) {
    for (i, &s) in seqs.iter().enumerate() {
        q.ack(s).expect("ack");
        if i % 1000 == 999 {
            q.flush().expect("flush");
        }
    }
    q.flush().expect("flush");
}

/// Fill, drain to `keep` events, compact while another thread pushes every millisecond.
fn reclaim(events: u64, keep: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path();
    let q = Queue::open(&state.join("buffer"), QueueOptions::default()).expect("open");
    let t = Instant::now();
    let seqs = fill(&q, events);
    q.flush().expect("flush");
    let (filled, payload) = (disk(state), q.stats().bytes);
    let fill_s = t.elapsed().as_secs_f64();
    ack(&q, &seqs[..(events - keep) as usize]);
    let drained = disk(state);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = {
        let (q, stop) = (q.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let seq = q.next_seq().expect("seq");
                q.push(seq, &record(seq)).expect("push");
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(1));
            }
            worst
        })
    };
    let done = q.compact().expect("compact");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = pusher.join().expect("pusher");
    println!(
        "| {events} | {} ({fill_s:.1} s) | {} | {keep} | {} | {} | {:.0} ms | {:.1} ms |",
        mb(payload),
        mb(filled),
        mb(drained),
        mb(disk(state)),
        done.took.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
    );
}

/// A full queue (`max_bytes`, drop_oldest) under churn, maintained as the daemon does.
fn churn(max_bytes: u64, events: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path();
    let opts = QueueOptions {
        max_bytes,
        ..QueueOptions::default()
    };
    let q = Queue::open(&state.join("buffer"), opts).expect("open");
    let mut peak = 0;
    let mut compactions = 0;
    for i in 0..events {
        let seq = q.next_seq().expect("seq");
        q.push(seq, &record(seq)).expect("push");
        if i % 1000 == 999 {
            q.flush().expect("flush");
            peak = peak.max(disk(state));
        }
        if i % 20_000 == 19_999 {
            // Every 20k events (the daemon: every 10 s) the maintenance check.
            compactions += u64::from(q.compact_if_due_now());
        }
    }
    println!(
        "churn: max_bytes {} , {events} events pushed (drop_oldest), {compactions} \
         compactions: peak files {} = {:.2} x max_bytes, at the end {}",
        mb(max_bytes),
        mb(peak),
        peak as f64 / max_bytes as f64,
        mb(disk(state))
    );
}

trait DueNow {
    fn compact_if_due_now(&self) -> bool;
}

impl DueNow for Queue {
    /// `maintain` is paced to every 10 s; the bench waits that long rather than reaching in.
    fn compact_if_due_now(&self) -> bool {
        while !self.maintenance_due() {
            std::thread::sleep(Duration::from_millis(200));
        }
        self.maintain().expect("maintain").is_some()
    }
}

/// A write fault with `held` events in memory, then the disk comes back: time to store
/// durably again.
fn fault(stored: u64, held: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("open");
    fill(&q, stored);
    q.faults().set(FaultPoint::Write, ENOSPC);
    for _ in 0..held {
        let seq = q.next_seq().expect("seq");
        q.push(seq, &record(seq)).expect("push");
    }
    assert!(q.health().is_degraded());
    q.faults().clear();
    let t = Instant::now();
    let restored = q.recover().expect("recover");
    println!(
        "| {stored} | {held} | {restored} | {:.0} ms |",
        t.elapsed().as_secs_f64() * 1e3
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events: u64 = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    println!("records of 340 bytes (topic + 300-byte payload + header), flush every 1000");
    println!(
        "| events filled | records | files after filling | events left | files after draining | files after compaction | compaction | longest push during it |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    reclaim(events, 0);
    reclaim(events, events / 100);
    reclaim(2 * events, events / 2);
    println!();
    churn(16 * 1024 * 1024, 200_000);
    println!();
    println!(
        "| events stored | events held during the fault | written back | time to durable again |"
    );
    println!("|---|---|---|---|");
    fault(events, 1_000);
    fault(events, 10_000);
}
