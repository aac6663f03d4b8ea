//! Wire-time benchmark of an RTU bus (not a test): a simulated multi-unit slave on a
//! pseudo-terminal that honours wire time (each reply is delayed by the request's and
//! the reply's character time at the configured baud plus one inter-frame gap), polled
//! by the daemon's own bus task with every device due continuously (poll_ms = 1), so
//! the bus is saturated. Reports achieved transactions/s against the theoretical
//! wire-time limit (sum over the answered transactions of their characters plus two
//! 3.5-character gaps), and the bus time a dead unit costs the live ones.
//! Run with `cargo bench --bench rtu`; results go to BENCHMARKS.md.

use polegate::config::BusCfg;
use polegate::demo::rtu_slave::{Behaviour, SlaveBus};
use polegate::southbound::modbus::link::{Link, PolledDevice};
use polegate::southbound::modbus::rtu::{Mode, Timing};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

// The tests' driver rig: the same pty line, bus settings and channels.
#[path = "../tests/common/mod.rs"]
mod common;
use common::{DriverRig, Line, device_info, rtu_bus};

struct Run {
    tps: f64,
    limit_tps: f64,
    busy: f64,
    live_tx: u64,
    dead_requests: u64,
}

async fn run(baud: u32, dead: bool, secs: u64, timeout_ms: u64) -> Run {
    let timing = Timing::new(baud, 8, false, 1);
    let mut sim = SlaveBus::new(Mode::Rtu, &[1, 2, 3, 4, 9]);
    sim.wire = Some(timing);
    let sim = Arc::new(sim);
    sim.unit(9).set_behaviour(Behaviour::Dead);
    let line = Line::serve(&sim);
    let bus = BusCfg {
        baud,
        timeout_ms,
        origin: "bench".into(),
        ..rtu_bus("bench", line.path.clone())
    };
    let mut link = Link::bus(&bus, Mode::Rtu);
    let units: &[u8] = if dead {
        &[1, 2, 3, 4, 9]
    } else {
        &[1, 2, 3, 4]
    };
    for &u in units {
        let info = device_info(&format!("dev-{u}"), "generic-lamp-modbus");
        link.devices
            .push(PolledDevice::new(info, u, Duration::from_millis(1)));
    }
    let mut rig = DriverRig::modbus(link);
    let cancel = rig.cancel.clone();
    // Nothing downstream: readings are taken as fast as the link sends them.
    tokio::spawn(async move { while rig.input.recv().await.is_some() {} });
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
    drop(line);
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
