//! The LoRa driver's state machine, sans-IO: datagrams and commands in, datagrams and
//! pipeline inputs out, time injected (`Instant` for windows, wall-clock ms for expiry).
//!
//! Invariants: a device's session, counters and pending downlinks are written to the
//! store before the uplink is published, a frame is sent or a command answered; the task
//! that owns the socket flushes them ([`Core::take_flush`], off the async workers) before
//! it sends any of a step's output ([`Out`]), so after a crash an accepted uplink's FCnt
//! is never accepted again, a JoinNonce or FCntDown never repeats and a `queued` command
//! is still there. Several copies of one frame (several gateways or antennas) are collected
//! for [`DEDUP_WINDOW`] and handled once, with the best SNR, then RSSI.

use super::gateways::{Gateways, Pulled, Refusal};
use super::netserver::{Accepted, Device, Rejected, Server};
use super::script::LoraCodec;
use super::semtech::{self, Packet, Rxpk};
use super::session::{Store, hex};
use crate::buffer::Queue;
use crate::config::lora::{LoraCfg, LoraDeviceCfg};
use crate::model::LinkState;
use crate::model::Value;
use crate::model::command::{Refusal as Cmd, WriteOutcome};
use crate::ops::counters::Counters;
use crate::ops::failure_log::FailureLog;
use crate::pipeline::{DeviceInfo, Input};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long copies of one frame are collected before it is handled.
/// How long a gateway has to confirm a PULL_RESP with its TX_ACK (SPEC §8).
pub const TXACK_TIMEOUT_MS: u64 = 10_000;
pub const DEDUP_WINDOW: Duration = Duration::from_millis(200);
/// EU868 RECEIVE_DELAY1 / JOIN_ACCEPT_DELAY1 (µs on the concentrator clock).
pub const RX1_DELAY_US: u32 = 1_000_000;
pub const JOIN_DELAY_US: u32 = 5_000_000;
/// EU868 RX2 defaults.
pub const RX2_FREQ_MHZ: f64 = 869.525;
pub const RX2_DATR: &str = "SF12BW125";
/// Transmit power, dBm (EU868 default max EIRP 16 dBm minus antenna gain margin).
pub const TX_POWER_DBM: i8 = 14;
/// Margin kept before a receive window for scheduling on the forwarder.
pub const TX_MARGIN: Duration = Duration::from_millis(300);
/// Default `offline_after_s` without a profile `uplink_interval_s` (SPEC §8).
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(3 * 3600);
/// Default lifetime of a queued LoRa command (SPEC §8).
pub const DEFAULT_EXPIRES_MS: u64 = 3_600_000;

/// A configured LoRa device.
#[derive(Debug, Clone)]
pub struct LoraDevice {
    pub info: Arc<DeviceInfo>,
    pub cfg: LoraDeviceCfg,
    pub codec: Option<LoraCodec>,
}

impl LoraDevice {
    pub fn offline_after(&self) -> Duration {
        match (
            self.cfg.offline_after_s,
            self.info.profile.uplink_interval_s,
        ) {
            (Some(s), _) => Duration::from_secs(s),
            (None, Some(i)) => Duration::from_secs(i.saturating_mul(3)),
            (None, None) => DEFAULT_OFFLINE_AFTER,
        }
    }

    /// A command's writes as downlink frames through the profile's `encode_downlink`:
    /// (point name, value, (fport, bytes)) in order, or why it cannot be sent. Both LoRa
    /// sources (semtech_udp, chirpstack) send what this gives.
    pub fn encode_writes(&self, writes: &[(usize, Value)]) -> Result<Vec<EncodedWrite>, Cmd> {
        let Some(codec) = &self.codec else {
            let e = "the device's profile has no LoRa script".to_string();
            return Err(Cmd::Unsupported(e));
        };
        let mut frames = Vec::with_capacity(writes.len());
        for (i, v) in writes {
            let Some(p) = self.info.profile.points.get(*i) else {
                return Err(Cmd::UnknownPoint(format!("#{i}")));
            };
            match codec.encode(&p.name, v) {
                Ok(f) => frames.push((p.name.clone(), v.clone(), f)),
                Err(e) => {
                    let e = format!("encode_downlink failed for '{}': {e}", p.name);
                    return Err(Cmd::DeviceError(e));
                }
            }
        }
        Ok(frames)
    }
}

/// One write of a command as a downlink: (point name, value, (fport, bytes)).
pub type EncodedWrite = (String, Value, (u8, Vec<u8>));

pub(super) struct Heard {
    pub(super) first: Instant,
    pub(super) gateway: [u8; 8],
    pub(super) rx: Rxpk,
}

/// Distinct frames collected at once within [`DEDUP_WINDOW`] (a flood of made-up rxpk
/// beyond it is refused and counted).
pub const MAX_HEARD: usize = 256;

/// Output of one step, sent once the step's state writes are flushed.
#[derive(Default)]
pub struct Out {
    pub datagrams: Vec<(SocketAddr, Vec<u8>)>,
    pub inputs: Vec<Input>,
    /// Answers to commands (`queued`, or why not).
    pub replies: Vec<(tokio::sync::oneshot::Sender<WriteOutcome>, WriteOutcome)>,
}

pub struct Core {
    pub server: Server,
    pub devices: Vec<LoraDevice>,
    pub(super) store: Store,
    pub(super) queue: Option<Queue>,
    pub(super) counters: Arc<Counters>,
    pub(super) gateways: Gateways,
    pub(super) heard: HashMap<Vec<u8>, Heard>,
    pub(super) last_uplink: Vec<Instant>,
    pub(super) logs: HashMap<&'static str, FailureLog>,
    pub(super) next_token: u16,
    pub(super) saved_join_nonce: u32,
    /// State written since the last [`Core::take_flush`].
    pub(super) unflushed: bool,
    /// How long a PULL_RESP waits for its TX_ACK ([`TXACK_TIMEOUT_MS`]).
    pub txack_timeout_ms: u64,
}

impl Core {
    pub fn new(
        cfg: &LoraCfg,
        devices: Vec<LoraDevice>,
        store: Store,
        queue: Option<Queue>,
        counters: Arc<Counters>,
        now: Instant,
    ) -> Core {
        let server = Server::new(
            devices
                .iter()
                .map(|d| Device {
                    id: d.info.id.clone(),
                    dev_eui: d.cfg.dev_eui,
                    activation: d.cfg.activation.clone(),
                })
                .collect(),
            cfg.net_id,
            cfg.dev_addr_prefix,
            &store,
        );
        let n = devices.len();
        let server_join_nonce = server.join_nonce;
        Core {
            server,
            devices,
            store,
            queue,
            counters,
            gateways: Gateways::new(cfg.gateway_euis.as_deref()),
            heard: HashMap::new(),
            last_uplink: vec![now; n],
            logs: HashMap::new(),
            next_token: fastrand::u16(..),
            saved_join_nonce: server_join_nonce,
            unflushed: false,
            txack_timeout_ms: TXACK_TIMEOUT_MS,
        }
    }

    /// The counters this driver counts into.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The queue to flush before this step's output is sent, when state was written.
    pub fn take_flush(&mut self) -> Option<Queue> {
        std::mem::take(&mut self.unflushed)
            .then(|| self.queue.clone())
            .flatten()
    }

    fn reject(&mut self, what: &'static str, detail: &str, now: Instant) {
        let c = match what {
            "bad_mic" => &self.counters.lora_bad_mic,
            "replay" => &self.counters.lora_replay,
            "unknown" => &self.counters.lora_unknown_device,
            _ => &self.counters.lora_malformed,
        };
        Counters::inc(c);
        if let Some(count) = self.logs.entry(what).or_default().due(now) {
            tracing::warn!(reason = what, count, "LoRa frame rejected: {detail}");
        }
    }

    /// Writes `device`'s state (and the JoinNonce) to the store; the socket task flushes
    /// it before this step's output goes out.
    pub(super) fn persist(&mut self, device: usize) -> bool {
        let dev_eui = self.devices[device].cfg.dev_eui;
        let mut ok = self
            .store
            .save(&dev_eui, &self.server.states[device])
            .is_ok();
        if self.server.join_nonce != self.saved_join_nonce {
            ok &= self.store.save_join_nonce(self.server.join_nonce).is_ok();
            self.saved_join_nonce = self.server.join_nonce;
        }
        self.unflushed = true;
        if !ok {
            Counters::inc(&self.counters.buffer_error);
            tracing::error!(device_id = %self.devices[device].info.id, "LoRa session could not be persisted; not acting on it");
        }
        ok
    }

    /// One datagram from a packet forwarder.
    pub fn datagram(&mut self, now: Instant, from: SocketAddr, d: &[u8], out: &mut Out) {
        let pkt = match semtech::parse(d) {
            Ok(p) => p,
            Err(e) => return self.reject("malformed", &format!("from {from}: {e}"), now),
        };
        match pkt {
            Packet::PushData {
                token,
                gateway,
                rxpk,
            } => {
                if !self.gateways.allowed(&gateway) {
                    let detail = format!(
                        "PUSH_DATA from gateway {} ({from}), not in lora.gateway_euis: dropped",
                        hex(&gateway)
                    );
                    return self.refuse_gateway("not_allowed", &detail, now);
                }
                out.datagrams
                    .push((from, semtech::ack(d[0], token, semtech::PUSH_ACK).to_vec()));
                for rx in rxpk {
                    if rx.stat == -1 {
                        continue;
                    }
                    let Some(phy) = semtech::rx_phy(&rx) else {
                        self.reject("malformed", "rxpk data is not base64", now);
                        continue;
                    };
                    let full = self.heard.len() >= MAX_HEARD;
                    match self.heard.get_mut(&phy) {
                        Some(h) => {
                            if (rx.lsnr, rx.rssi) > (h.rx.lsnr, h.rx.rssi) {
                                h.rx = rx;
                                h.gateway = gateway;
                            }
                        }
                        None if full => {
                            let detail = format!(
                                "more than {MAX_HEARD} frames at once; rxpk from gateway {} ({from}) dropped",
                                hex(&gateway)
                            );
                            self.refuse_gateway("heard_full", &detail, now);
                        }
                        None => {
                            self.heard.insert(
                                phy,
                                Heard {
                                    first: now,
                                    gateway,
                                    rx,
                                },
                            );
                        }
                    }
                }
            }
            Packet::PullData { token, gateway } => {
                match self.gateways.pull_data(gateway, from, now) {
                    Ok(Pulled::Same) => {}
                    Ok(Pulled::New) => {
                        tracing::info!(gateway = %hex(&gateway), %from, "LoRa gateway heard (PULL_DATA)");
                    }
                    Ok(Pulled::Moved(before)) => {
                        tracing::info!(gateway = %hex(&gateway), %from, %before, "LoRa gateway now pulls from another address");
                    }
                    Err(r) => {
                        let (what, why) = match r {
                            Refusal::NotAllowed => ("not_allowed", "not in lora.gateway_euis"),
                            Refusal::Full => ("gateways_full", "too many gateways known"),
                        };
                        let detail = format!(
                            "PULL_DATA from gateway {} ({from}), {why}: dropped",
                            hex(&gateway)
                        );
                        return self.refuse_gateway(what, &detail, now);
                    }
                }
                out.datagrams
                    .push((from, semtech::ack(d[0], token, semtech::PULL_ACK).to_vec()));
            }
            Packet::TxAck { token, error, .. } => self.tx_ack(now, from, token, error, out),
        }
    }

    /// Counts and logs (rate-limited per `what`) a datagram refused for its gateway.
    pub(super) fn refuse_gateway(&mut self, what: &'static str, detail: &str, now: Instant) {
        Counters::inc(&self.counters.lora_gateway_refused);
        if let Some(count) = self.logs.entry(what).or_default().due(now) {
            tracing::warn!(
                reason = what,
                count,
                "LoRa gateway datagram refused: {detail}"
            );
        }
    }

    /// Handles frames whose dedup window has passed, device liveness, and expiries.
    pub fn tick(&mut self, now: Instant, now_ms: u64, out: &mut Out) {
        let due: Vec<Vec<u8>> = self
            .heard
            .iter()
            .filter(|(_, h)| now.saturating_duration_since(h.first) >= DEDUP_WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        for phy in due {
            if let Some(h) = self.heard.remove(&phy) {
                self.frame(now, now_ms, &phy, h, out);
            }
        }
        for i in 0..self.devices.len() {
            if self.devices[i].info.link.is_online()
                && now.saturating_duration_since(self.last_uplink[i])
                    >= self.devices[i].offline_after()
            {
                self.set_online(i, false, out);
            }
        }
        for g in self.gateways.expire(now) {
            tracing::info!(gateway = %hex(&g), "LoRa gateway forgotten: no PULL_DATA for {} s", super::gateways::GATEWAY_EXPIRY.as_secs());
        }
        self.expire_downlinks(now_ms, out);
    }

    fn set_online(&mut self, i: usize, online: bool, out: &mut Out) {
        let info = &self.devices[i].info;
        info.link.set(if online {
            LinkState::Online
        } else {
            LinkState::Offline
        });
        let reason = (!online).then(|| {
            format!(
                "no uplink for {} s",
                self.devices[i].offline_after().as_secs()
            )
        });
        tracing::info!(device_id = %info.id, profile = %info.profile.name, online, "LoRa device {}", if online { "online" } else { "offline" });
        out.inputs.push(Input::State {
            device: info.clone(),
            online,
            reason,
        });
    }

    fn frame(&mut self, now: Instant, now_ms: u64, phy: &[u8], h: Heard, out: &mut Out) {
        let accepted = match self.server.uplink(phy) {
            Ok(a) => a,
            Err(e) => {
                let what = match &e {
                    Rejected::BadMic(_) | Rejected::JoinBadMic(_) => "bad_mic",
                    Rejected::Replay { .. } | Rejected::DevNonceReplay { .. } => "replay",
                    Rejected::UnknownDevAddr(_) | Rejected::UnknownDevEui(_) => "unknown",
                    _ => "malformed",
                };
                return self.reject(what, &e.to_string(), now);
            }
        };
        match accepted {
            Accepted::Join { device, accept } => {
                if !self.persist(device) {
                    return;
                }
                let id = self.devices[device].info.id.clone();
                match self.window(now, &h, JOIN_DELAY_US) {
                    Ok(w) => {
                        tracing::info!(device_id = %id, "LoRa join accepted");
                        let (_, d) = self.pull_resp(&w, &accept);
                        out.datagrams.push((w.addr(), d));
                    }
                    Err(reason) => {
                        tracing::warn!(device_id = %id, "LoRa join-accept not sent: {reason}")
                    }
                }
            }
            Accepted::Data {
                device,
                fport,
                payload,
                confirmed,
                fopts,
                ..
            } => {
                // Downlink chosen now so the persisted state already carries it.
                let down = self.data_downlink(now, now_ms, &h, device, confirmed, out);
                if !self.persist(device) {
                    return;
                }
                self.last_uplink[device] = now;
                if !self.devices[device].info.link.is_online() {
                    self.set_online(device, true, out);
                }
                if fopts || fport == Some(0) {
                    Counters::inc(&self.counters.lora_mac_ignored);
                }
                let dev = &self.devices[device];
                let mut values = Vec::new();
                if let (Some(p), Some(codec)) = (fport.filter(|p| *p > 0), &dev.codec) {
                    match codec.decode(p, &payload) {
                        Ok(v) => values = v,
                        Err(e) => {
                            Counters::inc(&self.counters.decode_error);
                            tracing::warn!(device_id = %dev.info.id, error = %e, "LoRa uplink not decoded");
                        }
                    }
                }
                if let Some(c) = &dev.codec {
                    if let Some(i) = c.rssi {
                        values.push((i, Value::Int(i64::from(h.rx.rssi))));
                    }
                    if let Some(i) = c.snr {
                        values.push((i, Value::Float(h.rx.lsnr)));
                    }
                }
                out.inputs.push(Input::Reading {
                    device: dev.info.clone(),
                    values,
                    at_ms: now_ms,
                    force: vec![],
                });
                out.datagrams.extend(down);
            }
        }
    }
}

pub(super) fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::Text(other.to_string()),
    }
}
