//! OCPP at the scale of a street: N simulated chargers (default 50) connected to the
//! cabinet binary, each in a transaction sending MeterValues every P seconds (default 10).
//! Reports the daemon's CPU and RSS (total and per charger, against the same daemon
//! with the chargers configured but not connected) and the frame → MQTT latency (from the
//! charger writing MeterValues to the telemetry reaching a subscriber on mosquitto).
//! Run with `cargo bench --bench ocpp` (`-- --quick`: every 2 s for 20 s; `--chargers N`,
//! `--every S`, `--secs S`); results go to BENCHMARKS.md. The daemon is the cabinet build
//! (see `support::cabinet_binary`).

use futures_util::{SinkExt, StreamExt};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{Mosquitto, Setup, free_port, wait_listening};
mod support;
use support::{cabinet_binary, clk_tck, proc_sample, spawn_daemon, threads};

/// When each (charger, energy register) was written, for the latency.
type Sent = Arc<Mutex<HashMap<(usize, u64), Instant>>>;

fn config(mqtt_port: u16, ocpp_port: u16, n: usize) -> Setup {
    let mut devices = format!("[ocpp]\nlisten = \"127.0.0.1:{ocpp_port}\"\nheartbeat_s = 300\n");
    for i in 0..n {
        devices.push_str(&format!(
            "\n[[device]]\nid = \"ev-{i:03}\"\nprofile = \"ocpp-charger\"\nocpp = {{ charge_point_id = \"CP-{i:03}\" }}\n"
        ));
    }
    Setup::custom(
        "bench",
        &format!("url = \"mqtt://127.0.0.1:{mqtt_port}\"\n"),
        &devices,
    )
}

async fn call<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    id: &str,
    action: &str,
    p: Value,
) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(json!([2, id, action, p]).to_string()))
        .await
        .expect("send");
    while let Some(Ok(m)) = ws.next().await {
        if let Ok(Value::Array(a)) = serde_json::from_str::<Value>(m.to_text().unwrap_or(""))
            && a.first() == Some(&json!(3))
            && a.get(1) == Some(&json!(id))
        {
            return a[2].clone();
        }
    }
    panic!("charger connection closed during {action}");
}

/// One charger: boots, starts a transaction, then MeterValues every `every` until `end`.
async fn charger(port: u16, i: usize, every: Duration, end: Instant, sent: Sent) {
    let mut ws = common::ws_charger(port, &format!("CP-{i:03}"))
        .await
        .expect("handshake");
    call(
        &mut ws,
        "b",
        "BootNotification",
        json!({"chargePointVendor": "Bench", "chargePointModel": "AC22"}),
    )
    .await;
    call(
        &mut ws,
        "s",
        "StatusNotification",
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
    )
    .await;
    let mut energy: u64 = 1_000_000 + i as u64 * 1000;
    let tx = call(&mut ws, "t", "StartTransaction", json!({"connectorId": 1, "idTag": "CARD", "meterStart": energy, "timestamp": "2026-12-01T00:00:00Z"})).await;
    // Spread the chargers over the interval, as real ones are.
    tokio::time::sleep(every.mul_f64(fastrand::f64())).await;
    let mut tick = tokio::time::interval(every);
    let mut n = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        energy += 7 + n % 5; // always a new register value: always published
        n += 1;
        let mv = json!({"connectorId": 1, "transactionId": tx["transactionId"], "meterValue": [{
        "timestamp": "2026-12-01T00:00:00Z",
        "sampledValue": [
            {"value": energy.to_string(), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "7360", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": "32.0", "measurand": "Current.Import", "unit": "A"}
        ]}]});
        sent.lock()
            .expect("sent")
            .insert((i, energy), Instant::now());
        call(&mut ws, &format!("m{n}"), "MeterValues", mv).await;
    }
    let _ = ws.close(None).await;
}

/// Subscribes to the chargers' telemetry; returns the latency of every energy reading.
async fn listen(
    port: u16,
    sent: Sent,
) -> (
    AsyncClient,
    tokio::task::JoinHandle<Vec<Duration>>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let mut o = MqttOptions::new("bench-ocpp", "127.0.0.1", port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(o, 64);
    client
        .subscribe("polegate/bench/+/telemetry", QoS::AtMostOnce)
        .await
        .expect("subscribe");
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut lat = Vec::new();
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    if let Some(t) = ready_tx.take() {
                        let _ = t.send(());
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let now = Instant::now();
                    let Ok(j) = serde_json::from_slice::<Value>(&p.payload) else {
                        continue;
                    };
                    let dev = j["device"].as_str().and_then(|d| d.strip_prefix("ev-"));
                    let (Some(i), Some(e)) = (
                        dev.and_then(|d| d.parse::<usize>().ok()),
                        j["points"]["energy_total"].as_f64(),
                    ) else {
                        continue;
                    };
                    if let Some(at) = sent.lock().expect("sent").remove(&(i, e as u64)) {
                        lat.push(now - at);
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return lat,
                Ok(_) => {}
                Err(_) => return lat,
            }
        }
    });
    (client, task, ready)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("ocpp bench: run with `cargo bench --bench ocpp` (skipped under cargo test)");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = arg("--chargers", 50) as usize;
    let every = Duration::from_secs(arg("--every", if quick { 2 } else { 10 }));
    let secs = arg("--secs", if quick { 20 } else { 60 });
    let exe = cabinet_binary();
    let rt = support::runtime();
    rt.block_on(async {
        println!("machine: {}; daemon {}", support::machine(), exe.display());
        let broker = Mosquitto::start().await;
        let ocpp_port = free_port();
        let setup = config(broker.port, ocpp_port, n);
        let sent: Sent = Arc::default();
        let (client, listener, ready) = listen(broker.port, sent.clone()).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), ready).await;
        let daemon = spawn_daemon(&exe, &setup);
        let pid = daemon.pid();
        wait_listening(ocpp_port).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (_, rss_idle, _) = proc_sample(pid);

        let end = Instant::now() + Duration::from_secs(secs);
        let chargers: Vec<_> = (0..n)
            .map(|i| tokio::spawn(charger(ocpp_port, i, every, end, sent.clone())))
            .collect();
        // Measure once every charger is in its MeterValues loop (one interval in).
        tokio::time::sleep(every + Duration::from_secs(1)).await;
        let (t0, _, _) = proc_sample(pid);
        let w0 = Instant::now();
        for c in chargers {
            c.await.expect("charger");
        }
        let (t1, rss, hwm) = proc_sample(pid);
        let window = w0.elapsed().as_secs_f64();
        let th = threads(pid);
        tokio::time::sleep(Duration::from_secs(1)).await; // last telemetry through
        let _ = client.disconnect().await;
        let mut lat = listener.await.expect("listener");
        let missing = sent.lock().expect("sent").len();
        // A clean stop, as systemd's (and cross/order.sh's profiler writes its output then).
        daemon.stop();

        lat.sort_unstable();
        let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
        let cpu = (t1 - t0) as f64 / clk_tck() / window * 100.0;
        let readings = lat.len();
        println!(
            "{n} chargers, MeterValues every {} s, {window:.0} s measured: daemon CPU {cpu:.2} % of one core ({:.3} % per charger), RSS {:.1} MB (peak {:.1}; {:.1} MB before the chargers connected: {:.0} kB per charger), {th} threads",
            every.as_secs(),
            cpu / n as f64,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss_idle as f64 / 1024.0,
            (rss.saturating_sub(rss_idle)) as f64 / n as f64,
        );
        println!(
            "frame -> MQTT latency over {readings} readings: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; readings not seen on MQTT: {missing}",
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    });
}
