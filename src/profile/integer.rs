//! Whole integers read or written by protocols that carry typed values (SNMP's INTEGER,
//! Gauge32, Counter64…) rather than register images: the same enum labels, scale and
//! offset as a Modbus point (`convert.rs`), without the byte layout.

use super::convert::{CodecError, Decoded, Raw, encode_number, scaled};
use super::{PointDef, PointType};
use crate::model::Value;

/// An integer as published: its enum label, else `raw * scale + offset` (an enum value
/// missing from `values` is published as its number with `unknown_enum`).
pub fn decode_int(p: &PointDef, raw: i128) -> Result<Decoded, CodecError> {
    if let Some(values) = &p.values {
        if let Some(label) = i64::try_from(raw).ok().and_then(|k| values.get(&k)) {
            return Ok(Decoded {
                value: Value::Text(label.clone()),
                unknown_enum: false,
            });
        }
        return Ok(Decoded {
            value: scaled(p, Raw::Int(raw))?,
            unknown_enum: true,
        });
    }
    Ok(Decoded {
        value: scaled(p, Raw::Int(raw))?,
        unknown_enum: false,
    })
}

/// The raw integer a write of `v` puts on the wire (enum label, scale and offset
/// inverted), checked against the range of the point's type.
pub fn encode_int(p: &PointDef, v: &Value) -> Result<i128, CodecError> {
    let be = encode_number(p, p.ty, v)?;
    let mut b8 = [0u8; 8];
    let n = be.len().min(8);
    b8[8 - n..].copy_from_slice(&be[be.len() - n..]);
    let u = u64::from_be_bytes(b8);
    Ok(match p.ty {
        PointType::I16 => i128::from(u as u16 as i16),
        PointType::I32 => i128::from(u as u32 as i32),
        PointType::I64 => i128::from(u as i64),
        _ => i128::from(u),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn point(ty: PointType) -> PointDef {
        PointDef::plain("x_n".into(), None, ty, None)
    }

    #[test]
    fn integers_take_labels_and_scale_both_ways() {
        let mut p = point(PointType::I32);
        p.values = Some(BTreeMap::from([
            (1, "on".to_string()),
            (2, "off".to_string()),
        ]));
        assert_eq!(decode_int(&p, 2).unwrap().value, Value::Text("off".into()));
        assert!(decode_int(&p, 7).unwrap().unknown_enum);
        assert_eq!(encode_int(&p, &Value::Text("on".into())).unwrap(), 1);
        let mut w = point(PointType::U32);
        w.scale = 0.001;
        assert_eq!(decode_int(&w, 15400).unwrap().value, Value::Float(15.4));
        assert_eq!(encode_int(&w, &Value::Float(15.4)).unwrap(), 15400);
        let n = point(PointType::I32);
        assert_eq!(encode_int(&n, &Value::Int(-5)).unwrap(), -5);
        assert!(encode_int(&point(PointType::U32), &Value::Int(-1)).is_err());
        assert_eq!(
            encode_int(&point(PointType::U64), &Value::Int(i64::MAX)).unwrap(),
            i128::from(i64::MAX)
        );
    }
}
