//! OCPP proxy mode end to end: the Python `ocpp` library plays both the charge point and
//! the operator's CSMS, polegate sits between them (`ocpp.upstream`). Proves: frames are
//! relayed both ways (the CSMS's answers, not polegate's policy, reach the charger), the
//! telemetry is tapped from the relayed traffic (the CSMS's transaction id), the
//! upstream credentials come from `upstream_password_file`, MQTT commands are refused,
//! and an unreachable CSMS closes the charger's connection with the devices offline
//! until it is back.

use crate::common::*;
use serde_json::json;

fn config(port: u16, upstream: u16) -> String {
    format!(
        "[ocpp]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"ws://127.0.0.1:{upstream}\"\n\n\
         [[device]]\nid = \"ev-p\"\nprofile = \"ocpp-charger\"\n\
         ocpp = {{ charge_point_id = \"CP-P\", upstream_password_file = \"up.pass\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_relayed_both_ways_and_tapped_and_an_unreachable_csms_closes_the_charger() {
    let broker = Mosquitto::start().await;
    let (port, up_port) = (free_port(), free_port());
    let setup = Setup::new(broker.port, &config(port, up_port));
    std::fs::write(setup.dir.path().join("up.pass"), "op-secret\n").unwrap();
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    wait_listening(port).await;
    let url = format!("ws://127.0.0.1:{port}/ocpp");

    let mut csms = Peer::start("csms.py", &[&up_port.to_string(), "op-secret"]);
    csms.op("listening").await;
    let mut c = Peer::charger(&url, "CP-P", None, None);
    c.op("connected").await;
    let up = csms.op("connected").await;
    assert_eq!(up["id"], "CP-P");
    let boot = c
        .call(
            "BootNotification",
            json!({"chargePointVendor": "ACME", "chargePointModel": "W22"}),
        )
        .await;
    assert_eq!(
        boot["interval"], 120,
        "the CSMS's answer, not polegate's heartbeat_s"
    );
    let got = csms
        .wait("boot upstream", |v| {
            v["op"] == "got" && v["action"] == "BootNotification"
        })
        .await;
    assert_eq!(got["payload"]["chargePointVendor"], "ACME");

    // The CSMS decides: an idTag polegate's own policy would accept is blocked.
    let st = c
        .call("StartTransaction", json!({"connectorId": 1, "idTag": "BLOCKED", "meterStart": 100, "timestamp": "2026-12-01T10:00:00Z"}))
        .await;
    assert_eq!(st["id_tag_info"]["status"], "Blocked");
    assert_eq!(st["transaction_id"], 777);
    let m = rec
        .wait_for("tapped transaction", |m| {
            m.topic.ends_with("ev-p/telemetry") && m.json["points"]["x_transaction_id"] == 777
        })
        .await;
    assert_eq!(m.json["points"]["x_id_tag"], "BLOCKED");

    // CSMS → charger.
    csms.send(json!({"op": "call", "action": "Reset", "payload": {"type": "Soft"}}))
        .await;
    let got = c
        .wait("reset relayed", |v| {
            v["op"] == "got" && v["action"] == "Reset"
        })
        .await;
    assert_eq!(got["payload"], json!({"type": "Soft"}));
    assert_eq!(csms.op("result").await["payload"]["status"], "Accepted");

    publish(
        broker.port,
        "polegate/cab-test/ev-p/cmd",
        r#"{"id":"p-1","point":"x_unlock","value":true}"#,
        false,
    )
    .await;
    let r = rec
        .wait_for("refused", |m| {
            m.topic.ends_with("ev-p/cmd/result") && m.json["id"] == "p-1"
        })
        .await;
    assert_eq!(r.json["ok"], false);
    assert_eq!(r.json["error"], "managed by the upstream CSMS");
    assert_eq!(r.json["code"], "upstream_managed");

    // The CSMS goes away: the charger is closed and the device offline with the reason.
    csms.close().await;
    c.op("disconnected").await;
    let off = rec
        .wait_for("offline", |m| {
            m.topic.ends_with("ev-p/state") && m.json["state"] == "offline"
        })
        .await;
    assert_eq!(off.json["reason"], "upstream CSMS unreachable");
    // A charger reconnecting while it is down is closed again.
    let mut c2 = Peer::charger(&url, "CP-P", None, None);
    c2.op("disconnected").await;

    // Back: the next connection is relayed again.
    let mut csms = Peer::start("csms.py", &[&up_port.to_string(), "op-secret"]);
    csms.op("listening").await;
    // polegate retries the CSMS with backoff (started by c2's refused attempt): a charger
    // that connects within that wait is closed again and reconnects, as chargers do.
    let deadline = tokio::time::Instant::now() + WAIT;
    let c3 = loop {
        let mut c = Peer::charger(&url, "CP-P", None, None);
        c.op("connected").await;
        c.send(json!({"op": "call", "action": "Heartbeat", "payload": {}, "skip": false}))
            .await;
        let answer = c
            .wait("Heartbeat answer", |v| {
                v["action"] == "Heartbeat" && (v["op"] == "result" || v["op"] == "callerror")
            })
            .await;
        if answer["op"] == "result" {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relayed again in time: {answer}"
        );
        // A charger's reconnect pause (polegate's backoff is at least 500 ms).
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    csms.wait("heartbeat upstream", |v| {
        v["op"] == "got" && v["action"] == "Heartbeat"
    })
    .await;
    rec.wait_for("online again", |m| {
        m.topic.ends_with("ev-p/state")
            && m.json["state"] == "online"
            && m.json["seq"].as_u64() > off.json["seq"].as_u64()
    })
    .await;
    c3.close().await;
    csms.close().await;
    daemon.stop().await;
}
