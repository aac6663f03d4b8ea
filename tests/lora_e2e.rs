//! LoRa end to end through the same entry point as `polegate run`: a fake packet
//! forwarder on 127.0.0.1 speaks Semtech UDP to the daemon, a real mosquitto carries
//! the events. Frames come from lora-packet's vectors (tests/fixtures) where possible.
//! Proves: ABP uplink → telemetry with rssi/snr, duplicates from two gateways handled
//! once with the best SNR, garbage and replays rejected without effect, a command
//! queued then sent in RX1 (decrypted back) with `queued`/`sent` results, an OTAA join
//! answered in the join-accept window, and sessions kept across a restart.

use crate::common::*;
use polegate::southbound::lora::semtech;

fn config(lora_port: u16) -> String {
    format!(
        "[lora]\nlisten = \"127.0.0.1:{lora_port}\"\nnet_id = \"000013\"\n\n\
         [[device]]\nid = \"lamp-abp\"\nprofile = \"generic-lamp-lora\"\n\
         lora = {{ dev_eui = \"0004a30b001c0531\", activation = \"abp\", dev_addr = \"26011bda\", \
         nwk_s_key = \"000102030405060708090a0b0c0d0e0f\", app_s_key = \"f0e0d0c0b0a090807060504030201000\" }}\n\n\
         [[device]]\nid = \"lamp-otaa\"\nprofile = \"generic-lamp-lora\"\n\
         lora = {{ dev_eui = \"0004a30b001c0530\", activation = \"otaa\", join_eui = \"70b3d57ed0000001\", \
         app_key = \"2b7e151628aed2a6abf7158809cf4f3c\" }}\n"
    )
}

fn telemetry(m: &Msg, dev: &str) -> bool {
    m.topic == format!("polegate/cab-test/{dev}/telemetry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abp_uplink_heard_by_two_gateways_is_published_once_with_the_best_snr() {
    let broker = Mosquitto::start().await;
    let port = free_port();
    let setup = Setup::new(broker.port, &config(port));
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    let a = Forwarder::start(port, GW_A).await;
    let b = Forwarder::start(port, GW_B).await;

    // Garbage first: ignored, counted, nothing breaks.
    a.push.send(b"\x02\x00").await.unwrap();
    a.push
        .send(&[2, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, b'{', b'x'])
        .await
        .unwrap();
    let mut garbage = semtech::rxpk_of(&[0x40, 1, 2], 1, -90, 1.0);
    garbage.data = "!!!".into();
    a.push
        .send(&semtech::push_data(9, GW_A, &[garbage]))
        .await
        .unwrap();
    let mut ack = [0u8; 16];
    let n = a.push.recv(&mut ack).await.unwrap();
    assert_eq!(
        &ack[..n],
        &semtech::ack(2, 9, semtech::PUSH_ACK),
        "well-formed PUSH_DATA is acked"
    );

    let f = phy("uplink", 0);
    // Both copies inside the dedup window (sent before either ack is awaited).
    a.send_uplink(&f, 1000, -100, -3.5).await;
    b.send_uplink(&f, 2000, -80, 7.25).await;
    a.push_ack().await;
    b.push_ack().await;
    let state = rec
        .wait_for("online birth", |m| {
            m.topic == "polegate/cab-test/lamp-abp/state"
        })
        .await;
    assert_eq!(state.json["state"], "online");
    let t = rec
        .wait_for("telemetry", |m| telemetry(m, "lamp-abp"))
        .await;
    assert_eq!(t.json["points"]["rssi"], -80);
    assert_eq!(t.json["points"]["snr"], 7.25);

    // The same frame again (a replay) and a bad MIC: rejected, nothing published.
    a.uplink(&f, 3000, -60, 9.0).await;
    let mut bad = f.clone();
    *bad.last_mut().unwrap() ^= 0xff;
    a.uplink(&bad, 4000, -60, 9.0).await;
    // A fresh, valid frame (vector FCnt 2, confirmed) goes through and is acknowledged.
    a.uplink(&phy("uplink", 1), 5000, -70, 8.0).await;
    let (_, txpk) = a.downlink().await;
    assert!(txpk.ipol);
    assert_eq!(txpk.tmst, 5000 + 1_000_000);
    let down = txpk.phy().unwrap();
    assert_eq!(down[0], 0x60);
    assert_eq!(down[5] & 0x20, 0x20, "ACK bit set");
    rec.wait_for("second telemetry", |m| {
        telemetry(m, "lamp-abp") && m.json["points"]["rssi"] == -70
    })
    .await;
    let n = rec.seen.iter().filter(|m| telemetry(m, "lamp-abp")).count();
    assert_eq!(n, 2, "the replay and the bad MIC published nothing");
    let c = &daemon.handles.counters;
    use std::sync::atomic::Ordering::Relaxed;
    assert!(c.lora_malformed.load(Relaxed) >= 3);
    assert_eq!(c.lora_replay.load(Relaxed), 1);
    assert_eq!(c.lora_bad_mic.load(Relaxed), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_queued_then_sent_in_rx1_after_the_next_uplink() {
    let broker = Mosquitto::start().await;
    let port = free_port();
    let setup = Setup::new(broker.port, &config(port));
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    let a = Forwarder::start(port, GW_A).await;
    a.uplink(&phy("uplink", 0), 1000, -90, 5.0).await;
    rec.wait_for("online", |m| m.topic == "polegate/cab-test/lamp-abp/state")
        .await;

    publish(
        broker.port,
        "polegate/cab-test/lamp-abp/cmd",
        r#"{"id":"c-1","point":"dim_level","value":40}"#,
        false,
    )
    .await;
    let r = rec
        .wait_for("queued", |m| m.topic.ends_with("lamp-abp/cmd/result"))
        .await;
    assert_eq!(r.json["status"], "queued");
    assert_eq!(r.json["ok"], true);
    assert_eq!(r.json["id"], "c-1");

    a.uplink(&phy("uplink", 1), 777, -90, 5.0).await;
    let (token, txpk) = a.downlink().await;
    assert_eq!(txpk.tmst, 777 + 1_000_000);
    assert!(txpk.ipol);
    assert_eq!(txpk.freq, 868.1);
    // Decrypt it back as the device would: FCntDown 0, FPort 10, [0x01, 40].
    let down = txpk.phy().unwrap();
    let lorawan::parser::PhyPayload::Data(lorawan::parser::DataPayload::Encrypted(enc)) =
        lorawan::parser::parse(down).unwrap()
    else {
        panic!("not a data frame")
    };
    let nwk = lorawan::keys::AES128(hx("000102030405060708090a0b0c0d0e0f").try_into().unwrap());
    let app = lorawan::keys::AES128(hx("f0e0d0c0b0a090807060504030201000").try_into().unwrap());
    assert!(enc.validate_mic(&nwk, 0));
    let dec = enc.decrypt(Some(&nwk), Some(&app), 0).unwrap().to_inner();
    assert_eq!(&dec[8..dec.len() - 4], &[10, 1, 40]);

    a.pull
        .send(&semtech::tx_ack(token, GW_A, None))
        .await
        .unwrap();
    let r = rec
        .wait_for("sent", |m| {
            m.topic.ends_with("lamp-abp/cmd/result") && m.json["status"] == "sent"
        })
        .await;
    assert_eq!(r.json["ok"], true);
    assert_eq!(r.json["points"]["dim_level"], 40);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otaa_join_is_answered_in_the_join_window_and_survives_a_restart() {
    let broker = Mosquitto::start().await;
    let port = free_port();
    let setup = Setup::new(broker.port, &config(port));
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    let a = Forwarder::start(port, GW_A).await;
    a.uplink(&phy("join_request", 0), 10, -90, 5.0).await;
    let (_, txpk) = a.downlink().await;
    assert_eq!(txpk.tmst, 10 + 5_000_000);
    assert!(txpk.ipol);
    let accept = txpk.phy().unwrap();
    assert_eq!(accept.len(), 17);
    let key = lorawan::keys::AppKey::from(
        <[u8; 16]>::try_from(hx("2b7e151628aed2a6abf7158809cf4f3c")).unwrap(),
    );
    let dec = lorawan::parser::EncryptedJoinAcceptPayload::new_with_factory(
        accept,
        lorawan::default_crypto::DefaultFactory,
    )
    .unwrap()
    .decrypt(&key);
    assert!(dec.validate_mic(&key));
    let dev_nonce = hx("2b1a");
    let dn = lorawan::parser::DevNonce::new(&dev_nonce[..]).unwrap();
    let nwk = dec.derive_newskey(&dn, &key);
    let app = dec.derive_appskey(&dn, &key);
    let addr: [u8; 4] = dec.dev_addr().as_ref().try_into().unwrap();
    let up = |fcnt: u32, payload: &[u8]| {
        let mut c = lorawan::creator::DataPayloadCreator::new();
        c.set_uplink(true)
            .set_confirmed(false)
            .set_dev_addr(&addr)
            .set_fcnt(fcnt)
            .set_f_port(2);
        c.build(payload, &[], &nwk, &app).unwrap().to_vec()
    };
    let lamp = [0b001, 80, 0x02, 0x1c, 0, 0, 0x30, 0x39, 21];
    a.uplink(&up(0, &lamp), 20, -90, 5.0).await;
    let t = rec
        .wait_for("otaa telemetry", |m| telemetry(m, "lamp-otaa"))
        .await;
    assert_eq!(t.json["points"]["dim_level"], 80);
    assert_eq!(t.json["points"]["on"], true);
    assert_eq!(t.json["points"]["power"], 54.0);
    assert_eq!(t.json["points"]["temperature"], 21);
    daemon.stop().await;

    // Restart: the session and its counter are still there.
    let daemon = Daemon::start(&setup).await;
    let a = Forwarder::start(port, GW_A).await;
    a.uplink(&up(0, &lamp), 30, -90, 5.0).await; // replay of FCnt 0
    let mut lamp2 = lamp;
    lamp2[1] = 50;
    a.uplink(&up(1, &lamp2), 40, -91, 5.0).await;
    rec.wait_for("telemetry after restart", |m| {
        telemetry(m, "lamp-otaa") && m.json["points"]["dim_level"] == 50
    })
    .await;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(daemon.handles.counters.lora_replay.load(Relaxed), 1);
    daemon.stop().await;
}

/// A LoRa lamp profile that declares neither `rssi` nor `snr`; its script reports a
/// dimming level, or a text for FPort 3 (a value of the wrong type).
fn bare_profile(setup: &Setup) {
    setup.add_profile(
        "bare-lamp-lora.toml",
        "name = \"bare-lamp-lora\"\nkind = \"lamp\"\nprotocol = \"lora\"\n\
         [lora]\nscript = \"bare-lamp-lora.rhai\"\n\
         [[point]]\nname = \"dim_level\"\nunit = \"%\"\ntype = \"u16\"\n",
    );
    setup.add_profile(
        "bare-lamp-lora.rhai",
        "fn decode_uplink(fport, bytes) { if fport == 3 { #{ dim_level: \"eighty\" } } else { #{ dim_level: 80 } } }\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lora_profile_without_radio_points_still_gets_rssi_and_snr_in_birth_and_telemetry() {
    let broker = Mosquitto::start().await;
    let port = free_port();
    let cfg = config(port).replacen("generic-lamp-lora", "bare-lamp-lora", 1);
    let setup = Setup::new(broker.port, &cfg);
    bare_profile(&setup);
    let mut rec = Recorder::start(broker.port, "polegate/#").await;
    let daemon = Daemon::start(&setup).await;
    let a = Forwarder::start(port, GW_A).await;
    a.uplink(&phy("uplink", 0), 1000, -97, -2.5).await;
    let birth = rec
        .wait_for("birth", |m| m.topic == "polegate/cab-test/lamp-abp/state")
        .await;
    assert_eq!(birth.json["profile"], "bare-lamp-lora");
    assert_eq!(birth.json["points"]["rssi"]["unit"], "dBm");
    assert_eq!(birth.json["points"]["snr"]["unit"], "dB");
    let t = rec
        .wait_for("telemetry", |m| telemetry(m, "lamp-abp"))
        .await;
    assert_eq!(t.json["points"]["dim_level"], 80);
    assert_eq!(t.json["points"]["rssi"], -97);
    assert_eq!(t.json["points"]["snr"], -2.5);
    daemon.stop().await;
}
