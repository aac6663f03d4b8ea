//! Durability across daemon restarts: a queue left non-empty by a clean stop is drained
//! by the next run, marked historical, and `seq` continues; a daemon killed with SIGKILL
//! (a real child process running the binary) reopens its queue and never reuses a `seq`;
//! after a clean SIGTERM the next run continues at exactly the next `seq` (no gap).

use crate::common::*;
use tokio_util::sync::CancellationToken;

fn lamp(addr: std::net::SocketAddr, poll_ms: u64) -> String {
    lamp_device("lamp-1", addr, poll_ms)
}

/// Telemetry of a live poll among `msgs` (not a replay of an older queue).
fn live_telemetry(msgs: &[crate::common::Msg]) -> usize {
    msgs.iter()
        .filter(|m| m.topic.ends_with("/telemetry") && m.json.get("historical").is_none())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_drains_the_backlog_it_left_and_continues_the_sequence() {
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    // No broker yet: the port is closed.
    let port = free_port();
    let setup = Setup::new(port, &lamp(sim.addr(), 50));
    let d1 = Daemon::start(&setup).await;
    eventually("birth and telemetry buffered", || {
        d1.handles.queue.stats().events >= 2
    })
    .await;
    sim.registers().lock().unwrap().holding[0] = 10;
    eventually("change buffered", || d1.handles.queue.stats().events >= 3).await;
    d1.stop().await;

    // The broker comes up on that port; the daemon starts again on the same state dir.
    let broker = Mosquitto::start_on(port).await;
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let d2 = Daemon::start(&setup).await;
    // Events created before the new connection came up are historical by contract; a
    // change made once the session is up is live.
    eventually("session connected", || {
        d2.handles
            .session
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;
    sim.registers().lock().unwrap().holding[0] = 20;
    rec.wait_for("live telemetry", |m| {
        m.topic.ends_with("/telemetry") && m.json["points"]["dim_level"] == 20
    })
    .await;
    let old: Vec<_> = rec
        .seen
        .iter()
        .filter(|m| m.json["historical"] == true)
        .collect();
    assert!(
        old.len() >= 3,
        "backlog replayed as historical: {}",
        old.len()
    );
    let s = seqs(&rec.seen);
    let mut dedup = s.clone();
    dedup.dedup();
    assert!(dedup.windows(2).all(|w| w[0] < w[1]), "seq order {s:?}");
    let live = rec
        .seen
        .iter()
        .find(|m| m.json["points"]["dim_level"] == 20)
        .unwrap();
    assert!(live.json.get("historical").is_none());
    d2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_with_sigkill_reopens_its_queue_and_never_reuses_a_seq() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = changing_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp(sim.addr(), 10));
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;

    let spawn = || {
        Process::start(&setup.path, |c| {
            c.env("RUST_LOG", "info");
        })
    };

    let child = spawn();
    rec.wait_until("a stream of events", |s| seqs(s).len() >= 200)
        .await;
    child.kill();
    rec.drain();
    let before_max = seqs(&rec.seen).into_iter().max().unwrap();
    let n_before = rec.seen.len();

    let child = spawn();
    rec.wait_until("events after the restart", |s| {
        live_telemetry(&s[n_before..]) >= 20
    })
    .await;
    child.kill();
    // Fresh events (not replays of the old queue) all carry seqs never used before.
    for m in &rec.seen[n_before..] {
        if m.json.get("historical").is_none() && !m.topic.ends_with("/status") {
            let s = m.json["seq"].as_u64().unwrap();
            assert!(
                s > before_max,
                "seq {s} reused (before the kill the max was {before_max})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigterm_the_next_run_continues_at_exactly_the_next_seq() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = changing_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp(sim.addr(), 10));
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let spawn = || Process::start(&setup.path, |_| {});

    let child = spawn();
    rec.wait_until("a stream of events", |s| seqs(s).len() >= 50)
        .await;
    assert!(child.stop().success(), "a clean SIGTERM exits 0");
    rec.drain();
    let last_before = seqs(&rec.seen).into_iter().max().unwrap();
    let n_before = rec.seen.len();

    let child = spawn();
    // Published in seq order: once live events of the new run are in, every lower seq
    // (the old run's unacknowledged tail included) has been published at least once.
    rec.wait_until("live events after the restart", |s| {
        live_telemetry(&s[n_before..]) >= 20
    })
    .await;
    assert!(child.stop().success());
    let mut all = seqs(&rec.seen);
    all.sort_unstable();
    all.dedup();
    let first_after = all.iter().copied().find(|&s| s > last_before);
    assert_eq!(
        first_after,
        Some(last_before + 1),
        "the first seq after the restart follows the last one before it"
    );
    let gaps: Vec<_> = all.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    assert!(
        all[0] == 1 && gaps.is_empty(),
        "seqs from 1 without a gap: {gaps:?}"
    );
}
