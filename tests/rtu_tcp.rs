//! End to end through the daemon's own entry point with a real mosquitto: several unit
//! ids behind one serial device server (RTU over TCP) share one connection and one
//! scheduler while a dead unit among them goes offline; several devices on one Modbus
//! TCP address share one connection; a `[[bus]]` from the configuration (a pty, 8N1)
//! is polled and published like any other device.

use crate::common::*;
use polegate::demo::rtu_slave::{Behaviour, SlaveBus, Unit};
use polegate::demo::sim::Registers;
use polegate::southbound::modbus::rtu::Mode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio_util::sync::CancellationToken;

fn device(id: &str, modbus: &str) -> String {
    format!(
        "[[device]]\nid = \"{id}\"\nprofile = \"generic-lamp-modbus\"\npoll_ms = 100\nmodbus = {{ {modbus} }}\n"
    )
}

fn lamp_unit(unit: &Unit) {
    let mut regs = Registers::default();
    lamp_registers(&mut regs);
    unit.coils.lock().unwrap()[..8].copy_from_slice(&regs.coils[..8]);
    unit.holding.lock().unwrap()[..16].copy_from_slice(&regs.holding[..16]);
    unit.input.lock().unwrap()[..16].copy_from_slice(&regs.input[..16]);
}

/// Counts TCP connections on their way to `upstream`.
async fn counting_proxy(upstream: std::net::SocketAddr, count: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            count.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    addr
}

async fn telemetry_of(rec: &mut Recorder, ids: &[&str]) {
    for id in ids {
        let t = rec
            .wait_for(&format!("telemetry of {id}"), |m| {
                m.topic == format!("polegate/cab-test/{id}/telemetry")
            })
            .await;
        assert_eq!(t.json["points"]["dim_level"], 80, "{id}");
        assert_eq!(t.json["points"]["voltage"], 230.1, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_behind_one_serial_device_server_share_a_connection_and_a_dead_one_goes_offline() {
    let cancel = CancellationToken::new();
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[1, 2, 3]));
    lamp_unit(&sim.unit(1));
    lamp_unit(&sim.unit(2));
    sim.unit(3).set_behaviour(Behaviour::Dead);
    let addr = device_server(&sim, &cancel).await;
    let mut extra = String::new();
    for u in 1..=3 {
        extra += &device(
            &format!("lamp-{u}"),
            &format!("address = \"{addr}\", unit = {u}, framing = \"rtu\""),
        );
    }
    let mut r = Rig::start(cancel, sim, &extra, &[]).await;
    telemetry_of(&mut r.rec, &["lamp-1", "lamp-2"]).await;
    let off = r
        .rec
        .wait_for("lamp-3 offline", |m| {
            m.topic == "polegate/cab-test/lamp-3/state" && m.json["state"] == "offline"
        })
        .await;
    let reason = off.json["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("timed out") && reason.contains("unit 3"),
        "{reason}"
    );
    assert_eq!(r.sim.connections.load(Relaxed), 1, "one shared connection");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_on_one_modbus_tcp_address_share_one_connection() {
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let conns = Arc::new(AtomicU64::new(0));
    let addr = counting_proxy(sim.addr(), conns.clone()).await;
    let extra = device("gw-1", &format!("address = \"{addr}\", unit = 1"))
        + &*device("gw-2", &format!("address = \"{addr}\", unit = 2"));
    let mut r = Rig::start(cancel, sim, &extra, &[]).await;
    telemetry_of(&mut r.rec, &["gw-1", "gw-2"]).await;
    assert_eq!(conns.load(Relaxed), 1, "one shared connection");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_rtu_bus_is_polled_and_published_by_the_daemon() {
    let sim = Arc::new(SlaveBus::new(Mode::Rtu, &[17]));
    lamp_unit(&sim.unit(17));
    let line = Line::serve(&sim);
    let extra = format!(
        "[[bus]]\nid = \"rs485-1\"\nkind = \"modbus_rtu\"\nport = \"{}\"\nbaud = 19200\n\
         parity = \"none\"\ntimeout_ms = 200\nretries = 1\n\n",
        line.path.display()
    ) + &*device("lamp-17", "bus = \"rs485-1\", unit = 17");
    let mut r = Rig::start(CancellationToken::new(), line, &extra, &[]).await;
    telemetry_of(&mut r.rec, &["lamp-17"]).await;
    r.stop().await;
}
