//! Register images <-> point values. Pure: no I/O, never panics on device data.
//!
//! **Values.** `value = raw * scale + offset`; writes invert it. Integer register types
//! with an integral `scale` and `offset` give [`Value::Int`] (a `u64` above `i64::MAX`
//! becomes [`Value::Float`]); everything else gives [`Value::Float`] (SPEC §8 "Numbers in
//! JSON"). `f32` registers go through their shortest decimal form, so `229.8f32` is
//! published as `229.8`, and scaled results are rounded to the decimals the inputs carry,
//! so raw `234 * 0.1` is `23.4`, not `23.400000000000002`. NaN and infinities are errors:
//! devices use them for "no reading".
//!
//! **Orders** (SPEC §8), for `n` registers `[w0, w1, ...]` as transmitted:
//! ABCD = big-endian bytes and registers; DCBA = fully reversed; BADC = bytes swapped inside
//! each register; CDAB = registers in reverse order, bytes inside each big-endian.
//! On a single register (16-bit types and bits of a register) BADC and DCBA swap its two
//! bytes, ABCD and CDAB leave it alone. Strings only honour the byte swap (BADC/DCBA):
//! their registers are always read in address order.
//!
//! **Strings**: `length` registers, two bytes per register (high byte first unless
//! swapped), trailing NULs and spaces trimmed, invalid UTF-8 replaced by U+FFFD.
//!
//! **Enums**: an integer point with `values` publishes `Value::Text(label)`; a raw value
//! missing from `values` is published as its number with `unknown_enum = true`.

use super::decimal::{decimals, f32_to_f64, round_decimals};
use super::{PointDef, PointType, RegisterRef, WordOrder};
use crate::model::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("point '{point}': {what}")]
    Invalid { point: String, what: String },
}

fn invalid(p: &PointDef, what: impl Into<String>) -> CodecError {
    CodecError::Invalid {
        point: p.name.clone(),
        what: what.into(),
    }
}

/// A decoded value; `unknown_enum` is set when an enum raw value is missing from `values`
/// (published as its number and counted as a warning, SPEC §8).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub value: Value,
    pub unknown_enum: bool,
}

impl Decoded {
    fn plain(value: Value) -> Self {
        Decoded {
            value,
            unknown_enum: false,
        }
    }
}

/// How many registers (register tables) or bits (bit tables) the point occupies.
/// Always at least 1.
pub fn span(reg: &RegisterRef, ty: PointType) -> u16 {
    if reg.table.is_bits() {
        return 1;
    }
    match ty {
        PointType::Bool | PointType::U16 | PointType::I16 => 1,
        PointType::U32 | PointType::I32 | PointType::F32 => 2,
        PointType::U64 | PointType::I64 | PointType::F64 => 4,
        PointType::String => reg.length.unwrap_or(1).max(1),
    }
}

fn order_of(p: &PointDef) -> WordOrder {
    p.reg.as_ref().map(|r| r.order).unwrap_or_default()
}

fn swaps_bytes(order: WordOrder) -> bool {
    matches!(order, WordOrder::Badc | WordOrder::Dcba)
}

fn reverses_words(order: WordOrder) -> bool {
    matches!(order, WordOrder::Cdab | WordOrder::Dcba)
}

/// The value's big-endian bytes from the registers as transmitted (at most four: the
/// widest numeric type), and how many there are.
fn to_be_bytes(words: &[u16], order: WordOrder) -> ([u8; 8], usize) {
    let n = words.len().min(4);
    let swap = swaps_bytes(order);
    let mut out = [0u8; 8];
    for i in 0..n {
        let w = if reverses_words(order) {
            words[n - 1 - i]
        } else {
            words[i]
        };
        let b = w.to_be_bytes();
        out[2 * i..2 * i + 2].copy_from_slice(&if swap { [b[1], b[0]] } else { b });
    }
    (out, 2 * n)
}

/// The registers to transmit for the value's big-endian bytes (inverse of `to_be_bytes`).
fn from_be_bytes(bytes: &[u8], order: WordOrder) -> Vec<u16> {
    let swap = swaps_bytes(order);
    let mut ws: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let hi = c.first().copied().unwrap_or(0);
            let lo = c.get(1).copied().unwrap_or(0);
            if swap {
                u16::from_be_bytes([lo, hi])
            } else {
                u16::from_be_bytes([hi, lo])
            }
        })
        .collect();
    if reverses_words(order) {
        ws.reverse();
    }
    ws
}

/// The raw register content before scaling.
pub(super) enum Raw {
    Int(i128),
    Float(f64),
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

fn raw_of(ty: PointType, be: &[u8]) -> Option<Raw> {
    Some(match ty {
        PointType::U16 => Raw::Int(u16::from_be_bytes(array(be)).into()),
        PointType::I16 => Raw::Int(i16::from_be_bytes(array(be)).into()),
        PointType::U32 => Raw::Int(u32::from_be_bytes(array(be)).into()),
        PointType::I32 => Raw::Int(i32::from_be_bytes(array(be)).into()),
        PointType::U64 => Raw::Int(u64::from_be_bytes(array(be)).into()),
        PointType::I64 => Raw::Int(i64::from_be_bytes(array(be)).into()),
        PointType::F32 => Raw::Float(f32_to_f64(f32::from_be_bytes(array(be)))),
        PointType::F64 => Raw::Float(f64::from_be_bytes(array(be))),
        PointType::Bool | PointType::String => return None,
    })
}

fn is_integral(x: f64) -> bool {
    x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15
}

/// `raw * scale + offset` as published.
pub(super) fn scaled(p: &PointDef, raw: Raw) -> Result<Value, CodecError> {
    let identity = p.scale == 1.0 && p.offset == 0.0;
    let value = match raw {
        Raw::Int(r) if is_integral(p.scale) && is_integral(p.offset) => {
            let v = r
                .checked_mul(p.scale as i128)
                .and_then(|v| v.checked_add(p.offset as i128));
            match v.and_then(|v| i64::try_from(v).ok()) {
                Some(i) => Value::Int(i),
                None => Value::Float(r as f64 * p.scale + p.offset),
            }
        }
        Raw::Int(r) => {
            let s = p.scaling();
            Value::Float(
                s.apply(r)
                    .unwrap_or_else(|| round_decimals(r as f64 * p.scale + p.offset, s.places())),
            )
        }
        Raw::Float(x) if identity => Value::Float(x),
        Raw::Float(x) => {
            let s = p.scaling();
            let places = (decimals(x) + s.scale_places).max(s.offset_places);
            Value::Float(round_decimals(x * p.scale + p.offset, places))
        }
    };
    match value {
        Value::Float(x) if !x.is_finite() => Err(invalid(p, "not a finite number")),
        v => Ok(v),
    }
}

/// Decodes a point from exactly `span` registers.
pub fn decode_registers(p: &PointDef, words: &[u16]) -> Result<Decoded, CodecError> {
    let Some(reg) = &p.reg else {
        return Err(invalid(p, "has no Modbus register"));
    };
    if reg.table.is_bits() {
        return Err(invalid(
            p,
            format!(
                "lives in the {} table: decode it as a bit",
                reg.table.as_str()
            ),
        ));
    }
    let want = usize::from(span(reg, p.ty));
    if words.len() != want {
        return Err(invalid(
            p,
            format!(
                "expected {want} register(s) for {}, got {}",
                p.ty.as_str(),
                words.len()
            ),
        ));
    }
    match p.ty {
        PointType::Bool => {
            let word = from_single(words[0], reg.order);
            let on = match reg.bit {
                Some(bit) if bit < 16 => word & (1 << bit) != 0,
                Some(bit) => return Err(invalid(p, format!("bit {bit} is not in 0..=15"))),
                None => word != 0,
            };
            Ok(Decoded::plain(Value::Bool(on)))
        }
        PointType::String => {
            let bytes: Vec<u8> = words
                .iter()
                .flat_map(|w| {
                    let b = w.to_be_bytes();
                    if swaps_bytes(reg.order) {
                        [b[1], b[0]]
                    } else {
                        b
                    }
                })
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim_end_matches(['\0', ' ']);
            Ok(Decoded::plain(Value::Text(text.to_string())))
        }
        ty => {
            let (be, len) = to_be_bytes(words, reg.order);
            let raw = raw_of(ty, &be[..len]).ok_or_else(|| invalid(p, "unsupported type"))?;
            if let (Some(values), Raw::Int(r)) = (&p.values, &raw) {
                if let Some(label) = i64::try_from(*r).ok().and_then(|k| values.get(&k)) {
                    return Ok(Decoded::plain(Value::Text(label.clone())));
                }
                return Ok(Decoded {
                    value: scaled(p, raw)?,
                    unknown_enum: true,
                });
            }
            Ok(Decoded::plain(scaled(p, raw)?))
        }
    }
}

/// A single register's value after the point's byte order.
fn from_single(word: u16, order: WordOrder) -> u16 {
    if swaps_bytes(order) {
        word.swap_bytes()
    } else {
        word
    }
}

/// Decodes a point read from a coil or discrete input.
pub fn decode_bit(p: &PointDef, bit: bool) -> Result<Decoded, CodecError> {
    match p.ty {
        PointType::Bool => Ok(Decoded::plain(Value::Bool(bit))),
        ty => Err(invalid(p, format!("is a {}, not a bit", ty.as_str()))),
    }
}

/// The coil state to write for a bool point: `true`/`false`, `0`/`1` (SPEC §8).
pub fn encode_bit(p: &PointDef, v: &Value) -> Result<bool, CodecError> {
    if p.ty != PointType::Bool {
        return Err(invalid(p, format!("is a {}, not a bit", p.ty.as_str())));
    }
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        Value::Float(x) if *x == 0.0 => Ok(false),
        Value::Float(x) if *x == 1.0 => Ok(true),
        other => Err(invalid(
            p,
            format!("expects true, false, 0 or 1, got {other}"),
        )),
    }
}

/// Sets or clears a bool-with-`bit` point inside the current content of its register
/// (read-modify-write), honouring the point's byte order. Returns the register to write.
pub fn merge_bit(p: &PointDef, current: u16, on: bool) -> Result<u16, CodecError> {
    let Some(bit) = p.reg.as_ref().and_then(|r| r.bit) else {
        return Err(invalid(p, "is not one bit of a register"));
    };
    if bit >= 16 {
        return Err(invalid(p, format!("bit {bit} is not in 0..=15")));
    }
    let order = order_of(p);
    let native = from_single(current, order);
    let native = if on {
        native | (1 << bit)
    } else {
        native & !(1 << bit)
    };
    Ok(from_single(native, order))
}

/// The registers to write for `v` (inverse of [`decode_registers`]): enum labels become
/// their raw value, numbers are unscaled (`(v - offset) / scale`), rounded to the nearest
/// integer for integer types and checked against the raw type's range. `min`/`max` are
/// not checked here (command validation does that).
///
/// A bool with `bit` returns the register with only that bit set (or zero): writing it
/// as is would clear the register's other bits, so the caller must merge it into the
/// current content — use [`merge_bit`] (read-modify-write) or a mask write.
pub fn encode_registers(p: &PointDef, v: &Value) -> Result<Vec<u16>, CodecError> {
    let Some(reg) = &p.reg else {
        return Err(invalid(p, "has no Modbus register"));
    };
    if reg.table.is_bits() {
        return Err(invalid(
            p,
            format!(
                "lives in the {} table: encode it as a bit",
                reg.table.as_str()
            ),
        ));
    }
    let order = reg.order;
    match p.ty {
        PointType::Bool => {
            let on = encode_bit(p, v)?;
            let native = match reg.bit {
                Some(bit) if bit < 16 => u16::from(on) << bit,
                Some(bit) => return Err(invalid(p, format!("bit {bit} is not in 0..=15"))),
                None => u16::from(on),
            };
            Ok(vec![from_single(native, order)])
        }
        PointType::String => {
            let Value::Text(s) = v else {
                return Err(invalid(p, format!("expects a string, got {v}")));
            };
            let len = usize::from(span(reg, p.ty));
            if s.len() > len * 2 {
                return Err(invalid(
                    p,
                    format!("string of {} bytes does not fit {len} registers", s.len()),
                ));
            }
            let mut bytes = s.as_bytes().to_vec();
            bytes.resize(len * 2, 0);
            Ok(bytes
                .chunks(2)
                .map(|c| {
                    let w = u16::from_be_bytes(array(c));
                    from_single(w, order)
                })
                .collect())
        }
        ty => {
            let be = encode_number(p, ty, v)?;
            Ok(from_be_bytes(&be, order))
        }
    }
}

/// Big-endian bytes of the raw value of a numeric point.
pub(super) fn encode_number(p: &PointDef, ty: PointType, v: &Value) -> Result<Vec<u8>, CodecError> {
    // Enum labels map straight to their raw value; raw numbers must be known values.
    if let Some(values) = &p.values {
        let raw = match v {
            Value::Text(label) => values
                .iter()
                .find(|(_, l)| *l == label)
                .map(|(k, _)| *k)
                .ok_or_else(|| invalid(p, format!("'{label}' is not one of its values")))?,
            Value::Int(i) if values.contains_key(i) => *i,
            other => {
                return Err(invalid(p, format!("{other} is not one of its values")));
            }
        };
        return int_bytes(p, ty, i128::from(raw));
    }
    let exact = match v {
        Value::Int(i) => Some(*i),
        Value::Float(_) => None,
        other => return Err(invalid(p, format!("expects a number, got {other}"))),
    };
    let x = v.as_f64().unwrap_or(f64::NAN);
    if !x.is_finite() {
        return Err(invalid(p, "expects a finite number"));
    }
    if ty.is_integer() {
        // Exact integer arithmetic where possible: 64-bit values lose precision in f64.
        if let Some(i) = exact
            && is_integral(p.scale)
            && is_integral(p.offset)
            && p.scale != 0.0
        {
            let n = i128::from(i) - p.offset as i128;
            let s = p.scale as i128;
            if n % s == 0 {
                return int_bytes(p, ty, n / s);
            }
        }
        let raw = ((x - p.offset) / p.scale).round();
        let (lo, hi) = int_range(ty);
        if !(raw >= lo as f64 && raw <= hi as f64) {
            return Err(out_of_range(p, ty, v));
        }
        // In range: the cast saturates at the edges where f64 cannot be exact.
        return int_bytes(p, ty, (raw as i128).clamp(lo, hi));
    }
    let raw = (x - p.offset) / p.scale;
    match ty {
        PointType::F32 => {
            if !raw.is_finite() || raw.abs() > f64::from(f32::MAX) {
                return Err(out_of_range(p, ty, v));
            }
            Ok((raw as f32).to_be_bytes().to_vec())
        }
        PointType::F64 if raw.is_finite() => Ok(raw.to_be_bytes().to_vec()),
        _ => Err(out_of_range(p, ty, v)),
    }
}

fn int_range(ty: PointType) -> (i128, i128) {
    match ty {
        PointType::U16 => (0, u16::MAX.into()),
        PointType::I16 => (i16::MIN.into(), i16::MAX.into()),
        PointType::U32 => (0, u32::MAX.into()),
        PointType::I32 => (i32::MIN.into(), i32::MAX.into()),
        PointType::U64 => (0, u64::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    }
}

fn out_of_range(p: &PointDef, ty: PointType, v: &Value) -> CodecError {
    invalid(
        p,
        format!("{v} is out of range for a {} register", ty.as_str()),
    )
}

fn int_bytes(p: &PointDef, ty: PointType, raw: i128) -> Result<Vec<u8>, CodecError> {
    let (lo, hi) = int_range(ty);
    if raw < lo || raw > hi {
        return Err(invalid(
            p,
            format!(
                "raw value {raw} is out of range for a {} register",
                ty.as_str()
            ),
        ));
    }
    // In range, so the narrowing casts below are exact.
    Ok(match ty {
        PointType::U16 => (raw as u16).to_be_bytes().to_vec(),
        PointType::I16 => (raw as i16).to_be_bytes().to_vec(),
        PointType::U32 => (raw as u32).to_be_bytes().to_vec(),
        PointType::I32 => (raw as i32).to_be_bytes().to_vec(),
        PointType::U64 => (raw as u64).to_be_bytes().to_vec(),
        PointType::I64 => (raw as i64).to_be_bytes().to_vec(),
        other => {
            return Err(invalid(
                p,
                format!("a {} point cannot take an enum value", other.as_str()),
            ));
        }
    })
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
