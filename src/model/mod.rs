//! Vocabulary-level data shared by every layer: equipment kinds, point values,
//! wall-clock timestamps, the event payloads and the topics they go on. Pure: no I/O.

pub mod bytes;
pub mod command;
pub mod file_error;
pub mod limits;
pub mod link;
pub mod payload;
pub mod topic;

pub use file_error::{FileError, line_col};
pub use link::{LinkCell, LinkState};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a piece of equipment is; decides which normalized point names apply (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Lamp,
    EvCharger,
    PaSpeaker,
    Meter,
    Sensor,
    /// IP equipment on the pole (SPEC §11).
    Camera,
    WifiAp,
    /// The cabinet's PoE switch.
    Switch,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Lamp,
        Kind::EvCharger,
        Kind::PaSpeaker,
        Kind::Meter,
        Kind::Sensor,
        Kind::Camera,
        Kind::WifiAp,
        Kind::Switch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lamp => "lamp",
            Kind::EvCharger => "ev_charger",
            Kind::PaSpeaker => "pa_speaker",
            Kind::Meter => "meter",
            Kind::Sensor => "sensor",
            Kind::Camera => "camera",
            Kind::WifiAp => "wifi_ap",
            Kind::Switch => "switch",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A normalized point value as published.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    /// Integer register types with integral scale and offset (SPEC §8 "Numbers in JSON").
    Int(i64),
    Float(f64),
    /// Strings and enum labels.
    Text(String),
}

impl Value {
    /// Numeric view used by deadband comparison and range checks.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Text(_) => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Text(s) => serde_json::Value::String(s.clone()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMs = u64;

pub fn now_ms() -> EpochMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-28T17:24:25.123Z`.
pub fn rfc3339_ms(ms: EpochMs) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses an RFC 3339 timestamp (any fractional precision, `Z` or offset) to epoch ms.
pub fn parse_rfc3339(s: &str) -> Option<EpochMs> {
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_886_665_123), "2026-11-28T17:24:25.123Z");
        assert_eq!(
            parse_rfc3339("2026-11-28T17:24:25.123Z"),
            Some(1_795_886_665_123)
        );
    }
}
