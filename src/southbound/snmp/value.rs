//! SNMP values <-> point values (SPEC §11), pure. `bool` is a TruthValue (1 true,
//! 2 false); `i32`/`u32`/`u64` take INTEGER, Gauge32, Counter32, Unsigned32, TimeTicks and
//! Counter64 (then enum labels, scale and offset as for Modbus); `string` takes OCTET
//! STRING (lossy UTF-8), IpAddress (dotted) and OBJECT IDENTIFIER. A SET is encoded in
//! the type the agent reported for the object (SPEC: "in the type the agent reports").

use crate::model::Value;
use crate::profile::convert::Decoded;
use crate::profile::integer::{decode_int, encode_int};
use crate::profile::{PointDef, PointType};
use async_snmp::{Value as Snmp, ValueKind};

/// What one variable binding of a GET means for its point.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Value(Decoded),
    /// `noSuchObject`, `noSuchInstance` or `endOfMibView`: the point is left out.
    NoSuch,
}

/// Why a binding could not become the point's value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("point '{point}': {what}")]
pub struct Mismatch {
    pub point: String,
    pub what: String,
}

fn mismatch(p: &PointDef, what: impl Into<String>) -> Mismatch {
    Mismatch {
        point: p.name.clone(),
        what: what.into(),
    }
}

fn integer(v: &Snmp) -> Option<i128> {
    Some(match v {
        Snmp::Integer(i) => i128::from(*i),
        Snmp::Counter32(n) | Snmp::Gauge32(n) | Snmp::UInteger32(n) | Snmp::TimeTicks(n) => {
            i128::from(*n)
        }
        Snmp::Counter64(n) => i128::from(*n),
        _ => return None,
    })
}

/// Decodes the value an agent returned for point `p`.
pub fn decode(p: &PointDef, v: &Snmp) -> Result<Read, Mismatch> {
    if matches!(
        v,
        Snmp::NoSuchObject | Snmp::NoSuchInstance | Snmp::EndOfMibView
    ) {
        return Ok(Read::NoSuch);
    }
    let plain = |value| {
        Ok(Read::Value(Decoded {
            value,
            unknown_enum: false,
        }))
    };
    match p.ty {
        PointType::Bool => match integer(v) {
            Some(1) => plain(Value::Bool(true)),
            Some(2) => plain(Value::Bool(false)),
            Some(n) => Err(mismatch(p, format!("{n} is not a TruthValue (1 or 2)"))),
            None => Err(mismatch(
                p,
                format!("expected a TruthValue, got {}", v.kind()),
            )),
        },
        PointType::String => match v {
            Snmp::OctetString(b) => plain(Value::Text(String::from_utf8_lossy(b).into_owned())),
            Snmp::IpAddress(a) => plain(Value::Text(std::net::Ipv4Addr::from(*a).to_string())),
            Snmp::ObjectIdentifier(o) => plain(Value::Text(o.to_string())),
            other => Err(mismatch(
                p,
                format!("expected a string, got {}", other.kind()),
            )),
        },
        _ => match integer(v) {
            Some(n) => decode_int(p, n)
                .map(Read::Value)
                .map_err(|e| mismatch(p, e.to_string())),
            None => Err(mismatch(p, format!("expected a number, got {}", v.kind()))),
        },
    }
}

/// The SNMP type a point is written in when the agent's type is not known (the object
/// did not answer a GET).
fn natural_kind(ty: PointType) -> ValueKind {
    match ty {
        PointType::U32 => ValueKind::Gauge32,
        PointType::U64 => ValueKind::Counter64,
        PointType::String => ValueKind::OctetString,
        _ => ValueKind::Integer,
    }
}

/// Encodes a validated write of `v` to point `p`, in `kind` (the type the agent reported).
pub fn encode(p: &PointDef, v: &Value, kind: Option<ValueKind>) -> Result<Snmp, Mismatch> {
    let kind = kind.unwrap_or_else(|| natural_kind(p.ty));
    if p.ty == PointType::Bool {
        let on = match v {
            Value::Bool(b) => *b,
            Value::Int(1) => true,
            Value::Int(0) => false,
            other => return Err(mismatch(p, format!("expects true or false, got {other}"))),
        };
        return Ok(Snmp::Integer(if on { 1 } else { 2 }));
    }
    if p.ty == PointType::String {
        let Value::Text(s) = v else {
            return Err(mismatch(p, format!("expects a string, got {v}")));
        };
        return match kind {
            ValueKind::IpAddress => s
                .parse::<std::net::Ipv4Addr>()
                .map(|a| Snmp::IpAddress(a.octets()))
                .map_err(|_| mismatch(p, format!("'{s}' is not an IPv4 address"))),
            _ => Ok(Snmp::OctetString(s.clone().into_bytes().into())),
        };
    }
    let raw = encode_int(p, v).map_err(|e| mismatch(p, e.to_string()))?;
    let too_big = |what: &str| mismatch(p, format!("{raw} does not fit the agent's {what}"));
    Ok(match kind {
        ValueKind::Counter64 => {
            Snmp::Counter64(u64::try_from(raw).map_err(|_| too_big("Counter64"))?)
        }
        ValueKind::Gauge32 => Snmp::Gauge32(u32::try_from(raw).map_err(|_| too_big("Gauge32"))?),
        ValueKind::Counter32 => {
            Snmp::Counter32(u32::try_from(raw).map_err(|_| too_big("Counter32"))?)
        }
        ValueKind::UInteger32 => {
            Snmp::UInteger32(u32::try_from(raw).map_err(|_| too_big("Unsigned32"))?)
        }
        ValueKind::TimeTicks => {
            Snmp::TimeTicks(u32::try_from(raw).map_err(|_| too_big("TimeTicks"))?)
        }
        _ => Snmp::Integer(i32::try_from(raw).map_err(|_| too_big("INTEGER"))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn point(name: &str, ty: PointType) -> PointDef {
        PointDef::plain(name.into(), None, ty, None)
    }

    fn value(r: Result<Read, Mismatch>) -> Value {
        match r {
            Ok(Read::Value(d)) => d.value,
            other => panic!("not a value: {other:?}"),
        }
    }

    #[test]
    fn truth_values_enums_counters_and_strings_decode_as_published() {
        let b = point("poe_enabled", PointType::Bool);
        assert_eq!(value(decode(&b, &Snmp::Integer(1))), Value::Bool(true));
        assert_eq!(value(decode(&b, &Snmp::Integer(2))), Value::Bool(false));
        assert!(decode(&b, &Snmp::Integer(3)).is_err());
        let mut st = point("poe_status", PointType::I32);
        st.values = Some(BTreeMap::from([(3, "delivering".to_string())]));
        assert_eq!(
            value(decode(&st, &Snmp::Integer(3))),
            Value::Text("delivering".into())
        );
        let mut up = point("uptime", PointType::U32);
        up.scale = 0.01;
        assert_eq!(
            value(decode(&up, &Snmp::TimeTicks(12345))),
            Value::Float(123.45)
        );
        let c = point("rx_bytes", PointType::U64);
        assert_eq!(
            value(decode(&c, &Snmp::Counter64(1 << 40))),
            Value::Int(1 << 40)
        );
        let s = point("x_ip", PointType::String);
        assert_eq!(
            value(decode(&s, &Snmp::IpAddress([10, 0, 0, 31]))),
            Value::Text("10.0.0.31".into())
        );
        assert_eq!(decode(&c, &Snmp::NoSuchInstance), Ok(Read::NoSuch));
        assert!(decode(&c, &Snmp::OctetString(b"x".to_vec().into())).is_err());
    }

    #[test]
    fn writes_take_the_type_the_agent_reported() {
        let b = point("poe_enabled", PointType::Bool);
        assert_eq!(
            encode(&b, &Value::Bool(false), Some(ValueKind::Integer)),
            Ok(Snmp::Integer(2))
        );
        let g = point("x_limit", PointType::U32);
        assert_eq!(
            encode(&g, &Value::Int(7), Some(ValueKind::UInteger32)),
            Ok(Snmp::UInteger32(7))
        );
        assert_eq!(encode(&g, &Value::Int(7), None), Ok(Snmp::Gauge32(7)));
        let i = point("x_level", PointType::I32);
        assert!(encode(&i, &Value::Int(-1), Some(ValueKind::Gauge32)).is_err());
        let s = point("x_name", PointType::String);
        assert_eq!(
            encode(&s, &Value::Text("cam".into()), Some(ValueKind::OctetString)),
            Ok(Snmp::OctetString(b"cam".to_vec().into()))
        );
    }
}
