//! Protocol limits, each written once and used by every layer that checks, plans or
//! serves against it (profile validation, the read planner, the probe, the simulators).

/// Registers in one Modbus read (function codes 3 and 4: quantity 1..=125).
pub const MODBUS_MAX_READ_REGISTERS: u16 = 125;
/// Bits in one Modbus read (function codes 1 and 2: quantity 1..=2000).
pub const MODBUS_MAX_READ_BITS: u16 = 2000;

/// The longest period, timeout or silence a configuration or profile may set: a year.
/// Longer is a typo (or a "never" that has its own spelling, like `stats.interval_s = 0`),
/// and the bound keeps every `Instant + period`, interval and `* 1000` far from overflow.
pub const MAX_PERIOD_S: u64 = 366 * 24 * 3600;
/// [`MAX_PERIOD_S`] in milliseconds, for the `_ms` keys.
pub const MAX_PERIOD_MS: u64 = MAX_PERIOD_S * 1000;
