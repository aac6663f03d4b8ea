//! Parsing and validating a control-room command (SPEC §5 `cmd`, §8 "Commands"). Pure:
//! nothing here touches a device, so a command that fails any check writes nothing.

use crate::model::command::Refusal;
use crate::model::{Value, parse_rfc3339};
use crate::profile::{PointType, Profile, convert};

/// Longest accepted command id.
pub const MAX_ID_LEN: usize = 64;

/// A well-formed command (its points not yet checked against a profile).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: String,
    pub expires_ms: Option<u64>,
    /// (point name, requested JSON value) in the order given; empty for `resume_schedule`.
    pub points: Vec<(String, serde_json::Value)>,
    /// `hold_until` (SPEC §10 "Overrides"): the override of a scheduled point lasts until
    /// then instead of the program's next step.
    pub hold_until_ms: Option<u64>,
    /// `{"id":…,"resume_schedule":true}`: end the device's overrides at once.
    pub resume_schedule: bool,
}

/// Why a payload was refused; `id` is set when the payload carried a valid one.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub id: Option<String>,
    pub error: Refusal,
}

/// A malformed payload.
fn reject(id: Option<&str>, error: impl Into<String>) -> Rejection {
    Rejection {
        id: id.map(str::to_string),
        error: Refusal::Malformed(error.into()),
    }
}

pub fn parse(payload: &[u8]) -> Result<Command, Rejection> {
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| reject(None, format!("payload is not valid JSON: {e}")))?;
    let serde_json::Value::Object(obj) = v else {
        return Err(reject(None, "payload is not a JSON object"));
    };
    let id = match obj.get("id") {
        Some(serde_json::Value::String(s)) if (1..=MAX_ID_LEN).contains(&s.chars().count()) => {
            s.clone()
        }
        Some(serde_json::Value::String(_)) => {
            return Err(reject(
                None,
                format!("'id' must be 1 to {MAX_ID_LEN} characters"),
            ));
        }
        Some(_) => return Err(reject(None, "'id' must be a string")),
        None => return Err(reject(None, "missing 'id'")),
    };
    let rid = Some(id.as_str());
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "id" | "point" | "value" | "points" | "expires" | "hold_until" | "resume_schedule"
        ) {
            return Err(reject(rid, format!("unknown key '{k}'")));
        }
    }
    let expires_ms = match obj.get("expires") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            parse_rfc3339(s)
                .ok_or_else(|| reject(rid, format!("'expires' is not an RFC 3339 time: {s:?}")))?,
        ),
        Some(_) => return Err(reject(rid, "'expires' must be an RFC 3339 string")),
    };
    let hold_until_ms =
        match obj.get("hold_until") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(parse_rfc3339(s).ok_or_else(|| {
                reject(rid, format!("'hold_until' is not an RFC 3339 time: {s:?}"))
            })?),
            Some(_) => return Err(reject(rid, "'hold_until' must be an RFC 3339 string")),
        };
    match obj.get("resume_schedule") {
        None | Some(serde_json::Value::Bool(false)) => {}
        Some(serde_json::Value::Bool(true)) => {
            if obj.len() > 2 {
                return Err(reject(
                    rid,
                    "'resume_schedule' is a command of its own: {\"id\":…,\"resume_schedule\":true}",
                ));
            }
            return Ok(Command {
                id,
                expires_ms: None,
                points: vec![],
                hold_until_ms: None,
                resume_schedule: true,
            });
        }
        Some(_) => return Err(reject(rid, "'resume_schedule' must be true")),
    }
    let points = match (obj.get("point"), obj.get("value"), obj.get("points")) {
        (Some(serde_json::Value::String(p)), Some(v), None) => vec![(p.clone(), v.clone())],
        (Some(_), Some(_), None) => return Err(reject(rid, "'point' must be a string")),
        (Some(_), None, None) => return Err(reject(rid, "'point' without 'value'")),
        (None, Some(_), None) => return Err(reject(rid, "'value' without 'point'")),
        (None, None, Some(serde_json::Value::Object(m))) if !m.is_empty() => {
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        (None, None, Some(serde_json::Value::Object(_))) => {
            return Err(reject(rid, "'points' is empty"));
        }
        (None, None, Some(_)) => return Err(reject(rid, "'points' must be an object")),
        (None, None, None) => return Err(reject(rid, "missing 'point'/'value' or 'points'")),
        _ => {
            return Err(reject(
                rid,
                "use either 'point'/'value' or 'points', not both",
            ));
        }
    };
    Ok(Command {
        id,
        expires_ms,
        points,
        hold_until_ms,
        resume_schedule: false,
    })
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Checks every point of a command against the device's profile; all or nothing.
/// Returns (point index, engineering value) in the order given.
pub fn validate(
    profile: &Profile,
    points: &[(String, serde_json::Value)],
) -> Result<Vec<(usize, Value)>, Refusal> {
    let mut out = Vec::with_capacity(points.len());
    for (name, json) in points {
        let Some((idx, def)) = profile.point(name) else {
            return Err(Refusal::UnknownPoint(name.clone()));
        };
        if !def.writable {
            return Err(Refusal::NotWritable(name.clone()));
        }
        if out.iter().any(|(i, _)| *i == idx) {
            return Err(Refusal::Malformed(format!("point '{name}' is given twice")));
        }
        let value = if let Some(values) = &def.values {
            match json {
                serde_json::Value::String(label) => values
                    .iter()
                    .find(|(_, l)| *l == label)
                    .map(|(raw, _)| Value::Int(*raw)),
                serde_json::Value::Number(n) => n
                    .as_i64()
                    .filter(|raw| values.contains_key(raw))
                    .map(Value::Int),
                _ => None,
            }
            .ok_or_else(|| {
                let labels: Vec<&str> = values.values().map(String::as_str).collect();
                Refusal::WrongType(format!(
                    "value {json} is not one of {} for point '{name}'",
                    labels.join(", ")
                ))
            })?
        } else if def.ty == PointType::Bool {
            match json {
                serde_json::Value::Bool(b) => Value::Bool(*b),
                serde_json::Value::Number(n) if n.as_u64() == Some(0) => Value::Bool(false),
                serde_json::Value::Number(n) if n.as_u64() == Some(1) => Value::Bool(true),
                _ => {
                    return Err(Refusal::WrongType(format!(
                        "point '{name}' takes true, false, 0 or 1, not {json}"
                    )));
                }
            }
        } else if def.ty == PointType::String {
            match json {
                serde_json::Value::String(s) => Value::Text(s.clone()),
                _ => {
                    return Err(Refusal::WrongType(format!(
                        "point '{name}' takes a string, not {json}"
                    )));
                }
            }
        } else {
            let Some(x) = json.as_f64() else {
                return Err(Refusal::WrongType(format!(
                    "point '{name}' takes a number, not {json}"
                )));
            };
            let lo = def.min.unwrap_or(f64::NEG_INFINITY);
            let hi = def.max.unwrap_or(f64::INFINITY);
            if x < lo || x > hi {
                let range = match (def.min, def.max) {
                    (Some(a), Some(b)) => format!("{}..={}", fmt_num(a), fmt_num(b)),
                    (Some(a), None) => format!(">= {}", fmt_num(a)),
                    (None, Some(b)) => format!("<= {}", fmt_num(b)),
                    (None, None) => String::new(),
                };
                return Err(Refusal::OutOfRange(format!(
                    "value {} is out of range {range} for point '{name}'",
                    fmt_num(x)
                )));
            }
            match json.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(x),
            }
        };
        // Type fit after inverse scaling (Modbus points): the convert must accept it.
        if let Some(reg) = &def.reg {
            let fits = if reg.table.is_bits() || reg.bit.is_some() {
                convert::encode_bit(def, &value).map(|_| ())
            } else {
                convert::encode_registers(def, &value).map(|_| ())
            };
            fits.map_err(|e| Refusal::OutOfRange(e.to_string()))?;
        }
        out.push((idx, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Every malformed payload and every bad point class gets its precise error.
    use super::*;
    use crate::profile::Registry;
    use std::path::Path;

    fn lamp() -> std::sync::Arc<Profile> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let (reg, errs) = Registry::load(&[dir]);
        assert!(errs.is_empty(), "{errs:?}");
        reg.get("generic-lamp-modbus").expect("lamp").clone()
    }

    fn ev() -> std::sync::Arc<Profile> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let (reg, _) = Registry::load(&[dir]);
        reg.get("generic-ev-modbus").expect("ev").clone()
    }

    #[test]
    fn payloads_without_a_valid_id_are_rejected_with_no_id() {
        for (p, frag) in [
            (&b"not json"[..], "not valid JSON"),
            (b"[1,2]", "not a JSON object"),
            (br#"{"point":"dim_level","value":1}"#, "missing 'id'"),
            (
                br#"{"id":17,"point":"on","value":true}"#,
                "must be a string",
            ),
            (br#"{"id":"","point":"on","value":true}"#, "1 to 64"),
        ] {
            let r = parse(p).expect_err("rejected");
            assert_eq!(r.id, None);
            assert_eq!(r.error.code(), "malformed");
            assert!(
                r.error.to_string().contains(frag),
                "{:?} -> {}",
                String::from_utf8_lossy(p),
                r.error
            );
        }
        let long = format!(r#"{{"id":"{}","point":"on","value":true}}"#, "x".repeat(65));
        assert!(parse(long.as_bytes()).is_err());
    }

    #[test]
    fn both_command_forms_parse_in_order_with_expiry() {
        let c = parse(br#"{"id":"c-17","point":"dim_level","value":40}"#).unwrap();
        assert_eq!(
            c.points,
            vec![("dim_level".to_string(), serde_json::json!(40))]
        );
        let c = parse(
            br#"{"id":"c-18","points":{"dim_level":40,"on":true},"expires":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(c.points.len(), 2);
        assert_eq!(c.expires_ms, Some(1_893_456_000_000));
        let r = parse(br#"{"id":"c","point":"a","value":1,"points":{"b":1}}"#).unwrap_err();
        assert_eq!(r.id.as_deref(), Some("c"));
        assert!(parse(br#"{"id":"c","expires":"tomorrow","point":"a","value":1}"#).is_err());
    }

    #[test]
    fn points_are_checked_for_existence_writability_range_and_type() {
        let p = lamp();
        let j = |s: &str| -> Vec<(String, serde_json::Value)> {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s)
                .unwrap()
                .into_iter()
                .collect()
        };
        let refused = |s: &str| {
            let e = validate(&p, &j(s)).unwrap_err();
            (e.code(), e.to_string())
        };
        assert_eq!(
            refused(r#"{"nope":1}"#),
            ("unknown_point", "unknown point 'nope'".into())
        );
        assert_eq!(
            refused(r#"{"power":1}"#),
            ("not_writable", "point 'power' is not writable".into())
        );
        assert_eq!(
            refused(r#"{"dim_level":150}"#),
            (
                "out_of_range",
                "value 150 is out of range 0..=100 for point 'dim_level'".into()
            )
        );
        let (code, e) = refused(r#"{"dim_level":"40"}"#);
        assert!(code == "wrong_type" && e.contains("takes a number"), "{e}");
        let (code, e) = refused(r#"{"on":2}"#);
        assert!(
            code == "wrong_type" && e.contains("true, false, 0 or 1"),
            "{e}"
        );
        let ok = validate(&p, &j(r#"{"dim_level":40,"on":1}"#)).unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok.contains(&(p.point("on").unwrap().0, Value::Bool(true))));
    }

    #[test]
    fn scaled_points_accept_engineering_values_and_enums_take_labels_or_numbers() {
        let p = ev();
        let pts = vec![("max_current".to_string(), serde_json::json!(16.5))];
        let ok = validate(&p, &pts).unwrap();
        assert_eq!(ok[0].1, Value::Float(16.5));
        let bad = vec![("max_current".to_string(), serde_json::json!(40))];
        let e = validate(&p, &bad).unwrap_err();
        assert_eq!(e.code(), "out_of_range");
        assert!(e.to_string().contains("out of range 6..=32"), "{e}");
    }
}
