//! A simulated OCPP 1.6J charger for `polegate demo`: it connects to the gateway's OCPP
//! listener, boots, plugs in and starts a transaction, then sends MeterValues (energy,
//! power, current) every few seconds, answers every call the central system makes
//! (availability, current cap, remote start/stop, reset, unlock) with `Accepted`, and
//! follows a current cap in the power it draws. It reconnects if the gateway drops it.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;

pub const DEVICE_ID: &str = "evc-darcy-1";
const CHARGE_POINT: &str = "CP-DARCY";
/// Seconds between MeterValues.
pub const METER_EVERY: Duration = Duration::from_secs(3);
const VOLTAGE: f64 = 230.0;

/// Writes the OCPP profile and the `[ocpp]` + connector device config beside `config`;
/// returns the TCP port the daemon will listen on for chargers.
pub fn prepare(config: &Path, dir: &Path) -> std::io::Result<u16> {
    std::fs::write(
        dir.join("plugins").join("ocpp-charger.toml"),
        include_str!("../../plugins/generic/ocpp-charger.toml"),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let text = format!(
        "\n[ocpp]\nlisten = \"127.0.0.1:{port}\"\nheartbeat_s = 60\n\n[[device]]\nid = \"{DEVICE_ID}\"\n\
         profile = \"ocpp-charger\"\nmeta = {{ pole = \"P-022\", street = \"Place Darcy\" }}\n\
         ocpp = {{ charge_point_id = \"{CHARGE_POINT}\", connector = 1 }}\n"
    );
    super::append_config(config, &text)?;
    Ok(port)
}

/// The charger's own state between frames.
struct Charger {
    next_id: u64,
    /// Wh on the meter.
    energy_wh: f64,
    /// The current the car draws (A), capped by the central system's `max_current`.
    current_a: f64,
    transaction: Option<i64>,
    available: bool,
}

impl Charger {
    fn call(&mut self, action: &str, payload: Value) -> (String, Message) {
        self.next_id += 1;
        let id = format!("demo-{}", self.next_id);
        let text = json!([2, id, action, payload]).to_string();
        (id, Message::text(text))
    }

    fn power_w(&self) -> f64 {
        if self.transaction.is_some() && self.available {
            self.current_a * VOLTAGE
        } else {
            0.0
        }
    }

    fn meter_values(&mut self, every: Duration) -> Value {
        self.energy_wh += self.power_w() * every.as_secs_f64() / 3600.0;
        let mut v = json!({
            "connectorId": 1,
            "meterValue": [{
                "timestamp": crate::model::rfc3339_ms(crate::model::now_ms()),
                "sampledValue": [
                    { "value": format!("{:.0}", self.energy_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh" },
                    { "value": format!("{:.0}", self.power_w()), "measurand": "Power.Active.Import", "unit": "W" },
                    { "value": format!("{:.1}", if self.power_w() > 0.0 { self.current_a } else { 0.0 }), "measurand": "Current.Import", "unit": "A" },
                ]
            }]
        });
        if let Some(tx) = self.transaction {
            v["transactionId"] = json!(tx);
        }
        v
    }

    /// The answer to one call of the central system.
    fn answer(&mut self, action: &str, payload: &Value) -> Value {
        match action {
            "ChangeAvailability" => {
                self.available = payload["type"] == "Operative";
                json!({ "status": "Accepted" })
            }
            "SetChargingProfile" => {
                let limit = &payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
                    [0]["limit"];
                if let Some(a) = limit.as_f64() {
                    self.current_a = a.min(32.0);
                }
                json!({ "status": "Accepted" })
            }
            "RemoteStartTransaction"
            | "RemoteStopTransaction"
            | "Reset"
            | "UnlockConnector"
            | "ChangeConfiguration" => {
                let status = if action == "UnlockConnector" {
                    "Unlocked"
                } else {
                    "Accepted"
                };
                json!({ "status": status })
            }
            _ => json!({}),
        }
    }
}

/// Runs the charger until `cancel`, against `ws://127.0.0.1:port/ocpp/CP-DARCY`.
pub async fn charger(port: u16, cancel: CancellationToken) {
    let mut state = Charger {
        next_id: 0,
        energy_wh: 1_254_000.0,
        current_a: 16.0,
        transaction: None,
        available: true,
    };
    loop {
        let session = session(port, &mut state, &cancel);
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = session => if let Err(e) = r {
                tracing::debug!(error = %e, "demo charger: connection ended");
            },
        }
        state.transaction = None;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

type WsError = tokio_tungstenite::tungstenite::Error;

async fn session(port: u16, st: &mut Charger, cancel: &CancellationToken) -> Result<(), WsError> {
    let mut req = format!("ws://127.0.0.1:{port}/ocpp/{CHARGE_POINT}").into_client_request()?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("ocpp1.6"),
    );
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await?;

    // The opening a real charger goes through, each call answered before the next.
    let boot = json!({ "chargePointVendor": "Demo", "chargePointModel": "Pole AC 22", "chargePointSerialNumber": "DJ-0042", "firmwareVersion": "1.4.2" });
    let status = |s: &str| json!({ "connectorId": 1, "errorCode": "NoError", "status": s });
    let start = json!({ "connectorId": 1, "idTag": "DIJON-CARD-17", "meterStart": st.energy_wh as i64, "timestamp": crate::model::rfc3339_ms(crate::model::now_ms()) });
    let opening = [
        ("BootNotification", boot),
        ("StatusNotification", status("Available")),
        ("StatusNotification", status("Preparing")),
        ("StartTransaction", start),
        ("StatusNotification", status("Charging")),
    ];
    for (action, payload) in opening {
        let (id, msg) = st.call(action, payload);
        ws.send(msg).await?;
        let answer = await_result(&mut ws, st, &id).await?;
        if action == "StartTransaction" {
            st.transaction = answer["transactionId"].as_i64();
        }
    }
    let mut meter = tokio::time::interval(METER_EVERY);
    meter.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = meter.tick() => {
                let mv = st.meter_values(METER_EVERY);
                let (_, msg) = st.call("MeterValues", mv);
                ws.send(msg).await?;
            }
            frame = ws.next() => match frame {
                None => return Ok(()),
                Some(frame) => on_frame(&mut ws, st, frame?).await?,
            },
        }
    }
}

/// Reads frames (answering calls meanwhile) until the result of call `id`.
async fn await_result<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    st: &mut Charger,
    id: &str,
) -> Result<Value, WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(frame) = ws.next().await {
        let frame = frame?;
        if let Some(text) = frame.to_text().ok().filter(|t| !t.is_empty())
            && let Ok(Value::Array(a)) = serde_json::from_str::<Value>(text)
            && a.first() == Some(&json!(3))
            && a.get(1).and_then(Value::as_str) == Some(id)
        {
            return Ok(a.get(2).cloned().unwrap_or(Value::Null));
        }
        on_frame(ws, st, frame).await?;
    }
    Err(WsError::ConnectionClosed)
}

/// Answers a call of the central system; ignores anything else.
async fn on_frame<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    st: &mut Charger,
    frame: Message,
) -> Result<(), WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(text) = frame.to_text() else {
        return Ok(());
    };
    let Ok(Value::Array(a)) = serde_json::from_str::<Value>(text) else {
        return Ok(());
    };
    if let (Some(2), Some(id), Some(action)) = (
        a.first().and_then(Value::as_u64),
        a.get(1).and_then(Value::as_str),
        a.get(2).and_then(Value::as_str),
    ) {
        let answer = st.answer(action, a.get(3).unwrap_or(&Value::Null));
        ws.send(Message::text(json!([3, id, answer]).to_string()))
            .await?;
    }
    Ok(())
}
