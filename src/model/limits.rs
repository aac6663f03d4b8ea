//! Protocol limits, each written once and used by every layer that checks, plans or
//! serves against it (profile validation, the read planner, the probe, the simulators).

/// Registers in one Modbus read (function codes 3 and 4: quantity 1..=125).
pub const MODBUS_MAX_READ_REGISTERS: u16 = 125;
/// Bits in one Modbus read (function codes 1 and 2: quantity 1..=2000).
pub const MODBUS_MAX_READ_BITS: u16 = 2000;
