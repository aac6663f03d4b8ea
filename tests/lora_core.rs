//! The LoRa driver's state machine with injected time, no sockets: liveness (online from
//! the first valid uplink, offline after 3 × `uplink_interval_s`), command expiry, a
//! command failed when both receive windows are missed or its TX_ACK is 10 s late, and
//! hostile radio input (SPEC §7): random datagrams and random or mutated PHYPayloads
//! never panic — not even inside the `lorawan` crate, whose panics `catch_unwind` would
//! otherwise hide.

use crate::common::{device_info, profile};
use polegate::config::lora::{Activation, Key, LoraCfg, LoraDeviceCfg, LoraSource};
use polegate::ops::counters::Counters;
use polegate::southbound::lora::driver::{Core, LoraDevice, Out};
use polegate::southbound::lora::netserver::{Device, Rejected, Server};
use polegate::southbound::lora::semtech;
use polegate::southbound::lora::session::Store;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NWK: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const APP: [u8; 16] = [
    0xf0, 0xe0, 0xd0, 0xc0, 0xb0, 0xa0, 0x90, 0x80, 0x70, 0x60, 0x50, 0x40, 0x30, 0x20, 0x10, 0,
];
/// lora-packet's ABP uplink (FCnt 1, FPort 10).
const VALID: [u8; 15] = [
    0x40, 0xda, 0x1b, 0x01, 0x26, 0x00, 0x01, 0x00, 0x0a, 0xab, 0xa1, 0xad, 0x2c, 0x49, 0x63,
];

fn activations() -> Vec<Activation> {
    vec![
        Activation::Abp {
            dev_addr: 0x2601_1bda,
            nwk_s_key: Key(NWK),
            app_s_key: Key(APP),
        },
        Activation::Otaa {
            join_eui: [0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0, 0, 1],
            app_key: Key(NWK),
        },
    ]
}

fn server() -> Server {
    let devices = activations()
        .into_iter()
        .enumerate()
        .map(|(i, activation)| Device {
            id: format!("d{i}"),
            dev_eui: [0, 4, 0xa3, 0x0b, 0, 0x1c, 5, i as u8],
            activation,
        })
        .collect();
    Server::new(devices, [0, 0, 0x13], (0x2600_0000, 7), &Store::memory())
}

fn core() -> Core {
    let profile = profile("generic-lamp-lora");
    let engine = polegate::script::Engine::new();
    let codec = polegate::southbound::lora::script::LoraCodec::new(&engine, &profile);
    let devices = activations()
        .into_iter()
        .enumerate()
        .map(|(i, activation)| LoraDevice {
            info: device_info(&format!("d{i}"), "generic-lamp-lora"),
            cfg: LoraDeviceCfg {
                dev_eui: [0, 4, 0xa3, 0x0b, 0, 0x1c, 5, i as u8],
                activation,
                offline_after_s: None,
            },
            codec: codec.clone(),
        })
        .collect();
    let cfg = LoraCfg {
        source: LoraSource::SemtechUdp,
        listen: "127.0.0.1:0".parse().unwrap(),
        region: "EU868".into(),
        net_id: [0, 0, 0x13],
        dev_addr_prefix: (0x2600_0000, 7),
        gateway_euis: None,
    };
    Core::new(
        &cfg,
        devices,
        Store::memory(),
        None,
        Arc::new(Counters::default()),
        Instant::now(),
    )
}

fn no_panic(r: &Result<polegate::southbound::lora::netserver::Accepted, Rejected>) -> bool {
    !matches!(r, Err(Rejected::Malformed(m)) if m.contains("panic"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(800))]

    #[test]
    fn random_phy_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut s = server();
        prop_assert!(no_panic(&s.uplink(&bytes)));
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        pos in proptest::collection::vec((0usize..15, any::<u8>()), 1..6),
        extra in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        let mut f = VALID.to_vec();
        for (p, b) in pos {
            f[p] = b;
        }
        f.extend_from_slice(&extra);
        let mut s = server();
        prop_assert!(no_panic(&s.uplink(&f)));
        // FOpts claiming MAC commands with garbage bytes (the 0.9 parser's weak spot).
        let mut g = VALID.to_vec();
        g[5] = 0x0f;
        g.extend_from_slice(&extra);
        prop_assert!(no_panic(&s.uplink(&g)));
    }

    #[test]
    fn random_datagrams_never_panic_the_driver(
        d in proptest::collection::vec(any::<u8>(), 0..96),
        phy in proptest::collection::vec(any::<u8>(), 1..40),
    ) {
        let mut c = core();
        let t0 = Instant::now();
        let from = "127.0.0.1:9".parse().unwrap();
        let mut out = Out::default();
        c.datagram(t0, from, &d, &mut out);
        let rx = semtech::rxpk_of(&phy, 1, -90, 3.0);
        c.datagram(t0, from, &semtech::push_data(1, [1; 8], &[rx]), &mut out);
        c.tick(t0 + Duration::from_secs(1), 0, &mut out);
    }
}

fn states(out: &Out) -> Vec<(String, bool)> {
    out.inputs
        .iter()
        .filter_map(|i| match i {
            polegate::pipeline::Input::State { device, online, .. } => {
                Some((device.id.clone(), *online))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_lora_device_is_online_from_its_first_uplink_and_offline_after_three_intervals() {
    let mut c = core();
    let t0 = Instant::now();
    let from = "127.0.0.1:9".parse().unwrap();
    let mut out = Out::default();
    let rx = semtech::rxpk_of(&VALID, 1, -90, 3.0);
    c.datagram(t0, from, &semtech::push_data(1, [1; 8], &[rx]), &mut out);
    c.tick(t0 + Duration::from_millis(50), 0, &mut out);
    assert!(states(&out).is_empty(), "held for the dedup window");
    c.tick(t0 + Duration::from_millis(250), 0, &mut out);
    assert_eq!(states(&out), [("d0".to_string(), true)]);
    let mut out = Out::default();
    c.tick(t0 + Duration::from_secs(1799), 0, &mut out);
    assert!(states(&out).is_empty());
    c.tick(t0 + Duration::from_secs(1801), 0, &mut out);
    assert_eq!(states(&out), [("d0".to_string(), false)]);
}

#[test]
fn a_queued_command_expires_when_no_uplink_comes_in_time() {
    let mut c = core();
    queue_dim(&mut c, "c-9", 1_000, Some(5_000));
    let mut out = Out::default();
    c.tick(Instant::now(), 4_999, &mut out);
    assert!(out.inputs.is_empty());
    c.tick(Instant::now(), 5_000, &mut out);
    let [polegate::pipeline::Input::CmdResult(r)] = &out.inputs[..] else {
        panic!("one result")
    };
    assert_eq!(
        (r.ok, r.status.as_deref(), r.id.as_deref()),
        (false, Some("expired"), Some("c-9"))
    );
    assert!(c.server.states[0].pending.is_empty());
}

/// lora-packet's ABP confirmed uplink (FCnt 2): needs an ACK downlink.
const CONFIRMED: [u8; 17] = [
    0x80, 0xda, 0x1b, 0x01, 0x26, 0x00, 0x02, 0x00, 0x0a, 0xc5, 0x30, 0x55, 0x45, 0xd8, 0xd4, 0xd2,
    0x51,
];

fn txpk_of(out: &Out) -> semtech::Txpk {
    let (_, d) = out
        .datagrams
        .iter()
        .find(|(_, d)| d[3] == semtech::PULL_RESP)
        .expect("a PULL_RESP");
    let v: serde_json::Value = serde_json::from_slice(&d[4..]).unwrap();
    serde_json::from_value(v["txpk"].clone()).unwrap()
}

#[test]
fn a_downlink_goes_in_rx1_when_there_is_time_and_in_rx2_otherwise() {
    let gw = "127.0.0.1:7000".parse().unwrap();
    for (late_ms, tmst, freq, datr) in [
        (200u64, 1_000_000u32, 868.1, "SF7BW125"),
        (900, 2_000_000, 869.525, "SF12BW125"),
    ] {
        let mut c = core();
        let t0 = Instant::now();
        let mut out = Out::default();
        c.datagram(t0, gw, &semtech::pull_data(1, [1; 8]), &mut out);
        let rx = semtech::rxpk_of(&CONFIRMED, 0, -90, 3.0);
        c.datagram(t0, gw, &semtech::push_data(2, [1; 8], &[rx]), &mut out);
        let mut out = Out::default();
        c.tick(t0 + Duration::from_millis(late_ms), 0, &mut out);
        let t = txpk_of(&out);
        assert_eq!((t.tmst, t.freq, t.datr.as_str()), (tmst, freq, datr));
        assert!(t.ipol && !t.imme);
        // An ACK: FCtrl.ACK set, FCntDown 0, no FPort.
        let phy = t.phy().unwrap();
        assert_eq!((phy[0], phy[5] & 0x20, phy.len()), (0x60, 0x20, 12));
        assert_eq!(c.server.states[0].session.as_ref().unwrap().fcnt_down, 1);
    }
}

#[test]
fn without_a_pull_data_from_the_gateway_no_downlink_is_sent() {
    let mut c = core();
    let t0 = Instant::now();
    let mut out = Out::default();
    let rx = semtech::rxpk_of(&CONFIRMED, 0, -90, 3.0);
    c.datagram(
        t0,
        "127.0.0.1:7001".parse().unwrap(),
        &semtech::push_data(2, [1; 8], &[rx]),
        &mut out,
    );
    c.tick(t0 + Duration::from_millis(250), 0, &mut out);
    assert!(
        out.datagrams
            .iter()
            .all(|(_, d)| d[3] != semtech::PULL_RESP)
    );
}

/// Queues a command on d0 at wall-clock `now_ms`, expiring at `expires_ms` (None: in
/// an hour); it must be answered `queued`.
fn queue_dim(c: &mut Core, id: &str, now_ms: u64, expires_ms: Option<u64>) {
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let (i, _) = c.devices[0].info.profile.point("dim_level").unwrap();
    let mut out = Out::default();
    c.write(
        polegate::model::command::WriteRequest {
            device: 0,
            writes: vec![(i, polegate::model::Value::Int(30))],
            id: Some(id.into()),
            expires_ms,
            reply: tx,
        },
        now_ms,
        &mut out,
    );
    assert_eq!(out.replies[0].1.error, None, "queued");
}

/// A core whose gateway sent PULL_DATA, with command `id` queued on d0 and d0's next
/// uplink heard at the returned instant (not yet handled).
fn heard_with_command(id: &str) -> (Core, Instant) {
    let mut c = core();
    let gw = "127.0.0.1:7002".parse().unwrap();
    let t0 = Instant::now();
    let mut out = Out::default();
    c.datagram(t0, gw, &semtech::pull_data(1, [1; 8]), &mut out);
    queue_dim(&mut c, id, 0, None);
    let rx = semtech::rxpk_of(&VALID, 0, -90, 3.0);
    c.datagram(t0, gw, &semtech::push_data(2, [1; 8], &[rx]), &mut out);
    (c, t0)
}

fn results(out: &Out) -> Vec<(Option<String>, bool, String, String)> {
    out.inputs
        .iter()
        .filter_map(|i| match i {
            polegate::pipeline::Input::CmdResult(r) => Some((
                r.id.clone(),
                r.ok,
                r.status.clone().unwrap_or_default(),
                r.error
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn a_command_whose_uplink_is_handled_after_both_receive_windows_fails_with_that_reason() {
    let (mut c, t0) = heard_with_command("c-late");
    // The task stalled: the frame is handled 1.8 s after it was heard.
    let mut out = Out::default();
    c.tick(t0 + Duration::from_millis(1800), 100, &mut out);
    let r = results(&out);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].1, r[0].2.as_str()), (false, "failed"));
    assert!(r[0].3.contains("both receive windows missed"), "{}", r[0].3);
    assert!(
        out.datagrams
            .iter()
            .all(|(_, d)| d[3] != semtech::PULL_RESP)
    );
    assert!(c.server.states[0].pending.is_empty());
}

#[test]
fn a_downlink_fails_when_its_tx_ack_has_not_come_after_ten_seconds() {
    let (mut c, t0) = heard_with_command("c-quiet");
    let mut out = Out::default();
    c.tick(t0 + Duration::from_millis(250), 1_000, &mut out);
    txpk_of(&out);
    let mut out = Out::default();
    c.tick(t0 + Duration::from_secs(10), 10_999, &mut out);
    assert!(results(&out).is_empty(), "still waiting for the TX_ACK");
    c.tick(t0 + Duration::from_secs(11), 11_000, &mut out);
    let r = results(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].0.as_deref(), r[0].1, r[0].2.as_str()),
        (Some("c-quiet"), false, "failed")
    );
    assert!(r[0].3.contains("no TX_ACK") && r[0].3.contains("10 s"));
    assert!(c.server.states[0].pending.is_empty());
}
