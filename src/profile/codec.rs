//! Register images <-> point values. Pure.

use super::{PointDef, PointType, RegisterRef};
use crate::model::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("point '{point}': {what}")]
    Invalid { point: String, what: String },
}

/// A decoded value; `unknown_enum` is set when an enum raw value is missing from `values`
/// (published as its number and counted as a warning, SPEC §8).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub value: Value,
    pub unknown_enum: bool,
}

/// How many registers (register tables) or bits (bit tables) the point occupies.
pub fn span(_reg: &RegisterRef, _ty: PointType) -> u16 {
    unimplemented!()
}

/// Decodes a point from exactly `span` registers.
pub fn decode_registers(_p: &PointDef, _words: &[u16]) -> Result<Decoded, CodecError> {
    unimplemented!()
}

/// Decodes a point read from a coil or discrete input.
pub fn decode_bit(_p: &PointDef, _bit: bool) -> Result<Decoded, CodecError> {
    unimplemented!()
}
