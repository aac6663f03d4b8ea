//! The daemon (the real binary, a child process) killed with SIGKILL at random moments,
//! again and again, while the broker goes up and down: after every kill the queue opens
//! undamaged (nothing moved aside), its seq floor never goes back, and no `seq` ever
//! carries two different events. `POLEGATE_KILL_CYCLES` (default 10) and
//! `POLEGATE_KILL_BIN` (another build, e.g. the cabinet one) are for
//! `benches/kill9.sh`, the 100-cycle run.

use crate::common::*;
use polegate::buffer::{Queue, QueueOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The event without the delivery flag, which differs between a live send and a replay.
fn identity(m: &Msg) -> serde_json::Value {
    let mut j = m.json.clone();
    if let Some(o) = j.as_object_mut() {
        o.remove("historical");
    }
    j
}

/// Opens the queue the killed daemon left (as the next run would) and returns its next
/// seq; fails if anything was moved aside.
fn reopen(state: &Path, cycle: u32, seed: u64) -> u64 {
    let q = Queue::open(&state.join("buffer"), QueueOptions::default())
        .unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): queue does not open: {e}"));
    let s = q.stats();
    assert_eq!(
        s.corrupt_recoveries, 0,
        "cycle {cycle} (seed {seed}): the queue was damaged and moved aside"
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(state)
        .expect("state dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    assert!(aside.is_empty(), "cycle {cycle}: moved aside: {aside:?}");
    q.last_pushed() + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_at_random_moments_never_finds_its_queue_damaged() {
    let cycles: u32 = env_or("POLEGATE_KILL_CYCLES", 10);
    let seed: u64 = env_or("POLEGATE_KILL_SEED", fastrand::u64(..));
    let exe = std::env::var_os("POLEGATE_KILL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_polegate")));
    eprintln!(
        "kill loop: {cycles} cycles, seed {seed}, binary {}",
        exe.display()
    );
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = changing_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_device("lamp-1", sim.addr(), 10));
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/+/+").await;
    let started = Instant::now();
    let mut broker_up = true;
    let mut floor = 0u64;
    let mut floors = Vec::new();
    for cycle in 0..cycles {
        // The broker changes state in about a third of the cycles.
        if rng.u32(0..3) == 0 {
            if broker_up {
                broker.stop();
            } else {
                broker.restart().await;
            }
            broker_up = !broker_up;
        }
        let daemon = Process::start_exe(&exe, &setup.path, |_| {});
        // The kill comes at a random moment: during start-up, replay or steady writing.
        tokio::time::sleep(Duration::from_millis(rng.u64(50..1500))).await;
        daemon.kill();
        let next = reopen(&setup.state_dir(), cycle, seed);
        assert!(
            next >= floor,
            "cycle {cycle} (seed {seed}): seq floor went back from {floor} to {next}"
        );
        floor = next;
        floors.push(next);
    }
    if !broker_up {
        broker.restart().await;
    }
    // A last run delivers the backlog the kills left and something fresh.
    let daemon = Process::start_exe(&exe, &setup.path, |_| {});
    rec.wait_until("events after the last restart", |s| {
        s.iter()
            .filter_map(|m| m.json["seq"].as_u64())
            .any(|seq| seq > floor)
    })
    .await;
    let status = daemon.stop();
    assert!(status.success(), "clean stop after the loop: {status}");
    rec.drain();

    let mut by_seq: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    let mut duplicates = 0;
    for m in &rec.seen {
        let Some(seq) = m.json["seq"].as_u64() else {
            continue;
        };
        let id = identity(m);
        match by_seq.get(&seq) {
            None => {
                by_seq.insert(seq, id);
            }
            Some(prev) => {
                assert_eq!(
                    prev, &id,
                    "seq {seq} carries two different events (seed {seed})"
                );
                duplicates += 1;
            }
        }
    }
    // Figures for benches/kill9.sh and BENCHMARKS.md.
    eprintln!(
        "kill loop: {cycles} cycles in {:.1} s, {} distinct events delivered, {duplicates} \
         duplicates (same seq, same event), seq floor {} -> {}",
        started.elapsed().as_secs_f64(),
        by_seq.len(),
        floors.first().copied().unwrap_or(0),
        floor
    );
    cancel.cancel();
}
