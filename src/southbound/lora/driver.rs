//! The LoRa driver's state machine, sans-IO: datagrams and commands in, datagrams and
//! pipeline inputs out, time injected (`Instant` for windows, wall-clock ms for expiry).
//!
//! Invariants: a device's session, counters and pending downlinks are written to the
//! store before the uplink is published or a frame is sent, and flushed before anything
//! that must never be repeated after a crash (a join-accept's JoinNonce, a downlink's
//! FCntDown). Several copies of one frame (several gateways or antennas) are collected
//! for [`DEDUP_WINDOW`] and handled once, with the best SNR, then RSSI.

use super::netserver::{Accepted, Device, Rejected, Server};
use super::script::LoraCodec;
use super::semtech::{self, Packet, Rxpk};
use super::session::{Downlink, Store};
use crate::buffer::Queue;
use crate::config::lora::{LoraCfg, LoraDeviceCfg};
use crate::model::LinkState;
use crate::model::Value;
use crate::model::command::CmdResult;
use crate::ops::counters::Counters;
use crate::ops::failure_log::{FailureLog, LogAction};
use crate::pipeline::{DeviceInfo, Input};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long copies of one frame are collected before it is handled.
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
}

pub(super) struct Heard {
    pub(super) first: Instant,
    pub(super) gateway: [u8; 8],
    pub(super) rx: Rxpk,
}

pub(super) struct InFlight {
    pub(super) device: usize,
    pub(super) id: Option<String>,
    pub(super) points: Vec<(String, serde_json::Value)>,
}

/// Output of one step.
#[derive(Default)]
pub struct Out {
    pub datagrams: Vec<(SocketAddr, Vec<u8>)>,
    pub inputs: Vec<Input>,
}

pub struct Core {
    pub server: Server,
    pub devices: Vec<LoraDevice>,
    pub(super) store: Store,
    pub(super) queue: Option<Queue>,
    pub(super) counters: Arc<Counters>,
    pub(super) gateways: HashMap<[u8; 8], SocketAddr>,
    pub(super) heard: HashMap<Vec<u8>, Heard>,
    pub(super) inflight: HashMap<u16, InFlight>,
    pub(super) last_uplink: Vec<Instant>,
    pub(super) logs: HashMap<&'static str, FailureLog>,
    pub(super) next_token: u16,
    pub(super) saved_join_nonce: u32,
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
            gateways: HashMap::new(),
            heard: HashMap::new(),
            inflight: HashMap::new(),
            last_uplink: vec![now; n],
            logs: HashMap::new(),
            next_token: fastrand::u16(..),
            saved_join_nonce: server_join_nonce,
        }
    }

    fn reject(&mut self, what: &'static str, detail: &str, now: Instant) {
        let c = match what {
            "bad_mic" => &self.counters.lora_bad_mic,
            "replay" => &self.counters.lora_replay,
            "unknown" => &self.counters.lora_unknown_device,
            _ => &self.counters.lora_malformed,
        };
        Counters::inc(c);
        match self.logs.entry(what).or_default().failure(now) {
            LogAction::Failed => tracing::warn!(reason = what, "LoRa frame rejected: {detail}"),
            LogAction::Summary { count } => {
                tracing::warn!(reason = what, count, "LoRa frames still rejected: {detail}")
            }
            _ => {}
        }
    }

    pub(super) fn persist(&mut self, device: usize, flush: bool) -> bool {
        let dev_eui = self.devices[device].cfg.dev_eui;
        let mut ok = self
            .store
            .save(&dev_eui, &self.server.states[device])
            .is_ok();
        if self.server.join_nonce != self.saved_join_nonce {
            ok &= self.store.save_join_nonce(self.server.join_nonce).is_ok();
            self.saved_join_nonce = self.server.join_nonce;
        }
        if flush && let Some(q) = &self.queue {
            ok &= q.flush().is_ok();
        }
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
                    match self.heard.get_mut(&phy) {
                        Some(h) => {
                            if (rx.lsnr, rx.rssi) > (h.rx.lsnr, h.rx.rssi) {
                                h.rx = rx;
                                h.gateway = gateway;
                            }
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
                self.gateways.insert(gateway, from);
                out.datagrams
                    .push((from, semtech::ack(d[0], token, semtech::PULL_ACK).to_vec()));
            }
            Packet::TxAck { token, error, .. } => {
                let Some(f) = self.inflight.remove(&token) else {
                    return;
                };
                let Some(id) = f.id else { return };
                let device = self.devices[f.device].info.id.clone();
                // More downlinks of the same command still waiting: report at the last.
                let more = self.server.states[f.device]
                    .pending
                    .iter()
                    .any(|p| p.id.as_deref() == Some(id.as_str()));
                if more && error.is_none() {
                    return;
                }
                let ok = error.is_none();
                out.inputs.push(Input::CmdResult(CmdResult {
                    device,
                    id: Some(id),
                    ok,
                    points: if ok {
                        f.points
                            .iter()
                            .map(|(k, v)| (k.clone(), json_value(v)))
                            .collect()
                    } else {
                        vec![]
                    },
                    error: error.map(|e| format!("the gateway did not transmit the downlink: {e}")),
                    status: Some(if ok { "sent" } else { "failed" }.into()),
                }));
            }
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
            let expired: Vec<Downlink> = {
                let st = &mut self.server.states[i];
                let (gone, keep) = st.pending.drain(..).partition(|p| p.expires_ms <= now_ms);
                st.pending = keep;
                gone
            };
            if !expired.is_empty() {
                self.persist(i, false);
                let mut seen: Vec<Option<String>> = vec![];
                for d in expired {
                    if seen.contains(&d.id) || d.id.is_none() {
                        continue;
                    }
                    seen.push(d.id.clone());
                    out.inputs.push(Input::CmdResult(CmdResult {
                        device: self.devices[i].info.id.clone(),
                        id: d.id,
                        ok: false,
                        points: vec![],
                        error: Some("expired before the device's next uplink".into()),
                        status: Some("expired".into()),
                    }));
                }
            }
        }
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
                if !self.persist(device, true) {
                    return;
                }
                tracing::info!(device_id = %self.devices[device].info.id, "LoRa join accepted");
                self.transmit(now, &h, JOIN_DELAY_US, &accept, out);
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
                let pending = self.take_pending(device, now_ms);
                let down = if pending.is_some() || confirmed {
                    let (fp, bytes) = pending
                        .as_ref()
                        .map(|p| (Some(p.fport), p.bytes.clone()))
                        .unwrap_or((None, vec![]));
                    self.server.downlink(device, fp, &bytes, confirmed)
                } else {
                    None
                };
                if !self.persist(device, down.is_some()) {
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
                if let Some(frame) = down {
                    let token = self.transmit(now, &h, RX1_DELAY_US, &frame, out);
                    if let (Some(t), Some(p)) = (token, pending) {
                        self.inflight.insert(
                            t,
                            InFlight {
                                device,
                                id: p.id,
                                points: p.points,
                            },
                        );
                    }
                }
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
