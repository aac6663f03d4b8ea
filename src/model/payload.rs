//! Every JSON payload of SPEC §5, built in one place: the events the pipeline queues and
//! the gateway `status` the session publishes. Written directly (keys in a stable,
//! readable order) rather than through an intermediate `serde_json::Value`: this runs for
//! every event. Pure.
//!
//! Encode once: a queued event is a [`Body`], its JSON object with the closing `}` left
//! off. The only thing decided after queueing, whether the event is delivered live or as
//! replayed backlog, is a typed [`Delivery`] that [`Body::publish`] turns into the closing
//! bytes: `}` or `,"historical":true}`. No stage after the encoder parses or edits JSON.

use super::{Kind, Value, rfc3339_ms};
use std::fmt::Write;

/// How a queued event reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Created while the current connection was up.
    Live,
    /// Created before the current connection came up (SPEC §5 `"historical": true`).
    Historical,
}

/// The closing bytes of a historical event, the longest tail: a body read back for
/// publishing reserves room for it, so closing does not reallocate.
const HISTORICAL_TAIL: &[u8] = b",\"historical\":true}";

impl Delivery {
    /// The bytes that close the object.
    fn tail(self) -> &'static [u8] {
        match self {
            Delivery::Live => b"}",
            Delivery::Historical => HISTORICAL_TAIL,
        }
    }
}

/// A queued event's JSON object without its closing `}`: every field is in it and the
/// last one is complete, so [`Body::publish`] only appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(Vec<u8>);

impl Body {
    /// Takes bytes this module encoded earlier (and the buffer kept), still open.
    pub fn from_open(open: &[u8]) -> Body {
        let mut v = Vec::with_capacity(open.len() + HISTORICAL_TAIL.len());
        v.extend_from_slice(open);
        Body(v)
    }

    /// Takes a complete object as queues written before [`Body`] existed hold it (every
    /// encoder ended the object with its final byte); `None` when it does not end in `}`.
    pub fn from_closed(closed: &[u8]) -> Option<Body> {
        closed.strip_suffix(b"}").map(Body::from_open)
    }

    /// The open object, as the buffer stores it.
    pub fn as_open(&self) -> &[u8] {
        &self.0
    }

    /// The payload to publish: the object closed for `delivery`.
    pub fn publish(mut self, delivery: Delivery) -> Vec<u8> {
        self.0.extend_from_slice(delivery.tail());
        self.0
    }

    fn from_string(s: String) -> Body {
        Body(s.into_bytes())
    }
}

/// Common head of every buffered payload: `{"seq":..,"ts":..,"gateway":..`.
fn head(out: &mut String, seq: u64, ts_ms: u64, gateway: &str) {
    let _ = write!(
        out,
        "{{\"seq\":{seq},\"ts\":\"{}\",\"gateway\":",
        rfc3339_ms(ts_ms)
    );
    json_str(out, gateway);
}

fn json_str(out: &mut String, s: &str) {
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

fn json_value(out: &mut String, v: &Value) {
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
) -> Body {
    let mut out = String::with_capacity(128 + points.len() * 24);
    head(&mut out, seq, ts_ms, gateway);
    key(&mut out, "device");
    json_str(&mut out, device);
    key(&mut out, "kind");
    json_str(&mut out, kind.as_str());
    values(&mut out, points.iter().map(|(n, v)| (*n, *v)));
    Body::from_string(out)
}

/// `,"points":{"<name>":<value>,...}`.
fn values<'a>(out: &mut String, points: impl Iterator<Item = (&'a str, &'a Value)>) {
    out.push_str(",\"points\":{");
    for (i, (name, v)) in points.enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, name);
        out.push(':');
        json_value(out, v);
    }
    out.push('}');
}

/// What a birth certificate says about a device.
pub struct Birth<'a> {
    pub device: &'a str,
    pub kind: Kind,
    pub profile: &'a str,
    pub online: bool,
    pub reason: Option<&'a str>,
    pub meta: &'a serde_json::Map<String, serde_json::Value>,
    pub points: &'a [BirthPoint<'a>],
}

/// What a birth certificate says about one point.
pub struct BirthPoint<'a> {
    pub name: &'a str,
    pub unit: Option<&'a str>,
    pub writable: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// `P/G/D/state`, the device's birth certificate.
pub fn state(seq: u64, ts_ms: u64, gateway: &str, b: &Birth<'_>) -> Body {
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
        json_str(&mut out, p.name);
        out.push_str(":{");
        if let Some(u) = p.unit {
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
    out.push('}');
    Body::from_string(out)
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
    pub links: Named<'a>,
    /// Modbus error counters per device (non-zero ones, devices with errors only).
    pub device_errors: Named<'a>,
}

/// Counters by name under an owner's name (a link, a device).
pub type Named<'a> = &'a [(String, Vec<(&'static str, u64)>)];

/// `P/G/stats`.
pub fn stats(seq: u64, ts_ms: u64, gateway: &str, s: &StatsBody<'_>) -> Body {
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
    Body::from_string(out)
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
fn named(out: &mut String, n: Named<'_>) {
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
pub fn cmd_result(seq: u64, ts_ms: u64, gateway: &str, r: &super::command::CmdResult) -> Body {
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
        values(&mut out, r.points.iter().map(|(n, v)| (n.as_str(), v)));
    }
    if let Some(e) = &r.error {
        key(&mut out, "error");
        json_str(&mut out, &e.to_string());
        key(&mut out, "code");
        json_str(&mut out, e.code());
    }
    if let Some(s) = &r.status {
        key(&mut out, "status");
        json_str(&mut out, s);
    }
    if let Some(s) = r.source {
        key(&mut out, "source");
        json_str(&mut out, s);
    }
    Body::from_string(out)
}

/// `P/G/status` (not buffered; also the last will).
/// The retained status; `buffer_error` is the reason while the buffer is degraded.
pub fn status(online: bool, ts_ms: u64, devices: usize, buffer_error: Option<&str>) -> Vec<u8> {
    let mut out = format!(
        "{{\"state\":\"{}\",\"ts\":\"{}\",\"version\":\"{}\",\"devices\":{devices},\"buffer\":\"{}\"",
        if online { "online" } else { "offline" },
        rfc3339_ms(ts_ms),
        env!("CARGO_PKG_VERSION"),
        if buffer_error.is_some() {
            "degraded"
        } else {
            "ok"
        },
    );
    if let Some(e) = buffer_error {
        out.push_str(",\"buffer_error\":");
        json_str(&mut out, e);
    }
    out.push('}');
    out.into_bytes()
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
