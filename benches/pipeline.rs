//! Benchmark harness (not a test): drives simulated devices through the whole pipeline
//! into a real broker (mosquitto) and reports throughput, CPU, RSS, replay drain rate and
//! queue disk use. Run with `cargo bench --bench pipeline`; results go to BENCHMARKS.md.
//!
//! Parts:
//! A. in-process: synthetic readings from 200 devices injected into the pipeline as fast
//!    as it takes them; every event persisted in sled and acknowledged by the broker.
//! B. the cabinet binary as a child process polling N Modbus TCP simulators every P ms:
//!    CPU (% of one core), RSS and threads of the daemon process.
//! F. the floor: the same Modbus TCP polls made by a process that does nothing else
//!    (`support::floor`), then by the daemon, in one run: CPU of each.
//! C. a 100,000-event backlog replayed by the cabinet binary with replay_rate = 0: drain
//!    rate, peak RSS, queue disk use after the drain.
//!
//! B and C run the build cabinets install (`cargo build --profile cabinet
//! --no-default-features`, built here when stale; several minutes the first time), or the
//! binary named by `POLEGATE_BENCH_BIN`.

use polegate::buffer::{Queue, QueueOptions, Record};

use polegate::model::payload;
use polegate::model::{Kind, Value, now_ms};
use polegate::pipeline::{DeviceInfo, Input};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

// The tests' harness: the same mosquitto (separate process, no persistence), the same
// config writer and the same ways to start the daemon.
#[path = "../tests/common/mod.rs"]
mod common;
use common::{Daemon, Mosquitto, Setup};
mod support;
use support::{cabinet_binary, clk_tck, proc_sample, spawn_daemon, threads};

/// The bench gateway (id `bench`) on the broker at `port`; `mqtt` adds `[mqtt]` lines.
fn setup(port: u16, mqtt: &str, devices: &str) -> Setup {
    Setup::custom(
        "bench",
        &format!("url = \"mqtt://127.0.0.1:{port}\"\n{mqtt}"),
        devices,
    )
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Counts messages on `filter` (QoS 0 subscription: the counter must not slow the broker).
async fn counter(port: u16, filter: &str) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let mut o = MqttOptions::new(
        format!("bench-count-{}", fastrand::u32(..)),
        "127.0.0.1",
        port,
    );
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_keep_alive(Duration::from_secs(60));
    let (client, mut el) = AsyncClient::new(o, 64);
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let filter = filter.to_string();
    let task = tokio::spawn(async move {
        let _c = client.clone();
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    let _ = client.subscribe(filter.clone(), QoS::AtMostOnce).await;
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    if let Some(t) = tx.take() {
                        let _ = t.send(());
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(_))) => {
                    n2.fetch_add(1, Relaxed);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
    (n, task)
}

/// Offered load `rate` readings/s (0 = as fast as the pipeline takes them).
async fn part_a(secs: u64, rate: u64) {
    let broker = Mosquitto::start().await;
    let setup = setup(broker.port, "max_inflight = 256\nreplay_rate = 0\n", "");
    let profile = common::profile("generic-lamp-modbus");
    let devices: Vec<Arc<DeviceInfo>> = (0..200)
        .map(|i| {
            Arc::new(DeviceInfo::new(
                format!("lamp-{i:03}"),
                profile.clone(),
                serde_json::Map::new(),
                300_000,
            ))
        })
        .collect();
    let daemon = Daemon::start(&setup).await;
    let h = &daemon.handles;
    let input = h.input.upgrade().expect("pipeline input");
    // Wait for the broker session.
    while !h.session.connected.load(Relaxed) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let power = profile.point("power").map(|(i, _)| i).expect("power");
    let voltage = profile.point("voltage").map(|(i, _)| i).expect("voltage");
    let ru0 = rusage();
    let t0 = Instant::now();
    let p0 = h.counters.published.load(Relaxed);
    let mut sent = 0u64;
    let end = t0 + Duration::from_secs(secs);
    let mut k = 0u64;
    // Paced in 1 ms slices when a rate is set.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let per_tick = (rate / 1000).max(1) as usize;
    let q0 = h.queue.stats().events;
    while Instant::now() < end {
        if rate > 0 {
            tick.tick().await;
        }
        let n = if rate > 0 { per_tick } else { devices.len() };
        for _ in 0..n {
            let d = &devices[k as usize % devices.len()];
            k += 1;
            let v = Input::Reading {
                device: d.clone(),
                values: vec![
                    (power, Value::Float((k % 1000) as f64 + 0.5)),
                    (voltage, Value::Float(230.0 + (k % 7) as f64)),
                ],
                at_ms: now_ms(),
                force: Vec::new(),
            };
            if input.send(v).await.is_err() {
                break;
            }
            sent += 1;
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let published = h.counters.published.load(Relaxed) - p0;
    let ru1 = rusage();
    let backlog = h.queue.stats().events as i64 - q0 as i64;
    drop(input);
    daemon.stop().await;
    println!(
        "A. pipeline, 200 devices, offered {}, {secs} s: readings in {:.0}/s, telemetry events acknowledged by the broker {:.0}/s (every event written to sled first), backlog growth {backlog}, process CPU {:.0}% of one core (incl. injector and MQTT client)",
        if rate > 0 {
            format!("{rate}/s")
        } else {
            "unlimited".into()
        },
        sent as f64 / el,
        published as f64 / el,
        (ru1 - ru0) / el * 100.0
    );
}

fn rusage() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    t as f64 / clk_tck()
}

async fn part_b(exe: &Path, n: usize, poll_ms: u64, secs: u64) {
    let broker = Mosquitto::start().await;
    let port = broker.port;
    let cancel = CancellationToken::new();
    let (sims, devices) = support::lamp_fleet(n, poll_ms, "", &cancel).await;
    let setup = setup(port, "", &devices);
    let (count, ctask) = counter(port, "polegate/bench/+/telemetry").await;
    let child = spawn_daemon(exe, &setup);
    let pid = child.pid();
    tokio::time::sleep(Duration::from_secs(5)).await; // warm-up: connections, births
    let (t0, _, _) = proc_sample(pid);
    let c0 = count.load(Relaxed);
    let w0 = Instant::now();
    let reqs0: u64 = sims.iter().map(|s| s.requests()).sum();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (t1, rss, hwm) = proc_sample(pid);
    let nthreads = threads(pid);
    let el = w0.elapsed().as_secs_f64();
    let reqs1: u64 = sims.iter().map(|s| s.requests()).sum();
    let c1 = count.load(Relaxed);
    child.stop();
    ctask.abort();
    cancel.cancel();
    let cpu = (t1 - t0) as f64 / clk_tck() / el * 100.0;
    println!(
        "B. {n} Modbus TCP devices polled every {poll_ms} ms, {secs} s (pid {pid}): daemon CPU {cpu:.2}% of one core, RSS {:.1} MB (peak {:.1} MB), {nthreads} threads, Modbus requests {:.0}/s, telemetry {:.0}/s",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        (reqs1 - reqs0) as f64 / el,
        (c1 - c0) as f64 / el
    );
}

/// The floor process (its polls alone, then its polls and their QoS 1 publishes) and the
/// daemon on the same `n` simulators every `poll_ms`.
async fn part_f(exe: &Path, n: usize, poll_ms: u64, secs: u64) {
    let cancel = CancellationToken::new();
    let (sims, _) = support::lamp_fleet(n, poll_ms, "", &cancel).await;
    let broker = Mosquitto::start().await;
    for mqtt in [None, Some(broker.port)] {
        floor_run(&sims, poll_ms, secs, mqtt).await;
    }
    cancel.cancel();
    part_b(exe, n, poll_ms, secs).await;
}

/// One run of the floor process; `mqtt`: also publish to the broker at that port.
async fn floor_run(sims: &[polegate::demo::sim::Sim], poll_ms: u64, secs: u64, mqtt: Option<u16>) {
    let me = std::env::current_exe().expect("own path");
    let mut cmd = std::process::Command::new(me);
    cmd.arg("--floor-child")
        .arg(poll_ms.to_string())
        .arg(mqtt.map_or("0".to_string(), |p| p.to_string()))
        .args(sims.iter().map(|s| s.addr().to_string()));
    let mut child = cmd.spawn().expect("start the floor process");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (t0, _, _) = proc_sample(child.id());
    let reqs0: u64 = sims.iter().map(|s| s.requests()).sum();
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (t1, rss, _) = proc_sample(child.id());
    let el = w0.elapsed().as_secs_f64();
    let reqs1: u64 = sims.iter().map(|s| s.requests()).sum();
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "F. floor{}: {} connections, the lamp's 3 reads every {poll_ms} ms, {secs} s: CPU {:.2}% of one core, RSS {:.1} MB, Modbus requests {:.0}/s",
        if mqtt.is_some() {
            " + QoS 1 publishes of 7 polls in 10"
        } else {
            ""
        },
        sims.len(),
        (t1 - t0) as f64 / clk_tck() / el * 100.0,
        rss as f64 / 1024.0,
        (reqs1 - reqs0) as f64 / el
    );
}

async fn part_c(exe: &Path, events: u64) {
    let broker = Mosquitto::start().await;
    let port = broker.port;
    let setup = setup(port, "replay_rate = 0\nmax_inflight = 256\n", "");
    let state = setup.state_dir();
    std::fs::create_dir_all(&state).expect("state");
    {
        let q = Queue::open(&state.join("buffer"), QueueOptions::default()).expect("queue");
        let v = Value::Float(54.5);
        let v2 = Value::Int(80);
        for i in 0..events {
            let seq = q.next_seq().expect("seq");
            let body = payload::telemetry(
                seq,
                now_ms(),
                "bench",
                &format!("lamp-{:03}", i % 200),
                Kind::Lamp,
                &[("power", &v), ("dim_level", &v2), ("voltage", &v)],
            );
            q.push(
                seq,
                &Record {
                    topic: format!("polegate/bench/lamp-{:03}/telemetry", i % 200),
                    payload: body,
                    retain: false,
                    created_ms: now_ms(),
                },
            )
            .expect("push");
        }
        q.flush().expect("flush");
        let s = q.stats();
        println!(
            "C. backlog prepared: {} events, {} payload bytes, {:.1} MB on disk",
            s.events,
            s.bytes,
            dir_size(&state) as f64 / 1e6
        );
    }
    let (count, ctask) = counter(port, "polegate/bench/#").await;
    let child = spawn_daemon(exe, &setup);
    let pid = child.pid();
    let t0 = Instant::now();
    let mut hwm = 0;
    while count.load(Relaxed) < events && t0.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        hwm = hwm.max(proc_sample(pid).2);
    }
    let el = t0.elapsed().as_secs_f64();
    let got = count.load(Relaxed);
    // Give the last PUBACKs a moment, then stop cleanly and measure the disk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    hwm = hwm.max(proc_sample(pid).2);
    let nthreads = threads(pid);
    child.stop();
    ctask.abort();
    let q = Queue::open(&state.join("buffer"), QueueOptions::default()).expect("reopen");
    println!(
        "C. replay of {events} events with replay_rate = 0: {got} received in {el:.2} s = {:.0} events/s (incl. daemon start), daemon peak RSS {:.1} MB, {nthreads} threads, left in queue {}, queue disk after drain {:.1} MB",
        got as f64 / el,
        hwm as f64 / 1024.0,
        q.stats().events,
        dir_size(&state) as f64 / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--floor-child") {
        let poll_ms = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(500);
        let mqtt = args
            .get(i + 2)
            .and_then(|v| v.parse().ok())
            .filter(|&p| p != 0);
        support::floor::child(args[i + 3..].to_vec(), poll_ms, mqtt);
        return;
    }
    // `cargo bench` passes --bench; `cargo test --all-targets` runs benches without it
    // (as a smoke test), where a minutes-long measurement does not belong.
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "pipeline bench: run with `cargo bench --bench pipeline` (skipped under cargo test)"
        );
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    // `--parts BC` runs only those parts (A, B, C; I = idle: the daemon with no device;
    // F = the poll floor next to the daemon).
    let parts = args
        .iter()
        .position(|a| a == "--parts")
        .and_then(|i| args.get(i + 1))
        .map_or("AIBC".to_string(), |p| p.to_uppercase());
    let backlog = support::arg("--backlog", if quick { 10_000 } else { 100_000 });
    // `--secs N`: the window of parts B and I.
    let secs = support::arg("--secs", if quick { 5 } else { 30 });
    let exe = if parts.contains(['B', 'C', 'I', 'F']) {
        cabinet_binary()
    } else {
        PathBuf::new()
    };
    let rt = support::runtime();
    rt.block_on(async {
        println!("machine: {}", support::machine());
        println!("daemon binary for B, C and I: {}", exe.display());
        if parts.contains('A') {
            part_a(if quick { 3 } else { 10 }, 20_000).await;
            part_a(if quick { 3 } else { 10 }, 0).await;
        }
        if parts.contains('I') {
            part_b(&exe, 0, 500, secs).await;
        }
        if parts.contains('B') {
            // `--poll-ms N`: only that period.
            for poll_ms in [1000, 500] {
                if support::arg("--poll-ms", poll_ms) == poll_ms {
                    part_b(&exe, 200, poll_ms, secs).await;
                }
            }
        }
        if parts.contains('F') {
            part_f(&exe, 200, 500, secs).await;
        }
        if parts.contains('C') {
            part_c(&exe, backlog).await;
        }
    });
}
