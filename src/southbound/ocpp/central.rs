//! Central-system mode, for one charger connection: the answer to each frame the charger
//! sends, the telemetry tapped from it, and the command being carried out (one write at
//! a time, each a CS→charger call whose CALLRESULT or CALLERROR arrives here).

use super::command;
use super::frame::{self, Frame, Malformed};
use super::hub::{ConnCmd, Hub};
use super::map::{self, ChargePoint};
use crate::model::command::{Refusal, WriteOutcome};
use crate::model::{Value, now_ms, rfc3339_ms};
use crate::ops::counters::Counters;
use crate::ops::failure_log::FailureLog;
use serde_json::Value as Json;
use tokio::time::Instant;

/// A command being carried out: one write at a time, in order.
pub(super) struct Active {
    pub cmd: ConnCmd,
    pub next: usize,
    pub applied: Vec<(usize, Value)>,
    /// (message id, action, deadline) of the call awaiting the charger's answer.
    pub waiting: Option<(String, &'static str, Instant)>,
}

impl Active {
    pub fn new(cmd: ConnCmd) -> Active {
        Active {
            cmd,
            next: 0,
            applied: vec![],
            waiting: None,
        }
    }
}

/// Taps the telemetry of a call and its answer (both modes).
pub(super) async fn tap(
    hub: &Hub,
    cp: &str,
    state: &mut ChargePoint,
    action: &str,
    req: &Json,
    conf: &Json,
) {
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

/// A frame from the charger → the text to answer with, if any.
pub(super) async fn on_charger_frame(
    hub: &Hub,
    cp: &str,
    state: &mut ChargePoint,
    text: &str,
    active: &mut Option<Active>,
    log: &mut FailureLog,
) -> Option<String> {
    let f = match frame::parse(text) {
        Ok(f) => f,
        Err(e) => return malformed(hub, cp, log, e),
    };
    match f {
        Frame::Call {
            id,
            action,
            payload,
        } => on_call(hub, cp, state, (id, action, payload), log).await,
        Frame::Result { id, payload } => {
            on_result(hub, active, &id, &payload).await;
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

/// Counts and logs (rate-limited) a malformed frame; the CALLERROR answering it.
fn malformed(hub: &Hub, cp: &str, log: &mut FailureLog, e: Malformed) -> Option<String> {
    Counters::inc(&hub.counters.ocpp_malformed);
    log.on_failure(
        std::time::Instant::now(),
        || tracing::info!(charge_point = cp, code = e.code, error = %e.description, "malformed OCPP frame; further ones are counted (ocpp_malformed) and summarized"),
        |count| tracing::info!(charge_point = cp, code = e.code, error = %e.description, malformed = count, "malformed OCPP frames still arriving"),
    );
    Some(e.to_text())
}

/// A call of the charger (id, action, payload) → its CALLRESULT or CALLERROR.
async fn on_call(
    hub: &Hub,
    cp: &str,
    state: &mut ChargePoint,
    (id, action, payload): (String, String, Json),
    log: &mut FailureLog,
) -> Option<String> {
    let mut tx = None;
    if action == "StartTransaction" && !hub.has_connector(cp, payload.get("connectorId")) {
        return malformed(
            hub,
            cp,
            log,
            Malformed::new(
                &id,
                "PropertyConstraintViolation",
                "connectorId: not a connector configured for this charge point",
            ),
        );
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
        Err(e) => malformed(hub, cp, log, Malformed { id, ..e }),
    }
}

/// The charger's answer to the call the active command waits for: the write is applied
/// (the next one follows), or the command fails with the charger's refusal.
async fn on_result(hub: &Hub, active: &mut Option<Active>, id: &str, payload: &Json) {
    if let Some(a) = active.as_mut()
        && let Some((want, action, _)) = &a.waiting
        && *want == id
    {
        let action = *action;
        a.waiting = None;
        match command::outcome(action, payload) {
            Ok(()) => {
                let (_, i, v) = &a.cmd.writes[a.next];
                a.applied.push((*i, v.clone()));
                a.next += 1;
            }
            Err(e) => finish(hub, active.take(), Some(e)).await,
        }
    }
}

/// Answers a command: the written values on success (and their telemetry for the points
/// only commands reveal), the points applied before a failure otherwise.
pub(super) async fn finish(hub: &Hub, active: Option<Active>, error: Option<Refusal>) {
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
