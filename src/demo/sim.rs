//! Modbus TCP simulators of the shipped profiles.
