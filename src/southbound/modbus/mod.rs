//! Modbus drivers.

pub mod plan;
