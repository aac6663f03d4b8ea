//! OCPP 1.6 messages → normalized points (SPEC §9), and the central system's answers.
//! Pure: the I/O task feeds it frames and applies what comes out.
//!
//! Lenient like real chargers need: numbers are accepted where the schema says string
//! (`sampledValue.value`), unknown fields are ignored, ids and counters may come as
//! strings or numbers. Required fields that are missing or of the wrong shape give a
//! [`Malformed`] (`FormationViolation`), answered as a CALLERROR.

use super::frame::Malformed;
use crate::model::Value;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use std::collections::BTreeMap;

/// What a frame means for the devices of one charge point.
#[derive(Debug, Clone, PartialEq)]
pub enum Tap {
    /// Points of connector N; connector 0 is every connector of the charge point.
    Points {
        connector: u32,
        points: Vec<(String, Value)>,
    },
    /// BootNotification: births re-sent with these `meta` additions.
    Booted(Map<String, Json>),
}

/// A transaction as seen on the wire; persisted so a restart keeps `energy_session`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Open {
    pub transaction_id: i64,
    /// Wh, as the charger sent in StartTransaction.
    pub meter_start: f64,
}

/// The tapped state of one charge point: its open transactions by connector.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChargePoint {
    pub open: BTreeMap<u32, Open>,
}

/// The charger→CS calls [`ChargePoint::tap`] reads (proxy mode keeps only their payloads).
pub const TAPPED: [&str; 5] = [
    "BootNotification",
    "StatusNotification",
    "MeterValues",
    "StartTransaction",
    "StopTransaction",
];

/// OCPP 1.6's CiString bounds of what is published: vendor and model CiString20, serial
/// numbers CiString25, firmware CiString50, idTag CiString20; enum-valued fields
/// (errorCode, reason) are at most [`MAX_ENUM_CHARS`]. Longer strings are cut to the bound
/// (chargers that overrun the schema exist; the published value stays bounded).
pub const MAX_ENUM_CHARS: usize = 50;

/// `s` cut to at most `max` characters.
pub fn bounded(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
    }
    s
}

fn bad(what: impl Into<String>) -> Malformed {
    Malformed::new("-1", "FormationViolation", what)
}

fn number(v: Option<&Json>) -> Option<f64> {
    match v? {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn need_u32(p: &Json, key: &str) -> Result<u32, Malformed> {
    number(p.get(key))
        .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
        .map(|n| n as u32)
        .ok_or_else(|| bad(format!("{key}: a non-negative integer is required")))
}

fn need_text(p: &Json, key: &str) -> Result<String, Malformed> {
    text(p.get(key)).ok_or_else(|| bad(format!("{key}: required")))
}

/// `SuspendedEVSE` → `suspended_evse` (the nine OCPP 1.6 statuses, SPEC §4).
pub fn status_name(s: &str) -> Option<&'static str> {
    Some(match s {
        "Available" => "available",
        "Preparing" => "preparing",
        "Charging" => "charging",
        "SuspendedEV" => "suspended_ev",
        "SuspendedEVSE" => "suspended_evse",
        "Finishing" => "finishing",
        "Reserved" => "reserved",
        "Unavailable" => "unavailable",
        "Faulted" => "faulted",
        _ => return None,
    })
}

fn plugged(status: &str) -> bool {
    matches!(
        status,
        "preparing" | "charging" | "suspended_ev" | "suspended_evse" | "finishing"
    )
}

/// One `sampledValue` → (point name, value in SI units), None when not mapped.
pub fn sample(sv: &Json) -> Option<(String, f64)> {
    let raw = number(sv.get("value"))?;
    let measurand = sv
        .get("measurand")
        .and_then(Json::as_str)
        .unwrap_or("Energy.Active.Import.Register");
    let point = match measurand {
        "Energy.Active.Import.Register" => "energy_total",
        "Power.Active.Import" => "power",
        "Current.Import" => "current",
        "Voltage" => "voltage",
        "Current.Offered" => "max_current",
        "SoC" => "x_soc",
        "Temperature" => "x_temperature",
        _ => return None,
    };
    let factor = match sv.get("unit").and_then(Json::as_str) {
        Some("kWh") | Some("kW") => 1000.0,
        _ => 1.0,
    };
    let value = raw * factor;
    match sv.get("phase").and_then(Json::as_str) {
        None => Some((point.to_string(), value)),
        Some(phase) => {
            let base = point.strip_prefix("x_").unwrap_or(point);
            let phase = phase
                .trim_end_matches("-N")
                .to_ascii_lowercase()
                .replace('-', "_");
            Some((format!("x_{base}_{phase}"), value))
        }
    }
}

/// A tap of named points on `connector`.
fn points(connector: u32, points: Vec<(&str, Value)>) -> Tap {
    Tap::Points {
        connector,
        points: points
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
    }
}

/// BootNotification → the charger's identity for its devices' `meta`.
fn booted(req: &Json) -> Vec<Tap> {
    let mut meta = Map::new();
    for (key, field, max) in [
        ("ocpp_vendor", "chargePointVendor", 20),
        ("ocpp_model", "chargePointModel", 20),
        ("ocpp_serial", "chargePointSerialNumber", 25),
        ("ocpp_firmware", "firmwareVersion", 50),
    ] {
        if let Some(v) = text(req.get(field)) {
            meta.insert(key.into(), Json::String(bounded(v, max)));
        }
    }
    if !meta.contains_key("ocpp_serial")
        && let Some(v) = text(req.get("chargeBoxSerialNumber"))
    {
        meta.insert("ocpp_serial".into(), Json::String(bounded(v, 25)));
    }
    vec![Tap::Booted(meta)]
}

/// StatusNotification → the connector's status, or the charge point's on connector 0.
fn status(req: &Json) -> Result<Vec<Tap>, Malformed> {
    let connector = need_u32(req, "connectorId")?;
    let raw = need_text(req, "status")?;
    let status = status_name(&raw)
        .ok_or_else(|| bad(format!("status: '{raw}' is not an OCPP 1.6 status")))?;
    if connector == 0 {
        return Ok(vec![points(
            0,
            vec![("x_charge_point_status", Value::Text(status.into()))],
        )]);
    }
    let mut p = vec![
        ("status", Value::Text(status.into())),
        ("plug_connected", Value::Bool(plugged(status))),
    ];
    if let Some(code) = text(req.get("errorCode")) {
        p.push(("fault_code", Value::Text(bounded(code, MAX_ENUM_CHARS))));
    }
    Ok(vec![points(connector, p)])
}

impl ChargePoint {
    /// The points a charger→CS call (`req`) and its answer (`conf`, from polegate or
    /// the upstream CSMS) imply. Updates the open transactions.
    pub fn tap(&mut self, action: &str, req: &Json, conf: &Json) -> Result<Vec<Tap>, Malformed> {
        match action {
            "BootNotification" => Ok(booted(req)),
            "StatusNotification" => status(req),
            "MeterValues" => self.meter_values(req),
            "StartTransaction" => self.started(req, conf),
            "StopTransaction" => self.stopped(req),
            _ => Ok(vec![]),
        }
    }

    /// MeterValues → the samples, the latest of each point, and `energy_session` during
    /// a transaction.
    fn meter_values(&self, req: &Json) -> Result<Vec<Tap>, Malformed> {
        let connector = need_u32(req, "connectorId")?;
        let Some(values) = req.get("meterValue").and_then(Json::as_array) else {
            return Err(bad("meterValue: an array is required"));
        };
        let mut points: Vec<(String, Value)> = Vec::new();
        for sv in values
            .iter()
            .filter_map(|mv| mv.get("sampledValue").and_then(Json::as_array))
            .flatten()
        {
            let Some((name, v)) = sample(sv) else {
                continue;
            };
            if name == "energy_total"
                && let Some(open) = self.open.get(&connector)
            {
                points.retain(|(n, _)| n != "energy_session");
                points.push(("energy_session".into(), Value::Float(v - open.meter_start)));
            }
            points.retain(|(n, _)| *n != name);
            points.push((name, Value::Float(v)));
        }
        Ok(vec![Tap::Points { connector, points }])
    }

    /// StartTransaction and its answer → an open transaction (nothing without an id).
    fn started(&mut self, req: &Json, conf: &Json) -> Result<Vec<Tap>, Malformed> {
        let connector = need_u32(req, "connectorId")?;
        let meter_start =
            number(req.get("meterStart")).ok_or_else(|| bad("meterStart: a number is required"))?;
        let id_tag = need_text(req, "idTag")?;
        let Some(tx) = number(conf.get("transactionId")) else {
            return Ok(vec![]);
        };
        let transaction_id = tx as i64;
        self.open.insert(
            connector,
            Open {
                transaction_id,
                meter_start,
            },
        );
        Ok(vec![points(
            connector,
            vec![
                ("x_transaction_id", Value::Int(transaction_id)),
                ("x_id_tag", Value::Text(bounded(id_tag, 20))),
                ("energy_session", Value::Float(0.0)),
            ],
        )])
    }

    /// StopTransaction → the session's energy; the transaction is closed.
    fn stopped(&mut self, req: &Json) -> Result<Vec<Tap>, Malformed> {
        let tx =
            number(req.get("transactionId")).ok_or_else(|| bad("transactionId: required"))? as i64;
        let meter_stop =
            number(req.get("meterStop")).ok_or_else(|| bad("meterStop: a number is required"))?;
        let reason = bounded(
            text(req.get("reason")).unwrap_or_else(|| "Local".into()),
            MAX_ENUM_CHARS,
        );
        let Some((&connector, open)) = self.open.iter().find(|(_, o)| o.transaction_id == tx)
        else {
            return Ok(vec![]);
        };
        let session = meter_stop - open.meter_start;
        self.open.remove(&connector);
        Ok(vec![points(
            connector,
            vec![
                ("energy_session", Value::Float(session)),
                ("x_stop_reason", Value::Text(reason)),
                ("x_transaction_id", Value::Int(0)),
            ],
        )])
    }
}

/// The central system's answer to a charger→CS call (SPEC §9). `accepts` is the idTag
/// policy, `next_tx` hands out a fresh transaction id.
pub fn answer(
    action: &str,
    req: &Json,
    now: &str,
    heartbeat_s: u64,
    accepts: &dyn Fn(&str) -> bool,
    next_tx: &mut dyn FnMut() -> i64,
) -> Result<Json, Malformed> {
    let id_tag_info =
        |tag: &str| json!({"status": if accepts(tag) { "Accepted" } else { "Invalid" }});
    Ok(match action {
        "BootNotification" => {
            need_text(req, "chargePointVendor")?;
            need_text(req, "chargePointModel")?;
            json!({"status": "Accepted", "currentTime": now, "interval": heartbeat_s})
        }
        "Heartbeat" => json!({"currentTime": now}),
        "StatusNotification" => {
            need_u32(req, "connectorId")?;
            need_text(req, "status")?;
            json!({})
        }
        "MeterValues" => {
            need_u32(req, "connectorId")?;
            json!({})
        }
        "Authorize" => json!({"idTagInfo": id_tag_info(&need_text(req, "idTag")?)}),
        "StartTransaction" => {
            need_u32(req, "connectorId")?;
            let tag = need_text(req, "idTag")?;
            json!({"idTagInfo": id_tag_info(&tag), "transactionId": next_tx()})
        }
        "StopTransaction" => match text(req.get("idTag")) {
            Some(tag) => json!({"idTagInfo": id_tag_info(&tag)}),
            None => json!({}),
        },
        "DataTransfer" => json!({"status": "UnknownVendorId"}),
        "DiagnosticsStatusNotification" | "FirmwareStatusNotification" => json!({}),
        other => {
            return Err(Malformed::new(
                "-1",
                "NotImplemented",
                format!("action '{other}' is not an OCPP 1.6 charge point message"),
            ));
        }
    })
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
