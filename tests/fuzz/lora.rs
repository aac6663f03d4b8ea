//! LoRa input: Semtech UDP datagrams through the driver, LoRaWAN PHYPayloads of a known
//! ABP session (valid MICs, so frames reach decryption, MAC commands and the shipped
//! decoder script, then mutated), and ChirpStack `event/up` JSON.

use super::support::{self, Op};
use polegate::config::lora::{Activation, Key, LoraCfg, LoraDeviceCfg, LoraSource};
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, Input};
use polegate::southbound::lora::chirpstack;
use polegate::southbound::lora::driver::{Core, LoraDevice, Out};
use polegate::southbound::lora::netserver::{Accepted, Device, MAX_FCNT_GAP, Rejected, Server};
use polegate::southbound::lora::script::LoraCodec;
use polegate::southbound::lora::semtech::{self, Packet};
use polegate::southbound::lora::session::Store;
use proptest::prelude::*;
use serde_json::Value as Json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

fn hx(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The shared vectors (lora-packet, an independent implementation).
fn vectors() -> Vec<Json> {
    let v: Json =
        serde_json::from_str(include_str!("../fixtures/lorawan-vectors.json")).expect("vectors");
    v["vectors"].as_array().expect("vector list").clone()
}

/// Every PHYPayload in the vectors: donors for splicing, seeds for mutation.
fn vector_phys() -> Vec<Vec<u8>> {
    vectors()
        .iter()
        .filter_map(|v| v["output"]["phy_hex"].as_str().map(hx))
        .collect()
}

/// The vectors' ABP device (lora-packet's keys) and an OTAA device.
const DEV_ADDR: u32 = 0x2601_1bda;
fn key(s: &str) -> [u8; 16] {
    hx(s).try_into().expect("16 bytes")
}
fn nwk() -> [u8; 16] {
    key("000102030405060708090a0b0c0d0e0f")
}
fn app() -> [u8; 16] {
    key("f0e0d0c0b0a090807060504030201000")
}

fn activations() -> Vec<Activation> {
    vec![
        Activation::Abp {
            dev_addr: DEV_ADDR,
            nwk_s_key: Key(nwk()),
            app_s_key: Key(app()),
        },
        Activation::Otaa {
            join_eui: [0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0, 0, 1],
            app_key: Key(nwk()),
        },
    ]
}

fn dev_eui(i: usize) -> [u8; 8] {
    [0, 4, 0xa3, 0x0b, 0, 0x1c, 5, i as u8]
}

fn lora_cfg() -> LoraCfg {
    LoraCfg {
        source: LoraSource::SemtechUdp,
        listen: "127.0.0.1:0".parse().expect("addr"),
        region: "EU868".into(),
        net_id: [0, 0, 0x13],
        dev_addr_prefix: (0x2600_0000, 7),
        gateway_euis: None,
    }
}

/// The driver with both devices on the shipped lamp profile and its script.
fn core(counters: Arc<Counters>) -> Core {
    let profile = support::profile("generic-lamp-lora");
    let engine = polegate::script::Engine::new();
    let codec = LoraCodec::new(&engine, &profile);
    assert!(codec.is_some(), "the lamp profile has a script");
    let devices = activations()
        .into_iter()
        .enumerate()
        .map(|(i, activation)| LoraDevice {
            info: Arc::new(DeviceInfo::new(
                format!("d{i}"),
                profile.clone(),
                Default::default(),
                0,
            )),
            cfg: LoraDeviceCfg {
                dev_eui: dev_eui(i),
                activation,
                offline_after_s: None,
            },
            codec: codec.clone(),
        })
        .collect();
    Core::new(
        &lora_cfg(),
        devices,
        Store::memory(),
        None,
        counters,
        Instant::now(),
    )
}

/// The network-server logic alone, with the same devices: the oracle for the driver.
fn shadow() -> Server {
    let devices = activations()
        .into_iter()
        .enumerate()
        .map(|(i, activation)| Device {
            id: format!("d{i}"),
            dev_eui: dev_eui(i),
            activation,
        })
        .collect();
    let c = lora_cfg();
    Server::new(devices, c.net_id, c.dev_addr_prefix, &Store::memory())
}

/// A data uplink of the ABP device with a valid MIC (the creator takes no application
/// bytes on FPort 0: those frames go without).
fn uplink(fcnt: u32, fport: u8, confirmed: bool, payload: &[u8]) -> Vec<u8> {
    let payload = if fport == 0 { &[][..] } else { payload };
    let mut c = lorawan::creator::DataPayloadCreator::new();
    let addr = DEV_ADDR.to_le_bytes();
    c.set_uplink(true)
        .set_confirmed(confirmed)
        .set_dev_addr(&addr)
        .set_fcnt(fcnt)
        .set_f_port(fport);
    let n = lorawan::keys::NewSKey::from(nwk());
    let a = lorawan::keys::AppSKey::from(app());
    c.build(payload, &[], &n, &a).expect("uplink").to_vec()
}

fn counter_of<'a>(c: &'a Counters, e: &Rejected) -> &'a std::sync::atomic::AtomicU64 {
    match e {
        Rejected::BadMic(_) | Rejected::JoinBadMic(_) => &c.lora_bad_mic,
        Rejected::Replay { .. } | Rejected::DevNonceReplay { .. } => &c.lora_replay,
        Rejected::UnknownDevAddr(_) | Rejected::UnknownDevEui(_) => &c.lora_unknown_device,
        _ => &c.lora_malformed,
    }
}

fn rejections(c: &Counters) -> u64 {
    [
        &c.lora_bad_mic,
        &c.lora_replay,
        &c.lora_unknown_device,
        &c.lora_malformed,
    ]
    .iter()
    .map(|a| a.load(Relaxed))
    .sum()
}

/// One uplink of a session: how far the counter moves, what it carries, how it is bent.
#[derive(Debug, Clone)]
struct Step {
    fcnt_step: u32,
    fport: u8,
    confirmed: bool,
    payload: Vec<u8>,
    ops: Vec<Op>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![4 => 1u32..3, 1 => Just(0u32), 1 => 3u32..70_000],
        prop_oneof![3 => Just(2u8), 1 => Just(0u8), 1 => any::<u8>()],
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..24),
        prop_oneof![2 => Just(Vec::new()), 1 => support::ops()],
    )
        .prop_map(|(fcnt_step, fport, confirmed, payload, ops)| Step {
            fcnt_step,
            fport,
            confirmed,
            payload,
            ops,
        })
}

const GW: [u8; 8] = [0xaa, 1, 2, 3, 4, 5, 6, 7];

proptest! {
    #![proptest_config(support::config())]

    #[test]
    fn a_mutated_semtech_datagram_is_acknowledged_or_counted_as_malformed(
        seed in 0usize..4,
        phy in proptest::collection::vec(any::<u8>(), 1..40),
        ops in support::ops(),
        random in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let rx = semtech::rxpk_of(&phy, 7, -90, 3.5);
        let valid = [
            semtech::push_data(1, GW, &[rx.clone(), rx]),
            semtech::pull_data(2, GW),
            semtech::tx_ack(3, GW, Some("TOO_LATE")),
            semtech::tx_ack(4, GW, None),
        ];
        let donors: Vec<&[u8]> = valid.iter().map(Vec::as_slice).chain([random.as_slice()]).collect();
        let counters = Arc::new(Counters::default());
        let mut c = core(counters.clone());
        let from: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        let t0 = Instant::now();
        for d in [support::mutate(&valid[seed], &ops, &donors), random.clone()] {
            let before = counters.lora_malformed.load(Relaxed);
            let mut out = Out::default();
            c.datagram(t0, from, &d, &mut out);
            let counted = counters.lora_malformed.load(Relaxed) - before;
            match semtech::parse(&d) {
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    prop_assert_eq!(counted, 1, "{}", e);
                    prop_assert!(out.datagrams.is_empty());
                }
                Ok(Packet::PushData { rxpk, .. }) => {
                    // One PUSH_ACK; each rxpk heard or counted (bad base64, too long).
                    prop_assert_eq!(out.datagrams.len(), 1);
                    prop_assert_eq!(out.datagrams[0].1[3], semtech::PUSH_ACK);
                    prop_assert!(counted <= rxpk.len() as u64);
                    prop_assert!(rxpk.len() <= d.len() / 8, "{} rxpk from {} bytes", rxpk.len(), d.len());
                }
                Ok(Packet::PullData { .. }) => {
                    prop_assert_eq!(&out.datagrams[0].1[..], &semtech::ack(d[0], u16::from_be_bytes([d[1], d[2]]), semtech::PULL_ACK)[..]);
                }
                Ok(Packet::TxAck { .. }) => prop_assert!(out.datagrams.is_empty()),
            }
            let mut out = Out::default();
            c.tick(t0 + Duration::from_millis(250), 0, &mut out);
            // Made-up frames never reach a device.
            let reached = out.inputs.iter().any(|i| matches!(i, Input::Reading { .. }));
            prop_assert!(!reached, "a made-up frame reached a device");
        }
    }

    #[test]
    fn uplinks_of_a_known_session_are_accepted_into_one_reading_or_counted_once(
        steps in proptest::collection::vec(step(), 1..12),
    ) {
        let counters = Arc::new(Counters::default());
        let mut c = core(counters.clone());
        let mut oracle = shadow();
        let donors = vector_phys();
        let donors: Vec<&[u8]> = donors.iter().map(Vec::as_slice).collect();
        let from: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        let t0 = Instant::now();
        let mut out = Out::default();
        c.datagram(t0, from, &semtech::pull_data(1, GW), &mut out);
        let mut fcnt = 0u32;
        let mut last: Option<u32> = None;
        for (n, s) in steps.iter().enumerate() {
            fcnt = fcnt.wrapping_add(s.fcnt_step);
            let valid = uplink(fcnt, s.fport, s.confirmed, &s.payload);
            let phy = support::mutate(&valid, &s.ops, &donors);
            let now = t0 + Duration::from_secs(n as u64 + 1);
            let mut out = Out::default();
            let rx = semtech::rxpk_of(&phy, 1_000 * n as u32, -80, 5.0);
            let before = rejections(&counters);
            c.datagram(now, from, &semtech::push_data(n as u16, GW, &[rx]), &mut out);
            c.tick(now + Duration::from_millis(250), 0, &mut out);
            let readings: Vec<_> = out.inputs.iter().filter_map(|i| match i {
                Input::Reading { values, .. } => Some(values.len()),
                _ => None,
            }).collect();
            let expected = if phy.len() > semtech::MAX_PHY_LEN || phy.is_empty() {
                Err(Rejected::Malformed("size"))
            } else {
                oracle.uplink(&phy)
            };
            if let Err(Rejected::Malformed(m)) = &expected {
                prop_assert!(!m.contains("panic"), "{}", m);
            }
            let mut accepted = None;
            match expected {
                Ok(Accepted::Data { fcnt: got, .. }) => {
                    accepted = Some(got);
                    prop_assert_eq!(readings.len(), 1, "{:?}", s);
                    prop_assert!(readings[0] <= c.devices[0].info.profile.points.len());
                    prop_assert_eq!(rejections(&counters), before);
                }
                Ok(Accepted::Join { .. }) => prop_assert!(readings.is_empty()),
                Err(e) => {
                    prop_assert!(readings.is_empty(), "{e}");
                    let counted = rejections(&counters) - before;
                    prop_assert_eq!(counted, 1, "{} counted {}", e, counted);
                    prop_assert!(counter_of(&counters, &e).load(Relaxed) >= 1);
                }
            }
            // An unbent frame with a fresh counter the 16-bit wire value can stand for
            // is always accepted.
            let fresh = match last {
                None => fcnt < 0x1_0000,
                Some(l) => fcnt > l && fcnt - l <= MAX_FCNT_GAP,
            };
            if s.ops.is_empty() && fresh {
                prop_assert_eq!(readings.len(), 1, "FCnt {} after {:?}", fcnt, last);
            }
            last = accepted.or(last);
        }
    }

    #[test]
    fn a_mutated_chirpstack_uplink_parses_within_its_size_or_is_a_typed_error(
        fport in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 0..32),
        ops in support::ops(),
        same_eui in any::<bool>(),
    ) {
        let topic_eui = "0004a30b001c0500";
        let body_eui = if same_eui { topic_eui } else { "0004A30B001C0501" };
        let valid = serde_json::json!({
            "deviceInfo": {"devEui": body_eui, "deviceName": "lamp"},
            "fPort": fport,
            "data": semtech::b64(&data),
            "rxInfo": [{"rssi": -80, "snr": 7.5}, {"rssi": -95, "snr": -2.0}],
        }).to_string();
        let topic = format!("application/app-1/device/{topic_eui}/event/up");
        let donors = [r#"{"data":null}"#, r#""rxInfo":[{"snr":1e308}]"#, "\u{0}\u{ffff}"];
        let payload = support::mutate_text(&valid, &ops, &donors);
        for t in [topic.as_str(), "application/x", ""] {
            match chirpstack::parse_up(t, payload.as_bytes()) {
                Ok(up) => {
                    prop_assert!(up.data.len() <= payload.len());
                    prop_assert_eq!(session_hex(&up.dev_eui), topic_eui);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
        if ops.is_empty() {
            let up = chirpstack::parse_up(&topic, valid.as_bytes());
            prop_assert_eq!(up.is_ok(), same_eui);
            if let Ok(up) = up {
                prop_assert_eq!((up.fport, up.data, up.snr), (Some(fport), data, Some(7.5)));
            }
        }
    }
}

fn session_hex(b: &[u8]) -> String {
    polegate::southbound::lora::session::hex(b)
}
