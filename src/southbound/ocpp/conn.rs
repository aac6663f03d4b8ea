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

use super::central::{self, Active, finish};
use super::command;
use super::frame::{self, Frame};
use super::hub::{ConnCmd, Hub, Live};
use super::map::{self, ChargePoint};
use crate::model::command::Refusal;
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

const DISCONNECTED: &str = "charger disconnected";

/// What the loop does after a turn.
enum Turn {
    /// Send the active command's next write, if one is due.
    Next,
    /// Wait for the next event.
    Wait,
    /// Close the connection; the devices' offline reason, None when replaced or stopped.
    End(Option<&'static str>),
}

/// One charger's connection while it is served.
struct Served<'h, S, U> {
    hub: &'h Hub,
    cp: String,
    /// This connection's number (a newer one of the same charge point replaces it).
    conn: u64,
    ws: WebSocketStream<S>,
    /// Proxy mode: the connection to the upstream CSMS.
    upstream: Option<WebSocketStream<U>>,
    state: ChargePoint,
    silence: Duration,
    last_rx: Instant,
    silent: bool,
    active: Option<Active>,
    msg_no: u64,
    relayed: Relayed,
    rate: TokenBucket,
    logs: Logs,
}

/// Serves a connected charger until it closes, goes silent for good, is replaced by a
/// newer connection of the same charge point, or the driver stops.
pub async fn serve<S, U>(
    hub: Arc<Hub>,
    cp: String,
    mut ws: WebSocketStream<S>,
    upstream: Option<WebSocketStream<U>>,
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
    let (cmd_tx, cmd_rx) = mpsc::channel(CMD_CAPACITY);
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
    let served = Served {
        hub: &hub,
        silence: Duration::from_secs(hub.cfg.heartbeat_s.saturating_mul(3)),
        cp,
        conn,
        ws,
        upstream,
        state: ChargePoint { open },
        last_rx: Instant::now(),
        silent: false,
        active: None,
        msg_no: 0,
        relayed: Relayed::default(),
        rate: TokenBucket::new(FRAMES_PER_S, FRAME_BURST, Instant::now()),
        logs: Logs::default(),
    };
    served.run(cmd_rx, mine).await;
}

impl<S, U> Served<'_, S, U>
where
    S: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(mut self, mut cmd_rx: mpsc::Receiver<ConnCmd>, mine: CancellationToken) {
        let proxy = self.upstream.is_some();
        self.hub.set_cp_state(&self.cp, true, None).await;
        let reason = loop {
            let deadline = self
                .active
                .as_ref()
                .and_then(|a| a.waiting.as_ref().map(|w| w.2))
                .unwrap_or_else(|| self.last_rx + self.silence);
            let up_next = async {
                match self.upstream.as_mut() {
                    Some(u) => u.next().await,
                    None => std::future::pending().await,
                }
            };
            let turn = tokio::select! {
                _ = mine.cancelled() => Turn::End(None),
                msg = self.ws.next() => self.on_charger_msg(msg).await,
                msg = up_next => self.on_upstream_msg(msg).await,
                cmd = cmd_rx.recv(), if self.active.is_none() && !proxy => {
                    if let Some(cmd) = cmd {
                        self.active = Some(Active::new(cmd));
                        Turn::Next
                    } else {
                        Turn::Wait
                    }
                }
                _ = tokio::time::sleep_until(deadline) => self.on_deadline().await,
            };
            match turn {
                Turn::End(reason) => break reason,
                Turn::Wait => {}
                Turn::Next => {
                    if let Some(reason) = self.next_write().await {
                        break reason;
                    }
                }
            }
        };
        self.end(reason).await;
    }

    /// A message from the charger.
    async fn on_charger_msg(&mut self, msg: Option<Result<Message, WsError>>) -> Turn {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Binary(_))) => {
                Counters::inc(&self.hub.counters.ocpp_malformed);
                let e = frame::error("-1", "FormationViolation", "OCPP-J frames are text");
                if !send(&mut self.ws, Message::text(e)).await {
                    return Turn::End(Some(DISCONNECTED));
                }
                return Turn::Wait;
            }
            Some(Ok(Message::Close(_))) | None => return Turn::End(Some(DISCONNECTED)),
            Some(Ok(_)) => {
                self.last_rx = Instant::now();
                return Turn::Wait;
            }
            Some(Err(WsError::Capacity(e))) => {
                // Past MAX_FRAME_BYTES nothing of the frame is kept: refuse it and
                // close (1009), the charger reconnects and its offline queue resends.
                Counters::inc(&self.hub.counters.ocpp_malformed);
                tracing::warn!(charge_point = %self.cp, error = %e, limit = frame::MAX_FRAME_BYTES, "charger frame too large: connection closed");
                let too_large = CloseFrame {
                    code: CloseCode::Size,
                    reason: "frame too large".into(),
                };
                close(&mut self.ws, Some(too_large)).await;
                return Turn::End(Some(DISCONNECTED));
            }
            Some(Err(e)) => {
                tracing::info!(charge_point = %self.cp, error = %e, "charger connection failed");
                return Turn::End(Some(DISCONNECTED));
            }
        };
        self.last_rx = Instant::now();
        if self.rate.take(self.last_rx).is_err() {
            return self.rate_limited(&text).await;
        }
        if self.silent {
            self.silent = false;
            self.hub.set_cp_state(&self.cp, true, None).await;
        }
        if let Some(u) = self.upstream.as_mut() {
            if let Ok(Frame::Call {
                id,
                action,
                payload,
            }) = frame::parse(&text)
            {
                self.relayed.insert(id, action, payload, self.last_rx);
            }
            if !send(u, Message::text(text)).await {
                return Turn::End(Some(super::UPSTREAM_DOWN));
            }
            return Turn::Wait;
        }
        let reply = central::on_charger_frame(
            self.hub,
            &self.cp,
            &mut self.state,
            &text,
            &mut self.active,
            &mut self.logs.malformed,
        )
        .await;
        if let Some(reply) = reply
            && !send(&mut self.ws, Message::text(reply)).await
        {
            return Turn::End(Some(DISCONNECTED));
        }
        Turn::Next
    }

    /// Beyond the rate nothing of the frame is used; a call is answered.
    async fn rate_limited(&mut self, text: &str) -> Turn {
        let cp = &self.cp;
        Counters::inc(&self.hub.counters.ocpp_rate_limited);
        self.logs.rate.on_failure(
            std::time::Instant::now(),
            || tracing::warn!(charge_point = %cp, rate = FRAMES_PER_S, burst = FRAME_BURST, "charger sends too many frames: the excess is refused (counted in ocpp_rate_limited)"),
            |count| tracing::warn!(charge_point = %cp, refused = count, "charger still sends too many frames"),
        );
        if let Ok(Frame::Call { id, .. }) = frame::parse(text) {
            let e = frame::error(&id, "GenericError", "rate limit exceeded: frame refused");
            if !send(&mut self.ws, Message::text(e)).await {
                return Turn::End(Some(DISCONNECTED));
            }
        }
        Turn::Wait
    }

    /// Proxy mode: a message from the upstream CSMS, tapped and relayed to the charger.
    async fn on_upstream_msg(&mut self, msg: Option<Result<Message, WsError>>) -> Turn {
        let text = match msg {
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Binary(b))) => {
                if !send(&mut self.ws, Message::Binary(b)).await {
                    return Turn::End(Some(DISCONNECTED));
                }
                return Turn::Wait;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                return Turn::End(Some(super::UPSTREAM_DOWN));
            }
            Some(Ok(_)) => return Turn::Wait,
        };
        match frame::parse(&text) {
            Ok(Frame::Result { id, payload }) => {
                if let Some((action, req)) = self.relayed.remove(&id) {
                    central::tap(self.hub, &self.cp, &mut self.state, &action, &req, &payload)
                        .await;
                }
            }
            Ok(Frame::Error { id, .. }) => {
                self.relayed.remove(&id);
            }
            _ => {}
        }
        if !send(&mut self.ws, Message::text(text)).await {
            return Turn::End(Some(DISCONNECTED));
        }
        Turn::Next
    }

    /// The active command's answer deadline, or the silence deadline, has come.
    async fn on_deadline(&mut self) -> Turn {
        let now = Instant::now();
        if let Some(a) = self
            .active
            .as_mut()
            .filter(|a| a.waiting.as_ref().is_some_and(|w| w.2 <= now))
        {
            a.waiting = None;
            let late = Refusal::Timeout("charger did not answer".into());
            finish(self.hub, self.active.take(), Some(late)).await;
        } else if self.last_rx + self.silence <= now && !self.silent {
            // Silent for three heartbeats: a charger that is still there reconnects; a
            // half-open one gives its task and slot back.
            tracing::info!(charge_point = %self.cp, silent_s = self.silence.as_secs(), "charger silent: connection closed");
            return Turn::End(Some(DISCONNECTED));
        }
        Turn::Next
    }

    /// Sends the next write of the active command, or finishes it; Some(reason) when the
    /// connection is to end.
    async fn next_write(&mut self) -> Option<Option<&'static str>> {
        let a = self.active.as_mut().filter(|a| a.waiting.is_none())?;
        if a.next >= a.cmd.writes.len() {
            finish(self.hub, self.active.take(), None).await;
            return None;
        }
        let dev = &self.hub.devices[a.cmd.device];
        let (name, _, value) = &a.cmd.writes[a.next];
        let open_tx = self
            .state
            .open
            .get(&dev.cfg.connector)
            .map(|o| o.transaction_id);
        match command::build(name, value, dev.cfg.connector, open_tx) {
            Ok((action, payload)) => {
                self.msg_no += 1;
                let id = format!("pg{}-{}", self.conn, self.msg_no);
                let text = frame::call(&id, action, &payload);
                a.waiting = Some((id, action, Instant::now() + ANSWER_TIMEOUT));
                if !send(&mut self.ws, Message::text(text)).await {
                    let gone = Refusal::DeviceOffline("charger disconnected".into());
                    finish(self.hub, self.active.take(), Some(gone)).await;
                    return Some(Some(DISCONNECTED));
                }
            }
            Err(e) => finish(self.hub, self.active.take(), Some(e)).await,
        }
        None
    }

    /// Closes both sides; only the current connection of a charge point speaks for its
    /// devices (`reason`: their offline reason).
    async fn end(mut self, reason: Option<&'static str>) {
        let gone = Refusal::DeviceOffline("charger disconnected".into());
        finish(self.hub, self.active.take(), Some(gone)).await;
        close(&mut self.ws, None).await;
        if let Some(mut u) = self.upstream.take() {
            close(&mut u, None).await;
        }
        let current = {
            let mut live = super::lock(&self.hub.live);
            let current = live.get(&self.cp).is_some_and(|l| l.conn == self.conn);
            if current {
                live.remove(&self.cp);
            }
            current
        };
        if current && let Some(reason) = reason {
            self.hub.set_cp_state(&self.cp, false, Some(reason)).await;
        }
        tracing::info!(charge_point = %self.cp, reason = reason.unwrap_or("replaced or stopped"), "charger connection closed");
    }
}

/// Per connection: one line when a flood or a run of malformed frames starts, then
/// summaries ([`FailureLog`]); never one per frame.
#[derive(Default)]
struct Logs {
    rate: FailureLog,
    malformed: FailureLog,
}
