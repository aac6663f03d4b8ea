//! Wire-time benchmark of an RTU bus (not a test): a simulated multi-unit slave on a
//! pseudo-terminal that honours wire time (each reply is delayed by the request's and
//! the reply's character time at the configured baud plus one inter-frame gap), polled
//! by the daemon's own bus task with every device due continuously (poll_ms = 1), so
//! the bus is saturated. Reports achieved transactions/s against the theoretical
//! wire-time limit (sum over the answered transactions of their characters plus two
//! 3.5-character gaps), and the bus time a dead unit costs the live ones.
//! Run with `cargo bench --bench rtu`; results go to BENCHMARKS.md.

use polegate::config::{BusCfg, BusKind, Parity};
use polegate::demo::rtu_slave::{Behaviour, SlaveBus};
use polegate::ops::counters::Counters;
use polegate::pipeline::DeviceInfo;
use polegate::profile::Registry;
use polegate::southbound::modbus::link::{Link, PolledDevice, run_link};
use polegate::southbound::modbus::rtu::{Mode, Timing};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Run {
    tps: f64,
    limit_tps: f64,
    busy: f64,
    live_tx: u64,
    dead_requests: u64,
}

async fn run(baud: u32, dead: bool, secs: u64, timeout_ms: u64) -> Run {
    let (reg, _) = Registry::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins")]);
    let profile = reg.get("generic-lamp-modbus").expect("profile").clone();
    let timing = Timing::new(baud, 8, false, 1);
    let mut sim = SlaveBus::new(Mode::Rtu, &[1, 2, 3, 4, 9]);
    sim.wire = Some(timing);
    let sim = Arc::new(sim);
    sim.unit(9).set_behaviour(Behaviour::Dead);
    let (master, slave) = tokio_serial::SerialStream::pair().expect("pty");
    let port = PathBuf::from(tokio_serial::SerialPort::name(&slave).expect("name"));
    let cancel = CancellationToken::new();
    tokio::spawn(sim.clone().serve(master, cancel.clone()));
    let bus = BusCfg {
        id: "bench".into(),
        kind: BusKind::ModbusRtu,
        port,
        baud,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
        timeout_ms,
        retries: 0,
        origin: "bench".into(),
    };
    let mut link = Link::bus(&bus, Mode::Rtu);
    let units: &[u8] = if dead {
        &[1, 2, 3, 4, 9]
    } else {
        &[1, 2, 3, 4]
    };
    for &u in units {
        let info = Arc::new(DeviceInfo {
            id: format!("dev-{u}"),
            link: Default::default(),
            kind: profile.kind,
            profile: profile.clone(),
            meta: Default::default(),
            heartbeat_ms: 0,
        });
        link.devices
            .push(PolledDevice::new(info, u, Duration::from_millis(1)));
    }
    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let (_inbox, inbox_rx) = mpsc::channel(1);
    let counters = Arc::new(Counters::default());
    tokio::spawn(run_link(link, inbox_rx, tx, counters, cancel.clone()));
    // Warm-up: the first cycles (and the dead unit's first three probes) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (a0, w0, d0) = (
        sim.answered.load(Relaxed),
        sim.wire_ns.load(Relaxed),
        sim.unit(9).requests(),
    );
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let answered = sim.answered.load(Relaxed) - a0;
    let wire = (sim.wire_ns.load(Relaxed) - w0) as f64 / 1e9;
    cancel.cancel();
    drop(slave);
    Run {
        tps: answered as f64 / elapsed,
        limit_tps: answered as f64 / wire,
        busy: wire / elapsed,
        live_tx: answered,
        dead_requests: sim.unit(9).requests() - d0,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs bench binaries too: only `cargo bench` measures.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let (healthy_s, dead_s) = if args.iter().any(|a| a == "--quick") {
        (2, 4)
    } else {
        (10, 30)
    };
    println!("RTU bus wire-time benchmark (pty, 8N1, 4 lamp units, 3 block reads per cycle)");
    println!(
        "{:>6} {:>10} {:>12} {:>12} {:>9}",
        "baud", "scenario", "tx/s", "limit tx/s", "of limit"
    );
    for baud in [9600, 19200] {
        let h = run(baud, false, healthy_s, 200).await;
        println!(
            "{baud:>6} {:>10} {:>12.1} {:>12.1} {:>8.1}%",
            "healthy",
            h.tps,
            h.limit_tps,
            h.busy * 100.0
        );
        let d = run(baud, true, dead_s, 200).await;
        let cost = 1.0 - d.tps / h.tps;
        println!(
            "{baud:>6} {:>10} {:>12.1} {:>12.1} {:>8.1}%   dead unit: {} probes in {dead_s} s, live throughput cost {:.1}% of bus time",
            "+1 dead",
            d.tps,
            d.limit_tps,
            d.busy * 100.0,
            d.dead_requests,
            cost * 100.0
        );
        let _ = d.live_tx;
    }
}
