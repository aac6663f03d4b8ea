//! Class A downlinks of the Semtech UDP source: commands encoded by the profile script
//! and persisted before `queued` is answered, then sent in RX1 after the device's next
//! uplink (RX2 when RX1 is too close), as a PULL_RESP to the gateway's latest PULL_DATA
//! address.
//!
//! Every queued command ends with exactly one final result (SPEC §8 "LoRa commands"):
//! `sent` on the gateway's TX_ACK; `failed` when there is no gateway to send through, both
//! receive windows are missed, the gateway's TX_ACK reports an error or none comes within
//! [`TXACK_TIMEOUT_MS`](super::driver::TXACK_TIMEOUT_MS); `expired` when `expires` passes before an uplink. A frame's state
//! (waiting, or handed to a gateway with its token) lives in the persisted device state
//! and is written before it is acted on, so a restart resumes where the last run stopped:
//! a late TX_ACK still turns it `sent`, a missing one `failed`.

use super::driver::{
    Core, DEFAULT_EXPIRES_MS, Heard, Out, RX1_DELAY_US, RX2_DATR, RX2_FREQ_MHZ, TX_MARGIN,
    TX_POWER_DBM, json_value,
};
use super::semtech::{self, Txpk};
use super::session::{Downlink, MAX_PENDING, Sent, hex};
use crate::model::command::{CmdResult, Refusal, WriteOutcome, WriteRequest};
use crate::pipeline::Input;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a command's frame ends.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum End {
    Sent,
    Failed(String),
    Expired,
}

/// Where and when one downlink goes out.
pub(super) struct Window {
    addr: SocketAddr,
    gateway: [u8; 8],
    tmst: u32,
    freq: f64,
    datr: String,
}

impl Window {
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Core {
    /// The oldest downlink of `device` not yet handed to a gateway and not expired.
    fn next_pending(&self, device: usize, now_ms: u64) -> Option<usize> {
        self.server.states[device]
            .pending
            .iter()
            .position(|p| p.sent.is_none() && p.expires_ms > now_ms)
    }

    /// RX1 (`delay_us` after the uplink) when there is time, else RX2, through the
    /// gateway that heard the uplink best; the reason when neither is possible.
    pub(super) fn window(&self, now: Instant, h: &Heard, delay_us: u32) -> Result<Window, String> {
        let Some(addr) = self.gateways.address(&h.gateway) else {
            return Err(format!(
                "no gateway to send through: no PULL_DATA from gateway {} yet",
                hex(&h.gateway)
            ));
        };
        let elapsed = now.saturating_duration_since(h.first);
        let rx1 = Duration::from_micros(u64::from(delay_us));
        let (tmst, freq, datr) = if elapsed + TX_MARGIN < rx1 {
            let datr = h.rx.datr.as_str().unwrap_or(RX2_DATR).to_string();
            (h.rx.tmst.wrapping_add(delay_us), h.rx.freq, datr)
        } else if elapsed + TX_MARGIN < rx1 + Duration::from_secs(1) {
            (
                h.rx.tmst.wrapping_add(delay_us + 1_000_000),
                RX2_FREQ_MHZ,
                RX2_DATR.to_string(),
            )
        } else {
            return Err(format!(
                "both receive windows missed (uplink heard {} ms ago)",
                elapsed.as_millis()
            ));
        };
        Ok(Window {
            addr,
            gateway: h.gateway,
            tmst,
            freq,
            datr,
        })
    }

    /// A PULL_RESP carrying `phy` in `w`, with a token no waiting downlink uses.
    pub(super) fn pull_resp(&mut self, w: &Window, phy: &[u8]) -> (u16, Vec<u8>) {
        let txpk = Txpk {
            imme: false,
            tmst: w.tmst,
            freq: w.freq,
            rfch: 0,
            powe: TX_POWER_DBM,
            modu: "LORA".into(),
            datr: w.datr.clone(),
            codr: "4/5".into(),
            ipol: true,
            size: phy.len() as u32,
            data: semtech::b64(phy),
            ncrc: true,
        };
        loop {
            self.next_token = self.next_token.wrapping_add(1);
            let t = self.next_token;
            let used = self.server.states.iter().any(|st| {
                st.pending
                    .iter()
                    .any(|p| p.sent.as_ref().is_some_and(|s| s.token == t))
            });
            if !used {
                return (t, semtech::pull_resp(t, &txpk));
            }
        }
    }

    /// After an accepted data uplink of `device`: the downlink to send with it (its next
    /// command frame, or a bare ACK for a confirmed uplink), marked as handed to the
    /// gateway. A frame that cannot go out ends `failed` here. The caller persists the
    /// device's state before it sends the returned datagram.
    pub(super) fn data_downlink(
        &mut self,
        now: Instant,
        now_ms: u64,
        h: &Heard,
        device: usize,
        confirmed: bool,
        out: &mut Out,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let pick = self.next_pending(device, now_ms);
        if pick.is_none() && !confirmed {
            return None;
        }
        let w = match self.window(now, h, RX1_DELAY_US) {
            Ok(w) => w,
            Err(reason) => {
                match pick {
                    Some(i) => self.settle(device, i, End::Failed(reason), out),
                    None => {
                        let id = &self.devices[device].info.id;
                        tracing::warn!(device_id = %id, "confirmed uplink not acknowledged: {reason}");
                    }
                }
                return None;
            }
        };
        let (fport, bytes) = match pick {
            Some(i) => {
                let p = &self.server.states[device].pending[i];
                (Some(p.fport), p.bytes.clone())
            }
            None => (None, vec![]),
        };
        let Some(frame) = self.server.downlink(device, fport, &bytes, confirmed) else {
            if let Some(i) = pick {
                let e = "the downlink frame could not be built".to_string();
                self.settle(device, i, End::Failed(e), out);
            }
            return None;
        };
        let (token, datagram) = self.pull_resp(&w, &frame);
        if let Some(i) = pick {
            self.server.states[device].pending[i].sent = Some(Sent {
                token,
                to: w.addr,
                gateway: w.gateway,
                at_ms: now_ms,
            });
        }
        Some((w.addr, datagram))
    }

    /// Ends frame `idx` of `device`. A command's result comes once: `sent` after its last
    /// frame, `failed`/`expired` at the first frame that fails (its other frames are
    /// dropped). The caller persists the device's state.
    pub(super) fn settle(&mut self, device: usize, idx: usize, end: End, out: &mut Out) {
        let st = &mut self.server.states[device];
        if idx >= st.pending.len() {
            return;
        }
        let d = st.pending.remove(idx);
        let Some(id) = d.id else { return };
        let mine = |p: &Downlink| p.id.as_deref() == Some(id.as_str());
        if end == End::Sent && st.pending.iter().any(mine) {
            return;
        }
        st.pending.retain(|p| !mine(p));
        let device_id = self.devices[device].info.id.clone();
        let (ok, status, error) = match end {
            End::Sent => (true, "sent", None),
            End::Failed(e) => (false, "failed", Some(Refusal::Failed(e))),
            End::Expired => (
                false,
                "expired",
                Some(Refusal::Expired(
                    "expired before the device's next uplink".to_string(),
                )),
            ),
        };
        let reason = error.as_ref().map(ToString::to_string).unwrap_or_default();
        tracing::info!(%device_id, command_id = %id, status, error = %reason, "LoRa command ended");
        let points = if ok {
            d.points
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect()
        } else {
            vec![]
        };
        out.inputs.push(Input::CmdResult(CmdResult {
            device: device_id,
            id: Some(id),
            ok,
            points,
            error,
            status: Some(status.into()),
            source: None,
        }));
    }

    /// A TX_ACK from `from`: ends the frame whose PULL_RESP carried `token` and went to
    /// `from`; a TX_ACK from any other address is refused and counted.
    pub(super) fn tx_ack(
        &mut self,
        now: Instant,
        from: SocketAddr,
        token: u16,
        error: Option<String>,
        out: &mut Out,
    ) {
        let found = self.server.states.iter().enumerate().find_map(|(d, st)| {
            st.pending.iter().enumerate().find_map(|(i, p)| {
                p.sent
                    .as_ref()
                    .filter(|s| s.token == token)
                    .map(|s| (d, i, s.to, s.gateway))
            })
        });
        let Some((device, idx, to, gateway)) = found else {
            tracing::debug!(%from, token, "TX_ACK for no waiting downlink: ignored");
            return;
        };
        if to != from {
            let detail = format!("TX_ACK from {from} for a downlink sent to {to}: ignored");
            return self.refuse_gateway("txack_address", &detail, now);
        }
        let end = match error {
            None => End::Sent,
            Some(e) => End::Failed(format!(
                "gateway {} did not transmit the downlink: {e}",
                hex(&gateway)
            )),
        };
        self.settle(device, idx, end, out);
        self.persist(device);
    }

    /// Frames whose TX_ACK is overdue end `failed`, commands whose `expires` passed
    /// before they could be sent end `expired`.
    pub(super) fn expire_downlinks(&mut self, now_ms: u64, out: &mut Out) {
        for device in 0..self.server.states.len() {
            let mut changed = false;
            loop {
                let pending = &self.server.states[device].pending;
                let due = pending.iter().enumerate().find_map(|(i, p)| match &p.sent {
                    Some(s) if s.at_ms.saturating_add(self.txack_timeout_ms) <= now_ms => Some((
                        i,
                        End::Failed(format!(
                            "no TX_ACK from gateway {} within {} s",
                            hex(&s.gateway),
                            self.txack_timeout_ms / 1000
                        )),
                    )),
                    None if p.expires_ms <= now_ms => Some((i, End::Expired)),
                    _ => None,
                });
                let Some((i, end)) = due else { break };
                self.settle(device, i, end, out);
                changed = true;
            }
            if changed {
                self.persist(device);
            }
        }
    }

    /// A command for a LoRa device: encoded, persisted, then answered `queued` (the reply
    /// goes out with `out`, after the state is flushed).
    pub fn write(&mut self, req: WriteRequest, now_ms: u64, out: &mut Out) {
        let outcome = self.queue_write(&req, now_ms);
        out.replies.push((req.reply, outcome));
    }

    fn queue_write(&mut self, req: &WriteRequest, now_ms: u64) -> WriteOutcome {
        let fail = WriteOutcome::refused;
        let Some(dev) = self.devices.get(req.device) else {
            return fail(Refusal::UnknownDevice);
        };
        if self.server.states[req.device].session.is_none() {
            let e = "the device has not joined yet".to_string();
            return fail(Refusal::WrongState(e));
        }
        let frames = match dev.encode_writes(&req.writes) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        let st = &mut self.server.states[req.device];
        let before = st.pending.len();
        if before + frames.len() > MAX_PENDING {
            return fail(Refusal::Busy(format!(
                "device busy: {MAX_PENDING} downlinks already wait for its next uplink"
            )));
        }
        let points: Vec<(String, serde_json::Value)> = frames
            .iter()
            .map(|(n, v, _)| (n.clone(), v.to_json()))
            .collect();
        let expires_ms = req.expires_ms.unwrap_or(now_ms + DEFAULT_EXPIRES_MS);
        for (_, _, (fport, bytes)) in frames {
            st.pending.push(Downlink {
                id: req.id.clone(),
                fport,
                bytes,
                expires_ms,
                points: points.clone(),
                sent: None,
            });
        }
        if !self.persist(req.device) {
            self.server.states[req.device].pending.truncate(before);
            let e = "the command could not be persisted".to_string();
            return fail(Refusal::Failed(e));
        }
        WriteOutcome {
            points: req.writes.clone(),
            error: None,
        }
    }
}
