//! A measurement, not a check (hence `#[ignore]`): push rate with a flush every 1000
//! events, ack rate, the disk footprint and this process's RSS before and after draining
//! 100k ~300-byte events.
//! Run: `cargo test --test buffer_throughput -- --ignored --nocapture`.

use polegate::buffer::{Queue, QueueOptions, Record};
use polegate::model::payload::Body;
use std::time::Instant;

const EVENTS: u64 = 100_000;
const FLUSH_EVERY: u64 = 1000;

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn push_and_ack_rates_and_disk_use_for_100k_events_of_300_bytes_are_printed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("open");
    let payload = Body::from_open(&[b'{'; 300 - 40]);
    let rss_start = rss_mb();
    // Two fill/drain cycles: the second shows whether sled reuses the space it freed.
    for cycle in 1..=2 {
        let t = Instant::now();
        for i in 0..EVENTS {
            let seq = q.next_seq().expect("next_seq");
            let rec = Record {
                topic: format!("polegate/cab-dijon-0042/lamp-{:03}/telemetry", i % 500),
                payload: payload.clone(),
                retain: false,
                created_ms: i,
            };
            q.push(seq, &rec).expect("push");
            if seq.is_multiple_of(FLUSH_EVERY) {
                q.flush().expect("flush");
            }
        }
        q.flush().expect("flush");
        let push_s = t.elapsed().as_secs_f64();
        let full = q.stats();
        let rss_full = rss_mb();

        let t = Instant::now();
        let mut after = None;
        loop {
            let page = q.read_after(after, 1000).expect("read");
            let Some(&(last, _)) = page.last() else { break };
            for (seq, _) in &page {
                q.ack(*seq).expect("ack");
            }
            q.flush().expect("flush");
            after = Some(last);
        }
        let ack_s = t.elapsed().as_secs_f64();
        let drained = q.stats();
        print!("cycle {cycle}: ");
        println!(
            "push+flush/1000: {:.0} ev/s ({:.1} s); read+ack+flush/1000: {:.0} ev/s ({:.1} s)",
            EVENTS as f64 / push_s,
            push_s,
            EVENTS as f64 / ack_s,
            ack_s
        );
        println!(
            "accounted bytes full: {} ; disk full: {} ; disk drained: {} ; events left: {}",
            full.bytes, full.disk_bytes, drained.disk_bytes, drained.events
        );
        println!(
            "RSS at start {rss_start:.1} MB, full {rss_full:.1} MB, drained {:.1} MB",
            rss_mb()
        );
        assert_eq!(drained.events, 0);
    }
}
