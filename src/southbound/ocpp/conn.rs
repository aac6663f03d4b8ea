//! One charger's WebSocket after the handshake: polegate as its central system (answers,
//! commands as CS→charger calls with a 30 s answer deadline), or relaying every frame to
//! and from the upstream CSMS while tapping the telemetry (proxy mode).
//!
//! Bounds (SPEC §7, §9): at most [`FRAMES_PER_S`] frames a second (burst [`FRAME_BURST`])
//! from one charger: beyond, a call is answered with a CALLERROR and nothing of it is
//! used (`ocpp_rate_limited`, one log line per flood, then a summary every 5 min); every
//! write (answers, calls, relayed frames, the close) has [`WRITE_TIMEOUT`], so a peer
//! that stops reading is closed; a charger silent for three heartbeat intervals is
//! closed (its slot and task freed; a real charger reconnects); in proxy mode at most
//! [`MAX_RELAYED_CALLS`] relayed calls are remembered, each until its CALLRESULT, its
//! CALLERROR or [`ANSWER_TIMEOUT`], the oldest forgotten first.

use super::command;
use super::frame::{self, Frame, Malformed};
use super::hub::{ConnCmd, Hub, Live};
use super::map::{self, ChargePoint};
use crate::model::command::{Refusal, WriteOutcome};
use crate::model::{Value, now_ms, rfc3339_ms};
use crate::ops::bucket::TokenBucket;
use crate::ops::counters::Counters;
use crate::ops::failure_log::FailureLog;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
use tokio_util::sync::CancellationToken;

/// How long a charger has to answer a CS→charger call (SPEC §9).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Commands waiting for one charge point's connection.
const CMD_CAPACITY: usize = 8;
/// Calls of a charger relayed upstream and not answered yet (proxy mode), per charger
/// (OCPP 1.6 has one outstanding call per direction; the rest is slack).
pub const MAX_RELAYED_CALLS: usize = 16;
/// OCPP-J message ids are at most 36 characters; longer ones are relayed, not tracked.
const MAX_MESSAGE_ID: usize = 36;
/// Frames a second one charger may send, and the burst (a boot of a many-connector
/// charge point sends a StatusNotification per connector at once).
pub const FRAMES_PER_S: f64 = 20.0;
pub const FRAME_BURST: f64 = 100.0;
/// Every send to a charger or the upstream CSMS completes within this, or the
/// connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `m` within [`WRITE_TIMEOUT`]; false when it failed or timed out.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, m: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, ws.send(m)).await,
        Ok(Ok(()))
    )
}

/// Closes `ws`, waiting at most [`WRITE_TIMEOUT`] for a peer that does not read.
pub(super) async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frame: Option<CloseFrame>,
) {
    let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(frame)).await;
}

/// Proxy mode: the charger's calls relayed upstream, by message id: (action, payload
/// kept only for the actions that are tapped, when relayed).
#[derive(Default)]
struct Relayed(HashMap<String, (String, Json, Instant)>);

impl Relayed {
    fn insert(&mut self, id: String, action: String, payload: Json, now: Instant) {
        if id.len() > MAX_MESSAGE_ID {
            return;
        }
        self.0.retain(|_, e| e.2 + ANSWER_TIMEOUT > now);
        if self.0.len() >= MAX_RELAYED_CALLS
            && let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| k.clone())
        {
            self.0.remove(&oldest);
        }
        let payload = if map::TAPPED.contains(&action.as_str()) {
            payload
        } else {
            Json::Null
        };
        self.0.insert(id, (action, payload, now));
    }

    fn remove(&mut self, id: &str) -> Option<(String, Json)> {
        self.0.remove(id).map(|(a, p, _)| (a, p))
    }
}

/// A command being carried out: one write at a time, in order.
struct Active {
    cmd: ConnCmd,
    next: usize,
    applied: Vec<(usize, Value)>,
    /// (message id, action, deadline) of the call awaiting the charger's answer.
    waiting: Option<(String, &'static str, Instant)>,
}

const DISCONNECTED: &str = "charger disconnected";

/// Serves a connected charger until it closes, goes silent for good, is replaced by a
/// newer connection of the same charge point, or the driver stops.
pub async fn serve<S, U>(
    hub: Arc<Hub>,
    cp: String,
    mut ws: WebSocketStream<S>,
    mut upstream: Option<WebSocketStream<U>>,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let open = match hub.load_open(&cp) {
        Ok(open) => open,
        Err(e) => {
            // Its transactions cannot be read: not served until they can (SPEC §5).
            tracing::warn!(charge_point = %cp, error = %e, "charger refused: its stored state cannot be read");
            let reason = crate::southbound::stored_state::REASON;
            hub.set_cp_state(&cp, false, Some(reason)).await;
            close(&mut ws, None).await;
            return;
        }
    };
    let conn = hub.conn_no();
    let (cmd_tx, mut cmd_rx) = mpsc::channel(CMD_CAPACITY);
    let mine = cancel.child_token();
    if let Some(old) = super::lock(&hub.live).insert(
        cp.clone(),
        Live {
            conn,
            cmds: cmd_tx,
            cancel: mine.clone(),
        },
    ) {
        tracing::info!(charge_point = %cp, "a new connection replaces the previous one");
        old.cancel.cancel();
    }
    let mut state = ChargePoint { open };
    let silence = Duration::from_secs(hub.cfg.heartbeat_s.saturating_mul(3));
    let mut last_rx = Instant::now();
    let mut silent = false;
    let mut active: Option<Active> = None;
    let mut msg_no: u64 = 0;
    let mut relayed = Relayed::default();
    let mut rate = TokenBucket::new(FRAMES_PER_S, FRAME_BURST, Instant::now());
    let mut logs = Logs::default();
    let proxy = upstream.is_some();
    hub.set_cp_state(&cp, true, None).await;
    let reason = loop {
        let deadline = active
            .as_ref()
            .and_then(|a| a.waiting.as_ref().map(|w| w.2))
            .unwrap_or_else(|| last_rx + silence);
        let up_next = async {
            match upstream.as_mut() {
                Some(u) => u.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = mine.cancelled() => break None,
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(_))) => {
                        Counters::inc(&hub.counters.ocpp_malformed);
                        if !send(&mut ws, Message::text(frame::error("-1", "FormationViolation", "OCPP-J frames are text"))).await {
                            break Some(DISCONNECTED);
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break Some(DISCONNECTED),
                    Some(Ok(_)) => { last_rx = Instant::now(); continue; }
                    Some(Err(WsError::Capacity(e))) => {
                        // Past MAX_FRAME_BYTES nothing of the frame is kept: refuse it and
                        // close (1009), the charger reconnects and its offline queue resends.
                        Counters::inc(&hub.counters.ocpp_malformed);
                        tracing::warn!(charge_point = %cp, error = %e, limit = frame::MAX_FRAME_BYTES, "charger frame too large: connection closed");
                        close(&mut ws, Some(CloseFrame { code: CloseCode::Size, reason: "frame too large".into() })).await;
                        break Some(DISCONNECTED);
                    }
                    Some(Err(e)) => {
                        tracing::info!(charge_point = %cp, error = %e, "charger connection failed");
                        break Some(DISCONNECTED);
                    }
                };
                last_rx = Instant::now();
                if rate.take(last_rx).is_err() {
                    // Beyond the rate nothing of the frame is used; a call is answered.
                    Counters::inc(&hub.counters.ocpp_rate_limited);
                    logs.rate.on_failure(
                        std::time::Instant::now(),
                        || tracing::warn!(charge_point = %cp, rate = FRAMES_PER_S, burst = FRAME_BURST, "charger sends too many frames: the excess is refused (counted in ocpp_rate_limited)"),
                        |count| tracing::warn!(charge_point = %cp, refused = count, "charger still sends too many frames"),
                    );
                    if let Ok(Frame::Call { id, .. }) = frame::parse(&text) {
                        let e = frame::error(&id, "GenericError", "rate limit exceeded: frame refused");
                        if !send(&mut ws, Message::text(e)).await {
                            break Some(DISCONNECTED);
                        }
                    }
                    continue;
                }
                if silent {
                    silent = false;
                    hub.set_cp_state(&cp, true, None).await;
                }
                if let Some(u) = upstream.as_mut() {
                    if let Ok(Frame::Call { id, action, payload }) = frame::parse(&text) {
                        relayed.insert(id, action, payload, last_rx);
                    }
                    if !send(u, Message::text(text)).await {
                        break Some(super::UPSTREAM_DOWN);
                    }
                    continue;
                }
                let reply = on_charger_frame(&hub, &cp, &mut state, &text, &mut active, &mut logs.malformed).await;
                if let Some(reply) = reply && !send(&mut ws, Message::text(reply)).await {
                    break Some(DISCONNECTED);
                }
            }
            msg = up_next => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => {
                        if !send(&mut ws, Message::Binary(b)).await { break Some(DISCONNECTED); }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Some(super::UPSTREAM_DOWN),
                    Some(Ok(_)) => continue,
                };
                match frame::parse(&text) {
                    Ok(Frame::Result { id, payload }) => {
                        if let Some((action, req)) = relayed.remove(&id) {
                            tap(&hub, &cp, &mut state, &action, &req, &payload).await;
                        }
                    }
                    Ok(Frame::Error { id, .. }) => {
                        relayed.remove(&id);
                    }
                    _ => {}
                }
                if !send(&mut ws, Message::text(text)).await {
                    break Some(DISCONNECTED);
                }
            }
            cmd = cmd_rx.recv(), if active.is_none() && !proxy => {
                let Some(cmd) = cmd else { continue };
                active = Some(Active { cmd, next: 0, applied: vec![], waiting: None });
            }
            _ = tokio::time::sleep_until(deadline) => {
                if let Some(a) = active.as_mut().filter(|a| a.waiting.as_ref().is_some_and(|w| w.2 <= Instant::now())) {
                    a.waiting = None;
                    finish(&hub, active.take(), Some(Refusal::Timeout("charger did not answer".into()))).await;
                } else if last_rx + silence <= Instant::now() && !silent {
                    // Silent for three heartbeats: a charger that is still there
                    // reconnects; a half-open one gives its task and slot back.
                    tracing::info!(charge_point = %cp, silent_s = silence.as_secs(), "charger silent: connection closed");
                    break Some(DISCONNECTED);
                }
            }
        }
        // Send the next write of the active command, or finish it.
        if let Some(a) = active.as_mut()
            && a.waiting.is_none()
        {
            if a.next >= a.cmd.writes.len() {
                finish(&hub, active.take(), None).await;
                continue;
            }
            let dev = &hub.devices[a.cmd.device];
            let (name, _, value) = &a.cmd.writes[a.next];
            let open_tx = state.open.get(&dev.cfg.connector).map(|o| o.transaction_id);
            match command::build(name, value, dev.cfg.connector, open_tx) {
                Ok((action, payload)) => {
                    msg_no += 1;
                    let id = format!("pg{conn}-{msg_no}");
                    let text = frame::call(&id, action, &payload);
                    a.waiting = Some((id, action, Instant::now() + ANSWER_TIMEOUT));
                    if !send(&mut ws, Message::text(text)).await {
                        finish(
                            &hub,
                            active.take(),
                            Some(Refusal::DeviceOffline("charger disconnected".into())),
                        )
                        .await;
                        break Some(DISCONNECTED);
                    }
                }
                Err(e) => finish(&hub, active.take(), Some(e)).await,
            }
        }
    };
    let gone = Refusal::DeviceOffline("charger disconnected".into());
    finish(&hub, active.take(), Some(gone)).await;
    close(&mut ws, None).await;
    if let Some(mut u) = upstream {
        close(&mut u, None).await;
    }
    // Only the current connection of a charge point speaks for its devices.
    let current = {
        let mut live = super::lock(&hub.live);
        let current = live.get(&cp).is_some_and(|l| l.conn == conn);
        if current {
            live.remove(&cp);
        }
        current
    };
    if current && let Some(reason) = reason {
        hub.set_cp_state(&cp, false, Some(reason)).await;
    }
    tracing::info!(charge_point = %cp, reason = reason.unwrap_or("replaced or stopped"), "charger connection closed");
}

/// Per connection: one line when a flood or a run of malformed frames starts, then
/// summaries ([`FailureLog`]); never one per frame.
#[derive(Default)]
struct Logs {
    rate: FailureLog,
    malformed: FailureLog,
}

async fn tap(hub: &Hub, cp: &str, state: &mut ChargePoint, action: &str, req: &Json, conf: &Json) {
    if action == "StartTransaction" && !hub.has_connector(cp, req.get("connectorId")) {
        // Only configured connectors get an open transaction (the map stays bounded).
        tracing::debug!(
            charge_point = cp,
            "StartTransaction of an unconfigured connector not tapped"
        );
        return;
    }
    match state.tap(action, req, conf) {
        Ok(taps) => {
            if matches!(action, "StartTransaction" | "StopTransaction") {
                hub.save_open(cp, &state.open).await;
            }
            hub.apply(cp, taps).await;
        }
        Err(e) => tracing::debug!(charge_point = cp, action, error = %e, "frame not tapped"),
    }
}

/// Central-system mode: a frame from the charger → the text to answer with, if any.
async fn on_charger_frame(
    hub: &Hub,
    cp: &str,
    state: &mut ChargePoint,
    text: &str,
    active: &mut Option<Active>,
    log: &mut FailureLog,
) -> Option<String> {
    let mut malformed = |e: Malformed| {
        Counters::inc(&hub.counters.ocpp_malformed);
        log.on_failure(
            std::time::Instant::now(),
            || tracing::info!(charge_point = cp, code = e.code, error = %e.description, "malformed OCPP frame; further ones are counted (ocpp_malformed) and summarized"),
            |count| tracing::info!(charge_point = cp, code = e.code, error = %e.description, malformed = count, "malformed OCPP frames still arriving"),
        );
        Some(e.to_text())
    };
    let f = match frame::parse(text) {
        Ok(f) => f,
        Err(e) => return malformed(e),
    };
    match f {
        Frame::Call {
            id,
            action,
            payload,
        } => {
            let mut tx = None;
            if action == "StartTransaction" && !hub.has_connector(cp, payload.get("connectorId")) {
                return malformed(Malformed::new(
                    &id,
                    "PropertyConstraintViolation",
                    "connectorId: not a connector configured for this charge point",
                ));
            }
            if action == "StartTransaction" {
                match hub.next_tx().await {
                    Ok(n) => tx = Some(n),
                    Err(e) => {
                        tracing::warn!(charge_point = cp, error = %e, "no transaction id");
                        return Some(frame::error(
                            &id,
                            "InternalError",
                            "transaction ids unavailable",
                        ));
                    }
                }
            }
            let now = rfc3339_ms(now_ms());
            let accepts = |t: &str| hub.cfg.accepts(t);
            let mut next = || tx.unwrap_or(0);
            match map::answer(
                &action,
                &payload,
                &now,
                hub.cfg.heartbeat_s,
                &accepts,
                &mut next,
            ) {
                Ok(conf) => {
                    tap(hub, cp, state, &action, &payload, &conf).await;
                    Some(frame::result(&id, &conf))
                }
                Err(e) => malformed(Malformed { id, ..e }),
            }
        }
        Frame::Result { id, payload } => {
            if let Some(a) = active.as_mut()
                && let Some((want, action, _)) = &a.waiting
                && *want == id
            {
                let action = *action;
                a.waiting = None;
                match command::outcome(action, &payload) {
                    Ok(()) => {
                        let (_, i, v) = &a.cmd.writes[a.next];
                        a.applied.push((*i, v.clone()));
                        a.next += 1;
                    }
                    Err(e) => finish(hub, active.take(), Some(e)).await,
                }
            }
            None
        }
        Frame::Error {
            id,
            code,
            description,
        } => {
            if let Some(a) = active.as_mut()
                && a.waiting.as_ref().is_some_and(|w| w.0 == id)
            {
                let action = a.waiting.as_ref().map_or("", |w| w.1);
                let e = Refusal::DeviceError(format!(
                    "charger answered {action} with {code}: {description}"
                ));
                finish(hub, active.take(), Some(e)).await;
            }
            None
        }
    }
}

/// Answers a command: the written values on success (and their telemetry for the points
/// only commands reveal), the points applied before a failure otherwise.
async fn finish(hub: &Hub, active: Option<Active>, error: Option<Refusal>) {
    let Some(a) = active else { return };
    if error.is_none() {
        let dev = a.cmd.device;
        let shown: Vec<(String, Value)> = a
            .cmd
            .writes
            .iter()
            .filter(|(n, _, _)| n == "enabled" || n == "max_current")
            .map(|(n, _, v)| (n.clone(), v.clone()))
            .collect();
        hub.reading(dev, &shown, &["enabled", "max_current"]).await;
    }
    let _ = a.cmd.reply.send(WriteOutcome {
        points: a.applied,
        error,
    });
}
