//! LoRa devices behind an existing network server (`lora.source = "chirpstack"`).
//!
//! ChirpStack v4's MQTT application integration: uplinks arrive on
//! `application/{app}/device/{dev_eui}/event/up` (`data` base64, `fPort`, RSSI/SNR per
//! gateway in `rxInfo`), commands leave as `.../command/down` with our own queue-item
//! `id`, and `.../event/txack` carrying that `queueItemId` reports the transmission.
//! Decoding, liveness and results are the same as with the Semtech UDP source.
//! Downlinks waiting for their txack are persisted before they are published
//! (`ns_pending.rs`), so a restart between the two still reports `sent` or `expired`.

use super::driver::{DEFAULT_EXPIRES_MS, LoraDevice, json_value};
use super::ns_pending::{Pending, PendingDown};
use super::semtech::{b64, unb64};
use super::session::hex;
use crate::config::lora::ChirpstackCfg;
use crate::model::LinkState;
use crate::model::command::CmdResult;
use crate::model::command::{Refusal, WriteOutcome, WriteRequest};
use crate::model::{Value, now_ms};
use crate::ops::counters::Counters;
use crate::ops::failure_log::{FailureLog, LogAction};
use crate::ops::tls::client_config;
use crate::pipeline::Input;
use crate::southbound::Wiring;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Requests buffered towards the network server's broker.
pub const CLIENT_CAPACITY: usize = 64;
/// Pause before reconnecting to the network server's broker.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// What an `event/up` carries that we use.
#[derive(Debug, Clone, PartialEq)]
pub struct Up {
    pub dev_eui: [u8; 8],
    pub fport: Option<u8>,
    pub data: Vec<u8>,
    pub rssi: Option<i64>,
    pub snr: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUp {
    device_info: Option<RawDeviceInfo>,
    #[serde(default)]
    f_port: Option<u8>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    rx_info: Vec<RawRx>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDeviceInfo {
    dev_eui: String,
}

#[derive(Deserialize)]
struct RawRx {
    rssi: Option<i64>,
    snr: Option<f64>,
}

fn eui(s: &str) -> Option<[u8; 8]> {
    crate::config::lora::hex_bytes::<8>(&s.to_ascii_lowercase())
}

/// Why an `event/up` was ignored (counted as `lora_malformed`).
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("bad JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("topic without a DevEUI")]
    NoTopicEui,
    #[error("deviceInfo.devEui is not 16 hex digits")]
    BadDevEui,
    #[error("deviceInfo.devEui differs from the topic's")]
    OtherDevEui,
    #[error("data is not base64")]
    BadData,
}

/// Parses an `event/up` payload (the DevEUI is taken from the payload, checked against
/// the topic's).
pub fn parse_up(topic: &str, payload: &[u8]) -> Result<Up, UpError> {
    let raw: RawUp = serde_json::from_slice(payload).map_err(UpError::Json)?;
    let topic_eui = topic
        .split('/')
        .nth(3)
        .and_then(eui)
        .ok_or(UpError::NoTopicEui)?;
    let dev_eui = match raw.device_info {
        Some(d) => eui(&d.dev_eui).ok_or(UpError::BadDevEui)?,
        None => topic_eui,
    };
    if dev_eui != topic_eui {
        return Err(UpError::OtherDevEui);
    }
    let data = match raw.data {
        None => vec![],
        Some(d) => unb64(&d).ok_or(UpError::BadData)?,
    };
    let best = raw.rx_info.iter().max_by(|a, b| {
        (a.snr.unwrap_or(f64::MIN), a.rssi.unwrap_or(i64::MIN))
            .partial_cmp(&(b.snr.unwrap_or(f64::MIN), b.rssi.unwrap_or(i64::MIN)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(Up {
        dev_eui,
        fport: raw.f_port,
        data,
        rssi: best.and_then(|r| r.rssi),
        snr: best.and_then(|r| r.snr),
    })
}

/// The `command/down` payload.
pub fn down_json(id: &str, dev_eui: &[u8; 8], fport: u8, data: &[u8]) -> Vec<u8> {
    serde_json::json!({
        "id": id,
        "devEui": hex(dev_eui),
        "confirmed": false,
        "fPort": fport,
        "data": b64(data),
    })
    .to_string()
    .into_bytes()
}

/// The `queueItemId` of an `event/txack`.
pub fn parse_txack(payload: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("queueItemId")?.as_str().map(str::to_string)
}

fn uuid() -> String {
    let a = fastrand::u128(..);
    let a = (a & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Runs the integration until `cancel`; `pending` holds what a previous run left.
pub async fn run_chirpstack(
    cfg: ChirpstackCfg,
    devices: Vec<LoraDevice>,
    mut pending: Pending,
    w: Wiring,
) {
    let Wiring {
        mut inbox,
        out,
        counters,
        cancel,
        hb,
    } = w;
    let mut opts = MqttOptions::new(
        format!("polegate-lora-{:08x}", fastrand::u32(..)),
        cfg.broker.host.clone(),
        cfg.broker.port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = cfg.broker.credentials() {
        opts.set_credentials(user, password);
    }
    if cfg.broker.tls {
        let Some(tls) = tls_config(&cfg, &cancel).await else {
            return;
        };
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    let (client, mut el) = AsyncClient::new(opts, CLIENT_CAPACITY);
    let base = format!("application/{}/device", cfg.application_id);
    let by_eui: HashMap<[u8; 8], usize> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (d.cfg.dev_eui, i))
        .collect();
    let now = Instant::now();
    let mut last_uplink = vec![now; devices.len()];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut inbox_open = true;
    loop {
        if let Some(hb) = &hb {
            hb.beat();
        }
        let mut inputs = Vec::new();
        let before = pending.len();
        tokio::select! {
            _ = cancel.cancelled() => break,
            ev = el.poll() => match ev {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    tracing::info!(url = %cfg.broker.url, "connected to the LoRa network server");
                    for leaf in ["up", "txack"] {
                        let _ = client.try_subscribe(format!("{base}/+/event/{leaf}"), QoS::AtLeastOnce);
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let topic = p.topic.clone();
                    if topic.ends_with("/event/up") {
                        match parse_up(&topic, &p.payload) {
                            Ok(up) => if let Some(&i) = by_eui.get(&up.dev_eui) {
                                let d = &devices[i];
                                last_uplink[i] = Instant::now();
                                if d.info.link.set(LinkState::Online) {
                                    inputs.push(Input::State { device: d.info.clone(), online: true, reason: None });
                                }
                                inputs.push(reading(d, &up, &counters));
                            } else {
                                Counters::inc(&counters.lora_unknown_device);
                            },
                            Err(e) => {
                                Counters::inc(&counters.lora_malformed);
                                tracing::debug!(%topic, error = %e, "network server event ignored");
                            }
                        }
                    } else if topic.ends_with("/event/txack")
                        && let Some(q) = parse_txack(&p.payload)
                        && let Some((device, pd)) = pending.remove(&q)
                        && let Some(id) = pd.id.clone()
                        && !pending.has_command(device, &id)
                    {
                        inputs.push(Input::CmdResult(CmdResult {
                            device: devices[device].info.id.clone(),
                            id: Some(id),
                            ok: true,
                            points: pd.points.iter().map(|(n, v)| (n.clone(), json_value(v))).collect(),
                            error: None,
                            status: Some("sent".into()),
                            source: None,
                        }));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(url = %cfg.broker.url, error = %e, "LoRa network server connection lost");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                    }
                }
            },
            req = inbox.recv(), if inbox_open => match req {
                None => inbox_open = false,
                Some(req) => {
                    let outcome = queue_down(&client, &base, &devices, &req, &mut pending, &counters).await;
                    let _ = req.reply.send(outcome);
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                for (i, d) in devices.iter().enumerate() {
                    if d.info.link.is_online()
                        && now.saturating_duration_since(last_uplink[i]) >= d.offline_after()
                        && d.info.link.set(LinkState::Offline)
                    {
                        inputs.push(Input::State { device: d.info.clone(), online: false, reason: Some(format!("no uplink for {} s", d.offline_after().as_secs())) });
                    }
                }
                for (device, p) in pending.expire(now_ms()) {
                    if p.id.is_some() {
                        inputs.push(Input::CmdResult(CmdResult {
                            device: devices[device].info.id.clone(),
                            id: p.id,
                            ok: false,
                            points: vec![],
                            error: Some(Refusal::Expired("expired before the network server reported a transmission".into())),
                            status: Some("expired".into()),
                            source: None,
                        }));
                    }
                }
            }
        }
        // A result leaves only once the entry it ends is gone for good: a crash must not
        // bring it back to end a second time.
        if pending.len() != before {
            super::flush_state(pending.queue(), &counters).await;
        }
        for i in inputs {
            if out.send(i).await.is_err() {
                return;
            }
        }
    }
    let _ = client.try_disconnect();
}

/// The `mqtts://` client set-up, read off the async workers; retried every
/// `RECONNECT_DELAY` while a file is missing or bad (logged once, then summarized), so
/// certificates provisioned after start are picked up. None: cancelled.
async fn tls_config(
    cfg: &ChirpstackCfg,
    cancel: &CancellationToken,
) -> Option<Arc<rustls::ClientConfig>> {
    let mut log = FailureLog::default();
    loop {
        let c = cfg.clone();
        let made = tokio::task::spawn_blocking(move || client_config(c.tls_files()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match made {
            Ok(tls) => {
                if let LogAction::Recovered { count } = log.success() {
                    tracing::info!(url = %cfg.broker.url, failures = count, "LoRa network server TLS set up");
                }
                return Some(tls);
            }
            Err(e) => {
                if let Some(failures) = log.due(Instant::now()) {
                    tracing::error!(url = %cfg.broker.url, error = %e, failures, "LoRa network server TLS setup failed");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

fn reading(d: &LoraDevice, up: &Up, counters: &Counters) -> Input {
    let mut values = Vec::new();
    if let Some(c) = &d.codec {
        if let Some(p) = up.fport.filter(|p| *p > 0) {
            match c.decode(p, &up.data) {
                Ok(v) => values = v,
                Err(e) => {
                    Counters::inc(&counters.decode_error);
                    tracing::warn!(device_id = %d.info.id, error = %e, "LoRa uplink not decoded");
                }
            }
        }
        if let (Some(i), Some(r)) = (c.rssi, up.rssi) {
            values.push((i, Value::Int(r)));
        }
        if let (Some(i), Some(s)) = (c.snr, up.snr) {
            values.push((i, Value::Float(s)));
        }
    }
    Input::Reading {
        device: d.info.clone(),
        values,
        at_ms: now_ms(),
        force: vec![],
    }
}

async fn queue_down(
    client: &AsyncClient,
    base: &str,
    devices: &[LoraDevice],
    req: &WriteRequest,
    pending: &mut Pending,
    counters: &Counters,
) -> WriteOutcome {
    let fail = WriteOutcome::refused;
    let Some(d) = devices.get(req.device) else {
        return fail(Refusal::UnknownDevice);
    };
    let frames = match d.encode_writes(&req.writes) {
        Ok(f) => f.into_iter().map(|(_, _, frame)| frame),
        Err(e) => return fail(e),
    };
    let points: Vec<(String, serde_json::Value)> = req
        .writes
        .iter()
        .filter_map(|(i, v)| {
            d.info
                .profile
                .points
                .get(*i)
                .map(|p| (p.name.clone(), v.to_json()))
        })
        .collect();
    let expires_ms = req.expires_ms.unwrap_or(now_ms() + DEFAULT_EXPIRES_MS);
    let frames: Vec<(String, u8, Vec<u8>)> = frames
        .into_iter()
        .map(|(fport, bytes)| (uuid(), fport, bytes))
        .collect();
    // Persisted (and flushed) before anything is published: a txack may follow at once,
    // and a restart must still know what it acknowledges.
    let entries = frames
        .iter()
        .map(|(qid, _, _)| {
            let p = PendingDown {
                dev_eui: hex(&d.cfg.dev_eui),
                id: req.id.clone(),
                points: points.clone(),
                expires_ms,
            };
            (qid.clone(), req.device, p)
        })
        .collect();
    if let Err(e) = pending.add(entries) {
        tracing::error!(device_id = %d.info.id, error = %e, "LoRa downlink could not be persisted; not sent");
        return fail(Refusal::Failed("the command could not be persisted".into()));
    }
    super::flush_state(pending.queue(), counters).await;
    let topic = format!("{base}/{}/command/down", hex(&d.cfg.dev_eui));
    for (n, (qid, fport, bytes)) in frames.iter().enumerate() {
        let payload = down_json(qid, &d.cfg.dev_eui, *fport, bytes);
        if client
            .try_publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            .is_err()
        {
            // Frames already published get no `sent` after this `failed`.
            match &req.id {
                Some(id) => pending.remove_command(req.device, id),
                None => {
                    for (qid, _, _) in &frames[n..] {
                        pending.remove(qid);
                    }
                }
            }
            return fail(Refusal::Busy(
                "the network server connection is saturated; try again".into(),
            ));
        }
    }
    WriteOutcome {
        points: req.writes.clone(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    //! ChirpStack v4 event payloads in their recorded shape.
    use super::*;

    const UP: &str = r#"{"deduplicationId":"3ac7e3c4-4401-4b8d-9386-a5c902f9202d","time":"2026-11-28T10:00:00.000+00:00","deviceInfo":{"tenantId":"52f14cd4-c6f1-4fbd-8f87-4025e1d49242","tenantName":"City","applicationId":"17c82e96-be03-4f38-aef3-f83d48582d97","applicationName":"lamps","deviceProfileId":"14855bf7-d10d-4aee-b618-ebfcb64dc7ad","deviceProfileName":"LL-1","deviceName":"lamp-1","devEui":"0004a30b001c0532","tags":{}},"devAddr":"00189440","adr":true,"dr":5,"fCnt":10,"fPort":2,"confirmed":false,"data":"AVACHAAAMDkV","rxInfo":[{"gatewayId":"0016c001ff10d3f6","uplinkId":4217106255,"rssi":-57,"snr":10.0,"channel":1,"location":{},"context":"EFwMtA==","metadata":{"region_config_id":"eu868"},"crcStatus":"CRC_OK"},{"gatewayId":"0016c001ff10d3f7","uplinkId":1,"rssi":-40,"snr":4.5,"context":"AA==","crcStatus":"CRC_OK"}],"txInfo":{"frequency":868100000,"modulation":{"lora":{"bandwidth":125000,"spreadingFactor":7,"codeRate":"CR_4_5"}}}}"#;

    #[test]
    fn a_recorded_uplink_event_gives_payload_port_and_the_best_gateway() {
        let t = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0004a30b001c0532/event/up";
        let up = parse_up(t, UP.as_bytes()).unwrap();
        assert_eq!(up.dev_eui, [0, 4, 0xa3, 0x0b, 0, 0x1c, 5, 0x32]);
        assert_eq!(up.fport, Some(2));
        assert_eq!(up.data, vec![1, 0x50, 2, 0x1c, 0, 0, 0x30, 0x39, 0x15]);
        assert_eq!((up.rssi, up.snr), (Some(-57), Some(10.0)));
        let other = "application/x/device/0004a30b001c0533/event/up";
        assert!(parse_up(other, UP.as_bytes()).is_err());
        assert!(parse_up(t, b"{").is_err());
    }

    #[test]
    fn downlink_commands_and_txacks_use_the_v4_field_names() {
        let d: serde_json::Value = serde_json::from_slice(&down_json(
            "q-1",
            &[0, 4, 0xa3, 0x0b, 0, 0x1c, 5, 0x32],
            10,
            &[1, 40],
        ))
        .unwrap();
        assert_eq!(d["devEui"], "0004a30b001c0532");
        assert_eq!(d["fPort"], 10);
        assert_eq!(d["data"], "ASg=");
        assert_eq!(d["id"], "q-1");
        let ack = br#"{"downlinkId":1,"time":"2026-11-28T10:00:01Z","deviceInfo":{"devEui":"0004a30b001c0532"},"queueItemId":"q-1","fCntDown":3,"gatewayId":"0016c001ff10d3f6"}"#;
        assert_eq!(parse_txack(ack).as_deref(), Some("q-1"));
        assert_eq!(uuid().len(), 36);
    }
}
