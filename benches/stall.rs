//! Benchmark harness (not a test): the worst stall of the pipeline (issue 11 item 8),
//! seen as the latency of a reading through the daemon: from its `ts` (taken when the
//! reading is made) to its arrival at a subscriber of the broker. A daemon binary polls
//! N Modbus TCP lamp simulators; window A runs as is, window B sends the daemon SIGHUP
//! every `--reload-every-ms` (each reload reads the configuration and every profile of
//! the plugins directories and compiles their scripts: the heaviest work the supervisor
//! does while drivers poll). Reports p50 / p99 / max latency per window.
//!
//! `cargo bench --bench stall [-- --devices 50 --poll-ms 100 --secs 20 --reload-every-ms 500]`;
//! the binary is the cabinet build (built when stale) or `POLEGATE_BENCH_BIN`. Compare two
//! binaries in one run of the machine: `POLEGATE_BENCH_BIN=a … ; POLEGATE_BENCH_BIN=b …`.

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Mosquitto, Setup};
mod support;
use support::{arg, cabinet_binary, spawn_daemon, uname};

fn now_ms() -> i64 {
    polegate::model::now_ms() as i64
}

/// (latency, arrival) in ms of telemetry messages received while `window` holds Some.
type Samples = Arc<Mutex<Option<Vec<(i64, i64)>>>>;

async fn subscriber(port: u16, samples: Samples) -> tokio::task::JoinHandle<()> {
    let mut o = MqttOptions::new(
        format!("bench-stall-{}", fastrand::u32(..)),
        "127.0.0.1",
        port,
    );
    o.set_keep_alive(Duration::from_secs(60));
    let (client, mut el) = AsyncClient::new(o, 64);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    let _ = client
                        .subscribe("polegate/bench/+/telemetry", QoS::AtMostOnce)
                        .await;
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    if let Some(t) = tx.take() {
                        let _ = t.send(());
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let at = now_ms();
                    // `ts` is RFC 3339 with milliseconds (SPEC §4).
                    let ts = serde_json::from_slice::<serde_json::Value>(&p.payload)
                        .ok()
                        .and_then(|v| v.get("ts").and_then(|t| t.as_str().map(str::to_owned)))
                        .and_then(|t| humantime::parse_rfc3339(&t).ok())
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as i64);
                    if let (Some(ts), Ok(mut w)) = (ts, samples.lock())
                        && let Some(v) = w.as_mut()
                    {
                        v.push((at - ts, at));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
    task
}

/// The latency of each reading from its `ts`, and the longest silence between two
/// arrivals: a pipeline that stops taking readings stamps them late (a short latency)
/// but leaves a gap in the stream.
fn report(label: &str, samples: Vec<(i64, i64)>) {
    let mut arrivals: Vec<i64> = samples.iter().map(|(_, at)| *at).collect();
    arrivals.sort_unstable();
    let gap = arrivals.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let mut v: Vec<i64> = samples.into_iter().map(|(l, _)| l).collect();
    v.sort_unstable();
    let q = |f: f64| {
        v.get(((v.len() as f64 - 1.0) * f) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{label}: {} readings, latency p50 {} ms, p99 {} ms, max {} ms, longest gap between arrivals {gap} ms",
        v.len(),
        q(0.5),
        q(0.99),
        v.last().copied().unwrap_or(0)
    );
}

async fn window(samples: &Samples, secs: u64, reload: Option<(u32, u64)>) -> Vec<(i64, i64)> {
    if let Ok(mut w) = samples.lock() {
        *w = Some(Vec::new());
    }
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut reloads = 0u32;
    match reload {
        Some((pid, every_ms)) => {
            while tokio::time::Instant::now() < end {
                // SAFETY: kill(2) on the daemon we started; no memory is involved.
                unsafe { libc::kill(pid as i32, libc::SIGHUP) };
                reloads += 1;
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
            }
            println!("  ({reloads} reloads sent)");
        }
        None => tokio::time::sleep_until(end).await,
    }
    samples
        .lock()
        .ok()
        .and_then(|mut w| w.take())
        .unwrap_or_default()
}

fn main() {
    let n = arg("--devices", 50) as usize;
    let poll_ms = arg("--poll-ms", 100);
    let secs = arg("--secs", 20);
    let every = arg("--reload-every-ms", 500);
    let exe = std::env::var_os("POLEGATE_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(cabinet_binary);
    println!(
        "stall bench: {} ({}), {n} lamps every {poll_ms} ms, windows of {secs} s",
        exe.display(),
        uname()
    );
    support::runtime().block_on(async {
        let broker = Mosquitto::start().await;
        let cancel = CancellationToken::new();
        let (_sims, devices) = support::lamp_fleet(n, poll_ms, "", &cancel).await;
        let setup = Setup::custom(
            "bench",
            &format!("url = \"mqtt://127.0.0.1:{}\"\n", broker.port),
            &devices,
        );
        let samples: Samples = Arc::new(Mutex::new(None));
        let sub = subscriber(broker.port, samples.clone()).await;
        let child = spawn_daemon(&exe, &setup);
        let pid = child.pid();
        tokio::time::sleep(Duration::from_secs(5)).await; // warm-up: connections, births
        report("A. polling only", window(&samples, secs, None).await);
        report(
            &format!("B. polling, SIGHUP reload every {every} ms"),
            window(&samples, secs, Some((pid, every))).await,
        );
        child.stop();
        sub.abort();
        cancel.cancel();
    });
}
