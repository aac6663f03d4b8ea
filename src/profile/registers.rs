//! Where a Modbus point lives (SPEC §3): table, address, word order, bit, string length,
//! and that the point fits the table and the 16-bit address space. Other protocols'
//! points must not carry these keys.

use super::convert::span;
use super::raw_point::RawPoint;
use super::report::Report;
use super::{PointType, Protocol, RegisterRef, Table, WordOrder};
use crate::model::limits::MODBUS_MAX_READ_REGISTERS;

/// A string point is read in one request, so it is no longer than one read.
const MAX_STRING_REGISTERS: u16 = MODBUS_MAX_READ_REGISTERS;

/// Keys that only mean something for Modbus points (SPEC §8: errors elsewhere).
const MODBUS_KEYS: &[&str] = &["table", "address", "bit", "length", "order"];

/// Reports every Modbus addressing key of a point in a `protocol` (serial, LoRa) profile.
pub(super) fn reject_addressing(r: &mut Report, prefix: &str, raw: &RawPoint, protocol: Protocol) {
    for k in MODBUS_KEYS {
        let present = match *k {
            "table" => raw.table.is_some(),
            "address" => raw.address.is_some(),
            "bit" => raw.bit.is_some(),
            "length" => raw.length.is_some(),
            _ => raw.order.is_some(),
        };
        if present {
            r.err(
                format!("{prefix}{k}"),
                format!(
                    "Modbus addressing key is not allowed in a {} profile",
                    protocol.as_str()
                ),
            );
        }
    }
}

/// The Modbus register of a point (SPEC §3).
pub(super) fn check_register(
    r: &mut Report,
    prefix: &str,
    raw: &RawPoint,
    ty: PointType,
) -> Option<RegisterRef> {
    let key = |k: &str| format!("{prefix}{k}");
    let before = r.errors.len();
    let table: Option<Table> = r.one_of(&key("table"), raw.table.as_deref(), str::parse);
    let address = match raw.address {
        None => {
            r.err(key("address"), "required for a Modbus point");
            None
        }
        Some(a) => {
            let a16 = u16::try_from(a).ok();
            if a16.is_none() {
                r.err(key("address"), format!("{a} is out of range 0..=65535"));
            }
            a16
        }
    };
    let order = match raw.order.as_deref() {
        None => Some(WordOrder::Abcd),
        Some(o) => r.one_of(&key("order"), Some(o), str::parse),
    };
    let bit = match raw.bit {
        None => None,
        Some(b) if (0..=15).contains(&b) => Some(b as u8),
        Some(b) => {
            r.err(key("bit"), format!("{b} is out of range 0..=15"));
            None
        }
    };
    let length = match (raw.length, ty) {
        (None, PointType::String) => {
            r.err(
                key("length"),
                format!("required for a string (registers, 1..={MAX_STRING_REGISTERS})"),
            );
            None
        }
        (Some(n), PointType::String) if (1..=i64::from(MAX_STRING_REGISTERS)).contains(&n) => {
            Some(n as u16)
        }
        (Some(n), PointType::String) => {
            r.err(
                key("length"),
                format!("{n} registers is out of range 1..={MAX_STRING_REGISTERS}"),
            );
            None
        }
        (Some(_), other) => {
            r.err(
                key("length"),
                format!("only applies to strings, not {}", other.as_str()),
            );
            None
        }
        (None, _) => None,
    };
    if let Some(table) = table {
        if table.is_bits() {
            if ty != PointType::Bool {
                r.err(
                    key("type"),
                    format!("the {} table holds bits: type must be bool", table.as_str()),
                );
            }
            if raw.bit.is_some() {
                r.err(
                    key("bit"),
                    format!("the {} table already holds single bits", table.as_str()),
                );
            }
        } else if ty == PointType::Bool && raw.bit.is_none() {
            r.err(
                key("bit"),
                format!("a bool in the {} table needs bit (0..=15)", table.as_str()),
            );
        } else if ty != PointType::Bool && raw.bit.is_some() {
            r.err(key("bit"), "only applies to type bool");
        }
        if raw.writable == Some(true) && !matches!(table, Table::Coil | Table::Holding) {
            r.err(
                key("writable"),
                format!(
                    "the {} table is read-only (only coil and holding are writable)",
                    table.as_str()
                ),
            );
        }
    }
    if r.errors.len() != before {
        return None;
    }
    let reg = RegisterRef {
        table: table?,
        address: address?,
        order: order?,
        bit,
        length,
    };
    let last = u32::from(reg.address) + u32::from(span(&reg, ty)) - 1;
    if last > u32::from(u16::MAX) {
        r.err(
            key("address"),
            format!(
                "{} at {} runs past the last address 65535",
                ty.as_str(),
                reg.address
            ),
        );
        return None;
    }
    Some(reg)
}
