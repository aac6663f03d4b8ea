//! `lora.source = "chirpstack"` against a real broker standing in for ChirpStack v4's
//! MQTT integration: a recorded-format `event/up` becomes the same normalized telemetry
//! (decoded by the same profile script, RSSI/SNR from the best `rxInfo`), and a command
//! becomes a `command/down` whose `event/txack` turns `queued` into `sent`. Pending
//! downlinks are persisted: after a restart a late txack still gives `sent`, and a
//! command whose txack never comes is reported `expired`. Over `mqtts://` (a TLS
//! listener of a real mosquitto, a private CA, a client certificate) uplinks arrive the
//! same way, and a server certificate from another CA is refused.

use crate::common::*;
use base64::Engine as _;
use std::time::Duration;

const APP: &str = "17c82e96-be03-4f38-aef3-f83d48582d97";
const UP: &str = r#"{"deduplicationId":"3ac7e3c4-4401-4b8d-9386-a5c902f9202d","time":"2026-11-28T10:00:00.000+00:00","deviceInfo":{"tenantId":"52f14cd4-c6f1-4fbd-8f87-4025e1d49242","tenantName":"City","applicationId":"17c82e96-be03-4f38-aef3-f83d48582d97","applicationName":"lamps","deviceProfileId":"14855bf7-d10d-4aee-b618-ebfcb64dc7ad","deviceProfileName":"LL-1","deviceName":"lamp-1","devEui":"0004a30b001c0532","tags":{}},"devAddr":"00189440","adr":true,"dr":5,"fCnt":10,"fPort":2,"confirmed":false,"data":"AVACHAAAMDkV","rxInfo":[{"gatewayId":"0016c001ff10d3f6","uplinkId":4217106255,"rssi":-57,"snr":10.0,"channel":1,"location":{},"context":"EFwMtA==","metadata":{"region_config_id":"eu868"},"crcStatus":"CRC_OK"}],"txInfo":{"frequency":868100000,"modulation":{"lora":{"bandwidth":125000,"spreadingFactor":7,"codeRate":"CR_4_5"}}}}"#;

/// ChirpStack's side of the integration: a client on the broker at `port`, subscribed to
/// the downlinks the gateway queues; received publishes come out of the receiver.
async fn client(
    port: u16,
) -> (
    rumqttc::AsyncClient,
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    let opts = rumqttc::MqttOptions::new(format!("ns-{}", fastrand::u32(..)), "127.0.0.1", port);
    let (c, mut el) = rumqttc::AsyncClient::new(opts, 16);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Ok(ev) = el.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p)) = ev {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });
    c.subscribe(
        format!("application/{APP}/device/+/command/down"),
        rumqttc::QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    (c, task, rx)
}

/// The gateway's `[lora]` section pointing at ChirpStack's integration on `port`, and one
/// device.
fn config(port: u16) -> String {
    config_with(&format!("url = \"mqtt://127.0.0.1:{port}\""))
}

/// The same with `connection` (url and TLS keys) in `[lora.chirpstack]`.
fn config_with(connection: &str) -> String {
    format!(
        "[lora]\nsource = \"chirpstack\"\nchirpstack = {{ {connection}, application_id = \"{APP}\" }}\n\n\
         [[device]]\nid = \"lamp-ns\"\nprofile = \"generic-lamp-lora\"\nlora = {{ dev_eui = \"0004a30b001c0532\" }}\n"
    )
}

/// Publishes the recorded `event/up` once as ChirpStack, then leaves it 200 ms to arrive.
async fn publish_up(ns: &rumqttc::AsyncClient) {
    ns.publish(
        format!("application/{APP}/device/0004a30b001c0532/event/up"),
        rumqttc::QoS::AtLeastOnce,
        false,
        UP.as_bytes().to_vec(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Publishes the recorded `event/up` as ChirpStack until the gateway's telemetry for it
/// comes out (the integration subscribes once connected, so early copies go unheard).
async fn uplink_until_telemetry(ns: &rumqttc::AsyncClient, rec: &mut Recorder) -> Msg {
    for _ in 0..50 {
        publish_up(ns).await;
        rec.drain();
        if let Some(m) = rec
            .seen
            .iter()
            .find(|m| m.topic.ends_with("lamp-ns/telemetry"))
        {
            return m.clone();
        }
    }
    panic!("no telemetry from the network server's event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chirpstack_events_become_telemetry_and_commands_become_downlinks() {
    let broker = Mosquitto::start().await;
    let setup = Setup::new(broker.port, &config(broker.port));
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    let (ns, _task, mut downs) = client(broker.port).await;
    let t = uplink_until_telemetry(&ns, &mut rec).await;
    assert_eq!(t.json["points"]["dim_level"], 80);
    assert_eq!(t.json["points"]["rssi"], -57);
    assert_eq!(t.json["points"]["snr"], 10.0);
    assert_eq!(t.json["points"]["temperature"], 21);

    ns.publish(
        "polegate/cab-test/lamp-ns/cmd",
        rumqttc::QoS::AtLeastOnce,
        false,
        br#"{"id":"c-ns","point":"dim_level","value":40}"#.to_vec(),
    )
    .await
    .unwrap();
    let r = rec
        .wait_for("queued", |m| m.topic.ends_with("lamp-ns/cmd/result"))
        .await;
    assert_eq!(r.json["status"], "queued");
    let (topic, down) = tokio::time::timeout(WAIT, downs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        topic,
        format!("application/{APP}/device/0004a30b001c0532/command/down")
    );
    let down: serde_json::Value = serde_json::from_slice(&down).unwrap();
    assert_eq!(down["fPort"], 10);
    let data = base64::engine::general_purpose::STANDARD
        .decode(down["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, vec![1, 40]);
    let ack = serde_json::json!({
        "downlinkId": 7, "time": "2026-11-28T10:00:05Z",
        "deviceInfo": {"devEui": "0004a30b001c0532", "applicationId": APP},
        "queueItemId": down["id"], "fCntDown": 3, "gatewayId": "0016c001ff10d3f6"
    });
    ns.publish(
        format!("application/{APP}/device/0004a30b001c0532/event/txack"),
        rumqttc::QoS::AtLeastOnce,
        false,
        ack.to_string().into_bytes(),
    )
    .await
    .unwrap();
    let r = rec
        .wait_for("sent", |m| {
            m.topic.ends_with("lamp-ns/cmd/result") && m.json["status"] == "sent"
        })
        .await;
    assert_eq!(r.json["points"]["dim_level"], 40);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_downlink_and_txack_still_reports_sent_and_expired() {
    let broker = Mosquitto::start().await;
    let setup = Setup::new(broker.port, &config(broker.port));
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    let (ns, _task, mut downs) = client(broker.port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let soon = std::time::SystemTime::now() + Duration::from_secs(4);
    let expires = humantime::format_rfc3339_seconds(soon).to_string();
    for cmd in [
        r#"{"id":"c-late","point":"dim_level","value":30}"#.to_string(),
        format!(r#"{{"id":"c-lost","point":"on","value":false,"expires":"{expires}"}}"#),
    ] {
        ns.publish(
            "polegate/cab-test/lamp-ns/cmd",
            rumqttc::QoS::AtLeastOnce,
            false,
            cmd.into_bytes(),
        )
        .await
        .unwrap();
    }
    let mut ids = std::collections::HashMap::new();
    for _ in 0..2 {
        let (_, down) = tokio::time::timeout(WAIT, downs.recv())
            .await
            .expect("command/down in time")
            .unwrap();
        let down: serde_json::Value = serde_json::from_slice(&down).unwrap();
        let data = base64::engine::general_purpose::STANDARD
            .decode(down["data"].as_str().unwrap())
            .unwrap();
        ids.insert(data, down["id"].as_str().unwrap().to_string());
    }
    for id in ["c-late", "c-lost"] {
        rec.wait_for(id, |m| {
            m.topic.ends_with("lamp-ns/cmd/result")
                && m.json["id"] == id
                && m.json["status"] == "queued"
        })
        .await;
    }
    daemon.stop().await;

    // The network server reports the first downlink only once the gateway is back.
    let daemon = Daemon::start(&setup).await;
    let ack = serde_json::json!({
        "downlinkId": 8, "time": "2026-11-28T10:00:05Z",
        "deviceInfo": {"devEui": "0004a30b001c0532", "applicationId": APP},
        "queueItemId": ids[&vec![1u8, 30]], "fCntDown": 4, "gatewayId": "0016c001ff10d3f6"
    });
    let mut sent = None;
    for _ in 0..50 {
        ns.publish(
            format!("application/{APP}/device/0004a30b001c0532/event/txack"),
            rumqttc::QoS::AtLeastOnce,
            false,
            ack.to_string().into_bytes(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        rec.drain();
        sent = rec
            .seen
            .iter()
            .find(|m| m.topic.ends_with("lamp-ns/cmd/result") && m.json["status"] == "sent")
            .cloned();
        if sent.is_some() {
            break;
        }
    }
    let sent = sent.expect("sent after the restart");
    assert_eq!(sent.json["id"], "c-late");
    assert_eq!(sent.json["points"]["dim_level"], 30);
    let expired = rec
        .wait_for("expired", |m| {
            m.topic.ends_with("lamp-ns/cmd/result") && m.json["status"] == "expired"
        })
        .await;
    assert_eq!(expired.json["id"], "c-lost");
    assert!(
        !rec.seen
            .iter()
            .any(|m| m.json["id"] == "c-lost" && m.json["status"] == "sent")
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chirpstack_uplink_over_mutual_tls_becomes_a_published_event() {
    // The network server's broker takes TLS clients only with a certificate of our CA;
    // the gateway's own [mqtt] and the stand-in for ChirpStack use the plain listener.
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let broker = tls_broker(pki.path(), true).await;
    let d = pki.path().display();
    let lora = config_with(&format!(
        "url = \"mqtts://localhost:{}\", ca_file = \"{d}/ca.pem\", cert_file = \"{d}/client.pem\", key_file = \"{d}/client.key\"",
        broker.tls
    ));
    let setup = Setup::new(broker.plain, &lora);
    let mut rec = Recorder::start(broker.plain, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    let (ns, _task, _downs) = client(broker.plain).await;
    let t = uplink_until_telemetry(&ns, &mut rec).await;
    assert_eq!(t.json["points"]["dim_level"], 80);
    assert_eq!(t.json["points"]["rssi"], -57);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_server_certificate_from_another_ca_is_refused_and_no_uplink_is_taken() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let broker = tls_broker(pki.path(), false).await;
    let lora = config_with(&format!(
        "url = \"mqtts://localhost:{}\", ca_file = \"{}/other.pem\"",
        broker.tls,
        pki.path().display()
    ));
    let setup = Setup::new(broker.plain, &lora);
    let mut rec = Recorder::start(broker.plain, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    let (ns, _task, _downs) = client(broker.plain).await;
    // The gateway itself is up (its birth is out), yet uplinks published for a while
    // never reach it: the LoRa client cannot get past the TLS handshake.
    rec.wait_for("the gateway's status", |m| m.topic.ends_with("/status"))
        .await;
    for _ in 0..10 {
        publish_up(&ns).await;
    }
    rec.drain();
    assert!(
        !rec.seen
            .iter()
            .any(|m| m.topic.ends_with("lamp-ns/telemetry")),
        "an uplink crossed a TLS connection that should have been refused"
    );
    daemon.stop().await;
}
