//! JSON payloads of SPEC §5, written directly (keys in a stable, readable order) rather
//! than through an intermediate `serde_json::Value`: this runs for every event. Pure.

use crate::model::{Kind, Value, rfc3339_ms};
use crate::profile::PointDef;
use std::fmt::Write;

/// Common head of every buffered payload: `{"seq":..,"ts":..,"gateway":..`.
fn head(out: &mut String, seq: u64, ts_ms: u64, gateway: &str) {
    let _ = write!(
        out,
        "{{\"seq\":{seq},\"ts\":\"{}\",\"gateway\":",
        rfc3339_ms(ts_ms)
    );
    json_str(out, gateway);
}

pub fn json_str(out: &mut String, s: &str) {
    // serde_json's string escaping; writing to a String cannot fail.
    if let Ok(q) = serde_json::to_string(s) {
        out.push_str(&q);
    }
}

fn key(out: &mut String, k: &str) {
    out.push(',');
    json_str(out, k);
    out.push(':');
}

pub fn json_value(out: &mut String, v: &Value) {
    match v {
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_finite() => {
            // serde_json prints the shortest round-trip form (80.0, 54.5, 0.001).
            out.push_str(
                &serde_json::Number::from_f64(*f).map_or("null".into(), |n| n.to_string()),
            );
        }
        Value::Float(_) => out.push_str("null"),
        Value::Text(s) => json_str(out, s),
    }
}

/// `P/G/D/telemetry`.
pub fn telemetry(
    seq: u64,
    ts_ms: u64,
    gateway: &str,
    device: &str,
    kind: Kind,
    points: &[(&str, &Value)],
) -> Vec<u8> {
    let mut out = String::with_capacity(128 + points.len() * 24);
    head(&mut out, seq, ts_ms, gateway);
    key(&mut out, "device");
    json_str(&mut out, device);
    key(&mut out, "kind");
    json_str(&mut out, kind.as_str());
    out.push_str(",\"points\":{");
    for (i, (name, v)) in points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(&mut out, name);
        out.push(':');
        json_value(&mut out, v);
    }
    out.push_str("}}");
    out.into_bytes()
}

/// What a birth certificate says about a device.
pub struct Birth<'a> {
    pub device: &'a str,
    pub kind: Kind,
    pub profile: &'a str,
    pub online: bool,
    pub reason: Option<&'a str>,
    pub meta: &'a serde_json::Map<String, serde_json::Value>,
    pub points: &'a [PointDef],
}

/// `P/G/D/state`, the device's birth certificate.
pub fn state(seq: u64, ts_ms: u64, gateway: &str, b: &Birth<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(256 + b.points.len() * 64);
    head(&mut out, seq, ts_ms, gateway);
    key(&mut out, "device");
    json_str(&mut out, b.device);
    key(&mut out, "kind");
    json_str(&mut out, b.kind.as_str());
    key(&mut out, "profile");
    json_str(&mut out, b.profile);
    key(&mut out, "state");
    json_str(&mut out, if b.online { "online" } else { "offline" });
    if let Some(r) = b.reason {
        key(&mut out, "reason");
        json_str(&mut out, r);
    }
    key(&mut out, "meta");
    out.push_str(&serde_json::to_string(b.meta).unwrap_or_else(|_| "{}".into()));
    out.push_str(",\"points\":{");
    for (i, p) in b.points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(&mut out, &p.name);
        out.push_str(":{");
        if let Some(u) = &p.unit {
            out.push_str("\"unit\":");
            json_str(&mut out, u);
            out.push(',');
        }
        let _ = write!(out, "\"writable\":{}", p.writable);
        for (k, v) in [("min", p.min), ("max", p.max)] {
            if let Some(v) = v {
                key(&mut out, k);
                json_value(&mut out, &number(v));
            }
        }
        out.push('}');
    }
    out.push_str("}}");
    out.into_bytes()
}

/// Integral limits print as integers (`"max":100`), others as floats.
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::Int(v as i64)
    } else {
        Value::Float(v)
    }
}

/// Contents of a `stats` event.
pub struct StatsBody<'a> {
    pub uptime_s: u64,
    pub buffer_events: u64,
    pub buffer_bytes: u64,
    pub buffer_dropped: u64,
    pub published: u64,
    pub online: u64,
    pub offline: u64,
    pub errors: &'a [(&'static str, u64)],
    /// Modbus error counters per link (all of them).
    pub links: &'a crate::ops::counters::Named,
    /// Modbus error counters per device (non-zero ones, devices with errors only).
    pub device_errors: &'a crate::ops::counters::Named,
}

/// `P/G/stats`.
pub fn stats(seq: u64, ts_ms: u64, gateway: &str, s: &StatsBody<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    head(&mut out, seq, ts_ms, gateway);
    let _ = write!(
        out,
        ",\"uptime_s\":{},\"buffer\":{{\"events\":{},\"bytes\":{},\"dropped\":{}}},\"published\":{},\"devices\":{{\"online\":{},\"offline\":{}}},\"errors\":{{",
        s.uptime_s,
        s.buffer_events,
        s.buffer_bytes,
        s.buffer_dropped,
        s.published,
        s.online,
        s.offline
    );
    counts(&mut out, s.errors);
    out.push_str("},\"links\":");
    named(&mut out, s.links);
    out.push_str(",\"device_errors\":");
    named(&mut out, s.device_errors);
    out.push('}');
    out.into_bytes()
}

/// `"name":n,...` (names are static identifiers, never escaped).
fn counts(out: &mut String, c: &[(&'static str, u64)]) {
    for (i, (k, v)) in c.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{k}\":{v}");
    }
}

/// `{"<name>":{"counter":n,...},...}`.
fn named(out: &mut String, n: &crate::ops::counters::Named) {
    out.push('{');
    for (i, (name, c)) in n.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, name);
        out.push_str(":{");
        counts(out, c);
        out.push('}');
    }
    out.push('}');
}

/// `P/G/D/cmd/result`.
pub fn cmd_result(
    seq: u64,
    ts_ms: u64,
    gateway: &str,
    r: &crate::model::command::CmdResult,
) -> Vec<u8> {
    let mut out = String::with_capacity(160);
    head(&mut out, seq, ts_ms, gateway);
    key(&mut out, "device");
    json_str(&mut out, &r.device);
    key(&mut out, "id");
    match &r.id {
        Some(id) => json_str(&mut out, id),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"ok\":{}", r.ok);
    if r.ok || !r.points.is_empty() {
        out.push_str(",\"points\":{");
        for (i, (name, v)) in r.points.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(&mut out, name);
            out.push(':');
            json_value(&mut out, v);
        }
        out.push('}');
    }
    if let Some(e) = &r.error {
        key(&mut out, "error");
        json_str(&mut out, e);
    }
    if let Some(s) = &r.status {
        key(&mut out, "status");
        json_str(&mut out, s);
    }
    out.push('}');
    out.into_bytes()
}

/// `P/G/status` (not buffered; also the last will).
pub fn status(online: bool, ts_ms: u64, devices: usize) -> Vec<u8> {
    format!(
        "{{\"state\":\"{}\",\"ts\":\"{}\",\"version\":\"{}\",\"devices\":{devices}}}",
        if online { "online" } else { "offline" },
        rfc3339_ms(ts_ms),
        env!("CARGO_PKG_VERSION"),
    )
    .into_bytes()
}

/// Marks a buffered payload as replayed backlog: `{...}` -> `{...,"historical":true}`.
pub fn mark_historical(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 20);
    match payload.iter().rposition(|&b| b == b'}') {
        Some(end) => {
            out.extend_from_slice(&payload[..end]);
            out.extend_from_slice(b",\"historical\":true");
            out.extend_from_slice(&payload[end..]);
        }
        None => out.extend_from_slice(payload),
    }
    out
}

#[cfg(test)]
mod tests {
    //! Proves the payloads are valid JSON with the exact fields of SPEC §5.
    use super::*;
    use crate::profile::PointType;
    use serde_json::json;

    fn parse(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).expect("valid JSON")
    }

    #[test]
    fn telemetry_has_the_contract_fields_and_numbers_keep_their_json_type() {
        let v80 = Value::Int(80);
        let p = Value::Float(54.5);
        let f = Value::Bool(false);
        let b = telemetry(
            7,
            1_795_886_665_123,
            "cab-1",
            "lamp-017",
            Kind::Lamp,
            &[("dim_level", &v80), ("power", &p), ("lamp_failure", &f)],
        );
        assert_eq!(
            parse(&b),
            json!({"seq":7,"ts":"2026-11-28T17:24:25.123Z","gateway":"cab-1","device":"lamp-017",
                   "kind":"lamp","points":{"dim_level":80,"power":54.5,"lamp_failure":false}})
        );
        assert!(String::from_utf8_lossy(&b).contains("\"dim_level\":80,"));
    }

    #[test]
    fn state_is_a_birth_certificate_with_units_writability_ranges_and_meta() {
        let mut meta = serde_json::Map::new();
        meta.insert("pole".into(), json!("P-017"));
        let points = vec![PointDef {
            name: "dim_level".into(),
            unit: Some("%".into()),
            ty: PointType::U16,
            reg: None,
            scale: 1.0,
            offset: 0.0,
            deadband: None,
            writable: true,
            min: Some(0.0),
            max: Some(100.0),
            values: None,
        }];
        let b = state(
            1,
            0,
            "g",
            &Birth {
                device: "lamp-017",
                kind: Kind::Lamp,
                profile: "generic-lamp-modbus",
                online: false,
                reason: Some("timeout"),
                meta: &meta,
                points: &points,
            },
        );
        assert_eq!(
            parse(&b),
            json!({"seq":1,"ts":"1970-01-01T00:00:00.000Z","gateway":"g","device":"lamp-017",
                   "kind":"lamp","profile":"generic-lamp-modbus","state":"offline","reason":"timeout",
                   "meta":{"pole":"P-017"},
                   "points":{"dim_level":{"unit":"%","writable":true,"min":0,"max":100}}})
        );
    }

    #[test]
    fn historical_marking_keeps_the_payload_valid_json() {
        let b = mark_historical(br#"{"seq":1,"points":{"a":1}}"#);
        assert_eq!(
            parse(&b),
            json!({"seq":1,"points":{"a":1},"historical":true})
        );
    }

    #[test]
    fn stats_and_status_are_valid_json_with_errors_per_link_and_per_device() {
        let links = vec![(
            "10.0.0.17:502".to_string(),
            vec![("modbus_timeout", 4), ("modbus_exception", 1)],
        )];
        let device_errors = vec![(
            "lamp-\"017\"".to_string(),
            vec![("modbus_timeout", 3), ("modbus_exception", 1)],
        )];
        let s = stats(
            3,
            0,
            "g",
            &StatsBody {
                uptime_s: 5,
                buffer_events: 1,
                buffer_bytes: 2,
                buffer_dropped: 0,
                published: 9,
                online: 2,
                offline: 1,
                errors: &[("modbus_timeout", 4)],
                links: &links,
                device_errors: &device_errors,
            },
        );
        assert_eq!(parse(&s)["errors"], json!({"modbus_timeout": 4}));
        assert_eq!(
            parse(&s)["links"],
            json!({"10.0.0.17:502": {"modbus_timeout": 4, "modbus_exception": 1}})
        );
        assert_eq!(
            parse(&s)["device_errors"],
            json!({"lamp-\"017\"": {"modbus_timeout": 3, "modbus_exception": 1}})
        );
        assert_eq!(parse(&s)["devices"]["offline"], 1);
        assert_eq!(parse(&status(true, 0, 3))["devices"], 3);
    }
}
