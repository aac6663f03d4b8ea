//! End to end through the same entry point as `polegate run`: Modbus TCP simulators on
//! 127.0.0.1:0, a real mosquitto broker, the sled queue. Proves the exact payloads of
//! SPEC §5, device transitions, the clean stop, and delivery across broker outages and
//! daemon restarts (every `seq` delivered, in order, never reused).

use crate::common::*;
use polegate::demo::sim::{Fault, Sim};
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn lamp_with_meta(id: &str, addr: std::net::SocketAddr, poll_ms: u64) -> String {
    format!(
        "[[device]]\nid = \"{id}\"\nprofile = \"generic-lamp-modbus\"\npoll_ms = {poll_ms}\n\
         meta = {{ pole = \"P-017\", street = \"Rue de la Liberté\" }}\n\
         modbus = {{ address = \"{addr}\", unit = 1 }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lamp_is_published_as_birth_then_telemetry_with_the_exact_contract_payloads() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_with_meta("lamp-017", sim.addr(), 100));
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;

    let status = rec
        .wait_for("online status", |m| m.topic == "polegate/cab-test/status")
        .await;
    assert_eq!(status.json["state"], "online");
    assert_eq!(status.json["devices"], 1);
    assert!(status.json["version"].is_string());

    let state = rec
        .wait_for("birth", |m| m.topic == "polegate/cab-test/lamp-017/state")
        .await;
    assert_eq!(state.json["state"], "online");
    assert_eq!(state.json["gateway"], "cab-test");
    assert_eq!(state.json["device"], "lamp-017");
    assert_eq!(state.json["kind"], "lamp");
    assert_eq!(state.json["profile"], "generic-lamp-modbus");
    assert_eq!(
        state.json["meta"],
        json!({"pole": "P-017", "street": "Rue de la Liberté"})
    );
    assert_eq!(
        state.json["points"]["dim_level"],
        json!({"unit": "%", "writable": true, "min": 0, "max": 100})
    );
    assert_eq!(
        state.json["points"]["power"],
        json!({"unit": "W", "writable": false})
    );
    assert!(state.json.get("reason").is_none());

    let t = rec
        .wait_for("first telemetry", |m| {
            m.topic.ends_with("/lamp-017/telemetry")
        })
        .await;
    assert_eq!(
        t.json["points"],
        json!({"on": true, "dim_level": 80, "power": 54.5, "energy": 123456, "voltage": 230.1,
               "current": 0.237, "power_factor": 0.95, "temperature": -5.2, "burning_hours": 4000,
               "switch_count": 1234, "lamp_failure": false, "driver_failure": true})
    );
    assert_eq!(t.json["kind"], "lamp");
    let ts = t.json["ts"].as_str().unwrap();
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
        "ts {ts}"
    );
    assert!(t.json["seq"].as_u64().unwrap() > state.json["seq"].as_u64().unwrap());

    // A change beyond the deadband is reported alone.
    sim.registers().lock().unwrap().holding[0] = 40;
    let t2 = rec
        .wait_for("dim change", |m| {
            m.topic.ends_with("/telemetry") && m.json["points"].get("dim_level") == Some(&json!(40))
        })
        .await;
    assert_eq!(t2.json["points"], json!({"dim_level": 40}));

    let took = daemon.stop().await;
    assert!(took < Duration::from_secs(5), "clean stop took {took:?}");
    let off = rec
        .wait_for("offline status", |m| {
            m.topic == "polegate/cab-test/status" && m.json["state"] == "offline"
        })
        .await;
    assert_eq!(off.json["devices"], 1);
    // Status and birth are retained: a late subscriber gets the last of each.
    let mut late = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let st = late
        .wait_for("retained status", |m| m.topic.ends_with("/status"))
        .await;
    assert!(st.retain && st.json["state"] == "offline", "{st:?}");
    let birth = late
        .wait_for("retained birth", |m| m.topic.ends_with("/state"))
        .await;
    assert!(birth.retain && birth.json["state"] == "online", "{birth:?}");
    let s = seqs(&rec.seen);
    assert!(
        s.windows(2).all(|w| w[0] < w[1]),
        "seq not increasing: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_goes_offline_after_three_failed_cycles_and_online_again() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_with_meta("lamp-017", sim.addr(), 100));
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/lamp-017/#").await;
    let daemon = Daemon::start(&setup).await;
    rec.wait_for("online", |m| {
        m.topic.ends_with("/state") && m.json["state"] == "online"
    })
    .await;

    sim.set_fault(Fault::Exception(
        tokio_modbus::ExceptionCode::ServerDeviceBusy,
    ));
    sim.set_fault(Fault::Silent);
    let off = rec
        .wait_for("offline", |m| {
            m.topic.ends_with("/state") && m.json["state"] == "offline"
        })
        .await;
    let reason = off.json["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("timed out"), "reason: {reason}");
    assert!(
        daemon
            .handles
            .counters
            .modbus_timeout
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );

    sim.set_fault(Fault::None);
    rec.wait_for("online again", |m| {
        m.topic.ends_with("/state")
            && m.json["state"] == "online"
            && m.json["seq"].as_u64() > off.json["seq"].as_u64()
    })
    .await;
    // Back online: every point is reported again.
    let t = rec
        .wait_for("full telemetry after recovery", |m| {
            m.topic.ends_with("/telemetry") && m.json["seq"].as_u64() > off.json["seq"].as_u64()
        })
        .await;
    assert_eq!(
        t.json["points"].as_object().unwrap().len(),
        12,
        "{}",
        t.json
    );
    daemon.stop().await;
}

/// Generates changing readings (a data source, not synchronization).
fn wiggle(sim: &Sim, cancel: CancellationToken) {
    let regs = sim.registers();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut v: u16 = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            v = v.wrapping_add(1);
            regs.lock().unwrap().input[0] = v % 5000 * 10;
        }
    });
}

fn assert_complete_and_ordered(seen: &[Msg], first: u64, last: u64) {
    let all = seqs(seen);
    let mut first_seen = Vec::new();
    let mut set = std::collections::BTreeSet::new();
    for s in &all {
        if set.insert(*s) {
            first_seen.push(*s);
        }
    }
    let missing: Vec<u64> = (first..=last).filter(|s| !set.contains(s)).collect();
    assert!(missing.is_empty(), "missing seqs: {missing:?}");
    assert!(
        first_seen.windows(2).all(|w| w[0] < w[1]),
        "not delivered in seq order: {first_seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_without_persistence_mid_flight_loses_no_event() {
    let mut broker = Mosquitto::start().await;
    let proxy = Proxy::start(broker.port).await;
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let setup = Setup::new(proxy.port, &lamp_with_meta("lamp-017", sim.addr(), 20));
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/#").await;
    let daemon = Daemon::start(&setup).await;
    wiggle(&sim, cancel.clone());
    rec.wait_until("traffic", |s| seqs(s).len() >= 40).await;

    // The broker dies with messages in flight; the gateway cannot reach it for a while.
    proxy.set_enabled(false);
    broker.stop();
    let subs = rec.subscriptions();
    let queued_before = daemon.handles.queue.stats().events;
    eventually("events buffered during the outage", || {
        daemon.handles.queue.stats().events >= queued_before + 30
    })
    .await;
    broker.restart().await;
    rec.wait_subscribed_after(subs).await;
    proxy.set_enabled(true);

    rec.wait_until("historical replay", |s| {
        s.iter().any(|m| m.json["historical"] == true)
    })
    .await;
    cancel.cancel(); // readings stop changing
    eventually("queue drained", || daemon.handles.queue.stats().events == 0).await;
    // Not next_seq(): allocating a seq here would leave a gap the daemon never fills.
    let last = daemon.handles.queue.last_pushed();
    rec.wait_until("every seq", |s| {
        seqs(s).contains(&last) || seqs(s).iter().max() >= Some(&last)
    })
    .await;
    daemon.stop().await;
    rec.drain();
    let first = seqs(&rec.seen).into_iter().min().unwrap();
    let max_seen = seqs(&rec.seen).into_iter().max().unwrap();
    assert_complete_and_ordered(&rec.seen, first, max_seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_events_report_buffer_devices_and_error_counters_on_their_interval() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp_with_meta("lamp-017", sim.addr(), 100));
    let cfg = std::fs::read_to_string(&setup.path).unwrap();
    std::fs::write(&setup.path, cfg.replace("interval_s = 0", "interval_s = 1")).unwrap();
    let mut rec = Recorder::start(broker.port, "polegate/cab-test/stats").await;
    let daemon = Daemon::start(&setup).await;
    let s = rec
        .wait_for("stats with the device online", |m| {
            m.json["devices"]["online"] == 1
        })
        .await;
    let j = &s.json;
    assert_eq!(j["gateway"], "cab-test");
    assert!(j["seq"].is_u64() && j["ts"].is_string() && j["uptime_s"].is_u64());
    assert!(j["buffer"]["events"].is_u64() && j["buffer"]["bytes"].is_u64());
    assert_eq!(j["buffer"]["dropped"], 0);
    assert!(j["published"].as_u64().unwrap() >= 2, "{j}");
    assert_eq!(j["devices"]["offline"], 0);
    assert_eq!(j["errors"]["modbus_timeout"], 0);
    let link = sim.addr().to_string();
    assert_eq!(j["links"][&link]["modbus_timeout"], 0, "{j}");
    assert_eq!(j["device_errors"], json!({}), "{j}");

    // A device that stops answering shows its timeouts on itself and on its link.
    sim.set_fault(Fault::Silent);
    let s = rec
        .wait_for("stats with the device's timeouts", |m| {
            m.json["device_errors"]["lamp-017"]["modbus_timeout"].as_u64() >= Some(1)
        })
        .await;
    let j = &s.json;
    let device = j["device_errors"]["lamp-017"]["modbus_timeout"].as_u64();
    assert!(
        j["links"][&link]["modbus_timeout"].as_u64() >= device,
        "{j}"
    );
    assert!(j["errors"]["modbus_timeout"].as_u64() >= device, "{j}");
    assert_eq!(
        j["device_errors"]["lamp-017"].as_object().map(|o| o.len()),
        Some(1),
        "only non-zero counters: {j}"
    );
    daemon.stop().await;
}
