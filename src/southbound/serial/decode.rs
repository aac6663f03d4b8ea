//! Frames through the profile's script: `decode(frame)` to point values, `encode(point,
//! value, address)` to bytes, `ack(frame)` to a write verdict. No I/O; the bus task calls
//! these between reads. Type problems in what a script returns are errors naming the
//! script file, never panics.

use crate::model::Value;
use crate::profile::{PointDef, PointType, Profile, SerialEncoding, SerialSpec};
use crate::script::{self, Engine, ScriptError, dynamic_to_value};
use rhai::Dynamic;

/// The reserved key of `decode`'s map that attributes a frame to a device.
pub const ADDRESS_KEY: &str = "address";

/// What one frame meant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// The reserved `address` key, as text.
    pub address: Option<String>,
    /// (point index, value) for every known point the script set.
    pub values: Vec<(usize, Value)>,
    /// Keys that are not points of the profile or values of the wrong type.
    pub problems: Vec<String>,
    /// Enum raw values missing from `values` (published as numbers, counted).
    pub unknown_enums: u64,
}

/// `None`: the script returned `()` (ignore the frame).
pub fn decode(
    engine: &Engine,
    profile: &Profile,
    spec: &SerialSpec,
    frame: &[u8],
) -> Result<Option<Decoded>, ScriptError> {
    let arg = frame_arg(spec, frame);
    let out = engine.call(&spec.script, "decode", (arg,))?;
    if out.is_unit() {
        return Ok(None);
    }
    let Some(map) = out.try_cast::<rhai::Map>() else {
        return Err(type_error(
            spec,
            "decode",
            "a map of point -> value or ()",
            "another type",
        ));
    };
    let mut d = Decoded::default();
    for (key, v) in map {
        if key.as_str() == ADDRESS_KEY {
            d.address = address_text(&v);
            if d.address.is_none() {
                d.problems.push(format!(
                    "address: {} is not a string or integer",
                    script::type_name(&v)
                ));
            }
            continue;
        }
        let Some((idx, def)) = profile.point(key.as_str()) else {
            d.problems
                .push(format!("{key}: not a point of profile {}", profile.name));
            continue;
        };
        match check_value(def, &v) {
            Ok((value, unknown)) => {
                d.unknown_enums += unknown as u64;
                d.values.push((idx, value));
            }
            Err(e) => d.problems.push(format!("{key}: {e}")),
        }
    }
    d.values.sort_by_key(|(i, _)| *i);
    Ok(Some(d))
}

/// The bytes `encode(point, value, address)` returns for a validated write.
pub fn encode(
    engine: &Engine,
    spec: &SerialSpec,
    point: &str,
    value: &Value,
    address: &str,
) -> Result<Vec<u8>, ScriptError> {
    let out = engine.call(
        &spec.script,
        "encode",
        (
            point.to_string(),
            script::value_to_dynamic(value),
            address.to_string(),
        ),
    )?;
    bytes_of(&out).ok_or_else(|| {
        type_error(
            spec,
            "encode",
            "a string or a blob",
            script::type_name(&out),
        )
    })
}

/// The requests of one poll cycle: the `poll` templates with `{address}`, else the
/// script's `fn poll(address)` (a string, a blob, or an array of them), else none.
pub fn poll_requests(
    engine: &Engine,
    spec: &SerialSpec,
    address: &str,
) -> Result<Vec<Vec<u8>>, ScriptError> {
    if !spec.poll.is_empty() {
        return Ok(spec
            .poll
            .iter()
            .map(|t| t.replace("{address}", address).into_bytes())
            .collect());
    }
    if !spec.script.has_fn("poll", 1) {
        return Ok(Vec::new());
    }
    let out = engine.call(&spec.script, "poll", (address.to_string(),))?;
    let items = if out.is_array() {
        out.into_array().unwrap_or_default()
    } else {
        vec![out]
    };
    items
        .iter()
        .map(|d| {
            bytes_of(d)
                .ok_or_else(|| type_error(spec, "poll", "strings or blobs", script::type_name(d)))
        })
        .collect()
}

/// Why `fn ack(frame)` failed a write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AckError {
    #[error("script error: {0}")]
    Script(ScriptError),
    /// `ack` returned `false`.
    #[error("the device refused the write")]
    Refused,
    /// `ack` returned the device's error text.
    #[error("the device refused the write: {0}")]
    RefusedWith(String),
}

/// A write's verdict from `fn ack(frame)` when the script has one: `false` or a string
/// (the device's error) fail the write.
pub fn ack(engine: &Engine, spec: &SerialSpec, frame: &[u8]) -> Result<(), AckError> {
    if !spec.script.has_fn("ack", 1) {
        return Ok(());
    }
    let out = engine
        .call(&spec.script, "ack", (frame_arg(spec, frame),))
        .map_err(AckError::Script)?;
    if out.as_bool() == Ok(false) {
        Err(AckError::Refused)
    } else if out.is_string() {
        Err(AckError::RefusedWith(out.to_string()))
    } else {
        Ok(())
    }
}

fn frame_arg(spec: &SerialSpec, frame: &[u8]) -> Dynamic {
    match spec.encoding {
        SerialEncoding::Text => Dynamic::from(String::from_utf8_lossy(frame).into_owned()),
        SerialEncoding::Binary => Dynamic::from_blob(frame.to_vec()),
    }
}

fn bytes_of(d: &Dynamic) -> Option<Vec<u8>> {
    if d.is_string() {
        d.clone().into_string().ok().map(String::into_bytes)
    } else if d.is_blob() {
        d.clone().into_blob().ok()
    } else {
        None
    }
}

fn address_text(v: &Dynamic) -> Option<String> {
    if v.is_string() {
        v.clone().into_string().ok()
    } else {
        v.as_int().ok().map(|i| i.to_string())
    }
}

fn type_error(spec: &SerialSpec, func: &str, expected: &str, got: &str) -> ScriptError {
    ScriptError {
        file: spec.script.path().to_path_buf(),
        line: None,
        message: format!("fn {func} returned {got}, expected {expected}"),
    }
}

/// Why a value a script returned does not fit its point (listed in `problems`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueProblem {
    #[error("{got} is not a {}", .ty.as_str())]
    WrongType { got: &'static str, ty: PointType },
    #[error("{0} is not one of the point's values")]
    NotAValue(Value),
    #[error("{value} does not fit a {}", .ty.as_str())]
    DoesNotFit { value: i64, ty: PointType },
}

/// Checks a script value against the point's `type` (and enum `values`). Returns the
/// value and whether it was an enum raw value missing from `values`.
pub(crate) fn check_value(def: &PointDef, v: &Dynamic) -> Result<(Value, bool), ValueProblem> {
    let got = || ValueProblem::WrongType {
        got: script::type_name(v),
        ty: def.ty,
    };
    let value = dynamic_to_value(v).ok_or_else(got)?;
    if let Some(labels) = &def.values {
        return match &value {
            Value::Int(raw) => Ok(match labels.get(raw) {
                Some(label) => (Value::Text(label.clone()), false),
                None => (value, true),
            }),
            Value::Text(t) if labels.values().any(|l| l == t) => Ok((value, false)),
            _ => Err(ValueProblem::NotAValue(value)),
        };
    }
    let value = match (def.ty, value) {
        (PointType::Bool, Value::Bool(b)) => Value::Bool(b),
        (PointType::Bool, Value::Int(i @ (0 | 1))) => Value::Bool(i == 1),
        (PointType::String, Value::Text(s)) => Value::Text(s),
        (PointType::F32 | PointType::F64, Value::Int(i)) => Value::Float(i as f64),
        (PointType::F32 | PointType::F64, Value::Float(f)) => Value::Float(f),
        (t, Value::Int(i)) if t.is_integer() => {
            if !integer_fits(t, i) {
                return Err(ValueProblem::DoesNotFit { value: i, ty: t });
            }
            Value::Int(i)
        }
        _ => return Err(got()),
    };
    Ok((value, false))
}

fn integer_fits(t: PointType, i: i64) -> bool {
    match t {
        PointType::U16 => (0..=u16::MAX as i64).contains(&i),
        PointType::I16 => (i16::MIN as i64..=i16::MAX as i64).contains(&i),
        PointType::U32 => (0..=u32::MAX as i64).contains(&i),
        PointType::I32 => (i32::MIN as i64..=i32::MAX as i64).contains(&i),
        PointType::U64 => i >= 0,
        _ => true,
    }
}
