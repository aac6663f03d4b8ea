//! Coalescing a profile's points into as few block reads as possible. Pure.

use crate::profile::{PointDef, Table};

/// Largest read per request (Modbus application protocol limits).
pub const MAX_REGISTERS_PER_READ: u16 = 125;
pub const MAX_BITS_PER_READ: u16 = 2000;
/// Unused registers we accept to read inside one block rather than issue another request.
pub const DEFAULT_MAX_GAP: u16 = 8;

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// (index into the profile's points, offset of the point's first register/bit in the block)
    pub points: Vec<(usize, u16)>,
}

pub fn plan(_points: &[PointDef], _max_gap: u16) -> Vec<Block> {
    unimplemented!()
}
