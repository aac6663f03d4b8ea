//! Memory per unit of equipment and per held event (issue 13 item 3, "state the floor"),
//! not a test. Run with `cargo bench --bench footprint`; results go to BENCHMARKS.md.
//!
//! - **Held event**: in this process, a queue whose writes fail (injected ENOSPC, SPEC §5
//!   "Storage faults") holds lamp telemetry events in memory; the bytes per event are
//!   this process's RSS growth over the events held, against the record size that
//!   `buffer.memory_max_bytes` counts.
//! - **LoRa device** and **serial bus**: the cabinet binary (as in `pipeline`, or
//!   `POLEGATE_BENCH_BIN`) started with none, then with N configured LoRa ABP devices
//!   (Semtech UDP source, no traffic), then with N RTU buses (each a pseudo-terminal this
//!   process serves, one unit on it answering the lamp profile's reads, polled every
//!   second); the figure is the RSS
//!   difference over N after the daemon has settled. No broker is reachable: the events
//!   stay queued, as in an outage.

use polegate::buffer::{ENOSPC, FaultPoint, PushOutcome, Queue, QueueOptions, Record};
use polegate::demo::rtu_slave::SlaveBus;
use polegate::model::payload::Body;
use polegate::southbound::modbus::rtu::Mode;
use std::sync::Arc;
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Line, Setup};
mod support;
use support::{cabinet_binary, proc_sample, spawn_daemon, threads};

/// RSS of this process in kB.
fn own_rss_kb() -> u64 {
    proc_sample(std::process::id()).1
}

/// A lamp telemetry body of about 200 bytes.
fn lamp_body(i: u64) -> String {
    format!(
        "{{\"seq\":{i},\"ts\":\"2026-12-01T18:00:00.000Z\",\"device_id\":\"lamp-{:03}\",\
         \"points\":{{\"power_w\":54.5,\"energy_wh\":123456,\"dim_level\":80,\"on\":true,\
         \"voltage_v\":230.1,\"current_a\":0.24,\"temperature_c\":31.5}}}}",
        i % 200
    )
}

/// A lamp telemetry event as the pipeline queues it.
fn lamp_event(i: u64) -> Record {
    Record {
        topic: format!("polegate/cab-1/lamp-{:03}/telemetry", i % 200),
        payload: Body::from_open(lamp_body(i).as_bytes()),
        retain: false,
        created_ms: i,
    }
}

fn held_event_bytes(n: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Queue::open(
        &dir.path().join("buffer"),
        QueueOptions {
            memory_max_bytes: 1 << 30,
            ..QueueOptions::default()
        },
    )
    .expect("open queue");
    q.faults().set(FaultPoint::Write, ENOSPC);
    let sample = lamp_event(0);
    let record_bytes = sample.topic.len() + lamp_body(0).len();
    let before = own_rss_kb();
    for i in 0..n {
        let seq = q.next_seq().expect("next_seq");
        match q.push(seq, &lamp_event(i)).expect("push") {
            PushOutcome::Degraded { held: true, .. } => {}
            other => panic!("event {i} was not held in memory: {other:?}"),
        }
    }
    let after = own_rss_kb();
    println!(
        "held events: {n} lamp events held in memory (writes failing): RSS +{} kB = {:.0} bytes per event; \
         topic + body {record_bytes} bytes",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 * 1024.0 / n as f64
    );
}

/// The bench gateway with `rest` (devices, buses, `[lora]`); the broker is unreachable.
fn gateway(rest: &str) -> Setup {
    Setup::custom(
        "bench",
        "url = \"mqtt://127.0.0.1:1\"\nreconnect_min_ms = 1000\n",
        rest,
    )
}

/// Starts the cabinet binary on `setup`, lets it settle for `settle`, returns its RSS (kB)
/// and thread count, and stops it.
async fn settled_rss(setup: &Setup, settle: Duration) -> (u64, u64) {
    let exe = cabinet_binary();
    let child = spawn_daemon(&exe, setup);
    tokio::time::sleep(settle).await;
    let (_, rss, _) = proc_sample(child.pid());
    let n = threads(child.pid());
    child.stop();
    (rss, n)
}

fn lora_devices(n: u32) -> String {
    let port = common::free_port();
    let mut text = format!("[lora]\nlisten = \"127.0.0.1:{port}\"\nnet_id = \"000013\"\n\n");
    for i in 0..n {
        text += &format!(
            "[[device]]\nid = \"lamp-lora-{i:04}\"\nprofile = \"generic-lamp-lora\"\n\
             lora = {{ dev_eui = \"0004a30b{i:08x}\", activation = \"abp\", dev_addr = \"26{i:06x}\", \
             nwk_s_key = \"000102030405060708090a0b0c0d0e0f\", app_s_key = \"f0e0d0c0b0a090807060504030201000\" }}\n\n"
        );
    }
    text
}

/// `n` RTU buses, each a pty served by this process with one lamp (unit 1) on it.
fn rtu_buses(n: u32) -> (String, Vec<Line>) {
    let mut text = String::new();
    let mut lines = Vec::new();
    for i in 0..n {
        let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[1]));
        let line = Line::serve(&sim);
        text += &format!(
            "[[bus]]\nid = \"rs485-{i}\"\nkind = \"modbus_rtu\"\nport = \"{}\"\nbaud = 19200\n\
             parity = \"none\"\ntimeout_ms = 200\n\n\
             [[device]]\nid = \"lamp-rtu-{i}\"\nprofile = \"generic-lamp-modbus\"\npoll_ms = 1000\n\
             modbus = {{ bus = \"rs485-{i}\", unit = 1 }}\n\n",
            line.path.display()
        );
        lines.push(line);
    }
    (text, lines)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "footprint bench: run with `cargo bench --bench footprint` (skipped under cargo test)"
        );
        return;
    }
    let n_lora = support::arg("--lora", 1000) as u32;
    let n_buses = support::arg("--buses", 16) as u32;
    let held = support::arg("--held", 100_000);
    let settle = Duration::from_secs(support::arg("--settle", 5));
    println!("machine: {}", support::machine());
    held_event_bytes(held);
    let rt = support::runtime();
    rt.block_on(async {
        println!("daemon binary: {}", cabinet_binary().display());
        let (base, base_threads) = settled_rss(&gateway(""), settle).await;
        println!("no equipment: RSS {base} kB, {base_threads} threads");
        let (lora, _) = settled_rss(&gateway(&lora_devices(n_lora)), settle).await;
        println!(
            "{n_lora} LoRa ABP devices (no traffic): RSS {lora} kB = {:.0} bytes per device",
            lora.saturating_sub(base) as f64 * 1024.0 / f64::from(n_lora)
        );
        let (text, lines) = rtu_buses(n_buses);
        let (buses, bus_threads) = settled_rss(&gateway(&text), settle).await;
        println!(
            "{n_buses} RTU buses, one lamp each, polled every 1000 ms: RSS {buses} kB, {bus_threads} threads = {:.0} bytes per bus",
            buses.saturating_sub(base) as f64 * 1024.0 / f64::from(n_buses)
        );
        drop(lines);
    });
}
