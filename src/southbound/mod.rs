//! Southbound drivers: one task per connection or bus, talking to the equipment.
//!
//! Every driver task owns its connection; reads (polls) and writes (commands) go through
//! it, never in parallel. Commands reach a driver as
//! [`WriteRequest`](crate::model::command::WriteRequest)s on a bounded inbox
//! and run between two poll transactions. Every Modbus link and serial bus orders its
//! devices with the same pure [`schedule::Schedule`].

pub mod health;
pub mod lora;
pub mod modbus;
pub mod ocpp;
pub mod schedule;
pub mod serial;
pub mod serial_port;

/// Capacity of a driver's command inbox.
pub const INBOX_CAPACITY: usize = 16;
