//! Hostile packet-forwarder input (SPEC §7, issue 12 item 5), with real UDP peers: a
//! flood of PULL_DATA with made-up gateway EUIs is refused once the map is full (counted,
//! the real gateway keeps its downlinks); with `[lora] gateway_euis` the datagrams of any
//! other gateway are dropped and counted; and the key is validated with a message naming
//! the bad entry. (TX_ACKs from another address: `lora_commands.rs`; expiry of silent
//! gateways, with an injected clock: `southbound::lora::gateways`.)

use crate::common::*;
use polegate::config::ConfigErrors;
use polegate::model::Value as V;
use polegate::southbound::lora::gateways::MAX_GATEWAYS;
use polegate::southbound::lora::semtech;
use std::sync::atomic::Ordering::Relaxed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_gateway_euis_is_refused_and_counted_and_the_real_gateway_still_sends() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = LoraRig::start(tmp.path(), 0, 60_000, None).await;
    let real = Forwarder::start(r.port, GW_A).await;
    let flood = Forwarder::silent(r.port, GW_B).await;
    const N: u64 = 400;
    let mut acks = 0;
    let mut b = [0u8; 64];
    for i in 0..N {
        let eui = (0xfeed_0000_0000_0000u64 + i).to_be_bytes();
        let before = r.counters.lora_gateway_refused.load(Relaxed);
        flood.pull.send(&semtech::pull_data(9, eui)).await.unwrap();
        // Lock-step: every PULL_DATA is answered or refused before the next is sent; a
        // refused one shows as the refusal counter moving.
        tokio::select! {
            res = flood.pull.recv(&mut b) => {
                res.unwrap();
                acks += 1;
            }
            _ = eventually("the PULL_DATA refused", || {
                r.counters.lora_gateway_refused.load(Relaxed) > before
            }) => {}
        }
    }
    assert_eq!(
        acks,
        MAX_GATEWAYS as u64 - 1,
        "the real gateway holds one place"
    );
    assert_eq!(
        r.counters.lora_gateway_refused.load(Relaxed),
        N - acks,
        "every refusal counted"
    );
    // The real gateway is still heard and still gets its downlinks.
    real.pull_data().await;
    real.uplink(&abp_uplink(1, 80), 1_000, -90, 5.0).await;
    assert_eq!(r.reading().await, V::Int(80));
    r.command("c-1", &[("dim_level", V::Int(40))], None).await;
    real.uplink(&abp_uplink(2, 80), 2_000, -90, 5.0).await;
    let (token, _) = real.downlink().await;
    real.tx_ack(token, None).await;
    assert_eq!(r.result().await.status.as_deref(), Some("sent"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_allow_list_the_datagrams_of_other_gateways_are_dropped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = LoraRig::start(tmp.path(), 0, 60_000, Some(vec![GW_A])).await;
    let listed = Forwarder::start(r.port, GW_A).await;
    let other = Forwarder::silent(r.port, GW_B).await;
    other.pull.send(&semtech::pull_data(1, GW_B)).await.unwrap();
    other.send_uplink(&abp_uplink(1, 70), 1_000, -80, 9.0).await;
    eventually("both datagrams refused", || {
        r.counters.lora_gateway_refused.load(Relaxed) == 2
    })
    .await;
    // The listed gateway's uplink is the first reading: the other one's was dropped.
    listed.uplink(&abp_uplink(2, 80), 2_000, -90, 5.0).await;
    assert_eq!(r.reading().await, V::Int(80));
    let mut b = [0u8; 64];
    assert!(other.pull.try_recv(&mut b).is_err(), "no PULL_ACK");
    assert!(other.push.try_recv(&mut b).is_err(), "no PUSH_ACK");
    r.stop().await;
}

fn config_errors(lora: &str) -> ConfigErrors {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("polegate.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\nid = \"cab-1\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\n\n[lora]\n{lora}\n"
        ),
    )
    .unwrap();
    match polegate::config::load_with_env(&path, &[]) {
        Ok(_) => panic!("{lora} was accepted"),
        Err(e) => e,
    }
}

#[test]
fn gateway_euis_are_parsed_and_each_bad_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("polegate.toml");
    std::fs::write(
        &path,
        "[gateway]\nid = \"cab-1\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1\"\n\n\
         [lora]\ngateway_euis = [\"AA555A0000000000\", \"aa01020304050607\"]\n",
    )
    .unwrap();
    let cfg = polegate::config::load_with_env(&path, &[]).expect("valid");
    assert_eq!(
        cfg.lora.unwrap().gateway_euis,
        Some(vec![[0xaa, 0x55, 0x5a, 0, 0, 0, 0, 0], GW_A])
    );

    let e = config_errors("gateway_euis = [\"AA555A0000000000\", \"AA555A00000000\", 42]");
    let got: Vec<(String, String)> =
        e.0.iter()
            .map(|e| (e.key.clone(), e.message.clone()))
            .collect();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[0].0, "lora.gateway_euis[1]");
    assert!(
        got[0]
            .1
            .contains("'AA555A00000000' is not 16 hex digits: it has 14"),
        "{}",
        got[0].1
    );
    assert_eq!(got[1].0, "lora.gateway_euis[2]");
    assert!(got[1].1.contains("42 is not a string"), "{}", got[1].1);

    let e = config_errors("gateway_euis = []");
    assert_eq!(e.0[0].key, "lora.gateway_euis");
    assert!(e.0[0].message.contains("is empty"), "{}", e.0[0].message);

    let e = config_errors(
        "source = \"chirpstack\"\ngateway_euis = [\"AA555A0000000000\"]\n\
         chirpstack = { url = \"mqtt://127.0.0.1:1883\", application_id = \"app\" }",
    );
    assert_eq!(e.0[0].key, "lora.gateway_euis");
    assert!(e.0[0].message.contains("semtech_udp"), "{}", e.0[0].message);
}
