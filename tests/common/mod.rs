//! Shared test harness. `broker`: a real mosquitto (child process, restartable on the
//! same port), an MQTT recorder and publisher, a cuttable proxy. `daemon`: config files
//! in a temporary directory and the daemon started in-process through the same entry
//! point as `polegate run`, or as the real binary in a child process. `driver`: one
//! driver task under test with the daemon's channels, and the simulated lines it talks
//! to. `lora`: a Semtech UDP packet forwarder, real LoRaWAN frames and the LoRa task alone
//! on a real queue. `rig`: broker, recorder and daemon together, for the end-to-end tests. `tls`: a test
//! PKI and a mosquitto with a TLS listener.
// Each test binary uses its own part of the harness.
#![allow(dead_code, unused_imports)]

mod broker;
mod daemon;
mod driver;
mod lora;
mod ocpp;
mod ocpp_hub;
mod profiles;
mod rig;
mod snmp;
mod snmp_rig;
mod tls;

pub use broker::*;
pub use daemon::*;
pub use driver::*;
pub use lora::*;
pub use ocpp::*;
pub use ocpp_hub::*;
pub use profiles::*;
pub use rig::*;
pub use snmp::*;
pub use snmp_rig::*;
pub use tls::*;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits (bounded) until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_listening(port: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until `cond` holds, checking every 10 ms. For conditions that have no
/// event to await (e.g. the queue draining in another task).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Bytes allocated to every file under `dir` (what a full partition counts).
pub fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => allocated_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Changes the lamp's power reading every 5 ms (a stream of telemetry) until `cancel`.
pub fn keep_changing(sim: &polegate::demo::sim::Sim, cancel: &CancellationToken) {
    let regs = sim.registers();
    let c = cancel.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let mut v = 0u16;
        loop {
            tokio::select! { _ = c.cancelled() => return, _ = tick.tick() => {} }
            v = v.wrapping_add(1);
            regs.lock().unwrap().input[0] = v % 5000 * 10;
        }
    });
}

/// A [`static_lamp`] whose power reading changes every 5 ms: a steady stream of telemetry.
pub async fn changing_lamp(cancel: &CancellationToken) -> polegate::demo::sim::Sim {
    let sim = static_lamp(cancel).await;
    keep_changing(&sim, cancel);
    sim
}

/// A Modbus TCP simulator on 127.0.0.1:0 holding [`lamp_registers`].
pub async fn static_lamp(cancel: &CancellationToken) -> polegate::demo::sim::Sim {
    let sim = polegate::demo::sim::Sim::spawn(
        polegate::demo::sim::SimKind::Static,
        "127.0.0.1:0".parse().expect("address"),
        cancel.clone(),
    )
    .await
    .expect("simulator");
    lamp_registers(&mut sim.registers().lock().expect("registers"));
    sim
}

/// Register image of a lamp (generic-lamp-modbus) with known values.
/// A `[[device]]` entry: the generic Modbus lamp `id` at `addr`, polled every `poll_ms`.
pub fn lamp_device(id: &str, addr: std::net::SocketAddr, poll_ms: u64) -> String {
    format!(
        "[[device]]\nid = \"{id}\"\nprofile = \"generic-lamp-modbus\"\npoll_ms = {poll_ms}\n\
         modbus = {{ address = \"{addr}\", unit = 1 }}\n"
    )
}

pub fn lamp_registers(regs: &mut polegate::demo::sim::Registers) {
    regs.coils[0] = true;
    regs.holding[0] = 80;
    regs.input[0] = 545; // 54.5 W
    regs.input[1] = 0x0001; // energy 123456 Wh
    regs.input[2] = 0xE240;
    regs.input[3] = 2301; // 230.1 V
    regs.input[4] = 237; // 0.237 A
    regs.input[5] = 950; // 0.95
    regs.input[6] = (-52i16) as u16; // -5.2 °C
    regs.input[7] = 0;
    regs.input[8] = 4000; // h
    regs.input[9] = 0;
    regs.input[10] = 1234;
    regs.input[11] = 0b10; // driver failure
}

/// The value of metric `name` (a line `name value`) on the daemon's `/metrics` at `port`.
pub async fn metric(port: u16, name: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}
