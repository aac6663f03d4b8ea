//! OCPP 1.6J central-system mode end to end: the Python `ocpp` library (validating
//! every frame against the official schemas) is the charge point, the daemon runs
//! through the same entry point as `polegate run`, a real mosquitto carries the events.
//! Proves: handshake refusals (404, 401, 400) and `ocpp1.6` negotiated; Boot, Status,
//! MeterValues (strings and numbers, per phase), Start/Stop, Authorize, Heartbeat,
//! DataTransfer mapped and answered; malformed frames answered with a CALLERROR without
//! losing the connection; every command as its OCPP call with the charger's answer as
//! the result; disconnect → offline, also on the status page after a boot; a restart keeps the open transaction and never
//! reuses a transaction id.

use crate::common::*;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

fn config(port: u16, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("cp1.pass"), "s3cret\n").unwrap();
    format!(
        "[ocpp]\nlisten = \"127.0.0.1:{port}\"\nheartbeat_s = 60\nauthorize = \"allow_list\"\nid_tags = [\"CARD1\"]\n\n\
         [[device]]\nid = \"ev-1a\"\nprofile = \"ocpp-charger\"\n\
         ocpp = {{ charge_point_id = \"CP-1\", connector = 1, password_file = \"cp1.pass\" }}\n\n\
         [[device]]\nid = \"ev-1b\"\nprofile = \"ocpp-charger\"\n\
         ocpp = {{ charge_point_id = \"CP-1\", connector = 2, password_file = \"cp1.pass\" }}\n\n\
         [[device]]\nid = \"ev-2\"\nprofile = \"ocpp-charger\"\n\
         ocpp = {{ charge_point_id = \"CP-2\" }}\n"
    )
}

struct World {
    broker: Mosquitto,
    setup: Setup,
    rec: Recorder,
    daemon: Daemon,
    url: String,
}

async fn world() -> World {
    let broker = Mosquitto::start().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(broker.port, &config(port, dir.path()));
    std::fs::copy(
        dir.path().join("cp1.pass"),
        setup.dir.path().join("cp1.pass"),
    )
    .unwrap();
    let rec = Recorder::start(broker.port, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    wait_listening(port).await;
    World {
        broker,
        setup,
        rec,
        daemon,
        url: format!("ws://127.0.0.1:{port}/ocpp"),
    }
}

fn telemetry<'a>(m: &'a Msg, dev: &str, point: &str) -> Option<&'a Value> {
    (m.topic == format!("polegate/cab-test/{dev}/telemetry"))
        .then(|| m.json["points"].get(point))
        .flatten()
}

async fn point(rec: &mut Recorder, dev: &str, name: &str) -> Value {
    let m = rec
        .wait_for_new(&format!("{dev} {name}"), |m| {
            telemetry(m, dev, name).is_some()
        })
        .await;
    m.json["points"][name].clone()
}

async fn booted(url: &str, cp: &str, pw: Option<&str>) -> Peer {
    let mut c = Peer::charger(url, cp, pw, None);
    let hello = c.op("connected").await;
    assert_eq!(hello["subprotocol"], "ocpp1.6");
    let conf = c
        .call(
            "BootNotification",
            json!({"chargePointVendor": "ACME", "chargePointModel": "W22",
                   "chargePointSerialNumber": "SN-9", "firmwareVersion": "4.1"}),
        )
        .await;
    assert_eq!(conf["status"], "Accepted");
    assert_eq!(conf["interval"], 60);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_chargers_bad_credentials_and_other_subprotocols_are_refused_before_the_upgrade() {
    let w = world().await;
    let mut c = Peer::charger(&w.url, "CP-404", None, None);
    assert_eq!(c.op("refused").await["status"], 404);
    assert_eq!(
        w.daemon
            .handles
            .counters
            .ocpp_unknown_charger
            .load(Ordering::Relaxed),
        1
    );
    let mut c = Peer::charger(&w.url, "CP-1", None, None);
    assert_eq!(c.op("refused").await["status"], 401);
    let mut c = Peer::charger(&w.url, "CP-1", Some("wrong"), None);
    assert_eq!(c.op("refused").await["status"], 401);
    let mut c = Peer::charger(&w.url, "CP-2", None, Some("ocpp2.0.1"));
    assert_eq!(c.op("refused").await["status"], 400);
    let c = booted(&w.url, "CP-1", Some("s3cret")).await;
    c.close().await;
    w.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_charger_message_is_answered_and_mapped_to_normalized_points() {
    let mut w = world().await;
    let mut c = booted(&w.url, "CP-1", Some("s3cret")).await;
    let birth = w
        .rec
        .wait_for("birth with charger identity", |m| {
            m.topic == "polegate/cab-test/ev-1b/state" && m.json["meta"]["ocpp_vendor"] == "ACME"
        })
        .await;
    assert_eq!(birth.json["state"], "online");
    assert_eq!(birth.json["meta"]["ocpp_serial"], "SN-9");
    assert_eq!(birth.json["meta"]["ocpp_firmware"], "4.1");

    c.call(
        "StatusNotification",
        json!({"connectorId": 2, "errorCode": "NoError", "status": "SuspendedEVSE"}),
    )
    .await;
    assert_eq!(point(&mut w.rec, "ev-1b", "status").await, "suspended_evse");
    let m = w.rec.seen.last().unwrap().json.clone();
    assert_eq!(m["points"]["plug_connected"], true);
    assert_eq!(m["points"]["fault_code"], "NoError");
    c.call(
        "StatusNotification",
        json!({"connectorId": 0, "errorCode": "NoError", "status": "Available"}),
    )
    .await;
    assert_eq!(
        point(&mut w.rec, "ev-1a", "x_charge_point_status").await,
        "available"
    );

    assert_eq!(
        c.call("Authorize", json!({"idTag": "NOPE"})).await["id_tag_info"]["status"],
        "Invalid"
    );
    let st = c
        .call("StartTransaction", json!({"connectorId": 1, "idTag": "CARD1", "meterStart": 10000, "timestamp": "2026-12-01T10:00:00Z"}))
        .await;
    assert_eq!(st["id_tag_info"]["status"], "Accepted");
    let tx = st["transaction_id"].as_i64().unwrap();
    assert_eq!(point(&mut w.rec, "ev-1a", "x_transaction_id").await, tx);
    // Numbers where the schema says strings, as many chargers send them.
    c.call_with(
        "MeterValues",
        json!({"connectorId": 1, "transactionId": tx, "meterValue": [{"timestamp": "2026-12-01T10:05:00Z", "sampledValue": [
            {"value": 12.5, "unit": "kWh"},
            {"value": 7.2, "measurand": "Power.Active.Import", "unit": "kW"},
            {"value": "15.5", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
            {"value": "229", "measurand": "Voltage", "phase": "L1-N", "unit": "V"}
        ]}]}),
        true,
    )
    .await;
    let m = w
        .rec
        .wait_for_new("meter values", |m| {
            telemetry(m, "ev-1a", "energy_total").is_some()
        })
        .await;
    let p = &m.json["points"];
    assert_eq!(p["energy_total"], 12500.0);
    assert_eq!(p["energy_session"], 2500.0);
    assert_eq!(p["power"], 7200.0);
    assert_eq!(p["x_current_l2"], 15.5);
    assert_eq!(p["x_voltage_l1"], 229.0);
    let hb = c.call("Heartbeat", json!({})).await;
    assert!(hb["current_time"].is_string());
    assert_eq!(
        c.call("DataTransfer", json!({"vendorId": "acme"})).await["status"],
        "UnknownVendorId"
    );
    c.call("FirmwareStatusNotification", json!({"status": "Idle"}))
        .await;
    c.call(
        "StopTransaction",
        json!({"transactionId": tx, "meterStop": 13000, "timestamp": "2026-12-01T10:10:00Z"}),
    )
    .await;
    let m = w
        .rec
        .wait_for_new("stop", |m| telemetry(m, "ev-1a", "x_stop_reason").is_some())
        .await;
    assert_eq!(m.json["points"]["energy_session"], 3000.0);
    assert_eq!(m.json["points"]["x_stop_reason"], "Local");
    assert_eq!(m.json["points"]["x_transaction_id"], 0);

    // Garbage: a CALLERROR, counted, and the connection stays usable.
    c.send(json!({"op": "raw", "text": "[2,\"x1\",\"Heartbeat\"]"}))
        .await;
    let e = c
        .wait("callerror frame", |v| {
            v["op"] == "in"
                && v["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("[4,\"x1\",\"FormationViolation\""))
        })
        .await;
    assert!(e["text"].is_string());
    c.send(json!({"op": "raw", "text": "[2,\"x2\",\"FlyToTheMoon\",{}]"}))
        .await;
    c.wait("not implemented", |v| {
        v["op"] == "in"
            && v["text"]
                .as_str()
                .is_some_and(|t| t.contains("NotImplemented"))
    })
    .await;
    assert_eq!(
        w.daemon
            .handles
            .counters
            .ocpp_malformed
            .load(Ordering::Relaxed),
        2
    );
    c.call("Heartbeat", json!({})).await;

    c.close().await;
    let off = w
        .rec
        .wait_for("offline", |m| {
            m.topic == "polegate/cab-test/ev-1a/state" && m.json["state"] == "offline"
        })
        .await;
    assert_eq!(off.json["reason"], "charger disconnected");
    // The status page reads the device the daemon configured: after a boot (whose birth
    // carries the charger's identity) it still shows the state and the offline reason.
    let addr = w.daemon.handles.http.expect("http listener");
    let status = api_status(addr).await;
    let dev = status["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "ev-1a"))
        .cloned()
        .unwrap_or_else(|| panic!("ev-1a in {status}"));
    assert_eq!(dev["state"], "offline", "{dev}");
    assert_eq!(dev["reason"], "charger disconnected", "{dev}");
    w.daemon.stop().await;
    drop(w.broker);
}

/// `GET /api/status` of the daemon's HTTP listener, as JSON.
async fn api_status(addr: std::net::SocketAddr) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn command(w: &mut World, dev: &str, id: &str, body: Value) -> Value {
    let mut cmd = body;
    cmd["id"] = json!(id);
    publish(
        w.broker.port,
        &format!("polegate/cab-test/{dev}/cmd"),
        &cmd.to_string(),
        false,
    )
    .await;
    let m = w
        .rec
        .wait_for(&format!("result {id}"), |m| {
            m.topic.ends_with("/cmd/result") && m.json["id"] == id
        })
        .await;
    m.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_become_ocpp_calls_and_the_chargers_answer_is_the_result() {
    let mut w = world().await;
    let mut c = booted(&w.url, "CP-1", Some("s3cret")).await;
    w.rec
        .wait_for("online", |m| {
            m.topic.ends_with("ev-1b/state") && m.json["state"] == "online"
        })
        .await;

    let r = command(
        &mut w,
        "ev-1b",
        "c-1",
        json!({"point": "enabled", "value": false}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let got = c
        .wait("ChangeAvailability", |v| {
            v["op"] == "got" && v["action"] == "ChangeAvailability"
        })
        .await;
    assert_eq!(
        got["payload"],
        json!({"connectorId": 2, "type": "Inoperative"})
    );

    let r = command(
        &mut w,
        "ev-1b",
        "c-2",
        json!({"point": "max_current", "value": 16}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let got = c
        .wait("SetChargingProfile", |v| {
            v["op"] == "got" && v["action"] == "SetChargingProfile"
        })
        .await;
    let prof = &got["payload"]["csChargingProfiles"];
    assert_eq!(prof["chargingProfilePurpose"], "TxDefaultProfile");
    assert_eq!(
        prof["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"],
        16.0
    );

    c.send(json!({"op": "answers", "map": {"SetChargingProfile": "NotSupported", "Reset": "Rejected"}})).await;
    let r = command(
        &mut w,
        "ev-1b",
        "c-3",
        json!({"point": "max_current", "value": 10}),
    )
    .await;
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("NotSupported"), "{r}");
    let r = command(
        &mut w,
        "ev-1a",
        "c-4",
        json!({"point": "x_reset", "value": "soft"}),
    )
    .await;
    assert!(r["error"].as_str().unwrap().contains("Rejected"), "{r}");
    assert_eq!(r["code"], "device_error", "{r}");

    let r = command(
        &mut w,
        "ev-1a",
        "c-5",
        json!({"point": "x_remote_stop", "value": true}),
    )
    .await;
    assert_eq!(r["error"], "no transaction running");
    assert_eq!(r["code"], "wrong_state");
    let r = command(
        &mut w,
        "ev-1a",
        "c-6",
        json!({"point": "x_remote_start", "value": "CARD1"}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let got = c
        .wait("RemoteStart", |v| {
            v["op"] == "got" && v["action"] == "RemoteStartTransaction"
        })
        .await;
    assert_eq!(got["payload"], json!({"connectorId": 1, "idTag": "CARD1"}));
    let st = c
        .call("StartTransaction", json!({"connectorId": 1, "idTag": "CARD1", "meterStart": 0, "timestamp": "2026-12-01T10:00:00Z"}))
        .await;
    let tx = st["transaction_id"].as_i64().unwrap();
    point(&mut w.rec, "ev-1a", "x_transaction_id").await;
    let r = command(
        &mut w,
        "ev-1a",
        "c-7",
        json!({"point": "x_remote_stop", "value": true}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let got = c
        .wait("RemoteStop", |v| {
            v["op"] == "got" && v["action"] == "RemoteStopTransaction"
        })
        .await;
    assert_eq!(got["payload"]["transactionId"], tx);

    c.send(json!({"op": "answers", "map": {"UnlockConnector": "silent"}}))
        .await;
    let t0 = std::time::Instant::now();
    publish(
        w.broker.port,
        "polegate/cab-test/ev-1a/cmd",
        r#"{"id":"c-8","point":"x_unlock","value":true}"#,
        false,
    )
    .await;
    c.wait("Unlock", |v| {
        v["op"] == "got" && v["action"] == "UnlockConnector"
    })
    .await;
    // The answer deadline (30 s) is longer than the recorder's WAIT: wait in slices.
    let is_result = |m: &Msg| m.topic.ends_with("ev-1a/cmd/result") && m.json["id"] == "c-8";
    let mut r = None;
    while r.is_none() && t0.elapsed().as_secs() < 45 {
        let slice = std::time::Duration::from_secs(1);
        r = tokio::time::timeout(slice, w.rec.wait_for("unlock result", is_result))
            .await
            .ok()
            .map(|m| m.json);
    }
    let r = r.expect("a result for the unanswered unlock");
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"], "charger did not answer");
    assert_eq!(r["code"], "timeout");
    assert!(
        t0.elapsed().as_secs() >= 29,
        "answered after {:?}",
        t0.elapsed()
    );
    c.close().await;
    w.daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_open_transaction_and_never_reuses_a_transaction_id() {
    let mut w = world().await;
    let mut c = booted(&w.url, "CP-2", None).await;
    let st = c
        .call("StartTransaction", json!({"connectorId": 1, "idTag": "CARD1", "meterStart": 500, "timestamp": "2026-12-01T10:00:00Z"}))
        .await;
    let first = st["transaction_id"].as_i64().unwrap();
    point(&mut w.rec, "ev-2", "x_transaction_id").await;
    c.close().await;
    w.daemon.stop().await;

    let daemon = Daemon::start(&w.setup).await;
    let mut c = booted(&w.url, "CP-2", None).await;
    c.call("StopTransaction", json!({"transactionId": first, "meterStop": 1700, "timestamp": "2026-12-01T11:00:00Z", "reason": "EVDisconnected"})).await;
    let m = w
        .rec
        .wait_for_new("stop after restart", |m| {
            telemetry(m, "ev-2", "x_stop_reason").is_some()
        })
        .await;
    assert_eq!(m.json["points"]["energy_session"], 1200.0);
    assert_eq!(m.json["points"]["x_stop_reason"], "EVDisconnected");
    let st = c
        .call("StartTransaction", json!({"connectorId": 1, "idTag": "CARD1", "meterStart": 1700, "timestamp": "2026-12-01T11:01:00Z"}))
        .await;
    assert!(st["transaction_id"].as_i64().unwrap() > first);
    c.close().await;
    daemon.stop().await;
}
