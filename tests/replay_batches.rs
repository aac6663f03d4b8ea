//! Proves that a backlog several times the in-flight window drains through a real broker
//! with every event published exactly once, in seq order, and removed from the queue
//! exactly once: the session handles the event loop's events in batches (PUBACKs of one
//! turn removed together) and no event of a batch is lost between turns.

use crate::common::*;
use polegate::buffer::{Queue, QueueOptions, Record};
use polegate::model::payload::Body;
use polegate::northbound::mqtt::{Session, SessionSettings};
use polegate::ops::counters::Counters;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Far more than the window and than the session's per-turn batch (128 events).
const EVENTS: u64 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_many_windows_is_published_once_in_order_and_leaves_the_queue_empty() {
    let broker = Mosquitto::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let queue = Queue::open(&tmp.path().join("buffer"), QueueOptions::default()).expect("queue");
    for _ in 0..EVENTS {
        let seq = queue.next_seq().expect("seq");
        let rec = Record {
            topic: format!("polegate/g1/lamp-{}/telemetry", seq % 7),
            payload: Body::from_open(format!(r#"{{"seq":{seq}"#).as_bytes()),
            retain: false,
            created_ms: 0,
        };
        queue.push(seq, &rec).expect("push");
    }
    let mut rec = Recorder::start(broker.port, "polegate/g1/+/telemetry").await;
    rec.wait_subscribed_after(0).await;

    // The [mqtt] table as the daemon would read it, with a wide window and no pacing.
    let setup = Setup::custom(
        "g1",
        &format!(
            "url = \"mqtt://127.0.0.1:{}\"\nclient_id = \"replay-batches\"\nmax_inflight = 256\nreplay_rate = 0\nconnect_delay_max_ms = 0\n",
            broker.port
        ),
        "",
    );
    let mqtt = polegate::config::load(&setup.path).expect("config").mqtt;
    assert_eq!((mqtt.max_inflight, mqtt.replay_rate), (256, 0));
    let counters = Arc::new(Counters::default());
    let settings = SessionSettings {
        gateway: "g1".into(),
        commands: None,
        devices: Arc::new(AtomicUsize::new(0)),
        mqtt,
    };
    let wake = Arc::new(Notify::new());
    let (session, _state) = Session::new(settings, queue.clone(), wake, counters.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(session.run(cancel.clone()));

    rec.wait_until("the whole backlog", |m| m.len() as u64 >= EVENTS)
        .await;
    // Every PUBACK removes its record: the queue empties and each event counts once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !queue.is_empty() || counters.published.load(Relaxed) < EVENTS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} events still queued, {} counted published",
            queue.len(),
            counters.published.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        counters.published.load(Relaxed),
        EVENTS,
        "each event acked once"
    );
    assert_eq!(
        seqs(&rec.seen),
        (1..=EVENTS).collect::<Vec<_>>(),
        "published exactly once each, in seq order"
    );
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the session stops")
        .expect("the session task");
}
