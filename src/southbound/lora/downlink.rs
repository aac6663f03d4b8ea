//! Class A downlinks of the Semtech UDP source: commands encoded by the profile script
//! and queued persistently, then sent in RX1 after the device's next uplink (RX2 when
//! RX1 is too close), as a PULL_RESP to the gateway's latest PULL_DATA address.

use super::driver::{
    Core, DEFAULT_EXPIRES_MS, Heard, Out, RX2_DATR, RX2_FREQ_MHZ, TX_MARGIN, TX_POWER_DBM,
};
use super::semtech::{self, Txpk};
use super::session::{Downlink, MAX_PENDING};
use crate::model::command::{WriteOutcome, WriteRequest};
use std::time::{Duration, Instant};

impl Core {
    pub(super) fn take_pending(&mut self, device: usize, now_ms: u64) -> Option<Downlink> {
        let st = &mut self.server.states[device];
        st.pending
            .retain(|p| p.expires_ms > now_ms || p.id.is_some());
        let i = st.pending.iter().position(|p| p.expires_ms > now_ms)?;
        Some(st.pending.remove(i))
    }

    /// Sends `phy` in RX1 (`delay` after the uplink), or RX2 when RX1 is too close.
    pub(super) fn transmit(
        &mut self,
        now: Instant,
        h: &Heard,
        delay_us: u32,
        phy: &[u8],
        out: &mut Out,
    ) -> Option<u16> {
        let Some(&addr) = self.gateways.get(&h.gateway) else {
            tracing::warn!(gateway = %super::session::hex(&h.gateway), "no PULL_DATA from this gateway yet: downlink dropped");
            return None;
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
            tracing::warn!("downlink too late for RX1 and RX2: dropped");
            return None;
        };
        let txpk = Txpk {
            imme: false,
            tmst,
            freq,
            rfch: 0,
            powe: TX_POWER_DBM,
            modu: "LORA".into(),
            datr,
            codr: "4/5".into(),
            ipol: true,
            size: phy.len() as u32,
            data: semtech::b64(phy),
            ncrc: true,
        };
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        out.datagrams.push((addr, semtech::pull_resp(token, &txpk)));
        Some(token)
    }

    /// A command for a LoRa device: encoded, queued persistently, answered `queued`.
    pub fn write(&mut self, req: WriteRequest, now_ms: u64) {
        let outcome = self.queue_write(&req, now_ms);
        let _ = req.reply.send(outcome);
    }

    fn queue_write(&mut self, req: &WriteRequest, now_ms: u64) -> WriteOutcome {
        let fail = |e: String| WriteOutcome {
            points: vec![],
            error: Some(e),
        };
        let Some(dev) = self.devices.get(req.device) else {
            return fail("unknown LoRa device".into());
        };
        let Some(codec) = &dev.codec else {
            return fail("the device's profile has no LoRa script".into());
        };
        if self.server.states[req.device].session.is_none() {
            return fail("the device has not joined yet".into());
        }
        let mut frames = Vec::new();
        for (i, v) in &req.writes {
            let Some(p) = dev.info.profile.points.get(*i) else {
                return fail("unknown point".into());
            };
            match codec.encode(&p.name, v) {
                Ok(f) => frames.push((p.name.clone(), v.clone(), f)),
                Err(e) => return fail(format!("encode_downlink failed for '{}': {e}", p.name)),
            }
        }
        let st = &mut self.server.states[req.device];
        if st.pending.len() + frames.len() > MAX_PENDING {
            return fail(format!(
                "device busy: {MAX_PENDING} downlinks already wait for its next uplink"
            ));
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
            });
        }
        if !self.persist(req.device, true) {
            return fail("the command could not be persisted".into());
        }
        WriteOutcome {
            points: req.writes.clone(),
            error: None,
        }
    }
}
