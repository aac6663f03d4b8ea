//! Command flood (issue 12 item 4): the cabinet binary with ten simulated lamps publishing
//! telemetry, flooded on its `cmd` topics with (a) malformed payloads, (b) commands for
//! devices it does not have, (c) payloads over the 16 KiB limit, each from one topic and
//! from several. Per phase: commands/s offered (acknowledged by mosquitto), commands/s
//! refused with a `cmd/result` vs refused silently (the per-topic refusal rate limit),
//! the `command_rejected` and `command_dropped` deltas from `/metrics`, the daemon's CPU,
//! its RSS before/after/peak, and telemetry events/s during the flood vs before it.
//! Run with `cargo bench --bench command_flood` (`-- --secs S` per phase, default 7, so
//! ~20 s per topic mode; `--topics N`, default 8); results go to BENCHMARKS.md. The daemon
//! is the cabinet build (see `support::cabinet_binary`).

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Mosquitto, Setup, free_port, wait_listening};
mod support;
use support::{cabinet_binary, clk_tck, proc_sample, spawn_daemon, uname};

const LAMPS: usize = 10;
const POLL_MS: u64 = 500;

#[derive(Clone, Copy, Debug)]
enum Flood {
    Malformed,
    UnknownDevice,
    Oversized,
}

impl Flood {
    fn topic(self, i: usize) -> String {
        match self {
            Flood::UnknownDevice => format!("polegate/bench/ghost-{i:02}/cmd"),
            _ => format!("polegate/bench/lamp-{:03}/cmd", i % LAMPS),
        }
    }

    fn payload(self, n: u64) -> Vec<u8> {
        match self {
            Flood::Malformed => format!("{{\"id\":\"m{n}\",\"point\":").into_bytes(),
            Flood::UnknownDevice => {
                format!("{{\"id\":\"u{n}\",\"point\":\"dim_level\",\"value\":40}}").into_bytes()
            }
            Flood::Oversized => {
                let mut p =
                    format!("{{\"id\":\"o{n}\",\"point\":\"dim_level\",\"value\":40,\"pad\":\"")
                        .into_bytes();
                p.resize(20 * 1024, b'x');
                p.extend_from_slice(b"\"}");
                p
            }
        }
    }
}

/// What the subscriber on `polegate/bench/#` has seen.
#[derive(Default)]
struct Seen {
    telemetry: AtomicU64,
    results: AtomicU64,
}

async fn subscriber(port: u16, seen: Arc<Seen>) -> tokio::task::JoinHandle<()> {
    let mut o = MqttOptions::new(format!("sub-{}", fastrand::u32(..)), "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (c, mut el) = AsyncClient::new(o, 16);
    c.subscribe("polegate/bench/#", QoS::AtMostOnce)
        .await
        .expect("subscribe");
    let task = tokio::spawn(async move {
        let _c = c;
        while let Ok(ev) = el.poll().await {
            if let Event::Incoming(Incoming::Publish(p)) = ev {
                if p.topic.ends_with("/telemetry") {
                    seen.telemetry.fetch_add(1, Relaxed);
                } else if p.topic.ends_with("/cmd/result") {
                    seen.results.fetch_add(1, Relaxed);
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    task
}

/// Publishes `kind` round-robin over `topics` topics as fast as mosquitto acknowledges
/// (QoS 1, 100 in flight) for `secs`; returns the acknowledged count.
async fn flood(port: u16, kind: Flood, topics: usize, secs: u64) -> u64 {
    let mut o = MqttOptions::new(format!("flood-{}", fastrand::u32(..)), "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(100);
    let (c, mut el) = AsyncClient::new(o, 200);
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (a, s) = (acked.clone(), stop.clone());
    let task = tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let Event::Incoming(Incoming::PubAck(_)) = ev {
                a.fetch_add(1, Relaxed);
            }
            if s.load(Relaxed) {
                break;
            }
        }
    });
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        let topic = kind.topic(n as usize % topics);
        if c.publish(topic, QoS::AtLeastOnce, false, kind.payload(n))
            .await
            .is_err()
        {
            break;
        }
        n += 1;
    }
    let count = acked.load(Relaxed);
    stop.store(true, Relaxed);
    let _ = c.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    count
}

/// `polegate_errors_total{counter="NAME"}` from `/metrics`.
async fn metric(http: u16, name: &str) -> u64 {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", http)).await else {
        return 0;
    };
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut body = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut body)).await;
    let key = format!("polegate_errors_total{{counter=\"{name}\"}}");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let secs = support::arg("--secs", 7);
    let topics = support::arg("--topics", 8) as usize;
    let exe = cabinet_binary();
    println!(
        "command flood: {} ({} bytes), {}",
        exe.display(),
        std::fs::metadata(&exe).map(|m| m.len()).unwrap_or(0),
        uname()
    );
    support::runtime().block_on(run(&exe, secs, topics));
}

async fn run(exe: &std::path::Path, secs: u64, topics: usize) {
    let broker = Mosquitto::start().await;
    let port = broker.port;
    let cancel = CancellationToken::new();
    let (_sims, devices) = support::lamp_fleet(LAMPS, POLL_MS, "heartbeat_s = 1\n", &cancel).await;
    let http = free_port();
    let setup = Setup::custom(
        "bench",
        &format!("url = \"mqtt://127.0.0.1:{port}\"\n"),
        &format!("[http]\nlisten = \"127.0.0.1:{http}\"\n\n{devices}"),
    );
    let seen = Arc::new(Seen::default());
    let sub = subscriber(port, seen.clone()).await;
    let child = spawn_daemon(exe, &setup);
    let pid = child.pid();
    wait_listening(http).await;
    tokio::time::sleep(Duration::from_secs(5)).await; // connections, births
    let (_, rss0, _) = proc_sample(pid);
    // Baseline: telemetry and CPU with no commands.
    let (t0, _, _) = proc_sample(pid);
    let tel0 = seen.telemetry.load(Relaxed);
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (t1, _, _) = proc_sample(pid);
    let el = w0.elapsed().as_secs_f64();
    let base_tel = (seen.telemetry.load(Relaxed) - tel0) as f64 / el;
    let base_cpu = (t1 - t0) as f64 / clk_tck() / el * 100.0;
    println!(
        "baseline (no commands, 10 s): telemetry {base_tel:.1}/s, daemon CPU {base_cpu:.1}%, RSS {:.1} MB",
        rss0 as f64 / 1024.0
    );
    println!(
        "| kind | topics | offered/s | answered/s (ok:false result) | silent/s (rate-limited) | command_rejected Δ | command_dropped Δ | daemon CPU % | RSS after MB | telemetry/s during (before {base_tel:.1}) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n_topics in [1, topics] {
        for kind in [Flood::Malformed, Flood::UnknownDevice, Flood::Oversized] {
            let rej0 = metric(http, "command_rejected").await;
            let drop0 = metric(http, "command_dropped").await;
            let res0 = seen.results.load(Relaxed);
            let tel0 = seen.telemetry.load(Relaxed);
            let (c0, _, _) = proc_sample(pid);
            let w0 = Instant::now();
            let offered = flood(port, kind, n_topics, secs).await;
            let el = w0.elapsed().as_secs_f64();
            let (c1, rss, _) = proc_sample(pid);
            let tel = (seen.telemetry.load(Relaxed) - tel0) as f64 / el;
            // Let the daemon finish what mosquitto still queues for it.
            let mut rej = metric(http, "command_rejected").await;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let r = metric(http, "command_rejected").await;
                if r == rej {
                    break;
                }
                rej = r;
            }
            let drop = metric(http, "command_dropped").await - drop0;
            let rejected = rej - rej0;
            let answered = seen.results.load(Relaxed) - res0;
            println!(
                "| {kind:?} | {n_topics} | {:.0} | {:.1} | {:.0} | {rejected} | {drop} | {:.1} | {:.1} | {tel:.1} |",
                offered as f64 / el,
                answered as f64 / el,
                rejected.saturating_sub(answered) as f64 / el,
                (c1 - c0) as f64 / clk_tck() / el * 100.0,
                rss as f64 / 1024.0,
            );
        }
    }
    let (_, rss1, hwm) = proc_sample(pid);
    println!(
        "RSS before {:.1} MB, after {:.1} MB, peak (VmHWM) {:.1} MB",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    child.stop();
    sub.abort();
    cancel.cancel();
}
