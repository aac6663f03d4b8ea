//! Each `[[point]]` of a profile (SPEC §3): a unique name, a value type, the number
//! options (scale, offset, deadband, min, max) and enum values that fit that type. Where
//! the point lives (`registers.rs`) and what its name means (`vocab.rs`) are checked from
//! here too, so one pass reports all of a point's problems.

use super::raw_point::RawPoint;
use super::report::Report;
use super::{PointDef, PointType, Protocol, registers, vocab};
use crate::model::Kind;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const POINT_KEYS: &[&str] = &[
    "name", "unit", "table", "address", "type", "order", "bit", "length", "scale", "offset",
    "deadband", "writable", "min", "max", "values",
];

/// The `[[point]]` array: at least one point, unique names, each point valid. Only the
/// valid points come back (a profile with any error is rejected as a whole).
pub(super) fn check_points(
    r: &mut Report,
    raw_points: Option<toml::Value>,
    kind: Option<Kind>,
    protocol: Option<Protocol>,
) -> Vec<PointDef> {
    let items = match raw_points {
        None => {
            r.err("point", "a profile needs at least one [[point]]");
            return Vec::new();
        }
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            r.err("point", "must be an array of tables ([[point]])");
            return Vec::new();
        }
    };
    if items.is_empty() {
        r.err("point", "a profile needs at least one [[point]]");
    }
    let mut points = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let prefix = format!("point[{i}].");
        let toml::Value::Table(mut table) = item else {
            r.err(format!("point[{i}]"), "must be a table");
            continue;
        };
        r.unknown_keys(&mut table, POINT_KEYS, &prefix);
        let Some(raw) = r.raw::<RawPoint>(table, &prefix) else {
            continue;
        };
        if let Some(name) = &raw.name {
            if let Some(first) = names.get(name) {
                r.err(
                    format!("{prefix}name"),
                    format!("duplicate point name '{name}' (also point[{first}])"),
                );
            } else {
                names.insert(name.clone(), i);
            }
        }
        if let Some(point) = check_point(r, &prefix, raw, kind, protocol) {
            points.push(point);
        }
    }
    points
}

/// Validates one point; `None` when it has errors (all of them reported).
fn check_point(
    r: &mut Report,
    prefix: &str,
    raw: RawPoint,
    kind: Option<Kind>,
    protocol: Option<Protocol>,
) -> Option<PointDef> {
    let before = r.errors.len();
    let key = |k: &str| format!("{prefix}{k}");
    let name = match raw.name.as_deref() {
        None | Some("") => {
            r.err(key("name"), "required");
            None
        }
        Some(name) => Some(name.to_string()),
    };
    let ty = r.one_of(&key("type"), raw.ty.as_deref(), str::parse);

    // Numbers: scale, offset, deadband, min, max.
    let finite = |r: &mut Report, k: &str, v: Option<f64>| {
        if let Some(v) = v
            && !v.is_finite()
        {
            r.err(key(k), "must be a finite number");
        }
    };
    for (k, v) in [
        ("scale", raw.scale),
        ("offset", raw.offset),
        ("min", raw.min),
        ("max", raw.max),
        ("deadband", raw.deadband),
    ] {
        finite(r, k, v);
    }
    if raw.scale == Some(0.0) {
        r.err(key("scale"), "must not be 0 (writes divide by it)");
    }
    if let Some(d) = raw.deadband
        && d < 0.0
    {
        r.err(key("deadband"), format!("must be >= 0, got {d}"));
    }
    if let (Some(min), Some(max)) = (raw.min, raw.max)
        && min > max
    {
        r.err(key("min"), format!("min {min} is greater than max {max}"));
    }

    // Enum values: integer keys, unique non-empty labels.
    let values = raw.values.as_ref().map(|values| {
        let mut out = BTreeMap::new();
        let mut labels = BTreeSet::new();
        for (k, label) in values {
            match k.trim().parse::<i64>() {
                Ok(n) => {
                    out.insert(n, label.clone());
                }
                Err(_) => r.err(
                    key(&format!("values.{k}")),
                    "key must be an integer raw value",
                ),
            }
            if label.is_empty() {
                r.err(key(&format!("values.{k}")), "label must not be empty");
            } else if !labels.insert(label.as_str()) {
                r.err(
                    key(&format!("values.{k}")),
                    format!("label '{label}' is used twice"),
                );
            }
        }
        out
    });

    if let Some(ty) = ty {
        check_type_options(r, prefix, &raw, ty);
    }
    let reg = match protocol {
        Some(Protocol::Modbus) => ty.and_then(|ty| registers::check_register(r, prefix, &raw, ty)),
        Some(other) => {
            registers::reject_addressing(r, prefix, &raw, other);
            None
        }
        None => None,
    };
    if protocol == Some(Protocol::Ocpp) {
        // The OCPP mapping converts units itself (SPEC §9): no raw value to scale.
        for (k, present) in [
            ("scale", raw.scale.is_some()),
            ("offset", raw.offset.is_some()),
        ] {
            if present {
                r.err(
                    key(k),
                    "does not apply to an ocpp profile (the mapping converts units)",
                );
            }
        }
    }
    if let (Some(kind), Some(protocol), Some(name), Some(ty)) = (kind, protocol, &name, ty) {
        vocab::check_point(r, prefix, &raw, kind, protocol, name, ty);
    }

    if r.errors.len() != before {
        return None;
    }
    Some(PointDef {
        name: name?,
        unit: raw.unit,
        ty: ty?,
        reg,
        scale: raw.scale.unwrap_or(1.0),
        offset: raw.offset.unwrap_or(0.0),
        deadband: raw.deadband,
        writable: raw.writable.unwrap_or(false),
        min: raw.min,
        max: raw.max,
        values,
        scaling: Default::default(),
    })
}

/// Options that only make sense for some value types.
fn check_type_options(r: &mut Report, prefix: &str, raw: &RawPoint, ty: PointType) {
    let numeric_only = [
        ("scale", raw.scale.is_some()),
        ("offset", raw.offset.is_some()),
        ("min", raw.min.is_some()),
        ("max", raw.max.is_some()),
        ("deadband", raw.deadband.is_some()),
    ];
    if matches!(ty, PointType::Bool | PointType::String) {
        for (k, present) in numeric_only {
            if present {
                r.err(
                    format!("{prefix}{k}"),
                    format!("does not apply to a {} point", ty.as_str()),
                );
            }
        }
    }
    if raw.values.is_some() {
        if !ty.is_integer() {
            r.err(
                format!("{prefix}values"),
                format!("enums need an integer type, not {}", ty.as_str()),
            );
        }
        for (k, present) in [
            ("scale", raw.scale.is_some()),
            ("offset", raw.offset.is_some()),
            ("deadband", raw.deadband.is_some()),
        ] {
            if present && ty.is_integer() {
                r.err(format!("{prefix}{k}"), "does not apply to an enum (values)");
            }
        }
    }
}

/// SPEC §4: every LoRa device reports `rssi` (dBm) and `snr` (dB), added by the gateway
/// from the radio metadata; a profile may declare them (for a deadband, say), otherwise
/// they are appended here so the birth lists them and every uplink carries them.
pub(super) fn add_radio_points(points: &mut Vec<PointDef>) {
    for (name, unit, ty) in [
        ("rssi", "dBm", PointType::I16),
        ("snr", "dB", PointType::F32),
    ] {
        if points.iter().all(|p| p.name != name) {
            points.push(PointDef::plain(
                name.to_string(),
                Some(unit.to_string()),
                ty,
                None,
            ));
        }
    }
}
