//! The normalized vocabulary (SPEC §4): for each equipment kind, the point names the
//! control room understands, their SI unit and the shape of their value.
//!
//! Invariant: a profile point is either listed here for its kind (plus `rssi`/`snr` for
//! LoRa devices) or named `x_<something>`; its unit is exactly the one listed (profiles
//! convert with `scale`, e.g. kWh registers become Wh). [`check_point`] holds each
//! profile point to this while the profile loads.

use super::raw_point::RawPoint;
use super::report::Report;
use super::{PointType, Protocol};
use crate::model::Kind;

/// What kind of value a vocabulary point carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A number (integer or float register types).
    Number,
    /// `true`/`false`: type `bool`.
    Bool,
    /// A label from a fixed list (an integer type with `values`, or a string).
    Enum(&'static [&'static str]),
    /// Anything but a bool (identifiers and codes: numbers or strings).
    Any,
}

/// One normalized point name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    /// The SI unit the point must be published in; `None` for unitless points.
    pub unit: Option<&'static str>,
    pub shape: Shape,
    /// Commands only (`play`, `stop`): there is nothing to read back.
    pub write_only: bool,
}

const fn e(name: &'static str, unit: Option<&'static str>, shape: Shape) -> Entry {
    Entry {
        name,
        unit,
        shape,
        write_only: false,
    }
}

const fn w(name: &'static str, unit: Option<&'static str>, shape: Shape) -> Entry {
    Entry {
        name,
        unit,
        shape,
        write_only: true,
    }
}

use Shape::{Any, Bool, Number};

/// OCPP 1.6 charge point status names, lower snake case (SPEC §4).
pub const OCPP_STATUSES: &[&str] = &[
    "available",
    "preparing",
    "charging",
    "suspended_ev",
    "suspended_evse",
    "finishing",
    "reserved",
    "unavailable",
    "faulted",
];

const LAMP: &[Entry] = &[
    e("on", None, Bool),
    e("dim_level", Some("%"), Number),
    e("power", Some("W"), Number),
    e("energy", Some("Wh"), Number),
    e("voltage", Some("V"), Number),
    e("current", Some("A"), Number),
    e("power_factor", None, Number),
    e("lamp_failure", None, Bool),
    e("driver_failure", None, Bool),
    e("burning_hours", Some("h"), Number),
    e("temperature", Some("°C"), Number),
    e("switch_count", None, Number),
];

const EV_CHARGER: &[Entry] = &[
    e("status", None, Shape::Enum(OCPP_STATUSES)),
    e("power", Some("W"), Number),
    e("current", Some("A"), Number),
    e("voltage", Some("V"), Number),
    e("energy_session", Some("Wh"), Number),
    e("energy_total", Some("Wh"), Number),
    e("max_current", Some("A"), Number),
    e("enabled", None, Bool),
    e("plug_connected", None, Bool),
    e("fault_code", None, Any),
];

const PA_SPEAKER: &[Entry] = &[
    e("volume", Some("%"), Number),
    e("muted", None, Bool),
    e("playing", None, Bool),
    e("amp_ok", None, Bool),
    e("line_fault", None, Bool),
    e("temperature", Some("°C"), Number),
    w("play", None, Any),
    w("stop", None, Bool),
];

const METER: &[Entry] = &[
    e("voltage", Some("V"), Number),
    e("current", Some("A"), Number),
    e("power", Some("W"), Number),
    e("energy_import", Some("Wh"), Number),
    e("energy_export", Some("Wh"), Number),
    e("frequency", Some("Hz"), Number),
    e("power_factor", None, Number),
];

const SENSOR: &[Entry] = &[
    e("temperature", Some("°C"), Number),
    e("humidity", Some("%"), Number),
    e("noise", Some("dB"), Number),
    e("pm2_5", Some("µg/m³"), Number),
    e("pm10", Some("µg/m³"), Number),
    e("illuminance", Some("lx"), Number),
    e("battery", Some("%"), Number),
];

/// RFC 3621 `pethPsePortDetectionStatus` names (SPEC §4).
pub const POE_STATUSES: &[&str] = &[
    "disabled",
    "searching",
    "delivering",
    "fault",
    "test",
    "other_fault",
];

const CAMERA: &[Entry] = &[
    e("reachable", None, Bool),
    e("rtt", Some("ms"), Number),
    e("uptime", Some("s"), Number),
    e("poe_enabled", None, Bool),
    e("poe_status", None, Shape::Enum(POE_STATUSES)),
    e("poe_power", Some("W"), Number),
    w("power_cycle", None, Bool),
];

const WIFI_AP: &[Entry] = &[
    e("reachable", None, Bool),
    e("rtt", Some("ms"), Number),
    e("uptime", Some("s"), Number),
    e("link_up", None, Bool),
    e("clients", None, Number),
    e("rx_bytes", Some("B"), Number),
    e("tx_bytes", Some("B"), Number),
    e("poe_enabled", None, Bool),
    e("poe_status", None, Shape::Enum(POE_STATUSES)),
    e("poe_power", Some("W"), Number),
    w("power_cycle", None, Bool),
];

const SWITCH: &[Entry] = &[
    e("reachable", None, Bool),
    e("rtt", Some("ms"), Number),
    e("uptime", Some("s"), Number),
    e("poe_power_total", Some("W"), Number),
    e("poe_budget", Some("W"), Number),
    e("temperature", Some("°C"), Number),
];

/// Added by the gateway to every device with `reach` (SPEC §11).
pub const REACH: &[Entry] = &[e("reachable", None, Bool), e("rtt", Some("ms"), Number)];

/// Added by the gateway to every LoRa device (radio quality of the last uplink).
pub const LORA: &[Entry] = &[e("rssi", Some("dBm"), Number), e("snr", Some("dB"), Number)];

/// The vocabulary of one kind (without the LoRa radio points).
pub fn entries(kind: Kind) -> &'static [Entry] {
    match kind {
        Kind::Lamp => LAMP,
        Kind::EvCharger => EV_CHARGER,
        Kind::PaSpeaker => PA_SPEAKER,
        Kind::Meter => METER,
        Kind::Sensor => SENSOR,
        Kind::Camera => CAMERA,
        Kind::WifiAp => WIFI_AP,
        Kind::Switch => SWITCH,
    }
}

/// The vocabulary entry for `name` in `kind`, including `rssi`/`snr` for LoRa profiles.
pub fn lookup(kind: Kind, protocol: Protocol, name: &str) -> Option<&'static Entry> {
    let radio: &[Entry] = match protocol {
        Protocol::Lora => LORA,
        Protocol::Reach => REACH,
        _ => &[],
    };
    entries(kind)
        .iter()
        .chain(radio.iter())
        .find(|entry| entry.name == name)
}

/// Whether `name` is a normalized point of `kind` (radio points not included).
pub fn is_known(kind: Kind, name: &str) -> bool {
    entries(kind).iter().any(|entry| entry.name == name)
}

/// `Some(unit)` for a vocabulary point (`Some(None)` when it is unitless), `None` when
/// `name` is not in the kind's vocabulary.
pub fn expected_unit(kind: Kind, name: &str) -> Option<Option<&'static str>> {
    entries(kind)
        .iter()
        .find(|entry| entry.name == name)
        .map(|entry| entry.unit)
}

/// Whether `name` is a valid vendor-specific name: `x_` then ASCII letters, digits or `_`.
pub fn is_extension(name: &str) -> bool {
    name.strip_prefix("x_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// Unit comparison that accepts the Greek mu (U+03BC) for the micro sign (U+00B5), which
/// look the same in every editor.
pub fn same_unit(expected: &str, given: &str) -> bool {
    expected == given || expected == given.replace('\u{3bc}', "\u{b5}")
}

/// Holds one profile point to the vocabulary: a listed name (or an `x_` name), the listed
/// unit, a type of the listed shape, and `writable` for commands.
pub(super) fn check_point(
    r: &mut Report,
    prefix: &str,
    raw: &RawPoint,
    kind: Kind,
    protocol: Protocol,
    name: &str,
    ty: PointType,
) {
    let key = |k: &str| format!("{prefix}{k}");
    let Some(entry) = lookup(kind, protocol, name) else {
        if !is_extension(name) {
            let known: Vec<&str> = entries(kind).iter().map(|e| e.name).collect();
            r.err(
                key("name"),
                format!(
                    "'{name}' is not a {kind} point: use one of {} or an x_ name",
                    known.join(", ")
                ),
            );
        }
        return;
    };
    match (entry.unit, raw.unit.as_deref()) {
        (Some(want), None) => r.err(
            key("unit"),
            format!("missing: {name} is published in {want}"),
        ),
        (Some(want), Some(got)) if !same_unit(want, got) => r.err(
            key("unit"),
            format!("{name} is published in {want}, not {got}: convert with scale"),
        ),
        (None, Some(got)) => r.err(key("unit"), format!("{name} has no unit, got {got}")),
        _ => {}
    }
    match entry.shape {
        Shape::Bool if ty != PointType::Bool => r.err(
            key("type"),
            format!("{name} is a bool point, not {}", ty.as_str()),
        ),
        Shape::Number if matches!(ty, PointType::Bool | PointType::String) => r.err(
            key("type"),
            format!("{name} is a number, not {}", ty.as_str()),
        ),
        Shape::Number if raw.values.is_some() => {
            r.err(key("values"), format!("{name} is a number, not an enum"));
        }
        Shape::Any if ty == PointType::Bool => {
            r.err(key("type"), format!("{name} is not a bool point"))
        }
        Shape::Enum(labels) => match &raw.values {
            Some(values) => {
                for (k, label) in values {
                    if !labels.contains(&label.as_str()) {
                        r.err(
                            key(&format!("values.{k}")),
                            format!("'{label}' is not one of: {}", labels.join(", ")),
                        );
                    }
                }
            }
            None if ty.is_integer() => r.err(
                key("values"),
                format!(
                    "{name} needs values mapping raw numbers to: {}",
                    labels.join(", ")
                ),
            ),
            None if ty != PointType::String => r.err(
                key("type"),
                format!("{name} is an enum: an integer type with values, or a string"),
            ),
            None => {}
        },
        _ => {}
    }
    if entry.write_only && raw.writable != Some(true) {
        r.err(
            key("writable"),
            format!("{name} is a command: it must be writable"),
        );
    }
}

#[cfg(test)]
mod tests {
    //! Proves the table matches SPEC §4 on the points operators rely on most.
    use super::*;

    #[test]
    fn energy_is_always_published_in_watt_hours() {
        assert_eq!(expected_unit(Kind::Lamp, "energy"), Some(Some("Wh")));
        assert_eq!(
            expected_unit(Kind::Meter, "energy_import"),
            Some(Some("Wh"))
        );
        assert_eq!(
            expected_unit(Kind::EvCharger, "energy_total"),
            Some(Some("Wh"))
        );
    }

    #[test]
    fn names_belong_to_their_kind_only() {
        assert!(is_known(Kind::Lamp, "dim_level"));
        assert!(!is_known(Kind::Meter, "dim_level"));
        assert!(!is_known(Kind::Sensor, "rssi"));
        assert!(lookup(Kind::Sensor, Protocol::Lora, "rssi").is_some());
        assert!(lookup(Kind::Sensor, Protocol::Modbus, "rssi").is_none());
    }

    #[test]
    fn extension_names_need_a_suffix_of_word_characters() {
        assert!(is_extension("x_serial_number"));
        assert!(!is_extension("x_"));
        assert!(!is_extension("x_bad name"));
        assert!(!is_extension("serial"));
    }

    #[test]
    fn unitless_points_expect_no_unit_and_micro_sign_variants_match() {
        assert_eq!(expected_unit(Kind::Lamp, "power_factor"), Some(None));
        assert_eq!(expected_unit(Kind::Lamp, "nonsense"), None);
        assert!(same_unit("µg/m³", "\u{3bc}g/m³"));
        assert!(!same_unit("Wh", "kWh"));
    }
}
